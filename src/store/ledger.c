/* ledger.c - the batching ledger writer.
 *
 * Threads: producers call ah_ledger_append on their event loop; one writer
 * thread owns the sink (its own database connection; the SQLite sink is
 * here, the PostgreSQL one in ledger_pg.c). A ring of
 * AH_LEDGER_QUEUE_ROWS row pointers under one mutex; producers wait on
 * `not_full`, the writer on `not_empty`. The writer takes up to
 * AH_LEDGER_BATCH_ROWS at a time, so under load many rows share a commit
 * and at idle a row is committed at once. Producers wake the writer only
 * when the queue turns non-empty; the writer then gathers rows for
 * AH_LEDGER_GROUP_US (a timed wait that a full batch or ah_ledger_close
 * cuts short) before one commit takes them all. A batch that fails is retried
 * (the database may be busy) before its rows are counted as failed and
 * logged, so a failing disk never wedges the gateway. */
#include "store/ledger.h"

#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sqlite3.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "store/db.h"

#define WRITE_RETRIES 5

struct ah_ledger {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    ah_ledger_row_t *ring[AH_LEDGER_QUEUE_ROWS];
    size_t head, count;
    int closing;
    int gathering; /* the writer waits for a batch to fill: wake it only when one has */
    pthread_t writer;
    const ah_ledger_sink_t *sink;
    void *sink_ctx;
    uint64_t written, failed;
    int writing; /* rows the writer took from the queue and has not counted yet */
    int last_ok; /* the last batch was written */
    int nobservers;
    struct {
        ah_ledger_observer_fn fn;
        void *ctx;
    } observers[AH_LEDGER_MAX_OBSERVERS];
};

void ah_ledger_row_free(ah_ledger_row_t *r)
{
    if (!r)
        return;
    ah_free(r->request_id);
    ah_free(r->key_id);
    ah_free(r->owner);
    ah_free(r->user);
    ah_free(r->tags);
    ah_free(r->requested_model);
    ah_free(r->served_model);
    ah_free(r->provider);
    ah_free(r->deployment);
    ah_free(r->attempt_of);
    ah_free(r->route_reason);
    ah_free(r->error);
    ah_free(r->cache_key);
    ah_free(r->shape);
    ah_free(r->prefix_hash);
    ah_free(r->trace);
    ah_free(r->prompt);
    ah_free(r);
}

/* --- SQLite sink ------------------------------------------------------- */

/* Rows go in by multi-row INSERTs of 2^k rows (k < LEDGER_INSERT_LEVELS),
 * largest first: one sqlite3_step per chunk instead of one per row, about a
 * tenth less CPU per row (bench/ledger/RESULTS.md). The columns and their
 * order are bind_row's. */
#define LEDGER_COLUMNS 40
#ifndef LEDGER_INSERT_LEVELS
#define LEDGER_INSERT_LEVELS 6 /* chunks of 32, 16, ..., 1 rows */
#endif
/* Writer connection only; keeps WAL and synchronous=NORMAL (db.c). */
#define LEDGER_PRAGMAS "PRAGMA cache_size=-8192;" /* KiB: 8 MiB instead of 2 */
#define INSERT_MAX_ROWS (1 << (LEDGER_INSERT_LEVELS - 1))
_Static_assert((INSERT_MAX_ROWS * LEDGER_COLUMNS) <= 32766, "SQLite's limit on parameters");

#define LEDGER_COLUMN_LIST                                                                         \
    "request_id, ts_ms, key_id, owner, \"user\", "                                                 \
    "tags, api, endpoint, stream, requested_model, served_model, provider, "                       \
    "deployment, prompt_tokens, completion_tokens, cached_tokens, "                                \
    "cache_write_tokens, reasoning_tokens, usage_source, cost_usd, "                               \
    "latency_ms, ttft_ms, overhead_us, status, error, cache, cache_key, saved_usd, "               \
    "prompt_cache_saved_usd, cache_similarity, attempt_of, attempts, route_reason, baseline_usd, " \
    "saved_routing_usd, shape, shape_tokens_saved, saved_shaping_usd, prefix_hash, prefix_tokens"
