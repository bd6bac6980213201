/* templates.h - named prompt templates with versions.
 *
 * A template is a list of chat messages whose texts may hold {{variables}}.
 * A request names one with `prompt_id` ("support-answer", or "support-answer@3"
 * for a version; the latest otherwise) and fills it with `prompt_variables`;
 * its messages go before the request's own. Versions only grow: a shorter
 * template is a new version that an experiment can compare with the old one.
 * Stored in the gateway's database (`templates` table); `ahorro templates`
 * adds and lists them. */
#ifndef AH_TEMPLATES_H
#define AH_TEMPLATES_H

#include <jansson.h>
#include <sqlite3.h>

#include "core/error.h"

/* Longest template name, in bytes. */
#define AH_TEMPLATE_MAX_NAME 128
/* Largest template body, in bytes of JSON. */
#define AH_TEMPLATE_MAX_BYTES (1u << 20)
/* Most variables one request may fill. */
#define AH_TEMPLATE_MAX_VARS 64

/* Add body ({"messages": [...]}, checked) as the next version of name;
 * *version receives it. AH_E_INVAL (err says why) for a bad name or body. */
ah_err_t ah_template_put(sqlite3 *db, const char *name, const json_t *body, const char *note,
                         int *version, char *err, size_t errlen);

/* Version `version` of name (0: the latest) into *body (caller's, decref)
 * and *got. AH_E_NOTFOUND when there is none. */
ah_err_t ah_template_get(sqlite3 *db, const char *name, int version, json_t **body, int *got);

/* Parse "name" or "name@N" into name (buffer of AH_TEMPLATE_MAX_NAME + 1)
 * and *version (0 when absent). AH_E_INVAL when malformed. */
ah_err_t ah_template_ref(const char *ref, char *name, int *version);

/* The messages of body with every {{var}} replaced from vars (an object of
 * strings or numbers; may be NULL). A new array, the caller's; NULL with err
 * naming the variable when one is missing. */
json_t *ah_template_render(const json_t *body, const json_t *vars, char *err, size_t errlen);

#endif
