/* test_fcgi.c - the FastCGI adapter's end of an answer (app/fcgi/fcgi.c), against a
 * client that speaks FastCGI over a Unix socket the way nginx does.
 *
 * What the meter relies on: answered() runs once, right before the write that
 * gives the peer the whole answer, and never when the peer cannot get it. A small
 * answer goes out in that one write; a large one goes out as it is written, all
 * but its end.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check_main.h"
#include "fcgi.h"
#include "kb_arena.h"
#include "kb_http.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

enum { BEGIN_REQUEST = 1, END_REQUEST = 3, PARAMS = 4, STDIN = 5, STDOUT = 6 };

/* An abstract socket name (nothing on disk), one per test process. */
static struct sockaddr_un sock_addr;
static socklen_t sock_len;
static int listen_fd = -1;

static void
listen_setup(void)
{
    sock_addr.sun_family = AF_UNIX;
    int n = snprintf(sock_addr.sun_path + 1, sizeof(sock_addr.sun_path) - 1, "kb-fcgi-test-%ld",
                     (long)getpid());
    sock_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(listen_fd, 0);
    ck_assert_int_eq(bind(listen_fd, (struct sockaddr *)&sock_addr, sock_len), 0);
    ck_assert_int_eq(listen(listen_fd, 8), 0);
    /* As the pool's: workers poll it and take a connection without blocking. */
    ck_assert_int_eq(fcntl(listen_fd, F_SETFL, O_NONBLOCK), 0);
}

static void
put_record(char *buf, size_t *len, int type, const char *content, size_t n)
{
    unsigned char h[8] = {
        1, (unsigned char)type, 0, 1, (unsigned char)(n >> 8), (unsigned char)(n & 0xff), 0, 0};
    memcpy(buf + *len, h, sizeof(h));
    *len += sizeof(h);
    memcpy(buf + *len, content, n);
    *len += n;
}

static void
put_param(char *p, size_t *n, const char *name, const char *value)
{
    p[(*n)++] = (char)strlen(name);
    p[(*n)++] = (char)strlen(value);
    memcpy(p + *n, name, strlen(name));
    *n += strlen(name);
    memcpy(p + *n, value, strlen(value));
    *n += strlen(value);
}

/* A connection with one whole GET request on it, as nginx sends it (keep_conn). */
static int
client(void)
{
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&sock_addr, sock_len), 0);
    char buf[1024], params[512];
    size_t len = 0, n = 0;
    const char begin[8] = {0, 1, 1 /* FCGI_KEEP_CONN */, 0, 0, 0, 0, 0};
    put_record(buf, &len, BEGIN_REQUEST, begin, sizeof(begin));
    put_param(params, &n, "REQUEST_METHOD", "GET");
    put_param(params, &n, "REQUEST_URI", "/markets/T1");
    put_param(params, &n, "KB_REQUEST_ID", "req_0123456789ab");
    put_record(buf, &len, PARAMS, params, n);
    put_record(buf, &len, PARAMS, "", 0);
    put_record(buf, &len, STDIN, "", 0);
    ck_assert_int_eq(write(c, buf, len), (ssize_t)len);
    return c;
}

typedef struct answer {
    size_t stdout_len;
    char *body; /* after the header block */
    size_t body_len;
    bool ended; /* an END_REQUEST record */
} answer;

/* Bytes read_answer() has read so far (it may run in a thread of its own). */
static _Atomic size_t got;

