/* fake_reply.c - delivers a prepared reply: at once, after a delay, paced as a stream, or
 * cut by an injected fault.
 *
 * A reply that needs no waiting is sent from the request callback and costs no allocation
 * beyond its body. Anything else becomes a fake_call_t that holds the request, a timer and
 * a close callback on the connection: the timer paces the SSE steps (never a sleep on the
 * loop), and the close callback frees everything when the client goes away first, which
 * is how a held request ([[fault:timeout]], [[fault:stall]]) ends.
 *
 * Ownership of a held request, as libevent 2.1 has it: while we have not finished the
 * reply, a connection that fails detaches the request (req->evcon becomes NULL) and frees
 * itself, calling our close callback; the detached request is then ours to free. When the
 * connection is freed with the request still attached (evhttp_free at shutdown, or our own
 * reset), evhttp frees the request itself. */
#include "fake.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "core/alloc.h"

static atomic_long calls_held; /* fake_call_t alive, all threads */

typedef struct fake_call {
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    struct event *timer;
    struct event *watch; /* close detection until the reply starts, or NULL */
    struct evbuffer *chunk;
    fake_reply_t r;
    size_t next;  /* next step to send */
    size_t limit; /* steps to send before the fault strikes (all when there is none) */
    int started;  /* status line and headers sent */
    int draining; /* RESET: waiting for the sent steps to leave before the RST */
} fake_call_t;

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    case 529:
        return "Site Overloaded";
    default:
        return "Unknown";
    }
}

void fake_reply_init(fake_reply_t *r)
{
    memset(r, 0, sizeof *r);
    r->status = 200;
    r->content_type = "application/json";
    fake_out_init(&r->body, FAKE_MAX_REPLY_BYTES);
}

void fake_reply_free(fake_reply_t *r)
{
    fake_out_free(&r->body);
    ah_free(r->segs);
    r->segs = NULL;
    r->nsegs = r->segcap = 0;
}

void fake_reply_json(fake_reply_t *r, int status)
{
    fake_out_reset(&r->body);
    r->status = status;
    r->content_type = "application/json";
    r->fault = FAKE_FAULT_NONE;
    r->stream = 0;
    r->nsegs = 0;
    r->content_steps = 0;
    r->fault_seg = 0;
}

void fake_reply_stream(fake_reply_t *r)
{
    r->stream = 1;
    r->content_type = "text/event-stream";
}

static void add_step(fake_reply_t *r, long gap_ms)
{
    if (r->nsegs == r->segcap) {
        size_t cap = r->segcap ? r->segcap * 2 : 32;
        if (ah_mul_overflows(cap, sizeof *r->segs)) {
            r->body.err = AH_E_TOOBIG;
            return;
        }
        r->segs = ah_realloc(r->segs, cap * sizeof *r->segs);
        r->segcap = cap;
    }
    r->segs[r->nsegs].end = r->body.buf.len;
    r->segs[r->nsegs].gap_ms = gap_ms;
    r->nsegs++;
}

void fake_reply_content_step(fake_reply_t *r)
{
    add_step(r, r->content_steps == 0 ? fake_opts.ttft_ms : fake_opts.itl_ms);
    if (++r->content_steps == FAKE_STREAM_FAULT_AFTER)
        r->fault_seg = r->nsegs;
}

void fake_reply_final_step(fake_reply_t *r)
{
    add_step(r, r->content_steps == 0 ? fake_opts.ttft_ms : 0);
    if (r->content_steps < FAKE_STREAM_FAULT_AFTER)
        r->fault_seg = r->nsegs ? r->nsegs - 1 : 0;
}

static void add_headers(struct evhttp_request *req, const fake_reply_t *r)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", r->content_type);
    evhttp_add_header(h, "x-fake-simulated", "true");
    if (r->stream)
        evhttp_add_header(h, "Cache-Control", "no-cache");
    if (r->retry_after_s > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", r->retry_after_s);
        evhttp_add_header(h, "Retry-After", v);
    }
    if (r->request_id)
        evhttp_add_header(h, r->request_id, r->request_id_value);
    if (r->rl.api)
        fake_limits_headers(h, r);
}

static void send_whole(struct evhttp_request *req, const fake_reply_t *r)
{
    if (r->body.buf.len)
        evbuffer_add(evhttp_request_get_output_buffer(req), r->body.buf.data, r->body.buf.len);
    evhttp_send_reply(req, r->status, reason_phrase(r->status), NULL);
}

/* ---- held requests ------------------------------------------------------------------ */

long fake_reply_held(void)
{
    return atomic_load(&calls_held);
}

static void call_unwatch(fake_call_t *c)
{
    if (c->watch) {
        event_free(c->watch);
        c->watch = NULL;
    }
}

static void call_free(fake_call_t *c)
{
    atomic_fetch_sub(&calls_held, 1);
    call_unwatch(c);
    event_free(c->timer);
    if (c->chunk)
        evbuffer_free(c->chunk);
    fake_reply_free(&c->r);
    ah_free(c);
}

/* The connection is going away before we finished: free our side, and the request too
 * when evhttp handed it over to us by detaching it. */
static void call_closed(struct evhttp_connection *evcon, void *arg)
{
    fake_call_t *c = arg;
    struct evhttp_request *req = c->req;
    int orphaned = evhttp_request_get_connection(req) == NULL;
    call_free(c);
    if (orphaned)
        evhttp_request_free(req);
}

