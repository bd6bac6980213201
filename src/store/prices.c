/* prices.c - the price catalogue: load data/prices.json, find a model's
 * prices, price a call.
 *
 * Load flattens the JSON into a few arrays so that a lookup walks memory and
 * allocates nothing: a provider owns a range of models, a model a range of
 * dated price entries and the root of its match clause. Clauses live in one
 * array (the children of an or/and are contiguous), their strings in one
 * pool, and regexes are compiled once, here. A lookup is then a linear scan
 * over the models of the providers it tries: about 1,500 entries in all,
 * made cheap by one precomputed fact per model: the bytes a name it matches
 * can start with (all of them when its clause has a `contains`). A known
 * model is found in about a microsecond and an unknown name is rejected in a
 * few (see data/README.md), with no index to keep in step with the rules.
 *
 * The match rules follow pydantic/genai-prices (packages/python/genai_prices,
 * types.py and data_snapshot.py); the choices it leaves open are written down
 * in prices.h. */
#include "store/prices.h"

#include "core/path.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/limits.h"
#include "core/log.h"

/* Limits of a catalogue file and of what a lookup tries. */
#define PRICES_MAX_FILE_BYTES (16u * 1024 * 1024)
#define PRICES_MAX_CLAUSE_DEPTH 16
#define PRICES_MAX_FALLBACKS 4       /* fallback_model_providers of one provider */
#define PRICES_MAX_PROVIDER_NAME 128 /* a provider name given to a lookup */
#define PRICES_MAX_REGEX_BYTES 1024  /* a regex, before and after translation */
#define PRICES_MAX_STRIPS 3          /* leading "segment/" taken off a model name */
#define PRICES_MAX_VARIANTS (2 * (1 + PRICES_MAX_STRIPS)) /* as given and lowercased */
#define PRICES_MAX_PREFERRED (2 * (1 + PRICES_MAX_FALLBACKS))
#define PRICES_FIRST_CAPACITY 64
#define PRICES_SECONDS_PER_DAY 86400
#define PRICES_NO_CLAUSE UINT32_MAX
#define PRICES_NO_DATE INT64_MIN

typedef enum {
    CLAUSE_EQUALS,
    CLAUSE_STARTS_WITH,
    CLAUSE_ENDS_WITH,
    CLAUSE_CONTAINS,
    CLAUSE_REGEX,
    CLAUSE_NEVER, /* a regex this build cannot express */
    CLAUSE_OR,
    CLAUSE_AND,
} clause_kind_t;

typedef struct clause {
    clause_kind_t kind;
    uint32_t text;  /* string clauses: offset in the pool; regex: its literal prefix */
    uint32_t len;   /* length of the text */
    uint32_t first; /* or/and: index of the first child; regex: index in regexes */
    uint32_t n;     /* or/and: number of children */
} clause_t;

/* One price of a model and when it applies (a ConditionalPrice). */
typedef struct price_entry {
    int64_t start;    /* start_date, epoch seconds UTC; PRICES_NO_DATE when none */
    int32_t tod_from; /* time-of-day window, seconds since 00:00 UTC; -1 when none */
    int32_t tod_to;
    ah_price_t price;
} price_entry_t;

/* A set of bytes, one bit each. */
typedef struct byteset {
    uint64_t bits[4];
} byteset_t;

typedef struct model {
    byteset_t first;   /* bytes a name this model matches can start with */
    uint32_t id;       /* offset in the pool */
    uint32_t provider; /* index in providers */
    uint32_t match;    /* index in clauses */
    uint32_t first_entry;
    uint32_t nentries;
    int64_t context_window;
    int64_t max_output_tokens;
} model_t;

typedef struct provider {
    uint32_t id; /* offset in the pool */
    uint32_t id_len;
    uint32_t provider_match; /* index in clauses, or PRICES_NO_CLAUSE */
    uint32_t model_match;
    uint32_t first_model;
    uint32_t nmodels;
    int nfallbacks;
    uint32_t fallbacks[PRICES_MAX_FALLBACKS];
} provider_t;

struct ah_prices {
    provider_t *providers;
    size_t nproviders;
    model_t *models;
    size_t nmodels;
    price_entry_t *entries;
    size_t nentries, entries_cap;
    clause_t *clauses;
    size_t nclauses, clauses_cap;
    regex_t **regexes; /* each allocated once: a regex_t is not moved after regcomp */
    size_t nregexes, regexes_cap;
    ah_buf_t pool; /* NUL-terminated strings, found by offset */
    ah_prices_stats_t stats;
};

/* ---- loading ---------------------------------------------------------- */

typedef struct loader {
    ah_prices_t *p;
    const char *where; /* the provider or model being read, for messages */
    char why[256];     /* the first error, logged by ah_prices_load */
} loader_t;

