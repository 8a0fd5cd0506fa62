/* test_data_subpenny.c - subpenny prices and fractional quantities through the whole stack
 * (issue 17), on captures this suite writes itself:
 *  - a tapered_deci_cent book with fractional quantities (2,400 deltas in three line forms,
 *    ties on ts, two snapshots, a delta at the second snapshot's instant, checkpoints every
 *    37 deltas): POST /orderbook at 90 instants equals a replay computed here from the
 *    generated messages, text for text (numbers and strings written here by hand), with
 *    depth and "units":"dollars" too;
 *  - candles and trades on fractional counts and subpenny prices are exact
 *    (0.1 + 0.2 + 0.3 contracts is 0.6).
 * Tickers KXSUB-*, 2026-02-21: no other suite's data.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"
#include "fixed_capture.h"
#include "kb_banned.h"

/* ---- a subpenny, fractional book against a replay computed here ---- */

#define SUB "KXSUB-26FEB21-R"
#define T1_MS INT64_C(1771675200000) /* 2026-02-21T12:00:00Z */
#define NDELTAS 2400
#define NLEVELS 14
#define KB_PRICE_DOLLAR_T 10000 /* $1 in price units, spelled out here */

typedef struct sub_delta {
    int64_t ms;
    int32_t price; /* 1/10,000 $ */
    int64_t qty;   /* 1/100 contract, signed */
    bool yes;
} sub_delta;

typedef struct sub_snap {
    int64_t ms;
    int32_t price[2][NLEVELS];
    int64_t qty[2][NLEVELS];
} sub_snap;

static sub_delta deltas[NDELTAS];
static sub_snap snaps[2];

static uint64_t
rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* A price on the tapered_deci_cent grid: YES 3..9.9 cents by 0.1 and 10..15 by 1, NO the
 * mirror (85..90 by 1, 90.1..97 by 0.1). */
static int32_t
grid_price(uint64_t *s, bool yes)
{
    int32_t k = (int32_t)(rnd(s) % 76);
    int32_t p = k < 70 ? 300 + 10 * k : 1000 + 100 * (k - 70);
    return yes ? p : KB_PRICE_DOLLAR_T - p;
}

static void
fp_text(char *b, size_t n, int64_t v)
{
    int64_t u = v < 0 ? -v : v;
    snprintf(b, n, "%s%lld.%02lld", v < 0 ? "-" : "", (long long)(u / 100), (long long)(u % 100));
}

static void
dollars_text(char *b, size_t n, int32_t p)
{
    snprintf(b, n, "%d.%04d", p / 10000, p % 10000);
}

/* The API's number for v (1/100 of a unit): shortest exact decimal, written here by hand. */
static void
trim_text(char *b, size_t n, int64_t v)
{
    int64_t u = v < 0 ? -v : v;
    const char *sign = v < 0 ? "-" : "";
    if (u % 100 == 0)
        snprintf(b, n, "%s%lld", sign, (long long)(u / 100));
    else if (u % 10 == 0)
        snprintf(b, n, "%s%lld.%lld", sign, (long long)(u / 100), (long long)(u % 100 / 10));
    else
        snprintf(b, n, "%s%lld.%02lld", sign, (long long)(u / 100), (long long)(u % 100));
}

