/* pg.c - PostgreSQL connections, schema and the ledger mirror for reports.
 *
 * Migrations are steps from one version to the next, each in a transaction,
 * under pg_advisory_lock(AH_PG_LOCK) so that instances starting together do
 * not race; ahorro_schema holds the version. A database whose version is
 * newer than this build's is refused (a downgrade must not write rows the
 * newer schema does not expect). */
#include "store/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/db.h"
#include "store/ledger.h"

/* The advisory lock of migrations: "ahor" as an integer. */
#define PG_MIGRATE_LOCK "1634234226"

static const char *const migrations[] = {
    /* 1: the ledger (the same columns as the embedded one, db.c) and the
     * virtual keys */
    ("CREATE TABLE ahorro_ledger ("
     " id BIGSERIAL PRIMARY KEY,"
     " request_id TEXT NOT NULL UNIQUE,"
     " ts_ms BIGINT NOT NULL,"
     " key_id TEXT, owner TEXT, \"user\" TEXT, tags TEXT,"
     " api TEXT NOT NULL, endpoint TEXT NOT NULL, stream INTEGER NOT NULL,"
     " requested_model TEXT, served_model TEXT, provider TEXT, deployment TEXT,"
     " prompt_tokens BIGINT NOT NULL DEFAULT 0, completion_tokens BIGINT NOT NULL DEFAULT 0,"
     " cached_tokens BIGINT NOT NULL DEFAULT 0, cache_write_tokens BIGINT NOT NULL DEFAULT 0,"
     " reasoning_tokens BIGINT NOT NULL DEFAULT 0, usage_source TEXT,"
     " cost_usd DOUBLE PRECISION, latency_ms DOUBLE PRECISION NOT NULL,"
     " ttft_ms DOUBLE PRECISION, overhead_us BIGINT, status INTEGER NOT NULL, error TEXT,"
     " cache TEXT, cache_key TEXT, saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,"
     " prompt_cache_saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0,"
     " cache_similarity DOUBLE PRECISION, attempt_of TEXT,"
     " attempts INTEGER NOT NULL DEFAULT 1, route_reason TEXT, baseline_usd DOUBLE PRECISION,"
     " saved_routing_usd DOUBLE PRECISION NOT NULL DEFAULT 0, shape TEXT,"
     " shape_tokens_saved BIGINT NOT NULL DEFAULT 0,"
     " saved_shaping_usd DOUBLE PRECISION NOT NULL DEFAULT 0, prefix_hash TEXT,"
     " prefix_tokens BIGINT NOT NULL DEFAULT 0);"
     "CREATE INDEX ahorro_ledger_ts ON ahorro_ledger(ts_ms);"
     "CREATE INDEX ahorro_ledger_attempt_of ON ahorro_ledger(attempt_of)"
     " WHERE attempt_of IS NOT NULL;"
     "CREATE TABLE ahorro_keys ("
     " id TEXT PRIMARY KEY,"
     " hash TEXT NOT NULL UNIQUE,"
     " prefix TEXT NOT NULL,"
     " owner TEXT NOT NULL,"
     " tags TEXT NOT NULL DEFAULT '{}',"
     " created_ms BIGINT NOT NULL,"
     " revoked_ms BIGINT,"
     " role TEXT NOT NULL DEFAULT 'api');"),
    /* 2: what callers say of answers (POST /v1/feedback), shared like the
     * ledger it refers to */
    ("CREATE TABLE ahorro_feedback ("
     " id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,"
     " key_id TEXT, owner TEXT, wrong INTEGER NOT NULL DEFAULT 0,"
     " score DOUBLE PRECISION, comment TEXT);"
     "CREATE INDEX ahorro_feedback_request ON ahorro_feedback(request_id);"
     "CREATE INDEX ahorro_feedback_ts ON ahorro_feedback(ts_ms);"),
    /* 3: the Files and Batch APIs' state (batch/shared.c): every instance
     * serves every file and batch, and one at a time runs a batch, holding
     * it by a lease (runner, lease_ms) that another takes over once past */
    ("CREATE TABLE ahorro_files ("
     " seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, purpose TEXT NOT NULL,"
     " filename TEXT NOT NULL, bytes BIGINT NOT NULL, created_ms BIGINT NOT NULL,"
     " key_id TEXT, owner TEXT, deleted INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE ahorro_file_parts ("
     " file_id TEXT NOT NULL, part INTEGER NOT NULL, data BYTEA NOT NULL,"
     " PRIMARY KEY (file_id, part));"
     "CREATE TABLE ahorro_batches ("
     " seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, input_file_id TEXT NOT NULL,"
     " endpoint TEXT NOT NULL, completion_window TEXT NOT NULL, status TEXT NOT NULL,"
     " created_ms BIGINT NOT NULL, in_progress_ms BIGINT, finalizing_ms BIGINT,"
     " completed_ms BIGINT, failed_ms BIGINT, expires_ms BIGINT, expired_ms BIGINT,"
     " cancelling_ms BIGINT, cancelled_ms BIGINT, output_file_id TEXT, error_file_id TEXT,"
     " total BIGINT NOT NULL DEFAULT 0, completed BIGINT NOT NULL DEFAULT 0,"
     " failed BIGINT NOT NULL DEFAULT 0, metadata TEXT, key_id TEXT, owner TEXT, errors TEXT,"
     " cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0, provider_batch_id TEXT,"
     " runner TEXT, lease_ms BIGINT);"
     "CREATE INDEX ahorro_batches_status ON ahorro_batches(status);"),
    /* 4: the live judges' verdicts (store/judgments.c), the same columns as
     * the embedded judgments table (db.c): shared, so that an experiment's
     * judge scores and the drift report count every instance's */
    ("CREATE TABLE ahorro_judgments ("
     " id BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, ts_ms BIGINT NOT NULL,"
     " route TEXT, judge TEXT NOT NULL, score DOUBLE PRECISION, scores TEXT,"
     " reason TEXT, error TEXT, judge_request_id TEXT);"
     "CREATE INDEX ahorro_judgments_request ON ahorro_judgments(request_id);"
     "CREATE INDEX ahorro_judgments_ts ON ahorro_judgments(ts_ms);"),
    /* 5: a running batch's journals (its output and error lines so far, in
     * parts keyed by their offset), so that an instance taking a batch
     * over resumes it instead of answering its lines again */
    ("CREATE TABLE ahorro_batch_journal ("
     " batch_id TEXT NOT NULL, kind TEXT NOT NULL, at BIGINT NOT NULL, data BYTEA NOT NULL,"
     " PRIMARY KEY (batch_id, kind, at));"),
};

