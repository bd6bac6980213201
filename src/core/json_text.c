/* json_text.c - join the text parts of a message's content. */
#include "core/json_text.h"

#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"

char *ah_json_join_text(json_t *content, const char *sep)
{
    if (json_is_string(content))
        return ah_strdup(json_string_value(content));
    ah_buf_t b;
    ah_buf_init(&b, AH_MAX_BODY_BYTES);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        const char *type = json_string_value(json_object_get(part, "type"));
        const char *t = json_string_value(json_object_get(part, "text"));
        if (!t || (type && strcmp(type, "text") != 0))
            continue;
        if (b.len)
            ah_buf_appends(&b, sep);
        ah_buf_appends(&b, t);
    }
    return ah_buf_steal(&b, NULL);
}
