/* test_journal.c - the charge journal shared by the pool (lib/kb_journal.h):
 * entries outlive their worker with the charge they hold, orphans are claimed
 * by one process at a time, a dead claimer's claim is dropped, a worker can
 * hand its own entry over, and settled entries become free again. In a file
 * (KB_JOURNAL_DIR), the journal of a pool whose processes are all gone is taken
 * over by the next pool of its host id, once; one still held is left alone. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
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

/* A charge as the meter journals it. */
static kb_journal_charge
charge_of(const char *request_id)
{
    kb_journal_charge c;
    memset(&c, 0, sizeof(c));
    snprintf(c.request_id, sizeof(c.request_id), "%s", request_id);
    c.xid = 4294967396u; /* past 2^32: the full 64-bit id is kept */
    snprintf(c.user_id, sizeof(c.user_id), "%s", "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
    snprintf(c.key_id, sizeof(c.key_id), "%s", "1d1f00a2-0d11-45c3-b164-c93f8aa10878");
    c.cost = 5;
    snprintf(c.endpoint, sizeof(c.endpoint), "%s", "/orderbook");
    snprintf(c.cycle_start, sizeof(c.cycle_start), "%s", "2026-12-01 00:00:00+00");
    snprintf(c.day, sizeof(c.day), "%s", "2026-12-04");
    c.outbox_id = 77;
    return c;
}

static int
child_dies_charged(void)
{
    kb_journal_entry *e = kb_journal_attach();
    if (e == NULL)
        return 1;
    kb_journal_metering(e, "req_0123456789ab");
    kb_journal_charge c = charge_of("req_0123456789ab");
    kb_journal_charged(e, &c);
    return kb_journal_state(e) == KB_J_CHARGED ? 0 : 2;
}

static int
child_dies_metering(void)
{
    kb_journal_entry *e = kb_journal_attach();
    if (e == NULL)
        return 1;
    kb_journal_metering(e, "req_bbbbbbbbbbbb");
    return 0;
}

static int
child_dies_idle(void)
{
    kb_journal_entry *e = kb_journal_attach();
    if (e == NULL)
        return 1;
    kb_journal_metering(e, "req_aaaaaaaaaaaa");
    kb_journal_idle(e);
    return 0;
}

static int
child_claims_and_dies(void)
{
    kb_jstate st;
    kb_journal_charge c;
    return kb_journal_claim(&st, &c) >= 0 ? 0 : 1;
}

START_TEST(journal_is_off_until_initialised)
{
    kb_journal_entry *e = kb_journal_attach();
    ck_assert_ptr_null(e);
    kb_journal_charge c = charge_of("x");
    kb_journal_charged(e, &c);
    ck_assert_int_eq(kb_journal_state(e), KB_J_IDLE);
    ck_assert(!kb_journal_work_waiting(e));
}
END_TEST

START_TEST(orphaned_charge_is_claimed_once_and_freed_when_settled)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    pid_t dead = in_child(child_dies_charged);
    /* Still owned by the dead pid until the master reaps it. */
    ck_assert(!kb_journal_work_waiting(NULL));
    kb_journal_orphan(dead);
    ck_assert(kb_journal_work_waiting(NULL));

    kb_jstate st;
    kb_journal_charge c;
    int i = kb_journal_claim(&st, &c);
    ck_assert_int_ge(i, 0);
    ck_assert_str_eq(c.request_id, "req_0123456789ab");
    /* The whole charge outlived its worker: what kb_meter_settle() needs. */
    kb_journal_charge want = charge_of("req_0123456789ab");
    ck_assert_int_eq(st, KB_J_CHARGED);
    ck_assert(memcmp(&c, &want, sizeof(c)) == 0);
    /* Claimed: nobody else gets it. */
    kb_jstate st2;
    kb_journal_charge c2;
    ck_assert_int_eq(kb_journal_claim(&st2, &c2), -1);
    /* Not settled (database down): up for grabs again. */
    kb_journal_release(i, false);
    ck_assert(kb_journal_work_waiting(NULL));
    ck_assert_int_eq(kb_journal_claim(&st2, &c2), i);
    ck_assert_str_eq(c2.request_id, c.request_id);
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting(NULL));
    ck_assert_int_eq(kb_journal_claim(&st2, &c2), -1);
}
END_TEST

START_TEST(claim_of_a_dead_claimer_is_dropped)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_orphan(in_child(child_dies_charged));
    pid_t claimer = in_child(child_claims_and_dies);
    kb_jstate st;
    kb_journal_charge c;
    ck_assert_int_eq(kb_journal_claim(&st, &c), -1);
    kb_journal_orphan(claimer);
    int i = kb_journal_claim(&st, &c);
    ck_assert_int_ge(i, 0);
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting(NULL));
}
END_TEST

