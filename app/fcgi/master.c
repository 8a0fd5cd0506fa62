/* master.c - kalshibook-fcgi: the prefork master (socket, workers, signals).
 *
 * The master owns the FastCGI listen socket (app/fcgi/listen.c: bound, or inherited
 * from systemd via LISTEN_FDS), forks KB_WORKERS workers and then only supervises:
 *   SIGCHLD  a dead worker is respawned; crash loops back off up to 10 s.
 *   SIGHUP   workers are replaced one at a time: the old one is told to stop
 *            only once its replacement reported ready, so the pool never
 *            shrinks and the socket's backlog holds requests meanwhile.
 *   SIGTERM  (or SIGINT) workers finish in-flight requests and exit; after
 *            KB_DRAIN_TIMEOUT_S the rest are killed.
 * With STRIPE_SECRET_KEY set (and KB_USAGE_REPORTER=1) one more child runs the
 * usage reporter loop (app/fcgi/reporter.c): respawned when it dies, sent SIGTERM on
 * stop, untouched by SIGHUP reloads.
 * Before it forks anything the master claims its host id's lease in Postgres
 * (lib/kb_host.h) and refuses to start when another live pool holds it; the
 * lease keeper child (app/fcgi/keeper.c) then renews it and settles what dead hosts
 * left in flight; it ends the lease once every worker is gone. The master
 * touches the database only for that claim, never for a request.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "kb_config.h"
#include "kb_log.h"
#include "kb_metrics.h"
#include "kb_shared.h"
#include "kb_str.h"
#include "kb_time.h"
#include "kb_host.h"
#include "kb_journal.h"
#include "keeper.h"
#include "listen.h"
#include "reporter.h"
#include "sdnotify.h"
#include "worker.h"
#include "kb_banned.h"

#define MAX_WORKERS 256
#define KB_WORKERS_PER_CORE 8
#define KB_WORKERS_DEFAULT_MAX 64
#define MAX_RETIRING 512
#define CRASH_WINDOW_US 5000000
#define BACKOFF_MAX_US 10000000

typedef struct slot {
    pid_t pid;      /* serving worker, 0 when empty */
    pid_t next_pid; /* replacement being started (reload), 0 when none */
    unsigned gen;   /* reload generation the worker was started in */
    bool ready;
    int64_t started_us;
    int64_t respawn_at; /* monotonic; 0 = no respawn scheduled */
} slot;

typedef struct retiring {
    pid_t pid;
    int64_t kill_at;
} retiring;

typedef struct master {
    int listen_fd;
    bool own_socket; /* we created the path and unlink it on exit */
    int ready_r, ready_w;
    int sig_fd;
    size_t n;
    slot slots[MAX_WORKERS];
    retiring ret[MAX_RETIRING];
    size_t nret;
    unsigned gen;
    unsigned crashes;
    bool stopping;
    bool announced_ready;
    bool reloading;
    int64_t stop_deadline;
    kb_reporter reporter; /* the usage reporter child (app/fcgi/reporter.c) */
    kb_keeper keeper;     /* the host lease keeper child (app/fcgi/keeper.c) */
    int rc;               /* exit status of the master */
} master;

static pid_t
spawn(master *m)
{
    pid_t master_pid = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        kb_log_error("unable to fork worker: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        close(m->sig_fd);
        close(m->ready_r);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int rc = kb_worker_main(m->listen_fd, m->ready_w, master_pid);
        exit(rc);
    }
    return pid;
}

static void
start_slot(master *m, size_t i)
{
    slot *s = &m->slots[i];
    pid_t pid = spawn(m);
    s->respawn_at = 0;
    if (pid < 0) {
        s->respawn_at = kb_mono_us() + 1000000;
        return;
    }
    s->pid = pid;
    s->ready = false;
    s->gen = m->gen;
    s->started_us = kb_mono_us();
    kb_log_info("started worker %ld in slot %zu", (long)pid, i);
}

static void
retire(master *m, pid_t pid)
{
    kill(pid, SIGTERM);
    if (m->nret < MAX_RETIRING) {
        m->ret[m->nret].pid = pid;
        m->ret[m->nret].kill_at = kb_mono_us() + kb_cfg.drain_timeout_s * 1000000;
        m->nret++;
    }
}

