/* forecast_bench.c - how good are ahorro's spend forecasts, and what do the
 * spend queries cost.
 *
 *   forecast_bench synthetic [TRIALS]   methods on series with known trend and weekly season
 *   forecast_bench replay DB            backtest on a synthetic ledger written to DB
 *
 * Synthetic: each trial draws a scenario (level, linear or exponential
 * growth or decline, weekend dip, noise, bursts), 56 days of history before
 * a month, and forecasts the month's total from day 7, 14 and 21 of it
 * (projected = spent so far + forecast of the rest). Reported: MAPE of the
 * month-end total, MAPE of the rest of the month alone, and how often the
 * 90% interval holds the actual total.
 *
 * Replay: writes 150 days of ledger rows (features x departments x models,
 * weekday rhythm, growth, a launch, a price cut, an incident with retried
 * attempts), then runs ah_spend_forecast as of days 7, 14, 21 of the last
 * three months (history: what came before) and compares with what the
 * ledger holds for those months (ah_spend_run). Also times the queries. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "store/db.h"
#include "store/forecast.h"
#include "store/spend.h"

#define HISTORY 56
#define DAY_MS 86400000LL

static uint64_t rng = 42;
static double urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (double)((rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double u = urand(), v = urand();
    return sqrt(-2 * log(u + 1e-300)) * cos(2 * M_PI * v);
}

typedef struct scenario {
    double level, growth; /* growth per day: relative (exp) or of the level (lin) */
    int exponential;
    double weekend; /* Saturday and Sunday multiply by 1 - weekend */
    double noise;   /* lognormal sigma */
    double burst;   /* probability of a day x(2..4) */
} scenario_t;

static void generate(const scenario_t *s, int dow0, double *y, int n)
{
    for (int t = 0; t < n; t++) {
        double lv = s->exponential ? s->level * pow(1 + s->growth, t)
                                   : s->level * (1 + s->growth * t);
        if (lv < 0)
            lv = 0;
        int dow = (dow0 + t) % 7;
        double season = dow >= 5 ? 1 - s->weekend : 1 + s->weekend * 2 / 5.0 * 0.5;
        double v = lv * season * exp(s->noise * nrand() - s->noise * s->noise / 2);
        if (urand() < s->burst)
            v *= 2 + 2 * urand();
        y[t] = v;
    }
}

typedef struct score {
    double ape_total, ape_rest, covered;
    int n;
} score_t;

static void score_add(score_t *sc, double proj, double lo, double hi, double spent, double actual)
{
    sc->ape_total += fabs(proj - actual) / actual;
    sc->ape_rest += actual - spent > 0 ? fabs((proj - spent) - (actual - spent)) / (actual - spent)
                                       : 0;
    sc->covered += actual >= lo && actual <= hi;
    sc->n++;
}

enum { M_HW, M_TREND, M_RUN, M_MTD, M_COUNT };
static const char *const mname[] = {"holt-winters (damped, additive weekly)",
                                    "trend + weekday factors (Theil-Sen)",
                                    "run rate (last 7 days)", "month-to-date x days (naive)"};

