/* route.c - stage 6: which model, then which deployment, answers.
 *
 * In order:
 *   1. rules (ahorro.routing.rules): the first rule whose conditions all
 *      hold (tag, key or tenant, requested model, request size) sends the
 *      request to its model or router;
 *   2. routers: a requested name that is a router ("auto") scores the
 *      request (complexity, or a learned model) and takes the tier's model;
 *   3. the alias's deployments, chosen by the balancer (strategy, health,
 *      rpm/tpm), with the alias's fallback chain behind it for stage 7.
 * The reason of each step goes into x-ahorro-route-reason and the ledger. */
#include "pipeline/pipeline.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "core/log.h"
#include "route/balance.h"
#include "route/complexity.h"
#include "route/learned.h"
#include "route/rank.h"
#include "route/router_rt.h"

/* Characters of message text (strings and text parts): the request size of
 * rules, and the base of the token estimate. */
static long prompt_chars(const json_t *body)
{
    long n = 0;
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(json_object_get(body, "messages"), i, m)
    {
        json_t *c = json_object_get(m, "content");
        if (json_is_string(c))
            n += (long)json_string_length(c);
        else
            json_array_foreach(c, k, part)
            {
                json_t *t = json_object_get(part, "text");
                if (json_is_string(t))
                    n += (long)json_string_length(t);
            }
    }
    json_t *input = json_object_get(body, "input"); /* embeddings */
    if (json_is_string(input))
        n += (long)json_string_length(input);
    else
        json_array_foreach(input, i, m) if (json_is_string(m)) n += (long)json_string_length(m);
    return n;
}

static int rule_matches(const ah_route_rule_t *ru, const ah_request_t *r, const char *target,
                        long chars)
{
    if (ru->tag_key) {
        const char *v = json_string_value(json_object_get(r->tags, ru->tag_key));
        if (!v || (strcmp(ru->tag_value, "*") != 0 && strcmp(ru->tag_value, v) != 0))
            return 0;
    }
    if (ru->key_id && !((r->key_id && strcmp(ru->key_id, r->key_id) == 0) ||
                        (r->owner && strcmp(ru->key_id, r->owner) == 0)))
        return 0;
    if (ru->requested && strcmp(ru->requested, target) != 0)
        return 0;
    if (ru->min_prompt_chars && chars < ru->min_prompt_chars)
        return 0;
    if (ru->max_prompt_chars && chars > ru->max_prompt_chars)
        return 0;
    return 1;
}

/* Append "; text" to the reason being built. */
static void reason_add(char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reason_add(char *buf, size_t n, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len && len + 2 < n) {
        memcpy(buf + len, "; ", 3);
        len += 2;
    }
    if (len >= n)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, n - len, fmt, ap);
    va_end(ap);
}

/* v in short scientific notation: 4.2e3, -1.5e-2. */
static void fmt_sci(char *buf, size_t n, double v)
{
    if (!isfinite(v) || v == 0) {
        snprintf(buf, n, "%s", v == 0 ? "0" : v > 0 ? "inf" : "-inf");
        return;
    }
    int e = (int)floor(log10(fabs(v)));
    double m = v / pow(10, e);
    if (fabs(round(m * 10) / 10) >= 10) { /* 9.96 rounds to 10.0 */
        e++;
        m /= 10;
    }
    snprintf(buf, n, "%.1fe%d", m, e);
}

/* rank gain_per_dollar: the strong tier when the expected accuracy gain per
 * extra USD of this request reaches the threshold (route/rank.h). */
