/* redis.c - the Redis state backend: the counters of budgets and rate
 * limits in one Redis that every gateway instance shares (docs/state.md).
 *
 * The conditional add is plain commands, no script: INCRBY and the expiry
 * (PEXPIREAT NX and GT: set, or extended, never shortened) in one round trip, and when a positive
 * delta took the counter past its limit, a DECRBY that takes it back, and a refusal. Never over the
 * limit: each INCRBY is atomic and the one that crosses is taken back. The price is at the limit
 * only: while a crossing add is being taken back, another add that would have fit may be refused. A
 * read (delta 0) is a GET. The Lua script this replaced cost Redis 17 us of CPU a call; these
 * commands about 3 (docs/scaling.md).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "state/redis_conn.h"
#include "state/redis_loop.h"
#include "state/redis_writer.h"
#include "state/state.h"

#define REDIS_MAX_KEY 1024
#define REDIS_DEFAULT_PORT 6379
#define REDIS_MAX_DB 1000000
#define LOOP_MAX_IN_FLIGHT 1024 /* add_all calls in flight on one loop; past it, synchronous */

typedef struct redis {
    ah_state_t base;
    ah_redis_pool_t *pool;
    char prefix[AH_STATE_MAX_PREFIX + 1];
    ah_redis_writer_t *writer; /* add_later */
    ah_redis_loops_t *loops;   /* add_all */
    int fail_open;
    int flush_ms;             /* how long a refused add_if waits for the writer */
    _Atomic int plain_expiry; /* a Redis before 7: PEXPIREAT without NX/GT */
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

/* The command arguments: the key with its prefix (0, or -1 when it does
 * not fit), delta and expiry (0: leave) as text. */
static int cmd_args(const redis_t *r, const char *key, int64_t delta, int64_t expires_ms,
                    char k[REDIS_MAX_KEY], char d[24], char e[24])
{
    if ((size_t)snprintf(k, REDIS_MAX_KEY, "%s%s", r->prefix, key) >= REDIS_MAX_KEY)
        return -1;
    snprintf(d, 24, "%" PRId64, delta);
    snprintf(e, 24, "%" PRId64, expires_ms > 0 ? expires_ms : 0);
    return 0;
}

/* An integer reply's value, or a bulk string's (GET); nil is 0. -1 when the
 * reply is neither (an error: why says it). */
static int reply_int(const redisReply *rep, int64_t *v, char *why, size_t whylen)
{
    if (rep->type == REDIS_REPLY_INTEGER) {
        *v = rep->integer;
        return 0;
    }
    if (rep->type == REDIS_REPLY_NIL) {
        *v = 0;
        return 0;
    }
    char *end;
    if (rep->type == REDIS_REPLY_STRING) {
        *v = strtoll(rep->str, &end, 10);
        if (end != rep->str && !*end)
            return 0;
    }
    /* OOM, READONLY (a replica), WRONGTYPE: Redis is there but cannot
     * count; the same failure mode applies. */
    snprintf(why, whylen, "Redis answered %s", reply_error(rep) ? rep->str : "an unexpected reply");
    return -1;
}

/* The commands that set a counter's expiry to e only if that is later:
 * PEXPIREAT NX (a key without one) and GT (a later one), Redis 7; on an
 * older Redis, which refuses the options, a plain PEXPIREAT (every caller
 * derives a key's expiry from its period, so that is the same value).
 * Fills cmds[] (3 arguments each, lens[] may be NULL); returns how many. */
static int expiry_cmds(const redis_t *r, const char *k, const char *e, const char *cmds[][4],
                       size_t lens[][4])
{
    static const char *const opts[] = {"NX", "GT"};
    int n = r->plain_expiry ? 1 : 2;
    for (int i = 0; i < n; i++) {
        cmds[i][0] = "PEXPIREAT";
        cmds[i][1] = k;
        cmds[i][2] = e;
        cmds[i][3] = opts[i];
        if (lens) {
            lens[i][0] = 9;
            lens[i][1] = strlen(k);
            lens[i][2] = strlen(e);
            lens[i][3] = 2;
        }
    }
    return n;
}

/* GET, or INCRBY and the expiry in one round trip, on c. 0 with *v the
 * counter; -1 when no reply came (c is then unusable); -2 on an error
 * reply (why). */
static int count(redis_t *r, redisContext *c, const char *k, const char *d, const char *e, int read,
                 int64_t *v, char *why, size_t whylen)
{
    redisReply *rep = NULL;
    const char *exp[2][4];
    int nexp = read || !strcmp(e, "0") ? 0 : expiry_cmds(r, k, e, exp, NULL);
    if (read) {
        const char *argv[] = {"GET", k};
        if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK)
            return -1;
    } else {
        const char *incr[] = {"INCRBY", k, d};
        if (redisAppendCommandArgv(c, 3, incr, NULL) != REDIS_OK)
            return -1;
        for (int i = 0; i < nexp; i++)
            if (redisAppendCommandArgv(c, r->plain_expiry ? 3 : 4, exp[i], NULL) != REDIS_OK)
                return -1;
    }
    if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep)
        return -1;
    int rc = reply_int(rep, v, why, whylen) ? -2 : 0;
    freeReplyObject(rep);
    int refused = 0;
    for (int i = 0; i < nexp; i++) {
        if (redisGetReply(c, (void **)&rep) != REDIS_OK || !rep)
            return -1;
        refused |= rep->type == REDIS_REPLY_ERROR;
        freeReplyObject(rep);
    }
    if (refused && !r->plain_expiry) { /* a Redis before 7: plain PEXPIREAT from now on */
        r->plain_expiry = 1;
        const char *argv[] = {"PEXPIREAT", k, e};
        rep = redisCommandArgv(c, 3, argv, NULL);
        if (!rep)
            return -1;
        freeReplyObject(rep);
    }
    return rc;
}

