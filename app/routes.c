/* routes.c - the route table: every API route, literal paths first. */
#include "app.h"

#include "kb_banned.h"

const kb_route kb_routes[] = {
    {"GET", "/health", h_health},
    {"GET", "/metrics", h_metrics},
};

const size_t kb_nroutes = sizeof(kb_routes) / sizeof(kb_routes[0]);