int ah_pg_schema_version(void)
{
    return (int)(sizeof migrations / sizeof migrations[0]);
}

void ah_pg_redact(const char *url, char *out, size_t outlen)
{
    /* scheme://user:PASSWORD@host... -> scheme://user:***@host... */
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) : NULL;
    if (colon) {
        snprintf(out, outlen, "%.*s:***%s", (int)(colon - url), url, at);
        return;
    }
    const char *pw = strstr(url, "password=");
    if (pw) { /* key=value form: drop everything from the password on */
        snprintf(out, outlen, "%.*spassword=***", (int)(pw - url), url);
        return;
    }
    snprintf(out, outlen, "%s", url);
}

/* libpq's message without its trailing newline. */
static void pg_reason(PGconn *c, const PGresult *res, char *err, size_t errlen)
{
    const char *m = res ? PQresultErrorMessage(res) : NULL;
    if (!m || !*m)
        m = c ? PQerrorMessage(c) : "out of memory";
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        n--;
    ah_err_printf(err, errlen, "%.*s", (int)n, m);
}

PGconn *ah_pg_connect(const char *url, int timeout_ms, char *err, size_t errlen)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", (timeout_ms > 0 ? timeout_ms : 2000 + 999) / 1000);
    /* A server that vanishes without closing the connection (a dead host, a
     * partition) is noticed within about ten seconds instead of the
     * kernel's retransmission timeout of many minutes: keepalives while
     * idle, and a bound on unacknowledged data while sending. */
    const char *keys[] = {"dbname",           "connect_timeout",  "application_name",
                          "keepalives",       "keepalives_idle",  "keepalives_interval",
                          "keepalives_count", "tcp_user_timeout", NULL};
    const char *vals[] = {url, timeout, "ahorro", "1", "5", "2", "3", "10000", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        pg_reason(c, NULL, err, errlen);
        PQfinish(c);
        return NULL;
    }
    /* Notices (e.g. "relation exists, skipping") are not the log's business. */
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

