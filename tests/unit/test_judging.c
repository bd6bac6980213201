/* test_judging.c - sampled live judging: the ahorro.judging config, which
 * entry takes a request, a verdict's score, the judgments writer, the
 * drift report, and the judge columns of the experiments report
 * (quality/judging.h, store/judgments.h, quality/experiment.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "config/config.h"
#include "core/alloc.h"
#include "quality/experiment.h"
#include "quality/judging.h"
#include "quality/stats.h"
#include "store/db.h"
#include "store/judgments.h"

#define MODELS                                                                                     \
    "model_list:\n"                                                                                \
    "  - model_name: big\n"                                                                        \
    "    litellm_params: {model: openai/big, api_key: x}\n"                                        \
    "  - model_name: small\n"                                                                      \
    "    litellm_params: {model: openai/small, api_key: x}\n"

#define DAY_MS 86400000LL
/* 2024-06-03T00:00:00Z, a Monday */
#define MONDAY_MS 1717372800000LL

static ah_err_t load(const char *yaml, ah_config_t **c, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-judging-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_err_t rc = ah_config_load(path, c, err, errlen);
    unlink(path);
    return rc;
}

static void expect_error(const char *yaml, const char *what)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_int_eq(load(yaml, &c, err, sizeof err), AH_E_CONFIG);
    ck_assert_msg(strstr(err, what), "wanted '%s' in: %s", what, err);
    ck_assert_ptr_null(c);
}

START_TEST(config_loads)
{
    static const char *const y = "ahorro:\n"
                                 "  judging:\n"
                                 "    - route: big\n"
                                 "      judge: small\n"
                                 "      sample: 0.05\n"
                                 "      criteria: [relevance, accuracy]\n"
                                 "      when: {tags: {feature: search}}\n"
                                 "    - {route: big, judge: small, sample: 1}\n" MODELS;
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(y, &c, err, sizeof err) == AH_E_OK, "%s", err);
    ck_assert_uint_eq(c->judging.n, 2);
    const ah_judging_cfg_t *j = &c->judging.list[0];
    ck_assert_str_eq(j->route, "big");
    ck_assert_str_eq(j->judge, "small");
    ck_assert_double_eq_tol(j->sample, 0.05, 1e-12);
    ck_assert_int_eq(j->ncriteria, 2);
    ck_assert_str_eq(j->criteria[1], "accuracy");
    ck_assert_int_eq(j->nwhen, 1);
    ck_assert_str_eq(j->when_key[0], "feature");
    ck_assert_int_eq(j->line, 3);
    ck_assert_int_eq(c->judging.list[1].ncriteria, 0);
    const char *const *names;
    ck_assert_int_eq(ah_judging_criteria(&c->judging.list[1], &names), 4);
    ck_assert_str_eq(names[0], "relevance");
    ck_assert_int_eq(ah_judging_criteria(j, &names), 2);
    ck_assert_str_eq(names[1], "accuracy");

    /* the first entry whose route and tags hold */
    json_t *search = json_pack("{s:s}", "feature", "search"), *chat = json_object();
    ck_assert_int_eq(ah_judging_find(&c->judging, "big", search), 0);
    ck_assert_int_eq(ah_judging_find(&c->judging, "big", chat), 1);
    ck_assert_int_eq(ah_judging_find(&c->judging, "big", NULL), 1);
    ck_assert_int_eq(ah_judging_find(&c->judging, "small", search), -1);
    ck_assert_int_eq(ah_judging_find(&c->judging, NULL, search), -1);
    json_decref(search);
    json_decref(chat);
    ah_config_free(c);

    /* a bandit on judge scores, over a judged route */
    static const char *const b = "ahorro:\n"
                                 "  judging:\n"
                                 "    - {route: big, judge: small, sample: 0.5}\n"
                                 "  experiments:\n"
                                 "    - name: x\n      route: big\n      arms:\n"
                                 "        - {name: a, weight: 1}\n"
                                 "        - {name: b, weight: 1, model: small}\n"
                                 "      policy: {kind: bandit, metric: judge}\n" MODELS;
    ck_assert_msg(load(b, &c, err, sizeof err) == AH_E_OK, "%s", err);
    ck_assert_int_eq(c->experiments.list[0].metric, AH_METRIC_JUDGE);
    ah_config_free(c);
}
END_TEST

