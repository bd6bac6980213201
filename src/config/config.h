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

#include "config/batch_config.h"
#include "config/experiment_config.h"
#include "config/guard_config.h"
#include "config/ledger_config.h"
#include "config/state_config.h"
#include "config/judge_config.h"
#include "config/observe_config.h"
#include "config/shape_config.h"
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
    double weight;                /* share of the alias's traffic (weighted strategy); > 0 */
    long context_window;          /* prompt tokens it accepts; 0 = from the catalogue/unknown */
    long max_output_tokens;       /* the longest answer; 0 = from the catalogue/unknown */
    int index;                    /* position in ah_config_t.deps (state arrays use it) */
    int has_price;                /* price overrides from the config */
    int batch_native;             /* `batch: native`: Batch API batches go to the provider's
                                     own Batch API (docs/batch.md "Provider batch APIs") */
    double batch_discount;        /* price multiplier of such batches, 0 < x <= 1 (0.5) */
    ah_price_t price;
    int line; /* where it was defined, for messages */
} ah_deployment_t;

/* When answers are cached: globally, or for one route (requested model). */
typedef struct ah_cache_policy {
    int exact;                /* exact cache on */
    int semantic;             /* semantic cache on */
    double ttl_s;             /* how long an answer is kept */
    double max_temperature;   /* cache only requests at or under this temperature */
    double threshold;         /* semantic: least similarity of a hit */
    int threshold_set;        /* similarity_threshold was given (with intents: a cosine floor) */
    int intents;              /* labelled history deciding hits: 1 + index into
                                 cache.intent_files, 0: none (cache/intent.h) */
    double intent_confidence; /* with intents: least label probability of both texts */
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
    char **intent_files;  /* the labelled histories the policies name, each once */
    size_t nintent_files;
} ah_cache_config_t;

/* How a model alias spreads its traffic over its deployments. */
typedef enum {
    AH_BALANCE_WEIGHTED,      /* random, in proportion to weight (LiteLLM simple-shuffle) */
    AH_BALANCE_LEAST_LATENCY, /* lowest EWMA of recent latency (TTFT for streams) */
    AH_BALANCE_LEAST_BUSY,    /* fewest requests in flight */
    AH_BALANCE_LOWEST_COST,   /* cheapest price per token, then weight */
} ah_balance_t;

/* An ordered chain of aliases to try when `from` fails. */
typedef struct ah_fallback {
    char *from;
    char **to;
    size_t nto;
    int line;
} ah_fallback_t;

/* A rule: requests that match go to `model` (an alias, or a router name).
 * Every condition set must hold; rules are tried in order, first match wins. */
typedef struct ah_route_rule {
    char *tag_key, *tag_value; /* tag equals value (value "*" = tag present) */
    char *key_id;              /* virtual key id, or owner (tenant) */
    char *requested;           /* the model asked for (alias or router name) */
    long min_prompt_chars;     /* request size: characters of message text */
    long max_prompt_chars;     /* 0 = no bound */
    char *model;               /* where matching requests go */
    int line;
} ah_route_rule_t;

/* One tier of a router: requests scoring at least min_score (and below the
 * tier above) go to model. Tiers are kept strongest first. */
typedef struct ah_router_tier {
    char *name;  /* "high", "medium", "low", ... */
    char *model; /* an alias of the model_list */
    double min_score;
    /* rank gain_per_dollar, strong tier: expected accuracy gain (a share of
     * requests answered well, 0 to 1 per request) per extra USD; > 0 */
    double min_gain_per_usd;
} ah_router_tier_t;

typedef enum { AH_ROUTER_COMPLEXITY, AH_ROUTER_LEARNED, AH_ROUTER_CASCADE } ah_router_kind_t;

/* How a complexity or learned router orders requests (`rank:`).
 *   score            the first tier whose min_score the score reaches (default)
 *   gain_per_dollar  two tiers, strong first: the strong one when the
 *                    expected accuracy gain of the strong model, 2 * score - 1,
 *                    per extra USD the request costs on it (route/rank.h) is at
 *                    least the strong tier's min_gain_per_usd */
typedef enum { AH_RANK_SCORE, AH_RANK_GAIN_PER_DOLLAR } ah_router_rank_t;

