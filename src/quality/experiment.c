/* experiment.c - assignment of arms, the bandit's weights, and the report
 * of what each arm did (experiment.h; docs/experiments.md).
 *
 * The report reads the ledger rows tagged experiment=NAME (stage 2 tags
 * them; the live judges' own calls, purpose=judge, are left out), joins
 * the feedback given for them and the live judges' scores (the judgments
 * table), and compares every arm with the first one, the control: Welch's
 * t-test for cost, latency, score and judge score, the two-proportion
 * z-test for error and "wrong" shares (quality/stats.h).
 * A difference is called significant at p < 0.05; a test run once per look
 * at a growing sample overstates significance (peeking), which the docs
 * say. */
#include "quality/experiment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/hash.h"
#include "quality/stats.h"

#define SIGNIFICANT_P 0.05
/* Groups of the satisfaction table at most. */
#define SATISFACTION_MAX_ROWS 200

int ah_experiment_find(const ah_experiments_config_t *ec, const char *model, const json_t *tags)
{
    for (size_t i = 0; model && i < ec->n; i++) {
        const ah_experiment_cfg_t *e = &ec->list[i];
        if (strcmp(e->route, model) == 0 &&
            ah_when_tags_hold(tags, e->when_key, e->when_value, e->nwhen))
            return (int)i;
    }
    return -1;
}

int ah_when_tags_hold(const json_t *tags, char *const *keys, char *const *values, int n)
{
    for (int k = 0; k < n; k++) {
        const char *v = json_string_value(json_object_get(tags, keys[k]));
        if (!v || strcmp(v, values[k]) != 0)
            return 0;
    }
    return 1;
}

int ah_experiment_pick(const ah_experiment_cfg_t *e, const double *weights, const char *who)
{
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, e->name, strlen(e->name) + 1);
    h = ah_fnv1a(h, who ? who : "", who ? strlen(who) : 0);
    /* FNV's low bits mix poorly for short inputs: fold the high half in */
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    double u = (double)(h >> 11) / 9007199254740992.0; /* 2^53: [0, 1) */
    double total = 0;
    for (int i = 0; i < e->narms; i++)
        total += weights ? weights[i] : e->arms[i].weight;
    double at = u * total, acc = 0;
    for (int i = 0; i < e->narms; i++) {
        acc += weights ? weights[i] : e->arms[i].weight;
        if (at < acc)
            return i;
    }
    return e->narms - 1;
}

int ah_experiment_bandit(const ah_experiment_cfg_t *e, const ah_experiment_arm_stats_t *arms,
                         double *weights, char *why, size_t whylen)
{
    double total = 0;
    for (int i = 0; i < e->narms; i++)
        total += e->arms[i].weight;
    for (int i = 0; i < e->narms; i++)
        weights[i] = e->arms[i].weight / total;
    int best = -1, ready = 0;
    double best_qpd = -1;
    for (int i = 0; i < e->narms; i++) {
        if (arms[i].scored < AH_EXPERIMENT_BANDIT_MIN_N)
            continue;
        ready++;
        if (arms[i].score_mean < e->min_quality)
            continue;
        /* a free arm (cost unknown or 0) is ranked by its score alone, above priced ones */
        double qpd = arms[i].cost_mean > 0 ? arms[i].score_mean / arms[i].cost_mean
                                           : 1e18 * arms[i].score_mean;
        if (qpd > best_qpd) {
            best_qpd = qpd;
            best = i;
        }
    }
    if (ready < e->narms) {
        snprintf(why, whylen,
                 "configured weights: every arm needs %d scored requests before the policy "
                 "shifts traffic",
                 AH_EXPERIMENT_BANDIT_MIN_N);
        return -1;
    }
    if (best < 0) {
        snprintf(why, whylen, "configured weights: no arm reaches min_quality %.2f",
                 e->min_quality);
        return -1;
    }
    for (int i = 0; i < e->narms; i++)
        weights[i] = i == best ? 1 - e->floor * (e->narms - 1) : e->floor;
    int n = snprintf(why, whylen, "shifted to arm %s: quality/$ %.4g (score %.3f, $%.6f/request)",
                     e->arms[best].name, best_qpd, arms[best].score_mean, arms[best].cost_mean);
    for (int i = 0; i < e->narms && n > 0 && (size_t)n < whylen; i++)
        if (i != best)
            n += snprintf(why + n, whylen - (size_t)n, "; %s: score %.3f%s, $%.6f/request",
                          e->arms[i].name, arms[i].score_mean,
                          arms[i].score_mean < e->min_quality ? " (under min_quality)" : "",
                          arms[i].cost_mean);
    return best;
}

/* --- the report ---------------------------------------------------------- */

