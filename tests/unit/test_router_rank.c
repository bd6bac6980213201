/* test_router_rank.c - routers ranked by expected accuracy gain per extra
 * dollar (rank: gain_per_dollar): the config's settings and their errors,
 * the gain and the tier it picks, output tokens from max_tokens, and the
 * price of an alias (ah_balancer_price). */
#include <check.h>

#include "check_run.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "route/balance.h"
#include "route/rank.h"

static ah_err_t load_any(const char *yaml, ah_config_t **c, char *err, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-rank-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    *c = NULL;
    ah_err_t rc = ah_config_load(path, c, err, n);
    unlink(path);
    return rc;
}

static ah_config_t *load(const char *yaml)
{
    char err[512] = "";
    ah_config_t *c = NULL;
    ah_err_t rc = load_any(yaml, &c, err, sizeof err);
    ck_assert_msg(rc == AH_E_OK, "config: %s", err);
    return c;
}

#define DEP(alias, model, extra)                                                                   \
    "  - model_name: " alias "\n    litellm_params: {model: openai/" model                         \
    ", api_base: 'http://127.0.0.1:1/v1'" extra "}\n"

/* strong: $10 / $30 per Mtok; cheap: $0.70 / $0.70 (two deployments, the
 * dearer one ignored); unpriced: no override, no catalogue. */
#define MODELS                                                                                     \
    "model_list:\n" DEP("strong", "big",                                                           \
                        ", input_cost_per_token: 0.00001, output_cost_per_token: 0.00003")         \
        DEP("cheap", "small-a",                                                                    \
            ", input_cost_per_token: 0.0000007, output_cost_per_token: "                           \
            "0.0000007") DEP("cheap", "small-b",                                                   \
                             ", input_cost_per_token: 0.000002, "                                  \
                             "output_cost_per_token: 0.000002") DEP("unpriced", "mystery", "")

#define ROUTER(extra, tiers)                                                                       \
    "ahorro:\n  routing:\n    routers:\n      - name: auto\n" extra "        tiers:\n" tiers

START_TEST(config_defaults_and_gain)
{
    ah_config_t *c = load(MODELS ROUTER("        rank: gain_per_dollar\n"
                                        "        critical_threshold: 0.6\n",
                                        "          - { name: high, model: strong, "
                                        "min_gain_per_usd: 1000 }\n"
                                        "          - { name: low, model: cheap }\n"));
    const ah_router_cfg_t *rt = ah_config_router(c, "auto");
    ck_assert_ptr_nonnull(rt);
    ck_assert_int_eq(rt->rank, AH_RANK_GAIN_PER_DOLLAR);
    ck_assert_int_eq(rt->expected_output_tokens, 256);
    ck_assert_uint_eq(rt->ntiers, 2);
    ck_assert_str_eq(rt->tiers[0].name, "high"); /* as written: strong first */
    ck_assert_double_eq(rt->tiers[0].min_gain_per_usd, 1000);
    /* Without a cost: by score at 0.5. */
    ck_assert_str_eq(ah_router_pick(rt, 0.6, 0)->name, "high");
    ck_assert_str_eq(ah_router_pick(rt, 0.4, 0)->name, "low");
    double g;
    /* 2 * 0.75 - 1 = 0.5 gain, extra $0.0001: 5000 per USD. */
    ck_assert_str_eq(ah_rank_pick(rt, 0.75, 0, 1e-4, &g)->name, "high");
    ck_assert_double_eq_tol(g, 5000, 1e-6);
    /* Same score, 10x dearer: 500 per USD, under 1000. */
    ck_assert_str_eq(ah_rank_pick(rt, 0.75, 0, 1e-3, &g)->name, "low");
    ck_assert_double_eq_tol(g, 500, 1e-9);
    /* A score under 0.5 never gains; criticality still takes the strong tier. */
    ck_assert_str_eq(ah_rank_pick(rt, 0.4, 0, 1e-9, &g)->name, "low");
    ck_assert(g < 0);
    ck_assert_str_eq(ah_rank_pick(rt, 0.1, 0.7, 1e-3, NULL)->name, "high");
    /* Strong not dearer: by score at 0.5. */
    ck_assert_str_eq(ah_rank_pick(rt, 0.5, 0, 0, &g)->name, "high");
    ck_assert(isinf(g) && g > 0);
    ck_assert_str_eq(ah_rank_pick(rt, 0.49, 0, -1e-4, &g)->name, "low");
    ck_assert(isinf(g) && g < 0);
    /* Price unknown: by score at 0.5, gain NAN. */
    ck_assert_str_eq(ah_rank_pick(rt, 0.55, 0, NAN, &g)->name, "high");
    ck_assert(isnan(g));
    ck_assert_str_eq(ah_rank_pick(rt, 0.45, 0, NAN, &g)->name, "low");
    ah_config_free(c);

    /* Default rank: score; ah_rank_pick is ah_router_pick there. */
    c = load(MODELS ROUTER("", "          - { name: low, model: cheap }\n"
                               "          - { name: high, model: strong, min_score: 0.5 }\n"));
    rt = ah_config_router(c, "auto");
    ck_assert_int_eq(rt->rank, AH_RANK_SCORE);
    ck_assert_str_eq(rt->tiers[0].name, "high");
    ck_assert_str_eq(ah_rank_pick(rt, 0.6, 0, 1.0, NULL)->name, "high");
    ck_assert_str_eq(ah_rank_pick(rt, 0.4, 0, 1e-12, NULL)->name, "low");
    ah_config_free(c);
}
END_TEST

