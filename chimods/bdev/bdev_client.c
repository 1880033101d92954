/* Typed wrappers for the bdev module (include/chimaera/bdev.h): libchimaera_bdev_client. Like
 * any module's client library it sees only the public API, so it builds out of tree too. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <chimaera/bdev.h>

/* A bdev task for @container with @size bytes of parameters copied from @params and room for
 * @bounce more bytes after them. */
static int bdev_task(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		     uint32_t method, const void *params, uint32_t size, struct chi_task **out)
{
	int rc = chi_task_alloc(c, size, out);
	if (rc)
		return rc;
	(*out)->pool = pool;
	(*out)->method = method;
	(*out)->query = chi_query_direct_id(container);
	memcpy(chi_task_params(*out), params, size);
	return 0;
}

/* Submit *@t and wait for it. @return its rc. *@t becomes NULL when the caller must not touch
 * the task any more: the submit failed (it is freed here) or the runtime died (it may still
 * be written: it is abandoned). Otherwise read the outputs, then chi_task_free() it. */
static int run(struct chi_client *c, struct chi_task **t)
{
	struct chi_future f;
	int rc = chi_submit(c, *t, &f);
	if (rc) {
		chi_task_free(c, *t);
		*t = NULL;
		return rc;
	}
	rc = chi_wait(&f);
	if (rc == -ECONNRESET)
		*t = NULL;
	return rc;
}

/* Run a task with no bulk data; its parameters are copied back into @params. */
static int call(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		uint32_t method, void *params, uint32_t size)
{
	struct chi_task *t;
	int rc = bdev_task(c, pool, container, method, params, size, &t);
	if (rc)
		return rc;
	rc = run(c, &t);
	if (!t)
		return rc;
	memcpy(params, chi_task_params(t), size);
	chi_task_free(c, t);
	return rc;
}

int chi_bdev_allocate(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		      uint64_t len, uint64_t *offset, uint64_t *got)
{
	struct chi_bdev_alloc_params p = { 0, len };
	int rc = call(c, pool, container, CHI_BDEV_ALLOCATE, &p, sizeof(p));
	if (rc == 0) {
		*offset = p.offset;
		if (got)
			*got = p.length;
	}
	return rc;
}

int chi_bdev_free(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		  uint64_t offset, uint64_t len)
{
	struct chi_bdev_alloc_params p = { offset, len };
	return call(c, pool, container, CHI_BDEV_FREE, &p, sizeof(p));
}

/* Read or write: @buf in place when it is in the arena, else bounced through an arena
 * buffer of its own. Not through the task's parameters: they stay small, so that the task
 * crosses to another node (whose parameters are bounded, WIRE_DEFAULT_MAX_PARAMS) with its
 * data as a bulk section, however large. */
static int rw(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
	      uint32_t method, uint64_t offset, void *buf, uint64_t len)
{
	struct chi_bdev_io_params p = { offset, { 0, len } };
	void *bounce = NULL;
	if (chi_bulk_from_ptr(c, buf, len, &p.buf) != 0) {
		if (len > SIZE_MAX || !(bounce = chi_buf_alloc(c, (size_t)len)))
			return -ENOMEM;
		chi_bulk_from_ptr(c, bounce, len, &p.buf);
		if (method == CHI_BDEV_WRITE)
			memcpy(bounce, buf, len);
	}
	struct chi_task *t = NULL;
	int rc = bdev_task(c, pool, container, method, &p, sizeof(p), &t);
	if (rc == 0) {
		rc = run(c, &t);
		if (t && rc == 0 && bounce && method == CHI_BDEV_READ)
			memcpy(buf, bounce, len);
		if (t)
			chi_task_free(c, t);
	}
	/* A task the runtime may still write (it died mid-call: t is NULL, rc -ECONNRESET)
	 * keeps its buffer, as it keeps the task. */
	if (bounce && (t || rc != -ECONNRESET))
		chi_buf_free(c, bounce);
	return rc;
}

int chi_bdev_write(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		   uint64_t offset, const void *buf, uint64_t len)
{
	return rw(c, pool, container, CHI_BDEV_WRITE, offset, (void *)buf, len);
}

int chi_bdev_read(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		  uint64_t offset, void *buf, uint64_t len)
{
	return rw(c, pool, container, CHI_BDEV_READ, offset, buf, len);
}

int chi_bdev_stats(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		   struct chi_bdev_stats *out)
{
	memset(out, 0, sizeof(*out));
	return call(c, pool, container, CHI_BDEV_STATS, out, sizeof(*out));
}
