/* shape_bench.c - what each shaping strategy (src/shape/) saves, and what it
 * costs, on real text.
 *
 *   shape_bench DATA_DIR [RANKS_DIR [PRICES [SECTION]]]
 *
 * Markdown on stdout. DATA_DIR is the shared data folder (its README.md lists
 * the sets); RANKS_DIR holds o200k_base.tiktoken [build/data]; PRICES is the
 * repository's price catalogue [data/prices.json]; SECTION runs one section
 * alone: conv, cache, retrieval, lossless or lossy. The built-in SIF word
 * vectors (SHAPE_SIF, default RANKS_DIR/sif-100d.bin; empty: none) pick the
 * nearest-neighbour distractors of the QQP retrieval set. SHAPE_REPS (default 5) sets how often
 * each timing is repeated; the median is quoted. Every data set is drawn with a fixed seed: two
 * runs give the same figures but for the timings.
 *
 * Sections:
 *   conv       multi-turn support conversations built from Banking77 queries,
 *              shaped by sliding_window and token_budget; tokens, time, and
 *              whether an early turn of the final question's intent survives.
 *   cache      one conversation (and all of them) replayed turn by turn: how
 *              often request t+1 starts with request t's messages (a provider
 *              prompt-cache hit) with trim_to 1.0 and 0.7.
 *   retrieval  top-K over a `context` array: QQP paraphrases among 49
 *              distractors, and MMLU prompts found from an excerpt.
 *   lossless   prices.json entries pretty-printed inside prompts, and MMLU
 *              prompts: tokens saved, speed, JSON re-parsed equal.
 *   lossy      MMLU reading passages at ratio 0.8, 0.6, 0.4: tokens reached,
 *              speed, answer-choice lines and numbers kept. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/embed.h"
#include "config/shape_config.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "shape/compress.h"
#include "shape/select.h"
#include "shape/shape.h"
#include "tokenize/bpe.h"

#define SEED 20240611u
#define DEFAULT_REPS 5
#define MAX_REPS 50
#define MAX_FILE_BYTES (64u * 1024 * 1024)
#define TEXT_MAX (8u * 1024 * 1024)

/* conversations */
#define CONV_N 300
#define CONV_MIN_TURNS 8
#define CONV_MAX_TURNS 40
#define REPLY_MIN_WORDS 30
#define REPLY_MAX_WORDS 80
#define REPLY_MIN_QUERIES 2
#define REPLY_MAX_QUERIES 4
#define CONV_MAX_TURNS_KEPT 6
#define CONV_BUDGET 600
#define CACHE_BUDGET_BIG 1500

/* retrieval */
#define QQP_REQUESTS 500
#define QQP_CHUNKS 50
#define QQP_COL_Q1 0
#define QQP_COL_Q2 1
#define QQP_COL_DUP 2
#define DENSE_WEIGHT 0.3
#define MMLU_REQUESTS 500
#define MMLU_CHUNKS 40
#define MMLU_QUESTION_WORDS 15

/* lossless, lossy */
#define PRICE_PROMPTS 200
#define PRICE_MODELS_PER_ENTRY 3
#define LOSSY_MIN_CHARS 1500
#define LOSSY_QUESTION_WORDS 20
#define CHOICES 4

static int reps = DEFAULT_REPS;
static const ah_bpe_t *enc;
static ah_shape_env_t env;

/* ---- small tools ---- */

static uint64_t rng = SEED;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dull;
}
static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}
static void shuffle(size_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd_below(i), t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

static double now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
/* Median of v[0..n) (v is sorted in place). */
static double median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
static double mean(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return n ? s / (double)n : 0;
}
static double sum(const double *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s;
}

static size_t count_tokens(const char *s, size_t n)
{
    size_t t = 0;
    if (ah_bpe_count(enc, s, n, 0, &t)) {
        fprintf(stderr, "shape_bench: could not count tokens\n");
        exit(1);
    }
    return t;
}

static size_t count_words(const char *s)
{
    size_t n = 0;
    for (int in = 0; *s; s++) {
        int blank = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
        if (!blank && !in)
            n++;
        in = !blank;
    }
    return n;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "shape_bench: cannot open %s\n", path);
        exit(1);
    }
    ah_buf_t b;
    ah_buf_init(&b, MAX_FILE_BYTES);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (ah_buf_append(&b, chunk, n)) {
            fprintf(stderr, "shape_bench: %s is over %u bytes\n", path, MAX_FILE_BYTES);
            exit(1);
        }
    fclose(f);
    if (!b.data)
        ah_buf_append(&b, "", 0);
    return ah_buf_steal(&b, len);
}

/* ---- CSV (RFC 4180: quoted fields may hold commas, newlines and "") ---- */

typedef struct csv {
    size_t ncols, nrows; /* rows after the header */
    char **cell;         /* nrows * ncols, owned */
    char **head;         /* ncols */
} csv_t;

static const char *csv_at(const csv_t *t, size_t row, size_t col)
{
    return t->cell[row * t->ncols + col];
}

static long csv_col(const csv_t *t, const char *name)
{
    for (size_t c = 0; c < t->ncols; c++)
        if (strcmp(t->head[c], name) == 0)
            return (long)c;
    return -1;
}

static void csv_read(const char *path, csv_t *t)
{
    size_t len, i = 0, cap = 1024, n = 0, row_start = 0;
    char *s = read_all(path, &len);
    char **cells = ah_malloc(cap * sizeof *cells);
    size_t ncols = 0;
    ah_buf_t f;
    ah_buf_init(&f, TEXT_MAX);
    while (i < len) {
        int end_of_row = 0;
        ah_buf_reset(&f);
        if (s[i] == '"') {
            for (i++; i < len; i++) {
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        ah_buf_append(&f, "\"", 1);
                        i++;
                        continue;
                    }
                    i++;
                    break;
                }
                ah_buf_append(&f, s + i, 1);
            }
        } else {
            size_t st = i;
            while (i < len && s[i] != ',' && s[i] != '\n')
                i++;
            size_t e = i;
            if (e > st && s[e - 1] == '\r')
                e--;
            ah_buf_append(&f, s + st, e - st);
        }
        if (i < len && s[i] == '\r')
            i++;
        if (i >= len || s[i] == '\n')
            end_of_row = 1;
        i++;
        if (n == cap) {
            cap *= 2;
            cells = ah_realloc(cells, cap * sizeof *cells);
        }
        cells[n++] = ah_strndup(f.data ? f.data : "", f.len);
        if (end_of_row) {
            size_t got = n - row_start;
            if (!ncols) {
                ncols = got;
            } else if (got != ncols) {
                fprintf(stderr, "shape_bench: %s: a row of %zu fields, not %zu\n", path, got,
                        ncols);
                exit(1);
            }
            row_start = n;
        }
    }
    ah_buf_free(&f);
    ah_free(s);
    t->ncols = ncols;
    t->head = cells;
    t->cell = cells + ncols;
    t->nrows = ncols ? n / ncols - 1 : 0;
}

static void csv_free(csv_t *t)
{
    for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
        ah_free(t->head[i]);
    ah_free(t->head);
}

/* ---- shaping helpers ---- */

static ah_shape_policy_t policy(ah_ctx_strategy_t strategy, long max_turns, long max_tokens,
                                double trim_to, long top_k)
{
    ah_shape_policy_t p;
    ah_shape_policy_unset(&p);
    p.strategy = strategy;
    p.max_turns = max_turns;
    p.max_tokens = max_tokens;
    p.trim_to = trim_to;
    p.top_k = top_k;
    p.lossless = 0;
    p.lossy_ratio = 1;
    return p;
}

/* Shape a copy of body reps times; *us receives the median time of the call
 * alone. Returns the copy shaped first (the caller's, json_decref) with its
 * result in *res and the return code in *rc. */
static json_t *shape_timed(const json_t *body, const ah_shape_policy_t *p, ah_shape_result_t *res,
                           ah_err_t *rc, double *us)
{
    double t[MAX_REPS];
    json_t *first = NULL;
    char err[400];
    for (int r = 0; r < reps; r++) {
        json_t *copy = json_deep_copy(body);
        ah_shape_result_t rr;
        err[0] = '\0';
        double t0 = now_us();
        ah_err_t e = ah_shape_apply(copy, p, &env, &rr, err, sizeof err);
        t[r] = now_us() - t0;
        if (r == 0) {
            first = copy;
            *res = rr;
            *rc = e;
            if (e)
                fprintf(stderr, "shape_bench: ah_shape_apply: %s (%s)\n", ah_strerror(e), err);
        } else {
            json_decref(copy);
        }
    }
    *us = median(t, (size_t)reps);
    return first;
}

