/* kb_arena.h - per-request memory pool (after nginx's ngx_pool_t) and checked malloc.
 *
 * Everything a request allocates comes from its arena and is released by one
 * kb_arena_reset() after the response. Objects owned by other libraries
 * (PGresult, cJSON trees) are tied to the arena with kb_arena_on_reset().
 * Built with -DKB_ARENA_DEBUG (make check), every allocation is its own
 * malloc so AddressSanitizer sees overruns.
 *
 * Out of memory is not an error code: the kb_x* functions log and exit the
 * process; the master respawns a worker and Postgres rolls back.
 */
#ifndef KB_ARENA_H
#define KB_ARENA_H

#include <stddef.h>

typedef void kb_cleanup_fn(void *data);

typedef struct kb_arena_chunk kb_arena_chunk;
typedef struct kb_arena_cleanup kb_arena_cleanup;

typedef struct kb_arena {
    kb_arena_chunk *chunks;     /* newest first; the first one is kept on reset */
    kb_arena_cleanup *cleanups; /* run newest first on reset */
    size_t chunk_size;
    size_t allocated; /* bytes handed out since the last reset */
} kb_arena;

/* Fill a caller's arena; chunk_size 0 picks the default (16 KiB). */
void kb_arena_init(kb_arena *a, size_t chunk_size);

/* Free everything, including the kept chunk. */
void kb_arena_release(kb_arena *a);

/* Run cleanups and free allocations; the arena is ready for the next request. */
void kb_arena_reset(kb_arena *a);

/* Aligned memory that lives until the next reset. Never returns NULL. */
void *kb_arena_alloc(kb_arena *a, size_t size);

/* Zeroed kb_arena_alloc of n * size, checking the multiplication. */
void *kb_arena_calloc(kb_arena *a, size_t n, size_t size);

/* Arena copy of len bytes plus a terminating NUL. */
char *kb_arena_strndup(kb_arena *a, const char *s, size_t len);

/* Arena copy of a NUL-terminated string. */
char *kb_arena_strdup(kb_arena *a, const char *s);

/* Arena printf. */
char *kb_arena_printf(kb_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Call fn(data) at the next reset (e.g. PQclear, cJSON_Delete). */
void kb_arena_on_reset(kb_arena *a, kb_cleanup_fn *fn, void *data);

/* Log "out of memory allocating <size> bytes" and _exit(71), as every checked
 * allocation does on exhaustion; for a library call that reports it as NULL. */
_Noreturn void kb_oom(size_t size);

/* Checked allocation: these never return NULL (they exit on exhaustion). */
void *kb_xmalloc(size_t size);
void *kb_xcalloc(size_t n, size_t size);
void *kb_xrealloc(void *p, size_t size);
char *kb_xstrdup(const char *s);

/* a + b and a * b, exiting on overflow (sizes come from capped input). */
size_t kb_st_add(size_t a, size_t b);
size_t kb_st_mult(size_t a, size_t b);

#endif
