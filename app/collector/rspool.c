/* rspool.c - the reader's side of the spool: records collect in a batch during one
 * loop turn, the batch is written to the current file with one write(2), handed to
 * the writer's queue, and only then are its frames parsed (feed.c).
 *
 * A new file starts at every start and at every wall-clock hour (KB_COLLECTOR_SPOOL_FILE_S,
 * 3600 s by default). A syncer thread
 * fdatasync()s the current file once a second, on a dup of its descriptor, so the
 * reader never waits for the disk. A batch that cannot be written stops the process:
 * the spool is the record of what was received, and the writer reads it back by
 * offset; systemd restarts the collector, which records the outage as a gap.
 */
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "collector.h"
#include "kb_log.h"
#include "kb_spool.h"
#include "kb_banned.h"

typedef struct frame {
    int conn;
    int64_t epoch, wall_ns;
    size_t off, len;
} frame;

static struct {
    int fd;
    long file_no;
    int64_t off;       /* bytes in the current file */
    int64_t period;    /* wall-clock period (KB_COLLECTOR_SPOOL_FILE_S) of the current file */
    kb_buf batch, cur; /* records being collected / being parsed */
    frame *fr, *curfr;
    int nfr, capfr, ncur, capcur;
    pthread_mutex_t mu;
    pthread_t syncer;
    bool syncing;
    atomic_int stop;
} SP = {.fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};

static int
open_file(int64_t now_us)
{
    kb_buf path = KB_BUF_INIT, hdr = KB_BUF_INIT;
    kb_spool_path(&path, K.cfg->collector_spool_dir, SP.file_no, now_us);
    int fd = open(path.buf, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        kb_log_error("unable to create spool file '%s': %s", path.buf, strerror(errno));
        kb_buf_release(&path);
        return -1;
    }
    kb_spool_header(&hdr, K.instance, SP.file_no, now_us);
    if (write(fd, hdr.buf, hdr.len) != (ssize_t)hdr.len) {
        kb_log_error("unable to write spool file '%s': %s", path.buf, strerror(errno));
        close(fd);
        kb_buf_release(&path);
        kb_buf_release(&hdr);
        return -1;
    }
    pthread_mutex_lock(&SP.mu);
    int old = SP.fd;
    SP.fd = fd;
    pthread_mutex_unlock(&SP.mu);
    if (old >= 0) {
        fdatasync(old);
        close(old);
    }
    SP.off = (int64_t)hdr.len;
    SP.period = now_us / (K.cfg->collector_spool_file_s * 1000000LL);
    kc_spool_publish(SP.file_no, SP.off);
    kb_log_info("spool file %s", path.buf);
    kb_buf_release(&path);
    kb_buf_release(&hdr);
    return 0;
}

static void *
syncer(void *arg)
{
    (void)arg;
    while (!atomic_load(&SP.stop)) {
        pthread_mutex_lock(&SP.mu);
        int fd = SP.fd >= 0 ? dup(SP.fd) : -1;
        pthread_mutex_unlock(&SP.mu);
        if (fd >= 0) {
            fdatasync(fd);
            close(fd);
        }
        for (int i = 0; i < 10 && !atomic_load(&SP.stop); i++)
            usleep(100000);
    }
    return NULL;
}

int
kc_spool_open(void)
{
    const char *dir = K.cfg->collector_spool_dir;
    if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
        kb_log_error("unable to create spool directory '%s': %s", dir, strerror(errno));
        return -1;
    }
    long max = kb_spool_max_no(dir);
    if (max < 0) {
        kb_log_error("unable to read spool directory '%s': %s", dir, strerror(errno));
        return -1;
    }
    SP.file_no = max + 1 > atomic_load(&K.min_file_no) ? max + 1 : atomic_load(&K.min_file_no);
    if (open_file(kc_now_ns() / 1000) < 0)
        return -1;
    if (pthread_create(&SP.syncer, NULL, syncer, NULL) != 0)
        return -1;
    SP.syncing = true;
    /* What the writer needs to know first: a collector (re)starts here. */
    kb_buf b = KB_BUF_INIT;
    kb_buf_puts(&b, "{\"kb\":\"start\",\"instance\":");
    kb_buf_json_str(&b, K.instance, strlen(K.instance));
    kb_buf_printf(&b, ",\"pid\":%ld}", (long)getpid());
    kc_spool_event(&b);
    kb_buf_release(&b);
    return 0;
}