static json_t *message(const char *role, const char *content)
{
    return json_pack("{s:s,s:s}", "role", role, "content", content);
}

/* ---- 1 conversations ---- */

static const char system_prompt[] =
    "You are Ava, the customer support assistant of Northbank, a digital bank with a mobile "
    "app, debit cards and accounts in several currencies. Help customers with their cards, "
    "payments, transfers, top-ups, cash withdrawals, exchange rates, fees and account security. "
    "Be brief, friendly and precise: at most three short paragraphs. Never ask for a full card "
    "number, a PIN, a password or a one-time code, and never reveal internal procedures. If a "
    "card may be lost or stolen, tell the customer to freeze it in the app at once. Disputes "
    "over 500 EUR, suspected fraud and account closures need a human: say so and offer to open "
    "a ticket. Give no investment or tax advice, and say what you do not know rather than "
    "guess.";

typedef struct banking {
    csv_t csv;
    size_t ncat;
    char **cat;       /* category names */
    size_t **by_cat;  /* row indices of each category */
    size_t *n_by_cat; /* how many */
    size_t *cat_of;   /* category of each row */
} banking_t;

static void banking_load(const char *data, banking_t *b)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/workloads/banking77-train.csv", data);
    csv_read(path, &b->csv);
    long ct = csv_col(&b->csv, "text"), cc = csv_col(&b->csv, "category");
    if (ct != 0 || cc != 1) {
        fprintf(stderr, "shape_bench: %s: expected columns text,category\n", path);
        exit(1);
    }
    size_t n = b->csv.nrows;
    b->cat = ah_calloc(n, sizeof *b->cat);
    b->cat_of = ah_calloc(n, sizeof *b->cat_of);
    b->ncat = 0;
    for (size_t i = 0; i < n; i++) {
        const char *c = csv_at(&b->csv, i, 1);
        size_t k = 0;
        while (k < b->ncat && strcmp(b->cat[k], c))
            k++;
        if (k == b->ncat)
            b->cat[b->ncat++] = (char *)c;
        b->cat_of[i] = k;
    }
    b->by_cat = ah_calloc(b->ncat, sizeof *b->by_cat);
    b->n_by_cat = ah_calloc(b->ncat, sizeof *b->n_by_cat);
    for (size_t i = 0; i < n; i++) {
        size_t k = b->cat_of[i];
        b->by_cat[k] = ah_realloc(b->by_cat[k], (b->n_by_cat[k] + 1) * sizeof **b->by_cat);
        b->by_cat[k][b->n_by_cat[k]++] = i;
    }
}

static void banking_free(banking_t *b)
{
    for (size_t k = 0; k < b->ncat; k++)
        ah_free(b->by_cat[k]);
    ah_free(b->by_cat);
    ah_free(b->n_by_cat);
    ah_free(b->cat);
    ah_free(b->cat_of);
    csv_free(&b->csv);
}

static const char *btext(const banking_t *b, size_t row)
{
    return csv_at(&b->csv, row, 0);
}

/* A query of category k whose row is none of avoid[0..na). */
static size_t pick_query(const banking_t *b, size_t k, const size_t *avoid, size_t na)
{
    for (;;) {
        size_t row = b->by_cat[k][rnd_below(b->n_by_cat[k])];
        int bad = 0;
        for (size_t i = 0; i < na && !bad; i++)
            bad = row == avoid[i] || strcmp(btext(b, row), btext(b, avoid[i])) == 0;
        if (!bad)
            return row;
    }
}

typedef struct conv {
    json_t *body;     /* the whole conversation, final user turn last */
    int turns;        /* user turns */
    int needle_turn;  /* 0-based user turn of the same intent as the last */
    char *needle;     /* its text (owned) */
    size_t *user_row; /* Banking77 row of each user turn */
    char **reply;     /* assistant reply after each user turn but the last (owned) */
} conv_t;

/* The assistant's reply to user turn `row`: real queries of the same intent
 * joined, after a sentence naming the intent. */
static char *make_reply(const banking_t *b, size_t row, size_t final_row, size_t *words_out)
{
    size_t k = b->cat_of[row];
    ah_buf_t r;
    ah_buf_init(&r, TEXT_MAX);
    ah_buf_appends(&r, "I understand you asked about ");
    for (const char *c = b->cat[k]; *c; c++)
        ah_buf_append(&r, *c == '_' ? " " : c, 1);
    ah_buf_appends(&r, ".");
    size_t used[REPLY_MAX_QUERIES + 2] = {row, final_row}, nu = 2, nq = 0;
    size_t words = count_words(r.data);
    for (int tries = 0; nq < REPLY_MAX_QUERIES &&
                        (nq < REPLY_MIN_QUERIES || words < REPLY_MIN_WORDS) && tries < 100;
         tries++) {
        size_t q = pick_query(b, k, used, nu);
        size_t w = count_words(btext(b, q));
        if (words + w > REPLY_MAX_WORDS && nq >= REPLY_MIN_QUERIES)
            continue;
        ah_buf_appends(&r, " ");
        ah_buf_appends(&r, btext(b, q));
        used[nu++] = q;
        nq++;
        words += w;
    }
    *words_out = words;
    size_t len;
    return ah_buf_steal(&r, &len);
}

/* Build the conversation's body from turn 0 to `upto` (exclusive of the
 * replies from upto-1 on): the request a client sends at user turn upto. */
static json_t *conv_body(const banking_t *b, const conv_t *c, int upto)
{
    json_t *msgs = json_array();
    json_array_append_new(msgs, message("system", system_prompt));
    for (int t = 0; t < upto; t++) {
        json_array_append_new(msgs, message("user", btext(b, c->user_row[t])));
        if (t + 1 < upto)
            json_array_append_new(msgs, message("assistant", c->reply[t]));
    }
    return json_pack("{s:s,s:o}", "model", "gpt-4o", "messages", msgs);
}

static void conv_make(const banking_t *b, conv_t *c, double *reply_words, size_t *nreply)
{
    int turns = CONV_MIN_TURNS + (int)rnd_below(CONV_MAX_TURNS - CONV_MIN_TURNS + 1);
    size_t intent = rnd_below(b->ncat);
    c->turns = turns;
    c->needle_turn = (int)rnd_below((size_t)turns / 2);
    c->user_row = ah_calloc((size_t)turns, sizeof *c->user_row);
    c->reply = ah_calloc((size_t)turns, sizeof *c->reply);
    for (int t = 0; t < turns - 1; t++) {
        if (t == c->needle_turn) {
            c->user_row[t] = pick_query(b, intent, NULL, 0);
            continue;
        }
        size_t k;
        do
            k = rnd_below(b->ncat);
        while (k == intent);
        c->user_row[t] = pick_query(b, k, NULL, 0);
    }
    c->user_row[turns - 1] = pick_query(b, intent, &c->user_row[c->needle_turn], 1);
    for (int t = 0; t < turns - 1; t++) {
        size_t w;
        c->reply[t] = make_reply(b, c->user_row[t], c->user_row[turns - 1], &w);
        reply_words[(*nreply)++] = (double)w;
    }
    c->needle = ah_strdup(btext(b, c->user_row[c->needle_turn]));
    c->body = conv_body(b, c, turns);
}

static void conv_free(conv_t *c)
{
    json_decref(c->body);
    for (int t = 0; t < c->turns; t++)
        ah_free(c->reply[t]);
    ah_free(c->reply);
    ah_free(c->user_row);
    ah_free(c->needle);
}

/* Is there a user message whose content is text? */
static int has_user_text(const json_t *body, const char *text)
{
    json_t *msgs = json_object_get(body, "messages"), *m;
    size_t i;
    json_array_foreach(msgs, i, m)
    {
        const char *s = json_string_value(json_object_get(m, "content"));
        const char *r = json_string_value(json_object_get(m, "role"));
        if (s && r && strcmp(r, "user") == 0 && strcmp(s, text) == 0)
            return 1;
    }
    return 0;
}

typedef struct conv_set {
    banking_t bank;
    conv_t conv[CONV_N];
} conv_set_t;

static void conv_set_make(const char *data, conv_set_t *cs, double *reply_words, size_t *nreply)
{
    banking_load(data, &cs->bank);
    for (size_t i = 0; i < CONV_N; i++)
        conv_make(&cs->bank, &cs->conv[i], reply_words, nreply);
}

static void conv_set_free(conv_set_t *cs)
{
    for (size_t i = 0; i < CONV_N; i++)
        conv_free(&cs->conv[i]);
    banking_free(&cs->bank);
}

