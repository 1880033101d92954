/* Rate-limited logging: a burst passes, the rest are counted, and the count is logged before
 * the first line of the next interval. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#include "check_main.h"

static char path[64];

/* Lines in the log file that contain @p needle. */
static int count_lines(const char *needle)
{
	char line[2048];
	int n = 0;
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static void log_to_temp_file(void)
{
	snprintf(path, sizeof(path), "/tmp/chi-test-log-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(log_set_file(path), 0);
	log_threshold = CHI_LOG_LEVEL_INFO;
}

START_TEST(burst_then_suppressed_count)
{
	struct log_ratelimit rl = { 0 };

	log_to_temp_file();
	for (int i = 0; i < 1000; i++)
		CHI_LOG_RATELIMITED_BY(CHI_LOG_LEVEL_WARN, &rl, "flood %d", i);
	ck_assert_int_eq(count_lines("flood"), CHI_LOG_RATELIMIT_BURST);
	ck_assert_int_eq(count_lines("suppressed"), 0);

	/* The interval is over (as if 5 s had passed): the next line passes, after the count. */
	rl.window_start_ns -= CHI_LOG_RATELIMIT_INTERVAL_NS;
	CHI_LOG_RATELIMITED_BY(CHI_LOG_LEVEL_WARN, &rl, "flood again");
	ck_assert_int_eq(count_lines("flood"), CHI_LOG_RATELIMIT_BURST + 1);
	char want[64];
	snprintf(want, sizeof(want), "suppressed %d similar messages",
		 1000 - CHI_LOG_RATELIMIT_BURST);
	ck_assert_int_eq(count_lines(want), 1);
	unlink(path);
}
END_TEST

START_TEST(each_call_site_has_its_own_budget)
{
	log_to_temp_file();
	for (int i = 0; i < 100; i++) {
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "site one %d", i);
		CHI_LOG_RATELIMITED(CHI_LOG_LEVEL_WARN, "site two %d", i);
	}
	ck_assert_int_eq(count_lines("site one"), CHI_LOG_RATELIMIT_BURST);
	ck_assert_int_eq(count_lines("site two"), CHI_LOG_RATELIMIT_BURST);
	/* Below the threshold: neither printed nor counted against the budget. */
	struct log_ratelimit rl = { 0 };
	log_threshold = CHI_LOG_LEVEL_WARN;
	for (int i = 0; i < 100; i++)
		CHI_LOG_RATELIMITED_BY(CHI_LOG_LEVEL_INFO, &rl, "quiet %d", i);
	ck_assert_uint_eq(rl.printed + rl.suppressed, 0);
	ck_assert_int_eq(count_lines("quiet"), 0);
	unlink(path);
}
END_TEST

int main(void)
{
	const TTest *const tests[] = {
		burst_then_suppressed_count,
		each_call_site_has_its_own_budget,
	};
	return chi_check_main("log", 30, NULL, tests, sizeof(tests) / sizeof(tests[0]));
}
