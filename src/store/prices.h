/* prices.h - the price catalogue: what a call cost, in USD.
 *
 * The catalogue is data the product ships (data/prices.json, derived from
 * pydantic/genai-prices by tools/gen-prices.mjs; see data/README.md). A model
 * is found by its provider and the model name the provider reported, using
 * the catalogue's own match rules (equals, starts_with, ends_with, contains,
 * regex, or, and). Deployments may override prices in the config (ah_price_t
 * built by the config loader).
 *
 * Choices, where genai-prices leaves room:
 * - Regex clauses are Python `re` patterns; they are translated to POSIX ERE
 *   and compiled once at load. A pattern ERE cannot express (lookaround,
 *   \b, backreferences) is matched by its leading ^literal as a prefix when
 *   it has one, else never; ah_prices_stats counts both and load logs them.
 * - Clauses compare case-sensitively (the catalogue's literals are mostly
 *   lower case); a name is tried as given, then lowercased (ASCII).
 * - Time-of-day constraints (DeepSeek's off-peak hours) are evaluated in UTC:
 *   active when start <= time of day < end, wrapping past midnight when
 *   start > end. A start_date is active from 00:00 UTC that day.
 * - A model whose genai-prices entry is `{}` (free) has explicit zero rates;
 *   a rate absent from the catalogue is unknown (base < 0). */
#ifndef AH_PRICES_H
#define AH_PRICES_H

#include <stdint.h>
#include <time.h>

#include "core/error.h"

/* Token counts of one call, in one convention for every provider:
 * input_tokens counts every prompt token, including those read from or
 * written to a provider prompt cache (OpenAI's prompt_tokens; for Anthropic,
 * input_tokens + cache_read_input_tokens + cache_creation_input_tokens).
 * cache_read_tokens and cache_write_tokens are subsets of input_tokens.
 * reasoning_tokens is a subset of output_tokens. */
typedef struct ah_usage {
    int64_t input_tokens;
    int64_t output_tokens;
    int64_t cache_read_tokens;
    int64_t cache_write_tokens;
    int64_t reasoning_tokens;
} ah_usage_t;

/* One price tier above a prompt size: when a call's input_tokens exceed
 * `start` (strictly, as genai-prices does), this rate applies to all tokens
 * of that kind in the call, not only those above `start` ("cliff" tiers). */
typedef struct ah_price_tier {
    int64_t start;
    double mtok;
} ah_price_tier_t;

#define AH_PRICE_MAX_TIERS 4

/* A rate in USD per million tokens, optionally tiered by prompt size.
 * A negative base means "not in the catalogue". The catalogue stores tiers
 * sorted by start; ah_price_cost does not rely on the order. */
typedef struct ah_rate {
    double base;
    int ntiers;
    ah_price_tier_t tiers[AH_PRICE_MAX_TIERS];
} ah_rate_t;

/* The prices of one model at one time. A cache rate that is unknown (< 0)
 * falls back to the input rate; an unknown input or output rate costs 0
 * (genai-prices' rule: embeddings have no output rate). All four unknown
 * means the catalogue prices this model in units the gateway does not meter
 * (images, audio, requests): its calls cost 0 here. */
typedef struct ah_price {
    ah_rate_t input;
    ah_rate_t output;
    ah_rate_t cache_read;
    ah_rate_t cache_write;
    int64_t context_window;    /* 0 when unknown */
    int64_t max_output_tokens; /* the longest answer it writes; 0 when unknown */
} ah_price_t;

typedef struct ah_prices ah_prices_t;

/* Load the catalogue from a JSON file (data/prices.json's format). On
 * success *out is owned by the caller and freed with ah_prices_free; on
 * failure *out is NULL and the reason is logged: AH_E_IO (cannot read),
 * AH_E_TOOBIG (file over the size limit), AH_E_PARSE (not a catalogue).
 * Regexes are compiled here, so lookups allocate nothing. Thread-safe to
 * read once loaded. */
