/* test_ledger.c - the batching ledger writer: no row lost when producers
 * outrun the writer (the queue blocks them), and close drains everything. */
#include <check.h>

#include "check_run.h"
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "store/ledger.h"

#define PRODUCERS 4
#define ROWS_EACH 6000 /* 24,000 rows: three times the queue */

static ah_ledger_t *ledger;

static void *produce(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < ROWS_EACH; i++) {
        ah_ledger_row_t *r = ah_calloc(1, sizeof *r);
        char id[64];
        snprintf(id, sizeof id, "req_%ld_%d", t, i);
        r->request_id = ah_strdup(id);
        r->ts_ms = 1;
        r->api = "openai";
        r->endpoint = "chat";
        r->requested_model = ah_strdup("m");
        r->prompt_tokens = i;
        r->cost_usd = -1;
        r->ttft_ms = -1;
        r->status = 200;
        ah_ledger_append(ledger, r);
    }
    return NULL;
}

START_TEST(no_row_lost)
{
    char path[] = "/tmp/ahorro-test-ledger-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(ah_ledger_open_sqlite(path, &ledger), AH_E_OK);
    pthread_t th[PRODUCERS];
    for (long i = 0; i < PRODUCERS; i++)
        pthread_create(&th[i], NULL, produce, (void *)i);
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(th[i], NULL);
    uint64_t written, failed;
    ah_ledger_stats(ledger, &written, &failed);
    ck_assert_uint_eq(failed, 0);
    ah_ledger_close(ledger); /* drains what is still queued */
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(
        db, "SELECT COUNT(*), COUNT(DISTINCT request_id), SUM(cost_usd IS NULL) FROM ledger", -1,
        &st, NULL);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), PRODUCERS * ROWS_EACH);
    ck_assert_int_eq(sqlite3_column_int(st, 1), PRODUCERS * ROWS_EACH);
    ck_assert_int_eq(sqlite3_column_int(st, 2), PRODUCERS * ROWS_EACH); /* unknown cost is NULL */
    sqlite3_finalize(st);
    sqlite3_close(db);
    unlink(path);
    char aux[64];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}
END_TEST

/* Rows go in by multi-row INSERTs (chunks of 32, 16, ..., 1): every column
 * of every row, at every position in a chunk, lands in its own place. */
#define ROUND_TRIP_ROWS 45 /* 32 + 8 + 4 + 1 */

