/* cache.c - stage 5: answer caches, exact and semantic.
 *
 * Before the call: the request's key (answer.h) is looked up in the exact
 * cache (in this process, then, with the cache shared through Redis, in
 * Redis: asynchronously on an event loop, the request waiting with
 * r->cache_pending AH_CACHE_WAIT_PEERS until the exchange resumes it with
 * ah_stage_cache_fetched), then, when the route has the semantic cache on,
 * its last user turn is embedded and looked up among the answers of its
 * scope. A hit ends the request here (the exchange replays the answer,
 * streamed or not, in the client's format); a miss marks the request so
 * that its answer is kept once complete (ah_stage_cache_fill, after the
 * call).
 *
 * What may be cached is decided per route (ahorro.cache and its routes) and
 * per request: `Cache-Control: no-cache` (do not read), `no-store` (do not
 * keep), `max-age=N` (only answers younger than N seconds), and the body's
 * `cache` object, LiteLLM's {"no-cache", "no-store", "ttl", "s-maxage",
 * "namespace"}, which never goes upstream. Requests hotter than the route's
 * max_temperature bypass the cache: their answers are meant to vary.
 *
 * Tenancy: the key and the semantic scope both include the virtual key's
 * owner (or the key id when it has none) and the namespace, so no lookup can
 * reach another tenant's answer. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/answer.h"
#include "cache/embed_remote.h"
#include "cache/intent.h"
#include "cache/rerank.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "pipeline/pipeline.h"

typedef struct controls {
    int no_read, no_store;
    int64_t max_age_ms; /* < 0: any */
    int64_t ttl_ms;
    const char *ns;
} controls_t;

static int bad_cache(ah_request_t *r, const char *msg)
{
    return ah_request_fail(r, 400, "invalid_request_error", "invalid_cache", "cache", "%s", msg);
}

/* Cache-Control: no-cache, no-store, max-age=N (others ignored). */
static void header_controls(const char *h, controls_t *c)
{
    while (h && *h) {
        while (*h == ' ' || *h == ',')
            h++;
        size_t n = strcspn(h, ",");
        if (n >= 8 && strncasecmp(h, "no-cache", 8) == 0)
            c->no_read = 1;
        else if (n >= 8 && strncasecmp(h, "no-store", 8) == 0)
            c->no_store = 1;
        else if (n > 8 && strncasecmp(h, "max-age=", 8) == 0) {
            char *end;
            long v = strtol(h + 8, &end, 10);
            if (end != h + 8 && v >= 0)
                c->max_age_ms = (int64_t)v * 1000;
        }
        h += n;
    }
}

static int seconds(json_t *v, int64_t *out_ms)
{
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 365 * 86400.0)
        return -1;
    *out_ms = (int64_t)(json_number_value(v) * 1000);
    return 0;
}

/* The body's `cache` object (LiteLLM's shape). */
static int body_controls(ah_request_t *r, json_t *o, controls_t *c)
{
    if (!json_is_object(o))
        return bad_cache(r, "'cache' must be an object such as {\"no-cache\": true, \"ttl\": 60, "
                            "\"namespace\": \"team-a\"}");
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (strcmp(k, "no-cache") == 0 || strcmp(k, "no_cache") == 0) {
            if (!json_is_boolean(v))
                return bad_cache(r, "cache.no-cache must be true or false");
            c->no_read |= json_is_true(v);
        } else if (strcmp(k, "no-store") == 0 || strcmp(k, "no_store") == 0) {
            if (!json_is_boolean(v))
                return bad_cache(r, "cache.no-store must be true or false");
            c->no_store |= json_is_true(v);
        } else if (strcmp(k, "ttl") == 0) {
            if (seconds(v, &c->ttl_ms) || c->ttl_ms == 0)
                return bad_cache(r, "cache.ttl must be a number of seconds, at least 1");
        } else if (strcmp(k, "s-maxage") == 0 || strcmp(k, "max-age") == 0) {
            if (seconds(v, &c->max_age_ms))
                return bad_cache(r, "cache.s-maxage must be a number of seconds");
        } else if (strcmp(k, "namespace") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) > AH_CACHE_MAX_NAMESPACE)
                return bad_cache(r, "cache.namespace must be a non-empty string of at most 128 "
                                    "bytes");
            c->ns = ah_arena_strdup(&r->arena, json_string_value(v));
        } else {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "unknown cache control '%.40s' (known: no-cache, no-store, ttl, s-maxage, "
                     "namespace)",
                     k);
            return bad_cache(r, msg);
        }
    }
    return 0;
}

static void semantic_lookup(ah_worker_t *w, ah_request_t *r, const ah_cache_policy_t *p);

static void hit(ah_worker_t *w, ah_request_t *r, ah_cache_entry_t *e, const char *kind,
                int64_t now_ms)
{
    r->cache_hit = e;
    r->cache_status = kind;
    r->saved_usd = e->cost_usd;
    r->cache_age_s = (now_ms - e->created_ms) / 1000;
    memcpy(r->cache_key, e->key, AH_CACHE_KEY_BYTES);
    r->cache_tenant = ah_arena_strdup(&r->arena, e->tenant);
    r->cache_ns = ah_arena_strdup(&r->arena, e->ns);
}

