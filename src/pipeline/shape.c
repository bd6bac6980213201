/* shape.c - stage 4: fewer tokens in and out.
 *
 * Pass-through for now: context-window management, compression and output
 * caps arrive with the shaping work and change r->body here. */
#include "pipeline/pipeline.h"

int ah_stage_shape(ah_worker_t *w, ah_request_t *r)
{
    return 0;
}
