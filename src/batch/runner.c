/* runner.c - the Batch API's runner thread (runner.h).
 *
 * The thread owns one database connection and polls the `batches` table
 * (RUNNER_POLL_MS) instead of being told about new batches: creation
 * happens on any worker thread, and a poll keeps the two apart. One batch
 * runs at a time, oldest first; a batch that a previous process left
 * in_progress or finalizing goes before new ones.
 *
 * With a PostgreSQL ledger the batches are every instance's (shared.h):
 * the runner takes one there (a lease in its row), fetches its journals
 * (where another instance got to), copies it into its own SQLite file and
 * runs that copy as above, sending it back with its journals' new lines at
 * each progress (at most once a second: the lease's renewal) and at the
 * end. */
#include "batch/runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/batches.h"
#include "batch/engine.h"
#include "batch/files.h"
#include "batch/native.h"
#include "batch/shared.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "route/balance.h"
#include "store/db.h"
#include "store/keys.h"
#include "store/pg.h"

#define RUNNER_POLL_MS 500
#define RUNNER_PROGRESS_US 1000000 /* progress reaches the row at most this often */
#define RUNNER_TAGS_MAX 16384

struct ah_batch_runner {
    ah_gateway_t *gw;
    int port;
    sqlite3 *db;
    char dir[AH_FILES_PATH_MAX];
    char base_url[96];
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;                /* under mu */
    int ended;               /* the thread returned; under mu */
    volatile int *cancel_of; /* the running batch's cancel flag, under mu */
    /* with a PostgreSQL ledger (shared.h): the runner's own connection */
    int shared;
    PGconn *pg;
    int64_t pg_retry_us;            /* no connection attempt before */
    int pg_down;                    /* logged once */
    char runner_id[AH_FILE_ID_MAX]; /* this process, in the rows it holds */
    int64_t lease_ms;
    /* the batch taken: its journals' paths, and what PostgreSQL holds of them */
    char journal[2][AH_FILES_PATH_MAX + 64];
    ah_bpg_journals_t sent;
};

/* One batch being run. */
typedef struct job {
    ah_batch_runner_t *R;
    char id[AH_FILE_ID_MAX];
    char *key_id, *owner; /* of the creator; NULL: the keyless tenant */
    char *input_path;
    char *endpoint;
    char out_path[AH_FILES_PATH_MAX + 64], err_path[AH_FILES_PATH_MAX + 64];
    int64_t expires_ms;
    double cost_before; /* of earlier runs (a resumed batch) */
    volatile int cancel;
    int user_cancel, expired;
    int lost;         /* another instance holds it now (shared.h) */
    int64_t lease_ms; /* how long each send holds it (0: the runner's) */
    int64_t last_update_us;
} job_t;

static int stopping(ah_batch_runner_t *R)
{
    pthread_mutex_lock(&R->mu);
    int s = R->stop;
    pthread_mutex_unlock(&R->mu);
    return s;
}

/* The runner's PostgreSQL connection (opened again after a failure, at
 * most once a second), or NULL. */
static PGconn *pg_of(ah_batch_runner_t *R)
{
    if (R->pg && PQstatus(R->pg) != CONNECTION_OK) {
        PQfinish(R->pg);
        R->pg = NULL;
    }
    int64_t now = ah_now_us();
    if (!R->pg && now >= R->pg_retry_us) {
        char why[256];
        const ah_config_t *c = R->gw->cfg;
        R->pg = ah_pg_connect(c->ledger.url, c->ledger.timeout_ms, why, sizeof why);
        if (!R->pg) {
            R->pg_retry_us = now + 1000000;
            if (!R->pg_down)
                ah_warn("batches: PostgreSQL cannot be reached (%s): no batch starts until it "
                        "is back",
                        why);
            R->pg_down = 1;
        } else if (R->pg_down) {
            ah_info("batches: PostgreSQL is back");
            R->pg_down = 0;
        }
    }
    return R->pg;
}

/* With PostgreSQL: send j's copy there (renewing the lease; a cancel asked
 * on another instance comes back). When another instance holds j now, j
 * stops here without an end of its own. */
