/* embed_m2v.c - the "model2vec" embedder: Model2Vec static models.
 *
 * A Model2Vec model is a table of one vector per token. A text's embedding
 * is the mean of its tokens' rows, L2-normalised: no network, microseconds a
 * text. The model directory holds model.safetensors (the table), tokenizer.json
 * (see tokenizer.c) and config.json. The safetensors file is memory-mapped and
 * treated as untrusted: every length, offset, shape and dtype is checked
 * before a byte of tensor data is read.
 *
 * Tensors, as Model2Vec writes them:
 *   embeddings  [rows, dim] F32, F16, BF16, F64 or I8 (named "0" in older
 *               sentence-transformers exports)
 *   mapping     [vocab] I32/I64, optional: token id -> row (vocabulary
 *               quantization: many tokens share a row)
 *   weights     [vocab] F64/F32/F16, optional: a per-token scale applied to
 *               its row before the mean
 *
 * Pooling follows model2vec-rs's encode(): the text is cut to
 * AH_M2V_MAX_TOKENS times the vocabulary's median token length in
 * characters, tokenized without special tokens, the unknown token's id is
 * dropped, the first AH_M2V_MAX_TOKENS ids are kept, and the mean of their
 * (weighted) rows is divided by its norm. Sums are kept in double. */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/embed.h"
#include "cache/tokenizer.h"
#include "core/alloc.h"
#include "core/error.h"

/* Tokens averaged per text: model2vec's default max_length. */
#define AH_M2V_MAX_TOKENS 512
/* The safetensors header (JSON) may not exceed this (the format's own cap). */
#define AH_M2V_MAX_HEADER_BYTES (100u * 1000 * 1000)
/* config.json is small; anything bigger is not a Model2Vec config. */
#define AH_M2V_MAX_CONFIG_BYTES (1024u * 1024)
#define AH_M2V_PATH_BYTES 4096
#define AH_M2V_MAX_RANK 8
/* Norm below which a vector is left as it is (model2vec-rs's epsilon). */
#define AH_M2V_NORM_EPSILON 1e-12
#define SAFETENSORS_LEN_BYTES 8

typedef enum { DT_F32, DT_F16, DT_BF16, DT_F64, DT_I8, DT_I32, DT_I64 } dtype_t;

static const struct {
    const char *name;
    dtype_t dt;
    size_t size;
} DTYPES[] = {
    {"F32", DT_F32, 4}, {"F16", DT_F16, 2}, {"BF16", DT_BF16, 2}, {"F64", DT_F64, 8},
    {"I8", DT_I8, 1},   {"I32", DT_I32, 4}, {"I64", DT_I64, 8},
};

/* A tensor located in the mapped file. */
typedef struct {
    dtype_t dt;
    size_t esize;
    size_t rank;
    size_t shape[AH_M2V_MAX_RANK];
    size_t count;
    const unsigned char *data;
} tensor_t;

typedef struct {
    ah_tok_t *tok;
    void *map;
    size_t map_len;
    tensor_t emb;
    size_t rows, dim;
    uint32_t *mapping; /* token id -> row, or NULL */
    float *weights;    /* token id -> scale, or NULL */
    size_t nmap;       /* ids covered by mapping / weights */
    int64_t unk_id;
    size_t max_chars;
    bool normalize;
} m2v_t;

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element i of a float or integer tensor, as double; data may be unaligned.
 * safetensors is little-endian, as is every host this builds for. */
