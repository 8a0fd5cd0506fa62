/* kb_spool.h - the collector's spool files: every received frame, as received.
 *
 * A spool file starts with one header line "#kbspool 1 instance=NAME file=N created=TIME"
 * and holds records, each an ASCII header line and the bytes as they arrived:
 *
 *     KIND WALL_NS MONO_NS EPOCH LEN\n<LEN bytes>\n
 *
 * KIND is F (a WebSocket message of connection EPOCH), R (a REST response body) or
 * E (a collector event, JSON: a gap opened or closed, a connection up or down).
 * WALL_NS is CLOCK_REALTIME and MONO_NS CLOCK_MONOTONIC at receipt, taken before the
 * frame was parsed. Length-prefixed, so any bytes survive (bad JSON, newlines).
 * Files are named kb-<N, 8 digits>-<YYYYmmddTHH>.spool; N counts up per spool
 * directory and orders the files. A record cut short by a crash is the file's end.
 * Base layer: no database, no JSON parsing.
 */
#ifndef KB_SPOOL_H
#define KB_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kb_buf.h"

#define KB_SPOOL_MAGIC "#kbspool 1 "
/* Largest record payload a reader accepts (the collector caps frames far below). */
#define KB_SPOOL_REC_MAX (1L << 30)

typedef struct kb_spool_rec {
    char kind; /* 'F', 'R' or 'E' */
    int64_t wall_ns, mono_ns, epoch;
    const char *data; /* not NUL-terminated; owned by the buffer it was parsed from */
    size_t len;
} kb_spool_rec;

/* Append one record to b. */
void kb_spool_append(kb_buf *b, char kind, int64_t wall_ns, int64_t mono_ns, int64_t epoch,
                     const void *data, size_t len);

/* Parse the record at p[0..n): bytes it takes (> 0), 0 when incomplete, -1 when malformed. */
long kb_spool_parse(const char *p, size_t n, kb_spool_rec *r);

/* Append the header line of file_no. */
void kb_spool_header(kb_buf *b, const char *instance, long file_no, int64_t created_us);

/* Bytes of the header line at p (> 0), 0 when incomplete, -1 when p is no spool file. */
long kb_spool_header_len(const char *p, size_t n);

/* dir/kb-<file_no>-<hour of created_us>.spool into b (b is reset first). */
void kb_spool_path(kb_buf *b, const char *dir, long file_no, int64_t created_us);

/* The path of file_no in dir (malloc'd, caller frees), or NULL when there is none. */
char *kb_spool_find(const char *dir, long file_no);

/* The largest file number in dir, 0 when it holds none; -1 when dir cannot be read. */
long kb_spool_max_no(const char *dir);

/* Sequential reading of one file from an offset; records stay valid until the next call. */
typedef struct kb_spool_reader {
    int fd;
    kb_buf buf;
    size_t pos;   /* parse position in buf */
    int64_t base; /* file offset of buf[0] */
    bool eof;
} kb_spool_reader;

/* Open path at offset (0 = the start: the header is checked and skipped). False + errno. */
bool kb_spool_reader_open(kb_spool_reader *r, const char *path, int64_t offset);

/*
 * The next record: 1 with *rec and *end (the file offset just after it), 0 when the
 * file has no complete record more (yet: a live file may grow; call again), -1 when
 * the bytes there are no record (a damaged file).
 */
int kb_spool_reader_next(kb_spool_reader *r, kb_spool_rec *rec, int64_t *end);

void kb_spool_reader_close(kb_spool_reader *r);

#endif
