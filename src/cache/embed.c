/* embed.c - the embedder interface's common entry points (embed.h). */
#include "cache/embed.h"

ah_err_t ah_embed(const ah_embedder_t *e, const char *text, size_t len, float *out)
{
    if (len > AH_EMBED_MAX_TEXT)
        len = AH_EMBED_MAX_TEXT;
    return e->ops->embed(e, text, len, out);
}

void ah_embed_free(ah_embedder_t *e)
{
    if (e)
        e->ops->free(e);
}
