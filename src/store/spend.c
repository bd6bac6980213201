/* spend.c - the grouped spend queries behind `ahorro report` and
 * GET /admin/spend, and their period-end forecasts.
 *
 * Every query reads one time range of the ledger (the ledger_ts index) and
 * groups it in SQLite. A query's SQL holds only fixed text: built-in
 * dimensions come from a table here, tag dimensions are
 * json_extract(tags, ?N) with the path bound, and the tag name was checked
 * against [A-Za-z0-9_.-] before that (a clear error, and a path that needs
 * no escaping).
 *
 * Cost: each query scans the rows in its range once per statement: three
 * statements for a report with top users and prompts (groups, top users,
 * top prompts), two for a forecast (groups' daily series, total series).
 * LIMIT bounds what comes back, not what is scanned; max_ms bounds the time
 * (a progress handler interrupts the statement), which is what keeps the
 * admin endpoint from holding its event loop. Measured in docs/reporting.md. */
#include "store/spend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "store/db.h"
#include "store/forecast.h"

#define SQL_MAX_BYTES 8192
#define DAY_MS 86400000LL
/* SQLite virtual-machine steps between two looks at the clock. */
/* First bound parameter of the dimensions' JSON paths. */
#define PARAM_DIM0 5

static const struct {
    const char *name, *column;
} builtins[] = {
    {"model", "COALESCE(served_model, requested_model, '(none)')"},
    {"requested_model", "COALESCE(requested_model, '(none)')"},
    {"key", "COALESCE(key_id, '(none)')"},
    {"owner", "COALESCE(owner, '(none)')"},
    {"user", "COALESCE(user, '(none)')"},
    {"provider", "COALESCE(provider, '(none)')"},
    {"deployment", "COALESCE(deployment, '(none)')"},
    {"status", "CAST(status AS TEXT)"},
    {"cache", "COALESCE(cache, '(none)')"},
    {"day", "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')"},
};

/* Figures of a group, in the order of the group query's columns after the
 * dimensions. Dimension values never shadow these keys in the flat row. */
static const char *const figures[] = {
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "avg_latency_ms",
    "errors",
    "saved_usd",
    "prompt_cache_saved_usd",
    "cache_hits",
    "failed_attempts",
    "failed_attempts_cost_usd",
    "unpriced",
    "saved_routing_usd",
    "baseline_usd",
    "saved_shaping_usd",
    "shape_tokens_saved",
    "total_tokens",
    "cost_per_request_usd",
    "group",
    "top_users",
    "top_prompts",
};
enum {
    F_REQ,
    F_PT,
    F_CT,
    F_CACHED,
    F_RT,
    F_COST,
    F_LAT,
    F_ERR,
    F_SAVED,
    F_PSAVED,
    F_HITS,
    F_ATT,
    F_ATTCOST,
    F_UNPRICED,
    F_RSAVED,
    F_BASE,
    F_SSAVED,
    F_STOKENS,
    F_NCOLS
};

void ah_spend_query_init(ah_spend_query_t *q)
{
    memset(q, 0, sizeof *q);
    snprintf(q->dims[0].name, sizeof q->dims[0].name, "model");
    q->dims[0].column = builtins[0].column;
    q->ndims = 1;
    q->limit = AH_SPEND_DEFAULT_GROUPS;
    q->top = AH_SPEND_DEFAULT_TOP;
    q->period = AH_SPEND_PERIOD_MONTH;
    q->history_days = AH_SPEND_FORECAST_HISTORY_DAYS;
}

