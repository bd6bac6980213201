/* forecast.c - daily spend ahead: Holt-Winters, trend with weekday factors,
 * run rate.
 *
 * Spend per day has a level that drifts (traffic grows, a feature ships, a
 * model gets cheaper), a weekly rhythm (office days against weekends) and
 * noise with bursts (a batch job, an incident's retries). Each method gives
 * a point path and simulated futures:
 *
 * - Holt-Winters, additive, weekly season, damped trend: smoothing weights
 *   chosen per series by one-step squared error over a small grid. Futures
 *   run the same equations with one-step errors resampled from the fit, so
 *   the interval widens with the horizon as the model says it should.
 * - Trend with weekday factors: weekday factors are medians of each day's
 *   ratio to a centred 7-day mean; a Theil-Sen line (median of pairwise
 *   slopes: a burst moves it little) through the deseasonalised days.
 *   Futures add residuals resampled in 7-day blocks, which keeps runs of
 *   high days together.
 * - Run rate: the last 7 days' mean, flat; what a dashboard's "projected"
 *   usually is. A fallback for short series and a baseline.
 *
 * bench/forecast measures them: the trend with weekday factors has the
 * least error on the month's total on both the synthetic series and the
 * replayed ledger, and (with the line's own uncertainty in its futures)
 * the best interval coverage, so AUTO uses it. */
#include "store/forecast.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define SEASON 7
/* Spread of the trend line's level and slope in simulated futures, in
 * least-squares standard errors. 1 would be right for independent days;
 * spend days are not (a shared daily swing, bursts, growth that compounds
 * rather than adds), and 1 gave 80% coverage for a 90% interval on the
 * synthetic series, 2 gives 89% (bench/forecast/RESULTS.md). */
#ifndef TREND_PARAM_UNCERTAINTY
#define TREND_PARAM_UNCERTAINTY 2.0
#endif
#define RNG_SEED 0x9e3779b97f4a7c15ull
/* What AUTO uses once a weekly pattern can be learnt (bench/forecast). */
#define AUTO_METHOD AH_FORECAST_TREND_DOW

ah_forecast_method_t ah_forecast_auto_method(void)
{
    return AUTO_METHOD;
}

const char *ah_forecast_method_name(ah_forecast_method_t m)
{
    switch (m) {
    case AH_FORECAST_HOLT_WINTERS:
        return "holt-winters";
    case AH_FORECAST_TREND_DOW:
        return "trend-weekday";
    case AH_FORECAST_RUN_RATE:
        return "run-rate";
    default:
        return "auto";
    }
}

