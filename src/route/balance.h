/* balance.h - which deployment of a model alias takes the next attempt, and
 * what the gateway remembers of each deployment's health.
 *
 * Every deployment of the configuration has one slot of shared state: the
 * requests in flight, an EWMA of its latency (time to first token for
 * streams), its consecutive failures and the time its cooldown ends (the
 * circuit breaker), and its request and token counts over a sliding minute
 * (rpm/tpm). All of it is atomics: every event loop reads and updates it
 * without a lock, and a stale read only makes one choice a little worse.
 *
 * Circuit breaking: `allowed_fails` consecutive failures cool a deployment
 * down for `cooldown_s`; it is left out of choices until then. When the
 * cooldown ends, the next request to choose it claims the probe (the cooldown
 * is pushed forward again so that others keep away while it runs); a success
 * closes the breaker, a failure keeps it open for another cooldown.
 *
 * With ahorro.state naming a Redis and a deployment with rpm or tpm, the
 * windows hold across instances: the balancer runs a sync thread
 * (balance_sync.h) that shares this process's counts and brings back the
 * other instances', which the windows add to their own.
 *
 * Owned by the gateway (ah_gateway_t.balancer), created before the loops
 * start and freed after they stop. */
#ifndef AH_BALANCE_H
#define AH_BALANCE_H

#include <stdint.h>

#include "config/config.h"
#include "store/prices.h"

typedef struct ah_balancer ah_balancer_t;

/* Seconds a request stays counted in a deployment's rpm/tpm window. */
#define AH_BALANCE_WINDOW_S 61

/* Why no deployment was chosen. */
typedef enum {
    AH_PICK_OK,
    AH_PICK_UNKNOWN, /* no deployment serves the alias */
    AH_PICK_TRIED,   /* every deployment was tried already (and retrying is off) */
    AH_PICK_COOLING, /* every remaining deployment is cooling down */
    AH_PICK_LIMITED, /* every remaining deployment is at its rpm/tpm over the last minute */
} ah_pick_t;

/* A request's choice constraints. */
typedef struct ah_pick_opts {
    const int *tried; /* deployment indexes already tried for this alias */
    int ntried;
    int allow_tried;   /* a tried deployment may be chosen again (a retry) */
    int allow_cooling; /* last resort: a cooling deployment may be chosen */
    long tokens;       /* estimated tokens of the request (tpm) */
    uint64_t *rng;     /* the caller's random state (per event loop) */
} ah_pick_opts_t;

/* Shared state for every deployment of cfg; prices (may be NULL) rank
 * deployments for the lowest-cost strategy. Free with ah_balancer_free. */
ah_balancer_t *ah_balancer_new(const ah_config_t *cfg, const ah_prices_t *prices);
void ah_balancer_free(ah_balancer_t *b);

/* Choose a deployment of `alias` (exact alias, else its best wildcard) by
 * the configured strategy. NULL with *why set when none may take it; with
 * AH_PICK_LIMITED, *retry_in_s is when the window has room again. */
const ah_deployment_t *ah_balancer_pick(ah_balancer_t *b, const char *alias,
                                        const ah_pick_opts_t *o, ah_pick_t *why,
                                        double *retry_in_s);
/* The price of `alias` (exact alias, else its best wildcard): that of its
 * cheapest deployment by input + output price, among those whose prices are
 * known (config override, else the catalogue given to ah_balancer_new), in USD
 * per million tokens. Base rates: prompt-size tiers and cache rates are not
 * considered. 0, or -1 when no deployment's price is known. */
int ah_balancer_price(const ah_balancer_t *b, const char *alias, double *in_per_mtok,
                      double *out_per_mtok);
/* The price of deployment d as loaded at start (config override, else the
 * catalogue at start time): 0, or -1 when unknown (a "*" model, or not in
 * the catalogue). */
int ah_balancer_dep_price(const ah_balancer_t *b, const ah_deployment_t *d, ah_price_t *out);
/* An attempt on d starts: counts it in flight and in the rpm/tpm window. */
void ah_balancer_begin(ah_balancer_t *b, const ah_deployment_t *d, long tokens);
/* The attempt on d ended. outcome: 1 success, 0 a failure of the deployment
 * (counts toward its cooldown), -1 neither (the client left, or the request
 * itself was at fault). latency_us feeds the EWMA on success. */
void ah_balancer_end(ah_balancer_t *b, const ah_deployment_t *d, int outcome, int64_t latency_us);

/* The rpm/tpm window's clock: the current second (monotonic). */
int64_t ah_balancer_second(void);
/* This process's requests and tokens to deployment i in second sec (0 when
 * that second has left its buckets), for balance_sync.c. */
void ah_balancer_local(ah_balancer_t *b, int i, int64_t sec, int64_t *reqs, int64_t *tokens);
/* The other instances' requests and tokens to deployment i in second sec,
 * as last set (0 when none). */
void ah_balancer_others(ah_balancer_t *b, int i, int64_t sec, int64_t *reqs, int64_t *tokens);
/* Set them (the sync thread: one writer); the window counts them with its
 * own until sec leaves it. */
void ah_balancer_set_others(ah_balancer_t *b, int i, int64_t sec, int64_t reqs, int64_t tokens);

/* A snapshot of one deployment's state, for /admin and tests. */
typedef struct ah_dep_health {
    int inflight;
    int fails;
    double cooldown_left_s; /* 0: not cooling */
    double ewma_ms;         /* 0: no sample yet */
    uint64_t ok, failed;
} ah_dep_health_t;
void ah_balancer_health(ah_balancer_t *b, const ah_deployment_t *d, ah_dep_health_t *out);

/* The provider name a deployment's prices are filed under in the catalogue
 * (anthropic, azure, or the provider as written). */
const char *ah_catalogue_provider(const ah_deployment_t *d);

/* Uniform random number in [0, 1) from *state (xorshift64*). */
double ah_rand01(uint64_t *state);

#endif
