/* test_observe.c - W3C traceparent parsing, trace sampling, and the request
 * log's lines (src/observe/). */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "observe/reqlog.h"
#include "observe/trace.h"

START_TEST(traceparent)
{
    uint8_t t[16], p[8];
    int sampled = -1;
    ck_assert(ah_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", t, p,
                                   &sampled));
    ck_assert_int_eq(sampled, 1);
    char hex[33];
    ah_trace_hex(t, 16, hex);
    ck_assert_str_eq(hex, "4bf92f3577b34da6a3ce929d0e0e4736");
    ah_trace_hex(p, 8, hex);
    ck_assert_str_eq(hex, "00f067aa0ba902b7");
    ck_assert(ah_traceparent_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", t, p,
                                   &sampled));
    ck_assert_int_eq(sampled, 0);
    static const char *const bad[] = {
        NULL,
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",     /* short */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",    /* version */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",    /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",    /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",    /* zero parent */
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",    /* separator */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",    /* flags */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx", /* long */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!ah_traceparent_parse(bad[i], t, p, &sampled), "accepted %s", bad[i]);
}
END_TEST

START_TEST(sampling)
{
    uint64_t rng = 7;
    ah_trace_t tr;
    int on = 0;
    for (int i = 0; i < 10000; i++) {
        ah_trace_begin(&tr, NULL, 0.25, &rng, 1000);
        on += tr.on;
    }
    ck_assert_int_gt(on, 2200);
    ck_assert_int_lt(on, 2800);
    ah_trace_begin(&tr, NULL, 0, &rng, 1000);
    ck_assert_int_eq(tr.on, 0);
    /* the caller's decision wins over the ratio, both ways */
    ah_trace_begin(&tr, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0, &rng, 1000);
    ck_assert_int_eq(tr.on, 1);
    ck_assert_int_eq(tr.has_parent, 1);
    ah_trace_begin(&tr, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 1, &rng, 1000);
    ck_assert_int_eq(tr.on, 0);
    /* stage times only when on */
    ah_trace_begin(&tr, NULL, 1, &rng, 1000);
    ck_assert_int_eq(ah_trace_leave(&tr, AH_SPAN_AUTH, (ah_trace_enter(&tr, AH_SPAN_AUTH), 42)),
                     42);
    ck_assert(tr.span[AH_SPAN_AUTH].start_us > 0);
    ck_assert(tr.span[AH_SPAN_AUTH].end_us >= tr.span[AH_SPAN_AUTH].start_us);
    ck_assert_int_eq(tr.span[AH_SPAN_CACHE].start_us, 0);
}
END_TEST

START_TEST(log_line)
{
    ah_ledger_row_t r = {0};
    r.request_id = "req_1";
    r.ts_ms = 1764374400123; /* 2025-11-29T00:00:00.123Z */
    r.api = "openai";
    r.endpoint = "chat";
    r.key_id = "k1";
    r.user = "u \"quoted\"\n";
    r.tags = "{\"feature\":\"search\"}";
    r.requested_model = "gpt-4o-mini";
    r.served_model = "gpt-4o-mini-2024-07-18";
    r.status = 502;
    r.error = "upstream failed";
    r.prompt_tokens = 12;
    r.cost_usd = -1;
    r.ttft_ms = -1;
    r.latency_ms = 3.5;
    ah_buf_t b;
    ah_buf_init(&b, 1 << 16);
    ck_assert_int_eq(ah_reqlog_format(&r, &b), 0);
    ck_assert_ptr_null(strchr(b.data, '\n')); /* one line */
    json_t *o = json_loads(b.data, 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "ts")), "2025-11-29T00:00:00.123Z");
    ck_assert_str_eq(json_string_value(json_object_get(o, "level")), "error");
    ck_assert_str_eq(json_string_value(json_object_get(o, "user")), "u \"quoted\"\n");
    ck_assert(json_is_null(json_object_get(o, "cost_usd")));
    ck_assert_ptr_null(json_object_get(o, "ttft_ms"));
    ck_assert_ptr_null(json_object_get(o, "prompt"));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "tags"), "feature")),
                     "search");
    json_decref(o);

    /* a prompt past the limit is cut at a character boundary and said so */
    size_t n = (1u << 20) / 4 + 10;
    char *big = ah_malloc(n + 1);
    for (size_t i = 0; i < n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2); /* é */
    big[n] = '\0';
    r.prompt = big;
    ah_buf_t b2;
    ah_buf_init(&b2, 4u << 20);
    ck_assert_int_eq(ah_reqlog_format(&r, &b2), 0);
    o = json_loads(b2.data, 0, NULL);
    ck_assert_ptr_nonnull(o);
    ck_assert(json_is_true(json_object_get(o, "prompt_truncated")));
    ck_assert_uint_le(json_string_length(json_object_get(o, "prompt")), (1u << 20) / 4);
    json_decref(o);
    ah_free(big);
    ah_buf_free(&b);
    ah_buf_free(&b2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("observe");
    TCase *tc = tcase_create("observe");
    tcase_add_test(tc, traceparent);
    tcase_add_test(tc, sampling);
    tcase_add_test(tc, log_line);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
