/* guard.c - stage 3: budgets and rate limits.
 *
 * Before the cache (stage 3 proper): every rate limit whose scope the
 * request falls in takes one request from its minute's window (rpm) and
 * its estimated tokens (tpm), atomically, or the request is refused with
 * 429, Retry-After and OpenAI's x-ratelimit-* headers. A budget already
 * spent for its period acts: downgrade (the request goes to a cheaper
 * model) or throttle (a per-minute cap); those are read here. A budget that
 * rejects is not: its reservation below refuses a spent budget anyway, and
 * says so ("is spent", the same 429), which saves a round trip to a shared
 * state on every request. A spent budget therefore still lets cache hits
 * through (they cost nothing).
 *
 * After routing, on a cache miss (ah_stage_guard_reserve): every budget the
 * request falls in reserves its worst-case cost - an upper bound of its
 * prompt tokens plus its max_tokens, at the dearest price among the
 * deployments it may reach - with a conditional add that fails when the
 * budget would be overrun. Concurrent requests therefore cannot overrun a
 * budget by more than what one worst case and the settling of estimates
 * allow; the test fires 200 requests at once at a nearly spent budget.
 * ah_stage_guard_settle replaces each reservation by the real cost (and
 * real tokens) once known, then sends the alerts whose thresholds the
 * spend crossed: to the log, and to the budget's webhook, once per
 * threshold and period. Nobody waits for a settlement's answer: it is
 * ah_state_add_later (with Redis, sent by a background writer; state.h),
 * and its alerts are judged on the counter as the reservation left it,
 * corrected by this request's own settlement. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "guard/guard.h"
#include "pipeline/pipeline.h"

#define MAX_HOLDS 32
/* Tokens an image may cost at most (OpenAI's high detail, 2048 x 768 tiles). */
#define IMAGE_TOKENS_BOUND 2000
#define MESSAGE_TOKENS_BOUND 8
/* Tokens a provider adds to a request with tools (Anthropic's tool-use system
 * prompt: 159 to about 600 Claude tokens, docs/tokenizer.md), and to one that
 * asks for an answer in a JSON schema (Anthropic's structured outputs: about
 * 200 beyond the schema), at most. */
#define TOOL_PROMPT_TOKENS_BOUND 1024
#define SCHEMA_PROMPT_TOKENS_BOUND 1024

static void alerts(ah_worker_t *w, const ah_budget_cfg_t *b, const char *key, int64_t val,
                   int64_t expires_ms, int full);

static ah_guard_hold_t *hold_add(ah_request_t *r)
{
    if (!r->holds)
        r->holds = ah_arena_alloc(&r->arena, MAX_HOLDS * sizeof *r->holds);
    if (r->nholds >= MAX_HOLDS)
        return NULL;
    ah_guard_hold_t *h = &r->holds[r->nholds++];
    memset(h, 0, sizeof *h);
    return h;
}

static long json_bytes(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    long n = s ? (long)strlen(s) : 0;
    free(s);
    return n;
}

/* An upper bound of the prompt's tokens: a BPE token is at least one byte,
 * so the bytes of the text, plus each message's framing and each image's
 * most; tools and answer schemas count by the bytes of their JSON, plus what
 * the provider adds for them. */
