/* complexity.c - the complexity and criticality scorer (see complexity.h).
 *
 * One pass over the bytes of the user text counts characters, words, lines,
 * list items, code and math symbols, and looks each lowercase word up in one
 * small hash table of cue words (built once, read-only afterwards). Counts
 * turn into signals through sat(x, half) = x / (x + half), which is 0 at 0,
 * 1/2 at `half` and never reaches 1, so that no single signal can decide
 * alone; each signal has a weight, the raw score is their sum, and the score
 * is 1 - exp(-raw). The weights are set by hand from what a request needs, not
 * fitted: fitting them on MMLU would make the benchmark measure itself (see
 * docs/routing-quality.md for what they are worth there). */
#include "route/complexity.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

const char *const ah_cx_signal_names[AH_CX_NSIGNALS] = {"length",      "structure",    "code",
                                                        "math",        "multi-step",   "reasoning",
                                                        "constraints", "conversation", "tools"};

enum {
    SIG_LENGTH,
    SIG_STRUCTURE,
    SIG_CODE,
    SIG_MATH,
    SIG_STEPS,
    SIG_REASONING,
    SIG_CONSTRAINTS,
    SIG_CONVERSATION,
    SIG_TOOLS
};

/* Weights of the signals (the most each can add to the raw score) and the
 * count at which each is half-way. */
static const double weight[AH_CX_NSIGNALS] = {0.8, 0.4, 1.2, 1.0, 0.9, 0.8, 0.4, 0.5, 0.7};
#define HALF_WORDS 120.0   /* words beyond the first CX_FREE_WORDS */
#define CX_FREE_WORDS 8.0  /* a greeting or a one-line question adds nothing */
#define HALF_STRUCTURE 5.0 /* list items, headings, table rows */
#define HALF_CODE 5.0      /* code words + code symbols / 3 + 4 per fence */
#define HALF_MATH 4.0      /* math words + math symbols / 2 + numbers / 4 */
#define HALF_STEPS 2.5     /* step cues + numbered items beyond the first */
#define HALF_REASONING 1.5 /* reasoning cue words */
#define HALF_CONSTRAINTS 3.0
#define HALF_TURNS 6.0 /* messages beyond the first */
#define HALF_TOOLS 3.0 /* tools offered + tool calls and results */
#define CODE_FENCE_WEIGHT 4.0
/* Criticality: a critical tag value, an explicit criticality tag, and the
 * half-way count of text cues. */
#define CRIT_TAG 0.9
#define CRIT_EXPLICIT_HIGH 1.0
#define CRIT_EXPLICIT_MEDIUM 0.5
#define HALF_CRIT_CUES 2.0
#define CRIT_TEXT_MAX 0.8
/* Longest word looked up; longer ones cannot be cues. */
#define CX_WORD_MAX 24
/* Tag values examined, and bytes of each. */
#define CX_MAX_TAGS 32
#define CX_TAG_VALUE_MAX 256

enum {
    CUE_CODE = 1 << 0,
    CUE_MATH = 1 << 1,
    CUE_STEP = 1 << 2,
    CUE_REASON = 1 << 3,
    CUE_CONSTRAINT = 1 << 4,
    CUE_LEGAL = 1 << 5,
    CUE_COMPLAINT = 1 << 6,
    CUE_COMPLIANCE = 1 << 7,
    CUE_MEDICAL = 1 << 8,
    CUE_FINANCE = 1 << 9,
    CUE_SECURITY = 1 << 10,
};
#define CUE_CRITICAL                                                                               \
    (CUE_LEGAL | CUE_COMPLAINT | CUE_COMPLIANCE | CUE_MEDICAL | CUE_FINANCE | CUE_SECURITY)

typedef struct cue {
    const char *word;
    unsigned kind;
} cue_t;

