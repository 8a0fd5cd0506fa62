/* test_db_ahead.c - kb_db_send_ahead (lib/kb_db.h), on connections of the
 * test's own: the statement sent ahead runs in the next statement's round
 * trip, after it committed, and answers once; it is dropped unless asked for
 * exactly; its failure cannot undo the statement it rode with. With
 * kb_db_exec_open() it runs in that transaction instead, and its failure
 * aborts it. The HTTP side
 * (the by-id routes) is in test_metered_http; the pipeline's reply deadline
 * in test_db. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_db.h"
#include "kbt.h"
#include "kb_banned.h"

/* The carrier writes a row; the statement sent ahead reads the rows with its
 * tag and takes a number from a sequence, so the test can see from another
 * connection when (and how often) it ran. */
static const kb_stmt ahead_write = {"kbt_ahead_write", "INSERT INTO kbt_ahead (tag) VALUES ($1)", 1,
                                    false};
static const kb_stmt ahead_read = {
    "kbt_ahead_read", "SELECT count(*), nextval('kbt_ahead_seq') FROM kbt_ahead WHERE tag = $1", 1,
    true};
static const kb_stmt ahead_fail = {
    "kbt_ahead_fail", "SELECT 1 / (count(*) - count(*)) FROM kbt_ahead WHERE tag = $1", 1, true};
static const kb_stmt ahead_other = {"kbt_ahead_other", "SELECT 1", 0, true};

static void
ahead_tables(void)
{
    PGconn *c = kbt_db();
    kbt_sql_ok(c, "SET client_min_messages = warning"); /* no "already exists" notices */
    kbt_sql_ok(c, "CREATE TABLE IF NOT EXISTS kbt_ahead (tag text NOT NULL)");
    kbt_sql_ok(c, "CREATE SEQUENCE IF NOT EXISTS kbt_ahead_seq");
    PQfinish(c);
}

/* Rows the carrier wrote under tag, as another connection sees them (committed). */
static long
stored(PGconn *c, const char *tag)
{
    return kbt_sql_long1(c, "SELECT count(*) FROM kbt_ahead WHERE tag = $1", tag);
}

