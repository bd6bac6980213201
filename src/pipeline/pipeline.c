/* pipeline.c - run the stages in the order a request meets them. */
#include "pipeline/pipeline.h"

int ah_pipeline_admit(ah_worker_t *w, ah_request_t *r)
{
    return ah_stage_auth(w, r);
}

int ah_pipeline_before(ah_worker_t *w, ah_request_t *r)
{
    int rc;
    if ((rc = ah_stage_attribute(w, r)) || (rc = ah_stage_guard(w, r)) ||
        (rc = ah_stage_shape(w, r)))
        return rc;
    if (r->shape_pending)
        return 0;
    return ah_pipeline_after_shape(w, r);
}

int ah_pipeline_after_shape(ah_worker_t *w, ah_request_t *r)
{
    int rc = ah_stage_cache(w, r);
    if (rc)
        return rc;
    if (r->cache_hit || r->cache_pending)
        return 0;
    return ah_pipeline_route(w, r);
}

int ah_pipeline_route(ah_worker_t *w, ah_request_t *r)
{
    int rc = ah_stage_route(w, r);
    return rc ? rc : ah_stage_guard_reserve(w, r);
}

void ah_pipeline_after(ah_worker_t *w, ah_request_t *r)
{
    ah_stage_cache_fill(w, r);
    ah_stage_record(w, r);
    ah_stage_learn(w, r);
}
