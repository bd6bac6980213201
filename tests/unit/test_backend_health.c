/* test_backend_health.c - the shared backends' health as /metrics and
 * /health report it (metrics/backends.c): Redis pools counted through their
 * outage rule and merged by name, the ledger's counts, and a sink's own
 * state (PostgreSQL's, played here by a sink of the test's) making the
 * status "degraded". No server is needed: pools are never connected. */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "metrics/metrics.h"
#include "state/redis_conn.h"
#include "store/ledger.h"

static ah_redis_pool_t *pool(const char *name)
{
    /* Port 1 on loopback: nothing listens, and nothing here connects. */
    ah_state_config_t cfg = {.url = "redis://127.0.0.1:1/0", .timeout_ms = 50};
    ah_redis_pool_t *p = ah_redis_pool_new(&cfg, name, "nothing happens until it is back");
    ck_assert_ptr_nonnull(p);
    return p;
}

/* The exposition of the Redis pools, as a string the caller frees. */
static char *render_redis(void)
{
    ah_buf_t b;
    ah_buf_init(&b, 1u << 20);
    ah_metrics_render_redis(&b);
    char *s = ah_strndup(b.data ? b.data : "", b.len);
    ah_buf_free(&b);
    return s;
}

static char *render_ledger(ah_ledger_t *l)
{
    ah_buf_t b;
    ah_buf_init(&b, 1u << 20);
    ah_metrics_render_ledger(l, &b);
    char *s = ah_strndup(b.data ? b.data : "", b.len);
    ah_buf_free(&b);
    return s;
}

#define ck_has(text, needle) ck_assert_msg(strstr(text, needle), "no '%s' in:\n%s", needle, text)

START_TEST(redis_pools)
{
    char *t = render_redis();
    ck_assert_str_eq(t, ""); /* no pool: no family */
    ah_free(t);

    ah_redis_pool_t *a = pool("state"), *b = pool("state"), *c = pool("cache");
    ah_redis_pool_stats_t st[AH_REDIS_MAX_POOLS];
    ck_assert_int_eq(ah_metrics_redis_pools(st, AH_REDIS_MAX_POOLS), 2);
    ck_assert_str_eq(st[0].name, "state");
    ck_assert_int_eq(st[0].up, 1);

    /* One of the two "state" pools fails: the name is down, its calls counted. */
    ah_redis_pool_failed(b, "connect: refused");
    ah_redis_pool_failed(b, "connect: refused"); /* the same outage */
    for (int i = 0; i < 3; i++)
        ah_redis_pool_went_without(b);
    ah_redis_pool_stats(b, &st[0]);
    ck_assert_int_eq(st[0].up, 0);
    ck_assert_uint_eq(st[0].outages, 1);
    ck_assert_uint_eq(st[0].calls_without, 3);
    ck_assert_int_eq(ah_metrics_redis_pools(st, AH_REDIS_MAX_POOLS), 2);
    ck_assert_int_eq(st[0].up, 0);
    ck_assert_uint_eq(st[0].calls_without, 3);
    ck_assert_str_eq(st[1].name, "cache");
    ck_assert_int_eq(st[1].up, 1);
    t = render_redis();
    ck_has(t, "# TYPE ahorro_redis_up gauge\n");
    ck_has(t, "ahorro_redis_up{pool=\"state\"} 0\n");
    ck_has(t, "ahorro_redis_up{pool=\"cache\"} 1\n");
    ck_has(t, "# TYPE ahorro_redis_outages_total counter\n");
    ck_has(t, "ahorro_redis_outages_total{pool=\"state\"} 1\n");
    ck_has(t, "ahorro_redis_calls_without_total{pool=\"state\"} 3\n");
    ck_has(t, "ahorro_redis_calls_without_total{pool=\"cache\"} 0\n");
    ck_assert_ptr_null(strstr(strstr(t, "pool=\"state\"") + 1, "ahorro_redis_up{pool=\"state\"}"));
    ah_free(t);

    /* Back: up again; the counters stay (they count every outage). */
    ah_redis_pool_answered(b);
    ah_redis_pool_failed(c, "timeout");
    ah_redis_pool_answered(c);
    t = render_redis();
    ck_has(t, "ahorro_redis_up{pool=\"state\"} 1\n");
    ck_has(t, "ahorro_redis_outages_total{pool=\"state\"} 1\n");
    ck_has(t, "ahorro_redis_calls_without_total{pool=\"state\"} 3\n");
    ck_has(t, "ahorro_redis_outages_total{pool=\"cache\"} 1\n");
    ah_free(t);

    /* A freed pool leaves the registry. */
    ah_redis_pool_free(c);
    ck_assert_int_eq(ah_metrics_redis_pools(st, AH_REDIS_MAX_POOLS), 1);
    ah_redis_pool_free(a);
    ah_redis_pool_free(b);
    ck_assert_int_eq(ah_metrics_redis_pools(st, AH_REDIS_MAX_POOLS), 0);
}
END_TEST

