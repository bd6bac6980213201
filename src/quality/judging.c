/* judging.c - which entry judges a request, what a verdict scores, and the
 * drift report (judging.h; docs/experiments.md).
 *
 * The drift report groups judgments by route and judge (a change of judge
 * changes the scale, so it is never mixed into one series) and by UTC day
 * or ISO week, and compares every period with the one right before it by
 * Welch's t-test (quality/stats.h). Failed judgments are counted, never
 * averaged. */
#include "quality/judging.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "quality/experiment.h"
#include "quality/score.h"
#include "quality/stats.h"

#define SIGNIFICANT_P 0.05
#define DAY_MS 86400000LL

int ah_judging_find(const ah_judging_config_t *jc, const char *model, const json_t *tags)
{
    for (size_t i = 0; model && i < jc->n; i++) {
        const ah_judging_cfg_t *j = &jc->list[i];
        if (strcmp(j->route, model) == 0 &&
            ah_when_tags_hold(tags, j->when_key, j->when_value, j->nwhen))
            return (int)i;
    }
    return -1;
}

int ah_judging_criteria(const ah_judging_cfg_t *j, const char *const **names)
{
    if (j->ncriteria > 0) {
        *names = (const char *const *)j->criteria;
        return j->ncriteria;
    }
    *names = ah_judge_default_criteria;
    return AH_JUDGE_DEFAULT_N;
}

double ah_judging_score(const int *grades, int n)
{
    if (n < 1)
        return NAN;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (grades[i] < AH_JUDGE_SCORE_MIN || grades[i] > AH_JUDGE_SCORE_MAX)
            return NAN;
        sum += (double)(grades[i] - 1) / 9.0;
    }
    return sum / n;
}

char *ah_judging_grades_json(const char *const *names, const int *grades, int n)
{
    json_t *o = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(o, names[i], json_integer(grades[i]));
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *out = ah_strdup(s ? s : "{}"); /* one allocator for the caller */
    free(s);
    return out;
}

int64_t ah_drift_period_start(int64_t ts_ms, ah_drift_by_t by)
{
    int64_t days = ts_ms >= 0 ? ts_ms / DAY_MS : -((-ts_ms + DAY_MS - 1) / DAY_MS);
    if (by == AH_DRIFT_WEEK) {
        /* 1970-01-01 was a Thursday: Monday is 3 days before */
        int64_t wd = ((days + 3) % 7 + 7) % 7;
        days -= wd;
    }
    return days * DAY_MS;
}

/* --- the drift report ---------------------------------------------------- */

typedef struct period {
    char *route, *judge;
    int64_t start;
    long failed;
    ah_stats_t score;
} period_t;

static json_t *num_or_null(int have, double v)
{
    return have && isfinite(v) ? json_real(v) : json_null();
}

static json_t *ci_json(const ah_stats_t *s)
{
    double lo, hi;
    if (ah_stats_ci95(s, &lo, &hi))
        return json_null();
    return json_pack("[f,f]", lo, hi);
}

static void day_label(int64_t ms, char *buf, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%d", &tm);
}

/* This period against the one before: the change of the mean, Welch's p. */
static json_t *vs_previous(const period_t *p, const period_t *prev)
{
    char label[32], text[160];
    double t, df, pv = 1;
    day_label(prev->start, label, sizeof label);
    int tested = ah_stats_welch(&p->score, &prev->score, &t, &df, &pv) == 0;
    int sig = tested && pv < SIGNIFICANT_P;
    if (sig)
        snprintf(text, sizeof text, "significant (p=%.3g)", pv);
    else if (tested)
        snprintf(text, sizeof text, "not yet significant (p=%.2f, n=%ld vs %ld)", pv, p->score.n,
                 prev->score.n);
    else
        snprintf(text, sizeof text, "not yet significant (n=%ld vs %ld)", p->score.n,
                 prev->score.n);
    int both = p->score.n > 0 && prev->score.n > 0;
    return json_pack("{s:s,s:o,s:o,s:b,s:s}", "period", label, "diff",
                     num_or_null(both, p->score.mean - prev->score.mean), "p",
                     num_or_null(tested, pv), "significant", sig, "verdict", text);
}

