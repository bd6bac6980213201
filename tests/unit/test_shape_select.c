/* test_shape_select.c - context-chunk selection (src/shape/select.c): BM25 against
 * numbers worked by hand, rare words beating frequent ones, stop words, the light
 * stemmer, UTF-8 words, the dense blend, top-k edges and ties, bad arguments,
 * sentence splitting, and the speed on the largest input a call accepts. */
#include <check.h>

#include "check_run.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "shape/select.h"

#define TOL 1e-9
#define MAX_SPANS 32
#define SPAN_TEXT 256
#define BIG_CHUNKS AH_SELECT_MAX_CHUNKS
#define BIG_CHUNK_BYTES 1024
#define SMALL_CHUNKS 100
#define SMALL_CHUNK_BYTES 500
#define SMALL_ROUNDS 200
#define VOCAB 2000
#define VOCAB_WORD_BYTES 12
/* Generous bounds (sanitizer builds are slow); the measured times are printed. */
#define FUZZ_ROUNDS 2000
#define FUZZ_MAX_LEN 300

static ah_chunk_t chunk(const char *s)
{
    return (ah_chunk_t){.text = s, .len = strlen(s)};
}

static void score(const ah_chunk_t *c, size_t n, const char *q, const ah_select_dense_t *d,
                  double *out)
{
    ck_assert_int_eq(ah_select_score(c, n, q, strlen(q), d, out), AH_E_OK);
}

static size_t best(const double *s, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (s[i] > s[b])
            b = i;
    return b;
}

/* ---- BM25 -------------------------------------------------------------- */

START_TEST(bm25_matches_the_formula)
{
    /* Stems: appl banana, appl cherry, durian; lengths 2, 2, 1. */
    ah_chunk_t c[] = {chunk("apple banana"), chunk("apple cherry"), chunk("durian")};
    double s[3];
    score(c, 3, "banana?", NULL, s);
    double avgdl = 5.0 / 3.0;
    double idf = log(1.0 + (3 - 1 + 0.5) / (1 + 0.5));
    double norm = 1.2 * (1 - 0.75 + 0.75 * 2 / avgdl);
    ck_assert_double_eq_tol(s[0], idf * 2.2 / (1 + norm), TOL);
    ck_assert_double_eq_tol(s[1], 0, TOL);
    ck_assert_double_eq_tol(s[2], 0, TOL);

    /* Two terms, one in two chunks; "apples" meets "apple". */
    score(c, 3, "apples and banana, banana", NULL, s);
    double idf_apple = log(1.0 + (3 - 2 + 0.5) / (2 + 0.5));
    ck_assert_double_eq_tol(s[0], (idf_apple + idf) * 2.2 / (1 + norm), TOL);
    ck_assert_double_eq_tol(s[1], idf_apple * 2.2 / (1 + norm), TOL);
    ck_assert_double_eq_tol(s[2], 0, TOL);

    /* Term frequency saturates: twice the word scores more, less than twice. */
    ah_chunk_t d[] = {chunk("kiwi kiwi mango"), chunk("kiwi mango pear"), chunk("fig")};
    score(d, 3, "kiwi", NULL, s);
    ck_assert(s[0] > s[1] && s[0] < 2 * s[1]);
}
END_TEST

START_TEST(rare_words_rank_first)
{
    const char *q = "How do I rotate the Kubernetes service account token?";
    ah_chunk_t c[] = {
        chunk("The service handles each request and the account page shows the request log."),
        chunk("Our service team answers account questions on the service desk every day."),
        chunk("To rotate the token of a Kubernetes service account, delete its secret."),
        chunk("The account service, the billing service and the user service all log."),
        chunk("Service account settings: name, email, and the service plan of the account."),
    };
    size_t n = sizeof c / sizeof c[0];
    double s[5];
    score(c, n, q, NULL, s);
    ck_assert_uint_eq(best(s, n), 2);

    unsigned char keep[5];
    size_t kept = 99;
    ck_assert_int_eq(ah_select_top_k(c, n, q, strlen(q), 1, NULL, keep, &kept), AH_E_OK);
    ck_assert_uint_eq(kept, 1);
    for (size_t i = 0; i < n; i++)
        ck_assert_uint_eq(keep[i], i == 2);
}
END_TEST

