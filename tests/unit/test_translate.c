/* test_translate.c - client formats to the canonical request and back, and the
 * provider adapters' translations (no network: build and parse only). */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingress/ingress.h"
#include "core/json_skim.h"
#include "provider/provider.h"

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j)
        ck_abort_msg("bad test JSON: %s", e.text);
    return j;
}

static ah_deployment_t dep(ah_provider_kind_t kind)
{
    ah_deployment_t d = {0};
    d.alias = "m";
    d.kind = kind;
    d.model = "*";
    d.provider_name = kind == AH_PROVIDER_ANTHROPIC ? "anthropic" : "openai";
    d.api_base = kind == AH_PROVIDER_ANTHROPIC ? "https://api.anthropic.com" : "https://x/v1";
    d.api_key = "secret";
    return d;
}

START_TEST(anthropic_to_canonical)
{
    ah_request_t *r = ah_request_new(AH_API_ANTHROPIC, AH_OP_CHAT);
    json_t *b = J("{\"model\":\"claude-x\",\"max_tokens\":10,\"system\":[{\"type\":\"text\","
                  "\"text\":\"sys\"}],\"stop_sequences\":[\"END\"],\"stream\":true,"
                  "\"metadata\":{\"user_id\":\"u1\"},"
                  "\"tools\":[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}],"
                  "\"tool_choice\":{\"type\":\"any\"},"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                  "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},"
                  "{\"type\":\"tool_use\",\"id\":\"tu1\",\"name\":\"f\",\"input\":{\"a\":1}}]},"
                  "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
                  "\"tu1\",\"content\":\"42\"},{\"type\":\"image\",\"source\":{\"type\":"
                  "\"base64\",\"media_type\":\"image/png\",\"data\":\"AAA\"}}]}]}");
    ck_assert_int_eq(ah_ingress_anthropic.parse_chat(r, b), AH_E_OK);
    json_t *c = r->body;
    ck_assert_str_eq(r->model, "claude-x");
    ck_assert_int_eq(r->stream, 1);
    ck_assert_str_eq(r->user, "u1");
    json_t *m = json_object_get(c, "messages");
    ck_assert_uint_eq(json_array_size(m), 5);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "role")), "system");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(m, 0), "content")), "sys");
    json_t *asst = json_array_get(m, 2);
    json_t *tc = json_array_get(json_object_get(asst, "tool_calls"), 0);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
        "{\"a\":1}");
    json_t *tool = json_array_get(m, 3);
    ck_assert_str_eq(json_string_value(json_object_get(tool, "role")), "tool");
    ck_assert_str_eq(json_string_value(json_object_get(tool, "tool_call_id")), "tu1");
    json_t *img = json_object_get(json_array_get(m, 4), "content");
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(img, 0), "image_url"), "url")),
                     "data:image/png;base64,AAA");
    ck_assert_str_eq(json_string_value(json_object_get(c, "tool_choice")), "required");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(c, "stop"), 0)), "END");
    json_decref(b);
    ah_request_free(r);
}
END_TEST

START_TEST(anthropic_rejects)
{
    const char *bad[] = {
        "{\"model\":\"c\",\"messages\":[]}",                  /* no max_tokens */
        "{\"model\":\"c\",\"max_tokens\":0,\"messages\":[]}", /* max_tokens < 1 */
        "{\"max_tokens\":5,\"messages\":[]}",                 /* no model */
        "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":\"x\",\"content\":\"a\"}]}",
        "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":5}]}",
        "{\"model\":\"c\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}",
        "[]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ah_request_t *r = ah_request_new(AH_API_ANTHROPIC, AH_OP_CHAT);
        json_t *b = J(bad[i]);
        ck_assert_int_eq(ah_ingress_anthropic.parse_chat(r, b), AH_E_INVAL);
        ck_assert_int_eq(r->fail.status, 400);
        json_decref(b);
        ah_request_free(r);
    }
}
END_TEST