/* The sequence's last number, as another connection sees it. */
static long
seq_now(PGconn *c)
{
    char *v = kbt_sql_value(c, "SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
                               " FROM kbt_ahead_seq");
    ck_assert_ptr_nonnull(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

static long
exec_read(kb_db *db, kb_arena *a, const char *tag, long *count)
{
    const char *p[] = {tag};
    PGresult *r = NULL;
    ck_assert_int_eq(kb_db_exec(db, a, &ahead_read, p, &r), KB_OK);
    ck_assert_int_eq(PQntuples(r), 1);
    *count = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    return strtol(PQgetvalue(r, 0, 1), NULL, 10);
}

static void
exec_write(kb_db *db, kb_arena *a, const char *tag)
{
    const char *p[] = {tag};
    ck_assert_int_eq(kb_db_exec(db, a, &ahead_write, p, NULL), KB_OK);
}

/* Each send-ahead test: a connection to look from, an arena, a kb_db of its
 * own with a 5 s statement timeout, and a tag no earlier run used. */
static void
ahead_begin(PGconn **c, kb_arena *a, kb_db *db, char tag[32], const char *name)
{
    *c = kbt_db();
    kb_arena_init(a, 0);
    kb_db_init(db, kbt_env("KB_DATABASE_URL"), "kbt-ahead", 3, 5000);
    snprintf(tag, 32, "%s-%ld", name, (long)getpid());
}

static void
ahead_end(PGconn *c, kb_arena *a, kb_db *db)
{
    kb_arena_release(a);
    kb_db_release(db);
    PQfinish(c);
}

/* It runs with the next statement, after that one committed, and is answered
 * from what came back: no second execution. */
START_TEST(sent_ahead_runs_with_the_next_statement_and_answers_once)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t1");
    const char *p[] = {tag};

    kb_db_send_ahead(&db, &ahead_read, p);
    long before = seq_now(c);
    exec_write(&db, &a, tag);
    long ran = seq_now(c);
    ck_assert_int_eq(ran, before + 1); /* it ran already, with the write */
    long count, n = exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(n, ran);          /* this is that run's answer */
    ck_assert_int_eq(count, 1);        /* it saw the write's committed row */
    ck_assert_int_eq(seq_now(c), ran); /* and nothing was executed again */
    ck_assert_ptr_null(db.ahead);

    /* Asked again: an ordinary round trip. */
    n = exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(n, ran + 1);
    ck_assert_int_eq(seq_now(c), ran + 1);

    ahead_end(c, &a, &db);
}
END_TEST

/* A result is only ever given to the same statement with the same parameters;
 * anything else drops it, and a cleared one is never sent. */
START_TEST(sent_ahead_is_dropped_unless_asked_for_exactly)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t2");
    const char *p[] = {tag};
    long count;

    /* other parameters: run afresh, with their own answer */
    kb_db_send_ahead(&db, &ahead_read, p);
    exec_write(&db, &a, tag);
    long ran = seq_now(c);
    ck_assert_int_eq(exec_read(&db, &a, "t2-other-tag", &count), ran + 1);
    ck_assert_int_eq(count, 0);
    ck_assert_ptr_null(db.ahead);

    /* a third statement in between (the meter refused: the lookup is not
     * wanted) drops it; asking later runs it afresh */
    kb_db_send_ahead(&db, &ahead_read, p);
    exec_write(&db, &a, tag);
    ran = seq_now(c);
    ck_assert_int_eq(kb_db_exec(&db, &a, &ahead_other, NULL, NULL), KB_OK);
    ck_assert_ptr_null(db.ahead);
    ck_assert_int_eq(exec_read(&db, &a, tag, &count), ran + 1);
    ck_assert_int_eq(count, 2);

    /* cleared before the next statement: never sent */
    kb_db_send_ahead(&db, &ahead_read, p);
    kb_db_ahead_clear(&db);
    ran = seq_now(c);
    exec_write(&db, &a, tag);
    ck_assert_int_eq(seq_now(c), ran);

    /* asked for itself before anything carried it: an ordinary round trip */
    kb_db_send_ahead(&db, &ahead_read, p);
    ck_assert_int_eq(exec_read(&db, &a, tag, &count), ran + 1);
    ck_assert_int_eq(count, 3);
    ck_assert_ptr_null(db.ahead);

    ahead_end(c, &a, &db);
}
END_TEST

/* Its own transaction: its failure cannot undo the statement it rode with, and
 * comes back as that statement's SQL error, on a connection still usable. */
START_TEST(sent_ahead_failure_leaves_the_carrier_committed)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t3");
    const char *p[] = {tag};

    kb_db_send_ahead(&db, &ahead_fail, p);
    exec_write(&db, &a, tag);
    ck_assert_int_eq(stored(c, tag), 1);
    ck_assert_int_eq(kb_db_exec(&db, &a, &ahead_fail, p, NULL), KB_E_INTERNAL);
    ck_assert(kb_db_sqlstate_is(&db, "22012")); /* division_by_zero */
    ck_assert_ptr_nonnull(db.conn);
    long count;
    (void)exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(count, 1);

    ahead_end(c, &a, &db);
}
END_TEST

/* With kb_db_exec_open() it rides in the open transaction's first round trip,
 * right after the carrier (it sees the carrier's row), and the commit that
 * follows is a Sync alone; its result answers once, after the commit. */
