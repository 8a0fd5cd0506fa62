/* test_malformed_bytes.c - the generated malformed-bytes sweep: every route of the route
 * table (app/routes.c, linked in) x every string parameter its operation in
 * static/openapi.json declares (path segments, query values, JSON body members, and the
 * headers it reads: its credential, Stripe-Signature, the Content-Type of a JSON body) x a
 * set of byte sequences that are not UTF-8 (lone, truncated, overlong, surrogate, above
 * U+10FFFF), percent-escaped and raw in the request line, alone and inside a valid value.
 *
 * Each case gets its exact 4xx in the API.md envelope (a path parameter: the not-found code
 * its operation documents, as for an id that cannot exist), refused before the meter, and
 * the database is unchanged afterwards (t/integration/hostile.h:
 * credits, usage, outbox, users, keys, accounts, Stripe events). A route added to the table
 * is swept without editing this file: its path parameters from its pattern, the rest from
 * its operation in the spec (which t/docs requires for every public route).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "check_main.h"
#include "hostile.h"
#include "kb_banned.h"

/* ---- the malformed byte sequences ------------------------------------------------------ */

static const char *const bad_seqs[] = {
    "\xff",                 /* a byte that never occurs in UTF-8 */
    "\x80",                 /* a continuation byte alone */
    "\xe2\x82",             /* a 3-byte sequence cut short */
    "\xf0\x9f\x98",         /* a 4-byte sequence cut short */
    "\xc0\xaf",             /* overlong '/' */
    "\xe0\x80\xaf",         /* overlong '/', 3 bytes */
    "\xed\xa0\x80",         /* a UTF-16 surrogate (U+D800) */
    "\xf4\x90\x80\x80",     /* above U+10FFFF */
    "\xf8\x88\x80\x80\x80", /* a 5-byte form */
};
#define NSEQ (sizeof(bad_seqs) / sizeof(bad_seqs[0]))

/* JSON escapes that decode to no valid UTF-8 (or to NUL): bodies only. */
static const char *const bad_escapes[] = {"\\ud800", "\\udfff", "\\ud800\\u0041", "\\u0000"};
#define NESC (sizeof(bad_escapes) / sizeof(bad_escapes[0]))

/* ---- the spec -------------------------------------------------------------------------- */

static cJSON *spec;

static const cJSON *
deref(const cJSON *n)
{
    for (int hops = 0; hops < 8 && n != NULL; hops++) {
        const cJSON *ref = cJSON_GetObjectItemCaseSensitive(n, "$ref");
        if (!cJSON_IsString(ref) || strncmp(ref->valuestring, "#/", 2) != 0)
            return n;
        char *path = strdup(ref->valuestring + 2);
        const cJSON *at = spec;
        for (char *save = NULL, *part = strtok_r(path, "/", &save); part && at;
             part = strtok_r(NULL, "/", &save))
            at = cJSON_GetObjectItemCaseSensitive(at, part);
        free(path);
        n = at;
    }
    return n;
}

static void
load_spec(void)
{
    size_t len = 0;
    char *text = kbt_file_read("static/openapi.json", &len);
    ck_assert_msg(text != NULL, "cannot read static/openapi.json");
    spec = cJSON_ParseWithLength(text, len);
    free(text);
    ck_assert_msg(spec != NULL, "static/openapi.json is not JSON");
}

/* "/keys/{key_id}" and "/keys/{id}" are the same route. */
static bool
same_pattern(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a == '{' && *b == '{') {
            a = strchr(a, '}');
            b = strchr(b, '}');
            if (a == NULL || b == NULL)
                return false;
        } else if (*a != *b) {
            return false;
        }
        a++;
        b++;
    }
    return *a == *b;
}

/* The route's operation in the spec, NULL when it has none (operator-only routes). */
static const cJSON *
operation(const kb_route *r)
{
    char m[16];
    size_t i = 0;
    for (; r->method[i] && i < sizeof(m) - 1; i++)
        m[i] = (char)(r->method[i] - 'A' + 'a');
    m[i] = '\0';
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(spec, "paths"))
        if (same_pattern(item->string, r->pattern))
            return cJSON_GetObjectItemCaseSensitive(item, m);
    return NULL;
}

/* A valid value for a parameter: its example, its enum's first value, its default. */
static const char *
example_of(const cJSON *param)
{
    const cJSON *schema = deref(cJSON_GetObjectItemCaseSensitive(param, "schema"));
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(param, "example");
    if (!cJSON_IsString(ex))
        ex = cJSON_GetObjectItemCaseSensitive(schema, "example");
    if (!cJSON_IsString(ex))
        ex = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(schema, "enum"), 0);
    if (!cJSON_IsString(ex))
        ex = cJSON_GetObjectItemCaseSensitive(schema, "default");
    return cJSON_IsString(ex) ? ex->valuestring : "x";
}

