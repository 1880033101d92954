/* Each way a module fails to load has its own errno, and the reason says which (dlerror's
 * text when dlopen refused the file): not found -ENOENT, not loadable (not ELF, undefined
 * symbol) -ELIBBAD, not a ChiMod -ENOEXEC, another ABI -EPROTO, a malformed descriptor or
 * name -EINVAL. Before, every one of them was -ENOENT. The runtime serves on after each. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chimaera/chimaera.h>

#include "rt_harness.h"

#include "check_main.h"

static struct rt_harness rt;
static char junk_dir[64]; /* lib<name>.so files that are no libraries; removed by teardown */

static void write_file(const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", junk_dir, name);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

/* CHI_REPO_PATH: the junk first, then the test modules. */
static void make_junk(void)
{
	char repo[512];
	snprintf(junk_dir, sizeof(junk_dir), "/tmp/chi-modjunk-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(junk_dir));
	write_file("libjunk.so", "this is not an ELF file, though it is long enough to have a "
				 "header: the loader must say so, not that it found nothing\n");
	write_file("libempty.so", "");
	snprintf(repo, sizeof(repo), "%s:%s", junk_dir, CHI_TEST_MODULE_DIR);
	setenv("CHI_REPO_PATH", repo, 1);
}

START_TEST(each_load_failure_has_its_errno_and_reason)
{
	static const struct {
		const char *mod;
		int rc;
		const char *says;
	} cases[] = {
		{ "no_such_module", -ENOENT, "not found" },
		{ "junk", -ELIBBAD, "invalid ELF header" },
		{ "empty", -ELIBBAD, "file too short" },
		{ "undefined_symbol", -ELIBBAD, "undefined symbol: chi_test_symbol_nobody_defines" },
		{ "no_entry", -ENOEXEC, "no chi_module_entry_v1 symbol" },
		{ "bad_abi", -EPROTO, "ABI version 99" },
		{ "dup_method", -EINVAL, "defined twice" },
		{ "../etc", -EINVAL, "not a valid module name" },
		{ "create_fails", -EIO, "refused to create container 1" },
	};
	struct chi_client *c;
	struct chi_pool_id id;
	char why[CHI_WHY_LEN];

	make_junk();
	int rc = rt_start(&rt, 1, 50, NULL);
	ck_assert_msg(rc == 0, "runtime did not start: %s (log %s)", strerror(-rc), rt.log);
	ck_assert_int_eq(rt_connect(&rt, &c), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int again = 0; again < 2; again++) { /* a failed load leaves nothing behind */
			why[0] = '\0';
			rc = chi_admin_get_or_create_pool(c, cases[i].mod, "x", NULL, 2, NULL, 0, &id,
							  why, sizeof(why));
			ck_assert_msg(rc == cases[i].rc, "%s: rc %d, want %d (%s)", cases[i].mod, rc,
				      cases[i].rc, why);
			ck_assert_msg(strstr(why, cases[i].says), "%s: '%s'", cases[i].mod, why);
			ck_assert_msg(strstr(why, cases[i].mod), "%s: '%s'", cases[i].mod, why);
		}
	}
	/* Still serving, and the name is free. */
	rc = chi_admin_get_or_create_pool(c, "small_message", "x", NULL, 2, NULL, 0, &id, why,
					  sizeof(why));
	ck_assert_msg(rc == 0, "small_message: %d (%s)", rc, why);
	chi_client_disconnect(c);
	ck_assert_int_eq(rt_stop(&rt), 0);
}
END_TEST

START_TEST(a_compose_entry_that_cannot_load_stops_the_start_with_dlerror)
{
	char cmd[1024];

	make_junk();
	ck_assert_int_eq(rt_start(&rt, 1, 50,
				  "compose:\n  - mod_name: junk\n    pool_name: j\n"),
			 -ECHILD);
	snprintf(cmd, sizeof(cmd),
		 "grep -q \"compose entry 'j' (mod_name junk): module 'junk': cannot load: "
		 ".*invalid ELF header\" %s",
		 rt.log);
	ck_assert_msg(rt_sh(cmd) == 0, "log %s", rt.log);
	rt_stop(&rt);
}
END_TEST

static void teardown(void)
{
	char cmd[128];
	if (rt.pid > 0)
		rt_stop(&rt);
	if (strncmp(junk_dir, "/tmp/chi-modjunk-", 17) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", junk_dir);
		rt_sh(cmd);
	}
}

int main(void)
{
	const TTest *const tests[] = {
		each_load_failure_has_its_errno_and_reason,
		a_compose_entry_that_cannot_load_stops_the_start_with_dlerror,
	};
	return chi_check_main("module_load_errors", 120, teardown, tests,
			      sizeof(tests) / sizeof(tests[0]));
}
