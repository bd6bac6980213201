/* stats.c - means, Student-t intervals, Welch's t-test, two-proportion z.
 *
 * Student's t distribution is computed from the regularized incomplete beta
 * function, I_x(a, b), evaluated by its continued fraction (modified
 * Lentz), which converges quickly for x < (a + 1) / (a + b + 2) and is used
 * through the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) otherwise. Double
 * precision gives about 1e-10 here, far more than a p-value needs. */
#include "quality/stats.h"

#include <math.h>

#define BETA_MAX_ITER 300
#define BETA_EPS 1e-14
#define BETA_TINY 1e-300
#define QUANTILE_ITER 200

void ah_stats_add(ah_stats_t *s, double x)
{
    s->n++;
    double d = x - s->mean;
    s->mean += d / (double)s->n;
    s->m2 += d * (x - s->mean);
}

double ah_stats_sd(const ah_stats_t *s)
{
    return s->n < 2 ? 0 : sqrt(s->m2 / (double)(s->n - 1));
}

/* The continued fraction of I_x(a, b) (without the front factor). */
static double beta_cf(double a, double b, double x)
{
    double c = 1, d = 1 - (a + b) * x / (a + 1);
    if (fabs(d) < BETA_TINY)
        d = BETA_TINY;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= BETA_MAX_ITER; m++) {
        double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
        d = 1 + aa * d;
        c = 1 + aa / c;
        d = fabs(d) < BETA_TINY ? 1 / BETA_TINY : 1 / d;
        c = fabs(c) < BETA_TINY ? BETA_TINY : c;
        h *= d * c;
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
        d = 1 + aa * d;
        c = 1 + aa / c;
        d = fabs(d) < BETA_TINY ? 1 / BETA_TINY : 1 / d;
        c = fabs(c) < BETA_TINY ? BETA_TINY : c;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < BETA_EPS)
            break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b), 0 <= x <= 1. */
static double beta_inc(double a, double b, double x)
{
    if (x <= 0)
        return 0;
    if (x >= 1)
        return 1;
    double front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
    if (x < (a + 1) / (a + b + 2))
        return front * beta_cf(a, b, x) / a;
    return 1 - front * beta_cf(b, a, 1 - x) / b;
}

double ah_stats_t_cdf(double t, double df)
{
    /* P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2) */
    double tail = 0.5 * beta_inc(df / 2, 0.5, df / (df + t * t));
    return t >= 0 ? 1 - tail : tail;
}

double ah_stats_t_quantile(double p, double df)
{
    double lo = -1e6, hi = 1e6;
    for (int i = 0; i < QUANTILE_ITER && hi - lo > 1e-12 * (1 + fabs(lo)); i++) {
        double mid = (lo + hi) / 2;
        if (ah_stats_t_cdf(mid, df) < p)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}

int ah_stats_ci95(const ah_stats_t *s, double *lo, double *hi)
{
    if (s->n < 2)
        return -1;
    double half =
        ah_stats_t_quantile(0.975, (double)(s->n - 1)) * ah_stats_sd(s) / sqrt((double)s->n);
    *lo = s->mean - half;
    *hi = s->mean + half;
    return 0;
}

int ah_stats_welch(const ah_stats_t *a, const ah_stats_t *b, double *t, double *df, double *p)
{
    *t = 0;
    *df = 0;
    *p = 1;
    if (a->n < 2 || b->n < 2)
        return -1;
    double va = ah_stats_sd(a), vb = ah_stats_sd(b);
    va = va * va / (double)a->n;
    vb = vb * vb / (double)b->n;
    if (va + vb <= 0) {
        /* no spread in either sample (a fixed price per request): any
         * difference of the means is certain, none is nothing to test */
        if (a->mean == b->mean)
            return -1;
        *t = a->mean > b->mean ? INFINITY : -INFINITY;
        *p = 0;
        return 0;
    }
    *t = (a->mean - b->mean) / sqrt(va + vb);
    /* Welch-Satterthwaite */
    *df = (va + vb) * (va + vb) / (va * va / (double)(a->n - 1) + vb * vb / (double)(b->n - 1));
    *p = 2 * ah_stats_t_cdf(-fabs(*t), *df);
    return 0;
}

int ah_stats_two_prop(long x1, long n1, long x2, long n2, double *z, double *p)
{
    *z = 0;
    *p = 1;
    if (n1 <= 0 || n2 <= 0)
        return -1;
    double p1 = (double)x1 / (double)n1, p2 = (double)x2 / (double)n2;
    double pool = (double)(x1 + x2) / (double)(n1 + n2);
    if (pool <= 0 || pool >= 1)
        return -1;
    double se = sqrt(pool * (1 - pool) * (1.0 / (double)n1 + 1.0 / (double)n2));
    *z = (p1 - p2) / se;
    *p = erfc(fabs(*z) / sqrt(2.0));
    return 0;
}

int ah_stats_paired(const ah_stats_t *d, double *t, double *p)
{
    *t = 0;
    *p = 1;
    if (d->n < 2)
        return -1;
    double sd = ah_stats_sd(d);
    if (sd <= 0) {
        /* every pair differs by the same amount */
        if (d->mean == 0)
            return -1;
        *t = d->mean > 0 ? INFINITY : -INFINITY;
        *p = 0;
        return 0;
    }
    *t = d->mean / (sd / sqrt((double)d->n));
    *p = 2 * ah_stats_t_cdf(-fabs(*t), (double)(d->n - 1));
    return 0;
}

double ah_stats_sign_test(long wins, long losses)
{
    if (wins < 0 || losses < 0 || wins + losses == 0)
        return 1;
    long n = wins + losses, k = wins < losses ? wins : losses;
    /* P(X <= k) for X ~ Binomial(n, 1/2), summed in logs so that large n
     * neither overflows nor underflows term by term */
    double lgn = lgamma((double)n + 1), sum = 0;
    for (long i = 0; i <= k; i++)
        sum += exp(lgn - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) - (double)n * M_LN2);
    double p = 2 * sum;
    return p > 1 ? 1 : p;
}
