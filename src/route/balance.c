/* balance.c - deployment choice and health (see balance.h). */
#include "route/balance.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/limits.h"
#include "route/balance_sync.h"

/* Weight of a new latency sample in the EWMA (1/8, as TCP's SRTT). */
#define EWMA_SHIFT 3
/* Least-latency: the share of requests sent by weight instead, so that a
 * deployment that was slow once is measured again. */
#define LATENCY_EXPLORE 0.05

/* rpm/tpm are counted over a sliding window of one-second buckets, as the
 * providers count them: a request stays counted for 60 to 61 seconds, a
 * little longer than a provider's minute, so that the gateway never sends
 * what the provider would refuse at the window's edge (a fixed calendar
 * minute would let 2 x rpm through around each minute's turn). */
#define WIN_SPAN_S AH_BALANCE_WINDOW_S
#define WIN_BUCKETS 64
typedef struct win_bucket {
    _Atomic int64_t sec; /* the second these counts are for */
    _Atomic int64_t reqs, tokens;
} win_bucket_t;

typedef struct dep_state {
    atomic_int inflight;
    atomic_int fails;                  /* consecutive failures */
    _Atomic int64_t cooldown_until_us; /* monotonic; 0: not cooling */
    _Atomic int64_t ewma_us;           /* 0: no sample yet */
    win_bucket_t win[WIN_BUCKETS];     /* rpm/tpm: requests and tokens per second */
    win_bucket_t others[WIN_BUCKETS];  /* the other instances' (balance_sync.h), per second */
    _Atomic uint64_t ok, failed;
} dep_state_t;

struct ah_balancer {
    const ah_config_t *cfg;
    dep_state_t *st;
    double *cost;      /* per deployment: input + output USD per million tokens; INFINITY unknown */
    double *in, *out;  /* per deployment: input and output USD per million tokens (cost known) */
    ah_price_t *price; /* per deployment, when known */
    unsigned char *known;
    ah_balance_sync_t *sync; /* the cluster view of the windows; NULL: this process only */
};