/* The master's descriptors, which the reporter child closes. */
static void
reporter_start(master *m)
{
    if (m->stopping) {
        m->reporter.respawn_at = 0;
        return;
    }
    const int fds[] = {m->sig_fd, m->ready_r, m->ready_w, m->listen_fd};
    kb_reporter_start(&m->reporter, fds, sizeof(fds) / sizeof(fds[0]));
}

/* The master's descriptors, which the keeper child closes. */
static void
keeper_start(master *m)
{
    if (m->stopping) {
        m->keeper.respawn_at = 0;
        return;
    }
    const int fds[] = {m->sig_fd, m->ready_r, m->ready_w, m->listen_fd};
    kb_keeper_start(&m->keeper, fds, sizeof(fds) / sizeof(fds[0]));
}

static void begin_stop(master *m, int sig);

/* Reload: start the replacement of the next slot from an older generation. */
static void
reload_step(master *m)
{
    if (m->stopping)
        return;
    for (size_t i = 0; i < m->n; i++) {
        if (m->slots[i].next_pid != 0)
            return; /* one at a time */
    }
    for (size_t i = 0; i < m->n; i++) {
        slot *s = &m->slots[i];
        if (s->pid != 0 && s->gen != m->gen) {
            pid_t pid = spawn(m);
            if (pid > 0) {
                s->next_pid = pid;
                kb_log_info("reload: started worker %ld to replace %ld", (long)pid, (long)s->pid);
            }
            return;
        }
    }
    if (m->reloading) {
        m->reloading = false;
        kb_log_info("reload complete");
        kb_sd_notify("READY=1");
    }
}

static void
on_ready(master *m, pid_t pid)
{
    for (size_t i = 0; i < m->n; i++) {
        slot *s = &m->slots[i];
        if (s->pid == pid) {
            s->ready = true;
        } else if (s->next_pid == pid) {
            pid_t old = s->pid;
            s->pid = pid;
            s->next_pid = 0;
            s->ready = true;
            s->gen = m->gen;
            s->started_us = kb_mono_us();
            if (old > 0)
                retire(m, old);
            reload_step(m);
        }
    }
    if (!m->announced_ready) {
        bool all = true;
        for (size_t i = 0; i < m->n; i++)
            all = all && m->slots[i].ready;
        if (all) {
            m->announced_ready = true;
            kb_log_info("all %zu workers ready", m->n);
            kb_sd_notify("READY=1");
        }
    }
}

static void
drain_ready_pipe(master *m)
{
    int32_t pids[64];
    for (;;) {
        ssize_t r = read(m->ready_r, pids, sizeof(pids));
        if (r <= 0)
            return;
        for (ssize_t k = 0; k < r / (ssize_t)sizeof(int32_t); k++)
            on_ready(m, (pid_t)pids[k]);
    }
}

static void
describe_exit(int status, char *out, size_t outsz)
{
    if (WIFSIGNALED(status))
        snprintf(out, outsz, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, outsz, "exited with status %d", WEXITSTATUS(status));
}

