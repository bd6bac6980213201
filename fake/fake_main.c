/* fake_main.c - ahorro-fake's command line, threads and signals.
 *
 * N threads each run their own event loop and their own evhttp on a listener bound to the
 * same address with SO_REUSEPORT, so the kernel spreads connections across loops and no
 * request ever crosses threads. The main thread only waits for SIGTERM or SIGINT, then
 * asks every loop to exit and frees everything, in-flight requests included. */
#include "fake.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"

#define FAKE_LISTEN_BACKLOG 1024
#define FAKE_MAX_HOST_BYTES 256

fake_opts_t fake_opts = {
    .host = "127.0.0.1", .port = 9999, .threads = 1, .batch_delay_ms = FAKE_DEFAULT_BATCH_DELAY_MS};

typedef struct loop {
    pthread_t thread;
    struct event_base *base;
    fake_server_t *server;
} loop_t;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ahorro-fake [--listen HOST:PORT] [--threads N] [--ttft-ms N] [--itl-ms N]\n"
            "                   [--require-key KEY] [--fault SPEC] [--answers FILE]\n"
            "                   [--rate-limit MODEL=RPM[:TPM]]... [--log FILE]\n"
            "                   [--batch-delay-ms N]\n"
            "A fake OpenAI/Anthropic provider for tests and benchmarks; see "
            "docs/fake-provider.md.\n"
            "  --listen HOST:PORT  address to listen on (default 127.0.0.1:9999; port 0 "
            "picks one)\n"
            "  --threads N         event loops sharing the port (default 1)\n"
            "  --ttft-ms N         delay before the first token (default 0)\n"
            "  --itl-ms N          delay between streamed tokens (default 0)\n"
            "  --require-key KEY   demand this API key (Bearer/api-key, x-api-key)\n"
            "  --fault SPEC        fail every request as x-fake-fault SPEC says (e.g. 500,\n"
            "                      429, timeout, reset, delay:MS); POST /_fake/fault changes it\n"
            "  --answers FILE      recorded answers (JSONL: model, prompt, answer, delay_ms)\n"
            "                      that replace the simulated text when they match\n"
            "  --rate-limit MODEL=RPM[:TPM]  requests (and tokens) per minute for MODEL over\n"
            "                      a sliding 60 s window, 429 beyond; MODEL * for every\n"
            "                      other model; repeatable\n"
            "  --log FILE          one JSON line per API request, written at its arrival\n"
            "  --batch-delay-ms N  a batch (POST /v1/batches) completes N ms after its\n"
            "                      creation (default 1000)\n");
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* HOST:PORT or [V6HOST]:PORT into host (bounded) and *port. */
static int parse_listen(const char *arg, char *host, size_t hostsize, int *port)
{
    const char *colon;
    const char *h = arg;
    size_t hlen;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (!close || close[1] != ':')
            return -1;
        h = arg + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(arg, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - arg);
    }
    long p;
    if (hlen == 0 || hlen >= hostsize || parse_long(colon + 1, 0, 65535, &p))
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static void set_port(struct sockaddr_storage *ss, int port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    else if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

static int get_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

/* SO_REUSEPORT would let us share the port with a forgotten fake from an earlier run and
 * split its traffic with it; a plain bind first turns that into "address in use". */
static int port_is_free(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return 1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int ok = bind(fd, (const struct sockaddr *)ss, len) == 0;
    close(fd);
    return ok;
}

static void *loop_run(void *arg)
{
    loop_t *l = arg;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int parse_args(int argc, char **argv, char *host, size_t hostsize)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"threads", required_argument, NULL, 't'},
        {"ttft-ms", required_argument, NULL, 'f'},
        {"itl-ms", required_argument, NULL, 'i'},
        {"require-key", required_argument, NULL, 'k'},
        {"fault", required_argument, NULL, 'F'},
        {"answers", required_argument, NULL, 'a'},
        {"rate-limit", required_argument, NULL, 'r'},
        {"log", required_argument, NULL, 'L'},
        {"batch-delay-ms", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    snprintf(host, hostsize, "%s", fake_opts.host);
    fake_opts.host = host;
    int c;
    long v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (parse_listen(optarg, host, hostsize, &fake_opts.port)) {
                fprintf(stderr, "ahorro-fake: --listen wants HOST:PORT, got '%s'\n", optarg);
                return -1;
            }
            break;
        case 't':
            if (parse_long(optarg, 1, AH_MAX_THREADS, &v)) {
                fprintf(stderr, "ahorro-fake: --threads wants 1..%d\n", AH_MAX_THREADS);
                return -1;
            }
            fake_opts.threads = (int)v;
            break;
        case 'f':
        case 'i':
            if (parse_long(optarg, 0, FAKE_MAX_DELAY_MS, &v)) {
                fprintf(stderr, "ahorro-fake: --%s wants 0..%ld milliseconds\n",
                        c == 'f' ? "ttft-ms" : "itl-ms", FAKE_MAX_DELAY_MS);
                return -1;
            }
            *(c == 'f' ? &fake_opts.ttft_ms : &fake_opts.itl_ms) = v;
            break;
        case 'k':
            fake_opts.require_key = optarg;
            break;
        case 'F':
            if (strlen(optarg) >= FAKE_MAX_FAULT_SPEC) {
                fprintf(stderr, "ahorro-fake: --fault is longer than %d bytes\n",
                        FAKE_MAX_FAULT_SPEC - 1);
                return -1;
            }
            fake_set_standing_fault(optarg, strlen(optarg));
            break;
        case 'a':
            fake_opts.answers = optarg;
            break;
        case 'r':
            if (fake_limits_add(optarg))
                return -1;
            break;
        case 'L':
            fake_opts.log = optarg;
            break;
        case 'B':
            if (parse_long(optarg, 0, FAKE_MAX_DELAY_MS, &v)) {
                fprintf(stderr, "ahorro-fake: --batch-delay-ms wants 0..%ld milliseconds\n",
                        FAKE_MAX_DELAY_MS);
                return -1;
            }
            fake_opts.batch_delay_ms = v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Resolves the listen address into ss. */
static int resolve(struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", fake_opts.port);
    int rc = getaddrinfo(fake_opts.host, port, &hints, &res);
    if (rc || !res || res->ai_addrlen > sizeof *ss) {
        fprintf(stderr, "ahorro-fake: cannot resolve %s: %s\n", fake_opts.host,
                rc ? gai_strerror(rc) : "no address");
        if (res)
            freeaddrinfo(res);
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Opens one loop with its listener; the first one fixes the port when it was 0. */
static int loop_open(loop_t *l, struct sockaddr_storage *ss, socklen_t len)
{
    /* The default clock is CLOCK_MONOTONIC_COARSE, a few ms per tick: --itl-ms 1 paced
     * tokens 4 ms apart. The precise timer costs one timerfd_settime per loop turn, about
     * one per ten requests under load next to evhttp's seven syscalls per request. */
    struct event_config *cfg = event_config_new();
    if (cfg)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    l->base = cfg ? event_base_new_with_config(cfg) : NULL;
    if (cfg)
        event_config_free(cfg);
    if (!l->base) {
        fprintf(stderr, "ahorro-fake: event_base_new failed\n");
        return -1;
    }
    struct evconnlistener *lev = evconnlistener_new_bind(
        l->base, NULL, NULL, LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE,
        FAKE_LISTEN_BACKLOG, (struct sockaddr *)ss, (int)len);
    if (!lev) {
        fprintf(stderr, "ahorro-fake: cannot listen on %s:%d: %s\n", fake_opts.host, fake_opts.port,
                strerror(errno));
        return -1;
    }
    /* Accepted sockets inherit TCP_NODELAY from the listener on Linux. evhttp never sets
     * it, and without it Nagle plus delayed ACKs hold paced SSE chunks back ~40 ms. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(lev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fake_opts.port == 0) {
        struct sockaddr_storage bound;
        socklen_t blen = sizeof bound;
        if (getsockname(evconnlistener_get_fd(lev), (struct sockaddr *)&bound, &blen) == 0) {
            fake_opts.port = get_port(&bound);
            set_port(ss, fake_opts.port);
        }
    }
    l->server = fake_server_new(l->base, lev);
    return l->server ? 0 : -1;
}

int main(int argc, char **argv)
{
    char host[FAKE_MAX_HOST_BYTES];
    int rc = 1;
    int started = 0;
    loop_t *loops = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen;

    if (parse_args(argc, argv, host, sizeof host) || resolve(&ss, &sslen)) {
        fake_limits_free();
        return 2;
    }
    if (fake_opts.port != 0 && !port_is_free(&ss, sslen)) {
        fprintf(stderr, "ahorro-fake: cannot listen on %s:%d: address in use\n", host,
                fake_opts.port);
        fake_limits_free();
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    json_object_seed(0); /* jansson's hash seed, set before there are threads to race on it */
    if (fake_opts.answers && fake_answers_load(fake_opts.answers)) {
        fake_limits_free();
        return 2;
    }
    if (evthread_use_pthreads()) {
        fprintf(stderr, "ahorro-fake: evthread_use_pthreads failed\n");
        fake_answers_free();
        fake_limits_free();
        return 1;
    }

    /* Only the main thread takes SIGTERM/SIGINT: the loops (and the log's writer) inherit
     * the blocked mask. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    if (fake_opts.log && fake_log_open(fake_opts.log)) {
        fake_answers_free();
        fake_limits_free();
        return 2;
    }

    loops = ah_calloc((size_t)fake_opts.threads, sizeof *loops);
    for (int i = 0; i < fake_opts.threads; i++)
        if (loop_open(&loops[i], &ss, sslen))
            goto out;
    for (; started < fake_opts.threads; started++) {
        if (pthread_create(&loops[started].thread, NULL, loop_run, &loops[started])) {
            fprintf(stderr, "ahorro-fake: pthread_create failed\n");
            goto out;
        }
    }
    if (strchr(host, ':'))
        printf("ahorro-fake listening on [%s]:%d\n", host, fake_opts.port);
    else
        printf("ahorro-fake listening on %s:%d\n", host, fake_opts.port);
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    ah_info("ahorro-fake: signal %d, shutting down", sig);
    rc = 0;
out:
    for (int i = 0; i < started; i++)
        event_base_loopexit(loops[i].base, NULL);
    for (int i = 0; i < started; i++)
        pthread_join(loops[i].thread, NULL);
    for (int i = 0; loops && i < fake_opts.threads; i++) {
        fake_server_free(loops[i].server);
        if (loops[i].base)
            event_base_free(loops[i].base);
    }
    ah_free(loops);
    fake_server_cleanup();
    fake_log_close(); /* after the loops: every request they took is in the buffers */
    fake_answers_free();
    fake_limits_free();
    fake_batch_free();
    libevent_global_shutdown();
    return rc;
}
