/* balance_sync.c - deployment windows shared through Redis (balance_sync.h).
 *
 * Keys: `<prefix>dep:<id>:<second>`, a hash of fields r (requests) and t
 * (tokens) that every instance adds to (HINCRBY) and that expires after
 * SYNC_KEY_TTL_S, twice the window. The second is wall-clock, so that the
 * instances agree on it; the windows count monotonic seconds, so a round
 * maps one to the other by a fixed offset taken at start (the windows of
 * two instances may then disagree by under a second, plus their clocks'
 * skew: the window is 61 s for a provider's 60).
 *
 * A round is one pipeline: the HINCRBY/EXPIRE of every second whose count
 * grew since it was last sent (after an outage, all of the window's), then
 * one script that reads the window's seconds of every limited deployment.
 * The thread remembers what it sent of each second (sent[]): what Redis
 * adds up beyond that is the others'. A second is marked sent only when its
 * HINCRBY answered, so a count is never lost; one whose reply got lost may
 * be sent twice, which errs on the side of the limit. */
#include "route/balance_sync.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "state/redis_conn.h"

/* How often a round reads the others' counts: their lag, with a round trip
 * and SYNC_PUSH_MS. */
#define SYNC_INTERVAL_MS 250
/* How soon a round sends what this process counted (and reads too). */
#define SYNC_PUSH_MS 50
/* A second's key outlives the window (61 s) with room for skewed clocks. */
#define SYNC_KEY_TTL_S 130
/* Seconds remembered of what was sent: the window's and a few more. */
#define SYNC_RING 64
#define SYNC_MAX_KEY (AH_STATE_MAX_PREFIX + AH_BALANCE_MAX_DEP_ID + 32)
#define SYNC_NUM 24 /* an int64 in decimal, with its sign */

/* KEYS: none (the keys are built from ARGV: one instance, no cluster).
 * ARGV[1] key prefix "<prefix>dep:", ARGV[2] the first second, ARGV[3] how
 * many seconds, ARGV[4..] the deployment ids. Returns r, t of each second
 * of each deployment, in that order (0 for a missing key). */
static const char READ_SCRIPT[] =
    "local first, n, out = tonumber(ARGV[2]), tonumber(ARGV[3]), {}\n"
    "for i = 4, #ARGV do\n"
    "  for s = first, first + n - 1 do\n"
    "    local v = redis.call('HMGET', ARGV[1] .. ARGV[i] .. ':' .. string.format('%d', s), 'r', "
    "'t')\n"
    "    out[#out + 1] = tonumber(v[1]) or 0\n"
    "    out[#out + 1] = tonumber(v[2]) or 0\n"
    "  end\n"
    "end\n"
    "return out\n";

typedef struct sent {
    int64_t sec; /* window second */
    int64_t reqs, tokens;
} sent_t;

/* A second whose growth this round sends. */
typedef struct pending {
    int k;       /* limited deployment */
    int64_t sec; /* window second */
    int64_t reqs, tokens;
    int ncmds; /* its HINCRBYs (EXPIRE follows) */
} pending_t;

struct ah_balance_sync {
    const ah_config_t *cfg;
    ah_balancer_t *b;
    ah_redis_pool_t *pool;
    redisContext *c; /* the thread's own connection; NULL: not open */
    int timeout_ms;
    char keyprefix[AH_STATE_MAX_PREFIX + 8]; /* "<prefix>dep:" */
    int n;                                   /* limited deployments */
    int *dep;                                /* their indexes in cfg->deps */
    char (*id)[AH_BALANCE_MAX_DEP_ID + 1];
    sent_t (*sent)[SYNC_RING];
    pending_t *pend; /* n * AH_BALANCE_WINDOW_S */
    int64_t offset;  /* wall second - window second */
    pthread_t thread;
    int started;
    pthread_mutex_t lock; /* stop */
    pthread_cond_t wake;
    int stop;
};

void ah_balance_sync_dep_id(const ah_config_t *cfg, int i, char out[AH_BALANCE_MAX_DEP_ID + 1])
{
    const ah_deployment_t *d = &cfg->deps[i];
    const char *part[] = {d->alias, d->provider_name, d->model, d->api_base};
    uint64_t h = AH_FNV_OFFSET;
    for (size_t k = 0; k < sizeof part / sizeof part[0]; k++) {
        const char *p = part[k] ? part[k] : "";
        h = ah_fnv1a(h, p, strlen(p) + 1); /* with the NUL: "ab","c" is not "a","bc" */
    }
    int dup = 0;
    for (int j = 0; j < i; j++) {
        const ah_deployment_t *e = &cfg->deps[j];
        const char *q[] = {e->alias, e->provider_name, e->model, e->api_base};
        int same = 1;
        for (size_t k = 0; k < sizeof q / sizeof q[0] && same; k++)
            same = strcmp(part[k] ? part[k] : "", q[k] ? q[k] : "") == 0;
        dup += same;
    }
    if (dup)
        snprintf(out, AH_BALANCE_MAX_DEP_ID + 1, "%016" PRIx64 "-%d", h, dup);
    else
        snprintf(out, AH_BALANCE_MAX_DEP_ID + 1, "%016" PRIx64, h);
}

