/* test_metrics.c - the metrics' per-thread tables summed on scrape (threads
 * counting at once, threads that come and go), the bounds (series past the
 * table's size count as "other", tag values past max_values too), label
 * escaping and cutting, histograms, and the ahorro.metrics configuration.
 * Each test runs in its own process (CK_FORK), so the tables start empty. */
#include <check.h>

#include "check_run.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "metrics/label.h"
#include "metrics/metrics.h"

#define THREADS 8
#define PER_THREAD 20000

static ah_config_t *load(const char *yaml, char *err, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/ahorro-test-metrics-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_config_t *c = NULL;
    ah_config_load(path, &c, err, n);
    unlink(path);
    return c;
}

static ah_config_t *config(const char *metrics)
{
    char yaml[1024], err[512] = "";
    snprintf(yaml, sizeof yaml,
             "model_list:\n"
             "  - model_name: gpt-4o-mini\n"
             "    litellm_params: { model: openai/gpt-4o-mini, api_key: sk-test }\n"
             "  - model_name: 'claude*'\n"
             "    litellm_params: { model: anthropic/claude-3-5-haiku-latest, api_key: sk-t }\n"
             "ahorro:\n  db: /tmp/ahorro-test-metrics.db\n%s",
             metrics ? metrics : "");
    ah_config_t *c = load(yaml, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

static ah_ledger_row_t row_of(const char *model, int status)
{
    ah_ledger_row_t r;
    memset(&r, 0, sizeof r);
    r.served_model = (char *)model;
    r.requested_model = (char *)model;
    r.provider = (char *)"openai";
    r.deployment = (char *)model;
    r.endpoint = "chat";
    r.usage_source = "provider";
    r.status = status;
    r.prompt_tokens = 3;
    r.completion_tokens = 5;
    r.cost_usd = 0.25; /* exact in binary: sums compare exactly */
    r.latency_ms = 12;
    r.ttft_ms = -1;
    return r;
}

static char *render(const ah_config_t *c)
{
    ah_buf_t b;
    ah_buf_init(&b, AH_METRICS_MAX_TEXT);
    ah_metrics_render(c, &b);
    ck_assert_ptr_nonnull(b.data);
    return ah_buf_steal(&b, NULL);
}

/* The sum of the values of name's lines that contain every one of want
 * (NULL-terminated); *lines counts them. */
static double sum_of(const char *text, const char *name, const char *const *want, int *lines)
{
    double s = 0;
    size_t nl = strlen(name);
    int n = 0;
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && (p[nl] == '{' || p[nl] == ' ')) {
            char line[4096];
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            int ok = 1;
            for (int i = 0; want && want[i]; i++)
                ok &= strstr(line, want[i]) != NULL;
            if (ok) {
                s += strtod(strrchr(line, ' ') + 1, NULL);
                n++;
            }
        }
        p = end ? end + 1 : NULL;
    }
    if (lines)
        *lines = n;
    return s;
}

typedef struct {
    const ah_config_t *c;
    int id;
} hammer_t;

static void *hammer(void *arg)
{
    hammer_t *h = arg;
    char own[32];
    snprintf(own, sizeof own, "model-%d", h->id);
    ah_ledger_row_t shared = row_of("gpt-4o-mini", 200), mine = row_of(own, 200);
    for (int i = 0; i < PER_THREAD; i++) {
        ah_metrics_inflight(1);
        ah_metrics_observe(h->c, i % 2 ? &shared : &mine, NULL, 1);
        ah_metrics_inflight(-1);
    }
    return NULL;
}