START_TEST(redis_registry_bound)
{
    ah_redis_pool_t *p[AH_REDIS_MAX_POOLS + 2];
    char name[16];
    for (int i = 0; i < AH_REDIS_MAX_POOLS + 2; i++) {
        snprintf(name, sizeof name, "p%d", i);
        p[i] = pool(name);
    }
    ah_redis_pool_stats_t st[AH_REDIS_MAX_POOLS];
    ck_assert_int_eq(ah_redis_pools_stats(st, AH_REDIS_MAX_POOLS), AH_REDIS_MAX_POOLS);
    ck_assert_int_eq(ah_redis_pools_stats(st, 3), 3);
    for (int i = 0; i < AH_REDIS_MAX_POOLS + 2; i++)
        ah_redis_pool_free(p[i]); /* the unregistered ones too */
    ck_assert_int_eq(ah_redis_pools_stats(st, AH_REDIS_MAX_POOLS), 0);
}
END_TEST

static ah_ledger_row_t *row(int i)
{
    char id[32];
    snprintf(id, sizeof id, "req_health_%d", i);
    ah_ledger_row_t *r = ah_calloc(1, sizeof *r);
    r->request_id = ah_strdup(id);
    r->api = "openai";
    r->endpoint = "chat";
    r->usage_source = "none";
    r->cost_usd = -1;
    r->ttft_ms = -1;
    r->baseline_usd = -1;
    r->status = 200;
    return r;
}

static void wait_written(ah_ledger_t *l, uint64_t n)
{
    ah_ledger_health_t h;
    for (int i = 0; i < 500; i++) {
        ah_ledger_health(l, &h);
        if (h.written + h.failed >= n && h.queued == 0)
            return;
        usleep(10000);
    }
    ck_abort_msg("the ledger did not write %llu rows", (unsigned long long)n);
}

START_TEST(sqlite_ledger)
{
    char path[] = "/tmp/ahorro-test-health-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ah_ledger_t *l = NULL;
    ck_assert_int_eq(ah_ledger_open_sqlite(path, &l), AH_E_OK);
    for (int i = 0; i < 5; i++)
        ah_ledger_append(l, row(i));
    wait_written(l, 5);
    ah_ledger_health_t h;
    ah_ledger_health(l, &h);
    ck_assert_str_eq(h.backend, "sqlite");
    ck_assert_uint_eq(h.written, 5);
    ck_assert_int_eq(h.up, 1);
    ck_assert_int_eq(h.has_sink_stats, 0);

    char *t = render_ledger(l);
    ck_has(t,
           "# TYPE ahorro_ledger_rows_written_total counter\nahorro_ledger_rows_written_total 5\n");
    ck_has(t, "ahorro_ledger_rows_failed_total 0\n");
    ck_has(t, "# TYPE ahorro_ledger_queue_rows gauge\nahorro_ledger_queue_rows 0\n");
    ck_assert_ptr_null(strstr(t, "ahorro_ledger_backend_up")); /* PostgreSQL's only */
    ah_free(t);

    json_t *b = ah_metrics_health(l);
    ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "ok");
    json_t *lg = json_object_get(b, "ledger");
    ck_assert_int_eq(json_integer_value(json_object_get(lg, "written")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(lg, "failed")), 0);
    ck_assert_str_eq(json_string_value(json_object_get(lg, "backend")), "sqlite");
    ck_assert(json_is_true(json_object_get(lg, "up")));
    ck_assert_ptr_null(json_object_get(lg, "spooled_bytes"));
    ck_assert_int_eq(json_array_size(json_object_get(b, "redis")), 0);
    json_decref(b);

    /* A Redis pool in an outage: degraded, still the same ledger. */
    ah_redis_pool_t *p = pool("state");
    ah_redis_pool_failed(p, "connect: refused");
    b = ah_metrics_health(l);
    ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "degraded");
    json_t *r0 = json_array_get(json_object_get(b, "redis"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(r0, "pool")), "state");
    ck_assert(json_is_false(json_object_get(r0, "up")));
    json_decref(b);
    ah_redis_pool_answered(p);
    b = ah_metrics_health(l);
    ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "ok");
    json_decref(b);
    ah_redis_pool_free(p);

    ah_ledger_close(l);
    unlink(path);
}
END_TEST

