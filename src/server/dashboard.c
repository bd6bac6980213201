/* dashboard.c - GET /dashboard and the admin JSON only the dashboard needs.
 *
 * The page is static (web/dashboard.html, embedded by dashboard_page.c) and
 * reads everything from the admin API with the key the user gave it, so
 * the server side is small: the page with a strict CSP, the viewer role's
 * rule, and three read endpoints:
 *
 * - /admin/latency: latency and time to first token, p50/p95 by model;
 * - /admin/budgets: each budget's spend, use and forecast for its period;
 * - /admin/experiments: the live experiments' report (quality/experiment.h).
 *
 * Like /admin/spend, the queries run on the worker's event loop over its own
 * read connection, so each request is bounded: DASH_QUERY_MAX_MS of SQLite
 * time in all (a progress handler interrupts past it: 503), and a fixed
 * number of models, budgets' values and days. */
#include "server/dashboard.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/queue.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "guard/guard.h"
#include "quality/experiment.h"
#include "server/exchange.h"
#include "store/db.h"
#include "store/forecast.h"
#include "store/keys.h"
#include "store/ledger_read.h"
#include "store/spend.h"

/* SQLite time one dashboard request may use (as /admin/spend's budget). */
#define DASH_QUERY_MAX_MS 2000
/* SQLite virtual-machine steps between two looks at the clock. */
/* Models listed by /admin/latency (the busiest first). */
#define DASH_MAX_MODELS 50
/* Longest model name kept (longer ones are cut). */
#define DASH_MODEL_NAME 256
/* Scope values listed per budget that counts each value apart (the
 * dearest in the current period first). */
#define DASH_BUDGET_MAX_VALUES 20
/* Longest scope value kept. */
#define DASH_VALUE_NAME 256
/* Days of daily spend a budget's forecast reads (as the watcher's). */
#define DASH_HISTORY_DAYS 56
/* A tag's JSON path, $."name" (tag names are short: config checks them). */
#define DASH_TAG_PATH 300
#define DASH_SQL_MAX 1024
#define DASH_CSP_MAX 512
#define DAY_MS 86400000LL

/* Requests whose latency says something about the model: answered (status
 * < 400) and not from the answer cache (a hit takes microseconds and would
 * hide the model's latency behind the cache's hit rate). */
#define LATENCY_SAMPLE "status < 400 AND COALESCE(cache, '') NOT IN ('exact', 'semantic')"
#define MODEL_EXPR "COALESCE(served_model, requested_model, '(none)')"

/* --- the page ---------------------------------------------------------- */

static pthread_once_t csp_once = PTHREAD_ONCE_INIT;
static char csp[DASH_CSP_MAX];

/* 'sha256-...' of the text between open and close in the page, into out;
 * 0 unless the element is there exactly once (then nothing is allowed: a
 * hash of the wrong text would only make the page fail less visibly). */