static void section_conv(const char *data, const char *sif)
{
    char err[256];
    ah_embedder_t *em = sif ? ah_embed_open_sif(sif, err, sizeof err) : NULL;
    if (sif && !em)
        fprintf(stderr, "shape_bench: no SIF embedder (%s): the dense rows are left out\n", err);
    static conv_set_t cs;
    double *reply_words = ah_calloc((size_t)CONV_N * CONV_MAX_TURNS, sizeof *reply_words);
    size_t nreply = 0;
    rng = SEED;
    conv_set_make(data, &cs, reply_words, &nreply);

    double before[CONV_N], turns[CONV_N];
    for (size_t i = 0; i < CONV_N; i++) {
        before[i] = (double)ah_shape_count(&env, cs.conv[i].body);
        turns[i] = cs.conv[i].turns;
    }
    size_t sys_tokens = count_tokens(system_prompt, strlen(system_prompt));
    double b_sorted[CONV_N];
    memcpy(b_sorted, before, sizeof before);
    double b_median = median(b_sorted, CONV_N); /* sorts b_sorted */
    printf("## 1. Context window: multi-turn support conversations\n\n"
           "%d conversations of %d to %d user turns (mean %.1f) built from Banking77 "
           "(`workloads/banking77-train.csv`): a system prompt of %zu tokens (a bank support "
           "agent's instructions, written for the bench), then user turns that are real Banking77 "
           "queries, each followed by an assistant reply that is real text in a synthetic "
           "structure: \"I understand you asked about <intent words>.\" and 2 to 4 other "
           "Banking77 queries of the same intent (%.1f words on average, median %.0f). The "
           "final user turn is a query of the same intent as ONE earlier user turn, the "
           "*needle*, placed uniformly at random in the first half of the conversation; no "
           "other user turn has that intent. Prompt tokens are counted as OpenAI bills them "
           "(o200k_base, `ah_shape_count`): %.0f on average before shaping (median %.0f, "
           "%.0f to %.0f). Each request is shaped %d times from a fresh copy; the time is the "
           "median of those, over `ah_shape_apply` alone; the table gives the median and the "
           "mean of those medians over the %d conversations.\n\n",
           CONV_N, CONV_MIN_TURNS, CONV_MAX_TURNS, mean(turns, CONV_N), sys_tokens,
           mean(reply_words, nreply), median(reply_words, nreply), mean(before, CONV_N), b_median,
           b_sorted[0], b_sorted[CONV_N - 1], reps, CONV_N);

    struct {
        const char *name;
        ah_shape_policy_t p;
    } cfg[] = {
        {"sliding_window, max_turns 6", policy(AH_CTX_SLIDING, CONV_MAX_TURNS_KEPT, -1, -1, -1)},
        {"sliding_window, 600 tokens", policy(AH_CTX_SLIDING, 0, CONV_BUDGET, 1.0, -1)},
        {"sliding_window, 600 tokens, trim_to 0.8",
         policy(AH_CTX_SLIDING, 0, CONV_BUDGET, 0.8, -1)},
        {"token_budget, 600 tokens", policy(AH_CTX_BUDGET, -1, CONV_BUDGET, 1.0, -1)},
        {"token_budget, 600 tokens, trim_to 0.8", policy(AH_CTX_BUDGET, -1, CONV_BUDGET, 0.8, -1)},
        {"token_budget, 600 tokens, + dense 0.3", policy(AH_CTX_BUDGET, -1, CONV_BUDGET, 1.0, -1)},
        {"token_budget, 600 tokens, + dense 0.6", policy(AH_CTX_BUDGET, -1, CONV_BUDGET, 1.0, -1)},
    };
    size_t ncfg = sizeof cfg / sizeof cfg[0];
    cfg[ncfg - 2].p.dense_weight = 0.3;
    cfg[ncfg - 1].p.dense_weight = 0.6;
    if (!em)
        ncfg -= 2;
    printf("| policy | tokens before: mean / median | after: mean / median | saved | messages "
           "dropped (mean) | µs per request: median / mean | needle kept | over budget | "
           "errors |\n|---|---|---|---|---|---|---|---|---|\n");
    int mismatched_before = 0;
    for (size_t k = 0; k < ncfg; k++) {
        double after[CONV_N], us[CONV_N], dropped[CONV_N], bb[CONV_N];
        int kept = 0, over = 0, errors = 0, budgeted = 0;
        env.embedder = cfg[k].p.dense_weight > 0 ? em : NULL;
        for (size_t i = 0; i < CONV_N; i++) {
            ah_shape_result_t res;
            ah_err_t rc;
            json_t *out = shape_timed(cs.conv[i].body, &cfg[k].p, &res, &rc, &us[i]);
            long counted = ah_shape_count(&env, out);
            if (counted != res.tokens_after || res.tokens_before != (long)before[i])
                mismatched_before++;
            after[i] = (double)counted;
            bb[i] = before[i];
            dropped[i] = res.turns_dropped;
            errors += rc != AH_E_OK;
            over += cfg[k].p.max_tokens > 0 && counted > cfg[k].p.max_tokens;
            budgeted = cfg[k].p.max_tokens > 0;
            kept += has_user_text(out, cs.conv[i].needle);
            json_decref(out);
        }
        double sb = sum(bb, CONV_N), sa = sum(after, CONV_N);
        char over_s[32] = "n/a";
        if (budgeted)
            snprintf(over_s, sizeof over_s, "%d", over);
        printf("| %s | %.0f / %.0f | %.0f / %.0f | %.1f%% | %.1f | %.0f / %.0f | %.1f%% | %s | %d "
               "|\n",
               cfg[k].name, mean(bb, CONV_N), median(bb, CONV_N), mean(after, CONV_N),
               median(after, CONV_N), 100 * (1 - sa / sb), mean(dropped, CONV_N),
               median(us, CONV_N), mean(us, CONV_N), 100.0 * kept / CONV_N, over_s, errors);
    }
    printf("\n*saved*: 1 - (sum of tokens after) / (sum before). *needle kept*: the earlier user "
           "turn of the final question's intent is still among the messages sent. *over budget*: "
           "requests whose shaped prompt is over the 600-token budget (must be 0). Token counts "
           "checked: `res.tokens_before` and `res.tokens_after` equal `ah_shape_count` of the "
           "body before and after in all but %d requests.\n\n",
           mismatched_before);
    printf("*+ dense*: token_budget's BM25 of each turn blended with the built-in SIF "
           "embedder's cosine (`retrieval.dense_weight`), as top-K blends them.\n\n");
    env.embedder = NULL;
    ah_embed_free(em);
    ah_free(reply_words);
    conv_set_free(&cs);
}

/* ---- 1b prompt-cache friendliness ---- */

/* Tokens of the first n messages of body, as they are billed inside it. */
static long prefix_tokens(const json_t *body, size_t n)
{
    json_t *msgs = json_object_get(body, "messages");
    json_t *part = json_array();
    for (size_t i = 0; i < n && i < json_array_size(msgs); i++)
        json_array_append(part, json_array_get(msgs, i));
    json_t *b = json_pack("{s:o}", "messages", part);
    long t = ah_shape_count(&env, b) - 3; /* without the reply's priming */
    json_decref(b);
    return t;
}

typedef struct replay {
    double requests, hits, sent, cached;
    double trimmed_pairs, trimmed_hits; /* pairs whose first request was trimmed */
} replay_t;

/* Replay conversation c turn by turn under p; add to *r. */
static void replay(const banking_t *b, const conv_t *c, const ah_shape_policy_t *p, replay_t *r)
{
    json_t *prev = NULL;
    int prev_trimmed = 0;
    for (int t = 1; t <= c->turns; t++) {
        json_t *body = conv_body(b, c, t);
        ah_shape_result_t res = {0};
        char err[400];
        if (p && ah_shape_apply(body, p, &env, &res, err, sizeof err))
            fprintf(stderr, "shape_bench: replay: %s\n", err);
        long sent = ah_shape_count(&env, body);
        r->requests++;
        r->sent += (double)sent;
        if (prev) {
            json_t *pm = json_object_get(prev, "messages"), *m = json_object_get(body, "messages");
            size_t common = 0, np = json_array_size(pm);
            while (common < np && common < json_array_size(m) &&
                   json_equal(json_array_get(pm, common), json_array_get(m, common)))
                common++;
            r->hits += common == np;
            r->cached += (double)prefix_tokens(body, common);
            r->trimmed_pairs += prev_trimmed;
            r->trimmed_hits += prev_trimmed && common == np;
        }
        json_decref(prev);
        prev = body;
        prev_trimmed = res.turns_dropped > 0;
    }
    json_decref(prev);
}

