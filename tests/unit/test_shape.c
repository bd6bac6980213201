/* test_shape.c - the shaping engine (src/shape/shape.c): context windows,
 * retrieval, repeats, output caps, and their promises: tool calls never
 * parted from their results, budgets met by the tokenizer's own count, a
 * clear error when nothing can fit.
 *
 * Needs the o200k_base rank file (scripts/build-tokenizers.sh puts it in
 * build/data, or AHORRO_TOKENIZERS_DIR); without it the tests say so and
 * pass. */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "shape/shape.h"
#include "tokenize/bpe.h"

static ah_bpe_t *enc;

static void setup(void)
{
    char err[512];
    const char *d = getenv("AHORRO_TOKENIZERS_DIR");
    if (ah_bpe_load(d && *d ? d : "build/data", "o200k_base", &enc, err, sizeof err))
        enc = NULL;
}

static void teardown(void)
{
    ah_bpe_free(enc);
    enc = NULL;
}

#define NEED_ENC()                                                                                 \
    do {                                                                                           \
        if (!enc) {                                                                                \
            fprintf(stderr, "test_shape: no o200k_base rank file (skipping)\n");                   \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static json_t *body_of(const char *s)
{
    json_error_t e;
    json_t *b = json_loads(s, 0, &e);
    ck_assert_msg(b != NULL, "bad test JSON: %s", e.text);
    return b;
}

static ah_shape_policy_t policy(void)
{
    ah_shape_policy_t p;
    ah_shape_policy_unset(&p);
    return p;
}

static const char *role_at(json_t *b, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(b, "messages"), i), "role"));
}

static const char *content_at(json_t *b, size_t i)
{
    return json_string_value(
        json_object_get(json_array_get(json_object_get(b, "messages"), i), "content"));
}

/* A conversation of n user/assistant turns after a system prompt; turn i
 * says "turn i" and some filler. */
static json_t *conversation(int n, int with_tools)
{
    json_t *msgs = json_array();
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content",
                                          "You are a careful assistant for a bank."));
    for (int i = 1; i <= n; i++) {
        char u[256], a[256];
        snprintf(u, sizeof u, "Question number %d about my savings account and its fees.", i);
        snprintf(a, sizeof a, "Answer number %d: the fee is waived above the balance.", i);
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", u));
        if (with_tools && i % 2 == 0) {
            char id[32];
            snprintf(id, sizeof id, "call_%d", i);
            json_array_append_new(msgs, json_pack("{s:s,s:n,s:[{s:s,s:s,s:{s:s,s:s}}]}", "role",
                                                  "assistant", "content", "tool_calls", "id", id,
                                                  "type", "function", "function", "name", "lookup",
                                                  "arguments", "{\"account\":1}"));
            json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id",
                                                  id, "content", "balance: 1200 EUR"));
        }
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content", a));
    }
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content",
                                          "And what about the overdraft fee?"));
    return json_pack("{s:s,s:o}", "model", "gpt-4o", "messages", msgs);
}

START_TEST(sliding_max_turns)
{
    NEED_ENC();
    json_t *b = conversation(10, 0);
    ah_shape_policy_t p = policy();
    p.strategy = AH_CTX_SLIDING;
    p.max_turns = 3;
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    json_t *msgs = json_object_get(b, "messages");
    /* system + 2 full turns (user, assistant) + the last question */
    ck_assert_int_eq(json_array_size(msgs), 1 + 4 + 1);
    ck_assert_str_eq(role_at(b, 0), "system");
    ck_assert_str_eq(role_at(b, 1), "user");
    ck_assert_ptr_nonnull(strstr(content_at(b, 1), "number 9"));
    ck_assert_str_eq(content_at(b, 5), "And what about the overdraft fee?");
    ck_assert_int_eq(res.turns_dropped, 16);
    ck_assert(res.tokens_after < res.tokens_before);
    ck_assert_ptr_nonnull(strstr(res.done, "sliding_window"));
    json_decref(b);
}
END_TEST

