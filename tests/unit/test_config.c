/* test_config.c - YAML configuration: LiteLLM model_list, errors with lines, routing. */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

static char path[64];

static ah_err_t load(const char *yaml, ah_config_t **c, char *err, size_t errlen)
{
    snprintf(path, sizeof path, "/tmp/ahorro-test-config-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    ah_err_t rc = ah_config_load(path, c, err, errlen);
    unlink(path);
    return rc;
}

START_TEST(litellm_model_list)
{
    setenv("TEST_KEY_VAR", "sk-from-env", 1);
    unsetenv("AHORRO_MASTER_KEY");
    ah_config_t *c;
    char err[512] = "";
    ah_err_t rc = load("model_list:\n"
                       "  - model_name: gpt-4o\n"
                       "    litellm_params:\n"
                       "      model: openai/gpt-4o\n"
                       "      api_key: os.environ/TEST_KEY_VAR\n"
                       "      rpm: 100\n"
                       "      timeout: 12.5\n"
                       "  - model_name: gpt-4o\n"
                       "    litellm_params: {model: azure/dep1, api_base: 'https://a.example/', "
                       "api_key: k}\n"
                       "  - model_name: llama\n"
                       "    litellm_params: {model: hosted_vllm/meta/llama, api_base: "
                       "'http://h:8000/v1', input_cost_per_token: 0.000001}\n"
                       "  - model_name: 'claude-*'\n"
                       "    litellm_params: {model: 'anthropic/*'}\n"
                       "  - model_name: claude-3-5-haiku\n"
                       "    litellm_params: {model: claude-3-5-haiku-latest}\n"
                       "general_settings:\n  master_key: sk-master\n"
                       "litellm_settings:\n  drop_params: true\n"
                       "ahorro:\n  listen: '[::1]:9000'\n  threads: 3\n",
                       &c, err, sizeof err);
    ck_assert_msg(rc == AH_E_OK, "%s", err);
    ck_assert_uint_eq(c->ndeps, 5);
    ck_assert_str_eq(c->deps[0].api_key, "sk-from-env");
    ck_assert_str_eq(c->deps[0].api_base, "https://api.openai.com/v1");
    ck_assert_int_eq(c->deps[0].rpm, 100);
    ck_assert(c->deps[0].timeout_s == 12.5);
    ck_assert_int_eq(c->deps[1].kind, AH_PROVIDER_AZURE);
    ck_assert_str_eq(c->deps[1].api_base, "https://a.example");
    ck_assert_ptr_nonnull(c->deps[1].api_version);
    ck_assert_str_eq(c->deps[2].model, "meta/llama");
    ck_assert_int_eq(c->deps[2].has_price, 1);
    ck_assert(c->deps[2].price.input.base == 1.0);
    ck_assert_int_eq(c->deps[4].kind, AH_PROVIDER_ANTHROPIC); /* inferred from the name */
    ck_assert_str_eq(c->master_key, "sk-master");
    ck_assert_str_eq(c->listen_host, "::1");
    ck_assert_int_eq(c->listen_port, 9000);
    ck_assert_int_eq(c->threads, 3);
    /* Routing: exact alias round-robin, wildcard, most specific first. */
    ck_assert_ptr_eq(ah_config_route(c, "gpt-4o", 0), &c->deps[0]);
    ck_assert_ptr_eq(ah_config_route(c, "gpt-4o", 1), &c->deps[1]);
    ck_assert_ptr_eq(ah_config_route(c, "claude-3-5-haiku", 0), &c->deps[4]);
    ck_assert_ptr_eq(ah_config_route(c, "claude-opus", 0), &c->deps[3]);
    ck_assert_ptr_null(ah_config_route(c, "mistral", 0));
    ah_config_free(c);
}
END_TEST

/* GPU cost per hour and throughput make one price per token (USD per million). */
START_TEST(self_hosted_gpu_price)
{
    ah_config_t *c = NULL;
    char err[512] = "";
    ck_assert_int_eq(load("model_list:\n  - model_name: a\n    litellm_params: {model: "
                          "hosted_vllm/x, api_base: 'http://h/v1', gpu_cost_per_hour: 3.6, "
                          "throughput_tokens_per_s: 500}\n",
                          &c, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(c->ndeps, 1);
    ck_assert(c->deps[0].has_price);
    double mtok = 3.6 / 3600.0 / 500.0 * 1e6; /* 2 USD per million tokens */
    ck_assert_double_eq_tol(c->deps[0].price.input.base, mtok, 1e-12);
    ck_assert_double_eq_tol(c->deps[0].price.output.base, mtok, 1e-12);
    ck_assert_double_eq_tol(c->deps[0].price.cache_read.base, mtok, 1e-12);
    ah_config_free(c);
}
END_TEST

START_TEST(errors_name_the_line)
{
    static const struct {
        const char *yaml, *expect;
    } cases[] = {
        {"model_list:\n  - model_name: a\n", ":2: model 'a' has no 'litellm_params'"},
        {"model_list:\n  - litellm_params: {model: openai/x}\n", "without 'model_name'"},
        {"model_list:\n  - model_name: a\n    litellm_params:\n      model: zzz/x\n",
         ":4: unknown provider 'zzz'"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, rpm: -1}\n",
         ":3: 'rpm' must be between"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/x}\n",
         "needs 'api_base'"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: openai/x, api_key: "
         "os.environ/SURELY_NOT_SET_VAR}\n",
         "SURELY_NOT_SET_VAR, which is not set"},
        {"model_list: {a: 1}\n", ":1: 'model_list' must be a list"},
        {"ahorro:\n  listen: nope\n", ":2: 'listen' must be HOST:PORT"},
        {"ahorro:\n  bogus: 1\n", ":2: unknown setting 'ahorro.bogus'"},
        {"a: [1, 2\n", "YAML error"},
        {"- 1\n- 2\n", ":1: the top level must be a mapping"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/x, api_base: "
         "'http://h/v1', gpu_cost_per_hour: 2}\n",
         ":3: model 'a': 'gpu_cost_per_hour' needs 'throughput_tokens_per_s'"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/x, api_base: "
         "'http://h/v1', gpu_cost_per_hour: 2, throughput_tokens_per_s: 0}\n",
         ":3: 'throughput_tokens_per_s' must be positive"},
        {"model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/x, api_base: "
         "'http://h/v1', gpu_cost_per_hour: 2, throughput_tokens_per_s: 9, "
         "output_cost_per_token: 0.001}\n",
         "not both"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ah_config_t *c = (ah_config_t *)1;
        char err[512] = "";
        ck_assert_int_eq(load(cases[i].yaml, &c, err, sizeof err), AH_E_CONFIG);
        ck_assert_ptr_null(c);
        ck_assert_msg(strstr(err, cases[i].expect) != NULL, "case %zu: '%s' lacks '%s'", i, err,
                      cases[i].expect);
        ck_assert_msg(strncmp(err, "/tmp/ahorro-test-config-", 24) == 0, "no file name: %s", err);
    }
}
END_TEST

START_TEST(environment_only)
{
    setenv("OPENAI_API_KEY", "sk-o", 1);
    setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/", 1);
    setenv("ANTHROPIC_API_KEY", "sk-a", 1);
    unsetenv("ANTHROPIC_BASE_URL");
    ah_config_t *c;
    char err[256];
    ck_assert_int_eq(ah_config_load(NULL, &c, err, sizeof err), AH_E_OK);
    ck_assert_uint_eq(c->ndeps, 2);
    const ah_deployment_t *d = ah_config_route(c, "claude-sonnet-4-5", 0);
    ck_assert_int_eq(d->kind, AH_PROVIDER_ANTHROPIC);
    d = ah_config_route(c, "gpt-4.1", 0);
    ck_assert_int_eq(d->kind, AH_PROVIDER_OPENAI);
    ck_assert_str_eq(d->api_base, "http://127.0.0.1:1/v1");
    ah_config_free(c);
    unsetenv("OPENAI_API_KEY");
    unsetenv("ANTHROPIC_API_KEY");
    unsetenv("OPENAI_BASE_URL");
}
END_TEST

START_TEST(cache_settings)
{
    ah_config_t *c;
    char err[512] = "";
    ah_err_t rc = load("litellm_settings:\n  cache: true\n  cache_params:\n"
                       "    type: redis-semantic\n    similarity_threshold: 0.8\n"
                       "    ttl: 600\n    namespace: team-a\n"
                       "ahorro:\n  cache:\n    max_entries: 1000\n    max_temperature: 0.5\n"
                       "    prompt_caching: false\n    embedder: endpoint\n"
                       "    embedder_model: text-embedding-3-small\n"
                       "    routes:\n      gpt-4o: {semantic: false, ttl: 60}\n",
                       &c, err, sizeof err);
    ck_assert_msg(rc == AH_E_OK, "%s", err);
    ck_assert_int_eq(c->cache.policy.exact, 1);
    ck_assert_int_eq(c->cache.policy.semantic, 1);
    ck_assert(c->cache.policy.threshold == 0.8);
    ck_assert(c->cache.policy.ttl_s == 600);
    ck_assert(c->cache.policy.max_temperature == 0.5);
    ck_assert_str_eq(c->cache.ns, "team-a");
    ck_assert_uint_eq(c->cache.max_entries, 1000);
    ck_assert_int_eq(c->cache.prompt_caching, 0);
    ck_assert_str_eq(c->cache.embedder, "endpoint");
    ck_assert_str_eq(c->cache.embedder_model, "text-embedding-3-small");
    const ah_cache_policy_t *p = ah_config_cache_policy(c, "gpt-4o");
    ck_assert_int_eq(p->semantic, 0);
    ck_assert_int_eq(p->exact, 1);
    ck_assert(p->ttl_s == 60);
    ck_assert(p->threshold == 0.8); /* inherited */
    ck_assert(ah_config_cache_policy(c, "other") == &c->cache.policy);
    ah_config_free(c);

    rc = load("ahorro:\n  cache:\n    exact: maybe\n", &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, ":3: 'exact' must be true or false"), "%s", err);
    rc = load("ahorro:\n  cache:\n    embedder: endpoint\n", &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, "needs 'embedder_model'"), "%s", err);
    rc = load("ahorro:\n  cache:\n    ttl_seconds: 5\n", &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, "unknown setting 'ahorro.cache.ttl_seconds'"), "%s", err);
    rc =
        load("litellm_settings:\n  cache: true\n  cache_params: {type: s3}\n", &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, "cache type 's3' is not supported"), "%s", err);
}
END_TEST