START_TEST(idle_entry_of_a_dead_worker_is_free_not_orphaned)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_orphan(in_child(child_dies_idle));
    ck_assert(!kb_journal_work_waiting(NULL));
    /* Entries in use are not handed out twice; a settled orphan is reused. */
    kb_journal_orphan(in_child(child_dies_charged));
    kb_journal_entry *mine = kb_journal_attach();
    ck_assert_ptr_nonnull(mine);
    kb_jstate st;
    kb_journal_charge c;
    int i = kb_journal_claim(&st, &c);
    ck_assert_int_ge(i, 0);
    ck_assert_str_eq(c.request_id, "req_0123456789ab"); /* the orphan's, not ours */
    kb_journal_release(i, true);
    ck_assert_int_eq(kb_journal_state(mine), KB_J_IDLE);
    ck_assert(!kb_journal_work_waiting(mine));
}
END_TEST

/* A statement out, no commit sent: the orphan says METERING (nothing can have
 * been charged) and carries its request id. */
START_TEST(metering_orphan_is_claimed_as_metering)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_orphan(in_child(child_dies_metering));
    kb_jstate st;
    kb_journal_charge c;
    int i = kb_journal_claim(&st, &c);
    ck_assert_int_ge(i, 0);
    ck_assert_int_eq(st, KB_J_METERING);
    ck_assert_str_eq(c.request_id, "req_bbbbbbbbbbbb");
    ck_assert_uint_eq(c.xid, 0);
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting(NULL));
}
END_TEST

/* A worker whose charge cannot be decided yet hands its entry over and takes a
 * fresh one; the handed-over charge is settled by whoever claims it. */
START_TEST(detached_entry_becomes_an_orphan)
{
    ck_assert_int_eq(kb_journal_init(), 0);
    kb_journal_entry *e = kb_journal_attach();
    ck_assert_ptr_nonnull(e);
    kb_journal_charge c = charge_of("req_cccccccccccc");
    kb_journal_charged(e, &c);
    ck_assert(kb_journal_work_waiting(e));
    kb_journal_detach(e);
    kb_journal_entry *fresh = kb_journal_attach();
    ck_assert_ptr_nonnull(fresh);
    ck_assert_ptr_ne(fresh, e);
    ck_assert_int_eq(kb_journal_state(fresh), KB_J_IDLE);
    ck_assert(kb_journal_work_waiting(fresh)); /* the orphan waits */
    kb_jstate st;
    kb_journal_charge got;
    int i = kb_journal_claim(&st, &got);
    ck_assert_int_ge(i, 0);
    ck_assert_int_eq(st, KB_J_CHARGED);
    ck_assert_str_eq(got.request_id, "req_cccccccccccc");
    kb_journal_release(i, true);
    ck_assert(!kb_journal_work_waiting(fresh));
    /* An idle entry detached is simply free again. */
    kb_journal_detach(fresh);
    ck_assert(!kb_journal_work_waiting(NULL));
}
END_TEST

/* ---- the journal in a file ---- */

#define LIFE_A "0b0e4f8a-5d0f-4a1e-9a57-6a1b2c3d4e5f"
#define LIFE_B "7c9d2e1f-3a4b-4c5d-8e6f-7a8b9c0d1e2f"

static char jdir[64];

static void
make_dir(void)
{
    snprintf(jdir, sizeof(jdir), "/tmp/kbjournal.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(jdir));
}

static int
files_in(const char *dir)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void
remove_dir(void)
{
    DIR *d = opendir(jdir);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d != NULL)
        closedir(d);
    rmdir(jdir);
}

/* A pool's pending work in its journal file: a charge, a meter statement in
 * flight, and an entry that went back to idle. */
static void
fill_pool_journal(void)
{
    kb_journal_entry *a = kb_journal_attach(), *b = kb_journal_attach(), *c = kb_journal_attach();
    ck_assert(a != NULL && b != NULL && c != NULL);
    kb_journal_charge ch = charge_of("req_dddddddddddd");
    kb_journal_charged(a, &ch);
    kb_journal_metering(b, "req_eeeeeeeeeeee");
    kb_journal_charge ci = charge_of("req_ffffffffffff");
    kb_journal_charged(c, &ci);
    kb_journal_idle(c);
}

static int
child_pool_dies_whole(void)
{
    if (kb_journal_init_file(jdir, "host-1", LIFE_A) != 0)
        return 1;
    fill_pool_journal();
    return 0; /* every process of that pool is gone: its lock with it */
}

/* The next pool of the host id takes over what the dead one had pending, once:
 * the charge and the meter statement, not the idle entry; the file goes. */
