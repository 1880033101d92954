/* Config loading: defaults, upstream keys, sizes, errors that name file:line:column and key. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <chimaera/pool_query.h>

#include "common/config.h"
#include "common/log.h"

#include "check_main.h"

static struct config cfg;
static char err[1024];

static int load(const char *yaml)
{
	config_fini(&cfg);
	config_defaults(&cfg);
	err[0] = '\0';
	return config_load_string(&cfg, "test.yaml", yaml, strlen(yaml), err, sizeof(err));
}

START_TEST(defaults_follow_upstream)
{
	ck_assert_int_eq(load(""), 0);
	ck_assert_uint_eq(cfg.num_threads, 4);
	ck_assert_uint_eq(cfg.queue_depth, 1024);
	ck_assert_uint_eq(cfg.first_busy_wait_us, 50);
	ck_assert_int_eq(cfg.port, 9413);
	ck_assert_uint_eq(cfg.neighborhood_size, 32);
	ck_assert_str_eq(cfg.conf_dir, "/tmp/chimaera");
}
END_TEST

START_TEST(full_file_is_applied)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: 2\n  queue_depth: 256\n"
			      "  first_busy_wait: 10\n  cpus: [1, 0]\n"
			      "memory:\n  client_data_segment_size: 32MB\n  lanes_per_client: 4\n"
			      "networking:\n  port: 9999\n  hostfile: \"\"\n"
			      "logging:\n  level: debug\n"),
			 0);
	ck_assert_uint_eq(cfg.num_threads, 2);
	ck_assert_uint_eq(cfg.queue_depth, 256);
	ck_assert_uint_eq(cfg.num_cpus, 2);
	ck_assert_int_eq(cfg.cpus[0], 1);
	ck_assert_uint_eq(cfg.client_data_segment_size, 32ull << 20);
	ck_assert_int_eq(cfg.port, 9999);
	ck_assert_int_eq(cfg.log_level, CHI_LOG_LEVEL_DEBUG);
}
END_TEST

START_TEST(malformed_yaml_names_line_and_column)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: [1,\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:") == err, "%s", err);
	ck_assert_msg(strstr(err, "malformed YAML"), "%s", err);
}
END_TEST

START_TEST(bad_value_names_key_and_position)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: lots\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:2:16: runtime.num_threads:"), "%s", err);
	ck_assert_int_eq(load("runtime:\n  num_threads: 0\n"), -EINVAL);
	ck_assert_msg(strstr(err, "out of range"), "%s", err);
	ck_assert_int_eq(load("networking:\n  port: 70000\n"), -EINVAL);
	ck_assert_msg(strstr(err, "networking.port"), "%s", err);
	ck_assert_int_eq(load("runtime:\n  queue_depth: [1]\n"), -EINVAL);
	ck_assert_int_eq(load("logging:\n  level: loud\n"), -EINVAL);
	ck_assert_msg(strstr(err, "logging.level"), "%s", err);
}
END_TEST

START_TEST(zero_sizes_are_errors_not_surprises)
{
	/* upstream's `capacity: 0g` silently meant 80% of DRAM; here 0 is out of range */
	ck_assert_int_eq(load("memory:\n  client_data_segment_size: 0g\n"), -EINVAL);
	ck_assert_msg(strstr(err, "memory.client_data_segment_size"), "%s", err);
	ck_assert_int_eq(load("memory:\n  client_data_segment_size: 12XB\n"), -EINVAL);
}
END_TEST

START_TEST(unknown_and_legacy_keys_are_accepted)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: 2\n  mystery: 1\n"
			      "memory:\n  main_segment_size: 1GB\n  runtime_data_segment_size: 1g\n"
			      "workers:\n  sched_threads: 4\n  slow_threads: 4\n"
			      "heartbeat_interval: 5\nmax_sleep: 10\n"
			      "runtime_extra: {a: 1}\n"),
			 0);
	ck_assert_uint_eq(cfg.num_threads, 2);
}
END_TEST

START_TEST(duplicate_keys_are_errors)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: 2\n  num_threads: 3\n"), -EINVAL);
	ck_assert_msg(strstr(err, "duplicate"), "%s", err);
}
END_TEST

