/* cmd.c - the stand-in's side of a WebSocket: client frames (masked, possibly
 * fragmented) and the commands subscribe, update_subscription and unsubscribe with
 * Kalshi's replies and error codes. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "standin.h"
#include "kb_banned.h"

static void
reply(si_conn *c, const kb_buf *b)
{
    si_ws_frame(&c->out, 1, true, b->buf, b->len);
    si_conn_update(c);
}

static void
reply_error(si_conn *c, int64_t id, int code, const char *msg)
{
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b, "{\"id\":%" PRId64 ",\"type\":\"error\",\"msg\":{\"code\":%d,\"msg\":", id,
                  code);
    kb_buf_json_str(&b, msg, strlen(msg));
    kb_buf_puts(&b, "}}");
    reply(c, &b);
    kb_buf_release(&b);
}

static int
channel_of(const char *name)
{
    if (strcmp(name, "orderbook_delta") == 0)
        return CH_ORDERBOOK;
    if (strcmp(name, "trade") == 0)
        return CH_TRADE;
    if (strcmp(name, "market_lifecycle_v2") == 0)
        return CH_LIFECYCLE;
    return -1;
}

static const char *const channel_name[] = {"orderbook_delta", "trade", "market_lifecycle_v2"};

/* params.market_tickers (or market_ticker) as market indices; -1 unknown, 0 none, else n. */
static int
tickers(const cJSON *params, int **out, const char **bad)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(params, "market_tickers");
    const cJSON *one = cJSON_GetObjectItemCaseSensitive(params, "market_ticker");
    int n = 0;
    *out = NULL;
    if (cJSON_IsString(one)) {
        si_market *m = si_market_find(one->valuestring, strlen(one->valuestring));
        if (m == NULL) {
            *bad = one->valuestring;
            return -1;
        }
        *out = malloc(sizeof(int));
        (*out)[0] = (int)(m - S.m);
        return 1;
    }
    if (!cJSON_IsArray(arr))
        return 0;
    *out = malloc(sizeof(int) * (size_t)(cJSON_GetArraySize(arr) + 1));
    for (const cJSON *t = arr->child; t != NULL; t = t->next) {
        si_market *m = cJSON_IsString(t) ? si_market_find(t->valuestring, strlen(t->valuestring))
                                         : NULL;
        if (m == NULL) {
            *bad = cJSON_IsString(t) ? t->valuestring : "(not a string)";
            free(*out);
            *out = NULL;
            return -1;
        }
        (*out)[n++] = (int)(m - S.m);
    }
    return n;
}

static void
snapshot(si_sub *s, int market)
{
    kb_buf b = KB_BUF_INIT;
    int64_t ts;
    si_feed_snapshot_body(&S.m[market], &b, s->use_yes_price, &ts);
    si_ws_send(s, "orderbook_snapshot", b.buf, b.len);
    kb_buf_release(&b);
}

/* Another subscription of channel ch on c that already covers market (or all). */
static bool
covered(si_conn *c, int ch, int market, const si_sub *except)
{
    for (int i = 0; i < c->nsubs; i++) {
        si_sub *s = c->subs[i];
        if (s != except && (int)s->ch == ch && (s->all || si_sub_has(s, market)))
            return true;
    }
    return false;
}

static void
cmd_subscribe(si_conn *c, int64_t id, const cJSON *params)
{
    const cJSON *chans = cJSON_GetObjectItemCaseSensitive(params, "channels");
    if (!cJSON_IsArray(chans) || cJSON_GetArraySize(chans) == 0) {
        reply_error(c, id, 3, "Channels required");
        return;
    }
    int *ms = NULL;
    const char *bad = NULL;
    int n = tickers(params, &ms, &bad);
    if (n < 0) {
        kb_buf b = KB_BUF_INIT;
        kb_buf_printf(&b, "Market not found: %s", bad);
        reply_error(c, id, 16, b.buf);
        kb_buf_release(&b);
        return;
    }
    for (const cJSON *ch = chans->child; ch != NULL; ch = ch->next) {
        int k = cJSON_IsString(ch) ? channel_of(ch->valuestring) : -1;
        if (k < 0) {
            reply_error(c, id, 8, "Unknown channel name");
            goto out;
        }
        if (k == CH_ORDERBOOK && n == 0) {
            reply_error(c, id, 14, "Market Ticker required");
            goto out;
        }
        bool dup = false;
        for (int i = 0; i < n; i++)
            dup = dup || covered(c, k, ms[i], NULL);
        for (int i = 0; n == 0 && i < c->nsubs; i++)
            dup = dup || (c->subs[i]->all && (int)c->subs[i]->ch == k);
        if (dup) {
            reply_error(c, id, 6, "Already subscribed");
            goto out;
        }
    }
    const cJSON *uyp = cJSON_GetObjectItemCaseSensitive(params, "use_yes_price");
    for (const cJSON *ch = chans->child; ch != NULL; ch = ch->next) {
        si_sub *s = calloc(1, sizeof(*s));
        if (s == NULL)
            abort();
        s->conn = c;
        s->sid = c->next_sid++;
        s->ch = (si_channel)channel_of(ch->valuestring);
        s->all = n == 0;
        s->use_yes_price = cJSON_IsTrue(uyp);
        if (c->nsubs == c->capsubs) {
            c->capsubs = c->capsubs ? c->capsubs * 2 : 8;
            c->subs = realloc(c->subs, sizeof(*c->subs) * (size_t)c->capsubs);
            if (c->subs == NULL)
                abort();
        }
        c->subs[c->nsubs++] = s;
        for (int i = 0; i < n; i++)
            si_sub_add(s, ms[i]);
        kb_buf b = KB_BUF_INIT;
        kb_buf_printf(&b,
                      "{\"id\":%" PRId64 ",\"type\":\"subscribed\",\"msg\":{\"channel\":\"%s\","
                      "\"sid\":%" PRId64 "}}",
                      id, channel_name[s->ch], s->sid);
        reply(c, &b);
        kb_buf_release(&b);
        if (s->ch == CH_ORDERBOOK) {
            for (int i = 0; i < n; i++)
                snapshot(s, ms[i]);
        }
    }
out:
    free(ms);
}

