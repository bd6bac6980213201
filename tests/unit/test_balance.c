/* test_balance.c - deployment choice and health: weighted shares, least
 * busy / latency / cost, cooldown and probe, rpm limits, wildcard aliases;
 * the windows shared across instances (balance_sync.c: ids, the others'
 * counts, and two "instances" through a real Redis when AHORRO_TEST_REDIS
 * is set); and the routing section of the config (fallbacks, rules, tiers). */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/clock.h"
#include "route/balance.h"
#include "route/balance_sync.h"

static const char *redis_url; /* AHORRO_TEST_REDIS, or NULL */

static ah_config_t *load(const char *yaml)
{
    char path[64], err[512] = "";
    snprintf(path, sizeof path, "/tmp/ahorro-test-balance-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_config_t *c = NULL;
    ah_err_t rc = ah_config_load(path, &c, err, sizeof err);
    unlink(path);
    ck_assert_msg(rc == AH_E_OK, "config: %s", err);
    return c;
}

static ah_err_t load_err(const char *yaml, char *err, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-balance-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_config_t *c = NULL;
    ah_err_t rc = ah_config_load(path, &c, err, n);
    unlink(path);
    ah_config_free(c);
    return rc;
}

#define DEP(alias, model, extra)                                                                   \
    "  - model_name: " alias "\n    litellm_params: {model: openai/" model                         \
    ", api_base: 'http://127.0.0.1:1/v1'" extra "}\n"

static const char *pick(ah_balancer_t *b, const char *alias, ah_pick_opts_t *o, ah_pick_t *why)
{
    const ah_deployment_t *d = ah_balancer_pick(b, alias, o, why, NULL);
    return d ? d->model : NULL;
}

START_TEST(weighted_shares)
{
    ah_config_t *c = load("model_list:\n" DEP("m", "a", ", weight: 3") DEP("m", "b", ""));
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 42;
    ah_pick_opts_t o = {.rng = &rng};
    ah_pick_t why;
    int a = 0;
    for (int i = 0; i < 10000; i++)
        a += strcmp(pick(b, "m", &o, &why), "a") == 0;
    /* Binomial(10000, 0.75): sd 43. */
    ck_assert_int_gt(a, 7300);
    ck_assert_int_lt(a, 7700);
    ah_balancer_free(b);
    ah_config_free(c);
}
END_TEST

START_TEST(least_busy_and_latency)
{
    ah_config_t *c = load("model_list:\n" DEP("m", "a", "") DEP(
        "m", "b", "") "router_settings: {routing_strategy: least-busy}\n");
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 7;
    ah_pick_opts_t o = {.rng = &rng};
    ah_pick_t why;
    ah_balancer_begin(b, &c->deps[0], 10);
    for (int i = 0; i < 100; i++)
        ck_assert_str_eq(pick(b, "m", &o, &why), "b");
    ah_balancer_end(b, &c->deps[0], 1, 1000);
    ah_balancer_free(b);

    c->routing.strategy = AH_BALANCE_LEAST_LATENCY;
    b = ah_balancer_new(c, NULL);
    ah_balancer_begin(b, &c->deps[0], 0);
    ah_balancer_end(b, &c->deps[0], 1, 50000);
    /* b has no sample yet: it is measured first. */
    ck_assert_str_eq(pick(b, "m", &o, &why), "b");
    ah_balancer_begin(b, &c->deps[1], 0);
    ah_balancer_end(b, &c->deps[1], 1, 5000);
    int fast = 0;
    for (int i = 0; i < 1000; i++)
        fast += strcmp(pick(b, "m", &o, &why), "b") == 0;
    ck_assert_int_gt(fast, 940); /* 5% explore by weight: about 975 */
    ah_balancer_free(b);
    ah_config_free(c);
}
END_TEST

START_TEST(lowest_cost)
{
    ah_config_t *c = load("model_list:\n" DEP("m", "dear", ", input_cost_per_token: 0.00001") DEP(
        "m", "cheap",
        ", input_cost_per_token: 0.000001") "ahorro: {routing: {strategy: lowest-cost}}\n");
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 1;
    ah_pick_opts_t o = {.rng = &rng};
    ah_pick_t why;
    for (int i = 0; i < 50; i++)
        ck_assert_str_eq(pick(b, "m", &o, &why), "cheap");
    ah_balancer_free(b);
    ah_config_free(c);
}
END_TEST

START_TEST(cooldown_and_probe)
{
    ah_config_t *c = load("model_list:\n" DEP("m", "a", "") DEP(
        "m", "b", "") "ahorro: {routing: {allowed_fails: 2, cooldown: 0.05}}\n");
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 3;
    ah_pick_opts_t o = {.rng = &rng};
    ah_pick_t why;
    ah_dep_health_t h;
    for (int i = 0; i < 2; i++) {
        ah_balancer_begin(b, &c->deps[0], 0);
        ah_balancer_end(b, &c->deps[0], 0, 0);
    }
    ah_balancer_health(b, &c->deps[0], &h);
    ck_assert_int_eq(h.fails, 2);
    ck_assert(h.cooldown_left_s > 0);
    for (int i = 0; i < 100; i++)
        ck_assert_str_eq(pick(b, "m", &o, &why), "b");
    /* Only a itself: cooling, unless a last resort is allowed. */
    int tried[] = {1};
    o.tried = tried;
    o.ntried = 1;
    ck_assert_ptr_null(pick(b, "m", &o, &why));
    ck_assert_int_eq(why, AH_PICK_COOLING);
    o.allow_cooling = 1;
    ck_assert_str_eq(pick(b, "m", &o, &why), "a");
    o.allow_cooling = 0;
    o.ntried = 0;
    usleep(60000);
    /* Cooldown over: a takes exactly one probe, then is kept away again. */
    ck_assert_str_eq(pick(b, "m", &o, &why), "a");
    ck_assert_str_eq(pick(b, "m", &o, &why), "b");
    ah_balancer_begin(b, &c->deps[0], 0);
    ah_balancer_end(b, &c->deps[0], 1, 100);
    ah_balancer_health(b, &c->deps[0], &h);
    ck_assert_int_eq(h.fails, 0);
    ck_assert(h.cooldown_left_s == 0);
    int a = 0;
    for (int i = 0; i < 200; i++)
        a += strcmp(pick(b, "m", &o, &why), "a") == 0;
    ck_assert_int_gt(a, 50);
    ah_balancer_free(b);
    ah_config_free(c);
}
END_TEST

START_TEST(rpm_limit_and_unknown)
{
    ah_config_t *c = load("model_list:\n" DEP("m", "a", ", rpm: 2") DEP("w*", "*", ""));
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 5;
    ah_pick_opts_t o = {.rng = &rng};
    ah_pick_t why;
    double retry = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(ah_balancer_pick(b, "m", &o, &why, &retry));
        ah_balancer_begin(b, &c->deps[0], 1);
        ah_balancer_end(b, &c->deps[0], 1, 10);
    }
    /* The third within a (sliding) minute is refused, until the first two
     * leave the window, 60 to 61 s after they were counted. */
    ck_assert_ptr_null(ah_balancer_pick(b, "m", &o, &why, &retry));
    ck_assert_int_eq(why, AH_PICK_LIMITED);
    ck_assert(retry >= 60 && retry <= 61);
    ck_assert_str_eq(pick(b, "w-anything", &o, &why), "*");
    ck_assert_ptr_null(pick(b, "nothing", &o, &why));
    ck_assert_int_eq(why, AH_PICK_UNKNOWN);
    ah_balancer_free(b);
    ah_config_free(c);
}
END_TEST

