/* routes.c - the route table: every API route, literal paths first. */
#include "app.h"

#include "kb_banned.h"

const kb_route kb_routes[] = {
    {"GET", "/health", h_health},
    {"POST", "/billing/webhook", h_webhook},
    {"POST", "/billing/checkout", h_billing_checkout},
    {"POST", "/billing/portal", h_billing_portal},
    {"POST", "/billing/payg", h_billing_payg},
    {"GET", "/metrics", h_metrics},
    {"POST", "/auth/signup", h_auth_signup},
    {"POST", "/auth/login", h_auth_login},
    {"POST", "/keys", h_keys_create},
    {"GET", "/keys", h_keys_list},
    {"GET", "/keys/usage", h_keys_usage},
    {"PATCH", "/keys/{key_id}", h_keys_update},
    {"DELETE", "/keys/{key_id}", h_keys_delete},
    {"GET", "/keys/{key_id}/reveal", h_keys_reveal},
    {"GET", "/billing/status", h_billing_status},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