START_TEST(config_errors_name_the_line)
{
    expect_error("ahorro:\n  judging:\n    - {route: big, judge: small, sample: 1.5}\n" MODELS,
                 ":3: 'sample' must be between 0 and 1");
    expect_error("ahorro:\n  judging:\n    - {route: big, sample: 0.1}\n" MODELS,
                 ":3: judging of 'big' needs 'judge'");
    expect_error("ahorro:\n  judging:\n    - {route: big, judge: small}\n" MODELS,
                 ":3: judging of 'big' needs 'sample'");
    expect_error("ahorro:\n  judging:\n    - {judge: small, sample: 1}\n" MODELS,
                 ":3: a judging entry needs 'route'");
    expect_error("ahorro:\n  judging:\n    - {route: big, judge: ghost, sample: 1}\n" MODELS,
                 ":3: judging of 'big': judge 'ghost' is not in model_list");
    expect_error("ahorro:\n  judging:\n    - {route: ghost, judge: small, sample: 1}\n" MODELS,
                 ":3: judging: route 'ghost' is not in model_list");
    expect_error("ahorro:\n  judging:\n    - route: big\n      judge: small\n      sample: 1\n"
                 "      criteria: [relevance, Accuracy]\n" MODELS,
                 ":6: criterion 'Accuracy' must be");
    expect_error("ahorro:\n  judging:\n    - route: big\n      judge: small\n      sample: 1\n"
                 "      criteria: [reason]\n" MODELS,
                 ":6: criterion 'reason' must be");
    expect_error("ahorro:\n  judging:\n    - route: big\n      judge: small\n      sample: 1\n"
                 "      criteria: []\n" MODELS,
                 ":6: 'criteria' must be a list of 1 to 8 names");
    expect_error("ahorro:\n  judging:\n    - route: big\n      judge: small\n      sample: 1\n"
                 "      criteria: [a, b, c, d, e, f, g, h, i]\n" MODELS,
                 ":6: 'criteria': at most 8");
    expect_error(
        "ahorro:\n  judging:\n    - {route: big, judge: small, sample: 1, rate: 2}\n" MODELS,
        ":3: unknown setting 'judging[].rate'");
    expect_error("ahorro:\n  judging:\n    - {route: big, judge: small, sample: 1}\n"
                 "    - {route: big, judge: small, sample: 0.5}\n" MODELS,
                 ":4: route 'big' is judged twice");
    expect_error("ahorro:\n  judging: {route: big}\n" MODELS,
                 ":2: 'ahorro.judging' must be a list");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n"
                 "      policy: {kind: bandit, metric: judge}\n" MODELS,
                 ":3: experiment 'x': policy.metric judge needs an 'ahorro.judging' entry");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n"
                 "      policy: {kind: bandit, metric: vibes}\n" MODELS,
                 ":8: 'policy.metric' must be feedback or judge");
    /* seventeen entries */
    char y[4096];
    int n = snprintf(y, sizeof y, "ahorro:\n  judging:\n");
    for (int i = 0; i < 17; i++)
        n += snprintf(y + n, sizeof y - (size_t)n,
                      "    - {route: big, judge: small, sample: 1, when: {tags: {t: v%d}}}\n", i);
    snprintf(y + n, sizeof y - (size_t)n, "%s", MODELS);
    expect_error(y, ":3: at most 16 judging entries");
}
END_TEST

