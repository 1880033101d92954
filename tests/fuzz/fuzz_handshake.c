/* libFuzzer target: the join handshake (transport/handshake.c) must refuse whatever a peer
 * without the key sends, never crash or read out of bounds, and never complete on it:
 *   - mode 0: the input is a stranger talking to a responder, one message after another;
 *   - mode 1: the same, to an initiator that has sent its HELLO;
 *   - mode 2: two honest sides run a handshake while the input changes messages in flight;
 *     unless nothing changed, the initiator never completes, and the responder only when
 *     the change was to its own last message (it had verified the initiator before).
 * Always: a result is HS_CONTINUE, HS_DONE or an HS_E_* code; a failure sends nothing and
 * is final; what a side sends fits HS_MAX_MSG and is a message of the kind due.
 *
 * Remote clients: when (byte 0 / 3) is odd, the initiator is a client (HS_NODE_CLIENT) and
 * the responder takes clients (hs_accept_clients); the same must hold.
 *
 * Input: byte 0 picks the mode (modulo 3). Modes 0 and 1: then messages, each a length
 * byte and that many bytes (cut short at the end of the input). Mode 2: then records of 4
 * bytes: message (0 HELLO_I, 1 HELLO_R, 2 AUTH_I, 3 AUTH_R; modulo 4), offset (modulo the
 * message's length), a byte to xor there, and a signed change of the message's length.
 * Seeds: tests/fuzz/corpus_handshake (written by `test_handshake --corpus DIR`). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NODES 4u
#define ROOM  (HS_MAX_MSG + 128)

static void check(int ok)
{
	if (!ok)
		abort();
}

static const uint8_t key[HS_KEY_LEN] = {1,  2,	3,  4,	5,  6,	7,  8,	9,  10, 11,
					12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
					23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static int is_hs_code(int rc)
{
	return rc <= HS_E_BASE && rc >= HS_E_LAST;
}

/* One call's result against the invariants; @return it. */
static int checked(struct hs *h, const uint8_t *in, size_t len, uint8_t *out, size_t *n)
{
	*n = HS_MAX_MSG;
	int rc = hs_receive(h, in, len, out, n);
	check(rc == HS_CONTINUE || rc == HS_DONE || is_hs_code(rc));
	check(*n <= HS_MAX_MSG);
	if (rc < 0) {
		check(*n == 0);
		check(hs_peer(h) == NULL || rc == HS_E_VERSION || rc == HS_E_FORMAT);
		/* Final: even a well-formed message is refused now. */
		uint8_t again[HS_MAX_MSG];
		size_t m = sizeof(again);
		check(hs_receive(h, in, len, again, &m) == HS_E_STATE && m == 0);
	} else if (*n) {
		check(*n == HS_HELLO_LEN || *n == HS_AUTH_LEN);
		check(hs_msg_is_hello(out, *n) == (*n == HS_HELLO_LEN));
	}
	if (rc == HS_DONE) {
		const struct hs_ids *p = hs_peer(h);
		check(p != NULL && (p->node < NODES || p->node == HS_NODE_CLIENT));
	}
	return rc;
}

/* A stranger feeds messages to @h. */
static void stranger(struct hs *h, const uint8_t *d, size_t size)
{
	uint8_t out[HS_MAX_MSG];
	size_t at = 0, n;
	while (at < size) {
		size_t len = d[at++];
		if (len > size - at)
			len = size - at;
		int rc = checked(h, d + at, len, out, &n);
		at += len;
		check(rc != HS_DONE); /* it cannot know the proof */
		if (rc < 0)
			return;
	}
}

static void tamper(const uint8_t *d, size_t size, int clients)
{
	struct hs i, r;
	struct hs_ids a = {clients ? HS_NODE_CLIENT : 0, 1, 1, 0, 7}, b = {3, 2, 1, 0, 7};
	uint8_t m[ROOM];
	size_t len;
	int changed = 0, changed_last_only = 1, done_i = 0, done_r = 0;

	check(hs_init(&i, HS_INITIATOR, key, &a, clients ? HS_NODE_CLIENT : NODES) == 0);
	check(hs_init(&r, HS_RESPONDER, key, &b, NODES) == 0);
	if (clients)
		check(hs_accept_clients(&r) == 0);
	len = HS_MAX_MSG;
	check(hs_start(&i, m, &len) == HS_CONTINUE);
	for (unsigned k = 0; k < 4; k++) {
		uint8_t orig[ROOM];
		size_t orig_len = len;
		memcpy(orig, m, len);
		for (size_t at = 0; at + 4 <= size; at += 4) {
			if (d[at] % 4 != k)
				continue;
			if (len)
				m[d[at + 1] % len] ^= d[at + 2];
			long nl = (long)len + (int8_t)d[at + 3];
			if (nl < 0)
				nl = 0;
			if (nl > ROOM)
				nl = ROOM;
			if ((size_t)nl > len)
				memset(m + len, 0, (size_t)nl - len);
			len = (size_t)nl;
		}
		if (len != orig_len || memcmp(m, orig, len) != 0) {
			changed = 1;
			if (k != 3)
				changed_last_only = 0;
		}
		struct hs *to = k % 2 == 0 ? &r : &i;
		uint8_t out[HS_MAX_MSG];
		size_t n;
		int rc = checked(to, m, len, out, &n);
		if (rc == HS_DONE)
			*(to == &i ? &done_i : &done_r) = 1;
		if (rc < 0 || k == 3)
			break;
		check(n > 0);
		memcpy(m, out, n);
		len = n;
	}
	if (!changed) {
		check(done_i && done_r);
		check(hs_peer(&i)->node == b.node && hs_peer(&r)->node == a.node);
	} else {
		check(!done_i);
		check(!done_r || changed_last_only);
	}
	hs_fini(&i);
	hs_fini(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hs h;
	struct hs_ids self = {1, 0, 1, 0, 7};
	uint8_t out[HS_MAX_MSG];
	size_t n = sizeof(out);

	if (size == 0)
		return 0;
	int clients = (data[0] / 3) & 1;
	switch (data[0] % 3) {
	case 0:
		check(hs_init(&h, HS_RESPONDER, key, &self, NODES) == 0);
		if (clients)
			check(hs_accept_clients(&h) == 0);
		stranger(&h, data + 1, size - 1);
		hs_fini(&h);
		break;
	case 1:
		if (clients)
			self.node = HS_NODE_CLIENT;
		check(hs_init(&h, HS_INITIATOR, key, &self, clients ? HS_NODE_CLIENT : NODES) == 0);
		check(hs_start(&h, out, &n) == HS_CONTINUE && n == HS_HELLO_LEN);
		stranger(&h, data + 1, size - 1);
		hs_fini(&h);
		break;
	default:
		tamper(data + 1, size - 1, clients);
		break;
	}
	return 0;
}
