/* report.c - `ahorro report`: spend from the ledger, grouped, and where it
 * is heading.
 *
 *   ahorro report [--by DIMS]... [--since T] [--until T] [--limit N] [--top N]
 *                 [--forecast [--period month|week]] [--format table|csv|json]
 *
 * DIMS is one dimension or several grouped together ("feature,department":
 * one row per pair); each --by is one report. Dimensions: model, key, owner,
 * user, provider, ... or a tag ("feature", "tag:team"). Default: by model,
 * then by key, over everything. The queries are src/store/spend.c's, the
 * same as GET /admin/spend's. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "store/db.h"
#include "store/ledger_read.h"
#include "store/spend.h"

#define MAX_REPORTS 8

static void usage(void)
{
    fprintf(stderr,
            "usage: ahorro report [--by DIMS]... [--since 30d|12h|90m|YYYY-MM-DD] "
            "[--until T] [--limit N] [--top N]\n"
            "                     [--forecast [--period month|week]] "
            "[--format table|csv|json]\n"
            "  DIMS: model, requested_model, key, owner, user, provider, deployment, status, "
            "cache, day,\n"
            "        or a tag (feature, tag:team); a comma groups them together "
            "(--by feature,department)\n");
}

static double num(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

static long long integer(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

static const char *dim_value(json_t *row, const char *name)
{
    const char *s = json_string_value(json_object_get(json_object_get(row, "group"), name));
    return s ? s : "";
}

/* A CSV field, quoted, with quotes doubled. */
static void csv_field(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

static void print_dims(json_t *by, json_t *row, int width)
{
    size_t i;
    json_t *d;
    json_array_foreach(by, i, d)
    {
        if (row)
            printf("%-*.*s ", width, width, dim_value(row, json_string_value(d)));
        else
            printf("%-*.*s ", width, width, json_string_value(d));
    }
}

/* "alice 0.0123 (12)"-style list of a group's top users or prompts. */
static void top_list(json_t *items, int prompts, char *out, size_t outlen)
{
    size_t i, len = 0;
    json_t *it;
    out[0] = '\0';
    json_array_foreach(items, i, it)
    {
        char what[512];
        if (prompts) {
            char *tags = json_dumps(json_object_get(it, "tags"), JSON_COMPACT | JSON_SORT_KEYS);
            snprintf(what, sizeof what, "%s/%s/%s",
                     json_string_value(json_object_get(it, "requested_model")),
                     json_string_value(json_object_get(it, "user")), tags ? tags : "{}");
            free(tags);
        } else {
            snprintf(what, sizeof what, "%s", json_string_value(json_object_get(it, "user")));
        }
        int n = snprintf(out + len, outlen - len, "%s%s %.6f (%lld)", i ? "; " : "", what,
                         num(it, "cost_usd"), integer(it, "requests"));
        if (n < 0 || (size_t)n >= outlen - len)
            break;
        len += (size_t)n;
    }
}

static void print_report(json_t *res, const char *by_text, const char *format)
{
    json_t *by = json_object_get(res, "group_by"), *groups = json_object_get(res, "groups");
    json_t *total = json_object_get(res, "total");
    int width = json_array_size(by) > 1 ? 24 : 40;
    size_t i;
    json_t *g;
    char list[2048];
    if (strcmp(format, "table") == 0) {
        printf("\nSpend by %s\n", by_text);
        print_dims(by, NULL, width);
        printf("%9s %12s %12s %10s %12s %10s %7s %11s %11s %8s %11s\n", "requests", "prompt_tok",
               "compl_tok", "cached", "cost_usd", "avg_ms", "errors", "usd/request", "saved_usd",
               "failed_att", "failed_usd");
        json_array_foreach(groups, i, g)
        {
            print_dims(by, g, width);
            printf("%9lld %12lld %12lld %10lld %12.6f %10.1f %7lld %11.6f %11.6f %8lld %11.6f\n",
                   integer(g, "requests"), integer(g, "prompt_tokens"),
                   integer(g, "completion_tokens"), integer(g, "cached_tokens"), num(g, "cost_usd"),
                   num(g, "avg_latency_ms"), integer(g, "errors"), num(g, "cost_per_request_usd"),
                   num(g, "saved_usd"), integer(g, "failed_attempts"),
                   num(g, "failed_attempts_cost_usd"));
            if (json_array_size(json_object_get(g, "top_users"))) {
                top_list(json_object_get(g, "top_users"), 0, list, sizeof list);
                printf("    top users: %s\n", list);
                top_list(json_object_get(g, "top_prompts"), 1, list, sizeof list);
                printf("    top prompts (model/user/tags): %s\n", list);
            }
        }
        if (json_is_true(json_object_get(res, "truncated")))
            printf("(%lld more groups not shown: --limit)\n",
                   integer(res, "group_count") - (long long)json_array_size(groups));
        printf("%-*s %9lld %12s %12s %10s %12.6f %10s %7lld %11.6f %11.6f %8lld %11.6f\n",
               (width + 1) * (int)json_array_size(by) - 1, "TOTAL", integer(total, "requests"), "",
               "", "", num(total, "cost_usd"), "", integer(total, "errors"),
               num(total, "cost_per_request_usd"), num(total, "saved_usd"),
               integer(total, "failed_attempts"), num(total, "failed_attempts_cost_usd"));
        printf("Savings by mechanism: caching $%.6f, routing $%.6f, shaping $%.6f (%lld prompt "
               "tokens), provider prompt caching $%.6f (baseline $%.6f)\n",
               num(total, "saved_usd"), num(total, "saved_routing_usd"),
               num(total, "saved_shaping_usd"), integer(total, "shape_tokens_saved"),
               num(total, "prompt_cache_saved_usd"), num(total, "baseline_usd"));
        return;
    }
    /* csv: the columns of earlier versions first, new ones after */
    json_array_foreach(by, i, g) printf("%s%s", i ? "," : "", json_string_value(g));
    printf(",requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd,avg_latency_ms,"
           "errors,cost_per_request_usd,saved_usd,prompt_cache_saved_usd,failed_attempts,"
           "failed_attempts_cost_usd,top_users,top_prompts,saved_routing_usd,baseline_usd,"
           "saved_shaping_usd,shape_tokens_saved\n");
    json_array_foreach(groups, i, g)
    {
        size_t j;
        json_t *d;
        json_array_foreach(by, j, d)
        {
            if (j)
                putchar(',');
            csv_field(dim_value(g, json_string_value(d)));
        }
        printf(",%lld,%lld,%lld,%lld,%.8f,%.2f,%lld,%.8f,%.8f,%.8f,%lld,%.8f,",
               integer(g, "requests"), integer(g, "prompt_tokens"), integer(g, "completion_tokens"),
               integer(g, "cached_tokens"), num(g, "cost_usd"), num(g, "avg_latency_ms"),
               integer(g, "errors"), num(g, "cost_per_request_usd"), num(g, "saved_usd"),
               num(g, "prompt_cache_saved_usd"), integer(g, "failed_attempts"),
               num(g, "failed_attempts_cost_usd"));
        top_list(json_object_get(g, "top_users"), 0, list, sizeof list);
        csv_field(list);
        putchar(',');
        top_list(json_object_get(g, "top_prompts"), 1, list, sizeof list);
        csv_field(list);
        printf(",%.8f,%.8f,%.8f,%lld\n", num(g, "saved_routing_usd"), num(g, "baseline_usd"),
               num(g, "saved_shaping_usd"), integer(g, "shape_tokens_saved"));
    }
}

static void utc_text(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%d %H:%M UTC", &tm);
}

static void print_forecast(json_t *res, const char *by_text, const char *format)
{
    json_t *by = json_object_get(res, "group_by"), *groups = json_object_get(res, "groups");
    json_t *total = json_object_get(res, "total");
    int width = json_array_size(by) > 1 ? 24 : 40, nd = (int)json_array_size(by);
    size_t i;
    json_t *g;
    if (strcmp(format, "table") == 0) {
        char from[32], to[32], at[32];
        utc_text(integer(res, "period_start_ms"), from, sizeof from);
        utc_text(integer(res, "period_end_ms"), to, sizeof to);
        utc_text(integer(res, "as_of_ms"), at, sizeof at);
        printf("\nProjected spend by %s, %s %s to %s (as of %s; 90%% interval)\n", by_text,
               json_string_value(json_object_get(res, "period")), from, to, at);
        print_dims(by, NULL, width);
        printf("%12s %12s %12s %12s %12s %-14s\n", "spent_usd", "projected", "low", "high",
               "trend/day", "method");
        json_array_foreach(groups, i, g)
        {
            print_dims(by, g, width);
            printf("%12.4f %12.4f %12.4f %12.4f %+12.4f %-14s\n", num(g, "spent_usd"),
                   num(g, "projected_usd"), num(g, "low_usd"), num(g, "high_usd"),
                   num(g, "trend_usd_per_day"), json_string_value(json_object_get(g, "method")));
        }
        printf("%-*s %12.4f %12.4f %12.4f %12.4f %+12.4f %-14s\n",
               nd ? (width + 1) * nd - 1 : width, "TOTAL", num(total, "spent_usd"),
               num(total, "projected_usd"), num(total, "low_usd"), num(total, "high_usd"),
               num(total, "trend_usd_per_day"),
               json_string_value(json_object_get(total, "method")));
        return;
    }
    json_array_foreach(by, i, g) printf("%s,", json_string_value(g));
    printf("spent_usd,projected_usd,low_usd,high_usd,remaining_usd,trend_usd_per_day,method,"
           "history_days\n");
    json_array_append(groups, total);
    json_array_foreach(groups, i, g)
    {
        size_t j;
        json_t *d;
        int is_total = i + 1 == json_array_size(groups);
        json_array_foreach(by, j, d)
        {
            csv_field(is_total ? "TOTAL" : dim_value(g, json_string_value(d)));
            putchar(',');
        }
        printf("%.8f,%.8f,%.8f,%.8f,%.8f,%.8f,%s,%lld\n", num(g, "spent_usd"),
               num(g, "projected_usd"), num(g, "low_usd"), num(g, "high_usd"),
               num(g, "remaining_usd"), num(g, "trend_usd_per_day"),
               json_string_value(json_object_get(g, "method")), integer(g, "history_days"));
    }
}

static int parse_count(const char *s, int max, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int ah_cli_report(int argc, char **argv, const ah_config_t *cfg)
{
    const char *bys[MAX_REPORTS], *since = NULL, *until = NULL, *format = "table";
    const char *period = "month";
    int nby = 0, forecast = 0, limit = AH_SPEND_MAX_GROUPS, top = AH_SPEND_DEFAULT_TOP;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--forecast") == 0) {
            forecast = 1;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--by") == 0 && nby < MAX_REPORTS)
            bys[nby++] = v;
        else if (strcmp(a, "--since") == 0)
            since = v;
        else if (strcmp(a, "--until") == 0)
            until = v;
        else if (strcmp(a, "--format") == 0)
            format = v;
        else if (strcmp(a, "--period") == 0)
            period = v;
        else if (strcmp(a, "--limit") == 0 && !parse_count(v, AH_SPEND_MAX_GROUPS, &limit) &&
                 limit > 0)
            ;
        else if (strcmp(a, "--top") == 0 && !parse_count(v, AH_SPEND_MAX_TOP, &top))
            ;
        else {
            usage();
            return 2;
        }
    }
    if (strcmp(format, "table") && strcmp(format, "csv") && strcmp(format, "json")) {
        fprintf(stderr, "ahorro report: --format must be table, csv or json\n");
        return 2;
    }
    if (strcmp(period, "month") && strcmp(period, "week")) {
        fprintf(stderr, "ahorro report: --period must be month or week\n");
        return 2;
    }
    int64_t now = ah_wall_ms(), from = 0, to = 0;
    if ((since && ah_spend_parse_time(since, now, &from)) ||
        (until && ah_spend_parse_time(until, now, &to))) {
        fprintf(stderr, "ahorro report: --since and --until take 30d, 12h, 90m (ago), "
                        "YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]Z (UTC)\n");
        return 2;
    }
    if (to && from >= to) {
        fprintf(stderr, "ahorro report: --since must be before --until\n");
        return 2;
    }
    ah_spend_query_t qs[MAX_REPORTS];
    const char *names[MAX_REPORTS];
    int nq = 0;
    if (nby == 0 && !forecast) {
        bys[nby++] = "model";
        bys[nby++] = "key";
    }
    for (int i = 0; i < nby; i++) {
        char err[512];
        ah_spend_query_init(&qs[nq]);
        if (ah_spend_parse_dims(&qs[nq], bys[i], err, sizeof err)) {
            fprintf(stderr, "ahorro report: %s\n", err);
            return 2;
        }
        names[nq++] = bys[i];
    }
    if (nq == 0) { /* a forecast of the total alone */
        ah_spend_query_init(&qs[0]);
        qs[0].ndims = 0;
        names[nq++] = "total";
    }
    /* A forecast looks back over its history as well as the range. */
    int64_t read_from = from;
    if (forecast) {
        int64_t back = (to ? to : now) - (int64_t)(qs[0].history_days + 31) * 86400000LL;
        read_from = from && from < back ? from : back;
    }
    sqlite3 *db;
    char why[512];
    if (ah_ledger_read_open(cfg, read_from, forecast ? 0 : to, &db, why, sizeof why)) {
        fprintf(stderr, "ahorro report: %s\n", why);
        return 1;
    }
    json_t *out = strcmp(format, "json") == 0 ? json_object() : NULL, *summary = json_object();
    int rc = 0;
    for (int i = 0; i < nq && !rc; i++) {
        ah_spend_query_t *q = &qs[i];
        q->since_ms = from;
        q->until_ms = to;
        q->limit = limit;
        q->top = top;
        q->period = strcmp(period, "week") == 0 ? AH_SPEND_PERIOD_WEEK : AH_SPEND_PERIOD_MONTH;
        char err[512];
        json_t *res = NULL;
        ah_err_t e = forecast ? ah_spend_forecast(db, q, to ? to : now, &res, err, sizeof err)
                              : ah_spend_run(db, q, &res, err, sizeof err);
        if (e) {
            fprintf(stderr, "ahorro report: %s\n", err);
            rc = 1;
            break;
        }
        if (out && forecast) {
            json_object_set(out, names[i], res);
        } else if (out) { /* earlier versions' shape: "<by>": [rows]; the rest under "$summary" */
            json_object_set(out, names[i], json_object_get(res, "groups"));
            json_object_del(res, "groups");
            json_object_set(summary, names[i], res);
        } else {
            if (i && strcmp(format, "csv") == 0)
                putchar('\n');
            (forecast ? print_forecast : print_report)(res, names[i], format);
        }
        json_decref(res);
    }
    if (out && !rc) {
        if (!forecast)
            json_object_set(out, "$summary", summary);
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
    json_decref(out);
    json_decref(summary);
    sqlite3_close(db);
    return rc;
}