START_TEST(cluster_ids_and_others)
{
    const char *yaml = "model_list:\n" DEP("m", "a", ", rpm: 3") DEP("m", "a", ", rpm: 3")
        DEP("m", "b", ", tpm: 100") DEP("n", "a", "");
    ah_config_t *c = load(yaml), *c2 = load(yaml);
    char id[4][AH_BALANCE_MAX_DEP_ID + 1], again[AH_BALANCE_MAX_DEP_ID + 1];
    for (int i = 0; i < 4; i++) {
        ah_balance_sync_dep_id(c, i, id[i]);
        ah_balance_sync_dep_id(c2, i, again);
        ck_assert_str_eq(id[i], again); /* the same config: the same ids */
    }
    /* a second key of the same model gets an id of its own */
    ck_assert_int_eq((int)strlen(id[0]), 16);
    ck_assert_str_eq(id[1] + 16, "-1");
    ck_assert(strncmp(id[0], id[1], 16) == 0);
    ck_assert_str_ne(id[0], id[2]);
    ck_assert_str_ne(id[0], id[3]);
    /* Without a Redis in the config no sync starts. */
    ck_assert_ptr_null(ah_balance_sync_new(c, NULL));

    /* The others' counts fill the window as this process's do. */
    ah_balancer_t *b = ah_balancer_new(c, NULL);
    uint64_t rng = 9;
    ah_pick_opts_t o = {.rng = &rng, .tokens = 10};
    ah_pick_t why;
    double retry = 0;
    int64_t now = ah_balancer_second();
    ah_balancer_set_others(b, 0, now - 30, 2, 0);
    ah_balancer_set_others(b, 1, now, 3, 0);
    ah_balancer_set_others(b, 2, now - 70, 500, 500); /* out of the window */
    int64_t r, t;
    ah_balancer_others(b, 0, now - 30, &r, &t);
    ck_assert_int_eq((int)r, 2);
    ah_balancer_others(b, 0, now - 29, &r, &t);
    ck_assert_int_eq((int)r, 0);
    int got_a = 0;
    for (int i = 0; i < 20; i++) {
        const ah_deployment_t *d = ah_balancer_pick(b, "m", &o, &why, &retry);
        ck_assert_ptr_nonnull(d);
        got_a += d->index == 0;
        if (d->index == 0) {
            ah_balancer_begin(b, d, 10);
            ah_balancer_end(b, d, 1, 10);
        }
    }
    ck_assert_int_eq(got_a, 1); /* 2 of others + 1 of ours = rpm 3 */
    ah_balancer_set_others(b, 2, now, 0, 95);
    ck_assert_ptr_null(ah_balancer_pick(b, "m", &o, &why, &retry));
    ck_assert_int_eq(why, AH_PICK_LIMITED);
    /* the others' request 30 s ago leaves the window first */
    ck_assert(retry >= 30 && retry <= 32);
    ah_balancer_free(b);
    ah_config_free(c);
    ah_config_free(c2);
}
END_TEST

