/* Typed wrappers for the admin pool's methods (include/chimaera/admin.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <chimaera/admin.h>

#include "client_internal.h"

/* A task for the admin container of @node: in a cluster node i runs container i. */
static int admin_task_on(struct chi_client *c, uint32_t node, uint32_t method,
			 uint32_t params_size, struct chi_task **out)
{
	int rc = chi_task_alloc(c, params_size, out);
	if (rc)
		return rc;
	(*out)->pool.major = CHI_ADMIN_POOL_MAJOR;
	(*out)->pool.minor = CHI_ADMIN_POOL_MINOR;
	(*out)->method = method;
	if (node != CHI_ADMIN_THIS_NODE)
		(*out)->query = chi_query_direct_id(node);
	return 0;
}

static int admin_task(struct chi_client *c, uint32_t method, uint32_t params_size,
		      struct chi_task **out)
{
	return admin_task_on(c, CHI_ADMIN_THIS_NODE, method, params_size, out);
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
	return chi_admin_stats_on(c, CHI_ADMIN_THIS_NODE, out);
}

int chi_admin_stop_runtime(struct chi_client *c, uint32_t node)
{
	struct chi_task *t;
	int rc = admin_task_on(c, node, CHI_ADMIN_STOP_RUNTIME, 0, &t);
	if (rc)
		return rc;
	rc = client_run(c, &t);
	if (t)
		chi_task_free(c, t);
	return rc;
}

int chi_admin_stats_on(struct chi_client *c, uint32_t node, struct chi_admin_stats *out)
{
	struct chi_task *t;
	int rc = admin_task_on(c, node, CHI_ADMIN_STATS, sizeof(*out), &t);
	if (rc)
		return rc;
	rc = client_run(c, &t);
	if (rc == 0)
		memcpy(out, chi_task_params(t), sizeof(*out));
	if (t)
		chi_task_free(c, t);
	return rc;
}

/* ---- pool management ---- */

static void copy_why(char *why, size_t why_len, const char *src)
{
	if (why && why_len)
		snprintf(why, why_len, "%s", src);
}

int chi_admin_get_or_create_pool(struct chi_client *c, const char *mod_name, const char *pool_name,
				 const struct chi_pool_id *pool_id, uint32_t num_containers,
				 const char *const *kv, uint32_t num_kv, struct chi_pool_id *out,
				 char *why, size_t why_len)
{
	struct chi_admin_create_pool_params *p;
	struct chi_task *t;
	uint64_t kv_size = 0;

	copy_why(why, why_len, "");
	if (!mod_name || !pool_name || strlen(mod_name) >= CHI_MOD_NAME_LEN ||
	    strlen(pool_name) >= CHI_POOL_NAME_LEN || (num_kv && !kv))
		return -EINVAL;
	for (uint32_t i = 0; i < 2 * num_kv; i++)
		kv_size += strlen(kv[i]) + 1;
	if (kv_size > 65536)
		return -EINVAL;
	int rc = admin_task(c, CHI_ADMIN_GET_OR_CREATE_POOL, (uint32_t)(sizeof(*p) + kv_size), &t);
	if (rc)
		return rc;
	p = chi_task_params(t);
	snprintf(p->mod_name, sizeof(p->mod_name), "%s", mod_name);
	snprintf(p->pool_name, sizeof(p->pool_name), "%s", pool_name);
	if (pool_id) {
		p->pool_id = *pool_id;
		p->has_pool_id = 1;
	}
	p->num_containers = num_containers;
	p->kv_size = (uint32_t)kv_size;
	char *dst = (char *)(p + 1);
	for (uint32_t i = 0; i < 2 * num_kv; i++) {
		size_t n = strlen(kv[i]) + 1;
		memcpy(dst, kv[i], n);
		dst += n;
	}
	rc = client_run(c, &t);
	if (!t)
		return rc;
	if (rc == 0 && out)
		*out = p->pool_id;
	copy_why(why, why_len, p->why);
	chi_task_free(c, t);
	return rc;
}

int chi_admin_destroy_pool(struct chi_client *c, struct chi_pool_id pool_id, char *why,
			   size_t why_len)
{
	struct chi_admin_destroy_pool_params *p;
	struct chi_task *t;

	copy_why(why, why_len, "");
	int rc = admin_task(c, CHI_ADMIN_DESTROY_POOL, sizeof(*p), &t);
	if (rc)
		return rc;
	p = chi_task_params(t);
	p->pool_id = pool_id;
	rc = client_run(c, &t);
	if (!t)
		return rc;
	copy_why(why, why_len, p->why);
	chi_task_free(c, t);
	return rc;
}

int chi_admin_list_pools(struct chi_client *c, struct chi_pool_info *out, uint32_t max,
			 uint32_t *count)
{
	return chi_admin_list_pools_on(c, CHI_ADMIN_THIS_NODE, out, max, count);
}