/* The security scheme the operation names ("ApiKey", "UserToken", "StripeSignature"), or "". */
static const char *
security(const cJSON *op)
{
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(op, "security"), 0);
    return first != NULL && first->child != NULL ? first->child->string : "";
}

/* A valid body for the operation: its example (or first named example), else one built from
 * the schema's members. Caller deletes. */
static cJSON *
body_example(const cJSON *op, const cJSON **schema)
{
    const cJSON *rb = deref(cJSON_GetObjectItemCaseSensitive(op, "requestBody"));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(rb, "content"), "application/json");
    *schema = deref(cJSON_GetObjectItemCaseSensitive(c, "schema"));
    if (c == NULL)
        return NULL;
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(c, "example");
    if (ex == NULL) {
        const cJSON *exs = cJSON_GetObjectItemCaseSensitive(c, "examples");
        ex = exs ? cJSON_GetObjectItemCaseSensitive(exs->child, "value") : NULL;
    }
    if (cJSON_IsObject(ex))
        return cJSON_Duplicate(ex, true);
    /* every member the schema names, so that the swept one is the only thing wrong */
    cJSON *b = cJSON_CreateObject();
    const cJSON *prop;
    cJSON_ArrayForEach(prop, cJSON_GetObjectItemCaseSensitive(*schema, "properties")) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(deref(prop), "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "string";
        cJSON_AddItemToObject(b, prop->string,
                              strcmp(type, "object") == 0 ? cJSON_CreateObject()
                              : strcmp(type, "integer") == 0
                                  ? cJSON_CreateNumber((double)time(NULL))
                              : strcmp(type, "boolean") == 0 ? cJSON_CreateTrue()
                                                             : cJSON_CreateString("sweep"));
    }
    return b;
}

/* ---- one request ------------------------------------------------------------------------ */

/* Where the malformed value goes. */
typedef enum where { IN_PATH, IN_QUERY, IN_BODY, IN_HEADER } where;

typedef struct sweep_case {
    const kb_route *route;
    const cJSON *op;
    where where;
    const char *name;  /* the parameter (path/query/member name, or header name) */
    const char *value; /* its malformed value: raw bytes, or JSON text for IN_BODY */
    bool escaped;      /* IN_PATH/IN_QUERY: percent-escape the value (else raw bytes) */
} sweep_case;

static long routes_swept, params_swept[4];

static void
url_add(kb_buf *u, const char *s, bool escape)
{
    if (!escape) {
        kb_buf_puts(u, s);
        return;
    }
    char *e = curl_easy_escape(NULL, s, 0);
    ck_assert_ptr_nonnull(e);
    kb_buf_puts(u, e);
    curl_free(e);
}

/* The route's credential line, valid, for the case's body (a Stripe signature signs it). */
static void
credential(const sweep_case *c, const char *body, kb_buf *line)
{
    const char *sec = c->op ? security(c->op) : c->route->cost > 0 ? "ApiKey" : "";
    if (strcmp(sec, "ApiKey") == 0) {
        kb_buf_puts(line, bearer_key);
    } else if (strcmp(sec, "UserToken") == 0) {
        kb_buf_puts(line, bearer_a);
    } else if (strcmp(sec, "StripeSignature") == 0) {
        char *sig = kbt_stripe_sign(kbt_env("STRIPE_WEBHOOK_SECRET"), (long)time(NULL), body);
        kb_buf_printf(line, "Stripe-Signature: %s", sig);
        free(sig);
    }
}

/* Is query/header parameter p of the operation a timestamp (API.md §7.10: 400)? */
static bool
is_timestamp(const cJSON *p)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "schema");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    return cJSON_IsString(ref) && strstr(ref->valuestring, "/TimestampInput") != NULL;
}

/* What a path parameter that cannot name anything answers (API.md, static/openapi.json): the
 * not-found code the operation documents for 404, else 422 validation_error (a schema problem
 * of the parameter); a route without an operation, 404 not_found. */
static const char *
path_miss(const cJSON *op, long *status)
{
    *status = 404;
    if (op == NULL)
        return "not_found";
    const cJSON *r404 = deref(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(op, "responses"), "404"));
    const cJSON *schema = deref(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r404, "content"),
                                         "application/json"),
        "schema"));
    const cJSON *codes = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(schema, "properties"), "error"),
                "properties"),
            "code"),
        "enum");
    const cJSON *first = cJSON_GetArrayItem(codes, 0);
    if (cJSON_IsString(first))
        return first->valuestring;
    *status = 422;
    return "validation_error";
}