int ah_stage_cache(ah_worker_t *w, ah_request_t *r)
{
    ah_cache_t *cache = w->gw->cache;
    const ah_config_t *cfg = w->gw->cfg;
    if (r->op != AH_OP_CHAT)
        return 0;
    r->cache_status = "off";
    /* The body's controls are the gateway's, never the provider's. */
    json_t *ctl = json_incref(json_object_get(r->body, "cache"));
    json_object_del(r->body, "cache");
    if (r->raw != r->body)
        json_object_del(r->raw, "cache");
    const ah_cache_policy_t *p = ah_config_cache_policy(cfg, r->model);
    controls_t c = {.max_age_ms = -1, .ttl_ms = (int64_t)(p->ttl_s * 1000), .ns = cfg->cache.ns};
    int rc = 0;
    if (ctl && (rc = body_controls(r, ctl, &c)))
        goto out;
    if (!cache || (!p->exact && !p->semantic))
        goto out;
    header_controls(r->cache_control, &c);
    json_t *temp = json_object_get(r->body, "temperature");
    double t = json_is_number(temp) ? json_number_value(temp) : 1.0;
    if (t > p->max_temperature) {
        r->cache_status = "bypass";
        goto out;
    }
    const char *tenant = r->owner ? r->owner : (r->key_id ? r->key_id : "");
    if (ah_answer_key(tenant, c.ns, r->body, 0, r->cache_key)) {
        r->cache_status = "bypass";
        goto out;
    }
    /* what the rest of the lookup needs, kept for an asynchronous embedding */
    r->cache_tenant = ah_arena_strdup(&r->arena, tenant);
    r->cache_ns = c.ns ? ah_arena_strdup(&r->arena, c.ns) : "";
    r->cache_no_read = c.no_read;
    r->cache_no_store = c.no_store;
    r->cache_max_age_ms = c.max_age_ms;
    r->cache_ttl_ms = c.ttl_ms;
    r->cache_threshold = p->threshold;
    if (p->intents && w->gw->intents) {
        /* the labels decide; the cosine is a floor only when the route sets one */
        r->cache_intent = w->gw->intents[p->intents - 1];
        r->cache_intent_conf = p->intent_confidence;
        if (!p->threshold_set)
            r->cache_threshold = 0;
    }
    int64_t now = ah_wall_ms();
    if (p->exact && !c.no_read) {
        int ask = 0;
        /* without a loop to wait on (w->base NULL), the peers synchronously */
        ah_cache_entry_t *e = w->base
                                  ? ah_cache_get_local(cache, r->cache_key, now, c.max_age_ms, &ask)
                                  : ah_cache_get(cache, r->cache_key, now, c.max_age_ms);
        if (e) {
            hit(w, r, e, "exact", now);
            goto out;
        }
        if (ask) { /* the exchange asks Redis (ah_stage_cache_fetch) */
            r->cache_pending = AH_CACHE_WAIT_PEERS;
            goto out;
        }
    }
    semantic_lookup(w, r, p);
out:
    json_decref(ctl);
    return rc;
}

int ah_stage_cache_fetch(ah_worker_t *w, ah_request_t *r, ah_cache_fetched_fn done, void *arg,
                         ah_cache_fetch_t **out)
{
    *out = ah_cache_fetch_start(w->gw->cache, w->base, r->cache_key, ah_wall_ms(), done, arg);
    return *out != NULL;
}

void ah_stage_cache_fetched(ah_worker_t *w, ah_request_t *r, int got)
{
    int64_t now = ah_wall_ms();
    ah_cache_entry_t *e;
    r->cache_pending = 0;
    if (got &&
        (e = ah_cache_get_local(w->gw->cache, r->cache_key, now, r->cache_max_age_ms, NULL))) {
        hit(w, r, e, "exact", now);
        return;
    }
    semantic_lookup(w, r, ah_config_cache_policy(w->gw->cfg, r->model));
}

/* After an exact miss: the semantic lookup, when the route has it on. */
static void semantic_lookup(ah_worker_t *w, ah_request_t *r, const ah_cache_policy_t *p)
{
    const char *tenant = r->cache_tenant, *ns = r->cache_ns;
    ah_embedder_t *emb = w->gw->embedder;
    ah_embed_remote_t *remote = w->gw->remote_embed;
    char *text = p->semantic && (emb || remote) ? ah_answer_last_user_text(r->body) : NULL;
    if (text && *text && ah_answer_key(tenant, ns, r->body, 1, r->cache_scope) == AH_E_OK) {
        r->cache_embed_text = ah_arena_strdup(&r->arena, text);
        if (emb) {
            float *vec = ah_arena_alloc(&r->arena, (size_t)emb->dim * sizeof(float));
            if (ah_embed(emb, text, strlen(text), vec) == AH_E_OK) {
                ah_free(text);
                ah_stage_cache_embedded(w, r, vec, emb->dim);
                return;
            }
        } else {
            float vec[AH_EMBED_MAX_DIM]; /* copied to the arena at its real size */
            int dim = ah_embed_remote_cached(remote, text, vec, AH_EMBED_MAX_DIM);
            if (dim) {
                ah_free(text);
                ah_stage_cache_embedded(w, r, vec, dim);
                return;
            }
            /* the exchange waits for the endpoint, then calls
             * ah_stage_cache_embedded */
            r->cache_pending = AH_CACHE_WAIT_EMBED;
            ah_free(text);
            return;
        }
    }
    ah_free(text);
    ah_stage_cache_embedded(w, r, NULL, 0);
}