static const cue_t cues[] = {
    /* code */
    {"code", CUE_CODE},
    {"function", CUE_CODE},
    {"def", CUE_CODE},
    {"return", CUE_CODE},
    {"class", CUE_CODE},
    {"struct", CUE_CODE},
    {"void", CUE_CODE},
    {"const", CUE_CODE},
    {"import", CUE_CODE},
    {"include", CUE_CODE},
    {"lambda", CUE_CODE},
    {"async", CUE_CODE},
    {"await", CUE_CODE},
    {"printf", CUE_CODE},
    {"println", CUE_CODE},
    {"elif", CUE_CODE},
    {"null", CUE_CODE},
    {"nullptr", CUE_CODE},
    {"typedef", CUE_CODE},
    {"malloc", CUE_CODE},
    {"regex", CUE_CODE},
    {"sql", CUE_CODE},
    {"json", CUE_CODE},
    {"api", CUE_CODE},
    {"python", CUE_CODE},
    {"javascript", CUE_CODE},
    {"typescript", CUE_CODE},
    {"java", CUE_CODE},
    {"rust", CUE_CODE},
    {"golang", CUE_CODE},
    {"bash", CUE_CODE},
    {"compile", CUE_CODE},
    {"compiler", CUE_CODE},
    {"bug", CUE_CODE},
    {"debug", CUE_CODE},
    {"refactor", CUE_CODE},
    {"segfault", CUE_CODE},
    {"exception", CUE_CODE},
    {"stacktrace", CUE_CODE},
    {"script", CUE_CODE},
    {"algorithm", CUE_CODE},
    {"implement", CUE_CODE},
    {"implementation", CUE_CODE},
    {"variable", CUE_CODE},
    {"array", CUE_CODE},
    {"pointer", CUE_CODE},
    {"recursion", CUE_CODE},
    {"recursive", CUE_CODE},
    {"database", CUE_CODE},
    {"query", CUE_CODE},
    /* math */
    {"prove", CUE_MATH | CUE_REASON},
    {"proof", CUE_MATH | CUE_REASON},
    {"theorem", CUE_MATH},
    {"lemma", CUE_MATH},
    {"integral", CUE_MATH},
    {"derivative", CUE_MATH},
    {"equation", CUE_MATH},
    {"equations", CUE_MATH},
    {"solve", CUE_MATH},
    {"probability", CUE_MATH},
    {"matrix", CUE_MATH},
    {"eigenvalue", CUE_MATH},
    {"eigenvalues", CUE_MATH},
    {"polynomial", CUE_MATH},
    {"calculate", CUE_MATH},
    {"compute", CUE_MATH},
    {"modulo", CUE_MATH},
    {"variance", CUE_MATH},
    {"logarithm", CUE_MATH},
    {"sqrt", CUE_MATH},
    {"sin", CUE_MATH},
    {"cos", CUE_MATH},
    {"log", CUE_MATH},
    {"differential", CUE_MATH},
    {"vector", CUE_MATH},
    {"geometry", CUE_MATH},
    {"algebra", CUE_MATH},
    {"calculus", CUE_MATH},
    {"statistics", CUE_MATH},
    {"optimize", CUE_MATH},
    {"optimization", CUE_MATH},
    {"inequality", CUE_MATH},
    {"frac", CUE_MATH},
    {"divisible", CUE_MATH},
    {"prime", CUE_MATH},
    {"integer", CUE_MATH},
    {"integers", CUE_MATH},
    /* multi-step */
    {"step", CUE_STEP},
    {"steps", CUE_STEP},
    {"first", CUE_STEP},
    {"then", CUE_STEP},
    {"next", CUE_STEP},
    {"finally", CUE_STEP},
    {"afterwards", CUE_STEP},
    {"secondly", CUE_STEP},
    {"lastly", CUE_STEP},
    {"plan", CUE_STEP},
    {"procedure", CUE_STEP},
    /* reasoning */
    {"why", CUE_REASON},
    {"explain", CUE_REASON},
    {"analyze", CUE_REASON},
    {"analyse", CUE_REASON},
    {"analysis", CUE_REASON},
    {"compare", CUE_REASON},
    {"contrast", CUE_REASON},
    {"evaluate", CUE_REASON},
    {"justify", CUE_REASON},
    {"reasoning", CUE_REASON},
    {"tradeoff", CUE_REASON},
    {"tradeoffs", CUE_REASON},
    {"implications", CUE_REASON},
    {"assess", CUE_REASON},
    {"critique", CUE_REASON},
    {"derive", CUE_REASON | CUE_MATH},
    {"infer", CUE_REASON},
    {"deduce", CUE_REASON},
    {"argue", CUE_REASON},
    {"consequences", CUE_REASON},
    {"pros", CUE_REASON},
    {"cons", CUE_REASON},
    {"design", CUE_REASON},
    {"architecture", CUE_REASON},
    {"strategy", CUE_REASON},
    {"recommend", CUE_REASON},
    {"hypothesis", CUE_REASON},
    {"therefore", CUE_REASON},
    {"because", CUE_REASON},
    /* constraints */
    {"must", CUE_CONSTRAINT},
    {"ensure", CUE_CONSTRAINT},
    {"exactly", CUE_CONSTRAINT},
    {"without", CUE_CONSTRAINT},
    {"constraint", CUE_CONSTRAINT},
    {"constraints", CUE_CONSTRAINT},
    {"requirements", CUE_CONSTRAINT},
    {"format", CUE_CONSTRAINT},
    /* criticality */
    {"legal", CUE_LEGAL},
    {"lawsuit", CUE_LEGAL},
    {"sue", CUE_LEGAL},
    {"attorney", CUE_LEGAL},
    {"lawyer", CUE_LEGAL},
    {"court", CUE_LEGAL},
    {"liability", CUE_LEGAL},
    {"litigation", CUE_LEGAL},
    {"contract", CUE_LEGAL},
    {"law", CUE_LEGAL},
    {"complaint", CUE_COMPLAINT},
    {"complaints", CUE_COMPLAINT},
    {"escalation", CUE_COMPLAINT},
    {"escalate", CUE_COMPLAINT},
    {"refund", CUE_COMPLAINT},
    {"chargeback", CUE_COMPLAINT},
    {"unacceptable", CUE_COMPLAINT},
    {"compliance", CUE_COMPLIANCE},
    {"regulatory", CUE_COMPLIANCE},
    {"regulation", CUE_COMPLIANCE},
    {"regulator", CUE_COMPLIANCE},
    {"gdpr", CUE_COMPLIANCE},
    {"hipaa", CUE_COMPLIANCE},
    {"audit", CUE_COMPLIANCE},
    {"medical", CUE_MEDICAL},
    {"diagnosis", CUE_MEDICAL},
    {"dosage", CUE_MEDICAL},
    {"medication", CUE_MEDICAL},
    {"symptoms", CUE_MEDICAL},
    {"clinical", CUE_MEDICAL},
    {"patient", CUE_MEDICAL},
    {"fraud", CUE_FINANCE},
    {"finance", CUE_FINANCE},
    {"financial", CUE_FINANCE},
    {"tax", CUE_FINANCE},
    {"breach", CUE_SECURITY},
    {"security", CUE_SECURITY},
    {"vulnerability", CUE_SECURITY},
    {"privacy", CUE_SECURITY},
};
#define NCUES (sizeof cues / sizeof cues[0])

