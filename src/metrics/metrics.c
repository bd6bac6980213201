/* metrics.c - fixed-size series table and Prometheus text rendering. */
#include "metrics/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/limits.h"

static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                 1,     2.5,  5,     10,   30,  60,   120};
#define NBUCKETS (sizeof buckets / sizeof buckets[0])

typedef struct series {
    char model[AH_MAX_MODEL_NAME_BUF];
    char provider[32];
    int status;
    uint64_t requests;
    uint64_t tokens_in, tokens_out, tokens_cached, tokens_reasoning;
    double cost;
    uint64_t lat_buckets[NBUCKETS];
    double lat_sum;
    uint64_t ttft_buckets[NBUCKETS];
    double ttft_sum;
    uint64_t ttft_count;
} series_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static series_t table[AH_METRICS_MAX_SERIES];
static int nseries;
static atomic_long inflight;

void ah_metrics_inflight(int delta)
{
    atomic_fetch_add(&inflight, delta);
}

static series_t *find(const char *model, const char *provider, int status)
{
    for (int i = 0; i < nseries; i++)
        if (table[i].status == status && strcmp(table[i].model, model) == 0 &&
            strcmp(table[i].provider, provider) == 0)
            return &table[i];
    if (nseries == AH_METRICS_MAX_SERIES)
        return &table[AH_METRICS_MAX_SERIES - 1]; /* the overflow series */
    series_t *s = &table[nseries++];
    if (nseries == AH_METRICS_MAX_SERIES) {
        /* The last slot counts everything past the limit. */
        model = provider = "other";
        status = 0;
    }
    snprintf(s->model, sizeof s->model, "%s", model);
    snprintf(s->provider, sizeof s->provider, "%s", provider);
    s->status = status;
    return s;
}

static void observe(uint64_t *b, double v)
{
    for (size_t i = 0; i < NBUCKETS; i++)
        if (v <= buckets[i])
            b[i]++;
}

void ah_metrics_observe(const char *model, const char *provider, int status, const ah_usage_t *u,
                        double cost, double latency_s, double ttft_s)
{
    pthread_mutex_lock(&mu);
    series_t *s = find(model ? model : "", provider ? provider : "", status);
    s->requests++;
    s->tokens_in += (uint64_t)u->input_tokens;
    s->tokens_out += (uint64_t)u->output_tokens;
    s->tokens_cached += (uint64_t)u->cache_read_tokens;
    s->tokens_reasoning += (uint64_t)u->reasoning_tokens;
    if (cost > 0)
        s->cost += cost;
    observe(s->lat_buckets, latency_s);
    s->lat_sum += latency_s;
    if (ttft_s >= 0) {
        observe(s->ttft_buckets, ttft_s);
        s->ttft_sum += ttft_s;
        s->ttft_count++;
    }
    pthread_mutex_unlock(&mu);
}

/* Label values are escaped per the exposition format. */
static void label(ah_buf_t *o, const char *name, const char *v)
{
    ah_buf_printf(o, "%s=\"", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            ah_buf_printf(o, "\\%c", *v);
        else if (*v == '\n')
            ah_buf_appends(o, "\\n");
        else
            ah_buf_append(o, v, 1);
    }
    ah_buf_appends(o, "\"");
}

static void labels(ah_buf_t *o, const series_t *s, int with_status)
{
    label(o, "model", s->model);
    ah_buf_appends(o, ",");
    label(o, "provider", s->provider);
    if (with_status)
        ah_buf_printf(o, ",status=\"%d\"", s->status);
}

static void histogram(ah_buf_t *o, const char *name, const series_t *s, const uint64_t *b,
                      double sum, uint64_t count)
{
    for (size_t i = 0; i < NBUCKETS; i++) {
        ah_buf_printf(o, "%s_bucket{", name);
        labels(o, s, 1);
        ah_buf_printf(o, ",le=\"%g\"} %llu\n", buckets[i], (unsigned long long)b[i]);
    }
    ah_buf_printf(o, "%s_bucket{", name);
    labels(o, s, 1);
    ah_buf_printf(o, ",le=\"+Inf\"} %llu\n%s_sum{", (unsigned long long)count, name);
    labels(o, s, 1);
    ah_buf_printf(o, "} %.6f\n%s_count{", sum, name);
    labels(o, s, 1);
    ah_buf_printf(o, "} %llu\n", (unsigned long long)count);
}

void ah_metrics_render(ah_buf_t *o)
{
    pthread_mutex_lock(&mu);
    ah_buf_appends(o, "# HELP ahorro_requests_total Requests answered, by model, provider and "
                      "HTTP status.\n# TYPE ahorro_requests_total counter\n");
    for (int i = 0; i < nseries; i++) {
        ah_buf_appends(o, "ahorro_requests_total{");
        labels(o, &table[i], 1);
        ah_buf_printf(o, "} %llu\n", (unsigned long long)table[i].requests);
    }
    ah_buf_appends(o, "# HELP ahorro_tokens_total Tokens, by model and type (input, output, "
                      "cached, reasoning).\n# TYPE ahorro_tokens_total counter\n");
    static const char *const types[] = {"input", "output", "cached", "reasoning"};
    for (int i = 0; i < nseries; i++) {
        uint64_t v[4] = {table[i].tokens_in, table[i].tokens_out, table[i].tokens_cached,
                         table[i].tokens_reasoning};
        for (int t = 0; t < 4; t++) {
            ah_buf_appends(o, "ahorro_tokens_total{");
            labels(o, &table[i], 1);
            ah_buf_printf(o, ",type=\"%s\"} %llu\n", types[t], (unsigned long long)v[t]);
        }
    }
    ah_buf_appends(o, "# HELP ahorro_cost_usd_total Spend in US dollars, by model.\n"
                      "# TYPE ahorro_cost_usd_total counter\n");
    for (int i = 0; i < nseries; i++) {
        ah_buf_appends(o, "ahorro_cost_usd_total{");
        labels(o, &table[i], 1);
        ah_buf_printf(o, "} %.9f\n", table[i].cost);
    }
    ah_buf_appends(o, "# HELP ahorro_request_duration_seconds Time from request to the last "
                      "byte of the answer.\n# TYPE ahorro_request_duration_seconds histogram\n");
    for (int i = 0; i < nseries; i++)
        histogram(o, "ahorro_request_duration_seconds", &table[i], table[i].lat_buckets,
                  table[i].lat_sum, table[i].requests);
    ah_buf_appends(o, "# HELP ahorro_time_to_first_token_seconds Time from request to the first "
                      "generated token (streams).\n"
                      "# TYPE ahorro_time_to_first_token_seconds histogram\n");
    for (int i = 0; i < nseries; i++)
        if (table[i].ttft_count)
            histogram(o, "ahorro_time_to_first_token_seconds", &table[i], table[i].ttft_buckets,
                      table[i].ttft_sum, table[i].ttft_count);
    pthread_mutex_unlock(&mu);
    ah_buf_printf(o,
                  "# HELP ahorro_requests_in_flight Requests being served.\n"
                  "# TYPE ahorro_requests_in_flight gauge\nahorro_requests_in_flight %ld\n",
                  (long)atomic_load(&inflight));
}
