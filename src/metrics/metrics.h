/* metrics.h - Prometheus metrics of the gateway.
 *
 * Counters and a latency histogram per (model, status) series, shared by
 * every event loop behind one mutex (a few hundred ns per request). Label
 * values are bounded: past AH_METRICS_MAX_SERIES distinct series, new ones
 * are counted under model="other", so a client cannot grow memory by
 * inventing model names. */
#ifndef AH_METRICS_H
#define AH_METRICS_H

#include <stdint.h>

#include "core/buf.h"
#include "store/prices.h"

#define AH_METRICS_MAX_SERIES 256

/* Count one finished request. Thread-safe. */
void ah_metrics_observe(const char *model, const char *provider, int status,
                        const ah_usage_t *usage, double cost_usd, double latency_s, double ttft_s);
/* Count a request currently in flight (+1 / -1). */
void ah_metrics_inflight(int delta);
/* Append the Prometheus text exposition. */
void ah_metrics_render(ah_buf_t *out);

#endif