static double tensor_get(const tensor_t *t, size_t i)
{
    const unsigned char *p = t->data + i * t->esize;
    switch (t->dt) {
    case DT_F32: {
        float f;
        memcpy(&f, p, sizeof f);
        return f;
    }
    case DT_F16: {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        return half_to_float(h);
    }
    case DT_BF16: {
        uint16_t h;
        memcpy(&h, p, sizeof h);
        uint32_t bits = (uint32_t)h << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    case DT_F64: {
        double d;
        memcpy(&d, p, sizeof d);
        return d;
    }
    case DT_I8:
        return (int8_t)p[0];
    case DT_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    case DT_I64: {
        int64_t v;
        memcpy(&v, p, sizeof v);
        return (double)v;
    }
    }
    return 0;
}

static int64_t tensor_get_int(const tensor_t *t, size_t i)
{
    const unsigned char *p = t->data + i * t->esize;
    if (t->dt == DT_I32) {
        int32_t v;
        memcpy(&v, p, sizeof v);
        return v;
    }
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Check one header entry and locate its data in the mapped file. */
static ah_err_t tensor_parse(const char *name, json_t *desc, const unsigned char *data,
                             size_t data_len, tensor_t *t, char *err, size_t errlen)
{
    const char *dt = json_string_value(json_object_get(desc, "dtype"));
    json_t *shape = json_object_get(desc, "shape");
    json_t *offs = json_object_get(desc, "data_offsets");
    if (!json_is_object(desc) || !dt || !json_is_array(shape) || json_array_size(offs) != 2) {
        ah_err_printf(err, errlen,
                      "model.safetensors: tensor \"%.64s\" lacks dtype, shape or offsets", name);
        return AH_E_PARSE;
    }
    size_t k;
    for (k = 0; k < sizeof DTYPES / sizeof DTYPES[0]; k++)
        if (strcmp(DTYPES[k].name, dt) == 0)
            break;
    if (k == sizeof DTYPES / sizeof DTYPES[0]) {
        ah_err_printf(err, errlen,
                      "model.safetensors: tensor \"%.64s\" has unsupported dtype %.16s", name, dt);
        return AH_E_UNSUPPORTED;
    }
    t->dt = DTYPES[k].dt;
    t->esize = DTYPES[k].size;
    t->rank = json_array_size(shape);
    if (t->rank > AH_M2V_MAX_RANK) {
        ah_err_printf(err, errlen, "model.safetensors: tensor \"%.64s\" has rank %zu", name,
                      t->rank);
        return AH_E_PARSE;
    }
    t->count = 1;
    for (size_t i = 0; i < t->rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 ||
            (uint64_t)json_integer_value(d) > SIZE_MAX ||
            ah_mul_overflows(t->count, (size_t)json_integer_value(d))) {
            ah_err_printf(err, errlen, "model.safetensors: tensor \"%.64s\" has a bad shape", name);
            return AH_E_PARSE;
        }
        t->shape[i] = (size_t)json_integer_value(d);
        t->count *= t->shape[i];
    }
    json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b) ||
        (uint64_t)json_integer_value(e) > data_len) {
        ah_err_printf(err, errlen,
                      "model.safetensors: tensor \"%.64s\" offsets out of range (data is %zu "
                      "bytes)",
                      name, data_len);
        return AH_E_PARSE;
    }
    size_t begin = (size_t)json_integer_value(b), end = (size_t)json_integer_value(e);
    if (ah_mul_overflows(t->count, t->esize) || t->count * t->esize != end - begin) {
        ah_err_printf(err, errlen,
                      "model.safetensors: tensor \"%.64s\" is %zu bytes, its shape and dtype "
                      "need another size",
                      name, end - begin);
        return AH_E_PARSE;
    }
    t->data = data + begin;
    return AH_E_OK;
}

static bool is_float(dtype_t dt)
{
    return dt == DT_F32 || dt == DT_F16 || dt == DT_BF16 || dt == DT_F64;
}