static ah_err_t fail(loader_t *l, ah_err_t rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record why loading failed (the first reason wins) and return rc. */
static ah_err_t fail(loader_t *l, ah_err_t rc, const char *fmt, ...)
{
    if (l->why[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->why, sizeof l->why, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Room for one more element in an array of *cap elements holding n;
 * NULL when the new size would overflow. */
static void *grow(void *arr, size_t n, size_t *cap, size_t elem)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : PRICES_FIRST_CAPACITY;
    if (ncap < *cap || ah_mul_overflows(ncap, elem))
        return NULL;
    *cap = ncap;
    return ah_realloc(arr, ncap * elem);
}

/* Copy a string into the pool; *off is where it starts. */
static ah_err_t pool_add(loader_t *l, const char *s, size_t len, uint32_t *off)
{
    ah_buf_t *pool = &l->p->pool;
    if (len >= UINT32_MAX || pool->len > UINT32_MAX - len - 1)
        return fail(l, AH_E_TOOBIG, "string pool full");
    *off = (uint32_t)pool->len;
    ah_err_t rc = ah_buf_append(pool, s, len);
    if (rc == AH_E_OK)
        rc = ah_buf_append(pool, "", 1);
    return rc ? fail(l, rc, "string pool full") : AH_E_OK;
}

/* The string value of j, refusing non-strings and embedded NULs. */
static const char *json_text(json_t *j, size_t *len)
{
    if (!json_is_string(j))
        return NULL;
    const char *s = json_string_value(j);
    *len = json_string_length(j);
    return strlen(s) == *len ? s : NULL;
}

static bool is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower_ascii(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* An ERE under construction in a fixed buffer; `full` once it overflowed. */
typedef struct ere {
    char *s;
    size_t len, cap;
    bool full;
} ere_t;

static void ere_put(ere_t *o, const char *s)
{
    size_t n = strlen(s);
    if (o->full || o->len + n >= o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->s + o->len, s, n + 1);
    o->len += n;
}

static void ere_putc(ere_t *o, char c)
{
    char s[2] = {c, '\0'};
    ere_put(o, s);
}

/* Python's class escapes \d \w \s (and negations) as bracket contents. */
static const char *class_escape(char c, bool *negated)
{
    *negated = c == 'D' || c == 'W' || c == 'S';
    switch (lower_ascii(c)) {
    case 'd':
        return "0-9";
    case 'w':
        return "[:alnum:]_";
    case 's':
        return "[:space:]";
    default:
        return NULL;
    }
}

/* A set re[*i] == '[' ... ']' in ERE, where ']' must come first and '-'
 * last, and a backslash is an ordinary character. Leaves *i on the ']';
 * -1 for what ERE cannot say (negated classes inside a set, POSIX class
 * syntax that Python reads as literal characters). */
static int set_to_ere(const char *re, size_t *i, ere_t *o)
{
    char body_buf[PRICES_MAX_REGEX_BYTES];
    ere_t body = {body_buf, 0, sizeof body_buf, false};
    bool negated = false, close = false, dash = false, caret = false;
    size_t j = *i + 1;
    body_buf[0] = '\0';
    if (re[j] == '^') {
        negated = true;
        j++;
    }
    if (re[j] == ']') {
        close = true;
        j++;
    }
    for (; re[j] != '\0' && re[j] != ']'; j++) {
        char c = re[j];
        if (c == '[' && (re[j + 1] == ':' || re[j + 1] == '=' || re[j + 1] == '.'))
            return -1;
        if (c != '\\') {
            ere_putc(&body, c);
            continue;
        }
        char e = re[++j];
        bool neg;
        const char *cls = class_escape(e, &neg);
        if (e == '\0' || (cls && neg))
            return -1;
        if (cls)
            ere_put(&body, cls);
        else if (e == ']')
            close = true;
        else if (e == '-')
            dash = true;
        else if (e == '^')
            caret = true;
        else if (e == 'n' || e == 't')
            ere_putc(&body, e == 'n' ? '\n' : '\t');
        else if (is_alnum(e))
            return -1;
        else
            ere_putc(&body, e);
    }
    if (re[j] != ']' || (caret && !close && !negated && body.len == 0))
        return -1;
    ere_put(o, negated ? "[^" : "[");
    if (close)
        ere_putc(o, ']');
    ere_put(o, body_buf);
    if (caret)
        ere_putc(o, '^');
    if (dash)
        ere_putc(o, '-');
    ere_putc(o, ']');
    *i = j;
    return body.full ? -1 : 0;
}

/* Translate a Python `re` pattern to POSIX ERE: \d \w \s and negations
 * become sets, (?: becomes (, lazy quantifiers lose their ? (the same
 * strings match; only the extent of the match differs, which a lookup never
 * asks for). -1 for lookaround, \b, backreferences and the like. */
static int regex_to_ere(const char *re, char *dst, size_t cap)
{
    static const char ere_special[] = ".[]()*+?{}|^$\\";
    ere_t o = {dst, 0, cap, false};
    bool interval = false; /* inside {m,n} */
    dst[0] = '\0';
    for (size_t i = 0; re[i] != '\0'; i++) {
        char c = re[i];
        bool quantifier = c == '*' || c == '+' || c == '?' || (c == '}' && interval);
        if (c == '{' && re[i + 1] >= '0' && re[i + 1] <= '9')
            interval = true;
        else if (c == '}')
            interval = false;
        if (c == '\\') {
            char e = re[++i];
            bool neg;
            const char *cls = class_escape(e, &neg);
            if (e == '\0')
                return -1;
            if (cls) {
                ere_put(&o, neg ? "[^" : "[");
                ere_put(&o, cls);
                ere_putc(&o, ']');
            } else if (e == 'n' || e == 't') {
                ere_putc(&o, e == 'n' ? '\n' : '\t');
            } else if (is_alnum(e)) {
                return -1;
            } else if (strchr(ere_special, e)) {
                ere_putc(&o, '\\');
                ere_putc(&o, e);
            } else {
                ere_putc(&o, e);
            }
        } else if (c == '[') {
            if (set_to_ere(re, &i, &o) != 0)
                return -1;
        } else if (c == '(' && re[i + 1] == '?') {
            if (re[i + 2] != ':')
                return -1;
            ere_putc(&o, '(');
            i += 2;
        } else if (quantifier && re[i + 1] == '+') {
            return -1; /* possessive */
        } else {
            ere_putc(&o, c);
            if (quantifier && re[i + 1] == '?')
                i++; /* lazy */
        }
    }
    return o.full ? -1 : 0;
}

/* The literal a ^-anchored pattern starts with ("^grok-4\.3-(?=x)" gives
 * "grok-4.3-"), for a prefix match in place of a regex ERE cannot express.
 * It over-matches; it never under-matches, which for a price is the better
 * error. 0 when there is none or when an alternation makes it unsound. */
static size_t regex_literal_prefix(const char *re, char *dst, size_t cap)
{
    if (re[0] != '^' || strchr(re, '|'))
        return 0;
    size_t n = 0, before_last = 0, i = 1;
    for (; re[i] != '\0'; i++) {
        char c = re[i];
        if (c == '\\') {
            if (re[i + 1] == '\0' || is_alnum(re[i + 1]))
                break;
            c = re[++i];
        } else if (strchr(".[]()*+?{}|^$", c)) {
            break;
        }
        if (n + 1 >= cap)
            return 0;
        before_last = n;
        dst[n++] = c;
    }
    if (re[i] == '?' || re[i] == '*' || re[i] == '{')
        n = before_last; /* the last literal is optional */
    dst[n] = '\0';
    return n;
}

/* Make clauses[slot] match what the regex matches, as well as this build
 * can. A compiled regex keeps its ^literal prefix too: a memcmp that rules
 * out most names before regexec, which costs a microsecond or so. */
static ah_err_t regex_clause(loader_t *l, const char *pattern, size_t slot)
{
    ah_prices_t *p = l->p;
    char ere[PRICES_MAX_REGEX_BYTES], literal[PRICES_MAX_REGEX_BYTES];
    size_t n = regex_literal_prefix(pattern, literal, sizeof literal);
    uint32_t off = 0;
    ah_err_t rc = n > 0 ? pool_add(l, literal, n, &off) : AH_E_OK;
    if (rc)
        return rc;
    p->clauses[slot].text = off;
    p->clauses[slot].len = (uint32_t)n;
    if (strlen(pattern) < sizeof ere && regex_to_ere(pattern, ere, sizeof ere) == 0) {
        regex_t *re = ah_malloc(sizeof *re);
        if (regcomp(re, ere, REG_EXTENDED | REG_NOSUB) == 0) {
            regex_t **grown = grow(p->regexes, p->nregexes, &p->regexes_cap, sizeof *p->regexes);
            if (!grown) {
                regfree(re);
                ah_free(re);
                return fail(l, AH_E_TOOBIG, "too many regexes");
            }
            p->regexes = grown;
            p->clauses[slot].kind = CLAUSE_REGEX;
            p->clauses[slot].first = (uint32_t)p->nregexes;
            p->regexes[p->nregexes++] = re;
            p->stats.regexes++;
            return AH_E_OK;
        }
        ah_free(re);
    }
    if (n > 0) {
        p->clauses[slot].kind = CLAUSE_STARTS_WITH;
        p->stats.regex_prefix++;
        ah_warn("prices: %s: regex \"%s\" is not POSIX ERE; matching the prefix \"%s\"", l->where,
                pattern, literal);
    } else {
        p->clauses[slot].kind = CLAUSE_NEVER;
        p->stats.regex_dropped++;
        ah_warn("prices: %s: regex \"%s\" is not POSIX ERE; it will never match", l->where,
                pattern);
    }
    return rc;
}

/* Append n empty clauses; *first is the index of the first. */
static ah_err_t clauses_add(loader_t *l, size_t n, size_t *first)
{
    ah_prices_t *p = l->p;
    *first = p->nclauses;
    for (size_t k = 0; k < n; k++) {
        clause_t *grown = grow(p->clauses, p->nclauses, &p->clauses_cap, sizeof *p->clauses);
        if (!grown || p->nclauses >= PRICES_NO_CLAUSE)
            return fail(l, AH_E_TOOBIG, "too many clauses");
        p->clauses = grown;
        p->clauses[p->nclauses++] = (clause_t){.kind = CLAUSE_NEVER};
    }
    return AH_E_OK;
}

/* Read the clause j into clauses[slot] (already allocated). */
static ah_err_t clause_parse(loader_t *l, json_t *j, size_t slot, int depth)
{
    static const struct {
        const char *key;
        clause_kind_t kind;
    } kinds[] = {
        {"equals", CLAUSE_EQUALS},
        {"starts_with", CLAUSE_STARTS_WITH},
        {"ends_with", CLAUSE_ENDS_WITH},
        {"contains", CLAUSE_CONTAINS},
        {"regex", CLAUSE_REGEX},
        {"or", CLAUSE_OR},
        {"and", CLAUSE_AND},
    };
    if (depth > PRICES_MAX_CLAUSE_DEPTH)
        return fail(l, AH_E_PARSE, "%s: match clauses nested too deep", l->where);
    if (!json_is_object(j) || json_object_size(j) != 1)
        return fail(l, AH_E_PARSE, "%s: a match clause is an object with one key", l->where);
    void *it = json_object_iter(j);
    const char *key = json_object_iter_key(it);
    json_t *v = json_object_iter_value(it);
    size_t k = 0;
    while (k < sizeof kinds / sizeof kinds[0] && strcmp(kinds[k].key, key) != 0)
        k++;
    if (k == sizeof kinds / sizeof kinds[0])
        return fail(l, AH_E_PARSE, "%s: unknown match clause \"%s\"", l->where, key);
    clause_kind_t kind = kinds[k].kind;

    if (kind == CLAUSE_OR || kind == CLAUSE_AND) {
        size_t n = json_array_size(v), first;
        if (!json_is_array(v) || n == 0)
            return fail(l, AH_E_PARSE, "%s: \"%s\" needs a non-empty list", l->where, key);
        ah_err_t rc = clauses_add(l, n, &first);
        if (rc)
            return rc;
        l->p->clauses[slot] = (clause_t){.kind = kind, .first = (uint32_t)first, .n = (uint32_t)n};
        for (size_t c = 0; c < n && rc == AH_E_OK; c++)
            rc = clause_parse(l, json_array_get(v, c), first + c, depth + 1);
        return rc;
    }

    size_t len;
    const char *s = json_text(v, &len);
    if (!s)
        return fail(l, AH_E_PARSE, "%s: \"%s\" needs a string", l->where, key);
    if (kind == CLAUSE_REGEX)
        return regex_clause(l, s, slot);
    uint32_t off = 0;
    ah_err_t rc = pool_add(l, s, len, &off);
    if (rc == AH_E_OK)
        l->p->clauses[slot] = (clause_t){.kind = kind, .text = off, .len = (uint32_t)len};
    return rc;
}

static void byteset_add(byteset_t *b, unsigned char c)
{
    b->bits[c >> 6] |= (uint64_t)1 << (c & 63);
}

static bool byteset_has(const byteset_t *b, unsigned char c)
{
    return (b->bits[c >> 6] >> (c & 63)) & 1;
}

/* The bytes a name that clause idx takes can start with: a necessary
 * condition, so that a lookup can skip a model without walking its clause. */
static byteset_t clause_first_bytes(const ah_prices_t *p, uint32_t idx)
{
    const clause_t *c = &p->clauses[idx];
    byteset_t b = {{0, 0, 0, 0}};
    switch (c->kind) {
    case CLAUSE_EQUALS:
    case CLAUSE_STARTS_WITH:
    case CLAUSE_REGEX: /* text is its literal prefix, maybe empty */
        if (c->len > 0) {
            byteset_add(&b, (unsigned char)p->pool.data[c->text]);
            break;
        }
        /* fall through */
    case CLAUSE_ENDS_WITH:
    case CLAUSE_CONTAINS:
        b = (byteset_t){{UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX}};
        break;
    case CLAUSE_NEVER:
        break;
    case CLAUSE_OR:
    case CLAUSE_AND:
        for (uint32_t k = 0; k < c->n; k++) {
            byteset_t kid = clause_first_bytes(p, c->first + k);
            for (int w = 0; w < 4; w++) {
                if (c->kind == CLAUSE_OR)
                    b.bits[w] |= kid.bits[w];
                else
                    b.bits[w] = k == 0 ? kid.bits[w] : b.bits[w] & kid.bits[w];
            }
        }
        break;
    }
    return b;
}

/* Read an optional clause (j may be NULL) into a new root; *idx is its
 * index, or PRICES_NO_CLAUSE. */
static ah_err_t clause_root(loader_t *l, json_t *j, uint32_t *idx)
{
    size_t slot;
    *idx = PRICES_NO_CLAUSE;
    if (!j)
        return AH_E_OK;
    ah_err_t rc = clauses_add(l, 1, &slot);
    if (rc == AH_E_OK)
        rc = clause_parse(l, j, slot, 0);
    if (rc == AH_E_OK)
        *idx = (uint32_t)slot;
    return rc;
}

/* A non-negative finite number. */
static bool price_value(json_t *j, double *out)
{
    if (!json_is_number(j))
        return false;
    *out = json_number_value(j);
    return isfinite(*out) && *out >= 0;
}

/* A rate: absent (unknown), a number, or {base, tiers: [{start, price}]}. */
static ah_err_t rate_parse(loader_t *l, json_t *j, const char *field, ah_rate_t *r)
{
    *r = (ah_rate_t){.base = -1};
    if (!j)
        return AH_E_OK;
    if (price_value(j, &r->base))
        return AH_E_OK;
    json_t *tiers = json_object_get(j, "tiers");
    if (!price_value(json_object_get(j, "base"), &r->base) || !json_is_array(tiers))
        return fail(l, AH_E_PARSE, "%s: %s is not a price", l->where, field);
    if (json_array_size(tiers) > AH_PRICE_MAX_TIERS)
        return fail(l, AH_E_PARSE, "%s: %s has more than %d tiers", l->where, field,
                    AH_PRICE_MAX_TIERS);
    for (size_t t = 0; t < json_array_size(tiers); t++) {
        json_t *tier = json_array_get(tiers, t);
        json_t *start = json_object_get(tier, "start");
        ah_price_tier_t nt;
        if (!json_is_integer(start) || json_integer_value(start) < 0 ||
            !price_value(json_object_get(tier, "price"), &nt.mtok))
            return fail(l, AH_E_PARSE, "%s: %s has a bad tier", l->where, field);
        nt.start = json_integer_value(start);
        int at = r->ntiers++; /* insertion sort: there are at most AH_PRICE_MAX_TIERS */
        while (at > 0 && r->tiers[at - 1].start > nt.start) {
            r->tiers[at] = r->tiers[at - 1];
            at--;
        }
        r->tiers[at] = nt;
    }
    return AH_E_OK;
}

static ah_err_t model_price_parse(loader_t *l, json_t *j, ah_price_t *out)
{
    if (!json_is_object(j))
        return fail(l, AH_E_PARSE, "%s: prices must be an object", l->where);
    ah_err_t rc = rate_parse(l, json_object_get(j, "input_mtok"), "input_mtok", &out->input);
    if (rc == AH_E_OK)
        rc = rate_parse(l, json_object_get(j, "output_mtok"), "output_mtok", &out->output);
    if (rc == AH_E_OK)
        rc = rate_parse(l, json_object_get(j, "cache_read_mtok"), "cache_read_mtok",
                        &out->cache_read);
    if (rc == AH_E_OK)
        rc = rate_parse(l, json_object_get(j, "cache_write_mtok"), "cache_write_mtok",
                        &out->cache_write);
    return rc;
}

/* n decimal digits at s. */
static bool digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        v = v * 10 + (s[k] - '0');
    }
    *out = v;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DD" as epoch seconds at 00:00 UTC. */
static bool parse_date(const char *s, int64_t *out)
{
    int y, m, d;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) ||
        !digits(s + 5, 2, &m) || !digits(s + 8, 2, &d) || m < 1 || m > 12 || d < 1 || d > 31)
        return false;
    *out = days_from_civil(y, m, d) * PRICES_SECONDS_PER_DAY;
    return true;
}

/* "HH:MM[:SS][Z|+HH:MM|-HH:MM]" as seconds since 00:00 UTC. */
static bool parse_time_of_day(const char *s, int32_t *out)
{
    int h, m, sec = 0, oh = 0, om = 0, sign = 0;
    if (!digits(s, 2, &h) || s[2] != ':' || !digits(s + 3, 2, &m))
        return false;
    s += 5;
    if (s[0] == ':') {
        if (!digits(s + 1, 2, &sec))
            return false;
        s += 3;
    }
    if (s[0] == 'Z') {
        s++;
    } else if (s[0] == '+' || s[0] == '-') {
        sign = s[0] == '+' ? 1 : -1;
        if (!digits(s + 1, 2, &oh) || s[3] != ':' || !digits(s + 4, 2, &om))
            return false;
        s += 6;
    }
    if (s[0] != '\0' || h > 23 || m > 59 || sec > 59 || oh > 23 || om > 59)
        return false;
    int v = h * 3600 + m * 60 + sec - sign * (oh * 3600 + om * 60);
    *out =
        (int32_t)((v % PRICES_SECONDS_PER_DAY + PRICES_SECONDS_PER_DAY) % PRICES_SECONDS_PER_DAY);
    return true;
}

static ah_err_t constraint_parse(loader_t *l, json_t *j, price_entry_t *e)
{
    if (!j || json_is_null(j))
        return AH_E_OK;
    json_t *date = json_object_get(j, "start_date");
    if (date) {
        if (!json_is_string(date) || !parse_date(json_string_value(date), &e->start))
            return fail(l, AH_E_PARSE, "%s: bad start_date", l->where);
        return AH_E_OK;
    }
    json_t *from = json_object_get(j, "start_time"), *to = json_object_get(j, "end_time");
    if (!json_is_string(from) || !json_is_string(to) ||
        !parse_time_of_day(json_string_value(from), &e->tod_from) ||
        !parse_time_of_day(json_string_value(to), &e->tod_to))
        return fail(l, AH_E_PARSE, "%s: unknown price constraint", l->where);
    return AH_E_OK;
}

/* Append one price entry for the current model. */
static ah_err_t entry_add(loader_t *l, json_t *constraint, json_t *prices)
{
    ah_prices_t *p = l->p;
    price_entry_t *grown = grow(p->entries, p->nentries, &p->entries_cap, sizeof *p->entries);
    if (!grown)
        return fail(l, AH_E_TOOBIG, "too many prices");
    p->entries = grown;
    price_entry_t *e = &p->entries[p->nentries];
    *e = (price_entry_t){.start = PRICES_NO_DATE, .tod_from = -1, .tod_to = -1};
    ah_err_t rc = constraint_parse(l, constraint, e);
    if (rc == AH_E_OK)
        rc = model_price_parse(l, prices, &e->price);
    if (rc == AH_E_OK)
        p->nentries++;
    return rc;
}

static ah_err_t model_parse(loader_t *l, json_t *j, uint32_t provider, model_t *m)
{
    ah_prices_t *p = l->p;
    size_t len;
    const char *id = json_text(json_object_get(j, "id"), &len);
    if (!id || len == 0)
        return fail(l, AH_E_PARSE, "%s: a model without an id", l->where);
    l->where = id;
    ah_err_t rc = pool_add(l, id, len, &m->id);
    if (rc)
        return rc;
    m->provider = provider;
    json_t *match = json_object_get(j, "match");
    if (!match)
        return fail(l, AH_E_PARSE, "%s: no match clause", id);
    rc = clause_root(l, match, &m->match);
    if (rc)
        return rc;
    m->first = clause_first_bytes(p, m->match);
    json_t *cw = json_object_get(j, "context_window");
    if (cw && (!json_is_integer(cw) || json_integer_value(cw) < 0))
        return fail(l, AH_E_PARSE, "%s: bad context_window", id);
    m->context_window = cw ? json_integer_value(cw) : 0;
    json_t *mo = json_object_get(j, "max_output_tokens");
    if (mo && (!json_is_integer(mo) || json_integer_value(mo) < 0))
        return fail(l, AH_E_PARSE, "%s: bad max_output_tokens", id);
    m->max_output_tokens = mo ? json_integer_value(mo) : 0;

    json_t *prices = json_object_get(j, "prices");
    m->first_entry = (uint32_t)p->nentries;
    if (json_is_array(prices)) {
        if (json_array_size(prices) == 0)
            return fail(l, AH_E_PARSE, "%s: empty list of prices", id);
        for (size_t k = 0; k < json_array_size(prices) && rc == AH_E_OK; k++) {
            json_t *cp = json_array_get(prices, k);
            rc = entry_add(l, json_object_get(cp, "constraint"), json_object_get(cp, "prices"));
        }
    } else {
        rc = entry_add(l, NULL, prices);
    }
    m->nentries = (uint32_t)(p->nentries - m->first_entry);
    return rc;
}

static ah_err_t provider_parse(loader_t *l, json_t *j, uint32_t index)
{
    ah_prices_t *p = l->p;
    provider_t *pv = &p->providers[index];
    size_t len;
    const char *id = json_text(json_object_get(j, "id"), &len);
    json_t *models = json_object_get(j, "models");
    if (!id || len == 0)
        return fail(l, AH_E_PARSE, "provider %u has no id", index);
    if (!json_is_array(models))
        return fail(l, AH_E_PARSE, "%s: no list of models", id);
    l->where = id;
    ah_err_t rc = pool_add(l, id, len, &pv->id);
    pv->id_len = (uint32_t)len;
    if (rc == AH_E_OK)
        rc = clause_root(l, json_object_get(j, "provider_match"), &pv->provider_match);
    if (rc == AH_E_OK)
        rc = clause_root(l, json_object_get(j, "model_match"), &pv->model_match);
    pv->first_model = (uint32_t)p->nmodels;
    for (size_t k = 0; k < json_array_size(models) && rc == AH_E_OK; k++) {
        l->where = id;
        rc = model_parse(l, json_array_get(models, k), index, &p->models[p->nmodels]);
        if (rc == AH_E_OK)
            p->nmodels++;
    }
    pv->nmodels = (uint32_t)(p->nmodels - pv->first_model);
    return rc;
}

/* fallback_model_providers name providers that may come later in the file,
 * so they are resolved once every provider is known. */
static ah_err_t fallbacks_resolve(loader_t *l, json_t *providers)
{
    ah_prices_t *p = l->p;
    for (size_t k = 0; k < p->nproviders; k++) {
        provider_t *pv = &p->providers[k];
        json_t *list = json_object_get(json_array_get(providers, k), "fallback_model_providers");
        if (!list)
            continue;
        if (!json_is_array(list) || json_array_size(list) > PRICES_MAX_FALLBACKS)
            return fail(l, AH_E_PARSE, "%s: fallback_model_providers: a list of at most %d",
                        p->pool.data + pv->id, PRICES_MAX_FALLBACKS);
        for (size_t f = 0; f < json_array_size(list); f++) {
            const char *name = json_string_value(json_array_get(list, f));
            size_t t = 0;
            while (t < p->nproviders && (!name || strcmp(p->pool.data + p->providers[t].id, name)))
                t++;
            if (t == p->nproviders)
                return fail(l, AH_E_PARSE, "%s: unknown fallback provider %s",
                            p->pool.data + pv->id, name ? name : "(not a string)");
            pv->fallbacks[pv->nfallbacks++] = (uint32_t)t;
        }
    }
    return AH_E_OK;
}

static ah_err_t catalogue_parse(loader_t *l, json_t *root)
{
    ah_prices_t *p = l->p;
    json_t *providers = json_object_get(root, "providers");
    if (!json_is_array(providers))
        return fail(l, AH_E_PARSE, "no \"providers\" list");
    size_t np = json_array_size(providers), nm = 0;
    for (size_t k = 0; k < np; k++) {
        json_t *models = json_object_get(json_array_get(providers, k), "models");
        nm += json_array_size(models);
    }
    if (np >= UINT32_MAX || nm >= UINT32_MAX)
        return fail(l, AH_E_TOOBIG, "too many providers or models");
    p->providers = ah_calloc(np ? np : 1, sizeof *p->providers);
    p->models = ah_calloc(nm ? nm : 1, sizeof *p->models);
    ah_err_t rc = AH_E_OK;
    for (size_t k = 0; k < np && rc == AH_E_OK; k++) {
        rc = provider_parse(l, json_array_get(providers, k), (uint32_t)k);
        if (rc == AH_E_OK)
            p->nproviders++;
    }
    if (rc == AH_E_OK)
        rc = fallbacks_resolve(l, providers);
    p->stats.providers = (int)p->nproviders;
    p->stats.models = (int)p->nmodels;
    return rc;
}

/* The whole file, NUL-terminated, within PRICES_MAX_FILE_BYTES. */
static ah_err_t read_file(loader_t *l, const char *path, char **out, size_t *len)
{
    ah_err_t rc = AH_E_OK;
    char *text = NULL;
    struct stat st;
    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = fail(l, AH_E_IO, "cannot open: %s", strerror(errno));
        goto out;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = fail(l, AH_E_IO, "not a regular file");
        goto out;
    }
    if (st.st_size > (off_t)PRICES_MAX_FILE_BYTES) {
        rc = fail(l, AH_E_TOOBIG, "larger than %u bytes", PRICES_MAX_FILE_BYTES);
        goto out;
    }
    *len = (size_t)st.st_size;
    text = ah_malloc(*len + 1);
    if (fread(text, 1, *len, f) != *len) {
        rc = fail(l, AH_E_IO, "short read");
        goto out;
    }
    text[*len] = '\0';
out:
    if (f)
        fclose(f);
    if (rc) {
        ah_free(text);
        text = NULL;
    }
    *out = text;
    return rc;
}

