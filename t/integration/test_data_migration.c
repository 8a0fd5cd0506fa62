/* test_data_migration.c - an integer-cents database migrated in place keeps every answer
 * (issue 17, migrations 0012-0014).
 *
 * t/data/migration/ holds what the code before 0012 made of a small `kbctl demo-data` set:
 * the market tables as it stored them (old-demo.sql) and its server's answers to 276 data
 * requests (old-answers.jsonl), both written by make-fixture.sh from that commit. Here:
 *  - database "old": migrations 0001-0011 only, old-demo.sql loaded, then migrated to the
 *    head (0012-0014 convert it in place);
 *  - database "new": migrated to the head, the same demo set imported by today's kbctl
 *    (the generator's legacy bytes are checked against the fixture's md5 first).
 * Every recorded request is then asked of both databases through libkb's query functions
 * (what the handlers write between the request's opening brace and request_id):
 *  - "old" answers exactly the recorded text once the fields 0012 added after the original
 *    ones are taken out (and metadata.ts, which 0014 removes on purpose), byte for byte;
 *  - "new" answers exactly what "old" answers, new fields included;
 * and the rows of both databases are equal table by table.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"
#include "kbt.h"
#include "kb_book.h"
#include "kb_catalog.h"
#include "kb_cursor.h"
#include "kb_markets.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

#define FIXTURE "t/data/migration/"

static char old_db[64], new_db[64];
static char old_url[1024], new_url[1024];
static char tmpdir[64];

/* The fixture runs once, outside the tests' processes: a failure there stops the program. */
#define need(cond, ...)                                                                    \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "test_data_migration setup: " __VA_ARGS__);                    \
            fputc('\n', stderr);                                                           \
            teardown();                                                                    \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

static void teardown(void);


/* The stack's conninfo with dbname replaced (keyword form; values without spaces). */
static void
url_for(const char *dbname, char *out, size_t outsz)
{
    char *err = NULL;
    PQconninfoOption *o = PQconninfoParse(kbt_env("KB_DATABASE_URL"), &err);
    need(o != NULL, "conninfo: %s", err ? err : "?");
    kb_buf b = KB_BUF_INIT;
    for (PQconninfoOption *i = o; i->keyword != NULL; i++) {
        const char *v = strcmp(i->keyword, "dbname") == 0 ? dbname : i->val;
        if (v == NULL || v[0] == '\0')
            continue;
        need(strpbrk(v, " '\\") == NULL, "conninfo value '%s'", v);
        kb_buf_printf(&b, "%s%s=%s", b.len ? " " : "", i->keyword, v);
    }
    PQconninfoFree(o);
    need(b.len < outsz, "conninfo too long");
    snprintf(out, outsz, "%s", kb_buf_cstr(&b));
    kb_buf_release(&b);
}

