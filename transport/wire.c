/* The node-to-node wire format: encoder, strict decoder, receiver-side bulk checks.
 * docs/wire.md is the specification; this file follows it section by section. */
#include "wire.h"

#include <errno.h>
#include <string.h>

#include "le.h"

/* The task header and the parameters cross the wire as they lie in memory; the frame
 * fields are written byte by byte, but a big-endian node would still read the task header
 * wrong. Supporting one means byte-swapping the header and leaving params to the modules. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the wire is little-endian");
_Static_assert(WIRE_OUT_BUF % WIRE_ALIGN == 0, "the fixed part keeps params aligned");
_Static_assert(WIRE_MAX_BULK == CHI_MAX_BULK_FIELDS, "every declared bulk field can travel");
_Static_assert((WIRE_HEADER_SIZE + WIRE_TASK_FIXED) % WIRE_ALIGN == 0, "aligned table");
_Static_assert((WIRE_HEADER_SIZE + WIRE_REPLY_FIXED) % WIRE_ALIGN == 0, "aligned table");
_Static_assert(WIRE_BULK_ENTRY_SIZE % WIRE_ALIGN == 0, "entries keep the header aligned");
_Static_assert(CHI_BULK_IN == 1 && CHI_BULK_OUT == 2 && CHI_BULK_INOUT == 3,
	       "direction bits: IN 1, OUT 2");

/* Frame header offsets (docs/wire.md, "Frame header"). */
enum {
	H_MAGIC = 0,
	H_MAJOR = 4,
	H_MINOR = 5,
	H_TYPE = 6,
	H_FLAGS = 7,
	H_HEADER_LEN = 8,
	H_RESERVED0 = 10,
	H_PAYLOAD_LEN = 12,
	H_COOKIE = 16,
	H_SRC_NODE = 24,
	H_SRC_WORKER = 28,
	H_DST_WORKER = 30,
	H_EPOCH = 32,
	H_RESERVED1 = 36, /* 12 bytes, to the end of the header */
};

/* ---- the frame type registry ---- */

enum body_kind { BODY_EMPTY, BODY_OPAQUE, BODY_CLOSE, BODY_TASK, BODY_REPLY };
enum body_bound { BOUND_NONE, BOUND_HELLO, BOUND_CONTROL };

struct type_info {
	const char *name;
	uint8_t body;	      /* enum body_kind */
	uint8_t bound;	      /* enum body_bound: which limit caps an opaque body */
	uint32_t min_payload; /* bytes; the maximum follows from the body and the limits */
};

static const struct type_info types[WIRE_TYPE_COUNT] = {
	[WIRE_HELLO] = {"HELLO", BODY_OPAQUE, BOUND_HELLO, WIRE_OPAQUE_FIXED},
	[WIRE_AUTH] = {"AUTH", BODY_OPAQUE, BOUND_HELLO, WIRE_OPAQUE_FIXED},
	[WIRE_CLOSE] = {"CLOSE", BODY_CLOSE, BOUND_NONE, WIRE_CLOSE_SIZE},
	[WIRE_PING] = {"PING", BODY_EMPTY, BOUND_NONE, 0},
	[WIRE_PONG] = {"PONG", BODY_EMPTY, BOUND_NONE, 0},
	[WIRE_CONTROL] = {"CONTROL", BODY_OPAQUE, BOUND_CONTROL, WIRE_OPAQUE_FIXED},
	[WIRE_TASK] = {"TASK", BODY_TASK, BOUND_NONE, WIRE_TASK_FIXED + CHI_TASK_HEADER_SIZE},
	[WIRE_REPLY] = {"REPLY", BODY_REPLY, BOUND_NONE, WIRE_REPLY_FIXED},
};

static const struct type_info *type_info(unsigned type)
{
	return type > 0 && type < WIRE_TYPE_COUNT ? &types[type] : NULL;
}

static uint64_t align8(uint64_t x)
{
	return (x + WIRE_ALIGN - 1) & ~(uint64_t)(WIRE_ALIGN - 1);
}

static uint64_t opaque_bound(const struct type_info *t, const struct wire_limits *lim)
{
	return t->bound == BOUND_HELLO ? lim->max_hello : lim->max_control;
}

/* The largest payload a frame of type @t may announce under @lim. */
static uint64_t max_payload(const struct type_info *t, const struct wire_limits *lim)
{
	switch (t->body) {
	case BODY_EMPTY:
		return 0;
	case BODY_CLOSE:
		return WIRE_CLOSE_SIZE;
	case BODY_OPAQUE:
		return WIRE_OPAQUE_FIXED + align8(opaque_bound(t, lim));
	default: /* TASK, REPLY: only the frame limit */
		return lim->max_frame - WIRE_HEADER_SIZE;
	}
}







