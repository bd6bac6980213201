/* test_learned.c - the learned router (src/route/learned.c) on tiny synthetic sets:
 * training, save, load, scoring, corrupt model files refused; the labelled-data
 * reader (src/route/labels.c: CSV with quoted multi-line fields, JSONL, exclusion);
 * and the cost-quality curve (src/route/curve.c). */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "route/curve.h"
#include "route/labels.h"
#include "route/learned.h"

#define DIM 4
#define NSYN 60
#define ERR_BYTES 512
#define PATH_BYTES 256
#define DIR_BYTES 64
#define TOL 1e-9

static char tmpdir[DIR_BYTES];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ahorro-test-learned-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void tmp_path(char *buf, const char *name)
{
    snprintf(buf, PATH_BYTES, "%s/%s", tmpdir, name);
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = ah_malloc((size_t)l);
    ck_assert_uint_eq(fread(b, 1, (size_t)l, f), (size_t)l);
    fclose(f);
    *n = (size_t)l;
    return b;
}

/* Two clusters of prompts, told apart by text (for the complexity features)
 * and by a hand-made embedding: "hard" ones the cheap model fails and the
 * strong one answers, "easy" ones both answer. */
static const char *const hard_text =
    "Prove step by step that the integral of x^2 from 0 to 3 equals 9, then write a Python "
    "function that computes it: ```def f(x): return x**2```";
static const char *const easy_text = "hi there";

static void synth(float *rows, unsigned char *c, unsigned char *s, int dim)
{
    size_t stride = ah_learned_row_size(dim);
    for (int i = 0; i < NSYN; i++) {
        int hard = i % 2;
        float *r = rows + (size_t)i * stride;
        ah_learned_row_text(hard ? hard_text : easy_text, strlen(hard ? hard_text : easy_text),
                            NULL, dim, r);
        if (dim) { /* unit vectors near axis 0 (easy) or axis 1 (hard) */
            float a = (float)(i % 7) * 0.02f;
            r[0] = hard ? a : 1;
            r[1] = hard ? 1 : a;
            r[2] = r[3] = 0;
            float nrm = sqrtf(r[0] * r[0] + r[1] * r[1]);
            r[0] /= nrm;
            r[1] /= nrm;
        }
        /* Mostly as the cluster says, with a little noise so that logreg is bounded. */
        c[i] = hard ? (i % 10 == 1) : 1;
        s[i] = hard ? 1 : (i % 10 != 4);
    }
}

START_TEST(logreg_features_only)
{
    float rows[NSYN * AH_LEARNED_NCX];
    unsigned char c[NSYN], s[NSYN];
    char err[ERR_BYTES], path[PATH_BYTES];
    synth(rows, c, s, 0);
    ah_learned_t *m = ah_learned_train(rows, NSYN, 0, c, s, &ah_learned_defaults, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    double h = ah_learned_score_text(m, hard_text, strlen(hard_text), NULL);
    double e = ah_learned_score_text(m, easy_text, strlen(easy_text), NULL);
    ck_assert_msg(h > e + 0.2, "hard %f easy %f", h, e);
    ck_assert(h >= 0 && h <= 1 && e >= 0 && e <= 1);
    make_tmpdir();
    tmp_path(path, "m.bin");
    ck_assert_int_eq(ah_learned_save(m, path, err, sizeof err), AH_E_OK);
    ah_learned_t *l = ah_learned_load(path, err, sizeof err);
    ck_assert_msg(l != NULL, "%s", err);
    ck_assert_double_eq_tol(ah_learned_score_text(l, hard_text, strlen(hard_text), NULL), h, TOL);
    /* A chat body scores as its user text does. */
    json_t *body = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "messages", "role", "system", "content",
                             "be brief", "role", "user", "content", hard_text);
    ck_assert_double_eq_tol(ah_learned_score(l, body, NULL), h, 1e-6);
    json_decref(body);
    char desc[128];
    ah_learned_describe(l, desc, sizeof desc);
    ck_assert_ptr_nonnull(strstr(desc, "logreg"));
    ah_learned_free(m);
    ah_learned_free(l);
    unlink(path);
    rmdir(tmpdir);
}
END_TEST

