/* otlp.c - OTLP/HTTP JSON trace export (see otlp.h). */
#include "observe/otlp.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "observe/trace.h"

#define OTLP_FLUSH_MS 1000
#define OTLP_WARN_EVERY_US (60 * 1000000LL)
#define OTLP_URL_MAX 2048

enum { KIND_INTERNAL = 1, KIND_SERVER = 2, KIND_CLIENT = 3 };
enum { STATUS_UNSET = 0, STATUS_ERROR = 2 };

struct ah_otlp {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    json_t *queue[AH_OTLP_QUEUE]; /* each a JSON array of one trace's spans */
    size_t head, count;
    int stopping;
    pthread_t thread;
    char url[OTLP_URL_MAX];
    char *service;
    struct curl_slist *headers;
    long timeout_ms;
    uint64_t exported, dropped;
    int64_t warned_us;
};

/* ---- spans from a ledger row ------------------------------------------ */

static void attr_str(json_t *a, const char *k, const char *v)
{
    if (v)
        json_array_append_new(a, json_pack("{s:s,s:{s:s}}", "key", k, "value", "stringValue", v));
}

static void attr_int(json_t *a, const char *k, int64_t v)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)v); /* OTLP JSON: int64 as a string */
    json_array_append_new(a, json_pack("{s:s,s:{s:s}}", "key", k, "value", "intValue", s));
}

static void attr_double(json_t *a, const char *k, double v)
{
    json_array_append_new(a, json_pack("{s:s,s:{s:f}}", "key", k, "value", "doubleValue", v));
}

/* A span id for span i of this trace: unique within it, never zero. */
static void span_id(const ah_trace_t *t, const char *request_id, int i, char out[17])
{
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, t->trace_id, sizeof t->trace_id);
    h = ah_fnv1a(h, request_id, strlen(request_id));
    h = ah_fnv1a(h, &i, sizeof i);
    if (!h)
        h = 1;
    uint8_t b[8];
    for (int k = 0; k < 8; k++)
        b[k] = (uint8_t)(h >> (56 - 8 * k));
    ah_trace_hex(b, 8, out);
}

static json_t *nanos(int64_t ns)
{
    char s[24];
    snprintf(s, sizeof s, "%lld", (long long)ns);
    return json_string(s);
}

static json_t *span(const char *trace_hex, const char *id, const char *parent, const char *name,
                    int kind, int64_t start_ns, int64_t end_ns, json_t *attrs)
{
    json_t *s = json_pack("{s:s,s:s,s:s,s:i,s:o,s:o,s:o}", "traceId", trace_hex, "spanId", id,
                          "name", name, "kind", kind, "startTimeUnixNano", nanos(start_ns),
                          "endTimeUnixNano", nanos(end_ns > start_ns ? end_ns : start_ns),
                          "attributes", attrs ? attrs : json_array());
    if (parent)
        json_object_set_new(s, "parentSpanId", json_string(parent));
    return s;
}

