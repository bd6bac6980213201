/* test_embed_m2v.c - the Model2Vec embedder and its tokenizer.
 *
 * Reference vectors and test models are model2vec-rs's fixtures (MIT, see
 * tests/data/model2vec/LICENSE.model2vec-rs): embeddings_short.json is
 * "hello world" through test-model-float32, embeddings_long.json "hello"
 * 1,000 times joined by spaces through the same model, and
 * embeddings_vocab_quantized.json that long text through
 * test-model-vocab-quantized. Expected token sequences below were produced
 * with Hugging Face's own tokenizers library (0.23, Node bindings) on the
 * same tokenizer.json files. Run from the repository root, or point
 * AHORRO_M2V_DIR at the folder that holds the fixtures. */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/embed.h"
#include "cache/tokenizer.h"

#define PATH_BYTES 4096
#define DIR_BYTES 1024
#define ERR_BYTES 512
#define REL_TOLERANCE 1e-5
#define MAX_IDS 1024
#define TOKENS_BYTES 8192
#define LONG_REPEATS 1000
#define THREADS 4
#define THREAD_ROUNDS 50

static char fixture_dir[DIR_BYTES];

static const char *fixtures(void)
{
    const char *dir = getenv("AHORRO_M2V_DIR");
    snprintf(fixture_dir, sizeof fixture_dir, "%s", dir && *dir ? dir : "tests/data/model2vec");
    return fixture_dir;
}

static ah_embedder_t *open_model(const char *name)
{
    char path[PATH_BYTES], err[ERR_BYTES] = "";
    snprintf(path, sizeof path, "%s/%s", fixtures(), name);
    ah_embedder_t *e = ah_embed_open_model2vec(path, err, sizeof err);
    ck_assert_msg(e != NULL, "%s: %s", path, err);
    ck_assert_str_eq(e->ops->name, "model2vec");
    return e;
}

/* "hello" LONG_REPEATS times joined by spaces; free with free(). */
static char *long_text(void)
{
    size_t cap = LONG_REPEATS * 6 + 1, len = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < LONG_REPEATS; i++)
        len += (size_t)snprintf(s + len, cap - len, "%shello", i ? " " : "");
    return s;
}

/* Largest relative error of v[0..dim) against the first row of a reference
 * file; fails when the dimensions differ. */
static double max_rel_error(const char *ref_name, const float *v, int dim)
{
    char path[PATH_BYTES];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/%s", fixtures(), ref_name);
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_msg(root != NULL, "%s: %s", path, jerr.text);
    json_t *row = json_array_get(root, 0);
    ck_assert_int_eq((int)json_array_size(row), dim);
    double worst = 0;
    for (int i = 0; i < dim; i++) {
        double want = json_number_value(json_array_get(row, (size_t)i));
        double rel = fabs(v[i] - want) / fmax(fabs(want), 1e-12);
        worst = fmax(worst, rel);
    }
    json_decref(root);
    return worst;
}

