/* json_out.c - see json_out.h. */
#include "core/json_out.h"

#include <stdio.h>

size_t ah_utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* no overlong forms */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (len > n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return len;
}

ah_err_t ah_json_out_string(ah_buf_t *b, const char *s)
{
    static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *p = (const unsigned char *)s;
    size_t n = 0;
    while (p[n])
        n++;
    ah_err_t rc = ah_buf_append(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < n && !rc;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t len = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        } else if (c >= 0x80 && !(len = ah_utf8_seq_len(p + i, n - i))) {
            esc = replacement;
            len = 1;
        }
        if (!esc) {
            run += len;
            i += len;
            continue;
        }
        if (run)
            rc = ah_buf_append(b, p + i - run, run);
        run = 0;
        if (!rc)
            rc = ah_buf_appends(b, esc);
        i += len;
    }
    if (!rc && run)
        rc = ah_buf_append(b, p + n - run, run);
    return rc ? rc : ah_buf_append(b, "\"", 1);
}
