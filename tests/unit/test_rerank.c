/* test_rerank.c - the word-level check of semantic-cache candidates
 * (src/cache/rerank.c) and the sif embedder's token and word-similarity access
 * it uses, against a tiny vector file this test writes (the format is at the top
 * of src/cache/embed_sif.c) and, when present, the real file
 * (build/data/sif-100d.bin, or AHORRO_SIF_VECTORS). */
#include <check.h>

#include "check_run.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/embed_sif.h"
#include "cache/rerank.h"

#define PATH_BYTES 4096
#define ERR_BYTES 512
#define DIM 4
#define TOL 1e-5
#define FIXTURE_MAX_BYTES 4096
#define HEADER_BYTES 96
#define ENTRY_BYTES 16
#define NBUCKETS 64
#define REAL_DIM 100
#define MAX_SEEN 16

typedef struct fixture_word {
    const char *word;
    float vec[DIM];
    float weight;
} fixture_word_t;

/* Content words (weight >= 0.8) and glue; cos(python, java) = 0.6,
 * cos(learn, study) = 0.9. */
static const fixture_word_t words[] = {
    {"learn", {1, 0, 0, 0}, 0.95f},
    {"python", {0, 1, 0, 0}, 0.99f},
    {"java", {0, 0.6f, 0.8f, 0}, 0.99f},
    {"study", {0.9f, 0, 0, 0.43589f}, 0.95f},
    {"card", {0.5f, 0.5f, 0.5f, 0.5f}, 0.9f},
    {"how", {0, 0, 0, 1}, 0.3f},
    {"do", {0, 0, 1, 0}, 0.2f},
    {"not", {0, 0, 1, 1}, 0.3f},
    {"my", {0, 1, 1, 0}, 0.2f},
};
#define NWORDS (sizeof words / sizeof words[0])

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x01000193u;
    }
    return h;
}

static void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, sizeof v);
}

static void putf(uint8_t *p, float v)
{
    memcpy(p, &v, sizeof v);
}

static size_t align4(size_t x)
{
    return (x + 3) & ~(size_t)3;
}

/* A float32 file of words[], no common component. */
static size_t build(uint8_t *buf)
{
    memset(buf, 0, FIXTURE_MAX_BYTES);
    size_t strings = 0;
    for (size_t i = 0; i < NWORDS; i++)
        strings += strlen(words[i].word);
    size_t off_buckets = HEADER_BYTES;
    size_t off_entries = align4(off_buckets + 4 * NBUCKETS);
    size_t off_strings = align4(off_entries + ENTRY_BYTES * NWORDS);
    size_t off_vectors = align4(off_strings + strings);
    size_t size = align4(off_vectors + 4 * DIM * NWORDS);
    ck_assert_uint_le(size, FIXTURE_MAX_BYTES);
    memcpy(buf, "AHSIFVEC", 8);
    put32(buf + 8, 1);
    put32(buf + 12, 0x0A0B0C0Du);
    put32(buf + 16, DIM);
    put32(buf + 20, NWORDS);
    put32(buf + 24, NBUCKETS);
    put32(buf + 28, 1);
    putf(buf + 32, 1e-3f);
    put64(buf + 40, off_buckets);
    put64(buf + 48, off_entries);
    put64(buf + 56, off_strings);
    put64(buf + 64, strings);
    put64(buf + 72, off_vectors);
    put64(buf + 88, size);
    size_t soff = 0;
    for (size_t i = 0; i < NWORDS; i++) {
        size_t n = strlen(words[i].word);
        uint8_t *e = buf + off_entries + ENTRY_BYTES * i;
        put32(e, (uint32_t)soff);
        e[4] = (uint8_t)n;
        putf(e + 8, words[i].weight);
        putf(e + 12, 1.0f);
        memcpy(buf + off_strings + soff, words[i].word, n);
        soff += n;
        for (int d = 0; d < DIM; d++)
            putf(buf + off_vectors + 4 * (DIM * i + (size_t)d), words[i].vec[d]);
        uint32_t b = fnv1a(words[i].word, n) & (NBUCKETS - 1);
        while (buf[off_buckets + 4 * b] != 0)
            b = (b + 1) & (NBUCKETS - 1);
        put32(buf + off_buckets + 4 * b, (uint32_t)i + 1);
    }
    return size;
}

