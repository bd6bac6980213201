/* upstream.c - stage 7: provider adapter + pooled HTTP client + SSE.
 *
 * Non-streamed answers are buffered (bounded) and read once. Streamed
 * answers are handled event by event as bytes arrive: each event updates the
 * usage and time to first token, and the events of one network read go to
 * the client together, either raw (the provider speaks the client's format:
 * the event is only skimmed for usage) or translated to canonical chunks
 * (the event is parsed whole). An upstream that fails, resets or falls silent mid-stream ends the
 * client's stream with an error event.
 *
 * Errors never carry provider credentials: an upstream 401/403 is reported
 * as the gateway's configuration problem without the provider's message
 * (which may echo part of the key).
 *
 * Retries and fallbacks: an attempt that fails before the client has had a
 * byte (an error status, a timeout, a refused or reset connection, a stream
 * that ends before its first event) becomes a ledger row of its own, and the
 * request goes on: to another deployment of the same alias at once, to the
 * same deployment after an exponential backoff with jitter (Retry-After
 * honoured up to the configured cap), then down the fallback chain; a
 * context-window overflow goes to the context-window fallbacks instead. The
 * client's stream starts only with the first upstream byte, so a stream that
 * fails before it is retried unseen; after it, the client gets an error
 * event. Every next attempt starts from a timer, never from inside libcurl's
 * callbacks. */
#include "pipeline/upstream.h"

#include <string.h>

#include "cache/answer.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "provider/provider.h"
#include "route/balance.h"
#include "route/cascade.h"
#include "upstream/sse.h"

#include <event2/event.h>

/* What may follow a failed attempt. */
typedef enum {
    NEXT_NONE,    /* the request itself is at fault: report it */
    NEXT_ANY,     /* another deployment, or the same one after a backoff */
    NEXT_OTHER,   /* another deployment only (the deployment is misconfigured) */
    NEXT_CONTEXT, /* a model with a larger context window */
} next_t;

struct ah_upstream {
    ah_worker_t *w;
    ah_request_t *r;
    const ah_sink_ops_t *sink;
    void *ctx;
    const ah_provider_ops_t *prov;
    ah_provider_req_t preq;
    ah_http_xfer_t *xfer;
    long status;
    int retry_after_s;
    int streaming;   /* the client stream has started */
    int passthrough; /* provider format == client format */
    int failed_mid;  /* a stream error event was seen */
    int paused;      /* waiting for the client to drain its backlog */
    int stream_ok;   /* a 2xx stream answer whose first byte has not come yet */
    int in_flight;   /* counted by the balancer, not yet ended */
    int chain_pos;   /* index in r->chain of the alias being tried */
    int alias_attempts;
    int tried[AH_ROUTE_MAX_ATTEMPTS];
    int ntried;
    int64_t t_attempt_us;
    struct event *wait; /* starts the next attempt */
    ah_buf_t body;      /* buffered answer or error body */
    ah_sse_t sse;
    ah_provider_stream_t ps;
    ah_answer_acc_t *acc; /* the answer gathered for the cache, or NULL */
};

static void upstream_free(ah_upstream_t *u)
{
    if (u->wait)
        event_free(u->wait);
    ah_provider_req_free(&u->preq);
    ah_buf_free(&u->body);
    ah_sse_free(&u->sse);
    if (u->acc) {
        ah_answer_acc_free(u->acc);
        ah_free(u->acc);
    }
    ah_free(u);
}

static void on_headers(void *ud, long status, int retry_after_s)
{
    ah_upstream_t *u = ud;
    u->status = status;
    u->retry_after_s = retry_after_s;
    if (u->r->stream && status >= 200 && status < 300)
        u->stream_ok = 1; /* the client's stream starts with the first byte */
}

static int on_event(void *ud, const char *event, const char *data, size_t len, const char *raw,
                    size_t raw_len)
{
    ah_upstream_t *u = ud;
    ah_request_t *r = u->r;
    /* Canonical chunks are needed to translate, or to gather the answer for
     * the cache (the raw event is still what a same-format client gets). */
    json_t *chunks = u->passthrough && !u->acc ? NULL : json_array();
    int is_token = 0, forward = 1;
    ah_err_t rc = u->prov->stream_event(&u->ps, r, event, data, len, chunks, &is_token, &forward);
    if (is_token && !r->t_first_token_us)
        r->t_first_token_us = ah_now_us();
    if (rc) {
        u->failed_mid = 1;
        json_decref(chunks);
        return 1;
    }
    size_t i;
    json_t *c;
    if (u->acc)
        json_array_foreach(chunks, i, c) ah_answer_acc_add(u->acc, c);
    if (u->passthrough) {
        if (forward)
            u->sink->stream_raw(u->ctx, r, raw, raw_len);
    } else {
        json_array_foreach(chunks, i, c) u->sink->stream_chunk(u->ctx, r, c);
    }
    json_decref(chunks);
    return 0;
}

