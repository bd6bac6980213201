/* test_cascade.c - the checks that decide whether a cascade escalates. */
#include <check.h>

#include "check_run.h"
#include <string.h>

#include "route/cascade.h"

static const char *check(const char *req, const char *ans)
{
    json_t *q = json_loads(req, 0, NULL), *a = json_loads(ans, 0, NULL);
    ck_assert_ptr_nonnull(q);
    ck_assert_ptr_nonnull(a);
    const char *why = ah_cascade_check(q, a);
    json_decref(q);
    json_decref(a);
    return why;
}

#define ANSWER(msg, finish) "{\"choices\":[{\"message\":" msg ",\"finish_reason\":\"" finish "\"}]}"

START_TEST(checks)
{
    const char *plain = "{\"messages\":[]}";
    ck_assert_ptr_null(check(plain, ANSWER("{\"content\":\"Paris.\"}", "stop")));
    ck_assert_str_eq(check(plain, "{\"choices\":[]}"), "empty");
    ck_assert_str_eq(check(plain, ANSWER("{\"content\":\"  \\n\"}", "stop")), "empty");
    ck_assert_str_eq(check(plain, ANSWER("{\"content\":\"It is\"}", "length")), "truncated");
    /* The client's own cap: a cut answer is what it asked for. */
    ck_assert_ptr_null(check("{\"max_tokens\":2}", ANSWER("{\"content\":\"It is\"}", "length")));
    ck_assert_str_eq(check(plain, ANSWER("{\"content\":null,\"refusal\":\"no\"}", "stop")),
                     "refusal");
    ck_assert_str_eq(
        check(plain,
              ANSWER("{\"content\":\"I\u2019m sorry, but I can\u2019t help with that.\"}", "stop")),
        "refusal");
    ck_assert_str_eq(check(plain, ANSWER("{\"content\":\"Honestly, I don't know.\"}", "stop")),
                     "uncertain");
    /* Deep inside a long answer the same words are content. */
    char long_answer[600];
    memset(long_answer, 'x', 300);
    long_answer[300] = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, ANSWER("{\"content\":\"%s I don't know why.\"}", "stop"),
             long_answer);
    ck_assert_ptr_null(check(plain, buf));
    const char *json_req = "{\"response_format\":{\"type\":\"json_object\"}}";
    ck_assert_ptr_null(check(json_req, ANSWER("{\"content\":\"{\\\"a\\\":1}\"}", "stop")));
    ck_assert_str_eq(check(json_req, ANSWER("{\"content\":\"a: 1\"}", "stop")), "invalid-json");
    ck_assert_ptr_null(check(plain, ANSWER("{\"content\":null,\"tool_calls\":[{\"function\":{"
                                           "\"name\":\"f\",\"arguments\":\"{}\"}}]}",
                                           "tool_calls")));
    ck_assert_str_eq(check(plain, ANSWER("{\"content\":null,\"tool_calls\":[{\"function\":{"
                                         "\"name\":\"f\",\"arguments\":\"{oops\"}}]}",
                                         "tool_calls")),
                     "invalid-tool-arguments");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cascade");
    TCase *t = tcase_create("cascade");
    tcase_add_test(t, checks);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