START_TEST(canonical_to_anthropic_provider)
{
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    json_t *b =
        J("{\"model\":\"gpt\",\"temperature\":1.7,\"stop\":\"S\",\"user\":\"u\","
          "\"messages\":[{\"role\":\"system\",\"content\":\"a\"},"
          "{\"role\":\"developer\",\"content\":\"b\"},"
          "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"},"
          "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://i/x.png\"}}]},"
          "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\","
          "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":2}\"}}]},"
          "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r1\"},"
          "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"r2\"}],"
          "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
          "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":{\"type\":\"function\","
          "\"function\":{\"name\":\"f\"}}}");
    ck_assert_int_eq(ah_ingress_openai.parse_chat(r, b), AH_E_OK);
    ah_deployment_t d = dep(AH_PROVIDER_ANTHROPIC);
    r->dep = &d;
    r->upstream_model = "claude-up";
    ah_provider_req_t p = {0};
    ck_assert_int_eq(ah_provider_anthropic.build(r, &d, &p), AH_E_OK);
    ck_assert_str_eq(p.url, "https://api.anthropic.com/v1/messages");
    json_t *out = J(p.body);
    ck_assert_str_eq(json_string_value(json_object_get(out, "model")), "claude-up");
    ck_assert_str_eq(json_string_value(json_object_get(out, "system")), "a\n\nb");
    ck_assert_int_eq(json_integer_value(json_object_get(out, "max_tokens")), 4096);
    ck_assert(json_real_value(json_object_get(out, "temperature")) == 1.0);
    json_t *msgs = json_object_get(out, "messages");
    ck_assert_uint_eq(json_array_size(msgs), 3); /* user, assistant, user(tool results) */
    json_t *results = json_object_get(json_array_get(msgs, 2), "content");
    ck_assert_uint_eq(json_array_size(results), 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(results, 1), "tool_use_id")),
                     "c2");
    json_t *tu = json_array_get(json_object_get(json_array_get(msgs, 1), "content"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(tu, "input"), "x")), 2);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(out, "tool_choice"), "type")), "tool");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(out, "metadata"), "user_id")), "u");
    /* The provider key is a header, never in the body. */
    ck_assert_ptr_null(strstr(p.body, "secret"));
    json_decref(out);
    ah_provider_req_free(&p);
    json_decref(b);
    ah_request_free(r);
}
END_TEST

START_TEST(anthropic_answer_to_canonical_and_back)
{
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    r->upstream_model = "claude-up";
    json_t *ans = J("{\"id\":\"msg_1\",\"model\":\"claude-up\",\"stop_reason\":\"tool_use\","
                    "\"content\":[{\"type\":\"text\",\"text\":\"hello\"},{\"type\":\"tool_use\","
                    "\"id\":\"t1\",\"name\":\"f\",\"input\":{\"k\":\"v\"}}],"
                    "\"usage\":{\"input_tokens\":10,\"output_tokens\":5,"
                    "\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":2}}");
    json_t *canon = NULL;
    char *text = json_dumps(ans, JSON_COMPACT);
    ck_assert_int_eq(ah_provider_anthropic.parse_response(r, text, strlen(text), &canon), AH_E_OK);
    free(text);
    ck_assert_int_eq(r->usage.input_tokens, 16);
    ck_assert_int_eq(r->usage.cache_read_tokens, 4);
    ck_assert_int_eq(r->usage.cache_write_tokens, 2);
    ck_assert_int_eq(r->usage.output_tokens, 5);
    json_t *choice = json_array_get(json_object_get(canon, "choices"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(choice, "finish_reason")), "tool_calls");
    json_t *msg = json_object_get(choice, "message");
    ck_assert_str_eq(json_string_value(json_object_get(msg, "content")), "hello");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(canon, "usage"), "prompt_tokens")), 16);
    /* And rendered for an Anthropic client again. */
    json_t *back = ah_ingress_anthropic.render_response(r, canon);
    ck_assert_str_eq(json_string_value(json_object_get(back, "stop_reason")), "tool_use");
    json_t *u = json_object_get(back, "usage");
    ck_assert_int_eq(json_integer_value(json_object_get(u, "input_tokens")), 10);
    ck_assert_int_eq(json_integer_value(json_object_get(u, "cache_read_input_tokens")), 4);
    json_t *tu = json_array_get(json_object_get(back, "content"), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(tu, "input"), "k")), "v");
    json_decref(back);
    json_decref(canon);
    json_decref(ans);
    ah_request_free(r);
}
END_TEST