static int valid_tag_name(const char *s, size_t n)
{
    if (n == 0 || n > AH_SPEND_MAX_TAG_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

ah_err_t ah_spend_parse_dims(ah_spend_query_t *q, const char *list, char *err, size_t errlen)
{
    int n = 0;
    if (!list || !*list) {
        ah_err_printf(err, errlen, "group_by is empty: name one or more dimensions");
        return AH_E_INVAL;
    }
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == AH_SPEND_MAX_DIMS) {
            ah_err_printf(err, errlen, "at most %d dimensions can be grouped together",
                          AH_SPEND_MAX_DIMS);
            return AH_E_INVAL;
        }
        ah_spend_dim_t *d = &q->dims[n];
        memset(d, 0, sizeof *d);
        const char *tag = p;
        size_t tlen = len;
        int explicit_tag = len > 4 && memcmp(p, "tag:", 4) == 0;
        if (explicit_tag) {
            tag += 4;
            tlen -= 4;
        } else {
            for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
                if (strlen(builtins[i].name) == len && memcmp(builtins[i].name, p, len) == 0)
                    d->column = builtins[i].column;
        }
        if (!d->column && !valid_tag_name(tag, tlen)) {
            ah_err_printf(err, errlen,
                          "cannot group by '%.*s': a dimension is one of model, requested_model, "
                          "key, owner, user, provider, deployment, status, cache, day, or a tag "
                          "name ('feature' or 'tag:feature') of 1 to %d characters from "
                          "A-Z a-z 0-9 _ . -",
                          (int)(len > 80 ? 80 : len), p, AH_SPEND_MAX_TAG_NAME);
            return AH_E_INVAL;
        }
        snprintf(d->name, sizeof d->name, "%.*s", (int)len, p);
        if (!d->column)
            snprintf(d->path, sizeof d->path, "$.\"%.*s\"", (int)tlen, tag);
        for (int j = 0; j < n; j++)
            if (strcmp(q->dims[j].name, d->name) == 0) {
                ah_err_printf(err, errlen, "dimension '%s' is named twice", d->name);
                return AH_E_INVAL;
            }
        n++;
        p += len;
        if (*p == ',' && !*++p) {
            ah_err_printf(err, errlen, "group_by ends with a comma");
            return AH_E_INVAL;
        }
    }
    q->ndims = n;
    return AH_E_OK;
}

ah_err_t ah_spend_parse_time(const char *s, int64_t now_ms, int64_t *out)
{
    if (!s || !*s)
        return AH_E_INVAL;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end != s && end[0] && !end[1] && v >= 0 && v <= 100000 && s[0] >= '0' && s[0] <= '9') {
        int64_t unit = end[0] == 'd' ? DAY_MS : end[0] == 'h' ? 3600000 : end[0] == 'm' ? 60000 : 0;
        if (!unit)
            return AH_E_INVAL;
        *out = now_ms - (int64_t)v * unit;
        return AH_E_OK;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(s, "%Y-%m-%d", &tm);
    if (!rest)
        return AH_E_INVAL;
    if (*rest == 'T' || *rest == ' ') {
        const char *r2 = strptime(rest + 1, "%H:%M:%S", &tm);
        if (!r2)
            r2 = strptime(rest + 1, "%H:%M", &tm);
        if (!r2)
            return AH_E_INVAL;
        rest = r2;
        if (*rest == 'Z')
            rest++;
    }
    if (*rest || tm.tm_year < 70 || tm.tm_year > 1100)
        return AH_E_INVAL;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return AH_E_INVAL;
    *out = (int64_t)t * 1000;
    return AH_E_OK;
}

/* --- SQL ---------------------------------------------------------------- */

/* "d0, d1" (prefix "b." when joining). */
static void dim_list(ah_buf_t *b, int ndims, const char *prefix)
{
    for (int i = 0; i < ndims; i++)
        ah_buf_printf(b, "%s%sd%d", i ? ", " : "", prefix, i);
}

/* WITH base AS (the rows of the range, with the dimensions as d0..dk-1 and
 * extra columns) */
