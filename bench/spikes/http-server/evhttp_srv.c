/* Spike: libevent 2.1 evhttp server, one event_base + evhttp per thread,
 * each with its own SO_REUSEPORT listener.
 *
 *   evhttp_srv PORT [THREADS]
 *
 * Endpoints (POST):
 *   /v1/chat/completions               fixed ~440-byte JSON, Content-Length
 *   /v1/chat/completions/stream        20 SSE chunks, one per loop turn (0-timer)
 *   /v1/chat/completions/stream_burst  20 SSE chunks queued in the handler
 * Probe endpoints (GET or POST; log to stderr, used by probe.sh):
 *   /probe/wait       reply after 1 s (request "suspended"; SPIKE_WAIT_MS overrides)
 *   /probe/wait_hdrs  send headers at once, re-enable EV_READ, body after 1 s
 *   /probe/wait_hdrs_plain  send headers at once (no EV_READ re-enable), body after 1 s
 *   /probe/wait_evclosed    no reply; own EV_CLOSED watcher on the fd; on hang-up
 *                           evhttp_connection_free() (frees the request)
 *   /probe/drip       10 chunks, one every 200 ms (SPIKE_DRIP_MS overrides)
 * SPIKE_TIMEOUT sets evhttp_set_timeout (default 60 s).
 */
#include "common.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

static int g_port;
static double g_t0;

struct worker {
    pthread_t th;
    struct event_base *base;
    struct evhttp *http;
    int idx;
};

static int require_body(struct evhttp_request *req)
{
    /* evhttp has already read the whole body (Content-Length or chunked)
     * before calling us; consume it. */
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST && n == 0) {
        evhttp_send_error(req, 400, "empty body");
        return -1;
    }
    evbuffer_drain(in, n);
    return 0;
}

static void on_complete(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (require_body(req) < 0)
        return;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/json");
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add_reference(out, RESP_JSON, RESP_JSON_LEN, NULL, NULL);
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void start_sse(struct evhttp_request *req)
{
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "text/event-stream");
    evhttp_add_header(oh, "Cache-Control", "no-cache");
    evhttp_send_reply_start(req, 200, "OK");
}

/* ---- stream: one chunk per event-loop turn (models upstream reads) ---- */
struct stream {
    struct evhttp_request *req;
    struct event *ev;
    struct evbuffer *buf;
    int sent;
};

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct stream *s = arg;
    static const struct timeval zero = {0, 0};
    if (s->sent < STREAM_CHUNKS - 1) {
        evbuffer_add_reference(s->buf, SSE_CHUNK, SSE_CHUNK_LEN, NULL, NULL);
        evhttp_send_reply_chunk(s->req, s->buf);
        s->sent++;
        evtimer_add(s->ev, &zero);
        return;
    }
    evbuffer_add_reference(s->buf, SSE_DONE, SSE_DONE_LEN, NULL, NULL);
    evhttp_send_reply_chunk(s->req, s->buf);
    evhttp_send_reply_end(s->req); /* frees req (also if the client left) */
    event_free(s->ev);
    evbuffer_free(s->buf);
    free(s);
}

static void on_stream(struct evhttp_request *req, void *arg)
{
    struct worker *w = arg;
    if (require_body(req) < 0)
        return;
    start_sse(req);
    struct stream *s = calloc(1, sizeof(*s));
    s->req = req;
    s->buf = evbuffer_new();
    s->ev = evtimer_new(w->base, stream_tick, s);
    stream_tick(-1, 0, s);
}

static void on_stream_burst(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (require_body(req) < 0)
        return;
    start_sse(req);
    struct evbuffer *b = evbuffer_new();
    for (int i = 0; i < STREAM_CHUNKS - 1; i++) {
        evbuffer_add_reference(b, SSE_CHUNK, SSE_CHUNK_LEN, NULL, NULL);
        evhttp_send_reply_chunk(req, b);
    }
    evbuffer_add_reference(b, SSE_DONE, SSE_DONE_LEN, NULL, NULL);
    evhttp_send_reply_chunk(req, b);
    evhttp_send_reply_end(req);
    evbuffer_free(b);
}

