/* prompt_cache.h - place Anthropic prompt-cache breakpoints for clients that
 * set none (tools, system prompt, long documents, conversation history). */
#ifndef AH_PROMPT_CACHE_H
#define AH_PROMPT_CACHE_H

#include <jansson.h>

/* Add cache_control marks to an Anthropic Messages body for `model`, unless
 * it has any already. Only body's own top-level keys are replaced (by
 * copies), so a shallow copy of the client's body may be passed. Returns how
 * many marks were placed. */
int ah_prompt_cache_mark(json_t *body, const char *model);

#endif
