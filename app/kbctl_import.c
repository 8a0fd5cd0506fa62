/* kbctl_import.c - `kbctl import FILE...|-`: load Kalshi captures (KALSHI.md) and
 * kalshibook-collector spool files through the ingest module (kb_ingest.h).
 *
 * JSON-lines files go line by line; a file that starts with the spool header
 * (kb_spool.h) is replayed record by record: frames with their receive times, REST
 * bodies, and the collector's gap events (the repair path after a database loss).
 * Every --batch rows (and at the end of each file) the batch is flushed; its COMMIT
 * runs while the next batch is parsed. Bad lines are reported as file:line: reason
 * (file@offset for spool records) and skipped (--strict stops at the first).
 * Progress goes to stderr when it is a terminal. Statistics and checkpoints are
 * refreshed at the end.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_ingest.h"
#include "kb_spool.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

#define DEFAULT_BATCH 50000L
#define DEFAULT_CHECKPOINT_EVERY 10000L

static void
progress(const kb_ingest *im, const char *name, long bytes, long size, int64_t t0, bool done)
{
    double secs = (double)(kb_mono_us() - t0) / 1e6;
    double lps = secs > 0 ? (double)im->lines / secs : 0;
    long rows = im->snaps_read + im->deltas_read + im->trades_read;
    fprintf(stderr, "\r%s: %ld lines, %ld rows, %.0f lines/s", name, im->lines, rows, lps);
    if (size > 0 && bytes > 0 && !done) {
        double eta = secs * (double)(size - bytes) / (double)bytes;
        fprintf(stderr, ", %3.0f%%, ETA %.0fs   ", 100.0 * (double)bytes / (double)size, eta);
    }
    if (done)
        fprintf(stderr, "%20s\n", "");
}

/* "instance=NAME file=N" of a spool header line into inst / *no. */
static void
spool_names(const char *hdr, size_t n, char *inst, size_t isz, long *no)
{
    const char *i = memmem(hdr, n, "instance=", 9), *f = memmem(hdr, n, " file=", 6);
    snprintf(inst, isz, "?");
    *no = 0;
    if (i != NULL) {
        size_t l = strcspn(i + 9, " \n");
        snprintf(inst, isz, "%.*s", (int)(l < isz ? l : isz - 1), i + 9);
    }
    if (f != NULL)
        *no = strtol(f + 6, NULL, 10);
}

/*
 * Replay one spool file: every record in order, gap events keyed as the collector
 * keyed them (instance/file/offset), so rows the collector already stored, and gaps
 * it already recorded, are not stored twice. A record cut short by a crash ends it.
 */
static bool
import_spool(kb_ingest *im, const char *path, long batch, bool strict)
{
    kb_spool_reader rd;
    if (!kb_spool_reader_open(&rd, path, 0)) {
        fprintf(stderr, "kbctl import: %s: %s\n", path, strerror(errno));
        im->bad++;
        return !strict;
    }
    char inst[128], source[256];
    long no;
    spool_names(rd.buf.buf, rd.pos, inst, sizeof(inst), &no);
    kb_spool_rec rec;
    int64_t end, start = (int64_t)rd.pos;
    int rc;
    bool ok = true;
    while ((rc = kb_spool_reader_next(&rd, &rec, &end)) == 1) {
        im->lines++;
        const char *reason = NULL;
        snprintf(source, sizeof(source), "%s/%ld/%" PRId64, inst, no, start);
        if (!kb_ingest_spool(im, &rec, source, &reason)) {
            fprintf(stderr, "%s@%" PRId64 ": %s\n", path, start, reason);
            im->bad++;
            if (strict) {
                ok = false;
                break;
            }
        }
        start = end;
        if (kb_ingest_pending(im) >= batch && !kb_ingest_flush(im)) {
            ok = false;
            break;
        } else if (kb_ingest_pending(im) == 0) {
            kb_arena_reset(&im->arena);
        }
        kb_ingest_poll(im);
    }
    if (rc < 0 || rd.buf.len > rd.pos)
        fprintf(stderr, "%s@%" PRId64 ": the rest is no record (cut short by a crash?)\n", path,
                start);
    kb_spool_reader_close(&rd);
    if (!kb_ingest_flush(im) || !kb_ingest_drain(im))
        ok = false;
    return ok;
}

static bool
is_spool(const char *path)
{
    char head[16] = "";
    FILE *f = strcmp(path, "-") == 0 ? NULL : fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(head, 1, sizeof(head) - 1, f);
    fclose(f);
    return kb_spool_header_len(head, n) >= 0 && n >= strlen(KB_SPOOL_MAGIC);
}