static int all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* ---- limits ---- */

void wire_limits_default(struct wire_limits *lim)
{
	lim->max_frame = WIRE_DEFAULT_MAX_FRAME;
	lim->max_params = WIRE_DEFAULT_MAX_PARAMS;
	lim->max_bulk = WIRE_MAX_BULK;
	lim->max_hello = WIRE_DEFAULT_MAX_HELLO;
	lim->max_control = WIRE_DEFAULT_MAX_CONTROL;
}

/* @lim, or the defaults in @tmp for NULL; NULL when @lim is unusable. */
static const struct wire_limits *limits(const struct wire_limits *lim, struct wire_limits *tmp)
{
	if (!lim) {
		wire_limits_default(tmp);
		return tmp;
	}
	if (lim->max_frame < WIRE_HEADER_SIZE || lim->max_frame > WIRE_MAX_FRAME_CEILING ||
	    lim->max_bulk > WIRE_MAX_BULK)
		return NULL;
	return lim;
}

/* ---- checks shared by the decoder and the encoder ---- */

/* The fixed header, as far as @len bytes of it are present. Fills @m's version (when @m is
 * not NULL) as soon as it is read, so a version error can name the peer's version. */
static int check_header(const uint8_t *b, size_t len, const struct wire_limits *lim,
			struct wire_msg *m)
{
	if (len < H_MAJOR)
		return 0;
	if (le_get32(b + H_MAGIC) != WIRE_MAGIC)
		return WIRE_E_MAGIC;
	if (len <= H_MAJOR)
		return 0;
	if (m) {
		m->version_major = b[H_MAJOR];
		m->version_minor = len > H_MINOR ? b[H_MINOR] : 0;
	}
	if (b[H_MAJOR] != WIRE_VERSION_MAJOR)
		return WIRE_E_VERSION;
	if (len <= H_MINOR)
		return 0;
	if (b[H_MINOR] > WIRE_VERSION_MINOR)
		return WIRE_E_MINOR;
	if (len <= H_TYPE)
		return 0;
	const struct type_info *t = type_info(b[H_TYPE]);
	if (!t)
		return WIRE_E_TYPE;
	if (len <= H_FLAGS)
		return 0;
	if (b[H_FLAGS])
		return WIRE_E_FLAGS;
	if (len < H_RESERVED0)
		return 0;
	if (le_get16(b + H_HEADER_LEN) != WIRE_HEADER_SIZE)
		return WIRE_E_HEADER_LEN;
	if (len < H_PAYLOAD_LEN)
		return 0;
	if (le_get16(b + H_RESERVED0))
		return WIRE_E_RESERVED;
	if (len < H_COOKIE)
		return 0;
	uint64_t payload = le_get32(b + H_PAYLOAD_LEN);
	if (payload % WIRE_ALIGN)
		return WIRE_E_PAYLOAD_ALIGN;
	if (WIRE_HEADER_SIZE + payload > lim->max_frame)
		return WIRE_E_FRAME_SIZE;
	if (payload < t->min_payload || payload > max_payload(t, lim))
		return WIRE_E_TYPE_SIZE;
	if (len < WIRE_HEADER_SIZE)
		return 0;
	if (!all_zero(b + H_RESERVED1, WIRE_HEADER_SIZE - H_RESERVED1))
		return WIRE_E_RESERVED;
	return 0;
}

/* The embedded task header: what a peer may send (the encoder resets the node-local words
 * before it calls this, the decoder insists they were). */
static int check_task_header(const struct chi_task *t, uint32_t frame_params,
			     const struct wire_limits *lim)
{
	if (t->params_size != frame_params)
		return WIRE_E_PARAMS_MISMATCH;
	if (t->params_size > lim->max_params)
		return WIRE_E_PARAMS_SIZE;
	if (t->state != CHI_TASK_SUBMITTED || t->rc != 0)
		return WIRE_E_TASK_STATE;
	if (t->flags)
		return WIRE_E_TASK_FLAGS;
	if (t->query.mode >= CHI_QUERY_MODE_COUNT || t->query.reserved)
		return WIRE_E_TASK_QUERY;
	if (t->reserved0 || t->reserved1)
		return WIRE_E_TASK_RESERVED;
	return 0;
}