ah_err_t ah_prices_load(const char *path, ah_prices_t **out)
{
    ah_err_t rc;
    loader_t l = {.where = "catalogue"};
    char *text = NULL;
    size_t len = 0;
    json_t *root = NULL;
    json_error_t jerr;
    if (!out || !path)
        return AH_E_INVAL;
    *out = NULL;

    rc = read_file(&l, path, &text, &len);
    if (rc)
        goto out;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = fail(&l, AH_E_PARSE, "line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    l.p = ah_calloc(1, sizeof *l.p);
    ah_buf_init(&l.p->pool, PRICES_MAX_FILE_BYTES);
    rc = catalogue_parse(&l, root);
out:
    if (rc) {
        ah_error("prices: %s: %s", path, l.why[0] ? l.why : ah_strerror(rc));
        ah_prices_free(l.p);
    } else {
        const ah_prices_stats_t *s = &l.p->stats;
        ah_info("prices: %s: %d providers, %d models, %d regexes (%d as prefixes, %d never "
                "match)",
                path, s->providers, s->models, s->regexes, s->regex_prefix, s->regex_dropped);
        *out = l.p;
    }
    json_decref(root);
    ah_free(text);
    return rc;
}

void ah_prices_free(ah_prices_t *p)
{
    if (!p)
        return;
    for (size_t k = 0; k < p->nregexes; k++) {
        regfree(p->regexes[k]);
        ah_free(p->regexes[k]);
    }
    ah_free(p->regexes);
    ah_free(p->clauses);
    ah_free(p->entries);
    ah_free(p->models);
    ah_free(p->providers);
    ah_buf_free(&p->pool);
    ah_free(p);
}

/* ---- lookup ----------------------------------------------------------- */

/* A model name as tried: s is NUL-terminated at s[len] (regexec needs it). */
typedef struct name {
    const char *s;
    size_t len;
} name_t;

static bool clause_match(const ah_prices_t *p, uint32_t idx, const name_t *n)
{
    const clause_t *c = &p->clauses[idx];
    const char *t = p->pool.data + c->text;
    switch (c->kind) {
    case CLAUSE_EQUALS:
        return n->len == c->len && memcmp(n->s, t, c->len) == 0;
    case CLAUSE_STARTS_WITH:
        return n->len >= c->len && memcmp(n->s, t, c->len) == 0;
    case CLAUSE_ENDS_WITH:
        return n->len >= c->len && memcmp(n->s + n->len - c->len, t, c->len) == 0;
    case CLAUSE_CONTAINS:
        return memmem(n->s, n->len, t, c->len) != NULL;
    case CLAUSE_REGEX:
        return n->len >= c->len && memcmp(n->s, t, c->len) == 0 &&
               regexec(p->regexes[c->first], n->s, 0, NULL, 0) == 0;
    case CLAUSE_NEVER:
        return false;
    case CLAUSE_OR:
        for (uint32_t k = 0; k < c->n; k++)
            if (clause_match(p, c->first + k, n))
                return true;
        return false;
    case CLAUSE_AND:
        for (uint32_t k = 0; k < c->n; k++)
            if (!clause_match(p, c->first + k, n))
                return false;
        return true;
    }
    return false;
}

/* The first model of provider pi whose clause takes n, or -1. */
static long provider_search(const ah_prices_t *p, uint32_t pi, const name_t *n)
{
    const provider_t *pv = &p->providers[pi];
    unsigned char c0 = (unsigned char)n->s[0];
    for (uint32_t k = 0; k < pv->nmodels; k++) {
        const model_t *m = &p->models[pv->first_model + k];
        if (byteset_has(&m->first, c0) && clause_match(p, m->match, n))
            return (long)(pv->first_model + k);
    }
    return -1;
}

/* The provider a name means: its id, else the first provider_match that
 * takes it, compared trimmed and lowercased as genai-prices does; or -1. */
static long provider_resolve(const ah_prices_t *p, const char *s, size_t len)
{
    char buf[PRICES_MAX_PROVIDER_NAME];
    while (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
        s++;
        len--;
    }
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len >= sizeof buf)
        return -1;
    for (size_t k = 0; k < len; k++)
        buf[k] = lower_ascii(s[k]);
    buf[len] = '\0';
    name_t n = {buf, len};
    for (size_t k = 0; k < p->nproviders; k++)
        if (p->providers[k].id_len == len &&
            memcmp(p->pool.data + p->providers[k].id, buf, len) == 0)
            return (long)k;
    for (size_t k = 0; k < p->nproviders; k++)
        if (p->providers[k].provider_match != PRICES_NO_CLAUSE &&
            clause_match(p, p->providers[k].provider_match, &n))
            return (long)k;
    return -1;
}

