/* shared.c - the Files and Batch APIs' state in PostgreSQL (shared.h).
 *
 * Parameters go as text (PostgreSQL casts them; the SQLite copy's column
 * affinities turn numbers back into numbers); a file's parts go, and come
 * back, as binary. The tenant rule is files.h's: the master key sees every
 * row, a key its own, the keyless tenant (key_id NULL) the keyless rows. */
#include "batch/shared.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batches.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

/* The tenant's condition, with its parameters at $A (all: 1 or 0) and $B
 * (the key, or NULL). */
#define TENANT(A, B) "($" #A "::int = 1 OR key_id IS NOT DISTINCT FROM $" #B "::text)"
#define FILE_COLS AH_FILE_COLUMN_LIST
/* The columns a runner's copy takes, beyond what readers select. */
#define RUN_COLS AH_BATCH_COLUMN_LIST ", key_id, owner, cost_usd, provider_batch_id"
#define RUN_NCOLS (AH_BATCH_COLUMNS + 4)

static PGresult *run(PGconn *c, const char *sql, int n, const char *const *params)
{
    return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

/* Whether r has status want; else logs why (what: the operation). */
static int ok(PGconn *c, PGresult *r, ExecStatusType want, const char *what)
{
    if (PQresultStatus(r) == want)
        return 1;
    const char *msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
    ah_error("batches: %s in PostgreSQL: %.*s", what, (int)strcspn(msg, "\n"), msg);
    return 0;
}

/* The row's column i as text, NULL for SQL NULL. */
static const char *col(const PGresult *r, int row, int i)
{
    return PQgetisnull(r, row, i) ? NULL : PQgetvalue(r, row, i);
}

static void cols(const PGresult *r, int row, int n, const char **v)
{
    for (int i = 0; i < n; i++)
        v[i] = col(r, row, i);
}

static void exec_quiet(PGconn *c, const char *sql)
{
    PQclear(PQexec(c, sql));
}

/* The path of file id's bytes in dir. */
static int local_path(const char *dir, const char *id, char *out, size_t n)
{
    return (size_t)snprintf(out, n, "%s/%s.jsonl", dir, id) < n ? 0 : -1;
}

/* --- files ----------------------------------------------------------------- */

/* path's bytes as parts of file id, in the caller's transaction. */
static ah_err_t put_parts(PGconn *c, const char *id, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ah_error("files: cannot read %s: %s", path, strerror(errno));
        return AH_E_IO;
    }
    char *buf = ah_malloc(AH_BPG_PART_BYTES);
    ah_err_t rc = AH_E_OK;
    size_t got;
    for (int part = 0; rc == AH_E_OK && (got = fread(buf, 1, AH_BPG_PART_BYTES, f)) > 0; part++) {
        char pn[16];
        snprintf(pn, sizeof pn, "%d", part);
        const char *params[3] = {id, pn, buf};
        int lens[3] = {0, 0, (int)got}, fmts[3] = {0, 0, 1};
        PGresult *r = PQexecParams(
            c, "INSERT INTO ahorro_file_parts(file_id, part, data) VALUES ($1, $2, $3)", 3, NULL,
            params, lens, fmts, 0);
        if (!ok(c, r, PGRES_COMMAND_OK, "storing a file's bytes"))
            rc = AH_E_DB;
        PQclear(r);
    }
    if (ferror(f))
        rc = AH_E_IO;
    fclose(f);
    ah_free(buf);
    return rc;
}

/* Insert a file's row and bytes in one transaction, its own or (own_tx 0)
 * the caller's (conflict: the row is there already, e.g. a batch's output
 * sent twice; nothing changes). */
