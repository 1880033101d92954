/* The join handshake (transport/handshake.c): success both ways, wrong keys, reflected and
 * replayed messages, versions, every truncation, extension and one-byte change of every
 * message, order, node ids, and the secret file's rules.
 *
 * `test_handshake --corpus DIR` writes the fuzz seeds (tests/fuzz/corpus_handshake/) in the
 * input format fuzz_handshake.c reads. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "transport/handshake.h"
#include "transport/wire.h"

#include "check_main.h"

#define NODES 4u
#define PROTO 7u

static uint8_t key1[HS_KEY_LEN];
static uint8_t key2[HS_KEY_LEN];

static void make_keys(void)
{
	for (unsigned i = 0; i < HS_KEY_LEN; i++) {
		key1[i] = (uint8_t)(i * 7 + 1);
		key2[i] = (uint8_t)(i * 7 + 1);
	}
	key2[HS_KEY_LEN - 1] ^= 1; /* one bit apart */
}

static struct hs_ids ids(uint32_t node, uint16_t worker)
{
	return (struct hs_ids){node, worker, WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR, PROTO};
}

static int is_hs_code(int rc)
{
	return rc <= HS_E_BASE && rc >= HS_E_LAST;
}

/* One message as it crossed. */
struct msg {
	uint8_t b[HS_MAX_MSG + 16];
	size_t len;
};

/* A recorded handshake: the four messages and each side's state before each one arrived
 * (a struct hs is plain data: copying it replays that moment). */
struct run {
	struct hs i0, r0; /* initiator after hs_start, responder fresh */
	struct hs r1;	  /* responder after HELLO_I */
	struct hs i1;	  /* initiator after HELLO_R */
	struct msg m[4];  /* HELLO_I, HELLO_R, AUTH_I, AUTH_R */
	struct hs i, r;	  /* both at the end */
};

static void init_pair(struct hs *i, struct hs *r, const uint8_t *ki, const uint8_t *kr)
{
	struct hs_ids a = ids(0, 3), b = ids(2, 5);
	ck_assert_int_eq(hs_init(i, HS_INITIATOR, ki, &a, NODES), 0);
	ck_assert_int_eq(hs_init(r, HS_RESPONDER, kr, &b, NODES), 0);
}

/* An honest handshake between @i and @r (initialised), recorded into @run. */
static void record(struct run *run, struct hs *i, struct hs *r)
{
	size_t n;

	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_start(i, run->m[0].b, &n), HS_CONTINUE);
	run->m[0].len = n;
	run->i0 = *i;
	run->r0 = *r;
	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_receive(r, run->m[0].b, run->m[0].len, run->m[1].b, &n), HS_CONTINUE);
	run->m[1].len = n;
	run->r1 = *r;
	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_receive(i, run->m[1].b, run->m[1].len, run->m[2].b, &n), HS_CONTINUE);
	run->m[2].len = n;
	run->i1 = *i;
	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_receive(r, run->m[2].b, run->m[2].len, run->m[3].b, &n), HS_DONE);
	run->m[3].len = n;
	uint8_t none[HS_MAX_MSG];
	n = sizeof(none);
	ck_assert_int_eq(hs_receive(i, run->m[3].b, run->m[3].len, none, &n), HS_DONE);
	ck_assert_uint_eq(n, 0); /* the initiator has nothing more to say */
	run->i = *i;
	run->r = *r;
}

static void honest_run(struct run *run)
{
	struct hs i, r;
	init_pair(&i, &r, key1, key1);
	record(run, &i, &r);
}

/* Feed @m to a copy of @state; @return its code. */
static int feed(const struct hs *state, const uint8_t *m, size_t len, struct hs *after)
{
	uint8_t out[HS_MAX_MSG];
	size_t n = sizeof(out);
	struct hs h = *state;
	int rc = hs_receive(&h, m, len, out, &n);
	if (rc < 0)
		ck_assert_uint_eq(n, 0); /* a failure sends nothing */
	if (after)
		*after = h;
	return rc;
}

static void assert_ids(const struct hs_ids *got, const struct hs_ids *want)
{
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(got->node, want->node);
	ck_assert_uint_eq(got->worker, want->worker);
	ck_assert_uint_eq(got->wire_major, want->wire_major);
	ck_assert_uint_eq(got->wire_minor, want->wire_minor);
	ck_assert_uint_eq(got->proto, want->proto);
}

static int all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t k = 0; k < n; k++)
		if (b[k])
			return 0;
	return 1;
}