static int synthetic(int trials)
{
    static const int days_in[] = {7, 14, 21};
    score_t sc[M_COUNT][3];
    score_t by_kind[M_COUNT][4];
    memset(sc, 0, sizeof sc);
    memset(by_kind, 0, sizeof by_kind);
    double y[HISTORY + 31];
    int64_t t0 = ah_now_us();
    for (int tr = 0; tr < trials; tr++) {
        scenario_t s = {.level = 20 + 480 * urand(),
                        .exponential = urand() < 0.5,
                        .weekend = urand() < 0.25 ? 0 : 0.2 + 0.6 * urand(),
                        .noise = 0.05 + 0.3 * urand(),
                        .burst = urand() < 0.5 ? 0 : 0.05};
        int kind = (int)(urand() * 4); /* flat, growing, fast growing, declining */
        s.growth = kind == 0 ? 0 : kind == 1 ? 0.005 : kind == 2 ? 0.02 : -0.006;
        int mdays = 28 + (int)(urand() * 4), dow0 = (int)(urand() * 7);
        generate(&s, dow0, y, HISTORY + mdays);
        double actual = 0;
        for (int t = HISTORY; t < HISTORY + mdays; t++)
            actual += y[t];
        for (int k = 0; k < 3; k++) {
            int d = days_in[k], n = HISTORY + d;
            double spent = 0;
            for (int t = HISTORY; t < n; t++)
                spent += y[t];
            for (int m = 0; m < M_COUNT; m++) {
                double proj, lo, hi;
                if (m == M_MTD) {
                    proj = lo = hi = spent / d * mdays;
                } else {
                    ah_forecast_t f;
                    ah_forecast_daily(y, n, dow0, mdays - d, 1.0,
                                      m == M_HW      ? AH_FORECAST_HOLT_WINTERS
                                      : m == M_TREND ? AH_FORECAST_TREND_DOW
                                                     : AH_FORECAST_RUN_RATE,
                                      &f);
                    proj = spent + f.sum;
                    lo = spent + f.low;
                    hi = spent + f.high;
                }
                score_add(&sc[m][k], proj, lo, hi, spent, actual);
                score_add(&by_kind[m][kind], proj, lo, hi, spent, actual);
            }
        }
    }
    double secs = (double)(ah_now_us() - t0) / 1e6;
    printf("## Synthetic series\n\n%d trials (one month each, 56 days of history before it), "
           "forecast from day 7, 14 and 21 of the month: %d forecasts per method. Scenarios "
           "drawn at random: level 20-500 USD/day; flat, +0.5%%/day, +2%%/day or -0.6%%/day, "
           "linear or compounding; weekend dip 0 or 20-80%%; lognormal noise sigma "
           "0.05-0.35; in half the series, a 5%% chance a day is a 2-4x burst. Interval: "
           "90%% (5th-95th percentile of %d simulated futures). Seed fixed: the run is "
           "reproducible. %.1f s for all methods.\n\n",
           trials, trials * 3, AH_FORECAST_PATHS, secs);
    printf("| method | day | MAPE month total | MAPE rest of month | 90%% interval coverage |\n"
           "|---|---|---|---|---|\n");
    for (int m = 0; m < M_COUNT; m++)
        for (int k = 0; k < 3; k++)
            printf("| %s | %d | %.2f%% | %.2f%% | %.1f%% |\n", mname[m], days_in[k],
                   100 * sc[m][k].ape_total / sc[m][k].n, 100 * sc[m][k].ape_rest / sc[m][k].n,
                   m == M_MTD ? 0.0 : 100 * sc[m][k].covered / sc[m][k].n);
    printf("\nCoverage of the 90%% interval (all days):\n\n| method | coverage | by day 7 / 14 / "
           "21 |\n|---|---|---|\n");
    for (int m = 0; m < M_MTD; m++) {
        double c = 0;
        int n = 0;
        for (int k = 0; k < 3; k++)
            c += sc[m][k].covered, n += sc[m][k].n;
        printf("| %s | %.1f%% | %.1f%% / %.1f%% / %.1f%% |\n", mname[m], 100 * c / n,
               100 * sc[m][0].covered / sc[m][0].n, 100 * sc[m][1].covered / sc[m][1].n,
               100 * sc[m][2].covered / sc[m][2].n);
    }
    static const char *const kinds[] = {"flat", "+0.5%/day", "+2%/day", "-0.6%/day"};
    printf("\nMAPE of the month total by trend (days 7, 14, 21 together):\n\n| method |");
    for (int k = 0; k < 4; k++)
        printf(" %s |", kinds[k]);
    printf("\n|---|---|---|---|---|\n");
    for (int m = 0; m < M_COUNT; m++) {
        printf("| %s |", mname[m]);
        for (int k = 0; k < 4; k++)
            printf(" %.2f%% (cov %.0f%%) |", 100 * by_kind[m][k].ape_total / by_kind[m][k].n,
                   m == M_MTD ? 0 : 100 * by_kind[m][k].covered / by_kind[m][k].n);
        printf("\n");
    }
    printf("\n");
    return 0;
}

/* --- replay ------------------------------------------------------------------ */

typedef struct feature {
    const char *name, *dept, *model;
    double req_per_day, usd_per_req, growth; /* growth: per day, compounding */
    int launch_day;                          /* first day with traffic */
} feature_t;

static const feature_t features[] = {
    {"support", "sales", "gpt-4o-mini", 1200, 0.0009, 0.004, 0},
    {"search", "product", "gpt-4o", 500, 0.004, 0.002, 0},
    {"summarise", "product", "claude-3-5-haiku", 300, 0.002, -0.003, 0},
    {"codegen", "engineering", "gpt-4o", 120, 0.02, 0.01, 0},
    {"agent", "engineering", "claude-3-5-sonnet", 80, 0.03, 0.015, 70},
};
#define NFEAT (sizeof features / sizeof *features)
#define REPLAY_DAYS 150
#define PRICE_CUT_DAY 100 /* search moves to a cheaper model: cost per request x0.6 */
#define INCIDENT_DAY 121  /* a provider incident: 3 retried attempts per agent request */

