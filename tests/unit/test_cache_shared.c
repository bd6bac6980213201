/* test_cache_shared.c - the answer cache shared through Redis (shared.h):
 * the serialized entry (round trip, every truncation and malformed input
 * refused), and against a real Redis (AHORRO_TEST_REDIS=redis://HOST:PORT/DB;
 * skipped without it) two stores as two instances: exact entries fetched on
 * a miss, semantic entries applied from the stream, removals and purges,
 * malformed stream records skipped, a Redis that is not there; the
 * asynchronous lookup of an event loop (hit, miss, cancelled, Redis away, a
 * Redis that never answers). Prints the
 * measured cost of a local miss that asks Redis (docs/state.md quotes it). */
#include <check.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "check_run.h"
#include <hiredis/hiredis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/shared.h"
#include "core/clock.h"
#include "state/state.h"

#define DIM 8
#define TIMING_CALLS 2000

static const char *url;
static char prefix[64];

static const char ANSWER[] = "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m\","
                             "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                             "\"content\":\"hello\"},\"finish_reason\":\"stop\"}]}";

static void key_of(int n, uint8_t *key)
{
    memset(key, 0, AH_CACHE_KEY_BYTES);
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
        key[i] = (uint8_t)(n * 31 + i * 7 + (n >> 8));
    key[0] = (uint8_t)n;
    key[1] = (uint8_t)(n >> 8);
    key[9] = (uint8_t)(n * 13 + 1);
}

static ah_cache_put_t put_of(const uint8_t *key, const uint8_t *scope, const float *vec,
                             const char *tenant)
{
    return (ah_cache_put_t){
        .key = key,
        .tenant = tenant,
        .ns = "",
        .model = "gpt-4o-mini",
        .answer = ANSWER,
        .answer_len = sizeof ANSWER - 1,
        .cost_usd = 0.00125,
        .now_ms = ah_wall_ms(),
        .ttl_ms = 600000,
        .scope = scope,
        .vec = vec,
        .dim = vec ? DIM : 0,
        .prompt = vec ? "how do i reset my password" : NULL,
    };
}

static void unit_vec(float *v, int seed)
{
    float n = 0;
    for (int i = 0; i < DIM; i++) {
        v[i] = (float)((i + seed) % 5) + 0.5f;
        n += v[i] * v[i];
    }
    for (int i = 0; i < DIM; i++)
        v[i] /= sqrtf(n);
}

