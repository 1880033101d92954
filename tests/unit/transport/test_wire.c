/* The node-to-node wire format: round trips of every frame type, and every way the decoder
 * refuses a frame (truncation at each byte, inflated and overflowing lengths, bad magic and
 * versions, reserved bytes, task header sanity, bulk sections that overlap, gape or run past
 * the frame, limits), the streaming helper, the encoder's own refusals and the receiver's
 * bulk checks.
 *
 * `test_wire --corpus DIR` writes the valid frames below into DIR, one file each: that is how
 * tests/fuzz/corpus_wire/ was made. */
#include <check.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/wire.h"

#include "check_main.h"

/* ---- fixtures: one frame of each kind ---- */

#define P_SIZE	52u /* not a multiple of 8: the first section starts after padding */
#define OUT_LEN 37u

static struct chi_task task_hdr;
static uint8_t params[P_SIZE];
static uint8_t in_data[13];
static uint8_t inout_data[5];
static uint8_t out_data[100];
static const char hello_text[] = "hello, node 1: protocol 1.0, nonce 0123456789abcdef";

/* The method's declared bulk fields: IN at 0, OUT at 16, INOUT at 32. */
static const struct chi_bulk_field fields[3] = {
	{0, CHI_BULK_IN, 0, 0},
	{16, CHI_BULK_OUT, CHI_BULK_LEN_WHOLE, 0},
	{32, CHI_BULK_INOUT, CHI_BULK_LEN_WHOLE, 0},
};

static void fixtures(void)
{
	memset(&task_hdr, 0, sizeof(task_hdr));
	task_hdr.state = CHI_TASK_SUBMITTED;
	task_hdr.pool.major = 7;
	task_hdr.pool.minor = 3;
	task_hdr.method = 12;
	task_hdr.query = chi_query_range(2, 5);
	task_hdr.params_size = P_SIZE;
	struct chi_bulk d[3] = {
		{4096, sizeof(in_data)}, {8192, sizeof(out_data)}, {12288, sizeof(inout_data)}};
	for (unsigned i = 0; i < P_SIZE; i++)
		params[i] = (uint8_t)(0xa0 + i);
	memcpy(params, d, sizeof(d));
	for (unsigned i = 0; i < sizeof(in_data); i++)
		in_data[i] = (uint8_t)(i + 1);
	for (unsigned i = 0; i < sizeof(inout_data); i++)
		inout_data[i] = (uint8_t)(0x50 + i);
	for (unsigned i = 0; i < sizeof(out_data); i++)
		out_data[i] = (uint8_t)(0xc0 ^ i);
}

static void route(struct wire_msg *m, uint8_t type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->src_node = 3;
	m->src_worker = 2;
	m->dst_worker = 5;
	m->cookie = 0x1122334455667788ull;
	m->epoch = 9;
}

static void task_msg(struct wire_msg *m)
{
	route(m, WIRE_TASK);
	m->task.hdr = &task_hdr;
	m->task.params = params;
	m->task.params_size = P_SIZE;
	m->task.num_bulk = 3;
	m->task.bulk[0] =
		(struct wire_bulk){0, CHI_BULK_IN, sizeof(in_data), sizeof(in_data), in_data};
	m->task.bulk[1] = (struct wire_bulk){1, CHI_BULK_OUT, sizeof(out_data), 0, NULL};
	m->task.bulk[2] = (struct wire_bulk){2, CHI_BULK_INOUT, sizeof(inout_data),
					     sizeof(inout_data), inout_data};
}

static void reply_msg(struct wire_msg *m)
{
	route(m, WIRE_REPLY);
	m->reply.rc = 0;
	m->reply.params = params;
	m->reply.params_size = P_SIZE;
	m->reply.num_bulk = 2;
	m->reply.bulk[0] = (struct wire_bulk){1, CHI_BULK_OUT, sizeof(out_data), OUT_LEN, out_data};
	m->reply.bulk[1] = (struct wire_bulk){2, CHI_BULK_INOUT, sizeof(inout_data),
					      sizeof(inout_data), inout_data};
}

/* Kinds of fixture frame, for the loops over all of them. */
enum kind {
	K_HELLO,
	K_AUTH,
	K_CLOSE,
	K_PING,
	K_PONG,
	K_CONTROL,
	K_TASK,
	K_TASK_BARE, /* no params, no bulk */
	K_REPLY,
	K_REPLY_ERROR, /* an error rc, nothing else */
	K_HELLO_EMPTY,
	K_COUNT
};

static const char *const kind_names[K_COUNT] = {
	"hello", "auth",      "close", "ping",	      "pong",	     "control",
	"task",	 "task_bare", "reply", "reply_error", "hello_empty",
};

static struct chi_task bare_hdr;

static void make_msg(enum kind k, struct wire_msg *m)
{
	fixtures();
	switch (k) {
	case K_HELLO:
	case K_AUTH:
	case K_CONTROL:
		route(m, k == K_HELLO ? WIRE_HELLO : k == K_AUTH ? WIRE_AUTH : WIRE_CONTROL);
		m->opaque.data = hello_text;
		m->opaque.len = (uint32_t)strlen(hello_text) - (k == K_AUTH ? 8 : 0);
		break;
	case K_HELLO_EMPTY:
		route(m, WIRE_HELLO);
		break;
	case K_CLOSE:
		route(m, WIRE_CLOSE);
		m->close.reason = WIRE_CLOSE_PROTOCOL;
		m->close.detail = WIRE_E_BULK_OVERLAP;
		break;
	case K_PING:
	case K_PONG:
		route(m, k == K_PING ? WIRE_PING : WIRE_PONG);
		break;
	case K_TASK:
		task_msg(m);
		break;
	case K_TASK_BARE:
		route(m, WIRE_TASK);
		memset(&bare_hdr, 0, sizeof(bare_hdr));
		bare_hdr.state = CHI_TASK_SUBMITTED;
		bare_hdr.pool.major = 1;
		bare_hdr.method = 15;
		bare_hdr.query = chi_query_broadcast();
		m->task.hdr = &bare_hdr;
		break;
	case K_REPLY:
		reply_msg(m);
		break;
	case K_REPLY_ERROR:
		route(m, WIRE_REPLY);
		m->reply.rc = -ENOENT;
		break;
	default:
		ck_abort();
	}
}

/* The frame's bytes in a heap buffer of exactly size + @extra bytes (malloc: aligned), the
 * extra zeroed, so ASan sees any read past the end. */
static uint8_t *gather(const struct wire_out *o, size_t extra)
{
	uint8_t *b = malloc(o->size + extra + 1);
	ck_assert_ptr_nonnull(b);
	size_t at = 0;
	for (int i = 0; i < o->iovcnt; i++) {
		memcpy(b + at, o->iov[i].iov_base, o->iov[i].iov_len);
		at += o->iov[i].iov_len;
	}
	ck_assert_uint_eq(at, o->size);
	memset(b + at, 0, extra);
	return b;
}

static uint8_t *make_frame(enum kind k, size_t *len)
{
	struct wire_msg m;
	static struct wire_out o;
	make_msg(k, &m);
	ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
	*len = o.size;
	return gather(&o, 0);
}

/* Decode @len bytes copied into an exact-size buffer. */
static int decode_copy(const uint8_t *b, size_t len, const struct wire_limits *lim,
		       struct wire_msg *m)
{
	uint8_t *c = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(c);
	memcpy(c, b, len);
	int rc = wire_decode(len ? c : NULL, len, lim, m);
	free(c);
	return rc;
}

