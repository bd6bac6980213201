/* watch.c - projection alerts for budgets (see watch.h). */
#include "guard/watch.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "store/db.h"
#include "store/forecast.h"
#include "store/ledger_read.h"

/* Days of daily history a projection is made from. */
#define WATCH_HISTORY_DAYS 56
/* Scope values projected per budget (the dearest first). */
#define WATCH_MAX_VALUES 64
#define DAY_MS 86400000LL

struct ah_guard_watch {
    const ah_config_t *cfg;
    ah_guard_t *g;
    char *db_path;
    double interval_s;
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;
};

typedef struct series {
    char value[256];
    double daily[WATCH_HISTORY_DAYS];
    double period_spent;
} series_t;

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    return s * n;
}

/* POST body to url, blocking, at most 10 s. */
static void post(const char *url, const char *body)
{
    CURL *c = curl_easy_init();
    if (!c)
        return;
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status >= 300)
        ah_warn("budget forecast alert: the webhook failed (%s, HTTP %ld)",
                rc ? curl_easy_strerror(rc) : "answered", status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void project_alert(const ah_budget_cfg_t *b, const char *value, double spent,
                          double projected, double low, double high, int64_t start, int64_t end)
{
    char desc[300], text[800];
    ah_guard_scope_describe(&b->scope, value, desc, sizeof desc);
    snprintf(text, sizeof text,
             "ahorro: budget '%s' (%s, per %s) is projected to reach $%.2f (90%% interval "
             "$%.2f-$%.2f) of its $%.2f by the end of the %s; $%.4f spent so far",
             b->name, desc, ah_period_name(b->period), projected, low, high, b->limit_usd,
             ah_period_name(b->period), spent);
    ah_warn("%s", text);
    if (!b->webhook)
        return;
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:f,s:f,s:f,s:f,s:f,s:I,s:I}", "text", text, "kind",
                  "projection", "budget", b->name, "scope", desc, "period",
                  ah_period_name(b->period), "spent_usd", spent, "projected_usd", projected,
                  "projected_low_usd", low, "projected_high_usd", high, "limit_usd", b->limit_usd,
                  "period_start_ms", (json_int_t)start, "period_end_ms", (json_int_t)end);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (body)
        post(b->webhook, body);
    free(body);
}

/* The daily spend of budget i's scope values over the history, and their
 * spend in the current period. */
static int load_series(sqlite3 *db, const ah_budget_cfg_t *b, int64_t day0, int64_t pstart,
                       series_t *out, int max)
{
    static const char *const cols[] = {"'*'", "key_id", "user", "owner", "json_extract(tags, ?3)"};
    char sql[600], path[300];
    snprintf(sql, sizeof sql,
             "SELECT %s AS v, ts_ms / 86400000 AS d, SUM(cost_usd), "
             "SUM(CASE WHEN ts_ms >= ?2 THEN cost_usd ELSE 0 END) FROM ledger "
             "WHERE ts_ms >= ?1 AND cost_usd > 0 AND v IS NOT NULL GROUP BY v, d",
             cols[b->scope.kind]);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, day0 * DAY_MS);
    sqlite3_bind_int64(st, 2, pstart);
    if (b->scope.kind == AH_SCOPE_TAG) {
        snprintf(path, sizeof path, "$.\"%s\"", b->scope.tag);
        sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
    }
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        int64_t d = sqlite3_column_int64(st, 1) - day0;
        if (!v || d < 0 || d >= WATCH_HISTORY_DAYS ||
            (b->scope.value && strcmp(v, b->scope.value) != 0))
            continue;
        int k = 0;
        while (k < n && strcmp(out[k].value, v) != 0)
            k++;
        if (k == n) {
            if (n == max)
                continue; /* bounded: later values are not projected */
            memset(&out[n], 0, sizeof out[n]);
            snprintf(out[n].value, sizeof out[n].value, "%s", v);
            n++;
        }
        out[k].daily[d] += sqlite3_column_double(st, 2);
        out[k].period_spent += sqlite3_column_double(st, 3);
    }
    sqlite3_finalize(st);
    return n;
}

