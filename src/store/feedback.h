/* feedback.h - what callers say of answers (POST /v1/feedback), on the
 * embedded SQLite database or PostgreSQL (docs/postgres.md).
 *
 * Feedback names a request by its id; the ledger row says whose it was and
 * whether it was a cache hit (so a wrong hit can be taken out). */
#ifndef AH_FEEDBACK_H
#define AH_FEEDBACK_H

#include <stdint.h>

#include "core/error.h"
#include "store/db.h"

/* The ledger's facts about a request that feedback needs; strings owned
 * (NULL when the column is), cleared with ah_feedback_target_clear. */
typedef struct ah_feedback_target {
    char *owner, *key_id, *cache, *cache_key;
    double similarity; /* a semantic hit's; 0 otherwise */
} ah_feedback_target_t;

/* The request's row; AH_E_NOTFOUND when the ledger has none (yet). */
ah_err_t ah_feedback_find(ah_dbh_t db, const char *request_id, ah_feedback_target_t *out);
void ah_feedback_target_clear(ah_feedback_target_t *t);

/* Store one piece of feedback (score < 0: none; comment may be NULL). */
ah_err_t ah_feedback_add(ah_dbh_t db, const char *request_id, int64_t ts_ms, const char *key_id,
                         const char *owner, int wrong, double score, const char *comment);

#endif
