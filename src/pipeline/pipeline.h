/* pipeline.h - the stages every request passes through, in order.
 *
 *   1 auth       virtual key -> key id, owner, tags            auth.c
 *   2 attribute  tags from the key, headers, body, user        attribute.c
 *  2b experiment a live experiment's arm (model, prompt, ...)  experiment.c
 *   3 guard      budgets and rate limits                       guard.c
 *   4 shape      context window, retrieval, compression, caps  shape.c, summary.c
 *   5 cache      exact / semantic answer cache                 cache.c
 *   6 route      model alias -> deployment                     route.c
 *   7 upstream   provider adapter over the pooled HTTP client  upstream.c
 *   8 record     usage, price, ledger row, metrics             record.c
 *   9 learn      live judges' grades of a sampled share,       judge.c, learn.c
 *                feedback into routing and cache (nothing yet)
 *
 * Stage 1 runs on the headers alone, before the body is parsed; stages 2-6
 * run on the canonical request. Both run synchronously on the event loop; each returns 0 to go on
 * or a nonzero status after setting r->fail, which ends the request early
 * with that error. Stage 7 is asynchronous (upstream.h). Stages 8-9 run
 * once the client has its answer. A stage never looks at the client's wire
 * format. */
#ifndef AH_PIPELINE_H
#define AH_PIPELINE_H

#include <sqlite3.h>
#include <event2/event.h>

#include "cache/embed.h"
#include "cache/store.h"
#include "config/config.h"
#include "pipeline/request.h"
#include "state/state.h"
#include "store/keys.h"
#include "store/ledger.h"
#include "store/prices.h"
#include "upstream/http.h"

#define AH_INTERNAL_SECRET_HEX 65 /* 32 bytes in hex, and the NUL */

/* State shared by every thread; immutable while serving. */
typedef struct ah_gateway {
    ah_config_t *cfg;
    ah_prices_t *prices; /* may be NULL: costs unknown */
    ah_ledger_t *ledger;
    ah_cache_t *cache;                     /* NULL: no cache configured */
    ah_embedder_t *embedder;               /* local embedder, or NULL */
    struct ah_embed_remote *remote_embed;  /* network embedder, or NULL */
    struct ah_intent **intents;            /* per cfg->cache.intent_files, or NULL */
    struct ah_balancer *balancer;          /* deployment health and choice */
    struct ah_router_rt *routers;          /* loaded router models, or NULL */
    struct ah_guard *guard;                /* budgets and rate limits, or NULL */
    struct ah_bpe *bpe_o200k, *bpe_cl100k; /* shaping's token counts, or NULL */
    struct ah_otlp *otlp;                  /* trace exporter, or NULL: tracing off */
    double trace_ratio;                    /* share of requests traced (0..1) */
    int log_prompts;                       /* the request log carries the messages */
    struct ah_experiment_rt *experiments;  /* bandit weights of live experiments, or NULL */
    /* The gateway's own credential for its loopback calls (the Batch API's
     * runner): 32 random bytes in hex, new every start (ah_gateway_open).
     * Secret: never logged, never in errors, the ledger or answers. Stage 1
     * takes it from loopback peers only (auth.c). */
    char internal_secret[AH_INTERNAL_SECRET_HEX];
} ah_gateway_t;

#define AH_KEY_CACHE_SLOTS 256

typedef struct ah_key_cache_entry {
    char hash[AH_KEY_HASH_HEX];
    ah_key_t key;
    int64_t expires_us;
} ah_key_cache_entry_t;

/* Per-thread context: one per event loop. */
typedef struct ah_worker {
    int index;
    ah_gateway_t *gw;
    struct event_base *base;
    ah_http_t *http;
    sqlite3 *db;                            /* this thread's connection, for key lookups */
    unsigned rr;                            /* round-robin counter for deployments */
    uint64_t rng;                           /* this loop's random state (balancing, jitter) */
    struct ah_embed_batcher *embed_batcher; /* this loop's calls to remote_embed, or NULL */
    struct ah_judging *judging;             /* this loop's judge calls (judge.c), or NULL */
    ah_key_cache_entry_t key_cache[AH_KEY_CACHE_SLOTS];
    struct pg_conn *pg;  /* keys in PostgreSQL: this thread's connection, or NULL */
    int64_t pg_retry_us; /* no connection attempt before (after a failure) */
    int pg_down;         /* the last attempt failed (logged once) */
} ah_worker_t;

