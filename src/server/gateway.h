/* gateway.h - everything a gateway needs before it serves: prices, the
 * ledger, routers, balancer, guard, tokenizers, caches, observers.
 *
 * `ahorro serve` opens one, serves it until a signal, and closes it. The
 * offline commands that send traffic through the gateway's own pipeline
 * (`ahorro eval run`) open one and serve it on an ephemeral loopback port
 * for the time of the command (ah_server_start / ah_server_stop), so their
 * requests are authenticated, budgeted, shaped, cached, routed, priced and
 * recorded exactly like any other traffic. */
#ifndef AH_GATEWAY_H
#define AH_GATEWAY_H

#include "pipeline/pipeline.h"

typedef struct ah_gateway_rt ah_gateway_rt_t;

/* Open everything cfg asks for into gw (which keeps cfg); 0 on success, 1
 * after logging why. *rt holds what gw does not (watchers, the request
 * log): pass it to ah_gateway_close. */
int ah_gateway_open(ah_config_t *cfg, ah_gateway_t *gw, ah_gateway_rt_t **rt);
/* After the workers stopped: close in reverse order; the ledger drains
 * every queued row through its observers. */
void ah_gateway_close(ah_gateway_t *gw, ah_gateway_rt_t *rt);

#endif
