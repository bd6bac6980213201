/* guard.c - budgets and rate limits at run time (see guard.h). */
#include "guard/guard.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "route/balance.h"
#include "store/db.h"
#include "store/ledger_read.h"

/* Live counters of the in-process state: budgets x scope values x periods,
 * rate limits x values x minutes, alert marks. */
#define GUARD_MAX_KEYS (1u << 20)

struct ah_guard {
    const ah_config_t *cfg;
    ah_state_t *state;
    ah_periods_t *periods; /* one per budget */
    double *in, *out;      /* per deployment, USD per token; < 0 unknown */
};

ah_state_t *ah_guard_state(ah_guard_t *g)
{
    return g->state;
}

const char *ah_guard_scope_value(const ah_scope_t *s, const char *key_id, const char *owner,
                                 const char *user, const json_t *tags)
{
    const char *v = NULL;
    switch (s->kind) {
    case AH_SCOPE_GLOBAL:
        return "*";
    case AH_SCOPE_KEY:
        v = key_id;
        break;
    case AH_SCOPE_USER:
        v = user;
        break;
    case AH_SCOPE_OWNER:
        v = owner;
        break;
    case AH_SCOPE_TAG:
        v = json_string_value(json_object_get(tags, s->tag));
        break;
    }
    if (!v || !*v || (s->value && strcmp(s->value, v) != 0))
        return NULL;
    return v;
}

void ah_guard_scope_describe(const ah_scope_t *s, const char *value, char *buf, size_t n)
{
    static const char *const kinds[] = {"global", "key", "user", "owner", "tag"};
    if (s->kind == AH_SCOPE_GLOBAL)
        snprintf(buf, n, "global");
    else if (s->kind == AH_SCOPE_TAG)
        snprintf(buf, n, "tag %s=%s", s->tag, value ? value : "*");
    else
        snprintf(buf, n, "%s %s", kinds[s->kind], value ? value : "*");
}

void ah_guard_period(ah_guard_t *g, size_t i, int64_t t_ms, int64_t *start_ms, int64_t *end_ms)
{
    ah_periods_find(&g->periods[i], t_ms, start_ms, end_ms);
}

void ah_guard_price(ah_guard_t *g, int d, double *in, double *out)
{
    *in = g->in[d];
    *out = g->out[d];
}

/* The current period's spend of budget i, from the ledger, into the state. */
static void load_spend(ah_guard_t *g, sqlite3 *db, size_t i, int64_t now)
{
    const ah_budget_cfg_t *b = &g->cfg->guard.budgets[i];
    static const char *const cols[] = {"'*'", "key_id", "user", "owner", "json_extract(tags, ?3)"};
    char sql[512], path[300];
    snprintf(sql, sizeof sql,
             "SELECT %s AS v, SUM(cost_usd) FROM ledger WHERE ts_ms >= ?1 AND ts_ms < ?2 "
             "AND cost_usd > 0 GROUP BY v",
             cols[b->scope.kind]);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_warn("budget %s: cannot read the ledger's spend: %s", b->name, sqlite3_errmsg(db));
        return;
    }
    int64_t start, end;
    ah_guard_period(g, i, now, &start, &end);
    sqlite3_bind_int64(st, 1, start);
    sqlite3_bind_int64(st, 2, end);
    if (b->scope.kind == AH_SCOPE_TAG) {
        snprintf(path, sizeof path, "$.\"%s\"", b->scope.tag);
        sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        double usd = sqlite3_column_double(st, 1);
        if (!v || (b->scope.value && strcmp(v, b->scope.value) != 0))
            continue;
        char key[512];
        ah_guard_budget_key(i, v, start, key, sizeof key);
        ah_state_add_if(g->state, key, (int64_t)llround(usd * AH_GUARD_NANO), AH_STATE_NO_LIMIT,
                        end + 86400000, NULL);
    }
    sqlite3_finalize(st);
}

