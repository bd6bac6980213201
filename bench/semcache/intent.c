/* intent.c - the semantic cache with a classifier learned from labelled history
 * (src/cache/intent.c) on Banking77, measured honestly: trained on one half of the
 * replay order, replayed on the other half alone from an empty cache, then the
 * halves swapped. Prints Markdown (bench/semcache/intent.sh writes INTENTS.md).
 *
 *   intent BANKING.csv VECTORS.bin
 *
 * The order is replay.mjs's (mulberry32, seed 77), so its halves are the ones the
 * through-the-gateway replay uses. The cache replay mirrors the gateway's
 * ah_cache_get_similar: the K nearest stored prompts by SIF cosine (K 4 as in
 * src/cache/store.c, brute force here), the first that passes the rule is served,
 * a miss is stored. Rules:
 *   cosine       cosine >= t (today's default without the check)
 *   check        cosine - 0.5 (1 - align) >= t, the re-ranking check (the default)
 *   intent       the query and the candidate's prompt predicted into the same label,
 *                both with probability >= c, and cosine >= floor
 *   intent+neg   the same, and no negation or unknown-token mismatch (rerank.h)
 *   agree        sum over labels of p_query * p_candidate >= c (the probability the
 *                two share a label, if the model is calibrated), cosine >= floor
 * Also: the classifier's accuracy on the held-out half, and accuracy and coverage
 * by confidence; training time; prediction time; the intent rule at the default
 * confidence with less history (the first N rows of the training half). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/embed_sif.h"
#include "cache/intent.h"
#include "cache/rerank.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "route/labels.h"

#define K_CAND 4
#define MAX_DIM 128

typedef struct bank {
    int n;
    char **text;
    char **label;
    int *order;
} bank_t;

static uint32_t mb_state;
static double mulberry32(void)
{
    uint32_t a = mb_state += 0x6d2b79f5u;
    uint32_t t = (a ^ (a >> 15)) * (1u | a);
    t = (t + ((t ^ (t >> 7)) * (61u | t))) ^ t;
    return (double)(t ^ (t >> 14)) / 4294967296.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void load(const char *path, bank_t *b)
{
    char err[256], *data;
    size_t n;
    if (ah_buf_read_file(path, 64u << 20, &data, &n, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    char *scratch = ah_malloc(n + 1);
    const char *f[8];
    size_t lens[8], nf, pos = 0, line = 1;
    int cap = 16384;
    b->text = ah_malloc(sizeof(char *) * (size_t)cap);
    b->label = ah_malloc(sizeof(char *) * (size_t)cap);
    b->n = 0;
    int first = 1;
    while (ah_csv_record(data, n, &pos, scratch, f, lens, 8, &nf, &line) == AH_E_OK) {
        if (first || nf != 2) {
            first = 0;
            continue;
        }
        if (b->n == cap)
            break;
        b->text[b->n] = ah_strndup(f[0], lens[0]);
        b->label[b->n] = ah_strndup(f[1], lens[1]);
        b->n++;
    }
    ah_free(scratch);
    ah_free(data);
    b->order = ah_malloc(sizeof(int) * (size_t)b->n);
    for (int i = 0; i < b->n; i++)
        b->order[i] = i;
    mb_state = 77;
    for (int i = b->n - 1; i > 0; i--) {
        int j = (int)floor(mulberry32() * (i + 1)), t = b->order[i];
        b->order[i] = b->order[j];
        b->order[j] = t;
    }
}

/* One half of the replay order, with everything the rules need. */
typedef struct half {
    int n;
    int *row;    /* bank row */
    float *vec;  /* [n][dim] SIF vectors */
    int *pred;   /* predicted label */
    float *conf; /* its probability */
    float *prob; /* [n][nc] */
    float *cos;  /* [n][n] */
} half_t;

typedef enum { R_COSINE, R_CHECK, R_INTENT, R_INTENT_NEG, R_AGREE } rule_t;
static const char *const rule_name[] = {"cosine", "check", "intent", "intent+neg", "agree"};

typedef struct result {
    int hits, right, n;
} result_t;

static const ah_embedder_t *g_sif;
static const bank_t *g_bank;