static void sql_base(ah_buf_t *b, const ah_spend_query_t *q, int ndims, const char *extra)
{
    ah_buf_appends(b, "WITH base AS (SELECT ");
    for (int i = 0; i < ndims; i++) {
        const ah_spend_dim_t *d = &q->dims[i];
        if (d->column)
            ah_buf_printf(b, "%s AS d%d, ", d->column, i);
        else
            ah_buf_printf(b,
                          "COALESCE(CAST(CASE WHEN json_valid(tags) THEN json_extract(tags, ?%d) "
                          "END AS TEXT), '(none)') AS d%d, ",
                          PARAM_DIM0 + i, i);
    }
    if (ndims == 0)
        ah_buf_appends(b, "'(all)' AS d0, ");
    ah_buf_printf(b, "%s FROM ledger WHERE ts_ms >= ?1 AND ts_ms < ?2)", extra);
}

/* , g AS (the first ?3 groups by cost) */
static void sql_top_groups(ah_buf_t *b, int ndims)
{
    ah_buf_appends(b, ", g AS (SELECT ");
    dim_list(b, ndims, "");
    ah_buf_appends(b, " FROM base GROUP BY ");
    dim_list(b, ndims, "");
    ah_buf_appends(b, " ORDER BY COALESCE(SUM(cost_usd), 0) DESC, SUM(attempt_of IS NULL) DESC, ");
    dim_list(b, ndims, "");
    ah_buf_appends(b, " LIMIT ?3)");
}

static void sql_join_g(ah_buf_t *b, int ndims)
{
    ah_buf_appends(b, " FROM base b JOIN g ON ");
    for (int i = 0; i < ndims; i++)
        ah_buf_printf(b, "%sb.d%d IS g.d%d", i ? " AND " : "", i, i);
}

#define BASE_COLUMNS                                                                               \
    "ts_ms, attempt_of, status, prompt_tokens, completion_tokens, cached_tokens, "                 \
    "reasoning_tokens, cost_usd, latency_ms, saved_usd, prompt_cache_saved_usd, cache, "           \
    "user, requested_model, tags, saved_routing_usd, baseline_usd, saved_shaping_usd, "            \
    "shape_tokens_saved"

static void sql_groups(ah_buf_t *b, const ah_spend_query_t *q)
{
    sql_base(b, q, q->ndims, BASE_COLUMNS);
    ah_buf_appends(b, " SELECT ");
    dim_list(b, q->ndims, "");
    ah_buf_appends(b, ", SUM(attempt_of IS NULL), SUM(prompt_tokens), SUM(completion_tokens), "
                      "SUM(cached_tokens), SUM(reasoning_tokens), COALESCE(SUM(cost_usd), 0), "
                      "AVG(CASE WHEN attempt_of IS NULL THEN latency_ms END), "
                      "SUM(attempt_of IS NULL AND status >= 400), SUM(saved_usd), "
                      "SUM(prompt_cache_saved_usd), SUM(cache IN ('exact', 'semantic')), "
                      "SUM(attempt_of IS NOT NULL), "
                      "COALESCE(SUM(CASE WHEN attempt_of IS NOT NULL THEN cost_usd END), 0), "
                      "SUM(cost_usd IS NULL AND status < 400), "
                      "COALESCE(SUM(saved_routing_usd), 0), COALESCE(SUM(baseline_usd), 0), "
                      "COALESCE(SUM(saved_shaping_usd), 0), COALESCE(SUM(shape_tokens_saved), 0) "
                      "FROM base GROUP BY ");
    dim_list(b, q->ndims, "");
    /* 1-based: cost is the sixth figure, requests the first */
    ah_buf_printf(b, " ORDER BY %d DESC, %d DESC", q->ndims + 1 + F_COST, q->ndims + 1 + F_REQ);
    for (int i = 0; i < q->ndims; i++)
        ah_buf_printf(b, ", d%d", i);
}

/* Top items of each of the first ?3 groups, ?4 per group; item is the SQL
 * of the item's columns (as i0, i1, ...). */
