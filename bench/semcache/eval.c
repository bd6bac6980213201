/* eval.c - how good is the semantic cache's built-in "sif" embedder at telling the
 * same question from a different one? Prints Markdown (bench/semcache/run.sh turns it
 * into RESULTS.md; docs/semantic-cache-quality.md discusses it).
 *
 *   eval QQP.csv BANKING.csv VECTORS.bin [NAME=VARIANT.bin ...]
 *
 * 1. QQP pairs (question1,question2,is_duplicate): precision, recall and F1 of
 *    "cosine >= t means duplicate", on the whole file and on a balanced subsample
 *    (every duplicate, as many non-duplicates drawn with a fixed seed), for the GloVe
 *    mean, SIF, SIF with the common component removed (the shipped default) and word
 *    TF-IDF as a reference.
 * 2. Banking77 (text,category) replayed in a fixed random order through a simulated
 *    semantic cache: a query's nearest earlier *stored* query (brute force) is a hit
 *    when the cosine is >= t (right when the categories match; a hit is not stored),
 *    else the query is stored. Then what raises precision: agreement of the top-k
 *    stored neighbours, a margin, weights or a projection learned on one half of the
 *    history and measured on the other.
 * 3. Embedding speed: median microseconds a query.
 * 4. The re-ranking check (src/cache/rerank.c) on the best candidate: QQP and the
 *    Banking77 replay again, per rule and option, and its cost a call.
 *    SEMCACHE_RERANK_ONLY=1 in the environment runs this section alone.
 * 5. Aliases: the Banking77 replay where a hit served at a high score adds the query
 *    as an alias of the entry, and agreement of the k best vectors (entries and
 *    aliases pointing to the same entry) serves at a lower score; no labels.
 *    SEMCACHE_ALIAS_ONLY=1 runs this section alone.
 * Extra NAME=FILE arguments are other vector files (float32, a pruned vocabulary)
 * whose QQP and replay figures are compared with the shipped file's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/embed_sif.h"
#include "cache/rerank.h"
#include "core/alloc.h"

#define MAX_FILE_BYTES (64u * 1024 * 1024)
#define MAX_FIELDS 3
#define SEED 20240607u
#define DIM_MAX 128
#define N_THRESH 200 /* grid 0.000 .. 0.995, step 0.005 */
#define THRESH_STEP 0.005
#define TARGET_P 0.85
#define MAX_VARIANTS 8
#define TOPK_MAX 5
#define SPEED_ROUNDS 5
#define TFIDF_MAX_TERMS 128
#define TFIDF_VOCAB_BUCKETS (1u << 18)
#define TERM_MAX 64
#define LDA_REG 1e-3
#define JACOBI_SWEEPS 60

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rng_state = SEED;

static uint32_t rng(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static void shuffle(int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng() % (uint32_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double thresh(int k)
{
    return k * THRESH_STEP;
}

/* ---- CSV (RFC 4180: quotes, "" escapes, newlines inside quotes) ----------- */

typedef struct row {
    char *f[MAX_FIELDS];
} row_t;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    char *buf = ah_malloc(MAX_FILE_BYTES + 1);
    *len = fread(buf, 1, MAX_FILE_BYTES, f);
    fclose(f);
    buf[*len] = 0;
    return buf;
}

/* Parses in place; returns the rows after the header line. */
static row_t *csv_rows(char *buf, size_t len, int nfields, int *nrows)
{
    int cap = 1024, n = 0;
    row_t *rows = ah_malloc(sizeof(row_t) * (size_t)cap);
    size_t i = 0;
    int first = 1;
    while (i < len) {
        row_t r = {{0}};
        int fi = 0;
        for (;;) {
            char *out = buf + i, *start = out;
            if (buf[i] == '"') {
                i++;
                while (i < len) {
                    if (buf[i] == '"' && i + 1 < len && buf[i + 1] == '"') {
                        *out++ = '"';
                        i += 2;
                    } else if (buf[i] == '"') {
                        i++;
                        break;
                    } else {
                        *out++ = buf[i++];
                    }
                }
            } else {
                while (i < len && buf[i] != ',' && buf[i] != '\n' && buf[i] != '\r')
                    *out++ = buf[i++];
            }
            char sep = i < len ? buf[i] : '\n';
            *out = 0;
            if (fi < MAX_FIELDS)
                r.f[fi++] = start;
            i++;
            if (sep == '\r' && i < len && buf[i] == '\n')
                i++;
            if (sep != ',')
                break;
        }
        if (first) {
            first = 0;
            continue;
        }
        if (fi < nfields)
            continue;
        if (n == cap) {
            cap *= 2;
            rows = ah_realloc(rows, sizeof(row_t) * (size_t)cap);
        }
        rows[n++] = r;
    }
    *nrows = n;
    return rows;
}

/* ---- TF-IDF (the reference) ----------------------------------------------- */

typedef struct tfidf_vocab {
    char **word;
    int *df;
    int n, cap;
    uint32_t *bucket; /* index + 1 */
} tfidf_vocab_t;

typedef struct sparse {
    int n;
    int term[TFIDF_MAX_TERMS];
    float w[TFIDF_MAX_TERMS];
} sparse_t;

static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int vocab_id(tfidf_vocab_t *v, const char *w, size_t n, int add)
{
    uint32_t b = hash_str(w, n) & (TFIDF_VOCAB_BUCKETS - 1);
    while (v->bucket[b]) {
        int id = (int)v->bucket[b] - 1;
        if (strlen(v->word[id]) == n && memcmp(v->word[id], w, n) == 0)
            return id;
        b = (b + 1) & (TFIDF_VOCAB_BUCKETS - 1);
    }
    if (!add)
        return -1;
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->word = ah_realloc(v->word, sizeof(char *) * (size_t)v->cap);
        v->df = ah_realloc(v->df, sizeof(int) * (size_t)v->cap);
    }
    v->word[v->n] = ah_strndup(w, n);
    v->df[v->n] = 0;
    v->bucket[b] = (uint32_t)++v->n;
    return v->n - 1;
}

/* Distinct lowercase [a-z0-9]+ terms of text with their counts. */
static void terms(tfidf_vocab_t *v, const char *text, int add, sparse_t *out)
{
    out->n = 0;
    char w[TERM_MAX];
    size_t n = 0;
    for (const char *p = text;; p++) {
        char c = *p;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            if (n < TERM_MAX)
                w[n++] = c;
            continue;
        }
        if (n > 0) {
            int id = vocab_id(v, w, n, add);
            int k = 0;
            while (id >= 0 && k < out->n && out->term[k] != id)
                k++;
            if (id >= 0 && k < out->n)
                out->w[k] += 1;
            else if (id >= 0 && out->n < TFIDF_MAX_TERMS) {
                out->term[out->n] = id;
                out->w[out->n++] = 1;
            }
        }
        n = 0;
        if (!c)
            break;
    }
}

/* TF-IDF vectors of texts[n], IDF (sklearn's smooth IDF) from texts[fit[0..nfit)). */
static sparse_t *tfidf(const char *const *texts, int n, const int *fit, int nfit)
{
    tfidf_vocab_t v = {0};
    v.bucket = ah_calloc(TFIDF_VOCAB_BUCKETS, sizeof(uint32_t));
    sparse_t *s = ah_calloc((size_t)n, sizeof(sparse_t));
    sparse_t tmp;
    for (int i = 0; i < nfit; i++) {
        terms(&v, texts[fit[i]], 1, &tmp);
        for (int k = 0; k < tmp.n; k++)
            v.df[tmp.term[k]]++;
    }
    for (int i = 0; i < n; i++) {
        terms(&v, texts[i], 0, &s[i]);
        double norm = 0;
        /* Sort by term (pairs), for the merge in the dot product. */
        for (int a = 1; a < s[i].n; a++)
            for (int b = a; b > 0 && s[i].term[b - 1] > s[i].term[b]; b--) {
                int t = s[i].term[b];
                s[i].term[b] = s[i].term[b - 1];
                s[i].term[b - 1] = t;
                float f = s[i].w[b];
                s[i].w[b] = s[i].w[b - 1];
                s[i].w[b - 1] = f;
            }
        for (int k = 0; k < s[i].n; k++) {
            double idf = log((1.0 + nfit) / (1.0 + v.df[s[i].term[k]])) + 1.0;
            s[i].w[k] = (float)(s[i].w[k] * idf);
            norm += (double)s[i].w[k] * s[i].w[k];
        }
        for (int k = 0; k < s[i].n; k++)
            s[i].w[k] = (float)(s[i].w[k] / sqrt(norm));
    }
    for (int i = 0; i < v.n; i++)
        ah_free(v.word[i]);
    ah_free(v.word);
    ah_free(v.df);
    ah_free(v.bucket);
    return s;
}

static float sparse_dot(const sparse_t *a, const sparse_t *b)
{
    float d = 0;
    int i = 0, j = 0;
    while (i < a->n && j < b->n) {
        if (a->term[i] == b->term[j])
            d += a->w[i++] * b->w[j++];
        else if (a->term[i] < b->term[j])
            i++;
        else
            j++;
    }
    return d;
}

/* ---- dense embeddings ------------------------------------------------------ */

typedef struct dense {
    int n, dim;
    float *v; /* n * dim, zero rows for texts with no known word */
} dense_t;

static dense_t embed_all(const ah_embedder_t *e, const char *const *texts, int n)
{
    dense_t d = {.n = n, .dim = e->dim};
    d.v = ah_calloc((size_t)n * (size_t)e->dim, sizeof(float));
    for (int i = 0; i < n; i++)
        ah_embed(e, texts[i], strlen(texts[i]), d.v + (size_t)i * e->dim);
    return d;
}

static float dense_dot(const dense_t *d, int i, int j)
{
    const float *a = d->v + (size_t)i * d->dim, *b = d->v + (size_t)j * d->dim;
    float s = 0;
    for (int k = 0; k < d->dim; k++)
        s += a[k] * b[k];
    return s;
}

