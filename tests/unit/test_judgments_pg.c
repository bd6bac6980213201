/* test_judgments_pg.c - the live judges' verdicts with a PostgreSQL ledger
 * (store/judgments.h's PostgreSQL writer, store/pg.h's judgments mirrors):
 * a database that cannot be reached costs the judgments, counted, never a
 * wait; a judgment PostgreSQL refuses for its data costs itself, not its
 * batch; the mirrors copy what the reports read. The tests that need a
 * server run with AHORRO_TEST_POSTGRES (a libpq URL) and are skipped
 * without it; each makes a database of its own and drops it. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "store/judgments.h"
#include "store/pg.h"

#define T0_MS 1717372800000LL

static ah_judgment_t *judgment(const char *rid, int64_t ts, const char *route, double score,
                               const char *reason)
{
    ah_judgment_t *j = ah_calloc(1, sizeof *j);
    j->request_id = ah_strdup(rid);
    j->ts_ms = ts;
    j->route = ah_strdup(route);
    j->judge = ah_strdup("small");
    j->score = score;
    if (isnan(score))
        j->error = ah_strdup("HTTP 504: timeout");
    else
        j->scores = ah_strdup("{\"relevance\":5}");
    j->reason = reason ? ah_strdup(reason) : NULL;
    j->judge_request_id = ah_strdup("req_judge");
    return j;
}

/* Wait (at most 10 s) until the writer has dealt with n judgments. */
static void settle(ah_judgments_t *q, uint64_t n, uint64_t *written, uint64_t *lost)
{
    int64_t until = ah_now_us() + 10 * 1000000;
    do {
        ah_judgments_stats(q, written, lost);
        if (*written + *lost >= n)
            return;
        usleep(10000);
    } while (ah_now_us() < until);
}

START_TEST(unreachable_drops_and_counts)
{
    ah_judgments_t *q = NULL;
    /* Nothing listens on port 1: refused at once. open_pg itself never
     * connects (it may be called from an event loop). */
    int64_t t = ah_now_us();
    ck_assert_int_eq(ah_judgments_open_pg("postgres://nobody@127.0.0.1:1/none", 1000, &q), AH_E_OK);
    for (int i = 0; i < 3; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "req_%d", i);
        ck_assert_int_eq(ah_judgments_push(q, judgment(rid, T0_MS, "big", 0.5, NULL)), AH_E_OK);
    }
    ck_assert_int_lt(ah_now_us() - t, 200000);
    uint64_t written = 0, lost = 0;
    settle(q, 3, &written, &lost);
    ck_assert_uint_eq(written, 0);
    ck_assert_uint_eq(lost, 3);
    /* Within the second after a failed attempt, nothing is tried: dropped
     * at once. */
    t = ah_now_us();
    ck_assert_int_eq(ah_judgments_push(q, judgment("req_3", T0_MS, "big", 0.5, NULL)), AH_E_OK);
    settle(q, 4, &written, &lost);
    ck_assert_uint_eq(lost, 4);
    ck_assert_int_lt(ah_now_us() - t, AH_JUDGMENTS_RETRY_US);
    ah_judgments_close(q);
}
END_TEST

/* --- with a server ------------------------------------------------------- */

static char base_url[512], test_url[600], test_db[64];
static PGconn *admin;

/* A database of the test's own, named after the pid; 0 when there is no
 * server to test against (or its URL is not postgres://.../DB). */
static int make_db(void)
{
    const char *u = getenv("AHORRO_TEST_POSTGRES");
    if (!u || !*u || strlen(u) >= sizeof base_url || strchr(u, '?'))
        return 0;
    snprintf(base_url, sizeof base_url, "%s", u);
    const char *scheme = strstr(base_url, "://");
    char *slash = scheme ? strrchr(base_url, '/') : NULL;
    if (!slash || slash < scheme + 3)
        return 0;
    char err[256], sql[128];
    admin = ah_pg_connect(base_url, 2000, err, sizeof err);
    ck_assert_msg(admin != NULL, "%s", err);
    snprintf(test_db, sizeof test_db, "ahorro_ut_judgments_%d", (int)getpid());
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", test_db);
    ck_assert_int_eq(ah_pg_exec(admin, sql, err, sizeof err), AH_E_OK);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", test_db);
    ck_assert_msg(ah_pg_exec(admin, sql, err, sizeof err) == AH_E_OK, "%s", err);
    snprintf(test_url, sizeof test_url, "%.*s/%s", (int)(slash - base_url), base_url, test_db);
    return 1;
}