static json_t *period_json(const period_t *p, const period_t *prev)
{
    char label[32];
    day_label(p->start, label, sizeof label);
    return json_pack("{s:s,s:I,s:I,s:I,s:o,s:o,s:o,s:o}", "period", label, "start_ms",
                     (json_int_t)p->start, "judged", (json_int_t)p->score.n, "failed",
                     (json_int_t)p->failed, "score_mean",
                     num_or_null(p->score.n > 0, p->score.mean), "score_sd",
                     num_or_null(p->score.n > 1, ah_stats_sd(&p->score)), "score_ci95",
                     ci_json(&p->score), "vs_previous", prev ? vs_previous(p, prev) : json_null());
}

/* The series of periods[from..to) (one route and judge) as JSON. */
static json_t *series_json(const period_t *ps, size_t from, size_t to, ah_drift_by_t by)
{
    ah_stats_t all = {0};
    long failed = 0;
    json_t *arr = json_array();
    int64_t step = by == AH_DRIFT_WEEK ? 7 * DAY_MS : DAY_MS;
    for (size_t i = from; i < to; i++) {
        const period_t *prev =
            i > from && ps[i - 1].start == ps[i].start - step ? &ps[i - 1] : NULL;
        json_array_append_new(arr, period_json(&ps[i], prev));
        failed += ps[i].failed;
        /* the pooled sample of the whole range (Chan et al.'s combination) */
        const ah_stats_t *s = &ps[i].score;
        if (s->n) {
            long n = all.n + s->n;
            double d = s->mean - all.mean;
            all.m2 += s->m2 + d * d * (double)all.n * (double)s->n / (double)n;
            all.mean += d * (double)s->n / (double)n;
            all.n = n;
        }
    }
    return json_pack("{s:s,s:s,s:I,s:I,s:o,s:o,s:o}", "route", ps[from].route, "judge",
                     ps[from].judge, "judged", (json_int_t)all.n, "failed", (json_int_t)failed,
                     "score_mean", num_or_null(all.n > 0, all.mean), "score_ci95", ci_json(&all),
                     "periods", arr);
}

ah_err_t ah_drift_report(sqlite3 *db, const char *route, int64_t since_ms, ah_drift_by_t by,
                         json_t **out, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    period_t *ps = NULL;
    size_t n = 0, cap = 0;
    long rows = 0;
    int truncated = 0;
    *out = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT COALESCE(route, ''), judge, ts_ms, score FROM judgments "
                                "WHERE ts_ms >= ?1 AND (?2 IS NULL OR route = ?2) "
                                "ORDER BY 1, 2, ts_ms LIMIT ?3",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, since_ms);
    if (route)
        sqlite3_bind_text(st, 2, route, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, AH_DRIFT_MAX_ROWS + 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (++rows > AH_DRIFT_MAX_ROWS) {
            truncated = 1;
            continue;
        }
        const char *r = (const char *)sqlite3_column_text(st, 0);
        const char *j = (const char *)sqlite3_column_text(st, 1);
        int64_t start = ah_drift_period_start(sqlite3_column_int64(st, 2), by);
        period_t *p = n ? &ps[n - 1] : NULL;
        if (!p || p->start != start || strcmp(p->route, r) != 0 || strcmp(p->judge, j ? j : "")) {
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                ps = ah_realloc(ps, cap * sizeof *ps);
            }
            p = &ps[n++];
            memset(p, 0, sizeof *p);
            p->route = ah_strdup(r);
            p->judge = ah_strdup(j ? j : "");
            p->start = start;
        }
        if (sqlite3_column_type(st, 3) == SQLITE_NULL)
            p->failed++;
        else
            ah_stats_add(&p->score, sqlite3_column_double(st, 3));
    }
out:
    if (rc != SQLITE_DONE) {
        ah_err_printf(err, errlen, "judgments query failed: %s", sqlite3_errmsg(db));
    } else {
        json_t *series = json_array();
        for (size_t i = 0; i < n;) {
            size_t k = i + 1;
            while (k < n && strcmp(ps[k].route, ps[i].route) == 0 &&
                   strcmp(ps[k].judge, ps[i].judge) == 0)
                k++;
            json_array_append_new(series, series_json(ps, i, k, by));
            i = k;
        }
        *out =
            json_pack("{s:s,s:s,s:I,s:I,s:o,s:b}", "object", "quality.drift", "by",
                      by == AH_DRIFT_WEEK ? "week" : "day", "as_of_ms", (json_int_t)ah_wall_ms(),
                      "since_ms", (json_int_t)since_ms, "routes", series, "truncated", truncated);
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        ah_free(ps[i].route);
        ah_free(ps[i].judge);
    }
    ah_free(ps);
    return rc == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}
