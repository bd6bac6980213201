/* test_embed_sif.c - the "sif" embedder (src/cache/embed_sif.c) against tiny vector
 * files this test writes itself with its own writer of the format documented at the
 * top of embed_sif.c, and, when scripts/build-embeddings.sh has run, against the
 * real file (build/data/sif-100d.bin, or AHORRO_SIF_VECTORS). */
#include <check.h>

#include "check_run.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/embed_sif.h"

#define PATH_BYTES 4096
#define ERR_BYTES 512
#define DIM 4
#define TOL 1e-5
/* int8 quantisation error of a unit-scale vector, after normalisation. */
#define TOL_I8 2e-2
#define FIXTURE_MAX_BYTES 4096
#define HEADER_BYTES 96
#define ENTRY_BYTES 16
#define REAL_DIM 100

typedef struct fixture_word {
    const char *word;
    float vec[DIM];
    float weight;
} fixture_word_t;

/* Orthogonal-ish vectors so that weights can be read back from the result. */
static const fixture_word_t words[] = {
    {"cat", {1, 0, 0, 0}, 0.5f},  {"dog", {0, 1, 0, 0}, 0.25f}, {"do", {0, 0, 1, 0}, 0.1f},
    {"not", {0, 0, 0, 1}, 0.2f},  {"can", {1, 1, 0, 0}, 0.1f},  {"top-up", {0, 0, 1, 1}, 0.9f},
    {"top", {1, 0, 1, 0}, 0.3f},  {"up", {0, 1, 0, 1}, 0.3f},   {"what", {0, 1, 1, 0}, 0.05f},
    {"zero", {0, 0, 0, 0}, 1.0f},
};
#define NWORDS (sizeof words / sizeof words[0])

enum { VEC_F32 = 1, VEC_I8 = 2 };

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

/* Builds the fixture file's bytes into buf; returns its size. component: NULL or
 * a unit vector. */
static size_t build(uint8_t *buf, int vec_type, const float *component)
{
    memset(buf, 0, FIXTURE_MAX_BYTES);
    uint32_t nbuckets = 32;
    size_t strings = 0;
    for (size_t i = 0; i < NWORDS; i++)
        strings += strlen(words[i].word);
    size_t vbytes = vec_type == VEC_F32 ? 4 : 1;
    size_t off_buckets = HEADER_BYTES;
    size_t off_entries = align4(off_buckets + 4 * nbuckets);
    size_t off_strings = align4(off_entries + ENTRY_BYTES * NWORDS);
    size_t off_vectors = align4(off_strings + strings);
    size_t off_comp = component ? align4(off_vectors + vbytes * DIM * NWORDS) : 0;
    size_t size = component ? off_comp + 4 * DIM : align4(off_vectors + vbytes * DIM * NWORDS);
    ck_assert_uint_le(size, FIXTURE_MAX_BYTES);
    memcpy(buf, "AHSIFVEC", 8);
    put32(buf + 8, 1);
    put32(buf + 12, 0x0A0B0C0Du);
    put32(buf + 16, DIM);
    put32(buf + 20, NWORDS);
    put32(buf + 24, nbuckets);
    put32(buf + 28, (uint32_t)vec_type);
    putf(buf + 32, 1e-3f);
    put32(buf + 36, component ? 1 : 0);
    put64(buf + 40, off_buckets);
    put64(buf + 48, off_entries);
    put64(buf + 56, off_strings);
    put64(buf + 64, strings);
    put64(buf + 72, off_vectors);
    put64(buf + 80, off_comp);
    put64(buf + 88, size);
    size_t soff = 0;
    for (size_t i = 0; i < NWORDS; i++) {
        size_t n = strlen(words[i].word);
        float maxabs = 0;
        for (int d = 0; d < DIM; d++)
            maxabs = fmaxf(maxabs, fabsf(words[i].vec[d]));
        float scale = vec_type == VEC_F32 ? 1.0f : (maxabs > 0 ? maxabs / 127 : 1.0f);
        uint8_t *e = buf + off_entries + ENTRY_BYTES * i;
        put32(e, (uint32_t)soff);
        e[4] = (uint8_t)n;
        putf(e + 8, words[i].weight);
        putf(e + 12, scale);
        memcpy(buf + off_strings + soff, words[i].word, n);
        soff += n;
        for (int d = 0; d < DIM; d++) {
            uint8_t *v = buf + off_vectors + vbytes * (DIM * i + (size_t)d);
            if (vec_type == VEC_F32)
                putf(v, words[i].vec[d]);
            else
                *(int8_t *)v = (int8_t)lrintf(words[i].vec[d] / scale);
        }
        uint32_t b = fnv1a(words[i].word, n) & (nbuckets - 1);
        while (buf[off_buckets + 4 * b] != 0)
            b = (b + 1) & (nbuckets - 1);
        put32(buf + off_buckets + 4 * b, (uint32_t)i + 1);
    }
    for (int d = 0; component && d < DIM; d++)
        putf(buf + off_comp + 4 * (size_t)d, component[d]);
    return size;
}

