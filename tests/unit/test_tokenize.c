/* test_tokenize.c - the exact BPE tokenizer (src/tokenize/bpe.c) and the
 * chat counting rules (src/tokenize/chat.c).
 *
 * Needs the rank files: scripts/build-tokenizers.sh puts them in build/data
 * (or point AHORRO_TOKENIZERS_DIR at them). Without them every test that
 * needs them says so and passes, so a bare `make unit` still runs; the test
 * script runs the set-up first. Expected ids come from tiktoken: gpt-tokenizer's
 * TestPlans.txt (golden cases), and the edge cases below, printed by the npm
 * `tiktoken` package (tests/tokenize/ compares a large corpus the same way).
 *
 * bpe.c is included to reach its merge functions: the heap merge for long
 * pieces must choose exactly as tiktoken's quadratic one. */
#include <check.h>

#include "check_run.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize/bpe.c"
#include "tokenize/chat.h"

#define MAX_CASE_IDS 32
#define THREADS 4

static ah_bpe_t *o200k, *cl100k;
static char data_dir[4096];

static int have_data(void)
{
    if (!o200k || !cl100k) {
        fprintf(stderr,
                "test_tokenize: no rank files in %s: run scripts/build-tokenizers.sh "
                "(skipping)\n",
                data_dir);
        return 0;
    }
    return 1;
}

static void setup(void)
{
    char err[512];
    const char *d = getenv("AHORRO_TOKENIZERS_DIR");
    snprintf(data_dir, sizeof data_dir, "%s", d && *d ? d : "build/data");
    if (ah_bpe_load(data_dir, "o200k_base", &o200k, err, sizeof err))
        o200k = NULL;
    if (ah_bpe_load(data_dir, "cl100k_base", &cl100k, err, sizeof err))
        cl100k = NULL;
}

static void teardown(void)
{
    ah_bpe_free(o200k);
    ah_bpe_free(cl100k);
    o200k = cl100k = NULL;
}

/* Encode, check the count agrees, decode back to the same bytes. */
static size_t encode_checked(const ah_bpe_t *e, const char *s, size_t len, uint32_t **ids)
{
    size_t n = 0, counted = 0;
    ck_assert_int_eq(ah_bpe_encode_alloc(e, s, len, 0, AH_BPE_MAX_TEXT_BYTES, ids, &n), AH_E_OK);
    ck_assert_int_eq(ah_bpe_count(e, s, len, 0, &counted), AH_E_OK);
    ck_assert_uint_eq(n, counted);
    ah_buf_t back;
    ah_buf_init(&back, AH_BPE_MAX_TEXT_BYTES);
    ck_assert_int_eq(ah_bpe_decode(e, *ids, n, &back), AH_E_OK);
    ck_assert_uint_eq(back.len, len);
    ck_assert(len == 0 || memcmp(back.data, s, len) == 0);
    ah_buf_free(&back);
    return n;
}

/* ---- golden cases: gpt-tokenizer's TestPlans.txt ------------------------ */

START_TEST(golden_test_plans)
{
    if (!have_data())
        return;
    char path[4200], line[65536];
    snprintf(path, sizeof path, "%s/TestPlans.txt", data_dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    const ah_bpe_t *enc = NULL;
    char *sample = NULL;
    int checked[2] = {0, 0};
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n')
            line[--l] = 0;
        if (strncmp(line, "EncodingName: ", 14) == 0) {
            enc = strcmp(line + 14, "o200k_base") == 0    ? o200k
                  : strcmp(line + 14, "cl100k_base") == 0 ? cl100k
                                                          : NULL;
        } else if (strncmp(line, "Sample: ", 8) == 0) {
            ah_free(sample);
            sample = ah_strdup(line + 8);
        } else if (strncmp(line, "Encoded: [", 10) == 0 && enc && sample) {
            uint32_t *ids = NULL;
            size_t n = encode_checked(enc, sample, strlen(sample), &ids);
            size_t k = 0;
            for (char *p = line + 10, *end; *p && *p != ']'; p = end) {
                while (*p == ' ' || *p == ',')
                    p++;
                if (*p == ']')
                    break;
                long v = strtol(p, &end, 10);
                ck_assert_msg(end != p, "bad Encoded line: %s", line);
                ck_assert_msg(k < n && ids[k] == (uint32_t)v,
                              "%s: %s: token %zu is %u, tiktoken says %ld", ah_bpe_name(enc),
                              sample, k, k < n ? ids[k] : 0, v);
                k++;
            }
            ck_assert_msg(k == n, "%s: %s: %zu tokens, tiktoken says %zu", ah_bpe_name(enc), sample,
                          n, k);
            checked[enc == cl100k]++;
            ah_free(ids);
        }
    }
    fclose(f);
    ah_free(sample);
    ck_assert_int_ge(checked[0], 50);
    ck_assert_int_ge(checked[1], 60);
}
END_TEST