START_TEST(columns_round_trip)
{
    char path[] = "/tmp/ahorro-test-ledger-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(ah_ledger_open_sqlite(path, &ledger), AH_E_OK);
    for (int i = 0; i < ROUND_TRIP_ROWS; i++) {
        ah_ledger_row_t *r = ah_calloc(1, sizeof *r);
        char s[64];
        snprintf(s, sizeof s, "req_rt_%02d", i);
        r->request_id = ah_strdup(s);
        r->ts_ms = 1000 + i;
        snprintf(s, sizeof s, "key_%d", i);
        r->key_id = ah_strdup(s);
        snprintf(s, sizeof s, "owner_%d", i);
        r->owner = ah_strdup(s);
        if (i % 2) {
            snprintf(s, sizeof s, "user_%d", i);
            r->user = ah_strdup(s);
        }
        snprintf(s, sizeof s, "{\"n\":%d}", i);
        r->tags = ah_strdup(s);
        r->api = i % 3 ? "openai" : "anthropic";
        r->endpoint = "chat";
        r->stream = i % 2;
        snprintf(s, sizeof s, "model_%d", i);
        r->requested_model = ah_strdup(s);
        snprintf(s, sizeof s, "served_%d", i);
        r->served_model = ah_strdup(s);
        snprintf(s, sizeof s, "prov_%d", i);
        r->provider = ah_strdup(s);
        snprintf(s, sizeof s, "dep_%d", i);
        r->deployment = ah_strdup(s);
        r->prompt_tokens = 100 + i;
        r->completion_tokens = 200 + i;
        r->cached_tokens = 300 + i;
        r->cache_write_tokens = 400 + i;
        r->reasoning_tokens = 500 + i;
        r->usage_source = "provider";
        r->cost_usd = i % 4 ? i * 0.5 : -1;
        r->latency_ms = 10.0 + i;
        r->ttft_ms = i % 5 ? 1.0 + i : -1;
        r->overhead_us = 600 + i;
        r->status = 200 + i;
        if (i % 7 == 0) {
            snprintf(s, sizeof s, "error_%d", i);
            r->error = ah_strdup(s);
        }
        r->cache = i % 2 ? "exact" : NULL;
        if (i % 2) {
            snprintf(s, sizeof s, "ckey_%d", i);
            r->cache_key = ah_strdup(s);
        }
        r->saved_usd = i * 0.25;
        r->prompt_cache_saved_usd = i * 0.125;
        r->cache_similarity = i % 3 == 1 ? 0.5 + i / 100.0 : 0;
        ah_ledger_append(ledger, r);
    }
    ah_ledger_close(ledger);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(
        sqlite3_prepare_v2(
            db,
            "SELECT request_id, ts_ms, key_id, owner, user, tags, api, endpoint, stream, "
            "requested_model, served_model, provider, deployment, prompt_tokens, "
            "completion_tokens, cached_tokens, cache_write_tokens, reasoning_tokens, "
            "usage_source, cost_usd, latency_ms, ttft_ms, overhead_us, status, error, cache, "
            "cache_key, saved_usd, prompt_cache_saved_usd, cache_similarity FROM ledger "
            "ORDER BY ts_ms",
            -1, &st, NULL),
        SQLITE_OK);
    int i = 0;
    for (; sqlite3_step(st) == SQLITE_ROW; i++) {
        char s[64];
#define TEXT(col) ((const char *)sqlite3_column_text(st, col))
        snprintf(s, sizeof s, "req_rt_%02d", i);
        ck_assert_str_eq(TEXT(0), s);
        ck_assert_int_eq(sqlite3_column_int64(st, 1), 1000 + i);
        snprintf(s, sizeof s, "key_%d", i);
        ck_assert_str_eq(TEXT(2), s);
        snprintf(s, sizeof s, "owner_%d", i);
        ck_assert_str_eq(TEXT(3), s);
        snprintf(s, sizeof s, "user_%d", i);
        if (i % 2)
            ck_assert_str_eq(TEXT(4), s);
        else
            ck_assert_int_eq(sqlite3_column_type(st, 4), SQLITE_NULL);
        snprintf(s, sizeof s, "{\"n\":%d}", i);
        ck_assert_str_eq(TEXT(5), s);
        ck_assert_str_eq(TEXT(6), i % 3 ? "openai" : "anthropic");
        ck_assert_str_eq(TEXT(7), "chat");
        ck_assert_int_eq(sqlite3_column_int(st, 8), i % 2);
        snprintf(s, sizeof s, "model_%d", i);
        ck_assert_str_eq(TEXT(9), s);
        snprintf(s, sizeof s, "served_%d", i);
        ck_assert_str_eq(TEXT(10), s);
        snprintf(s, sizeof s, "prov_%d", i);
        ck_assert_str_eq(TEXT(11), s);
        snprintf(s, sizeof s, "dep_%d", i);
        ck_assert_str_eq(TEXT(12), s);
        for (int c = 0; c < 5; c++)
            ck_assert_int_eq(sqlite3_column_int64(st, 13 + c), 100 * (c + 1) + i);
        ck_assert_str_eq(TEXT(18), "provider");
        if (i % 4)
            ck_assert_double_eq(sqlite3_column_double(st, 19), i * 0.5);
        else
            ck_assert_int_eq(sqlite3_column_type(st, 19), SQLITE_NULL);
        ck_assert_double_eq(sqlite3_column_double(st, 20), 10.0 + i);
        if (i % 5)
            ck_assert_double_eq(sqlite3_column_double(st, 21), 1.0 + i);
        else
            ck_assert_int_eq(sqlite3_column_type(st, 21), SQLITE_NULL);
        ck_assert_int_eq(sqlite3_column_int64(st, 22), 600 + i);
        ck_assert_int_eq(sqlite3_column_int(st, 23), 200 + i);
        snprintf(s, sizeof s, "error_%d", i);
        if (i % 7 == 0)
            ck_assert_str_eq(TEXT(24), s);
        else
            ck_assert_int_eq(sqlite3_column_type(st, 24), SQLITE_NULL);
        snprintf(s, sizeof s, "ckey_%d", i);
        if (i % 2) {
            ck_assert_str_eq(TEXT(25), "exact");
            ck_assert_str_eq(TEXT(26), s);
        } else {
            ck_assert_int_eq(sqlite3_column_type(st, 25), SQLITE_NULL);
            ck_assert_int_eq(sqlite3_column_type(st, 26), SQLITE_NULL);
        }
        ck_assert_double_eq(sqlite3_column_double(st, 27), i * 0.25);
        ck_assert_double_eq(sqlite3_column_double(st, 28), i * 0.125);
        if (i % 3 == 1)
            ck_assert_double_eq(sqlite3_column_double(st, 29), 0.5 + i / 100.0);
        else
            ck_assert_int_eq(sqlite3_column_type(st, 29), SQLITE_NULL);
#undef TEXT
    }
    ck_assert_int_eq(i, ROUND_TRIP_ROWS);
    sqlite3_finalize(st);
    sqlite3_close(db);
    unlink(path);
    char aux[64];
    snprintf(aux, sizeof aux, "%s-wal", path);
    unlink(aux);
    snprintf(aux, sizeof aux, "%s-shm", path);
    unlink(aux);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ledger");
    TCase *tc = tcase_create("ledger");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, no_row_lost);
    tcase_add_test(tc, columns_round_trip);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
