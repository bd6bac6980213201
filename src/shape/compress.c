/* compress.c - fewer prompt tokens from the same text (see compress.h).
 *
 * Both passes read the text as blocks split at blank lines: a fenced code
 * block (``` or ~~~, up to its closing fence or the end of the text), an
 * indented code block (a paragraph every line of which is indented by four
 * columns: it may be code, so it is copied as is), or a paragraph of prose.
 * Inline code is matched as CommonMark matches it: a run of n backticks
 * opens a span that the next run of exactly n backticks in the same
 * paragraph closes; an unmatched run is plain text.
 *
 * Lossless writes each block once: code verbatim; JSON compacted by removing
 * the whitespace outside its strings, after jansson has said it is JSON, so
 * every number and string keeps its exact text (re-serialising would not:
 * jansson rewrites reals and escapes); prose with its blank runs collapsed
 * and each line's indentation kept (nested lists, YAML-ish text). Blocks are
 * joined by one blank line where the text had any, else by a newline. A
 * repeated paragraph is found by a hash of its normalized text, so the pass
 * stays linear.
 *
 * Lossy starts from the lossless form and encodes it once. Each token is
 * charged to the word it starts in (the word's leading space is the start of
 * its first token), which gives every word its exact cost in tokens and its
 * information, the mean log(rank + 2) of its tokens that hold a letter or a
 * digit. Sentences, then words, are dropped from the least informative up
 * while the charged costs are over the target; the result is then counted
 * exactly and, while over, cut further by the difference. Charged costs add
 * up to the exact count of the whole text, so one or two rounds are usual. */
#include "shape/compress.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "tokenize/unicode_classes.h"

/* A paragraph repeated from an earlier one is removed from this length. */
#define REPEAT_MIN_BYTES 40
/* Backtick runs longer than this are plain text: bounds the search for the
 * closing run (one failed search per length and paragraph, remembered). */
#define CODE_RUN_MAX 32
/* A fence is a run of at least this many backticks or tildes. */
#define FENCE_MIN 3
/* Columns of indentation that make a paragraph an indented code block. */
#define INDENT_CODE_COLS 4
#define TAB_COLS 4
/* Lossy: a word the question shares is worth this many times its own. */
#define QUESTION_BOOST 3.0
/* Lossy: exact counts (and renders) at most, before settling. */
#define LOSSY_MAX_ROUNDS 32
/* Lossy: words are given back when the text came out at least this many
 * tokens under its target. */
#define LOSSY_FILL_MIN_TOKENS 3
/* Lossy: question words longer than this are not looked up. */
#define WORD_KEY_MAX 64
/* Smallest hash tables, in slots (a power of two). */
#define TABLE_MIN_SLOTS 64

/* ---- output: the first error sticks, later writes are skipped ----------- */

typedef struct writer {
    ah_buf_t *b;
    ah_err_t rc;
} writer_t;

static void put(writer_t *w, const char *p, size_t n)
{
    if (!w->rc && n)
        w->rc = ah_buf_append(w->b, p, n);
}