START_TEST(cache_intents)
{
    char hist[64] = "/tmp/ahorro-test-history-XXXXXX", yaml[1024];
    int fd = mkstemp(hist);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(yaml, sizeof yaml,
             "ahorro:\n  cache:\n    routes:\n"
             "      bank: {semantic: true, intents: %s, intent_confidence: 0.7}\n"
             "      bank2: {semantic: true, intents: %s, similarity_threshold: 0.5}\n"
             "      other: {semantic: true}\n",
             hist, hist);
    ah_config_t *c;
    char err[512] = "";
    ah_err_t rc = load(yaml, &c, err, sizeof err);
    ck_assert_msg(rc == AH_E_OK, "%s", err);
    /* one file named twice is trained once */
    ck_assert_uint_eq(c->cache.nintent_files, 1);
    ck_assert_str_eq(c->cache.intent_files[0], hist);
    const ah_cache_policy_t *p = ah_config_cache_policy(c, "bank");
    ck_assert_int_eq(p->intents, 1);
    ck_assert(p->intent_confidence == 0.7);
    ck_assert_int_eq(p->threshold_set, 0);
    p = ah_config_cache_policy(c, "bank2");
    ck_assert_int_eq(p->intents, 1);
    ck_assert(p->intent_confidence == 0.8); /* the default */
    ck_assert_int_eq(p->threshold_set, 1);
    ck_assert_int_eq(ah_config_cache_policy(c, "other")->intents, 0);
    ah_config_free(c);
    unlink(hist);
    rc = load(yaml, &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, ":4: cannot read the intents file"), "%s", err);
    rc = load("ahorro:\n  cache:\n    intent_confidence: 0\n", &c, err, sizeof err);
    ck_assert_int_eq(rc, AH_E_CONFIG);
    ck_assert_msg(strstr(err, "intent_confidence"), "%s", err);
}
END_TEST

