/* bdev semantics in RAM and in a file, including a file-backed device across a restart. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;
static const struct chi_pool_id BDEV = { 800, 0 };

static struct chi_client *start(const char *compose)
{
	struct chi_client *c;
	int rc = rt_start(&rt, 1, 50, compose);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

START_TEST(ram_semantics)
{
	struct chi_client *c = start("compose:\n  - mod_name: bdev\n    pool_name: ram::t\n"
				     "    pool_id: 800.0\n    bdev_type: ram\n    capacity: 1MB\n");
	uint64_t a, b, got;
	char buf[16384], back[8192];
	struct chi_bdev_stats st;

	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, 5000, &a, &got), 0);
	ck_assert_uint_eq(got, 8192);
	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, 4096, &b, NULL), 0);
	ck_assert_uint_ne(a, b);
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(chi_bdev_write(c, BDEV, 0, a, buf, sizeof(back)), 0);
	ck_assert_int_eq(chi_bdev_read(c, BDEV, 0, a, back, sizeof(back)), 0);
	ck_assert_mem_eq(buf, back, sizeof(back));
	/* Past the allocation, or into free blocks: refused. */
	ck_assert_int_eq(chi_bdev_write(c, BDEV, 0, a + 4096, buf, 8192 + 4096), -EFAULT);
	ck_assert_int_eq(chi_bdev_read(c, BDEV, 0, 1 << 19, back, 16), -EFAULT);
	ck_assert_int_eq(chi_bdev_read(c, BDEV, 0, 2 << 20, back, 16), -EINVAL);
	ck_assert_int_eq(chi_bdev_stats(c, BDEV, 0, &st), 0);
	ck_assert_uint_eq(st.capacity, 1 << 20);
	ck_assert_uint_eq(st.free_bytes, (1 << 20) - 3 * 4096);
	ck_assert_uint_eq(st.writes, 1);
	ck_assert_int_eq(chi_bdev_free(c, BDEV, 0, a, got), 0);
	ck_assert_int_eq(chi_bdev_free(c, BDEV, 0, a, got), -EINVAL); /* double free */
	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, 2 << 20, &a, NULL), -EINVAL);
	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, (1 << 20) - 4096, &a, NULL), -ENOSPC);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(file_survives_a_restart)
{
	char dir[] = "/tmp/chi-bdev-XXXXXX", compose[1024], path[600], extra[600];
	unsigned char data[12000], back[12000];
	uint64_t off, off2;
	struct chi_bdev_stats st;

	/* The file lives in the data directory, under the pool's name: one that outlives
	 * each runtime's private run directory. */
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(extra, sizeof(extra), "  data_dir: %s\n", dir);
	rt_runtime_extra = extra;
	snprintf(path, sizeof(path), "%s/dev.img", dir);
	snprintf(compose, sizeof(compose),
		 "compose:\n  - mod_name: bdev\n    pool_name: dev.img\n    pool_id: 800.0\n"
		 "    bdev_type: file\n    capacity: 4MB\n    alignment: 4KB\n    io_depth: 32\n");
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13 + 7);

	struct chi_client *c = start(compose);
	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, sizeof(data), &off, NULL), 0);
	ck_assert_int_eq(chi_bdev_write(c, BDEV, 0, off, data, sizeof(data)), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);

	c = start(compose);
	ck_assert_int_eq(chi_bdev_read(c, BDEV, 0, off, back, sizeof(back)), 0);
	ck_assert_mem_eq(data, back, sizeof(data));
	ck_assert_int_eq(chi_bdev_stats(c, BDEV, 0, &st), 0);
	ck_assert_uint_eq(st.free_bytes, (4 << 20) - 3 * 4096); /* the allocation persisted */
	ck_assert_int_eq(chi_bdev_allocate(c, BDEV, 0, 4096, &off2, NULL), 0);
	ck_assert_uint_ne(off2, off);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);

	/* Same file, other geometry: refused at start, naming the entry. */
	snprintf(compose, sizeof(compose),
		 "compose:\n  - mod_name: bdev\n    pool_name: dev.img\n    bdev_type: file\n"
		 "    capacity: 8MB\n");
	ck_assert_int_eq(rt_start(&rt, 1, 50, compose), -ECHILD);
	rt_stop(&rt);
	rt_runtime_extra = NULL;
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(bad_compose_keys_are_refused)
{
	struct chi_client *c = start(NULL);
	struct chi_pool_id id;
	char why[256];
	static const char *zero[] = { "bdev_type", "ram", "capacity", "0g" };
	static const char *kind[] = { "bdev_type", "tape", "capacity", "1MB" };
	static const char *align[] = { "bdev_type", "ram", "capacity", "1MB", "alignment", "3000" };
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "bdev", "ram::z", NULL, 1, zero, 2, &id,
						      why, sizeof(why)),
			 -EINVAL);
	ck_assert_msg(strstr(why, "bdev") && strstr(why, "container 0"), "%s", why);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "bdev", "ram::k", NULL, 1, kind, 2, &id,
						      why, sizeof(why)),
			 -EINVAL);
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "bdev", "ram::a", NULL, 1, align, 3, &id,
						      why, sizeof(why)),
			 -EINVAL);
	/* A file that is not a bdev image is never overwritten (in the default data
	 * directory, <run_dir>/data). */
	char path[600];
	snprintf(path, sizeof(path), "%s/run/data/notbdev", rt.dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "precious", 8), 8);
	close(fd);
	const char *file[] = { "bdev_type", "file", "capacity", "1MB" };
	ck_assert_int_eq(chi_admin_get_or_create_pool(c, "bdev", "notbdev", NULL, 1, file, 2, &id,
						      why, sizeof(why)),
			 -EEXIST);
	char buf[9] = "";
	FILE *f = fopen(path, "r");
	ck_assert_uint_eq(fread(buf, 1, 8, f), 8);
	fclose(f);
	ck_assert_str_eq(buf, "precious");
	unlink(path);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		ram_semantics,
		file_survives_a_restart,
		bad_compose_keys_are_refused,
	};
	return chi_check_main("bdev", 120, rt_stop_all, tests, sizeof(tests) / sizeof(tests[0]));
}
