/* spend.h - who spent what: the ledger grouped by columns and tags, and
 * period-end projections of it.
 *
 * One module builds and runs the grouped queries for both `ahorro report`
 * and GET /admin/spend, so the two always agree. Dimensions are ledger
 * columns (model, key, owner, user, ...) or tag names (`feature`,
 * `tag:team`), read from the row's `tags` JSON with json_extract; several
 * dimensions group together (one result row per combination). Tag names
 * come from untrusted input: only [A-Za-z0-9_.-] is accepted, and the JSON
 * path is bound as a parameter, never pasted into the SQL.
 *
 * Results are jansson objects (see docs/reporting.md for their fields). */
#ifndef AH_SPEND_H
#define AH_SPEND_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "core/error.h"
#include "store/forecast.h"

/* Dimensions grouped together in one query. */
#define AH_SPEND_MAX_DIMS 4
/* Longest tag name accepted as a dimension. */
#define AH_SPEND_MAX_TAG_NAME 64
/* Groups returned: default and bound (the rest is summed in "other"). */
#define AH_SPEND_DEFAULT_GROUPS 100
#define AH_SPEND_MAX_GROUPS 1000
/* Top users and top prompts listed per group: default and bound. */
#define AH_SPEND_DEFAULT_TOP 3
#define AH_SPEND_MAX_TOP 10
/* Days of history a forecast reads by default, and at most. */
#define AH_SPEND_FORECAST_HISTORY_DAYS 56
#define AH_SPEND_FORECAST_MAX_HISTORY_DAYS 366

typedef struct ah_spend_dim {
    char name[AH_SPEND_MAX_TAG_NAME + 8]; /* as asked: "model", "feature", "tag:team" */
    const char *column;                   /* SQL of a built-in column, or NULL for a tag */
    char path[AH_SPEND_MAX_TAG_NAME + 8]; /* a tag's JSON path ($."team"), bound */
} ah_spend_dim_t;

typedef enum { AH_SPEND_PERIOD_MONTH, AH_SPEND_PERIOD_WEEK } ah_spend_period_t;

typedef struct ah_spend_query {
    ah_spend_dim_t dims[AH_SPEND_MAX_DIMS];
    int ndims;
    int64_t since_ms; /* rows with ts_ms >= since_ms (0: from the start) */
    int64_t until_ms; /* and ts_ms < until_ms (0: up to now) */
    int limit;        /* groups returned, 1..AH_SPEND_MAX_GROUPS */
    int top;          /* top users / prompts per group, 0..AH_SPEND_MAX_TOP */
    int max_ms;       /* abort a query running longer (0: no limit) */
    /* Forecast only: the period projected, and the history read. */
    ah_spend_period_t period;
    int history_days;
    ah_forecast_method_t method; /* AH_FORECAST_AUTO unless comparing */
} ah_spend_query_t;

/* A query with the defaults: group by model, everything, default limits. */
void ah_spend_query_init(ah_spend_query_t *q);

/* Parse a comma-separated list of dimensions ("feature,model",
 * "tag:team") into q. On error returns AH_E_INVAL with the reason in err. */
ah_err_t ah_spend_parse_dims(ah_spend_query_t *q, const char *list, char *err, size_t errlen);

/* Parse a time: relative ("30d", "12h", "90m": that long before now_ms),
 * a UTC date ("2025-06-01") or date-time ("2025-06-01T12:00[:00][Z]").
 * Writes epoch milliseconds to *out. AH_E_INVAL on anything else. */
ah_err_t ah_spend_parse_time(const char *s, int64_t now_ms, int64_t *out);

/* Run the grouped query. On success *out is a new object (the caller
 * decrefs it): {"group_by", "since_ms", "until_ms", "groups": [...],
 * "total": {...}, "truncated"}. AH_E_TIMEOUT when max_ms ran out, AH_E_DB
 * otherwise; err says why. */
ah_err_t ah_spend_run(sqlite3 *db, const ah_spend_query_t *q, json_t **out, char *err,
                      size_t errlen);

/* Project each group's spend to the end of the period (q->period, UTC) that
 * contains as_of_ms, from q->history_days of daily spend before it (not
 * before q->since_ms). On success *out is a new object (caller decrefs):
 * {"period", "period_start_ms", "period_end_ms", "as_of_ms", "groups": [{...,
 * "spent_usd", "projected_usd", "low_usd", "high_usd", ...}], "total"}. */
ah_err_t ah_spend_forecast(sqlite3 *db, const ah_spend_query_t *q, int64_t as_of_ms, json_t **out,
                           char *err, size_t errlen);

#endif