/* One bulk table entry, after @*prev_field; adds OUT capacity to @*out_cap. */
static int check_entry(const struct wire_bulk *e, int *prev_field, int is_task,
		       const struct wire_limits *lim, uint64_t *out_cap)
{
	if (e->field >= lim->max_bulk)
		return WIRE_E_BULK_FIELD;
	if ((int)e->field <= *prev_field)
		return WIRE_E_BULK_ORDER;
	*prev_field = e->field;
	if (e->dir < CHI_BULK_IN || e->dir > CHI_BULK_INOUT ||
	    (!is_task && !(e->dir & CHI_BULK_OUT)))
		return WIRE_E_BULK_DIR;
	/* What a handler may write must come back in one REPLY: each capacity, and all OUT
	 * capacities together, fit a frame (this also bounds what a receiver allocates). */
	if (e->capacity > lim->max_frame)
		return WIRE_E_BULK_CAPACITY;
	if (e->dir & CHI_BULK_OUT) {
		*out_cap += e->capacity; /* <= WIRE_MAX_BULK * 2^33: no overflow */
		if (*out_cap > lim->max_frame)
			return WIRE_E_BULK_CAPACITY;
	}
	if (is_task ? e->length != (e->dir & CHI_BULK_IN ? e->capacity : 0)
		    : e->length > e->capacity)
		return WIRE_E_BULK_LENGTH;
	return 0;
}

/* ---- decoder ---- */

/* The bulk table at @p + @table (@nb entries) and the sections after @cursor (the end of
 * the params), to the end of the payload (@n bytes, a multiple of 8). */
static int decode_bulk(const uint8_t *p, uint64_t n, uint64_t table, uint32_t nb, uint64_t cursor,
		       int is_task, const struct wire_limits *lim, struct wire_bulk *out)
{
	int prev = -1;
	uint64_t out_cap = 0;

	for (uint32_t i = 0; i < nb; i++) {
		const uint8_t *e = p + table + (uint64_t)i * WIRE_BULK_ENTRY_SIZE;
		struct wire_bulk *b = &out[i];
		b->field = le_get16(e);
		b->dir = e[2];
		b->capacity = le_get64(e + 8);
		b->length = le_get64(e + 16);
		b->data = NULL;
		if (e[3])
			return WIRE_E_BODY_RESERVED;
		int rc = check_entry(b, &prev, is_task, lim, &out_cap);
		if (rc)
			return rc;
		uint64_t off = le_get32(e + 4);
		if (off < cursor)
			return WIRE_E_BULK_OVERLAP;
		if (b->length > n || off > n - b->length)
			return WIRE_E_BULK_RANGE;
		if (off != align8(cursor))
			return WIRE_E_BULK_OFFSET;
		if (!all_zero(p + cursor, off - cursor))
			return WIRE_E_PADDING;
		if (b->length)
			b->data = p + off;
		cursor = off + b->length;
	}
	if (align8(cursor) != n)
		return WIRE_E_TRAILING; /* cursor <= n and n is aligned: the payload is longer */
	if (!all_zero(p + cursor, n - cursor))
		return WIRE_E_PADDING;
	return 0;
}

static int decode_task(const uint8_t *p, uint64_t n, const struct wire_limits *lim,
		       struct wire_msg *m)
{
	uint32_t psize = le_get32(p);
	uint32_t nb = le_get16(p + 4);

	if (le_get16(p + 6))
		return WIRE_E_BODY_RESERVED;
	if (nb > lim->max_bulk)
		return WIRE_E_BULK_COUNT;
	uint64_t hdr = WIRE_TASK_FIXED + (uint64_t)nb * WIRE_BULK_ENTRY_SIZE;
	uint64_t params = hdr + CHI_TASK_HEADER_SIZE;
	if (params > n)
		return WIRE_E_BODY_SHORT;
	/* A copy for the checks (the buffer's bytes have no declared type to alias). */
	struct chi_task t;
	memcpy(&t, p + hdr, sizeof(t));
	int rc = check_task_header(&t, psize, lim);
	if (rc)
		return rc;
	if (psize > n - params)
		return WIRE_E_PARAMS_RANGE;
	rc = decode_bulk(p, n, WIRE_TASK_FIXED, nb, params + psize, 1, lim, m->task.bulk);
	if (rc)
		return rc;
	m->task.hdr = (const struct chi_task *)(const void *)(p + hdr);
	m->task.params = p + params;
	m->task.params_size = psize;
	m->task.num_bulk = nb;
	return 0;
}