/* A router alias: clients ask for `name` ("auto") and get a tier's model. */
typedef struct ah_router_cfg {
    char *name;
    ah_router_kind_t kind;
    char *model_path;        /* learned: the trained model file */
    ah_router_tier_t *tiers; /* strongest first (min_score descending; as written for
                                gain_per_dollar) */
    size_t ntiers;
    ah_router_rank_t rank;
    /* gain_per_dollar: output tokens a request is expected to produce (its own
     * max_tokens / max_completion_tokens when smaller); default 256 */
    long expected_output_tokens;
    /* criticality at or above it goes to the strongest tier; > 1 = off */
    double critical_threshold;
    char **cascade; /* cascade: aliases tried in order, cheapest first */
    size_t ncascade;
    int line;
} ah_router_cfg_t;

typedef struct ah_routing_config {
    ah_balance_t strategy;
    int retries;              /* further attempts after the first, per request (all aliases) */
    double backoff_base_s;    /* first retry waits about this long (doubling, with jitter) */
    double backoff_max_s;     /* cap of one wait, Retry-After included */
    int allowed_fails;        /* consecutive failures that cool a deployment down */
    double cooldown_s;        /* how long a cooled deployment is left out before a probe */
    ah_fallback_t *fallbacks; /* on errors, timeouts, rate limits */
    size_t nfallbacks;
    ah_fallback_t *context_fallbacks; /* on context-window overflow */
    size_t ncontext_fallbacks;
    ah_route_rule_t *rules;
    size_t nrules;
    ah_router_cfg_t *routers;
    size_t nrouters;
} ah_routing_config_t;

/* Which request tags become labels on /metrics (ahorro.metrics; docs/metrics.md).
 * Fixed-size so that the config owns no memory for it. */
#define AH_METRICS_MAX_TAGS 4
#define AH_METRICS_MAX_TAG_NAME 32
#define AH_METRICS_DEFAULT_TAG_VALUES 20
#define AH_METRICS_MAX_TAG_VALUES 1000
typedef struct ah_metrics_config {
    char tags[AH_METRICS_MAX_TAGS][AH_METRICS_MAX_TAG_NAME + 1]; /* label names */
    int ntags;
    int max_values; /* distinct values a tag label takes before "other"; 0: the default */
} ah_metrics_config_t;

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
    ah_routing_config_t routing;
    ah_guard_config_t guard;             /* budgets and rate limits */
    ah_state_config_t state;             /* where their counters live (docs/state.md) */
    ah_ledger_config_t ledger;           /* PostgreSQL ledger and keys (docs/postgres.md) */
    ah_shape_config_t shape;             /* prompt and context shaping */
    ah_observe_config_t observe;         /* request log, trace export */
    ah_metrics_config_t metrics;         /* labels of /metrics */
    ah_experiments_config_t experiments; /* live experiments (docs/experiments.md) */
    ah_judging_config_t judging;         /* sampled live judging (docs/experiments.md) */
    ah_batch_config_t batch;             /* Files and Batch APIs (docs/batch.md) */
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

/* The router named `name` ("auto"), or NULL when it is not a router. */
const ah_router_cfg_t *ah_config_router(const ah_config_t *c, const char *name);
/* The tier a request scoring `score` (and `criticality`, both in [0, 1])
 * goes to: criticality at or above the router's critical_threshold picks the
 * strongest tier; otherwise the first tier (strongest first) whose min_score
 * is at most score, else the last. NULL for a cascade (it has no tiers).
 * A gain_per_dollar router, without a cost to weigh (route/rank.h has the
 * choice with one), takes the strong tier when score >= 0.5. */
const ah_router_tier_t *ah_router_pick(const ah_router_cfg_t *rt, double score, double criticality);
/* Whether some deployment serves `alias` (exactly or by wildcard). */
int ah_config_has_alias(const ah_config_t *c, const char *alias);

/* The cache policy of a requested model: its route's, else the default. */
const ah_cache_policy_t *ah_config_cache_policy(const ah_config_t *c, const char *model);

/* Provider kind of a LiteLLM provider prefix ("openai", "hosted_vllm",
 * "anthropic", ...); AH_E_NOTFOUND when ahorro does not know it. */
ah_err_t ah_config_provider_kind(const char *prefix, ah_provider_kind_t *kind);

#endif
