/* prices.c - `ahorro prices`: list and search the price catalogue, and say
 * which price a model name gets.
 *
 *   ahorro prices [QUERY] [--provider P] [--model M] [--at YYYY-MM-DD] [--json]
 *
 * Without --model it lists the catalogue's models (those whose provider id
 * is P, and whose "provider/model" id contains QUERY, case-insensitively)
 * with their rates in USD per million tokens at --at (default: now; dated
 * price changes are applied). With --model it prices one name as the gateway
 * does: a model_name of the configuration is priced as its deployment (the
 * config's override, else the catalogue by the deployment's provider and
 * model); any other name by the catalogue's match rules, for provider P when
 * given. The catalogue is found as `ahorro serve` finds it (docs/pricing.md). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "route/balance.h"
#include "core/path.h"
#include "store/prices.h"

#define PRICES_SECONDS_PER_DAY 86400
#define PRICES_ID_BYTES 600 /* "provider/model" of one catalogue entry */

typedef struct opts {
    const char *query, *provider, *model, *at;
    int json;
} opts_t;

static void usage(void)
{
    fprintf(stderr, "usage: ahorro prices [QUERY] [--provider P] [--model M] [--at YYYY-MM-DD] "
                    "[--json]\n");
}

/* The catalogue: config, $AHORRO_PRICES, beside the binary, ./data. */
static ah_prices_t *load_catalogue(const ah_config_t *cfg)
{
    return ah_prices_open_default(cfg ? cfg->prices_path : NULL, NULL);
}

/* YYYY-MM-DD as 00:00 UTC that day (the catalogue's start_date rule). */
static int parse_day(const char *s, time_t *out)
{
    int y, m, d;
    char extra;
    if (sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || y < 1970 || m < 1 || m > 12 ||
        d < 1 || d > 31)
        return -1;
    /* days_from_civil (Howard Hinnant), as the catalogue loader does */
    y -= m <= 2;
    int era = y / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = (long)era * 146097 + doe - 719468;
    *out = (time_t)(days * PRICES_SECONDS_PER_DAY);
    return 0;
}

static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *h = hay; *h; h++)
        if (strncasecmp(h, needle, n) == 0)
            return 1;
    return n == 0;
}

/* A rate as JSON: its base (null when not in the catalogue). */
static json_t *rate_json(const ah_rate_t *r)
{
    return r->base >= 0 ? json_real(r->base) : json_null();
}

/* Tiers of the four rates: {"input":[{"start":N,"mtok":X}], ...}, only the
 * tiered ones. */
static json_t *tiers_json(const ah_price_t *p)
{
    const ah_rate_t *rates[] = {&p->input, &p->output, &p->cache_read, &p->cache_write};
    const char *names[] = {"input", "output", "cache_read", "cache_write"};
    json_t *o = json_object();
    for (int k = 0; k < 4; k++) {
        if (rates[k]->ntiers <= 0)
            continue;
        json_t *a = json_array();
        for (int t = 0; t < rates[k]->ntiers && t < AH_PRICE_MAX_TIERS; t++)
            json_array_append_new(a, json_pack("{s:I, s:f}", "start",
                                               (json_int_t)rates[k]->tiers[t].start, "mtok",
                                               rates[k]->tiers[t].mtok));
        json_object_set_new(o, names[k], a);
    }
    return o;
}

static json_t *price_json(const ah_price_t *p)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:I, s:I, s:o}", "input_mtok", rate_json(&p->input),
                     "output_mtok", rate_json(&p->output), "cache_read_mtok",
                     rate_json(&p->cache_read), "cache_write_mtok", rate_json(&p->cache_write),
                     "context_window", (json_int_t)p->context_window, "max_output_tokens",
                     (json_int_t)p->max_output_tokens, "tiers", tiers_json(p));
}

static void print_rate(const ah_rate_t *r)
{
    if (r->base >= 0)
        printf(" %10.4f", r->base);
    else
        printf(" %10s", "-");
}

/* Tiers as "input>200000:6 output>200000:22.5". */
static void print_tiers(const ah_price_t *p)
{
    const ah_rate_t *rates[] = {&p->input, &p->output, &p->cache_read, &p->cache_write};
    const char *names[] = {"input", "output", "cache_read", "cache_write"};
    for (int k = 0; k < 4; k++)
        for (int t = 0; t < rates[k]->ntiers && t < AH_PRICE_MAX_TIERS; t++)
            printf(" %s>%lld:%g", names[k], (long long)rates[k]->tiers[t].start,
                   rates[k]->tiers[t].mtok);
}

static void print_header(void)
{
    printf("%-14s %-40s %10s %10s %10s %10s  %s\n", "provider", "model", "input", "output",
           "cache_rd", "cache_wr", "tiers (USD per million tokens)");
}

