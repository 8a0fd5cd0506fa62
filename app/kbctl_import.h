/* kbctl_import.h - state shared by kbctl import's driver and its message parsers.
 *
 * The driver (kbctl_import.c) reads lines, owns the connection and flushes
 * batches with COPY; the parsers (kbctl_import_rows.c) turn one JSON line into
 * COPY rows in the batch buffers or into an immediate metadata upsert.
 */
#ifndef KB_KBCTL_IMPORT_H
#define KB_KBCTL_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "kb_buf.h"
#include "kb_db.h"

typedef struct kb_import {
    kb_db db;
    kb_arena arena;        /* reset after every line */
    kb_buf snaps, deltas, trades; /* COPY text rows of the pending batch */
    long nsnaps, ndeltas, ntrades; /* rows in the pending batch */
    int64_t min_us, max_us; /* span of the pending batch (partitions) */
    int64_t order;          /* running line order, keeps file order in ids */
    long *pending[3];       /* counters of the batch still running on the server */
    int npending;
    /* totals */
    long lines, bad, skipped, meta;
    long snaps_read, deltas_read, trades_read;
    long snaps_new, deltas_new, trades_new;
} kb_import;

/*
 * Parse one line (NUL-terminated, without the newline) into the batch or an
 * upsert. Returns true when the line was used or deliberately skipped; false
 * with *reason (static or arena-owned) for a bad line.
 */
bool kb_import_line(kb_import *im, const char *line, size_t len, const char **reason);

/* Wait for the batch still running on the server (if any); false if it failed. */
bool kb_import_drain(kb_import *im);

/* ---- shared by the parsers (kbctl_import_rows.c, kbctl_import_meta.c) ---- */

struct cJSON;

/* Member k of o, or NULL. */
const struct cJSON *kb_imp_get(const struct cJSON *o, const char *k);

/* Non-empty string member k, or NULL. */
const char *kb_imp_str(const struct cJSON *o, const char *k);

/* Integer member k, else exact conversion of k_dollars (cents) or k_fp. */
bool kb_imp_int_field(const struct cJSON *o, const char *k, int64_t *v);

/* Arena-owned §1.1 text of an instant. */
char *kb_imp_ts_text(kb_arena *a, int64_t us);

/* Timestamp member k (Kalshi seconds/ms or ISO) as SQL text, NULL when absent. */
const char *kb_imp_ts_param(kb_arena *a, const struct cJSON *o, const char *k);

/* market_lifecycle_v2 message -> markets (and settlements) upsert. */
bool kb_import_lifecycle(kb_import *im, const struct cJSON *msg, const char *ticker, int64_t ts,
                         const char **reason);

/* REST market/event/series object or list response -> upserts. */
bool kb_import_rest(kb_import *im, const struct cJSON *j, const char **reason);

#endif
