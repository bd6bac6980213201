/* record.c - stage 8: what the call cost, on the ledger and in the metrics.
 *
 * Usage comes from the provider (the gateway asks for it in streams). The
 * price comes from the deployment's override in the config, else from the
 * shipped catalogue by provider and served model. Every request reaches
 * this stage exactly once, whatever happened to it, so every request is
 * exactly one ledger row. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "metrics/metrics.h"
#include "pipeline/pipeline.h"
#include "route/balance.h"

/* The price of the deployment that serves alias: loaded at start (config
 * override, else the catalogue), or for a "*" model looked up now;
 * AH_E_NOTFOUND when unknown. */
static ah_err_t alias_price(ah_worker_t *w, const char *alias, time_t at, ah_price_t *p)
{
    const ah_deployment_t *d = ah_config_route(w->gw->cfg, alias, 0);
    if (!d)
        return AH_E_NOTFOUND;
    if (ah_balancer_dep_price(w->gw->balancer, d, p) == 0)
        return AH_E_OK;
    if (!w->gw->prices || strcmp(d->model, "*") != 0)
        return AH_E_NOTFOUND;
    return ah_prices_find(w->gw->prices, ah_catalogue_provider(d), alias, at, p);
}

void ah_request_price(ah_worker_t *w, ah_request_t *r)
{
    if (r->cost_known || !r->dep || !r->usage_known)
        return;
    ah_price_t p;
    if (r->dep->has_price) {
        p = r->dep->price;
    } else {
        const char *model = r->served_model ? r->served_model : r->upstream_model;
        if (!w->gw->prices || (ah_prices_find(w->gw->prices, ah_catalogue_provider(r->dep), model,
                                              (time_t)(r->wall_ms / 1000), &p) &&
                               ah_prices_find(w->gw->prices, ah_catalogue_provider(r->dep),
                                              r->upstream_model, (time_t)(r->wall_ms / 1000), &p)))
            return;
    }
    r->cost_usd = ah_price_cost(&p, &r->usage);
    r->cost_known = 1;
    /* what shaping saved: the removed prompt tokens at the input rate */
    if (r->shape_tokens_saved > 0 && p.input.base >= 0)
        r->shape_saved_usd = (double)r->shape_tokens_saved * p.input.base / 1e6;
    /* What the provider's prompt cache saved: reads below the input price,
     * less the premium of writes (base rates; tiers are not applied). */
    const ah_usage_t *u = &r->usage;
    if ((u->cache_read_tokens || u->cache_write_tokens) && p.input.base >= 0) {
        double in = p.input.base;
        double rd = p.cache_read.base >= 0 ? p.cache_read.base : in;
        double wr = p.cache_write.base >= 0 ? p.cache_write.base : in;
        r->prompt_cache_saved_usd =
            ((double)u->cache_read_tokens * (in - rd) - (double)u->cache_write_tokens * (wr - in)) /
            1e6;
    }
}

/* The columns every row of r shares: who, what was asked, where it went. */
static ah_ledger_row_t *row_new(ah_request_t *r)
{
    ah_ledger_row_t *row = ah_calloc(1, sizeof *row);
    row->ts_ms = r->wall_ms;
    row->key_id = ah_strdup(r->key_id);
    row->owner = ah_strdup(r->owner);
    row->user = ah_strdup(r->user);
    row->tags = r->tags && json_object_size(r->tags)
                    ? json_dumps(r->tags, JSON_COMPACT | JSON_SORT_KEYS)
                    : NULL;
    if (row->tags) { /* json_dumps memory is malloc'd; keep one allocator */
        char *t = ah_strdup(row->tags);
        free(row->tags);
        row->tags = t;
    }
    row->api = r->api == AH_API_ANTHROPIC ? "anthropic" : "openai";
    row->endpoint = r->op == AH_OP_EMBEDDINGS ? "embeddings" : "chat";
    row->stream = r->stream;
    row->requested_model = ah_strdup(r->model);
    row->served_model = ah_strdup(r->served_model ? r->served_model : r->upstream_model);
    row->provider = r->dep ? ah_strdup(r->dep->provider_name) : NULL;
    row->deployment = r->dep ? ah_strdup(r->dep->alias) : NULL;
    row->route_reason = ah_strdup(r->route_reason);
    row->shape = ah_strdup(r->shape_done);
    row->prefix_hash = r->prefix_hash[0] ? ah_strdup(r->prefix_hash) : NULL;
    row->prefix_tokens = r->prefix_tokens;
    return row;
}

