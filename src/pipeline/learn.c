/* learn.c - stage 9: feedback into routing, experiments and cache trust.
 *
 * Nothing to learn from yet; judges and feedback arrive with the quality
 * work. */
#include "pipeline/pipeline.h"

void ah_stage_learn(ah_worker_t *w, ah_request_t *r)
{
}