static ah_err_t add_file(PGconn *c, int own_tx, const char *id, const char *purpose,
                         const char *filename, long long bytes, int64_t created_ms,
                         const char *key_id, const char *owner, const char *path)
{
    char b[24], ms[24];
    snprintf(b, sizeof b, "%lld", bytes);
    snprintf(ms, sizeof ms, "%" PRId64, created_ms);
    const char *params[7] = {id, purpose, filename, b, ms, key_id, owner};
    if (own_tx)
        exec_quiet(c, "BEGIN");
    PGresult *r = run(c,
                      "INSERT INTO ahorro_files(id, purpose, filename, bytes, created_ms, key_id, "
                      "owner) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
                      7, params);
    ah_err_t rc = ok(c, r, PGRES_COMMAND_OK, "storing a file") ? AH_E_OK : AH_E_DB;
    int added = rc == AH_E_OK && strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (added)
        rc = put_parts(c, id, path);
    if (own_tx)
        exec_quiet(c, rc ? "ROLLBACK" : "COMMIT");
    return rc;
}

ah_err_t ah_bpg_file_add(PGconn *c, const char *id, const char *purpose, const char *filename,
                         long long bytes, const ah_tenant_t *owner, const char *path)
{
    return add_file(c, 1, id, purpose, filename, bytes, ah_wall_ms(), owner->key_id, owner->owner,
                    path);
}

ah_err_t ah_bpg_file_get(PGconn *c, const char *id, const ah_tenant_t *t, ah_file_t *out)
{
    memset(out, 0, sizeof *out);
    const char *params[3] = {id, t->all ? "1" : "0", t->key_id};
    PGresult *r = run(c,
                      "SELECT " FILE_COLS " FROM ahorro_files WHERE id = $1 AND deleted = 0 "
                      "AND " TENANT(2, 3),
                      3, params);
    ah_err_t rc = AH_E_DB;
    if (ok(c, r, PGRES_TUPLES_OK, "reading a file")) {
        rc = PQntuples(r) ? AH_E_OK : AH_E_NOTFOUND;
        if (rc == AH_E_OK) {
            const char *v[AH_FILE_COLUMNS] = {0};
            cols(r, 0, AH_FILE_COLUMNS - 1, v); /* no path: not on this disk yet */
            ah_file_from_row(out, v);
        }
    }
    PQclear(r);
    return rc;
}

/* The bytes sql's rows hold (one bytea column, binary, in order) into
 * path: written aside, then renamed over it, one row at a time (single-row
 * mode: memory is a row's). expect >= 0: the bytes there must be (else
 * AH_E_DB). what names the bytes in the log. */
static ah_err_t download(PGconn *c, const char *sql, int n, const char *const *params,
                         const char *path, long long expect, const char *what)
{
    char tmp[AH_FILES_PATH_MAX + 128];
    static _Atomic unsigned seq;
    snprintf(tmp, sizeof tmp, "%s.%d.%u.part", path, (int)getpid(), seq++);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        ah_error("files: cannot write %s: %s", tmp, strerror(errno));
        return AH_E_IO;
    }
    ah_err_t rc = AH_E_OK;
    long long total = 0;
    if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 1) || !PQsetSingleRowMode(c)) {
        ok(c, NULL, PGRES_TUPLES_OK, what);
        rc = AH_E_DB;
    }
    PGresult *r;
    while (rc == AH_E_OK && (r = PQgetResult(c))) {
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_SINGLE_TUPLE) {
            size_t len = (size_t)PQgetlength(r, 0, 0);
            total += (long long)len;
            if (fwrite(PQgetvalue(r, 0, 0), 1, len, out) != len)
                rc = AH_E_IO;
        } else if (st != PGRES_TUPLES_OK) {
            ok(c, r, PGRES_TUPLES_OK, what);
            rc = AH_E_DB;
        }
        PQclear(r);
    }
    while ((r = PQgetResult(c))) /* the rest, after a failure */
        PQclear(r);
    if (fclose(out) != 0 && rc == AH_E_OK)
        rc = AH_E_IO;
    if (rc == AH_E_OK && expect >= 0 && total != expect) {
        ah_error("batches: %s: %lld bytes in PostgreSQL, not %lld", what, total, expect);
        rc = AH_E_DB;
    }
    if (rc == AH_E_OK && rename(tmp, path) != 0)
        rc = AH_E_IO;
    if (rc)
        unlink(tmp);
    return rc;
}

