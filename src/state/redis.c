/* redis.c - the Redis state backend: the counters of budgets and rate
 * limits in one Redis that every gateway instance shares (docs/state.md).
 *
 * The conditional add is one Lua script, run atomically by Redis: read,
 * compare against the limit, INCRBY, and set the expiry, with no other
 * client in between. It is sent by its SHA1 (EVALSHA) and in full (EVAL)
 * only when Redis does not know it yet (NOSCRIPT: a new or restarted
 * server).
 *
 * Calls are synchronous on the calling event-loop thread: a loopback round
 * trip costs tens of microseconds (docs/state.md has the figure). Each call
 * takes a connection from a small mutex-guarded pool (opening one when the
 * pool is empty) and gives it back, so that the loops never share a
 * connection and the pool holds at most about one per loop.
 *
 * When Redis cannot be reached (connect or command fails, or times out):
 * the call degrades as configured (open: as if added; closed: refused;
 * *value -1 either way), the outage is logged once, and for the next
 * REDIS_BACKOFF_MS no call tries Redis; then one call probes it (the others
 * keep degrading), so that a dead Redis costs one timeout a second, not one
 * per request. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "state/state.h"

/* Idle connections kept; more are closed when given back. */
#define REDIS_MAX_IDLE 64
/* After a failure, no call tries Redis for this long. */
#define REDIS_BACKOFF_MS 1000
#define REDIS_MAX_KEY 1024
#define REDIS_MAX_HOST 256
#define REDIS_MAX_PASSWORD 256
#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 1000000

/* KEYS[1] counter; ARGV delta, limit ("-": none), expires_ms (0: leave).
 * Returns {added, value}. Numbers are Lua doubles: exact below 2^53 (nine
 * million dollars in nano-USD). PEXPIRETIME needs Redis 7; on older
 * servers the pcall fails and the expiry is always set (to the same value:
 * every caller derives a key's expiry from the key's period). */
static const char SCRIPT[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "local d = tonumber(ARGV[1])\n"
    "if not v then\n"
    "  if d == 0 then return {1, 0} end\n"
    "  v = 0\n"
    "else\n"
    "  v = tonumber(v)\n"
    "end\n"
    "if d > 0 and ARGV[2] ~= '-' and v + d > tonumber(ARGV[2]) then return {0, v} end\n"
    "if d ~= 0 then v = redis.call('INCRBY', KEYS[1], ARGV[1]) end\n"
    "local e = tonumber(ARGV[3])\n"
    "if e > 0 then\n"
    "  local t = redis.pcall('PEXPIRETIME', KEYS[1])\n"
    "  if type(t) ~= 'number' or t < e then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end\n"
    "end\n"
    "return {1, v}\n";

typedef struct redis {
    ah_state_t base;
    char host[REDIS_MAX_HOST];
    char password[REDIS_MAX_PASSWORD];
    char prefix[AH_STATE_MAX_PREFIX + 1];
    int port, db;
    int fail_open;
    struct timeval timeout;
    char sha[2 * SHA_DIGEST_LENGTH + 1];
    pthread_mutex_t lock; /* the pool */
    redisContext *idle[REDIS_MAX_IDLE];
    int nidle;
    _Atomic int64_t retry_at_us; /* while down: no attempt before this (monotonic) */
    atomic_int down;
    atomic_uint_fast64_t degraded; /* calls answered without Redis in this outage */
} redis_t;

int ah_state_redis_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db,
                             char *password, size_t passlen)
{
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof scheme - 1) != 0)
        return -1;
    const char *p = url + sizeof scheme - 1, *at = strrchr(p, '@');
    if (password && passlen)
        *password = '\0';
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon)
            return -1;
        size_t ulen = (size_t)(colon - p), plen = (size_t)(at - colon - 1);
        if (ulen && !(ulen == 7 && strncmp(p, "default", 7) == 0))
            return -1; /* ACL users other than default: not yet */
        if (password && plen >= passlen)
            return -1;
        if (password)
            snprintf(password, passlen, "%.*s", (int)plen, colon + 1);
        p = at + 1;
    }
    size_t hl = strcspn(p, ":/");
    if (hl == 0 || hl >= hostlen)
        return -1;
    snprintf(host, hostlen, "%.*s", (int)hl, p);
    p += hl;
    *port = REDIS_DEFAULT_PORT;
    *db = 0;
    char *end;
    if (*p == ':') {
        errno = 0;
        long v = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || v < 1 || v > 65535)
            return -1;
        *port = (int)v;
        p = end;
    }
    if (*p == '/' && p[1]) {
        errno = 0;
        long v = strtol(p + 1, &end, 10);
        if (errno || end == p + 1 || *end || v < 0 || v > REDIS_MAX_DB)
            return -1;
        *db = (int)v;
        p = end;
    } else if (*p == '/') {
        p++;
    }
    return *p ? -1 : 0;
}

