/* test_eval.c - quality/eval: rows, variants, request bodies, scoring, the
 * report's figures against a hand computation, and its rendering. */
#include <check.h>
#include <math.h>
#include <string.h>

#include "check_run.h"
#include "quality/eval.h"

static ah_err_t row_of(const char *text, ah_eval_row_t *r, char *err)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ah_err_t rc = ah_eval_row_parse(j, 7, r, err, 512);
    json_decref(j);
    return rc;
}

START_TEST(rows)
{
    ah_eval_row_t r;
    char err[512];
    ck_assert_int_eq(row_of("{\"input\":\"hi there\",\"reference\":\"hello\"}", &r, err), AH_E_OK);
    ck_assert_str_eq(r.id, "#7");
    ck_assert_str_eq(r.question, "hi there");
    ck_assert_str_eq(r.reference, "hello");
    ck_assert_int_eq(json_array_size(r.messages), 1);
    ah_eval_row_free(&r);

    ck_assert_int_eq(row_of("{\"id\":12,\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                            "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\","
                            "\"content\":\"x\"}],\"reference\":42,\"tags\":{\"team\":\"x\"}}",
                            &r, err),
                     AH_E_OK);
    ck_assert_str_eq(r.id, "12");
    ck_assert_str_eq(r.question, "a\nb"); /* the last user message */
    ck_assert_str_eq(r.reference, "42");
    ah_eval_row_free(&r);

    ck_assert_int_eq(row_of("{\"input\":\"q\",\"choices\":4,\"reference\":\"c\"}", &r, err),
                     AH_E_OK);
    ck_assert_int_eq(r.choices, 4);
    ah_eval_row_free(&r);

    /* refused, each with the line number */
    static const char *const badrows[] = {
        "[1]",
        "{\"reference\":\"x\"}",
        "{\"input\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"b\"}]}",
        "{\"input\":3}",
        "{\"messages\":[]}",
        "{\"messages\":[{\"content\":\"no role\"}]}",
        "{\"messages\":[{\"role\":\"assistant\",\"content\":\"no user\"}]}",
        "{\"input\":\"q\",\"choices\":4,\"reference\":\"E\"}",
        "{\"input\":\"q\",\"choices\":4}",
        "{\"input\":\"q\",\"choices\":1,\"reference\":\"A\"}",
        "{\"input\":\"q\",\"regex\":5}",
        "{\"input\":\"q\",\"schema\":\"x\"}",
        "{\"input\":\"q\",\"tags\":{\"purpose\":\"x\"}}",
        "{\"input\":\"q\",\"tags\":{\"a\":\"b,c\"}}",
        "{\"input\":\"q\",\"tags\":{\"a\":1}}",
        "{\"input\":\"q\",\"id\":[1]}",
    };
    for (size_t i = 0; i < sizeof badrows / sizeof badrows[0]; i++) {
        err[0] = '\0';
        ck_assert_msg(row_of(badrows[i], &r, err) == AH_E_INVAL, "accepted %s", badrows[i]);
        ck_assert_msg(strstr(err, "line 7") != NULL, "%s: %s", badrows[i], err);
    }
}
END_TEST

static ah_err_t variant_of(const char *text, ah_eval_variant_t *v, char *err)
{
    json_t *j = json_loads(text, 0, NULL);
    ck_assert_ptr_nonnull(j);
    ah_err_t rc = ah_eval_variant_parse(j, "file", v, err, 512);
    json_decref(j);
    return rc;
}