int ah_guard_watch_check(const ah_config_t *cfg, ah_guard_t *g, const char *db_path, int64_t now)
{
    sqlite3 *db = NULL;
    int64_t today = now / DAY_MS, day0 = today - (WATCH_HISTORY_DAYS - 1);
    if (cfg->ledger.url) { /* the history's rows, mirrored from PostgreSQL */
        char why[512];
        int64_t since = day0 * DAY_MS;
        for (size_t i = 0; i < cfg->guard.nbudgets; i++) {
            int64_t start, end;
            ah_guard_period(g, i, now, &start, &end);
            since = start < since ? start : since;
        }
        if (ah_ledger_read_open(cfg, since, 0, &db, why, sizeof why)) {
            ah_warn("budget forecasts: %s", why);
            return 0;
        }
    } else if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return 0;
    }
    sqlite3_busy_timeout(db, 2000);
    series_t *s = ah_calloc(WATCH_MAX_VALUES, sizeof *s);
    int sent = 0;
    for (size_t i = 0; i < cfg->guard.nbudgets; i++) {
        const ah_budget_cfg_t *b = &cfg->guard.budgets[i];
        int64_t start, end;
        ah_guard_period(g, i, now, &start, &end);
        int n = load_series(db, b, day0, start, s, WATCH_MAX_VALUES);
        /* Complete days: all but today; the forecast covers the rest of
         * today (weighted by what is left of it) to the period's end. */
        int horizon = (int)((end - now + DAY_MS - 1) / DAY_MS);
        if (horizon < 1)
            horizon = 1;
        if (horizon > AH_FORECAST_MAX_HORIZON)
            horizon = AH_FORECAST_MAX_HORIZON;
        double left_today = 1.0 - (double)(now % DAY_MS) / (double)DAY_MS;
        int dow0 = (int)((day0 + 3) % 7); /* 1970-01-01 was a Thursday (3, Monday 0) */
        for (int k = 0; k < n; k++) {
            ah_forecast_t f;
            if (ah_forecast_daily(s[k].daily, WATCH_HISTORY_DAYS - 1, dow0, horizon, left_today,
                                  AH_FORECAST_AUTO, &f))
                continue;
            /* Today so far is spent already; the forecast's first day is
             * the rest of it. */
            double projected = s[k].period_spent + f.sum;
            if (projected < b->limit_usd || s[k].period_spent >= b->limit_usd)
                continue;
            char mark[600];
            snprintf(mark, sizeof mark, "p%zu:%s:%lld", i, s[k].value, (long long)start);
            if (!ah_state_add_if(ah_guard_state(g), mark, 1, 1, end + DAY_MS, NULL))
                continue;
            project_alert(b, s[k].value, s[k].period_spent, projected, s[k].period_spent + f.low,
                          s[k].period_spent + f.high, start, end);
            sent++;
        }
    }
    ah_free(s);
    sqlite3_close(db);
    return sent;
}

static void *watch_main(void *arg)
{
    ah_guard_watch_t *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        ah_guard_watch_check(w->cfg, w->g, w->db_path, ah_wall_ms());
        pthread_mutex_lock(&w->lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double until = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + w->interval_s;
        ts.tv_sec = (time_t)until;
        ts.tv_nsec = (long)((until - floor(until)) * 1e9);
        while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

ah_guard_watch_t *ah_guard_watch_start(const ah_config_t *cfg, ah_guard_t *g, const char *db_path,
                                       double interval_s)
{
    if (!g || !cfg->guard.nbudgets || interval_s <= 0)
        return NULL;
    ah_guard_watch_t *w = ah_calloc(1, sizeof *w);
    w->cfg = cfg;
    w->g = g;
    w->db_path = ah_strdup(db_path);
    w->interval_s = interval_s;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    /* The thread must never take SIGTERM/SIGINT (the main thread waits for
     * them with sigwait): it starts with them blocked. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&w->tid, NULL, watch_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        ah_warn("budget forecasts: cannot start the watcher thread");
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        ah_free(w->db_path);
        ah_free(w);
        return NULL;
    }
    return w;
}

void ah_guard_watch_stop(ah_guard_watch_t *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->tid, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    ah_free(w->db_path);
    ah_free(w);
}