static int decode_reply(const uint8_t *p, uint64_t n, const struct wire_limits *lim,
			struct wire_msg *m)
{
	int32_t rc = (int32_t)le_get32(p);
	uint32_t psize = le_get32(p + 4);
	uint32_t nb = le_get16(p + 8);

	if (le_get16(p + 10) || le_get32(p + 12))
		return WIRE_E_BODY_RESERVED;
	if (rc > 0 || rc < WIRE_RC_MIN)
		return WIRE_E_REPLY_RC;
	if (nb > lim->max_bulk)
		return WIRE_E_BULK_COUNT;
	uint64_t params = WIRE_REPLY_FIXED + (uint64_t)nb * WIRE_BULK_ENTRY_SIZE;
	if (params > n)
		return WIRE_E_BODY_SHORT;
	if (psize > lim->max_params)
		return WIRE_E_PARAMS_SIZE;
	if (psize > n - params)
		return WIRE_E_PARAMS_RANGE;
	int err = decode_bulk(p, n, WIRE_REPLY_FIXED, nb, params + psize, 0, lim, m->reply.bulk);
	if (err)
		return err;
	m->reply.rc = rc;
	m->reply.params = p + params;
	m->reply.params_size = psize;
	m->reply.num_bulk = nb;
	return 0;
}

static int decode_opaque(const struct type_info *t, const uint8_t *p, uint64_t n,
			 const struct wire_limits *lim, struct wire_msg *m)
{
	uint32_t len = le_get32(p);

	if (le_get32(p + 4))
		return WIRE_E_BODY_RESERVED;
	if (len > opaque_bound(t, lim))
		return WIRE_E_OPAQUE_SIZE;
	if (WIRE_OPAQUE_FIXED + align8(len) != n)
		return WIRE_E_OPAQUE_LEN;
	if (!all_zero(p + WIRE_OPAQUE_FIXED + len, n - WIRE_OPAQUE_FIXED - len))
		return WIRE_E_PADDING;
	m->opaque.data = len ? p + WIRE_OPAQUE_FIXED : NULL;
	m->opaque.len = len;
	return 0;
}

int wire_frame_need(const void *buf, size_t len, const struct wire_limits *lim, uint64_t *need)
{
	struct wire_limits tmp;

	lim = limits(lim, &tmp);
	if (!lim || !need || (!buf && len))
		return -EINVAL;
	int rc = check_header(buf, len, lim, NULL);
	if (rc)
		return rc;
	*need = len < WIRE_HEADER_SIZE
			? WIRE_HEADER_SIZE
			: WIRE_HEADER_SIZE + (uint64_t)le_get32((const uint8_t *)buf + H_PAYLOAD_LEN);
	return 0;
}

int wire_decode(const void *buf, size_t len, const struct wire_limits *lim, struct wire_msg *out)
{
	struct wire_limits tmp;
	const uint8_t *b = buf;

	lim = limits(lim, &tmp);
	if (!lim || !out || (!buf && len))
		return -EINVAL;
	if ((uintptr_t)buf % WIRE_ALIGN)
		return WIRE_E_ALIGN;
	int rc = check_header(b, len, lim, out);
	if (rc)
		return rc;
	if (len < WIRE_HEADER_SIZE)
		return WIRE_E_TRUNCATED;
	uint64_t n = le_get32(b + H_PAYLOAD_LEN);
	if (len - WIRE_HEADER_SIZE < n)
		return WIRE_E_TRUNCATED;
	const struct type_info *t = type_info(b[H_TYPE]);
	out->type = b[H_TYPE];
	out->cookie = le_get64(b + H_COOKIE);
	out->src_node = le_get32(b + H_SRC_NODE);
	out->src_worker = le_get16(b + H_SRC_WORKER);
	out->dst_worker = le_get16(b + H_DST_WORKER);
	out->epoch = le_get32(b + H_EPOCH);
	out->frame_size = WIRE_HEADER_SIZE + n;

	const uint8_t *p = b + WIRE_HEADER_SIZE;
	switch (t->body) {
	case BODY_EMPTY:
		return 0; /* the header check held the payload to 0 bytes */
	case BODY_CLOSE:
		out->close.reason = le_get32(p);
		out->close.detail = (int32_t)le_get32(p + 4);
		return out->close.reason < WIRE_CLOSE_REASON_COUNT ? 0 : WIRE_E_CLOSE_REASON;
	case BODY_OPAQUE:
		return decode_opaque(t, p, n, lim, out);
	case BODY_TASK:
		return decode_task(p, n, lim, out);
	default:
		return decode_reply(p, n, lim, out);
	}
}

