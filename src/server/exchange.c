/* exchange.c - one API request from the client's body to the last byte.
 *
 * Ownership: an exchange owns its canonical request and, while the call is
 * upstream, the ah_upstream_t. It ends in exactly one place (finish), which
 * runs the after-stages (ledger row, metrics) and frees everything, whether
 * the answer was sent, failed, or the client went away.
 *
 * libevent 2.1 detaches a request whose connection fails while the handler
 * still owns it (req->evcon = NULL) and then calls the connection's close
 * callback; the request must then be freed by its owner, here.
 *
 * Writing: evhttp queues a reply on the connection's bufferevent, which
 * writes it only when epoll next reports the socket writable: one more
 * epoll_wait and two epoll_ctl (add, then drop, EPOLLOUT) per reply.
 * write_soon makes the bufferevent's write event active instead, as
 * libevent itself does after a connect that completed at once, so the
 * bytes leave when the current callback returns, in the same pass of the
 * loop, and the EPOLLOUT added and dropped in one pass costs no epoll_ctl
 * (the changelist, server.c). Everything queued in that callback (a
 * stream's headers, events and last chunk) still goes out in one write. */
#include "server/exchange.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cache/embed_remote.h"
#include "cache/store.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "ingress/ingress.h"
#include "metrics/metrics.h"
#include "pipeline/upstream.h"
#include "provider/provider.h"

typedef struct exchange {
    ah_worker_t *w;
    struct evhttp_request *req; /* NULL once the client is gone */
    struct evhttp_connection *conn;
    ah_request_t *r;
    const ah_ingress_ops_t *in;
    ah_upstream_t *up;
    ah_stream_render_t st;
    int streaming;
    struct event *close_watch; /* EV_CLOSED on the client socket until the reply starts */
    int close_watch_armed;
    struct evbuffer *pending;    /* stream bytes of one upstream read, sent as one chunk */
    ah_buf_t scratch;            /* rendering space reused for every chunk */
    ah_embed_wait_t *embed_wait; /* the semantic cache's embedding in flight, or NULL */
    ah_cache_fetch_t *fetch;     /* the exact cache's lookup in Redis in flight, or NULL */
    ah_summary_t *summary;       /* stage 4's summary call in flight, or NULL */
    ah_state_call_t *count;      /* stage 3's or the reservation's counters in flight, or NULL */
    /* close_watch's storage, allocated with the exchange (one allocation per
     * request, not two): event_get_struct_event_size() bytes. */
    max_align_t close_watch_space[];
} exchange_t;

const char *ah_peer_of(struct evhttp_request *req)
{
    struct evhttp_connection *c = evhttp_request_get_connection(req);
    const char *addr = NULL;
    ev_uint16_t port = 0;
    if (c)
        evhttp_connection_get_peer(c, (char **)&addr, &port);
    return addr ? addr : "";
}

const char *ah_token_of(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_input_headers(req);
    const char *auth = evhttp_find_header(h, "Authorization");
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
        auth += 7;
        while (*auth == ' ')
            auth++;
        return *auth ? auth : NULL;
    }
    const char *k = evhttp_find_header(h, "x-api-key");
    if (!k)
        k = evhttp_find_header(h, "api-key");
    return k && *k ? k : NULL;
}

void ah_reply_json(struct evhttp_request *req, int status, json_t *body)
{
    struct evbuffer *b = evbuffer_new();
    char *s = json_dumps(body, JSON_COMPACT);
    evbuffer_add(b, s, strlen(s));
    free(s);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

void ah_reply_error(struct evhttp_request *req, ah_api_t api, int status, const char *type,
                    const char *code, const char *message)
{
    ah_fail_t f = {.status = status, .type = type, .code = code};
    snprintf(f.message, sizeof f.message, "%s", message);
    ah_buf_t out;
    ah_buf_init(&out, 4096);
    ah_ingress_for(api)->render_error(&f, &out);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, out.data, out.len);
    ah_buf_free(&out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, NULL, b);
    evbuffer_free(b);
}