START_TEST(knn_and_logreg_with_embedding)
{
    size_t stride = ah_learned_row_size(DIM);
    float rows[NSYN * (DIM + AH_LEARNED_NCX)];
    unsigned char c[NSYN], s[NSYN];
    char err[ERR_BYTES], path[PATH_BYTES];
    synth(rows, c, s, DIM);
    ah_learned_opts_t ko = ah_learned_defaults, lo = ah_learned_defaults;
    ko.kind = AH_LEARNED_KNN;
    ko.k = 5;
    ah_learned_t *k = ah_learned_train(rows, NSYN, DIM, c, s, &ko, err, sizeof err);
    ah_learned_t *l = ah_learned_train(rows, NSYN, DIM, c, s, &lo, err, sizeof err);
    ck_assert_msg(k && l, "%s", err);
    ck_assert_int_eq(ah_learned_dim(k), DIM);
    float q[DIM + AH_LEARNED_NCX];
    memcpy(q, rows + 1 * stride, sizeof q); /* a hard one */
    double kh = ah_learned_score_row(k, q), lh = ah_learned_score_row(l, q);
    memcpy(q, rows, sizeof q); /* an easy one */
    double ke = ah_learned_score_row(k, q), le = ah_learned_score_row(l, q);
    ck_assert_msg(kh > ke + 0.3, "knn hard %f easy %f", kh, ke);
    ck_assert_msg(lh > le + 0.2, "logreg hard %f easy %f", lh, le);
    /* Several k at once agree with the model's own k. */
    int ks[2] = {1, 5};
    double two[2];
    ah_learned_score_row_ks(k, q, ks, 2, two);
    ck_assert_double_eq_tol(two[1], ke, TOL);
    /* Without an embedder: the complexity-feature head, still ordered. */
    double nh = ah_learned_score_text(k, hard_text, strlen(hard_text), NULL);
    double ne = ah_learned_score_text(k, easy_text, strlen(easy_text), NULL);
    ck_assert(nh > ne);
    /* Round trip. */
    make_tmpdir();
    tmp_path(path, "knn.bin");
    ck_assert_int_eq(ah_learned_save(k, path, err, sizeof err), AH_E_OK);
    ah_learned_t *k2 = ah_learned_load(path, err, sizeof err);
    ck_assert_msg(k2 != NULL, "%s", err);
    ck_assert_double_eq_tol(ah_learned_score_row(k2, q), ke, TOL);
    ah_learned_free(k2);
    unlink(path);
    rmdir(tmpdir);
    ah_learned_free(k);
    ah_learned_free(l);
}
END_TEST

START_TEST(training_refuses_bad_input)
{
    float rows[NSYN * AH_LEARNED_NCX];
    unsigned char c[NSYN], s[NSYN];
    char err[ERR_BYTES];
    synth(rows, c, s, 0);
    ck_assert_ptr_null(ah_learned_train(rows, 0, 0, c, s, NULL, err, sizeof err));
    ah_learned_opts_t o = ah_learned_defaults;
    o.kind = AH_LEARNED_KNN; /* needs an embedding */
    ck_assert_ptr_null(ah_learned_train(rows, NSYN, 0, c, s, &o, err, sizeof err));
    o = ah_learned_defaults;
    o.l2 = -1;
    ck_assert_ptr_null(ah_learned_train(rows, NSYN, 0, c, s, &o, err, sizeof err));
    memset(c, 1, sizeof c); /* every target the same */
    memset(s, 1, sizeof s);
    ck_assert_ptr_null(ah_learned_train(rows, NSYN, 0, c, s, NULL, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "same target"));
}
END_TEST