static void
reap(master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        char how[64];
        describe_exit(status, how, sizeof(how));
        /* Its unsettled charge, if any, goes to another worker. */
        if (kb_journal_orphan(pid) > 0)
            kb_metrics_add(KB_M_CHARGES_ORPHANED, 1);
        bool found = kb_reporter_reaped(&m->reporter, pid, how, m->stopping);
        int stop_rc = 0;
        if (!found && kb_keeper_reaped(&m->keeper, pid, status, how, m->stopping, &stop_rc)) {
            found = true;
            if (stop_rc != 0) {
                /* Refused (78) or lease lost (75): the pool stops with it. */
                m->rc = stop_rc;
                begin_stop(m, SIGTERM);
            }
        }
        for (size_t k = 0; k < m->nret; k++) {
            if (m->ret[k].pid == pid) {
                m->ret[k] = m->ret[--m->nret];
                kb_log_info("retired worker %ld %s", (long)pid, how);
                found = true;
                break;
            }
        }
        for (size_t i = 0; !found && i < m->n; i++) {
            slot *s = &m->slots[i];
            if (s->next_pid == pid) {
                /* The replacement died before it was ready: try again. */
                s->next_pid = 0;
                kb_log_warn("replacement worker %ld %s", (long)pid, how);
                found = true;
                if (!m->stopping)
                    reload_step(m);
            } else if (s->pid == pid) {
                found = true;
                s->pid = 0;
                s->ready = false;
                if (m->stopping)
                    break;
                bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
                int64_t now = kb_mono_us();
                if (clean) {
                    kb_metrics_add(KB_M_WORKER_RECYCLES, 1);
                    kb_log_info("worker %ld recycled; respawning", (long)pid);
                    m->crashes = 0;
                    start_slot(m, i);
                } else {
                    if (now - s->started_us < CRASH_WINDOW_US)
                        m->crashes++;
                    else
                        m->crashes = 0;
                    int64_t delay = 0;
                    if (m->crashes > 0) {
                        delay = 100000LL << (m->crashes > 7 ? 7 : m->crashes - 1);
                        if (delay > BACKOFF_MAX_US)
                            delay = BACKOFF_MAX_US;
                    }
                    kb_metrics_add(KB_M_WORKER_RESTARTS, 1);
                    kb_log_error("worker %ld %s; respawning in %lld ms", (long)pid, how,
                                 (long long)(delay / 1000));
                    if (delay == 0)
                        start_slot(m, i);
                    else
                        s->respawn_at = now + delay;
                }
            }
        }
        if (!found)
            kb_log_info("child %ld %s", (long)pid, how);
    }
}

/* Children but the keeper (it goes last). */
static size_t
live_children(const master *m)
{
    size_t n = m->nret + (m->reporter.pid != 0);
    for (size_t i = 0; i < m->n; i++)
        n += (m->slots[i].pid != 0) + (m->slots[i].next_pid != 0);
    return n;
}

static void
begin_stop(master *m, int sig)
{
    if (m->stopping)
        return;
    m->stopping = true;
    m->stop_deadline = kb_mono_us() + kb_cfg.drain_timeout_s * 1000000;
    kb_log_info("received signal %d; draining %zu workers", sig, live_children(m));
    kb_sd_notify("STOPPING=1");
    for (size_t i = 0; i < m->n; i++) {
        slot *s = &m->slots[i];
        s->respawn_at = 0;
        if (s->pid)
            kill(s->pid, SIGTERM);
        if (s->next_pid)
            kill(s->next_pid, SIGTERM);
    }
    for (size_t k = 0; k < m->nret; k++)
        kill(m->ret[k].pid, SIGTERM);
    kb_reporter_stop(&m->reporter);
}

static void
kill_all(master *m)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->slots[i].pid)
            kill(m->slots[i].pid, SIGKILL);
        if (m->slots[i].next_pid)
            kill(m->slots[i].next_pid, SIGKILL);
    }
    for (size_t k = 0; k < m->nret; k++)
        kill(m->ret[k].pid, SIGKILL);
    kb_reporter_kill(&m->reporter);
    kb_keeper_kill(&m->keeper);
}

/* Milliseconds until the next timed event, -1 for none. */
static int
next_timeout_ms(const master *m, int64_t now)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < m->n; i++) {
        if (m->slots[i].respawn_at && m->slots[i].respawn_at < next)
            next = m->slots[i].respawn_at;
    }
    for (size_t k = 0; k < m->nret; k++) {
        if (m->ret[k].kill_at < next)
            next = m->ret[k].kill_at;
    }
    if (m->stopping && m->stop_deadline < next)
        next = m->stop_deadline;
    if (m->reporter.respawn_at && m->reporter.respawn_at < next)
        next = m->reporter.respawn_at;
    if (m->keeper.respawn_at && m->keeper.respawn_at < next)
        next = m->keeper.respawn_at;
    if (next == INT64_MAX)
        return -1;
    int64_t ms = (next - now) / 1000 + 1;
    return ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
}

