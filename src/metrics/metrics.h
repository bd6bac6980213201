/* metrics.h - the gateway's Prometheus metrics (docs/metrics.md).
 *
 * Every thread that records requests (the event loops) counts into a table
 * of its own, so the request path takes no shared lock and touches no
 * shared cache line: each counter has one writer, updated with relaxed
 * atomic loads and stores. A scrape sums the tables by series. Tables are
 * registered once per thread and never freed; a table whose thread exits is
 * adopted by the next new thread, so the number of tables is bounded by the
 * threads alive at once (past AH_METRICS_MAX_TABLES, threads share one
 * table behind a mutex).
 *
 * Series are bounded: every label value is interned into a set of at most
 * a fixed number of values (label.h), and each table holds a fixed number
 * of series, past which new label combinations count under one series
 * whose labels all say "other". User ids, keys and request ids are never
 * labels. */
#ifndef AH_METRICS_H
#define AH_METRICS_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "core/buf.h"
#include "store/ledger.h"

/* Distinct models, providers, routes and deployments each (past: "other"). */
#define AH_METRICS_MAX_LABEL_VALUES 128
/* Request series (model, provider, status, route, tags) per table, and in
 * one scrape. */
#define AH_METRICS_MAX_SERIES 1024
/* Timing series (model, provider, status, route, operation) with their
 * histograms, per table and per scrape. */
#define AH_METRICS_MAX_TIMING_SERIES 256
/* Upstream series (provider, deployment, status). */
#define AH_METRICS_MAX_UPSTREAM_SERIES 256
/* Tables of their own; further threads share one. */
#define AH_METRICS_MAX_TABLES 64
/* Largest exposition a scrape renders (bytes). */
#define AH_METRICS_MAX_TEXT (48u << 20)

struct ah_guard;

/* Count one ledger row as it is appended: a request (row->attempt_of NULL)
 * or a failed attempt that was retried. tags: the request's tag object (or
 * NULL); attempts: upstream attempts the request made (a final row with
 * attempts > 0 and an error status counts as an upstream error). Reads
 * cfg->metrics for the tag labels. Thread-safe; nothing is kept of row or
 * tags. */
void ah_metrics_observe(const ah_config_t *cfg, const ah_ledger_row_t *row, const json_t *tags,
                        int attempts);
/* Count a request entering (+1) or leaving (-1) the gateway; both on the
 * thread that serves it. */
void ah_metrics_inflight(int delta);
/* Append the text exposition of every series, summed over the threads. */
void ah_metrics_render(const ah_config_t *cfg, ah_buf_t *out);
/* Append each budget's limit and current spend (gauges); g may be NULL. */
void ah_metrics_render_budgets(const ah_config_t *cfg, struct ah_guard *g, ah_buf_t *out);

/* The shared backends' health (metrics/backends.c), read at scrape time. */
struct ah_redis_pool_stats;
/* Append the ledger's counts and, with PostgreSQL, its connection's state
 * and its spool; l may be NULL. */
void ah_metrics_render_ledger(ah_ledger_t *l, ah_buf_t *out);
/* Append each Redis pool's state, outages and calls that went without it;
 * nothing when no pool lives. */
void ah_metrics_render_redis(ah_buf_t *out);
/* Every live Redis pool's health, pools of one name summed into one (down
 * when any is); at most max into out; returns how many. */
int ah_metrics_redis_pools(struct ah_redis_pool_stats *out, int max);
/* The body of GET /health: status "ok", or "degraded" while the ledger's
 * backend or a Redis pool is away; the ledger's counts and state; each
 * Redis pool's. The caller owns the result (json_decref). */
json_t *ah_metrics_health(ah_ledger_t *l);

#endif
