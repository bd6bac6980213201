/* bpe.c - tiktoken's byte-level BPE (o200k_base, cl100k_base), exact.
 *
 * Three parts: the rank table (a hash map from token bytes to rank, built
 * once from the rank file), the pre-tokenizers (each encoding's regex,
 * written out as a scanner that follows the regex engine's leftmost-first,
 * backtracking semantics; see the comments at piece_o200k and piece_cl100k),
 * and the merge (tiktoken's _byte_pair_merge, plus a heap variant for long
 * pieces that makes the same choices). docs/tokenizer.md explains why the
 * regexes are hand-written rather than run by PCRE2. */
#include "tokenize/bpe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "tokenize/unicode_classes.h"

#define NO_RANK UINT32_MAX
/* Hash table load: at most one entry for two slots. */
#define SLOTS_PER_ENTRY 2

enum bpe_kind { KIND_O200K, KIND_CL100K };

typedef struct special {
    const char *text;
    uint32_t id;
} special_t;

static const special_t O200K_SPECIALS[] = {
    {"<|endoftext|>", 199999},
    {"<|endofprompt|>", 200018},
};
static const special_t CL100K_SPECIALS[] = {
    {"<|endoftext|>", 100257},  {"<|fim_prefix|>", 100258},  {"<|fim_middle|>", 100259},
    {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276},
};

static const struct encoding_def {
    const char *name;
    enum bpe_kind kind;
    const special_t *specials;
    size_t nspecials;
} ENCODINGS[] = {
    {"o200k_base", KIND_O200K, O200K_SPECIALS, sizeof O200K_SPECIALS / sizeof O200K_SPECIALS[0]},
    {"cl100k_base", KIND_CL100K, CL100K_SPECIALS,
     sizeof CL100K_SPECIALS / sizeof CL100K_SPECIALS[0]},
};

struct ah_bpe {
    const struct encoding_def *def;
    unsigned char *blob; /* every token's bytes, specials included */
    uint32_t *off;       /* [nids]: offset of token id in blob */
    uint16_t *len;       /* [nids]: its length; 0 when id is no token */
    uint32_t nids;
    uint64_t *slots; /* hash << 32 | (rank + 1); 0 when empty */
    size_t mask;
    uint32_t byte_rank[256];
};

/* ---- the rank table ---------------------------------------------------- */

static inline uint64_t mix(uint64_t h)
{
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

/* A fast hash of short byte strings; the length is part of it. */
static inline uint64_t hash_bytes(const unsigned char *p, size_t n)
{
    uint64_t h = 0x9e3779b97f4a7c15ull * (n + 1);
    while (n > 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t v;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        v = (uint64_t)a << 32 | b;
    } else {
        v = n ? (uint64_t)p[0] << 16 | (uint64_t)p[n >> 1] << 8 | p[n - 1] : 0;
    }
    return mix((h ^ v) * 0x94d049bb133111ebull);
}

static inline uint32_t lookup(const ah_bpe_t *e, const unsigned char *p, size_t n)
{
    uint64_t h = hash_bytes(p, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t i = h & e->mask;; i = (i + 1) & e->mask) {
        uint64_t s = e->slots[i];
        if (s == 0)
            return NO_RANK;
        if ((uint32_t)(s >> 32) == tag) {
            uint32_t r = (uint32_t)s - 1;
            if (e->len[r] == n && memcmp(e->blob + e->off[r], p, n) == 0)
                return r;
        }
    }
}

static void insert(ah_bpe_t *e, uint32_t rank)
{
    uint64_t h = hash_bytes(e->blob + e->off[rank], e->len[rank]);
    size_t i = h & e->mask;
    while (e->slots[i])
        i = (i + 1) & e->mask;
    e->slots[i] = (h >> 32) << 32 | (uint64_t)(rank + 1);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode base64 src[0..n) into dst (room for n * 3 / 4 bytes); -1 if malformed. */
static long b64_decode(const unsigned char *src, size_t n, unsigned char *dst)
{
    size_t out = 0;
    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (src[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pad++;
            } else if (pad || (v[j] = b64_value(src[i + j])) < 0) {
                return -1;
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        dst[out++] = (unsigned char)(w >> 16);
        if (pad < 2)
            dst[out++] = (unsigned char)(w >> 8);
        if (pad < 1)
            dst[out++] = (unsigned char)w;
    }
    return (long)out;
}

static ah_err_t read_whole(const char *path, unsigned char **data, size_t *size, char *err,
                           size_t errlen)
{
    ah_err_t rc = AH_E_IO;
    struct stat st;
    unsigned char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        ah_err_printf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > AH_BPE_MAX_FILE_BYTES) {
        ah_err_printf(err, errlen, "%s: larger than %u bytes", path, AH_BPE_MAX_FILE_BYTES);
        rc = AH_E_TOOBIG;
        goto out;
    }
    size_t want = (size_t)st.st_size, got = 0;
    buf = ah_malloc(want + 1);
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ah_err_printf(err, errlen, "cannot read %s: %s", path, r ? strerror(errno) : "short");
            goto out;
        }
        got += (size_t)r;
    }
    *data = buf;
    *size = want;
    buf = NULL;
    rc = AH_E_OK;
out:
    if (fd >= 0)
        close(fd);
    ah_free(buf);
    return rc;
}

