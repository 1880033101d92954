/* Segment layout and the bounds checks the runtime applies to untrusted offsets. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "transport/shm_segment.h"

#include "check_main.h"

START_TEST(layout_fits_and_aligns)
{
	struct shm_seg_layout l;
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 16, 1024, &l), 0);
	ck_assert_uint_eq(l.lane_stride % 4096, 0);
	ck_assert_uint_eq(l.arena_offset % 4096, 0);
	ck_assert_uint_le(l.arena_offset + l.arena_per_lane * 16, l.size);
	ck_assert_uint_ge(l.arena_per_lane, SHM_SEG_MIN_ARENA);
}
END_TEST

START_TEST(layout_rejects_bad_shapes)
{
	struct shm_seg_layout l;
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 16, 1000, &l), -EINVAL);
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 0, 1024, &l), -EINVAL);
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 257, 1024, &l), -EINVAL);
	ck_assert_int_eq(shm_seg_layout_compute(256 * 1024, 16, 1024, &l), -EINVAL);
	ck_assert_int_eq(shm_seg_layout_compute(8ull << 30, 16, 1024, &l), -EINVAL);
}
END_TEST

START_TEST(range_checks_are_overflow_safe)
{
	struct shm_seg_layout l;
	char *base = (char *)0x10000;
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 4, 64, &l), 0);
	ck_assert_ptr_nonnull(shm_seg_range(base, &l, l.arena_offset, 64));
	ck_assert_ptr_null(shm_seg_range(base, &l, 0, 64)); /* header is not arena */
	ck_assert_ptr_null(shm_seg_range(base, &l, l.lanes_offset, 8));
	ck_assert_ptr_null(shm_seg_range(base, &l, l.size - 8, 16));
	ck_assert_ptr_null(shm_seg_range(base, &l, l.arena_offset, UINT64_MAX));
	ck_assert_ptr_null(shm_seg_range(base, &l, UINT64_MAX - 4, 8));
	ck_assert_ptr_nonnull(shm_seg_range(base, &l, l.size - 8, 8));
}
END_TEST

START_TEST(header_check_catches_tampering)
{
	struct shm_seg_header *h = calloc(1, sizeof(*h));
	ck_assert_int_eq(shm_seg_layout_compute(64ull << 20, 4, 64, &h->layout), 0);
	h->magic = SHM_SEG_MAGIC;
	h->version = SHM_SEG_VERSION;
	h->num_workers = 2;
	ck_assert_int_eq(shm_seg_header_check(h, 64ull << 20), 0);
	ck_assert_int_eq(shm_seg_header_check(h, 32ull << 20), -EPROTO);
	h->layout.arena_per_lane *= 2;
	ck_assert_int_eq(shm_seg_header_check(h, 64ull << 20), -EPROTO);
	h->layout.arena_per_lane /= 2;
	h->lane_worker[1] = 5;
	ck_assert_int_eq(shm_seg_header_check(h, 64ull << 20), -EPROTO);
	h->lane_worker[1] = 1;
	h->magic ^= 1;
	ck_assert_int_eq(shm_seg_header_check(h, 64ull << 20), -EPROTO);
	free(h);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shm_segment");
	TCase *tc = tcase_create("segment");
	tcase_add_test(tc, layout_fits_and_aligns);
	tcase_add_test(tc, layout_rejects_bad_shapes);
	tcase_add_test(tc, range_checks_are_overflow_safe);
	tcase_add_test(tc, header_check_catches_tampering);
	suite_add_tcase(s, tc);
	return chi_check_run(s, CK_NORMAL);
}
