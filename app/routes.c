/* routes.c - the route table: every API route, literal paths first, with its
 * credit cost (API.md §5.0; t/docs checks these against the contract). A cost
 * above 0 marks a metered data route: the dispatcher refuses a missing or
 * malformed API key (401) before the handler validates anything, without a
 * database round trip; the handler charges the cost once it has validated, and
 * the meter checks the key itself. The last column answers, uncharged, a path
 * parameter that does not decode (not UTF-8, NUL, a bad escape): the route's
 * not-found code, as for an id that does not exist. */
#include "app.h"

#include "kb_banned.h"

const kb_route kb_routes[] = {
    {"GET", "/health", h_health, 0, KB_OK},
    {"POST", "/billing/webhook", h_webhook, 0, KB_OK},
    {"POST", "/billing/checkout", h_billing_checkout, 0, KB_OK},
    {"POST", "/billing/portal", h_billing_portal, 0, KB_OK},
    {"POST", "/billing/payg", h_billing_payg, 0, KB_OK},
    {"GET", "/metrics", h_metrics, 0, KB_OK},
    {"POST", "/auth/signup", h_auth_signup, 0, KB_OK},
    {"POST", "/auth/login", h_auth_login, 0, KB_OK},
    {"POST", "/keys", h_keys_create, 0, KB_OK},
    {"GET", "/keys", h_keys_list, 0, KB_OK},
    {"GET", "/keys/usage", h_keys_usage, 0, KB_OK},
    {"PATCH", "/keys/{key_id}", h_keys_update, 0, KB_E_KEY_NOT_FOUND},
    {"DELETE", "/keys/{key_id}", h_keys_delete, 0, KB_E_KEY_NOT_FOUND},
    {"GET", "/keys/{key_id}/reveal", h_keys_reveal, 0, KB_E_KEY_NOT_FOUND},
    {"GET", "/billing/status", h_billing_status, 0, KB_OK},
    {"POST", "/orderbook", h_orderbook, 5, KB_OK},
    {"POST", "/deltas", h_deltas, 2, KB_OK},
    {"POST", "/trades", h_trades, 2, KB_OK},
    {"GET", "/markets", h_markets_list, 1, KB_OK},
    {"GET", "/events", h_events_list, 1, KB_OK},
    {"GET", "/settlements", h_settlements_list, 1, KB_OK},
    {"GET", "/candles/{ticker}", h_candles, 3, KB_E_VALIDATION},
    {"GET", "/markets/{ticker}", h_market_get, 1, KB_E_MARKET_NOT_FOUND},
    {"GET", "/markets/{ticker}/coverage", h_market_coverage, 1, KB_E_MARKET_NOT_FOUND},
    {"GET", "/events/{event_ticker}", h_event_get, 1, KB_E_EVENT_NOT_FOUND},
    {"GET", "/settlements/{ticker}", h_settlement_get, 1, KB_E_SETTLEMENT_NOT_FOUND},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
