/* learned.c - the learned router (see learned.h): features, training by
 * Newton's method or by keeping the examples (kNN), scoring, and the model
 * file.
 *
 * Model file, version 1 (all fields little-endian, as the host writes them;
 * the byte-order mark refuses a file from a big-endian host):
 *   0   "AHLR"        4 bytes
 *   4   u32 version   1
 *   8   u32 bom       0x01020304
 *   12  u32 kind      1 logreg, 2 knn
 *   16  u32 target    1 gain, 2 cheap-fail
 *   20  u32 dim       embedding dimension (0: none)
 *   24  u32 ncx       AH_LEARNED_NCX
 *   28  u32 k         knn neighbours (0 for logreg)
 *   32  u32 use_embedding
 *   36  u32 reserved  0
 *   40  u64 ntrain    training examples (knn: stored below)
 *   48  f64 l2
 *   56  f64 mu[dim+ncx], f64 sd[dim+ncx], f64 w_full[dim+ncx+1], f64 w_cx[ncx+1]
 *       knn: f32 emb[ntrain*dim], f32 y[ntrain]
 *   end u64 FNV-1a 64 of every byte before it
 * Weights apply to standardised features, bias last. */
#include "route/learned.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "route/complexity.h"

#define LR_MAGIC "AHLR"
#define LR_VERSION 1u
#define LR_BOM 0x01020304u
#define LR_HEADER 56u
#define LR_NEWTON_ITERS 30
#define LR_NEWTON_TOL 1e-7
/* Ridge added to the Hessian's diagonal (the bias's too) for a stable solve. */
#define LR_JITTER 1e-9
#define LR_MIN_SD 1e-6
/* Complexity features: nine signals, score, criticality, log length. */
#define LR_LOG_CHARS_SCALE 10.0

const ah_learned_opts_t ah_learned_defaults = {
    .kind = AH_LEARNED_LOGREG,
    .target = AH_LEARNED_TARGET_GAIN,
    .l2 = 1e-2,
    .k = 50,
    .use_embedding = 1,
};

struct ah_learned {
    uint32_t kind, target, dim, ncx, k, use_embedding;
    uint64_t ntrain;
    double l2;
    double *mu, *sd, *w_full, *w_cx; /* nfeat, nfeat, nfeat + 1, ncx + 1 */
    float *emb, *y;                  /* knn: ntrain * dim, ntrain */
    void *blob;                      /* loaded file the arrays point into, or NULL */
};

_Static_assert(AH_LEARNED_NCX == AH_CX_NSIGNALS + 3,
               "complexity features changed: bump LR_VERSION");

size_t ah_learned_row_size(int dim)
{
    return (size_t)(dim > 0 ? dim : 0) + AH_LEARNED_NCX;
}

static void cx_features(const ah_cx_t *cx, float *f)
{
    for (int i = 0; i < AH_CX_NSIGNALS; i++)
        f[i] = (float)cx->signal[i];
    f[AH_CX_NSIGNALS] = (float)cx->score;
    f[AH_CX_NSIGNALS + 1] = (float)cx->criticality;
    f[AH_CX_NSIGNALS + 2] = (float)(log1p(cx->chars) / LR_LOG_CHARS_SCALE);
}

static void embed_into(const char *text, size_t len, const ah_embedder_t *emb, int dim, float *row)
{
    if (dim <= 0)
        return;
    if (!emb || emb->dim != dim || ah_embed(emb, text, len, row) != AH_E_OK)
        memset(row, 0, (size_t)dim * sizeof *row);
}

void ah_learned_row_text(const char *text, size_t len, const ah_embedder_t *emb, int dim,
                         float *row)
{
    ah_cx_t cx;
    ah_cx_score_text(text, len, &cx);
    embed_into(text, len, emb, dim, row);
    cx_features(&cx, row + (dim > 0 ? dim : 0));
}

int ah_learned_dim(const ah_learned_t *m)
{
    return (int)m->dim;
}

