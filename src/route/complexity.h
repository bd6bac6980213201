/* complexity.h - how much a request needs a strong model, and how critical it
 * is, from the request alone: the scorer behind router aliases of kind
 * "complexity" (and part of the learned router's features).
 *
 * The score is a fixed, hand-weighted sum of saturating signals read in one
 * pass over the text (length and structure, code, math, multi-step
 * instructions, reasoning cues, constraints, conversation depth, tools),
 * squashed into [0, 1]: no model file, no allocation, a few microseconds for
 * a typical prompt (bench/router/RESULTS.md). Criticality comes from tags
 * (feature=complaints, department=legal, criticality=high...) and text cues
 * (lawsuit, GDPR, dosage...). Both are explainable: top[] names the signals
 * that added most to the score. What the score is worth on real data is
 * measured in docs/routing-quality.md: on MMLU it orders prompts little
 * better than chance, so a tier threshold from it is a cost knob, not a
 * quality guarantee. */
#ifndef AH_ROUTE_COMPLEXITY_H
#define AH_ROUTE_COMPLEXITY_H

#include <jansson.h>
#include <stddef.h>

#define AH_CX_TOP 3
/* Signals of the score, in the order of ah_cx_signal_names. */
#define AH_CX_NSIGNALS 9
/* A signal must add at least this much (before squashing) to be named in top. */
#define AH_CX_TOP_MIN 0.05
/* Bytes of text scanned per request (beyond: the length signal saturates
 * anyway and the cues of the first 64 KiB decide). */
#define AH_CX_MAX_SCAN (64u * 1024)

typedef struct ah_cx {
    double score;               /* [0,1]: grows with how much the request needs a strong model */
    double criticality;         /* [0,1]: legal, complaint, compliance, medical... cues and tags */
    int ntop;                   /* number of names in top */
    const char *top[AH_CX_TOP]; /* static names of the strongest signals, e.g. "code", "math" */
    /* Additions beyond the routing contract, for explanations and features: */
    const char *critical_cue;      /* static name of what made it critical ("legal",
                                      "complaint", "tag:criticality"...), or NULL */
    double signal[AH_CX_NSIGNALS]; /* each signal's addition to the raw score, >= 0 */
    double chars;                  /* bytes of scanned user text */
} ah_cx_t;

/* Static names of the signals: "length", "structure", "code", "math",
 * "multi-step", "reasoning", "constraints", "conversation", "tools". */
extern const char *const ah_cx_signal_names[AH_CX_NSIGNALS];

/* Score a canonical (OpenAI-shaped) chat body {messages, tools, ...}; tags is
 * a JSON object of tag -> string value, or NULL. The text of user messages
 * (string or text parts) is scanned, newest first, up to AH_CX_MAX_SCAN bytes;
 * system and assistant text is not (a long system prompt says nothing about
 * this request), but the number of turns and of tools, tool calls and tool
 * results count. Bad shapes (no messages,
 * non-string content) score what they have, never fail. Pure, thread-safe, no
 * allocation. */
void ah_cx_score(const json_t *body, const json_t *tags, ah_cx_t *out);
/* The same over a bare prompt text (for the CLI and benchmarks); text may be
 * NULL when len is 0. */
void ah_cx_score_text(const char *text, size_t len, ah_cx_t *out);

#endif