static char path[PATH_BYTES];

static void write_file(const uint8_t *buf, size_t n)
{
    snprintf(path, sizeof path, "/tmp/ahorro-test-sif-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, buf, n), (ssize_t)n);
    close(fd);
}

static ah_embedder_t *open_fixture(int vec_type, const float *component,
                                   const ah_embed_sif_opts_t *opts)
{
    static uint8_t buf[FIXTURE_MAX_BYTES];
    size_t n = build(buf, vec_type, component);
    write_file(buf, n);
    char err[ERR_BYTES];
    ah_embedder_t *e = ah_embed_open_sif_opts(path, opts, err, sizeof err);
    ck_assert_msg(e != NULL, "%s", err);
    unlink(path);
    return e;
}

static ah_err_t embed(const ah_embedder_t *e, const char *text, float *out)
{
    return ah_embed(e, text, strlen(text), out);
}

/* Expected: the normalised sum of weight * vec of the named words. */
static void expect(const ah_embedder_t *e, const char *text, const char *const *ws, size_t n,
                   int weighted, double tol)
{
    float got[DIM], want[DIM] = {0};
    for (size_t k = 0; k < n; k++)
        for (size_t i = 0; i < NWORDS; i++)
            if (strcmp(words[i].word, ws[k]) == 0)
                for (int d = 0; d < DIM; d++)
                    want[d] += (weighted ? words[i].weight : 1.0f) * words[i].vec[d];
    double norm = 0;
    for (int d = 0; d < DIM; d++)
        norm += (double)want[d] * want[d];
    ck_assert_int_eq(embed(e, text, got), AH_E_OK);
    for (int d = 0; d < DIM; d++)
        ck_assert_msg(fabs(got[d] - want[d] / sqrt(norm)) < tol, "\"%s\" [%d]: %f, want %f", text,
                      d, got[d], want[d] / sqrt(norm));
}

static const ah_embed_sif_opts_t sif_plain = {.weighting = 1, .remove_component = 0};
static const ah_embed_sif_opts_t mean_plain = {.weighting = 0, .remove_component = 0};

START_TEST(known_word_and_normalisation)
{
    ah_embedder_t *e = open_fixture(VEC_F32, NULL, &sif_plain);
    ck_assert_str_eq(e->ops->name, "sif");
    ck_assert_int_eq(e->dim, DIM);
    expect(e, "cat", (const char *[]){"cat"}, 1, 1, TOL);
    expect(e, "CAT!", (const char *[]){"cat"}, 1, 1, TOL);
    float v[DIM];
    ck_assert_int_eq(embed(e, "cat dog can what", v), AH_E_OK);
    double norm = 0;
    for (int d = 0; d < DIM; d++)
        norm += (double)v[d] * v[d];
    ck_assert_double_eq_tol(norm, 1.0, TOL);
    ah_embed_free(e);
}
END_TEST

START_TEST(oov_words_are_skipped)
{
    ah_embedder_t *e = open_fixture(VEC_F32, NULL, &sif_plain);
    expect(e, "the cat, zebra; dog 42 x", (const char *[]){"cat", "dog"}, 2, 1, TOL);
    ah_embed_free(e);
}
END_TEST

START_TEST(empty_and_unknown_text)
{
    ah_embedder_t *e = open_fixture(VEC_F32, NULL, &sif_plain);
    const char *texts[] = {"", "   ", "zebra giraffe", "a i 1 2 3", "zero", "\xE2\x80\x99", "-'-"};
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        float v[DIM] = {7, 7, 7, 7};
        ck_assert_int_eq(embed(e, texts[t], v), AH_E_NOTFOUND);
        for (int d = 0; d < DIM; d++)
            ck_assert_float_eq(v[d], 0.0f);
    }
    ah_embed_free(e);
}
END_TEST

