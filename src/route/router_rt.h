/* router_rt.h - what router aliases need at run time: the trained models of
 * learned routers and the word vectors they embed with.
 *
 * Loaded once at start from the configuration (a model that does not load
 * stops the start, with the reason); read-only while serving, so every event
 * loop scores with it at once. Owned by the gateway (ah_gateway_t.routers). */
#ifndef AH_ROUTER_RT_H
#define AH_ROUTER_RT_H

#include "cache/embed.h"
#include "config/config.h"
#include "route/learned.h"

typedef struct ah_router_rt ah_router_rt_t;

/* Load the models of cfg's learned routers. *out is NULL when there are none.
 * On error returns AH_E_CONFIG with the reason in err. Free with
 * ah_router_rt_free. */
ah_err_t ah_router_rt_load(const ah_config_t *cfg, ah_router_rt_t **out, char *err, size_t errlen);
void ah_router_rt_free(ah_router_rt_t *rt);
/* The trained model of router r, or NULL (a complexity router, or rt NULL). */
const ah_learned_t *ah_router_rt_model(const ah_router_rt_t *rt, const ah_router_cfg_t *r);
/* The word vectors learned routers embed with, or NULL. */
const ah_embedder_t *ah_router_rt_embedder(const ah_router_rt_t *rt);

#endif