static long prompt_tokens_bound(const ah_request_t *r)
{
    const json_t *body = r->body;
    long n = 3;
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(json_object_get(body, "messages"), i, m)
    {
        json_t *c = json_object_get(m, "content");
        n += MESSAGE_TOKENS_BOUND;
        if (json_is_string(c))
            n += (long)json_string_length(c);
        json_array_foreach(c, k, part)
        {
            json_t *t = json_object_get(part, "text");
            if (json_is_string(t))
                n += (long)json_string_length(t);
            else
                n += IMAGE_TOKENS_BOUND;
        }
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls)
            n += json_bytes(calls);
    }
    json_t *tools = json_object_get(body, "tools");
    if (tools)
        n += json_bytes(tools) + (json_array_size(tools) ? TOOL_PROMPT_TOKENS_BOUND : 0);
    /* an answer schema: OpenAI's response_format of type json_schema;
     * Anthropic's output_config.format and output_format, which travel in
     * the client's own body only */
    const json_t *rf = json_object_get(body, "response_format");
    const char *rf_type = json_string_value(json_object_get(rf, "type"));
    const json_t *schemas[] = {
        rf_type && strcmp(rf_type, "json_schema") == 0 ? rf : NULL,
        r->raw ? json_object_get(json_object_get(r->raw, "output_config"), "format") : NULL,
        r->raw ? json_object_get(r->raw, "output_format") : NULL};
    for (size_t s = 0; s < sizeof schemas / sizeof *schemas; s++)
        if (schemas[s])
            n += json_bytes(schemas[s]) + SCHEMA_PROMPT_TOKENS_BOUND;
    json_t *input = json_object_get(body, "input");
    if (json_is_string(input))
        n += (long)json_string_length(input);
    json_array_foreach(input, i, m) n += json_is_string(m) ? (long)json_string_length(m) : 16;
    return n;
}

static long max_output(const json_t *body)
{
    json_t *v = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(v))
        v = json_object_get(body, "max_tokens");
    return json_is_integer(v) && json_integer_value(v) > 0 ? (long)json_integer_value(v) : -1;
}

/* The rate-limit headers report the tightest window the request is in. */
static void note_window(ah_request_t *r, int tokens, long limit, long remaining, int reset_s)
{
    long *lim = tokens ? &r->rl_limit_tok : &r->rl_limit_req;
    long *rem = tokens ? &r->rl_remaining_tok : &r->rl_remaining_req;
    if (*lim < 0 || remaining < *rem) {
        *lim = limit;
        *rem = remaining < 0 ? 0 : remaining;
        r->rl_reset_s = reset_s;
    }
}

static int refuse(ah_request_t *r, const char *code, int retry_s, const char *fmt, const char *a,
                  long b)
{
    ah_request_fail(r, 429, "rate_limit_error", code, NULL, fmt, a, b);
    r->fail.retry_after_s = retry_s > 0 ? retry_s : 1;
    return r->fail.status;
}

/* A counter refused with value -1: not a limit reached, but the state that
 * holds the counters failed (Redis unreachable with state.on_failure:
 * closed, or the local table full). A 503 that says so, not a misleading
 * "limit reached". */
static int state_down(ah_request_t *r)
{
    ah_request_fail(r, 503, "api_error", "state_unavailable", NULL,
                    "The gateway cannot check its budgets and rate limits right now (the shared "
                    "state is unreachable or full), and it is configured to refuse meanwhile");
    r->fail.retry_after_s = 1;
    return r->fail.status;
}

/* What a counter op of a plan is for. */
enum { OP_RPM, OP_TPM, OP_SPENT, OP_RESERVE };

typedef struct guard_meta {
    int kind;
    size_t index;      /* of the rate limit or budget */
    const char *value; /* the scope's value (request's or config's) */
} guard_meta_t;

/* The counter ops of stage 3 or of the reservation, asked for all at once
 * (ah_state_add_all), then judged in order as if asked one by one. */
struct ah_guard_plan {
    int wait; /* AH_GUARD_WAIT_LIMITS or AH_GUARD_WAIT_RESERVE */
    int n;
    ah_state_op_t *ops;
    guard_meta_t *meta;
    int64_t need; /* the reservation's worst case, nano-USD */
    double worst; /* the same, USD */
    int64_t now, minute;
    int reset_s;
};

