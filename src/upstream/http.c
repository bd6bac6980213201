/* http.c - libcurl multi_socket on libevent (curl's hiperfifo pattern).
 *
 * curl tells us which sockets to watch (socket callback) and when to call
 * it back (timer callback); libevent tells curl when a socket is ready.
 * Completions are collected with curl_multi_info_read after each action.
 * An idle stream is cut by CURLOPT_LOW_SPEED_* (1 byte in idle_timeout_s).
 * curl's sockets are opened and closed through our callbacks, so a pooled
 * connection's socket stays registered with the loop between transfers
 * (ah_sock_t below). One ah_http_t per event loop, used from that loop only. */
#include "upstream/http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/limits.h"

/* Easy handles kept for reuse: curl_easy_init and curl_easy_cleanup per
 * transfer were ~3% of the gateway's CPU in the bench profile. */
#define IDLE_HANDLES 64

/* A socket curl asked us to watch, and its event (allocated with it, of
 * event_get_struct_event_size bytes, to keep libevent's ABI). A socket curl
 * opened through open_socket reaches close_socket when curl closes it; such
 * a socket stays registered while its connection waits in curl's pool
 * ("parked"): the next transfer on it then costs no epoll_ctl ADD and the end
 * of this one no DEL. */
typedef struct ah_sock {
    ah_http_t *h;
    curl_socket_t fd;
    short kind;          /* the events the event is armed with */
    unsigned ours : 1;   /* opened by open_socket: close_socket will see it closed */
    unsigned armed : 1;  /* the event is added */
    unsigned parked : 1; /* armed, but curl is not watching it */
    struct event *ev;    /* points just past this struct */
} ah_sock_t;

struct ah_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int active;
    int in_action; /* inside curl_multi_socket_action (see timer_cb) */
    CURL *idle[IDLE_HANDLES];
    int nidle;
    ah_sock_t **socks; /* by file descriptor */
    size_t nsocks;
};

static CURL *easy_get(ah_http_t *h)
{
    if (h->nidle == 0)
        return curl_easy_init();
    CURL *e = h->idle[--h->nidle];
    curl_easy_reset(e); /* options back to defaults; its caches stay */
    return e;
}

static void easy_put(ah_http_t *h, CURL *e)
{
    if (h->nidle < IDLE_HANDLES)
        h->idle[h->nidle++] = e;
    else
        curl_easy_cleanup(e);
}

struct ah_http_xfer {
    ah_http_t *h;
    CURL *easy;
    ah_http_callbacks_t cb;
    void *ud;
    long status;
    int retry_after_s;
    int headers_done;
    int aborted_by_user; /* on_data asked to stop */
    char errbuf[CURL_ERROR_SIZE];
};

static void check_done(ah_http_t *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        ah_http_xfer_t *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = msg->data.result;
        ah_err_t err = AH_E_OK;
        const char *m = "";
        if (res != CURLE_OK) {
            if (x->aborted_by_user) {
                err = AH_E_CLOSED;
                m = "aborted";
            } else if (res == CURLE_OPERATION_TIMEDOUT) {
                err = AH_E_TIMEOUT;
                m = x->errbuf[0] ? x->errbuf : curl_easy_strerror(res);
            } else {
                err = AH_E_UPSTREAM;
                m = x->errbuf[0] ? x->errbuf : curl_easy_strerror(res);
            }
        }
        if (!x->status)
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &x->status);
        curl_multi_remove_handle(h->multi, x->easy);
        h->active--;
        if (x->cb.on_done)
            x->cb.on_done(x->ud, err, x->status, m);
        easy_put(h, x->easy);
        ah_free(x);
    }
}

/* The socket record of fd; with create, made when missing (NULL when out of
 * memory or fd is negative). */
static ah_sock_t *sock_of(ah_http_t *h, curl_socket_t fd, int create)
{
    if (fd < 0)
        return NULL;
    size_t i = (size_t)fd;
    if (i >= h->nsocks) {
        if (!create)
            return NULL;
        size_t n = h->nsocks ? h->nsocks : 64;
        while (n <= i)
            n *= 2;
        ah_sock_t **t = realloc(h->socks, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + h->nsocks, 0, (n - h->nsocks) * sizeof *t);
        h->socks = t;
        h->nsocks = n;
    }
    if (!h->socks[i] && create) {
        ah_sock_t *k = ah_calloc(1, sizeof *k + event_get_struct_event_size());
        k->h = h;
        k->fd = fd;
        k->ev = (struct event *)(k + 1);
        h->socks[i] = k;
    }
    return h->socks[i];
}

static void sock_disarm(ah_sock_t *k)
{
    if (k->armed)
        event_del(k->ev);
    k->armed = k->parked = 0;
}

static void sock_drop(ah_http_t *h, ah_sock_t *k)
{
    sock_disarm(k);
    h->socks[k->fd] = NULL;
    ah_free(k);
}

/* CURLOPT_OPENSOCKETFUNCTION: curl's own default, remembered as ours. */
static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    ah_http_t *h = clientp;
    curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
    if (fd == CURL_SOCKET_BAD)
        return fd;
    ah_sock_t *k = sock_of(h, fd, 0);
    if (k) /* a record that outlived its socket, which should not happen */
        sock_drop(h, k);
    k = sock_of(h, fd, 1);
    if (!k) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    k->ours = 1;
    return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: the event goes before the socket does, so a
 * later socket with the same number never meets a stale registration. */