/* ---- edge cases, ids from the npm tiktoken package ------------------------- */

typedef struct edge {
    const char *text;
    size_t len;
    size_t n;
    uint32_t ids[MAX_CASE_IDS];
} edge_t;

static const edge_t O200K_EDGES[] = {
    {"", 0, 0, {0}},
    {" ", 1, 1, {220}},
    {"   x", 4, 2, {256, 1215}},
    {"\x0a"
     "\x0a"
     "\x0a",
     3,
     1,
     {2499}},
    {"\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "  \x0a",
     7,
     2,
     {1414, 4066}},
    {"  \x09"
     "  ",
     5,
     2,
     {256, 18242}},
    {"1234567", 7, 3, {7633, 19354, 22}},
    {"x 12345678901 y", 15, 7, {87, 220, 7633, 19354, 29338, 2290, 342}},
    {"don't", 5, 1, {91418}},
    {"'S", 2, 1, {31233}},
    {"'\xc5"
     "\xbf"
     "x",
     4,
     3,
     {6, 70067, 87}},
    {"I'LL", 4, 3, {40, 6, 7454}},
    {"HELLOworld", 10, 3, {111642, 2699, 24169}},
    {"HelloWORLD", 10, 2, {13225, 194435}},
    {"\xc7"
     "\x85"
     "emal",
     6,
     4,
     {131, 227, 347, 280}},
    {"\xcc"
     "\x81"
     "ABC def",
     9,
     3,
     {13430, 44197, 1056}},
    {"e\xcc"
     "\x81"
     "\xcc"
     "\x82",
     5,
     3,
     {68, 13430, 128886}},
    {"\xf0"
     "\x9f"
     "\x91"
     "\xa8"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa9"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa7"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa6"
     " \xf0"
     "\x9f"
     "\x87"
     "\xaa"
     "\xf0"
     "\x9f"
     "\x87"
     "\xb8"
     " 1\xef"
     "\xb8"
     "\x8f"
     "\xe2"
     "\x83"
     "\xa3",
     42,
     18,
     {28823, 101, 2524, 28823, 102, 2524, 28823, 100, 2524, 28823, 99, 173468, 103, 55506, 116, 220,
      16, 150858}},
    {"\xe4"
     "\xb8"
     "\xad"
     "\xe6"
     "\x96"
     "\x87"
     "\xe5"
     "\xad"
     "\x97"
     "\xe7"
     "\xac"
     "\xa6"
     "\xef"
     "\xbc"
     "\x8c"
     "\xe6"
     "\xb5"
     "\x8b"
     "\xe8"
     "\xaf"
     "\x95"
     "\xe3"
     "\x80"
     "\x82",
     24,
     5,
     {10667, 67951, 979, 82843, 788}},
    {"\xe6"
     "\x97"
     "\xa5"
     "\xe6"
     "\x9c"
     "\xac"
     "\xe8"
     "\xaa"
     "\x9e"
     "\xe3"
     "\x81"
     "\xae"
     "\xe3"
     "\x83"
     "\x86"
     "\xe3"
     "\x82"
     "\xad"
     "\xe3"
     "\x82"
     "\xb9"
     "\xe3"
     "\x83"
     "\x88",
     24,
     6,
     {9048, 40909, 3385, 16056, 18368, 38236}},
    {"\xed"
     "\x95"
     "\x9c"
     "\xea"
     "\xb5"
     "\xad"
     "\xec"
     "\x96"
     "\xb4"
     " \xed"
     "\x85"
     "\x8d"
     "\xec"
     "\x8a"
     "\xa4"
     "\xed"
     "\x8a"
     "\xb8",
     19,
     5,
     {114854, 5959, 57901, 235, 42321}},
    {"\xe2"
     "\x84"
     "\x8c"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa2"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa9"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa9"
     "\xf0"
     "\x9d"
     "\x94"
     "\xac"
     " \xf0"
     "\x9d"
     "\x9f"
     "\x99"
     "\xf0"
     "\x9d"
     "\x9f"
     "\x9a"
     "\xf0"
     "\x9d"
     "\x9f"
     "\x9b",
     32,
     24,
     {10104, 234, 43120, 242,   95,  43120, 242,   102, 43120, 242,   102, 43120,
      242,   105, 220,   43120, 253, 247,   43120, 253, 248,   43120, 253, 249}},
    {"foo/bar\x0a"
     "/baz",
     12,
     5,
     {16660, 106617, 198, 7611, 1071}},
    {"!!!\x0a"
     "\x0a",
     5,
     1,
     {25172}},
    {"a\xc2"
     "\xa0"
     "b\xe3"
     "\x80"
     "\x80"
     "c",
     8,
     5,
     {64, 5310, 65, 1397, 66}},
    {"\xc2"
     "\x85"
     "x\xe2"
     "\x80"
     "\xa8"
     "y",
     7,
     5,
     {126, 227, 87, 51008, 88}},
};