static ah_guard_plan_t *plan_new(ah_request_t *r, int wait, int cap)
{
    ah_guard_plan_t *p = ah_arena_alloc(&r->arena, sizeof *p);
    memset(p, 0, sizeof *p);
    p->wait = wait;
    p->ops = ah_arena_alloc(&r->arena, (size_t)(cap ? cap : 1) * sizeof *p->ops);
    p->meta = ah_arena_alloc(&r->arena, (size_t)(cap ? cap : 1) * sizeof *p->meta);
    p->now = r->wall_ms;
    p->minute = p->now / 60000;
    p->reset_s = (int)(60 - (p->now / 1000) % 60);
    return p;
}

static void plan_add(ah_request_t *r, ah_guard_plan_t *p, int kind, size_t index, const char *value,
                     const char *key, int64_t delta, int64_t limit, int64_t expires_ms)
{
    ah_state_op_t *o = &p->ops[p->n];
    *o = (ah_state_op_t){.key = ah_arena_strdup(&r->arena, key),
                         .delta = delta,
                         .limit = limit,
                         .expires_ms = expires_ms};
    p->meta[p->n] = (guard_meta_t){.kind = kind, .index = index, .value = value};
    p->n++;
}

static int judge_limits(ah_worker_t *w, ah_request_t *r, ah_guard_plan_t *p);
static int judge_reserve(ah_worker_t *w, ah_request_t *r, ah_guard_plan_t *p);

/* Ask for p's counters: at once with a state that answers in-process (and
 * judge them), else leave r waiting for the exchange (ah_stage_guard_count). */
static int plan_run(ah_worker_t *w, ah_request_t *r, ah_guard_plan_t *p)
{
    ah_state_t *st = ah_guard_state(w->gw->guard);
    if (!p->n)
        return 0;
    r->guard_plan = p;
    if (st->ops->add_all) {
        r->guard_pending = p->wait;
        return 0;
    }
    ah_state_call_t *none;
    ah_state_add_all(st, NULL, p->ops, p->n, NULL, NULL, &none);
    return ah_stage_guard_counted(w, r);
}

int ah_stage_guard(ah_worker_t *w, ah_request_t *r)
{
    ah_guard_t *g = w->gw->guard;
    if (!g)
        return 0;
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    ah_guard_plan_t *p =
        plan_new(r, AH_GUARD_WAIT_LIMITS, (int)(2 * gc->nrate_limits + gc->nbudgets));
    char key[600];
    long est = -1;
    for (size_t i = 0; i < gc->nrate_limits; i++) {
        const ah_rate_limit_cfg_t *rl = &gc->rate_limits[i];
        const char *v = ah_guard_scope_value(&rl->scope, r->key_id, r->owner, r->user, r->tags);
        if (!v)
            continue;
        if (rl->rpm) {
            snprintf(key, sizeof key, "r%zu:q:%s:%lld", i, v, (long long)p->minute);
            plan_add(r, p, OP_RPM, i, v, key, 1, rl->rpm, (p->minute + 2) * 60000);
        }
        if (rl->tpm) {
            if (est < 0)
                est = prompt_tokens_bound(r) / 4 +
                      (max_output(r->body) > 0 ? max_output(r->body) : 0);
            snprintf(key, sizeof key, "r%zu:t:%s:%lld", i, v, (long long)p->minute);
            /* A request alone over the whole tpm still goes in a fresh minute. */
            plan_add(r, p, OP_TPM, i, v, key, est > rl->tpm ? rl->tpm : est, rl->tpm,
                     (p->minute + 2) * 60000);
        }
    }
    for (size_t i = 0; i < gc->nbudgets; i++) {
        const ah_budget_cfg_t *b = &gc->budgets[i];
        const char *v = ah_guard_scope_value(&b->scope, r->key_id, r->owner, r->user, r->tags);
        if (!v || b->action == AH_BUDGET_REJECT)
            continue; /* the reservation refuses it (ah_stage_guard_reserve) */
        int64_t start, end;
        ah_guard_period(g, i, p->now, &start, &end);
        ah_guard_budget_key(i, v, start, key, sizeof key);
        plan_add(r, p, OP_SPENT, i, v, key, 0, AH_STATE_NO_LIMIT, 0);
    }
    return plan_run(w, r, p);
}

