/* config.c - load the YAML configuration with libyaml's document API.
 *
 * Every node carries its line, so each error names the file, the line and
 * what is wrong. Unknown keys inside `ahorro:` are errors (a typo must not be
 * silently ignored); unknown LiteLLM keys are accepted, since LiteLLM configs
 * carry many settings ahorro has no use for. */
#include "config/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>
#include <yaml.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "state/state.h"

typedef struct loader {
    yaml_document_t doc;
    const char *path;
    char *err;
    size_t errlen;
} loader_t;

static ah_err_t fail(loader_t *L, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ah_err_t fail(loader_t *L, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        snprintf(L->err, L->errlen, "%s:%lu: %s", L->path ? L->path : "(config)",
                 (unsigned long)n->start_mark.line + 1, msg);
    else
        snprintf(L->err, L->errlen, "%s: %s", L->path ? L->path : "(config)", msg);
    return AH_E_CONFIG;
}

/* An error at a line known after the document is gone: "file:line: msg". */
static ah_err_t fail_line(loader_t *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ah_err_t fail_line(loader_t *L, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(L->err, L->errlen, "%s:%d: %s", L->path ? L->path : "(config)", line, msg);
    return AH_E_CONFIG;
}

static yaml_node_t *node(loader_t *L, int id)
{
    return yaml_document_get_node(&L->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Value of `key` in mapping m, or NULL. */
static yaml_node_t *get(loader_t *L, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(L, p->key));
        if (k && strcmp(k, key) == 0)
            return node(L, p->value);
    }
    return NULL;
}

/* A string setting; `os.environ/VAR` reads the environment (LiteLLM's form).
 * *out is replaced by an owned copy; a missing key leaves it unchanged. */
static ah_err_t get_string(loader_t *L, yaml_node_t *m, const char *key, char **out)
{
    yaml_node_t *n = get(L, m, key);
    if (!n)
        return AH_E_OK;
    const char *v = scalar(n);
    if (!v)
        return fail(L, n, "'%s' must be a string", key);
    if (strncmp(v, "os.environ/", 11) == 0) {
        const char *env = getenv(v + 11);
        if (!env || !*env)
            return fail(L, n, "'%s' names environment variable %s, which is not set", key, v + 11);
        v = env;
    }
    ah_free(*out);
    *out = ah_strdup(v);
    return AH_E_OK;
}

static ah_err_t get_number(loader_t *L, yaml_node_t *m, const char *key, double lo, double hi,
                           double *out)
{
    yaml_node_t *n = get(L, m, key);
    if (!n)
        return AH_E_OK;
    const char *v = scalar(n);
    char *end = NULL;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !*v || errno || *end || !isfinite(d))
        return fail(L, n, "'%s' must be a number", key);
    if (d < lo || d > hi)
        return fail(L, n, "'%s' must be between %g and %g", key, lo, hi);
    *out = d;
    return AH_E_OK;
}

ah_err_t ah_config_provider_kind(const char *prefix, ah_provider_kind_t *kind)
{
    /* LiteLLM provider prefixes of servers that speak OpenAI's chat API. */
    static const char *const openai_like[] = {"openai",        "text-completion-openai",
                                              "hosted_vllm",   "vllm",
                                              "ollama",        "ollama_chat",
                                              "llamacpp",      "llama.cpp",
                                              "huggingface",   "tgi",
                                              "lm_studio",     "openrouter",
                                              "groq",          "together_ai",
                                              "deepseek",      "mistral",
                                              "fireworks_ai",  "xai",
                                              "cerebras",      "perplexity",
                                              "deepinfra",     "anyscale",
                                              "custom_openai", "openai_compatible",
                                              "fake",          NULL};
    if (strcmp(prefix, "anthropic") == 0) {
        *kind = AH_PROVIDER_ANTHROPIC;
        return AH_E_OK;
    }
    if (strcmp(prefix, "azure") == 0) {
        *kind = AH_PROVIDER_AZURE;
        return AH_E_OK;
    }
    for (int i = 0; openai_like[i]; i++)
        if (strcmp(prefix, openai_like[i]) == 0) {
            *kind = AH_PROVIDER_OPENAI;
            return AH_E_OK;
        }
    return AH_E_NOTFOUND;
}

/* Default API base of a provider prefix, or NULL when it has none (a
 * self-hosted server must name its api_base). */
static const char *default_base(const char *provider)
{
    if (strcmp(provider, "openai") == 0)
        return "https://api.openai.com/v1";
    if (strcmp(provider, "anthropic") == 0)
        return "https://api.anthropic.com";
    if (strcmp(provider, "groq") == 0)
        return "https://api.groq.com/openai/v1";
    if (strcmp(provider, "openrouter") == 0)
        return "https://openrouter.ai/api/v1";
    if (strcmp(provider, "together_ai") == 0)
        return "https://api.together.xyz/v1";
    if (strcmp(provider, "deepseek") == 0)
        return "https://api.deepseek.com/v1";
    if (strcmp(provider, "mistral") == 0)
        return "https://api.mistral.ai/v1";
    if (strcmp(provider, "fireworks_ai") == 0)
        return "https://api.fireworks.ai/inference/v1";
    if (strcmp(provider, "xai") == 0)
        return "https://api.x.ai/v1";
    if (strcmp(provider, "ollama") == 0 || strcmp(provider, "ollama_chat") == 0)
        return "http://localhost:11434/v1";
    return NULL;
}

static const char *default_key_env(ah_provider_kind_t kind)
{
    switch (kind) {
    case AH_PROVIDER_ANTHROPIC:
        return "ANTHROPIC_API_KEY";
    case AH_PROVIDER_AZURE:
        return "AZURE_API_KEY";
    default:
        return "OPENAI_API_KEY";
    }
}

/* The provider a bare model name belongs to, as LiteLLM infers it. */
static const char *infer_provider(const char *model)
{
    if (strncmp(model, "claude", 6) == 0)
        return "anthropic";
    return "openai";
}

static void strip_slash(char *s)
{
    size_t n = s ? strlen(s) : 0;
    while (n > 0 && s[n - 1] == '/')
        s[--n] = '\0';
}

static void deployment_free(ah_deployment_t *d)
{
    ah_free(d->alias);
    ah_free(d->provider_name);
    ah_free(d->model);
    ah_free(d->api_base);
    ah_free(d->api_key);
    ah_free(d->api_version);
}

static void price_unknown(ah_price_t *p)
{
    memset(p, 0, sizeof *p);
    p->input.base = p->output.base = p->cache_read.base = p->cache_write.base = -1;
}

/* Self-hosted cost: a server that costs gpu_cost_per_hour USD and makes
 * throughput_tokens_per_s tokens a second (measured, all concurrent requests
 * together) costs gpu_cost_per_hour / 3600 / throughput_tokens_per_s USD a
 * token, input and output alike, cache reads included (docs/pricing.md).
 * Both or neither; not with the per-token costs (has_token_costs). */
static ah_err_t load_gpu_price(loader_t *L, yaml_node_t *lp, ah_deployment_t *d,
                               int has_token_costs)
{
    ah_err_t rc;
    yaml_node_t *gnode = get(L, lp, "gpu_cost_per_hour");
    yaml_node_t *tnode = get(L, lp, "throughput_tokens_per_s");
    if (!gnode && !tnode)
        return AH_E_OK;
    double gpu = 0, tps = 0;
    if ((rc = get_number(L, lp, "gpu_cost_per_hour", 0, AH_MAX_GPU_COST_PER_HOUR, &gpu)) ||
        (rc =
             get_number(L, lp, "throughput_tokens_per_s", 0, AH_MAX_THROUGHPUT_TOKENS_PER_S, &tps)))
        return rc;
    if (gnode && gpu <= 0)
        return fail(L, gnode, "'gpu_cost_per_hour' must be positive (USD per hour)");
    if (tnode && tps <= 0)
        return fail(L, tnode, "'throughput_tokens_per_s' must be positive (tokens per second)");
    if (!tnode)
        return fail(L, gnode,
                    "model '%s': 'gpu_cost_per_hour' needs 'throughput_tokens_per_s' (the "
                    "server's measured tokens per second)",
                    d->alias);
    if (!gnode)
        return fail(L, tnode,
                    "model '%s': 'throughput_tokens_per_s' needs 'gpu_cost_per_hour' (USD)",
                    d->alias);
    if (has_token_costs)
        return fail(L, gnode,
                    "model '%s': set either 'gpu_cost_per_hour' with 'throughput_tokens_per_s' "
                    "or the per-token costs (input_cost_per_token, ...), not both",
                    d->alias);
    /* USD per million tokens, the catalogue's unit. */
    double mtok = gpu / 3600.0 / tps * 1e6;
    d->has_price = 1;
    d->price.input.base = mtok;
    d->price.output.base = mtok;
    d->price.cache_read.base = mtok;
    d->price.cache_write.base = mtok;
    return AH_E_OK;
}

/* `batch: live|native` and `batch_discount` (docs/batch.md "Provider batch
 * APIs"). OpenAI's /files + /batches shape (Azure OpenAI's too, under its
 * /openai/ paths) and Anthropic's Message Batches API are spoken. */
static ah_err_t load_dep_batch(loader_t *L, yaml_node_t *lp, ah_deployment_t *d)
{
    ah_err_t rc;
    char *mode = NULL;
    d->batch_discount = AH_BATCH_DEFAULT_DISCOUNT;
    if ((rc = get_number(L, lp, "batch_discount", 1e-9, 1, &d->batch_discount)))
        return rc;
    if ((rc = get_string(L, lp, "batch", &mode)))
        return rc;
    yaml_node_t *n = get(L, lp, "batch");
    if (mode && strcmp(mode, "native") == 0)
        d->batch_native = 1;
    else if (mode && strcmp(mode, "live") != 0)
        rc = fail(L, n, "'batch' must be 'live' or 'native', not '%s'", mode);
    ah_free(mode);
    if (rc)
        return rc;
    if (d->batch_native && strchr(d->alias, '*'))
        return fail(L, n, "model '%s': 'batch: native' needs an alias without '*'", d->alias);
    return AH_E_OK;
}

static ah_err_t load_deployment(loader_t *L, yaml_node_t *item, ah_deployment_t *d)
{
    ah_err_t rc;
    memset(d, 0, sizeof *d);
    d->line = (int)item->start_mark.line + 1;
    d->timeout_s = AH_UPSTREAM_TIMEOUT_S;
    d->stream_idle_timeout_s = AH_STREAM_IDLE_TIMEOUT_S;
    price_unknown(&d->price);
    if (item->type != YAML_MAPPING_NODE)
        return fail(L, item, "each model_list entry must be a mapping");
    if ((rc = get_string(L, item, "model_name", &d->alias)))
        return rc;
    if (!d->alias || !*d->alias)
        return fail(L, item, "model_list entry without 'model_name'");
    if (strlen(d->alias) > AH_MAX_MODEL_NAME)
        return fail(L, item, "'model_name' is longer than %d bytes", AH_MAX_MODEL_NAME);
    yaml_node_t *lp = get(L, item, "litellm_params");
    if (!lp)
        return fail(L, item, "model '%s' has no 'litellm_params'", d->alias);
    if (lp->type != YAML_MAPPING_NODE)
        return fail(L, lp, "'litellm_params' must be a mapping");
    char *full = NULL;
    if ((rc = get_string(L, lp, "model", &full)))
        return rc;
    if (!full || !*full) {
        ah_free(full);
        return fail(L, lp, "model '%s' has no 'litellm_params.model'", d->alias);
    }
    const char *slash = strchr(full, '/');
    if (slash) {
        d->provider_name = ah_strndup(full, (size_t)(slash - full));
        d->model = ah_strdup(slash + 1);
    } else {
        d->provider_name = ah_strdup(infer_provider(full));
        d->model = ah_strdup(full);
    }
    ah_free(full);
    yaml_node_t *mnode = get(L, lp, "model");
    if (ah_config_provider_kind(d->provider_name, &d->kind))
        return fail(L, mnode,
                    "unknown provider '%s' in '%s/%s' (known: openai, azure, anthropic, "
                    "and OpenAI-compatible servers such as hosted_vllm, ollama, llamacpp)",
                    d->provider_name, d->provider_name, d->model);
    if (!*d->model)
        return fail(L, mnode, "empty model name after '%s/'", d->provider_name);
    if ((rc = get_string(L, lp, "api_base", &d->api_base)) ||
        (rc = get_string(L, lp, "api_key", &d->api_key)) ||
        (rc = get_string(L, lp, "api_version", &d->api_version)))
        return rc;
    double v;
    v = d->timeout_s;
    if ((rc = get_number(L, lp, "timeout", 0.001, 86400, &v)))
        return rc;
    d->timeout_s = v;
    v = d->stream_idle_timeout_s;
    if ((rc = get_number(L, lp, "stream_timeout", 0.001, 86400, &v)))
        return rc;
    d->stream_idle_timeout_s = v;
    v = 0;
    if ((rc = get_number(L, lp, "rpm", 0, 1e12, &v)))
        return rc;
    d->rpm = (long)v;
    v = 0;
    if ((rc = get_number(L, lp, "tpm", 0, 1e15, &v)))
        return rc;
    d->tpm = (long)v;
    d->weight = 1;
    if ((rc = get_number(L, lp, "weight", 1e-6, 1e6, &d->weight)))
        return rc;
    v = 0;
    yaml_node_t *mi = get(L, item, "model_info");
    if ((rc = get_number(L, lp, "max_input_tokens", 0, 1e9, &v)) ||
        (mi && (rc = get_number(L, mi, "max_input_tokens", 0, 1e9, &v))))
        return rc;
    d->context_window = (long)v;
    v = 0;
    if ((rc = get_number(L, lp, "max_output_tokens", 0, 1e9, &v)) ||
        (mi && (rc = get_number(L, mi, "max_output_tokens", 0, 1e9, &v))))
        return rc;
    d->max_output_tokens = (long)v;
    /* LiteLLM's cost overrides are per token; the catalogue is per million. */
    double in = -1, out = -1, cread = -1, cwrite = -1;
    if ((rc = get_number(L, lp, "input_cost_per_token", 0, 1, &in)) ||
        (rc = get_number(L, lp, "output_cost_per_token", 0, 1, &out)) ||
        (rc = get_number(L, lp, "cache_read_input_token_cost", 0, 1, &cread)) ||
        (rc = get_number(L, lp, "cache_creation_input_token_cost", 0, 1, &cwrite)))
        return rc;
    if (in >= 0 || out >= 0) {
        d->has_price = 1;
        d->price.input.base = in >= 0 ? in * 1e6 : 0;
        d->price.output.base = out >= 0 ? out * 1e6 : 0;
        d->price.cache_read.base = cread >= 0 ? cread * 1e6 : -1;
        d->price.cache_write.base = cwrite >= 0 ? cwrite * 1e6 : -1;
    }
    if ((rc = load_gpu_price(L, lp, d, in >= 0 || out >= 0 || cread >= 0 || cwrite >= 0)))
        return rc;
    if ((rc = load_dep_batch(L, lp, d)))
        return rc;
    if (!d->api_base) {
        const char *base = default_base(d->provider_name);
        if (d->kind == AH_PROVIDER_AZURE)
            return fail(L, lp, "azure model '%s' needs 'api_base'", d->alias);
        if (!base)
            return fail(L, lp, "model '%s' (%s) needs 'api_base'", d->alias, d->provider_name);
        d->api_base = ah_strdup(base);
    }
    strip_slash(d->api_base);
    if (strncmp(d->api_base, "http://", 7) != 0 && strncmp(d->api_base, "https://", 8) != 0)
        return fail(L, get(L, lp, "api_base"), "'api_base' must start with http:// or https://");
    if (!d->api_key) {
        const char *env = getenv(default_key_env(d->kind));
        if (env && *env)
            d->api_key = ah_strdup(env);
    }
    if (d->kind == AH_PROVIDER_AZURE && !d->api_version) {
        const char *env = getenv("AZURE_API_VERSION");
        d->api_version = ah_strdup(env && *env ? env : "2024-10-21");
    }
    return AH_E_OK;
}

static void add_dep(ah_config_t *c, const ah_deployment_t *d)
{
    c->deps = ah_realloc(c->deps, (c->ndeps + 1) * sizeof *c->deps);
    c->deps[c->ndeps++] = *d;
}

static ah_err_t parse_listen(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return AH_E_INVAL;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 0 || p > 65535 || end == colon + 1)
        return AH_E_INVAL;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    ah_free(*host);
    *host = ah_strndup(h, hl);
    *port = (int)p;
    return AH_E_OK;
}

