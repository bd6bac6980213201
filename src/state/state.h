/* state.h - counters every event loop shares, behind one interface.
 *
 * Budgets, rate limits and alerts keep their running totals here as named
 * int64 counters that expire. The one operation that matters is a
 * conditional add: add delta only if the total stays at or under a limit,
 * atomically, so that a budget or a limit cannot be overrun by requests
 * racing each other. The in-process backend (local.c) is a striped hash
 * table; the Redis backend (redis.c, docs/state.md) implements the same
 * operation with plain commands, so that several gateway instances share
 * one truth. An event loop asks for all of a request's adds at once
 * (add_all), and with Redis goes on serving others until they are
 * answered. */
#ifndef AH_STATE_H
#define AH_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "config/state_config.h"
#include "core/error.h"

/* No limit for ah_state_add_if. */
#define AH_STATE_NO_LIMIT INT64_MAX

typedef struct ah_state ah_state_t;
struct event_base;

/* One conditional add of ah_state_add_all: add_if's arguments, and its
 * result. */
typedef struct ah_state_op {
    const char *key;
    int64_t delta, limit, expires_ms;
    int added;     /* out: as add_if returns */
    int64_t value; /* out: as add_if's *value */
} ah_state_op_t;

/* The ops of an ah_state_add_all are done: their results are in them. */
typedef void (*ah_state_done_fn)(void *arg);
typedef struct ah_state_call ah_state_call_t;

typedef struct ah_state_ops {
    const char *name;
    /* Add delta to counter key (created at 0; it and its value are dropped
     * after expires_ms, wall clock) if the result is at most limit; a
     * negative delta is always added. Returns 1 when added, 0 when refused;
     * *value (may be NULL) is the counter afterwards, or as it stands when
     * refused. Thread-safe and atomic per key. AH_E_NOMEM-like failures
     * (too many keys) refuse with *value -1. */
    int (*add_if)(ah_state_t *s, const char *key, int64_t delta, int64_t limit, int64_t expires_ms,
                  int64_t *value);
    /* Add delta to counter key with no limit, as add_if, when nobody waits
     * for the total (a settlement): the in-process backend adds now; the
     * Redis one queues it for its writer thread (redis_writer.h), or adds
     * now when the queue is full. Returns 1 when added now, *value (may be
     * NULL) then as add_if's; 0 when queued (*value untouched). */
    int (*add_later)(ah_state_t *s, const char *key, int64_t delta, int64_t expires_ms,
                     int64_t *value);
    /* Every op of ops[n] as add_if (NULL: add_if each, now), from the event
     * loop of base, which goes on meanwhile: 1 when started (*out the call),
     * and done(arg) follows from that loop unless cancelled first (ops
     * must live until then); 0 when done already (results in ops). Every op
     * runs, also after one is refused: it is the caller's to give back what
     * it does not keep. */
    int (*add_all)(ah_state_t *s, struct event_base *base, ah_state_op_t *ops, int n,
                   ah_state_done_fn done, void *arg, ah_state_call_t **out);
    /* From base's loop, while c is in flight: done is not called, ops are
     * not written, and what the ops took is given back once known. */
    void (*cancel)(ah_state_t *s, ah_state_call_t *c);
    void (*free)(ah_state_t *s);
} ah_state_ops_t;

struct ah_state {
    const ah_state_ops_t *ops;
    int shared; /* 1: other processes see the same counters (0 when zeroed) */
};

/* The in-process backend, holding at most max_keys live counters. Free with
 * ah_state_free. */
ah_state_t *ah_state_local_new(size_t max_keys);

/* The Redis backend (redis.c) for cfg (url set): every add_if is one
 * synchronous round trip from the calling thread; add_all sends its ops
 * together on the loop's own connection (redis_loop.h) and returns;
 * add_later is sent by a thread of its own, in pipelined batches (freeing
 * the state sends what is still queued). Connects lazily; a Redis
 * that cannot be reached does not fail this call: add_if then admits
 * (cfg->fail_open: returns 1) or refuses (returns 0), with *value -1 either
 * way, and the outage is logged once. NULL with the reason in err when the
 * URL is malformed. Free with ah_state_free. */
ah_state_t *ah_state_redis_new(const ah_state_config_t *cfg, char *err, size_t errlen);

/* Split redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] into host (port 6379 and
 * db 0 when absent) and password (may be NULL; "" when none). Returns 0, or
 * -1 when url is not of that form or a part does not fit. */
int ah_state_redis_parse_url(const char *url, char *host, size_t hostlen, int *port, int *db,
                             char *password, size_t passlen);

/* Whether backend s is shared between processes (then the counters are
 * the truth, and nothing is reloaded into them from a local ledger). */
static inline int ah_state_shared(const ah_state_t *s)
{
    return s->shared;
}

static inline int ah_state_add_if(ah_state_t *s, const char *key, int64_t delta, int64_t limit,
                                  int64_t expires_ms, int64_t *value)
{
    return s->ops->add_if(s, key, delta, limit, expires_ms, value);
}

static inline int ah_state_add_later(ah_state_t *s, const char *key, int64_t delta,
                                     int64_t expires_ms, int64_t *value)
{
    return s->ops->add_later(s, key, delta, expires_ms, value);
}

/* Every op of ops[n] as add_if, without holding base's loop when the
 * backend can (see add_all above): 1 when started (done follows), 0 when
 * done now. */
static inline int ah_state_add_all(ah_state_t *s, struct event_base *base, ah_state_op_t *ops,
                                   int n, ah_state_done_fn done, void *arg, ah_state_call_t **out)
{
    *out = NULL;
    if (s->ops->add_all)
        return s->ops->add_all(s, base, ops, n, done, arg, out);
    for (int i = 0; i < n; i++)
        ops[i].added = s->ops->add_if(s, ops[i].key, ops[i].delta, ops[i].limit, ops[i].expires_ms,
                                      &ops[i].value);
    return 0;
}

/* Cancel an add_all in flight (NULL: nothing). */
static inline void ah_state_cancel(ah_state_t *s, ah_state_call_t *c)
{
    if (c)
        s->ops->cancel(s, c);
}

/* The counter's value (0 when absent). */
static inline int64_t ah_state_get(ah_state_t *s, const char *key)
{
    int64_t v = 0;
    s->ops->add_if(s, key, 0, AH_STATE_NO_LIMIT, 0, &v);
    return v < 0 ? 0 : v;
}

static inline void ah_state_free(ah_state_t *s)
{
    if (s)
        s->ops->free(s);
}

#endif
