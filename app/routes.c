/* routes.c - the route table: every API route, literal paths first. */
#include "app.h"

#include "kb_banned.h"

const kb_route kb_routes[] = {
    {"GET", "/health", h_health},
    {"POST", "/orderbook", h_orderbook},
    {"POST", "/deltas", h_deltas},
    {"POST", "/trades", h_trades},
    {"GET", "/markets", h_markets_list},
    {"GET", "/events", h_events_list},
    {"GET", "/settlements", h_settlements_list},
    {"GET", "/candles/{ticker}", h_candles},
    {"GET", "/markets/{ticker}", h_market_get},
    {"GET", "/events/{event_ticker}", h_event_get},
    {"GET", "/settlements/{ticker}", h_settlement_get},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