void ah_bpe_free(ah_bpe_t *e)
{
    if (!e)
        return;
    ah_free(e->blob);
    ah_free(e->off);
    ah_free(e->len);
    ah_free(e->slots);
    ah_free(e);
}

/* Parse the rank file text[0..size) into e. */
static ah_err_t parse_ranks(ah_bpe_t *e, const unsigned char *text, size_t size, char *err,
                            size_t errlen)
{
    size_t lines = 0, blob_len = 0, line_no = 0;
    uint32_t max_rank = 0;
    for (size_t i = 0; i < size; i++)
        lines += text[i] == '\n';
    lines++;
    /* Decoded tokens are shorter than their base64; specials go after them. */
    size_t blob_cap = size + 256;
    e->blob = ah_malloc(blob_cap);
    uint32_t *ranks = ah_malloc(lines * sizeof *ranks);
    uint32_t *offs = ah_malloc(lines * sizeof *offs);
    uint16_t *lens = ah_malloc(lines * sizeof *lens);
    size_t count = 0;
    ah_err_t rc = AH_E_PARSE;
    for (size_t i = 0; i < size;) {
        size_t eol = i;
        while (eol < size && text[eol] != '\n')
            eol++;
        size_t end = eol;
        line_no++;
        if (end > i && text[end - 1] == '\r')
            end--;
        if (end > i) {
            size_t sp = i;
            while (sp < end && text[sp] != ' ')
                sp++;
            size_t b64_len = sp - i;
            if (sp == end || b64_len == 0 || b64_len > (AH_BPE_MAX_TOKEN_BYTES + 2) / 3 * 4) {
                ah_err_printf(err, errlen, "line %zu: not 'base64 rank'", line_no);
                goto out;
            }
            long dl = b64_decode(text + i, b64_len, e->blob + blob_len);
            if (dl <= 0) {
                ah_err_printf(err, errlen, "line %zu: bad base64", line_no);
                goto out;
            }
            uint64_t rank = 0;
            size_t d = sp + 1;
            if (d == end) {
                ah_err_printf(err, errlen, "line %zu: no rank", line_no);
                goto out;
            }
            for (; d < end; d++) {
                if (text[d] < '0' || text[d] > '9' ||
                    (rank = rank * 10 + (text[d] - '0')) >= AH_BPE_MAX_RANK) {
                    ah_err_printf(err, errlen, "line %zu: bad rank (limit %u)", line_no,
                                  AH_BPE_MAX_RANK);
                    goto out;
                }
            }
            ranks[count] = (uint32_t)rank;
            offs[count] = (uint32_t)blob_len;
            lens[count] = (uint16_t)dl;
            blob_len += (size_t)dl;
            if (rank > max_rank)
                max_rank = (uint32_t)rank;
            count++;
        }
        i = eol + 1;
    }
    if (count == 0) {
        ah_err_printf(err, errlen, "no tokens");
        goto out;
    }
    /* Ids: the ranks, then the specials (which may lie past max_rank). */
    uint32_t nids = max_rank + 1;
    for (size_t s = 0; s < e->def->nspecials; s++)
        if (e->def->specials[s].id >= nids)
            nids = e->def->specials[s].id + 1;
    e->nids = nids;
    e->off = ah_calloc(nids, sizeof *e->off);
    e->len = ah_calloc(nids, sizeof *e->len);
    size_t nslots = 1;
    while (nslots < count * SLOTS_PER_ENTRY)
        nslots <<= 1;
    e->slots = ah_calloc(nslots, sizeof *e->slots);
    e->mask = nslots - 1;
    for (size_t t = 0; t < count; t++) {
        uint32_t r = ranks[t];
        if (e->len[r] != 0) {
            ah_err_printf(err, errlen, "rank %u given twice", r);
            goto out;
        }
        if (lookup(e, e->blob + offs[t], lens[t]) != NO_RANK) {
            ah_err_printf(err, errlen, "token of rank %u given twice", r);
            goto out;
        }
        e->off[r] = offs[t];
        e->len[r] = lens[t];
        insert(e, r);
    }
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        if ((e->byte_rank[b] = lookup(e, &c, 1)) == NO_RANK) {
            ah_err_printf(err, errlen, "no token for byte 0x%02x", b);
            goto out;
        }
    }
    for (size_t s = 0; s < e->def->nspecials; s++) {
        const special_t *sp = &e->def->specials[s];
        size_t sl = strlen(sp->text);
        if (e->len[sp->id] != 0 || blob_len + sl > blob_cap) {
            ah_err_printf(err, errlen, "special token %s collides with rank %u", sp->text, sp->id);
            goto out;
        }
        memcpy(e->blob + blob_len, sp->text, sl);
        e->off[sp->id] = (uint32_t)blob_len;
        e->len[sp->id] = (uint16_t)sl;
        blob_len += sl;
    }
    rc = AH_E_OK;
