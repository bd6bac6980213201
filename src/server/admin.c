/* admin.c - /health, /metrics, /admin/keys, /admin/deployments, /admin/cache
 * and /admin/spend (the dashboard's own endpoints are in dashboard.c).
 *
 * /admin/... needs the master key; with no master key configured it is
 * served to loopback clients only (the same rule as keyless API calls). A
 * viewer key may GET the read endpoints (dashboard.h).
 * Errors are in OpenAI's format. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/embed_remote.h"
#include "cache/store.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/buf.h"
#include "core/limits.h"
#include "metrics/metrics.h"
#include "route/balance.h"
#include "server/dashboard.h"
#include "server/exchange.h"
#include "store/keys.h"
#include "store/ledger_read.h"
#include "store/spend.h"

static int admin_allowed(ah_worker_t *w, struct evhttp_request *req, const char *path)
{
    const char *master = w->gw->cfg->master_key;
    const char *tok = ah_token_of(req);
    if (master && tok && strlen(tok) == strlen(master) && strcmp(tok, master) == 0)
        return 1;
    /* A viewer key may read (server/dashboard.h), with or without a master key. */
    int viewer = ah_dashboard_viewer_admit(w, req, path, tok);
    if (viewer)
        return viewer > 0;
    if (master) {
        ah_reply_error(req, AH_API_OPENAI, 401, "authentication_error", "invalid_api_key",
                       "Admin endpoints need the master key");
        return 0;
    }
    const char *peer = ah_peer_of(req);
    if (strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0)
        return 1;
    ah_reply_error(req, AH_API_OPENAI, 401, "authentication_error", "invalid_api_key",
                   "No master key is configured: admin endpoints answer loopback clients only");
    return 0;
}

static json_t *body_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > 65536)
        return NULL;
    return json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
}

static void keys_create(ah_worker_t *w, struct evhttp_request *req)
{
    json_t *b = body_json(req);
    const char *owner = json_string_value(json_object_get(b, "owner"));
    json_t *tags = json_object_get(b, "tags");
    if (!owner || !*owner || strlen(owner) > AH_MAX_TAG_BYTES) {
        ah_reply_error(req, AH_API_OPENAI, 400, NULL, NULL,
                       "send a JSON object with a non-empty string 'owner' (and optional 'tags')");
        json_decref(b);
        return;
    }
    const char *k;
    json_t *v;
    int ok = !tags || json_is_object(tags);
    json_object_foreach(tags, k, v) ok &= json_is_string(v) && strlen(k) <= AH_MAX_TAG_BYTES &&
                                          json_string_length(v) <= AH_MAX_TAG_BYTES;
    if (!ok || json_object_size(tags) > AH_MAX_TAGS) {
        ah_reply_error(req, AH_API_OPENAI, 400, NULL, NULL,
                       "'tags' must be an object of at most 32 string values");
        json_decref(b);
        return;
    }
    json_t *role_j = json_object_get(b, "role");
    ah_key_role_t role = AH_KEY_ROLE_API;
    if (role_j && ah_key_role_parse(json_string_value(role_j), &role)) {
        ah_reply_error(req, AH_API_OPENAI, 400, "invalid_request_error", "invalid_parameter",
                       "'role' must be \"api\" (model calls, the default) or \"viewer\" "
                       "(reads the admin API and the dashboard)");
        json_decref(b);
        return;
    }
    char *key = NULL, *id = NULL;
    if (ah_keys_create(ah_worker_dbh(w), owner, tags, role, &key, &id)) {
        ah_reply_error(req, AH_API_OPENAI, 500, NULL, NULL, "cannot store the key");
    } else {
        json_t *out =
            json_pack("{s:s,s:s,s:s,s:o,s:s}", "id", id, "key", key, "owner", owner, "tags",
                      tags ? json_incref(tags) : json_object(), "role", ah_key_role_name(role));
        ah_reply_json(req, 201, out);
        json_decref(out);
    }
    ah_free(key);
    ah_free(id);
    json_decref(b);
}

