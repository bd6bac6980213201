/* ledger.h - every request becomes one ledger row, written off the request
 * path.
 *
 * Producers (event loops) hand rows to a bounded queue; one writer thread
 * takes them in batches and commits each batch in one transaction. A full
 * queue blocks the producer (the gateway slows down; no row is dropped).
 * ah_ledger_close drains the queue completely before returning.
 *
 * The sink is a table of functions: SQLite (ledger.c) or PostgreSQL with
 * its spool (ledger_pg.c), whose journal hook makes a row durable before it
 * is queued.
 * Observers (the request log, the trace exporter) see each batch on the
 * writer thread after the sink, written or not, before the rows are freed. */
#ifndef AH_LEDGER_H
#define AH_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct ah_ledger_row {
    char *request_id;
    int64_t ts_ms;
    char *key_id, *owner, *user, *tags; /* tags: JSON object text */
    const char *api;                    /* static strings */
    const char *endpoint;
    int stream;
    char *requested_model, *served_model, *provider, *deployment;
    int64_t prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens;
    const char *usage_source; /* "provider", "none" (static) */
    double cost_usd;          /* < 0: unknown */
    double latency_ms;
    double ttft_ms; /* < 0: none */
    int64_t overhead_us;
    int status;
    char *error;
    const char *cache;             /* "exact", "semantic", "miss", "stored" or NULL (static) */
    char *cache_key;               /* hex key of the entry hit or stored, or NULL */
    double saved_usd;              /* what a cache hit saved */
    double prompt_cache_saved_usd; /* provider prompt cache: reads saved minus writes' premium */
    double cache_similarity;       /* a semantic hit's similarity; <= 0: none */
    char *attempt_of;              /* a failed attempt: the request it belongs to; else NULL */
    int attempts;                  /* request: upstream attempts made; attempt: its number */
    char *route_reason;            /* why this deployment (rule, tier, fallback), or NULL */
    double baseline_usd;           /* the same usage on the baseline model; < 0: unknown */
    double saved_routing_usd;      /* baseline_usd - cost_usd when routed elsewhere */
    char *shape;                   /* what shaping did ("lossless,sliding_window"), or NULL */
    int64_t shape_tokens_saved;    /* prompt tokens shaping removed */
    double saved_shaping_usd;      /* those tokens at the served model's input price */
    char *prefix_hash;             /* hex hash of the static prefix, or NULL */
    int64_t prefix_tokens;         /* its tokens (estimated) */
    /* for the sink only, not stored: the spool segment the row was
     * journaled in (ledger_pg.c), or -1 */
    int64_t journal_seg;
    /* for observers only, not stored: */
    struct ah_trace *trace; /* the request's trace when tracing sampled it, or NULL */
    char *prompt;           /* the messages as JSON, when prompt logging is on, or NULL */
} ah_ledger_row_t;

/* Called on the writer thread with each batch; rows are read-only and die
 * after the call. Must not block for long: the queue fills behind it. */
typedef void (*ah_ledger_observer_fn)(void *ctx, ah_ledger_row_t *const *rows, int n);
#define AH_LEDGER_MAX_OBSERVERS 4

/* What a sink reports of its backend beyond the writer's counts (the
 * PostgreSQL sink: its connection and its spool). */
typedef struct ah_ledger_sink_stats {
    int up;                  /* the last attempt to reach the backend succeeded */
    uint64_t spool_bytes;    /* the spool's size on disk */
    uint64_t spool_segments; /* its segment files, the one being appended included */
    uint64_t replayed;       /* rows sent from the spool (some may have been in already) */
    uint64_t dropped;        /* rows the backend refused for their data */
    uint64_t unspooled;      /* rows not journaled: the spool was full or unwritable */
} ah_ledger_sink_stats_t;

typedef struct ah_ledger_sink {
    const char *name;
    /* Write n rows in one transaction. */
    ah_err_t (*write)(void *ctx, ah_ledger_row_t **rows, int n);
    void (*close)(void *ctx);
    /* Optional: make row durable before it is queued (the producer's thread,
     * under the queue's lock, so journal order is queue order). */
    void (*journal)(void *ctx, ah_ledger_row_t *row);
    /* Optional: the backend's state, from any thread (the sink locks what it
     * reads); *out is zeroed before. */
    void (*stats)(void *ctx, ah_ledger_sink_stats_t *out);
} ah_ledger_sink_t;

/* The ledger's health, for /metrics and /health. */
typedef struct ah_ledger_health {
    const char *backend; /* the sink's name: "sqlite", "postgres" (static) */
    uint64_t written;    /* rows the sink took (with PostgreSQL away: journaled) */
    uint64_t failed;     /* rows lost after the writer's retries */
    uint64_t queued;     /* rows appended and not yet written or failed */
    int has_sink_stats;  /* the sink reports the fields of sink (PostgreSQL) */
    int up;              /* sink.up when it has one; else the last batch was written */
    ah_ledger_sink_stats_t sink;
} ah_ledger_health_t;

/* The stored columns, in the order of the SQL lists ("user" quoted: a
 * reserved word in PostgreSQL). */
#define AH_LEDGER_COLUMNS 40
extern const char ah_ledger_columns[];

typedef struct ah_ledger ah_ledger_t;

/* Start the writer thread over a SQLite database at path. Close (and free)
 * with ah_ledger_close. */
ah_err_t ah_ledger_open_sqlite(const char *path, ah_ledger_t **out);
/* Start the writer thread over PostgreSQL (cfg->url), with rows journaled
 * to a spool directory (cfg->spool, else default_spool) before they are
 * queued: a killed gateway or an unreachable database loses none
 * (ledger_pg.c, docs/postgres.md). Connects and migrates first; AH_E_DB
 * with the reason in err when it cannot. */
struct ah_ledger_config;
ah_err_t ah_ledger_open_postgres(const struct ah_ledger_config *cfg, const char *default_spool,
                                 ah_ledger_t **out, char *err, size_t errlen);
/* Start the writer thread over any sink (takes sink_ctx; the sink's close
 * frees it, also on failure). */
ah_err_t ah_ledger_open_sink(const ah_ledger_sink_t *sink, void *sink_ctx, ah_ledger_t **out);
/* Add an observer before traffic starts (not thread-safe against the
 * writer's batches). AH_E_TOOBIG past AH_LEDGER_MAX_OBSERVERS. */
ah_err_t ah_ledger_observe(ah_ledger_t *l, ah_ledger_observer_fn fn, void *ctx);
/* Queue a row; the ledger takes ownership (freed after it is written).
 * Blocks while the queue is full. Thread-safe. */
void ah_ledger_append(ah_ledger_t *l, ah_ledger_row_t *row);
/* Drain every queued row, stop the writer, free everything. */
void ah_ledger_close(ah_ledger_t *l);
/* Rows written so far and rows that failed to be written. */
void ah_ledger_stats(ah_ledger_t *l, uint64_t *written, uint64_t *failed);
/* The writer's counts and the sink's state into *out. Thread-safe. */
void ah_ledger_health(ah_ledger_t *l, ah_ledger_health_t *out);
/* Free a row that was never appended. */
void ah_ledger_row_free(ah_ledger_row_t *row);

#endif