/* A boolean setting: true/false, yes/no, on/off. */
static ah_err_t get_bool(loader_t *L, yaml_node_t *m, const char *key, int *out)
{
    yaml_node_t *n = get(L, m, key);
    if (!n)
        return AH_E_OK;
    const char *v = scalar(n);
    if (v && (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")))
        *out = 1;
    else if (v && (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")))
        *out = 0;
    else
        return fail(L, n, "'%s' must be true or false", key);
    return AH_E_OK;
}

/* Every key of mapping m must be one of known (NULL-terminated). */
static ah_err_t check_keys(loader_t *L, yaml_node_t *m, const char *what, const char *const *known)
{
    if (m->type != YAML_MAPPING_NODE)
        return fail(L, m, "'%s' must be a mapping", what);
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(L, p->key));
        int ok = 0;
        for (int i = 0; k && known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok) {
            char list[256] = "";
            for (int i = 0; known[i]; i++) {
                size_t n = strlen(list);
                snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", known[i]);
            }
            return fail(L, node(L, p->key), "unknown setting '%s.%s' (known: %s)", what,
                        k ? k : "?", list);
        }
    }
    return AH_E_OK;
}

static ah_err_t load_policy(loader_t *L, yaml_node_t *m, ah_cache_config_t *cc,
                            ah_cache_policy_t *p)
{
    ah_err_t rc;
    char *intents = NULL;
    if ((rc = get_bool(L, m, "exact", &p->exact)) ||
        (rc = get_bool(L, m, "semantic", &p->semantic)) ||
        (rc = get_number(L, m, "ttl", 1, 365 * 86400.0, &p->ttl_s)) ||
        (rc = get_number(L, m, "max_temperature", 0, 2, &p->max_temperature)) ||
        (rc = get_number(L, m, "similarity_threshold", 0, 1, &p->threshold)) ||
        (rc = get_number(L, m, "intent_confidence", 0.01, 1, &p->intent_confidence)) ||
        (rc = get_string(L, m, "intents", &intents)))
        return rc;
    if (get(L, m, "similarity_threshold"))
        p->threshold_set = 1;
    if (!intents)
        return AH_E_OK;
    /* a labelled history (text,label CSV) trained at start (cache/setup.c) */
    if (access(intents, R_OK) != 0) {
        rc = fail(L, get(L, m, "intents"), "cannot read the intents file '%s'", intents);
        ah_free(intents);
        return rc;
    }
    size_t i = 0;
    while (i < cc->nintent_files && strcmp(cc->intent_files[i], intents) != 0)
        i++;
    if (i == cc->nintent_files) {
        cc->intent_files = ah_realloc(cc->intent_files, (i + 1) * sizeof *cc->intent_files);
        cc->intent_files[cc->nintent_files++] = intents;
    } else {
        ah_free(intents);
    }
    p->intents = (int)i + 1;
    return AH_E_OK;
}

/* ahorro.cache: the answer caches. */
static ah_err_t load_cache(loader_t *L, yaml_node_t *m, ah_cache_config_t *cc)
{
    static const char *const known[] = {"exact",
                                        "semantic",
                                        "ttl",
                                        "max_temperature",
                                        "similarity_threshold",
                                        "namespace",
                                        "max_entries",
                                        "max_bytes",
                                        "embedder",
                                        "embedder_path",
                                        "persist",
                                        "routes",
                                        "prompt_caching",
                                        "embedder_model",
                                        "intents",
                                        "intent_confidence",
                                        NULL};
    static const char *const route_known[] = {
        "exact",   "semantic",          "ttl", "max_temperature", "similarity_threshold",
        "intents", "intent_confidence", NULL};
    ah_err_t rc;
    if ((rc = check_keys(L, m, "ahorro.cache", known)) ||
        (rc = load_policy(L, m, cc, &cc->policy)) ||
        (rc = get_string(L, m, "namespace", &cc->ns)) ||
        (rc = get_string(L, m, "embedder", &cc->embedder)) ||
        (rc = get_string(L, m, "embedder_path", &cc->embedder_path)) ||
        (rc = get_string(L, m, "embedder_model", &cc->embedder_model)) ||
        (rc = get_bool(L, m, "persist", &cc->persist)) ||
        (rc = get_bool(L, m, "prompt_caching", &cc->prompt_caching)))
        return rc;
    double v = (double)cc->max_entries;
    if ((rc = get_number(L, m, "max_entries", 1, 1e8, &v)))
        return rc;
    cc->max_entries = (size_t)v;
    v = (double)cc->max_bytes;
    if ((rc = get_number(L, m, "max_bytes", 1 << 16, 1e12, &v)))
        return rc;
    cc->max_bytes = (size_t)v;
    if (cc->embedder && strcmp(cc->embedder, "sif") && strcmp(cc->embedder, "model2vec") &&
        strcmp(cc->embedder, "endpoint"))
        return fail(L, get(L, m, "embedder"), "'embedder' must be sif, model2vec or endpoint");
    if (cc->embedder && strcmp(cc->embedder, "endpoint") == 0 && !cc->embedder_model)
        return fail(L, get(L, m, "embedder"),
                    "embedder endpoint needs 'embedder_model': the model_name of an embeddings "
                    "model in model_list");
    yaml_node_t *routes = get(L, m, "routes");
    if (!routes)
        return AH_E_OK;
    if (routes->type != YAML_MAPPING_NODE)
        return fail(L, routes, "'routes' must map a model name to its cache settings");
    for (yaml_node_pair_t *p = routes->data.mapping.pairs.start; p < routes->data.mapping.pairs.top;
         p++) {
        const char *model = scalar(node(L, p->key));
        yaml_node_t *val = node(L, p->value);
        if (!model || !*model)
            return fail(L, node(L, p->key), "route names must be model names");
        if ((rc = check_keys(L, val, "ahorro.cache.routes", route_known)))
            return rc;
        cc->routes = ah_realloc(cc->routes, (cc->nroutes + 1) * sizeof *cc->routes);
        ah_cache_route_t *r = &cc->routes[cc->nroutes++];
        r->model = ah_strdup(model);
        r->policy = cc->policy; /* unset keys inherit the default */
        if ((rc = load_policy(L, val, cc, &r->policy)))
            return rc;
    }
    return AH_E_OK;
}

/* LiteLLM's litellm_settings.cache + cache_params, read as their ahorro
 * equivalent: "local" and "redis" are the exact cache on the configured
 * state backend; "*-semantic" adds the semantic cache. */
static ah_err_t load_litellm_cache(loader_t *L, yaml_node_t *ls, ah_cache_config_t *cc)
{
    ah_err_t rc;
    int on = 0;
    if ((rc = get_bool(L, ls, "cache", &on)) || !on)
        return rc;
    cc->policy.exact = 1;
    yaml_node_t *cp = get(L, ls, "cache_params");
    if (!cp)
        return AH_E_OK;
    if (cp->type != YAML_MAPPING_NODE)
        return fail(L, cp, "'cache_params' must be a mapping");
    char *type = NULL;
    if ((rc = get_string(L, cp, "type", &type)))
        return rc;
    if (type) {
        size_t n = strlen(type);
        if (n >= 9 && strcmp(type + n - 9, "-semantic") == 0)
            cc->policy.semantic = 1;
        else if (strcmp(type, "local") && strcmp(type, "redis") && strcmp(type, "memory")) {
            rc = fail(L, get(L, cp, "type"),
                      "cache type '%s' is not supported (local, redis, redis-semantic, "
                      "qdrant-semantic)",
                      type);
            ah_free(type);
            return rc;
        }
        ah_free(type);
    }
    if ((rc = get_number(L, cp, "ttl", 1, 365 * 86400.0, &cc->policy.ttl_s)) ||
        (rc = get_number(L, cp, "similarity_threshold", 0, 1, &cc->policy.threshold)) ||
        (rc = get_string(L, cp, "namespace", &cc->ns)))
        return rc;
    if (get(L, cp, "similarity_threshold"))
        cc->policy.threshold_set = 1;
    return AH_E_OK;
}

/* ---- routing: balancing, retries, fallbacks, rules, routers ---- */

static void fallback_free(ah_fallback_t *f)
{
    ah_free(f->from);
    for (size_t i = 0; i < f->nto; i++)
        ah_free(f->to[i]);
    ah_free(f->to);
}

static void router_free(ah_router_cfg_t *rt)
{
    ah_free(rt->name);
    ah_free(rt->model_path);
    for (size_t i = 0; i < rt->ntiers; i++) {
        ah_free(rt->tiers[i].name);
        ah_free(rt->tiers[i].model);
    }
    ah_free(rt->tiers);
    for (size_t i = 0; i < rt->ncascade; i++)
        ah_free(rt->cascade[i]);
    ah_free(rt->cascade);
}

static void rule_free(ah_route_rule_t *r)
{
    ah_free(r->tag_key);
    ah_free(r->tag_value);
    ah_free(r->key_id);
    ah_free(r->requested);
    ah_free(r->model);
}

static void routing_free(ah_routing_config_t *rc)
{
    for (size_t i = 0; i < rc->nfallbacks; i++)
        fallback_free(&rc->fallbacks[i]);
    ah_free(rc->fallbacks);
    for (size_t i = 0; i < rc->ncontext_fallbacks; i++)
        fallback_free(&rc->context_fallbacks[i]);
    ah_free(rc->context_fallbacks);
    for (size_t i = 0; i < rc->nrules; i++)
        rule_free(&rc->rules[i]);
    ah_free(rc->rules);
    for (size_t i = 0; i < rc->nrouters; i++)
        router_free(&rc->routers[i]);
    ah_free(rc->routers);
}

/* One `from: [to, ...]` pair (the value may also be a single alias). */
static ah_err_t load_fallback_pair(loader_t *L, yaml_node_t *k, yaml_node_t *v, ah_fallback_t **arr,
                                   size_t *n)
{
    const char *from = scalar(k);
    if (!from || !*from)
        return fail(L, k, "a fallback's key must be a model name");
    if (*n >= AH_MAX_DEPLOYMENTS)
        return fail(L, k, "too many fallbacks");
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*arr)[i].from, from) == 0)
            return fail(L, k, "fallbacks for '%s' are given twice", from);
    ah_fallback_t f = {.from = ah_strdup(from), .line = (int)k->start_mark.line + 1};
    if (scalar(v)) {
        f.to = ah_calloc(1, sizeof *f.to);
        f.to[f.nto++] = ah_strdup(scalar(v));
    } else if (v && v->type == YAML_SEQUENCE_NODE) {
        size_t cnt = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (cnt > AH_ROUTE_MAX_CHAIN) {
            fallback_free(&f);
            return fail(L, v, "more than %d fallbacks for '%s'", AH_ROUTE_MAX_CHAIN, from);
        }
        f.to = ah_calloc(cnt ? cnt : 1, sizeof *f.to);
        for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
             it++) {
            const char *to = scalar(node(L, *it));
            if (!to || !*to) {
                fallback_free(&f);
                return fail(L, node(L, *it), "fallbacks of '%s' must be model names", from);
            }
            f.to[f.nto++] = ah_strdup(to);
        }
    } else {
        fallback_free(&f);
        return fail(L, v, "fallbacks of '%s' must be a list of model names", from);
    }
    *arr = ah_realloc(*arr, (*n + 1) * sizeof **arr);
    (*arr)[(*n)++] = f;
    return AH_E_OK;
}

/* Fallbacks as a mapping {from: [to...]}, or LiteLLM's list of one-key
 * mappings [{from: [to...]}, ...]. */
static ah_err_t load_fallbacks(loader_t *L, yaml_node_t *m, ah_fallback_t **arr, size_t *n)
{
    ah_err_t rc;
    if (m->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++)
            if ((rc = load_fallback_pair(L, node(L, p->key), node(L, p->value), arr, n)))
                return rc;
        return AH_E_OK;
    }
    if (m->type != YAML_SEQUENCE_NODE)
        return fail(L, m, "fallbacks must be a mapping of model -> [models] or a list of them");
    for (yaml_node_item_t *it = m->data.sequence.items.start; it < m->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node(L, *it);
        if (!e || e->type != YAML_MAPPING_NODE)
            return fail(L, e ? e : m, "each fallback must be a mapping {model: [models]}");
        for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top; p++)
            if ((rc = load_fallback_pair(L, node(L, p->key), node(L, p->value), arr, n)))
                return rc;
    }
    return AH_E_OK;
}