/* Give back what ops from..n-1 of p took (they were asked, not needed). */
static void give_back(ah_worker_t *w, ah_guard_plan_t *p, int from)
{
    ah_state_t *st = ah_guard_state(w->gw->guard);
    for (int k = from; k < p->n; k++)
        if (p->ops[k].added && p->ops[k].delta > 0 && p->ops[k].value >= 0)
            ah_state_add_later(st, p->ops[k].key, -p->ops[k].delta, p->ops[k].expires_ms, NULL);
}

static int judge_limits(ah_worker_t *w, ah_request_t *r, ah_guard_plan_t *p)
{
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    char desc[300];
    for (int k = 0; k < p->n; k++) {
        const ah_state_op_t *o = &p->ops[k];
        const guard_meta_t *m = &p->meta[k];
        if (m->kind == OP_SPENT) {
            const ah_budget_cfg_t *b = &gc->budgets[m->index];
            if (o->value < (int64_t)llround(b->limit_usd * AH_GUARD_NANO))
                continue;
            ah_guard_scope_describe(&b->scope, m->value, desc, sizeof desc);
            if (b->action == AH_BUDGET_DOWNGRADE && !r->downgrade_to) {
                r->downgrade_to = b->downgrade_to;
                char why[400];
                snprintf(why, sizeof why, "budget %s spent (%s): downgraded to %s", b->name, desc,
                         b->downgrade_to);
                r->downgrade_reason = ah_arena_strdup(&r->arena, why);
            } else if (b->action == AH_BUDGET_THROTTLE) {
                /* A spent budget that throttles: one more count, now (rare:
                 * only once the budget is spent). */
                char key[600];
                int64_t val;
                snprintf(key, sizeof key, "bt%zu:%s:%lld", m->index, m->value,
                         (long long)p->minute);
                if (!ah_state_add_if(ah_guard_state(w->gw->guard), key, 1, b->throttle_rpm,
                                     (p->minute + 2) * 60000, &val)) {
                    give_back(w, p, k + 1);
                    if (val < 0)
                        return state_down(r);
                    note_window(r, 0, b->throttle_rpm, 0, p->reset_s);
                    return refuse(
                        r, "rate_limit_exceeded", p->reset_s,
                        "Budget '%s' is spent: its requests are throttled to %ld a minute", b->name,
                        b->throttle_rpm);
                }
            }
            continue;
        }
        const ah_rate_limit_cfg_t *rl = &gc->rate_limits[m->index];
        int tokens = m->kind == OP_TPM;
        long limit = tokens ? rl->tpm : rl->rpm;
        if (!o->added) {
            give_back(w, p, k + 1);
            if (o->value < 0)
                return state_down(r);
            note_window(r, tokens, limit, tokens ? limit - (long)o->value : 0, p->reset_s);
            ah_guard_scope_describe(&rl->scope, m->value, desc, sizeof desc);
            return refuse(r, "rate_limit_exceeded", p->reset_s,
                          tokens ? "Rate limit reached for %s: %ld tokens per minute"
                                 : "Rate limit reached for %s: %ld requests per minute",
                          desc, limit);
        }
        note_window(r, tokens, limit, limit - (long)o->value, p->reset_s);
        ah_guard_hold_t *h = tokens ? hold_add(r) : NULL;
        if (h) {
            h->key = o->key;
            h->reserved = o->delta;
            h->seen = o->value;
            h->expires_ms = o->expires_ms;
            h->budget = -1;
            h->tokens = 1;
        }
    }
    return 0;
}

/* The dearest input and output price (USD per token) among the deployments
 * of an alias; 0 when none is known. */
