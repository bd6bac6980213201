/* select.c - which context chunks matter to the question (select.h).
 *
 * BM25 needs, for each query term, its document frequency over the chunks
 * and its count in each chunk, and for each chunk its length in words. Only
 * the question's terms are ever looked up, so the one hash table per call
 * holds the question's terms, never the chunks' vocabulary, and scoring is
 * one pass over the chunks' bytes. On that pass a word costs a few integer
 * operations: words are found eight bytes at a time (scan_words), the stop
 * list is a set of 8-byte integers (a word's first bytes, case-folded, are
 * its key), and only a word whose first two bytes begin some query term is
 * copied, stemmed and looked up. The (term, count) hits of each chunk are
 * kept until every document frequency is known, then each chunk is scored.
 *
 * Query terms: each distinct term of the question counts once, however often
 * the question repeats it (Okapi's query-term weight with k3 = 0): a question
 * repeats words for its phrasing, not for emphasis. A chunk's length is its
 * number of words that are not stop words.
 *
 * Words: a run of ASCII letters and digits and of bytes >= 0x80 (so a UTF-8
 * word stays whole), ASCII lowercased; a run longer than WORD_MAX_BYTES is cut
 * into such words, never inside a UTF-8 character. A word is a stop word when
 * its lowercased form is on the list (the list has the inflected forms:
 * "does", "doing", "been"). Otherwise its term is its stem (stem() below): a
 * light suffix strip made to be consistent rather than linguistic, so that
 * "route", "routes", "routed" and "routing" all become "rout". Words with a
 * digit are not stemmed ("h100s", "1990s" are names, not plurals).
 *
 * Sentences (ah_select_sentences): one forward scan; a terminator run
 * (". ! ?" and the quotes or brackets closing it) is a boundary when blanks
 * and a sentence opener (upper-case letter, digit, opening quote) follow it
 * and it is not the dot of an abbreviation or an initial. A blank line and a
 * line that opens with a list marker are boundaries whatever precedes them. */
#include "shape/select.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"

#define BM25_K1 1.2
#define BM25_B 0.75
/* Longest word; a longer run of word bytes is cut into words this long. */
#define WORD_MAX_BYTES 64
/* Slots of a fresh term table (a power of two); it grows past half full. */
#define TABLE_MIN_SLOTS 256
/* (term, count) hits of the first allocation; the array doubles after. */
#define HITS_MIN 256
/* Longest abbreviation looked for before a '.', in bytes ("approx"). */
#define ABBREV_MAX_BYTES 8
/* Digits of a numbered list marker ("12. "). */
#define LIST_NUMBER_MAX_DIGITS 3
/* Values of pair_of(): the first two bytes of a word. */
#define PAIR_VALUES 65536
/* The stop set: slots (a power of two, >= 10x the list), the shift that
 * takes a key's hash to a slot (64 - log2 slots), the hash's multiplier, and
 * the longest stop word. */
#define STOP_SLOTS 1024
#define STOP_SHIFT 54
#define STOP_MUL 0x9E3779B97F4A7C15ull
#define STOP_WORD_MAX_BYTES 7
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/* Lowercased; the inflected forms are here because the list is checked
 * before stemming. Negations ("not", "no", "never") are not stop words: they
 * change what a chunk says. The one-letter and two-letter tails of
 * contractions ("don't", "it's", "we'll") are. */
static const char stop_words[][STOP_WORD_MAX_BYTES] = {
    /* a longer one does not compile */
    "a",      "an",   "the",   "of",    "to",    "in",    "on",     "at",    "by",    "for",
    "from",   "with", "about", "into",  "onto",  "over",  "as",     "and",   "or",    "but",
    "if",     "then", "than",  "so",    "is",    "are",   "was",    "were",  "be",    "been",
    "being",  "am",   "do",    "does",  "did",   "doing", "done",   "have",  "has",   "had",
    "having", "it",   "its",   "this",  "that",  "these", "those",  "there", "here",  "what",
    "which",  "who",  "whom",  "whose", "how",   "when",  "where",  "why",   "i",     "me",
    "my",     "we",   "our",   "you",   "your",  "he",    "him",    "his",   "she",   "her",
    "they",   "them", "their", "can",   "could", "would", "should", "will",  "shall", "may",
    "might",  "must", "also",  "just",  "very",  "some",  "any",    "all",   "each",  "s",
    "t",      "d",    "ll",    "re",    "ve",    "m",
};
#define N_STOP_WORDS (sizeof stop_words / sizeof stop_words[0])

