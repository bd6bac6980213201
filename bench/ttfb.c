/* ttfb.c - time to first byte and to first event of streamed answers, for bench/run.sh.
 *
 *   ttfb HOST PORT PATH BODY_FILE N
 *
 * Sends N POST requests one after the other on one keep-alive connection
 * (Content-Type: application/json, Accept: text/event-stream), reads each
 * answer to its end (Content-Length or chunked), and prints one line per
 * request: microseconds from the request's write to the first byte of the
 * answer, to the first byte of its body (the first event), and to its end.
 * curl's time_starttransfer is the first of these; the second is what a
 * client waiting for its first token sees (a proxy may hold the headers
 * back until it has a body byte, or send them at once). Exits non-zero on
 * any error or non-200 answer. Loopback only; each read times out after 10 s. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int dial(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("connect");
        exit(1);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static char buf[1 << 20];
static size_t have, pos; /* bytes in buf; bytes of buf consumed */

/* Read more into buf; returns bytes read (0 on EOF). */
static size_t fill(int fd)
{
    if (pos > 0) {
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        pos = 0;
    }
    if (have == sizeof buf) {
        fprintf(stderr, "answer too large\n");
        exit(1);
    }
    ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
    if (n < 0) {
        perror("recv");
        exit(1);
    }
    have += (size_t)n;
    return (size_t)n;
}

/* Index just past the next CRLF at or after pos, reading as needed. */
static size_t line_end(int fd)
{
    for (;;) {
        char *e = memmem(buf + pos, have - pos, "\r\n", 2);
        if (e)
            return (size_t)(e - buf) + 2;
        if (!fill(fd)) {
            fprintf(stderr, "connection closed mid-answer\n");
            exit(1);
        }
    }
}

static void need(int fd, size_t n)
{
    while (have - pos < n)
        if (!fill(fd)) {
            fprintf(stderr, "connection closed mid-body\n");
            exit(1);
        }
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: ttfb HOST PORT PATH BODY_FILE N\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    long n = atol(argv[5]);
    FILE *f = fopen(argv[4], "rb");
    if (!f) {
        perror(argv[4]);
        return 1;
    }
    char body[65536];
    size_t blen = fread(body, 1, sizeof body, f);
    fclose(f);
    char req[70000];
    int rlen = snprintf(req, sizeof req,
                        "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                        "Accept: text/event-stream\r\nContent-Length: %zu\r\n\r\n%.*s",
                        argv[3], host, port, blen, (int)blen, body);
    int fd = dial(host, port);
    for (long i = 0; i < n; i++) {
        have = pos = 0;
        double t0 = now_us();
        if (send(fd, req, (size_t)rlen, MSG_NOSIGNAL) != rlen) {
            perror("send");
            return 1;
        }
        if (!fill(fd)) {
            fprintf(stderr, "connection closed before the answer\n");
            return 1;
        }
        double t_first = now_us(), t_body = 0;
        /* status line and headers */
        size_t e = line_end(fd);
        int status = 0;
        if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
            fprintf(stderr, "answer %ld: status %d\n", i, status);
            return 1;
        }
        pos = e;
        long clen = -1;
        int chunked = 0, closing = 0;
        for (;;) {
            e = line_end(fd);
            if (e - pos == 2) {
                pos = e;
                break;
            }
            char *h = buf + pos;
            size_t hl = e - pos - 2;
            if (hl > 15 && strncasecmp(h, "content-length:", 15) == 0)
                clen = strtol(h + 15, NULL, 10);
            else if (hl > 18 && strncasecmp(h, "transfer-encoding:", 18) == 0 &&
                     memmem(h, hl, "chunked", 7))
                chunked = 1;
            else if (hl > 11 && strncasecmp(h, "connection:", 11) == 0 && memmem(h, hl, "close", 5))
                closing = 1;
            pos = e;
        }
        /* body: the first body byte is the first event */
        if (chunked) {
            for (;;) {
                e = line_end(fd);
                long sz = strtol(buf + pos, NULL, 16);
                pos = e;
                if (sz == 0) {
                    pos = line_end(fd); /* the empty trailer line */
                    break;
                }
                if (!t_body) {
                    if (have == pos)
                        fill(fd);
                    t_body = now_us();
                }
                need(fd, (size_t)sz + 2);
                pos += (size_t)sz + 2;
            }
        } else if (clen >= 0) {
            if (clen > 0 && have == pos)
                fill(fd);
            t_body = now_us();
            need(fd, (size_t)clen);
            pos += (size_t)clen;
        } else {
            fprintf(stderr, "answer without length\n");
            return 1;
        }
        double t_end = now_us();
        printf("%.1f %.1f %.1f\n", t_first - t0, t_body - t0, t_end - t0);
        if (closing) {
            close(fd);
            fd = dial(host, port);
        }
    }
    close(fd);
    return 0;
}