START_TEST(stop_words_alone_score_zero)
{
    ah_chunk_t c[] = {chunk("what is the answer"), chunk("it is what it is"), chunk("to be or")};
    double s[3];
    score(c, 3, "What is the... of it? And how does it do that, which is this?", NULL, s);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq(s[i], 0);
    score(c, 3, "", NULL, s);
    for (int i = 0; i < 3; i++)
        ck_assert_double_eq(s[i], 0);
    /* Stop words do not count in a chunk's length either: the same content
     * word with and without glue around it scores the same. */
    ah_chunk_t d[] = {chunk("latency"), chunk("what is the latency of it"), chunk("throughput")};
    score(d, 3, "latency", NULL, s);
    ck_assert(s[0] > 0);
    ck_assert_double_eq_tol(s[0], s[1], TOL);
}
END_TEST

START_TEST(suffixes_meet_their_stem)
{
    static const char *const pairs[][2] = {
        {"routes", "route"},       {"routing", "routed"},    {"queries", "query"},
        {"caching", "cache"},      {"boxes", "box"},         {"classes", "class"},
        {"running", "run"},        {"APIs", "API"},          {"needed", "need"},
        {"meetings", "meeting"},   {"applied", "applies"},   {"strings", "string"},
        {"embedded", "embedding"}, {"processes", "process"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        ah_chunk_t c[] = {chunk("unrelated words here"), chunk(pairs[i][1])};
        double s[2];
        score(c, 2, pairs[i][0], NULL, s);
        ck_assert_msg(s[1] > 0, "%s does not meet %s", pairs[i][0], pairs[i][1]);
        ck_assert_double_eq(s[0], 0);
    }
    /* Short words keep their letters: "is" is a stop word, "red" is not "r". */
    ah_chunk_t c[] = {chunk("r"), chunk("red"), chunk("thing")};
    double s[3];
    score(c, 3, "red", NULL, s);
    ck_assert(s[0] == 0 && s[1] > 0 && s[2] == 0);
    score(c, 3, "things", NULL, s);
    ck_assert(s[0] == 0 && s[1] == 0 && s[2] > 0);
}
END_TEST

START_TEST(utf8_words_stay_whole)
{
    ah_chunk_t c[] = {
        chunk("ber alles"), /* the ASCII tail of "über" */
        chunk("Deutschland \xC3\xBC"
              "ber alles"),                                  /* über */
        chunk("caf\xC3\xA9 au lait"),                        /* café */
        chunk("\xE6\x95\xB0\xE6\x8D\xAE\xE5\xBA\x93 index"), /* 数据库 */
    };
    double s[4];
    score(c, 4,
          "\xC3\xBC"
          "ber",
          NULL, s);
    ck_assert_uint_eq(best(s, 4), 1);
    ck_assert_double_eq(s[0], 0);
    ck_assert_double_eq(s[2], 0);

    score(c, 4, "Caf\xC3\xA9s?", NULL, s); /* cafés: the plural meets café */
    ck_assert_uint_eq(best(s, 4), 2);
    ck_assert_double_eq(s[0] + s[1] + s[3], 0);

    score(c, 4, "\xE6\x95\xB0\xE6\x8D\xAE\xE5\xBA\x93", NULL, s);
    ck_assert_uint_eq(best(s, 4), 3);
    ck_assert_double_eq(s[0] + s[1] + s[2], 0);
    /* A part of the word is another word. */
    score(c, 4, "\xE6\x95\xB0\xE6\x8D\xAE", NULL, s);
    ck_assert_double_eq(s[0] + s[1] + s[2] + s[3], 0);
}
END_TEST

START_TEST(long_runs_are_cut_into_words)
{
    /* 300 bytes of letters then 100 two-byte characters: cut, never inside
     * a character; the same run in the question matches. */
    char run[600];
    size_t n = 0;
    for (int i = 0; i < 300; i++)
        run[n++] = (char)('a' + i % 26);
    for (int i = 0; i < 100; i++) {
        run[n++] = '\xC3';
        run[n++] = '\xA9';
    }
    run[n] = '\0';
    ah_chunk_t c[] = {chunk(run), chunk("short words only")};
    double s[2];
    score(c, 2, run, NULL, s);
    ck_assert(s[0] > 0);
    ck_assert_double_eq(s[1], 0);
}
END_TEST

static int ref_word_byte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The words a byte-at-a-time scan finds in text, one space between them. */
static size_t ref_words(const char *text, size_t len, char *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (!ref_word_byte((unsigned char)text[i])) {
            i++;
            continue;
        }
        if (n)
            out[n++] = ' ';
        while (i < len && ref_word_byte((unsigned char)text[i]))
            out[n++] = text[i++];
    }
    return n;
}

