/* common.c - helpers shared by the client formats. */
#include <string.h>

#include "core/alloc.h"
#include "ingress/ingress.h"

const ah_ingress_ops_t *ah_ingress_for(ah_api_t api)
{
    return api == AH_API_ANTHROPIC ? &ah_ingress_anthropic : &ah_ingress_openai;
}

void ah_sse_append(ah_buf_t *out, const char *event, json_t *data)
{
    char *s = json_dumps(data, JSON_COMPACT);
    if (event) {
        ah_buf_appends(out, "event: ");
        ah_buf_appends(out, event);
        ah_buf_appends(out, "\n");
    }
    ah_buf_appends(out, "data: ");
    ah_buf_appends(out, s ? s : "{}");
    ah_buf_appends(out, "\n\n");
    free(s);
}