START_TEST(success_both_ways)
{
	struct run run;
	honest_run(&run);
	ck_assert_uint_eq(run.m[0].len, HS_HELLO_LEN);
	ck_assert_uint_eq(run.m[1].len, HS_HELLO_LEN);
	ck_assert_uint_eq(run.m[2].len, HS_AUTH_LEN);
	ck_assert_uint_eq(run.m[3].len, HS_AUTH_LEN);
	ck_assert_int_eq(hs_msg_is_hello(run.m[0].b, run.m[0].len), 1);
	ck_assert_int_eq(hs_msg_is_hello(run.m[1].b, run.m[1].len), 1);
	ck_assert_int_eq(hs_msg_is_hello(run.m[2].b, run.m[2].len), 0);
	ck_assert_int_eq(hs_msg_is_hello(run.m[3].b, run.m[3].len), 0);
	ck_assert_int_eq(hs_msg_is_hello(NULL, 0), 0);
	struct hs_ids a = ids(0, 3), b = ids(2, 5);
	assert_ids(hs_peer(&run.i), &b);
	assert_ids(hs_peer(&run.r), &a);
	/* Nobody is known before the end. */
	ck_assert_ptr_null(hs_peer(&run.i0));
	ck_assert_ptr_null(hs_peer(&run.r1));
	ck_assert_ptr_null(hs_peer(&run.i1));
	/* The key copy goes as soon as it is no longer needed. */
	ck_assert(all_zero(run.i.key, HS_KEY_LEN));
	ck_assert(all_zero(run.r.key, HS_KEY_LEN));

	/* The other way round (node 2 dials node 0), with other minors on each side: they may
	 * differ, and each learns the other's. */
	struct hs i, r;
	struct hs_ids c = ids(2, 0), d = ids(0, 65535);
	c.wire_minor = 3;
	d.wire_minor = 9;
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &c, NODES), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &d, NODES), 0);
	record(&run, &i, &r);
	assert_ids(hs_peer(&i), &d);
	assert_ids(hs_peer(&r), &c);
	hs_fini(&i);
	ck_assert(all_zero(&i, sizeof(i)));
	hs_fini(&i); /* twice */
	hs_fini(NULL);
	ck_assert_ptr_null(hs_peer(NULL));

	/* Two handshakes never share a nonce. */
	struct run again;
	honest_run(&again);
	ck_assert(memcmp(again.m[0].b + 24, run.m[0].b + 24, HS_NONCE_LEN) != 0);
	ck_assert(memcmp(again.m[1].b + 24, run.m[1].b + 24, HS_NONCE_LEN) != 0);
}
END_TEST

/* The byte layout and the transcript are what docs/design/handshake.md says: recompute both
 * MACs here from the document's description. */
START_TEST(layout_and_transcript_as_documented)
{
	struct run run;
	honest_run(&run);
	const uint8_t *hi = run.m[0].b, *hr = run.m[1].b;
	/* clang-format off */
	static const uint8_t hdr_i[] = {
		'C', 'H', 'I', 'J', 1, HS_HELLO_I, WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR,
		PROTO, 0, 0, 0,	/* proto */
		0, 0, 0, 0,	/* reserved */
		0, 0, 0, 0,	/* node 0 */
		3, 0, 0, 0,	/* worker 3, reserved */
	};
	static const uint8_t hdr_r[] = {
		'C', 'H', 'I', 'J', 1, HS_HELLO_R, WIRE_VERSION_MAJOR, WIRE_VERSION_MINOR,
		PROTO, 0, 0, 0,
		0, 0, 0, 0,
		2, 0, 0, 0,	/* node 2 */
		5, 0, 0, 0,	/* worker 5 */
	};
	/* clang-format on */
	ck_assert_mem_eq(hi, hdr_i, sizeof(hdr_i));
	ck_assert_mem_eq(hr, hdr_r, sizeof(hdr_r));
	static const uint8_t ai[] = {'C', 'H', 'I', 'J', 1, HS_AUTH_I, 0, 0};
	static const uint8_t ar[] = {'C', 'H', 'I', 'J', 1, HS_AUTH_R, 0, 0};
	ck_assert_mem_eq(run.m[2].b, ai, sizeof(ai));
	ck_assert_mem_eq(run.m[3].b, ar, sizeof(ar));

	uint8_t t[16 + 2 * HS_HELLO_LEN], mac[HS_MAC_LEN];
	memcpy(t + 16, hi, HS_HELLO_LEN);
	memcpy(t + 16 + HS_HELLO_LEN, hr, HS_HELLO_LEN);
	memcpy(t, "CHI-JOIN-INIT-v1", 16);
	crypto_auth_hmacsha256(mac, t, sizeof(t), key1);
	ck_assert_mem_eq(run.m[2].b + 8, mac, HS_MAC_LEN);
	memcpy(t, "CHI-JOIN-RESP-v1", 16);
	crypto_auth_hmacsha256(mac, t, sizeof(t), key1);
	ck_assert_mem_eq(run.m[3].b + 8, mac, HS_MAC_LEN);
}
END_TEST

START_TEST(wrong_key_refused_on_both_sides)
{
	/* The responder holds another key: the initiator's proof fails there, and the
	 * responder sends nothing back (feed() checks that a failure writes nothing). */
	struct hs i, r;
	struct run run;
	init_pair(&i, &r, key1, key2);
	uint8_t out[HS_MAX_MSG];
	size_t n = sizeof(out);
	ck_assert_int_eq(hs_start(&i, run.m[0].b, &n), HS_CONTINUE);
	run.m[0].len = n;
	n = sizeof(out);
	ck_assert_int_eq(hs_receive(&r, run.m[0].b, run.m[0].len, run.m[1].b, &n), HS_CONTINUE);
	run.m[1].len = n;
	struct hs i_other_key = i; /* the same initiator, had it held key2 */
	memcpy(i_other_key.key, key2, HS_KEY_LEN);
	n = sizeof(out);
	ck_assert_int_eq(hs_receive(&i, run.m[1].b, run.m[1].len, run.m[2].b, &n), HS_CONTINUE);
	run.m[2].len = n;
	struct hs r_before = r;
	ck_assert_int_eq(feed(&r, run.m[2].b, run.m[2].len, &r), HS_E_AUTH);
	ck_assert_ptr_null(hs_peer(&r));
	ck_assert(all_zero(r.key, HS_KEY_LEN));

	/* The initiator's side: a responder that holds key2 and proves over the very same
	 * transcript (it had a key2 initiator's proof to answer) is refused by the key1
	 * initiator. */
	uint8_t auth_i2[HS_MAX_MSG], auth_r2[HS_MAX_MSG];
	size_t n2 = sizeof(auth_i2);
	ck_assert_int_eq(hs_receive(&i_other_key, run.m[1].b, run.m[1].len, auth_i2, &n2),
			 HS_CONTINUE);
	size_t n3 = sizeof(auth_r2);
	ck_assert_int_eq(hs_receive(&r_before, auth_i2, n2, auth_r2, &n3), HS_DONE);
	ck_assert_int_eq(feed(&i, auth_r2, n3, &i), HS_E_AUTH);
	ck_assert_ptr_null(hs_peer(&i));

	/* Each flipped bit of either MAC is refused. */
	honest_run(&run);
	for (unsigned k = 8; k < HS_AUTH_LEN; k++) {
		for (unsigned bit = 0; bit < 8; bit++) {
			struct msg m = run.m[2];
			m.b[k] ^= (uint8_t)(1u << bit);
			ck_assert_int_eq(feed(&run.r1, m.b, m.len, NULL), HS_E_AUTH);
			m = run.m[3];
			m.b[k] ^= (uint8_t)(1u << bit);
			ck_assert_int_eq(feed(&run.i1, m.b, m.len, NULL), HS_E_AUTH);
		}
	}
}
END_TEST