START_TEST(words_match_a_byte_scan)
{
    /* The scorer finds words eight bytes at a time; a text and the same
     * words one space apart must score alike, whatever the separators and
     * wherever the words fall across the eight-byte blocks. */
    static const char *const pieces[] = {"a",  "Bc", "def",  "GHIJ", "x9",  "\xC3\xA9", "1",
                                         " ",  ".",  ", ",   "\n",   "--",  "\t\t",     "(",
                                         "'s", "_",  "\x7F", "@",    "[z]", "Route",    "queries"};
    char text[FUZZ_MAX_LEN + 16], ref[2 * FUZZ_MAX_LEN + 16];
    srand(7);
    for (int round = 0; round < FUZZ_ROUNDS; round++) {
        size_t len = 0, target = (size_t)rand() % FUZZ_MAX_LEN;
        while (len < target) {
            const char *p = pieces[(size_t)rand() % (sizeof pieces / sizeof pieces[0])];
            size_t pl = strlen(p);
            memcpy(text + len, p, pl);
            len += pl;
        }
        size_t rl = ref_words(text, len, ref);
        ah_chunk_t c[] = {{.text = text, .len = len}, {.text = ref, .len = rl}, chunk("zzz")};
        double s[3];
        ck_assert_int_eq(ah_select_score(c, 3, text, len, NULL, s), AH_E_OK);
        ck_assert_msg(s[0] == s[1], "\"%.*s\" scores %g, its words %g", (int)len, text, s[0], s[1]);
    }
}
END_TEST

/* ---- dense blend ------------------------------------------------------- */

START_TEST(dense_weight_one_ranks_by_cosine)
{
    ah_chunk_t c[] = {chunk("kubernetes token rotation"), chunk("weather today"),
                      chunk("cooking pasta"), chunk("kubernetes")};
    const float cos[] = {-0.2f, 0.9f, 0.1f, 0.3f};
    ah_select_dense_t d = {.cosine = cos, .weight = 1.0};
    double s[4];
    score(c, 4, "kubernetes token", &d, s);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(s[i], (cos[i] + 1.0) / 2.0, 1e-6);
    unsigned char keep[4];
    size_t kept;
    ck_assert_int_eq(ah_select_top_k(c, 4, "kubernetes token", 16, 2, &d, keep, &kept), AH_E_OK);
    ck_assert_uint_eq(kept, 2);
    ck_assert(!keep[0] && keep[1] && !keep[2] && keep[3]);

    /* weight 0: BM25 alone, scaled by the best chunk's. */
    d.weight = 0;
    score(c, 4, "kubernetes token", &d, s);
    ck_assert_double_eq_tol(s[0], 1.0, TOL);
    ck_assert(s[3] > 0 && s[3] < 1);
    ck_assert_double_eq(s[1], 0);

    /* The blend is linear in the weight. */
    double bm[4];
    score(c, 4, "kubernetes token", NULL, bm);
    d.weight = 0.3;
    score(c, 4, "kubernetes token", &d, s);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(s[i], 0.7 * bm[i] / bm[0] + 0.3 * (cos[i] + 1) / 2, 1e-6);

    /* No BM25 anywhere: the sparse share is 0, not a division by zero. */
    d.weight = 0.5;
    score(c, 4, "the of and", &d, s);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(s[i], 0.5 * (cos[i] + 1) / 2, 1e-6);

    /* Cosines outside [-1, 1] are clamped, NaN counts as the worst. */
    const float odd[] = {2.0f, -3.0f, NAN, 0.0f};
    d = (ah_select_dense_t){.cosine = odd, .weight = 1.0};
    score(c, 4, "x", &d, s);
    ck_assert_double_eq(s[0], 1);
    ck_assert_double_eq(s[1], 0);
    ck_assert_double_eq(s[2], 0);
    ck_assert_double_eq_tol(s[3], 0.5, TOL);
}
END_TEST