/* Run argv with KB_DATABASE_URL=url in the repository root; its exit status. */
static int
run(const char *url, const char *const *argv)
{
    pid_t pid = fork();
    need(pid >= 0, "fork");
    if (pid == 0) {
        setenv("KB_DATABASE_URL", url, 1);
        if (chdir(kbt_env("KB_REPO_ROOT")) != 0 || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    need(waitpid(pid, &st, 0) == pid, "waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

/* kbctl ARGS... (NULL-terminated) against url. */
static void
kbctl(const char *url, const char *const *args)
{
    char bin[512];
    snprintf(bin, sizeof(bin), "%s/kbctl", kbt_env("KB_BIN_DIR"));
    const char *argv[12] = {bin};
    for (int i = 0; args[i] != NULL && i < 10; i++)
        argv[i + 1] = args[i];
    need(run(url, argv) == 0, "kbctl %s %s failed", args[0], args[1] ? args[1] : "");
}

static void
psql_file(const char *url, const char *file)
{
    const char *argv[] = {"psql", "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1",
                          "-d", url, "-f", file, NULL};
    need(run(url, argv) == 0, "psql -f %s failed", file);
}

static void
quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* "<what> <db>", e.g. admin("CREATE DATABASE", name), on the stack's database. */
static void
admin(const char *what, const char *db)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "%s %s", what, db);
    PGconn *c = PQconnectdb(kbt_env("KB_DATABASE_URL"));
    PQsetNoticeProcessor(c, quiet, NULL); /* "does not exist, skipping" */
    PGresult *r = PQexec(c, sql);
    need(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

static char *
slurp(const char *path, size_t *len)
{
    char *s = kbt_file_read(path, len);
    need(s != NULL, "cannot read %s", path);
    return s;
}

/* ---- the recorded answers ---- */

typedef struct answer {
    cJSON *req;     /* [kind, args...] */
    long status;
    const char *body; /* exact text, without request_id and response_time */
    cJSON *line;    /* owner */
} answer;

static answer *answers;
static int nanswers;

static void
load_answers(void)
{
    size_t n;
    char *text = slurp(FIXTURE "old-answers.jsonl", &n);
    int cap = 0;
    for (char *line = text; line < text + n;) {
        char *nl = memchr(line, '\n', (size_t)(text + n - line));
        size_t len = nl ? (size_t)(nl - line) : (size_t)(text + n - line);
        cJSON *j = cJSON_ParseWithLength(line, len);
        need(j != NULL, "bad line in old-answers.jsonl");
        if (nanswers == cap) {
            cap = cap ? 2 * cap : 512;
            answers = realloc(answers, (size_t)cap * sizeof(*answers));
            need(answers != NULL, "out of memory");
        }
        answer *x = &answers[nanswers++];
        x->line = j;
        x->req = cJSON_GetObjectItem(j, "req");
        x->status = (long)cJSON_GetObjectItem(j, "status")->valuedouble;
        x->body = cJSON_GetObjectItem(j, "body")->valuestring;
        need(cJSON_IsArray(x->req) && x->body != NULL, "bad line in old-answers.jsonl");
        line += len + 1;
    }
    free(text);
    need(nanswers > 200, "only %d recorded answers", nanswers);
}

static void
md5_hex(const char *s, size_t n, char out[33])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    need(EVP_Digest(s, n, d, &dl, EVP_md5(), NULL) == 1 && dl == 16, "md5");
    for (unsigned i = 0; i < dl; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---- the two databases ---- */

static void
setup(void)
{
    snprintf(old_db, sizeof(old_db), "kbt_mig_old_%d", (int)getpid());
    snprintf(new_db, sizeof(new_db), "kbt_mig_new_%d", (int)getpid());
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kbt-mig-%d", (int)getpid());
    admin("DROP DATABASE IF EXISTS", old_db);
    admin("DROP DATABASE IF EXISTS", new_db);
    admin("CREATE DATABASE", old_db);
    admin("CREATE DATABASE", new_db);
    url_for(old_db, old_url, sizeof(old_url));
    url_for(new_db, new_url, sizeof(new_url));
    need(mkdir(tmpdir, 0700) == 0, "mkdir %s", tmpdir);

    /* old: the schema as the integer-cents code had it, then its data, then the head */
    char dir[128], src[1024], dst[256];
    snprintf(dir, sizeof(dir), "%s/m", tmpdir);
    need(mkdir(dir, 0700) == 0, "mkdir %s", dir);
    static const char *const old_files[] = {
        "0001_clock.sql", "0002_users_keys.sql", "0003_billing.sql", "0004_market_data.sql",
        "0007_stripe.sql", "0008_admin_audit.sql", "0009_meter_journal.sql",
        "0010_kb_us_inline.sql", "0011_import_checkpoints.sql"};
    for (size_t i = 0; i < sizeof(old_files) / sizeof(old_files[0]); i++) {
        snprintf(src, sizeof(src), "%s/db/migrations/%s", kbt_env("KB_REPO_ROOT"),
                 old_files[i]);
        snprintf(dst, sizeof(dst), "%s/%s", dir, old_files[i]);
        need(symlink(src, dst) == 0, "symlink %s", dst);
    }
    kbctl(old_url, (const char *[]){"migrate", "--dir", dir, NULL});
    PGconn *c = PQconnectdb(old_url);
    need(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    PGresult *r = PQexec(c, "SELECT kb_ensure_partitions('2026-01-13T00:00:00+00:00',"
                            " '2026-01-16T00:00:00+00:00')");
    need(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    psql_file(old_url, FIXTURE "old-demo.sql");
    kbctl(old_url, (const char *[]){"migrate", NULL});

    /* new: today's importer on the same demo set */
    kbctl(new_url, (const char *[]){"migrate", NULL});
    size_t n;
    char *args = slurp(FIXTURE "demo-args", &n);
    char *nl = strchr(args, '\n');
    need(nl != NULL && strlen(nl + 1) >= 32, "bad " FIXTURE "demo-args");
    *nl = '\0';
    char *want_md5 = nl + 1;
    want_md5[32] = '\0';
    char file[128], cmd[2048];
    snprintf(file, sizeof(file), "%s/demo.jsonl", tmpdir);
    snprintf(cmd, sizeof(cmd), "'%s/kbctl' demo-data %s --fp-markets 0 --out %s",
             kbt_env("KB_BIN_DIR"), args, file);
    need(system(cmd) == 0, "%s", cmd);
    char *demo = slurp(file, &n), got_md5[33];
    md5_hex(demo, n, got_md5);
    need(strcmp(got_md5, want_md5) == 0,
         "kbctl demo-data %s no longer writes the legacy bytes the fixture was made from "
         "(md5 %s, fixture %s)",
         args, got_md5, want_md5);
    free(demo);
    free(args);
    kbctl(new_url, (const char *[]){"import", "--quiet", "--checkpoint-every", "10", file, NULL});
    load_answers();
}

static void
teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "unable to remove %s\n", tmpdir);
    PGconn *c = PQconnectdb(kbt_env("KB_DATABASE_URL"));
    for (int i = 0; i < 2; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", i ? new_db : old_db);
        PQclear(PQexec(c, sql));
    }
    PQfinish(c);
}

/* ---- asking a database ---- */

static const char *
arg(const answer *x, int i)
{
    const cJSON *a = cJSON_GetArrayItem(x->req, i);
    return cJSON_IsString(a) ? a->valuestring : NULL;
}

static int64_t
num(const answer *x, int i)
{
    return (int64_t)cJSON_GetArrayItem(x->req, i)->valuedouble;
}

static int64_t
instant(const char *s)
{
    int64_t us;
    const char *why;
    ck_assert_msg(kb_time_parse(s, strlen(s), false, &us, &why), "%s: %s", s, why);
    return us;
}

/* A whole catalogue list (no parameter: GET /markets, GET /events) as the streamed
 * answer writes it, piece by piece (lib/kb_catalog.h). */
static kb_err
whole_list(kb_db *db, kb_arena *a, kb_catalog_list list, kb_jw *w)
{
    kb_catalog_query q = {.list = list};
    kb_catalog_stream *s;
    kb_err err = kb_catalog_open(db, a, &q, &s);
    if (err)
        return err;
    kb_jw_key(w, "data");
    kb_jw_arr(w);
    bool done = false;
    while (!done && (err = kb_catalog_next(s, w, &done)) == KB_OK) {
    }
    kb_catalog_close(s);
    kb_jw_arr_end(w);
    return err;
}

/*
 * The body the route would send for x's request, asked of url through libkb, without
 * request_id and response_time; *status its HTTP status. Caller frees.
 */
static char *
ask(kb_db *db_, const answer *x, long *status)
{
    kb_db *db = db_;
    kb_arena a;
    kb_arena_init(&a, 0);
    kb_buf b = KB_BUF_INIT;
    kb_jw w;
    kb_jw_init(&w, &b);
    kb_jw_obj(&w);
    const char *kind = arg(x, 0), *msg = NULL;
    kb_err err;
    if (strcmp(kind, "orderbook") == 0) {
        err = kb_book_orderbook(db, &a, arg(x, 1), instant(arg(x, 2)), (int)num(x, 3),
                                KB_BOOK_UNITS_DEFAULT, &w, &msg);
    } else if (strcmp(kind, "deltas") == 0 || strcmp(kind, "trades") == 0) {
        kb_cursor cur;
        const char *c = arg(x, 5);
        bool has = c != NULL && c[0] != '\0';
        ck_assert(!has || kb_cursor_decode(kb_str_c(c), &cur));
        err = (kind[0] == 'd' ? kb_book_deltas : kb_book_trades)(
            db, &a, arg(x, 1), instant(arg(x, 2)), instant(arg(x, 3)), has ? &cur : NULL,
            (int)num(x, 4), &w);
    } else if (strcmp(kind, "candles") == 0) {
        err = kb_book_candles(db, &a, arg(x, 1), instant(arg(x, 2)), instant(arg(x, 3)),
                              kb_candle_interval(arg(x, 4)), &w);
    } else if (strcmp(kind, "markets") == 0) {
        err = whole_list(db, &a, KB_CATALOG_MARKETS, &w);
    } else if (strcmp(kind, "market") == 0) {
        err = kb_markets_get(db, &a, arg(x, 1), &w, &msg);
    } else if (strcmp(kind, "events") == 0) {
        err = whole_list(db, &a, KB_CATALOG_EVENTS, &w);
    } else if (strcmp(kind, "event") == 0) {
        err = kb_events_get(db, &a, arg(x, 1), &w, &msg);
    } else if (strcmp(kind, "settlements") == 0) {
        err = kb_settlements_list(db, &a, NULL, NULL, &w);
    } else {
        ck_assert_str_eq(kind, "settlement");
        err = kb_settlements_get(db, &a, arg(x, 1), &w, &msg);
    }
    kb_jw_obj_end(&w);
    *status = err == KB_OK ? 200 : kb_err_status(err);
    char *out;
    if (err == KB_OK) {
        out = kb_buf_detach(&b, NULL);
    } else {
        /* the envelope the dispatcher writes for a not-found answer */
        ck_assert_ptr_nonnull(msg);
        kb_buf e = KB_BUF_INIT;
        kb_jw_init(&w, &e);
        kb_jw_obj(&w);
        kb_jw_key(&w, "error");
        kb_jw_obj(&w);
        kb_jw_key(&w, "code");
        kb_jw_str(&w, kb_err_code(err));
        kb_jw_key(&w, "message");
        kb_jw_str(&w, msg);
        kb_jw_key(&w, "status");
        kb_jw_int(&w, kb_err_status(err));
        kb_jw_obj_end(&w);
        kb_jw_obj_end(&w);
        out = kb_buf_detach(&e, NULL);
        kb_buf_release(&b);
    }
    kb_arena_release(&a);
    return out;
}

/* Length of the JSON value at p (compact text as kb_jw writes it). */
static size_t
value_len(const char *p)
{
    const char *q = p;
    int depth = 0;
    for (;;) {
        if (*q == '"') {
            for (q++; *q != '"'; q++) {
                ck_assert(*q != '\0');
                if (*q == '\\')
                    q++;
            }
            q++;
        } else if (*q == '[' || *q == '{') {
            depth++;
            q++;
        } else if (*q == ']' || *q == '}') {
            ck_assert(depth > 0);
            depth--;
            q++;
        } else if (depth > 0) {
            ck_assert(*q != '\0');
            q++;
        } else {
            while (*q != ',' && *q != ']' && *q != '}' && *q != '\0')
                q++;
        }
        if (depth == 0)
            return (size_t)(q - p);
    }
}

/* The answer as the code before 0012 wrote it: the fields it added after the original ones
 * removed (they are only ever appended, so what remains must be the old text exactly). */
static char *
without_new_fields(const char *body)
{
    static const char *const added[] = {
        "price_dollars", "quantity_fp", "delta_fp", "received_at", "yes_price_dollars",
        "no_price_dollars", "count_fp", "open_dollars", "high_dollars", "low_dollars",
        "close_dollars", "volume_fp", "settlement_value_dollars", "price_level_structure",
        "price_ranges", "fractional_trading_enabled", "complete", "gap"};
    kb_buf b = KB_BUF_INIT;
    const char *p = body;
    while (*p) {
        bool cut = false;
        for (size_t i = 0; !cut && *p == ',' && i < sizeof(added) / sizeof(added[0]); i++) {
            size_t kl = strlen(added[i]);
            if (p[1] == '"' && strncmp(p + 2, added[i], kl) == 0 && p[2 + kl] == '"' &&
                p[3 + kl] == ':') {
                p += 4 + kl;
                p += value_len(p);
                cut = true;
            }
        }
        if (!cut)
            kb_buf_putc(&b, *p++);
    }
    return kb_buf_detach(&b, NULL);
}

/* The recorded text with metadata's "ts" member removed (0014 drops it on purpose). */
static char *
without_metadata_ts(const char *body)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_puts(&b, body);
    char *m = strstr(b.buf, "\"metadata\":{");
    char *t = m ? strstr(m, "\"ts\": ") : NULL;
    if (t != NULL) {
        char *e = t + 6;
        while (*e >= '0' && *e <= '9')
            e++;
        if (e[0] == ',' && e[1] == ' ')
            e += 2;
        else if (t[-2] == ',' && t[-1] == ' ')
            t -= 2;
        memmove(t, e, strlen(e) + 1);
        b.len = strlen(b.buf);
    }
    return kb_buf_detach(&b, NULL);
}

static void
connect_to(kb_db *db, const char *url)
{
    kb_db_init(db, url, "test-migration", 5, 0);
    ck_assert_int_eq(kb_db_connect(db), KB_OK);
}

/* One recorded request against both databases. */
static void
check_answer(kb_db *old, kb_db *imp, const answer *x)
{
    char *req = cJSON_PrintUnformatted(x->req);
    long st_old, st_new;
    char *got_old = ask(old, x, &st_old), *got_new = ask(imp, x, &st_new);
    ck_assert_msg(st_old == x->status, "%s: status %ld, recorded %ld", req, st_old, x->status);
    char *want = strcmp(arg(x, 0), "market") == 0 ? without_metadata_ts(x->body)
                                                  : strdup(x->body);
    char *old_text = without_new_fields(got_old);
    ck_assert_msg(strcmp(old_text, want) == 0, "%s:\n migrated: %s\n recorded: %s", req,
                  old_text, want);
    /* the same data imported by today's kbctl answers exactly the same, new fields included */
    ck_assert_msg(st_new == st_old && strcmp(got_new, got_old) == 0,
                  "%s:\n migrated: %s\n imported: %s", req, got_old, got_new);
    free(want);
    free(old_text);
    free(got_old);
    free(got_new);
    free(req);
}

/* Every recorded request, in file order (one connection per database, as a worker holds). */
START_TEST(migrated_database_gives_the_recorded_answers)
{
    kb_db old, imp;
    connect_to(&old, old_url);
    connect_to(&imp, new_url);
    for (int i = 0; i < nanswers; i++)
        check_answer(&old, &imp, &answers[i]);
    kb_db_release(&old);
    kb_db_release(&imp);
}
END_TEST

/* Table by table, the migrated rows equal the rows today's importer stores. */
START_TEST(migrated_rows_equal_a_fresh_import)
{
    static const char *const q[] = {
        "SELECT md5(string_agg(concat_ws('|', id, market_ticker, kb_us(ts), kb_us(received_at),"
        " seq, sid, price_e4, delta_e2, side), ',' ORDER BY id)), count(*) FROM deltas",
        "SELECT md5(string_agg(concat_ws('|', id, trade_id, market_ticker, yes_price_e4,"
        " no_price_e4, count_e2, taker_side, kb_us(ts), kb_us(received_at)), ','"
        " ORDER BY id)), count(*) FROM trades",
        "SELECT md5(string_agg(concat_ws('|', id, market_ticker, kb_us(captured_at), sid, seq,"
        " yes_levels::text, no_levels::text, source), ',' ORDER BY id)), count(*) FROM snapshots",
        "SELECT md5(string_agg(concat_ws('|', market_ticker, event_ticker, result,"
        " settlement_value_e4, kb_us(determined_at), kb_us(settled_at), source, metadata::text),"
        " ',' ORDER BY market_ticker)), count(*) FROM settlements",
        "SELECT md5(string_agg(concat_ws('|', ticker, title, event_ticker, status, category,"
        " rules, strike_price, kb_us(discovered_at), metadata::text, series_ticker,"
        " price_level_structure, price_ranges::text, fractional_trading_enabled), ','"
        " ORDER BY ticker)), count(*) FROM markets",
        "SELECT md5(string_agg(m::text, ',' ORDER BY ticker)), count(*) FROM market_stats m",
        "SELECT md5(string_agg(concat_ws('|', market_ticker, kb_us(basis), kb_us(at), deltas,"
        " (SELECT jsonb_agg(e ORDER BY e) FROM jsonb_array_elements(levels) e)::text), ','"
        " ORDER BY market_ticker, basis, at)), count(*) FROM book_checkpoints"};
    PGconn *o = PQconnectdb(old_url), *n = PQconnectdb(new_url);
    ck_assert(PQstatus(o) == CONNECTION_OK && PQstatus(n) == CONNECTION_OK);
    for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
        PGresult *a = PQexec(o, q[i]), *b = PQexec(n, q[i]);
        ck_assert_msg(PQresultStatus(a) == PGRES_TUPLES_OK, "%s", PQerrorMessage(o));
        ck_assert_msg(PQresultStatus(b) == PGRES_TUPLES_OK, "%s", PQerrorMessage(n));
        ck_assert_msg(strcmp(PQgetvalue(a, 0, 1), "0") != 0, "empty: %s", q[i]);
        ck_assert_msg(strcmp(PQgetvalue(a, 0, 0), PQgetvalue(b, 0, 0)) == 0 &&
                          strcmp(PQgetvalue(a, 0, 1), PQgetvalue(b, 0, 1)) == 0,
                      "%s: migrated %s rows %s, imported %s rows %s", q[i], PQgetvalue(a, 0, 1),
                      PQgetvalue(a, 0, 0), PQgetvalue(b, 0, 1), PQgetvalue(b, 0, 0));
        PQclear(a);
        PQclear(b);
    }
    PQfinish(o);
    PQfinish(n);
}
END_TEST

/* What 0012 did to the old rows: units x100, placeholder receive times gone, the new
 * constraints in force. */
START_TEST(migration_converts_units_and_drops_placeholder_receive_times)
{
    PGconn *o = PQconnectdb(old_url);
    ck_assert(PQstatus(o) == CONNECTION_OK);
    char *v = kbt_sql_value(o, "SELECT concat_ws(',', count(*), count(received_at),"
                               " bool_and(price_e4 % 100 = 0), bool_and(delta_e2 % 100 = 0),"
                               " min(price_e4) >= 100, max(price_e4) <= 9900) FROM deltas");
    ck_assert_str_eq(v, "1405,0,t,t,t,t");
    free(v);
    v = kbt_sql_value(o, "SELECT concat_ws(',', count(received_at), bool_and(count_e2 % 100 = 0),"
                         " bool_and(yes_price_e4 + no_price_e4 = 10000)) FROM trades");
    ck_assert_str_eq(v, "0,t,t");
    free(v);
    v = kbt_sql_value(o, "SELECT string_agg(DISTINCT settlement_value_e4::text, ',')"
                         " FROM settlements");
    ck_assert_str_eq(v, "0"); /* the demo's settled markets all resolved no */
    free(v);
    v = kbt_sql_value(o, "SELECT count(*) FROM markets WHERE metadata ? 'ts'");
    ck_assert_str_eq(v, "0");
    free(v);
    PGresult *r = PQexec(o, "INSERT INTO deltas (market_ticker, ts, seq, price_e4, delta_e2, side)"
                            " VALUES ('X', '2026-01-14T01:00:00Z', 1, 10000, 100, 'yes')");
    ck_assert_str_eq(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514"); /* check_violation */
    PQclear(r);
    PQfinish(o);
}
END_TEST

int
main(void)
{
    kbt_init();
    setup();
    Suite *s = suite_create("data_migration");
    TCase *tc = tcase_create("migration");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, migrated_database_gives_the_recorded_answers);
    tcase_add_test(tc, migrated_rows_equal_a_fresh_import);
    tcase_add_test(tc, migration_converts_units_and_drops_placeholder_receive_times);
    suite_add_tcase(s, tc);
    int rc = kb_check_run(s);
    teardown();
    return rc;
}
