/* trace.h - what a request's trace records while it runs: its ids and the
 * start and end of each pipeline stage (monotonic microseconds).
 *
 * Filled on the request's own thread, only when tracing is on (t->on); the
 * OTLP exporter (observe/otlp.h) turns a finished trace into spans, off the
 * request path. With tracing off every call here is a test of one int. */
#ifndef AH_TRACE_H
#define AH_TRACE_H

#include <stdint.h>

/* The stages a trace shows as child spans of the request's span. */
typedef enum {
    AH_SPAN_AUTH,
    AH_SPAN_ATTRIBUTE,
    AH_SPAN_GUARD,
    AH_SPAN_SHAPE,
    AH_SPAN_SUMMARY,
    AH_SPAN_CACHE,
    AH_SPAN_ROUTE,
    AH_SPAN_UPSTREAM,
    AH_SPAN_N
} ah_span_id_t;

typedef struct ah_span_time {
    int64_t start_us, end_us; /* monotonic; 0: did not run */
} ah_span_time_t;

typedef struct ah_trace {
    int on;
    uint8_t trace_id[16];
    uint8_t parent_id[8]; /* the caller's span (W3C traceparent), if has_parent */
    int has_parent;
    int64_t t0_us;   /* monotonic, when the trace began */
    int64_t wall_ns; /* the wall clock at t0_us */
    ah_span_time_t span[AH_SPAN_N];
} ah_trace_t;

/* Begin a trace at monotonic time now_us: its id is the caller's when
 * traceparent is a valid W3C header (version 00, non-zero ids), else drawn
 * from *rng. Sampled at ratio (0..1) unless the caller's header decided
 * (its sampled flag). */
void ah_trace_begin(ah_trace_t *t, const char *traceparent, double ratio, uint64_t *rng,
                    int64_t now_us);
/* Parse a W3C traceparent header; 1 when valid, with the ids and flags. */
int ah_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t parent_id[8], int *sampled);
/* Stage span boundaries; rc is passed through so a stage call can be
 * wrapped: ah_trace_leave(t, s, (ah_trace_enter(t, s), stage(...))). */
void ah_trace_enter(ah_trace_t *t, ah_span_id_t s);
int ah_trace_leave(ah_trace_t *t, ah_span_id_t s, int rc);
/* Lower-case hex of n bytes into out (2n + 1 bytes). */
void ah_trace_hex(const uint8_t *b, int n, char *out);
/* The span names, "ahorro.auth" ... "upstream". */
const char *ah_span_name(ah_span_id_t s);

#endif