int ah_stage_auth(ah_worker_t *w, ah_request_t *r);
int ah_stage_attribute(ah_worker_t *w, ah_request_t *r);
/* Stage 2b (experiment.c): a live experiment's arm for the request, its
 * overrides applied to the canonical body; always 0. */
int ah_stage_experiment(ah_worker_t *w, ah_request_t *r);
/* The experiments' shared state (bandit weights): made by main before the
 * workers start (with a thread that recomputes bandit weights, when an
 * experiment has a bandit policy), freed with ah_experiment_rt_free after
 * the workers stop. */
typedef struct ah_experiment_rt ah_experiment_rt_t;
ah_experiment_rt_t *ah_experiment_rt_new(const ah_config_t *cfg);
void ah_experiment_rt_free(ah_experiment_rt_t *rt);
int ah_stage_guard(ah_worker_t *w, ah_request_t *r);
int ah_stage_shape(ah_worker_t *w, ah_request_t *r);
int ah_stage_cache(ah_worker_t *w, ah_request_t *r);
int ah_stage_route(ah_worker_t *w, ah_request_t *r);
/* After stage 6, on a cache miss: reserve the request's worst-case cost in
 * every budget it falls in; nonzero (r->fail set: 429) when one cannot
 * cover it. With a shared state (Redis), stage 3 and this one leave
 * r->guard_pending instead of holding the loop for the counters. */
int ah_stage_guard_reserve(ah_worker_t *w, ah_request_t *r);
/* What r->guard_pending waits for (0: nothing). */
#define AH_GUARD_WAIT_LIMITS 1  /* stage 3's: rate limits, spent budgets */
#define AH_GUARD_WAIT_RESERVE 2 /* the reservation's */
typedef struct ah_guard_plan ah_guard_plan_t;
/* r->guard_pending is set: ask for its counters from w's loop. 1 when
 * asked: done(arg) follows from the loop unless *out is cancelled
 * (ah_stage_guard_cancel); 0 when answered already. Then, either way,
 * ah_stage_guard_counted. */
int ah_stage_guard_count(ah_worker_t *w, ah_request_t *r, ah_state_done_fn done, void *arg,
                         ah_state_call_t **out);
/* The client left while the counters were asked for (c NULL: nothing):
 * what they took is given back. */
void ah_stage_guard_cancel(ah_worker_t *w, ah_state_call_t *c);
/* The counters are in: the rest of stage 3 (go on with
 * ah_pipeline_after_guard) or of the reservation (go upstream); nonzero
 * (r->fail set) when refused. */
int ah_stage_guard_counted(ah_worker_t *w, ah_request_t *r);
/* Replace the request's reservations by its real cost and tokens, and send
 * the budget alerts this crossed. Called by stage 8; safe to call twice. */
void ah_stage_guard_settle(ah_worker_t *w, ah_request_t *r);
/* What stage 5 left r->cache_pending for (0: nothing). */
#define AH_CACHE_WAIT_EMBED 1 /* an embedding of r->cache_embed_text */
#define AH_CACHE_WAIT_PEERS 2 /* the exact entry from the other instances (Redis) */
/* Stage 5 left AH_CACHE_WAIT_PEERS: ask the peers for r's exact key from
 * w's loop. 1 when the lookup started: done(arg, got) follows from the
 * loop unless *out is cancelled (ah_cache_fetch_cancel); 0 when it could
 * not (go on at once with ah_stage_cache_fetched(w, r, 0)). */
int ah_stage_cache_fetch(ah_worker_t *w, ah_request_t *r, ah_cache_fetched_fn done, void *arg,
                         ah_cache_fetch_t **out);
/* The rest of stage 5 once the peers answered (got: the entry is now in
 * the cache): an exact hit, else the semantic lookup, which may leave
 * r->cache_pending AH_CACHE_WAIT_EMBED. */
void ah_stage_cache_fetched(ah_worker_t *w, ah_request_t *r, int got);
/* Stage 5's semantic lookup once the last user turn's embedding is known
 * (vec NULL: none; the lookup is a miss). Called by the stage itself, or by
 * the exchange when the stage left r->cache_pending AH_CACHE_WAIT_EMBED for a
 * network embedder. */
void ah_stage_cache_embedded(ah_worker_t *w, ah_request_t *r, const float *vec, int dim);
/* After the answer: keep it in the cache when stage 5 asked for it. */
void ah_stage_cache_fill(ah_worker_t *w, ah_request_t *r);
void ah_stage_record(ah_worker_t *w, ah_request_t *r);
/* One upstream attempt of r that did not give the answer (on r->dep) as a
 * ledger row of its own, linked to r by attempt_of: status is what the
 * provider answered (0: none; then r->fail's), error why it was not kept.
 * An attempt with usage (a cascade's rejected answer) is priced. */