static int decode(const uint8_t *b, size_t len)
{
	struct wire_msg m;
	return wire_decode(b, len, NULL, &m);
}

/* Re-encoding a decoded frame gives its bytes back. */
static void assert_reencodes(const uint8_t *b, size_t len, const struct wire_msg *m,
			     const struct wire_limits *lim)
{
	static struct wire_out o;
	ck_assert_int_eq(wire_encode(&o, m, lim), 0);
	ck_assert_uint_eq(o.size, m->frame_size);
	ck_assert_uint_le(m->frame_size, len);
	uint8_t *again = gather(&o, 0);
	ck_assert_mem_eq(again, b, o.size);
	free(again);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* Offsets in the fixture frames. */
#define PAYLOAD	   WIRE_HEADER_SIZE
#define T_ENTRY(i) (PAYLOAD + WIRE_TASK_FIXED + (i)*WIRE_BULK_ENTRY_SIZE)
#define T_HDR	   (T_ENTRY(3))
#define T_PARAMS   (T_HDR + CHI_TASK_HEADER_SIZE)
#define R_ENTRY(i) (PAYLOAD + WIRE_REPLY_FIXED + (i)*WIRE_BULK_ENTRY_SIZE)
#define R_PARAMS   (R_ENTRY(2))
#define E_OFFSET   4
#define E_CAPACITY 8
#define E_LENGTH   16

/* A fixture frame with @len patched bytes at @off; @return what decoding it gives. */
static int patched32(enum kind k, size_t off, uint32_t v)
{
	size_t len;
	uint8_t *b = make_frame(k, &len);
	put32(b + off, v);
	int rc = decode(b, len);
	free(b);
	return rc;
}

static int patched64(enum kind k, size_t off, uint64_t v)
{
	size_t len;
	uint8_t *b = make_frame(k, &len);
	put64(b + off, v);
	int rc = decode(b, len);
	free(b);
	return rc;
}

static int patched8(enum kind k, size_t off, uint8_t v)
{
	size_t len;
	uint8_t *b = make_frame(k, &len);
	b[off] = v;
	int rc = decode(b, len);
	free(b);
	return rc;
}

/* ---- round trips ---- */

static void assert_inside(const void *p, uint64_t n, const uint8_t *b, size_t len)
{
	if (!n)
		return;
	ck_assert_ptr_nonnull(p);
	ck_assert((const uint8_t *)p >= b);
	ck_assert((const uint8_t *)p + n <= b + len);
}

START_TEST(round_trip_every_type)
{
	for (int k = 0; k < K_COUNT; k++) {
		struct wire_msg m, d;
		static struct wire_out o;
		make_msg(k, &m);
		ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
		ck_assert_int_le(o.iovcnt, WIRE_MAX_IOV);
		ck_assert_uint_eq(o.size % WIRE_ALIGN, 0);
		uint8_t *b = gather(&o, 0);
		ck_assert_int_eq(wire_decode(b, o.size, NULL, &d), 0);
		ck_assert_uint_eq(d.frame_size, o.size);
		ck_assert_uint_eq(d.type, m.type);
		ck_assert_uint_eq(d.version_major, WIRE_VERSION_MAJOR);
		ck_assert_uint_eq(d.version_minor, WIRE_VERSION_MINOR);
		ck_assert_uint_eq(d.src_node, 3);
		ck_assert_uint_eq(d.src_worker, 2);
		ck_assert_uint_eq(d.dst_worker, 5);
		ck_assert_uint_eq(d.cookie, 0x1122334455667788ull);
		ck_assert_uint_eq(d.epoch, 9);
		uint64_t need;
		ck_assert_int_eq(wire_frame_need(b, o.size, NULL, &need), 0);
		ck_assert_uint_eq(need, o.size);
		switch (d.type) {
		case WIRE_HELLO:
		case WIRE_AUTH:
		case WIRE_CONTROL:
			ck_assert_uint_eq(d.opaque.len, m.opaque.len);
			if (m.opaque.len)
				ck_assert_mem_eq(d.opaque.data, m.opaque.data, m.opaque.len);
			else
				ck_assert_ptr_null(d.opaque.data);
			assert_inside(d.opaque.data, d.opaque.len, b, o.size);
			break;
		case WIRE_CLOSE:
			ck_assert_uint_eq(d.close.reason, WIRE_CLOSE_PROTOCOL);
			ck_assert_int_eq(d.close.detail, WIRE_E_BULK_OVERLAP);
			break;
		case WIRE_TASK:
			ck_assert_mem_eq(d.task.hdr, m.task.hdr, CHI_TASK_HEADER_SIZE);
			ck_assert_uint_eq(d.task.params_size, m.task.params_size);
			ck_assert_uint_eq(d.task.num_bulk, m.task.num_bulk);
			assert_inside(d.task.hdr, CHI_TASK_HEADER_SIZE, b, o.size);
			assert_inside(d.task.params, d.task.params_size, b, o.size);
			if (d.task.params_size) {
				ck_assert_mem_eq(d.task.params, params, P_SIZE);
				ck_assert_uint_eq((uintptr_t)d.task.params % 8, 0);
			}
			for (uint32_t i = 0; i < d.task.num_bulk; i++) {
				const struct wire_bulk *x = &d.task.bulk[i], *y = &m.task.bulk[i];
				ck_assert_uint_eq(x->field, y->field);
				ck_assert_uint_eq(x->dir, y->dir);
				ck_assert_uint_eq(x->capacity, y->capacity);
				ck_assert_uint_eq(x->length, y->length);
				if (x->length)
					ck_assert_mem_eq(x->data, y->data, x->length);
				else
					ck_assert_ptr_null(x->data);
				assert_inside(x->data, x->length, b, o.size);
			}
			break;
		case WIRE_REPLY:
			ck_assert_int_eq(d.reply.rc, m.reply.rc);
			ck_assert_uint_eq(d.reply.params_size, m.reply.params_size);
			ck_assert_uint_eq(d.reply.num_bulk, m.reply.num_bulk);
			if (d.reply.params_size)
				ck_assert_mem_eq(d.reply.params, params, P_SIZE);
			assert_inside(d.reply.params, d.reply.params_size, b, o.size);
			for (uint32_t i = 0; i < d.reply.num_bulk; i++) {
				const struct wire_bulk *x = &d.reply.bulk[i], *y = &m.reply.bulk[i];
				ck_assert_uint_eq(x->field, y->field);
				ck_assert_uint_eq(x->length, y->length);
				ck_assert_mem_eq(x->data, y->data, x->length);
				assert_inside(x->data, x->length, b, o.size);
			}
			break;
		default:
			ck_assert_uint_eq(d.frame_size, WIRE_HEADER_SIZE);
		}
		assert_reencodes(b, o.size, &d, NULL);
		free(b);
	}
}
END_TEST

START_TEST(fixed_layout_of_the_header)
{
	size_t len;
	uint8_t *b = make_frame(K_PING, &len);
	static const uint8_t want[WIRE_HEADER_SIZE] = {
		'C', 'H', 'I', 'W', 1,	  0,	WIRE_PING, 0,	 48,   0,    0,	   0,
		0,   0,	  0,   0,   0x88, 0x77, 0x66,	   0x55, 0x44, 0x33, 0x22, 0x11,
		3,   0,	  0,   0,   2,	  0,	5,	   0,	 9,    0,    0,	   0,
	};
	ck_assert_uint_eq(len, WIRE_HEADER_SIZE);
	ck_assert_mem_eq(b, want, sizeof(want));
	free(b);
	b = make_frame(K_TASK, &len);
	/* 48 header + 8 prologue + 3 x 24 table + 64 task header + 52 params, then sections at
	 * payload offsets 200 (13 bytes), 216 (OUT: none), 216 (5 bytes), padded to 224. */
	ck_assert_uint_eq(len, 272);
	ck_assert_uint_eq(get32(b + 12), 224);
	ck_assert_uint_eq(get32(b + T_ENTRY(0) + E_OFFSET), 200);
	ck_assert_uint_eq(get32(b + T_ENTRY(1) + E_OFFSET), 216);
	ck_assert_uint_eq(get32(b + T_ENTRY(2) + E_OFFSET), 216);
	ck_assert_mem_eq(b + PAYLOAD + 200, in_data, sizeof(in_data));
	ck_assert_mem_eq(b + PAYLOAD + 216, inout_data, sizeof(inout_data));
	free(b);
}
END_TEST

START_TEST(iovecs_point_at_the_sources)
{
	struct wire_msg m;
	static struct wire_out o;
	make_msg(K_TASK, &m);
	ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
	/* fixed part, params, pad, IN data, pad, INOUT data, final pad */
	ck_assert_int_eq(o.iovcnt, 7);
	ck_assert_ptr_eq(o.iov[0].iov_base, o.buf);
	ck_assert_uint_eq(o.iov[0].iov_len, T_PARAMS);
	ck_assert_ptr_eq(o.iov[1].iov_base, params);
	ck_assert_ptr_eq(o.iov[3].iov_base, in_data);
	ck_assert_ptr_eq(o.iov[5].iov_base, inout_data);
	make_msg(K_REPLY, &m);
	ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
	ck_assert_ptr_eq(o.iov[1].iov_base, params);
	ck_assert_ptr_eq(o.iov[3].iov_base, out_data);
	ck_assert_uint_eq(o.iov[3].iov_len, OUT_LEN);
}
END_TEST

START_TEST(task_header_node_local_words_are_reset)
{
	struct wire_msg m, d;
	static struct wire_out o;
	make_msg(K_TASK, &m);
	task_hdr.state = CHI_TASK_SUBMITTED | CHI_TASK_WAITER | CHI_TASK_TAKEN | (5u << 16);
	task_hdr.rc = -EAGAIN;
	task_hdr.reserved0 = 7;
	task_hdr.reserved1 = 8;
	task_hdr.query.reserved = 9;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
	uint8_t *b = gather(&o, 0);
	ck_assert_int_eq(wire_decode(b, o.size, NULL, &d), 0);
	ck_assert_uint_eq(d.task.hdr->state, CHI_TASK_SUBMITTED);
	ck_assert_int_eq(d.task.hdr->rc, 0);
	ck_assert_uint_eq(d.task.hdr->reserved0, 0);
	ck_assert_uint_eq(d.task.hdr->reserved1, 0);
	ck_assert_uint_eq(d.task.hdr->query.reserved, 0);
	ck_assert_uint_eq(d.task.hdr->pool.major, 7);
	ck_assert_uint_eq(d.task.hdr->pool.minor, 3);
	ck_assert_uint_eq(d.task.hdr->method, 12);
	ck_assert_uint_eq(d.task.hdr->query.mode, CHI_QUERY_RANGE);
	ck_assert_uint_eq(d.task.hdr->query.a, 2);
	ck_assert_uint_eq(d.task.hdr->query.b, 5);
	/* The caller's header is untouched (it is copied). */
	ck_assert_int_eq(task_hdr.rc, -EAGAIN);
	free(b);
}
END_TEST

/* ---- truncation ---- */

START_TEST(truncated_at_every_byte)
{
	for (int k = 0; k < K_COUNT; k++) {
		size_t len;
		uint8_t *b = make_frame(k, &len);
		for (size_t cut = 0; cut < len; cut++) {
			struct wire_msg m;
			uint64_t need;
			ck_assert_msg(decode_copy(b, cut, NULL, &m) == WIRE_E_TRUNCATED,
				      "%s cut at %zu", kind_names[k], cut);
			ck_assert_int_eq(wire_frame_need(b, cut, NULL, &need), 0);
			ck_assert_uint_eq(need, cut < WIRE_HEADER_SIZE ? WIRE_HEADER_SIZE : len);
			ck_assert_uint_gt(need, cut);
		}
		free(b);
	}
}
END_TEST

/* A TCP receiver: bytes arrive a few at a time, wire_frame_need() says when a frame is in. */
START_TEST(stream_of_frames_in_small_pieces)
{
	size_t total = 0, lens[K_COUNT];
	uint8_t *frames[K_COUNT];
	for (int k = 0; k < K_COUNT; k++) {
		frames[k] = make_frame(k, &lens[k]);
		total += lens[k];
	}
	uint8_t *stream = malloc(total);
	ck_assert_ptr_nonnull(stream);
	size_t at = 0;
	for (int k = 0; k < K_COUNT; k++) {
		memcpy(stream + at, frames[k], lens[k]);
		at += lens[k];
		free(frames[k]);
	}
	for (size_t chunk = 1; chunk <= 61; chunk += 6) {
		size_t consumed = 0, have = 0;
		int next = 0;
		while (consumed < total) {
			size_t more = total - consumed - have;
			have += more < chunk ? more : chunk;
			for (;;) {
				uint64_t need;
				ck_assert_int_eq(
					wire_frame_need(stream + consumed, have, NULL, &need), 0);
				if (have < need)
					break;
				struct wire_msg m;
				ck_assert_int_eq(wire_decode(stream + consumed, have, NULL, &m), 0);
				ck_assert_uint_eq(m.frame_size, need);
				ck_assert_uint_eq(m.frame_size, lens[next]);
				next++;
				consumed += need;
				have -= need;
			}
		}
		ck_assert_int_eq(next, K_COUNT);
	}
	free(stream);
}
END_TEST

/* ---- the fixed header ---- */

START_TEST(bad_magic_version_type_flags)
{
	ck_assert_int_eq(patched8(K_PING, 0, 'X'), WIRE_E_MAGIC);
	ck_assert_int_eq(patched8(K_TASK, 3, 'w'), WIRE_E_MAGIC);
	ck_assert_int_eq(patched8(K_PING, 6, 0), WIRE_E_TYPE);
	ck_assert_int_eq(patched8(K_PING, 6, WIRE_TYPE_COUNT), WIRE_E_TYPE);
	ck_assert_int_eq(patched8(K_PING, 6, 0xff), WIRE_E_TYPE);
	ck_assert_int_eq(patched8(K_PING, 7, 1), WIRE_E_FLAGS);
	ck_assert_int_eq(patched8(K_PING, 7, 0x80), WIRE_E_FLAGS);
	ck_assert_int_eq(patched8(K_TASK, 5, WIRE_VERSION_MINOR + 1), WIRE_E_MINOR);

	/* Another major version: its own code, and the peer's version for the log. */
	size_t len;
	uint8_t *b = make_frame(K_HELLO, &len);
	b[4] = 2;
	b[5] = 7;
	struct wire_msg m;
	ck_assert_int_eq(wire_decode(b, len, NULL, &m), WIRE_E_VERSION);
	ck_assert_uint_eq(m.version_major, 2);
	ck_assert_uint_eq(m.version_minor, 7);
	uint64_t need;
	ck_assert_int_eq(wire_frame_need(b, 5, NULL, &need), WIRE_E_VERSION);
	b[4] = 0;
	ck_assert_int_eq(wire_decode(b, len, NULL, &m), WIRE_E_VERSION);
	ck_assert_uint_eq(m.version_major, 0);
	/* A stranger speaking HTTP is refused after four bytes. */
	memcpy(b, "GET / HTTP/1.1\r\n", 16);
	ck_assert_int_eq(wire_frame_need(b, 4, NULL, &need), WIRE_E_MAGIC);
	ck_assert_int_eq(wire_frame_need(b, 3, NULL, &need), 0);
	ck_assert_uint_eq(need, WIRE_HEADER_SIZE);
	free(b);
}
END_TEST

START_TEST(header_length_and_reserved)
{
	ck_assert_int_eq(patched8(K_PING, 8, 47), WIRE_E_HEADER_LEN);
	ck_assert_int_eq(patched8(K_PING, 8, 49), WIRE_E_HEADER_LEN);
	ck_assert_int_eq(patched8(K_PING, 9, 1), WIRE_E_HEADER_LEN);
	ck_assert_int_eq(patched8(K_PING, 10, 1), WIRE_E_RESERVED);
	ck_assert_int_eq(patched8(K_PING, 11, 0x80), WIRE_E_RESERVED);
	for (size_t off = 36; off < WIRE_HEADER_SIZE; off++) {
		ck_assert_int_eq(patched8(K_PING, off, 1), WIRE_E_RESERVED);
		ck_assert_int_eq(patched8(K_TASK, off, 0xff), WIRE_E_RESERVED);
	}
}
END_TEST

START_TEST(payload_length_inflated_or_overflowing)
{
	for (int k = 0; k < K_COUNT; k++) {
		size_t len;
		uint8_t *b = make_frame(k, &len);
		uint32_t n = get32(b + 12);
		struct wire_msg m;
		uint64_t need;
		put32(b + 12, n + 1);
		ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_PAYLOAD_ALIGN);
		ck_assert_int_eq(decode(b, len), WIRE_E_PAYLOAD_ALIGN);
		put32(b + 12, UINT32_MAX);
		ck_assert_int_eq(decode(b, len), WIRE_E_PAYLOAD_ALIGN);
		put32(b + 12, UINT32_MAX - 7);
		ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_FRAME_SIZE);
		ck_assert_int_eq(decode(b, len), WIRE_E_FRAME_SIZE);
		/* One more word announced than sent: truncated (or wrong for the type). */
		put32(b + 12, n + 8);
		int rc = decode_copy(b, len, NULL, &m);
		ck_assert_msg(rc == WIRE_E_TRUNCATED || rc == WIRE_E_TYPE_SIZE, "%s: %d",
			      kind_names[k], rc);
		/* ... and sent, as zeros: the body has bytes after its end. */
		uint8_t *longer = malloc(len + 8);
		memcpy(longer, b, len);
		memset(longer + len, 0, 8);
		rc = decode(longer, len + 8);
		ck_assert_msg(rc == WIRE_E_TRAILING || rc == WIRE_E_TYPE_SIZE ||
				      rc == WIRE_E_OPAQUE_LEN,
			      "%s: %d", kind_names[k], rc);
		free(longer);
		/* One word less: never accepted. */
		if (n >= 8) {
			put32(b + 12, n - 8);
			rc = decode(b, len);
			ck_assert_msg(rc < 0, "%s", kind_names[k]);
		}
		free(b);
	}
}
END_TEST