START_TEST(reflected_messages)
{
	struct run run;
	honest_run(&run);
	struct hs h;

	/* The initiator gets its own HELLO back: the kind says it is not the responder's. */
	ck_assert_int_eq(feed(&run.i0, run.m[0].b, run.m[0].len, NULL), HS_E_STATE);
	/* With the kind rewritten: it names this node, or, renamed too, carries our nonce. */
	struct msg m = run.m[0];
	m.b[5] = HS_HELLO_R;
	ck_assert_int_eq(feed(&run.i0, m.b, m.len, NULL), HS_E_SELF);
	m.b[16] = 1; /* node 1 */
	ck_assert_int_eq(feed(&run.i0, m.b, m.len, NULL), HS_E_REFLECT);

	/* The responder gets its own HELLO back (instead of a proof). */
	ck_assert_int_eq(feed(&run.r1, run.m[1].b, run.m[1].len, NULL), HS_E_STATE);
	/* A fresh responder offered a responder's HELLO. */
	ck_assert_int_eq(feed(&run.r0, run.m[1].b, run.m[1].len, NULL), HS_E_STATE);

	/* The initiator gets its own proof back as the responder's: the role label differs. */
	ck_assert_int_eq(feed(&run.i1, run.m[2].b, run.m[2].len, NULL), HS_E_STATE);
	m = run.m[2];
	m.b[5] = HS_AUTH_R;
	ck_assert_int_eq(feed(&run.i1, m.b, m.len, &h), HS_E_AUTH);
	/* And the responder the initiator's proof relabelled as its own kind: the responder's
	 * own proof as an initiator's fails on the label too. */
	m = run.m[3];
	m.b[5] = HS_AUTH_I;
	ck_assert_int_eq(feed(&run.r1, m.b, m.len, NULL), HS_E_AUTH);

	/* A responder never hands out a MAC before the initiator proved: all it sends to a
	 * stranger is its HELLO (no MAC in it), and nothing at all after a bad proof. */
	ck_assert_uint_eq(run.m[1].len, HS_HELLO_LEN);
	m = run.m[2];
	m.b[HS_AUTH_LEN - 1] ^= 0x80;
	ck_assert_int_eq(feed(&run.r1, m.b, m.len, NULL), HS_E_AUTH);
}
END_TEST

START_TEST(replayed_transcript_refused)
{
	struct run old, now;
	honest_run(&old);
	honest_run(&now);

	/* Someone who recorded an old handshake replays the initiator's side to a responder:
	 * the HELLO is taken (it is well formed), but the responder's nonce is new and the old
	 * proof does not cover it. */
	struct hs r;
	uint8_t out[HS_MAX_MSG];
	size_t n = sizeof(out);
	r = now.r0;
	ck_assert_int_eq(hs_receive(&r, old.m[0].b, old.m[0].len, out, &n), HS_CONTINUE);
	ck_assert(memcmp(out + 24, old.m[1].b + 24, HS_NONCE_LEN) != 0);
	ck_assert_int_eq(feed(&r, old.m[2].b, old.m[2].len, NULL), HS_E_AUTH);

	/* ... or the responder's side to an initiator: its nonce is new. */
	struct hs i = now.i0;
	ck_assert_int_eq(feed(&i, old.m[1].b, old.m[1].len, &i), HS_CONTINUE);
	ck_assert_int_eq(feed(&i, old.m[3].b, old.m[3].len, NULL), HS_E_AUTH);

	/* A proof from one run in another (same pair, same ids). */
	ck_assert_int_eq(feed(&now.r1, old.m[2].b, old.m[2].len, NULL), HS_E_AUTH);
	ck_assert_int_eq(feed(&now.i1, old.m[3].b, old.m[3].len, NULL), HS_E_AUTH);
}
END_TEST