START_TEST(journal_file_of_a_pool_that_died_whole_is_taken_over_once)
{
    make_dir();
    in_child(child_pool_dies_whole);
    ck_assert_int_eq(files_in(jdir), 1);
    ck_assert_int_eq(kb_journal_init_file(jdir, "host-1", LIFE_B), 0);
    ck_assert_int_eq(files_in(jdir), 2);
    ck_assert(!kb_journal_work_waiting(NULL));
    kb_journal_adopted a;
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-1", &a), 0);
    ck_assert_int_eq(a.files, 1);
    ck_assert_int_eq(a.entries, 2);
    ck_assert_int_eq(a.alive, 0);
    ck_assert_int_eq(files_in(jdir), 1); /* only this pool's own */
    ck_assert(kb_journal_work_waiting(NULL));
    bool seen_charge = false, seen_metering = false;
    kb_jstate st;
    kb_journal_charge got;
    int i;
    while ((i = kb_journal_claim(&st, &got)) >= 0) {
        if (st == KB_J_CHARGED) {
            ck_assert_str_eq(got.request_id, "req_dddddddddddd");
            ck_assert_uint_eq(got.xid, 4294967396u);
            ck_assert_str_eq(got.user_id, "8539643a-9d13-4df2-9ec4-4ad93bbec7fa");
            ck_assert_int_eq(got.cost, 5);
            ck_assert_int_eq(got.outbox_id, 77);
            seen_charge = true;
        } else {
            ck_assert_int_eq(st, KB_J_METERING);
            ck_assert_str_eq(got.request_id, "req_eeeeeeeeeeee");
            seen_metering = true;
        }
        kb_journal_release(i, true);
    }
    ck_assert(seen_charge && seen_metering);
    ck_assert(!kb_journal_work_waiting(NULL));
    /* Taken over once: nothing is left for another start. */
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-1", &a), 0);
    ck_assert_int_eq(a.files + a.entries + a.alive, 0);
    /* A pool's own file is never taken for a dead one's. */
    ck_assert_int_eq(files_in(jdir), 1);
    remove_dir();
}
END_TEST

/* A journal some process of its pool still has open (a worker outliving its
 * master) is left alone until the last one is gone; another host id's file is
 * never touched. */
START_TEST(journal_file_still_held_or_of_another_host_is_left_alone)
{
    make_dir();
    int go[2], ready[2];
    ck_assert_int_eq(pipe(go), 0);
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (kb_journal_init_file(jdir, "host-1", LIFE_A) != 0)
            _exit(1);
        fill_pool_journal();
        char b = 'r';
        if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 1)
            _exit(2);
        _exit(0);
    }
    char b;
    ck_assert_int_eq(read(ready[0], &b, 1), 1);
    /* Another host's pool on this machine sees it, and leaves it. */
    ck_assert_int_eq(kb_journal_init_file(jdir, "host-2", LIFE_B), 0);
    kb_journal_adopted a;
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-2", &a), 0);
    ck_assert_int_eq(a.files + a.entries + a.alive, 0);
    /* Its own host id's next pool finds it held. */
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-1", &a), 0);
    ck_assert_int_eq(a.alive, 1);
    ck_assert_int_eq(a.entries, 0);
    ck_assert(!kb_journal_work_waiting(NULL));
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-1", &a), 0);
    ck_assert_int_eq(a.files, 1);
    ck_assert_int_eq(a.entries, 2);
    ck_assert_int_eq(a.alive, 0);
    remove_dir();
}
END_TEST

/* A file of the wrong size (cut short) is removed, not read. */
START_TEST(damaged_journal_file_is_removed_unread)
{
    make_dir();
    char p[256];
    snprintf(p, sizeof(p), "%s/host-1.%s.journal", jdir, LIFE_A);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "kbjrnl1", 8), 8);
    close(fd);
    ck_assert_int_eq(kb_journal_init_file(jdir, "host-1", LIFE_B), 0);
    kb_journal_adopted a;
    ck_assert_int_eq(kb_journal_adopt(jdir, "host-1", &a), 0);
    ck_assert_int_eq(a.damaged, 1);
    ck_assert_int_eq(a.entries, 0);
    ck_assert_int_eq(files_in(jdir), 1);
    remove_dir();
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
    tcase_add_test(tc, metering_orphan_is_claimed_as_metering);
    tcase_add_test(tc, detached_entry_becomes_an_orphan);
    tcase_add_test(tc, journal_file_of_a_pool_that_died_whole_is_taken_over_once);
    tcase_add_test(tc, journal_file_still_held_or_of_another_host_is_left_alone);
    tcase_add_test(tc, damaged_journal_file_is_removed_unread);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