static double sigmoid(double z)
{
    return z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
}

static int has_embedding(const ah_learned_t *m, const float *row)
{
    for (uint32_t i = 0; i < m->dim; i++)
        if (row[i] != 0)
            return 1;
    return 0;
}

static double linear(const double *w, const double *mu, const double *sd, const float *x, size_t d)
{
    double z = w[d];
    for (size_t j = 0; j < d; j++)
        z += w[j] * (((double)x[j] - mu[j]) / sd[j]);
    return z;
}

/* Top-K by similarity: a min-heap of (sim, index). */
typedef struct nb {
    float sim;
    uint32_t idx;
} nb_t;

static void heap_down(nb_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].sim < h[m].sim)
            m = l;
        if (r < n && h[r].sim < h[m].sim)
            m = r;
        if (m == i)
            return;
        nb_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cmp_nb_desc(const void *a, const void *b)
{
    const nb_t *x = a, *y = b;
    if (x->sim != y->sim)
        return x->sim > y->sim ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void knn_scores(const ah_learned_t *m, const float *q, const int *ks, int nks, double *out)
{
    int K = (int)m->k;
    nb_t heap[AH_LEARNED_MAX_K];
    int hn = 0;
    for (uint64_t i = 0; i < m->ntrain; i++) {
        const float *e = m->emb + i * m->dim;
        float s = 0;
        for (uint32_t j = 0; j < m->dim; j++)
            s += q[j] * e[j];
        if (hn < K) {
            heap[hn++] = (nb_t){s, (uint32_t)i};
            if (hn == K)
                for (int h = K / 2 - 1; h >= 0; h--)
                    heap_down(heap, K, h);
        } else if (s > heap[0].sim) {
            heap[0] = (nb_t){s, (uint32_t)i};
            heap_down(heap, K, 0);
        }
    }
    qsort(heap, (size_t)hn, sizeof *heap, cmp_nb_desc);
    for (int j = 0; j < nks; j++) {
        int k = ks[j] < hn ? ks[j] : hn;
        double sum = 0;
        for (int i = 0; i < k; i++)
            sum += m->y[heap[i].idx];
        out[j] = k > 0 ? sum / k : 0.5;
    }
}

static double clamp01(double x)
{
    return x < 0 ? 0 : x > 1 ? 1 : x;
}

void ah_learned_score_row_ks(const ah_learned_t *m, const float *row, const int *ks, int nks,
                             double *out)
{
    size_t nfeat = (size_t)m->dim + m->ncx;
    if (m->dim > 0 && has_embedding(m, row)) {
        if (m->kind == AH_LEARNED_KNN) {
            knn_scores(m, row, ks, nks, out);
            return;
        }
        if (m->use_embedding) {
            double s = sigmoid(linear(m->w_full, m->mu, m->sd, row, nfeat));
            for (int j = 0; j < nks; j++)
                out[j] = clamp01(s);
            return;
        }
    }
    double s = sigmoid(linear(m->w_cx, m->mu + m->dim, m->sd + m->dim, row + m->dim, m->ncx));
    for (int j = 0; j < nks; j++)
        out[j] = clamp01(s);
}

double ah_learned_score_row(const ah_learned_t *m, const float *row)
{
    int k = (int)m->k;
    double s;
    ah_learned_score_row_ks(m, row, &k, 1, &s);
    return s;
}

double ah_learned_score_text(const ah_learned_t *m, const char *text, size_t len,
                             const ah_embedder_t *emb)
{
    float stack[AH_EMBED_MAX_DIM + AH_LEARNED_NCX];
    if (len > AH_EMBED_MAX_TEXT)
        len = AH_EMBED_MAX_TEXT;
    ah_learned_row_text(text ? text : "", text ? len : 0, emb, (int)m->dim, stack);
    return ah_learned_score_row(m, stack);
}

double ah_learned_score(const ah_learned_t *m, const json_t *body, const ah_embedder_t *emb)
{
    float row[AH_EMBED_MAX_DIM + AH_LEARNED_NCX];
    ah_cx_t cx;
    ah_cx_score(body, NULL, &cx);
    if (m->dim > 0) {
        /* The user text, joined, as the embedder sees it. */
        ah_buf_t b;
        ah_buf_init(&b, AH_EMBED_MAX_TEXT);
        json_t *msgs = json_object_get(body, "messages");
        size_t i;
        json_t *msg;
        json_array_foreach(msgs, i, msg)
        {
            const char *role = json_string_value(json_object_get(msg, "role"));
            json_t *c = json_object_get(msg, "content");
            if (!role || strcmp(role, "user") != 0)
                continue;
            if (json_is_string(c)) {
                ah_buf_append(&b, "\n", 1);
                ah_buf_append(&b, json_string_value(c), json_string_length(c));
            } else if (json_is_array(c)) {
                size_t j;
                json_t *part;
                json_array_foreach(c, j, part)
                {
                    json_t *t = json_object_get(part, "text");
                    if (json_is_string(t)) {
                        ah_buf_append(&b, "\n", 1);
                        ah_buf_append(&b, json_string_value(t), json_string_length(t));
                    }
                }
            }
        }
        embed_into(b.data ? b.data : "", b.len, emb, (int)m->dim, row);
        ah_buf_free(&b);
    }
    cx_features(&cx, row + m->dim);
    return ah_learned_score_row(m, row);
}

void ah_learned_free(ah_learned_t *m)
{
    if (!m)
        return;
    if (m->blob) {
        ah_free(m->blob);
    } else {
        ah_free(m->mu);
        ah_free(m->sd);
        ah_free(m->w_full);
        ah_free(m->w_cx);
        ah_free(m->emb);
        ah_free(m->y);
    }
    ah_free(m);
}

void ah_learned_describe(const ah_learned_t *m, char *buf, size_t n)
{
    const char *t = m->target == AH_LEARNED_TARGET_GAIN ? "gain" : "cheap-fail";
    if (m->kind == AH_LEARNED_KNN)
        snprintf(buf, n, "knn %s k=%u dim=%u n=%llu", t, m->k, m->dim,
                 (unsigned long long)m->ntrain);
    else
        snprintf(buf, n, "logreg %s l2=%g dim=%u%s n=%llu", t, m->l2, m->dim,
                 m->use_embedding ? "" : " (features only)", (unsigned long long)m->ntrain);
}

/* ---- training ---- */

/* Cholesky solve of the symmetric positive definite a[d*d] x = b (in place in
 * b); -1 when a is not positive definite. a is overwritten. */
static int cholesky_solve(double *a, double *b, size_t d)
{
    for (size_t j = 0; j < d; j++) {
        double s = a[j * d + j];
        for (size_t k = 0; k < j; k++)
            s -= a[j * d + k] * a[j * d + k];
        if (s <= 0)
            return -1;
        double ljj = sqrt(s);
        a[j * d + j] = ljj;
        for (size_t i = j + 1; i < d; i++) {
            double t = a[i * d + j];
            for (size_t k = 0; k < j; k++)
                t -= a[i * d + k] * a[j * d + k];
            a[i * d + j] = t / ljj;
        }
    }
    for (size_t i = 0; i < d; i++) { /* L y = b */
        double t = b[i];
        for (size_t k = 0; k < i; k++)
            t -= a[i * d + k] * b[k];
        b[i] = t / a[i * d + i];
    }
    for (size_t i = d; i-- > 0;) { /* L^T x = y */
        double t = b[i];
        for (size_t k = i + 1; k < d; k++)
            t -= a[k * d + i] * b[k];
        b[i] = t / a[i * d + i];
    }
    return 0;
}

/* Logistic regression of soft targets y over x (n rows of d standardised
 * features, bias appended by this function) with penalty l2 * n on the
 * weights: Newton's method (IRLS). w[d + 1] out. */
static int fit_logreg(const double *x, size_t n, size_t d, const double *y, double l2, double *w)
{
    size_t D = d + 1;
    double *h = ah_calloc(D * D, sizeof *h), *g = ah_calloc(D, sizeof *g);
    int rc = -1;
    memset(w, 0, D * sizeof *w);
    double ym = 0;
    for (size_t i = 0; i < n; i++)
        ym += y[i];
    ym /= (double)n;
    ym = ym < 1e-6 ? 1e-6 : ym > 1 - 1e-6 ? 1 - 1e-6 : ym;
    w[d] = log(ym / (1 - ym));
    for (int it = 0; it < LR_NEWTON_ITERS; it++) {
        memset(h, 0, D * D * sizeof *h);
        memset(g, 0, D * sizeof *g);
        for (size_t i = 0; i < n; i++) {
            const double *xi = x + i * d;
            double z = w[d];
            for (size_t j = 0; j < d; j++)
                z += w[j] * xi[j];
            double p = sigmoid(z), r = p - y[i], wt = p * (1 - p);
            for (size_t j = 0; j < d; j++) {
                g[j] += r * xi[j];
                double a = wt * xi[j];
                double *hj = h + j * D;
                for (size_t k = 0; k <= j; k++)
                    hj[k] += a * xi[k];
                hj[d] += a; /* bias column, mirrored below */
            }
            g[d] += r;
            h[d * D + d] += wt;
        }
        for (size_t j = 0; j < d; j++) {
            g[j] += l2 * (double)n * w[j];
            h[j * D + j] += l2 * (double)n;
            for (size_t k = 0; k < j; k++)
                h[k * D + j] = h[j * D + k];
            h[d * D + j] = h[j * D + d];
        }
        for (size_t j = 0; j < D; j++)
            h[j * D + j] += LR_JITTER * (double)n;
        if (cholesky_solve(h, g, D))
            goto out;
        double step = 0;
        for (size_t j = 0; j < D; j++) {
            w[j] -= g[j];
            step = fabs(g[j]) > step ? fabs(g[j]) : step;
        }
        if (!isfinite(step))
            goto out;
        if (step < LR_NEWTON_TOL)
            break;
    }
    rc = 0;
out:
    ah_free(h);
    ah_free(g);
    return rc;
}

ah_learned_t *ah_learned_train(const float *rows, size_t n, int dim, const unsigned char *cheap_ok,
                               const unsigned char *strong_ok, const ah_learned_opts_t *o,
                               char *err, size_t errlen)
{
    if (!o)
        o = &ah_learned_defaults;
    if (n == 0 || n > AH_LEARNED_MAX_EXAMPLES || dim < 0 || dim > AH_EMBED_MAX_DIM) {
        ah_err_printf(err, errlen,
                      "training needs 1..%u examples (got %zu) and a dimension "
                      "of at most %d",
                      AH_LEARNED_MAX_EXAMPLES, n, AH_EMBED_MAX_DIM);
        return NULL;
    }
    if ((o->kind != AH_LEARNED_LOGREG && o->kind != AH_LEARNED_KNN) ||
        (o->target != AH_LEARNED_TARGET_GAIN && o->target != AH_LEARNED_TARGET_CHEAP_FAIL) ||
        !(o->l2 >= 0) ||
        (o->kind == AH_LEARNED_KNN && (dim == 0 || o->k < 1 || o->k > AH_LEARNED_MAX_K))) {
        ah_err_printf(err, errlen,
                      "bad training options (knn needs an embedding and "
                      "1 <= k <= %d; l2 >= 0)",
                      AH_LEARNED_MAX_K);
        return NULL;
    }
    size_t stride = ah_learned_row_size(dim), nfeat = stride;
    double *y = ah_malloc(n * sizeof *y);
    double lo = 1, hi = 0;
    for (size_t i = 0; i < n; i++) {
        y[i] = o->target == AH_LEARNED_TARGET_GAIN ? (strong_ok[i] - cheap_ok[i] + 1) / 2.0
                                                   : 1.0 - cheap_ok[i];
        lo = y[i] < lo ? y[i] : lo;
        hi = y[i] > hi ? y[i] : hi;
    }
    if (lo == hi) {
        ah_err_printf(err, errlen, "every example has the same target: nothing to learn");
        ah_free(y);
        return NULL;
    }
    ah_learned_t *m = ah_calloc(1, sizeof *m);
    m->kind = o->kind;
    m->target = o->target;
    m->dim = (uint32_t)dim;
    m->ncx = AH_LEARNED_NCX;
    m->k = o->kind == AH_LEARNED_KNN ? (uint32_t)(o->k < (int)n ? o->k : (int)n) : 0;
    m->use_embedding = o->kind == AH_LEARNED_KNN ? 1 : (o->use_embedding && dim > 0);
    m->ntrain = n;
    m->l2 = o->l2;
    m->mu = ah_calloc(nfeat, sizeof *m->mu);
    m->sd = ah_calloc(nfeat, sizeof *m->sd);
    m->w_full = ah_calloc(nfeat + 1, sizeof *m->w_full);
    m->w_cx = ah_calloc(AH_LEARNED_NCX + 1, sizeof *m->w_cx);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nfeat; j++)
            m->mu[j] += rows[i * stride + j];
    for (size_t j = 0; j < nfeat; j++)
        m->mu[j] /= (double)n;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nfeat; j++) {
            double dv = rows[i * stride + j] - m->mu[j];
            m->sd[j] += dv * dv;
        }
    for (size_t j = 0; j < nfeat; j++) {
        m->sd[j] = sqrt(m->sd[j] / (double)n);
        if (!(m->sd[j] > LR_MIN_SD))
            m->sd[j] = 1;
    }
    /* Standardised features, once, for both heads. */
    double *x = ah_malloc(n * nfeat * sizeof *x);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < nfeat; j++)
            x[i * nfeat + j] = (rows[i * stride + j] - m->mu[j]) / m->sd[j];
    int rc = 0;
    if (m->kind == AH_LEARNED_LOGREG && m->use_embedding)
        rc = fit_logreg(x, n, nfeat, y, o->l2, m->w_full);
    /* The complexity-feature head: the last ncx columns. */
    if (rc == 0) {
        double *xc = ah_malloc(n * AH_LEARNED_NCX * sizeof *xc);
        for (size_t i = 0; i < n; i++)
            memcpy(xc + i * AH_LEARNED_NCX, x + i * nfeat + dim, AH_LEARNED_NCX * sizeof *xc);
        rc = fit_logreg(xc, n, AH_LEARNED_NCX, y, o->l2, m->w_cx);
        ah_free(xc);
    }
    ah_free(x);
    if (rc) {
        ah_err_printf(err, errlen, "training did not converge (try a larger l2)");
        ah_free(y);
        ah_learned_free(m);
        return NULL;
    }
    if (m->kind == AH_LEARNED_KNN) {
        m->emb = ah_malloc(n * (size_t)dim * sizeof *m->emb);
        m->y = ah_malloc(n * sizeof *m->y);
        for (size_t i = 0; i < n; i++) {
            memcpy(m->emb + i * (size_t)dim, rows + i * stride, (size_t)dim * sizeof *m->emb);
            m->y[i] = (float)y[i];
        }
    }
    ah_free(y);
    return m;
}