static void truncate_to(ah_buf_t *b, size_t len)
{
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

/* ---- characters, lines, blocks ----------------------------------------- */

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int is_space(unsigned char c)
{
    return is_blank(c) || c == '\n';
}

static size_t line_end(const char *s, size_t len, size_t i)
{
    const char *q = memchr(s + i, '\n', len - i);
    return q ? (size_t)(q - s) : len;
}

static size_t next_line(size_t e, size_t len)
{
    return e < len ? e + 1 : len;
}

static int line_blank(const char *s, size_t i, size_t e)
{
    for (; i < e; i++)
        if (!is_blank((unsigned char)s[i]))
            return 0;
    return 1;
}

static int line_indented(const char *s, size_t i, size_t e)
{
    unsigned col = 0;
    for (; i < e && col < INDENT_CODE_COLS; i++) {
        if (s[i] == ' ')
            col++;
        else if (s[i] == '\t')
            col = (col / TAB_COLS + 1) * TAB_COLS;
        else
            break;
    }
    return col >= INDENT_CODE_COLS;
}

typedef struct fence {
    char ch;
    size_t n;
    size_t info, info_end; /* the info string ("json", "python", ...) */
} fence_t;

/* Any blank may come before a fence, so that normalizing what precedes it
 * (\v and the like go) cannot make a fence of a line that was none. */
static int fence_open(const char *s, size_t i, size_t e, fence_t *f)
{
    while (i < e && is_blank((unsigned char)s[i]))
        i++;
    if (i >= e || (s[i] != '`' && s[i] != '~'))
        return 0;
    size_t r = i;
    while (r < e && s[r] == s[i])
        r++;
    if (r - i < FENCE_MIN)
        return 0;
    /* "```a``` b" is inline code, not a fence (CommonMark). */
    if (s[i] == '`' && memchr(s + r, '`', e - r))
        return 0;
    f->ch = s[i];
    f->n = r - i;
    f->info = r;
    f->info_end = e;
    return 1;
}

static int fence_close(const char *s, size_t i, size_t e, const fence_t *f)
{
    while (i < e && is_blank((unsigned char)s[i]))
        i++;
    size_t r = i;
    while (r < e && s[r] == f->ch)
        r++;
    return r - i >= f->n && line_blank(s, r, e);
}

static int info_is_json(const char *s, const fence_t *f)
{
    size_t i = f->info, e = f->info_end;
    while (i < e && is_blank((unsigned char)s[i]))
        i++;
    size_t w = i;
    while (w < e && !is_blank((unsigned char)s[w]))
        w++;
    return w - i == 4 && strncasecmp(s + i, "json", 4) == 0;
}

typedef enum { BLOCK_PROSE, BLOCK_FENCE, BLOCK_INDENTED } block_kind_t;

typedef struct block {
    block_kind_t kind;
    int blank_before;  /* a blank line (or more) came before it */
    size_t start, end; /* from its first line's start to its last line's end */
    /* fences */
    int closed, json;
    size_t opener_end, body, body_end, closer;
} block_t;

/* The block at or after *pos (blank lines skipped); 0 at the end. */
static int next_block(const char *s, size_t len, size_t *pos, block_t *b)
{
    size_t i = *pos, e;
    memset(b, 0, sizeof *b);
    for (;;) {
        if (i >= len) {
            *pos = len;
            return 0;
        }
        e = line_end(s, len, i);
        if (!line_blank(s, i, e))
            break;
        b->blank_before = 1;
        i = next_line(e, len);
    }
    b->start = i;
    fence_t f;
    if (fence_open(s, i, e, &f)) {
        b->kind = BLOCK_FENCE;
        b->json = info_is_json(s, &f);
        b->opener_end = e;
        b->body = next_line(e, len);
        for (size_t p = b->body; p < len;) {
            size_t pe = line_end(s, len, p);
            if (fence_close(s, p, pe, &f)) {
                b->closed = 1;
                b->body_end = p > b->body ? p - 1 : p;
                b->closer = p;
                b->end = pe;
                *pos = next_line(pe, len);
                return 1;
            }
            p = next_line(pe, len);
        }
        b->end = len; /* unclosed: code to the end, as CommonMark has it */
        *pos = len;
        return 1;
    }
    int indented = 1;
    for (;;) {
        indented = indented && line_indented(s, i, e);
        b->end = e;
        i = next_line(e, len);
        if (i >= len)
            break;
        e = line_end(s, len, i);
        if (line_blank(s, i, e) || fence_open(s, i, e, &f))
            break;
    }
    b->kind = indented ? BLOCK_INDENTED : BLOCK_PROSE;
    *pos = i;
    return 1;
}

/* Inline code: the closing-run search, with the lengths known to have no
 * closing run left in the paragraph. */
typedef struct spans {
    size_t none_from[CODE_RUN_MAX + 1];
} spans_t;

static void spans_init(spans_t *m)
{
    for (size_t k = 0; k <= CODE_RUN_MAX; k++)
        m->none_from[k] = SIZE_MAX;
}

static size_t run_of(const char *s, size_t i, size_t z, char c)
{
    size_t r = i;
    while (r < z && s[r] == c)
        r++;
    return r - i;
}

/* The end of the inline code span opened by the n backticks at s[i], or 0
 * when they are plain text. */
static size_t code_span_end(const char *s, size_t i, size_t n, size_t z, spans_t *m)
{
    if (n > CODE_RUN_MAX || i + n >= m->none_from[n])
        return 0;
    for (size_t j = i + n; j < z;) {
        const char *q = memchr(s + j, '`', z - j);
        if (!q)
            break;
        size_t k = (size_t)(q - s), r = run_of(s, k, z, '`');
        if (r == n)
            return k + r;
        j = k + r;
    }
    m->none_from[n] = i + n;
    return 0;
}

/* ---- JSON ---------------------------------------------------------------- */

static int json_parses(const char *p, size_t n, size_t flags)
{
    json_error_t jerr;
    json_t *j = json_loadb(p, n, flags, &jerr);
    if (!j)
        return 0;
    json_decref(j);
    return 1;
}

/* p[0..n) is a JSON object or array (whitespace trimmed by the caller). */
static int json_compound(const char *p, size_t n)
{
    if (n < 2 || !((p[0] == '{' && p[n - 1] == '}') || (p[0] == '[' && p[n - 1] == ']')))
        return 0;
    return json_parses(p, n, 0);
}

static int is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Valid JSON p[0..n) without the whitespace outside its strings, in place:
 * the bytes of every token are kept as they are. Returns the new length. */
static size_t json_compact(char *p, size_t n)
{
    size_t o = 0;
    int in_string = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (in_string) {
            if (c == '\\' && i + 1 < n) {
                p[o++] = c;
                c = p[++i];
            } else if (c == '"') {
                in_string = 0;
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (is_json_space(c)) {
            continue;
        }
        p[o++] = c;
    }
    return o;
}

/* Compact b[from..) in place when it is JSON (an object or array unless
 * flags has JSON_DECODE_ANY), the whitespace around it included. 1 when it
 * got shorter. */
static int compact_if_json(ah_buf_t *b, size_t from, size_t flags)
{
    char *p = b->data + from;
    size_t n = b->len - from, a = 0, z = n;
    while (a < z && is_json_space(p[a]))
        a++;
    while (z > a && is_json_space(p[z - 1]))
        z--;
    if (flags & JSON_DECODE_ANY ? !json_parses(p + a, z - a, flags) : !json_compound(p + a, z - a))
        return 0;
    memmove(p, p + a, z - a);
    truncate_to(b, from + json_compact(p, z - a));
    return b->len - from < n;
}

/* ---- paragraphs seen (repeats) ------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

typedef struct seen_slot {
    uint64_t hash;
    size_t off, len; /* in the output, from where this call began; len 0: free */
} seen_slot_t;

typedef struct seen {
    seen_slot_t *slots;
    size_t cap, n;
} seen_t;

static void seen_place(seen_slot_t *slots, size_t cap, const seen_slot_t *e)
{
    size_t k = (size_t)e->hash & (cap - 1);
    while (slots[k].len)
        k = (k + 1) & (cap - 1);
    slots[k] = *e;
}

/* 1 when out[off..off+len) repeats a paragraph seen before; else remember it. */
static int seen_check(seen_t *t, const char *base, size_t off, size_t len)
{
    uint64_t h = hash_bytes(base + off, len);
    if (t->cap) {
        for (size_t k = (size_t)h & (t->cap - 1); t->slots[k].len; k = (k + 1) & (t->cap - 1)) {
            const seen_slot_t *e = &t->slots[k];
            if (e->hash == h && e->len == len && memcmp(base + e->off, base + off, len) == 0)
                return 1;
        }
    }
    if ((t->n + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : TABLE_MIN_SLOTS;
        seen_slot_t *slots = ah_calloc(cap, sizeof *slots);
        for (size_t k = 0; k < t->cap; k++)
            if (t->slots[k].len)
                seen_place(slots, cap, &t->slots[k]);
        ah_free(t->slots);
        t->slots = slots;
        t->cap = cap;
    }
    seen_slot_t e = {h, off, len};
    seen_place(t->slots, t->cap, &e);
    t->n++;
    return 0;
}

/* ---- lossless ------------------------------------------------------------ */

/* Prose s[i..z): each line's indentation as is, blank runs after it become
 * one space, trailing blanks go; inline code as is. */
static void prose_normalize(const char *s, size_t i, size_t z, writer_t *w)
{
    spans_t m;
    spans_init(&m);
    while (i < z) {
        size_t run = i;
        while (i < z && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i < z && is_blank((unsigned char)s[i])) { /* \r, \v, \f after it */
            put(w, s + run, i - run);
            while (i < z && is_blank((unsigned char)s[i]))
                i++;
            run = i;
        }
        while (i < z && s[i] != '\n') {
            unsigned char c = (unsigned char)s[i];
            if (c == '`') {
                size_t n = run_of(s, i, z, '`'), e = code_span_end(s, i, n, z, &m);
                i = e ? e : i + n;
            } else if (is_blank(c)) {
                put(w, s + run, i - run);
                while (i < z && is_blank((unsigned char)s[i]))
                    i++;
                if (i < z && s[i] != '\n')
                    put(w, " ", 1);
                run = i;
            } else {
                i++;
            }
        }
        if (i < z)
            i++; /* the newline, kept */
        put(w, s + run, i - run);
    }
}

static void fence_out(const char *s, const block_t *b, writer_t *w, ah_compress_stats_t *st)
{
    if (!b->closed || !b->json || b->body_end == b->body) {
        put(w, s + b->start, b->end - b->start);
        return;
    }
    put(w, s + b->start, b->body - b->start);
    size_t mark = w->b->len;
    put(w, s + b->body, b->body_end - b->body);
    if (!w->rc && compact_if_json(w->b, mark, JSON_DECODE_ANY))
        st->json_minified++;
    put(w, "\n", 1);
    put(w, s + b->closer, b->end - b->closer);
}

/* Prose or JSON; 1 when it repeats an earlier paragraph (then the caller
 * takes it back out). */
static int paragraph_out(const char *s, const block_t *b, writer_t *w, size_t base, seen_t *seen,
                         ah_compress_stats_t *st)
{
    size_t a = b->start, z = b->end, mark = w->b->len;
    while (a < z && is_space((unsigned char)s[a]))
        a++;
    while (z > a && is_space((unsigned char)s[z - 1]))
        z--;
    if (json_compound(s + a, z - a)) {
        put(w, s + a, z - a);
        if (!w->rc) {
            truncate_to(w->b, mark + json_compact(w->b->data + mark, z - a));
            st->json_minified += w->b->len - mark < b->end - b->start;
        }
    } else {
        prose_normalize(s, b->start, b->end, w);
        /* Normalizing can make JSON of it ("[1,\v2]"): then it is JSON. */
        if (!w->rc && compact_if_json(w->b, mark, 0))
            st->json_minified++;
    }
    size_t n = w->b->len - mark;
    return !w->rc && n >= REPEAT_MIN_BYTES && seen_check(seen, w->b->data + base, mark - base, n);
}

static void lossless_run(const char *s, size_t len, writer_t *w, ah_compress_stats_t *st)
{
    size_t a = 0, z = len, base = w->b->len;
    while (a < z && is_json_space(s[a]))
        a++;
    while (z > a && is_json_space(s[z - 1]))
        z--;
    if (json_compound(s + a, z - a)) {
        put(w, s + a, z - a);
        if (!w->rc) {
            truncate_to(w->b, base + json_compact(w->b->data + base, z - a));
            st->json_minified += w->b->len - base < len;
        }
        return;
    }
    seen_t seen = {0};
    size_t pos = 0;
    int emitted = 0, blank = 0;
    block_t b;
    while (!w->rc && next_block(s, len, &pos, &b)) {
        blank |= b.blank_before;
        size_t mark = w->b->len;
        if (emitted)
            put(w, "\n\n", blank ? 2 : 1);
        switch (b.kind) {
        case BLOCK_FENCE:
            fence_out(s, &b, w, st);
            break;
        case BLOCK_INDENTED:
            put(w, s + b.start, b.end - b.start);
            break;
        case BLOCK_PROSE:
            if (paragraph_out(s, &b, w, base, &seen, st)) {
                truncate_to(w->b, mark);
                st->repeats_removed++;
                continue; /* the blank lines around it merge */
            }
            break;
        }
        emitted = 1;
        blank = 0;
    }
    ah_free(seen.slots);
    /* JSON split by blank lines, or made JSON by normalizing: JSON whole. */
    if (!w->rc && emitted && compact_if_json(w->b, base, 0))
        st->json_minified++;
}

ah_err_t ah_compress_lossless(const char *text, size_t len, ah_buf_t *out, ah_compress_stats_t *st)
{
    ah_compress_stats_t local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!out || (!text && len))
        return AH_E_INVAL;
    if (len > AH_SHAPE_MAX_TEXT_BYTES)
        return AH_E_TOOBIG;
    size_t base = out->len;
    writer_t w = {out, AH_E_OK};
    st->bytes_in = len;
    lossless_run(text ? text : "", len, &w, st);
    if (w.rc)
        truncate_to(out, base);
    else
        st->bytes_out = out->len - base;
    return w.rc;
}

/* ---- lossy: words ------------------------------------------------------- */

#define UTF8_BAD UINT32_MAX

/* The code point at p[0..n) (n >= 1) and its length; an invalid byte is one
 * UTF8_BAD. */
static uint32_t utf8_next(const unsigned char *p, size_t n, size_t *adv)
{
    unsigned c = p[0];
    size_t k;
    uint32_t cp, min;
    *adv = 1;
    if (c < 0x80)
        return c;
    if ((c & 0xE0) == 0xC0) {
        k = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        k = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        k = 3, cp = c & 0x07, min = 0x10000;
    } else {
        return UTF8_BAD;
    }
    if (k >= n)
        return UTF8_BAD;
    for (size_t j = 1; j <= k; j++) {
        if ((p[j] & 0xC0) != 0x80)
            return UTF8_BAD;
        cp = (cp << 6) | (p[j] & 0x3F);
    }
    if (cp < min || cp > AH_UCLASS_MAX_CP || (cp >= 0xD800 && cp <= 0xDFFF))
        return UTF8_BAD;
    *adv = k + 1;
    return cp;
}

static enum ah_uclass class_of(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp >= 'a' && cp <= 'z')
            return AH_UC_LOWER;
        if (cp >= 'A' && cp <= 'Z')
            return AH_UC_UPPER;
        if (cp >= '0' && cp <= '9')
            return AH_UC_NUMBER;
        return cp == ' ' || (cp >= '\t' && cp <= '\r') ? AH_UC_SPACE : AH_UC_OTHER;
    }
    return cp == UTF8_BAD ? AH_UC_OTHER : ah_uclass_of(cp);
}

