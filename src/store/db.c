/* db.c - open the SQLite database and keep its schema current.
 *
 * The schema version lives in PRAGMA user_version; each migration is a
 * step from one version to the next, run in a transaction. */
#include "store/db.h"

#include <stdio.h>

#include "core/clock.h"
#include "core/log.h"

static const char *const migrations[] = {
    /* 1: ledger and virtual keys */
    "CREATE TABLE IF NOT EXISTS ledger ("
    " id INTEGER PRIMARY KEY,"
    " request_id TEXT NOT NULL UNIQUE,"
    " ts_ms INTEGER NOT NULL,"
    " key_id TEXT, owner TEXT, user TEXT, tags TEXT,"
    " api TEXT NOT NULL, endpoint TEXT NOT NULL, stream INTEGER NOT NULL,"
    " requested_model TEXT, served_model TEXT, provider TEXT, deployment TEXT,"
    " prompt_tokens INTEGER NOT NULL DEFAULT 0, completion_tokens INTEGER NOT NULL DEFAULT 0,"
    " cached_tokens INTEGER NOT NULL DEFAULT 0, cache_write_tokens INTEGER NOT NULL DEFAULT 0,"
    " reasoning_tokens INTEGER NOT NULL DEFAULT 0, usage_source TEXT,"
    " cost_usd REAL, latency_ms REAL NOT NULL, ttft_ms REAL, overhead_us INTEGER,"
    " status INTEGER NOT NULL, error TEXT);"
    "CREATE INDEX IF NOT EXISTS ledger_ts ON ledger(ts_ms);"
    "CREATE TABLE IF NOT EXISTS keys ("
    " id TEXT PRIMARY KEY,"
    " hash TEXT NOT NULL UNIQUE,"
    " prefix TEXT NOT NULL,"
    " owner TEXT NOT NULL,"
    " tags TEXT NOT NULL DEFAULT '{}',"
    " created_ms INTEGER NOT NULL,"
    " revoked_ms INTEGER);",
    /* 2: answer caches: what a request hit or stored, what a hit saved, and
     * the entries kept across restarts */
    "ALTER TABLE ledger ADD COLUMN cache TEXT;"
    "ALTER TABLE ledger ADD COLUMN cache_key TEXT;"
    "ALTER TABLE ledger ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE ledger ADD COLUMN prompt_cache_saved_usd REAL NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS cache ("
    " key BLOB PRIMARY KEY, tenant TEXT NOT NULL, ns TEXT NOT NULL, model TEXT NOT NULL,"
    " answer TEXT NOT NULL, cost_usd REAL NOT NULL, created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL, scope BLOB, vec BLOB);"
    "CREATE TABLE IF NOT EXISTS feedback ("
    " id INTEGER PRIMARY KEY, request_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
    " key_id TEXT, owner TEXT, wrong INTEGER NOT NULL DEFAULT 0, score REAL, comment TEXT);"
    "CREATE INDEX IF NOT EXISTS feedback_request ON feedback(request_id);",
    /* 3: how similar a semantic hit was (feedback adapts the entry's threshold) */
    "ALTER TABLE ledger ADD COLUMN cache_similarity REAL;",
    /* 4: the prompt of a semantic entry, for the re-ranking check */
    "ALTER TABLE cache ADD COLUMN prompt TEXT;",
    /* 5: routing: a failed upstream attempt is a row of its own, linked to
     * its request; the request's row says how many attempts it took and why
     * it went where it went */
    "ALTER TABLE ledger ADD COLUMN attempt_of TEXT;"
    "ALTER TABLE ledger ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;"
    "ALTER TABLE ledger ADD COLUMN route_reason TEXT;"
    "CREATE INDEX IF NOT EXISTS ledger_attempt_of ON ledger(attempt_of)"
    " WHERE attempt_of IS NOT NULL;",
    /* 6: savings by mechanism: what the request would have cost on its
     * baseline model, and what routing saved against it (caches: saved_usd,
     * provider prompt caches: prompt_cache_saved_usd) */
    ("ALTER TABLE ledger ADD COLUMN baseline_usd REAL;"
     "ALTER TABLE ledger ADD COLUMN saved_routing_usd REAL NOT NULL DEFAULT 0;"),
    /* 7: prompt shaping: what was done, the prompt tokens it saved and their
     * price; the request's static prefix (system prompt, tools, documents)
     * as a hash and its tokens, for `ahorro prompts audit` */
    ("ALTER TABLE ledger ADD COLUMN shape TEXT;"
     "ALTER TABLE ledger ADD COLUMN shape_tokens_saved INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE ledger ADD COLUMN saved_shaping_usd REAL NOT NULL DEFAULT 0;"
     "ALTER TABLE ledger ADD COLUMN prefix_hash TEXT;"
     "ALTER TABLE ledger ADD COLUMN prefix_tokens INTEGER NOT NULL DEFAULT 0;"),
    /* 8: named prompt templates with versions (store/templates.h) */
    ("CREATE TABLE templates(name TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,"
     " note TEXT, created_ms INTEGER NOT NULL, PRIMARY KEY(name, version));"),
    /* 9: a key's role: 'api' calls models; 'viewer' reads the admin API and
     * the dashboard, nothing else (store/keys.h) */
    "ALTER TABLE keys ADD COLUMN role TEXT NOT NULL DEFAULT 'api';",
    /* 10: offline evaluation (quality/eval.h): a run, each variant's answer
     * to each data set row with its scores, and the judges' answers, kept
     * so that a report re-run costs nothing */
    ("CREATE TABLE eval_runs(id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,"
     " dataset TEXT NOT NULL, spec TEXT NOT NULL);"
     "CREATE TABLE eval_results(run_id TEXT NOT NULL, variant TEXT NOT NULL,"
     " row_idx INTEGER NOT NULL, row_id TEXT, request_id TEXT, status INTEGER NOT NULL,"
     " answer TEXT, cost_usd REAL, latency_ms REAL, prompt_tokens INTEGER NOT NULL DEFAULT 0,"
     " completion_tokens INTEGER NOT NULL DEFAULT 0, cache TEXT, scores TEXT, error TEXT,"
     " PRIMARY KEY(run_id, variant, row_idx));"
     "CREATE TABLE judge_cache(key TEXT PRIMARY KEY, judge TEXT NOT NULL, answer TEXT NOT NULL,"
     " cost_usd REAL, created_ms INTEGER NOT NULL);"),
    /* 11: sampled live judging: a judge's grades of a served answer */
    ("CREATE TABLE judgments(id INTEGER PRIMARY KEY, request_id TEXT NOT NULL,"
     " ts_ms INTEGER NOT NULL, route TEXT, judge TEXT NOT NULL, score REAL, scores TEXT,"
     " reason TEXT, error TEXT, judge_request_id TEXT);"
     "CREATE INDEX judgments_request ON judgments(request_id);"
     "CREATE INDEX judgments_ts ON judgments(ts_ms);"),
    /* 12: the Files and Batch APIs (src/batch/): uploaded and produced files
     * (bytes on disk, beside the database), and batches with their state */
    ("CREATE TABLE files(id TEXT PRIMARY KEY, purpose TEXT NOT NULL, filename TEXT NOT NULL,"
     " bytes INTEGER NOT NULL, created_ms INTEGER NOT NULL, key_id TEXT, owner TEXT,"
     " path TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE batches(id TEXT PRIMARY KEY, input_file_id TEXT NOT NULL,"
     " endpoint TEXT NOT NULL, completion_window TEXT NOT NULL, status TEXT NOT NULL,"
     " created_ms INTEGER NOT NULL, in_progress_ms INTEGER, finalizing_ms INTEGER,"
     " completed_ms INTEGER, failed_ms INTEGER, expires_ms INTEGER, expired_ms INTEGER,"
     " cancelling_ms INTEGER, cancelled_ms INTEGER, output_file_id TEXT, error_file_id TEXT,"
     " total INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,"
     " failed INTEGER NOT NULL DEFAULT 0, metadata TEXT, key_id TEXT, owner TEXT, errors TEXT,"
     " cost_usd REAL NOT NULL DEFAULT 0);"
     "CREATE INDEX batches_status ON batches(status);"),
    /* a batch forwarded to a provider's own Batch API (batch/native.c): the
     * provider's batch id, so that a restarted gateway polls it again
     * instead of submitting it twice */
    "ALTER TABLE batches ADD COLUMN provider_batch_id TEXT;",
};

