/* Spike: libmicrohttpd server in several threading modes.
 *
 *   mhd_srv MODE PORT [THREADS]
 *
 * MODE:
 *   pool   MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, THREAD_POOL_SIZE=THREADS
 *   turbo  same as pool plus MHD_USE_TURBO
 *   tpc    MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL
 *   ext    THREADS x (libevent event_base + MHD daemon in external-loop epoll mode,
 *          MHD_OPTION_LISTENING_ADDRESS_REUSE = SO_REUSEPORT); the MHD epoll fd is
 *          watched by libevent and MHD_run() is called from the loop.  This is the
 *          shape a gateway would use to share one loop with libcurl multi.
 *
 * Endpoints (POST):
 *   /v1/chat/completions                 fixed ~440-byte JSON
 *   /v1/chat/completions/stream          20 SSE chunks via MHD_create_response_from_callback,
 *                                        one chunk per reader call (no delay)
 *   /v1/chat/completions/stream_burst    same 20 events, the reader packs as many as fit
 *                                        into each call (all of them: one HTTP chunk)
 *   /v1/chat/completions/stream_resume   (ext only) 20 chunks, each "arriving" from a
 *                                        libevent 0-timer; the reader suspends the
 *                                        connection when no chunk is ready and the timer
 *                                        resumes it (upstream-driven streaming shape)
 * Probe endpoints (ext only; log to stderr, used by probe.sh):
 *   /probe/wait   suspend after the body, resume and reply after 1 s
 *   /probe/wait_evclosed  as /probe/wait plus an own libevent EV_CLOSED watcher on the
 *                 connection fd (MHD_CONNECTION_INFO_CONNECTION_FD); on hang-up: resume
 *                 and return MHD_NO from the access handler
 *   /probe/drip   10 chunks, one every 200 ms (suspend/resume between chunks)
 * Env: SPIKE_TIMEOUT (MHD_OPTION_CONNECTION_TIMEOUT, default 60 s), SPIKE_WAIT_MS,
 * SPIKE_DRIP_MS (probe timings).
 */
#include "common.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

enum kind { K_COMPLETE, K_STREAM, K_STREAM_BURST, K_STREAM_RESUME, K_PROBE_WAIT, K_PROBE_WAIT_EVC, K_PROBE_DRIP, K_404 };

struct xworker { /* ext mode */
    pthread_t th;
    struct event_base *base;
    struct MHD_Daemon *d;
    struct event *fd_ev, *timer_ev;
};

struct req {
    enum kind kind;
    size_t body;
    int chunks;
    int ready;     /* a chunk is available (stream_resume / drip) */
    int suspended; /* we called MHD_suspend_connection */
    int replied;
    int aborted;
    struct event *cev; /* EV_CLOSED watcher */
    struct MHD_Connection *conn;
    struct xworker *w;
    struct event *ev;
    double t0;
};

static int g_ext;
static long g_wait_ms = 1000, g_drip_ms = 200;

static enum kind classify(const char *url)
{
    if (strcmp(url, "/v1/chat/completions") == 0)
        return K_COMPLETE;
    if (strcmp(url, "/v1/chat/completions/stream") == 0)
        return K_STREAM;
    if (strcmp(url, "/v1/chat/completions/stream_burst") == 0)
        return K_STREAM_BURST;
    if (g_ext && strcmp(url, "/v1/chat/completions/stream_resume") == 0)
        return K_STREAM_RESUME;
    if (g_ext && strcmp(url, "/probe/wait") == 0)
        return K_PROBE_WAIT;
    if (g_ext && strcmp(url, "/probe/wait_evclosed") == 0)
        return K_PROBE_WAIT_EVC;
    if (g_ext && strcmp(url, "/probe/drip") == 0)
        return K_PROBE_DRIP;
    return K_404;
}

static void ext_drive(struct xworker *w);

/* Content reader: one SSE event per call. */
static ssize_t crc_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct req *r = cls;
    if (r->chunks >= STREAM_CHUNKS)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (max < SSE_CHUNK_LEN)
        return 0;
    r->chunks++;
    if (r->chunks == STREAM_CHUNKS) {
        memcpy(buf, SSE_DONE, SSE_DONE_LEN);
        return (ssize_t)SSE_DONE_LEN;
    }
    memcpy(buf, SSE_CHUNK, SSE_CHUNK_LEN);
    return (ssize_t)SSE_CHUNK_LEN;
}

/* Content reader: as many SSE events as fit in the buffer per call. */
static ssize_t crc_burst(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct req *r = cls;
    size_t len = 0;
    if (r->chunks >= STREAM_CHUNKS)
        return MHD_CONTENT_READER_END_OF_STREAM;
    while (r->chunks < STREAM_CHUNKS - 1 && max - len >= SSE_CHUNK_LEN) {
        memcpy(buf + len, SSE_CHUNK, SSE_CHUNK_LEN);
        len += SSE_CHUNK_LEN;
        r->chunks++;
    }
    if (r->chunks == STREAM_CHUNKS - 1 && max - len >= SSE_DONE_LEN) {
        memcpy(buf + len, SSE_DONE, SSE_DONE_LEN);
        len += SSE_DONE_LEN;
        r->chunks++;
    }
    return (ssize_t)len;
}

