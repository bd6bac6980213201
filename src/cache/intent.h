/* intent.h - a tenant's labelled history as a check on semantic-cache hits.
 *
 * A support deployment often has its past queries labelled: an intent, a
 * canned-answer id, a ticket category. Two queries with the same label want
 * the same answer; two with different labels do not, however close their
 * sentence vectors are ("card arrived late" / "card not arrived yet" are both
 * about a card's arrival; "top up by cash" / "top up by card" are not the
 * same question). This module learns a classifier from such a history, and
 * the cache serves a candidate only when the query and the candidate's prompt
 * are both classified, confidently, into the same label.
 *
 * The classifier: multinomial logistic regression over hashed features of the
 * text alone (no embedder needed, so it works with every embedder): word
 * unigrams and bigrams, and character 3- to 5-grams of each word (typos,
 * inflections), each group scaled to a fixed share of the norm. Trained by SGD
 * with a decaying step at load, from a CSV file; about a second for 10,000 rows
 * on one core. The
 * model is read-only after training: prediction is thread-safe and allocates
 * nothing. docs/semantic-cache-quality.md ("Labelled history") measures it on
 * Banking77 and says how the default confidence was chosen.
 *
 * Files are untrusted input: sizes, rows, classes and text lengths are bounded. */
#ifndef AH_INTENT_H
#define AH_INTENT_H

#include <stddef.h>

#include "core/error.h"

#define AH_INTENT_MAX_FILE (256u * 1024 * 1024)
#define AH_INTENT_MAX_ROWS 1000000u
#define AH_INTENT_MAX_CLASSES 1024
#define AH_INTENT_MAX_LABEL 256
/* Bytes of a text that are featurised; the rest is ignored. */
#define AH_INTENT_MAX_TEXT 4096
/* Features of one text at most (the text limit bounds them well below). */
#define AH_INTENT_MAX_FEATURES 8192
/* Rows x labels trained on at most: training takes about 1.6 us per unit with
 * the default options (0.6 s for Banking77's 5,000 x 77), so this bounds a
 * start at about 30 s; a larger history is refused rather than trained for
 * hours (train on a sample of it). */
#define AH_INTENT_MAX_WORK 20000000u

typedef struct ah_intent ah_intent_t;

typedef struct ah_intent_opts {
    int bits;          /* 2^bits hashed feature buckets (12..22) */
    int epochs;        /* passes of SGD over the rows */
    float rate;        /* first step size; decays as rate / (1 + epoch) */
    float l2;          /* weight decay per step */
    float char_weight; /* share of the character n-grams in the feature vector */
    unsigned seed;     /* shuffling order of the rows */
} ah_intent_opts_t;

extern const ah_intent_opts_t ah_intent_defaults;

/* Train on n texts and their labels (any strings; equal strings are one
 * class). opts NULL: the defaults. NULL with the reason in err on bad options
 * or data (no rows, fewer than two labels, too many labels). Free with
 * ah_intent_free. */
ah_intent_t *ah_intent_train(const char *const *texts, const size_t *lens,
                             const char *const *labels, size_t n, const ah_intent_opts_t *opts,
                             char *err, size_t errlen);

/* Read a CSV file of labelled texts and train on it. The first record is a
 * header: the text is the column named text, prompt, query or question (else
 * the first), the label the column named label, intent, category or class
 * (else the second). Quoted fields (RFC 4180) are read. NULL with
 * "file:line: why" in err. */
ah_intent_t *ah_intent_load_csv(const char *path, const ah_intent_opts_t *opts, char *err,
                                size_t errlen);
/* The same from the file's bytes data[0..n) (path names it in errors). */
ah_intent_t *ah_intent_parse_csv(const char *data, size_t n, const char *path,
                                 const ah_intent_opts_t *opts, char *err, size_t errlen);

void ah_intent_free(ah_intent_t *m);

/* How well a history would decide hits, measured on itself (`ahorro cache
 * intents FILE`): its rows, shuffled by the options' seed, are cut in two halves; a
 * model trained on each half classifies the other, which is then replayed in
 * order from an empty cache, at each of ah_intent_check_levels: a text with a
 * label at least that probable is served by an earlier stored text predicted
 * into the same label (as probably), else stored. Counts add up over both
 * halves. The gateway only looks at the nearest stored prompts, so its hit
 * rate is at most this one; precision is what to read. */
#define AH_INTENT_CHECK_LEVELS 5
extern const double ah_intent_check_levels[AH_INTENT_CHECK_LEVELS]; /* 0.5 .. 0.9 */

typedef struct ah_intent_check_level {
    size_t covered, covered_right; /* texts with a label that probable, and right ones */
    size_t hits, hits_right;       /* hits of the replay, and right ones */
} ah_intent_check_level_t;

typedef struct ah_intent_check {
    size_t rows;
    int labels;
    size_t tested, correct; /* every held-out text, and its most probable label right */
    ah_intent_check_level_t at[AH_INTENT_CHECK_LEVELS];
} ah_intent_check_t;

/* The check of the history at path (opts NULL: the defaults) into *out; an
 * error as ah_intent_load_csv's. Trains two models: a few seconds. */
ah_err_t ah_intent_check_csv(const char *path, const ah_intent_opts_t *opts, ah_intent_check_t *out,
                             char *err, size_t errlen);

/* Labels the model knows, and the name of label c. */
int ah_intent_classes(const ah_intent_t *m);
const char *ah_intent_label(const ah_intent_t *m, int c);
/* Rows the model was trained on. */
size_t ah_intent_rows(const ah_intent_t *m);

/* The most probable label of text[0..len) and its probability in *conf (may be
 * NULL); p (may be NULL) gets every label's probability, ah_intent_classes
 * floats. -1 with *conf 0 for a text with no feature (empty, or only
 * separators). Thread-safe, no allocation. */
int ah_intent_predict(const ah_intent_t *m, const char *text, size_t len, float *p, float *conf);

#endif