_Static_assert(LEDGER_COLUMNS == AH_LEDGER_COLUMNS, "one list of columns");

const char ah_ledger_columns[] = LEDGER_COLUMN_LIST;

static const char insert_head[] = "INSERT OR IGNORE INTO ledger(" LEDGER_COLUMN_LIST ") VALUES ";

typedef struct sqlite_sink {
    sqlite3 *db;
    sqlite3_stmt *insert[LEDGER_INSERT_LEVELS]; /* insert[k] inserts 1 << k rows */
} sqlite_sink_t;

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Bind row r to the LEDGER_COLUMNS parameters from i. */
static void bind_row(sqlite3_stmt *st, int i, const ah_ledger_row_t *r)
{
    bind_text(st, i++, r->request_id);
    sqlite3_bind_int64(st, i++, r->ts_ms);
    bind_text(st, i++, r->key_id);
    bind_text(st, i++, r->owner);
    bind_text(st, i++, r->user);
    bind_text(st, i++, r->tags);
    bind_text(st, i++, r->api);
    bind_text(st, i++, r->endpoint);
    sqlite3_bind_int(st, i++, r->stream);
    bind_text(st, i++, r->requested_model);
    bind_text(st, i++, r->served_model);
    bind_text(st, i++, r->provider);
    bind_text(st, i++, r->deployment);
    sqlite3_bind_int64(st, i++, r->prompt_tokens);
    sqlite3_bind_int64(st, i++, r->completion_tokens);
    sqlite3_bind_int64(st, i++, r->cached_tokens);
    sqlite3_bind_int64(st, i++, r->cache_write_tokens);
    sqlite3_bind_int64(st, i++, r->reasoning_tokens);
    bind_text(st, i++, r->usage_source);
    if (r->cost_usd >= 0)
        sqlite3_bind_double(st, i++, r->cost_usd);
    else
        sqlite3_bind_null(st, i++);
    sqlite3_bind_double(st, i++, r->latency_ms);
    if (r->ttft_ms >= 0)
        sqlite3_bind_double(st, i++, r->ttft_ms);
    else
        sqlite3_bind_null(st, i++);
    sqlite3_bind_int64(st, i++, r->overhead_us);
    sqlite3_bind_int(st, i++, r->status);
    bind_text(st, i++, r->error);
    bind_text(st, i++, r->cache);
    bind_text(st, i++, r->cache_key);
    sqlite3_bind_double(st, i++, r->saved_usd);
    sqlite3_bind_double(st, i++, r->prompt_cache_saved_usd);
    if (r->cache_similarity > 0)
        sqlite3_bind_double(st, i++, r->cache_similarity);
    else
        sqlite3_bind_null(st, i++);
    bind_text(st, i++, r->attempt_of);
    sqlite3_bind_int(st, i++, r->attempts > 0 ? r->attempts : 1);
    bind_text(st, i++, r->route_reason);
    if (r->baseline_usd >= 0)
        sqlite3_bind_double(st, i++, r->baseline_usd);
    else
        sqlite3_bind_null(st, i++);
    sqlite3_bind_double(st, i++, r->saved_routing_usd);
    bind_text(st, i++, r->shape);
    sqlite3_bind_int64(st, i++, r->shape_tokens_saved);
    sqlite3_bind_double(st, i++, r->saved_shaping_usd);
    bind_text(st, i++, r->prefix_hash);
    sqlite3_bind_int64(st, i++, r->prefix_tokens);
}

static ah_err_t sqlite_write(void *ctx, ah_ledger_row_t **rows, int n)
{
    sqlite_sink_t *s = ctx;
    if (ah_db_exec(s->db, "BEGIN"))
        return AH_E_DB;
    int level = LEDGER_INSERT_LEVELS - 1;
    for (int k = 0; k < n;) {
        while (n - k < 1 << level)
            level--;
        sqlite3_stmt *st = s->insert[level];
        for (int j = 0; j < 1 << level; j++)
            bind_row(st, j * LEDGER_COLUMNS + 1, rows[k + j]);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            ah_error("ledger insert: %s", sqlite3_errmsg(s->db));
            ah_db_exec(s->db, "ROLLBACK");
            return AH_E_DB;
        }
        k += 1 << level;
    }
    if (ah_db_exec(s->db, "COMMIT")) {
        ah_db_exec(s->db, "ROLLBACK");
        return AH_E_DB;
    }
    return AH_E_OK;
}