/* The providers a lookup tries first, without repeats. */
typedef struct preferred {
    uint32_t ids[PRICES_MAX_PREFERRED];
    int n;
} preferred_t;

static bool preferred_has(const preferred_t *pr, uint32_t pi)
{
    for (int k = 0; k < pr->n; k++)
        if (pr->ids[k] == pi)
            return true;
    return false;
}

static void preferred_add(preferred_t *pr, const ah_prices_t *p, long pi)
{
    if (pi < 0)
        return;
    const provider_t *pv = &p->providers[pi];
    if (!preferred_has(pr, (uint32_t)pi) && pr->n < PRICES_MAX_PREFERRED)
        pr->ids[pr->n++] = (uint32_t)pi;
    for (int f = 0; f < pv->nfallbacks; f++)
        if (!preferred_has(pr, pv->fallbacks[f]) && pr->n < PRICES_MAX_PREFERRED)
            pr->ids[pr->n++] = pv->fallbacks[f];
}

/* The names to try, in order: as given, lowercased (when that differs), then
 * the same for what follows each of the first "segment/" prefixes. lower
 * holds len + 1 bytes. */
static size_t name_variants(const char *model, size_t len, char *lower, name_t *v)
{
    size_t n = 0, off = 0;
    bool folded = false;
    for (size_t k = 0; k < len; k++) {
        lower[k] = lower_ascii(model[k]);
        folded |= lower[k] != model[k];
    }
    lower[len] = '\0';
    for (int strip = 0; strip <= PRICES_MAX_STRIPS; strip++) {
        v[n++] = (name_t){model + off, len - off};
        if (folded && memcmp(model + off, lower + off, len - off) != 0)
            v[n++] = (name_t){lower + off, len - off};
        const char *slash = memchr(model + off, '/', len - off);
        if (!slash || (size_t)(slash - model) + 1 >= len)
            break;
        off = (size_t)(slash - model) + 1;
    }
    return n;
}