static int element_hash(const char *open, const char *close, char *out, size_t n)
{
    const char *a = strstr(ah_dashboard_html, open);
    const char *b = a ? strstr(a, close) : NULL;
    if (!a || !b || strstr(a + 1, open))
        return 0;
    a += strlen(open);
    unsigned char md[32];
    unsigned char b64[48]; /* 4 * ceil(32 / 3) + NUL = 45 */
    unsigned int len = 0;
    if (EVP_Digest(a, (size_t)(b - a), md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return 0;
    EVP_EncodeBlock(b64, md, 32);
    snprintf(out, n, "'sha256-%s'", (const char *)b64);
    return 1;
}

/* The page's policy: its one inline <script> and <style> by hash (no
 * 'unsafe-inline'), fetches to this origin, nothing else. Built once: the
 * page cannot change while the binary runs. */
static void csp_build(void)
{
    char script[64] = "'none'", style[64] = "'none'";
    if (!element_hash("<script>", "</script>", script, sizeof script) ||
        !element_hash("<style>", "</style>", style, sizeof style))
        ah_error("dashboard: the embedded page needs exactly one <script> and one <style>; "
                 "it will not run");
    snprintf(csp, sizeof csp,
             "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; "
             "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             script, style);
}

const char *ah_dashboard_csp(void)
{
    pthread_once(&csp_once, csp_build);
    return csp;
}

void ah_dashboard_page(ah_worker_t *w, struct evhttp_request *req)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (m != EVHTTP_REQ_GET && m != EVHTTP_REQ_HEAD) {
        ah_reply_error(req, AH_API_OPENAI, 405, "invalid_request_error", NULL,
                       "Method not allowed: use GET");
        return;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "text/html; charset=utf-8");
    evhttp_add_header(h, "Content-Security-Policy", ah_dashboard_csp());
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    /* The address may carry ?key=: never send it on, never keep it. */
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-store");
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add_reference(b, ah_dashboard_html, (size_t)ah_dashboard_html_len, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* --- who may read ---------------------------------------------------------- */

int ah_dashboard_viewer_may(const char *path, enum evhttp_cmd_type method)
{
    static const char *const readable[] = {"/admin/spend",   "/admin/latency",
                                           "/admin/budgets", "/admin/experiments",
                                           "/admin/cache",   "/admin/deployments"};
    if (method != EVHTTP_REQ_GET)
        return 0;
    for (size_t i = 0; i < sizeof readable / sizeof readable[0]; i++)
        if (strcmp(path, readable[i]) == 0)
            return 1;
    return 0;
}

int ah_dashboard_viewer_admit(ah_worker_t *w, struct evhttp_request *req, const char *path,
                              const char *tok)
{
    /* Only virtual keys have roles; anything else is the caller's business
     * (and costs no lookup). */
    if (!tok || strncmp(tok, "sk-ah-", 6) != 0)
        return 0;
    ah_key_t k;
    ah_err_t rc = ah_keys_lookup(ah_worker_dbh(w), tok, &k);
    if (rc == AH_E_NOTFOUND)
        return 0;
    if (rc) {
        ah_reply_error(req, AH_API_OPENAI, 500, NULL, NULL, "key store unavailable");
        return -1;
    }
    int viewer = !k.revoked && k.role == AH_KEY_ROLE_VIEWER;
    ah_key_clear(&k);
    if (!viewer)
        return 0;
    if (ah_dashboard_viewer_may(path, evhttp_request_get_command(req)))
        return 1;
    ah_reply_error(req, AH_API_OPENAI, 403, "permission_error", "insufficient_permissions",
                   "This key is read-only (role viewer): it may GET /admin/spend, "
                   "/admin/latency, /admin/budgets, /admin/experiments, /admin/cache and "
                   "/admin/deployments; the rest needs the master key");
    return -1;
}

/* --- bounded queries ----------------------------------------------------- */

/* After a statement's last step: AH_E_OK, AH_E_TIMEOUT past the budget, or
 * AH_E_DB; err says why. */
static ah_err_t step_result(sqlite3 *db, int rc, const ah_db_deadline_t *dl, char *err,
                            size_t errlen)
{
    if (rc == SQLITE_DONE)
        return AH_E_OK;
    if (dl->expired) {
        ah_err_printf(err, errlen, "the query ran past its time budget (%d ms): narrow the range",
                      DASH_QUERY_MAX_MS);
        return AH_E_TIMEOUT;
    }
    ah_err_printf(err, errlen, "ledger query failed: %s", sqlite3_errmsg(db));
    return AH_E_DB;
}

static void reply_failure(struct evhttp_request *req, ah_err_t rc, const char *err)
{
    ah_reply_error(req, AH_API_OPENAI, rc == AH_E_TIMEOUT ? 503 : 500, NULL, NULL, err);
}

static void reply_bad(struct evhttp_request *req, const char *msg)
{
    ah_reply_error(req, AH_API_OPENAI, 400, "invalid_request_error", "invalid_parameter", msg);
}

/* --- /admin/latency ------------------------------------------------------ */

typedef struct lat_model {
    char name[DASH_MODEL_NAME];
    long long requests, errors, cache_hits, sampled, ttft_count;
    double avg_ms, avg_ttft_ms;
    double p[2][2]; /* [latency, ttft][p50, p95]; NAN: none */
} lat_model_t;

static int model_index(const lat_model_t *ms, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(ms[i].name, name) == 0)
            return i;
    return -1;
}

/* The busiest models' counts and means, into ms; *n of them. */
static ah_err_t latency_counts(sqlite3 *db, int64_t since, int64_t until, lat_model_t *ms, int *n,
                               ah_db_deadline_t *dl, char *err, size_t errlen)
{
    static const char sql[] =
        "SELECT " MODEL_EXPR " AS m, COUNT(*), SUM(status >= 400),"
        " SUM(COALESCE(cache, '') IN ('exact', 'semantic')),"
        " SUM(" LATENCY_SAMPLE "), AVG(CASE WHEN " LATENCY_SAMPLE " THEN latency_ms END),"
        " SUM(" LATENCY_SAMPLE " AND ttft_ms IS NOT NULL),"
        " AVG(CASE WHEN " LATENCY_SAMPLE " THEN ttft_ms END)"
        " FROM ledger WHERE ts_ms >= ?1 AND ts_ms < ?2 AND attempt_of IS NULL"
        " GROUP BY m ORDER BY COUNT(*) DESC, m LIMIT ?3";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "cannot prepare the latency query: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, until);
    sqlite3_bind_int(st, 3, DASH_MAX_MODELS + 1); /* one more: says whether others were left */
    int rc;
    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n <= DASH_MAX_MODELS) {
        lat_model_t *m = &ms[*n];
        memset(m, 0, sizeof *m);
        snprintf(m->name, sizeof m->name, "%s", (const char *)sqlite3_column_text(st, 0));
        m->requests = sqlite3_column_int64(st, 1);
        m->errors = sqlite3_column_int64(st, 2);
        m->cache_hits = sqlite3_column_int64(st, 3);
        m->sampled = sqlite3_column_int64(st, 4);
        m->avg_ms = sqlite3_column_double(st, 5);
        m->ttft_count = sqlite3_column_int64(st, 6);
        m->avg_ttft_ms = sqlite3_column_double(st, 7);
        m->p[0][0] = m->p[0][1] = m->p[1][0] = m->p[1][1] = NAN;
        (*n)++;
    }
    sqlite3_finalize(st);
    return step_result(db, rc, dl, err, errlen);
}

/* p50 and p95 of column (which = 0: latency_ms, 1: ttft_ms) per model, by
 * nearest rank: the value at rank ceil(p * n) of the n sorted values. The
 * window functions return only those two rows per model, so nothing but
 * SQLite's sorter holds the sample. */
static ah_err_t latency_percentiles(sqlite3 *db, int64_t since, int64_t until, int which,
                                    lat_model_t *ms, int n, ah_db_deadline_t *dl, char *err,
                                    size_t errlen)
{
    static const char *const cols[] = {"latency_ms", "ttft_ms"};
    char sql[DASH_SQL_MAX];
    snprintf(sql, sizeof sql,
             "SELECT m, v, rn, n FROM (SELECT m, v,"
             " ROW_NUMBER() OVER (PARTITION BY m ORDER BY v) AS rn,"
             " COUNT(*) OVER (PARTITION BY m) AS n"
             " FROM (SELECT " MODEL_EXPR " AS m, %s AS v FROM ledger"
             " WHERE ts_ms >= ?1 AND ts_ms < ?2 AND attempt_of IS NULL AND " LATENCY_SAMPLE
             " AND %s IS NOT NULL))"
             " WHERE rn = (n + 1) / 2 OR rn = (95 * n + 99) / 100",
             cols[which], cols[which]);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "cannot prepare the percentile query: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, until);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int i = model_index(ms, n, (const char *)sqlite3_column_text(st, 0));
        if (i < 0)
            continue; /* a model past DASH_MAX_MODELS */
        double v = sqlite3_column_double(st, 1);
        long long rn = sqlite3_column_int64(st, 2), cnt = sqlite3_column_int64(st, 3);
        if (rn == (cnt + 1) / 2)
            ms[i].p[which][0] = v;
        if (rn == (95 * cnt + 99) / 100)
            ms[i].p[which][1] = v;
    }
    sqlite3_finalize(st);
    return step_result(db, rc, dl, err, errlen);
}

static json_t *num_or_null(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

static json_t *latency_json(const lat_model_t *m)
{
    json_t *lat = json_pack("{s:I,s:o,s:o,s:o}", "count", (json_int_t)m->sampled, "avg",
                            m->sampled ? json_real(m->avg_ms) : json_null(), "p50",
                            num_or_null(m->p[0][0]), "p95", num_or_null(m->p[0][1]));
    json_t *ttft = json_pack("{s:I,s:o,s:o,s:o}", "count", (json_int_t)m->ttft_count, "avg",
                             m->ttft_count ? json_real(m->avg_ttft_ms) : json_null(), "p50",
                             num_or_null(m->p[1][0]), "p95", num_or_null(m->p[1][1]));
    return json_pack("{s:s,s:I,s:I,s:I,s:o,s:o}", "model", m->name, "requests",
                     (json_int_t)m->requests, "errors", (json_int_t)m->errors, "cache_hits",
                     (json_int_t)m->cache_hits, "latency_ms", lat, "ttft_ms", ttft);
}

/* since/until from the query string (since defaults to def); 0 or an error
 * message for a 400. */
static const char *parse_range(struct evkeyvalq *q, const char *def, int64_t now, int64_t *since,
                               int64_t *until)
{
    const char *s = evhttp_find_header(q, "since"), *u = evhttp_find_header(q, "until");
    *until = 0;
    if (ah_spend_parse_time(s ? s : def, now, since) || (u && ah_spend_parse_time(u, now, until)))
        return "since and until take 30d, 12h, 90m (ago), YYYY-MM-DD or "
               "YYYY-MM-DDTHH:MM[:SS]Z (UTC)";
    if (!*until)
        *until = now + 1; /* rows up to now, this millisecond's included */
    if (*since >= *until)
        return "since must be before until";
    return NULL;
}

/* The database a panel reads the ledger of [since, until) from (until 0:
 * up to now): the worker's SQLite file, or, with a PostgreSQL ledger, an
 * in-memory mirror of that range with its feedback, as /admin/spend reads
 * it (on this loop: an admin query, bounded by AH_LEDGER_MIRROR_MAX_ROWS).
 * NULL with the reason in err; release with ledger_done. */
static sqlite3 *ledger_for(ah_worker_t *w, int64_t since, int64_t until, char *err, size_t n)
{
    sqlite3 *db = NULL;
    if (!w->gw->cfg->ledger.url)
        return w->db;
    if (ah_ledger_read_open(w->gw->cfg, since, until, &db, err, n))
        return NULL;
    return db;
}

static void ledger_done(ah_worker_t *w, sqlite3 *db)
{
    if (db != w->db)
        sqlite3_close(db);
}

/* GET /admin/latency?since=24h&until=: see docs/dashboard.md. */
static void latency(ah_worker_t *w, struct evhttp_request *req, struct evkeyvalq *q)
{
    int64_t now = ah_wall_ms(), since, until;
    const char *bad = parse_range(q, "24h", now, &since, &until);
    if (bad) {
        reply_bad(req, bad);
        return;
    }
    char err[256] = "";
    sqlite3 *db = ledger_for(w, since, until, err, sizeof err);
    if (!db) {
        reply_failure(req, AH_E_DB, err);
        return;
    }
    lat_model_t *ms = ah_calloc(DASH_MAX_MODELS + 1, sizeof *ms);
    int n = 0;
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, DASH_QUERY_MAX_MS);
    ah_err_t rc = latency_counts(db, since, until, ms, &n, &dl, err, sizeof err);
    int truncated = n > DASH_MAX_MODELS;
    if (truncated)
        n = DASH_MAX_MODELS;
    for (int which = 0; which < 2 && !rc; which++)
        rc = latency_percentiles(db, since, until, which, ms, n, &dl, err, sizeof err);
    ah_db_deadline_disarm(db);
    ledger_done(w, db);
    if (rc) {
        reply_failure(req, rc, err);
        ah_free(ms);
        return;
    }
    json_t *models = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(models, latency_json(&ms[i]));
    json_t *b = json_pack("{s:s,s:I,s:I,s:s,s:o,s:b}", "object", "latency", "since_ms",
                          (json_int_t)since, "until_ms", (json_int_t)until, "percentiles",
                          "nearest-rank", "models", models, "truncated", truncated);
    ah_reply_json(req, 200, b);
    json_decref(b);
    ah_free(ms);
}

/* --- /admin/budgets ------------------------------------------------------ */

typedef struct budget_value {
    char value[DASH_VALUE_NAME];
    double daily[DASH_HISTORY_DAYS]; /* UTC days, the last one today */
    double period_ledger_usd;        /* the current period's spend in the ledger */
} budget_value_t;

/* The ledger column a scope counts by (as the guard's and the watcher's). */
static const char *scope_column(const ah_scope_t *s)
{
    static const char *const cols[] = {"'*'", "key_id", "user", "owner", "json_extract(tags, ?4)"};
    return cols[s->kind];
}

static void bind_scope(sqlite3_stmt *st, const ah_scope_t *s, char *path, size_t n)
{
    if (s->kind != AH_SCOPE_TAG)
        return;
    snprintf(path, n, "$.\"%s\"", s->tag);
    sqlite3_bind_text(st, 4, path, -1, SQLITE_TRANSIENT);
}

/* The values a budget lists: its one value, or (a scope counting each
 * value apart) the dearest in the current period, at most
 * DASH_BUDGET_MAX_VALUES; *truncated when there were more. */
static ah_err_t budget_values(sqlite3 *db, const ah_budget_cfg_t *b, int64_t pstart,
                              budget_value_t *vs, int *n, int *truncated, ah_db_deadline_t *dl,
                              char *err, size_t errlen)
{
    *n = 0;
    if (b->scope.kind == AH_SCOPE_GLOBAL || b->scope.value) {
        memset(&vs[0], 0, sizeof vs[0]);
        snprintf(vs[0].value, sizeof vs[0].value, "%s",
                 b->scope.kind == AH_SCOPE_GLOBAL ? "*" : b->scope.value);
        *n = 1;
        return AH_E_OK;
    }
    char sql[DASH_SQL_MAX], path[DASH_TAG_PATH];
    snprintf(sql, sizeof sql,
             "SELECT v, SUM(cost_usd) AS c FROM (SELECT %s AS v, cost_usd FROM ledger"
             " WHERE ts_ms >= ?1 AND ts_ms < ?2 AND cost_usd > 0) WHERE v IS NOT NULL"
             " GROUP BY v ORDER BY c DESC, v LIMIT ?3",
             scope_column(&b->scope));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "cannot prepare the budget query: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    sqlite3_bind_int64(st, 1, pstart);
    sqlite3_bind_int64(st, 2, INT64_MAX);
    sqlite3_bind_int(st, 3, DASH_BUDGET_MAX_VALUES + 1);
    bind_scope(st, &b->scope, path, sizeof path);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == DASH_BUDGET_MAX_VALUES) {
            *truncated = 1;
            continue;
        }
        memset(&vs[*n], 0, sizeof vs[*n]);
        snprintf(vs[*n].value, sizeof vs[*n].value, "%s", (const char *)sqlite3_column_text(st, 0));
        (*n)++;
    }
    sqlite3_finalize(st);
    return step_result(db, rc, dl, err, errlen);
}

