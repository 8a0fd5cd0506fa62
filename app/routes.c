/* routes.c - the route table: every API route, literal paths first, with its
 * credit cost (API.md §5.0; t/docs checks these against the contract). A cost
 * above 0 marks a metered data route: the dispatcher refuses a missing or
 * malformed API key (401) before the handler validates anything, without a
 * database round trip; the handler charges the cost once it has validated, and
 * the meter checks the key itself. */
#include "app.h"

#include "kb_banned.h"

const kb_route kb_routes[] = {
    {"GET", "/health", h_health, 0},
    {"POST", "/billing/webhook", h_webhook, 0},
    {"POST", "/billing/checkout", h_billing_checkout, 0},
    {"POST", "/billing/portal", h_billing_portal, 0},
    {"POST", "/billing/payg", h_billing_payg, 0},
    {"GET", "/metrics", h_metrics, 0},
    {"POST", "/auth/signup", h_auth_signup, 0},
    {"POST", "/auth/login", h_auth_login, 0},
    {"POST", "/keys", h_keys_create, 0},
    {"GET", "/keys", h_keys_list, 0},
    {"GET", "/keys/usage", h_keys_usage, 0},
    {"PATCH", "/keys/{key_id}", h_keys_update, 0},
    {"DELETE", "/keys/{key_id}", h_keys_delete, 0},
    {"GET", "/keys/{key_id}/reveal", h_keys_reveal, 0},
    {"GET", "/billing/status", h_billing_status, 0},
    {"POST", "/orderbook", h_orderbook, 5},
    {"POST", "/deltas", h_deltas, 2},
    {"POST", "/trades", h_trades, 2},
    {"GET", "/markets", h_markets_list, 1},
    {"GET", "/events", h_events_list, 1},
    {"GET", "/settlements", h_settlements_list, 1},
    {"GET", "/candles/{ticker}", h_candles, 3},
    {"GET", "/markets/{ticker}", h_market_get, 1},
    {"GET", "/markets/{ticker}/coverage", h_market_coverage, 1},
    {"GET", "/events/{event_ticker}", h_event_get, 1},
    {"GET", "/settlements/{ticker}", h_settlement_get, 1},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