void ah_stage_record_attempt(ah_worker_t *w, ah_request_t *r, int status, const char *error,
                             int64_t t_attempt_us)
{
    ah_ledger_row_t *row = row_new(r);
    size_t n = strlen(r->id) + 16;
    row->request_id = ah_malloc(n);
    snprintf(row->request_id, n, "%s-%d", r->id, r->attempts);
    row->attempt_of = ah_strdup(r->id);
    row->baseline_usd = -1;
    row->attempts = r->attempts;
    row->usage_source = "none";
    if (r->usage_known) {
        ah_request_price(w, r);
        row->usage_source = "provider";
        row->prompt_tokens = r->usage.input_tokens;
        row->completion_tokens = r->usage.output_tokens;
        row->cached_tokens = r->usage.cache_read_tokens;
        row->cache_write_tokens = r->usage.cache_write_tokens;
        row->reasoning_tokens = r->usage.reasoning_tokens;
        row->cost_usd = r->cost_known ? r->cost_usd : -1;
        if (r->cost_known)
            r->attempts_cost_usd += r->cost_usd; /* budgets count it too */
    }
    row->latency_ms = (double)(ah_now_us() - t_attempt_us) / 1000.0;
    row->ttft_ms = -1;
    row->status = status ? status : r->fail.status;
    row->error = ah_strdup(error);
    ah_metrics_observe(w->gw->cfg, row, r->tags, r->attempts);
    ah_ledger_append(w->gw->ledger, row);
}

/* What only the request log and the trace exporter read: the trace, with
 * the upstream call's times, and the prompt when prompt logging is on. */
static void observed(ah_worker_t *w, ah_request_t *r, ah_ledger_row_t *row)
{
    if (r->trace.on) {
        if (r->t_upstream_start_us)
            r->trace.span[AH_SPAN_UPSTREAM] = (ah_span_time_t){
                r->t_upstream_start_us, r->t_upstream_end_us ? r->t_upstream_end_us : r->t_end_us};
        row->trace = ah_malloc(sizeof *row->trace);
        *row->trace = r->trace;
    }
    if (w->gw->log_prompts && r->body) {
        json_t *m = json_object_get(r->body, "messages");
        char *s =
            json_dumps(m ? m : json_object_get(r->body, "input"), JSON_COMPACT | JSON_ENCODE_ANY);
        row->prompt = s ? ah_strdup(s) : NULL;
        free(s); /* jansson's allocation */
    }
}

void ah_stage_record(ah_worker_t *w, ah_request_t *r)
{
    if (!r->t_end_us)
        r->t_end_us = ah_now_us();
    ah_request_price(w, r);
    ah_stage_guard_settle(w, r);
    ah_ledger_row_t *row = row_new(r);
    row->request_id = ah_strdup(r->id);
    row->attempts = r->attempts > 0 ? r->attempts : 1;
    row->prompt_tokens = r->usage.input_tokens;
    row->completion_tokens = r->usage.output_tokens;
    row->cached_tokens = r->usage.cache_read_tokens;
    row->cache_write_tokens = r->usage.cache_write_tokens;
    row->reasoning_tokens = r->usage.reasoning_tokens;
    row->usage_source = r->cache_hit ? "cache" : r->usage_known ? "provider" : "none";
    row->cost_usd = r->cost_known ? r->cost_usd : (r->usage_known ? -1 : 0);
    row->latency_ms = (double)(r->t_end_us - r->t_start_us) / 1000.0;
    row->ttft_ms =
        r->t_first_token_us ? (double)(r->t_first_token_us - r->t_start_us) / 1000.0 : -1;
    row->overhead_us = r->overhead_us;
    row->status = r->status;
    row->error = r->fail.status ? ah_strdup(r->fail.message) : NULL;
    row->cache = r->cache_status;
    row->saved_usd = r->cache_hit ? r->saved_usd : 0;
    row->prompt_cache_saved_usd = r->prompt_cache_saved_usd;
    row->cache_similarity = r->cache_hit ? r->cache_similarity : 0;
    row->shape_tokens_saved = r->shape_tokens_saved;
    row->saved_shaping_usd = r->shape_saved_usd - r->summary_cost_usd;
    /* Savings by mechanism: a cache hit saved what the answer first cost;
     * routing saved the same usage's price on the baseline model less what
     * was paid (rejected cascade answers included; negative when a rule or
     * tier chose a dearer model). Same tokens on both: an approximation. */
    row->baseline_usd = -1;
    ah_price_t bp;
    if (r->cache_hit) {
        row->baseline_usd = r->saved_usd;
    } else if (r->baseline_alias && r->cost_known && r->dep &&
               strcmp(r->dep->alias, r->baseline_alias) == 0) {
        row->baseline_usd = r->cost_usd; /* served as asked: nothing saved, nothing lost */
        row->saved_routing_usd = -r->attempts_cost_usd;
    } else if (r->baseline_alias && r->usage_known && r->cost_known &&
               alias_price(w, r->baseline_alias, (time_t)(r->wall_ms / 1000), &bp) == AH_E_OK) {
        row->baseline_usd = ah_price_cost(&bp, &r->usage);
        row->saved_routing_usd = row->baseline_usd - r->cost_usd - r->attempts_cost_usd;
    }
    if (r->cache_hit || (r->cache_store && strcmp(r->cache_status, "stored") == 0)) {
        row->cache_key = ah_malloc(2 * AH_CACHE_KEY_BYTES + 1);
        for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
            snprintf(row->cache_key + 2 * i, 3, "%02x", r->cache_key[i]);
    }
    ah_metrics_observe(w->gw->cfg, row, r->tags, r->attempts);
    observed(w, r, row);
    ah_ledger_append(w->gw->ledger, row);
}