/* Map path and read its tensors into m (embeddings, mapping, weights). */
static ah_err_t load_safetensors(m2v_t *m, const char *path, size_t vocab, char *err, size_t errlen)
{
    ah_err_t rc = AH_E_OK;
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        ah_err_printf(err, errlen, "%s: cannot open", path);
        rc = AH_E_IO;
        goto out;
    }
    if (st.st_size < SAFETENSORS_LEN_BYTES) {
        ah_err_printf(err, errlen, "model.safetensors: %lld bytes, too short for a header",
                      (long long)st.st_size);
        rc = AH_E_PARSE;
        goto out;
    }
    m->map_len = (size_t)st.st_size;
    m->map = mmap(NULL, m->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->map == MAP_FAILED) {
        m->map = NULL;
        ah_err_printf(err, errlen, "%s: mmap failed", path);
        rc = AH_E_IO;
        goto out;
    }
    const unsigned char *base = m->map;
    uint64_t hlen = 0;
    for (int i = SAFETENSORS_LEN_BYTES - 1; i >= 0; i--)
        hlen = (hlen << 8) | base[i];
    if (hlen > AH_M2V_MAX_HEADER_BYTES || hlen > m->map_len - SAFETENSORS_LEN_BYTES) {
        ah_err_printf(err, errlen,
                      "model.safetensors: header length %llu exceeds the file (%zu bytes)",
                      (unsigned long long)hlen, m->map_len);
        rc = AH_E_PARSE;
        goto out;
    }
    json_error_t jerr;
    root = json_loadb((const char *)base + SAFETENSORS_LEN_BYTES, (size_t)hlen, 0, &jerr);
    if (!json_is_object(root)) {
        ah_err_printf(err, errlen, "model.safetensors: header is not a JSON object (%s)",
                      root ? "wrong type" : jerr.text);
        rc = AH_E_PARSE;
        goto out;
    }
    const unsigned char *data = base + SAFETENSORS_LEN_BYTES + hlen;
    size_t data_len = m->map_len - SAFETENSORS_LEN_BYTES - (size_t)hlen;
    tensor_t emb = {0}, map = {0}, wts = {0};
    bool has_emb = false, has_map = false, has_wts = false;
    const char *name;
    json_t *desc;
    json_object_foreach(root, name, desc)
    {
        if (strcmp(name, "__metadata__") == 0)
            continue;
        tensor_t t;
        rc = tensor_parse(name, desc, data, data_len, &t, err, errlen);
        if (rc)
            goto out;
        if (strcmp(name, "embeddings") == 0 || (strcmp(name, "0") == 0 && !has_emb)) {
            emb = t;
            has_emb = true;
        } else if (strcmp(name, "mapping") == 0) {
            map = t;
            has_map = true;
        } else if (strcmp(name, "weights") == 0) {
            wts = t;
            has_wts = true;
        }
    }
    if (!has_emb) {
        ah_err_printf(err, errlen, "model.safetensors: no \"embeddings\" tensor");
        rc = AH_E_PARSE;
        goto out;
    }
    if (emb.rank != 2 || emb.shape[0] == 0 || emb.shape[1] == 0 ||
        emb.shape[1] > AH_EMBED_MAX_DIM || !(is_float(emb.dt) || emb.dt == DT_I8)) {
        ah_err_printf(err, errlen,
                      "model.safetensors: embeddings must be [rows, 1..%d] of a float type or "
                      "I8",
                      AH_EMBED_MAX_DIM);
        rc = AH_E_PARSE;
        goto out;
    }
    m->emb = emb;
    m->rows = emb.shape[0];
    m->dim = emb.shape[1];
    m->nmap = vocab;
    if (has_map) {
        if (map.rank != 1 || (map.dt != DT_I32 && map.dt != DT_I64) || map.count < vocab) {
            ah_err_printf(err, errlen, "model.safetensors: mapping must be I32/I64 [>= %zu tokens]",
                          vocab);
            rc = AH_E_PARSE;
            goto out;
        }
        m->mapping = ah_malloc(vocab * sizeof *m->mapping);
        for (size_t i = 0; i < vocab; i++) {
            int64_t row = tensor_get_int(&map, i);
            if (row < 0 || (uint64_t)row >= m->rows) {
                ah_err_printf(err, errlen,
                              "model.safetensors: mapping[%zu] = %lld is not a row (of %zu)", i,
                              (long long)row, m->rows);
                rc = AH_E_PARSE;
                goto out;
            }
            m->mapping[i] = (uint32_t)row;
        }
    } else if (m->rows < vocab) {
        ah_err_printf(err, errlen, "model.safetensors: %zu rows for a vocabulary of %zu tokens",
                      m->rows, vocab);
        rc = AH_E_PARSE;
        goto out;
    }
    if (has_wts) {
        if (wts.rank != 1 || !is_float(wts.dt) || wts.count < vocab) {
            ah_err_printf(err, errlen, "model.safetensors: weights must be a float [>= %zu tokens]",
                          vocab);
            rc = AH_E_PARSE;
            goto out;
        }
        m->weights = ah_malloc(vocab * sizeof *m->weights);
        for (size_t i = 0; i < vocab; i++)
            m->weights[i] = (float)tensor_get(&wts, i); /* as model2vec-rs: f32 */
    }
out:
    json_decref(root);
    if (fd >= 0)
        close(fd);
    return rc;
}

/* config.json's "normalize" (default true, as model2vec); a missing file is
 * fine, a malformed one is not. */
static ah_err_t load_config(m2v_t *m, const char *path, char *err, size_t errlen)
{
    ah_err_t rc = AH_E_OK;
    m->normalize = true;
    if (access(path, F_OK) != 0)
        return AH_E_OK;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!json_is_object(root)) {
        ah_err_printf(err, errlen, "config.json: line %d: %s", jerr.line,
                      root ? "not an object" : jerr.text);
        rc = AH_E_PARSE;
        goto out;
    }
    json_t *n = json_object_get(root, "normalize");
    if (json_is_boolean(n))
        m->normalize = json_is_true(n);
out:
    json_decref(root);
    return rc;
}

static void m2v_free_impl(m2v_t *m)
{
    if (!m)
        return;
    ah_tok_free(m->tok);
    if (m->map)
        munmap(m->map, m->map_len);
    ah_free(m->mapping);
    ah_free(m->weights);
    ah_free(m);
}

/* Bytes of the first max_chars UTF-8 characters of text[0..len). */
static size_t cut_chars(const char *text, size_t len, size_t max_chars)
{
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            if (chars == max_chars)
                return i;
            chars++;
        }
    }
    return len;
}

