/* cv.c - routers measured on RouteLLM's MMLU outcomes (GPT-4-1106-preview vs
 * Mixtral-8x7B): subject-wise cross-validation of the learned router's
 * variants with nested model selection, the complexity router, random routing
 * and the oracle. Writes Markdown to stdout (bench/router/run.sh puts it in
 * RESULTS.md) and the curves as CSV to the file given.
 *
 *   cv DATA_DIR VECTORS CURVES_CSV [FOLDS] [SEED]
 *
 * Method (docs/routing-quality.md): the 57 subjects are shuffled with SEED
 * and dealt into FOLDS folds. For each outer fold, every candidate (variant x
 * hyper-parameter) is scored by the APGR of its pooled predictions on inner
 * folds made of the training subjects only (each inner fold one of the other
 * outer folds); each variant keeps its best hyper-parameter, "learned
 * (selected)" keeps the best candidate overall; they are retrained on all
 * training subjects and score the held-out subjects. The test subjects are
 * never seen by training or selection. Figures are over the pooled
 * out-of-fold scores of all prompts, with the spread over folds. */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/embed.h"
#include "core/alloc.h"
#include "route/complexity.h"
#include "route/curve.h"
#include "route/labels.h"
#include "route/learned.h"
#include "route/rank.h"

#define MAX_FILES 256
#define MAX_FOLDS 10
#define BYTES_PER_TOKEN 4.0
#define OUT_TOKENS 5.0
#define PRICE_CHEAP_IN 0.7 /* Mixtral-8x7B, Mistral list price, USD per Mtok */
#define PRICE_CHEAP_OUT 0.7
#define PRICE_STRONG_IN 10.0 /* GPT-4-1106-preview, OpenAI list price */
#define PRICE_STRONG_OUT 30.0
#define TARGET 0.95
#define NHP 4

typedef struct variant {
    const char *name;
    ah_learned_opts_t o;
    double hp[NHP]; /* l2 for logreg, k for knn */
} variant_t;

static const variant_t variants[] = {
    {"logreg, complexity features only",
     {AH_LEARNED_LOGREG, AH_LEARNED_TARGET_GAIN, 0, 0, 0},
     {1e-4, 1e-3, 1e-2, 1e-1}},
    {"logreg, embedding + features, gain",
     {AH_LEARNED_LOGREG, AH_LEARNED_TARGET_GAIN, 0, 0, 1},
     {1e-4, 1e-3, 1e-2, 1e-1}},
    {"logreg, embedding + features, cheap-fail",
     {AH_LEARNED_LOGREG, AH_LEARNED_TARGET_CHEAP_FAIL, 0, 0, 1},
     {1e-4, 1e-3, 1e-2, 1e-1}},
    {"kNN on embedding, gain",
     {AH_LEARNED_KNN, AH_LEARNED_TARGET_GAIN, 0, 0, 1},
     {10, 30, 100, 300}},
};
#define NVAR (sizeof variants / sizeof variants[0])

static ah_labels_t L;
static float *rows;
static size_t stride;
static int dim;
static unsigned char *cheap, *strong;
static double *cost_c, *cost_s;
static double *extra_gw; /* extra USD on GPT-4 as the gateway estimates it (route/rank.h) */
static int *fold_of;     /* per prompt */

static unsigned long long rng_state;
static unsigned rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (unsigned)(rng_state >> 33);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static ah_learned_opts_t opts_of(const variant_t *v, int h)
{
    ah_learned_opts_t o = v->o;
    if (o.kind == AH_LEARNED_KNN) {
        o.k = (int)v->hp[NHP - 1]; /* the largest: smaller k scored from the same lists */
        o.l2 = 1e-2;
    } else {
        o.l2 = v->hp[h];
        o.k = 1;
    }
    return o;
}

/* Train on prompts with train[i] set; NULL on failure (printed). */
static ah_learned_t *train_on(const char *in_train, const ah_learned_opts_t *o)
{
    size_t n = 0;
    for (size_t i = 0; i < L.n; i++)
        n += in_train[i] != 0;
    float *r = ah_malloc(n * stride * sizeof *r);
    unsigned char *c = ah_malloc(n), *s = ah_malloc(n);
    size_t j = 0;
    for (size_t i = 0; i < L.n; i++)
        if (in_train[i]) {
            memcpy(r + j * stride, rows + i * stride, stride * sizeof *r);
            c[j] = cheap[i];
            s[j] = strong[i];
            j++;
        }
    char err[512];
    ah_learned_t *m = ah_learned_train(r, n, dim, c, s, o, err, sizeof err);
    if (!m)
        fprintf(stderr, "cv: training failed: %s\n", err);
    ah_free(r);
    ah_free(c);
    ah_free(s);
    return m;
}

