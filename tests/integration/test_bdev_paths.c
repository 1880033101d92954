/* A file bdev keeps its file in runtime.data_dir under its pool name, and nowhere else. The
 * pool name comes from a client: "../x", "/tmp/x", "a/b", "..", ".hidden", or a symlink,
 * hard link or FIFO planted in the data directory must get an error, leave no file outside
 * the data directory, and leave the runtime serving. (Before the data directory, bdev opened
 * the pool name relative to the runtime's cwd: each of these wrote where the client chose.) */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chimaera/bdev.h>
#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;
/* Where an escape would land: the runtime's cwd is <outside>/cwd, so "../x" relative to it
 * is <outside>/x. Removed by the teardown. */
static char outside[64];
static char extra[512];

static const char *const file_kv[] = { "bdev_type", "file", "capacity", "64KB" };

static void make_outside(void)
{
	char cwd[128];
	snprintf(outside, sizeof(outside), "/tmp/chi-bdev-out-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(outside));
	snprintf(cwd, sizeof(cwd), "%s/cwd", outside);
	ck_assert_int_eq(mkdir(cwd, 0700), 0);
	/* The runtime inherits it (each test runs in its own process). */
	ck_assert_int_eq(chdir(cwd), 0);
}

static struct chi_client *start(const char *compose)
{
	struct chi_client *c;
	int rc = rt_start(&rt, 1, 50, compose);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	return c;
}

static struct chi_pool_id last_id; /* of the last pool create() made */

static int create(struct chi_client *c, const char *name, uint32_t containers, char *why,
		  size_t len)
{
	why[0] = '\0';
	return chi_admin_get_or_create_pool(c, "bdev", name, NULL, containers, file_kv, 2,
					    &last_id, why, len);
}

/* Entries of @dir other than . and .., or -1 when it cannot be read. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	if (!d)
		return -1;
	for (struct dirent *e; (e = readdir(d));)
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

static int exists_in(const char *dir, const char *name)
{
	char path[1024];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return lstat(path, &st) == 0;
}

static off_t file_size(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 ? st.st_size : -1;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* A device that works: allocate, write, read back. */
static void use_device(struct chi_client *c, struct chi_pool_id id)
{
	char data[5000], back[5000];
	uint64_t off;

	memset(data, 0x3c, sizeof(data));
	ck_assert_int_eq(chi_bdev_allocate(c, id, 0, sizeof(data), &off, NULL), 0);
	ck_assert_int_eq(chi_bdev_write(c, id, 0, off, data, sizeof(data)), 0);
	ck_assert_int_eq(chi_bdev_read(c, id, 0, off, back, sizeof(back)), 0);
	ck_assert_mem_eq(data, back, sizeof(data));
}

START_TEST(hostile_names_are_refused_and_stay_inside)
{
	char data[600], path[1024], abs_name[128], why[CHI_WHY_LEN];
	struct stat st;

	make_outside();
	struct chi_client *c = start(NULL);

	/* The default data directory, created at start: ours, 0700. */
	snprintf(data, sizeof(data), "%s/run/data", rt.dir);
	ck_assert_int_eq(lstat(data, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);

	/* "a/b" would resolve if a path were joined or used as given: give it an "a" both in
	 * the data directory and in the cwd. */
	snprintf(path, sizeof(path), "%s/a", data);
	ck_assert_int_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/cwd/a", outside);
	ck_assert_int_eq(mkdir(path, 0700), 0);

	snprintf(abs_name, sizeof(abs_name), "%s/abs", outside);
	const char *names[] = { "../escape", abs_name, "a/b", "..", ".", ".hidden", "./x" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int rc = create(c, names[i], 1, why, sizeof(why));
		ck_assert_msg(rc == -EINVAL, "'%s': rc %d (%s)", names[i], rc, why);
		ck_assert_msg(strstr(why, "plain file name"), "'%s': %s", names[i], why);
	}
	/* Several containers: the ".<id>" suffix does not make a bad name good. */
	ck_assert_int_eq(create(c, "../escape2", 2, why, sizeof(why)), -EINVAL);
	/* An empty name is no pool at all. */
	ck_assert_int_eq(create(c, "", 1, why, sizeof(why)), -EINVAL);

	/* Planted in the data directory: a symlink to a file that does not exist yet, one to a
	 * file with contents, a hard link to a file outside, a FIFO. */
	snprintf(path, sizeof(path), "%s/target", outside);
	char lpath[700];
	snprintf(lpath, sizeof(lpath), "%s/planted", data);
	ck_assert_int_eq(symlink(path, lpath), 0);
	snprintf(path, sizeof(path), "%s/precious", outside);
	write_file(path, "precious");
	snprintf(lpath, sizeof(lpath), "%s/planted_precious", data);
	ck_assert_int_eq(symlink(path, lpath), 0);
	snprintf(path, sizeof(path), "%s/empty", outside);
	write_file(path, "");
	snprintf(lpath, sizeof(lpath), "%s/hardlinked", data);
	ck_assert_int_eq(link(path, lpath), 0);
	snprintf(path, sizeof(path), "%s/fifo", data);
	ck_assert_int_eq(mkfifo(path, 0600), 0);

	int rc = create(c, "planted", 1, why, sizeof(why));
	ck_assert_msg(rc == -ELOOP, "planted: rc %d (%s)", rc, why);
	ck_assert_msg(strstr(why, "symbolic link"), "%s", why);
	rc = create(c, "planted_precious", 1, why, sizeof(why));
	ck_assert_msg(rc == -ELOOP, "planted_precious: rc %d (%s)", rc, why);
	rc = create(c, "hardlinked", 1, why, sizeof(why));
	ck_assert_msg(rc == -EINVAL, "hardlinked: rc %d (%s)", rc, why);
	ck_assert_msg(strstr(why, "hard links"), "%s", why);
	rc = create(c, "fifo", 1, why, sizeof(why));
	ck_assert_msg(rc == -EINVAL, "fifo: rc %d (%s)", rc, why);

	/* Nothing was written outside the data directory. */
	ck_assert(!exists_in(outside, "target"));
	ck_assert(!exists_in(outside, "escape"));
	ck_assert(!exists_in(outside, "abs"));
	snprintf(path, sizeof(path), "%s/precious", outside);
	ck_assert_int_eq(file_size(path), 8);
	snprintf(path, sizeof(path), "%s/empty", outside);
	ck_assert_int_eq(file_size(path), 0);
	ck_assert_int_eq(count_entries(outside), 3); /* cwd, precious, empty */
	snprintf(path, sizeof(path), "%s/cwd", outside);
	ck_assert_int_eq(count_entries(path), 1); /* a */
	snprintf(path, sizeof(path), "%s/cwd/a", outside);
	ck_assert_int_eq(count_entries(path), 0);
	snprintf(path, sizeof(path), "%s/run", rt.dir);
	ck_assert(!exists_in(path, "escape"));
	ck_assert(!exists_in(path, "escape2.0"));
	/* In the data directory: what we planted, nothing more. */
	ck_assert_int_eq(count_entries(data), 5);
	snprintf(path, sizeof(path), "%s/a", data);
	ck_assert_int_eq(count_entries(path), 0);

	/* Still serving; a plain name gets its file inside the data directory, 0600. */
	struct chi_admin_stats stats;
	ck_assert_int_eq(chi_admin_stats(c, &stats), 0);
	rc = create(c, "good", 1, why, sizeof(why));
	ck_assert_msg(rc == 0, "good: rc %d (%s)", rc, why);
	snprintf(path, sizeof(path), "%s/good", data);
	ck_assert_int_eq(lstat(path, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0600);
	ck_assert_int_ge(st.st_size, 64 * 1024);
	use_device(c, last_id);
	rc = create(c, "multi", 2, why, sizeof(why));
	ck_assert_msg(rc == 0, "multi: rc %d (%s)", rc, why);
	ck_assert(exists_in(data, "multi.0"));
	ck_assert(exists_in(data, "multi.1"));
	ck_assert_int_eq(count_entries(outside), 3);

	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(configured_data_dir_is_created_and_used)
{
	char dir[128], path[256], cmd[1024], why[CHI_WHY_LEN];
	struct stat st;

	make_outside();
	snprintf(dir, sizeof(dir), "%s/mydata", outside);
	snprintf(extra, sizeof(extra), "  data_dir: %s\n", dir);
	rt_runtime_extra = extra;
	struct chi_client *c = start(NULL);
	ck_assert_int_eq(lstat(dir, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	int rc = create(c, "dev", 1, why, sizeof(why));
	ck_assert_msg(rc == 0, "dev: rc %d (%s)", rc, why);
	snprintf(path, sizeof(path), "%s/dev", dir);
	ck_assert_int_ge(file_size(path), 64 * 1024);
	ck_assert(!exists_in(outside, "cwd/dev"));
	use_device(c, last_id);
	/* The effective config names it. */
	snprintf(cmd, sizeof(cmd), "%s config check %s | grep -q -F 'data_dir: \"%s\"'",
		 rt_bin("chimaera"), rt.config, dir);
	ck_assert_int_eq(rt_sh(cmd), 0);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
	rt_runtime_extra = NULL;
}
END_TEST

START_TEST(unsafe_data_dir_or_compose_name_stops_the_start)
{
	char dir[128], cmd[1024];

	make_outside();
	/* Open to others: someone else could plant files in it. */
	snprintf(dir, sizeof(dir), "%s/open", outside);
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	ck_assert_int_eq(chmod(dir, 0755), 0);
	snprintf(extra, sizeof(extra), "  data_dir: %s\n", dir);
	rt_runtime_extra = extra;
	ck_assert_int_eq(rt_start(&rt, 1, 50, NULL), -ECHILD);
	snprintf(cmd, sizeof(cmd), "grep -q 'runtime.data_dir: %s has mode 755' %s", dir, rt.log);
	ck_assert_msg(rt_sh(cmd) == 0, "log %s", rt.log);
	rt_stop(&rt);

	/* A symlink, even to a good directory. */
	char real[128];
	snprintf(real, sizeof(real), "%s/real", outside);
	ck_assert_int_eq(mkdir(real, 0700), 0);
	snprintf(dir, sizeof(dir), "%s/link", outside);
	ck_assert_int_eq(symlink(real, dir), 0);
	snprintf(extra, sizeof(extra), "  data_dir: %s\n", dir);
	ck_assert_int_eq(rt_start(&rt, 1, 50, NULL), -ECHILD);
	snprintf(cmd, sizeof(cmd), "grep -q 'runtime.data_dir: %s is not a directory' %s", dir,
		 rt.log);
	ck_assert_msg(rt_sh(cmd) == 0, "log %s", rt.log);
	rt_stop(&rt);
	rt_runtime_extra = NULL;

	/* A compose entry is refused the same way as a client, naming the entry. */
	ck_assert_int_eq(rt_start(&rt, 1, 50,
				  "compose:\n  - mod_name: bdev\n    pool_name: ../escape\n"
				  "    bdev_type: file\n    capacity: 64KB\n"),
			 -ECHILD);
	snprintf(cmd, sizeof(cmd), "grep -q \"compose entry '../escape'.*plain file name\" %s",
		 rt.log);
	ck_assert_msg(rt_sh(cmd) == 0, "log %s", rt.log);
	rt_stop(&rt);
	ck_assert(!exists_in(outside, "escape"));
	ck_assert_int_eq(count_entries(outside), 4); /* cwd, open, real, link */
}
END_TEST

static void teardown(void)
{
	char cmd[128];
	if (rt.pid > 0)
		rt_stop(&rt);
	rt_runtime_extra = NULL;
	if (strncmp(outside, "/tmp/chi-bdev-out-", 18) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", outside);
		rt_sh(cmd);
	}
}

int main(void)
{
	const TTest *const tests[] = {
		hostile_names_are_refused_and_stay_inside,
		configured_data_dir_is_created_and_used,
		unsafe_data_dir_or_compose_name_stops_the_start,
	};
	return chi_check_main("bdev_paths", 120, teardown, tests, sizeof(tests) / sizeof(tests[0]));
}