static void
write_sub_capture(FILE *f)
{
    uint64_t s = 0x5EED17;
    for (int k = 0; k < 2; k++) {
        snaps[k].ms = T1_MS + k * 300000;
        for (int side = 0; side < 2; side++) {
            for (int i = 0; i < NLEVELS; i++) {
                snaps[k].price[side][i] = grid_price(&s, side == 0);
                snaps[k].qty[side][i] = i == 3 ? 0 : (int64_t)(rnd(&s) % 500000);
            }
        }
    }
    int64_t ms = T1_MS;
    for (int i = 0; i < NDELTAS; i++) {
        ms += (int64_t)(rnd(&s) % 5 == 0 ? 0 : rnd(&s) % 400);
        if (i == NDELTAS / 2) /* one at the second snapshot's instant: not applied to it */
            snaps[1].ms = ++ms;
        deltas[i].ms = ms;
        deltas[i].yes = rnd(&s) % 2 == 0;
        deltas[i].price = grid_price(&s, deltas[i].yes);
        deltas[i].qty = (int64_t)(rnd(&s) % 70000) - 30000;
        if (deltas[i].qty == 0)
            deltas[i].qty = 1;
    }
    long seq = 1;
    int next = 0;
    for (int k = 0; k <= 2; k++) {
        int64_t until = k < 2 ? snaps[k].ms : INT64_MAX;
        for (; next < NDELTAS && deltas[next].ms < until; next++) {
            const sub_delta *d = &deltas[next];
            char p[32], q[32];
            dollars_text(p, sizeof(p), d->price);
            fp_text(q, sizeof(q), d->qty);
            const char *side = d->yes ? "yes" : "no";
            if (next % 7 == 3 && d->price % 100 == 0 && d->qty % 100 == 0) /* legacy integers */
                fprintf(f,
                        "{\"type\":\"orderbook_delta\",\"sid\":4,\"seq\":%ld,\"msg\":{"
                        "\"market_ticker\":\"" SUB "\",\"price\":%d,\"delta\":%lld,"
                        "\"side\":\"%s\",\"ts\":%lld}}\n",
                        seq++, d->price / 100, (long long)(d->qty / 100), side, (long long)d->ms);
            else if (next % 5 == 1) /* a nested member: the cJSON path */
                fprintf(f,
                        "{\"type\":\"orderbook_delta\",\"sid\":4,\"seq\":%ld,\"extra\":{},"
                        "\"msg\":{\"market_ticker\":\"" SUB "\",\"price_dollars\":\"%s\","
                        "\"delta_fp\":\"%s\",\"side\":\"%s\",\"ts_ms\":%lld}}\n",
                        seq++, p, q, side, (long long)d->ms);
            else
                fprintf(f,
                        "{\"type\":\"orderbook_delta\",\"sid\":4,\"seq\":%ld,\"msg\":{"
                        "\"market_ticker\":\"" SUB "\",\"price_dollars\":\"%s\","
                        "\"delta_fp\":\"%s\",\"side\":\"%s\",\"ts\":%lld,\"ts_ms\":%lld}}\n",
                        seq++, p, q, side, (long long)(d->ms / 1000), (long long)d->ms);
        }
        if (k == 2)
            break;
        fprintf(f,
                "{\"type\":\"orderbook_snapshot\",\"sid\":4,\"seq\":%ld,\"msg\":{"
                "\"market_ticker\":\"" SUB "\"",
                seq++);
        for (int side = 0; side < 2; side++) {
            fprintf(f, ",\"%s_dollars_fp\":[", side ? "no" : "yes");
            for (int i = 0; i < NLEVELS; i++) {
                char p[32], q[32];
                dollars_text(p, sizeof(p), snaps[k].price[side][i]);
                fp_text(q, sizeof(q), snaps[k].qty[side][i]);
                fprintf(f, "%s[\"%s\",\"%s\"]", i ? "," : "", p, q);
            }
            fputc(']', f);
        }
        fprintf(f, ",\"ts_ms\":%lld}}\n", (long long)snaps[k].ms);
    }
}

/* The book at t (ms) by replay: snapshot levels (last entry of a price wins) plus every delta
 * with basis < ts <= t, summed per side and price; totals <= 0 are gone. Writes the expected
 * "yes" and "no" array texts and returns the number of deltas applied (-1: before any). */
static int
replay(int64_t t, int depth, bool dollars, kb_buf *out_yes, kb_buf *out_no)
{
    int k = t >= snaps[1].ms ? 1 : (t >= snaps[0].ms ? 0 : -1);
    if (k < 0)
        return -1;
    static int64_t sum[2][KB_PRICE_DOLLAR_T];
    static bool has[2][KB_PRICE_DOLLAR_T];
    memset(sum, 0, sizeof(sum));
    memset(has, 0, sizeof(has));
    for (int side = 0; side < 2; side++) {
        for (int i = 0; i < NLEVELS; i++) {
            sum[side][snaps[k].price[side][i]] = snaps[k].qty[side][i];
            has[side][snaps[k].price[side][i]] = true;
        }
    }
    int applied = 0;
    for (int i = 0; i < NDELTAS; i++) {
        if (deltas[i].ms > snaps[k].ms && deltas[i].ms <= t) {
            int side = deltas[i].yes ? 0 : 1;
            sum[side][deltas[i].price] += deltas[i].qty;
            has[side][deltas[i].price] = true;
            applied++;
        }
    }
    for (int side = 0; side < 2; side++) {
        kb_buf *b = side ? out_no : out_yes;
        kb_buf_putc(b, '[');
        int n = 0;
        for (int32_t p = KB_PRICE_DOLLAR_T - 1; p > 0 && (depth < 0 || n < depth); p--) {
            if (!has[side][p] || sum[side][p] <= 0)
                continue;
            char c[32], q[32], d[32], fq[32];
            trim_text(c, sizeof(c), p);
            trim_text(q, sizeof(q), sum[side][p]);
            dollars_text(d, sizeof(d), p);
            fp_text(fq, sizeof(fq), sum[side][p]);
            if (dollars)
                kb_buf_printf(b, "%s{\"price_dollars\":\"%s\",\"quantity_fp\":\"%s\"}",
                              n ? "," : "", d, fq);
            else
                kb_buf_printf(b,
                              "%s{\"price\":%s,\"quantity\":%s,\"price_dollars\":\"%s\","
                              "\"quantity_fp\":\"%s\"}",
                              n ? "," : "", c, q, d, fq);
            n++;
        }
        kb_buf_putc(b, ']');
    }
    return applied;
}