static void call_arm(fake_call_t *c, long ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* Aborts the connection with an RST. SO_LINGER {1, 0} makes the last close of the socket
 * discard the send queue and reset, but evhttp_connection_free() shuts the socket down
 * for writing first, which would send a FIN ahead of the RST. So the socket is closed
 * here, atomically, by dup2()ing /dev/null over its fd: the fd number stays valid (no
 * other thread can be handed it) and libevent's shutdown and close then hit /dev/null. */
static void call_reset(fake_call_t *c)
{
    struct evhttp_connection *evcon = c->evcon;
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(evcon));
    call_unwatch(c);
    if (fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd >= 0) {
            dup2(null_fd, fd);
            close(null_fd);
        }
    }
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    call_free(c);
    evhttp_connection_free(evcon);
}

/* Until a reply starts, evhttp does not read from the connection and so cannot see the
 * client leave; this watch on the socket does, so that a request held by a fault or a
 * delay is freed as soon as its client gives up. */
static void call_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    fake_call_t *c = arg;
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        call_unwatch(c); /* a pipelined request: nothing to learn, stop watching */
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    evhttp_connection_free(c->evcon); /* EOF or error; calls call_closed, which frees c */
}

static void call_finish(fake_call_t *c)
{
    call_unwatch(c);
    evhttp_connection_set_closecb(c->evcon, NULL, NULL);
    if (c->r.stream)
        evhttp_send_reply_end(c->req);
    else
        send_whole(c->req, &c->r);
    call_free(c);
}

/* Sends the next step and every following one that is due at once. */
static void call_send_run(fake_call_t *c)
{
    const fake_seg_t *segs = c->r.segs;
    size_t from = c->next ? segs[c->next - 1].end : 0;
    size_t i = c->next + 1;
    while (i < c->limit && segs[i].gap_ms == 0)
        i++;
    size_t to = segs[i - 1].end;
    c->next = i;
    if (!c->started) {
        call_unwatch(c); /* evhttp detects a close itself once a reply is under way */
        evhttp_send_reply_start(c->req, c->r.status, reason_phrase(c->r.status));
        c->started = 1;
    }
    if (to > from) {
        if (!c->chunk)
            c->chunk = evbuffer_new();
        evbuffer_add(c->chunk, c->r.body.buf.data + from, to - from);
        evhttp_send_reply_chunk(c->req, c->chunk);
    }
}

static void call_step(fake_call_t *c)
{
    if (!c->r.stream) {
        if (c->r.fault == FAKE_FAULT_NONE)
            call_finish(c);
        else if (c->r.fault == FAKE_FAULT_RESET || c->r.fault == FAKE_FAULT_RESET_EARLY)
            call_reset(c);
        return; /* TIMEOUT, STALL: hold until the client gives up */
    }
    if (c->next < c->limit) {
        call_send_run(c);
        if (c->next < c->limit) {
            call_arm(c, c->r.segs[c->next].gap_ms);
            return;
        }
    }
    if (c->r.fault == FAKE_FAULT_NONE) {
        call_finish(c);
    } else if (c->r.fault == FAKE_FAULT_RESET) {
        c->draining = 1;
        call_arm(c, FAKE_RESET_GRACE_MS);
    } else if (c->r.fault == FAKE_FAULT_RESET_EARLY) {
        call_reset(c); /* nothing was sent */
    }
}

static void call_timer(evutil_socket_t fd, short what, void *arg)
{
    fake_call_t *c = arg;
    if (!c->draining) {
        call_step(c);
        return;
    }
    struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
    if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
        call_arm(c, FAKE_RESET_GRACE_MS);
    else
        call_reset(c);
}

void fake_reply_send(struct evhttp_request *req, struct event_base *base, fake_reply_t *r)
{
    if (r->body.err) {
        fake_reply_json(r, 500);
        fake_out_cstr(&r->body, "{\"error\":{\"message\":\"ahorro-fake: the response exceeds "
                                "its size limit\",\"type\":\"server_error\",\"param\":null,"
                                "\"code\":null}}");
    }
    add_headers(req, r);
    if (!r->stream && r->delay_ms == 0 && r->fault == FAKE_FAULT_NONE) {
        send_whole(req, r);
        fake_reply_free(r);
        return;
    }

    fake_call_t *c = ah_calloc(1, sizeof *c);
    atomic_fetch_add(&calls_held, 1);
    c->req = req;
    c->evcon = evhttp_request_get_connection(req);
    c->r = *r;
    memset(r, 0, sizeof *r);
    c->timer = evtimer_new(base, call_timer, c);
    if (!c->timer)
        abort(); /* libevent is out of memory: the policy of core/alloc.h */
    if (!c->r.stream || c->r.fault == FAKE_FAULT_TIMEOUT || c->r.fault == FAKE_FAULT_RESET_EARLY)
        c->limit = 0;
    else if (c->r.fault == FAKE_FAULT_NONE)
        c->limit = c->r.nsegs;
    else
        c->limit = c->r.fault_seg < c->r.nsegs ? c->r.fault_seg : c->r.nsegs;
    evhttp_connection_set_closecb(c->evcon, call_closed, c);
    evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(c->evcon));
    if (fd >= 0) {
        c->watch = event_new(base, fd, EV_READ | EV_PERSIST, call_watch_cb, c);
        if (!c->watch)
            abort();
        event_add(c->watch, NULL);
    }

    long wait = c->r.delay_ms + (c->limit > 0 ? c->r.segs[0].gap_ms : 0);
    if (wait == 0 && c->r.fault != FAKE_FAULT_RESET && c->r.fault != FAKE_FAULT_RESET_EARLY)
        call_step(c);
    else
        call_arm(c, wait); /* a reset always waits a turn of the loop */
}