/* The re-ranking check (rerank.h) as the store's rescore callback. */
static float rescore(void *ctx, float cosine, const char *query, const char *prompt,
                     ah_cache_memo_t *memo)
{
    return ah_rerank_similarity(ctx, cosine, query, strlen(query), prompt, strlen(prompt));
}

/* With a labelled history: the query's label, and the least probability both
 * texts need. */
typedef struct intent_check {
    const ah_intent_t *m;
    int label;
    float conf;
} intent_check_t;

/* A candidate is served when its prompt has the query's label, as confidently.
 * The prompt's label is worked out once per entry and model (memo). */
static float rescore_intent(void *ctx, float cosine, const char *query, const char *prompt,
                            ah_cache_memo_t *memo)
{
    const intent_check_t *ic = ctx;
    if (memo->of != ic->m) {
        memo->label = ah_intent_predict(ic->m, prompt, strlen(prompt), NULL, &memo->conf);
        memo->of = ic->m;
    }
    return memo->label == ic->label && memo->conf >= ic->conf ? cosine : -1;
}

void ah_stage_cache_embedded(ah_worker_t *w, ah_request_t *r, const float *vec, int dim)
{
    ah_cache_t *cache = w->gw->cache;
    int64_t now = ah_wall_ms();
    r->cache_pending = 0;
    if (vec && dim > 0) {
        if (vec != r->cache_vec) {
            r->cache_vec = ah_arena_alloc(&r->arena, (size_t)dim * sizeof(float));
            memcpy(r->cache_vec, vec, (size_t)dim * sizeof(float));
        }
        r->cache_semantic = 1;
        r->cache_dim = dim;
        float sim = 0;
        ah_cache_entry_t *e;
        /* the built-in word vectors also check the words of the best candidates */
        ah_embedder_t *emb = w->gw->embedder;
        int check = emb && strcmp(emb->ops->name, "sif") == 0;
        ah_cache_rescore_fn fn = check ? rescore : NULL;
        void *ctx = emb;
        intent_check_t ic = {
            .m = r->cache_intent, .label = -1, .conf = (float)r->cache_intent_conf};
        int lookup = !r->cache_no_read;
        if (ic.m) {
            /* with labels, instead of the word check: a query without a confident
             * label cannot be a hit */
            float qc = 0;
            const char *q = r->cache_embed_text ? r->cache_embed_text : "";
            ic.label = ah_intent_predict(ic.m, q, strlen(q), NULL, &qc);
            lookup = lookup && ic.label >= 0 && qc >= ic.conf;
            fn = rescore_intent;
            ctx = &ic;
        }
        if (lookup && (e = ah_cache_get_similar(cache, r->cache_scope, r->cache_vec, dim,
                                                (float)r->cache_threshold, now, r->cache_max_age_ms,
                                                fn, ctx, r->cache_embed_text, &sim))) {
            r->cache_similarity = sim;
            if (ic.m)
                r->cache_intent_label = ah_intent_label(ic.m, ic.label);
            hit(w, r, e, "semantic", now);
            return;
        }
    }
    ah_cache_count_miss(cache, r->cache_tenant, r->model);
    r->cache_status = "miss";
    r->cache_store = !r->cache_no_store;
}

void ah_stage_cache_fill(ah_worker_t *w, ah_request_t *r)
{
    if (!r->cache_store || !r->answer || r->status != 200 || r->fail.status || !w->gw->cache)
        return;
    char *s = json_dumps(r->answer, JSON_COMPACT);
    if (!s)
        return;
    ah_request_price(w, r);
    ah_cache_put_t p = {
        .key = r->cache_key,
        .tenant = r->cache_tenant,
        .ns = r->cache_ns,
        .model = r->model,
        .answer = s,
        .answer_len = strlen(s),
        .cost_usd = r->cost_known ? r->cost_usd : 0,
        .now_ms = ah_wall_ms(),
        .ttl_ms = r->cache_ttl_ms,
        .scope = r->cache_semantic ? r->cache_scope : NULL,
        .vec = r->cache_semantic ? r->cache_vec : NULL,
        .dim = r->cache_dim,
        .prompt = r->cache_semantic ? r->cache_embed_text : NULL,
    };
    if (p.answer_len <= AH_ANSWER_MAX_BYTES) {
        ah_cache_insert(w->gw->cache, &p);
        r->cache_status = "stored";
    }
    free(s);
}