/* ---- top k ------------------------------------------------------------- */

START_TEST(ties_keep_the_earlier_chunk)
{
    ah_chunk_t c[] = {chunk("alpha"), chunk("beta gamma"), chunk("beta gamma"),
                      chunk("delta"), chunk("beta gamma"), chunk("beta gamma")};
    unsigned char keep[6];
    size_t kept;
    ck_assert_int_eq(ah_select_top_k(c, 6, "gamma beta", 10, 3, NULL, keep, &kept), AH_E_OK);
    ck_assert_uint_eq(kept, 3);
    const unsigned char want[] = {0, 1, 1, 0, 1, 0};
    ck_assert_mem_eq(keep, want, 6);

    /* All scores 0: the first k, in order. */
    ck_assert_int_eq(ah_select_top_k(c, 6, "nothing here", 12, 2, NULL, keep, &kept), AH_E_OK);
    const unsigned char first2[] = {1, 1, 0, 0, 0, 0};
    ck_assert_mem_eq(keep, first2, 6);
}
END_TEST

START_TEST(k_edges)
{
    ah_chunk_t c[] = {chunk("one"), chunk("two"), chunk("three")};
    unsigned char keep[3] = {7, 7, 7};
    size_t kept = 99;
    ck_assert_int_eq(ah_select_top_k(c, 3, "two", 3, 0, NULL, keep, &kept), AH_E_OK);
    ck_assert_uint_eq(kept, 0);
    ck_assert(!keep[0] && !keep[1] && !keep[2]);

    for (size_t k = 3; k <= 5; k++) {
        memset(keep, 7, sizeof keep);
        ck_assert_int_eq(ah_select_top_k(c, 3, "two", 3, k, NULL, keep, &kept), AH_E_OK);
        ck_assert_uint_eq(kept, 3);
        ck_assert(keep[0] == 1 && keep[1] == 1 && keep[2] == 1);
    }
    ck_assert_int_eq(ah_select_top_k(c, 3, "two", 3, 1, NULL, keep, &kept), AH_E_OK);
    ck_assert(kept == 1 && !keep[0] && keep[1] && !keep[2]);

    /* n = 0: nothing to keep, arrays may be NULL. */
    kept = 99;
    ck_assert_int_eq(ah_select_top_k(NULL, 0, "two", 3, 2, NULL, NULL, &kept), AH_E_OK);
    ck_assert_uint_eq(kept, 0);
    ck_assert_int_eq(ah_select_score(NULL, 0, "two", 3, NULL, NULL), AH_E_OK);
}
END_TEST

