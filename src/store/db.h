/* db.h - the embedded database: one SQLite file in WAL mode.
 *
 * Holds the ledger and the virtual keys (unless they are in PostgreSQL:
 * ah_dbh_t below, docs/postgres.md), and what is each instance's own:
 * cache entries, batches, evaluations, judgments, templates. Every thread
 * opens its own connection (SQLite connections are not shared across
 * threads here); WAL lets readers proceed while the ledger writer commits. */
#ifndef AH_DB_H
#define AH_DB_H

#include <sqlite3.h>

#include <stdint.h>

#include "core/error.h"

/* Where the shared tables (virtual keys, feedback) live: the embedded
 * SQLite database, or PostgreSQL when the ledger is there
 * (docs/postgres.md). With pg_wanted set and pg NULL (the database cannot be
 * reached), calls taking it fail with AH_E_DB. */
struct pg_conn;
typedef struct ah_dbh {
    sqlite3 *lite;
    struct pg_conn *pg;
    int pg_wanted;
} ah_dbh_t;

/* Open (creating and migrating if needed) the database at path. On success
 * *out is owned by the caller; close with sqlite3_close. */
ah_err_t ah_db_open(const char *path, sqlite3 **out);

/* Run sql that returns no rows; logs the error. */
ah_err_t ah_db_exec(sqlite3 *db, const char *sql);

/* A time budget for the statements run on db until disarmed: past it, a
 * progress handler interrupts them (sqlite3_step returns SQLITE_INTERRUPT)
 * and `expired` says why. What keeps a reader's query off its event loop
 * for long. */
typedef struct ah_db_deadline {
    int64_t until_us;
    int expired;
} ah_db_deadline_t;
/* Arm d for max_ms from now (max_ms <= 0: no budget, d only reset). */
void ah_db_deadline_arm(sqlite3 *db, ah_db_deadline_t *d, long max_ms);
void ah_db_deadline_disarm(sqlite3 *db);

#endif
