/* Run a Check suite verbosely; @return the process exit status (0 = all passed). */
#ifndef CHI_TESTS_CHECK_MAIN_H
#define CHI_TESTS_CHECK_MAIN_H

#include <check.h>

static inline int chi_check_run(Suite *s, enum print_output mode)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, mode);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}

/* One test case holding @tests (each run in its own process, @teardown after each, NULL for
 * none), under @timeout seconds per test; @return the process exit status. */
static inline int chi_check_main(const char *name, int timeout, void (*teardown)(void),
				 const TTest *const *tests, size_t n)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, timeout);
	if (teardown)
		tcase_add_checked_fixture(tc, NULL, teardown);
	for (size_t i = 0; i < n; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return chi_check_run(s, CK_VERBOSE);
}

#endif
