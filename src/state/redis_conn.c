/* redis_conn.c - the pool of Redis connections and the outage rule that the
 * counters and the shared answer caches have in common (redis_conn.h).
 *
 * Idle connections sit in a small array under a mutex: a caller holds the
 * lock only to take or give one, never during a round trip. The outage
 * state is atomics, so that callers that go without Redis take no lock.
 *
 * Every pool is listed in a small registry while it lives, so that /metrics
 * and /health can report each one's outages without the modules that own
 * the pools passing them around. A reader holds the registry's lock while it
 * reads a pool's atomics, and a pool leaves the registry (under that lock)
 * before it is freed. */
#include "state/redis_conn.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "state/state.h"

/* Idle connections kept; more are closed when given back. */
#define REDIS_MAX_IDLE 64
/* After a failure, no caller tries Redis for this long. */
#define REDIS_BACKOFF_MS 1000
#define REDIS_MAX_HOST 256
#define REDIS_MAX_PASSWORD 256
#define REDIS_MAX_ADDR (REDIS_MAX_HOST + 8) /* "HOST:PORT" */

struct ah_redis_pool {
    char host[REDIS_MAX_HOST], password[REDIS_MAX_PASSWORD], addr[REDIS_MAX_ADDR];
    char *name, *meanwhile; /* of the log lines */
    int port, db, timeout_ms;
    pthread_mutex_t lock; /* idle, nidle */
    redisContext *idle[REDIS_MAX_IDLE];
    int nidle;
    _Atomic int64_t retry_at_us; /* while down: no attempt before this (monotonic) */
    atomic_int down;
    atomic_uint_fast64_t went_without; /* calls answered without Redis in this outage */
    atomic_uint_fast64_t outages, went_without_total; /* since the pool was made */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static ah_redis_pool_t *registry[AH_REDIS_MAX_POOLS];
static int nregistry;

static void registry_add(ah_redis_pool_t *p)
{
    pthread_mutex_lock(&registry_lock);
    if (nregistry < AH_REDIS_MAX_POOLS)
        registry[nregistry++] = p;
    pthread_mutex_unlock(&registry_lock);
}

static void registry_remove(ah_redis_pool_t *p)
{
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < nregistry; i++) {
        if (registry[i] == p) {
            memmove(&registry[i], &registry[i + 1], (size_t)(nregistry - i - 1) * sizeof *registry);
            nregistry--;
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

ah_redis_pool_t *ah_redis_pool_new(const ah_state_config_t *cfg, const char *name,
                                   const char *meanwhile)
{
    ah_redis_pool_t *p = ah_calloc(1, sizeof *p);
    if (ah_state_redis_parse_url(cfg->url, p->host, sizeof p->host, &p->port, &p->db, p->password,
                                 sizeof p->password)) {
        ah_free(p);
        return NULL;
    }
    snprintf(p->addr, sizeof p->addr, "%s:%d", p->host, p->port);
    p->name = ah_strdup(name);
    p->meanwhile = ah_strdup(meanwhile);
    p->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    pthread_mutex_init(&p->lock, NULL);
    registry_add(p);
    return p;
}

/* Close every idle connection: after a failure they are likely dead too. */
static void flush(ah_redis_pool_t *p)
{
    redisContext *all[REDIS_MAX_IDLE];
    pthread_mutex_lock(&p->lock);
    int n = p->nidle;
    memcpy(all, p->idle, (size_t)n * sizeof *all);
    p->nidle = 0;
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < n; i++)
        redisFree(all[i]);
}

void ah_redis_pool_free(ah_redis_pool_t *p)
{
    if (!p)
        return;
    registry_remove(p);
    flush(p);
    pthread_mutex_destroy(&p->lock);
    ah_free(p->name);
    ah_free(p->meanwhile);
    ah_free(p);
}

const char *ah_redis_pool_addr(const ah_redis_pool_t *p)
{
    return p->addr;
}

static struct timeval timeval_of(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

redisContext *ah_redis_pool_open(ah_redis_pool_t *p, int timeout_ms, char *why, size_t n)
{
    redisContext *c = redisConnectWithTimeout(p->host, p->port, timeval_of(p->timeout_ms));
    redisReply *rep = NULL;
    if (!c || c->err) {
        snprintf(why, n, "connect: %s", c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, timeval_of(timeout_ms)) != REDIS_OK) {
        snprintf(why, n, "cannot set the command timeout");
        goto fail;
    }
    if (p->password[0]) {
        rep = redisCommand(c, "AUTH %s", p->password);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, n, "AUTH: %s", rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (p->db) {
        rep = redisCommand(c, "SELECT %d", p->db);
        if (!rep || rep->type == REDIS_REPLY_ERROR) {
            snprintf(why, n, "SELECT %d: %s", p->db, rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
    }
    return c;
fail:
    if (rep)
        freeReplyObject(rep);
    if (c)
        redisFree(c);
    return NULL;
}

redisContext *ah_redis_pool_get(ah_redis_pool_t *p, int *pooled, char *why, size_t n)
{
    redisContext *c = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->nidle)
        c = p->idle[--p->nidle];
    pthread_mutex_unlock(&p->lock);
    *pooled = c != NULL;
    return c ? c : ah_redis_pool_open(p, p->timeout_ms, why, n);
}

void ah_redis_pool_put(ah_redis_pool_t *p, redisContext *c)
{
    pthread_mutex_lock(&p->lock);
    if (p->nidle < REDIS_MAX_IDLE) {
        p->idle[p->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&p->lock);
    if (c)
        redisFree(c);
}

redisContext *ah_redis_pool_retry(ah_redis_pool_t *p, redisContext *c, int *pooled, char *why,
                                  size_t n)
{
    /* errno is read before anything else can change it */
    int closed = c->err == REDIS_ERR_EOF || (c->err == REDIS_ERR_IO && errno != EAGAIN);
    snprintf(why, n, "%s", c->errstr[0] ? c->errstr : "I/O error");
    redisFree(c);
    if (!*pooled || !closed)
        return NULL;
    *pooled = 0;
    flush(p);
    return ah_redis_pool_open(p, p->timeout_ms, why, n);
}

int ah_redis_pool_may_try(ah_redis_pool_t *p)
{
    if (!atomic_load(&p->down))
        return 1;
    int64_t at = atomic_load(&p->retry_at_us), now = ah_now_us();
    return now >= at && atomic_compare_exchange_strong(&p->retry_at_us, &at,
                                                       now + (int64_t)REDIS_BACKOFF_MS * 1000);
}

void ah_redis_pool_failed(ah_redis_pool_t *p, const char *why)
{
    atomic_store(&p->retry_at_us, ah_now_us() + (int64_t)REDIS_BACKOFF_MS * 1000);
    flush(p);
    if (!atomic_exchange(&p->down, 1)) {
        atomic_fetch_add(&p->outages, 1);
        ah_warn("%s: Redis at %s cannot be reached (%s): %s", p->name, p->addr, why, p->meanwhile);
    }
}

void ah_redis_pool_answered(ah_redis_pool_t *p)
{
    if (atomic_load(&p->down) && atomic_exchange(&p->down, 0))
        ah_warn("%s: Redis at %s is back (%" PRIuFAST64
                " calls were answered without it during the outage)",
                p->name, p->addr, atomic_exchange(&p->went_without, 0));
}

void ah_redis_pool_went_without(ah_redis_pool_t *p)
{
    atomic_fetch_add(&p->went_without, 1);
    atomic_fetch_add(&p->went_without_total, 1);
}

void ah_redis_pool_stats(ah_redis_pool_t *p, ah_redis_pool_stats_t *out)
{
    snprintf(out->name, sizeof out->name, "%s", p->name);
    out->up = !atomic_load(&p->down);
    out->outages = atomic_load(&p->outages);
    out->calls_without = atomic_load(&p->went_without_total);
}

int ah_redis_pools_stats(ah_redis_pool_stats_t *out, int max)
{
    pthread_mutex_lock(&registry_lock);
    int n = nregistry < max ? nregistry : max;
    for (int i = 0; i < n; i++)
        ah_redis_pool_stats(registry[i], &out[i]);
    pthread_mutex_unlock(&registry_lock);
    return n;
}