/* Canonical chunks rendered as Anthropic events: a text block then a tool block. */
START_TEST(stream_render_anthropic)
{
    ah_request_t *r = ah_request_new(AH_API_ANTHROPIC, AH_OP_CHAT);
    r->model = "m";
    ah_stream_render_t st = {0};
    ah_buf_t out;
    ah_buf_init(&out, 1 << 20);
    const char *chunks[] = {
        "{\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}",
        "{\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":"
        "{\"name\":\"f\",\"arguments\":\"\"}}]}}]}",
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":"
        "\"{}\"}}]}}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
    };
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        json_t *c = J(chunks[i]);
        ah_ingress_anthropic.stream_chunk(&st, r, c, &out);
        json_decref(c);
    }
    r->usage.input_tokens = 7;
    r->usage.output_tokens = 3;
    ah_ingress_anthropic.stream_end(&st, r, &out);
    const char *order[] = {"message_start",       "content_block_start", "content_block_delta",
                           "content_block_delta", "content_block_stop",  "content_block_start",
                           "content_block_delta", "content_block_stop",  "message_delta",
                           "message_stop"};
    const char *p = out.data;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "event: %s\n", order[i]);
        const char *q = strstr(p, needle);
        ck_assert_msg(q != NULL, "missing %s after offset %td", order[i], p - out.data);
        p = q + 1;
    }
    ck_assert_ptr_nonnull(strstr(out.data, "\"stop_reason\":\"tool_use\""));
    ck_assert_ptr_nonnull(strstr(out.data, "\"output_tokens\":3"));
    ah_buf_free(&out);
    ah_request_free(r);
}
END_TEST

START_TEST(openai_stream_usage_hidden_unless_asked)
{
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    ah_stream_render_t st = {0};
    ah_buf_t out;
    ah_buf_init(&out, 4096);
    json_t *u = J("{\"choices\":[],\"usage\":{\"prompt_tokens\":1}}");
    ah_ingress_openai.stream_chunk(&st, r, u, &out);
    ck_assert_uint_eq(out.len, 0);
    r->client_wants_usage = 1;
    ah_ingress_openai.stream_chunk(&st, r, u, &out);
    ck_assert_ptr_nonnull(strstr(out.data, "prompt_tokens"));
    json_decref(u);
    ah_buf_free(&out);
    ah_request_free(r);
}
END_TEST