static void replay_rows(const char *label, const banking_t *b, const conv_t *convs, size_t n)
{
    struct {
        const char *name;
        ah_shape_policy_t p;
        int none;
    } cfg[] = {
        {"no shaping", policy(AH_CTX_NONE, -1, -1, -1, -1), 1},
        {"sliding_window 600, trim_to 1.0", policy(AH_CTX_SLIDING, 0, CONV_BUDGET, 1.0, -1), 0},
        {"sliding_window 600, trim_to 0.7", policy(AH_CTX_SLIDING, 0, CONV_BUDGET, 0.7, -1), 0},
        {"sliding_window 1500, trim_to 1.0", policy(AH_CTX_SLIDING, 0, CACHE_BUDGET_BIG, 1.0, -1),
         0},
        {"sliding_window 1500, trim_to 0.7", policy(AH_CTX_SLIDING, 0, CACHE_BUDGET_BIG, 0.7, -1),
         0},
    };
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
        replay_t r = {0};
        for (size_t i = 0; i < n; i++)
            replay(b, &convs[i], cfg[k].none ? NULL : &cfg[k].p, &r);
        double pairs = r.requests - (double)n;
        double uncached = r.sent - r.cached;
        char after_trim[64] = "n/a";
        if (r.trimmed_pairs > 0)
            snprintf(after_trim, sizeof after_trim, "%.1f%% (of %.0f)",
                     100 * r.trimmed_hits / r.trimmed_pairs, r.trimmed_pairs);
        printf("| %s | %s | %.0f | %.1f%% | %s | %.0f | %.0f | %.0f |\n", label, cfg[k].name,
               r.requests, 100 * r.hits / pairs, after_trim, r.sent / r.requests,
               r.cached / r.requests, (uncached + 0.1 * r.cached) / r.requests);
    }
}

static void section_cache(const char *data)
{
    static conv_set_t cs;
    double *reply_words = ah_calloc((size_t)CONV_N * CONV_MAX_TURNS, sizeof *reply_words);
    size_t nreply = 0;
    rng = SEED;
    conv_set_make(data, &cs, reply_words, &nreply);
    size_t longest = 0;
    for (size_t i = 1; i < CONV_N; i++)
        if (cs.conv[i].turns > cs.conv[longest].turns)
            longest = i;
    printf("## 2. Prompt-cache friendliness of trim_to\n\n"
           "A conversation replayed as a client sends it: request t holds the system prompt, "
           "user turns 1..t and the replies to turns 1..t-1. Each request is shaped on its own "
           "(the gateway keeps no state between requests). *Prefix hit*: request t+1's shaped "
           "messages start with all of request t's shaped messages, so a provider's prompt cache "
           "would serve all of request t again; the share is over the pairs (t, t+1). *Once "
           "trimmed*: the same share over the pairs whose "
           "request t was itself trimmed (the conversation is over the budget): what trim_to is "
           "meant to raise. *Cached "
           "tokens*: the tokens of the messages request t+1 shares with request t from the start "
           "(what a prefix cache could serve, hit or not). *Billed equivalent*: uncached tokens + "
           "0.1 x cached ones (a cache read at 10%% of the input price, as Anthropic and OpenAI's "
           "newer models bill it). First the longest conversation (%d user turns, %ld tokens "
           "in full), then all %d conversations of section 1.\n\n",
           cs.conv[longest].turns, ah_shape_count(&env, cs.conv[longest].body), CONV_N);
    printf("| conversations | policy | requests | prefix hit | prefix hit once trimmed | tokens "
           "sent (mean) | cached tokens (mean) | billed equivalent (mean) |\n"
           "|---|---|---|---|---|---|---|---|\n");
    replay_rows("longest", &cs.bank, &cs.conv[longest], 1);
    replay_rows("all 300", &cs.bank, cs.conv, CONV_N);
    printf("\n");
    ah_free(reply_words);
    conv_set_free(&cs);
}

/* ---- 2 retrieval ---- */

/* Was chunk kept in the shaped body's documents message? */
static int chunk_kept(const json_t *body, const char *chunk)
{
    json_t *msgs = json_object_get(body, "messages"), *m;
    size_t i;
    size_t cl = strlen(chunk);
    char *needle = ah_malloc(cl + 16);
    memcpy(needle, "\">\n", 3);
    memcpy(needle + 3, chunk, cl);
    memcpy(needle + 3 + cl, "\n</document>", 13);
    int found = 0;
    json_array_foreach(msgs, i, m)
    {
        const char *s = json_string_value(json_object_get(m, "content"));
        if (s && strstr(s, "<documents>") && strstr(s, needle))
            found = 1;
    }
    ah_free(needle);
    return found;
}

typedef struct rtask {
    json_t *body;
    const char *question;
    const char *target; /* the chunk that answers */
    size_t target_at;
    const char **chunks;
    size_t n;
} rtask_t;

static json_t *retrieval_body(const char *question, const char **chunks, size_t n)
{
    json_t *ctx = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(ctx, json_string(chunks[i]));
    return json_pack("{s:s,s:[o],s:o}", "model", "gpt-4o", "messages", message("user", question),
                     "context", ctx);
}

/* Rows of the recall table for tasks[0..n). */
static void retrieval_rows(const char *label, rtask_t *tasks, size_t n, const ah_embedder_t *dense)
{
    static const long ks[] = {1, 3, 5};
    double *us = ah_calloc(n, sizeof *us), *tb = ah_calloc(n, sizeof *tb),
           *ta = ah_calloc(n, sizeof *ta);
    /* where BM25 ranks the answering chunk (1 = best), ties after it */
    size_t zero = 0;
    double mrr = 0;
    for (size_t i = 0; i < n; i++) {
        ah_chunk_t *ch = ah_calloc(tasks[i].n, sizeof *ch);
        double *sc = ah_calloc(tasks[i].n, sizeof *sc);
        for (size_t c = 0; c < tasks[i].n; c++)
            ch[c] = (ah_chunk_t){tasks[i].chunks[c], strlen(tasks[i].chunks[c])};
        ah_select_score(ch, tasks[i].n, tasks[i].question, strlen(tasks[i].question), NULL, sc);
        size_t rank = 1;
        for (size_t c = 0; c < tasks[i].n; c++)
            rank += sc[c] > sc[tasks[i].target_at] ||
                    (sc[c] == sc[tasks[i].target_at] && c < tasks[i].target_at);
        mrr += 1.0 / (double)rank;
        zero += sc[tasks[i].target_at] <= 0;
        ah_free(ch);
        ah_free(sc);
    }
    for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
        ah_shape_policy_t p = policy(AH_CTX_UNSET, -1, -1, -1, ks[k]);
        size_t hit = 0, errors = 0;
        if (dense) {
            p.dense_weight = DENSE_WEIGHT;
            env.embedder = dense;
        }
        for (size_t i = 0; i < n; i++) {
            ah_shape_result_t res;
            ah_err_t rc;
            json_t *out = shape_timed(tasks[i].body, &p, &res, &rc, &us[i]);
            errors += rc != AH_E_OK;
            hit += chunk_kept(out, tasks[i].target);
            tb[i] = (double)res.tokens_before;
            ta[i] = (double)res.tokens_after;
            json_decref(out);
        }
        env.embedder = NULL;
        double chance = (double)ks[k] / (double)tasks[0].n;
        printf("| %s | %ld | %.1f%% | %.1f%% | %.0f | %.0f | %.1f%% | %.0f / %.0f | %zu |\n", label,
               ks[k], 100.0 * (double)hit / (double)n, 100 * chance, mean(tb, n), mean(ta, n),
               100 * (1 - sum(ta, n) / sum(tb, n)), median(us, n), mean(us, n), errors);
    }
    if (!dense)
        printf("| %s | (BM25 rank of the answer) | MRR %.3f | | | | | | %zu of %zu score 0 |\n",
               label, mrr / (double)n, zero, n);
    ah_free(us);
    ah_free(tb);
    ah_free(ta);
}

static void tasks_free(rtask_t *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(t[i].body);
        ah_free(t[i].chunks);
    }
    ah_free(t);
}

typedef struct mmlu {
    size_t nsub;
    char **subject;
    csv_t *csv; /* one a subject */
} mmlu_t;