static ah_err_t load_strategy(loader_t *L, yaml_node_t *m, const char *key, ah_balance_t *out)
{
    yaml_node_t *n = get(L, m, key);
    if (!n)
        return AH_E_OK;
    static const struct {
        const char *name;
        ah_balance_t b;
    } names[] = {
        {"weighted", AH_BALANCE_WEIGHTED},
        {"simple-shuffle", AH_BALANCE_WEIGHTED},
        {"round-robin", AH_BALANCE_WEIGHTED},
        {"least-latency", AH_BALANCE_LEAST_LATENCY},
        {"latency-based-routing", AH_BALANCE_LEAST_LATENCY},
        {"least-busy", AH_BALANCE_LEAST_BUSY},
        {"lowest-cost", AH_BALANCE_LOWEST_COST},
        {"cost-based-routing", AH_BALANCE_LOWEST_COST},
        {"usage-based-routing", AH_BALANCE_LEAST_BUSY},
        {"usage-based-routing-v2", AH_BALANCE_LEAST_BUSY},
    };
    const char *v = scalar(n);
    for (size_t i = 0; v && i < sizeof names / sizeof names[0]; i++)
        if (strcmp(v, names[i].name) == 0) {
            *out = names[i].b;
            return AH_E_OK;
        }
    return fail(L, n,
                "'%s' must be weighted, least-latency, least-busy or lowest-cost (or LiteLLM's "
                "simple-shuffle, latency-based-routing, usage-based-routing, cost-based-routing)",
                key);
}

/* Settings shared by ahorro.routing and LiteLLM's router_settings /
 * litellm_settings (LiteLLM names second). */
static ah_err_t load_resilience(loader_t *L, yaml_node_t *m, ah_routing_config_t *rc, int litellm)
{
    ah_err_t e;
    double v = rc->retries;
    if ((e = get_number(L, m, litellm ? "num_retries" : "retries", 0, AH_ROUTE_MAX_RETRIES, &v)))
        return e;
    rc->retries = (int)v;
    v = rc->allowed_fails;
    if ((e = get_number(L, m, "allowed_fails", 1, 1000, &v)))
        return e;
    rc->allowed_fails = (int)v;
    if ((e = get_number(L, m, litellm ? "cooldown_time" : "cooldown", 0, 86400, &rc->cooldown_s)) ||
        (e = get_number(L, m, litellm ? "retry_after" : "backoff", 0, 60, &rc->backoff_base_s)) ||
        (!litellm && (e = get_number(L, m, "max_backoff", 0, 600, &rc->backoff_max_s))) ||
        (e = load_strategy(L, m, litellm ? "routing_strategy" : "strategy", &rc->strategy)))
        return e;
    yaml_node_t *f = get(L, m, "fallbacks");
    if (f && (e = load_fallbacks(L, f, &rc->fallbacks, &rc->nfallbacks)))
        return e;
    f = get(L, m, "context_window_fallbacks");
    if (f && (e = load_fallbacks(L, f, &rc->context_fallbacks, &rc->ncontext_fallbacks)))
        return e;
    return AH_E_OK;
}

/* A rule's `when:` tag condition: "key=value", "key" (present), or a
 * mapping {key: value}. */
static ah_err_t load_rule_tag(loader_t *L, yaml_node_t *t, ah_route_rule_t *r)
{
    const char *s = scalar(t);
    if (s) {
        const char *eq = strchr(s, '=');
        r->tag_key = eq ? ah_strndup(s, (size_t)(eq - s)) : ah_strdup(s);
        r->tag_value = ah_strdup(eq ? eq + 1 : "*");
    } else if (t->type == YAML_MAPPING_NODE &&
               t->data.mapping.pairs.top - t->data.mapping.pairs.start == 1) {
        yaml_node_pair_t *p = t->data.mapping.pairs.start;
        const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
        if (!k || !v)
            return fail(L, t, "'tag' must be key=value or {key: value}");
        r->tag_key = ah_strdup(k);
        r->tag_value = ah_strdup(v);
    } else {
        return fail(L, t, "'tag' must be key=value or {key: value}");
    }
    if (!*r->tag_key)
        return fail(L, t, "'tag' needs a tag name");
    return AH_E_OK;
}

static ah_err_t load_rule(loader_t *L, yaml_node_t *item, ah_route_rule_t *r)
{
    static const char *const known[] = {"when", "model", NULL};
    static const char *const known_when[] = {"tag", "key", "model", "min_chars", "max_chars", NULL};
    ah_err_t rc;
    r->line = (int)item->start_mark.line + 1;
    if ((rc = check_keys(L, item, "rules[]", known)) ||
        (rc = get_string(L, item, "model", &r->model)))
        return rc;
    if (!r->model || !*r->model)
        return fail(L, item, "a routing rule needs 'model' (where matching requests go)");
    yaml_node_t *w = get(L, item, "when");
    if (!w)
        return fail(L, item, "a routing rule needs 'when' (tag, key, model, min_chars, max_chars)");
    if ((rc = check_keys(L, w, "rules[].when", known_when)))
        return rc;
    yaml_node_t *t = get(L, w, "tag");
    if (t && (rc = load_rule_tag(L, t, r)))
        return rc;
    double lo = 0, hi = 0;
    if ((rc = get_string(L, w, "key", &r->key_id)) ||
        (rc = get_string(L, w, "model", &r->requested)) ||
        (rc = get_number(L, w, "min_chars", 0, 1e12, &lo)) ||
        (rc = get_number(L, w, "max_chars", 0, 1e12, &hi)))
        return rc;
    r->min_prompt_chars = (long)lo;
    r->max_prompt_chars = (long)hi;
    if (!t && !r->key_id && !r->requested && lo == 0 && hi == 0)
        return fail(L, w, "a routing rule's 'when' needs at least one condition");
    return AH_E_OK;
}

static int tier_cmp(const void *a, const void *b)
{
    double x = ((const ah_router_tier_t *)a)->min_score,
           y = ((const ah_router_tier_t *)b)->min_score;
    return x < y ? 1 : x > y ? -1 : 0;
}

static ah_err_t load_router(loader_t *L, yaml_node_t *item, ah_router_cfg_t *rt)
{
    static const char *const known[] = {"name",
                                        "kind",
                                        "model_path",
                                        "tiers",
                                        "critical_threshold",
                                        "cascade",
                                        "rank",
                                        "expected_output_tokens",
                                        NULL};
    static const char *const known_tier[] = {"name", "model", "min_score", "min_gain_per_usd",
                                             NULL};
    ah_err_t rc;
    rt->line = (int)item->start_mark.line + 1;
    rt->critical_threshold = 2; /* off */
    rt->expected_output_tokens = AH_ROUTE_EXPECTED_OUTPUT_TOKENS;
    double out_tokens = -1;
    if ((rc = check_keys(L, item, "routers[]", known)) ||
        (rc = get_string(L, item, "name", &rt->name)) ||
        (rc = get_string(L, item, "model_path", &rt->model_path)) ||
        (rc = get_number(L, item, "critical_threshold", 0, 1, &rt->critical_threshold)) ||
        (rc = get_number(L, item, "expected_output_tokens", 0, AH_ROUTE_MAX_OUTPUT_TOKENS,
                         &out_tokens)))
        return rc;
    if (!rt->name || !*rt->name)
        return fail(L, item, "a router needs 'name' (the model clients ask for, e.g. auto)");
    if (out_tokens >= 0) {
        if (out_tokens != floor(out_tokens))
            return fail(L, get(L, item, "expected_output_tokens"),
                        "router '%s': 'expected_output_tokens' must be a whole number of tokens",
                        rt->name);
        rt->expected_output_tokens = (long)out_tokens;
    }
    char *rank = NULL;
    if ((rc = get_string(L, item, "rank", &rank)))
        return rc;
    if (!rank || strcmp(rank, "score") == 0)
        rt->rank = AH_RANK_SCORE;
    else if (strcmp(rank, "gain_per_dollar") == 0)
        rt->rank = AH_RANK_GAIN_PER_DOLLAR;
    else
        rc = fail(L, get(L, item, "rank"), "router '%s': 'rank' must be score or gain_per_dollar",
                  rt->name);
    ah_free(rank);
    if (rc)
        return rc;
    char *kind = NULL;
    if ((rc = get_string(L, item, "kind", &kind)))
        return rc;
    if (!kind || strcmp(kind, "complexity") == 0)
        rt->kind = AH_ROUTER_COMPLEXITY;
    else if (strcmp(kind, "learned") == 0)
        rt->kind = AH_ROUTER_LEARNED;
    else if (strcmp(kind, "cascade") == 0)
        rt->kind = AH_ROUTER_CASCADE;
    else
        rc = fail(L, get(L, item, "kind"),
                  "router '%s': 'kind' must be complexity, learned or cascade", rt->name);
    ah_free(kind);
    if (rc)
        return rc;
    if (rt->kind == AH_ROUTER_CASCADE && get(L, item, "rank"))
        return fail(L, get(L, item, "rank"),
                    "router '%s': 'rank' applies to complexity and learned routers, not a cascade",
                    rt->name);
    if (rt->rank != AH_RANK_GAIN_PER_DOLLAR && get(L, item, "expected_output_tokens"))
        return fail(L, get(L, item, "expected_output_tokens"),
                    "router '%s': 'expected_output_tokens' is used only with rank: gain_per_dollar",
                    rt->name);
    if (rt->kind == AH_ROUTER_CASCADE) {
        /* A cascade: the cheapest model first; each next one only when the
         * answer before fails its checks. */
        yaml_node_t *cs = get(L, item, "cascade");
        if (!cs || cs->type != YAML_SEQUENCE_NODE ||
            cs->data.sequence.items.top - cs->data.sequence.items.start < 2)
            return fail(L, cs ? cs : item,
                        "router '%s' is a cascade and needs 'cascade', a list of at least two "
                        "models, cheapest first",
                        rt->name);
        size_t cnt = (size_t)(cs->data.sequence.items.top - cs->data.sequence.items.start);
        if (cnt > AH_ROUTE_MAX_TIERS)
            return fail(L, cs, "router '%s' has more than %d cascade steps", rt->name,
                        AH_ROUTE_MAX_TIERS);
        rt->cascade = ah_calloc(cnt, sizeof *rt->cascade);
        for (yaml_node_item_t *it = cs->data.sequence.items.start; it < cs->data.sequence.items.top;
             it++) {
            const char *m = scalar(node(L, *it));
            if (!m || !*m)
                return fail(L, node(L, *it), "router '%s': cascade steps are model names",
                            rt->name);
            rt->cascade[rt->ncascade++] = ah_strdup(m);
        }
        return AH_E_OK;
    }
    if (rt->kind == AH_ROUTER_LEARNED && !rt->model_path)
        return fail(L, item, "router '%s' is learned and needs 'model_path' (ahorro router train)",
                    rt->name);
    yaml_node_t *tiers = get(L, item, "tiers");
    if (!tiers || tiers->type != YAML_SEQUENCE_NODE ||
        tiers->data.sequence.items.top == tiers->data.sequence.items.start)
        return fail(L, tiers ? tiers : item,
                    "router '%s' needs 'tiers', a list of {name, model, "
                    "min_score}",
                    rt->name);
    size_t cnt = (size_t)(tiers->data.sequence.items.top - tiers->data.sequence.items.start);
    if (cnt > AH_ROUTE_MAX_TIERS)
        return fail(L, tiers, "router '%s' has more than %d tiers", rt->name, AH_ROUTE_MAX_TIERS);
    int gain = rt->rank == AH_RANK_GAIN_PER_DOLLAR;
    if (gain && cnt != 2)
        return fail(L, tiers,
                    "router '%s' has rank: gain_per_dollar and needs exactly two tiers, the strong "
                    "one first with 'min_gain_per_usd', then the cheap one (it has %zu)",
                    rt->name, cnt);
    rt->tiers = ah_calloc(cnt, sizeof *rt->tiers);
    for (yaml_node_item_t *it = tiers->data.sequence.items.start;
         it < tiers->data.sequence.items.top; it++) {
        yaml_node_t *tn = node(L, *it);
        ah_router_tier_t *t = &rt->tiers[rt->ntiers++];
        if ((rc = check_keys(L, tn, "tiers[]", known_tier)) ||
            (rc = get_string(L, tn, "name", &t->name)) ||
            (rc = get_string(L, tn, "model", &t->model)) ||
            (rc = get_number(L, tn, "min_score", 0, 1, &t->min_score)) ||
            (rc = get_number(L, tn, "min_gain_per_usd", -HUGE_VAL, HUGE_VAL, &t->min_gain_per_usd)))
            return rc;
        if (!t->model || !*t->model)
            return fail(L, tn, "router '%s': a tier has no model", rt->name);
        if (!t->name)
            t->name = ah_strdup(t->model);
        yaml_node_t *ms = get(L, tn, "min_score"), *mg = get(L, tn, "min_gain_per_usd");
        if (!gain && mg)
            return fail(L, mg,
                        "router '%s', tier '%s': 'min_gain_per_usd' needs rank: gain_per_dollar "
                        "on the router",
                        rt->name, t->name);
        if (gain && ms)
            return fail(L, ms,
                        "router '%s', tier '%s': with rank: gain_per_dollar the strong tier's "
                        "threshold is 'min_gain_per_usd', not 'min_score'",
                        rt->name, t->name);
        if (gain && rt->ntiers == 1 && !mg)
            return fail(L, tn,
                        "router '%s', tier '%s': the strong tier (the first) of a gain_per_dollar "
                        "router needs 'min_gain_per_usd', the expected accuracy gain per extra USD "
                        "(e.g. 1000: at most $0.001 per extra request answered well)",
                        rt->name, t->name);
        if (gain && rt->ntiers == 1 && !(t->min_gain_per_usd > 0))
            return fail(L, mg,
                        "router '%s', tier '%s': 'min_gain_per_usd' must be a positive number "
                        "(expected accuracy gain per extra USD)",
                        rt->name, t->name);
        if (gain && rt->ntiers == 2 && mg)
            return fail(L, mg,
                        "router '%s', tier '%s': only the strong tier (the first) has "
                        "'min_gain_per_usd'; the second is the cheap tier, taken otherwise",
                        rt->name, t->name);
    }
    if (!gain) /* gain_per_dollar: strong first, as written */
        qsort(rt->tiers, rt->ntiers, sizeof *rt->tiers, tier_cmp);
    return AH_E_OK;
}