START_TEST(version_mismatch)
{
	struct run run;
	honest_run(&run);
	struct hs h;

	/* Another cluster protocol version, at the responder. */
	struct hs i, r;
	struct hs_ids a = ids(0, 3), b = ids(2, 5);
	a.proto = PROTO + 1;
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &a, NODES), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &b, NODES), 0);
	uint8_t m[HS_MAX_MSG];
	size_t n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	ck_assert_int_eq(feed(&r, m, n, &h), HS_E_VERSION);
	/* The caller logs what the peer speaks. */
	const struct hs_ids *p = hs_peer(&h);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(p->proto, PROTO + 1);
	ck_assert_uint_eq(p->wire_major, WIRE_VERSION_MAJOR);
	ck_assert_uint_eq(p->node, 0);
	/* ... also after the caller fed it more. */
	ck_assert_int_eq(feed(&h, m, n, &h), HS_E_STATE);
	ck_assert_ptr_nonnull(hs_peer(&h));
	ck_assert_uint_eq(hs_peer(&h)->proto, PROTO + 1);

	/* Another wire major, at the initiator. */
	struct msg x = run.m[1];
	x.b[6] = WIRE_VERSION_MAJOR + 1;
	ck_assert_int_eq(feed(&run.i0, x.b, x.len, &h), HS_E_VERSION);
	ck_assert_uint_eq(hs_peer(&h)->wire_major, WIRE_VERSION_MAJOR + 1);
	x = run.m[1];
	x.b[8] = PROTO - 1;
	ck_assert_int_eq(feed(&run.i0, x.b, x.len, NULL), HS_E_VERSION);
	/* Checked before the length: a HELLO of another version may be longer or shorter. */
	ck_assert_int_eq(feed(&run.i0, x.b, 16, NULL), HS_E_VERSION);
	ck_assert_int_eq(feed(&run.i0, x.b, HS_MAX_MSG + 8, NULL), HS_E_VERSION);

	/* Another minor is not a mismatch (covered in success_both_ways). Another handshake
	 * format is, and what it says of its versions is kept when it is long enough. */
	x = run.m[0];
	x.b[4] = 2;
	ck_assert_int_eq(feed(&run.r0, x.b, x.len, &h), HS_E_FORMAT);
	ck_assert_ptr_nonnull(hs_peer(&h));
	ck_assert_uint_eq(hs_peer(&h)->proto, PROTO);
	ck_assert_int_eq(feed(&run.r0, x.b, 8, &h), HS_E_FORMAT);
	ck_assert_ptr_null(hs_peer(&h));
	/* In a proof, a format byte that is not the one the HELLOs agreed is refused too. */
	x = run.m[2];
	x.b[4] = 0;
	ck_assert_int_eq(feed(&run.r1, x.b, x.len, NULL), HS_E_FORMAT);
}
END_TEST

/* Every prefix and every extension of each message is refused by the side it is for. */
START_TEST(truncated_and_extended)
{
	struct run run;
	honest_run(&run);
	const struct hs *to[4] = {&run.r0, &run.i0, &run.r1, &run.i1};
	for (int k = 0; k < 4; k++) {
		struct msg m = run.m[k];
		ck_assert_int_ge(feed(to[k], m.b, m.len, NULL), 0); /* as sent: taken */
		for (size_t len = 0; len < m.len; len++)
			ck_assert_int_eq(feed(to[k], m.b, len, NULL), HS_E_LENGTH);
		/* Extensions, with zeros and with other bytes. */
		for (size_t len = m.len + 1; len <= sizeof(m.b); len++) {
			memset(m.b + run.m[k].len, 0, sizeof(m.b) - run.m[k].len);
			ck_assert_int_eq(feed(to[k], m.b, len, NULL), HS_E_LENGTH);
			memset(m.b + run.m[k].len, 0xa5, sizeof(m.b) - run.m[k].len);
			ck_assert_int_eq(feed(to[k], m.b, len, NULL), HS_E_LENGTH);
		}
		/* A huge length (the caller's frame could be up to max_hello). */
		static uint8_t big[WIRE_DEFAULT_MAX_HELLO];
		memcpy(big, run.m[k].b, run.m[k].len);
		ck_assert_int_eq(feed(to[k], big, sizeof(big), NULL), HS_E_LENGTH);
	}
}
END_TEST

/* Each one-byte change of each message in flight: whatever the receiver makes of it, the
 * handshake does not complete where the change could matter. The initiator never finishes;
 * the responder finishes only if the change was to the last message, which it sent after
 * the initiator had proved itself. */
START_TEST(every_byte_changed)
{
	struct run run;
	honest_run(&run);
	/* Each side's state just before message k arrives. */
	const struct hs *ib[4] = {&run.i0, &run.i0, &run.i1, &run.i1};
	const struct hs *rb[4] = {&run.r0, &run.r1, &run.r1, &run.r};
	static const uint8_t flips[] = {0x01, 0x80, 0xff};
	for (int k = 0; k < 4; k++) {
		for (size_t at = 0; at < run.m[k].len; at++) {
			for (size_t f = 0; f < sizeof(flips); f++) {
				struct hs i = *ib[k], r = *rb[k];
				struct msg m[4];
				memcpy(m, run.m, sizeof(m));
				m[k].b[at] ^= flips[f];
				/* The responder sent AUTH_R after it was done. */
				int done_i = 0, done_r = k == 3, rc = 0;
				/* Play the run on from message k, with m[k] changed. */
				for (int j = k; j < 4 && rc >= 0; j++) {
					struct hs *to = j % 2 == 0 ? &r : &i;
					uint8_t out[HS_MAX_MSG];
					size_t n = sizeof(out);
					rc = hs_receive(to, m[j].b, m[j].len, out, &n);
					if (rc < 0)
						ck_assert(is_hs_code(rc));
					if (rc == HS_DONE)
						*(to == &i ? &done_i : &done_r) = 1;
					if (rc >= 0 && j < 3) {
						memcpy(m[j + 1].b, out, n);
						m[j + 1].len = n;
					}
				}
				ck_assert_int_eq(done_i, 0);
				ck_assert_int_eq(done_r, k == 3);
			}
		}
	}
}
END_TEST

