/* rerank.h - a word-level check of a semantic-cache candidate, after the vector
 * lookup has found the nearest stored prompt.
 *
 * A sentence vector averages its words, so two prompts that differ in the one
 * word that matters ("learn Python" / "learn Java", "card 1234" / "card 5678",
 * "can I" / "can't I") are as close as two paraphrases. The check looks at the
 * words instead: every content word of each prompt must appear in the other or
 * have a close neighbour there (GloVe cosine), tokens the vocabulary lacks
 * (numbers, names, codes) must appear verbatim, and a negation on one side only
 * is a mismatch. It needs the "sif" embedder's vectors (embed_sif.h), no labels,
 * no allocation; a few microseconds a pair. docs/semantic-cache-quality.md
 * ("Re-ranking check") measures it. */
#ifndef AH_RERANK_H
#define AH_RERANK_H

#include <stddef.h>

#include "cache/embed.h"

/* Distinct tokens a side considers; the words past it are not checked. */
#define AH_RERANK_MAX_TOKENS 64

/* The measured default rule (docs/semantic-cache-quality.md, "Re-ranking check"):
 * the candidate's cosine minus PENALTY x (1 - alignment), compared with the same
 * kind of threshold as the cosine; see ah_rerank_similarity. */
#define AH_RERANK_DEFAULT_PENALTY 0.5f

typedef struct ah_rerank_opts {
    float content_weight; /* a known word with SIF weight >= this is a content word */
    int symmetric;        /* 1: both prompts' content words are checked; 0: the query's */
    int exact_unknown;    /* 1: an unknown token on one side only scores 0 */
    int negation;         /* 1: a negation on one side only scores 0 */
    float match_sim;      /* for ah_rerank_t.unmatched: a counterpart at this cosine or more */
} ah_rerank_opts_t;

/* content_weight 0.8, symmetric, exact unknown tokens, negation, match_sim 0.7. */
extern const ah_rerank_opts_t ah_rerank_defaults;

/* What the comparison of two prompts found. */
typedef struct ah_rerank {
    float align;       /* SIF-weighted mean over both prompts' content words of the cosine of
                          the nearest content word on the other side (1 when the word itself
                          is there, 0 for a missing unknown token); 1 with no content word */
    float worst;       /* lowest nearest-word cosine of a known content word absent from
                          the other prompt; 1 when every such word is present */
    float unmatched;   /* SIF weight of content words whose nearest word is below
                          match_sim (or missing unknown tokens), over all content words' */
    int unknown_miss;  /* unknown tokens present on one side only */
    int negation_miss; /* 1: one prompt is negated, the other is not */
    int reject;        /* an unknown-token or negation mismatch the options make fatal */
    int words;         /* content words checked, both sides */
} ah_rerank_t;

/* Compares query[0..qlen) with the stored candidate cand[0..clen) word by word
 * (opts NULL: the defaults) into *out. sif must be a "sif" embedder
 * (ah_embed_open_sif). Thread-safe, no allocation. */
void ah_rerank_compare(const ah_embedder_t *sif, const ah_rerank_opts_t *opts, const char *query,
                       size_t qlen, const char *cand, size_t clen, ah_rerank_t *out);

/* The default comparison as one number in [0, 1]: the alignment, or 0 when the
 * prompts differ in an unknown token or a negation. */
float ah_rerank_score(const ah_embedder_t *sif, const char *query, size_t qlen, const char *cand,
                      size_t clen);

/* The candidate's similarity after the check: cosine - AH_RERANK_DEFAULT_PENALTY x
 * (1 - alignment), or -1 on an unknown-token or negation mismatch. Never above
 * cosine, so the vector lookup can keep the same threshold; serve the candidate
 * when the result is >= the threshold. */
float ah_rerank_similarity(const ah_embedder_t *sif, float cosine, const char *query, size_t qlen,
                           const char *cand, size_t clen);

#endif
