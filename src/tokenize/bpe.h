/* bpe.h - OpenAI's byte-level BPE tokenizers (o200k_base, cl100k_base) in C,
 * exact: the same token ids as tiktoken.
 *
 * Text is split into pieces by each encoding's pre-tokenizer regex, written
 * here by hand as a scanner over UTF-8 with Unicode 16.0 class tables
 * (unicode_classes.h); each piece that is not a whole token is merged by
 * rank (tiktoken's byte-pair merge). Rank files are data
 * (scripts/build-tokenizers.sh puts them in build/data/): `<name>.tiktoken`,
 * one "base64(token) rank" a line. Design, exactness and speed measured:
 * docs/tokenizer.md.
 *
 * Input text is bytes: valid UTF-8 is tokenized as tiktoken does; an invalid
 * byte counts as one character of class "other" (punctuation-like), so every
 * input has a tokenization and decode(encode(x)) == x holds for any bytes.
 *
 * A loaded encoding is read-only: encode, count and decode may run on many
 * threads at once; each call keeps its scratch on the stack or allocates it. */
#ifndef AH_BPE_H
#define AH_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"

/* Largest rank file read (o200k_base.tiktoken is 3.6 MB). */
#define AH_BPE_MAX_FILE_BYTES (32u * 1024 * 1024)
/* Largest rank accepted in a rank file. */
#define AH_BPE_MAX_RANK (1u << 21)
/* Longest token, in bytes; longer entries fail the load. */
#define AH_BPE_MAX_TOKEN_BYTES 1024
/* Longest text one call accepts, in bytes (AH_E_TOOBIG past it). */
#define AH_BPE_MAX_TEXT_BYTES (256u * 1024 * 1024)
/* Pieces up to this many bytes are merged with scratch on the stack by
 * tiktoken's quadratic scan; longer ones use a heap (same result). */
#define AH_BPE_SMALL_PIECE 128

/* ah_bpe_encode flags. */
#define AH_BPE_ALLOW_SPECIAL 1u /* <|endoftext|> etc. become their ids; else plain text */

typedef struct ah_bpe ah_bpe_t;

/* Load encoding `name` ("o200k_base" or "cl100k_base") from dir/<name>.tiktoken.
 * On success *out is the caller's, freed with ah_bpe_free; on failure *out is
 * NULL, err says why: AH_E_NOTFOUND (unknown name), AH_E_IO, AH_E_TOOBIG,
 * AH_E_PARSE (malformed line, duplicate token or rank, missing byte token). */
ah_err_t ah_bpe_load(const char *dir, const char *name, ah_bpe_t **out, char *err, size_t errlen);
/* Load encoding `name` from dir, or (dir NULL) from where ahorro looks:
 * $AHORRO_TOKENIZERS_DIR, data/, ../data/ and ../share/ahorro/ beside the
 * binary, then ./build/data. NULL on failure, with err saying why. Free
 * with ah_bpe_free. */
ah_bpe_t *ah_bpe_open_default(const char *dir, const char *name, char *err, size_t errlen);
/* Free an encoding; e may be NULL. */
void ah_bpe_free(ah_bpe_t *e);

/* The encoding's name, e.g. "o200k_base" (static string). */
const char *ah_bpe_name(const ah_bpe_t *e);
/* One past the largest token id, special tokens included. */
uint32_t ah_bpe_vocab_size(const ah_bpe_t *e);

/* Encode text[0..len) into ids[0..max). *n receives the number of tokens
 * of the whole text, even when more than max (then only the first max are
 * written and AH_E_TOOBIG is returned); ids may be NULL when max is 0.
 * AH_E_TOOBIG also past AH_BPE_MAX_TEXT_BYTES (with *n = 0). */
ah_err_t ah_bpe_encode(const ah_bpe_t *e, const char *text, size_t len, unsigned flags,
                       uint32_t *ids, size_t max, size_t *n);
/* Encode into an array allocated here (free with ah_free), at most
 * max_tokens ids: AH_E_TOOBIG past that (then *ids is NULL, *n 0). */
ah_err_t ah_bpe_encode_alloc(const ah_bpe_t *e, const char *text, size_t len, unsigned flags,
                             size_t max_tokens, uint32_t **ids, size_t *n);
/* Count the tokens of text[0..len) without keeping ids. */
ah_err_t ah_bpe_count(const ah_bpe_t *e, const char *text, size_t len, unsigned flags, size_t *n);

/* The bytes of token id: *len bytes at the returned pointer (owned by e,
 * valid until ah_bpe_free), or NULL for an id that is no token. */
const char *ah_bpe_token(const ah_bpe_t *e, uint32_t id, size_t *len);
/* Append the bytes of ids[0..n) to out. AH_E_INVAL for an id that is no
 * token (out keeps what was appended before it), AH_E_TOOBIG at out's max. */
ah_err_t ah_bpe_decode(const ah_bpe_t *e, const uint32_t *ids, size_t n, ah_buf_t *out);

#endif