/* Open-addressing table of the cue words, built once. */
#define CUE_SLOTS 512
static int16_t cue_slot[CUE_SLOTS];
static pthread_once_t cue_once = PTHREAD_ONCE_INIT;

static uint32_t hash_word(const char *w, size_t n)
{
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)w[i];
        h *= 0x01000193u;
    }
    return h;
}

static void build_cues(void)
{
    for (size_t i = 0; i < CUE_SLOTS; i++)
        cue_slot[i] = -1;
    for (size_t i = 0; i < NCUES; i++) {
        uint32_t s = hash_word(cues[i].word, strlen(cues[i].word)) & (CUE_SLOTS - 1);
        while (cue_slot[s] >= 0)
            s = (s + 1) & (CUE_SLOTS - 1);
        cue_slot[s] = (int16_t)i;
    }
}

/* Cue kinds of a lowercase word; 0 when it is none. */
static unsigned cue_kind(const char *w, size_t n)
{
    if (n == 0 || n > CX_WORD_MAX)
        return 0;
    pthread_once(&cue_once, build_cues);
    uint32_t s = hash_word(w, n) & (CUE_SLOTS - 1);
    while (cue_slot[s] >= 0) {
        const cue_t *c = &cues[cue_slot[s]];
        if (strlen(c->word) == n && memcmp(c->word, w, n) == 0)
            return c->kind;
        s = (s + 1) & (CUE_SLOTS - 1);
    }
    return 0;
}

