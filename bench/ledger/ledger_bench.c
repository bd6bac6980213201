/* ledger_bench.c - what the SQLite ledger sink costs per row.
 *
 * Producers append realistic rows (random request ids as the gateway makes
 * them, keys, tags, models, a third of them cache hits with a key) to
 * ah_ledger_open_sqlite on a temporary file, then close it (which drains).
 * Reported: rows/s from the first append to the end of close, and the
 * writer's CPU per row: the process's CPU over the run less the producers'
 * own (RUSAGE_THREAD), so what remains is the writer thread's (the main
 * thread only waits). Each figure is the median of the runs; every run
 * checks that the file holds exactly the rows appended.
 *
 *   ledger_bench [-n ROWS] [-p PRODUCERS] [-r ROWS_PER_S] [-R RUNS] [-k PREFILL]
 *                [-i unique|plain|none] [-o] [-t DIR] [-l LABEL]
 *
 * -r paces the producers (total rows/s) so that the writer sees the batch
 *    sizes of a gateway at that load instead of full 512-row batches.
 * -k appends PREFILL rows first (not measured): a ledger that is not empty.
 * -i rebuilds the ledger table before the run: request_id UNIQUE (the
 *    schema), a plain index on request_id, or no index on it (to measure
 *    what the index costs; not a supported schema).
 * -P URL writes to PostgreSQL (ledger_pg.c) instead, with its spool in DIR:
 *    rows/s, the producers' CPU per row (the journal line they append: what
 *    an event loop pays) and the process's.
 * -o makes request ids time-ordered (the time in ms, then random digits,
 *    same length) instead of random as the gateway makes them now. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config/ledger_config.h"
#include "core/alloc.h"
#include "core/log.h"
#include "store/db.h"
#include "store/ledger.h"
#include "store/pg.h"

#define MAX_PRODUCERS 16
#define MAX_RUNS 15

static long rows_total = 200000;
static int producers = 2;
static double rate;
static int runs = 3;
static long prefill;
static const char *index_kind = "unique";
static const char *dir = "/tmp";
static const char *label = "current";
static int ordered_ids;
static const char *pg_url; /* -P: the PostgreSQL sink instead of SQLite */

static ah_ledger_t *ledger;

typedef struct producer {
    long id, rows, first;
    uint64_t rng;
    double cpu_s;
} producer_t;