static int is_alnum_class(enum ah_uclass c)
{
    return c == AH_UC_UPPER || c == AH_UC_LOWER || c == AH_UC_LETTER_OTHER || c == AH_UC_NUMBER;
}

static int is_alnum_ascii(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* What an ASCII punctuation byte can be, around or inside a word. */
enum {
    CH_END = 1 << 0,    /* . ! ? : ; end a sentence or clause */
    CH_CLOSE = 1 << 1,  /* may follow an end mark: ) ] } " ' * _ */
    CH_OPEN = 1 << 2,   /* may open a quote: ( [ { * _ */
    CH_TRAIL = 1 << 3,  /* may follow a closing quote */
    CH_BULLET = 1 << 4, /* a list, quote or table marker alone */
    CH_STRUCT = 1 << 5, /* brackets and bars: a word with one is not dropped alone */
    CH_KEEP = 1 << 6,   /* paths and addresses: / \ @ */
};

static const unsigned char CHAR_BITS[256] = {
    ['.'] = CH_END | CH_TRAIL,
    ['!'] = CH_END | CH_TRAIL,
    ['?'] = CH_END | CH_TRAIL,
    [':'] = CH_END | CH_TRAIL,
    [';'] = CH_END | CH_TRAIL,
    [','] = CH_TRAIL,
    [')'] = CH_CLOSE | CH_TRAIL | CH_STRUCT,
    [']'] = CH_CLOSE | CH_TRAIL | CH_STRUCT,
    ['}'] = CH_CLOSE | CH_TRAIL | CH_STRUCT,
    ['('] = CH_OPEN | CH_STRUCT,
    ['['] = CH_OPEN | CH_STRUCT,
    ['{'] = CH_OPEN | CH_STRUCT,
    ['"'] = CH_CLOSE,
    ['\''] = CH_CLOSE,
    ['*'] = CH_CLOSE | CH_OPEN | CH_TRAIL | CH_BULLET,
    ['_'] = CH_CLOSE | CH_OPEN | CH_TRAIL,
    ['-'] = CH_BULLET,
    ['+'] = CH_BULLET,
    ['>'] = CH_BULLET | CH_STRUCT,
    ['|'] = CH_BULLET | CH_STRUCT,
    ['<'] = CH_STRUCT,
    ['/'] = CH_KEEP,
    ['\\'] = CH_KEEP,
    ['@'] = CH_KEEP,
};

static int has(char c, unsigned bits)
{
    return (CHAR_BITS[(unsigned char)c] & bits) != 0;
}

static int has_prefix(const char *p, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(p, pre, k) == 0;
}

static int has_suffix(const char *p, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && memcmp(p + n - k, suf, k) == 0;
}

/* What one word is, for protection and sentence ends. */
typedef struct word_info {
    int first;           /* class of its first letter or digit; -1: none */
    int digit, keep;     /* a digit; a URL, path or address (protected) */
    int structural;      /* brackets or a table bar: not dropped alone */
    int ends_sentence;   /* . ! ? (not an abbreviation) */
    int ends_clause;     /* the same, or : ; */
    size_t tail;         /* trailing . ! ? : ; bytes */
    size_t core, core_n; /* without the ASCII punctuation around it */
} word_info_t;

static const char *const ABBREVIATIONS[] = {"mr", "mrs", "ms",  "dr", "prof", "sr", "jr",
                                            "st", "vs",  "fig", "no", "cf",   "ca", "approx"};

/* p[0..n) ends in '.': does that dot end an abbreviation ("e.g.", "Dr.",
 * "J.")? */
static int is_abbreviation(const char *p, size_t n)
{
    size_t a = 0;
    while (a < n && !is_alnum_ascii((unsigned char)p[a]))
        a++;
    size_t z = n - 1; /* the dot */
    if (a >= z)
        return 0;
    int inner_dot = 0;
    for (size_t i = a; i < z; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '.')
            inner_dot = 1;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
            return 0;
    }
    if (inner_dot || z - a == 1)
        return 1;
    for (size_t k = 0; k < sizeof ABBREVIATIONS / sizeof ABBREVIATIONS[0]; k++)
        if (strlen(ABBREVIATIONS[k]) == z - a && strncasecmp(p + a, ABBREVIATIONS[k], z - a) == 0)
            return 1;
    return 0;
}

