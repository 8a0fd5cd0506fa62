/* kbctl_migrate.c - `kbctl migrate`: apply db/migrations/NNNN_name.sql in order.
 *
 * Each file runs in its own transaction together with its row in
 * schema_migrations (version, name, SHA-256 checksum), under an advisory lock
 * so two migrators never interleave. A file that was applied and has since
 * changed stops the run: migrations are append-only.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbctl.h"
#include "kb_config.h"
#include "kb_crypto.h"
#include "kb_db.h"
#include "kb_log.h"
#include "kb_banned.h"

#define MIGRATION_MAX_BYTES (16L * 1024 * 1024)
#define MIGRATE_LOCK_KEY "7274810001"

static const kb_stmt applied_stmt = {
    "migrate_applied", "SELECT version, checksum FROM schema_migrations ORDER BY version", 0, true};
static const kb_stmt record_stmt = {
    "migrate_record", "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
    3, false};

typedef struct migration {
    char *file; /* "0001_init.sql" */
    char version[5];
    char checksum[KB_SHA256_HEX_LEN + 1];
    char *sql;
} migration;

/* NNNN_[a-z0-9_]+.sql */
static bool
valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len < 10 || strcmp(n + len - 4, ".sql") != 0 || n[4] != '_')
        return false;
    for (size_t i = 0; i < 4; i++) {
        if (n[i] < '0' || n[i] > '9')
            return false;
    }
    for (size_t i = 5; i < len - 4; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static int
cmp_migration(const void *a, const void *b)
{
    return strcmp(((const migration *)a)->file, ((const migration *)b)->file);
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    kb_buf b = KB_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        kb_buf_append(&b, chunk, n);
        if ((long)b.len > MIGRATION_MAX_BYTES) {
            fclose(f);
            kb_buf_release(&b);
            errno = EFBIG;
            return NULL;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        kb_buf_release(&b);
        return NULL;
    }
    return kb_buf_detach(&b, len);
}

static void
free_migrations(migration *m, size_t cap)
{
    for (size_t i = 0; m != NULL && i < cap; i++) {
        free(m[i].file);
        free(m[i].sql);
    }
    free(m);
}

static size_t
load_dir(const char *dir, migration **out)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "kbctl migrate: unable to open '%s': %s\n", dir, strerror(errno));
        return (size_t)-1;
    }
    migration *m = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".sql") != 0)
            continue;
        if (!valid_name(e->d_name)) {
            fprintf(stderr, "kbctl migrate: ignoring '%s' (expected NNNN_name.sql)\n", e->d_name);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            m = kb_xrealloc(m, kb_st_mult(cap, sizeof(*m)));
        }
        memset(&m[n], 0, sizeof(m[n]));
        m[n].file = kb_xstrdup(e->d_name);
        memcpy(m[n].version, e->d_name, 4);
        n++;
    }
    closedir(d);
    qsort(m, n, sizeof(*m), cmp_migration);
    bool failed = false;
    for (size_t i = 0; i + 1 < n; i++) {
        if (strcmp(m[i].version, m[i + 1].version) == 0) {
            fprintf(stderr, "kbctl migrate: '%s' and '%s' share version %s\n", m[i].file,
                    m[i + 1].file, m[i].version);
            failed = true;
            break;
        }
    }
    for (size_t i = 0; !failed && i < n; i++) {
        char path[4096];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/%s", dir, m[i].file);
        m[i].sql = read_file(path, &len);
        if (m[i].sql == NULL) {
            fprintf(stderr, "kbctl migrate: unable to read '%s': %s\n", path, strerror(errno));
            failed = true;
            break;
        }
        kb_sha256_hex(m[i].sql, len, m[i].checksum);
    }
    if (failed) {
        free_migrations(m, n);
        return (size_t)-1;
    }
    *out = m;
    return n;
}

