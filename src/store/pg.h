/* pg.h - PostgreSQL: the shared ledger and virtual keys of several gateway
 * instances (docs/postgres.md).
 *
 * libpq, synchronous. Each thread that needs PostgreSQL holds a connection
 * of its own (the ledger writer, each event loop for key lookups, the CLI).
 * The schema lives in tables prefixed ahorro_ and is versioned in
 * ahorro_schema; migrations run under an advisory lock, so instances that
 * start together migrate once. */
#ifndef AH_PG_H
#define AH_PG_H

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Connect to url (any libpq connection string) within timeout_ms (<= 0:
 * 2 s). NULL with the reason in err on failure; the reason never holds the
 * password. Close with PQfinish. */
PGconn *ah_pg_connect(const char *url, int timeout_ms, char *err, size_t errlen);

/* Bring the schema up to date. AH_E_DB with the reason in err. */
ah_err_t ah_pg_migrate(PGconn *c, char *err, size_t errlen);

/* The schema version this build writes. */
int ah_pg_schema_version(void);

/* url with its password replaced by "***", for messages. */
void ah_pg_redact(const char *url, char *out, size_t outlen);

/* Run sql (no parameters, no rows wanted). AH_E_DB with the reason in err. */
ah_err_t ah_pg_exec(PGconn *c, const char *sql, char *err, size_t errlen);

/* Whether a failed result is the database's fault (connection gone,
 * shutdown, missing table...: retried later) rather than the row's (a data
 * or constraint error: SQLSTATE class 22 or 23). */
int ah_pg_connection_lost(PGconn *c, const PGresult *res);

/* Copy the ledger rows with since_ms <= ts_ms < until_ms (until_ms <= 0: no
 * end) from PostgreSQL into a new in-memory SQLite database with the
 * embedded schema, so that the reports' queries run on either backend;
 * with the feedback given since since_ms and the live judges' judgments
 * of the range (what experiment reports join). At most max_rows rows, and
 * max_rows judgments (AH_E_TOOBIG past them). *out: close with
 * sqlite3_close. */
ah_err_t ah_pg_ledger_mirror(PGconn *c, int64_t since_ms, int64_t until_ms, int64_t max_rows,
                             sqlite3 **out, char *err, size_t errlen);

/* Copy the live judges' judgments with ts_ms >= since_ms (of route; NULL:
 * every route), the first limit of them in the drift report's order
 * (route, judge, ts_ms), into a new in-memory SQLite database with the
 * embedded schema: `ahorro quality drift` reads no ledger row, so it
 * mirrors no ledger row. Ask for one more than the report shows to learn
 * whether it is cut. *out: close with sqlite3_close. */
ah_err_t ah_pg_judgments_mirror(PGconn *c, int64_t since_ms, const char *route, int64_t limit,
                                sqlite3 **out, char *err, size_t errlen);

#endif
