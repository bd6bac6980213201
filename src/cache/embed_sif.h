/* embed_sif.h - the "sif" embedder's variants and word access, for the quality
 * evaluation (bench/semcache/eval.c) and the unit tests.
 *
 * The gateway needs only ah_embed_open_sif (embed.h), which opens the shipped
 * default. These entry points open the same file as the variants the evaluation
 * compares (plain mean, other SIF parameters, with or without the common
 * component) and expose the tokenizer and the word vectors, so that an
 * experiment can weight words differently without a second implementation. */
#ifndef AH_EMBED_SIF_H
#define AH_EMBED_SIF_H

#include <stddef.h>
#include <stdint.h>

#include "cache/embed.h"

/* How the default embedder is configured; ah_embed_open_sif uses
 * ah_embed_sif_defaults. */
typedef struct ah_embed_sif_opts {
    int weighting;        /* 1: SIF weights a / (a + p(w)); 0: plain mean of word vectors */
    int remove_component; /* 1: remove the file's common component (when it has one) */
    float sif_a;          /* > 0: recompute the weights for this a; 0: the file's weights */
} ah_embed_sif_opts_t;

/* The shipped default: SIF weights as stored, common component removed. */
extern const ah_embed_sif_opts_t ah_embed_sif_defaults;

/* Like ah_embed_open_sif with explicit options (opts NULL: the defaults). Free
 * with ah_embed_free. */
ah_embedder_t *ah_embed_open_sif_opts(const char *path, const ah_embed_sif_opts_t *opts, char *err,
                                      size_t errlen);

/* Calls fn(ctx, index) for each vocabulary word of text[0..len) in order, as
 * the embedder sees them (index: the word's frequency rank in the file).
 * Returns how many were found. e must be a "sif" embedder. */
size_t ah_embed_sif_words(const ah_embedder_t *e, const char *text, size_t len,
                          void (*fn)(void *ctx, uint32_t index), void *ctx);
/* The word at index: its vector (dequantised) into vec[dim] and its weight as
 * the embedder applies it into *weight (either may be NULL). AH_E_INVAL when
 * index is out of range. */
ah_err_t ah_embed_sif_vector(const ah_embedder_t *e, uint32_t index, float *vec, float *weight);
/* Words in the vocabulary. */
uint32_t ah_embed_sif_count(const ah_embedder_t *e);

/* A token as the tokenizer cut it: word[0..n) (lowercase, not NUL-terminated,
 * valid during the call only) and its vocabulary index, or -1 when the
 * vocabulary lacks it (numbers, single letters, rare names, non-ASCII words). */
typedef void (*ah_embed_sif_token_fn)(void *ctx, const char *word, size_t n, int64_t index);
/* Calls fn(ctx, ...) for each token of text[0..len) in order, known or not: the
 * same tokens ah_embed_sif_words walks, plus the unknown ones it skips. Returns
 * how many were in the vocabulary. e must be a "sif" embedder. */
size_t ah_embed_sif_tokens(const ah_embedder_t *e, const char *text, size_t len,
                           ah_embed_sif_token_fn fn, void *ctx);
/* Cosine of the vectors of the words at indices a and b (as stored: no weight,
 * no common component removed); 0 when either is out of range or zero. */
float ah_embed_sif_similarity(const ah_embedder_t *e, uint32_t a, uint32_t b);

#endif
