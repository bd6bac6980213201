/* tokenizer.h - the subset of Hugging Face tokenizer.json that static
 * embedders need, in C.
 *
 * Loads a `tokenizers`-library tokenizer.json (normalizer, pre-tokenizer,
 * WordPiece or Unigram model, added tokens) and turns text into token ids as
 * Tokenizer.encode(text, add_special_tokens=False) does. Post-processors and
 * decoders are ignored: an embedder needs ids, not special tokens or text.
 * What is supported, and where this differs from the Rust library, is listed
 * in docs/model2vec.md. A loaded tokenizer is read-only, so ah_tok_encode may
 * run on several threads at once; each call allocates its own scratch. */
#ifndef AH_TOKENIZER_H
#define AH_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Largest tokenizer.json read. */
#define AH_TOK_MAX_FILE_BYTES (64u * 1024 * 1024)
/* Largest token id (vocabulary size) accepted. */
#define AH_TOK_MAX_VOCAB (4u * 1024 * 1024)
/* Longest vocabulary entry, in bytes; longer ones are rejected at load. */
#define AH_TOK_MAX_TOKEN_BYTES 1024
/* Most normalizer or pre-tokenizer steps (after flattening Sequences). */
#define AH_TOK_MAX_STEPS 128
/* Longest text ah_tok_encode accepts, in bytes. */
#define AH_TOK_MAX_TEXT_BYTES (1024u * 1024)

typedef struct ah_tok ah_tok_t;

/* Load tokenizer.json from path into *out. On failure returns an error, sets
 * *out to NULL and writes why into err. Free with ah_tok_free. */
ah_err_t ah_tok_load_file(const char *path, ah_tok_t **out, char *err, size_t errlen);
/* Same from the JSON text json[0..len) (the caller keeps json). */
ah_err_t ah_tok_load_json(const char *json, size_t len, ah_tok_t **out, char *err, size_t errlen);
/* Release t; t may be NULL. */
void ah_tok_free(ah_tok_t *t);

/* Tokenize text[0..len) into ids[0..max), dropping every id equal to
 * skip_id (pass -1 to keep all), and stop once max ids are written; *n gets
 * the count. Returns AH_E_TOOBIG past AH_TOK_MAX_TEXT_BYTES. Thread-safe. */
ah_err_t ah_tok_encode(const ah_tok_t *t, const char *text, size_t len, int64_t skip_id,
                       uint32_t *ids, size_t max, size_t *n);

/* One more than the largest token id (model vocabulary and added tokens). */
size_t ah_tok_vocab_size(const ah_tok_t *t);
/* Id of the token spelled s (NUL-terminated), or -1 if none. */
int64_t ah_tok_id(const ah_tok_t *t, const char *s);
/* Spelling of token id, owned by t; NULL if no token has that id. */
const char *ah_tok_token(const ah_tok_t *t, uint32_t id);
/* The unknown token's id as Model2Vec finds it: the model's unk_token (else
 * "[UNK]") looked up in the vocabulary, else Unigram's unk_id; -1 if none. */
int64_t ah_tok_unk_id(const ah_tok_t *t);
/* Median byte length of the model vocabulary's entries (Model2Vec truncates
 * text to max_tokens times this many characters before tokenizing). */
size_t ah_tok_median_token_bytes(const ah_tok_t *t);

#endif
