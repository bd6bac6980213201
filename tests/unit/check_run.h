/* check_run.h - the one way a unit test program runs its suite: CK_NORMAL
 * output (its summary line shows the counts), exit status 1 on any failure.
 * Takes ownership of s. */
#ifndef AH_CHECK_RUN_H
#define AH_CHECK_RUN_H

#include <check.h>

static inline int ah_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
