/* score.h - the scorers of offline evaluation (docs/experiments.md,
 * "Scorers (for offline evaluation)").
 *
 * An evaluation compares a model's answer with what the data set expects.
 * These are the model-free scorers (exact and SQuAD-normalized match, token
 * F1, regex, JSON-schema validity, multiple-choice extraction) and the pure
 * halves of an LLM judge: building its prompt and parsing its answer, so a
 * judge that answers garbage is recorded as a failed judgment, not a score.
 * No network and no global state: every function is safe on any thread.
 * Inputs are untrusted model output: each is bounded by the limits below. */
#ifndef AH_SCORE_H
#define AH_SCORE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

/* Longest answer, reference or schema text a scorer reads (bytes). */
#define AH_SCORE_MAX_TEXT (1024u * 1024)
/* Longest regular expression (bytes), for ah_score_regex and "pattern". */
#define AH_SCORE_MAX_PATTERN 1024
/* Most nodes a regex may expand to (glibc copies a repeated atom once per
 * repetition: "a{1000}" is 1000 nodes, "((a+)+)+" doubles per level), and
 * its deepest nesting of groups. */
#define AH_SCORE_MAX_REGEX_COST 20000
#define AH_SCORE_MAX_REGEX_NESTING 64
/* Deepest nesting of subschemas a JSON schema may have. */
#define AH_SCORE_MAX_SCHEMA_DEPTH 32
/* Most choices of a multiple-choice question (A..Z). */
#define AH_SCORE_MAX_CHOICES 26
/* Most criteria of a judge's rubric, and the longest criterion name. */
#define AH_JUDGE_MAX_CRITERIA 8
#define AH_JUDGE_MAX_CRITERION 32
/* A judge's prompt holds the question, the answer(s) and a reference. */
#define AH_JUDGE_MAX_PROMPT (3 * AH_SCORE_MAX_TEXT + 8192)
/* The lowest and highest score a judge may give a criterion. */
#define AH_JUDGE_SCORE_MIN 1
#define AH_JUDGE_SCORE_MAX 10

/* 1 when answer and reference are byte for byte equal, else 0; -1 when
 * either is NULL or longer than AH_SCORE_MAX_TEXT. */
int ah_score_exact(const char *answer, const char *reference);
/* Like ah_score_exact after ah_score_normalize of both. */
int ah_score_normalized(const char *answer, const char *reference);
/* SQuAD's normalization of s into out (appended; out's max bounds it):
 * case-folded (ASCII and Latin-1 letters), punctuation removed, the
 * articles a/an/the dropped, whitespace collapsed to single spaces. Bytes
 * that are not valid UTF-8 are kept as they are. */
ah_err_t ah_score_normalize(const char *s, ah_buf_t *out);
/* SQuAD's token F1 of the normalized texts, in [0, 1] (1 when both have no
 * token, 0 when one has none); -1 when either is NULL or too long. */
double ah_score_f1(const char *answer, const char *reference);

/* Does answer contain a match of the POSIX extended regex pattern
 * (unanchored: use ^ and $ to match the whole)? *score = 1 or 0 and
 * AH_E_OK; a bad pattern is an error, not a score: AH_E_INVAL with the
 * reason in err, also for what glibc would take too long on (back-
 * references, repetitions expanding past AH_SCORE_MAX_REGEX_COST, "+" or
 * "{m,n}" over what can match empty); AH_E_TOOBIG past
 * AH_SCORE_MAX_PATTERN or AH_SCORE_MAX_TEXT. */
ah_err_t ah_score_regex(const char *answer, const char *pattern, int *score, char *err,
                        size_t errlen);

/* Is answer JSON (the whole text, or the body of its first ``` fence)
 * valid against schema_json, a JSON Schema of the subset documented in
 * docs/experiments.md? AH_E_OK with *score 1, or 0 and why in err (not
 * JSON, or the first failed keyword with its path). A bad schema is an
 * error: AH_E_PARSE (not JSON), AH_E_INVAL (a keyword's value is wrong,
 * too deep), AH_E_UNSUPPORTED (a keyword outside the subset), AH_E_TOOBIG.
 * The schema is checked whole before the answer is looked at. */
ah_err_t ah_score_json_schema(const char *answer, const char *schema_json, int *score, char *err,
                              size_t errlen);

/* The choice (0 for A) that the free text answer asserts among choices_n
 * (2..AH_SCORE_MAX_CHOICES), with *letter = 'A' + index; -1 and *letter =
 * 0 when it asserts none, or two different ones (letter may be NULL). The
 * rules, in order: "answer is X" / "answer: X"; a letter alone or leading
 * ("(B)", "**D**", "B) because"); else the one standalone capital letter.
 * See docs/experiments.md for the traps. */
int ah_score_choice(const char *answer, int choices_n, char *letter);
/* 1 when the extracted choice is reference ('A'.., either case), else 0. */
int ah_score_choice_match(const char *answer, int choices_n, char reference);

/* The default rubric: relevance, accuracy, completeness, conciseness. */
extern const char *const ah_judge_default_criteria[];
#define AH_JUDGE_DEFAULT_N 4

/* Append to out the prompt asking a judge to grade answer to question on
 * each of the n criteria (criteria NULL: the default rubric) from 1 to 10,
 * as one JSON object {"<criterion>": int, ..., "reason": "..."}. reference
 * may be NULL. Criterion names are [a-z_], 1..AH_JUDGE_MAX_CRITERION long.
 * AH_E_INVAL on bad arguments, AH_E_TOOBIG past out's max. */
ah_err_t ah_judge_prompt(const char *const *criteria, int n, const char *question,
                         const char *answer, const char *reference, ah_buf_t *out);
/* Read a judge's answer: the JSON object (alone, in a ``` fence or with
 * text around it) must give every one of the n criteria (criteria NULL:
 * the default rubric) an integer 1..10, into scores[i]; "reason", if
 * present, must be a string, copied (truncated) into reason (may be NULL).
 * AH_E_OK, or AH_E_PARSE for anything else: a failed judgment. */
ah_err_t ah_judge_parse(const char *text, const char *const *criteria, int n, int *scores,
                        char *reason, size_t reasonlen);

/* A pairwise verdict. */
typedef enum {
    AH_JUDGE_FAIL = -1, /* the judge's answer could not be read */
    AH_JUDGE_TIE = 0,
    AH_JUDGE_A = 1,
    AH_JUDGE_B = 2,
} ah_judge_verdict_t;

/* Append to out the prompt asking which of answers a and b to question is
 * better, as {"winner": "A" | "B" | "tie", "reason": "..."}. Ask twice, the
 * second time with a and b swapped, and combine. */
ah_err_t ah_judge_pairwise_prompt(const char *question, const char *a, const char *b,
                                  ah_buf_t *out);
/* The verdict in a judge's answer to the pairwise prompt (the JSON object
 * as for ah_judge_parse, or the bare word A, B or tie); AH_JUDGE_FAIL for
 * anything else. */
ah_judge_verdict_t ah_judge_pairwise_parse(const char *text);
/* Combine the verdict of the first order (a, b) with that of the swapped
 * order (b, a), whose A means b: a side wins only when it wins in both
 * orders, which cancels a judge's position bias; any other pair is a tie,
 * and a failure in either is a failure. */
ah_judge_verdict_t ah_judge_pairwise_combine(ah_judge_verdict_t first, ah_judge_verdict_t swapped);

#endif