/* Prepare the INSERT of `rows` rows. */
static ah_err_t prepare_insert(sqlite3 *db, int rows, sqlite3_stmt **out)
{
    static const char one[] =
        "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
    _Static_assert(sizeof one - 1 == 2 * LEDGER_COLUMNS + 1, "one parameter per column");
    size_t len = sizeof insert_head - 1, cap = len + (size_t)rows * sizeof one;
    char *sql = ah_malloc(cap);
    memcpy(sql, insert_head, len);
    for (int k = 0; k < rows; k++) {
        if (k)
            sql[len++] = ',';
        memcpy(sql + len, one, sizeof one - 1);
        len += sizeof one - 1;
    }
    ah_err_t rc = AH_E_OK;
    if (sqlite3_prepare_v2(db, sql, (int)len, out, NULL) != SQLITE_OK) {
        ah_error("ledger: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
    }
    ah_free(sql);
    return rc;
}

static void sqlite_close(void *ctx)
{
    sqlite_sink_t *s = ctx;
    for (int k = 0; k < LEDGER_INSERT_LEVELS; k++)
        sqlite3_finalize(s->insert[k]);
    sqlite3_close(s->db);
    ah_free(s);
}

static const ah_ledger_sink_t sqlite_sink = {"sqlite", sqlite_write, sqlite_close, NULL, NULL};

/* --- queue and writer -------------------------------------------------- */

static void *writer_main(void *arg)
{
    ah_ledger_t *l = arg;
    ah_ledger_row_t *batch[AH_LEDGER_BATCH_ROWS];
    /* Linux: nice applies to this thread only. */
    if (AH_LEDGER_NICE && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), AH_LEDGER_NICE) != 0)
        ah_debug("ledger: cannot lower the writer's priority");
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (l->count == 0 && !l->closing)
            pthread_cond_wait(&l->not_empty, &l->mu);
        if (l->count == 0 && l->closing) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        if (l->count < AH_LEDGER_BATCH_ROWS && !l->closing) {
            /* Group commit: let more rows arrive before paying for one. */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += (long)AH_LEDGER_GROUP_US * 1000;
            until.tv_sec += until.tv_nsec / 1000000000;
            until.tv_nsec %= 1000000000;
            l->gathering = 1;
            while (l->count < AH_LEDGER_BATCH_ROWS && !l->closing &&
                   pthread_cond_timedwait(&l->not_empty, &l->mu, &until) != ETIMEDOUT)
                ;
            l->gathering = 0;
        }
        int n = 0;
        while (l->count > 0 && n < AH_LEDGER_BATCH_ROWS) {
            batch[n++] = l->ring[l->head];
            l->head = (l->head + 1) % AH_LEDGER_QUEUE_ROWS;
            l->count--;
        }
        l->writing = n;
        pthread_cond_broadcast(&l->not_full);
        pthread_mutex_unlock(&l->mu);

        ah_err_t rc = AH_E_DB;
        for (int attempt = 0; attempt < WRITE_RETRIES && rc; attempt++) {
            if (attempt)
                usleep(100000u << attempt);
            rc = l->sink->write(l->sink_ctx, batch, n);
        }
        pthread_mutex_lock(&l->mu);
        if (rc)
            l->failed += (uint64_t)n;
        else
            l->written += (uint64_t)n;
        l->writing = 0;
        l->last_ok = !rc;
        pthread_mutex_unlock(&l->mu);
        for (int k = 0; k < l->nobservers; k++)
            l->observers[k].fn(l->observers[k].ctx, batch, n);
        for (int i = 0; i < n; i++) {
            if (rc)
                ah_error("ledger: lost row %s after %d attempts", batch[i]->request_id,
                         WRITE_RETRIES);
            ah_ledger_row_free(batch[i]);
        }
    }
    return NULL;
}