int chi_admin_list_pools_on(struct chi_client *c, uint32_t node, struct chi_pool_info *out,
			    uint32_t max, uint32_t *count)
{
	struct chi_admin_list_pools_params *p;
	struct chi_task *t;
	struct chi_pool_info *buf = chi_buf_alloc(c, (size_t)(max ? max : 1) * sizeof(*out));

	if (!buf)
		return -ENOMEM;
	int rc = admin_task_on(c, node, CHI_ADMIN_LIST_POOLS, sizeof(*p), &t);
	if (rc) {
		chi_buf_free(c, buf);
		return rc;
	}
	p = chi_task_params(t);
	chi_bulk_from_ptr(c, buf, (uint64_t)max * sizeof(*out), &p->out);
	rc = client_run(c, &t);
	if (!t) {
		if (rc != -ECONNRESET) /* a dead runtime may still write buf: leave it */
			chi_buf_free(c, buf);
		return rc;
	}
	if (rc == 0) {
		*count = p->count;
		memcpy(out, buf, (size_t)(p->count < max ? p->count : max) * sizeof(*out));
	}
	chi_task_free(c, t);
	chi_buf_free(c, buf);
	return rc;
}

int chi_admin_pool_stats(struct chi_client *c, struct chi_pool_id pool_id,
			 struct chi_pool_info *info, uint64_t *per_container, uint32_t max)
{
	struct chi_admin_pool_stats_params *p;
	struct chi_task *t;
	uint64_t *buf = max ? chi_buf_alloc(c, (size_t)max * sizeof(uint64_t)) : NULL;

	if (max && !buf)
		return -ENOMEM;
	int rc = admin_task(c, CHI_ADMIN_POOL_STATS, sizeof(*p), &t);
	if (rc) {
		chi_buf_free(c, buf);
		return rc;
	}
	p = chi_task_params(t);
	p->pool_id = pool_id;
	if (buf)
		chi_bulk_from_ptr(c, buf, (uint64_t)max * sizeof(uint64_t), &p->container_tasks);
	rc = client_run(c, &t);
	if (!t) {
		if (rc != -ECONNRESET)
			chi_buf_free(c, buf);
		return rc;
	}
	if (rc == 0) {
		*info = p->info;
		if (buf)
			memcpy(per_container, buf, (size_t)max * sizeof(uint64_t));
	}
	chi_task_free(c, t);
	chi_buf_free(c, buf);
	return rc;
}

int chi_admin_pool_latency(struct chi_client *c, struct chi_pool_id pool_id, uint64_t *hist)
{
	return chi_admin_pool_latency_on(c, CHI_ADMIN_THIS_NODE, pool_id, hist);
}

int chi_admin_pool_latency_on(struct chi_client *c, uint32_t node, struct chi_pool_id pool_id,
			      uint64_t *hist)
{
	struct chi_admin_pool_stats_params *p;
	struct chi_task *t;
	int rc = admin_task_on(c, node, CHI_ADMIN_POOL_STATS, sizeof(*p), &t);
	if (rc)
		return rc;
	p = chi_task_params(t);
	p->pool_id = pool_id;
	rc = client_run(c, &t);
	if (rc == 0)
		memcpy(hist, p->latency_log2_ns, sizeof(p->latency_log2_ns));
	if (t)
		chi_task_free(c, t);
	return rc;
}

int chi_admin_locate_pool(struct chi_client *c, struct chi_pool_id pool_id, uint32_t *nodes,
			  uint32_t max, uint32_t *count)
{
	struct chi_admin_locate_pool_params *p;
	struct chi_task *t;
	if ((max && !nodes) || !count)
		return -EINVAL;
	uint32_t *buf = max ? chi_buf_alloc(c, (size_t)max * sizeof(uint32_t)) : NULL;
	if (max && !buf)
		return -ENOMEM;
	int rc = admin_task(c, CHI_ADMIN_LOCATE_POOL, sizeof(*p), &t);
	if (rc) {
		chi_buf_free(c, buf);
		return rc;
	}
	p = chi_task_params(t);
	p->pool_id = pool_id;
	if (buf)
		chi_bulk_from_ptr(c, buf, (uint64_t)max * sizeof(uint32_t), &p->nodes);
	rc = client_run(c, &t);
	if (!t) {
		if (rc != -ECONNRESET)
			chi_buf_free(c, buf);
		return rc;
	}
	if (rc == 0) {
		*count = p->num_containers;
		if (buf)
			memcpy(nodes, buf,
			       (size_t)(p->num_containers < max ? p->num_containers : max) *
				       sizeof(uint32_t));
	}
	chi_task_free(c, t);
	chi_buf_free(c, buf);
	return rc;
}