static void alias_price(ah_worker_t *w, const char *alias, double *in, double *out)
{
    const ah_config_t *c = w->gw->cfg;
    const ah_deployment_t *first = ah_config_route(c, alias, 0);
    for (size_t d = 0; first && d < c->ndeps; d++) {
        if (strcmp(c->deps[d].alias, first->alias) != 0)
            continue;
        double i, o;
        ah_guard_price(w->gw->guard, (int)d, &i, &o);
        if (i > *in)
            *in = i;
        if (o > *out)
            *out = o;
    }
}

int ah_stage_guard_reserve(ah_worker_t *w, ah_request_t *r)
{
    ah_guard_t *g = w->gw->guard;
    if (!g || !w->gw->cfg->guard.nbudgets || !r->dep)
        return 0;
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    int any = 0;
    for (size_t i = 0; i < gc->nbudgets && !any; i++)
        any = ah_guard_scope_value(&gc->budgets[i].scope, r->key_id, r->owner, r->user, r->tags) !=
              NULL;
    if (!any)
        return 0;
    /* The request's output bound: its own, else the configured one, which
     * is then sent upstream so that the bound holds. */
    long out_tokens = max_output(r->body);
    if (out_tokens < 0 && r->op == AH_OP_CHAT) {
        out_tokens = gc->default_max_tokens;
        const char *m = r->upstream_model ? r->upstream_model : "";
        int reasoning = (m[0] == 'o' && m[1] >= '1' && m[1] <= '9') || strncmp(m, "gpt-5", 5) == 0;
        json_object_set_new(r->body, reasoning ? "max_completion_tokens" : "max_tokens",
                            json_integer(out_tokens));
    }
    if (out_tokens < 0)
        out_tokens = 0;
    /* Dearest price among what the request may reach: its chain's aliases
     * (fallbacks), or every step of a cascade (they add up). */
    double in = 0, out = 0, worst = 0;
    long prompt = prompt_tokens_bound(r);
    if (r->cascade) {
        for (int k = 0; k < r->ncascade; k++) {
            double i = 0, o = 0;
            alias_price(w, r->cascade[k], &i, &o);
            worst += i * (double)prompt + o * (double)out_tokens;
        }
    }
    for (int k = 0; k < r->nchain; k++)
        alias_price(w, r->chain[k], &in, &out);
    if (!r->chain)
        alias_price(w, r->dep->alias, &in, &out);
    double one = in * (double)prompt + out * (double)out_tokens;
    if (one > worst)
        worst = one;
    ah_guard_plan_t *p = plan_new(r, AH_GUARD_WAIT_RESERVE, (int)gc->nbudgets);
    p->worst = worst;
    p->need = (int64_t)ceil(worst * AH_GUARD_NANO);
    char key[600];
    for (size_t i = 0; i < gc->nbudgets; i++) {
        const ah_budget_cfg_t *b = &gc->budgets[i];
        const char *v = ah_guard_scope_value(&b->scope, r->key_id, r->owner, r->user, r->tags);
        if (!v)
            continue;
        int64_t start, end;
        ah_guard_period(g, i, p->now, &start, &end);
        ah_guard_budget_key(i, v, start, key, sizeof key);
        int64_t full = (int64_t)llround(b->limit_usd * AH_GUARD_NANO);
        plan_add(r, p, OP_RESERVE, i, v, key, p->need,
                 b->action == AH_BUDGET_REJECT ? full : AH_STATE_NO_LIMIT, end + 86400000);
    }
    return plan_run(w, r, p);
}

