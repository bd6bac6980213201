/* server.c - threads, listeners, routing and orderly shutdown.
 *
 * Threads: the main thread binds one SO_REUSEPORT listener per worker (so
 * a bad address fails at start, not in a thread), starts the workers, then
 * waits for SIGTERM/SIGINT with sigwait. Workers each run their own event
 * loop; the only cross-thread call is event_active on a worker's stop
 * event (libevent's pthread support makes that safe). */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "batch/runner.h"
#include "cache/embed_remote.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "server/batch_api.h"
#include "server/dashboard.h"
#include "server/exchange.h"
#include "store/db.h"

typedef struct thread_ctx {
    ah_worker_t w;
    pthread_t tid;
    struct evhttp *http;
    struct evconnlistener *listener;
    struct evhttp_bound_socket *bound;
    struct event *stop_ev;
    struct event *drain_timer;
    int64_t drain_deadline_us;
} thread_ctx_t;

static int inflight_of(thread_ctx_t *t)
{
    return ah_http_active(t->w.http);
}

static void route(struct evhttp_request *req, void *arg)
{
    ah_worker_t *w = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    ah_api_t api = evhttp_find_header(ih, "anthropic-version") ? AH_API_ANTHROPIC : AH_API_OPENAI;
    if (!path) {
        ah_reply_error(req, api, 400, NULL, NULL, "bad request path");
        return;
    }
    if (strncmp(path, "/v1/", 4) == 0 && strcmp(path, "/v1/messages") != 0)
        path += 3; /* /v1/chat/completions and /chat/completions alike */
    static const struct {
        const char *path;
        ah_api_t api;
        ah_op_t op;
    } api_routes[] = {
        {"/chat/completions", AH_API_OPENAI, AH_OP_CHAT},
        {"/v1/messages", AH_API_ANTHROPIC, AH_OP_CHAT},
        {"/embeddings", AH_API_OPENAI, AH_OP_EMBEDDINGS},
    };
    for (size_t i = 0; i < sizeof api_routes / sizeof api_routes[0]; i++) {
        if (strcmp(path, api_routes[i].path) != 0)
            continue;
        if (m != EVHTTP_REQ_POST) {
            ah_reply_error(req, api_routes[i].api, 405, "invalid_request_error", NULL,
                           "Method not allowed: use POST");
            return;
        }
        ah_exchange_handle(w, req, api_routes[i].api, api_routes[i].op);
        return;
    }
    if (ah_batch_api_path(path)) { /* /v1/files..., /v1/batches... */
        ah_batch_api_handle(w, req, path);
        return;
    }
    if (strcmp(path, "/feedback") == 0) {
        ah_feedback_handle(w, req);
        return;
    }
    if (strcmp(path, "/models") == 0 && m == EVHTTP_REQ_GET) {
        ah_exchange_models(w, req);
        return;
    }
    if (strcmp(path, "/dashboard") == 0 || strcmp(path, "/dashboard/") == 0) {
        ah_dashboard_page(w, req);
        return;
    }
    if (strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0 ||
        strncmp(path, "/admin/", 7) == 0 || strcmp(path, "/admin") == 0) {
        ah_admin_handle(w, req, path);
        return;
    }
    ah_reply_error(req, api, 404, "invalid_request_error", "not_found", "Unknown endpoint");
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
    thread_ctx_t *t = arg;
    if (inflight_of(t) == 0 || ah_now_us() > t->drain_deadline_us) {
        if (inflight_of(t))
            ah_warn("worker %d: %d requests still in flight at the end of the grace period",
                    t->w.index, inflight_of(t));
        event_base_loopexit(t->w.base, NULL);
        return;
    }
    struct timeval tv = {0, 50000};
    evtimer_add(t->drain_timer, &tv);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    thread_ctx_t *t = arg;
    if (t->bound) {
        evhttp_del_accept_socket(t->http, t->bound); /* frees the listener */
        t->bound = NULL;
        t->listener = NULL;
    }
    t->drain_deadline_us = ah_now_us() + (int64_t)AH_DRAIN_GRACE_S * 1000000;
    t->drain_timer = evtimer_new(t->w.base, drain_tick, t);
    drain_tick(-1, 0, t);
}