static int write_ledger(sqlite3 *db, int64_t start_ms, long *rows)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO ledger(request_id, ts_ms, key_id, owner, user, tags, api, "
                           "endpoint, stream, requested_model, served_model, provider, "
                           "prompt_tokens, completion_tokens, cost_usd, latency_ms, status, "
                           "saved_usd, attempt_of, attempts) VALUES (?, ?, 'key1', 'acme', ?, ?, "
                           "'openai', 'chat', 0, ?, ?, 'openai', ?, ?, ?, 900, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        return 1;
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    long id = 0;
    for (int day = 0; day < REPLAY_DAYS; day++) {
        int dow = (int)((start_ms / DAY_MS + day + 3) % 7);
        double weekday = dow >= 5 ? 0.35 : dow == 0 ? 1.1 : 1.0;
        double dayn = exp(0.15 * nrand()); /* a day's own swing, shared by features */
        for (size_t f = 0; f < NFEAT; f++) {
            const feature_t *ft = &features[f];
            if (day < ft->launch_day)
                continue;
            double expect = ft->req_per_day * pow(1 + ft->growth, day) * weekday * dayn *
                            exp(0.1 * nrand());
            if (ft->launch_day && day - ft->launch_day < 14) /* ramp-up after a launch */
                expect *= (day - ft->launch_day + 1) / 14.0;
            long n = (long)(expect + 0.5);
            double per = ft->usd_per_req;
            if (f == 1 && day >= PRICE_CUT_DAY)
                per *= 0.6;
            for (long i = 0; i < n; i++) {
                char rid[48], user[32], tags[128];
                int64_t ts = start_ms + day * DAY_MS + (int64_t)(urand() * (DAY_MS - 1));
                snprintf(rid, sizeof rid, "r%ld", id++);
                snprintf(user, sizeof user, "user%d", (int)(pow(urand(), 2) * 200));
                snprintf(tags, sizeof tags, "{\"department\":\"%s\",\"feature\":\"%s\"}", ft->dept,
                         ft->name);
                double cost = per * exp(0.5 * nrand() - 0.125);
                int attempts = (f == 4 && day == INCIDENT_DAY) ? 4 : 1;
                for (int a = 1; a < attempts; a++) {
                    char aid[64];
                    snprintf(aid, sizeof aid, "%s-%d", rid, a);
                    sqlite3_bind_text(st, 1, aid, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_int64(st, 2, ts);
                    sqlite3_bind_text(st, 3, user, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_text(st, 4, tags, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_text(st, 5, ft->model, -1, SQLITE_STATIC);
                    sqlite3_bind_text(st, 6, ft->model, -1, SQLITE_STATIC);
                    sqlite3_bind_int(st, 7, 3000);
                    sqlite3_bind_int(st, 8, 0);
                    sqlite3_bind_double(st, 9, cost * 0.3); /* timed out mid-answer: billed */
                    sqlite3_bind_int(st, 10, 504);
                    sqlite3_bind_double(st, 11, 0);
                    sqlite3_bind_text(st, 12, rid, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_int(st, 13, a);
                    sqlite3_step(st);
                    sqlite3_reset(st);
                    (*rows)++;
                }
                int hit = urand() < 0.08;
                sqlite3_bind_text(st, 1, rid, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 2, ts);
                sqlite3_bind_text(st, 3, user, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(st, 4, tags, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(st, 5, ft->model, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 6, ft->model, -1, SQLITE_STATIC);
                sqlite3_bind_int(st, 7, hit ? 0 : 1500);
                sqlite3_bind_int(st, 8, hit ? 0 : 300);
                sqlite3_bind_double(st, 9, hit ? 0 : cost);
                sqlite3_bind_int(st, 10, 200);
                sqlite3_bind_double(st, 11, hit ? cost : 0);
                sqlite3_bind_null(st, 12);
                sqlite3_bind_int(st, 13, attempts);
                sqlite3_step(st);
                sqlite3_reset(st);
                (*rows)++;
            }
        }
    }
    sqlite3_finalize(st);
    return sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK;
}

/* What the ledger holds for [ps, pe): the total (feature NULL) or one
 * feature's; remembered per range, since every method asks the same. */
static double month_actual(sqlite3 *db, int64_t ps, int64_t pe, const char *feature)
{
    static struct {
        int64_t ps;
        char feature[32];
        double v;
    } memo[64];
    static int nmemo;
    for (int i = 0; i < nmemo; i++)
        if (memo[i].ps == ps && strcmp(memo[i].feature, feature ? feature : "") == 0)
            return memo[i].v;
    ah_spend_query_t q;
    ah_spend_query_init(&q);
    char err[256];
    ah_spend_parse_dims(&q, "feature", err, sizeof err);
    q.since_ms = ps;
    q.until_ms = pe;
    q.top = 0;
    json_t *r = NULL;
    if (ah_spend_run(db, &q, &r, err, sizeof err))
        return NAN;
    double v = 0;
    if (!feature) {
        v = json_number_value(json_object_get(json_object_get(r, "total"), "cost_usd"));
    } else {
        size_t i;
        json_t *g;
        json_array_foreach(json_object_get(r, "groups"), i, g) if (
            strcmp(json_string_value(json_object_get(g, "feature")), feature) == 0) v =
            json_number_value(json_object_get(g, "cost_usd"));
    }
    json_decref(r);
    if (nmemo < 64) {
        memo[nmemo].ps = ps;
        snprintf(memo[nmemo].feature, sizeof memo[nmemo].feature, "%s", feature ? feature : "");
        memo[nmemo++].v = v;
    }
    return v;
}

static int replay(const char *path)
{
    remove(path);
    sqlite3 *db;
    if (ah_db_open(path, &db))
        return 1;
    /* 150 days ending with June 2025 */
    struct tm tm = {.tm_year = 125, .tm_mon = 6, .tm_mday = 1};
    int64_t end_ms = (int64_t)timegm(&tm) * 1000;
    int64_t start_ms = end_ms - REPLAY_DAYS * DAY_MS;
    long rows = 0;
    int64_t t0 = ah_now_us();
    if (write_ledger(db, start_ms, &rows))
        return 1;
    printf("## Replayed ledger (synthetic)\n\nNo real ledger was available, so `forecast_bench "
           "replay` writes a synthetic one: %d days up to 2025-06-30, %ld rows, written in %.1f s. Five features in three departments: support "
           "(+0.4%%/day), search (+0.2%%/day; moves to a model 40%% cheaper on day %d), summarise "
           "(-0.3%%/day), codegen (+1%%/day) and agent (launched on day 70, two weeks of ramp-up, "
           "+1.5%%/day, a provider incident on day %d: 3 failed attempts per request). "
           "Weekends at 35%% of a weekday, Mondays at 110%%, a shared day-to-day swing (sigma "
           "0.15), per-feature noise (0.1), lognormal cost per request (sigma 0.5), 8%% cache "
           "hits.\n\n",
           REPLAY_DAYS, rows, (double)(ah_now_us() - t0) / 1e6, PRICE_CUT_DAY, INCIDENT_DAY);
    /* backtests: as of days 7, 14, 21 of April, May, June 2025 */
    static const ah_forecast_method_t methods[] = {AH_FORECAST_AUTO, AH_FORECAST_HOLT_WINTERS,
                                                   AH_FORECAST_TREND_DOW, AH_FORECAST_RUN_RATE};
    score_t tot[4], feat[4], tot_day[4][3];
    memset(tot, 0, sizeof tot);
    memset(feat, 0, sizeof feat);
    memset(tot_day, 0, sizeof tot_day);
    printf("Backtest of the default method (AUTO: %s), total spend:\n\n| as of | actual month | "
           "projected | 90%% interval | error |\n|---|---|---|---|---|\n",
           ah_forecast_method_name(ah_forecast_auto_method()));
    for (int mi = 0; mi < 4; mi++)
        for (int mon = 3; mon <= 5; mon++)
            for (int k = 0; k < 3; k++) {
                struct tm at = {.tm_year = 125, .tm_mon = mon, .tm_mday = 7 * (k + 1) + 1};
                int64_t as_of = (int64_t)timegm(&at) * 1000; /* end of day 7, 14, 21 */
                struct tm m0 = {.tm_year = 125, .tm_mon = mon, .tm_mday = 1};
                struct tm m1 = {.tm_year = 125, .tm_mon = mon + 1, .tm_mday = 1};
                int64_t ps = (int64_t)timegm(&m0) * 1000, pe = (int64_t)timegm(&m1) * 1000;
                ah_spend_query_t q;
                ah_spend_query_init(&q);
                q.method = methods[mi];
                char err[256];
                ah_spend_parse_dims(&q, "feature", err, sizeof err);
                json_t *fc = NULL;
                if (ah_spend_forecast(db, &q, as_of, &fc, err, sizeof err)) {
                    fprintf(stderr, "forecast: %s\n", err);
                    return 1;
                }
                json_t *t = json_object_get(fc, "total");
                double proj = json_number_value(json_object_get(t, "projected_usd"));
                double lo = json_number_value(json_object_get(t, "low_usd"));
                double hi = json_number_value(json_object_get(t, "high_usd"));
                double spent = json_number_value(json_object_get(t, "spent_usd"));
                double actual = month_actual(db, ps, pe, NULL);
                score_add(&tot[mi], proj, lo, hi, spent, actual);
                score_add(&tot_day[mi][k], proj, lo, hi, spent, actual);
                if (mi == 0)
                    printf("| 2025-%02d-%02d 24:00 | %.0f | %.0f | %.0f - %.0f | %+.1f%% |\n",
                           mon + 1, 7 * (k + 1), actual, proj, lo, hi,
                           100 * (proj - actual) / actual);
                size_t i;
                json_t *g;
                json_array_foreach(json_object_get(fc, "groups"), i, g)
                {
                    const char *name = json_string_value(json_object_get(g, "feature"));
                    double a = month_actual(db, ps, pe, name);
                    double p = json_number_value(json_object_get(g, "projected_usd"));
                    double s = json_number_value(json_object_get(g, "spent_usd"));
                    double l = json_number_value(json_object_get(g, "low_usd"));
                    double h = json_number_value(json_object_get(g, "high_usd"));
                    if (a > 0)
                        score_add(&feat[mi], p, l, h, s, a);
                }
                json_decref(fc);
            }
    printf("\nAll methods (9 total forecasts; per feature: each feature with spend that month):\n\n"
           "| method | total: MAPE month (day 7 / 14 / 21) | total: rest of month | total: "
           "coverage | per feature: MAPE | rest | coverage |\n|---|---|---|---|---|---|---|\n");
    for (int mi = 0; mi < 4; mi++)
        printf("| %s | %.2f%% (%.1f / %.1f / %.1f) | %.2f%% | %d/%d | %.2f%% | %.2f%% | %.0f%% "
               "(%d) |\n",
               mi == 0 ? "AUTO" : ah_forecast_method_name(methods[mi]),
               100 * tot[mi].ape_total / tot[mi].n, 100 * tot_day[mi][0].ape_total / 3,
               100 * tot_day[mi][1].ape_total / 3, 100 * tot_day[mi][2].ape_total / 3,
               100 * tot[mi].ape_rest / tot[mi].n, (int)tot[mi].covered, tot[mi].n,
               100 * feat[mi].ape_total / feat[mi].n, 100 * feat[mi].ape_rest / feat[mi].n,
               100 * feat[mi].covered / feat[mi].n, feat[mi].n);
    printf("\n");
    /* what the queries cost */
    printf("## Query cost\n\n%ld rows, %s, one core of this machine; best of 3.\n\n| query | ms "
           "|\n|---|---|\n",
           rows, "SQLite in WAL mode, the ledger_ts index");
    static const char *const dims[] = {"model", "feature", "feature,department", "user",
                                       "feature,department"};
    static const int tops[] = {0, 0, 3, 3, -1};
    static const int ranges[] = {30, 30, 30, 30, 56};
    for (int i = 0; i < 5; i++) {
        double best = 1e18;
        for (int r = 0; r < 3; r++) {
            ah_spend_query_t q;
            ah_spend_query_init(&q);
            char err[256];
            ah_spend_parse_dims(&q, dims[i], err, sizeof err);
            q.since_ms = end_ms - ranges[i] * DAY_MS;
            q.top = tops[i] < 0 ? 0 : tops[i];
            json_t *res = NULL;
            int64_t t1 = ah_now_us();
            if (tops[i] < 0)
                ah_spend_forecast(db, &q, end_ms, &res, err, sizeof err);
            else
                ah_spend_run(db, &q, &res, err, sizeof err);
            double ms = (double)(ah_now_us() - t1) / 1000;
            best = ms < best ? ms : best;
            json_decref(res);
        }
        long inrange = 0;
        sqlite3_stmt *st;
        sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM ledger WHERE ts_ms >= ?", -1, &st, NULL);
        sqlite3_bind_int64(st, 1, end_ms - ranges[i] * DAY_MS);
        if (sqlite3_step(st) == SQLITE_ROW)
            inrange = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        printf("| %s `%s`, %d days (%ld rows)%s | %.1f |\n",
               tops[i] < 0 ? "forecast by" : "report by", dims[i], ranges[i], inrange,
               tops[i] > 0 ? ", top 3 users and prompts" : "", best);
    }
    printf("\n");
    sqlite3_close(db);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "synthetic") == 0)
        return synthetic(argc >= 3 ? (int)strtol(argv[2], NULL, 10) : 2000);
    if (argc >= 3 && strcmp(argv[1], "replay") == 0)
        return replay(argv[2]);
    fprintf(stderr, "usage: forecast_bench synthetic [TRIALS] | replay DB\n");
    return 2;
}