static double norm(const float *v, int dim)
{
    double s = 0;
    for (int i = 0; i < dim; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

START_TEST(reference_short)
{
    ah_embedder_t *e = open_model("test-model-float32");
    float v[AH_EMBED_MAX_DIM];
    ck_assert_int_eq(ah_embed(e, "hello world", 11, v), AH_E_OK);
    double err = max_rel_error("embeddings_short.json", v, e->dim);
    printf("reference short: max relative error %.3g\n", err);
    ck_assert_msg(err <= REL_TOLERANCE, "relative error %g", err);
    ah_embed_free(e);
}
END_TEST

START_TEST(reference_long)
{
    ah_embedder_t *e = open_model("test-model-float32");
    float v[AH_EMBED_MAX_DIM];
    char *text = long_text();
    ck_assert_int_eq(ah_embed(e, text, strlen(text), v), AH_E_OK);
    double err = max_rel_error("embeddings_long.json", v, e->dim);
    printf("reference long: max relative error %.3g\n", err);
    ck_assert_msg(err <= REL_TOLERANCE, "relative error %g", err);
    free(text);
    ah_embed_free(e);
}
END_TEST

START_TEST(reference_vocab_quantized)
{
    ah_embedder_t *e = open_model("test-model-vocab-quantized");
    float v[AH_EMBED_MAX_DIM];
    char *text = long_text();
    ck_assert_int_eq(e->dim, 64);
    ck_assert_int_eq(ah_embed(e, text, strlen(text), v), AH_E_OK);
    double err = max_rel_error("embeddings_vocab_quantized.json", v, e->dim);
    printf("reference vocab-quantized: max relative error %.3g\n", err);
    ck_assert_msg(err <= REL_TOLERANCE, "relative error %g", err);
    free(text);
    ah_embed_free(e);
}
END_TEST

START_TEST(int8_model)
{
    ah_embedder_t *q = open_model("test-model-int8");
    ah_embedder_t *f = open_model("test-model-float32");
    float vq[AH_EMBED_MAX_DIM], vf[AH_EMBED_MAX_DIM];
    const char *text = "the quick brown fox jumps over the lazy dog";
    ck_assert_int_eq(q->dim, f->dim);
    ck_assert_int_eq(ah_embed(q, text, strlen(text), vq), AH_E_OK);
    ck_assert_int_eq(ah_embed(f, text, strlen(text), vf), AH_E_OK);
    ck_assert_double_eq_tol(norm(vq, q->dim), 1.0, 1e-5);
    double dot = 0;
    for (int i = 0; i < q->dim; i++) {
        ck_assert(isfinite(vq[i]));
        dot += (double)vq[i] * vf[i];
    }
    ck_assert_msg(dot > 0.99, "int8 and float32 disagree: cosine %g", dot);
    ah_embed_free(q);
    ah_embed_free(f);
}
END_TEST

START_TEST(nothing_known)
{
    ah_embedder_t *e = open_model("test-model-float32");
    float v[AH_EMBED_MAX_DIM];
    ck_assert_int_eq(ah_embed(e, "", 0, v), AH_E_NOTFOUND);
    ck_assert(norm(v, e->dim) == 0);
    /* an emoji is [UNK] for this vocabulary, and [UNK] is dropped */
    ck_assert_int_eq(ah_embed(e, "\xf0\x9f\x99\x82", 4, v), AH_E_NOTFOUND);
    ck_assert(norm(v, e->dim) == 0);
    ck_assert_int_eq(ah_embed(e, "ok \xf0\x9f\x99\x82", 7, v), AH_E_OK);
    ck_assert_double_eq_tol(norm(v, e->dim), 1.0, 1e-5);
    ah_embed_free(e);
}
END_TEST

/* --- tokenizer ----------------------------------------------------------- */

static ah_tok_t *open_tok(const char *model)
{
    char path[PATH_BYTES], err[ERR_BYTES] = "";
    ah_tok_t *t = NULL;
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", fixtures(), model);
    ck_assert_msg(ah_tok_load_file(path, &t, err, sizeof err) == AH_E_OK, "%s", err);
    return t;
}

/* The tokens of text[0..len), space-separated, in out. */
static const char *tokens_n(const ah_tok_t *t, const char *text, size_t len, char *out, size_t cap)
{
    uint32_t ids[MAX_IDS];
    size_t n = 0, w = 0;
    ck_assert_int_eq(ah_tok_encode(t, text, len, -1, ids, MAX_IDS, &n), AH_E_OK);
    out[0] = '\0';
    for (size_t i = 0; i < n && w < cap; i++) {
        const char *s = ah_tok_token(t, ids[i]);
        w += (size_t)snprintf(out + w, cap - w, "%s%s", i ? " " : "", s ? s : "?");
    }
    return out;
}

static const char *tokens(const ah_tok_t *t, const char *text, char *out, size_t cap)
{
    return tokens_n(t, text, strlen(text), out, cap);
}

#define CHECK_TOKENS(t, text, want)                                                                \
    do {                                                                                           \
        char got_[TOKENS_BYTES];                                                                   \
        ck_assert_str_eq(tokens((t), (text), got_, sizeof got_), (want));                          \
    } while (0)

START_TEST(wordpiece_cases)
{
    ah_tok_t *t = open_tok("test-model-float32");
    char buf[TOKENS_BYTES], word[128];
    /* punctuation splits, accents strip, case folds */
    CHECK_TOKENS(t, "H\xc3\xa9llo, w\xc3\xb6rld!", "hello , world !");
    CHECK_TOKENS(t, "don't", "don ' t");
    CHECK_TOKENS(t, "\xc2\xab quotes \xc2\xbb \xe2\x80\x94 dash",
                 "\xc2\xab quotes \xc2\xbb \xe2\x80\x94 dash");
    CHECK_TOKENS(t, "Ti\xe1\xba\xbfng Vi\xe1\xbb\x87t", "tie ##ng viet");
    CHECK_TOKENS(t, "e\xcc\x81t\xc3\xa9", "et ##e"); /* combining acute, then precomposed */
    CHECK_TOKENS(t, "\xc4\xb0stanbul", "istanbul");
    /* "##" continuation pieces, greedy longest match */
    CHECK_TOKENS(t, "unaffable", "una ##ffa ##ble");
    /* a word with a piece outside the vocabulary is one [UNK] */
    CHECK_TOKENS(t, "hello\xf0\x9f\x99\x82 world", "[UNK] world");
    /* max_input_chars_per_word = 100 */
    memset(word, 'a', 101);
    word[101] = '\0';
    CHECK_TOKENS(t, word, "[UNK]");
    word[100] = '\0';
    tokens(t, word, buf, sizeof buf);
    ck_assert_msg(strncmp(buf, "aaa ##aa ##aa", 13) == 0 && strlen(buf) > 100, "%s", buf);
    /* CJK padded, Hangul decomposed, Greek and Cyrillic lowercased */
    CHECK_TOKENS(t, "\xe4\xb8\xad\xe6\x96\x87", "\xe4\xb8\xad \xe6\x96\x87");
    CHECK_TOKENS(t, "\xed\x95\x9c",
                 "\xe1\x84\x92 ##\xe1\x85\xa1 ##\xe1\x86\xab"); /* U+D55C -> jamo */
    CHECK_TOKENS(t, "\xd0\x9f\xd1\x80\xd0\xb8", "\xd0\xbf ##\xd1\x80 ##\xd0\xb8");
    /* control and format characters vanish; NUL too */
    CHECK_TOKENS(t, "zero\xe2\x80\x8bwidth", "zero ##wi ##dt ##h");
    ck_assert_str_eq(tokens_n(t, "x\0y\x07z", 5, buf, sizeof buf), "x ##y ##z");
    /* added tokens match on the raw text */
    CHECK_TOKENS(t, "[MASK] hi", "[MASK] hi");
    CHECK_TOKENS(t, "", "");
    CHECK_TOKENS(t, " \t\n ", "");
    ck_assert_int_eq(ah_tok_unk_id(t), 1);
    ck_assert_int_eq(ah_tok_id(t, "hello"), 6598);
    ck_assert_uint_eq(ah_tok_median_token_bytes(t), 6);
    ah_tok_free(t);
}
END_TEST

START_TEST(encode_limits)
{
    static const char MIXED[] = "a \xf0\x9f\x99\x82 b c d e";
    ah_tok_t *t = open_tok("test-model-float32");
    uint32_t ids[4];
    size_t n = 0;
    /* [UNK] (1) is skipped, and encoding stops at max */
    ck_assert_int_eq(ah_tok_encode(t, MIXED, strlen(MIXED), 1, ids, 3, &n), AH_E_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_int_eq(ids[0], ah_tok_id(t, "a"));
    ck_assert_int_eq(ids[1], ah_tok_id(t, "b"));
    ck_assert_int_eq(ids[2], ah_tok_id(t, "c"));
    ck_assert_int_eq(ah_tok_encode(t, "x", AH_TOK_MAX_TEXT_BYTES + 1, -1, ids, 4, &n), AH_E_TOOBIG);
    ah_tok_free(t);
}
END_TEST

START_TEST(unigram_fixture_cases)
{
    ah_tok_t *t = open_tok("test-model-vocab-quantized");
    /* Replace normalizers pad punctuation; Metaspace without split keeps one
     * pre-token, so the Viterbi pass runs over the whole text */
    CHECK_TOKENS(t, "H\xc3\xa9llo, w\xc3\xb6rld!",
                 "\xe2\x96\x81hello \xe2\x96\x81, \xe2\x96\x81world \xe2\x96\x81!");
    CHECK_TOKENS(t, "hello   world  ", "\xe2\x96\x81hello \xe2\x96\x81world");
    CHECK_TOKENS(t, "unaffable", "\xe2\x96\x81una ffa ble");
    CHECK_TOKENS(t, "hello\xf0\x9f\x99\x82 world", "\xe2\x96\x81hello [UNK] \xe2\x96\x81world");
    CHECK_TOKENS(t, "[UNK] x", "[UNK] \xe2\x96\x81x");
    ck_assert_int_eq(ah_tok_unk_id(t), 1);
    ck_assert_uint_eq(ah_tok_median_token_bytes(t), 9);
    ah_tok_free(t);
}
END_TEST

static const char TINY_UNIGRAM[] =
    "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\",\"special\":true,\"normalized\":false}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\" \"},"
    "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}]},"
    "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\\u2581\","
    "\"prepend_scheme\":\"always\",\"split\":true},"
    "\"model\":{\"type\":\"Unigram\",\"unk_id\":0,\"byte_fallback\":false,\"vocab\":["
    "[\"<unk>\",0.0],[\"\\u2581\",-3.0],[\"\\u2581a\",-2.0],[\"b\",-2.0],[\"c\",-2.0],"
    "[\"bc\",-5.0],[\"\\u2581abc\",-10.0],[\"a\",-3.0]]}}";

START_TEST(unigram_viterbi)
{
    ah_tok_t *t = NULL;
    char err[ERR_BYTES] = "";
    ck_assert_msg(ah_tok_load_json(TINY_UNIGRAM, strlen(TINY_UNIGRAM), &t, err, sizeof err) ==
                      AH_E_OK,
                  "%s", err);
    /* -2-2-2 beats "\u2581abc" (-10) and "\u2581a bc" (-7) */
    CHECK_TOKENS(t, "abc",
                 "\xe2\x96\x81"
                 "a b c");
    CHECK_TOKENS(t, "bc", "\xe2\x96\x81 b c");
    CHECK_TOKENS(t, "ad",
                 "\xe2\x96\x81"
                 "a <unk>");
    CHECK_TOKENS(t, "ABC  BC",
                 "\xe2\x96\x81"
                 "a b c \xe2\x96\x81 b c");
    CHECK_TOKENS(t, "dd a",
                 "\xe2\x96\x81 <unk> \xe2\x96\x81"
                 "a"); /* unknowns fuse */
    CHECK_TOKENS(t, "a<unk>b",
                 "\xe2\x96\x81"
                 "a <unk> \xe2\x96\x81 b");
    ck_assert_int_eq(ah_tok_unk_id(t), 0);
    ah_tok_free(t);
}
END_TEST

static void expect_tok_error(const char *json, ah_err_t want, const char *needle)
{
    ah_tok_t *t = (ah_tok_t *)1;
    char err[ERR_BYTES] = "";
    ck_assert_int_eq(ah_tok_load_json(json, strlen(json), &t, err, sizeof err), want);
    ck_assert_ptr_null(t);
    ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

START_TEST(corrupt_tokenizer)
{
    expect_tok_error("{\"model\": ", AH_E_PARSE, "tokenizer.json: line");
    expect_tok_error("[]", AH_E_PARSE, "not an object");
    expect_tok_error("{}", AH_E_PARSE, "no model");
    expect_tok_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}", AH_E_UNSUPPORTED,
                     "BPE not supported");
    expect_tok_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":[]}}", AH_E_PARSE,
                     "not an object");
    expect_tok_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":-1}}}", AH_E_PARSE,
                     "not an id");
    expect_tok_error("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0,\"b\":0}}}", AH_E_PARSE,
                     "used twice");
    expect_tok_error("{\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
                     "\"vocab\":{\"a\":0}}}",
                     AH_E_PARSE, "unk_token");
    expect_tok_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\"]]}}", AH_E_PARSE,
                     "[piece, score]");
    expect_tok_error("{\"model\":{\"type\":\"Unigram\",\"unk_id\":5,\"vocab\":[[\"a\",-1]]}}",
                     AH_E_PARSE, "unk_id");
    expect_tok_error("{\"normalizer\":{\"type\":\"NFKC\"},"
                     "\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]}}",
                     AH_E_UNSUPPORTED, "NFKC not supported");
    expect_tok_error("{\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"[a-z]\"},"
                     "\"content\":\"\"},\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]}}",
                     AH_E_UNSUPPORTED, "regex");
    expect_tok_error("{\"pre_tokenizer\":{\"type\":\"ByteLevel\"},"
                     "\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]}}",
                     AH_E_UNSUPPORTED, "ByteLevel not supported");
    expect_tok_error("{\"added_tokens\":[{\"id\":-3,\"content\":\"x\"}],"
                     "\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",-1]]}}",
                     AH_E_PARSE, "added token 0");
}
END_TEST