/* ahorro.routing */
static ah_err_t load_routing(loader_t *L, yaml_node_t *m, ah_routing_config_t *rc)
{
    static const char *const known[] = {
        "strategy",      "retries",  "backoff",   "max_backoff",
        "allowed_fails", "cooldown", "fallbacks", "context_window_fallbacks",
        "rules",         "routers",  NULL};
    ah_err_t e;
    if ((e = check_keys(L, m, "routing", known)) || (e = load_resilience(L, m, rc, 0)))
        return e;
    yaml_node_t *rules = get(L, m, "rules");
    if (rules) {
        if (rules->type != YAML_SEQUENCE_NODE)
            return fail(L, rules, "'rules' must be a list");
        for (yaml_node_item_t *it = rules->data.sequence.items.start;
             it < rules->data.sequence.items.top; it++) {
            if (rc->nrules >= AH_ROUTE_MAX_RULES)
                return fail(L, node(L, *it), "more than %d routing rules", AH_ROUTE_MAX_RULES);
            rc->rules = ah_realloc(rc->rules, (rc->nrules + 1) * sizeof *rc->rules);
            ah_route_rule_t *r = &rc->rules[rc->nrules++];
            memset(r, 0, sizeof *r);
            if ((e = load_rule(L, node(L, *it), r)))
                return e;
        }
    }
    yaml_node_t *routers = get(L, m, "routers");
    if (routers) {
        if (routers->type != YAML_SEQUENCE_NODE)
            return fail(L, routers, "'routers' must be a list");
        for (yaml_node_item_t *it = routers->data.sequence.items.start;
             it < routers->data.sequence.items.top; it++) {
            if (rc->nrouters >= AH_ROUTE_MAX_RULES)
                return fail(L, node(L, *it), "too many routers");
            rc->routers = ah_realloc(rc->routers, (rc->nrouters + 1) * sizeof *rc->routers);
            ah_router_cfg_t *rt = &rc->routers[rc->nrouters++];
            memset(rt, 0, sizeof *rt);
            if ((e = load_router(L, node(L, *it), rt)))
                return e;
            for (size_t i = 0; i + 1 < rc->nrouters; i++)
                if (strcmp(rc->routers[i].name, rt->name) == 0)
                    return fail(L, node(L, *it), "router '%s' is defined twice", rt->name);
        }
    }
    return AH_E_OK;
}

static const ah_fallback_t *fallback_of(const ah_fallback_t *arr, size_t n, const char *from)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(arr[i].from, from) == 0)
            return &arr[i];
    return NULL;
}

/* Depth-first walk of the fallback graph from `at`; 1 when it returns to
 * an alias on the current path (state: 0 new, 1 on path, 2 done). */
static int fallback_cycle(const ah_fallback_t *arr, size_t n, size_t at, unsigned char *state,
                          const char **where)
{
    state[at] = 1;
    for (size_t j = 0; j < arr[at].nto; j++) {
        const ah_fallback_t *next = fallback_of(arr, n, arr[at].to[j]);
        if (!next)
            continue;
        size_t k = (size_t)(next - arr);
        if (state[k] == 1 || (state[k] == 0 && fallback_cycle(arr, n, k, state, where))) {
            if (!*where)
                *where = arr[at].from;
            return 1;
        }
    }
    state[at] = 2;
    return 0;
}

static ah_err_t check_fallbacks(loader_t *L, const ah_config_t *c, const ah_fallback_t *arr,
                                size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        if (!ah_config_has_alias(c, arr[i].from) && !ah_config_router(c, arr[i].from))
            return fail_line(L, arr[i].line,
                             "%s of '%s': no model_list entry or router serves '%s'", what,
                             arr[i].from, arr[i].from);
        for (size_t j = 0; j < arr[i].nto; j++)
            if (!ah_config_has_alias(c, arr[i].to[j]))
                return fail_line(L, arr[i].line,
                                 "%s of '%s' name '%s', which no model_list entry "
                                 "serves",
                                 what, arr[i].from, arr[i].to[j]);
    }
    unsigned char *state = ah_calloc(n ? n : 1, 1);
    const char *where = NULL;
    int cyc = 0;
    for (size_t i = 0; i < n && !cyc; i++)
        if (state[i] == 0)
            cyc = fallback_cycle(arr, n, i, state, &where);
    ah_free(state);
    if (cyc)
        return fail(L, NULL, "%s form a cycle through '%s': a chain must end", what, where);
    return AH_E_OK;
}

/* After everything is loaded: every name a routing setting uses must be
 * served, and fallback chains must end. */
static ah_err_t check_routing(loader_t *L, const ah_config_t *c)
{
    const ah_routing_config_t *rc = &c->routing;
    ah_err_t e;
    if ((e = check_fallbacks(L, c, rc->fallbacks, rc->nfallbacks, "fallbacks")) ||
        (e = check_fallbacks(L, c, rc->context_fallbacks, rc->ncontext_fallbacks,
                             "context_window_fallbacks")))
        return e;
    for (size_t i = 0; i < rc->nrouters; i++) {
        const ah_router_cfg_t *rt = &rc->routers[i];
        if (ah_config_has_alias(c, rt->name) && ah_config_route(c, rt->name, 0)->alias[0] != '*')
            return fail_line(L, rt->line, "router '%s' has the name of a model_list entry",
                             rt->name);
        for (size_t j = 0; j < rt->ncascade; j++)
            if (!ah_config_has_alias(c, rt->cascade[j]))
                return fail_line(L, rt->line, "router '%s': no model_list entry serves '%s'",
                                 rt->name, rt->cascade[j]);
        for (size_t j = 0; j < rt->ntiers; j++)
            if (!ah_config_has_alias(c, rt->tiers[j].model))
                return fail_line(L, rt->line,
                                 "router '%s', tier '%s': no model_list entry serves '%s'",
                                 rt->name, rt->tiers[j].name, rt->tiers[j].model);
    }
    for (size_t i = 0; i < c->guard.nbudgets; i++) {
        const ah_budget_cfg_t *b = &c->guard.budgets[i];
        if (b->downgrade_to && !ah_config_has_alias(c, b->downgrade_to) &&
            !ah_config_router(c, b->downgrade_to))
            return fail_line(L, b->line,
                             "budget '%s' downgrades to '%s', which no model_list "
                             "entry or router serves",
                             b->name, b->downgrade_to);
    }
    for (size_t i = 0; i < rc->nrules; i++) {
        const ah_route_rule_t *r = &rc->rules[i];
        if (!ah_config_has_alias(c, r->model) && !ah_config_router(c, r->model))
            return fail_line(L, r->line,
                             "routing rule sends to '%s', which no model_list entry "
                             "or router serves",
                             r->model);
    }
    return AH_E_OK;
}

/* ---- guard: budgets and rate limits ---- */

static void scope_free(ah_scope_t *s)
{
    ah_free(s->tag);
    ah_free(s->value);
}

static void guard_free(ah_guard_config_t *g)
{
    for (size_t i = 0; i < g->nbudgets; i++) {
        ah_budget_cfg_t *b = &g->budgets[i];
        ah_free(b->name);
        scope_free(&b->scope);
        ah_free(b->timezone);
        ah_free(b->webhook);
        ah_free(b->downgrade_to);
    }
    ah_free(g->budgets);
    for (size_t i = 0; i < g->nrate_limits; i++)
        scope_free(&g->rate_limits[i].scope);
    ah_free(g->rate_limits);
}

static int name_chars_ok(const char *s)
{
    if (!*s || strlen(s) > AH_MAX_TAG_BYTES)
        return 0;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || *s == '"' || *s == '\\' || *s == ':' || *s == '=' ||
            *s == ',')
            return 0;
    return 1;
}

/* "global", "key:ID", "user:ID", "owner:NAME", "tag:K=V"; ":*" (or "tag:K")
 * counts each value separately. */
static ah_err_t load_scope(loader_t *L, yaml_node_t *m, ah_scope_t *sc)
{
    yaml_node_t *n = get(L, m, "scope");
    const char *v = scalar(n);
    static const char *const msg =
        "'scope' must be global, key:ID, user:ID, owner:NAME or tag:NAME=VALUE (':*' or "
        "'tag:NAME' for each value separately)";
    if (!v)
        return fail(L, n ? n : m, "%s", msg);
    memset(sc, 0, sizeof *sc);
    if (strcmp(v, "global") == 0) {
        sc->kind = AH_SCOPE_GLOBAL;
        return AH_E_OK;
    }
    const char *colon = strchr(v, ':');
    if (!colon)
        return fail(L, n, "%s", msg);
    size_t kl = (size_t)(colon - v);
    const char *rest = colon + 1;
    if (kl == 3 && strncmp(v, "key", 3) == 0)
        sc->kind = AH_SCOPE_KEY;
    else if (kl == 4 && strncmp(v, "user", 4) == 0)
        sc->kind = AH_SCOPE_USER;
    else if (kl == 5 && strncmp(v, "owner", 5) == 0)
        sc->kind = AH_SCOPE_OWNER;
    else if (kl == 3 && strncmp(v, "tag", 3) == 0)
        sc->kind = AH_SCOPE_TAG;
    else
        return fail(L, n, "%s", msg);
    if (sc->kind == AH_SCOPE_TAG) {
        const char *eq = strchr(rest, '=');
        sc->tag = eq ? ah_strndup(rest, (size_t)(eq - rest)) : ah_strdup(rest);
        if (!name_chars_ok(sc->tag))
            return fail(L, n,
                        "scope '%s': a tag name of printable characters without quotes, "
                        "':', '=' or ','",
                        v);
        rest = eq ? eq + 1 : "*";
    }
    if (strcmp(rest, "*") != 0) {
        if (!name_chars_ok(rest))
            return fail(L, n, "scope '%s': the value must be printable, without ':', '=' or ','",
                        v);
        sc->value = ah_strdup(rest);
    }
    return AH_E_OK;
}

static ah_err_t load_budget(loader_t *L, yaml_node_t *m, ah_budget_cfg_t *b)
{
    static const char *const known[] = {"name",         "scope",        "period",  "timezone",
                                        "limit_usd",    "alerts",       "webhook", "action",
                                        "downgrade_to", "throttle_rpm", NULL};
    ah_err_t rc;
    b->line = (int)m->start_mark.line + 1;
    b->limit_usd = -1;
    if ((rc = check_keys(L, m, "budgets[]", known)) || (rc = get_string(L, m, "name", &b->name)) ||
        (rc = load_scope(L, m, &b->scope)) || (rc = get_string(L, m, "timezone", &b->timezone)) ||
        (rc = get_string(L, m, "webhook", &b->webhook)) ||
        (rc = get_string(L, m, "downgrade_to", &b->downgrade_to)) ||
        (rc = get_number(L, m, "limit_usd", 0, 1e12, &b->limit_usd)))
        return rc;
    if (!b->name || !*b->name)
        return fail(L, m, "a budget needs 'name'");
    if (b->limit_usd < 0)
        return fail(L, m, "budget '%s' needs 'limit_usd', a number of dollars at least 0", b->name);
    char *period = NULL;
    if ((rc = get_string(L, m, "period", &period)))
        return rc;
    if (!period)
        b->period = AH_PERIOD_MONTH;
    else if (ah_period_parse(period, &b->period))
        rc = fail(L, get(L, m, "period"), "budget '%s': 'period' must be day, week or month",
                  b->name);
    ah_free(period);
    if (rc)
        return rc;
    if (b->timezone && !ah_period_zone_known(b->timezone))
        return fail(L, get(L, m, "timezone"),
                    "budget '%s': unknown time zone '%s' (an IANA name such as Europe/Madrid)",
                    b->name, b->timezone);
    if (b->webhook && strncmp(b->webhook, "http://", 7) && strncmp(b->webhook, "https://", 8))
        return fail(L, get(L, m, "webhook"), "budget '%s': 'webhook' must be an http(s) URL",
                    b->name);
    char *action = NULL;
    if ((rc = get_string(L, m, "action", &action)))
        return rc;
    if (!action || strcmp(action, "reject") == 0)
        b->action = AH_BUDGET_REJECT;
    else if (strcmp(action, "downgrade") == 0)
        b->action = AH_BUDGET_DOWNGRADE;
    else if (strcmp(action, "throttle") == 0)
        b->action = AH_BUDGET_THROTTLE;
    else
        rc = fail(L, get(L, m, "action"),
                  "budget '%s': 'action' must be reject, downgrade or throttle", b->name);
    ah_free(action);
    if (rc)
        return rc;
    if (b->action == AH_BUDGET_DOWNGRADE && !b->downgrade_to)
        return fail(L, m, "budget '%s' downgrades and needs 'downgrade_to' (a model)", b->name);
    double rpm = 0;
    if ((rc = get_number(L, m, "throttle_rpm", 1, 1e9, &rpm)))
        return rc;
    b->throttle_rpm = (long)rpm;
    if (b->action == AH_BUDGET_THROTTLE && !b->throttle_rpm)
        return fail(L, m, "budget '%s' throttles and needs 'throttle_rpm'", b->name);
    yaml_node_t *al = get(L, m, "alerts");
    if (!al) {
        static const double def[] = {0.5, 0.8, 1.0};
        memcpy(b->alerts, def, sizeof def);
        b->nalerts = 3;
    } else {
        if (al->type != YAML_SEQUENCE_NODE)
            return fail(L, al,
                        "budget '%s': 'alerts' must be a list of fractions, e.g. [0.5, 0.8, 1.0]",
                        b->name);
        for (yaml_node_item_t *it = al->data.sequence.items.start; it < al->data.sequence.items.top;
             it++) {
            const char *v = scalar(node(L, *it));
            char *end = NULL;
            double d = v ? strtod(v, &end) : -1;
            if (!v || end == v || *end || !(d > 0 && d <= 10))
                return fail(L, node(L, *it),
                            "budget '%s': an alert is a fraction of the limit "
                            "above 0 (0.8 = 80%%)",
                            b->name);
            if (b->nalerts >= AH_BUDGET_MAX_ALERTS)
                return fail(L, al, "budget '%s': at most %d alerts", b->name, AH_BUDGET_MAX_ALERTS);
            if (b->nalerts && d <= b->alerts[b->nalerts - 1])
                return fail(L, node(L, *it), "budget '%s': alerts must ascend", b->name);
            b->alerts[b->nalerts++] = d;
        }
    }
    return AH_E_OK;
}

static ah_err_t load_rate_limit(loader_t *L, yaml_node_t *m, ah_rate_limit_cfg_t *rl)
{
    static const char *const known[] = {"scope", "rpm", "tpm", NULL};
    ah_err_t rc;
    double rpm = 0, tpm = 0;
    rl->line = (int)m->start_mark.line + 1;
    if ((rc = check_keys(L, m, "rate_limits[]", known)) || (rc = load_scope(L, m, &rl->scope)) ||
        (rc = get_number(L, m, "rpm", 1, 1e9, &rpm)) ||
        (rc = get_number(L, m, "tpm", 1, 1e12, &tpm)))
        return rc;
    rl->rpm = (long)rpm;
    rl->tpm = (long)tpm;
    if (!rl->rpm && !rl->tpm)
        return fail(L, m, "a rate limit needs 'rpm' or 'tpm'");
    return AH_E_OK;
}

