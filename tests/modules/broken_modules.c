/* Deliberately broken modules for the loader tests; one is built per BROKEN_KIND. */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <chimaera/module.h>

static int ok_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	(void)c;
	(void)kv;
	(void)n;
	return 0;
}

static int failing_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	(void)kv;
	(void)n;
	/* Fail on the second container, so that the first must be torn down again. */
	return chi_container_id(c) == 1 ? -EIO : 0;
}

static int handler(struct chi_request *req)
{
	(void)req;
	return 0;
}

static const struct chi_method_desc dup_methods[] = {
	{ 10, "a", handler, 0, 0, 0, NULL, 0 },
	{ 10, "b", handler, 0, 0, 0, NULL, 0 },
};

static const struct chi_method_desc one_method[] = {
	{ 10, "a", handler, 0, 0, 0, NULL, 0 },
};

#if BROKEN_KIND == 6 /* bad_bulk: a bulk field beyond the parameters it may assume */
static const struct chi_bulk_field outside[] = { { 8, CHI_BULK_IN, 0, 0 } };
static const struct chi_method_desc bulk_method[] = {
	{ 10, "a", handler, 0, 16, 0, outside, 1 }, /* 8 + 16 > 16 */
};
static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "bad_bulk", .create = ok_create,
					  .methods = bulk_method, .num_methods = 1 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 7 /* many_bulk: more bulk fields than a task can carry across nodes */
struct many_params {
	struct chi_bulk b[CHI_MAX_BULK_FIELDS + 1];
};
#define F(i) { (uint32_t)(i * sizeof(struct chi_bulk)), CHI_BULK_IN, 0, 0 }
static const struct chi_bulk_field many[] = { F(0),  F(1),  F(2),  F(3),  F(4),  F(5),
					      F(6),  F(7),  F(8),  F(9),  F(10), F(11),
					      F(12), F(13), F(14), F(15), F(16) };
static const struct chi_method_desc many_method[] = {
	{ 10, "a", handler, 0, sizeof(struct many_params), 0, many, CHI_MAX_BULK_FIELDS + 1 },
};
static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "many_bulk", .create = ok_create,
					  .methods = many_method, .num_methods = 1 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 1 /* bad_abi */
static const struct chi_module_desc d = { .abi_version = 99, .name = "bad_abi",
					  .create = ok_create, .methods = one_method,
					  .num_methods = 1 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 2 /* dup_method */
static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "dup_method", .create = ok_create,
					  .methods = dup_methods, .num_methods = 2 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 3 /* create_fails */
static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "create_fails", .state_size = 8,
					  .create = failing_create, .methods = one_method,
					  .num_methods = 1 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 5 /* yield_misuse: a runaway recursion, and chi_yield without the flag */
/* Deep enough for any test stack (bounded, so that it is not "infinite" to the compiler). */
static int recurse(int depth)
{
	char pad[1024];
	pad[0] = (char)depth;
	__asm__ __volatile__("" : : "r"(pad) : "memory"); /* keep the frame */
	return depth > 10000000 ? pad[0] : recurse(depth + 1) + pad[0];
}

static int overflow(struct chi_request *req)
{
	(void)req;
	return recurse(0);
}

static int yield_unflagged(struct chi_request *req)
{
	return chi_yield(req); /* -EPERM: this method is not CHI_METHOD_MAY_YIELD */
}

/* Hold the worker for the number of milliseconds in the parameters, never yielding. */
static int spin(struct chi_request *req)
{
	uint32_t size, ms;
	memcpy(&ms, chi_req_params(req, &size), sizeof(ms));
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	return 0;
}

/* A blocking client wait on a subtask, from a handler: refused with -EDEADLK, not a hang. */
static int blocking_wait(struct chi_request *req)
{
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_subtask_alloc(req, 0, &t);
	if (rc)
		return rc;
	t->pool = chi_container_pool_id(chi_req_container(req));
	t->method = 12; /* spin */
	t->params_size = 0;
	rc = chi_subtask_submit(req, t, &f);
	if (rc == 0)
		rc = chi_wait(&f);
	return rc; /* the subtask record stays: it may still be in flight */
}

/* Park until a thread of ours unparks us 300 ms later (what bdev does with its I/O). */
static void *unpark_later(void *arg)
{
	struct timespec ts = { 0, 300 * 1000000L };
	nanosleep(&ts, NULL);
	chi_unpark(arg, 42);
	return NULL;
}

static int park_on_thread(struct chi_request *req)
{
	pthread_t t;
	struct chi_park *p = chi_park_prepare(req);
	if (!p)
		return -EPERM;
	if (pthread_create(&t, NULL, unpark_later, p) != 0)
		return -EAGAIN;
	pthread_detach(t);
	return chi_park(req, p) == 42 ? 0 : -EIO;
}

static const struct chi_bulk_field trusted_bulk[] = { { 0, CHI_BULK_INOUT,
							CHI_BULK_LEN_WHOLE, 0 } };

/* Park and never be unparked: a device that never answers. The handle is kept (never
 * freed), as a real module's lost request would be. */
static struct chi_park *lost[64];
static int park_forever(struct chi_request *req)
{
	static int n;
	struct chi_park *p = chi_park_prepare(req);
	if (!p)
		return -EPERM;
	lost[n++ % 64] = p;
	return chi_park(req, p);
}

/* Handlers return 0 or -errno; these do not (1 is what the runtime's own methods return
 * for "pending"). */
static int positive_rc(struct chi_request *req)
{
	(void)req;
	return 1;
}

static int positive_after_yield(struct chi_request *req)
{
	int rc = chi_yield(req);
	return rc ? rc : 7;
}

static const struct chi_method_desc misuse_methods[] = {
	{ 10, "overflow", overflow, CHI_METHOD_MAY_YIELD, 0, 0, NULL, 0 },
	{ 11, "yield_unflagged", yield_unflagged, 0, 0, 0, NULL, 0 },
	{ 12, "spin", spin, 0, sizeof(uint32_t), 0, NULL, 0 },
	{ 13, "blocking_wait", blocking_wait, 0, 0, 0, NULL, 0 },
	{ 14, "park_on_thread", park_on_thread, CHI_METHOD_MAY_YIELD, 0, 0, NULL, 0 },
	{ 15, "park_unflagged", park_on_thread, 0, 0, 0, NULL, 0 },
	{ 16, "park_forever", park_forever, CHI_METHOD_MAY_YIELD, 0, 0, NULL, 0 },
	/* Declares its buffer and trusts the runtime to have checked it. */
	{ 17, "bulk_trusting", handler, 0, sizeof(struct chi_bulk), 0, trusted_bulk, 1 },
	{ 18, "positive_rc", positive_rc, 0, 0, 0, NULL, 0 },
	{ 19, "positive_after_yield", positive_after_yield, CHI_METHOD_MAY_YIELD, 0, 0, NULL, 0 },
};
static const struct chi_module_desc d = { .abi_version = CHI_MODULE_ABI_VERSION,
					  .name = "yield_misuse", .create = ok_create,
					  .methods = misuse_methods, .num_methods = 10 };
CHI_MODULE_DEFINE(d)
#elif BROKEN_KIND == 4 /* no_entry: everything but the entry symbol */
__attribute__((visibility("default"))) int not_the_entry(void);
__attribute__((visibility("default"))) int not_the_entry(void)
{
	return ok_create(0, 0, 0) + handler(0) + (int)sizeof(dup_methods) + (int)sizeof(one_method);
}
#endif