ah_err_t ah_bpg_file_fetch(PGconn *c, const char *dir, ah_file_t *f)
{
    char path[AH_FILES_PATH_MAX + 64];
    if (local_path(dir, f->id, path, sizeof path))
        return AH_E_TOOBIG;
    struct stat sb;
    if (stat(path, &sb) == 0 && (long long)sb.st_size == f->bytes) {
        f->path = ah_strdup(path); /* fetched before (bytes never change) */
        return AH_E_OK;
    }
    const char *params[1] = {f->id};
    ah_err_t rc = download(c, "SELECT data FROM ahorro_file_parts WHERE file_id = $1 ORDER BY part",
                           1, params, path, f->bytes, "a file's bytes");
    if (rc)
        return rc;
    f->path = ah_strdup(path);
    return AH_E_OK;
}

ah_err_t ah_bpg_file_list(PGconn *c, const ah_tenant_t *t, const char *purpose, const char *after,
                          int asc, int limit, json_t **out)
{
    *out = NULL;
    if (after) {
        ah_file_t f;
        ah_err_t rc = ah_bpg_file_get(c, after, t, &f);
        ah_file_clear(&f);
        if (rc)
            return rc;
    }
    static const char *const sql[2] = {
        "SELECT " FILE_COLS " FROM ahorro_files WHERE deleted = 0 AND " TENANT(
            1, 2) " AND ($3::text IS NULL OR purpose = $3) AND ($4::text IS NULL OR (created_ms, "
                  "seq) < "
                  "(SELECT created_ms, seq FROM ahorro_files WHERE id = $4)) "
                  "ORDER BY created_ms DESC, seq DESC LIMIT $5",
        "SELECT " FILE_COLS " FROM ahorro_files WHERE deleted = 0 AND " TENANT(
            1, 2) " AND ($3::text IS NULL OR purpose = $3) AND ($4::text IS NULL OR (created_ms, "
                  "seq) > "
                  "(SELECT created_ms, seq FROM ahorro_files WHERE id = $4)) "
                  "ORDER BY created_ms ASC, seq ASC LIMIT $5"};
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *params[5] = {t->all ? "1" : "0", t->key_id, purpose, after, lim};
    PGresult *r = run(c, sql[asc ? 1 : 0], 5, params);
    if (!ok(c, r, PGRES_TUPLES_OK, "listing files")) {
        PQclear(r);
        return AH_E_DB;
    }
    json_t *data = json_array();
    int n = PQntuples(r), more = n > limit;
    for (int i = 0; i < n && i < limit; i++) {
        const char *v[AH_FILE_COLUMNS] = {0};
        cols(r, i, AH_FILE_COLUMNS - 1, v);
        ah_file_t f;
        ah_file_from_row(&f, v);
        json_array_append_new(data, ah_file_json(&f));
        ah_file_clear(&f);
    }
    PQclear(r);
    *out = ah_list_json(data, more);
    return AH_E_OK;
}

ah_err_t ah_bpg_file_delete(PGconn *c, const char *dir, const char *id, const ah_tenant_t *t)
{
    ah_file_t f;
    ah_err_t rc = ah_bpg_file_get(c, id, t, &f);
    ah_file_clear(&f);
    if (rc)
        return rc;
    const char *params[1] = {id};
    exec_quiet(c, "BEGIN");
    PGresult *r = run(c, "UPDATE ahorro_files SET deleted = 1 WHERE id = $1", 1, params);
    rc = ok(c, r, PGRES_COMMAND_OK, "deleting a file") ? AH_E_OK : AH_E_DB;
    PQclear(r);
    if (rc == AH_E_OK) {
        r = run(c, "DELETE FROM ahorro_file_parts WHERE file_id = $1", 1, params);
        rc = ok(c, r, PGRES_COMMAND_OK, "deleting a file's bytes") ? AH_E_OK : AH_E_DB;
        PQclear(r);
    }
    exec_quiet(c, rc ? "ROLLBACK" : "COMMIT");
    char path[AH_FILES_PATH_MAX + 64];
    /* This instance's copy; the others' are never read again (the row is
     * marked deleted). */
    if (rc == AH_E_OK && dir && local_path(dir, id, path, sizeof path) == 0 && unlink(path) != 0 &&
        errno != ENOENT)
        ah_warn("files: cannot remove %s: %s", path, strerror(errno));
    return rc;
}

