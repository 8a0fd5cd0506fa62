/* routes.c - the route table: every API route, literal paths first.
 * KB_ROUTE_API_KEY marks the metered data routes: the dispatcher refuses a
 * missing or malformed API key (401) before the handler validates anything,
 * without a database round trip; the key itself is checked by the meter. */
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
    {"POST", "/orderbook", h_orderbook, KB_ROUTE_API_KEY},
    {"POST", "/deltas", h_deltas, KB_ROUTE_API_KEY},
    {"POST", "/trades", h_trades, KB_ROUTE_API_KEY},
    {"GET", "/markets", h_markets_list, KB_ROUTE_API_KEY},
    {"GET", "/events", h_events_list, KB_ROUTE_API_KEY},
    {"GET", "/settlements", h_settlements_list, KB_ROUTE_API_KEY},
    {"GET", "/candles/{ticker}", h_candles, KB_ROUTE_API_KEY},
    {"GET", "/markets/{ticker}", h_market_get, KB_ROUTE_API_KEY},
    {"GET", "/events/{event_ticker}", h_event_get, KB_ROUTE_API_KEY},
    {"GET", "/settlements/{ticker}", h_settlement_get, KB_ROUTE_API_KEY},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