/* "Upstream" produced a chunk: mark ready and resume the connection. */
static void upstream_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct req *r = arg;
    r->ready = 1;
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        ext_drive(r->w); /* let MHD pick up the resumed connection now */
    }
}

static ssize_t crc_resume(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct req *r = cls;
    int limit = r->kind == K_PROBE_DRIP ? 10 : STREAM_CHUNKS;
    if (r->chunks >= limit) {
        if (r->kind == K_PROBE_DRIP)
            fprintf(stderr, "[mhd] drip: end of stream at +%.3fs\n", now_s() - r->t0);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    if (!r->ready) {
        /* nothing from upstream yet: park the connection */
        r->suspended = 1;
        MHD_suspend_connection(r->conn);
        return 0;
    }
    if (max < SSE_CHUNK_LEN)
        return 0;
    r->ready = 0;
    r->chunks++;
    size_t len;
    if (r->kind == K_PROBE_DRIP) {
        len = (size_t)snprintf(buf, max, "data: chunk %d\n\n", r->chunks);
        fprintf(stderr, "[mhd] drip: chunk %d handed to MHD at +%.3fs\n", r->chunks,
                now_s() - r->t0);
    } else if (r->chunks == STREAM_CHUNKS) {
        memcpy(buf, SSE_DONE, SSE_DONE_LEN);
        len = SSE_DONE_LEN;
    } else {
        memcpy(buf, SSE_CHUNK, SSE_CHUNK_LEN);
        len = SSE_CHUNK_LEN;
    }
    long ms = r->kind == K_PROBE_DRIP ? g_drip_ms : 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(r->ev, &tv);
    return (ssize_t)len;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned code, const char *body,
                                  size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ret = MHD_queue_response(c, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result queue_sse(struct req *r, MHD_ContentReaderCallback crc)
{
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, crc, r, NULL);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(r->conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void probe_wait_done(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct req *r = arg;
    fprintf(stderr, "[mhd] wait: timer fired at +%.3fs, resuming\n", now_s() - r->t0);
    r->ready = 1;
    r->suspended = 0;
    MHD_resume_connection(r->conn);
    ext_drive(r->w);
}

static void probe_fd_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct req *r = arg;
    fprintf(stderr, "[mhd] EV_CLOSED watcher fired at +%.3fs (what=0x%x); resuming to abort\n",
            now_s() - r->t0, (unsigned)what);
    evtimer_del(r->ev);
    r->aborted = 1;
    r->ready = 1;
    r->suspended = 0;
    MHD_resume_connection(r->conn);
    ext_drive(r->w);
}

static enum MHD_Result ahc(void *cls, struct MHD_Connection *c, const char *url,
                           const char *method, const char *version, const char *upload_data,
                           size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    struct req *r = *con_cls;
    if (r == NULL) { /* headers parsed; body not yet read */
        r = calloc(1, sizeof(*r));
        r->kind = classify(url);
        r->conn = c;
        r->w = cls;
        r->t0 = now_s();
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* body bytes */
        r->body += *upload_data_size;
        *upload_data_size = 0;
        return MHD_YES;
    }
    /* body complete */
    if (r->replied)
        return MHD_YES;
    if (strcmp(method, MHD_HTTP_METHOD_POST) == 0 && r->body == 0) {
        r->replied = 1;
        return reply_json(c, 400, "{\"error\":\"empty body\"}\n", 23);
    }
    switch (r->kind) {
    case K_COMPLETE:
        r->replied = 1;
        return reply_json(c, MHD_HTTP_OK, RESP_JSON, RESP_JSON_LEN);
    case K_STREAM:
        r->replied = 1;
        return queue_sse(r, crc_stream);
    case K_STREAM_BURST:
        r->replied = 1;
        return queue_sse(r, crc_burst);
    case K_STREAM_RESUME:
    case K_PROBE_DRIP:
        r->replied = 1;
        r->ready = 1; /* first chunk available immediately */
        r->ev = evtimer_new(r->w->base, upstream_tick, r);
        if (r->kind == K_PROBE_DRIP)
            fprintf(stderr, "[mhd] drip: request complete, handler entered\n");
        return queue_sse(r, crc_resume);
    case K_PROBE_WAIT:
    case K_PROBE_WAIT_EVC:
        if (!r->ready) {
            if (r->kind == K_PROBE_WAIT_EVC) {
                const union MHD_ConnectionInfo *ci =
                    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
                r->cev = event_new(r->w->base, ci->connect_fd, EV_CLOSED, probe_fd_closed, r);
                event_add(r->cev, NULL);
            }
            fprintf(stderr, "[mhd] wait: request complete, suspending for %ld ms\n", g_wait_ms);
            r->ev = evtimer_new(r->w->base, probe_wait_done, r);
            struct timeval tv = {g_wait_ms / 1000, (g_wait_ms % 1000) * 1000};
            evtimer_add(r->ev, &tv);
            r->suspended = 1;
            MHD_suspend_connection(c);
            return MHD_YES;
        }
        if (r->aborted) {
            fprintf(stderr, "[mhd] wait: resumed after hang-up, returning MHD_NO at +%.3fs\n",
                    now_s() - r->t0);
            return MHD_NO;
        }
        fprintf(stderr, "[mhd] wait: resumed, queueing reply at +%.3fs\n", now_s() - r->t0);
        r->replied = 1;
        return reply_json(c, MHD_HTTP_OK, "done\n", 5);
    default:
        r->replied = 1;
        return reply_json(c, MHD_HTTP_NOT_FOUND, "{}\n", 3);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    struct req *r = *con_cls;
    if (!r)
        return;
    if (r->kind == K_PROBE_WAIT || r->kind == K_PROBE_WAIT_EVC || r->kind == K_PROBE_DRIP)
        fprintf(stderr, "[mhd] NOTIFY_COMPLETED toe=%d at +%.3fs (chunks=%d)\n", (int)toe,
                now_s() - r->t0, r->chunks);
    if (r->ev)
        event_free(r->ev);
    if (r->cev)
        event_free(r->cev);
    free(r);
    *con_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (g_ext && toe == MHD_CONNECTION_NOTIFY_CLOSED)
        fprintf(stderr, "[mhd] NOTIFY_CONNECTION closed\n");
}

/* ---- ext mode: drive MHD from a libevent loop ---- */
static void ext_drive(struct xworker *w)
{
    MHD_run(w->d);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(w->d, &ms) == MHD_YES) {
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
        evtimer_add(w->timer_ev, &tv);
    } else {
        evtimer_del(w->timer_ev);
    }
}

static void ext_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ext_drive(arg);
}

static void *ext_main(void *arg)
{
    struct xworker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s pool|turbo|tpc|ext PORT [THREADS]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    int port = atoi(argv[2]);
    unsigned nthreads = argc > 3 ? (unsigned)atoi(argv[3]) : 2;
    signal(SIGPIPE, SIG_IGN);
    const char *to = getenv("SPIKE_TIMEOUT"); /* probe.sh sets 1 to test timeouts */
    unsigned timeout_s = to ? (unsigned)atoi(to) : 60;
    const char *wm = getenv("SPIKE_WAIT_MS");
    g_wait_ms = wm ? atol(wm) : 1000;
    const char *dm = getenv("SPIKE_DRIP_MS");
    g_drip_ms = dm ? atol(dm) : 200;

    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((unsigned short)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

#define COMMON_OPTS                                                                            \
    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sin, MHD_OPTION_CONNECTION_TIMEOUT,              \
        (unsigned)timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),                 \
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000, MHD_OPTION_LISTEN_BACKLOG_SIZE,          \
        (unsigned)1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,                       \
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL

    if (strcmp(mode, "ext") == 0) {
        g_ext = 1;
        struct xworker *ws = calloc(nthreads, sizeof(*ws));
        for (unsigned i = 0; i < nthreads; i++) {
            struct xworker *w = &ws[i];
            w->base = event_base_new();
            w->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                                    (uint16_t)port, NULL, NULL, ahc, w, COMMON_OPTS,
                                    MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                                    MHD_OPTION_END);
            if (!w->d) {
                fprintf(stderr, "MHD_start_daemon failed (ext %u)\n", i);
                return 1;
            }
            const union MHD_DaemonInfo *di = MHD_get_daemon_info(w->d, MHD_DAEMON_INFO_EPOLL_FD);
            w->fd_ev = event_new(w->base, di->epoll_fd, EV_READ | EV_PERSIST, ext_cb, w);
            w->timer_ev = evtimer_new(w->base, ext_cb, w);
            event_add(w->fd_ev, NULL);
            ext_drive(w);
        }
        fprintf(stderr, "mhd %s mode=ext listening on 127.0.0.1:%d, %u loops\n",
                MHD_get_version(), port, nthreads);
        for (unsigned i = 0; i < nthreads; i++)
            pthread_create(&ws[i].th, NULL, ext_main, &ws[i]);
        for (unsigned i = 0; i < nthreads; i++)
            pthread_join(ws[i].th, NULL);
        return 0;
    }

    struct MHD_Daemon *d;
    if (strcmp(mode, "pool") == 0 || strcmp(mode, "turbo") == 0) {
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
        if (strcmp(mode, "turbo") == 0)
            flags |= MHD_USE_TURBO;
        d = MHD_start_daemon(flags, (uint16_t)port, NULL, NULL, ahc, NULL, COMMON_OPTS,
                             MHD_OPTION_THREAD_POOL_SIZE, nthreads, MHD_OPTION_END);
    } else if (strcmp(mode, "tpc") == 0) {
        d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                 MHD_USE_POLL | MHD_USE_ERROR_LOG,
                             (uint16_t)port, NULL, NULL, ahc, NULL, COMMON_OPTS, MHD_OPTION_END);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (!d) {
        fprintf(stderr, "MHD_start_daemon failed\n");
        return 1;
    }
    fprintf(stderr, "mhd %s mode=%s listening on 127.0.0.1:%d, threads=%u\n", MHD_get_version(),
            mode, port, nthreads);
    for (;;)
        pause();
}
