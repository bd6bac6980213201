/* ledger_read.h - a database to read the ledger from, whichever backend
 * holds it: the SQLite file, or, with a PostgreSQL ledger, an in-memory
 * SQLite mirror of the rows of the range asked for (pg.h), so that reports,
 * budget reloads and forecasts run the same queries on either. */
#ifndef AH_LEDGER_READ_H
#define AH_LEDGER_READ_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

/* Rows a mirror holds at most (about 1 KB each in memory). */
#define AH_LEDGER_MIRROR_MAX_ROWS 2000000

/* Open the ledger for reading the rows of [since_ms, until_ms) (until_ms
 * <= 0: no end; the SQLite file gives every row anyway). *out: close with
 * sqlite3_close. The reason in err on failure. */
ah_err_t ah_ledger_read_open(const ah_config_t *cfg, int64_t since_ms, int64_t until_ms,
                             sqlite3 **out, char *err, size_t errlen);

/* What to copy from PostgreSQL for a reader, on connection c (its schema
 * migrated) into a new in-memory database *out (pg.h's mirrors). */
struct pg_conn;
typedef ah_err_t (*ah_ledger_mirror_fn)(struct pg_conn *c, void *ctx, sqlite3 **out, char *err,
                                        size_t errlen);

/* The SQLite file, or with a PostgreSQL ledger what mirror(ctx) copies
 * from it (a database no gateway has written yet reads as empty). *out:
 * close with sqlite3_close. The reason in err on failure. */
ah_err_t ah_ledger_read_with(const ah_config_t *cfg, ah_ledger_mirror_fn mirror, void *ctx,
                             sqlite3 **out, char *err, size_t errlen);

#endif