ah_err_t ah_pg_exec(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType s = PQresultStatus(r);
    ah_err_t rc = AH_E_OK;
    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        pg_reason(c, r, err, errlen);
        rc = AH_E_DB;
    }
    PQclear(r);
    return rc;
}

int ah_pg_connection_lost(PGconn *c, const PGresult *res)
{
    if (!c || PQstatus(c) != CONNECTION_OK)
        return 1;
    /* Only class 22 (data exception) and 23 (integrity constraint) blame
     * the row; anything else (a lost connection, a shutdown, a missing
     * table, a full disk) is the database's and is retried. */
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return !state || !(strncmp(state, "22", 2) == 0 || strncmp(state, "23", 2) == 0);
}

static int schema_version(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT version FROM ahorro_schema");
    int v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        v = PQntuples(r) ? (int)strtol(PQgetvalue(r, 0, 0), NULL, 10) : 0;
    PQclear(r);
    return v;
}

ah_err_t ah_pg_migrate(PGconn *c, char *err, size_t errlen)
{
    ah_err_t rc;
    if ((rc = ah_pg_exec(c, "SELECT pg_advisory_lock(" PG_MIGRATE_LOCK ")", err, errlen)))
        return rc;
    if ((rc = ah_pg_exec(c, "CREATE TABLE IF NOT EXISTS ahorro_schema (version INTEGER NOT NULL)",
                         err, errlen)))
        goto out;
    int v = schema_version(c), target = ah_pg_schema_version();
    if (v < 0) {
        ah_err_printf(err, errlen, "cannot read the schema version (ahorro_schema)");
        rc = AH_E_DB;
        goto out;
    }
    if (v > target) {
        ah_err_printf(err, errlen,
                      "the database has schema version %d, newer than this ahorro's (%d)", v,
                      target);
        rc = AH_E_DB;
        goto out;
    }
    for (; v < target; v++) {
        char set[96];
        snprintf(set, sizeof set,
                 "DELETE FROM ahorro_schema; INSERT INTO ahorro_schema(version) VALUES (%d)",
                 v + 1);
        if ((rc = ah_pg_exec(c, "BEGIN", err, errlen)))
            goto out;
        if ((rc = ah_pg_exec(c, migrations[v], err, errlen)) ||
            (rc = ah_pg_exec(c, set, err, errlen))) {
            char ignore[64];
            ah_pg_exec(c, "ROLLBACK", ignore, sizeof ignore);
            goto out;
        }
        if ((rc = ah_pg_exec(c, "COMMIT", err, errlen)))
            goto out;
        ah_info("postgres: schema migrated to version %d", v + 1);
    }
out:;
    char ignore[64];
    ah_pg_exec(c, "SELECT pg_advisory_unlock(" PG_MIGRATE_LOCK ")", ignore, sizeof ignore);
    return rc;
}

/* The feedback given since since_ms (it comes after its request), into the
 * mirror's feedback table: what the experiments' reports join. */
/* Insert result row i of r (its first n columns, as text; SQL NULL as
 * NULL) with st, the mirror's INSERT of those columns: the columns'
 * affinities turn numbers back into numbers. AH_E_DB (why in err) when
 * the insert fails. */
static ah_err_t copy_row(sqlite3 *db, sqlite3_stmt *st, const PGresult *r, int i, int n, char *err,
                         size_t errlen)
{
    for (int k = 0; k < n; k++) {
        if (PQgetisnull(r, i, k))
            sqlite3_bind_null(st, k + 1);
        else
            sqlite3_bind_text(st, k + 1, PQgetvalue(r, i, k), PQgetlength(r, i, k),
                              SQLITE_TRANSIENT);
    }
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    if (s == SQLITE_DONE)
        return AH_E_OK;
    ah_err_printf(err, errlen, "mirror insert: %s", sqlite3_errmsg(db));
    return AH_E_DB;
}