START_TEST(out_of_order)
{
	struct run run;
	honest_run(&run);
	struct hs h;
	uint8_t out[HS_MAX_MSG];
	size_t n;

	/* A proof before any HELLO, both ways. */
	ck_assert_int_eq(feed(&run.r0, run.m[2].b, run.m[2].len, NULL), HS_E_STATE);
	ck_assert_int_eq(feed(&run.i0, run.m[3].b, run.m[3].len, NULL), HS_E_STATE);
	/* A second HELLO. */
	ck_assert_int_eq(feed(&run.r1, run.m[0].b, run.m[0].len, NULL), HS_E_STATE);
	ck_assert_int_eq(feed(&run.i1, run.m[1].b, run.m[1].len, NULL), HS_E_STATE);
	/* Anything after the end; the peer stays known. */
	for (int k = 0; k < 4; k++) {
		ck_assert_int_eq(feed(&run.i, run.m[k].b, run.m[k].len, &run.i), HS_E_STATE);
		ck_assert_int_eq(feed(&run.r, run.m[k].b, run.m[k].len, &run.r), HS_E_STATE);
	}
	ck_assert_ptr_nonnull(hs_peer(&run.i));
	ck_assert_uint_eq(hs_peer(&run.i)->node, 2);
	ck_assert_ptr_nonnull(hs_peer(&run.r));
	ck_assert_uint_eq(hs_peer(&run.r)->node, 0);
	/* A failure is final: the right message afterwards is refused too. */
	h = run.r0;
	ck_assert_int_eq(feed(&h, run.m[2].b, run.m[2].len, &h), HS_E_STATE);
	ck_assert_int_eq(feed(&h, run.m[0].b, run.m[0].len, &h), HS_E_STATE);

	/* Misuse: an initiator that did not start; starting twice; a responder starting. */
	struct hs i, r;
	init_pair(&i, &r, key1, key1);
	n = sizeof(out);
	ck_assert_int_eq(hs_receive(&i, run.m[1].b, run.m[1].len, out, &n), -EINVAL);
	n = sizeof(out);
	ck_assert_int_eq(hs_start(&r, out, &n), -EINVAL);
	n = sizeof(out);
	ck_assert_int_eq(hs_start(&i, out, &n), HS_CONTINUE);
	n = sizeof(out);
	ck_assert_int_eq(hs_start(&i, out, &n), -EINVAL);
}
END_TEST

START_TEST(node_ids)
{
	struct hs i, r, h;
	uint8_t m[HS_MAX_MSG];
	size_t n;

	/* The initiator's id is beyond the responder's membership. */
	struct hs_ids a = ids(5, 0), b = ids(2, 0);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &a, 8), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &b, NODES), 0);
	n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	ck_assert_int_eq(feed(&r, m, n, &h), HS_E_NODE);
	ck_assert_ptr_null(hs_peer(&h));
	/* The last id in range is taken; NODES is not; nor UINT32_MAX; nor the responder's. */
	m[16] = NODES - 1;
	ck_assert_int_eq(feed(&r, m, n, NULL), HS_CONTINUE);
	m[16] = NODES;
	ck_assert_int_eq(feed(&r, m, n, NULL), HS_E_NODE);
	memset(m + 16, 0xff, 4);
	ck_assert_int_eq(feed(&r, m, n, NULL), HS_E_NODE);
	memset(m + 16, 0, 4);
	m[16] = 2;
	ck_assert_int_eq(feed(&r, m, n, NULL), HS_E_SELF);

	/* The responder's id is beyond the initiator's membership. */
	struct hs_ids c = ids(0, 0), d = ids(6, 0);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &c, NODES), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &d, 8), 0);
	n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	uint8_t m2[HS_MAX_MSG];
	size_t n2 = sizeof(m2);
	ck_assert_int_eq(hs_receive(&r, m, n, m2, &n2), HS_CONTINUE);
	ck_assert_int_eq(feed(&i, m2, n2, NULL), HS_E_NODE);

	/* The caller's own arguments. */
	struct hs_ids e = ids(NODES, 0);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &e, NODES), -EINVAL);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &c, 0), -EINVAL);
	ck_assert_int_eq(hs_init(&i, (enum hs_role)3, key1, &c, NODES), -EINVAL);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, NULL, &c, NODES), -EINVAL);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, NULL, NODES), -EINVAL);
	ck_assert_int_eq(hs_init(NULL, HS_INITIATOR, key1, &c, NODES), -EINVAL);
}
END_TEST

/* A remote client claims HS_NODE_CLIENT: a responder that takes clients lets it in (and its
 * proof is checked as a node's), one that does not refuses it as it refuses an id beyond the
 * membership; a responder never passes for a client, and the client's wrong key fails. */
START_TEST(remote_clients)
{
	struct hs i, r, h;
	uint8_t m[HS_MAX_MSG], m2[HS_MAX_MSG], m3[HS_MAX_MSG], m4[HS_MAX_MSG];
	size_t n, n2, n3, n4;
	struct hs_ids cl = ids(HS_NODE_CLIENT, 0), b = ids(1, 4);

	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &cl, HS_NODE_CLIENT), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &b, NODES), 0);
	n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	/* Not taking clients: refused like any id beyond the membership. */
	ck_assert_int_eq(feed(&r, m, n, NULL), HS_E_NODE);
	ck_assert_int_eq(hs_accept_clients(&r), 0);
	n2 = sizeof(m2);
	ck_assert_int_eq(hs_receive(&r, m, n, m2, &n2), HS_CONTINUE);
	ck_assert_int_eq(hs_accept_clients(&r), -EINVAL); /* too late: it has begun */
	n3 = sizeof(m3);
	ck_assert_int_eq(hs_receive(&i, m2, n2, m3, &n3), HS_CONTINUE);
	struct hs r_before_auth = r;
	n4 = sizeof(m4);
	ck_assert_int_eq(hs_receive(&r, m3, n3, m4, &n4), HS_DONE);
	assert_ids(hs_peer(&r), &cl);
	n = sizeof(m);
	ck_assert_int_eq(hs_receive(&i, m4, n4, m, &n), HS_DONE);
	assert_ids(hs_peer(&i), &b);
	/* A changed proof still fails for a client. */
	m3[20] ^= 1;
	ck_assert_int_eq(feed(&r_before_auth, m3, n3, NULL), HS_E_AUTH);

	/* The wrong key: the client's proof fails at the responder. */
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key2, &cl, HS_NODE_CLIENT), 0);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &b, NODES), 0);
	ck_assert_int_eq(hs_accept_clients(&r), 0);
	n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	n2 = sizeof(m2);
	ck_assert_int_eq(hs_receive(&r, m, n, m2, &n2), HS_CONTINUE);
	n3 = sizeof(m3);
	ck_assert_int_eq(hs_receive(&i, m2, n2, m3, &n3), HS_CONTINUE);
	ck_assert_int_eq(feed(&r, m3, n3, &h), HS_E_AUTH);

	/* A responder that answers with the client id is refused by the client. */
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &cl, HS_NODE_CLIENT), 0);
	n = sizeof(m);
	ck_assert_int_eq(hs_start(&i, m, &n), HS_CONTINUE);
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &b, NODES), 0);
	ck_assert_int_eq(hs_accept_clients(&r), 0);
	n2 = sizeof(m2);
	ck_assert_int_eq(hs_receive(&r, m, n, m2, &n2), HS_CONTINUE);
	memset(m2 + 16, 0xff, 4);
	ck_assert_int_eq(feed(&i, m2, n2, NULL), HS_E_NODE);

	/* Only initiators may be clients; only responders take them. */
	ck_assert_int_eq(hs_init(&r, HS_RESPONDER, key1, &cl, NODES), -EINVAL);
	ck_assert_int_eq(hs_init(&i, HS_INITIATOR, key1, &b, NODES), 0);
	ck_assert_int_eq(hs_accept_clients(&i), -EINVAL);
	ck_assert_int_eq(hs_accept_clients(NULL), -EINVAL);
}
END_TEST

