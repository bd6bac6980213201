/* metrics.c - per-thread series tables, summed into the Prometheus text
 * exposition on scrape.
 *
 * Three families of series, each in its own table per thread:
 *   requests  (model, provider, status, route, tags...): counters of
 *             requests, tokens, cost, savings and cache results;
 *   timing    (model, provider, status, route, endpoint): the latency
 *             histograms, ahorro's own and OpenTelemetry GenAI's;
 *   upstream  (provider, deployment, status): failed and retried attempts.
 * Tags are left out of the histograms on purpose: a histogram is 17 series,
 * and tags multiply what they label.
 *
 * A table has one writer (its thread), which updates counters with relaxed
 * atomic loads and stores (no read-modify-write, no lock, no shared cache
 * line), and publishes a new series by storing its key before the count
 * (release); a scrape loads the count (acquire) and reads every series
 * below it. A scrape may see a request counted in one family and not yet
 * in the next: totals agree once the request is done. */
#include "metrics/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "metrics/label.h"

typedef _Atomic uint64_t cnt_t;
typedef _Atomic double dbl_t;

/* One writer per counter, so a load and a store make an add that no
 * reader ever sees torn (the shared table's writers hold its mutex). */
static inline void cnt_add(cnt_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline void dbl_add(dbl_t *c, double v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t cnt_get(cnt_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static inline double dbl_get(dbl_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- histograms ---- */

#define MAX_BOUNDS 16

typedef struct bounds {
    const double *v;
    const char *const *le; /* the same bounds as written in the exposition */
    int n;
} bounds_t;

/* ahorro's latency buckets: sub-millisecond cache hits to long streams. */
static const double lat_v[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                               0.5,   1,      2.5,   5,    10,    30,   60,  120};
static const char *const lat_le[] = {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
                                     "0.1",   "0.25",   "0.5",   "1",    "2.5",   "5",
                                     "10",    "30",     "60",    "120"};
/* OpenTelemetry GenAI semantic conventions' explicit bucket boundaries. */
static const double dur_v[] = {0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
                               1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
static const char *const dur_le[] = {"0.01", "0.02", "0.04", "0.08",  "0.16",  "0.32",  "0.64",
                                     "1.28", "2.56", "5.12", "10.24", "20.48", "40.96", "81.92"};
static const double tok_v[] = {1,     4,     16,     64,      256,     1024,     4096,
                               16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};
static const char *const tok_le[] = {"1",       "4",       "16",       "64",      "256",
                                     "1024",    "4096",    "16384",    "65536",   "262144",
                                     "1048576", "4194304", "16777216", "67108864"};
static const bounds_t LAT = {lat_v, lat_le, 16}, DUR = {dur_v, dur_le, 14},
                      TOK = {tok_v, tok_le, 14};

/* Per-bucket (not cumulative) counts, the last one past every bound; the
 * count is their sum, so a scrape never sees _count disagree with +Inf. */
typedef struct hist {
    cnt_t b[MAX_BOUNDS + 1];
    dbl_t sum;
} hist_t;

static void hist_observe(hist_t *h, const bounds_t *bd, double v)
{
    int i = 0;
    while (i < bd->n && v > bd->v[i])
        i++;
    cnt_add(&h->b[i], 1);
    dbl_add(&h->sum, v);
}

/* ---- series keys ---- */

enum {
    L_MODEL,
    L_PROVIDER,
    L_ROUTE,
    L_DEPLOYMENT,
    L_ENDPOINT,
    L_TAG0,
    NLABELS = L_TAG0 + AH_METRICS_MAX_TAGS
};

/* Interned label values (compared by pointer; NULL: not a label of the
 * family) and the HTTP status (0: none or out of range). */
typedef struct series_key {
    const ah_label_value_t *v[NLABELS];
    int status;
    int unused; /* keeps the struct free of padding: it is hashed whole */
} series_key_t;

static ah_label_set_t set_model, set_provider, set_route, set_deployment;
static ah_label_set_t set_tag[AH_METRICS_MAX_TAGS];
static const ah_label_value_t ep_chat = {"chat", "chat"},
                              ep_embeddings = {"embeddings", "embeddings"};

static int key_eq(const series_key_t *a, const series_key_t *b)
{
    return a->status == b->status && memcmp(a->v, b->v, sizeof a->v) == 0;
}

/* The series everything past a table's bound counts under. */
static void key_overflow(series_key_t *k)
{
    for (int i = 0; i < NLABELS; i++)
        if (k->v[i])
            k->v[i] = &ah_label_other;
    k->status = 0;
}

/* ---- series tables ---- */

typedef struct stab {
    series_key_t *keys;
    unsigned char *vals; /* cap values of vsize bytes, zeroed */
    uint16_t *index;     /* open addressing over 2 * cap: series + 1, 0 empty */
    atomic_int n;        /* series published */
    int cap;
    size_t vsize;
} stab_t;

static void stab_init(stab_t *t, int cap, size_t vsize)
{
    t->keys = ah_calloc((size_t)cap, sizeof *t->keys);
    t->vals = ah_calloc((size_t)cap, vsize);
    t->index = ah_calloc(2 * (size_t)cap, sizeof *t->index);
    atomic_init(&t->n, 0);
    t->cap = cap;
    t->vsize = vsize;
}

static void stab_free(stab_t *t)
{
    ah_free(t->keys);
    ah_free(t->vals);
    ah_free(t->index);
}

static void *stab_vals(const stab_t *t, int i)
{
    return t->vals + (size_t)i * t->vsize;
}

/* The values of series k, created when new (by the table's writer only).
 * The last place is kept for the overflow series, so that past cap - 1
 * series every new one counts there. */
static void *stab_get(stab_t *t, const series_key_t *k)
{
    const size_t mask = 2 * (size_t)t->cap - 1;
    size_t i = ah_fnv1a(AH_FNV_OFFSET, k, sizeof *k) & mask;
    for (; t->index[i]; i = (i + 1) & mask)
        if (key_eq(&t->keys[t->index[i] - 1], k))
            return stab_vals(t, t->index[i] - 1);
    int n = atomic_load_explicit(&t->n, memory_order_relaxed);
    if (n >= t->cap - 1) {
        series_key_t o = *k;
        key_overflow(&o);
        if (!key_eq(&o, k))
            return stab_get(t, &o); /* found, or placed last */
        if (n == t->cap)
            return stab_vals(t, n - 1); /* not reached: the overflow series was found */
    }
    t->keys[n] = *k;
    t->index[i] = (uint16_t)(n + 1);
    atomic_store_explicit(&t->n, n + 1, memory_order_release);
    return stab_vals(t, n);
}

/* ---- what a series counts ---- */

enum { TOK_INPUT, TOK_OUTPUT, TOK_CACHED, TOK_CACHE_WRITE, TOK_REASONING, NTOK };
static const char *const tok_names[NTOK] = {"input", "output", "cached", "cache_write",
                                            "reasoning"};
enum { MECH_CACHE, MECH_ROUTING, MECH_SHAPING, MECH_PROMPT_CACHE, NMECH };
static const char *const mech_names[NMECH] = {"cache", "routing", "shaping", "prompt_cache"};
enum { CR_EXACT, CR_SEMANTIC, CR_MISS, CR_BYPASS, NCR };
static const char *const cr_names[NCR] = {"exact", "semantic", "miss", "bypass"};

typedef struct req_vals {
    cnt_t requests;
    cnt_t tokens[NTOK];
    dbl_t cost;
    dbl_t saved[NMECH]; /* what each mechanism saved, */
    dbl_t over[NMECH];  /* and what it cost more (a counter cannot go down) */
    cnt_t cache[NCR];
} req_vals_t;

enum { H_DURATION, H_TTFT, H_OP_DURATION, H_TTFC, H_TOK_INPUT, H_TOK_OUTPUT, NHIST };
static const bounds_t *const hist_bounds[NHIST] = {&LAT, &LAT, &DUR, &DUR, &TOK, &TOK};

typedef struct timing_vals {
    hist_t h[NHIST];
} timing_vals_t;

typedef struct up_vals {
    cnt_t errors, retries;
} up_vals_t;

/* ---- per-thread tables ---- */

typedef struct mtable {
    stab_t req, timing, up;
    _Atomic int64_t inflight;
    pthread_mutex_t *lock; /* the shared table's writers take it; NULL: one writer */
    int owned;             /* a live thread writes it (under reg_mu) */
    struct mtable *next;
} mtable_t;

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static mtable_t *tables; /* every table ever made: never freed (reachable at exit) */
static int ntables;
static mtable_t *shared;
static pthread_key_t owner_key;
static pthread_once_t owner_once = PTHREAD_ONCE_INIT;
static _Thread_local mtable_t *mine_tl;

/* A thread exits: its table, counts kept, waits for the next new thread. */
static void table_release(void *p)
{
    mtable_t *t = p;
    pthread_mutex_lock(&reg_mu);
    t->owned = 0;
    pthread_mutex_unlock(&reg_mu);
}

static void owner_key_make(void)
{
    pthread_key_create(&owner_key, table_release);
}

/* A new table, linked into the list (reg_mu held). */
static mtable_t *table_new(pthread_mutex_t *lock)
{
    mtable_t *t = ah_calloc(1, sizeof *t);
    stab_init(&t->req, AH_METRICS_MAX_SERIES, sizeof(req_vals_t));
    stab_init(&t->timing, AH_METRICS_MAX_TIMING_SERIES, sizeof(timing_vals_t));
    stab_init(&t->up, AH_METRICS_MAX_UPSTREAM_SERIES, sizeof(up_vals_t));
    t->lock = lock;
    t->next = tables;
    tables = t;
    return t;
}

/* The calling thread's table: its own (a released one adopted, else a new
 * one), or past AH_METRICS_MAX_TABLES the shared one. */
static mtable_t *mine(void)
{
    if (mine_tl)
        return mine_tl;
    pthread_once(&owner_once, owner_key_make);
    pthread_mutex_lock(&reg_mu);
    mtable_t *t = tables;
    while (t && (t->owned || t->lock))
        t = t->next;
    if (!t && ntables < AH_METRICS_MAX_TABLES) {
        t = table_new(NULL);
        ntables++;
    }
    if (t)
        t->owned = 1;
    else if (!(t = shared))
        t = shared = table_new(&shared_mu);
    pthread_mutex_unlock(&reg_mu);
    if (!t->lock)
        pthread_setspecific(owner_key, t);
    mine_tl = t;
    return t;
}

void ah_metrics_inflight(int delta)
{
    mtable_t *t = mine();
    if (t->lock)
        pthread_mutex_lock(t->lock);
    atomic_store_explicit(&t->inflight,
                          atomic_load_explicit(&t->inflight, memory_order_relaxed) + delta,
                          memory_order_relaxed);
    if (t->lock)
        pthread_mutex_unlock(t->lock);
}

/* ---- observe ---- */

static int status_of(int s)
{
    return s >= 100 && s <= 599 ? s : 0;
}

/* The route label: the alias or router asked for as configured (a wildcard
 * alias by its pattern), never the client's free text. */
static const char *route_of(const ah_config_t *cfg, const char *requested)
{
    if (!requested || !*requested)
        return NULL;
    if (ah_config_router(cfg, requested))
        return requested;
    const ah_deployment_t *d = ah_config_route(cfg, requested, 0);
    return d ? d->alias : "unknown";
}

static int tag_cap(const ah_config_t *cfg)
{
    return cfg->metrics.max_values > 0 ? cfg->metrics.max_values : AH_METRICS_DEFAULT_TAG_VALUES;
}

static uint64_t tokens(int64_t n)
{
    return n > 0 ? (uint64_t)n : 0;
}

static void count_request(stab_t *t, const series_key_t *k, const ah_ledger_row_t *row)
{
    req_vals_t *v = stab_get(t, k);
    if (!row->attempt_of) {
        cnt_add(&v->requests, 1);
        const char *c = row->cache;
        int cr = !c                                                   ? -1
                 : strcmp(c, "exact") == 0                            ? CR_EXACT
                 : strcmp(c, "semantic") == 0                         ? CR_SEMANTIC
                 : strcmp(c, "miss") == 0 || strcmp(c, "stored") == 0 ? CR_MISS
                 : strcmp(c, "bypass") == 0                           ? CR_BYPASS
                                                                      : -1;
        if (cr >= 0)
            cnt_add(&v->cache[cr], 1);
    }
    int64_t tk[NTOK] = {row->prompt_tokens, row->completion_tokens, row->cached_tokens,
                        row->cache_write_tokens, row->reasoning_tokens};
    for (int i = 0; i < NTOK; i++)
        if (tk[i] > 0)
            cnt_add(&v->tokens[i], tokens(tk[i]));
    if (row->cost_usd > 0)
        dbl_add(&v->cost, row->cost_usd);
    double s[NMECH] = {row->saved_usd, row->saved_routing_usd, row->saved_shaping_usd,
                       row->prompt_cache_saved_usd};
    for (int i = 0; i < NMECH; i++) {
        if (s[i] > 0)
            dbl_add(&v->saved[i], s[i]);
        else if (s[i] < 0)
            dbl_add(&v->over[i], -s[i]);
    }
}

/* Latency of requests; GenAI client metrics of every call that reached a
 * provider (retried attempts included, with their own duration). */
static void count_timing(stab_t *t, const series_key_t *k, const ah_ledger_row_t *row, int upstream)
{
    timing_vals_t *v = stab_get(t, k);
    double lat = row->latency_ms / 1000.0, ttft = row->ttft_ms / 1000.0;
    if (!row->attempt_of) {
        hist_observe(&v->h[H_DURATION], &LAT, lat);
        if (row->ttft_ms >= 0)
            hist_observe(&v->h[H_TTFT], &LAT, ttft);
    }
    if (!upstream)
        return;
    hist_observe(&v->h[H_OP_DURATION], &DUR, lat);
    if (row->stream && row->ttft_ms >= 0)
        hist_observe(&v->h[H_TTFC], &DUR, ttft);
    if (row->usage_source && strcmp(row->usage_source, "provider") == 0) {
        hist_observe(&v->h[H_TOK_INPUT], &TOK, (double)tokens(row->prompt_tokens));
        hist_observe(&v->h[H_TOK_OUTPUT], &TOK, (double)tokens(row->completion_tokens));
    }
}

void ah_metrics_observe(const ah_config_t *cfg, const ah_ledger_row_t *row, const json_t *tags,
                        int attempts)
{
    /* Interning is lock-free and needs no table: done before the lock. */
    series_key_t rk = {0}, tk = {0}, uk = {0};
    rk.v[L_MODEL] = ah_label_intern(&set_model, row->served_model, AH_METRICS_MAX_LABEL_VALUES);
    rk.v[L_PROVIDER] = ah_label_intern(&set_provider, row->provider, AH_METRICS_MAX_LABEL_VALUES);
    rk.v[L_ROUTE] = ah_label_intern(&set_route, route_of(cfg, row->requested_model),
                                    AH_METRICS_MAX_LABEL_VALUES);
    rk.status = status_of(row->status);
    for (int i = 0; i < cfg->metrics.ntags; i++)
        rk.v[L_TAG0 + i] = ah_label_intern(
            &set_tag[i], json_string_value(json_object_get(tags, cfg->metrics.tags[i])),
            tag_cap(cfg));
    tk = rk;
    for (int i = 0; i < AH_METRICS_MAX_TAGS; i++)
        tk.v[L_TAG0 + i] = NULL;
    tk.v[L_ENDPOINT] =
        row->endpoint && strcmp(row->endpoint, "embeddings") == 0 ? &ep_embeddings : &ep_chat;
    if (tk.status >= 200 && tk.status < 300)
        tk.status = 200; /* one success series: GenAI's error_type is unset for all of 2xx */
    int failed_upstream =
        row->attempt_of || (attempts > 0 && row->status >= 400 && row->status != 499);
    int upstream = row->provider && (row->attempt_of || attempts > 0);
    if (failed_upstream) {
        uk.v[L_PROVIDER] = rk.v[L_PROVIDER];
        uk.v[L_DEPLOYMENT] =
            ah_label_intern(&set_deployment, row->deployment, AH_METRICS_MAX_LABEL_VALUES);
        uk.status = rk.status;
    }
    mtable_t *t = mine();
    if (t->lock)
        pthread_mutex_lock(t->lock);
    count_request(&t->req, &rk, row);
    count_timing(&t->timing, &tk, row, upstream);
    if (failed_upstream) {
        up_vals_t *u = stab_get(&t->up, &uk);
        cnt_add(&u->errors, 1);
        if (row->attempt_of)
            cnt_add(&u->retries, 1);
    }
    if (t->lock)
        pthread_mutex_unlock(t->lock);
}

/* ---- scrape: sum the tables ---- */

static void merge_req(req_vals_t *d, req_vals_t *s)
{
    cnt_add(&d->requests, cnt_get(&s->requests));
    for (int i = 0; i < NTOK; i++)
        cnt_add(&d->tokens[i], cnt_get(&s->tokens[i]));
    dbl_add(&d->cost, dbl_get(&s->cost));
    for (int i = 0; i < NMECH; i++) {
        dbl_add(&d->saved[i], dbl_get(&s->saved[i]));
        dbl_add(&d->over[i], dbl_get(&s->over[i]));
    }
    for (int i = 0; i < NCR; i++)
        cnt_add(&d->cache[i], cnt_get(&s->cache[i]));
}

static void merge_timing(timing_vals_t *d, timing_vals_t *s)
{
    for (int h = 0; h < NHIST; h++) {
        for (int i = 0; i <= MAX_BOUNDS; i++)
            cnt_add(&d->h[h].b[i], cnt_get(&s->h[h].b[i]));
        dbl_add(&d->h[h].sum, dbl_get(&s->h[h].sum));
    }
}

static void merge_up(up_vals_t *d, up_vals_t *s)
{
    cnt_add(&d->errors, cnt_get(&s->errors));
    cnt_add(&d->retries, cnt_get(&s->retries));
}

/* Add every series of src into dst (the scrape's own table). */
static void stab_merge(stab_t *dst, stab_t *src, int family)
{
    int n = atomic_load_explicit(&src->n, memory_order_acquire);
    for (int i = 0; i < n; i++) {
        void *d = stab_get(dst, &src->keys[i]), *s = stab_vals(src, i);
        if (family == 0)
            merge_req(d, s);
        else if (family == 1)
            merge_timing(d, s);
        else
            merge_up(d, s);
    }
}

/* ---- the text exposition ---- */

/* Lines are built whole, then appended: past the text's bound a scrape
 * drops whole lines, never leaves half of one. */
typedef struct out {
    ah_buf_t *b;
    int full; /* the text reached its bound: nothing more is appended */
    int cut;  /* this line outgrew line[]: dropped */
    size_t n;
    char line[4096];
} out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->n + n >= sizeof o->line) {
        o->cut = 1;
        return;
    }
    memcpy(o->line + o->n, s, n);
    o->n += n;
}

static void put_str(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_u64(out_t *o, uint64_t v)
{
    char d[24];
    int i = sizeof d;
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, d + i, sizeof d - (size_t)i);
}

static void put_double(out_t *o, double v)
{
    if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v) {
        put_u64(o, (uint64_t)v);
        return;
    }
    /* Fixed notation to the picodollar (and picosecond) reads better than
     * an exponent and is exact enough for any sum a ledger would check. */
    char d[64];
    int n = snprintf(d, sizeof d, v > -1e15 && v < 1e15 ? "%.12f" : "%.17g", v);
    if (n <= 0 || (size_t)n >= sizeof d)
        n = snprintf(d, sizeof d, "NaN");
    else if (memchr(d, '.', (size_t)n) && !memchr(d, 'e', (size_t)n))
        while (d[n - 1] == '0')
            n--;
    put(o, d, (size_t)n);
}

/* name="value" with a leading comma unless first. */
static void put_label(out_t *o, int *first, const char *name, const char *esc)
{
    if (!*first)
        put(o, ",", 1);
    *first = 0;
    put_str(o, name);
    put(o, "=\"", 2);
    put_str(o, esc);
    put(o, "\"", 1);
}

static void put_status(out_t *o, int *first, const char *name, int status)
{
    if (!*first)
        put(o, ",", 1);
    *first = 0;
    put_str(o, name);
    put(o, "=\"", 2);
    put_u64(o, (uint64_t)status);
    put(o, "\"", 1);
}

static void end_line(out_t *o)
{
    put(o, "\n", 1);
    if (!o->cut && !o->full && ah_buf_append(o->b, o->line, o->n))
        o->full = 1;
    o->n = 0;
    o->cut = 0;
}

static void header(out_t *o, const char *name, const char *type, const char *help)
{
    put_str(o, "# HELP ");
    put_str(o, name);
    put(o, " ", 1);
    put_str(o, help);
    end_line(o);
    put_str(o, "# TYPE ");
    put_str(o, name);
    put(o, " ", 1);
    put_str(o, type);
    end_line(o);
}

static void req_labels(out_t *o, const ah_config_t *cfg, const series_key_t *k)
{
    int first = 1;
    put_label(o, &first, "model", k->v[L_MODEL]->esc);
    put_label(o, &first, "provider", k->v[L_PROVIDER]->esc);
    put_status(o, &first, "status", k->status);
    put_label(o, &first, "route", k->v[L_ROUTE]->esc);
    for (int i = 0; i < cfg->metrics.ntags; i++)
        put_label(o, &first, cfg->metrics.tags[i], k->v[L_TAG0 + i]->esc);
}

static void timing_labels(out_t *o, const ah_config_t *cfg, const series_key_t *k)
{
    int first = 1;
    put_label(o, &first, "model", k->v[L_MODEL]->esc);
    put_label(o, &first, "provider", k->v[L_PROVIDER]->esc);
    put_status(o, &first, "status", k->status);
    put_label(o, &first, "route", k->v[L_ROUTE]->esc);
    put_label(o, &first, "endpoint", k->v[L_ENDPOINT]->esc);
}

/* OpenTelemetry GenAI attributes, dots made underscores as the Prometheus
 * exporters do; error_type is the status of a call that failed. */
static void genai_labels(out_t *o, const ah_config_t *cfg, const series_key_t *k)
{
    int first = 1;
    put_label(o, &first, "gen_ai_operation_name", k->v[L_ENDPOINT]->esc);
    put_label(o, &first, "gen_ai_provider_name", k->v[L_PROVIDER]->esc);
    put_label(o, &first, "gen_ai_request_model", k->v[L_ROUTE]->esc);
    put_label(o, &first, "gen_ai_response_model", k->v[L_MODEL]->esc);
    if (k->status == 0)
        put_label(o, &first, "error_type", "_OTHER");
    else if (k->status != 200)
        put_status(o, &first, "error_type", k->status);
}

static void up_labels(out_t *o, const ah_config_t *cfg, const series_key_t *k)
{
    int first = 1;
    put_label(o, &first, "provider", k->v[L_PROVIDER]->esc);
    put_label(o, &first, "deployment", k->v[L_DEPLOYMENT]->esc);
    put_status(o, &first, "status", k->status);
}

typedef void (*labels_fn)(out_t *o, const ah_config_t *cfg, const series_key_t *k);

/* Every series' labels, rendered once per scrape and copied into each of
 * its lines (a histogram has 17 of them). */
typedef struct prefixes {
    ah_buf_t text;
    size_t *off; /* series i is text[off[i], off[i + 1]) */
} prefixes_t;

static void prefixes_build(prefixes_t *p, out_t *o, const ah_config_t *cfg, stab_t *t, labels_fn fn)
{
    int n = atomic_load_explicit(&t->n, memory_order_relaxed);
    ah_buf_init(&p->text, AH_METRICS_MAX_TEXT);
    p->off = ah_calloc((size_t)n + 1, sizeof *p->off);
    for (int i = 0; i < n; i++) {
        o->n = 0;
        o->cut = 0;
        fn(o, cfg, &t->keys[i]);
        if (!o->cut) /* bounded values keep labels well under a line; else none */
            ah_buf_append(&p->text, o->line, o->n);
        p->off[i + 1] = p->text.len;
    }
    o->n = 0;
    o->cut = 0;
}

static void prefixes_free(prefixes_t *p)
{
    ah_buf_free(&p->text);
    ah_free(p->off);
}

/* name{prefix[,extra="value"] */
static void open_series(out_t *o, const char *name, const char *suffix, const prefixes_t *p, int i,
                        const char *extra, const char *ev)
{
    put_str(o, name);
    put_str(o, suffix);
    put(o, "{", 1);
    put(o, p->text.data + p->off[i], p->off[i + 1] - p->off[i]);
    if (extra) {
        int first = p->off[i + 1] == p->off[i];
        put_label(o, &first, extra, ev);
    }
}

static void counter_u(out_t *o, const char *name, const prefixes_t *p, int i, const char *extra,
                      const char *ev, uint64_t v)
{
    open_series(o, name, "", p, i, extra, ev);
    put(o, "} ", 2);
    put_u64(o, v);
    end_line(o);
}

static void counter_d(out_t *o, const char *name, const prefixes_t *p, int i, const char *extra,
                      const char *ev, double v)
{
    open_series(o, name, "", p, i, extra, ev);
    put(o, "} ", 2);
    put_double(o, v);
    end_line(o);
}

static void render_requests(out_t *o, const ah_config_t *cfg, stab_t *t)
{
    int n = atomic_load(&t->n);
    prefixes_t p;
    prefixes_build(&p, o, cfg, t, req_labels);
    header(o, "ahorro_requests_total", "counter",
           "Requests answered, by served model, provider, HTTP status, route (the alias or "
           "router asked for) and configured tags.");
    for (int i = 0; i < n; i++) {
        req_vals_t *v = stab_vals(t, i);
        counter_u(o, "ahorro_requests_total", &p, i, NULL, NULL, cnt_get(&v->requests));
    }
    header(o, "ahorro_tokens_total", "counter",
           "Tokens by type: input, output, cached (prompt-cache reads, part of input), "
           "cache_write, reasoning (part of output). Retried attempts included.");
    for (int i = 0; i < n; i++) {
        req_vals_t *v = stab_vals(t, i);
        for (int k = 0; k < NTOK; k++)
            counter_u(o, "ahorro_tokens_total", &p, i, "type", tok_names[k],
                      cnt_get(&v->tokens[k]));
    }
    header(o, "ahorro_cost_usd_total", "counter",
           "Spend in US dollars (the ledger's cost_usd), retried attempts included.");
    for (int i = 0; i < n; i++) {
        req_vals_t *v = stab_vals(t, i);
        counter_d(o, "ahorro_cost_usd_total", &p, i, NULL, NULL, dbl_get(&v->cost));
    }
    static const char *const sv[2] = {"ahorro_savings_usd_total", "ahorro_overspend_usd_total"};
    static const char *const sh[2] = {
        "What each mechanism saved against its baseline, in US dollars (the requests where it "
        "saved).",
        "What each mechanism cost above its baseline, in US dollars (the requests where it lost: "
        "a dearer model, prompt-cache write premiums, a summary dearer than its saving). Net "
        "savings are savings minus overspend."};
    for (int s = 0; s < 2; s++) {
        header(o, sv[s], "counter", sh[s]);
        for (int i = 0; i < n; i++) {
            req_vals_t *v = stab_vals(t, i);
            /* a cache hit never costs more than the answer it replays */
            for (int m = s ? MECH_CACHE + 1 : 0; m < NMECH; m++)
                counter_d(o, sv[s], &p, i, "mechanism", mech_names[m],
                          dbl_get(s ? &v->over[m] : &v->saved[m]));
        }
    }
    header(o, "ahorro_cache_requests_total", "counter",
           "Requests by answer-cache result: exact and semantic hits, misses, bypasses "
           "(temperature, controls).");
    for (int i = 0; i < n; i++) {
        req_vals_t *v = stab_vals(t, i);
        for (int c = 0; c < NCR; c++)
            if (cnt_get(&v->cache[c]))
                counter_u(o, "ahorro_cache_requests_total", &p, i, "result", cr_names[c],
                          cnt_get(&v->cache[c]));
    }
    prefixes_free(&p);
}

static void histogram(out_t *o, const char *name, const prefixes_t *p, int i, const char *extra,
                      const char *ev, hist_t *h, const bounds_t *bd)
{
    uint64_t cum = 0;
    for (int b = 0; b <= bd->n; b++) {
        cum += cnt_get(&h->b[b]);
        open_series(o, name, "_bucket", p, i, extra, ev);
        if (p->off[i + 1] == p->off[i] && !extra)
            put(o, "le=\"", 4);
        else
            put(o, ",le=\"", 5);
        put_str(o, b < bd->n ? bd->le[b] : "+Inf");
        put(o, "\"} ", 3);
        put_u64(o, cum);
        end_line(o);
    }
    open_series(o, name, "_sum", p, i, extra, ev);
    put(o, "} ", 2);
    put_double(o, dbl_get(&h->sum));
    end_line(o);
    open_series(o, name, "_count", p, i, extra, ev);
    put(o, "} ", 2);
    put_u64(o, cum);
    end_line(o);
}

static uint64_t hist_count(hist_t *h)
{
    uint64_t c = 0;
    for (int i = 0; i <= MAX_BOUNDS; i++)
        c += cnt_get(&h->b[i]);
    return c;
}

typedef struct hist_family {
    const char *name, *help;
    int genai;
    int h[2];          /* histograms under this name; -1: none */
    const char *extra; /* label telling them apart */
    const char *ev[2];
} hist_family_t;

static void render_timing(out_t *o, const ah_config_t *cfg, stab_t *t)
{
    static const hist_family_t fam[] = {
        {"ahorro_request_duration_seconds",
         "Time from a request's body to the last byte of its answer.",
         0,
         {H_DURATION, -1},
         NULL,
         {NULL, NULL}},
        {"ahorro_time_to_first_token_seconds",
         "Time from a request's body to the first token of its answer.",
         0,
         {H_TTFT, -1},
         NULL,
         {NULL, NULL}},
        {"gen_ai_client_operation_duration_seconds",
         "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration): calls that "
         "reached a provider.",
         1,
         {H_OP_DURATION, -1},
         NULL,
         {NULL, NULL}},
        {"gen_ai_client_operation_time_to_first_chunk_seconds",
         "Time to the first chunk of a streamed GenAI call (OpenTelemetry).",
         1,
         {H_TTFC, -1},
         NULL,
         {NULL, NULL}},
        {"gen_ai_client_token_usage",
         "Input and output tokens per GenAI call, as the provider reported them (OpenTelemetry "
         "gen_ai.client.token.usage).",
         1,
         {H_TOK_INPUT, H_TOK_OUTPUT},
         "gen_ai_token_type",
         {"input", "output"}},
    };
    int n = atomic_load(&t->n);
    prefixes_t p[2];
    prefixes_build(&p[0], o, cfg, t, timing_labels);
    prefixes_build(&p[1], o, cfg, t, genai_labels);
    for (size_t f = 0; f < sizeof fam / sizeof fam[0]; f++) {
        header(o, fam[f].name, "histogram", fam[f].help);
        for (int j = 0; j < 2 && fam[f].h[j] >= 0; j++)
            for (int i = 0; i < n; i++) {
                timing_vals_t *v = stab_vals(t, i);
                hist_t *h = &v->h[fam[f].h[j]];
                if (hist_count(h))
                    histogram(o, fam[f].name, &p[fam[f].genai], i, fam[f].extra, fam[f].ev[j], h,
                              hist_bounds[fam[f].h[j]]);
            }
    }
    prefixes_free(&p[0]);
    prefixes_free(&p[1]);
}

static void render_upstream(out_t *o, const ah_config_t *cfg, stab_t *t)
{
    int n = atomic_load(&t->n);
    static const char *const names[2] = {"ahorro_upstream_errors_total",
                                         "ahorro_upstream_retries_total"};
    static const char *const help[2] = {
        "Upstream attempts that failed, by provider, deployment and status (a retried "
        "attempt's is the provider's; a final one's, what the client got).",
        "Further upstream attempts (retries, fallbacks, cascade steps), by the failed "
        "attempt's provider, deployment and status."};
    prefixes_t p;
    prefixes_build(&p, o, cfg, t, up_labels);
    for (int m = 0; m < 2; m++) {
        header(o, names[m], "counter", help[m]);
        for (int i = 0; i < n; i++) {
            up_vals_t *v = stab_vals(t, i);
            counter_u(o, names[m], &p, i, NULL, NULL, cnt_get(m ? &v->retries : &v->errors));
        }
    }
    prefixes_free(&p);
}

static void render_gauges(out_t *o, int64_t inflight, const int *nseries)
{
    header(o, "ahorro_requests_in_flight", "gauge", "Requests being served.");
    put_str(o, "ahorro_requests_in_flight ");
    if (inflight < 0)
        put(o, "-", 1);
    put_u64(o, (uint64_t)(inflight < 0 ? -inflight : inflight));
    end_line(o);
    header(o, "ahorro_metrics_series", "gauge",
           "Series this exposition holds per family, against its bound (docs/metrics.md).");
    static const char *const fam[3] = {"requests", "timing", "upstream"};
    for (int i = 0; i < 3; i++) {
        int first = 1;
        put_str(o, "ahorro_metrics_series{");
        put_label(o, &first, "family", fam[i]);
        put(o, "} ", 2);
        put_u64(o, (uint64_t)nseries[i]);
        end_line(o);
    }
}

void ah_metrics_render(const ah_config_t *cfg, ah_buf_t *buf)
{
    mtable_t *snap[AH_METRICS_MAX_TABLES + 1];
    int ns = 0;
    pthread_mutex_lock(&reg_mu);
    for (mtable_t *t = tables; t && ns < AH_METRICS_MAX_TABLES + 1; t = t->next)
        snap[ns++] = t;
    pthread_mutex_unlock(&reg_mu);
    /* The sums go into tables of the same bounds, so the exposition has at
     * most as many series as one thread's table. */
    stab_t req, timing, up;
    stab_init(&req, AH_METRICS_MAX_SERIES, sizeof(req_vals_t));
    stab_init(&timing, AH_METRICS_MAX_TIMING_SERIES, sizeof(timing_vals_t));
    stab_init(&up, AH_METRICS_MAX_UPSTREAM_SERIES, sizeof(up_vals_t));
    int64_t inflight = 0;
    for (int i = 0; i < ns; i++) {
        stab_merge(&req, &snap[i]->req, 0);
        stab_merge(&timing, &snap[i]->timing, 1);
        stab_merge(&up, &snap[i]->up, 2);
        inflight += atomic_load_explicit(&snap[i]->inflight, memory_order_relaxed);
    }
    out_t *o = ah_calloc(1, sizeof *o);
    o->b = buf;
    render_requests(o, cfg, &req);
    render_timing(o, cfg, &timing);
    render_upstream(o, cfg, &up);
    int nseries[3] = {atomic_load(&req.n), atomic_load(&timing.n), atomic_load(&up.n)};
    render_gauges(o, inflight, nseries);
    ah_free(o);
    stab_free(&req);
    stab_free(&timing);
    stab_free(&up);
}