static ah_err_t load_guard_lists(loader_t *L, yaml_node_t *m, ah_guard_config_t *g)
{
    ah_err_t rc;
    yaml_node_t *b = get(L, m, "budgets");
    if (b) {
        if (b->type != YAML_SEQUENCE_NODE)
            return fail(L, b, "'budgets' must be a list");
        for (yaml_node_item_t *it = b->data.sequence.items.start; it < b->data.sequence.items.top;
             it++) {
            if (g->nbudgets >= AH_ROUTE_MAX_RULES)
                return fail(L, node(L, *it), "too many budgets");
            g->budgets = ah_realloc(g->budgets, (g->nbudgets + 1) * sizeof *g->budgets);
            ah_budget_cfg_t *bc = &g->budgets[g->nbudgets++];
            memset(bc, 0, sizeof *bc);
            yaml_node_t *bn = node(L, *it);
            if (bn->type != YAML_MAPPING_NODE)
                return fail(L, bn, "each budget must be a mapping");
            if ((rc = load_budget(L, bn, bc)))
                return rc;
            for (size_t k = 0; k + 1 < g->nbudgets; k++)
                if (strcmp(g->budgets[k].name, bc->name) == 0)
                    return fail(L, bn, "budget '%s' is defined twice", bc->name);
        }
    }
    yaml_node_t *r = get(L, m, "rate_limits");
    if (r) {
        if (r->type != YAML_SEQUENCE_NODE)
            return fail(L, r, "'rate_limits' must be a list");
        for (yaml_node_item_t *it = r->data.sequence.items.start; it < r->data.sequence.items.top;
             it++) {
            if (g->nrate_limits >= AH_ROUTE_MAX_RULES)
                return fail(L, node(L, *it), "too many rate limits");
            g->rate_limits =
                ah_realloc(g->rate_limits, (g->nrate_limits + 1) * sizeof *g->rate_limits);
            ah_rate_limit_cfg_t *rl = &g->rate_limits[g->nrate_limits++];
            memset(rl, 0, sizeof *rl);
            yaml_node_t *rn = node(L, *it);
            if (rn->type != YAML_MAPPING_NODE)
                return fail(L, rn, "each rate limit must be a mapping");
            if ((rc = load_rate_limit(L, rn, rl)))
                return rc;
        }
    }
    return AH_E_OK;
}

/* ---- ahorro.state (state_config.h) ---- */

static ah_err_t check_state_url(loader_t *L, yaml_node_t *n, const char *url)
{
    char host[256];
    int port, db;
    if (ah_state_redis_parse_url(url, host, sizeof host, &port, &db, NULL, 0))
        return fail(L, n,
                    "'state' must be redis://[:PASSWORD@]HOST[:PORT][/DB] "
                    "(e.g. redis://127.0.0.1:6379/0), not '%s'",
                    url);
    return AH_E_OK;
}

static ah_err_t load_state(loader_t *L, yaml_node_t *m, ah_state_config_t *s)
{
    static const char *const known[] = {"url", "prefix", "on_failure", "timeout_ms", NULL};
    ah_err_t rc;
    s->line = (int)m->start_mark.line + 1;
    if (m->type == YAML_SCALAR_NODE) { /* the short form: state: redis://... */
        const char *v = scalar(m);
        if (strcmp(v, "local") == 0)
            return AH_E_OK;
        if ((rc = check_state_url(L, m, v)))
            return rc;
        ah_free(s->url);
        s->url = ah_strdup(v);
        return AH_E_OK;
    }
    if ((rc = check_keys(L, m, "state", known)) || (rc = get_string(L, m, "url", &s->url)) ||
        (rc = get_string(L, m, "prefix", &s->prefix)))
        return rc;
    if (s->url && (rc = check_state_url(L, get(L, m, "url"), s->url)))
        return rc;
    if (s->prefix && strlen(s->prefix) > AH_STATE_MAX_PREFIX)
        return fail(L, get(L, m, "prefix"), "'prefix' is at most %d bytes", AH_STATE_MAX_PREFIX);
    yaml_node_t *of = get(L, m, "on_failure");
    if (of) {
        const char *v = scalar(of);
        if (v && strcmp(v, "open") == 0)
            s->fail_open = 1;
        else if (v && strcmp(v, "closed") == 0)
            s->fail_open = 0;
        else
            return fail(L, of,
                        "'on_failure' must be open (admit requests while Redis cannot be "
                        "reached) or closed (refuse them)");
    }
    double t = AH_STATE_DEFAULT_TIMEOUT_MS;
    if ((rc = get_number(L, m, "timeout_ms", 1, AH_STATE_MAX_TIMEOUT_MS, &t)))
        return rc;
    s->timeout_ms = (int)t;
    return AH_E_OK;
}

/* ---- ahorro.shaping (shape_config.h) ---- */

void ah_shape_policy_unset(ah_shape_policy_t *p)
{
    *p = (ah_shape_policy_t){.strategy = AH_CTX_UNSET,
                             .max_turns = -1,
                             .max_tokens = -1,
                             .reserve_output = -1,
                             .trim_to = -1,
                             .top_k = -1,
                             .dense_weight = -1,
                             .lossless = -1,
                             .lossy_ratio = -1,
                             .lossy_system = -1,
                             .default_max_tokens = -1,
                             .cap_max_tokens = -1,
                             .summary_tokens = -1};
}

void ah_shape_policy_overlay(ah_shape_policy_t *base, const ah_shape_policy_t *top)
{
#define OVER(f)                                                                                    \
    if (top->f >= 0)                                                                               \
    base->f = top->f
    if (top->strategy != AH_CTX_UNSET)
        base->strategy = top->strategy;
    OVER(max_turns);
    OVER(max_tokens);
    OVER(reserve_output);
    OVER(trim_to);
    OVER(top_k);
    OVER(dense_weight);
    OVER(lossless);
    OVER(lossy_ratio);
    OVER(lossy_system);
    OVER(default_max_tokens);
    OVER(cap_max_tokens);
    OVER(summary_tokens);
#undef OVER
    if (top->preset)
        base->preset = top->preset;
    if (top->summarizer)
        base->summarizer = top->summarizer;
}

const ah_shape_preset_t *ah_shape_preset_find(const ah_shape_config_t *sc, const char *name)
{
    for (size_t i = 0; name && i < sc->npresets; i++)
        if (strcmp(sc->presets[i].name, name) == 0)
            return &sc->presets[i];
    return NULL;
}

static ah_err_t get_long(loader_t *L, yaml_node_t *m, const char *key, double lo, double hi,
                         long *out)
{
    double v = -1;
    ah_err_t rc = get_number(L, m, key, lo, hi, &v);
    if (rc)
        return rc;
    if (get(L, m, key)) {
        if (v != (double)(long)v)
            return fail(L, get(L, m, key), "'%s' must be a whole number", key);
        *out = (long)v;
    }
    return AH_E_OK;
}

static ah_err_t load_shape_policy(loader_t *L, yaml_node_t *m, const char *what,
                                  ah_shape_policy_t *p, int top)
{
    static const char *const known_top[] = {"lossless", "context", "retrieval", "lossy", "output",
                                            "presets",  "routes",  "features",  NULL};
    static const char *const known_layer[] = {"lossless", "context", "retrieval",
                                              "lossy",    "output",  NULL};
    static const char *const ctx_known[] = {"strategy",       "max_turns", "max_tokens",
                                            "reserve_output", "trim_to",   "summarizer",
                                            "summary_tokens", NULL};
    static const char *const ret_known[] = {"top_k", "dense_weight", NULL};
    static const char *const lossy_known[] = {"ratio", "system", NULL};
    static const char *const out_known[] = {"default_max_tokens", "max_tokens", "preset", NULL};
    ah_err_t rc;
    if ((rc = check_keys(L, m, what, top ? known_top : known_layer)) ||
        (rc = get_bool(L, m, "lossless", &p->lossless)))
        return rc;
    yaml_node_t *ctx = get(L, m, "context");
    if (ctx) {
        char *strategy = NULL;
        if ((rc = check_keys(L, ctx, "shaping.context", ctx_known)) ||
            (rc = get_string(L, ctx, "strategy", &strategy)))
            return rc;
        if (strategy) {
            if (strcmp(strategy, "none") == 0)
                p->strategy = AH_CTX_NONE;
            else if (strcmp(strategy, "sliding_window") == 0)
                p->strategy = AH_CTX_SLIDING;
            else if (strcmp(strategy, "token_budget") == 0)
                p->strategy = AH_CTX_BUDGET;
            else if (strcmp(strategy, "summarize") == 0)
                p->strategy = AH_CTX_SUMMARIZE;
            else {
                ah_free(strategy);
                return fail(L, get(L, ctx, "strategy"),
                            "unknown context strategy (known: none, sliding_window, "
                            "token_budget, summarize)");
            }
            ah_free(strategy);
        }
        if ((rc = get_long(L, ctx, "max_turns", 0, 1e6, &p->max_turns)) ||
            (rc = get_long(L, ctx, "max_tokens", 0, 1e8, &p->max_tokens)) ||
            (rc = get_long(L, ctx, "reserve_output", 0, 1e7, &p->reserve_output)) ||
            (rc = get_number(L, ctx, "trim_to", 0.05, 1, &p->trim_to)) ||
            (rc = get_long(L, ctx, "summary_tokens", 16, 1e5, &p->summary_tokens)) ||
            (rc = get_string(L, ctx, "summarizer", &p->summarizer)))
            return rc;
    }
    yaml_node_t *ret = get(L, m, "retrieval");
    if (ret && ((rc = check_keys(L, ret, "shaping.retrieval", ret_known)) ||
                (rc = get_long(L, ret, "top_k", 0, 4096, &p->top_k)) ||
                (rc = get_number(L, ret, "dense_weight", 0, 1, &p->dense_weight))))
        return rc;
    yaml_node_t *lossy = get(L, m, "lossy");
    if (lossy && ((rc = check_keys(L, lossy, "shaping.lossy", lossy_known)) ||
                  (rc = get_number(L, lossy, "ratio", 0.05, 1, &p->lossy_ratio)) ||
                  (rc = get_bool(L, lossy, "system", &p->lossy_system))))
        return rc;
    yaml_node_t *out = get(L, m, "output");
    if (out && ((rc = check_keys(L, out, "shaping.output", out_known)) ||
                (rc = get_long(L, out, "default_max_tokens", 1, 1e7, &p->default_max_tokens)) ||
                (rc = get_long(L, out, "max_tokens", 1, 1e7, &p->cap_max_tokens)) ||
                (rc = get_string(L, out, "preset", &p->preset))))
        return rc;
    return AH_E_OK;
}

static void shape_policy_free(ah_shape_policy_t *p)
{
    ah_free(p->preset);
    ah_free(p->summarizer);
    p->preset = p->summarizer = NULL;
}

static void shape_free(ah_shape_config_t *sc)
{
    shape_policy_free(&sc->policy);
    for (size_t i = 0; i < sc->nroutes; i++) {
        ah_free(sc->routes[i].name);
        shape_policy_free(&sc->routes[i].policy);
    }
    for (size_t i = 0; i < sc->nfeatures; i++) {
        ah_free(sc->features[i].name);
        shape_policy_free(&sc->features[i].policy);
    }
    for (size_t i = 0; i < sc->npresets; i++)
        ah_free(sc->presets[i].name);
    ah_free(sc->routes);
    ah_free(sc->features);
    ah_free(sc->presets);
    memset(sc, 0, sizeof *sc);
}

static void add_preset(ah_shape_config_t *sc, const char *name, double t, double top_p)
{
    sc->presets = ah_realloc(sc->presets, (sc->npresets + 1) * sizeof *sc->presets);
    sc->presets[sc->npresets++] =
        (ah_shape_preset_t){.name = ah_strdup(name), .temperature = t, .top_p = top_p};
}

static ah_err_t load_shape_layers(loader_t *L, yaml_node_t *m, const char *key,
                                  ah_shape_layer_t **arr, size_t *n)
{
    yaml_node_t *map = get(L, m, key);
    if (!map)
        return AH_E_OK;
    if (map->type != YAML_MAPPING_NODE)
        return fail(L, map, "'shaping.%s' must map a name to its shaping settings", key);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *name = scalar(node(L, p->key));
        if (!name || !*name)
            return fail(L, node(L, p->key), "'shaping.%s' keys must be names", key);
        *arr = ah_realloc(*arr, (*n + 1) * sizeof **arr);
        ah_shape_layer_t *layer = &(*arr)[(*n)++];
        layer->name = ah_strdup(name);
        layer->line = (int)node(L, p->key)->start_mark.line + 1;
        ah_shape_policy_unset(&layer->policy);
        char what[64];
        snprintf(what, sizeof what, "shaping.%s.%s", key, name);
        ah_err_t rc = load_shape_policy(L, node(L, p->value), what, &layer->policy, 0);
        if (rc)
            return rc;
    }
    return AH_E_OK;
}

static ah_err_t check_shape_preset(loader_t *L, ah_shape_config_t *sc, const ah_shape_policy_t *p,
                                   int line)
{
    if (p->preset && !ah_shape_preset_find(sc, p->preset))
        return fail_line(L, line, "unknown sampling preset '%s' (define it under shaping.presets)",
                         p->preset);
    if (p->strategy == AH_CTX_SUMMARIZE && !p->summarizer && !sc->policy.summarizer)
        return fail_line(L, line,
                         "context strategy summarize needs 'summarizer': the model alias that "
                         "writes the summaries");
    return AH_E_OK;
}

/* Every summarizer names a model of model_list (checked once deployments are known). */
static ah_err_t check_shaping(loader_t *L, const ah_config_t *c)
{
    const ah_shape_config_t *sc = &c->shape;
    const ah_shape_policy_t *ps[1 + 64];
    int lines[1 + 64], n = 0;
    ps[n] = &sc->policy;
    lines[n++] = 0;
    for (size_t i = 0; i < sc->nroutes && n < 65; i++) {
        ps[n] = &sc->routes[i].policy;
        lines[n++] = sc->routes[i].line;
    }
    for (size_t i = 0; i < sc->nfeatures && n < 65; i++) {
        ps[n] = &sc->features[i].policy;
        lines[n++] = sc->features[i].line;
    }
    for (int i = 0; i < n; i++)
        if (ps[i]->summarizer && !ah_config_has_alias(c, ps[i]->summarizer))
            return fail_line(L, lines[i], "summarizer '%s' is not a model_name of model_list",
                             ps[i]->summarizer);
    return AH_E_OK;
}