START_TEST(malformed_fields)
{
	struct run run;
	honest_run(&run);
	const struct hs *to[4] = {&run.r0, &run.i0, &run.r1, &run.i1};
	for (int k = 0; k < 4; k++) {
		struct msg m = run.m[k];
		m.b[0] ^= 1;
		ck_assert_int_eq(feed(to[k], m.b, m.len, NULL), HS_E_MAGIC);
		static const uint8_t kinds[] = {0, 5, 0x80, 0xff};
		for (size_t q = 0; q < sizeof(kinds); q++) {
			m = run.m[k];
			m.b[5] = kinds[q];
			ck_assert_int_eq(feed(to[k], m.b, m.len, NULL), HS_E_KIND);
		}
	}
	/* Reserved bytes: HELLO 12..15 and 22..23, AUTH 6..7. */
	static const size_t hello_rsvd[] = {12, 13, 14, 15, 22, 23};
	for (size_t q = 0; q < sizeof(hello_rsvd) / sizeof(hello_rsvd[0]); q++) {
		struct msg m = run.m[0];
		m.b[hello_rsvd[q]] = 1;
		ck_assert_int_eq(feed(&run.r0, m.b, m.len, NULL), HS_E_RESERVED);
		m = run.m[1];
		m.b[hello_rsvd[q]] = 0x80;
		ck_assert_int_eq(feed(&run.i0, m.b, m.len, NULL), HS_E_RESERVED);
	}
	for (size_t at = 6; at < 8; at++) {
		struct msg m = run.m[2];
		m.b[at] = 1;
		ck_assert_int_eq(feed(&run.r1, m.b, m.len, NULL), HS_E_RESERVED);
		m = run.m[3];
		m.b[at] = 1;
		ck_assert_int_eq(feed(&run.i1, m.b, m.len, NULL), HS_E_RESERVED);
	}

	/* Misuse: too little room for the answer, NULL: nothing changes. */
	struct hs r = run.r0;
	uint8_t out[HS_MAX_MSG];
	size_t n = HS_MAX_MSG - 1;
	ck_assert_int_eq(hs_receive(&r, run.m[0].b, run.m[0].len, out, &n), -EINVAL);
	ck_assert_int_eq(hs_receive(&r, NULL, 4, out, &n), -EINVAL);
	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_receive(&r, run.m[0].b, run.m[0].len, NULL, &n), -EINVAL);
	ck_assert_int_eq(hs_receive(&r, run.m[0].b, run.m[0].len, out, NULL), -EINVAL);
	ck_assert_int_eq(hs_receive(NULL, run.m[0].b, run.m[0].len, out, &n), -EINVAL);
	ck_assert_int_eq(hs_receive(&r, NULL, 0, out, &n), HS_E_LENGTH); /* empty message */
	r = run.r0;
	n = HS_MAX_MSG;
	ck_assert_int_eq(hs_receive(&r, run.m[0].b, run.m[0].len, out, &n), HS_CONTINUE);
	struct hs i = run.i0;
	n = HS_MAX_MSG - 1;
	ck_assert_int_eq(hs_start(&i, out, &n), -EINVAL);
}
END_TEST

START_TEST(error_texts)
{
	for (int c = HS_E_BASE; c >= HS_E_LAST; c--) {
		const char *s = hs_strerror(c);
		ck_assert_ptr_nonnull(s);
		ck_assert_str_ne(s, "unknown handshake error");
		for (int d = c - 1; d >= HS_E_LAST; d--)
			ck_assert_str_ne(s, hs_strerror(d));
	}
	ck_assert_str_eq(hs_strerror(HS_E_LAST - 1), "unknown handshake error");
	ck_assert_str_eq(hs_strerror(-12345), "unknown handshake error");
	ck_assert_ptr_nonnull(strstr(hs_strerror(HS_E_AUTH), "authentication failed"));
	/* Apart from the wire's codes. */
	ck_assert_int_lt(HS_E_BASE, WIRE_E_LAST);
}
END_TEST