static void mmlu_load(const char *data, mmlu_t *m)
{
    static const char *const subjects[] = {
        "abstract_algebra",
        "anatomy",
        "astronomy",
        "business_ethics",
        "clinical_knowledge",
        "college_biology",
        "college_chemistry",
        "college_computer_science",
        "college_mathematics",
        "college_medicine",
        "college_physics",
        "computer_security",
        "conceptual_physics",
        "econometrics",
        "electrical_engineering",
        "elementary_mathematics",
        "formal_logic",
        "global_facts",
        "high_school_biology",
        "high_school_chemistry",
        "high_school_computer_science",
        "high_school_european_history",
        "high_school_geography",
        "high_school_government_and_politics",
        "high_school_macroeconomics",
        "high_school_mathematics",
        "high_school_microeconomics",
        "high_school_physics",
        "high_school_psychology",
        "high_school_statistics",
        "high_school_us_history",
        "high_school_world_history",
        "human_aging",
        "human_sexuality",
        "international_law",
        "jurisprudence",
        "logical_fallacies",
        "machine_learning",
        "management",
        "marketing",
        "medical_genetics",
        "miscellaneous",
        "moral_disputes",
        "moral_scenarios",
        "nutrition",
        "philosophy",
        "prehistory",
        "professional_accounting",
        "professional_law",
        "professional_medicine",
        "professional_psychology",
        "public_relations",
        "security_studies",
        "sociology",
        "us_foreign_policy",
        "virology",
        "world_religions",
    };
    m->nsub = sizeof subjects / sizeof subjects[0];
    m->subject = ah_calloc(m->nsub, sizeof *m->subject);
    m->csv = ah_calloc(m->nsub, sizeof *m->csv);
    for (size_t i = 0; i < m->nsub; i++) {
        char path[4096];
        m->subject[i] = ah_strdup(subjects[i]);
        snprintf(path, sizeof path, "%s/routing/mmlu/mmlu_%s.csv", data, subjects[i]);
        csv_read(path, &m->csv[i]);
        if (csv_col(&m->csv[i], "prompt") != 0) {
            fprintf(stderr, "shape_bench: %s: no prompt column first\n", path);
            exit(1);
        }
    }
}

static void mmlu_free(mmlu_t *m)
{
    for (size_t i = 0; i < m->nsub; i++) {
        ah_free(m->subject[i]);
        csv_free(&m->csv[i]);
    }
    ah_free(m->subject);
    ah_free(m->csv);
}

/* The line before the answer choices ("A. ..." to "D. ...", then
 * "Answer:"), or NULL when the prompt does not end so. Owned by the caller. */
static char *mmlu_question_line(const char *prompt)
{
    const char *a = NULL;
    for (const char *s = prompt; (s = strstr(s, "\nA. ")) != NULL; s++)
        a = s;
    if (!a || !strstr(a, "\nB. ") || !strstr(a, "\nAnswer:"))
        return NULL;
    const char *st = a;
    while (st > prompt && st[-1] != '\n')
        st--;
    if (st == a)
        return NULL;
    return ah_strndup(st, (size_t)(a - st));
}

/* The first n words of text, blank-separated. Owned by the caller. */
static char *first_words(const char *text, size_t n)
{
    const char *s = text;
    size_t w = 0;
    while (*s && w < n) {
        while (*s == ' ' || *s == '\n' || *s == '\t')
            s++;
        if (!*s)
            break;
        while (*s && *s != ' ' && *s != '\n' && *s != '\t')
            s++;
        w++;
    }
    return ah_strndup(text, (size_t)(s - text));
}

/* The last n words of text. Owned by the caller. */
static char *last_words(const char *text, size_t n)
{
    const char *e = text + strlen(text), *s = e;
    size_t w = 0;
    while (s > text && w < n) {
        while (s > text && (s[-1] == ' ' || s[-1] == '\n' || s[-1] == '\t'))
            s--;
        if (s == text)
            break;
        while (s > text && s[-1] != ' ' && s[-1] != '\n' && s[-1] != '\t')
            s--;
        w++;
    }
    return ah_strndup(s, (size_t)(e - s));
}

/* The chunks of one QQP request: the target (question2 of row) and the
 * distractors, shuffled, into a task. */
static void qqp_task(rtask_t *task, const csv_t *q, size_t row, const char **ch)
{
    size_t order[QQP_CHUNKS];
    const char *tmp[QQP_CHUNKS];
    for (size_t c = 0; c < QQP_CHUNKS; c++)
        order[c] = c;
    shuffle(order, QQP_CHUNKS);
    for (size_t c = 0; c < QQP_CHUNKS; c++) {
        tmp[c] = ch[order[c]];
        if (order[c] == 0)
            task->target_at = c;
    }
    memcpy(ch, tmp, sizeof tmp);
    task->chunks = ch;
    task->n = QQP_CHUNKS;
    task->question = csv_at(q, row, QQP_COL_Q1);
    task->target = ch[task->target_at];
    task->body = retrieval_body(task->question, ch, QQP_CHUNKS);
}

/* Is t the question or the answer of row, or one of ch[0..n)? */
static int qqp_taken(const csv_t *q, size_t row, const char *t, const char **ch, size_t n)
{
    if (strcmp(t, csv_at(q, row, QQP_COL_Q1)) == 0 || strcmp(t, csv_at(q, row, QQP_COL_Q2)) == 0)
        return 1;
    for (size_t k = 0; k < n; k++)
        if (strcmp(t, ch[k]) == 0)
            return 1;
    return 0;
}

/* Random distractors: question2 of other random rows. */
static rtask_t *qqp_random(const csv_t *q, const size_t *rows, size_t nt)
{
    rtask_t *tasks = ah_calloc(nt, sizeof *tasks);
    for (size_t i = 0; i < nt; i++) {
        size_t row = rows[i];
        const char **ch = ah_calloc(QQP_CHUNKS, sizeof *ch);
        ch[0] = csv_at(q, row, QQP_COL_Q2);
        for (size_t c = 1; c < QQP_CHUNKS;) {
            size_t other = rnd_below(q->nrows);
            const char *t = csv_at(q, other, QQP_COL_Q2);
            if (other != row && !qqp_taken(q, row, t, ch, c))
                ch[c++] = t;
        }
        qqp_task(&tasks[i], q, row, ch);
    }
    return tasks;
}

/* Hard distractors: the question2 texts of all rows nearest to question1 by
 * the embedder's cosine, as a vector retriever would return them. */
static rtask_t *qqp_nearest(const csv_t *q, const size_t *rows, size_t nt, const ah_embedder_t *em)
{
    size_t dim = (size_t)em->dim, n = q->nrows;
    float *v = ah_calloc(n * dim, sizeof *v), *qv = ah_calloc(dim, sizeof *qv);
    for (size_t r = 0; r < n; r++) {
        const char *t = csv_at(q, r, QQP_COL_Q2);
        ah_embed(em, t, strlen(t), v + r * dim);
    }
    rtask_t *tasks = ah_calloc(nt, sizeof *tasks);
    for (size_t i = 0; i < nt; i++) {
        size_t row = rows[i];
        const char *qs = csv_at(q, row, QQP_COL_Q1);
        memset(qv, 0, dim * sizeof *qv);
        ah_embed(em, qs, strlen(qs), qv);
        const char **ch = ah_calloc(QQP_CHUNKS, sizeof *ch);
        double best[QQP_CHUNKS];
        size_t nb = 1;
        ch[0] = csv_at(q, row, QQP_COL_Q2);
        for (size_t r = 0; r < n; r++) {
            double c = 0;
            for (size_t d = 0; d < dim; d++)
                c += (double)qv[d] * v[r * dim + d];
            if (r == row || (nb == QQP_CHUNKS && c <= best[nb - 1]))
                continue;
            const char *t = csv_at(q, r, QQP_COL_Q2);
            if (qqp_taken(q, row, t, ch, nb))
                continue;
            size_t at = nb < QQP_CHUNKS ? nb++ : nb - 1; /* the worst goes */
            while (at > 1 && best[at - 1] < c) {
                best[at] = best[at - 1];
                ch[at] = ch[at - 1];
                at--;
            }
            best[at] = c;
            ch[at] = t;
        }
        qqp_task(&tasks[i], q, row, ch);
    }
    ah_free(v);
    ah_free(qv);
    return tasks;
}

