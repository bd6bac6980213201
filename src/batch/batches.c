/* batches.c - the Batch API's rows (batches.h). */
#include "batch/batches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch/shared.h"
#include "core/clock.h"
#include "core/log.h"

#define BATCH_COLUMNS AH_BATCH_COLUMN_LIST

ah_err_t ah_batches_add(ah_dbh_t h, const char *id, const char *input_file_id, const char *endpoint,
                        long total, json_t *metadata, const ah_tenant_t *owner)
{
    if (h.pg_wanted)
        return h.pg ? ah_bpg_batch_add(h.pg, id, input_file_id, endpoint, total, metadata, owner)
                    : AH_E_DB;
    sqlite3 *db = h.lite;
    sqlite3_stmt *st = NULL;
    char *meta = metadata ? json_dumps(metadata, JSON_COMPACT) : NULL;
    ah_err_t rc = AH_E_OK;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO batches(id, input_file_id, endpoint, completion_window, "
                           "status, created_ms, expires_ms, total, metadata, key_id, owner) "
                           "VALUES (?,?,?,'24h','validating',?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = AH_E_DB;
        goto out;
    }
    int64_t now = ah_wall_ms();
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, input_file_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, endpoint, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_int64(st, 5, now + (int64_t)AH_BATCH_WINDOW_S * 1000);
    sqlite3_bind_int64(st, 6, total);
    if (meta)
        sqlite3_bind_text(st, 7, meta, -1, SQLITE_STATIC);
    if (owner->key_id)
        sqlite3_bind_text(st, 8, owner->key_id, -1, SQLITE_STATIC);
    if (owner->owner)
        sqlite3_bind_text(st, 9, owner->owner, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        ah_error("batches: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
    }
out:
    sqlite3_finalize(st);
    free(meta);
    return rc;
}

/* A time column (milliseconds) in seconds, or null. */
static json_t *secs(const char *v)
{
    return v ? json_integer((json_int_t)(strtoll(v, NULL, 10) / 1000)) : json_null();
}

static json_t *text_or_null(const char *v)
{
    return v ? json_string(v) : json_null();
}

static json_t *json_col(const char *v)
{
    json_t *j = v ? json_loads(v, 0, NULL) : NULL;
    return j ? j : json_null();
}

static json_int_t int_col(const char *v)
{
    return v ? (json_int_t)strtoll(v, NULL, 10) : 0;
}

json_t *ah_batch_row_json(const char *const v[AH_BATCH_COLUMNS])
{
    json_t *b = json_object();
    json_object_set_new(b, "id", text_or_null(v[0]));
    json_object_set_new(b, "object", json_string("batch"));
    json_object_set_new(b, "endpoint", text_or_null(v[2]));
    json_object_set_new(b, "errors", json_col(v[20]));
    json_object_set_new(b, "input_file_id", text_or_null(v[1]));
    json_object_set_new(b, "completion_window", text_or_null(v[3]));
    json_object_set_new(b, "status", text_or_null(v[4]));
    json_object_set_new(b, "output_file_id", text_or_null(v[14]));
    json_object_set_new(b, "error_file_id", text_or_null(v[15]));
    json_object_set_new(b, "created_at", secs(v[5]));
    json_object_set_new(b, "in_progress_at", secs(v[6]));
    json_object_set_new(b, "expires_at", secs(v[10]));
    json_object_set_new(b, "finalizing_at", secs(v[7]));
    json_object_set_new(b, "completed_at", secs(v[8]));
    json_object_set_new(b, "failed_at", secs(v[9]));
    json_object_set_new(b, "expired_at", secs(v[11]));
    json_object_set_new(b, "cancelling_at", secs(v[12]));
    json_object_set_new(b, "cancelled_at", secs(v[13]));
    json_object_set_new(b, "request_counts",
                        json_pack("{s:I,s:I,s:I}", "total", int_col(v[16]), "completed",
                                  int_col(v[17]), "failed", int_col(v[18])));
    json_object_set_new(b, "metadata", json_col(v[19]));
    return b;
}

/* OpenAI's batch object from a row of AH_BATCH_COLUMN_LIST. */
static json_t *row_json(sqlite3_stmt *st)
{
    const char *v[AH_BATCH_COLUMNS];
    for (int i = 0; i < AH_BATCH_COLUMNS; i++)
        v[i] = (const char *)sqlite3_column_text(st, i);
    return ah_batch_row_json(v);
}

ah_err_t ah_batches_get(ah_dbh_t h, const char *id, const ah_tenant_t *t, json_t **out)
{
    *out = NULL;
    if (h.pg_wanted)
        return h.pg ? ah_bpg_batch_get(h.pg, id, t, out) : AH_E_DB;
    sqlite3 *db = h.lite;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db, "SELECT " BATCH_COLUMNS " FROM batches WHERE id = ?1 AND (?2 = 1 OR key_id IS ?3)",
            -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    ah_tenant_bind(st, 2, 3, t);
    int s = sqlite3_step(st);
    ah_err_t rc = s == SQLITE_ROW ? AH_E_OK : s == SQLITE_DONE ? AH_E_NOTFOUND : AH_E_DB;
    if (rc == AH_E_OK)
        *out = row_json(st);
    sqlite3_finalize(st);
    return rc;
}

ah_err_t ah_batches_list(ah_dbh_t h, const ah_tenant_t *t, const char *after, int limit,
                         json_t **out)
{
    *out = NULL;
    if (h.pg_wanted)
        return h.pg ? ah_bpg_batch_list(h.pg, t, after, limit, out) : AH_E_DB;
    sqlite3 *db = h.lite;
    if (after) {
        json_t *b = NULL;
        ah_err_t rc = ah_batches_get(h, after, t, &b);
        json_decref(b);
        if (rc)
            return rc;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " BATCH_COLUMNS " FROM batches WHERE (?1 = 1 OR key_id IS ?2) "
                           "AND (?3 IS NULL OR (created_ms, rowid) < "
                           "(SELECT created_ms, rowid FROM batches WHERE id = ?3)) "
                           "ORDER BY created_ms DESC, rowid DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    ah_tenant_bind(st, 1, 2, t);
    if (after)
        sqlite3_bind_text(st, 3, after, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, limit + 1);
    json_t *data = json_array();
    int more = 0, s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int)json_array_size(data) == limit) {
            more = 1;
            break;
        }
        json_array_append_new(data, row_json(st));
    }
    sqlite3_finalize(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE) {
        json_decref(data);
        return AH_E_DB;
    }
    *out = ah_list_json(data, more);
    return AH_E_OK;
}