/* xorshift64*: deterministic, good enough to resample residuals. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

static int rng_below(uint64_t *s, int n)
{
    return (int)(rng_next(s) % (uint64_t)n);
}

/* Standard normal (Box-Muller). */
static double rng_normal(uint64_t *s)
{
    double u = ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Weight of day h ahead in the totals. */
static double day_weight(int h, double first)
{
    return h == 0 ? first : 1.0;
}

/* Fill low/high from the simulated totals (sorted in place). */
static void interval(ah_forecast_t *f, double *sums, int npaths)
{
    qsort(sums, (size_t)npaths, sizeof *sums, cmp_double);
    f->low = sums[(int)(AH_FORECAST_LOW_Q * (npaths - 1))];
    f->high = sums[(int)(AH_FORECAST_HIGH_Q * (npaths - 1) + 0.5)];
    if (f->low > f->sum)
        f->low = f->sum;
    if (f->high < f->sum)
        f->high = f->sum;
}

/* --- Holt-Winters ------------------------------------------------------ */

typedef struct hw_state {
    double level, trend, season[SEASON]; /* season[k]: days t with t % 7 == k */
    double alpha, beta, gamma, phi;
} hw_state_t;

static void hw_init(hw_state_t *st, const double *y)
{
    double m1 = 0, m2 = 0;
    for (int i = 0; i < SEASON; i++) {
        m1 += y[i] / SEASON;
        m2 += y[i + SEASON] / SEASON;
    }
    st->trend = (m2 - m1) / SEASON;
    /* level at t = -1, so that the first forecast is level + trend */
    st->level = m1 - st->trend * (SEASON + 1) / 2.0;
    double mean = 0;
    for (int k = 0; k < SEASON; k++) {
        double c1 = m1 + st->trend * (k - (SEASON - 1) / 2.0);
        double c2 = m2 + st->trend * (k - (SEASON - 1) / 2.0);
        st->season[k] = ((y[k] - c1) + (y[k + SEASON] - c2)) / 2;
        mean += st->season[k] / SEASON;
    }
    for (int k = 0; k < SEASON; k++)
        st->season[k] -= mean;
}

/* One observation at day t; returns the one-step error. */
static double hw_step(hw_state_t *st, int t, double y)
{
    int k = t % SEASON;
    double s = st->season[k];
    double pred = st->level + st->phi * st->trend + s;
    double level = st->alpha * (y - s) + (1 - st->alpha) * (st->level + st->phi * st->trend);
    st->trend = st->beta * (level - st->level) + (1 - st->beta) * st->phi * st->trend;
    st->level = level;
    st->season[k] = st->gamma * (y - level) + (1 - st->gamma) * s;
    return y - pred;
}

/* Fit: the grid point with the least one-step squared error. Leaves st at
 * the end of the series and the residuals in resid[0..n-1]. */
static void hw_fit(const double *y, int n, hw_state_t *best, double *resid)
{
    static const double alphas[] = {0.05, 0.1, 0.2, 0.3, 0.5, 0.7};
    static const double betas[] = {0, 0.02, 0.05, 0.1, 0.2};
    static const double gammas[] = {0.02, 0.1, 0.2, 0.4};
    static const double phis[] = {0.8, 0.9, 0.98};
    double best_sse = INFINITY;
    hw_state_t init;
    hw_init(&init, y);
    for (size_t a = 0; a < sizeof alphas / sizeof *alphas; a++)
        for (size_t b = 0; b < sizeof betas / sizeof *betas; b++)
            for (size_t g = 0; g < sizeof gammas / sizeof *gammas; g++)
                for (size_t p = 0; p < sizeof phis / sizeof *phis; p++) {
                    hw_state_t st = init;
                    st.alpha = alphas[a];
                    st.beta = betas[b];
                    st.gamma = gammas[g];
                    st.phi = phis[p];
                    double sse = 0;
                    for (int t = 0; t < n && sse < best_sse; t++) {
                        double e = hw_step(&st, t, y[t]);
                        if (t >= SEASON)
                            sse += e * e;
                    }
                    if (sse < best_sse) {
                        best_sse = sse;
                        *best = init;
                        best->alpha = st.alpha;
                        best->beta = st.beta;
                        best->gamma = st.gamma;
                        best->phi = st.phi;
                    }
                }
    for (int t = 0; t < n; t++)
        resid[t] = hw_step(best, t, y[t]);
}

static void holt_winters(const double *y, int n, double first, ah_forecast_t *f, double *resid,
                         double *sums)
{
    hw_state_t st;
    hw_fit(y, n, &st, resid);
    double damp = 0, phik = 1;
    f->sum = 0;
    for (int h = 0; h < f->horizon; h++) {
        phik *= st.phi;
        damp += phik;
        double v = st.level + damp * st.trend + st.season[(n + h) % SEASON];
        f->path[h] = v > 0 ? v : 0;
        f->sum += day_weight(h, first) * f->path[h];
    }
    f->trend_per_day = st.phi * st.trend;
    for (int k = 0; k < SEASON; k++) {
        double v = st.level + st.season[k];
        /* t % 7 == k falls on weekday (dow0 + k) % 7: mapped by the caller */
        f->weekly[k] = st.level > 0 ? (v > 0 ? v : 0) / st.level : 1;
    }
    /* residuals of the first week only measure the initial guess */
    const double *r = resid + SEASON;
    int nr = n - SEASON;
    uint64_t rng = RNG_SEED;
    for (int p = 0; p < AH_FORECAST_PATHS; p++) {
        hw_state_t sim = st;
        double total = 0;
        for (int h = 0; h < f->horizon; h++) {
            int k = (n + h) % SEASON;
            double v = sim.level + sim.phi * sim.trend + sim.season[k] + r[rng_below(&rng, nr)];
            hw_step(&sim, n + h, v);
            total += day_weight(h, first) * (v > 0 ? v : 0);
        }
        sums[p] = total;
    }
    interval(f, sums, AH_FORECAST_PATHS);
}

/* --- Trend with weekday factors ---------------------------------------- */

static void trend_dow(const double *y, int n, double first, ah_forecast_t *f, double *resid,
                      double *sums)
{
    double factor[SEASON], ratios[SEASON][AH_FORECAST_MAX_HISTORY / SEASON + 1];
    int nratio[SEASON] = {0};
    for (int t = SEASON / 2; t + SEASON / 2 < n; t++) {
        double cma = 0;
        for (int j = -SEASON / 2; j <= SEASON / 2; j++)
            cma += y[t + j] / SEASON;
        if (cma > 0)
            ratios[t % SEASON][nratio[t % SEASON]++] = y[t] / cma;
    }
    double mean = 0;
    for (int k = 0; k < SEASON; k++) {
        factor[k] = nratio[k] ? median(ratios[k], nratio[k]) : 1;
        mean += factor[k] / SEASON;
    }
    for (int k = 0; k < SEASON; k++)
        factor[k] = mean > 0 ? factor[k] / mean : 1;
    /* Theil-Sen through the deseasonalised days (weekdays with a factor
     * near 0 carry no information about the level). */
    double *z = ah_calloc((size_t)n, sizeof *z);
    int *ts = ah_calloc((size_t)n, sizeof *ts), m = 0;
    for (int t = 0; t < n; t++)
        if (factor[t % SEASON] > 0.05) {
            z[m] = y[t] / factor[t % SEASON];
            ts[m++] = t;
        }
    size_t npairs = (size_t)m * (size_t)(m > 0 ? m - 1 : 0) / 2;
    double *slopes = ah_calloc(npairs ? npairs : 1, sizeof *slopes);
    size_t ns = 0;
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++)
            slopes[ns++] = (z[j] - z[i]) / (ts[j] - ts[i]);
    double b = median(slopes, (int)ns);
    for (int i = 0; i < m; i++)
        slopes[i] = z[i] - b * ts[i];
    double a = median(slopes, m);
    int nr = 0;
    double tbar = 0, sxx = 0, var = 0;
    for (int i = 0; i < m; i++) {
        resid[nr] = z[i] - (a + b * ts[i]);
        var += resid[nr] * resid[nr];
        tbar += (double)ts[i] / m;
        nr++;
    }
    for (int i = 0; i < m; i++)
        sxx += (ts[i] - tbar) * (ts[i] - tbar);
    var = nr > 2 ? var / (nr - 2) : 0;
    /* the line itself is uncertain: level at tbar and slope, as a least-squares fit's */
    double se_a = sqrt(var / (m > 0 ? m : 1)), se_b = sxx > 0 ? sqrt(var / sxx) : 0;
    f->sum = 0;
    for (int h = 0; h < f->horizon; h++) {
        double v = (a + b * (n + h)) * factor[(n + h) % SEASON];
        f->path[h] = v > 0 ? v : 0;
        f->sum += day_weight(h, first) * f->path[h];
    }
    f->trend_per_day = b;
    memcpy(f->weekly, factor, sizeof factor);
    uint64_t rng = RNG_SEED;
    int block = nr < SEASON ? nr : SEASON;
    for (int p = 0; p < AH_FORECAST_PATHS && nr > 0; p++) {
        double total = 0;
        int start = 0;
        double da = TREND_PARAM_UNCERTAINTY * se_a * rng_normal(&rng);
        double db = TREND_PARAM_UNCERTAINTY * se_b * rng_normal(&rng);
        for (int h = 0; h < f->horizon; h++) {
            if (h % block == 0)
                start = rng_below(&rng, nr - block + 1);
            double line = a + b * tbar + da + (b + db) * (n + h - tbar);
            double v = (line + resid[start + h % block]) * factor[(n + h) % SEASON];
            total += day_weight(h, first) * (v > 0 ? v : 0);
        }
        sums[p] = total;
    }
    if (nr > 0)
        interval(f, sums, AH_FORECAST_PATHS);
    else
        f->low = f->high = f->sum;
    ah_free(z);
    ah_free(ts);
    ah_free(slopes);
}

