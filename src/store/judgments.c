/* judgments.c - the judgments writer (judgments.h).
 *
 * Threads: event loops call ah_judgments_push; one writer thread owns the
 * backend's connection (SQLite or PostgreSQL). A ring of
 * AH_JUDGMENTS_QUEUE pointers under one mutex; the writer sleeps on
 * `not_empty`. Producers never wait on the writer: a judgment is a sample,
 * and losing one under a flood costs less than a stalled event loop.
 *
 * The backend is chosen once, at open, behind `backend_t`. PostgreSQL is
 * simpler than the ledger's sink (ledger_pg.c): no spool and no replay. A
 * batch that cannot be written (the database away, the connection lost)
 * is logged and dropped, and the writer tries to reconnect at most once
 * per AH_JUDGMENTS_RETRY_US, so an outage costs the judgments made during
 * it and never a request. */
#include "store/judgments.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "store/db.h"
#include "store/pg.h"

/* The columns a judgment fills, in both databases. */
#define JUDGMENT_COLUMNS 9
/* Bytes of the PostgreSQL INSERT of a full batch: its head, and per row
 * "($1,...,$9)," with parameter numbers of at most 4 digits. */
#define PG_INSERT_MAX (256 + AH_JUDGMENTS_BATCH * (JUDGMENT_COLUMNS * 6 + 4))

typedef struct backend {
    /* Write js[0..n) (the judgments stay the caller's); how many were
     * written, the rest being lost. */
    int (*write)(ah_judgments_t *q, ah_judgment_t *const *js, int n);
    /* Release the connection; the writer has stopped. */
    void (*close)(ah_judgments_t *q);
} backend_t;

struct ah_judgments {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    ah_judgment_t *ring[AH_JUDGMENTS_QUEUE];
    size_t head, count;
    int closing;
    pthread_t writer;
    const backend_t *be;
    sqlite3 *db; /* SQLite */
    /* PostgreSQL: the writer thread's alone */
    char *url;
    int timeout_ms;
    PGconn *pg;
    int64_t next_try_us; /* no connection attempt before (monotonic) */
    int away;            /* since a write or a connection failed */
    uint64_t away_lost;  /* judgments dropped while away */
    uint64_t written, lost;
};

void ah_judgment_free(ah_judgment_t *j)
{
    if (!j)
        return;
    ah_free(j->request_id);
    ah_free(j->route);
    ah_free(j->judge);
    ah_free(j->scores);
    ah_free(j->reason);
    ah_free(j->error);
    ah_free(j->judge_request_id);
    ah_free(j);
}