static int same_label(const half_t *h, int a, int b)
{
    return strcmp(g_bank->label[h->row[a]], g_bank->label[h->row[b]]) == 0;
}

static int passes(const half_t *h, int nc, rule_t r, double t, double floor_, int q, int e,
                  float cos)
{
    const char *qt = g_bank->text[h->row[q]], *et = g_bank->text[h->row[e]];
    switch (r) {
    case R_COSINE:
        return cos >= t;
    case R_CHECK:
        return cos >= t && ah_rerank_similarity(g_sif, cos, qt, strlen(qt), et, strlen(et)) >= t;
    case R_INTENT:
    case R_INTENT_NEG:
        if (cos < floor_ || h->pred[q] < 0 || h->pred[q] != h->pred[e] || h->conf[q] < t ||
            h->conf[e] < t)
            return 0;
        if (r == R_INTENT_NEG) {
            ah_rerank_t rr;
            ah_rerank_compare(g_sif, NULL, qt, strlen(qt), et, strlen(et), &rr);
            return !rr.reject;
        }
        return 1;
    case R_AGREE: {
        if (cos < floor_)
            return 0;
        double s = 0;
        const float *pq = h->prob + (size_t)q * (size_t)nc, *pe = h->prob + (size_t)e * (size_t)nc;
        for (int c = 0; c < nc; c++)
            s += (double)pq[c] * pe[c];
        return s >= t;
    }
    }
    return 0;
}

static result_t replay(const half_t *h, int nc, rule_t r, double t, double floor_)
{
    int *stored = ah_malloc(sizeof(int) * (size_t)h->n), ns = 0;
    result_t res = {0, 0, h->n};
    for (int q = 0; q < h->n; q++) {
        int cand[K_CAND];
        float cc[K_CAND];
        int nk = 0;
        const float *row = h->cos + (size_t)q * (size_t)h->n;
        for (int s = 0; s < ns; s++) {
            float c = row[stored[s]];
            if (nk < K_CAND || c > cc[nk - 1]) {
                int at = nk < K_CAND ? nk++ : K_CAND - 1;
                while (at > 0 && cc[at - 1] < c) {
                    cc[at] = cc[at - 1];
                    cand[at] = cand[at - 1];
                    at--;
                }
                cc[at] = c;
                cand[at] = stored[s];
            }
        }
        int served = -1;
        for (int i = 0; i < nk && served < 0; i++)
            if (passes(h, nc, r, t, floor_, q, cand[i], cc[i]))
                served = cand[i];
        if (served >= 0) {
            res.hits++;
            res.right += same_label(h, q, served);
        } else {
            stored[ns++] = q;
        }
    }
    ah_free(stored);
    return res;
}

static half_t make_half(const bank_t *b, const ah_intent_t *m, int from, int to)
{
    half_t h = {0};
    int dim = g_sif->dim, nc = ah_intent_classes(m);
    h.n = to - from;
    h.row = ah_malloc(sizeof(int) * (size_t)h.n);
    h.vec = ah_calloc((size_t)h.n * (size_t)dim, sizeof(float));
    h.pred = ah_malloc(sizeof(int) * (size_t)h.n);
    h.conf = ah_malloc(sizeof(float) * (size_t)h.n);
    h.prob = ah_malloc(sizeof(float) * (size_t)h.n * (size_t)nc);
    h.cos = ah_malloc(sizeof(float) * (size_t)h.n * (size_t)h.n);
    for (int i = 0; i < h.n; i++) {
        h.row[i] = b->order[from + i];
        const char *t = b->text[h.row[i]];
        ah_embed(g_sif, t, strlen(t), h.vec + (size_t)i * (size_t)dim);
        h.pred[i] = ah_intent_predict(m, t, strlen(t), h.prob + (size_t)i * (size_t)nc, &h.conf[i]);
    }
    for (int i = 0; i < h.n; i++)
        for (int j = 0; j < h.n; j++) {
            float s = 0;
            const float *a = h.vec + (size_t)i * (size_t)dim, *c = h.vec + (size_t)j * (size_t)dim;
            for (int d = 0; d < dim; d++)
                s += a[d] * c[d];
            h.cos[(size_t)i * (size_t)h.n + (size_t)j] = s;
        }
    return h;
}

