/* balance_sync.h - the rpm/tpm windows of deployments held across gateway
 * instances through the Redis of ahorro.state (docs/routing.md, "Rate
 * limits across instances"; docs/state.md).
 *
 * One thread a process, off the request path: within 50 ms of a new count
 * (and at least every 250 ms) it adds to Redis what this process counted
 * per second for each limited deployment since it last did, and reads back
 * the cluster's counts of the window's seconds, in one round trip. What the others counted (the
 * cluster's counts less this process's) goes into the balancer's atomics
 * (ah_balancer_set_others), which the windows add to their own: the event
 * loops never wait for Redis. When Redis cannot be reached, the windows
 * count this process only (the outage is logged by the pool's rule,
 * redis_conn.h) and what was not sent is sent once it is back. */
#ifndef AH_ROUTE_BALANCE_SYNC_H
#define AH_ROUTE_BALANCE_SYNC_H

#include <stddef.h>

#include "config/config.h"
#include "route/balance.h"

typedef struct ah_balance_sync ah_balance_sync_t;

/* The longest deployment id: 16 hex digits, "-" and a count. */
#define AH_BALANCE_MAX_DEP_ID 28

/* The id of deployment i in Redis keys: the same on every instance with the
 * same model_list. A hash of its alias, provider, model and api_base, then
 * "-N" for the Nth earlier deployment with all four the same (a second key
 * of one model), so that reordering other entries does not change it. */
void ah_balance_sync_dep_id(const ah_config_t *cfg, int i, char out[AH_BALANCE_MAX_DEP_ID + 1]);

/* Start the sync thread of b when cfg->state names a Redis and a deployment
 * has rpm or tpm; NULL otherwise (the windows are then this process's).
 * cfg and b must outlive it. Stop with ah_balance_sync_stop. */
ah_balance_sync_t *ah_balance_sync_start(const ah_config_t *cfg, ah_balancer_t *b);

/* The same without the thread: the caller runs the rounds with
 * ah_balance_sync_round (tests). Free with ah_balance_sync_stop. */
ah_balance_sync_t *ah_balance_sync_new(const ah_config_t *cfg, ah_balancer_t *b);

/* One round: send what was counted since the last, read the others'
 * counts. 0, or -1 when Redis was not tried or failed (the pool logs it). */
int ah_balance_sync_round(ah_balance_sync_t *s);

/* Stop the thread (within a round trip and the command timeout), close the
 * connection and free s. NULL is ignored. */
void ah_balance_sync_stop(ah_balance_sync_t *s);

#endif
