/* The CONTROL messages of a remote client's link (transport/client_ctl.c, docs/wire.md
 * "Remote clients"): requests and answers round-trip byte for byte as documented, and every
 * malformed one is refused.
 *
 * `test_client_ctl --corpus DIR` writes valid messages into DIR, one file each: that is how
 * tests/fuzz/corpus_client_ctl/ was made. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "transport/client_ctl.h"
#include "transport/le.h"

static const struct chi_bulk_field echo_f[] = { { 0, CHI_BULK_IN, CHI_BULK_LEN_WHOLE, 0 },
						{ 16, CHI_BULK_OUT, 40, 0 } };
static const struct chi_bulk_field get_f[] = { { 8, CHI_BULK_INOUT, CHI_BULK_LEN_WHOLE, 0 } };
static const struct chi_method_desc methods[] = {
	{ 10, "noop", NULL, 0, 0, NULL, NULL, 0 },
	{ 11, "echo", NULL, 0, 32, NULL, echo_f, 2 },
	{ 12, "bulk_but_null", NULL, 0, 0, NULL, NULL, 3 }, /* declares none really */
	{ 13, "get", NULL, 0, 24, NULL, get_f, 1 },
};
static const struct chi_pool_id POOL = { 512, 7 };

/* The answer for the methods above into @buf; @return its length, 0 if the encoder wrote
 * another length than ctl_described_size() said (no ck_assert: --corpus runs outside Check). */
static size_t answer(uint8_t *buf)
{
	size_t len = ctl_described_size(methods, 4);
	return ctl_described_encode(buf, 0, POOL, methods, 4) == len ? len : 0;
}

START_TEST(request_round_trip)
{
	uint8_t q[CTL_REQ_LEN];
	struct chi_pool_id id;
	ctl_describe_encode(q, POOL);
	ck_assert_uint_eq(le_get32(q), 1);
	ck_assert_uint_eq(le_get32(q + 4), 0);
	ck_assert_uint_eq(le_get32(q + 8), 512);
	ck_assert_uint_eq(le_get32(q + 12), 7);
	ck_assert_int_eq(ctl_describe_decode(q, sizeof(q), &id), 0);
	ck_assert_uint_eq(id.major, 512);
	ck_assert_uint_eq(id.minor, 7);
	for (size_t n = 0; n < sizeof(q); n++)
		ck_assert_int_eq(ctl_describe_decode(q, n, &id), -EPROTO);
	uint8_t longer[CTL_REQ_LEN + 8] = { 0 };
	memcpy(longer, q, sizeof(q));
	ck_assert_int_eq(ctl_describe_decode(longer, sizeof(longer), &id), -EPROTO);
	q[4] = 1;
	ck_assert_int_eq(ctl_describe_decode(q, sizeof(q), &id), -EPROTO);
	q[4] = 0;
	q[0] = 0x81;
	ck_assert_int_eq(ctl_describe_decode(q, sizeof(q), &id), -EPROTO);
	ck_assert_int_eq(ctl_describe_decode(NULL, 16, &id), -EPROTO);
}
END_TEST

START_TEST(answer_round_trip_as_documented)
{
	uint8_t buf[512], again[512];
	size_t len = answer(buf);
	ck_assert_uint_ne(len, 0);
	/* 24 fixed, then echo (8 + 2 x 16) and get (8 + 16); noop and the NULL table not listed */
	ck_assert_uint_eq(len, 24 + 40 + 24);
	ck_assert_uint_eq(le_get32(buf), 0x81);
	ck_assert_uint_eq(le_get32(buf + 4), 0);
	ck_assert_uint_eq(le_get32(buf + 16), 2);
	ck_assert_uint_eq(le_get32(buf + 24), 11);
	ck_assert_uint_eq(le_get32(buf + 28), 2);
	ck_assert_uint_eq(le_get32(buf + 32), 0);
	ck_assert_uint_eq(le_get32(buf + 36), CHI_BULK_IN);
	ck_assert_uint_eq(le_get32(buf + 40), CHI_BULK_LEN_WHOLE);
	ck_assert_uint_eq(le_get32(buf + 48), 16);
	ck_assert_uint_eq(le_get32(buf + 52), CHI_BULK_OUT);
	ck_assert_uint_eq(le_get32(buf + 56), 40);
	ck_assert_uint_eq(le_get32(buf + 64), 13);

	int32_t rc;
	struct chi_pool_id id;
	uint32_t count;
	struct ctl_method_bulk mb[2];
	ck_assert_int_eq(ctl_described_decode(buf, len, &rc, &id, NULL, 0, &count), 0);
	ck_assert_uint_eq(count, 2);
	ck_assert_int_eq(ctl_described_decode(buf, len, &rc, &id, mb, 1, &count), 0);
	ck_assert_uint_eq(mb[0].id, 11); /* only as many as asked for */
	ck_assert_int_eq(ctl_described_decode(buf, len, &rc, &id, mb, 2, &count), 0);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(id.major, 512);
	ck_assert_uint_eq(id.minor, 7);
	ck_assert_uint_eq(mb[0].num, 2);
	ck_assert_mem_eq(mb[0].f, echo_f, sizeof(echo_f));
	ck_assert_uint_eq(mb[1].id, 13);
	ck_assert_uint_eq(mb[1].num, 1);
	ck_assert_mem_eq(mb[1].f, get_f, sizeof(get_f));
	/* Re-encoded from what was decoded: the same bytes. */
	struct chi_method_desc re[2] = { { mb[0].id, "", NULL, 0, 0, NULL, mb[0].f, mb[0].num },
					 { mb[1].id, "", NULL, 0, 0, NULL, mb[1].f, mb[1].num } };
	ck_assert_uint_eq(ctl_described_encode(again, rc, id, re, 2), len);
	ck_assert_mem_eq(again, buf, len);

	/* No such pool: the rc, nothing else. */
	ck_assert_uint_eq(ctl_described_encode(buf, -ENOENT, POOL, NULL, 0), CTL_REPLY_FIXED);
	ck_assert_int_eq(ctl_described_decode(buf, CTL_REPLY_FIXED, &rc, &id, NULL, 0, &count), 0);
	ck_assert_int_eq(rc, -ENOENT);
	ck_assert_uint_eq(count, 0);
}
END_TEST

