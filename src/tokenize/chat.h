/* chat.h - a chat request's prompt tokens, counted before it is sent.
 *
 * OpenAI bills a chat body as its messages rendered in a chat template, plus
 * the tool definitions rendered in another; neither template is public, but
 * OpenAI's own cookbook gives the rules that reproduce the billed count
 * (openai-cookbook, "How to count tokens with tiktoken"): 3 tokens a message
 * plus the tokens of each of its string fields, 1 more for a name, 3 to prime
 * the reply; tools by a per-function, per-property formula; images by tiles.
 * Each rule, and where ahorro estimates beyond the cookbook (tool calls, parts,
 * images without a size), is in docs/tokenizer.md.
 *
 * Models without a public tokenizer (Anthropic's) get an estimate: the
 * o200k_base count times a factor (AH_CHAT_ANTHROPIC_FACTOR), and for tools
 * Anthropic's tool-use system prompt plus the definitions' JSON. Its error is
 * measured against counts the Anthropic API billed (docs/tokenizer.md,
 * "Claude: measured against billed counts"). */
#ifndef AH_CHAT_H
#define AH_CHAT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenize/bpe.h"

/* Claude's tokens per o200k_base token: errs high on English and code, low on
 * other scripts, against the legacy tokenizer (docs/tokenizer.md). */
#define AH_CHAT_ANTHROPIC_FACTOR 1.2
/* Image tokens when a part gives no size and the data is not a PNG, GIF or
 * JPEG we can read: a 1024x1024 image at high detail (765 on gpt-4o). */
#define AH_CHAT_DEFAULT_IMAGE_SIDE 1024

/* Claude tokens per o200k_base token of a tool definition's JSON, as Anthropic
 * bills definitions (measured against billed counts, docs/tokenizer.md). */
#define AH_CHAT_ANTHROPIC_TOOL_JSON_FACTOR 1.4

/* How a model's prompt is counted. */
typedef struct ah_chat_model {
    const char *encoding; /* "o200k_base" or "cl100k_base" (static) */
    double factor;        /* 1 when exact; else the estimate's scale */
    bool estimate;        /* the model's own tokenizer is not public */
    /* Claude: the tool-use system prompt Anthropic adds to a request with
     * tools, in the model's tokens, for tool_choice auto or none, and for any
     * or a named tool; 0 for other models. */
    int tool_prompt_auto, tool_prompt_forced;
} ah_chat_model_t;

/* The encoding of model (a "provider/" prefix is ignored): gpt-4o*, gpt-4.1*,
 * gpt-4.5*, gpt-5*, o1*, o3*, o4*, chatgpt-4o* -> o200k_base; gpt-4*,
 * gpt-3.5*, text-embedding-3-*, text-embedding-ada-002 -> cl100k_base;
 * claude* -> an estimate from o200k_base. AH_E_NOTFOUND for other models
 * (*out then says o200k_base, as an estimate). Nothing to free. */
ah_err_t ah_chat_model(const char *model, ah_chat_model_t *out);

/* What ah_chat_tokens counted, in tokens of the encoding it was given. */
typedef struct ah_chat_count {
    int64_t total;    /* all of the below */
    int64_t messages; /* message overheads and content, reply priming */
    int64_t tools;    /* tool definitions */
    int64_t images;   /* image parts */
    int n_messages;
    int n_images;
} ah_chat_count_t;

/* Count the prompt tokens of an OpenAI chat body (`messages`, `tools` or
 * `functions`; `model` chooses image rules) with encoding enc. AH_E_PARSE
 * when body has no `messages` array; AH_E_TOOBIG past AH_BPE_MAX_TEXT_BYTES
 * in one string. Thread-safe; nothing to free. */
ah_err_t ah_chat_tokens(const ah_bpe_t *enc, const json_t *body, ah_chat_count_t *out);

/* The prompt tokens model (cm, from ah_chat_model) bills for body, in its own
 * tokens: the ah_chat_tokens count scaled by cm->factor (exact when the
 * factor is 1), except that a Claude request's tools are counted as Anthropic
 * bills them: its tool-use system prompt plus the definitions' JSON at
 * AH_CHAT_ANTHROPIC_TOOL_JSON_FACTOR. out (may be NULL) gets ah_chat_tokens'
 * parts. Errors as ah_chat_tokens. Thread-safe. */
ah_err_t ah_chat_estimate(const ah_bpe_t *enc, const json_t *body, const ah_chat_model_t *cm,
                          int64_t *tokens, ah_chat_count_t *out);

/* Image tokens for a width x height image at detail "low", "high" or "auto"
 * (NULL: auto) on model (NULL: gpt-4o rules). width or height <= 0: unknown
 * size, AH_CHAT_DEFAULT_IMAGE_SIDE square. */
int64_t ah_chat_image_tokens(const char *model, const char *detail, int64_t width, int64_t height);

#endif