START_TEST(round_trip)
{
    uint8_t key[AH_CACHE_KEY_BYTES], scope[AH_CACHE_KEY_BYTES];
    float vec[DIM];
    key_of(1, key);
    key_of(2, scope);
    unit_vec(vec, 0);
    ah_cache_put_t p = put_of(key, scope, vec, "tenant-a");
    ah_buf_t b;
    ah_buf_init(&b, AH_CACHE_SHARED_MAX_VALUE);
    ck_assert_int_eq(ah_cache_shared_encode(&p, &b), AH_E_OK);
    ah_cache_shared_entry_t e;
    ck_assert_int_eq(ah_cache_shared_decode(b.data, b.len, &e), AH_E_OK);
    ck_assert_mem_eq(e.put.key, key, AH_CACHE_KEY_BYTES);
    ck_assert_mem_eq(e.put.scope, scope, AH_CACHE_KEY_BYTES);
    ck_assert_str_eq(e.put.tenant, "tenant-a");
    ck_assert_str_eq(e.put.ns, "");
    ck_assert_str_eq(e.put.model, "gpt-4o-mini");
    ck_assert_str_eq(e.put.prompt, "how do i reset my password");
    ck_assert_int_eq(e.put.answer_len, sizeof ANSWER - 1);
    ck_assert_str_eq(e.put.answer, ANSWER);
    ck_assert(e.put.cost_usd == 0.00125);
    ck_assert_int_eq(e.put.now_ms, p.now_ms);
    ck_assert_int_eq(e.put.ttl_ms, p.ttl_ms);
    ck_assert_int_eq(e.put.dim, DIM);
    ck_assert_mem_eq(e.put.vec, vec, sizeof vec);
    ah_cache_shared_entry_free(&e);
    /* every truncation, and every extension, is refused */
    for (size_t n = 0; n < b.len; n++)
        ck_assert_int_eq(ah_cache_shared_decode(b.data, n, &e), AH_E_PARSE);
    char *longer = malloc(b.len + 1);
    memcpy(longer, b.data, b.len);
    longer[b.len] = 0;
    ck_assert_int_eq(ah_cache_shared_decode(longer, b.len + 1, &e), AH_E_PARSE);
    /* any byte flipped: refused or read, never a crash (ASan checks) */
    for (size_t i = 0; i < b.len; i++) {
        memcpy(longer, b.data, b.len);
        longer[i] ^= 0x5a;
        if (ah_cache_shared_decode(longer, b.len, &e) == AH_E_OK)
            ah_cache_shared_entry_free(&e);
    }
    free(longer);
    /* an exact-only entry; an answer that is not JSON */
    ah_buf_reset(&b);
    p = put_of(key, NULL, NULL, "");
    ck_assert_int_eq(ah_cache_shared_encode(&p, &b), AH_E_OK);
    ck_assert_int_eq(ah_cache_shared_decode(b.data, b.len, &e), AH_E_OK);
    ck_assert_ptr_null(e.put.scope);
    ck_assert_ptr_null(e.put.prompt);
    ck_assert_str_eq(e.put.tenant, "");
    ah_cache_shared_entry_free(&e);
    ah_buf_reset(&b);
    p.answer = "not json";
    p.answer_len = 8;
    ck_assert_int_eq(ah_cache_shared_encode(&p, &b), AH_E_OK);
    ck_assert_int_eq(ah_cache_shared_decode(b.data, b.len, &e), AH_E_PARSE);
    ck_assert_int_eq(ah_cache_shared_decode("garbage", 7, &e), AH_E_PARSE);
    /* over a limit: not encoded */
    ah_buf_reset(&b);
    char *big = malloc(AH_CACHE_SHARED_MAX_NAME + 2);
    memset(big, 't', AH_CACHE_SHARED_MAX_NAME + 1);
    big[AH_CACHE_SHARED_MAX_NAME + 1] = 0;
    p = put_of(key, NULL, NULL, big);
    ck_assert_int_eq(ah_cache_shared_encode(&p, &b), AH_E_TOOBIG);
    free(big);
    ah_buf_free(&b);
}
END_TEST

static redisContext *raw(void)
{
    char host[256];
    int port, db;
    ck_assert_int_eq(ah_state_redis_parse_url(url, host, sizeof host, &port, &db, NULL, 0), 0);
    redisContext *c = redisConnect(host, port);
    ck_assert(c && !c->err);
    if (db)
        freeReplyObject(redisCommand(c, "SELECT %d", db));
    return c;
}

static ah_cache_t *open_cache_ms(const char *u, int timeout_ms)
{
    ah_state_config_t cfg = {.url = (char *)u, .prefix = prefix, .timeout_ms = timeout_ms};
    char err[256];
    ah_cache_t *c = ah_cache_new(10000, 0);
    ck_assert_int_eq(ah_cache_shared_start(c, &cfg, err, sizeof err), 0);
    return c;
}

static ah_cache_t *open_cache(const char *u)
{
    ah_state_config_t cfg = {.url = (char *)u, .prefix = prefix};
    char err[256];
    ah_cache_t *c = ah_cache_new(10000, 0);
    ck_assert_int_eq(ah_cache_shared_start(c, &cfg, err, sizeof err), 0);
    return c;
}