static void sync_job(ah_batch_runner_t *R, job_t *j)
{
    PGconn *c = R->shared ? pg_of(R) : NULL;
    if (!c)
        return; /* PostgreSQL away: the lease runs on; the next send renews it */
    if (ah_bpg_sync(c, R->db, R->runner_id, j->lease_ms ? j->lease_ms : R->lease_ms, j->id,
                    &R->sent) == AH_E_NOTFOUND &&
        !j->lost) {
        ah_warn("batch %s: another instance holds it now (this one was silent past its lease): "
                "stopping here",
                j->id);
        j->lost = 1;
        j->cancel = 1;
    }
}

/* Run sql with the batch id as ?1 and now (ms) as ?2; -1 on a db error,
 * else the rows changed. */
static int exec_id(sqlite3 *db, const char *sql, const char *id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_error("batch runner: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ah_wall_ms());
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE) {
        ah_error("batch runner: %s", sqlite3_errmsg(db));
        return -1;
    }
    return sqlite3_changes(db);
}

static void job_paths(ah_batch_runner_t *R, job_t *j)
{
    snprintf(j->out_path, sizeof j->out_path, "%s/%s-output.jsonl", R->dir, j->id);
    snprintf(j->err_path, sizeof j->err_path, "%s/%s-errors.jsonl", R->dir, j->id);
}

static void job_clear(job_t *j)
{
    ah_free(j->key_id);
    ah_free(j->owner);
    ah_free(j->input_path);
    ah_free(j->endpoint);
}

static char *col_dup(sqlite3_stmt *st, int col)
{
    const char *s = (const char *)sqlite3_column_text(st, col);
    return s ? ah_strdup(s) : NULL;
}

/* Register a produced file (when it exists and is not empty) under a
 * deterministic id, so that finalizing twice (a crash in between) makes
 * one file; then point the batch's column at it. */
static void register_output(ah_batch_runner_t *R, job_t *j, const char *path, const char *kind,
                            const char *column)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || sb.st_size == 0)
        return;
    char id[AH_FILE_ID_MAX + 16], name[AH_FILE_ID_MAX + 32], sql[160];
    const char *hex = strchr(j->id, '_') ? strchr(j->id, '_') + 1 : j->id;
    snprintf(id, sizeof id, "file-%s%s", hex, kind[0] == 'o' ? "out" : "err");
    snprintf(name, sizeof name, "%s_%s.jsonl", j->id, kind);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(R->db,
                           "INSERT OR IGNORE INTO files(id, purpose, filename, bytes, created_ms, "
                           "key_id, owner, path) VALUES (?,'batch_output',?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)sb.st_size);
    sqlite3_bind_int64(st, 4, ah_wall_ms());
    if (j->key_id)
        sqlite3_bind_text(st, 5, j->key_id, -1, SQLITE_STATIC);
    if (j->owner)
        sqlite3_bind_text(st, 6, j->owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, path, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        ah_error("batch runner: %s", sqlite3_errmsg(R->db));
    sqlite3_finalize(st);
    snprintf(sql, sizeof sql, "UPDATE batches SET %s = ?2 WHERE id = ?1", column);
    if (sqlite3_prepare_v2(R->db, sql, -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_finalize(st);
}

/* The end of a batch: its files registered, then status (with its time). */
static void finish(ah_batch_runner_t *R, job_t *j, const char *status)
{
    register_output(R, j, j->out_path, "output", "output_file_id");
    register_output(R, j, j->err_path, "error", "error_file_id");
    char sql[200];
    snprintf(sql, sizeof sql, "UPDATE batches SET status = '%s', %s_ms = ?2 WHERE id = ?1", status,
             status);
    exec_id(R->db, sql, j->id);
    ah_info("batch %s: %s", j->id, status);
}

static void fail_batch(ah_batch_runner_t *R, job_t *j, const char *code, const char *message)
{
    json_t *errs = json_pack("{s:s,s:[{s:s,s:s,s:n,s:n}]}", "object", "list", "data", "code", code,
                             "message", message, "param", "line");
    char *s = json_dumps(errs, JSON_COMPACT);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(R->db,
                           "UPDATE batches SET status = 'failed', failed_ms = ?2, errors = ?3 "
                           "WHERE id = ?1",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ah_wall_ms());
        sqlite3_bind_text(st, 3, s, -1, SQLITE_STATIC);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    free(s);
    json_decref(errs);
    ah_warn("batch %s: failed: %s", j->id, message);
}

static void write_counts(ah_batch_runner_t *R, job_t *j, const ah_batch_progress_t *p)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(R->db,
                           "UPDATE batches SET completed = ?2, failed = ?3, cost_usd = ?4 "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->done - p->failed);
    sqlite3_bind_int64(st, 3, p->failed);
    sqlite3_bind_double(st, 4, j->cost_before + p->cost_usd);
    sqlite3_step(st);
    sqlite3_finalize(st);
}

/* The engine's progress: into the row at most once a second, and the time
 * to notice a cancel, the end of the completion window, or a shutdown. */
static void on_progress(void *ctx, const ah_batch_progress_t *p)
{
    job_t *j = ctx;
    ah_batch_runner_t *R = j->R;
    if (stopping(R))
        j->cancel = 1;
    int64_t now = ah_now_us();
    if (now - j->last_update_us < RUNNER_PROGRESS_US)
        return;
    j->last_update_us = now;
    write_counts(R, j, p);
    sync_job(R, j);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(R->db, "SELECT status FROM batches WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW &&
            strcmp((const char *)sqlite3_column_text(st, 0), "cancelling") == 0) {
            j->user_cancel = 1;
            j->cancel = 1;
        }
        sqlite3_finalize(st);
    }
    if (ah_wall_ms() >= j->expires_ms) {
        j->expired = 1;
        j->cancel = 1;
    }
}

/* "purpose=batch" and the batch's metadata pairs that are valid tags
 * (attribute.c's rule: no ',', '=' or control characters, at most
 * AH_MAX_TAG_BYTES); the engine adds batch_id. Caller frees. */
static char *tags_of(const char *metadata)
{
    ah_buf_t t;
    ah_buf_init(&t, RUNNER_TAGS_MAX);
    ah_buf_appends(&t, "purpose=batch");
    json_t *m = metadata ? json_loads(metadata, 0, NULL) : NULL;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        const char *s = json_string_value(v);
        int ok = s && *s && *k && strlen(s) <= AH_MAX_TAG_BYTES && strlen(k) <= AH_MAX_TAG_BYTES;
        for (const char *c = k; ok && *c; c++)
            ok = (unsigned char)*c >= 0x20 && *c != ',' && *c != '=';
        for (const char *c = s; ok && *c; c++)
            ok = (unsigned char)*c >= 0x20 && *c != ',' && *c != '=';
        if (ok)
            ah_buf_printf(&t, ",%s=%s", k, s);
    }
    json_decref(m);
    return ah_buf_steal(&t, NULL);
}