START_TEST(output_tokens_and_costs)
{
    ah_config_t *c = load(MODELS ROUTER("        rank: gain_per_dollar\n"
                                        "        expected_output_tokens: 100\n",
                                        "          - { model: strong, min_gain_per_usd: 2.5e3 }\n"
                                        "          - { model: cheap }\n"));
    const ah_router_cfg_t *rt = ah_config_router(c, "auto");
    ck_assert_int_eq(rt->expected_output_tokens, 100);
    ck_assert_str_eq(rt->tiers[0].name, "strong"); /* a tier's name defaults to its model */
    ck_assert_double_eq(rt->tiers[0].min_gain_per_usd, 2500);
    json_t *b = json_pack("{s:[]}", "messages");
    ck_assert_int_eq(ah_rank_output_tokens(rt, b), 100);
    json_object_set_new(b, "max_tokens", json_integer(20));
    ck_assert_int_eq(ah_rank_output_tokens(rt, b), 20);
    json_object_set_new(b, "max_completion_tokens", json_integer(7)); /* wins over max_tokens */
    ck_assert_int_eq(ah_rank_output_tokens(rt, b), 7);
    json_object_set_new(b, "max_completion_tokens", json_integer(5000)); /* larger: the default */
    ck_assert_int_eq(ah_rank_output_tokens(rt, b), 100);
    json_decref(b);

    ck_assert_int_eq(ah_rank_est_tokens(400), 108);
    ck_assert_int_eq(ah_rank_est_tokens(0), 8);
    double cheap[2] = {0.7, 0.7}, strong[2] = {10, 30};
    /* 1000 in, 100 out: 1000 * 9.3 + 100 * 29.3 = 12230 micro-USD. */
    ck_assert_double_eq_tol(ah_rank_extra_usd(1000, 100, cheap, strong), 0.01223, 1e-12);

    /* Prices of aliases: overrides, the cheaper of two deployments, unknown. */
    ah_balancer_t *bal = ah_balancer_new(c, NULL);
    double in = -1, out = -1;
    ck_assert_int_eq(ah_balancer_price(bal, "strong", &in, &out), 0);
    ck_assert_double_eq_tol(in, 10, 1e-9);
    ck_assert_double_eq_tol(out, 30, 1e-9);
    ck_assert_int_eq(ah_balancer_price(bal, "cheap", &in, &out), 0);
    ck_assert_double_eq_tol(in, 0.7, 1e-9);
    ck_assert_double_eq_tol(out, 0.7, 1e-9);
    ck_assert_int_eq(ah_balancer_price(bal, "unpriced", &in, &out), -1);
    ck_assert_int_eq(ah_balancer_price(bal, "nosuch", &in, &out), -1);
    ah_balancer_free(bal);
    ah_config_free(c);
}
END_TEST

