/* test_log.c - log lines: the per-request lines a worker holds back (kb_log_hold).
 *
 * Standard error is a SOCK_SEQPACKET socket in each test, so every write(2) the
 * library makes arrives as one message: the tests see how lines were grouped
 * into writes, not only what was written.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "kb_log.h"
#include "kb_time.h"
#include "kb_banned.h"

/* The reading end of standard error, in the test's own process (check forks). */
static int reader = -1;

static void
capture(void)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    ck_assert_int_eq(dup2(sv[1], 2), 2);
    close(sv[1]);
    reader = sv[0];
    kb_log_init("test", KB_LOG_INFO);
}

typedef struct writes {
    int n;              /* messages (writes) */
    size_t largest;     /* the largest one */
    bool whole;         /* each ended with a newline */
    char text[1 << 16]; /* all of them, in order */
    size_t len;
} writes;

/* Every write made so far, without waiting for more. */
static void
drain(writes *w)
{
    memset(w, 0, sizeof(*w));
    w->whole = true;
    char m[8192];
    for (;;) {
        ssize_t n = recv(reader, m, sizeof(m), MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        w->n++;
        if ((size_t)n > w->largest)
            w->largest = (size_t)n;
        if (m[n - 1] != '\n')
            w->whole = false;
        ck_assert_uint_lt(w->len + (size_t)n, sizeof(w->text));
        memcpy(w->text + w->len, m, (size_t)n);
        w->len += (size_t)n;
    }
    w->text[w->len] = '\0';
}

/* A per-request line at level, its message "msg" and a pad of pad bytes. */
static void
request_line(kb_log_level level, const char *msg, size_t pad)
{
    kb_buf b = KB_BUF_INIT;
    kb_log_begin(&b, level);
    kb_buf_printf(&b, ",\"msg\":\"%s\",\"pad\":\"", msg);
    for (size_t i = 0; i < pad; i++)
        kb_buf_puts(&b, "x");
    kb_buf_puts(&b, "\"");
    kb_log_end_held(&b, level);
    kb_buf_release(&b);
}

/* Offset of needle in w's text, or -1. */
static long
at(const writes *w, const char *needle)
{
    const char *p = strstr(w->text, needle);
    return p ? (long)(p - w->text) : -1;
}

static writes w;

START_TEST(without_hold_each_line_is_written_at_once)
{
    capture();
    request_line(KB_LOG_INFO, "one", 0);
    request_line(KB_LOG_INFO, "two", 0);
    ck_assert_int_eq(kb_log_due_ms(), -1);
    drain(&w);
    ck_assert_int_eq(w.n, 2);
    ck_assert(w.whole);
    ck_assert_int_ge(at(&w, "\"pid\":"), 0);
}
END_TEST

/* Held lines wait; a line through kb_log() comes after them, in the same write. */
START_TEST(held_lines_wait_and_keep_their_order)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "r1", 0);
    request_line(KB_LOG_INFO, "r2", 0);
    request_line(KB_LOG_DEBUG, "r3", 0);
    drain(&w);
    ck_assert_int_eq(w.n, 0);
    int due = kb_log_due_ms();
    ck_assert_int_ge(due, 0);
    ck_assert_int_le(due, KB_LOG_HOLD_MS);
    kb_log_warn("then a warning");
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    ck_assert(w.whole);
    ck_assert_int_lt(at(&w, "\"r1\""), at(&w, "\"r2\""));
    ck_assert_int_lt(at(&w, "\"r2\""), at(&w, "\"r3\""));
    ck_assert_int_lt(at(&w, "\"r3\""), at(&w, "then a warning"));
    ck_assert_int_eq(kb_log_due_ms(), -1);
}
END_TEST

/* A request line of level warn or above (a 5xx) is not held, nor are those before it. */
START_TEST(an_error_line_goes_at_once_with_those_before_it)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "ok-line", 0);
    request_line(KB_LOG_ERROR, "error-line", 0);
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    ck_assert_int_lt(at(&w, "ok-line"), at(&w, "error-line"));
    ck_assert_int_eq(kb_log_due_ms(), -1);
}
END_TEST

