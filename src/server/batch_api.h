/* batch_api.h - OpenAI's Files and Batch APIs, served by the gateway
 * (docs/batch.md "Batch API", "Files").
 *
 *   POST /v1/files (multipart/form-data: file, purpose=batch), GET /v1/files,
 *   GET|DELETE /v1/files/{id}, GET /v1/files/{id}/content,
 *   POST|GET /v1/batches, GET /v1/batches/{id}, POST /v1/batches/{id}/cancel
 *
 * Every endpoint authenticates as the API endpoints do (stage 1); files and
 * batches belong to the key that created them. The batches themselves are
 * run by the runner thread (batch/runner.h). */
#ifndef AH_BATCH_API_H
#define AH_BATCH_API_H

#include <event2/http.h>

#include "pipeline/pipeline.h"

/* Bytes a multipart upload may add around its file (boundaries, headers,
 * the purpose field): the transport limit is max_file_bytes plus this. */
#define AH_UPLOAD_OVERHEAD_BYTES (1024u * 1024)

/* Is path (without its /v1 prefix) one of these endpoints' paths? */
int ah_batch_api_path(const char *path);
/* Serve req on path (without its /v1 prefix). */
void ah_batch_api_handle(ah_worker_t *w, struct evhttp_request *req, const char *path);

#endif