ah_err_t ah_ledger_open_sink(const ah_ledger_sink_t *sink, void *sink_ctx, ah_ledger_t **out)
{
    ah_ledger_t *l = ah_calloc(1, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t monotonic; /* the group commit's timed wait ignores clock changes */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_cond_init(&l->not_empty, &monotonic);
    pthread_condattr_destroy(&monotonic);
    pthread_cond_init(&l->not_full, NULL);
    l->sink = sink;
    l->sink_ctx = sink_ctx;
    l->last_ok = 1; /* until a batch says otherwise */
    if (pthread_create(&l->writer, NULL, writer_main, l) != 0) {
        sink->close(sink_ctx);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->not_empty);
        pthread_cond_destroy(&l->not_full);
        ah_free(l);
        return AH_E_IO;
    }
    *out = l;
    return AH_E_OK;
}

ah_err_t ah_ledger_open_sqlite(const char *path, ah_ledger_t **out)
{
    sqlite3 *db;
    ah_err_t rc = ah_db_open(path, &db);
    if (rc)
        return rc;
    sqlite_sink_t *s = ah_calloc(1, sizeof *s);
    s->db = db;
    /* A larger page cache for this connection only: the request_id index
     * takes one random leaf page per row (bench/ledger/RESULTS.md). */
    if ((rc = ah_db_exec(db, LEDGER_PRAGMAS))) {
        sqlite_close(s);
        return rc;
    }
    for (int k = 0; k < LEDGER_INSERT_LEVELS; k++) {
        if ((rc = prepare_insert(db, 1 << k, &s->insert[k]))) {
            sqlite_close(s);
            return rc;
        }
    }
    return ah_ledger_open_sink(&sqlite_sink, s, out);
}

ah_err_t ah_ledger_observe(ah_ledger_t *l, ah_ledger_observer_fn fn, void *ctx)
{
    if (l->nobservers == AH_LEDGER_MAX_OBSERVERS)
        return AH_E_TOOBIG;
    l->observers[l->nobservers].fn = fn;
    l->observers[l->nobservers].ctx = ctx;
    l->nobservers++;
    return AH_E_OK;
}

void ah_ledger_append(ah_ledger_t *l, ah_ledger_row_t *row)
{
    pthread_mutex_lock(&l->mu);
    while (l->count == AH_LEDGER_QUEUE_ROWS)
        pthread_cond_wait(&l->not_full, &l->mu);
    row->journal_seg = -1;
    if (l->sink->journal)
        l->sink->journal(l->sink_ctx, row);
    l->ring[(l->head + l->count) % AH_LEDGER_QUEUE_ROWS] = row;
    /* The writer sleeps on an empty queue, or gathers until a batch is full. */
    if (l->count++ == 0 || (l->gathering && l->count == AH_LEDGER_BATCH_ROWS))
        pthread_cond_signal(&l->not_empty);
    pthread_mutex_unlock(&l->mu);
}

void ah_ledger_stats(ah_ledger_t *l, uint64_t *written, uint64_t *failed)
{
    pthread_mutex_lock(&l->mu);
    *written = l->written;
    *failed = l->failed;
    pthread_mutex_unlock(&l->mu);
}

void ah_ledger_health(ah_ledger_t *l, ah_ledger_health_t *out)
{
    memset(out, 0, sizeof *out);
    out->backend = l->sink->name;
    pthread_mutex_lock(&l->mu);
    out->written = l->written;
    out->failed = l->failed;
    out->queued = (uint64_t)l->count + (uint64_t)l->writing;
    out->up = l->last_ok;
    pthread_mutex_unlock(&l->mu);
    /* Outside the queue's lock: a scrape that waits for the sink's lock
     * (busy with a segment) must not hold up the producers. */
    if (l->sink->stats) {
        l->sink->stats(l->sink_ctx, &out->sink);
        out->has_sink_stats = 1;
        out->up = out->sink.up;
    }
}

void ah_ledger_close(ah_ledger_t *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->closing = 1;
    pthread_cond_signal(&l->not_empty);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->writer, NULL);
    ah_info("ledger: %llu rows written, %llu failed", (unsigned long long)l->written,
            (unsigned long long)l->failed);
    l->sink->close(l->sink_ctx);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->not_empty);
    pthread_cond_destroy(&l->not_full);
    ah_free(l);
}