static void sql_top(ah_buf_t *b, const ah_spend_query_t *q, const char *item, int nitem)
{
    sql_base(b, q, q->ndims, BASE_COLUMNS);
    sql_top_groups(b, q->ndims);
    ah_buf_appends(b, ", per AS (SELECT ");
    dim_list(b, q->ndims, "b.");
    ah_buf_printf(b, ", %s, COALESCE(SUM(b.cost_usd), 0) AS c, SUM(b.attempt_of IS NULL) AS n",
                  item);
    sql_join_g(b, q->ndims);
    ah_buf_appends(b, " GROUP BY ");
    dim_list(b, q->ndims, "b.");
    for (int i = 0; i < nitem; i++)
        ah_buf_printf(b, ", i%d", i);
    ah_buf_appends(b, "), r AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY ");
    dim_list(b, q->ndims, "");
    ah_buf_appends(b, " ORDER BY c DESC, n DESC");
    for (int i = 0; i < nitem; i++)
        ah_buf_printf(b, ", i%d", i);
    ah_buf_appends(b, ") AS rn FROM per) SELECT * FROM r WHERE rn <= ?4 ORDER BY ");
    dim_list(b, q->ndims, "");
    ah_buf_appends(b, ", rn");
}

/* Daily cost of each of the first ?3 groups: dims, day, cost. */
static void sql_daily(ah_buf_t *b, const ah_spend_query_t *q, int ndims)
{
    sql_base(b, q, ndims, "ts_ms, attempt_of, cost_usd");
    int nd = ndims ? ndims : 1;
    sql_top_groups(b, nd);
    ah_buf_appends(b, " SELECT ");
    dim_list(b, nd, "b.");
    ah_buf_printf(b, ", b.ts_ms / %lld AS day, COALESCE(SUM(b.cost_usd), 0)", DAY_MS);
    sql_join_g(b, nd);
    ah_buf_appends(b, " GROUP BY ");
    dim_list(b, nd, "b.");
    ah_buf_appends(b, ", day ORDER BY ");
    dim_list(b, nd, "b.");
    ah_buf_appends(b, ", day");
}

/* --- running --------------------------------------------------------------- */