START_TEST(variants_and_bodies)
{
    ah_eval_variant_t v;
    char err[512];
    ck_assert_int_eq(
        variant_of(
            "{\"model\":\"m1\",\"temperature\":0.2,\"max_tokens\":50,\"system\":\"be brief\","
            "\"prompt\":\"faq@2\",\"shape\":{\"strategy\":\"sliding_window\"},"
            "\"cache\":{\"no-cache\":true},\"params\":{\"model\":\"evil\",\"seed\":7}}",
            &v, err),
        AH_E_OK);
    ck_assert_str_eq(v.name, "file");
    ah_eval_row_t r;
    ck_assert_int_eq(
        row_of("{\"messages\":[{\"role\":\"system\",\"content\":\"old\"},{\"role\":\"user\","
               "\"content\":\"q\"}],\"tags\":{\"team\":\"t1\"}}",
               &r, err),
        AH_E_OK);
    json_t *b = ah_eval_body(&v, &r);
    ck_assert_str_eq(json_string_value(json_object_get(b, "model")),
                     "m1"); /* params cannot move it */
    ck_assert_int_eq(json_integer_value(json_object_get(b, "seed")), 7);
    ck_assert_str_eq(json_string_value(json_object_get(b, "prompt_id")), "faq@2");
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 50);
    ck_assert(json_is_object(json_object_get(b, "shape")));
    ck_assert(json_is_false(json_object_get(b, "stream")));
    json_t *msgs = json_object_get(b, "messages");
    ck_assert_int_eq(json_array_size(msgs), 2); /* the variant's system replaced the row's */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                     "be brief");
    /* the row is not changed */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r.messages, 0), "content")),
                     "old");
    json_decref(b);
    ah_buf_t t;
    ah_buf_init(&t, 4096);
    ck_assert_int_eq(ah_eval_tags("run1", v.name, &r, &t), AH_E_OK);
    ck_assert_str_eq(t.data, "purpose=eval,eval_run=run1,variant=file,team=t1");
    ah_buf_free(&t);
    ah_eval_row_free(&r);
    ah_eval_variant_free(&v);

    /* inline forms */
    ck_assert_int_eq(ah_eval_variant_inline("gpt-4o-mini", &v, err, sizeof err), AH_E_OK);
    ck_assert_str_eq(v.name, "gpt-4o-mini");
    ah_eval_variant_free(&v);
    ck_assert_int_eq(
        ah_eval_variant_inline("name=cold,model=m,temperature=0,max_tokens=9", &v, err, sizeof err),
        AH_E_OK);
    ck_assert_str_eq(v.name, "cold");
    ck_assert_int_eq(json_integer_value(json_object_get(v.spec, "max_tokens")), 9);
    ah_eval_variant_free(&v);
    ck_assert_int_eq(ah_eval_variant_inline("model=m,temperature=hot", &v, err, sizeof err),
                     AH_E_INVAL);
    ck_assert_int_eq(ah_eval_variant_inline("model=m,shape=x", &v, err, sizeof err), AH_E_INVAL);

    static const char *const bad[] = {
        "{}",
        "{\"model\":\"m\",\"colour\":1}",
        "{\"model\":\"m\",\"temperature\":3}",
        "{\"model\":\"m\",\"top_p\":-1}",
        "{\"model\":\"m\",\"max_tokens\":0}",
        "{\"model\":\"m\",\"name\":\"has space\"}",
        "{\"model\":\"m\",\"shape\":[]}",
        "{\"model\":\"m\",\"tags\":{\"k\":\"a=b\"}}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(variant_of(bad[i], &v, err) == AH_E_INVAL, "accepted %s", bad[i]);
}
END_TEST

