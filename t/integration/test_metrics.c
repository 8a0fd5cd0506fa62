/* test_metrics.c - GET /metrics: Prometheus text that parses, counters that
 * count across workers, and no access from anywhere but this host. */
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_banned.h"

static char *
scrape(void)
{
    kbt_resp *r = kbt_get("/metrics");
    ck_assert_msg(r->status == 200, "metrics: %ld %s", r->status, kb_buf_cstr(&r->body));
    char *ct = kbt_header(r, "Content-Type");
    ck_assert_msg(ct && strncmp(ct, "text/plain; version=0.0.4", 25) == 0, "content-type %s", ct);
    free(ct);
    char *body = strdup(kb_buf_cstr(&r->body));
    kbt_resp_free(r);
    return body;
}

START_TEST(metrics_exposition_parses)
{
    char *text = scrape();
    regex_t sample_re, help_re, type_re;
    ck_assert_int_eq(
        regcomp(&sample_re,
                "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"[^\"\\\\]*\",?)*\\})?"
                " -?[0-9][0-9.e+-]*$",
                REG_EXTENDED | REG_NOSUB),
        0);
    ck_assert_int_eq(
        regcomp(&help_re, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED | REG_NOSUB), 0);
    ck_assert_int_eq(regcomp(&type_re,
                             "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lines++;
        regex_t *re = strncmp(line, "# HELP", 6) == 0   ? &help_re
                      : strncmp(line, "# TYPE", 6) == 0 ? &type_re
                                                        : &sample_re;
        ck_assert_msg(regexec(re, line, 0, NULL, 0) == 0, "bad exposition line: %s", line);
    }
    ck_assert_int_gt(lines, 20);
    regfree(&sample_re);
    regfree(&help_re);
    regfree(&type_re);
    free(text);
}
END_TEST

START_TEST(metrics_count_requests_across_workers)
{
    char *before = scrape();
    double h0 = kbt_metrics_sample(
        before, "kalshibook_requests_total{route=\"GET /health\",status=\"200\"}");
    double u0 = kbt_metrics_sample(before,
                                   "kalshibook_requests_total{route=\"unmatched\",status=\"404\"}");
    double c0 = kbt_metrics_sample(before, "kalshibook_request_duration_seconds_count");
    free(before);
    for (int i = 0; i < 9; i++) {
        kbt_resp *r = kbt_get("/health");
        ck_assert_int_eq(r->status, 200);
        kbt_resp_free(r);
    }
    for (int i = 0; i < 4; i++) {
        kbt_resp *r = kbt_get("/no-such-route");
        ck_assert_int_eq(r->status, 404);
        kbt_resp_free(r);
    }
    char *after = scrape();
    double h1 = kbt_metrics_sample(
        after, "kalshibook_requests_total{route=\"GET /health\",status=\"200\"}");
    double u1 = kbt_metrics_sample(after,
                                   "kalshibook_requests_total{route=\"unmatched\",status=\"404\"}");
    double c1 = kbt_metrics_sample(after, "kalshibook_request_duration_seconds_count");
    free(after);
    ck_assert_msg(h1 - (h0 < 0 ? 0 : h0) == 9, "health %f -> %f", h0, h1);
    ck_assert_msg(u1 - (u0 < 0 ? 0 : u0) == 4, "unmatched %f -> %f", u0, u1);
    /* 9 + 4 + the first scrape itself. */
    ck_assert_msg(c1 - c0 == 14, "duration count %f -> %f", c0, c1);
}
END_TEST

typedef struct restarts {
    double want;
} restarts;

static bool
restarts_reach(void *arg)
{
    restarts *r = arg;
    char *t = scrape();
    double v = kbt_metrics_sample(t, "kalshibook_worker_restarts_total");
    free(t);
    return v >= r->want;
}

START_TEST(metrics_count_worker_restarts)
{
    char *t = scrape();
    double r0 = kbt_metrics_sample(t, "kalshibook_worker_restarts_total");
    free(t);
    ck_assert(r0 >= 0);
    pid_t kids[64];
    size_t n = kbt_children(kbt_master_pid(), kids, 64);
    ck_assert(n > 0);
    ck_assert_int_eq(kill(kids[0], SIGKILL), 0);
    restarts want = {r0 + 1};
    ck_assert_msg(kbt_wait_until(restarts_reach, &want, 10000), "restart not counted");
    /* Leave a full pool behind for the next suite. */
    kbt_resp *r = kbt_get("/health");
    ck_assert_int_eq(r->status, 200);
    kbt_resp_free(r);
}
END_TEST

START_TEST(metrics_refused_from_other_hosts)
{
    kbt_set_source("127.0.0.2");
    kbt_resp *r = kbt_get("/metrics");
    kbt_set_source(NULL);
    ck_assert_msg(r->curl_code == 0, "curl %d", r->curl_code);
    kbt_assert_envelope(r, 404, "not_found");
    ck_assert(strstr(kb_buf_cstr(&r->body), "kalshibook_") == NULL);
    kbt_resp_free(r);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, metrics_exposition_parses);
    tcase_add_test(tc, metrics_count_requests_across_workers);
    tcase_add_test(tc, metrics_count_worker_restarts);
    tcase_add_test(tc, metrics_refused_from_other_hosts);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
