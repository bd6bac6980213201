/* batches.h - the Batch API's rows: the `batches` table, its states and
 * OpenAI's batch object (docs/batch.md "Batch API").
 *
 * States, as OpenAI names them: validating (created, queued for the
 * runner), in_progress, finalizing, completed; failed; expired (not done
 * within the completion window: what was done is kept); cancelling (asked
 * while running), cancelled. Times are kept in milliseconds and shown in
 * seconds. Tenancy as for files (files.h). */
#ifndef AH_BATCH_BATCHES_H
#define AH_BATCH_BATCHES_H

#include <jansson.h>
#include <sqlite3.h>

#include "batch/files.h"
#include "core/error.h"
#include "store/db.h"

#define AH_BATCH_WINDOW_S (24 * 3600) /* the only completion window: "24h" */
#define AH_BATCHES_LIST_DEFAULT 20
#define AH_BATCHES_LIST_MAX 100

/* A batch row's columns, as every reader selects them (either backend). */
#define AH_BATCH_COLUMN_LIST                                                                       \
    "id, input_file_id, endpoint, completion_window, status, created_ms, in_progress_ms, "         \
    "finalizing_ms, completed_ms, failed_ms, expires_ms, expired_ms, cancelling_ms, "              \
    "cancelled_ms, output_file_id, error_file_id, total, completed, failed, metadata, errors"
#define AH_BATCH_COLUMNS 21

/* OpenAI's batch object from a row's AH_BATCH_COLUMN_LIST as text (NULL:
 * SQL NULL); new reference. */
json_t *ah_batch_row_json(const char *const v[AH_BATCH_COLUMNS]);

/* Where the rows live: h.pg_wanted, PostgreSQL (batch/shared.h; AH_E_DB
 * while it cannot be reached), else the SQLite file. */

/* A new batch (status validating) for owner; metadata may be NULL. */
ah_err_t ah_batches_add(ah_dbh_t h, const char *id, const char *input_file_id, const char *endpoint,
                        long total, json_t *metadata, const ah_tenant_t *owner);
/* OpenAI's batch object of id as t sees it (*out: new reference);
 * AH_E_NOTFOUND when unknown or another tenant's. */
ah_err_t ah_batches_get(ah_dbh_t h, const char *id, const ah_tenant_t *t, json_t **out);
/* OpenAI's list object of t's batches, newest first, after the batch id
 * `after` (NULL: from the start), at most limit. */
ah_err_t ah_batches_list(ah_dbh_t h, const ah_tenant_t *t, const char *after, int limit,
                         json_t **out);
/* Cancel: a queued batch becomes cancelled at once, a running one
 * cancelling (the runner finishes it); finished ones are left as they are.
 * *out as for ah_batches_get. */
ah_err_t ah_batches_cancel(ah_dbh_t h, const char *id, const ah_tenant_t *t, json_t **out);

/* The provider's batch id of a batch forwarded to a provider's Batch API
 * (native.h): set once it is created there; read (into out, "" when none)
 * by a restarted runner to resume polling. On the runner's SQLite file
 * (with PostgreSQL, its working copy, which it sends there). */
ah_err_t ah_batches_set_provider_id(sqlite3 *db, const char *id, const char *provider_batch_id);
ah_err_t ah_batches_provider_id(sqlite3 *db, const char *id, char *out, size_t n);

#endif
