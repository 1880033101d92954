/* Typed wrappers for the kvs module (include/chimaera/kvs.h): libchimaera_kvs_client. Like
 * any module's client library it sees only the public API, so it builds out of tree too. */
#include <errno.h>
#include <string.h>

#include <xxhash.h>

#include <chimaera/kvs.h>

uint64_t chi_kvs_hash(const void *key, size_t len)
{
	return XXH3_64bits(key, len);
}

/* A task whose block also holds the key (and, when @bounce, room for the value). The value's
 * room lies past the parameters (params_size covers the struct and the key only), so that a
 * task sent to another node carries the value once, as its bulk data, and its parameters
 * stay small. */
static int kvs_task(struct chi_client *c, struct chi_pool_id pool, uint32_t method,
		    const void *key, size_t klen, uint64_t bounce, struct chi_task **out)
{
	struct chi_kvs_params *p;
	struct chi_task *t;

	if (!key || klen == 0 || klen > CHI_KVS_MAX_KEY)
		return -EINVAL;
	uint64_t size = sizeof(*p) + klen + bounce;
	if (size > UINT32_MAX)
		return -EINVAL;
	int rc = chi_task_alloc(c, (uint32_t)size, &t);
	if (rc)
		return rc;
	t->pool = pool;
	t->method = method;
	t->query = chi_query_direct_hash(chi_kvs_hash(key, klen));
	p = chi_task_params(t);
	memcpy(p + 1, key, klen);
	chi_bulk_from_ptr(c, p + 1, klen, &p->key);
	t->params_size = (uint32_t)(sizeof(*p) + klen); /* the bounce room is the block's */
	*out = t;
	return 0;
}

int chi_kvs_put_async(struct chi_client *c, struct chi_pool_id pool, const void *key,
		      size_t key_len, const void *value, uint64_t value_len,
		      struct chi_future *out)
{
	struct chi_bulk in_arena;
	struct chi_task *t;
	int zero_copy = chi_bulk_from_ptr(c, value, value_len, &in_arena) == 0;

	int rc = kvs_task(c, pool, CHI_KVS_PUT, key, key_len, zero_copy ? 0 : value_len, &t);
	if (rc)
		return rc;
	struct chi_kvs_params *p = chi_task_params(t);
	if (zero_copy) {
		p->value = in_arena;
	} else {
		char *dst = (char *)(p + 1) + key_len;
		memcpy(dst, value, value_len);
		chi_bulk_from_ptr(c, dst, value_len, &p->value);
	}
	rc = chi_submit(c, t, out);
	if (rc)
		chi_task_free(c, t);
	return rc;
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

static int finish(struct chi_client *c, struct chi_future *f)
{
	int rc = chi_wait(f);
	if (rc != -ECONNRESET)
		chi_task_free(c, f->task);
	return rc;
}

int chi_kvs_put(struct chi_client *c, struct chi_pool_id pool, const void *key, size_t key_len,
		const void *value, uint64_t value_len)
{
	struct chi_future f;
	int rc = chi_kvs_put_async(c, pool, key, key_len, value, value_len, &f);
	return rc ? rc : finish(c, &f);
}

int chi_kvs_get(struct chi_client *c, struct chi_pool_id pool, const void *key, size_t key_len,
		void *buf, uint64_t cap, uint64_t *len)
{
	struct chi_bulk in_arena;
	struct chi_task *t;
	int zero_copy = chi_bulk_from_ptr(c, buf, cap, &in_arena) == 0;

	int rc = kvs_task(c, pool, CHI_KVS_GET, key, key_len, zero_copy ? 0 : cap, &t);
	if (rc)
		return rc;
	struct chi_kvs_params *p = chi_task_params(t);
	char *bounce = (char *)(p + 1) + key_len;
	if (zero_copy)
		p->value = in_arena;
	else
		chi_bulk_from_ptr(c, bounce, cap, &p->value);
	rc = run(c, &t);
	if (!t)
		return rc;
	if (len)
		*len = p->value_len;
	if (rc == 0 && !zero_copy)
		memcpy(buf, bounce, p->value_len);
	chi_task_free(c, t);
	return rc;
}

int chi_kvs_delete(struct chi_client *c, struct chi_pool_id pool, const void *key, size_t key_len)
{
	struct chi_task *t;
	int rc = kvs_task(c, pool, CHI_KVS_DELETE, key, key_len, 0, &t);
	if (rc)
		return rc;
	rc = run(c, &t);
	if (t)
		chi_task_free(c, t);
	return rc;
}

#define SCAN_BUF (256u * 1024u)

int chi_kvs_scan(struct chi_client *c, struct chi_pool_id pool, chi_kvs_scan_fn fn, void *ctx)
{
	struct chi_kvs_scan_params *p;
	struct chi_future f;
	struct chi_task *t;
	unsigned char *buf = chi_buf_alloc(c, SCAN_BUF);
	uint32_t containers = 1;
	int rc = buf ? chi_task_alloc(c, sizeof(*p), &t) : -ENOMEM;

	if (rc) {
		chi_buf_free(c, buf);
		return rc;
	}
	t->pool = pool;
	t->method = CHI_KVS_SCAN;
	p = chi_task_params(t);
	for (uint32_t id = 0; rc == 0 && id < containers; id++) {
		uint64_t cursor = 0;
		for (;;) {
			memset(p, 0, sizeof(*p));
			chi_bulk_from_ptr(c, buf, SCAN_BUF, &p->out);
			p->cursor = cursor;
			t->query = chi_query_direct_id(id);
			rc = chi_submit(c, t, &f);
			if (rc == 0)
				rc = chi_wait(&f);
			if (rc == -ECONNRESET)
				return rc;
			if (rc)
				break;
			containers = p->num_containers;
			uint64_t off = 0, used = p->used < SCAN_BUF ? p->used : SCAN_BUF;
			for (uint32_t k = 0; rc == 0 && k < p->count && off + 4 <= used; k++) {
				uint32_t len;
				memcpy(&len, buf + off, 4);
				if (len > used - off - 4)
					break;
				rc = fn(buf + off + 4, len, ctx);
				off += (4 + (uint64_t)len + 3) & ~3ull;
			}
			if (rc || p->done)
				break;
			cursor = p->cursor;
		}
	}
	chi_task_free(c, t);
	chi_buf_free(c, buf);
	return rc;
}
