/* test_experiment.c - live experiments: config, sticky assignment, split,
 * tag conditions, the bandit's weights (quality/experiment.h). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "config/config.h"
#include "quality/experiment.h"

#define MODELS                                                                                     \
    "model_list:\n"                                                                                \
    "  - model_name: big\n"                                                                        \
    "    litellm_params: {model: openai/big, api_key: x}\n"                                        \
    "  - model_name: small\n"                                                                      \
    "    litellm_params: {model: openai/small, api_key: x}\n"

static ah_err_t load(const char *yaml, ah_config_t **c, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-exp-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_err_t rc = ah_config_load(path, c, err, errlen);
    unlink(path);
    return rc;
}

static const char *const good = "ahorro:\n"
                                "  experiments:\n"
                                "    - name: split\n"
                                "      route: big\n"
                                "      when: {tags: {feature: search}}\n"
                                "      arms:\n"
                                "        - {name: control, weight: 70}\n"
                                "        - {name: small, weight: 30, model: small, prompt: s@2,\n"
                                "           temperature: 0.2, max_tokens: 50}\n"
                                "      policy: {kind: bandit, min_quality: 0.5}\n" MODELS;

START_TEST(config_loads)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(good, &c, err, sizeof err) == AH_E_OK, "%s", err);
    ck_assert_uint_eq(c->experiments.n, 1);
    const ah_experiment_cfg_t *e = &c->experiments.list[0];
    ck_assert_str_eq(e->name, "split");
    ck_assert_str_eq(e->route, "big");
    ck_assert_int_eq(e->narms, 2);
    ck_assert_int_eq(e->nwhen, 1);
    ck_assert_int_eq(e->sticky, AH_STICKY_USER);
    ck_assert_int_eq(e->policy, AH_POLICY_BANDIT);
    ck_assert_ptr_null(e->arms[0].model);
    ck_assert_str_eq(e->arms[1].model, "small");
    ck_assert_str_eq(e->arms[1].prompt, "s@2");
    ck_assert_double_eq_tol(e->arms[1].temperature, 0.2, 1e-12);
    ck_assert_int_eq(e->arms[1].max_tokens, 50);
    ck_assert_double_eq_tol(e->arms[0].temperature, -1, 1e-12);
    ah_config_free(c);
}
END_TEST

static void expect_error(const char *yaml, const char *what)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_int_eq(load(yaml, &c, err, sizeof err), AH_E_CONFIG);
    ck_assert_msg(strstr(err, what), "wanted '%s' in: %s", what, err);
    ck_assert_ptr_null(c);
}

START_TEST(config_errors_name_the_line)
{
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 0}\n" MODELS,
                 ":7: arm 'b' needs a 'weight' above 0");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: a, weight: 1}\n" MODELS,
                 ":7: arm 'a' is listed twice");
    expect_error(
        "ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
        "        - {name: a, weight: 1}\n        - {name: b, weight: 1, model: nope}\n" MODELS,
        ":3: experiment 'x', arm 'b': model 'nope' is not in model_list");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n" MODELS,
                 ":6: experiment 'x' needs 'arms': a list of at least 2");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n"
                 "    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n" MODELS,
                 ":8: experiment 'x' is defined twice");
    expect_error(
        "ahorro:\n  experiments:\n    - name: x\n      route: big\n      colour: red\n"
        "      arms:\n        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n" MODELS,
        ":5: unknown setting 'experiments[].colour'");
    expect_error("ahorro:\n  experiments:\n    - name: x\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n"
                 "      policy: {kind: greedy}\n" MODELS,
                 ":8: 'policy.kind' must be fixed or bandit");
    expect_error("ahorro:\n  experiments:\n    - name: 'a/b'\n      route: big\n      arms:\n"
                 "        - {name: a, weight: 1}\n        - {name: b, weight: 1}\n" MODELS,
                 ":3: an experiment needs a 'name'");
    /* nine arms */
    char y[2048];
    int n = snprintf(y, sizeof y,
                     "ahorro:\n  experiments:\n    - name: x\n      route: big\n"
                     "      arms:\n");
    for (int i = 0; i < 9; i++)
        n += snprintf(y + n, sizeof y - (size_t)n, "        - {name: a%d, weight: 1}\n", i);
    snprintf(y + n, sizeof y - (size_t)n, "%s", MODELS);
    expect_error(y, ":14: experiment 'x': at most 8 arms");
}
END_TEST