ah_err_t ah_batches_cancel(ah_dbh_t h, const char *id, const ah_tenant_t *t, json_t **out)
{
    if (h.pg_wanted)
        return h.pg ? ah_bpg_batch_cancel(h.pg, id, t, out) : AH_E_DB;
    sqlite3 *db = h.lite;
    json_t *b = NULL;
    ah_err_t rc = ah_batches_get(h, id, t, &b);
    if (rc)
        return rc;
    json_decref(b);
    /* One statement: the runner's move from validating to in_progress is
     * atomic too, so exactly one of them wins. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "UPDATE batches SET status = CASE status WHEN 'validating' THEN 'cancelled' "
            "ELSE 'cancelling' END, cancelling_ms = ?1, "
            "cancelled_ms = CASE status WHEN 'validating' THEN ?1 ELSE cancelled_ms END "
            "WHERE id = ?2 AND status IN ('validating', 'in_progress')",
            -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_int64(st, 1, ah_wall_ms());
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return AH_E_DB;
    return ah_batches_get(h, id, t, out);
}

ah_err_t ah_batches_set_provider_id(sqlite3 *db, const char *id, const char *provider_batch_id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE batches SET provider_batch_id = ?2 WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, provider_batch_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}

ah_err_t ah_batches_provider_id(sqlite3 *db, const char *id, char *out, size_t n)
{
    sqlite3_stmt *st = NULL;
    out[0] = 0;
    if (sqlite3_prepare_v2(db, "SELECT provider_batch_id FROM batches WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    const char *v = s == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (v)
        snprintf(out, n, "%s", v);
    sqlite3_finalize(st);
    return s == SQLITE_ROW || s == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}