/* The one sid of params.sids (or params.sid); 0 after replying with an error. */
static int64_t
one_sid(si_conn *c, int64_t id, const cJSON *params)
{
    const cJSON *sids = cJSON_GetObjectItemCaseSensitive(params, "sids");
    const cJSON *sid = cJSON_GetObjectItemCaseSensitive(params, "sid");
    if (cJSON_IsNumber(sid) && sids == NULL)
        return (int64_t)sid->valuedouble;
    if (!cJSON_IsArray(sids) || cJSON_GetArraySize(sids) == 0) {
        reply_error(c, id, 4, "Subscription IDs required");
        return 0;
    }
    if (cJSON_GetArraySize(sids) != 1 || !cJSON_IsNumber(sids->child)) {
        reply_error(c, id, 12, "Exactly one subscription ID is required");
        return 0;
    }
    return (int64_t)sids->child->valuedouble;
}

static void
cmd_update(si_conn *c, int64_t id, const cJSON *params)
{
    int64_t sid = one_sid(c, id, params);
    if (sid == 0)
        return;
    si_sub *s = NULL;
    for (int i = 0; i < c->nsubs; i++)
        s = c->subs[i]->sid == sid ? c->subs[i] : s;
    if (s == NULL) {
        reply_error(c, id, 7, "Unknown subscription ID");
        return;
    }
    const cJSON *action = cJSON_GetObjectItemCaseSensitive(params, "action");
    bool add = cJSON_IsString(action) && strcmp(action->valuestring, "add_markets") == 0;
    bool del = cJSON_IsString(action) && strcmp(action->valuestring, "delete_markets") == 0;
    if (!add && !del) {
        reply_error(c, id, action == NULL ? 15 : 13,
                    action == NULL ? "Action required" : "Unsupported action");
        return;
    }
    int *ms = NULL;
    const char *bad = NULL;
    int n = tickers(params, &ms, &bad);
    if (n <= 0) {
        if (n < 0) {
            kb_buf b = KB_BUF_INIT;
            kb_buf_printf(&b, "Market not found: %s", bad);
            reply_error(c, id, 16, b.buf);
            kb_buf_release(&b);
        } else {
            reply_error(c, id, 14, "Market Ticker required");
        }
        return;
    }
    for (int i = 0; add && i < n; i++) {
        if (covered(c, s->ch, ms[i], s)) {
            reply_error(c, id, 6, "Already subscribed");
            free(ms);
            return;
        }
    }
    kb_buf b = KB_BUF_INIT;
    kb_buf_printf(&b,
                  "{\"id\":%" PRId64 ",\"sid\":%" PRId64 ",\"seq\":%" PRId64
                  ",\"type\":\"ok\",\"msg\":{\"market_tickers\":[",
                  id, sid, ++s->seq);
    for (int i = 0; i < n; i++)
        kb_buf_printf(&b, "%s\"%s\"", i ? "," : "", S.m[ms[i]].ticker);
    kb_buf_puts(&b, "]}}");
    reply(c, &b);
    kb_buf_release(&b);
    for (int i = 0; i < n; i++) {
        bool had = si_sub_has(s, ms[i]);
        if (add && !had) {
            si_sub_add(s, ms[i]);
            if (s->ch == CH_ORDERBOOK)
                snapshot(s, ms[i]);
        } else if (del) {
            si_sub_del(s, ms[i]);
        }
    }
    free(ms);
}

