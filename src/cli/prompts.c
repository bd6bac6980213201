/* prompts.c - `ahorro prompts audit [--since DAYS] [--min-requests N]
 * [--json]`: the routes whose prompts a provider's prompt cache could serve
 * more cheaply, with the amount, read from the ledger.
 *
 * Every request's ledger row carries a hash of its static prefix (tools and
 * leading system messages, after shaping) and that prefix's tokens. Per
 * route (requested model, feature tag, served model) the audit counts:
 *
 *   repeats  requests whose prefix an earlier request of the route had: a
 *            prompt cache would read those tokens at the cache-read price.
 *            Saving = repeats x prefix tokens x (input - cache read) rate,
 *            less what the provider's cache already saved (the ledger's
 *            prompt_cache_saved_usd). Advice: turn prompt caching on
 *            (Anthropic: cache_control markers, `prompt_cache: true` on the
 *            deployment; OpenAI caches prefixes of 1,024 tokens on its own).
 *   varying  a route whose prefix differs from request to request (a date,
 *            a user name in the system prompt): had the prefix been stable,
 *            every request but the first would be a repeat. Saving = the
 *            difference. Advice: move what varies after the static part.
 *
 * Prefixes under 1,024 tokens are not cached by OpenAI or Anthropic (2,048
 * on Claude Haiku), so those routes are listed with no saving. The count
 * ignores cache lifetimes (5 to 10 minutes idle): it is an upper bound for
 * sparse traffic. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "store/db.h"
#include "store/ledger_read.h"
#include "store/prices.h"

/* The least prefix providers cache. */
#define AUDIT_MIN_CACHEABLE 1024
/* Most routes listed. */
#define AUDIT_MAX_ROUTES 1000

typedef struct route {
    char *model, *feature, *served, *provider;
    long n, distinct;
    double prefix_avg;
    double already_saved;
    double repeat_usd, varying_usd;
    const char *advice;
} route_t;

static int by_saving(const void *a, const void *b)
{
    const route_t *x = a, *y = b;
    double sx = x->repeat_usd + x->varying_usd, sy = y->repeat_usd + y->varying_usd;
    return sx < sy ? 1 : sx > sy ? -1 : 0;
}

static char *col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return ah_strdup(s ? s : "");
}

