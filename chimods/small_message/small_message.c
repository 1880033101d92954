/* small_message: the smallest useful module. Noop (dispatch cost), Who (routing: which
 * container ran a task), Count (per-container state, aggregated over fan-outs), Echo
 * (bulk descriptors), Yield and Sleep (cooperative tasks), Monitored (the Monitor count),
 * Chain and Fan (awaited subtasks).
 * Compose keys: monitor_period_us (off by default). */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include <chimaera/module.h>
#include <chimaera/small_message.h>

struct sm_state {
	uint64_t counter;
	uint64_t monitor_runs;
};

static int sm_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	(void)kv;
	(void)n;
	memset(chi_container_state(c), 0, sizeof(struct sm_state));
	return 0;
}

static int sm_noop(struct chi_request *req)
{
	(void)req;
	return 0;
}

static int sm_who(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_who_params *p = chi_req_params(req, &size);
	uint32_t id = chi_container_id(chi_req_container(req));
	p->container = id;
	p->replies = 1;
	p->mask = id < 64 ? 1ull << id : 0;
	return 0;
}

static void sm_who_aggregate(void *acc, const void *reply, uint32_t size)
{
	struct chi_sm_who_params *a = acc;
	const struct chi_sm_who_params *r = reply;
	(void)size;
	a->replies += r->replies;
	a->mask |= r->mask;
}

static int sm_count(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_count_params *p = chi_req_params(req, &size);
	struct sm_state *s = chi_container_state(chi_req_container(req));
	s->counter += p->add;
	p->total = s->counter;
	return 0;
}

static void sm_count_aggregate(void *acc, const void *reply, uint32_t size)
{
	(void)size;
	((struct chi_sm_count_params *)acc)->total +=
		((const struct chi_sm_count_params *)reply)->total;
}

static int sm_echo(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_echo_params p;
	memcpy(&p, chi_req_params(req, &size), sizeof(p));
	void *in = chi_req_bulk(req, &p.in);
	void *out = chi_req_bulk(req, &p.out);
	if (!in || !out || p.out.length < p.in.length)
		return -EFAULT;
	memmove(out, in, p.in.length);
	return 0;
}

/* Echo's buffers, declared so that a runtime that gets the task from another node moves
 * them: in, then out, of which the handler writes in.length bytes. */
static const struct chi_bulk_field echo_bulk[] = {
	{ offsetof(struct chi_sm_echo_params, in), CHI_BULK_IN, 0, 0 },
	{ offsetof(struct chi_sm_echo_params, out), CHI_BULK_OUT,
	  offsetof(struct chi_sm_echo_params, in) + offsetof(struct chi_bulk, length), 0 },
};

static int sm_yield(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_yield_params *p = chi_req_params(req, &size);
	uint32_t times = p->times, done = 0;
	for (uint32_t i = 0; i < times; i++) {
		int rc = chi_yield(req);
		if (rc) {
			p->done = done;
			return rc; /* -ECANCELED: the client has gone, stop */
		}
		done++;
	}
	p->done = done;
	return 0;
}

static int sm_sleep(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_sleep_params p;
	memcpy(&p, chi_req_params(req, &size), sizeof(p));
	if (p.usec > 3600ull * 1000000ull)
		return -EINVAL;
	return chi_sleep_us(req, p.usec);
}

static void sm_monitor(struct chi_container *c)
{
	((struct sm_state *)chi_container_state(c))->monitor_runs++;
}

static int sm_monitored(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_count_params *p = chi_req_params(req, &size);
	p->total = ((struct sm_state *)chi_container_state(chi_req_container(req)))->monitor_runs;
	return 0;
}

static int sm_chain(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_chain_params *p = chi_req_params(req, &size);
	struct chi_container *c = chi_req_container(req);
	uint32_t depth = p->depth;
	if (depth == 0) {
		p->reached = 1;
		return 0;
	}
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_subtask_alloc(req, sizeof(*p), &t);
	if (rc)
		return rc;
	t->pool = chi_container_pool_id(c);
	t->method = CHI_SM_CHAIN;
	t->query = chi_query_direct_id((chi_container_id(c) + 1) % chi_container_count(c));
	((struct chi_sm_chain_params *)chi_task_params(t))->depth = depth - 1;
	rc = chi_subtask_submit(req, t, &f);
	if (rc == 0)
		rc = chi_await(req, &f);
	if (rc == 0)
		p->reached = ((struct chi_sm_chain_params *)chi_task_params(t))->reached + 1;
	chi_subtask_free(req, t);
	return rc;
}

