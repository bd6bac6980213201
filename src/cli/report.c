/* report.c - `ahorro report`: spend from the ledger, grouped.
 *
 *   ahorro report [--by model|key|owner|user|provider|status] [--since 30d|12h|ISO-date]
 *                 [--format table|csv|json]
 *
 * Default: by model, then by key, over everything. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/clock.h"
#include "store/db.h"

static const char *column_of(const char *by)
{
    static const struct {
        const char *name, *col;
    } map[] = {{"model", "COALESCE(served_model, requested_model)"},
               {"requested_model", "requested_model"},
               {"key", "COALESCE(key_id, '(none)')"},
               {"owner", "COALESCE(owner, '(none)')"},
               {"user", "COALESCE(user, '(none)')"},
               {"provider", "COALESCE(provider, '(none)')"},
               {"status", "CAST(status AS TEXT)"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(by, map[i].name) == 0)
            return map[i].col;
    return NULL;
}

/* --since: "30d", "12h", "90m" ago, or 0 for everything. -1 on bad input. */
static int64_t since_ms(const char *s)
{
    if (!s)
        return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || v > 100000)
        return -1;
    int64_t unit;
    if (strcmp(end, "d") == 0)
        unit = 86400000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else
        return -1;
    return ah_wall_ms() - (int64_t)v * unit;
}

static int report_one(sqlite3 *db, const char *by, int64_t since, const char *format,
                      json_t *json_out)
{
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT %s AS g, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
             "SUM(cached_tokens), COALESCE(SUM(cost_usd), 0), AVG(latency_ms), "
             "SUM(status >= 400) FROM ledger WHERE ts_ms >= ? GROUP BY g ORDER BY 6 DESC, 2 DESC",
             column_of(by));
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ahorro report: %s\n", sqlite3_errmsg(db));
        return 1;
    }
    sqlite3_bind_int64(st, 1, since);
    json_t *rows = json_array();
    int table = strcmp(format, "table") == 0, csv = strcmp(format, "csv") == 0;
    if (table)
        printf("\nSpend by %s\n%-40s %9s %12s %12s %10s %12s %10s %7s\n", by, by, "requests",
               "prompt_tok", "compl_tok", "cached", "cost_usd", "avg_ms", "errors");
    if (csv)
        printf("%s,requests,prompt_tokens,completion_tokens,cached_tokens,cost_usd,"
               "avg_latency_ms,errors\n",
               by);
    double total = 0;
    long long nreq = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *g = (const char *)sqlite3_column_text(st, 0);
        long long n = sqlite3_column_int64(st, 1);
        long long pt = sqlite3_column_int64(st, 2), ct = sqlite3_column_int64(st, 3),
                  cached = sqlite3_column_int64(st, 4), errs = sqlite3_column_int64(st, 7);
        double cost = sqlite3_column_double(st, 5), avg = sqlite3_column_double(st, 6);
        total += cost;
        nreq += n;
        if (table)
            printf("%-40.40s %9lld %12lld %12lld %10lld %12.6f %10.1f %7lld\n", g ? g : "", n, pt,
                   ct, cached, cost, avg, errs);
        else if (csv)
            printf("\"%s\",%lld,%lld,%lld,%lld,%.8f,%.2f,%lld\n", g ? g : "", n, pt, ct, cached,
                   cost, avg, errs);
        else
            json_array_append_new(
                rows, json_pack("{s:s,s:I,s:I,s:I,s:I,s:f,s:f,s:I}", by, g ? g : "", "requests",
                                (json_int_t)n, "prompt_tokens", (json_int_t)pt, "completion_tokens",
                                (json_int_t)ct, "cached_tokens", (json_int_t)cached, "cost_usd",
                                cost, "avg_latency_ms", avg, "errors", (json_int_t)errs));
    }
    sqlite3_finalize(st);
    if (table)
        printf("%-40s %9lld %12s %12s %10s %12.6f\n", "TOTAL", nreq, "", "", "", total);
    if (json_out)
        json_object_set_new(json_out, by, rows);
    else
        json_decref(rows);
    return 0;
}

int ah_cli_report(int argc, char **argv, const char *db_path)
{
    const char *by = NULL, *since = NULL, *format = "table";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--by") == 0 && i + 1 < argc)
            by = argv[++i];
        else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc)
            since = argv[++i];
        else if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
            format = argv[++i];
        else {
            fprintf(stderr, "usage: ahorro report [--by model|key|owner|user|provider|status] "
                            "[--since 30d|12h|90m] [--format table|csv|json]\n");
            return 2;
        }
    }
    if (strcmp(format, "table") && strcmp(format, "csv") && strcmp(format, "json")) {
        fprintf(stderr, "ahorro report: --format must be table, csv or json\n");
        return 2;
    }
    int64_t from = since_ms(since);
    if (from < 0) {
        fprintf(stderr, "ahorro report: --since must look like 30d, 12h or 90m\n");
        return 2;
    }
    const char *groups[8];
    int ng = 0;
    char bybuf[256];
    if (by) {
        snprintf(bybuf, sizeof bybuf, "%s", by);
        char *save = NULL;
        for (char *t = strtok_r(bybuf, ",", &save); t && ng < 8; t = strtok_r(NULL, ",", &save)) {
            if (!column_of(t)) {
                fprintf(stderr,
                        "ahorro report: cannot group by '%s' (model, key, owner, user, "
                        "provider, status)\n",
                        t);
                return 2;
            }
            groups[ng++] = t;
        }
    } else {
        groups[ng++] = "model";
        groups[ng++] = "key";
    }
    sqlite3 *db;
    if (ah_db_open(db_path, &db))
        return 1;
    json_t *out = strcmp(format, "json") == 0 ? json_object() : NULL;
    int rc = 0;
    for (int i = 0; i < ng && !rc; i++)
        rc = report_one(db, groups[i], from, format, out);
    if (out) {
        char *s = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
        json_decref(out);
    }
    sqlite3_close(db);
    return rc;
}