static void run_job(ah_batch_runner_t *R, job_t *j, const char *metadata)
{
    ah_gateway_t *gw = R->gw;
    char auth[AH_INTERNAL_SECRET_HEX + 64];
    const char *authp = auth;
    if (j->key_id && strcmp(j->key_id, "master") != 0)
        snprintf(auth, sizeof auth, "%s:%s", gw->internal_secret, j->key_id);
    else if (j->key_id || gw->cfg->master_key)
        snprintf(auth, sizeof auth, "%s", gw->internal_secret);
    else
        authp = NULL; /* the keyless tenant: loopback needs no key */
    char *tags = tags_of(metadata);
    char err[512] = "";
    ah_batch_opts_t o = {.input_path = j->input_path,
                         .output_path = j->out_path,
                         .error_path = j->err_path,
                         .base_url = R->base_url,
                         .auth = authp,
                         .tags = tags,
                         .batch_id = j->id,
                         .concurrency = gw->cfg->batch.concurrency,
                         .cfg = gw->cfg,
                         .cancel = &j->cancel,
                         .progress = on_progress,
                         .progress_ctx = j};
    ah_batch_progress_t p = {0};
    pthread_mutex_lock(&R->mu);
    R->cancel_of = &j->cancel;
    if (R->stop)
        j->cancel = 1;
    pthread_mutex_unlock(&R->mu);
    ah_info("batch %s: running (%s)", j->id, j->input_path);
    ah_err_t rc = ah_batch_run(&o, &p, err, sizeof err);
    pthread_mutex_lock(&R->mu);
    R->cancel_of = NULL;
    pthread_mutex_unlock(&R->mu);
    memset(auth, 0, sizeof auth);
    ah_free(tags);
    write_counts(R, j, &p);
    if (rc == AH_E_OK) {
        exec_id(R->db, "UPDATE batches SET status = 'finalizing', finalizing_ms = ?2 WHERE id = ?1",
                j->id);
        finish(R, j, "completed");
    } else if (rc == AH_E_CANCELLED && j->lost) {
        ah_info("batch %s: left to the instance that holds it now", j->id);
    } else if (rc == AH_E_CANCELLED && j->user_cancel) {
        finish(R, j, "cancelled");
    } else if (rc == AH_E_CANCELLED && j->expired) {
        finish(R, j, "expired");
    } else if (rc == AH_E_CANCELLED) {
        ah_info("batch %s: stopped with the gateway; it resumes at the next start", j->id);
    } else {
        fail_batch(R, j, "batch_failed", err[0] ? err : ah_strerror(rc));
    }
}