START_TEST(verdict_score)
{
    int g[2] = {8, 7};
    ck_assert_double_eq_tol(ah_judging_score(g, 2), (7.0 / 9 + 6.0 / 9) / 2, 1e-12);
    int lo[1] = {1}, hi[1] = {10}, bad[2] = {5, 11};
    ck_assert_double_eq_tol(ah_judging_score(lo, 1), 0, 1e-12);
    ck_assert_double_eq_tol(ah_judging_score(hi, 1), 1, 1e-12);
    ck_assert(isnan(ah_judging_score(bad, 2)));
    ck_assert(isnan(ah_judging_score(g, 0)));
    const char *const names[] = {"relevance", "accuracy"};
    char *s = ah_judging_grades_json(names, g, 2);
    ck_assert_str_eq(s, "{\"relevance\":8,\"accuracy\":7}");
    ah_free(s);
}
END_TEST

START_TEST(periods)
{
    int64_t wed_noon = MONDAY_MS + 2 * DAY_MS + 12 * 3600000LL;
    ck_assert_int_eq(ah_drift_period_start(wed_noon, AH_DRIFT_DAY), MONDAY_MS + 2 * DAY_MS);
    ck_assert_int_eq(ah_drift_period_start(wed_noon, AH_DRIFT_WEEK), MONDAY_MS);
    /* Sunday 23:59:59.999 is still the same week; Monday 00:00 the next */
    ck_assert_int_eq(ah_drift_period_start(MONDAY_MS + 7 * DAY_MS - 1, AH_DRIFT_WEEK), MONDAY_MS);
    ck_assert_int_eq(ah_drift_period_start(MONDAY_MS + 7 * DAY_MS, AH_DRIFT_WEEK),
                     MONDAY_MS + 7 * DAY_MS);
    ck_assert_int_eq(ah_drift_period_start(MONDAY_MS, AH_DRIFT_DAY), MONDAY_MS);
    ck_assert_int_eq(ah_drift_period_start(MONDAY_MS - 1, AH_DRIFT_DAY), MONDAY_MS - DAY_MS);
    /* the epoch was a Thursday: its week began on Monday 1969-12-29 */
    ck_assert_int_eq(ah_drift_period_start(0, AH_DRIFT_WEEK), -3 * DAY_MS);
}
END_TEST

static ah_judgment_t *judgment(const char *rid, int64_t ts, const char *route, const char *judge,
                               double score)
{
    ah_judgment_t *j = ah_calloc(1, sizeof *j);
    j->request_id = ah_strdup(rid);
    j->ts_ms = ts;
    j->route = ah_strdup(route);
    j->judge = ah_strdup(judge);
    j->score = score;
    if (isnan(score))
        j->error = ah_strdup("HTTP 504: timeout");
    else
        j->scores = ah_strdup("{\"relevance\":5}");
    j->judge_request_id = ah_strdup("req_judge");
    return j;
}

static sqlite3 *temp_db(char *path)
{
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sqlite3 *db = NULL;
    ck_assert_int_eq(ah_db_open(path, &db), AH_E_OK);
    return db;
}