/* The raw text of the array member key in body (levels hold no nested arrays). */
static char *
raw_array(const char *body, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof(pat), "\"%s\":[", key);
    const char *p = strstr(body, pat);
    ck_assert_msg(p != NULL, "%s not in %s", key, body);
    p += strlen(pat) - 1;
    const char *e = strchr(p, ']');
    ck_assert_ptr_nonnull(e);
    return strndup(p, (size_t)(e - p + 1));
}

START_TEST(subpenny_books_equal_an_independent_replay)
{
    const char *path;
    FILE *f = capture(2, &path);
    write_sub_capture(f);
    fclose(f);
    import_ok("--checkpoint-every 37 --batch 500", path);
    uint64_t s = 0xB00C;
    int64_t end = deltas[NDELTAS - 1].ms;
    for (int i = 0; i < 90; i++) {
        int64_t t;
        if (i < 50)
            t = T1_MS - 1000 + (int64_t)(rnd(&s) % (uint64_t)(end - T1_MS + 2000));
        else if (i < 80)
            t = deltas[(i - 50) * (NDELTAS / 30)].ms - (i % 2);
        else
            t = snaps[1].ms + (i % 3) - 1;
        int depth = i % 4 == 1 ? 3 : -1;
        bool dollars = i % 5 == 2;
        kb_buf yes = KB_BUF_INIT, no = KB_BUF_INIT;
        int applied = replay(t, depth, dollars, &yes, &no);
        char body[256];
        snprintf(body, sizeof(body), "{\"market_ticker\":\"" SUB "\",\"timestamp\":\"%s\"%s%s}",
                 iso(t), depth >= 0 ? ",\"depth\":3" : "", dollars ? ",\"units\":\"dollars\"" : "");
        kbt_resp *r = kbt_data_post(&account, "/orderbook", body);
        if (applied < 0) {
            kbt_assert_envelope(r, 404, "no_data_available");
        } else {
            ck_assert_msg(r->status == 200, "%s: %ld %s", body, r->status, kb_buf_cstr(&r->body));
            ck_assert_int_eq(cJSON_GetObjectItem(r->json, "deltas_applied")->valueint, applied);
            char *got_yes = raw_array(kb_buf_cstr(&r->body), "yes");
            char *got_no = raw_array(kb_buf_cstr(&r->body), "no");
            ck_assert_msg(strcmp(got_yes, yes.buf) == 0, "%s yes:\n got  %s\n want %s", body,
                          got_yes, yes.buf);
            ck_assert_msg(strcmp(got_no, no.buf) == 0, "%s no:\n got  %s\n want %s", body, got_no,
                          no.buf);
            free(got_yes);
            free(got_no);
            if (i % 10 == 0)
                kbt_docs_assert_conforms(r, "POST", "/orderbook");
        }
        kbt_resp_free(r);
        kb_buf_release(&yes);
        kb_buf_release(&no);
    }
    /* the subpenny levels really are there, and checkpoints were used */
    PGconn *c = kbt_db();
    ck_assert_int_gt(kbt_sql_long1(c,
                                   "SELECT count(*) FROM deltas WHERE market_ticker = $1"
                                   " AND price_e4 % 100 <> 0",
                                   SUB),
                     1000);
    ck_assert_int_gt(kbt_sql_long1(c,
                                   "SELECT count(*) FROM book_checkpoints"
                                   " WHERE market_ticker = $1",
                                   SUB),
                     40);
    PQfinish(c);
}
END_TEST

/* ---- candles on fractional trades ---- */

