/* prompt_cache.c - Anthropic prompt-cache breakpoints placed for the client.
 *
 * Anthropic caches a prompt prefix only where the request marks it with
 * cache_control; a read then costs a tenth of the input price, a write a
 * quarter more. Most clients never mark anything. When a body has no mark
 * at all, the gateway places up to four, in the provider's rules: on the
 * last tool (the tool list), on the last system block, after a long
 * document in the final user turn (a stable context followed by a
 * question), and at the end of the conversation before the final user turn
 * (the next turn of the same conversation reads it back). A mark goes only
 * where the prefix before it reaches the model's minimum cacheable length,
 * estimated from its size (about four bytes a token), so that short prompts
 * never pay for a write. A body where the client placed its own marks is
 * left exactly as it is. */
#include "provider/prompt_cache.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

#define MAX_BREAKPOINTS 4
#define BYTES_PER_TOKEN 4

/* Minimum cacheable prefix, in tokens, by model family. */
static long min_tokens(const char *model)
{
    if (!model)
        return 1024;
    if (strstr(model, "opus-4-6") || strstr(model, "opus-4-5") || strstr(model, "haiku-4-5"))
        return 4096;
    if (strstr(model, "sonnet-4-6") || strstr(model, "haiku"))
        return 2048;
    return 1024;
}

static int has_mark(json_t *v, int depth)
{
    if (depth > 8)
        return 0;
    if (json_is_object(v)) {
        if (json_object_get(v, "cache_control"))
            return 1;
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e) if ((json_is_array(e) || json_is_object(e)) &&
                                         has_mark(e, depth + 1)) return 1;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (has_mark(e, depth + 1)) return 1;
    }
    return 0;
}

/* Rough size of a value in tokens. */
static long tokens_of(json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    long n = s ? (long)(strlen(s) / BYTES_PER_TOKEN) : 0;
    free(s);
    return n;
}

static json_t *mark(void)
{
    return json_pack("{s:s}", "type", "ephemeral");
}

/* Content as an array of blocks (a string becomes one text block); a new
 * array the caller owns, so that the client's body is never changed. */
static json_t *blocks_of(json_t *content)
{
    if (json_is_string(content))
        return json_pack("[{s:s,s:O}]", "type", "text", "text", content);
    return json_is_array(content) ? json_deep_copy(content) : NULL;
}

/* Mark the last block of message i in msgs (a copy). */
static int mark_message(json_t *msgs, size_t i)
{
    json_t *m = json_array_get(msgs, i);
    json_t *b = blocks_of(json_object_get(m, "content"));
    size_t n = json_array_size(b);
    if (!n || !json_is_object(json_array_get(b, n - 1))) {
        json_decref(b);
        return 0;
    }
    json_object_set_new(json_array_get(b, n - 1), "cache_control", mark());
    json_t *copy = json_copy(m);
    json_object_set_new(copy, "content", b);
    json_array_set_new(msgs, i, copy);
    return 1;
}

int ah_prompt_cache_mark(json_t *body, const char *model)
{
    json_t *tools = json_object_get(body, "tools"), *system = json_object_get(body, "system");
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || has_mark(tools, 0) || has_mark(system, 0) || has_mark(msgs, 0))
        return 0;
    long need = min_tokens(model), prefix = 0;
    int placed = 0;
    if (json_array_size(tools)) {
        prefix += tokens_of(tools);
        if (prefix >= need) {
            json_t *t = json_deep_copy(tools);
            json_object_set_new(json_array_get(t, json_array_size(t) - 1), "cache_control", mark());
            json_object_set_new(body, "tools", t);
            placed++;
        }
    }
    if (system && !json_is_null(system)) {
        prefix += tokens_of(system);
        json_t *b = blocks_of(system);
        size_t n = json_array_size(b);
        if (prefix >= need && n && json_is_object(json_array_get(b, n - 1))) {
            json_object_set_new(json_array_get(b, n - 1), "cache_control", mark());
            json_object_set_new(body, "system", b);
            placed++;
        } else {
            json_decref(b);
        }
    }
    size_t nm = json_array_size(msgs);
    if (nm == 0)
        return placed;
    msgs = json_copy(msgs); /* shallow: marked messages are replaced by copies */
    json_object_set_new(body, "messages", msgs);
    /* the conversation before the final user turn */
    size_t last = nm - 1;
    for (size_t i = 0; i < last; i++)
        prefix += tokens_of(json_array_get(msgs, i));
    if (last > 0 && prefix >= need && placed < MAX_BREAKPOINTS)
        placed += mark_message(msgs, last - 1);
    /* a long document followed by a question in the final turn */
    json_t *content = json_object_get(json_array_get(msgs, last), "content");
    if (json_is_array(content) && json_array_size(content) >= 2 && placed < MAX_BREAKPOINTS) {
        long p = prefix;
        for (size_t i = 0; i + 1 < json_array_size(content); i++) {
            long t = tokens_of(json_array_get(content, i));
            p += t;
            if (t >= need / 2 && p >= need && json_is_object(json_array_get(content, i))) {
                json_t *b = json_deep_copy(content);
                json_object_set_new(json_array_get(b, i), "cache_control", mark());
                json_t *copy = json_copy(json_array_get(msgs, last));
                json_object_set_new(copy, "content", b);
                json_array_set_new(msgs, last, copy);
                placed++;
                break;
            }
        }
    }
    return placed;
}