static uint64_t next_rand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double cpu_of(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

static const char *const models[][4] = {
    /* requested, served, provider, deployment */
    {"gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai", "openai-main"},
    {"gpt-4o", "gpt-4o-2024-08-06", "openai", "openai-main"},
    {"claude-3-5-haiku-latest", "claude-3-5-haiku-20241022", "anthropic", "anthropic-main"},
    {"llama-3.1-8b", "meta-llama/Llama-3.1-8B-Instruct", "vllm", "vllm-local"},
};

static ah_ledger_row_t *make_row(producer_t *p, long i)
{
    uint64_t a = next_rand(&p->rng), b = next_rand(&p->rng);
    ah_ledger_row_t *r = ah_calloc(1, sizeof *r);
    char s[96];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    r->ts_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ordered_ids) /* same length: 11 hex digits of the time in ms, then 13 random */
        snprintf(s, sizeof s, "req_%011llx%013llx", (unsigned long long)r->ts_ms,
                 (unsigned long long)(a >> 12));
    else
        snprintf(s, sizeof s, "req_%016llx%08x", (unsigned long long)a, (unsigned)(p->id * 2 + 1));
    r->request_id = ah_strdup(s);
    snprintf(s, sizeof s, "key_%012llx", (unsigned long long)(b % 20) * 0x1f3a5c7e9bull);
    r->key_id = ah_strdup(s);
    snprintf(s, sizeof s, "team-%u", (unsigned)(b % 20) / 4);
    r->owner = ah_strdup(s);
    if (b & 1) {
        snprintf(s, sizeof s, "user-%u", (unsigned)(b >> 8) % 1000);
        r->user = ah_strdup(s);
    }
    snprintf(s, sizeof s, "{\"env\":\"prod\",\"team\":\"team-%u\"}", (unsigned)(b % 20) / 4);
    r->tags = ah_strdup(s);
    const char *const *m = models[(b >> 16) % 4];
    r->api = (b >> 16) % 4 == 2 ? "anthropic" : "openai";
    r->endpoint = (b >> 20) % 16 == 0 ? "embeddings" : "chat";
    r->stream = (int)((b >> 24) & 1);
    r->requested_model = ah_strdup(m[0]);
    r->served_model = ah_strdup(m[1]);
    r->provider = ah_strdup(m[2]);
    r->deployment = ah_strdup(m[3]);
    r->prompt_tokens = (int64_t)((b >> 28) % 4000);
    r->completion_tokens = (int64_t)((b >> 40) % 800);
    r->cached_tokens = (b >> 50) % 4 == 0 ? r->prompt_tokens / 2 : 0;
    r->usage_source = "provider";
    r->cost_usd = (double)(r->prompt_tokens * 150 + r->completion_tokens * 600) / 1e9;
    r->latency_ms = 200.0 + (double)(a % 3000);
    r->ttft_ms = r->stream ? 80.0 + (double)(a % 500) : -1;
    r->overhead_us = 40 + (int64_t)(a % 60);
    r->status = (b >> 56) % 100 == 0 ? 429 : 200;
    if (r->status != 200)
        r->error = ah_strdup("upstream 429: Rate limit reached for requests");
    switch ((b >> 58) % 6) {
    case 0:
    case 1:
        r->cache = "exact";
        r->saved_usd = r->cost_usd;
        break;
    case 2:
        r->cache = "stored";
        break;
    case 3:
        r->cache = "semantic";
        r->saved_usd = r->cost_usd;
        r->cache_similarity = 0.93;
        break;
    default:
        r->cache = "miss";
    }
    if (strcmp(r->cache, "miss") != 0) {
        char key[65];
        for (int k = 0; k < 4; k++)
            snprintf(key + 16 * k, 17, "%016llx", (unsigned long long)next_rand(&p->rng));
        r->cache_key = ah_strdup(key);
    }
    (void)i;
    return r;
}

static void *produce(void *arg)
{
    producer_t *p = arg;
    double per_row = rate > 0 ? (double)producers / rate : 0, t0 = now_s();
    for (long i = 0; i < p->rows; i++) {
        if (per_row > 0 && i % 8 == 0) {
            double due = t0 + (double)i * per_row - now_s();
            if (due > 0)
                usleep((useconds_t)(due * 1e6));
        }
        ah_ledger_append(ledger, make_row(p, p->first + i));
    }
    p->cpu_s = cpu_of(RUSAGE_THREAD);
    return NULL;
}

static void run_producers(long rows, int n, uint64_t seed, double *cpu_s)
{
    producer_t ps[MAX_PRODUCERS];
    pthread_t th[MAX_PRODUCERS];
    for (int i = 0; i < n; i++) {
        ps[i] = (producer_t){.id = i, .rows = rows / n + (i < rows % n), .rng = seed + (uint64_t)i};
        ps[i].first = i * (rows / n);
        pthread_create(&th[i], NULL, produce, &ps[i]);
    }
    *cpu_s = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        *cpu_s += ps[i].cpu_s;
    }
}