START_TEST(scoring)
{
    ah_eval_row_t r;
    char err[512];
    ck_assert_int_eq(row_of("{\"input\":\"q\",\"reference\":\"The Eiffel Tower\"}", &r, err),
                     AH_E_OK);
    json_t *s = json_object();
    ah_eval_score(&r, "eiffel tower!", ~0u, s);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "exact")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "normalized")), 1);
    ck_assert_double_eq_tol(json_real_value(json_object_get(s, "f1")), 1.0, 1e-12);
    ck_assert_ptr_null(json_object_get(s, "choice")); /* not multiple-choice */
    json_decref(s);
    /* a mask leaves scorers out */
    s = json_object();
    ah_eval_score(&r, "eiffel tower!", 1u << AH_EVAL_F1, s);
    ck_assert_int_eq(json_object_size(s), 1);
    json_decref(s);
    ah_eval_row_free(&r);

    ck_assert_int_eq(row_of("{\"input\":\"q\",\"choices\":4,\"reference\":\"B\",\"regex\":\"(a|\","
                            "\"schema\":{\"type\":\"object\",\"required\":[\"x\"]}}",
                            &r, err),
                     AH_E_OK);
    s = json_object();
    ah_eval_score(&r, "The answer is (B).", ~0u, s);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "choice")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(s, "choice_letter")), "B");
    ck_assert_ptr_null(json_object_get(s, "regex")); /* a bad pattern is an error, not 0 */
    ck_assert_ptr_nonnull(json_object_get(s, "regex_error"));
    ck_assert_int_eq(json_integer_value(json_object_get(s, "json_schema")), 0);
    /* a letter reference: no text scorers unless asked for */
    ck_assert_ptr_null(json_object_get(s, "exact"));
    ck_assert_ptr_null(json_object_get(s, "f1"));
    json_decref(s);
    s = json_object();
    ah_eval_score(&r, "B", 1u << AH_EVAL_EXACT, s);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "exact")), 1);
    ck_assert_int_eq(json_object_size(s), 1);
    json_decref(s);
    s = json_object();
    ah_eval_score(&r, "```json\n{\"x\": 1}\n```", ~0u, s);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "choice")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "json_schema")), 1);
    json_decref(s);
    ah_eval_row_free(&r);

    /* the judge: (8-1)/9, (5-1)/9, (10-1)/9, (1-1)/9 averaged = 20/36 */
    s = json_object();
    ah_eval_judge_scores("Verdict: {\"relevance\": 8, \"accuracy\": 5, \"completeness\": 10, "
                         "\"conciseness\": 1, \"reason\": \"ok\"}",
                         NULL, 0, s);
    ck_assert_double_eq_tol(json_real_value(json_object_get(s, "judge")), 20.0 / 36, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(s, "judge_accuracy")), 5);
    ck_assert_str_eq(json_string_value(json_object_get(s, "judge_reason")), "ok");
    json_decref(s);
    /* garbage, a missing criterion, a score out of range: a failed judgment */
    static const char *const garbage[] = {
        "looks fine to me",
        "{\"relevance\": 8, \"accuracy\": 5, \"completeness\": 10}",
        "{\"relevance\": 11, \"accuracy\": 5, \"completeness\": 10, \"conciseness\": 1}",
    };
    for (size_t i = 0; i < 3; i++) {
        s = json_object();
        ah_eval_judge_scores(garbage[i], NULL, 0, s);
        ck_assert_ptr_null(json_object_get(s, "judge"));
        ck_assert_ptr_nonnull(json_object_get(s, "judge_error"));
        json_decref(s);
    }
    const char *crit[] = {"tone"};
    s = json_object();
    ah_eval_judge_scores("{\"tone\": 4}", crit, 1, s);
    ck_assert_double_eq_tol(json_real_value(json_object_get(s, "judge")), 3.0 / 9, 1e-12);
    json_decref(s);
}
END_TEST

static double num(json_t *o, const char *path1, const char *path2)
{
    json_t *x = json_object_get(o, path1);
    if (path2)
        x = json_object_get(x, path2);
    ck_assert_msg(json_is_number(x), "%s.%s is not a number", path1, path2 ? path2 : "");
    return json_number_value(x);
}