/* ahorro.shaping: context windows, compression, output caps. */
static ah_err_t load_shaping(loader_t *L, yaml_node_t *m, ah_shape_config_t *sc)
{
    ah_err_t rc;
    sc->enabled = 1;
    if ((rc = load_shape_policy(L, m, "ahorro.shaping", &sc->policy, 1)))
        return rc;
    yaml_node_t *presets = get(L, m, "presets");
    if (presets) {
        if (presets->type != YAML_MAPPING_NODE)
            return fail(L, presets, "'shaping.presets' must map a name to its sampling settings");
        static const char *const pk[] = {"temperature", "top_p", NULL};
        for (yaml_node_pair_t *p = presets->data.mapping.pairs.start;
             p < presets->data.mapping.pairs.top; p++) {
            const char *name = scalar(node(L, p->key));
            yaml_node_t *v = node(L, p->value);
            double t = -1, tp = -1;
            if (!name || !*name)
                return fail(L, node(L, p->key), "preset names must be strings");
            if ((rc = check_keys(L, v, "shaping.presets", pk)) ||
                (rc = get_number(L, v, "temperature", 0, 2, &t)) ||
                (rc = get_number(L, v, "top_p", 0, 1, &tp)))
                return rc;
            add_preset(sc, name, t, tp);
        }
    }
    /* built-in presets; configured ones of the same name come first and win */
    add_preset(sc, "factual", 0.1, -1);
    add_preset(sc, "code", 0.2, -1);
    add_preset(sc, "balanced", 0.5, -1);
    add_preset(sc, "creative", 0.8, -1);
    if ((rc = load_shape_layers(L, m, "routes", &sc->routes, &sc->nroutes)) ||
        (rc = load_shape_layers(L, m, "features", &sc->features, &sc->nfeatures)))
        return rc;
    int line = (int)m->start_mark.line + 1;
    if ((rc = check_shape_preset(L, sc, &sc->policy, line)))
        return rc;
    for (size_t i = 0; i < sc->nroutes; i++)
        if ((rc = check_shape_preset(L, sc, &sc->routes[i].policy, sc->routes[i].line)))
            return rc;
    for (size_t i = 0; i < sc->nfeatures; i++)
        if ((rc = check_shape_preset(L, sc, &sc->features[i].policy, sc->features[i].line)))
            return rc;
    return AH_E_OK;
}

/* ---- ahorro.logging, ahorro.tracing (observe_config.h) ---- */

static ah_err_t load_logging(loader_t *L, yaml_node_t *m, ah_observe_config_t *o)
{
    static const char *const known[] = {"requests", "file", "prompts", NULL};
    ah_err_t rc;
    if ((rc = check_keys(L, m, "logging", known)) ||
        (rc = get_bool(L, m, "requests", &o->log_requests)) ||
        (rc = get_bool(L, m, "prompts", &o->log_prompts)) ||
        (rc = get_string(L, m, "file", &o->log_file)))
        return rc;
    return AH_E_OK;
}

static ah_err_t load_tracing(loader_t *L, yaml_node_t *m, ah_observe_config_t *o)
{
    static const char *const known[] = {"endpoint", "service_name", "sample_ratio", "headers",
                                        NULL};
    ah_err_t rc;
    if ((rc = check_keys(L, m, "tracing", known)) ||
        (rc = get_string(L, m, "endpoint", &o->trace_endpoint)) ||
        (rc = get_string(L, m, "service_name", &o->trace_service)) ||
        (rc = get_number(L, m, "sample_ratio", 0, 1, &o->trace_ratio)))
        return rc;
    if (!o->trace_endpoint || strncmp(o->trace_endpoint, "http", 4) != 0)
        return fail(L, m, "'tracing.endpoint' must be the collector's http:// or https:// URL");
    yaml_node_t *h = get(L, m, "headers");
    if (!h)
        return AH_E_OK;
    if (h->type != YAML_MAPPING_NODE)
        return fail(L, h, "'tracing.headers' must map header names to values");
    for (yaml_node_pair_t *p = h->data.mapping.pairs.start; p < h->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
        if (!k || !v || !*k || strpbrk(k, ":\r\n") || strpbrk(v, "\r\n"))
            return fail(L, node(L, p->key),
                        "'tracing.headers' needs plain header names and values");
        if (o->ntrace_headers == AH_TRACING_MAX_HEADERS)
            return fail(L, h, "'tracing.headers': at most %d", AH_TRACING_MAX_HEADERS);
        size_t n = strlen(k) + strlen(v) + 3;
        char *line = ah_malloc(n);
        snprintf(line, n, "%s: %s", k, v);
        o->trace_headers[o->ntrace_headers++] = line;
    }
    return AH_E_OK;
}

/* Without ahorro.tracing: OpenTelemetry's own environment variables. */
static void tracing_from_env(ah_observe_config_t *o)
{
    const char *e = getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    if (!e || !*e)
        e = getenv("OTEL_EXPORTER_OTLP_ENDPOINT");
    if (o->trace_endpoint || !e || strncmp(e, "http", 4) != 0)
        return;
    o->trace_endpoint = ah_strdup(e);
    const char *s = getenv("OTEL_SERVICE_NAME");
    if (s && *s && !o->trace_service)
        o->trace_service = ah_strdup(s);
}

static void observe_free(ah_observe_config_t *o)
{
    ah_free(o->log_file);
    ah_free(o->trace_endpoint);
    ah_free(o->trace_service);
    for (size_t i = 0; i < o->ntrace_headers; i++)
        ah_free(o->trace_headers[i]);
}

/* ---- ahorro.metrics (config.h: ah_metrics_config_t) ---- */

/* ahorro.metrics: the request tags that become labels on /metrics, and how
 * many distinct values each may take before the rest count as "other".
 * Tag names must be Prometheus label names that no metric already uses. */
static ah_err_t load_metrics(loader_t *L, yaml_node_t *m, ah_metrics_config_t *mc)
{
    static const char *const known[] = {"tags", "max_values", NULL};
    static const char *const taken[] = {"model",     "provider", "status", "route", "type",
                                        "mechanism", "result",   "le",     "op",    NULL};
    ah_err_t rc;
    double v = AH_METRICS_DEFAULT_TAG_VALUES;
    if ((rc = check_keys(L, m, "ahorro.metrics", known)) ||
        (rc = get_number(L, m, "max_values", 1, AH_METRICS_MAX_TAG_VALUES, &v)))
        return rc;
    mc->max_values = (int)v;
    yaml_node_t *t = get(L, m, "tags");
    if (!t)
        return AH_E_OK;
    if (t->type != YAML_SEQUENCE_NODE)
        return fail(L, t, "'metrics.tags' must be a list of tag names");
    for (yaml_node_item_t *it = t->data.sequence.items.start; it < t->data.sequence.items.top;
         it++) {
        yaml_node_t *n = node(L, *it);
        const char *name = scalar(n);
        size_t len = name ? strlen(name) : 0;
        int ok = len > 0 && len <= AH_METRICS_MAX_TAG_NAME && !(name[0] >= '0' && name[0] <= '9') &&
                 strncmp(name, "__", 2) != 0;
        for (size_t i = 0; ok && i < len; i++)
            ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
                 (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
        if (!ok)
            return fail(L, n,
                        "'metrics.tags': a tag name must be a Prometheus label name "
                        "([a-zA-Z_][a-zA-Z0-9_]*, at most %d characters)",
                        AH_METRICS_MAX_TAG_NAME);
        for (int i = 0; taken[i]; i++)
            if (strcmp(name, taken[i]) == 0)
                return fail(L, n, "'metrics.tags': '%s' is already a label of ahorro's metrics",
                            name);
        for (int i = 0; i < mc->ntags; i++)
            if (strcmp(name, mc->tags[i]) == 0)
                return fail(L, n, "'metrics.tags': '%s' is listed twice", name);
        if (mc->ntags == AH_METRICS_MAX_TAGS)
            return fail(L, n, "'metrics.tags': at most %d tags (each multiplies the series)",
                        AH_METRICS_MAX_TAGS);
        snprintf(mc->tags[mc->ntags++], sizeof mc->tags[0], "%s", name);
    }
    return AH_E_OK;
}

/* ---- ahorro.experiments (experiment_config.h; docs/experiments.md) ---- */

static void experiments_free(ah_experiments_config_t *ec)
{
    for (size_t i = 0; i < ec->n; i++) {
        ah_experiment_cfg_t *e = &ec->list[i];
        ah_free(e->name);
        ah_free(e->route);
        for (int j = 0; j < e->nwhen; j++) {
            ah_free(e->when_key[j]);
            ah_free(e->when_value[j]);
        }
        for (int j = 0; j < e->narms; j++) {
            ah_free(e->arms[j].name);
            ah_free(e->arms[j].model);
            ah_free(e->arms[j].prompt);
        }
    }
    ah_free(ec->list);
    ec->list = NULL;
    ec->n = 0;
}

/* Names appear in tags ("experiment=NAME", "arm=NAME") and headers: the
 * tag rules, and no '/' (the header joins them with it). */
static int experiment_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AH_EXPERIMENT_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == '=' || s[i] == ',' || s[i] == '/')
            return 0;
    return 1;
}

static ah_err_t load_arm(loader_t *L, yaml_node_t *m, ah_experiment_cfg_t *e)
{
    static const char *const known[] = {"name",        "weight",     "model", "prompt",
                                        "temperature", "max_tokens", NULL};
    ah_experiment_arm_t *a = &e->arms[e->narms++];
    ah_err_t rc;
    double mt = 0;
    a->temperature = -1;
    if ((rc = check_keys(L, m, "experiments[].arms[]", known)) ||
        (rc = get_string(L, m, "name", &a->name)) ||
        (rc = get_number(L, m, "weight", 0, 1e9, &a->weight)) ||
        (rc = get_string(L, m, "model", &a->model)) ||
        (rc = get_string(L, m, "prompt", &a->prompt)) ||
        (rc = get_number(L, m, "temperature", 0, 2, &a->temperature)) ||
        (rc = get_number(L, m, "max_tokens", 1, 1e7, &mt)))
        return rc;
    a->max_tokens = (long)mt;
    if (!experiment_name_ok(a->name))
        return fail(L, m,
                    "an arm needs a 'name' of 1 to %d characters without spaces, '=', ',' or '/'",
                    AH_EXPERIMENT_MAX_NAME);
    if (!(a->weight > 0))
        return fail(L, m, "arm '%s' needs a 'weight' above 0", a->name);
    for (int j = 0; j < e->narms - 1; j++)
        if (strcmp(e->arms[j].name, a->name) == 0)
            return fail(L, m, "arm '%s' is listed twice", a->name);
    return AH_E_OK;
}

static ah_err_t load_experiment_when(loader_t *L, yaml_node_t *w, ah_experiment_cfg_t *e)
{
    static const char *const known[] = {"tags", NULL};
    ah_err_t rc = check_keys(L, w, "experiments[].when", known);
    if (rc)
        return rc;
    yaml_node_t *t = get(L, w, "tags");
    if (!t)
        return AH_E_OK;
    if (t->type != YAML_MAPPING_NODE)
        return fail(L, t, "'when.tags' must be a mapping of tag: value");
    for (yaml_node_pair_t *p = t->data.mapping.pairs.start; p < t->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
        if (!k || !v || !*k || !*v)
            return fail(L, node(L, p->key), "'when.tags' must map tag names to values");
        if (e->nwhen == AH_EXPERIMENT_MAX_WHEN)
            return fail(L, node(L, p->key), "'when.tags': at most %d tags", AH_EXPERIMENT_MAX_WHEN);
        e->when_key[e->nwhen] = ah_strdup(k);
        e->when_value[e->nwhen++] = ah_strdup(v);
    }
    return AH_E_OK;
}

static ah_err_t load_experiment_policy(loader_t *L, yaml_node_t *p, ah_experiment_cfg_t *e)
{
    static const char *const known[] = {"kind",  "min_quality", "metric",
                                        "floor", "refresh_s",   NULL};
    char *kind = NULL, *metric = NULL;
    ah_err_t rc;
    if ((rc = check_keys(L, p, "experiments[].policy", known)) ||
        (rc = get_string(L, p, "kind", &kind)) || (rc = get_string(L, p, "metric", &metric)) ||
        (rc = get_number(L, p, "min_quality", 0, 1, &e->min_quality)) ||
        (rc = get_number(L, p, "floor", 0, 0.5, &e->floor)) ||
        (rc = get_number(L, p, "refresh_s", 1, 86400, &e->refresh_s)))
        goto out;
    if (kind && strcmp(kind, "bandit") == 0)
        e->policy = AH_POLICY_BANDIT;
    else if (kind && strcmp(kind, "fixed") != 0)
        rc = fail(L, get(L, p, "kind"), "'policy.kind' must be fixed or bandit");
    if (rc || !metric)
        goto out;
    if (strcmp(metric, "judge") == 0)
        e->metric = AH_METRIC_JUDGE; /* check_judging: the route must be judged */
    else if (strcmp(metric, "feedback") != 0)
        rc = fail(L, get(L, p, "metric"), "'policy.metric' must be feedback or judge");
out:
    ah_free(kind);
    ah_free(metric);
    return rc;
}

static ah_err_t load_experiment(loader_t *L, yaml_node_t *m, ah_experiment_cfg_t *e)
{
    static const char *const known[] = {"name", "route", "when", "sticky", "arms", "policy", NULL};
    char *sticky = NULL;
    ah_err_t rc;
    e->line = (int)m->start_mark.line + 1;
    e->floor = 0.05;
    e->refresh_s = 60;
    if ((rc = check_keys(L, m, "experiments[]", known)) ||
        (rc = get_string(L, m, "name", &e->name)) || (rc = get_string(L, m, "route", &e->route)) ||
        (rc = get_string(L, m, "sticky", &sticky)))
        goto out;
    if (!experiment_name_ok(e->name)) {
        rc = fail(L, m,
                  "an experiment needs a 'name' of 1 to %d characters without spaces, '=', ',' "
                  "or '/'",
                  AH_EXPERIMENT_MAX_NAME);
        goto out;
    }
    if (!e->route || !*e->route) {
        rc = fail(L, m, "experiment '%s' needs 'route' (the model or alias it splits)", e->name);
        goto out;
    }
    if (sticky && strcmp(sticky, "key") == 0)
        e->sticky = AH_STICKY_KEY;
    else if (sticky && strcmp(sticky, "user") != 0) {
        rc = fail(L, get(L, m, "sticky"), "'sticky' must be user or key");
        goto out;
    }
    yaml_node_t *w = get(L, m, "when"), *p = get(L, m, "policy"), *arms = get(L, m, "arms");
    if ((w && (rc = load_experiment_when(L, w, e))) ||
        (p && (rc = load_experiment_policy(L, p, e))))
        goto out;
    if (!arms || arms->type != YAML_SEQUENCE_NODE ||
        arms->data.sequence.items.top - arms->data.sequence.items.start < 2) {
        rc =
            fail(L, arms ? arms : m, "experiment '%s' needs 'arms': a list of at least 2", e->name);
        goto out;
    }
    for (yaml_node_item_t *it = arms->data.sequence.items.start; it < arms->data.sequence.items.top;
         it++) {
        if (e->narms == AH_EXPERIMENT_MAX_ARMS) {
            rc = fail(L, node(L, *it), "experiment '%s': at most %d arms", e->name,
                      AH_EXPERIMENT_MAX_ARMS);
            goto out;
        }
        if ((rc = load_arm(L, node(L, *it), e)))
            goto out;
    }
out:
    ah_free(sticky);
    return rc;
}