static void analyse_word(const char *s, size_t n, word_info_t *w)
{
    const unsigned char *p = (const unsigned char *)s;
    memset(w, 0, sizeof *w);
    w->first = -1;
    int colon = 0;
    for (size_t i = 0; i < n;) {
        enum ah_uclass c;
        if (p[i] < 0x80) {
            c = class_of(p[i]);
            unsigned bits = CHAR_BITS[p[i]];
            w->keep |= (bits & CH_KEEP) && n > 1;
            w->structural |= (bits & CH_STRUCT) != 0;
            colon |= p[i] == ':';
            i++;
        } else {
            size_t adv;
            c = class_of(utf8_next(p + i, n - i, &adv));
            i += adv;
        }
        if (is_alnum_class(c) && w->first < 0)
            w->first = (int)c;
        w->digit |= c == AH_UC_NUMBER;
    }
    size_t a = 0, z = n;
    while (a < z && p[a] < 0x80 && !is_alnum_ascii(p[a]))
        a++;
    while (z > a && p[z - 1] < 0x80 && !is_alnum_ascii(p[z - 1]))
        z--;
    w->core = a;
    w->core_n = z - a;
    if ((z - a > 4 && (p[a] | 0x20) == 'w' && strncasecmp(s + a, "www.", 4) == 0) ||
        (colon && memmem(s, n, "://", 3)))
        w->keep = 1;
    while (w->tail < n && has(s[n - 1 - w->tail], CH_END))
        w->tail++;
    /* Closing quotes, brackets and emphasis may follow the end mark. */
    size_t e = n;
    for (;;) {
        if (e > 0 && has(s[e - 1], CH_CLOSE))
            e--;
        else if (e > 0 && p[e - 1] >= 0x80 &&
                 (has_suffix(s, e, "\xe2\x80\x9d") || has_suffix(s, e, "\xe2\x80\x99")))
            e -= 3;
        else
            break;
    }
    if (e > 0 && has(s[e - 1], CH_END)) {
        w->ends_clause = 1;
        w->ends_sentence =
            s[e - 1] != ':' && s[e - 1] != ';' && !(s[e - 1] == '.' && is_abbreviation(s, e));
    }
}

/* A list item's bullet or number ("-", "3.", "3)", "B.", "(b)", "(iv)"), a
 * heading's #, a quote's >, a table's |. */
