/* test_score.c - quality/score: the scorers of offline evaluation.
 *
 * Normalization and F1 cases follow SQuAD v1.1's evaluate-v1.1.py
 * (normalize_answer, f1_score); the expected F1 values were worked out by
 * hand from its definitions. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_run.h"
#include "core/alloc.h"
#include "quality/score.h"

/* A text of n copies of word separated by spaces (free with ah_free). */
static char *repeat(const char *word, size_t n)
{
    size_t wl = strlen(word);
    char *s = ah_malloc(n * (wl + 1) + 1);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + i * (wl + 1), word, wl);
        s[i * (wl + 1) + wl] = ' ';
    }
    s[n ? n * (wl + 1) - 1 : 0] = '\0';
    return s;
}

static char *norm(const char *s, char *out, size_t n)
{
    ah_buf_t b;
    ah_buf_init(&b, 4096);
    ck_assert_int_eq(ah_score_normalize(s, &b), AH_E_OK);
    snprintf(out, n, "%s", b.data);
    ah_buf_free(&b);
    return out;
}

START_TEST(exact)
{
    ck_assert_int_eq(ah_score_exact("Paris", "Paris"), 1);
    ck_assert_int_eq(ah_score_exact("Paris", "paris"), 0);
    ck_assert_int_eq(ah_score_exact("", ""), 1);
    ck_assert_int_eq(ah_score_exact(NULL, "x"), -1);
    ck_assert_int_eq(ah_score_exact("x", NULL), -1);
    ck_assert_int_eq(ah_score_exact("\xff\xfe", "\xff\xfe"), 1);
    char *big = ah_malloc(AH_SCORE_MAX_TEXT + 2);
    memset(big, 'a', AH_SCORE_MAX_TEXT + 1);
    big[AH_SCORE_MAX_TEXT + 1] = '\0';
    ck_assert_int_eq(ah_score_exact(big, "a"), -1);
    big[AH_SCORE_MAX_TEXT] = '\0'; /* exactly at the limit: allowed */
    ck_assert_int_eq(ah_score_exact(big, big), 1);
    ah_free(big);
}
END_TEST

START_TEST(normalize)
{
    char o[256];
    ck_assert_str_eq(norm("The  Eiffel Tower!", o, sizeof o), "eiffel tower");
    ck_assert_str_eq(norm("  a cat, an owl and THE dog.  ", o, sizeof o), "cat owl and dog");
    ck_assert_str_eq(norm("don't", o, sizeof o), "dont");
    ck_assert_str_eq(norm("theater anthem", o, sizeof o), "theater anthem"); /* not articles */
    ck_assert_str_eq(norm("\t\n", o, sizeof o), "");
    ck_assert_str_eq(norm("", o, sizeof o), "");
    ck_assert_str_eq(norm("-- ... !!", o, sizeof o), "");
    ck_assert_str_eq(norm("ÉCOLE Ça", o, sizeof o), "école ça");
    ck_assert_str_eq(norm("×", o, sizeof o), "×"); /* U+00D7 is no capital */
    ck_assert_str_eq(
        norm("\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\x94 yes\xe2\x80\xa6", o, sizeof o),
        "quoted yes");
    ck_assert_str_eq(norm("a\xc2\xa0"
                          "b",
                          o, sizeof o),
                     "b"); /* no-break space */
    ck_assert_str_eq(norm("\xff\xfe X", o, sizeof o), "\xff\xfe x");
    ck_assert_str_eq(norm("\xc3", o, sizeof o), "\xc3"); /* truncated sequence kept */
    ah_buf_t b;
    ah_buf_init(&b, 8);
    ck_assert_int_eq(ah_score_normalize(NULL, &b), AH_E_INVAL);
    ck_assert_int_eq(ah_score_normalize("a long text of words", &b), AH_E_TOOBIG);
    ah_buf_free(&b);

    ck_assert_int_eq(ah_score_normalized("The Eiffel Tower.", "eiffel tower"), 1);
    ck_assert_int_eq(ah_score_normalized("Eiffel", "eiffel tower"), 0);
    ck_assert_int_eq(ah_score_normalized("", "the"), 1);
    ck_assert_int_eq(ah_score_normalized(NULL, "a"), -1);
}
END_TEST

