/* cache.c - `ahorro cache stats | purge`: the answer cache of a running gateway;
 * `ahorro cache intents FILE`: how well a labelled history would decide hits.
 *
 * The entries live in the gateway's memory, so stats and purge ask its admin
 * API (GET /admin/cache, DELETE /admin/cache?...) at --url, by default the
 * configured listen address, with the configured master key. The intents
 * check runs here, on the file alone (cache/intent.h). */
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/intent.h"
#include "cli/cli.h"
#include "core/buf.h"
#include "core/limits.h"

#define CLI_REPLY_MAX (4u << 20)
#define CLI_URL_MAX 2048
#define CLI_TIMEOUT_S 10

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    return ah_buf_append(ud, p, size * n) ? 0 : size * n;
}

/* One admin call; the reply's JSON in *out (new reference). 0 on HTTP 2xx. */
static int call(const char *method, const char *url, const char *key, json_t **out)
{
    CURL *c = curl_easy_init();
    ah_buf_t body;
    ah_buf_init(&body, CLI_REPLY_MAX);
    struct curl_slist *h = NULL;
    char auth[1024];
    if (key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)CLI_TIMEOUT_S);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        fprintf(stderr, "ahorro cache: cannot reach the gateway at %s: %s\n", url,
                curl_easy_strerror(rc));
        ah_buf_free(&body);
        return 1;
    }
    *out = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
    if (status < 200 || status >= 300) {
        const char *m =
            json_string_value(json_object_get(json_object_get(*out, "error"), "message"));
        fprintf(stderr, "ahorro cache: the gateway answered %ld: %s\n", status,
                m ? m : (body.data ? body.data : ""));
        ah_buf_free(&body);
        return 1;
    }
    ah_buf_free(&body);
    return *out ? 0 : 1;
}

static void append_query(char *url, size_t n, const char *name, const char *value)
{
    if (!value)
        return;
    char *esc = curl_easy_escape(NULL, value, 0);
    size_t l = strlen(url);
    snprintf(url + l, n - l, "%s%s=%s", strchr(url, '?') ? "&" : "?", name, esc ? esc : "");
    curl_free(esc);
}

static void print_stats(json_t *s)
{
    static const char *const counters[] = {"entries",    "bytes",  "hits_exact", "hits_semantic",
                                           "misses",     "stores", "evictions",  "expirations",
                                           "false_hits", "purged", NULL};
    printf("cache %s, semantic %s\n", json_is_true(json_object_get(s, "enabled")) ? "on" : "off",
           json_is_true(json_object_get(s, "semantic")) ? "on" : "off");
    for (int i = 0; counters[i]; i++)
        printf("  %-14s %lld\n", counters[i],
               (long long)json_integer_value(json_object_get(s, counters[i])));
    printf("  %-14s %.3f\n", "hit_rate", json_number_value(json_object_get(s, "hit_rate")));
    json_t *by = json_object_get(s, "by_route");
    if (json_array_size(by)) {
        printf("\n%-24s %-24s %10s %10s %12s\n", "tenant", "model", "entries", "semantic", "bytes");
        size_t i;
        json_t *r;
        json_array_foreach(by, i, r)
        {
            printf("%-24s %-24s %10lld %10lld %12lld\n",
                   json_string_value(json_object_get(r, "tenant")),
                   json_string_value(json_object_get(r, "model")),
                   (long long)json_integer_value(json_object_get(r, "entries")),
                   (long long)json_integer_value(json_object_get(r, "semantic_entries")),
                   (long long)json_integer_value(json_object_get(r, "bytes")));
        }
    }
}

static double share(size_t a, size_t b)
{
    return b ? (double)a / (double)b : 0;
}

