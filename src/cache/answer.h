/* answer.h - what the answer caches store, and how requests are keyed.
 *
 * A cached answer is a canonical chat.completion (OpenAI's shape, whatever
 * the provider spoke), so that one entry serves a client of either format,
 * streamed or not. This module makes the three conversions that needs:
 *   - the cache key of a canonical request: a SHA-256 of a normal form of
 *     everything that changes the answer, so that key order, whitespace and
 *     1 vs 1.0 do not matter, and of the tenant and namespace;
 *   - a streamed answer, chunk by chunk, back into one chat.completion;
 *   - a chat.completion into the canonical chunks that replay it as a
 *     stream (role and text, tool calls, finish reason, usage). */
#ifndef AH_ANSWER_H
#define AH_ANSWER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

#define AH_CACHE_KEY_BYTES 32
/* Choices kept per streamed answer (n > this is not cached). */
#define AH_ANSWER_MAX_CHOICES 16
/* Bytes of text a cached answer may hold. */
#define AH_ANSWER_MAX_BYTES (1024u * 1024)

/* Key of a canonical chat body for a tenant and namespace (either may be
 * NULL). With `skip_last_user` the last user message is left out (the scope
 * of a semantic lookup). AH_E_TOOBIG when the body nests deeper than the
 * JSON depth limit. */
ah_err_t ah_answer_key(const char *tenant, const char *ns, json_t *body, int skip_last_user,
                       uint8_t out[AH_CACHE_KEY_BYTES]);

/* The text of the last user message of a canonical body, or NULL. Owned by
 * the caller: free with ah_free. */
char *ah_answer_last_user_text(json_t *body);

/* Accumulates a streamed answer. Zero it, feed every canonical chunk, then
 * take the completion with ah_answer_acc_finish; always ah_answer_acc_free. */
typedef struct ah_answer_acc {
    char id[96];
    char model[257];
    int64_t created;
    int nchoices;
    struct {
        int used;
        ah_buf_t text;
        json_t *tool_calls; /* array, by tool index */
        ah_buf_t *args;     /* their arguments, one buffer each */
        char finish[32];
    } choice[AH_ANSWER_MAX_CHOICES];
    json_t *usage;
    size_t bytes; /* text and arguments gathered, all choices */
    int overflow; /* too big or too many choices: not cacheable */
} ah_answer_acc_t;

void ah_answer_acc_add(ah_answer_acc_t *a, json_t *chunk);
/* The chat.completion (new reference), or NULL when it overflowed or saw no
 * choice. */
json_t *ah_answer_acc_finish(ah_answer_acc_t *a);
void ah_answer_acc_free(ah_answer_acc_t *a);

/* The canonical chunks (new array) that replay completion as a stream. */
json_t *ah_answer_chunks(json_t *completion);

#endif
