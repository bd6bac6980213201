/* test_redis_conn.c - the pool of Redis connections (state/redis_conn.h):
 * the outage rule against a port nothing listens on, and, against a real
 * Redis (AHORRO_TEST_REDIS=redis://HOST:PORT/DB; skipped without it), the
 * reuse of idle connections and the one retry after the server closed one. */
#include <check.h>

#include "check_run.h"
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state/redis_conn.h"

static const char *url;

START_TEST(outage_rule)
{
    /* Port 1 on loopback: nothing listens, the connect is refused. */
    ah_state_config_t cfg = {.url = "redis://127.0.0.1:1/0", .timeout_ms = 50};
    ah_redis_pool_t *p = ah_redis_pool_new(&cfg, "test", "nothing happens until it is back");
    char why[256] = "";
    int pooled = 1;
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(ah_redis_pool_addr(p), "127.0.0.1:1");
    ck_assert(ah_redis_pool_may_try(p));
    ck_assert_ptr_null(ah_redis_pool_get(p, &pooled, why, sizeof why));
    ck_assert_int_eq(pooled, 0);
    ck_assert_ptr_nonnull(strstr(why, "connect"));
    ah_redis_pool_failed(p, why);
    ah_redis_pool_went_without(p);
    ck_assert(!ah_redis_pool_may_try(p)); /* the backoff: a second */
    struct timespec ts = {1, 50 * 1000000L};
    nanosleep(&ts, NULL);
    ck_assert(ah_redis_pool_may_try(p));  /* one probe */
    ck_assert(!ah_redis_pool_may_try(p)); /* and only one */
    ah_redis_pool_answered(p);
    ck_assert(ah_redis_pool_may_try(p)); /* up again */
    ah_redis_pool_free(p);
    cfg.url = "redis://host:notaport";
    ck_assert_ptr_null(ah_redis_pool_new(&cfg, "test", ""));
}
END_TEST

static long long integer_of(redisContext *c, const char *cmd)
{
    redisReply *r = redisCommand(c, cmd);
    ck_assert(r && r->type == REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    return v;
}

START_TEST(reuse_and_retry)
{
    if (!url)
        return;
    ah_state_config_t cfg = {.url = (char *)url};
    ah_redis_pool_t *p = ah_redis_pool_new(&cfg, "test", "");
    char why[256] = "";
    int pooled;
    redisContext *c = ah_redis_pool_get(p, &pooled, why, sizeof why);
    ck_assert_msg(c != NULL, "%s", why);
    ck_assert_int_eq(pooled, 0);
    long long id = integer_of(c, "CLIENT ID");
    ah_redis_pool_put(p, c);
    c = ah_redis_pool_get(p, &pooled, why, sizeof why);
    ck_assert_int_eq(pooled, 1);
    ck_assert_int_eq(integer_of(c, "CLIENT ID"), id);
    ah_redis_pool_put(p, c);

    /* The server closes the idle connection (as a restart would): one
     * retry on a new connection, and no second. */
    redisContext *admin = ah_redis_pool_open(p, 1000, why, sizeof why);
    ck_assert_msg(admin != NULL, "%s", why);
    freeReplyObject(redisCommand(admin, "CLIENT KILL ID %lld", id));
    c = ah_redis_pool_get(p, &pooled, why, sizeof why);
    ck_assert_int_eq(pooled, 1);
    ck_assert_ptr_null(redisCommand(c, "PING"));
    c = ah_redis_pool_retry(p, c, &pooled, why, sizeof why);
    ck_assert_msg(c != NULL, "%s", why);
    ck_assert_int_eq(pooled, 0);
    ck_assert_int_ne(integer_of(c, "CLIENT ID"), id);
    freeReplyObject(redisCommand(admin, "CLIENT KILL ID %lld", integer_of(c, "CLIENT ID")));
    ck_assert_ptr_null(redisCommand(c, "PING"));
    ck_assert_ptr_null(ah_redis_pool_retry(p, c, &pooled, why, sizeof why));
    ck_assert(why[0]);
    redisFree(admin);
    ah_redis_pool_free(p);
}
END_TEST

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a write on a connection the server closed */
    url = getenv("AHORRO_TEST_REDIS");
    if (url && !*url)
        url = NULL;
    if (!url)
        printf("test_redis_conn: AHORRO_TEST_REDIS is not set; the tests against Redis skip\n");
    Suite *s = suite_create("redis_conn");
    TCase *t = tcase_create("redis_conn");
    tcase_set_timeout(t, 30);
    tcase_add_test(t, outage_rule);
    tcase_add_test(t, reuse_and_retry);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