/* The cache's counters in Prometheus text format. */
static void cache_metrics(ah_cache_t *c, ah_buf_t *out)
{
    ah_cache_stats_t st;
    ah_cache_stats(c, &st);
    ah_buf_printf(out,
                  "# HELP ahorro_cache_lookups_total Answer cache lookups by result.\n"
                  "# TYPE ahorro_cache_lookups_total counter\n"
                  "ahorro_cache_lookups_total{result=\"exact\"} %llu\n"
                  "ahorro_cache_lookups_total{result=\"semantic\"} %llu\n"
                  "ahorro_cache_lookups_total{result=\"miss\"} %llu\n"
                  "# HELP ahorro_cache_false_hits_total Hits reported wrong by feedback.\n"
                  "# TYPE ahorro_cache_false_hits_total counter\n"
                  "ahorro_cache_false_hits_total %llu\n"
                  "# HELP ahorro_cache_evictions_total Entries evicted for room or expired.\n"
                  "# TYPE ahorro_cache_evictions_total counter\n"
                  "ahorro_cache_evictions_total{reason=\"lru\"} %llu\n"
                  "ahorro_cache_evictions_total{reason=\"ttl\"} %llu\n"
                  "# HELP ahorro_cache_entries Answers in the cache.\n"
                  "# TYPE ahorro_cache_entries gauge\n"
                  "ahorro_cache_entries %llu\n"
                  "# HELP ahorro_cache_bytes Memory charged to the cache's entries.\n"
                  "# TYPE ahorro_cache_bytes gauge\n"
                  "ahorro_cache_bytes %llu\n",
                  (unsigned long long)st.hits_exact, (unsigned long long)st.hits_semantic,
                  (unsigned long long)st.misses, (unsigned long long)st.false_hits,
                  (unsigned long long)st.evictions, (unsigned long long)st.expirations,
                  (unsigned long long)st.entries, (unsigned long long)st.bytes);
}

/* Label value: JSON-free text without quotes or backslashes (config names). */
static void label(ah_buf_t *out, const char *s)
{
    for (; *s; s++)
        if (*s != '"' && *s != '\\' && *s != '\n')
            ah_buf_append(out, s, 1);
}

/* Every deployment's health in Prometheus text format. */
static void deployment_metrics(ah_worker_t *w, ah_buf_t *out)
{
    const ah_config_t *c = w->gw->cfg;
    static const char *const names[] = {"ahorro_deployment_inflight", "ahorro_deployment_cooling",
                                        "ahorro_deployment_latency_ewma_seconds",
                                        "ahorro_deployment_attempts_total"};
    static const char *const help[] = {
        "gauge Upstream attempts in flight.",
        "gauge 1 while the circuit breaker keeps the deployment out.",
        "gauge EWMA of successful attempts' latency (time to first token for streams).",
        "counter Upstream attempts by result (failed: counted toward the circuit breaker)."};
    for (int k = 0; k < 4; k++) {
        const char *sp = strchr(help[k], ' ');
        ah_buf_printf(out, "# HELP %s %s\n# TYPE %s %.*s\n", names[k], sp + 1, names[k],
                      (int)(sp - help[k]), help[k]);
        for (size_t i = 0; i < c->ndeps; i++) {
            ah_dep_health_t h;
            ah_balancer_health(w->gw->balancer, &c->deps[i], &h);
            for (int res = 0; res < (k == 3 ? 2 : 1); res++) {
                ah_buf_printf(out, "%s{deployment=\"", names[k]);
                label(out, c->deps[i].alias);
                ah_buf_printf(out, "\",model=\"");
                label(out, c->deps[i].model);
                ah_buf_printf(out, "\",id=\"%zu\"%s} ", i,
                              k == 3 ? (res ? ",result=\"failed\"" : ",result=\"ok\"") : "");
                if (k == 0)
                    ah_buf_printf(out, "%d\n", h.inflight);
                else if (k == 1)
                    ah_buf_printf(out, "%d\n", h.cooldown_left_s > 0);
                else if (k == 2)
                    ah_buf_printf(out, "%g\n", h.ewma_ms / 1000.0);
                else
                    ah_buf_printf(out, "%llu\n", (unsigned long long)(res ? h.failed : h.ok));
            }
        }
    }
}

/* GET /admin/deployments: each deployment, its settings (never its key) and
 * its health. */
