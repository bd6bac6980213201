/* batch_config.h - the Files and Batch APIs (docs/batch.md).
 *
 *   ahorro:
 *     batch:
 *       max_file_bytes: 209715200   # largest upload (default 200 MiB)
 *       concurrency: 64             # a running batch's requests in flight
 *
 * Part of ah_config_t (config.h); loaded by config.c. */
#ifndef AH_BATCH_CONFIG_H
#define AH_BATCH_CONFIG_H

#include <stddef.h>

#define AH_BATCH_DEFAULT_MAX_FILE_BYTES (200u * 1024 * 1024)
#define AH_BATCH_MAX_MAX_FILE_BYTES (2048ull * 1024 * 1024)
#define AH_BATCH_DEFAULT_CONCURRENCY 64
#define AH_BATCH_MAX_CONCURRENCY 1024

typedef struct ah_batch_config {
    size_t max_file_bytes; /* largest file accepted by POST /v1/files */
    int concurrency;       /* requests in flight for the running batch */
} ah_batch_config_t;

#endif