/* --- batches ----------------------------------------------------------------- */

ah_err_t ah_bpg_batch_add(PGconn *c, const char *id, const char *input_file_id,
                          const char *endpoint, long total, json_t *metadata,
                          const ah_tenant_t *owner)
{
    char *meta = metadata ? json_dumps(metadata, JSON_COMPACT) : NULL;
    int64_t now = ah_wall_ms();
    char created[24], expires[24], n[24];
    snprintf(created, sizeof created, "%" PRId64, now);
    snprintf(expires, sizeof expires, "%" PRId64, now + (int64_t)AH_BATCH_WINDOW_S * 1000);
    snprintf(n, sizeof n, "%ld", total);
    const char *params[9] = {id, input_file_id, endpoint,      created,     expires,
                             n,  meta,          owner->key_id, owner->owner};
    PGresult *r = run(c,
                      "INSERT INTO ahorro_batches(id, input_file_id, endpoint, completion_window, "
                      "status, created_ms, expires_ms, total, metadata, key_id, owner) "
                      "VALUES ($1, $2, $3, '24h', 'validating', $4, $5, $6, $7, $8, $9)",
                      9, params);
    ah_err_t rc = ok(c, r, PGRES_COMMAND_OK, "storing a batch") ? AH_E_OK : AH_E_DB;
    PQclear(r);
    free(meta);
    return rc;
}

ah_err_t ah_bpg_batch_get(PGconn *c, const char *id, const ah_tenant_t *t, json_t **out)
{
    *out = NULL;
    const char *params[3] = {id, t->all ? "1" : "0", t->key_id};
    PGresult *r = run(
        c, "SELECT " AH_BATCH_COLUMN_LIST " FROM ahorro_batches WHERE id = $1 AND " TENANT(2, 3), 3,
        params);
    ah_err_t rc = AH_E_DB;
    if (ok(c, r, PGRES_TUPLES_OK, "reading a batch")) {
        rc = PQntuples(r) ? AH_E_OK : AH_E_NOTFOUND;
        if (rc == AH_E_OK) {
            const char *v[AH_BATCH_COLUMNS];
            cols(r, 0, AH_BATCH_COLUMNS, v);
            *out = ah_batch_row_json(v);
        }
    }
    PQclear(r);
    return rc;
}

ah_err_t ah_bpg_batch_list(PGconn *c, const ah_tenant_t *t, const char *after, int limit,
                           json_t **out)
{
    *out = NULL;
    if (after) {
        json_t *b = NULL;
        ah_err_t rc = ah_bpg_batch_get(c, after, t, &b);
        json_decref(b);
        if (rc)
            return rc;
    }
    char lim[16];
    snprintf(lim, sizeof lim, "%d", limit + 1);
    const char *params[4] = {t->all ? "1" : "0", t->key_id, after, lim};
    PGresult *r = run(c,
                      "SELECT " AH_BATCH_COLUMN_LIST " FROM ahorro_batches WHERE " TENANT(
                          1, 2) " AND ($3::text IS NULL OR (created_ms, seq) < "
                                "(SELECT created_ms, seq FROM ahorro_batches WHERE id = $3)) "
                                "ORDER BY created_ms DESC, seq DESC LIMIT $4",
                      4, params);
    if (!ok(c, r, PGRES_TUPLES_OK, "listing batches")) {
        PQclear(r);
        return AH_E_DB;
    }
    json_t *data = json_array();
    int n = PQntuples(r), more = n > limit;
    for (int i = 0; i < n && i < limit; i++) {
        const char *v[AH_BATCH_COLUMNS];
        cols(r, i, AH_BATCH_COLUMNS, v);
        json_array_append_new(data, ah_batch_row_json(v));
    }
    PQclear(r);
    *out = ah_list_json(data, more);
    return AH_E_OK;
}

