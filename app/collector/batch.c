/* batch.c - which records the writer stores next, and from where.
 *
 * The writer stands at a spool position (file, offset) and stores records strictly in
 * spool order. A queue chunk that starts exactly there is used as it is (from where the
 * writer stands, when the file was read into it); one that starts further on means
 * chunks were dropped (the queue was full), so the bytes in between are read back from
 * the file; one that lies behind was already read from the file and is skipped. With the queue empty, the published end of the spool says
 * whether there is more to read. A file the reader has left is read to its end (a
 * record cut short by a crash ends it) and the next file follows.
 */
#include <stdio.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_log.h"
#include "writer.h"
#include "kb_banned.h"

/*
 * Records per transaction at most. A batch's cost is mostly per market (market_stats,
 * the stale-checkpoint step, the probe of stored spans), so a writer that fell behind
 * catches up in big batches; one that keeps up commits every KB_COLLECTOR_COMMIT_MS.
 */
#define BATCH_MAX 250000

static bool
pos_before(long f1, int64_t o1, long f2, int64_t o2)
{
    return f1 < f2 || (f1 == f2 && o1 < o2);
}

bool
kc_writer_behind(void)
{
    long pf;
    int64_t po;
    kc_spool_published(&pf, &po);
    return pf > 0 && pos_before(W.file_no, W.off, pf, po);
}

static void
lag_gauge(void)
{
    long pf;
    int64_t po;
    kc_spool_published(&pf, &po);
    kc_metric_set(KC_G_WRITER_LAG_BYTES, pf == W.c_file_no ? po - W.c_off : po);
}

static void
close_reader(void)
{
    if (W.rd_open)
        kb_spool_reader_close(&W.rd);
    W.rd_open = false;
}

/* Open the reader at the writer's position; false when the file is not there. */
static bool
open_reader(void)
{
    if (W.rd_open && W.rd_file == W.file_no) {
        /* Queue chunks may have moved the writer on since the reader last stopped: it
         * must go on from the writer's position, never from its own (that would store
         * those chunks' records again and move the writer back). */
        int64_t at = W.rd.base + (int64_t)W.rd.pos;
        if (at == W.off)
            return true;
        if (W.off > at && W.off <= W.rd.base + (int64_t)W.rd.buf.len) {
            W.rd.pos = (size_t)(W.off - W.rd.base);
            return true;
        }
    }
    close_reader();
    char *path = kb_spool_find(K.cfg->collector_spool_dir, W.file_no);
    bool ok = path != NULL && kb_spool_reader_open(&W.rd, path, W.off);
    if (!ok && path != NULL)
        kb_log_error("writer: cannot read spool file '%s' at %" PRId64 ": %s", path, W.off,
                     strerror(errno));
    free(path);
    if (!ok)
        return false;
    W.rd_open = true;
    W.rd_file = W.file_no;
    if (W.off == 0)
        W.off = (int64_t)W.rd.pos; /* after the header line */
    return true;
}

/* Go on with the next file that exists, up to last. */
static void
next_file(long last)
{
    close_reader();
    while (W.file_no < last) {
        W.file_no++;
        W.off = 0;
        char *path = kb_spool_find(K.cfg->collector_spool_dir, W.file_no);
        free(path);
        if (path != NULL)
            return;
        kb_log_error("writer: spool file %ld is missing; its records are lost to the database",
                     W.file_no);
    }
}

/* Read records from the files up to (tf, to) or max of them; -1 on a store failure. */
static int
from_files(long tf, int64_t to, int *n, int max, bool *began)
{
    int got = 0;
    while (*n < max && pos_before(W.file_no, W.off, tf, to)) {
        if (!open_reader()) {
            if (W.file_no >= tf)
                return got;
            next_file(tf);
            continue;
        }
        kb_spool_rec rec;
        int64_t end, start = W.off;
        int r = kb_spool_reader_next(&W.rd, &rec, &end);
        if (r == 1) {
            if (!*began && !(*began = kc_store_begin()))
                return -1;
            if (!kc_store_record(&rec, W.file_no, start))
                return -1;
            W.off = end;
            (*n)++;
            got++;
            continue;
        }
        if (W.file_no < tf) {
            /* The reader has moved on: this file is complete. */
            if (r < 0 || W.rd.buf.len > W.rd.pos)
                kb_log_warn("writer: spool file %ld ends with %zu bytes that are no record "
                            "(cut short by a crash?)",
                            W.file_no, W.rd.buf.len - W.rd.pos);
            next_file(tf);
            continue;
        }
        close_reader(); /* re-read from here next time */
        if (r < 0) {
            /* Only a wrong starting offset gets here (the reader writes whole records):
             * skip to where the spool ends now rather than stall the writer for good. */
            kb_log_error("writer: spool file %ld holds no record at offset %" PRId64 "; the "
                         "bytes up to %" PRId64 " stay in the spool but not in the database",
                         W.file_no, W.off, to);
            W.off = to;
        }
        break;
    }
    if (got > 0) {
        kc_metric_add(KC_M_WRITER_SPOOL_READS, 1);
        kc_metric_add(KC_M_WRITER_SPOOL_RECORDS, (uint64_t)got);
    }
    return got;
}