static void deployments(ah_worker_t *w, struct evhttp_request *req)
{
    const ah_config_t *c = w->gw->cfg;
    json_t *list = json_array();
    for (size_t i = 0; i < c->ndeps; i++) {
        const ah_deployment_t *d = &c->deps[i];
        ah_dep_health_t h;
        ah_balancer_health(w->gw->balancer, d, &h);
        json_array_append_new(
            list, json_pack("{s:I,s:s,s:s,s:s,s:s,s:f,s:I,s:I,s:i,s:i,s:b,s:f,s:f,s:I,s:I}", "id",
                            (json_int_t)i, "model_name", d->alias, "provider", d->provider_name,
                            "model", d->model, "api_base", d->api_base, "weight", d->weight, "rpm",
                            (json_int_t)d->rpm, "tpm", (json_int_t)d->tpm, "inflight", h.inflight,
                            "consecutive_failures", h.fails, "cooling", h.cooldown_left_s > 0,
                            "cooldown_left_s", h.cooldown_left_s, "latency_ewma_ms", h.ewma_ms,
                            "ok", (json_int_t)h.ok, "failed", (json_int_t)h.failed));
    }
    static const char *const strategies[] = {"weighted", "least-latency", "least-busy",
                                             "lowest-cost"};
    json_t *b = json_pack("{s:s,s:s,s:o}", "object", "list", "strategy",
                          strategies[c->routing.strategy], "data", list);
    ah_reply_json(req, 200, b);
    json_decref(b);
}

/* GET /admin/cache: counters and entries per tenant and route. */
static void cache_stats(ah_worker_t *w, struct evhttp_request *req)
{
    ah_cache_stats_t st = {0};
    if (w->gw->cache)
        ah_cache_stats(w->gw->cache, &st);
    uint64_t lookups = st.hits_exact + st.hits_semantic + st.misses;
    json_t *b = json_pack(
        "{s:b,s:b,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:o}", "enabled",
        w->gw->cache != NULL, "semantic", w->gw->embedder != NULL || w->gw->remote_embed != NULL,
        "entries", (json_int_t)st.entries, "bytes", (json_int_t)st.bytes, "hits_exact",
        (json_int_t)st.hits_exact, "hits_semantic", (json_int_t)st.hits_semantic, "misses",
        (json_int_t)st.misses, "stores", (json_int_t)st.stores, "evictions",
        (json_int_t)st.evictions, "expirations", (json_int_t)st.expirations, "false_hits",
        (json_int_t)st.false_hits, "purged", (json_int_t)st.purged, "hit_rate",
        lookups ? (double)(st.hits_exact + st.hits_semantic) / (double)lookups : 0.0, "by_route",
        w->gw->cache ? ah_cache_breakdown(w->gw->cache) : json_array());
    if (w->gw->remote_embed) {
        unsigned long calls, texts;
        ah_embed_remote_stats(w->gw->remote_embed, &calls, &texts);
        json_object_set_new(b, "embedder_calls", json_integer((json_int_t)calls));
        json_object_set_new(b, "embedder_texts", json_integer((json_int_t)texts));
    }
    ah_reply_json(req, 200, b);
    json_decref(b);
}

/* DELETE /admin/cache?tenant=&namespace=&model=&older_than=SECONDS (or POST
 * /admin/cache/purge with the same fields in a JSON body). */
static void cache_purge(ah_worker_t *w, struct evhttp_request *req, int from_body)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    json_t *b = NULL;
    const char *tenant, *ns, *model, *older;
    char num[32] = "";
    if (from_body) {
        b = body_json(req);
        if (!json_is_object(b)) {
            json_decref(b);
            b = json_object();
        }
        tenant = json_string_value(json_object_get(b, "tenant"));
        ns = json_string_value(json_object_get(b, "namespace"));
        model = json_string_value(json_object_get(b, "model"));
        json_t *o = json_object_get(b, "older_than");
        if (json_is_number(o))
            snprintf(num, sizeof num, "%.0f", json_number_value(o));
        older = num[0] ? num : NULL;
    } else {
        const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        if (query)
            evhttp_parse_query_str(query, &q);
        tenant = evhttp_find_header(&q, "tenant");
        ns = evhttp_find_header(&q, "namespace");
        model = evhttp_find_header(&q, "model");
        older = evhttp_find_header(&q, "older_than");
    }
    int64_t before = 0;
    if (older) {
        char *end;
        long long s = strtoll(older, &end, 10);
        if (*end || s < 0) {
            ah_reply_error(req, AH_API_OPENAI, 400, NULL, NULL,
                           "older_than must be a number of seconds");
            goto out;
        }
        before = ah_wall_ms() - s * 1000;
    }
    size_t n = w->gw->cache ? ah_cache_purge(w->gw->cache, tenant, ns, model, before) : 0;
    json_t *o = json_pack("{s:I}", "purged", (json_int_t)n);
    ah_reply_json(req, 200, o);
    json_decref(o);
