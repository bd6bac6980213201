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

int main(void)
{
    Suite *s = suite_create("ledger");
    TCase *tc = tcase_create("ledger");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, no_row_lost);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
