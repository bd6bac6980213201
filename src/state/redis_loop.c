/* redis_loop.c - Redis calls from an event loop that do not hold it
 * (redis_loop.h).
 *
 * Ownership: a thread's connections (one loop_conn_t per ah_redis_loops_t
 * it used) hang from a thread-specific key, freed by its destructor when
 * the thread exits. A call lives until hiredis has called back for each of
 * its commands, which it always does: with the reply, or with NULL when the
 * connection is lost or freed. What the caller sees ends earlier when the
 * call times out (the rest of its replies are reported missing at once). */
#include "state/redis_loop.h"

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "state/state.h"

#define MAX_HOST 256
#define MAX_PASSWORD 256

struct ah_redis_loops {
    ah_redis_pool_t *pool;
    char host[MAX_HOST], password[MAX_PASSWORD];
    int port, db, timeout_ms, max_in_flight;
    atomic_int conns; /* loop_conn_t alive */
};

typedef struct loop_conn {
    ah_redis_loops_t *l;
    struct event_base *base;
    redisAsyncContext *ac; /* NULL: none (opened by the next call) */
    int in_flight;         /* calls whose replies have not all come */
    int closing;           /* the thread exits: no callback is called */
    struct loop_conn *next;
} loop_conn_t;

typedef struct call {
    loop_conn_t *lc;
    ah_redis_reply_fn fn; /* NULL once over (timed out, or the thread exits) */
    void *arg;
    int n;         /* commands */
    int got;       /* hiredis callbacks so far */
    int reported;  /* replies reported to fn */
    int bad;       /* a reply was missing or an error */
    char what[16]; /* the first command's name, for the log */
    struct event *timer;
} call_t;

static pthread_key_t conns_key;
static pthread_once_t conns_key_once = PTHREAD_ONCE_INIT;
static int conns_key_ok;

static void conn_free(loop_conn_t *lc)
{
    redisAsyncContext *ac = lc->ac;
    lc->closing = 1;
    lc->ac = NULL;
    if (ac)
        redisAsyncFree(ac); /* the calls still in flight end, unreported */
    atomic_fetch_sub(&lc->l->conns, 1);
    ah_free(lc);
}

static void conns_free(void *p)
{
    for (loop_conn_t *lc = p, *next; lc; lc = next) {
        next = lc->next;
        conn_free(lc);
    }
}

static void conns_key_make(void)
{
    conns_key_ok = pthread_key_create(&conns_key, conns_free) == 0;
}

/* The calling thread's connection state of l for the loop of base, or NULL. */
static loop_conn_t *conn_of(ah_redis_loops_t *l, struct event_base *base)
{
    pthread_once(&conns_key_once, conns_key_make);
    if (!conns_key_ok || !base)
        return NULL;
    loop_conn_t *head = pthread_getspecific(conns_key);
    for (loop_conn_t *lc = head; lc; lc = lc->next)
        if (lc->l == l)
            return lc->base == base ? lc : NULL;
    loop_conn_t *lc = ah_calloc(1, sizeof *lc);
    lc->l = l;
    lc->base = base;
    lc->next = head;
    if (pthread_setspecific(conns_key, lc)) {
        ah_free(lc);
        return NULL;
    }
    atomic_fetch_add(&l->conns, 1);
    return lc;
}

/* The loop's connection failed: an outage for everyone (the pool's rule). */
static void conn_failed(loop_conn_t *lc, const char *why)
{
    if (!lc->closing)
        ah_redis_pool_failed(lc->l->pool, why);
}

static void on_connected(const redisAsyncContext *ac, int status)
{
    loop_conn_t *lc = ac->data;
    if (status == REDIS_OK)
        return;
    char why[256];
    snprintf(why, sizeof why, "connect: %s", ac->errstr);
    if (lc->ac == ac) /* hiredis frees it after this call */
        lc->ac = NULL;
    conn_failed(lc, why);
}

static void on_disconnected(const redisAsyncContext *ac, int status)
{
    loop_conn_t *lc = ac->data;
    (void)status; /* an idle connection the server closed is opened again */
    if (lc->ac == ac)
        lc->ac = NULL;
}

/* The reply to AUTH or SELECT: an error reply drops the connection (its
 * calls end without replies). */
static void on_setup(redisAsyncContext *ac, void *reply, void *priv)
{
    loop_conn_t *lc = priv;
    const redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ERROR)
        return;
    char why[256];
    snprintf(why, sizeof why, "%s", rep->str);
    if (lc->ac == ac)
        lc->ac = NULL;
    conn_failed(lc, why);
    redisAsyncFree(ac); /* deferred by hiredis until this callback returns */
}

/* Open the loop's connection (non-blocking; AUTH and SELECT are queued
 * before the first command). 0, or -1 (counted as a failure). */
static int conn_open(loop_conn_t *lc)
{
    ah_redis_loops_t *l = lc->l;
    redisAsyncContext *ac = redisAsyncConnect(l->host, l->port);
    char why[256];
    if (!ac || ac->err) {
        snprintf(why, sizeof why, "connect: %s", ac ? ac->errstr : "out of memory");
        goto fail;
    }
    ac->data = lc;
    if (redisLibeventAttach(ac, lc->base) != REDIS_OK) {
        snprintf(why, sizeof why, "cannot attach to the event loop");
        goto fail;
    }
    redisAsyncSetConnectCallback(ac, on_connected);
    redisAsyncSetDisconnectCallback(ac, on_disconnected);
    if ((l->password[0] && redisAsyncCommand(ac, on_setup, lc, "AUTH %s", l->password)) ||
        (l->db && redisAsyncCommand(ac, on_setup, lc, "SELECT %d", l->db))) {
        snprintf(why, sizeof why, "AUTH or SELECT: %s", ac->errstr);
        goto fail;
    }
    lc->ac = ac;
    return 0;
fail:
    if (ac)
        redisAsyncFree(ac);
    conn_failed(lc, why);
    return -1;
}

