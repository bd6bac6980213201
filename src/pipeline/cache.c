/* cache.c - stage 5: answer caches.
 *
 * Always a miss for now (x-ahorro-cache: miss); the exact and semantic
 * caches arrive with the caching work and end the request here on a hit. */
#include "pipeline/pipeline.h"

int ah_stage_cache(ah_worker_t *w, ah_request_t *r)
{
    r->cache_status = "miss";
    return 0;
}