/* ---- a batch forwarded to the provider's Batch API (native.h) ---- */

/* The poll of a forwarded batch: counts into the row at most once a
 * second, and our cancel, window and shutdown as native.h's answers. */
static int native_poll(void *ctx, long completed, long failed, double cost_usd)
{
    job_t *j = ctx;
    ah_batch_runner_t *R = j->R;
    (void)cost_usd;
    if (stopping(R))
        return AH_NATIVE_STOP;
    int64_t now = ah_now_us();
    if (now - j->last_update_us >= RUNNER_PROGRESS_US) {
        j->last_update_us = now;
        ah_batch_progress_t p = {.done = completed + failed, .failed = failed};
        write_counts(R, j, &p);
        sync_job(R, j);
        if (j->lost)
            return AH_NATIVE_STOP;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(R->db, "SELECT status FROM batches WHERE id = ?", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW &&
                strcmp((const char *)sqlite3_column_text(st, 0), "cancelling") == 0)
                j->user_cancel = 1;
            sqlite3_finalize(st);
        }
        if (ah_wall_ms() >= j->expires_ms)
            j->expired = 1;
    }
    return j->user_cancel ? AH_NATIVE_CANCEL : j->expired ? AH_NATIVE_EXPIRE : AH_NATIVE_GO;
}

/* The rows' tags as the live path has them: the key's tags, then
 * purpose=batch, the batch's metadata pairs and batch_id. Caller frees. */