static ah_embedder_t *open_fixture(void)
{
    static uint8_t buf[FIXTURE_MAX_BYTES];
    char path[PATH_BYTES];
    size_t n = build(buf);
    snprintf(path, sizeof path, "/tmp/ahorro-test-rerank-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
    char err[ERR_BYTES];
    ah_embedder_t *e = ah_embed_open_sif(path, err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    unlink(path);
    return e;
}

static ah_rerank_t compare(const ah_embedder_t *e, const ah_rerank_opts_t *o, const char *a,
                           const char *b)
{
    ah_rerank_t r;
    ah_rerank_compare(e, o, a, strlen(a), b, strlen(b), &r);
    return r;
}

typedef struct seen {
    char word[MAX_SEEN][32];
    int64_t index[MAX_SEEN];
    int n;
} seen_t;

static void see(void *ctx, const char *w, size_t n, int64_t index)
{
    seen_t *s = ctx;
    ck_assert_int_lt(s->n, MAX_SEEN);
    ck_assert_uint_lt(n, sizeof s->word[0]);
    memcpy(s->word[s->n], w, n);
    s->word[s->n][n] = 0;
    s->index[s->n++] = index;
}

START_TEST(tokens_and_word_similarity)
{
    ah_embedder_t *e = open_fixture();
    seen_t s = {0};
    const char *t = "Don't learn Python 3, Kotlin";
    ck_assert_uint_eq(ah_embed_sif_tokens(e, t, strlen(t), see, &s), 4);
    const char *want[] = {"do", "not", "learn", "python", "3", "kotlin"};
    ck_assert_int_eq(s.n, 6);
    for (int i = 0; i < s.n; i++)
        ck_assert_str_eq(s.word[i], want[i]);
    ck_assert_int_eq(s.index[0], 6);
    ck_assert_int_eq(s.index[1], 7);
    ck_assert_int_eq(s.index[3], 1);
    ck_assert_int_eq(s.index[4], -1);
    ck_assert_int_eq(s.index[5], -1);
    /* The known words are the ones ah_embed_sif_words walks. */
    ck_assert_double_eq_tol(ah_embed_sif_similarity(e, 1, 2), 0.6, TOL);
    ck_assert_double_eq_tol(ah_embed_sif_similarity(e, 0, 3), 0.9, 1e-4);
    ck_assert_double_eq_tol(ah_embed_sif_similarity(e, 2, 2), 1.0, TOL);
    ck_assert_double_eq_tol(ah_embed_sif_similarity(e, 0, NWORDS), 0.0, TOL);
    ah_embed_free(e);
}
END_TEST

START_TEST(identical_and_glue_only_differences)
{
    ah_embedder_t *e = open_fixture();
    ah_rerank_t r = compare(e, NULL, "how do I learn python", "How do I learn Python?");
    ck_assert_double_eq_tol(r.align, 1.0, TOL);
    ck_assert_double_eq_tol(r.worst, 1.0, TOL);
    ck_assert_int_eq(r.reject, 0);
    ck_assert_int_eq(r.words, 4);
    /* "how", "do", "a", "i" are glue: dropping them changes nothing. */
    r = compare(e, NULL, "how do I learn a python", "learn python");
    ck_assert_double_eq_tol(r.align, 1.0, TOL);
    ck_assert_int_eq(r.reject, 0);
    const char *q = "learn python";
    ck_assert_double_eq_tol(ah_rerank_similarity(e, 0.8f, q, strlen(q), q, strlen(q)), 0.8, TOL);
    ck_assert_double_eq_tol(ah_rerank_score(e, q, strlen(q), q, strlen(q)), 1.0, TOL);
    /* Empty sides: nothing to disagree on. */
    r = compare(e, NULL, "", "how do");
    ck_assert_double_eq_tol(r.align, 1.0, TOL);
    ck_assert_int_eq(r.words, 0);
    ah_embed_free(e);
}
END_TEST

START_TEST(one_content_word_differs)
{
    ah_embedder_t *e = open_fixture();
    /* python / java: each side's odd word has its counterpart at 0.6. */
    ah_rerank_t r = compare(e, NULL, "how do I learn python", "how do I learn java");
    double want = (0.95 + 0.99 * 0.6) / (0.95 + 0.99);
    ck_assert_double_eq_tol(r.align, want, 1e-4);
    ck_assert_double_eq_tol(r.worst, 0.6, 1e-4);
    ck_assert_double_eq_tol(r.unmatched, 0.99 / (0.95 + 0.99), 1e-4);
    ck_assert_int_eq(r.reject, 0);
    const char *a = "learn python", *b = "learn java";
    float sim = ah_rerank_similarity(e, 0.9f, a, strlen(a), b, strlen(b));
    ck_assert_double_eq_tol(sim, 0.9 - AH_RERANK_DEFAULT_PENALTY * (1 - want), 1e-4);
    /* learn / study are near-synonyms: 0.9. */
    r = compare(e, NULL, "learn python", "study python");
    ck_assert_double_eq_tol(r.worst, 0.9, 1e-4);
    ck_assert_double_eq_tol(r.unmatched, 0.0, TOL);
    ck_assert(r.align > 0.9);
    ah_embed_free(e);
}
END_TEST

START_TEST(symmetric_or_query_side)
{
    ah_embedder_t *e = open_fixture();
    ah_rerank_opts_t o = ah_rerank_defaults;
    ah_rerank_t r = compare(e, &o, "learn python", "learn python card");
    ck_assert(r.align < 1.0);
    o.symmetric = 0;
    r = compare(e, &o, "learn python", "learn python card");
    ck_assert_double_eq_tol(r.align, 1.0, TOL);
    ck_assert_int_eq(r.words, 2);
    /* A higher content bar drops "card" (0.9) from the words checked. */
    o = ah_rerank_defaults;
    o.content_weight = 0.92f;
    r = compare(e, &o, "learn python", "learn python card");
    ck_assert_double_eq_tol(r.align, 1.0, TOL);
    ah_embed_free(e);
}
END_TEST

START_TEST(unknown_tokens_must_match)
{
    ah_embedder_t *e = open_fixture();
    const char *a = "my card 1234", *b = "my card 5678";
    ah_rerank_t r = compare(e, NULL, a, b);
    ck_assert_int_eq(r.unknown_miss, 2);
    ck_assert_int_eq(r.reject, 1);
    ck_assert_double_eq_tol(ah_rerank_score(e, a, strlen(a), b, strlen(b)), 0.0, TOL);
    ck_assert_double_eq_tol(ah_rerank_similarity(e, 0.99f, a, strlen(a), b, strlen(b)), -1.0, TOL);
    r = compare(e, NULL, "My card 1234", "card 1234 my");
    ck_assert_int_eq(r.unknown_miss, 0);
    ck_assert_int_eq(r.reject, 0);
    /* Product names the vocabulary lacks, and non-ASCII words. */
    r = compare(e, NULL, "learn kotlin", "learn scala");
    ck_assert_int_eq(r.reject, 1);
    r = compare(e, NULL, "learn caf\xC3\xA9", "learn cafe");
    ck_assert_int_eq(r.reject, 1);
    ah_rerank_opts_t o = ah_rerank_defaults;
    o.exact_unknown = 0;
    r = compare(e, &o, a, b);
    ck_assert_int_eq(r.unknown_miss, 2);
    ck_assert_int_eq(r.reject, 0);
    ah_embed_free(e);
}
END_TEST

START_TEST(negation_on_one_side)
{
    ah_embedder_t *e = open_fixture();
    ah_rerank_t r = compare(e, NULL, "how do I learn python", "I don't learn python");
    ck_assert_int_eq(r.negation_miss, 1);
    ck_assert_int_eq(r.reject, 1);
    r = compare(e, NULL, "I do not learn python", "I don\xE2\x80\x99t learn python");
    ck_assert_int_eq(r.negation_miss, 0);
    ck_assert_int_eq(r.reject, 0);
    r = compare(e, NULL, "never learn python", "learn python");
    ck_assert_int_eq(r.reject, 1);
    ah_rerank_opts_t o = ah_rerank_defaults;
    o.negation = 0;
    r = compare(e, &o, "how do I learn python", "I don't learn python");
    ck_assert_int_eq(r.negation_miss, 1);
    ck_assert_int_eq(r.reject, 0);
    ah_embed_free(e);
}
END_TEST

START_TEST(long_and_cut_input)
{
    ah_embedder_t *e = open_fixture();
    /* More distinct tokens than a side keeps: the rest are not checked. */
    char a[AH_RERANK_MAX_TOKENS * 8 + 32] = "", b[sizeof a] = "";
    size_t n = 0;
    for (int i = 0; i < AH_RERANK_MAX_TOKENS + 20; i++)
        n += (size_t)snprintf(a + n, sizeof a - n, "%d ", i);
    memcpy(b, a, n + 1);
    memcpy(b + n - 3, "99 ", 3);
    ah_rerank_t r = compare(e, NULL, a, b);
    ck_assert_int_eq(r.reject, 0);
    ck_assert_int_eq(r.words, 2 * AH_RERANK_MAX_TOKENS);
    /* The lengths are honoured: "java" past qlen is not read. */
    const char *q = "learn python java";
    ck_assert_double_eq_tol(ah_rerank_score(e, q, 12, "python learn", 12), 1.0, TOL);
    ah_embed_free(e);
}
END_TEST

static const char *real_path(void)
{
    const char *p = getenv("AHORRO_SIF_VECTORS");
    return p && *p ? p : "build/data/sif-100d.bin";
}

static float real_sim(const ah_embedder_t *e, const char *a, const char *b)
{
    float va[REAL_DIM], vb[REAL_DIM];
    ck_assert_int_eq(ah_embed(e, a, strlen(a), va), AH_E_OK);
    ck_assert_int_eq(ah_embed(e, b, strlen(b), vb), AH_E_OK);
    float cos = 0;
    for (int d = 0; d < REAL_DIM; d++)
        cos += va[d] * vb[d];
    return ah_rerank_similarity(e, cos, a, strlen(a), b, strlen(b));
}

START_TEST(real_vectors)
{
    if (access(real_path(), R_OK) != 0) {
        printf("skipped: %s absent (scripts/build-embeddings.sh builds it)\n", real_path());
        return;
    }
    char err[ERR_BYTES];
    ah_embedder_t *e = ah_embed_open_sif(real_path(), err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    /* Paraphrases keep their similarity; look-alikes lose it. */
    float para = real_sim(e, "How do I reset my password?", "How can I reset my password?");
    float diff = real_sim(e, "How do I learn Python?", "How do I learn Java?");
    ck_assert_msg(para > 0.9f, "paraphrase %f", para);
    ck_assert_msg(diff < 0.7f, "python / java %f", diff);
    ck_assert_double_eq_tol(real_sim(e, "my card 1234 was declined", "my card 5678 was declined"),
                            -1.0, TOL);
    ck_assert_double_eq_tol(real_sim(e, "Can I top up with cash?", "Why can't I top up with cash?"),
                            -1.0, TOL);
    ah_embed_free(e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rerank");
    TCase *tc = tcase_create("rerank");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, tokens_and_word_similarity);
    tcase_add_test(tc, identical_and_glue_only_differences);
    tcase_add_test(tc, one_content_word_differs);
    tcase_add_test(tc, symmetric_or_query_side);
    tcase_add_test(tc, unknown_tokens_must_match);
    tcase_add_test(tc, negation_on_one_side);
    tcase_add_test(tc, long_and_cut_input);
    tcase_add_test(tc, real_vectors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