static int on_data(void *ud, const char *p, size_t n)
{
    ah_upstream_t *u = ud;
    if (u->stream_ok) {
        if (!u->streaming) {
            u->streaming = 1;
            u->sink->stream_start(u->ctx, u->r);
        }
        if (u->sink->stream_backlogged(u->ctx)) {
            u->paused = 1;
            return AH_HTTP_PAUSE; /* the same bytes come again on resume */
        }
        ah_err_t rc = ah_sse_feed(&u->sse, p, n, on_event, u);
        u->sink->stream_flush(u->ctx);
        if (rc == AH_E_TOOBIG)
            ah_request_fail(u->r, 502, "server_error", NULL, NULL,
                            "upstream sent an event larger than %u bytes",
                            (unsigned)AH_MAX_SSE_EVENT_BYTES);
        return rc != AH_E_OK;
    }
    if (ah_buf_append(&u->body, p, n)) {
        ah_request_fail(u->r, 502, "server_error", NULL, NULL,
                        "upstream answer larger than %u bytes",
                        (unsigned)AH_MAX_UPSTREAM_BODY_BYTES);
        return 1;
    }
    return 0;
}

/* Map an upstream HTTP error to the client's status and message; says what
 * may be tried next. */
static next_t upstream_http_error(ah_upstream_t *u)
{
    ah_request_t *r = u->r;
    char msg[400];
    long s = u->status;
    if (s == 401 || s == 403) {
        ah_request_fail(r, 502, "server_error", "upstream_auth", NULL,
                        "The provider of model '%s' refused the gateway's credentials "
                        "(HTTP %ld); check the deployment's api_key",
                        r->model, s);
        return NEXT_OTHER;
    }
    ah_provider_error_message(u->body.data, u->body.len, msg, sizeof msg);
    int status = (int)s;
    const char *code = NULL;
    if (s == 429)
        code = "rate_limit_exceeded";
    else if (s == 529 || s == 503)
        status = 503;
    else if (s >= 500)
        status = 502;
    else if (s < 400)
        status = 502;
    int context = 0;
    if (s == 400 && (strstr(msg, "context length") || strstr(msg, "too long") ||
                     strstr(msg, "context_length_exceeded"))) {
        code = "context_length_exceeded";
        context = 1;
    }
    ah_request_fail(r, status, NULL, code, NULL, "%s", msg);
    r->fail.retry_after_s = u->retry_after_s;
    if (context)
        return NEXT_CONTEXT;
    if (s == 404)
        return NEXT_OTHER;
    if (s == 408 || s == 409 || s == 429 || s >= 500 || s < 400)
        return NEXT_ANY;
    return NEXT_NONE;
}

static ah_err_t attempt_start(ah_upstream_t *u);
static int attempt_next(ah_upstream_t *u, next_t next);

/* The balancer hears how the attempt went (once per attempt). */
static void attempt_end(ah_upstream_t *u, int outcome)
{
    if (!u->in_flight)
        return;
    ah_request_t *r = u->r;
    int64_t lat = 0;
    if (outcome > 0) {
        int64_t end = r->stream && r->t_first_token_us ? r->t_first_token_us : ah_now_us();
        lat = end - u->t_attempt_us;
    }
    ah_balancer_end(u->w->gw->balancer, r->dep, outcome, lat);
    u->in_flight = 0;
}

static void schedule(ah_upstream_t *u, double wait);
static void reset_for_next(ah_request_t *r, const ah_deployment_t *d, const char *alias);

/* A cascade's answer that fails its checks: keep it on the ledger (priced)
 * and ask the next step. 0 when there is no next step to ask. */