/* Many lines: each write is whole lines, at most KB_LOG_HOLD_BYTES (PIPE_BUF), and
 * all of them arrive once, in order, by the flush. */
START_TEST(writes_are_whole_lines_within_the_hold)
{
    capture();
    kb_log_hold(true);
    char name[32];
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof(name), "line-%02d", i);
        request_line(KB_LOG_INFO, name, 150);
    }
    kb_log_flush();
    drain(&w);
    ck_assert_int_ge(w.n, 3);
    ck_assert_int_lt(w.n, 60);
    ck_assert(w.whole);
    ck_assert_uint_le(w.largest, KB_LOG_HOLD_BYTES);
    long last = -1;
    for (int i = 0; i < 60; i++) {
        snprintf(name, sizeof(name), "\"line-%02d\"", i);
        long p = at(&w, name);
        ck_assert_msg(p > last, "%s missing or out of order", name);
        ck_assert_ptr_null(strstr(w.text + p + 1, name)); /* once */
        last = p;
    }
}
END_TEST

/* A line longer than the hold is written on its own, after those waiting. */
START_TEST(a_line_longer_than_the_hold_is_written_alone)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "short", 0);
    request_line(KB_LOG_INFO, "long", KB_LOG_HOLD_BYTES);
    drain(&w);
    ck_assert_int_eq(w.n, 2);
    ck_assert_int_lt(at(&w, "short"), at(&w, "long"));
}
END_TEST

/* Lines wait at most KB_LOG_HOLD_MS: the first line after that writes them all. */
START_TEST(the_oldest_line_waits_at_most_the_hold_time)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "old", 0);
    int64_t until = kb_mono_us() + (int64_t)(KB_LOG_HOLD_MS + 2000) * 1000;
    while (kb_log_due_ms() > 0 && kb_mono_us() < until) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(kb_log_due_ms(), 0);
    drain(&w);
    ck_assert_int_eq(w.n, 0);
    request_line(KB_LOG_INFO, "new", 0);
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    ck_assert_int_lt(at(&w, "old"), at(&w, "new"));
}
END_TEST

/* Turning the hold off writes what waits. */
START_TEST(hold_off_flushes)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "pending", 0);
    kb_log_hold(false);
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    request_line(KB_LOG_INFO, "direct", 0);
    drain(&w);
    ck_assert_int_eq(w.n, 1);
}
END_TEST

/* A fork's child writes its own lines with its own pid, never its parent's waiting
 * ones; the parent still writes those, once. */
START_TEST(a_forked_child_writes_only_its_own_lines)
{
    capture();
    kb_log_hold(true);
    request_line(KB_LOG_INFO, "parent-line", 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        request_line(KB_LOG_INFO, "child-line", 0);
        kb_log_flush();
        _exit(0);
    }
    int st;
    ck_assert_int_eq(waitpid(child, &st, 0), child);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    ck_assert_int_ge(at(&w, "child-line"), 0);
    ck_assert_int_eq(at(&w, "parent-line"), -1);
    char pid[32];
    snprintf(pid, sizeof(pid), "\"pid\":%ld,", (long)child);
    ck_assert_int_ge(at(&w, pid), 0);
    kb_log_flush();
    drain(&w);
    ck_assert_int_eq(w.n, 1);
    ck_assert_int_ge(at(&w, "parent-line"), 0);
    snprintf(pid, sizeof(pid), "\"pid\":%ld,", (long)getpid());
    ck_assert_int_ge(at(&w, pid), 0);
}
END_TEST

int
main(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("hold");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, without_hold_each_line_is_written_at_once);
    tcase_add_test(tc, held_lines_wait_and_keep_their_order);
    tcase_add_test(tc, an_error_line_goes_at_once_with_those_before_it);
    tcase_add_test(tc, writes_are_whole_lines_within_the_hold);
    tcase_add_test(tc, a_line_longer_than_the_hold_is_written_alone);
    tcase_add_test(tc, the_oldest_line_waits_at_most_the_hold_time);
    tcase_add_test(tc, hold_off_flushes);
    tcase_add_test(tc, a_forked_child_writes_only_its_own_lines);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
