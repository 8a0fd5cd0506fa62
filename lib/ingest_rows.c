/* ingest_rows.c - the pending batch: interned tickers, delta rows, COPY text rows.
 *
 * Messages arrive here read and checked by ingest_msg.c / ingest_fast.c (types,
 * ranges, sides, forms that must agree), so one bad line never fails a whole batch;
 * here their exact integers become rows.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "kb_ingest.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_banned.h"

static void span(kb_ingest *im, int64_t us);

static uint32_t
ticker_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

uint32_t
kb__ingest_ticker_id(kb_ingest *im, const char *s, size_t len)
{
    if (2 * (im->ntickers + 1) > im->tindex_cap) {
        uint32_t cap = im->tindex_cap ? 2 * im->tindex_cap : 64;
        uint32_t *ix = kb_xcalloc(cap, sizeof(*ix));
        for (uint32_t i = 0; i < im->ntickers; i++) {
            uint32_t h = ticker_hash(im->tickers[i].name, im->tickers[i].len) & (cap - 1);
            while (ix[h])
                h = (h + 1) & (cap - 1);
            ix[h] = i + 1;
        }
        free(im->tindex);
        im->tindex = ix;
        im->tindex_cap = cap;
    }
    uint32_t h = ticker_hash(s, len) & (im->tindex_cap - 1);
    for (; im->tindex[h]; h = (h + 1) & (im->tindex_cap - 1)) {
        const kb_ingest_ticker *t = &im->tickers[im->tindex[h] - 1];
        if (t->len == len && memcmp(t->name, s, len) == 0)
            return im->tindex[h] - 1;
    }
    if (im->ntickers == im->captickers) {
        im->captickers = im->captickers ? 2 * im->captickers : 64;
        im->tickers = kb_xrealloc(im->tickers, im->captickers * sizeof(*im->tickers));
    }
    kb_ingest_ticker *t = &im->tickers[im->ntickers];
    memset(t, 0, sizeof(*t));
    t->name = kb_xmalloc(len + 1);
    memcpy(t->name, s, len);
    t->name[len] = '\0';
    t->len = len;
    im->tindex[h] = ++im->ntickers;
    return im->ntickers - 1;
}

void
kb__ingest_add_delta(kb_ingest *im, const kb_ingest_delta *d)
{
    if (im->ndeltas == im->capdeltas) {
        im->capdeltas = im->capdeltas ? 2 * im->capdeltas : 4096;
        im->deltas = kb_xrealloc(im->deltas, (size_t)im->capdeltas * sizeof(*im->deltas));
    }
    kb_ingest_delta *r = &im->deltas[im->ndeltas++];
    *r = *d;
    r->order = im->order;
    im->deltas_read++;
    span(im, d->ts);
}

char *
kb__ingest_ts_text(kb_arena *a, int64_t us)
{
    char *s = kb_arena_alloc(a, KB_TIME_FMT_MAX);
    kb_time_format(us, s, KB_TIME_FMT_MAX);
    return s;
}

/* ISO/number timestamp field as SQL text, NULL when absent or unreadable. */
const char *
kb__ingest_ts_param(kb_arena *a, const cJSON *o, const char *k)
{
    int64_t us;
    return kb__ingest_ts_val(kb__ingest_get(o, k), &us) ? kb__ingest_ts_text(a, us) : NULL;
}

/* COPY text format: escape backslash, tab, newline, carriage return. */
static void
copy_str(kb_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '\\':
            kb_buf_puts(b, "\\\\");
            break;
        case '\t':
            kb_buf_puts(b, "\\t");
            break;
        case '\n':
            kb_buf_puts(b, "\\n");
            break;
        case '\r':
            kb_buf_puts(b, "\\r");
            break;
        default:
            kb_buf_putc(b, *s);
            break;
        }
    }
}

static void
span(kb_ingest *im, int64_t us)
{
    if (us < im->min_us)
        im->min_us = us;
    if (us > im->max_us)
        im->max_us = us;
}

/* Levels as stored: [[price, quantity], ...] in 1/10,000 $ and 1/100 contract. */
static void
levels_json(kb_buf *b, const kb_ingest_level *lv, size_t n)
{
    kb_buf_putc(b, '[');
    for (size_t i = 0; i < n; i++)
        kb_buf_printf(b, "%s[%" PRId32 ",%" PRId64 "]", i ? "," : "", lv[i].price, lv[i].qty);
    kb_buf_putc(b, ']');
}

void
kb__ingest_add_snapshot(kb_ingest *im, const kb_ingest_msg *m)
{
    kb_buf *b = &im->snaps;
    copy_str(b, m->ticker);
    kb_buf_printf(b, "\t%s\t%" PRId64 "\t%" PRId64 "\t", kb__ingest_ts_text(&im->arena, m->ts),
                  m->sid, m->seq);
    levels_json(b, m->levels[0], m->nlevels[0]);
    kb_buf_putc(b, '\t');
    levels_json(b, m->levels[1], m->nlevels[1]);
    kb_buf_printf(b, "\t%s\t%" PRId64 "\n",
                  m->rcv != KB_INGEST_NO_RCV ? kb__ingest_ts_text(&im->arena, m->rcv) : "\\N",
                  im->order);
    im->nsnaps++;
    im->snaps_read++;
    span(im, m->ts);
}

void
kb__ingest_add_trade(kb_ingest *im, const kb_ingest_msg *m)
{
    kb_buf *b = &im->trades;
    copy_str(b, m->trade_id);
    kb_buf_putc(b, '\t');
    copy_str(b, m->ticker);
    kb_buf_printf(b, "\t%" PRId32 "\t%" PRId32 "\t%" PRId64 "\t%s\t%s\t%s\t%" PRId64 "\n",
                  m->yes_price, m->no_price, m->count, m->yes ? "yes" : "no",
                  kb__ingest_ts_text(&im->arena, m->ts),
                  m->rcv != KB_INGEST_NO_RCV ? kb__ingest_ts_text(&im->arena, m->rcv) : "\\N",
                  im->order);
    im->ntrades++;
    im->trades_read++;
    span(im, m->ts);
}