/* ahorro.experiments: a list; every name unique. Aliases are checked once
 * model_list is loaded (check_experiments). */
static ah_err_t load_experiments(loader_t *L, yaml_node_t *m, ah_experiments_config_t *ec)
{
    if (m->type != YAML_SEQUENCE_NODE)
        return fail(L, m, "'ahorro.experiments' must be a list");
    size_t n = (size_t)(m->data.sequence.items.top - m->data.sequence.items.start);
    if (n > AH_EXPERIMENT_MAX)
        return fail(L, m, "at most %d experiments", AH_EXPERIMENT_MAX);
    ec->list = ah_calloc(n ? n : 1, sizeof *ec->list);
    for (yaml_node_item_t *it = m->data.sequence.items.start; it < m->data.sequence.items.top;
         it++) {
        ah_experiment_cfg_t *e = &ec->list[ec->n++];
        ah_err_t rc = load_experiment(L, node(L, *it), e);
        if (rc)
            return rc;
        for (size_t j = 0; j + 1 < ec->n; j++)
            if (strcmp(ec->list[j].name, e->name) == 0)
                return fail(L, node(L, *it), "experiment '%s' is defined twice", e->name);
    }
    return AH_E_OK;
}

/* Every arm's model must be served; two experiments may not claim the same
 * route without a tag condition to tell them apart (the first would win). */
static ah_err_t check_experiments(loader_t *L, const ah_config_t *c)
{
    const ah_experiments_config_t *ec = &c->experiments;
    for (size_t i = 0; i < ec->n; i++) {
        const ah_experiment_cfg_t *e = &ec->list[i];
        for (int j = 0; j < e->narms; j++) {
            const char *m = e->arms[j].model;
            if (m && !ah_config_has_alias(c, m) && !ah_config_router(c, m))
                return fail_line(L, e->line,
                                 "experiment '%s', arm '%s': model '%s' is not in model_list "
                                 "(nor a router)",
                                 e->name, e->arms[j].name, m);
        }
        if (!ah_config_has_alias(c, e->route) && !ah_config_router(c, e->route))
            return fail_line(L, e->line, "experiment '%s': route '%s' is not in model_list",
                             e->name, e->route);
    }
    return AH_E_OK;
}

/* ---- ahorro.judging (judge_config.h; docs/experiments.md) ---- */

static void judging_free(ah_judging_config_t *jc)
{
    for (size_t i = 0; i < jc->n; i++) {
        ah_judging_cfg_t *j = &jc->list[i];
        ah_free(j->route);
        ah_free(j->judge);
        for (int k = 0; k < j->ncriteria; k++)
            ah_free(j->criteria[k]);
        for (int k = 0; k < j->nwhen; k++) {
            ah_free(j->when_key[k]);
            ah_free(j->when_value[k]);
        }
    }
    ah_free(jc->list);
    jc->list = NULL;
    jc->n = 0;
}

/* A rubric's criterion: what ah_judge_prompt accepts ([a-z_], 1 to 32
 * bytes, not "reason", which the verdict uses for its sentence). */
static int criterion_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > AH_JUDGING_MAX_CRITERION || strcmp(s, "reason") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_'))
            return 0;
    return 1;
}

static ah_err_t load_judging_entry(loader_t *L, yaml_node_t *m, ah_judging_cfg_t *j)
{
    static const char *const known[] = {"route", "judge", "sample", "criteria", "when", NULL};
    ah_err_t rc;
    j->line = (int)m->start_mark.line + 1;
    j->sample = -1;
    if (m->type != YAML_MAPPING_NODE)
        return fail(L, m, "a judging entry must be a mapping (route, judge, sample, ...)");
    if ((rc = check_keys(L, m, "judging[]", known)) ||
        (rc = get_string(L, m, "route", &j->route)) ||
        (rc = get_string(L, m, "judge", &j->judge)) ||
        (rc = get_number(L, m, "sample", 0, 1, &j->sample)))
        return rc;
    if (!j->route || !*j->route)
        return fail(L, m,
                    "a judging entry needs 'route' (the model or alias whose answers are "
                    "judged)");
    if (!j->judge || !*j->judge)
        return fail(L, m, "judging of '%s' needs 'judge' (the alias that grades)", j->route);
    if (j->sample < 0)
        return fail(L, m, "judging of '%s' needs 'sample' (the share judged, 0 to 1)", j->route);
    yaml_node_t *cr = get(L, m, "criteria"), *w = get(L, m, "when");
    if (cr) {
        if (cr->type != YAML_SEQUENCE_NODE ||
            cr->data.sequence.items.top == cr->data.sequence.items.start)
            return fail(L, cr, "'criteria' must be a list of 1 to %d names",
                        AH_JUDGING_MAX_CRITERIA);
        for (yaml_node_item_t *it = cr->data.sequence.items.start; it < cr->data.sequence.items.top;
             it++) {
            const char *v = scalar(node(L, *it));
            if (j->ncriteria == AH_JUDGING_MAX_CRITERIA)
                return fail(L, node(L, *it), "'criteria': at most %d", AH_JUDGING_MAX_CRITERIA);
            if (!criterion_ok(v))
                return fail(L, node(L, *it),
                            "criterion '%s' must be 1 to %d characters of a-z and '_', and not "
                            "'reason'",
                            v ? v : "?", AH_JUDGING_MAX_CRITERION);
            for (int k = 0; k < j->ncriteria; k++)
                if (strcmp(j->criteria[k], v) == 0)
                    return fail(L, node(L, *it), "criterion '%s' is listed twice", v);
            j->criteria[j->ncriteria++] = ah_strdup(v);
        }
    }
    if (w) {
        static const char *const wknown[] = {"tags", NULL};
        if ((rc = check_keys(L, w, "judging[].when", wknown)))
            return rc;
        yaml_node_t *t = get(L, w, "tags");
        if (t && t->type != YAML_MAPPING_NODE)
            return fail(L, t, "'when.tags' must be a mapping of tag: value");
        for (yaml_node_pair_t *p = t ? t->data.mapping.pairs.start : NULL;
             t && p < t->data.mapping.pairs.top; p++) {
            const char *k = scalar(node(L, p->key)), *v = scalar(node(L, p->value));
            if (!k || !v || !*k || !*v)
                return fail(L, node(L, p->key), "'when.tags' must map tag names to values");
            if (j->nwhen == AH_JUDGING_MAX_WHEN)
                return fail(L, node(L, p->key), "'when.tags': at most %d tags",
                            AH_JUDGING_MAX_WHEN);
            j->when_key[j->nwhen] = ah_strdup(k);
            j->when_value[j->nwhen++] = ah_strdup(v);
        }
    }
    return AH_E_OK;
}

/* ahorro.judging: a list of at most AH_JUDGING_MAX entries; aliases are
 * checked once model_list is loaded (check_judging). */
static ah_err_t load_judging(loader_t *L, yaml_node_t *m, ah_judging_config_t *jc)
{
    if (m->type != YAML_SEQUENCE_NODE)
        return fail(L, m, "'ahorro.judging' must be a list");
    size_t n = (size_t)(m->data.sequence.items.top - m->data.sequence.items.start);
    if (n > AH_JUDGING_MAX)
        return fail(L, m, "at most %d judging entries", AH_JUDGING_MAX);
    jc->list = ah_calloc(n ? n : 1, sizeof *jc->list);
    for (yaml_node_item_t *it = m->data.sequence.items.start; it < m->data.sequence.items.top;
         it++) {
        ah_judging_cfg_t *j = &jc->list[jc->n++];
        ah_err_t rc = load_judging_entry(L, node(L, *it), j);
        if (rc)
            return rc;
        for (size_t k = 0; k + 1 < jc->n; k++)
            if (strcmp(jc->list[k].route, j->route) == 0 && !jc->list[k].nwhen && !j->nwhen)
                return fail(L, node(L, *it),
                            "route '%s' is judged twice without a 'when' to tell the entries "
                            "apart",
                            j->route);
    }
    return AH_E_OK;
}

/* Judges and routes must be served; a bandit on metric judge needs its
 * route judged. */
static ah_err_t check_judging(loader_t *L, const ah_config_t *c)
{
    const ah_judging_config_t *jc = &c->judging;
    for (size_t i = 0; i < jc->n; i++) {
        const ah_judging_cfg_t *j = &jc->list[i];
        if (!ah_config_has_alias(c, j->judge) && !ah_config_router(c, j->judge))
            return fail_line(L, j->line,
                             "judging of '%s': judge '%s' is not in model_list (nor a router)",
                             j->route, j->judge);
        if (!ah_config_has_alias(c, j->route) && !ah_config_router(c, j->route))
            return fail_line(L, j->line, "judging: route '%s' is not in model_list (nor a router)",
                             j->route);
    }
    for (size_t i = 0; i < c->experiments.n; i++) {
        const ah_experiment_cfg_t *e = &c->experiments.list[i];
        int judged = 0;
        for (size_t k = 0; k < jc->n && !judged; k++)
            judged = strcmp(jc->list[k].route, e->route) == 0 && jc->list[k].sample > 0;
        if (e->policy == AH_POLICY_BANDIT && e->metric == AH_METRIC_JUDGE && !judged)
            return fail_line(L, e->line,
                             "experiment '%s': policy.metric judge needs an 'ahorro.judging' "
                             "entry for route '%s' with a sample above 0",
                             e->name, e->route);
    }
    return AH_E_OK;
}

/* ---- ahorro.batch (batch_config.h; docs/batch.md) ---- */

static ah_err_t load_batch(loader_t *L, yaml_node_t *m, ah_batch_config_t *b)
{
    static const char *const known[] = {"max_file_bytes", "concurrency", "poll_s", "lease_s", NULL};
    ah_err_t rc;
    if (m->type != YAML_MAPPING_NODE)
        return fail(L, m,
                    "'ahorro.batch' must be a mapping (max_file_bytes, concurrency, poll_s, "
                    "lease_s)");
    if ((rc = check_keys(L, m, "batch", known)))
        return rc;
    double v = (double)b->max_file_bytes;
    if ((rc = get_number(L, m, "max_file_bytes", 1024, (double)AH_BATCH_MAX_MAX_FILE_BYTES, &v)))
        return rc;
    b->max_file_bytes = (size_t)v;
    v = b->concurrency;
    if ((rc = get_number(L, m, "concurrency", 1, AH_BATCH_MAX_CONCURRENCY, &v)))
        return rc;
    b->concurrency = (int)v;
    if ((rc = get_number(L, m, "poll_s", AH_BATCH_MIN_POLL_S, AH_BATCH_MAX_POLL_S, &b->poll_s)))
        return rc;
    if ((rc = get_number(L, m, "lease_s", AH_BATCH_MIN_LEASE_S, AH_BATCH_MAX_LEASE_S, &b->lease_s)))
        return rc;
    return AH_E_OK;
}

/* ---- ahorro.ledger (ledger_config.h) ---- */

static int is_postgres_url(const char *v)
{
    return strncmp(v, "postgres://", 11) == 0 || strncmp(v, "postgresql://", 13) == 0 ||
           strchr(v, '=') != NULL; /* libpq's key=value form */
}

static ah_err_t load_ledger(loader_t *L, yaml_node_t *m, ah_ledger_config_t *lc)
{
    static const char *const known[] = {"url", "spool", "spool_max_mb", "timeout_ms", NULL};
    ah_err_t rc;
    lc->line = (int)m->start_mark.line + 1;
    if (m->type == YAML_SCALAR_NODE) { /* the short form: ledger: postgres://... */
        const char *v = scalar(m);
        if (v && (strcmp(v, "sqlite") == 0 || strcmp(v, "local") == 0))
            return AH_E_OK;
        if (!v || !is_postgres_url(v))
            return fail(L, m,
                        "'ledger' must be sqlite (the default) or a PostgreSQL connection "
                        "string (postgres://USER:PASSWORD@HOST:PORT/DB)");
        ah_free(lc->url);
        lc->url = ah_strdup(v);
        return AH_E_OK;
    }
    if ((rc = check_keys(L, m, "ledger", known)) || (rc = get_string(L, m, "url", &lc->url)) ||
        (rc = get_string(L, m, "spool", &lc->spool)))
        return rc;
    if (lc->url && !is_postgres_url(lc->url))
        return fail(L, get(L, m, "url"),
                    "'url' must be a PostgreSQL connection string "
                    "(postgres://USER:PASSWORD@HOST:PORT/DB)");
    if (lc->spool && !*lc->spool)
        return fail(L, get(L, m, "spool"), "'spool' must name a directory");
    double v = AH_LEDGER_DEFAULT_SPOOL_MB;
    if ((rc = get_number(L, m, "spool_max_mb", 1, AH_LEDGER_MAX_SPOOL_MB, &v)))
        return rc;
    lc->spool_max_mb = (int)v;
    v = AH_LEDGER_DEFAULT_TIMEOUT_MS;
    if ((rc = get_number(L, m, "timeout_ms", 100, AH_LEDGER_MAX_TIMEOUT_MS, &v)))
        return rc;
    lc->timeout_ms = (int)v;
    return AH_E_OK;
}