/* --- corrupt safetensors ------------------------------------------------- */

static char tmpdir[DIR_BYTES];

static void write_file(const char *name, const void *data, size_t len)
{
    char path[PATH_BYTES];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A safetensors file: 8-byte length, header, then data_len zero bytes. The
 * length field says declared (the true header length unless overridden). */
static void write_safetensors(const char *header, size_t data_len, uint64_t declared)
{
    size_t hlen = strlen(header), total = 8 + hlen + data_len;
    unsigned char *buf = calloc(1, total);
    ck_assert_ptr_nonnull(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, hlen);
    write_file("model.safetensors", buf, total);
    free(buf);
}

/* A WordPiece tokenizer of 4 tokens for the safetensors cases. */
static const char SMALL_TOKENIZER[] =
    "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":"
    "\"BertPreTokenizer\"},\"model\":{\"type\":\"WordPiece\",\"unk_token\":\"[UNK]\","
    "\"vocab\":{\"[UNK]\":0,\"a\":1,\"b\":2,\"##c\":3}}}";

static void setup_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ahorro-m2v-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    write_file("tokenizer.json", SMALL_TOKENIZER, strlen(SMALL_TOKENIZER));
}

static void teardown_tmp(void)
{
    const char *names[] = {"tokenizer.json", "model.safetensors", "config.json"};
    char path[PATH_BYTES];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    rmdir(tmpdir);
}