ah_balance_sync_t *ah_balance_sync_new(const ah_config_t *cfg, ah_balancer_t *b)
{
    int n = 0;
    for (size_t i = 0; i < cfg->ndeps; i++)
        n += cfg->deps[i].rpm || cfg->deps[i].tpm;
    if (!cfg->state.url || n == 0)
        return NULL;
    ah_redis_pool_t *pool = ah_redis_pool_new(
        &cfg->state, "balance",
        "deployments' rpm/tpm are counted by this instance only until it is back");
    if (!pool) {
        ah_error("balance: malformed state URL: deployments' rpm/tpm are per instance");
        return NULL;
    }
    ah_balance_sync_t *s = ah_calloc(1, sizeof *s);
    s->cfg = cfg;
    s->b = b;
    s->pool = pool;
    s->timeout_ms = cfg->state.timeout_ms > 0 ? cfg->state.timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    snprintf(s->keyprefix, sizeof s->keyprefix,
             "%sdep:", cfg->state.prefix ? cfg->state.prefix : AH_STATE_DEFAULT_PREFIX);
    s->dep = ah_calloc((size_t)n, sizeof *s->dep);
    s->id = ah_calloc((size_t)n, sizeof *s->id);
    s->sent = ah_calloc((size_t)n, sizeof *s->sent);
    s->pend = ah_calloc((size_t)n * AH_BALANCE_WINDOW_S, sizeof *s->pend);
    for (size_t i = 0; i < cfg->ndeps; i++) {
        if (!cfg->deps[i].rpm && !cfg->deps[i].tpm)
            continue;
        s->dep[s->n] = (int)i;
        ah_balance_sync_dep_id(cfg, (int)i, s->id[s->n]);
        s->n++;
    }
    /* Both clocks read together: the offset is off by under a second. */
    s->offset = ah_wall_ms() / 1000 - ah_balancer_second();
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &ca);
    pthread_condattr_destroy(&ca);
    return s;
}

/* The reply of a command was an integer. */
static int integer(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER;
}

/* Find every second of the window whose count grew since it was sent
 * (into s->pend); returns how many. */
static int find_growth(ah_balance_sync_t *s, int64_t now)
{
    int np = 0;
    for (int k = 0; k < s->n; k++) {
        for (int64_t sec = now - AH_BALANCE_WINDOW_S + 1; sec <= now; sec++) {
            int64_t r, t;
            ah_balancer_local(s->b, s->dep[k], sec, &r, &t);
            const sent_t *was = &s->sent[k][sec % SYNC_RING];
            if (r > (was->sec == sec ? was->reqs : 0) || t > (was->sec == sec ? was->tokens : 0))
                s->pend[np++] = (pending_t){.k = k, .sec = sec, .reqs = r, .tokens = t};
        }
    }
    return np;
}

/* Queue the HINCRBY/EXPIRE of the seconds found by find_growth. */
static void queue_growth(ah_balance_sync_t *s, int np)
{
    for (int i = 0; i < np; i++) {
        pending_t *p = &s->pend[i];
        const sent_t *was = &s->sent[p->k][p->sec % SYNC_RING];
        int64_t dr = p->reqs - (was->sec == p->sec ? was->reqs : 0);
        int64_t dt = p->tokens - (was->sec == p->sec ? was->tokens : 0);
        char key[SYNC_MAX_KEY];
        snprintf(key, sizeof key, "%s%s:%" PRId64, s->keyprefix, s->id[p->k], p->sec + s->offset);
        p->ncmds = 0;
        if (dr > 0) {
            redisAppendCommand(s->c, "HINCRBY %s r %lld", key, (long long)dr);
            p->ncmds++;
        }
        if (dt > 0) {
            redisAppendCommand(s->c, "HINCRBY %s t %lld", key, (long long)dt);
            p->ncmds++;
        }
        redisAppendCommand(s->c, "EXPIRE %s %d", key, SYNC_KEY_TTL_S);
    }
}

/* Queue the script that reads the window of every limited deployment. */
static void queue_read(ah_balance_sync_t *s, int64_t now)
{
    size_t argc = 6 + (size_t)s->n;
    const char **argv = ah_calloc(argc, sizeof *argv);
    char first[SYNC_NUM], count[SYNC_NUM];
    snprintf(first, sizeof first, "%" PRId64, now - AH_BALANCE_WINDOW_S + 1 + s->offset);
    snprintf(count, sizeof count, "%d", AH_BALANCE_WINDOW_S);
    argv[0] = "EVAL";
    argv[1] = READ_SCRIPT;
    argv[2] = "0";
    argv[3] = s->keyprefix;
    argv[4] = first;
    argv[5] = count;
    for (int k = 0; k < s->n; k++)
        argv[6 + k] = s->id[k];
    redisAppendCommandArgv(s->c, (int)argc, argv, NULL);
    ah_free(argv);
}