static const char *crit_name(unsigned kind)
{
    if (kind & CUE_LEGAL)
        return "legal";
    if (kind & CUE_COMPLAINT)
        return "complaint";
    if (kind & CUE_COMPLIANCE)
        return "compliance";
    if (kind & CUE_MEDICAL)
        return "medical";
    if (kind & CUE_FINANCE)
        return "finance";
    if (kind & CUE_SECURITY)
        return "security";
    return NULL;
}

/* Counts gathered over one or several texts. */
typedef struct scan {
    double chars, words, items, numbered, headings, questions;
    double code_words, code_syms, fences, inline_ticks;
    double math_words, math_syms, numbers;
    double steps, step_by_step, reasons, constraints;
    double crit_cues;
    unsigned crit_kinds;
    size_t budget; /* bytes still to scan */
} scan_t;

static int is_word_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80 || c == '_';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* What the start of a line is: list item, numbered item, heading, table. */
static void line_start(scan_t *s, const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i >= n)
        return;
    if ((p[i] == '-' || p[i] == '*') && i + 1 < n && p[i + 1] == ' ') {
        s->items++;
        return;
    }
    if (p[i] == '#' || p[i] == '|') {
        s->headings++;
        return;
    }
    size_t j = i;
    while (j < n && j - i < 3 && is_digit(p[j]))
        j++;
    if (j > i && j + 1 < n && (p[j] == '.' || p[j] == ')') && p[j + 1] == ' ') {
        s->numbered++;
        return;
    }
    /* "A. ", "b) ": lettered options or sub-steps. */
    if (i + 2 < n && ((p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= 'a' && p[i] <= 'z')) &&
        (p[i + 1] == '.' || p[i + 1] == ')') && p[i + 2] == ' ')
        s->items++;
}

static void word(scan_t *s, const unsigned char *w, size_t n, char prev[2][CX_WORD_MAX + 1])
{
    char low[CX_WORD_MAX + 1];
    s->words++;
    if (n > CX_WORD_MAX) {
        prev[0][0] = prev[1][0] = '\0';
        return;
    }
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(w[i] >= 'A' && w[i] <= 'Z' ? w[i] + 32 : w[i]);
    low[n] = '\0';
    unsigned k = cue_kind(low, n);
    if (k & CUE_CODE)
        s->code_words++;
    if (k & CUE_MATH)
        s->math_words++;
    if (k & CUE_STEP)
        s->steps++;
    if (k & CUE_REASON)
        s->reasons++;
    if (k & CUE_CONSTRAINT)
        s->constraints++;
    if (k & CUE_CRITICAL) {
        s->crit_cues++;
        s->crit_kinds |= k & CUE_CRITICAL;
    }
    /* "step by step", "think step by step" */
    if (strcmp(low, "step") == 0 && strcmp(prev[1], "by") == 0 && strcmp(prev[0], "step") == 0)
        s->step_by_step++;
    memcpy(prev[0], prev[1], sizeof prev[0]);
    memcpy(prev[1], low, n + 1);
}

static int is_op(unsigned char c)
{
    return c == '=' || c == '+' || c == '-' || c == '*' || c == '/' || c == '^' || c == '<' ||
           c == '>';
}

