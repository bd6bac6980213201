/* ledger_pg.c - the ledger in PostgreSQL, with a spool that loses no row.
 *
 * Durability: before a row is queued (ah_ledger_append, on the event loop,
 * under the queue's lock) it is appended as one line to the current spool
 * segment, a file in the spool directory: the row is in the kernel's page
 * cache before the response's last bytes leave, so a gateway killed with
 * SIGKILL (or stopped while PostgreSQL is away) loses none. Segments are
 * files "<seq>.jsonl" of at most SEG_MAX_BYTES; a line is the row's 40
 * column values as a JSON array of strings and nulls, exactly the text
 * parameters of the INSERT.
 *
 * Who writes what to PostgreSQL, split by segment number:
 * - the writer thread (ledger.c) inserts queued rows of segments >= resume
 *   in multi-row INSERTs ... ON CONFLICT (request_id) DO NOTHING, and after
 *   each commit deletes the segments before the last committed row's (the
 *   queue is in journal order, so they are all in PostgreSQL);
 * - the replayer thread inserts segments < resume from their files, and
 *   deletes each once it is in.
 * When the writer cannot reach PostgreSQL it falls "behind": it stops
 * inserting (its rows are in the spool) and leaves them to the replayer.
 * Once a second the replayer tries PostgreSQL; when it answers, it rotates
 * to a new segment, moves `resume` to it (the writer inserts again from
 * there on) and replays every older segment. Files left by an earlier
 * process (killed, or stopped while behind) are replayed the same way at
 * start. A row that is replayed but was already in (the writer committed
 * it before the failure) is skipped by the unique request_id.
 *
 * Bounds: the spool holds at most spool_max_mb on disk; past that, rows are
 * not journaled (counted, logged once) and are lost if PostgreSQL is away
 * too. A row whose values PostgreSQL refuses (a data error, not a lost
 * connection) is logged and dropped, so one bad row never wedges the rest.
 *
 * Threads and locks: `mu` guards the segment state; it is taken inside the
 * queue's lock by the journal hook, and alone by the writer and replayer
 * (never the other way round). Each thread has its own connection.
 *
 * Health (pg_stats, for /metrics and /health): whether the last attempt to
 * reach PostgreSQL succeeded, the spool's size, and counts of rows replayed
 * and dropped, all read under `mu` but `dropped`, which both threads add to
 * outside it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "config/ledger_config.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/json_out.h"
#include "core/log.h"
#include "store/ledger.h"
#include "store/pg.h"

#define SEG_MAX_BYTES (4u << 20)
#define LINE_MAX_BYTES (1u << 20) /* a row's line; longer ones are not journaled */
#define INSERT_CHUNK 128          /* rows per INSERT: 5,120 parameters */
#define REPLAY_TICK_MS 500
#define NO_SEG INT64_MAX

typedef struct pg_sink {
    char *url;
    int timeout_ms;
    char *dir;
    int dir_fd; /* holds the spool's lock (flock) */
    uint64_t max_bytes;

    pthread_mutex_t mu;
    pthread_cond_t wake; /* the replayer's sleep */
    int fd;              /* the current segment, appended by the journal hook */
    int64_t seg;         /* its number */
    uint64_t seg_bytes;  /* its size */
    uint64_t spool_bytes;
    int64_t resume; /* the writer inserts rows of segments >= resume */
    int behind;     /* the writer could not reach PostgreSQL */
    int replay;     /* segments < resume may be on disk */
    int closing;
    ah_buf_t line; /* the journal hook's line, under mu */
    uint64_t unspooled, spool_full_logged;
    int64_t outage_since_ms;
    int up;                   /* the last attempt to reach PostgreSQL succeeded */
    uint64_t spool_segments;  /* segment files on disk */
    uint64_t replayed;        /* rows inserted by the replayer */
    _Atomic uint64_t dropped; /* rows refused for their data */

    /* the writer's */
    PGconn *conn;
    int64_t deleted_upto; /* segments in [resume, deleted_upto) are gone */

    /* the replayer's */
    pthread_t replayer;
    PGconn *rconn;
} pg_sink_t;

/* --- values of a row ----------------------------------------------------- */

typedef struct row_values {
    const char *v[AH_LEDGER_COLUMNS];
    char num[AH_LEDGER_COLUMNS][32];
} row_values_t;

static const char *i64(row_values_t *rv, int i, int64_t x)
{
    snprintf(rv->num[i], sizeof rv->num[i], "%lld", (long long)x);
    return rv->num[i];
}