START_TEST(compose_entries_parse)
{
	ck_assert_int_eq(load("compose:\n"
			      "  - mod_name: kvs\n    pool_name: kv1\n    pool_id: 512.0\n"
			      "    pool_query: range:0:4\n    capacity: 1GB\n"
			      "  - mod_name: bdev\n    pool_name: ram::b\n    pool_query: local\n"
			      "    restart: true\n"),
			 0);
	ck_assert_uint_eq(cfg.num_compose, 2);
	ck_assert_str_eq(cfg.compose[0].mod_name, "kvs");
	ck_assert_uint_eq(cfg.compose[0].pool_id.major, 512);
	ck_assert_uint_eq(cfg.compose[0].query.mode, CHI_QUERY_RANGE);
	ck_assert_uint_eq(cfg.compose[0].query.b, 4);
	ck_assert_int_eq(cfg.compose[1].restart, 1);
	ck_assert_int_eq(cfg.compose[1].line, 7);

	ck_assert_int_eq(load("compose:\n  - mod_name: kvs\n    pool_name: a\n"
			      "    pool_query: sideways\n"),
			 -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:4:17: pool_query"), "%s", err);
	ck_assert_int_eq(load("compose:\n  - pool_name: a\n"), -EINVAL);
	ck_assert_int_eq(load("compose:\n  - mod_name: a\n    pool_name: b\n    pool_id: 5\n"),
			 -EINVAL);
}
END_TEST

/* The dump of @c, in a buffer the caller frees. */
static char *dump(const struct config *c, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	ck_assert_ptr_nonnull(f);
	config_dump(c, f);
	fclose(f);
	return text;
}

START_TEST(dump_keeps_every_compose_key_and_reads_back)
{
	static const char yaml[] =
		"runtime:\n  num_threads: 2\n"
		"compose:\n"
		"  - mod_name: bdev\n    pool_name: \"/data/dev: #1\"\n    pool_id: 800.0\n"
		"    bdev_type: file\n    capacity: 4MB\n    num_containers: 2\n"
		"    restart: true\n    note: \"say \\\"hi\\\"\\\\ \\ttab\"\n"
		"    \"odd key\": x\n"
		"  - mod_name: kvs\n    pool_name: kv\n";
	ck_assert_int_eq(load(yaml), 0);
	struct config_compose_entry first = cfg.compose[0];
	size_t len;
	char *text = dump(&cfg, &len);
	/* The module's own keys are there, not only the ones the runtime reads. */
	ck_assert_msg(strstr(text, "    bdev_type: \"file\"\n"), "%s", text);
	ck_assert_msg(strstr(text, "    capacity: \"4MB\"\n"), "%s", text);
	ck_assert_msg(strstr(text, "    num_containers: \"2\"\n"), "%s", text);
	ck_assert_msg(strstr(text, "    \"odd key\": \"x\"\n"), "%s", text);
	/* Read back, it is the same entry, key for key (quotes, colons and tabs included). */
	ck_assert_msg(load(text) == 0, "%s\n%s", err, text);
	ck_assert_uint_eq(cfg.num_compose, 2);
	ck_assert_str_eq(cfg.compose[0].pool_name, "/data/dev: #1");
	ck_assert_uint_eq(cfg.compose[0].pool_id.major, 800);
	ck_assert_uint_eq(cfg.compose[0].num_containers, 2);
	ck_assert_int_eq(cfg.compose[0].restart, 1);
	ck_assert_uint_eq(cfg.num_threads, 2);
	/* The dump adds pool_query: one key more, the rest in the same order. */
	ck_assert_uint_eq(cfg.compose[0].num_kv, first.num_kv + 1);
	const char *a = first.kv, *b = cfg.compose[0].kv;
	for (uint32_t i = 0; i < first.num_kv; i++) {
		if (!strcmp(a, "mod_name") || !strcmp(a, "pool_name") || !strcmp(a, "pool_id")) {
			a += strlen(a) + 1;
			a += strlen(a) + 1;
			continue;
		}
		while (strcmp(b, a) != 0) { /* the field keys, printed first */
			b += strlen(b) + 1;
			b += strlen(b) + 1;
			ck_assert_msg(b < cfg.compose[0].kv + cfg.compose[0].kv_size, "lost %s", a);
		}
		ck_assert_str_eq(b + strlen(b) + 1, a + strlen(a) + 1);
		a += strlen(a) + 1;
		a += strlen(a) + 1;
		b += strlen(b) + 1;
		b += strlen(b) + 1;
	}
	ck_assert_str_eq(cfg.compose[1].pool_name, "kv");
	free(text);
}
END_TEST

START_TEST(networking_keys)
{
	ck_assert_int_eq(load(""), 0);
	ck_assert_str_eq(cfg.bootstrap, "none");
	ck_assert_str_eq(cfg.hostfile, "");
	ck_assert_uint_eq(cfg.wait_for_restart_s, 30);
	ck_assert_str_eq(cfg.transport, "auto");
	ck_assert_str_eq(cfg.bind, "");
	ck_assert_str_eq(cfg.secret_file, "");

	ck_assert_int_eq(load("networking:\n  bootstrap: HostFile\n  hostfile: /etc/chi/hosts\n"
			      "  wait_for_restart: 5\n  transport: VERBS\n  bind: 127.0.0.2\n"
			      "  secret_file: /etc/chi/secret\n  neighborhood_size: 4\n"),
			 0);
	ck_assert_str_eq(cfg.bootstrap, "hostfile"); /* any case, kept in lower case */
	ck_assert_str_eq(cfg.hostfile, "/etc/chi/hosts");
	ck_assert_uint_eq(cfg.wait_for_restart_s, 5);
	ck_assert_str_eq(cfg.transport, "verbs");
	ck_assert_str_eq(cfg.bind, "127.0.0.2");
	ck_assert_str_eq(cfg.secret_file, "/etc/chi/secret");
	ck_assert_uint_eq(cfg.neighborhood_size, 4);
	ck_assert_int_eq(load("networking:\n  transport: tcp\n  bind: \"::1\"\n"), 0);
	ck_assert_str_eq(cfg.transport, "tcp");
	ck_assert_str_eq(cfg.bind, "::1");
	ck_assert_int_eq(load("networking:\n  bind: \"\"\n  bootstrap: none\n"), 0);
	ck_assert_str_eq(cfg.bind, "");
}
END_TEST

START_TEST(networking_bad_values_name_key_and_position)
{
	ck_assert_int_eq(load("networking:\n  bootstrap: mpi\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:2:14: networking.bootstrap: expected none, hostfile "
				  "or pmix, got 'mpi'"),
		      "%s", err);
#ifdef CHI_HAVE_PMIX
	ck_assert_int_eq(load("networking:\n  hostfile: h\n  bootstrap: pmix\n"), 0);
	ck_assert_str_eq(cfg.bootstrap, "pmix");
#else
	ck_assert_int_eq(load("networking:\n  hostfile: h\n  bootstrap: pmix\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:3:14: networking.bootstrap: pmix: built without PMIx "
				  "support: install libpmix-dev and rebuild"),
		      "%s", err);
#endif
	ck_assert_int_eq(load("networking:\n  port: 9000\n  bootstrap: hostfile\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:3: networking.bootstrap: hostfile needs "
				  "networking.hostfile"),
		      "%s", err);
	ck_assert_int_eq(load("networking:\n  bootstrap: hostfile\n  hostfile: \"\"\n"), -EINVAL);
	ck_assert_int_eq(load("networking:\n  bootstrap: [hostfile]\n"), -EINVAL);
	ck_assert_msg(strstr(err, "networking.bootstrap: expected a single value"), "%s", err);
	ck_assert_int_eq(load("networking:\n  transport: rdma\n"), -EINVAL);
	ck_assert_msg(strstr(err, "test.yaml:2:14: networking.transport: expected auto, tcp or "
				  "verbs, got 'rdma'"),
		      "%s", err);
	static const char *bad_binds[] = { "localhost", "127.0.0.1:9413", "[::1]", "127.1",
					   "eth0" };
	for (size_t i = 0; i < sizeof(bad_binds) / sizeof(bad_binds[0]); i++) {
		char yaml[128];
		snprintf(yaml, sizeof(yaml), "networking:\n  bind: \"%s\"\n", bad_binds[i]);
		ck_assert_int_eq(load(yaml), -EINVAL);
		ck_assert_msg(strstr(err, "test.yaml:2:9: networking.bind: expected a numeric IPv4 "
					  "or IPv6 address"),
			      "%s", err);
	}
	ck_assert_int_eq(load("networking:\n  wait_for_restart: 86401\n"), -EINVAL);
	ck_assert_msg(strstr(err, "networking.wait_for_restart: 86401 is out of range [0, 86400]"),
		      "%s", err);
	ck_assert_int_eq(load("networking:\n  wait_for_restart: -1\n"), -EINVAL);
	ck_assert_int_eq(load("networking:\n  neighborhood_size: 0\n"), -EINVAL);
}
END_TEST

START_TEST(a_hostfile_alone_means_bootstrap_hostfile)
{
	/* Upstream files name only the hostfile. */
	ck_assert_int_eq(load("networking:\n  hostfile: /etc/chi/hosts\n"), 0);
	ck_assert_str_eq(cfg.bootstrap, "hostfile");
	/* Said otherwise, it is kept (with a warning that the hostfile is ignored). */
	ck_assert_int_eq(load("networking:\n  hostfile: /etc/chi/hosts\n  bootstrap: none\n"), 0);
	ck_assert_str_eq(cfg.bootstrap, "none");
	ck_assert_int_eq(load("networking:\n  hostfile: \"\"\n"), 0);
	ck_assert_str_eq(cfg.bootstrap, "none");
}
END_TEST

START_TEST(dump_of_networking_reads_back)
{
	ck_assert_int_eq(load("networking:\n  hostfile: \"/h o/\\\"x\\\"\"\n  transport: tcp\n"
			      "  bind: \"::1\"\n  secret_file: \"/s: #1\"\n"
			      "  wait_for_restart: 7\n"),
			 0);
	size_t len;
	char *text = dump(&cfg, &len);
	ck_assert_msg(strstr(text, "  bootstrap: hostfile\n"), "%s", text);
	ck_assert_msg(strstr(text, "  bind: \"::1\"\n"), "%s", text);
	ck_assert_msg(load(text) == 0, "%s\n%s", err, text);
	ck_assert_str_eq(cfg.bootstrap, "hostfile");
	ck_assert_str_eq(cfg.hostfile, "/h o/\"x\"");
	ck_assert_str_eq(cfg.transport, "tcp");
	ck_assert_str_eq(cfg.bind, "::1");
	ck_assert_str_eq(cfg.secret_file, "/s: #1");
	ck_assert_uint_eq(cfg.wait_for_restart_s, 7);
	free(text);
}
END_TEST

START_TEST(cpus_must_cover_workers)
{
	ck_assert_int_eq(load("runtime:\n  num_threads: 3\n  cpus: [0]\n"), -EINVAL);
	ck_assert_msg(strstr(err, "runtime.cpus"), "%s", err);
}
END_TEST

START_TEST(sizes)
{
	uint64_t v;
	ck_assert_int_eq(parse_size("512MB", &v), 0);
	ck_assert_uint_eq(v, 512ull << 20);
	ck_assert_int_eq(parse_size("4096", &v), 0);
	ck_assert_uint_eq(v, 4096);
	ck_assert_int_eq(parse_size("1g", &v), 0);
	ck_assert_uint_eq(v, 1ull << 30);
	ck_assert_int_eq(parse_size("2 KiB", &v), 0);
	ck_assert_uint_eq(v, 2048);
	ck_assert_int_eq(parse_size("1TB", &v), 0);
	ck_assert_int_eq(parse_size("-1MB", &v), -EINVAL);
	ck_assert_int_eq(parse_size("MB", &v), -EINVAL);
	ck_assert_int_eq(parse_size("99999999999999999999", &v), -EINVAL);
	ck_assert_int_eq(parse_size("16777216TB", &v), -EINVAL);
}
END_TEST

START_TEST(pool_query_grammar)
{
	struct chi_pool_query q;
	char buf[64];
	static const char *good[] = { "local", "DYNAMIC", "broadcast", "direct_id:3",
				      "direct_hash:17", "range:2:5", "physical:0" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		ck_assert_msg(chi_pool_query_parse(good[i], &q) == 0, "%s", good[i]);
		ck_assert_int_gt(chi_pool_query_format(&q, buf, sizeof(buf)), 0);
		ck_assert_int_eq(chi_pool_query_parse(buf, &q), 0);
	}
	ck_assert_int_eq(chi_pool_query_parse("range:2:5", &q), 0);
	ck_assert_uint_eq(q.a, 2);
	ck_assert_uint_eq(q.b, 5);
	static const char *bad[] = { "", "loc", "local:1", "direct_id", "direct_id:",
				     "direct_id:x", "range:1", "range:1:0", "range:1:2:3",
				     "physical:-1", "direct_hash:1 " };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(chi_pool_query_parse(bad[i], &q) == -EINVAL, "'%s'", bad[i]);
}
END_TEST

int main(void)
{
	log_threshold = CHI_LOG_LEVEL_ERROR; /* the warnings are expected here */
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");
	tcase_add_test(tc, defaults_follow_upstream);
	tcase_add_test(tc, full_file_is_applied);
	tcase_add_test(tc, malformed_yaml_names_line_and_column);
	tcase_add_test(tc, bad_value_names_key_and_position);
	tcase_add_test(tc, zero_sizes_are_errors_not_surprises);
	tcase_add_test(tc, unknown_and_legacy_keys_are_accepted);
	tcase_add_test(tc, duplicate_keys_are_errors);
	tcase_add_test(tc, compose_entries_parse);
	tcase_add_test(tc, dump_keeps_every_compose_key_and_reads_back);
	tcase_add_test(tc, networking_keys);
	tcase_add_test(tc, networking_bad_values_name_key_and_position);
	tcase_add_test(tc, a_hostfile_alone_means_bootstrap_hostfile);
	tcase_add_test(tc, dump_of_networking_reads_back);
	tcase_add_test(tc, cpus_must_cover_workers);
	tcase_add_test(tc, sizes);
	tcase_add_test(tc, pool_query_grammar);
	suite_add_tcase(s, tc);
	return chi_check_run(s, CK_NORMAL);
}