START_TEST(openai_build_asks_for_usage)
{
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    json_t *b = J("{\"model\":\"a\",\"stream\":true,\"metadata\":{\"feature\":\"x\"},"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
    ck_assert_int_eq(ah_ingress_openai.parse_chat(r, b), AH_E_OK);
    ah_deployment_t d = dep(AH_PROVIDER_OPENAI);
    r->upstream_model = "b";
    ah_provider_req_t p = {0};
    ck_assert_int_eq(ah_provider_openai.build(r, &d, &p), AH_E_OK);
    json_t *out = J(p.body);
    ck_assert(
        json_is_true(json_object_get(json_object_get(out, "stream_options"), "include_usage")));
    ck_assert_str_eq(json_string_value(json_object_get(out, "model")), "b");
    ck_assert_ptr_null(json_object_get(out, "metadata"));
    /* The client's own body is untouched. */
    ck_assert_str_eq(json_string_value(json_object_get(r->raw, "model")), "a");
    ck_assert_str_eq(p.url, "https://x/v1/chat/completions");
    json_decref(out);
    ah_provider_req_free(&p);
    json_decref(b);
    ah_request_free(r);
}
END_TEST

/* Passthrough answers are skimmed, not parsed: the same usage either way. */
START_TEST(skimmed_usage_matches_parsed)
{
    const char *openai =
        "{\"id\":\"x\",\"model\":\"gpt-4o-mini\",\"choices\":[{\"message\":"
        "{\"content\":\"the \\\"usage\\\": {} trap\"}}],\"usage\": {\"prompt_tokens\":7,"
        "\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":2}}}";
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    ck_assert_int_eq(ah_provider_openai.parse_response(r, openai, strlen(openai), NULL), AH_E_OK);
    ck_assert_int_eq(r->usage.input_tokens, 7);
    ck_assert_int_eq(r->usage.output_tokens, 3);
    ck_assert_int_eq(r->usage.cache_read_tokens, 2);
    ck_assert_str_eq(r->served_model, "gpt-4o-mini");
    ck_assert_int_eq(ah_provider_openai.parse_response(r, "[1]", 3, NULL), AH_E_PARSE);
    ck_assert_int_eq(ah_provider_openai.parse_response(r, "{\"a\":", 5, NULL), AH_E_PARSE);
    ah_request_free(r);

    r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    ah_provider_stream_t ps = {0};
    int tok, fwd;
    const char *role =
        "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}";
    ck_assert_int_eq(
        ah_provider_openai.stream_event(&ps, r, NULL, role, strlen(role), NULL, &tok, &fwd),
        AH_E_OK);
    ck_assert_int_eq(tok, 0);
    ck_assert_int_eq(fwd, 1);
    const char *word = "{\"choices\":[{\"delta\": {\"content\" : \"Hi\"}}]}";
    ah_provider_openai.stream_event(&ps, r, NULL, word, strlen(word), NULL, &tok, &fwd);
    ck_assert_int_eq(tok, 1);
    const char *usage = "{\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":9}}";
    ah_provider_openai.stream_event(&ps, r, NULL, usage, strlen(usage), NULL, &tok, &fwd);
    ck_assert_int_eq(fwd, 0); /* the client did not ask for usage */
    ck_assert_int_eq(r->usage.output_tokens, 9);
    const char *err = "{\"error\":{\"message\":\"boom\"}}";
    ck_assert_int_eq(
        ah_provider_openai.stream_event(&ps, r, NULL, err, strlen(err), NULL, &tok, &fwd),
        AH_E_UPSTREAM);
    ck_assert_int_eq(r->fail.status, 502);
    ah_request_free(r);
}
END_TEST

START_TEST(json_skim_spans)
{
    static const char *const keys[] = {"a", "b", "c", "d"};
    ah_json_span_t v[4];
    const char *j = " { \"x\" : {\"a\":1, \"s\":\"}\\\"]\"}, \"a\": [1,{\"b\":2}] "
                    ",\"b\":\"q\\\"\",\"c\":null } ";
    ck_assert_int_eq(ah_json_skim(j, strlen(j), keys, 4, v), AH_E_OK);
    ck_assert_int_eq((int)v[0].n, 11);
    ck_assert(strncmp(v[0].p, "[1,{\"b\":2}]", v[0].n) == 0);
    ck_assert(strncmp(v[1].p, "\"q\\\"\"", v[1].n) == 0);
    ck_assert(ah_json_span_is(v[2], "null"));
    ck_assert_ptr_null(v[3].p);
    ck_assert_int_eq(ah_json_skim("{}", 2, keys, 4, v), AH_E_OK);
    const char *bad[] = {"",         "[]",         "{",           "{\"a\"",
                         "{\"a\":}", "{\"a\":1,}", "{\"a\":\"x}", "{\"a\":[1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ah_json_skim(bad[i], strlen(bad[i]), keys, 4, v) == AH_E_PARSE, "%s", bad[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("translate");
    TCase *tc = tcase_create("translate");
    tcase_add_test(tc, anthropic_to_canonical);
    tcase_add_test(tc, anthropic_rejects);
    tcase_add_test(tc, canonical_to_anthropic_provider);
    tcase_add_test(tc, anthropic_answer_to_canonical_and_back);
    tcase_add_test(tc, stream_render_anthropic);
    tcase_add_test(tc, openai_stream_usage_hidden_unless_asked);
    tcase_add_test(tc, openai_build_asks_for_usage);
    tcase_add_test(tc, skimmed_usage_matches_parsed);
    tcase_add_test(tc, json_skim_spans);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
