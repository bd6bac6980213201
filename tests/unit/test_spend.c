/* test_spend.c - the grouped spend queries and their forecasts over a real
 * SQLite ledger: figures per group (attempt rows apart, savings, top users
 * and prompts), several dimensions together, time bounds, limits, and
 * dimension names from untrusted input. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "store/db.h"
#include "store/spend.h"

#define DAY_MS 86400000LL
#define T0 (1748736000000LL) /* 2025-06-01T00:00:00Z */

static char path[64];
static sqlite3 *db;

static void row(const char *id, int64_t ts, const char *user, const char *tags, const char *model,
                double cost, int status, double saved, const char *attempt_of)
{
    sqlite3_stmt *st;
    ck_assert_int_eq(
        sqlite3_prepare_v2(db,
                           "INSERT INTO ledger(request_id, ts_ms, user, tags, api, endpoint, "
                           "stream, requested_model, served_model, prompt_tokens, "
                           "completion_tokens, cost_usd, latency_ms, status, saved_usd, "
                           "attempt_of) VALUES (?, ?, ?, ?, 'openai', 'chat', 0, ?, ?, 10, 5, ?, "
                           "100, ?, ?, ?)",
                           -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ts);
    if (user)
        sqlite3_bind_text(st, 3, user, -1, SQLITE_STATIC);
    if (tags)
        sqlite3_bind_text(st, 4, tags, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, model, -1, SQLITE_STATIC);
    if (cost >= 0)
        sqlite3_bind_double(st, 7, cost);
    sqlite3_bind_int(st, 8, status);
    sqlite3_bind_double(st, 9, saved);
    if (attempt_of)
        sqlite3_bind_text(st, 10, attempt_of, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static void setup(void)
{
    snprintf(path, sizeof path, "/tmp/ahorro-test-spend-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(ah_db_open(path, &db), AH_E_OK);
    const char *sup = "{\"department\":\"sales\",\"feature\":\"support\"}";
    const char *sea = "{\"department\":\"product\",\"feature\":\"search\"}";
    const char *sea2 = "{\"department\":\"sales\",\"feature\":\"search\"}";
    row("r1", T0 + 1000, "alice", sup, "gpt-4o-mini", 0.10, 200, 0, NULL);
    row("r2", T0 + 2000, "alice", sup, "gpt-4o-mini", 0.20, 200, 0, NULL);
    row("r3", T0 + 3000, "bob", sup, "gpt-4o", 0.50, 200, 0, NULL);
    row("r3-1", T0 + 2500, "bob", sup, "gpt-4o", 0.05, 503, 0, "r3"); /* failed attempt */
    row("r4", T0 + 4000, "carol", sea, "gpt-4o", 1.00, 200, 0, NULL);
    row("r5", T0 + 5000, "carol", sea, "gpt-4o", 0.00, 200, 1.00, NULL); /* cache hit */
    row("r6", T0 + 6000, "dave", sea2, "gpt-4o", 0.40, 429, 0, NULL);
    row("r7", T0 + 7000, NULL, NULL, "gpt-4o-mini", 0.01, 200, 0, NULL);         /* no tags */
    row("r8", T0 + 10 * DAY_MS, "alice", sup, "gpt-4o-mini", 9.0, 200, 0, NULL); /* later */
}

static void teardown(void)
{
    sqlite3_close(db);
    unlink(path);
    char aux[96];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}

static json_t *run(const char *dims, int64_t since, int64_t until, int limit, int top)
{
    ah_spend_query_t q;
    ah_spend_query_init(&q);
    char err[256];
    ck_assert_int_eq(ah_spend_parse_dims(&q, dims, err, sizeof err), AH_E_OK);
    q.since_ms = since;
    q.until_ms = until;
    q.limit = limit;
    q.top = top;
    json_t *res = NULL;
    ck_assert_msg(ah_spend_run(db, &q, &res, err, sizeof err) == AH_E_OK, "%s", err);
    return res;
}

static json_t *group(json_t *res, const char *k1, const char *v1, const char *k2, const char *v2)
{
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(res, "groups"), i, g)
    {
        json_t *d = json_object_get(g, "group");
        if (strcmp(json_string_value(json_object_get(d, k1)), v1) == 0 &&
            (!k2 || strcmp(json_string_value(json_object_get(d, k2)), v2) == 0))
            return g;
    }
    return NULL;
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

START_TEST(by_tag_figures)
{
    json_t *res = run("feature", T0, T0 + DAY_MS, 100, 3);
    json_t *sup = group(res, "feature", "support", NULL, NULL);
    ck_assert_ptr_nonnull(sup);
    ck_assert_str_eq(json_string_value(json_object_get(sup, "feature")), "support");
    ck_assert_int_eq(json_integer_value(json_object_get(sup, "requests")), 3); /* not r3-1 */
    ck_assert_double_eq_tol(num(sup, "cost_usd"), 0.85, 1e-9); /* attempts are spend */
    ck_assert_int_eq(json_integer_value(json_object_get(sup, "failed_attempts")), 1);
    ck_assert_double_eq_tol(num(sup, "failed_attempts_cost_usd"), 0.05, 1e-9);
    ck_assert_double_eq_tol(num(sup, "cost_per_request_usd"), 0.85 / 3, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(sup, "total_tokens")), 60);
    /* top users: bob (0.55 with his attempt) before alice (0.30) */
    json_t *users = json_object_get(sup, "top_users");
    ck_assert_int_eq(json_array_size(users), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(users, 0), "user")), "bob");
    ck_assert_double_eq_tol(num(json_array_get(users, 0), "cost_usd"), 0.55, 1e-9);
    json_t *prompts = json_object_get(sup, "top_prompts");
    json_t *p0 = json_array_get(prompts, 0);
    ck_assert_str_eq(json_string_value(json_object_get(p0, "requested_model")), "gpt-4o");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p0, "tags"), "department")),
                     "sales");
    json_t *sea = group(res, "feature", "search", NULL, NULL);
    ck_assert_double_eq_tol(num(sea, "saved_usd"), 1.0, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(sea, "errors")), 1);
    ck_assert_ptr_nonnull(group(res, "feature", "(none)", NULL, NULL)); /* r7: no tags */
    /* ordered by cost; the total is every row of the range */
    ck_assert_str_eq(
        json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(res, "groups"), 0), "group"),
            "feature")),
        "search");
    json_t *total = json_object_get(res, "total");
    ck_assert_int_eq(json_integer_value(json_object_get(total, "requests")), 7);
    ck_assert_double_eq_tol(num(total, "cost_usd"), 2.26, 1e-9);
    json_decref(res);
}
END_TEST

