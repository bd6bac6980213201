/* compress.h - fewer prompt tokens from the same text.
 *
 * Two passes over one message's text, both model-free:
 *
 *   lossless  whitespace and formatting normalization outside code (runs of
 *             blanks after a line's indentation become one, trailing blanks
 *             go, three or more newlines become two, blank lines around the
 *             text go; indentation is kept: nested lists, YAML); JSON inside
 *             the prompt minified (a fenced ```json block, a paragraph, or a
 *             text that is a JSON object or array as a whole) by removing
 *             the whitespace outside its strings only, so every number and
 *             string keeps its text; a paragraph of at least 40 bytes that
 *             repeats an earlier one of the same text removed. Code (fenced
 *             ``` or ~~~ blocks, paragraphs indented four columns, `inline`
 *             spans) is copied byte for byte. What a reader (or a model) can
 *             learn from the text is unchanged, and lossless(lossless(x)) ==
 *             lossless(x).
 *
 *   lossy     drop the sentences, then the words, that carry the least
 *             information until the text is at most `ratio` of its tokens:
 *             a word's information is its self-information estimated from
 *             the BPE rank of its tokens (Zipf: rank r ~ probability 1/r, so
 *             -log p ~ log r: frequent words like "the" cost little to drop),
 *             raised for words the question shares. Never touched: code
 *             (fenced and inline), numbers (any word with a digit), names (a
 *             capitalised word not opening a sentence), quoted text ("...",
 *             '...', curly quotes), URLs and paths; a sentence holding any
 *             of them is never dropped whole. Negations ("not", "never",
 *             "don't") and brackets go only with their sentence.
 *
 * Both are pure functions of their input: thread-safe, nothing shared. */
#ifndef AH_SHAPE_COMPRESS_H
#define AH_SHAPE_COMPRESS_H

#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"
#include "tokenize/bpe.h"

/* Longest text either pass accepts, in bytes (AH_E_TOOBIG past it). */
#define AH_SHAPE_MAX_TEXT_BYTES (8u * 1024 * 1024)

/* What a pass did. */
typedef struct ah_compress_stats {
    size_t bytes_in, bytes_out;
    size_t json_minified;         /* JSON blocks minified */
    size_t repeats_removed;       /* repeated paragraphs removed */
    size_t sentences_dropped;     /* lossy */
    size_t words_dropped;         /* lossy */
    size_t tokens_in, tokens_out; /* lossy: counted with enc, exactly */
} ah_compress_stats_t;

/* Append the lossless form of text[0..len) to out. st may be NULL.
 * AH_E_TOOBIG past AH_SHAPE_MAX_TEXT_BYTES or out's max (out then holds
 * what it held before the call). Text of blanks alone gives nothing. */
ah_err_t ah_compress_lossless(const char *text, size_t len, ah_buf_t *out, ah_compress_stats_t *st);

/* Append to out a lossy form of text[0..len) of at most ratio (0 < ratio
 * <= 1) of its tokens counted with enc (the target: ceil(ratio * tokens)),
 * or as close to it as the protected spans allow. A text already within
 * the target comes out in its lossless form; the output is never empty
 * unless that form is (at least the best sentence stays). question (may be
 * NULL) raises the worth of the words it shares. AH_E_INVAL for a ratio out
 * of range or a NULL enc; AH_E_TOOBIG as for ah_compress_lossless. */
ah_err_t ah_compress_lossy(const char *text, size_t len, const char *question, double ratio,
                           const ah_bpe_t *enc, ah_buf_t *out, ah_compress_stats_t *st);

#endif
