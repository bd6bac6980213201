/* intent.c - a classifier of texts into a tenant's labels (intent.h).
 *
 * Features. The text (its first AH_INTENT_MAX_TEXT bytes) is cut into words:
 * runs of ASCII letters and digits and of non-ASCII bytes, lowercased, with
 * apostrophes (' and U+2019) dropped inside a word ("can't" is "cant"). Each
 * word gives a unigram and, with the word before it, a bigram; each word padded
 * as "<word>" gives its character 3-, 4- and 5-grams. Every feature is an
 * FNV-1a hash into 2^bits buckets with value 1 (a repeat is one more entry);
 * the word group and the character group are each scaled so that their
 * squared norms, counting entries apart, are 1 - char_weight and char_weight.
 *
 * Model. One weight per bucket and label, stored bucket-major so that a
 * feature's weights for all labels are contiguous, and a bias per label;
 * p = softmax(W x + b). SGD on the cross-entropy, rows shuffled each epoch,
 * step rate / (1 + epoch), and weight decay applied to the weights a row
 * touches. */
#include "cache/intent.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/hash.h"
#include "route/labels.h"

const ah_intent_opts_t ah_intent_defaults = {
    .bits = 14,
    .epochs = 12,
    .rate = 2.0f,
    .l2 = 1e-6f,
    .char_weight = 0.7f,
    .seed = 77,
};

#define WORD_MAX 64
#define LABEL_SLOTS (2 * AH_INTENT_MAX_CLASSES)

struct ah_intent {
    int bits;
    uint32_t mask;
    int nc;
    float *w; /* [buckets][nc] */
    float *b; /* [nc] */
    char **labels;
    size_t rows;
    float char_weight;
};

typedef struct feats {
    uint32_t idx[AH_INTENT_MAX_FEATURES];
    float val[AH_INTENT_MAX_FEATURES];
    int n;
} feats_t;

/* ---- features ------------------------------------------------------------ */

static void feat_add(feats_t *f, uint64_t h, uint32_t mask)
{
    if (f->n < AH_INTENT_MAX_FEATURES) {
        f->idx[f->n] = (uint32_t)(h ^ (h >> 32)) & mask;
        f->val[f->n] = 1.0f;
        f->n++;
    }
}

/* Scale the features f[from..n) (each 1) to squared norm share. A bucket met
 * twice stays as two entries: the same dot product as one entry of value 2,
 * without sorting; the norm counts them apart. */
static void feat_group_done(feats_t *f, int from, float share)
{
    int n = f->n - from;
    if (n <= 0)
        return;
    float v = sqrtf(share / (float)n);
    for (int i = from; i < f->n; i++)
        f->val[i] = v;
}

