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
 * (which may echo part of the key). */
#include "pipeline/upstream.h"

#include <string.h>

#include "cache/answer.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "provider/provider.h"
#include "upstream/sse.h"

struct ah_upstream {
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
    ah_buf_t body;   /* buffered answer or error body */
    ah_sse_t sse;
    ah_provider_stream_t ps;
    ah_answer_acc_t *acc; /* the answer gathered for the cache, or NULL */
};

static void upstream_free(ah_upstream_t *u)
{
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
    if (u->r->stream && status >= 200 && status < 300) {
        u->streaming = 1;
        u->sink->stream_start(u->ctx, u->r);
    }
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
    if (u->streaming) {
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

/* Map an upstream HTTP error to the client's status and message. */
static void upstream_http_error(ah_upstream_t *u)
{
    ah_request_t *r = u->r;
    char msg[400];
    long s = u->status;
    if (s == 401 || s == 403) {
        ah_request_fail(r, 502, "server_error", "upstream_auth", NULL,
                        "The provider of model '%s' refused the gateway's credentials "
                        "(HTTP %ld); check the deployment's api_key",
                        r->model, s);
        return;
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
    if (strstr(msg, "context length") || strstr(msg, "too long"))
        code = "context_length_exceeded";
    ah_request_fail(r, status, NULL, code, NULL, "%s", msg);
    r->fail.retry_after_s = u->retry_after_s;
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
        u->sink->stream_end(u->ctx, r, u->passthrough);
    } else if (err || r->fail.status) {
        ah_request_fail(r, 502, "server_error", NULL, NULL, "upstream failed");
        u->sink->failed(u->ctx, r);
    } else if (status >= 300) {
        upstream_http_error(u);
        u->sink->failed(u->ctx, r);
    } else {
        json_t *canon = NULL;
        if (u->prov->parse_response(r, u->body.data ? u->body.data : "", u->body.len,
                                    u->passthrough ? NULL : &canon)) {
            ah_request_fail(r, 502, "server_error", "upstream_error", NULL,
                            "The provider of model '%s' sent an answer that is not valid JSON",
                            r->model);
            u->sink->failed(u->ctx, r);
        } else {
            if (r->cache_store && r->op == AH_OP_CHAT) {
                if (canon)
                    r->answer = json_incref(canon);
                else
                    u->prov->parse_response(r, u->body.data ? u->body.data : "", u->body.len,
                                            &r->answer);
            }
            u->sink->answer(u->ctx, r, u->body.data, u->body.len, u->passthrough, canon);
        }
        json_decref(canon);
    }
    upstream_free(u);
}

ah_err_t ah_upstream_start(ah_worker_t *w, ah_request_t *r, const ah_sink_ops_t *sink, void *ctx,
                           ah_upstream_t **out)
{
    ah_upstream_t *u = ah_calloc(1, sizeof *u);
    u->r = r;
    u->sink = sink;
    u->ctx = ctx;
    u->prov = ah_provider_for(r->dep);
    u->passthrough = u->prov->api == r->api;
    ah_buf_init(&u->body, AH_MAX_UPSTREAM_BODY_BYTES);
    ah_sse_init(&u->sse);
    if (r->cache_store && r->stream && r->op == AH_OP_CHAT)
        u->acc = ah_calloc(1, sizeof *u->acc);
    ah_err_t rc = u->prov->build(r, r->dep, &u->preq);
    if (rc) {
        upstream_free(u);
        return rc;
    }
    ah_http_request_t hr = {
        .url = u->preq.url,
        .headers = u->preq.headers,
        .body = u->preq.body,
        .body_len = u->preq.body_len,
        .timeout_s = r->dep->timeout_s,
        .idle_timeout_s = r->stream ? r->dep->stream_idle_timeout_s : 0,
    };
    static const ah_http_callbacks_t cbs = {on_headers, on_data, on_done};
    r->t_upstream_start_us = ah_now_us();
    u->xfer = ah_http_start(w->http, &hr, &cbs, u);
    if (!u->xfer) {
        upstream_free(u);
        ah_request_fail(r, 502, "server_error", NULL, NULL, "cannot start the upstream request");
        return AH_E_UPSTREAM;
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
    upstream_free(u);
}
