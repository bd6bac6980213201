/* sse.c - server-sent events, per the WHATWG event-stream grammar:
 * lines end in LF, CR or CRLF; a blank line ends an event; "data:" lines are
 * joined with LF; a leading space after the colon is dropped; lines that
 * start with ':' are comments. */
#include "upstream/sse.h"

#include <string.h>

#include "core/limits.h"

void ah_sse_init(ah_sse_t *s)
{
    ah_buf_init(&s->pending, AH_MAX_SSE_EVENT_BYTES);
    ah_buf_init(&s->data, AH_MAX_SSE_EVENT_BYTES);
    s->event[0] = '\0';
    s->scan = s->line_start = 0;
}

void ah_sse_free(ah_sse_t *s)
{
    ah_buf_free(&s->pending);
    ah_buf_free(&s->data);
}

/* Handle one line (without its terminator); returns nonzero when the
 * callback asked to stop. */
static int line(ah_sse_t *s, const char *l, size_t n, const char *raw, size_t raw_len,
                ah_sse_event_cb cb, void *ud, ah_err_t *rc)
{
    if (n == 0) {
        int stop = 0;
        if (s->data.len || s->event[0])
            stop = cb(ud, s->event[0] ? s->event : NULL, s->data.data ? s->data.data : "",
                      s->data.len, raw, raw_len);
        ah_buf_reset(&s->data);
        s->event[0] = '\0';
        return stop;
    }
    if (l[0] == ':')
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t fl = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vl = (size_t)(l + n - v);
    if (vl && v[0] == ' ') {
        v++;
        vl--;
    }
    if (fl == 4 && memcmp(l, "data", 4) == 0) {
        if (s->data.len && (*rc = ah_buf_append(&s->data, "\n", 1)))
            return 1;
        if ((*rc = ah_buf_append(&s->data, v, vl)))
            return 1;
    } else if (fl == 5 && memcmp(l, "event", 5) == 0) {
        if (vl >= sizeof s->event)
            vl = sizeof s->event - 1;
        memcpy(s->event, v, vl);
        s->event[vl] = '\0';
    }
    return 0;
}

/* The offset of the first CR or LF in buf[from, to), or to. memchr finds
 * them many bytes at a time, where a loop over every byte of a long
 * data line was the parser's main cost. */
static size_t eol(const char *buf, size_t from, size_t to)
{
    const char *lf = memchr(buf + from, '\n', to - from);
    size_t end = lf ? (size_t)(lf - buf) : to;
    const char *cr = memchr(buf + from, '\r', end - from);
    return cr ? (size_t)(cr - buf) : end;
}

/* Parse the complete event in buf[0..n) and hand it to the callback. */
static int dispatch(ah_sse_t *s, const char *buf, size_t n, ah_sse_event_cb cb, void *ud,
                    ah_err_t *rc)
{
    size_t start = 0, i = 0;
    while (i < n) {
        i = eol(buf, i, n);
        if (i == n)
            break;
        char c = buf[i];
        size_t next = i + 1;
        if (c == '\r' && next < n && buf[next] == '\n')
            next++;
        if (line(s, buf + start, i - start, buf, n, cb, ud, rc))
            return 1;
        start = i = next;
    }
    return 0;
}

ah_err_t ah_sse_feed(ah_sse_t *s, const char *p, size_t n, ah_sse_event_cb cb, void *ud)
{
    ah_err_t rc = ah_buf_append(&s->pending, p, n);
    if (rc)
        return rc;
    /* Events are dispatched in place; the bytes of those done are dropped
     * from pending once, at the end, not after each event. */
    size_t head = 0, i = s->scan, len = s->pending.len;
    while (i < len) {
        const char *buf = s->pending.data;
        i = eol(buf, i, len);
        if (i == len)
            break;
        char c = buf[i];
        size_t next = i + 1;
        if (c == '\r') {
            if (next >= len)
                break; /* a CR may be followed by LF: wait for the next byte */
            if (buf[next] == '\n')
                next++;
        }
        int blank = i == s->line_start;
        s->line_start = next;
        i = next;
        if (!blank)
            continue;
        /* buf[head..next) is one whole event, ending with its blank line. */
        int stop = dispatch(s, buf + head, next - head, cb, ud, &rc);
        head = next;
        if (stop) {
            ah_buf_consume(&s->pending, head);
            s->scan = s->line_start = 0;
            return rc ? rc : AH_E_CLOSED;
        }
    }
    if (head)
        ah_buf_consume(&s->pending, head);
    s->scan = i - head;
    s->line_start -= head;
    return AH_E_OK;
}
