/* test_state_redis.c - the Redis state backend against a real Redis
 * (AHORRO_TEST_REDIS=redis://HOST:PORT/DB; skipped without it): the
 * conditional add (INCRBY, taken back past the limit), negative deltas,
 * reads, expiry (set, extended, never shortened), the key prefix, a SCRIPT
 * FLUSH changing nothing, atomicity under threads, the adds sent later by
 * the pipelined writer (a refusal that waits for them, none lost, drained
 * at free), the URL forms, and both failure modes
 * against a port nothing listens on. Prints the measured cost of one call
 * (docs/state.md quotes it). */
#include <check.h>

#include "check_run.h"
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "state/state.h"

#define THREADS 8
#define TRIES 2000
#define TIMING_CALLS 5000

static const char *url;
static char prefix[64];

/* A raw connection to the test Redis, to look behind the backend. */
static redisContext *raw(void)
{
    char host[256];
    int port, db;
    ck_assert_int_eq(ah_state_redis_parse_url(url, host, sizeof host, &port, &db, NULL, 0), 0);
    redisContext *c = redisConnect(host, port);
    ck_assert(c && !c->err);
    if (db) {
        redisReply *r = redisCommand(c, "SELECT %d", db);
        freeReplyObject(r);
    }
    return c;
}

static ah_state_t *open_state(int fail_open)
{
    ah_state_config_t cfg = {.url = (char *)url, .prefix = prefix, .fail_open = fail_open};
    char err[256];
    ah_state_t *s = ah_state_redis_new(&cfg, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    ck_assert(ah_state_shared(s));
    return s;
}

START_TEST(url_forms)
{
    char host[64], pw[64];
    int port, db;
    ck_assert_int_eq(
        ah_state_redis_parse_url("redis://127.0.0.1", host, sizeof host, &port, &db, pw, sizeof pw),
        0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 6379);
    ck_assert_int_eq(db, 0);
    ck_assert_str_eq(pw, "");
    ck_assert_int_eq(ah_state_redis_parse_url("redis://:s3cret@cache.local:6380/2", host,
                                              sizeof host, &port, &db, pw, sizeof pw),
                     0);
    ck_assert_str_eq(host, "cache.local");
    ck_assert_str_eq(pw, "s3cret");
    ck_assert_int_eq(port, 6380);
    ck_assert_int_eq(db, 2);
    const char *bad[] = {"http://x",        "redis://",         "redis://h:0",
                         "redis://h:99999", "redis://h:12x",    "redis://h/x",
                         "redis://h:1/2/3", "redis://bob:pw@h", "redis://nopass@h"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(
            ah_state_redis_parse_url(bad[i], host, sizeof host, &port, &db, pw, sizeof pw) != 0,
            "%s parsed", bad[i]);
}
END_TEST

START_TEST(add_semantics)
{
    if (!url)
        return;
    ah_state_t *s = open_state(0);
    int64_t v = 123, now = ah_wall_ms();
    /* A read of an absent counter: 0, and nothing is created. */
    ck_assert_int_eq(ah_state_add_if(s, "sem", 0, AH_STATE_NO_LIMIT, 0, &v), 1);
    ck_assert_int_eq(v, 0);
    redisContext *c = raw();
    char full[128];
    snprintf(full, sizeof full, "%ssem", prefix);
    redisReply *r = redisCommand(c, "EXISTS %s", full);
    ck_assert_int_eq(r->integer, 0);
    freeReplyObject(r);
    /* Conditional adds up to the limit, inclusive. */
    ck_assert_int_eq(ah_state_add_if(s, "sem", 60, 100, now + 60000, &v), 1);
    ck_assert_int_eq(v, 60);
    ck_assert_int_eq(ah_state_add_if(s, "sem", 40, 100, now + 60000, &v), 1);
    ck_assert_int_eq(v, 100);
    ck_assert_int_eq(ah_state_add_if(s, "sem", 1, 100, now + 60000, &v), 0);
    ck_assert_int_eq(v, 100);
    /* A negative delta always goes in, even over the limit. */
    ck_assert_int_eq(ah_state_add_if(s, "sem", -30, 10, now + 60000, &v), 1);
    ck_assert_int_eq(v, 70);
    ck_assert_int_eq(ah_state_get(s, "sem"), 70);
    /* Big values (nano-USD of thousands of dollars) stay exact. */
    ck_assert_int_eq(ah_state_add_if(s, "big", 4000000000000LL, AH_STATE_NO_LIMIT, now + 60000, &v),
                     1);
    ck_assert_int_eq(ah_state_add_if(s, "big", 1, 4000000000001LL, now + 60000, &v), 1);
    ck_assert_int_eq(v, 4000000000001LL);
    /* The prefix, the value and the expiry, as Redis holds them. */
    r = redisCommand(c, "GET %s", full);
    ck_assert_str_eq(r->str, "70");
    freeReplyObject(r);
    r = redisCommand(c, "PEXPIRETIME %s", full);
    ck_assert_int_eq(r->integer, now + 60000);
    freeReplyObject(r);
    /* An expiry is only ever extended. */
    ck_assert_int_eq(ah_state_add_if(s, "sem", 1, 1000, now + 30000, &v), 1);
    r = redisCommand(c, "PEXPIRETIME %s", full);
    ck_assert_int_eq(r->integer, now + 60000);
    freeReplyObject(r);
    /* Counters go when they expire. */
    ck_assert_int_eq(ah_state_add_if(s, "short", 5, 10, ah_wall_ms() + 50, &v), 1);
    usleep(150 * 1000);
    ck_assert_int_eq(ah_state_get(s, "short"), 0);
    /* No script to forget: SCRIPT FLUSH changes nothing. */
    r = redisCommand(c, "SCRIPT FLUSH");
    freeReplyObject(r);
    ck_assert_int_eq(ah_state_add_if(s, "sem", 1, 1000, now + 60000, &v), 1);
    ck_assert_int_eq(v, 72);
    redisFree(c);
    ah_state_free(s);
}
END_TEST

typedef struct {
    ah_state_t *s;
    int added;
} worker_t;

static void *hammer(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < TRIES; i++)
        w->added += ah_state_add_if(w->s, "race", 7, 10000, ah_wall_ms() + 60000, NULL);
    return NULL;
}

START_TEST(atomic_under_threads)
{
    if (!url)
        return;
    /* Two backends, as two gateway instances, racing for one counter. */
    ah_state_t *a = open_state(0), *b = open_state(0);
    pthread_t t[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){i % 2 ? a : b, 0};
        pthread_create(&t[i], NULL, hammer, &w[i]);
    }
    int added = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        added += w[i].added;
    }
    ck_assert_int_eq(added, 10000 / 7);
    ck_assert_int_eq(ah_state_get(a, "race"), (10000 / 7) * 7);
    ah_state_free(a);
    ah_state_free(b);
}
END_TEST