static int add_once(redis_t *r, const char *key, int64_t delta, int64_t limit, int64_t expires_ms,
                    int64_t *value)
{
    char k[REDIS_MAX_KEY], d[24], e[24], why[256] = "";
    if (cmd_args(r, key, delta, expires_ms, k, d, e)) {
        if (value) /* as the local backend refuses when it is full */
            *value = -1;
        return 0;
    }
    if (!ah_redis_pool_may_try(r->pool))
        return degrade(r, value); /* in an outage, and another call probes */
    int pooled, rc;
    int64_t v = 0;
    redisContext *c = ah_redis_pool_get(r->pool, &pooled, why, sizeof why);
    if (!c)
        goto down;
    /* Retried on a new connection only when a pooled one had been closed by
     * the server (nothing was run); a timeout is not: the add may have
     * happened. */
    while ((rc = count(r, c, k, d, e, delta == 0, &v, why, sizeof why)) == -1)
        if (!(c = ah_redis_pool_retry(r->pool, c, &pooled, why, sizeof why)))
            goto down;
    if (rc) {
        ah_redis_pool_put(r->pool, c);
        goto down;
    }
    int added = 1;
    if (delta > 0 && limit != AH_STATE_NO_LIMIT && v > limit) {
        /* Past the limit: take it back. Should that fail, the counter stays
         * high by delta until it expires: refusing more, never admitting
         * more. */
        char back[24];
        snprintf(back, sizeof back, "%" PRId64, delta);
        const char *argv[] = {"DECRBY", k, back};
        redisReply *rep = redisCommandArgv(c, 3, argv, NULL);
        if (!rep) {
            redisFree(c);
            c = NULL;
        }
        freeReplyObject(rep);
        added = 0;
        v -= delta;
    }
    if (c)
        ah_redis_pool_put(r->pool, c);
    if (value)
        *value = v;
    ah_redis_pool_answered(r->pool);
    return added;
down:
    ah_redis_pool_failed(r->pool, why);
    return degrade(r, value);
}

static int redis_add_if(ah_state_t *s, const char *key, int64_t delta, int64_t limit,
                        int64_t expires_ms, int64_t *value)
{
    redis_t *r = (redis_t *)s;
    int64_t v;
    uint64_t mark = delta > 0 ? ah_redis_writer_finished(r->writer) : 0;
    int added = add_once(r, key, delta, limit, expires_ms, &v);
    /* Refused, perhaps for a reservation of ours given back but still
     * queued, or landing while we asked: once it is in Redis, ask again. */
    if (!added && v >= 0 && delta > 0 &&
        (ah_redis_writer_flush(r->writer, r->flush_ms) ||
         ah_redis_writer_finished(r->writer) != mark))
        added = add_once(r, key, delta, limit, expires_ms, &v);
    if (value)
        *value = v;
    return added;
}