static void
send_sweep(const sweep_case *c)
{
    const kb_route *r = c->route;
    kb_buf path = KB_BUF_INIT, body = KB_BUF_INIT, cred = KB_BUF_INIT, hdr = KB_BUF_INIT;
    long want = 0;
    const char *code = NULL;

    const cJSON *params = c->op ? cJSON_GetObjectItemCaseSensitive(c->op, "parameters") : NULL;

    /* The path: every {param} gets a valid value (a real key id for key routes). */
    for (const char *p = r->pattern; *p;) {
        if (*p != '{') {
            kb_buf_putc(&path, *p++);
            continue;
        }
        const char *end = strchr(p, '}');
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
        if (c->where == IN_PATH && strcmp(name, c->name) == 0) {
            url_add(&path, c->value, c->escaped);
        } else {
            const char *v = strcmp(name, "key_id") == 0 ? key_a_id : "KXSWEEP-26JAN15";
            const cJSON *param;
            cJSON_ArrayForEach(param, params) {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(deref(param), "name");
                if (strcmp(name, "key_id") != 0 && cJSON_IsString(nm) &&
                    strcmp(nm->valuestring, name) == 0)
                    v = example_of(deref(param));
            }
            url_add(&path, v, true);
        }
        p = end + 1;
    }

    /* The query: the required parameters, valid, and the swept one. */
    const cJSON *param;
    char sep = '?';
    cJSON_ArrayForEach(param, params) {
        const cJSON *p = deref(param);
        const char *in = cJSON_GetObjectItemCaseSensitive(p, "in")->valuestring;
        const char *nm = cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring;
        bool swept = c->where == IN_QUERY && strcmp(nm, c->name) == 0;
        if (strcmp(in, "query") != 0 ||
            !(swept || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "required"))))
            continue;
        kb_buf_printf(&path, "%c%s=", sep, nm);
        sep = '&';
        url_add(&path, swept ? c->value : example_of(p), swept ? c->escaped : true);
        if (swept) {
            want = is_timestamp(p) ? 400 : 422;
            code = is_timestamp(p) ? "invalid_timestamp" : "validation_error";
        }
    }

    /* The body: the operation's example with the swept member replaced. */
    const cJSON *schema = NULL;
    cJSON *b = c->op ? body_example(c->op, &schema) : NULL;
    bool has_body = b != NULL;
    if (b != NULL) {
        if (c->where == IN_BODY) {
            cJSON_DeleteItemFromObjectCaseSensitive(b, c->name);
            cJSON_AddStringToObject(b, c->name, "@@SWEEP@@");
        }
        /* the placeholder, quotes and all, becomes the value's JSON text */
        char *text = cJSON_PrintUnformatted(b);
        const char *at = strstr(text, "\"@@SWEEP@@\"");
        if (c->where == IN_BODY && at != NULL) {
            kb_buf_append(&body, text, (size_t)(at - text));
            kb_buf_puts(&body, c->value);
            kb_buf_puts(&body, at + strlen("\"@@SWEEP@@\""));
        } else {
            kb_buf_puts(&body, text);
        }
        free(text);
        cJSON_Delete(b);
    }
    bool stripe = c->op != NULL && strcmp(security(c->op), "StripeSignature") == 0;
    if (c->where == IN_BODY) {
        want = stripe ? 400 : 422;
        code = stripe ? "invalid_payload" : "validation_error";
    }

    /* Headers: the credential (signed over the body), and the swept one. */
    credential(c, kb_buf_cstr(&body), &cred);
    const char *ctype = has_body ? NULL : "";
    if (c->where == IN_HEADER) {
        kb_buf_printf(&hdr, "%s: %s", c->name, c->value);
        if (strcmp(c->name, "Content-Type") == 0) {
            ctype = c->value;
            want = 422;
            code = "validation_error";
        } else {
            kb_buf_reset(&cred);
            kb_buf_puts(&cred, kb_buf_cstr(&hdr));
            bool sig = strcmp(c->name, "Stripe-Signature") == 0;
            want = sig ? 400 : 401;
            code = sig ? "invalid_signature" : "invalid_api_key";
        }
    }
    if (c->where == IN_PATH) /* the operation's own 404 (an id that cannot exist), else 422 */
        code = path_miss(c->op, &want);

    static const char *const cls[] = {"path", "query", "body", "header"};
    send_case(cls[c->where], r->method, kb_buf_cstr(&path), cred.len ? kb_buf_cstr(&cred) : NULL,
              ctype, body.len ? kb_buf_cstr(&body) : NULL, (long)body.len, want, code);
    kb_buf_release(&path);
    kb_buf_release(&body);
    kb_buf_release(&cred);
    kb_buf_release(&hdr);
}