/* Each listed value's daily spend over the history and in the period. */
static ah_err_t budget_history(sqlite3 *db, const ah_budget_cfg_t *b, int64_t day0, int64_t pstart,
                               budget_value_t *vs, int n, ah_db_deadline_t *dl, char *err,
                               size_t errlen)
{
    char sql[DASH_SQL_MAX], path[DASH_TAG_PATH];
    snprintf(sql, sizeof sql,
             "SELECT v, d, SUM(cost_usd), SUM(CASE WHEN ts_ms >= ?2 THEN cost_usd ELSE 0 END)"
             " FROM (SELECT %s AS v, ts_ms / 86400000 AS d, ts_ms, cost_usd FROM ledger"
             " WHERE ts_ms >= ?1 AND cost_usd > 0) WHERE v IS NOT NULL GROUP BY v, d",
             scope_column(&b->scope));
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_err_printf(err, errlen, "cannot prepare the budget query: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    /* The period may start before the history (never: a month < 56 days);
     * read from whichever is earlier so its spend is whole. */
    int64_t from = day0 * DAY_MS < pstart ? day0 * DAY_MS : pstart;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, pstart);
    bind_scope(st, &b->scope, path, sizeof path);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        int i = -1;
        for (int k = 0; v && k < n && i < 0; k++)
            if (strcmp(vs[k].value, v) == 0)
                i = k;
        if (i < 0)
            continue;
        int64_t d = sqlite3_column_int64(st, 1) - day0;
        if (d >= 0 && d < DASH_HISTORY_DAYS)
            vs[i].daily[d] += sqlite3_column_double(st, 2);
        vs[i].period_ledger_usd += sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
    return step_result(db, rc, dl, err, errlen);
}