/* Two balancers stand for two instances; their syncs' rounds run by hand. */
START_TEST(cluster_through_redis)
{
    if (!redis_url)
        return;
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "model_list:\n" DEP("m", "a", ", rpm: 3")
                 DEP("m", "b", ", tpm: 1000") "ahorro:\n  state:\n    url: %s\n    prefix: "
                                              "'ahorro-test-balance-%d-%lld:'\n",
             redis_url, (int)getpid(), (long long)ah_now_us());
    ah_config_t *plain =
        load("model_list:\n" DEP("m", "a", ", rpm: 3") DEP("m", "b", ", tpm: 1000"));
    ah_config_t *shared = load(yaml);
    ah_balancer_t *b1 = ah_balancer_new(plain, NULL), *b2 = ah_balancer_new(plain, NULL);
    ah_balance_sync_t *s1 = ah_balance_sync_new(shared, b1), *s2 = ah_balance_sync_new(shared, b2);
    ck_assert_ptr_nonnull(s1);
    ck_assert_ptr_nonnull(s2);
    const ah_deployment_t *a = &plain->deps[0], *tb = &plain->deps[1];
    ah_balancer_begin(b1, a, 5);
    ah_balancer_begin(b1, a, 5);
    ah_balancer_begin(b1, tb, 600);
    ck_assert_int_eq(ah_balance_sync_round(s1), 0);
    ck_assert_int_eq(ah_balance_sync_round(s1), 0); /* nothing new: nothing counted twice */
    ck_assert_int_eq(ah_balance_sync_round(s2), 0);
    int64_t now = ah_balancer_second(), r = 0, t = 0, sr = 0, st = 0;
    for (int64_t sec = now - AH_BALANCE_WINDOW_S + 1; sec <= now; sec++) {
        ah_balancer_others(b2, 0, sec, &r, &t);
        sr += r;
        ah_balancer_others(b2, 1, sec, &r, &t);
        st += t;
    }
    ck_assert_int_eq((int)sr, 2);
    ck_assert_int_eq((int)st, 600);
    /* b2 has room for one request on a (2 + 1 = rpm 3), none of 600 tokens on b */
    uint64_t rng = 3;
    ah_pick_opts_t o = {.rng = &rng, .tokens = 600};
    ah_pick_t why;
    double retry = 0;
    const ah_deployment_t *d = ah_balancer_pick(b2, "m", &o, &why, &retry);
    ck_assert_ptr_eq(d, a);
    ah_balancer_begin(b2, d, 600);
    ck_assert_ptr_null(ah_balancer_pick(b2, "m", &o, &why, &retry));
    ck_assert_int_eq(why, AH_PICK_LIMITED);
    /* and b1 learns of b2's request: a is full for it too */
    ck_assert_int_eq(ah_balance_sync_round(s2), 0);
    ck_assert_int_eq(ah_balance_sync_round(s1), 0);
    o.tokens = 1;
    ck_assert_ptr_eq(ah_balancer_pick(b1, "m", &o, &why, &retry), tb);
    ah_balance_sync_stop(s1);
    ah_balance_sync_stop(s2);
    ah_balancer_free(b1);
    ah_balancer_free(b2);
    ah_config_free(plain);
    ah_config_free(shared);
}
END_TEST

