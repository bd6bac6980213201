/* guard.c - stage 3: budgets and rate limits.
 *
 * Not enforced yet: budgets (reserve the worst-case cost, settle after) and
 * RPM/TPM limits arrive with the cost-intelligence work. The stage exists
 * so that they slot in here without reshaping the pipeline. */
#include "pipeline/pipeline.h"

int ah_stage_guard(ah_worker_t *w, ah_request_t *r)
{
    return 0;
}