/* The model a name means, or -1; the search order is documented in prices.h. */
static long model_lookup(const ah_prices_t *p, const char *provider, const char *model, size_t len)
{
    char lower[AH_MAX_MODEL_NAME];
    name_t names[PRICES_MAX_VARIANTS];
    size_t nn = name_variants(model, len, lower, names);
    preferred_t pref = {.n = 0};
    long mi = -1;

    if (provider)
        preferred_add(&pref, p, provider_resolve(p, provider, strlen(provider)));
    const char *slash = memchr(model, '/', len);
    if (slash)
        preferred_add(&pref, p, provider_resolve(p, model, (size_t)(slash - model)));

    for (int k = 0; k < pref.n && mi < 0; k++)
        for (size_t v = 0; v < nn && mi < 0; v++)
            mi = provider_search(p, pref.ids[k], &names[v]);
    for (size_t v = 0; v < nn && mi < 0; v++)
        for (uint32_t k = 0; k < p->nproviders && mi < 0; k++)
            if (p->providers[k].model_match != PRICES_NO_CLAUSE && !preferred_has(&pref, k) &&
                clause_match(p, p->providers[k].model_match, &names[v]))
                mi = provider_search(p, k, &names[v]);
    for (size_t v = 0; v < nn && mi < 0; v++)
        for (uint32_t k = 0; k < p->nproviders && mi < 0; k++)
            if (!preferred_has(&pref, k))
                mi = provider_search(p, k, &names[v]);
    return mi;
}