static const char *route_by_gain(ah_worker_t *w, ah_request_t *r, const ah_router_cfg_t *rt,
                                 const char *kind, double score, char *reason, size_t rn)
{
    const ah_router_tier_t *strong = &rt->tiers[0], *cheap = &rt->tiers[rt->ntiers - 1];
    double ps[2], pc[2], extra = NAN;
    const char *unpriced = NULL;
    if (ah_balancer_price(w->gw->balancer, strong->model, &ps[0], &ps[1]))
        unpriced = strong->model;
    else if (ah_balancer_price(w->gw->balancer, cheap->model, &pc[0], &pc[1]))
        unpriced = cheap->model;
    else
        extra = ah_rank_extra_usd((double)r->est_tokens, (double)ah_rank_output_tokens(rt, r->body),
                                  pc, ps);
    double gain;
    const ah_router_tier_t *t = ah_rank_pick(rt, score, 0, extra, &gain);
    if (unpriced) {
        reason_add(reason, rn,
                   "router %s: tier %s (%s score %.2f %s 0.5: no price known for '%s', ranked by "
                   "score)",
                   rt->name, t->name, kind, score, score >= 0.5 ? ">=" : "<", unpriced);
    } else if (extra <= 0) {
        reason_add(reason, rn, "router %s: tier %s (%s score %.2f %s 0.5: '%s' is not dearer)",
                   rt->name, t->name, kind, score, score >= 0.5 ? ">=" : "<", strong->model);
    } else {
        char g[32], m[32];
        fmt_sci(g, sizeof g, gain);
        fmt_sci(m, sizeof m, strong->min_gain_per_usd);
        reason_add(reason, rn, "router %s: tier %s (%s score %.2f, gain %s/USD %s %s)", rt->name,
                   t->name, kind, score, g, t == strong ? ">=" : "<", m);
    }
    return t->model;
}

/* Score r for router rt and return the tier's model. */
static const char *route_by_router(ah_worker_t *w, ah_request_t *r, const ah_router_cfg_t *rt,
                                   char *reason, size_t rn)
{
    ah_cx_t cx;
    ah_cx_score(r->body, r->tags, &cx);
    double score = cx.score;
    const char *kind = "complexity";
    const ah_learned_t *lm = ah_router_rt_model(w->gw->routers, rt);
    if (lm) {
        score = ah_learned_score(lm, r->body, ah_router_rt_embedder(w->gw->routers));
        kind = "learned";
    }
    if (cx.criticality >= rt->critical_threshold) {
        const ah_router_tier_t *t = ah_router_pick(rt, score, cx.criticality);
        reason_add(reason, rn, "router %s: tier %s (critical %.2f: %s)", rt->name, t->name,
                   cx.criticality, cx.critical_cue ? cx.critical_cue : "cues");
        return t->model;
    }
    if (rt->rank == AH_RANK_GAIN_PER_DOLLAR)
        return route_by_gain(w, r, rt, kind, score, reason, rn);
    const ah_router_tier_t *t = ah_router_pick(rt, score, cx.criticality);
    char sig[128] = "";
    for (int k = 0; k < cx.ntop; k++) {
        size_t l = strlen(sig);
        snprintf(sig + l, sizeof sig - l, "%s%s", k ? ", " : "", cx.top[k]);
    }
    reason_add(reason, rn, "router %s: tier %s (%s score %.2f%s%s)", rt->name, t->name, kind, score,
               sig[0] ? ": " : "", sig);
    return t->model;
}

/* The fallback chain of alias: alias first, then its fallbacks depth first
 * (each followed by its own), each alias once. */
static void chain_add(const ah_routing_config_t *rc, const char *alias, const char **chain, int *n)
{
    for (int k = 0; k < *n; k++)
        if (strcmp(chain[k], alias) == 0)
            return;
    if (*n >= AH_ROUTE_MAX_CHAIN)
        return;
    chain[(*n)++] = alias;
    for (size_t i = 0; i < rc->nfallbacks; i++)
        if (strcmp(rc->fallbacks[i].from, alias) == 0)
            for (size_t j = 0; j < rc->fallbacks[i].nto; j++)
                chain_add(rc, rc->fallbacks[i].to[j], chain, n);
}