static void rm_db(const char *path)
{
    char p[128];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

static long count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    long n = -1;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

START_TEST(writer_and_drift)
{
    char path[] = "/tmp/ahorro-test-judging-db-XXXXXX";
    sqlite3 *db = temp_db(path);
    /* day 0: 0.5 0.6 0.7 and a failure; day 1: 0.8 0.9 1.0 0.9; day 3 (day 2
     * empty): 0.2; another judge on day 1; another route */
    const double d0[] = {0.5, 0.6, 0.7}, d1[] = {0.8, 0.9, 1.0, 0.9};
    ah_judgments_t *q = NULL;
    ck_assert_int_eq(ah_judgments_open(path, &q), AH_E_OK);
    char rid[32];
    int k = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(rid, sizeof rid, "req_%d", k++);
        ck_assert_int_eq(
            ah_judgments_push(q, judgment(rid, MONDAY_MS + 1000 * i, "big", "small", d0[i])),
            AH_E_OK);
    }
    ck_assert_int_eq(ah_judgments_push(q, judgment("req_f", MONDAY_MS + 5, "big", "small", NAN)),
                     AH_E_OK);
    for (int i = 0; i < 4; i++) {
        snprintf(rid, sizeof rid, "req_%d", k++);
        ck_assert_int_eq(ah_judgments_push(q, judgment(rid, MONDAY_MS + DAY_MS + 1000 * i, "big",
                                                       "small", d1[i])),
                         AH_E_OK);
    }
    ck_assert_int_eq(
        ah_judgments_push(q, judgment("req_x", MONDAY_MS + 3 * DAY_MS, "big", "small", 0.2)),
        AH_E_OK);
    ck_assert_int_eq(
        ah_judgments_push(q, judgment("req_y", MONDAY_MS + DAY_MS, "big", "other", 0.1)), AH_E_OK);
    ck_assert_int_eq(
        ah_judgments_push(q, judgment("req_z", MONDAY_MS + DAY_MS, "tiny", "small", 0.3)), AH_E_OK);
    ah_judgments_close(q); /* drains */
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 11);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments WHERE score IS NULL AND error "
                               "LIKE 'HTTP 504%' AND scores IS NULL"),
                     1);

    json_t *rep = NULL;
    char err[256] = "";
    ck_assert_msg(ah_drift_report(db, NULL, MONDAY_MS - DAY_MS, AH_DRIFT_DAY, &rep, err,
                                  sizeof err) == AH_E_OK,
                  "%s", err);
    json_t *routes = json_object_get(rep, "routes");
    ck_assert_uint_eq(json_array_size(routes), 3); /* big/other, big/small, tiny/small */
    json_t *bs = json_array_get(routes, 1);
    ck_assert_str_eq(json_string_value(json_object_get(bs, "route")), "big");
    ck_assert_str_eq(json_string_value(json_object_get(bs, "judge")), "small");
    ck_assert_int_eq(json_integer_value(json_object_get(bs, "judged")), 8);
    ck_assert_int_eq(json_integer_value(json_object_get(bs, "failed")), 1);
    ck_assert_double_eq_tol(json_real_value(json_object_get(bs, "score_mean")),
                            (0.5 + 0.6 + 0.7 + 0.8 + 0.9 + 1.0 + 0.9 + 0.2) / 8, 1e-12);
    json_t *ps = json_object_get(bs, "periods");
    ck_assert_uint_eq(json_array_size(ps), 3);
    json_t *p0 = json_array_get(ps, 0), *p1 = json_array_get(ps, 1), *p3 = json_array_get(ps, 2);
    ck_assert_str_eq(json_string_value(json_object_get(p0, "period")), "2024-06-03");
    ck_assert_int_eq(json_integer_value(json_object_get(p0, "judged")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(p0, "failed")), 1);
    ck_assert_double_eq_tol(json_real_value(json_object_get(p0, "score_mean")), 0.6, 1e-12);
    ck_assert(json_is_null(json_object_get(p0, "vs_previous")));
    ah_stats_t a = {0}, b = {0};
    for (int i = 0; i < 3; i++)
        ah_stats_add(&a, d0[i]);
    for (int i = 0; i < 4; i++)
        ah_stats_add(&b, d1[i]);
    double lo, hi, t, df, p;
    ck_assert_int_eq(ah_stats_ci95(&a, &lo, &hi), 0);
    json_t *ci = json_object_get(p0, "score_ci95");
    ck_assert_double_eq_tol(json_real_value(json_array_get(ci, 0)), lo, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_array_get(ci, 1)), hi, 1e-12);
    ck_assert_int_eq(ah_stats_welch(&b, &a, &t, &df, &p), 0);
    json_t *vs = json_object_get(p1, "vs_previous");
    ck_assert_str_eq(json_string_value(json_object_get(vs, "period")), "2024-06-03");
    ck_assert_double_eq_tol(json_real_value(json_object_get(vs, "diff")), 0.9 - 0.6, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(vs, "p")), p, 1e-12);
    ck_assert_int_eq(json_is_true(json_object_get(vs, "significant")), p < 0.05);
    /* day 3 follows an empty day 2: nothing to compare with */
    ck_assert_str_eq(json_string_value(json_object_get(p3, "period")), "2024-06-06");
    ck_assert(json_is_null(json_object_get(p3, "vs_previous")));
    ck_assert(json_is_null(json_object_get(p3, "score_ci95"))); /* n = 1 */
    json_decref(rep);

    /* by week, one route: everything in one period */
    ck_assert_int_eq(
        ah_drift_report(db, "big", MONDAY_MS - DAY_MS, AH_DRIFT_WEEK, &rep, err, sizeof err),
        AH_E_OK);
    routes = json_object_get(rep, "routes");
    ck_assert_uint_eq(json_array_size(routes), 2);
    ck_assert_str_eq(json_string_value(json_object_get(rep, "by")), "week");
    ps = json_object_get(json_array_get(routes, 1), "periods");
    ck_assert_uint_eq(json_array_size(ps), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(ps, 0), "judged")), 8);
    json_decref(rep);

    /* since: day 1 onwards */
    ck_assert_int_eq(
        ah_drift_report(db, "tiny", MONDAY_MS + DAY_MS, AH_DRIFT_DAY, &rep, err, sizeof err),
        AH_E_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(rep, "routes")), 1);
    json_decref(rep);
    ck_assert_int_eq(
        ah_drift_report(db, "tiny", MONDAY_MS + 2 * DAY_MS, AH_DRIFT_DAY, &rep, err, sizeof err),
        AH_E_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(rep, "routes")), 0);
    json_decref(rep);
    sqlite3_close(db);
    rm_db(path);
}
END_TEST