/* A peer announcing 4 GiB, or more than the receiver's limit, is refused from the first 16
 * bytes, before anything is allocated for the frame. */
START_TEST(oversized_frame_refused_from_the_header)
{
	uint8_t b[WIRE_HEADER_SIZE] __attribute__((aligned(8)));
	size_t len;
	uint8_t *f = make_frame(K_TASK, &len);
	memcpy(b, f, sizeof(b));
	free(f);
	uint64_t need;
	struct wire_msg m;

	put32(b + 12, 0xfffffff8u);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_FRAME_SIZE);
	ck_assert_int_eq(wire_decode(b, 16, NULL, &m), WIRE_E_FRAME_SIZE);
	ck_assert_int_eq(wire_frame_need(b, 15, NULL, &need), 0); /* length not in yet */
	ck_assert_uint_eq(need, WIRE_HEADER_SIZE);
	/* Just over the default: 64 MiB of payload is the most. */
	put32(b + 12, (64u << 20) + 8);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_FRAME_SIZE);
	put32(b + 12, 64u << 20);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), 0);
	ck_assert_uint_eq(need, WIRE_HEADER_SIZE);
	ck_assert_int_eq(wire_frame_need(b, WIRE_HEADER_SIZE, NULL, &need), 0);
	ck_assert_uint_eq(need, WIRE_DEFAULT_MAX_FRAME);
	/* A receiver with a smaller limit. */
	struct wire_limits lim;
	wire_limits_default(&lim);
	lim.max_frame = 4096;
	put32(b + 12, 4096 - WIRE_HEADER_SIZE);
	ck_assert_int_eq(wire_frame_need(b, 48, &lim, &need), 0);
	put32(b + 12, 4096 - WIRE_HEADER_SIZE + 8);
	ck_assert_int_eq(wire_frame_need(b, 48, &lim, &need), WIRE_E_FRAME_SIZE);
	/* Per-type bounds, also from the header alone. */
	b[6] = WIRE_HELLO;
	put32(b + 12, WIRE_OPAQUE_FIXED + WIRE_DEFAULT_MAX_HELLO + 8);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	b[6] = WIRE_CONTROL;
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), 0);
	put32(b + 12, WIRE_OPAQUE_FIXED + WIRE_DEFAULT_MAX_CONTROL + 8);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	b[6] = WIRE_PING;
	put32(b + 12, 8);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	b[6] = WIRE_CLOSE;
	put32(b + 12, 16);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	put32(b + 12, 0);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	b[6] = WIRE_TASK;
	put32(b + 12, 64);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
	b[6] = WIRE_REPLY;
	put32(b + 12, 8);
	ck_assert_int_eq(wire_frame_need(b, 16, NULL, &need), WIRE_E_TYPE_SIZE);
}
END_TEST