START_TEST(several_dimensions_together)
{
    json_t *res = run("feature,tag:department", 0, 0, 100, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "group_count")), 4);
    json_t *g = group(res, "feature", "search", "tag:department", "sales");
    ck_assert_ptr_nonnull(g);
    ck_assert_double_eq_tol(num(g, "cost_usd"), 0.40, 1e-9);
    g = group(res, "feature", "support", "tag:department", "sales");
    ck_assert_double_eq_tol(num(g, "cost_usd"), 9.85, 1e-9); /* r8 too: no time bound */
    ck_assert_int_eq(json_array_size(json_object_get(g, "top_users")), 0);
    json_decref(res);
    res = run("model,user", T0, T0 + DAY_MS, 100, 0);
    ck_assert_double_eq_tol(num(group(res, "model", "gpt-4o", "user", "carol"), "cost_usd"), 1.0,
                            1e-9);
    json_decref(res);
}
END_TEST

START_TEST(time_bounds_and_limit)
{
    json_t *res = run("user", T0 + 2000, T0 + 5000, 100, 0); /* [2000, 5000) */
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(res, "total"), "requests")),
                     3); /* r2, r3, r4; r3-1 is an attempt */
    json_decref(res);
    res = run("user", 0, 0, 2, 0);
    ck_assert(json_is_true(json_object_get(res, "truncated")));
    ck_assert_int_eq(json_array_size(json_object_get(res, "groups")), 2);
    json_t *other = json_object_get(res, "other"), *total = json_object_get(res, "total");
    double shown = 0;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(res, "groups"), i, g) shown += num(g, "cost_usd");
    ck_assert_double_eq_tol(shown + num(other, "cost_usd"), num(total, "cost_usd"), 1e-9);
    json_decref(res);
}
END_TEST

