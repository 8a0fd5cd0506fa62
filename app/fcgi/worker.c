/* worker.c - one prefork worker: accept -> build kb_req -> dispatch -> respond.
 *
 * SIGTERM (and SIGINT) are blocked except inside epoll_pwait(), so a signal
 * can only arrive while the worker is idle: a request that has been accepted
 * is always finished before the worker exits.
 *
 * Each worker waits on the shared listen socket through an epoll instance of
 * its own, registered with EPOLLEXCLUSIVE, so a new connection wakes one idle
 * worker rather than all of them (with plain poll every idle worker woke, and
 * all but one found nothing to accept: three wasted wakeups per request with
 * four workers, on the CPUs that serve the requests). The wait stays
 * level-triggered: a worker coming back to it sees any connection still queued.
 */
#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <sodium.h>

#include "app.h"
#include "fcgi.h"
#include "kb_config.h"
#include "kb_journal.h"
#include "kb_log.h"
#include "kb_meter.h"
#include "kb_metrics.h"
#include "kb_time.h"
#include "kb_worker.h"
#include "kb_banned.h"

/* How long an idle worker keeps the transaction it began ahead for its next charge. */
#define PRE_IDLE_MS 100

static volatile sig_atomic_t stop_requested;

static void
on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void
setup_signals(sigset_t *idle_mask)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop; /* no SA_RESTART: epoll_pwait returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_SETMASK, &block, NULL);
    sigemptyset(idle_mask); /* everything deliverable while waiting */
}

static unsigned long
request_budget(void)
{
    if (kb_cfg.max_requests <= 0)
        return 0;
    /* Up to 10% jitter so workers started together do not recycle together. */
    unsigned long base = (unsigned long)kb_cfg.max_requests;
    unsigned long spread = base / 10;
    return base + (spread
                       ? randombytes_uniform((uint32_t)(spread > UINT32_MAX ? UINT32_MAX : spread))
                       : 0);
}

/* kb_fcgi_complete's callback, right before the write that completes the answer. */
static bool
answered(void *ctx)
{
    return kb_meter_answered(ctx);
}

/* kb_meter_send_fn: the answer goes out through FastCGI. */
static void
send_answer(void *ud, const kb_req *req, kb_ctx *ctx)
{
    kb_fcgi *f = ud;
    /* An answer cut off on its way (a stream failed mid-way, nginx stopped reading,
     * the charge could not be marked) is no answer: its charge is settled
     * (refunded) like any other failed one. */
    if (!kb_fcgi_write(f, req, ctx) || !kb_fcgi_complete(f, answered, ctx))
        kb_meter_cut(ctx);
    kb_fcgi_finish(f);
}

static void
serve_one(kb_fcgi *f, kb_worker *w, kb_ctx *ctx, kb_arena *arena)
{
    kb_req req;
    kb_ctx_reset(ctx);
    kb_fcgi_read(f, &req, arena, kb_cfg.max_body);
    kb_err err = kb_dispatch(&req, ctx);
    /* Refund and credit headers, the answer, then the charge's journal entry. */
    kb_meter_end(&req, ctx, err, send_answer, f);
    kb_resp_stream_drop(ctx); /* only when nothing was sent: sending closes it */
    kb_metrics_request(ctx->route_index, ctx->resp.status, kb_mono_us() - ctx->start_us);
    kb_log_request(ctx, &req);
    kb_arena_reset(arena);
    w->served++;
}

/* This worker's epoll instance on the listen socket, or -1 (logged). */
static int
listen_waiter(int listen_fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        kb_log_error("epoll_create1 failed: %s", strerror(errno));
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) != 0) {
        kb_log_error("epoll_ctl on the listen socket failed: %s", strerror(errno));
        close(ep);
        return -1;
    }
    return ep;
}

int
kb_worker_main(int listen_fd, int ready_fd, pid_t master)
{
    sigset_t idle_mask;
    kb_log_set_role("worker");
    setup_signals(&idle_mask);
    /* Die with the master; and if it is already gone, do not linger. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != master)
        return 0;

    kb_worker w;
    kb_worker_init(&w, "kalshibook-worker");
    /* Connect eagerly; a failure here is not fatal, requests retry with backoff. */
    (void)kb_db_connect(&w.db);
    w.journal = kb_journal_attach();
    if (w.journal == NULL)
        kb_log_warn("no charge journal entry for this worker: a charge cut off by its death "
                    "could not be refunded");

    int ep = listen_waiter(listen_fd);
    if (ep < 0)
        return 1;
    kb_fcgi *f = kb_fcgi_new(listen_fd);
    if (f == NULL) {
        kb_log_error("unable to initialise FastCGI on fd %d", listen_fd);
        close(ep);
        return 1;
    }
    kb_arena arena;
    kb_arena_init(&arena, 0);
    kb_ctx ctx;
    kb_ctx_init(&ctx, &w, &arena);

    int32_t me = (int32_t)getpid();
    if (write(ready_fd, &me, sizeof(me)) != (ssize_t)sizeof(me))
        kb_log_warn("unable to report readiness to the master");
    close(ready_fd);

    kb_log_hold(true);
    unsigned long budget = request_budget();
    int rc = 0;
    while (!stop_requested && (budget == 0 || w.served < budget)) {
        /* Charges left unsettled (this worker's refund hit a dead database, or a
         * worker died holding one) are settled while idle; retried every second. */
        bool unsettled = false;
        if (kb_journal_work_waiting(w.journal)) {
            unsettled = !kb_meter_settle_pending(&w, &arena);
            kb_arena_reset(&arena);
        }
        /* Request lines wait (kb_log_hold) while connections do; going idle, the
         * worker writes them first. */
        struct epoll_event ev;
        int n = kb_log_due_ms() >= 0 ? epoll_pwait(ep, &ev, 1, 0, &idle_mask) : 0;
        if (n == 0) {
            kb_log_flush();
            /* A transaction begun ahead for the next charge (lib/db.c) is not kept
             * open through a pause: it holds back vacuum, and the next charge
             * would find it too old anyway. */
            bool pre = kb_db_pre_open(&w.db);
            n = epoll_pwait(ep, &ev, 1, pre ? PRE_IDLE_MS : unsettled ? 1000 : -1, &idle_mask);
            if (n == 0 && pre) {
                kb_db_pre_end(&w.db);
                continue;
            }
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            kb_log_error("waiting on the listen socket failed: %s", strerror(errno));
            rc = 1;
            break;
        }
        if (stop_requested)
            break;
        if (n == 0)
            continue;
        int a = kb_fcgi_accept(f);
        if (a < 0) {
            rc = 1;
            break;
        }
        if (a == 1)
            serve_one(f, &w, &ctx, &arena);
    }

    kb_log_hold(false);
    if (kb_journal_state(w.journal) != KB_J_IDLE) {
        kb_journal_charge c;
        kb_journal_get(w.journal, &c);
        kb_log_warn("exiting with the charge of request %s unsettled; another worker settles it",
                    c.request_id);
    }
    kb_ctx_release(&ctx);
    kb_arena_release(&arena);
    kb_fcgi_free(f);
    close(ep);
    kb_worker_release(&w);
    close(listen_fd);
    return rc;
}