static ah_err_t prepare(sqlite3 *db, const ah_spend_query_t *q, int ndims, ah_buf_t *sql,
                        int64_t since, int64_t until, sqlite3_stmt **st, char *err, size_t errlen)
{
    if (!sql->data || sqlite3_prepare_v2(db, sql->data, -1, st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "cannot prepare the spend query: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    /* Parameters a statement does not use are refused by SQLite (RANGE):
     * harmless, so bind results are not checked. */
    sqlite3_bind_int64(*st, 1, since);
    sqlite3_bind_int64(*st, 2, until > 0 ? until : INT64_MAX);
    sqlite3_bind_int(*st, 3, q->limit);
    sqlite3_bind_int(*st, 4, q->top);
    for (int i = 0; i < ndims; i++)
        if (!q->dims[i].column)
            sqlite3_bind_text(*st, PARAM_DIM0 + i, q->dims[i].path, -1, SQLITE_STATIC);
    return AH_E_OK;
}

static ah_err_t step_error(sqlite3 *db, int rc, const ah_db_deadline_t *dl, char *err,
                           size_t errlen)
{
    if (rc == SQLITE_DONE)
        return AH_E_OK;
    if (dl->expired) {
        ah_err_printf(err, errlen,
                      "the spend query ran past its time budget: narrow since/until or "
                      "group by fewer dimensions");
        return AH_E_TIMEOUT;
    }
    ah_err_printf(err, errlen, "spend query failed: %s", sqlite3_errmsg(db));
    return AH_E_DB;
}

static const char *text_col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "(none)";
}

/* "v0\x1fv1..." of the dimension columns from column 0: a group's key. */
static void group_key(sqlite3_stmt *st, int ndims, ah_buf_t *key)
{
    ah_buf_reset(key);
    for (int i = 0; i < ndims; i++) {
        if (i)
            ah_buf_append(key, "\x1f", 1);
        ah_buf_appends(key, text_col(st, i));
    }
    if (!key->data)
        ah_buf_append(key, "", 0);
}

static int is_figure(const char *name)
{
    for (size_t i = 0; i < sizeof figures / sizeof *figures; i++)
        if (strcmp(figures[i], name) == 0)
            return 1;
    return 0;
}

/* A group's figures from columns from (F_NCOLS of them). */
static json_t *group_figures(sqlite3_stmt *st, int from)
{
    json_t *g = json_object();
    for (int f = 0; f < F_NCOLS; f++) {
        int c = from + f;
        if (f == F_COST || f == F_LAT || f == F_SAVED || f == F_PSAVED || f == F_ATTCOST ||
            f == F_RSAVED || f == F_BASE || f == F_SSAVED)
            json_object_set_new(g, figures[f], json_real(sqlite3_column_double(st, c)));
        else
            json_object_set_new(g, figures[f], json_integer(sqlite3_column_int64(st, c)));
    }
    return g;
}

/* Add each group's figures (json integers/reals) into total. */
static void add_figures(json_t *total, json_t *g)
{
    for (int f = 0; f < F_NCOLS; f++) {
        if (f == F_LAT)
            continue;
        json_t *a = json_object_get(total, figures[f]), *v = json_object_get(g, figures[f]);
        if (json_is_integer(v))
            json_object_set_new(total, figures[f],
                                json_integer(json_integer_value(a) + json_integer_value(v)));
        else
            json_object_set_new(total, figures[f],
                                json_real(json_number_value(a) + json_number_value(v)));
    }
}

static void derive(json_t *g)
{
    json_int_t req = json_integer_value(json_object_get(g, "requests"));
    double cost = json_number_value(json_object_get(g, "cost_usd"));
    json_object_set_new(g, "total_tokens",
                        json_integer(json_integer_value(json_object_get(g, "prompt_tokens")) +
                                     json_integer_value(json_object_get(g, "completion_tokens"))));
    json_object_set_new(g, "cost_per_request_usd", json_real(req ? cost / (double)req : 0));
}

static json_t *dims_json(const ah_spend_query_t *q)
{
    json_t *a = json_array();
    for (int i = 0; i < q->ndims; i++)
        json_array_append_new(a, json_string(q->dims[i].name));
    return a;
}

/* The group object (in index) of the statement's current row, or NULL. */
static json_t *find_group(json_t *index, sqlite3_stmt *st, int ndims, ah_buf_t *key)
{
    group_key(st, ndims, key);
    return json_object_get(index, key->data);
}

static ah_err_t run_top(sqlite3 *db, const ah_spend_query_t *q, json_t *index, int prompts,
                        ah_db_deadline_t *dl, char *err, size_t errlen)
{
    ah_buf_t sql, key;
    ah_buf_init(&sql, SQL_MAX_BYTES);
    ah_buf_init(&key, 4 * AH_SPEND_MAX_DIMS * 1024);
    if (prompts)
        sql_top(&sql, q,
                "COALESCE(b.requested_model, '(none)') AS i0, COALESCE(b.user, '(none)') AS i1, "
                "COALESCE(b.tags, '{}') AS i2",
                3);
    else
        sql_top(&sql, q, "COALESCE(b.user, '(none)') AS i0", 1);
    sqlite3_stmt *st = NULL;
    ah_err_t rc = prepare(db, q, q->ndims, &sql, q->since_ms, q->until_ms, &st, err, errlen);
    int src = SQLITE_DONE;
    if (rc)
        goto out;
    const char *list = prompts ? "top_prompts" : "top_users";
    int nd = q->ndims;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *g = find_group(index, st, nd, &key);
        if (!g)
            continue;
        json_t *item;
        if (prompts) {
            json_t *tags = json_loads(text_col(st, nd + 2), 0, NULL);
            item = json_pack("{s:s,s:s,s:o}", "requested_model", text_col(st, nd), "user",
                             text_col(st, nd + 1), "tags", tags ? tags : json_object());
        } else {
            item = json_pack("{s:s}", "user", text_col(st, nd));
        }
        int c = nd + (prompts ? 3 : 1);
        json_object_set_new(item, "cost_usd", json_real(sqlite3_column_double(st, c)));
        json_object_set_new(item, "requests", json_integer(sqlite3_column_int64(st, c + 1)));
        json_array_append_new(json_object_get(g, list), item);
    }
    rc = step_error(db, src, dl, err, errlen);
out:
    sqlite3_finalize(st);
    ah_buf_free(&sql);
    ah_buf_free(&key);
    return rc;
}

