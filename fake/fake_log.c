/* fake_log.c - the request log (--log FILE): one JSON line per request, at its arrival.
 *
 * The loops format a line on their stack and copy it, under a mutex, into the active one
 * of two fixed buffers; a writer thread owns the file. When the active buffer is full the
 * loops hand it over and go on with the other one; the writer also takes a partly filled
 * buffer every FAKE_LOG_FLUSH_MS, and everything at exit. So the loops never wait for the
 * disk unless it falls a whole buffer behind, memory stays at two buffers, and a line is
 * in the file within half a second. Without --log nothing here runs. */
#include "fake.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

#define LOG_FIELD_MAX FAKE_MAX_MODEL_BYTES /* model and path are cut to this many bytes */
#define LOG_LINE_MAX (2 * 6 * LOG_FIELD_MAX + 256)

int fake_log_enabled;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the writer: a buffer is full, or stop */
    pthread_cond_t room; /* the loops: the spare buffer was written */
    char *buf[2];
    size_t len[2];
    int active;  /* the buffer the loops fill */
    int pending; /* the buffer waiting for the writer, or -1 */
    int stop;
    int fd;
    int failed; /* a write failed: reported once */
    const char *path;
    pthread_t thread;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER, .pending = -1, .fd = -1};

int64_t fake_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_all(const char *p, size_t n)
{
    while (n > 0 && !L.failed) {
        ssize_t w = write(L.fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "ahorro-fake: --log %s: write failed (%s); logging stops\n", L.path,
                    w < 0 ? strerror(errno) : "no progress");
            L.failed = 1;
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

static struct timespec mono_after(long ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int reached(const struct timespec *t)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > t->tv_sec || (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&L.lock);
    struct timespec next = mono_after(FAKE_LOG_FLUSH_MS);
    for (;;) {
        if (L.pending < 0 && !L.stop)
            pthread_cond_timedwait(&L.wake, &L.lock, &next);
        int due = L.stop || reached(&next);
        if (due) {
            if (L.pending < 0 && L.len[L.active] > 0) {
                L.pending = L.active;
                L.active ^= 1;
            }
            next = mono_after(FAKE_LOG_FLUSH_MS);
        }
        if (L.pending >= 0) {
            int i = L.pending;
            pthread_mutex_unlock(&L.lock);
            write_all(L.buf[i], L.len[i]);
            pthread_mutex_lock(&L.lock);
            L.len[i] = 0;
            L.pending = -1;
            pthread_cond_broadcast(&L.room);
            continue;
        }
        if (L.stop)
            break;
    }
    pthread_mutex_unlock(&L.lock);
    return NULL;
}

int fake_log_open(const char *path)
{
    L.path = path;
    L.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (L.fd < 0) {
        fprintf(stderr, "ahorro-fake: --log %s: %s\n", path, strerror(errno));
        return -1;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&L.wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&L.room, NULL);
    L.buf[0] = ah_malloc(FAKE_LOG_BUFFER_BYTES);
    L.buf[1] = ah_malloc(FAKE_LOG_BUFFER_BYTES);
    if (pthread_create(&L.thread, NULL, writer, NULL)) {
        fprintf(stderr, "ahorro-fake: --log: pthread_create failed\n");
        ah_free(L.buf[0]);
        ah_free(L.buf[1]);
        pthread_cond_destroy(&L.wake);
        pthread_cond_destroy(&L.room);
        close(L.fd);
        L.fd = -1;
        return -1;
    }
    fake_log_enabled = 1;
    return 0;
}

void fake_log_close(void)
{
    if (!fake_log_enabled)
        return;
    pthread_mutex_lock(&L.lock);
    L.stop = 1;
    pthread_cond_signal(&L.wake);
    pthread_mutex_unlock(&L.lock);
    pthread_join(L.thread, NULL);
    close(L.fd);
    L.fd = -1;
    ah_free(L.buf[0]);
    ah_free(L.buf[1]);
    pthread_cond_destroy(&L.wake);
    pthread_cond_destroy(&L.room);
    fake_log_enabled = 0;
}

/* s as a JSON string at out (room for 6 bytes a byte of it plus 2), cut to LOG_FIELD_MAX
 * bytes; bytes that are not UTF-8 become '?'. Returns the end. */
static char *put_jstr(char *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    char copy[LOG_FIELD_MAX + 1];
    size_t n = strnlen(s, LOG_FIELD_MAX);
    int plain = 1;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)s[i];
        plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
    }
    *out++ = '"';
    if (plain) { /* the common case: a model name or path in printable ASCII */
        memcpy(out, s, n);
        out[n] = '"';
        return out + n + 1;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    fake_utf8_scrub(copy);
    for (const unsigned char *p = (const unsigned char *)copy; *p; p++) {
        if (*p == '"' || *p == '\\') {
            *out++ = '\\';
            *out++ = (char)*p;
        } else if (*p < 0x20) {
            memcpy(out, "\\u00", 4);
            out[4] = hex[*p >> 4];
            out[5] = hex[*p & 15];
            out += 6;
        } else {
            *out++ = (char)*p;
        }
    }
    *out++ = '"';
    return out;
}

static char *put_lit(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return out + n;
}

static const char *fault_name(fake_fault_t f)
{
    switch (f) {
    case FAKE_FAULT_TIMEOUT:
        return "timeout";
    case FAKE_FAULT_RESET:
        return "reset";
    case FAKE_FAULT_STALL:
        return "stall";
    case FAKE_FAULT_RESET_EARLY:
        return "reset-early";
    default:
        return NULL;
    }
}

void fake_log_request(int64_t t_ms, const char *path, const char *model, int status,
                      long prompt_tokens, long max_tokens, fake_fault_t fault)
{
    char line[LOG_LINE_MAX];
    char *at = put_lit(line, "{\"t_ms\":");
    at = fake_fmt_ll(at, t_ms);
    at = put_lit(at, ",\"model\":");
    at = model ? put_jstr(at, model) : put_lit(at, "null");
    at = put_jstr(put_lit(at, ",\"path\":"), path);
    at = fake_fmt_ll(put_lit(at, ",\"status\":"), status);
    at = fake_fmt_ll(put_lit(at, ",\"prompt_tokens\":"), prompt_tokens);
    at = put_lit(at, ",\"max_tokens\":");
    at = max_tokens >= 0 ? fake_fmt_ll(at, max_tokens) : put_lit(at, "null");
    const char *f = fault_name(fault);
    if (f)
        at = put_lit(put_lit(put_lit(at, ",\"fault\":\""), f), "\"");
    at = put_lit(at, "}\n");
    size_t n = (size_t)(at - line);

    pthread_mutex_lock(&L.lock);
    if (L.len[L.active] + n > FAKE_LOG_BUFFER_BYTES) {
        while (L.pending >= 0)
            pthread_cond_wait(&L.room, &L.lock);
        L.pending = L.active;
        L.active ^= 1;
        pthread_cond_signal(&L.wake);
    }
    memcpy(L.buf[L.active] + L.len[L.active], line, n);
    L.len[L.active] += n;
    pthread_mutex_unlock(&L.lock);
}