static const char *action_name(ah_budget_action_t a)
{
    static const char *const names[] = {"reject", "downgrade", "throttle"};
    return names[a];
}

/* One listed value of budget i: spend as the guard counts it, use, and the
 * forecast of the period's end (the watcher's method: the complete UTC
 * days before today, then the rest of today and each day to the end). */
static json_t *budget_json(ah_guard_t *g, size_t i, const ah_budget_cfg_t *b,
                           const budget_value_t *v, int64_t now, int64_t pstart, int64_t pend)
{
    char key[DASH_VALUE_NAME + 64], desc[DASH_VALUE_NAME + 64];
    ah_guard_budget_key(i, v->value, pstart, key, sizeof key);
    double spent = (double)ah_state_get(ah_guard_state(g), key) / AH_GUARD_NANO;
    int none = !v->value[0]; /* a budget by value with no value spent yet */
    ah_guard_scope_describe(&b->scope, b->scope.kind == AH_SCOPE_GLOBAL || none ? NULL : v->value,
                            desc, sizeof desc);
    int horizon = (int)((pend - now + DAY_MS - 1) / DAY_MS);
    horizon = horizon < 1                         ? 1
              : horizon > AH_FORECAST_MAX_HORIZON ? AH_FORECAST_MAX_HORIZON
                                                  : horizon;
    double left_today = 1.0 - (double)(now % DAY_MS) / (double)DAY_MS;
    int64_t day0 = now / DAY_MS - (DASH_HISTORY_DAYS - 1);
    int dow0 = (int)((day0 + 3) % 7); /* 1970-01-01 was a Thursday (Monday is 0) */
    ah_forecast_t f;
    json_t *fc = json_null();
    if (ah_forecast_daily(v->daily, DASH_HISTORY_DAYS - 1, dow0, horizon, left_today,
                          AH_FORECAST_AUTO, &f) == AH_E_OK) {
        double projected = spent + f.sum;
        fc = json_pack("{s:f,s:f,s:f,s:o,s:b,s:s}", "projected_usd", projected, "low_usd",
                       spent + f.low, "high_usd", spent + f.high, "use",
                       b->limit_usd > 0 ? json_real(projected / b->limit_usd) : json_null(),
                       "exceeds", projected >= b->limit_usd, "method",
                       ah_forecast_method_name(f.method));
    }
    return json_pack("{s:s,s:s,s:o,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:o,s:s,s:o}", "budget", b->name,
                     "scope", desc, "value", none ? json_null() : json_string(v->value), "period",
                     ah_period_name(b->period), "timezone", b->timezone ? b->timezone : "UTC",
                     "period_start_ms", (json_int_t)pstart, "period_end_ms", (json_int_t)pend,
                     "limit_usd", b->limit_usd, "spent_usd", spent, "ledger_spent_usd",
                     v->period_ledger_usd, "use",
                     b->limit_usd > 0 ? json_real(spent / b->limit_usd) : json_null(), "action",
                     action_name(b->action), "forecast", fc);
}