START_TEST(sticky_same_user_same_arm)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(good, &c, err, sizeof err) == AH_E_OK, "%s", err);
    const ah_experiment_cfg_t *e = &c->experiments.list[0];
    int first = ah_experiment_pick(e, NULL, "user-42");
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(ah_experiment_pick(e, NULL, "user-42"), first);
    /* another experiment name reshuffles: users are not always in the same arm index */
    ah_experiment_cfg_t other = *e;
    other.name = "another";
    int differ = 0;
    char who[32];
    for (int i = 0; i < 200; i++) {
        snprintf(who, sizeof who, "u%d", i);
        differ += ah_experiment_pick(e, NULL, who) != ah_experiment_pick(&other, NULL, who);
    }
    ck_assert_int_gt(differ, 20);
    ah_config_free(c);
}
END_TEST

START_TEST(split_within_tolerance)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(good, &c, err, sizeof err) == AH_E_OK, "%s", err);
    const ah_experiment_cfg_t *e = &c->experiments.list[0];
    int count[2] = {0, 0};
    char who[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(who, sizeof who, "user-%d", i);
        count[ah_experiment_pick(e, NULL, who)]++;
    }
    /* 70/30 within 2 points */
    ck_assert_msg(abs(count[0] - 7000) <= 200, "control got %d of 10000", count[0]);
    /* explicit weights override the configured ones */
    const double w[2] = {0.05, 0.95};
    count[0] = count[1] = 0;
    for (int i = 0; i < 10000; i++) {
        snprintf(who, sizeof who, "user-%d", i);
        count[ah_experiment_pick(e, w, who)]++;
    }
    ck_assert_msg(abs(count[1] - 9500) <= 200, "arm small got %d of 10000", count[1]);
    ah_config_free(c);
}
END_TEST

START_TEST(tag_filter)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(good, &c, err, sizeof err) == AH_E_OK, "%s", err);
    json_t *search = json_pack("{s:s,s:s}", "feature", "search", "team", "a");
    json_t *chat = json_pack("{s:s}", "feature", "chat");
    ck_assert_int_eq(ah_experiment_find(&c->experiments, "big", search), 0);
    ck_assert_int_eq(ah_experiment_find(&c->experiments, "big", chat), -1);
    ck_assert_int_eq(ah_experiment_find(&c->experiments, "big", NULL), -1);
    ck_assert_int_eq(ah_experiment_find(&c->experiments, "small", search), -1);
    ck_assert_int_eq(ah_experiment_find(&c->experiments, NULL, search), -1);
    json_decref(search);
    json_decref(chat);
    ah_config_free(c);
}
END_TEST

START_TEST(bandit_weights)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_msg(load(good, &c, err, sizeof err) == AH_E_OK, "%s", err);
    const ah_experiment_cfg_t *e = &c->experiments.list[0];
    double w[2];
    char why[512];
    /* too little feedback: the configured weights */
    ah_experiment_arm_stats_t few[2] = {{5, 0.9, 0.01}, {50, 0.9, 0.001}};
    ck_assert_int_eq(ah_experiment_bandit(e, few, w, why, sizeof why), -1);
    ck_assert_double_eq_tol(w[0], 0.7, 1e-12);
    ck_assert_msg(strstr(why, "scored requests"), "%s", why);
    /* the cheaper arm with the same quality wins, the other keeps the floor */
    ah_experiment_arm_stats_t st[2] = {{40, 0.8, 0.01}, {40, 0.75, 0.001}};
    ck_assert_int_eq(ah_experiment_bandit(e, st, w, why, sizeof why), 1);
    ck_assert_double_eq_tol(w[0], 0.05, 1e-12);
    ck_assert_double_eq_tol(w[1], 0.95, 1e-12);
    ck_assert_msg(strstr(why, "shifted to arm small: quality/$ 750"), "%s", why);
    /* under min_quality (0.5) a cheap arm cannot win */
    st[1].score_mean = 0.4;
    ck_assert_int_eq(ah_experiment_bandit(e, st, w, why, sizeof why), 0);
    ck_assert_double_eq_tol(w[0], 0.95, 1e-12);
    ck_assert_msg(strstr(why, "under min_quality"), "%s", why);
    st[0].score_mean = 0.3;
    ck_assert_int_eq(ah_experiment_bandit(e, st, w, why, sizeof why), -1);
    ck_assert_msg(strstr(why, "no arm reaches min_quality"), "%s", why);
    ah_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("experiment");
    TCase *tc = tcase_create("experiment");
    tcase_add_test(tc, config_loads);
    tcase_add_test(tc, config_errors_name_the_line);
    tcase_add_test(tc, sticky_same_user_same_arm);
    tcase_add_test(tc, split_within_tolerance);
    tcase_add_test(tc, tag_filter);
    tcase_add_test(tc, bandit_weights);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
