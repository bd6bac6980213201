/* sse.h - incremental parser of server-sent events from an upstream.
 *
 * Bytes go in as the network delivers them; each complete event (its
 * `event:` name and joined `data:` lines) is handed to a callback, together
 * with the raw bytes of the event so that a same-format stream can be
 * forwarded untouched. One event may not exceed AH_MAX_SSE_EVENT_BYTES. */
#ifndef AH_SSE_H
#define AH_SSE_H

#include <stddef.h>

#include "core/buf.h"

/* Called once per event; data is NUL-terminated. Return nonzero to stop
 * parsing (ah_sse_feed then returns AH_E_CLOSED). */
typedef int (*ah_sse_event_cb)(void *ud, const char *event, const char *data, size_t data_len,
                               const char *raw, size_t raw_len);

typedef struct ah_sse {
    ah_buf_t pending; /* bytes of an incomplete event */
    ah_buf_t data;    /* data lines of the current event */
    char event[64];
    size_t scan;       /* bytes of pending already scanned */
    size_t line_start; /* offset of the current line in pending */
} ah_sse_t;

void ah_sse_init(ah_sse_t *s);
/* Feed n bytes; AH_E_TOOBIG when an event exceeds the limit. */
ah_err_t ah_sse_feed(ah_sse_t *s, const char *p, size_t n, ah_sse_event_cb cb, void *ud);
/* Free the buffers. */
void ah_sse_free(ah_sse_t *s);

#endif