/* Everything the client gets until the worker closes its end. */
static void
read_answer(int c, answer *out)
{
    size_t cap = 1 << 20, len = 0;
    char *raw = malloc(cap);
    ck_assert_ptr_nonnull(raw);
    for (;;) {
        ssize_t n = read(c, raw + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        got = len;
        ck_assert_uint_lt(len, cap);
    }
    memset(out, 0, sizeof(*out));
    char *std = malloc(len + 1);
    ck_assert_ptr_nonnull(std);
    size_t at = 0;
    while (at + 8 <= len) {
        const unsigned char *h = (const unsigned char *)raw + at;
        if (h[0] != 1)
            break; /* the aborted answer's bad record */
        size_t n = ((size_t)h[4] << 8) | h[5], pad = h[6];
        ck_assert_uint_le(at + 8 + n + pad, len);
        if (h[1] == STDOUT) {
            memcpy(std + out->stdout_len, raw + at + 8, n);
            out->stdout_len += n;
        } else if (h[1] == END_REQUEST) {
            out->ended = true;
        }
        at += 8 + n + pad;
    }
    std[out->stdout_len] = '\0';
    char *sep = strstr(std, "\r\n\r\n");
    ck_assert_ptr_nonnull(sep);
    out->body_len = out->stdout_len - (size_t)(sep + 4 - std);
    out->body = malloc(out->body_len + 1);
    ck_assert_ptr_nonnull(out->body);
    memcpy(out->body, sep + 4, out->body_len + 1);
    free(std);
    free(raw);
}

/* Bytes the client could read now, without waiting (they are consumed). */
static size_t
readable_now(int c)
{
    char buf[1 << 16];
    size_t total = 0;
    for (;;) {
        ssize_t n = recv(c, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return total;
        total += (size_t)n;
    }
}

typedef struct calls {
    int n;
    bool reply;
    int client;    /* the client's end to peek at, or -1 */
    ssize_t early; /* bytes it could read (or, with client -1, had read) when answered() ran */
} calls;

static bool
answered(void *arg)
{
    calls *k = arg;
    k->n++;
    if (k->client >= 0) {
        char buf[1 << 16];
        k->early = recv(k->client, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    } else {
        /* What went out before now reaches the reading thread within microseconds
         * (its count is stored just after the read returns); a second is the
         * deadline for that, not a guess at a delay. */
        int64_t until = kb_mono_us() + 1000000;
        while (got == 0 && kb_mono_us() < until)
            sched_yield();
        k->early = (ssize_t)got;
    }
    return k->reply;
}

/* The worker's end of the connection: the socket named as the listener, not it. */
static int
server_fd(void)
{
    for (int fd = 0; fd < 1024; fd++) {
        struct sockaddr_un a;
        socklen_t len = sizeof(a);
        if (fd == listen_fd || getsockname(fd, (struct sockaddr *)&a, &len) != 0)
            continue;
        if (len == sock_len && memcmp(&a, &sock_addr, len) == 0)
            return fd;
    }
    ck_abort_msg("no accepted connection");
    return -1;
}

typedef struct served {
    kb_fcgi *f;
    kb_arena arena;
    kb_worker w;
    kb_ctx ctx;
    kb_req req;
} served;

/* Accept the request on c and write an answer with a body of n bytes. */
static void
serve(served *s, size_t n)
{
    s->f = kb_fcgi_new(listen_fd);
    ck_assert_ptr_nonnull(s->f);
    ck_assert_int_eq(kb_fcgi_accept(s->f), 1);
    kb_arena_init(&s->arena, 0);
    memset(&s->w, 0, sizeof(s->w));
    kb_ctx_init(&s->ctx, &s->w, &s->arena);
    kb_fcgi_read(s->f, &s->req, &s->arena, 1024);
    ck_assert_str_eq(s->req.request_id, "req_0123456789ab");
    s->ctx.resp.status = 200;
    for (size_t i = 0; i < n; i++)
        kb_buf_putc(&s->ctx.resp.body, (char)('a' + i % 26));
    ck_assert(kb_fcgi_write(s->f, &s->req, &s->ctx));
}

static void
done(served *s)
{
    kb_fcgi_finish(s->f);
    kb_fcgi_free(s->f);
    kb_ctx_release(&s->ctx);
    kb_arena_release(&s->arena);
}

static void
check_body(const answer *a, size_t n)
{
    ck_assert_uint_eq(a->body_len, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_eq(a->body[i], 'a' + (int)(i % 26));
}

/* A small answer: nothing reaches the client before answered(), then all of it. */
START_TEST(small_answer_goes_out_whole_after_answered)
{
    listen_setup();
    int c = client();
    served s;
    serve(&s, 1200);
    ck_assert_uint_eq(readable_now(c), 0);
    calls k = {0, true, c, -2};
    ck_assert(kb_fcgi_complete(s.f, answered, &k));
    ck_assert_int_eq(k.n, 1);
    ck_assert_int_lt(k.early, 0); /* nothing had gone out when it ran */
    done(&s);
    answer a;
    read_answer(c, &a);
    check_body(&a, 1200);
    ck_assert(a.ended);
    free(a.body);
    close(c);
}
END_TEST

/* A large answer goes out as it is written, but for its end, which waits for
 * answered(). */
START_TEST(large_answer_holds_back_only_its_end)
{
    listen_setup();
    int c = client();
    served s;
    size_t n = 100000;
    serve(&s, n);
    size_t early = readable_now(c);
    ck_assert_uint_gt(early, 0);
    ck_assert_uint_lt(early, n);
    calls k = {0, true, -1, 0};
    ck_assert(kb_fcgi_complete(s.f, answered, &k));
    ck_assert_int_eq(k.n, 1);
    done(&s);
    close(c);
}
END_TEST

typedef struct reader {
    int c;
    answer a;
} reader;

static void *
read_in_thread(void *arg)
{
    reader *r = arg;
    read_answer(r->c, &r->a);
    return NULL;
}

/* A send buffer too small to take libfcgi's buffer in one piece: the buffered part
 * goes out before answered() (the client, reading as nginx does, has it by then),
 * only the end after it, and the answer is whole. */
START_TEST(small_send_buffer_sends_the_buffered_part_first)
{
    listen_setup();
    int c = client();
    served s;
    serve(&s, 3000);
    int small = 2048; /* the kernel doubles it: about 4 KiB */
    ck_assert_int_eq(setsockopt(server_fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    got = 0;
    reader r = {.c = c};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, read_in_thread, &r), 0);
    calls k = {0, true, -1, 0};
    ck_assert(kb_fcgi_complete(s.f, answered, &k));
    ck_assert_int_eq(k.n, 1);
    ck_assert_int_gt(k.early, 0); /* part of it had gone out when it ran */
    done(&s);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    check_body(&r.a, 3000);
    ck_assert(r.a.ended);
    free(r.a.body);
    close(c);
}
END_TEST

/* The peer hung up before the end: answered() is not asked, the answer is cut. */
START_TEST(peer_gone_before_the_end_is_not_answered)
{
    listen_setup();
    int c = client();
    served s;
    serve(&s, 1200);
    close(c);
    calls k = {0, true, -1, 0};
    ck_assert(!kb_fcgi_complete(s.f, answered, &k));
    ck_assert_int_eq(k.n, 0);
    done(&s);
}
END_TEST

/* answered() refusing (the charge could not be marked) cuts the answer: the client
 * never gets its end. */
START_TEST(answered_refusing_cuts_the_answer)
{
    listen_setup();
    int c = client();
    served s;
    serve(&s, 1200);
    calls k = {0, false, -1, 0};
    ck_assert(!kb_fcgi_complete(s.f, answered, &k));
    ck_assert_int_eq(k.n, 1);
    done(&s);
    answer a;
    read_answer(c, &a);
    ck_assert(!a.ended);
    ck_assert_uint_lt(a.body_len, 1200);
    free(a.body);
    close(c);
}
END_TEST

int
main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as in the workers */
    Suite *s = suite_create("fcgi");
    TCase *tc = tcase_create("end");
    tcase_add_test(tc, small_answer_goes_out_whole_after_answered);
    tcase_add_test(tc, large_answer_holds_back_only_its_end);
    tcase_add_test(tc, small_send_buffer_sends_the_buffered_part_first);
    tcase_add_test(tc, peer_gone_before_the_end_is_not_answered);
    tcase_add_test(tc, answered_refusing_cuts_the_answer);
    suite_add_tcase(s, tc);
    return kb_check_run(s);
}