/* Every tool message still follows the assistant message that called it. */
static void check_tool_pairs(json_t *b)
{
    json_t *msgs = json_object_get(b, "messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        if (strcmp(role_at(b, i), "tool") != 0)
            continue;
        const char *id = json_string_value(json_object_get(m, "tool_call_id"));
        size_t k = i;
        while (k > 0 && strcmp(role_at(b, k - 1), "tool") == 0)
            k--;
        ck_assert_msg(k > 0, "tool result %s opens the conversation", id);
        json_t *calls = json_object_get(json_array_get(msgs, k - 1), "tool_calls");
        int found = 0;
        for (size_t c = 0; c < json_array_size(calls); c++)
            found |=
                strcmp(json_string_value(json_object_get(json_array_get(calls, c), "id")), id) == 0;
        ck_assert_msg(found, "tool result %s is parted from its call", id);
    }
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *calls = json_object_get(json_array_get(msgs, i), "tool_calls");
        if (json_array_size(calls))
            ck_assert_msg(i + 1 < json_array_size(msgs) && strcmp(role_at(b, i + 1), "tool") == 0,
                          "tool call at %zu lost its result", i);
    }
}

START_TEST(budget_met_exactly_and_pairs_kept)
{
    NEED_ENC();
    for (long budget = 60; budget <= 700; budget += 7) {
        for (int strategy = AH_CTX_SLIDING; strategy <= AH_CTX_BUDGET; strategy++) {
            json_t *b = conversation(12, 1);
            ah_shape_policy_t p = policy();
            p.strategy = (ah_ctx_strategy_t)strategy;
            p.max_tokens = budget;
            ah_shape_env_t env = {.enc = enc, .factor = 1};
            ah_shape_result_t res;
            char err[256] = "";
            ah_err_t rc = ah_shape_apply(b, &p, &env, &res, err, sizeof err);
            if (rc == AH_E_OK) {
                /* the tokenizer's own count of the whole body */
                ck_assert_int_eq(res.tokens_after, ah_shape_count(&env, b));
                ck_assert_msg(res.tokens_after <= budget, "budget %ld: %ld tokens", budget,
                              res.tokens_after);
                check_tool_pairs(b);
                ck_assert_str_eq(role_at(b, 0), "system");
                ck_assert_str_eq(role_at(b, 1), "user");
            } else {
                ck_assert_int_eq(rc, AH_E_INVAL);
                ck_assert_ptr_nonnull(strstr(err, "budget"));
            }
            json_decref(b);
        }
    }
}
END_TEST

/* Replay a conversation turn by turn (each request resends the whole
 * history): how often does the first kept message stay what it was, once
 * trimming has begun? That is when a provider's prompt cache can serve the
 * prefix. */
static int stable_prefixes(double trim_to, int *trimmed)
{
    int stable = 0;
    char prev[256] = "";
    *trimmed = 0;
    for (int t = 3; t <= 40; t++) {
        json_t *b = conversation(t, 0);
        ah_shape_policy_t p = policy();
        p.strategy = AH_CTX_SLIDING;
        p.max_tokens = 400;
        p.trim_to = trim_to;
        ah_shape_env_t env = {.enc = enc, .factor = 1};
        ah_shape_result_t res;
        char err[256];
        ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
        ck_assert(res.tokens_after <= 400);
        if (res.turns_dropped) {
            if (*prev && strcmp(prev, content_at(b, 1)) == 0)
                stable++;
            (*trimmed)++;
            snprintf(prev, sizeof prev, "%s", content_at(b, 1));
        }
        json_decref(b);
    }
    return stable;
}

START_TEST(trim_to_keeps_a_stable_prefix)
{
    NEED_ENC();
    int n1, n2;
    int moving = stable_prefixes(1.0, &n1);
    int steady = stable_prefixes(0.5, &n2);
    fprintf(stderr, "test_shape: prefix kept %d of %d requests (trim_to 1), %d of %d (0.5)\n",
            moving, n1, steady, n2);
    ck_assert_int_gt(n2, 20);
    ck_assert_int_ge(steady * 2, n2); /* at least half the trimmed requests */
    ck_assert_int_gt(steady, moving);
}
END_TEST

