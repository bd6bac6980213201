/* router_rt.c - learned routers' models at run time (see router_rt.h). */
#include "route/router_rt.h"

#include <stdio.h>

#include "cache/setup.h"
#include "core/alloc.h"
#include "core/log.h"

struct ah_router_rt {
    const ah_config_t *cfg;
    ah_learned_t **models; /* one per cfg->routing.routers entry; NULL for complexity */
    ah_embedder_t *emb;
};

ah_err_t ah_router_rt_load(const ah_config_t *cfg, ah_router_rt_t **out, char *err, size_t errlen)
{
    const ah_routing_config_t *rc = &cfg->routing;
    *out = NULL;
    size_t learned = 0;
    for (size_t i = 0; i < rc->nrouters; i++)
        learned += rc->routers[i].kind == AH_ROUTER_LEARNED;
    if (!learned)
        return AH_E_OK;
    ah_router_rt_t *rt = ah_calloc(1, sizeof *rt);
    rt->cfg = cfg;
    rt->models = ah_calloc(rc->nrouters, sizeof *rt->models);
    char buf[4200], why[512];
    const char *path = ah_sif_path(buf, sizeof buf);
    if (path && !(rt->emb = ah_embed_open_sif(path, why, sizeof why)))
        ah_warn("router: %s; learned routers score on complexity features alone", why);
    else if (!path)
        ah_warn("router: no word vectors (scripts/build-embeddings.sh); learned routers score on "
                "complexity features alone");
    for (size_t i = 0; i < rc->nrouters; i++) {
        const ah_router_cfg_t *r = &rc->routers[i];
        if (r->kind != AH_ROUTER_LEARNED)
            continue;
        rt->models[i] = ah_learned_load(r->model_path, why, sizeof why);
        if (!rt->models[i]) {
            snprintf(err, errlen, "router '%s' (line %d): %s", r->name, r->line, why);
            ah_router_rt_free(rt);
            return AH_E_CONFIG;
        }
        ah_info("router %s: learned model from %s", r->name, r->model_path);
    }
    *out = rt;
    return AH_E_OK;
}

void ah_router_rt_free(ah_router_rt_t *rt)
{
    if (!rt)
        return;
    for (size_t i = 0; i < rt->cfg->routing.nrouters; i++)
        ah_learned_free(rt->models[i]);
    ah_free(rt->models);
    ah_embed_free(rt->emb);
    ah_free(rt);
}

const ah_learned_t *ah_router_rt_model(const ah_router_rt_t *rt, const ah_router_cfg_t *r)
{
    if (!rt || !r)
        return NULL;
    size_t i = (size_t)(r - rt->cfg->routing.routers);
    return i < rt->cfg->routing.nrouters ? rt->models[i] : NULL;
}

const ah_embedder_t *ah_router_rt_embedder(const ah_router_rt_t *rt)
{
    return rt ? rt->emb : NULL;
}