/* Wait up to 3 s for b to find the entry of scope/vec. */
static ah_cache_entry_t *await_similar(ah_cache_t *b, const uint8_t *scope, const float *vec)
{
    for (int i = 0; i < 300; i++) {
        float sim;
        ah_cache_entry_t *e = ah_cache_get_similar(b, scope, vec, DIM, 0.99f, ah_wall_ms(), -1,
                                                   NULL, NULL, NULL, &sim);
        if (e)
            return e;
        usleep(10000);
    }
    return NULL;
}

static uint64_t await_purged(ah_cache_t *c, uint64_t at_least)
{
    ah_cache_stats_t st;
    for (int i = 0; i < 300; i++) {
        ah_cache_stats(c, &st);
        if (st.purged >= at_least)
            break;
        usleep(10000);
    }
    return st.purged;
}

/* Wait until Redis holds key: stores are sent by a background writer. */
static void await_stored(redisContext *rc, const uint8_t *key)
{
    char hex[2 * AH_CACHE_KEY_BYTES + 1];
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    for (int i = 0; i < 500; i++) {
        redisReply *r = redisCommand(rc, "EXISTS %scache:e:%s", prefix, hex);
        long long n = r ? r->integer : 0;
        freeReplyObject(r);
        if (n)
            return;
        usleep(1000);
    }
    ck_abort_msg("the entry never reached Redis");
}

