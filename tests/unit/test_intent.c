/* test_intent.c - the classifier of a labelled history that decides semantic-cache
 * hits (src/cache/intent.c): training, prediction, the CSV file as untrusted
 * input, and its bounds. */
#include <check.h>

#include "check_run.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/intent.h"
#include "core/alloc.h"

#define ERR_BYTES 512
#define PATH_BYTES 256

/* Three intents of a bank's support history, a few paraphrases each. */
static const char *const history[][2] = {
    {"My card still hasn't arrived", "card_arrival"},
    {"When will my new card arrive?", "card_arrival"},
    {"I am still waiting on my card", "card_arrival"},
    {"How long does a card take to be delivered?", "card_arrival"},
    {"The card I ordered has not come yet", "card_arrival"},
    {"Where is my card? It was sent two weeks ago", "card_arrival"},
    {"Can I top up with cash?", "top_up_by_cash"},
    {"How do I add cash to my account?", "top_up_by_cash"},
    {"Is it possible to deposit cash to top up?", "top_up_by_cash"},
    {"Where can I top up using cash", "top_up_by_cash"},
    {"I want to put cash into my balance", "top_up_by_cash"},
    {"Cash top-up, how does it work?", "top_up_by_cash"},
    {"I forgot my passcode", "passcode_forgotten"},
    {"How do I reset my passcode?", "passcode_forgotten"},
    {"I can't remember my passcode, help", "passcode_forgotten"},
    {"Lost my passcode, what now?", "passcode_forgotten"},
    {"I need a new passcode because I forgot mine", "passcode_forgotten"},
    {"Passcode reset please", "passcode_forgotten"},
};
#define NHIST (sizeof history / sizeof history[0])

static ah_intent_t *train_history(void)
{
    const char *texts[NHIST], *labels[NHIST];
    for (size_t i = 0; i < NHIST; i++) {
        texts[i] = history[i][0];
        labels[i] = history[i][1];
    }
    char err[ERR_BYTES];
    ah_intent_t *m = ah_intent_train(texts, NULL, labels, NHIST, NULL, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    return m;
}

static const char *predicted(const ah_intent_t *m, const char *text, float *conf)
{
    return ah_intent_label(m, ah_intent_predict(m, text, strlen(text), NULL, conf));
}

START_TEST(train_and_predict)
{
    ah_intent_t *m = train_history();
    ck_assert_int_eq(ah_intent_classes(m), 3);
    ck_assert_uint_eq(ah_intent_rows(m), NHIST);
    float conf;
    ck_assert_str_eq(predicted(m, "my card has not arrived yet", &conf), "card_arrival");
    ck_assert_float_gt(conf, 0.5f);
    ck_assert_str_eq(predicted(m, "can I use cash to top up", &conf), "top_up_by_cash");
    ck_assert_float_gt(conf, 0.5f);
    /* a typo still shares the word's character n-grams */
    ck_assert_str_eq(predicted(m, "i forgott my pascode", &conf), "passcode_forgotten");
    /* probabilities: one per label, summing to 1 */
    float p[3], sum = 0;
    int c = ah_intent_predict(m, "when does the card arrive", 25, p, &conf);
    for (int i = 0; i < 3; i++)
        sum += p[i];
    ck_assert_float_eq_tol(sum, 1.0f, 1e-4f);
    ck_assert_float_eq(p[c], conf);
    /* nothing to featurise */
    ck_assert_int_eq(ah_intent_predict(m, "", 0, NULL, &conf), -1);
    ck_assert_float_eq(conf, 0);
    ck_assert_int_eq(ah_intent_predict(m, " ?! ... ", 8, p, &conf), -1);
    ck_assert_ptr_null(ah_intent_label(m, -1));
    ck_assert_ptr_null(ah_intent_label(m, 3));
    ah_intent_free(m);
}
END_TEST

START_TEST(deterministic)
{
    ah_intent_t *a = train_history(), *b = train_history();
    float pa[3], pb[3], ca, cb;
    const char *q = "I would like to top up with cash";
    ck_assert_int_eq(ah_intent_predict(a, q, strlen(q), pa, &ca),
                     ah_intent_predict(b, q, strlen(q), pb, &cb));
    ck_assert(memcmp(pa, pb, sizeof pa) == 0);
    ah_intent_free(a);
    ah_intent_free(b);
}
END_TEST

START_TEST(words_and_apostrophes)
{
    /* "can't" and "can’t" (U+2019) are one word, case does not matter */
    const char *texts[] = {"I CAN'T log in", "can’t log in", "log out now", "Log out please"};
    const char *labels[] = {"in", "in", "out", "out"};
    char err[ERR_BYTES];
    ah_intent_t *m = ah_intent_train(texts, NULL, labels, 4, NULL, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    float ca, cb;
    ck_assert_str_eq(predicted(m, "i can't log in", &ca), "in");
    ck_assert_str_eq(predicted(m, "I CAN’T LOG IN", &cb), "in");
    ck_assert_float_eq_tol(ca, cb, 1e-6f);
    /* an apostrophe that joins nothing is a separator, and the words after it count */
    float pa[2], pb[2];
    ah_intent_predict(m, "cant log in", 11, pa, &ca);
    const char *odd = "’can’t’ log ' in’";
    ah_intent_predict(m, odd, strlen(odd), pb, &cb);
    ck_assert(memcmp(pa, pb, sizeof pa) == 0);
    ah_intent_free(m);
}
END_TEST

START_TEST(long_and_odd_input)
{
    ah_intent_t *m = train_history();
    /* past AH_INTENT_MAX_TEXT, one huge word, bytes of every value */
    size_t n = 200000;
    char *big = ah_malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)("card arrived "[i % 13]);
    float conf;
    ck_assert_int_ge(ah_intent_predict(m, big, n, NULL, &conf), 0);
    memset(big, 'x', n);
    ck_assert_int_ge(ah_intent_predict(m, big, n, NULL, &conf), 0);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i * 131);
    ah_intent_predict(m, big, n, NULL, &conf);
    ah_free(big);
    ah_intent_free(m);
}
END_TEST