static void *worker_main(void *arg)
{
    thread_ctx_t *t = arg;
    event_base_dispatch(t->w.base);
    return NULL;
}

static ah_err_t make_worker(ah_gateway_t *gw, thread_ctx_t *t, int index, const struct sockaddr *sa,
                            socklen_t salen)
{
    const ah_config_t *c = gw->cfg;
    t->w.index = index;
    t->w.rng = ((uint64_t)ah_now_us() << 8) ^ (uint64_t)(index + 1) * 0x9E3779B97F4A7C15ull;
    t->w.gw = gw;
    /* epoll's changelist merges the DEL+ADD pairs that curl's re-arms and
     * evhttp's read/write switches make on one socket into one epoll_ctl
     * (or none): 8-14% less CPU per proxied request (docs/performance.md).
     * libevent warns it is unsafe with dup()ed sockets; neither evhttp nor
     * libcurl dup()s them. */
    struct event_config *ec = event_config_new();
    if (ec)
        event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    t->w.base = ec ? event_base_new_with_config(ec) : event_base_new();
    if (ec)
        event_config_free(ec);
    if (!t->w.base)
        return AH_E_IO;
    t->w.http = ah_http_new(t->w.base);
    if (gw->remote_embed)
        t->w.embed_batcher = ah_embed_batcher_new(gw->remote_embed, t->w.base, t->w.http);
    if (ah_db_open(c->db_path, &t->w.db))
        return AH_E_DB;
    t->http = evhttp_new(t->w.base);
    evhttp_set_max_headers_size(t->http, (ev_ssize_t)c->max_header_bytes);
    /* evhttp answers past its own limit with a bare 413; up to it, the
     * handlers check their own (chat: c->max_body_bytes; uploads:
     * ahorro.batch.max_file_bytes) and answer in the API's format. The
     * limit is one per server, so it covers uploads: libevent 2.1 has no
     * hook between a request's headers and its body (evhttp_set_newreqcb
     * came with 2.2), where the chat paths could be held to their own. */
    size_t chat_limit = c->max_body_bytes * 2 + 65536;
    size_t upload_limit = c->batch.max_file_bytes + AH_UPLOAD_OVERHEAD_BYTES;
    evhttp_set_max_body_size(t->http,
                             (ev_ssize_t)(chat_limit > upload_limit ? chat_limit : upload_limit));
    evhttp_set_timeout(t->http, c->client_timeout_s);
    evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_OPTIONS);
    evhttp_set_gencb(t->http, route, &t->w);
    t->listener = evconnlistener_new_bind(t->w.base, NULL, NULL,
                                          LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
                                          1024, sa, (int)salen);
    if (!t->listener)
        return AH_E_IO;
    /* Linux passes TCP_NODELAY on to accepted sockets, and evhttp never sets
     * it: without it, streamed chunks wait ~40 ms for Nagle (measured in
     * docs/http-server-choice.md). */
    int one = 1;
    setsockopt(evconnlistener_get_fd(t->listener), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    t->bound = evhttp_bind_listener(t->http, t->listener);
    t->stop_ev = event_new(t->w.base, -1, 0, on_stop, t);
    return AH_E_OK;
}

static void free_worker(thread_ctx_t *t)
{
    if (t->stop_ev)
        event_free(t->stop_ev);
    if (t->drain_timer)
        event_free(t->drain_timer);
    if (t->http)
        evhttp_free(t->http);
    else if (t->listener)
        evconnlistener_free(t->listener);
    ah_judge_worker_stop(&t->w); /* judge calls still in flight: failed judgments */
    ah_embed_batcher_free(t->w.embed_batcher);
    ah_http_free(t->w.http);
    ah_worker_clear_key_cache(&t->w);
    ah_worker_close_pg(&t->w);
    if (t->w.db)
        sqlite3_close(t->w.db);
    if (t->w.base)
        event_base_free(t->w.base);
}

