/* The handler API of include/chimaera/module.h, in one place: every function a module's
 * handler (or create/destroy/monitor callback) may call. Each is a short entry into the part
 * of the runtime that does the work:
 *   requests and containers  here (struct chi_request in runtime_internal.h)
 *   yielding, sleeping, park  yield.c       (tasks on worker coroutines)
 *   subtasks and awaiting     subtask.c     (records in the runtime's private region)
 *   files and errors          pool_manager.c (runtime.data_dir, create-time reasons)
 * module.h documents the contract of each; the comments here say only what is not there. */
#include <stdarg.h>
#include <string.h>

#include <chimaera/module.h>

#include "common/config.h"
#include "pool_manager.h"
#include "remote.h"
#include "runtime_internal.h"

/* ---- the request ---- */

void *chi_req_params(struct chi_request *req, uint32_t *size)
{
	*size = req->params_size;
	return req->params;
}

const struct chi_task *chi_req_task(struct chi_request *req)
{
	return req->task;
}

void *chi_req_bulk(struct chi_request *req, const struct chi_bulk *bulk)
{
	struct chi_bulk b;
	memcpy(&b, bulk, sizeof(b)); /* one read of an untrusted descriptor */
	/* A peer's task lies in the runtime's own region: its descriptors may name its own
	 * block only (those of declared fields were pointed there), never other tasks' data. */
	if (rt_remote_is_peer_source(req->client))
		return rt_remote_task_range(req->task, b.offset, b.length);
	return shm_seg_range(req->client->base, &req->client->layout, b.offset, b.length);
}

struct chi_container *chi_req_container(struct chi_request *req)
{
	return req->container;
}

/* ---- the container ---- */

void *chi_container_state(struct chi_container *c)
{
	return c->state;
}

uint32_t chi_container_id(const struct chi_container *c)
{
	return c->id;
}

uint32_t chi_container_count(const struct chi_container *c)
{
	return c->pool->num_containers;
}

const char *chi_container_pool_name(const struct chi_container *c)
{
	return c->pool->name;
}

struct chi_pool_id chi_container_pool_id(const struct chi_container *c)
{
	return c->pool->id;
}

void chi_container_error(const struct chi_container *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	rt_container_verror(c, fmt, ap);
	va_end(ap);
}

const char *chi_runtime_data_dir(void)
{
	return rt_data_dir();
}

int chi_module_parse_size(const char *s, uint64_t *out)
{
	return s ? parse_size(s, out) : -EINVAL;
}

/* ---- cooperative waiting (yield.c) ---- */

int chi_yield(struct chi_request *req)
{
	return rt_yield_now(req);
}

int chi_sleep_us(struct chi_request *req, uint64_t usec)
{
	return rt_yield_sleep(req, usec);
}

struct chi_park *chi_park_prepare(struct chi_request *req)
{
	return rt_park_prepare(req);
}

int chi_park(struct chi_request *req, struct chi_park *p)
{
	return rt_park(req, p);
}

void chi_unpark(struct chi_park *p, int value)
{
	rt_unpark(p, value);
}

/* ---- subtasks (subtask.c) ---- */

int chi_subtask_alloc(struct chi_request *req, uint32_t params_size, struct chi_task **out)
{
	return rt_subtask_alloc(req, params_size, out);
}

void *chi_subtask_buf(struct chi_request *req, uint64_t size, struct chi_bulk *bulk)
{
	return rt_subtask_buf(req, size, bulk);
}

void chi_subtask_free(struct chi_request *req, void *task_or_buf)
{
	rt_subtask_free(req, task_or_buf);
}

int chi_subtask_submit(struct chi_request *req, struct chi_task *t, struct chi_future *out)
{
	return rt_subtask_submit(req, t, out);
}

int chi_await(struct chi_request *req, struct chi_future *f)
{
	return rt_subtask_await(req, f);
}

int chi_await_all(struct chi_request *req, struct chi_future *f, uint32_t n)
{
	int first = 0;
	for (uint32_t i = 0; i < n; i++) { /* every one, even after a failure */
		int rc = rt_subtask_await(req, &f[i]);
		if (rc && !first)
			first = rc;
	}
	return first;
}