static int is_marker(const char *s, size_t n)
{
    if (n == 1 && has(s[0], CH_BULLET))
        return 1;
    if (n == 3 && memcmp(s, "\xe2\x80\xa2", 3) == 0) /* • */
        return 1;
    if (run_of(s, 0, n, '#') == n)
        return 1;
    if (n >= 3 && n <= 6 && s[0] == '(' && s[n - 1] == ')') {
        for (size_t i = 1; i + 1 < n; i++)
            if (!is_alnum_ascii((unsigned char)s[i]))
                return 0;
        return 1;
    }
    if (n == 2 && ((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z')) &&
        (s[1] == '.' || s[1] == ')'))
        return 1; /* an answer choice's letter */
    size_t d = 0;
    while (d < n && s[d] >= '0' && s[d] <= '9')
        d++;
    return d > 0 && d + 1 == n && (s[d] == '.' || s[d] == ')');
}

static const char *const NEGATIONS[] = {"not",     "no",     "never",   "none",
                                        "nor",     "cannot", "without", "neither",
                                        "nothing", "nobody", "nowhere", "unless"};

/* "not", "never", "don't": dropping one turns the sentence around. */
static int is_negation(const char *s, size_t n)
{
    if (has_suffix(s, n, "n't") || has_suffix(s, n, "n\xe2\x80\x99t"))
        return 1;
    for (size_t k = 0; k < sizeof NEGATIONS / sizeof NEGATIONS[0]; k++)
        if (strlen(NEGATIONS[k]) == n && strncasecmp(s, NEGATIONS[k], n) == 0)
            return 1;
    return 0;
}

/* "I", "I'm", "I've": capitalised, yet no name. */
static int is_pronoun_i(const char *s, size_t n)
{
    return (n == 1 && s[0] == 'I') || has_prefix(s, n, "I'") || has_prefix(s, n, "I\xe2\x80\x99");
}

/* ---- lossy: the question's words ---------------------------------------- */

static const char *const STOP_WORDS[] = {
    "the",   "a",    "an",   "and",  "or",    "of",    "to",   "in",    "on",   "for",   "with",
    "is",    "are",  "was",  "were", "be",    "been",  "it",   "this",  "that", "what",  "which",
    "who",   "how",  "why",  "when", "where", "do",    "does", "did",   "can",  "could", "should",
    "would", "will", "i",    "you",  "we",    "they",  "he",   "she",   "my",   "your",  "our",
    "me",    "us",   "them", "as",   "at",    "by",    "from", "about", "into", "not",   "no",
    "if",    "so",   "than", "then", "there", "their", "its",  "any",   "all",  "some",  "please"};

static uint64_t hash_lower(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        h = (h ^ c) * 1099511628211ull;
    }
    return h ? h : 1;
}

static int is_stop_word(const char *p, size_t n)
{
    for (size_t k = 0; k < sizeof STOP_WORDS / sizeof STOP_WORDS[0]; k++)
        if (strlen(STOP_WORDS[k]) == n && strncasecmp(p, STOP_WORDS[k], n) == 0)
            return 1;
    return 0;
}

/* The question's words (lowercased, stop words left out), by hash. */
typedef struct qset {
    uint64_t *slots; /* 0: free */
    size_t cap, n;
} qset_t;

static void qset_add(qset_t *q, uint64_t h)
{
    if ((q->n + 1) * 2 > q->cap) {
        size_t cap = q->cap ? q->cap * 2 : TABLE_MIN_SLOTS;
        uint64_t *slots = ah_calloc(cap, sizeof *slots);
        for (size_t k = 0; k < q->cap; k++) {
            if (!q->slots[k])
                continue;
            size_t j = (size_t)q->slots[k] & (cap - 1);
            while (slots[j])
                j = (j + 1) & (cap - 1);
            slots[j] = q->slots[k];
        }
        ah_free(q->slots);
        q->slots = slots;
        q->cap = cap;
    }
    size_t j = (size_t)h & (q->cap - 1);
    while (q->slots[j]) {
        if (q->slots[j] == h)
            return;
        j = (j + 1) & (q->cap - 1);
    }
    q->slots[j] = h;
    q->n++;
}

static int qset_has(const qset_t *q, uint64_t h)
{
    if (!q->n)
        return 0;
    for (size_t j = (size_t)h & (q->cap - 1); q->slots[j]; j = (j + 1) & (q->cap - 1))
        if (q->slots[j] == h)
            return 1;
    return 0;
}

static void qset_build(qset_t *q, const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (!is_alnum_ascii(c) && c < 0x80) {
            i++;
            continue;
        }
        size_t a = i;
        while (i < n && (is_alnum_ascii((unsigned char)s[i]) || (unsigned char)s[i] >= 0x80))
            i++;
        if (i - a >= 2 && i - a <= WORD_KEY_MAX && !is_stop_word(s + a, i - a))
            qset_add(q, hash_lower(s + a, i - a));
    }
}

/* ---- lossy: units and sentences ----------------------------------------- */

enum { GAP_NONE, GAP_SPACE, GAP_LINE, GAP_PARA };

enum {
    U_CODE = 1 << 0,      /* a code block or JSON paragraph */
    U_PROTECTED = 1 << 1, /* never dropped */
    U_HEAD = 1 << 2,      /* opens its sentence: goes only with it */
    U_FIXED = 1 << 3,     /* brackets or bars: not dropped alone */
    U_DROPPED = 1 << 4,
};

#define NO_SENTENCE UINT32_MAX

/* A word of prose, or a whole code block. */
typedef struct unit {
    uint32_t start, end;         /* its bytes in the lossless text */
    uint32_t indent, indent_len; /* the leading blanks of its line */
    uint32_t sentence;           /* NO_SENTENCE for code */
    uint32_t tokens;             /* charged to it, its leading space included */
    float info;
    uint8_t gap, flags, tail;
    uint8_t blank_tokens; /* of them, tokens of whitespace alone */
} unit_t;

typedef struct sentence {
    uint32_t first, last; /* units [first, last] */
    uint32_t last_kept;   /* while rendering */
    long tokens;          /* of its kept units */
    float score;
    uint8_t guarded, dropped;
    uint8_t item; /* opens with a list marker: a choice, a step, a bullet */
} sentence_t;

/* One candidate for dropping: its worth as a key that orders as the float
 * does, and its index. */
typedef struct rank {
    uint32_t key;
    uint32_t idx;
} rank_t;

typedef struct lossy {
    const char *s; /* the lossless text */
    size_t len;
    unit_t *u;
    size_t nu, cu;
    sentence_t *sent;
    size_t ns, cs;
    rank_t *sorder, *worder; /* droppable sentences, words: least worth first */
    size_t nso, nwo, wcur, scur;
    long est; /* charged tokens of what is kept */
    size_t ncode;
    /* while building a paragraph */
    int prev_ends_sentence, prev_ends_clause, seen_alnum;
} lossy_t;

static uint32_t add_unit(lossy_t *L)
{
    if (L->nu == L->cu) {
        L->cu = L->cu ? L->cu * 2 : 256;
        L->u = ah_realloc(L->u, L->cu * sizeof *L->u);
    }
    memset(&L->u[L->nu], 0, sizeof L->u[0]);
    return (uint32_t)L->nu++;
}

static void open_sentence(lossy_t *L, uint32_t first)
{
    if (L->ns == L->cs) {
        L->cs = L->cs ? L->cs * 2 : 64;
        L->sent = ah_realloc(L->sent, L->cs * sizeof *L->sent);
    }
    sentence_t *st = &L->sent[L->ns++];
    memset(st, 0, sizeof *st);
    st->first = st->last = first;
    L->seen_alnum = 0;
}

static void add_code(lossy_t *L, size_t start, size_t end, int gap)
{
    uint32_t k = add_unit(L);
    unit_t *u = &L->u[k];
    u->start = (uint32_t)start;
    u->end = (uint32_t)end;
    u->sentence = NO_SENTENCE;
    u->gap = (uint8_t)gap;
    u->flags = U_CODE | U_PROTECTED;
    L->ncode++;
}

