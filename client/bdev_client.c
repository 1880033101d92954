/* Typed wrappers for the bdev module (include/chimaera/bdev.h). */
#include <errno.h>
#include <string.h>

#include <chimaera/bdev.h>

/* Run one task synchronously: params are copied in, and back out on completion. */
static int call(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		uint32_t method, void *params, uint32_t size, uint64_t bounce, void **bounce_out,
		struct chi_task **keep)
{
	struct chi_task *t;
	struct chi_future f;
	int rc = chi_task_alloc(c, (uint32_t)(size + bounce), &t);
	if (rc)
		return rc;
	t->pool = pool;
	t->method = method;
	t->query = chi_query_direct_id(container);
	memcpy(chi_task_params(t), params, size);
	if (bounce_out)
		*bounce_out = (char *)chi_task_params(t) + size;
	if (keep) { /* the caller fills the bounce area, submits and frees */
		*keep = t;
		return 0;
	}
	rc = chi_submit(c, t, &f);
	if (rc) {
		chi_task_free(c, t);
		return rc;
	}
	rc = chi_wait(&f);
	if (rc == -ECONNRESET)
		return rc;
	memcpy(params, chi_task_params(t), size);
	chi_task_free(c, t);
	return rc;
}

int chi_bdev_allocate(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
		      uint64_t len, uint64_t *offset, uint64_t *got)
{
	struct chi_bdev_alloc_params p = { 0, len };
	int rc = call(c, pool, container, CHI_BDEV_ALLOCATE, &p, sizeof(p), 0, NULL, NULL);
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
	return call(c, pool, container, CHI_BDEV_FREE, &p, sizeof(p), 0, NULL, NULL);
}

static int rw(struct chi_client *c, struct chi_pool_id pool, uint32_t container,
	      uint32_t method, uint64_t offset, void *buf, uint64_t len)
{
	struct chi_bdev_io_params p = { offset, { 0, len } };
	struct chi_task *t;
	struct chi_future f;
	void *bounce;

	if (chi_bulk_from_ptr(c, buf, len, &p.buf) == 0)
		return call(c, pool, container, method, &p, sizeof(p), 0, NULL, NULL);
	if (len > UINT32_MAX - sizeof(p))
		return -EINVAL;
	int rc = call(c, pool, container, method, &p, sizeof(p), len, &bounce, &t);
	if (rc)
		return rc;
	struct chi_bdev_io_params *tp = chi_task_params(t);
	chi_bulk_from_ptr(c, bounce, len, &tp->buf);
	if (method == CHI_BDEV_WRITE)
		memcpy(bounce, buf, len);
	rc = chi_submit(c, t, &f);
	if (rc) {
		chi_task_free(c, t);
		return rc;
	}
	rc = chi_wait(&f);
	if (rc == -ECONNRESET)
		return rc;
	if (rc == 0 && method == CHI_BDEV_READ)
		memcpy(buf, bounce, len);
	chi_task_free(c, t);
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
	return call(c, pool, container, CHI_BDEV_STATS, out, sizeof(*out), 0, NULL, NULL);
}