START_TEST(cost_of_one_call)
{
    if (!url)
        return;
    ah_state_t *s = open_state(0);
    int64_t t0 = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++)
        ah_state_add_if(s, "timing", 1, AH_STATE_NO_LIMIT, ah_wall_ms() + 60000, NULL);
    int64_t us = ah_now_us() - t0;
    printf("state redis: one add_if on %s costs %.1f us (mean of %d sequential calls)\n", url,
           (double)us / TIMING_CALLS, TIMING_CALLS);
    fflush(stdout);
    ck_assert_int_eq(ah_state_get(s, "timing"), TIMING_CALLS);
    ah_state_free(s);
}
END_TEST

static void *later(void *arg)
{
    worker_t *w = arg;
    for (int i = 0; i < TRIES; i++)
        w->added += ah_state_add_later(w->s, "later", 3, ah_wall_ms() + 60000, NULL);
    return NULL;
}

START_TEST(adds_later)
{
    if (!url)
        return;
    ah_state_t *s = open_state(0);
    int64_t v = 0, now = ah_wall_ms();
    /* A settlement queued: a refused reservation waits for it, then goes
     * in (the process never refuses for want of its own settlements). */
    ck_assert_int_eq(ah_state_add_if(s, "held", 100, 100, now + 60000, &v), 1);
    ck_assert_int_eq(ah_state_add_later(s, "held", -60, now + 60000, &v), 0);
    ck_assert_int_eq(ah_state_add_if(s, "held", 50, 100, now + 60000, &v), 1);
    ck_assert_int_eq(v, 90);
    ck_assert_int_eq(ah_state_add_if(s, "held", 11, 100, now + 60000, &v), 0);
    ck_assert_int_eq(v, 90);
    /* From threads, more than the queue holds at once: every add lands
     * (queued, or made at once when the queue is full), and freeing the
     * state sends what is still queued. */
    pthread_t t[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){s, 0};
        pthread_create(&t[i], NULL, later, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    /* No script to forget: SCRIPT FLUSH changes nothing for the writer. */
    redisContext *c = raw();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    int64_t t0 = ah_now_us();
    for (int i = 0; i < TIMING_CALLS; i++)
        ah_state_add_later(s, "later", 1, ah_wall_ms() + 60000, NULL);
    int64_t t1 = ah_now_us();
    ah_state_free(s);
    int64_t t2 = ah_now_us();
    printf("state redis: one add_later costs %.1f us on the caller, %.1f us until sent (mean of "
           "%d sequential calls, pipelined)\n",
           (double)(t1 - t0) / TIMING_CALLS, (double)(t2 - t0) / TIMING_CALLS, TIMING_CALLS);
    fflush(stdout);
    char full[128];
    snprintf(full, sizeof full, "%slater", prefix);
    redisReply *r = redisCommand(c, "GET %s", full);
    ck_assert_ptr_nonnull(r->str);
    ck_assert_int_eq(strtoll(r->str, NULL, 10), 3LL * THREADS * TRIES + TIMING_CALLS);
    freeReplyObject(r);
    redisFree(c);
}
END_TEST

START_TEST(failure_modes)
{
    /* Port 1 on loopback: nothing listens, the connect is refused. */
    ah_state_config_t cfg = {.url = "redis://127.0.0.1:1/0", .timeout_ms = 50};
    char err[256];
    int64_t v = 0;
    ah_state_t *closed = ah_state_redis_new(&cfg, err, sizeof err);
    ck_assert_ptr_nonnull(closed);
    ck_assert_int_eq(ah_state_add_if(closed, "k", 1, 10, 0, &v), 0);
    ck_assert_int_eq(v, -1);
    /* During the backoff, calls answer at once. */
    int64_t t0 = ah_now_us();
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(ah_state_add_if(closed, "k", 1, 10, 0, &v), 0);
    ck_assert_int_lt(ah_now_us() - t0, 50000);
    cfg.fail_open = 1;
    ah_state_t *open = ah_state_redis_new(&cfg, err, sizeof err);
    ck_assert_int_eq(ah_state_add_if(open, "k", 1, 10, 0, &v), 1);
    ck_assert_int_eq(v, -1);
    ck_assert_int_eq(ah_state_get(open, "k"), 0);
    /* A queued add goes without Redis (counted in the outage's line). */
    ah_state_add_later(closed, "k", -1, 0, NULL);
    ah_state_free(closed);
    ah_state_free(open);
    cfg.url = "redis://host:notaport";
    ck_assert_ptr_null(ah_state_redis_new(&cfg, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "redis://"));
}
END_TEST

int main(void)
{
    url = getenv("AHORRO_TEST_REDIS");
    if (url && !*url)
        url = NULL;
    if (!url)
        printf("test_state_redis: AHORRO_TEST_REDIS is not set; the tests against Redis skip\n");
    /* A prefix of this run's own: tests that share a Redis do not meet. */
    snprintf(prefix, sizeof prefix, "ahorro-unit-%d-%lld:", (int)getpid(), (long long)ah_wall_ms());
    Suite *s = suite_create("state_redis");
    TCase *t = tcase_create("state_redis");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, url_forms);
    tcase_add_test(t, add_semantics);
    tcase_add_test(t, atomic_under_threads);
    tcase_add_test(t, cost_of_one_call);
    tcase_add_test(t, adds_later);
    tcase_add_test(t, failure_modes);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