static const edge_t CL100K_EDGES[] = {
    {"", 0, 0, {0}},
    {" ", 1, 1, {220}},
    {"   x", 4, 2, {256, 865}},
    {"\x0a"
     "\x0a"
     "\x0a",
     3,
     1,
     {1432}},
    {"\x0d"
     "\x0a"
     "\x0d"
     "\x0a"
     "  \x0a",
     7,
     2,
     {881, 2355}},
    {"  \x09"
     "  ",
     5,
     2,
     {256, 8860}},
    {"1234567", 7, 3, {4513, 10961, 22}},
    {"x 12345678901 y", 15, 7, {87, 220, 4513, 10961, 16474, 1721, 379}},
    {"don't", 5, 2, {15357, 956}},
    {"'S", 2, 1, {13575}},
    {"'\xc5"
     "\xbf"
     "x",
     4,
     4,
     {6, 129, 123, 87}},
    {"I'LL", 4, 3, {40, 6, 4178}},
    {"HELLOworld", 10, 3, {51812, 1623, 14957}},
    {"HelloWORLD", 10, 3, {9906, 54, 26001}},
    {"\xc7"
     "\x85"
     "emal",
     6,
     4,
     {131, 227, 336, 278}},
    {"\xcc"
     "\x81"
     "ABC def",
     9,
     3,
     {54939, 26484, 711}},
    {"e\xcc"
     "\x81"
     "\xcc"
     "\x82",
     5,
     4,
     {68, 54939, 136, 224}},
    {"\xf0"
     "\x9f"
     "\x91"
     "\xa8"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa9"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa7"
     "\xe2"
     "\x80"
     "\x8d"
     "\xf0"
     "\x9f"
     "\x91"
     "\xa6"
     " \xf0"
     "\x9f"
     "\x87"
     "\xaa"
     "\xf0"
     "\x9f"
     "\x87"
     "\xb8"
     " 1\xef"
     "\xb8"
     "\x8f"
     "\xe2"
     "\x83"
     "\xa3",
     42,
     30,
     {9468, 239, 101, 378,   235, 9468, 239,  102, 378, 235, 9468, 239,   100, 378, 235,
      9468, 239, 99,  11410, 229, 103,  9468, 229, 116, 220, 16,   31643, 158, 225, 96}},
    {"\xe4"
     "\xb8"
     "\xad"
     "\xe6"
     "\x96"
     "\x87"
     "\xe5"
     "\xad"
     "\x97"
     "\xe7"
     "\xac"
     "\xa6"
     "\xef"
     "\xbc"
     "\x8c"
     "\xe6"
     "\xb5"
     "\x8b"
     "\xe8"
     "\xaf"
     "\x95"
     "\xe3"
     "\x80"
     "\x82",
     24,
     6,
     {16325, 17161, 49491, 3922, 82805, 1811}},
    {"\xe6"
     "\x97"
     "\xa5"
     "\xe6"
     "\x9c"
     "\xac"
     "\xe8"
     "\xaa"
     "\x9e"
     "\xe3"
     "\x81"
     "\xae"
     "\xe3"
     "\x83"
     "\x86"
     "\xe3"
     "\x82"
     "\xad"
     "\xe3"
     "\x82"
     "\xb9"
     "\xe3"
     "\x83"
     "\x88",
     24,
     8,
     {9080, 22656, 45918, 252, 16144, 57933, 62903, 71634}},
    {"\xed"
     "\x95"
     "\x9c"
     "\xea"
     "\xb5"
     "\xad"
     "\xec"
     "\x96"
     "\xb4"
     " \xed"
     "\x85"
     "\x8d"
     "\xec"
     "\x8a"
     "\xa4"
     "\xed"
     "\x8a"
     "\xb8",
     19,
     7,
     {24486, 89059, 255, 32179, 10997, 45204, 54289}},
    {"\xe2"
     "\x84"
     "\x8c"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa2"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa9"
     "\xf0"
     "\x9d"
     "\x94"
     "\xa9"
     "\xf0"
     "\x9d"
     "\x94"
     "\xac"
     " \xf0"
     "\x9d"
     "\x9f"
     "\x99"
     "\xf0"
     "\x9d"
     "\x9f"
     "\x9a"
     "\xf0"
     "\x9d"
     "\x9f"
     "\x9b",
     32,
     24,
     {15284, 234, 57352, 242,   95,  57352, 242,   102, 57352, 242,   102, 57352,
      242,   105, 220,   57352, 253, 247,   57352, 253, 248,   57352, 253, 249}},
    {"foo/bar\x0a"
     "/baz",
     12,
     5,
     {8134, 50613, 198, 3554, 1394}},
    {"!!!\x0a"
     "\x0a",
     5,
     1,
     {33157}},
    {"a\xc2"
     "\xa0"
     "b\xe3"
     "\x80"
     "\x80"
     "c",
     8,
     5,
     {64, 4194, 65, 23249, 66}},
    {"\xc2"
     "\x85"
     "x\xe2"
     "\x80"
     "\xa8"
     "y",
     7,
     6,
     {126, 227, 87, 378, 101, 88}},
};