typedef struct arm_acc {
    long requests, errors, feedback, wrong, judge_failed;
    double cost_total;
    ah_stats_t cost, latency, score;
    ah_stats_t judge; /* live judges' scores (judgments), one mean per request */
    double *lat;      /* successful requests' latencies, for percentiles */
    size_t nlat, caplat;
} arm_acc_t;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted v[0..n). */
static double percentile(const double *v, size_t n, double p)
{
    size_t k = (size_t)ceil(p * (double)n);
    return v[k ? k - 1 : 0];
}

static void keep_latency(arm_acc_t *a, double ms)
{
    if (a->nlat == a->caplat) {
        a->caplat = a->caplat ? 2 * a->caplat : 256;
        a->lat = ah_realloc(a->lat, a->caplat * sizeof *a->lat);
    }
    a->lat[a->nlat++] = ms;
}

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

/* A comparison's verdict: the difference, the p-value, and in words. */
static json_t *verdict(int tested, double diff, double p, long n, long n0)
{
    char text[128];
    int sig = tested && p < SIGNIFICANT_P;
    if (sig)
        snprintf(text, sizeof text, "significant (p=%.3g)", p);
    else if (tested)
        snprintf(text, sizeof text, "not yet significant (p=%.2f, n=%ld vs %ld)", p, n, n0);
    else
        snprintf(text, sizeof text, "not yet significant (n=%ld vs %ld)", n, n0);
    return json_pack("{s:o,s:o,s:b,s:s}", "diff", num_or_null(n && n0, diff), "p",
                     num_or_null(tested, p), "significant", sig, "verdict", text);
}

static json_t *compare_means(const ah_stats_t *a, const ah_stats_t *c)
{
    double t, df, p;
    int tested = ah_stats_welch(a, c, &t, &df, &p) == 0;
    return verdict(tested, a->mean - c->mean, p, a->n, c->n);
}

static json_t *compare_shares(long x, long n, long x0, long n0)
{
    double z, p;
    int tested = ah_stats_two_prop(x, n, x0, n0, &z, &p) == 0;
    double d = n && n0 ? (double)x / (double)n - (double)x0 / (double)n0 : 0;
    return verdict(tested, d, p, n, n0);
}

static json_t *arm_json(const ah_experiment_cfg_t *e, int i, double weight_now, arm_acc_t *a,
                        const arm_acc_t *c)
{
    const ah_experiment_arm_t *cfg = &e->arms[i];
    if (a->nlat)
        qsort(a->lat, a->nlat, sizeof *a->lat, cmp_double);
    /* quality per dollar on the policy's metric */
    const ah_stats_t *q = e->metric == AH_METRIC_JUDGE ? &a->judge : &a->score;
    int have_q = q->n > 0 && a->cost.n > 0 && a->cost.mean > 0;
    json_t *o = json_pack(
        "{s:s,s:s?,s:s?,s:f,s:f,s:I,s:I,s:o,s:f,s:o,s:o,s:o,s:o,s:o,s:I,s:I,s:o,s:o,s:o,s:o}",
        "name", cfg->name, "model", cfg->model, "prompt", cfg->prompt, "weight", cfg->weight,
        "weight_now", weight_now, "requests", (json_int_t)a->requests, "errors",
        (json_int_t)a->errors, "error_rate",
        num_or_null(a->requests > 0, (double)a->errors / (double)(a->requests ? a->requests : 1)),
        "cost_total_usd", a->cost_total, "cost_per_request_usd",
        num_or_null(a->cost.n > 0, a->cost.mean), "cost_ci95", ci_json(&a->cost), "latency_p50_ms",
        num_or_null(a->nlat > 0, a->nlat ? percentile(a->lat, a->nlat, 0.5) : 0), "latency_p95_ms",
        num_or_null(a->nlat > 0, a->nlat ? percentile(a->lat, a->nlat, 0.95) : 0),
        "latency_mean_ms", num_or_null(a->latency.n > 0, a->latency.mean), "feedback",
        (json_int_t)a->feedback, "scored", (json_int_t)a->score.n, "score_mean",
        num_or_null(a->score.n > 0, a->score.mean), "score_ci95", ci_json(&a->score), "wrong_share",
        num_or_null(a->feedback > 0, (double)a->wrong / (double)(a->feedback ? a->feedback : 1)),
        "quality_per_usd", num_or_null(have_q, have_q ? q->mean / a->cost.mean : 0));
    json_object_set_new(o, "judged", json_integer(a->judge.n));
    json_object_set_new(o, "judge_failed", json_integer(a->judge_failed));
    json_object_set_new(o, "judge_mean", num_or_null(a->judge.n > 0, a->judge.mean));
    json_object_set_new(o, "judge_ci95", ci_json(&a->judge));
    if (c && c != a)
        json_object_set_new(
            o, "vs_control",
            json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", "cost", compare_means(&a->cost, &c->cost),
                      "latency", compare_means(&a->latency, &c->latency), "score",
                      compare_means(&a->score, &c->score), "judge",
                      compare_means(&a->judge, &c->judge), "wrong",
                      compare_shares(a->wrong, a->feedback, c->wrong, c->feedback), "errors",
                      compare_shares(a->errors, a->requests, c->errors, c->requests)));
    return o;
}