#define FAN_BATCH 256

static int sm_fan(struct chi_request *req)
{
	uint32_t size;
	struct chi_sm_fan_params *p = chi_req_params(req, &size);
	struct chi_container *c = chi_req_container(req);
	uint32_t count = p->count, ok = 0, n_c = chi_container_count(c);
	struct chi_task *t[FAN_BATCH];
	struct chi_future f[FAN_BATCH];
	for (uint32_t done = 0; done < count;) {
		uint32_t n = count - done < FAN_BATCH ? count - done : FAN_BATCH, k = 0;
		for (; k < n; k++) {
			if (chi_subtask_alloc(req, sizeof(struct chi_sm_who_params), &t[k]))
				break;
			t[k]->pool = chi_container_pool_id(c);
			t[k]->method = CHI_SM_WHO;
			t[k]->query = chi_query_direct_id((done + k) % n_c);
			if (chi_subtask_submit(req, t[k], &f[k])) {
				chi_subtask_free(req, t[k]);
				break;
			}
		}
		/* A subtask counts when it returned 0 *and* its reply is there: an await that
		 * returned before the completion landed would see the zeroed parameters. */
		for (uint32_t i = 0; i < k; i++) {
			const struct chi_sm_who_params *r = chi_task_params(t[i]);
			uint32_t want = (done + i) % n_c;
			ok += chi_await(req, &f[i]) == 0 && r->replies == 1 && r->container == want;
		}
		for (uint32_t i = 0; i < k; i++)
			chi_subtask_free(req, t[i]);
		if (k < n)
			return -ENOMEM;
		done += n;
	}
	p->ok = ok;
	return 0;
}

/* Dynamic queries: the task's counter increment picks the container. */
static uint32_t sm_schedule(const struct chi_task *task, const void *params, uint32_t count)
{
	(void)params;
	return task->method == CHI_SM_WHO ? count - 1 : 0;
}

static const struct chi_method_desc sm_methods[] = {
	{ CHI_SM_NOOP, "noop", sm_noop, CHI_METHOD_READ_ONLY, 0, NULL, NULL, 0 },
	{ CHI_SM_WHO, "who", sm_who, CHI_METHOD_READ_ONLY, sizeof(struct chi_sm_who_params),
	  sm_who_aggregate, NULL, 0 },
	{ CHI_SM_COUNT, "count", sm_count, 0, sizeof(struct chi_sm_count_params),
	  sm_count_aggregate, NULL, 0 },
	{ CHI_SM_ECHO, "echo", sm_echo, 0, sizeof(struct chi_sm_echo_params), NULL, echo_bulk, 2 },
	{ CHI_SM_YIELD, "yield", sm_yield, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_sm_yield_params), NULL, NULL, 0 },
	{ CHI_SM_SLEEP, "sleep", sm_sleep, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_sm_sleep_params), NULL, NULL, 0 },
	{ CHI_SM_MONITORED, "monitored", sm_monitored, CHI_METHOD_READ_ONLY,
	  sizeof(struct chi_sm_count_params), sm_count_aggregate, NULL, 0 },
	{ CHI_SM_CHAIN, "chain", sm_chain, CHI_METHOD_MAY_YIELD,
	  sizeof(struct chi_sm_chain_params), NULL, NULL, 0 },
	{ CHI_SM_FAN, "fan", sm_fan, CHI_METHOD_MAY_YIELD, sizeof(struct chi_sm_fan_params),
	  NULL, NULL, 0 },
	{ CHI_SM_RAW_ECHO, "raw_echo", sm_echo, 0, sizeof(struct chi_sm_echo_params), NULL, NULL,
	  0 },
};

static const struct chi_module_desc sm_desc = {
	.abi_version = CHI_MODULE_ABI_VERSION,
	.name = "small_message",
	.state_size = sizeof(struct sm_state),
	.create = sm_create,
	.schedule = sm_schedule,
	.monitor = sm_monitor, /* periodic only when a pool sets monitor_period_us */
	.methods = sm_methods,
	.num_methods = sizeof(sm_methods) / sizeof(sm_methods[0]),
};

CHI_MODULE_DEFINE(sm_desc)