out:
    ah_free(ranks);
    ah_free(offs);
    ah_free(lens);
    return rc;
}

ah_err_t ah_bpe_load(const char *dir, const char *name, ah_bpe_t **out, char *err, size_t errlen)
{
    const struct encoding_def *def = NULL;
    unsigned char *text = NULL;
    size_t size = 0;
    char path[4096];
    ah_bpe_t *e = NULL;
    ah_err_t rc = AH_E_INVAL;
    *out = NULL;
    if (!dir || !name)
        goto out;
    for (size_t i = 0; i < sizeof ENCODINGS / sizeof ENCODINGS[0]; i++)
        if (strcmp(ENCODINGS[i].name, name) == 0)
            def = &ENCODINGS[i];
    if (!def) {
        ah_err_printf(err, errlen, "unknown encoding %s (o200k_base, cl100k_base)", name);
        rc = AH_E_NOTFOUND;
        goto out;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s.tiktoken", dir, name) >= sizeof path) {
        ah_err_printf(err, errlen, "path too long");
        rc = AH_E_TOOBIG;
        goto out;
    }
    if ((rc = read_whole(path, &text, &size, err, errlen)))
        goto out;
    e = ah_calloc(1, sizeof *e);
    e->def = def;
    if ((rc = parse_ranks(e, text, size, err, errlen))) {
        char why[256];
        snprintf(why, sizeof why, "%s", err ? err : "");
        ah_err_printf(err, errlen, "%s: %s", path, why);
        goto out;
    }
    *out = e;
    e = NULL;
out:
    ah_free(text);
    ah_bpe_free(e);
    return rc;
}

const char *ah_bpe_name(const ah_bpe_t *e)
{
    return e->def->name;
}

uint32_t ah_bpe_vocab_size(const ah_bpe_t *e)
{
    return e->nids;
}

const char *ah_bpe_token(const ah_bpe_t *e, uint32_t id, size_t *len)
{
    if (id >= e->nids || e->len[id] == 0)
        return NULL;
    *len = e->len[id];
    return (const char *)e->blob + e->off[id];
}

ah_err_t ah_bpe_decode(const ah_bpe_t *e, const uint32_t *ids, size_t n, ah_buf_t *out)
{
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *t = ah_bpe_token(e, ids[i], &len);
        if (!t)
            return AH_E_INVAL;
        ah_err_t rc = ah_buf_append(out, t, len);
        if (rc)
            return rc;
    }
    return AH_E_OK;
}

/* ---- the pre-tokenizers ------------------------------------------------ */

/* The class of the character at s[i] (i < n) into *cls; returns its length.
 * A byte that does not start a well-formed UTF-8 sequence (overlong,
 * surrogate, past U+10FFFF, truncated) is one character of class OTHER. */
