/* json_skim.h - find top-level members of a JSON object without parsing it.
 *
 * The gateway forwards most answers untouched and needs only a few members
 * of them (usage, model, error). A full jansson parse of every answer and
 * every stream event was the largest cost of a passthrough stream; the skim
 * walks the text once, tracks strings and nesting, and returns the raw text
 * span of the wanted members, which are then parsed alone. It validates
 * only what it walks: the result of a skim is never trusted further than
 * "these bytes are the value of that key". */
#ifndef AH_JSON_SKIM_H
#define AH_JSON_SKIM_H

#include <stddef.h>

#include "core/error.h"

typedef struct ah_json_span {
    const char *p; /* NULL when the key is absent */
    size_t n;
} ah_json_span_t;

/* For each of the n keys (plain ASCII, no escapes), the span of its value
 * in the top-level object `json` (first occurrence). AH_E_PARSE when the
 * text is not an object or is cut short. */
ah_err_t ah_json_skim(const char *json, size_t len, const char *const *keys, int n,
                      ah_json_span_t *out);

/* 1 when span is exactly the literal lit ("null", "[]"), ignoring spaces. */
int ah_json_span_is(ah_json_span_t span, const char *lit);

#endif
