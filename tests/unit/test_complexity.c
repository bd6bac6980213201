/* test_complexity.c - the complexity and criticality scorer (src/route/complexity.c):
 * ordering of obvious cases, explanations, criticality from tags and text, bounds,
 * and bodies of every wrong shape. */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "route/complexity.h"

#define BIG_TEXT (1u << 20)
#define FUZZ_ROUNDS 2000
#define FUZZ_MAX_LEN 512

static const char *const hard =
    "Write a Python function that computes the integral of x^2 + 3*x from 0 to 5.\n"
    "First derive it step by step, then implement it, and finally explain why it works.\n"
    "1. derive the antiderivative\n2. implement `integrate(f, a, b)`\n3. test it\n"
    "```python\ndef f(x):\n    return x**2 + 3*x\n```\n";

static ah_cx_t text(const char *s)
{
    ah_cx_t cx;
    ah_cx_score_text(s, strlen(s), &cx);
    return cx;
}

static int names(const ah_cx_t *cx, const char *name)
{
    for (int i = 0; i < cx->ntop; i++)
        if (strcmp(cx->top[i], name) == 0)
            return 1;
    return 0;
}

static void check_bounds(const ah_cx_t *cx)
{
    ck_assert(cx->score >= 0 && cx->score <= 1);
    ck_assert(cx->criticality >= 0 && cx->criticality <= 1);
    ck_assert(cx->ntop >= 0 && cx->ntop <= AH_CX_TOP);
    for (int i = 0; i < cx->ntop; i++)
        ck_assert_ptr_nonnull(cx->top[i]);
    for (int i = 0; i < AH_CX_NSIGNALS; i++)
        ck_assert(cx->signal[i] >= 0);
}

START_TEST(hard_prompt_scores_above_greeting)
{
    ah_cx_t hi = text("hi"), h = text(hard), mid = text("Why is the sky blue? Explain.");
    check_bounds(&hi);
    check_bounds(&h);
    ck_assert(hi.score < 0.05);
    ck_assert_int_eq(hi.ntop, 0);
    ck_assert(h.score > 0.8);
    ck_assert(mid.score > hi.score && mid.score < h.score);
    ck_assert_msg(names(&h, "code") && names(&h, "math") && names(&h, "multi-step"),
                  "top: %s %s %s", h.top[0], h.top[1], h.top[2]);
    ck_assert(names(&mid, "reasoning"));
    ck_assert_double_eq(hi.criticality, 0);
}
END_TEST

START_TEST(top_is_ordered_and_named)
{
    ah_cx_t h = text(hard);
    ck_assert_int_eq(h.ntop, AH_CX_TOP);
    double prev = 2;
    for (int i = 0; i < h.ntop; i++) {
        int idx = -1;
        for (int j = 0; j < AH_CX_NSIGNALS; j++)
            if (strcmp(ah_cx_signal_names[j], h.top[i]) == 0)
                idx = j;
        ck_assert_int_ge(idx, 0);
        ck_assert(h.signal[idx] <= prev);
        ck_assert(h.signal[idx] >= AH_CX_TOP_MIN);
        prev = h.signal[idx];
    }
    for (int i = h.ntop; i < AH_CX_TOP; i++)
        ck_assert_ptr_null(h.top[i]);
}
END_TEST

/* Appending text only adds counts: the score never falls. */
START_TEST(appending_never_lowers_the_score)
{
    static const char *const parts[] = {
        "Compare the two designs. ",       "Then explain the tradeoffs. ",
        "Solve 3x + 4 = 19 for x. ",       "```c\nint main(void) { return 0; }\n```\n",
        "- first point\n- second point\n", "You must answer in JSON format exactly. "};
    char buf[2048] = "";
    double prev = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof buf - l, "%s", parts[i]);
        ah_cx_t cx = text(buf);
        check_bounds(&cx);
        ck_assert_msg(cx.score >= prev, "step %zu: %f < %f", i, cx.score, prev);
        prev = cx.score;
    }
}
END_TEST

static json_t *body_of(const char *user)
{
    return json_pack("{s:s, s:[{s:s, s:s}]}", "model", "auto", "messages", "role", "user",
                     "content", user);
}

START_TEST(tags_raise_criticality)
{
    json_t *b = body_of("Where is my parcel?");
    ah_cx_t none, c, legal, expl, med, ignored;
    ah_cx_score(b, NULL, &none);
    json_t *t = json_pack("{s:s}", "feature", "customer-complaints");
    ah_cx_score(b, t, &c);
    json_decref(t);
    t = json_pack("{s:s, s:s}", "team", "search", "department", "Legal");
    ah_cx_score(b, t, &legal);
    json_decref(t);
    t = json_pack("{s:s}", "criticality", "high");
    ah_cx_score(b, t, &expl);
    json_decref(t);
    t = json_pack("{s:s}", "use_case", "medical");
    ah_cx_score(b, t, &med);
    json_decref(t);
    t = json_pack("{s:i, s:s, s:n}", "feature", 3, "env", "dev", "x", "y");
    ah_cx_score(b, t, &ignored);
    json_decref(t);
    ck_assert_double_eq(none.criticality, 0);
    ck_assert_ptr_null(none.critical_cue);
    ck_assert(c.criticality >= 0.9);
    ck_assert_str_eq(c.critical_cue, "complaint");
    ck_assert(legal.criticality >= 0.9);
    ck_assert_str_eq(legal.critical_cue, "legal");
    ck_assert_double_eq(expl.criticality, 1.0);
    ck_assert_str_eq(expl.critical_cue, "tag:criticality");
    ck_assert_str_eq(med.critical_cue, "medical");
    ck_assert_double_eq(ignored.criticality, 0);
    /* Tags change criticality, not the score. */
    ck_assert_double_eq(none.score, c.score);
    json_decref(b);
}
END_TEST

