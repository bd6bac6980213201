/* test_dashboard.c - the embedded page is the file, byte for byte; its CSP
 * allows its own script and style by hash and nothing from elsewhere; what a
 * viewer key may read; key roles stored, read back and listed. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_run.h"
#include "core/alloc.h"
#include "server/dashboard.h"
#include "store/db.h"
#include "store/keys.h"

/* Size limit for reading the page back (it is tens of KB). */
#define PAGE_MAX (1u << 20)

START_TEST(embedded_page_is_the_file)
{
    /* make runs the unit tests from the repository's root, as it builds. */
    FILE *f = fopen("web/dashboard.html", "rb");
    ck_assert_ptr_nonnull(f);
    char *buf = ah_malloc(PAGE_MAX);
    size_t n = fread(buf, 1, PAGE_MAX, f);
    fclose(f);
    ck_assert_uint_lt(n, PAGE_MAX);
    ck_assert_uint_eq(ah_dashboard_html_len, n);
    ck_assert(memcmp(ah_dashboard_html, buf, n) == 0);
    ck_assert_int_eq(ah_dashboard_html[n], '\0');
    ah_free(buf);
}
END_TEST

START_TEST(csp_is_strict)
{
    const char *csp = ah_dashboard_csp();
    ck_assert_ptr_nonnull(strstr(csp, "default-src 'none'"));
    ck_assert_ptr_nonnull(strstr(csp, "script-src 'sha256-"));
    ck_assert_ptr_nonnull(strstr(csp, "style-src 'sha256-"));
    ck_assert_ptr_nonnull(strstr(csp, "connect-src 'self'"));
    ck_assert_ptr_null(strstr(csp, "unsafe"));
    ck_assert_ptr_null(strstr(csp, "http"));
    ck_assert_ptr_eq(ah_dashboard_csp(), csp); /* built once */
}
END_TEST

START_TEST(viewer_reads_only)
{
    ck_assert(ah_dashboard_viewer_may("/admin/spend", EVHTTP_REQ_GET));
    ck_assert(ah_dashboard_viewer_may("/admin/latency", EVHTTP_REQ_GET));
    ck_assert(ah_dashboard_viewer_may("/admin/budgets", EVHTTP_REQ_GET));
    ck_assert(ah_dashboard_viewer_may("/admin/experiments", EVHTTP_REQ_GET));
    ck_assert(ah_dashboard_viewer_may("/admin/cache", EVHTTP_REQ_GET));
    ck_assert(ah_dashboard_viewer_may("/admin/deployments", EVHTTP_REQ_GET));
    ck_assert(!ah_dashboard_viewer_may("/admin/cache", EVHTTP_REQ_DELETE));
    ck_assert(!ah_dashboard_viewer_may("/admin/cache/purge", EVHTTP_REQ_POST));
    ck_assert(!ah_dashboard_viewer_may("/admin/keys", EVHTTP_REQ_GET));
    ck_assert(!ah_dashboard_viewer_may("/admin/keys", EVHTTP_REQ_POST));
    ck_assert(!ah_dashboard_viewer_may("/admin/spend/", EVHTTP_REQ_GET));
}
END_TEST

START_TEST(key_roles)
{
    ah_key_role_t r;
    ck_assert_int_eq(ah_key_role_parse("viewer", &r), AH_E_OK);
    ck_assert_int_eq(r, AH_KEY_ROLE_VIEWER);
    ck_assert_int_eq(ah_key_role_parse("api", &r), AH_E_OK);
    ck_assert_int_eq(r, AH_KEY_ROLE_API);
    ck_assert_int_eq(ah_key_role_parse("admin", &r), AH_E_INVAL);
    ck_assert_int_eq(ah_key_role_parse(NULL, &r), AH_E_INVAL);
    ck_assert_str_eq(ah_key_role_name(AH_KEY_ROLE_UNKNOWN), "unknown");

    char path[] = "/tmp/ahorro-test-dashboard-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sqlite3 *lite;
    ck_assert_int_eq(ah_db_open(path, &lite), AH_E_OK);
    ah_dbh_t db = {.lite = lite};
    char *key = NULL, *id = NULL, *key2 = NULL, *id2 = NULL;
    ck_assert_int_eq(ah_keys_create(db, "ops", NULL, AH_KEY_ROLE_VIEWER, &key, &id), AH_E_OK);
    ck_assert_int_eq(ah_keys_create(db, "app", NULL, AH_KEY_ROLE_API, &key2, &id2), AH_E_OK);
    ck_assert_int_eq(ah_keys_create(db, "x", NULL, AH_KEY_ROLE_UNKNOWN, &key2, &id2), AH_E_INVAL);
    ah_key_t k;
    ck_assert_int_eq(ah_keys_lookup(db, key, &k), AH_E_OK);
    ck_assert_int_eq(k.role, AH_KEY_ROLE_VIEWER);
    ah_key_clear(&k);
    ck_assert_int_eq(ah_keys_lookup(db, key2, &k), AH_E_OK);
    ck_assert_int_eq(k.role, AH_KEY_ROLE_API);
    ah_key_clear(&k);
    /* A role a newer ahorro wrote is read as unknown: it may do nothing. */
    ck_assert_int_eq(ah_db_exec(lite, "UPDATE keys SET role = 'auditor' WHERE owner = 'app'"),
                     AH_E_OK);
    ck_assert_int_eq(ah_keys_lookup(db, key2, &k), AH_E_OK);
    ck_assert_int_eq(k.role, AH_KEY_ROLE_UNKNOWN);
    ah_key_clear(&k);
    json_t *list = NULL;
    ck_assert_int_eq(ah_keys_list(db, &list), AH_E_OK);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "role")), "viewer");
    json_decref(list);
    /* By id (the internal credential), and revoked. */
    ck_assert_int_eq(ah_keys_lookup_id(db, id, &k), AH_E_OK);
    ck_assert_str_eq(k.owner, "ops");
    ck_assert_int_eq(k.revoked, 0);
    ah_key_clear(&k);
    ck_assert_int_eq(ah_keys_revoke(db, id), AH_E_OK);
    ck_assert_int_eq(ah_keys_revoke(db, id), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_keys_lookup(db, key, &k), AH_E_OK);
    ck_assert_int_eq(k.revoked, 1);
    ah_key_clear(&k);
    ck_assert_int_eq(ah_keys_lookup_id(db, "key_nope", &k), AH_E_NOTFOUND);
    /* Keys wanted in PostgreSQL that cannot be reached: every call fails
     * (never a fall back to the local file's keys). */
    ah_dbh_t away = {.lite = lite, .pg_wanted = 1};
    ck_assert_int_eq(ah_keys_lookup(away, key, &k), AH_E_DB);
    ck_assert_int_eq(ah_keys_list(away, &list), AH_E_DB);
    ck_assert_int_eq(ah_keys_revoke(away, id), AH_E_DB);
    sqlite3_close(lite);
    ah_free(key);
    ah_free(id);
    ah_free(key2);
    ah_free(id2);
    unlink(path);
    char side[sizeof path + 8];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dashboard");
    TCase *tc = tcase_create("dashboard");
    tcase_add_test(tc, embedded_page_is_the_file);
    tcase_add_test(tc, csp_is_strict);
    tcase_add_test(tc, viewer_reads_only);
    tcase_add_test(tc, key_roles);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