ah_err_t ah_bpg_batch_cancel(PGconn *c, const char *id, const ah_tenant_t *t, json_t **out)
{
    json_t *b = NULL;
    ah_err_t rc = ah_bpg_batch_get(c, id, t, &b);
    json_decref(b);
    if (rc)
        return rc;
    /* One statement: a runner's take (validating -> in_progress) is one
     * too, so exactly one of them wins; a running batch's runner sees
     * cancelling with its next send. */
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, ah_wall_ms());
    const char *params[2] = {now, id};
    PGresult *r = run(c,
                      "UPDATE ahorro_batches SET status = CASE status WHEN 'validating' THEN "
                      "'cancelled' ELSE 'cancelling' END, cancelling_ms = $1::bigint, "
                      "cancelled_ms = CASE status WHEN 'validating' THEN $1::bigint ELSE "
                      "cancelled_ms END WHERE id = $2 AND status IN ('validating', 'in_progress', "
                      "'finalizing')",
                      2, params);
    rc = ok(c, r, PGRES_COMMAND_OK, "cancelling a batch") ? AH_E_OK : AH_E_DB;
    PQclear(r);
    return rc ? rc : ah_bpg_batch_get(c, id, t, out);
}

/* --- the runner's side ------------------------------------------------------- */

/* Copy the input file's row (with its bytes in dir) into the working copy,
 * or drop it there when it is gone (the runner then fails the batch). */
static ah_err_t copy_input(PGconn *c, sqlite3 *local, const char *dir, const char *file_id)
{
    ah_tenant_t all = {.all = 1};
    ah_file_t f;
    ah_err_t rc = ah_bpg_file_get(c, file_id, &all, &f);
    if (rc == AH_E_OK)
        rc = ah_bpg_file_fetch(c, dir, &f);
    sqlite3_stmt *st = NULL;
    const char *sql = rc == AH_E_OK
                          ? "INSERT OR REPLACE INTO files(id, purpose, filename, bytes, "
                            "created_ms, path, deleted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)"
                          : "DELETE FROM files WHERE id = ?1";
    if (rc && rc != AH_E_NOTFOUND) {
        ah_file_clear(&f);
        return rc;
    }
    ah_err_t out = AH_E_OK;
    if (sqlite3_prepare_v2(local, sql, -1, &st, NULL) != SQLITE_OK) {
        out = AH_E_DB;
    } else {
        sqlite3_bind_text(st, 1, file_id, -1, SQLITE_STATIC);
        if (rc == AH_E_OK) {
            sqlite3_bind_text(st, 2, f.purpose, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, f.filename, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, f.bytes);
            sqlite3_bind_int64(st, 5, f.created_ms);
            sqlite3_bind_text(st, 6, f.path, -1, SQLITE_STATIC);
        }
        if (sqlite3_step(st) != SQLITE_DONE)
            out = AH_E_DB;
    }
    sqlite3_finalize(st);
    ah_file_clear(&f);
    return out;
}