ah_err_t ah_spend_run(sqlite3 *db, const ah_spend_query_t *q, json_t **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    if (q->ndims < 1 || q->ndims > AH_SPEND_MAX_DIMS || q->limit < 1 ||
        q->limit > AH_SPEND_MAX_GROUPS || q->top < 0 || q->top > AH_SPEND_MAX_TOP) {
        ah_err_printf(err, errlen, "bad spend query (dimensions, limit or top out of range)");
        return AH_E_INVAL;
    }
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, q->max_ms);
    ah_buf_t sql, key;
    ah_buf_init(&sql, SQL_MAX_BYTES);
    ah_buf_init(&key, 4 * AH_SPEND_MAX_DIMS * 1024);
    sql_groups(&sql, q);
    sqlite3_stmt *st = NULL;
    json_t *res = NULL, *groups = json_array(), *index = json_object(), *total = json_object();
    json_t *other = json_object();
    json_int_t ngroups = 0;
    int src = SQLITE_DONE;
    ah_err_t rc = prepare(db, q, q->ndims, &sql, q->since_ms, q->until_ms, &st, err, errlen);
    if (rc)
        goto out;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *g = group_figures(st, q->ndims);
        add_figures(total, g);
        if (ngroups++ >= q->limit) {
            add_figures(other, g);
            json_decref(g);
            continue;
        }
        json_t *dims = json_object();
        for (int i = 0; i < q->ndims; i++) {
            json_object_set_new(dims, q->dims[i].name, json_string(text_col(st, i)));
            if (!is_figure(q->dims[i].name))
                json_object_set_new(g, q->dims[i].name, json_string(text_col(st, i)));
        }
        json_object_set_new(g, "group", dims);
        derive(g);
        json_object_set_new(g, "top_users", json_array());
        json_object_set_new(g, "top_prompts", json_array());
        group_key(st, q->ndims, &key);
        json_object_set(index, key.data, g);
        json_array_append_new(groups, g);
    }
    if ((rc = step_error(db, src, &dl, err, errlen)))
        goto out;
    if (q->top > 0 && json_array_size(groups) > 0 &&
        ((rc = run_top(db, q, index, 0, &dl, err, errlen)) ||
         (rc = run_top(db, q, index, 1, &dl, err, errlen))))
        goto out;
    derive(total);
    res = json_pack("{s:s,s:o,s:I,s:I,s:O,s:I,s:b}", "object", "spend", "group_by", dims_json(q),
                    "since_ms", (json_int_t)q->since_ms, "until_ms",
                    (json_int_t)(q->until_ms ? q->until_ms : ah_wall_ms()), "groups", groups,
                    "group_count", ngroups, "truncated", ngroups > q->limit);
    if (ngroups > q->limit) {
        derive(other);
        json_object_set_new(res, "other", other);
        other = NULL;
    }
    json_object_set_new(res, "total", total);
    total = NULL;
out:
    if (q->max_ms > 0)
        ah_db_deadline_disarm(db);
    sqlite3_finalize(st);
    ah_buf_free(&sql);
    ah_buf_free(&key);
    json_decref(groups);
    json_decref(index);
    json_decref(total);
    json_decref(other);
    *out = res;
    return rc;
}

/* --- forecasts -------------------------------------------------------------- */