START_TEST(threads_summed_on_scrape)
{
    ah_config_t *c = config(NULL);
    pthread_t t[THREADS];
    hammer_t h[THREADS];
    for (int i = 0; i < THREADS; i++) {
        h[i] = (hammer_t){c, i};
        pthread_create(&t[i], NULL, hammer, &h[i]);
    }
    /* scrapes while the threads count: never torn, never more than is done */
    for (int k = 0; k < 20; k++) {
        char *txt = render(c);
        double n = sum_of(txt, "ahorro_requests_total", NULL, NULL);
        ck_assert(n >= 0 && n <= THREADS * PER_THREAD);
        free(txt);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *txt = render(c);
    int lines;
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", NULL, &lines), THREADS * PER_THREAD);
    ck_assert_int_eq(lines, THREADS + 1); /* one series per thread's model, one shared */
    const char *shared[] = {"model=\"gpt-4o-mini\"", "route=\"gpt-4o-mini\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", shared, NULL),
                        THREADS * PER_THREAD / 2);
    const char *input[] = {"type=\"input\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_tokens_total", input, NULL),
                        3.0 * THREADS * PER_THREAD);
    ck_assert_double_eq(sum_of(txt, "ahorro_cost_usd_total", NULL, NULL),
                        0.25 * THREADS * PER_THREAD);
    ck_assert_double_eq(sum_of(txt, "ahorro_request_duration_seconds_count", NULL, NULL),
                        THREADS * PER_THREAD);
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_in_flight", NULL, NULL), 0);
    /* a model no alias serves is "unknown" as a route, never the name asked for */
    ck_assert_ptr_null(strstr(txt, "route=\"model-"));
    free(txt);
    ah_config_free(c);
}
END_TEST

static void *one_request(void *arg)
{
    ah_ledger_row_t r = row_of("gpt-4o-mini", 200);
    ah_metrics_observe(arg, &r, NULL, 1);
    return NULL;
}