static const char *dbl(row_values_t *rv, int i, double x)
{
    snprintf(rv->num[i], sizeof rv->num[i], "%.17g", x);
    return rv->num[i];
}

/* The text values of r's columns, in ah_ledger_columns' order (NULL for
 * SQL NULL); the same rules as the SQLite sink's bind_row. */
static void row_values(const ah_ledger_row_t *r, row_values_t *rv)
{
    int i = 0;
    const char **v = rv->v;
    v[i] = r->request_id, i++;
    v[i] = i64(rv, i, r->ts_ms), i++;
    v[i] = r->key_id, i++;
    v[i] = r->owner, i++;
    v[i] = r->user, i++;
    v[i] = r->tags, i++;
    v[i] = r->api, i++;
    v[i] = r->endpoint, i++;
    v[i] = i64(rv, i, r->stream), i++;
    v[i] = r->requested_model, i++;
    v[i] = r->served_model, i++;
    v[i] = r->provider, i++;
    v[i] = r->deployment, i++;
    v[i] = i64(rv, i, r->prompt_tokens), i++;
    v[i] = i64(rv, i, r->completion_tokens), i++;
    v[i] = i64(rv, i, r->cached_tokens), i++;
    v[i] = i64(rv, i, r->cache_write_tokens), i++;
    v[i] = i64(rv, i, r->reasoning_tokens), i++;
    v[i] = r->usage_source, i++;
    v[i] = r->cost_usd >= 0 ? dbl(rv, i, r->cost_usd) : NULL, i++;
    v[i] = dbl(rv, i, r->latency_ms), i++;
    v[i] = r->ttft_ms >= 0 ? dbl(rv, i, r->ttft_ms) : NULL, i++;
    v[i] = i64(rv, i, r->overhead_us), i++;
    v[i] = i64(rv, i, r->status), i++;
    v[i] = r->error, i++;
    v[i] = r->cache, i++;
    v[i] = r->cache_key, i++;
    v[i] = dbl(rv, i, r->saved_usd), i++;
    v[i] = dbl(rv, i, r->prompt_cache_saved_usd), i++;
    v[i] = r->cache_similarity > 0 ? dbl(rv, i, r->cache_similarity) : NULL, i++;
    v[i] = r->attempt_of, i++;
    v[i] = i64(rv, i, r->attempts > 0 ? r->attempts : 1), i++;
    v[i] = r->route_reason, i++;
    v[i] = r->baseline_usd >= 0 ? dbl(rv, i, r->baseline_usd) : NULL, i++;
    v[i] = dbl(rv, i, r->saved_routing_usd), i++;
    v[i] = r->shape, i++;
    v[i] = i64(rv, i, r->shape_tokens_saved), i++;
    v[i] = dbl(rv, i, r->saved_shaping_usd), i++;
    v[i] = r->prefix_hash, i++;
    v[i] = i64(rv, i, r->prefix_tokens), i++;
}

/* --- inserting ------------------------------------------------------------ */

typedef enum { INS_OK, INS_LOST, INS_BAD } ins_t;

/* Insert n rows of values (vals[k][col]) in one statement. */
static ins_t insert_chunk(PGconn *c, const char *const *const *vals, int n, char *err,
                          size_t errlen)
{
    ah_buf_t sql;
    ah_buf_init(&sql, 1u << 20);
    ah_buf_printf(&sql, "INSERT INTO ahorro_ledger(%s) VALUES ", ah_ledger_columns);
    const char **params = ah_malloc((size_t)n * AH_LEDGER_COLUMNS * sizeof *params);
    for (int k = 0; k < n; k++) {
        ah_buf_appends(&sql, k ? ",(" : "(");
        for (int i = 0; i < AH_LEDGER_COLUMNS; i++) {
            ah_buf_printf(&sql, i ? ",$%d" : "$%d", k * AH_LEDGER_COLUMNS + i + 1);
            params[k * AH_LEDGER_COLUMNS + i] = vals[k][i];
        }
        ah_buf_appends(&sql, ")");
    }
    ah_buf_appends(&sql, " ON CONFLICT (request_id) DO NOTHING");
    PGresult *r = PQexecParams(c, sql.data, n * AH_LEDGER_COLUMNS, NULL, params, NULL, NULL, 0);
    ins_t rc = INS_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        rc = ah_pg_connection_lost(c, r) ? INS_LOST : INS_BAD;
        const char *m = PQresultErrorMessage(r);
        ah_err_printf(err, errlen, "%.*s", (int)strcspn(m ? m : "", "\n"), m ? m : "");
    }
    PQclear(r);
    ah_free(params);
    ah_buf_free(&sql);
    return rc;
}