ah_err_t ah_bpg_take(PGconn *c, sqlite3 *local, const char *dir, const char *runner,
                     int64_t lease_ms, char id_out[AH_FILE_ID_MAX])
{
    id_out[0] = '\0';
    char now[24], lease[24];
    snprintf(now, sizeof now, "%" PRId64, ah_wall_ms());
    snprintf(lease, sizeof lease, "%" PRId64, lease_ms);
    const char *params[3] = {runner, now, lease};
    /* SKIP LOCKED: instances taking at the same moment take different
     * batches (or wait for the next poll), never the same one. */
    PGresult *r = run(
        c,
        "UPDATE ahorro_batches SET runner = $1, lease_ms = $2::bigint + $3::bigint, "
        "status = CASE status WHEN 'validating' THEN 'in_progress' ELSE status END, "
        "in_progress_ms = CASE status WHEN 'validating' THEN COALESCE(in_progress_ms, "
        "$2::bigint) ELSE in_progress_ms END "
        "WHERE id = (SELECT id FROM ahorro_batches WHERE status IN ('validating', 'in_progress', "
        "'finalizing', 'cancelling') AND (runner IS NULL OR lease_ms < $2::bigint) "
        "ORDER BY status = 'validating', created_ms, seq LIMIT 1 FOR UPDATE SKIP LOCKED) "
        "RETURNING " RUN_COLS,
        3, params);
    if (!ok(c, r, PGRES_TUPLES_OK, "taking a batch")) {
        PQclear(r);
        return AH_E_DB;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return AH_E_OK;
    }
    const char *v[RUN_NCOLS];
    cols(r, 0, RUN_NCOLS, v);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT OR REPLACE INTO batches(" RUN_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
             "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, "
             "?24, ?25)");
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_OK;
    if (sqlite3_prepare_v2(local, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = AH_E_DB;
    } else {
        for (int i = 0; i < RUN_NCOLS; i++)
            if (v[i])
                sqlite3_bind_text(st, i + 1, v[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = AH_E_DB;
    }
    sqlite3_finalize(st);
    if (rc == AH_E_OK)
        rc = copy_input(c, local, dir, v[1]);
    if (rc == AH_E_OK)
        snprintf(id_out, AH_FILE_ID_MAX, "%s", v[0]);
    else
        ah_error("batches: cannot copy batch %s for its run: %s", v[0], sqlite3_errmsg(local));
    PQclear(r);
    if (rc && id_out[0] == '\0')
        ah_bpg_release(c, runner, v[0] ? v[0] : "");
    return rc;
}

/* Send the working copy's file id (an output or error file) unless it is
 * in PostgreSQL already. */
static ah_err_t send_file(PGconn *c, sqlite3 *local, const char *id)
{
    const char *params[1] = {id};
    PGresult *r = run(c, "SELECT 1 FROM ahorro_files WHERE id = $1", 1, params);
    int have = ok(c, r, PGRES_TUPLES_OK, "reading a file") ? PQntuples(r) > 0 : -1;
    PQclear(r);
    if (have)
        return have < 0 ? AH_E_DB : AH_E_OK;
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_NOTFOUND;
    if (sqlite3_prepare_v2(local,
                           "SELECT purpose, filename, bytes, created_ms, key_id, owner, path "
                           "FROM files WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        rc = add_file(c, 0, id, (const char *)sqlite3_column_text(st, 0),
                      (const char *)sqlite3_column_text(st, 1), sqlite3_column_int64(st, 2),
                      sqlite3_column_int64(st, 3), (const char *)sqlite3_column_text(st, 4),
                      (const char *)sqlite3_column_text(st, 5),
                      (const char *)sqlite3_column_text(st, 6));
    sqlite3_finalize(st);
    return rc;
}

/* --- journals ---------------------------------------------------------------- */

static const char *const journal_kinds[2] = {"output", "error"};

/* Bytes PostgreSQL holds of batch id's journal kind; -1 on failure. */
static int64_t journal_bytes(PGconn *c, const char *id, const char *kind)
{
    const char *params[2] = {id, kind};
    PGresult *r = run(c,
                      "SELECT COALESCE(SUM(length(data)), 0) FROM ahorro_batch_journal "
                      "WHERE batch_id = $1 AND kind = $2",
                      2, params);
    int64_t n = ok(c, r, PGRES_TUPLES_OK, "reading a batch's journal")
                    ? strtoll(PQgetvalue(r, 0, 0), NULL, 10)
                    : -1;
    PQclear(r);
    return n;
}

/* PostgreSQL's journal kind of batch id into path. */
static ah_err_t journal_get(PGconn *c, const char *id, const char *kind, const char *path)
{
    const char *params[2] = {id, kind};
    return download(c,
                    "SELECT data FROM ahorro_batch_journal WHERE batch_id = $1 AND kind = $2 "
                    "ORDER BY at",
                    2, params, path, -1, "a batch's journal");
}

ah_err_t ah_bpg_journals_fetch(PGconn *c, const char *id, ah_bpg_journals_t *j)
{
    for (int k = 0; k < 2; k++) {
        int64_t have = journal_bytes(c, id, journal_kinds[k]);
        if (have < 0)
            return AH_E_DB;
        struct stat sb;
        int64_t local = stat(j->path[k], &sb) == 0 ? (int64_t)sb.st_size : 0;
        /* Equal lengths: the same lines (this instance sent them). Nothing
         * sent: the file, if any, is this instance's own unsent lines.
         * Otherwise PostgreSQL's are the truth (another instance went on). */
        if (have > 0 && have != local) {
            ah_err_t rc = journal_get(c, id, journal_kinds[k], j->path[k]);
            if (rc)
                return rc;
        }
        j->sent[k] = have;
    }
    return AH_E_OK;
}

/* Send what journal file path gained past `from`, up to its last complete
 * line, as parts of kind at their offsets (in the caller's transaction);
 * *to is where that ends. */
static ah_err_t journal_send(PGconn *c, const char *id, const char *kind, const char *path,
                             int64_t from, int64_t *to)
{
    *to = from;
    FILE *f = fopen(path, "rb");
    if (!f)
        return errno == ENOENT ? AH_E_OK : AH_E_IO;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || (int64_t)sb.st_size <= from) {
        fclose(f);
        return AH_E_OK;
    }
    char *buf = ah_malloc(AH_BPG_PART_BYTES);
    /* The end: just after the last newline (a line is sent whole). */
    int64_t end = (int64_t)sb.st_size;
    while (end > from) {
        int64_t at = end - AH_BPG_PART_BYTES > from ? end - AH_BPG_PART_BYTES : from;
        size_t want = (size_t)(end - at);
        if (fseeko(f, (off_t)at, SEEK_SET) != 0 || fread(buf, 1, want, f) != want) {
            end = from;
            break;
        }
        const char *nl = memrchr(buf, '\n', want);
        if (nl) {
            end = at + (int64_t)(nl - buf) + 1;
            break;
        }
        end = at;
    }
    ah_err_t rc = AH_E_OK;
    for (int64_t at = from; rc == AH_E_OK && at < end;) {
        size_t n = (size_t)(end - at < AH_BPG_PART_BYTES ? end - at : AH_BPG_PART_BYTES);
        if (fseeko(f, (off_t)at, SEEK_SET) != 0 || fread(buf, 1, n, f) != n) {
            rc = AH_E_IO;
            break;
        }
        char off[24];
        snprintf(off, sizeof off, "%" PRId64, at);
        const char *params[4] = {id, kind, off, buf};
        int lens[4] = {0, 0, 0, (int)n}, fmts[4] = {0, 0, 0, 1};
        PGresult *r = PQexecParams(c,
                                   "INSERT INTO ahorro_batch_journal(batch_id, kind, at, data) "
                                   "VALUES ($1, $2, $3, $4)",
                                   4, NULL, params, lens, fmts, 0);
        if (!ok(c, r, PGRES_COMMAND_OK, "sending a batch's journal"))
            rc = AH_E_DB;
        PQclear(r);
        at += (int64_t)n;
    }
    ah_free(buf);
    fclose(f);
    if (rc == AH_E_OK)
        *to = end;
    return rc;
}

static int final_status(const char *s)
{
    return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "expired") ||
                 !strcmp(s, "cancelled"));
}

ah_err_t ah_bpg_sync(PGconn *c, sqlite3 *local, const char *runner, int64_t lease_ms,
                     const char *id, ah_bpg_journals_t *j)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(local, "SELECT " RUN_COLS " FROM batches WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return AH_E_DB;
    }
    const char *v[RUN_NCOLS];
    for (int i = 0; i < RUN_NCOLS; i++)
        v[i] = (const char *)sqlite3_column_text(st, i);
    /* One transaction, the row locked first: nothing is sent for a batch
     * another runner holds, and a take waits for a send to end. */
    exec_quiet(c, "BEGIN");
    const char *key[2] = {id, runner};
    PGresult *r =
        run(c, "SELECT 1 FROM ahorro_batches WHERE id = $1 AND runner = $2 FOR UPDATE", 2, key);
    ah_err_t rc = ok(c, r, PGRES_TUPLES_OK, "sending a batch's progress")
                      ? (PQntuples(r) ? AH_E_OK : AH_E_NOTFOUND)
                      : AH_E_DB;
    PQclear(r);
    r = NULL;
    int64_t to[2] = {j ? j->sent[0] : 0, j ? j->sent[1] : 0};
    for (int k = 0; j && k < 2 && rc == AH_E_OK; k++)
        rc = journal_send(c, id, journal_kinds[k], j->path[k], j->sent[k], &to[k]);
    /* The files, then the row: a batch that says it has them has them. */
    for (int k = 14; k <= 15 && rc == AH_E_OK; k++)
        if (v[k])
            rc = send_file(c, local, v[k]);
    char lease[24];
    snprintf(lease, sizeof lease, "%" PRId64, ah_wall_ms() + lease_ms);
    /* Status: what the copy says, but a cancel asked meanwhile stays. */
    const char *params[18] = {id,    runner, v[4],  v[6],  v[7],  v[8],  v[9],  v[11], v[12],
                              v[13], v[14],  v[15], v[17], v[18], v[20], v[23], v[24], lease};
    if (rc == AH_E_OK) {
        r = run(c,
                "UPDATE ahorro_batches SET status = CASE WHEN status = 'cancelling' AND $3 IN "
                "('in_progress', 'finalizing') THEN status ELSE $3 END, in_progress_ms = $4, "
                "finalizing_ms = $5, completed_ms = $6, failed_ms = $7, expired_ms = $8, "
                "cancelling_ms = COALESCE(cancelling_ms, $9), cancelled_ms = $10, "
                "output_file_id = $11, error_file_id = $12, completed = $13, failed = $14, "
                "errors = $15, provider_batch_id = $17, cost_usd = COALESCE($16::float8, 0), "
                "lease_ms = $18 WHERE id = $1 AND runner = $2 RETURNING status, cancelling_ms",
                18, params);
        if (!ok(c, r, PGRES_TUPLES_OK, "sending a batch's progress") || PQntuples(r) != 1)
            rc = AH_E_DB;
    }
    if (rc == AH_E_OK && final_status(v[4])) { /* its files hold the lines now */
        const char *one[1] = {id};
        PGresult *d = run(c, "DELETE FROM ahorro_batch_journal WHERE batch_id = $1", 1, one);
        if (!ok(c, d, PGRES_COMMAND_OK, "dropping a finished batch's journal"))
            rc = AH_E_DB;
        PQclear(d);
    }
    PGresult *end = PQexec(c, rc == AH_E_OK ? "COMMIT" : "ROLLBACK");
    if (rc == AH_E_OK && !ok(c, end, PGRES_COMMAND_OK, "sending a batch's progress"))
        rc = AH_E_DB;
    PQclear(end);
    if (rc == AH_E_OK && j) {
        j->sent[0] = to[0];
        j->sent[1] = to[1];
    }
    /* A cancel asked on any instance: into the copy, where the runner
     * looks for it. */
    if (rc == AH_E_OK && strcmp(PQgetvalue(r, 0, 0), "cancelling") == 0 && v[4] &&
        strcmp(v[4], "cancelling") != 0) {
        sqlite3_stmt *up = NULL;
        if (sqlite3_prepare_v2(local,
                               "UPDATE batches SET status = 'cancelling', cancelling_ms = ?2 "
                               "WHERE id = ?1",
                               -1, &up, NULL) == SQLITE_OK) {
            sqlite3_bind_text(up, 1, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(up, 2, col(r, 0, 1), -1, SQLITE_TRANSIENT);
            sqlite3_step(up);
        }
        sqlite3_finalize(up);
    }
    PQclear(r);
    sqlite3_finalize(st);
    return rc;
}

void ah_bpg_release(PGconn *c, const char *runner, const char *id)
{
    const char *params[2] = {id, runner};
    PGresult *r =
        run(c, "UPDATE ahorro_batches SET lease_ms = 0 WHERE id = $1 AND runner = $2", 2, params);
    ok(c, r, PGRES_COMMAND_OK, "giving a batch back");
    PQclear(r);
}