static void stop_close_watch(exchange_t *ex)
{
    if (ex->close_watch_armed) {
        event_del(ex->close_watch);
        ex->close_watch_armed = 0;
    }
}

/* Write what evhttp queued on conn when the current callback returns
 * (see the top of the file). */
static void write_soon(struct evhttp_connection *conn)
{
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    if (bev && (bufferevent_get_enabled(bev) & EV_WRITE) &&
        evbuffer_get_length(bufferevent_get_output(bev)))
        event_active(&bev->ev_write, EV_WRITE, 1);
}

/* The connection is the client's again (its answer is queued): no more
 * callbacks about it for this exchange, and the keep-alive idle timeout. */
static void release_conn(exchange_t *ex)
{
    stop_close_watch(ex);
    if (!ex->conn)
        return;
    evhttp_connection_set_closecb(ex->conn, NULL, NULL);
    if (ex->streaming)
        evhttp_connection_set_timeout(ex->conn, ex->w->gw->cfg->client_timeout_s);
    ex->conn = NULL;
}

/* The end of every exchange: after-stages, then free. */
static void finish(exchange_t *ex)
{
    ah_request_t *r = ex->r;
    release_conn(ex);
    r->t_end_us = ah_now_us();
    ah_pipeline_after(ex->w, r);
    ah_metrics_inflight(-1);
    ah_request_free(r);
    if (ex->pending)
        evbuffer_free(ex->pending);
    ah_buf_free(&ex->scratch);
    ah_free(ex);
}

static void add_ahorro_headers(exchange_t *ex, struct evkeyvalq *h, int with_cost)
{
    ah_request_t *r = ex->r;
    char v[64];
    evhttp_add_header(h, "x-ahorro-request-id", r->id);
    if (r->upstream_model || r->served_model)
        evhttp_add_header(h, "x-ahorro-model",
                          r->served_model ? r->served_model : r->upstream_model);
    if (r->route_reason)
        evhttp_add_header(h, "x-ahorro-route-reason", r->route_reason);
    if (r->experiment)
        evhttp_add_header(h, "x-ahorro-experiment", r->experiment);
    if (r->shape_done) {
        char saved[32];
        evhttp_add_header(h, "x-ahorro-shape", r->shape_done);
        snprintf(saved, sizeof saved, "%ld", r->shape_tokens_saved);
        evhttp_add_header(h, "x-ahorro-tokens-saved", saved);
    }
    /* OpenAI's rate-limit headers, for the tightest window the request is in. */
    if (r->rl_limit_req >= 0 || r->rl_limit_tok >= 0) {
        char reset[32];
        snprintf(reset, sizeof reset, "%ds", r->rl_reset_s);
        if (r->rl_limit_req >= 0) {
            snprintf(v, sizeof v, "%ld", r->rl_limit_req);
            evhttp_add_header(h, "x-ratelimit-limit-requests", v);
            snprintf(v, sizeof v, "%ld", r->rl_remaining_req);
            evhttp_add_header(h, "x-ratelimit-remaining-requests", v);
            evhttp_add_header(h, "x-ratelimit-reset-requests", reset);
        }
        if (r->rl_limit_tok >= 0) {
            snprintf(v, sizeof v, "%ld", r->rl_limit_tok);
            evhttp_add_header(h, "x-ratelimit-limit-tokens", v);
            snprintf(v, sizeof v, "%ld", r->rl_remaining_tok);
            evhttp_add_header(h, "x-ratelimit-remaining-tokens", v);
            evhttp_add_header(h, "x-ratelimit-reset-tokens", reset);
        }
    }
    if (r->cache_status)
        evhttp_add_header(h, "x-ahorro-cache", r->cache_status);
    if (r->cache_hit) {
        snprintf(v, sizeof v, "%lld", (long long)r->cache_age_s);
        evhttp_add_header(h, "Age", v);
        evhttp_add_header(h, "x-ahorro-cache-age", v);
        snprintf(v, sizeof v, "%.8f", r->saved_usd);
        evhttp_add_header(h, "x-ahorro-saved", v);
        if (r->cache_similarity > 0) {
            snprintf(v, sizeof v, "%.4f", r->cache_similarity);
            evhttp_add_header(h, "x-ahorro-cache-similarity", v);
        }
        if (r->cache_intent_label)
            evhttp_add_header(h, "x-ahorro-cache-intent", r->cache_intent_label);
    }
    if (with_cost && r->cost_known) {
        snprintf(v, sizeof v, "%.8f", r->cost_usd);
        evhttp_add_header(h, "x-ahorro-cost", v);
    }
    int64_t now = ah_now_us();
    int64_t over = r->t_upstream_start_us
                       ? (r->t_upstream_start_us - r->t_start_us) +
                             (r->t_upstream_end_us ? now - r->t_upstream_end_us : 0)
                       : now - r->t_start_us;
    r->overhead_us = over;
    snprintf(v, sizeof v, "%lld", (long long)over);
    evhttp_add_header(h, "x-ahorro-overhead-us", v);
}