/* Insert n rows in chunks; a chunk PostgreSQL refuses for its data is
 * retried row by row and the bad rows are dropped (logged with ids[k]).
 * INS_LOST when the connection failed (some rows may be in: replaying
 * them later is harmless). */
static ins_t insert_rows(PGconn *c, const char *const *const *vals, int n,
                         _Atomic uint64_t *dropped)
{
    char err[512];
    for (int k = 0; k < n; k += INSERT_CHUNK) {
        int m = n - k < INSERT_CHUNK ? n - k : INSERT_CHUNK;
        ins_t rc = insert_chunk(c, vals + k, m, err, sizeof err);
        if (rc == INS_LOST)
            return INS_LOST;
        if (rc == INS_BAD) {
            for (int j = k; j < k + m; j++) {
                rc = insert_chunk(c, vals + j, 1, err, sizeof err);
                if (rc == INS_LOST)
                    return INS_LOST;
                if (rc == INS_BAD) {
                    ah_error("ledger: PostgreSQL refused row %s, dropped: %s",
                             vals[j][0] ? vals[j][0] : "?", err);
                    atomic_fetch_add(dropped, 1);
                }
            }
        }
    }
    return INS_OK;
}

/* The connection, (re)connected when needed; NULL when PostgreSQL cannot be
 * reached. */
static PGconn *conn_get(pg_sink_t *s, PGconn **c)
{
    if (*c && PQstatus(*c) == CONNECTION_OK)
        return *c;
    if (*c) {
        PQfinish(*c);
        *c = NULL;
    }
    char err[256];
    *c = ah_pg_connect(s->url, s->timeout_ms, err, sizeof err);
    if (!*c)
        ah_debug("ledger: PostgreSQL: %s", err);
    return *c;
}

/* --- the spool ------------------------------------------------------------ */

static void seg_path(const pg_sink_t *s, int64_t seg, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%lld.jsonl", s->dir, (long long)seg);
}