/* Custom word weights on top of the sif embedder (learned experiments). */
typedef struct reweigh {
    const ah_embedder_t *e;
    const float *factor; /* per vocabulary index, multiplies the SIF weight */
    float *out;
    float vec[DIM_MAX];
} reweigh_t;

static void reweigh_word(void *ctx, uint32_t ix)
{
    reweigh_t *r = ctx;
    float w;
    ah_embed_sif_vector(r->e, ix, r->vec, &w);
    w *= r->factor[ix];
    for (int d = 0; d < r->e->dim; d++)
        r->out[d] += w * r->vec[d];
}

static void normalise(float *v, int dim)
{
    double n = 0;
    for (int d = 0; d < dim; d++)
        n += (double)v[d] * v[d];
    if (n > 0)
        for (int d = 0; d < dim; d++)
            v[d] = (float)(v[d] / sqrt(n));
}

/* Lexical: the SIF-weighted bag of vocabulary words, as a sparse unit vector. */
typedef struct lex_ctx {
    const ah_embedder_t *e;
    sparse_t *s;
} lex_ctx_t;

static void lex_word(void *ctx, uint32_t ix)
{
    lex_ctx_t *c = ctx;
    float w;
    ah_embed_sif_vector(c->e, ix, NULL, &w);
    for (int k = 0; k < c->s->n; k++)
        if (c->s->term[k] == (int)ix) {
            c->s->w[k] += w;
            return;
        }
    if (c->s->n < TFIDF_MAX_TERMS) {
        c->s->term[c->s->n] = (int)ix;
        c->s->w[c->s->n++] = w;
    }
}

static sparse_t *lexical(const ah_embedder_t *e, const char *const *texts, int n)
{
    sparse_t *out = ah_calloc((size_t)n, sizeof(sparse_t));
    for (int i = 0; i < n; i++) {
        sparse_t *s = &out[i];
        lex_ctx_t c = {.e = e, .s = s};
        ah_embed_sif_words(e, texts[i], strlen(texts[i]), lex_word, &c);
        for (int a = 1; a < s->n; a++)
            for (int b = a; b > 0 && s->term[b - 1] > s->term[b]; b--) {
                int t = s->term[b];
                s->term[b] = s->term[b - 1];
                s->term[b - 1] = t;
                float f = s->w[b];
                s->w[b] = s->w[b - 1];
                s->w[b - 1] = f;
            }
        double norm = 0;
        for (int k = 0; k < s->n; k++)
            norm += (double)s->w[k] * s->w[k];
        for (int k = 0; norm > 0 && k < s->n; k++)
            s->w[k] = (float)(s->w[k] / sqrt(norm));
    }
    return out;
}

/* ---- QQP --------------------------------------------------------------------- */

typedef struct qqp {
    int n;
    const char **q1, **q2;
    int *dup;
    int *balanced; /* indices of the balanced subsample */
    int nbalanced;
} qqp_t;

typedef struct prf {
    double p, r, f;
    long tp, fp, fn;
} prf_t;

static prf_t score(const float *sim, const int *dup, const int *idx, int n, double t)
{
    prf_t s = {0};
    for (int k = 0; k < n; k++) {
        int i = idx ? idx[k] : k;
        int yes = sim[i] >= t;
        s.tp += yes && dup[i];
        s.fp += yes && !dup[i];
        s.fn += !yes && dup[i];
    }
    s.p = s.tp + s.fp ? (double)s.tp / (double)(s.tp + s.fp) : 1.0;
    s.r = s.tp + s.fn ? (double)s.tp / (double)(s.tp + s.fn) : 0.0;
    s.f = s.p + s.r > 0 ? 2 * s.p * s.r / (s.p + s.r) : 0;
    return s;
}

typedef struct qqp_summary {
    double best_f, best_f_t, best_f_p, best_f_r;
    double t85, r85;  /* lowest threshold with precision >= TARGET_P, its recall */
    double r80;       /* best recall at precision >= 0.80 */
    double p_at_r013; /* best precision at recall >= 0.13 */
} qqp_summary_t;

static qqp_summary_t summarise(const float *sim, const int *dup, const int *idx, int n)
{
    qqp_summary_t s = {.t85 = -1};
    for (int k = 0; k < N_THRESH; k++) {
        prf_t x = score(sim, dup, idx, n, thresh(k));
        if (x.f > s.best_f) {
            s.best_f = x.f;
            s.best_f_t = thresh(k);
            s.best_f_p = x.p;
            s.best_f_r = x.r;
        }
        if (s.t85 < 0 && x.p >= TARGET_P && x.tp > 0) {
            s.t85 = thresh(k);
            s.r85 = x.r;
        }
        if (x.p >= 0.80 && x.r > s.r80)
            s.r80 = x.r;
        if (x.r >= 0.13 && x.p > s.p_at_r013)
            s.p_at_r013 = x.p;
    }
    return s;
}

static void print_summary_row(const char *name, qqp_summary_t s)
{
    printf("| %s | %.3f | %.3f | %.3f / %.3f | ", name, s.best_f, s.best_f_t, s.best_f_p,
           s.best_f_r);
    if (s.t85 >= 0)
        printf("%.3f | %.3f |", s.t85, s.r85);
    else
        printf("never | 0 |");
    printf(" %.3f | %.3f |\n", s.r80, s.p_at_r013);
}

static void print_sweep(const char *const *names, float *const *sims, int nm, const qqp_t *q,
                        const int *idx, int n)
{
    printf("| t |");
    for (int m = 0; m < nm; m++)
        printf(" %s P / R / F1 |", names[m]);
    printf("\n|---|");
    for (int m = 0; m < nm; m++)
        printf("---|");
    printf("\n");
    for (int k = 100; k < N_THRESH; k += 2) { /* 0.50 .. 0.99 step 0.01 */
        printf("| %.2f |", thresh(k));
        for (int m = 0; m < nm; m++) {
            prf_t x = score(sims[m], q->dup, idx, n, thresh(k));
            printf(" %.3f / %.3f / %.3f |", x.p, x.r, x.f);
        }
        printf("\n");
    }
    printf("\n");
}

static float *qqp_dense(const ah_embedder_t *e, const qqp_t *q)
{
    float *sim = ah_malloc(sizeof(float) * (size_t)q->n);
    dense_t a = embed_all(e, q->q1, q->n), b = embed_all(e, q->q2, q->n);
    for (int i = 0; i < q->n; i++) {
        float s = 0;
        for (int k = 0; k < a.dim; k++)
            s += a.v[(size_t)i * a.dim + k] * b.v[(size_t)i * b.dim + k];
        sim[i] = s;
    }
    ah_free(a.v);
    ah_free(b.v);
    return sim;
}

static float *qqp_tfidf(const qqp_t *q)
{
    int n = 2 * q->n;
    const char **texts = ah_malloc(sizeof(char *) * (size_t)n);
    int *all = ah_malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < q->n; i++) {
        texts[2 * i] = q->q1[i];
        texts[2 * i + 1] = q->q2[i];
    }
    for (int i = 0; i < n; i++)
        all[i] = i;
    sparse_t *s = tfidf(texts, n, all, n);
    float *sim = ah_malloc(sizeof(float) * (size_t)q->n);
    for (int i = 0; i < q->n; i++)
        sim[i] = sparse_dot(&s[2 * i], &s[2 * i + 1]);
    ah_free(s);
    ah_free(all);
    ah_free(texts);
    return sim;
}

/* ---- Banking77 replay ---------------------------------------------------------- */

typedef struct bank {
    int n, ncat;
    const char **text;
    int *cat;
    int *order; /* replay order: a fixed random permutation */
} bank_t;

/* Similarities of the replay: S[i * n + j] for j < i, positions in replay order. */
typedef struct simmat {
    int n;
    float *s;
    const int *cat; /* category by position */
} simmat_t;