START_TEST(ledger_settings)
{
    ah_config_t *c;
    char err[512] = "";
    /* The short form, and the long one with the spool's settings. */
    ck_assert_int_eq(
        load("ahorro:\n  ledger: postgres://u:pw@db.example:5432/ahorro\n", &c, err, sizeof err),
        AH_E_OK);
    ck_assert_str_eq(c->ledger.url, "postgres://u:pw@db.example:5432/ahorro");
    ck_assert_ptr_null(c->ledger.spool);
    ah_config_free(c);
    ck_assert_int_eq(load("ahorro:\n  ledger:\n    url: host=db dbname=ahorro\n"
                          "    spool: /var/spool/ahorro\n    spool_max_mb: 64\n",
                          &c, err, sizeof err),
                     AH_E_OK);
    ck_assert_str_eq(c->ledger.url, "host=db dbname=ahorro");
    ck_assert_str_eq(c->ledger.spool, "/var/spool/ahorro");
    ck_assert_int_eq(c->ledger.spool_max_mb, 64);
    ah_config_free(c);
    ck_assert_int_eq(load("ahorro:\n  ledger: sqlite\n", &c, err, sizeof err), AH_E_OK);
    ck_assert_ptr_null(c->ledger.url);
    ah_config_free(c);
    /* Mistakes name their line. */
    ck_assert_int_ne(load("ahorro:\n  ledger: mysql://db\n", &c, err, sizeof err), AH_E_OK);
    ck_assert_ptr_nonnull(strstr(err, ":2:"));
    ck_assert_ptr_nonnull(strstr(err, "PostgreSQL connection string"));
    ck_assert_int_ne(load("ahorro:\n  ledger:\n    url: postgres://x/y\n    spool_max_mb: 0\n", &c,
                          err, sizeof err),
                     AH_E_OK);
    ck_assert_ptr_nonnull(strstr(err, "spool_max_mb"));
    ck_assert_int_ne(load("ahorro:\n  ledger:\n    uri: postgres://x/y\n", &c, err, sizeof err),
                     AH_E_OK);
    ck_assert_ptr_nonnull(strstr(err, "uri"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, litellm_model_list);
    tcase_add_test(tc, errors_name_the_line);
    tcase_add_test(tc, self_hosted_gpu_price);
    tcase_add_test(tc, environment_only);
    tcase_add_test(tc, cache_settings);
    tcase_add_test(tc, cache_intents);
    tcase_add_test(tc, ledger_settings);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