/* One trace's spans, or NULL when the row carries none. */
static json_t *trace_spans(const ah_ledger_row_t *r)
{
    const ah_trace_t *t = r->trace;
    if (!t || !t->on || !r->request_id)
        return NULL;
    char trace_hex[33], root[17], parent[17];
    ah_trace_hex(t->trace_id, 16, trace_hex);
    span_id(t, r->request_id, -1, root);
    if (t->has_parent)
        ah_trace_hex(t->parent_id, 8, parent);
    int64_t t0 = t->wall_ns;
    json_t *spans = json_array();

    const char *op = r->endpoint && strcmp(r->endpoint, "embeddings") == 0 ? "embeddings" : "chat";
    char name[160];
    snprintf(name, sizeof name, "%s %s", op, r->requested_model ? r->requested_model : "");
    json_t *a = json_array();
    attr_str(a, "gen_ai.operation.name", op);
    attr_str(a, "gen_ai.provider.name", r->provider);
    attr_str(a, "gen_ai.request.model", r->requested_model);
    attr_str(a, "gen_ai.response.model", r->served_model);
    attr_int(a, "gen_ai.usage.input_tokens", r->prompt_tokens);
    attr_int(a, "gen_ai.usage.output_tokens", r->completion_tokens);
    attr_int(a, "http.response.status_code", r->status);
    attr_str(a, "ahorro.request_id", r->request_id);
    attr_str(a, "ahorro.key_id", r->key_id);
    attr_str(a, "ahorro.deployment", r->deployment);
    attr_str(a, "ahorro.cache", r->cache);
    attr_str(a, "ahorro.route_reason", r->route_reason);
    attr_str(a, "ahorro.shape", r->shape);
    attr_int(a, "ahorro.attempts", r->attempts);
    if (r->cost_usd >= 0)
        attr_double(a, "ahorro.cost_usd", r->cost_usd);
    json_t *rs = span(trace_hex, root, t->has_parent ? parent : NULL, name, KIND_SERVER, t0,
                      t0 + (int64_t)(r->latency_ms * 1e6), a);
    if (r->status >= 500) /* OpenTelemetry: a server span errs on 5xx only */
        json_object_set_new(
            rs, "status",
            json_pack("{s:i,s:s}", "code", STATUS_ERROR, "message", r->error ? r->error : ""));
    json_array_append_new(spans, rs);

    for (int i = 0; i < AH_SPAN_N; i++) {
        const ah_span_time_t *st = &t->span[i];
        if (!st->start_us)
            continue;
        char id[17];
        span_id(t, r->request_id, i, id);
        json_t *ca = NULL;
        int kind = KIND_INTERNAL;
        if (i == AH_SPAN_UPSTREAM) {
            kind = KIND_CLIENT;
            ca = json_array();
            attr_str(ca, "gen_ai.operation.name", op);
            attr_str(ca, "gen_ai.provider.name", r->provider);
            attr_str(ca, "gen_ai.response.model", r->served_model);
            attr_str(ca, "ahorro.deployment", r->deployment);
            if (r->ttft_ms >= 0)
                attr_double(ca, "ahorro.ttft_ms", r->ttft_ms);
        }
        int64_t end_us = st->end_us ? st->end_us : st->start_us;
        json_array_append_new(spans, span(trace_hex, id, root, ah_span_name((ah_span_id_t)i), kind,
                                          t0 + (st->start_us - t->t0_us) * 1000,
                                          t0 + (end_us - t->t0_us) * 1000, ca));
    }
    return spans;
}

void ah_otlp_rows(void *ctx, ah_ledger_row_t *const *rows, int n)
{
    ah_otlp_t *e = ctx;
    for (int i = 0; i < n; i++) {
        json_t *spans = trace_spans(rows[i]);
        if (!spans)
            continue;
        pthread_mutex_lock(&e->mu);
        if (e->count == AH_OTLP_QUEUE) {
            e->dropped++;
            json_decref(spans);
        } else {
            e->queue[(e->head + e->count) % AH_OTLP_QUEUE] = spans;
            if (++e->count >= AH_OTLP_BATCH)
                pthread_cond_signal(&e->wake);
        }
        pthread_mutex_unlock(&e->mu);
    }
}

/* ---- the exporter thread ------------------------------------------------ */

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* POST one batch; the number of traces that did not make it. */
static size_t post(ah_otlp_t *e, CURL *c, json_t **batch, size_t n)
{
    json_t *spans = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_extend(spans, batch[i]);
    json_t *body =
        json_pack("{s:[{s:{s:[{s:s,s:{s:s}}]},s:[{s:{s:s},s:o}]}]}", "resourceSpans", "resource",
                  "attributes", "key", "service.name", "value", "stringValue", e->service,
                  "scopeSpans", "scope", "name", "ahorro", "spans", spans);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return n;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, e->url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, e->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    free(text);
    if (rc == CURLE_OK && status >= 200 && status < 300)
        return 0;
    int64_t now = ah_now_us();
    if (!e->warned_us || now - e->warned_us > OTLP_WARN_EVERY_US) {
        e->warned_us = now;
        ah_warn("tracing: POST %s failed (%s, HTTP %ld): %zu traces dropped", e->url,
                rc == CURLE_OK ? "refused" : curl_easy_strerror(rc), status, n);
    }
    return n;
}