static void send_body(exchange_t *ex, int status, const char *body, size_t len)
{
    ex->r->status = status;
    if (!ex->req)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(ex->req);
    evhttp_add_header(h, "Content-Type", "application/json");
    add_ahorro_headers(ex, h, status < 300);
    if (ex->r->fail.retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", ex->r->fail.retry_after_s);
        evhttp_add_header(h, "Retry-After", v);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    struct evhttp_connection *conn = ex->conn;
    release_conn(ex);
    evhttp_send_reply(ex->req, status, NULL, b);
    evbuffer_free(b);
    write_soon(conn);
    ex->req = NULL;
}

/* A canonical chat.completion, in the client's format, as a 200. */
static void send_rendered(exchange_t *ex, json_t *canon)
{
    json_t *ans = ex->in->render_response(ex->r, canon);
    char *s = json_dumps(ans, JSON_COMPACT);
    send_body(ex, 200, s, strlen(s));
    free(s);
    json_decref(ans);
}

static void send_error(exchange_t *ex)
{
    ah_buf_t out;
    ah_buf_init(&out, 8192);
    if (!ex->r->fail.status)
        ah_request_fail(ex->r, 500, NULL, NULL, NULL, "internal error");
    ex->in->render_error(&ex->r->fail, &out);
    send_body(ex, ex->r->fail.status, out.data, out.len);
    ah_buf_free(&out);
}

/* --- sink: what the upstream stage reports ------------------------------ */

static void sink_answer(void *ctx, ah_request_t *r, const char *raw, size_t len, int same,
                        json_t *canon)
{
    exchange_t *ex = ctx;
    ex->up = NULL;
    ah_request_price(ex->w, r);
    if (same)
        send_body(ex, 200, raw, len);
    else
        send_rendered(ex, canon);
    finish(ex);
}

static void sink_failed(void *ctx, ah_request_t *r)
{
    exchange_t *ex = ctx;
    ex->up = NULL;
    send_error(ex);
    finish(ex);
}

/* The connection wrote out everything queued: a paused upstream may go on. */
static void on_flushed(struct evhttp_connection *conn, void *arg)
{
    exchange_t *ex = arg;
    ah_upstream_resume(ex->up);
}

/* Send what the last upstream read produced as one HTTP chunk: one write per
 * read, not one per event. */
static void sink_stream_flush(void *ctx)
{
    exchange_t *ex = ctx;
    if (!ex->pending || evbuffer_get_length(ex->pending) == 0)
        return;
    if (ex->req) {
        evhttp_send_reply_chunk_with_cb(ex->req, ex->pending, on_flushed, ex); /* drains it */
        write_soon(ex->conn);
    } else
        evbuffer_drain(ex->pending, evbuffer_get_length(ex->pending));
}

/* Queue rendered bytes for the next flush. */
static void stream_queue(exchange_t *ex, const char *p, size_t n)
{
    if (ex->req && n)
        evbuffer_add(ex->pending, p, n);
}

static int sink_stream_backlogged(void *ctx)
{
    exchange_t *ex = ctx;
    if (!ex->conn)
        return 0;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(ex->conn);
    return bev && evbuffer_get_length(bufferevent_get_output(bev)) > AH_STREAM_CLIENT_BACKLOG_BYTES;
}

static void sink_stream_start(void *ctx, ah_request_t *r)
{
    exchange_t *ex = ctx;
    ex->streaming = 1;
    r->status = 200;
    if (!ex->req)
        return;
    struct evkeyvalq *h = evhttp_request_get_output_headers(ex->req);
    ex->pending = evbuffer_new();
    ah_buf_init(&ex->scratch, AH_MAX_SSE_EVENT_BYTES * 2);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    add_ahorro_headers(ex, h, 0);
    /* From here evhttp's close callback reports a client that leaves. */
    stop_close_watch(ex);
    /* evhttp's timeout now bounds the gap between two chunks: a model that
     * thinks for a minute before its next token must not be cut off. The
     * upstream's own stream_timeout guards against a silent provider. */
    if (ex->conn)
        evhttp_connection_set_timeout(ex->conn, AH_UPSTREAM_TIMEOUT_S);
    evhttp_send_reply_start(ex->req, 200, "OK");
}

static void sink_stream_raw(void *ctx, ah_request_t *r, const char *raw, size_t len)
{
    stream_queue(ctx, raw, len);
}

static void sink_stream_chunk(void *ctx, ah_request_t *r, json_t *chunk)
{
    exchange_t *ex = ctx;
    ah_buf_reset(&ex->scratch);
    ex->in->stream_chunk(&ex->st, r, chunk, &ex->scratch);
    stream_queue(ex, ex->scratch.data, ex->scratch.len);
}

static void sink_stream_end(void *ctx, ah_request_t *r, int passthrough)
{
    exchange_t *ex = ctx;
    ex->up = NULL;
    ah_request_price(ex->w, r);
    ah_buf_reset(&ex->scratch);
    if (r->fail.status) {
        r->status = r->fail.status;
        ex->in->stream_error(&ex->st, r, &r->fail, &ex->scratch);
        ah_warn("%s: stream ended with error %d: %s", r->id, r->fail.status, r->fail.message);
    } else if (!passthrough) {
        ex->in->stream_end(&ex->st, r, &ex->scratch);
    }
    /* Headers went out before the cost was known: it follows the last event
     * as an SSE comment, which clients' event parsers skip. */
    if (!r->fail.status && r->cost_known)
        ah_buf_printf(&ex->scratch, ": x-ahorro-cost %.8f\n\n", r->cost_usd);
    stream_queue(ex, ex->scratch.data, ex->scratch.len);
    sink_stream_flush(ex);
    if (ex->req) {
        struct evhttp_connection *conn = ex->conn;
        release_conn(ex);
        evhttp_send_reply_end(ex->req);
        write_soon(conn);
        ex->req = NULL;
    }
    finish(ex);
}

static const ah_sink_ops_t sink = {
    .answer = sink_answer,
    .failed = sink_failed,
    .stream_start = sink_stream_start,
    .stream_backlogged = sink_stream_backlogged,
    .stream_raw = sink_stream_raw,
    .stream_flush = sink_stream_flush,
    .stream_chunk = sink_stream_chunk,
    .stream_end = sink_stream_end,
};

/* Answer from the cache: the stored canonical answer, rendered for the
 * client as a normal answer or replayed as a stream. It costs nothing. */
static void serve_cached(exchange_t *ex)
{
    ah_request_t *r = ex->r;
    ah_cache_entry_t *e = r->cache_hit;
    r->cost_usd = 0;
    r->cost_known = 1;
    r->t_first_token_us = ah_now_us();
    if (!r->stream && r->api == AH_API_OPENAI) {
        /* The stored text is already the client's answer: no parse, no render. */
        static const char *const keys[] = {"model"};
        ah_json_span_t model;
        if (ah_json_skim(e->answer, e->answer_len, keys, 1, &model) == AH_E_OK)
            r->served_model = ah_provider_span_string(r, model);
        send_body(ex, 200, e->answer, e->answer_len);
        finish(ex);
        return;
    }
    json_t *canon = json_loadb(e->answer, e->answer_len, 0, NULL);
    if (!canon) {
        ah_request_fail(r, 500, NULL, NULL, NULL, "a cached answer could not be read");
        send_error(ex);
        finish(ex);
        return;
    }
    const char *model = json_string_value(json_object_get(canon, "model"));
    r->served_model = model ? ah_arena_strdup(&r->arena, model) : NULL;
    if (!r->stream) {
        send_rendered(ex, canon);
        json_decref(canon);
        finish(ex);
        return;
    }
    sink_stream_start(ex, r);
    json_t *chunks = ah_answer_chunks(canon);
    size_t i;
    json_t *c;
    json_array_foreach(chunks, i, c) sink_stream_chunk(ex, r, c);
    json_decref(chunks);
    json_decref(canon);
    sink_stream_end(ex, r, 0);
}

/* The client left: cancel the upstream call and end the exchange as 499. */
static void client_gone(exchange_t *ex)
{
    ah_request_t *r = ex->r;
    ah_embed_wait_cancel(ex->embed_wait);
    ex->embed_wait = NULL;
    ah_cache_fetch_cancel(ex->w->gw->cache, ex->fetch);
    ex->fetch = NULL;
    ah_summary_cancel(ex->summary);
    ex->summary = NULL;
    ah_stage_guard_cancel(ex->w, ex->count);
    ex->count = NULL;
    ah_upstream_cancel(ex->up);
    ex->up = NULL;
    r->t_upstream_end_us = ah_now_us();
    if (!r->fail.status)
        ah_request_fail(r, 499, NULL, "client_closed", NULL,
                        "the client closed the connection before the answer was complete");
    r->status = 499;
    finish(ex);
}

/* evhttp's close callback (during a streamed reply). libevent has detached
 * the request (req->evcon = NULL): we own it now. */
static void on_client_close(struct evhttp_connection *conn, void *arg)
{
    exchange_t *ex = arg;
    stop_close_watch(ex);
    ex->conn = NULL;
    if (ex->req) {
        evhttp_request_free(ex->req);
        ex->req = NULL;
    }
    client_gone(ex);
}

/* The socket closed before the reply started: evhttp does not read while the
 * handler owns a request, so it would not notice. The request still belongs
 * to the connection, and goes with it. */
static void on_early_close(evutil_socket_t fd, short what, void *arg)
{
    exchange_t *ex = arg;
    struct evhttp_connection *conn = ex->conn;
    stop_close_watch(ex);
    ex->conn = NULL;
    ex->req = NULL;
    evhttp_connection_set_closecb(conn, NULL, NULL);
    evhttp_connection_free(conn);
    client_gone(ex);
}

/* Until the reply starts, notice a client that leaves (idempotent). */
static void watch_close(exchange_t *ex)
{
    if (ex->close_watch_armed || !ex->conn)
        return;
    evhttp_connection_set_closecb(ex->conn, on_client_close, ex);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(ex->conn);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        event_assign(ex->close_watch, ex->w->base, fd, EV_CLOSED, on_early_close, ex);
        event_add(ex->close_watch, NULL);
        ex->close_watch_armed = 1;
    }
}