static void check_edges(const ah_bpe_t *e, const edge_t *cases, size_t count)
{
    for (size_t c = 0; c < count; c++) {
        uint32_t *ids = NULL;
        size_t n = encode_checked(e, cases[c].text, cases[c].len, &ids);
        ck_assert_msg(n == cases[c].n, "%s case %zu: %zu tokens, tiktoken %zu", ah_bpe_name(e), c,
                      n, cases[c].n);
        for (size_t k = 0; k < n; k++)
            ck_assert_msg(ids[k] == cases[c].ids[k], "%s case %zu token %zu: %u, tiktoken %u",
                          ah_bpe_name(e), c, k, ids[k], cases[c].ids[k]);
        ah_free(ids);
    }
}

START_TEST(edge_cases)
{
    if (!have_data())
        return;
    check_edges(o200k, O200K_EDGES, sizeof O200K_EDGES / sizeof O200K_EDGES[0]);
    check_edges(cl100k, CL100K_EDGES, sizeof CL100K_EDGES / sizeof CL100K_EDGES[0]);
}
END_TEST

/* Invalid UTF-8: each bad byte is one character of class "other", so
 * "a\xffb" splits as "a", "\xff", "b"; any bytes round-trip. */
START_TEST(invalid_utf8)
{
    if (!have_data())
        return;
    const ah_bpe_t *encs[] = {o200k, cl100k};
    for (int i = 0; i < 2; i++) {
        const ah_bpe_t *e = encs[i];
        uint32_t ids[8];
        size_t n = 0;
        ck_assert_int_eq(ah_bpe_encode(e,
                                       "a\xff"
                                       "b",
                                       3, 0, ids, 8, &n),
                         AH_E_OK);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(ids[0], e->byte_rank['a']);
        ck_assert_uint_eq(ids[1], e->byte_rank[0xff]);
        ck_assert_uint_eq(ids[2], e->byte_rank['b']);
        /* Truncated, overlong, surrogate, past U+10FFFF, stray continuation. */
        static const char *bad[] = {"\xe4\xb8",         "\xc0\xaf",   "\xed\xa0\x80",
                                    "\xf4\x90\x80\x80", "x\x80\x80y", "\xf0\x9f\x98",
                                    "caf\xc3"};
        for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
            uint32_t *out = NULL;
            encode_checked(e, bad[b], strlen(bad[b]), &out);
            ah_free(out);
        }
        /* Random bytes. */
        unsigned seed = 7;
        char buf[4096];
        for (int round = 0; round < 50; round++) {
            for (size_t k = 0; k < sizeof buf; k++) {
                seed = seed * 1103515245u + 12345u;
                buf[k] = (char)(seed >> 16);
            }
            uint32_t *out = NULL;
            encode_checked(e, buf, sizeof buf, &out);
            ah_free(out);
        }
    }
}
END_TEST

/* Long runs: one piece of 1 MB of spaces, digits in threes, one letter. */
START_TEST(long_runs)
{
    if (!have_data())
        return;
    size_t big = 1024 * 1024;
    char *s = ah_malloc(big);
    const char fills[] = {' ', '7', 'a', '\n'};
    for (size_t f = 0; f < sizeof fills; f++) {
        memset(s, fills[f], big);
        uint32_t *ids = NULL;
        size_t n = encode_checked(o200k, s, big, &ids);
        ck_assert_uint_gt(n, 0);
        if (fills[f] == '7') {
            ck_assert_uint_eq(n, (big + 2) / 3); /* \p{N}{1,3}, each "777" one token */
        }
        ah_free(ids);
        n = encode_checked(cl100k, s, big, &ids);
        ck_assert_uint_gt(n, 0);
        ah_free(ids);
    }
    ah_free(s);
}
END_TEST