/* ---- the sweep ------------------------------------------------------------------------- */

/* Each malformed sequence alone and inside a valid value, escaped and raw where it is a URL. */
static void
sweep_param(sweep_case *c, const char *valid)
{
    char v[256];
    params_swept[c->where]++;
    for (size_t s = 0; s < NSEQ; s++) {
        for (int inside = 0; inside < 2; inside++) {
            snprintf(v, sizeof(v), "%s%s", inside ? valid : "", bad_seqs[s]);
            c->value = v;
            if (c->where == IN_PATH || c->where == IN_QUERY) {
                c->escaped = true;
                send_sweep(c);
                c->escaped = false;
            }
            /* JSON bodies carry the raw bytes inside a string */
            if (c->where == IN_BODY)
                snprintf(v, sizeof(v), "\"%s%s\"", inside ? "KX" : "", bad_seqs[s]);
            send_sweep(c);
        }
    }
    if (c->where != IN_BODY)
        return;
    for (size_t e = 0; e < NESC; e++) {
        snprintf(v, sizeof(v), "\"%s\"", bad_escapes[e]);
        c->value = v;
        send_sweep(c);
    }
}

static void
sweep_route(const kb_route *r)
{
    sweep_case c = {.route = r, .op = operation(r)};
    routes_swept++;

    /* path parameters, from the pattern itself */
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(strchr(p, '}') - p - 1), p + 1);
        c.where = IN_PATH;
        c.name = name;
        sweep_param(&c, "KXSWEEP");
    }
    if (c.op == NULL)
        return;

    /* query and header parameters the operation declares */
    const cJSON *param;
    cJSON_ArrayForEach(param, cJSON_GetObjectItemCaseSensitive(c.op, "parameters")) {
        const cJSON *p = deref(param);
        const char *in = cJSON_GetObjectItemCaseSensitive(p, "in")->valuestring;
        c.name = cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring;
        if (strcmp(in, "query") == 0)
            c.where = IN_QUERY;
        else if (strcmp(in, "header") == 0)
            c.where = IN_HEADER;
        else
            continue;
        sweep_param(&c, c.where == IN_HEADER ? "t=1,v1=00" : example_of(p));
    }

    /* its credential, unless a header parameter already carries it (Stripe-Signature) */
    const char *sec = security(c.op);
    if (strcmp(sec, "ApiKey") == 0 || strcmp(sec, "UserToken") == 0) {
        c.where = IN_HEADER;
        c.name = "Authorization";
        sweep_param(&c, strcmp(sec, "ApiKey") == 0 ? bearer_key + strlen("Authorization: ")
                                                   : bearer_a + strlen("Authorization: "));
    }

    /* the JSON body's members, and its Content-Type (the webhook reads raw bytes, any type) */
    const cJSON *schema = NULL;
    cJSON *b = body_example(c.op, &schema);
    if (b == NULL)
        return;
    cJSON_Delete(b);
    const cJSON *prop;
    cJSON_ArrayForEach(prop, cJSON_GetObjectItemCaseSensitive(schema, "properties")) {
        c.where = IN_BODY;
        c.name = prop->string;
        sweep_param(&c, "");
    }
    if (strcmp(sec, "StripeSignature") != 0) {
        c.where = IN_HEADER;
        c.name = "Content-Type";
        sweep_param(&c, "application/json");
    }
}

static void
sweep_all(void)
{
    for (size_t i = 0; i < kb_nroutes; i++)
        sweep_route(&kb_routes[i]);
}

START_TEST(malformed_bytes_in_every_parameter_are_4xx_and_uncharged)
{
    load_spec();
    T.before_meter = true;
    /* Each case's exact code is already the one its operation documents (path_miss, the
     * kinds above); a sample of whole answers through the spec checker is enough. */
    T.sample_every = 150;
    hostile_run("malformed bytes", sweep_all, 1000, 10);
    fprintf(stderr,
            "malformed bytes: %ld routes; parameters swept: %ld path, %ld query, %ld body, "
            "%ld header\n",
            routes_swept, params_swept[IN_PATH], params_swept[IN_QUERY], params_swept[IN_BODY],
            params_swept[IN_HEADER]);
    /* the sweep follows the table: every route, and each kind of parameter somewhere */
    ck_assert_int_eq(routes_swept, (long)kb_nroutes);
    for (int w = 0; w < 4; w++)
        ck_assert_int_gt(params_swept[w], 0);
    cJSON_Delete(spec);
}
END_TEST

int
main(void)
{
    kbt_init();
    Suite *s = suite_create("malformed_bytes");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, malformed_bytes_in_every_parameter_are_4xx_and_uncharged);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
