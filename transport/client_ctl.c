/* A remote client's CONTROL messages (client_ctl.h, docs/wire.md "Remote clients"). */
#include "client_ctl.h"

#include <errno.h>
#include <string.h>

#include "le.h"

void ctl_describe_encode(uint8_t out[CTL_REQ_LEN], struct chi_pool_id pool)
{
	le_put32(out, CTL_DESCRIBE);
	le_put32(out + 4, 0);
	le_put32(out + 8, pool.major);
	le_put32(out + 12, pool.minor);
}

int ctl_describe_decode(const void *data, size_t len, struct chi_pool_id *pool)
{
	const uint8_t *p = data;
	if (!p || len != CTL_REQ_LEN || le_get32(p) != CTL_DESCRIBE || le_get32(p + 4) != 0)
		return -EPROTO;
	pool->major = le_get32(p + 8);
	pool->minor = le_get32(p + 12);
	return 0;
}

static int listed(const struct chi_method_desc *m)
{
	return m->num_bulk && m->num_bulk <= WIRE_MAX_BULK && m->bulk;
}

size_t ctl_described_size(const struct chi_method_desc *methods, uint32_t n)
{
	size_t len = CTL_REPLY_FIXED;
	for (uint32_t i = 0; i < n; i++)
		if (listed(&methods[i]))
			len += CTL_METHOD_LEN + (size_t)methods[i].num_bulk * CTL_FIELD_LEN;
	return len;
}

size_t ctl_described_encode(uint8_t *out, int32_t rc, struct chi_pool_id pool,
			    const struct chi_method_desc *methods, uint32_t n)
{
	uint8_t *p = out + CTL_REPLY_FIXED;
	uint32_t count = 0;
	for (uint32_t i = 0; i < n; i++) {
		const struct chi_method_desc *m = &methods[i];
		if (!listed(m))
			continue;
		count++;
		le_put32(p, m->id);
		le_put32(p + 4, m->num_bulk);
		p += CTL_METHOD_LEN;
		for (uint32_t j = 0; j < m->num_bulk; j++, p += CTL_FIELD_LEN) {
			le_put32(p, m->bulk[j].offset);
			le_put32(p + 4, m->bulk[j].dir);
			le_put32(p + 8, m->bulk[j].out_len_offset);
			le_put32(p + 12, 0);
		}
	}
	le_put32(out, CTL_DESCRIBED);
	le_put32(out + 4, (uint32_t)rc);
	le_put32(out + 8, pool.major);
	le_put32(out + 12, pool.minor);
	le_put32(out + 16, count);
	le_put32(out + 20, 0);
	return (size_t)(p - out);
}

int ctl_described_decode(const void *data, size_t len, int32_t *rc, struct chi_pool_id *pool,
			 struct ctl_method_bulk *out, uint32_t max, uint32_t *count)
{
	const uint8_t *d = data;
	if (!d || len < CTL_REPLY_FIXED || le_get32(d) != CTL_DESCRIBED || le_get32(d + 20) != 0)
		return -EPROTO;
	int32_t r = (int32_t)le_get32(d + 4);
	uint32_t n = le_get32(d + 16);
	if (r > 0 || r < WIRE_RC_MIN || (r != 0 && n != 0))
		return -EPROTO;
	/* Each entry takes at least one method header and one field: a count the bytes cannot
	 * hold is refused before the walk. */
	if (n > (len - CTL_REPLY_FIXED) / (CTL_METHOD_LEN + CTL_FIELD_LEN))
		return -EPROTO;
	size_t off = CTL_REPLY_FIXED;
	for (uint32_t i = 0; i < n; i++) {
		if (len - off < CTL_METHOD_LEN)
			return -EPROTO;
		uint32_t id = le_get32(d + off), nb = le_get32(d + off + 4);
		off += CTL_METHOD_LEN;
		if (nb == 0 || nb > WIRE_MAX_BULK || (len - off) / CTL_FIELD_LEN < nb)
			return -EPROTO;
		struct ctl_method_bulk *e = i < max ? &out[i] : NULL;
		if (e) {
			e->id = id;
			e->num = nb;
		}
		for (uint32_t j = 0; j < nb; j++, off += CTL_FIELD_LEN) {
			uint32_t dir = le_get32(d + off + 4);
			if (dir < CHI_BULK_IN || dir > CHI_BULK_INOUT || le_get32(d + off + 12) != 0)
				return -EPROTO;
			if (e)
				e->f[j] = (struct chi_bulk_field){ le_get32(d + off), dir,
								   le_get32(d + off + 8), 0 };
		}
	}
	if (off != len)
		return -EPROTO;
	*rc = r;
	pool->major = le_get32(d + 8);
	pool->minor = le_get32(d + 12);
	*count = n;
	return 0;
}
