/* fake_sim.h - the simulated model behind both wire formats.
 *
 * Everything a test may want to predict lives here, so that the OpenAI and Anthropic
 * handlers only translate: the token counting rule (a token is a whitespace-separated
 * word), the directives a prompt may carry ([[tokens:N]], [[cached:N]], [[cache_write:N]],
 * [[tool]], [[fault:KIND]], [[delay:MS]]), each model's context window, the deterministic answer
 * text, how max_tokens and stop sequences cut it, and tool-call arguments made up from a
 * JSON schema. All pointers handed out point into the caller's json_t tree. */
#ifndef FAKE_SIM_H
#define FAKE_SIM_H

#include <stddef.h>

#include <jansson.h>

#include "fake.h"

/* Directives found in a prompt. tokens, cached and cache_write may appear in any message (the last
 * one wins); the others only count in the last user message, so that a conversation
 * replayed with its history does not repeat a fault. */
typedef struct fake_directives {
    long tokens;           /* [[tokens:N]]: exact answer length; -1 when absent */
    long cached;           /* [[cached:N]]: cached prompt tokens; 0 when absent */
    long cache_write;      /* [[cache_write:N]]: prompt tokens written to the cache; 0 */
    fake_fault_t fault;    /* [[fault:KIND]] */
    long delay_ms;         /* [[delay:MS]]; 0 when absent */
    int tool;              /* [[tool]] or [[tool:NAME]] seen */
    const char *tool_name; /* NAME of [[tool:NAME]] (not NUL-terminated), or NULL */
    size_t tool_name_len;
} fake_directives_t;

/* What the fake knows of a prompt after one pass over it. */
typedef struct fake_prompt {
    long tokens;             /* prompt tokens: sum over messages of (words + 4), plus 3 */
    const json_t *last_user; /* content of the last user message, or NULL */
    fake_directives_t dir;
} fake_prompt_t;

/* One pass over system (string, text blocks, or NULL) and messages (an array of
 * {role, content}): counts tokens and reads directives into p. */
void fake_sim_prompt(fake_prompt_t *p, const json_t *system, const json_t *messages);

/* Scans the n bytes at s for directives; only_global limits it to tokens, cached and
 * cache_write. */
void fake_sim_directives(fake_directives_t *d, const char *s, size_t n, int only_global);

/* Calls fn for every piece of text in content: a string, or an array of parts/blocks
 * carrying "text" (tool_result blocks are searched one level down). */
void fake_sim_foreach_text(const json_t *content, void (*fn)(const char *, size_t, void *),
                           void *arg);

/* Whitespace-separated words in the n bytes at s. */
long fake_sim_words(const char *s, size_t n);

/* Context window in tokens of a model, by the fake's naming rule. */
long fake_sim_context_window(const char *model);

/* Appends the planned answer: "[simulated] ahorro-fake answer from <model>: ", words
 * echoed from the last user message (directives left out), then lorem ipsum; exactly
 * p->dir.tokens words, or FAKE_DEFAULT_ANSWER_TOKENS without it, joined by single spaces. */
void fake_sim_answer(fake_out_t *out, const char *model, const fake_prompt_t *p);

typedef enum {
    FAKE_FINISH_STOP,          /* the answer ended by itself */
    FAKE_FINISH_LENGTH,        /* max_tokens cut it */
    FAKE_FINISH_STOP_SEQUENCE, /* a stop sequence cut it */
    FAKE_FINISH_TOOL,          /* a tool call */
} fake_finish_t;

/* Cuts text (of *len bytes) to max_words words (no limit when max_words < 0), then before
 * the earliest stop sequence (stops: string, array of strings, or NULL). Updates *len;
 * *hit receives the matching stop sequence (NUL-terminated, owned by stops) or NULL. */
fake_finish_t fake_sim_cut(const char *text, size_t *len, long max_words, const json_t *stops,
                           const char **hit);

/* Length of the next streamed chunk at s: leading whitespace, one word, and the trailing
 * whitespace too when nothing follows it; concatenated chunks give back s. */
size_t fake_sim_chunk(const char *s, size_t n);

/* A tool call made up from a JSON schema. */
typedef struct fake_tool_call {
    const char *name; /* NUL-terminated, owned by the request tree */
    fake_out_t args;  /* the arguments object as JSON text */
    size_t *frags;    /* ends of the argument fragments streamed one by one; owned */
    size_t nfrags;    /* also the completion tokens the call costs */
} fake_tool_call_t;

/* Builds args for schema (an object schema; may be NULL): every property becomes "fake",
 * 1, true or null by its type. Release with fake_sim_tool_free. */
void fake_sim_tool_call(fake_tool_call_t *tc, const char *name, const json_t *schema);
void fake_sim_tool_free(fake_tool_call_t *tc);

/* Reads an integer member that must be >= min when present: 0 and *out set, 0 and *out
 * untouched when absent or null, -1 when present but not such an integer. */
int fake_sim_get_long(const json_t *obj, const char *key, long min, long *out);

#endif