/* The heap merge makes the same choices as tiktoken's scan. */
START_TEST(heap_merge_equals_scan)
{
    if (!have_data())
        return;
    static const char alpha[] = "aaabbeeinorst  ";
    unsigned seed = 42;
    unsigned char piece[AH_BPE_SMALL_PIECE];
    uint32_t a[AH_BPE_SMALL_PIECE], b[AH_BPE_SMALL_PIECE];
    for (int round = 0; round < 2000; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = 2 + (seed >> 16) % (AH_BPE_SMALL_PIECE - 1);
        for (size_t k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            piece[k] = (unsigned char)alpha[(seed >> 16) % (sizeof alpha - 1)];
        }
        const ah_bpe_t *e = round % 2 ? o200k : cl100k;
        sink_t ks = {.ids = a, .cap = AH_BPE_SMALL_PIECE},
               kl = {.ids = b, .cap = AH_BPE_SMALL_PIECE};
        merge_small(e, piece, len, &ks);
        merge_large(e, piece, len, &kl);
        ck_assert_uint_eq(ks.n, kl.n);
        for (size_t k = 0; k < ks.n; k++)
            ck_assert_uint_eq(a[k], b[k]);
    }
}
END_TEST

START_TEST(limits_and_errors)
{
    if (!have_data())
        return;
    const char *text = "one two three four five";
    uint32_t ids[2];
    size_t n = 0;
    ck_assert_int_eq(ah_bpe_encode(o200k, text, strlen(text), 0, ids, 2, &n), AH_E_TOOBIG);
    ck_assert_uint_eq(n, 5); /* the whole count, though only 2 were written */
    uint32_t *all = NULL;
    ck_assert_int_eq(ah_bpe_encode_alloc(o200k, text, strlen(text), 0, 4, &all, &n), AH_E_TOOBIG);
    ck_assert_ptr_null(all);
    ck_assert_int_eq(ah_bpe_encode_alloc(o200k, text, strlen(text), 0, 5, &all, &n), AH_E_OK);
    ck_assert_uint_eq(n, 5);
    ah_free(all);
    ck_assert_int_eq(ah_bpe_count(o200k, "", 0, 0, &n), AH_E_OK);
    ck_assert_uint_eq(n, 0);
    ah_buf_t out;
    ah_buf_init(&out, 16);
    uint32_t bad[] = {1, 200000};
    ck_assert_int_eq(ah_bpe_decode(o200k, bad, 2, &out), AH_E_INVAL);
    ah_buf_free(&out);
    ck_assert_uint_eq(ah_bpe_vocab_size(o200k), 200019);
    ck_assert_uint_eq(ah_bpe_vocab_size(cl100k), 100277);

    char err[256];
    ah_bpe_t *e = NULL;
    ck_assert_int_eq(ah_bpe_load(data_dir, "p50k_base", &e, err, sizeof err), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_bpe_load("/nonexistent", "o200k_base", &e, err, sizeof err), AH_E_IO);
    ck_assert_ptr_null(e);
}
END_TEST

/* A malformed rank file fails the load with a reason. */
START_TEST(malformed_rank_files)
{
    static const char *bad[] = {
        "YQ== 0\nYg==\n",     /* no rank */
        "YQ== 0\nYQ== 1\n",   /* same token twice */
        "YQ== 0\nYg== 0\n",   /* same rank twice */
        "YQ== 0\n!!!! 1\n",   /* not base64 */
        "YQ== 99999999999\n", /* rank past the limit */
        "YQ== 0\n",           /* bytes other than 'a' have no token */
        "",                   /* nothing */
    };
    char dir[] = "/tmp/ahorro-bpe-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/o200k_base.tiktoken", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        ah_bpe_t *e = NULL;
        char err[256] = "";
        ck_assert_int_ne(ah_bpe_load(dir, "o200k_base", &e, err, sizeof err), AH_E_OK);
        ck_assert_ptr_null(e);
        ck_assert_msg(err[0], "case %zu: no reason given", i);
    }
    unlink(path);
    rmdir(dir);
}
END_TEST

