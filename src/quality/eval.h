/* eval.h - offline evaluation: data set rows, variants, scoring and the
 * report (docs/evaluation.md).
 *
 * `ahorro eval run` (src/cli/eval.c) sends every row of a data set to every
 * variant through the gateway's own pipeline, keeps each answer with its
 * cost and latency, scores it, and reports per variant. This file holds the
 * pure parts, so they can be unit-tested: reading a row and a variant,
 * building a variant's request body for a row, scoring an answer, and
 * computing and rendering the report (terminal table, JSON, HTML) from
 * stored results. No network, no database, no global state. */
#ifndef AH_EVAL_H
#define AH_EVAL_H

#include <jansson.h>
#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"
#include "quality/score.h"
#include "quality/stats.h"

#define AH_EVAL_MAX_ROWS 100000
#define AH_EVAL_MAX_VARIANTS 8
#define AH_EVAL_MAX_NAME 64
/* Longest data set line (bytes). */
#define AH_EVAL_MAX_LINE (4u * 1024 * 1024)

/* The scorers a run can apply; a row gets those its fields allow. */
typedef enum {
    AH_EVAL_EXACT,
    AH_EVAL_NORMALIZED,
    AH_EVAL_F1,
    AH_EVAL_CHOICE,
    AH_EVAL_REGEX,
    AH_EVAL_JSON_SCHEMA,
    AH_EVAL_JUDGE,
    AH_EVAL_PAIRWISE,
    AH_EVAL_NSCORERS
} ah_eval_scorer_t;

extern const char *const ah_eval_scorer_names[AH_EVAL_NSCORERS];
/* The scorer named s, or -1. */
int ah_eval_scorer_by_name(const char *s);

/* One data set row (JSON object): "messages" (OpenAI chat messages) or
 * "input" (one user message); optional "id", "reference" (string),
 * "choices" (2..26: a multiple-choice question whose reference is a
 * letter), "regex", "schema" (JSON Schema object), "tags" (strings). */
typedef struct ah_eval_row {
    char *id;         /* the row's id, or "#<line>" */
    json_t *messages; /* owned */
    char *question;   /* the last user message's text (for judges) */
    char *reference;  /* or NULL */
    int choices;      /* 0: not multiple-choice */
    char *regex;      /* or NULL */
    char *schema;     /* JSON text, or NULL */
    json_t *tags;     /* object of strings, or NULL (owned) */
} ah_eval_row_t;

/* Read row (a parsed line; line is its number for messages). AH_E_OK, or
 * AH_E_INVAL with why in err. */
ah_err_t ah_eval_row_parse(json_t *row, long line, ah_eval_row_t *out, char *err, size_t errlen);
void ah_eval_row_free(ah_eval_row_t *r);

/* A variant: what changes between the compared configurations. Given as
 * a YAML/JSON object {name, model, temperature, top_p, max_tokens, system,
 * prompt (a template: name or name@version), shape, cache, tags, params}. */
typedef struct ah_eval_variant {
    char name[AH_EVAL_MAX_NAME + 1];
    json_t *spec; /* the object as given, normalized (owned) */
} ah_eval_variant_t;

/* Check a variant object (which it keeps a reference to) and name it
 * (default_name when it has no "name"). AH_E_INVAL with why in err. */
ah_err_t ah_eval_variant_parse(json_t *obj, const char *default_name, ah_eval_variant_t *out,
                               char *err, size_t errlen);
/* A variant from a command line word: "MODEL" or "k=v,k=v" (name, model,
 * temperature, top_p, max_tokens, prompt). */
ah_err_t ah_eval_variant_inline(const char *text, ah_eval_variant_t *out, char *err, size_t errlen);
void ah_eval_variant_free(ah_eval_variant_t *v);

/* The OpenAI chat body variant v sends for row r (new reference). */
json_t *ah_eval_body(const ah_eval_variant_t *v, const ah_eval_row_t *r);
/* The x-ahorro-tags header value for the row's request: purpose=eval,
 * eval_run, variant and the row's tags (appended to out). */
ah_err_t ah_eval_tags(const char *run, const char *variant, const ah_eval_row_t *r, ah_buf_t *out);

/* Every scorer a row allows, except the text scorers (exact, normalized,
 * f1) on a multiple-choice row, whose reference is a letter. */
#define AH_EVAL_AUTO (~0u)

/* Score answer to r with the model-free scorers in mask (bits of
 * ah_eval_scorer_t, or AH_EVAL_AUTO) that r's fields allow, into the object scores
 * ("exact", ... as 0/1 or F1). A scorer that cannot judge (a bad regex or
 * schema) sets "<name>_error" instead of a score. */
void ah_eval_score(const ah_eval_row_t *r, const char *answer, unsigned mask, json_t *scores);

/* A judge's grades into scores: "judge" (mean of (s - 1) / 9 over the
 * criteria, in [0, 1]), "judge_<criterion>" (1..10) and "judge_reason";
 * or, when the verdict cannot be read, "judge_error". */
void ah_eval_judge_scores(const char *verdict, const char *const *criteria, int n, json_t *scores);

/* One stored result (a row of eval_results). */
typedef struct ah_eval_result {
    const char *variant;
    long row;
    int status;      /* HTTP status; 0: no answer (transport error) */
    double cost_usd; /* < 0: unknown */
    double latency_ms;
    int cache_hit;
    json_t *scores; /* borrowed; may be NULL */
} ah_eval_result_t;

/* The report of a run as JSON (new reference): per variant quality (the
 * metric's mean and 95% CI), every scorer's mean, cost per query and
 * total, latency p50/p95, quality per dollar, judge failures and cost;
 * and for every variant but the first (the control), paired tests of
 * quality, cost and latency on the rows both answered, and the pairwise
 * judge's wins, ties and losses with a sign test. metric NULL: the first
 * of judge, choice, json_schema, regex, f1 that has scores. */
json_t *ah_eval_report(const char *run, const char *const *variants, int nvariants,
                       const ah_eval_result_t *res, size_t nres, const char *metric,
                       const char *const *criteria, int ncriteria);
/* Render a report as a terminal table, or a self-contained HTML page
 * (inline CSS and SVG charts, no script), appended to out. */
ah_err_t ah_eval_render_table(const json_t *report, ah_buf_t *out);
ah_err_t ah_eval_render_html(const json_t *report, ah_buf_t *out);

#endif