START_TEST(budget_below_system_prompt_is_an_error)
{
    NEED_ENC();
    json_t *b = conversation(3, 0);
    ah_shape_policy_t p = policy();
    p.strategy = AH_CTX_SLIDING;
    p.max_tokens = 5;
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    ah_shape_result_t res;
    char err[256] = "";
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "prompt budget of 5 tokens"));
    json_decref(b);
}
END_TEST

START_TEST(window_from_the_model)
{
    NEED_ENC();
    json_t *b = conversation(30, 0);
    json_object_set_new(b, "max_tokens", json_integer(100));
    ah_shape_policy_t p = policy();
    p.strategy = AH_CTX_SLIDING;
    ah_shape_env_t env = {.enc = enc, .factor = 1, .window = 400};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(res.budget, 300); /* window less the answer's max_tokens */
    ck_assert(res.tokens_after <= 300);
    json_decref(b);

    /* the answer's room is what the model can write: a max_tokens over its
     * output limit is lowered, and only that much is reserved */
    b = conversation(30, 0);
    json_object_set_new(b, "max_tokens", json_integer(5000));
    env.output_limit = 150;
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(res.budget, 250);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 150);
    json_decref(b);

    /* none asked: none set, and the reserve is capped by the limit */
    b = conversation(30, 0);
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(res.budget, 250);
    ck_assert_ptr_null(json_object_get(b, "max_tokens"));
    json_decref(b);

    /* a max_tokens of 0 is the provider's to refuse: left as it is */
    b = conversation(2, 0);
    json_object_set_new(b, "max_tokens", json_integer(0));
    p.strategy = AH_CTX_NONE;
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 0);
    json_decref(b);
}
END_TEST

/* A Claude request with tools: the window holds the tool-use prompt Anthropic
 * adds (tokenize/chat.h) too, so the trimmed prompt as billed fits. */
START_TEST(window_holds_claude_tool_prompt)
{
    NEED_ENC();
    json_t *b = conversation(60, 0);
    json_object_set_new(b, "max_tokens", json_integer(100));
    json_object_set_new(b, "tools",
                        json_pack("[{s:s,s:{s:s,s:s,s:{s:s,s:{s:{s:s}}}}}]", "type", "function",
                                  "function", "name", "lookup", "description", "Find an account",
                                  "parameters", "type", "object", "properties", "id", "type",
                                  "string"));
    ah_shape_policy_t p = policy();
    p.strategy = AH_CTX_SLIDING;
    ah_shape_env_t env = {.enc = enc, .factor = AH_CHAT_ANTHROPIC_FACTOR, .window = 1200};
    ck_assert_int_eq(ah_chat_model("claude-sonnet-4-20250514", &env.model), AH_E_OK);
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(res.budget, 1100);
    ck_assert_int_gt(res.turns_dropped, 0);
    /* the count as billed: the tool prompt (346) is in it, and it fits */
    ck_assert_int_eq(res.tokens_after, ah_shape_count(&env, b));
    ck_assert_int_le(res.tokens_after, 1100);
    ck_assert_int_gt(res.tokens_after, 346);
    json_decref(b);
}
END_TEST

START_TEST(token_budget_keeps_relevant_turns)
{
    NEED_ENC();
    json_t *b = body_of(
        "{\"messages\":["
        "{\"role\":\"system\",\"content\":\"You help with travel.\"},"
        "{\"role\":\"user\",\"content\":\"My passport number is X123 and it expires in 2031.\"},"
        "{\"role\":\"assistant\",\"content\":\"Noted your passport details.\"},"
        "{\"role\":\"user\",\"content\":\"What is the weather like in Lisbon in spring?\"},"
        "{\"role\":\"assistant\",\"content\":\"Mild, around 20 degrees, some rain.\"},"
        "{\"role\":\"user\",\"content\":\"Recommend a restaurant near the river.\"},"
        "{\"role\":\"assistant\",\"content\":\"Try a seafood place in Cais do Sodre.\"},"
        "{\"role\":\"user\",\"content\":\"When does my passport expire?\"}]}");
    ah_shape_policy_t p = policy();
    p.strategy = AH_CTX_BUDGET;
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    long full = ah_shape_count(&env, b);
    p.max_tokens = full - 30;
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    char *s = json_dumps(b, 0);
    ck_assert_msg(strstr(s, "X123") != NULL, "the relevant turn was dropped: %s", s);
    ck_assert_msg(strstr(s, "Lisbon") == NULL || strstr(s, "seafood") == NULL,
                  "nothing irrelevant was dropped: %s", s);
    free(s);
    json_decref(b);
}
END_TEST