/* Words whose '.' does not end a sentence (lowercased, without the final
 * dot). Dotted single letters ("e.g", "i.e", "u.s") and single upper-case
 * initials are recognised without a list; "no" only before a number. */
static const char *const abbreviations[] = {
    "dr",  "mr",  "mrs", "ms", "prof", "jr",     "sr",   "st",   "vs", "etc", "inc", "co",
    "ltd", "fig", "cf",  "al", "vol",  "approx", "dept", "corp", "pp", "ca",  "eg",  "ie",
};
#define N_ABBREVIATIONS (sizeof abbreviations / sizeof abbreviations[0])

/* ---- words ------------------------------------------------------------- */

static inline int word_byte(unsigned char c)
{
    return c >= 0x80 || (unsigned)(c - '0') < 10 || (unsigned)((c | 0x20) - 'a') < 26;
}

static inline int utf8_continuation(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

static inline char ascii_lower(unsigned char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
}

/* The bytes t[i..i+8) as an integer, the first byte lowest; bytes past len
 * read as 0 (i <= len). */
static inline uint64_t load8(const char *t, size_t len, size_t i)
{
    uint64_t x = 0;
    if (len - i >= 8)
        memcpy(&x, t + i, 8); /* one load */
    else
        memcpy(&x, t + i, len - i);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

/* 0x80 in each byte of x that is a word byte (word_byte()), 0 in the others,
 * eight at a time: no sum below carries out of its byte. */
static inline uint64_t word_bytes8(uint64_t x)
{
    uint64_t lo = x & ~HIGHS;
    uint64_t folded = lo | 0x20 * ONES;
    uint64_t letter = (folded + (0x80 - 'a') * ONES) & ~(folded + (0x80 - 'z' - 1) * ONES);
    uint64_t digit = (lo + (0x80 - '0') * ONES) & ~(lo + (0x80 - '9' - 1) * ONES);
    return (x | letter | digit) & HIGHS;
}

/* x case-folded: each byte ORed with 0x20. Within a word this lowercases the
 * ASCII letters, leaves the digits, and moves a byte >= 0x80 to another byte
 * >= 0x80, which no ASCII key can equal: the fold of a word's bytes equals the
 * bytes of a lowercase ASCII word exactly when the word is that word in any
 * case. Two operations, where an exact lowercasing takes seven. */
static inline uint64_t fold8(uint64_t x)
{
    return x | 0x20 * ONES;
}

/* Index of the first byte of m with its 0x80 bit set (m != 0). */
static inline size_t first_marked(uint64_t m)
{
    return (size_t)__builtin_ctzll(m) >> 3;
}

/* How many of x's bytes, from the first, are word bytes (0 to 8), without a
 * branch: the non-word marks moved to bits 8k, bit 63 standing for "none". */
static inline size_t leading_word_bytes(uint64_t x)
{
    uint64_t ends = (~word_bytes8(x) & HIGHS) >> 7 | (uint64_t)1 << 63;
    return ((size_t)__builtin_ctzll(ends) + 1) >> 3;
}

typedef struct word {
    size_t start;
    size_t len;
    uint64_t head; /* the first 8 bytes, case-folded (fold8()), 0 past the word */
} word_t;

/* The word of n bytes at t[i] (where a run may go on past n). */
static inline word_t word_at(const char *t, size_t len, size_t i, size_t n)
{
    uint64_t keep = n >= 8 ? ~(uint64_t)0 : ((uint64_t)1 << (8 * n)) - 1;
    return (word_t){.start = i, .len = n, .head = fold8(load8(t, len, i)) & keep};
}

/* The length of the word at t[i] (a word byte), at most WORD_MAX_BYTES; *cut
 * says whether the run goes on after it. A cut run ends before the character
 * the cut fell into. */
static size_t measure(const char *t, size_t len, size_t i, int *cut)
{
    size_t n = 0, k = 8;
    while (n < WORD_MAX_BYTES && (k = leading_word_bytes(load8(t, len, i + n))) == 8)
        n += 8;
    n += k < 8 ? k : 0;
    *cut = i + n < len && word_byte((unsigned char)t[i + n]);
    while (*cut && n > 1 && utf8_continuation((unsigned char)t[i + n]))
        n--;
    return n;
}

typedef void (*visit_fn)(void *ctx, const char *t, const word_t *w);

/* A run of 16 or more word bytes at t[i]: its words, in order. */
static void visit_long(const char *t, size_t len, size_t i, visit_fn visit, void *ctx)
{
    int cut;
    do {
        size_t n = measure(t, len, i, &cut);
        word_t w = word_at(t, len, i, n);
        visit(ctx, t, &w);
        i += n;
    } while (cut);
}

/* Calls visit for each word of t[0..len), in order (inlined into each caller,
 * with its visit inlined too).
 *
 * Word starts are found eight bytes at a time, at offsets that do not depend
 * on the words (a word byte after a non-word byte), and each word is measured
 * from its start alone, words of up to 16 bytes without a branch: no word
 * waits for the one before it, so the processor overlaps them. A scan from
 * word to word, byte by byte or eight bytes at a time, is one long chain of
 * dependent loads and mispredicted branches, and was twice as slow. */
static inline __attribute__((always_inline)) void scan_words(const char *t, size_t len,
                                                             visit_fn visit, void *ctx)
{
    uint64_t carry = 0; /* 0x80 when the byte before the block is a word byte */
    for (size_t b = 0; b < len; b += 8) {
        uint64_t m = word_bytes8(load8(t, len, b));
        uint64_t starts = m & ~(m << 8 | carry);
        carry = m >> 56 & 0x80;
        while (starts) {
            size_t i = b + first_marked(starts);
            starts &= starts - 1;
            uint64_t head = load8(t, len, i);
            uint64_t ends = ~word_bytes8(head) & HIGHS;
            uint64_t first_end = ends & (0 - ends); /* 0: eight word bytes */
            size_t n = ((size_t)__builtin_ctzll(first_end >> 7 | (uint64_t)1 << 63) + 1) >> 3;
            size_t next8 = len - i >= 8 ? i + 8 : len;
            n += leading_word_bytes(load8(t, len, next8)) & (0 - (size_t)(n == 8));
            if (n == 16) {
                visit_long(t, len, i, visit, ctx);
                continue;
            }
            /* (first_end >> 7) - 1: the word's bytes among the eight. */
            word_t w = {.start = i, .len = n, .head = fold8(head) & ((first_end >> 7) - 1)};
            visit(ctx, t, &w);
        }
    }
}

static inline void lower_copy(char *w, const char *raw, size_t n)
{
    for (size_t i = 0; i < n; i++)
        w[i] = ascii_lower((unsigned char)raw[i]);
}

/* The first two bytes of a word (case-folded) from its head. A stem begins
 * with them too: stem() leaves at least two bytes of a longer word and
 * rewrites none of the first two. */
static inline unsigned pair_of(uint64_t head)
{
    return (unsigned)(head & 0xFFFF);
}

static inline int has_pair(const uint64_t *bits, unsigned p)
{
    return (int)(bits[p >> 6] >> (p & 63)) & 1;
}

static inline void set_pair(uint64_t *bits, unsigned p)
{
    bits[p >> 6] |= (uint64_t)1 << (p & 63);
}

/* ---- the stop list as a set of integers -------------------------------- */

/* Every stop word is lowercase ASCII of at most STOP_WORD_MAX_BYTES (7), so a
 * word's head is its key: membership is a multiply and two compares. A word of
 * 8 bytes or more is none without a length test, its head having no 0 byte
 * where every key has one. A key sits at its slot or the next one; the few
 * that find both taken (none with this list and multiplier) go to an
 * overflow list. */
typedef struct stop_set {
    uint64_t slot[STOP_SLOTS + 1];
    uint64_t overflow[N_STOP_WORDS];
    size_t noverflow;
} stop_set_t;

static inline size_t stop_slot(uint64_t key)
{
    return (size_t)((key * STOP_MUL) >> STOP_SHIFT);
}

static void stop_set_init(stop_set_t *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < N_STOP_WORDS; i++) {
        uint64_t key = load8(stop_words[i], strnlen(stop_words[i], STOP_WORD_MAX_BYTES), 0);
        size_t h = stop_slot(key);
        if (!s->slot[h])
            s->slot[h] = key;
        else if (!s->slot[h + 1])
            s->slot[h + 1] = key;
        else
            s->overflow[s->noverflow++] = key;
    }
}

static inline int is_stop(const stop_set_t *s, const word_t *w)
{
    uint64_t key = w->head;
    size_t h = stop_slot(key);
    int hit = (s->slot[h] == key) | (s->slot[h + 1] == key);
    for (size_t i = 0; i < s->noverflow; i++)
        hit |= s->overflow[i] == key;
    return hit;
}

/* ---- the question's terms ---------------------------------------------- */

typedef struct term {
    uint64_t hash;
    uint32_t key; /* offset of the key's bytes in the table's pool */
    uint32_t qi;  /* index of the query term */
    uint8_t len;  /* 0: empty slot */
} term_t;

/* The question's terms (stems) in an open-addressed table, with the set of
 * their first two bytes: most words of a chunk begin as no term does, and are
 * known to be no term without being copied, stemmed or hashed. */
typedef struct terms {
    term_t *slot;
    size_t mask; /* slots - 1 */
    size_t count;
    char *pool;
    size_t pool_len;
    size_t pool_cap;
    uint64_t *pairs; /* PAIR_VALUES bits */
    stop_set_t *stops;
} terms_t;

static void terms_init(terms_t *t)
{
    t->slot = ah_calloc(TABLE_MIN_SLOTS, sizeof *t->slot);
    t->mask = TABLE_MIN_SLOTS - 1;
    t->count = 0;
    t->pool_cap = TABLE_MIN_SLOTS * 8;
    t->pool = ah_malloc(t->pool_cap);
    t->pool_len = 0;
    t->pairs = ah_calloc(PAIR_VALUES / 64, sizeof *t->pairs);
    t->stops = ah_malloc(sizeof *t->stops);
    stop_set_init(t->stops);
}

static void terms_free(terms_t *t)
{
    ah_free(t->slot);
    ah_free(t->pool);
    ah_free(t->pairs);
    ah_free(t->stops);
}

static const term_t *terms_lookup(const terms_t *t, uint64_t h, const char *w, size_t n)
{
    for (size_t i = (size_t)h & t->mask;; i = (i + 1) & t->mask) {
        const term_t *s = &t->slot[i];
        if (!s->len)
            return NULL;
        if (s->hash == h && s->len == n && memcmp(t->pool + s->key, w, n) == 0)
            return s;
    }
}

static void terms_grow(terms_t *t)
{
    size_t slots = (t->mask + 1) * 2;
    term_t *old = t->slot;
    size_t old_slots = t->mask + 1;
    t->slot = ah_calloc(slots, sizeof *t->slot);
    t->mask = slots - 1;
    for (size_t i = 0; i < old_slots; i++) {
        if (!old[i].len)
            continue;
        size_t j = (size_t)old[i].hash & t->mask;
        while (t->slot[j].len)
            j = (j + 1) & t->mask;
        t->slot[j] = old[i];
    }
    ah_free(old);
}

/* Adds the term w[0..n) unless it is there; returns 1 when it was added. */
static int terms_add(terms_t *t, const char *w, size_t n)
{
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, w, n);
    if (terms_lookup(t, h, w, n))
        return 0;
    if ((t->count + 1) * 2 > t->mask + 1)
        terms_grow(t);
    if (t->pool_len + n > t->pool_cap) {
        /* The pool holds at most the question's bytes, which are bounded
         * (AH_SELECT_MAX_TEXT_BYTES): no overflow. */
        t->pool_cap = (t->pool_cap + n) * 2;
        t->pool = ah_realloc(t->pool, t->pool_cap);
    }
    size_t i = (size_t)h & t->mask;
    while (t->slot[i].len)
        i = (i + 1) & t->mask;
    t->slot[i] = (term_t){
        .hash = h, .key = (uint32_t)t->pool_len, .qi = (uint32_t)t->count, .len = (uint8_t)n};
    memcpy(t->pool + t->pool_len, w, n);
    t->pool_len += n;
    t->count++;
    return 1;
}