START_TEST(unaligned_buffer_and_bad_limits)
{
	size_t len;
	uint8_t *b = make_frame(K_PING, &len);
	uint8_t *odd = malloc(len + 8);
	memcpy(odd + 4, b, len);
	struct wire_msg m;
	ck_assert_int_eq(wire_decode(odd + 4, len, NULL, &m), WIRE_E_ALIGN);
	free(odd);

	struct wire_limits lim;
	wire_limits_default(&lim);
	lim.max_bulk = WIRE_MAX_BULK + 1;
	ck_assert_int_eq(wire_decode(b, len, &lim, &m), -EINVAL);
	wire_limits_default(&lim);
	lim.max_frame = WIRE_HEADER_SIZE - 1;
	ck_assert_int_eq(wire_decode(b, len, &lim, &m), -EINVAL);
	lim.max_frame = WIRE_MAX_FRAME_CEILING + 1;
	uint64_t need;
	ck_assert_int_eq(wire_frame_need(b, len, &lim, &need), -EINVAL);
	ck_assert_int_eq(wire_decode(b, len, NULL, NULL), -EINVAL);
	ck_assert_int_eq(wire_frame_need(b, len, NULL, NULL), -EINVAL);
	ck_assert_int_eq(wire_decode(NULL, 8, NULL, &m), -EINVAL);
	free(b);
}
END_TEST

