/* test_stats.c - quality/stats: Student-t, intervals, Welch, two proportions.
 *
 * Expected values: t quantiles from the standard tables (e.g. NIST/SEMATECH
 * e-Handbook, table 1.3.6.7.2: t(0.975; 1) = 12.706, t(0.975; 4) = 2.776,
 * t(0.975; 9) = 2.262, t(0.975; 30) = 2.042), given here to more digits as
 * computed with mpmath 1.3 (betainc, 30 digits); the worked examples were
 * computed by hand and checked with the same mpmath code, and the Welch
 * example matches R's t.test(1:5, c(2,4,6,8,10)) (t = -1.8974,
 * df = 5.8824, p-value = 0.1075). */
#include <check.h>
#include <math.h>

#include "check_run.h"
#include "quality/stats.h"

static ah_stats_t sample(const double *x, int n)
{
    ah_stats_t s = {0};
    for (int i = 0; i < n; i++)
        ah_stats_add(&s, x[i]);
    return s;
}

START_TEST(mean_and_sd)
{
    const double x[] = {2, 4, 4, 4, 5, 5, 7, 9}; /* population sd 2 (textbook), sample sd */
    ah_stats_t s = sample(x, 8);
    ck_assert_int_eq(s.n, 8);
    ck_assert_double_eq_tol(s.mean, 5, 1e-12);
    ck_assert_double_eq_tol(ah_stats_sd(&s), sqrt(32.0 / 7), 1e-12); /* 2.13809 */
    ah_stats_t one = sample(x, 1);
    ck_assert_double_eq(ah_stats_sd(&one), 0);
}
END_TEST

START_TEST(t_distribution)
{
    ck_assert_double_eq_tol(ah_stats_t_quantile(0.975, 1), 12.70620474, 1e-6);
    ck_assert_double_eq_tol(ah_stats_t_quantile(0.975, 4), 2.776445105, 1e-7);
    ck_assert_double_eq_tol(ah_stats_t_quantile(0.975, 9), 2.262157163, 1e-7);
    ck_assert_double_eq_tol(ah_stats_t_quantile(0.975, 30), 2.042272456, 1e-7);
    ck_assert_double_eq_tol(ah_stats_t_cdf(2.0, 5), 0.949030260585, 1e-9);
    ck_assert_double_eq_tol(ah_stats_t_cdf(-2.0, 5), 1 - 0.949030260585, 1e-9);
    ck_assert_double_eq_tol(ah_stats_t_cdf(0, 3), 0.5, 1e-12);
    /* large df: the normal's 1.959964 */
    ck_assert_double_eq_tol(ah_stats_t_quantile(0.975, 1e6), 1.959966, 1e-5);
}
END_TEST

START_TEST(confidence_interval)
{
    const double x[] = {1, 2, 3, 4, 5}; /* mean 3, sd sqrt(2.5); 3 -/+ 2.776445 * 0.707107 */
    ah_stats_t s = sample(x, 5);
    double lo, hi;
    ck_assert_int_eq(ah_stats_ci95(&s, &lo, &hi), 0);
    ck_assert_double_eq_tol(lo, 1.036756839, 1e-7);
    ck_assert_double_eq_tol(hi, 4.963243161, 1e-7);
    ah_stats_t one = sample(x, 1);
    ck_assert_int_eq(ah_stats_ci95(&one, &lo, &hi), -1);
}
END_TEST

START_TEST(welch)
{
    const double a[] = {1, 2, 3, 4, 5}, b[] = {2, 4, 6, 8, 10};
    ah_stats_t sa = sample(a, 5), sb = sample(b, 5);
    double t, df, p;
    ck_assert_int_eq(ah_stats_welch(&sa, &sb, &t, &df, &p), 0);
    ck_assert_double_eq_tol(t, -1.897366596, 1e-8);
    ck_assert_double_eq_tol(df, 5.882352941, 1e-8);
    ck_assert_double_eq_tol(p, 0.1075311949, 1e-8);
    /* symmetric */
    ck_assert_int_eq(ah_stats_welch(&sb, &sa, &t, &df, &p), 0);
    ck_assert_double_eq_tol(t, 1.897366596, 1e-8);
    ck_assert_double_eq_tol(p, 0.1075311949, 1e-8);
    /* nothing to test: constant samples, or too few values */
    const double c[] = {3, 3, 3};
    ah_stats_t sc = sample(c, 3), s1 = sample(a, 1);
    ck_assert_int_eq(ah_stats_welch(&sc, &sc, &t, &df, &p), -1);
    ck_assert_double_eq(p, 1);
    ck_assert_int_eq(ah_stats_welch(&s1, &sa, &t, &df, &p), -1);
    const double d[] = {4, 4, 4};
    ah_stats_t sd = sample(d, 3);
    ck_assert_int_eq(ah_stats_welch(&sd, &sc, &t, &df, &p), 0);
    ck_assert_double_eq(p, 0);
    ck_assert(isinf(t) && t > 0);
}
END_TEST

