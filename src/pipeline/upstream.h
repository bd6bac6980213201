/* upstream.h - stage 7: send the request to its deployment and bring the
 * answer back, streamed chunk by chunk as the provider sends it.
 *
 * The stage reports to whoever serves the client through a sink (a table
 * of callbacks), so that it never knows the client's wire format. Exactly
 * one of `answer`, `failed` or `stream_end` ends every started transfer;
 * after it the ah_upstream_t is gone. */
#ifndef AH_UPSTREAM_H
#define AH_UPSTREAM_H

#include <jansson.h>

#include "pipeline/pipeline.h"

typedef struct ah_upstream ah_upstream_t;

typedef struct ah_sink_ops {
    /* A complete answer. raw is the provider's body; raw_same_format tells
     * whether it is already in the client's format. canon is the canonical
     * chat.completion when it is not (borrowed), else NULL. */
    void (*answer)(void *ctx, ah_request_t *r, const char *raw, size_t len, int raw_same_format,
                   json_t *canon);
    /* The request failed before any answer byte (r->fail is set). */
    void (*failed)(void *ctx, ah_request_t *r);
    /* A stream starts (send the response headers now). */
    void (*stream_start)(void *ctx, ah_request_t *r);
    /* Nonzero while the client has more queued than it should (its reading
     * is slower than the provider's writing); the stage then pauses the
     * upstream transfer until the sink calls ah_upstream_resume. */
    int (*stream_backlogged)(void *ctx);
    /* Raw bytes of one upstream event, already in the client's format. */
    void (*stream_raw)(void *ctx, ah_request_t *r, const char *raw, size_t len);
    /* The events of one upstream read were delivered: send them on now. */
    void (*stream_flush)(void *ctx);
    /* One canonical chunk to render in the client's format (borrowed). */
    void (*stream_chunk)(void *ctx, ah_request_t *r, json_t *chunk);
    /* The stream ended: cleanly (r->fail.status == 0), or with r->fail.
     * passthrough tells whether the terminal events were forwarded raw. */
    void (*stream_end)(void *ctx, ah_request_t *r, int passthrough);
} ah_sink_ops_t;

/* Start the upstream call of r. On AH_E_OK the sink will be called later,
 * never from inside this call. On error r->fail is set and nothing is
 * called. */
ah_err_t ah_upstream_start(ah_worker_t *w, ah_request_t *r, const ah_sink_ops_t *sink, void *ctx,
                           ah_upstream_t **out);
/* The client drained its backlog: resume a transfer paused for it. */
void ah_upstream_resume(ah_upstream_t *u);
/* The client went away: abort the transfer; no sink callback follows. */
void ah_upstream_cancel(ah_upstream_t *u);

#endif