static void count(exchange_t *ex);

/* After stages 2-6: answer from the cache, or start the upstream call
 * (once the reservation's counters are in). */
static void proceed(exchange_t *ex)
{
    if (ex->r->guard_pending) {
        count(ex);
        return;
    }
    if (ex->r->cache_hit) {
        serve_cached(ex);
        return;
    }
    if (ah_upstream_start(ex->w, ex->r, &sink, ex, &ex->up)) {
        send_error(ex);
        finish(ex);
        return;
    }
    watch_close(ex);
}

/* The embedding of the last user turn arrived (vec NULL: the endpoint
 * failed, and the request goes on as a miss). */
static void on_embedded(void *ud, const float *vec, int dim)
{
    exchange_t *ex = ud;
    ex->embed_wait = NULL;
    ah_stage_cache_embedded(ex->w, ex->r, vec, dim);
    if (!ex->r->cache_hit && ah_pipeline_route(ex->w, ex->r)) {
        send_error(ex);
        finish(ex);
        return;
    }
    proceed(ex);
}

static void after_shape_stages(exchange_t *ex);

/* The exact cache's lookup in Redis ended (got: the entry is here now):
 * the rest of stage 5, then stage 6 unless it waits for an embedding. */
static void on_fetched(void *arg, int got)
{
    exchange_t *ex = arg;
    ex->fetch = NULL;
    ah_stage_cache_fetched(ex->w, ex->r, got);
    if (!ex->r->cache_hit && !ex->r->cache_pending && ah_pipeline_route(ex->w, ex->r)) {
        send_error(ex);
        finish(ex);
        return;
    }
    after_shape_stages(ex);
}

