/* worker_handles.c - the long-lived handles of a serving process; see kb_worker.h. */
#include "kb_worker.h"

#include <string.h>

#include "kb_config.h"
#include "kb_stripe.h"
#include "kb_banned.h"

void
kb_worker_init(kb_worker *w, const char *app_name)
{
    memset(w, 0, sizeof(*w));
    kb_db_init(&w->db, kb_cfg.database_url, app_name, kb_cfg.db_connect_timeout_s,
               kb_cfg.db_statement_timeout_ms);
    if (kb_cfg.database_read_url != NULL) {
        /* Its own application_name, so pg_stat_activity tells the two apart. */
        kb_db_init(&w->db_read, kb_cfg.database_read_url,
                   strcmp(app_name, "kalshibook-worker") == 0 ? "kalshibook-worker-read" : app_name,
                   kb_cfg.db_connect_timeout_s, kb_cfg.db_statement_timeout_ms);
        w->has_read_replica = true;
    }
}

void
kb_worker_release(kb_worker *w)
{
    kb_db_release(&w->db);
    if (w->has_read_replica)
        kb_db_release(&w->db_read);
    if (w->jwt_loaded)
        kb_jwt_verifier_release(&w->jwt);
    w->jwt_loaded = false;
    kb_stripe_release(w);
}