START_TEST(weighting)
{
    /* cat (0.5 on axis 0) and dog (0.25 on axis 1): SIF gives 2:1, the mean 1:1. */
    ah_embedder_t *e = open_fixture(VEC_F32, NULL, &sif_plain);
    float v[DIM];
    ck_assert_int_eq(embed(e, "cat dog", v), AH_E_OK);
    ck_assert_double_eq_tol(v[0] / v[1], 2.0, TOL);
    float w;
    ck_assert_int_eq(ah_embed_sif_vector(e, 1, NULL, &w), AH_E_OK);
    ck_assert_double_eq_tol(w, 0.25, TOL);
    ck_assert_int_eq(ah_embed_sif_vector(e, NWORDS, NULL, &w), AH_E_INVAL);
    ah_embed_free(e);

    e = open_fixture(VEC_F32, NULL, &mean_plain);
    ck_assert_int_eq(embed(e, "cat dog", v), AH_E_OK);
    ck_assert_double_eq_tol(v[0] / v[1], 1.0, TOL);
    ah_embed_free(e);

    /* Another a: p = a (1 - w) / w recovered from the file's a = 1e-3. For cat,
     * p = 1e-3, so a = 3e-3 gives 0.75; for dog p = 3e-3, a = 3e-3 gives 0.5. */
    ah_embed_sif_opts_t other = {.weighting = 1, .sif_a = 3e-3f};
    e = open_fixture(VEC_F32, NULL, &other);
    ck_assert_int_eq(embed(e, "cat dog", v), AH_E_OK);
    ck_assert_double_eq_tol(v[0] / v[1], 0.75 / 0.5, 1e-4);
    ah_embed_free(e);
}
END_TEST

START_TEST(common_component_removed)
{
    const float u[DIM] = {1, 0, 0, 0};
    ah_embedder_t *e = open_fixture(VEC_F32, u, NULL); /* the defaults remove it */
    float v[DIM];
    /* top = (1,0,1,0): without axis 0 it is axis 2. */
    ck_assert_int_eq(embed(e, "top", v), AH_E_OK);
    ck_assert_double_eq_tol(v[0], 0.0, TOL);
    ck_assert_double_eq_tol(v[2], 1.0, TOL);
    /* cat lies on the component: nothing is left. */
    ck_assert_int_eq(embed(e, "cat", v), AH_E_NOTFOUND);
    ah_embed_free(e);

    e = open_fixture(VEC_F32, u, &sif_plain); /* kept when asked */
    expect(e, "top", (const char *[]){"top"}, 1, 1, TOL);
    ah_embed_free(e);
}
END_TEST

START_TEST(int8_vectors)
{
    ah_embedder_t *e = open_fixture(VEC_I8, NULL, &sif_plain);
    expect(e, "cat dog can what top", (const char *[]){"cat", "dog", "can", "what", "top"}, 5, 1,
           TOL_I8);
    ah_embed_free(e);
}
END_TEST

START_TEST(tokenizer)
{
    ah_embedder_t *e = open_fixture(VEC_F32, NULL, &sif_plain);
    /* Clitics, straight and curly; the irregular can't. */
    expect(e, "Don't", (const char *[]){"do", "not"}, 2, 1, TOL);
    expect(e, "can\xE2\x80\x99t", (const char *[]){"can", "not"}, 2, 1, TOL);
    expect(e, "what's", (const char *[]){"what"}, 1, 1, TOL);
    expect(e, "cat's dog'll", (const char *[]){"cat", "dog"}, 2, 1, TOL);
    /* A known compound whole, an unknown one by its parts. */
    expect(e, "Top-Up", (const char *[]){"top-up"}, 1, 1, TOL);
    expect(e, "top-dog", (const char *[]){"top", "dog"}, 2, 1, TOL);
    expect(e, "top--up", (const char *[]){"top", "up"}, 2, 1, TOL);
    expect(e, "-cat- 'dog'", (const char *[]){"cat", "dog"}, 2, 1, TOL);
    /* Bytes >= 0x80 are word characters: "catÃ©" is not "cat". */
    expect(e, "cat\xC3\xA9 dog", (const char *[]){"dog"}, 1, 1, TOL);
    /* Cut UTF-8 at the end, and a long run, read nothing out of bounds. */
    expect(e, "dog cat\xE2\x80", (const char *[]){"dog"}, 1, 1, TOL);
    char long_text[1024];
    memset(long_text, 'x', sizeof long_text);
    memcpy(long_text + sizeof long_text - 4, " cat", 4);
    float v[DIM];
    ck_assert_int_eq(ah_embed(e, long_text, sizeof long_text, v), AH_E_OK);
    ck_assert_double_eq_tol(v[0], 1.0, TOL);
    /* The length is honoured: "cat" past len is not read. */
    ck_assert_int_eq(ah_embed(e, "dog cat", 3, v), AH_E_OK);
    ck_assert_double_eq_tol(v[1], 1.0, TOL);
    ah_embed_free(e);
}
END_TEST

static int opens(const uint8_t *buf, size_t n)
{
    write_file(buf, n);
    char err[ERR_BYTES];
    ah_embedder_t *e = ah_embed_open_sif(path, err, sizeof err);
    unlink(path);
    if (e) {
        float v[DIM];
        embed(e, "cat dog top-up don't", v);
        ah_embed_free(e);
    }
    return e != NULL;
}