static inline size_t char_at(const unsigned char *s, size_t i, size_t n, int *cls)
{
    unsigned c = s[i];
    uint32_t cp;
    size_t len;
    if (c < 0x80) {
        *cls = ah_uclass_of(c);
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
            goto bad;
        cp = (c & 0x1Fu) << 6 | (s[i + 1] & 0x3Fu);
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (i + 2 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80)
            goto bad;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F))
            goto bad;
        cp = (c & 0x0Fu) << 12 | (s[i + 1] & 0x3Fu) << 6 | (s[i + 2] & 0x3Fu);
        len = 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (i + 3 >= n || (s[i + 1] & 0xC0) != 0x80 || (s[i + 2] & 0xC0) != 0x80 ||
            (s[i + 3] & 0xC0) != 0x80)
            goto bad;
        if ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
            goto bad;
        cp = (c & 0x07u) << 18 | (s[i + 1] & 0x3Fu) << 12 | (s[i + 2] & 0x3Fu) << 6 |
             (s[i + 3] & 0x3Fu);
        len = 4;
    } else {
        goto bad;
    }
    *cls = ah_uclass_of(cp);
    return len;
bad:
    *cls = AH_UC_OTHER;
    return 1;
}

static inline bool is_letter(int c)
{
    return c == AH_UC_UPPER || c == AH_UC_LOWER || c == AH_UC_LETTER_OTHER;
}

/* o200k's [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] and [\p{Ll}\p{Lm}\p{Lo}\p{M}]. */
static inline bool in_upper_set(int c)
{
    return c == AH_UC_UPPER || c == AH_UC_LETTER_OTHER || c == AH_UC_MARK;
}

static inline bool in_lower_set(int c)
{
    return c == AH_UC_LOWER || c == AH_UC_LETTER_OTHER || c == AH_UC_MARK;
}

/* [^\s\p{L}\p{N}] */
static inline bool is_punct(int c)
{
    return c == AH_UC_OTHER || c == AH_UC_MARK;
}