static ah_err_t load_ahorro(loader_t *L, yaml_node_t *m, ah_config_t *c)
{
    static const char *const known[] = {
        "listen",  "threads", "db",          "prices",  "limits",  "cache",   "routing",
        "budgets", "shaping", "rate_limits", "logging", "tracing", "metrics", "experiments",
        "judging", "batch",   "state",       "ledger",  NULL};
    ah_err_t rc;
    if (m->type != YAML_MAPPING_NODE)
        return fail(L, m, "'ahorro' must be a mapping");
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(L, p->key));
        int ok = 0;
        for (int i = 0; k && known[i]; i++)
            ok |= strcmp(k, known[i]) == 0;
        if (!ok)
            return fail(L, node(L, p->key),
                        "unknown setting 'ahorro.%s' (known: listen, threads, "
                        "db, prices, limits, cache, routing, budgets, rate_limits, shaping, "
                        "logging, tracing, metrics, experiments, judging, batch, state, ledger)",
                        k ? k : "?");
    }
    char *listen = NULL;
    if ((rc = get_string(L, m, "listen", &listen)))
        return rc;
    if (listen) {
        rc = parse_listen(listen, &c->listen_host, &c->listen_port);
        ah_free(listen);
        if (rc)
            return fail(L, get(L, m, "listen"), "'listen' must be HOST:PORT");
    }
    double v = c->threads;
    if ((rc = get_number(L, m, "threads", 0, AH_MAX_THREADS, &v)))
        return rc;
    c->threads = (int)v;
    if ((rc = get_string(L, m, "db", &c->db_path)) ||
        (rc = get_string(L, m, "prices", &c->prices_path)))
        return rc;
    yaml_node_t *cache = get(L, m, "cache");
    if (cache && (rc = load_cache(L, cache, &c->cache)))
        return rc;
    yaml_node_t *routing = get(L, m, "routing");
    if (routing && (rc = load_routing(L, routing, &c->routing)))
        return rc;
    if ((rc = load_guard_lists(L, m, &c->guard)))
        return rc;
    yaml_node_t *state = get(L, m, "state");
    if (state && (rc = load_state(L, state, &c->state)))
        return rc;
    yaml_node_t *ledger = get(L, m, "ledger");
    if (ledger && (rc = load_ledger(L, ledger, &c->ledger)))
        return rc;
    yaml_node_t *shaping = get(L, m, "shaping");
    if (shaping && (rc = load_shaping(L, shaping, &c->shape)))
        return rc;
    yaml_node_t *logging = get(L, m, "logging"), *tracing = get(L, m, "tracing");
    if ((logging && (rc = load_logging(L, logging, &c->observe))) ||
        (tracing && (rc = load_tracing(L, tracing, &c->observe))))
        return rc;
    yaml_node_t *metrics = get(L, m, "metrics"); /* docs/metrics.md */
    if (metrics && (rc = load_metrics(L, metrics, &c->metrics)))
        return rc;
    yaml_node_t *exps = get(L, m, "experiments");
    if (exps && (rc = load_experiments(L, exps, &c->experiments)))
        return rc;
    yaml_node_t *judging = get(L, m, "judging");
    if (judging && (rc = load_judging(L, judging, &c->judging)))
        return rc;
    yaml_node_t *batch = get(L, m, "batch");
    if (batch && (rc = load_batch(L, batch, &c->batch)))
        return rc;
    yaml_node_t *lim = get(L, m, "limits");
    if (lim) {
        v = (double)c->max_body_bytes;
        if ((rc = get_number(L, lim, "max_body_bytes", 1024, 1 << 30, &v)))
            return rc;
        c->max_body_bytes = (size_t)v;
        v = (double)c->max_header_bytes;
        if ((rc = get_number(L, lim, "max_header_bytes", 1024, 1 << 24, &v)))
            return rc;
        c->max_header_bytes = (size_t)v;
        v = c->client_timeout_s;
        if ((rc = get_number(L, lim, "client_timeout_s", 1, 3600, &v)))
            return rc;
        c->client_timeout_s = (int)v;
        v = (double)c->guard.default_max_tokens;
        if ((rc = get_number(L, lim, "default_max_tokens", 1, 1e7, &v)))
            return rc;
        c->guard.default_max_tokens = (long)v;
        if ((rc = get_number(L, lim, "budget_forecast_interval_s", 0, 86400,
                             &c->guard.forecast_interval_s)))
            return rc;
    }
    return AH_E_OK;
}

/* Deployments from the environment, as the official SDKs read it. */
static void env_deployments(ah_config_t *c)
{
    const char *okey = getenv("OPENAI_API_KEY"), *akey = getenv("ANTHROPIC_API_KEY");
    const char *obase = getenv("OPENAI_BASE_URL"), *abase = getenv("ANTHROPIC_BASE_URL");
    ah_deployment_t d;
    if (akey && *akey) {
        memset(&d, 0, sizeof d);
        price_unknown(&d.price);
        d.alias = ah_strdup("claude*");
        d.provider_name = ah_strdup("anthropic");
        d.kind = AH_PROVIDER_ANTHROPIC;
        d.model = ah_strdup("*");
        d.api_base = ah_strdup(abase && *abase ? abase : "https://api.anthropic.com");
        strip_slash(d.api_base);
        d.api_key = ah_strdup(akey);
        d.timeout_s = AH_UPSTREAM_TIMEOUT_S;
        d.stream_idle_timeout_s = AH_STREAM_IDLE_TIMEOUT_S;
        add_dep(c, &d);
    }
    if (okey && *okey) {
        memset(&d, 0, sizeof d);
        price_unknown(&d.price);
        d.alias = ah_strdup("*");
        d.provider_name = ah_strdup("openai");
        d.kind = AH_PROVIDER_OPENAI;
        d.model = ah_strdup("*");
        d.api_base = ah_strdup(obase && *obase ? obase : "https://api.openai.com/v1");
        strip_slash(d.api_base);
        d.api_key = ah_strdup(okey);
        d.timeout_s = AH_UPSTREAM_TIMEOUT_S;
        d.stream_idle_timeout_s = AH_STREAM_IDLE_TIMEOUT_S;
        add_dep(c, &d);
    }
}

static ah_err_t load_file(loader_t *L, FILE *f, ah_config_t *c)
{
    yaml_parser_t parser;
    ah_err_t rc = AH_E_OK;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &L->doc)) {
        snprintf(L->err, L->errlen, "%s:%lu: YAML error: %s", L->path,
                 (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "unreadable");
        yaml_parser_delete(&parser);
        return AH_E_CONFIG;
    }
    yaml_parser_delete(&parser);
    yaml_node_t *root = yaml_document_get_root_node(&L->doc);
    if (!root)
        goto out; /* empty file: defaults */
    if (root->type != YAML_MAPPING_NODE) {
        rc = fail(L, root, "the top level must be a mapping");
        goto out;
    }
    yaml_node_t *gs = get(L, root, "general_settings");
    if (gs && (rc = get_string(L, gs, "master_key", &c->master_key)))
        goto out;
    yaml_node_t *ls = get(L, root, "litellm_settings");
    if (ls && ls->type == YAML_MAPPING_NODE &&
        ((rc = load_litellm_cache(L, ls, &c->cache)) ||
         (rc = load_resilience(L, ls, &c->routing, 1))))
        goto out;
    yaml_node_t *rs = get(L, root, "router_settings");
    if (rs && rs->type == YAML_MAPPING_NODE && (rc = load_resilience(L, rs, &c->routing, 1)))
        goto out;
    yaml_node_t *ah = get(L, root, "ahorro");
    if (ah && (rc = load_ahorro(L, ah, c)))
        goto out;
    yaml_node_t *ml = get(L, root, "model_list");
    if (ml) {
        if (ml->type != YAML_SEQUENCE_NODE) {
            rc = fail(L, ml, "'model_list' must be a list");
            goto out;
        }
        for (yaml_node_item_t *it = ml->data.sequence.items.start; it < ml->data.sequence.items.top;
             it++) {
            ah_deployment_t d;
            if (c->ndeps >= AH_MAX_DEPLOYMENTS) {
                rc = fail(L, node(L, *it), "more than %d deployments", AH_MAX_DEPLOYMENTS);
                goto out;
            }
            rc = load_deployment(L, node(L, *it), &d);
            if (rc) {
                deployment_free(&d);
                goto out;
            }
            add_dep(c, &d);
        }
    }
out:
    yaml_document_delete(&L->doc);
    return rc;
}

ah_err_t ah_config_load(const char *path, ah_config_t **out, char *err, size_t errlen)
{
    ah_config_t *c = ah_calloc(1, sizeof *c);
    ah_err_t rc = AH_E_OK;
    loader_t L = {.path = path, .err = err, .errlen = errlen};
    c->listen_host = ah_strdup("127.0.0.1");
    c->listen_port = 8080;
    c->max_body_bytes = AH_MAX_BODY_BYTES;
    c->max_header_bytes = AH_MAX_HEADER_BYTES;
    c->client_timeout_s = AH_CLIENT_TIMEOUT_S;
    c->cache.policy.ttl_s = AH_CACHE_TTL_S;
    c->cache.policy.max_temperature = AH_CACHE_MAX_TEMPERATURE;
    c->cache.policy.threshold = AH_CACHE_SIF_THRESHOLD;
    c->cache.policy.intent_confidence = AH_CACHE_INTENT_CONFIDENCE;
    c->cache.max_entries = AH_CACHE_MAX_ENTRIES;
    c->cache.max_bytes = AH_CACHE_MAX_BYTES;
    c->cache.persist = 1;
    c->cache.prompt_caching = 1;
    c->guard.default_max_tokens = AH_GUARD_DEFAULT_MAX_TOKENS;
    c->guard.forecast_interval_s = AH_GUARD_FORECAST_INTERVAL_S;
    c->batch.max_file_bytes = AH_BATCH_DEFAULT_MAX_FILE_BYTES;
    c->batch.concurrency = AH_BATCH_DEFAULT_CONCURRENCY;
    c->batch.poll_s = AH_BATCH_DEFAULT_POLL_S;
    c->batch.lease_s = AH_BATCH_DEFAULT_LEASE_S;
    c->routing.retries = AH_ROUTE_RETRIES;
    c->routing.backoff_base_s = AH_ROUTE_BACKOFF_S;
    c->routing.backoff_max_s = AH_ROUTE_MAX_BACKOFF_S;
    c->routing.allowed_fails = AH_ROUTE_ALLOWED_FAILS;
    c->routing.cooldown_s = AH_ROUTE_COOLDOWN_S;
    ah_shape_policy_unset(&c->shape.policy);
    c->observe.log_requests = 1;
    c->observe.trace_ratio = 1;
    if (path) {
        c->path = ah_strdup(path);
        FILE *f = fopen(path, "rb");
        if (!f) {
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
            rc = AH_E_CONFIG;
            goto out;
        }
        rc = load_file(&L, f, c);
        fclose(f);
        if (rc)
            goto out;
    }
    if (c->ndeps == 0)
        env_deployments(c);
    tracing_from_env(&c->observe);
    if ((rc = check_routing(&L, c)) || (rc = check_shaping(&L, c)) ||
        (rc = check_experiments(&L, c)) || (rc = check_judging(&L, c)))
        goto out;
    for (size_t i = 0; i < c->ndeps; i++) {
        c->deps[i].prompt_cache = c->cache.prompt_caching;
        c->deps[i].index = (int)i;
        if (c->deps[i].weight <= 0)
            c->deps[i].weight = 1;
        if (c->deps[i].batch_discount <= 0)
            c->deps[i].batch_discount = AH_BATCH_DEFAULT_DISCOUNT;
    }
    const char *mk = getenv("AHORRO_MASTER_KEY");
    if (mk && *mk) {
        ah_free(c->master_key);
        c->master_key = ah_strdup(mk);
    }
    const char *db = getenv("AHORRO_DB");
    if (!c->db_path)
        c->db_path = ah_strdup(db && *db ? db : "ahorro.db");
out:
    if (rc) {
        ah_config_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

void ah_config_free(ah_config_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->ndeps; i++)
        deployment_free(&c->deps[i]);
    ah_free(c->deps);
    ah_free(c->path);
    ah_free(c->listen_host);
    ah_free(c->db_path);
    ah_free(c->prices_path);
    ah_free(c->master_key);
    ah_free(c->state.url);
    ah_free(c->state.prefix);
    ah_free(c->ledger.url);
    ah_free(c->ledger.spool);
    for (size_t i = 0; i < c->cache.nroutes; i++)
        ah_free(c->cache.routes[i].model);
    ah_free(c->cache.routes);
    ah_free(c->cache.ns);
    ah_free(c->cache.embedder);
    ah_free(c->cache.embedder_path);
    ah_free(c->cache.embedder_model);
    for (size_t i = 0; i < c->cache.nintent_files; i++)
        ah_free(c->cache.intent_files[i]);
    ah_free(c->cache.intent_files);
    routing_free(&c->routing);
    guard_free(&c->guard);
    shape_free(&c->shape);
    observe_free(&c->observe);
    experiments_free(&c->experiments);
    judging_free(&c->judging);
    ah_free(c);
}

const ah_cache_policy_t *ah_config_cache_policy(const ah_config_t *c, const char *model)
{
    for (size_t i = 0; model && i < c->cache.nroutes; i++)
        if (strcmp(c->cache.routes[i].model, model) == 0)
            return &c->cache.routes[i].policy;
    return &c->cache.policy;
}

static int wildcard_match(const char *pattern, const char *s, size_t *specificity)
{
    size_t pl = strlen(pattern);
    if (pl == 0 || pattern[pl - 1] != '*')
        return 0;
    if (strncmp(pattern, s, pl - 1) != 0)
        return 0;
    *specificity = pl - 1;
    return 1;
}

const ah_deployment_t *ah_config_route(const ah_config_t *c, const char *model, unsigned rr)
{
    size_t n = 0, first = 0;
    for (size_t i = 0; i < c->ndeps; i++)
        if (strcmp(c->deps[i].alias, model) == 0) {
            if (n++ == 0)
                first = i;
        }
    if (n) {
        unsigned pick = rr % (unsigned)n;
        for (size_t i = first; i < c->ndeps; i++)
            if (strcmp(c->deps[i].alias, model) == 0 && pick-- == 0)
                return &c->deps[i];
    }
    const ah_deployment_t *best = NULL;
    size_t best_spec = 0;
    for (size_t i = 0; i < c->ndeps; i++) {
        size_t spec;
        if (wildcard_match(c->deps[i].alias, model, &spec) && (!best || spec > best_spec)) {
            best = &c->deps[i];
            best_spec = spec;
        }
    }
    return best;
}

const ah_router_cfg_t *ah_config_router(const ah_config_t *c, const char *name)
{
    for (size_t i = 0; name && i < c->routing.nrouters; i++)
        if (strcmp(c->routing.routers[i].name, name) == 0)
            return &c->routing.routers[i];
    return NULL;
}

const ah_router_tier_t *ah_router_pick(const ah_router_cfg_t *rt, double score, double criticality)
{
    if (rt->ntiers == 0)
        return NULL;
    if (criticality >= rt->critical_threshold)
        return &rt->tiers[0];
    if (rt->rank == AH_RANK_GAIN_PER_DOLLAR) /* no cost known here */
        return &rt->tiers[score >= 0.5 ? 0 : rt->ntiers - 1];
    for (size_t i = 0; i < rt->ntiers; i++)
        if (score >= rt->tiers[i].min_score)
            return &rt->tiers[i];
    return &rt->tiers[rt->ntiers - 1];
}

int ah_config_has_alias(const ah_config_t *c, const char *alias)
{
    return ah_config_route(c, alias, 0) != NULL;
}