START_TEST(candles_are_exact_on_fractional_trades)
{
    const char *path;
    FILE *f = capture(3, &path);
    static const struct {
        int sec;
        const char *yes, *no, *count;
    } tr[] = {{10, "0.0450", "0.9550", "0.10"},
              {20, "0.0460", "0.9540", "0.20"},
              {50, "0.0440", "0.9560", "0.30"},
              {65, "0.0470", "0.9530", "12.25"},
              {70, "0.1000", "0.9000", "0.01"}};
    for (size_t i = 0; i < sizeof(tr) / sizeof(tr[0]); i++)
        fprintf(f,
                "{\"type\":\"trade\",\"sid\":3,\"seq\":%zu,\"msg\":{\"trade_id\":"
                "\"frac-%zu\",\"market_ticker\":\"KXSUB-26FEB21-C\",\"yes_price_dollars\":"
                "\"%s\",\"no_price_dollars\":\"%s\",\"count_fp\":\"%s\",\"taker_side\":"
                "\"yes\",\"ts_ms\":%lld}}\n",
                i + 1, i + 1, tr[i].yes, tr[i].no, tr[i].count,
                (long long)(T1_MS + 1000LL * tr[i].sec));
    fclose(f);
    import_ok("", path);
    kbt_resp *r = kbt_data_get(&account, "/candles/KXSUB-26FEB21-C?start_time=2026-02-21T12:00:00Z"
                                         "&end_time=2026-02-21T13:00:00Z&interval=1m");
    ck_assert_int_eq(r->status, 200);
    kbt_docs_assert_conforms(r, "GET", "/candles/KXSUB-26FEB21-C");
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(r->json, "data"));
    /* 0.1 + 0.2 + 0.3 contracts is 0.6 exactly (as doubles it would be 0.6000000000000001) */
    ck_assert_str_eq(
        s, "[{\"bucket\":\"2026-02-21T12:00:00\",\"market_ticker\":\"KXSUB-26FEB21-C\","
           "\"open\":4.5,\"high\":4.6,\"low\":4.4,\"close\":4.4,\"volume\":0.6,"
           "\"trade_count\":3,\"open_dollars\":\"0.0450\",\"high_dollars\":\"0.0460\","
           "\"low_dollars\":\"0.0440\",\"close_dollars\":\"0.0440\",\"volume_fp\":\"0.60\"},"
           "{\"bucket\":\"2026-02-21T12:01:00\",\"market_ticker\":\"KXSUB-26FEB21-C\","
           "\"open\":4.7,\"high\":10,\"low\":4.7,\"close\":10,\"volume\":12.26,"
           "\"trade_count\":2,\"open_dollars\":\"0.0470\",\"high_dollars\":\"0.1000\","
           "\"low_dollars\":\"0.0470\",\"close_dollars\":\"0.1000\",\"volume_fp\":\"12.26\"}]");
    free(s);
    /* the raw text carries the numbers exactly as written, not through a double */
    ck_assert_ptr_nonnull(strstr(kb_buf_cstr(&r->body), "\"volume\":0.6,"));
    kbt_resp_free(r);
    r = kbt_data_get(&account, "/candles/KXSUB-26FEB21-C?start_time=2026-02-21&end_time=2026-02-22"
                               "&interval=1d");
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(strstr(kb_buf_cstr(&r->body),
                                 "\"open\":4.5,\"high\":10,\"low\":4.4,\"close\":10,"
                                 "\"volume\":12.86,\"trade_count\":5"));
    kbt_resp_free(r);
    r = kbt_data_post(&account, "/trades",
                      "{\"market_ticker\":\"KXSUB-26FEB21-C\",\"start_time\":"
                      "\"2026-02-21T12:01:00Z\",\"end_time\":\"2026-02-21T12:01:06Z\"}");
    ck_assert_int_eq(r->status, 200);
    kbt_docs_assert_conforms(r, "POST", "/trades");
    ck_assert_ptr_nonnull(strstr(kb_buf_cstr(&r->body),
                                 "\"yes_price\":4.7,\"no_price\":95.3,\"count\":12.25,"
                                 "\"taker_side\":\"yes\",\"ts\":\"2026-02-21T12:01:05+00:00\","
                                 "\"yes_price_dollars\":\"0.0470\",\"no_price_dollars\":"
                                 "\"0.9530\",\"count_fp\":\"12.25\",\"received_at\":null}"));
    kbt_resp_free(r);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("data_subpenny");
    TCase *tc = tcase_create("subpenny");
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, subpenny_books_equal_an_independent_replay);
    tcase_add_test(tc, candles_are_exact_on_fractional_trades);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