/* ---- stems ------------------------------------------------------------- */

static int is_vowel(char c)
{
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
}

static int has_vowel(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (is_vowel(w[i]))
            return 1;
    return 0;
}

static int has_digit(const char *w, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (w[i] >= '0' && w[i] <= '9')
            return 1;
    return 0;
}

static int ends_with(const char *w, size_t n, const char *suffix, size_t sn)
{
    return n >= sn && memcmp(w + n - sn, suffix, sn) == 0;
}

/* One suffix off w[0..n) (w may be rewritten); returns the new length, n
 * when no rule applies. The length bounds keep short words whole ("is",
 * "red", "sing", "ties" -> "ti" like "tie" -> "ti"). */
static size_t strip_suffix(char *w, size_t n)
{
    if (n >= 5 && (ends_with(w, n, "ies", 3) || ends_with(w, n, "ied", 3))) {
        w[n - 3] = 'y'; /* queries, applied -> query, apply */
        return n - 2;
    }
    if (n >= 4 && ends_with(w, n, "es", 2))
        return n - 2; /* boxes -> box; routes -> rout, as route -> rout */
    if (n >= 3 && w[n - 1] == 's' && w[n - 2] != 's')
        return n - 1; /* apis -> api; class keeps its s */
    if (n >= 5 && ends_with(w, n, "ing", 3) && has_vowel(w, n - 3))
        return n - 3; /* string, thing, bring keep theirs */
    if (n >= 4 && ends_with(w, n, "ed", 2) && !ends_with(w, n, "eed", 3) && has_vowel(w, n - 2))
        return n - 2; /* need, speed, shed keep theirs */
    return n;
}