/* ---- bodies ---- */

START_TEST(opaque_lengths)
{
	ck_assert_int_eq(patched32(K_HELLO, PAYLOAD, (uint32_t)strlen(hello_text) + 8),
			 WIRE_E_OPAQUE_LEN);
	ck_assert_int_eq(patched32(K_HELLO, PAYLOAD, (uint32_t)strlen(hello_text) - 8),
			 WIRE_E_OPAQUE_LEN);
	ck_assert_int_eq(patched32(K_HELLO, PAYLOAD, WIRE_DEFAULT_MAX_HELLO + 1),
			 WIRE_E_OPAQUE_SIZE);
	ck_assert_int_eq(patched32(K_HELLO, PAYLOAD, UINT32_MAX), WIRE_E_OPAQUE_SIZE);
	ck_assert_int_eq(patched32(K_CONTROL, PAYLOAD, UINT32_MAX - 7), WIRE_E_OPAQUE_SIZE);
	ck_assert_int_eq(patched32(K_HELLO, PAYLOAD + 4, 1), WIRE_E_BODY_RESERVED);
	/* The hello text is 51 bytes: 5 bytes of padding, which must be zero. */
	size_t len;
	uint8_t *b = make_frame(K_HELLO, &len);
	ck_assert_uint_eq(len, PAYLOAD + 8 + 56);
	b[len - 1] = 1;
	ck_assert_int_eq(decode(b, len), WIRE_E_PADDING);
	free(b);
	/* A receiver with a tighter hello bound. */
	struct wire_limits lim;
	struct wire_msg m;
	wire_limits_default(&lim);
	lim.max_hello = 16;
	b = make_frame(K_HELLO, &len);
	ck_assert_int_eq(wire_decode(b, len, &lim, &m), WIRE_E_TYPE_SIZE);
	free(b);
}
END_TEST

START_TEST(close_reason)
{
	ck_assert_int_eq(patched32(K_CLOSE, PAYLOAD, WIRE_CLOSE_REASON_COUNT), WIRE_E_CLOSE_REASON);
	ck_assert_int_eq(patched32(K_CLOSE, PAYLOAD, UINT32_MAX), WIRE_E_CLOSE_REASON);
	ck_assert_int_eq(patched32(K_CLOSE, PAYLOAD, WIRE_CLOSE_SHUTDOWN), 0);
	ck_assert_str_eq(wire_close_reason_name(WIRE_CLOSE_VERSION), "version mismatch");
	ck_assert_str_eq(wire_close_reason_name(99), "unknown reason");
}
END_TEST

START_TEST(task_params_size)
{
	/* The frame's and the header's params_size must agree. */
	ck_assert_int_eq(patched32(K_TASK, PAYLOAD, P_SIZE + 1), WIRE_E_PARAMS_MISMATCH);
	ck_assert_int_eq(patched32(K_TASK, PAYLOAD, P_SIZE - 4), WIRE_E_PARAMS_MISMATCH);
	ck_assert_int_eq(patched32(K_TASK, PAYLOAD, UINT32_MAX), WIRE_E_PARAMS_MISMATCH);
	size_t at = T_HDR + offsetof(struct chi_task, params_size);
	ck_assert_int_eq(patched32(K_TASK, at, P_SIZE + 8), WIRE_E_PARAMS_MISMATCH);
	ck_assert_int_eq(patched32(K_TASK, at, 0), WIRE_E_PARAMS_MISMATCH);
	ck_assert_int_eq(patched32(K_TASK, at, UINT32_MAX), WIRE_E_PARAMS_MISMATCH);

	/* Both inflated alike: into the sections, past the payload, over the limit. */
	size_t len;
	uint8_t *b = make_frame(K_TASK, &len);
	put32(b + PAYLOAD, P_SIZE + 8);
	put32(b + at, P_SIZE + 8);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_OVERLAP);
	put32(b + PAYLOAD, WIRE_DEFAULT_MAX_PARAMS);
	put32(b + at, WIRE_DEFAULT_MAX_PARAMS);
	ck_assert_int_eq(decode(b, len), WIRE_E_PARAMS_RANGE);
	put32(b + PAYLOAD, UINT32_MAX);
	put32(b + at, UINT32_MAX);
	ck_assert_int_eq(decode(b, len), WIRE_E_PARAMS_SIZE);
	/* Deflated alike: the first section no longer starts where it should. */
	put32(b + PAYLOAD, P_SIZE - 8);
	put32(b + at, P_SIZE - 8);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_OFFSET);
	free(b);

	/* A receiver with a tighter params limit. */
	struct wire_limits lim;
	struct wire_msg m;
	wire_limits_default(&lim);
	lim.max_params = P_SIZE - 1;
	b = make_frame(K_TASK, &len);
	ck_assert_int_eq(wire_decode(b, len, &lim, &m), WIRE_E_PARAMS_SIZE);
	free(b);
}
END_TEST

START_TEST(task_header_sanity)
{
	size_t h = T_HDR;
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, state), CHI_TASK_DONE),
			 WIRE_E_TASK_STATE);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, state), CHI_TASK_NEW),
			 WIRE_E_TASK_STATE);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, state),
				   CHI_TASK_SUBMITTED | CHI_TASK_WAITER),
			 WIRE_E_TASK_STATE);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, state),
				   CHI_TASK_SUBMITTED | CHI_TASK_TAKEN),
			 WIRE_E_TASK_STATE);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, rc), (uint32_t)-EIO),
			 WIRE_E_TASK_STATE);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, flags), 1),
			 WIRE_E_TASK_FLAGS);
	size_t q = h + offsetof(struct chi_task, query);
	ck_assert_int_eq(
		patched32(K_TASK, q + offsetof(struct chi_pool_query, mode), CHI_QUERY_MODE_COUNT),
		WIRE_E_TASK_QUERY);
	ck_assert_int_eq(patched32(K_TASK, q + offsetof(struct chi_pool_query, mode), UINT32_MAX),
			 WIRE_E_TASK_QUERY);
	ck_assert_int_eq(patched32(K_TASK, q + offsetof(struct chi_pool_query, reserved), 1),
			 WIRE_E_TASK_QUERY);
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, reserved0), 1),
			 WIRE_E_TASK_RESERVED);
	ck_assert_int_eq(patched64(K_TASK, h + offsetof(struct chi_task, reserved1), 1ull << 63),
			 WIRE_E_TASK_RESERVED);
	/* Pool, method and the query's arguments are the receiver's to check: accepted here. */
	ck_assert_int_eq(patched32(K_TASK, h + offsetof(struct chi_task, method), UINT32_MAX), 0);
	ck_assert_int_eq(patched64(K_TASK, h + offsetof(struct chi_task, pool), UINT64_MAX), 0);
	ck_assert_int_eq(patched64(K_TASK, q + offsetof(struct chi_pool_query, a), UINT64_MAX), 0);
	/* The prologue's reserved half-word. */
	ck_assert_int_eq(patched8(K_TASK, PAYLOAD + 7, 1), WIRE_E_BODY_RESERVED);
}
END_TEST