/* Report the replies c will not get (NULL each), then the end (-1 when the
 * thread exits); fn is dropped. */
static void report_rest(call_t *c)
{
    ah_redis_reply_fn fn = c->fn;
    c->fn = NULL;
    if (!fn)
        return;
    if (c->lc->closing) {
        fn(c->arg, -1, NULL);
        return;
    }
    for (; c->reported < c->n; c->reported++)
        fn(c->arg, c->reported, NULL);
    fn(c->arg, c->n, NULL);
}

/* One command's reply, or NULL when its connection was lost or freed (then
 * every call on it gets here, for each of its commands). */
static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    call_t *c = priv;
    loop_conn_t *lc = c->lc;
    const redisReply *rep = reply;
    if (!rep) {
        if (lc->ac == ac)
            lc->ac = NULL;
        if (!c->bad)
            conn_failed(lc, ac->errstr[0] ? ac->errstr : "connection lost");
        c->bad = 1;
    } else if (rep->type == REDIS_REPLY_ERROR) {
        c->bad = 1;
    }
    c->got++;
    if (c->fn && !lc->closing)
        c->fn(c->arg, c->reported++, rep);
    if (c->got == c->n) {
        if (c->fn && !c->bad && !lc->closing)
            ah_redis_pool_answered(lc->l->pool);
        report_rest(c); /* the end */
        lc->in_flight--;
        event_free(c->timer);
        ah_free(c);
    }
}

/* Not every reply came in timeout_ms: Redis is slow or gone. The call ends
 * now; the connection is dropped, which ends the others on it. */
static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    call_t *c = arg;
    loop_conn_t *lc = c->lc;
    char why[64];
    (void)fd;
    (void)what;
    snprintf(why, sizeof why, "%s: no answer in %d ms", c->what, lc->l->timeout_ms);
    conn_failed(lc, why);
    c->bad = 1;
    redisAsyncContext *ac = lc->ac;
    lc->ac = NULL;
    report_rest(c);
    if (ac)
        redisAsyncFree(ac); /* c, on it, is freed by its last on_reply */
}

int ah_redis_loops_call(ah_redis_loops_t *l, struct event_base *base, const ah_redis_cmd_t *cmds,
                        int n, ah_redis_reply_fn fn, void *arg)
{
    loop_conn_t *lc = l ? conn_of(l, base) : NULL;
    if (!lc || n < 1 || n > AH_REDIS_CALL_MAX || (fn && lc->in_flight >= l->max_in_flight))
        return 0;
    if (!ah_redis_pool_may_try(l->pool)) {
        ah_redis_pool_went_without(l->pool);
        return 0;
    }
    if (!lc->ac && conn_open(lc)) {
        ah_redis_pool_went_without(l->pool);
        return 0;
    }
    if (!fn) {
        for (int i = 0; i < n; i++)
            if (redisAsyncCommandArgv(lc->ac, NULL, NULL, cmds[i].argc, (const char **)cmds[i].argv,
                                      cmds[i].len) != REDIS_OK)
                return 0;
        return 1;
    }
    call_t *c = ah_calloc(1, sizeof *c);
    c->lc = lc;
    c->fn = fn;
    c->arg = arg;
    snprintf(c->what, sizeof c->what, "%.*s",
             (int)(cmds[0].len ? cmds[0].len[0] : strlen(cmds[0].argv[0])), cmds[0].argv[0]);
    c->timer = evtimer_new(base, on_timeout, c);
    if (!c->timer) {
        ah_free(c);
        return 0;
    }
    lc->in_flight++;
    for (int i = 0; i < n; i++) {
        if (redisAsyncCommandArgv(lc->ac, on_reply, c, cmds[i].argc, (const char **)cmds[i].argv,
                                  cmds[i].len) != REDIS_OK) {
            /* Only a context being torn down refuses: the commands queued
             * before end with it (NULL replies); the others never will. */
            c->n = i;
            c->fn = NULL;
            if (i == 0) {
                lc->in_flight--;
                event_free(c->timer);
                ah_free(c);
            }
            return 0;
        }
        c->n = i + 1;
    }
    struct timeval tv = {l->timeout_ms / 1000, (l->timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 1;
}

ah_redis_loops_t *ah_redis_loops_new(ah_redis_pool_t *pool, const ah_state_config_t *cfg,
                                     int max_in_flight)
{
    ah_redis_loops_t *l = ah_calloc(1, sizeof *l);
    if (ah_state_redis_parse_url(cfg->url, l->host, sizeof l->host, &l->port, &l->db, l->password,
                                 sizeof l->password)) {
        ah_free(l);
        return NULL;
    }
    l->pool = pool;
    l->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    l->max_in_flight = max_in_flight > 0 ? max_in_flight : 1;
    return l;
}

void ah_redis_loops_free(ah_redis_loops_t *l)
{
    if (!l)
        return;
    /* this thread's connection (the loops' closed as their threads exited) */
    pthread_once(&conns_key_once, conns_key_make);
    if (conns_key_ok) {
        loop_conn_t *head = pthread_getspecific(conns_key), *prev = NULL;
        for (loop_conn_t *lc = head; lc; prev = lc, lc = lc->next) {
            if (lc->l != l)
                continue;
            if (prev)
                prev->next = lc->next;
            else
                pthread_setspecific(conns_key, lc->next);
            conn_free(lc);
            break;
        }
    }
    int left = atomic_load(&l->conns);
    if (left)
        ah_warn("redis: %d event loops still hold a connection", left);
    ah_free(l);
}