START_TEST(context_field_top_k)
{
    NEED_ENC();
    json_t *b =
        body_of("{\"messages\":[{\"role\":\"system\",\"content\":\"Answer from the documents.\"},"
                "{\"role\":\"user\",\"content\":\"What is the refund window for shoes?\"}],"
                "\"context\":[\"Our stores open at nine every day.\","
                "{\"text\":\"Shoes may be returned for a refund within 60 days of purchase.\"},"
                "\"Gift cards never expire.\",\"Parking is free on Sundays.\"]}");
    ah_shape_policy_t p = policy();
    p.top_k = 1;
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_ptr_null(json_object_get(b, "context"));
    ck_assert_str_eq(role_at(b, 1), "system");
    ck_assert_ptr_nonnull(strstr(content_at(b, 1), "60 days"));
    ck_assert_ptr_null(strstr(content_at(b, 1), "Parking"));
    ck_assert_int_eq(res.chunks_dropped, 3);
    ck_assert(res.tokens_before > res.tokens_after);
    json_decref(b);

    /* without top_k every chunk is rendered */
    b = body_of(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"context\":[\"a\",\"b\"]}");
    p = policy();
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_str_eq(role_at(b, 0), "system");
    ck_assert_str_eq(content_at(b, 0), "<documents>\n<document index=\"1\">\na\n</document>\n"
                                       "<document index=\"2\">\nb\n</document>\n</documents>");
    json_decref(b);

    /* a malformed context is the client's error */
    b = body_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"context\":[1]}");
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "context[0]"));
    json_decref(b);
}
END_TEST

START_TEST(repeats_and_output)
{
    NEED_ENC();
    const char *sys = "You are a support agent for Acme. Always answer in two sentences.";
    char buf[1024];
    snprintf(buf, sizeof buf,
             "{\"messages\":[{\"role\":\"system\",\"content\":\"%s\"},"
             "{\"role\":\"user\",\"content\":\"%s\\n\\nHow do I reset my password?\"}],"
             "\"max_tokens\":5000}",
             sys, sys);
    json_t *b = body_of(buf);
    ah_shape_policy_t p = policy();
    p.cap_max_tokens = 300;
    ah_shape_preset_t preset = {.name = "factual", .temperature = 0.1, .top_p = -1};
    ah_shape_env_t env = {.enc = enc, .factor = 1, .preset = &preset};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_str_eq(content_at(b, 1), "How do I reset my password?");
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 300);
    ck_assert_double_eq_tol(json_real_value(json_object_get(b, "temperature")), 0.1, 1e-9);
    ck_assert_ptr_nonnull(strstr(res.done, "repeats"));
    ck_assert_ptr_nonnull(strstr(res.done, "max_tokens"));
    json_decref(b);

    /* a temperature the client set stays; a missing max_tokens is defaulted */
    b = body_of("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.9}");
    p = policy();
    p.default_max_tokens = 256;
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert_double_eq_tol(json_real_value(json_object_get(b, "temperature")), 0.9, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(b, "max_tokens")), 256);
    json_decref(b);
}
END_TEST

START_TEST(lossless_in_messages)
{
    NEED_ENC();
    json_t *b = body_of("{\"messages\":[{\"role\":\"user\",\"content\":["
                        "{\"type\":\"text\",\"text\":\"Data:   {\\\"a\\\": 1,\\n  \\\"b\\\": [1, "
                        "2]}\\n\\n\\n\\nWhat   is b?   \"}]}]}");
    ah_shape_policy_t p = policy();
    p.lossless = 1;
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert(res.tokens_after < res.tokens_before);
    ck_assert_ptr_nonnull(strstr(res.done, "lossless"));
    json_decref(b);
}
END_TEST

