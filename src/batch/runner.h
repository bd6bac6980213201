/* runner.h - the Batch API's runner: one thread that runs the gateway's
 * queued batches through the gateway itself (docs/batch.md "Runner").
 *
 * It takes batches in creation order, one at a time, and runs each with the
 * batch engine (engine.h) against the gateway's own loopback listener, as
 * the key that created it (the internal credential, pipeline.h), so every
 * line meets auth, budgets, routing, caches and the ledger like any other
 * request. Progress (request_counts, cost) reaches the batch's row about
 * once a second. On start it resumes what a previous process left running
 * (the engine skips lines already answered), and finishes what was being
 * cancelled. */
#ifndef AH_BATCH_RUNNER_H
#define AH_BATCH_RUNNER_H

#include "pipeline/pipeline.h"

typedef struct ah_batch_runner ah_batch_runner_t;

/* Start the runner for gw, whose listener is on loopback port `port`. 0 on
 * success (*out owned by the caller: ah_batch_runner_stop), 1 after
 * logging why. */
int ah_batch_runner_start(ah_gateway_t *gw, int port, ah_batch_runner_t **out);
/* Ask the runner to finish: the running batch sends nothing more, and is
 * left in_progress to resume at the next start. Returns at once. */
void ah_batch_runner_shutdown(ah_batch_runner_t *r);
/* Wait for the runner at most wait_ms (< 0: for ever); 0 when it ended
 * (and is then freed), 1 when it still runs (call again). */
int ah_batch_runner_join(ah_batch_runner_t *r, long wait_ms);

#endif