static ah_err_t mirror_feedback(PGconn *c, sqlite3 *db, const char *since, int64_t max_rows,
                                char *err, size_t errlen)
{
    char limit[24];
    snprintf(limit, sizeof limit, "%lld", (long long)max_rows);
    const char *params[2] = {since, limit};
    PGresult *r = PQexecParams(c,
                               "SELECT request_id, ts_ms, key_id, owner, wrong, score, comment "
                               "FROM ahorro_feedback WHERE ts_ms >= $1 ORDER BY id LIMIT $2",
                               2, NULL, params, NULL, NULL, 0);
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_OK;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_reason(c, r, err, errlen);
        rc = AH_E_DB;
    } else if (sqlite3_prepare_v2(db,
                                  "INSERT INTO feedback(request_id, ts_ms, key_id, owner, wrong, "
                                  "score, comment) VALUES (?,?,?,?,?,?,?)",
                                  -1, &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "mirror: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
    }
    for (int i = 0; rc == AH_E_OK && i < PQntuples(r); i++)
        rc = copy_row(db, st, r, i, 7, err, errlen);
    sqlite3_finalize(st);
    PQclear(r);
    return rc;
}

/* The columns of a judgment, the same in both databases (db.c's judgments,
 * migration 4's ahorro_judgments). */
#define JUDGMENT_COLUMNS 9
#define JUDGMENT_COLUMN_LIST                                                                       \
    "request_id, ts_ms, route, judge, score, scores, reason, error, judge_request_id"

/* The live judges' judgments with since <= ts_ms < until (route NULL: every
 * route), at most limit of them, into db's judgments table; *copied says
 * how many. In the drift report's order (quality/judging.c: route, judge,
 * ts_ms, bytewise as SQLite compares), so that a report cut at a limit
 * sees the rows it would see in the SQLite file. Single-row mode, as for
 * the ledger's rows: each judgment carries the judge's sentence, and a
 * month of them need not sit in memory twice. */
static ah_err_t mirror_judgments(PGconn *c, sqlite3 *db, const char *since, const char *until,
                                 const char *route, int64_t limit, int64_t *copied, char *err,
                                 size_t errlen)
{
    char lim[24];
    snprintf(lim, sizeof lim, "%lld", (long long)limit);
    const char *params[4] = {since, until, route, lim};
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_OK;
    *copied = 0;
    if (sqlite3_prepare_v2(
            db, "INSERT INTO judgments(" JUDGMENT_COLUMN_LIST ") VALUES (?,?,?,?,?,?,?,?,?)", -1,
            &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "mirror: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    if (!PQsendQueryParams(c,
                           "SELECT " JUDGMENT_COLUMN_LIST " FROM ahorro_judgments "
                           "WHERE ts_ms >= $1 AND ts_ms < $2 AND ($3::text IS NULL OR route = $3) "
                           "ORDER BY COALESCE(route, '') COLLATE \"C\", judge COLLATE \"C\", "
                           "ts_ms LIMIT $4",
                           4, NULL, params, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c)) {
        pg_reason(c, NULL, err, errlen);
        sqlite3_finalize(st);
        return AH_E_DB;
    }
    PGresult *r;
    while ((r = PQgetResult(c))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && rc == AH_E_OK) {
            rc = copy_row(db, st, r, 0, JUDGMENT_COLUMNS, err, errlen);
            (*copied)++;
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && rc == AH_E_OK) {
            pg_reason(c, r, err, errlen);
            rc = AH_E_DB;
        }
        PQclear(r); /* the remaining results are read to the end either way */
    }
    sqlite3_finalize(st);
    return rc;
}

