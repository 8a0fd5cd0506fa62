/* kb_err.h - the one error type of libkb and its mapping to the wire.
 *
 * KB_ERR_MAP is the single table: each entry yields an enum value, the HTTP
 * status it answers with and the API.md error code. KB_OK is 0, so
 * `if (err)` reads naturally. Functions record client-facing detail with
 * kb_fail() (kb_http.h) and return the code.
 */
#ifndef KB_ERR_H
#define KB_ERR_H

/* X(name, http status, API.md code) */
#define KB_ERR_MAP(X)                                                                              \
    X(OK, 200, "ok")                                                                               \
    X(E_INVALID_API_KEY, 401, "invalid_api_key")                                                   \
    X(E_INVALID_AUTH_METHOD, 401, "invalid_auth_method")                                           \
    X(E_INVALID_CREDENTIALS, 401, "invalid_credentials")                                           \
    X(E_USER_EXISTS, 409, "user_already_exists")                                                   \
    X(E_WEAK_PASSWORD, 422, "weak_password")                                                       \
    X(E_SIGNUP_FAILED, 400, "signup_failed")                                                       \
    X(E_VALIDATION, 422, "validation_error")                                                       \
    X(E_INVALID_TIMESTAMP, 400, "invalid_timestamp")                                               \
    X(E_MARKET_NOT_FOUND, 404, "market_not_found")                                                 \
    X(E_NO_DATA, 404, "no_data_available")                                                         \
    X(E_EVENT_NOT_FOUND, 404, "event_not_found")                                                   \
    X(E_SETTLEMENT_NOT_FOUND, 404, "settlement_not_found")                                         \
    X(E_KEY_NOT_FOUND, 404, "key_not_found")                                                       \
    X(E_NO_FIELDS, 400, "no_fields")                                                               \
    X(E_INVALID_KEY_TYPE, 400, "invalid_key_type")                                                 \
    X(E_CREDITS_EXHAUSTED, 429, "credits_exhausted")                                               \
    X(E_RATE_LIMITED, 429, "rate_limit_exceeded")                                                  \
    X(E_NO_BILLING_ACCOUNT, 400, "no_billing_account")                                             \
    X(E_STRIPE, 502, "stripe_error")                                                               \
    X(E_INVALID_SIGNATURE, 400, "invalid_signature")                                               \
    X(E_INVALID_PAYLOAD, 400, "invalid_payload")                                                   \
    X(E_NOT_FOUND, 404, "not_found")                                                               \
    X(E_METHOD_NOT_ALLOWED, 405, "method_not_allowed")                                             \
    X(E_PAYLOAD_TOO_LARGE, 413, "payload_too_large")                                               \
    X(E_ALREADY_SUBSCRIBED, 409, "already_subscribed")                                             \
    X(E_BILLING_NOT_CONFIGURED, 503, "billing_not_configured")                                     \
    X(E_UNAVAILABLE, 503, "service_unavailable")                                                   \
    X(E_INTERNAL, 500, "internal_error")

typedef enum kb_err {
#define KB_ERR_ENUM(name, status, code) KB_##name,
    KB_ERR_MAP(KB_ERR_ENUM)
#undef KB_ERR_ENUM
        KB_ERR_COUNT_
} kb_err;

/* HTTP status for err; 500 for values outside the table. */
int kb_err_status(kb_err err);

/* API.md error code for err ("internal_error" outside the table). Static string. */
const char *kb_err_code(kb_err err);

#endif