static int arm_index(const ah_experiment_cfg_t *e, const char *name)
{
    for (int i = 0; name && i < e->narms; i++)
        if (strcmp(e->arms[i].name, name) == 0)
            return i;
    return -1;
}

/* The ledger rows of experiment e since since_ms into acc (one per arm). */
static ah_err_t read_rows(sqlite3 *db, const ah_experiment_cfg_t *e, int64_t since_ms,
                          arm_acc_t *acc, int *truncated, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    long rows = 0;
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT json_extract(l.tags, '$.arm'), l.cost_usd, l.latency_ms, l.status, f.score, "
        "f.wrong, f.n, j.score, j.n FROM ledger l LEFT JOIN (SELECT request_id, AVG(score) AS "
        "score, MAX(wrong) AS wrong, COUNT(*) AS n FROM feedback WHERE ts_ms >= ?1 GROUP BY "
        "request_id) f ON f.request_id = l.request_id LEFT JOIN (SELECT request_id, AVG(score) "
        "AS score, COUNT(*) AS n FROM judgments WHERE ts_ms >= ?1 GROUP BY request_id) j ON "
        "j.request_id = l.request_id WHERE l.attempt_of IS NULL AND l.ts_ms >= ?1 AND "
        "json_extract(l.tags, '$.experiment') = ?2 AND "
        "COALESCE(json_extract(l.tags, '$.purpose'), '') <> 'judge' LIMIT ?3",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, since_ms);
    sqlite3_bind_text(st, 2, e->name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, AH_EXPERIMENT_REPORT_MAX_ROWS + 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (++rows > AH_EXPERIMENT_REPORT_MAX_ROWS) {
            *truncated = 1;
            continue;
        }
        int i = arm_index(e, (const char *)sqlite3_column_text(st, 0));
        if (i < 0)
            continue; /* an arm the configuration no longer has */
        arm_acc_t *a = &acc[i];
        int status = sqlite3_column_int(st, 3);
        a->requests++;
        if (status >= 400)
            a->errors++;
        if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
            double c = sqlite3_column_double(st, 1);
            a->cost_total += c;
            ah_stats_add(&a->cost, c);
        }
        if (status < 400) {
            double ms = sqlite3_column_double(st, 2);
            ah_stats_add(&a->latency, ms);
            keep_latency(a, ms);
        }
        if (sqlite3_column_int(st, 6) > 0) {
            a->feedback++;
            a->wrong += sqlite3_column_int(st, 5) != 0;
            if (sqlite3_column_type(st, 4) != SQLITE_NULL)
                ah_stats_add(&a->score, sqlite3_column_double(st, 4));
        }
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) /* several verdicts: their mean */
            ah_stats_add(&a->judge, sqlite3_column_double(st, 7));
        else if (sqlite3_column_int(st, 8) > 0)
            a->judge_failed++;
    }
out:
    if (rc != SQLITE_DONE)
        ah_err_printf(err, errlen, "ledger query failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? AH_E_OK : AH_E_DB;
}

static json_t *experiment_json(const ah_experiment_cfg_t *e, arm_acc_t *acc, int truncated)
{
    ah_experiment_arm_stats_t st[AH_EXPERIMENT_MAX_ARMS];
    double w[AH_EXPERIMENT_MAX_ARMS];
    char why[512] = "fixed weights";
    for (int i = 0; i < e->narms; i++) {
        const ah_stats_t *q = e->metric == AH_METRIC_JUDGE ? &acc[i].judge : &acc[i].score;
        st[i] = (ah_experiment_arm_stats_t){q->n, q->mean, acc[i].cost.mean};
    }
    int best = -1;
    if (e->policy == AH_POLICY_BANDIT) {
        best = ah_experiment_bandit(e, st, w, why, sizeof why);
    } else {
        double total = 0;
        for (int i = 0; i < e->narms; i++)
            total += e->arms[i].weight;
        for (int i = 0; i < e->narms; i++)
            w[i] = e->arms[i].weight / total;
    }
    json_t *arms = json_array(), *weights = json_array(), *when = json_object();
    for (int i = 0; i < e->narms; i++) {
        json_array_append_new(arms, arm_json(e, i, w[i], &acc[i], &acc[0]));
        json_array_append_new(weights, json_real(w[i]));
    }
    for (int j = 0; j < e->nwhen; j++)
        json_object_set_new(when, e->when_key[j], json_string(e->when_value[j]));
    return json_pack(
        "{s:s,s:s,s:{s:o},s:s,s:{s:s,s:s,s:f,s:f,s:o,s:s?,s:s},s:o,s:b}", "name", e->name, "route",
        e->route, "when", "tags", when, "sticky", e->sticky == AH_STICKY_KEY ? "key" : "user",
        "policy", "kind", e->policy == AH_POLICY_BANDIT ? "bandit" : "fixed", "metric",
        e->metric == AH_METRIC_JUDGE ? "judge" : "feedback", "min_quality", e->min_quality, "floor",
        e->floor, "weights_now", weights, "winner", best >= 0 ? e->arms[best].name : NULL, "note",
        why, "arms", arms, "truncated", truncated);
}

