/* files.c - the Files API's store (files.h). */
#include "batch/files.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/shared.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

#define FILE_ID_RANDOM_BYTES 12

ah_err_t ah_files_dir(const char *db_path, char *out, size_t n)
{
    if ((size_t)snprintf(out, n, "%s-files", db_path) >= n)
        return AH_E_TOOBIG;
    if (mkdir(out, 0700) != 0 && errno != EEXIST) {
        ah_error("files: cannot create %s: %s", out, strerror(errno));
        return AH_E_IO;
    }
    return AH_E_OK;
}

ah_err_t ah_files_new_id(const char *prefix, char out[AH_FILE_ID_MAX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char rnd[FILE_ID_RANDOM_BYTES];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return AH_E_IO;
    size_t pl = strlen(prefix);
    if (pl + 2 * sizeof rnd + 1 > AH_FILE_ID_MAX)
        return AH_E_TOOBIG;
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < sizeof rnd; i++) {
        out[pl + 2 * i] = digits[rnd[i] >> 4];
        out[pl + 2 * i + 1] = digits[rnd[i] & 15];
    }
    out[pl + 2 * sizeof rnd] = '\0';
    return AH_E_OK;
}

void ah_tenant_bind(sqlite3_stmt *st, int all_idx, int key_idx, const ah_tenant_t *t)
{
    sqlite3_bind_int(st, all_idx, t->all);
    if (t->key_id)
        sqlite3_bind_text(st, key_idx, t->key_id, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, key_idx);
}