ah_err_t ah_pg_judgments_mirror(PGconn *c, int64_t since_ms, const char *route, int64_t limit,
                                sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    sqlite3 *db = NULL;
    if (ah_db_open(":memory:", &db)) {
        ah_err_printf(err, errlen, "cannot open an in-memory database");
        return AH_E_DB;
    }
    char since[24], until[24];
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    snprintf(until, sizeof until, "%lld", (long long)INT64_MAX);
    int64_t copied;
    ah_err_t rc = AH_E_OK;
    if (ah_db_exec(db, "BEGIN")) {
        ah_err_printf(err, errlen, "cannot prepare the mirror: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
    }
    if (rc == AH_E_OK)
        rc = mirror_judgments(c, db, since, until, route, limit, &copied, err, errlen);
    if (rc == AH_E_OK && ah_db_exec(db, "COMMIT"))
        rc = AH_E_DB;
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return AH_E_OK;
}

ah_err_t ah_pg_ledger_mirror(PGconn *c, int64_t since_ms, int64_t until_ms, int64_t max_rows,
                             sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    sqlite3 *db = NULL;
    if (ah_db_open(":memory:", &db)) {
        ah_err_printf(err, errlen, "cannot open an in-memory database");
        return AH_E_DB;
    }
    char sql[1024], ins[1024];
    snprintf(sql, sizeof sql,
             "SELECT %s FROM ahorro_ledger WHERE ts_ms >= $1 AND ts_ms < $2 ORDER BY ts_ms",
             ah_ledger_columns);
    size_t len = (size_t)snprintf(ins, sizeof ins, "INSERT OR IGNORE INTO ledger(%s) VALUES (?",
                                  ah_ledger_columns);
    for (int i = 1; i < AH_LEDGER_COLUMNS && len + 3 < sizeof ins; i++)
        len += (size_t)snprintf(ins + len, sizeof ins - len, ",?");
    snprintf(ins + len, sizeof ins - len, ")");
    char since[24], until[24];
    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    snprintf(until, sizeof until, "%lld", (long long)(until_ms > 0 ? until_ms : INT64_MAX));
    const char *params[2] = {since, until};
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_OK;
    if (sqlite3_prepare_v2(db, ins, -1, &st, NULL) != SQLITE_OK || ah_db_exec(db, "BEGIN")) {
        ah_err_printf(err, errlen, "cannot prepare the mirror: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
        goto out;
    }
    if (!PQsendQueryParams(c, sql, 2, NULL, params, NULL, NULL, 0) || !PQsetSingleRowMode(c)) {
        pg_reason(c, NULL, err, errlen);
        rc = AH_E_DB;
        goto out;
    }
    int64_t n = 0;
    PGresult *r;
    while ((r = PQgetResult(c))) {
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_SINGLE_TUPLE && rc == AH_E_OK) {
            if (++n > max_rows) {
                ah_err_printf(err, errlen,
                              "more than %lld ledger rows in that range: narrow it (--since, "
                              "--until)",
                              (long long)max_rows);
                rc = AH_E_TOOBIG;
            } else {
                rc = copy_row(db, st, r, 0, AH_LEDGER_COLUMNS, err, errlen);
            }
        } else if (s != PGRES_SINGLE_TUPLE && s != PGRES_TUPLES_OK && rc == AH_E_OK) {
            pg_reason(c, r, err, errlen);
            rc = AH_E_DB;
        }
        PQclear(r); /* the remaining results are read to the end either way */
    }
    if (rc == AH_E_OK)
        rc = mirror_feedback(c, db, since, max_rows, err, errlen);
    /* The judgments of the range's requests (a judgment bears its judged
     * request's ts_ms), what experiment reports join; bounded like the
     * rows they grade. */
    int64_t judged = 0;
    if (rc == AH_E_OK)
        rc = mirror_judgments(c, db, since, until, NULL, max_rows + 1, &judged, err, errlen);
    if (rc == AH_E_OK && judged > max_rows) {
        ah_err_printf(err, errlen,
                      "more than %lld judgments in that range: narrow it (--since, --until)",
                      (long long)max_rows);
        rc = AH_E_TOOBIG;
    }
    if (rc == AH_E_OK && ah_db_exec(db, "COMMIT"))
        rc = AH_E_DB;
out:
    sqlite3_finalize(st);
    if (rc) {
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return AH_E_OK;
}