/* The stem of the lowercased word w[0..n), in place; returns its length.
 * Suffixes come off until none is left, then a final 'e' ("route" meets
 * "routing" at "rout") and a doubled final consonant ("running" meets "run"),
 * and again until nothing changes: every step shortens the word. */
static size_t stem(char *w, size_t n)
{
    if (has_digit(w, n))
        return n;
    for (;;) {
        size_t before = n;
        for (size_t m = strip_suffix(w, n); m != n; m = strip_suffix(w, n))
            n = m;
        if (n >= 3 && w[n - 1] == 'e' && w[n - 2] != 'e')
            n--; /* but "free" stays: "frees" -> "free" */
        if (n >= 3 && w[n - 1] == w[n - 2] && w[n - 1] >= 'a' && w[n - 1] <= 'z' &&
            !is_vowel(w[n - 1]) && w[n - 1] != 'l' && w[n - 1] != 's' && w[n - 1] != 'z')
            n--;
        if (n == before)
            return n;
    }
}

/* The query term of the chunk's word *w (text is the chunk), NULL when it is
 * none. The word is not a stop word and begins as a term does. */
static const term_t *word_term(const terms_t *t, const char *text, const word_t *w)
{
    char s[WORD_MAX_BYTES];
    lower_copy(s, text + w->start, w->len);
    size_t n = stem(s, w->len);
    return terms_lookup(t, ah_fnv1a(AH_FNV_OFFSET, s, n), s, n);
}

