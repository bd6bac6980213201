/* shape.h - a chat request made smaller before it is sent (stage 4's engine).
 *
 * ah_shape_apply works on the canonical (OpenAI-shaped) chat body, in place,
 * under one resolved policy (config/shape_config.h), in this order:
 *
 *   1 retrieval  the body's `context` array (strings or {text}) and the text
 *                parts before the question in the last user message are
 *                context chunks; the top_k most relevant to the question are
 *                kept (select.h), in their order. `context` is rendered as a
 *                system message after the leading ones (the stable prefix:
 *                system prompt, then documents, then the conversation).
 *   2 lossless   each message's text normalized (compress.h).
 *   3 lossy      texts other than the last user turn (and system messages
 *                unless asked) cut to lossy_ratio of their tokens.
 *   4 window     sliding_window: the last max_turns user turns, then the most
 *                recent turns that fit the budget; token_budget: the turns
 *                least relevant to the question dropped first. System
 *                messages and the latest turn are kept; an assistant tool
 *                call and its results go or stay together. Once over the
 *                budget, trimming goes down to trim_to of it, so the next
 *                turns share the same prefix (providers' prompt caches hit).
 *                summarize: as sliding_window, with room left for a summary
 *                of summary_tokens; the messages taken out are handed back
 *                (ah_shape_result_t.summarized) for the caller to summarize.
 *   5 repeats    a system prompt resent inside a later user message, and a
 *                paragraph repeated from an earlier message, removed.
 *   6 output     max_tokens defaulted or capped (by the policy and by the
 *                model's output limit); a sampling preset's
 *                temperature and top_p applied where the request set none.
 *
 * Prompt tokens are counted as the provider bills them (tokenize/chat.h):
 * the budget is met by that count, exactly for OpenAI's encodings. */
#ifndef AH_SHAPE_H
#define AH_SHAPE_H

#include <jansson.h>
#include <stddef.h>

#include "cache/embed.h"
#include "config/shape_config.h"
#include "core/error.h"
#include "tokenize/bpe.h"
#include "tokenize/chat.h"

/* Default length of a summary, in tokens. */
#define AH_SHAPE_SUMMARY_TOKENS 256
/* Output tokens kept free when the budget comes from the model's window and
 * the request sets no max_tokens. */
#define AH_SHAPE_RESERVE_OUTPUT 1024
/* Context chunks one request may carry. */
#define AH_SHAPE_MAX_CHUNKS 1024
/* Texts shorter than this many bytes are left to lossless alone. */
#define AH_SHAPE_LOSSY_MIN_BYTES 200
/* A repeated paragraph or resent system prompt is removed from this length. */
#define AH_SHAPE_REPEAT_MIN_BYTES 40

/* What the engine may use. */
typedef struct ah_shape_env {
    const ah_bpe_t *enc;             /* counts prompt tokens; required */
    double factor;                   /* tokens per enc token (1 when exact) */
    ah_chat_model_t model;           /* the model counted for: Claude's tool prompt */
    long window;                     /* the model's context window; 0 = unknown */
    long output_limit;               /* the model's longest answer; 0 = unknown */
    const ah_embedder_t *embedder;   /* for dense chunk scores, or NULL */
    const ah_shape_preset_t *preset; /* resolved sampling preset, or NULL */
} ah_shape_env_t;

/* What was done. */
typedef struct ah_shape_result {
    long tokens_before, tokens_after; /* prompt tokens, scaled by factor */
    long budget;                      /* prompt budget applied; 0 = none */
    int turns_dropped;                /* messages removed by the window */
    int chunks_dropped;               /* context chunks left out */
    int changed;                      /* the body was changed */
    /* summarize: the messages taken out, oldest first, for a summary to
     * stand in for them at messages[summary_at] (the caller's; decref), or
     * NULL when none were */
    json_t *summarized;
    size_t summary_at;
    char done[160]; /* "top_k,lossless,window,..." or "" */
} ah_shape_result_t;

/* Shape body in place under p. On AH_E_INVAL err says why in words a client
 * can act on (a budget smaller than the system prompt and the latest turn;
 * a malformed `context`); the body may then be partly shaped. Nothing to
 * free; thread-safe for distinct bodies. */
ah_err_t ah_shape_apply(json_t *body, const ah_shape_policy_t *p, const ah_shape_env_t *env,
                        ah_shape_result_t *out, char *err, size_t errlen);

/* Prompt tokens of body under env (as billed), or -1 when not countable. */
long ah_shape_count(const ah_shape_env_t *env, const json_t *body);

#endif