START_TEST(report_by_hand)
{
    /* 4 rows, control "a" and variant "b". Scores (choice): a = 1,1,0,1;
     * b = 1,0,0,(error). Costs a: 0.01 each; b: 0.002, 0.002, 0.002,
     * unknown. Latency a: 100, 200, 300, 400; b: 50, 60, 70 (the error's
     * 999 is not a latency of an answer). Pairwise for b: win, loss, loss. */
    const char *vars[] = {"a", "b"};
    json_t *sa[4], *sb[4];
    const int qa[4] = {1, 1, 0, 1}, qb[3] = {1, 0, 0};
    const int pw[3] = {1, -1, -1};
    ah_eval_result_t res[8];
    for (int i = 0; i < 4; i++) {
        sa[i] = json_pack("{s:i}", "choice", qa[i]);
        res[i] = (ah_eval_result_t){"a", i, 200, 0.01, 100.0 * (i + 1), 0, sa[i]};
        sb[i] = i < 3 ? json_pack("{s:i,s:i,s:f}", "choice", qb[i], "pairwise", pw[i], "judge_cost",
                                  0.001)
                      : json_object();
        res[4 + i] = (ah_eval_result_t){
            "b",    i,    i < 3 ? 200 : 502, i < 3 ? 0.002 : -1, i < 3 ? 50.0 + 10 * i : 999,
            i == 0, sb[i]};
    }
    json_t *rep = ah_eval_report("r", vars, 2, res, 8, NULL, NULL, 0);
    ck_assert_str_eq(json_string_value(json_object_get(rep, "metric")), "choice");
    ck_assert_int_eq(json_integer_value(json_object_get(rep, "rows")), 4);
    json_t *a = json_array_get(json_object_get(rep, "variants"), 0);
    json_t *b = json_array_get(json_object_get(rep, "variants"), 1);
    ck_assert_double_eq_tol(num(a, "quality", "mean"), 0.75, 1e-12);
    ck_assert_double_eq_tol(num(b, "quality", "mean"), 1.0 / 3, 1e-12);
    ck_assert_int_eq((int)num(b, "errors", NULL), 1);
    ck_assert_int_eq((int)num(b, "cache_hits", NULL), 1);
    ck_assert_double_eq_tol(num(a, "cost_per_query_usd", NULL), 0.01, 1e-12);
    ck_assert_double_eq_tol(num(a, "cost_total_usd", NULL), 0.04, 1e-12);
    ck_assert_double_eq_tol(num(b, "cost_per_query_usd", NULL), 0.002, 1e-12);
    ck_assert_double_eq_tol(num(a, "quality_per_usd", NULL), 75, 1e-9);
    ck_assert_double_eq_tol(num(a, "latency_p50_ms", NULL), 200, 1e-12); /* nearest rank */
    ck_assert_double_eq_tol(num(a, "latency_p95_ms", NULL), 400, 1e-12);
    ck_assert_double_eq_tol(num(b, "latency_p95_ms", NULL), 70, 1e-12);
    ck_assert_double_eq_tol(num(b, "judge_cost_usd", NULL), 0.003, 1e-12);
    /* a's CI: mean 0.75, sd 0.5, n 4: 0.75 -/+ 3.182446 * 0.25 */
    json_t *ci = json_object_get(json_object_get(a, "quality"), "ci95");
    ck_assert_double_eq_tol(json_number_value(json_array_get(ci, 0)), 0.75 - 3.182446305 * 0.25,
                            1e-6);
    json_t *vs = json_object_get(b, "vs_control");
    ck_assert_ptr_nonnull(vs);
    /* paired on rows 0-2: differences 0, -1, 0 */
    ck_assert_int_eq((int)num(vs, "quality", "n"), 3);
    ck_assert_double_eq_tol(num(vs, "quality", "diff"), -1.0 / 3, 1e-12);
    /* cost: -0.008 on each of rows 0-2 (row 3's cost is unknown): certain */
    ck_assert_double_eq_tol(num(vs, "cost", "diff"), -0.008, 1e-12);
    ck_assert_double_eq(num(vs, "cost", "p"), 0);
    ck_assert_double_eq_tol(num(vs, "latency", "diff"), (-50 - 140 - 230) / 3.0, 1e-9);
    json_t *p = json_object_get(vs, "pairwise");
    ck_assert_int_eq((int)num(p, "wins", NULL), 1);
    ck_assert_int_eq((int)num(p, "losses", NULL), 2);
    ck_assert_double_eq_tol(num(p, "p", NULL), 1, 1e-12);
    ck_assert_ptr_null(json_object_get(a, "vs_control"));

    ah_buf_t out;
    ah_buf_init(&out, 1 << 20);
    ck_assert_int_eq(ah_eval_render_table(rep, &out), AH_E_OK);
    ck_assert_ptr_nonnull(strstr(out.data, "against a"));
    ah_buf_reset(&out);
    ck_assert_int_eq(ah_eval_render_html(rep, &out), AH_E_OK);
    ck_assert_ptr_nonnull(strstr(out.data, "<svg"));
    ck_assert_ptr_nonnull(strstr(out.data, "</html>"));
    ah_buf_free(&out);
    json_decref(rep);

    /* names are escaped in the page */
    const char *evil[] = {"<script>", "b"};
    res[0].variant = "<script>";
    rep = ah_eval_report("r<1>", evil, 1, res, 1, "choice", NULL, 0);
    ah_buf_init(&out, 1 << 20);
    ck_assert_int_eq(ah_eval_render_html(rep, &out), AH_E_OK);
    ck_assert_ptr_null(strstr(out.data, "<script>"));
    ck_assert_ptr_nonnull(strstr(out.data, "&lt;script&gt;"));
    ah_buf_free(&out);
    json_decref(rep);
    for (int i = 0; i < 4; i++) {
        json_decref(sa[i]);
        json_decref(sb[i]);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("eval");
    tcase_add_test(tc, rows);
    tcase_add_test(tc, variants_and_bodies);
    tcase_add_test(tc, scoring);
    tcase_add_test(tc, report_by_hand);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