int ah_cli_prompts(int argc, char **argv, const ah_config_t *cfg)
{
    double days = 30;
    long min_requests = 10;
    int as_json = 0;
    if (argc < 1 || strcmp(argv[0], "audit") != 0)
        goto usage;
    for (int i = 1; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
            days = strtod(argv[++i], &end);
            if (!end || (*end && strcmp(end, "d")) || days <= 0 || days > 3650)
                goto usage;
        } else if (strcmp(argv[i], "--min-requests") == 0 && i + 1 < argc) {
            min_requests = strtol(argv[++i], &end, 10);
            if (!end || *end || min_requests < 1)
                goto usage;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else {
            goto usage;
        }
    }
    sqlite3 *db = NULL;
    char why[512];
    int64_t since_ms = ah_wall_ms() - (int64_t)(days * 86400e3);
    if (ah_ledger_read_open(cfg, since_ms, 0, &db, why, sizeof why)) {
        fprintf(stderr, "ahorro prompts: %s\n", why);
        return 1;
    }
    ah_prices_t *prices = ah_prices_open_default(cfg->prices_path, NULL);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    route_t *routes = ah_calloc(AUDIT_MAX_ROUTES, sizeof *routes);
    size_t nr = 0;
    if (sqlite3_prepare_v2(
            db,
            "SELECT requested_model, COALESCE(json_extract(tags, '$.feature'), ''), "
            "COALESCE(served_model, ''), COALESCE(provider, ''), COUNT(*), "
            "COUNT(DISTINCT prefix_hash), AVG(prefix_tokens), SUM(prompt_cache_saved_usd) "
            "FROM ledger WHERE attempt_of IS NULL AND prefix_hash IS NOT NULL AND status < 400 "
            "AND COALESCE(cache, '') NOT IN ('exact', 'semantic') AND ts_ms >= ?1 "
            "GROUP BY 1, 2, 3, 4 HAVING COUNT(*) >= ?2 ORDER BY COUNT(*) DESC LIMIT ?3",
            -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "ahorro prompts: %s\n", sqlite3_errmsg(db));
        rc = 1;
        goto out;
    }
    sqlite3_bind_int64(st, 1, since_ms);
    sqlite3_bind_int64(st, 2, min_requests);
    sqlite3_bind_int(st, 3, AUDIT_MAX_ROUTES);
    while (sqlite3_step(st) == SQLITE_ROW && nr < AUDIT_MAX_ROUTES) {
        route_t *r = &routes[nr++];
        r->model = col(st, 0);
        r->feature = col(st, 1);
        r->served = col(st, 2);
        r->provider = col(st, 3);
        r->n = sqlite3_column_int64(st, 4);
        r->distinct = sqlite3_column_int64(st, 5);
        r->prefix_avg = sqlite3_column_double(st, 6);
        r->already_saved = sqlite3_column_double(st, 7);
        ah_price_t p;
        double discount = 0; /* USD a cached prefix token saves */
        if (prices && ah_prices_find(prices, r->provider, r->served, time(NULL), &p) == AH_E_OK &&
            p.input.base > 0)
            discount =
                (p.input.base - (p.cache_read.base >= 0 ? p.cache_read.base : p.input.base * 0.5)) /
                1e6;
        double repeats = (double)(r->n - r->distinct);
        double stable = (double)(r->n - 1);
        if (r->prefix_avg < AUDIT_MIN_CACHEABLE) {
            r->advice = "prefix under 1,024 tokens: providers do not cache it";
        } else {
            r->repeat_usd = repeats * r->prefix_avg * discount - r->already_saved;
            if (r->repeat_usd < 0)
                r->repeat_usd = 0;
            if (r->distinct > 1 && (double)r->distinct > 0.2 * (double)r->n)
                r->varying_usd = (stable - repeats) * r->prefix_avg * discount;
            r->advice = r->varying_usd > r->repeat_usd
                            ? "prefix varies between requests: put the static part first"
                        : r->repeat_usd > 0 ? "repeated prefix: turn on prompt caching"
                                            : "prompt cache already serves it";
        }
    }
    qsort(routes, nr, sizeof *routes, by_saving);
    if (as_json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < nr; i++) {
            route_t *r = &routes[i];
            json_array_append_new(
                arr, json_pack("{s:s,s:s,s:s,s:I,s:I,s:f,s:f,s:f,s:f,s:s}", "model", r->model,
                               "feature", r->feature, "served_model", r->served, "requests",
                               (json_int_t)r->n, "distinct_prefixes", (json_int_t)r->distinct,
                               "prefix_tokens", r->prefix_avg, "saving_caching_usd", r->repeat_usd,
                               "saving_reorder_usd", r->varying_usd, "already_saved_usd",
                               r->already_saved, "advice", r->advice));
        }
        char *s = json_dumps(arr, JSON_INDENT(2));
        printf("%s\n", s ? s : "[]");
        free(s);
        json_decref(arr);
    } else {
        printf("%-24s %-14s %8s %9s %8s %12s %12s  %s\n", "route", "feature", "requests",
               "prefixes", "tokens", "caching $", "reorder $", "advice");
        for (size_t i = 0; i < nr; i++) {
            route_t *r = &routes[i];
            printf("%-24.24s %-14.14s %8ld %9ld %8.0f %12.4f %12.4f  %s\n", r->model,
                   *r->feature ? r->feature : "-", r->n, r->distinct, r->prefix_avg, r->repeat_usd,
                   r->varying_usd, r->advice);
        }
        if (!nr)
            printf("(no route with %ld or more requests in the last %g days)\n", min_requests,
                   days);
    }
out:
    sqlite3_finalize(st);
    for (size_t i = 0; i < nr; i++) {
        ah_free(routes[i].model);
        ah_free(routes[i].feature);
        ah_free(routes[i].served);
        ah_free(routes[i].provider);
    }
    ah_free(routes);
    ah_prices_free(prices);
    sqlite3_close(db);
    return rc;
usage:
    fprintf(stderr, "usage: ahorro prompts audit [--since DAYS] [--min-requests N] [--json]\n");
    return 2;
}