static int close_socket(void *clientp, curl_socket_t fd)
{
    ah_http_t *h = clientp;
    ah_sock_t *k = sock_of(h, fd, 0);
    if (k)
        sock_drop(h, k);
    return close(fd);
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    ah_sock_t *k = arg;
    ah_http_t *h = k->h;
    if (k->parked) {
        /* a pooled connection that became readable: the server closed it or
         * sent what nobody asked for; curl's check before reuse will say */
        sock_disarm(k);
        return;
    }
    int flags = 0, running;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    h->in_action++;
    curl_multi_socket_action(h->multi, fd, flags, &running);
    check_done(h);
    h->in_action--;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    ah_http_t *h = arg;
    int running;
    h->in_action++;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
    h->in_action--;
}

/* curl's interest in a socket changed. Each socket has one event, re-armed
 * in place, and only when the events wanted change. */
static int socket_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    ah_http_t *h = userp;
    ah_sock_t *k = socketp ? socketp : sock_of(h, s, what != CURL_POLL_REMOVE);
    if (what == CURL_POLL_REMOVE) {
        if (!k)
            return 0;
        curl_multi_assign(h->multi, s, NULL);
        if (k->ours && k->armed)
            k->parked = 1; /* stays registered until reused or closed */
        else if (k->ours)
            sock_disarm(k);
        else
            sock_drop(h, k); /* closed without close_socket (the resolver's) */
        return 0;
    }
    if (!k)
        return -1;
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    k->parked = 0;
    if (!socketp)
        curl_multi_assign(h->multi, s, k);
    if (k->armed && k->kind == kind)
        return 0;
    sock_disarm(k);
    event_assign(k->ev, h->base, s, kind, on_socket_event, k);
    event_add(k->ev, NULL);
    k->kind = kind;
    k->armed = 1;
    return 0;
}

/* curl's next timeout changed. 0 ("as soon as possible") is what every
 * new transfer asks for: the timer is then made active, so that it runs
 * after the current callback returns, in the same pass of the loop, instead
 * of a zero timeout costing one more epoll_wait before the request leaves.
 * Inside curl's own action the zero timeout goes through the loop as usual,
 * so a curl that keeps asking for 0 cannot starve the other events. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ah_http_t *h = userp;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    if (timeout_ms == 0 && !h->in_action) {
        event_active(h->timer, EV_TIMEOUT, 1);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(h->timer, &tv);
    return 0;
}

ah_http_t *ah_http_new(struct event_base *base)
{
    ah_http_t *h = ah_calloc(1, sizeof *h);
    h->base = base;
    h->multi = curl_multi_init();
    if (!h->multi) {
        ah_error("curl_multi_init failed");
        abort();
    }
    h->timer = evtimer_new(base, on_timer, h);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, 256L);
    return h;
}

void ah_http_free(ah_http_t *h)
{
    if (!h)
        return;
    while (h->nidle)
        curl_easy_cleanup(h->idle[--h->nidle]);
    curl_multi_cleanup(h->multi); /* closes the pooled connections: close_socket */
    for (size_t i = 0; i < h->nsocks; i++)
        if (h->socks[i])
            sock_drop(h, h->socks[i]);
    free(h->socks);
    event_free(h->timer);
    ah_free(h);
}

int ah_http_active(const ah_http_t *h)
{
    return h->active;
}

static size_t header_cb(char *p, size_t size, size_t n, void *ud)
{
    ah_http_xfer_t *x = ud;
    size_t len = size * n;
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 100-continue, say): start over. */
        x->retry_after_s = 0;
        x->headers_done = 0;
    } else if (len > 12 && strncasecmp(p, "retry-after:", 12) == 0) {
        long v = strtol(p + 12, NULL, 10);
        if (v > 0 && v < 86400)
            x->retry_after_s = (int)v;
    } else if (len <= 2 && (p[0] == '\r' || p[0] == '\n')) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        if (x->status >= 200 && !x->headers_done) {
            x->headers_done = 1;
            if (x->cb.on_headers)
                x->cb.on_headers(x->ud, x->status, x->retry_after_s);
        }
    }
    return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *ud)
{
    ah_http_xfer_t *x = ud;
    size_t len = size * n;
    int rc = x->cb.on_data ? x->cb.on_data(x->ud, p, len) : 0;
    if (rc == AH_HTTP_PAUSE)
        return CURL_WRITEFUNC_PAUSE;
    if (rc) {
        x->aborted_by_user = 1;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    return len;
}

ah_http_xfer_t *ah_http_start(ah_http_t *h, const ah_http_request_t *req,
                              const ah_http_callbacks_t *cb, void *ud)
{
    ah_http_xfer_t *x = ah_calloc(1, sizeof *x);
    x->h = h;
    x->cb = *cb;
    x->ud = ud;
    x->easy = easy_get(h);
    if (!x->easy) {
        ah_free(x);
        return NULL;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    if (!req->body)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, (long)AH_UPSTREAM_CONNECT_TIMEOUT_S);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->timeout_s > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_s * 1000));
    if (req->idle_timeout_s > 0) {
        long t = (long)req->idle_timeout_s;
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, t > 0 ? t : 1L);
    }
    if (curl_multi_add_handle(h->multi, e) != CURLM_OK) {
        easy_put(h, e);
        ah_free(x);
        return NULL;
    }
    h->active++;
    return x;
}

void ah_http_resume(ah_http_xfer_t *x)
{
    if (x)
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
}

void ah_http_cancel(ah_http_xfer_t *x)
{
    if (!x)
        return;
    curl_multi_remove_handle(x->h->multi, x->easy);
    x->h->active--;
    easy_put(x->h, x->easy);
    ah_free(x);
}
