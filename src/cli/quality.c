/* quality.c - `ahorro quality drift [--route R] [--since 30d] [--by day|week]
 * [--json]`: what the live judges said of each route over time, read from
 * the judgments table (quality/judging.h builds the report): the SQLite
 * file's, or every instance's in PostgreSQL when the ledger is there.
 *
 * One table per route and judge: per period, the answers judged and the
 * judgments that failed, the mean score (0..1) with its 95% confidence
 * interval, and the change from the period before with Welch's p-value. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "quality/judging.h"
#include "store/db.h"
#include "store/ledger_read.h"
#include "store/pg.h"
#include "store/spend.h"

static void print_num(const json_t *v, const char *fmt, int width)
{
    if (json_is_number(v))
        printf(fmt, width, json_number_value(v));
    else
        printf("%*s", width, "-");
}

static void print_ci(const json_t *ci)
{
    char b[48] = "-";
    if (json_array_size(ci) == 2)
        snprintf(b, sizeof b, "[%.3f, %.3f]", json_number_value(json_array_get(ci, 0)),
                 json_number_value(json_array_get(ci, 1)));
    printf(" %-16s", b);
}

static void print_series(const json_t *s)
{
    const json_t *p;
    size_t i;
    printf("route %s  judge %s\n", json_string_value(json_object_get(s, "route")),
           json_string_value(json_object_get(s, "judge")));
    printf("  %-10s %7s %6s %6s  %-16s %8s %8s  %s\n", "period", "judged", "failed", "score",
           "95% CI", "change", "p", "verdict");
    json_array_foreach(json_object_get(s, "periods"), i, p)
    {
        const json_t *vs = json_object_get(p, "vs_previous");
        printf("  %-10s %7lld %6lld ", json_string_value(json_object_get(p, "period")),
               (long long)json_integer_value(json_object_get(p, "judged")),
               (long long)json_integer_value(json_object_get(p, "failed")));
        print_num(json_object_get(p, "score_mean"), "%*.3f", 6);
        print_ci(json_object_get(p, "score_ci95"));
        print_num(json_object_get(vs, "diff"), " %+*.3f", 8);
        print_num(json_object_get(vs, "p"), " %*.3g", 8);
        printf("  %s\n", json_is_object(vs) ? json_string_value(json_object_get(vs, "verdict"))
                                            : "(no judgment in the period before)");
    }
    printf("  %-10s %7lld %6lld ", "all",
           (long long)json_integer_value(json_object_get(s, "judged")),
           (long long)json_integer_value(json_object_get(s, "failed")));
    print_num(json_object_get(s, "score_mean"), "%*.3f", 6);
    print_ci(json_object_get(s, "score_ci95"));
    printf("\n\n");
}

typedef struct drift_range {
    const char *route;
    int64_t since_ms;
} drift_range_t;

static ah_err_t judgments_mirror(PGconn *c, void *ctx, sqlite3 **out, char *err, size_t errlen)
{
    const drift_range_t *d = ctx;
    return ah_pg_judgments_mirror(c, d->since_ms, d->route, AH_DRIFT_MAX_ROWS + 1, out, err,
                                  errlen);
}

/* The judgments to report on: the SQLite file's, or, with a PostgreSQL
 * ledger (where every instance writes its judgments), an in-memory mirror
 * of those since since_ms, no more than the report reads (one past
 * AH_DRIFT_MAX_ROWS tells it that it is cut). No ledger row is mirrored:
 * the report reads none, and a month of a busy ledger would not fit. */
static ah_err_t open_judgments(const ah_config_t *cfg, const char *route, int64_t since_ms,
                               sqlite3 **db, char *err, size_t errlen)
{
    drift_range_t d = {route, since_ms};
    return ah_ledger_read_with(cfg, judgments_mirror, &d, db, err, errlen);
}

static int drift(int argc, char **argv, const ah_config_t *cfg)
{
    const char *route = NULL, *since = "30d";
    ah_drift_by_t by = AH_DRIFT_DAY;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--route") == 0 && i + 1 < argc) {
            route = argv[++i];
        } else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
            since = argv[++i];
        } else if (strcmp(argv[i], "--by") == 0 && i + 1 < argc) {
            const char *b = argv[++i];
            if (strcmp(b, "week") == 0)
                by = AH_DRIFT_WEEK;
            else if (strcmp(b, "day") != 0)
                return -1;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else {
            return -1;
        }
    }
    int64_t since_ms;
    if (ah_spend_parse_time(since, ah_wall_ms(), &since_ms)) {
        fprintf(stderr, "ahorro quality: --since takes 30d, 12h, 90m or YYYY-MM-DD\n");
        return 2;
    }
    sqlite3 *db = NULL;
    json_t *rep = NULL;
    char err[512] = "";
    ah_err_t rc = open_judgments(cfg, route, since_ms, &db, err, sizeof err);
    if (rc == AH_E_OK)
        rc = ah_drift_report(db, route, since_ms, by, &rep, err, sizeof err);
    sqlite3_close(db);
    if (rc) {
        fprintf(stderr, "ahorro quality: %s\n", err);
        return 1;
    }
    if (as_json) {
        char *s = json_dumps(rep, JSON_INDENT(2));
        printf("%s\n", s ? s : "{}");
        free(s);
    } else if (!json_array_size(json_object_get(rep, "routes"))) {
        printf("(no judgments%s%s since %s: see ahorro.judging in docs/experiments.md)\n",
               route ? " for route " : "", route ? route : "", since);
    } else {
        size_t i;
        const json_t *s;
        json_array_foreach(json_object_get(rep, "routes"), i, s) print_series(s);
        if (json_is_true(json_object_get(rep, "truncated")))
            printf("(truncated: more than %d judgments; narrow --since or --route)\n",
                   AH_DRIFT_MAX_ROWS);
    }
    json_decref(rep);
    return 0;
}

int ah_cli_quality(int argc, char **argv, const ah_config_t *cfg)
{
    int rc = -1;
    if (argc >= 1 && strcmp(argv[0], "drift") == 0)
        rc = drift(argc - 1, argv + 1, cfg);
    if (rc >= 0)
        return rc;
    fprintf(stderr,
            "usage: ahorro quality drift [--route R] [--since 30d] [--by day|week] [--json]\n");
    return 2;
}