/* ---- the model file ---- */

static uint64_t fnv1a64(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Bytes of the file for these header fields; 0 on overflow or bad sizes. */
static size_t file_size(uint32_t kind, uint32_t dim, uint64_t ntrain)
{
    size_t nfeat = (size_t)dim + AH_LEARNED_NCX;
    size_t doubles = 3 * nfeat + 1 + AH_LEARNED_NCX + 1;
    size_t size = LR_HEADER + doubles * sizeof(double) + sizeof(uint64_t);
    if (kind == AH_LEARNED_KNN) {
        if (ntrain > AH_LEARNED_MAX_EXAMPLES || ah_mul_overflows((size_t)ntrain, dim + 1u))
            return 0;
        size_t floats = (size_t)ntrain * (dim + 1u);
        if (ah_mul_overflows(floats, sizeof(float)) || size + floats * sizeof(float) < size)
            return 0;
        size += floats * sizeof(float);
    }
    return size;
}

static void put(unsigned char **p, const void *v, size_t n)
{
    memcpy(*p, v, n);
    *p += n;
}

ah_err_t ah_learned_save(const ah_learned_t *m, const char *path, char *err, size_t errlen)
{
    size_t size = file_size(m->kind, m->dim, m->ntrain), nfeat = (size_t)m->dim + m->ncx;
    if (size == 0 || size > AH_LEARNED_MAX_FILE) {
        ah_err_printf(err, errlen, "model too large to save");
        return AH_E_TOOBIG;
    }
    unsigned char *buf = ah_malloc(size), *p = buf;
    uint32_t hdr[9] = {0,      LR_VERSION, LR_BOM, m->kind,         m->target,
                       m->dim, m->ncx,     m->k,   m->use_embedding};
    memcpy(p, LR_MAGIC, 4);
    p += 4;
    put(&p, hdr + 1, 8 * sizeof(uint32_t));
    uint32_t reserved = 0;
    put(&p, &reserved, sizeof reserved);
    put(&p, &m->ntrain, sizeof m->ntrain);
    put(&p, &m->l2, sizeof m->l2);
    put(&p, m->mu, nfeat * sizeof(double));
    put(&p, m->sd, nfeat * sizeof(double));
    put(&p, m->w_full, (nfeat + 1) * sizeof(double));
    put(&p, m->w_cx, (m->ncx + 1) * sizeof(double));
    if (m->kind == AH_LEARNED_KNN) {
        put(&p, m->emb, (size_t)m->ntrain * m->dim * sizeof(float));
        put(&p, m->y, (size_t)m->ntrain * sizeof(float));
    }
    uint64_t sum = fnv1a64(buf, (size_t)(p - buf));
    put(&p, &sum, sizeof sum);
    char tmp[4096];
    ah_err_t rc = AH_E_OK;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        ah_err_printf(err, errlen, "path too long");
        ah_free(buf);
        return AH_E_INVAL;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fflush(f) != 0) {
        ah_err_printf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        rc = AH_E_IO;
    }
    if (f && fclose(f) != 0 && rc == AH_E_OK) {
        ah_err_printf(err, errlen, "%s: cannot write: %s", tmp, strerror(errno));
        rc = AH_E_IO;
    }
    if (rc == AH_E_OK && rename(tmp, path) != 0) {
        ah_err_printf(err, errlen, "%s: cannot rename into place: %s", path, strerror(errno));
        rc = AH_E_IO;
    }
    if (rc)
        unlink(tmp);
    ah_free(buf);
    return rc;
}