/* [^\r\n\p{L}\p{N}], given the class and first byte of a character. */
static inline bool is_prefix(int c, unsigned char b)
{
    return b != '\r' && b != '\n' && !is_letter(c) && c != AH_UC_NUMBER;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at s[q]: the end of the match, or q. Under
 * (?i) the regex engine also folds U+017F LATIN SMALL LETTER LONG S to s. */
static inline size_t contraction(const unsigned char *s, size_t q, size_t n)
{
    if (q + 1 >= n || s[q] != '\'')
        return q;
    unsigned c = s[q + 1] | 0x20u;
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
        return q + 2;
    if (q + 2 >= n)
        return q;
    unsigned d = s[q + 2] | 0x20u;
    if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l'))
        return q + 3;
    if (s[q + 1] == 0xC5 && s[q + 2] == 0xBF)
        return q + 3;
    return q;
}

/* \p{N}{1,3} from s[i], whose class is NUMBER. */
static inline size_t numbers(const unsigned char *s, size_t i, size_t n)
{
    int c;
    size_t q = i + char_at(s, i, n, &c);
    for (int k = 1; k < 3 && q < n; k++) {
        size_t l = char_at(s, q, n, &c);
        if (c != AH_UC_NUMBER)
            break;
        q += l;
    }
    return q;
}

/* ` ?[^\s\p{L}\p{N}]+[\r\n]*` (o200k: `[\r\n/]*`) from s[i]; 0 if no match. */
static inline size_t punct(const unsigned char *s, size_t i, size_t n, int c0, bool slash)
{
    size_t q = i;
    int c;
    if (s[i] == ' ' && i + 1 < n) {
        char_at(s, i + 1, n, &c);
        if (is_punct(c))
            q = i + 1;
    }
    if (q == i && !is_punct(c0))
        return 0;
    while (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (!is_punct(c))
            break;
        q += l;
    }
    while (q < n && (s[q] == '\r' || s[q] == '\n' || (slash && s[q] == '/')))
        q++;
    return q;
}

/* `\s*[\r\n]+|\s+(?!\S)|\s+` from s[i], whose class is SPACE:
 * - the first matches up to the last newline of the run of white space, if
 *   the run has one (\s* gives back characters until [\r\n]+ can match);
 * - else, at the end of text, the whole run; else the run less its last
 *   character (which is followed by the non-space), when that leaves one;
 * - else the whole run (a single space before a non-space). */
static inline size_t spaces(const unsigned char *s, size_t i, size_t n)
{
    size_t q = i, last = i, after_newline = 0;
    int c;
    while (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (c != AH_UC_SPACE)
            break;
        last = q;
        q += l;
        if (s[last] == '\r' || s[last] == '\n')
            after_newline = q;
    }
    if (after_newline)
        return after_newline;
    if (q == n || last == i)
        return q;
    return last;
}

/* o200k, first letter alternative, from p:
 * [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|...)?
 * The first set (U) runs greedily to q. If a lower-set character (then Ll)
 * follows, the second set runs on from there. Otherwise the engine gives
 * back U characters until one is also in the second set (Lm, Lo, M): the
 * match ends after the last such character of the run. 0 if no match. */
static size_t o200k_upper_lower(const unsigned char *s, size_t p, size_t n)
{
    size_t q = p, both_end = 0;
    int c;
    while (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (!in_upper_set(c))
            break;
        q += l;
        if (c != AH_UC_UPPER)
            both_end = q;
    }
    if (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (c == AH_UC_LOWER) {
            q += l;
            while (q < n) {
                l = char_at(s, q, n, &c);
                if (!in_lower_set(c))
                    break;
                q += l;
            }
            return contraction(s, q, n);
        }
    }
    return both_end ? contraction(s, both_end, n) : 0;
}

/* o200k, second letter alternative, from p:
 * [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|...)? */
static size_t o200k_upper_run(const unsigned char *s, size_t p, size_t n)
{
    size_t q = p;
    int c;
    while (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (!in_upper_set(c))
            break;
        q += l;
    }
    if (q == p)
        return 0;
    while (q < n) {
        size_t l = char_at(s, q, n, &c);
        if (!in_lower_set(c))
            break;
        q += l;
    }
    return contraction(s, q, n);
}

/* The end of the o200k_base piece that starts at s[i] (i < n): the match of
 *   [^\r\n\p{L}\p{N}]?[UPPER]*[LOWER]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *  |[^\r\n\p{L}\p{N}]?[UPPER]+[LOWER]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *  |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with UPPER = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], LOWER = [\p{Ll}\p{Lm}\p{Lo}\p{M}].
 * Alternatives are tried in order, each first with its optional prefix
 * character and then without (a mark is both a prefix and in UPPER). */
static size_t piece_o200k(const unsigned char *s, size_t i, size_t n)
{
    int c0;
    size_t l0 = char_at(s, i, n, &c0), end;
    bool prefix = is_prefix(c0, s[i]) && i + l0 < n;
    if (prefix && (end = o200k_upper_lower(s, i + l0, n)))
        return end;
    if ((in_upper_set(c0) || in_lower_set(c0)) && (end = o200k_upper_lower(s, i, n)))
        return end;
    if (prefix && (end = o200k_upper_run(s, i + l0, n)))
        return end;
    if (in_upper_set(c0) && (end = o200k_upper_run(s, i, n)))
        return end;
    if (c0 == AH_UC_NUMBER)
        return numbers(s, i, n);
    if ((end = punct(s, i, n, c0, true)))
        return end;
    if (c0 == AH_UC_SPACE)
        return spaces(s, i, n);
    return i + l0; /* not reached: the alternatives cover every character */
}

/* \p{L}+ from p; p when none. */
static inline size_t letters(const unsigned char *s, size_t p, size_t n)
{
    int c;
    while (p < n) {
        size_t l = char_at(s, p, n, &c);
        if (!is_letter(c))
            break;
        p += l;
    }
    return p;
}

/* The end of the cl100k_base piece that starts at s[i] (i < n): the match of
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *  | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t piece_cl100k(const unsigned char *s, size_t i, size_t n)
{
    int c0;
    size_t l0 = char_at(s, i, n, &c0), end;
    if (s[i] == '\'' && (end = contraction(s, i, n)) > i)
        return end;
    if (is_prefix(c0, s[i]) && i + l0 < n && (end = letters(s, i + l0, n)) > i + l0)
        return end;
    if (is_letter(c0))
        return letters(s, i, n);
    if (c0 == AH_UC_NUMBER)
        return numbers(s, i, n);
    if ((end = punct(s, i, n, c0, false)))
        return end;
    if (c0 == AH_UC_SPACE)
        return spaces(s, i, n);
    return i + l0; /* not reached */
}

/* ---- the merge --------------------------------------------------------- */

typedef struct sink {
    uint32_t *ids;
    size_t cap;   /* ids has room for cap */
    size_t n;     /* tokens so far (may pass cap) */
    size_t limit; /* growing mode: most ids kept */
    bool growing; /* ids is ours and grows up to limit */
    bool full;    /* growing mode passed limit: stop */
} sink_t;