static char *native_tags(ah_batch_runner_t *R, job_t *j, const char *metadata)
{
    json_t *t = NULL;
    ah_key_t k;
    ah_dbh_t h = {.lite = R->db, .pg_wanted = R->shared, .pg = R->shared ? pg_of(R) : NULL};
    if (j->key_id && ah_keys_lookup_id(h, j->key_id, &k) == AH_E_OK) {
        t = json_incref(k.tags); /* the keys' store, whichever holds them */
        ah_key_clear(&k);
    }
    if (!json_is_object(t)) {
        json_decref(t);
        t = json_object();
    }
    char *kv = tags_of(metadata);
    for (char *p = kv; p && *p;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = 0;
        char *eq = strchr(p, '=');
        if (eq) {
            *eq = 0;
            json_object_set_new(t, p, json_string(eq + 1));
        }
        p = comma ? comma + 1 : NULL;
    }
    ah_free(kv);
    json_object_set_new(t, "batch_id", json_string(j->id));
    char *s = json_dumps(t, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(t);
    char *out = ah_strdup(s);
    free(s);
    return out;
}

static void run_native(ah_batch_runner_t *R, job_t *j, const ah_deployment_t *d,
                       const char *metadata)
{
    ah_gateway_t *gw = R->gw;
    ah_price_t price;
    int priced =
        d->has_price ? (price = d->price, 1) : ah_balancer_dep_price(gw->balancer, d, &price) == 0;
    char *tags = native_tags(R, j, metadata);
    /* A provider's batch is heard from once a poll: its lease spans a few. */
    int64_t polls = (int64_t)(3 * gw->cfg->batch.poll_s * 1000);
    j->lease_ms = polls > R->lease_ms ? polls : R->lease_ms;
    sync_job(R, j);
    ah_native_opts_t o = {.dep = d,
                          .batch_id = j->id,
                          .endpoint = j->endpoint ? j->endpoint : "/v1/chat/completions",
                          .input_path = j->input_path,
                          .output_path = j->out_path,
                          .error_path = j->err_path,
                          .work_dir = R->dir,
                          .db = R->db,
                          .ledger = gw->ledger,
                          .price = priced ? &price : NULL,
                          .key_id =
                              j->key_id && strcmp(j->key_id, "master") != 0 ? j->key_id : NULL,
                          .owner = j->owner,
                          .tags_json = tags,
                          .poll_s = gw->cfg->batch.poll_s,
                          .poll = native_poll,
                          .poll_ctx = j};
    ah_native_result_t res;
    ah_info("batch %s: forwarding to %s's Batch API", j->id, d->alias);
    ah_err_t rc = ah_batch_native_run(&o, &res);
    ah_free(tags);
    if (rc) {
        fail_batch(R, j, "batch_failed", "cannot write the results");
        json_decref(res.errors);
        return;
    }
    if (res.end != AH_NATIVE_STOPPED && res.end != AH_NATIVE_FAILED) {
        ah_batch_progress_t p = {
            .done = res.completed + res.failed, .failed = res.failed, .cost_usd = res.cost_usd};
        write_counts(R, j, &p);
    }
    switch (res.end) {
    case AH_NATIVE_COMPLETED:
        exec_id(R->db, "UPDATE batches SET status = 'finalizing', finalizing_ms = ?2 WHERE id = ?1",
                j->id);
        finish(R, j, "completed");
        break;
    case AH_NATIVE_CANCELLED:
        finish(R, j, "cancelled");
        break;
    case AH_NATIVE_EXPIRED:
        finish(R, j, "expired");
        break;
    case AH_NATIVE_STOPPED:
        ah_info("batch %s: stopped with the gateway; polling resumes at the next start", j->id);
        break;
    case AH_NATIVE_FAILED: {
        char *s = res.errors ? json_dumps(res.errors, JSON_COMPACT) : NULL;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(R->db,
                               "UPDATE batches SET status = 'failed', failed_ms = ?2, errors = ?3 "
                               "WHERE id = ?1",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, ah_wall_ms());
            if (s)
                sqlite3_bind_text(st, 3, s, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        ah_warn("batch %s: failed at the provider: %s", j->id, s ? s : "(no errors)");
        free(s);
        break;
    }
    }
    json_decref(res.errors);
}

/* Whether a claimed batch goes to a provider's Batch API: one it was
 * forwarded to already (resumed), else one whose lines all ask for a
 * `batch: native` alias and that has not started live (results on disk). */
static const ah_deployment_t *native_target(ah_batch_runner_t *R, job_t *j, int *broken)
{
    char pid[AH_NATIVE_ID_MAX];
    *broken = 0;
    if (ah_batches_provider_id(R->db, j->id, pid, sizeof pid))
        return NULL;
    const ah_deployment_t *d = ah_batch_native_route(R->gw->cfg, j->input_path);
    if (pid[0]) {
        if (!d)
            *broken = 1;
        return d;
    }
    struct stat sb;
    if ((stat(j->out_path, &sb) == 0 && sb.st_size > 0) ||
        (stat(j->err_path, &sb) == 0 && sb.st_size > 0))
        return NULL; /* it started live: it ends live */
    return d;
}

/* Batches a previous process was cancelling, and queued batches past
 * their window, are settled without running (only: the batch of that id,
 * the one taken from PostgreSQL; NULL: all). */
static void settle(ah_batch_runner_t *R, const char *only)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(R->db,
                           "UPDATE batches SET status = 'expired', expired_ms = ?1 "
                           "WHERE status = 'validating' AND expires_ms <= ?1 AND "
                           "(?2 IS NULL OR id = ?2)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, ah_wall_ms());
        if (only)
            sqlite3_bind_text(st, 2, only, -1, SQLITE_STATIC);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(R->db,
                           "SELECT id, key_id, owner FROM batches WHERE status = 'cancelling' "
                           "AND (?1 IS NULL OR id = ?1)",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    if (only)
        sqlite3_bind_text(st, 1, only, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        job_t j = {.R = R};
        snprintf(j.id, sizeof j.id, "%s", (const char *)sqlite3_column_text(st, 0));
        j.key_id = col_dup(st, 1);
        j.owner = col_dup(st, 2);
        job_paths(R, &j);
        finish(R, &j, "cancelled");
        job_clear(&j);
    }
    sqlite3_finalize(st);
}

/* The next batch to run (only: that one), claimed (validating ->
 * in_progress); 1 when j and *metadata (caller frees) are filled. */
static int claim(ah_batch_runner_t *R, const char *only, job_t *j, char **metadata)
{
    sqlite3_stmt *st = NULL;
    int got = 0;
    *metadata = NULL;
    if (sqlite3_prepare_v2(
            R->db,
            "SELECT b.id, b.key_id, b.owner, b.expires_ms, b.cost_usd, b.metadata, f.path, "
            "b.endpoint "
            "FROM batches b LEFT JOIN files f ON f.id = b.input_file_id AND f.deleted = 0 "
            "WHERE b.status IN ('in_progress', 'finalizing', 'validating') "
            "AND (?1 IS NULL OR b.id = ?1) "
            "ORDER BY b.status = 'validating', b.created_ms, b.rowid LIMIT 1",
            -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (only)
        sqlite3_bind_text(st, 1, only, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        memset(j, 0, sizeof *j);
        j->R = R;
        snprintf(j->id, sizeof j->id, "%s", (const char *)sqlite3_column_text(st, 0));
        j->key_id = col_dup(st, 1);
        j->owner = col_dup(st, 2);
        j->expires_ms = sqlite3_column_int64(st, 3);
        j->cost_before = sqlite3_column_double(st, 4);
        *metadata = col_dup(st, 5);
        j->input_path = col_dup(st, 6);
        j->endpoint = col_dup(st, 7);
        job_paths(R, j);
        got = 1;
    }
    sqlite3_finalize(st);
    if (!got)
        return 0;
    int n = exec_id(R->db,
                    "UPDATE batches SET status = CASE status WHEN 'validating' THEN 'in_progress' "
                    "ELSE status END, in_progress_ms = COALESCE(in_progress_ms, ?2) "
                    "WHERE id = ?1 AND status IN ('in_progress', 'finalizing', 'validating')",
                    j->id);
    if (n <= 0) { /* cancelled in between */
        job_clear(j);
        ah_free(*metadata);
        *metadata = NULL;
        return 0;
    }
    return 1;
}

static void *runner_main(void *arg)
{
    ah_batch_runner_t *R = arg;
    while (!stopping(R)) {
        /* With PostgreSQL: the batch taken there, if any; else all local. */
        char taken[AH_FILE_ID_MAX] = "";
        PGconn *c = R->shared ? pg_of(R) : NULL;
        if (R->shared &&
            (!c || ah_bpg_take(c, R->db, R->dir, R->runner_id, R->lease_ms, taken) || !taken[0]))
            goto wait;
        if (taken[0]) {
            /* Where it got to, wherever it ran: its journals, as the engine
             * resumes from them. */
            job_t t = {.R = R};
            snprintf(t.id, sizeof t.id, "%s", taken);
            job_paths(R, &t);
            snprintf(R->journal[0], sizeof R->journal[0], "%s", t.out_path);
            snprintf(R->journal[1], sizeof R->journal[1], "%s", t.err_path);
            R->sent = (ah_bpg_journals_t){.path = {R->journal[0], R->journal[1]}};
            if (ah_bpg_journals_fetch(c, taken, &R->sent)) {
                ah_warn("batch %s: cannot fetch its journals from PostgreSQL: given back", taken);
                ah_bpg_release(c, R->runner_id, taken);
                goto wait;
            }
        }
        settle(R, taken[0] ? taken : NULL);
        job_t j;
        char *metadata = NULL;
        if (claim(R, taken[0] ? taken : NULL, &j, &metadata)) {
            if (!j.input_path)
                fail_batch(R, &j, "input_file_missing", "The batch's input file was deleted");
            else if (ah_wall_ms() >= j.expires_ms)
                finish(R, &j, "expired");
            else {
                int broken = 0;
                const ah_deployment_t *nd = native_target(R, &j, &broken);
                if (broken)
                    fail_batch(R, &j, "provider_batch_lost",
                               "The batch was forwarded to a provider's Batch API, but its "
                               "model no longer has a single `batch: native` deployment");
                else if (nd)
                    run_native(R, &j, nd, metadata);
                else
                    run_job(R, &j, metadata);
            }
            if (R->shared && !j.lost) {
                sync_job(R, &j);             /* the end, or where it stopped */
                if (stopping(R) && pg_of(R)) /* for any instance now */
                    ah_bpg_release(pg_of(R), R->runner_id, j.id);
            }
            job_clear(&j);
            ah_free(metadata);
            continue;
        }
        if (taken[0]) { /* settled (a cancel): its end goes back */
            job_t s = {.R = R};
            snprintf(s.id, sizeof s.id, "%s", taken);
            sync_job(R, &s);
            continue;
        }
    wait:
        pthread_mutex_lock(&R->mu);
        if (!R->stop) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += (long)RUNNER_POLL_MS * 1000000;
            ts.tv_sec += ts.tv_nsec / 1000000000;
            ts.tv_nsec %= 1000000000;
            pthread_cond_timedwait(&R->cv, &R->mu, &ts);
        }
        pthread_mutex_unlock(&R->mu);
    }
    pthread_mutex_lock(&R->mu);
    R->ended = 1;
    pthread_cond_broadcast(&R->cv);
    pthread_mutex_unlock(&R->mu);
    return NULL;
}

/* Where the runner reaches the gateway: its own listener, on loopback. */
static int loopback_url(const ah_config_t *c, int port, char *out, size_t n)
{
    const char *h = c->listen_host;
    if (strchr(h, ':')) { /* IPv6: "::" and "::1" are reachable on ::1 */
        if (strcmp(h, "::") != 0 && strcmp(h, "::1") != 0)
            return -1;
        snprintf(out, n, "http://[::1]:%d", port);
        return 0;
    }
    if (strcmp(h, "0.0.0.0") != 0 && strncmp(h, "127.", 4) != 0 && strcmp(h, "localhost") != 0)
        return -1;
    snprintf(out, n, "http://%s:%d", strncmp(h, "127.", 4) == 0 ? h : "127.0.0.1", port);
    return 0;
}

int ah_batch_runner_start(ah_gateway_t *gw, int port, ah_batch_runner_t **out)
{
    *out = NULL;
    ah_batch_runner_t *R = ah_calloc(1, sizeof *R);
    R->gw = gw;
    R->port = port;
    if (loopback_url(gw->cfg, port, R->base_url, sizeof R->base_url)) {
        ah_warn("batches: the gateway listens on %s, not on loopback: the Batch API's runner "
                "is off (listen on 127.0.0.1, 0.0.0.0 or ::)",
                gw->cfg->listen_host);
        ah_free(R);
        return 0;
    }
    if (ah_files_dir(gw->cfg->db_path, R->dir, sizeof R->dir) ||
        ah_db_open(gw->cfg->db_path, &R->db)) {
        ah_error("batches: cannot open the files directory or the database beside %s",
                 gw->cfg->db_path);
        if (R->db)
            sqlite3_close(R->db);
        ah_free(R);
        return 1;
    }
    if (gw->cfg->ledger.url) {
        if (ah_files_new_id("", R->runner_id) != AH_E_OK) /* 24 random hex digits */
            snprintf(R->runner_id, sizeof R->runner_id, "%llx-%d", (unsigned long long)ah_now_us(),
                     (int)getpid());
        R->shared = 1;
        R->lease_ms = (int64_t)(gw->cfg->batch.lease_s * 1000);
    }
    pthread_mutex_init(&R->mu, NULL);
    pthread_cond_init(&R->cv, NULL);
    if (pthread_create(&R->tid, NULL, runner_main, R)) {
        ah_error("batches: cannot start the runner thread");
        sqlite3_close(R->db);
        pthread_mutex_destroy(&R->mu);
        pthread_cond_destroy(&R->cv);
        ah_free(R);
        return 1;
    }
    *out = R;
    return 0;
}

void ah_batch_runner_shutdown(ah_batch_runner_t *R)
{
    if (!R)
        return;
    pthread_mutex_lock(&R->mu);
    R->stop = 1;
    if (R->cancel_of)
        *R->cancel_of = 1;
    pthread_cond_broadcast(&R->cv);
    pthread_mutex_unlock(&R->mu);
}

int ah_batch_runner_join(ah_batch_runner_t *R, long wait_ms)
{
    if (!R)
        return 0;
    pthread_mutex_lock(&R->mu);
    if (wait_ms >= 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += wait_ms / 1000;
        ts.tv_nsec += (wait_ms % 1000) * 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        while (!R->ended)
            if (pthread_cond_timedwait(&R->cv, &R->mu, &ts) == ETIMEDOUT)
                break;
    } else {
        while (!R->ended)
            pthread_cond_wait(&R->cv, &R->mu);
    }
    int ended = R->ended;
    pthread_mutex_unlock(&R->mu);
    if (!ended)
        return 1;
    pthread_join(R->tid, NULL);
    sqlite3_close(R->db);
    PQfinish(R->pg);
    pthread_mutex_destroy(&R->mu);
    pthread_cond_destroy(&R->cv);
    ah_free(R);
    return 0;
}