/* Start of the period containing t (UTC), and of the next one. */
static void period_bounds(ah_spend_period_t p, int64_t t_ms, int64_t *start, int64_t *end)
{
    int64_t day = t_ms >= 0 ? t_ms / DAY_MS : (t_ms - DAY_MS + 1) / DAY_MS;
    if (p == AH_SPEND_PERIOD_WEEK) {
        int dow = (int)((day + 3) % 7); /* 1970-01-01 was a Thursday; Monday = 0 */
        *start = (day - dow) * DAY_MS;
        *end = *start + 7 * DAY_MS;
        return;
    }
    time_t secs = (time_t)(t_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    tm.tm_mday = 1;
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    *start = (int64_t)timegm(&tm) * 1000;
    tm.tm_mon += 1;
    *end = (int64_t)timegm(&tm) * 1000;
}

typedef struct fc_ctx {
    int64_t as_of, pstart, pend, hist_start_day, as_of_day;
    int nhist; /* days in the history window */
} fc_ctx_t;

/* Forecast one group from its daily amounts (index 0 = hist_start_day,
 * as_of_day included: the partial day) into g. */
static void forecast_group(const fc_ctx_t *c, const double *daily, ah_forecast_method_t m,
                           json_t *g)
{
    int first = 0;
    while (first < c->nhist && daily[first] == 0)
        first++; /* a group that started later: its history starts then */
    int n = c->nhist - first;
    int64_t pstart_day = c->pstart / DAY_MS;
    double spent = 0;
    for (int64_t d = pstart_day; d <= c->as_of_day; d++) {
        int64_t i = d - c->hist_start_day;
        if (i >= 0 && i <= c->nhist)
            spent += daily[i];
    }
    int horizon = (int)(c->pend / DAY_MS - c->as_of_day);
    double frac = 1.0 - (double)(c->as_of - c->as_of_day * DAY_MS) / (double)DAY_MS;
    int dow0 = (int)((c->hist_start_day + first + 3) % 7);
    ah_forecast_t f;
    ah_forecast_daily(daily + first, n, dow0, horizon, frac, m, &f);
    json_t *weekly = json_array();
    for (int k = 0; k < 7; k++)
        json_array_append_new(weekly, json_real(f.weekly[k]));
    json_object_set_new(g, "spent_usd", json_real(spent));
    json_object_set_new(g, "projected_usd", json_real(spent + f.sum));
    json_object_set_new(g, "low_usd", json_real(spent + f.low));
    json_object_set_new(g, "high_usd", json_real(spent + f.high));
    json_object_set_new(g, "remaining_usd", json_real(f.sum));
    json_object_set_new(g, "trend_usd_per_day", json_real(f.trend_per_day));
    json_object_set_new(g, "weekly", weekly);
    json_object_set_new(g, "method", json_string(ah_forecast_method_name(f.method)));
    json_object_set_new(g, "history_days", json_integer(n));
}

/* One statement: daily series of the first q->limit groups (ndims 0: the
 * total), each forecast and appended to groups. */
static ah_err_t forecast_series(sqlite3 *db, const ah_spend_query_t *q, int ndims,
                                const fc_ctx_t *c, json_t *groups, ah_db_deadline_t *dl, char *err,
                                size_t errlen)
{
    ah_buf_t sql, key, prev;
    ah_buf_init(&sql, SQL_MAX_BYTES);
    ah_buf_init(&key, 4 * AH_SPEND_MAX_DIMS * 1024);
    ah_buf_init(&prev, 4 * AH_SPEND_MAX_DIMS * 1024);
    sql_daily(&sql, q, ndims);
    int nd = ndims ? ndims : 1;
    double *daily = ah_calloc((size_t)c->nhist + 1, sizeof *daily);
    json_t *g = NULL;
    sqlite3_stmt *st = NULL;
    int src = SQLITE_DONE;
    int64_t since = c->hist_start_day * DAY_MS < c->pstart ? c->hist_start_day * DAY_MS : c->pstart;
    ah_err_t rc = prepare(db, q, ndims, &sql, since, c->as_of, &st, err, errlen);
    if (rc)
        goto out;
    for (;;) {
        src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            group_key(st, nd, &key);
        if (g && (src != SQLITE_ROW || strcmp(key.data, prev.data) != 0)) {
            forecast_group(c, daily, q->method, g);
            json_array_append_new(groups, g);
            g = NULL;
            memset(daily, 0, ((size_t)c->nhist + 1) * sizeof *daily);
        }
        if (src != SQLITE_ROW)
            break;
        if (!g) {
            g = json_object();
            json_t *dims = json_object();
            for (int i = 0; i < ndims; i++) {
                json_object_set_new(dims, q->dims[i].name, json_string(text_col(st, i)));
                if (!is_figure(q->dims[i].name))
                    json_object_set_new(g, q->dims[i].name, json_string(text_col(st, i)));
            }
            json_object_set_new(g, "group", dims);
            ah_buf_reset(&prev);
            ah_buf_appends(&prev, key.data);
        }
        int64_t i = sqlite3_column_int64(st, nd) - c->hist_start_day;
        if (i >= 0 && i <= c->nhist)
            daily[i] += sqlite3_column_double(st, nd + 1);
    }
    rc = step_error(db, src, dl, err, errlen);
out:
    json_decref(g);
    sqlite3_finalize(st);
    ah_buf_free(&sql);
    ah_buf_free(&key);
    ah_buf_free(&prev);
    ah_free(daily);
    return rc;
}

ah_err_t ah_spend_forecast(sqlite3 *db, const ah_spend_query_t *q, int64_t as_of_ms, json_t **out,
                           char *err, size_t errlen)
{
    *out = NULL;
    if (q->ndims < 0 || q->ndims > AH_SPEND_MAX_DIMS || q->limit < 1 ||
        q->limit > AH_SPEND_MAX_GROUPS || q->history_days < 1 ||
        q->history_days > AH_SPEND_FORECAST_MAX_HISTORY_DAYS || as_of_ms <= 0) {
        ah_err_printf(err, errlen, "bad forecast query (dimensions, limit or history)");
        return AH_E_INVAL;
    }
    fc_ctx_t c = {.as_of = as_of_ms};
    period_bounds(q->period, as_of_ms, &c.pstart, &c.pend);
    c.as_of_day = as_of_ms / DAY_MS;
    int64_t start_day = c.as_of_day - q->history_days;
    if (q->since_ms > start_day * DAY_MS)
        start_day = (q->since_ms + DAY_MS - 1) / DAY_MS; /* whole days only */
    if (start_day * DAY_MS > c.pstart)
        start_day = c.pstart / DAY_MS; /* the period's spend so far is always read */
    c.hist_start_day = start_day;
    c.nhist = (int)(c.as_of_day - start_day);
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, q->max_ms);
    json_t *groups = json_array(), *totals = json_array(), *res = NULL;
    ah_err_t rc;
    if ((q->ndims > 0 && (rc = forecast_series(db, q, q->ndims, &c, groups, &dl, err, errlen))) ||
        (rc = forecast_series(db, q, 0, &c, totals, &dl, err, errlen)))
        goto out;
    json_t *total = json_array_get(totals, 0);
    if (!total) { /* nothing spent in the window */
        double zero = 0;
        total = json_object();
        forecast_group(&(fc_ctx_t){.as_of = c.as_of,
                                   .pstart = c.pstart,
                                   .pend = c.pend,
                                   .hist_start_day = c.as_of_day,
                                   .as_of_day = c.as_of_day},
                       &zero, q->method, total);
        json_array_append_new(totals, total);
    }
    json_object_del(total, "group");
    res = json_pack("{s:s,s:s,s:o,s:I,s:I,s:I,s:f,s:O,s:O}", "object", "spend_forecast", "period",
                    q->period == AH_SPEND_PERIOD_WEEK ? "week" : "month", "group_by", dims_json(q),
                    "period_start_ms", (json_int_t)c.pstart, "period_end_ms", (json_int_t)c.pend,
                    "as_of_ms", (json_int_t)c.as_of, "interval",
                    AH_FORECAST_HIGH_Q - AH_FORECAST_LOW_Q, "groups", groups, "total", total);
out:
    if (q->max_ms > 0)
        ah_db_deadline_disarm(db);
    json_decref(groups);
    json_decref(totals);
    *out = res;
    return rc;
}