static void
cmd_unsubscribe(si_conn *c, int64_t id, const cJSON *params)
{
    const cJSON *sids = cJSON_GetObjectItemCaseSensitive(params, "sids");
    if (!cJSON_IsArray(sids) || cJSON_GetArraySize(sids) == 0) {
        reply_error(c, id, 4, "Subscription IDs required");
        return;
    }
    for (const cJSON *x = sids->child; x != NULL; x = x->next) {
        int64_t sid = cJSON_IsNumber(x) ? (int64_t)x->valuedouble : 0;
        int at = -1;
        for (int i = 0; i < c->nsubs; i++)
            at = c->subs[i]->sid == sid ? i : at;
        if (at < 0) {
            reply_error(c, id, 7, "Unknown subscription ID");
            continue;
        }
        si_sub *s = c->subs[at];
        c->subs[at] = c->subs[--c->nsubs];
        kb_buf b = KB_BUF_INIT;
        kb_buf_printf(&b, "{\"id\":%" PRId64 ",\"sid\":%" PRId64 ",\"type\":\"unsubscribed\"}", id,
                      sid);
        reply(c, &b);
        kb_buf_release(&b);
        si_sub_free(s);
    }
}

/* The message Kalshi sends with an error code the tests inject (cmd_error). */
static const char *
injected_error_text(int code)
{
    switch (code) {
    case 4:
        return "Subscription IDs required";
    case 6:
        return "Already subscribed";
    case 7:
        return "Unknown subscription ID";
    case 12:
        return "Exactly one subscription ID is required";
    case 14:
        return "Market Ticker required";
    case 16:
        return "Market not found";
    case 18:
        return "Command timeout";
    default:
        return "Internal error";
    }
}

static void
command(si_conn *c, const char *p, size_t n)
{
    S.cmds++;
    cJSON *j = cJSON_ParseWithLength(p, n);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(j, "cmd");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(j, "params");
    int64_t idv = cJSON_IsNumber(id) ? (int64_t)id->valuedouble : 0;
    int code;
    if (j == NULL || !cJSON_IsString(cmd)) {
        reply_error(c, idv, 1, "Unable to process message");
    } else if ((code = si_refuse_pop(&S.cmd_fail)) != 0) {
        reply_error(c, idv, code, injected_error_text(code));
    } else if (!cJSON_IsObject(params) && strcmp(cmd->valuestring, "list_subscriptions") != 0) {
        reply_error(c, idv, 2, "Params required");
    } else if (strcmp(cmd->valuestring, "subscribe") == 0) {
        cmd_subscribe(c, idv, params);
    } else if (strcmp(cmd->valuestring, "update_subscription") == 0) {
        cmd_update(c, idv, params);
    } else if (strcmp(cmd->valuestring, "unsubscribe") == 0) {
        cmd_unsubscribe(c, idv, params);
    } else {
        reply_error(c, idv, 5, "Unknown command");
    }
    cJSON_Delete(j);
}

int
si_ws_input(si_conn *c)
{
    size_t off = 0;
    int rc = 0;
    while (c->fd >= 0 && c->in.len - off >= 2) {
        const unsigned char *h = (const unsigned char *)c->in.buf + off;
        size_t avail = c->in.len - off;
        bool fin = h[0] & 0x80, masked = h[1] & 0x80;
        int op = h[0] & 0x0f;
        uint64_t len = h[1] & 0x7f;
        size_t hl = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (masked ? 4 : 0);
        if (avail < hl)
            break;
        if (len == 126) {
            len = (uint64_t)h[2] << 8 | h[3];
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
        }
        if (!masked || len > (1u << 20)) {
            rc = -1; /* a client must mask; commands are small */
            break;
        }
        if (avail - hl < len)
            break;
        const unsigned char *mask = h + hl - 4;
        unsigned char *p = (unsigned char *)c->in.buf + off + hl;
        for (uint64_t i = 0; i < len; i++)
            p[i] ^= mask[i & 3];
        off += hl + (size_t)len;
        if (op == 8) {
            si_ws_frame(&c->out, 8, true, p, len >= 2 ? 2 : 0);
            c->closing = true;
            break;
        } else if (op == 9) {
            si_ws_frame(&c->out, 10, true, p, (size_t)len);
        } else if (op == 10) {
            continue;
        } else if (op == 1 || op == 2 || op == 0) {
            if (op != 0) {
                kb_buf_reset(&c->msg);
                c->in_msg = true;
            } else if (!c->in_msg) {
                rc = -1;
                break;
            }
            kb_buf_append(&c->msg, p, (size_t)len);
            if (fin) {
                c->in_msg = false;
                command(c, c->msg.buf, c->msg.len);
            }
        } else {
            rc = -1;
            break;
        }
    }
    if (c->fd >= 0 && off > 0) {
        memmove(c->in.buf, c->in.buf + off, c->in.len - off);
        c->in.len -= off;
    }
    si_conn_update(c);
    return rc;
}
