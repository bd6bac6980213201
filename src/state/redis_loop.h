/* redis_loop.h - Redis calls from an event loop that do not hold it: the
 * counters of budgets and rate limits (state/redis.c) and the shared answer
 * cache's lookups (cache/shared.c) send their commands and go on; the loop
 * serves other requests until the replies come (docs/state.md).
 *
 * Each loop thread gets, per ah_redis_loops_t, one non-blocking hiredis
 * connection attached to its event_base: opened by its first call
 * (authenticated and on the configured database: AUTH and SELECT go first
 * on it), opened again by the next call after it is lost, and closed when
 * the thread exits (a thread-specific key's destructor; the worker's
 * event_base is freed after its thread is joined). A call is up to
 * AH_REDIS_CALL_MAX commands sent together, whose replies come in order.
 *
 * Failures follow the outage rule of redis_conn.h with the pool given: a
 * call is not started while another caller probes Redis (the caller goes
 * on without it); a lost connection or a call without every reply in
 * timeout_ms is a failure (the connection is dropped, which ends the other
 * calls on it); every reply that came, none an error, ends an outage. An
 * error reply is for the caller to judge (ah_redis_pool_failed). */
#ifndef AH_STATE_REDIS_LOOP_H
#define AH_STATE_REDIS_LOOP_H

#include <hiredis/hiredis.h>

#include "config/state_config.h"
#include "state/redis_conn.h"
#include "state/redis_writer.h"

struct event_base;

/* Commands of one call, at most. */
#define AH_REDIS_CALL_MAX 128

typedef struct ah_redis_loops ah_redis_loops_t;

/* Each command's reply, in order (i from 0; rep NULL when none came: the
 * connection was lost or the call timed out), then once more with i equal
 * to the number of commands and rep NULL: the call is over. When the loop's
 * thread exits with the call in flight, the replies are not reported and
 * the last call has i -1: free what is yours, go on with nothing. rep is
 * freed when this returns. Called from the loop (or its thread's exit),
 * never from within ah_redis_loops_call. */
typedef void (*ah_redis_reply_fn)(void *arg, int i, const redisReply *rep);

/* The loops' connections to the Redis of cfg->url, under pool's outage
 * rule (pool must outlive them); at most max_in_flight calls in flight per
 * loop. NULL when the URL is malformed. Free with ah_redis_loops_free once
 * the loop threads have exited (a warning says when some still hold a
 * connection). */
ah_redis_loops_t *ah_redis_loops_new(ah_redis_pool_t *pool, const ah_state_config_t *cfg,
                                     int max_in_flight);
void ah_redis_loops_free(ah_redis_loops_t *l);

/* Send the n commands of cmds (1..AH_REDIS_CALL_MAX; their arguments are
 * copied) on the calling thread's connection for base. With fn, it is
 * called as above; without, the replies are not read (commands whose answer
 * nobody wants, sent after the calls before them on this loop). 1 when
 * sent; 0 when the call cannot start: no base, Redis in an outage (counted
 * as a call that went without), too many in flight, or the connection
 * cannot be opened (a failure); the caller then goes on without Redis, and
 * fn is not called. */
int ah_redis_loops_call(ah_redis_loops_t *l, struct event_base *base, const ah_redis_cmd_t *cmds,
                        int n, ah_redis_reply_fn fn, void *arg);

#endif