int ah_stage_route(ah_worker_t *w, ah_request_t *r)
{
    const ah_config_t *cfg = w->gw->cfg;
    const ah_routing_config_t *rc = &cfg->routing;
    char reason[384] = "";
    const char *target = r->model;
    /* Savings are measured against the model asked for; for a router, its
     * strongest model (what the client would use without it). */
    const ah_router_cfg_t *asked = ah_config_router(cfg, r->model);
    if (!asked)
        r->baseline_alias = r->model;
    else if (asked->kind == AH_ROUTER_CASCADE)
        r->baseline_alias = asked->cascade[asked->ncascade - 1];
    else if (asked->ntiers)
        r->baseline_alias = asked->tiers[0].model;
    if (r->downgrade_to) { /* a spent budget (stage 3) */
        target = r->downgrade_to;
        reason_add(reason, sizeof reason, "%s", r->downgrade_reason);
    }
    long chars = prompt_chars(r->body);
    r->est_tokens = ah_rank_est_tokens(chars);
    for (size_t i = 0; !r->downgrade_to && i < rc->nrules; i++) /* enforcement wins */
        if (rule_matches(&rc->rules[i], r, target, chars)) {
            const ah_route_rule_t *ru = &rc->rules[i];
            if (ru->tag_key)
                reason_add(reason, sizeof reason, "rule %zu (%s=%s) -> %s", i + 1, ru->tag_key,
                           ru->tag_value, ru->model);
            else
                reason_add(reason, sizeof reason, "rule %zu -> %s", i + 1, ru->model);
            target = ru->model;
            break;
        }
    const ah_router_cfg_t *rt = ah_config_router(cfg, target);
    if (rt && rt->kind == AH_ROUTER_CASCADE) {
        /* Answers are checked whole: a stream goes to the last step. */
        if (r->stream || r->op != AH_OP_CHAT) {
            target = rt->cascade[rt->ncascade - 1];
            reason_add(reason, sizeof reason, "cascade %s: %s goes to its last step, %s", rt->name,
                       r->stream ? "a stream" : "this request", target);
        } else {
            r->cascade = rt->cascade;
            r->ncascade = (int)rt->ncascade;
            target = rt->cascade[0];
            reason_add(reason, sizeof reason, "cascade %s: step 1, %s", rt->name, target);
        }
    } else if (rt) {
        target = route_by_router(w, r, rt, reason, sizeof reason);
    }

    const char **chain = ah_arena_alloc(&r->arena, AH_ROUTE_MAX_CHAIN * sizeof *chain);
    int n = 0;
    chain_add(rc, target, chain, &n);
    if (strcmp(target, r->model) != 0 && !r->downgrade_to) /* the asked model's fallbacks */
        for (size_t i = 0; i < rc->nfallbacks; i++)
            if (strcmp(rc->fallbacks[i].from, r->model) == 0)
                for (size_t j = 0; j < rc->fallbacks[i].nto; j++)
                    chain_add(rc, rc->fallbacks[i].to[j], chain, &n);

    /* The first healthy alias of the chain; when all are cooling down, the
     * routed one anyway (a request is never refused for health alone). */
    ah_pick_opts_t o = {.tokens = r->est_tokens, .rng = &w->rng};
    ah_pick_t why = AH_PICK_UNKNOWN, first_why = AH_PICK_UNKNOWN;
    double retry_in = 0;
    const ah_deployment_t *d = NULL;
    int pos = 0;
    for (; pos < n && !d; pos++) {
        d = ah_balancer_pick(w->gw->balancer, chain[pos], &o, &why, &retry_in);
        if (pos == 0)
            first_why = why;
    }
    pos--;
    if (!d && first_why == AH_PICK_COOLING) {
        o.allow_cooling = 1;
        pos = 0;
        d = ah_balancer_pick(w->gw->balancer, chain[0], &o, &why, &retry_in);
    }
    if (!d) {
        if (first_why == AH_PICK_LIMITED || why == AH_PICK_LIMITED) {
            ah_request_fail(r, 429, "rate_limit_error", "rate_limit_exceeded", NULL,
                            "Every deployment of model '%s' is at its configured rate limit "
                            "(rpm/tpm); retry after the current minute",
                            target);
            r->fail.retry_after_s = retry_in > 1 ? (int)retry_in : 1;
            return r->fail.status;
        }
        return ah_request_fail(r, 404, "invalid_request_error", "model_not_found", "model",
                               "The model '%s' does not exist or is not served by this gateway",
                               target);
    }
    r->chain = chain + pos;
    r->nchain = n - pos;
    r->dep = d;
    r->upstream_model = strcmp(d->model, "*") == 0 ? chain[pos] : d->model;
    if (pos > 0)
        reason_add(reason, sizeof reason, "fallback to %s (%s %s)", chain[pos], chain[0],
                   first_why == AH_PICK_LIMITED ? "at its rate limit" : "cooling down");
    else if (!reason[0])
        reason_add(reason, sizeof reason, "%s",
                   strcmp(d->alias, chain[pos]) == 0 ? "alias" : "wildcard");
    r->route_reason = ah_arena_strdup(&r->arena, reason);
    return 0;
}
