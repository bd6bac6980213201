/* batch_config.h - the Files and Batch APIs (docs/batch.md).
 *
 *   ahorro:
 *     batch:
 *       max_file_bytes: 209715200   # largest upload (default 200 MiB)
 *       concurrency: 64             # a running batch's requests in flight
 *       poll_s: 30                  # how often a provider's batch is polled
 *       lease_s: 60                 # with a PostgreSQL ledger: how long a running
 *                                   # batch stays its instance's without news
 *
 * Per deployment, in litellm_params: `batch: native` (default `live`) and
 * `batch_discount` (default 0.5) forward Batch API batches of its alias to
 * the provider's own Batch API (docs/batch.md "Provider batch APIs").
 *
 * Part of ah_config_t (config.h); loaded by config.c. */
#ifndef AH_BATCH_CONFIG_H
#define AH_BATCH_CONFIG_H

#include <stddef.h>

#define AH_BATCH_DEFAULT_MAX_FILE_BYTES (200u * 1024 * 1024)
#define AH_BATCH_MAX_MAX_FILE_BYTES (2048ull * 1024 * 1024)
#define AH_BATCH_DEFAULT_CONCURRENCY 64
#define AH_BATCH_MAX_CONCURRENCY 1024
#define AH_BATCH_DEFAULT_POLL_S 30.0
#define AH_BATCH_MIN_POLL_S 0.01
#define AH_BATCH_MAX_POLL_S 3600.0
#define AH_BATCH_DEFAULT_LEASE_S 60.0
#define AH_BATCH_MIN_LEASE_S 1.0
#define AH_BATCH_MAX_LEASE_S 86400.0
#define AH_BATCH_DEFAULT_DISCOUNT 0.5 /* OpenAI's and Anthropic's batch price: half */

typedef struct ah_batch_config {
    size_t max_file_bytes; /* largest file accepted by POST /v1/files */
    int concurrency;       /* requests in flight for the running batch */
    double poll_s;         /* a provider batch's status is asked this often */
    double lease_s;        /* a batch's runner, silent this long, is replaced (batch/shared.h) */
} ah_batch_config_t;

#endif
