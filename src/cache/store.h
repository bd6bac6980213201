/* store.h - the in-process answer cache: exact entries and their vectors.
 *
 * Entries are canonical answers (answer.h) under a SHA-256 key. They are
 * bounded in count and bytes, evicted least-recently-used first, and expire
 * at their TTL. An entry of the semantic cache also carries the embedding of
 * its last user turn and lives in the vector index of its scope (tenant,
 * namespace, system prompt and model: answer.h's key with the last user
 * turn left out), so that lookups never cross tenants: each scope is its
 * own index.
 *
 * Entries are shared between threads by reference count: a lookup returns
 * a reference the caller releases with ah_cache_entry_release; the entry's
 * fields never change after it is inserted.
 *
 * Thread safety: every function may be called from any thread (one mutex
 * for the tables; the vector indexes have their own locks and are searched
 * outside it). */
#ifndef AH_CACHE_STORE_H
#define AH_CACHE_STORE_H

#include <sqlite3.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/answer.h"
#include "core/error.h"

typedef struct ah_cache ah_cache_t;

/* What a rescore callback worked out from an entry's prompt, kept with the
 * entry so that a prompt met as a candidate again is not worked out again:
 * `of` names what computed it (a labelled-history model, cache/intent.h),
 * NULL while nothing is kept. Read and written under the store's lock. */
typedef struct ah_cache_memo {
    const void *of;
    int label;
    float conf;
} ah_cache_memo_t;

typedef struct ah_cache_entry {
    atomic_int refs;
    uint8_t key[AH_CACHE_KEY_BYTES];
    uint64_t id;  /* unique, for the vector index */
    char *tenant; /* owner of the virtual key ("" for none) */
    char *ns;     /* namespace ("" for none) */
    char *model;  /* requested model (the route) */
    char *answer; /* canonical chat.completion, JSON text */
    size_t answer_len;
    double cost_usd; /* what the answer cost when it was made: what a hit saves */
    int64_t created_ms, expires_ms;
    /* semantic entries: scope key and unit vector (NULL for exact-only) */
    int semantic;
    uint8_t scope[AH_CACHE_KEY_BYTES];
    float *vec;
    int dim;
    char *prompt; /* the last user turn that was embedded (for the re-ranking check) */
    size_t bytes; /* memory charged to the entry */
    /* adapted by feedback, under the store's lock */
    float min_sim;        /* least similarity of a semantic hit on this entry (0: the route's) */
    int wrong_reports;    /* semantic hits reported wrong */
    ah_cache_memo_t memo; /* the rescore callback's, under the store's lock */
    /* owned by the store, under its lock */
    struct ah_cache_entry *hnext, *inext, *lru_prev, *lru_next;
} ah_cache_entry_t;

/* What a new entry holds. Strings are copied. */
typedef struct ah_cache_put {
    const uint8_t *key;
    const char *tenant, *ns, *model;
    const char *answer;
    size_t answer_len;
    double cost_usd;
    int64_t now_ms, ttl_ms;
    const uint8_t *scope; /* NULL: exact only */
    const float *vec;
    int dim;
    const char *prompt; /* the embedded text, or NULL */
} ah_cache_put_t;

typedef struct ah_cache_stats {
    uint64_t entries, bytes, hits_exact, hits_semantic, misses, stores, evictions, expirations,
        false_hits, purged;
} ah_cache_stats_t;

/* An empty cache bounded to max_entries and max_bytes. Free with
 * ah_cache_free. */
ah_cache_t *ah_cache_new(size_t max_entries, size_t max_bytes);
void ah_cache_free(ah_cache_t *c);

/* The live entry under key younger than max_age_ms (< 0: any age), with a
 * reference for the caller, or NULL. Counts the hit or the miss. */
ah_cache_entry_t *ah_cache_get(ah_cache_t *c, const uint8_t *key, int64_t now_ms,
                               int64_t max_age_ms);
/* A second look at a candidate: its similarity after comparing the query's
 * text with the entry's prompt (at most cosine), or < 0 to refuse it. memo is
 * the entry's, the callback's to keep what it learnt of the prompt. Called
 * under the store's lock. */
typedef float (*ah_cache_rescore_fn)(void *ctx, float cosine, const char *query, const char *prompt,
                                     ah_cache_memo_t *memo);

/* The most similar live entry of scope at or above min_sim (and at or above
 * the entry's own threshold), with a reference, or NULL; *sim gets its
 * similarity. With rescore, the nearest candidates are compared by their
 * rescored similarity instead of the cosine; an entry stored without its
 * prompt is then never served. */
ah_cache_entry_t *ah_cache_get_similar(ah_cache_t *c, const uint8_t *scope, const float *vec,
                                       int dim, float min_sim, int64_t now_ms, int64_t max_age_ms,
                                       ah_cache_rescore_fn rescore, void *rescore_ctx,
                                       const char *query, float *sim);
/* ah_cache_get without asking the peers: the live entry under key younger
 * than max_age_ms, with a reference, or NULL (counts a hit, never a miss).
 * When ask is not NULL, *ask is 1 when no live entry is here and the peers
 * can be asked asynchronously (ah_cache_fetch_start). */
ah_cache_entry_t *ah_cache_get_local(ah_cache_t *c, const uint8_t *key, int64_t now_ms,
                                     int64_t max_age_ms, int *ask);

/* An asynchronous lookup in the peers (shared.c: a GET on the calling
 * loop's own Redis connection). */
