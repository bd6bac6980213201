/* guard.h - budgets and rate limits at run time: the state they count in,
 * the calendar periods of each budget, and what each deployment costs per
 * token (for a request's worst case).
 *
 * Created before the event loops start (period tables need the process's
 * TZ; the current periods' spend is read from the ledger so that a restart
 * does not forget it) and read-only afterwards, except for the counters,
 * which live in the shared state (state/state.h). Owned by the gateway
 * (ah_gateway_t.guard); NULL when no budget or rate limit is configured. */
#ifndef AH_GUARD_H
#define AH_GUARD_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "state/state.h"
#include "store/prices.h"

/* Money in the counters: nano-USD, so that a request of a few tokens of a
 * cheap model still counts. */
#define AH_GUARD_NANO 1e9

typedef struct ah_guard ah_guard_t;

/* One reservation of a request, settled once its cost is known. */
typedef struct ah_guard_hold {
    const char *key;  /* counter (arena) */
    int64_t reserved; /* nano-USD or tokens */
    int64_t seen;     /* the counter as the reservation left it */
    int64_t expires_ms;
    int budget; /* index of the budget, or -1: a token reservation */
    int tokens; /* 1: tokens (tpm), 0: money */
} ah_guard_hold_t;

/* Build the runtime of cfg->guard over its counters: a new in-process
 * state, which reads the current periods' spend from the ledger at db_path
 * (which may not exist yet); or, with ahorro.state in Redis, the shared
 * counters as they stand there (no reload: docs/state.md). *out is NULL
 * when nothing is configured. On error returns
 * AH_E_CONFIG with the reason in err. Free with ah_guard_free. */
ah_err_t ah_guard_new(const ah_config_t *cfg, const ah_prices_t *prices, const char *db_path,
                      ah_guard_t **out, char *err, size_t errlen);
void ah_guard_free(ah_guard_t *g);

ah_state_t *ah_guard_state(ah_guard_t *g);
/* The value a scope counts a request under, or NULL when the request is
 * outside the scope (another key, no user...). */
const char *ah_guard_scope_value(const ah_scope_t *s, const char *key_id, const char *owner,
                                 const char *user, const json_t *tags);
/* Budget i's current period around t_ms. */
void ah_guard_period(ah_guard_t *g, size_t i, int64_t t_ms, int64_t *start_ms, int64_t *end_ms);
/* USD per token of deployment index d, input and output; < 0 unknown. */
void ah_guard_price(ah_guard_t *g, int d, double *in, double *out);
/* The state counter of budget i's spend for scope value v in the period
 * starting at start_ms ("b<i>:<v>:<start>"), into out: every reader and
 * writer of a budget's spend names it this way. */
void ah_guard_budget_key(size_t i, const char *v, int64_t start_ms, char *out, size_t n);
/* Human description of a scope, e.g. "tag feature=support", "each user". */
void ah_guard_scope_describe(const ah_scope_t *s, const char *value, char *buf, size_t n);

#endif