START_TEST(routing_config)
{
    ah_config_t *c = load("model_list:\n" DEP("big", "gpt-4o", "") DEP(
        "small", "gpt-4o-mini", "") "router_settings:\n"
                                    "  num_retries: 4\n"
                                    "  cooldown_time: 12\n"
                                    "  fallbacks: [{big: [small]}]\n"
                                    "ahorro:\n"
                                    "  routing:\n"
                                    "    context_window_fallbacks: {small: big}\n"
                                    "    rules:\n"
                                    "      - when: {tag: {feature: complaints}, min_chars: 10}\n"
                                    "        model: big\n"
                                    "    routers:\n"
                                    "      - name: auto\n"
                                    "        critical_threshold: 0.7\n"
                                    "        tiers:\n"
                                    "          - {name: low, model: small}\n"
                                    "          - {name: high, model: big, min_score: 0.6}\n"
                                    "          - {name: mid, model: small, min_score: 0.3}\n");
    const ah_routing_config_t *rc = &c->routing;
    ck_assert_int_eq(rc->retries, 4);
    ck_assert(rc->cooldown_s == 12);
    ck_assert_int_eq((int)rc->nfallbacks, 1);
    ck_assert_str_eq(rc->fallbacks[0].to[0], "small");
    ck_assert_str_eq(rc->context_fallbacks[0].to[0], "big");
    ck_assert_int_eq((int)rc->nrules, 1);
    ck_assert_str_eq(rc->rules[0].tag_key, "feature");
    ck_assert_str_eq(rc->rules[0].tag_value, "complaints");
    ck_assert_int_eq((int)rc->rules[0].min_prompt_chars, 10);
    const ah_router_cfg_t *rt = ah_config_router(c, "auto");
    ck_assert_ptr_nonnull(rt);
    ck_assert_ptr_null(ah_config_router(c, "big"));
    /* Tiers are kept strongest first. */
    ck_assert_str_eq(rt->tiers[0].name, "high");
    ck_assert_str_eq(rt->tiers[1].name, "mid");
    ck_assert_str_eq(rt->tiers[2].name, "low");
    ck_assert_str_eq(ah_router_pick(rt, 0.9, 0)->name, "high");
    ck_assert_str_eq(ah_router_pick(rt, 0.6, 0)->name, "high");
    ck_assert_str_eq(ah_router_pick(rt, 0.45, 0)->name, "mid");
    ck_assert_str_eq(ah_router_pick(rt, 0.1, 0)->name, "low");
    ck_assert_str_eq(ah_router_pick(rt, 0.1, 0.8)->name, "high");
    ah_config_free(c);
}
END_TEST

START_TEST(routing_config_errors)
{
    char err[512];
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"ahorro: {routing: {fallbacks: {big: [small], small: [big]}}}\n", "cycle"},
        {"ahorro: {routing: {fallbacks: {big: [ghost]}}}\n", "'ghost'"},
        {"ahorro: {routing: {fallbacks: {ghost: [big]}}}\n", "no model_list entry or router"},
        {"ahorro: {routing: {routers: [{name: auto, tiers: [{name: x}]}]}}\n", "tier has no model"},
        {"ahorro: {routing: {routers: [{name: auto}]}}\n", "needs 'tiers'"},
        {"ahorro: {routing: {routers: [{name: auto, kind: learned, tiers: [{model: big}]}]}}\n",
         "model_path"},
        {"ahorro: {routing: {routers: [{name: big, tiers: [{model: small}]}]}}\n",
         "name of a model_list entry"},
        {"ahorro: {routing: {rules: [{when: {}, model: big}]}}\n", "at least one condition"},
        {"ahorro: {routing: {rules: [{when: {tag: a=b}}]}}\n", "needs 'model'"},
        {"ahorro: {routing: {retries: 99}}\n", "'retries' must be between"},
        {"ahorro: {routing: {strategy: fastest}}\n", "'strategy' must be"},
        {"ahorro: {routing: {colour: red}}\n", "unknown setting 'routing.colour'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml,
                 "model_list:\n" DEP("big", "gpt-4o", "") DEP("small", "gpt-4o-mini", "") "%s",
                 cases[i].yaml);
        err[0] = 0;
        ck_assert_int_eq(load_err(yaml, err, sizeof err), AH_E_CONFIG);
        ck_assert_msg(strstr(err, cases[i].want), "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].want);
    }
}
END_TEST

int main(void)
{
    redis_url = getenv("AHORRO_TEST_REDIS");
    if (redis_url && !*redis_url)
        redis_url = NULL;
    if (!redis_url)
        printf("test_balance: AHORRO_TEST_REDIS is not set; the test against Redis skips\n");
    Suite *s = suite_create("balance");
    TCase *t = tcase_create("balance");
    tcase_add_test(t, weighted_shares);
    tcase_add_test(t, least_busy_and_latency);
    tcase_add_test(t, lowest_cost);
    tcase_add_test(t, cooldown_and_probe);
    tcase_add_test(t, rpm_limit_and_unknown);
    tcase_add_test(t, cluster_ids_and_others);
    tcase_add_test(t, cluster_through_redis);
    tcase_add_test(t, routing_config);
    tcase_add_test(t, routing_config_errors);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
