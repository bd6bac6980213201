/* ledger_config.h - where the ledger and the virtual keys live
 * (docs/postgres.md).
 *
 *   ahorro:
 *     ledger:
 *       url: postgres://USER:PASSWORD@HOST:PORT/DB  # absent: the SQLite file `db`
 *       spool: /var/lib/ahorro/spool   # rows not yet in PostgreSQL (default: <db>-spool)
 *       spool_max_mb: 256              # bound of the spool on disk
 *       timeout_ms: 2000               # connect timeout
 *   # or the short form:  ledger: postgres://...
 *
 * Any libpq connection string is accepted (postgres://, postgresql://, or
 * key=value pairs). Part of ah_config_t (config.h); loaded by config.c. */
#ifndef AH_LEDGER_CONFIG_H
#define AH_LEDGER_CONFIG_H

#define AH_LEDGER_DEFAULT_SPOOL_MB 256
#define AH_LEDGER_MAX_SPOOL_MB (64 * 1024)
#define AH_LEDGER_DEFAULT_TIMEOUT_MS 2000
#define AH_LEDGER_MAX_TIMEOUT_MS 60000

typedef struct ah_ledger_config {
    char *url;        /* PostgreSQL connection string, or NULL: SQLite (the default) */
    char *spool;      /* spool directory; NULL: "<db>-spool" */
    int spool_max_mb; /* 0: AH_LEDGER_DEFAULT_SPOOL_MB */
    int timeout_ms;   /* 0: AH_LEDGER_DEFAULT_TIMEOUT_MS */
    int line;         /* of the setting, for messages */
} ah_ledger_config_t;

#endif
