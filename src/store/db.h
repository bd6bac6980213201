/* db.h - the embedded database: one SQLite file in WAL mode.
 *
 * Holds the ledger and the virtual keys. Every thread opens its own
 * connection (SQLite connections are not shared across threads here); WAL
 * lets readers proceed while the ledger writer commits. */
#ifndef AH_DB_H
#define AH_DB_H

#include <sqlite3.h>

#include "core/error.h"

/* Open (creating and migrating if needed) the database at path. On success
 * *out is owned by the caller; close with sqlite3_close. */
ah_err_t ah_db_open(const char *path, sqlite3 **out);

/* Run sql that returns no rows; logs the error. */
ah_err_t ah_db_exec(sqlite3 *db, const char *sql);

#endif