/* Feedback by feature, route (requested model) and experiment arm. */
static ah_err_t satisfaction(sqlite3 *db, const char *name, int64_t since_ms, json_t **out,
                             char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT COALESCE(json_extract(l.tags, '$.feature'), ''), COALESCE(l.requested_model, ''), "
        "COALESCE(json_extract(l.tags, '$.experiment'), ''), "
        "COALESCE(json_extract(l.tags, '$.arm'), ''), COUNT(*), COUNT(f.score), AVG(f.score), "
        "AVG(f.wrong) FROM feedback f JOIN ledger l ON l.request_id = f.request_id "
        "WHERE f.ts_ms >= ?1 AND (?2 IS NULL OR json_extract(l.tags, '$.experiment') = ?2) "
        "GROUP BY 1, 2, 3, 4 ORDER BY 5 DESC LIMIT ?3",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto out;
    sqlite3_bind_int64(st, 1, since_ms);
    if (name)
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, SATISFACTION_MAX_ROWS);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long scored = sqlite3_column_int64(st, 5);
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:o,s:f}", "feature",
                                             (const char *)sqlite3_column_text(st, 0), "route",
                                             (const char *)sqlite3_column_text(st, 1), "experiment",
                                             (const char *)sqlite3_column_text(st, 2), "arm",
                                             (const char *)sqlite3_column_text(st, 3), "feedback",
                                             (json_int_t)sqlite3_column_int64(st, 4), "scored",
                                             (json_int_t)scored, "score_mean",
                                             num_or_null(scored > 0, sqlite3_column_double(st, 6)),
                                             "wrong_share", sqlite3_column_double(st, 7)));
    }
out:
    if (rc != SQLITE_DONE)
        ah_err_printf(err, errlen, "feedback query failed: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return AH_E_DB;
    }
    *out = arr;
    return AH_E_OK;
}

ah_err_t ah_experiment_report(sqlite3 *db, const ah_config_t *cfg, const char *name,
                              int64_t since_ms, json_t **out, char *err, size_t errlen)
{
    const ah_experiments_config_t *ec = &cfg->experiments;
    json_t *data = json_array(), *sat = NULL;
    ah_err_t rc = name ? AH_E_NOTFOUND : AH_E_OK;
    *out = NULL;
    for (size_t i = 0; i < ec->n; i++) {
        const ah_experiment_cfg_t *e = &ec->list[i];
        if (name && strcmp(name, e->name) != 0)
            continue;
        arm_acc_t acc[AH_EXPERIMENT_MAX_ARMS];
        int truncated = 0;
        memset(acc, 0, sizeof acc);
        rc = read_rows(db, e, since_ms, acc, &truncated, err, errlen);
        if (!rc)
            json_array_append_new(data, experiment_json(e, acc, truncated));
        for (int j = 0; j < e->narms; j++)
            ah_free(acc[j].lat);
        if (rc)
            goto out;
    }
    if (rc == AH_E_NOTFOUND) {
        ah_err_printf(err, errlen, "no experiment '%s' in the configuration", name);
        goto out;
    }
    if ((rc = satisfaction(db, name, since_ms, &sat, err, errlen)))
        goto out;
    *out =
        json_pack("{s:s,s:I,s:I,s:o,s:o}", "object", "list", "as_of_ms", (json_int_t)ah_wall_ms(),
                  "since_ms", (json_int_t)since_ms, "data", data, "satisfaction", sat);
    data = NULL;
out:
    json_decref(data);
    return rc;
}

int ah_experiment_report_weights(const json_t *report_exp, double *weights, int narms)
{
    const json_t *w = json_object_get(json_object_get(report_exp, "policy"), "weights_now");
    if (!json_is_array(w) || (int)json_array_size(w) != narms)
        return -1;
    for (int i = 0; i < narms; i++)
        weights[i] = json_number_value(json_array_get(w, (size_t)i));
    return 0;
}