static void free_half(half_t *h)
{
    ah_free(h->row);
    ah_free(h->vec);
    ah_free(h->pred);
    ah_free(h->conf);
    ah_free(h->prob);
    ah_free(h->cos);
}

static ah_intent_t *train_on(const bank_t *b, int from, int to, const ah_intent_opts_t *o,
                             double *secs)
{
    int n = to - from;
    const char **t = ah_malloc(sizeof(char *) * (size_t)n),
               **l = ah_malloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++) {
        t[i] = b->text[b->order[from + i]];
        l[i] = b->label[b->order[from + i]];
    }
    char err[256];
    double t0 = now_s();
    ah_intent_t *m = ah_intent_train(t, NULL, l, (size_t)n, o, err, sizeof err);
    *secs = now_s() - t0;
    if (!m) {
        fprintf(stderr, "train: %s\n", err);
        exit(1);
    }
    ah_free(t);
    ah_free(l);
    return m;
}

/* Accuracy of the predictions of a half, overall and above confidences. */
static void accuracy(const half_t *h, const ah_intent_t *m, const char *name)
{
    static const double cs[] = {0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95};
    printf("| %s |", name);
    for (size_t k = 0; k < sizeof cs / sizeof cs[0]; k++) {
        int cov = 0, ok = 0;
        for (int i = 0; i < h->n; i++) {
            if (h->pred[i] < 0 || h->conf[i] < cs[k])
                continue;
            cov++;
            ok += strcmp(ah_intent_label(m, h->pred[i]), g_bank->label[h->row[i]]) == 0;
        }
        printf(" %.3f / %.3f |", cov ? (double)ok / cov : 0, (double)cov / h->n);
    }
    printf("\n");
}