out:
    evhttp_clear_headers(&q);
    json_decref(b);
}

/* GET /admin/spend?group_by=feature,model&since=30d&until=...&limit=&top=
 * &forecast=1&period=month|week: the ledger grouped (src/store/spend.c, the
 * queries of `ahorro report`). Runs on this event loop over the worker's
 * read connection, so it is bounded: at most AH_SPEND_MAX_GROUPS groups and
 * ADMIN_SPEND_MAX_MS of query time (past it, 503: narrow the range). */
#define ADMIN_SPEND_MAX_MS 2000
static void spend(ah_worker_t *w, struct evhttp_request *req)
{
    struct evkeyvalq q;
    TAILQ_INIT(&q);
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (query && evhttp_parse_query_str(query, &q) != 0) {
        ah_reply_error(req, AH_API_OPENAI, 400, "invalid_request_error", "invalid_parameter",
                       "malformed query string");
        return;
    }
    const char *by = evhttp_find_header(&q, "group_by"), *since = evhttp_find_header(&q, "since");
    const char *until = evhttp_find_header(&q, "until"), *fc = evhttp_find_header(&q, "forecast");
    const char *period = evhttp_find_header(&q, "period");
    const char *limit = evhttp_find_header(&q, "limit"), *top = evhttp_find_header(&q, "top");
    ah_spend_query_t sq;
    ah_spend_query_init(&sq);
    sq.max_ms = ADMIN_SPEND_MAX_MS;
    char err[512] = "";
    int64_t now = ah_wall_ms();
    long v;
    char *end;
    json_t *res = NULL, *f = NULL;
    if (ah_spend_parse_dims(&sq, by ? by : "model", err, sizeof err))
        goto bad;
    if (ah_spend_parse_time(since ? since : "30d", now, &sq.since_ms) ||
        (until && ah_spend_parse_time(until, now, &sq.until_ms))) {
        snprintf(err, sizeof err,
                 "since and until take 30d, 12h, 90m (ago), YYYY-MM-DD or "
                 "YYYY-MM-DDTHH:MM[:SS]Z (UTC)");
        goto bad;
    }
    if (sq.until_ms && sq.since_ms >= sq.until_ms) {
        snprintf(err, sizeof err, "since must be before until");
        goto bad;
    }
    if (limit) {
        v = strtol(limit, &end, 10);
        if (end == limit || *end || v < 1 || v > AH_SPEND_MAX_GROUPS) {
            snprintf(err, sizeof err, "limit must be 1 to %d", AH_SPEND_MAX_GROUPS);
            goto bad;
        }
        sq.limit = (int)v;
    }
    if (top) {
        v = strtol(top, &end, 10);
        if (end == top || *end || v < 0 || v > AH_SPEND_MAX_TOP) {
            snprintf(err, sizeof err, "top must be 0 to %d", AH_SPEND_MAX_TOP);
            goto bad;
        }
        sq.top = (int)v;
    }
    if ((fc && strcmp(fc, "0") && strcmp(fc, "1") && strcmp(fc, "true") && strcmp(fc, "false")) ||
        (period && strcmp(period, "month") && strcmp(period, "week"))) {
        snprintf(err, sizeof err, "forecast must be 0 or 1, period month or week");
        goto bad;
    }
    sq.period =
        period && strcmp(period, "week") == 0 ? AH_SPEND_PERIOD_WEEK : AH_SPEND_PERIOD_MONTH;
    int want_forecast = fc && (strcmp(fc, "1") == 0 || strcmp(fc, "true") == 0);
    /* With a PostgreSQL ledger, the range's rows are mirrored first (on this
     * loop: an admin query, bounded by AH_LEDGER_MIRROR_MAX_ROWS). */
    sqlite3 *db = w->db, *mirror = NULL;
    ah_err_t rc = AH_E_OK;
    if (w->gw->cfg->ledger.url) {
        int64_t from = sq.since_ms;
        if (want_forecast) {
            int64_t back =
                (sq.until_ms ? sq.until_ms : now) - (int64_t)(sq.history_days + 31) * 86400000LL;
            from = back < from ? back : from;
        }
        if (!(rc = ah_ledger_read_open(w->gw->cfg, from, want_forecast ? 0 : sq.until_ms, &mirror,
                                       err, sizeof err)))
            db = mirror;
    }
    if (!rc)
        rc = ah_spend_run(db, &sq, &res, err, sizeof err);
    if (!rc && want_forecast) {
        ah_spend_query_t fq = sq;
        fq.since_ms = 0; /* a forecast reads its own history (since: the report's range) */
        if (!(rc =
                  ah_spend_forecast(db, &fq, sq.until_ms ? sq.until_ms : now, &f, err, sizeof err)))
            json_object_set_new(res, "forecast", f);
    }
    sqlite3_close(mirror);
    if (rc) {
        ah_reply_error(req, AH_API_OPENAI, rc == AH_E_TIMEOUT ? 503 : 500, NULL, NULL, err);
        goto out;
    }
    ah_reply_json(req, 200, res);
    goto out;
bad:
    ah_reply_error(req, AH_API_OPENAI, 400, "invalid_request_error", "invalid_parameter", err);
out:
    json_decref(res);
    evhttp_clear_headers(&q);
}

