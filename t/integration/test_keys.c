/* test_keys.c - /keys through nginx: lifecycle, usage sums, BOLA, PATCH order, malformed bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "kb_crypto.h"
#include "kbt.h"
#include "kb_banned.h"

#define PW "correct horse battery"

static char *
key_create(const char *token, const char *body, char **raw)
{
    kbt_resp *r = kbt_auth_json("POST", "/keys", token, body);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, kb_buf_cstr(&r->body));
    char *id = strdup(kbt_auth_str(r, "id"));
    kbt_secret_note(kbt_auth_str(r, "key"));
    if (raw != NULL)
        *raw = strdup(kbt_auth_str(r, "key"));
    kbt_resp_free(r);
    return id;
}

static const cJSON *
find_key(const kbt_resp *r, const char *id)
{
    const cJSON *k;
    cJSON_ArrayForEach(k, cJSON_GetObjectItem(r->json, "data")) {
        if (strcmp(cJSON_GetObjectItem(k, "id")->valuestring, id) == 0)
            return k;
    }
    return NULL;
}

START_TEST(key_lifecycle_create_list_patch_usage_revoke)
{
    char *email = kbt_auth_email("life"), *tok = NULL, *uid = NULL;
    kbt_auth_signup(email, PW, &tok, &uid);
    PGconn *db = kbt_db();

    /* Signup creates no key (API.md §7.17). */
    kbt_resp *r = kbt_auth_json("GET", "/keys", tok, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r->json, "data")), 0);
    kbt_resp_free(r);

    /* Create: the raw key once, in the documented shape. */
    r = kbt_auth_json("POST", "/keys", tok, "{}");
    ck_assert_int_eq(r->status, 200);
    const cJSON *d = cJSON_GetObjectItem(r->json, "data");
    const char *order[] = {"id", "key", "name", "key_prefix", "key_type", "created_at"};
    const cJSON *f = d->child;
    for (size_t i = 0; i < 6; i++, f = f->next)
        ck_assert_str_eq(f->string, order[i]);
    ck_assert_ptr_null(f);
    char *id = strdup(kbt_auth_str(r, "id"));
    char *raw = strdup(kbt_auth_str(r, "key"));
    kbt_secret_note(raw);
    ck_assert_uint_eq(strlen(raw), 46);
    ck_assert(strncmp(raw, "kb-", 3) == 0);
    ck_assert_str_eq(kbt_auth_str(r, "name"), "Default");
    ck_assert_str_eq(kbt_auth_str(r, "key_type"), "dev");
    ck_assert(strncmp(kbt_auth_str(r, "key_prefix"), raw, 7) == 0);
    ck_assert_uint_eq(strlen(kbt_auth_str(r, "created_at")), 32); /* ....ffffff+00:00 */
    kbt_assert_request_id(r);
    kbt_resp_free(r);

    /* Only the hash and prefix are stored. */
    char hash[65];
    kb_sha256_hex(raw, strlen(raw), hash);
    char *v = kbt_sqlp_value(db, "SELECT count(*) FROM api_keys WHERE key_hash = $1 AND id = $2", 2,
                             hash, id);
    ck_assert_str_eq(v, "1");
    free(v);
    v = kbt_sqlp_value(db,
                       "SELECT count(*) FROM api_keys"
                       " WHERE strpos(row_to_json(api_keys)::text, $1) > 0",
                       1, raw + 3);
    ck_assert_str_eq(v, "0");
    free(v);

    /* A second key; list is newest first with ApiKeyInfo fields. */
    char *id2 = key_create(tok, "{\"name\":\"ci\",\"key_type\":\"prod\"}", NULL);
    r = kbt_auth_json("GET", "/keys", tok, NULL);
    ck_assert_int_eq(r->status, 200);
    const cJSON *list = cJSON_GetObjectItem(r->json, "data");
    ck_assert_int_eq(cJSON_GetArraySize(list), 2);
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")->valuestring, id2);
    const char *info[] = {"id", "name", "key_prefix", "key_type", "created_at", "last_used_at"};
    f = cJSON_GetArrayItem(list, 1)->child;
    for (size_t i = 0; i < 6; i++, f = f->next)
        ck_assert_str_eq(f->string, info[i]);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 1), "last_used_at")));
    kbt_resp_free(r);

    /* PATCH one field, the other stays. */
    char path[128];
    snprintf(path, sizeof(path), "/keys/%s", id);
    r = kbt_auth_json("PATCH", path, tok, "{\"name\":\"renamed\",\"key_type\":null}");
    ck_assert_msg(r->status == 200, "%s", kb_buf_cstr(&r->body));
    ck_assert_str_eq(kbt_auth_str(r, "name"), "renamed");
    ck_assert_str_eq(kbt_auth_str(r, "key_type"), "dev");
    kbt_resp_free(r);
    r = kbt_auth_json("PATCH", path, tok, "{\"key_type\":\"prod\"}");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(kbt_auth_str(r, "name"), "renamed");
    ck_assert_str_eq(kbt_auth_str(r, "key_type"), "prod");
    kbt_resp_free(r);

    /* Usage: counter rows as the meter writes them (per key, cycle and route), plus a
     * row of the previous cycle that must not count. */
    kbt_sqlp_ok(db,
                "INSERT INTO billing_accounts (user_id, billing_cycle_start) "
                "VALUES ($1, kb_cycle_month(kb_now()))",
                1, uid);
    kbt_sqlp_ok(db, "UPDATE api_keys SET last_used_at = now() WHERE id = $1", 1, id);
    kbt_sqlp_ok(db,
                "INSERT INTO api_key_usage (api_key_id, cycle_start, endpoint, credits_used, "
                "requests) VALUES ($1, kb_cycle_month(kb_now()), '/orderbook', 10, 2), "
                "($1, kb_cycle_month(kb_now()), '/markets', 5, 5), "
                "($1, kb_cycle_month(kb_now()) - interval '1 month', '/markets', 100, 100)",
                1, id);
    r = kbt_auth_json("GET", "/keys/usage", tok, NULL);
    ck_assert_int_eq(r->status, 200);
    const cJSON *k = find_key(r, id), *k2 = find_key(r, id2);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(cJSON_GetObjectItem(k, "credits_used")->valueint, 15);
    ck_assert_int_eq(cJSON_GetObjectItem(k2, "credits_used")->valueint, 0);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(k, "last_used_at")));
    ck_assert_str_eq(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r->json, "data"), 0), "id")
            ->valuestring,
        id2);
    kbt_resp_free(r);

    /* An account whose stored cycle start is last month (no metered call yet this
     * month) is read through the roll metering would apply: this month's rows (15),
     * not the stored cycle's (100). */
    kbt_sqlp_ok(db,
                "UPDATE billing_accounts SET billing_cycle_start = billing_cycle_start - interval "
                "'1 month' WHERE user_id = $1",
                1, uid);
    r = kbt_auth_json("GET", "/keys/usage", tok, NULL);
    ck_assert_int_eq(cJSON_GetObjectItem(find_key(r, id), "credits_used")->valueint, 15);
    kbt_resp_free(r);
    /* No billing account at all (a user who never made a metered call or opened
     * billing; an account row goes only with its user, migration 0028): 0. */
    char *email2 = kbt_auth_email("noacct"), *tok2 = NULL, *uid2 = NULL;
    kbt_auth_signup(email2, PW, &tok2, &uid2);
    r = kbt_auth_json("POST", "/keys", tok2, "{}");
    ck_assert_int_eq(r->status, 200);
    char *id3 = strdup(kbt_auth_str(r, "id"));
    kbt_resp_free(r);
    ck_assert_int_eq(
        kbt_sql_long1(db, "SELECT count(*) FROM billing_accounts WHERE user_id = $1", uid2), 0);
    r = kbt_auth_json("GET", "/keys/usage", tok2, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(cJSON_GetObjectItem(find_key(r, id3), "credits_used")->valueint, 0);
    kbt_resp_free(r);
    free(id3);
    free(email2);
    free(tok2);
    free(uid2);

    /* Revoke: soft, gone from lists, and refused by the meter at once. */
    r = kbt_auth_json("DELETE", path, tok, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert(cJSON_IsString(cJSON_GetObjectItem(r->json, "message")));
    kbt_assert_request_id(r);
    kbt_resp_free(r);
    v = kbt_sqlp_value(db, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", 1, id);
    ck_assert_str_eq(v, "t");
    free(v);
    v = kbt_sqlp_value(db, "SELECT (kb_meter_slow($1, 1, '/markets')).outcome", 1, hash);
    ck_assert_str_eq(v, "invalid_key");
    free(v);
    r = kbt_auth_json("GET", "/keys", tok, NULL);
    ck_assert_ptr_null(find_key(r, id));
    ck_assert_ptr_nonnull(find_key(r, id2));
    kbt_resp_free(r);
    const char *again[][2] = {{"DELETE", NULL}, {"PATCH", "{\"name\":\"x\"}"}};
    for (int i = 0; i < 2; i++) {
        r = kbt_auth_json(again[i][0], path, tok, again[i][1]);
        kbt_assert_envelope(r, 404, "key_not_found");
        kbt_resp_free(r);
    }
    PQfinish(db);
    free(email);
    free(tok);
    free(uid);
    free(id);
    free(id2);
    free(raw);
}
END_TEST

START_TEST(reveal_is_always_key_not_found)
{
    char *email = kbt_auth_email("reveal"), *tok = NULL;
    kbt_auth_signup(email, PW, &tok, NULL);
    char *id = key_create(tok, "{\"name\":\"mine\"}", NULL);
    char path[128];
    snprintf(path, sizeof(path), "/keys/%s/reveal", id);
    kbt_resp *r = kbt_auth_json("GET", path, tok, NULL);
    kbt_assert_envelope(r, 404, "key_not_found");
    kbt_resp_free(r);
    r = kbt_auth_json("GET", path, NULL, NULL);
    kbt_assert_envelope(r, 401, "invalid_api_key");
    kbt_resp_free(r);
    free(email);
    free(tok);
    free(id);
}
END_TEST

START_TEST(bola_no_user_sees_or_touches_another_users_key)
{
    char *ea = kbt_auth_email("bola-a"), *eb = kbt_auth_email("bola-b");
    char *ta = NULL, *tb = NULL;
    kbt_auth_signup(ea, PW, &ta, NULL);
    kbt_auth_signup(eb, PW, &tb, NULL);
    char *id = key_create(ta, "{\"name\":\"a-key\"}", NULL);
    char p1[128], p2[128];
    snprintf(p1, sizeof(p1), "/keys/%s", id);
    snprintf(p2, sizeof(p2), "/keys/%s/reveal", id);
    struct {
        const char *method, *path, *body;
    } tries[] = {
        {"PATCH", p1, "{\"name\":\"pwned\"}"},
        {"PATCH", p1, "{\"key_type\":\"prod\"}"},
        {"DELETE", p1, NULL},
        {"GET", p2, NULL},
    };
    for (size_t i = 0; i < 4; i++) {
        kbt_resp *r = kbt_auth_json(tries[i].method, tries[i].path, tb, tries[i].body);
        kbt_assert_envelope(r, 404, "key_not_found");
        kbt_resp_free(r);
    }
    const char *lists[] = {"/keys", "/keys/usage"};
    for (size_t i = 0; i < 2; i++) {
        kbt_resp *r = kbt_auth_json("GET", lists[i], tb, NULL);
        ck_assert_int_eq(r->status, 200);
        ck_assert_ptr_null(find_key(r, id));
        kbt_resp_free(r);
        r = kbt_auth_json("GET", lists[i], ta, NULL);
        const cJSON *k = find_key(r, id);
        ck_assert_ptr_nonnull(k);
        ck_assert_str_eq(cJSON_GetObjectItem(k, "name")->valuestring, "a-key");
        ck_assert_str_eq(cJSON_GetObjectItem(k, "key_type")->valuestring, "dev");
        kbt_resp_free(r);
    }
    PGconn *db = kbt_db();
    char *v = kbt_sqlp_value(db,
                             "SELECT revoked_at IS NULL AND name = 'a-key' FROM api_keys "
                             "WHERE id = $1",
                             1, id);
    ck_assert_str_eq(v, "t");
    free(v);
    PQfinish(db);
    free(ea);
    free(eb);
    free(ta);
    free(tb);
    free(id);
}
END_TEST

START_TEST(patch_checks_run_in_documented_order)
{
    char *email = kbt_auth_email("order"), *tok = NULL;
    kbt_auth_signup(email, PW, &tok, NULL);
    const char *missing = "/keys/00000000-0000-4000-8000-000000000000";
    struct {
        const char *path, *body;
        long status;
        const char *code;
    } cases[] = {
        {missing, "{}", 400, "no_fields"},
        {missing, "{\"name\":null,\"key_type\":null}", 400, "no_fields"},
        {missing, "{\"key_type\":\"staging\"}", 400, "invalid_key_type"},
        {missing, "{\"key_type\":\"\"}", 400, "invalid_key_type"},
        {missing, "{\"key_type\":\"DEV\"}", 400, "invalid_key_type"},
        {"/keys/not-a-uuid", "{\"key_type\":\"bad\"}", 400, "invalid_key_type"},
        {"/keys/not-a-uuid", "{\"name\":\"x\"}", 404, "key_not_found"},
        {"/keys/usage", "{\"name\":\"x\"}", 404, "key_not_found"},
        {missing, "{\"name\":\"x\"}", 404, "key_not_found"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kbt_resp *r = kbt_auth_json("PATCH", cases[i].path, tok, cases[i].body);
        kbt_assert_envelope(r, cases[i].status, cases[i].code);
        kbt_resp_free(r);
    }
    const char *gone[] = {"/keys/usage", "/keys/not-a-uuid", "/keys/%30",
                          "/keys/00000000-0000-4000-8000-000000000000"};
    for (size_t i = 0; i < 4; i++) {
        kbt_resp *r = kbt_auth_json("DELETE", gone[i], tok, NULL);
        kbt_assert_envelope(r, 404, "key_not_found");
        kbt_resp_free(r);
    }
    free(email);
    free(tok);
}
END_TEST

/* ---- malformed bodies: every one answers its exact status and code ---- */

typedef struct mcase {
    const char *method, *path;
    const char *ct;   /* Content-Type line; NULL = application/json, "" = none */
    const char *body; /* NULL = no body */
    long status;
    const char *code;
    const char *msg; /* substring of error.message, or NULL */
} mcase;

#define KP "/keys/00000000-0000-4000-8000-000000000000"
#define J NULL

static const mcase malformed[] = {
    /* POST /auth/signup */
    {"POST", "/auth/signup", J, NULL, 422, "validation_error", "body: Field required"},
    {"POST", "/auth/signup", J, "", 422, "validation_error", "body: Field required"},
    {"POST", "/auth/signup", J, "{", 422, "validation_error", "JSON decode error"},
    {"POST", "/auth/signup", J, "[]", 422, "validation_error", "valid dictionary"},
    {"POST", "/auth/signup", J, "\"x\"", 422, "validation_error", "valid dictionary"},
    {"POST", "/auth/signup", J, "null", 422, "validation_error", "valid dictionary"},
    {"POST", "/auth/signup", J, "{}", 422, "validation_error",
     "body.email: Field required; body.password: Field required"},
    {"POST", "/auth/signup", J, "{\"email\":null,\"password\":\"12345678\"}", 422,
     "validation_error", "body.email: Input should be a valid string"},
    {"POST", "/auth/signup", J, "{\"email\":5,\"password\":\"12345678\"}", 422, "validation_error",
     "body.email: Input should be a valid string"},
    {"POST", "/auth/signup", J, "{\"email\":\"a@b.c\",\"password\":12345678}", 422,
     "validation_error", "body.password: Input should be a valid string"},
    {"POST", "/auth/signup", J, "{\"email\":\"a@b.c\",\"password\":[\"x\"]}", 422,
     "validation_error", "body.password"},
    {"POST", "/auth/signup", J, "{\"email\":\"a@b.c\",\"password\":\"short\"}", 422,
     "weak_password", NULL},
    {"POST", "/auth/signup", J, "{\"email\":\"\",\"password\":\"12345678\"}", 400, "signup_failed",
     NULL},
    {"POST", "/auth/signup", J, "{\"email\":\"a@b.c\",\"password\":\"1234567\xff\"}", 422,
     "validation_error", "invalid UTF-8"},
    {"POST", "/auth/signup", J, "{\"email\":\"a@b.c\",\"email\":\"d@e.f\",\"password\":\"x\"}", 422,
     "validation_error", "duplicate key"},
    {"POST", "/auth/signup", "Content-Type: text/plain", "{\"email\":\"a\",\"password\":\"b\"}",
     422, "validation_error", "Content-Type"},
    {"POST", "/auth/signup", "Content-Type: application/x-www-form-urlencoded",
     "email=a&password=b", 422, "validation_error", NULL},
    /* POST /auth/login */
    {"POST", "/auth/login", J, NULL, 422, "validation_error", "body: Field required"},
    {"POST", "/auth/login", J, "{\"email\":\"a@b.c\"}", 422, "validation_error",
     "body.password: Field required"},
    {"POST", "/auth/login", J, "{\"email\":\"a@b.c\",\"password\":true}", 422, "validation_error",
     "body.password: Input should be a valid string"},
    {"POST", "/auth/login", J, "{\"email\":\"a@b.c\",\"password\":\"x\\u0000y\"}", 422,
     "validation_error", "NUL"},
    {"POST", "/auth/login", J, "{\"email\":\"a@b.c\",\"password\":\"\\ud800\"}", 422,
     "validation_error", "surrogate"},
    {"POST", "/auth/login", J, "{\"email\":\"a@b.c\",\"password\":\"x\"} trailing", 422,
     "validation_error", "extra data"},
    {"POST", "/auth/login", J, "{'email':'a'}", 422, "validation_error", "JSON decode error"},
    {"POST", "/auth/login", "", "{\"email\":\"nobody@x.y\",\"password\":\"whatever1\"}", 401,
     "invalid_credentials", NULL},
    {"POST", "/auth/login", "Content-Type: application/vnd.kb+json",
     "{\"email\":\"nobody@x.y\",\"password\":\"whatever1\"}", 401, "invalid_credentials", NULL},
    /* POST /keys (token added by the test) */
    {"POST", "/keys", J, NULL, 422, "validation_error", "body: Field required"},
    {"POST", "/keys", J, "[1]", 422, "validation_error", "valid dictionary"},
    {"POST", "/keys", J, "{\"name\":null}", 422, "validation_error",
     "body.name: Input should be a valid string"},
    {"POST", "/keys", J, "{\"name\":42}", 422, "validation_error", "body.name"},
    {"POST", "/keys", J, "{\"name\":{\"a\":1}}", 422, "validation_error", "body.name"},
    {"POST", "/keys", J, "{\"key_type\":\"staging\"}", 422, "validation_error",
     "body.key_type: Input should be 'dev' or 'prod'"},
    {"POST", "/keys", J, "{\"key_type\":null}", 422, "validation_error", "body.key_type"},
    {"POST", "/keys", J, "{\"key_type\":1}", 422, "validation_error", "body.key_type"},
    {"POST", "/keys", J, "{\"name\":1,\"key_type\":\"x\"}", 422, "validation_error",
     "body.name: Input should be a valid string; body.key_type"},
    {"POST", "/keys", J,
     "{\"name\":\"" /* 101 characters */
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
     "xxxxxxxxxxxxx\"}",
     422, "validation_error", "at most 100 characters"},
    {"POST", "/keys", J, "{\"name\":1e999}", 422, "validation_error", "body.name"},
    {"POST", "/keys", J, "{\"name\":\"a\",\"name\":\"b\"}", 422, "validation_error",
     "duplicate key"},
    {"POST", "/keys", J,
     "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", 422,
     "validation_error", "nested too deeply"},
    {"POST", "/keys", "Content-Type: text/html", "{}", 422, "validation_error", NULL},
    {"POST", "/keys", J, "{\"name\":\"\\x\"}", 422, "validation_error", "invalid escape"},
    {"POST", "/keys", J, "{\"name\":\"tab\there\"}", 422, "validation_error", "control"},
    /* PATCH /keys/{id} */
    {"PATCH", KP, J, NULL, 422, "validation_error", "body: Field required"},
    {"PATCH", KP, J, "{\"name\":5}", 422, "validation_error", "body.name"},
    {"PATCH", KP, J, "{\"key_type\":false}", 422, "validation_error", "body.key_type"},
    {"PATCH", KP, J, "{\"name\":[]}", 422, "validation_error", "body.name"},
    {"PATCH", KP, J, "{\"name\":\"ok\",}", 422, "validation_error", "JSON decode error"},
    {"PATCH", KP, J, "{\"x\":99999999999999999999999999999}", 400, "no_fields", NULL},
    {"PATCH", KP, J, "{\"x\":-}", 422, "validation_error", "invalid number"},
};

START_TEST(malformed_bodies_answer_exact_status_and_code)
{
    static char *tok;
    if (tok == NULL) {
        char *email = kbt_auth_email("malformed");
        kbt_auth_signup(email, PW, &tok, NULL);
        free(email);
    }
    const mcase *c = &malformed[_i];
    char auth[4096];
    const char *h[3] = {c->ct ? c->ct : "Content-Type: application/json", NULL, NULL};
    if (c->ct != NULL && c->ct[0] == '\0')
        h[0] = "Content-Type:"; /* curl: send no Content-Type at all */
    if (strncmp(c->path, "/keys", 5) == 0) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
        h[1] = auth;
    }
    kbt_resp *r = NULL;
    for (int i = 0; i < 100; i++) { /* a login may meet busy hash slots: retry 503 */
        kbt_resp_free(r);
        r = kbt_request(c->method, c->path, h, c->body, c->body ? strlen(c->body) : 0);
        if (r->status != 503)
            break;
    }
    kbt_assert_envelope(r, c->status, c->code);
    if (c->msg != NULL) {
        const char *m = cJSON_GetObjectItem(cJSON_GetObjectItem(r->json, "error"), "message")
                            ->valuestring;
        ck_assert_msg(strstr(m, c->msg) != NULL, "case %d: message '%s' lacks '%s'", _i, m, c->msg);
    }
    kbt_resp_free(r);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, key_lifecycle_create_list_patch_usage_revoke);
    tcase_add_test(tc, reveal_is_always_key_not_found);
    tcase_add_test(tc, bola_no_user_sees_or_touches_another_users_key);
    tcase_add_test(tc, patch_checks_run_in_documented_order);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("malformed");
    tcase_set_timeout(tm, 60);
    tcase_add_loop_test(tm, malformed_bodies_answer_exact_status_and_code, 0,
                        (int)(sizeof(malformed) / sizeof(malformed[0])));
    suite_add_tcase(s, tm);
    return kb_check_run(s);
}