START_TEST(special_tokens)
{
    if (!have_data())
        return;
    const char *t = "a<|endoftext|>b";
    uint32_t ids[16];
    size_t n = 0;
    ck_assert_int_eq(ah_bpe_encode(o200k, t, strlen(t), AH_BPE_ALLOW_SPECIAL, ids, 16, &n),
                     AH_E_OK);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(ids[1], 199999);
    ck_assert_int_eq(ah_bpe_encode(o200k, t, strlen(t), 0, ids, 16, &n), AH_E_OK);
    ck_assert_uint_gt(n, 3); /* plain text by default */
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_lt(ids[i], 199998);
    ck_assert_int_eq(ah_bpe_encode(cl100k, "<|fim_middle|>", 14, AH_BPE_ALLOW_SPECIAL, ids, 16, &n),
                     AH_E_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(ids[0], 100259);
    size_t len = 0;
    const char *bytes = ah_bpe_token(cl100k, 100259, &len);
    ck_assert_uint_eq(len, 14);
    ck_assert(memcmp(bytes, "<|fim_middle|>", 14) == 0);
}
END_TEST

/* ---- threads: one encoding, many encoders ------------------------------ */

typedef struct job {
    const ah_bpe_t *e;
    const char *text;
    size_t len, n;
    uint32_t sum;
} job_t;

static void *encode_job(void *arg)
{
    job_t *j = arg;
    for (int r = 0; r < 20; r++) {
        uint32_t *ids = NULL;
        size_t n = 0;
        if (ah_bpe_encode_alloc(j->e, j->text, j->len, 0, AH_BPE_MAX_TEXT_BYTES, &ids, &n))
            return NULL;
        uint32_t sum = 0;
        for (size_t i = 0; i < n; i++)
            sum = sum * 31 + ids[i];
        j->n = n;
        j->sum = sum;
        ah_free(ids);
    }
    return NULL;
}

START_TEST(threads_share_an_encoding)
{
    if (!have_data())
        return;
    ah_buf_t text;
    ah_buf_init(&text, 1 << 20);
    for (int i = 0; i < 2000; i++)
        ah_buf_printf(&text, "Line %d: naïve café 東京 🙂 it's   %d\n", i, i * 7919);
    pthread_t th[THREADS];
    job_t jobs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (job_t){.e = o200k, .text = text.data, .len = text.len};
        ck_assert_int_eq(pthread_create(&th[i], NULL, encode_job, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 1; i < THREADS; i++) {
        ck_assert_uint_eq(jobs[i].n, jobs[0].n);
        ck_assert_uint_eq(jobs[i].sum, jobs[0].sum);
    }
    ck_assert_uint_gt(jobs[0].n, 0);
    ah_buf_free(&text);
}
END_TEST

/* ---- chat counting ----------------------------------------------------- */

static json_t *cookbook_messages(const char *model)
{
    /* openai-cookbook, "How to count tokens with tiktoken", example_messages. */
    return json_pack(
        "{s:s, s:[{s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, {s:s,s:s,s:s}, "
        "{s:s,s:s}]}",
        "model", model, "messages", "role", "system", "content",
        "You are a helpful, pattern-following assistant that translates corporate jargon into "
        "plain English.",
        "role", "system", "name", "example_user", "content",
        "New synergies will help drive top-line growth.", "role", "system", "name",
        "example_assistant", "content", "Things working well together will increase revenue.",
        "role", "system", "name", "example_user", "content",
        "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
        "role", "system", "name", "example_assistant", "content",
        "Let's talk later when we're less busy about how to do better.", "role", "user", "content",
        "This late pivot means we don't have time to boil the ocean for the client deliverable.");
}

START_TEST(chat_messages_cookbook)
{
    if (!have_data())
        return;
    /* The cookbook's figures for this example: 129 tokens on gpt-4 and
     * gpt-3.5-turbo (cl100k_base), 124 on gpt-4o and gpt-4o-mini (o200k_base). */
    ah_chat_count_t c;
    json_t *body = cookbook_messages("gpt-4");
    ck_assert_int_eq(ah_chat_tokens(cl100k, body, &c), AH_E_OK);
    ck_assert_int_eq(c.total, 129);
    ck_assert_int_eq(c.n_messages, 6);
    json_decref(body);
    body = cookbook_messages("gpt-4o");
    ck_assert_int_eq(ah_chat_tokens(o200k, body, &c), AH_E_OK);
    ck_assert_int_eq(c.total, 124);
    json_decref(body);
}
END_TEST

START_TEST(chat_tools_and_images)
{
    if (!have_data())
        return;
    json_error_t jerr;
    json_t *body = json_loads(
        "{\"model\":\"gpt-4o\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"You are a helpful assistant that can answer to "
        "questions about the weather.\"},"
        "{\"role\":\"user\",\"content\":\"What's the weather like in San Francisco?\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_current_weather\","
        "\"description\":\"Get the current weather in a given location\",\"parameters\":{"
        "\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\",\"description\":"
        "\"The city and state, e.g. San Francisco, CA\"},\"unit\":{\"type\":\"string\","
        "\"description\":\"The unit of temperature to return\",\"enum\":[\"celsius\","
        "\"fahrenheit\"]}},\"required\":[\"location\"]}}}]}",
        0, &jerr);
    ck_assert_ptr_nonnull(body);
    ah_chat_count_t c;
    ck_assert_int_eq(ah_chat_tokens(o200k, body, &c), AH_E_OK);
    /* The cookbook's num_tokens_for_tools gives 101 for this on gpt-4o. */
    ck_assert_int_eq(c.total, 101);
    ck_assert_int_gt(c.tools, 0);
    json_decref(body);

    /* Images: OpenAI's worked examples (gpt-4o: 85 + 170 a tile). */
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4o", "high", 1024, 1024), 765);
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4o", "high", 2048, 4096), 1105);
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4o", "low", 4096, 8192), 85);
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4o", NULL, 0, 0), 765);
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4o-mini", "low", 100, 100), 2833);
    /* Patch models: 1024x1024 is 1024 patches of 32 px; 1800x2400 is cut to 1452. */
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4.1-mini", NULL, 1024, 1024), 1659);
    ck_assert_int_eq(ah_chat_image_tokens("gpt-4.1-mini", NULL, 1800, 2400), 2352);

    /* A 1x1 PNG as a data URL, and a part the rules do not count. */
    body = json_loads(
        "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":["
        "{\"type\":\"text\",\"text\":\"What is this?\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5E"
        "rkJggg==\",\"detail\":\"high\"}},"
        "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"AAAA\",\"format\":\"wav\"}}]}]}",
        0, &jerr);
    ck_assert_ptr_nonnull(body);
    ck_assert_int_eq(ah_chat_tokens(o200k, body, &c), AH_E_OK);
    ck_assert_int_eq(c.n_images, 1);
    ck_assert_int_eq(c.images, 85 + 170); /* one tile */
    json_decref(body);

    body = json_loads("{\"messages\":{}}", 0, &jerr);
    ck_assert_int_eq(ah_chat_tokens(o200k, body, &c), AH_E_PARSE);
    json_decref(body);
}
END_TEST

START_TEST(chat_model_encodings)
{
    ah_chat_model_t m;
    ck_assert_int_eq(ah_chat_model("gpt-4o-mini", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "o200k_base");
    ck_assert(!m.estimate);
    ck_assert_int_eq(ah_chat_model("openai/o3-mini", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "o200k_base");
    ck_assert_int_eq(ah_chat_model("gpt-5.1", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "o200k_base");
    ck_assert_int_eq(ah_chat_model("gpt-4-turbo", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "cl100k_base");
    ck_assert_int_eq(ah_chat_model("gpt-3.5-turbo", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "cl100k_base");
    ck_assert_int_eq(ah_chat_model("text-embedding-3-small", &m), AH_E_OK);
    ck_assert_str_eq(m.encoding, "cl100k_base");
    ck_assert_int_eq(ah_chat_model("claude-sonnet-4-5", &m), AH_E_OK);
    ck_assert(m.estimate);
    ck_assert(m.factor > 1.0);
    for (const char *const *b = (const char *const[]){"anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                      "us.anthropic.claude-sonnet-4-20250514-v1:0",
                                                      "bedrock/anthropic.claude-3-haiku", NULL};
         *b; b++) {
        ck_assert_int_eq(ah_chat_model(*b, &m), AH_E_OK);
        ck_assert_msg(m.factor > 1.0, "%s: not read as Claude", *b);
    }
    ck_assert_int_eq(ah_chat_model("notanthropic.claude-x", &m), AH_E_NOTFOUND);
    ck_assert_int_eq(ah_chat_model("llama-3-70b", &m), AH_E_NOTFOUND);
    ck_assert(m.estimate);
}
END_TEST

START_TEST(chat_model_claude_tool_prompt)
{
    static const struct {
        const char *model;
        int tool_auto, tool_forced;
    } cases[] = {
        {"claude-3-opus-20240229", 530, 281},
        {"claude-3-haiku-20240307", 264, 340},
        {"claude-3-5-haiku-20241022", 264, 340},
        {"claude-3-7-sonnet-latest", 346, 313},
        {"claude-sonnet-4-20250514", 346, 313},
        {"claude-sonnet-4-0", 346, 313},
        {"claude-sonnet-4", 346, 313},
        {"claude-opus-4-1-20250805", 346, 313},
        {"us.anthropic.claude-sonnet-4-20250514-v1:0", 346, 313},
        {"anthropic/claude-3-opus", 530, 281},
        /* 4.5 and later, and names the table does not know: the fitted values */
        {"claude-sonnet-4-5", 500, 600},
        {"claude-sonnet-4-6", 500, 600},
        {"claude-opus-4-6", 500, 600},
        {"claude-haiku-4-5-20251001", 500, 600},
        {"claude-next", 500, 600},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ah_chat_model_t m;
        ck_assert_int_eq(ah_chat_model(cases[i].model, &m), AH_E_OK);
        ck_assert_msg(m.tool_prompt_auto == cases[i].tool_auto &&
                          m.tool_prompt_forced == cases[i].tool_forced,
                      "%s: %d/%d", cases[i].model, m.tool_prompt_auto, m.tool_prompt_forced);
    }
    ah_chat_model_t m;
    ah_chat_model("gpt-4o", &m);
    ck_assert_int_eq(m.tool_prompt_auto, 0);
    ck_assert_int_eq(m.tool_prompt_forced, 0);
}
END_TEST

START_TEST(chat_estimate_claude_tools)
{
    json_error_t err;
    json_t *bare = json_loads("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                              "\"Reply with exactly: ready\"}]}",
                              0, &err);
    json_t *tool = json_loads("{\"type\":\"function\",\"function\":{\"name\":\"lookup\","
                              "\"description\":\"Find an order\",\"parameters\":{\"type\":"
                              "\"object\",\"properties\":{\"id\":{\"type\":\"string\"}}}}}",
                              0, &err);
    ck_assert_ptr_nonnull(bare);
    ck_assert_ptr_nonnull(tool);
    json_t *with = json_deep_copy(bare);
    json_object_set_new(with, "tools", json_pack("[O]", tool));
    ah_chat_model_t gpt, claude;
    ah_chat_model("gpt-4o", &gpt);
    ah_chat_model("claude-sonnet-4-20250514", &claude);
    ah_chat_count_t c;
    int64_t n, n_bare, n_claude_bare, n_claude;
    /* exact models: the chat rules, unchanged */
    ck_assert_int_eq(ah_chat_estimate(o200k, with, &gpt, &n, &c), AH_E_OK);
    ck_assert_int_eq(n, c.total);
    ck_assert_int_eq(ah_chat_estimate(o200k, bare, &gpt, &n_bare, NULL), AH_E_OK);
    ck_assert_int_lt(n_bare, n);
    /* Claude: messages scaled; tools = the tool prompt + 1.4 x their JSON's tokens */
    ck_assert_int_eq(ah_chat_estimate(o200k, bare, &claude, &n_claude_bare, &c), AH_E_OK);
    ck_assert_int_eq(n_claude_bare, (int64_t)ceil((double)c.total * AH_CHAT_ANTHROPIC_FACTOR));
    ck_assert_int_eq(ah_chat_estimate(o200k, with, &claude, &n_claude, NULL), AH_E_OK);
    char *js = json_dumps(json_object_get(tool, "function"), JSON_COMPACT);
    size_t jt = 0;
    ck_assert_int_eq(ah_bpe_count(o200k, js, strlen(js), 0, &jt), AH_E_OK);
    free(js);
    int64_t tools_part = 346 + (int64_t)ceil((double)jt * AH_CHAT_ANTHROPIC_TOOL_JSON_FACTOR);
    ck_assert_int_eq(n_claude, n_claude_bare + tools_part);
    /* a forced choice (any, or a named tool) has its own prompt */
    json_object_set_new(with, "tool_choice", json_string("required"));
    ck_assert_int_eq(ah_chat_estimate(o200k, with, &claude, &n, NULL), AH_E_OK);
    ck_assert_int_eq(n, n_claude - 346 + 313);
    json_object_set_new(
        with, "tool_choice",
        json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name", "lookup"));
    ck_assert_int_eq(ah_chat_estimate(o200k, with, &claude, &n, NULL), AH_E_OK);
    ck_assert_int_eq(n, n_claude - 346 + 313);
    /* an empty tools array adds nothing; a body without messages is refused */
    json_object_set_new(with, "tools", json_array());
    ck_assert_int_eq(ah_chat_estimate(o200k, with, &claude, &n, NULL), AH_E_OK);
    ck_assert_int_eq(n, n_claude_bare);
    json_t *nomsg = json_pack("{s:s}", "model", "m");
    ck_assert_int_eq(ah_chat_estimate(o200k, nomsg, &claude, &n, NULL), AH_E_PARSE);
    json_decref(nomsg);
    json_decref(with);
    json_decref(tool);
    json_decref(bare);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenize");
    TCase *tc = tcase_create("tokenize");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, golden_test_plans);
    tcase_add_test(tc, edge_cases);
    tcase_add_test(tc, invalid_utf8);
    tcase_add_test(tc, long_runs);
    tcase_add_test(tc, heap_merge_equals_scan);
    tcase_add_test(tc, limits_and_errors);
    tcase_add_test(tc, malformed_rank_files);
    tcase_add_test(tc, special_tokens);
    tcase_add_test(tc, threads_share_an_encoding);
    tcase_add_test(tc, chat_messages_cookbook);
    tcase_add_test(tc, chat_tools_and_images);
    tcase_add_test(tc, chat_model_encodings);
    tcase_add_test(tc, chat_model_claude_tool_prompt);
    tcase_add_test(tc, chat_estimate_claude_tools);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