static int exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sqlite: %s: %s\n", sql, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Rebuild the (empty) ledger table with another index on request_id. */
static int reshape(const char *path)
{
    sqlite3 *db;
    if (ah_db_open(path, &db))
        return -1;
    sqlite3_stmt *st;
    char sql[4096] = "";
    if (sqlite3_prepare_v2(db, "SELECT sql FROM sqlite_master WHERE name = 'ledger'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(sql, sizeof sql, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    char *u = strstr(sql, " UNIQUE");
    int rc = -1;
    if (!u)
        goto out;
    memmove(u, u + 7, strlen(u + 7) + 1);
    if (exec(db, "DROP TABLE ledger") || exec(db, sql) ||
        exec(db, "CREATE INDEX IF NOT EXISTS ledger_ts ON ledger(ts_ms)"))
        goto out;
    if (strcmp(index_kind, "plain") == 0 &&
        exec(db, "CREATE INDEX ledger_request ON ledger(request_id)"))
        goto out;
    rc = 0;
out:
    sqlite3_close(db);
    return rc;
}

static long count_rows(const char *path)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long n = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT COUNT(DISTINCT request_id) FROM ledger", -1, &st, NULL) ==
            SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static void remove_db(const char *path)
{
    char aux[600];
    unlink(path);
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The PostgreSQL sink: the ledger table emptied first; rows counted after. */
static long pg_count(void)
{
    char err[256];
    PGconn *c = ah_pg_connect(pg_url, 2000, err, sizeof err);
    long n = -1;
    if (c) {
        PGresult *r = PQexec(c, "SELECT COUNT(DISTINCT request_id) FROM ahorro_ledger");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            n = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
    }
    PQfinish(c);
    return n;
}

static int pg_open(const char *spool)
{
    ah_ledger_config_t lc = {.url = (char *)pg_url};
    char err[512];
    if (ah_ledger_open_postgres(&lc, spool, &ledger, err, sizeof err)) {
        fprintf(stderr, "postgres: %s\n", err);
        return -1;
    }
    return 0;
}

static int pg_run(int k, double *rows_s, double *producer_us, double *total_us)
{
    char spool[512];
    snprintf(spool, sizeof spool, "%s/ledger-bench-spool-%d-%d", dir, (int)getpid(), k);
    if (pg_open(spool))
        return -1;
    ah_ledger_close(ledger); /* migrated; now empty the table */
    char err[256];
    PGconn *c = ah_pg_connect(pg_url, 2000, err, sizeof err);
    if (!c || ah_pg_exec(c, "TRUNCATE ahorro_ledger", err, sizeof err)) {
        fprintf(stderr, "postgres: %s\n", err);
        PQfinish(c);
        return -1;
    }
    PQfinish(c);
    if (pg_open(spool))
        return -1;
    double cpu, c0 = cpu_of(RUSAGE_SELF), t0 = now_s();
    run_producers(rows_total, producers, 0x1234u + (uint64_t)k * 977, &cpu);
    ah_ledger_close(ledger);
    double t1 = now_s(), c1 = cpu_of(RUSAGE_SELF);
    rmdir(spool);
    long got = pg_count();
    if (got != rows_total) {
        fprintf(stderr, "expected %ld rows, found %ld\n", rows_total, got);
        return -1;
    }
    *rows_s = (double)rows_total / (t1 - t0);
    *producer_us = cpu * 1e6 / (double)rows_total;
    *total_us = (c1 - c0) * 1e6 / (double)rows_total;
    return 0;
}

static int one_run(int k, double *rows_s, double *writer_us, double *total_us, double *file_mb)
{
    char path[512];
    snprintf(path, sizeof path, "%s/ledger-bench-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return -1;
    }
    close(fd);
    int rc = -1;
    if (strcmp(index_kind, "unique") != 0 && reshape(path))
        goto out;
    double cpu;
    if (prefill > 0) {
        if (ah_ledger_open_sqlite(path, &ledger))
            goto out;
        double saved = rate;
        rate = 0;
        run_producers(prefill, producers, 0xfeed0000u + (uint64_t)k, &cpu);
        rate = saved;
        ah_ledger_close(ledger);
    }
    if (ah_ledger_open_sqlite(path, &ledger))
        goto out;
    double c0 = cpu_of(RUSAGE_SELF), t0 = now_s();
    run_producers(rows_total, producers, 0x1234u + (uint64_t)k * 977, &cpu);
    ah_ledger_close(ledger);
    double t1 = now_s(), c1 = cpu_of(RUSAGE_SELF);
    uint64_t want = (uint64_t)(rows_total + prefill);
    long got = count_rows(path);
    if (got < 0 || (uint64_t)got != want) {
        fprintf(stderr, "expected %llu rows, found %ld\n", (unsigned long long)want, got);
        goto out;
    }
    FILE *f = fopen(path, "rb");
    *file_mb = 0;
    if (f) {
        fseek(f, 0, SEEK_END);
        *file_mb = (double)ftell(f) / 1e6;
        fclose(f);
    }
    *rows_s = (double)rows_total / (t1 - t0);
    *writer_us = ((c1 - c0) - cpu) * 1e6 / (double)rows_total;
    *total_us = (c1 - c0) * 1e6 / (double)rows_total;
    rc = 0;
out:
    remove_db(path);
    return rc;
}

int main(int argc, char **argv)
{
    int c;
    while ((c = getopt(argc, argv, "n:p:r:R:k:i:t:l:oP:")) != -1) {
        switch (c) {
        case 'n':
            rows_total = strtol(optarg, NULL, 10);
            break;
        case 'p':
            producers = (int)strtol(optarg, NULL, 10);
            break;
        case 'r':
            rate = strtod(optarg, NULL);
            break;
        case 'R':
            runs = (int)strtol(optarg, NULL, 10);
            break;
        case 'k':
            prefill = strtol(optarg, NULL, 10);
            break;
        case 'i':
            index_kind = optarg;
            break;
        case 't':
            dir = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 'o':
            ordered_ids = 1;
            break;
        case 'P':
            pg_url = optarg;
            break;
        default:
            fprintf(stderr,
                    "usage: %s [-n rows] [-p producers] [-r rows/s] [-R runs] "
                    "[-k prefill] [-i unique|plain|none] [-o] [-t dir] [-l label]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rows_total <= 0 || producers < 1 || producers > MAX_PRODUCERS || runs < 1 ||
        runs > MAX_RUNS || prefill < 0 ||
        (strcmp(index_kind, "unique") && strcmp(index_kind, "plain") &&
         strcmp(index_kind, "none"))) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    ah_log_set_level(AH_LOG_WARN);
    double rs[MAX_RUNS], wu[MAX_RUNS], tu[MAX_RUNS], mb[MAX_RUNS];
    if (pg_url) { /* producers' CPU per row: what the spool's journal costs an event loop */
        for (int k = 0; k < runs; k++) {
            if (pg_run(k, &rs[k], &wu[k], &tu[k]))
                return 1;
            fprintf(stderr, "# %s run %d: %.0f rows/s, producers %.2f us/row, process %.2f us/row\n",
                    label, k + 1, rs[k], wu[k], tu[k]);
        }
        printf("| %s (PostgreSQL) | %ld | %s | %.0f | %.2f | %.2f |\n", label, rows_total,
               rate > 0 ? "paced" : "max", median(rs, runs), median(wu, runs), median(tu, runs));
        return 0;
    }
    for (int k = 0; k < runs; k++) {
        if (one_run(k, &rs[k], &wu[k], &tu[k], &mb[k]))
            return 1;
        fprintf(stderr, "# %s run %d: %.0f rows/s, writer %.2f us/row, process %.2f us/row\n",
                label, k + 1, rs[k], wu[k], tu[k]);
    }
    char pace[32] = "max";
    if (rate > 0)
        snprintf(pace, sizeof pace, "%.0f/s", rate);
    printf("| %s | %ld | %ld | %s | %s%s | %.0f | %.2f | %.2f | %.0f |\n", label, prefill,
           rows_total, pace, index_kind, ordered_ids ? ", time-ordered ids" : "", median(rs, runs),
           median(wu, runs), median(tu, runs), median(mb, runs));
    return 0;
}