static void add_word(lossy_t *L, size_t ws, size_t we, size_t indent, size_t indent_len, int gap,
                     int line_start, int first_in_block, int code)
{
    const char *w = L->s + ws;
    size_t n = we - ws;
    word_info_t wi;
    analyse_word(w, n, &wi);
    int marker = line_start && is_marker(w, n);
    int starts_lower = wi.first == AH_UC_LOWER;
    int fresh = first_in_block ||
                (line_start && (marker || L->prev_ends_clause || !starts_lower)) ||
                (!line_start && L->prev_ends_sentence && !starts_lower);
    uint32_t k = add_unit(L);
    if (fresh)
        open_sentence(L, k);
    unit_t *u = &L->u[k];
    u->start = (uint32_t)ws;
    u->end = (uint32_t)we;
    u->indent = (uint32_t)indent;
    u->indent_len = (uint32_t)indent_len;
    u->gap = (uint8_t)gap;
    u->sentence = (uint32_t)(L->ns - 1);
    u->tail = (uint8_t)(wi.tail < UINT8_MAX ? wi.tail : UINT8_MAX);
    L->sent[L->ns - 1].last = k;
    if (code || wi.keep || (wi.digit && !marker))
        u->flags |= U_PROTECTED;
    if (wi.structural || is_negation(w + wi.core, wi.core_n))
        u->flags |= U_FIXED;
    if (!L->seen_alnum) {
        u->flags |= U_HEAD;
        L->seen_alnum = wi.first >= 0;
    } else if (wi.first == AH_UC_UPPER && !is_pronoun_i(w + wi.core, wi.core_n)) {
        u->flags |= U_PROTECTED; /* a name */
    }
    /* "3." or "B." ends nothing: the item it opens goes on. */
    L->prev_ends_sentence = wi.ends_sentence && !marker;
    L->prev_ends_clause = wi.ends_clause && !marker;
    if (marker && fresh)
        L->sent[L->ns - 1].item = 1;
}

static void build_prose(lossy_t *L, const block_t *b, int gap)
{
    const char *s = L->s;
    size_t i = b->start, z = b->end;
    int first = 1;
    spans_t m;
    spans_init(&m);
    while (i < z) {
        size_t ls = i;
        while (i < z && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t indent_len = i - ls;
        int line_start = 1;
        while (i < z && s[i] != '\n') {
            if (is_blank((unsigned char)s[i])) {
                i++;
                continue;
            }
            size_t ws = i;
            int code = 0;
            while (i < z && !is_space((unsigned char)s[i])) {
                if (s[i] == '`') {
                    size_t n = run_of(s, i, z, '`'), e = code_span_end(s, i, n, z, &m);
                    code |= e != 0;
                    i = e ? e : i + n;
                } else {
                    i++;
                }
            }
            add_word(L, ws, i, ls, indent_len, line_start ? gap : GAP_SPACE, line_start, first,
                     code);
            line_start = first = 0;
        }
        gap = GAP_LINE;
        if (i < z)
            i++;
    }
}

static void build_units(lossy_t *L)
{
    size_t pos = 0;
    block_t b;
    while (next_block(L->s, L->len, &pos, &b)) {
        int gap = L->nu == 0 ? GAP_NONE : b.blank_before ? GAP_PARA : GAP_LINE;
        size_t a = b.start, z = b.end;
        while (a < z && is_space((unsigned char)L->s[a]))
            a++;
        /* JSON (or anything bracketed whole) is treated as code: no guess at
         * what part of it a reader could spare. */
        int bracketed = z - a >= 2 && ((L->s[a] == '{' && L->s[z - 1] == '}') ||
                                       (L->s[a] == '[' && L->s[z - 1] == ']'));
        if (b.kind != BLOCK_PROSE || bracketed)
            add_code(L, b.start, b.end, gap);
        else
            build_prose(L, &b, gap);
    }
}

/* Quoted text, paired within each sentence: "...", “...”, '...', ‘...’. */
static void mark_quoted(lossy_t *L, const sentence_t *st)
{
    long dq = -1, cq = -1, sq = -1;
    for (uint32_t k = st->first; k <= st->last; k++) {
        const char *w = L->s + L->u[k].start;
        size_t n = L->u[k].end - L->u[k].start, a = 0, z = n;
        long lo = (long)k + 1; /* the quotes closed here opened at lo at the earliest */
        while (a < n && has(w[a], CH_OPEN))
            a++;
        if (sq < 0 && a < n && (w[a] == '\'' || has_prefix(w + a, n - a, "\xe2\x80\x98")))
            sq = (long)k;
        for (size_t i = 0; i < n; i++) {
            if (w[i] == '"') {
                if (dq < 0) {
                    dq = (long)k;
                } else {
                    lo = dq < lo ? dq : lo;
                    dq = -1;
                }
            } else if (w[i] == '\xe2' && i + 2 < n && w[i + 1] == '\x80') {
                if (w[i + 2] == '\x9c' && cq < 0) {
                    cq = (long)k;
                } else if (w[i + 2] == '\x9d' && cq >= 0) {
                    lo = cq < lo ? cq : lo;
                    cq = -1;
                }
            }
        }
        while (z > 0 && has(w[z - 1], CH_TRAIL))
            z--;
        if (sq >= 0 && z > 0 && (w[z - 1] == '\'' || has_suffix(w, z, "\xe2\x80\x99")) &&
            !(sq == (long)k && z <= a + 1)) {
            lo = sq < lo ? sq : lo;
            sq = -1;
        }
        for (long j = lo; j <= (long)k; j++)
            L->u[j].flags |= U_PROTECTED;
    }
}

static void finish_unit(unit_t *u, double sum_word, unsigned n_word, double sum_all, unsigned n_all)
{
    u->info = (float)(n_word ? sum_word / n_word : n_all ? sum_all / n_all : 0.0);
}

static void charge_tokens(lossy_t *L, const ah_bpe_t *enc, const uint32_t *ids, size_t n)
{
    if (!L->nu)
        return;
    size_t off = 0, k = 0;
    double sum_word = 0, sum_all = 0;
    unsigned n_word = 0, n_all = 0;
    for (size_t t = 0; t < n; t++) {
        while (k + 1 < L->nu && off >= L->u[k].end) {
            finish_unit(&L->u[k++], sum_word, n_word, sum_all, n_all);
            sum_word = sum_all = 0;
            n_word = n_all = 0;
        }
        size_t tl = 0;
        const char *tok = ah_bpe_token(enc, ids[t], &tl);
        double lg = log((double)ids[t] + 2.0);
        int word = 0, blank = 1;
        for (size_t j = 0; tok && j < tl; j++) {
            word |= is_alnum_ascii((unsigned char)tok[j]) || (unsigned char)tok[j] >= 0x80;
            blank &= is_space((unsigned char)tok[j]);
        }
        if (blank && L->u[k].blank_tokens < UINT8_MAX)
            L->u[k].blank_tokens++;
        sum_all += lg;
        n_all++;
        if (word) {
            sum_word += lg;
            n_word++;
        }
        L->u[k].tokens++;
        off += tl;
    }
    finish_unit(&L->u[k], sum_word, n_word, sum_all, n_all);
    for (k++; k < L->nu; k++)
        finish_unit(&L->u[k], 0, 0, 0, 0);
}

static rank_t rank_of(float worth, size_t idx)
{
    uint32_t bits;
    memcpy(&bits, &worth, sizeof bits);
    rank_t r = {bits & 0x80000000u ? ~bits : bits | 0x80000000u, (uint32_t)idx};
    return r;
}

/* Least worth first, stable (a radix sort: one pass a byte, linear where a
 * comparison sort was a tenth of the lossy pass). */
static void sort_ranks(rank_t *r, size_t n)
{
    rank_t *tmp = ah_malloc((n ? n : 1) * sizeof *tmp), *from = r, *to = tmp;
    for (unsigned shift = 0; shift < 32; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((from[i].key >> shift) & 0xff) + 1]++;
        for (size_t b = 1; b <= 256; b++)
            count[b] += count[b - 1];
        for (size_t i = 0; i < n; i++)
            to[count[(from[i].key >> shift) & 0xff]++] = from[i];
        rank_t *t = from;
        from = to;
        to = t;
    }
    ah_free(tmp); /* four passes: the result is back in r */
}