START_TEST(task_bulk_count)
{
	ck_assert_int_eq(patched32(K_TASK, PAYLOAD + 4, WIRE_MAX_BULK + 1), WIRE_E_BULK_COUNT);
	ck_assert_int_eq(patched32(K_TASK, PAYLOAD + 4, 0xffff), WIRE_E_BULK_COUNT);
	/* A count that moves the header: whatever is read there is not a valid header. */
	for (uint32_t nb = 0; nb <= WIRE_MAX_BULK; nb++)
		if (nb != 3)
			ck_assert_int_lt(patched32(K_TASK, PAYLOAD + 4, nb), 0);
	/* A table that runs past the payload. */
	size_t len;
	uint8_t *b = make_frame(K_TASK_BARE, &len);
	put32(b + PAYLOAD + 4, 3);
	ck_assert_int_eq(decode(b, len), WIRE_E_BODY_SHORT);
	free(b);
	/* A receiver allowing fewer sections. */
	struct wire_limits lim;
	struct wire_msg m;
	wire_limits_default(&lim);
	lim.max_bulk = 2;
	b = make_frame(K_TASK, &len);
	ck_assert_int_eq(wire_decode(b, len, &lim, &m), WIRE_E_BULK_COUNT);
	free(b);
}
END_TEST

START_TEST(task_bulk_sections)
{
	/* Lengths and capacities. */
	ck_assert_int_eq(patched64(K_TASK, T_ENTRY(0) + E_LENGTH, sizeof(in_data) + 1),
			 WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched64(K_TASK, T_ENTRY(1) + E_LENGTH, 1), WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched64(K_TASK, T_ENTRY(0) + E_CAPACITY, UINT64_MAX),
			 WIRE_E_BULK_CAPACITY);
	ck_assert_int_eq(patched64(K_TASK, T_ENTRY(1) + E_CAPACITY, UINT64_MAX),
			 WIRE_E_BULK_CAPACITY);
	/* The most OUT capacity a TASK may declare: what one REPLY can bring back. */
	ck_assert_int_eq(patched64(K_TASK, T_ENTRY(1) + E_CAPACITY,
				   WIRE_DEFAULT_MAX_FRAME - sizeof(inout_data)),
			 0);
	size_t len;
	uint8_t *b = make_frame(K_TASK, &len);
	/* Inflate a section (capacity with it): it overlaps the next, or runs past the end. */
	put64(b + T_ENTRY(0) + E_CAPACITY, sizeof(in_data) + 8);
	put64(b + T_ENTRY(0) + E_LENGTH, sizeof(in_data) + 8);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_OVERLAP);
	free(b);
	b = make_frame(K_TASK, &len);
	put64(b + T_ENTRY(2) + E_CAPACITY, sizeof(inout_data) + 8);
	put64(b + T_ENTRY(2) + E_LENGTH, sizeof(inout_data) + 8);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_RANGE);
	/* Lengths beyond any frame are capacities beyond any frame. */
	put64(b + T_ENTRY(2) + E_CAPACITY, 0xffffffffull);
	put64(b + T_ENTRY(2) + E_LENGTH, 0xffffffffull);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_CAPACITY);
	put64(b + T_ENTRY(2) + E_CAPACITY, UINT64_MAX - 3);
	put64(b + T_ENTRY(2) + E_LENGTH, UINT64_MAX - 3);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_CAPACITY);
	free(b);
	/* OUT capacities together over the frame limit. */
	b = make_frame(K_TASK, &len);
	put64(b + T_ENTRY(1) + E_CAPACITY, WIRE_DEFAULT_MAX_FRAME - 2);
	put64(b + T_ENTRY(2) + E_CAPACITY, sizeof(inout_data) + 8); /* fails later anyway */
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_CAPACITY);
	free(b);

	/* Offsets: into the params, unaligned, past a gap, past the end, overflowing. */
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, 192), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, 0), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, 196), WIRE_E_BULK_OFFSET);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, 208), WIRE_E_BULK_OFFSET);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, 216), WIRE_E_BULK_RANGE);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(0) + E_OFFSET, UINT32_MAX), WIRE_E_BULK_RANGE);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(2) + E_OFFSET, 208), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(2) + E_OFFSET, 219), WIRE_E_BULK_OFFSET);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(2) + E_OFFSET, 220), WIRE_E_BULK_RANGE);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(1) + E_OFFSET, 0), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(1) + E_OFFSET, 224), WIRE_E_BULK_OFFSET);
	ck_assert_int_eq(patched32(K_TASK, T_ENTRY(1) + E_OFFSET, 232), WIRE_E_BULK_RANGE);

	/* Field indices, directions, the entry's reserved byte. */
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(1), 0), WIRE_E_BULK_ORDER);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(1), 3), WIRE_E_BULK_ORDER);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(2), WIRE_MAX_BULK), WIRE_E_BULK_FIELD);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(2) + 1, 1), WIRE_E_BULK_FIELD);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(0) + 2, 0), WIRE_E_BULK_DIR);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(0) + 2, 4), WIRE_E_BULK_DIR);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(0) + 2, CHI_BULK_OUT), WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(1) + 2, CHI_BULK_IN), WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched8(K_TASK, T_ENTRY(0) + 3, 1), WIRE_E_BODY_RESERVED);

	/* Padding after the params and at the end must be zero; nothing may follow. */
	ck_assert_int_eq(patched8(K_TASK, T_PARAMS + P_SIZE, 1), WIRE_E_PADDING);
	ck_assert_int_eq(patched8(K_TASK, PAYLOAD + 199, 1), WIRE_E_PADDING);
	ck_assert_int_eq(patched8(K_TASK, PAYLOAD + 223, 1), WIRE_E_PADDING);
}
END_TEST

START_TEST(task_trailing_section_space)
{
	/* A frame that announces 8 more bytes than its sections take. */
	size_t len;
	uint8_t *b = make_frame(K_TASK_BARE, &len);
	uint8_t *longer = calloc(1, len + 8);
	memcpy(longer, b, len);
	put32(longer + 12, get32(b + 12) + 8);
	ck_assert_int_eq(decode(longer, len + 8), WIRE_E_TRAILING);
	free(longer);
	free(b);
}
END_TEST