static void section_retrieval(const char *data, const char *sif)
{
    char path[4096], err[256];
    rng = SEED + 1;
    csv_t q;
    snprintf(path, sizeof path, "%s/semcache/qqp-val.csv", data);
    csv_read(path, &q);
    if (csv_col(&q, "question1") != QQP_COL_Q1 || csv_col(&q, "question2") != QQP_COL_Q2 ||
        csv_col(&q, "is_duplicate") != QQP_COL_DUP) {
        fprintf(stderr, "shape_bench: %s: unexpected columns\n", path);
        exit(1);
    }
    size_t *dups = ah_calloc(q.nrows, sizeof *dups), nd = 0;
    for (size_t i = 0; i < q.nrows; i++)
        if (strcmp(csv_at(&q, i, QQP_COL_DUP), "1") == 0)
            dups[nd++] = i;
    shuffle(dups, nd);
    size_t nt = nd < QQP_REQUESTS ? nd : QQP_REQUESTS;
    ah_embedder_t *em = sif ? ah_embed_open_sif(sif, err, sizeof err) : NULL;
    if (sif && !em)
        fprintf(stderr,
                "shape_bench: no SIF embedder (%s): the nearest-neighbour set is left "
                "out\n",
                err);
    printf("## 3. Retrieval: top-K of a `context` array (BM25)\n\n"
           "*QQP* (the hard case): %zu duplicate pairs of `semcache/qqp-val.csv`; the question is "
           "question1, the %d chunks are its question2 (a paraphrase: the chunk to keep) and %d "
           "distractors, shuffled: question2 texts of other random rows (*random*), or the "
           "question2 texts of all %zu rows nearest to question1 by the cosine of the built-in "
           "SIF embedder (*nearest*: what a vector retriever hands over; the same texts are "
           "scored again with BM25 + %.1f x that cosine in the *+ dense* rows, which favours "
           "nothing: the distractors were chosen as the closest by that very cosine). *MMLU* (the "
           "easy case): %d requests of %d chunks, each a whole MMLU prompt (question, choices, "
           "\"Answer:\") of a different subject (`routing/mmlu/*.csv`); the question is an "
           "excerpt of one of them: the line before its answer choices, or (second variant) its "
           "first %d words. The body carries the chunks in `context` and the question as the one "
           "user message; the policy sets top_k alone (lossless off, no window). *Recall*: the "
           "answering chunk is among the kept documents of the shaped body; *chance* is K / "
           "chunks. Tokens are `res.tokens_before` / `res.tokens_after` (before: every chunk "
           "rendered as a documents message). The last row of each set gives where BM25 puts the "
           "answer among all chunks (mean reciprocal rank; ties count against it) and how often "
           "it shares no scored term with the question.\n\n",
           nt, QQP_CHUNKS, QQP_CHUNKS - 1, q.nrows, DENSE_WEIGHT, MMLU_REQUESTS, MMLU_CHUNKS,
           MMLU_QUESTION_WORDS);
    printf("| set | K | recall@K | chance | tokens before (mean) | after (mean) | saved | µs per "
           "request: median / mean | errors |\n|---|---|---|---|---|---|---|---|---|\n");
    rtask_t *tasks = qqp_random(&q, dups, nt);
    retrieval_rows("QQP, random distractors", tasks, nt, NULL);
    tasks_free(tasks, nt);
    if (em) {
        tasks = qqp_nearest(&q, dups, nt, em);
        retrieval_rows("QQP, nearest distractors", tasks, nt, NULL);
        retrieval_rows("QQP, nearest distractors, + dense", tasks, nt, em);
        tasks_free(tasks, nt);
        ah_embed_free(em);
    }
    ah_free(dups);

    mmlu_t mm;
    size_t mmlu_fallback = 0;
    mmlu_load(data, &mm);
    for (int variant = 0; variant < 2; variant++) {
        rng = SEED + 2;
        tasks = ah_calloc(MMLU_REQUESTS, sizeof *tasks);
        char **questions = ah_calloc(MMLU_REQUESTS, sizeof *questions);
        size_t fallback = 0;
        for (size_t i = 0; i < MMLU_REQUESTS; i++) {
            size_t sub[64];
            for (size_t s = 0; s < mm.nsub; s++)
                sub[s] = s;
            shuffle(sub, mm.nsub);
            const char **ch = ah_calloc(MMLU_CHUNKS, sizeof *ch);
            for (size_t c = 0; c < MMLU_CHUNKS; c++) {
                const csv_t *t = &mm.csv[sub[c]];
                ch[c] = csv_at(t, rnd_below(t->nrows), 0);
            }
            size_t at = rnd_below(MMLU_CHUNKS);
            char *qs = variant == 0 ? mmlu_question_line(ch[at]) : NULL;
            if (!qs) {
                fallback += variant == 0;
                qs = first_words(ch[at], MMLU_QUESTION_WORDS);
            }
            questions[i] = qs;
            tasks[i] = (rtask_t){.question = qs,
                                 .target = ch[at],
                                 .target_at = at,
                                 .chunks = ch,
                                 .n = MMLU_CHUNKS,
                                 .body = retrieval_body(qs, ch, MMLU_CHUNKS)};
        }
        retrieval_rows(variant == 0 ? "MMLU, question line" : "MMLU, first 15 words", tasks,
                       MMLU_REQUESTS, NULL);
        if (variant == 0)
            mmlu_fallback = fallback;
        for (size_t i = 0; i < MMLU_REQUESTS; i++)
            ah_free(questions[i]);
        ah_free(questions);
        tasks_free(tasks, MMLU_REQUESTS);
    }
    printf("\nIn the question-line set, %zu of the %d target prompts have no line of their own "
           "before the choices; their first %d words stand in.\n\n",
           mmlu_fallback, MMLU_REQUESTS, MMLU_QUESTION_WORDS);
    mmlu_free(&mm);
    csv_free(&q);
}

/* ---- 3 lossless ---- */

/* Non-blank bytes of a and b are the same, in order. */
static int same_ink(const char *a, size_t al, const char *b, size_t bl)
{
    size_t i = 0, j = 0;
    for (;;) {
        while (i < al && (a[i] == ' ' || a[i] == '\n' || a[i] == '\t' || a[i] == '\r'))
            i++;
        while (j < bl && (b[j] == ' ' || b[j] == '\n' || b[j] == '\t' || b[j] == '\r'))
            j++;
        if (i == al || j == bl)
            return i == al && j == bl;
        if (a[i++] != b[j++])
            return 0;
    }
}

/* The JSON from the first '{' to the last '}' of text, parsed; NULL if not. */
static json_t *embedded_json(const char *text, size_t len)
{
    const char *a = memchr(text, '{', len);
    const char *b = NULL;
    for (size_t i = len; i-- > 0 && !b;)
        if (text[i] == '}')
            b = text + i;
    if (!a || !b || b < a)
        return NULL;
    return json_loadb(a, (size_t)(b - a + 1), 0, NULL);
}

typedef struct ltext {
    char *text;
    json_t *json; /* the JSON it embeds, or NULL */
} ltext_t;

static void lossless_row(const char *name, const ltext_t *t, size_t n)
{
    double tin = 0, tout = 0, bytes = 0, us_total = 0;
    size_t mismatched = 0, inkdiff = 0, minified = 0, errors = 0;
    double *us = ah_calloc(n, sizeof *us);
    ah_buf_t out;
    ah_buf_init(&out, AH_SHAPE_MAX_TEXT_BYTES);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(t[i].text);
        double tt[MAX_REPS];
        ah_compress_stats_t st = {0};
        ah_err_t rc = AH_E_OK;
        for (int r = 0; r < reps; r++) {
            ah_buf_reset(&out);
            double t0 = now_us();
            rc = ah_compress_lossless(t[i].text, len, &out, &st);
            tt[r] = now_us() - t0;
        }
        us[i] = median(tt, (size_t)reps);
        us_total += us[i];
        bytes += (double)len;
        errors += rc != AH_E_OK;
        const char *o = out.data ? out.data : "";
        tin += (double)count_tokens(t[i].text, len);
        tout += (double)count_tokens(o, out.len);
        minified += st.json_minified > 0;
        inkdiff += !same_ink(t[i].text, len, o, out.len);
        if (t[i].json) {
            json_t *back = embedded_json(o, out.len);
            mismatched += !back || !json_equal(back, t[i].json);
            json_decref(back);
        }
    }
    char json_changed[32] = "n/a";
    if (t[0].json)
        snprintf(json_changed, sizeof json_changed, "%zu", mismatched);
    printf("| %s | %zu | %.0f | %.0f | %.1f%% | %zu | %.2f | %s | %zu | %zu |\n", name, n,
           tin / (double)n, tout / (double)n, 100 * (1 - tout / tin), minified,
           us_total / (bytes / 1024), json_changed, inkdiff, errors);
    ah_buf_free(&out);
    ah_free(us);
}