void ah_stage_record_attempt(ah_worker_t *w, ah_request_t *r, int status, const char *error,
                             int64_t t_attempt_us);
/* Price r from its usage (config override, else the catalogue) into
 * r->cost_usd / r->cost_known, once; leaves cost_known 0 when no price is
 * known. The answer's x-ahorro-cost and the ledger row use it. */
void ah_request_price(ah_worker_t *w, ah_request_t *r);
void ah_stage_learn(ah_worker_t *w, ah_request_t *r);

/* Stage 1, before the body is even parsed: an unauthenticated caller learns
 * nothing about what it sent. 0 when the caller may proceed. */
int ah_pipeline_admit(ah_worker_t *w, ah_request_t *r);
/* Stages 2-6 in order, on the parsed request; 0 when it should go upstream
 * (after r->guard_pending's counters, when set: ah_stage_guard_count),
 * or, with r->cache_hit set, be answered from the cache, or, with
 * r->cache_pending set, wait for the peers' exact entry (AH_CACHE_WAIT_PEERS:
 * ah_stage_cache_fetch, ah_stage_cache_fetched) or an embedding
 * (AH_CACHE_WAIT_EMBED: ah_stage_cache_embedded), then ah_pipeline_route. */
int ah_pipeline_before(ah_worker_t *w, ah_request_t *r);
/* Stages 4-6, for a request whose stage 3 waited for its counters
 * (r->guard_pending); 0 as for ah_pipeline_before. */
int ah_pipeline_after_guard(ah_worker_t *w, ah_request_t *r);
/* Stages 5-6, for a request that waited for its summary (r->shape_pending
 * was set by stage 4); 0 as for ah_pipeline_before. */
int ah_pipeline_after_shape(ah_worker_t *w, ah_request_t *r);

/* Stage 4's summary of the turns it took out (summary.c). */
typedef struct ah_summary ah_summary_t;
/* Called once the summary is in r->body (or, failed, left out). */
typedef void (*ah_summary_done_fn)(void *ctx, ah_request_t *r);
/* Summarize r->summarized with the alias summarizer: 0 when done at once
 * (a cached summary, or a call that could not start: r goes on without);
 * 1 when a call was started, and done(ctx, r) follows unless cancelled.
 * *out is the call (cancel it with ah_summary_cancel). */
int ah_summary_start(ah_worker_t *w, ah_request_t *r, const char *summarizer, long max_tokens,
                     ah_summary_done_fn done, void *ctx, ah_summary_t **out);
/* Abort a summary call (the client left); done is not called. */
void ah_summary_cancel(ah_summary_t *s);
/* Forget every cached summary (at exit). */
void ah_summary_cache_clear(void);

/* Stage 9's live judges (judge.c; docs/experiments.md). The draw, right
 * after stage 2 (before an experiment's arm replaces the model): marks r
 * (r->judge) when an ahorro.judging entry takes it and its sample draws
 * it, so that upstream keeps the answer. */
void ah_stage_judge_sample(ah_worker_t *w, ah_request_t *r);
/* After the answer reached the client: a marked request that succeeded
 * (200, not from the cache) is graded by the entry's judge, asynchronously;
 * never delays r, and keeps nothing of it. */
void ah_stage_judge(ah_worker_t *w, ah_request_t *r);
/* The worker stops (after its loop ended, before its HTTP client is
 * freed): cancel its judge calls in flight, each a failed judgment, and
 * release the judgments writer (the last worker drains and closes it). */
void ah_judge_worker_stop(ah_worker_t *w);

/* Stage 6 alone, for a request that waited for its embedding. */
int ah_pipeline_route(ah_worker_t *w, ah_request_t *r);
/* Stages 8-9, after the answer (or error) reached the client. */
void ah_pipeline_after(ah_worker_t *w, ah_request_t *r);

/* Free the worker's key cache. */
void ah_worker_clear_key_cache(ah_worker_t *w);
/* Where this thread reads and writes virtual keys: its SQLite connection,
 * or, with a PostgreSQL ledger, its PostgreSQL connection (opened on first
 * use; after a failure, tried again at most once a second). */
ah_dbh_t ah_worker_dbh(ah_worker_t *w);
/* Close the worker's PostgreSQL connection, if any. */
void ah_worker_close_pg(ah_worker_t *w);

#endif