START_TEST(reply_fields)
{
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD, 1), WIRE_E_REPLY_RC);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD, (uint32_t)INT32_MIN), WIRE_E_REPLY_RC);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD, (uint32_t)(WIRE_RC_MIN - 1)), WIRE_E_REPLY_RC);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD, (uint32_t)WIRE_RC_MIN), 0);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 4, P_SIZE + 8), WIRE_E_BULK_OVERLAP);
	/* Into the padding before the first section: a valid, longer parameter block. */
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 4, P_SIZE + 4), 0);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 4, P_SIZE + 1000), WIRE_E_PARAMS_RANGE);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 4, UINT32_MAX), WIRE_E_PARAMS_SIZE);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 8, 3), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_REPLY, PAYLOAD + 8, 100), WIRE_E_BULK_COUNT);
	ck_assert_int_eq(patched32(K_REPLY_ERROR, PAYLOAD + 8, 1), WIRE_E_BODY_SHORT);
	ck_assert_int_eq(patched32(K_REPLY_ERROR, PAYLOAD + 4, 8), WIRE_E_PARAMS_RANGE);
	ck_assert_int_eq(patched8(K_REPLY, PAYLOAD + 10, 1), WIRE_E_BODY_RESERVED);
	ck_assert_int_eq(patched8(K_REPLY, PAYLOAD + 15, 1), WIRE_E_BODY_RESERVED);
	/* Out length within the capacity; IN sections never come back. */
	ck_assert_int_eq(patched64(K_REPLY, R_ENTRY(0) + E_LENGTH, sizeof(out_data) + 1),
			 WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched64(K_REPLY, R_ENTRY(0) + E_CAPACITY, OUT_LEN - 1),
			 WIRE_E_BULK_LENGTH);
	ck_assert_int_eq(patched64(K_REPLY, R_ENTRY(0) + E_CAPACITY, UINT64_MAX),
			 WIRE_E_BULK_CAPACITY);
	ck_assert_int_eq(patched8(K_REPLY, R_ENTRY(0) + 2, CHI_BULK_IN), WIRE_E_BULK_DIR);
	ck_assert_int_eq(patched8(K_REPLY, R_ENTRY(1), 1), WIRE_E_BULK_ORDER);
	/* Out length inflated (within the capacity): into the next section, past the end. */
	ck_assert_int_eq(patched64(K_REPLY, R_ENTRY(0) + E_LENGTH, OUT_LEN + 8),
			 WIRE_E_BULK_OVERLAP);
	size_t len;
	uint8_t *b = make_frame(K_REPLY, &len);
	put64(b + R_ENTRY(1) + E_LENGTH, sizeof(inout_data) + 8);
	put64(b + R_ENTRY(1) + E_CAPACITY, sizeof(inout_data) + 8);
	ck_assert_int_eq(decode(b, len), WIRE_E_BULK_RANGE);
	free(b);
	ck_assert_int_eq(patched32(K_REPLY, R_ENTRY(1) + E_OFFSET, 152), WIRE_E_BULK_OVERLAP);
	ck_assert_int_eq(patched32(K_REPLY, R_ENTRY(0) + E_OFFSET, 116), WIRE_E_BULK_OFFSET);
}
END_TEST

/* Every one-byte change of every fixture frame is refused with a wire code, or is a frame
 * whose re-encoding gives exactly its bytes (a change in a free field: cookie, pool, data).
 * A mutation of a length never gets past the decoder into a read out of bounds (ASan). */
START_TEST(every_byte_changed)
{
	static const uint8_t values[] = {0x00, 0x01, 0x07, 0x08, 0x7f, 0x80, 0xfe, 0xff};
	for (int k = 0; k < K_COUNT; k++) {
		size_t len;
		uint8_t *b = make_frame(k, &len);
		uint8_t *c = malloc(len);
		for (size_t i = 0; i < len; i++) {
			for (size_t v = 0; v < sizeof(values) + 1; v++) {
				memcpy(c, b, len);
				c[i] = v < sizeof(values) ? values[v] : (uint8_t)(b[i] + 1);
				struct wire_msg m;
				int rc = wire_decode(c, len, NULL, &m);
				if (rc == 0) {
					assert_reencodes(c, len, &m, NULL);
					continue;
				}
				ck_assert_msg(rc <= WIRE_E_BASE && rc >= WIRE_E_LAST,
					      "%s byte %zu: %d", kind_names[k], i, rc);
			}
		}
		free(c);
		free(b);
	}
}
END_TEST

/* ---- the encoder refuses what a receiver would ---- */

START_TEST(encoder_refusals)
{
	struct wire_msg m;
	static struct wire_out o;
	struct wire_limits lim;

	make_msg(K_TASK, &m);
	task_hdr.flags = 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_TASK_FLAGS);
	make_msg(K_TASK, &m);
	task_hdr.query.mode = CHI_QUERY_MODE_COUNT;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_TASK_QUERY);
	make_msg(K_TASK, &m);
	m.task.params_size = P_SIZE - 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_PARAMS_MISMATCH);
	make_msg(K_TASK, &m);
	m.task.num_bulk = WIRE_MAX_BULK + 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_BULK_COUNT);
	make_msg(K_TASK, &m);
	m.task.bulk[1].field = 0;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_BULK_ORDER);
	make_msg(K_TASK, &m);
	m.task.bulk[0].length = 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_BULK_LENGTH);
	make_msg(K_TASK, &m);
	m.task.bulk[0].data = NULL;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), -EINVAL);
	make_msg(K_TASK, &m);
	m.task.params = NULL;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), -EINVAL);
	make_msg(K_TASK, &m);
	m.task.hdr = NULL;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), -EINVAL);
	make_msg(K_TASK, &m);
	m.version_minor = WIRE_VERSION_MINOR + 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_MINOR);
	make_msg(K_TASK, &m);
	m.type = 0;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_TYPE);
	m.type = WIRE_TYPE_COUNT;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_TYPE);
	/* Over the frame limit: params, a section, the final padding. */
	make_msg(K_TASK, &m);
	wire_limits_default(&lim);
	lim.max_frame = 256;
	ck_assert_int_eq(wire_encode(&o, &m, &lim), WIRE_E_FRAME_SIZE);
	lim.max_frame = T_PARAMS + P_SIZE - 1;
	ck_assert_int_eq(wire_encode(&o, &m, &lim), WIRE_E_FRAME_SIZE);
	lim.max_frame = 270; /* the sections end at 269, the padding at 272 */
	ck_assert_int_eq(wire_encode(&o, &m, &lim), WIRE_E_FRAME_SIZE);
	lim.max_frame = 272;
	ck_assert_int_eq(wire_encode(&o, &m, &lim), 0);

	make_msg(K_REPLY, &m);
	m.reply.rc = 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_REPLY_RC);
	make_msg(K_REPLY, &m);
	m.reply.bulk[0].dir = CHI_BULK_IN;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_BULK_DIR);
	make_msg(K_REPLY, &m);
	m.reply.bulk[0].length = sizeof(out_data) + 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_BULK_LENGTH);
	make_msg(K_REPLY, &m);
	m.reply.params_size = WIRE_DEFAULT_MAX_PARAMS + 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_PARAMS_SIZE);

	make_msg(K_HELLO, &m);
	m.opaque.len = WIRE_DEFAULT_MAX_HELLO + 1;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_OPAQUE_SIZE);
	m.opaque.len = 1;
	m.opaque.data = NULL;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), -EINVAL);
	make_msg(K_CLOSE, &m);
	m.close.reason = WIRE_CLOSE_REASON_COUNT;
	ck_assert_int_eq(wire_encode(&o, &m, NULL), WIRE_E_CLOSE_REASON);
	ck_assert_int_eq(wire_encode(NULL, &m, NULL), -EINVAL);
	ck_assert_int_eq(wire_encode(&o, NULL, NULL), -EINVAL);
}
END_TEST

/* The largest TASK: every section, each with data, one iovec pair each. */
START_TEST(sixteen_sections)
{
	static uint8_t data[WIRE_MAX_BULK][3];
	struct wire_msg m, d;
	static struct wire_out o;
	make_msg(K_TASK, &m);
	m.task.num_bulk = WIRE_MAX_BULK;
	for (uint32_t i = 0; i < WIRE_MAX_BULK; i++) {
		memset(data[i], (int)i, sizeof(data[i]));
		m.task.bulk[i] = (struct wire_bulk){(uint16_t)i, CHI_BULK_INOUT, 3, 3, data[i]};
	}
	ck_assert_int_eq(wire_encode(&o, &m, NULL), 0);
	ck_assert_int_eq(o.iovcnt, WIRE_MAX_IOV);
	uint8_t *b = gather(&o, 0);
	ck_assert_int_eq(wire_decode(b, o.size, NULL, &d), 0);
	for (uint32_t i = 0; i < WIRE_MAX_BULK; i++)
		ck_assert_mem_eq(d.task.bulk[i].data, data[i], 3);
	assert_reencodes(b, o.size, &d, NULL);
	free(b);
}
END_TEST