START_TEST(two_instances)
{
    if (!url)
        return;
    ah_cache_t *a = open_cache(url), *b = open_cache(url);
    redisContext *rc = raw();
    uint8_t key[AH_CACHE_KEY_BYTES], scope[AH_CACHE_KEY_BYTES], k2[AH_CACHE_KEY_BYTES];
    float vec[DIM];
    /* exact: stored on A, a miss on B asks Redis and serves A's entry */
    key_of(10, key);
    ah_cache_put_t p = put_of(key, NULL, NULL, "t1");
    p.now_ms -= 5000;
    ah_cache_insert(a, &p);
    await_stored(rc, key);
    ah_cache_entry_t *e = ah_cache_get(b, key, ah_wall_ms(), -1);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->created_ms, p.now_ms);
    ck_assert_int_eq(e->expires_ms, p.now_ms + p.ttl_ms);
    ck_assert_str_eq(e->tenant, "t1");
    ck_assert(e->cost_usd == p.cost_usd);
    ah_cache_entry_release(e);
    /* max_age: an entry too old is not served */
    key_of(11, k2);
    p = put_of(k2, NULL, NULL, "t1");
    p.now_ms -= 60000;
    ah_cache_insert(a, &p);
    await_stored(rc, k2);
    ck_assert_ptr_null(ah_cache_get(b, k2, ah_wall_ms(), 1000));
    /* a key nobody stored */
    key_of(12, k2);
    ck_assert_ptr_null(ah_cache_get(b, k2, ah_wall_ms(), -1));
    /* the entry is in Redis with its TTL */
    char hex[2 * AH_CACHE_KEY_BYTES + 1], name[256];
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    snprintf(name, sizeof name, "%scache:e:%s", prefix, hex);
    redisReply *r = redisCommand(rc, "PTTL %s", name);
    ck_assert_int_gt(r->integer, 500000);
    freeReplyObject(r);

    /* semantic: stored on A, applied on B from the stream */
    key_of(20, key);
    key_of(21, scope);
    unit_vec(vec, 1);
    p = put_of(key, scope, vec, "t1");
    ah_cache_insert(a, &p);
    e = await_similar(b, scope, vec);
    ck_assert_ptr_nonnull(e);
    ck_assert_mem_eq(e->key, key, AH_CACHE_KEY_BYTES);
    ck_assert_str_eq(e->prompt, "how do i reset my password");
    ah_cache_entry_release(e);

    /* malformed records and entries are skipped; the thread goes on */
    freeReplyObject(redisCommand(rc, "XADD %scache:stream * op put from zz key nothex", prefix));
    freeReplyObject(redisCommand(rc, "XADD %scache:stream * just garbage", prefix));
    freeReplyObject(redisCommand(rc, "XADD %scache:stream * op purge from zz before x", prefix));
    freeReplyObject(redisCommand(rc, "XADD %scache:stream * op frobnicate from zz", prefix));
    key_of(30, k2);
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", k2[i]);
    freeReplyObject(redisCommand(rc, "SET %scache:e:%s \x01\x02garbage", prefix, hex));
    freeReplyObject(redisCommand(rc, "XADD %scache:stream * op put from zz key %s", prefix, hex));
    ck_assert_ptr_null(ah_cache_get(b, k2, ah_wall_ms(), -1));
    key_of(22, key);
    unit_vec(vec, 2);
    p = put_of(key, scope, vec, "t1");
    ah_cache_insert(a, &p);
    e = await_similar(b, scope, vec);
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);

    /* a removal by feedback on A: gone on B and in Redis */
    ck_assert_int_eq(ah_cache_mark_wrong(a, key, 0), AH_CACHE_REMOVED);
    for (int i = 0; i < 300; i++) {
        float sim;
        e = ah_cache_get_similar(b, scope, vec, DIM, 0.99f, ah_wall_ms(), -1, NULL, NULL, NULL,
                                 &sim);
        if (!e || memcmp(e->key, key, AH_CACHE_KEY_BYTES))
            break;
        ah_cache_entry_release(e);
        e = NULL;
        usleep(10000);
    }
    if (e)
        ck_assert_mem_ne(e->key, key, AH_CACHE_KEY_BYTES);
    ah_cache_entry_release(e);

    /* a purge on A of tenant t1: gone on B and in Redis; t2 stays */
    key_of(40, k2);
    p = put_of(k2, NULL, NULL, "t2");
    ah_cache_insert(a, &p);
    ah_cache_stats_t st;
    ah_cache_stats(b, &st);
    ah_cache_purge(a, "t1", NULL, NULL, 0);
    ck_assert_uint_gt(await_purged(b, st.purged + 1), st.purged);
    key_of(10, key);
    ck_assert_ptr_null(ah_cache_get(b, key, ah_wall_ms(), -1));
    ck_assert_ptr_null(ah_cache_get(a, key, ah_wall_ms(), -1));
    e = ah_cache_get(b, k2, ah_wall_ms(), -1);
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);

    /* the cost of a local miss that asks Redis, and of a hit found there */
    ah_cache_t *local = ah_cache_new(10000, 0);
    int64_t t0 = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++) {
        key_of(1000 + i, k2);
        ck_assert_ptr_null(ah_cache_get(local, k2, ah_wall_ms(), -1));
    }
    int64_t t1 = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++) {
        key_of(1000 + i, k2);
        ck_assert_ptr_null(ah_cache_get(b, k2, ah_wall_ms(), -1));
    }
    int64_t t2 = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++) {
        key_of(5000 + i, k2);
        p = put_of(k2, NULL, NULL, "t3");
        ah_cache_insert(a, &p);
    }
    int64_t t3 = ah_now_us();
    await_stored(rc, k2); /* the last one: the writer sends them in order */
    int64_t t3s = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++) {
        key_of(5000 + i, k2);
        e = ah_cache_get(b, k2, ah_wall_ms(), -1);
        ck_assert_ptr_nonnull(e);
        ah_cache_entry_release(e);
    }
    int64_t t4 = ah_now_us();
    printf("test_cache_shared: local miss %.1f us; miss asking Redis %.1f us (added %.1f us); "
           "store (SET, queued) %.1f us on the caller, %.1f us until in Redis (pipelined); hit "
           "fetched from Redis %.1f us (%d calls each, %zu-byte answer)\n",
           (double)(t1 - t0) / TIMING_CALLS, (double)(t2 - t1) / TIMING_CALLS,
           (double)((t2 - t1) - (t1 - t0)) / TIMING_CALLS, (double)(t3 - t2) / TIMING_CALLS,
           (double)(t3s - t2) / TIMING_CALLS, (double)(t4 - t3s) / TIMING_CALLS, TIMING_CALLS,
           sizeof ANSWER - 1);
    ah_cache_free(local);
    redisFree(rc);
    ah_cache_free(a);
    ah_cache_free(b);
}
END_TEST

