/* test_journal.c - the charge journal shared by the pool (lib/kb_journal.h):
 * entries outlive their worker, orphans are claimed by one process at a time,
 * a dead claimer's claim is dropped, and settled entries become free again. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_journal.h"
#include "kb_banned.h"

/* Run fn in a child process that exits with fn's result; returns the child's pid. */
static pid_t
in_child(int (*fn)(void))
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(fn());
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed");
    return pid;
}

static int
child_dies_charged(void)
{
    if (!kb_journal_attach() || kb_journal_key() == NULL)
        return 1;
    kb_journal_set(KB_J_METERING, "req_0123456789ab");
    kb_journal_set(KB_J_CHARGED, NULL);
    return kb_journal_state() == KB_J_CHARGED ? 0 : 2;
}

static int
child_dies_idle(void)
{
    if (!kb_journal_attach())
        return 1;
    kb_journal_set(KB_J_METERING, "req_aaaaaaaaaaaa");
    kb_journal_set(KB_J_IDLE, NULL);
    return 0;
}

static int
child_claims_and_dies(void)
{
    char key[KB_JOURNAL_KEY_MAX], rid[KB_JOURNAL_REQUEST_ID_MAX];
    return kb_journal_claim(key, sizeof(key), rid, sizeof(rid)) >= 0 ? 0 : 1;
}

START_TEST(journal_is_off_until_initialised)
{
    ck_assert_ptr_null(kb_journal_key());
    ck_assert(!kb_journal_attach());
    kb_journal_set(KB_J_CHARGED, "x");
    ck_assert_int_eq(kb_journal_state(), KB_J_IDLE);
    ck_assert(!kb_journal_work_waiting());
}
END_TEST

START_TEST(orphaned_charge_is_claimed_once_and_freed_when_settled)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    pid_t dead = in_child(child_dies_charged);
    /* Still owned by the dead pid until the master reaps it. */
    ck_assert(!kb_journal_work_waiting());
    kb_journal_orphan(dead);
    ck_assert(kb_journal_work_waiting());

    char key[KB_JOURNAL_KEY_MAX], rid[KB_JOURNAL_REQUEST_ID_MAX];
    int i = kb_journal_claim(key, sizeof(key), rid, sizeof(rid));
    ck_assert_int_ge(i, 0);
    ck_assert_str_eq(rid, "req_0123456789ab");
    ck_assert_ptr_nonnull(strchr(key, ':'));
    /* Claimed: nobody else gets it. */
    char key2[KB_JOURNAL_KEY_MAX], rid2[KB_JOURNAL_REQUEST_ID_MAX];
    ck_assert_int_eq(kb_journal_claim(key2, sizeof(key2), rid2, sizeof(rid2)), -1);
    /* Not settled (database down): up for grabs again. */
    kb_journal_release(i, false);
    ck_assert(kb_journal_work_waiting());
    ck_assert_int_eq(kb_journal_claim(key2, sizeof(key2), rid2, sizeof(rid2)), i);
    ck_assert_str_eq(key2, key);
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting());
    ck_assert_int_eq(kb_journal_claim(key2, sizeof(key2), rid2, sizeof(rid2)), -1);
}
END_TEST

START_TEST(claim_of_a_dead_claimer_is_dropped)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_orphan(in_child(child_dies_charged));
    pid_t claimer = in_child(child_claims_and_dies);
    char key[KB_JOURNAL_KEY_MAX], rid[KB_JOURNAL_REQUEST_ID_MAX];
    ck_assert_int_eq(kb_journal_claim(key, sizeof(key), rid, sizeof(rid)), -1);
    kb_journal_orphan(claimer);
    int i = kb_journal_claim(key, sizeof(key), rid, sizeof(rid));
    ck_assert_int_ge(i, 0);
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting());
}
END_TEST

START_TEST(idle_entry_of_a_dead_worker_is_free_not_orphaned)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_orphan(in_child(child_dies_idle));
    ck_assert(!kb_journal_work_waiting());
    /* Entries in use are not handed out twice; a settled orphan is reused. */
    kb_journal_orphan(in_child(child_dies_charged));
    ck_assert(kb_journal_attach());
    const char *mine = kb_journal_key();
    ck_assert_ptr_nonnull(mine);
    char key[KB_JOURNAL_KEY_MAX], rid[KB_JOURNAL_REQUEST_ID_MAX];
    int i = kb_journal_claim(key, sizeof(key), rid, sizeof(rid));
    ck_assert_int_ge(i, 0);
    ck_assert_str_ne(key, mine);
    kb_journal_release(i, true);
    ck_assert_int_eq(kb_journal_state(), KB_J_IDLE);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tcase_create("journal");
    tcase_add_test(tc, journal_is_off_until_initialised);
    tcase_add_test(tc, orphaned_charge_is_claimed_once_and_freed_when_settled);
    tcase_add_test(tc, claim_of_a_dead_claimer_is_dropped);
    tcase_add_test(tc, idle_entry_of_a_dead_worker_is_free_not_orphaned);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