/* ---- encoder ---- */

static const uint8_t zeros[WIRE_ALIGN];

static void add_iov(struct wire_out *o, const void *p, uint64_t len)
{
	if (!len)
		return;
	o->iov[o->iovcnt].iov_base = (void *)(uintptr_t)p; /* writev does not write */
	o->iov[o->iovcnt].iov_len = len;
	o->iovcnt++;
	o->size += len;
}

/* Zeros up to the next multiple of WIRE_ALIGN (the header is one, so frame offsets and
 * payload offsets align alike). */
static void add_pad(struct wire_out *o)
{
	add_iov(o, zeros, align8(o->size) - o->size);
}

/* Write the bulk table for @bulk[0..@nb) at @table, the sections starting after @cursor
 * (payload offset of the end of the params). @return the payload offset past the last
 * section, or a negative code. */
static int64_t encode_table(uint8_t *table, const struct wire_bulk *bulk, uint32_t nb,
			    uint64_t cursor, int is_task, const struct wire_limits *lim)
{
	int prev = -1;
	uint64_t out_cap = 0;

	for (uint32_t i = 0; i < nb; i++) {
		const struct wire_bulk *e = &bulk[i];
		int rc = check_entry(e, &prev, is_task, lim, &out_cap);
		if (rc)
			return rc;
		if (e->length && !e->data)
			return -EINVAL;
		uint64_t off = align8(cursor);
		if (WIRE_HEADER_SIZE + off + e->length > lim->max_frame)
			return WIRE_E_FRAME_SIZE;
		uint8_t *t = table + (uint64_t)i * WIRE_BULK_ENTRY_SIZE;
		le_put16(t, e->field);
		t[2] = e->dir;
		t[3] = 0;
		le_put32(t + 4, (uint32_t)off); /* < max_frame <= the ceiling: fits */
		le_put64(t + 8, e->capacity);
		le_put64(t + 16, e->length);
		cursor = off + e->length;
	}
	return (int64_t)cursor;
}

/* Parameters, then each section's padding and bytes, then the final padding. */
static void add_body_iovs(struct wire_out *o, const void *params, uint32_t psize,
			  const struct wire_bulk *bulk, uint32_t nb)
{
	add_iov(o, params, psize);
	for (uint32_t i = 0; i < nb; i++) {
		if (!bulk[i].length)
			continue;
		add_pad(o);
		add_iov(o, bulk[i].data, bulk[i].length);
	}
	add_pad(o);
}

static int encode_task(struct wire_out *o, const struct wire_msg *m, const struct wire_limits *lim)
{
	uint32_t nb = m->task.num_bulk;
	uint32_t psize = m->task.params_size;

	if (!m->task.hdr || (psize && !m->task.params))
		return -EINVAL;
	if (nb > lim->max_bulk)
		return WIRE_E_BULK_COUNT;
	struct chi_task t;
	memcpy(&t, m->task.hdr, sizeof(t));
	/* Node-local words: the waiter, taken and tag bits and rc belong to the origin's
	 * record; reserved words are zero on the wire whatever a client left in them. */
	t.state = CHI_TASK_SUBMITTED;
	t.rc = 0;
	t.query.reserved = 0;
	t.reserved0 = 0;
	t.reserved1 = 0;
	int rc = check_task_header(&t, psize, lim);
	if (rc)
		return rc;
	uint8_t *p = o->buf + WIRE_HEADER_SIZE;
	uint64_t hdr = WIRE_TASK_FIXED + (uint64_t)nb * WIRE_BULK_ENTRY_SIZE;
	le_put32(p, psize);
	le_put16(p + 4, (uint16_t)nb);
	le_put16(p + 6, 0);
	memcpy(p + hdr, &t, sizeof(t));
	uint64_t params_end = hdr + CHI_TASK_HEADER_SIZE + psize;
	if (WIRE_HEADER_SIZE + params_end > lim->max_frame)
		return WIRE_E_FRAME_SIZE;
	int64_t end = encode_table(p + WIRE_TASK_FIXED, m->task.bulk, nb, params_end, 1, lim);
	if (end < 0)
		return (int)end;
	add_iov(o, o->buf, WIRE_HEADER_SIZE + hdr + CHI_TASK_HEADER_SIZE);
	add_body_iovs(o, m->task.params, psize, m->task.bulk, nb);
	return 0;
}