/* Every setting of a rule on both folds; rows sorted by the mean precision. */
static void sweep(half_t *hv, const ah_intent_t *const *mv, rule_t r)
{
    static const double ts_cos[] = {0.75, 0.80, 0.85, 0.88, 0.90, 0.93, 0.96};
    static const double ts_conf[] = {0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
    static const double floors[] = {0.0, 0.5, 0.6, 0.7, 0.8};
    int intent = r == R_INTENT || r == R_INTENT_NEG || r == R_AGREE;
    const double *ts = intent ? ts_conf : ts_cos;
    size_t nt = intent ? sizeof ts_conf / sizeof ts_conf[0] : sizeof ts_cos / sizeof ts_cos[0];
    size_t nf = intent ? sizeof floors / sizeof floors[0] : 1;
    for (size_t fi = 0; fi < nf; fi++)
        for (size_t ti = 0; ti < nt; ti++) {
            result_t a = replay(&hv[0], ah_intent_classes(mv[0]), r, ts[ti], floors[fi]);
            result_t b = replay(&hv[1], ah_intent_classes(mv[1]), r, ts[ti], floors[fi]);
            char fl[16] = "-";
            if (intent)
                snprintf(fl, sizeof fl, "%.2f", floors[fi]);
            printf("| %s | %.2f | %s | %.3f | %.3f | %.3f | %.3f |\n", rule_name[r], ts[ti], fl,
                   (double)a.hits / a.n, a.hits ? (double)a.right / a.hits : 0,
                   (double)b.hits / b.n, b.hits ? (double)b.right / b.hits : 0);
        }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Microseconds a prediction, median and p99 over the held-out half's texts. */
static void speed(const ah_intent_t *m, const bank_t *b, int from)
{
    int n = b->n - from;
    double *us = ah_malloc(sizeof(double) * (size_t)n);
    float conf;
    for (int i = 0; i < n; i++) {
        const char *t = b->text[b->order[from + i]];
        double t0 = now_s();
        for (int k = 0; k < 10; k++)
            ah_intent_predict(m, t, strlen(t), NULL, &conf);
        us[i] = (now_s() - t0) * 1e6 / 10;
    }
    qsort(us, (size_t)n, sizeof us[0], cmp_double);
    printf("prediction: median %.1f us, p99 %.1f us a text (%d labels, one thread); the model "
           "holds %.1f MB of weights\n\n",
           us[n / 2], us[n * 99 / 100], ah_intent_classes(m),
           (double)((size_t)ah_intent_classes(m) << ah_intent_defaults.bits) * 4 / 1e6);
    ah_free(us);
}

/* The intent rule at the default confidence, trained on the first rows of half
 * A only, replayed on half B (the history the model sees changes, the replay
 * does not). */
static void curve(const bank_t *b, const ah_intent_opts_t *o, int mid)
{
    static const int sizes[] = {250, 500, 1000, 2000, 3500};
    printf("| history rows (of half A) | labels seen | held-out accuracy | B hit rate | B "
           "precision |\n|---|---|---|---|---|\n");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        if (sizes[k] >= mid)
            break;
        double secs;
        ah_intent_t *m = train_on(b, 0, sizes[k], o, &secs);
        half_t h = make_half(b, m, mid, b->n);
        int ok = 0;
        for (int i = 0; i < h.n; i++)
            ok += h.pred[i] >= 0 && strcmp(ah_intent_label(m, h.pred[i]), b->label[h.row[i]]) == 0;
        result_t r = replay(&h, ah_intent_classes(m), R_INTENT, AH_CACHE_INTENT_CONFIDENCE, 0);
        printf("| %d | %d | %.3f | %.3f | %.3f |\n", sizes[k], ah_intent_classes(m),
               (double)ok / h.n, (double)r.hits / r.n, r.hits ? (double)r.right / r.hits : 0);
        free_half(&h);
        ah_intent_free(m);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: intent BANKING.csv VECTORS.bin\n");
        return 2;
    }
    bank_t b;
    load(argv[1], &b);
    g_bank = &b;
    char err[256];
    ah_embedder_t *sif = ah_embed_open_sif(argv[2], err, sizeof err);
    if (!sif) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    g_sif = sif;
    int mid = b.n / 2;
    ah_intent_opts_t o = ah_intent_defaults;
    if (getenv("INTENT_BITS"))
        o.bits = atoi(getenv("INTENT_BITS"));
    if (getenv("INTENT_EPOCHS"))
        o.epochs = atoi(getenv("INTENT_EPOCHS"));
    if (getenv("INTENT_RATE"))
        o.rate = (float)atof(getenv("INTENT_RATE"));
    if (getenv("INTENT_CHAR"))
        o.char_weight = (float)atof(getenv("INTENT_CHAR"));
    if (getenv("INTENT_L2"))
        o.l2 = (float)atof(getenv("INTENT_L2"));
    double sa, sb;
    ah_intent_t *ma = train_on(&b, 0, mid, &o, &sa), *mb = train_on(&b, mid, b.n, &o, &sb);
    printf("trained: bits %d epochs %d rate %.2f l2 %g char %.2f; %.2f s and %.2f s for %d and %d "
           "rows\n\n",
           o.bits, o.epochs, o.rate, (double)o.l2, (double)o.char_weight, sa, sb, mid, b.n - mid);
    /* half 0: replay B with the model of A; half 1: replay A with the model of B */
    half_t hv[2] = {make_half(&b, ma, mid, b.n), make_half(&b, mb, 0, mid)};
    const ah_intent_t *mv[2] = {ma, mb};
    printf("| held-out accuracy / coverage at conf >= | 0 | 0.3 | 0.5 | 0.7 | 0.8 | 0.9 | 0.95 "
           "|\n|---|---|---|---|---|---|---|---|\n");
    accuracy(&hv[0], ma, "A -> B");
    accuracy(&hv[1], mb, "B -> A");
    printf("\n");
    if (getenv("INTENT_ACC_ONLY"))
        return 0;
    speed(ma, &b, mid);
    curve(&b, &o, mid);
    printf("| rule | t | floor | B hit rate | B precision | A hit rate | A precision |\n"
           "|---|---|---|---|---|---|---|\n");
    sweep(hv, mv, R_COSINE);
    sweep(hv, mv, R_CHECK);
    sweep(hv, mv, R_INTENT);
    sweep(hv, mv, R_INTENT_NEG);
    sweep(hv, mv, R_AGREE);
    free_half(&hv[0]);
    free_half(&hv[1]);
    ah_intent_free(ma);
    ah_intent_free(mb);
    ah_embed_free(sif);
    return 0;
}