START_TEST(two_proportions)
{
    /* 45/100 against 30/100: pooled 0.375, se 0.0684653, z 2.19089, p 0.0284597 */
    double z, p;
    ck_assert_int_eq(ah_stats_two_prop(45, 100, 30, 100, &z, &p), 0);
    ck_assert_double_eq_tol(z, 2.19089023, 1e-7);
    ck_assert_double_eq_tol(p, 0.02845973692, 1e-9);
    ck_assert_int_eq(ah_stats_two_prop(30, 100, 45, 100, &z, &p), 0);
    ck_assert_double_eq_tol(z, -2.19089023, 1e-7);
    ck_assert_int_eq(ah_stats_two_prop(0, 10, 0, 10, &z, &p), -1);
    ck_assert_int_eq(ah_stats_two_prop(1, 0, 0, 10, &z, &p), -1);
}
END_TEST

START_TEST(paired)
{
    /* differences 1..5: R's t.test(1:5) gives t = 4.2426, df = 4,
     * p-value = 0.01324 (mpmath: 0.0132355995636827) */
    const double d[] = {1, 2, 3, 4, 5};
    ah_stats_t s = sample(d, 5);
    double t, p;
    ck_assert_int_eq(ah_stats_paired(&s, &t, &p), 0);
    ck_assert_double_eq_tol(t, 4.242640687, 1e-8);
    ck_assert_double_eq_tol(p, 0.0132355995636827, 1e-9);
    /* constant non-zero differences: certain; all zero: nothing to test */
    const double c[] = {0.5, 0.5, 0.5};
    s = sample(c, 3);
    ck_assert_int_eq(ah_stats_paired(&s, &t, &p), 0);
    ck_assert_double_eq(p, 0);
    const double z[] = {0, 0, 0};
    s = sample(z, 3);
    ck_assert_int_eq(ah_stats_paired(&s, &t, &p), -1);
    ck_assert_double_eq(p, 1);
    s = sample(d, 1);
    ck_assert_int_eq(ah_stats_paired(&s, &t, &p), -1);
}
END_TEST

START_TEST(sign_test)
{
    /* R: binom.test(8, 10)$p.value = 0.109375 (112/1024),
     * binom.test(0, 5) = 0.0625, binom.test(10, 10) = 0.001953125 */
    ck_assert_double_eq_tol(ah_stats_sign_test(8, 2), 0.109375, 1e-12);
    ck_assert_double_eq_tol(ah_stats_sign_test(2, 8), 0.109375, 1e-12);
    ck_assert_double_eq_tol(ah_stats_sign_test(0, 5), 0.0625, 1e-12);
    ck_assert_double_eq_tol(ah_stats_sign_test(10, 0), 0.001953125, 1e-12);
    ck_assert_double_eq(ah_stats_sign_test(0, 0), 1);
    ck_assert_double_eq(ah_stats_sign_test(5, 5), 1); /* capped at 1 */
    /* large n stays finite: 5,100 against 4,900 of 10,000 (z = 2.0, p ~ 0.0455) */
    double p = ah_stats_sign_test(5100, 4900);
    ck_assert(p > 0.04 && p < 0.05);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("stats");
    tcase_add_test(tc, mean_and_sd);
    tcase_add_test(tc, t_distribution);
    tcase_add_test(tc, confidence_interval);
    tcase_add_test(tc, welch);
    tcase_add_test(tc, two_proportions);
    tcase_add_test(tc, paired);
    tcase_add_test(tc, sign_test);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