/* A sink standing for PostgreSQL: writes nothing, reports what the test
 * sets. */
static ah_ledger_sink_stats_t fake_state;

static ah_err_t fake_write(void *ctx, ah_ledger_row_t **rows, int n)
{
    return AH_E_OK;
}

static void fake_close(void *ctx)
{
}

static void fake_stats(void *ctx, ah_ledger_sink_stats_t *out)
{
    *out = fake_state;
}

static const ah_ledger_sink_t fake_sink = {"postgres", fake_write, fake_close, NULL, fake_stats};

START_TEST(sink_stats)
{
    ah_ledger_t *l = NULL;
    ck_assert_int_eq(ah_ledger_open_sink(&fake_sink, NULL, &l), AH_E_OK);
    fake_state = (ah_ledger_sink_stats_t){.up = 0,
                                          .spool_bytes = 12345,
                                          .spool_segments = 3,
                                          .replayed = 7,
                                          .dropped = 2,
                                          .unspooled = 1};
    ah_ledger_append(l, row(1));
    wait_written(l, 1);
    char *t = render_ledger(l);
    ck_has(t, "ahorro_ledger_rows_written_total 1\n");
    ck_has(t, "# TYPE ahorro_ledger_backend_up gauge\nahorro_ledger_backend_up 0\n");
    ck_has(t, "# TYPE ahorro_ledger_spool_bytes gauge\nahorro_ledger_spool_bytes 12345\n");
    ck_has(t, "ahorro_ledger_spool_segments 3\n");
    ck_has(t, "# TYPE ahorro_ledger_rows_replayed_total counter\n"
              "ahorro_ledger_rows_replayed_total 7\n");
    ck_has(t, "ahorro_ledger_rows_dropped_total 2\n");
    ck_has(t, "ahorro_ledger_rows_unspooled_total 1\n");
    ah_free(t);

    json_t *b = ah_metrics_health(l);
    ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "degraded");
    json_t *lg = json_object_get(b, "ledger");
    ck_assert_str_eq(json_string_value(json_object_get(lg, "backend")), "postgres");
    ck_assert(json_is_false(json_object_get(lg, "up")));
    ck_assert_int_eq(json_integer_value(json_object_get(lg, "spooled_bytes")), 12345);
    json_decref(b);

    fake_state.up = 1;
    fake_state.spool_bytes = 0;
    b = ah_metrics_health(l);
    ck_assert_str_eq(json_string_value(json_object_get(b, "status")), "ok");
    ck_assert(json_is_true(json_object_get(json_object_get(b, "ledger"), "up")));
    json_decref(b);
    t = render_ledger(l);
    ck_has(t, "ahorro_ledger_backend_up 1\n");
    ck_has(t, "ahorro_ledger_spool_bytes 0\n");
    ah_free(t);
    ah_ledger_close(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend_health");
    TCase *t = tcase_create("backend_health");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, redis_pools);
    tcase_add_test(t, redis_registry_bound);
    tcase_add_test(t, sqlite_ledger);
    tcase_add_test(t, sink_stats);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