START_TEST(redis_away)
{
    /* nothing listens on port 1: the cache goes on locally, and fast */
    ah_cache_t *c = open_cache("redis://127.0.0.1:1/0");
    uint8_t key[AH_CACHE_KEY_BYTES];
    key_of(7, key);
    ah_cache_put_t p = put_of(key, NULL, NULL, "t");
    ah_cache_insert(c, &p);
    int64_t t0 = ah_now_us();
    for (int i = 0; i < 1000; i++) {
        ah_cache_entry_t *e = ah_cache_get(c, key, ah_wall_ms(), -1);
        ck_assert_ptr_nonnull(e);
        ah_cache_entry_release(e);
        uint8_t other[AH_CACHE_KEY_BYTES];
        key_of(100 + i, other);
        ck_assert_ptr_null(ah_cache_get(c, other, ah_wall_ms(), -1));
    }
    ck_assert_int_lt(ah_now_us() - t0, 200000);
    ck_assert_int_eq(ah_cache_purge(c, NULL, NULL, NULL, 0), 1);
    ah_cache_free(c);
    ah_state_config_t cfg = {.url = "redis://host:notaport"};
    char err[256];
    c = ah_cache_new(10, 0);
    ck_assert_int_eq(ah_cache_shared_start(c, &cfg, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "redis://"));
    ah_cache_free(c);
}
END_TEST

/* --- the asynchronous lookup ---------------------------------------------- */

static int fetched_calls, fetched_got;

static void on_fetched(void *arg, int got)
{
    (void)arg;
    fetched_calls++;
    fetched_got = got;
}

/* Run base until a lookup's callback came (or ms passed); its got, or -1. */
static int run_until_fetched(struct event_base *base, int ms)
{
    int calls = fetched_calls;
    int64_t until = ah_now_us() + (int64_t)ms * 1000;
    while (fetched_calls == calls && ah_now_us() < until) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return fetched_calls == calls ? -1 : fetched_got;
}

START_TEST(async_fetch)
{
    if (!url)
        return;
    /* keys of its own: the stream's purges of the tests before must not
     * reach these entries while the stores catch up */
    char own[sizeof prefix];
    snprintf(own, sizeof own, "%.40sasync:", prefix);
    memcpy(prefix, own, sizeof prefix);
    struct event_base *base = event_base_new();
    ah_cache_t *a = open_cache(url), *b = open_cache(url);
    redisContext *rc = raw();
    uint8_t key[AH_CACHE_KEY_BYTES], k2[AH_CACHE_KEY_BYTES];
    key_of(30, key);
    ah_cache_put_t p = put_of(key, NULL, NULL, "t1");
    p.now_ms -= 5000;
    ah_cache_insert(a, &p);
    key_of(31, k2);
    ah_cache_put_t p2 = put_of(k2, NULL, NULL, "t1");
    ah_cache_insert(a, &p2);
    await_stored(rc, key);
    await_stored(rc, k2);
    /* a local miss that may ask the peers; the answer comes from the loop */
    int ask = 0;
    ck_assert_ptr_null(ah_cache_get_local(b, key, ah_wall_ms(), -1, &ask));
    ck_assert_int_eq(ask, 1);
    int calls = fetched_calls;
    ah_cache_fetch_t *f = ah_cache_fetch_start(b, base, key, ah_wall_ms(), on_fetched, NULL);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fetched_calls, calls); /* never from within the call */
    ck_assert_int_eq(run_until_fetched(base, 2000), 1);
    ah_cache_entry_t *e = ah_cache_get_local(b, key, ah_wall_ms(), -1, &ask);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(ask, 0);
    ck_assert_int_eq(e->created_ms, p.now_ms);
    ck_assert_str_eq(e->tenant, "t1");
    ah_cache_entry_release(e);
    /* a key nobody stored: a miss */
    uint8_t none[AH_CACHE_KEY_BYTES];
    key_of(32, none);
    f = ah_cache_fetch_start(b, base, none, ah_wall_ms(), on_fetched, NULL);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(run_until_fetched(base, 2000), 0);
    /* cancelled: no callback, and the entry is kept all the same */
    f = ah_cache_fetch_start(b, base, k2, ah_wall_ms(), on_fetched, NULL);
    ck_assert_ptr_nonnull(f);
    ah_cache_fetch_cancel(b, f);
    ck_assert_int_eq(run_until_fetched(base, 200), -1);
    e = ah_cache_get_local(b, k2, ah_wall_ms(), -1, NULL);
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);
    /* many at once on the one connection */
    for (int i = 0; i < 50; i++) {
        uint8_t k[AH_CACHE_KEY_BYTES];
        key_of(1000 + i, k);
        ck_assert_ptr_nonnull(ah_cache_fetch_start(b, base, k, ah_wall_ms(), on_fetched, NULL));
    }
    calls = fetched_calls;
    for (int i = 0; i < 100 && fetched_calls < calls + 50; i++)
        run_until_fetched(base, 50);
    ck_assert_int_eq(fetched_calls, calls + 50);
    /* one in flight when the cache goes: freed, never called */
    f = ah_cache_fetch_start(b, base, none, ah_wall_ms(), on_fetched, NULL);
    ck_assert_ptr_nonnull(f);
    calls = fetched_calls;
    ah_cache_free(b); /* before its loop's event_base */
    ck_assert_int_eq(fetched_calls, calls);
    ah_cache_free(a);
    redisFree(rc);
    event_base_free(base);
}
END_TEST