START_TEST(text_cues_raise_criticality)
{
    ah_cx_t plain = text("Can you recommend a good book?");
    ah_cx_t cue = text("My attorney says this is a breach of contract and we will file a lawsuit.");
    ah_cx_t gdpr = text("Is this GDPR compliance audit enough for the regulator?");
    ck_assert_double_eq(plain.criticality, 0);
    ck_assert(cue.criticality > 0.3 && cue.criticality <= 0.8);
    ck_assert_str_eq(cue.critical_cue, "legal");
    ck_assert(gdpr.criticality > 0.3);
    ck_assert_str_eq(gdpr.critical_cue, "compliance");
}
END_TEST

START_TEST(conversation_and_tools_count)
{
    json_t *one = body_of("Book a table for two tonight.");
    json_t *deep = json_pack(
        "{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}]}", "messages",
        "role", "system", "content", "You are a very long system prompt.", "role", "user",
        "content", "Book a table for two tonight.", "role", "assistant", "content", "Where?",
        "role", "user", "content", "Downtown.", "role", "assistant", "content", "Which time?",
        "role", "user", "content", "8pm.", "role", "assistant", "content", "Done?");
    json_t *tools = json_pack("{s:[{s:s,s:s}], s:[{s:s},{s:s},{s:s}]}", "messages", "role", "user",
                              "content", "Book a table for two tonight.", "tools", "type",
                              "function", "type", "function", "type", "function");
    ah_cx_t a, b, c;
    ah_cx_score(one, NULL, &a);
    ah_cx_score(deep, NULL, &b);
    ah_cx_score(tools, NULL, &c);
    ck_assert(b.score > a.score);
    ck_assert(names(&b, "conversation"));
    ck_assert(c.score > a.score);
    ck_assert(names(&c, "tools"));
    /* The system prompt is not scanned: only user text counts as characters. */
    ck_assert(b.chars < 60);
    json_decref(one);
    json_decref(deep);
    json_decref(tools);
}
END_TEST

START_TEST(content_parts_are_scanned)
{
    json_t *parts =
        json_pack("{s:[{s:s, s:[{s:s, s:s}, {s:s, s:{s:s}}, {s:s, s:s}]}]}", "messages", "role",
                  "user", "content", "type", "text", "text", hard, "type", "image_url", "image_url",
                  "url", "http://x/y.png", "type", "text", "text", "thanks");
    ah_cx_t cx, t = text(hard);
    ah_cx_score(parts, NULL, &cx);
    ck_assert(cx.score >= t.score);
    json_decref(parts);
}
END_TEST

START_TEST(bad_bodies_do_not_fail)
{
    const char *const bodies[] = {
        "{}",
        "[]",
        "null",
        "{\"messages\": 3}",
        "{\"messages\": [1, null, \"x\"]}",
        "{\"messages\": [{\"role\": 3, \"content\": \"x\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": 42}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": [1, {\"text\": 2}, null]}]}",
        "{\"messages\": [{\"role\": \"assistant\", \"tool_calls\": {}}], \"tools\": 5}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        json_t *b = json_loads(bodies[i], JSON_DECODE_ANY, NULL);
        ah_cx_t cx;
        ah_cx_score(b, b, &cx); /* the body as tags, too: a non-tag shape */
        check_bounds(&cx);
        ck_assert(cx.score < 0.2);
        json_decref(b);
    }
    ah_cx_t cx;
    ah_cx_score(NULL, NULL, &cx);
    check_bounds(&cx);
    ah_cx_score_text(NULL, 0, &cx);
    check_bounds(&cx);
    ck_assert_double_eq(cx.score, 0);
}
END_TEST

START_TEST(bounds_on_random_and_huge_input)
{
    uint32_t x = 12345;
    unsigned char buf[FUZZ_MAX_LEN];
    for (int r = 0; r < FUZZ_ROUNDS; r++) {
        size_t n = (x = x * 1664525u + 1013904223u) % FUZZ_MAX_LEN;
        for (size_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            buf[i] = (unsigned char)(x >> 24);
        }
        ah_cx_t cx;
        ah_cx_score_text((const char *)buf, n, &cx);
        check_bounds(&cx);
    }
    /* 1 MiB of code-ish text: scanned up to AH_CX_MAX_SCAN, bounded. */
    char *big = ah_malloc(BIG_TEXT);
    for (size_t i = 0; i < BIG_TEXT; i++)
        big[i] = "x = 1; { return f(x) == 2; }\n"[i % 29];
    ah_cx_t cx;
    ah_cx_score_text(big, BIG_TEXT, &cx);
    check_bounds(&cx);
    ck_assert(cx.score > 0.5 && cx.score < 1);
    ck_assert(cx.chars <= AH_CX_MAX_SCAN);
    ah_free(big);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("complexity");
    TCase *tc = tcase_create("complexity");
    tcase_add_test(tc, hard_prompt_scores_above_greeting);
    tcase_add_test(tc, top_is_ordered_and_named);
    tcase_add_test(tc, appending_never_lowers_the_score);
    tcase_add_test(tc, tags_raise_criticality);
    tcase_add_test(tc, text_cues_raise_criticality);
    tcase_add_test(tc, conversation_and_tools_count);
    tcase_add_test(tc, content_parts_are_scanned);
    tcase_add_test(tc, bad_bodies_do_not_fail);
    tcase_add_test(tc, bounds_on_random_and_huge_input);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