START_TEST(bad_arguments)
{
    ah_chunk_t c[] = {chunk("one"), chunk("two")};
    double s[2];
    unsigned char keep[2];
    size_t kept;
    float cos[2] = {0, 0};
    ck_assert_int_eq(ah_select_score(NULL, 2, "q", 1, NULL, s), AH_E_INVAL);
    ck_assert_int_eq(ah_select_score(c, 2, "q", 1, NULL, NULL), AH_E_INVAL);
    ck_assert_int_eq(ah_select_score(c, 2, NULL, 1, NULL, s), AH_E_INVAL);
    ck_assert_int_eq(ah_select_score(c, 2, NULL, 0, NULL, s), AH_E_OK);
    ck_assert_int_eq(ah_select_score(c, AH_SELECT_MAX_CHUNKS + 1, "q", 1, NULL, s), AH_E_TOOBIG);
    ck_assert_int_eq(ah_select_score(c, 2, "q", AH_SELECT_MAX_TEXT_BYTES + 1, NULL, s),
                     AH_E_TOOBIG);
    ah_chunk_t big[] = {{.text = "x", .len = AH_SELECT_MAX_TEXT_BYTES + 1}};
    ck_assert_int_eq(ah_select_score(big, 1, "q", 1, NULL, s), AH_E_TOOBIG);
    ah_chunk_t null_text[] = {{.text = NULL, .len = 3}, {.text = NULL, .len = 0}};
    ck_assert_int_eq(ah_select_score(null_text, 2, "q", 1, NULL, s), AH_E_INVAL);
    ck_assert_int_eq(ah_select_score(null_text + 1, 1, "q", 1, NULL, s), AH_E_OK);

    ah_select_dense_t d = {.cosine = NULL, .weight = 0.5};
    ck_assert_int_eq(ah_select_score(c, 2, "q", 1, &d, s), AH_E_INVAL);
    d.cosine = cos;
    d.weight = 1.5;
    ck_assert_int_eq(ah_select_score(c, 2, "q", 1, &d, s), AH_E_INVAL);
    d.weight = -0.1;
    ck_assert_int_eq(ah_select_score(c, 2, "q", 1, &d, s), AH_E_INVAL);
    d.weight = NAN;
    ck_assert_int_eq(ah_select_score(c, 2, "q", 1, &d, s), AH_E_INVAL);

    ck_assert_int_eq(ah_select_top_k(c, 2, "q", 1, 1, NULL, NULL, &kept), AH_E_INVAL);
    ck_assert_int_eq(ah_select_top_k(c, 2, "q", 1, 1, NULL, keep, NULL), AH_E_INVAL);
    ck_assert_int_eq(ah_select_top_k(c, 2, "q", 1, 1, &d, keep, &kept), AH_E_INVAL);
    ck_assert_int_eq(ah_select_top_k(c, 2, "q", AH_SELECT_MAX_TEXT_BYTES + 1, 1, NULL, keep, &kept),
                     AH_E_TOOBIG);
}
END_TEST

/* ---- sentences --------------------------------------------------------- */

/* Splits text and checks the sentences against want[0..nwant). */
static void check_sentences(const char *text, size_t max, const char *const *want, size_t nwant)
{
    size_t spans[2 * MAX_SPANS];
    size_t n = ah_select_sentences(text, strlen(text), spans, max);
    for (size_t i = 0; i < n && i < nwant; i++) {
        size_t len = spans[2 * i + 1] - spans[2 * i];
        ck_assert_msg(len == strlen(want[i]) && memcmp(text + spans[2 * i], want[i], len) == 0,
                      "sentence %zu of \"%s\": got \"%.*s\", want \"%s\"", i, text, (int)len,
                      text + spans[2 * i], want[i]);
    }
    ck_assert_msg(n == nwant, "\"%s\": %zu sentences, want %zu", text, n, nwant);
}

#define CHECK_SENTENCES(text, ...)                                                                 \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        check_sentences(text, MAX_SPANS, want_, sizeof want_ / sizeof want_[0]);                   \
    } while (0)