START_TEST(corrupt_files_are_rejected)
{
    static uint8_t buf[FIXTURE_MAX_BYTES], bad[FIXTURE_MAX_BYTES];
    size_t n = build(buf, VEC_I8, NULL);
    ck_assert(opens(buf, n));
    for (size_t cut = 0; cut < n; cut += 7)
        ck_assert_msg(!opens(buf, cut), "truncated at %zu", cut);
    char err[ERR_BYTES] = "";
    ck_assert_ptr_null(ah_embed_open_sif("/nonexistent/sif.bin", err, sizeof err));
    ck_assert(strstr(err, "/nonexistent/sif.bin") != NULL);

    struct {
        size_t at;
        uint32_t value;
    } pokes[] = {
        {0, 0x46495341},    /* magic */
        {8, 2},             /* version */
        {16, 0},            /* dim */
        {16, 5000},         /* dim above AH_EMBED_MAX_DIM */
        {20, 1000},         /* count: vectors past the end */
        {24, 31},           /* nbuckets not a power of two */
        {24, 8},            /* nbuckets <= count */
        {28, 3},            /* vec_type */
        {32, 0x7fc00000},   /* sif_a NaN */
        {40, 2},            /* buckets misaligned */
        {48, 0xffffff00},   /* entries past the end */
        {64, 0xffffffff},   /* strings longer than the file */
        {72, 60},           /* vectors inside the header */
        {88, 1},            /* file_size */
        {HEADER_BYTES, 99}, /* bucket naming word 98 */
        {36, 1},            /* component flag without a component */
    };
    for (size_t p = 0; p < sizeof pokes / sizeof pokes[0]; p++) {
        memcpy(bad, buf, n);
        put32(bad + pokes[p].at, pokes[p].value);
        ck_assert_msg(!opens(bad, n), "poke %zu accepted", p);
    }
    /* The first entry (after 32 buckets): an empty word, a word longer than the
     * limit, a string offset past the strings, a NaN weight, a weight above 1. */
    uint8_t *entry = bad + HEADER_BYTES + 4 * 32;
    memcpy(bad, buf, n);
    entry[4] = 0;
    ck_assert(!opens(bad, n));
    entry[4] = 200;
    ck_assert(!opens(bad, n));
    memcpy(bad, buf, n);
    put32(entry, 0xfffffff0u);
    ck_assert(!opens(bad, n));
    memcpy(bad, buf, n);
    putf(entry + 8, NAN);
    ck_assert(!opens(bad, n));
    putf(entry + 8, 2.0f);
    ck_assert(!opens(bad, n));
    /* A component that is not a unit vector. */
    const float half[DIM] = {0.5f, 0, 0, 0};
    size_t m = build(bad, VEC_F32, half);
    ck_assert(!opens(bad, m));
    /* Every single byte flipped: rejected or, if accepted, safe to use (ASan). */
    for (size_t i = 0; i < n; i++) {
        memcpy(bad, buf, n);
        bad[i] ^= 0xA5;
        opens(bad, n);
    }
}
END_TEST

static const char *real_path(void)
{
    const char *p = getenv("AHORRO_SIF_VECTORS");
    return p && *p ? p : "build/data/sif-100d.bin";
}

static double cosine(const ah_embedder_t *e, const char *a, const char *b)
{
    float va[REAL_DIM], vb[REAL_DIM];
    ck_assert_int_eq(embed(e, a, va), AH_E_OK);
    ck_assert_int_eq(embed(e, b, vb), AH_E_OK);
    double dot = 0;
    for (int d = 0; d < REAL_DIM; d++)
        dot += (double)va[d] * vb[d];
    return dot;
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
    ck_assert_int_eq(e->dim, REAL_DIM);
    const char *q = "how do I reset my password";
    double near = cosine(e, q, "I forgot my password, how can I reset it");
    double far = cosine(e, q, "what is the capital of France");
    ck_assert_msg(near > far + 0.3, "near %f far %f", near, far);
    float v[REAL_DIM];
    ck_assert_int_eq(embed(e, "qzxv 12345", v), AH_E_NOTFOUND);
    ah_embed_free(e);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("embed_sif");
    TCase *tc = tcase_create("embed_sif");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, known_word_and_normalisation);
    tcase_add_test(tc, oov_words_are_skipped);
    tcase_add_test(tc, empty_and_unknown_text);
    tcase_add_test(tc, weighting);
    tcase_add_test(tc, common_component_removed);
    tcase_add_test(tc, int8_vectors);
    tcase_add_test(tc, tokenizer);
    tcase_add_test(tc, corrupt_files_are_rejected);
    tcase_add_test(tc, real_vectors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
