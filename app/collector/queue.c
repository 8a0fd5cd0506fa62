/* queue.c - the bounded queue from the reader to the writer, and the spool's published
 * write end.
 *
 * The reader never waits here: a chunk that does not fit is dropped, and the writer,
 * which follows the spool by (file, offset), reads the missing bytes back from the
 * file instead. The published end lets the writer know how far the spool goes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "collector.h"
#include "kb_banned.h"

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kc_chunk *head, *tail;
    size_t bytes, max;
} Q = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* file number in the top 24 bits, offset in the low 40 (1 TiB per file). */
static _Atomic uint64_t published;

void
kc_queue_init(size_t max_bytes)
{
    Q.max = max_bytes;
}

bool
kc_queue_push(kc_chunk *ch)
{
    pthread_mutex_lock(&Q.mu);
    if (Q.bytes + ch->len > Q.max && Q.head != NULL) {
        pthread_mutex_unlock(&Q.mu);
        free(ch);
        return false;
    }
    ch->next = NULL;
    if (Q.tail != NULL)
        Q.tail->next = ch;
    else
        Q.head = ch;
    Q.tail = ch;
    Q.bytes += ch->len;
    kc_metric_set(KC_G_QUEUE_BYTES, (int64_t)Q.bytes);
    pthread_cond_signal(&Q.cv);
    pthread_mutex_unlock(&Q.mu);
    return true;
}

kc_chunk *
kc_queue_pop(int timeout_ms)
{
    pthread_mutex_lock(&Q.mu);
    if (Q.head == NULL && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
        ts.tv_sec += timeout_ms / 1000 + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&Q.cv, &Q.mu, &ts);
    }
    kc_chunk *ch = Q.head;
    if (ch != NULL) {
        Q.head = ch->next;
        if (Q.head == NULL)
            Q.tail = NULL;
        Q.bytes -= ch->len;
        kc_metric_set(KC_G_QUEUE_BYTES, (int64_t)Q.bytes);
    }
    pthread_mutex_unlock(&Q.mu);
    return ch;
}

size_t
kc_queue_bytes(void)
{
    pthread_mutex_lock(&Q.mu);
    size_t b = Q.bytes;
    pthread_mutex_unlock(&Q.mu);
    return b;
}

void
kc_spool_publish(long file_no, int64_t off)
{
    atomic_store(&published, (uint64_t)file_no << 40 | ((uint64_t)off & ((1ULL << 40) - 1)));
}

void
kc_spool_published(long *file_no, int64_t *off)
{
    uint64_t v = atomic_load(&published);
    *file_no = (long)(v >> 40);
    *off = (int64_t)(v & ((1ULL << 40) - 1));
}