START_TEST(nothing_set_changes_nothing)
{
    NEED_ENC();
    json_t *b = conversation(5, 1), *orig = json_deep_copy(b);
    ah_shape_policy_t p = policy();
    ah_shape_env_t env = {.enc = enc, .factor = 1};
    ah_shape_result_t res;
    char err[256];
    ck_assert_int_eq(ah_shape_apply(b, &p, &env, &res, err, sizeof err), AH_E_OK);
    ck_assert(json_equal(b, orig));
    ck_assert_int_eq(res.changed, 0);
    ck_assert_int_eq(res.tokens_before, res.tokens_after);
    json_decref(b);
    json_decref(orig);
}
END_TEST

START_TEST(config_layers)
{
    static const char yaml[] = "model_list:\n"
                               "  - model_name: gpt-4o\n"
                               "    litellm_params: {model: openai/gpt-4o, api_key: k}\n"
                               "ahorro:\n"
                               "  shaping:\n"
                               "    lossless: true\n"
                               "    context: {strategy: sliding_window, max_turns: 8}\n"
                               "    presets: {terse: {temperature: 0.05}}\n"
                               "    routes:\n"
                               "      gpt-4o: {context: {max_tokens: 3000}}\n"
                               "    features:\n"
                               "      support: {output: {preset: terse, max_tokens: 300}}\n";
    char path[] = "/tmp/ahorro-shape-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, sizeof yaml - 1), (ssize_t)(sizeof yaml - 1));
    close(fd);
    ah_config_t *c = NULL;
    char err[512];
    ck_assert_msg(ah_config_load(path, &c, err, sizeof err) == AH_E_OK, "%s", err);
    ck_assert(c->shape.enabled);
    ah_shape_policy_t p = policy();
    ah_shape_policy_overlay(&p, &c->shape.policy);
    ah_shape_policy_overlay(&p, &c->shape.routes[0].policy);
    ah_shape_policy_overlay(&p, &c->shape.features[0].policy);
    ck_assert_int_eq(p.strategy, AH_CTX_SLIDING);
    ck_assert_int_eq(p.max_turns, 8);
    ck_assert_int_eq(p.max_tokens, 3000);
    ck_assert_int_eq(p.lossless, 1);
    ck_assert_int_eq(p.cap_max_tokens, 300);
    ck_assert_str_eq(p.preset, "terse");
    ck_assert_ptr_nonnull(ah_shape_preset_find(&c->shape, "factual"));
    ah_config_free(c);

    /* an unknown strategy or preset stops the start, with the line */
    static const char bad[] = "ahorro:\n  shaping:\n    context: {strategy: summarize_all}\n";
    FILE *f = fopen(path, "w");
    fputs(bad, f);
    fclose(f);
    ck_assert_int_eq(ah_config_load(path, &c, err, sizeof err), AH_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "unknown context strategy"));
    ck_assert_ptr_nonnull(strstr(err, ":3:"));
    static const char bad2[] = "ahorro:\n  shaping:\n    output: {preset: nope}\n";
    f = fopen(path, "w");
    fputs(bad2, f);
    fclose(f);
    ck_assert_int_eq(ah_config_load(path, &c, err, sizeof err), AH_E_CONFIG);
    ck_assert_ptr_nonnull(strstr(err, "unknown sampling preset 'nope'"));
    unlink(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("shape");
    TCase *t = tcase_create("shape");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 60);
    tcase_add_test(t, sliding_max_turns);
    tcase_add_test(t, budget_met_exactly_and_pairs_kept);
    tcase_add_test(t, trim_to_keeps_a_stable_prefix);
    tcase_add_test(t, budget_below_system_prompt_is_an_error);
    tcase_add_test(t, window_from_the_model);
    tcase_add_test(t, window_holds_claude_tool_prompt);
    tcase_add_test(t, token_budget_keeps_relevant_turns);
    tcase_add_test(t, context_field_top_k);
    tcase_add_test(t, repeats_and_output);
    tcase_add_test(t, lossless_in_messages);
    tcase_add_test(t, nothing_set_changes_nothing);
    tcase_add_test(t, config_layers);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
