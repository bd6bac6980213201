/* rerank.c - the word-level check of a semantic-cache candidate (rerank.h).
 *
 * Each prompt is cut into tokens by the sif embedder's own tokenizer, so the
 * check sees exactly the words the vector saw, plus the ones it could not see.
 * Per side, the distinct tokens are kept as: a vocabulary index and its SIF
 * weight, or, for an unknown token, a 64-bit hash of its bytes. Then each
 * content word (SIF weight >= content_weight: rare words carry the meaning,
 * frequent ones are glue) of either side is aligned with its nearest content
 * word on the other side (cosine 1 when the word itself is there); "align" is
 * the SIF-weighted mean of these cosines, "worst" the lowest. A paraphrase swaps
 * words for near-synonyms (buy / purchase, 0.7-0.9) or adds a few, a different
 * question swaps a word for a co-hyponym or an unrelated word (python / java
 * 0.4, card / transfer 0.4). Co-hyponyms can be as close as synonyms (spain /
 * portugal 0.8), which is the limit of the check. The measured rule
 * (ah_rerank_similarity) lowers the cosine by PENALTY x (1 - align): a hard
 * worst-word bar rejected too many paraphrases.
 *
 * Unknown tokens (numbers, single letters, product codes, names the vocabulary
 * lacks) carry no vector: they must appear verbatim on both sides. Negations
 * ("not", "no", "never", "without", "n't" which the tokenizer maps to "not")
 * are frequent words with small weights; one side negated and the other not is
 * a mismatch of its own. */
#include "cache/rerank.h"

#include <stdint.h>
#include <string.h>

#include "cache/embed_sif.h"
#include "core/hash.h"

const ah_rerank_opts_t ah_rerank_defaults = {
    .content_weight = 0.8f,
    .symmetric = 1,
    .exact_unknown = 1,
    .negation = 1,
    .match_sim = 0.7f,
};

/* Words that negate; "n't" reaches here as "not". */
static const char *const negations[] = {"not", "no", "never", "without", "nor", "cannot"};

/* Unknown tokens that are glue, not content ("a", "i": the vocabulary has no
 * single letters). */
static const char *const unknown_glue[] = {"a", "i"};

typedef struct rr_token {
    int64_t index; /* vocabulary index, -1: unknown */
    uint64_t hash; /* of an unknown token's bytes */
    float weight;
    int content;
} rr_token_t;

typedef struct rr_side {
    const ah_embedder_t *e;
    const ah_rerank_opts_t *o;
    rr_token_t tok[AH_RERANK_MAX_TOKENS];
    int n;
    int negated;
} rr_side_t;

static int word_is(const char *w, size_t n, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && memcmp(list[i], w, n) == 0)
            return 1;
    return 0;
}

static void add_token(void *ctx, const char *w, size_t n, int64_t index)
{
    rr_side_t *s = ctx;
    if (word_is(w, n, negations, sizeof negations / sizeof negations[0]))
        s->negated = 1;
    rr_token_t t = {.index = index, .hash = 0, .weight = 1.0f, .content = 1};
    if (index >= 0) {
        ah_embed_sif_vector(s->e, (uint32_t)index, NULL, &t.weight);
        t.content = t.weight >= s->o->content_weight;
    } else {
        t.hash = ah_fnv1a(AH_FNV_OFFSET, w, n);
        t.content = !word_is(w, n, unknown_glue, sizeof unknown_glue / sizeof unknown_glue[0]);
    }
    if (!t.content)
        return;
    for (int i = 0; i < s->n; i++)
        if (s->tok[i].index == t.index && s->tok[i].hash == t.hash)
            return;
    if (s->n < AH_RERANK_MAX_TOKENS)
        s->tok[s->n++] = t;
}

static int has_token(const rr_side_t *s, const rr_token_t *t)
{
    for (int i = 0; i < s->n; i++)
        if (s->tok[i].index == t->index && s->tok[i].hash == t->hash)
            return 1;
    return 0;
}

/* Checks a's content words against b, folding into out. */
static void check_side(const rr_side_t *a, const rr_side_t *b, ah_rerank_t *out, double *missing,
                       double *aligned, double *total)
{
    for (int i = 0; i < a->n; i++) {
        const rr_token_t *t = &a->tok[i];
        out->words++;
        *total += t->weight;
        if (has_token(b, t)) {
            *aligned += t->weight;
            continue;
        }
        if (t->index < 0) {
            out->unknown_miss++;
            *missing += t->weight;
            continue;
        }
        float best = -1;
        for (int j = 0; j < b->n; j++) {
            if (b->tok[j].index < 0)
                continue;
            float s = ah_embed_sif_similarity(a->e, (uint32_t)t->index, (uint32_t)b->tok[j].index);
            if (s > best)
                best = s;
        }
        if (best < out->worst)
            out->worst = best;
        if (best > 0)
            *aligned += t->weight * best;
        if (best < a->o->match_sim)
            *missing += t->weight;
    }
}

void ah_rerank_compare(const ah_embedder_t *sif, const ah_rerank_opts_t *opts, const char *query,
                       size_t qlen, const char *cand, size_t clen, ah_rerank_t *out)
{
    const ah_rerank_opts_t *o = opts ? opts : &ah_rerank_defaults;
    rr_side_t q = {.e = sif, .o = o}, c = {.e = sif, .o = o};
    ah_embed_sif_tokens(sif, query, qlen, add_token, &q);
    ah_embed_sif_tokens(sif, cand, clen, add_token, &c);
    memset(out, 0, sizeof *out);
    out->worst = 1;
    double missing = 0, aligned = 0, total = 0;
    check_side(&q, &c, out, &missing, &aligned, &total);
    if (o->symmetric)
        check_side(&c, &q, out, &missing, &aligned, &total);
    out->unmatched = total > 0 ? (float)(missing / total) : 0;
    out->align = total > 0 ? (float)(aligned / total) : 1;
    out->negation_miss = q.negated != c.negated;
    out->reject = (o->exact_unknown && out->unknown_miss) || (o->negation && out->negation_miss);
}

float ah_rerank_score(const ah_embedder_t *sif, const char *query, size_t qlen, const char *cand,
                      size_t clen)
{
    ah_rerank_t r;
    ah_rerank_compare(sif, NULL, query, qlen, cand, clen, &r);
    return r.reject ? 0 : r.align;
}

float ah_rerank_similarity(const ah_embedder_t *sif, float cosine, const char *query, size_t qlen,
                           const char *cand, size_t clen)
{
    ah_rerank_t r;
    ah_rerank_compare(sif, NULL, query, qlen, cand, clen, &r);
    return r.reject ? -1.0f : cosine - AH_RERANK_DEFAULT_PENALTY * (1.0f - r.align);
}
