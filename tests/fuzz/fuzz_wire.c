/* libFuzzer target: the node-to-node frame decoder (transport/wire.c) must refuse any input
 * with a wire error code, never crash or read out of bounds, and what it accepts must hold:
 *   - wire_frame_need() agrees with wire_decode() on the header and the frame's size;
 *   - every pointer it returns lies inside the frame;
 *   - re-encoding the decoded frame gives exactly its bytes (the format is canonical);
 *   - the same frame cut short by one byte is truncated;
 *   - what tighter limits accept, the defaults accept too;
 *   - the receiver's bulk checks run on it without crashing.
 * The input is read as a stream of back-to-back frames, as a TCP receiver would.
 * Seeds: tests/fuzz/corpus_wire (written by `test_wire --corpus DIR`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_FRAMES 16

static void check(int ok)
{
	if (!ok)
		abort();
}

static int is_wire_code(int rc)
{
	return rc <= WIRE_E_BASE && rc >= WIRE_E_LAST;
}

static void inside(const void *p, uint64_t n, const uint8_t *b, uint64_t len)
{
	if (!n)
		return;
	check(p != NULL);
	check((const uint8_t *)p >= b && (uint64_t)((const uint8_t *)p - b) <= len - n);
}

static void reencodes(const uint8_t *b, const struct wire_msg *m, const struct wire_limits *lim)
{
	static struct wire_out o;
	check(wire_encode(&o, m, lim) == 0);
	check(o.size == m->frame_size);
	check(o.iovcnt <= WIRE_MAX_IOV);
	uint64_t at = 0;
	for (int i = 0; i < o.iovcnt; i++) {
		check(memcmp(b + at, o.iov[i].iov_base, o.iov[i].iov_len) == 0);
		at += o.iov[i].iov_len;
	}
	check(at == o.size);
}

/* Invariants of one accepted frame at @b (@len bytes available). */
static void accepted(const uint8_t *b, size_t len, const struct wire_msg *m)
{
	uint64_t n = m->frame_size;
	check(n >= WIRE_HEADER_SIZE && n <= len && n % WIRE_ALIGN == 0);
	switch (m->type) {
	case WIRE_TASK: {
		inside(m->task.hdr, CHI_TASK_HEADER_SIZE, b, n);
		inside(m->task.params, m->task.params_size, b, n);
		check(m->task.hdr->params_size == m->task.params_size);
		check(m->task.num_bulk <= WIRE_MAX_BULK);
		struct chi_bulk_field f[WIRE_MAX_BULK];
		for (uint32_t i = 0; i < m->task.num_bulk; i++) {
			const struct wire_bulk *x = &m->task.bulk[i];
			inside(x->data, x->length, b, n);
			check(x->length <= x->capacity);
			f[i] = (struct chi_bulk_field){i * 16, x->dir, CHI_BULK_LEN_WHOLE, 0};
		}
		int rc = wire_task_check_bulk(m, f, m->task.num_bulk);
		check(rc == 0 || rc == WIRE_E_BULK_DECL || rc == WIRE_E_BULK_DESC);
		break;
	}
	case WIRE_REPLY: {
		inside(m->reply.params, m->reply.params_size, b, n);
		check(m->reply.rc <= 0 && m->reply.rc >= WIRE_RC_MIN);
		struct chi_bulk_field f[WIRE_MAX_BULK];
		for (uint32_t i = 0; i < WIRE_MAX_BULK; i++)
			f[i] = (struct chi_bulk_field){i * 16, CHI_BULK_INOUT, CHI_BULK_LEN_WHOLE,
						       0};
		for (uint32_t i = 0; i < m->reply.num_bulk; i++) {
			const struct wire_bulk *x = &m->reply.bulk[i];
			inside(x->data, x->length, b, n);
			check(x->length <= x->capacity && (x->dir & CHI_BULK_OUT));
		}
		int rc = wire_reply_check_bulk(m, f, WIRE_MAX_BULK, m->reply.params,
					       m->reply.params_size);
		check(rc == 0 || rc == WIRE_E_BULK_DECL || rc == WIRE_E_BULK_DESC);
		break;
	}
	case WIRE_HELLO:
	case WIRE_AUTH:
	case WIRE_CONTROL:
		inside(m->opaque.data, m->opaque.len, b, n);
		break;
	case WIRE_CLOSE:
		check(m->close.reason < WIRE_CLOSE_REASON_COUNT);
		break;
	case WIRE_PING:
	case WIRE_PONG:
		check(n == WIRE_HEADER_SIZE);
		break;
	default:
		abort();
	}
	reencodes(b, m, NULL);
	struct wire_msg cut;
	check(wire_decode(b, n - 1, NULL, &cut) == WIRE_E_TRUNCATED);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An aligned copy of exactly the input, so ASan sees a read one byte past it. */
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	static const struct wire_limits tight = {
		.max_frame = 4096,
		.max_params = 256,
		.max_bulk = 4,
		.max_hello = 64,
		.max_control = 512,
	};
	size_t at = 0;
	for (int frames = 0; frames < MAX_FRAMES && at < size; frames++) {
		const uint8_t *b = buf + at; /* frames are whole words: b stays aligned */
		size_t len = size - at;
		struct wire_msg m, t;
		uint64_t need;
		int nrc = wire_frame_need(b, len, NULL, &need);
		int rc = wire_decode(b, len, NULL, &m);
		int trc = wire_decode(b, len, &tight, &t);
		check(rc == 0 || is_wire_code(rc));
		check(trc == 0 || is_wire_code(trc));
		check(wire_strerror(rc)[0] != '\0');
		if (nrc) {
			check(is_wire_code(nrc) && rc == nrc);
		} else {
			check(need >= WIRE_HEADER_SIZE);
			if (need > len)
				check(rc == WIRE_E_TRUNCATED);
			else if (rc == 0)
				check(need == m.frame_size);
		}
		if (trc == 0) {
			check(rc == 0 && t.frame_size == m.frame_size);
			reencodes(b, &t, &tight);
		}
		if (rc != 0)
			break;
		accepted(b, len, &m);
		at += m.frame_size;
	}
	free(buf);
	return 0;
}