static void weigh(lossy_t *L, const qset_t *q)
{
    for (size_t k = 0; k < L->nu; k++) {
        unit_t *u = &L->u[k];
        if (!q->n || (u->flags & U_CODE))
            continue;
        word_info_t wi;
        analyse_word(L->s + u->start, u->end - u->start, &wi);
        if (wi.core_n && wi.core_n <= WORD_KEY_MAX &&
            qset_has(q, hash_lower(L->s + u->start + wi.core, wi.core_n)))
            u->info = (float)(u->info * QUESTION_BOOST);
    }
    size_t guarded = 0;
    for (size_t i = 0; i < L->ns; i++) {
        sentence_t *st = &L->sent[i];
        mark_quoted(L, st);
    }
    L->est = 0;
    for (size_t i = 0; i < L->ns; i++) {
        sentence_t *st = &L->sent[i];
        double sum = 0;
        for (uint32_t k = st->first; k <= st->last; k++) {
            sum += L->u[k].info;
            st->tokens += L->u[k].tokens;
            st->guarded |= (L->u[k].flags & U_PROTECTED) != 0;
        }
        st->score = (float)(sum / (st->last - st->first + 1));
        guarded += st->guarded;
    }
    for (size_t k = 0; k < L->nu; k++)
        L->est += L->u[k].tokens;
    L->sorder = ah_calloc(L->ns + 1, sizeof *L->sorder);
    /* Filled from the end: among equals the later goes first. */
    for (size_t i = L->ns; i-- > 0;)
        if (!L->sent[i].guarded)
            L->sorder[L->nso++] = rank_of(L->sent[i].score, i);
    sort_ranks(L->sorder, L->nso);
    if (!guarded && !L->ncode && L->nso)
        L->nso--; /* the best sentence stays: never an empty answer */
    L->worder = ah_calloc(L->nu + 1, sizeof *L->worder);
    for (size_t k = L->nu; k-- > 0;)
        if (!(L->u[k].flags & (U_CODE | U_PROTECTED | U_HEAD | U_FIXED)))
            L->worder[L->nwo++] = rank_of(L->u[k].info, k);
    sort_ranks(L->worder, L->nwo);
}

/* The whitespace tokens before units [first, last] that stay when they go:
 * a line break passes to the unit after them unless it brings its own. */
static long blank_kept(const lossy_t *L, size_t first, size_t last)
{
    const unit_t *u = &L->u[first];
    if (u->gap < GAP_LINE || last + 1 >= L->nu || L->u[last + 1].gap >= u->gap)
        return 0;
    return u->blank_tokens;
}

/* What dropping u alone saves, as charged: its line break may stay (above),
 * and a sentence's end mark passes to the last word left. */
static long word_saving(const lossy_t *L, const unit_t *u)
{
    size_t k = (size_t)(u - L->u);
    long keep = blank_kept(L, k, k);
    if (u->tail && L->sent[u->sentence].last == k)
        keep++;
    return keep < (long)u->tokens ? (long)u->tokens - keep : 0;
}

static long sentence_saving(const lossy_t *L, const sentence_t *st)
{
    long keep = blank_kept(L, st->first, st->last);
    return keep < st->tokens ? st->tokens - keep : 0;
}

static void drop_sentence(lossy_t *L, sentence_t *st, ah_compress_stats_t *stats)
{
    st->dropped = 1;
    L->est -= sentence_saving(L, st);
    stats->sentences_dropped++;
}

/* Drop until the charged tokens are at most budget: whole sentences that fit
 * in the excess, least worth first, list items (answer choices, steps) left
 * out: they are short and cheap, and a list with an item missing reads as
 * whole; then words; then any sentence. 1 when nothing is left to drop. */
static int drop_to(lossy_t *L, long budget, ah_compress_stats_t *stats)
{
    for (size_t i = 0; i < L->nso && L->est > budget; i++) {
        sentence_t *st = &L->sent[L->sorder[i].idx];
        if (!st->dropped && !st->item && sentence_saving(L, st) <= L->est - budget)
            drop_sentence(L, st, stats);
    }
    while (L->est > budget && L->wcur < L->nwo) {
        unit_t *u = &L->u[L->worder[L->wcur++].idx];
        sentence_t *st = &L->sent[u->sentence];
        if (st->dropped)
            continue;
        long saving = word_saving(L, u);
        u->flags |= U_DROPPED;
        st->tokens -= saving;
        L->est -= saving;
        stats->words_dropped++;
    }
    while (L->est > budget && L->scur < L->nso) {
        sentence_t *st = &L->sent[L->sorder[L->scur++].idx];
        if (!st->dropped)
            drop_sentence(L, st, stats);
    }
    return L->est > budget;
}

static int kept(const lossy_t *L, const unit_t *u)
{
    return !(u->flags & U_DROPPED) && (u->sentence == NO_SENTENCE || !L->sent[u->sentence].dropped);
}

/* The kept units, in order, one space between words; a sentence whose last
 * word went keeps its end mark on the last word left. */
static void render(lossy_t *L, writer_t *w)
{
    const char *s = L->s;
    for (size_t i = 0; i < L->ns; i++)
        L->sent[i].last_kept = NO_SENTENCE;
    for (size_t k = 0; k < L->nu; k++)
        if (L->u[k].sentence != NO_SENTENCE && kept(L, &L->u[k]))
            L->sent[L->u[k].sentence].last_kept = (uint32_t)k;
    int gap = GAP_NONE, emitted = 0;
    for (size_t k = 0; k < L->nu; k++) {
        const unit_t *u = &L->u[k];
        if (u->gap > gap)
            gap = u->gap;
        if (!kept(L, u))
            continue;
        if (emitted)
            put(w,
                gap == GAP_PARA   ? "\n\n"
                : gap == GAP_LINE ? "\n"
                                  : " ",
                gap == GAP_PARA ? 2 : 1);
        if (!emitted || gap >= GAP_LINE)
            put(w, s + u->indent, u->indent_len);
        emitted = 1;
        gap = GAP_NONE;
        size_t a = u->start, z = u->end;
        const sentence_t *st = u->sentence != NO_SENTENCE ? &L->sent[u->sentence] : NULL;
        const unit_t *last = st ? &L->u[st->last] : NULL;
        if (!st || st->last_kept != k || st->last == k || !last->tail) {
            put(w, s + a, z - a);
            continue;
        }
        if (!(u->flags & U_PROTECTED))
            while (z > a + 1 && (s[z - 1] == ',' || s[z - 1] == ';' || s[z - 1] == ':'))
                z--;
        put(w, s + a, z - a);
        if (s[z - 1] != '.' && s[z - 1] != '!' && s[z - 1] != '?')
            put(w, s + last->end - last->tail, last->tail);
    }
}