ah_err_t ah_guard_new(const ah_config_t *cfg, const ah_prices_t *prices, const char *db_path,
                      ah_guard_t **out, char *err, size_t errlen)
{
    const ah_guard_config_t *gc = &cfg->guard;
    *out = NULL;
    if (!gc->nbudgets && !gc->nrate_limits)
        return AH_E_OK;
    ah_guard_t *g = ah_calloc(1, sizeof *g);
    g->cfg = cfg;
    if (cfg->state.url) {
        /* Shared with the other instances (docs/state.md); Redis itself is
         * reached on the first request, and its absence degrades then. */
        if (!(g->state = ah_state_redis_new(&cfg->state, err, errlen))) {
            ah_free(g);
            return AH_E_CONFIG;
        }
        ah_info("state: budgets and rate limits count in Redis (on_failure: %s); the ledger's "
                "spend is not reloaded at start",
                cfg->state.fail_open ? "open" : "closed");
    } else {
        g->state = ah_state_local_new(GUARD_MAX_KEYS);
    }
    g->periods = ah_calloc(gc->nbudgets ? gc->nbudgets : 1, sizeof *g->periods);
    int64_t now = ah_wall_ms();
    for (size_t i = 0; i < gc->nbudgets; i++) {
        const ah_budget_cfg_t *b = &gc->budgets[i];
        if (ah_periods_build(&g->periods[i], b->period, b->timezone ? b->timezone : "UTC", now)) {
            snprintf(err, errlen, "budget '%s' (line %d): unknown time zone '%s'", b->name, b->line,
                     b->timezone);
            ah_guard_free(g);
            return AH_E_CONFIG;
        }
    }
    size_t nd = cfg->ndeps ? cfg->ndeps : 1;
    g->in = ah_calloc(nd, sizeof *g->in);
    g->out = ah_calloc(nd, sizeof *g->out);
    for (size_t d = 0; d < cfg->ndeps; d++) {
        const ah_deployment_t *dep = &cfg->deps[d];
        ah_price_t p;
        g->in[d] = g->out[d] = -1;
        if (dep->has_price)
            p = dep->price;
        else if (!prices || strcmp(dep->model, "*") == 0 ||
                 ah_prices_find(prices, ah_catalogue_provider(dep), dep->model, time(NULL), &p))
            continue;
        /* The dearest tier of each price: a worst case must not be low. */
        double in = p.input.base, o = p.output.base;
        for (int t = 0; t < p.input.ntiers; t++)
            if (p.input.tiers[t].mtok > in)
                in = p.input.tiers[t].mtok;
        for (int t = 0; t < p.output.ntiers; t++)
            if (p.output.tiers[t].mtok > o)
                o = p.output.tiers[t].mtok;
        g->in[d] = in >= 0 ? in / 1e6 : -1;
        g->out[d] = o >= 0 ? o / 1e6 : -1;
    }
    /* A shared state already holds every instance's spend, and is the
     * truth: reloading this instance's ledger would count it again. */
    sqlite3 *db = NULL;
    int64_t since = now;
    for (size_t i = 0; i < gc->nbudgets; i++) {
        int64_t start, end;
        ah_guard_period(g, i, now, &start, &end);
        since = start < since ? start : since;
    }
    char why[512];
    if (gc->nbudgets && !ah_state_shared(g->state) &&
        (cfg->ledger.url ? ah_ledger_read_open(cfg, since, 0, &db, why, sizeof why)
                         : ah_db_open(db_path, &db)) == AH_E_OK) {
        for (size_t i = 0; i < gc->nbudgets; i++)
            load_spend(g, db, i, now);
        sqlite3_close(db);
    }
    *out = g;
    return AH_E_OK;
}

void ah_guard_free(ah_guard_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->cfg->guard.nbudgets; i++)
        ah_periods_free(&g->periods[i]);
    ah_free(g->periods);
    ah_free(g->in);
    ah_free(g->out);
    ah_state_free(g->state);
    ah_free(g);
}

void ah_guard_budget_key(size_t i, const char *v, int64_t start_ms, char *out, size_t n)
{
    snprintf(out, n, "b%zu:%s:%lld", i, v, (long long)start_ms);
}