START_TEST(threads_that_exit_leave_their_counts)
{
    ah_config_t *c = config(NULL);
    /* more threads than tables: an exited thread's table is adopted */
    for (int i = 0; i < 3 * AH_METRICS_MAX_TABLES; i++) {
        pthread_t t;
        pthread_create(&t, NULL, one_request, c);
        pthread_join(t, NULL);
    }
    char *txt = render(c);
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", NULL, NULL),
                        3 * AH_METRICS_MAX_TABLES);
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(series_past_the_bound_count_as_other)
{
    ah_config_t *c = config(NULL);
    char model[32];
    int n = 0;
    for (int m = 0; m < AH_METRICS_MAX_LABEL_VALUES + 50; m++)
        for (int s = 0; s < 10; s++) {
            snprintf(model, sizeof model, "m%d", m);
            ah_ledger_row_t r = row_of(model, 200 + s);
            ah_metrics_observe(c, &r, NULL, 1);
            n++;
        }
    char *txt = render(c);
    int lines;
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", NULL, &lines), n);
    ck_assert_int_eq(lines, AH_METRICS_MAX_SERIES);
    const char *other[] = {"model=\"other\",provider=\"other\",status=\"0\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", other, NULL),
                        n - (AH_METRICS_MAX_SERIES - 1));
    /* models past their own bound are "other" even in series under it */
    const char *m_other[] = {"model=\"other\",provider=\"openai\"", NULL};
    ck_assert_int_eq((int)sum_of(txt, "ahorro_requests_total", m_other, NULL), 0);
    ck_assert_ptr_null(strstr(txt, "model=\"m150\""));
    const char *fam[] = {"family=\"requests\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_metrics_series", fam, NULL), AH_METRICS_MAX_SERIES);
    ck_assert_double_eq(sum_of(txt, "ahorro_request_duration_seconds_count", NULL, NULL), n);
    ck_assert_int_le((int)strlen(txt), (int)AH_METRICS_MAX_TEXT);
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(tag_values_are_bounded)
{
    ah_config_t *c = config("  metrics: { tags: [feature, team], max_values: 5 }\n");
    ck_assert_int_eq(c->metrics.ntags, 2);
    char v[32];
    for (int i = 0; i < 100; i++) {
        snprintf(v, sizeof v, "f%d", i);
        json_t *tags = json_pack("{s:s,s:s}", "feature", v, "user", "u-secret");
        ah_ledger_row_t r = row_of("gpt-4o-mini", 200);
        r.user = (char *)"u-secret";
        ah_metrics_observe(c, &r, tags, 1);
        json_decref(tags);
    }
    char *txt = render(c);
    int lines;
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", NULL, &lines), 100);
    ck_assert_int_eq(lines, 6); /* f0..f4 and other */
    const char *other[] = {"feature=\"other\",team=\"\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", other, NULL), 95);
    ck_assert_ptr_null(strstr(txt, "u-secret"));
    ck_assert_ptr_null(strstr(txt, "feature=\"f5\""));
    /* tags stay off the histograms */
    ck_assert_ptr_null(strstr(strstr(txt, "# TYPE ahorro_request_duration"), "feature="));
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(labels_escaped_and_cut)
{
    ah_buf_t b;
    ah_buf_init(&b, 1024);
    ah_label_escape(&b, "a\"b\\c\nd");
    ck_assert_str_eq(b.data, "a\\\"b\\\\c\\nd");
    ah_buf_free(&b);

    static ah_label_set_t set;
    const ah_label_value_t *a = ah_label_intern(&set, "x\"y", 2);
    ck_assert_str_eq(a->raw, "x\"y");
    ck_assert_str_eq(a->esc, "x\\\"y");
    ck_assert_ptr_eq(ah_label_intern(&set, "x\"y", 2), a);
    ck_assert_ptr_eq(ah_label_intern(&set, "other", 2), &ah_label_other);
    ck_assert_ptr_eq(ah_label_intern(&set, NULL, 2), &ah_label_empty);
    ck_assert_ptr_ne(ah_label_intern(&set, "second", 2), &ah_label_other);
    ck_assert_ptr_eq(ah_label_intern(&set, "third", 2), &ah_label_other);
    /* a long value is cut on a UTF-8 boundary: "é" is two bytes */
    char longv[201];
    for (int i = 0; i < 100; i++)
        memcpy(longv + 2 * i, "\xc3\xa9", 2);
    longv[200] = '\0';
    static ah_label_set_t set2;
    const ah_label_value_t *l = ah_label_intern(&set2, longv, 4);
    ck_assert_int_le((int)strlen(l->raw), AH_LABEL_MAX_VALUE_BYTES);
    ck_assert_int_eq((int)strlen(l->raw) % 2, 0);

    ah_config_t *c = config(NULL);
    ah_ledger_row_t r = row_of("we\"ird\\model\nname", 200);
    ah_metrics_observe(c, &r, NULL, 1);
    char *txt = render(c);
    ck_assert_ptr_nonnull(strstr(txt, "model=\"we\\\"ird\\\\model\\nname\""));
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(histograms_and_failures)
{
    ah_config_t *c = config(NULL);
    double lat[] = {0.5, 3, 40, 200000}; /* ms; the last past every bound */
    for (int i = 0; i < 4; i++) {
        ah_ledger_row_t r = row_of("claude-3-5-haiku-latest", 200);
        r.provider = (char *)"anthropic";
        r.latency_ms = lat[i];
        r.ttft_ms = lat[i] / 2;
        r.stream = 1;
        ah_metrics_observe(c, &r, NULL, 1);
    }
    /* a retried attempt and the final failure */
    ah_ledger_row_t a = row_of("gpt-4o-mini", 500);
    a.attempt_of = (char *)"req-1";
    ah_metrics_observe(c, &a, NULL, 1);
    ah_ledger_row_t f = row_of("gpt-4o-mini", 502);
    ah_metrics_observe(c, &f, NULL, 2);
    char *txt = render(c);
    const char *le1[] = {"route=\"claude*\"", "le=\"0.001\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_request_duration_seconds_bucket", le1, NULL), 1);
    const char *le2[] = {"route=\"claude*\"", "le=\"0.05\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_request_duration_seconds_bucket", le2, NULL), 3);
    const char *inf[] = {"route=\"claude*\"", "le=\"+Inf\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_request_duration_seconds_bucket", inf, NULL), 4);
    ck_assert_double_eq(sum_of(txt, "ahorro_time_to_first_token_seconds_count", NULL, NULL), 4);
    ck_assert_double_eq(
        sum_of(txt, "gen_ai_client_operation_time_to_first_chunk_seconds_count", NULL, NULL), 4);
    /* the attempt is not a request, but its tokens and cost count */
    ck_assert_double_eq(sum_of(txt, "ahorro_requests_total", NULL, NULL), 5);
    const char *in[] = {"type=\"input\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_tokens_total", in, NULL), 18);
    const char *e500[] = {"status=\"500\"", "deployment=\"gpt-4o-mini\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_upstream_errors_total", e500, NULL), 1);
    ck_assert_double_eq(sum_of(txt, "ahorro_upstream_retries_total", e500, NULL), 1);
    ck_assert_double_eq(sum_of(txt, "ahorro_upstream_errors_total", NULL, NULL), 2);
    ck_assert_double_eq(sum_of(txt, "ahorro_upstream_retries_total", NULL, NULL), 1);
    const char *err[] = {"error_type=\"500\"", NULL};
    ck_assert_double_eq(sum_of(txt, "gen_ai_client_operation_duration_seconds_count", err, NULL),
                        1);
    const char *tok[] = {"gen_ai_token_type=\"output\"", "le=\"16\"", NULL};
    ck_assert_double_eq(sum_of(txt, "gen_ai_client_token_usage_bucket", tok, NULL), 6);
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(savings_split_by_sign)
{
    ah_config_t *c = config(NULL);
    ah_ledger_row_t r = row_of("gpt-4o-mini", 200);
    r.saved_routing_usd = -0.5;
    r.saved_shaping_usd = 0.125;
    ah_metrics_observe(c, &r, NULL, 1);
    r.saved_routing_usd = 2;
    ah_metrics_observe(c, &r, NULL, 1);
    char *txt = render(c);
    const char *routing[] = {"mechanism=\"routing\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_savings_usd_total", routing, NULL), 2);
    ck_assert_double_eq(sum_of(txt, "ahorro_overspend_usd_total", routing, NULL), 0.5);
    const char *shaping[] = {"mechanism=\"shaping\"", NULL};
    ck_assert_double_eq(sum_of(txt, "ahorro_savings_usd_total", shaping, NULL), 0.25);
    free(txt);
    ah_config_free(c);
}
END_TEST

