/* otlp.h - request traces exported as OpenTelemetry spans, OTLP over HTTP
 * with JSON bodies (POST {endpoint}/v1/traces).
 *
 * A request the gateway samples (observe/trace.h) becomes one SERVER span,
 * "chat <model>" with OpenTelemetry's GenAI attributes, and a child span per
 * pipeline stage it went through (ahorro.auth ... ahorro.route) and for the
 * upstream call (CLIENT). A client's W3C traceparent header makes the
 * request's span a child of the client's, in the client's trace.
 *
 * Threads: a ledger observer (store/ledger.h) turns rows into spans on the
 * ledger's writer thread and queues them; one exporter thread posts them in
 * batches (every second, or sooner when many wait). The queue is bounded:
 * when the collector is slow or gone, traces are dropped and counted, never
 * queued without limit and never waited for by a request. */
#ifndef AH_OTLP_H
#define AH_OTLP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "store/ledger.h"

/* Traces queued at most; further ones are dropped. */
#define AH_OTLP_QUEUE 4096
/* Traces in one POST at most. */
#define AH_OTLP_BATCH 512

typedef struct ah_otlp ah_otlp_t;

typedef struct ah_otlp_options {
    const char *endpoint;       /* "http://host:4318" or a full ".../v1/traces" URL */
    const char *service_name;   /* resource service.name; NULL: "ahorro" */
    const char *const *headers; /* "Name: value" lines sent with each POST */
    size_t nheaders;
    long timeout_ms; /* per POST; 0: 5000 */
} ah_otlp_options_t;

/* Start the exporter thread. */
ah_err_t ah_otlp_start(const ah_otlp_options_t *o, ah_otlp_t **out);
/* The ledger observer; ctx is the ah_otlp_t. */
void ah_otlp_rows(void *ctx, ah_ledger_row_t *const *rows, int n);
/* Traces posted, dropped (queue full, or the collector refused or failed). */
void ah_otlp_stats(ah_otlp_t *e, uint64_t *exported, uint64_t *dropped);
/* Post what is queued (bounded by the timeout), stop the thread, free. */
void ah_otlp_stop(ah_otlp_t *e);

#endif