START_TEST(sentences_split_on_terminators)
{
    CHECK_SENTENCES("Hello world. This is it! Really? Yes.", "Hello world.", "This is it!",
                    "Really?", "Yes.");
    CHECK_SENTENCES("  \n Leading blanks go.  Trailing too.  \n", "Leading blanks go.",
                    "Trailing too.");
    CHECK_SENTENCES("It grew 5%. 2024 was better.", "It grew 5%.", "2024 was better.");
    CHECK_SENTENCES("He said \"Stop.\" Then he left.", "He said \"Stop.\"", "Then he left.");
    CHECK_SENTENCES("She left. \"Why?\" he asked.", "She left.", "\"Why?\" he asked.");
    CHECK_SENTENCES("Wait... What now?!  Ok.", "Wait...", "What now?!", "Ok.");
    CHECK_SENTENCES("Dies ist gut. \xC3\x9C"
                    "ber alles.",
                    "Dies ist gut.",
                    "\xC3\x9C"
                    "ber alles.");
    CHECK_SENTENCES("I said no. Then I left.", "I said no.", "Then I left.");
}
END_TEST

START_TEST(sentences_keep_abbreviations_and_decimals)
{
    CHECK_SENTENCES("Use a cache, e.g. Redis or memcached. Pi is 3.14 today.",
                    "Use a cache, e.g. Redis or memcached.", "Pi is 3.14 today.");
    CHECK_SENTENCES("Ask Dr. Smith and Mrs. Jones vs. Mr. Brown. Done.",
                    "Ask Dr. Smith and Mrs. Jones vs. Mr. Brown.", "Done.");
    CHECK_SENTENCES("Acme Inc. Ships in the U.S. Army, i.e. Fort Knox, St. Louis etc. Ok",
                    "Acme Inc. Ships in the U.S. Army, i.e. Fort Knox, St. Louis etc. Ok");
    CHECK_SENTENCES("See Fig. 3 and No. 5 by J. R. Tolkien. Next one.",
                    "See Fig. 3 and No. 5 by J. R. Tolkien.", "Next one.");
    CHECK_SENTENCES("Version 2.0.1 ships today. It costs $3.50 now.", "Version 2.0.1 ships today.",
                    "It costs $3.50 now.");
    CHECK_SENTENCES("The total is small. and lower case does not start one.",
                    "The total is small. and lower case does not start one.");
    CHECK_SENTENCES("x.Y is a field.Next", "x.Y is a field.Next");
}
END_TEST

START_TEST(sentences_split_on_blank_lines_and_lists)
{
    CHECK_SENTENCES("First paragraph without a stop\n\nsecond one\n \t\n\nthird",
                    "First paragraph without a stop", "second one", "third");
    CHECK_SENTENCES("Steps:\n- install it\n- run it\n* or this\n1. first\n12) twelfth\nend",
                    "Steps:", "- install it", "- run it", "* or this", "1. first",
                    "12) twelfth\nend");
    CHECK_SENTENCES("a line\nwrapped here\n-not a marker", "a line\nwrapped here\n-not a marker");
    CHECK_SENTENCES("Dr.\n\nWho", "Dr.", "Who");
    CHECK_SENTENCES("Trailing blank lines.\n\n\n  ", "Trailing blank lines.");
}
END_TEST

START_TEST(sentences_limits)
{
    const char *text = "One. Two. Three. Four.";
    size_t spans[2 * MAX_SPANS];
    ck_assert_uint_eq(ah_select_sentences(text, strlen(text), spans, 0), 0);
    ck_assert_uint_eq(ah_select_sentences(NULL, 5, spans, 4), 0);
    ck_assert_uint_eq(ah_select_sentences(text, strlen(text), NULL, 4), 0);
    ck_assert_uint_eq(ah_select_sentences(" \n\t ", 4, spans, 4), 0);
    ck_assert_uint_eq(ah_select_sentences("", 0, spans, 4), 0);
    static const char *const two[] = {"One.", "Two. Three. Four."};
    check_sentences(text, 2, two, 2);
    static const char *const one[] = {"One. Two. Three. Four."};
    check_sentences(text, 1, one, 1);
    static const char *const all[] = {"One.", "Two.", "Three.", "Four."};
    check_sentences(text, 4, all, 4);
}
END_TEST