/* The others' counts of the window from the script's reply: the cluster's
 * less what this process has sent. 0, or -1 when the reply is malformed. */
static int apply_read(ah_balance_sync_t *s, const redisReply *rep, int64_t now)
{
    size_t want = (size_t)s->n * AH_BALANCE_WINDOW_S * 2;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != want)
        return -1;
    for (size_t e = 0; e < want; e++)
        if (!integer(rep->element[e]))
            return -1;
    size_t e = 0;
    for (int k = 0; k < s->n; k++) {
        for (int64_t sec = now - AH_BALANCE_WINDOW_S + 1; sec <= now; sec++, e += 2) {
            const sent_t *was = &s->sent[k][sec % SYNC_RING];
            int64_t r = rep->element[e]->integer - (was->sec == sec ? was->reqs : 0);
            int64_t t = rep->element[e + 1]->integer - (was->sec == sec ? was->tokens : 0);
            /* below what was sent: Redis lost keys (a restart); none are the others' */
            ah_balancer_set_others(s->b, s->dep[k], sec, r > 0 ? r : 0, t > 0 ? t : 0);
        }
    }
    return 0;
}

/* A round: send the growth found (np seconds of s->pend, found at second
 * now), read the others'. */
static int round_trip(ah_balance_sync_t *s, int np, int64_t now)
{
    char why[256] = "";
    if (!ah_redis_pool_may_try(s->pool)) {
        ah_redis_pool_went_without(s->pool);
        return -1;
    }
    if (!s->c && !(s->c = ah_redis_pool_open(s->pool, s->timeout_ms, why, sizeof why)))
        goto failed;
    queue_growth(s, np);
    queue_read(s, now);
    for (int i = 0; i < np; i++) {
        pending_t *p = &s->pend[i];
        int ok = 1;
        for (int j = 0; j <= p->ncmds; j++) { /* its HINCRBYs, then EXPIRE */
            redisReply *r = NULL;
            if (redisGetReply(s->c, (void **)&r) != REDIS_OK) {
                snprintf(why, sizeof why, "%s", s->c->errstr[0] ? s->c->errstr : "no reply");
                goto failed;
            }
            ok &= j == p->ncmds || integer(r);
            freeReplyObject(r);
        }
        if (ok) /* in Redis now: no longer this process's to send */
            s->sent[p->k][p->sec % SYNC_RING] =
                (sent_t){.sec = p->sec, .reqs = p->reqs, .tokens = p->tokens};
    }
    redisReply *rep = NULL;
    if (redisGetReply(s->c, (void **)&rep) != REDIS_OK) {
        snprintf(why, sizeof why, "%s", s->c->errstr[0] ? s->c->errstr : "no reply");
        goto failed;
    }
    int bad = apply_read(s, rep, now);
    if (bad)
        snprintf(why, sizeof why, "the window's script answered %s",
                 rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "something else");
    freeReplyObject(rep);
    if (bad)
        goto failed;
    ah_redis_pool_answered(s->pool);
    return 0;
failed:
    if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
    ah_redis_pool_failed(s->pool, why);
    ah_redis_pool_went_without(s->pool);
    return -1;
}

int ah_balance_sync_round(ah_balance_sync_t *s)
{
    int64_t now = ah_balancer_second();
    return round_trip(s, find_growth(s, now), now);
}

/* Every SYNC_PUSH_MS, a round when this process counted something new (so
 * that the others see it soon), else every SYNC_INTERVAL_MS (to see
 * theirs). */
static void *run(void *arg)
{
    ah_balance_sync_t *s = arg;
    int64_t last_us = 0;
    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        int64_t now = ah_balancer_second(), t = ah_now_us();
        int np = find_growth(s, now);
        if (np || t - last_us >= (int64_t)SYNC_INTERVAL_MS * 1000) {
            round_trip(s, np, now);
            last_us = t;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)SYNC_PUSH_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&s->lock);
        while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

ah_balance_sync_t *ah_balance_sync_start(const ah_config_t *cfg, ah_balancer_t *b)
{
    ah_balance_sync_t *s = ah_balance_sync_new(cfg, b);
    if (!s)
        return NULL;
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        ah_error("balance: cannot start the sync thread: deployments' rpm/tpm are per instance");
        ah_balance_sync_stop(s);
        return NULL;
    }
    s->started = 1;
    ah_info("balance: rpm/tpm of %d deployment(s) counted across instances through Redis at %s "
            "(every %d ms)",
            s->n, ah_redis_pool_addr(s->pool), SYNC_INTERVAL_MS);
    return s;
}

void ah_balance_sync_stop(ah_balance_sync_t *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = 1;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    if (s->c)
        redisFree(s->c);
    ah_redis_pool_free(s->pool);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    ah_free(s->dep);
    ah_free(s->id);
    ah_free(s->sent);
    ah_free(s->pend);
    ah_free(s);
}