void ah_admin_handle(ah_worker_t *w, struct evhttp_request *req, const char *path)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    if (strcmp(path, "/health") == 0) {
        /* 200 even when degraded: the gateway serves as configured. */
        json_t *b = ah_metrics_health(w->gw->ledger);
        ah_reply_json(req, 200, b);
        json_decref(b);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        ah_buf_t out;
        ah_buf_init(&out, AH_METRICS_MAX_TEXT);
        ah_metrics_render(w->gw->cfg, &out);
        ah_metrics_render_budgets(w->gw->cfg, w->gw->guard, &out);
        ah_metrics_render_ledger(w->gw->ledger, &out);
        ah_metrics_render_redis(&out);
        if (w->gw->balancer)
            deployment_metrics(w, &out);
        if (w->gw->cache)
            cache_metrics(w->gw->cache, &out);
        struct evbuffer *b = evbuffer_new();
        evbuffer_add(b, out.data, out.len);
        ah_buf_free(&out);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4");
        evhttp_send_reply(req, 200, NULL, b);
        evbuffer_free(b);
        return;
    }
    if (!admin_allowed(w, req, path) || ah_dashboard_admin(w, req, path))
        return;
    if (strcmp(path, "/admin/keys") == 0 && m == EVHTTP_REQ_POST) {
        keys_create(w, req);
    } else if (strcmp(path, "/admin/keys") == 0 && m == EVHTTP_REQ_GET) {
        json_t *list = NULL;
        if (ah_keys_list(ah_worker_dbh(w), &list)) {
            ah_reply_error(req, AH_API_OPENAI, 500, NULL, NULL, "cannot read keys");
            return;
        }
        json_t *b = json_pack("{s:s,s:o}", "object", "list", "data", list);
        ah_reply_json(req, 200, b);
        json_decref(b);
    } else if (strncmp(path, "/admin/keys/", 12) == 0 && m == EVHTTP_REQ_DELETE) {
        ah_err_t rc = ah_keys_revoke(ah_worker_dbh(w), path + 12);
        if (rc == AH_E_NOTFOUND) {
            ah_reply_error(req, AH_API_OPENAI, 404, NULL, NULL, "no such live key");
        } else if (rc) {
            ah_reply_error(req, AH_API_OPENAI, 500, NULL, NULL, "cannot revoke the key");
        } else {
            json_t *b = json_pack("{s:s,s:b}", "id", path + 12, "revoked", 1);
            ah_reply_json(req, 200, b);
            json_decref(b);
        }
    } else if (strcmp(path, "/admin/deployments") == 0 && m == EVHTTP_REQ_GET) {
        deployments(w, req);
    } else if (strcmp(path, "/admin/cache") == 0 && m == EVHTTP_REQ_GET) {
        cache_stats(w, req);
    } else if (strcmp(path, "/admin/cache") == 0 && m == EVHTTP_REQ_DELETE) {
        cache_purge(w, req, 0);
    } else if (strcmp(path, "/admin/cache/purge") == 0 && m == EVHTTP_REQ_POST) {
        cache_purge(w, req, 1);
    } else if (strcmp(path, "/admin/spend") == 0 && m == EVHTTP_REQ_GET) {
        spend(w, req);
    } else {
        ah_reply_error(req, AH_API_OPENAI, 404, NULL, NULL, "no such admin endpoint");
    }
}