static void print_row(const char *provider, const char *model, const ah_price_t *p)
{
    printf("%-14s %-40s", provider, model);
    print_rate(&p->input);
    print_rate(&p->output);
    print_rate(&p->cache_read);
    print_rate(&p->cache_write);
    printf(" ");
    print_tiers(p);
    printf("\n");
}

static int list(const opts_t *o, const ah_prices_t *cat, time_t at)
{
    json_t *models = json_array();
    int shown = 0;
    if (!o->json)
        print_header();
    for (int i = 0; i < ah_prices_count(cat); i++) {
        ah_price_t p;
        ah_price_match_t m;
        if (ah_prices_entry(cat, i, at, &p, &m))
            break;
        if (o->provider && strcasecmp(o->provider, m.provider) != 0)
            continue;
        char id[PRICES_ID_BYTES];
        snprintf(id, sizeof id, "%s/%s", m.provider, m.model);
        if (o->query && !contains_ci(id, o->query))
            continue;
        shown++;
        if (o->json) {
            json_t *e = price_json(&p);
            json_object_set_new(e, "provider", json_string(m.provider));
            json_object_set_new(e, "model", json_string(m.model));
            json_array_append_new(models, e);
        } else {
            print_row(m.provider, m.model, &p);
        }
    }
    if (o->json) {
        json_t *out = json_pack("{s:I, s:I, s:o}", "at", (json_int_t)at, "count", (json_int_t)shown,
                                "models", models);
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        printf("%s\n", s);
        free(s);
        json_decref(out);
    } else {
        json_decref(models);
        printf("%d of %d models\n", shown, ah_prices_count(cat));
    }
    return shown ? 0 : 1;
}

/* --model: the price the gateway would charge for this name. */
static int one(const opts_t *o, const ah_config_t *cfg, const ah_prices_t *cat, time_t at)
{
    const ah_deployment_t *d = !o->provider && cfg ? ah_config_route(cfg, o->model, 0) : NULL;
    const char *provider = o->provider, *name = o->model, *source = "catalogue";
    ah_price_t p;
    ah_price_match_t m = {0};
    ah_err_t rc = AH_E_NOTFOUND;
    if (d && d->has_price) {
        p = d->price;
        source = "config";
        rc = AH_E_OK;
    } else {
        if (d) {
            provider = ah_catalogue_provider(d);
            name = strcmp(d->model, "*") == 0 ? o->model : d->model;
        }
        if (cat)
            rc = ah_prices_find_match(cat, provider, name, at, &p, &m);
    }
    if (rc) {
        fprintf(stderr, "ahorro prices: no price for '%s'%s%s%s\n", o->model,
                provider ? " (provider " : "", provider ? provider : "", provider ? ")" : "");
        return 1;
    }
    if (o->json) {
        json_t *out = price_json(&p);
        json_object_set_new(out, "query", json_string(o->model));
        json_object_set_new(out, "source", json_string(source));
        json_object_set_new(out, "deployment", d ? json_string(d->alias) : json_null());
        json_object_set_new(out, "provider", m.provider ? json_string(m.provider) : json_null());
        json_object_set_new(out, "model", m.model ? json_string(m.model) : json_null());
        json_object_set_new(out, "at", json_integer((json_int_t)at));
        char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        printf("%s\n", s);
        free(s);
        json_decref(out);
    } else {
        if (d)
            printf("%s: deployment %s/%s, priced by the %s\n", o->model, d->provider_name, d->model,
                   source);
        print_header();
        print_row(m.provider ? m.provider : "(config)", m.model ? m.model : o->model, &p);
    }
    return 0;
}

int ah_cli_prices(int argc, char **argv, const ah_config_t *cfg)
{
    opts_t o = {0};
    for (int i = 1; i < argc; i++) {
        const char **val = NULL;
        if (strcmp(argv[i], "--provider") == 0)
            val = &o.provider;
        else if (strcmp(argv[i], "--model") == 0)
            val = &o.model;
        else if (strcmp(argv[i], "--at") == 0)
            val = &o.at;
        else if (strcmp(argv[i], "--json") == 0)
            o.json = 1;
        else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage();
            return 0;
        } else if (argv[i][0] == '-' || o.query) {
            usage();
            return 2;
        } else
            o.query = argv[i];
        if (val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ahorro prices: %s needs a value\n", argv[i]);
                return 2;
            }
            *val = argv[++i];
        }
    }
    time_t at = time(NULL);
    if (o.at && parse_day(o.at, &at)) {
        fprintf(stderr, "ahorro prices: --at must be YYYY-MM-DD\n");
        return 2;
    }
    ah_prices_t *cat = load_catalogue(cfg);
    int rc;
    if (!cat && !o.model) {
        fprintf(stderr, "ahorro prices: no catalogue found (data/prices.json; or set "
                        "AHORRO_PRICES or the config's ahorro.prices)\n");
        rc = 1;
    } else {
        rc = o.model ? one(&o, cfg, cat, at) : list(&o, cat, at);
    }
    ah_prices_free(cat);
    return rc;
}