START_TEST(sent_ahead_rides_in_the_open_transaction)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t4");
    const char *p[] = {tag};

    kb_db_send_ahead(&db, &ahead_read, p);
    long before = seq_now(c);
    PGresult *r = NULL;
    ck_assert_int_eq(kb_db_exec_open(&db, &a, &ahead_write, p, &r), KB_OK);
    ck_assert(db.open);
    long ran = seq_now(c);
    ck_assert_int_eq(ran, before + 1); /* it ran, before the commit */
    ck_assert_ptr_nonnull(db.ahead_result);
    ck_assert_int_eq(stored(c, tag), 0);
    ck_assert_int_eq(kb_db_commit(&db), KB_OK);
    ck_assert_int_eq(stored(c, tag), 1);
    ck_assert_int_eq(seq_now(c), ran); /* the commit did not run it again */
    long count, n = exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(n, ran);   /* that run's answer */
    ck_assert_int_eq(count, 1); /* in the transaction, after the carrier's write */
    ck_assert_int_eq(seq_now(c), ran);
    ck_assert_ptr_null(db.ahead);

    ahead_end(c, &a, &db);
}
END_TEST

/* In the open transaction its failure aborts the carrier too: the open fails
 * with its SQL error, nothing is left open or committed, and the connection
 * is still usable. (The meter relies on this: a charge whose lookup failed is
 * no charge.) */
START_TEST(sent_ahead_failure_aborts_the_open_transaction)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t5");
    const char *p[] = {tag};

    kb_db_send_ahead(&db, &ahead_fail, p);
    PGresult *r = NULL;
    ck_assert_int_eq(kb_db_exec_open(&db, &a, &ahead_write, p, &r), KB_E_INTERNAL);
    ck_assert(kb_db_sqlstate_is(&db, "22012")); /* division_by_zero */
    ck_assert(!db.open);
    ck_assert_ptr_null(db.ahead);
    ck_assert_ptr_nonnull(db.conn);
    ck_assert_int_eq(stored(c, tag), 0);
    long count;
    (void)exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(count, 0);

    ahead_end(c, &a, &db);
}
END_TEST

/* Sent ahead once a transaction is open (the meter's slow path: a key the worker
 * had not seen), on a connection that never ran it: it goes with the commit, its
 * Parse included, after the commit's Sync, and answers once. */
START_TEST(sent_ahead_after_the_open_goes_with_the_commit_prepared)
{
    PGconn *c;
    kb_arena a;
    kb_db db;
    char tag[32];
    ahead_begin(&c, &a, &db, tag, "t6");
    const char *p[] = {tag};

    PGresult *r = NULL;
    ck_assert_int_eq(kb_db_exec_open(&db, &a, &ahead_write, p, &r), KB_OK);
    kb_db_send_ahead(&db, &ahead_read, p);
    long before = seq_now(c);
    ck_assert_int_eq(kb_db_commit(&db), KB_OK);
    long ran = seq_now(c);
    ck_assert_int_eq(ran, before + 1); /* it ran with the commit */
    long count, n = exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(n, ran);   /* that run's answer */
    ck_assert_int_eq(count, 1); /* after the commit */
    ck_assert_int_eq(seq_now(c), ran);
    /* Prepared now: the next one goes without a Parse, and answers the same way. */
    ck_assert_int_eq(kb_db_exec_open(&db, &a, &ahead_write, p, &r), KB_OK);
    kb_db_send_ahead(&db, &ahead_read, p);
    ck_assert_int_eq(kb_db_commit(&db), KB_OK);
    n = exec_read(&db, &a, tag, &count);
    ck_assert_int_eq(n, ran + 1);
    ck_assert_int_eq(count, 2);

    ahead_end(c, &a, &db);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("db_ahead");
    TCase *ta = tcase_create("send-ahead");
    tcase_add_unchecked_fixture(ta, ahead_tables, NULL);
    tcase_add_test(ta, sent_ahead_runs_with_the_next_statement_and_answers_once);
    tcase_add_test(ta, sent_ahead_is_dropped_unless_asked_for_exactly);
    tcase_add_test(ta, sent_ahead_failure_leaves_the_carrier_committed);
    tcase_add_test(ta, sent_ahead_rides_in_the_open_transaction);
    tcase_add_test(ta, sent_ahead_failure_aborts_the_open_transaction);
    tcase_add_test(ta, sent_ahead_after_the_open_goes_with_the_commit_prepared);
    suite_add_tcase(s, ta);
    return kb_check_run(s);
}
