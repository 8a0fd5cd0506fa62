/* kb_stripe.h - the Stripe API client (DESIGN.md "Stripe client").
 *
 * One libcurl easy handle per worker (kb_worker.h), reused for every call
 * (keep-alive to STRIPE_API_BASE). Requests are form-encoded with Stripe's bracket notation
 * for nested parameters, carry the pinned Stripe-Version and, for POST, an
 * Idempotency-Key that is a pure function of the operation and its inputs,
 * so a retry (ours, or a second process doing the same thing) can never
 * create a second object. Network errors, 409, 429 and 5xx are retried a
 * bounded number of times with jittered exponential backoff, honouring
 * Stripe-Should-Retry. Stripe error objects become one log line (never the
 * key). The secret key never leaves this module except in the Authorization
 * header.
 */
#ifndef KB_STRIPE_H
#define KB_STRIPE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "kb_arena.h"
#include "kb_buf.h"
#include "kb_err.h"

typedef struct kb_worker kb_worker; /* kb_worker.h */

/* Pinned API version (README "Stripe setup" says why this one). */
#define KB_STRIPE_VERSION "2025-09-30.clover"

/* A form body under construction: "a=1&b%5Bc%5D=2". */
typedef struct kb_stripe_form {
    kb_buf body;
} kb_stripe_form;

/* Append key=value, both percent-encoded; key may use brackets: "metadata[x]". */
void kb_stripe_form_add(kb_stripe_form *f, const char *key, const char *value);

/* Same with a printf-formatted key: ("line_items[%d][price]", 0). */
void kb_stripe_form_addf(kb_stripe_form *f, const char *value, const char *keyfmt, ...)
    __attribute__((format(printf, 3, 4)));

void kb_stripe_form_release(kb_stripe_form *f);

/* What a call returned. json and the strings are arena-owned. */
typedef struct kb_stripe_res {
    long status; /* HTTP status of the last attempt, 0 when none completed */
    cJSON *json; /* parsed body (object), NULL when not JSON */
    const char *err_type, *err_code, *err_param, *err_message; /* from "error", or NULL */
    int attempts;
    bool replayed; /* the answer was a saved one (Idempotent-Replayed: true) */
} kb_stripe_res;

/* True when STRIPE_SECRET_KEY is configured. */
bool kb_stripe_configured(void);

/*
 * Call Stripe: method "GET", "POST" or "DELETE", path "/v1/customers", on w's
 * handle (w NULL: a handle for this call only).
 * form may be NULL; for GET/DELETE it becomes the query string. idem_key:
 * NULL derives one from method, path and body; otherwise used as given
 * (callers build "kb-<operation>-<inputs>", at most 255 chars).
 * Returns KB_OK for 2xx; KB_E_BILLING_NOT_CONFIGURED without a key;
 * KB_E_STRIPE otherwise (res says why; logged). res is always filled.
 */
kb_err kb_stripe_call(kb_worker *w, kb_arena *a, const char *method, const char *path,
                      const kb_stripe_form *form, const char *idem_key, kb_stripe_res *res);

/* String member of an object (NULL when missing or not a string). */
const char *kb_stripe_str(const cJSON *obj, const char *name);

/* Release w's curl handle (kb_worker_release() does). */
void kb_stripe_release(kb_worker *w);

#endif
