/* check_main.h - run a check suite and record its counts for t/run-tests.sh.
 *
 * Every test program (unit and integration) ends in kb_check_run(), which
 * appends "passed failed" to $KB_TEST_COUNTS so the runner can print the
 * closing "N passed, N failed" line across all programs.
 */
#ifndef KB_CHECK_MAIN_H
#define KB_CHECK_MAIN_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

static inline int
kb_check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int run = srunner_ntests_run(sr);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    const char *path = getenv("KB_TEST_COUNTS");
    if (path != NULL) {
        FILE *f = fopen(path, "a");
        if (f != NULL) {
            fprintf(f, "%d %d\n", run - failed, failed);
            fclose(f);
        }
    }
    return failed == 0 ? 0 : 1;
}

#endif