typedef struct ah_cache_fetch ah_cache_fetch_t;
/* A lookup ended: got is 1 when the entry was inserted here (look it up
 * with ah_cache_get_local), 0 for a miss, an error or a timeout. */
typedef void (*ah_cache_fetched_fn)(void *arg, int got);
struct event_base;

/* Ask the peers for key from the loop of base, which must be the calling
 * thread's: done(arg, got) follows from that loop, never from within this
 * call, unless the lookup is cancelled. NULL when none could start (no
 * peers, Redis down, too many in flight): a miss, and done never fires. */
ah_cache_fetch_t *ah_cache_fetch_start(ah_cache_t *c, struct event_base *base, const uint8_t *key,
                                       int64_t now_ms, ah_cache_fetched_fn done, void *arg);
/* The caller of a lookup in flight goes away: done will not fire (what the
 * lookup owns is freed when its reply or timeout comes). NULL is ignored. */
void ah_cache_fetch_cancel(ah_cache_t *c, ah_cache_fetch_t *f);

/* Count a miss of a lookup that found nothing (exact and semantic both),
 * for a tenant and route. */
void ah_cache_count_miss(ah_cache_t *c, const char *tenant, const char *model);
/* Insert (or replace) an entry; evicts as needed. */
void ah_cache_insert(ah_cache_t *c, const ah_cache_put_t *p);
void ah_cache_entry_release(ah_cache_entry_t *e);

/* A semantic hit reported wrong raises its entry's own threshold just above
 * the hit's similarity (vCache's idea: the answer fits its own question,
 * not one that far from it) until AH_CACHE_WRONG_REPORTS_MAX reports, then
 * removes it; an exact hit reported wrong (sim 0) removes the entry. */
#define AH_CACHE_WRONG_REPORTS_MAX 3
#define AH_CACHE_SIM_STEP 0.0001f

typedef enum { AH_CACHE_GONE, AH_CACHE_RAISED, AH_CACHE_REMOVED } ah_cache_verdict_t;

/* Feedback: the hit on the entry under key, at similarity sim (0: exact),
 * was wrong. Counts a false hit; says what became of the entry. */
ah_cache_verdict_t ah_cache_mark_wrong(ah_cache_t *c, const uint8_t *key, float sim);
/* Remove every entry matching all given filters (NULL / <= 0: any):
 * tenant, namespace, model, created before before_ms. Returns how many. */
size_t ah_cache_purge(ah_cache_t *c, const char *tenant, const char *ns, const char *model,
                      int64_t before_ms);
/* Remove the entry under key, if any (another instance's removal, applied
 * here; the peers are not told). */
void ah_cache_remove(ah_cache_t *c, const uint8_t *key);
void ah_cache_stats(ah_cache_t *c, ah_cache_stats_t *out);
/* Per tenant and route: a JSON array of {tenant, model, entries,
 * semantic_entries, bytes, hits_exact, hits_semantic, misses, false_hits}
 * (new reference). At most 1,024 tenant and route pairs are counted apart;
 * the rest are counted under "(other)". */
struct json_t;
struct json_t *ah_cache_breakdown(ah_cache_t *c);

/* The other gateway instances' side of this cache (shared.h installs a
 * Redis one): told what this instance stores and removes, asked on a local
 * exact miss (synchronously, or asynchronously from an event loop). Every
 * hook is called outside the store's lock, from the thread that made the
 * call; any may be NULL. */
typedef struct ah_cache_peers {
    /* ah_cache_insert kept p. */
    void (*stored)(void *ctx, const ah_cache_put_t *p);
    /* ah_cache_get found no live entry under key: insert it into the cache
     * from the peers if they have it; 1 when it did. */
    int (*fetch)(void *ctx, const uint8_t *key, int64_t now_ms);
    /* ah_cache_fetch_start and ah_cache_fetch_cancel: fetch, asynchronously
     * on the loop of base (the calling thread's). */
    ah_cache_fetch_t *(*fetch_start)(void *ctx, struct event_base *base, const uint8_t *key,
                                     int64_t now_ms, ah_cache_fetched_fn done, void *arg);
    void (*fetch_cancel)(void *ctx, ah_cache_fetch_t *f);
    /* ah_cache_mark_wrong removed the entry under key. */
    void (*removed)(void *ctx, const uint8_t *key);
    /* ah_cache_purge ran with these filters (also when nothing matched here). */
    void (*purged)(void *ctx, const char *tenant, const char *ns, const char *model,
                   int64_t before_ms);
    /* ah_cache_free: stop using the cache and free ctx. */
    void (*detach)(void *ctx);
} ah_cache_peers_t;

/* Install the peers' hooks (ops is not copied and must outlive c; ctx is
 * handed to ops->detach by ah_cache_free). Call before the cache is shared
 * between threads. */
void ah_cache_set_peers(ah_cache_t *c, const ah_cache_peers_t *ops, void *ctx);

/* Save every live entry into the database's cache table (replacing what was
 * there) and, when index_dir is not NULL, each scope's vector index into a
 * file there; load them back at start (an index file that is missing or
 * unreadable is rebuilt from the entries' vectors). */
ah_err_t ah_cache_save(ah_cache_t *c, sqlite3 *db, int64_t now_ms, const char *index_dir);
ah_err_t ah_cache_load(ah_cache_t *c, sqlite3 *db, int64_t now_ms, const char *index_dir);

#endif