static ah_err_t m2v_embed(const ah_embedder_t *e, const char *text, size_t len, float *out)
{
    const m2v_t *m = e->impl;
    uint32_t ids[AH_M2V_MAX_TOKENS];
    double acc[AH_EMBED_MAX_DIM];
    float facc[AH_EMBED_MAX_DIM];
    size_t n = 0;
    memset(out, 0, m->dim * sizeof *out);
    len = cut_chars(text, len, m->max_chars);
    ah_err_t rc = ah_tok_encode(m->tok, text, len, m->unk_id, ids, AH_M2V_MAX_TOKENS, &n);
    if (rc)
        return rc;
    if (n == 0)
        return AH_E_NOTFOUND;
    memset(acc, 0, m->dim * sizeof *acc);
    memset(facc, 0, m->dim * sizeof *facc);
    for (size_t k = 0; k < n; k++) {
        uint32_t id = ids[k];
        size_t row = id;
        double scale = 1.0;
        if (id < m->nmap) {
            row = m->mapping ? m->mapping[id] : id;
            scale = m->weights ? m->weights[id] : 1.0;
        }
        if (row >= m->rows) /* an added token past the table: nothing to add */
            continue;
        size_t base = row * m->dim;
        if (m->emb.dt == DT_F32) {
            const unsigned char *p = m->emb.data + base * sizeof(float);
            for (size_t i = 0; i < m->dim; i++) {
                float f;
                memcpy(&f, p + i * sizeof f, sizeof f);
                if (m->weights)
                    acc[i] += scale * f;
                else
                    facc[i] += f;
            }
        } else {
            for (size_t i = 0; i < m->dim; i++) {
                if (m->weights)
                    acc[i] += scale * tensor_get(&m->emb, base + i);
                else
                    facc[i] += (float)tensor_get(&m->emb, base + i);
            }
        }
    }
    double norm = 0;
    for (size_t i = 0; i < m->dim; i++) {
        if (!m->weights)
            acc[i] = facc[i];
        acc[i] /= (double)n;
        norm += acc[i] * acc[i];
    }
    norm = sqrt(norm);
    /* The cache compares by dot product, so vectors leave unit length even
     * when config.json says normalize: false (cosine is scale-free). */
    if (norm < AH_M2V_NORM_EPSILON)
        norm = 1.0;
    for (size_t i = 0; i < m->dim; i++)
        out[i] = (float)(acc[i] / norm);
    return AH_E_OK;
}

static void m2v_free(ah_embedder_t *e)
{
    m2v_free_impl(e->impl);
    ah_free(e);
}

static const ah_embedder_ops_t M2V_OPS = {
    .name = "model2vec",
    .embed = m2v_embed,
    .free = m2v_free,
};

/* dir/name, or dir/0_StaticEmbedding/name (a sentence-transformers export)
 * when only that exists. */
static bool model_path(char *buf, size_t n, const char *dir, const char *name)
{
    int w = snprintf(buf, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n)
        return false;
    if (access(buf, F_OK) == 0)
        return true;
    char alt[AH_M2V_PATH_BYTES];
    w = snprintf(alt, sizeof alt, "%s/0_StaticEmbedding/%s", dir, name);
    if (w < 0 || (size_t)w >= sizeof alt || access(alt, F_OK) != 0)
        return true; /* report the plain path */
    snprintf(buf, n, "%s", alt);
    return true;
}

ah_embedder_t *ah_embed_open_model2vec(const char *dir, char *err, size_t errlen)
{
    ah_err_t rc = AH_E_OK;
    char path[AH_M2V_PATH_BYTES];
    ah_embedder_t *e = NULL;
    m2v_t *m = ah_calloc(1, sizeof *m);
    if (!model_path(path, sizeof path, dir, "tokenizer.json")) {
        ah_err_printf(err, errlen, "%s: path too long", dir);
        rc = AH_E_INVAL;
        goto out;
    }
    rc = ah_tok_load_file(path, &m->tok, err, errlen);
    if (rc)
        goto out;
    model_path(path, sizeof path, dir, "model.safetensors");
    rc = load_safetensors(m, path, ah_tok_vocab_size(m->tok), err, errlen);
    if (rc)
        goto out;
    model_path(path, sizeof path, dir, "config.json");
    rc = load_config(m, path, err, errlen);
    if (rc)
        goto out;
    m->unk_id = ah_tok_unk_id(m->tok);
    m->max_chars = AH_M2V_MAX_TOKENS * ah_tok_median_token_bytes(m->tok);
    e = ah_calloc(1, sizeof *e);
    e->ops = &M2V_OPS;
    e->dim = (int)m->dim;
    e->impl = m;
out:
    if (rc) {
        m2v_free_impl(m);
        return NULL;
    }
    return e;
}