START_TEST(f1)
{
    ck_assert_double_eq_tol(ah_score_f1("the Eiffel Tower", "Eiffel Tower"), 1, 1e-12);
    /* 1 common of 2 and 3 tokens: p 1/2, r 1/3, F1 0.4 */
    ck_assert_double_eq_tol(ah_score_f1("Eiffel Paris", "Eiffel Tower France"), 0.4, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("Tower", "Eiffel Tower"), 2.0 / 3, 1e-12);
    /* multiset: "a a b" vs "a b b": words x x y vs x y y -> 2 common */
    ck_assert_double_eq_tol(ah_score_f1("x x y", "x y y"), 2.0 / 3, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("x x x", "x"), 0.5, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("cat", "dog"), 0, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("", "the"), 1, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("", "dog"), 0, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1("dog", "..."), 0, 1e-12);
    ck_assert_double_eq_tol(ah_score_f1(NULL, "x"), -1, 1e-12);
    /* a large input within the limit stays cheap (sorting, not n*m) */
    char *big = repeat("word", 150000);
    char *big2 = repeat("word", 100000);
    ck_assert_double_eq_tol(ah_score_f1(big, big2), 2 * (1.0 / 1.5) / (1 + 1.0 / 1.5), 1e-12);
    ah_free(big);
    ah_free(big2);
}
END_TEST