static void grow(sink_t *k)
{
    size_t cap = k->cap ? k->cap * 2 : 256;
    if (cap > k->limit)
        cap = k->limit;
    k->ids = ah_realloc(k->ids, cap * sizeof *k->ids);
    k->cap = cap;
}

static inline void emit(sink_t *k, uint32_t id)
{
    if (k->n >= k->cap && k->growing) {
        if (k->n >= k->limit) {
            k->full = true;
            return;
        }
        grow(k);
    }
    if (k->n < k->cap)
        k->ids[k->n] = id;
    k->n++;
}

/* tiktoken's _byte_pair_merge: parts start at start[0..np); rank[i] is the
 * rank of part i joined with part i+1. Merge the lowest rank (leftmost on
 * ties) until no adjacent pair is a token. */
static void merge_small(const ah_bpe_t *e, const unsigned char *p, size_t len, sink_t *k)
{
    uint32_t start[AH_BPE_SMALL_PIECE + 1], rank[AH_BPE_SMALL_PIECE + 1];
    size_t np = len + 1;
    for (size_t i = 0; i + 1 < len; i++) {
        start[i] = (uint32_t)i;
        rank[i] = lookup(e, p + i, 2);
    }
    start[len - 1] = (uint32_t)(len - 1);
    rank[len - 1] = NO_RANK;
    start[len] = (uint32_t)len;
    rank[len] = NO_RANK;
    for (;;) {
        uint32_t min = NO_RANK;
        size_t at = 0;
        for (size_t i = 0; i + 1 < np; i++) {
            if (rank[i] < min) {
                min = rank[i];
                at = i;
            }
        }
        if (min == NO_RANK)
            break;
        if (at > 0)
            rank[at - 1] =
                at + 2 < np ? lookup(e, p + start[at - 1], start[at + 2] - start[at - 1]) : NO_RANK;
        rank[at] = at + 3 < np ? lookup(e, p + start[at], start[at + 3] - start[at]) : NO_RANK;
        memmove(start + at + 1, start + at + 2, (np - at - 2) * sizeof *start);
        memmove(rank + at + 1, rank + at + 2, (np - at - 2) * sizeof *rank);
        np--;
    }
    for (size_t i = 0; i + 1 < np; i++)
        emit(k, lookup(e, p + start[i], start[i + 1] - start[i]));
}

/* Min-heap of rank << 32 | position. */
static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = v;
    return top;
}

/* The same merges as merge_small for long pieces, in O(n log n): parts are
 * a linked list, candidate pairs a heap ordered by (rank, position), so the
 * pair taken is again the lowest rank, leftmost on ties. An entry is stale
 * when its part is gone or its pair's rank changed (a pair only grows, and
 * distinct byte strings have distinct ranks, so a rank names one span). */
static void merge_large(const ah_bpe_t *e, const unsigned char *p, size_t len, sink_t *k)
{
    uint32_t *next = ah_malloc((len + 1) * sizeof *next);
    uint32_t *prev = ah_malloc((len + 1) * sizeof *prev);
    uint32_t *rank = ah_malloc((len + 1) * sizeof *rank);
    uint64_t *heap = ah_malloc(3 * len * sizeof *heap);
    size_t nh = 0;
    /* Part i spans p[i .. next[i]); len is the end sentinel. */
    for (size_t i = 0; i <= len; i++) {
        next[i] = (uint32_t)(i < len ? i + 1 : len);
        prev[i] = (uint32_t)(i ? i - 1 : UINT32_MAX);
        rank[i] = i + 1 < len ? lookup(e, p + i, 2) : NO_RANK;
        if (rank[i] != NO_RANK)
            heap_push(heap, &nh, (uint64_t)rank[i] << 32 | i);
    }
    while (nh) {
        uint64_t top = heap_pop(heap, &nh);
        uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
        if (rank[i] != r)
            continue;
        uint32_t j = next[i];
        next[i] = next[j];
        prev[next[j]] = i;
        rank[j] = NO_RANK;
        next[j] = j; /* dead */
        rank[i] = next[i] < len ? lookup(e, p + i, next[next[i]] - i) : NO_RANK;
        if (rank[i] != NO_RANK)
            heap_push(heap, &nh, (uint64_t)rank[i] << 32 | i);
        uint32_t h = prev[i];
        if (h != UINT32_MAX) {
            rank[h] = lookup(e, p + h, next[i] - h);
            if (rank[h] != NO_RANK)
                heap_push(heap, &nh, (uint64_t)rank[h] << 32 | h);
        }
    }
    for (uint32_t i = 0; i < len; i = next[i])
        emit(k, lookup(e, p + i, next[i] - i));
    ah_free(next);
    ah_free(prev);
    ah_free(rank);
    ah_free(heap);
}