static int
apply(kb_db *db, kb_arena *arena, migration *m, size_t n, bool dry_run)
{
    PGresult *applied = NULL;
    if (kb_db_exec(db, arena, &applied_stmt, NULL, &applied))
        return KBCTL_FAIL;
    int napplied = PQntuples(applied);
    /* Every applied migration must still be present and unchanged. */
    for (int r = 0; r < napplied; r++) {
        const char *ver = PQgetvalue(applied, r, 0);
        const char *sum = PQgetvalue(applied, r, 1);
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(m[i].version, ver) != 0)
                continue;
            found = true;
            if (strcmp(m[i].checksum, sum) != 0) {
                fprintf(stderr,
                        "kbctl migrate: refusing to run: '%s' changed since it was applied "
                        "(checksum %.12s..., recorded %.12s...). Add a new migration instead.\n",
                        m[i].file, m[i].checksum, sum);
                return KBCTL_FAIL;
            }
        }
        if (!found)
            fprintf(stderr, "kbctl migrate: warning: applied version %s has no file\n", ver);
    }
    int done = 0;
    for (size_t i = 0; i < n; i++) {
        bool is_applied = false;
        for (int r = 0; r < napplied && !is_applied; r++)
            is_applied = strcmp(PQgetvalue(applied, r, 0), m[i].version) == 0;
        if (is_applied)
            continue;
        if (dry_run) {
            printf("pending %s\n", m[i].file);
            continue;
        }
        const char *params[] = {m[i].version, m[i].file, m[i].checksum};
        if (kb_db_command(db, "BEGIN") || kb_db_command(db, m[i].sql) ||
            kb_db_exec(db, arena, &record_stmt, params, NULL) || kb_db_command(db, "COMMIT")) {
            (void)kb_db_command(db, "ROLLBACK");
            fprintf(stderr, "kbctl migrate: '%s' failed and was rolled back\n", m[i].file);
            return KBCTL_FAIL;
        }
        printf("applied %s\n", m[i].file);
        done++;
    }
    if (!dry_run)
        printf("migrations up to date (%d applied now, %d before)\n", done, napplied);
    return KBCTL_OK;
}

int
kbctl_migrate(int argc, char **argv)
{
    const char *dir = NULL;
    bool dry_run = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            printf("usage: kbctl migrate [--dir DIR] [--dry-run]\n\n"
                   "Applies DIR/NNNN_name.sql (default $KB_MIGRATIONS_DIR) to $KB_DATABASE_URL\n"
                   "in order, each in its own transaction, recorded in schema_migrations.\n"
                   "Refuses to run when an applied file has changed. --dry-run lists pending.\n");
            return KBCTL_OK;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strcmp(argv[i], "--dry-run") == 0) {
            dry_run = true;
        } else {
            fprintf(stderr, "kbctl migrate: unknown option '%s'\n", argv[i]);
            return KBCTL_USAGE;
        }
    }
    if (dir == NULL)
        dir = kb_cfg.migrations_dir;

    migration *m = NULL;
    size_t n = load_dir(dir, &m);
    if (n == (size_t)-1)
        return KBCTL_FAIL;
    kb_db db;
    kb_db_init(&db, kb_cfg.database_url, "kbctl-migrate", kb_cfg.db_connect_timeout_s, 0);
    kb_arena arena;
    kb_arena_init(&arena, 0);
    int rc = KBCTL_FAIL;
    if (kb_db_connect(&db)) {
        fprintf(stderr, "kbctl migrate: unable to connect to the database\n");
        goto out;
    }
    if (kb_db_command(&db, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")") ||
        kb_db_command(&db, "SET client_min_messages = warning") ||
        kb_db_command(&db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                           " version text PRIMARY KEY,"
                           " name text NOT NULL,"
                           " checksum text NOT NULL,"
                           " applied_at timestamptz NOT NULL DEFAULT now())"))
        goto out;
    rc = apply(&db, &arena, m, n, dry_run);
out:
    kb_arena_release(&arena);
    kb_db_release(&db);
    free_migrations(m, n);
    return rc;
}