ah_err_t ah_judgments_write(sqlite3 *db, ah_judgment_t *const *js, int n)
{
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_DB;
    if (ah_db_exec(db, "BEGIN IMMEDIATE"))
        return AH_E_DB;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO judgments(request_id, ts_ms, route, judge, score, scores, "
                           "reason, error, judge_request_id) VALUES (?,?,?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    for (int i = 0; i < n; i++) {
        const ah_judgment_t *j = js[i];
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        sqlite3_bind_text(st, 1, j->request_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, j->ts_ms);
        sqlite3_bind_text(st, 3, j->route, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, j->judge ? j->judge : "", -1, SQLITE_STATIC);
        if (isfinite(j->score))
            sqlite3_bind_double(st, 5, j->score);
        sqlite3_bind_text(st, 6, j->scores, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, j->reason, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, j->error, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, j->judge_request_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto out;
    }
    rc = AH_E_OK;
out:
    if (rc)
        ah_error("judgments: cannot write %d row(s): %s", n, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    ah_db_exec(db, rc ? "ROLLBACK" : "COMMIT");
    return rc;
}

/* --- SQLite ------------------------------------------------------------- */

static int sqlite_write(ah_judgments_t *q, ah_judgment_t *const *js, int n)
{
    return q->db && ah_judgments_write(q->db, js, n) == AH_E_OK ? n : 0;
}

static void sqlite_close(ah_judgments_t *q)
{
    sqlite3_close(q->db);
}

static const backend_t sqlite_backend = {sqlite_write, sqlite_close};

/* --- PostgreSQL ---------------------------------------------------------- */

typedef enum { PG_OK, PG_LOST, PG_BAD } pg_ins_t;

/* The outage begins (said once, with the first line of why). */
static void pg_away(ah_judgments_t *q, const char *why)
{
    if (!q->away)
        ah_warn("judgments: PostgreSQL cannot take them (%.*s): judgments are dropped until it "
                "answers, tried again every %d ms",
                (int)strcspn(why, "\n"), why, AH_JUDGMENTS_RETRY_US / 1000);
    q->away = 1;
}

/* The connection, (re)made when it is gone and the last attempt is more
 * than AH_JUDGMENTS_RETRY_US old; NULL meanwhile. */
static PGconn *pg_conn(ah_judgments_t *q)
{
    if (q->pg && PQstatus(q->pg) == CONNECTION_OK)
        return q->pg;
    if (q->pg) {
        PQfinish(q->pg);
        q->pg = NULL;
    }
    int64_t now = ah_now_us();
    if (now < q->next_try_us)
        return NULL;
    q->next_try_us = now + AH_JUDGMENTS_RETRY_US;
    char err[256];
    q->pg = ah_pg_connect(q->url, q->timeout_ms, err, sizeof err);
    if (!q->pg)
        pg_away(q, err);
    return q->pg;
}

/* Insert js[0..n) in one multi-row INSERT: one statement, so one
 * transaction; the batch is in whole or not at all. */
static pg_ins_t pg_insert(PGconn *c, ah_judgment_t *const *js, int n, char *err, size_t errlen)
{
    char sql[PG_INSERT_MAX], score[AH_JUDGMENTS_BATCH][32], ts[AH_JUDGMENTS_BATCH][24];
    const char *params[AH_JUDGMENTS_BATCH * JUDGMENT_COLUMNS];
    size_t len = (size_t)snprintf(sql, sizeof sql,
                                  "INSERT INTO ahorro_judgments(request_id, ts_ms, route, judge, "
                                  "score, scores, reason, error, judge_request_id) VALUES ");
    for (int k = 0; k < n && k < AH_JUDGMENTS_BATCH; k++) {
        const ah_judgment_t *j = js[k];
        const char **v = params + k * JUDGMENT_COLUMNS;
        snprintf(ts[k], sizeof ts[k], "%lld", (long long)j->ts_ms);
        snprintf(score[k], sizeof score[k], "%.17g", j->score);
        v[0] = j->request_id;
        v[1] = ts[k];
        v[2] = j->route;
        v[3] = j->judge ? j->judge : "";
        v[4] = isfinite(j->score) ? score[k] : NULL;
        v[5] = j->scores;
        v[6] = j->reason;
        v[7] = j->error;
        v[8] = j->judge_request_id;
        for (int i = 0; i < JUDGMENT_COLUMNS && len < sizeof sql; i++)
            len += (size_t)snprintf(sql + len, sizeof sql - len, "%s$%d%s",
                                    i ? "," : (k ? ",(" : "("), k * JUDGMENT_COLUMNS + i + 1,
                                    i == JUDGMENT_COLUMNS - 1 ? ")" : "");
    }
    if (n > AH_JUDGMENTS_BATCH || len >= sizeof sql) { /* PG_INSERT_MAX is sized for a batch */
        ah_err_printf(err, errlen, "a batch of %d judgments is too large", n);
        return PG_BAD;
    }
    PGresult *r = PQexecParams(c, sql, n * JUDGMENT_COLUMNS, NULL, params, NULL, NULL, 0);
    pg_ins_t rc = PG_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = ah_pg_connection_lost(c, r) ? PG_LOST : PG_BAD;
        const char *m = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
        if (!m || !*m)
            m = PQerrorMessage(c);
        ah_err_printf(err, errlen, "%.*s", (int)strcspn(m, "\n"), m);
    }
    PQclear(r);
    return rc;
}

static int pg_write(ah_judgments_t *q, ah_judgment_t *const *js, int n)
{
    char err[512] = "";
    int written = 0;
    PGconn *c = pg_conn(q);
    pg_ins_t rc = c ? pg_insert(c, js, n, err, sizeof err) : PG_LOST;
    if (rc == PG_LOST && c && PQstatus(c) != CONNECTION_OK && !q->away) {
        /* A connection that worked when last used and is closed now (the
         * server restarted, an idle connection cut on the way): one fresh
         * connection before the batch is given up. */
        PQfinish(q->pg);
        q->pg = NULL;
        q->next_try_us = 0;
        c = pg_conn(q);
        rc = c ? pg_insert(c, js, n, err, sizeof err) : PG_LOST;
    }
    if (rc == PG_OK) {
        written = n;
    } else if (rc == PG_BAD) {
        /* Refused for its data (SQLSTATE class 22 or 23): one judgment
         * costs itself, not the batch it came with. */
        for (int i = 0; i < n && rc != PG_LOST; i++) {
            rc = pg_insert(c, js + i, 1, err, sizeof err);
            if (rc == PG_OK)
                written++;
            else if (rc == PG_BAD)
                ah_error("judgments: PostgreSQL refused the judgment of %s, dropped: %s",
                         js[i]->request_id ? js[i]->request_id : "?", err);
        }
    }
    if (rc == PG_LOST) {
        if (c) { /* the connection or the database failed mid-write */
            PQfinish(q->pg);
            q->pg = NULL;
            q->next_try_us = ah_now_us() + AH_JUDGMENTS_RETRY_US;
            pg_away(q, err);
        }
        q->away_lost += (uint64_t)(n - written);
    } else if (q->away) {
        ah_info("judgments: PostgreSQL takes them again; %llu judgment(s) dropped meanwhile",
                (unsigned long long)q->away_lost);
        q->away = 0;
        q->away_lost = 0;
    }
    return written;
}

static void pg_close(ah_judgments_t *q)
{
    PQfinish(q->pg);
    ah_free(q->url);
}

static const backend_t pg_backend = {pg_write, pg_close};

/* --- the queue and the writer -------------------------------------------- */

static void *writer_main(void *arg)
{
    ah_judgments_t *q = arg;
    ah_judgment_t *batch[AH_JUDGMENTS_BATCH];
    for (;;) {
        pthread_mutex_lock(&q->mu);
        while (q->count == 0 && !q->closing)
            pthread_cond_wait(&q->not_empty, &q->mu);
        if (q->count == 0 && q->closing) {
            pthread_mutex_unlock(&q->mu);
            break;
        }
        int n = 0;
        while (q->count > 0 && n < AH_JUDGMENTS_BATCH) {
            batch[n++] = q->ring[q->head];
            q->head = (q->head + 1) % AH_JUDGMENTS_QUEUE;
            q->count--;
        }
        pthread_mutex_unlock(&q->mu);
        int written = q->be->write(q, batch, n);
        pthread_mutex_lock(&q->mu);
        q->written += (uint64_t)written;
        q->lost += (uint64_t)(n - written);
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < n; i++)
            ah_judgment_free(batch[i]);
    }
    return NULL;
}