static int cascade_escalate(ah_upstream_t *u, const char *why)
{
    ah_request_t *r = u->r;
    ah_pick_t pw;
    ah_pick_opts_t o = {.tokens = r->est_tokens, .rng = &u->w->rng};
    const ah_deployment_t *d = NULL;
    int pos = r->cascade_pos;
    while (!d && ++pos < r->ncascade)
        d = ah_balancer_pick(u->w->gw->balancer, r->cascade[pos], &o, &pw, NULL);
    if (!d || r->attempts >= AH_ROUTE_MAX_ATTEMPTS)
        return 0;
    char error[160];
    snprintf(error, sizeof error, "cascade: the answer failed the '%s' check", why);
    ah_stage_record_attempt(u->w, r, (int)u->status, error, u->t_attempt_us);
    char reason[320];
    snprintf(reason, sizeof reason, "%s; cascade to %s after '%s'",
             r->route_reason ? r->route_reason : "", r->cascade[pos], why);
    r->route_reason = ah_arena_strdup(&r->arena, reason);
    r->cascade_pos = pos;
    const char **chain = ah_arena_alloc(&r->arena, sizeof *chain);
    chain[0] = r->cascade[pos];
    r->chain = chain;
    r->nchain = 1;
    u->chain_pos = 0;
    u->alias_attempts = 0;
    u->ntried = 0;
    reset_for_next(r, d, r->cascade[pos]);
    schedule(u, 0);
    return 1;
}

static void on_done(void *ud, ah_err_t err, long status, const char *msg)
{
    ah_upstream_t *u = ud;
    ah_request_t *r = u->r;
    r->t_upstream_end_us = ah_now_us();
    u->xfer = NULL;
    if (err == AH_E_TIMEOUT)
        ah_request_fail(r, 504, "timeout_error", "upstream_timeout", NULL,
                        "The provider of model '%s' did not answer in time (%s)", r->model,
                        u->streaming ? "stream stalled" : "timeout");
    else if (err == AH_E_UPSTREAM)
        ah_request_fail(r, 502, "server_error", "upstream_error", NULL,
                        "The provider of model '%s' failed: %s", r->model, msg);
    if (u->streaming) {
        if (!err && !u->ps.done && !u->failed_mid && !r->fail.status)
            ah_request_fail(r, 502, "server_error", "upstream_error", NULL,
                            "The provider of model '%s' ended the stream early", r->model);
        if (u->acc && !r->fail.status)
            r->answer = ah_answer_acc_finish(u->acc);
        attempt_end(u, r->fail.status ? 0 : 1);
        u->sink->stream_end(u->ctx, r, u->passthrough);
        upstream_free(u);
        return;
    }
    next_t next = NEXT_NONE;
    if (err == AH_E_TIMEOUT || err == AH_E_UPSTREAM) {
        next = NEXT_ANY;
    } else if (err || r->fail.status) {
        ah_request_fail(r, 502, "server_error", NULL, NULL, "upstream failed");
    } else if (u->stream_ok) {
        ah_request_fail(r, 502, "server_error", "upstream_error", NULL,
                        "The provider of model '%s' ended the stream before its first event",
                        r->model);
        next = NEXT_ANY;
    } else if (status >= 300) {
        next = upstream_http_error(u);
    } else {
        json_t *canon = NULL;
        if (u->prov->parse_response(r, u->body.data ? u->body.data : "", u->body.len,
                                    u->passthrough ? NULL : &canon)) {
            ah_request_fail(r, 502, "server_error", "upstream_error", NULL,
                            "The provider of model '%s' sent an answer that is not valid JSON",
                            r->model);
            next = NEXT_ANY;
        } else {
            attempt_end(u, 1);
            if (r->cascade && r->cascade_pos + 1 < r->ncascade) {
                json_t *ans = canon ? json_incref(canon) : NULL;
                if (!ans)
                    u->prov->parse_response(r, u->body.data ? u->body.data : "", u->body.len, &ans);
                const char *why = ah_cascade_check(r->body, ans);
                json_decref(ans);
                if (why && cascade_escalate(u, why)) {
                    json_decref(canon);
                    return;
                }
            }
            if ((r->cache_store || r->judge) && r->op == AH_OP_CHAT) {
                if (canon)
                    r->answer = json_incref(canon);
                else
                    u->prov->parse_response(r, u->body.data ? u->body.data : "", u->body.len,
                                            &r->answer);
            }
            u->sink->answer(u->ctx, r, u->body.data, u->body.len, u->passthrough, canon);
            json_decref(canon);
            upstream_free(u);
            return;
        }
    }
    /* A failure the client has not seen a byte of. */
    attempt_end(u, next == NEXT_NONE || next == NEXT_CONTEXT ? -1 : 0);
    if (next != NEXT_NONE && attempt_next(u, next))
        return;
    u->sink->failed(u->ctx, r);
    upstream_free(u);
}