ah_err_t ah_db_exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        ah_error("sqlite: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return AH_E_DB;
    }
    return AH_E_OK;
}

static int user_version(sqlite3 *db)
{
    sqlite3_stmt *st;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    return v;
}

ah_err_t ah_db_open(const char *path, sqlite3 **out)
{
    sqlite3 *db = NULL;
    ah_err_t rc = AH_E_OK;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        ah_error("cannot open database %s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_busy_timeout(db, 5000);
    if ((rc = ah_db_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")))
        goto out;
    int v = user_version(db);
    int target = (int)(sizeof migrations / sizeof migrations[0]);
    if (v < 0) {
        rc = AH_E_DB;
        goto out;
    }
    if (v > target) {
        ah_error("database %s has schema version %d, newer than this ahorro (%d)", path, v, target);
        rc = AH_E_DB;
        goto out;
    }
    for (; v < target; v++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d;", v + 1);
        if ((rc = ah_db_exec(db, "BEGIN IMMEDIATE")))
            goto out;
        /* Another process may have migrated meanwhile. */
        if (user_version(db) > v) {
            ah_db_exec(db, "COMMIT");
            continue;
        }
        if ((rc = ah_db_exec(db, migrations[v])) || (rc = ah_db_exec(db, pragma))) {
            ah_db_exec(db, "ROLLBACK");
            goto out;
        }
        if ((rc = ah_db_exec(db, "COMMIT")))
            goto out;
    }
out:
    if (rc && db) {
        sqlite3_close(db);
        db = NULL;
    }
    *out = db;
    return rc;
}

/* SQLite virtual-machine steps between two looks at the clock. */
#define DEADLINE_STEPS 10000

static int deadline_passed(void *arg)
{
    ah_db_deadline_t *d = arg;
    if (ah_now_us() > d->until_us)
        d->expired = 1;
    return d->expired;
}

void ah_db_deadline_arm(sqlite3 *db, ah_db_deadline_t *d, long max_ms)
{
    d->expired = 0;
    d->until_us = ah_now_us() + (int64_t)max_ms * 1000;
    if (max_ms > 0)
        sqlite3_progress_handler(db, DEADLINE_STEPS, deadline_passed, d);
}

void ah_db_deadline_disarm(sqlite3 *db)
{
    sqlite3_progress_handler(db, 0, NULL, NULL);
}
