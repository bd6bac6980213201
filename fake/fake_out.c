/* fake_out.c - bounded output with a sticky error, and the JSON writing the fake needs.
 *
 * Responses are printed straight into a buffer rather than built as jansson trees: the
 * non-streamed chat answer is the hot path of the gateway's throughput benchmarks, and
 * printing skips one allocation per JSON node. Only values that come from the request
 * (tool schemas, echoed objects) go through jansson's printer. */
#include "fake.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void fake_out_init(fake_out_t *o, size_t max)
{
    ah_buf_init(&o->buf, max);
    o->err = AH_E_OK;
}

void fake_out_reset(fake_out_t *o)
{
    ah_buf_reset(&o->buf);
    o->err = AH_E_OK;
}

void fake_out_free(fake_out_t *o)
{
    ah_buf_free(&o->buf);
    o->err = AH_E_OK;
}

void fake_out_raw(fake_out_t *o, const char *s, size_t n)
{
    if (o->err)
        return;
    o->err = ah_buf_append(&o->buf, s, n);
}

void fake_out_cstr(fake_out_t *o, const char *s)
{
    fake_out_raw(o, s, strlen(s));
}

void fake_out_printf(fake_out_t *o, const char *fmt, ...)
{
    if (o->err)
        return;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->err = AH_E_INVAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        o->err = ah_buf_append(&o->buf, small, (size_t)n);
        return;
    }
    char *big = ah_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    o->err = ah_buf_append(&o->buf, big, (size_t)n);
    ah_free(big);
}

void fake_out_jstr(fake_out_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    fake_out_raw(o, "\"", 1);
    size_t run = 0; /* start of the bytes that need no escaping */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[6];
        size_t elen = 2;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        esc[0] = '\\';
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        fake_out_raw(o, s + run, i - run);
        fake_out_raw(o, esc, elen);
        run = i + 1;
    }
    fake_out_raw(o, s + run, n - run);
    fake_out_raw(o, "\"", 1);
}

void fake_out_jcstr(fake_out_t *o, const char *s)
{
    if (!s)
        fake_out_raw(o, "null", 4);
    else
        fake_out_jstr(o, s, strlen(s));
}

void fake_out_json(fake_out_t *o, const json_t *v)
{
    if (!v) {
        fake_out_raw(o, "null", 4);
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!s) {
        if (!o->err)
            o->err = AH_E_NOMEM;
        return;
    }
    fake_out_cstr(o, s);
    free(s); /* jansson's allocator is the C library's */
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

void fake_utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n = utf8_len(p); /* stops at the NUL: it is not a continuation byte */
        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

char *fake_fmt_ll(char *out, long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *out++ = '-';
    while (n)
        *out++ = tmp[--n];
    *out = '\0';
    return out;
}
