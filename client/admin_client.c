/* Typed wrappers for the admin pool's methods (include/chimaera/admin.h). */
#include <errno.h>
#include <string.h>

#include <chimaera/admin.h>

static int admin_task(struct chi_client *c, uint32_t method, uint32_t params_size,
		      struct chi_task **out)
{
	int rc = chi_task_alloc(c, params_size, out);
	if (rc)
		return rc;
	(*out)->pool.major = CHI_ADMIN_POOL_MAJOR;
	(*out)->pool.minor = CHI_ADMIN_POOL_MINOR;
	(*out)->method = method;
	return 0;
}

static int submit_or_free(struct chi_client *c, struct chi_task *t, struct chi_future *out)
{
	int rc = chi_submit(c, t, out);
	if (rc)
		chi_task_free(c, t);
	return rc;
}

int chi_admin_noop_async(struct chi_client *c, struct chi_future *out)
{
	struct chi_task *t;
	int rc = admin_task(c, CHI_ADMIN_NOOP, 0, &t);
	return rc ? rc : submit_or_free(c, t, out);
}

/* One allocation: [params][input bytes][output bytes]. */
int chi_admin_echo_async(struct chi_client *c, const void *data, uint32_t len,
			 struct chi_future *out)
{
	struct chi_admin_echo_params *p;
	struct chi_task *t;
	uint64_t size = sizeof(*p) + 2ull * len;

	if (size > UINT32_MAX)
		return -EINVAL;
	int rc = admin_task(c, CHI_ADMIN_ECHO, (uint32_t)size, &t);
	if (rc)
		return rc;
	p = chi_task_params(t);
	char *in = (char *)(p + 1);
	memcpy(in, data, len);
	if (chi_bulk_from_ptr(c, in, len, &p->in) || chi_bulk_from_ptr(c, in + len, len, &p->out)) {
		chi_task_free(c, t);
		return -EINVAL;
	}
	return submit_or_free(c, t, out);
}

const void *chi_admin_echo_output(struct chi_future *f, uint32_t *len)
{
	struct chi_admin_echo_params *p = chi_task_params(f->task);
	*len = (uint32_t)p->in.length;
	return chi_bulk_ptr(f->client, &p->out);
}

int chi_admin_sleep_async(struct chi_client *c, uint64_t usec, struct chi_future *out)
{
	struct chi_task *t;
	int rc = admin_task(c, CHI_ADMIN_SLEEP, sizeof(struct chi_admin_sleep_params), &t);
	if (rc)
		return rc;
	((struct chi_admin_sleep_params *)chi_task_params(t))->usec = usec;
	return submit_or_free(c, t, out);
}

int chi_admin_finish(struct chi_future *f)
{
	int rc = chi_wait(f);
	/* A task the runtime never completed may still be read by it: leak rather than reuse. */
	if (rc != -ECONNRESET)
		chi_task_free(f->client, f->task);
	return rc;
}

int chi_admin_stats(struct chi_client *c, struct chi_admin_stats *out)
{
	struct chi_future f;
	struct chi_task *t;
	int rc = admin_task(c, CHI_ADMIN_STATS, sizeof(*out), &t);
	if (rc)
		return rc;
	rc = submit_or_free(c, t, &f);
	if (rc)
		return rc;
	rc = chi_wait(&f);
	if (rc == 0)
		memcpy(out, chi_task_params(t), sizeof(*out));
	if (rc != -ECONNRESET)
		chi_task_free(c, t);
	return rc;
}
