/* fuzz_import.c - libFuzzer target for the ingest line parser (kb_ingest_line, lib/ingest.c,
 * ingest_msg.c, ingest_fast.c, ingest_rows.c, ingest_meta.c), used by `kbctl import` and the
 * collector's writer.
 *
 * The parser needs no database for snapshots, deltas and trades (it fills
 * COPY buffers); metadata lines try an upsert, which fails at once here (the
 * connection is "down", as in fuzz_request.c). Input: JSON lines.
 * Invariants: a bad line has a reason; the COPY buffers hold exactly one
 * newline-terminated row per counted row, no NUL bytes, and the same number
 * of tab-separated columns in every row of a table; delta rows are in range
 * (price $0.0001..$0.9999, |quantity| within the bound, in exact units);
 * and the delta fast path (ingest_fast.c) agrees with the cJSON path:
 * every line also goes through a second importer with the fast path off, and
 * both must give the same verdict, reason, counters and rows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kb_fixed.h"
#include "kb_log.h"
#include "internal.h"
#include "kb_ingest.h"
#include "kb_banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_rows(const kb_buf *b, long rows)
{
    if (b->len > 0 && b->buf[b->len - 1] != '\n')
        abort();
    if (b->len > 0 && memchr(b->buf, 0, b->len) != NULL)
        abort();
    long nl = 0, cols = -1, c = 0;
    for (size_t i = 0; i < b->len; i++) {
        if (b->buf[i] == '\t') {
            c++;
        } else if (b->buf[i] == '\n') {
            if (cols >= 0 && c != cols)
                abort();
            cols = c;
            c = 0;
            nl++;
        }
    }
    if (nl != rows)
        abort();
}

/* No batch ever runs on a server here (nothing is flushed), so no drain waits. */
static kb_ingest *
importer(bool no_fast)
{
    kb_ingest *im = calloc(1, sizeof(*im));
    kb_db *db = calloc(1, sizeof(*db));
    kb_db_init(db, "host=/nonexistent", "fuzz", 1, 0);
    db->next_attempt_us = INT64_MAX; /* the database is "down": fail fast */
    kb_ingest_init(im, db);
    im->no_fast = no_fast;
    return im;
}

static void
importer_free(kb_ingest *im)
{
    kb_db *db = im->db;
    kb_ingest_release(im);
    kb_db_release(db);
    free(db);
    free(im);
}

/* The fast path and the cJSON path left the same state. */
static void
same_rows(const kb_ingest *a, const kb_ingest *b)
{
    if (a->ndeltas != b->ndeltas || a->deltas_read != b->deltas_read || a->order != b->order ||
        a->skipped != b->skipped || a->nsnaps != b->nsnaps || a->ntrades != b->ntrades ||
        a->meta != b->meta || a->min_us != b->min_us || a->max_us != b->max_us)
        abort();
    for (long i = 0; i < a->ndeltas; i++) {
        const kb_ingest_delta *x = &a->deltas[i], *y = &b->deltas[i];
        const kb_ingest_ticker *tx = &a->tickers[x->ticker], *ty = &b->tickers[y->ticker];
        if (x->ts != y->ts || x->rcv != y->rcv || x->sid != y->sid || x->seq != y->seq ||
            x->order != y->order || x->price != y->price || x->amount != y->amount ||
            x->yes != y->yes || tx->len != ty->len || memcmp(tx->name, ty->name, tx->len) != 0)
            abort();
        if (x->price < 1 || x->price > 9999 || x->amount > KB_QTY_MAX ||
            x->amount < -KB_QTY_MAX || x->ticker >= a->ntickers || tx->len == 0)
            abort();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        kb_log_init("fuzz", KB_LOG_ERROR + 1);
        inited = 1;
    }
    kb_ingest *im = importer(false), *ref = importer(true);
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    size_t i = 0;
    while (i <= size) {
        char *nl = memchr(buf + i, '\n', size - i);
        size_t len = nl ? (size_t)(nl - (buf + i)) : size - i;
        buf[i + len] = '\0';
        const char *why = NULL, *why_ref = NULL;
        bool ok = kb_ingest_line(im, buf + i, len, KB_INGEST_NO_RCV, &why);
        if (!ok && why == NULL)
            abort();
        if (kb_ingest_line(ref, buf + i, len, KB_INGEST_NO_RCV, &why_ref) != ok ||
            (!ok && strcmp(why, why_ref) != 0))
            abort();
        same_rows(im, ref);
        check_rows(&im->snaps, im->nsnaps);
        check_rows(&im->trades, im->ntrades);
        if ((im->nsnaps || im->ndeltas || im->ntrades) && im->min_us > im->max_us)
            abort();
        kb_arena_reset(&im->arena);
        kb_arena_reset(&ref->arena);
        i += len + 1;
    }
    free(buf);
    importer_free(im);
    importer_free(ref);
    return 0;
}
