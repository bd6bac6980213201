/* learned.h - the learned router: a model trained from labelled outcomes
 * (prompt, did the cheap model answer well, did the strong one) that scores
 * how much a request needs the strong model.
 *
 * Features of a request: its SIF sentence embedding (cache/embed.h, 100-d)
 * followed by AH_LEARNED_NCX complexity features (route/complexity.h: the
 * nine signals, the score, the criticality, log length), all standardised
 * with the training set's mean and deviation. Two kinds of model:
 *   logreg  L2-regularised logistic regression, fitted by Newton's method;
 *           a second head over the complexity features alone scores requests
 *           when no embedder is given (or its dimension differs)
 *   knn     the k nearest training prompts by cosine of their embeddings;
 *           the mean of their targets (without an embedder: the logreg head
 *           over complexity features, trained alongside)
 * Targets: "gain" (the default) is (strong_ok - cheap_ok + 1) / 2, a soft
 * label whose expectation orders prompts by how much the strong model's
 * accuracy gain there, which is what a cost-quality curve rewards;
 * "cheap-fail" is 1 - cheap_ok. What each is worth on MMLU, by subject-wise
 * cross-validation: docs/routing-quality.md.
 *
 * Model files (ah_learned_save) are binary, little-endian, versioned and
 * checksummed; ah_learned_load treats them as untrusted input. */
#ifndef AH_ROUTE_LEARNED_H
#define AH_ROUTE_LEARNED_H

#include <jansson.h>
#include <stddef.h>

#include "cache/embed.h"
#include "core/error.h"

/* Complexity features after the embedding in a feature row. */
#define AH_LEARNED_NCX 12
/* Largest model file, training set, and k. */
#define AH_LEARNED_MAX_FILE (1u << 30)
#define AH_LEARNED_MAX_EXAMPLES 2000000u
#define AH_LEARNED_MAX_K 1024

typedef struct ah_learned ah_learned_t;

typedef enum { AH_LEARNED_LOGREG = 1, AH_LEARNED_KNN = 2 } ah_learned_kind_t;
typedef enum { AH_LEARNED_TARGET_GAIN = 1, AH_LEARNED_TARGET_CHEAP_FAIL = 2 } ah_learned_target_t;

typedef struct ah_learned_opts {
    ah_learned_kind_t kind;
    ah_learned_target_t target;
    double l2;         /* logreg: penalty per example on the weights (not the bias) */
    int k;             /* knn: neighbours */
    int use_embedding; /* logreg: 0 = complexity features only */
} ah_learned_opts_t;

/* logreg, gain, l2 1e-2, k 50, with embedding. */
extern const ah_learned_opts_t ah_learned_defaults;

/* Load a trained model file (written by ah_learned_save / `ahorro router
 * train`). NULL on error with the reason in err. Free with ah_learned_free.
 * Read-only after load: thread-safe scoring. */
ah_learned_t *ah_learned_load(const char *path, char *err, size_t errlen);
void ah_learned_free(ah_learned_t *m);
/* Score in [0,1] (probability-like: need of the strong model) of a canonical
 * chat body; emb is the SIF embedder (may be NULL: then the complexity-feature
 * head alone scores, which orders prompts less well). The text embedded is the
 * body's user messages joined (first AH_EMBED_MAX_TEXT bytes). */
double ah_learned_score(const ah_learned_t *m, const json_t *body, const ah_embedder_t *emb);
double ah_learned_score_text(const ah_learned_t *m, const char *text, size_t len,
                             const ah_embedder_t *emb);

/* Training, for `ahorro router train` and bench/router/. */

/* Floats in a feature row for an embedding dimension dim (0: none). */
size_t ah_learned_row_size(int dim);
/* The feature row of a text into row[ah_learned_row_size(dim)]: its embedding
 * by emb (zeros when emb is NULL, its dimension is not dim, or no word is
 * known) then the complexity features. */
void ah_learned_row_text(const char *text, size_t len, const ah_embedder_t *emb, int dim,
                         float *row);
/* Train on n feature rows (row i at rows + i * ah_learned_row_size(dim)) and
 * their outcomes. NULL with the reason in err on bad options or data (n == 0,
 * one class only). Free with ah_learned_free. */
ah_learned_t *ah_learned_train(const float *rows, size_t n, int dim, const unsigned char *cheap_ok,
                               const unsigned char *strong_ok, const ah_learned_opts_t *opts,
                               char *err, size_t errlen);
/* Score of a feature row (built with the model's dimension). */
double ah_learned_score_row(const ah_learned_t *m, const float *row);
/* Score of a feature row for several k at once (knn only; else every out[j]
 * is the model's score): out[j] for ks[j] <= the model's k. For choosing k
 * by validation without retraining. */
void ah_learned_score_row_ks(const ah_learned_t *m, const float *row, const int *ks, int nks,
                             double *out);
/* The model's embedding dimension (0: trained without embeddings). */
int ah_learned_dim(const ah_learned_t *m);
/* A one-line description ("logreg gain l2=0.01 dim=100 n=11230"). */
void ah_learned_describe(const ah_learned_t *m, char *buf, size_t n);
/* Write m to path (atomically: a temporary file renamed). */
ah_err_t ah_learned_save(const ah_learned_t *m, const char *path, char *err, size_t errlen);

#endif