static int judge_reserve(ah_worker_t *w, ah_request_t *r, ah_guard_plan_t *p)
{
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    int refused = -1;
    for (int k = 0; k < p->n; k++) {
        const ah_state_op_t *o = &p->ops[k];
        const ah_budget_cfg_t *b = &gc->budgets[p->meta[k].index];
        int reject = b->action == AH_BUDGET_REJECT;
        int64_t full = (int64_t)llround(b->limit_usd * AH_GUARD_NANO);
        /* Spent: refused, or a request that may cost nothing (no price
         * known) at a budget already at its limit. */
        int spent = reject && o->value >= full && (!o->added || p->need == 0);
        if (refused < 0 && (!o->added || spent)) {
            refused = k;
            continue;
        }
        ah_guard_hold_t *h = o->added ? hold_add(r) : NULL;
        if (h) {
            h->key = o->key;
            h->reserved = o->delta;
            h->seen = o->value;
            h->expires_ms = o->expires_ms;
            h->budget = (int)p->meta[k].index;
        }
    }
    if (refused < 0)
        return 0;
    const ah_state_op_t *o = &p->ops[refused];
    const guard_meta_t *m = &p->meta[refused];
    const ah_budget_cfg_t *b = &gc->budgets[m->index];
    int64_t val = o->value, full = (int64_t)llround(b->limit_usd * AH_GUARD_NANO);
    int spent = b->action == AH_BUDGET_REJECT && val >= full && (!o->added || p->need == 0);
    ah_stage_guard_settle(w, r); /* gives back what the others reserved */
    if (val < 0)
        return state_down(r);
    alerts(w, b, o->key, val, o->expires_ms, 1);
    char desc[300];
    ah_guard_scope_describe(&b->scope, m->value, desc, sizeof desc);
    if (spent)
        ah_request_fail(r, 429, "insufficient_quota", "budget_exceeded", NULL,
                        "Budget '%s' (%s, per %s) is spent: $%.4f of $%.2f; it renews at "
                        "the start of the next %s",
                        b->name, desc, ah_period_name(b->period), (double)val / AH_GUARD_NANO,
                        b->limit_usd, ah_period_name(b->period));
    else
        ah_request_fail(r, 429, "insufficient_quota", "budget_exceeded", NULL,
                        "Budget '%s' (%s, per %s) cannot cover this request: $%.4f of "
                        "$%.2f spent or reserved, and this request may cost up to $%.4f",
                        b->name, desc, ah_period_name(b->period), (double)val / AH_GUARD_NANO,
                        b->limit_usd, p->worst);
    int64_t left_s = (o->expires_ms - 86400000 - p->now) / 1000;
    r->fail.retry_after_s = left_s > 86400 ? 86400 : (int)(left_s > 0 ? left_s : 1);
    return r->fail.status;
}

int ah_stage_guard_count(ah_worker_t *w, ah_request_t *r, ah_state_done_fn done, void *arg,
                         ah_state_call_t **out)
{
    ah_guard_plan_t *p = r->guard_plan;
    return ah_state_add_all(ah_guard_state(w->gw->guard), w->base, p->ops, p->n, done, arg, out);
}

void ah_stage_guard_cancel(ah_worker_t *w, ah_state_call_t *c)
{
    if (c)
        ah_state_cancel(ah_guard_state(w->gw->guard), c);
}

int ah_stage_guard_counted(ah_worker_t *w, ah_request_t *r)
{
    ah_guard_plan_t *p = r->guard_plan;
    r->guard_pending = 0;
    r->guard_plan = NULL;
    return p->wait == AH_GUARD_WAIT_LIMITS ? judge_limits(w, r, p) : judge_reserve(w, r, p);
}

/* The webhook's body: Slack's incoming webhooks read "text"; the rest is for
 * other receivers. */
typedef struct alert_call {
    char *body;
    struct curl_slist *headers;
} alert_call_t;

static void alert_headers(void *ud, long status, int retry_after_s)
{
}

static int alert_data(void *ud, const char *p, size_t n)
{
    return 0;
}

static void alert_done(void *ud, ah_err_t err, long status, const char *msg)
{
    alert_call_t *a = ud;
    if (err || status >= 300)
        ah_warn("budget alert: the webhook failed (%s, HTTP %ld)", err ? msg : "answered", status);
    curl_slist_free_all(a->headers);
    free(a->body);
    ah_free(a);
}

