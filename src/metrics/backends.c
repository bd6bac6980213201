/* backends.c - the health of the shared backends: the ledger's writer (and
 * PostgreSQL's spool behind it) and the Redis pools, as gauges and counters
 * for /metrics and as the body of /health (docs/metrics.md).
 *
 * Everything is read at scrape time from counters the backends keep anyway
 * (ah_ledger_health, ah_redis_pools_stats), so nothing is added to the
 * request path. Pools that share a name (a second gateway in one process,
 * as in the unit tests) are reported as one: down when any is, their counts
 * summed, so that a series never appears twice. */
#include <stdio.h>
#include <string.h>

#include "metrics/label.h"
#include "metrics/metrics.h"
#include "state/redis_conn.h"

int ah_metrics_redis_pools(ah_redis_pool_stats_t *out, int max)
{
    ah_redis_pool_stats_t all[AH_REDIS_MAX_POOLS];
    int n = ah_redis_pools_stats(all, AH_REDIS_MAX_POOLS), m = 0;
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < m && strcmp(out[j].name, all[i].name) != 0)
            j++;
        if (j < m) {
            out[j].up &= all[i].up;
            out[j].outages += all[i].outages;
            out[j].calls_without += all[i].calls_without;
        } else if (m < max) {
            out[m++] = all[i];
        }
    }
    return m;
}

/* One sample line: name, optional pool label, value. */
static void sample(ah_buf_t *o, const char *name, const char *pool, unsigned long long v)
{
    ah_buf_appends(o, name);
    if (pool) {
        ah_buf_appends(o, "{pool=\"");
        ah_label_escape(o, pool);
        ah_buf_appends(o, "\"}");
    }
    ah_buf_printf(o, " %llu\n", v);
}

static void family(ah_buf_t *o, const char *name, const char *type, const char *help)
{
    ah_buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void ah_metrics_render_ledger(ah_ledger_t *l, ah_buf_t *o)
{
    if (!l)
        return;
    ah_ledger_health_t h;
    ah_ledger_health(l, &h);
    family(o, "ahorro_ledger_rows_written_total", "counter",
           "Ledger rows the backend took (with PostgreSQL away: kept in the spool for replay).");
    sample(o, "ahorro_ledger_rows_written_total", NULL, h.written);
    family(o, "ahorro_ledger_rows_failed_total", "counter",
           "Ledger rows lost: the backend failed them after the writer's retries.");
    sample(o, "ahorro_ledger_rows_failed_total", NULL, h.failed);
    family(o, "ahorro_ledger_queue_rows", "gauge",
           "Ledger rows queued for the writer and not written yet.");
    sample(o, "ahorro_ledger_queue_rows", NULL, h.queued);
    if (!h.has_sink_stats)
        return;
    const ah_ledger_sink_stats_t *s = &h.sink;
    family(o, "ahorro_ledger_backend_up", "gauge",
           "1 when the last attempt to reach PostgreSQL succeeded, 0 while the writer is behind.");
    sample(o, "ahorro_ledger_backend_up", NULL, (unsigned long long)(s->up != 0));
    family(o, "ahorro_ledger_spool_bytes", "gauge",
           "Size of the ledger's spool on disk (rows journaled, the current segment included).");
    sample(o, "ahorro_ledger_spool_bytes", NULL, s->spool_bytes);
    family(o, "ahorro_ledger_spool_segments", "gauge",
           "Segment files in the ledger's spool, the one being appended included.");
    sample(o, "ahorro_ledger_spool_segments", NULL, s->spool_segments);
    family(o, "ahorro_ledger_rows_replayed_total", "counter",
           "Ledger rows inserted from the spool after an outage or a restart.");
    sample(o, "ahorro_ledger_rows_replayed_total", NULL, s->replayed);
    family(o, "ahorro_ledger_rows_dropped_total", "counter",
           "Ledger rows PostgreSQL refused for their data (logged with their request id).");
    sample(o, "ahorro_ledger_rows_dropped_total", NULL, s->dropped);
    family(o, "ahorro_ledger_rows_unspooled_total", "counter",
           "Ledger rows not journaled because the spool was full or unwritable.");
    sample(o, "ahorro_ledger_rows_unspooled_total", NULL, s->unspooled);
}

void ah_metrics_render_redis(ah_buf_t *o)
{
    ah_redis_pool_stats_t p[AH_REDIS_MAX_POOLS];
    int n = ah_metrics_redis_pools(p, AH_REDIS_MAX_POOLS);
    if (n == 0)
        return;
    family(o, "ahorro_redis_up", "gauge",
           "0 while a pool of Redis connections is in an outage (its calls go without Redis).");
    for (int i = 0; i < n; i++)
        sample(o, "ahorro_redis_up", p[i].name, (unsigned long long)(p[i].up != 0));
    family(o, "ahorro_redis_outages_total", "counter", "Outages of Redis a pool went through.");
    for (int i = 0; i < n; i++)
        sample(o, "ahorro_redis_outages_total", p[i].name, p[i].outages);
    family(o, "ahorro_redis_calls_without_total", "counter",
           "Calls that went without Redis during its outages (degraded as configured).");
    for (int i = 0; i < n; i++)
        sample(o, "ahorro_redis_calls_without_total", p[i].name, p[i].calls_without);
}

json_t *ah_metrics_health(ah_ledger_t *l)
{
    int degraded = 0;
    json_t *ledger = json_object();
    if (l) {
        ah_ledger_health_t h;
        ah_ledger_health(l, &h);
        json_object_set_new(ledger, "written", json_integer((json_int_t)h.written));
        json_object_set_new(ledger, "failed", json_integer((json_int_t)h.failed));
        json_object_set_new(ledger, "backend", json_string(h.backend));
        json_object_set_new(ledger, "up", json_boolean(h.up));
        json_object_set_new(ledger, "queued", json_integer((json_int_t)h.queued));
        if (h.has_sink_stats)
            json_object_set_new(ledger, "spooled_bytes",
                                json_integer((json_int_t)h.sink.spool_bytes));
        degraded |= !h.up;
    }
    json_t *redis = json_array();
    ah_redis_pool_stats_t p[AH_REDIS_MAX_POOLS];
    int n = ah_metrics_redis_pools(p, AH_REDIS_MAX_POOLS);
    for (int i = 0; i < n; i++) {
        json_array_append_new(redis, json_pack("{s:s,s:b,s:I,s:I}", "pool", p[i].name, "up",
                                               p[i].up, "outages", (json_int_t)p[i].outages,
                                               "calls_without", (json_int_t)p[i].calls_without));
        degraded |= !p[i].up;
    }
    /* Still 200: a backend away degrades the gateway as configured, it does
     * not stop it (a load balancer should keep sending it traffic). */
    return json_pack("{s:s,s:o,s:o}", "status", degraded ? "degraded" : "ok", "ledger", ledger,
                     "redis", redis);
}
