/* pipeline.c - run the stages in the order a request meets them.
 *
 * STAGE times each stage for the request's trace (observe/trace.h); with
 * tracing off it is the bare call. */
#include "pipeline/pipeline.h"

#define STAGE(r, span, call)                                                                       \
    ah_trace_leave(&(r)->trace, (span), (ah_trace_enter(&(r)->trace, (span)), (call)))

int ah_pipeline_admit(ah_worker_t *w, ah_request_t *r)
{
    return STAGE(r, AH_SPAN_AUTH, ah_stage_auth(w, r));
}

int ah_pipeline_before(ah_worker_t *w, ah_request_t *r)
{
    int rc;
    if ((rc = STAGE(r, AH_SPAN_ATTRIBUTE, ah_stage_attribute(w, r))))
        return rc;
    ah_stage_judge_sample(w, r);            /* on the route asked for, whatever arm it gets */
    if ((rc = ah_stage_experiment(w, r)) || /* 2b: live experiments */
        (rc = STAGE(r, AH_SPAN_GUARD, ah_stage_guard(w, r))))
        return rc;
    if (r->guard_pending)
        return 0;
    return ah_pipeline_after_guard(w, r);
}

int ah_pipeline_after_guard(ah_worker_t *w, ah_request_t *r)
{
    int rc = STAGE(r, AH_SPAN_SHAPE, ah_stage_shape(w, r));
    if (rc || r->shape_pending)
        return rc;
    return ah_pipeline_after_shape(w, r);
}

int ah_pipeline_after_shape(ah_worker_t *w, ah_request_t *r)
{
    int rc = STAGE(r, AH_SPAN_CACHE, ah_stage_cache(w, r));
    if (rc)
        return rc;
    if (r->cache_hit || r->cache_pending)
        return 0;
    return ah_pipeline_route(w, r);
}

int ah_pipeline_route(ah_worker_t *w, ah_request_t *r)
{
    int rc = STAGE(r, AH_SPAN_ROUTE, ah_stage_route(w, r));
    return rc ? rc : ah_stage_guard_reserve(w, r);
}

void ah_pipeline_after(ah_worker_t *w, ah_request_t *r)
{
    ah_stage_cache_fill(w, r);
    ah_stage_record(w, r);
    ah_stage_learn(w, r);
    ah_stage_judge(w, r); /* a sampled answer goes to its judge */
}
