/* spool.c - spool file records, names and a sequential reader; see kb_spool.h. */
#include "kb_spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kb_time.h"
#include "kb_banned.h"

void
kb_spool_append(kb_buf *b, char kind, int64_t wall_ns, int64_t mono_ns, int64_t epoch,
                const void *data, size_t len)
{
    kb_buf_printf(b, "%c %" PRId64 " %" PRId64 " %" PRId64 " %zu\n", kind, wall_ns, mono_ns, epoch,
                  len);
    kb_buf_append(b, data, len);
    kb_buf_putc(b, '\n');
}

/* A decimal (optionally negative) ending at a space or newline; false when none. */
static bool
field(const char **p, const char *end, char stop, int64_t *out)
{
    const char *s = *p;
    bool neg = s < end && *s == '-';
    s += neg;
    int64_t v = 0;
    const char *d = s;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
        s++;
    }
    if (s == d || s >= end || *s != stop)
        return false;
    *out = neg ? -v : v;
    *p = s + 1;
    return true;
}

long
kb_spool_parse(const char *p, size_t n, kb_spool_rec *r)
{
    /* The header line is short; a missing newline within 100 bytes is damage. */
    const char *nl = memchr(p, '\n', n < 100 ? n : 100);
    if (nl == NULL)
        return n < 100 ? 0 : -1;
    if (nl - p < 9 || (p[0] != 'F' && p[0] != 'R' && p[0] != 'E') || p[1] != ' ')
        return -1;
    const char *s = p + 2, *e = nl + 1;
    int64_t len;
    if (!field(&s, e, ' ', &r->wall_ns) || !field(&s, e, ' ', &r->mono_ns) ||
        !field(&s, e, ' ', &r->epoch) || !field(&s, e, '\n', &len) || len < 0 ||
        len > KB_SPOOL_REC_MAX || s != e)
        return -1;
    size_t hl = (size_t)(e - p);
    if (n < hl + (size_t)len + 1)
        return 0;
    if (p[hl + (size_t)len] != '\n')
        return -1;
    r->kind = p[0];
    r->data = p + hl;
    r->len = (size_t)len;
    return (long)(hl + (size_t)len + 1);
}

void
kb_spool_header(kb_buf *b, const char *instance, long file_no, int64_t created_us)
{
    char t[KB_TIME_FMT_MAX];
    kb_time_format(created_us, t, sizeof(t));
    kb_buf_printf(b, KB_SPOOL_MAGIC "instance=");
    /* The instance name is the operator's; keep the line one line of plain tokens. */
    for (const char *c = instance; *c; c++)
        kb_buf_putc(b, *c > ' ' && *c < 127 ? *c : '_');
    kb_buf_printf(b, " file=%ld created=%s\n", file_no, t);
}

long
kb_spool_header_len(const char *p, size_t n)
{
    size_t ml = strlen(KB_SPOOL_MAGIC);
    if (n < ml)
        return memcmp(p, KB_SPOOL_MAGIC, n) == 0 ? 0 : -1;
    if (memcmp(p, KB_SPOOL_MAGIC, ml) != 0)
        return -1;
    const char *nl = memchr(p, '\n', n < 1024 ? n : 1024);
    if (nl == NULL)
        return n < 1024 ? 0 : -1;
    return (long)(nl - p) + 1;
}

void
kb_spool_path(kb_buf *b, const char *dir, long file_no, int64_t created_us)
{
    time_t t = (time_t)(created_us / 1000000);
    struct tm tm;
    gmtime_r(&t, &tm);
    kb_buf_reset(b);
    kb_buf_printf(b, "%s/kb-%08ld-%04d%02d%02dT%02d.spool", dir, file_no, tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
}

/* The file number of a spool file name, or -1. */
static long
name_no(const char *name)
{
    if (strncmp(name, "kb-", 3) != 0 || strlen(name) != 3 + 8 + 1 + 11 + 6 ||
        strcmp(name + strlen(name) - 6, ".spool") != 0)
        return -1;
    long n = 0;
    for (int i = 3; i < 11; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        n = n * 10 + (name[i] - '0');
    }
    return name[11] == '-' ? n : -1;
}

char *
kb_spool_find(const char *dir, long file_no)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return NULL;
    char *found = NULL;
    struct dirent *e;
    while (found == NULL && (e = readdir(d)) != NULL) {
        if (name_no(e->d_name) == file_no) {
            kb_buf b = KB_BUF_INIT;
            kb_buf_printf(&b, "%s/%s", dir, e->d_name);
            found = kb_buf_detach(&b, NULL);
        }
    }
    closedir(d);
    return found;
}

long
kb_spool_max_no(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    long best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long n = name_no(e->d_name);
        if (n > best)
            best = n;
    }
    closedir(d);
    return best;
}

bool
kb_spool_reader_open(kb_spool_reader *r, const char *path, int64_t offset)
{
    memset(r, 0, sizeof(*r));
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0)
        return false;
    if (offset > 0 && lseek(r->fd, offset, SEEK_SET) != offset) {
        int e = errno;
        close(r->fd);
        r->fd = -1;
        errno = e;
        return false;
    }
    r->base = offset;
    if (offset == 0) {
        /* The header line: read until it is whole. */
        for (;;) {
            kb_buf_grow(&r->buf, 4096);
            ssize_t n = read(r->fd, r->buf.buf + r->buf.len, 4096);
            if (n > 0)
                r->buf.len += (size_t)n;
            long hl = kb_spool_header_len(r->buf.buf, r->buf.len);
            if (hl > 0) {
                r->pos = (size_t)hl;
                return true;
            }
            if (hl < 0 || n <= 0) {
                kb_spool_reader_close(r);
                errno = hl < 0 ? EINVAL : ENODATA;
                return false;
            }
        }
    }
    return true;
}

int
kb_spool_reader_next(kb_spool_reader *r, kb_spool_rec *rec, int64_t *end)
{
    for (;;) {
        long k = r->buf.len > r->pos ? kb_spool_parse(r->buf.buf + r->pos, r->buf.len - r->pos, rec)
                                     : 0;
        if (k > 0) {
            r->pos += (size_t)k;
            *end = r->base + (int64_t)r->pos;
            return 1;
        }
        if (k < 0)
            return -1;
        /* Incomplete: keep the partial record, drop what was consumed, read more. */
        if (r->pos > 0) {
            memmove(r->buf.buf, r->buf.buf + r->pos, r->buf.len - r->pos);
            r->buf.len -= r->pos;
            r->base += (int64_t)r->pos;
            r->pos = 0;
        }
        kb_buf_grow(&r->buf, 1 << 20);
        ssize_t n = read(r->fd, r->buf.buf + r->buf.len, r->buf.cap - r->buf.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            r->eof = true;
            return 0;
        }
        r->buf.len += (size_t)n;
    }
}

void
kb_spool_reader_close(kb_spool_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    kb_buf_release(&r->buf);
}
