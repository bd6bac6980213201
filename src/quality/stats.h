/* stats.h - the few statistics experiments need (docs/experiments.md).
 *
 * Means with Student-t confidence intervals, Welch's t-test for two means
 * with unequal variances (cost, latency, scores), and the two-proportion
 * z-test (shares of answers marked wrong). Pure functions, no allocation:
 * the callers keep running sums (ah_stats_add) and ask at the end. */
#ifndef AH_STATS_H
#define AH_STATS_H

#include <stddef.h>

/* A running sample: Welford's sums, stable for large n. Zero it to start. */
typedef struct ah_stats {
    long n;
    double mean;
    double m2; /* sum of squared deviations from the mean */
} ah_stats_t;

/* Add one observation. */
void ah_stats_add(ah_stats_t *s, double x);
/* The sample standard deviation (n - 1 in the denominator); 0 when n < 2. */
double ah_stats_sd(const ah_stats_t *s);
/* P(T <= t) for Student's t with df degrees of freedom (df > 0, not an
 * integer necessarily: Welch's df is not). */
double ah_stats_t_cdf(double t, double df);
/* The t with P(T <= t) = p, 0 < p < 1 (bisection on ah_stats_t_cdf). */
double ah_stats_t_quantile(double p, double df);
/* The 95% confidence interval of the mean: mean -/+ t(0.975, n-1) * sd /
 * sqrt(n). 0 with *lo, *hi set; -1 when n < 2 (no interval yet). */
int ah_stats_ci95(const ah_stats_t *s, double *lo, double *hi);
/* Welch's two-sided t-test of mean(a) = mean(b): *t, *df and the p-value.
 * 0; -1 when either sample has fewer than 2 values or both are constant
 * and equal (nothing to test; *p is set to 1). Two constant samples with
 * different means give p = 0 and an infinite t. */
int ah_stats_welch(const ah_stats_t *a, const ah_stats_t *b, double *t, double *df, double *p);
/* Two-sided pooled z-test of x1/n1 = x2/n2: *z and the p-value. 0; -1 when
 * a sample is empty or the pooled share is 0 or 1 (*p is set to 1). */
int ah_stats_two_prop(long x1, long n1, long x2, long n2, double *z, double *p);
/* Paired two-sided t-test of mean(d) = 0, d holding the differences of
 * paired observations (variant minus control on the same rows): *t and
 * the p-value with n - 1 degrees of freedom. 0; -1 when n < 2 or every
 * difference is 0 (*p is set to 1). Equal non-zero differences give p = 0. */
int ah_stats_paired(const ah_stats_t *d, double *t, double *p);
/* The exact two-sided sign test of wins against losses (ties left out)
 * under a fair coin: the p-value, 1 when there is no win and no loss. */
double ah_stats_sign_test(long wins, long losses);

#endif
