/* fake_limits.c - provider-side rate limits: requests and tokens per minute per model.
 *
 * `--rate-limit MODEL=RPM[:TPM]` gives MODEL a sliding 60-second window; `*` gives every
 * model not named otherwise a window of its own with that limit, as OpenAI's limits are
 * per model. A window counts the requests and tokens it admitted in 100 ms buckets: 601 of
 * them, so that an admitted request counts for 60.0 to 60.1 s. Any 60-second span of
 * arrival times therefore holds at most RPM admitted requests (and TPM tokens), which is
 * what a check of the --log file finds, and a burst across a minute boundary is refused
 * as a real provider refuses it. A refused request does not count.
 *
 * The windows live in an open-addressing table that never shrinks: slots are filled once
 * (under a mutex) and read without a lock, each window has its own mutex, held for a few
 * additions. Without --rate-limit nothing here runs but one test of a flag. */
#include "fake.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/http.h>

#include "core/alloc.h"

#define RL_BUCKETS (FAKE_RL_WINDOW_MS / FAKE_RL_BUCKET_MS + 1)
#define RL_SLOTS 4096 /* > FAKE_RL_MAX_MODELS + FAKE_RL_MAX_RULES, a power of two */
#define RL_KEY_MAX FAKE_MAX_MODEL_BYTES /* model names are told apart by this many bytes */

typedef struct rl_win {
    pthread_mutex_t lock;
    long long rpm, tpm; /* 0: no limit of that kind */
    uint64_t hash;
    size_t len;
    char *model; /* the key, cut to RL_KEY_MAX bytes */
    /* guarded by lock: */
    int64_t head; /* bucket index (ms / FAKE_RL_BUCKET_MS) of the newest bucket */
    long long nreq, ntok;
    uint32_t req[RL_BUCKETS];
    long long tok[RL_BUCKETS];
} rl_win_t;

int fake_limits_enabled;

static _Atomic(rl_win_t *) slots[RL_SLOTS];
static pthread_mutex_t insert_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t nmade;               /* windows made for models under `*`; guarded */
static rl_win_t *overflow;         /* shared by the models beyond FAKE_RL_MAX_MODELS */
static size_t nrules;              /* --rate-limit options given */
static long long def_rpm, def_tpm; /* `*` */
static int has_default;
static atomic_ullong refused;

_Static_assert((RL_SLOTS & (RL_SLOTS - 1)) == 0, "RL_SLOTS is a power of two");
_Static_assert(RL_SLOTS > FAKE_RL_MAX_MODELS + FAKE_RL_MAX_RULES, "the table never fills");