static int encode_reply(struct wire_out *o, const struct wire_msg *m, const struct wire_limits *lim)
{
	uint32_t nb = m->reply.num_bulk;
	uint32_t psize = m->reply.params_size;

	if (psize && !m->reply.params)
		return -EINVAL;
	if (m->reply.rc > 0 || m->reply.rc < WIRE_RC_MIN)
		return WIRE_E_REPLY_RC;
	if (nb > lim->max_bulk)
		return WIRE_E_BULK_COUNT;
	if (psize > lim->max_params)
		return WIRE_E_PARAMS_SIZE;
	uint8_t *p = o->buf + WIRE_HEADER_SIZE;
	uint64_t params = WIRE_REPLY_FIXED + (uint64_t)nb * WIRE_BULK_ENTRY_SIZE;
	le_put32(p, (uint32_t)m->reply.rc);
	le_put32(p + 4, psize);
	le_put16(p + 8, (uint16_t)nb);
	le_put16(p + 10, 0);
	le_put32(p + 12, 0);
	if (WIRE_HEADER_SIZE + params + psize > lim->max_frame)
		return WIRE_E_FRAME_SIZE;
	int64_t end = encode_table(p + WIRE_REPLY_FIXED, m->reply.bulk, nb, params + psize, 0, lim);
	if (end < 0)
		return (int)end;
	add_iov(o, o->buf, WIRE_HEADER_SIZE + params);
	add_body_iovs(o, m->reply.params, psize, m->reply.bulk, nb);
	return 0;
}

int wire_encode(struct wire_out *o, const struct wire_msg *m, const struct wire_limits *lim)
{
	struct wire_limits tmp;

	lim = limits(lim, &tmp);
	if (!lim || !o || !m)
		return -EINVAL;
	const struct type_info *t = type_info(m->type);
	if (!t)
		return WIRE_E_TYPE;
	if (m->version_minor > WIRE_VERSION_MINOR)
		return WIRE_E_MINOR;
	o->iovcnt = 0;
	o->size = 0;
	memset(o->buf, 0, WIRE_HEADER_SIZE);
	uint8_t *p = o->buf + WIRE_HEADER_SIZE;
	int rc = 0;
	switch (t->body) {
	case BODY_EMPTY:
		add_iov(o, o->buf, WIRE_HEADER_SIZE);
		break;
	case BODY_CLOSE:
		if (m->close.reason >= WIRE_CLOSE_REASON_COUNT)
			return WIRE_E_CLOSE_REASON;
		le_put32(p, m->close.reason);
		le_put32(p + 4, (uint32_t)m->close.detail);
		add_iov(o, o->buf, WIRE_HEADER_SIZE + WIRE_CLOSE_SIZE);
		break;
	case BODY_OPAQUE:
		if (m->opaque.len && !m->opaque.data)
			return -EINVAL;
		if (m->opaque.len > opaque_bound(t, lim))
			return WIRE_E_OPAQUE_SIZE;
		le_put32(p, m->opaque.len);
		le_put32(p + 4, 0);
		add_iov(o, o->buf, WIRE_HEADER_SIZE + WIRE_OPAQUE_FIXED);
		add_iov(o, m->opaque.data, m->opaque.len);
		add_pad(o);
		break;
	case BODY_TASK:
		rc = encode_task(o, m, lim);
		break;
	default:
		rc = encode_reply(o, m, lim);
		break;
	}
	if (rc)
		return rc;
	uint8_t *b = o->buf;
	le_put32(b + H_MAGIC, WIRE_MAGIC);
	b[H_MAJOR] = WIRE_VERSION_MAJOR;
	b[H_MINOR] = m->version_minor;
	b[H_TYPE] = m->type;
	b[H_FLAGS] = 0;
	le_put16(b + H_HEADER_LEN, WIRE_HEADER_SIZE);
	le_put32(b + H_PAYLOAD_LEN, (uint32_t)(o->size - WIRE_HEADER_SIZE));
	le_put64(b + H_COOKIE, m->cookie);
	le_put32(b + H_SRC_NODE, m->src_node);
	le_put16(b + H_SRC_WORKER, m->src_worker);
	le_put16(b + H_DST_WORKER, m->dst_worker);
	le_put32(b + H_EPOCH, m->epoch);
	/* The receiver's first look, on what we built: sizes against the limits and bounds. */
	if (o->size - WIRE_HEADER_SIZE > UINT32_MAX)
		return WIRE_E_FRAME_SIZE;
	return check_header(b, WIRE_HEADER_SIZE, lim, NULL);
}