static void section_lossless(const char *data, const char *path)
{
    json_error_t je;
    json_t *prices = json_load_file(path, 0, &je);
    json_t *providers = json_object_get(prices, "providers");
    if (!json_is_array(providers)) {
        fprintf(stderr, "shape_bench: %s: %s\n", path, je.text);
        exit(1);
    }
    /* entries: a provider's id and name with PRICE_MODELS_PER_ENTRY of its models */
    size_t nwin = 0, cap = 64;
    json_t **wins = ah_calloc(cap, sizeof *wins);
    size_t pi;
    json_t *pv;
    json_array_foreach(providers, pi, pv)
    {
        json_t *models = json_object_get(pv, "models");
        for (size_t m = 0; m < json_array_size(models); m += PRICE_MODELS_PER_ENTRY) {
            json_t *sel = json_array();
            for (size_t k = m; k < m + PRICE_MODELS_PER_ENTRY && k < json_array_size(models); k++)
                json_array_append(sel, json_array_get(models, k));
            json_t *e = json_object();
            json_object_set(e, "id", json_object_get(pv, "id"));
            if (json_object_get(pv, "name"))
                json_object_set(e, "name", json_object_get(pv, "name"));
            json_object_set_new(e, "models", sel);
            if (nwin == cap) {
                cap *= 2;
                wins = ah_realloc(wins, cap * sizeof *wins);
            }
            wins[nwin++] = e;
        }
    }
    rng = SEED + 3;
    size_t *order = ah_calloc(nwin, sizeof *order);
    for (size_t i = 0; i < nwin; i++)
        order[i] = i;
    shuffle(order, nwin);
    size_t np = nwin < PRICE_PROMPTS ? nwin : PRICE_PROMPTS;
    ltext_t *fenced = ah_calloc(np, sizeof *fenced), *bare = ah_calloc(np, sizeof *bare),
            *whole = ah_calloc(np, sizeof *whole);
    for (size_t i = 0; i < np; i++) {
        json_t *e = wins[order[i]];
        char *pretty = json_dumps(e, JSON_INDENT(2));
        ah_buf_t b;
        size_t l;
        ah_buf_init(&b, TEXT_MAX);
        ah_buf_printf(&b, "Here are the prices:\n```json\n%s\n```\nWhich model is cheapest?",
                      pretty);
        fenced[i] = (ltext_t){ah_buf_steal(&b, &l), e};
        ah_buf_printf(&b, "Here are the prices:\n%s\nWhich model is cheapest?", pretty);
        bare[i] = (ltext_t){ah_buf_steal(&b, &l), e};
        whole[i] = (ltext_t){ah_strdup(pretty), e};
        free(pretty);
    }
    mmlu_t mm;
    mmlu_load(data, &mm);
    size_t nm = 0;
    for (size_t s = 0; s < mm.nsub; s++)
        nm += mm.csv[s].nrows;
    ltext_t *mt = ah_calloc(nm, sizeof *mt);
    nm = 0;
    for (size_t s = 0; s < mm.nsub; s++)
        for (size_t r = 0; r < mm.csv[s].nrows; r++)
            mt[nm++] = (ltext_t){(char *)csv_at(&mm.csv[s], r, 0), NULL};
    printf("## 4. Lossless compression\n\n"
           "`ah_compress_lossless` called on each text alone. *Prices*: %zu entries of the "
           "repository's `data/prices.json`, each a provider's `id`%s and %d of its models "
           "(consecutive, chosen at random), written with `json_dumps(..., JSON_INDENT(2))`; "
           "three forms: in a prompt inside a json code fence (``Here are the prices:\\n```json\\n"
           "<entry>\\n```\\nWhich model is cheapest?``), the same prompt without the fence, and "
           "the JSON as the whole message. *MMLU*: all %zu MMLU prompts as they are in the data. "
           "Tokens: o200k_base. Time: each text compressed %d times, the median kept; the sum of "
           "the medians over the sum of the input's KB. *JSON changed*: the JSON between the "
           "first `{` and the last `}` of the output, re-parsed, is not `json_equal` to the entry "
           "(must be 0). *Non-blank bytes changed*: texts whose bytes other than blanks differ "
           "after the pass (a minified JSON or a removed repeat would show here; whitespace "
           "alone would not).\n\n",
           np, json_object_get(json_array_get(providers, 0), "name") ? " and `name`" : "",
           PRICE_MODELS_PER_ENTRY, nm, reps);
    printf("| texts | n | tokens before (mean) | after (mean) | saved | JSON minified | µs per KB "
           "| JSON changed | non-blank bytes changed | errors |\n"
           "|---|---|---|---|---|---|---|---|---|---|\n");
    lossless_row("prices JSON in a json code fence", fenced, np);
    lossless_row("prices JSON in prose, no fence", bare, np);
    lossless_row("prices JSON, the whole message", whole, np);
    lossless_row("MMLU prompts", mt, nm);
    printf("\n");
    for (size_t i = 0; i < np; i++) {
        ah_free(fenced[i].text);
        ah_free(bare[i].text);
        ah_free(whole[i].text);
    }
    for (size_t i = 0; i < nwin; i++)
        json_decref(wins[i]);
    ah_free(wins);
    ah_free(order);
    ah_free(fenced);
    ah_free(bare);
    ah_free(whole);
    ah_free(mt);
    mmlu_free(&mm);
    json_decref(prices);
}

/* ---- 4 lossy ---- */

static int is_word_byte(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (unsigned char)c >= 0x80;
}

typedef struct words {
    char **w;
    size_t n, cap;
} words_t;

static void words_add(words_t *ws, const char *p, size_t n)
{
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? ws->cap * 2 : 16;
        ws->w = ah_realloc(ws->w, ws->cap * sizeof *ws->w);
    }
    ws->w[ws->n++] = ah_strndup(p, n);
}

static void words_free(words_t *ws)
{
    for (size_t i = 0; i < ws->n; i++)
        ah_free(ws->w[i]);
    ah_free(ws->w);
}

/* Words with a digit in text, each trimmed of the punctuation around it,
 * into nums; list numbers ("3." or "3)" opening a line) into markers. */
static void number_words(const char *text, size_t len, words_t *nums, words_t *markers)
{
    size_t i = 0;
    int line_start = 1;
    while (i < len) {
        while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\t')) {
            if (text[i] == '\n')
                line_start = 1;
            i++;
        }
        size_t st = i;
        while (i < len && text[i] != ' ' && text[i] != '\n' && text[i] != '\t')
            i++;
        size_t a = st, b = i, d = st;
        int opens = line_start;
        line_start = 0;
        while (d < b && text[d] >= '0' && text[d] <= '9')
            d++;
        if (opens && d > st && d + 1 == b && (text[d] == '.' || text[d] == ')')) {
            words_add(markers, text + st, d - st);
            continue;
        }
        while (a < b && !is_word_byte(text[a]))
            a++;
        while (b > a && !is_word_byte(text[b - 1]))
            b--;
        int digit = 0;
        for (size_t k = a; k < b && !digit; k++)
            digit = text[k] >= '0' && text[k] <= '9';
        if (digit)
            words_add(nums, text + a, b - a);
    }
}

/* Of the words in[0..ni), how many (with multiplicity) are among the words
 * of out not yet used (used[] marks them). The first missed goes to lost. */
static size_t numbers_kept(const words_t *in, const words_t *out, unsigned char *used, char *lost,
                           size_t lostlen)
{
    size_t kept = 0;
    for (size_t i = 0; i < in->n; i++) {
        size_t j = 0;
        while (j < out->n && (used[j] || strcmp(in->w[i], out->w[j])))
            j++;
        if (j < out->n) {
            used[j] = 1;
            kept++;
        } else if (lost && !lost[0]) {
            snprintf(lost, lostlen, "%s", in->w[i]);
        }
    }
    return kept;
}

/* The answer-choice lines of an MMLU prompt ("A. ..." .. "D. ..."): up to
 * CHOICES [start, end) pairs into span; returns how many. */
static size_t choice_lines(const char *p, size_t *span)
{
    const char *a = NULL;
    for (const char *s = p; (s = strstr(s, "\nA. ")) != NULL; s++)
        a = s;
    size_t n = 0;
    for (const char *s = a; s && n < CHOICES; n++) {
        s++;
        if (s[0] != (char)('A' + n) || s[1] != '.')
            break;
        const char *e = strchr(s, '\n');
        if (!e)
            e = s + strlen(s);
        span[2 * n] = (size_t)(s - p);
        span[2 * n + 1] = (size_t)(e - p);
        s = *e ? e : NULL;
    }
    return n;
}