/* GET /admin/budgets: see docs/dashboard.md. */
static void budgets(ah_worker_t *w, struct evhttp_request *req)
{
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    ah_guard_t *g = w->gw->guard;
    int64_t now = ah_wall_ms(), day0 = now / DAY_MS - (DASH_HISTORY_DAYS - 1);
    char err[256] = "";
    /* The history's days, and every budget's current period. */
    int64_t from = day0 * DAY_MS;
    for (size_t i = 0; g && i < gc->nbudgets; i++) {
        int64_t pstart, pend;
        ah_guard_period(g, i, now, &pstart, &pend);
        from = pstart < from ? pstart : from;
    }
    sqlite3 *db = ledger_for(w, from, 0, err, sizeof err);
    if (!db) {
        reply_failure(req, AH_E_DB, err);
        return;
    }
    json_t *data = json_array();
    budget_value_t *vs = ah_calloc(DASH_BUDGET_MAX_VALUES, sizeof *vs);
    ah_err_t rc = AH_E_OK;
    int truncated = 0;
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, DASH_QUERY_MAX_MS);
    for (size_t i = 0; g && i < gc->nbudgets && !rc; i++) {
        const ah_budget_cfg_t *b = &gc->budgets[i];
        int64_t pstart, pend;
        int n = 0;
        ah_guard_period(g, i, now, &pstart, &pend);
        rc = budget_values(db, b, pstart, vs, &n, &truncated, &dl, err, sizeof err);
        if (!rc && n == 0) {
            /* Each value apart, none spent yet: one row, so the budget shows. */
            memset(&vs[0], 0, sizeof vs[0]);
            n = 1;
        }
        if (!rc)
            rc = budget_history(db, b, day0, pstart, vs, n, &dl, err, sizeof err);
        for (int k = 0; k < n && !rc; k++)
            json_array_append_new(data, budget_json(g, i, b, &vs[k], now, pstart, pend));
    }
    ah_db_deadline_disarm(db);
    ledger_done(w, db);
    ah_free(vs);
    if (rc) {
        reply_failure(req, rc, err);
        json_decref(data);
        return;
    }
    json_t *out = json_pack("{s:s,s:I,s:o,s:b}", "object", "list", "as_of_ms", (json_int_t)now,
                            "data", data, "truncated", truncated);
    ah_reply_json(req, 200, out);
    json_decref(out);
}