static int redis_add_later(ah_state_t *s, const char *key, int64_t delta, int64_t expires_ms,
                           int64_t *value)
{
    redis_t *r = (redis_t *)s;
    char k[REDIS_MAX_KEY], d[24], e[24];
    if (!cmd_args(r, key, delta, expires_ms, k, d, e)) {
        const char *incr[] = {"INCRBY", k, d}, *exp[2][4];
        size_t incr_len[] = {6, strlen(k), strlen(d)}, exp_len[2][4];
        int nexp = expires_ms > 0 ? expiry_cmds(r, k, e, exp, exp_len) : 0;
        ah_redis_cmd_t cmds[3] = {{3, incr, incr_len}};
        for (int i = 0; i < nexp; i++)
            cmds[1 + i] = (ah_redis_cmd_t){r->plain_expiry ? 3 : 4, exp[i], exp_len[i]};
        if (ah_redis_writer_send(r->writer, cmds, 1 + nexp) == 0)
            return 0;
    }
    add_once(r, key, delta, AH_STATE_NO_LIMIT, expires_ms, value); /* no room: now */
    return 1;
}

/* --- add_all: a request's adds together, from its event loop ----------- */

/* One op of a call in flight, as sent. */
typedef struct call_op {
    char key[REDIS_MAX_KEY]; /* with the prefix */
    const char *name;        /* the key as the caller named it (within key) */
    int64_t delta, limit, expires_ms;
    int first, ncmds; /* its replies: first (the value), then the expiries */
    int added, failed;
    int64_t value;
    int expiry_refused;
} call_op_t;

struct ah_state_call {
    redis_t *r;
    struct event_base *base;
    ah_state_op_t *ops; /* the caller's; NULL once cancelled */
    ah_state_done_fn done;
    void *arg;
    int n;
    uint64_t mark; /* the writer's finished jobs when sent */
    char why[256]; /* the first failure */
    call_op_t op[];
};

/* A command reply of call c (i: its index among the call's commands). */
static void on_count(void *arg, int i, const redisReply *rep)
{
    ah_state_call_t *c = arg;
    if (i < 0) { /* the loop's thread exits: nobody waits */
        ah_free(c);
        return;
    }
    int total = c->n ? c->op[c->n - 1].first + c->op[c->n - 1].ncmds : 0;
    if (i < total) {
        int k = 0;
        while (k + 1 < c->n && c->op[k + 1].first <= i)
            k++;
        call_op_t *o = &c->op[k];
        if (i != o->first) {
            o->expiry_refused |= rep && rep->type == REDIS_REPLY_ERROR;
            return;
        }
        char why[256];
        if (!rep) {
            o->failed = 1;
            if (!c->why[0])
                snprintf(c->why, sizeof c->why, "no answer");
        } else if (reply_int(rep, &o->value, why, sizeof why)) {
            o->failed = 1;
            if (!c->why[0])
                snprintf(c->why, sizeof c->why, "%s", why);
        }
        return;
    }
    /* The end: judge each op as add_once would. */
    redis_t *r = c->r;
    int failed = 0;
    for (int k = 0; k < c->n; k++) {
        call_op_t *o = &c->op[k];
        if (o->failed) {
            failed = 1;
            o->added = degrade(r, &o->value);
            continue;
        }
        o->added = 1;
        if (o->expiry_refused && !r->plain_expiry) { /* a Redis before 7 */
            r->plain_expiry = 1;
            char e[24];
            snprintf(e, sizeof e, "%" PRId64, o->expires_ms > 0 ? o->expires_ms : 0);
            const char *argv[] = {"PEXPIREAT", o->key, e};
            size_t len[] = {9, strlen(o->key), strlen(e)};
            ah_redis_cmd_t cmd = {3, argv, len};
            ah_redis_loops_call(r->loops, c->base, &cmd, 1, NULL, NULL);
        }
        if (o->delta > 0 && o->limit != AH_STATE_NO_LIMIT && o->value > o->limit) {
            /* Past the limit: taken back now, on a connection of the pool,
             * so that a retry below sees it gone (at the limit only). */
            int64_t v;
            add_once(r, o->name, -o->delta, AH_STATE_NO_LIMIT, 0, &v);
            o->added = 0;
            o->value -= o->delta;
            /* Refused, perhaps for a settlement of ours still queued: once
             * it is in Redis, ask again (as redis_add_if). */
            if (ah_redis_writer_flush(r->writer, r->flush_ms) ||
                ah_redis_writer_finished(r->writer) != c->mark)
                o->added = add_once(r, o->name, o->delta, o->limit, o->expires_ms, &o->value);
        }
    }
    if (failed)
        ah_redis_pool_failed(r->pool, c->why[0] ? c->why : "no answer");
    if (!c->ops) { /* cancelled: give back what was taken */
        for (int k = 0; k < c->n; k++)
            if (c->op[k].added && c->op[k].delta > 0 && c->op[k].value >= 0)
                redis_add_later(&r->base, c->op[k].name, -c->op[k].delta, c->op[k].expires_ms,
                                NULL);
        ah_free(c);
        return;
    }
    for (int k = 0; k < c->n; k++) {
        c->ops[k].added = c->op[k].added;
        c->ops[k].value = c->op[k].value;
    }
    ah_state_done_fn done = c->done;
    void *done_arg = c->arg;
    ah_free(c);
    done(done_arg);
}