static void section_lossy(const char *data)
{
    mmlu_t mm;
    mmlu_load(data, &mm);
    size_t n = 0, cap = 64;
    const char **texts = ah_calloc(cap, sizeof *texts);
    for (size_t s = 0; s < mm.nsub; s++)
        for (size_t r = 0; r < mm.csv[s].nrows; r++) {
            const char *t = csv_at(&mm.csv[s], r, 0);
            if (strlen(t) <= LOSSY_MIN_CHARS)
                continue;
            if (n == cap) {
                cap *= 2;
                texts = ah_realloc(texts, cap * sizeof *texts);
            }
            texts[n++] = t;
        }
    double bytes = 0, *tin = ah_calloc(n, sizeof *tin);
    for (size_t i = 0; i < n; i++) {
        bytes += (double)strlen(texts[i]);
        tin[i] = (double)count_tokens(texts[i], strlen(texts[i]));
    }
    printf("## 5. Lossy compression\n\n"
           "`ah_compress_lossy` called directly on the %zu MMLU prompts longer than %d characters "
           "(reading passages: history, law, medicine; %.0f tokens on average), with the question "
           "set to the prompt's last %d words (the question line and the choices). The prompt is "
           "cut as a whole, choices included: through `ah_shape_apply` the last user message is "
           "never cut, so a client that sends the passage in an earlier message and the question "
           "last keeps its choices whole. *Reached*: tokens after / tokens before (o200k_base, "
           "recounted here: they equal the pass's own count); *met*: at most ceil(ratio x tokens "
           "before), the target the pass sets itself. *Choice lines kept whole*: each of the "
           "prompt's \"A. ...\" to \"D. ...\" lines found byte for byte in the output; *choice "
           "letters kept*: a line still opens with that \"A. \". *Numbers kept*: words with a "
           "digit (trimmed of the punctuation around them) found in the output as many times as in "
           "the input (compress.h: never touched; must be 100%%). *List numbers*: \"3.\" or "
           "\"3)\" opening a line, which the pass does not count as numbers, counted apart. Time: "
           "each prompt compressed %d times, median kept, summed over the input's KB.\n\n",
           n, LOSSY_MIN_CHARS, mean(tin, n), LOSSY_QUESTION_WORDS, reps);
    printf("| ratio asked | reached: mean / median / max | met | sentences dropped (mean) | words "
           "dropped (mean) | choice lines kept whole | choice letters kept | numbers kept | list "
           "numbers kept | µs per KB | errors |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    static const double ratios[] = {0.8, 0.6, 0.4};
    ah_buf_t out;
    ah_buf_init(&out, AH_SHAPE_MAX_TEXT_BYTES);
    double *reached = ah_calloc(n, sizeof *reached);
    double *sents = ah_calloc(n, sizeof *sents), *words = ah_calloc(n, sizeof *words);
    char lost_example[200] = "";
    for (size_t k = 0; k < sizeof ratios / sizeof ratios[0]; k++) {
        size_t met = 0, ch_total = 0, ch_kept = 0, ch_lettered = 0, num_total = 0, num_kept = 0,
               mark_total = 0, mark_kept = 0, errors = 0, stats_off = 0;
        double us_total = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(texts[i]);
            char *question = last_words(texts[i], LOSSY_QUESTION_WORDS);
            double tt[MAX_REPS];
            ah_compress_stats_t st = {0};
            ah_err_t rc = AH_E_OK;
            for (int r = 0; r < reps; r++) {
                ah_buf_reset(&out);
                memset(&st, 0, sizeof st);
                double t0 = now_us();
                rc = ah_compress_lossy(texts[i], len, question, ratios[k], enc, &out, &st);
                tt[r] = now_us() - t0;
            }
            us_total += median(tt, (size_t)reps);
            ah_free(question);
            if (rc) {
                errors++;
                reached[i] = 1;
                continue;
            }
            const char *o = out.data ? out.data : "";
            double tok = (double)count_tokens(o, out.len);
            stats_off += st.tokens_out != (size_t)tok || st.tokens_in != (size_t)tin[i];
            reached[i] = tok / tin[i];
            met += tok <= ceil(ratios[k] * tin[i]);
            sents[i] = (double)st.sentences_dropped;
            words[i] = (double)st.words_dropped;
            size_t span[2 * CHOICES];
            size_t nc = choice_lines(texts[i], span);
            ch_total += nc;
            for (size_t c = 0; c < nc; c++) {
                char *line = ah_strndup(texts[i] + span[2 * c], span[2 * c + 1] - span[2 * c]);
                ch_kept += strstr(o, line) != NULL;
                ah_free(line);
                /* the choice's letter still opens a line */
                char letter[8] = {'\n', (char)('A' + c), '.', ' ', '\0'};
                ch_lettered += strstr(o, letter) != NULL || strncmp(o, letter + 1, 3) == 0;
            }
            words_t ni = {0}, no = {0}, mi = {0}, mo = {0};
            number_words(texts[i], len, &ni, &mi);
            number_words(o, out.len, &no, &mo);
            num_total += ni.n;
            /* a number whose label went ("SEC. 2." -> "2.") opens a line in the
             * output: the output's list numbers count as numbers too */
            for (size_t m = 0; m < mo.n; m++)
                words_add(&no, mo.w[m], strlen(mo.w[m]));
            unsigned char *used = ah_calloc(no.n + 1, 1);
            num_kept += numbers_kept(&ni, &no, used, lost_example, sizeof lost_example);
            mark_total += mi.n;
            mark_kept += numbers_kept(&mi, &no, used, NULL, 0);
            ah_free(used);
            words_free(&ni);
            words_free(&no);
            words_free(&mi);
            words_free(&mo);
        }
        double mean_reached = mean(reached, n), max_reached = 0;
        for (size_t i = 0; i < n; i++)
            if (reached[i] > max_reached)
                max_reached = reached[i];
        printf("| %.1f | %.3f / %.3f / %.3f | %.1f%% | %.1f | %.1f | %.1f%% (%zu of %zu) | "
               "%.1f%% | %.2f%% (%zu of %zu) | %.1f%% (%zu of %zu) | %.0f | %zu |\n",
               ratios[k], mean_reached, median(reached, n), max_reached,
               100.0 * (double)met / (double)n, mean(sents, n), mean(words, n),
               ch_total ? 100.0 * (double)ch_kept / (double)ch_total : 0, ch_kept, ch_total,
               ch_total ? 100.0 * (double)ch_lettered / (double)ch_total : 0,
               num_total ? 100.0 * (double)num_kept / (double)num_total : 100, num_kept, num_total,
               mark_total ? 100.0 * (double)mark_kept / (double)mark_total : 100, mark_kept,
               mark_total, us_total / (bytes / 1024), errors);
        if (stats_off)
            fprintf(stderr, "shape_bench: lossy %.1f: stats tokens differ from a recount in %zu\n",
                    ratios[k], stats_off);
    }
    if (lost_example[0])
        printf("\nA number word not found in an output (first seen): `%s`.\n", lost_example);
    printf("\n");
    ah_buf_free(&out);
    ah_free(reached);
    ah_free(sents);
    ah_free(words);
    ah_free(tin);
    ah_free(texts);
    mmlu_free(&mm);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: shape_bench DATA_DIR [RANKS_DIR [PRICES "
                        "[conv|cache|retrieval|lossless|lossy]]]\n");
        return 2;
    }
    const char *data = argv[1], *ranks = argc > 2 ? argv[2] : "build/data",
               *prices = argc > 3 ? argv[3] : "data/prices.json", *only = argc > 4 ? argv[4] : NULL;
    const char *r = getenv("SHAPE_REPS");
    if (r) {
        char *end;
        long v = strtol(r, &end, 10);
        if (*end || v < 1 || v > MAX_REPS) {
            fprintf(stderr, "shape_bench: SHAPE_REPS must be 1..%d\n", MAX_REPS);
            return 2;
        }
        reps = (int)v;
    }
    char err[256], sif_path[4096];
    const char *sif = getenv("SHAPE_SIF");
    if (!sif) {
        snprintf(sif_path, sizeof sif_path, "%s/sif-100d.bin", ranks);
        sif = sif_path;
    }
    if (!*sif)
        sif = NULL;
    ah_bpe_t *e = NULL;
    if (ah_bpe_load(ranks, "o200k_base", &e, err, sizeof err)) {
        fprintf(stderr, "shape_bench: %s\n", err);
        return 1;
    }
    enc = e;
    env = (ah_shape_env_t){.enc = e, .factor = 1};
    if (!only || strcmp(only, "conv") == 0)
        section_conv(data, sif);
    if (!only || strcmp(only, "cache") == 0)
        section_cache(data);
    if (!only || strcmp(only, "retrieval") == 0)
        section_retrieval(data, sif);
    if (!only || strcmp(only, "lossless") == 0)
        section_lossless(data, prices);
    if (!only || strcmp(only, "lossy") == 0)
        section_lossy(data);
    ah_bpe_free(e);
    return 0;
}
