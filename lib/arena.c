/* arena.c - bump allocator with cleanups; see kb_arena.h. */
#include "kb_arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb_banned.h"

#define ARENA_DEFAULT_CHUNK 16384
#define ARENA_ALIGN 16

struct kb_arena_chunk {
    kb_arena_chunk *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    /* data follows, aligned */
};

struct kb_arena_cleanup {
    kb_arena_cleanup *next;
    kb_cleanup_fn *fn;
    void *data;
};

void
kb_oom(size_t size)
{
    /* No allocation and no stdio buffering here: we are out of memory. */
    char msg[128];
    int n = snprintf(msg, sizeof(msg),
                     "{\"level\":\"fatal\",\"msg\":\"out of memory allocating %zu bytes\"}\n",
                     size);
    if (n > 0)
        (void)!write(2, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1);
    _exit(71);
}

size_t
kb_st_add(size_t a, size_t b)
{
    if (SIZE_MAX - a < b)
        kb_oom(SIZE_MAX);
    return a + b;
}

size_t
kb_st_mult(size_t a, size_t b)
{
    if (a != 0 && SIZE_MAX / a < b)
        kb_oom(SIZE_MAX);
    return a * b;
}

void *
kb_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        kb_oom(size);
    return p;
}

void *
kb_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        kb_oom(kb_st_mult(n, size));
    return p;
}

void *
kb_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        kb_oom(size);
    return q;
}

char *
kb_xstrdup(const char *s)
{
    size_t len = strlen(s);
    char *p = kb_xmalloc(kb_st_add(len, 1));
    memcpy(p, s, len + 1);
    return p;
}

static size_t
align_up(size_t n)
{
    return kb_st_add(n, ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
}

static size_t
chunk_header(void)
{
    return align_up(sizeof(kb_arena_chunk));
}

void
kb_arena_init(kb_arena *a, size_t chunk_size)
{
    memset(a, 0, sizeof(*a));
    a->chunk_size = chunk_size ? chunk_size : ARENA_DEFAULT_CHUNK;
}

static kb_arena_chunk *
chunk_new(size_t size)
{
    kb_arena_chunk *c = kb_xmalloc(kb_st_add(chunk_header(), size));
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

static void
run_cleanups(kb_arena *a)
{
    while (a->cleanups != NULL) {
        kb_arena_cleanup *c = a->cleanups;
        a->cleanups = c->next;
        c->fn(c->data);
#ifdef KB_ARENA_DEBUG
        free(c);
#endif
    }
}

void
kb_arena_reset(kb_arena *a)
{
    run_cleanups(a);
    kb_arena_chunk *keep = NULL;
    kb_arena_chunk *c = a->chunks;
    while (c != NULL) {
        kb_arena_chunk *next = c->next;
#ifdef KB_ARENA_DEBUG
        free(c);
#else
        /* Keep the oldest default-sized chunk; free the rest. */
        if (next == NULL && c->size == a->chunk_size) {
            keep = c;
            keep->used = 0;
        } else {
            free(c);
        }
#endif
        c = next;
    }
    a->chunks = keep;
    a->allocated = 0;
}

void
kb_arena_release(kb_arena *a)
{
    kb_arena_reset(a);
    free(a->chunks);
    a->chunks = NULL;
}

void *
kb_arena_alloc(kb_arena *a, size_t size)
{
    a->allocated = kb_st_add(a->allocated, size);
#ifdef KB_ARENA_DEBUG
    /* One malloc per allocation, exactly sized, so ASan catches overruns. */
    kb_arena_chunk *d = chunk_new(size ? size : 1);
    d->used = d->size;
    d->next = a->chunks;
    a->chunks = d;
    return (char *)d + chunk_header();
#else
    size_t need = align_up(size ? size : 1);
    kb_arena_chunk *c = a->chunks;
    if (c == NULL || c->size - c->used < need) {
        if (need > a->chunk_size / 4) {
            /* Large block: its own chunk, linked behind the current one. */
            kb_arena_chunk *big = chunk_new(need);
            big->used = need;
            if (c == NULL) {
                a->chunks = big;
            } else {
                big->next = c->next;
                c->next = big;
            }
            return (char *)big + chunk_header();
        }
        c = chunk_new(a->chunk_size);
        c->next = a->chunks;
        a->chunks = c;
    }
    void *p = (char *)c + chunk_header() + c->used;
    c->used += need;
    return p;
#endif
}

void *
kb_arena_calloc(kb_arena *a, size_t n, size_t size)
{
    size_t total = kb_st_mult(n, size);
    void *p = kb_arena_alloc(a, total);
    memset(p, 0, total);
    return p;
}

char *
kb_arena_strndup(kb_arena *a, const char *s, size_t len)
{
    char *p = kb_arena_alloc(a, kb_st_add(len, 1));
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *
kb_arena_strdup(kb_arena *a, const char *s)
{
    return kb_arena_strndup(a, s, strlen(s));
}

char *
kb_arena_printf(kb_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return kb_arena_strdup(a, "");
    char *p = kb_arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void
kb_arena_on_reset(kb_arena *a, kb_cleanup_fn *fn, void *data)
{
#ifdef KB_ARENA_DEBUG
    kb_arena_cleanup *c = kb_xmalloc(sizeof(*c));
#else
    kb_arena_cleanup *c = kb_arena_alloc(a, sizeof(*c));
#endif
    c->fn = fn;
    c->data = data;
    c->next = a->cleanups;
    a->cleanups = c;
}