/* How long to wait before trying the same deployment again: exponential
 * with jitter, at least the provider's Retry-After; < 0 when Retry-After is
 * beyond the cap (better to move on than to hold the client). */
static double backoff_s(ah_upstream_t *u)
{
    const ah_routing_config_t *rc = &u->w->gw->cfg->routing;
    double b = rc->backoff_base_s;
    for (int k = 1; k < u->alias_attempts && b < rc->backoff_max_s; k++)
        b *= 2;
    if (b > rc->backoff_max_s)
        b = rc->backoff_max_s;
    b *= 0.5 + 0.5 * ah_rand01(&u->w->rng);
    if (u->retry_after_s > 0) {
        if (u->retry_after_s > rc->backoff_max_s)
            return -1;
        if (b < u->retry_after_s)
            b = u->retry_after_s;
    }
    return b;
}

static const ah_fallback_t *fallback_of(const ah_fallback_t *arr, size_t n, const char *from)
{
    for (size_t i = 0; from && i < n; i++)
        if (strcmp(arr[i].from, from) == 0)
            return &arr[i];
    return NULL;
}

static void on_wait(evutil_socket_t fd, short what, void *arg)
{
    ah_upstream_t *u = arg;
    if (attempt_start(u)) {
        u->sink->failed(u->ctx, u->r);
        upstream_free(u);
    }
}

/* Choose and schedule the next attempt after a failed one; 0 when there is
 * none (the failure stands and is reported). */
static int attempt_next(ah_upstream_t *u, next_t next)
{
    ah_request_t *r = u->r;
    ah_gateway_t *gw = u->w->gw;
    const ah_routing_config_t *rc = &gw->cfg->routing;
    const ah_deployment_t *d = NULL;
    double wait = 0;
    ah_pick_t why;
    ah_pick_opts_t o = {
        .tried = u->tried, .ntried = u->ntried, .tokens = r->est_tokens, .rng = &u->w->rng};
    const char *from = r->chain[u->chain_pos];
    const char *how = "retry";
    if (r->attempts >= AH_ROUTE_MAX_ATTEMPTS)
        return 0;
    if (next == NEXT_CONTEXT) {
        const ah_fallback_t *cf = fallback_of(rc->context_fallbacks, rc->ncontext_fallbacks, from);
        if (!cf)
            return 0;
        const char **chain = ah_arena_alloc(&r->arena, cf->nto * sizeof *chain);
        for (size_t i = 0; i < cf->nto; i++)
            chain[i] = cf->to[i];
        r->chain = chain;
        r->nchain = (int)cf->nto;
        u->chain_pos = -1;
        how = "context-window fallback";
    } else if (u->alias_attempts <= rc->retries) {
        d = ah_balancer_pick(gw->balancer, from, &o, &why, NULL);
        if (!d && next == NEXT_ANY) {
            o.allow_tried = 1;
            d = ah_balancer_pick(gw->balancer, from, &o, &why, NULL);
            if (d && (wait = backoff_s(u)) < 0)
                d = NULL;
        }
    }
    while (!d && u->chain_pos + 1 < r->nchain) {
        u->chain_pos++;
        u->alias_attempts = 0;
        u->ntried = 0;
        o.ntried = 0;
        o.allow_tried = 0;
        d = ah_balancer_pick(gw->balancer, r->chain[u->chain_pos], &o, &why, NULL);
        if (d && next != NEXT_CONTEXT)
            how = "fallback";
    }
    if (!d)
        return 0;
    /* The provider's error status, else (a 2xx cut short, no answer) the gateway's. */
    int st = u->status >= 300 ? (int)u->status : 0;
    ah_stage_record_attempt(u->w, r, st, r->fail.message, u->t_attempt_us);
    /* Why the request moved, for x-ahorro-route-reason and the ledger. */
    char reason[320];
    snprintf(reason, sizeof reason, "%s; %s to %s after %s%d",
             r->route_reason ? r->route_reason : "", how, r->chain[u->chain_pos],
             st ? "" : "error ", st ? st : r->fail.status);
    r->route_reason = ah_arena_strdup(&r->arena, reason[0] == ';' ? reason + 2 : reason);
    reset_for_next(r, d, r->chain[u->chain_pos]);
    schedule(u, wait);
    return 1;
}

/* The attempt that did not give the answer leaves nothing behind; the
 * next goes to d, under alias. */
