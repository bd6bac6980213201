/* select.h - keep the context chunks that matter to the question.
 *
 * Clients that do retrieval often stuff every chunk they found into the
 * prompt. Given the chunks and the user's question, ah_select_top_k keeps the
 * k most relevant, scored by BM25 (Okapi, k1 = 1.2, b = 0.75, over the chunks
 * themselves as the collection) and, when the caller supplies embeddings, by
 * a blend with cosine similarity. Ties keep the earlier chunk.
 *
 * Words: runs of letters and digits (UTF-8 letters included), lowercased
 * (ASCII), a short English stop list removed; a light suffix strip (plural
 * "s", "es", "ing", "ed") so "routes" meets "route". Each distinct term of
 * the question counts once however often it is repeated; a chunk's length is
 * its number of words that are not stop words.
 *
 * Pure functions: thread-safe, nothing shared, scratch allocated per call. */
#ifndef AH_SHAPE_SELECT_H
#define AH_SHAPE_SELECT_H

#include <stddef.h>

#include "core/error.h"

/* Most chunks one call scores (AH_E_TOOBIG past it). */
#define AH_SELECT_MAX_CHUNKS 4096
/* Longest chunk or question, in bytes (AH_E_TOOBIG past it). */
#define AH_SELECT_MAX_TEXT_BYTES (4u * 1024 * 1024)

typedef struct ah_chunk {
    const char *text;
    size_t len;
} ah_chunk_t;

/* Optional dense scores: cosine[i] is chunk i's cosine with the question,
 * in [-1, 1] (clamped to it; NaN counts as -1). weight, in [0, 1], is the
 * share of the dense score in the blend (0: BM25 alone; BM25 is first scaled
 * to [0, 1] by the best chunk's):
 *   score = (1 - weight) * bm25 / max_bm25 + weight * (cosine + 1) / 2,
 * the BM25 share 0 when no chunk has any. */
typedef struct ah_select_dense {
    const float *cosine;
    double weight;
} ah_select_dense_t;

/* Score chunks[0..n) against question into scores[0..n) (caller's array),
 * higher is more relevant: raw BM25 (>= 0) when dense is NULL, the blend
 * above in [0, 1] otherwise. AH_E_INVAL for a NULL array or text where bytes
 * or n > 0 are given, a dense with no cosines or a weight outside [0, 1];
 * on error nothing is written. */
ah_err_t ah_select_score(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                         const ah_select_dense_t *dense, double *scores);

/* Write into keep[0..n) (caller's array) 1 for the k best chunks and 0 for
 * the others; *kept receives how many are kept (min(k, n)). Chunks keep
 * their order: the caller renders the kept ones as they came. Equal scores
 * keep the earlier chunk. k == 0 keeps none, k >= n all (nothing is scored).
 * Errors as ah_select_score's, and AH_E_INVAL for a NULL kept, or a NULL
 * keep with n > 0. */
ah_err_t ah_select_top_k(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                         size_t k, const ah_select_dense_t *dense, unsigned char *keep,
                         size_t *kept);

/* Split text[0..len) into sentences: each [start, end) pair goes to
 * spans[2i], spans[2i+1], at most max sentences (the last one takes the rest).
 * A sentence ends after '.', '!' or '?' (and the quotes or brackets closing
 * it) followed by blank and an upper-case letter, digit or quote, at a blank
 * line, or before a line that opens with a list marker ("- ", "* ", "+ ",
 * "1. ", "1) "); "e.g.", "Dr.", "3.14", a '.' before a lower-case word and
 * the like do not end one. Spans hold no leading or trailing blanks; blank
 * text has no sentence. Returns the number of sentences (0 when text or
 * spans is NULL or max is 0). */
size_t ah_select_sentences(const char *text, size_t len, size_t *spans, size_t max);

#endif