/* After stage 4: the exact cache may wait for Redis, the semantic cache for
 * an embedding; then the cache answers or the call goes upstream. */
static void after_shape_stages(exchange_t *ex)
{
    ah_worker_t *w = ex->w;
    ah_request_t *r = ex->r;
    if (r->cache_pending == AH_CACHE_WAIT_PEERS) {
        if (ah_stage_cache_fetch(w, r, on_fetched, ex, &ex->fetch)) {
            watch_close(ex);
            return;
        }
        on_fetched(ex, 0); /* could not ask: a miss at once */
        return;
    }
    if (r->cache_pending && w->embed_batcher) {
        /* the semantic cache waits for the embeddings endpoint */
        watch_close(ex);
        ex->embed_wait =
            ah_embed_batcher_submit(w->embed_batcher, r->cache_embed_text, on_embedded, ex);
        return;
    }
    if (r->cache_pending)
        ah_stage_cache_embedded(w, r, NULL, 0);
    proceed(ex);
}

static void on_summarized(void *ctx, ah_request_t *r);

/* After stage 3 (its counters in): stage 4 may wait for a summary. */
static void after_guard_stages(exchange_t *ex)
{
    ah_request_t *r = ex->r;
    if (r->shape_pending) {
        ah_trace_enter(&r->trace, AH_SPAN_SUMMARY);
        if (ah_summary_start(ex->w, r, r->summarizer, r->summary_tokens, on_summarized, ex,
                             &ex->summary)) {
            watch_close(ex);
            return;
        }
        on_summarized(ex, r); /* cached, or could not start: on at once */
        return;
    }
    after_shape_stages(ex);
}