START_TEST(async_fetch_away)
{
    struct event_base *base = event_base_new();
    /* nothing listens on port 1: a miss, then no attempt for a second */
    ah_cache_t *c = open_cache("redis://127.0.0.1:1/0");
    uint8_t key[AH_CACHE_KEY_BYTES];
    key_of(40, key);
    ah_cache_fetch_t *f = ah_cache_fetch_start(c, base, key, ah_wall_ms(), on_fetched, NULL);
    if (f)
        ck_assert_int_eq(run_until_fetched(base, 2000), 0);
    ck_assert_ptr_null(ah_cache_fetch_start(c, base, key, ah_wall_ms(), on_fetched, NULL));
    ah_cache_free(c);
    /* a server that accepts and never answers: a miss after timeout_ms */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    char u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d/0", ntohs(sa.sin_port));
    c = open_cache_ms(u, 100);
    int64_t t0 = ah_now_us();
    f = ah_cache_fetch_start(c, base, key, ah_wall_ms(), on_fetched, NULL);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(run_until_fetched(base, 2000), 0);
    int64_t took = ah_now_us() - t0;
    ck_assert_int_ge(took, 90000);
    ck_assert_int_lt(took, 1000000);
    /* the outage rule: no attempt for a second */
    ck_assert_ptr_null(ah_cache_fetch_start(c, base, key, ah_wall_ms(), on_fetched, NULL));
    ah_cache_free(c);
    close(fd);
    event_base_free(base);
}
END_TEST

int main(void)
{
    url = getenv("AHORRO_TEST_REDIS");
    if (url && !*url)
        url = NULL;
    if (!url)
        printf("test_cache_shared: AHORRO_TEST_REDIS is not set; the tests against Redis skip\n");
    snprintf(prefix, sizeof prefix, "ahorro-unit-cache-%d-%lld:", (int)getpid(),
             (long long)ah_wall_ms());
    Suite *s = suite_create("cache_shared");
    TCase *t = tcase_create("cache_shared");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, round_trip);
    tcase_add_test(t, two_instances);
    tcase_add_test(t, redis_away);
    tcase_add_test(t, async_fetch);
    tcase_add_test(t, async_fetch_away);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
