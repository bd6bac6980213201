/* judgments.c - the judgments writer (judgments.h).
 *
 * Threads: event loops call ah_judgments_push; one writer thread owns its
 * SQLite connection. A ring of AH_JUDGMENTS_QUEUE pointers under one
 * mutex; the writer sleeps on `not_empty`. Producers never wait on the
 * writer: a judgment is a sample, and losing one under a flood costs less
 * than a stalled event loop. */
#include "store/judgments.h"

#include <math.h>
#include <pthread.h>

#include "core/alloc.h"
#include "core/log.h"
#include "store/db.h"

struct ah_judgments {
    pthread_mutex_t mu;
    pthread_cond_t not_empty;
    ah_judgment_t *ring[AH_JUDGMENTS_QUEUE];
    size_t head, count;
    int closing;
    pthread_t writer;
    sqlite3 *db;
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
        ah_err_t rc = q->db ? ah_judgments_write(q->db, batch, n) : AH_E_DB;
        pthread_mutex_lock(&q->mu);
        if (rc)
            q->lost += (uint64_t)n;
        else
            q->written += (uint64_t)n;
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < n; i++)
            ah_judgment_free(batch[i]);
    }
    return NULL;
}

ah_err_t ah_judgments_open(const char *path, ah_judgments_t **out)
{
    ah_judgments_t *q = ah_calloc(1, sizeof *q);
    *out = NULL;
    if (ah_db_open(path, &q->db)) {
        ah_free(q);
        return AH_E_DB;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    if (pthread_create(&q->writer, NULL, writer_main, q) != 0) {
        pthread_cond_destroy(&q->not_empty);
        pthread_mutex_destroy(&q->mu);
        sqlite3_close(q->db);
        ah_free(q);
        return AH_E_IO;
    }
    *out = q;
    return AH_E_OK;
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
    sqlite3_close(q->db);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->mu);
    ah_free(q);
}