static inline void encode_piece(const ah_bpe_t *e, const unsigned char *p, size_t len, sink_t *k)
{
    if (len == 1) {
        emit(k, e->byte_rank[p[0]]);
        return;
    }
    uint32_t r = lookup(e, p, len);
    if (r != NO_RANK)
        emit(k, r);
    else if (len <= AH_BPE_SMALL_PIECE)
        merge_small(e, p, len, k);
    else
        merge_large(e, p, len, k);
}

static void encode_ordinary(const ah_bpe_t *e, const unsigned char *s, size_t n, sink_t *k)
{
    size_t i = 0;
    if (e->def->kind == KIND_O200K) {
        while (i < n && !k->full) {
            size_t j = piece_o200k(s, i, n);
            encode_piece(e, s + i, j - i, k);
            i = j;
        }
    } else {
        while (i < n && !k->full) {
            size_t j = piece_cl100k(s, i, n);
            encode_piece(e, s + i, j - i, k);
            i = j;
        }
    }
}

/* The first special token at or after s[from]: its position, or n. */
static size_t find_special(const ah_bpe_t *e, const unsigned char *s, size_t n, size_t from,
                           const special_t **which)
{
    for (size_t i = from; i + 1 < n;) {
        const unsigned char *lt = memchr(s + i, '<', n - i - 1);
        if (!lt)
            break;
        i = (size_t)(lt - s);
        if (s[i + 1] == '|') {
            for (size_t t = 0; t < e->def->nspecials; t++) {
                const special_t *sp = &e->def->specials[t];
                size_t sl = e->len[sp->id];
                if (sl <= n - i && memcmp(s + i, sp->text, sl) == 0) {
                    *which = sp;
                    return i;
                }
            }
        }
        i++;
    }
    return n;
}

static ah_err_t encode(const ah_bpe_t *e, const char *text, size_t len, unsigned flags, sink_t *k)
{
    const unsigned char *s = (const unsigned char *)text;
    if (!e || (!text && len))
        return AH_E_INVAL;
    if (len > AH_BPE_MAX_TEXT_BYTES)
        return AH_E_TOOBIG;
    if (!(flags & AH_BPE_ALLOW_SPECIAL)) {
        encode_ordinary(e, s, len, k);
        return AH_E_OK;
    }
    for (size_t i = 0; i < len && !k->full;) {
        const special_t *sp = NULL;
        size_t at = find_special(e, s, len, i, &sp);
        encode_ordinary(e, s + i, at - i, k);
        if (at == len)
            break;
        emit(k, sp->id);
        i = at + e->len[sp->id];
    }
    return AH_E_OK;
}

ah_err_t ah_bpe_encode(const ah_bpe_t *e, const char *text, size_t len, unsigned flags,
                       uint32_t *ids, size_t max, size_t *n)
{
    sink_t k = {.ids = ids, .cap = ids ? max : 0};
    ah_err_t rc = encode(e, text, len, flags, &k);
    *n = rc ? 0 : k.n;
    if (!rc && k.n > k.cap)
        rc = AH_E_TOOBIG;
    return rc;
}

ah_err_t ah_bpe_encode_alloc(const ah_bpe_t *e, const char *text, size_t len, unsigned flags,
                             size_t max_tokens, uint32_t **ids, size_t *n)
{
    sink_t k = {.limit = max_tokens, .growing = true};
    ah_err_t rc = encode(e, text, len, flags, &k);
    if (!rc && k.full)
        rc = AH_E_TOOBIG;
    if (rc) {
        ah_free(k.ids);
        *ids = NULL;
        *n = 0;
        return rc;
    }
    *ids = k.ids;
    *n = k.n;
    return AH_E_OK;
}

ah_err_t ah_bpe_count(const ah_bpe_t *e, const char *text, size_t len, unsigned flags, size_t *n)
{
    sink_t k = {0};
    ah_err_t rc = encode(e, text, len, flags, &k);
    *n = rc ? 0 : k.n;
    return rc;
}
