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

#endif