/* ---- scoring ----------------------------------------------------------- */

typedef struct hit {
    uint32_t qi;
    uint32_t tf;
} hit_t;

static ah_err_t check_args(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                           const ah_select_dense_t *dense)
{
    if (n > AH_SELECT_MAX_CHUNKS || qlen > AH_SELECT_MAX_TEXT_BYTES)
        return AH_E_TOOBIG;
    if ((n && !chunks) || (qlen && !question))
        return AH_E_INVAL;
    for (size_t i = 0; i < n; i++) {
        if (chunks[i].len > AH_SELECT_MAX_TEXT_BYTES)
            return AH_E_TOOBIG;
        if (chunks[i].len && !chunks[i].text)
            return AH_E_INVAL;
    }
    /* The negated test also refuses a NaN weight. */
    if (dense && (!(dense->weight >= 0.0 && dense->weight <= 1.0) || (n && !dense->cosine)))
        return AH_E_INVAL;
    return AH_E_OK;
}

static void add_term(void *ctx, const char *question, const word_t *wd)
{
    terms_t *t = ctx;
    char w[WORD_MAX_BYTES];
    if (is_stop(t->stops, wd))
        return;
    lower_copy(w, question + wd->start, wd->len);
    if (terms_add(t, w, stem(w, wd->len)))
        set_pair(t->pairs, pair_of(wd->head));
}

/* The question's terms into t; returns how many there are. */
static size_t index_question(terms_t *t, const char *question, size_t qlen)
{
    scan_words(question, qlen, add_term, t);
    return t->count;
}

/* What one chunk's scan gathers: its length in words and the query terms
 * it holds (touched[0..ntouched), each counted in tf). */
typedef struct chunk_scan {
    const terms_t *t;
    uint32_t *tf;
    uint32_t *touched;
    size_t ntouched;
    size_t words;
} chunk_scan_t;

static inline __attribute__((always_inline)) void count_word(void *ctx, const char *text,
                                                             const word_t *w)
{
    chunk_scan_t *c = ctx;
    /* No branch on stop words: they are too frequent to predict. */
    int stop = is_stop(c->t->stops, w);
    c->words += (size_t)!stop;
    if (!(has_pair(c->t->pairs, pair_of(w->head)) & !stop))
        return;
    const term_t *e = word_term(c->t, text, w);
    if (e && c->tf[e->qi]++ == 0)
        c->touched[c->ntouched++] = e->qi;
}