START_TEST(writer_never_blocks)
{
    char path[] = "/tmp/ahorro-test-judging-q-XXXXXX";
    sqlite3 *db = temp_db(path);
    /* hold the write lock: the writer waits, the queue fills, pushes refuse */
    ck_assert_int_eq(ah_db_exec(db, "BEGIN IMMEDIATE"), AH_E_OK);
    ah_judgments_t *q = NULL;
    ck_assert_int_eq(ah_judgments_open(path, &q), AH_E_OK);
    int refused = 0;
    for (int i = 0; i < AH_JUDGMENTS_QUEUE + AH_JUDGMENTS_BATCH + 10; i++)
        refused += ah_judgments_push(q, judgment("r", i, "big", "small", 0.5)) == AH_E_TOOBIG;
    ck_assert_int_ge(refused, 10);
    ck_assert_int_eq(ah_db_exec(db, "COMMIT"), AH_E_OK);
    ah_judgments_close(q);
    long n = count(db, "SELECT COUNT(*) FROM judgments");
    ck_assert_int_eq(n + refused, AH_JUDGMENTS_QUEUE + AH_JUDGMENTS_BATCH + 10);
    sqlite3_close(db);
    rm_db(path);
}
END_TEST

/* The experiments report: judge columns per arm, the judge's own rows left
 * out, and a bandit on metric judge. */