START_TEST(corrupt_model_files_are_refused)
{
    size_t stride = ah_learned_row_size(DIM);
    float rows[NSYN * (DIM + AH_LEARNED_NCX)];
    unsigned char c[NSYN], s[NSYN];
    char err[ERR_BYTES], path[PATH_BYTES], bad[PATH_BYTES];
    (void)stride;
    synth(rows, c, s, DIM);
    ah_learned_opts_t ko = ah_learned_defaults;
    ko.kind = AH_LEARNED_KNN;
    ko.k = 3;
    ah_learned_t *m = ah_learned_train(rows, 8, DIM, c, s, &ko, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    make_tmpdir();
    tmp_path(path, "m.bin");
    tmp_path(bad, "bad.bin");
    ck_assert_int_eq(ah_learned_save(m, path, err, sizeof err), AH_E_OK);
    ah_learned_free(m);
    size_t n;
    unsigned char *b = read_all(path, &n), *x = ah_malloc(n);
    ck_assert_ptr_null(ah_learned_load("/nonexistent/model.bin", err, sizeof err));
    write_file(bad, "", 0);
    ck_assert_ptr_null(ah_learned_load(bad, err, sizeof err));
    write_file(bad, "{\"kind\": \"logreg\"}", 18);
    ck_assert_ptr_null(ah_learned_load(bad, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "not an ahorro router model"));
    /* Truncated at every length. */
    for (size_t l = 0; l < n; l++) {
        write_file(bad, b, l);
        ck_assert_ptr_null(ah_learned_load(bad, err, sizeof err));
    }
    /* Every byte flipped. */
    for (size_t i = 0; i < n; i++) {
        memcpy(x, b, n);
        x[i] ^= 0x5A;
        write_file(bad, x, n);
        ah_learned_t *l = ah_learned_load(bad, err, sizeof err);
        ck_assert_msg(l == NULL, "byte %zu flipped was accepted", i);
    }
    /* A huge example count with the size check as the only guard: the header
     * says 2^40 examples, the file is small. */
    memcpy(x, b, n);
    uint64_t huge = 1ull << 40;
    memcpy(x + 40, &huge, sizeof huge);
    write_file(bad, x, n);
    ck_assert_ptr_null(ah_learned_load(bad, err, sizeof err));
    /* A trailing byte. */
    unsigned char *y = ah_malloc(n + 1);
    memcpy(y, b, n);
    y[n] = 0;
    write_file(bad, y, n + 1);
    ck_assert_ptr_null(ah_learned_load(bad, err, sizeof err));
    /* The intact file still loads. */
    m = ah_learned_load(path, err, sizeof err);
    ck_assert_msg(m != NULL, "%s", err);
    ah_learned_free(m);
    ah_free(y);
    ah_free(x);
    ah_free(b);
    unlink(path);
    unlink(bad);
    rmdir(tmpdir);
}
END_TEST

START_TEST(csv_records)
{
    const char *in = "prompt,a,b\r\n\"line one\nline \"\"two\"\"\",True,False\nplain,,1";
    size_t n = strlen(in), pos = 0, nf, line = 1;
    char *scratch = ah_malloc(n);
    const char *f[8];
    size_t lens[8];
    ck_assert_int_eq(ah_csv_record(in, n, &pos, scratch, f, lens, 8, &nf, &line), AH_E_OK);
    ck_assert_uint_eq(nf, 3);
    ck_assert_uint_eq(lens[2], 1);
    ck_assert_int_eq(ah_csv_record(in, n, &pos, scratch, f, lens, 8, &nf, &line), AH_E_OK);
    ck_assert_uint_eq(nf, 3);
    ck_assert_uint_eq(lens[0], strlen("line one\nline \"two\""));
    ck_assert_int_eq(memcmp(f[0], "line one\nline \"two\"", lens[0]), 0);
    ck_assert_uint_eq(line, 4);
    ck_assert_int_eq(ah_csv_record(in, n, &pos, scratch, f, lens, 8, &nf, &line), AH_E_OK);
    ck_assert_uint_eq(nf, 3);
    ck_assert_uint_eq(lens[1], 0);
    ck_assert_int_eq(ah_csv_record(in, n, &pos, scratch, f, lens, 8, &nf, &line), AH_E_NOTFOUND);
    static const char *const bad[] = {"\"unterminated,1,2", "a\"b,1,2", "\"x\"y,1,2", "a\rb"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        pos = 0;
        ck_assert_int_eq(
            ah_csv_record(bad[i], strlen(bad[i]), &pos, scratch, f, lens, 8, &nf, NULL),
            AH_E_PARSE);
    }
    pos = 0;
    ck_assert_int_eq(ah_csv_record("a,b,c", 5, &pos, scratch, f, lens, 2, &nf, NULL), AH_E_TOOBIG);
    ah_free(scratch);
}
END_TEST

START_TEST(labels_from_files)
{
    char csv[PATH_BYTES], jsonl[PATH_BYTES], badf[PATH_BYTES], excl[PATH_BYTES], err[ERR_BYTES];
    make_tmpdir();
    tmp_path(csv, "mmlu_algebra.csv");
    tmp_path(jsonl, "feedback.jsonl");
    tmp_path(badf, "bad.csv");
    tmp_path(excl, "excl.jsonl");
    const char *c = "prompt,mixtral,gpt4\n\"What is 2+2?\nA. 3\nB. 4\nAnswer:\",True,True\n"
                    "\"Say \"\"hi\"\"\",False,True\n";
    write_file(csv, c, strlen(c));
    const char *j = "{\"prompt\":\"p1\",\"cheap_ok\":true,\"strong_ok\":false}\n\n"
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"p2\"}],\"cheap_ok\":0,"
                    "\"strong_ok\":1,\"subject\":\"chat\"}\n";
    write_file(jsonl, j, strlen(j));
    const char *e = "{\"eval_prompt\":\"Say \\\"hi\\\"\"}\n{\"prompt\":\"p1\"}\n";
    write_file(excl, e, strlen(e));
    ah_labels_t l;
    ah_labels_init(&l);
    ck_assert_int_eq(ah_labels_load(&l, csv, NULL, NULL, err, sizeof err), AH_E_OK);
    ck_assert_int_eq(ah_labels_load(&l, jsonl, NULL, NULL, err, sizeof err), AH_E_OK);
    ck_assert_uint_eq(l.n, 4);
    ck_assert_str_eq(l.rows[1].prompt, "Say \"hi\"");
    ck_assert_int_eq(l.rows[1].cheap_ok, 0);
    ck_assert_int_eq(l.rows[1].strong_ok, 1);
    ck_assert_str_eq(l.groups[l.rows[0].group], "algebra");
    ck_assert_str_eq(l.groups[l.rows[3].group], "chat");
    ck_assert_str_eq(l.rows[3].prompt, "p2");
    ck_assert_str_eq(l.cheap_name, "mixtral");
    /* Columns by name. */
    ah_labels_t byname;
    ah_labels_init(&byname);
    ck_assert_int_eq(ah_labels_load(&byname, csv, "gpt4", "mixtral", err, sizeof err), AH_E_OK);
    ck_assert_int_eq(byname.rows[1].cheap_ok, 1);
    ck_assert_int_ne(ah_labels_load(&byname, csv, "nope", "mixtral", err, sizeof err), AH_E_OK);
    ah_labels_free(&byname);
    /* Bad files are refused with a line, and leave the set as it was. */
    static const char *const bads[] = {
        "prompt,a,b\n\"never closed,True,True\n",
        "prompt,a,b\nx,maybe,True\n",
        "prompt,a,b\nx,True\n",
        "",
    };
    for (size_t i = 0; i < sizeof bads / sizeof bads[0]; i++) {
        write_file(badf, bads[i], strlen(bads[i]));
        ck_assert_int_ne(ah_labels_load(&l, badf, NULL, NULL, err, sizeof err), AH_E_OK);
        ck_assert_ptr_nonnull(strstr(err, "bad.csv:"));
        ck_assert_uint_eq(l.n, 4);
    }
    tmp_path(badf, "bad.jsonl");
    write_file(badf, "{\"prompt\":\"x\",\"cheap_ok\":true}\n", 31);
    ck_assert_int_ne(ah_labels_load(&l, badf, NULL, NULL, err, sizeof err), AH_E_OK);
    ck_assert_uint_eq(l.n, 4);
    size_t gone = 0;
    ck_assert_int_eq(ah_labels_exclude(&l, excl, &gone, err, sizeof err), AH_E_OK);
    ck_assert_uint_eq(gone, 2);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.rows[1].prompt, "p2");
    ah_labels_free(&l);
    unlink(csv);
    unlink(jsonl);
    unlink(badf);
    tmp_path(badf, "bad.csv");
    unlink(badf);
    unlink(excl);
    rmdir(tmpdir);
}
END_TEST