/* A reply that is an error, or NULL when it is not. */
static const char *reply_error(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR ? rep->str : NULL;
}

/* A new connection, authenticated and on the configured database; NULL
 * with the reason in why. */
static redisContext *conn_open(redis_t *r, char *why, size_t n)
{
    redisContext *c = redisConnectWithTimeout(r->host, r->port, r->timeout);
    redisReply *rep = NULL;
    if (!c || c->err) {
        snprintf(why, n, "connect: %s", c ? c->errstr : "out of memory");
        goto fail;
    }
    if (redisSetTimeout(c, r->timeout) != REDIS_OK) {
        snprintf(why, n, "cannot set the command timeout");
        goto fail;
    }
    if (r->password[0]) {
        rep = redisCommand(c, "AUTH %s", r->password);
        if (!rep || reply_error(rep)) {
            snprintf(why, n, "AUTH: %s", rep ? rep->str : c->errstr);
            goto fail;
        }
        freeReplyObject(rep);
        rep = NULL;
    }
    if (r->db) {
        rep = redisCommand(c, "SELECT %d", r->db);
        if (!rep || reply_error(rep)) {
            snprintf(why, n, "SELECT %d: %s", r->db, rep ? rep->str : c->errstr);
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

static redisContext *pool_take(redis_t *r)
{
    redisContext *c = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->nidle)
        c = r->idle[--r->nidle];
    pthread_mutex_unlock(&r->lock);
    return c;
}

static void pool_give(redis_t *r, redisContext *c)
{
    pthread_mutex_lock(&r->lock);
    if (r->nidle < REDIS_MAX_IDLE) {
        r->idle[r->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (c)
        redisFree(c);
}

/* Close every idle connection: after a failure they are likely dead too. */
static void pool_flush(redis_t *r)
{
    redisContext *all[REDIS_MAX_IDLE];
    pthread_mutex_lock(&r->lock);
    int n = r->nidle;
    memcpy(all, r->idle, (size_t)n * sizeof *all);
    r->nidle = 0;
    pthread_mutex_unlock(&r->lock);
    for (int i = 0; i < n; i++)
        redisFree(all[i]);
}

static void outage(redis_t *r, const char *why)
{
    atomic_store(&r->retry_at_us, ah_now_us() + (int64_t)REDIS_BACKOFF_MS * 1000);
    pool_flush(r);
    if (!atomic_exchange(&r->down, 1))
        ah_warn("state: Redis at %s:%d cannot be reached (%s): %s requests that count against "
                "budgets and rate limits until it is back (state.on_failure: %s)",
                r->host, r->port, why, r->fail_open ? "admitting" : "refusing",
                r->fail_open ? "open" : "closed");
}

static int degrade(redis_t *r, int64_t *value)
{
    atomic_fetch_add(&r->degraded, 1);
    if (value)
        *value = -1;
    return r->fail_open;
}

/* One script call on c; NULL reply on I/O failure (c is then unusable). */
static redisReply *call_script(redis_t *r, redisContext *c, const char *key, const char *delta,
                               const char *limit, const char *expires)
{
    const char *argv[] = {"EVALSHA", r->sha, "1", key, delta, limit, expires};
    redisReply *rep = redisCommandArgv(c, 7, argv, NULL);
    const char *e = reply_error(rep);
    if (e && strncmp(e, "NOSCRIPT", 8) == 0) {
        freeReplyObject(rep);
        argv[0] = "EVAL";
        argv[1] = SCRIPT;
        rep = redisCommandArgv(c, 7, argv, NULL);
    }
    return rep;
}

static int redis_add_if(ah_state_t *s, const char *key, int64_t delta, int64_t limit,
                        int64_t expires_ms, int64_t *value)
{
    redis_t *r = (redis_t *)s;
    char k[REDIS_MAX_KEY], d[24], l[24], e[24], why[256] = "";
    int added = 0;
    redisReply *rep = NULL;
    if ((size_t)snprintf(k, sizeof k, "%s%s", r->prefix, key) >= sizeof k) {
        if (value) /* as the local backend refuses when it is full */
            *value = -1;
        return 0;
    }
    if (atomic_load(&r->down)) {
        /* One probe per backoff period; everyone else degrades at once. */
        int64_t at = atomic_load(&r->retry_at_us), now = ah_now_us();
        if (now < at || !atomic_compare_exchange_strong(&r->retry_at_us, &at,
                                                        now + (int64_t)REDIS_BACKOFF_MS * 1000))
            return degrade(r, value);
    }
    snprintf(d, sizeof d, "%" PRId64, delta);
    if (limit == AH_STATE_NO_LIMIT)
        snprintf(l, sizeof l, "-");
    else
        snprintf(l, sizeof l, "%" PRId64, limit);
    snprintf(e, sizeof e, "%" PRId64, expires_ms > 0 ? expires_ms : 0);
    redisContext *c = pool_take(r);
    int pooled = c != NULL;
    if (!c && !(c = conn_open(r, why, sizeof why)))
        goto down;
    rep = call_script(r, c, k, d, l, e);
    /* A pooled connection the server closed (a Redis restart while we were
     * idle): nothing was run, so one retry on a new connection is safe. A
     * timeout is not retried: the script may have run. */
    if (!rep && pooled &&
        (c->err == REDIS_ERR_EOF || (c->err == REDIS_ERR_IO && errno != EAGAIN))) {
        redisFree(c);
        pool_flush(r);
        if (!(c = conn_open(r, why, sizeof why)))
            goto down;
        rep = call_script(r, c, k, d, l, e);
    }
    if (!rep) {
        snprintf(why, sizeof why, "%s", c->errstr[0] ? c->errstr : "I/O error");
        redisFree(c);
        goto down;
    }
    pool_give(r, c);
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        /* OOM, READONLY (a replica), a script error: Redis is there but
         * cannot count; the same failure mode applies. */
        snprintf(why, sizeof why, "the script answered %s",
                 reply_error(rep) ? rep->str : "an unexpected reply");
        goto down;
    }
    added = rep->element[0]->integer != 0;
    if (value)
        *value = rep->element[1]->integer;
    freeReplyObject(rep);
    if (atomic_load(&r->down) && atomic_exchange(&r->down, 0))
        ah_warn("state: Redis at %s:%d is back (%" PRIuFAST64
                " calls were answered without it during the outage)",
                r->host, r->port, atomic_exchange(&r->degraded, 0));
    return added;
down:
    if (rep)
        freeReplyObject(rep);
    outage(r, why);
    return degrade(r, value);
}

static void redis_free(ah_state_t *s)
{
    redis_t *r = (redis_t *)s;
    pool_flush(r);
    pthread_mutex_destroy(&r->lock);
    ah_free(r);
}

static const ah_state_ops_t redis_ops = {"redis", redis_add_if, redis_free};

ah_state_t *ah_state_redis_new(const ah_state_config_t *cfg, char *err, size_t errlen)
{
    redis_t *r = ah_calloc(1, sizeof *r);
    if (ah_state_redis_parse_url(cfg->url, r->host, sizeof r->host, &r->port, &r->db, r->password,
                                 sizeof r->password)) {
        snprintf(err, errlen, "state: '%s' is not redis://[:PASSWORD@]HOST[:PORT][/DB]",
                 cfg->url ? cfg->url : "");
        ah_free(r);
        return NULL;
    }
    r->base.ops = &redis_ops;
    r->base.shared = 1;
    snprintf(r->prefix, sizeof r->prefix, "%s",
             cfg->prefix ? cfg->prefix : AH_STATE_DEFAULT_PREFIX);
    r->fail_open = cfg->fail_open;
    int ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    r->timeout.tv_sec = ms / 1000;
    r->timeout.tv_usec = (ms % 1000) * 1000;
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)SCRIPT, sizeof SCRIPT - 1, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
    pthread_mutex_init(&r->lock, NULL);
    return &r->base;
}