static simmat_t simmat_dense(const dense_t *d, const int *pos, int n, const int *cat)
{
    simmat_t m = {.n = n, .cat = cat};
    m.s = ah_malloc(sizeof(float) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            m.s[(size_t)i * n + j] = dense_dot(d, pos[i], pos[j]);
    return m;
}

static simmat_t simmat_sparse(const sparse_t *s, const int *pos, int n, const int *cat)
{
    simmat_t m = {.n = n, .cat = cat};
    m.s = ah_malloc(sizeof(float) * (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            m.s[(size_t)i * n + j] = sparse_dot(&s[pos[i]], &s[pos[j]]);
    return m;
}

typedef enum {
    RULE_PLAIN,    /* best >= t */
    RULE_AGREE,    /* best >= t and the top-k stored neighbours share its category */
    RULE_MARGIN,   /* best >= t and best - second best >= margin (no labels) */
    RULE_CATMARGIN /* best >= t and best - best of another category >= margin */
} rule_t;

typedef struct replay {
    double hit_rate, precision;
    int hits, right, stored;
} replay_t;

static replay_t replay(const simmat_t *m, double t, rule_t rule, int k, double margin)
{
    replay_t r = {0};
    int *stored = ah_malloc(sizeof(int) * (size_t)m->n);
    int ns = 0;
    for (int i = 0; i < m->n; i++) {
        const float *row = m->s + (size_t)i * m->n;
        float top[TOPK_MAX];
        int topj[TOPK_MAX];
        int nt = 0;
        for (int s = 0; s < ns; s++) {
            float v = row[stored[s]];
            if (nt < k || v > top[nt - 1]) {
                int p = nt < k ? nt++ : nt - 1;
                while (p > 0 && top[p - 1] < v) {
                    top[p] = top[p - 1];
                    topj[p] = topj[p - 1];
                    p--;
                }
                top[p] = v;
                topj[p] = stored[s];
            }
        }
        int hit = nt > 0 && top[0] >= t;
        if (hit && rule == RULE_AGREE) {
            if (nt < k)
                hit = 0;
            for (int a = 1; hit && a < nt; a++)
                hit = m->cat[topj[a]] == m->cat[topj[0]];
        } else if (hit && rule == RULE_MARGIN) {
            hit = nt < 2 || top[0] - top[1] >= margin;
        } else if (hit && rule == RULE_CATMARGIN) {
            float other = -1;
            for (int s = 0; s < ns; s++)
                if (m->cat[stored[s]] != m->cat[topj[0]] && row[stored[s]] > other)
                    other = row[stored[s]];
            hit = top[0] - other >= margin;
        }
        if (hit) {
            r.hits++;
            r.right += m->cat[topj[0]] == m->cat[i];
        } else {
            stored[ns++] = i;
        }
    }
    r.stored = ns;
    r.hit_rate = (double)r.hits / m->n;
    r.precision = r.hits ? (double)r.right / r.hits : 1.0;
    ah_free(stored);
    return r;
}

typedef struct replay_summary {
    double hr[3]; /* best hit rate at precision >= 0.85, 0.90, 0.95 */
    double t[3];
} replay_summary_t;

static const double replay_targets[3] = {0.85, 0.90, 0.95};

/* Sweeps t over 0.30 .. 0.995; prints the rows when print. */
static replay_summary_t replay_sweep(const simmat_t *m, rule_t rule, int k, double margin,
                                     int print)
{
    replay_summary_t s = {{0}, {-1, -1, -1}};
    for (int i = 60; i < N_THRESH; i += 2) {
        replay_t r = replay(m, thresh(i), rule, k, margin);
        for (int g = 0; g < 3; g++)
            if (r.precision >= replay_targets[g] && r.hit_rate > s.hr[g]) {
                s.hr[g] = r.hit_rate;
                s.t[g] = thresh(i);
            }
        if (print && i >= 100 && (i % 10 == 0 || i >= 180))
            printf("| %.2f | %.3f | %.3f | %d |\n", thresh(i), r.hit_rate, r.precision, r.stored);
    }
    return s;
}

static void print_replay_row(const char *name, replay_summary_t s)
{
    printf("| %s |", name);
    for (int g = 0; g < 3; g++) {
        if (s.t[g] >= 0)
            printf(" %.3f (t %.2f) |", s.hr[g], s.t[g]);
        else
            printf(" - |");
    }
    printf("\n");
}

/* ---- learned on half the history ------------------------------------------------ */

/* Per-word factor 1 - H(category | word) / log(ncat), from the training texts,
 * smoothed toward the uniform distribution by SMOOTH pseudo-counts; unseen words
 * keep UNSEEN. */
#define LEARN_SMOOTH 0.02
#define LEARN_UNSEEN 0.5f
#define LEARN_POWER 2.0

typedef struct count_ctx {
    float *counts; /* vocab * ncat */
    int ncat, cat;
} count_ctx_t;

static void count_word(void *ctx, uint32_t ix)
{
    count_ctx_t *c = ctx;
    c->counts[(size_t)ix * c->ncat + c->cat] += 1;
}

static float *learn_word_factors(const ah_embedder_t *e, const bank_t *b, const int *train,
                                 int ntrain)
{
    uint32_t nv = ah_embed_sif_count(e);
    float *counts = ah_calloc((size_t)nv * b->ncat, sizeof(float));
    count_ctx_t c = {.counts = counts, .ncat = b->ncat};
    for (int i = 0; i < ntrain; i++) {
        c.cat = b->cat[train[i]];
        ah_embed_sif_words(e, b->text[train[i]], strlen(b->text[train[i]]), count_word, &c);
    }
    float *factor = ah_malloc(sizeof(float) * nv);
    for (uint32_t w = 0; w < nv; w++) {
        const float *row = counts + (size_t)w * b->ncat;
        double total = 0;
        for (int k = 0; k < b->ncat; k++)
            total += row[k];
        if (total == 0) {
            factor[w] = LEARN_UNSEEN;
            continue;
        }
        double h = 0, z = total + LEARN_SMOOTH * b->ncat;
        for (int k = 0; k < b->ncat; k++) {
            double p = (row[k] + LEARN_SMOOTH) / z;
            h -= p * log(p);
        }
        factor[w] = (float)pow(1.0 - h / log(b->ncat), LEARN_POWER);
    }
    ah_free(counts);
    return factor;
}

static dense_t embed_reweighed(const ah_embedder_t *e, const float *factor, const bank_t *b)
{
    dense_t d = {.n = b->n, .dim = e->dim};
    d.v = ah_calloc((size_t)b->n * (size_t)e->dim, sizeof(float));
    for (int i = 0; i < b->n; i++) {
        reweigh_t r = {.e = e, .factor = factor, .out = d.v + (size_t)i * e->dim};
        ah_embed_sif_words(e, b->text[i], strlen(b->text[i]), reweigh_word, &r);
        normalise(r.out, e->dim);
    }
    return d;
}

/* Symmetric eigen-decomposition (cyclic Jacobi): a[n*n] is destroyed, eigenvalues
 * into w[n], eigenvectors into the columns of v[n*n]. */
static void jacobi(double *a, int n, double *w, double *v)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            v[i * n + j] = i == j;
    for (int sweep = 0; sweep < JACOBI_SWEEPS; sweep++) {
        double off = 0;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++)
                off += a[p * n + q] * a[p * n + q];
        if (off < 1e-22)
            break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[p * n + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[q * n + q] - a[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {
                    double vkp = v[k * n + p], vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < n; i++)
        w[i] = a[i * n + i];
}

/* LDA on the training half's vectors: whiten the within-category scatter, keep
 * the directions of the category means. Returns P (out_dim x dim). */
static double *learn_lda(const dense_t *d, const bank_t *b, const int *train, int ntrain,
                         int *out_dim)
{
    int dim = d->dim, nc = b->ncat;
    double *mean = ah_calloc((size_t)nc * dim, sizeof(double));
    double *gmean = ah_calloc((size_t)dim, sizeof(double));
    int *cnt = ah_calloc((size_t)nc, sizeof(int));
    for (int i = 0; i < ntrain; i++) {
        const float *x = d->v + (size_t)train[i] * dim;
        int c = b->cat[train[i]];
        cnt[c]++;
        for (int k = 0; k < dim; k++) {
            mean[c * dim + k] += x[k];
            gmean[k] += x[k];
        }
    }
    for (int c = 0; c < nc; c++)
        for (int k = 0; cnt[c] && k < dim; k++)
            mean[c * dim + k] /= cnt[c];
    for (int k = 0; k < dim; k++)
        gmean[k] /= ntrain;
    double *sw = ah_calloc((size_t)dim * dim, sizeof(double));
    for (int i = 0; i < ntrain; i++) {
        const float *x = d->v + (size_t)train[i] * dim;
        const double *mu = mean + b->cat[train[i]] * dim;
        for (int p = 0; p < dim; p++)
            for (int q = 0; q < dim; q++)
                sw[p * dim + q] += (x[p] - mu[p]) * (x[q] - mu[q]) / ntrain;
    }
    double trace = 0;
    for (int p = 0; p < dim; p++)
        trace += sw[p * dim + p];
    for (int p = 0; p < dim; p++)
        sw[p * dim + p] += LDA_REG * trace / dim;
    double *w = ah_malloc(sizeof(double) * dim), *v = ah_malloc(sizeof(double) * dim * dim);
    jacobi(sw, dim, w, v);
    /* W = V diag(1/sqrt(w)) V^T */
    double *white = ah_calloc((size_t)dim * dim, sizeof(double));
    for (int p = 0; p < dim; p++)
        for (int q = 0; q < dim; q++)
            for (int k = 0; k < dim; k++)
                white[p * dim + q] += v[p * dim + k] * v[q * dim + k] / sqrt(w[k]);
    /* Between-category scatter of whitened means. */
    double *sb = ah_calloc((size_t)dim * dim, sizeof(double));
    double *wm = ah_malloc(sizeof(double) * dim);
    for (int c = 0; c < nc; c++) {
        if (!cnt[c])
            continue;
        for (int p = 0; p < dim; p++) {
            wm[p] = 0;
            for (int q = 0; q < dim; q++)
                wm[p] += white[p * dim + q] * (mean[c * dim + q] - gmean[q]);
        }
        for (int p = 0; p < dim; p++)
            for (int q = 0; q < dim; q++)
                sb[p * dim + q] += cnt[c] * wm[p] * wm[q] / ntrain;
    }
    double *w2 = ah_malloc(sizeof(double) * dim), *v2 = ah_malloc(sizeof(double) * dim * dim);
    jacobi(sb, dim, w2, v2);
    /* Keep the nc - 1 largest (at most dim) directions, scaled by sqrt(eigenvalue). */
    int r = nc - 1 < dim ? nc - 1 : dim;
    int *ord = ah_malloc(sizeof(int) * dim);
    for (int i = 0; i < dim; i++)
        ord[i] = i;
    for (int i = 0; i < dim; i++)
        for (int j = i + 1; j < dim; j++)
            if (w2[ord[j]] > w2[ord[i]]) {
                int t = ord[i];
                ord[i] = ord[j];
                ord[j] = t;
            }
    double *proj = ah_calloc((size_t)r * dim, sizeof(double));
    for (int a = 0; a < r; a++)
        for (int q = 0; q < dim; q++)
            for (int p = 0; p < dim; p++)
                proj[a * dim + q] += v2[p * dim + ord[a]] * white[p * dim + q];
    *out_dim = r;
    ah_free(mean);
    ah_free(gmean);
    ah_free(cnt);
    ah_free(sw);
    ah_free(w);
    ah_free(v);
    ah_free(white);
    ah_free(sb);
    ah_free(wm);
    ah_free(w2);
    ah_free(v2);
    ah_free(ord);
    return proj;
}

static dense_t project(const dense_t *d, const double *proj, int r)
{
    dense_t o = {.n = d->n, .dim = r};
    o.v = ah_calloc((size_t)d->n * r, sizeof(float));
    for (int i = 0; i < d->n; i++) {
        const float *x = d->v + (size_t)i * d->dim;
        float *y = o.v + (size_t)i * r;
        double nx = 0;
        for (int k = 0; k < d->dim; k++)
            nx += (double)x[k] * x[k];
        if (nx == 0)
            continue;
        for (int a = 0; a < r; a++) {
            double s = 0;
            for (int k = 0; k < d->dim; k++)
                s += proj[a * d->dim + k] * x[k];
            y[a] = (float)s;
        }
        normalise(y, r);
    }
    return o;
}

/* ---- re-ranking check (src/cache/rerank.c) ------------------------------------------ */

/* What the check found for one pair, as the decision rules below read it. */
typedef struct rr_val {
    float score, unmatched, align;
    int hard; /* an unknown-token or negation mismatch (per the options) */
} rr_val_t;

typedef enum {
    RR_PLAIN,   /* cosine >= t (no check) */
    RR_FILTER,  /* cosine >= t and check score >= param */
    RR_PENALTY, /* cosine - param x unmatched weight share >= t, hard mismatches rejected */
    RR_ALIGN    /* cosine - param x (1 - alignment) >= t, hard mismatches rejected */
} rr_kind_t;

typedef struct rr_method {
    const char *name;
    const ah_rerank_opts_t *o;
    rr_kind_t kind;
    double param;
} rr_method_t;

static rr_val_t rr_eval(const ah_embedder_t *e, const ah_rerank_opts_t *o, const char *a,
                        const char *b)
{
    ah_rerank_t r;
    ah_rerank_compare(e, o, a, strlen(a), b, strlen(b), &r);
    rr_val_t v = {.score = r.worst, .unmatched = r.unmatched, .align = r.align, .hard = r.reject};
    return v;
}

static double rr_value(const rr_method_t *m, float cos, const rr_val_t *v)
{
    switch (m->kind) {
    case RR_FILTER:
        return !v->hard && v->score >= m->param ? cos : -1;
    case RR_PENALTY:
        return v->hard ? -1 : cos - m->param * v->unmatched;
    case RR_ALIGN:
        return v->hard ? -1 : cos - m->param * (1 - v->align);
    default:
        return cos;
    }
}

/* Memo of the check on replay pairs (i, j), i > j, by replay position. */
#define RR_MEMO_BITS 21

typedef struct rr_memo {
    const ah_embedder_t *e;
    const ah_rerank_opts_t *o;
    const char *const *text; /* by replay position */
    uint64_t *key;           /* (i << 32 | j) + 1, 0 empty */
    rr_val_t *val;
    long calls;
} rr_memo_t;

static rr_val_t rr_get(rr_memo_t *mm, int i, int j)
{
    uint64_t k = ((uint64_t)i << 32 | (uint32_t)j) + 1;
    size_t mask = ((size_t)1 << RR_MEMO_BITS) - 1;
    size_t b = (size_t)((k * 0x9E3779B97F4A7C15ull) >> (64 - RR_MEMO_BITS));
    while (mm->key[b] && mm->key[b] != k)
        b = (b + 1) & mask;
    if (!mm->key[b]) {
        mm->key[b] = k;
        mm->val[b] = rr_eval(mm->e, mm->o, mm->text[i], mm->text[j]);
        mm->calls++;
    }
    return mm->val[b];
}

/* The replay of section 2, with the check applied to the best stored candidate. */
static replay_t replay_rr(const simmat_t *m, rr_memo_t *mm, const rr_method_t *rm, double t)
{
    replay_t r = {0};
    int *stored = ah_malloc(sizeof(int) * (size_t)m->n);
    int ns = 0;
    for (int i = 0; i < m->n; i++) {
        const float *row = m->s + (size_t)i * m->n;
        float best = -2;
        int bj = -1;
        for (int s = 0; s < ns; s++)
            if (row[stored[s]] > best) {
                best = row[stored[s]];
                bj = stored[s];
            }
        int hit = bj >= 0 && best >= t;
        if (hit && rm->kind != RR_PLAIN) {
            rr_val_t v = rr_get(mm, i, bj);
            hit = rr_value(rm, best, &v) >= t;
        }
        if (hit) {
            r.hits++;
            r.right += m->cat[bj] == m->cat[i];
        } else {
            stored[ns++] = i;
        }
    }
    r.stored = ns;
    r.hit_rate = (double)r.hits / m->n;
    r.precision = r.hits ? (double)r.right / r.hits : 1.0;
    ah_free(stored);
    return r;
}

/* Thresholds 0.50 .. 0.99, step 0.01. */
static replay_summary_t replay_rr_sweep(const simmat_t *m, rr_memo_t *mm, const rr_method_t *rm,
                                        int print)
{
    replay_summary_t s = {{0}, {-1, -1, -1}};
    for (int i = 100; i < N_THRESH; i += 2) {
        replay_t r = replay_rr(m, mm, rm, thresh(i));
        for (int g = 0; g < 3; g++)
            if (r.precision >= replay_targets[g] && r.hit_rate > s.hr[g]) {
                s.hr[g] = r.hit_rate;
                s.t[g] = thresh(i);
            }
        if (print && (i % 10 == 0 || i >= 170))
            printf("| %.2f | %.3f | %.3f | %d |\n", thresh(i), r.hit_rate, r.precision, r.stored);
    }
    return s;
}

/* One QQP row: best F1, best recall at precision 0.80 / 0.85 / 0.90 (with t), best
 * precision at recall 0.1 / 0.2 / 0.3 / 0.4. */
static void rr_qqp_row(const char *name, const float *v, const int *dup, const int *idx, int n)
{
    double bf = 0, bft = 0, rp[3] = {0}, tp[3] = {-1, -1, -1}, pr[4] = {0};
    const double ptarget[3] = {0.80, 0.85, 0.90}, rtarget[4] = {0.1, 0.2, 0.3, 0.4};
    for (int k = 0; k < N_THRESH; k++) {
        prf_t x = score(v, dup, idx, n, thresh(k));
        if (x.f > bf) {
            bf = x.f;
            bft = thresh(k);
        }
        for (int g = 0; g < 3; g++)
            if (x.tp > 0 && x.p >= ptarget[g] && x.r > rp[g]) {
                rp[g] = x.r;
                tp[g] = thresh(k);
            }
        for (int g = 0; g < 4; g++)
            if (x.r >= rtarget[g] && x.p > pr[g])
                pr[g] = x.p;
    }
    printf("| %s | %.3f (t %.3f) |", name, bf, bft);
    for (int g = 0; g < 3; g++) {
        if (tp[g] >= 0)
            printf(" %.3f (t %.3f) |", rp[g], tp[g]);
        else
            printf(" - |");
    }
    for (int g = 0; g < 4; g++)
        printf(" %.3f |", pr[g]);
    printf("\n");
}

static int cmp_float_asc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Option sets and rules compared; "default" is ah_rerank_defaults. */
enum { O_DEF, O_W05, O_W07, O_W09, O_QONLY, O_NOUNK, O_NONEG, O_COUNT };

static const char *const rr_oname[O_COUNT] = {
    "default", "content 0.5", "content 0.7", "content 0.9", "query side only",
    "no unknown-token rule", "no negation rule"};

static void rr_options(ah_rerank_opts_t *os)
{
    for (int k = 0; k < O_COUNT; k++)
        os[k] = ah_rerank_defaults;
    os[O_W05].content_weight = 0.5f;
    os[O_W07].content_weight = 0.7f;
    os[O_W09].content_weight = 0.9f;
    os[O_QONLY].symmetric = 0;
    os[O_NOUNK].exact_unknown = 0;
    os[O_NONEG].negation = 0;
}

typedef struct rr_row {
    int opts;
    rr_kind_t kind;
    double param;
} rr_row_t;

static const rr_row_t rr_rows[] = {
    {O_DEF, RR_PLAIN, 0},
    {O_DEF, RR_FILTER, 0.3},
    {O_DEF, RR_FILTER, 0.4},
    {O_DEF, RR_FILTER, 0.5},
    {O_DEF, RR_FILTER, 0.6},
    {O_DEF, RR_FILTER, 0.7},
    {O_W05, RR_FILTER, 0.5},
    {O_DEF, RR_PENALTY, 0.4},
    {O_DEF, RR_PENALTY, 1.0},
    {O_W05, RR_ALIGN, 0.3},
    {O_W05, RR_ALIGN, 0.5},
    {O_W05, RR_ALIGN, 1.0},
    {O_W07, RR_ALIGN, 0.3},
    {O_W07, RR_ALIGN, 0.5},
    {O_W07, RR_ALIGN, 1.0},
    {O_DEF, RR_ALIGN, 0.3},
    {O_DEF, RR_ALIGN, 0.4},
    {O_DEF, RR_ALIGN, 0.5},
    {O_DEF, RR_ALIGN, 0.7},
    {O_DEF, RR_ALIGN, 1.0},
    {O_W09, RR_ALIGN, 0.3},
    {O_W09, RR_ALIGN, 0.5},
    {O_W09, RR_ALIGN, 1.0},
    {O_QONLY, RR_ALIGN, 0.5},
    {O_NOUNK, RR_ALIGN, 0.5},
    {O_NONEG, RR_ALIGN, 0.5},
};
#define RR_NROWS (sizeof rr_rows / sizeof rr_rows[0])

static void rr_row_name(const rr_row_t *r, char *buf, size_t n)
{
    const char *o = rr_oname[r->opts];
    switch (r->kind) {
    case RR_FILTER:
        snprintf(buf, n, "%s: cosine >= t and worst word >= %.2f", o, r->param);
        break;
    case RR_PENALTY:
        snprintf(buf, n, "%s: cosine - %.1f x unmatched >= t", o, r->param);
        break;
    case RR_ALIGN:
        snprintf(buf, n, "%s: cosine - %.1f x (1 - align) >= t", o, r->param);
        break;
    default:
        snprintf(buf, n, "cosine >= t, no check (current default)");
    }
}

static void rerank_section(const ah_embedder_t *e, const qqp_t *q, const float *qcos,
                           const bank_t *b, const simmat_t *m_def)
{
    ah_rerank_opts_t os[O_COUNT];
    rr_options(os);
    printf("## 4. Re-ranking check (src/cache/rerank.c)\n\n"
           "The best candidate (highest cosine) goes through the word-level check. Rules: "
           "\"worst word\" is the lowest cosine between a content word absent from the other "
           "prompt and its nearest word there; \"unmatched\" the SIF-weighted share of content "
           "words whose nearest word is below %.2f; \"align\" the SIF-weighted mean of the "
           "nearest-word cosines (1 for a word present on both sides). Unless said otherwise, an "
           "unknown token (number, name) on one side only or a negation on one side only "
           "rejects. Default options: content words have SIF weight >= %.2f, both sides "
           "checked.\n\n",
           (double)ah_rerank_defaults.match_sim, (double)ah_rerank_defaults.content_weight);
    /* QQP: the check on every pair, per option set. */
    rr_val_t *qv[O_COUNT];
    for (int k = 0; k < O_COUNT; k++) {
        qv[k] = ah_malloc(sizeof(rr_val_t) * (size_t)q->n);
        for (int i = 0; i < q->n; i++)
            qv[k][i] = rr_eval(e, &os[k], q->q1[i], q->q2[i]);
    }
    float *v = ah_malloc(sizeof(float) * (size_t)q->n);
    for (int pass = 0; pass < 2; pass++) {
        const int *idx = pass ? q->balanced : NULL;
        int n = pass ? q->nbalanced : q->n;
        printf("### QQP, %s\n\n| rule | best F1 | best R at P >= 0.80 | at P >= 0.85 | at P >= "
               "0.90 | best P at R >= 0.1 | R >= 0.2 | R >= 0.3 | R >= 0.4 |\n|---|---|---|---|"
               "---|---|---|---|---|\n",
               pass ? "balanced subsample" : "whole file");
        for (size_t r = 0; r < RR_NROWS; r++) {
            rr_method_t rm = {.o = &os[rr_rows[r].opts], .kind = rr_rows[r].kind,
                              .param = rr_rows[r].param};
            for (int i = 0; i < q->n; i++)
                v[i] = (float)rr_value(&rm, qcos[i], &qv[rr_rows[r].opts][i]);
            char name[160];
            rr_row_name(&rr_rows[r], name, sizeof name);
            rr_qqp_row(name, v, q->dup, idx, n);
        }
        printf("\n");
    }
    ah_free(v);

    /* Banking77 replay with the check on the best stored candidate. */
    const char **text = ah_malloc(sizeof(char *) * (size_t)b->n);
    for (int i = 0; i < b->n; i++)
        text[i] = b->text[b->order[i]];
    printf("### Banking77 replay, the check on the best stored candidate\n\nBest hit rate at a "
           "precision target (t from 0.50 to 0.99, step 0.01).\n\n| rule | P >= 0.85 | P >= "
           "0.90 | P >= 0.95 |\n|---|---|---|---|\n");
    rr_memo_t mm[O_COUNT];
    for (int k = 0; k < O_COUNT; k++) {
        mm[k] = (rr_memo_t){.e = e, .o = &os[k], .text = text};
        mm[k].key = ah_calloc((size_t)1 << RR_MEMO_BITS, sizeof(uint64_t));
        mm[k].val = ah_malloc(sizeof(rr_val_t) << RR_MEMO_BITS);
    }
    for (size_t r = 0; r < RR_NROWS; r++) {
        rr_method_t rm = {.o = &os[rr_rows[r].opts], .kind = rr_rows[r].kind,
                          .param = rr_rows[r].param};
        char name[160];
        rr_row_name(&rr_rows[r], name, sizeof name);
        print_replay_row(name, replay_rr_sweep(m_def, &mm[rr_rows[r].opts], &rm, 0));
    }
    printf("\n");
    {
        rr_method_t rm = {.o = &os[O_DEF], .kind = RR_ALIGN, .param = AH_RERANK_DEFAULT_PENALTY};
        printf("Recommended rule (default options, cosine - %.1f x (1 - align) >= t):\n\n| t | "
               "hit rate | precision | stored |\n|---|---|---|---|\n",
               (double)AH_RERANK_DEFAULT_PENALTY);
        replay_rr_sweep(m_def, &mm[O_DEF], &rm, 1);
        printf("\n");
    }

    /* Cost of one check (the default options), on the QQP pairs. */
    int rounds = 3, nt = q->n * rounds, k = 0;
    float *us = ah_malloc(sizeof(float) * (size_t)nt);
    double sink = 0;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < q->n; i++) {
            double t0 = now_us();
            sink += ah_rerank_similarity(e, qcos[i], q->q1[i], strlen(q->q1[i]), q->q2[i],
                                         strlen(q->q2[i]));
            us[k++] = (float)(now_us() - t0);
        }
    qsort(us, (size_t)nt, sizeof(float), cmp_float_asc);
    printf("Check cost (ah_rerank_similarity, default options, on the %d QQP pairs x %d rounds, "
           "one thread): median %.2f us, p99 %.2f us (checksum %.0f).\n\n",
           q->n, rounds, us[nt / 2], us[(size_t)nt * 99 / 100], sink);
    ah_free(us);
    for (int i = 0; i < O_COUNT; i++) {
        ah_free(mm[i].key);
        ah_free(mm[i].val);
        ah_free(qv[i]);
    }
    ah_free(text);
}

/* ---- 5. aliases: evidence from the cache's own hits ------------------------------- */

/* The Banking77 replay with aliases. The index holds vectors of two kinds: entries (a
 * stored query with its own answer) and aliases (a query that was served an entry's
 * answer, pointing to that entry, its root). For a query, the AL_CAND nearest vectors by
 * cosine go through the re-ranking check (default options, cosine - 0.5 x (1 - align),
 * i.e. ah_rerank_similarity; an alias is checked against its own prompt) and are sorted
 * by the score after the check. The query is served root E when
 *   direct:    the best vector scores >= t_high, or
 *   agreement: the k best vectors all score >= t_low and all have root E (k 0: off).
 * A direct hit adds the query as an alias of E (every hit, when alias_all); a served
 * query adds nothing else; a miss is stored as a new entry. A hit is right when E's own
 * query has the query's intent; an alias is wrong when its query's intent differs from
 * E's. No label is read by the rule itself. */
#define AL_CAND 8

static int *cats_of(const bank_t *b, const int *pos, int n);

typedef struct al_params {
    double t_high, t_low;
    int k;         /* agreement of the k best vectors; 0: direct hits only */
    int aliases;   /* 0: no aliases (the check on the nearest candidates only) */
    int alias_all; /* 1: agreement hits add aliases too */
    int entry_direct; /* 1: a direct hit needs an entry (aliases only count in agreement) */
} al_params_t;

typedef struct al_result {
    replay_t r;
    int direct, agree, direct_alias; /* hits by kind; direct hits whose best was an alias */
    int right_direct, right_agree;
    int aliases, wrong_aliases;
} al_result_t;

static al_result_t replay_alias(const simmat_t *m, rr_memo_t *mm, const al_params_t *p)
{
    const rr_method_t rm = {.o = mm->o, .kind = RR_ALIGN, .param = AH_RERANK_DEFAULT_PENALTY};
    al_result_t a = {0};
    int *vq = ah_malloc(sizeof(int) * (size_t)m->n);   /* vector -> its query's position */
    int *root = ah_malloc(sizeof(int) * (size_t)m->n); /* vector -> the entry it serves */
    int nv = 0, ns = 0;
    for (int i = 0; i < m->n; i++) {
        const float *row = m->s + (size_t)i * m->n;
        float top[AL_CAND];
        int tv[AL_CAND], nt = 0;
        for (int v = 0; v < nv; v++) {
            float c = row[vq[v]];
            if (nt < AL_CAND || c > top[nt - 1]) {
                int q = nt < AL_CAND ? nt++ : nt - 1;
                while (q > 0 && top[q - 1] < c) {
                    top[q] = top[q - 1];
                    tv[q] = tv[q - 1];
                    q--;
                }
                top[q] = c;
                tv[q] = v;
            }
        }
        /* Score after the check, sorted descending. */
        double adj[AL_CAND];
        for (int c = 0; c < nt; c++) {
            rr_val_t rv = rr_get(mm, i, vq[tv[c]]);
            adj[c] = rr_value(&rm, top[c], &rv);
        }
        for (int c = 1; c < nt; c++)
            for (int d = c; d > 0 && adj[d] > adj[d - 1]; d--) {
                double x = adj[d];
                adj[d] = adj[d - 1];
                adj[d - 1] = x;
                int y = tv[d];
                tv[d] = tv[d - 1];
                tv[d - 1] = y;
            }
        int kind = 0, e = -1, via = 0; /* 1 direct, 2 agreement */
        for (int c = 0; c < nt && adj[c] >= p->t_high; c++)
            if (!p->entry_direct || vq[tv[c]] == root[tv[c]]) {
                kind = 1;
                e = root[tv[c]];
                via = vq[tv[c]] != e;
                break;
            }
        if (!kind && p->k > 0 && nt >= p->k) {
            int ok = 1;
            for (int c = 0; ok && c < p->k; c++)
                ok = adj[c] >= p->t_low && root[tv[c]] == root[tv[0]];
            if (ok) {
                kind = 2;
                e = root[tv[0]];
            }
        }
        if (kind) {
            int right = m->cat[e] == m->cat[i];
            a.r.hits++;
            a.r.right += right;
            if (kind == 1) {
                a.direct++;
                a.right_direct += right;
                a.direct_alias += via;
            } else {
                a.agree++;
                a.right_agree += right;
            }
            if (p->aliases && (kind == 1 || p->alias_all)) {
                vq[nv] = i;
                root[nv++] = e;
                a.aliases++;
                a.wrong_aliases += !right;
            }
        } else {
            vq[nv] = i;
            root[nv++] = i;
            ns++;
        }
    }
    a.r.stored = ns;
    a.r.hit_rate = (double)a.r.hits / m->n;
    a.r.precision = a.r.hits ? (double)a.r.right / a.r.hits : 1.0;
    ah_free(vq);
    ah_free(root);
    return a;
}

static const double al_thigh[] = {0.88, 0.90, 0.93, 0.96};
static const double al_tlow[] = {0.70, 0.75, 0.80, 0.85};
static const int al_k[] = {0, 2, 3};
#define AL_NHIGH (int)(sizeof al_thigh / sizeof al_thigh[0])
#define AL_NLOW (int)(sizeof al_tlow / sizeof al_tlow[0])
#define AL_NK (int)(sizeof al_k / sizeof al_k[0])
#define AL_NSET (AL_NHIGH * (1 + (AL_NK - 1) * AL_NLOW))

/* The settings of one mode, in a fixed order (k 0 once per t_high). */
static int al_settings(al_params_t *out, int aliases, int alias_all, int entry_direct)
{
    int n = 0;
    for (int h = 0; h < AL_NHIGH; h++)
        for (int k = 0; k < AL_NK; k++)
            for (int l = 0; l < (al_k[k] ? AL_NLOW : 1); l++)
                out[n++] = (al_params_t){.t_high = al_thigh[h], .t_low = al_k[k] ? al_tlow[l] : 0,
                                         .k = al_k[k], .aliases = aliases,
                                         .alias_all = alias_all,
                                         .entry_direct = entry_direct};
    return n;
}

static void al_row(const al_params_t *p, const al_result_t *a)
{
    char lo[16] = "-";
    if (p->k)
        snprintf(lo, sizeof lo, "%.2f", p->t_low);
    printf("| %.2f | %s | %d | %.3f | %.3f | %d (%.3f) | %d (%.3f) | %d | %d | %d (%.3f) |\n",
           p->t_high, lo, p->k, a->r.hit_rate, a->r.precision, a->direct,
           a->direct ? (double)a->right_direct / a->direct : 1.0, a->agree,
           a->agree ? (double)a->right_agree / a->agree : 1.0, a->direct_alias, a->aliases,
           a->wrong_aliases, a->aliases ? (double)a->wrong_aliases / a->aliases : 0.0);
}

static const char *const al_head =
    "| t_high | t_low | k | hit rate | precision | direct hits (precision) | agreement hits "
    "(precision) | direct via an alias | aliases | wrong aliases (share) |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n";

/* Best hit rate at each precision target over n results; index of the setting or -1. */
static void al_best(const al_result_t *a, int n, int best[3])
{
    for (int g = 0; g < 3; g++) {
        best[g] = -1;
        for (int i = 0; i < n; i++)
            if (a[i].r.precision >= replay_targets[g] &&
                (best[g] < 0 || a[i].r.hit_rate > a[best[g]].r.hit_rate))
                best[g] = i;
    }
}

static void al_setting_name(const al_params_t *p, char *buf, size_t n)
{
    if (!p->aliases)
        snprintf(buf, n, "t %.2f", p->t_high);
    else if (p->k)
        snprintf(buf, n, "t_high %.2f, t_low %.2f, k %d", p->t_high, p->t_low, p->k);
    else
        snprintf(buf, n, "t_high %.2f, direct only", p->t_high);
}

static void al_best_row(const char *name, const al_params_t *p, const al_result_t *a, int n)
{
    int best[3];
    al_best(a, n, best);
    printf("| %s |", name);
    for (int g = 0; g < 3; g++) {
        char s[64];
        if (best[g] < 0) {
            printf(" - |");
            continue;
        }
        al_setting_name(&p[best[g]], s, sizeof s);
        printf(" %.3f (%s; %d aliases, %d wrong) |", a[best[g]].r.hit_rate, s,
               a[best[g]].aliases, a[best[g]].wrong_aliases);
    }
    printf("\n");
}

#define AL_NBASE 23 /* no aliases: t 0.75 .. 0.97 */
#define AL_NMODE 4 /* no aliases; aliases from direct hits; from every hit; agreement only */

typedef struct al_run {
    al_params_t p[AL_NMODE][AL_NSET > AL_NBASE ? AL_NSET : AL_NBASE];
    al_result_t a[AL_NMODE][AL_NSET > AL_NBASE ? AL_NSET : AL_NBASE];
    int n[AL_NMODE];
    long checks;
} al_run_t;

/* Every setting of every mode on the replay of positions pos[0..n). */
static void al_replay_all(const ah_embedder_t *e, const dense_t *d, const bank_t *b,
                          const int *pos, int n, al_run_t *out)
{
    int *cat = cats_of(b, pos, n);
    simmat_t m = simmat_dense(d, pos, n, cat);
    const char **text = ah_malloc(sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++)
        text[i] = b->text[pos[i]];
    rr_memo_t mm = {.e = e, .o = &ah_rerank_defaults, .text = text};
    mm.key = ah_calloc((size_t)1 << RR_MEMO_BITS, sizeof(uint64_t));
    mm.val = ah_malloc(sizeof(rr_val_t) << RR_MEMO_BITS);
    out->n[0] = AL_NBASE;
    for (int i = 0; i < AL_NBASE; i++)
        out->p[0][i] = (al_params_t){.t_high = 0.75 + 0.01 * i};
    out->n[1] = al_settings(out->p[1], 1, 0, 0);
    out->n[2] = al_settings(out->p[2], 1, 1, 0);
    out->n[3] = al_settings(out->p[3], 1, 0, 1);
    for (int md = 0; md < AL_NMODE; md++)
        for (int i = 0; i < out->n[md]; i++)
            out->a[md][i] = replay_alias(&m, &mm, &out->p[md][i]);
    out->checks = mm.calls;
    ah_free(mm.key);
    ah_free(mm.val);
    ah_free(text);
    ah_free(m.s);
    ah_free(cat);
}

static const char *const al_mode_name[AL_NMODE] = {
    "no aliases (the check on the 8 nearest, best served)", "aliases from direct hits",
    "aliases from every hit (agreement hits too)",
    "aliases from direct hits, counted in agreement only (a direct hit needs an entry)"};

static void alias_section(const ah_embedder_t *e, const bank_t *b)
{
    dense_t d = embed_all(e, b->text, b->n);
    al_run_t *run = ah_malloc(sizeof *run);
    printf("## 5. Aliases: evidence from the cache's own hits (Banking77 replay)\n\n"
           "The %d nearest vectors (entries and aliases) by cosine go through the re-ranking "
           "check (cosine - %.1f x (1 - align), default options; an alias against its own "
           "prompt) and are sorted by the score after it. Served: root E of the best when it "
           "scores >= t_high (direct), or when the k best all score >= t_low and all have root "
           "E (agreement; k - is off). A direct hit adds the query's vector as an alias of E "
           "(\"every hit\": agreement hits too). Right: E's own query has the query's intent. "
           "Wrong alias: the served query's intent differs from E's.\n\n",
           AL_CAND, (double)AH_RERANK_DEFAULT_PENALTY);
    double t0 = now_us();
    al_replay_all(e, &d, b, b->order, b->n, run);
    printf("### Whole file (%d queries, the replay order of section 2)\n\nBest hit rate at a "
           "precision target (no aliases: t 0.75 .. 0.97 step 0.01; aliases: t_high in {0.88, "
           "0.90, 0.93, 0.96}, t_low in {0.70, 0.75, 0.80, 0.85}, k in {-, 2, 3}):\n\n| method "
           "| P >= 0.85 | P >= 0.90 | P >= 0.95 |\n|---|---|---|---|\n",
           b->n);
    for (int md = 0; md < AL_NMODE; md++)
        al_best_row(al_mode_name[md], run->p[md], run->a[md], run->n[md]);
    printf("\n");
    for (int md = 0; md < AL_NMODE; md++) {
        printf("%s:\n\n%s", al_mode_name[md], al_head);
        for (int i = 0; i < run->n[md]; i++)
            al_row(&run->p[md][i], &run->a[md][i]);
        printf("\n");
    }
    printf("(%ld distinct checks, %.1f s for the whole-file settings.)\n\n", run->checks,
           (now_us() - t0) / 1e6);

    /* Halves: choose the setting on half A's replay, report it on half B's. */
    int half = b->n / 2, nb = b->n - half;
    al_run_t *ra = ah_malloc(sizeof *ra);
    al_replay_all(e, &d, b, b->order, half, ra);
    al_replay_all(e, &d, b, b->order + half, nb, run);
    printf("### Halves: setting chosen on half A's replay, measured on half B's\n\nEach half "
           "(%d / %d queries) replayed alone from an empty cache. Per target, the setting with "
           "the best hit rate on A (at precision >= the target there) is run on B; \"B's own "
           "best\" chooses on B itself (optimistic).\n\n| method | target | setting chosen "
           "on A | A hit rate / precision | B hit rate / precision | B's own best |\n|---|---|"
           "---|---|---|---|\n",
           half, nb);
    for (int md = 0; md < AL_NMODE; md++) {
        int ba[3], bb[3];
        al_best(ra->a[md], ra->n[md], ba);
        al_best(run->a[md], run->n[md], bb);
        for (int g = 0; g < 3; g++) {
            char s[64] = "-";
            printf("| %s | %.2f |", al_mode_name[md], replay_targets[g]);
            if (ba[g] < 0) {
                printf(" - | - | - |");
            } else {
                const al_result_t *x = &ra->a[md][ba[g]], *y = &run->a[md][ba[g]];
                al_setting_name(&ra->p[md][ba[g]], s, sizeof s);
                printf(" %s | %.3f / %.3f | %.3f / %.3f |", s, x->r.hit_rate, x->r.precision,
                       y->r.hit_rate, y->r.precision);
            }
            if (bb[g] < 0)
                printf(" - |\n");
            else
                printf(" %.3f |\n", run->a[md][bb[g]].r.hit_rate);
        }
    }
    printf("\nHalf B, aliases from direct hits:\n\n%s", al_head);
    for (int i = 0; i < run->n[1]; i++)
        al_row(&run->p[1][i], &run->a[1][i]);
    printf("\n");
    ah_free(ra);
    ah_free(run);
    ah_free(d.v);
}

/* ---- main ------------------------------------------------------------------------- */

typedef struct variant {
    const char *name;
    ah_embedder_t *e;
} variant_t;

static ah_embedder_t *open_or_die(const char *path, const ah_embed_sif_opts_t *o)
{
    char err[512];
    ah_embedder_t *e = ah_embed_open_sif_opts(path, o, err, sizeof err);
    if (!e) {
        fprintf(stderr, "eval: %s\n", err);
        exit(1);
    }
    return e;
}

static void speed(const ah_embedder_t *e, const bank_t *b, const qqp_t *q)
{
    int n = b->n + q->n;
    double *us = ah_malloc(sizeof(double) * (size_t)n * SPEED_ROUNDS);
    float v[AH_EMBED_MAX_DIM];
    int k = 0;
    size_t bytes = 0;
    for (int r = 0; r < SPEED_ROUNDS; r++)
        for (int i = 0; i < n; i++) {
            const char *t = i < b->n ? b->text[i] : q->q1[i - b->n];
            size_t len = strlen(t);
            double t0 = now_us();
            ah_embed(e, t, len, v);
            us[k++] = now_us() - t0;
            bytes += r == 0 ? len : 0;
        }
    qsort(us, (size_t)k, sizeof(double), cmp_double);
    printf("Median %.2f us a query, p99 %.2f us (%d texts x %d rounds: banking77 queries and "
           "QQP first questions, mean %.0f bytes; one thread).\n\n",
           us[k / 2], us[(size_t)k * 99 / 100], n, SPEED_ROUNDS, (double)bytes / n);
    ah_free(us);
}

static void load_qqp(const char *path, qqp_t *q)
{
    size_t len;
    char *buf = slurp(path, &len);
    int n;
    row_t *rows = csv_rows(buf, len, 3, &n);
    q->n = n;
    q->q1 = ah_malloc(sizeof(char *) * (size_t)n);
    q->q2 = ah_malloc(sizeof(char *) * (size_t)n);
    q->dup = ah_malloc(sizeof(int) * (size_t)n);
    int *neg = ah_malloc(sizeof(int) * (size_t)n), nneg = 0, npos = 0;
    q->balanced = ah_malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) {
        q->q1[i] = rows[i].f[0];
        q->q2[i] = rows[i].f[1];
        q->dup[i] = rows[i].f[2][0] == '1';
        if (q->dup[i])
            q->balanced[npos++] = i;
        else
            neg[nneg++] = i;
    }
    shuffle(neg, nneg);
    q->nbalanced = npos;
    for (int i = 0; i < npos && i < nneg; i++)
        q->balanced[q->nbalanced++] = neg[i];
    ah_free(neg);
    ah_free(rows);
}

static void load_bank(const char *path, bank_t *b)
{
    size_t len;
    char *buf = slurp(path, &len);
    int n;
    row_t *rows = csv_rows(buf, len, 2, &n);
    b->n = n;
    b->text = ah_malloc(sizeof(char *) * (size_t)n);
    b->cat = ah_malloc(sizeof(int) * (size_t)n);
    b->order = ah_malloc(sizeof(int) * (size_t)n);
    const char **names = ah_malloc(sizeof(char *) * (size_t)n);
    b->ncat = 0;
    for (int i = 0; i < n; i++) {
        b->text[i] = rows[i].f[0];
        int c = 0;
        while (c < b->ncat && strcmp(names[c], rows[i].f[1]) != 0)
            c++;
        if (c == b->ncat)
            names[b->ncat++] = rows[i].f[1];
        b->cat[i] = c;
        b->order[i] = i;
    }
    shuffle(b->order, n);
    ah_free(names);
    ah_free(rows);
}

/* Category by replay position, for positions pos[0..n). */
static int *cats_of(const bank_t *b, const int *pos, int n)
{
    int *c = ah_malloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++)
        c[i] = b->cat[pos[i]];
    return c;
}

static void replay_table(const char *title, const simmat_t *m)
{
    printf("%s\n\n| t | hit rate | precision | stored |\n|---|---|---|---|\n", title);
    replay_sweep(m, RULE_PLAIN, 1, 0, 1);
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: eval QQP.csv BANKING.csv VECTORS.bin [NAME=VARIANT.bin ...]\n");
        return 2;
    }
    qqp_t q = {0};
    bank_t b = {0};
    load_qqp(argv[1], &q);
    load_bank(argv[2], &b);
    const char *vec = argv[3];
    if (getenv("SEMCACHE_ALIAS_ONLY")) {
        ah_embedder_t *e = open_or_die(vec, NULL);
        alias_section(e, &b);
        ah_embed_free(e);
        return 0;
    }
    if (getenv("SEMCACHE_RERANK_ONLY")) {
        ah_embedder_t *e = open_or_die(vec, NULL);
        float *qcos = qqp_dense(e, &q);
        int *bc = cats_of(&b, b.order, b.n);
        dense_t d = embed_all(e, b.text, b.n);
        simmat_t m = simmat_dense(&d, b.order, b.n, bc);
        rerank_section(e, &q, qcos, &b, &m);
        ah_free(m.s);
        ah_free(d.v);
        ah_free(bc);
        ah_free(qcos);
        ah_embed_free(e);
        return 0;
    }

    const ah_embed_sif_opts_t o_mean = {.weighting = 0, .remove_component = 0};
    const ah_embed_sif_opts_t o_sif = {.weighting = 1, .remove_component = 0};
    ah_embedder_t *e_def = open_or_die(vec, NULL);
    ah_embedder_t *e_mean = open_or_die(vec, &o_mean);
    ah_embedder_t *e_sif = open_or_die(vec, &o_sif);

    /* ---- 1. QQP ---- */
    printf("## 1. QQP pairs\n\n%d pairs (%d duplicates); balanced subsample: %d pairs (every "
           "duplicate and as many non-duplicates, seed %u).\n\n",
           q.n, (int)(q.nbalanced / 2), q.nbalanced, SEED);
    const char *names[] = {"GloVe mean", "SIF", "SIF - component (default)", "TF-IDF"};
    float *sims[4] = {qqp_dense(e_mean, &q), qqp_dense(e_sif, &q), qqp_dense(e_def, &q),
                      qqp_tfidf(&q)};
    for (int pass = 0; pass < 2; pass++) {
        const int *idx = pass ? q.balanced : NULL;
        int n = pass ? q.nbalanced : q.n;
        printf("### %s\n\n| method | best F1 | at t | P / R there | t for P >= %.2f | recall "
               "there | best R at P >= 0.80 | best P at R >= 0.13 |\n|---|---|---|---|---|---|---|"
               "---|\n",
               pass ? "Balanced subsample" : "Whole file (37% duplicates)", TARGET_P);
        for (int m = 0; m < 4; m++)
            print_summary_row(names[m], summarise(sims[m], q.dup, idx, n));
        printf("\n");
    }
    printf("Hybrid: lambda x SIF-component cosine + (1 - lambda) x cosine of the SIF-weighted "
           "bags of words (balanced subsample):\n\n| lambda | best F1 | at t | t for P >= %.2f | "
           "recall there | best R at P >= 0.80 | best P at R >= 0.13 |\n|---|---|---|---|---|---|"
           "---|\n",
           TARGET_P);
    {
        sparse_t *l1 = lexical(e_def, q.q1, q.n), *l2 = lexical(e_def, q.q2, q.n);
        float *h = ah_malloc(sizeof(float) * (size_t)q.n);
        const double lambdas[] = {0.0, 0.3, 0.5, 0.7};
        for (size_t li = 0; li < sizeof lambdas / sizeof lambdas[0]; li++) {
            for (int i = 0; i < q.n; i++)
                h[i] = (float)(lambdas[li] * sims[2][i] +
                               (1 - lambdas[li]) * sparse_dot(&l1[i], &l2[i]));
            qqp_summary_t x = summarise(h, q.dup, q.balanced, q.nbalanced);
            printf("| %.1f | %.3f | %.3f | ", lambdas[li], x.best_f, x.best_f_t);
            if (x.t85 >= 0)
                printf("%.3f | %.3f |", x.t85, x.r85);
            else
                printf("never | 0 |");
            printf(" %.3f | %.3f |\n", x.r80, x.p_at_r013);
        }
        printf("\n");
        ah_free(h);
        ah_free(l1);
        ah_free(l2);
    }
    printf("Sweep, balanced subsample (P / R / F1):\n\n");
    print_sweep(names, sims, 4, &q, q.balanced, q.nbalanced);

    /* SIF's a, on the balanced subsample. */
    printf("SIF parameter a (common component removed), balanced subsample:\n\n| a | best F1 | "
           "t for P >= %.2f | recall there |\n|---|---|---|---|\n",
           TARGET_P);
    const float as[] = {1e-4f, 3e-4f, 1e-3f, 3e-3f, 1e-2f};
    for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
        ah_embed_sif_opts_t o = {.weighting = 1, .remove_component = 1, .sif_a = as[i]};
        ah_embedder_t *e = open_or_die(vec, &o);
        float *s = qqp_dense(e, &q);
        qqp_summary_t x = summarise(s, q.dup, q.balanced, q.nbalanced);
        if (x.t85 >= 0)
            printf("| %g | %.3f | %.3f | %.3f |\n", (double)as[i], x.best_f, x.t85, x.r85);
        else
            printf("| %g | %.3f | never | 0 |\n", (double)as[i], x.best_f);
        ah_free(s);
        ah_embed_free(e);
    }
    printf("\n");

    /* ---- 2. Banking77 ---- */
    printf("## 2. Banking77 replay\n\n%d queries, %d categories, replayed in a fixed random "
           "order (seed %u).\n\n",
           b.n, b.ncat, SEED);
    int *bcat = cats_of(&b, b.order, b.n);
    dense_t d_def = embed_all(e_def, b.text, b.n), d_sif = embed_all(e_sif, b.text, b.n),
            d_mean = embed_all(e_mean, b.text, b.n);
    int *all = ah_malloc(sizeof(int) * (size_t)b.n);
    for (int i = 0; i < b.n; i++)
        all[i] = i;
    sparse_t *tf = tfidf(b.text, b.n, all, b.n);
    simmat_t m_def = simmat_dense(&d_def, b.order, b.n, bcat);
    simmat_t m_tf = simmat_sparse(tf, b.order, b.n, bcat);
    replay_table("SIF - component (the shipped default):", &m_def);
    replay_table("Word TF-IDF (IDF from the whole file):", &m_tf);

    printf("Best hit rate at a precision target (threshold grid 0.30 .. 0.99, step 0.01):\n\n"
           "| method | P >= 0.85 | P >= 0.90 | P >= 0.95 |\n|---|---|---|---|\n");
    {
        simmat_t m_mean = simmat_dense(&d_mean, b.order, b.n, bcat);
        simmat_t m_sif = simmat_dense(&d_sif, b.order, b.n, bcat);
        print_replay_row("GloVe mean", replay_sweep(&m_mean, RULE_PLAIN, 1, 0, 0));
        print_replay_row("SIF", replay_sweep(&m_sif, RULE_PLAIN, 1, 0, 0));
        print_replay_row("SIF - component (default)", replay_sweep(&m_def, RULE_PLAIN, 1, 0, 0));
        print_replay_row("TF-IDF", replay_sweep(&m_tf, RULE_PLAIN, 1, 0, 0));
        ah_free(m_mean.s);
        ah_free(m_sif.s);
    }
    {
        sparse_t *lx = lexical(e_def, b.text, b.n);
        simmat_t m_lx = simmat_sparse(lx, b.order, b.n, bcat);
        const double lambdas[] = {0.0, 0.3, 0.5, 0.7};
        for (size_t li = 0; li < sizeof lambdas / sizeof lambdas[0]; li++) {
            simmat_t mh = {.n = b.n, .cat = bcat};
            mh.s = ah_malloc(sizeof(float) * (size_t)b.n * (size_t)b.n);
            for (int i = 0; i < b.n; i++)
                for (int j = 0; j < i; j++) {
                    size_t at = (size_t)i * b.n + j;
                    mh.s[at] = (float)(lambdas[li] * m_def.s[at] + (1 - lambdas[li]) * m_lx.s[at]);
                }
            char name[128];
            snprintf(name, sizeof name, "hybrid, lambda %.1f", lambdas[li]);
            print_replay_row(name, replay_sweep(&mh, RULE_PLAIN, 1, 0, 0));
            ah_free(mh.s);
        }
        ah_free(m_lx.s);
        ah_free(lx);
    }
    printf("\nDecision rules on top of the default embedder (and TF-IDF):\n\n"
           "| rule | P >= 0.85 | P >= 0.90 | P >= 0.95 |\n|---|---|---|---|\n");
    const int ks[] = {2, 3, 5};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "SIF, top-%d stored neighbours agree (labels)", ks[i]);
        print_replay_row(name, replay_sweep(&m_def, RULE_AGREE, ks[i], 0, 0));
        snprintf(name, sizeof name, "TF-IDF, top-%d stored neighbours agree (labels)", ks[i]);
        print_replay_row(name, replay_sweep(&m_tf, RULE_AGREE, ks[i], 0, 0));
    }
    const double margins[] = {0.02, 0.05, 0.10};
    for (size_t i = 0; i < sizeof margins / sizeof margins[0]; i++) {
        char name[128];
        snprintf(name, sizeof name, "SIF, best - second >= %.2f (no labels)", margins[i]);
        print_replay_row(name, replay_sweep(&m_def, RULE_MARGIN, 2, margins[i], 0));
        snprintf(name, sizeof name, "SIF, best - best other category >= %.2f (labels)", margins[i]);
        print_replay_row(name, replay_sweep(&m_def, RULE_CATMARGIN, 1, margins[i], 0));
    }
    printf("\n");
    ah_free(m_tf.s);
    ah_free(m_def.s);

    /* Learned on half A of the history (the first half of the random order), measured
     * by replaying half B alone, from an empty cache. */
    printf("### Learned from labelled history: train on half A, replay half B\n\n");
    int half = b.n / 2, nb = b.n - half;
    const int *train = b.order, *test = b.order + half;
    int *tcat = cats_of(&b, test, nb);
    printf("Half A: %d queries (training only); half B: %d queries, replayed alone in the same "
           "fixed order from an empty cache.\n\n| method (replay of half B) | P >= 0.85 | P >= "
           "0.90 | P >= 0.95 |\n|---|---|---|---|\n",
           half, nb);
    {
        simmat_t m = simmat_dense(&d_def, test, nb, tcat);
        print_replay_row("SIF - component (default), no learning",
                         replay_sweep(&m, RULE_PLAIN, 1, 0, 0));
        ah_free(m.s);
        sparse_t *tfa = tfidf(b.text, b.n, train, half);
        m = simmat_sparse(tfa, test, nb, tcat);
        print_replay_row("TF-IDF, IDF from half A", replay_sweep(&m, RULE_PLAIN, 1, 0, 0));
        ah_free(m.s);
        ah_free(tfa);

        float *factor = learn_word_factors(e_def, &b, train, half);
        dense_t d_rw = embed_reweighed(e_def, factor, &b);
        m = simmat_dense(&d_rw, test, nb, tcat);
        print_replay_row("SIF x word specificity from A", replay_sweep(&m, RULE_PLAIN, 1, 0, 0));
        print_replay_row("  same, top-3 agree (labels)", replay_sweep(&m, RULE_AGREE, 3, 0, 0));
        ah_free(m.s);

        int r;
        double *proj = learn_lda(&d_def, &b, train, half, &r);
        dense_t d_lda = project(&d_def, proj, r);
        m = simmat_dense(&d_lda, test, nb, tcat);
        char name[128];
        snprintf(name, sizeof name, "SIF - component, LDA projection to %d-d from A", r);
        print_replay_row(name, replay_sweep(&m, RULE_PLAIN, 1, 0, 0));
        print_replay_row("  same, top-3 agree (labels)", replay_sweep(&m, RULE_AGREE, 3, 0, 0));
        ah_free(m.s);
        ah_free(proj);
        ah_free(d_lda.v);

        proj = learn_lda(&d_rw, &b, train, half, &r);
        d_lda = project(&d_rw, proj, r);
        m = simmat_dense(&d_lda, test, nb, tcat);
        print_replay_row("word specificity + LDA, both from A",
                         replay_sweep(&m, RULE_PLAIN, 1, 0, 0));
        print_replay_row("  same, top-3 agree (labels)", replay_sweep(&m, RULE_AGREE, 3, 0, 0));
        printf("\nword specificity + LDA from A, replay of half B:\n\n| t | hit rate | precision "
               "| stored |\n|---|---|---|---|\n");
        replay_sweep(&m, RULE_PLAIN, 1, 0, 1);
        printf("\n");
        ah_free(m.s);
        ah_free(proj);
        ah_free(d_lda.v);
        ah_free(d_rw.v);
        ah_free(factor);
    }

    /* ---- variants of the vector file ---- */
    if (argc > 4) {
        printf("## Vector file variants\n\nSame measurements with other conversions of the "
               "same vectors (the default options: SIF, component removed).\n\n| file | QQP "
               "balanced best F1 | t for P >= %.2f | recall there | banking77 hit rate at P "
               ">= 0.85 / 0.90 / 0.95 |\n|---|---|---|---|---|\n",
               TARGET_P);
        for (int a = 3; a < argc; a++) {
            const char *name = a == 3 ? "shipped" : argv[a];
            const char *path = a == 3 ? vec : strchr(argv[a], '=');
            char label[256];
            if (a > 3 && !path)
                continue;
            if (a > 3) {
                snprintf(label, sizeof label, "%.*s", (int)(path - argv[a]), argv[a]);
                name = label;
                path++;
            }
            ah_embedder_t *e = open_or_die(path, NULL);
            float *s = qqp_dense(e, &q);
            qqp_summary_t x = summarise(s, q.dup, q.balanced, q.nbalanced);
            dense_t d = embed_all(e, b.text, b.n);
            simmat_t m = simmat_dense(&d, b.order, b.n, bcat);
            replay_summary_t r = replay_sweep(&m, RULE_PLAIN, 1, 0, 0);
            printf("| %s | %.3f | ", name, x.best_f);
            if (x.t85 >= 0)
                printf("%.3f | %.3f |", x.t85, x.r85);
            else
                printf("never | 0 |");
            printf(" %.3f / %.3f / %.3f |\n", r.hr[0], r.hr[1], r.hr[2]);
            ah_free(s);
            ah_free(d.v);
            ah_free(m.s);
            ah_embed_free(e);
        }
        printf("\n");
    }

    /* ---- 3. speed ---- */
    printf("## 3. Embedding speed (default embedder)\n\n");
    speed(e_def, &b, &q);

    /* ---- 4. the re-ranking check ---- */
    {
        dense_t d = embed_all(e_def, b.text, b.n);
        simmat_t m = simmat_dense(&d, b.order, b.n, bcat);
        rerank_section(e_def, &q, sims[2], &b, &m);
        ah_free(m.s);
        ah_free(d.v);
    }

    /* ---- 5. aliases ---- */
    alias_section(e_def, &b);

    ah_embed_free(e_def);
    ah_embed_free(e_mean);
    ah_embed_free(e_sif);
    return 0;
}