START_TEST(dimension_names_are_checked)
{
    static const char *const bad[] = {
        "",
        "feat;ure",
        "a'b",
        "x\"y",
        "$.a",
        "feature,",
        ",feature",
        "a,,b",
        "tag:",
        "tag:a b",
        "a,b,c,d,e",
        "feature,feature",
        "a)) OR 1=1",
        "\xc3\xa9",
        "tag:x\"),(SELECT 1",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" /* 65 */};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ah_spend_query_t q;
        ah_spend_query_init(&q);
        char err[256] = "";
        ck_assert_msg(ah_spend_parse_dims(&q, bad[i], err, sizeof err) == AH_E_INVAL,
                      "accepted '%s'", bad[i]);
        ck_assert(err[0]);
    }
    ah_spend_query_t q;
    char err[256];
    ah_spend_query_init(&q);
    ck_assert_int_eq(ah_spend_parse_dims(&q, "model,team.v2,tag:user,day", err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(q.ndims, 4);
    ck_assert_ptr_nonnull(q.dims[0].column);
    ck_assert_ptr_null(q.dims[1].column);
    ck_assert_str_eq(q.dims[1].path, "$.\"team.v2\""); /* a dot is part of the name */
    ck_assert_ptr_null(q.dims[2].column);              /* tag:user is the tag, not the column */
    ck_assert_str_eq(q.dims[2].path, "$.\"user\"");
}
END_TEST

START_TEST(times_are_parsed)
{
    int64_t t;
    ck_assert_int_eq(ah_spend_parse_time("30d", T0, &t), AH_E_OK);
    ck_assert_int_eq(t, T0 - 30 * DAY_MS);
    ck_assert_int_eq(ah_spend_parse_time("90m", T0, &t), AH_E_OK);
    ck_assert_int_eq(t, T0 - 90 * 60000);
    ck_assert_int_eq(ah_spend_parse_time("2025-06-01", 0, &t), AH_E_OK);
    ck_assert_int_eq(t, T0);
    ck_assert_int_eq(ah_spend_parse_time("2025-06-01T12:30Z", 0, &t), AH_E_OK);
    ck_assert_int_eq(t, T0 + 45000000);
    static const char *const bad[] = {"",     "30",         "30x",         "-3d",
                                      "d",    "2025-13-01", "2025-06-01x", "2025-06-01T25:00",
                                      "1e3d", "30dd"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(ah_spend_parse_time(bad[i], T0, &t) == AH_E_INVAL, "accepted '%s'", bad[i]);
}
END_TEST

START_TEST(malformed_tags_in_the_ledger_do_not_break_a_report)
{
    row("bad", T0 + 100, "eve", "{not json", "gpt-4o", 0.3, 200, 0, NULL);
    json_t *res = run("feature", T0, T0 + DAY_MS, 100, 3);
    ck_assert_double_eq_tol(num(group(res, "feature", "(none)", NULL, NULL), "cost_usd"), 0.31,
                            1e-9);
    json_decref(res);
}
END_TEST

START_TEST(forecast_projects_the_month)
{
    /* 28 days of May at 2 USD/day for feature "steady", then June 1-14 */
    char id[32];
    int64_t may1 = T0 - 31 * DAY_MS;
    for (int d = 0; d < 45; d++) {
        snprintf(id, sizeof id, "f%d", d);
        row(id, may1 + d * DAY_MS + 3600000, "zed", "{\"feature\":\"steady\"}", "gpt-4o", 2.0, 200,
            0, NULL);
    }
    ah_spend_query_t q;
    ah_spend_query_init(&q);
    char err[256];
    ck_assert_int_eq(ah_spend_parse_dims(&q, "feature", err, sizeof err), AH_E_OK);
    json_t *res = NULL;
    int64_t as_of = T0 + 14 * DAY_MS; /* June 15, 00:00 */
    ck_assert_msg(ah_spend_forecast(db, &q, as_of, &res, err, sizeof err) == AH_E_OK, "%s", err);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "period_start_ms")), T0);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "period_end_ms")), T0 + 30 * DAY_MS);
    json_t *g = group(res, "feature", "steady", NULL, NULL);
    ck_assert_ptr_nonnull(g);
    ck_assert_double_eq_tol(num(g, "spent_usd"), 28.0, 1e-9);
    ck_assert_double_eq_tol(num(g, "projected_usd"), 60.0, 0.5); /* 30 days x 2 */
    ck_assert(num(g, "low_usd") <= num(g, "projected_usd"));
    ck_assert(num(g, "high_usd") >= num(g, "projected_usd"));
    json_t *total = json_object_get(res, "total");
    ck_assert(num(total, "projected_usd") >= num(g, "projected_usd"));
    json_decref(res);
    /* a week */
    q.period = AH_SPEND_PERIOD_WEEK;
    ck_assert_int_eq(ah_spend_forecast(db, &q, as_of, &res, err, sizeof err), AH_E_OK);
    /* June 15 2025 is a Sunday: the week began Monday June 9 */
    ck_assert_int_eq(json_integer_value(json_object_get(res, "period_start_ms")), T0 + 8 * DAY_MS);
    json_decref(res);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("spend");
    TCase *tc = tcase_create("spend");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, by_tag_figures);
    tcase_add_test(tc, several_dimensions_together);
    tcase_add_test(tc, time_bounds_and_limit);
    tcase_add_test(tc, dimension_names_are_checked);
    tcase_add_test(tc, times_are_parsed);
    tcase_add_test(tc, malformed_tags_in_the_ledger_do_not_break_a_report);
    tcase_add_test(tc, forecast_projects_the_month);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