/* ---- probes: disconnect notification behaviour ---- */
struct probe {
    struct evhttp_request *req;
    struct event *ev;
    struct evbuffer *buf;
    struct event *closed_ev;
    int n, kind; /* 0 wait, 1 wait_hdrs, 2 drip, 3 wait_hdrs_plain, 4 wait_evclosed */
    int closed;
    double t0;
};

static void probe_closecb(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct probe *p = arg;
    p->closed = 1;
    fprintf(stderr, "[evhttp] closecb fired at +%.3fs (chunks sent=%d)\n", now_s() - p->t0, p->n);
}

static void probe_chunk_flushed(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct probe *p = arg;
    fprintf(stderr, "[evhttp] chunk_with_cb: output drained at +%.3fs (chunk %d)\n",
            now_s() - p->t0, p->n);
}

static void probe_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct probe *p = arg;
    struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);
    if (p->kind == 0) {
        fprintf(stderr, "[evhttp] wait: timer fired, replying at +%.3fs, req->evcon %s, closed=%d\n",
                now_s() - p->t0, evcon ? "set" : "NULL", p->closed);
        if (evcon)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        evbuffer_add(p->buf, "done\n", 5);
        evhttp_send_reply(p->req, 200, "OK", p->buf);
        goto out;
    }
    if (p->kind == 4) {
        fprintf(stderr, "[evhttp] wait_evclosed: replying at +%.3fs\n", now_s() - p->t0);
        event_free(p->closed_ev);
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evbuffer_add(p->buf, "done\n", 5);
        evhttp_send_reply(p->req, 200, "OK", p->buf);
        goto out;
    }
    if (p->kind == 1 || p->kind == 3) {
        fprintf(stderr, "[evhttp] wait_hdrs: finishing at +%.3fs, req->evcon %s, closed=%d\n",
                now_s() - p->t0, evcon ? "set" : "NULL", p->closed);
        if (evcon)
            evhttp_connection_set_closecb(evcon, NULL, NULL);
        evbuffer_add(p->buf, "data: done\n\n", 12);
        evhttp_send_reply_chunk(p->req, p->buf);
        evhttp_send_reply_end(p->req);
        goto out;
    }
    /* drip */
    if (p->n < 10 && !p->closed) {
        evbuffer_add_printf(p->buf, "data: chunk %d\n\n", p->n);
        p->n++;
        evhttp_send_reply_chunk_with_cb(p->req, p->buf, probe_chunk_flushed, p);
        fprintf(stderr, "[evhttp] drip: chunk %d queued at +%.3fs, req->evcon %s\n", p->n,
                now_s() - p->t0, evcon ? "set" : "NULL");
        const char *dm = getenv("SPIKE_DRIP_MS");
        long drip_ms = dm ? atol(dm) : 200;
        struct timeval tv = {drip_ms / 1000, (drip_ms % 1000) * 1000};
        evtimer_add(p->ev, &tv);
        return;
    }
    fprintf(stderr, "[evhttp] drip: end at +%.3fs after %d chunks, closed=%d\n", now_s() - p->t0,
            p->n, p->closed);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    evhttp_send_reply_end(p->req);
out:
    event_free(p->ev);
    evbuffer_free(p->buf);
    free(p);
}

/* EV_CLOSED (EPOLLRDHUP) on the client fd while the request waits. */
static void probe_fd_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct probe *p = arg;
    fprintf(stderr, "[evhttp] EV_CLOSED watcher fired at +%.3fs (what=0x%x); freeing connection\n",
            now_s() - p->t0, (unsigned)what);
    struct evhttp_connection *evcon = evhttp_request_get_connection(p->req);
    event_free(p->closed_ev);
    event_free(p->ev);
    evhttp_connection_free(evcon); /* frees the request too; closecb runs */
    evbuffer_free(p->buf);
    free(p);
}