START_TEST(regex)
{
    char err[256];
    int score = -1;
    ck_assert_int_eq(ah_score_regex("The total is 42.", "[0-9]+", &score, err, sizeof err), 0);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("The total is 42.", "^[0-9]+$", &score, err, sizeof err), 0);
    ck_assert_int_eq(score, 0);
    ck_assert_int_eq(ah_score_regex("yes", "^(yes|no)$", &score, err, sizeof err), 0);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("", "^$", &score, err, sizeof err), 0);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("a\\1", "a\\\\1", &score, err, sizeof err), 0);
    ck_assert_int_eq(score, 1); /* an escaped backslash then 1 is no back-reference */

    err[0] = '\0';
    ck_assert_int_eq(ah_score_regex("x", "(unclosed", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(score, 0);
    ck_assert_ptr_nonnull(strstr(err, "bad pattern"));
    ck_assert_int_eq(ah_score_regex("x", "[z-a]", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(ah_score_regex("aa", "(a)\\1", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "back-reference"));
    /* repetition bounds, expanded by glibc into copies, are capped */
    ck_assert_int_eq(ah_score_regex("12345", "^[0-9]{5}$", &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("aa", "^a{1,1000}$", &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("a", "a{20001}", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(
        ah_score_regex("a", "a++++++++++++++++++++++++++++++", &score, err, sizeof err),
        AH_E_INVAL); /* each + doubles the tree in glibc */
    ck_assert_int_eq(ah_score_regex("a", "((((((((((((((((a+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+)+",
                                    &score, err, sizeof err),
                     AH_E_INVAL);
    ck_assert_int_eq(ah_score_regex("x y z", "(\\w+ )+\\w+ ?[a-z]*", &score, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(score, 1);
    /* a repeated atom that can match empty: glibc's epsilon closures blow up */
    const char *empty_loops[] = {"((t*)+){2000}", "t*++++++++++", "(a|b*)+",   "(x?){3}",
                                 "(()|a)+",       "(^)+",         "(a*b*){2,}"};
    for (size_t i = 0; i < sizeof empty_loops / sizeof empty_loops[0]; i++)
        ck_assert_msg(ah_score_regex("t", empty_loops[i], &score, err, sizeof err) == AH_E_INVAL,
                      "accepted %s", empty_loops[i]);
    const char *fine[] = {"(t*)*", "(a|b)+c?", "(ab*)+", "x{0,3}", "(a*b)+", "(a|b*c){3}"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++)
        ck_assert_msg(ah_score_regex("t", fine[i], &score, err, sizeof err) == AH_E_OK,
                      "refused %s: %s", fine[i], err);
    ck_assert_int_eq(ah_score_regex("a]", "[]a]{2}$", &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("a", "[[:alpha:]]{1,3}", &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    ck_assert_ptr_nonnull(strstr(err, "repetition"));
    ck_assert_int_eq(ah_score_regex("a", "a{2,99999999999999999999}", &score, err, sizeof err),
                     AH_E_INVAL);
    ck_assert_int_eq(ah_score_regex("a", "(a{400}){400}", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(ah_score_regex("a{9999}", "a\\{9999}", &score, err, sizeof err),
                     AH_E_OK); /* an escaped brace is a literal, not a bound */
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex(NULL, "x", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(ah_score_regex("x", NULL, &score, NULL, 0), AH_E_INVAL);
    char pat[AH_SCORE_MAX_PATTERN + 2];
    memset(pat, 'a', sizeof pat - 1);
    pat[sizeof pat - 1] = '\0';
    ck_assert_int_eq(ah_score_regex("a", pat, &score, err, sizeof err), AH_E_TOOBIG);
    pat[AH_SCORE_MAX_PATTERN] = '\0';
    ck_assert_int_eq(ah_score_regex(pat, pat, &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    ck_assert_int_eq(ah_score_regex("\xff\xfe ok", "ok", &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
}
END_TEST

/* The score of answer under schema, asserting the call succeeded. */
static int valid(const char *answer, const char *schema)
{
    char err[256];
    int score = -1;
    ck_assert_int_eq(ah_score_json_schema(answer, schema, &score, err, sizeof err), AH_E_OK);
    return score;
}

static ah_err_t schema_rc(const char *schema, char *err, size_t errlen)
{
    int score = -1;
    ah_err_t rc = ah_score_json_schema("{}", schema, &score, err, errlen);
    ck_assert_int_eq(score, 0);
    return rc;
}

START_TEST(json_schema_types)
{
    ck_assert_int_eq(valid("{}", "{}"), 1);
    ck_assert_int_eq(valid("42", "{\"type\":\"integer\"}"), 1);
    ck_assert_int_eq(valid("42.0", "{\"type\":\"integer\"}"), 1);
    ck_assert_int_eq(valid("42.5", "{\"type\":\"integer\"}"), 0);
    ck_assert_int_eq(valid("42.5", "{\"type\":\"number\"}"), 1);
    ck_assert_int_eq(valid("\"x\"", "{\"type\":[\"integer\",\"string\"]}"), 1);
    ck_assert_int_eq(valid("null", "{\"type\":[\"integer\",\"string\"]}"), 0);
    ck_assert_int_eq(valid("null", "{\"type\":\"null\"}"), 1);
    ck_assert_int_eq(valid("true", "{\"type\":\"boolean\"}"), 1);
    ck_assert_int_eq(valid("[]", "{\"type\":\"object\"}"), 0);
    ck_assert_int_eq(valid("1", "true"), 1);
    ck_assert_int_eq(valid("1", "false"), 0);
    ck_assert_int_eq(valid("not json", "{}"), 0);
    ck_assert_int_eq(valid("", "{}"), 0);
    ck_assert_int_eq(valid("{\"a\":1} trailing", "{}"), 0);
    ck_assert_int_eq(valid("\"\xff\"", "{}"), 0); /* invalid UTF-8 is not JSON */
}
END_TEST

START_TEST(json_schema_fence)
{
    const char *s = "{\"type\":\"object\",\"required\":[\"a\"]}";
    ck_assert_int_eq(valid("```json\n{\"a\": 1}\n```", s), 1);
    ck_assert_int_eq(valid("Here it is:\n```\n{\"a\": 1}\n```\nDone.", s), 1);
    ck_assert_int_eq(valid("```json\n{\"b\": 1}\n```", s), 0);
    ck_assert_int_eq(valid("```json\n{\"a\": 1}", s), 0);   /* unclosed */
    ck_assert_int_eq(valid("```json {\"a\": 1}```", s), 0); /* no newline after the info */
}
END_TEST

START_TEST(json_schema_keywords)
{
    const char *person = "{\"type\":\"object\",\"properties\":{"
                         "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":5},"
                         "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\"]},"
                         "\"minItems\":1,\"maxItems\":2},"
                         "\"kind\":{\"const\":\"person\"},"
                         "\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]{5}$\"}},"
                         "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    char err[256];
    int score;
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30}", person), 1);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"tags\":[\"x\",\"y\"],\"kind\":"
                           "\"person\",\"zip\":\"12345\"}",
                           person),
                     1);
    ck_assert_int_eq(valid("{\"name\":\"Ann\"}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"\",\"age\":30}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Annabel\",\"age\":30}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Zoë\",\"age\":30}", person), 1); /* 3 characters */
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":-1}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":151}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"tags\":[]}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"tags\":[\"x\",\"x\",\"x\"]}", person),
                     0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"tags\":[\"z\"]}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"kind\":\"cat\"}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"zip\":\"1234\"}", person), 0);
    ck_assert_int_eq(valid("{\"name\":\"Ann\",\"age\":30,\"extra\":1}", person), 0);
    /* the first failure is named with its path */
    ck_assert_int_eq(ah_score_json_schema("{\"name\":\"Ann\",\"age\":30,\"tags\":[\"x\",1]}",
                                          person, &score, err, sizeof err),
                     AH_E_OK);
    ck_assert_int_eq(score, 0);
    ck_assert_str_eq(err, "$.tags[1]: not one of enum");
    ck_assert_int_eq(ah_score_json_schema("{}", person, &score, err, sizeof err), AH_E_OK);
    ck_assert_str_eq(err, "$: missing required property \"name\"");

    ck_assert_int_eq(valid("1", "{\"enum\":[1.0]}"), 1); /* numbers compare by value */
    ck_assert_int_eq(valid("3", "{\"exclusiveMinimum\":3}"), 0);
    ck_assert_int_eq(valid("4", "{\"exclusiveMaximum\":4.5}"), 1);
    ck_assert_int_eq(valid("\"abc\"", "{\"minimum\":5}"), 1); /* numeric keywords skip strings */
    ck_assert_int_eq(valid("{\"x\":1}", "{\"title\":\"t\",\"description\":\"d\"}"), 1);
}
END_TEST

START_TEST(json_schema_combinators)
{
    const char *any = "{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}";
    ck_assert_int_eq(valid("\"s\"", any), 1);
    ck_assert_int_eq(valid("2", any), 1);
    ck_assert_int_eq(valid("2.5", any), 0);
    const char *one = "{\"oneOf\":[{\"type\":\"number\"},{\"type\":\"integer\"}]}";
    ck_assert_int_eq(valid("2.5", one), 1);
    ck_assert_int_eq(valid("2", one), 0); /* both match */
    ck_assert_int_eq(valid("\"s\"", one), 0);
    const char *all = "{\"allOf\":[{\"minimum\":1},{\"maximum\":3}]}";
    ck_assert_int_eq(valid("2", all), 1);
    ck_assert_int_eq(valid("4", all), 0);
    ck_assert_int_eq(valid("4", "{\"not\":{\"maximum\":3}}"), 1);
    ck_assert_int_eq(valid("2", "{\"not\":{\"maximum\":3}}"), 0);
}
END_TEST

START_TEST(json_schema_bad)
{
    char err[256];
    int score = -1;
    ck_assert_int_eq(schema_rc("{not json", err, sizeof err), AH_E_PARSE);
    ck_assert_int_eq(schema_rc("", err, sizeof err), AH_E_PARSE);
    ck_assert_int_eq(schema_rc("42", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"type\":\"float\"}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"type\":[]}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"required\":\"a\"}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"minLength\":-1}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"minimum\":\"1\"}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"enum\":[]}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"anyOf\":[]}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"anyOf\":[3]}", err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(schema_rc("{\"pattern\":\"(\"}", err, sizeof err), AH_E_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "pattern"));
    ck_assert_int_eq(schema_rc("{\"pattern\":\"(a)\\\\1\"}", err, sizeof err), AH_E_INVAL);
    /* unsupported keywords are reported, even where the answer never goes */
    ck_assert_int_eq(schema_rc("{\"$ref\":\"#/x\"}", err, sizeof err), AH_E_UNSUPPORTED);
    ck_assert_str_eq(err, "#: keyword \"$ref\" is not supported");
    ck_assert_int_eq(
        schema_rc("{\"properties\":{\"deep\":{\"format\":\"email\"}}}", err, sizeof err),
        AH_E_UNSUPPORTED);
    ck_assert_str_eq(err, "#/properties/deep: keyword \"format\" is not supported");
    ck_assert_int_eq(schema_rc("{\"additionalProperties\":{}}", err, sizeof err), AH_E_UNSUPPORTED);
    ck_assert_int_eq(schema_rc("{\"items\":[{}]}", err, sizeof err), AH_E_UNSUPPORTED);
    ck_assert_int_eq(schema_rc("{\"uniqueItems\":true}", err, sizeof err), AH_E_UNSUPPORTED);
    ck_assert_int_eq(ah_score_json_schema(NULL, "{}", &score, err, sizeof err), AH_E_INVAL);
    ck_assert_int_eq(ah_score_json_schema("{}", NULL, &score, NULL, 0), AH_E_INVAL);

    /* nesting: AH_SCORE_MAX_SCHEMA_DEPTH levels pass, one more does not */
    char deep[2048] = "";
    size_t off = 0;
    for (int i = 0; i < AH_SCORE_MAX_SCHEMA_DEPTH; i++)
        off += (size_t)snprintf(deep + off, sizeof deep - off, "{\"items\":");
    off += (size_t)snprintf(deep + off, sizeof deep - off, "{}");
    for (int i = 0; i < AH_SCORE_MAX_SCHEMA_DEPTH; i++)
        off += (size_t)snprintf(deep + off, sizeof deep - off, "}");
    ck_assert_int_eq(ah_score_json_schema("[[[1]]]", deep, &score, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(score, 1);
    char deeper[2100];
    snprintf(deeper, sizeof deeper, "{\"not\":%s}", deep);
    ck_assert_int_eq(schema_rc(deeper, err, sizeof err), AH_E_INVAL);
    ck_assert_ptr_nonnull(strstr(err, "deeper"));

    /* a large answer within the limit */
    char *big = ah_malloc(600000);
    size_t n = 0;
    big[n++] = '[';
    for (int i = 0; i < 100000; i++)
        n += (size_t)snprintf(big + n, 600000 - n, "%s1", i ? "," : "");
    big[n++] = ']';
    big[n] = '\0';
    ck_assert_int_eq(valid(big, "{\"type\":\"array\",\"items\":{\"const\":1}}"), 1);
    ah_free(big);
}
END_TEST

static int pick(const char *s, int n)
{
    return ah_score_choice(s, n, NULL);
}

START_TEST(choice_phrasings)
{
    char letter = 'x';
    ck_assert_int_eq(ah_score_choice("The answer is (B)", 4, &letter), 1);
    ck_assert_int_eq(letter, 'B');
    ck_assert_int_eq(pick("Answer: C", 4), 2);
    ck_assert_int_eq(pick("answer: c", 4), 2);
    ck_assert_int_eq(pick("**D**", 4), 3);
    ck_assert_int_eq(pick("B) because the others are wrong", 4), 1);
    ck_assert_int_eq(pick("B because the others are wrong", 4), 1);
    ck_assert_int_eq(pick("C", 4), 2);
    ck_assert_int_eq(pick("  (A)\n", 4), 0);
    ck_assert_int_eq(pick("A.", 4), 0);
    ck_assert_int_eq(pick("[D]", 4), 3);
    ck_assert_int_eq(pick("I think it's A.", 4), 0);
    ck_assert_int_eq(pick("The correct answer is **B**.", 4), 1);
    ck_assert_int_eq(pick("Final answer: (D) Paris", 4), 3);
    ck_assert_int_eq(pick("The answer would be C since ...", 4), 2);
    ck_assert_int_eq(pick("Let me think. Option A is wrong. The answer is B.", 4), 1);
    ck_assert_int_eq(pick("Looking at the options, B seems right.", 4), 1);
    ck_assert_int_eq(pick("C. Paris is the capital.", 4), 2);
    ck_assert_int_eq(pick("ANSWER IS D", 4), 3);
}
END_TEST

START_TEST(choice_traps)
{
    char letter = 'x';
    /* the article is no choice: the one claim left is B */
    ck_assert_int_eq(pick("A lot of people think B", 4), 1);
    /* an explicit answer beats letters elsewhere */
    ck_assert_int_eq(pick("A lot of people think B, but the answer is C", 4), 2);
    ck_assert_int_eq(pick("Both A and B are plausible", 4), -1);
    ck_assert_int_eq(pick("A or B", 4), -1);
    ck_assert_int_eq(pick("The answer is A. No wait, the answer is B.", 4), -1);
    ck_assert_int_eq(pick("The answer is not A, it is B", 4), -1);
    ck_assert_int_eq(ah_score_choice("I don't know", 4, &letter), -1);
    ck_assert_int_eq(letter, 0);
    ck_assert_int_eq(pick("the answer is a dog", 4), -1);
    ck_assert_int_eq(pick("The answers are many", 4), -1);
    ck_assert_int_eq(pick("E", 4), -1);               /* out of range */
    ck_assert_int_eq(pick("The answer is E", 4), -1); /* out of range */
    ck_assert_int_eq(pick("The answer is E", 5), 4);
    ck_assert_int_eq(pick("I'm sure: D", 4), 3);
    ck_assert_int_eq(pick("Dogs and Cats", 4), -1);
    ck_assert_int_eq(pick("J. R. R. Tolkien, B", 4), 1); /* initials are no claims */
    ck_assert_int_eq(pick("U.S.A.", 26), -1);
    ck_assert_int_eq(pick("", 4), -1);
    ck_assert_int_eq(pick(NULL, 4), -1);
    ck_assert_int_eq(pick("B", 1), -1);
    ck_assert_int_eq(pick("B", 27), -1);
    ck_assert_int_eq(pick("\xff\xfe B \xc3", 4), 1);
    ck_assert_int_eq(pick("\xc3\x89 B", 4), 1); /* É is a letter, not a choice */

    ck_assert_int_eq(ah_score_choice_match("The answer is (B)", 4, 'B'), 1);
    ck_assert_int_eq(ah_score_choice_match("The answer is (B)", 4, 'b'), 1);
    ck_assert_int_eq(ah_score_choice_match("The answer is (B)", 4, 'C'), 0);
    ck_assert_int_eq(ah_score_choice_match("A or B", 4, 'A'), 0);
    ck_assert_int_eq(ah_score_choice_match("E", 4, 'E'), 0);
    ck_assert_int_eq(ah_score_choice_match("B", 4, '?'), 0);
}
END_TEST

START_TEST(judge_prompt)
{
    ah_buf_t b;
    ah_buf_init(&b, AH_JUDGE_MAX_PROMPT);
    ck_assert_int_eq(ah_judge_prompt(NULL, 0, "What is 2+2?", "4", "4", &b), AH_E_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "<question>\nWhat is 2+2?\n</question>"));
    ck_assert_ptr_nonnull(strstr(b.data, "<answer>\n4\n</answer>"));
    ck_assert_ptr_nonnull(strstr(b.data, "<reference>\n4\n</reference>"));
    ck_assert_ptr_nonnull(strstr(b.data, "{\"relevance\": <1-10>, \"accuracy\": <1-10>, "
                                         "\"completeness\": <1-10>, \"conciseness\": <1-10>, "
                                         "\"reason\": \"<one sentence>\"}"));
    ah_buf_reset(&b);
    const char *crit[] = {"helpfulness", "safety"};
    ck_assert_int_eq(ah_judge_prompt(crit, 2, "q", "a", NULL, &b), AH_E_OK);
    ck_assert_ptr_null(strstr(b.data, "<reference>"));
    ck_assert_ptr_nonnull(strstr(b.data, "{\"helpfulness\": <1-10>, \"safety\": <1-10>, "));
    ah_buf_reset(&b);
    const char *bad[] = {"Bad Name"};
    ck_assert_int_eq(ah_judge_prompt(bad, 1, "q", "a", NULL, &b), AH_E_INVAL);
    const char *quote[] = {"x\"y"};
    ck_assert_int_eq(ah_judge_prompt(quote, 1, "q", "a", NULL, &b), AH_E_INVAL);
    const char *reason[] = {"reason"};
    ck_assert_int_eq(ah_judge_prompt(reason, 1, "q", "a", NULL, &b), AH_E_INVAL);
    ck_assert_int_eq(ah_judge_prompt(crit, 0, "q", "a", NULL, &b), AH_E_INVAL);
    ck_assert_int_eq(ah_judge_prompt(crit, AH_JUDGE_MAX_CRITERIA + 1, "q", "a", NULL, &b),
                     AH_E_INVAL);
    ck_assert_int_eq(ah_judge_prompt(NULL, 0, NULL, "a", NULL, &b), AH_E_INVAL);
    ck_assert_int_eq(ah_judge_prompt(NULL, 0, "q", NULL, NULL, &b), AH_E_INVAL);
    ck_assert_uint_eq(b.len, 0); /* a failure leaves out as it was */
    ah_buf_free(&b);

    ah_buf_init(&b, 64); /* too small: TOOBIG, nothing left behind */
    ck_assert_int_eq(ah_judge_prompt(NULL, 0, "q", "a", NULL, &b), AH_E_TOOBIG);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_int_eq(ah_judge_pairwise_prompt("q", "a", "b", &b), AH_E_TOOBIG);
    ck_assert_uint_eq(b.len, 0);
    ah_buf_free(&b);

    ah_buf_init(&b, AH_JUDGE_MAX_PROMPT);
    ck_assert_int_eq(ah_judge_pairwise_prompt("q", "first", "second", &b), AH_E_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "<answer_a>\nfirst\n</answer_a>"));
    ck_assert_ptr_nonnull(strstr(b.data, "<answer_b>\nsecond\n</answer_b>"));
    ck_assert_ptr_nonnull(strstr(b.data, "\"winner\""));
    ah_buf_free(&b);
}
END_TEST

START_TEST(judge_parse)
{
    int s[AH_JUDGE_MAX_CRITERIA];
    char why[16];
    const char *ok = "{\"relevance\":9,\"accuracy\":10,\"completeness\":1,\"conciseness\":5,"
                     "\"reason\":\"correct but a bit long\"}";
    ck_assert_int_eq(ah_judge_parse(ok, NULL, 0, s, why, sizeof why), AH_E_OK);
    ck_assert_int_eq(s[0], 9);
    ck_assert_int_eq(s[1], 10);
    ck_assert_int_eq(s[2], 1);
    ck_assert_int_eq(s[3], 5);
    ck_assert_str_eq(why, "correct but a b"); /* truncated to its buffer */

    char text[512];
    snprintf(text, sizeof text, "```json\n%s\n```", ok);
    ck_assert_int_eq(ah_judge_parse(text, NULL, 0, s, NULL, 0), AH_E_OK);
    snprintf(text, sizeof text, "Sure {see below}! Here is my grade: %s Hope it helps {", ok);
    ck_assert_int_eq(ah_judge_parse(text, NULL, 0, s, why, sizeof why), AH_E_OK);
    ck_assert_int_eq(s[1], 10);
    ck_assert_int_eq(ah_judge_parse("{\"relevance\":9,\"accuracy\":10,\"completeness\":1,"
                                    "\"conciseness\":5}",
                                    NULL, 0, s, why, sizeof why),
                     AH_E_OK); /* no reason: allowed */
    ck_assert_str_eq(why, "");
    const char *crit[] = {"safety"};
    ck_assert_int_eq(ah_judge_parse("{\"safety\": 3}", crit, 1, s, NULL, 0), AH_E_OK);
    ck_assert_int_eq(s[0], 3);

    /* garbage is a failed judgment */
    const char *bad[] = {
        "",
        "I would rate this 8/10.",
        "{\"relevance\":9,\"accuracy\":10,\"completeness\":1}",
        "{\"relevance\":9,\"accuracy\":11,\"completeness\":1,\"conciseness\":5}",
        "{\"relevance\":0,\"accuracy\":10,\"completeness\":1,\"conciseness\":5}",
        "{\"relevance\":9.5,\"accuracy\":10,\"completeness\":1,\"conciseness\":5}",
        "{\"relevance\":\"9\",\"accuracy\":10,\"completeness\":1,\"conciseness\":5}",
        "{\"relevance\":-3,\"accuracy\":10,\"completeness\":1,\"conciseness\":5}",
        "{\"relevance\":9,\"accuracy\":10,\"completeness\":1,\"conciseness\":5,\"reason\":7}",
        "[9,10,1,5]",
        "{\"relevance\":9,\"accuracy\":10,",
        "{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",
        "\xff\xfe{\"relevance\":\"\xff\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(ah_judge_parse(bad[i], NULL, 0, s, why, sizeof why) == AH_E_PARSE,
                      "accepted %s", bad[i]);
    ck_assert_int_eq(ah_judge_parse(NULL, NULL, 0, s, why, sizeof why), AH_E_PARSE);
    ck_assert_int_eq(ah_judge_parse(ok, NULL, 0, NULL, why, sizeof why), AH_E_PARSE);
    ck_assert_int_eq(ah_judge_parse("{\"safety\": 3}", crit, 0, s, NULL, 0), AH_E_PARSE);
}
END_TEST

START_TEST(judge_pairwise)
{
    ck_assert_int_eq(ah_judge_pairwise_parse("{\"winner\":\"A\",\"reason\":\"x\"}"), AH_JUDGE_A);
    ck_assert_int_eq(ah_judge_pairwise_parse("```json\n{\"winner\": \"b\"}\n```"), AH_JUDGE_B);
    ck_assert_int_eq(ah_judge_pairwise_parse("My verdict: {\"winner\": \"tie\"}."), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_parse(" B.\n"), AH_JUDGE_B);
    ck_assert_int_eq(ah_judge_pairwise_parse("Tie"), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_parse("A is better"), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse("{\"winner\": \"C\"}"), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse("{\"winner\": 1}"), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse("{\"winner\": \"A\\u0000\"}"), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse(""), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse(NULL), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_parse("\xff"), AH_JUDGE_FAIL);

    /* the swapped order's A is the first order's B */
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_A, AH_JUDGE_B), AH_JUDGE_A);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_B, AH_JUDGE_A), AH_JUDGE_B);
    /* always the first position: position bias, cancelled to a tie */
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_A, AH_JUDGE_A), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_B, AH_JUDGE_B), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_A, AH_JUDGE_TIE), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_TIE, AH_JUDGE_TIE), AH_JUDGE_TIE);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_FAIL, AH_JUDGE_B), AH_JUDGE_FAIL);
    ck_assert_int_eq(ah_judge_pairwise_combine(AH_JUDGE_A, AH_JUDGE_FAIL), AH_JUDGE_FAIL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("score");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, exact);
    tcase_add_test(tc, normalize);
    tcase_add_test(tc, f1);
    tcase_add_test(tc, regex);
    tcase_add_test(tc, json_schema_types);
    tcase_add_test(tc, json_schema_fence);
    tcase_add_test(tc, json_schema_keywords);
    tcase_add_test(tc, json_schema_combinators);
    tcase_add_test(tc, json_schema_bad);
    tcase_add_test(tc, choice_phrasings);
    tcase_add_test(tc, choice_traps);
    tcase_add_test(tc, judge_prompt);
    tcase_add_test(tc, judge_parse);
    tcase_add_test(tc, judge_pairwise);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