/* ---- what the receiver checks once it knows the method ---- */

static int read_desc(const void *params, uint32_t size, uint32_t offset, struct chi_bulk *d)
{
	if ((uint64_t)offset + sizeof(*d) > size)
		return 0;
	memcpy(d, (const uint8_t *)params + offset, sizeof(*d));
	return 1;
}

int wire_task_check_bulk(const struct wire_msg *m, const struct chi_bulk_field *fields, uint32_t n)
{
	if (!m || m->type != WIRE_TASK || (n && !fields))
		return -EINVAL;
	if (n > WIRE_MAX_BULK)
		return WIRE_E_BULK_COUNT;
	if (m->task.num_bulk != n)
		return WIRE_E_BULK_DECL;
	for (uint32_t k = 0; k < n; k++) {
		const struct wire_bulk *b = &m->task.bulk[k];
		struct chi_bulk d;
		if (b->field != k || b->dir != fields[k].dir ||
		    !read_desc(m->task.params, m->task.params_size, fields[k].offset, &d))
			return WIRE_E_BULK_DECL;
		if (d.length != b->capacity)
			return WIRE_E_BULK_DESC;
	}
	return 0;
}

int wire_reply_check_bulk(const struct wire_msg *m, const struct chi_bulk_field *fields, uint32_t n,
			  const void *sent_params, uint32_t sent_size)
{
	if (!m || m->type != WIRE_REPLY || (n && !fields) || (sent_size && !sent_params))
		return -EINVAL;
	if (m->reply.params_size != sent_size)
		return WIRE_E_PARAMS_MISMATCH;
	for (uint32_t i = 0; i < m->reply.num_bulk; i++) {
		const struct wire_bulk *b = &m->reply.bulk[i];
		struct chi_bulk d;
		if (b->field >= n || b->dir != fields[b->field].dir || !(b->dir & CHI_BULK_OUT) ||
		    !read_desc(sent_params, sent_size, fields[b->field].offset, &d))
			return WIRE_E_BULK_DECL;
		if (d.length != b->capacity)
			return WIRE_E_BULK_DESC;
	}
	return 0;
}

/* ---- names ---- */

static const char *const reasons[] = {
	[WIRE_E_BASE - WIRE_E_ALIGN] = "receive buffer not 8-byte aligned (caller bug)",
	[WIRE_E_BASE - WIRE_E_TRUNCATED] = "frame truncated: fewer bytes than it announces",
	[WIRE_E_BASE - WIRE_E_MAGIC] = "bad magic: not a Chimaera frame",
	[WIRE_E_BASE - WIRE_E_VERSION] = "peer speaks another major protocol version",
	[WIRE_E_BASE - WIRE_E_MINOR] = "frame uses a newer minor version than agreed",
	[WIRE_E_BASE - WIRE_E_TYPE] = "unknown frame type",
	[WIRE_E_BASE - WIRE_E_FLAGS] = "undefined frame flags set",
	[WIRE_E_BASE - WIRE_E_HEADER_LEN] = "frame header length is not 48",
	[WIRE_E_BASE - WIRE_E_RESERVED] = "reserved frame header bytes not zero",
	[WIRE_E_BASE - WIRE_E_PAYLOAD_ALIGN] = "payload length not a multiple of 8",
	[WIRE_E_BASE - WIRE_E_FRAME_SIZE] = "frame larger than the maximum frame size",
	[WIRE_E_BASE - WIRE_E_TYPE_SIZE] = "payload length outside the bounds of its frame type",
	[WIRE_E_BASE - WIRE_E_BODY_RESERVED] = "reserved payload bytes not zero",
	[WIRE_E_BASE - WIRE_E_PADDING] = "alignment padding not zero",
	[WIRE_E_BASE - WIRE_E_TRAILING] = "bytes after the frame's last section",
	[WIRE_E_BASE - WIRE_E_BODY_SHORT] = "payload ends inside its fixed part or bulk table",
	[WIRE_E_BASE - WIRE_E_OPAQUE_SIZE] = "opaque payload over its limit",
	[WIRE_E_BASE - WIRE_E_OPAQUE_LEN] = "opaque length disagrees with the payload length",
	[WIRE_E_BASE - WIRE_E_CLOSE_REASON] = "unknown CLOSE reason",
	[WIRE_E_BASE - WIRE_E_PARAMS_SIZE] = "parameters larger than the maximum",
	[WIRE_E_BASE - WIRE_E_PARAMS_RANGE] = "parameters run past the payload",
	[WIRE_E_BASE - WIRE_E_PARAMS_MISMATCH] = "params_size disagrees with the frame",
	[WIRE_E_BASE - WIRE_E_TASK_STATE] = "task header: state not SUBMITTED or rc not 0",
	[WIRE_E_BASE - WIRE_E_TASK_FLAGS] = "task header: flags not 0",
	[WIRE_E_BASE - WIRE_E_TASK_QUERY] = "task header: unknown query mode or reserved set",
	[WIRE_E_BASE - WIRE_E_TASK_RESERVED] = "task header: reserved words not 0",
	[WIRE_E_BASE - WIRE_E_REPLY_RC] = "reply rc is neither 0 nor -errno",
	[WIRE_E_BASE - WIRE_E_BULK_COUNT] = "too many bulk sections",
	[WIRE_E_BASE - WIRE_E_BULK_FIELD] = "bulk field index too large",
	[WIRE_E_BASE - WIRE_E_BULK_ORDER] = "bulk field indices not strictly ascending",
	[WIRE_E_BASE - WIRE_E_BULK_DIR] = "bulk direction unknown or wrong for the frame",
	[WIRE_E_BASE - WIRE_E_BULK_CAPACITY] = "bulk capacity too large",
	[WIRE_E_BASE - WIRE_E_BULK_LENGTH] = "bulk length breaks the rule of its direction",
	[WIRE_E_BASE - WIRE_E_BULK_OVERLAP] = "bulk section overlaps what precedes it",
	[WIRE_E_BASE - WIRE_E_BULK_RANGE] = "bulk section runs past the frame",
	[WIRE_E_BASE - WIRE_E_BULK_OFFSET] = "bulk section not at its canonical offset",
	[WIRE_E_BASE - WIRE_E_BULK_DECL] = "bulk sections differ from the method's bulk fields",
	[WIRE_E_BASE - WIRE_E_BULK_DESC] = "bulk capacity differs from the parameters' descriptor",
};