static void
timers(master *m)
{
    int64_t now = kb_mono_us();
    for (size_t i = 0; i < m->n && !m->stopping; i++) {
        if (m->slots[i].respawn_at && m->slots[i].respawn_at <= now)
            start_slot(m, i);
    }
    if (m->reporter.respawn_at && m->reporter.respawn_at <= now)
        reporter_start(m);
    if (m->keeper.respawn_at && m->keeper.respawn_at <= now)
        keeper_start(m);
    for (size_t k = 0; k < m->nret; k++) {
        if (m->ret[k].kill_at <= now) {
            kb_log_warn("worker %ld did not drain in time; killing it", (long)m->ret[k].pid);
            kill(m->ret[k].pid, SIGKILL);
            m->ret[k].kill_at = INT64_MAX;
        }
    }
    if (m->stopping && m->stop_deadline <= now) {
        kb_log_warn("drain timeout; killing %zu remaining workers", live_children(m));
        kill_all(m);
        m->stop_deadline = INT64_MAX;
    }
}

static int
run(master *m)
{
    keeper_start(m);
    for (size_t i = 0; i < m->n; i++)
        start_slot(m, i);
    reporter_start(m);
    for (;;) {
        if (m->stopping && live_children(m) == 0) {
            /* Every worker is gone: now the keeper may end the lease. */
            if (m->keeper.pid == 0)
                break;
            kb_keeper_stop(&m->keeper);
        }
        struct pollfd pfd[2] = {{m->sig_fd, POLLIN, 0}, {m->ready_r, POLLIN, 0}};
        int n = poll(pfd, 2, next_timeout_ms(m, kb_mono_us()));
        if (n < 0 && errno != EINTR) {
            kb_log_error("master poll failed: %s", strerror(errno));
            return 1;
        }
        if (n > 0 && (pfd[1].revents & POLLIN))
            drain_ready_pipe(m);
        if (n > 0 && (pfd[0].revents & POLLIN)) {
            struct signalfd_siginfo si;
            while (read(m->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                switch (si.ssi_signo) {
                case SIGCHLD:
                    reap(m);
                    break;
                case SIGHUP:
                    if (!m->stopping) {
                        m->gen++;
                        m->reloading = true;
                        kb_log_info("received SIGHUP; replacing workers one by one");
                        kb_sd_notify("RELOADING=1");
                        reload_step(m);
                    }
                    break;
                default:
                    begin_stop(m, (int)si.ssi_signo);
                    break;
                }
            }
        }
        timers(m);
    }
    return m->rc;
}

static bool
journal_in_file(void)
{
    return kb_cfg.journal_dir != NULL && strcmp(kb_cfg.journal_dir, "none") != 0;
}

/* The charge journal: a worker's unsettled charge outlives the worker, and in a file
 * (KB_JOURNAL_DIR) the whole pool. */
static void
journal_open(const char *host_id)
{
    if (journal_in_file()) {
        if (kb_journal_init_file(kb_cfg.journal_dir, host_id, kb_host_self_get()->life) == 0)
            return;
        kb_log_error("unable to create the charge journal in KB_JOURNAL_DIR '%s' (%s); it is "
                     "kept in memory: a restart will not settle what this pool has in flight "
                     "if it dies whole (the host settlement from meter_inflight still does)",
                     kb_cfg.journal_dir, strerror(errno));
    }
    if (kb_journal_init() != 0)
        kb_log_error("unable to map the charge journal; charges of requests cut off by a "
                     "dying worker will not be refunded");
}

/* What earlier pools of this host id left in their journal files: the workers settle it. */
static void
journal_adopt(const char *host_id)
{
    if (!journal_in_file())
        return;
    kb_journal_adopted a;
    if (kb_journal_adopt(kb_cfg.journal_dir, host_id, &a) != 0) {
        kb_log_error("unable to read KB_JOURNAL_DIR '%s': %s", kb_cfg.journal_dir, strerror(errno));
        return;
    }
    if (a.files > 0 || a.alive > 0 || a.full > 0 || a.damaged > 0)
        kb_log_warn("charge journals of earlier pools of host id '%s': %d taken over with %d "
                    "charges to settle, %d still held by a live process, %d kept (no room), "
                    "%d damaged and removed",
                    host_id, a.files, a.entries, a.alive, a.full, a.damaged);
}

int
main(void)
{
    kb_buf problems = KB_BUF_INIT;
    if (kb_config_load(&kb_cfg, &problems) != 0) {
        fprintf(stderr, "kalshibook-fcgi: invalid configuration:\n%s", kb_buf_cstr(&problems));
        kb_buf_release(&problems);
        return 78; /* EX_CONFIG */
    }
    kb_buf_release(&problems);
    kb_log_level level = KB_LOG_INFO;
    kb_log_level_parse(kb_cfg.log_level, &level);
    kb_log_init("master", level);
    if (sodium_init() < 0) {
        kb_log_error("unable to initialise libsodium");
        return 1;
    }
    kb_shared_init(); /* before any fork: every worker shares the hash slots */

    /* Shared counters for /metrics, inherited by every child. */
    if (kb_metrics_init() != 0)
        kb_log_warn("unable to map shared metrics; /metrics will be empty");
    static master m;
    /* The host id and its lease, before anything is forked or bound. */
    char host_id[KB_HOST_ID_MAX + 1];
    const char *why_id;
    if (!kb_host_id_resolve(kb_cfg.host_id, host_id, &why_id)) {
        fprintf(stderr, "kalshibook-fcgi: invalid configuration:\n%s\n", why_id);
        return 78;
    }
    kb_host_self_set(host_id);
    journal_open(host_id);
    {
        kb_db db;
        kb_buf why = KB_BUF_INIT;
        kb_db_init(&db, kb_cfg.database_url, "kalshibook-host", kb_cfg.db_connect_timeout_s, 5000);
        kb_host_lease l = kb_host_claim(&db, kb_cfg.host_lease_ms, kb_cfg.host_lease_ms + 1000,
                                        &why);
        kb_db_release(&db);
        if (l == KB_HOST_HELD) {
            kb_log_error("refusing to start: %s", kb_buf_cstr(&why));
            fprintf(stderr, "kalshibook-fcgi: refusing to start: %s\n", kb_buf_cstr(&why));
            kb_buf_release(&why);
            return KB_KEEPER_HELD;
        }
        kb_buf_release(&why);
        m.keeper.leased = l == KB_HOST_OURS;
        journal_adopt(host_id);
        if (m.keeper.leased)
            kb_log_info("host id '%s' leased (life %s)", host_id, kb_host_self_get()->life);
        else
            kb_log_warn("host id '%s': the database is unreachable; the lease keeper claims the "
                        "id when it answers, and no charge commits before",
                        host_id);
    }
    m.listen_fd = kb_listen_inherited();
    if (m.listen_fd < 0) {
        m.listen_fd = kb_listen_bind(kb_cfg.socket_path, kb_cfg.socket_mode);
        if (m.listen_fd < 0)
            return 1;
        m.own_socket = true;
    }
    /* Non-blocking, so an idle worker never sleeps in accept() (see fcgi.c). */
    int fl = fcntl(m.listen_fd, F_GETFL);
    fcntl(m.listen_fd, F_SETFL, fl | O_NONBLOCK);

    /* Default: KB_WORKERS_PER_CORE per core (a metered request holds its worker
     * while Postgres flushes the charge's commit; docs/ops.md step 4 has the
     * measurements), at most KB_WORKERS_DEFAULT_MAX (each holds a Postgres
     * connection; Postgres allows 100 by default). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t dflt = KB_WORKERS_PER_CORE * (size_t)(cores > 0 ? cores : 1);
    if (dflt > KB_WORKERS_DEFAULT_MAX)
        dflt = KB_WORKERS_DEFAULT_MAX;
    m.n = kb_cfg.workers > 0 ? (size_t)kb_cfg.workers : dflt;
    if (m.n > MAX_WORKERS)
        m.n = MAX_WORKERS;

    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return 1;
    m.ready_r = p[0];
    m.ready_w = p[1];
    fcntl(m.ready_r, F_SETFL, fcntl(m.ready_r, F_GETFL) | O_NONBLOCK);

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGCHLD);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    m.sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (m.sig_fd < 0)
        return 1;

    kb_log_info("starting %zu workers on %s", m.n,
                m.own_socket ? kb_cfg.socket_path : "an inherited socket");
    int rc = run(&m);
    if (m.own_socket)
        unlink(kb_cfg.socket_path);
    close(m.listen_fd);
    kb_log_info("stopped");
    return rc;
}
