/* batches.c - the Batch API's rows (batches.h). */
#include "batch/batches.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"

#define BATCH_COLUMNS                                                                              \
    "id, input_file_id, endpoint, completion_window, status, created_ms, in_progress_ms, "         \
    "finalizing_ms, completed_ms, failed_ms, expires_ms, expired_ms, cancelling_ms, "              \
    "cancelled_ms, output_file_id, error_file_id, total, completed, failed, metadata, errors"

ah_err_t ah_batches_add(sqlite3 *db, const char *id, const char *input_file_id,
                        const char *endpoint, long total, json_t *metadata,
                        const ah_tenant_t *owner)
{
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

/* A time column in seconds, or null. */
static json_t *secs(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return json_integer((json_int_t)(sqlite3_column_int64(st, col) / 1000));
}

static json_t *text_or_null(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? json_string(s) : json_null();
}

static json_t *json_col(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    json_t *j = s ? json_loads(s, 0, NULL) : NULL;
    return j ? j : json_null();
}

/* OpenAI's batch object from a row of BATCH_COLUMNS. */
static json_t *row_json(sqlite3_stmt *st)
{
    json_t *b = json_object();
    json_object_set_new(b, "id", text_or_null(st, 0));
    json_object_set_new(b, "object", json_string("batch"));
    json_object_set_new(b, "endpoint", text_or_null(st, 2));
    json_object_set_new(b, "errors", json_col(st, 20));
    json_object_set_new(b, "input_file_id", text_or_null(st, 1));
    json_object_set_new(b, "completion_window", text_or_null(st, 3));
    json_object_set_new(b, "status", text_or_null(st, 4));
    json_object_set_new(b, "output_file_id", text_or_null(st, 14));
    json_object_set_new(b, "error_file_id", text_or_null(st, 15));
    json_object_set_new(b, "created_at", secs(st, 5));
    json_object_set_new(b, "in_progress_at", secs(st, 6));
    json_object_set_new(b, "expires_at", secs(st, 10));
    json_object_set_new(b, "finalizing_at", secs(st, 7));
    json_object_set_new(b, "completed_at", secs(st, 8));
    json_object_set_new(b, "failed_at", secs(st, 9));
    json_object_set_new(b, "expired_at", secs(st, 11));
    json_object_set_new(b, "cancelling_at", secs(st, 12));
    json_object_set_new(b, "cancelled_at", secs(st, 13));
    json_object_set_new(b, "request_counts",
                        json_pack("{s:I,s:I,s:I}", "total",
                                  (json_int_t)sqlite3_column_int64(st, 16), "completed",
                                  (json_int_t)sqlite3_column_int64(st, 17), "failed",
                                  (json_int_t)sqlite3_column_int64(st, 18)));
    json_object_set_new(b, "metadata", json_col(st, 19));
    return b;
}

ah_err_t ah_batches_get(sqlite3 *db, const char *id, const ah_tenant_t *t, json_t **out)
{
    sqlite3_stmt *st = NULL;
    *out = NULL;
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

ah_err_t ah_batches_list(sqlite3 *db, const ah_tenant_t *t, const char *after, int limit,
                         json_t **out)
{
    *out = NULL;
    if (after) {
        json_t *b = NULL;
        ah_err_t rc = ah_batches_get(db, after, t, &b);
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

ah_err_t ah_batches_cancel(sqlite3 *db, const char *id, const ah_tenant_t *t, json_t **out)
{
    json_t *b = NULL;
    ah_err_t rc = ah_batches_get(db, id, t, &b);
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
    return ah_batches_get(db, id, t, out);
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
