/* writer.h - the writer thread's state, shared by writer.c (leadership), batch.c (which
 * records, from where) and store.c (what each record does in Postgres). */
#ifndef KC_WRITER_H
#define KC_WRITER_H

#include "collector.h"
#include "kb_arena.h"
#include "kb_db.h"
#include "kb_spool.h"

typedef struct kc_writer {
    kb_db db;
    kb_arena arena;
    PGconn *locked_on; /* the session holding the advisory lock */
    int locked_pid;
    int64_t epoch; /* leader epoch */
    bool handover; /* the previous leader was another instance */
    int64_t started_s;
    long file_no; /* the next record to store is at (file_no, off); off 0 = file start */
    int64_t off;
    long c_file_no; /* committed up to here */
    int64_t c_off;
    kb_spool_reader rd;
    bool rd_open;
    long rd_file;
    kc_chunk *held; /* popped from the queue, not yet reached */
} kc_writer;

extern kc_writer W;

/* kb_db_exec on the writer's connection; keeps the db_up gauge. */
bool kc_writer_exec(const kb_stmt *st, const char *const *params, PGresult **out);

/* The advisory lock is held on the connection in use now. */
bool kc_writer_same_session(void);

/* ---- batch.c ---- */
/* Store the records that are ready (at most a batch, waiting up to KB_COLLECTOR_COMMIT_MS). */
void kc_writer_batch(void);
/* Records in the spool not yet stored. */
bool kc_writer_behind(void);

/* ---- store.c ---- */
struct kb_ingest;
void kc_store_init(void);
/* The writer's ingest state (checkpoint upkeep). */
struct kb_ingest *kc_store_ingest(void);
void kc_store_release(void);
bool kc_store_begin(void);
/* One record at spool position (file_no, off). False on a database failure. */
bool kc_store_record(const kb_spool_rec *r, long file_no, int64_t off);
/* Move the progress to (file_no, off) and commit. */
bool kc_store_commit(long file_no, int64_t off);
void kc_store_abort(void);

#endif
