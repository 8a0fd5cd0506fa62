/* main.c - the Kalshi stand-in's entry point: options, listeners, the epoll loop.
 *
 *   kalshi-standin --port P --control-port C --cert CERT --key KEY --pubkey PUB --key-id ID
 *                  [--markets N] [--mps N] [--seed N] [--truth FILE] [--faults FILE]
 *                  [--ping-ms MS] [--subpenny PCT] [--fractional PCT] [--big N]
 *                  [--trade-permille N] [--overflow-bytes N] [--rest-page N] [--paused]
 *
 * Port P speaks TLS: WebSocket v2 at /trade-api/ws/v2 and REST v2 under /trade-api/v2.
 * Port C is plain HTTP on 127.0.0.1 for the tests (http.c lists the /_control paths).
 * SIGTERM/SIGINT flush the truth and fault logs and exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "standin.h"
#include "kb_str.h"
#include "kb_banned.h"

si_state S;

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int64_t
si_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + S.ts_skew_ms;
}

int64_t
si_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* xorshift64*: deterministic for a given --seed. */
uint64_t
si_rand(void)
{
    uint64_t x = S.rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    S.rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

void
si_refuse_push(si_refusals *r, int code, int n)
{
    for (int i = 0; i < n && r->n < 64; i++)
        r->q[(r->head + r->n++) % 64] = code;
}

int
si_refuse_pop(si_refusals *r)
{
    if (r->n == 0)
        return 0;
    int code = r->q[r->head];
    r->head = (r->head + 1) % 64;
    r->n--;
    return code;
}

static void
die(const char *what)
{
    fprintf(stderr, "kalshi-standin: %s\n", what);
    exit(1);
}

static int
listen_on(int port, bool loopback_only)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(loopback_only ? INADDR_LOOPBACK : INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 128) < 0)
        die("cannot listen (port in use?)");
    return fd;
}

/* Listener sentinels in epoll data (connections are pointers, never this small). */
#define TAG_TLS ((void *)1)
#define TAG_CTL ((void *)2)

void
si_conn_update(si_conn *c)
{
    if (c->fd < 0)
        return;
    uint32_t ev = EPOLLRDHUP;
    if (!c->silent) {
        ev |= EPOLLIN;
        if (c->out_off < c->out.len || (c->ssl != NULL && !c->tls_done))
            ev |= EPOLLOUT;
    }
    if (ev == c->events)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    epoll_ctl(S.ep, EPOLL_CTL_MOD, c->fd, &e);
    c->events = ev;
}

si_conn *
si_conn_by_id(int64_t id)
{
    for (int i = 0; i < S.nconns; i++) {
        if (S.conns[i]->id == id)
            return S.conns[i];
    }
    return NULL;
}

/* Closed connections are freed at the end of the loop turn (events may still name them). */
static si_conn **dead;
static int ndead, capdead;

void
si_conn_close(si_conn *c)
{
    if (c->fd < 0)
        return;
    epoll_ctl(S.ep, EPOLL_CTL_DEL, c->fd, NULL);
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    close(c->fd);
    c->fd = -1;
    for (int i = 0; i < c->nsubs; i++)
        si_sub_free(c->subs[i]);
    c->nsubs = 0;
    for (int i = 0; i < S.nconns; i++) {
        if (S.conns[i] == c) {
            S.conns[i] = S.conns[--S.nconns];
            break;
        }
    }
    if (ndead == capdead) {
        capdead = capdead ? capdead * 2 : 16;
        dead = realloc(dead, sizeof(*dead) * (size_t)capdead);
        if (dead == NULL)
            abort();
    }
    dead[ndead++] = c;
}

static void
reap(void)
{
    for (int i = 0; i < ndead; i++) {
        si_conn *c = dead[i];
        kb_buf_release(&c->in);
        kb_buf_release(&c->out);
        kb_buf_release(&c->msg);
        free(c->subs);
        free(c);
    }
    ndead = 0;
}