static uint64_t key_hash(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static rl_win_t *win_new(const char *model, size_t len, uint64_t hash, long long rpm, long long tpm)
{
    rl_win_t *w = ah_calloc(1, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    w->rpm = rpm;
    w->tpm = tpm;
    w->hash = hash;
    w->len = len;
    w->model = ah_malloc(len + 1);
    memcpy(w->model, model, len);
    w->model[len] = '\0';
    return w;
}

static void win_free(rl_win_t *w)
{
    if (!w)
        return;
    pthread_mutex_destroy(&w->lock);
    ah_free(w->model);
    ah_free(w);
}

/* The slot holding (model, len), or the empty slot where it belongs. */
static size_t probe(const char *model, size_t len, uint64_t hash, rl_win_t **found)
{
    size_t i = (size_t)hash & (RL_SLOTS - 1);
    for (;;) {
        rl_win_t *w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (!w || (w->hash == hash && w->len == len && memcmp(w->model, model, len) == 0)) {
            *found = w;
            return i;
        }
        i = (i + 1) & (RL_SLOTS - 1);
    }
}

/* The window of model: its own rule's, or a new one under `*`; NULL when unlimited. */
static rl_win_t *win_for(const char *model)
{
    size_t len = strnlen(model, RL_KEY_MAX);
    uint64_t hash = key_hash(model, len);
    rl_win_t *w;
    probe(model, len, hash, &w);
    if (w || !has_default)
        return w;
    pthread_mutex_lock(&insert_lock);
    size_t i = probe(model, len, hash, &w);
    if (!w) {
        if (nmade < FAKE_RL_MAX_MODELS) {
            w = win_new(model, len, hash, def_rpm, def_tpm);
            nmade++;
            atomic_store_explicit(&slots[i], w, memory_order_release);
        } else {
            if (!overflow) {
                overflow = win_new("*", 1, 0, def_rpm, def_tpm);
                fprintf(stderr,
                        "ahorro-fake: --rate-limit: more than %d models under '*'; the others "
                        "share one window\n",
                        FAKE_RL_MAX_MODELS);
            }
            w = overflow;
        }
    }
    pthread_mutex_unlock(&insert_lock);
    return w;
}

static int parse_ll(const char *s, size_t n, long long *out)
{
    char buf[32];
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || v < 0 || v > FAKE_RL_MAX_LIMIT)
        return -1;
    *out = v;
    return 0;
}

int fake_limits_add(const char *spec)
{
    const char *eq = strrchr(spec, '=');
    long long rpm = 0, tpm = 0;
    const char *num = eq ? eq + 1 : NULL;
    const char *colon = num ? strchr(num, ':') : NULL;
    size_t rlen = num ? (colon ? (size_t)(colon - num) : strlen(num)) : 0;
    if (!eq || eq == spec || parse_ll(num, rlen, &rpm) ||
        (colon && parse_ll(colon + 1, strlen(colon + 1), &tpm)) || (rpm == 0 && tpm == 0)) {
        fprintf(stderr,
                "ahorro-fake: --rate-limit wants MODEL=RPM[:TPM] (0..%lld, not both 0), got "
                "'%s'\n",
                FAKE_RL_MAX_LIMIT, spec);
        return -1;
    }
    if (nrules == FAKE_RL_MAX_RULES) {
        fprintf(stderr, "ahorro-fake: at most %d --rate-limit options\n", FAKE_RL_MAX_RULES);
        return -1;
    }
    size_t len = (size_t)(eq - spec);
    if (len == 1 && spec[0] == '*') {
        if (has_default) {
            fprintf(stderr, "ahorro-fake: --rate-limit '*' given twice\n");
            return -1;
        }
        has_default = 1;
        def_rpm = rpm;
        def_tpm = tpm;
    } else {
        if (len > RL_KEY_MAX)
            len = RL_KEY_MAX;
        uint64_t hash = key_hash(spec, len);
        rl_win_t *w;
        size_t i = probe(spec, len, hash, &w);
        if (w) {
            fprintf(stderr, "ahorro-fake: --rate-limit for '%.*s' given twice\n", (int)len, spec);
            return -1;
        }
        atomic_store(&slots[i], win_new(spec, len, hash, rpm, tpm));
    }
    nrules++;
    fake_limits_enabled = 1;
    return 0;
}

void fake_limits_free(void)
{
    for (size_t i = 0; i < RL_SLOTS; i++) {
        win_free(atomic_load(&slots[i]));
        atomic_store(&slots[i], NULL);
    }
    win_free(overflow);
    overflow = NULL;
    nmade = nrules = 0;
    has_default = 0;
    fake_limits_enabled = 0;
}

static void win_clear(rl_win_t *w)
{
    pthread_mutex_lock(&w->lock);
    memset(w->req, 0, sizeof w->req);
    memset(w->tok, 0, sizeof w->tok);
    w->nreq = w->ntok = 0;
    pthread_mutex_unlock(&w->lock);
}

void fake_limits_reset(void)
{
    if (!fake_limits_enabled)
        return;
    for (size_t i = 0; i < RL_SLOTS; i++) {
        rl_win_t *w = atomic_load_explicit(&slots[i], memory_order_acquire);
        if (w)
            win_clear(w);
    }
    pthread_mutex_lock(&insert_lock);
    if (overflow)
        win_clear(overflow);
    pthread_mutex_unlock(&insert_lock);
}

unsigned long long fake_limits_refused(void)
{
    return atomic_load(&refused);
}

void fake_limits_reset_refused(void)
{
    atomic_store(&refused, 0);
}

/* ---- one window, under its lock ---------------------------------------------------------- */

/* Moves the window's newest bucket to b, emptying the buckets that fall out of it. A
 * bucket older than the newest (threads race, the clock stepped back) counts as the
 * newest: a request then counts a little longer, never shorter. */
static void win_advance(rl_win_t *w, int64_t b)
{
    if (b <= w->head)
        return;
    if (b - w->head >= RL_BUCKETS) {
        memset(w->req, 0, sizeof w->req);
        memset(w->tok, 0, sizeof w->tok);
        w->nreq = w->ntok = 0;
    } else {
        for (int64_t x = w->head + 1; x <= b; x++) {
            size_t i = (size_t)(x % RL_BUCKETS);
            w->nreq -= w->req[i];
            w->ntok -= w->tok[i];
            w->req[i] = 0;
            w->tok[i] = 0;
        }
    }
    w->head = b;
}

/* Milliseconds from now until bucket x has left the window. */
static long until_gone(int64_t x, int64_t now_ms)
{
    int64_t ms = (x + RL_BUCKETS) * FAKE_RL_BUCKET_MS - now_ms;
    return ms > 0 ? (long)ms : 1;
}

/* Milliseconds until `need` requests (tokens when tokens) have left the window. */
static long win_wait(const rl_win_t *w, long long need, int tokens, int64_t now_ms)
{
    long long got = 0;
    for (int64_t x = w->head - RL_BUCKETS + 1; x <= w->head; x++) {
        if (x < 0)
            continue;
        size_t i = (size_t)(x % RL_BUCKETS);
        got += tokens ? w->tok[i] : (long long)w->req[i];
        if (got >= need)
            return until_gone(x, now_ms);
    }
    return until_gone(w->head, now_ms);
}

/* Milliseconds until the window holds no requests (tokens) any more; 0 when it is empty. */
static long win_reset(const rl_win_t *w, int tokens, int64_t now_ms)
{
    if (tokens ? w->ntok == 0 : w->nreq == 0)
        return 0;
    for (int64_t x = w->head; x > w->head - RL_BUCKETS && x >= 0; x--) {
        size_t i = (size_t)(x % RL_BUCKETS);
        if (tokens ? w->tok[i] != 0 : w->req[i] != 0)
            return until_gone(x, now_ms);
    }
    return 0;
}

/* ---- admission ------------------------------------------------------------------------- */

typedef enum { RL_OK, RL_REQUESTS, RL_TOKENS, RL_TOO_LARGE } rl_verdict_t;

/* "100ms", "1.5s", "1m0.1s", as OpenAI (Go's time.Duration) prints them; out has room
 * for 48 bytes. */
static void duration(char *out, long ms)
{
    if (ms <= 0) {
        memcpy(out, "0s", 3);
        return;
    }
    if (ms < 1000) {
        memcpy(fake_fmt_ll(out, ms), "ms", 3);
        return;
    }
    long m = ms / 60000, s = (ms / 1000) % 60, frac = ms % 1000;
    if (m) {
        out = fake_fmt_ll(out, m);
        *out++ = 'm';
    }
    out = fake_fmt_ll(out, s);
    if (frac) {
        *out++ = '.';
        *out++ = (char)('0' + frac / 100);
        if (frac % 100) {
            *out++ = (char)('0' + frac / 10 % 10);
            if (frac % 10)
                *out++ = (char)('0' + frac % 10);
        }
    }
    memcpy(out, "s", 2);
}

#define OPENAI_ORG "org-ahorro-fake"
#define OPENAI_MORE "Visit https://platform.openai.com/account/rate-limits to learn more."
#define ANTHROPIC_MORE                                                                             \
    "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "          \
    "response headers for current usage. Please reduce the prompt length or the maximum "          \
    "tokens requested, or try again later."

static void refuse(fake_reply_t *r, int api, const char *model, rl_verdict_t v, long long limit,
                   long long used, long long requested, long wait_ms)
{
    char in[48];
    duration(in, wait_ms);
    if (api == FAKE_API_ANTHROPIC) {
        fake_anthropic_error(r, 429, "rate_limit_error",
                             "This request would exceed the rate limit for your organization "
                             "(ahorro-fake) of %lld %s per minute for %.*s. " ANTHROPIC_MORE,
                             limit, v == RL_REQUESTS ? "requests" : "tokens", RL_KEY_MAX, model);
    } else if (v == RL_TOO_LARGE) {
        fake_openai_error(
            r, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
            "Request too large for %.*s in organization " OPENAI_ORG
            " on tokens per min (TPM): Limit %lld, Requested %lld. The input or "
            "output tokens must be reduced in order to run successfully. " OPENAI_MORE,
            RL_KEY_MAX, model, limit, requested);
    } else {
        fake_openai_error(r, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                          "Rate limit reached for %.*s in organization " OPENAI_ORG
                          " on %s: Limit %lld, Used %lld, Requested %lld. Please try again in "
                          "%s. " OPENAI_MORE,
                          RL_KEY_MAX, model,
                          v == RL_REQUESTS ? "requests per min (RPM)" : "tokens per min (TPM)",
                          limit, used, requested, in);
    }
    r->retry_after_s = (int)((wait_ms + 999) / 1000);
    if (r->retry_after_s < 1)
        r->retry_after_s = 1;
}

int fake_limits_admit(const fake_ctx_t *ctx, fake_reply_t *r, int api, long prompt_tokens,
                      long max_tokens)
{
    ctx->meter->prompt_tokens = prompt_tokens;
    ctx->meter->max_tokens = max_tokens;
    if (!fake_limits_enabled || !ctx->meter->model)
        return 0;
    rl_win_t *w = win_for(ctx->meter->model);
    if (!w)
        return 0;

    /* What TPM counts: the prompt plus what the answer may take (OpenAI's estimate). */
    long long tokens = prompt_tokens > 0 ? prompt_tokens : 0;
    if (max_tokens > 0)
        tokens += max_tokens > FAKE_RL_MAX_LIMIT ? FAKE_RL_MAX_LIMIT : max_tokens;
    int64_t now = ctx->t_ms;
    rl_verdict_t v = RL_OK;
    long long limit = 0, used = 0, requested = 0;
    long wait_ms = 0;

    pthread_mutex_lock(&w->lock);
    win_advance(w, now / FAKE_RL_BUCKET_MS);
    if (w->rpm && w->nreq + 1 > w->rpm) {
        v = RL_REQUESTS;
        limit = w->rpm;
        used = w->nreq;
        requested = 1;
        wait_ms = win_wait(w, w->nreq + 1 - w->rpm, 0, now);
    } else if (w->tpm && tokens > w->tpm) {
        v = RL_TOO_LARGE;
        limit = w->tpm;
        used = w->ntok;
        requested = tokens;
        wait_ms = FAKE_RL_WINDOW_MS;
    } else if (w->tpm && w->ntok + tokens > w->tpm) {
        v = RL_TOKENS;
        limit = w->tpm;
        used = w->ntok;
        requested = tokens;
        wait_ms = win_wait(w, w->ntok + tokens - w->tpm, 1, now);
    } else {
        size_t i = (size_t)(w->head % RL_BUCKETS);
        w->req[i]++;
        w->tok[i] += tokens;
        w->nreq++;
        w->ntok += tokens;
    }
    fake_rl_info_t *rl = &r->rl;
    rl->api = api;
    rl->now_ms = now;
    rl->limit_req = w->rpm;
    rl->remaining_req = w->rpm > w->nreq ? w->rpm - w->nreq : 0;
    rl->reset_req_ms = win_reset(w, 0, now);
    rl->limit_tok = w->tpm;
    rl->remaining_tok = w->tpm > w->ntok ? w->tpm - w->ntok : 0;
    rl->reset_tok_ms = win_reset(w, 1, now);
    pthread_mutex_unlock(&w->lock);

    if (v == RL_OK)
        return 0;
    if (v == RL_REQUESTS)
        rl->remaining_req = 0;
    else
        rl->remaining_tok = 0;
    atomic_fetch_add(&refused, 1);
    refuse(r, api, ctx->meter->model, v, limit, used, requested, wait_ms);
    return 1;
}

/* ---- headers ------------------------------------------------------------------------- */

static void add_ll(struct evkeyvalq *h, const char *name, long long v)
{
    char buf[24];
    fake_fmt_ll(buf, v);
    evhttp_add_header(h, name, buf);
}

/* An RFC 3339 UTC time, rounded up to the second, as Anthropic's resets are. */
static void add_time(struct evkeyvalq *h, const char *name, int64_t ms)
{
    time_t t = (time_t)((ms + 999) / 1000);
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    evhttp_add_header(h, name, buf);
}

void fake_limits_headers(struct evkeyvalq *h, const fake_reply_t *r)
{
    const fake_rl_info_t *rl = &r->rl;
    char d[48];
    if (rl->api == FAKE_API_ANTHROPIC) {
        if (rl->limit_req) {
            add_ll(h, "anthropic-ratelimit-requests-limit", rl->limit_req);
            add_ll(h, "anthropic-ratelimit-requests-remaining", rl->remaining_req);
            add_time(h, "anthropic-ratelimit-requests-reset", rl->now_ms + rl->reset_req_ms);
        }
        if (rl->limit_tok) {
            add_ll(h, "anthropic-ratelimit-tokens-limit", rl->limit_tok);
            add_ll(h, "anthropic-ratelimit-tokens-remaining", rl->remaining_tok);
            add_time(h, "anthropic-ratelimit-tokens-reset", rl->now_ms + rl->reset_tok_ms);
        }
        return;
    }
    if (rl->limit_req) {
        add_ll(h, "x-ratelimit-limit-requests", rl->limit_req);
        add_ll(h, "x-ratelimit-remaining-requests", rl->remaining_req);
        duration(d, rl->reset_req_ms);
        evhttp_add_header(h, "x-ratelimit-reset-requests", d);
    }
    if (rl->limit_tok) {
        add_ll(h, "x-ratelimit-limit-tokens", rl->limit_tok);
        add_ll(h, "x-ratelimit-remaining-tokens", rl->remaining_tok);
        duration(d, rl->reset_tok_ms);
        evhttp_add_header(h, "x-ratelimit-reset-tokens", d);
    }
}