static void *exporter_main(void *arg)
{
    ah_otlp_t *e = arg;
    CURL *c = curl_easy_init();
    json_t *batch[AH_OTLP_BATCH];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        if (e->count < AH_OTLP_BATCH && !e->stopping) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += OTLP_FLUSH_MS / 1000;
            pthread_cond_timedwait(&e->wake, &e->mu, &until);
        }
        size_t n = 0;
        while (e->count > 0 && n < AH_OTLP_BATCH) {
            batch[n++] = e->queue[e->head];
            e->head = (e->head + 1) % AH_OTLP_QUEUE;
            e->count--;
        }
        int stop = e->stopping && e->count == 0;
        pthread_mutex_unlock(&e->mu);
        size_t lost = n && c ? post(e, c, batch, n) : n;
        for (size_t i = 0; i < n; i++)
            json_decref(batch[i]);
        pthread_mutex_lock(&e->mu);
        e->exported += n - lost;
        e->dropped += lost;
        if (e->stopping && n && lost == n) {
            /* shutting down and the collector failed: do not make the exit
             * wait one timeout per batch still queued */
            while (e->count > 0) {
                json_decref(e->queue[e->head]);
                e->head = (e->head + 1) % AH_OTLP_QUEUE;
                e->count--;
                e->dropped++;
            }
            stop = 1;
        }
        pthread_mutex_unlock(&e->mu);
        if (stop)
            break;
    }
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

ah_err_t ah_otlp_start(const ah_otlp_options_t *o, ah_otlp_t **out)
{
    *out = NULL;
    if (!o->endpoint || !*o->endpoint)
        return AH_E_INVAL;
    size_t len = strlen(o->endpoint);
    while (len > 0 && o->endpoint[len - 1] == '/')
        len--;
    const char *suffix = "/v1/traces";
    int full = len >= strlen(suffix) &&
               strncmp(o->endpoint + len - strlen(suffix), suffix, strlen(suffix)) == 0;
    ah_otlp_t *e = ah_calloc(1, sizeof *e);
    if ((size_t)snprintf(e->url, sizeof e->url, "%.*s%s", (int)len, o->endpoint,
                         full ? "" : suffix) >= sizeof e->url) {
        ah_free(e);
        return AH_E_TOOBIG;
    }
    e->service = ah_strdup(o->service_name && *o->service_name ? o->service_name : "ahorro");
    e->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    for (size_t i = 0; i < o->nheaders; i++)
        e->headers = curl_slist_append(e->headers, o->headers[i]);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->wake, NULL);
    if (pthread_create(&e->thread, NULL, exporter_main, e) != 0) {
        curl_slist_free_all(e->headers);
        ah_free(e->service);
        ah_free(e);
        return AH_E_IO;
    }
    *out = e;
    return AH_E_OK;
}

void ah_otlp_stats(ah_otlp_t *e, uint64_t *exported, uint64_t *dropped)
{
    pthread_mutex_lock(&e->mu);
    *exported = e->exported;
    *dropped = e->dropped;
    pthread_mutex_unlock(&e->mu);
}

void ah_otlp_stop(ah_otlp_t *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    ah_info("tracing: %llu traces exported, %llu dropped", (unsigned long long)e->exported,
            (unsigned long long)e->dropped);
    curl_slist_free_all(e->headers);
    ah_free(e->service);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->mu);
    ah_free(e);
}