static bool entry_active(const price_entry_t *e, time_t when)
{
    if (e->start != PRICES_NO_DATE && (int64_t)when < e->start)
        return false;
    if (e->tod_from >= 0) {
        int64_t t = ((int64_t)when % PRICES_SECONDS_PER_DAY + PRICES_SECONDS_PER_DAY) %
                    PRICES_SECONDS_PER_DAY;
        if (e->tod_from <= e->tod_to)
            return t >= e->tod_from && t < e->tod_to;
        return t >= e->tod_from || t < e->tod_to;
    }
    return true;
}

/* The price of model mi at `when` and, when match is not NULL, its ids. */
static void model_price(const ah_prices_t *p, size_t mi, time_t when, ah_price_t *out,
                        ah_price_match_t *match)
{
    /* The last active price wins; when none is active, the first. */
    const model_t *m = &p->models[mi];
    const price_entry_t *e = &p->entries[m->first_entry];
    for (uint32_t k = m->nentries; k > 0; k--) {
        if (entry_active(&p->entries[m->first_entry + k - 1], when)) {
            e = &p->entries[m->first_entry + k - 1];
            break;
        }
    }
    *out = e->price;
    out->context_window = m->context_window;
    out->max_output_tokens = m->max_output_tokens;
    if (match) {
        match->provider = p->pool.data + p->providers[m->provider].id;
        match->model = p->pool.data + m->id;
    }
}