static void
accept_on(int lfd, bool tls)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        si_conn *c = calloc(1, sizeof(*c));
        if (c == NULL)
            abort();
        c->fd = fd;
        c->kind = tls ? K_HTTPS : K_CONTROL;
        c->id = ++S.conn_seq;
        c->next_sid = 1;
        if (tls) {
            c->ssl = SSL_new(S.tls);
            SSL_set_fd(c->ssl, fd);
        }
        if (S.nconns == S.capconns) {
            S.capconns = S.capconns ? S.capconns * 2 : 16;
            S.conns = realloc(S.conns, sizeof(*S.conns) * (size_t)S.capconns);
            if (S.conns == NULL)
                abort();
        }
        S.conns[S.nconns++] = c;
        struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP | (tls ? EPOLLOUT : 0),
                                .data.ptr = c};
        c->events = e.events;
        epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &e);
    }
}

/* Requests on an HTTP connection (REST, upgrade, control), one at a time. */
static void
http_input(si_conn *c)
{
    while (c->fd >= 0 && (c->kind == K_HTTPS || c->kind == K_CONTROL) && !c->closing) {
        si_http_req r;
        int rc = si_http_parse(c, &r);
        if (rc == 0)
            return;
        if (rc < 0) {
            si_http_reply(c, 400, "text/plain", "bad request\n", 12, false);
            return;
        }
        memmove(c->in.buf, c->in.buf + r.len, c->in.len - r.len);
        c->in.len -= r.len;
        const char *up = si_http_header(&r, "Upgrade");
        if (c->kind == K_HTTPS && up != NULL && strcasecmp(up, "websocket") == 0)
            si_ws_accept(c, &r);
        else
            si_http_handle(c, &r);
    }
}

static void
on_event(si_conn *c, uint32_t ev)
{
    if (c->fd < 0)
        return;
    if (c->silent) {
        /* Half-open: never read, never write; only notice the client going away. */
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            si_conn_close(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        int rc = si_net_read(c);
        if (c->kind == K_WS) {
            if (si_ws_input(c) < 0)
                rc = -1;
        } else {
            http_input(c);
        }
        if (rc < 0 && c->fd >= 0) {
            si_conn_close(c);
            return;
        }
    }
    if (c->fd < 0)
        return;
    if (si_net_flush(c) < 0) {
        si_conn_close(c);
        return;
    }
    if (c->closing && c->out_off == c->out.len) {
        si_conn_close(c);
        return;
    }
    si_conn_update(c);
}

static EVP_PKEY *
load_pub(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("cannot open --pubkey");
    EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL)
        die("--pubkey is not a PEM public key");
    return k;
}

static long
num_arg(const char *v, long min, long max, const char *name)
{
    int64_t n;
    const char *err;
    if (v == NULL || !kb_parse_i64(kb_str_c(v), min, max, &n, &err)) {
        fprintf(stderr, "kalshi-standin: %s: bad number\n", name);
        exit(64);
    }
    return (long)n;
}