ah_err_t ah_prices_load(const char *path, ah_prices_t **out);
/* The shipped catalogue, looked for where `ahorro serve` looks: configured
 * (may be NULL), $AHORRO_PRICES, beside the binary (../data/prices.json),
 * then ./data/prices.json; the first that loads wins. NULL when none does.
 * *used (may be NULL) points at the path that loaded (static storage of this
 * call's thread until the next call). Free with ah_prices_free. */
ah_prices_t *ah_prices_open_default(const char *configured, const char **used);
/* Free a catalogue from ah_prices_load; p may be NULL. Every string that
 * ah_prices_find_match handed out dies with it. */
void ah_prices_free(ah_prices_t *p);

/* Find the prices of `model` at time `when` (for dated price changes).
 * provider may be NULL or a provider the catalogue does not know: then every
 * provider is tried in catalogue order. A "provider/" prefix on model is
 * ignored when the rest matches. Writes *out and returns AH_E_OK, or
 * AH_E_NOTFOUND (AH_E_INVAL for NULL p, model or out). Nothing to free.
 *
 * Order of search, first match wins; within each step the name is tried as
 * given, lowercased, then with up to three leading "segment/" removed:
 *  1. the named provider (its id, else its provider_match: "bedrock" finds
 *     aws), then its fallback_model_providers (azure -> openai, anthropic);
 *     then likewise the provider named by the model's own "x/" prefix;
 *  2. providers whose model_match takes the name ("o3" -> openai), in
 *     catalogue order (genai-prices' lookup without a provider);
 *  3. every provider in catalogue order. */
ah_err_t ah_prices_find(const ah_prices_t *p, const char *provider, const char *model, time_t when,
                        ah_price_t *out);

/* Which catalogue entry a lookup matched. The strings belong to the
 * catalogue and live until ah_prices_free. */
typedef struct ah_price_match {
    const char *provider; /* catalogue provider id, e.g. "anthropic" */
    const char *model;    /* catalogue model id, e.g. "claude-3-5-haiku-latest" */
} ah_price_match_t;

/* ah_prices_find that also says which entry matched (for logs, `ahorro
 * prices`, the x-ahorro-* headers). match may be NULL; it is written only on
 * AH_E_OK. Nothing to free. */
ah_err_t ah_prices_find_match(const ah_prices_t *p, const char *provider, const char *model,
                              time_t when, ah_price_t *out, ah_price_match_t *match);

/* Cost in USD of usage at price: uncached input (input_tokens minus cache
 * reads and writes, never below 0) at the input rate, cache reads and writes
 * at their own rates, output at the output rate, all / 1e6. Tiers are chosen
 * by u->input_tokens. Negative counts count as 0; NULL price or u costs 0. */
double ah_price_cost(const ah_price_t *price, const ah_usage_t *u);

/* Number of models in the catalogue, for logs and `ahorro prices`. */
int ah_prices_count(const ah_prices_t *p);

/* The i-th model of the catalogue (0 <= i < ah_prices_count, in catalogue
 * order: providers, then their models) and its prices at `when`, for
 * listing it (`ahorro prices`). match may be NULL; its strings belong to the
 * catalogue. AH_E_NOTFOUND when i is out of range, AH_E_INVAL for NULL p or
 * out. Nothing to free. */
ah_err_t ah_prices_entry(const ah_prices_t *p, int i, time_t when, ah_price_t *out,
                         ah_price_match_t *match);

/* What load made of the catalogue, for logs and tests. */
typedef struct ah_prices_stats {
    int providers;
    int models;
    int regexes;       /* regex clauses compiled as POSIX ERE */
    int regex_prefix;  /* regex clauses ERE cannot express, matched by their ^literal */
    int regex_dropped; /* regex clauses ERE cannot express and with no literal: never match */
} ah_prices_stats_t;

/* Fill *out from a loaded catalogue (all zero when p is NULL). */
void ah_prices_stats(const ah_prices_t *p, ah_prices_stats_t *out);

#endif