static ah_err_t resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        return AH_E_OK;
    }
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return AH_E_OK;
    }
    return AH_E_INVAL;
}

struct ah_server {
    thread_ctx_t *ts;
    int n, started;
};

static void server_free(ah_server_t *srv)
{
    for (int i = 0; i < srv->started; i++)
        event_active(srv->ts[i].stop_ev, EV_TIMEOUT, 0);
    for (int i = 0; i < srv->started; i++)
        pthread_join(srv->ts[i].tid, NULL);
    for (int i = 0; i < srv->n; i++)
        free_worker(&srv->ts[i]);
    ah_free(srv->ts);
    ah_free(srv);
}

int ah_server_start(ah_gateway_t *gw, ah_server_t **out, int *port_out)
{
    const ah_config_t *c = gw->cfg;
    *out = NULL;
    int n = c->threads > 0 ? c->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    if (n > AH_MAX_THREADS)
        n = AH_MAX_THREADS;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (resolve(c->listen_host, c->listen_port, &ss, &sl)) {
        ah_error("cannot listen on '%s': not an IP address", c->listen_host);
        return 1;
    }
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);

    ah_server_t *srv = ah_calloc(1, sizeof *srv);
    srv->ts = ah_calloc((size_t)n, sizeof *srv->ts);
    srv->n = n;
    for (int i = 0; i < n; i++) {
        if (make_worker(gw, &srv->ts[i], i, (struct sockaddr *)&ss, sl)) {
            ah_error("cannot listen on %s:%d: %s", c->listen_host, c->listen_port, strerror(errno));
            server_free(srv);
            return 1;
        }
        if (i == 0 && c->listen_port == 0) {
            /* An ephemeral port: every worker must share the one the first got. */
            getsockname(evconnlistener_get_fd(srv->ts[0].listener), (struct sockaddr *)&ss, &sl);
        }
    }
    int port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&srv->ts[i].tid, NULL, worker_main, &srv->ts[i])) {
            ah_error("cannot start worker thread %d", i);
            server_free(srv);
            return 1;
        }
        srv->started++;
    }
    ah_info("ahorro listening on http://%s:%d (%d threads, %zu deployments, ledger %s)",
            c->listen_host, port, n, c->ndeps, c->db_path);
    if (port_out)
        *port_out = port;
    *out = srv;
    return 0;
}

void ah_server_stop(ah_server_t *srv)
{
    if (srv)
        server_free(srv);
}

int ah_server_run(ah_gateway_t *gw)
{
    const ah_config_t *c = gw->cfg;
    /* Workers inherit a mask without the termination signals; only the
     * main thread takes them, with sigwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    ah_server_t *srv;
    int port;
    if (ah_server_start(gw, &srv, &port))
        return 1;
    if (!c->master_key)
        ah_warn("no master key (AHORRO_MASTER_KEY or general_settings.master_key): serving "
                "keyless requests from loopback only");
    /* The Batch API's runner calls this gateway on its own listener: it
     * starts once the port is known, and stops before the workers do, so
     * that the lines it has in flight can finish. */
    ah_batch_runner_t *runner = NULL;
    if (ah_batch_runner_start(gw, port, &runner)) {
        ah_server_stop(srv);
        return 1;
    }
    printf("ahorro listening on http://%s:%d\n", c->listen_host, port);
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    ah_info("signal %d: draining in-flight requests (at most %d s)", sig, AH_DRAIN_GRACE_S);
    ah_batch_runner_shutdown(runner);
    if (ah_batch_runner_join(runner, (long)AH_DRAIN_GRACE_S * 1000)) {
        /* lines still in flight after the grace: the workers' own drain cuts
         * them, the runner leaves them unrecorded (sent again on resume) */
        ah_warn("batch runner: requests still in flight; stopping the workers first");
        ah_server_stop(srv);
        srv = NULL;
        ah_batch_runner_join(runner, -1);
    }
    ah_server_stop(srv);
    return 0;
}