int
main(int argc, char **argv)
{
    int port = 0, cport = 0, markets = 20, subpenny = 25, fractional = 25, big = 0;
    const char *cert = NULL, *key = NULL, *pub = NULL, *faults = NULL;
    uint64_t seed = 1;
    bool paused = false;
    S.mps = 200;
    S.ping_ms = 10000;
    S.trade_permille = 50;
    S.overflow_bytes = 32u << 20;
    S.rest_page = 1000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool used = true;
        if (strcmp(a, "--port") == 0)
            port = (int)num_arg(v, 1, 65535, a);
        else if (strcmp(a, "--control-port") == 0)
            cport = (int)num_arg(v, 1, 65535, a);
        else if (strcmp(a, "--cert") == 0)
            cert = v;
        else if (strcmp(a, "--key") == 0)
            key = v;
        else if (strcmp(a, "--pubkey") == 0)
            pub = v;
        else if (strcmp(a, "--key-id") == 0)
            S.key_id = v;
        else if (strcmp(a, "--markets") == 0)
            markets = (int)num_arg(v, 0, 100000, a);
        else if (strcmp(a, "--mps") == 0)
            S.mps = num_arg(v, 0, 10000000, a);
        else if (strcmp(a, "--seed") == 0)
            seed = (uint64_t)num_arg(v, 1, INT64_MAX, a);
        else if (strcmp(a, "--truth") == 0)
            S.truth_path = v;
        else if (strcmp(a, "--faults") == 0)
            faults = v;
        else if (strcmp(a, "--ping-ms") == 0)
            S.ping_ms = (int)num_arg(v, 50, 600000, a);
        else if (strcmp(a, "--subpenny") == 0)
            subpenny = (int)num_arg(v, 0, 100, a);
        else if (strcmp(a, "--fractional") == 0)
            fractional = (int)num_arg(v, 0, 100, a);
        else if (strcmp(a, "--big") == 0)
            big = (int)num_arg(v, 0, 100, a);
        else if (strcmp(a, "--trade-permille") == 0)
            S.trade_permille = (int)num_arg(v, 0, 1000, a);
        else if (strcmp(a, "--rest-page") == 0)
            S.rest_page = num_arg(v, 1, 1000, a);
        else if (strcmp(a, "--overflow-bytes") == 0)
            S.overflow_bytes = (size_t)num_arg(v, 4096, 1L << 32, a);
        else if (strcmp(a, "--paused") == 0) {
            paused = true;
            used = false;
        } else {
            fprintf(stderr, "kalshi-standin: unknown option '%s' (see t/kalshi/main.c)\n", a);
            return 64;
        }
        if (used) {
            if (v == NULL) {
                fprintf(stderr, "kalshi-standin: %s needs a value\n", a);
                return 64;
            }
            i++;
        }
    }
    if (!port || !cport || !cert || !key || !pub || !S.key_id)
        die("--port, --control-port, --cert, --key, --pubkey and --key-id are required");
    S.rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    S.pub = load_pub(pub);
    S.tls = SSL_CTX_new(TLS_server_method());
    if (S.tls == NULL || SSL_CTX_use_certificate_chain_file(S.tls, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(S.tls, key, SSL_FILETYPE_PEM) != 1)
        die("cannot load --cert/--key");
    SSL_CTX_set_mode(S.tls, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (S.truth_path != NULL && (S.truth = fopen(S.truth_path, "w")) == NULL)
        die("cannot write --truth");
    if (faults != NULL && (S.faults = fopen(faults, "w")) == NULL)
        die("cannot write --faults");
    if (S.faults != NULL)
        setvbuf(S.faults, NULL, _IOLBF, 0);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    int lt = listen_on(port, true), lc = listen_on(cport, true);
    struct epoll_event e1 = {.events = EPOLLIN, .data.ptr = TAG_TLS};
    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = TAG_CTL};
    epoll_ctl(S.ep, EPOLL_CTL_ADD, lt, &e1);
    epoll_ctl(S.ep, EPOLL_CTL_ADD, lc, &e2);

    si_feed_init(markets, subpenny, fractional, big);
    S.running = !paused;
    S.t0_us = si_mono_us();
    fprintf(stderr,
            "kalshi-standin: %d markets, %ld msgs/s, wss/https on 127.0.0.1:%d, "
            "control on http://127.0.0.1:%d\n",
            markets, (long)S.mps, port, cport);

    struct epoll_event evs[64];
    while (!stop_requested) {
        int n = epoll_wait(S.ep, evs, 64, 1);
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == TAG_TLS)
                accept_on(lt, true);
            else if (p == TAG_CTL)
                accept_on(lc, false);
            else
                on_event(p, evs[i].events);
        }
        si_feed_tick();
        si_ws_ping_due();
        /* Flush what the feed queued. */
        for (int i = 0; i < S.nconns; i++) {
            si_conn *c = S.conns[i];
            if (c->out_off < c->out.len && !c->silent) {
                if (si_net_flush(c) < 0) {
                    si_conn_close(c);
                    i--;
                    continue;
                }
                si_conn_update(c);
            }
        }
        reap();
    }
    si_truth_flush();
    if (S.truth != NULL)
        fclose(S.truth);
    if (S.faults != NULL)
        fclose(S.faults);
    fprintf(stderr, "kalshi-standin: stopped after %llu messages\n",
            (unsigned long long)S.msgs_sent);
    return 0;
}