/* --- Run rate ------------------------------------------------------------ */

static void run_rate(const double *y, int n, double first, ah_forecast_t *f, double *sums)
{
    int recent = n < SEASON ? n : SEASON, pool = n < 4 * SEASON ? n : 4 * SEASON;
    double mean = 0;
    for (int t = n - recent; t < n; t++)
        mean += y[t] / recent;
    f->sum = 0;
    for (int h = 0; h < f->horizon; h++) {
        f->path[h] = mean;
        f->sum += day_weight(h, first) * mean;
    }
    for (int k = 0; k < SEASON; k++)
        f->weekly[k] = 1;
    uint64_t rng = RNG_SEED;
    for (int p = 0; p < AH_FORECAST_PATHS; p++) {
        double total = 0;
        for (int h = 0; h < f->horizon; h++)
            total += day_weight(h, first) * y[n - pool + rng_below(&rng, pool)];
        sums[p] = total;
    }
    interval(f, sums, AH_FORECAST_PATHS);
}

ah_err_t ah_forecast_daily(const double *yin, int n, int dow0, int horizon,
                           double first_day_fraction, ah_forecast_method_t method,
                           ah_forecast_t *out)
{
    if (!out || n < 0 || (n > 0 && !yin) || horizon < 0 || horizon > AH_FORECAST_MAX_HORIZON ||
        dow0 < 0 || dow0 >= SEASON || !(first_day_fraction >= 0 && first_day_fraction <= 1))
        return AH_E_INVAL;
    memset(out, 0, sizeof *out);
    out->horizon = horizon;
    for (int k = 0; k < SEASON; k++)
        out->weekly[k] = 1;
    if (n > AH_FORECAST_MAX_HISTORY) { /* keep the most recent days; weekday moves along */
        dow0 = (dow0 + (n - AH_FORECAST_MAX_HISTORY)) % SEASON;
        yin += n - AH_FORECAST_MAX_HISTORY;
        n = AH_FORECAST_MAX_HISTORY;
    }
    if (method == AH_FORECAST_AUTO)
        method = n >= AH_FORECAST_MIN_SEASONAL_DAYS ? AUTO_METHOD : AH_FORECAST_RUN_RATE;
    if (method != AH_FORECAST_RUN_RATE && n < AH_FORECAST_MIN_SEASONAL_DAYS)
        method = AH_FORECAST_RUN_RATE;
    out->method = method;
    if (n == 0 || horizon == 0)
        return AH_E_OK;
    double y[AH_FORECAST_MAX_HISTORY], resid[AH_FORECAST_MAX_HISTORY];
    double *sums = ah_malloc(AH_FORECAST_PATHS * sizeof *sums);
    for (int t = 0; t < n; t++)
        y[t] = yin[t] > 0 && isfinite(yin[t]) ? yin[t] : 0;
    if (method == AH_FORECAST_HOLT_WINTERS)
        holt_winters(y, n, first_day_fraction, out, resid, sums);
    else if (method == AH_FORECAST_TREND_DOW)
        trend_dow(y, n, first_day_fraction, out, resid, sums);
    else
        run_rate(y, n, first_day_fraction, out, sums);
    ah_free(sums);
    /* weekly[] is by t % 7 so far; report it by weekday, Monday first */
    double by_day[SEASON];
    for (int k = 0; k < SEASON; k++)
        by_day[(dow0 + k) % SEASON] = out->weekly[k];
    memcpy(out->weekly, by_day, sizeof by_day);
    return AH_E_OK;
}
