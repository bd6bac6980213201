/* reqlog.c - the request log (see reqlog.h). */
#include "observe/reqlog.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "observe/trace.h"

/* A batch's lines are written together up to this size, then flushed. */
#define REQLOG_FLUSH_BYTES (256u * 1024)
/* Longest line: a prompt past this is cut (the line says so). */
#define REQLOG_MAX_LINE (1u << 20)
#define REQLOG_WARN_EVERY_US (60 * 1000000LL)

struct ah_reqlog {
    int fd, owned;
    /* only the writer thread writes these; stats read them under mu */
    pthread_mutex_t mu;
    uint64_t written, lost;
    int64_t warned_us;
};

ah_err_t ah_reqlog_open(const char *file, ah_reqlog_t **out)
{
    int fd = STDERR_FILENO, owned = 0;
    if (file) {
        fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd < 0) {
            ah_error("request log: cannot open %s: %s", file, strerror(errno));
            return AH_E_IO;
        }
        owned = 1;
    }
    ah_reqlog_t *l = ah_calloc(1, sizeof *l);
    l->fd = fd;
    l->owned = owned;
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return AH_E_OK;
}

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v)
        json_object_set_new(o, k, json_string(v));
}

int ah_reqlog_format(const ah_ledger_row_t *r, ah_buf_t *out)
{
    char ts[64];
    time_t sec = (time_t)(r->ts_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(r->ts_ms % 1000));
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level",
                        json_string(r->status >= 500   ? "error"
                                    : r->status >= 400 ? "warn"
                                                       : "info"));
    json_object_set_new(o, "msg", json_string(r->attempt_of ? "attempt" : "request"));
    set_str(o, "request_id", r->request_id);
    set_str(o, "attempt_of", r->attempt_of);
    set_str(o, "api", r->api);
    set_str(o, "endpoint", r->endpoint);
    json_object_set_new(o, "stream", json_boolean(r->stream));
    set_str(o, "key_id", r->key_id);
    set_str(o, "owner", r->owner);
    set_str(o, "user", r->user);
    set_str(o, "route", r->requested_model);
    set_str(o, "model", r->served_model);
    set_str(o, "provider", r->provider);
    set_str(o, "deployment", r->deployment);
    json_object_set_new(o, "status", json_integer(r->status));
    set_str(o, "error", r->error);
    json_object_set_new(o, "prompt_tokens", json_integer(r->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(r->completion_tokens));
    json_object_set_new(o, "cached_tokens", json_integer(r->cached_tokens));
    json_object_set_new(o, "reasoning_tokens", json_integer(r->reasoning_tokens));
    json_object_set_new(o, "cost_usd", r->cost_usd >= 0 ? json_real(r->cost_usd) : json_null());
    set_str(o, "cache", r->cache);
    if (r->saved_usd > 0)
        json_object_set_new(o, "saved_usd", json_real(r->saved_usd));
    json_object_set_new(o, "latency_ms", json_real(r->latency_ms));
    if (r->ttft_ms >= 0)
        json_object_set_new(o, "ttft_ms", json_real(r->ttft_ms));
    json_object_set_new(o, "attempts", json_integer(r->attempts));
    set_str(o, "route_reason", r->route_reason);
    set_str(o, "shape", r->shape);
    if (r->tags) {
        json_t *t = json_loads(r->tags, 0, NULL);
        if (t)
            json_object_set_new(o, "tags", t);
    }
    if (r->trace) {
        char hex[33];
        ah_trace_hex(r->trace->trace_id, 16, hex);
        json_object_set_new(o, "trace_id", json_string(hex));
    }
    if (r->prompt) {
        size_t n = strlen(r->prompt), cut = n;
        if (cut > REQLOG_MAX_LINE / 4) {
            cut = REQLOG_MAX_LINE / 4;
            while (cut > 0 && ((unsigned char)r->prompt[cut] & 0xC0) == 0x80)
                cut--; /* not inside a UTF-8 sequence */
            json_object_set_new(o, "prompt_truncated", json_true());
        }
        json_object_set_new(o, "prompt", json_stringn(r->prompt, cut));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s)
        return -1;
    ah_err_t rc = ah_buf_appends(out, s);
    free(s); /* jansson's allocation */
    return rc ? -1 : 0;
}

/* Write all of b; lines it could not write are lost (counted by caller). */
static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void flush(ah_reqlog_t *l, ah_buf_t *b, uint64_t lines)
{
    if (!lines)
        return;
    int ok = write_all(l->fd, b->data, b->len) == 0;
    int err = errno;
    pthread_mutex_lock(&l->mu);
    if (ok) {
        l->written += lines;
    } else {
        l->lost += lines;
        int64_t now = ah_now_us();
        if (!l->warned_us || now - l->warned_us > REQLOG_WARN_EVERY_US) {
            l->warned_us = now;
            ah_warn("request log: write failed (%s): %llu lines lost so far", strerror(err),
                    (unsigned long long)l->lost);
        }
    }
    pthread_mutex_unlock(&l->mu);
    ah_buf_reset(b);
}

void ah_reqlog_rows(void *ctx, ah_ledger_row_t *const *rows, int n)
{
    ah_reqlog_t *l = ctx;
    ah_buf_t b;
    ah_buf_init(&b, REQLOG_FLUSH_BYTES + REQLOG_MAX_LINE + 1);
    uint64_t lines = 0;
    for (int i = 0; i < n; i++) {
        size_t before = b.len;
        if (ah_reqlog_format(rows[i], &b) || ah_buf_append(&b, "\n", 1)) {
            b.len = before; /* this row's line alone is lost */
            if (b.data)
                b.data[before] = '\0';
            pthread_mutex_lock(&l->mu);
            l->lost++;
            pthread_mutex_unlock(&l->mu);
            continue;
        }
        lines++;
        if (b.len >= REQLOG_FLUSH_BYTES) {
            flush(l, &b, lines);
            lines = 0;
        }
    }
    flush(l, &b, lines);
    ah_buf_free(&b);
}

void ah_reqlog_stats(ah_reqlog_t *l, uint64_t *written, uint64_t *lost)
{
    pthread_mutex_lock(&l->mu);
    *written = l->written;
    *lost = l->lost;
    pthread_mutex_unlock(&l->mu);
}

void ah_reqlog_close(ah_reqlog_t *l)
{
    if (!l)
        return;
    if (l->owned)
        close(l->fd);
    pthread_mutex_destroy(&l->mu);
    ah_free(l);
}