void
kc_spool_frame(const kc_conn *c, const char *p, size_t n, int64_t wall_ns, int64_t mono_ns)
{
    if (SP.nfr == SP.capfr) {
        SP.capfr = SP.capfr ? SP.capfr * 2 : 256;
        SP.fr = realloc(SP.fr, sizeof(*SP.fr) * (size_t)SP.capfr);
        if (SP.fr == NULL)
            abort();
    }
    kb_spool_append(&SP.batch, 'F', wall_ns, mono_ns, c->epoch, p, n);
    SP.fr[SP.nfr++] = (frame){c->idx, c->epoch, wall_ns, SP.batch.len - n - 1, n};
}

void
kc_spool_rest(const char *p, size_t n)
{
    kb_spool_append(&SP.batch, 'R', kc_now_ns(), kc_mono_ns(), 0, p, n);
}

void
kc_spool_event(const kb_buf *json)
{
    kb_spool_append(&SP.batch, 'E', kc_now_ns(), kc_mono_ns(), 0, json->buf, json->len);
}

static void
write_all(const char *p, size_t n)
{
    int tries = 0;
    while (n > 0) {
        ssize_t w = write(SP.fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            kb_log_error("unable to append to spool file %ld: %s", SP.file_no, strerror(errno));
            if (++tries >= 5)
                _exit(1);
            usleep(100000);
            continue;
        }
        p += w;
        n -= (size_t)w;
    }
}

void
kc_spool_flush(void)
{
    if (SP.batch.len == 0 || SP.fd < 0)
        return;
    int64_t now_us = kc_now_ns() / 1000;
    if (now_us / (K.cfg->collector_spool_file_s * 1000000LL) != SP.period) {
        SP.file_no++;
        if (open_file(now_us) < 0)
            _exit(1);
    }
    /* The batch becomes "cur"; records made while its frames are parsed go to a new one. */
    kb_buf t = SP.cur;
    SP.cur = SP.batch;
    SP.batch = t;
    kb_buf_reset(&SP.batch);
    frame *tf = SP.curfr;
    int tcap = SP.capcur;
    SP.curfr = SP.fr;
    SP.capcur = SP.capfr;
    SP.ncur = SP.nfr;
    SP.fr = tf;
    SP.capfr = tcap;
    SP.nfr = 0;

    write_all(SP.cur.buf, SP.cur.len);
    kc_chunk *ch = malloc(sizeof(*ch) + SP.cur.len);
    if (ch == NULL)
        abort();
    ch->next = NULL;
    ch->file_no = SP.file_no;
    ch->off = SP.off;
    ch->len = SP.cur.len;
    memcpy(ch->data, SP.cur.buf, SP.cur.len);
    SP.off += (int64_t)SP.cur.len;
    kc_spool_publish(SP.file_no, SP.off);
    kc_metric_add(KC_M_SPOOL_BYTES, SP.cur.len);
    if (!kc_queue_push(ch))
        kc_metric_add(KC_M_QUEUE_DROPS, 1);

    for (int i = 0; i < SP.ncur; i++) {
        frame *f = &SP.curfr[i];
        kc_conn *c = &K.conns[f->conn];
        /* A frame of a connection that has ended since is only kept in the spool. */
        if (c->epoch == f->epoch)
            kc_feed_frame(c, SP.cur.buf + f->off, f->len, f->wall_ns);
    }
    SP.ncur = 0;
    /* A multi-MB snapshot should not pin its memory for the life of the process. */
    if (SP.cur.cap > (8u << 20))
        kb_buf_release(&SP.cur);
    else
        kb_buf_reset(&SP.cur);
}

void
kc_spool_close(void)
{
    kc_spool_flush();
    atomic_store(&SP.stop, 1);
    if (SP.syncing)
        pthread_join(SP.syncer, NULL);
    SP.syncing = false;
    if (SP.fd >= 0) {
        fdatasync(SP.fd);
        close(SP.fd);
    }
    SP.fd = -1;
    kb_buf_release(&SP.batch);
    kb_buf_release(&SP.cur);
    free(SP.fr);
    free(SP.curfr);
}
