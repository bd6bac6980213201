/* redis_conn.h - connections to the Redis of ahorro.state, for the modules
 * that talk to it: the counters (state/redis.c) and the answer caches
 * shared between instances (cache/shared.c); docs/state.md.
 *
 * A pool keeps idle connections for calls that are synchronous on the
 * calling thread: a caller takes one (or a new one is opened, with the
 * connect and command timeouts, authenticated and on the configured
 * database) and gives it back, so that threads never share a connection.
 *
 * It also keeps the outage rule both modules follow: after a failure no
 * caller tries Redis for a second; then one caller probes it while the
 * others go without. The outage is logged once when it starts and once when
 * it ends, with the number of calls that went without Redis, and counted for
 * /metrics and /health: every pool is registered by its name while it lives
 * (ah_redis_pools_stats). Every function is thread-safe. */
#ifndef AH_STATE_REDIS_CONN_H
#define AH_STATE_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "config/state_config.h"

typedef struct ah_redis_pool ah_redis_pool_t;

/* A pool's name as reported (longer names are cut). */
#define AH_REDIS_POOL_NAME_MAX 32
/* Pools registered for ah_redis_pools_stats; further ones work but are not
 * reported. */
#define AH_REDIS_MAX_POOLS 32

/* A pool's health since it was made. */
typedef struct ah_redis_pool_stats {
    char name[AH_REDIS_POOL_NAME_MAX]; /* "state", "cache", "balance" */
    int up;                            /* 0 while in an outage */
    uint64_t outages;                  /* outages started */
    uint64_t calls_without;            /* calls that went without Redis, every outage */
} ah_redis_pool_stats_t;

/* A pool for the Redis of cfg->url (nothing is connected yet). name starts
 * its log lines ("state"); meanwhile ends the line that says an outage
 * started, telling what happens until it is back. Both are copied. NULL
 * when the URL is malformed. Free with ah_redis_pool_free. */
ah_redis_pool_t *ah_redis_pool_new(const ah_state_config_t *cfg, const char *name,
                                   const char *meanwhile);

/* Close the idle connections and free p (every connection taken must be
 * back or closed). */
void ah_redis_pool_free(ah_redis_pool_t *p);

/* "HOST:PORT", for logs; p owns it. */
const char *ah_redis_pool_addr(const ah_redis_pool_t *p);

/* Whether to try Redis now: always while it is up; while it is down, one
 * caller a second (the probe). */
int ah_redis_pool_may_try(ah_redis_pool_t *p);

/* A connection for a call: an idle one (*pooled 1) or a new one (*pooled
 * 0), or NULL with the reason in why when none can be opened. Give it back
 * with ah_redis_pool_put, or pass it to ah_redis_pool_retry when the call
 * got no reply. */
redisContext *ah_redis_pool_get(ah_redis_pool_t *p, int *pooled, char *why, size_t n);

/* Give back c after a call that it carried (its replies, errors included,
 * all read); p owns it again. */
void ah_redis_pool_put(ah_redis_pool_t *p, redisContext *c);

/* c got no reply to a call and is closed here. When it had been idle
 * (*pooled) and the server had closed it meanwhile (a Redis restart), the
 * other idle connections are closed too and a new connection is returned
 * to retry the call on, once (*pooled becomes 0): the call may then run
 * twice. Otherwise (a timeout among them: the call may have run) NULL, with
 * what failed in why. */
redisContext *ah_redis_pool_retry(ah_redis_pool_t *p, redisContext *c, int *pooled, char *why,
                                  size_t n);

/* A new connection of the caller's own, outside the pool, whose commands
 * time out after timeout_ms (for a thread's blocking reads). NULL with the
 * reason in why. Close it with redisFree. */
redisContext *ah_redis_pool_open(ah_redis_pool_t *p, int timeout_ms, char *why, size_t n);

/* Redis failed (why): an outage starts or goes on. No caller tries it for a
 * second, the idle connections are closed, and the start is logged. */
void ah_redis_pool_failed(ah_redis_pool_t *p, const char *why);

/* Redis answered: an outage, if any, ends (logged). */
void ah_redis_pool_answered(ah_redis_pool_t *p);

/* A call went without Redis (counted for the line that ends the outage). */
void ah_redis_pool_went_without(ah_redis_pool_t *p);

/* p's health into *out. */
void ah_redis_pool_stats(ah_redis_pool_t *p, ah_redis_pool_stats_t *out);

/* The health of every live pool (at most max, in the order they were made)
 * into out; returns how many. Copies: nothing points into a pool. */
int ah_redis_pools_stats(ah_redis_pool_stats_t *out, int max);

#endif