ah_err_t ah_files_add(ah_dbh_t h, const char *id, const char *purpose, const char *filename,
                      long long bytes, const ah_tenant_t *owner, const char *path)
{
    if (h.pg_wanted)
        return h.pg ? ah_bpg_file_add(h.pg, id, purpose, filename, bytes, owner, path) : AH_E_DB;
    sqlite3 *db = h.lite;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO files(id, purpose, filename, bytes, created_ms, key_id, "
                           "owner, path) VALUES (?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, filename, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, bytes);
    sqlite3_bind_int64(st, 5, ah_wall_ms());
    if (owner->key_id)
        sqlite3_bind_text(st, 6, owner->key_id, -1, SQLITE_STATIC);
    if (owner->owner)
        sqlite3_bind_text(st, 7, owner->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, path, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        ah_error("files: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}

void ah_file_from_row(ah_file_t *f, const char *const v[AH_FILE_COLUMNS])
{
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", v[0] ? v[0] : "");
    snprintf(f->purpose, sizeof f->purpose, "%s", v[1] ? v[1] : "");
    f->filename = ah_strdup(v[2] ? v[2] : "");
    f->bytes = v[3] ? strtoll(v[3], NULL, 10) : 0;
    f->created_ms = v[4] ? strtoll(v[4], NULL, 10) : 0;
    f->path = v[5] ? ah_strdup(v[5]) : NULL;
}

static void row_to_file(sqlite3_stmt *st, ah_file_t *f)
{
    const char *v[AH_FILE_COLUMNS];
    for (int i = 0; i < AH_FILE_COLUMNS; i++)
        v[i] = (const char *)sqlite3_column_text(st, i);
    ah_file_from_row(f, v);
}

#define FILE_COLUMNS AH_FILE_COLUMN_LIST ", path"

ah_err_t ah_files_get(ah_dbh_t h, const char *id, const ah_tenant_t *t, ah_file_t *out)
{
    memset(out, 0, sizeof *out);
    if (h.pg_wanted)
        return h.pg ? ah_bpg_file_get(h.pg, id, t, out) : AH_E_DB;
    sqlite3 *db = h.lite;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " FILE_COLUMNS " FROM files WHERE id = ?1 AND deleted = 0 AND "
                           "(?2 = 1 OR key_id IS ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    ah_tenant_bind(st, 2, 3, t);
    int s = sqlite3_step(st);
    ah_err_t rc = s == SQLITE_ROW ? AH_E_OK : s == SQLITE_DONE ? AH_E_NOTFOUND : AH_E_DB;
    if (rc == AH_E_OK)
        row_to_file(st, out);
    sqlite3_finalize(st);
    return rc;
}

void ah_file_clear(ah_file_t *f)
{
    ah_free(f->filename);
    ah_free(f->path);
    memset(f, 0, sizeof *f);
}

json_t *ah_file_json(const ah_file_t *f)
{
    return json_pack("{s:s,s:s,s:I,s:I,s:s,s:s,s:s,s:n}", "id", f->id, "object", "file", "bytes",
                     (json_int_t)f->bytes, "created_at", (json_int_t)(f->created_ms / 1000),
                     "filename", f->filename, "purpose", f->purpose, "status", "processed",
                     "status_details");
}

ah_err_t ah_files_list(ah_dbh_t h, const ah_tenant_t *t, const char *purpose, const char *after,
                       int asc, int limit, json_t **out)
{
    *out = NULL;
    if (h.pg_wanted)
        return h.pg ? ah_bpg_file_list(h.pg, t, purpose, after, asc, limit, out) : AH_E_DB;
    sqlite3 *db = h.lite;
    if (after) {
        ah_file_t f;
        ah_err_t rc = ah_files_get(h, after, t, &f);
        ah_file_clear(&f);
        if (rc)
            return rc;
    }
    static const char *const sql[2] = {
        "SELECT " FILE_COLUMNS " FROM files WHERE deleted = 0 AND (?1 = 1 OR key_id IS ?2) "
        "AND (?3 IS NULL OR purpose = ?3) AND (?4 IS NULL OR (created_ms, rowid) < "
        "(SELECT created_ms, rowid FROM files WHERE id = ?4)) "
        "ORDER BY created_ms DESC, rowid DESC LIMIT ?5",
        "SELECT " FILE_COLUMNS " FROM files WHERE deleted = 0 AND (?1 = 1 OR key_id IS ?2) "
        "AND (?3 IS NULL OR purpose = ?3) AND (?4 IS NULL OR (created_ms, rowid) > "
        "(SELECT created_ms, rowid FROM files WHERE id = ?4)) "
        "ORDER BY created_ms ASC, rowid ASC LIMIT ?5"};
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql[asc ? 1 : 0], -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    ah_tenant_bind(st, 1, 2, t);
    if (purpose)
        sqlite3_bind_text(st, 3, purpose, -1, SQLITE_STATIC);
    if (after)
        sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, limit + 1);
    json_t *data = json_array();
    int more = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int)json_array_size(data) == limit) {
            more = 1;
            break;
        }
        ah_file_t f;
        row_to_file(st, &f);
        json_array_append_new(data, ah_file_json(&f));
        ah_file_clear(&f);
    }
    sqlite3_finalize(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        json_decref(data);
        return AH_E_DB;
    }
    *out = ah_list_json(data, more);
    return AH_E_OK;
}

ah_err_t ah_files_delete(ah_dbh_t h, const char *dir, const char *id, const ah_tenant_t *t)
{
    if (h.pg_wanted)
        return h.pg ? ah_bpg_file_delete(h.pg, dir, id, t) : AH_E_DB;
    sqlite3 *db = h.lite;
    ah_file_t f;
    ah_err_t rc = ah_files_get(h, id, t, &f);
    if (rc)
        return rc;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE files SET deleted = 1 WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK) {
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = AH_E_DB;
    sqlite3_finalize(st);
    if (rc == AH_E_OK && unlink(f.path) != 0 && errno != ENOENT)
        ah_warn("files: cannot remove %s: %s", f.path, strerror(errno));
out:
    ah_file_clear(&f);
    return rc;
}

ah_err_t ah_files_fetch(ah_dbh_t h, const char *dir, ah_file_t *f)
{
    if (f->path)
        return AH_E_OK; /* on this disk already (the SQLite store's files) */
    if (!h.pg_wanted || !h.pg)
        return AH_E_DB;
    return ah_bpg_file_fetch(h.pg, dir, f);
}

json_t *ah_list_json(json_t *data, int more)
{
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : json_null();
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : json_null();
    return json_pack("{s:s,s:o,s:O,s:O,s:b}", "object", "list", "data", data, "first_id", first,
                     "last_id", last, "has_more", more);
}
