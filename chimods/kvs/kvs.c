/* kvs: a hash table per container. An entry is one allocation holding key and value, so a
 * Put copies the value once (from the client's arena into the store) and a Get once (out).
 * Compose keys: none (initial_buckets optional: a power of two, default 1024). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include <chimaera/kvs.h>
#include <chimaera/module.h>

struct entry {
	struct entry *next;
	uint64_t hash;
	uint32_t key_len;
	uint64_t value_len;
	unsigned char data[]; /* key, then value */
};

struct kvs_state {
	struct entry **buckets;
	uint64_t nbuckets; /* power of two */
	uint64_t count;
};

static int kvs_create(struct chi_container *c, const struct chi_compose_kv *kv, uint32_t n)
{
	struct kvs_state *s = chi_container_state(c);
	uint64_t buckets = 1024;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(kv[i].key, "initial_buckets") == 0) {
			char *end;
			buckets = strtoull(kv[i].value, &end, 10);
			if (*end || buckets == 0 || (buckets & (buckets - 1)) || buckets > (1u << 26))
				return -EINVAL;
		}
	s->buckets = calloc(buckets, sizeof(*s->buckets));
	if (!s->buckets)
		return -ENOMEM;
	s->nbuckets = buckets;
	return 0;
}

static void kvs_destroy(struct chi_container *c)
{
	struct kvs_state *s = chi_container_state(c);
	for (uint64_t b = 0; b < s->nbuckets; b++)
		for (struct entry *e = s->buckets[b], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	free(s->buckets);
	s->buckets = NULL;
}

static struct entry **find(struct kvs_state *s, uint64_t h, const void *key, uint32_t len)
{
	struct entry **pp = &s->buckets[h & (s->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->key_len == len && !memcmp((*pp)->data, key, len))
			break;
	return pp;
}

/* Double the table at load factor 1; stays put if memory is short (chains just grow). */
static void grow(struct kvs_state *s)
{
	uint64_t n = s->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (!b)
		return;
	for (uint64_t i = 0; i < s->nbuckets; i++)
		for (struct entry *e = s->buckets[i], *next; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(s->buckets);
	s->buckets = b;
	s->nbuckets = n;
}

/* Key and params, read once from untrusted memory. */
static int load(struct chi_request *req, struct chi_kvs_params *p, const void **key)
{
	uint32_t size;
	memcpy(p, chi_req_params(req, &size), sizeof(*p));
	if (p->key.length == 0 || p->key.length > CHI_KVS_MAX_KEY)
		return -EINVAL;
	*key = chi_req_bulk(req, &p->key);
	return *key ? 0 : -EFAULT;
}

static int kvs_put(struct chi_request *req)
{
	struct kvs_state *s = chi_container_state(chi_req_container(req));
	struct chi_kvs_params p;
	const void *key;
	int rc = load(req, &p, &key);
	if (rc)
		return rc;
	const void *value = chi_req_bulk(req, &p.value);
	if (!value)
		return -EFAULT;
	uint32_t klen = (uint32_t)p.key.length;
	uint64_t h = XXH3_64bits(key, klen);
	struct entry **pp = find(s, h, key, klen);
	if (*pp && (*pp)->value_len == p.value.length) {
		/* Overwrite of the same size: copy in place, no new allocation (and, for large
		 * values, no fresh pages to fault in). */
		memcpy((*pp)->data + klen, value, p.value.length);
		return 0;
	}
	struct entry *e = malloc(sizeof(*e) + klen + p.value.length);
	if (!e)
		return -ENOMEM;
	e->hash = h;
	e->key_len = klen;
	e->value_len = p.value.length;
	memcpy(e->data, key, klen);
	memcpy(e->data + klen, value, p.value.length);
	if (*pp) { /* replace */
		e->next = (*pp)->next;
		free(*pp);
		*pp = e;
		return 0;
	}
	e->next = NULL;
	*pp = e;
	if (++s->count > s->nbuckets)
		grow(s);
	return 0;
}

static int kvs_get(struct chi_request *req)
{
	struct kvs_state *s = chi_container_state(chi_req_container(req));
	struct chi_kvs_params p;
	const void *key;
	int rc = load(req, &p, &key);
	if (rc)
		return rc;
	uint32_t size;
	struct chi_kvs_params *out = chi_req_params(req, &size);
	struct entry *e = *find(s, XXH3_64bits(key, p.key.length), key, (uint32_t)p.key.length);
	if (!e)
		return -ENOENT;
	out->value_len = e->value_len;
	if (e->value_len > p.value.length)
		return -ENOSPC;
	void *dst = chi_req_bulk(req, &(struct chi_bulk){ p.value.offset, e->value_len });
	if (!dst)
		return -EFAULT;
	memcpy(dst, e->data + e->key_len, e->value_len);
	return 0;
}

static int kvs_delete(struct chi_request *req)
{
	struct kvs_state *s = chi_container_state(chi_req_container(req));
	struct chi_kvs_params p;
	const void *key;
	int rc = load(req, &p, &key);
	if (rc)
		return rc;
	struct entry **pp = find(s, XXH3_64bits(key, p.key.length), key, (uint32_t)p.key.length);
	if (!*pp)
		return -ENOENT;
	struct entry *e = *pp;
	*pp = e->next;
	free(e);
	s->count--;
	return 0;
}

/* cursor = bucket << 24 | position in its chain. */
static int kvs_scan(struct chi_request *req)
{
	struct chi_container *c = chi_req_container(req);
	struct kvs_state *s = chi_container_state(c);
	uint32_t size;
	struct chi_kvs_scan_params *io = chi_req_params(req, &size);
	struct chi_kvs_scan_params p;
	memcpy(&p, io, sizeof(p));
	unsigned char *out = chi_req_bulk(req, &p.out);
	if (!out)
		return -EFAULT;
	uint64_t bucket = p.cursor >> 24, pos = p.cursor & 0xffffff, used = 0;
	uint32_t count = 0;
	for (; bucket < s->nbuckets; bucket++, pos = 0) {
		uint64_t i = 0;
		for (struct entry *e = s->buckets[bucket]; e; e = e->next, i++) {
			if (i < pos)
				continue;
			uint64_t rec = (4 + (uint64_t)e->key_len + 3) & ~3ull;
			if (used + rec > p.out.length) {
				if (count == 0)
					return -ENOSPC; /* not even one key fits */
				goto out;
			}
			memcpy(out + used, &e->key_len, 4);
			memcpy(out + used + 4, e->data, e->key_len);
			used += rec;
			count++;
			pos = i + 1;
		}
	}
out:
	io->cursor = bucket << 24 | pos;
	io->used = used;
	io->count = count;
	io->done = bucket >= s->nbuckets;
	io->num_containers = chi_container_count(c);
	return 0;
}

/* The bulk buffers each method moves (module.h: checked by the runtime, staged across nodes). */
#define KVS_FIELD(f) offsetof(struct chi_kvs_params, f)
static const struct chi_bulk_field key_bulk[] = {
	{ KVS_FIELD(key), CHI_BULK_IN, 0, 0 },
};
static const struct chi_bulk_field put_bulk[] = {
	{ KVS_FIELD(key), CHI_BULK_IN, 0, 0 },
	{ KVS_FIELD(value), CHI_BULK_IN, 0, 0 },
};
static const struct chi_bulk_field get_bulk[] = {
	{ KVS_FIELD(key), CHI_BULK_IN, 0, 0 },
	{ KVS_FIELD(value), CHI_BULK_OUT, KVS_FIELD(value_len), 0 },
};
static const struct chi_bulk_field scan_bulk[] = {
	{ offsetof(struct chi_kvs_scan_params, out), CHI_BULK_OUT,
	  offsetof(struct chi_kvs_scan_params, used), 0 },
};

static const struct chi_method_desc kvs_methods[] = {
	{ CHI_KVS_PUT, "put", kvs_put, 0, sizeof(struct chi_kvs_params), NULL, put_bulk, 2 },
	{ CHI_KVS_GET, "get", kvs_get, CHI_METHOD_READ_ONLY, sizeof(struct chi_kvs_params), NULL,
	  get_bulk, 2 },
	{ CHI_KVS_DELETE, "delete", kvs_delete, 0, sizeof(struct chi_kvs_params), NULL, key_bulk,
	  1 },
	{ CHI_KVS_SCAN, "scan", kvs_scan, CHI_METHOD_READ_ONLY,
	  sizeof(struct chi_kvs_scan_params), NULL, scan_bulk, 1 },
};

static const struct chi_module_desc kvs_desc = {
	.abi_version = CHI_MODULE_ABI_VERSION,
	.name = "kvs",
	.state_size = sizeof(struct kvs_state),
	.create = kvs_create,
	.destroy = kvs_destroy,
	.methods = kvs_methods,
	.num_methods = sizeof(kvs_methods) / sizeof(kvs_methods[0]),
};

CHI_MODULE_DEFINE(kvs_desc)