/* ---- the secret file ---- */

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_handshake.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Write @len bytes of @data to DIR/@name with @mode; @return the path (static). */
static const char *put(const char *name, const void *data, size_t len, mode_t mode)
{
	static char path[4][256];
	static int slot;
	char *p = path[slot++ % 4];
	snprintf(p, 256, "%s/%s", dir, name);
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	ck_assert_int_eq(chmod(p, mode), 0);
	return p;
}

static uint8_t secret[HS_SECRET_MAX + 1];

static void fill_secret(void)
{
	for (size_t k = 0; k < sizeof(secret); k++)
		secret[k] = (uint8_t)(k * 131 + (k >> 8));
}

static int load(const char *path, uint8_t *key, char *why)
{
	return hs_secret_load(path, key, why, 512);
}

START_TEST(secret_good_file)
{
	uint8_t k1[HS_KEY_LEN], k2[HS_KEY_LEN], k3[HS_KEY_LEN];
	char why[512];
	make_dir();
	fill_secret();

	/* The key is BLAKE2b-256 of the contents, personal "CHI-CLUSTER-KEY1" (computed for
	 * bytes 0..63 with Python: hashlib.blake2b(bytes(range(64)), digest_size=32,
	 * person=b"CHI-CLUSTER-KEY1")). */
	uint8_t seq[64];
	for (int k = 0; k < 64; k++)
		seq[k] = (uint8_t)k;
	static const uint8_t kat[HS_KEY_LEN] = {0x61, 0xe7, 0x77, 0x51, 0x05, 0x1f, 0x82, 0x2d,
						0xd2, 0x58, 0xa0, 0x3a, 0x16, 0x1d, 0x4d, 0x6a,
						0x75, 0xc5, 0x48, 0xe8, 0xc6, 0x80, 0xb5, 0x02,
						0xc6, 0xa4, 0x62, 0xa8, 0xc1, 0x78, 0xfe, 0x88};
	ck_assert_int_eq(load(put("seq", seq, sizeof(seq), 0600), k1, why), 0);
	ck_assert_str_eq(why, "");
	ck_assert_mem_eq(k1, kat, HS_KEY_LEN);

	/* The same secret, the same key (0400 is fine too); another secret, another key. */
	char a[256];
	snprintf(a, sizeof(a), "%s", put("a", secret, 64, 0600));
	ck_assert_int_eq(load(a, k1, why), 0);
	ck_assert_int_eq(load(put("a_copy", secret, 64, 0400), k2, why), 0);
	ck_assert_mem_eq(k1, k2, HS_KEY_LEN);
	ck_assert_int_eq(load(put("b", secret + 1, 64, 0600), k3, why), 0);
	ck_assert(memcmp(k1, k3, HS_KEY_LEN) != 0);
	/* A trailing newline is part of the secret. */
	uint8_t nl[65];
	memcpy(nl, secret, 64);
	nl[64] = '\n';
	ck_assert_int_eq(load(put("nl", nl, 65, 0600), k3, why), 0);
	ck_assert(memcmp(k1, k3, HS_KEY_LEN) != 0);

	/* The bounds: 32 and 4096 bytes load. */
	ck_assert_int_eq(load(put("min", secret, HS_SECRET_MIN, 0600), k3, why), 0);
	ck_assert_int_eq(load(put("max", secret, HS_SECRET_MAX, 0600), k3, why), 0);

	/* A symbolic link is followed; the file it leads to is what is checked. */
	char link[256];
	snprintf(link, sizeof(link), "%s/link", dir);
	ck_assert_int_eq(symlink(a, link), 0);
	ck_assert_int_eq(load(link, k2, why), 0);
	ck_assert_mem_eq(k1, k2, HS_KEY_LEN);

	/* No room for a reason is fine. */
	ck_assert_int_eq(hs_secret_load(a, k2, NULL, 0), 0);

	/* Two nodes with one secret run a handshake. */
	struct hs i, r;
	struct run run;
	init_pair(&i, &r, k1, k2);
	record(&run, &i, &r);
	hs_key_wipe(k1);
	ck_assert(all_zero(k1, HS_KEY_LEN));
	hs_key_wipe(NULL);
	rm_dir();
}
END_TEST

static void refused(const char *path, int code, const char *says)
{
	uint8_t key[HS_KEY_LEN];
	char why[512];
	memset(key, 0x5a, sizeof(key));
	ck_assert_int_eq(load(path, key, why), code);
	ck_assert_msg(strstr(why, path) != NULL, "'%s' does not name '%s'", why, path);
	ck_assert_msg(strstr(why, says) != NULL, "'%s' does not say '%s'", why, says);
	/* Nothing was derived. */
	for (unsigned k = 0; k < HS_KEY_LEN; k++)
		ck_assert_uint_eq(key[k], 0x5a);
}

