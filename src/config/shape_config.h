/* shape_config.h - the configuration of prompt and context shaping (stage 4).
 *
 *   ahorro:
 *     shaping:
 *       lossless: true                 # whitespace, JSON, repeats (default off)
 *       context:
 *         strategy: sliding_window     # none | sliding_window | token_budget | summarize
 *         max_turns: 20                # sliding_window: keep the last N user turns
 *         max_tokens: 8000             # prompt tokens at most (0: the model's window)
 *         reserve_output: 1024         # kept free for the answer when the
 *                                      # request sets no max_tokens
 *         trim_to: 0.8                 # once over, trim to this share of the
 *                                      # budget (a stable prefix for several turns)
 *         summarizer: gpt-4o-mini      # summarize: the model that writes summaries
 *         summary_tokens: 256          # summarize: their length at most
 *       retrieval: { top_k: 5, dense_weight: 0.3 }
 *       lossy: { ratio: 0.6, system: false }
 *       output:
 *         default_max_tokens: 512      # when the request sets none
 *         max_tokens: 2048             # cap on what a request may ask
 *         preset: factual              # sampling preset applied unless set
 *       presets:                       # defaults: factual 0.1, balanced 0.5,
 *         factual: { temperature: 0.1 }#   code 0.2, creative 0.8
 *       routes:                        # per requested model: the same keys
 *         gpt-4o: { context: { strategy: token_budget, max_tokens: 4000 } }
 *       features:                      # per `feature` tag value: the same keys
 *         support: { output: { preset: factual, max_tokens: 300 } }
 *
 * A request's policy is the default, overlaid by its route's, then its
 * feature's, then the body's own `shape` object (same keys, flattened:
 * strategy, max_turns, max_tokens, trim_to, top_k, lossless, lossy_ratio,
 * preset), or `"shape": false` for none. Unset values inherit.
 *
 * Part of ah_config_t (config.h); loaded and checked by config.c. */
#ifndef AH_SHAPE_CONFIG_H
#define AH_SHAPE_CONFIG_H

#include <stddef.h>

typedef enum {
    AH_CTX_UNSET = -1,
    AH_CTX_NONE = 0,
    AH_CTX_SLIDING = 1,   /* keep the system prompt and the most recent turns */
    AH_CTX_BUDGET = 2,    /* drop the least relevant turns to the budget */
    AH_CTX_SUMMARIZE = 3, /* older turns replaced by a cheap model's summary */
} ah_ctx_strategy_t;

/* A sampling preset: values < 0 are not set. */
typedef struct ah_shape_preset {
    char *name;
    double temperature;
    double top_p;
} ah_shape_preset_t;

/* One layer of policy. Numbers < 0 (and strategy AH_CTX_UNSET, lossless
 * -1, preset NULL) mean "not set here": the layer below shows through. */
typedef struct ah_shape_policy {
    ah_ctx_strategy_t strategy;
    long max_turns;          /* sliding_window: user turns kept; 0 = any */
    long max_tokens;         /* prompt budget; 0 = the model's window */
    long reserve_output;     /* tokens kept for the answer */
    double trim_to;          /* (0, 1]: share of the budget trimmed to */
    long top_k;              /* context chunks kept; 0 = all */
    double dense_weight;     /* [0, 1]: embeddings' share in chunk scores */
    int lossless;            /* 0/1 */
    double lossy_ratio;      /* (0, 1]; 1 = off */
    int lossy_system;        /* 0/1: lossy also on system messages */
    long default_max_tokens; /* 0 = none */
    long cap_max_tokens;     /* 0 = none */
    char *preset;            /* a preset's name, or NULL */
    char *summarizer;        /* summarize: the model alias that writes summaries */
    long summary_tokens;     /* summarize: the summary's max_tokens */
} ah_shape_policy_t;

typedef struct ah_shape_layer {
    char *name; /* route: requested model; feature: tag value */
    ah_shape_policy_t policy;
    int line;
} ah_shape_layer_t;

typedef struct ah_shape_config {
    int enabled;              /* an `ahorro.shaping` section was given */
    ah_shape_policy_t policy; /* the default layer */
    ah_shape_layer_t *routes;
    size_t nroutes;
    ah_shape_layer_t *features;
    size_t nfeatures;
    ah_shape_preset_t *presets; /* configured, then the built-in ones */
    size_t npresets;
} ah_shape_config_t;

/* A policy with nothing set. */
void ah_shape_policy_unset(ah_shape_policy_t *p);
/* Overlay `top`'s set values onto *base (strings are borrowed from top). */
void ah_shape_policy_overlay(ah_shape_policy_t *base, const ah_shape_policy_t *top);
/* The preset named name, or NULL. */
const ah_shape_preset_t *ah_shape_preset_find(const ah_shape_config_t *sc, const char *name);

#endif