static void drop_db(void)
{
    char err[256], sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", test_db);
    ck_assert_msg(ah_pg_exec(admin, sql, err, sizeof err) == AH_E_OK, "%s", err);
    PQfinish(admin);
    admin = NULL;
}

static int64_t count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

START_TEST(writes_and_mirrors)
{
    if (!make_db())
        return; /* no AHORRO_TEST_POSTGRES: nothing to test against */
    char err[512] = "";
    PGconn *c = ah_pg_connect(test_url, 2000, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_msg(ah_pg_migrate(c, err, sizeof err) == AH_E_OK, "%s", err);

    ah_judgments_t *q = NULL;
    ck_assert_int_eq(ah_judgments_open_pg(test_url, 2000, &q), AH_E_OK);
    /* Bytes that are not UTF-8 are refused by a UTF8 database (SQLSTATE
     * 22021): that judgment alone is dropped. */
    ah_judgments_push(q, judgment("req_a", T0_MS, "big", 0.25, "fine"));
    ah_judgments_push(q, judgment("req_bad", T0_MS + 1, "big", 0.5, "not \xff UTF-8"));
    ah_judgments_push(q, judgment("req_b", T0_MS + 2, "other", NAN, NULL));
    ah_judgments_push(q, judgment("req_c", T0_MS + 86400000, "big", 1.0, NULL));
    uint64_t written = 0, lost = 0;
    settle(q, 4, &written, &lost);
    ck_assert_uint_eq(written, 3);
    ck_assert_uint_eq(lost, 1);
    ah_judgments_close(q);

    /* The ledger mirror holds the range's judgments, as SQLite had them. */
    sqlite3 *db = NULL;
    ck_assert_msg(ah_pg_ledger_mirror(c, T0_MS, T0_MS + 1000, 100, &db, err, sizeof err) == AH_E_OK,
                  "%s", err);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 2);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments WHERE request_id = 'req_a' AND "
                               "score = 0.25 AND reason = 'fine' AND error IS NULL AND ts_ms = "
                               "1717372800000 AND judge = 'small' AND scores IS NOT NULL"),
                     1);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments WHERE request_id = 'req_b' AND "
                               "score IS NULL AND error = 'HTTP 504: timeout'"),
                     1);
    sqlite3_close(db);
    /* More judgments in the range than the mirror may hold: refused. */
    ck_assert_int_eq(ah_pg_ledger_mirror(c, T0_MS, 0, 1, &db, err, sizeof err), AH_E_TOOBIG);
    ck_assert_ptr_null(db);
    ck_assert_ptr_nonnull(strstr(err, "judgments"));

    /* The drift report's mirror: since, a route, a limit in its order. */
    ck_assert_msg(ah_pg_judgments_mirror(c, T0_MS, NULL, 100, &db, err, sizeof err) == AH_E_OK,
                  "%s", err);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 3);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM ledger"), 0);
    sqlite3_close(db);
    ck_assert_int_eq(ah_pg_judgments_mirror(c, T0_MS, "big", 100, &db, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments WHERE route = 'big'"), 2);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 2);
    sqlite3_close(db);
    ck_assert_int_eq(ah_pg_judgments_mirror(c, T0_MS, NULL, 2, &db, err, sizeof err), AH_E_OK);
    /* route, then ts_ms: big's two come before other's */
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments WHERE route = 'big'"), 2);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 2);
    sqlite3_close(db);
    ck_assert_int_eq(ah_pg_judgments_mirror(c, T0_MS + 3, NULL, 100, &db, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(count(db, "SELECT COUNT(*) FROM judgments"), 1);
    sqlite3_close(db);
    PQfinish(c);
    drop_db();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("judgments_pg");
    TCase *tc = tcase_create("judgments_pg");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, unreachable_drops_and_counts);
    tcase_add_test(tc, writes_and_mirrors);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