/* Open segment seg for appending; under mu. */
static int seg_open(pg_sink_t *s, int64_t seg)
{
    char path[4096];
    seg_path(s, seg, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        ah_error("ledger: cannot open the spool segment %s: %s", path, strerror(errno));
        return -1;
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->seg = seg;
    s->seg_bytes = 0;
    s->spool_segments++;
    return 0;
}

/* Delete segment seg; under mu. */
static void seg_delete(pg_sink_t *s, int64_t seg)
{
    char path[4096];
    struct stat st;
    seg_path(s, seg, path, sizeof path);
    if (stat(path, &st) == 0 && unlink(path) == 0) {
        s->spool_bytes -=
            (uint64_t)st.st_size < s->spool_bytes ? (uint64_t)st.st_size : s->spool_bytes;
        s->spool_segments -= s->spool_segments > 0;
    }
}

/* The row's values as one JSON array line (with its newline) in s->line;
 * under mu. AH_E_TOOBIG past LINE_MAX_BYTES. */
static ah_err_t journal_line(pg_sink_t *s, const ah_ledger_row_t *row)
{
    row_values_t rv;
    row_values(row, &rv);
    ah_buf_reset(&s->line);
    ah_err_t rc = ah_buf_append(&s->line, "[", 1);
    for (int i = 0; i < AH_LEDGER_COLUMNS && !rc; i++) {
        if (i)
            rc = ah_buf_append(&s->line, ",", 1);
        if (!rc)
            rc = rv.v[i] ? ah_json_out_string(&s->line, rv.v[i])
                         : ah_buf_append(&s->line, "null", 4);
    }
    return rc ? rc : ah_buf_append(&s->line, "]\n", 2);
}

/* The journal hook: the row's values as one line of the current segment. */
static void pg_journal(void *ctx, ah_ledger_row_t *row)
{
    pg_sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    ah_err_t rc = journal_line(s, row);
    size_t len = s->line.len;
    if (rc || s->spool_bytes + len > s->max_bytes || s->fd < 0) {
        if (s->spool_full_logged++ == 0)
            ah_error("ledger: the spool %s is full (%llu MB) or unwritable, or a row is over "
                     "%u bytes: rows are not journaled until it drains",
                     s->dir, (unsigned long long)(s->max_bytes >> 20), LINE_MAX_BYTES);
        s->unspooled++;
    } else {
        if (s->seg_bytes + len > SEG_MAX_BYTES)
            seg_open(s, s->seg + 1);
        ssize_t w = write(s->fd, s->line.data, len);
        if (w == (ssize_t)len) {
            row->journal_seg = s->seg;
            s->seg_bytes += len;
            s->spool_bytes += len;
        } else {
            if (s->spool_full_logged++ == 0)
                ah_error("ledger: cannot write the spool %s: %s", s->dir,
                         w < 0 ? strerror(errno) : "short write");
            s->unspooled++;
            if (w > 0) /* a partial line: the replayer skips it; start clean */
                seg_open(s, s->seg + 1);
        }
    }
    pthread_mutex_unlock(&s->mu);
}

/* --- the writer's side ---------------------------------------------------- */

static void outage_begins(pg_sink_t *s, const char *who)
{
    if (s->outage_since_ms == 0) {
        s->outage_since_ms = ah_wall_ms();
        ah_warn("ledger: PostgreSQL cannot be reached (%s): rows are kept in the spool %s and "
                "replayed when it is back",
                who, s->dir);
    }
}

static ah_err_t pg_write(void *ctx, ah_ledger_row_t **rows, int n)
{
    pg_sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    int64_t resume = s->resume;
    int behind = s->behind;
    pthread_mutex_unlock(&s->mu);

    /* The rows this thread inserts: unjournaled ones always; journaled ones
     * of segments >= resume unless behind (the replayer has the others). */
    const char *const **vals = ah_malloc((size_t)n * sizeof *vals);
    row_values_t *rvs = ah_malloc((size_t)n * sizeof *rvs);
    int m = 0, unjournaled = 0;
    int64_t last_seg = -1;
    for (int k = 0; k < n; k++) {
        int64_t seg = rows[k]->journal_seg;
        if (seg >= 0 && (behind || seg < resume))
            continue;
        unjournaled += seg < 0;
        if (seg > last_seg)
            last_seg = seg;
        row_values(rows[k], &rvs[m]);
        vals[m] = rvs[m].v;
        m++;
    }
    ah_err_t rc = AH_E_OK;
    if (m > 0) {
        PGconn *c = conn_get(s, &s->conn);
        ins_t ir = c ? insert_rows(c, vals, m, &s->dropped) : INS_LOST;
        pthread_mutex_lock(&s->mu);
        s->up = ir != INS_LOST;
        if (ir == INS_LOST) {
            outage_begins(s, "the writer");
            s->behind = 1;
            s->replay = 1;
            pthread_cond_signal(&s->wake);
            /* Journaled rows are safe; the writer's retries are for the rest. */
            rc = unjournaled ? AH_E_DB : AH_E_OK;
        } else if (last_seg > s->deleted_upto) {
            /* Every row before this batch's last is in: so are their segments. */
            int64_t from = s->deleted_upto > s->resume ? s->deleted_upto : s->resume;
            for (int64_t g = from; g < last_seg; g++)
                seg_delete(s, g);
            s->deleted_upto = last_seg;
        }
        pthread_mutex_unlock(&s->mu);
    }
    ah_free(rvs);
    ah_free(vals);
    return rc;
}

/* --- the replayer ---------------------------------------------------------- */

/* Read a segment file into memory (at most 2 * SEG_MAX_BYTES). */
static char *read_segment(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 2u * SEG_MAX_BYTES, n = 0;
    char *buf = ah_malloc(cap + 1);
    size_t got;
    while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0)
        n += got;
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Insert the complete lines of segment file path. INS_LOST when PostgreSQL
 * went away (the file stays). */
static ins_t replay_segment(pg_sink_t *s, PGconn *c, const char *path, uint64_t *rows)
{
    size_t len = 0;
    char *buf = read_segment(path, &len);
    if (!buf)
        return INS_OK; /* gone already */
    json_t *batch[INSERT_CHUNK];
    const char *const *vals[INSERT_CHUNK];
    const char *cols[INSERT_CHUNK][AH_LEDGER_COLUMNS];
    int n = 0;
    ins_t rc = INS_OK;
    char *p = buf, *end = buf + len;
    while (p < end && rc == INS_OK) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break; /* a partial last line: the writer was killed mid-write */
        json_error_t je;
        json_t *a = json_loadb(p, (size_t)(nl - p), 0, &je);
        p = nl + 1;
        if (!json_is_array(a) || json_array_size(a) != AH_LEDGER_COLUMNS) {
            ah_warn("ledger: skipping a malformed spool line in %s", path);
            json_decref(a);
            continue;
        }
        for (int i = 0; i < AH_LEDGER_COLUMNS; i++) {
            json_t *v = json_array_get(a, (size_t)i);
            cols[n][i] = json_is_string(v) ? json_string_value(v) : NULL;
        }
        if (!cols[n][0]) { /* no request id: cannot be inserted idempotently */
            json_decref(a);
            continue;
        }
        vals[n] = cols[n];
        batch[n++] = a;
        if (n == INSERT_CHUNK || p >= end) {
            rc = insert_rows(c, vals, n, &s->dropped);
            if (rc == INS_OK)
                *rows += (uint64_t)n;
            for (int k = 0; k < n; k++)
                json_decref(batch[k]);
            n = 0;
        }
    }
    if (n > 0 && rc == INS_OK) {
        rc = insert_rows(c, vals, n, &s->dropped);
        if (rc == INS_OK)
            *rows += (uint64_t)n;
    }
    for (int k = 0; k < n; k++)
        json_decref(batch[k]);
    ah_free(buf);
    return rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The segment numbers below `below` found in the spool, sorted; *n of them
 * (at most cap). */
static int64_t *list_segments(const pg_sink_t *s, int64_t below, size_t *n)
{
    *n = 0;
    DIR *d = opendir(s->dir);
    if (!d)
        return NULL;
    size_t cap = 64;
    int64_t *segs = ah_malloc(cap * sizeof *segs);
    struct dirent *e;
    while ((e = readdir(d))) {
        char *endp;
        long long v = strtoll(e->d_name, &endp, 10);
        if (endp == e->d_name || strcmp(endp, ".jsonl") != 0 || v < 0 || v >= below)
            continue;
        if (*n == cap) {
            cap *= 2;
            segs = ah_realloc(segs, cap * sizeof *segs);
        }
        segs[(*n)++] = v;
    }
    closedir(d);
    qsort(segs, *n, sizeof *segs, cmp_i64);
    return segs;
}

/* One round: reach PostgreSQL, hand new rows back to the writer and insert
 * the older segments. */
static void replay_round(pg_sink_t *s)
{
    PGconn *c = conn_get(s, &s->rconn);
    pthread_mutex_lock(&s->mu);
    if (!c) {
        s->up = 0;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    /* The writer inserts from a fresh segment on; everything before it is
     * this thread's. */
    if (s->fd < 0 || seg_open(s, s->seg + 1) == 0) {
        s->resume = s->seg;
        s->deleted_upto = s->seg;
    }
    s->behind = 0;
    int64_t below = s->resume;
    pthread_mutex_unlock(&s->mu);

    size_t n;
    int64_t *segs = list_segments(s, below, &n);
    uint64_t rows = 0;
    ins_t rc = INS_OK;
    for (size_t i = 0; i < n && rc == INS_OK; i++) {
        char path[4096];
        seg_path(s, segs[i], path, sizeof path);
        rc = replay_segment(s, c, path, &rows);
        if (rc == INS_OK) {
            pthread_mutex_lock(&s->mu);
            seg_delete(s, segs[i]);
            pthread_mutex_unlock(&s->mu);
        }
    }
    ah_free(segs);
    pthread_mutex_lock(&s->mu);
    s->replayed += rows; /* a round cut short's too: those chunks are in */
    s->up = rc == INS_OK;
    if (rc == INS_OK) {
        s->replay = 0;
        if (s->outage_since_ms)
            ah_info("ledger: PostgreSQL is back after %.1f s: %llu rows replayed from the spool",
                    (double)(ah_wall_ms() - s->outage_since_ms) / 1000.0, (unsigned long long)rows);
        else if (rows)
            ah_info("ledger: %llu rows replayed from the spool %s", (unsigned long long)rows,
                    s->dir);
        s->outage_since_ms = 0;
        if (s->spool_full_logged && s->spool_bytes < s->max_bytes / 2) {
            ah_info("ledger: the spool has room again (%llu rows were not journaled)",
                    (unsigned long long)s->unspooled);
            s->spool_full_logged = 0;
        }
    } else {
        outage_begins(s, "the replayer");
    }
    pthread_mutex_unlock(&s->mu);
}

static void *replayer_main(void *arg)
{
    pg_sink_t *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->closing) {
        if (s->replay || s->behind) {
            pthread_mutex_unlock(&s->mu);
            replay_round(s);
            pthread_mutex_lock(&s->mu);
            if (s->closing)
                break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += REPLAY_TICK_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&s->wake, &s->mu, &until);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* --- open and close -------------------------------------------------------- */

static void pg_close(void *ctx)
{
    pg_sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    s->closing = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (s->replayer)
        pthread_join(s->replayer, NULL);
    /* The writer has drained: when it is not behind and nothing waits for
     * replay, every journaled row is in PostgreSQL. */
    if (!s->behind && !s->replay && s->fd >= 0) {
        for (int64_t g = s->resume; g <= s->seg; g++)
            seg_delete(s, g);
    } else if (s->dir) {
        ah_warn("ledger: rows wait in the spool %s for PostgreSQL; they are replayed at the "
                "next start",
                s->dir);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->dir_fd >= 0)
        close(s->dir_fd); /* releases the lock */
    PQfinish(s->conn);
    PQfinish(s->rconn);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->wake);
    ah_buf_free(&s->line);
    ah_free(s->url);
    ah_free(s->dir);
    ah_free(s);
}

static void pg_stats(void *ctx, ah_ledger_sink_stats_t *out)
{
    pg_sink_t *s = ctx;
    pthread_mutex_lock(&s->mu);
    out->up = s->up;
    out->spool_bytes = s->spool_bytes;
    out->spool_segments = s->spool_segments;
    out->replayed = s->replayed;
    out->unspooled = s->unspooled;
    pthread_mutex_unlock(&s->mu);
    out->dropped = atomic_load(&s->dropped);
}

static const ah_ledger_sink_t pg_sink = {"postgres", pg_write, pg_close, pg_journal, pg_stats};

ah_err_t ah_ledger_open_postgres(const ah_ledger_config_t *cfg, const char *default_spool,
                                 ah_ledger_t **out, char *err, size_t errlen)
{
    pg_sink_t *s = ah_calloc(1, sizeof *s);
    s->url = ah_strdup(cfg->url);
    s->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_LEDGER_DEFAULT_TIMEOUT_MS;
    s->dir = ah_strdup(cfg->spool ? cfg->spool : default_spool);
    s->max_bytes =
        (uint64_t)(cfg->spool_max_mb > 0 ? cfg->spool_max_mb : AH_LEDGER_DEFAULT_SPOOL_MB) << 20;
    s->fd = s->dir_fd = -1;
    s->up = 1; /* connected below, or the start fails */
    ah_buf_init(&s->line, LINE_MAX_BYTES);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->wake, NULL);

    /* The schema first: a gateway that cannot reach its database at start
     * says so instead of serving into a spool nobody may ever replay. */
    s->conn = ah_pg_connect(s->url, s->timeout_ms, err, errlen);
    if (!s->conn || ah_pg_migrate(s->conn, err, errlen)) {
        pg_close(s);
        return AH_E_DB;
    }
    if (mkdir(s->dir, 0700) != 0 && errno != EEXIST) {
        ah_err_printf(err, errlen, "cannot create the spool directory %s: %s", s->dir,
                      strerror(errno));
        pg_close(s);
        return AH_E_IO;
    }
    s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dir_fd < 0 || flock(s->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        ah_err_printf(err, errlen,
                      "the spool directory %s is unusable or used by another running gateway "
                      "(give each instance its own: ahorro.ledger.spool)",
                      s->dir);
        pg_close(s);
        return AH_E_IO;
    }
    /* Segments left by an earlier process are replayed; new rows go to a
     * segment after them. */
    size_t n;
    int64_t *segs = list_segments(s, NO_SEG, &n);
    int64_t next = n ? segs[n - 1] + 1 : 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        seg_path(s, segs[i], path, sizeof path);
        if (stat(path, &st) == 0) {
            s->spool_bytes += (uint64_t)st.st_size;
            s->spool_segments++;
        }
    }
    ah_free(segs);
    if (n)
        ah_info("ledger: %zu spool segments (%llu bytes) from an earlier run are replayed", n,
                (unsigned long long)s->spool_bytes);
    if (seg_open(s, next)) {
        ah_err_printf(err, errlen, "cannot write in the spool directory %s", s->dir);
        pg_close(s);
        return AH_E_IO;
    }
    s->resume = s->deleted_upto = next;
    s->replay = n > 0;
    if (pthread_create(&s->replayer, NULL, replayer_main, s) != 0) {
        s->replayer = 0;
        ah_err_printf(err, errlen, "cannot start the spool's replayer");
        pg_close(s);
        return AH_E_IO;
    }
    return ah_ledger_open_sink(&pg_sink, s, out);
}