/* BM25 of each chunk into bm25[0..n), for the nq query terms in t. */
static void score_terms(const terms_t *t, size_t nq, const ah_chunk_t *chunks, size_t n,
                        double *bm25)
{
    uint32_t *tf = ah_calloc(nq, sizeof *tf);
    uint32_t *df = ah_calloc(nq, sizeof *df);
    uint32_t *touched = ah_malloc(nq * sizeof *touched);
    size_t *dl = ah_malloc(n * sizeof *dl);
    size_t *first = ah_malloc((n + 1) * sizeof *first); /* chunk i's hits: [first[i], first[i+1]) */
    size_t nhits = 0, hits_cap = HITS_MIN;
    hit_t *hits = ah_malloc(hits_cap * sizeof *hits);
    double total_dl = 0;

    for (size_t i = 0; i < n; i++) {
        chunk_scan_t c = {.t = t, .tf = tf, .touched = touched};
        scan_words(chunks[i].text, chunks[i].len, count_word, &c);
        size_t words = c.words, ntouched = c.ntouched;
        dl[i] = words;
        total_dl += (double)words;
        first[i] = nhits;
        if (nhits + ntouched > hits_cap) {
            /* Hits are at most the words of the chunks, which are bounded
             * (AH_SELECT_MAX_CHUNKS x AH_SELECT_MAX_TEXT_BYTES). */
            while (nhits + ntouched > hits_cap)
                hits_cap *= 2;
            hits = ah_realloc(hits, hits_cap * sizeof *hits);
        }
        for (size_t j = 0; j < ntouched; j++) {
            uint32_t qi = touched[j];
            hits[nhits++] = (hit_t){.qi = qi, .tf = tf[qi]};
            df[qi]++;
            tf[qi] = 0;
        }
    }
    first[n] = nhits;

    double *idf = ah_malloc(nq * sizeof *idf);
    for (size_t q = 0; q < nq; q++)
        idf[q] = log(1.0 + ((double)n - df[q] + 0.5) / (df[q] + 0.5));
    /* A chunk with hits has words, so avgdl > 0 wherever it is used. */
    double avgdl = total_dl / (double)n;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        if (first[i] < first[i + 1]) {
            double norm = BM25_K1 * (1.0 - BM25_B + BM25_B * (double)dl[i] / avgdl);
            for (size_t h = first[i]; h < first[i + 1]; h++) {
                double f = hits[h].tf;
                s += idf[hits[h].qi] * f * (BM25_K1 + 1.0) / (f + norm);
            }
        }
        bm25[i] = s;
    }

    ah_free(idf);
    ah_free(hits);
    ah_free(first);
    ah_free(dl);
    ah_free(touched);
    ah_free(df);
    ah_free(tf);
}

/* BM25 of each chunk into bm25[0..n); all 0 when the question has no term. */
static void score_bm25(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                       double *bm25)
{
    terms_t t;
    terms_init(&t);
    size_t nq = index_question(&t, question, qlen);
    if (nq)
        score_terms(&t, nq, chunks, n, bm25);
    else
        for (size_t i = 0; i < n; i++)
            bm25[i] = 0;
    terms_free(&t);
}

/* The dense share: a cosine in [-1, 1] mapped to [0, 1]; out of range is
 * clamped, NaN counts as the worst. */
static double dense_part(float cosine)
{
    double c = cosine;
    if (!(c >= -1.0))
        c = -1.0;
    if (c > 1.0)
        c = 1.0;
    return (c + 1.0) / 2.0;
}

static void score_checked(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                          const ah_select_dense_t *dense, double *scores)
{
    score_bm25(chunks, n, question, qlen, scores);
    if (!dense)
        return;
    double max = 0;
    for (size_t i = 0; i < n; i++)
        if (scores[i] > max)
            max = scores[i];
    double w = dense->weight;
    for (size_t i = 0; i < n; i++) {
        double sparse = max > 0 ? scores[i] / max : 0.0;
        scores[i] = (1.0 - w) * sparse + w * dense_part(dense->cosine[i]);
    }
}