START_TEST(metrics_config)
{
    char err[512];
    const char *bad[][2] = {
        {"  metrics: { tags: [a, b, c, d, e] }\n", "at most 4"},
        {"  metrics: { tags: [model] }\n", "already a label"},
        {"  metrics: { tags: [cost-center] }\n", "label name"},
        {"  metrics: { tags: [__x] }\n", "label name"},
        {"  metrics: { tags: [a, a] }\n", "twice"},
        {"  metrics: { tags: feature }\n", "list"},
        {"  metrics: { max_values: 0 }\n", "between"},
        {"  metrics: { labels: [a] }\n", "unknown setting"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char yaml[256];
        snprintf(yaml, sizeof yaml, "ahorro:\n%s", bad[i][0]);
        ah_config_t *c = load(yaml, err, sizeof err);
        ck_assert_msg(c == NULL, "accepted: %s", bad[i][0]);
        ck_assert_msg(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
    }
    ah_config_t *c = load("ahorro:\n  metrics: { tags: [feature, env_2] }\n", err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    ck_assert_int_eq(c->metrics.ntags, 2);
    ck_assert_str_eq(c->metrics.tags[1], "env_2");
    ck_assert_int_eq(c->metrics.max_values, AH_METRICS_DEFAULT_TAG_VALUES);
    ah_config_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *t = tcase_create("metrics");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, threads_summed_on_scrape);
    tcase_add_test(t, threads_that_exit_leave_their_counts);
    tcase_add_test(t, series_past_the_bound_count_as_other);
    tcase_add_test(t, tag_values_are_bounded);
    tcase_add_test(t, labels_escaped_and_cut);
    tcase_add_test(t, histograms_and_failures);
    tcase_add_test(t, savings_split_by_sign);
    tcase_add_test(t, metrics_config);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
