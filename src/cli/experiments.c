/* experiments.c - `ahorro experiments show [NAME] [--since 7d] [--json]`:
 * what each arm of the configured experiments did, read from the ledger
 * (quality/experiment.h builds the report; GET /admin/experiments serves
 * the same JSON). The table prints one line per arm and, under it, each
 * arm's differences from the control with their verdicts. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "quality/experiment.h"
#include "store/db.h"
#include "store/ledger_read.h"
#include "store/spend.h"

static double num(const json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static void print_cell(const json_t *o, const char *k, const char *fmt, int width)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_number(v))
        printf(fmt, width, json_number_value(v));
    else
        printf("%*s", width, "-");
}

static void print_compare(const json_t *vs, const char *what)
{
    const json_t *c = json_object_get(vs, what);
    const json_t *d = json_object_get(c, "diff");
    printf("      %-8s ", what);
    if (json_is_number(d))
        printf("%+12.6g  ", json_number_value(d));
    else
        printf("%12s  ", "-");
    printf("%s\n", json_string_value(json_object_get(c, "verdict")));
}

static void print_experiment(const json_t *x)
{
    const json_t *pol = json_object_get(x, "policy");
    printf("experiment %s  (route %s, sticky %s, policy %s on %s)\n",
           json_string_value(json_object_get(x, "name")),
           json_string_value(json_object_get(x, "route")),
           json_string_value(json_object_get(x, "sticky")),
           json_string_value(json_object_get(pol, "kind")),
           json_string_value(json_object_get(pol, "metric")));
    printf("  policy: %s\n", json_string_value(json_object_get(pol, "note")));
    printf("  %-12s %6s %8s %12s %11s %9s %9s %6s %8s %7s %7s %6s %7s %10s\n", "arm", "weight",
           "requests", "$/request", "total $", "p50 ms", "p95 ms", "err %", "feedback", "score",
           "wrong %", "judged", "judge", "quality/$");
    size_t i;
    const json_t *a;
    json_array_foreach(json_object_get(x, "arms"), i, a)
    {
        printf("  %-12.12s %6.2f %8lld ", json_string_value(json_object_get(a, "name")),
               num(a, "weight_now"), (long long)json_integer_value(json_object_get(a, "requests")));
        print_cell(a, "cost_per_request_usd", "%*.6f", 12);
        printf(" %11.4f ", num(a, "cost_total_usd"));
        print_cell(a, "latency_p50_ms", "%*.0f", 9);
        print_cell(a, "latency_p95_ms", " %*.0f", 9);
        const json_t *er = json_object_get(a, "error_rate"),
                     *wr = json_object_get(a, "wrong_share");
        if (json_is_number(er))
            printf(" %6.1f", 100 * json_number_value(er));
        else
            printf(" %6s", "-");
        printf(" %8lld ", (long long)json_integer_value(json_object_get(a, "feedback")));
        print_cell(a, "score_mean", "%*.3f", 7);
        if (json_is_number(wr))
            printf(" %7.1f", 100 * json_number_value(wr));
        else
            printf(" %7s", "-");
        printf(" %6lld ", (long long)json_integer_value(json_object_get(a, "judged")));
        print_cell(a, "judge_mean", "%*.3f", 7);
        print_cell(a, "quality_per_usd", " %*.4g", 10);
        printf("\n");
    }
    json_array_foreach(json_object_get(x, "arms"), i, a)
    {
        const json_t *vs = json_object_get(a, "vs_control");
        if (!vs)
            continue;
        printf("    %s vs %s:\n", json_string_value(json_object_get(a, "name")),
               json_string_value(
                   json_object_get(json_array_get(json_object_get(x, "arms"), 0), "name")));
        print_compare(vs, "cost");
        print_compare(vs, "latency");
        print_compare(vs, "score");
        print_compare(vs, "judge");
        print_compare(vs, "wrong");
        print_compare(vs, "errors");
    }
    printf("\n");
}

static void print_satisfaction(const json_t *sat)
{
    if (!json_array_size(sat))
        return;
    printf("satisfaction (feedback by feature, route and arm)\n");
    printf("  %-16s %-20s %-24s %8s %7s %7s\n", "feature", "route", "experiment/arm", "feedback",
           "score", "wrong %");
    size_t i;
    const json_t *s;
    json_array_foreach(sat, i, s)
    {
        char arm[160] = "-";
        const char *e = json_string_value(json_object_get(s, "experiment"));
        if (e && *e)
            snprintf(arm, sizeof arm, "%s/%s", e, json_string_value(json_object_get(s, "arm")));
        const char *f = json_string_value(json_object_get(s, "feature"));
        printf("  %-16.16s %-20.20s %-24.24s %8lld ", f && *f ? f : "-",
               json_string_value(json_object_get(s, "route")), arm,
               (long long)json_integer_value(json_object_get(s, "feedback")));
        print_cell(s, "score_mean", "%*.3f", 7);
        printf(" %7.1f\n", 100 * num(s, "wrong_share"));
    }
}

int ah_cli_experiments(int argc, char **argv, const ah_config_t *cfg)
{
    const char *name = NULL, *since = "7d";
    int as_json = 0;
    if (argc < 1 || strcmp(argv[0], "show") != 0)
        goto usage;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
            since = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (argv[i][0] != '-' && !name)
            name = argv[i];
        else
            goto usage;
    }
    int64_t since_ms;
    if (ah_spend_parse_time(since, ah_wall_ms(), &since_ms)) {
        fprintf(stderr, "ahorro experiments: --since takes 7d, 12h, 90m or YYYY-MM-DD\n");
        return 2;
    }
    if (!cfg->experiments.n && !as_json) {
        printf("(no experiments configured: see docs/experiments.md)\n");
        return 0;
    }
    sqlite3 *db = NULL;
    char err[512] = "";
    if (ah_ledger_read_open(cfg, since_ms, 0, &db, err, sizeof err)) {
        fprintf(stderr, "ahorro experiments: %s\n", err);
        return 1;
    }
    json_t *rep = NULL;
    ah_err_t rc = ah_experiment_report(db, cfg, name, since_ms, &rep, err, sizeof err);
    sqlite3_close(db);
    if (rc) {
        fprintf(stderr, "ahorro experiments: %s\n", err);
        return 1;
    }
    if (as_json) {
        char *s = json_dumps(rep, JSON_INDENT(2));
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        size_t i;
        const json_t *x;
        json_array_foreach(json_object_get(rep, "data"), i, x) print_experiment(x);
        print_satisfaction(json_object_get(rep, "satisfaction"));
    }
    json_decref(rep);
    return 0;
usage:
    fprintf(stderr, "usage: ahorro experiments show [NAME] [--since 7d] [--json]\n");
    return 2;
}