START_TEST(config_errors)
{
    static const struct {
        const char *router, *tiers, *want;
        int line; /* of the error in the file; 0: not checked */
    } cases[] = {
        {"        rank: cheapest\n", "          - { model: strong, min_score: 0.5 }\n",
         "'rank' must be score or gain_per_dollar", 14},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: 1000 }\n",
         "needs exactly two tiers, the strong one first", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: 1000 }\n"
         "          - { model: cheap }\n          - { model: unpriced }\n",
         "needs exactly two tiers", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong }\n          - { model: cheap }\n",
         "the strong tier (the first) of a gain_per_dollar router needs 'min_gain_per_usd'", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: 0 }\n          - { model: cheap }\n",
         "'min_gain_per_usd' must be a positive number", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: -5 }\n          - { model: cheap }\n",
         "'min_gain_per_usd' must be a positive number", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: lots }\n          - { model: cheap }\n",
         "'min_gain_per_usd' must be a number", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_score: 0.5 }\n          - { model: cheap }\n",
         "threshold is 'min_gain_per_usd', not 'min_score'", 16},
        {"        rank: gain_per_dollar\n",
         "          - { model: strong, min_gain_per_usd: 10 }\n"
         "          - { model: cheap, min_gain_per_usd: 1 }\n",
         "only the strong tier (the first) has 'min_gain_per_usd'", 17},
        {"",
         "          - { model: strong, min_gain_per_usd: 1000 }\n          - { model: cheap }\n",
         "'min_gain_per_usd' needs rank: gain_per_dollar", 15},
        {"        expected_output_tokens: 10\n", "          - { model: strong, min_score: 0.5 }\n",
         "'expected_output_tokens' is used only with rank: gain_per_dollar", 14},
        {"        rank: gain_per_dollar\n        expected_output_tokens: 2.5\n",
         "          - { model: strong, min_gain_per_usd: 1 }\n          - { model: cheap }\n",
         "'expected_output_tokens' must be a whole number", 15},
        {"        rank: gain_per_dollar\n        expected_output_tokens: -1\n",
         "          - { model: strong, min_gain_per_usd: 1 }\n          - { model: cheap }\n",
         "'expected_output_tokens' must be between", 15},
        {"        kind: cascade\n        cascade: [cheap, strong]\n        rank: gain_per_dollar\n",
         "", "'rank' applies to complexity and learned routers", 16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[2048], err[512] = "", want_line[32];
        snprintf(yaml, sizeof yaml, "%s%s%s%s%s", MODELS,
                 "ahorro:\n  routing:\n    routers:\n      - name: auto\n", cases[i].router,
                 cases[i].tiers[0] ? "        tiers:\n" : "", cases[i].tiers);
        ah_config_t *c = NULL;
        ck_assert_msg(load_any(yaml, &c, err, sizeof err) == AH_E_CONFIG, "case %zu loaded", i);
        ah_config_free(c);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].want);
        /* file:line: the path, then the line of the setting at fault. */
        snprintf(want_line, sizeof want_line, ":%d: ", cases[i].line);
        ck_assert_msg(strncmp(err, "/tmp/ahorro-test-rank-", 22) == 0, "case %zu: '%s'", i, err);
        ck_assert_msg(strstr(err, want_line), "case %zu: '%s' lacks line '%s'", i, err, want_line);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("router_rank");
    TCase *t = tcase_create("router_rank");
    tcase_add_test(t, config_defaults_and_gain);
    tcase_add_test(t, output_tokens_and_costs);
    tcase_add_test(t, config_errors);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