/* The guard's counters are in (a shared state answered): judged, then on
 * from where they were asked for. */
static void on_counted(void *arg)
{
    exchange_t *ex = arg;
    ah_request_t *r = ex->r;
    int wait = r->guard_pending;
    ex->count = NULL;
    if (ah_stage_guard_counted(ex->w, r) ||
        (wait == AH_GUARD_WAIT_LIMITS && ah_pipeline_after_guard(ex->w, r))) {
        send_error(ex);
        finish(ex);
        return;
    }
    if (wait == AH_GUARD_WAIT_LIMITS)
        after_guard_stages(ex);
    else
        proceed(ex);
}

/* r->guard_pending: ask for the counters; the loop serves others meanwhile. */
static void count(exchange_t *ex)
{
    if (ah_stage_guard_count(ex->w, ex->r, on_counted, ex, &ex->count)) {
        watch_close(ex);
        return;
    }
    on_counted(ex); /* answered at once */
}

/* Stage 4's summary is in (or was left out): stages 5 and 6, then on. */
static void on_summarized(void *ctx, ah_request_t *r)
{
    exchange_t *ex = ctx;
    ex->summary = NULL;
    ah_trace_leave(&r->trace, AH_SPAN_SUMMARY, 0);
    if (ah_pipeline_after_shape(ex->w, r)) {
        send_error(ex);
        finish(ex);
        return;
    }
    after_shape_stages(ex);
}