static void alert(ah_worker_t *w, const ah_budget_cfg_t *b, const char *value, double threshold,
                  int64_t spent, int64_t start)
{
    char desc[300], text[700];
    ah_guard_scope_describe(&b->scope, value, desc, sizeof desc);
    double usd = (double)spent / AH_GUARD_NANO;
    snprintf(text, sizeof text,
             "ahorro: budget '%s' (%s, per %s) has reached %.0f%%: $%.4f of $%.2f", b->name, desc,
             ah_period_name(b->period), threshold * 100, usd, b->limit_usd);
    ah_warn("%s", text);
    if (!b->webhook)
        return;
    json_t *j =
        json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:f,s:I}", "text", text, "budget", b->name, "scope",
                  desc, "period", ah_period_name(b->period), "threshold", threshold, "spent_usd",
                  usd, "limit_usd", b->limit_usd, "period_start_ms", (json_int_t)start);
    alert_call_t *a = ah_calloc(1, sizeof *a);
    a->body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    a->headers = curl_slist_append(NULL, "Content-Type: application/json");
    ah_http_request_t hr = {.url = b->webhook,
                            .headers = a->headers,
                            .body = a->body,
                            .body_len = a->body ? strlen(a->body) : 0,
                            .timeout_s = 10};
    static const ah_http_callbacks_t cbs = {alert_headers, alert_data, alert_done};
    if (!a->body || !ah_http_start(w->http, &hr, &cbs, a)) {
        ah_warn("budget alert: cannot start the webhook call");
        curl_slist_free_all(a->headers);
        free(a->body);
        ah_free(a);
    }
}

/* Send budget b's alerts whose thresholds val (nano-USD, on counter key)
 * has reached, each once per period; a budget that refuses requests
 * (full) has reached every threshold up to 100%. */
static void alerts(ah_worker_t *w, const ah_budget_cfg_t *b, const char *key, int64_t val,
                   int64_t expires_ms, int full)
{
    int64_t limit = (int64_t)llround(b->limit_usd * AH_GUARD_NANO);
    const char *v = strchr(key, ':') + 1, *colon = strrchr(key, ':');
    for (int t = 0; t < b->nalerts; t++) {
        if ((double)val < b->alerts[t] * (double)limit && !(full && b->alerts[t] <= 1.0))
            break;
        char value[400], mark[700];
        snprintf(value, sizeof value, "%.*s", (int)(colon - v), v);
        snprintf(mark, sizeof mark, "a%s:%d", key, t);
        if (ah_state_add_if(ah_guard_state(w->gw->guard), mark, 1, 1, expires_ms, NULL))
            alert(w, b, value, b->alerts[t], val, strtoll(colon + 1, NULL, 10));
    }
}

void ah_stage_guard_settle(ah_worker_t *w, ah_request_t *r)
{
    ah_guard_t *g = w->gw->guard;
    if (!g || !r->nholds)
        return;
    ah_state_t *st = ah_guard_state(g);
    const ah_guard_config_t *gc = &w->gw->cfg->guard;
    double usd = (r->cost_known ? r->cost_usd : 0) + r->attempts_cost_usd;
    int64_t cost = (int64_t)llround(usd * AH_GUARD_NANO);
    int64_t tokens = r->usage.input_tokens + r->usage.output_tokens;
    for (int k = 0; k < r->nholds; k++) {
        ah_guard_hold_t *h = &r->holds[k];
        int64_t actual = h->tokens ? tokens : cost, val;
        /* Nobody waits for the answer: with Redis it is queued. The
         * counter is then taken as the reservation left it, with this
         * request's reservation replaced by its cost. */
        if (!ah_state_add_later(st, h->key, actual - h->reserved, h->expires_ms, &val))
            val = h->seen < 0 ? -1 : h->seen - h->reserved + actual;
        /* Alerts on what is spent: others' reservations are part of val,
         * so only a request that spent something may cross a threshold. */
        if (h->budget >= 0 && actual > 0 && val >= 0)
            alerts(w, &gc->budgets[h->budget], h->key, val, h->expires_ms, 0);
    }
    r->nholds = 0;
}