/* ---- what the receiver checks once it knows the method ---- */

START_TEST(receiver_bulk_checks)
{
	size_t len;
	struct wire_msg m;
	uint8_t *b = make_frame(K_TASK, &len);
	ck_assert_int_eq(wire_decode(b, len, NULL, &m), 0);
	ck_assert_int_eq(wire_task_check_bulk(&m, fields, 3), 0);
	ck_assert_int_eq(wire_task_check_bulk(&m, fields, 2), WIRE_E_BULK_DECL);
	struct chi_bulk_field f[3];
	memcpy(f, fields, sizeof(f));
	f[2].dir = CHI_BULK_OUT;
	ck_assert_int_eq(wire_task_check_bulk(&m, f, 3), WIRE_E_BULK_DECL);
	memcpy(f, fields, sizeof(f));
	f[1].offset = P_SIZE - 8; /* the descriptor would run past the params */
	ck_assert_int_eq(wire_task_check_bulk(&m, f, 3), WIRE_E_BULK_DECL);
	memcpy(f, fields, sizeof(f));
	f[0].offset = 16; /* reads the OUT descriptor: capacity 100, not 13 */
	ck_assert_int_eq(wire_task_check_bulk(&m, f, 3), WIRE_E_BULK_DESC);
	ck_assert_int_eq(wire_task_check_bulk(&m, fields, WIRE_MAX_BULK + 1), WIRE_E_BULK_COUNT);
	free(b);
	/* The params' descriptor changed after the table was written. */
	b = make_frame(K_TASK, &len);
	put64(b + T_PARAMS + 32 + 8, 6); /* INOUT descriptor length */
	ck_assert_int_eq(wire_decode(b, len, NULL, &m), 0);
	ck_assert_int_eq(wire_task_check_bulk(&m, fields, 3), WIRE_E_BULK_DESC);
	ck_assert_int_eq(wire_reply_check_bulk(&m, fields, 3, params, P_SIZE), -EINVAL);
	free(b);

	b = make_frame(K_REPLY, &len);
	ck_assert_int_eq(wire_decode(b, len, NULL, &m), 0);
	ck_assert_int_eq(wire_reply_check_bulk(&m, fields, 3, params, P_SIZE), 0);
	ck_assert_int_eq(wire_reply_check_bulk(&m, fields, 3, params, P_SIZE - 1),
			 WIRE_E_PARAMS_MISMATCH);
	ck_assert_int_eq(wire_reply_check_bulk(&m, fields, 2, params, P_SIZE), WIRE_E_BULK_DECL);
	memcpy(f, fields, sizeof(f));
	f[1].dir = CHI_BULK_INOUT;
	ck_assert_int_eq(wire_reply_check_bulk(&m, f, 3, params, P_SIZE), WIRE_E_BULK_DECL);
	uint8_t sent[P_SIZE];
	memcpy(sent, params, P_SIZE);
	put64(sent + 16 + 8, 50); /* the origin declared 50 bytes, the reply says 100 */
	ck_assert_int_eq(wire_reply_check_bulk(&m, fields, 3, sent, P_SIZE), WIRE_E_BULK_DESC);
	ck_assert_int_eq(wire_task_check_bulk(&m, fields, 3), -EINVAL);
	free(b);
}
END_TEST

START_TEST(names_and_errnos)
{
	for (int c = WIRE_E_BASE; c >= WIRE_E_LAST; c--) {
		const char *s = wire_strerror(c);
		ck_assert_ptr_nonnull(s);
		ck_assert_uint_gt(strlen(s), 8);
		for (int d = c - 1; d >= WIRE_E_LAST; d--)
			ck_assert_str_ne(s, wire_strerror(d));
		ck_assert_int_lt(wire_errno(c), 0);
		ck_assert_int_gt(wire_errno(c), -4096);
	}
	ck_assert_str_eq(wire_strerror(WIRE_E_LAST - 1), "not a wire error code");
	ck_assert_str_eq(wire_strerror(-EINVAL), "invalid argument");
	ck_assert_int_eq(wire_errno(WIRE_E_VERSION), -EPROTONOSUPPORT);
	ck_assert_int_eq(wire_errno(WIRE_E_FRAME_SIZE), -EMSGSIZE);
	ck_assert_int_eq(wire_errno(WIRE_E_BULK_DESC), -EFAULT);
	ck_assert_int_eq(wire_errno(WIRE_E_TASK_FLAGS), -EINVAL);
	ck_assert_int_eq(wire_errno(WIRE_E_BULK_OVERLAP), -EPROTO);
	ck_assert_int_eq(wire_errno(-ENOMEM), -ENOMEM);
	ck_assert_str_eq(wire_type_name(WIRE_TASK), "TASK");
	ck_assert_str_eq(wire_type_name(WIRE_PONG), "PONG");
	ck_assert_str_eq(wire_type_name(0), "unknown");
	ck_assert_str_eq(wire_type_name(WIRE_TYPE_COUNT), "unknown");
}
END_TEST

/* ---- the fuzz seed corpus ---- */

/* One file per fixture frame, and stream.bin: all of them back to back. */
static int write_corpus(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/stream.bin", dir);
	FILE *all = fopen(path, "wb");
	if (!all) {
		perror(path);
		return 1;
	}
	for (int k = 0; k < K_COUNT; k++) {
		size_t len;
		struct wire_msg m;
		static struct wire_out o;
		make_msg(k, &m);
		if (wire_encode(&o, &m, NULL) != 0)
			return 1;
		len = o.size;
		snprintf(path, sizeof(path), "%s/%s.bin", dir, kind_names[k]);
		FILE *f = fopen(path, "wb");
		if (!f) {
			perror(path);
			return 1;
		}
		for (int i = 0; i < o.iovcnt; i++) {
			fwrite(o.iov[i].iov_base, 1, o.iov[i].iov_len, f);
			fwrite(o.iov[i].iov_base, 1, o.iov[i].iov_len, all);
		}
		if (fclose(f) != 0)
			return 1;
		printf("%s: %zu bytes\n", path, len);
	}
	return fclose(all) != 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return write_corpus(argv[2]);
	const TTest *const tests[] = {
		round_trip_every_type,
		fixed_layout_of_the_header,
		iovecs_point_at_the_sources,
		task_header_node_local_words_are_reset,
		truncated_at_every_byte,
		stream_of_frames_in_small_pieces,
		bad_magic_version_type_flags,
		header_length_and_reserved,
		payload_length_inflated_or_overflowing,
		oversized_frame_refused_from_the_header,
		unaligned_buffer_and_bad_limits,
		opaque_lengths,
		close_reason,
		task_params_size,
		task_header_sanity,
		task_bulk_count,
		task_bulk_sections,
		task_trailing_section_space,
		reply_fields,
		every_byte_changed,
		encoder_refusals,
		sixteen_sections,
		receiver_bulk_checks,
		names_and_errnos,
	};
	return chi_check_main("wire", 60, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