START_TEST(random_input_keeps_the_invariants)
{
    static const char alphabet[] = "aB3 .!?\n\n-*\"'()\xC3\xA9\xE2\x80\x9C\t1.";
    char text[FUZZ_MAX_LEN];
    size_t spans[2 * MAX_SPANS];
    srand(42);
    for (int round = 0; round < FUZZ_ROUNDS; round++) {
        size_t len = (size_t)rand() % FUZZ_MAX_LEN;
        for (size_t i = 0; i < len; i++)
            text[i] =
                round % 2 ? (char)(rand() % 256) : alphabet[(size_t)rand() % (sizeof alphabet - 1)];
        size_t max = 1 + (size_t)rand() % MAX_SPANS;
        size_t n = ah_select_sentences(text, len, spans, max);
        ck_assert_uint_le(n, max);
        size_t prev = 0;
        for (size_t i = 0; i < n; i++) {
            size_t a = spans[2 * i], b = spans[2 * i + 1];
            ck_assert(a >= prev && a < b && b <= len);
            ck_assert(text[a] != ' ' && text[a] != '\n' && text[b - 1] != ' ');
            for (size_t j = prev; j < a; j++) /* only blanks between sentences */
                ck_assert(strchr(" \t\n\r\f\v", text[j]) != NULL && text[j] != '\0');
            prev = b;
        }
        ah_chunk_t c[] = {
            {.text = text, .len = len}, chunk("a b c"), {.text = text, .len = len / 2}};
        double s[3];
        ck_assert_int_eq(ah_select_score(c, 3, text, len / 3, NULL, s), AH_E_OK);
        for (int i = 0; i < 3; i++)
            ck_assert(s[i] >= 0 && isfinite(s[i]));
    }
}
END_TEST

/* ---- speed ------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 32);
}

/* A vocabulary of VOCAB words, used Zipf-ish (low indices often): English's
 * most frequent words first, as in real text, then made-up ones. */
static char vocab[VOCAB][VOCAB_WORD_BYTES];
static const char *const frequent[] = {
    "the",   "of",   "and",  "to",   "a",    "in",    "is",   "it",   "you",   "that",
    "he",    "was",  "for",  "on",   "are",  "with",  "as",   "his",  "they",  "be",
    "at",    "one",  "have", "this", "from", "or",    "had",  "by",   "word",  "but",
    "what",  "some", "we",   "can",  "out",  "other", "were", "all",  "there", "when",
    "up",    "use",  "your", "how",  "said", "an",    "each", "she",  "which", "do",
    "Their", "Time", "If",   "Will", "Way",  "About", "Many", "Then", "Them",  "Would",
};
#define N_FREQUENT (sizeof frequent / sizeof frequent[0])

static void make_vocab(void)
{
    for (size_t i = 0; i < N_FREQUENT; i++)
        snprintf(vocab[i], sizeof vocab[i], "%s", frequent[i]);
    for (int i = N_FREQUENT; i < VOCAB; i++) {
        int n = 3 + (int)(rng() % (VOCAB_WORD_BYTES - 4));
        for (int j = 0; j < n; j++)
            vocab[i][j] = (char)('a' + rng() % 26);
        vocab[i][n] = '\0';
    }
}

/* Fills buf with about `bytes` bytes of words and punctuation. */
static size_t make_text(char *buf, size_t bytes)
{
    size_t n = 0;
    while (n + VOCAB_WORD_BYTES + 2 < bytes) {
        uint32_t r = rng() % VOCAB;
        const char *w = vocab[r * r / VOCAB]; /* skewed towards the first words */
        size_t wl = strlen(w);
        memcpy(buf + n, w, wl);
        n += wl;
        buf[n++] = rng() % 12 == 0 ? '.' : ' ';
        if (buf[n - 1] == '.')
            buf[n++] = ' ';
    }
    return n;
}