static int redis_add_all(ah_state_t *s, struct event_base *base, ah_state_op_t *ops, int n,
                         ah_state_done_fn done, void *arg, ah_state_call_t **out)
{
    redis_t *r = (redis_t *)s;
    int ncmds = 0;
    for (int k = 0; k < n; k++)
        ncmds += ops[k].delta == 0 ? 1 : 3;
    ah_state_call_t *c = NULL;
    if (base && r->loops && n > 0 && ncmds <= AH_REDIS_CALL_MAX)
        c = ah_calloc(1, sizeof *c + (size_t)n * sizeof c->op[0]);
    int at = 0;
    ah_redis_cmd_t cmds[AH_REDIS_CALL_MAX];
    char ds[AH_REDIS_CALL_MAX][24], es[AH_REDIS_CALL_MAX][24]; /* n <= commands */
    const char *argv[AH_REDIS_CALL_MAX][4];
    size_t lens[AH_REDIS_CALL_MAX][4];
    for (int k = 0; c && k < n; k++) {
        call_op_t *o = &c->op[k];
        o->delta = ops[k].delta;
        o->limit = ops[k].limit;
        o->expires_ms = ops[k].expires_ms;
        o->first = at;
        if (cmd_args(r, ops[k].key, ops[k].delta, ops[k].expires_ms, o->key, ds[k], es[k])) {
            ah_free(c); /* a key too long: as add_if refuses it */
            c = NULL;
            break;
        }
        o->name = o->key + strlen(r->prefix);
        if (o->delta == 0) {
            argv[at][0] = "GET";
            argv[at][1] = o->key;
            lens[at][0] = 3;
            lens[at][1] = strlen(o->key);
            cmds[at] = (ah_redis_cmd_t){2, argv[at], lens[at]};
            at++;
        } else {
            argv[at][0] = "INCRBY";
            argv[at][1] = o->key;
            argv[at][2] = ds[k];
            lens[at][0] = 6;
            lens[at][1] = strlen(o->key);
            lens[at][2] = strlen(ds[k]);
            cmds[at] = (ah_redis_cmd_t){3, argv[at], lens[at]};
            at++;
            if (o->expires_ms > 0) {
                const char *exp[2][4];
                size_t exp_len[2][4];
                int nexp = expiry_cmds(r, o->key, es[k], exp, exp_len);
                for (int i = 0; i < nexp; i++, at++) {
                    memcpy(argv[at], exp[i], sizeof exp[i]);
                    memcpy(lens[at], exp_len[i], sizeof exp_len[i]);
                    cmds[at] = (ah_redis_cmd_t){r->plain_expiry ? 3 : 4, argv[at], lens[at]};
                }
            }
        }
        o->ncmds = at - o->first;
    }
    if (c) {
        c->r = r;
        c->base = base;
        c->ops = ops;
        c->done = done;
        c->arg = arg;
        c->n = n;
        c->mark = ah_redis_writer_finished(r->writer);
        if (ah_redis_loops_call(r->loops, base, cmds, at, on_count, c)) {
            *out = c;
            return 1;
        }
        ah_free(c);
    }
    /* Not from the loop (no loop, too many in flight, Redis down): each
     * now, as add_if (which degrades at once during an outage). */
    for (int k = 0; k < n; k++)
        ops[k].added = redis_add_if(s, ops[k].key, ops[k].delta, ops[k].limit, ops[k].expires_ms,
                                    &ops[k].value);
    return 0;
}

static void redis_cancel(ah_state_t *s, ah_state_call_t *c)
{
    (void)s;
    c->ops = NULL;
}

static void redis_free(ah_state_t *s)
{
    redis_t *r = (redis_t *)s;
    ah_redis_loops_free(r->loops);   /* the loops' connections closed as their threads exited */
    ah_redis_writer_free(r->writer); /* sends what is queued */
    ah_redis_pool_free(r->pool);
    ah_free(r);
}

static const ah_state_ops_t redis_ops = {.name = "redis",
                                         .add_if = redis_add_if,
                                         .add_later = redis_add_later,
                                         .add_all = redis_add_all,
                                         .cancel = redis_cancel,
                                         .free = redis_free};

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
    r->loops = ah_redis_loops_new(pool, cfg, LOOP_MAX_IN_FLIGHT);
    return &r->base;
}