START_TEST(secret_bad_files)
{
	make_dir();
	fill_secret();
	/* Permissions: world- or group-readable, group-writable, other-executable. */
	refused(put("m644", secret, 64, 0644), -EACCES, "mode 0644");
	refused(put("m640", secret, 64, 0640), -EACCES, "mode 0640");
	refused(put("m620", secret, 64, 0620), -EACCES, "group and others must have no access");
	refused(put("m601", secret, 64, 0601), -EACCES, "chmod 600");
	/* Sizes. */
	refused(put("empty", secret, 0, 0600), -EINVAL, "holds 0 bytes");
	refused(put("short", secret, HS_SECRET_MIN - 1, 0600), -EINVAL, "at least 32");
	refused(put("long", secret, HS_SECRET_MAX + 1, 0600), -EFBIG, "at most 4096");
	/* Not a secret at all. */
	uint8_t zeros[64] = {0};
	refused(put("zeros", zeros, sizeof(zeros), 0600), -EINVAL, "the same byte");
	/* Not a regular file: a directory, a FIFO (refused without waiting for a writer). */
	refused(dir, -EINVAL, "a directory");
	char fifo[256];
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	ck_assert_int_eq(mkfifo(fifo, 0600), 0);
	refused(fifo, -EINVAL, "a FIFO");
	refused("/dev/null", -EINVAL, "a character device");
	/* A link to a file that breaks the rules, a link to nothing, nothing. */
	char link[256];
	snprintf(link, sizeof(link), "%s/link644", dir);
	ck_assert_int_eq(symlink(put("t644", secret, 64, 0644), link), 0);
	refused(link, -EACCES, "mode 0644");
	snprintf(link, sizeof(link), "%s/dangling", dir);
	ck_assert_int_eq(symlink("/nonexistent/secret", link), 0);
	refused(link, -ENOENT, "cannot open");
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	refused(missing, -ENOENT, "cannot open");
	/* No path. */
	uint8_t key[HS_KEY_LEN];
	char why[64];
	ck_assert_int_eq(hs_secret_load("", key, why, sizeof(why)), -EINVAL);
	ck_assert_str_eq(why, "no secret file given");
	ck_assert_int_eq(hs_secret_load(NULL, key, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(hs_secret_load("x", NULL, why, sizeof(why)), -EINVAL);
	rm_dir();
}
END_TEST

/* Owned by someone else. As root, a file is given away with chown; otherwise a file that
 * root owns stands in (the owner is checked before the mode, so /etc/passwd's 0644 does not
 * matter). */
START_TEST(secret_not_owned)
{
	make_dir();
	fill_secret();
	if (geteuid() == 0) {
		const char *p = put("theirs", secret, 64, 0600);
		ck_assert_int_eq(chown(p, 65534, 65534), 0);
		refused(p, -EACCES, "owned by uid 65534");
	} else {
		struct stat st;
		if (stat("/etc/passwd", &st) == 0 && st.st_uid != geteuid() && S_ISREG(st.st_mode))
			refused("/etc/passwd", -EACCES, "is owned by uid");
		else
			fprintf(stderr, "secret_not_owned: no file of another owner to try\n");
	}
	rm_dir();
}
END_TEST

/* ---- the fuzz seed corpus ---- */

static int write_file(const char *d, const char *name, const uint8_t *b, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", d, name);
	FILE *f = fopen(path, "wb");
	if (!f) {
		perror(path);
		return 1;
	}
	fwrite(b, 1, len, f);
	if (fclose(f) != 0)
		return 1;
	printf("%s: %zu bytes\n", path, len);
	return 0;
}

/* Append one length-prefixed message. */
static size_t add(uint8_t *b, size_t at, const struct msg *m)
{
	b[at++] = (uint8_t)m->len;
	memcpy(b + at, m->b, m->len);
	return at + m->len;
}

/* The input format is fuzz_handshake.c's: byte 0 picks the mode; modes 0 and 1 feed
 * length-prefixed messages to a responder / an initiator; mode 2 runs an honest pair and
 * applies 4-byte change records (message, offset, xor, length change) in flight. */
static int write_corpus(const char *d)
{
	struct msg m[4];
	struct hs i, r;
	struct hs_ids a = ids(0, 3), b = ids(2, 5);
	uint8_t buf[512];
	size_t n;
	int bad = 0;

	/* An honest run, without Check (no test is running here). */
	make_keys();
	if (hs_init(&i, HS_INITIATOR, key1, &a, NODES) ||
	    hs_init(&r, HS_RESPONDER, key1, &b, NODES))
		return 1;
	m[0].len = HS_MAX_MSG;
	bad |= hs_start(&i, m[0].b, &m[0].len) != HS_CONTINUE;
	for (int k = 1; k < 4 && !bad; k++) {
		m[k].len = HS_MAX_MSG;
		int want = k == 3 ? HS_DONE : HS_CONTINUE;
		bad |= hs_receive(k % 2 ? &r : &i, m[k - 1].b, m[k - 1].len, m[k].b, &m[k].len) !=
		       want;
	}
	if (bad)
		return 1;
	buf[0] = 0;
	n = add(buf, 1, &m[0]);
	n = add(buf, n, &m[2]);
	bad |= write_file(d, "responder.bin", buf, n);
	buf[0] = 1;
	n = add(buf, 1, &m[1]);
	n = add(buf, n, &m[3]);
	bad |= write_file(d, "initiator.bin", buf, n);
	buf[0] = 2;
	bad |= write_file(d, "honest.bin", buf, 1);
	/* clang-format off */
	static const uint8_t changes[] = {
		2,		/* mode: change messages in flight */
		0, 24, 0x01, 0,	/* HELLO_I: a nonce bit */
		1, 6, 0xff, 0,	/* HELLO_R: the wire major */
		3, 40, 0, 1,	/* AUTH_R: one byte longer */
		2, 39, 0, 0xff,	/* AUTH_I: one byte shorter */
		1, 16, 0x02, 0,	/* HELLO_R: the node id */
		0, 5, 0x03, 0,	/* HELLO_I: the kind */
	};
	/* clang-format on */
	bad |= write_file(d, "changed.bin", changes, sizeof(changes));
	return bad;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return write_corpus(argv[2]);
	make_keys();
	if (sodium_init() < 0)
		return 1;
	const TTest *const tests[] = {
		remote_clients,
		success_both_ways,
		layout_and_transcript_as_documented,
		wrong_key_refused_on_both_sides,
		reflected_messages,
		replayed_transcript_refused,
		version_mismatch,
		truncated_and_extended,
		every_byte_changed,
		out_of_order,
		node_ids,
		malformed_fields,
		error_texts,
		secret_good_file,
		secret_bad_files,
		secret_not_owned,
	};
	return chi_check_main("handshake", 60, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