static int all_finite(const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

ah_learned_t *ah_learned_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ah_err_printf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    ah_buf_t b;
    ah_buf_init(&b, AH_LEARNED_MAX_FILE);
    char chunk[65536];
    size_t got;
    int toobig = 0;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (ah_buf_append(&b, chunk, got)) {
            toobig = 1;
            break;
        }
    int rerr = ferror(f);
    fclose(f);
    ah_learned_t *m = NULL;
    const char *why = NULL;
    size_t n = b.len;
    unsigned char *d = (unsigned char *)b.data;
    uint32_t h[9];
    uint64_t ntrain;
    if (toobig || rerr) {
        why = toobig ? "larger than the model file limit" : "read error";
        goto out;
    }
    if (n < LR_HEADER + sizeof(uint64_t) || memcmp(d, LR_MAGIC, 4) != 0) {
        why = "not an ahorro router model";
        goto out;
    }
    memcpy(h + 1, d + 4, 8 * sizeof(uint32_t));
    memcpy(&ntrain, d + 40, sizeof ntrain);
    if (h[1] != LR_VERSION) {
        why = "unsupported model version (retrain with this ahorro)";
        goto out;
    }
    if (h[2] != LR_BOM) {
        why = "written on a host of another byte order";
        goto out;
    }
    uint32_t kind = h[3], target = h[4], dim = h[5], ncx = h[6], k = h[7], use = h[8];
    if ((kind != AH_LEARNED_LOGREG && kind != AH_LEARNED_KNN) ||
        (target != AH_LEARNED_TARGET_GAIN && target != AH_LEARNED_TARGET_CHEAP_FAIL) ||
        dim > AH_EMBED_MAX_DIM || ncx != AH_LEARNED_NCX || use > 1 ||
        ntrain > AH_LEARNED_MAX_EXAMPLES ||
        (kind == AH_LEARNED_KNN && (dim == 0 || k < 1 || k > AH_LEARNED_MAX_K || k > ntrain)) ||
        (kind == AH_LEARNED_LOGREG && k != 0)) {
        why = "bad header fields";
        goto out;
    }
    size_t want = file_size(kind, dim, ntrain);
    if (want == 0 || want != n) {
        why = "wrong file size (truncated or corrupt)";
        goto out;
    }
    uint64_t sum;
    memcpy(&sum, d + n - sizeof sum, sizeof sum);
    if (sum != fnv1a64(d, n - sizeof sum)) {
        why = "checksum mismatch (corrupt)";
        goto out;
    }
    m = ah_calloc(1, sizeof *m);
    m->kind = kind;
    m->target = target;
    m->dim = dim;
    m->ncx = ncx;
    m->k = k;
    m->use_embedding = use;
    m->ntrain = ntrain;
    memcpy(&m->l2, d + 48, sizeof m->l2);
    /* Arrays are copied out of the blob to aligned memory. */
    size_t nfeat = (size_t)dim + ncx, off = LR_HEADER;
    double **dst[4] = {&m->mu, &m->sd, &m->w_full, &m->w_cx};
    size_t cnt[4] = {nfeat, nfeat, nfeat + 1, ncx + 1};
    for (int i = 0; i < 4; i++) {
        *dst[i] = ah_malloc(cnt[i] * sizeof(double));
        memcpy(*dst[i], d + off, cnt[i] * sizeof(double));
        off += cnt[i] * sizeof(double);
        if (!all_finite(*dst[i], cnt[i])) {
            why = "non-finite weights";
            goto out;
        }
    }
    for (size_t j = 0; j < nfeat; j++)
        if (!(m->sd[j] > 0)) {
            why = "non-positive deviation";
            goto out;
        }
    if (!(m->l2 >= 0)) {
        why = "bad l2";
        goto out;
    }
    if (kind == AH_LEARNED_KNN) {
        size_t ne = (size_t)ntrain * dim;
        m->emb = ah_malloc(ne * sizeof(float));
        m->y = ah_malloc((size_t)ntrain * sizeof(float));
        memcpy(m->emb, d + off, ne * sizeof(float));
        off += ne * sizeof(float);
        memcpy(m->y, d + off, (size_t)ntrain * sizeof(float));
        for (size_t i = 0; i < ne; i++)
            if (!isfinite(m->emb[i])) {
                why = "non-finite embedding";
                goto out;
            }
        for (size_t i = 0; i < ntrain; i++)
            if (!(m->y[i] >= 0 && m->y[i] <= 1)) {
                why = "target out of [0, 1]";
                goto out;
            }
    }
out:
    ah_buf_free(&b);
    if (why) {
        ah_err_printf(err, errlen, "%s: %s", path, why);
        ah_learned_free(m);
        return NULL;
    }
    return m;
}