void ah_exchange_handle(ah_worker_t *w, struct evhttp_request *req, ah_api_t api, ah_op_t op)
{
    exchange_t *ex = ah_calloc(1, sizeof *ex + event_get_struct_event_size());
    ex->close_watch = (struct event *)ex->close_watch_space;
    ex->w = w;
    ex->req = req;
    ex->conn = evhttp_request_get_connection(req);
    ex->in = ah_ingress_for(api);
    ex->r = ah_request_new(api, op);
    ah_request_t *r = ex->r;
    ah_metrics_inflight(1);
    r->peer = ah_arena_strdup(&r->arena, ah_peer_of(req));
    const char *tok = ah_token_of(req);
    r->auth_token = tok ? ah_arena_strdup(&r->arena, tok) : NULL;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    const char *tags = evhttp_find_header(ih, "x-ahorro-tags");
    if (!tags)
        tags = evhttp_find_header(ih, "x-litellm-tags");
    r->header_tags = tags ? ah_arena_strdup(&r->arena, tags) : NULL;
    r->anthropic_version = ah_arena_strdup(&r->arena, evhttp_find_header(ih, "anthropic-version"));
    r->anthropic_beta = ah_arena_strdup(&r->arena, evhttp_find_header(ih, "anthropic-beta"));
    r->cache_control = ah_arena_strdup(&r->arena, evhttp_find_header(ih, "Cache-Control"));
    if (w->gw->otlp) {
        r->traceparent = ah_arena_strdup(&r->arena, evhttp_find_header(ih, "traceparent"));
        ah_trace_begin(&r->trace, r->traceparent, w->gw->trace_ratio, &w->rng, r->t_start_us);
    }

    if (ah_pipeline_admit(w, r))
        goto fail;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > w->gw->cfg->max_body_bytes) {
        ah_request_fail(r, 413, "invalid_request_error", "request_too_large", NULL,
                        "Request body of %zu bytes exceeds the limit of %zu bytes", len,
                        w->gw->cfg->max_body_bytes);
        goto fail;
    }
    if (len == 0) {
        ah_request_fail(r, 400, "invalid_request_error", NULL, NULL,
                        "The request body is empty; send a JSON object");
        goto fail;
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, &jerr);
    if (!body) {
        ah_request_fail(r, 400, "invalid_request_error", "invalid_json", NULL,
                        "The request body is not valid JSON (line %d, column %d: %s)", jerr.line,
                        jerr.column, jerr.text);
        goto fail;
    }
    ah_err_t rc = ex->in->parse_chat(r, body);
    json_decref(body);
    if (rc)
        goto fail;
    if (ah_pipeline_before(w, r))
        goto fail;
    if (r->guard_pending)
        count(ex);
    else
        after_guard_stages(ex);
    return;
fail:
    send_error(ex);
    finish(ex);
}

void ah_exchange_models(ah_worker_t *w, struct evhttp_request *req)
{
    const ah_config_t *c = w->gw->cfg;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    ah_api_t api = evhttp_find_header(ih, "anthropic-version") ? AH_API_ANTHROPIC : AH_API_OPENAI;
    ah_request_t *r = ah_request_new(api, AH_OP_CHAT);
    r->peer = ah_arena_strdup(&r->arena, ah_peer_of(req));
    const char *tok = ah_token_of(req);
    r->auth_token = tok ? ah_arena_strdup(&r->arena, tok) : NULL;
    if (ah_stage_auth(w, r)) {
        ah_reply_error(req, api, r->fail.status, r->fail.type, r->fail.code, r->fail.message);
        ah_request_free(r);
        return;
    }
    json_t *ids = json_array();
    for (size_t i = 0; i < c->ndeps; i++) {
        const char *a = c->deps[i].alias;
        int dup = 0;
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(c->deps[j].alias, a) == 0;
        if (!dup && !strchr(a, '*'))
            json_array_append_new(ids, json_string(a));
    }
    json_t *body = ah_ingress_for(api)->render_models(ids);
    ah_reply_json(req, 200, body);
    json_decref(body);
    json_decref(ids);
    ah_request_free(r);
}