_Static_assert(sizeof(reasons) / sizeof(reasons[0]) == WIRE_E_BASE - WIRE_E_LAST + 1,
	       "a reason for every code");

const char *wire_strerror(int code)
{
	if (code <= WIRE_E_BASE && code >= WIRE_E_LAST)
		return reasons[WIRE_E_BASE - code];
	switch (code) {
	case 0:
		return "success";
	case -EINVAL:
		return "invalid argument";
	default:
		return "not a wire error code";
	}
}

int wire_errno(int code)
{
	switch (code) {
	case WIRE_E_VERSION:
	case WIRE_E_MINOR:
		return -EPROTONOSUPPORT;
	case WIRE_E_FRAME_SIZE:
	case WIRE_E_OPAQUE_SIZE:
	case WIRE_E_PARAMS_SIZE:
	case WIRE_E_BULK_COUNT:
	case WIRE_E_BULK_FIELD:
	case WIRE_E_BULK_CAPACITY:
		return -EMSGSIZE;
	case WIRE_E_BULK_DECL:
	case WIRE_E_BULK_DESC:
		return -EFAULT;
	case WIRE_E_ALIGN:
	case WIRE_E_TASK_STATE:
	case WIRE_E_TASK_FLAGS:
	case WIRE_E_TASK_QUERY:
	case WIRE_E_TASK_RESERVED:
		return -EINVAL;
	default:
		return code <= WIRE_E_BASE && code >= WIRE_E_LAST ? -EPROTO : code;
	}
}

const char *wire_type_name(unsigned type)
{
	const struct type_info *t = type_info(type);
	return t ? t->name : "unknown";
}

const char *wire_close_reason_name(unsigned reason)
{
	static const char *const names[WIRE_CLOSE_REASON_COUNT] = {
		[WIRE_CLOSE_NORMAL] = "normal",
		[WIRE_CLOSE_SHUTDOWN] = "shutdown",
		[WIRE_CLOSE_PROTOCOL] = "protocol error",
		[WIRE_CLOSE_VERSION] = "version mismatch",
		[WIRE_CLOSE_AUTH] = "authentication failed",
		[WIRE_CLOSE_TIMEOUT] = "timeout",
		[WIRE_CLOSE_RESOURCE] = "out of resources",
		[WIRE_CLOSE_DUPLICATE] = "duplicate connection",
	};
	return reason < WIRE_CLOSE_REASON_COUNT ? names[reason] : "unknown reason";
}