static int word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* An apostrophe at p[i] (' or U+2019): its length in bytes, else 0. */
static size_t apostrophe(const unsigned char *p, size_t i, size_t n)
{
    if (p[i] == '\'')
        return 1;
    if (i + 2 < n && p[i] == 0xe2 && p[i + 1] == 0x80 && p[i + 2] == 0x99)
        return 3;
    return 0;
}

/* The next word of p[*pos..n) into w (at most WORD_MAX bytes kept); its length,
 * 0 at the end. */
static size_t next_word(const unsigned char *p, size_t n, size_t *pos, char *w)
{
    size_t i = *pos, len = 0, a;
    /* separators, and apostrophes that join nothing ("’tis", "dogs’ food") */
    while (i < n && ((a = apostrophe(p, i, n)) || !word_byte(p[i])))
        i += a ? a : 1;
    while (i < n) {
        a = apostrophe(p, i, n);
        if (a) {
            /* inside a word only: a letter must follow */
            if (len > 0 && i + a < n && word_byte(p[i + a]) && p[i + a] < 0x80) {
                i += a;
                continue;
            }
            break;
        }
        if (!word_byte(p[i]))
            break;
        if (len < WORD_MAX) {
            unsigned char c = p[i];
            w[len++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        i++;
    }
    *pos = i;
    return len;
}

static void featurise(const ah_intent_t *m, const char *text, size_t len, feats_t *f)
{
    float char_weight = m->char_weight;
    const unsigned char *p = (const unsigned char *)text;
    size_t n = len < AH_INTENT_MAX_TEXT ? len : AH_INTENT_MAX_TEXT, pos = 0, wl;
    char w[WORD_MAX + 2];
    f->n = 0;
    /* words and bigrams */
    uint64_t prev = 0;
    while ((wl = next_word(p, n, &pos, w + 1)) > 0) {
        uint64_t h = ah_fnv1a(AH_FNV_OFFSET, "w", 1);
        h = ah_fnv1a(h, w + 1, wl);
        feat_add(f, h, m->mask);
        if (prev)
            feat_add(f, ah_fnv1a(prev * 31 + 7, w + 1, wl), m->mask);
        prev = h;
    }
    int words = f->n;
    feat_group_done(f, 0, 1.0f - char_weight);
    if (char_weight <= 0 || words == 0)
        return;
    /* character n-grams of each word */
    int from = f->n;
    pos = 0;
    while ((wl = next_word(p, n, &pos, w + 1)) > 0) {
        w[0] = '<';
        w[wl + 1] = '>';
        size_t pl = wl + 2;
        for (size_t k = 3; k <= 5; k++) {
            uint64_t seed = ah_fnv1a(AH_FNV_OFFSET, &k, sizeof k);
            for (size_t i = 0; i + k <= pl; i++)
                feat_add(f, ah_fnv1a(seed, w + i, k), m->mask);
        }
    }
    feat_group_done(f, from, char_weight);
}

/* p[nc] = softmax(W x + b); returns the argmax. */
static int scores(const ah_intent_t *m, const feats_t *f, float *p)
{
    int nc = m->nc;
    memcpy(p, m->b, (size_t)nc * sizeof *p);
    for (int i = 0; i < f->n; i++) {
        const float *wr = m->w + (size_t)f->idx[i] * (size_t)nc;
        float v = f->val[i];
        for (int c = 0; c < nc; c++)
            p[c] += v * wr[c];
    }
    int best = 0;
    for (int c = 1; c < nc; c++)
        if (p[c] > p[best])
            best = c;
    float mx = p[best], sum = 0;
    for (int c = 0; c < nc; c++) {
        p[c] = expf(p[c] - mx);
        sum += p[c];
    }
    for (int c = 0; c < nc; c++)
        p[c] /= sum;
    return best;
}

/* ---- labels -------------------------------------------------------------- */

typedef struct label_map {
    int slot[LABEL_SLOTS]; /* class + 1, 0: empty */
    char **names;
    int n;
} label_map_t;

static label_map_t *label_map_new(void)
{
    label_map_t *lm = ah_calloc(1, sizeof *lm);
    lm->names = ah_calloc(AH_INTENT_MAX_CLASSES, sizeof(char *));
    return lm;
}

/* Frees the map; its names too unless keep_names (a model took them). */
static void label_map_free(label_map_t *lm, int keep_names)
{
    if (!keep_names) {
        for (int c = 0; c < lm->n; c++)
            ah_free(lm->names[c]);
        ah_free(lm->names);
    }
    ah_free(lm);
}

static int label_id(label_map_t *lm, const char *s)
{
    size_t len = strlen(s);
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, s, len);
    for (size_t i = h % LABEL_SLOTS;; i = (i + 1) % LABEL_SLOTS) {
        int c = lm->slot[i] - 1;
        if (c < 0) {
            if (lm->n >= AH_INTENT_MAX_CLASSES)
                return -1;
            lm->names[lm->n] = ah_strdup(s);
            lm->slot[i] = ++lm->n;
            return lm->n - 1;
        }
        if (strcmp(lm->names[c], s) == 0)
            return c;
    }
}

/* ---- training ------------------------------------------------------------ */

static uint32_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* The xorshift state a seed starts from. */
static uint64_t rnd_state(unsigned seed)
{
    return 0x9e3779b97f4a7c15ULL ^ seed;
}

/* Fisher-Yates over a[0..n) with the xorshift state *rs. */
static void shuffle(size_t *a, size_t n, uint64_t *rs)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd(rs) % i, t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

ah_intent_t *ah_intent_train(const char *const *texts, const size_t *lens,
                             const char *const *labels, size_t n, const ah_intent_opts_t *opts,
                             char *err, size_t errlen)
{
    const ah_intent_opts_t *o = opts ? opts : &ah_intent_defaults;
    if (o->bits < 12 || o->bits > 22 || o->epochs < 1 || o->epochs > 1000 || !(o->rate > 0) ||
        !(o->l2 >= 0) || !(o->char_weight >= 0 && o->char_weight < 1)) {
        ah_err_printf(err, errlen, "bad training options");
        return NULL;
    }
    if (n == 0 || n > AH_INTENT_MAX_ROWS) {
        ah_err_printf(err, errlen, n ? "more than %u rows" : "no rows", AH_INTENT_MAX_ROWS);
        return NULL;
    }
    label_map_t *lm = label_map_new();
    int *y = ah_malloc(n * sizeof(int));
    for (size_t i = 0; i < n; i++) {
        if ((y[i] = label_id(lm, labels[i])) < 0) {
            ah_err_printf(err, errlen, "more than %d labels", AH_INTENT_MAX_CLASSES);
            goto fail;
        }
    }
    if (lm->n < 2) {
        ah_err_printf(err, errlen, "fewer than two labels");
        goto fail;
    }
    if ((double)n * lm->n > AH_INTENT_MAX_WORK) {
        ah_err_printf(err, errlen,
                      "%zu rows x %d labels is more than this gateway trains at start (%u); "
                      "use a sample of the history",
                      n, lm->n, AH_INTENT_MAX_WORK);
        goto fail;
    }
    ah_intent_t *m = ah_calloc(1, sizeof *m);
    m->bits = o->bits;
    m->mask = (1u << o->bits) - 1;
    m->nc = lm->n;
    m->labels = lm->names;
    m->rows = n;
    m->char_weight = o->char_weight;
    m->w = ah_calloc((size_t)1 << o->bits, (size_t)m->nc * sizeof(float));
    m->b = ah_calloc((size_t)m->nc, sizeof(float));
    label_map_free(lm, 1);

    size_t *order = ah_malloc(n * sizeof(size_t));
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    feats_t *f = ah_malloc(sizeof *f);
    float *p = ah_malloc((size_t)m->nc * sizeof(float));
    uint64_t rs = rnd_state(o->seed);
    int nc = m->nc;
    for (int ep = 0; ep < o->epochs; ep++) {
        shuffle(order, n, &rs);
        float rate = o->rate / (1.0f + (float)ep);
        float decay = 1.0f - rate * o->l2;
        for (size_t k = 0; k < n; k++) {
            size_t r = order[k];
            featurise(m, texts[r], lens ? lens[r] : strlen(texts[r]), f);
            if (f->n == 0)
                continue;
            scores(m, f, p);
            p[y[r]] -= 1.0f; /* the gradient of the cross-entropy by the scores */
            for (int c = 0; c < nc; c++)
                m->b[c] -= rate * p[c];
            for (int i = 0; i < f->n; i++) {
                float *wr = m->w + (size_t)f->idx[i] * (size_t)nc;
                float g = rate * f->val[i];
                for (int c = 0; c < nc; c++)
                    wr[c] = wr[c] * decay - g * p[c];
            }
        }
    }
    ah_free(p);
    ah_free(f);
    ah_free(order);
    ah_free(y);
    return m;
fail:
    label_map_free(lm, 0);
    ah_free(y);
    return NULL;
}

/* ---- the CSV file -------------------------------------------------------- */

static int col_named(const char **f, const size_t *lens, size_t nf, const char *const *names)
{
    for (const char *const *nm = names; *nm; nm++)
        for (size_t i = 0; i < nf; i++)
            if (strlen(*nm) == lens[i] && strncasecmp(f[i], *nm, lens[i]) == 0)
                return (int)i;
    return -1;
}

/* A label is shown in a response header: printable, bounded. */
static int label_ok(const char *s, size_t n)
{
    if (n == 0 || n > AH_INTENT_MAX_LABEL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

ah_intent_t *ah_intent_load_csv(const char *path, const ah_intent_opts_t *opts, char *err,
                                size_t errlen)
{
    char *data = NULL;
    size_t n = 0;
    if (ah_buf_read_file(path, AH_INTENT_MAX_FILE, &data, &n, err, errlen))
        return NULL;
    ah_intent_t *m = ah_intent_parse_csv(data, n, path, opts, err, errlen);
    ah_free(data);
    return m;
}

/* The rows of a history file: texts (cut at AH_INTENT_MAX_TEXT) and labels. */
typedef struct rows {
    char **texts, **labels;
    size_t *tlens;
    size_t n, cap;
} rows_t;

static void rows_free(rows_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        ah_free(r->texts[i]);
        ah_free(r->labels[i]);
    }
    ah_free(r->texts);
    ah_free(r->labels);
    ah_free(r->tlens);
    memset(r, 0, sizeof *r);
}

static ah_err_t read_rows(const char *data, size_t n, const char *path, rows_t *out, char *err,
                          size_t errlen)
{
    static const char *const text_names[] = {"text", "prompt", "query", "question", NULL};
    static const char *const label_names[] = {"label", "intent", "category", "class", NULL};
    const char *f[AH_LABELS_MAX_FIELDS];
    size_t lens[AH_LABELS_MAX_FIELDS], nf = 0, pos = 0, line = 1;
    memset(out, 0, sizeof *out);
    if (n > AH_INTENT_MAX_FILE) {
        ah_err_printf(err, errlen, "%s: larger than %u bytes", path, AH_INTENT_MAX_FILE);
        return AH_E_TOOBIG;
    }
    char *scratch = ah_malloc(n + 1);
    ah_err_t rc = ah_csv_record(data, n, &pos, scratch, f, lens, AH_LABELS_MAX_FIELDS, &nf, &line);
    if (rc) {
        ah_err_printf(err, errlen, "%s:1: %s", path,
                      rc == AH_E_NOTFOUND ? "empty file" : "malformed header");
        rc = AH_E_PARSE;
        goto out;
    }
    int tc = col_named(f, lens, nf, text_names), lc = col_named(f, lens, nf, label_names);
    if (tc < 0)
        tc = lc == 0 ? 1 : 0;
    if (lc < 0)
        lc = tc == 1 ? 0 : 1;
    if ((size_t)tc >= nf || (size_t)lc >= nf || tc == lc) {
        ah_err_printf(err, errlen, "%s:1: expected a header with a text and a label column", path);
        rc = AH_E_PARSE;
        goto out;
    }
    for (;;) {
        size_t at;
        rc = ah_csv_next(data, n, &pos, scratch, f, lens, &nf, &line, &at, path, err, errlen);
        if (rc == AH_E_NOTFOUND) {
            rc = AH_E_OK;
            break;
        }
        if (rc)
            goto out;
        if ((size_t)tc >= nf || (size_t)lc >= nf || !label_ok(f[lc], lens[lc])) {
            ah_err_printf(err, errlen,
                          "%s:%zu: expected a text and a label (1 to %d bytes, no control "
                          "characters)",
                          path, at, AH_INTENT_MAX_LABEL);
            rc = AH_E_PARSE;
            goto out;
        }
        if (out->n == AH_INTENT_MAX_ROWS) {
            ah_err_printf(err, errlen, "%s:%zu: more than %u rows", path, at, AH_INTENT_MAX_ROWS);
            rc = AH_E_TOOBIG;
            goto out;
        }
        if (out->n == out->cap) {
            out->cap = out->cap ? 2 * out->cap : 1024;
            out->texts = ah_realloc(out->texts, out->cap * sizeof *out->texts);
            out->labels = ah_realloc(out->labels, out->cap * sizeof *out->labels);
            out->tlens = ah_realloc(out->tlens, out->cap * sizeof *out->tlens);
        }
        size_t tl = lens[tc] < AH_INTENT_MAX_TEXT ? lens[tc] : AH_INTENT_MAX_TEXT;
        out->texts[out->n] = ah_strndup(f[tc], tl);
        out->tlens[out->n] = tl;
        out->labels[out->n] = ah_strndup(f[lc], lens[lc]);
        out->n++;
    }
out:
    if (rc)
        rows_free(out);
    ah_free(scratch);
    return rc;
}

ah_intent_t *ah_intent_parse_csv(const char *data, size_t n, const char *path,
                                 const ah_intent_opts_t *opts, char *err, size_t errlen)
{
    rows_t r;
    if (read_rows(data, n, path, &r, err, errlen))
        return NULL;
    char why[256];
    ah_intent_t *m = ah_intent_train((const char *const *)r.texts, r.tlens,
                                     (const char *const *)r.labels, r.n, opts, why, sizeof why);
    if (!m)
        ah_err_printf(err, errlen, "%s: %s", path, why);
    rows_free(&r);
    return m;
}

/* ---- checking a history on itself ---------------------------------------- */

const double ah_intent_check_levels[AH_INTENT_CHECK_LEVELS] = {0.5, 0.6, 0.7, 0.8, 0.9};

/* One fold: a model of the rows at train[], then the rows at test[] classified
 * and replayed in order (a hit: an earlier stored row of the same label, both
 * at least that probable; right when their own labels agree). */
static ah_err_t check_fold(const rows_t *r, const size_t *train, size_t ntrain, const size_t *test,
                           size_t ntest, const ah_intent_opts_t *o, ah_intent_check_t *out,
                           char *err, size_t errlen)
{
    const char **t = ah_malloc(ntrain * sizeof *t), **l = ah_malloc(ntrain * sizeof *l);
    size_t *tl = ah_malloc(ntrain * sizeof *tl);
    for (size_t i = 0; i < ntrain; i++) {
        t[i] = r->texts[train[i]];
        l[i] = r->labels[train[i]];
        tl[i] = r->tlens[train[i]];
    }
    ah_intent_t *m = ah_intent_train(t, tl, l, ntrain, o, err, errlen);
    ah_free(t);
    ah_free(l);
    ah_free(tl);
    if (!m)
        return AH_E_INVAL;
    int *pred = ah_malloc(ntest * sizeof *pred);
    float *conf = ah_malloc(ntest * sizeof *conf);
    for (size_t i = 0; i < ntest; i++) {
        size_t k = test[i];
        pred[i] = ah_intent_predict(m, r->texts[k], r->tlens[k], NULL, &conf[i]);
        out->correct += pred[i] >= 0 && strcmp(ah_intent_label(m, pred[i]), r->labels[k]) == 0;
    }
    out->tested += ntest;
    /* per label, the first stored row a hit is served from (index into test[]) */
    size_t *first = ah_malloc((size_t)m->nc * sizeof *first);
    for (int lv = 0; lv < AH_INTENT_CHECK_LEVELS; lv++) {
        ah_intent_check_level_t *a = &out->at[lv];
        float c = (float)ah_intent_check_levels[lv];
        for (int k = 0; k < m->nc; k++)
            first[k] = SIZE_MAX;
        for (size_t i = 0; i < ntest; i++) {
            int confident = pred[i] >= 0 && conf[i] >= c;
            if (confident) {
                a->covered++;
                a->covered_right += strcmp(ah_intent_label(m, pred[i]), r->labels[test[i]]) == 0;
            }
            if (confident && first[pred[i]] != SIZE_MAX) {
                a->hits++;
                a->hits_right += strcmp(r->labels[test[first[pred[i]]]], r->labels[test[i]]) == 0;
            } else if (confident) {
                first[pred[i]] = i; /* a miss, stored */
            }
        }
    }
    ah_free(first);
    ah_free(pred);
    ah_free(conf);
    ah_intent_free(m);
    return AH_E_OK;
}

ah_err_t ah_intent_check_csv(const char *path, const ah_intent_opts_t *opts, ah_intent_check_t *out,
                             char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *data = NULL;
    size_t n = 0;
    ah_err_t rc = ah_buf_read_file(path, AH_INTENT_MAX_FILE, &data, &n, err, errlen);
    if (rc)
        return rc;
    rows_t r;
    rc = read_rows(data, n, path, &r, err, errlen);
    ah_free(data);
    if (rc)
        return rc;
    out->rows = r.n;
    size_t *order = ah_malloc((r.n ? r.n : 1) * sizeof *order);
    for (size_t i = 0; i < r.n; i++)
        order[i] = i;
    uint64_t rs = rnd_state((opts ? opts : &ah_intent_defaults)->seed);
    shuffle(order, r.n, &rs);
    size_t mid = r.n / 2;
    char why[256] = "";
    if (mid == 0 ||
        (rc = check_fold(&r, order, mid, order + mid, r.n - mid, opts, out, why, sizeof why)) ||
        (rc = check_fold(&r, order + mid, r.n - mid, order, mid, opts, out, why, sizeof why))) {
        ah_err_printf(err, errlen, "%s: %s", path, mid == 0 ? "fewer than two rows" : why);
        rc = rc ? rc : AH_E_INVAL;
    }
    /* labels of the whole file */
    label_map_t *lm = label_map_new();
    for (size_t i = 0; i < r.n && label_id(lm, r.labels[i]) >= 0; i++)
        ;
    out->labels = lm->n;
    label_map_free(lm, 0);
    ah_free(order);
    rows_free(&r);
    return rc;
}

/* ---- use ----------------------------------------------------------------- */

void ah_intent_free(ah_intent_t *m)
{
    if (!m)
        return;
    for (int c = 0; c < m->nc; c++)
        ah_free(m->labels[c]);
    ah_free(m->labels);
    ah_free(m->w);
    ah_free(m->b);
    ah_free(m);
}

int ah_intent_classes(const ah_intent_t *m)
{
    return m->nc;
}

const char *ah_intent_label(const ah_intent_t *m, int c)
{
    return c >= 0 && c < m->nc ? m->labels[c] : NULL;
}

size_t ah_intent_rows(const ah_intent_t *m)
{
    return m->rows;
}

int ah_intent_predict(const ah_intent_t *m, const char *text, size_t len, float *p, float *conf)
{
    feats_t f;
    float buf[AH_INTENT_MAX_CLASSES];
    float *q = p ? p : buf;
    featurise(m, text, len, &f);
    if (f.n == 0) {
        memset(q, 0, (size_t)m->nc * sizeof *q);
        if (conf)
            *conf = 0;
        return -1;
    }
    int c = scores(m, &f, q);
    if (conf)
        *conf = q[c];
    return c;
}