static double time_score(ah_chunk_t *c, size_t n, const char *q, int rounds, double *s)
{
    int64_t t0 = ah_now_us();
    for (int r = 0; r < rounds; r++)
        ck_assert_int_eq(ah_select_score(c, n, q, strlen(q), NULL, s), AH_E_OK);
    return (double)(ah_now_us() - t0) / rounds;
}

START_TEST(large_input_is_fast)
{
    make_vocab();
    char *text = ah_malloc((size_t)BIG_CHUNKS * BIG_CHUNK_BYTES);
    ah_chunk_t *c = ah_malloc(BIG_CHUNKS * sizeof *c);
    double *s = ah_malloc(BIG_CHUNKS * sizeof *s);
    for (size_t i = 0; i < BIG_CHUNKS; i++) {
        c[i].text = text + i * BIG_CHUNK_BYTES;
        c[i].len = make_text(text + i * BIG_CHUNK_BYTES, BIG_CHUNK_BYTES);
    }
    char q[256];
    snprintf(q, sizeof q, "What does %s %s have to do with %s and the %s?", vocab[3], vocab[900],
             vocab[1500], vocab[40]);

    double small_us = time_score(c, SMALL_CHUNKS, q, 1, s); /* warm */
    for (size_t i = 0; i < SMALL_CHUNKS; i++)
        c[i].len = make_text(text + i * BIG_CHUNK_BYTES, SMALL_CHUNK_BYTES);
    small_us = time_score(c, SMALL_CHUNKS, q, SMALL_ROUNDS, s);
    for (size_t i = 0; i < SMALL_CHUNKS; i++)
        c[i].len = make_text(text + i * BIG_CHUNK_BYTES, BIG_CHUNK_BYTES);

    double big_us = time_score(c, BIG_CHUNKS, q, 3, s);
    size_t total = 0;
    for (size_t i = 0; i < BIG_CHUNKS; i++)
        total += c[i].len;
    printf("select: %d chunks of ~%d bytes scored in %.1f us; %d chunks (%zu bytes) in %.2f ms\n",
           SMALL_CHUNKS, SMALL_CHUNK_BYTES, small_us, BIG_CHUNKS, total, big_us / 1000.0);

    unsigned char *keep = ah_malloc(BIG_CHUNKS);
    size_t kept;
    int64_t t0 = ah_now_us();
    ck_assert_int_eq(ah_select_top_k(c, BIG_CHUNKS, q, strlen(q), 10, NULL, keep, &kept), AH_E_OK);
    printf("select: top 10 of %d chunks in %.2f ms\n", BIG_CHUNKS,
           (double)(ah_now_us() - t0) / 1000.0);
    ck_assert_uint_eq(kept, 10);
    ah_free(keep);
    ah_free(s);
    ah_free(c);
    ah_free(text);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("shape_select");
    TCase *tc = tcase_create("select");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bm25_matches_the_formula);
    tcase_add_test(tc, rare_words_rank_first);
    tcase_add_test(tc, stop_words_alone_score_zero);
    tcase_add_test(tc, suffixes_meet_their_stem);
    tcase_add_test(tc, utf8_words_stay_whole);
    tcase_add_test(tc, long_runs_are_cut_into_words);
    tcase_add_test(tc, words_match_a_byte_scan);
    tcase_add_test(tc, dense_weight_one_ranks_by_cosine);
    tcase_add_test(tc, ties_keep_the_earlier_chunk);
    tcase_add_test(tc, k_edges);
    tcase_add_test(tc, bad_arguments);
    tcase_add_test(tc, sentences_split_on_terminators);
    tcase_add_test(tc, sentences_keep_abbreviations_and_decimals);
    tcase_add_test(tc, sentences_split_on_blank_lines_and_lists);
    tcase_add_test(tc, sentences_limits);
    tcase_add_test(tc, random_input_keeps_the_invariants);
    tcase_add_test(tc, large_input_is_fast);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