static void reset_for_next(ah_request_t *r, const ah_deployment_t *d, const char *alias)
{
    memset(&r->fail, 0, sizeof r->fail);
    memset(&r->usage, 0, sizeof r->usage);
    r->usage_known = 0;
    r->served_model = NULL;
    r->t_first_token_us = 0;
    r->cost_known = 0;
    r->cost_usd = 0;
    r->prompt_cache_saved_usd = 0;
    json_decref(r->answer);
    r->answer = NULL;
    r->dep = d;
    r->upstream_model = strcmp(d->model, "*") == 0 ? alias : d->model;
}

/* Start the next attempt from the loop, after wait seconds. */
static void schedule(ah_upstream_t *u, double wait)
{
    if (!u->wait)
        u->wait = evtimer_new(u->w->base, on_wait, u);
    struct timeval tv = {(time_t)wait, (suseconds_t)((wait - (double)(time_t)wait) * 1e6)};
    evtimer_add(u->wait, &tv);
}

/* Start one attempt on r->dep. On error r->fail is set. */
static ah_err_t attempt_start(ah_upstream_t *u)
{
    ah_request_t *r = u->r;
    const ah_deployment_t *d = r->dep;
    ah_provider_req_free(&u->preq);
    memset(&u->preq, 0, sizeof u->preq);
    ah_buf_reset(&u->body);
    ah_sse_free(&u->sse);
    ah_sse_init(&u->sse);
    memset(&u->ps, 0, sizeof u->ps);
    if (u->acc) {
        ah_answer_acc_free(u->acc);
        memset(u->acc, 0, sizeof *u->acc);
    }
    u->status = 0;
    u->retry_after_s = 0;
    u->failed_mid = u->stream_ok = u->streaming = u->paused = 0;
    u->prov = ah_provider_for(d);
    u->passthrough = u->prov->api == r->api;
    ah_err_t rc = u->prov->build(r, d, &u->preq);
    if (rc)
        return rc;
    ah_http_request_t hr = {
        .url = u->preq.url,
        .headers = u->preq.headers,
        .body = u->preq.body,
        .body_len = u->preq.body_len,
        .timeout_s = d->timeout_s,
        .idle_timeout_s = r->stream ? d->stream_idle_timeout_s : 0,
    };
    static const ah_http_callbacks_t cbs = {on_headers, on_data, on_done};
    u->t_attempt_us = ah_now_us();
    if (!r->t_upstream_start_us)
        r->t_upstream_start_us = u->t_attempt_us;
    u->xfer = ah_http_start(u->w->http, &hr, &cbs, u);
    if (!u->xfer) {
        ah_request_fail(r, 502, "server_error", NULL, NULL, "cannot start the upstream request");
        return AH_E_UPSTREAM;
    }
    r->attempts++;
    u->alias_attempts++;
    if (u->ntried < AH_ROUTE_MAX_ATTEMPTS)
        u->tried[u->ntried++] = d->index;
    ah_balancer_begin(u->w->gw->balancer, d, r->est_tokens);
    u->in_flight = 1;
    return AH_E_OK;
}

ah_err_t ah_upstream_start(ah_worker_t *w, ah_request_t *r, const ah_sink_ops_t *sink, void *ctx,
                           ah_upstream_t **out)
{
    ah_upstream_t *u = ah_calloc(1, sizeof *u);
    u->w = w;
    u->r = r;
    u->sink = sink;
    u->ctx = ctx;
    ah_buf_init(&u->body, AH_MAX_UPSTREAM_BODY_BYTES);
    ah_sse_init(&u->sse);
    /* the answer is gathered for the cache, or for a judge (judge.c) */
    if ((r->cache_store || r->judge) && r->stream && r->op == AH_OP_CHAT)
        u->acc = ah_calloc(1, sizeof *u->acc);
    if (!r->chain) { /* a request routed without a chain: just its deployment */
        const char **chain = ah_arena_alloc(&r->arena, sizeof *chain);
        chain[0] = r->dep->alias;
        r->chain = chain;
        r->nchain = 1;
    }
    ah_err_t rc = attempt_start(u);
    if (rc) {
        upstream_free(u);
        return rc;
    }
    *out = u;
    return AH_E_OK;
}

void ah_upstream_resume(ah_upstream_t *u)
{
    if (u && u->paused && u->xfer) {
        u->paused = 0;
        ah_http_resume(u->xfer);
    }
}

void ah_upstream_cancel(ah_upstream_t *u)
{
    if (!u)
        return;
    ah_http_cancel(u->xfer);
    attempt_end(u, -1);
    upstream_free(u);
}