double ah_rand01(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

const char *ah_catalogue_provider(const ah_deployment_t *d)
{
    switch (d->kind) {
    case AH_PROVIDER_ANTHROPIC:
        return "anthropic";
    case AH_PROVIDER_AZURE:
        return "azure";
    default:
        return d->provider_name;
    }
}

ah_balancer_t *ah_balancer_new(const ah_config_t *cfg, const ah_prices_t *prices)
{
    ah_balancer_t *b = ah_calloc(1, sizeof *b);
    size_t n = cfg->ndeps ? cfg->ndeps : 1;
    b->cfg = cfg;
    b->st = ah_calloc(n, sizeof *b->st);
    b->cost = ah_calloc(n, sizeof *b->cost);
    b->in = ah_calloc(n, sizeof *b->in);
    b->out = ah_calloc(n, sizeof *b->out);
    b->price = ah_calloc(n, sizeof *b->price);
    b->known = ah_calloc(n, 1);
    for (size_t i = 0; i < cfg->ndeps; i++) {
        const ah_deployment_t *d = &cfg->deps[i];
        ah_price_t p;
        b->cost[i] = INFINITY;
        if (d->has_price)
            p = d->price;
        else if (!prices || strcmp(d->model, "*") == 0 ||
                 ah_prices_find(prices, ah_catalogue_provider(d), d->model, time(NULL), &p))
            continue;
        b->price[i] = p;
        b->known[i] = 1;
        if (p.input.base >= 0 && p.output.base >= 0) {
            b->cost[i] = p.input.base + p.output.base;
            b->in[i] = p.input.base;
            b->out[i] = p.output.base;
        }
    }
    b->sync = ah_balance_sync_start(cfg, b);
    return b;
}

void ah_balancer_free(ah_balancer_t *b)
{
    if (!b)
        return;
    ah_balance_sync_stop(b->sync);
    ah_free(b->st);
    ah_free(b->cost);
    ah_free(b->in);
    ah_free(b->out);
    ah_free(b->price);
    ah_free(b->known);
    ah_free(b);
}

static int wildcard_spec(const char *pattern, const char *s)
{
    size_t pl = strlen(pattern);
    if (pl == 0 || pattern[pl - 1] != '*' || strncmp(pattern, s, pl - 1) != 0)
        return -1;
    return (int)(pl - 1);
}

/* Indexes of the deployments that serve alias: those of the exact alias,
 * else those of its most specific wildcard. */
static int serving(const ah_config_t *c, const char *alias, int *idx, int max)
{
    int n = 0;
    for (size_t i = 0; i < c->ndeps && n < max; i++)
        if (strcmp(c->deps[i].alias, alias) == 0)
            idx[n++] = (int)i;
    if (n)
        return n;
    int best = -1;
    const char *best_alias = NULL;
    for (size_t i = 0; i < c->ndeps; i++) {
        int sp = wildcard_spec(c->deps[i].alias, alias);
        if (sp > best) {
            best = sp;
            best_alias = c->deps[i].alias;
        }
    }
    for (size_t i = 0; best_alias && i < c->ndeps && n < max; i++)
        if (strcmp(c->deps[i].alias, best_alias) == 0)
            idx[n++] = (int)i;
    return n;
}

int ah_balancer_dep_price(const ah_balancer_t *b, const ah_deployment_t *d, ah_price_t *out)
{
    if (!b->known[d->index])
        return -1;
    *out = b->price[d->index];
    return 0;
}

int ah_balancer_price(const ah_balancer_t *b, const char *alias, double *in_per_mtok,
                      double *out_per_mtok)
{
    int idx[AH_MAX_DEPLOYMENTS];
    int n = serving(b->cfg, alias, idx, AH_MAX_DEPLOYMENTS), best = -1;
    for (int k = 0; k < n; k++)
        if (isfinite(b->cost[idx[k]]) && (best < 0 || b->cost[idx[k]] < b->cost[best]))
            best = idx[k];
    if (best < 0)
        return -1;
    *in_per_mtok = b->in[best];
    *out_per_mtok = b->out[best];
    return 0;
}

static int was_tried(const ah_pick_opts_t *o, int i)
{
    for (int k = 0; k < o->ntried; k++)
        if (o->tried[k] == i)
            return 1;
    return 0;
}

static int64_t second_now(void)
{
    return ah_now_us() / 1000000;
}

int64_t ah_balancer_second(void)
{
    return second_now();
}

/* Add to the bucket of second sec (the first to see a new second resets
 * it; a count racing with that may be lost, which only makes the limit a
 * little lenient). */
static void window_add(dep_state_t *s, int64_t sec, long reqs, long tokens)
{
    win_bucket_t *b = &s->win[sec % WIN_BUCKETS];
    int64_t cur = atomic_load_explicit(&b->sec, memory_order_relaxed);
    if (cur != sec && atomic_compare_exchange_strong(&b->sec, &cur, sec)) {
        atomic_store_explicit(&b->reqs, 0, memory_order_relaxed);
        atomic_store_explicit(&b->tokens, 0, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&b->reqs, reqs, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->tokens, tokens, memory_order_relaxed);
}

/* Add the counts of win[] that fall in the WIN_SPAN_S seconds up to sec;
 * *oldest becomes the earliest second with a request, if earlier. */
static void window_add_up(win_bucket_t *win, int64_t sec, int64_t *reqs, int64_t *tokens,
                          int64_t *oldest)
{
    for (int i = 0; i < WIN_BUCKETS; i++) {
        win_bucket_t *b = &win[i];
        int64_t bs = atomic_load_explicit(&b->sec, memory_order_relaxed);
        if (bs <= sec - WIN_SPAN_S || bs > sec)
            continue;
        int64_t r = atomic_load_explicit(&b->reqs, memory_order_relaxed);
        if (r > 0 && bs < *oldest)
            *oldest = bs;
        *reqs += r;
        *tokens += atomic_load_explicit(&b->tokens, memory_order_relaxed);
    }
}

/* Requests and tokens of the last WIN_SPAN_S seconds, this process's and
 * (with a cluster view) the other instances' as last seen; *oldest is the
 * earliest second that still counts (sec when none). */
static void window_sum(dep_state_t *s, int64_t sec, int64_t *reqs, int64_t *tokens, int64_t *oldest)
{
    *reqs = *tokens = 0;
    *oldest = sec;
    window_add_up(s->win, sec, reqs, tokens, oldest);
    window_add_up(s->others, sec, reqs, tokens, oldest);
}

/* The count of second sec in win[] (0 when its bucket holds another). */
static void window_second(win_bucket_t *win, int64_t sec, int64_t *reqs, int64_t *tokens)
{
    win_bucket_t *b = &win[sec % WIN_BUCKETS];
    *reqs = *tokens = 0;
    if (atomic_load_explicit(&b->sec, memory_order_acquire) != sec)
        return;
    *reqs = atomic_load_explicit(&b->reqs, memory_order_relaxed);
    *tokens = atomic_load_explicit(&b->tokens, memory_order_relaxed);
}

void ah_balancer_local(ah_balancer_t *b, int i, int64_t sec, int64_t *reqs, int64_t *tokens)
{
    window_second(b->st[i].win, sec, reqs, tokens);
}

void ah_balancer_others(ah_balancer_t *b, int i, int64_t sec, int64_t *reqs, int64_t *tokens)
{
    window_second(b->st[i].others, sec, reqs, tokens);
}

void ah_balancer_set_others(ah_balancer_t *b, int i, int64_t sec, int64_t reqs, int64_t tokens)
{
    win_bucket_t *w = &b->st[i].others[sec % WIN_BUCKETS];
    /* Only the sync thread writes here. The second the bucket held before
     * is at least WIN_BUCKETS seconds old, out of the window: a reader that
     * meets the bucket between the stores counts nothing it should not. */
    atomic_store_explicit(&w->reqs, reqs, memory_order_relaxed);
    atomic_store_explicit(&w->tokens, tokens, memory_order_relaxed);
    atomic_store_explicit(&w->sec, sec, memory_order_release);
}

/* 0 when d may take a request of tokens now; else the seconds until the
 * window has room again (at least 1). */
static int limited(const ah_deployment_t *d, dep_state_t *s, long tokens, int64_t sec)
{
    if (!d->rpm && !d->tpm)
        return 0;
    int64_t reqs, used, oldest;
    window_sum(s, sec, &reqs, &used, &oldest);
    int full = d->rpm && reqs >= d->rpm;
    /* A request bigger than the whole tpm still goes once the window is empty. */
    full |= d->tpm && used > 0 && used + tokens > d->tpm;
    if (!full)
        return 0;
    int64_t wait = oldest + WIN_SPAN_S - sec;
    return wait > 0 ? (int)wait : 1;
}

/* Weighted random choice among cand[0..n). */
static int weighted(const ah_config_t *c, const int *cand, int n, uint64_t *rng)
{
    double total = 0;
    for (int k = 0; k < n; k++)
        total += c->deps[cand[k]].weight;
    double x = ah_rand01(rng) * total;
    for (int k = 0; k < n; k++) {
        x -= c->deps[cand[k]].weight;
        if (x < 0)
            return cand[k];
    }
    return cand[n - 1];
}

/* The candidates that minimise key[]: keep them in cand, return how many. */
static int keep_min(int *cand, int n, const double *key)
{
    double best = INFINITY;
    for (int k = 0; k < n; k++)
        if (key[k] < best)
            best = key[k];
    int m = 0;
    for (int k = 0; k < n; k++)
        if (key[k] <= best)
            cand[m++] = cand[k];
    return m ? m : n;
}

static int choose(ah_balancer_t *b, int *cand, int n, uint64_t *rng)
{
    double key[AH_MAX_DEPLOYMENTS];
    switch (b->cfg->routing.strategy) {
    case AH_BALANCE_LEAST_LATENCY:
        if (ah_rand01(rng) < LATENCY_EXPLORE)
            break;
        /* Deployments without a sample go first, so each gets measured. */
        for (int k = 0; k < n; k++) {
            int64_t e = atomic_load_explicit(&b->st[cand[k]].ewma_us, memory_order_relaxed);
            key[k] = e ? (double)e : -1;
        }
        n = keep_min(cand, n, key);
        break;
    case AH_BALANCE_LEAST_BUSY:
        for (int k = 0; k < n; k++)
            key[k] = atomic_load_explicit(&b->st[cand[k]].inflight, memory_order_relaxed);
        n = keep_min(cand, n, key);
        break;
    case AH_BALANCE_LOWEST_COST:
        for (int k = 0; k < n; k++)
            key[k] = b->cost[cand[k]];
        n = keep_min(cand, n, key);
        break;
    case AH_BALANCE_WEIGHTED:
        break;
    }
    return weighted(b->cfg, cand, n, rng);
}

const ah_deployment_t *ah_balancer_pick(ah_balancer_t *b, const char *alias,
                                        const ah_pick_opts_t *o, ah_pick_t *why, double *retry_in_s)
{
    int all[AH_MAX_DEPLOYMENTS], cand[AH_MAX_DEPLOYMENTS], probe[AH_MAX_DEPLOYMENTS];
    int n = serving(b->cfg, alias, all, AH_MAX_DEPLOYMENTS);
    int nc = 0, np = 0, ncool = 0, nlim = 0, ntried = 0;
    int64_t now = ah_now_us(), sec = second_now();
    int soonest = -1, lim_wait = 0;
    int64_t soonest_us = 0;
    *why = AH_PICK_OK;
    if (n == 0) {
        *why = AH_PICK_UNKNOWN;
        return NULL;
    }
    for (int k = 0; k < n; k++) {
        int i = all[k];
        dep_state_t *s = &b->st[i];
        if (!o->allow_tried && was_tried(o, i)) {
            ntried++;
            continue;
        }
        int w = limited(&b->cfg->deps[i], s, o->tokens, sec);
        if (w) {
            if (!nlim++ || w < lim_wait)
                lim_wait = w;
            continue;
        }
        int64_t until = atomic_load_explicit(&s->cooldown_until_us, memory_order_acquire);
        if (until > now) {
            ncool++;
            if (soonest < 0 || until < soonest_us) {
                soonest = i;
                soonest_us = until;
            }
            continue;
        }
        if (until) /* cooldown over: due for a probe */
            probe[np++] = i;
        else
            cand[nc++] = i;
    }
    /* Prefer deployments not yet tried by this request, even on a retry. */
    if (o->allow_tried && nc > 1) {
        int fresh[AH_MAX_DEPLOYMENTS], nf = 0;
        for (int k = 0; k < nc; k++)
            if (!was_tried(o, cand[k]))
                fresh[nf++] = cand[k];
        if (nf) {
            memcpy(cand, fresh, (size_t)nf * sizeof *cand);
            nc = nf;
        }
    }
    /* A deployment whose cooldown is over takes the next request as its
     * probe: push its cooldown forward so that others keep away while the
     * probe runs; end() clears it on success. */
    for (int k = 0; k < np; k++) {
        dep_state_t *s = &b->st[probe[k]];
        int64_t until = atomic_load_explicit(&s->cooldown_until_us, memory_order_acquire);
        int64_t next = now + (int64_t)(b->cfg->routing.cooldown_s * 1e6);
        if (until && until <= now &&
            atomic_compare_exchange_strong(&s->cooldown_until_us, &until,
                                           next > now ? next : now + 1))
            return &b->cfg->deps[probe[k]];
    }
    if (nc)
        return &b->cfg->deps[choose(b, cand, nc, o->rng)];
    if (ncool && o->allow_cooling && soonest >= 0)
        return &b->cfg->deps[soonest];
    if (ncool || np)
        *why = AH_PICK_COOLING;
    else if (nlim) {
        *why = AH_PICK_LIMITED;
        if (retry_in_s)
            *retry_in_s = lim_wait;
    } else
        *why = ntried ? AH_PICK_TRIED : AH_PICK_UNKNOWN;
    return NULL;
}

void ah_balancer_begin(ah_balancer_t *b, const ah_deployment_t *d, long tokens)
{
    dep_state_t *s = &b->st[d->index];
    atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
    if (d->rpm || d->tpm)
        window_add(s, second_now(), 1, tokens > 0 ? tokens : 0);
}

void ah_balancer_end(ah_balancer_t *b, const ah_deployment_t *d, int outcome, int64_t latency_us)
{
    dep_state_t *s = &b->st[d->index];
    atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
    if (outcome > 0) {
        atomic_fetch_add_explicit(&s->ok, 1, memory_order_relaxed);
        atomic_store_explicit(&s->fails, 0, memory_order_relaxed);
        if (atomic_load_explicit(&s->cooldown_until_us, memory_order_relaxed))
            atomic_store_explicit(&s->cooldown_until_us, 0, memory_order_release);
        if (latency_us > 0) {
            int64_t e = atomic_load_explicit(&s->ewma_us, memory_order_relaxed);
            e = e ? e + ((latency_us - e) >> EWMA_SHIFT) : latency_us;
            atomic_store_explicit(&s->ewma_us, e > 0 ? e : 1, memory_order_relaxed);
        }
    } else if (outcome == 0) {
        atomic_fetch_add_explicit(&s->failed, 1, memory_order_relaxed);
        int f = atomic_fetch_add_explicit(&s->fails, 1, memory_order_relaxed) + 1;
        if (f >= b->cfg->routing.allowed_fails && b->cfg->routing.cooldown_s > 0) {
            int64_t next = ah_now_us() + (int64_t)(b->cfg->routing.cooldown_s * 1e6);
            atomic_store_explicit(&s->cooldown_until_us, next, memory_order_release);
        }
    }
}

void ah_balancer_health(ah_balancer_t *b, const ah_deployment_t *d, ah_dep_health_t *out)
{
    dep_state_t *s = &b->st[d->index];
    int64_t until = atomic_load(&s->cooldown_until_us), now = ah_now_us();
    out->inflight = atomic_load(&s->inflight);
    out->fails = atomic_load(&s->fails);
    out->cooldown_left_s = until > now ? (double)(until - now) / 1e6 : 0;
    out->ewma_ms = (double)atomic_load(&s->ewma_us) / 1000.0;
    out->ok = atomic_load(&s->ok);
    out->failed = atomic_load(&s->failed);
}