START_TEST(bad_training_input)
{
    char err[ERR_BYTES];
    const char *texts[] = {"a b", "c d"};
    const char *one[] = {"x", "x"};
    ck_assert_ptr_null(ah_intent_train(texts, NULL, one, 2, NULL, err, sizeof err));
    ck_assert_str_eq(err, "fewer than two labels");
    ck_assert_ptr_null(ah_intent_train(texts, NULL, one, 0, NULL, err, sizeof err));
    ck_assert_str_eq(err, "no rows");
    ah_intent_opts_t o = ah_intent_defaults;
    o.bits = 40;
    const char *two[] = {"x", "y"};
    ck_assert_ptr_null(ah_intent_train(texts, NULL, two, 2, &o, err, sizeof err));
    ck_assert_str_eq(err, "bad training options");
    /* a history too large to train at start is refused, not trained for hours */
    size_t n = AH_INTENT_MAX_WORK / 1000 + 1;
    const char **many = ah_malloc(n * sizeof *many), **lab = ah_malloc(n * sizeof *lab);
    char(*names)[8] = ah_malloc(1000 * sizeof *names);
    for (size_t i = 0; i < 1000; i++)
        snprintf(names[i], sizeof names[i], "l%zu", i);
    for (size_t i = 0; i < n; i++) {
        many[i] = "some text";
        lab[i] = names[i % 1000];
    }
    ck_assert_ptr_null(ah_intent_train(many, NULL, lab, n, NULL, err, sizeof err));
    ck_assert_msg(strstr(err, "20001 rows x 1000 labels is more than"), "%s", err);
    ah_free(many);
    ah_free(lab);
    ah_free(names);
}
END_TEST

static void write_file(char *path, const char *text)
{
    snprintf(path, PATH_BYTES, "/tmp/ahorro-intent-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
}

/* Loads text as a CSV file: the model, or NULL with the error in err. */
static ah_intent_t *load_text(const char *text, char *err)
{
    char path[PATH_BYTES];
    write_file(path, text);
    ah_intent_t *m = ah_intent_load_csv(path, NULL, err, ERR_BYTES);
    /* the error names the file: show it without the random part */
    if (!m && strncmp(err, path, strlen(path)) == 0)
        memmove(err, err + strlen(path), strlen(err + strlen(path)) + 1);
    unlink(path);
    return m;
}

START_TEST(csv_file)
{
    char err[ERR_BYTES];
    ah_intent_t *m = load_text("text,category\n"
                               "\"My card, the new one, hasn't arrived\",card_arrival\n"
                               "When will my card arrive?,card_arrival\n"
                               "\r\n"
                               "Can I top up with cash?,top_up_by_cash\r\n"
                               "\"Top up by \"\"cash\"\"\",top_up_by_cash\n",
                               err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_int_eq(ah_intent_classes(m), 2);
    ck_assert_uint_eq(ah_intent_rows(m), 4);
    float conf;
    ck_assert_str_eq(predicted(m, "my card arrive", &conf), "card_arrival");
    ah_intent_free(m);
    /* columns found by name, in any order, with other columns around */
    m = load_text("id,Intent,Question\n1,a,how to cash\n2,b,card arrival\n", err);
    ck_assert_msg(m != NULL, "%s", err);
    ck_assert_str_eq(predicted(m, "card arrival", &conf), "b");
    ah_intent_free(m);
}
END_TEST

START_TEST(csv_errors)
{
    char err[ERR_BYTES];
    ck_assert_ptr_null(load_text("", err));
    ck_assert_str_eq(err, ":1: empty file");
    ck_assert_ptr_null(load_text("text,label\n", err));
    ck_assert_str_eq(err, ": no rows");
    ck_assert_ptr_null(load_text("text,label\na,x\nb,x\n", err));
    ck_assert_str_eq(err, ": fewer than two labels");
    ck_assert_ptr_null(load_text("text,label\na,x\nb\n", err));
    ck_assert_str_eq(err,
                     ":3: expected a text and a label (1 to 256 bytes, no control characters)");
    ck_assert_ptr_null(load_text("text,label\na,x\nb,\"y\nz\"\n", err));
    ck_assert_str_eq(err,
                     ":3: expected a text and a label (1 to 256 bytes, no control characters)");
    ck_assert_ptr_null(load_text("text,label\na,x\n\"b,y\n", err));
    ck_assert_str_eq(err, ":3: malformed CSV record");
    ck_assert_ptr_null(load_text("only\n", err));
    ck_assert_str_eq(err, ":1: expected a header with a text and a label column");
    ck_assert_ptr_null(ah_intent_load_csv("/nonexistent/intents.csv", NULL, err, sizeof err));
    ck_assert_str_eq(err, "/nonexistent/intents.csv: cannot open");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("intent");
    TCase *tc = tcase_create("intent");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, train_and_predict);
    tcase_add_test(tc, deterministic);
    tcase_add_test(tc, words_and_apostrophes);
    tcase_add_test(tc, long_and_odd_input);
    tcase_add_test(tc, bad_training_input);
    tcase_add_test(tc, csv_file);
    tcase_add_test(tc, csv_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