static void lossy_free(lossy_t *L)
{
    ah_free(L->u);
    ah_free(L->sent);
    ah_free(L->sorder);
    ah_free(L->worder);
}

/* Under the target by the estimate's caution: give back the last words
 * dropped that fit in what is left, and keep that if it still fits. */
static ah_err_t lossy_fill(lossy_t *L, const ah_bpe_t *enc, size_t target, ah_buf_t *r,
                           size_t *tokens, ah_compress_stats_t *stats)
{
    ah_err_t rc = AH_E_OK;
    uint32_t *back = ah_malloc((L->wcur ? L->wcur : 1) * sizeof *back);
    size_t nback = 0, n = 0;
    long slack = (long)(target - *tokens);
    for (size_t j = L->wcur; j-- > 0 && slack > 0;) {
        unit_t *u = &L->u[L->worder[j].idx];
        long saving = word_saving(L, u);
        if (!(u->flags & U_DROPPED) || L->sent[u->sentence].dropped || saving > slack)
            continue;
        u->flags &= (uint8_t)~U_DROPPED;
        slack -= saving;
        back[nback++] = L->worder[j].idx;
    }
    ah_buf_t alt;
    ah_buf_init(&alt, r->max);
    writer_t w = {&alt, AH_E_OK};
    if (nback)
        render(L, &w);
    if (nback && !(rc = w.rc) &&
        !(rc = ah_bpe_count(enc, alt.data ? alt.data : "", alt.len, 0, &n)) && n <= target) {
        ah_buf_t t = *r;
        *r = alt;
        alt = t;
        *tokens = n;
        stats->words_dropped -= nback;
    } else {
        for (size_t i = 0; i < nback; i++)
            L->u[back[i]].flags |= U_DROPPED;
    }
    ah_buf_free(&alt);
    ah_free(back);
    return rc;
}

/* Cut the lossless text to target tokens into r; *tokens its exact count. */
static ah_err_t lossy_cut(lossy_t *L, const ah_bpe_t *enc, const uint32_t *ids, size_t nids,
                          const qset_t *q, size_t target, ah_buf_t *r, size_t *tokens,
                          ah_compress_stats_t *stats)
{
    ah_err_t rc = AH_E_OK;
    build_units(L);
    charge_tokens(L, enc, ids, nids);
    weigh(L, q);
    long budget = (long)target;
    for (int round = 0;; round++) {
        int exhausted = drop_to(L, budget, stats);
        ah_buf_reset(r);
        writer_t w = {r, AH_E_OK};
        render(L, &w);
        if ((rc = w.rc) != AH_E_OK)
            break;
        if ((rc = ah_bpe_count(enc, r->data ? r->data : "", r->len, 0, tokens)) != AH_E_OK)
            break;
        if (*tokens <= target || exhausted || round + 1 >= LOSSY_MAX_ROUNDS)
            break;
        budget = L->est - (long)(*tokens - target);
    }
    if (!rc && *tokens + LOSSY_FILL_MIN_TOKENS <= target)
        rc = lossy_fill(L, enc, target, r, tokens, stats);
    return rc;
}

ah_err_t ah_compress_lossy(const char *text, size_t len, const char *question, double ratio,
                           const ah_bpe_t *enc, ah_buf_t *out, ah_compress_stats_t *st)
{
    ah_compress_stats_t local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (!out || !enc || (!text && len) || !(ratio > 0.0 && ratio <= 1.0))
        return AH_E_INVAL;
    size_t qlen = question ? strnlen(question, AH_SHAPE_MAX_TEXT_BYTES + 1) : 0;
    if (len > AH_SHAPE_MAX_TEXT_BYTES || qlen > AH_SHAPE_MAX_TEXT_BYTES)
        return AH_E_TOOBIG;
    text = text ? text : "";
    st->bytes_in = len;

    ah_err_t rc;
    ah_buf_t norm, cut;
    ah_buf_init(&norm, AH_SHAPE_MAX_TEXT_BYTES);
    ah_buf_init(&cut, AH_SHAPE_MAX_TEXT_BYTES);
    uint32_t *ids = NULL;
    size_t nids = 0, tokens_in = 0, tokens_out = 0, base = out->len;
    lossy_t L = {0};
    qset_t q = {0};

    writer_t w = {&norm, AH_E_OK};
    lossless_run(text, len, &w, st);
    if ((rc = w.rc) != AH_E_OK)
        goto out;
    const char *ns = norm.data ? norm.data : "";
    rc = ah_bpe_encode_alloc(enc, ns, norm.len, 0, norm.len + 1, &ids, &nids);
    if (rc)
        goto out;
    tokens_in = nids;
    if ((norm.len != len || memcmp(ns, text, len) != 0) &&
        (rc = ah_bpe_count(enc, text, len, 0, &tokens_in)) != AH_E_OK)
        goto out;
    size_t target = (size_t)ceil(ratio * (double)tokens_in);
    if (target > tokens_in)
        target = tokens_in;

    const char *res = ns;
    size_t res_len = norm.len;
    tokens_out = nids;
    if (nids > target && tokens_in <= target) {
        res = text, res_len = len, tokens_out = tokens_in;
    } else if (nids > target) {
        if (question)
            qset_build(&q, question, qlen);
        L.s = ns;
        L.len = norm.len;
        rc = lossy_cut(&L, enc, ids, nids, &q, target, &cut, &tokens_out, st);
        if (rc)
            goto out;
        res = cut.data ? cut.data : "";
        res_len = cut.len;
        if (tokens_out > tokens_in) /* all protected, and normalizing cost tokens */
            res = text, res_len = len, tokens_out = tokens_in;
    }
    if ((rc = ah_buf_append(out, res, res_len)) != AH_E_OK)
        goto out;
    st->tokens_in = tokens_in;
    st->tokens_out = tokens_out;
    st->bytes_out = res_len;
out:
    if (rc)
        truncate_to(out, base);
    lossy_free(&L);
    ah_free(q.slots);
    ah_free(ids);
    ah_buf_free(&norm);
    ah_buf_free(&cut);
    return rc;
}