/* Scores of prompts with sel[i] set, for each hyper-parameter of v, into
 * out[h][i]. */
static int score_variant(const variant_t *v, const char *train, const char *sel, double **out)
{
    if (v->o.kind == AH_LEARNED_KNN) {
        ah_learned_opts_t o = opts_of(v, 0);
        ah_learned_t *m = train_on(train, &o);
        if (!m)
            return -1;
        int ks[NHP];
        for (int h = 0; h < NHP; h++)
            ks[h] = (int)v->hp[h];
        for (size_t i = 0; i < L.n; i++)
            if (sel[i]) {
                double s[NHP];
                ah_learned_score_row_ks(m, rows + i * stride, ks, NHP, s);
                for (int h = 0; h < NHP; h++)
                    out[h][i] = s[h];
            }
        ah_learned_free(m);
        return 0;
    }
    for (int h = 0; h < NHP; h++) {
        ah_learned_opts_t o = opts_of(v, h);
        ah_learned_t *m = train_on(train, &o);
        if (!m)
            return -1;
        for (size_t i = 0; i < L.n; i++)
            if (sel[i])
                out[h][i] = ah_learned_score_row(m, rows + i * stride);
        ah_learned_free(m);
    }
    return 0;
}

/* Curve over the prompts with sel[i] set. */
static void curve_of(const double *score, const char *sel, ah_curve_t *cv)
{
    size_t n = 0;
    for (size_t i = 0; i < L.n; i++)
        n += sel == NULL || sel[i];
    double *s = ah_malloc(n * sizeof *s), *cc = ah_malloc(n * sizeof *cc),
           *cs = ah_malloc(n * sizeof *cs);
    unsigned char *c = ah_malloc(n), *st = ah_malloc(n);
    size_t j = 0;
    for (size_t i = 0; i < L.n; i++)
        if (sel == NULL || sel[i]) {
            s[j] = score[i];
            cc[j] = cost_c[i];
            cs[j] = cost_s[i];
            c[j] = cheap[i];
            st[j] = strong[i];
            j++;
        }
    ah_curve_compute(s, c, st, cc, cs, n, TARGET, cv);
    ah_free(s);
    ah_free(cc);
    ah_free(cs);
    ah_free(c);
    ah_free(st);
}

/* Accuracy when the total cost is frac of sending everything to the strong
 * model (cost grows along the curve: every prompt costs more on the strong
 * model). */
static double acc_at_cost(const ah_curve_t *cv, double frac)
{
    double want = frac * cv->cost_strong;
    if (want <= cv->v[0].cost)
        return cv->v[0].acc;
    for (size_t i = 1; i < cv->nv; i++)
        if (cv->v[i].cost >= want) {
            const ah_curve_point_t *a = &cv->v[i - 1], *b = &cv->v[i];
            double t = b->cost > a->cost ? (want - a->cost) / (b->cost - a->cost) : 1;
            return a->acc + t * (b->acc - a->acc);
        }
    return cv->v[cv->nv - 1].acc;
}

typedef struct result {
    const char *name;
    double *score; /* out-of-fold, all prompts */
    double fold_apgr[MAX_FOLDS], fold_share[MAX_FOLDS];
    char chosen[MAX_FOLDS][64];
} result_t;

/* Gain per extra dollar of each prompt's score, as rank: gain_per_dollar
 * computes it (finite: +-DBL_MAX where GPT-4 would not be dearer). */
static double *gain_values(const double *score)
{
    double *v = ah_malloc(L.n * sizeof *v);
    for (size_t i = 0; i < L.n; i++) {
        v[i] = ah_rank_gain_per_usd(score[i], extra_gw[i]);
        if (isinf(v[i]))
            v[i] = v[i] > 0 ? DBL_MAX : -DBL_MAX;
    }
    return v;
}