ah_err_t ah_prices_find_match(const ah_prices_t *p, const char *provider, const char *model,
                              time_t when, ah_price_t *out, ah_price_match_t *match)
{
    if (!p || !model || !out)
        return AH_E_INVAL;
    size_t len = strnlen(model, AH_MAX_MODEL_NAME);
    if (len == 0 || len == AH_MAX_MODEL_NAME)
        return AH_E_NOTFOUND;
    long mi = model_lookup(p, provider, model, len);
    if (mi < 0)
        return AH_E_NOTFOUND;
    model_price(p, (size_t)mi, when, out, match);
    return AH_E_OK;
}

ah_err_t ah_prices_entry(const ah_prices_t *p, int i, time_t when, ah_price_t *out,
                         ah_price_match_t *match)
{
    if (!p || !out)
        return AH_E_INVAL;
    if (i < 0 || (size_t)i >= p->nmodels)
        return AH_E_NOTFOUND;
    model_price(p, (size_t)i, when, out, match);
    return AH_E_OK;
}

ah_err_t ah_prices_find(const ah_prices_t *p, const char *provider, const char *model, time_t when,
                        ah_price_t *out)
{
    return ah_prices_find_match(p, provider, model, when, out, NULL);
}

/* ---- cost ------------------------------------------------------------- */

