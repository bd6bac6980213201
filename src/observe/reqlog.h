/* reqlog.h - one JSON line per request (and per failed attempt), for log
 * pipelines: who, which route and model, tokens, cost, cache, latency,
 * status. Never the prompt, unless prompt logging is switched on; never a
 * key (key ids only).
 *
 * A ledger observer (store/ledger.h): lines are formatted and written on the
 * ledger's writer thread, a batch at a time, so the request path pays
 * nothing. A destination that fails (a full disk, a closed pipe) loses
 * lines, counted and warned about once a minute; the ledger rows are not
 * affected. */
#ifndef AH_REQLOG_H
#define AH_REQLOG_H

#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "store/ledger.h"

typedef struct ah_reqlog ah_reqlog_t;

/* Log to file (appended, created 0640) or, when file is NULL, to stderr. */
ah_err_t ah_reqlog_open(const char *file, ah_reqlog_t **out);
/* The ledger observer; ctx is the ah_reqlog_t. */
void ah_reqlog_rows(void *ctx, ah_ledger_row_t *const *rows, int n);
/* One row as a JSON line (no newline) appended to out; 0 on success. */
int ah_reqlog_format(const ah_ledger_row_t *row, ah_buf_t *out);
/* Lines written and lost so far. */
void ah_reqlog_stats(ah_reqlog_t *l, uint64_t *written, uint64_t *lost);
void ah_reqlog_close(ah_reqlog_t *l);

#endif