/* --- /admin/experiments -------------------------------------------------- */

/* GET /admin/experiments?since=7d&name=: the report `ahorro experiments
 * show --json` prints (quality/experiment.h). */
static void experiments(ah_worker_t *w, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    int64_t now = ah_wall_ms(), since, until;
    const char *bad = query && evhttp_parse_query_str(query, &q) != 0
                          ? "malformed query string"
                          : parse_range(&q, "7d", now, &since, &until);
    if (bad) {
        reply_bad(req, bad);
        evhttp_clear_headers(&q);
        return;
    }
    char err[256] = "";
    json_t *rep = NULL;
    sqlite3 *db = ledger_for(w, since, 0, err, sizeof err);
    if (!db) {
        evhttp_clear_headers(&q);
        reply_failure(req, AH_E_DB, err);
        return;
    }
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, DASH_QUERY_MAX_MS);
    ah_err_t rc = ah_experiment_report(db, w->gw->cfg, evhttp_find_header(&q, "name"), since, &rep,
                                       err, sizeof err);
    ah_db_deadline_disarm(db);
    ledger_done(w, db);
    evhttp_clear_headers(&q);
    if (rc == AH_E_NOTFOUND)
        ah_reply_error(req, AH_API_OPENAI, 404, "invalid_request_error", "not_found", err);
    else if (rc)
        reply_failure(req, dl.expired ? AH_E_TIMEOUT : rc, err);
    else
        ah_reply_json(req, 200, rep);
    json_decref(rep);
}

/* --- dispatch ------------------------------------------------------------ */

int ah_dashboard_admin(ah_worker_t *w, struct evhttp_request *req, const char *path)
{
    int lat = strcmp(path, "/admin/latency") == 0, bud = strcmp(path, "/admin/budgets") == 0;
    int exp = strcmp(path, "/admin/experiments") == 0;
    if (!lat && !bud && !exp)
        return 0;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        ah_reply_error(req, AH_API_OPENAI, 405, "invalid_request_error", NULL,
                       "Method not allowed: use GET");
        return 1;
    }
    if (exp) {
        experiments(w, req);
        return 1;
    }
    if (bud) {
        budgets(w, req);
        return 1;
    }
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && evhttp_parse_query_str(query, &q) != 0)
        reply_bad(req, "malformed query string");
    else
        latency(w, req, &q);
    evhttp_clear_headers(&q);
    return 1;
}