/* The records of a queued chunk from byte skip on (where the writer stands in it). */
static bool
from_chunk(kc_chunk *ch, size_t skip, int *n, bool *began)
{
    size_t p = skip;
    while (p < ch->len) {
        kb_spool_rec rec;
        long k = kb_spool_parse(ch->data + p, ch->len - p, &rec);
        if (k <= 0) {
            kb_log_error("writer: a queued batch holds no record at %" PRId64,
                         ch->off + (int64_t)p);
            return false;
        }
        if (!*began && !(*began = kc_store_begin()))
            return false;
        if (!kc_store_record(&rec, ch->file_no, ch->off + (int64_t)p))
            return false;
        p += (size_t)k;
        (*n)++;
    }
    W.file_no = ch->file_no;
    W.off = ch->off + (int64_t)ch->len;
    return true;
}

void
kc_writer_batch(void)
{
    int64_t deadline = 0;
    int n = 0;
    bool began = false, ok = true;
    for (;;) {
        int64_t now = kc_mono_ns() / 1000000;
        if (began && (now >= deadline || n >= BATCH_MAX))
            break;
        if (W.held == NULL)
            W.held = kc_queue_pop(0);
        kc_chunk *ch = W.held;
        long tf;
        int64_t to;
        if (ch != NULL) {
            if (!pos_before(W.file_no, W.off, ch->file_no, ch->off + (int64_t)ch->len)) {
                free(ch); /* already stored from the file */
                W.held = NULL;
                continue;
            }
            /* At the chunk's start, or inside it: the file was read up to a record of
             * it (a batch full, or the spool's published end came before the chunk). */
            if (ch->file_no == W.file_no && ch->off <= W.off) {
                int before = n;
                ok = from_chunk(ch, (size_t)(W.off - ch->off), &n, &began);
                free(ch);
                W.held = NULL;
                if (!ok)
                    break;
                if (deadline == 0 && n > before)
                    deadline = now + K.cfg->collector_commit_ms;
                continue;
            }
            tf = ch->file_no;
            to = ch->off;
        } else {
            kc_spool_published(&tf, &to);
            if (!pos_before(W.file_no, W.off, tf, to) && !(W.off == 0 && W.file_no == tf)) {
                /* Nothing more: wait for the next chunk (until the deadline, if begun). */
                int wait = began ? (int)(deadline - now) : 200;
                W.held = kc_queue_pop(wait > 0 ? wait : 0);
                if (W.held == NULL && !began)
                    return;
                continue;
            }
        }
        int before = n;
        int got = from_files(tf, to, &n, BATCH_MAX, &began);
        if (got < 0) {
            ok = false;
            break;
        }
        if (deadline == 0 && n > before)
            deadline = now + K.cfg->collector_commit_ms;
        if (got == 0 && ch == NULL) {
            if (!began)
                return;
            usleep(1000);
        } else if (got == 0) {
            /* The file is not where the chunk says (removed?): take the chunk as it is. */
            if (W.file_no == tf && W.off == 0 && !open_reader()) {
                W.off = ch->off;
            } else if (W.file_no == tf && W.off < ch->off) {
                kb_log_error("writer: spool file %ld ends at %" PRId64 " before the queued batch "
                             "at %" PRId64 "; storing from the batch",
                             tf, W.off, ch->off);
                W.off = ch->off;
            }
        }
    }
    if (ok && began && kc_store_commit(W.file_no, W.off)) {
        W.c_file_no = W.file_no;
        W.c_off = W.off;
        kc_metric_add(KC_M_WRITER_COMMITS, 1);
        kc_metric_add(KC_M_WRITER_RECORDS, (uint64_t)n);
        lag_gauge();
        return;
    }
    if (!began)
        return;
    /* Nothing of the batch counts: start again from the last commit (the spool has it). */
    kc_store_abort();
    kc_metric_add(KC_M_WRITER_ERRORS, 1);
    W.file_no = W.c_file_no;
    W.off = W.c_off;
    close_reader();
    free(W.held);
    W.held = NULL;
    lag_gauge();
    usleep(200000);
}
