/* feedback.c - see feedback.h. */
#include "store/feedback.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

static char *dup_or_null(const char *s)
{
    return s ? ah_strdup(s) : NULL;
}

void ah_feedback_target_clear(ah_feedback_target_t *t)
{
    ah_free(t->owner);
    ah_free(t->key_id);
    ah_free(t->cache);
    ah_free(t->cache_key);
    memset(t, 0, sizeof *t);
}

ah_err_t ah_feedback_find(ah_dbh_t db, const char *request_id, ah_feedback_target_t *out)
{
    memset(out, 0, sizeof *out);
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    if (db.pg) {
        PGresult *r = PQexecParams(db.pg,
                                   "SELECT owner, key_id, cache, cache_key, cache_similarity "
                                   "FROM ahorro_ledger WHERE request_id = $1",
                                   1, NULL, &request_id, NULL, NULL, 0);
        ah_err_t rc = AH_E_DB;
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            rc = PQntuples(r) ? AH_E_OK : AH_E_NOTFOUND;
            if (rc == AH_E_OK) {
                const char *v[5];
                for (int i = 0; i < 5; i++)
                    v[i] = PQgetisnull(r, 0, i) ? NULL : PQgetvalue(r, 0, i);
                out->owner = dup_or_null(v[0]);
                out->key_id = dup_or_null(v[1]);
                out->cache = dup_or_null(v[2]);
                out->cache_key = dup_or_null(v[3]);
                out->similarity = v[4] ? strtod(v[4], NULL) : 0;
            }
        } else {
            ah_error("feedback: PostgreSQL: %s", PQresultErrorMessage(r));
        }
        PQclear(r);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db.lite,
                           "SELECT owner, key_id, cache, cache_key, cache_similarity FROM ledger "
                           "WHERE request_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    ah_err_t rc = s == SQLITE_ROW ? AH_E_OK : s == SQLITE_DONE ? AH_E_NOTFOUND : AH_E_DB;
    if (rc == AH_E_OK) {
        out->owner = dup_or_null((const char *)sqlite3_column_text(st, 0));
        out->key_id = dup_or_null((const char *)sqlite3_column_text(st, 1));
        out->cache = dup_or_null((const char *)sqlite3_column_text(st, 2));
        out->cache_key = dup_or_null((const char *)sqlite3_column_text(st, 3));
        out->similarity = sqlite3_column_double(st, 4);
    }
    sqlite3_finalize(st);
    return rc;
}

ah_err_t ah_feedback_add(ah_dbh_t db, const char *request_id, int64_t ts_ms, const char *key_id,
                         const char *owner, int wrong, double score, const char *comment)
{
    char ts[24], score_s[32];
    snprintf(ts, sizeof ts, "%lld", (long long)ts_ms);
    snprintf(score_s, sizeof score_s, "%.17g", score);
    const char *vals[] = {
        request_id, ts, key_id, owner, wrong ? "1" : "0", score >= 0 ? score_s : NULL, comment};
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    if (db.pg) {
        PGresult *r = PQexecParams(db.pg,
                                   "INSERT INTO ahorro_feedback(request_id, ts_ms, key_id, owner, "
                                   "wrong, score, comment) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                                   7, NULL, vals, NULL, NULL, 0);
        ah_err_t rc = PQresultStatus(r) == PGRES_COMMAND_OK ? AH_E_OK : AH_E_DB;
        if (rc)
            ah_error("feedback: PostgreSQL: %s", PQresultErrorMessage(r));
        PQclear(r);
        return rc;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db.lite,
                           "INSERT INTO feedback(request_id, ts_ms, key_id, owner, wrong, score, "
                           "comment) VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    for (int i = 0; i < 7; i++)
        if (vals[i])
            sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}