/* Start q's writer over its backend; on failure q is released. */
static ah_err_t start(ah_judgments_t *q, ah_judgments_t **out)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    if (pthread_create(&q->writer, NULL, writer_main, q) != 0) {
        pthread_cond_destroy(&q->not_empty);
        pthread_mutex_destroy(&q->mu);
        q->be->close(q);
        ah_free(q);
        return AH_E_IO;
    }
    *out = q;
    return AH_E_OK;
}

ah_err_t ah_judgments_open(const char *path, ah_judgments_t **out)
{
    ah_judgments_t *q = ah_calloc(1, sizeof *q);
    *out = NULL;
    if (ah_db_open(path, &q->db)) {
        ah_free(q);
        return AH_E_DB;
    }
    q->be = &sqlite_backend;
    return start(q, out);
}

ah_err_t ah_judgments_open_pg(const char *url, int timeout_ms, ah_judgments_t **out)
{
    ah_judgments_t *q = ah_calloc(1, sizeof *q);
    *out = NULL;
    /* No connection here: the caller may be an event loop. The writer
     * connects at its first batch. */
    q->url = ah_strdup(url);
    q->timeout_ms = timeout_ms;
    q->be = &pg_backend;
    return start(q, out);
}

ah_err_t ah_judgments_push(ah_judgments_t *q, ah_judgment_t *j)
{
    pthread_mutex_lock(&q->mu);
    if (q->count == AH_JUDGMENTS_QUEUE || q->closing) {
        q->lost++;
        pthread_mutex_unlock(&q->mu);
        ah_judgment_free(j);
        return AH_E_TOOBIG;
    }
    q->ring[(q->head + q->count) % AH_JUDGMENTS_QUEUE] = j;
    if (q->count++ == 0)
        pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    return AH_E_OK;
}

void ah_judgments_stats(ah_judgments_t *q, uint64_t *written, uint64_t *lost)
{
    pthread_mutex_lock(&q->mu);
    *written = q->written;
    *lost = q->lost;
    pthread_mutex_unlock(&q->mu);
}

void ah_judgments_close(ah_judgments_t *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->writer, NULL);
    if (q->lost)
        ah_warn("judgments: %llu written, %llu lost (queue full or write failed)",
                (unsigned long long)q->written, (unsigned long long)q->lost);
    q->be->close(q);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
    ah_free(q);
}