/* Import one file ("-" = stdin). Returns false on a database failure or --strict stop. */
static bool
import_file(kb_ingest *im, const char *path, long batch, bool strict, bool tty)
{
    if (is_spool(path))
        return import_spool(im, path, batch, strict);
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "kbctl import: %s: %s\n", path, strerror(errno));
        im->bad++;
        return !strict;
    }
    struct stat sb;
    long size = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? (long)sb.st_size : 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0, bytes = 0;
    int64_t t0 = kb_mono_us(), last = t0;
    bool ok = true;
    while ((n = getline(&line, &cap, f)) > 0) {
        lineno++;
        im->lines++;
        bytes += n;
        const char *reason = NULL;
        if (!kb_ingest_line(im, line, (size_t)n, KB_INGEST_NO_RCV, &reason)) {
            fprintf(stderr, "%s%s:%ld: %s\n", tty ? "\n" : "", path, lineno, reason);
            im->bad++;
            if (strict) {
                ok = false;
                break;
            }
        }
        if (kb_ingest_pending(im) >= batch) {
            if (!kb_ingest_flush(im)) {
                ok = false;
                break;
            }
        } else if (kb_ingest_pending(im) == 0) {
            kb_arena_reset(&im->arena);
        }
        if ((lineno & 127) == 0)
            kb_ingest_poll(im);
        if (tty && kb_mono_us() - last > 500000) {
            last = kb_mono_us();
            progress(im, path, bytes, size, t0, false);
        }
    }
    free(line);
    if (f != stdin)
        fclose(f);
    if (!kb_ingest_flush(im) || !kb_ingest_drain(im))
        ok = false;
    if (tty)
        progress(im, path, bytes, size, t0, true);
    return ok;
}

static int
usage(void)
{
    printf("usage: kbctl import [--strict] [--batch N] [--checkpoint-every N] [--quiet] FILE...|-\n\n"
           "Loads Kalshi WebSocket v2 messages (orderbook_snapshot, orderbook_delta, trade,\n"
           "market_lifecycle_v2) and Kalshi REST market/event/series objects, one JSON\n"
           "object per line (t/data/README.md), in every form Kalshi has sent: integer\n"
           "cents and counts, *_dollars prices (4 decimals), *_fp counts (2 decimals),\n"
           "*_dollars_fp level arrays, ts (seconds, ms or ISO) and ts_ms, stored exactly\n"
           "(1/10,000 dollar, 1/100 contract); a value given in two forms that disagree\n"
           "refuses the line. A top-level received_at is kept as the receive time.\n"
           "Idempotent: importing a file twice changes nothing. Bad lines are reported as\n"
           "FILE:LINE: reason and skipped; --strict stops at the first one. Exit 0 when\n"
           "every line was good, 1 otherwise.\n"
           "kalshibook-collector spool files (KB_COLLECTOR_SPOOL_DIR/kb-*.spool) are\n"
           "recognised by their first line and replayed: each message with the receive\n"
           "time recorded beside it, REST bodies, and the collector's gap events (the\n"
           "repair path; what the collector stored already is not stored again).\n"
           "Afterwards, orderbook reconstruction checkpoints are rebuilt for the markets\n"
           "that got new rows, one every N deltas of a snapshot window (default 10000;\n"
           "0 = skip: stale ones are still removed, so answers stay exact, only slower).\n");
    return KBCTL_OK;
}

int
kbctl_import(int argc, char **argv)
{
    bool strict = false, quiet = false;
    long batch = DEFAULT_BATCH, every = DEFAULT_CHECKPOINT_EVERY, checkpoints = 0;
    int first = argc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            return usage();
        } else if (strcmp(argv[i], "--strict") == 0) {
            strict = true;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(argv[i], "--checkpoint-every") == 0 && i + 1 < argc) {
            int64_t v;
            const char *e;
            if (!kb_parse_i64(kb_str_c(argv[++i]), 0, 100000000, &v, &e)) {
                fprintf(stderr, "kbctl import: --checkpoint-every must be 0..100000000\n");
                return KBCTL_USAGE;
            }
            every = (long)v;
        } else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) {
            int64_t v;
            const char *e;
            if (!kb_parse_i64(kb_str_c(argv[++i]), 1, 10000000, &v, &e)) {
                fprintf(stderr, "kbctl import: --batch must be 1..10000000\n");
                return KBCTL_USAGE;
            }
            batch = (long)v;
        } else if (strcmp(argv[i], "-") == 0 || argv[i][0] != '-') {
            first = i;
            break;
        } else {
            fprintf(stderr, "kbctl import: unknown option '%s'\n", argv[i]);
            return KBCTL_USAGE;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "kbctl import: no input files (use - for stdin)\n");
        return KBCTL_USAGE;
    }
    kb_db db;
    kb_db_init(&db, kb_cfg.database_url, "kbctl-import", kb_cfg.db_connect_timeout_s, 0);
    kb_ingest *im = kb_xcalloc(1, sizeof(*im));
    kb_ingest_init(im, &db);
    int rc = KBCTL_FAIL;
    if (kb_db_connect(&db) != KB_OK) {
        fprintf(stderr, "kbctl import: unable to connect to the database\n");
        goto out;
    }
    bool tty = !quiet && isatty(STDERR_FILENO);
    int64_t t0 = kb_mono_us();
    bool ok = true;
    for (int i = first; i < argc && ok; i++)
        ok = import_file(im, argv[i], batch, strict, tty);
    if (ok && !kb_ingest_finish(im, every, &checkpoints))
        ok = false;
    kb_arena_reset(&im->arena);
    double secs = (double)(kb_mono_us() - t0) / 1e6;
    if (!quiet)
        printf("imported %ld lines in %.2fs: snapshots %ld (%ld new), deltas %ld (%ld new), "
               "trades %ld (%ld new), metadata %ld, skipped %ld, bad %ld, checkpoints %ld\n",
               im->lines, secs, im->snaps_read, im->snaps_new, im->deltas_read, im->deltas_new,
               im->trades_read, im->trades_new, im->meta, im->skipped, im->bad, checkpoints);
    rc = ok && im->bad == 0 ? KBCTL_OK : KBCTL_FAIL;
out:
    kb_ingest_release(im);
    free(im);
    kb_db_release(&db);
    return rc;
}