ah_err_t ah_select_score(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                         const ah_select_dense_t *dense, double *scores)
{
    ah_err_t rc = check_args(chunks, n, question, qlen, dense);
    if (!rc && n && !scores)
        rc = AH_E_INVAL;
    if (!rc && n)
        score_checked(chunks, n, question, qlen, dense, scores);
    return rc;
}

/* ---- top k ------------------------------------------------------------- */

typedef struct ranked {
    double score;
    size_t index;
} ranked_t;

/* Best first; equal scores in chunk order, so the sort is stable. */
static int by_score(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

ah_err_t ah_select_top_k(const ah_chunk_t *chunks, size_t n, const char *question, size_t qlen,
                         size_t k, const ah_select_dense_t *dense, unsigned char *keep,
                         size_t *kept)
{
    ah_err_t rc = check_args(chunks, n, question, qlen, dense);
    if (!rc && (!kept || (n && !keep)))
        rc = AH_E_INVAL;
    if (rc)
        goto out;
    if (k == 0 || k >= n) {
        /* Nothing to rank: none or all of them. */
        if (n)
            memset(keep, k ? 1 : 0, n);
        *kept = k ? n : 0;
        goto out;
    }

    double *scores = ah_malloc(n * sizeof *scores);
    ranked_t *order = ah_malloc(n * sizeof *order);
    score_checked(chunks, n, question, qlen, dense, scores);
    for (size_t i = 0; i < n; i++)
        order[i] = (ranked_t){.score = scores[i], .index = i};
    qsort(order, n, sizeof *order, by_score);
    memset(keep, 0, n);
    for (size_t i = 0; i < k; i++)
        keep[order[i].index] = 1;
    *kept = k;
    ah_free(order);
    ah_free(scores);
out:
    return rc;
}

/* ---- sentences --------------------------------------------------------- */

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static size_t skip_blanks(const char *t, size_t len, size_t i)
{
    while (i < len && is_blank((unsigned char)t[i]))
        i++;
    return i;
}

static int has_bytes(const char *t, size_t len, size_t i, const char *s, size_t sn)
{
    return i + sn <= len && memcmp(t + i, s, sn) == 0;
}

/* Bytes of the opening quote at t[i], 0 when there is none. */
static size_t opening_quote(const char *t, size_t len, size_t i)
{
    if (t[i] == '"' || t[i] == '\'')
        return 1;
    if (has_bytes(t, len, i, "\xE2\x80\x9C", 3) || has_bytes(t, len, i, "\xE2\x80\x98", 3))
        return 3; /* “ ‘ */
    if (has_bytes(t, len, i, "\xC2\xAB", 2))
        return 2; /* « */
    return 0;
}

/* Bytes of the closing quote or bracket at t[i], 0 when there is none. */
static size_t closer(const char *t, size_t len, size_t i)
{
    if (t[i] == '"' || t[i] == '\'' || t[i] == ')' || t[i] == ']')
        return 1;
    if (has_bytes(t, len, i, "\xE2\x80\x9D", 3) || has_bytes(t, len, i, "\xE2\x80\x99", 3))
        return 3; /* ” ’ */
    if (has_bytes(t, len, i, "\xC2\xBB", 2))
        return 2; /* » */
    return 0;
}

/* An upper-case letter at t[i]: ASCII, Latin-1 (U+00C0-U+00DE but U+00D7),
 * Greek (U+0391-U+03A9) or Cyrillic (U+0400-U+042F). */
static int upper_at(const char *t, size_t len, size_t i)
{
    unsigned char c = (unsigned char)t[i];
    if (c >= 'A' && c <= 'Z')
        return 1;
    if (i + 1 >= len)
        return 0;
    unsigned char d = (unsigned char)t[i + 1];
    return (c == 0xC3 && d >= 0x80 && d <= 0x9E && d != 0x97) ||
           (c == 0xCE && d >= 0x91 && d <= 0xA9) || (c == 0xD0 && d >= 0x80 && d <= 0xAF);
}

static int opens_sentence(const char *t, size_t len, size_t i)
{
    return upper_at(t, len, i) || (t[i] >= '0' && t[i] <= '9') || opening_quote(t, len, i);
}

static int ascii_letter(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26;
}

/* Is the '.' at t[dot] the end of an abbreviation or an initial? start is
 * where the sentence began, t[next] the sentence opener after the dot. */
static int abbreviation_dot(const char *t, size_t start, size_t dot, size_t next)
{
    size_t s = dot;
    while (s > start && dot - s < ABBREV_MAX_BYTES &&
           (ascii_letter((unsigned char)t[s - 1]) || t[s - 1] == '.'))
        s--;
    if (s == dot || (s > start && (word_byte((unsigned char)t[s - 1]) || t[s - 1] == '.')))
        return 0; /* no word, or a word longer than any abbreviation */
    size_t n = dot - s;
    if (n == 1 && t[s] >= 'A' && t[s] <= 'Z')
        return 1; /* an initial: "J. Smith" */
    /* Dotted single letters: "e.g", "i.e", "U.S". */
    int dotted = n >= 3;
    for (size_t i = 0; dotted && i < n; i++)
        dotted = (i % 2 == 0) ? ascii_letter((unsigned char)t[s + i]) : t[s + i] == '.';
    if (dotted)
        return 1;
    char w[ABBREV_MAX_BYTES];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[s + i];
        w[i] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
    }
    if (n == 2 && memcmp(w, "no", 2) == 0)
        return t[next] >= '0' && t[next] <= '9'; /* "No. 5", but "I said no. Then" */
    for (size_t i = 0; i < N_ABBREVIATIONS; i++)
        if (strlen(abbreviations[i]) == n && memcmp(abbreviations[i], w, n) == 0)
            return 1;
    return 0;
}