static void scan_text(scan_t *s, const char *text, size_t len)
{
    if (!text || len == 0 || s->budget == 0)
        return;
    if (len > s->budget)
        len = s->budget;
    s->budget -= len;
    const unsigned char *p = (const unsigned char *)text;
    char prev[2][CX_WORD_MAX + 1] = {"", ""};
    s->chars += (double)len;
    line_start(s, p, len);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (is_word_byte(c)) {
            size_t j = i;
            while (j < len && (is_word_byte(p[j]) || is_digit(p[j])))
                j++;
            word(s, p + i, j - i, prev);
            i = j;
            continue;
        }
        if (is_digit(c)) {
            size_t j = i;
            while (j < len && (is_digit(p[j]) || p[j] == '.' || p[j] == ','))
                j++;
            s->numbers++;
            s->words++;
            i = j;
            continue;
        }
        switch (c) {
        case '\n':
            if (i + 1 < len)
                line_start(s, p + i + 1, len - i - 1);
            break;
        case '?':
            s->questions++;
            break;
        case '{':
        case '}':
        case ';':
            s->code_syms++;
            break;
        case '`':
            if (i + 2 < len && p[i + 1] == '`' && p[i + 2] == '`') {
                s->fences++;
                i += 3;
                continue;
            }
            s->inline_ticks++;
            break;
        case '\\':
            if (i + 1 < len && p[i + 1] >= 'a' && p[i + 1] <= 'z')
                s->math_syms++; /* LaTeX command */
            break;
        case '$':
            s->math_syms += 0.5;
            break;
        default:
            break;
        }
        if (is_op(c)) {
            /* Two-character operators are code: == != -> => && || :: ++ */
            unsigned char d = i + 1 < len ? p[i + 1] : 0;
            if ((c == '=' && d == '=') || (c == '-' && d == '>') || (c == '=' && d == '>') ||
                (c == '+' && d == '+')) {
                s->code_syms++;
                i += 2;
                continue;
            }
            /* An operator between operands, one of them a digit or '^' anywhere. */
            size_t a = i, b = i + 1;
            while (a > 0 && p[a - 1] == ' ')
                a--;
            while (b < len && p[b] == ' ')
                b++;
            unsigned char l = a > 0 ? p[a - 1] : 0, r = b < len ? p[b] : 0;
            int lo = is_digit(l) || is_word_byte(l) || l == ')';
            int ro = is_digit(r) || is_word_byte(r) || r == '(';
            if (c == '^' || (lo && ro && (is_digit(l) || is_digit(r))))
                s->math_syms++;
        } else if ((c == '!' || c == '&' || c == '|' || c == ':') && i + 1 < len &&
                   p[i + 1] == (c == '!' ? '=' : c)) {
            s->code_syms++;
            i += 2;
            continue;
        }
        i++;
    }
}

static double sat(double x, double half)
{
    return x <= 0 ? 0 : x / (x + half);
}

/* Signals, score and top names from the counts and the request's shape. */
static void finish(const scan_t *s, double turns, double tools, ah_cx_t *out)
{
    double *sig = out->signal;
    double words = s->words > CX_FREE_WORDS ? s->words - CX_FREE_WORDS : 0;
    double numbered = s->numbered > 1 ? s->numbered - 1 : 0;
    sig[SIG_LENGTH] = sat(words, HALF_WORDS);
    sig[SIG_STRUCTURE] = sat(s->items + s->headings + numbered, HALF_STRUCTURE);
    sig[SIG_CODE] =
        sat(s->code_words + s->code_syms / 3 + s->inline_ticks / 4 + CODE_FENCE_WEIGHT * s->fences,
            HALF_CODE);
    sig[SIG_MATH] = sat(s->math_words + s->math_syms / 2 + s->numbers / 4, HALF_MATH);
    sig[SIG_STEPS] = sat(s->steps + 2 * s->step_by_step + numbered, HALF_STEPS);
    sig[SIG_REASONING] = sat(s->reasons + s->questions / 2, HALF_REASONING);
    sig[SIG_CONSTRAINTS] = sat(s->constraints, HALF_CONSTRAINTS);
    sig[SIG_CONVERSATION] = sat(turns > 1 ? turns - 1 : 0, HALF_TURNS);
    sig[SIG_TOOLS] = sat(tools, HALF_TOOLS);
    double raw = 0;
    for (int i = 0; i < AH_CX_NSIGNALS; i++) {
        sig[i] *= weight[i];
        raw += sig[i];
    }
    out->score = 1 - exp(-raw);
    out->chars = s->chars;
    /* The AH_CX_TOP largest additions, strongest first. */
    out->ntop = 0;
    int used[AH_CX_NSIGNALS] = {0};
    while (out->ntop < AH_CX_TOP) {
        int best = -1;
        for (int i = 0; i < AH_CX_NSIGNALS; i++)
            if (!used[i] && sig[i] >= AH_CX_TOP_MIN && (best < 0 || sig[i] > sig[best]))
                best = i;
        if (best < 0)
            break;
        used[best] = 1;
        out->top[out->ntop++] = ah_cx_signal_names[best];
    }
    for (int i = out->ntop; i < AH_CX_TOP; i++)
        out->top[i] = NULL;
    double crit = CRIT_TEXT_MAX * sat(s->crit_cues, HALF_CRIT_CUES);
    if (crit > out->criticality) {
        out->criticality = crit;
        out->critical_cue = crit_name(s->crit_kinds);
    }
}