START_TEST(malformed_answers_refused)
{
	uint8_t buf[512], bad[520];
	size_t len = answer(buf);
	int32_t rc;
	struct chi_pool_id id;
	uint32_t count;
	/* Every truncation, and every extension. */
	for (size_t n = 0; n < len; n++)
		ck_assert_int_eq(ctl_described_decode(buf, n, &rc, &id, NULL, 0, &count), -EPROTO);
	memset(bad, 0, sizeof(bad));
	memcpy(bad, buf, len);
	for (size_t n = len + 1; n <= len + 8; n++)
		ck_assert_int_eq(ctl_described_decode(bad, n, &rc, &id, NULL, 0, &count), -EPROTO);
	/* One word at a time: op, rc, count, reserved, a field count, a direction, a field's
	 * reserved word. */
	static const struct {
		size_t off;
		uint32_t val;
	} change[] = { { 0, 1 },      { 0, 0x82 },   { 4, 1 },	    { 4, (uint32_t)-5000 },
		       { 16, 3 },     { 16, 1 },     { 16, 0x40000000u }, { 20, 1 },
		       { 28, 0 },     { 28, 17 },    { 28, 3 },	    { 36, 0 },
		       { 36, 4 },     { 44, 1 },     { 68, 0 } };
	for (size_t i = 0; i < sizeof(change) / sizeof(change[0]); i++) {
		memcpy(bad, buf, len);
		le_put32(bad + change[i].off, change[i].val);
		ck_assert_msg(ctl_described_decode(bad, len, &rc, &id, NULL, 0, &count) == -EPROTO,
			      "word at %zu = %u accepted", change[i].off, change[i].val);
	}
	/* An error with entries. */
	memcpy(bad, buf, len);
	le_put32(bad + 4, (uint32_t)-ENOENT);
	ck_assert_int_eq(ctl_described_decode(bad, len, &rc, &id, NULL, 0, &count), -EPROTO);
	ck_assert_int_eq(ctl_described_decode(NULL, len, &rc, &id, NULL, 0, &count), -EPROTO);
}
END_TEST

static int write_corpus(const char *dir)
{
	uint8_t buf[512], q[CTL_REQ_LEN];
	char path[512];
	struct {
		const char *name;
		const uint8_t *data;
		size_t len;
	} files[3];
	size_t len = answer(buf);
	if (!len)
		return 1;
	ctl_describe_encode(q, POOL);
	files[0].name = "described.bin", files[0].data = buf, files[0].len = len;
	files[1].name = "describe.bin", files[1].data = q, files[1].len = sizeof(q);
	uint8_t none[CTL_REPLY_FIXED];
	ctl_described_encode(none, -ENOENT, POOL, NULL, 0);
	files[2].name = "enoent.bin", files[2].data = none, files[2].len = sizeof(none);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i].name);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(files[i].data, 1, files[i].len, f) != files[i].len)
			return 1;
		fclose(f);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--corpus") == 0)
		return write_corpus(argv[2]);
	const TTest *const tests[] = { request_round_trip, answer_round_trip_as_documented,
				       malformed_answers_refused };
	return chi_check_main("client_ctl", 60, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
