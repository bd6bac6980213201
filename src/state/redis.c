/* redis.c - the Redis state backend: the counters of budgets and rate
 * limits in one Redis that every gateway instance shares (docs/state.md).
 *
 * The conditional add is one Lua script, run atomically by Redis: read,
 * compare against the limit, INCRBY, and set the expiry, with no other
 * client in between. It is sent by its SHA1 (EVALSHA) and in full (EVAL)
 * only when Redis does not know it yet (NOSCRIPT: a new or restarted
 * server).
 *
 * add_if is synchronous on the calling event-loop thread: a loopback round
 * trip costs tens of microseconds (docs/state.md has the figure). Each call
 * takes a connection from the pool of redis_conn.h and gives it back, so
 * that the loops never share a connection and the pool holds at most about
 * one per loop. add_later (a settlement: nobody waits for its answer) is
 * queued for the pipelined writer of redis_writer.h, whose thread sends the
 * queued adds in batches, one round trip each.
 *
 * A settlement still queued when an add_if is refused may be what refused
 * it (a reservation given back, not yet in Redis): a refused add_if
 * therefore waits for the writer to send what was queued before it, then
 * asks again, once. So a process never refuses a request for want of its
 * own settlements; other instances' in flight are as they always were.
 *
 * When Redis cannot be reached (connect or command fails, or times out):
 * the call degrades as configured (open: as if added; closed: refused;
 * *value -1 either way), the outage is logged once, and for the next second
 * no call tries Redis; then one call probes it (the others keep degrading),
 * so that a dead Redis costs one timeout a second, not one per request
 * (redis_conn.h). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "state/redis_conn.h"
#include "state/redis_writer.h"
#include "state/state.h"

#define REDIS_MAX_KEY 1024
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
    ah_redis_pool_t *pool;
    char prefix[AH_STATE_MAX_PREFIX + 1];
    ah_redis_writer_t *writer; /* add_later */
    int fail_open;
    int flush_ms; /* how long a refused add_if waits for the writer */
    char sha[2 * SHA_DIGEST_LENGTH + 1];
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

static int degrade(redis_t *r, int64_t *value)
{
    ah_redis_pool_went_without(r->pool);
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

/* The script's arguments: the key with its prefix (0, or -1 when it does
 * not fit), delta, limit ("-": none), expiry (0: leave). */
static int script_args(const redis_t *r, const char *key, int64_t delta, int64_t limit,
                       int64_t expires_ms, char k[REDIS_MAX_KEY], char d[24], char l[24],
                       char e[24])
{
    if ((size_t)snprintf(k, REDIS_MAX_KEY, "%s%s", r->prefix, key) >= REDIS_MAX_KEY)
        return -1;
    snprintf(d, 24, "%" PRId64, delta);
    if (limit == AH_STATE_NO_LIMIT)
        snprintf(l, 24, "-");
    else
        snprintf(l, 24, "%" PRId64, limit);
    snprintf(e, 24, "%" PRId64, expires_ms > 0 ? expires_ms : 0);
    return 0;
}

static int add_once(redis_t *r, const char *key, int64_t delta, int64_t limit, int64_t expires_ms,
                    int64_t *value)
{
    char k[REDIS_MAX_KEY], d[24], l[24], e[24], why[256] = "";
    int added = 0;
    redisReply *rep = NULL;
    if (script_args(r, key, delta, limit, expires_ms, k, d, l, e)) {
        if (value) /* as the local backend refuses when it is full */
            *value = -1;
        return 0;
    }
    if (!ah_redis_pool_may_try(r->pool))
        return degrade(r, value); /* in an outage, and another call probes */
    int pooled;
    redisContext *c = ah_redis_pool_get(r->pool, &pooled, why, sizeof why);
    if (!c)
        goto down;
    /* Retried on a new connection only when a pooled one had been closed by
     * the server (nothing was run); a timeout is not: the script may have
     * run. */
    while (!(rep = call_script(r, c, k, d, l, e)))
        if (!(c = ah_redis_pool_retry(r->pool, c, &pooled, why, sizeof why)))
            goto down;
    ah_redis_pool_put(r->pool, c);
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
    ah_redis_pool_answered(r->pool);
    return added;
down:
    if (rep)
        freeReplyObject(rep);
    ah_redis_pool_failed(r->pool, why);
    return degrade(r, value);
}

static int redis_add_if(ah_state_t *s, const char *key, int64_t delta, int64_t limit,
                        int64_t expires_ms, int64_t *value)
{
    redis_t *r = (redis_t *)s;
    int64_t v;
    int added = add_once(r, key, delta, limit, expires_ms, &v);
    /* Refused, perhaps for a reservation of ours given back but still
     * queued: once it is in Redis, ask again. */
    if (!added && v >= 0 && delta > 0 && ah_redis_writer_flush(r->writer, r->flush_ms))
        added = add_once(r, key, delta, limit, expires_ms, &v);
    if (value)
        *value = v;
    return added;
}

static int redis_add_later(ah_state_t *s, const char *key, int64_t delta, int64_t expires_ms,
                           int64_t *value)
{
    redis_t *r = (redis_t *)s;
    char k[REDIS_MAX_KEY], d[24], l[24], e[24];
    if (!script_args(r, key, delta, AH_STATE_NO_LIMIT, expires_ms, k, d, l, e)) {
        const char *argv[] = {"EVALSHA", r->sha, "1", k, d, l, e};
        size_t len[7];
        for (int i = 0; i < 7; i++)
            len[i] = strlen(argv[i]);
        ah_redis_cmd_t cmd = {7, argv, len, SCRIPT};
        if (ah_redis_writer_send(r->writer, &cmd, 1) == 0)
            return 0;
    }
    add_once(r, key, delta, AH_STATE_NO_LIMIT, expires_ms, value); /* no room: now */
    return 1;
}

static void redis_free(ah_state_t *s)
{
    redis_t *r = (redis_t *)s;
    ah_redis_writer_free(r->writer); /* sends what is queued */
    ah_redis_pool_free(r->pool);
    ah_free(r);
}

static const ah_state_ops_t redis_ops = {"redis", redis_add_if, redis_add_later, redis_free};

ah_state_t *ah_state_redis_new(const ah_state_config_t *cfg, char *err, size_t errlen)
{
    const char *meanwhile =
        cfg->fail_open ? "admitting requests that count against budgets and rate limits until "
                         "it is back (state.on_failure: open)"
                       : "refusing requests that count against budgets and rate limits until "
                         "it is back (state.on_failure: closed)";
    ah_redis_pool_t *pool = ah_redis_pool_new(cfg, "state", meanwhile);
    if (!pool) {
        snprintf(err, errlen, "state: '%s' is not redis://[:PASSWORD@]HOST[:PORT][/DB]",
                 cfg->url ? cfg->url : "");
        return NULL;
    }
    redis_t *r = ah_calloc(1, sizeof *r);
    r->base.ops = &redis_ops;
    r->base.shared = 1;
    r->pool = pool;
    snprintf(r->prefix, sizeof r->prefix, "%s",
             cfg->prefix ? cfg->prefix : AH_STATE_DEFAULT_PREFIX);
    r->fail_open = cfg->fail_open;
    int ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    r->flush_ms = 2 * ms; /* a batch's round trip, and the wait for the one before */
    r->writer = ah_redis_writer_new(pool, "state");
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)SCRIPT, sizeof SCRIPT - 1, md);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
    return &r->base;
}