START_TEST(curve_figures)
{
    /* 10 prompts: 2 only the strong model gets, 1 only the cheap one, 5 both, 2 neither. */
    unsigned char c[10] = {0, 0, 1, 1, 1, 1, 1, 1, 0, 0};
    unsigned char s[10] = {1, 1, 0, 1, 1, 1, 1, 1, 0, 0};
    double zero[10] = {0}, oracle[10], perfect_cost[10];
    ah_curve_t cv;
    ck_assert_int_eq(ah_curve_compute(zero, c, s, NULL, NULL, 10, 0.95, &cv), AH_E_OK);
    ck_assert_double_eq_tol(cv.acc_cheap, 0.6, TOL);
    ck_assert_double_eq_tol(cv.acc_strong, 0.7, TOL);
    ck_assert_double_eq_tol(cv.apgr, 0.5, TOL); /* all ties: the random router */
    ck_assert_double_eq_tol(cv.cpt50, 0.5, TOL);
    ah_curve_free(&cv);
    ah_curve_oracle(c, s, 10, oracle);
    for (int i = 0; i < 10; i++)
        perfect_cost[i] = 10;
    double cheapc[10];
    for (int i = 0; i < 10; i++)
        cheapc[i] = 1;
    ck_assert_int_eq(ah_curve_compute(oracle, c, s, cheapc, perfect_cost, 10, 1.0, &cv), AH_E_OK);
    ck_assert_double_eq_tol(cv.acc_best, 0.8, TOL);
    /* Reaching 100% of the strong model's 0.7 takes one of the two strong-only prompts. */
    ck_assert_double_eq_tol(cv.share_at_target, 0.1, TOL);
    ck_assert_double_eq_tol(cv.cost_at_target, 9 * 1 + 10, TOL);
    ck_assert(cv.apgr > 1);
    ah_curve_point_t p = ah_curve_at_share(&cv, 0.2);
    ck_assert_double_eq_tol(p.acc, 0.8, TOL);
    ah_curve_free(&cv);
    double nanscore[10] = {0, NAN};
    ck_assert_int_eq(ah_curve_compute(nanscore, c, s, NULL, NULL, 10, 0.95, &cv), AH_E_INVAL);
    ck_assert_int_eq(ah_curve_compute(zero, c, s, NULL, NULL, 0, 0.95, &cv), AH_E_INVAL);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("learned");
    TCase *tc = tcase_create("learned");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, logreg_features_only);
    tcase_add_test(tc, knn_and_logreg_with_embedding);
    tcase_add_test(tc, training_refuses_bad_input);
    tcase_add_test(tc, corrupt_model_files_are_refused);
    tcase_add_test(tc, csv_records);
    tcase_add_test(tc, labels_from_files);
    tcase_add_test(tc, curve_figures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return ah_check_run(suite());
}
