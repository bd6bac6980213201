/* json_text.h - the text of a chat message's content, whatever its shape.
 *
 * Both wire formats let content be a plain string or an array of parts or
 * blocks ({"type":"text","text":...}, images, ...). Translating between them
 * often needs just the text: system prompts, tool results. */
#ifndef AH_JSON_TEXT_H
#define AH_JSON_TEXT_H

#include <jansson.h>

/* The string itself, or the "text" of each text part joined with sep
 * (non-text parts are skipped). Owned by the caller: free with ah_free. */
char *ah_json_join_text(json_t *content, const char *sep);

#endif
