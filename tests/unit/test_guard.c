/* test_guard.c - the shared counters (conditional adds under threads, expiry),
 * calendar periods in time zones (DST, weeks from Monday), and the budget and
 * rate-limit configuration. */
#include <check.h>

#include "check_run.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "core/clock.h"
#include "guard/period.h"
#include "state/state.h"

#define THREADS 8
#define TRIES 20000

typedef struct {
    ah_state_t *s;
    int added;
} worker_t;

static void *hammer(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < TRIES; i++)
        w->added += ah_state_add_if(w->s, "budget", 7, 100000, 0, NULL);
    return NULL;
}

START_TEST(conditional_add_under_threads)
{
    ah_state_t *s = ah_state_local_new(1024);
    pthread_t t[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){s, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    int added = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        added += w[i].added;
    }
    /* Exactly as many as fit: 100000 / 7 = 14285, never one more. */
    ck_assert_int_eq(added, 14285);
    ck_assert_int_eq((int)ah_state_get(s, "budget"), 14285 * 7);
    /* Negative deltas (settling) always go in. */
    int64_t v;
    ck_assert_int_eq(ah_state_add_if(s, "budget", -5, 0, 0, &v), 1);
    ck_assert_int_eq((int)v, 14285 * 7 - 5);
    ah_state_free(s);
}
END_TEST

START_TEST(expiry_and_bound)
{
    ah_state_t *s = ah_state_local_new(64); /* one key a stripe */
    int64_t now = ah_wall_ms();
    ck_assert(ah_state_add_if(s, "old", 5, AH_STATE_NO_LIMIT, now + 30, NULL));
    ck_assert_int_eq((int)ah_state_get(s, "old"), 5);
    usleep(60000);
    ck_assert_int_eq((int)ah_state_get(s, "old"), 0);
    ck_assert_int_eq((int)ah_state_get(s, "never-set"), 0);
    /* Full: refused, with -1, rather than growing. */
    int refused = 0;
    for (int i = 0; i < 2000; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        int64_t v;
        if (!ah_state_add_if(s, k, 1, AH_STATE_NO_LIMIT, 0, &v)) {
            ck_assert_int_eq((int)v, -1);
            refused++;
        }
    }
    ck_assert_int_gt(refused, 0);
    ah_state_free(s);
}
END_TEST

static int64_t at(int y, int mo, int d, int h)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h};
    return (int64_t)timegm(&tm) * 1000;
}

START_TEST(periods_in_time_zones)
{
    ah_periods_t p;
    int64_t now = at(2026, 11, 28, 12), s, e;
    ck_assert_int_eq(ah_periods_build(&p, AH_PERIOD_DAY, "UTC", now), AH_E_OK);
    ah_periods_find(&p, now, &s, &e);
    ck_assert(s == at(2026, 11, 28, 0) && e == at(2026, 11, 29, 0));
    ah_periods_free(&p);
    if (!ah_period_zone_known("Europe/Madrid"))
        return; /* no zone database here */
    /* Madrid's month of March 2026 starts at 23:00 UTC on Feb 28 (CET) and
     * ends at 22:00 UTC on Mar 31 (CEST, after the change on Mar 29). */
    ck_assert_int_eq(ah_periods_build(&p, AH_PERIOD_MONTH, "Europe/Madrid", now), AH_E_OK);
    ah_periods_find(&p, at(2026, 3, 15, 12), &s, &e);
    ck_assert(s == at(2026, 2, 28, 23));
    ck_assert(e == at(2026, 3, 31, 22));
    ah_periods_free(&p);
    /* Weeks from Monday: Saturday 2026-11-28 is in the week of Monday the 23rd. */
    ck_assert_int_eq(ah_periods_build(&p, AH_PERIOD_WEEK, "Europe/Madrid", now), AH_E_OK);
    ah_periods_find(&p, now, &s, &e);
    ck_assert(s == at(2026, 11, 22, 23));
    ck_assert(e == at(2026, 11, 29, 23));
    ah_periods_free(&p);
    ck_assert_int_eq(ah_periods_build(&p, AH_PERIOD_DAY, "Mars/Olympus", now), AH_E_INVAL);
    ck_assert_int_eq(ah_periods_build(&p, AH_PERIOD_DAY, "../../etc/passwd", now), AH_E_INVAL);
    /* The zone of the process is left as it was. */
    ck_assert_ptr_null(getenv("TZ"));
}
END_TEST

static ah_config_t *load(const char *yaml, char *err, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-guard-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_config_t *c = NULL;
    ah_config_load(path, &c, err, n);
    unlink(path);
    return c;
}

START_TEST(guard_config)
{
    char err[512] = "";
    ah_config_t *c = load("model_list:\n"
                          "  - model_name: m\n"
                          "    litellm_params: {model: openai/gpt-4o, api_base: 'http://x/v1'}\n"
                          "ahorro:\n"
                          "  limits: {default_max_tokens: 1000}\n"
                          "  budgets:\n"
                          "    - {name: a, scope: 'tag:feature=support', limit_usd: 5}\n"
                          "    - {name: b, scope: 'user:*', period: week, limit_usd: 1,\n"
                          "       action: downgrade, downgrade_to: m, alerts: [0.9]}\n"
                          "  rate_limits:\n"
                          "    - {scope: 'key:*', rpm: 10, tpm: 5000}\n"
                          "    - {scope: global, rpm: 100}\n",
                          err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    const ah_guard_config_t *g = &c->guard;
    ck_assert_int_eq((int)g->default_max_tokens, 1000);
    ck_assert_int_eq((int)g->nbudgets, 2);
    ck_assert_int_eq(g->budgets[0].scope.kind, AH_SCOPE_TAG);
    ck_assert_str_eq(g->budgets[0].scope.tag, "feature");
    ck_assert_str_eq(g->budgets[0].scope.value, "support");
    ck_assert_int_eq(g->budgets[0].period, AH_PERIOD_MONTH);
    ck_assert_int_eq(g->budgets[0].nalerts, 3);
    ck_assert_int_eq(g->budgets[1].scope.kind, AH_SCOPE_USER);
    ck_assert_ptr_null(g->budgets[1].scope.value);
    ck_assert_int_eq(g->budgets[1].action, AH_BUDGET_DOWNGRADE);
    ck_assert_int_eq(g->budgets[1].nalerts, 1);
    ck_assert_int_eq((int)g->nrate_limits, 2);
    ck_assert_int_eq((int)g->rate_limits[0].tpm, 5000);
    ck_assert_int_eq(g->rate_limits[1].scope.kind, AH_SCOPE_GLOBAL);
    ah_config_free(c);

    c = load("ahorro:\n  budgets:\n    - {name: a, scope: 'tag:fe\"x=1', limit_usd: 5}\n", err,
             sizeof err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "tag name"), "%s", err);
    c = load("ahorro:\n  budgets:\n    - {name: a, scope: global, limit_usd: 5}\n"
             "    - {name: a, scope: global, limit_usd: 6}\n",
             err, sizeof err);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "defined twice"), "%s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("guard");
    TCase *t = tcase_create("guard");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, conditional_add_under_threads);
    tcase_add_test(t, expiry_and_bound);
    tcase_add_test(t, periods_in_time_zones);
    tcase_add_test(t, guard_config);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
