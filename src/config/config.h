/* config.h - the gateway's configuration: one YAML file.
 *
 * A LiteLLM config loads as it is: `model_list` entries (`model_name`,
 * `litellm_params.model` as `provider/model`, `api_base`, `api_key` with
 * `os.environ/VAR`, `rpm`, `tpm`, `timeout`, `api_version`, cost overrides)
 * and `general_settings.master_key`. ahorro's own settings live under the
 * `ahorro:` key. Without a file, deployments come from OPENAI_API_KEY /
 * ANTHROPIC_API_KEY (and *_BASE_URL), as the official SDKs read them.
 *
 * A loaded ah_config_t is immutable and shared by every thread. */
#ifndef AH_CONFIG_H
#define AH_CONFIG_H

#include <stddef.h>

#include "core/error.h"
#include "store/prices.h"

typedef enum { AH_PROVIDER_OPENAI, AH_PROVIDER_AZURE, AH_PROVIDER_ANTHROPIC } ah_provider_kind_t;

/* One upstream model behind an alias. */
typedef struct ah_deployment {
    char *alias;         /* the model_name clients ask for; may end in '*' */
    char *provider_name; /* as written: openai, azure, anthropic, hosted_vllm, ollama... */
    ah_provider_kind_t kind;
    char *model;                  /* upstream model name; "*" passes the requested name */
    char *api_base;               /* e.g. https://api.openai.com/v1 (no trailing slash) */
    char *api_key;                /* secret: never logged, never in errors or the ledger */
    char *api_version;            /* Azure's api-version */
    double timeout_s;             /* whole-request upstream timeout */
    double stream_idle_timeout_s; /* silence allowed inside a stream */
    long rpm, tpm;                /* 0 = unlimited (enforced by later stages) */
    int prompt_cache;             /* Anthropic: place prompt-cache breakpoints */
    int has_price;                /* price overrides from the config */
    ah_price_t price;
    int line; /* where it was defined, for messages */
} ah_deployment_t;

/* When answers are cached: globally, or for one route (requested model). */
typedef struct ah_cache_policy {
    int exact;              /* exact cache on */
    int semantic;           /* semantic cache on */
    double ttl_s;           /* how long an answer is kept */
    double max_temperature; /* cache only requests at or under this temperature */
    double threshold;       /* semantic: least similarity of a hit */
} ah_cache_policy_t;

typedef struct ah_cache_route {
    char *model;
    ah_cache_policy_t policy;
} ah_cache_route_t;

typedef struct ah_cache_config {
    ah_cache_policy_t policy; /* the default */
    ah_cache_route_t *routes;
    size_t nroutes;
    char *ns;             /* default namespace, or NULL */
    size_t max_entries;   /* bound on entries, */
    size_t max_bytes;     /* and on their memory */
    char *embedder;       /* "sif", "model2vec" or "endpoint" */
    char *embedder_path;  /* sif: the vector file; model2vec: the model directory */
    char *embedder_model; /* endpoint: the model_list entry that embeds */
    int persist;          /* keep entries across restarts (in the database) */
    int prompt_caching;   /* place Anthropic prompt-cache breakpoints for clients */
} ah_cache_config_t;

typedef struct ah_config {
    char *path; /* file it came from, or NULL */
    char *listen_host;
    int listen_port;
    int threads; /* 0 = one per core */
    char *db_path;
    char *prices_path;
    char *master_key; /* NULL = none: keyless requests from loopback only */
    size_t max_body_bytes;
    size_t max_header_bytes;
    int client_timeout_s;
    int offline_fake; /* deployments point at the bundled fake provider */
    ah_deployment_t *deps;
    size_t ndeps;
    ah_cache_config_t cache;
} ah_config_t;

/* Load path (NULL: defaults from the environment). On error returns
 * AH_E_CONFIG and writes "file:line: what is wrong" into err. On success
 * *out is owned by the caller; free with ah_config_free. */
ah_err_t ah_config_load(const char *path, ah_config_t **out, char *err, size_t errlen);
void ah_config_free(ah_config_t *c);

/* The deployment that serves `model`: exact alias first, then the longest
 * matching wildcard alias. `rr` picks among several deployments of one alias
 * (round-robin counter supplied by the caller). NULL when none. */
const ah_deployment_t *ah_config_route(const ah_config_t *c, const char *model, unsigned rr);

/* The cache policy of a requested model: its route's, else the default. */
const ah_cache_policy_t *ah_config_cache_policy(const ah_config_t *c, const char *model);

/* Provider kind of a LiteLLM provider prefix ("openai", "hosted_vllm",
 * "anthropic", ...); AH_E_NOTFOUND when ahorro does not know it. */
ah_err_t ah_config_provider_kind(const char *prefix, ah_provider_kind_t *kind);

#endif