static void scan_init(scan_t *s)
{
    memset(s, 0, sizeof *s);
    s->budget = AH_CX_MAX_SCAN;
}

void ah_cx_score_text(const char *text, size_t len, ah_cx_t *out)
{
    scan_t s;
    scan_init(&s);
    memset(out, 0, sizeof *out);
    scan_text(&s, text, len);
    finish(&s, 1, 0, out);
}

/* A tag value's words: a critical word makes the request critical; the tags
 * "criticality" / "priority" say it outright (high, critical, urgent; medium). */
static void score_tags(const json_t *tags, ah_cx_t *out)
{
    const char *key;
    json_t *v;
    int seen = 0;
    if (!json_is_object(tags))
        return;
    json_object_foreach((json_t *)tags, key, v)
    {
        if (++seen > CX_MAX_TAGS)
            break;
        const char *val = json_string_value(v);
        if (!val)
            continue;
        size_t n = strnlen(val, CX_TAG_VALUE_MAX);
        if (strcmp(key, "criticality") == 0 || strcmp(key, "priority") == 0) {
            double c = 0;
            if (strcasecmp(val, "high") == 0 || strcasecmp(val, "critical") == 0 ||
                strcasecmp(val, "urgent") == 0)
                c = CRIT_EXPLICIT_HIGH;
            else if (strcasecmp(val, "medium") == 0)
                c = CRIT_EXPLICIT_MEDIUM;
            if (c > out->criticality) {
                out->criticality = c;
                out->critical_cue = "tag:criticality";
            }
            continue;
        }
        for (size_t i = 0; i < n;) {
            if (!is_word_byte((unsigned char)val[i])) {
                i++;
                continue;
            }
            size_t j = i;
            char low[CX_WORD_MAX + 1];
            while (j < n && is_word_byte((unsigned char)val[j]))
                j++;
            if (j - i <= CX_WORD_MAX) {
                for (size_t k = i; k < j; k++)
                    low[k - i] = (char)(val[k] >= 'A' && val[k] <= 'Z' ? val[k] + 32 : val[k]);
                unsigned kind = cue_kind(low, j - i) & CUE_CRITICAL;
                if (kind && CRIT_TAG > out->criticality) {
                    out->criticality = CRIT_TAG;
                    out->critical_cue = crit_name(kind);
                }
            }
            i = j;
        }
    }
}

/* Text of a message's content: a string, or the text of its text parts. */
static void scan_content(scan_t *s, const json_t *content)
{
    if (json_is_string(content)) {
        scan_text(s, json_string_value(content), json_string_length(content));
        return;
    }
    if (!json_is_array(content))
        return;
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (json_is_string(t))
            scan_text(s, json_string_value(t), json_string_length(t));
    }
}

void ah_cx_score(const json_t *body, const json_t *tags, ah_cx_t *out)
{
    scan_t s;
    scan_init(&s);
    memset(out, 0, sizeof *out);
    score_tags(tags, out);
    json_t *msgs = json_object_get(body, "messages");
    double turns = 0, tools = 0;
    json_t *tl = json_object_get(body, "tools");
    if (json_is_array(tl))
        tools += (double)json_array_size(tl);
    tl = json_object_get(body, "functions"); /* the older OpenAI name */
    if (json_is_array(tl))
        tools += (double)json_array_size(tl);
    if (json_is_array(msgs)) {
        /* Newest first, so that the scan budget goes to the latest turns. */
        for (size_t i = json_array_size(msgs); i-- > 0;) {
            json_t *m = json_array_get(msgs, i);
            const char *role = json_string_value(json_object_get(m, "role"));
            if (!role)
                continue;
            if (strcmp(role, "user") == 0) {
                turns++;
                scan_content(&s, json_object_get(m, "content"));
            } else if (strcmp(role, "assistant") == 0) {
                turns++;
                json_t *calls = json_object_get(m, "tool_calls");
                if (json_is_array(calls))
                    tools += (double)json_array_size(calls);
            } else if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0) {
                tools++;
            }
        }
    }
    finish(&s, turns, tools, out);
}