/* A list marker at t[i]: "- ", "* ", "+ ", "• ", or up to three digits and
 * ". " or ") ". */
static int list_marker(const char *t, size_t len, size_t i)
{
    if (i + 1 < len && (t[i] == '-' || t[i] == '*' || t[i] == '+') && t[i + 1] == ' ')
        return 1;
    if (has_bytes(t, len, i, "\xE2\x80\xA2 ", 4))
        return 1;
    size_t d = 0;
    while (i + d < len && d <= LIST_NUMBER_MAX_DIGITS && t[i + d] >= '0' && t[i + d] <= '9')
        d++;
    return d >= 1 && d <= LIST_NUMBER_MAX_DIGITS && i + d + 1 < len &&
           (t[i + d] == '.' || t[i + d] == ')') && t[i + d + 1] == ' ';
}

/* The end of the sentence that starts at t[start] (not blank), when another
 * one follows it: *end past its last non-blank byte, *next at the next one's
 * first byte. Returns 0 when the sentence runs to the end of the text. */
static int next_boundary(const char *t, size_t len, size_t start, size_t *end, size_t *next)
{
    size_t p = start;
    while (p < len) {
        unsigned char c = (unsigned char)t[p];
        if (c == '.' || c == '!' || c == '?') {
            size_t q = p;
            while (q < len && (t[q] == '.' || t[q] == '!' || t[q] == '?'))
                q++;
            int lone_dot = c == '.' && q == p + 1;
            size_t cn;
            while (q < len && (cn = closer(t, len, q)) != 0)
                q += cn;
            if (q < len && is_blank((unsigned char)t[q])) {
                size_t r = skip_blanks(t, len, q);
                if (r < len && opens_sentence(t, len, r) &&
                    !(lone_dot && abbreviation_dot(t, start, p, r))) {
                    *end = q;
                    *next = r;
                    return 1;
                }
            }
            p = q; /* the blanks after it may hold a blank line */
            continue;
        }
        if (c == '\n') {
            size_t r = p + 1;
            while (r < len && (t[r] == ' ' || t[r] == '\t' || t[r] == '\r'))
                r++;
            int blank_line = r < len && t[r] == '\n';
            if (blank_line || (r < len && list_marker(t, len, r))) {
                size_t n = skip_blanks(t, len, r);
                if (n < len) {
                    size_t e = p;
                    while (e > start && is_blank((unsigned char)t[e - 1]))
                        e--;
                    *end = e;
                    *next = n;
                    return 1;
                }
            }
        }
        p++;
    }
    return 0;
}

size_t ah_select_sentences(const char *text, size_t len, size_t *spans, size_t max)
{
    if (!text || !spans || max == 0)
        return 0;
    size_t count = 0, start = skip_blanks(text, len, 0);
    size_t end, next;
    while (start < len && count + 1 < max && next_boundary(text, len, start, &end, &next)) {
        spans[2 * count] = start;
        spans[2 * count + 1] = end;
        count++;
        start = next;
    }
    if (start < len) {
        end = len;
        while (end > start && is_blank((unsigned char)text[end - 1]))
            end--;
        spans[2 * count] = start;
        spans[2 * count + 1] = end;
        count++;
    }
    return count;
}