START_TEST(experiment_report_judges)
{
    static const char *const y =
        "ahorro:\n"
        "  judging:\n"
        "    - {route: big, judge: small, sample: 1}\n"
        "  experiments:\n"
        "    - name: x\n      route: big\n      arms:\n"
        "        - {name: a, weight: 1}\n"
        "        - {name: b, weight: 1, model: small}\n"
        "      policy: {kind: bandit, metric: judge, min_quality: 0.1}\n" MODELS;
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(y, &c, err, sizeof err) == AH_E_OK, "%s", err);
    char path[] = "/tmp/ahorro-test-judging-exp-XXXXXX";
    sqlite3 *db = temp_db(path);
    char *dbpath = ah_strdup(path);
    ah_free(c->db_path);
    c->db_path = dbpath;
    int64_t now = 1700000000000LL;
    ah_judgment_t *js[64];
    int nj = 0;
    for (int i = 0; i < 24; i++) {
        char sql[512], rid[32];
        const char *arm = i % 2 ? "b" : "a";
        snprintf(rid, sizeof rid, "req_%02d", i);
        snprintf(sql, sizeof sql,
                 "INSERT INTO ledger(request_id, ts_ms, tags, api, endpoint, stream, cost_usd, "
                 "latency_ms, status) VALUES ('%s', %lld, '{\"experiment\":\"x\",\"arm\":\"%s\"}', "
                 "'openai', 'chat', 0, %s, 10, 200)",
                 rid, (long long)now, arm, i % 2 ? "0.001" : "0.01");
        ck_assert_int_eq(ah_db_exec(db, sql), AH_E_OK);
        /* the judge's own row: same tags, purpose=judge; never an arm's request */
        snprintf(sql, sizeof sql,
                 "INSERT INTO ledger(request_id, ts_ms, tags, api, endpoint, stream, cost_usd, "
                 "latency_ms, status) VALUES ('j%s', %lld, '{\"experiment\":\"x\",\"arm\":\"%s\","
                 "\"purpose\":\"judge\"}', 'openai', 'chat', 0, 0.5, 10, 200)",
                 rid, (long long)now, arm);
        ck_assert_int_eq(ah_db_exec(db, sql), AH_E_OK);
        /* a: 0.6 each; b: 0.7 each; the last two of b failed */
        double s = i % 2 ? (i >= 21 ? NAN : 0.7) : 0.6;
        js[nj++] = judgment(rid, now, "big", "small", s);
    }
    ck_assert_int_eq(ah_judgments_write(db, js, nj), AH_E_OK);
    for (int i = 0; i < nj; i++)
        ah_judgment_free(js[i]);
    json_t *rep = NULL;
    char e2[256] = "";
    ck_assert_msg(ah_experiment_report(db, c, "x", now - 1000, &rep, e2, sizeof e2) == AH_E_OK,
                  "%s", e2);
    json_t *x = json_array_get(json_object_get(rep, "data"), 0);
    json_t *arms = json_object_get(x, "arms");
    json_t *a = json_array_get(arms, 0), *b = json_array_get(arms, 1);
    ck_assert_int_eq(json_integer_value(json_object_get(a, "requests")), 12);
    ck_assert_int_eq(json_integer_value(json_object_get(a, "judged")), 12);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "judged")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "judge_failed")), 2);
    ck_assert_double_eq_tol(json_real_value(json_object_get(a, "judge_mean")), 0.6, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(b, "judge_mean")), 0.7, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(a, "cost_total_usd")), 0.12, 1e-12);
    ck_assert(json_is_array(json_object_get(a, "judge_ci95")));
    json_t *vs = json_object_get(json_object_get(b, "vs_control"), "judge");
    ck_assert_double_eq_tol(json_real_value(json_object_get(vs, "diff")), 0.1, 1e-12);
    ck_assert(json_is_true(json_object_get(vs, "significant"))); /* constant samples: p = 0 */
    /* quality per dollar on the judge's scores; the bandit shifts to b */
    ck_assert_double_eq_tol(json_real_value(json_object_get(b, "quality_per_usd")), 700, 1e-9);
    json_t *pol = json_object_get(x, "policy");
    ck_assert_str_eq(json_string_value(json_object_get(pol, "metric")), "judge");
    ck_assert_str_eq(json_string_value(json_object_get(pol, "winner")), "b");
    json_decref(rep);
    sqlite3_close(db);
    rm_db(path);
    ah_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("judging");
    TCase *tc = tcase_create("judging");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, config_loads);
    tcase_add_test(tc, config_errors_name_the_line);
    tcase_add_test(tc, verdict_score);
    tcase_add_test(tc, periods);
    tcase_add_test(tc, writer_and_drift);
    tcase_add_test(tc, writer_never_blocks);
    tcase_add_test(tc, experiment_report_judges);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