static void mean_sd(const double *x, int n, double *m, double *sd)
{
    double s = 0, q = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (x[i] >= 0) {
            s += x[i];
            k++;
        }
    *m = k ? s / k : -1;
    for (int i = 0; i < n; i++)
        if (x[i] >= 0)
            q += (x[i] - *m) * (x[i] - *m);
    *sd = k > 1 ? sqrt(q / (k - 1)) : 0;
}

static void fmt_share(char *b, size_t n, double x)
{
    if (x < 0)
        snprintf(b, n, "never");
    else
        snprintf(b, n, "%.1f%%", 100 * x);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: cv DATA_DIR VECTORS CURVES_CSV [FOLDS] [SEED]\n");
        return 2;
    }
    const char *dir = argv[1], *vectors = argv[2], *csv_path = argv[3];
    int K = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 5;
    rng_state = argc > 5 ? strtoull(argv[5], NULL, 10) : 20240601;
    if (K < 2 || K > MAX_FOLDS)
        K = 5;
    char err[512], path[4096];
    char *files[MAX_FILES];
    int nf = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "cv: cannot open %s\n", dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) && nf < MAX_FILES) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".csv") == 0)
            files[nf++] = ah_strdup(e->d_name);
    }
    closedir(d);
    qsort(files, (size_t)nf, sizeof *files, cmp_str);
    ah_labels_init(&L);
    for (int i = 0; i < nf; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (ah_labels_load(&L, path, NULL, NULL, err, sizeof err)) {
            fprintf(stderr, "cv: %s\n", err);
            return 1;
        }
        ah_free(files[i]);
    }
    size_t total = L.n, gone = 0;
    snprintf(path, sizeof path, "%s/contaminated_prompts.jsonl", dir);
    if (ah_labels_exclude(&L, path, &gone, err, sizeof err)) {
        fprintf(stderr, "cv: %s\n", err);
        return 1;
    }
    ah_embedder_t *emb = ah_embed_open_sif(vectors, err, sizeof err);
    if (!emb) {
        fprintf(stderr, "cv: %s\n", err);
        return 1;
    }
    dim = emb->dim;
    stride = ah_learned_row_size(dim);
    rows = ah_malloc(L.n * stride * sizeof *rows);
    cheap = ah_malloc(L.n);
    strong = ah_malloc(L.n);
    cost_c = ah_malloc(L.n * sizeof *cost_c);
    cost_s = ah_malloc(L.n * sizeof *cost_s);
    extra_gw = ah_malloc(L.n * sizeof *extra_gw);
    double t0 = now();
    for (size_t i = 0; i < L.n; i++)
        ah_learned_row_text(L.rows[i].prompt, L.rows[i].len, emb, dim, rows + i * stride);
    double t_rows = now() - t0;
    double *cx = ah_malloc(L.n * sizeof *cx);
    t0 = now();
    for (size_t i = 0; i < L.n; i++) {
        ah_cx_t c;
        ah_cx_score_text(L.rows[i].prompt, L.rows[i].len, &c);
        cx[i] = c.score;
    }
    double t_cx = now() - t0;
    double bytes = 0;
    for (size_t i = 0; i < L.n; i++) {
        cheap[i] = L.rows[i].cheap_ok;
        strong[i] = L.rows[i].strong_ok;
        double in = ceil((double)L.rows[i].len / BYTES_PER_TOKEN);
        cost_c[i] = (in * PRICE_CHEAP_IN + OUT_TOKENS * PRICE_CHEAP_OUT) / 1e6;
        cost_s[i] = (in * PRICE_STRONG_IN + OUT_TOKENS * PRICE_STRONG_OUT) / 1e6;
        const double pc[2] = {PRICE_CHEAP_IN, PRICE_CHEAP_OUT},
                     ps[2] = {PRICE_STRONG_IN, PRICE_STRONG_OUT};
        extra_gw[i] =
            ah_rank_extra_usd((double)ah_rank_est_tokens((long)L.rows[i].len), OUT_TOKENS, pc, ps);
        bytes += (double)L.rows[i].len;
    }
    /* Subjects dealt into folds after a seeded shuffle. */
    size_t G = L.ngroups;
    int *perm = ah_malloc(G * sizeof *perm), *gfold = ah_malloc(G * sizeof *gfold);
    for (size_t g = 0; g < G; g++)
        perm[g] = (int)g;
    for (size_t g = G; g > 1; g--) {
        size_t j = rnd() % g;
        int t = perm[g - 1];
        perm[g - 1] = perm[j];
        perm[j] = t;
    }
    for (size_t g = 0; g < G; g++)
        gfold[perm[g]] = (int)(g % (size_t)K);
    fold_of = ah_malloc(L.n * sizeof *fold_of);
    for (size_t i = 0; i < L.n; i++)
        fold_of[i] = gfold[L.rows[i].group];

    result_t res[NVAR + 1];
    memset(res, 0, sizeof res);
    for (size_t v = 0; v < NVAR; v++) {
        res[v].name = variants[v].name;
        res[v].score = ah_calloc(L.n, sizeof(double));
    }
    res[NVAR].name = "learned (selected by inner CV)";
    res[NVAR].score = ah_calloc(L.n, sizeof(double));
    char *train = ah_malloc(L.n), *sel = ah_malloc(L.n);
    double *inner[NVAR][NHP];
    for (size_t v = 0; v < NVAR; v++)
        for (int h = 0; h < NHP; h++)
            inner[v][h] = ah_calloc(L.n, sizeof(double));
    double t_cv = now();
    for (int f = 0; f < K; f++) {
        /* Inner folds: the other outer folds. */
        char *inner_sel = ah_calloc(L.n, 1);
        for (int g = 0; g < K; g++) {
            if (g == f)
                continue;
            for (size_t i = 0; i < L.n; i++) {
                train[i] = fold_of[i] != f && fold_of[i] != g;
                sel[i] = fold_of[i] == g;
                inner_sel[i] |= sel[i];
            }
            for (size_t v = 0; v < NVAR; v++)
                if (score_variant(&variants[v], train, sel, inner[v]))
                    return 1;
        }
        double best_all = -1;
        int best_v = 0, best_h[NVAR];
        for (size_t v = 0; v < NVAR; v++) {
            double best = -1;
            best_h[v] = 0;
            for (int h = 0; h < NHP; h++) {
                ah_curve_t cv;
                curve_of(inner[v][h], inner_sel, &cv);
                if (cv.apgr > best) {
                    best = cv.apgr;
                    best_h[v] = h;
                }
                ah_curve_free(&cv);
            }
            if (best > best_all) {
                best_all = best;
                best_v = (int)v;
            }
            fprintf(stderr, "cv: fold %d: %s: inner APGR %.3f at %g\n", f, variants[v].name, best,
                    variants[v].hp[best_h[v]]);
        }
        ah_free(inner_sel);
        /* Retrain each variant's choice on all training subjects; score the test fold. */
        for (size_t i = 0; i < L.n; i++) {
            train[i] = fold_of[i] != f;
            sel[i] = fold_of[i] == f;
        }
        for (size_t v = 0; v < NVAR; v++) {
            double *tmp[NHP];
            for (int h = 0; h < NHP; h++)
                tmp[h] = inner[v][h]; /* reused as scratch: inner scores are done */
            if (score_variant(&variants[v], train, sel, tmp))
                return 1;
            for (size_t i = 0; i < L.n; i++)
                if (sel[i]) {
                    res[v].score[i] = tmp[best_h[v]][i];
                    if ((int)v == best_v)
                        res[NVAR].score[i] = tmp[best_h[v]][i];
                }
            snprintf(res[v].chosen[f], sizeof res[v].chosen[f], "%s=%g",
                     variants[v].o.kind == AH_LEARNED_KNN ? "k" : "l2", variants[v].hp[best_h[v]]);
        }
        snprintf(res[NVAR].chosen[f], sizeof res[NVAR].chosen[f], "%s, %s",
                 variants[best_v].o.kind == AH_LEARNED_KNN ? "kNN"
                 : variants[best_v].o.use_embedding
                     ? (variants[best_v].o.target == AH_LEARNED_TARGET_GAIN ? "logreg gain"
                                                                            : "logreg cheap-fail")
                     : "logreg features",
                 res[best_v].chosen[f]);
        for (size_t v = 0; v <= NVAR; v++) {
            ah_curve_t cv;
            curve_of(res[v].score, sel, &cv);
            res[v].fold_apgr[f] = cv.apgr;
            res[v].fold_share[f] = cv.share_at_target;
            ah_curve_free(&cv);
        }
        fprintf(stderr, "cv: fold %d done (%.0f s)\n", f, now() - t_cv);
    }
    t_cv = now() - t_cv;

    /* Rows for the discussion, not candidates: scores ordered by expected gain
     * per extra dollar as a router with rank: gain_per_dollar orders them
     * (route/rank.h: (2s - 1) / extra USD, 2s - 1 being the expected accuracy
     * gain of a "gain" score s, with the gateway's token estimate), for the
     * complexity router, the learned one as selected, and the gain logreg; and
     * the gain logreg with a prompt-wise split, whose test subjects are also
     * in training (what in-distribution data buys). */
    double *per_dollar = gain_values(res[1].score);
    double *per_dollar_sel = gain_values(res[NVAR].score);
    double *per_dollar_cx = gain_values(cx);
    double *indist = ah_calloc(L.n, sizeof *indist);
    {
        int *rf = ah_malloc(L.n * sizeof *rf);
        for (size_t i = 0; i < L.n; i++)
            rf[i] = (int)(rnd() % (unsigned)K);
        ah_learned_opts_t lo = ah_learned_defaults;
        for (int f = 0; f < K; f++) {
            for (size_t i = 0; i < L.n; i++)
                train[i] = rf[i] != f;
            ah_learned_t *m = train_on(train, &lo);
            if (!m)
                return 1;
            for (size_t i = 0; i < L.n; i++)
                if (rf[i] == f)
                    indist[i] = ah_learned_score_row(m, rows + i * stride);
            ah_learned_free(m);
        }
        ah_free(rf);
    }

    /* Complexity, random, oracle: no training. */
    double *oracle = ah_malloc(L.n * sizeof *oracle), *zero = ah_calloc(L.n, sizeof *zero);
    ah_curve_oracle(cheap, strong, L.n, oracle);
    typedef struct row {
        const char *name;
        const double *score;
        const result_t *r;
    } row_t;
    row_t table[NVAR + 8];
    int nt = 0;
    table[nt++] = (row_t){"random", zero, NULL};
    table[nt++] = (row_t){"complexity (hand-set, untrained)", cx, NULL};
    table[nt++] = (row_t){"complexity, ranked by gain per extra dollar", per_dollar_cx, NULL};
    for (size_t v = 0; v < NVAR; v++)
        table[nt++] = (row_t){res[v].name, res[v].score, &res[v]};
    table[nt++] = (row_t){res[NVAR].name, res[NVAR].score, &res[NVAR]};
    table[nt++] =
        (row_t){"learned (selected), ranked by gain per extra dollar", per_dollar_sel, NULL};
    table[nt++] = (row_t){"logreg gain, ranked by gain per extra dollar", per_dollar, NULL};
    table[nt++] =
        (row_t){"logreg gain, prompt-wise split (test subjects seen in training)", indist, NULL};
    table[nt++] = (row_t){"oracle", oracle, NULL};
    ah_curve_t cvs[NVAR + 8];
    for (int t = 0; t < nt; t++)
        curve_of(table[t].score, NULL, &cvs[t]);
    const ah_curve_t *c0 = &cvs[0];

    printf("## Data\n\n");
    printf("- %zu prompts of 57 MMLU subjects (%zu read, %zu excluded as contaminated), "
           "%zu subjects in %d folds (seed %llu).\n",
           L.n, total, gone, G, K,
           (unsigned long long)(argc > 5 ? strtoull(argv[5], NULL, 10) : 20240601));
    printf("- Mixtral-8x7B alone: **%.1f%%**; GPT-4-1106-preview alone: **%.1f%%**; "
           "95%% of GPT-4: %.1f%%.\n",
           100 * c0->acc_cheap, 100 * c0->acc_strong, 100 * TARGET * c0->acc_strong);
    printf("- Prices: Mixtral-8x7B $%.2f / $%.2f per million input / output tokens "
           "(Mistral's list price, `mixtral-8x7b` in genai-prices), GPT-4-1106-preview $%.0f / "
           "$%.0f (OpenAI's list price). Tokens per prompt: input = bytes / 4 rounded up "
           "(mean %.0f), output = %.0f. All to Mixtral: $%.2f; all to GPT-4: $%.2f "
           "(%.1fx).\n\n",
           PRICE_CHEAP_IN, PRICE_CHEAP_OUT, PRICE_STRONG_IN, PRICE_STRONG_OUT,
           bytes / (double)L.n / BYTES_PER_TOKEN, OUT_TOKENS, c0->cost_cheap, c0->cost_strong,
           c0->cost_strong / c0->cost_cheap);

    printf("## Summary (pooled out-of-fold scores, all %zu prompts)\n\n", L.n);
    printf("| router | APGR | CPT(50%%) | CPT(80%%) | GPT-4 calls for 95%% of GPT-4 | cost "
           "saved there vs all-GPT-4 | best accuracy |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (int t = 0; t < nt; t++) {
        const ah_curve_t *c = &cvs[t];
        char a[32], b[32], s[32], saved[32];
        fmt_share(a, sizeof a, c->cpt50);
        fmt_share(b, sizeof b, c->cpt80);
        fmt_share(s, sizeof s, c->share_at_target);
        if (c->share_at_target >= 0)
            snprintf(saved, sizeof saved, "%.1f%%", 100 * (1 - c->cost_at_target / c->cost_strong));
        else
            snprintf(saved, sizeof saved, "-");
        printf("| %s | %.3f | %s | %s | %s | %s | %.1f%% |\n", table[t].name, c->apgr, a, b, s,
               saved, 100 * c->acc_best);
    }
    printf("\nAPGR: area under (acc - acc_Mixtral) / (acc_GPT-4 - acc_Mixtral) over the share of "
           "GPT-4 calls (random = 0.5). CPT(x): GPT-4 call share needed to recover x of the gap.\n"
           "\n");

    printf("## Spread over the %d held-out folds\n\n", K);
    printf("| router | APGR mean ± sd | GPT-4 share at 95%% mean ± sd | per fold: APGR / share "
           "| chosen by inner CV |\n|---|---:|---:|---|---|\n");
    for (size_t v = 0; v <= NVAR; v++) {
        double am, as, sm, ss;
        mean_sd(res[v].fold_apgr, K, &am, &as);
        mean_sd(res[v].fold_share, K, &sm, &ss);
        printf("| %s | %.3f ± %.3f | %.1f%% ± %.1f | ", res[v].name, am, as, 100 * sm, 100 * ss);
        for (int f = 0; f < K; f++) {
            char s[32];
            fmt_share(s, sizeof s, res[v].fold_share[f]);
            printf("%s%.3f / %s", f ? "; " : "", res[v].fold_apgr[f], s);
        }
        printf(" | ");
        for (int f = 0; f < K; f++)
            printf("%s%s", f ? "; " : "", res[v].chosen[f]);
        printf(" |\n");
    }
    /* Complexity per fold, for comparison. */
    {
        double ap[MAX_FOLDS], sh[MAX_FOLDS], am, as, sm, ss;
        for (int f = 0; f < K; f++) {
            for (size_t i = 0; i < L.n; i++)
                sel[i] = fold_of[i] == f;
            ah_curve_t cv;
            curve_of(cx, sel, &cv);
            ap[f] = cv.apgr;
            sh[f] = cv.share_at_target;
            ah_curve_free(&cv);
        }
        mean_sd(ap, K, &am, &as);
        mean_sd(sh, K, &sm, &ss);
        printf("| complexity (hand-set, untrained) | %.3f ± %.3f | %.1f%% ± %.1f | ", am, as,
               100 * sm, 100 * ss);
        for (int f = 0; f < K; f++) {
            char s[32];
            fmt_share(s, sizeof s, sh[f]);
            printf("%s%.3f / %s", f ? "; " : "", ap[f], s);
        }
        printf(" | - |\n\n");
    }

    printf("## Cost-quality curve: accuracy by share of GPT-4 calls\n\n| router |");
    for (int x = 0; x <= 10; x++)
        printf(" %d%% |", x * 10);
    printf("\n|---|");
    for (int x = 0; x <= 10; x++)
        printf("---:|");
    printf("\n");
    for (int t = 0; t < nt; t++) {
        printf("| %s |", table[t].name);
        for (int x = 0; x <= 10; x++)
            printf(" %.1f |", 100 * ah_curve_at_share(&cvs[t], x / 10.0).acc);
        printf("\n");
    }
    printf("\n## Cost-quality curve: accuracy by cost (share of the all-GPT-4 cost)\n\n| router |");
    double fr[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
    for (size_t x = 0; x < sizeof fr / sizeof fr[0]; x++)
        printf(" %.0f%% |", 100 * fr[x]);
    printf("\n|---|");
    for (size_t x = 0; x < sizeof fr / sizeof fr[0]; x++)
        printf("---:|");
    printf("\n");
    for (int t = 0; t < nt; t++) {
        printf("| %s |", table[t].name);
        for (size_t x = 0; x < sizeof fr / sizeof fr[0]; x++)
            printf(" %.1f |", 100 * acc_at_cost(&cvs[t], fr[x]));
        printf("\n");
    }
    printf("\n(All-Mixtral costs %.1f%% of all-GPT-4, so no router can go below that.)\n\n",
           100 * c0->cost_cheap / c0->cost_strong);

    /* Both rankings per fold, and thresholds carried to unseen subjects. */
    {
        const struct {
            const char *name;
            const double *v;
            int gain;
        } rk[] = {
            {"complexity, by score", cx, 0},
            {"complexity, by gain per extra dollar", per_dollar_cx, 1},
            {"learned (selected), by score", res[NVAR].score, 0},
            {"learned (selected), by gain per extra dollar", per_dollar_sel, 1},
        };
        size_t nrk = sizeof rk / sizeof rk[0];
        printf("## Ranking by score against ranking by gain per extra dollar, fold by fold\n\n");
        printf("Each held-out fold's own curve (its subjects only). The threshold is the "
               "`min_score` or `min_gain_per_usd` that reaches 95%% of GPT-4's accuracy on that "
               "fold.\n\n");
        printf(
            "| router, ranking | APGR mean ± sd | GPT-4 share at 95%% mean ± sd | cost saved at "
            "95%% mean ± sd | threshold at 95%%: pooled; per fold |\n|---|---:|---:|---:|---|\n");
        for (size_t r = 0; r < nrk; r++) {
            double ap[MAX_FOLDS], sh[MAX_FOLDS], sv[MAX_FOLDS], th[MAX_FOLDS];
            for (int f = 0; f < K; f++) {
                for (size_t i = 0; i < L.n; i++)
                    sel[i] = fold_of[i] == f;
                ah_curve_t cv;
                curve_of(rk[r].v, sel, &cv);
                ap[f] = cv.apgr;
                sh[f] = cv.share_at_target;
                sv[f] = cv.share_at_target >= 0 ? 1 - cv.cost_at_target / cv.cost_strong : -1;
                th[f] = cv.threshold_at_target;
                ah_curve_free(&cv);
            }
            double am, as, sm, ss, vm, vs;
            mean_sd(ap, K, &am, &as);
            mean_sd(sh, K, &sm, &ss);
            mean_sd(sv, K, &vm, &vs);
            printf("| %s | %.3f ± %.3f | %.1f%% ± %.1f | %.1f%% ± %.1f | ", rk[r].name, am, as,
                   100 * sm, 100 * ss, 100 * vm, 100 * vs);
            ah_curve_t pooled;
            curve_of(rk[r].v, NULL, &pooled);
            printf(rk[r].gain ? "%.3g;" : "%.3f;", pooled.threshold_at_target);
            ah_curve_free(&pooled);
            for (int f = 0; f < K; f++)
                printf(rk[r].gain ? "%s%.3g" : "%s%.3f", f ? "; " : " ", th[f]);
            printf(" |\n");
        }
        printf("\n### A threshold carried to unseen subjects\n\n");
        printf("What a deployment gets: for each fold, the threshold that reaches 95%% of GPT-4's "
               "accuracy on the pooled out-of-fold scores of the *other* folds, applied as it is "
               "to the held-out fold. Accuracy is relative to GPT-4's on the same prompts "
               "(target 95%%).\n\n");
        printf("| router, ranking | accuracy / GPT-4's (pooled) | GPT-4 share | cost saved | per "
               "fold: accuracy / GPT-4's, cost saved |\n|---|---:|---:|---:|---|\n");
        for (size_t r = 0; r < nrk; r++) {
            double ok = 0, okg = 0, nstrong = 0, cost = 0, cost_all = 0;
            char per[512] = "";
            for (int f = 0; f < K; f++) {
                for (size_t i = 0; i < L.n; i++)
                    sel[i] = fold_of[i] != f;
                ah_curve_t cv;
                curve_of(rk[r].v, sel, &cv);
                double t = cv.share_at_target >= 0 ? cv.threshold_at_target : INFINITY;
                ah_curve_free(&cv);
                double fok = 0, fokg = 0, fcost = 0, fall = 0;
                for (size_t i = 0; i < L.n; i++) {
                    if (fold_of[i] != f)
                        continue;
                    int st = rk[r].v[i] >= t;
                    fok += st ? strong[i] : cheap[i];
                    fokg += strong[i];
                    fcost += st ? cost_s[i] : cost_c[i];
                    fall += cost_s[i];
                    nstrong += st;
                }
                ok += fok;
                okg += fokg;
                cost += fcost;
                cost_all += fall;
                size_t l = strlen(per);
                snprintf(per + l, sizeof per - l, "%s%.1f%% / %.1f%%", f ? "; " : "",
                         100 * fok / fokg, 100 * (1 - fcost / fall));
            }
            printf("| %s | %.1f%% | %.1f%% | %.1f%% | %s |\n", rk[r].name, 100 * ok / okg,
                   100 * nstrong / (double)L.n, 100 * (1 - cost / cost_all), per);
        }
        printf("\n");
    }

    /* Curves as CSV: 101 points of share each. */
    FILE *csv = fopen(csv_path, "w");
    if (csv) {
        fprintf(csv, "router,strong_share,accuracy,cost_usd\n");
        for (int t = 0; t < nt; t++)
            for (int x = 0; x <= 100; x++) {
                ah_curve_point_t p = ah_curve_at_share(&cvs[t], x / 100.0);
                fprintf(csv, "\"%s\",%.2f,%.5f,%.5f\n", table[t].name, p.share, p.acc, p.cost);
            }
        fclose(csv);
    }

    /* Speed. */
    printf("## Speed (one core of this machine, %zu MMLU prompts, mean %.0f bytes)\n\n", L.n,
           bytes / (double)L.n);
    printf("| what | µs per request |\n|---|---:|\n");
    printf("| complexity score of the bare prompt (`ah_cx_score_text`) | %.2f |\n",
           1e6 * t_cx / (double)L.n);
    {
        json_t *body =
            json_pack("{s:s, s:[{s:s, s:s}, {s:s, s:s}], s:[{s:s}]}", "model", "auto", "messages",
                      "role", "system", "content", "You are a helpful assistant.", "role", "user",
                      "content", L.rows[0].prompt, "tools", "type", "function");
        ah_cx_t c;
        int reps = 20000;
        double t = now();
        for (int i = 0; i < reps; i++)
            ah_cx_score(body, NULL, &c);
        printf("| complexity score of a chat body (`ah_cx_score`, %zu-byte prompt, a tool) | "
               "%.2f |\n",
               L.rows[0].len, 1e6 * (now() - t) / reps);
        json_decref(body);
    }
    printf("| feature row: SIF embedding + complexity (all learned routers) | %.2f |\n",
           1e6 * t_rows / (double)L.n);
    {
        /* Models trained on every prompt, timed on 2,000 of them. */
        char *all = ah_malloc(L.n);
        memset(all, 1, L.n);
        ah_learned_opts_t lo = ah_learned_defaults, ko = ah_learned_defaults;
        ko.kind = AH_LEARNED_KNN;
        ko.k = 100;
        ah_learned_t *ml = train_on(all, &lo), *mk = train_on(all, &ko);
        size_t reps = L.n < 2000 ? L.n : 2000;
        double sink = 0, t = now();
        for (size_t i = 0; i < reps; i++)
            sink += ah_learned_score_text(ml, L.rows[i].prompt, L.rows[i].len, emb);
        printf("| learned logreg, from text (`ah_learned_score_text`) | %.2f |\n",
               1e6 * (now() - t) / (double)reps);
        t = now();
        for (size_t i = 0; i < reps; i++)
            sink += ah_learned_score_text(mk, L.rows[i].prompt, L.rows[i].len, emb);
        printf("| learned kNN (k=100 over %zu stored prompts), from text | %.2f |\n", L.n,
               1e6 * (now() - t) / (double)reps);
        printf("\nCross-validation took %.0f s on this machine.%s\n", t_cv, sink < -1 ? " " : "");
        ah_learned_free(ml);
        ah_learned_free(mk);
        ah_free(all);
    }
    return 0;
}