/* ahorro cache intents FILE [--json] */
static int intents(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (!path && argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "ahorro cache intents: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: ahorro cache intents FILE [--json]\n");
        return 2;
    }
    ah_intent_check_t c;
    char err[512];
    if (ah_intent_check_csv(path, NULL, &c, err, sizeof err)) {
        fprintf(stderr, "ahorro cache intents: %s\n", err);
        return 1;
    }
    if (as_json) {
        json_t *levels = json_array();
        for (int i = 0; i < AH_INTENT_CHECK_LEVELS; i++) {
            const ah_intent_check_level_t *a = &c.at[i];
            json_array_append_new(levels, json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}",
                                                    "intent_confidence", ah_intent_check_levels[i],
                                                    "coverage", share(a->covered, c.tested),
                                                    "accuracy", share(a->covered_right, a->covered),
                                                    "hit_rate", share(a->hits, c.tested),
                                                    "precision", share(a->hits_right, a->hits),
                                                    "hits", (json_int_t)a->hits));
        }
        json_t *o =
            json_pack("{s:s, s:I, s:i, s:f, s:o}", "file", path, "rows", (json_int_t)c.rows,
                      "labels", c.labels, "accuracy", share(c.correct, c.tested), "levels", levels);
        char *txt = json_dumps(o, JSON_INDENT(2));
        puts(txt);
        free(txt);
        json_decref(o);
        return 0;
    }
    printf("%s: %zu rows, %d labels; held out (each half classified by a model of the other): "
           "accuracy %.3f\n\n",
           path, c.rows, c.labels, share(c.correct, c.tested));
    printf("intent_confidence  coverage  accuracy  hit rate  precision\n");
    for (int i = 0; i < AH_INTENT_CHECK_LEVELS; i++) {
        const ah_intent_check_level_t *a = &c.at[i];
        printf("%17.2f  %8.3f  %8.3f  %8.3f  %9.3f%s\n", ah_intent_check_levels[i],
               share(a->covered, c.tested), share(a->covered_right, a->covered),
               share(a->hits, c.tested), share(a->hits_right, a->hits),
               ah_intent_check_levels[i] == AH_CACHE_INTENT_CONFIDENCE ? "  (default)" : "");
    }
    printf("\ncoverage: texts given a label at least that probable, and how many of those labels "
           "are right.\nhit rate, precision: each half replayed in order from an empty cache, a "
           "text served by the\nfirst stored one of its label. The gateway looks only at the 4 "
           "nearest stored prompts and\nserves the nearest of its label: fewer hits, more often "
           "right. Keep the confidence whose\nprecision you can live with "
           "(docs/semantic-cache-quality.md, \"Labelled history\").\n");
    return 0;
}

int ah_cli_cache(int argc, char **argv, const ah_config_t *cfg)
{
    if (argc >= 1 && strcmp(argv[0], "intents") == 0)
        return intents(argc - 1, argv + 1);
    const char *tenant = NULL, *ns = NULL, *model = NULL, *older = NULL, *url = NULL;
    int as_json = 0;
    if (argc < 1 || (strcmp(argv[0], "stats") && strcmp(argv[0], "purge"))) {
        fprintf(stderr, "usage: ahorro cache stats [--json] [--url URL]\n"
                        "       ahorro cache purge [--tenant T] [--namespace N] [--model M] "
                        "[--older-than SECONDS] [--url URL]\n"
                        "       ahorro cache intents FILE [--json]\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char **opt = NULL;
        if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
            continue;
        }
        if (strcmp(argv[i], "--tenant") == 0)
            opt = &tenant;
        else if (strcmp(argv[i], "--namespace") == 0)
            opt = &ns;
        else if (strcmp(argv[i], "--model") == 0)
            opt = &model;
        else if (strcmp(argv[i], "--older-than") == 0)
            opt = &older;
        else if (strcmp(argv[i], "--url") == 0)
            opt = &url;
        if (!opt || i + 1 >= argc) {
            fprintf(stderr, "ahorro cache: unknown or incomplete option '%s'\n", argv[i]);
            return 2;
        }
        *opt = argv[++i];
    }
    char u[CLI_URL_MAX];
    if (url)
        snprintf(u, sizeof u, "%s/admin/cache", url);
    else
        snprintf(u, sizeof u, "http://%s:%d/admin/cache",
                 strcmp(cfg->listen_host, "0.0.0.0") ? cfg->listen_host : "127.0.0.1",
                 cfg->listen_port);
    json_t *out = NULL;
    int rc;
    if (strcmp(argv[0], "stats") == 0) {
        rc = call("GET", u, cfg->master_key, &out);
        if (!rc && as_json) {
            char *s = json_dumps(out, JSON_INDENT(2));
            puts(s);
            free(s);
        } else if (!rc) {
            print_stats(out);
        }
    } else {
        append_query(u, sizeof u, "tenant", tenant);
        append_query(u, sizeof u, "namespace", ns);
        append_query(u, sizeof u, "model", model);
        append_query(u, sizeof u, "older_than", older);
        rc = call("DELETE", u, cfg->master_key, &out);
        if (!rc)
            printf("purged %lld entries\n",
                   (long long)json_integer_value(json_object_get(out, "purged")));
    }
    json_decref(out);
    return rc;
}
