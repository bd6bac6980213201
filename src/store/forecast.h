/* forecast.h - spend ahead from a daily series: trend, weekly pattern and an
 * interval.
 *
 * Pure arithmetic on an array of daily amounts (no database): src/store/
 * spend.c feeds it each group's daily spend from the ledger, the budget
 * code may feed it anything daily. The default method was chosen by
 * measurement (bench/forecast/RESULTS.md, docs/reporting.md); the others
 * stay for the benchmark and for comparison. Intervals come from simulated
 * futures (residuals resampled from the history) with a fixed seed, so the
 * same input always gives the same answer. */
#ifndef AH_FORECAST_H
#define AH_FORECAST_H

#include "core/error.h"

/* Days ahead a forecast may cover (a month, plus the partial day). */
#define AH_FORECAST_MAX_HORIZON 62
/* Days of history used at most (older days are ignored). */
#define AH_FORECAST_MAX_HISTORY 366
/* Days of history below which there is no weekly pattern to learn: the
 * forecast falls back to the recent run rate. */
#define AH_FORECAST_MIN_SEASONAL_DAYS 14
/* Simulated futures behind an interval. */
#define AH_FORECAST_PATHS 1000
/* Two-sided interval: 5th to 95th percentile of the simulated totals. */
#define AH_FORECAST_LOW_Q 0.05
#define AH_FORECAST_HIGH_Q 0.95

typedef enum {
    AH_FORECAST_AUTO,         /* the measured default, with fallbacks for short series */
    AH_FORECAST_HOLT_WINTERS, /* additive Holt-Winters, damped trend, weekly season */
    AH_FORECAST_TREND_DOW,    /* Theil-Sen trend on the deseasonalised series, weekday factors */
    AH_FORECAST_RUN_RATE,     /* mean of the last 7 days, flat */
} ah_forecast_method_t;

typedef struct ah_forecast {
    ah_forecast_method_t method;          /* the one used (never AUTO) */
    int horizon;                          /* days in path */
    double path[AH_FORECAST_MAX_HORIZON]; /* expected amount per day ahead */
    double sum;                           /* expected total over the horizon */
    double low, high;                     /* interval of that total */
    double trend_per_day;                 /* change of the daily amount per day */
    double weekly[7];                     /* weekday factors, Monday first; 1 = average day */
} ah_forecast_t;

/* Forecast the horizon days after y[0..n-1] (n >= 0 complete days, y[0] a
 * weekday dow0, 0 = Monday). first_day_fraction (0..1] weighs the first day
 * ahead in sum/low/high (the rest of a day already under way). Negative
 * amounts are read as 0. AH_E_INVAL on a bad horizon or argument. */
ah_err_t ah_forecast_daily(const double *y, int n, int dow0, int horizon, double first_day_fraction,
                           ah_forecast_method_t method, ah_forecast_t *out);

/* The method AUTO uses once a weekly pattern can be learnt. */
ah_forecast_method_t ah_forecast_auto_method(void);

/* Name of a method ("holt-winters", ...), static. */
const char *ah_forecast_method_name(ah_forecast_method_t m);

#endif
