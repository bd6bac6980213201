/* ledger_read.c - see ledger_read.h. */
#include "store/ledger_read.h"

#include <libpq-fe.h>

#include "core/log.h"
#include "store/db.h"
#include "store/pg.h"

ah_err_t ah_ledger_read_with(const ah_config_t *cfg, ah_ledger_mirror_fn mirror, void *ctx,
                             sqlite3 **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!cfg->ledger.url) {
        if (ah_db_open(cfg->db_path, out)) {
            ah_err_printf(err, errlen, "cannot open the database %s", cfg->db_path);
            return AH_E_DB;
        }
        return AH_E_OK;
    }
    char why[512];
    PGconn *c = ah_pg_connect(cfg->ledger.url, cfg->ledger.timeout_ms, why, sizeof why);
    if (!c) {
        ah_err_printf(err, errlen, "cannot reach the PostgreSQL ledger: %s", why);
        return AH_E_DB;
    }
    ah_err_t rc = ah_pg_migrate(c, err, errlen);
    if (rc == AH_E_OK)
        rc = mirror(c, ctx, out, err, errlen);
    PQfinish(c);
    return rc;
}

typedef struct range {
    int64_t since_ms, until_ms;
} range_t;

static ah_err_t ledger_mirror(PGconn *c, void *ctx, sqlite3 **out, char *err, size_t errlen)
{
    const range_t *r = ctx;
    return ah_pg_ledger_mirror(c, r->since_ms, r->until_ms, AH_LEDGER_MIRROR_MAX_ROWS, out, err,
                               errlen);
}

ah_err_t ah_ledger_read_open(const ah_config_t *cfg, int64_t since_ms, int64_t until_ms,
                             sqlite3 **out, char *err, size_t errlen)
{
    range_t r = {since_ms, until_ms};
    return ah_ledger_read_with(cfg, ledger_mirror, &r, out, err, errlen);
}