/* The rate for a call with input_tokens of prompt, or < 0 when unknown: the
 * tier with the highest start below input_tokens, else the base. */
static double rate_at(const ah_rate_t *r, int64_t input_tokens)
{
    double mtok = r->base;
    int64_t best = -1;
    int n = r->ntiers < 0 ? 0 : r->ntiers > AH_PRICE_MAX_TIERS ? AH_PRICE_MAX_TIERS : r->ntiers;
    if (r->base < 0)
        return r->base;
    for (int k = 0; k < n; k++) {
        if (input_tokens > r->tiers[k].start && r->tiers[k].start >= best) {
            best = r->tiers[k].start;
            mtok = r->tiers[k].mtok;
        }
    }
    return mtok;
}

static int64_t at_least_zero(int64_t v)
{
    return v < 0 ? 0 : v;
}

double ah_price_cost(const ah_price_t *price, const ah_usage_t *u)
{
    if (!price || !u)
        return 0;
    int64_t input = at_least_zero(u->input_tokens);
    int64_t cache_read = at_least_zero(u->cache_read_tokens);
    int64_t cache_write = at_least_zero(u->cache_write_tokens);
    int64_t output = at_least_zero(u->output_tokens);
    /* Each step stays within int64: both operands are >= 0. */
    int64_t uncached = at_least_zero(at_least_zero(input - cache_read) - cache_write);

    double in = rate_at(&price->input, input);
    double out = rate_at(&price->output, input);
    double cr = rate_at(&price->cache_read, input);
    double cw = rate_at(&price->cache_write, input);
    if (in < 0)
        in = 0;
    if (out < 0)
        out = 0;
    if (cr < 0)
        cr = in;
    if (cw < 0)
        cw = in;
    return ((double)uncached * in + (double)cache_read * cr + (double)cache_write * cw +
            (double)output * out) /
           1e6;
}

int ah_prices_count(const ah_prices_t *p)
{
    return p ? (int)p->nmodels : 0;
}

void ah_prices_stats(const ah_prices_t *p, ah_prices_stats_t *out)
{
    if (!out)
        return;
    *out = p ? p->stats : (ah_prices_stats_t){0};
}

ah_prices_t *ah_prices_open_default(const char *configured, const char **used)
{
    static _Thread_local char path[4200];
    char exe[4096];
    const char *env = getenv("AHORRO_PRICES");
    const char *cands[4];
    int n = 0;
    if (configured)
        cands[n++] = configured;
    if (env && *env)
        cands[n++] = env;
    if (ah_exe_dir(exe, sizeof exe) == 0) {
        snprintf(path, sizeof path, "%s/../data/prices.json", exe);
        cands[n++] = path;
    }
    cands[n++] = "data/prices.json";
    for (int i = 0; i < n; i++) {
        ah_prices_t *p = NULL;
        if (access(cands[i], R_OK) == 0 && ah_prices_load(cands[i], &p) == AH_E_OK) {
            if (used)
                *used = cands[i];
            return p;
        }
    }
    return NULL;
}
