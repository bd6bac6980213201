/* test_batch_native.c - the pure parts of forwarding a batch to a provider's
 * Batch API (batch/native.h): which deployment a batch goes to (one alias,
 * one `batch: native` deployment, malformed lines ignored), usage read from
 * a provider's answer, provider ids fit for URLs, the engine's line check
 * (engine.h), the OpenAI <-> Anthropic translations of a line, the
 * provider's URLs (OpenAI's, Anthropic's, Azure's with its api-version), and
 * the config's `batch` / `batch_discount` (Azure deployments accepted,
 * wildcard aliases refused, with file:line). */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch/engine.h"
#include "batch/native.h"
#include "config/config.h"

static char *write_tmp(const char *text)
{
    char *path = strdup("/tmp/ahorro-native-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static ah_config_t *load(const char *yaml, ah_err_t want, const char *err_has)
{
    char *path = write_tmp(yaml);
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_int_eq(ah_config_load(path, &c, err, sizeof err), want);
    if (err_has) {
        ck_assert_msg(strstr(err, err_has), "error '%s' lacks '%s'", err, err_has);
        ck_assert_msg(strstr(err, path), "error '%s' lacks the file name", err);
    }
    unlink(path);
    free(path);
    return c;
}

static const char *CFG = "model_list:\n"
                         "  - model_name: nat\n"
                         "    litellm_params: {model: openai/gpt-4o-mini, api_base: "
                         "'http://h/v1', api_key: k, batch: native, batch_discount: 0.25}\n"
                         "  - model_name: two\n"
                         "    litellm_params: {model: openai/gpt-4o-mini, api_base: "
                         "'http://h/v1', api_key: k, batch: native}\n"
                         "  - model_name: two\n"
                         "    litellm_params: {model: openai/gpt-4o, api_base: "
                         "'http://h/v1', api_key: k, batch: native}\n"
                         "  - model_name: live\n"
                         "    litellm_params: {model: openai/gpt-4o-mini, api_base: "
                         "'http://h/v1', api_key: k}\n"
                         "ahorro:\n"
                         "  batch: {poll_s: 0.5}\n";

START_TEST(config_fields)
{
    ah_config_t *c = load(CFG, AH_E_OK, NULL);
    ck_assert_int_eq(c->deps[0].batch_native, 1);
    ck_assert(c->deps[0].batch_discount == 0.25);
    ck_assert_int_eq(c->deps[3].batch_native, 0);
    ck_assert(c->deps[3].batch_discount == 0.5);
    ck_assert(c->batch.poll_s == 0.5);
    ck_assert_ptr_eq(ah_batch_native_dep(c, "nat"), &c->deps[0]);
    ck_assert_ptr_null(ah_batch_native_dep(c, "two")); /* two deployments */
    ck_assert_ptr_null(ah_batch_native_dep(c, "live"));
    ck_assert_ptr_null(ah_batch_native_dep(c, "nope"));
    ah_config_free(c);
    /* Anthropic's and Azure's Batch APIs are spoken; wildcard aliases are not */
    c = load("model_list:\n  - model_name: c\n    litellm_params: {model: "
             "anthropic/claude-3-5-haiku-latest, api_key: k, batch: native}\n",
             AH_E_OK, NULL);
    ck_assert_int_eq(c->deps[0].batch_native, 1);
    ck_assert_ptr_eq(ah_batch_native_dep(c, "c"), &c->deps[0]);
    ah_config_free(c);
    c = load("model_list:\n  - model_name: c\n    litellm_params: {model: azure/dep, api_base: "
             "'https://x.openai.azure.com/', api_key: k, api_version: '2025-01-01', "
             "batch: native}\n",
             AH_E_OK, NULL);
    ck_assert_int_eq(c->deps[0].batch_native, 1);
    ck_assert_ptr_eq(ah_batch_native_dep(c, "c"), &c->deps[0]);
    ah_config_free(c);
    load("model_list:\n  - model_name: 'az-*'\n    litellm_params: {model: 'azure/*', api_base: "
         "'https://x.openai.azure.com', api_key: k, batch: native}\n",
         AH_E_CONFIG, "without '*'");
    load("model_list:\n  - model_name: 'claude-*'\n    litellm_params: {model: "
         "'anthropic/*', api_key: k, batch: native}\n",
         AH_E_CONFIG, "without '*'");
    load("model_list:\n  - model_name: c\n    litellm_params: {model: openai/x, api_key: k, "
         "batch: sometimes}\n",
         AH_E_CONFIG, "'batch' must be");
    load("model_list:\n  - model_name: c\n    litellm_params: {model: openai/x, api_key: k, "
         "batch_discount: 0}\n",
         AH_E_CONFIG, "batch_discount");
    load("model_list:\n  - model_name: c\n    litellm_params: {model: openai/x, api_key: k, "
         "batch_discount: 1.5}\n",
         AH_E_CONFIG, "batch_discount");
}
END_TEST

#define LINE(id, model)                                                                            \
    "{\"custom_id\":\"" id "\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","              \
    "\"body\":{\"model\":\"" model "\",\"messages\":[]}}\n"

START_TEST(route)
{
    ah_config_t *c = load(CFG, AH_E_OK, NULL);
    struct {
        const char *text;
        int native;
    } cases[] = {
        {LINE("a", "nat") LINE("b", "nat"), 1},
        {LINE("a", "nat") "not json\n\n" LINE("b", "nat"), 1}, /* malformed lines ignored */
        {LINE("a", "nat") LINE("b", "live"), 0},               /* mixed */
        {LINE("a", "live"), 0},
        {LINE("a", "two"), 0},
        {"garbage\n", 0}, /* nothing well-formed */
        {"", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = write_tmp(cases[i].text);
        const ah_deployment_t *d = ah_batch_native_route(c, p);
        ck_assert_msg(cases[i].native ? d == &c->deps[0] : d == NULL, "case %zu", i);
        unlink(p);
        free(p);
    }
    ck_assert_ptr_null(ah_batch_native_route(c, "/nonexistent/file"));
    ah_config_free(c);
}
END_TEST

START_TEST(usage)
{
    ah_usage_t u;
    json_t *b = json_loads("{\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,"
                           "\"prompt_tokens_details\":{\"cached_tokens\":4},"
                           "\"completion_tokens_details\":{\"reasoning_tokens\":2}}}",
                           0, NULL);
    ck_assert_int_eq(ah_batch_native_usage(b, &u), 1);
    ck_assert_int_eq(u.input_tokens, 10);
    ck_assert_int_eq(u.output_tokens, 5);
    ck_assert_int_eq(u.cache_read_tokens, 4);
    ck_assert_int_eq(u.reasoning_tokens, 2);
    json_decref(b);
    b = json_loads("{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":1,"
                   "\"prompt_tokens_details\":{\"cached_tokens\":9}}}",
                   0, NULL);
    ck_assert_int_eq(ah_batch_native_usage(b, &u), 1);
    ck_assert_int_eq(u.input_tokens, 0);
    ck_assert_int_eq(u.cache_read_tokens, 0);
    json_decref(b);
    b = json_loads("{\"error\":{\"message\":\"x\"}}", 0, NULL);
    ck_assert_int_eq(ah_batch_native_usage(b, &u), 0);
    ck_assert_int_eq(u.input_tokens, 0);
    json_decref(b);
    ck_assert_int_eq(ah_batch_native_usage(NULL, &u), 0);
}
END_TEST

/* The gateway's own translations, both ways, for an Anthropic deployment. */
START_TEST(anthropic_translation)
{
    ah_config_t *c = load("model_list:\n  - model_name: cb\n    litellm_params: {model: "
                          "anthropic/claude-3-5-haiku-latest, api_key: k, batch: native}\n",
                          AH_E_OK, NULL);
    const ah_deployment_t *d = &c->deps[0];
    char code[64], msg[512];
    json_t *body = json_loads("{\"model\":\"cb\",\"max_tokens\":7,\"stream\":true,\"messages\":["
                              "{\"role\":\"system\",\"content\":\"be brief\"},"
                              "{\"role\":\"user\",\"content\":\"hi\"}]}",
                              0, NULL);
    json_t *p = ah_batch_native_to_anthropic(d, body, code, sizeof code, msg, sizeof msg);
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(json_string_value(json_object_get(p, "model")), "claude-3-5-haiku-latest");
    ck_assert_int_eq(json_integer_value(json_object_get(p, "max_tokens")), 7);
    ck_assert_ptr_nonnull(json_object_get(p, "system"));
    ck_assert_ptr_null(json_object_get(p, "stream"));
    ck_assert_int_eq(json_array_size(json_object_get(p, "messages")), 1);
    json_decref(p);
    json_decref(body);
    body = json_loads("{\"model\":\"cb\",\"n\":2,\"messages\":[{\"role\":\"user\","
                      "\"content\":\"hi\"}]}",
                      0, NULL);
    ck_assert_ptr_null(ah_batch_native_to_anthropic(d, body, code, sizeof code, msg, sizeof msg));
    ck_assert_msg(strstr(msg, "'n'"), "%s", msg);
    json_decref(body);

    json_t *m = json_loads(
        "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
        "\"claude-3-5-haiku-latest\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],"
        "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":6,"
        "\"cache_read_input_tokens\":4,\"cache_creation_input_tokens\":2,\"output_tokens\":3}}",
        0, NULL);
    ah_usage_t u;
    json_t *o = ah_batch_native_from_anthropic(d, m, &u);
    ck_assert_ptr_nonnull(o);
    ck_assert_str_eq(json_string_value(json_object_get(o, "object")), "chat.completion");
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(ch, "message"), "content")),
                     "hello");
    ck_assert_str_eq(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    /* ah_usage_t's convention: input counts the cache reads and writes */
    ck_assert_int_eq(u.input_tokens, 12);
    ck_assert_int_eq(u.cache_read_tokens, 4);
    ck_assert_int_eq(u.cache_write_tokens, 2);
    ck_assert_int_eq(u.output_tokens, 3);
    json_decref(o);
    json_decref(m);
    ck_assert_ptr_null(ah_batch_native_from_anthropic(d, NULL, &u));
    ah_config_free(c);
}
END_TEST

START_TEST(urls)
{
    ah_config_t *c = load("model_list:\n"
                          "  - model_name: o\n"
                          "    litellm_params: {model: openai/gpt-4o-mini, api_base: "
                          "'http://h/v1', api_key: k, batch: native}\n"
                          "  - model_name: a\n"
                          "    litellm_params: {model: anthropic/claude-3-5-haiku-latest, "
                          "api_base: 'https://api.anthropic.com/v1', api_key: k, batch: native}\n"
                          "  - model_name: z\n"
                          "    litellm_params: {model: azure/my-dep, api_base: "
                          "'https://x.openai.azure.com/', api_key: k, api_version: "
                          "'2025-01-01', batch: native}\n",
                          AH_E_OK, NULL);
    char url[512];
    ah_batch_native_url(&c->deps[0], "/batches/b1", url, sizeof url);
    ck_assert_str_eq(url, "http://h/v1/batches/b1");
    ah_batch_native_url(&c->deps[1], "/v1/messages/batches", url, sizeof url);
    ck_assert_str_eq(url, "https://api.anthropic.com/v1/messages/batches");
    ah_batch_native_url(&c->deps[2], "/files", url, sizeof url);
    ck_assert_str_eq(url, "https://x.openai.azure.com/openai/files?api-version=2025-01-01");
    ah_batch_native_url(&c->deps[2], "/batches/batch_1/cancel", url, sizeof url);
    ck_assert_str_eq(
        url, "https://x.openai.azure.com/openai/batches/batch_1/cancel?api-version=2025-01-01");
    ah_batch_native_url(&c->deps[2], "/files/file-1/content", url, sizeof url);
    ck_assert_str_eq(
        url, "https://x.openai.azure.com/openai/files/file-1/content?api-version=2025-01-01");
    /* a deployment without an api-version (the config always gives one) */
    ah_deployment_t d = c->deps[2];
    d.api_version = NULL;
    ah_batch_native_url(&d, "/batches", url, sizeof url);
    ck_assert_str_eq(
        url, "https://x.openai.azure.com/openai/batches?api-version=" AH_NATIVE_AZURE_API_VERSION);
    ah_config_free(c);
}
END_TEST

START_TEST(ids)
{
    ck_assert(ah_batch_native_id_ok("batch_abc-123.x"));
    ck_assert(ah_batch_native_id_ok("file-XYZ"));
    ck_assert(!ah_batch_native_id_ok(""));
    ck_assert(!ah_batch_native_id_ok(NULL));
    ck_assert(!ah_batch_native_id_ok("../files"));
    ck_assert(!ah_batch_native_id_ok("a/b"));
    ck_assert(!ah_batch_native_id_ok("a?b"));
    char big[AH_NATIVE_ID_MAX + 1];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    ck_assert(!ah_batch_native_id_ok(big));
}
END_TEST

START_TEST(check_line)
{
    json_t *l = NULL;
    const char *code = NULL;
    char msg[256];
    const char *good = LINE("x", "m");
    ck_assert_int_eq(ah_batch_check_line(good, strlen(good) - 1, 1, &l, &code, msg, sizeof msg),
                     AH_E_OK);
    ck_assert_str_eq(json_string_value(json_object_get(l, "custom_id")), "x");
    json_decref(l);
    struct {
        const char *text, *code;
    } bad[] = {
        {"nope", "invalid_json_line"},
        {"[1]", "invalid_json_line"},
        {"{\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\"}}", "missing_custom_id"},
        {"{\"custom_id\":\"a\",\"url\":\"/v1/x\",\"body\":{\"model\":\"m\"}}", "invalid_url"},
        {"{\"custom_id\":\"a\",\"method\":\"GET\",\"url\":\"/v1/chat/completions\"}",
         "invalid_method"},
        {"{\"custom_id\":\"a\",\"url\":\"/v1/chat/completions\",\"body\":{}}", "missing_model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        l = NULL;
        ck_assert_int_eq(
            ah_batch_check_line(bad[i].text, strlen(bad[i].text), 7, &l, &code, msg, sizeof msg),
            AH_E_PARSE);
        ck_assert_ptr_null(l);
        ck_assert_str_eq(code, bad[i].code);
        ck_assert_msg(strncmp(msg, "line 7: ", 8) == 0, "%s", msg);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch_native");
    TCase *t = tcase_create("batch_native");
    tcase_add_test(t, config_fields);
    tcase_add_test(t, route);
    tcase_add_test(t, usage);
    tcase_add_test(t, anthropic_translation);
    tcase_add_test(t, urls);
    tcase_add_test(t, ids);
    tcase_add_test(t, check_line);
    suite_add_tcase(s, t);
    return ah_check_run(s);
}