static void expect_open_error(const char *needle)
{
    char err[ERR_BYTES] = "";
    ah_embedder_t *e = ah_embed_open_model2vec(tmpdir, err, sizeof err);
    ck_assert_msg(e == NULL, "opened a corrupt model (wanted \"%s\")", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
}

#define HDR(body) "{\"embeddings\":" body "}"

START_TEST(safetensors_good_small)
{
    const char *h = HDR("{\"dtype\":\"F16\",\"shape\":[4,2],\"data_offsets\":[0,16]}");
    write_safetensors(h, 16, strlen(h));
    char err[ERR_BYTES] = "";
    ah_embedder_t *e = ah_embed_open_model2vec(tmpdir, err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    float v[AH_EMBED_MAX_DIM];
    /* an all-zero table gives the zero vector, but the tokens are known */
    ck_assert_int_eq(ah_embed(e, "a bc", 4, v), AH_E_OK);
    ck_assert(v[0] == 0 && v[1] == 0);
    ah_embed_free(e);
}
END_TEST

START_TEST(safetensors_corrupt)
{
    const char *ok = HDR("{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]}");
    write_file("model.safetensors", "\x10\0\0", 3);
    expect_open_error("too short");
    write_safetensors(ok, 32, (uint64_t)1 << 40);
    expect_open_error("header length");
    write_safetensors(ok, 32, strlen(ok) + 40);
    expect_open_error("header length");
    write_safetensors(ok, 32, strlen(ok) - 1);
    expect_open_error("not a JSON object");
    write_safetensors(ok, 16, strlen(ok)); /* truncated data */
    expect_open_error("offsets out of range");
    const char *oob = HDR("{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[32,64]}");
    write_safetensors(oob, 32, strlen(oob));
    expect_open_error("offsets out of range");
    const char *neg = HDR("{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[8,0]}");
    write_safetensors(neg, 32, strlen(neg));
    expect_open_error("offsets out of range");
    const char *dtype = HDR("{\"dtype\":\"U16\",\"shape\":[4,4],\"data_offsets\":[0,32]}");
    write_safetensors(dtype, 32, strlen(dtype));
    expect_open_error("unsupported dtype U16");
    const char *idt = HDR("{\"dtype\":\"I32\",\"shape\":[4,2],\"data_offsets\":[0,32]}");
    write_safetensors(idt, 32, strlen(idt));
    expect_open_error("float type or I8");
    const char *size = HDR("{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,32]}");
    write_safetensors(size, 32, strlen(size));
    expect_open_error("need another size");
    const char *huge =
        HDR("{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,32]}");
    write_safetensors(huge, 32, strlen(huge));
    expect_open_error("bad shape");
    const char *rank = HDR("{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}");
    write_safetensors(rank, 32, strlen(rank));
    expect_open_error("must be [rows");
    const char *few = HDR("{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}");
    write_safetensors(few, 32, strlen(few));
    expect_open_error("2 rows for a vocabulary of 4");
    const char *none = "{\"other\":{\"dtype\":\"F32\",\"shape\":[4,2],\"data_offsets\":[0,32]}}";
    write_safetensors(none, 32, strlen(none));
    expect_open_error("no \"embeddings\"");
    const char *map = "{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                      "\"mapping\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[16,32]}}";
    size_t hl = strlen(map);
    unsigned char buf[8 + 256 + 32] = {0};
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, map, hl);
    buf[8 + hl + 16 + 4] = 7; /* mapping[1] = 7, past the 2 rows */
    write_file("model.safetensors", buf, 8 + hl + 32);
    expect_open_error("mapping[1] = 7 is not a row");
    write_safetensors(ok, 32, strlen(ok));
    write_file("config.json", "{\"normalize\":", 13);
    expect_open_error("config.json");
    write_file("tokenizer.json", "{\"model\":", 9);
    expect_open_error("tokenizer.json");
}
END_TEST

/* --- threads ------------------------------------------------------------- */

typedef struct {
    const ah_embedder_t *e;
    const float *want;
    int bad;
} thread_arg_t;

static void *embed_thread(void *p)
{
    thread_arg_t *a = p;
    float v[AH_EMBED_MAX_DIM];
    const char *text = "Caf\xc3\xa9 society, hello world! The quick brown fox.";
    for (int r = 0; r < THREAD_ROUNDS; r++) {
        if (ah_embed(a->e, text, strlen(text), v) != AH_E_OK ||
            memcmp(v, a->want, (size_t)a->e->dim * sizeof *v) != 0)
            a->bad++;
    }
    return NULL;
}

START_TEST(concurrent_embeds)
{
    ah_embedder_t *e = open_model("test-model-vocab-quantized");
    float want[AH_EMBED_MAX_DIM];
    const char *text = "Caf\xc3\xa9 society, hello world! The quick brown fox.";
    ck_assert_int_eq(ah_embed(e, text, strlen(text), want), AH_E_OK);
    pthread_t th[THREADS];
    thread_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (thread_arg_t){.e = e, .want = want, .bad = 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, embed_thread, &args[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].bad, 0);
    }
    ah_embed_free(e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("embed_m2v");
    TCase *ref = tcase_create("reference");
    tcase_add_test(ref, reference_short);
    tcase_add_test(ref, reference_long);
    tcase_add_test(ref, reference_vocab_quantized);
    tcase_add_test(ref, int8_model);
    tcase_add_test(ref, nothing_known);
    tcase_add_test(ref, concurrent_embeds);
    suite_add_tcase(s, ref);
    TCase *tok = tcase_create("tokenizer");
    tcase_add_test(tok, wordpiece_cases);
    tcase_add_test(tok, encode_limits);
    tcase_add_test(tok, unigram_fixture_cases);
    tcase_add_test(tok, unigram_viterbi);
    tcase_add_test(tok, corrupt_tokenizer);
    suite_add_tcase(s, tok);
    TCase *st = tcase_create("safetensors");
    tcase_add_checked_fixture(st, setup_tmp, teardown_tmp);
    tcase_add_test(st, safetensors_good_small);
    tcase_add_test(st, safetensors_corrupt);
    suite_add_tcase(s, st);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
