/* test_core.c - bounded buffers, arenas and the SSE parser. */
#include <check.h>
#include <jansson.h>

#include "check_run.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/buf.h"
#include "core/json_out.h"
#include "upstream/sse.h"

START_TEST(buf_limits)
{
    ah_buf_t b;
    ah_buf_init(&b, 8);
    ck_assert_int_eq(ah_buf_appends(&b, "hello"), AH_E_OK);
    ck_assert_int_eq(ah_buf_appends(&b, "world"), AH_E_TOOBIG);
    ck_assert_str_eq(b.data, "hello"); /* unchanged on failure */
    ck_assert_int_eq(ah_buf_printf(&b, "%d", 123), AH_E_OK);
    ck_assert_str_eq(b.data, "hello123");
    ck_assert_int_eq(ah_buf_printf(&b, "x"), AH_E_TOOBIG);
    ah_buf_consume(&b, 5);
    ck_assert_str_eq(b.data, "123");
    ck_assert_uint_eq(b.len, 3);
    size_t n;
    char *s = ah_buf_steal(&b, &n);
    ck_assert_str_eq(s, "123");
    ck_assert_uint_eq(n, 3);
    free(s);
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(ah_buf_append(&b, "x", (size_t)-1), AH_E_TOOBIG); /* overflow-safe */
    ah_buf_free(&b);
}
END_TEST

START_TEST(arena_alloc)
{
    ah_arena_t a;
    ah_arena_init(&a);
    char *s = ah_arena_strdup(&a, "abc");
    ck_assert_str_eq(s, "abc");
    void *big = ah_arena_alloc(&a, 100000);
    memset(big, 1, 100000);
    for (int i = 0; i < 1000; i++) {
        long *p = ah_arena_alloc(&a, sizeof(long));
        ck_assert_uint_eq((uintptr_t)p % _Alignof(long), 0);
        *p = i;
    }
    ck_assert_ptr_null(ah_arena_strdup(&a, NULL));
    ah_arena_free(&a);
}
END_TEST

typedef struct events {
    int n;
    char names[8][64];
    char data[8][256];
    char raw[8][512];
} events_t;

static int collect(void *ud, const char *event, const char *data, size_t len, const char *raw,
                   size_t raw_len)
{
    events_t *e = ud;
    if (e->n >= 8)
        return 1;
    snprintf(e->names[e->n], 64, "%s", event ? event : "");
    snprintf(e->data[e->n], 256, "%.*s", (int)len, data);
    snprintf(e->raw[e->n], 512, "%.*s", (int)raw_len, raw);
    e->n++;
    return 0;
}

static const char *stream_text = "event: message_start\ndata: {\"a\":1}\n\n"
                                 ": a comment\n"
                                 "data: line1\ndata:line2\r\n\r\n"
                                 "data: [DONE]\n\n";

static void check_events(events_t *e)
{
    ck_assert_int_eq(e->n, 3);
    ck_assert_str_eq(e->names[0], "message_start");
    ck_assert_str_eq(e->data[0], "{\"a\":1}");
    ck_assert_str_eq(e->raw[0], "event: message_start\ndata: {\"a\":1}\n\n");
    ck_assert_str_eq(e->names[1], "");
    ck_assert_str_eq(e->data[1], "line1\nline2");
    ck_assert_str_eq(e->data[2], "[DONE]");
}

START_TEST(sse_whole_and_bytewise)
{
    for (int mode = 0; mode < 2; mode++) {
        ah_sse_t s;
        events_t e = {0};
        ah_sse_init(&s);
        size_t n = strlen(stream_text);
        if (mode == 0) {
            ck_assert_int_eq(ah_sse_feed(&s, stream_text, n, collect, &e), AH_E_OK);
        } else {
            for (size_t i = 0; i < n; i++)
                ck_assert_int_eq(ah_sse_feed(&s, stream_text + i, 1, collect, &e), AH_E_OK);
        }
        check_events(&e);
        ah_sse_free(&s);
    }
}
END_TEST

START_TEST(sse_limit)
{
    ah_sse_t s;
    events_t e = {0};
    ah_sse_init(&s);
    char *chunk = malloc(1 << 20);
    memset(chunk, 'x', 1 << 20);
    ah_err_t rc = AH_E_OK;
    for (int i = 0; i < 8 && !rc; i++)
        rc = ah_sse_feed(&s, chunk, 1 << 20, collect, &e);
    ck_assert_int_eq(rc, AH_E_TOOBIG);
    free(chunk);
    ah_sse_free(&s);
}
END_TEST

/* JSON strings written by hand: escapes, and bytes that are not UTF-8
 * replaced so that a parser takes every line back. */
START_TEST(json_out_strings)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"plain", "\"plain\""},
        {"q\"b\\", "\"q\\\"b\\\\\""},
        {"t\tn\n\x01", "\"t\\u0009n\\u000a\\u0001\""},
        {"caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\""},
        {"bad\xff", "\"bad\xef\xbf\xbd\""},                                 /* not a lead byte */
        {"ov\xc0\xaf", "\"ov\xef\xbf\xbd\xef\xbf\xbd\""},                   /* overlong */
        {"sur\xed\xa0\x80", "\"sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""}, /* surrogate */
        {"cut\xe2\x82", "\"cut\xef\xbf\xbd\xef\xbf\xbd\""},                 /* truncated */
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        ah_buf_t b;
        ah_buf_init(&b, 1024);
        ck_assert_int_eq(ah_json_out_string(&b, cases[k].in), AH_E_OK);
        ck_assert_str_eq(b.data, cases[k].want);
        json_error_t e;
        json_t *back = json_loadb(b.data, b.len, JSON_DECODE_ANY, &e);
        ck_assert_msg(json_is_string(back), "case %zu: %s", k, e.text);
        json_decref(back);
        ah_buf_free(&b);
    }
    ah_buf_t small;
    ah_buf_init(&small, 4);
    ck_assert_int_eq(ah_json_out_string(&small, "too long"), AH_E_TOOBIG);
    ah_buf_free(&small);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, buf_limits);
    tcase_add_test(tc, arena_alloc);
    tcase_add_test(tc, sse_whole_and_bytewise);
    tcase_add_test(tc, sse_limit);
    tcase_add_test(tc, json_out_strings);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
