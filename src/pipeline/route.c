/* route.c - stage 6: which deployment answers.
 *
 * The requested model is an alias of the config's model_list: the exact
 * alias first (round-robin among its deployments), then the most specific
 * wildcard alias. Cost-aware routing, fallbacks and retries arrive with the
 * routing work. */
#include "pipeline/pipeline.h"

#include <string.h>

int ah_stage_route(ah_worker_t *w, ah_request_t *r)
{
    const ah_deployment_t *d = ah_config_route(w->gw->cfg, r->model, w->rr++);
    if (!d)
        return ah_request_fail(r, 404, "invalid_request_error", "model_not_found", "model",
                               "The model '%s' does not exist or is not served by this gateway",
                               r->model);
    r->dep = d;
    r->upstream_model = strcmp(d->model, "*") == 0 ? r->model : d->model;
    r->route_reason = strcmp(d->alias, r->model) == 0 ? "alias" : "wildcard";
    return 0;
}