static void on_probe(struct evhttp_request *req, void *arg)
{
    struct worker *w = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct probe *p = calloc(1, sizeof(*p));
    p->req = req;
    p->t0 = now_s();
    p->buf = evbuffer_new();
    p->ev = evtimer_new(w->base, probe_tick, p);
    p->kind = strcmp(path, "/probe/wait") == 0             ? 0
              : strcmp(path, "/probe/wait_hdrs") == 0       ? 1
              : strcmp(path, "/probe/drip") == 0            ? 2
              : strcmp(path, "/probe/wait_hdrs_plain") == 0 ? 3
                                                            : 4;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    evhttp_connection_set_closecb(evcon, probe_closecb, p);
    fprintf(stderr, "[evhttp] %s: request complete, handler entered\n", path);
    const char *wm = getenv("SPIKE_WAIT_MS");
    long wait_ms = wm ? atol(wm) : 1000;
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    if (p->kind == 1) {
        start_sse(req);
        /* Workaround: evhttp disabled EV_READ after reading the body; after
         * reply_start the read callback is NULL, so re-enabling EV_READ only
         * serves EOF detection (pipelined bytes are buffered, not parsed). */
        bufferevent_enable(evhttp_connection_get_bufferevent(evcon), EV_READ);
    } else if (p->kind == 2) {
        start_sse(req);
        tv.tv_sec = 0;
        tv.tv_usec = 0;
    } else if (p->kind == 3) {
        start_sse(req);
    } else if (p->kind == 4) {
        evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
        p->closed_ev = event_new(w->base, fd, EV_CLOSED, probe_fd_closed, p);
        event_add(p->closed_ev, NULL);
    }
    evtimer_add(p->ev, &tv);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

static int setup_worker(struct worker *w)
{
    w->base = event_base_new();
    w->http = evhttp_new(w->base);
    if (!w->base || !w->http)
        return -1;
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_POST | EVHTTP_REQ_GET);
    evhttp_set_max_headers_size(w->http, 16 * 1024);
    evhttp_set_max_body_size(w->http, 4 * 1024 * 1024);
    const char *to = getenv("SPIKE_TIMEOUT"); /* probe.sh sets 1 to test timeouts */
    evhttp_set_timeout(w->http, to ? atoi(to) : 60);
    evhttp_set_cb(w->http, "/v1/chat/completions", on_complete, w);
    evhttp_set_cb(w->http, "/v1/chat/completions/stream", on_stream, w);
    evhttp_set_cb(w->http, "/v1/chat/completions/stream_burst", on_stream_burst, w);
    evhttp_set_cb(w->http, "/probe/wait", on_probe, w);
    evhttp_set_cb(w->http, "/probe/wait_hdrs", on_probe, w);
    evhttp_set_cb(w->http, "/probe/drip", on_probe, w);
    evhttp_set_cb(w->http, "/probe/wait_hdrs_plain", on_probe, w);
    evhttp_set_cb(w->http, "/probe/wait_evclosed", on_probe, w);

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)g_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct evconnlistener *lis = evconnlistener_new_bind(
        w->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE,
        1024, (struct sockaddr *)&sin, sizeof(sin));
    if (!lis) {
        perror("evconnlistener_new_bind");
        return -1;
    }
    /* evhttp never sets TCP_NODELAY on accepted sockets; without it, small
     * SSE chunks written one per loop turn hit Nagle + delayed-ACK stalls
     * (~40 ms).  Linux copies TCP_NODELAY from the listener to accepted
     * sockets, so set it once here.  SPIKE_NODELAY=0 disables (to show it). */
    const char *nd = getenv("SPIKE_NODELAY");
    if (!nd || strcmp(nd, "0") != 0) {
        int one = 1;
        setsockopt(evconnlistener_get_fd(lis), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (!evhttp_bind_listener(w->http, lis))
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [THREADS]\n", argv[0]);
        return 2;
    }
    g_port = atoi(argv[1]);
    int nthreads = argc > 2 ? atoi(argv[2]) : 2;
    if (nthreads < 1 || nthreads > 64)
        return 2;
    signal(SIGPIPE, SIG_IGN);
    g_t0 = now_s();
    struct worker *ws = calloc((size_t)nthreads, sizeof(*ws));
    for (int i = 0; i < nthreads; i++) {
        ws[i].idx = i;
        if (setup_worker(&ws[i]) < 0)
            return 1;
    }
    fprintf(stderr, "evhttp (libevent %s, %s) listening on 127.0.0.1:%d, %d threads\n",
            event_get_version(), event_base_get_method(ws[0].base), g_port, nthreads);
    for (int i = 0; i < nthreads; i++)
        pthread_create(&ws[i].th, NULL, worker_main, &ws[i]);
    for (int i = 0; i < nthreads; i++)
        pthread_join(ws[i].th, NULL);
    return 0;
}
