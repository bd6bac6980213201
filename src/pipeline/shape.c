/* shape.c - stage 4: fewer tokens in and out.
 *
 * Resolves the request's shaping policy (config default, its route's, its
 * feature's, the body's `shape` object), resolves a prompt template
 * (`prompt_id`), and hands the canonical body to the engine (shape/shape.h).
 * It also notes the request's static prefix (system messages and tools) as a
 * hash and a token estimate, so `ahorro prompts audit` can find prefixes
 * that providers' prompt caches could serve. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/hash.h"
#include "core/json_text.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "route/balance.h"
#include "shape/shape.h"
#include "store/templates.h"
#include "tokenize/chat.h"

/* The body's `shape` controls, over the policy: flattened names. */
static int body_controls(ah_request_t *r, json_t *ctl, ah_shape_policy_t *p, const char **preset)
{
    const char *k;
    json_t *v;
    json_object_foreach(ctl, k, v)
    {
        int is_num = json_is_number(v);
        double d = is_num ? json_number_value(v) : -1;
        if (strcmp(k, "strategy") == 0) {
            const char *s = json_string_value(v);
            if (s && strcmp(s, "none") == 0)
                p->strategy = AH_CTX_NONE;
            else if (s && strcmp(s, "sliding_window") == 0)
                p->strategy = AH_CTX_SLIDING;
            else if (s && strcmp(s, "token_budget") == 0)
                p->strategy = AH_CTX_BUDGET;
            else if (s && strcmp(s, "summarize") == 0 && p->summarizer)
                p->strategy = AH_CTX_SUMMARIZE;
            else
                return ah_request_fail(r, 400, "invalid_request_error", "invalid_shape", "shape",
                                       "unknown shape.strategy (known: none, sliding_window, "
                                       "token_budget, and summarize where a summarizer is "
                                       "configured)");
        } else if (strcmp(k, "max_turns") == 0 && is_num && d >= 0 && d <= 1e6) {
            p->max_turns = (long)d;
        } else if (strcmp(k, "max_tokens") == 0 && is_num && d >= 1 && d <= 1e8) {
            p->max_tokens = (long)d;
        } else if (strcmp(k, "reserve_output") == 0 && is_num && d >= 0 && d <= 1e7) {
            p->reserve_output = (long)d;
        } else if (strcmp(k, "trim_to") == 0 && is_num && d >= 0.05 && d <= 1) {
            p->trim_to = d;
        } else if (strcmp(k, "top_k") == 0 && is_num && d >= 0 && d <= AH_SHAPE_MAX_CHUNKS) {
            p->top_k = (long)d;
        } else if (strcmp(k, "lossless") == 0 && json_is_boolean(v)) {
            p->lossless = json_is_true(v);
        } else if (strcmp(k, "lossy_ratio") == 0 && is_num && d >= 0.05 && d <= 1) {
            p->lossy_ratio = d;
        } else if (strcmp(k, "preset") == 0 && json_is_string(v)) {
            *preset = json_string_value(v);
        } else {
            return ah_request_fail(
                r, 400, "invalid_request_error", "invalid_shape", "shape",
                "shape.%.40s is unknown or out of range (known: strategy, max_turns, max_tokens "
                ">= 1, reserve_output, trim_to in [0.05, 1], top_k, lossless, lossy_ratio in "
                "[0.05, 1], preset)",
                k);
        }
    }
    return 0;
}

static const char *feature_of(const ah_request_t *r)
{
    return r->tags ? json_string_value(json_object_get(r->tags, "feature")) : NULL;
}

/* The smallest context window and output limit among the deployments of
 * the requested alias (config override, else the catalogue): any of them
 * may serve it. 0 when none is known. */
static void limits_of(ah_worker_t *w, const char *model, ah_shape_env_t *env)
{
    const ah_config_t *cfg = w->gw->cfg;
    for (size_t i = 0; model && i < cfg->ndeps; i++) {
        const ah_deployment_t *d = &cfg->deps[i];
        if (strcmp(d->alias, model) != 0)
            continue;
        long cw = d->context_window, mo = d->max_output_tokens;
        ah_price_t p;
        if ((!cw || !mo) && ah_balancer_dep_price(w->gw->balancer, d, &p) == 0) {
            cw = cw ? cw : (long)p.context_window;
            mo = mo ? mo : (long)p.max_output_tokens;
        }
        if (cw > 0 && (env->window == 0 || cw < env->window))
            env->window = cw;
        if (mo > 0 && (env->output_limit == 0 || mo < env->output_limit))
            env->output_limit = mo;
    }
}

/* The model the prompt will be counted for: the alias's first deployment. */
static void counter_for(ah_worker_t *w, const char *model, ah_shape_env_t *env)
{
    const ah_deployment_t *d = ah_config_route(w->gw->cfg, model, 0);
    ah_chat_model_t cm;
    ah_chat_model(d && strcmp(d->model, "*") ? d->model : model, &cm);
    env->enc = strcmp(cm.encoding, "cl100k_base") == 0 && w->gw->bpe_cl100k ? w->gw->bpe_cl100k
                                                                            : w->gw->bpe_o200k;
    env->factor = cm.factor > 0 ? cm.factor : 1;
    env->model = cm;
}

/* The static prefix: tools, then the leading system messages. */
static void note_prefix(ah_request_t *r)
{
    uint64_t h = AH_FNV_OFFSET;
    size_t bytes = 0;
    json_t *tools = json_object_get(r->body, "tools");
    if (json_array_size(tools)) {
        char *t = json_dumps(tools, JSON_COMPACT | JSON_SORT_KEYS);
        if (t) {
            h = ah_fnv1a(h, t, strlen(t));
            bytes += strlen(t);
            free(t);
        }
    }
    json_t *msgs = json_object_get(r->body, "messages");
    for (size_t i = 0; i < json_array_size(msgs); i++) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "system") && strcmp(role, "developer")))
            break;
        char *t = ah_json_join_text(json_object_get(m, "content"), "\n");
        if (t) {
            h = ah_fnv1a(h, t, strlen(t));
            bytes += strlen(t);
            ah_free(t);
        }
    }
    if (!bytes)
        return;
    snprintf(r->prefix_hash, sizeof r->prefix_hash, "%016llx", (unsigned long long)h);
    r->prefix_tokens = (long)((bytes + 3) / 4); /* the usual 4 bytes a token */
}

/* prompt_id / prompt_variables: the template's messages go first. */
static int use_template(ah_worker_t *w, ah_request_t *r)
{
    json_t *id = json_object_get(r->body, "prompt_id");
    json_t *vars = json_object_get(r->body, "prompt_variables");
    if (!id && !vars)
        return 0;
    char name[AH_TEMPLATE_MAX_NAME + 1], err[200] = "";
    int version = 0, got = 0, rc = 0;
    json_t *tpl = NULL, *msgs = NULL;
    json_incref(id);
    json_incref(vars);
    json_object_del(r->body, "prompt_id");
    json_object_del(r->body, "prompt_variables");
    if (r->raw != r->body) {
        json_object_del(r->raw, "prompt_id");
        json_object_del(r->raw, "prompt_variables");
    }
    if (!json_is_string(id) || ah_template_ref(json_string_value(id), name, &version)) {
        rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_prompt_id", "prompt_id",
                             "'prompt_id' must be a template name, or name@version");
        goto out;
    }
    if (vars && (!json_is_object(vars) || json_object_size(vars) > AH_TEMPLATE_MAX_VARS)) {
        rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_prompt_variables",
                             "prompt_variables",
                             "'prompt_variables' must be an object of at most %d "
                             "strings or numbers",
                             AH_TEMPLATE_MAX_VARS);
        goto out;
    }
    ah_err_t e = w->db ? ah_template_get(w->db, name, version, &tpl, &got) : AH_E_NOTFOUND;
    if (e) {
        rc = ah_request_fail(r, e == AH_E_NOTFOUND ? 404 : 500,
                             e == AH_E_NOTFOUND ? "invalid_request_error" : "api_error",
                             "template_not_found", "prompt_id",
                             e == AH_E_NOTFOUND ? "no prompt template '%s'%s"
                                                : "template '%s'%s "
                                                  "cannot be read",
                             json_string_value(id), "");
        goto out;
    }
    if (!(msgs = ah_template_render(tpl, vars, err, sizeof err))) {
        rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_prompt_variables",
                             "prompt_variables", "template %s@%d: %s", name, got, err);
        goto out;
    }
    json_t *own = json_object_get(r->body, "messages");
    json_array_extend(msgs, json_is_array(own) ? own : NULL);
    json_object_set(r->body, "messages", msgs);
    r->body_edited = 1;
    char ref[AH_TEMPLATE_MAX_NAME + 16];
    snprintf(ref, sizeof ref, "%s@%d", name, got);
    if (!r->tags)
        r->tags = json_object();
    json_object_set_new(r->tags, "prompt", json_string(ref));
out:
    json_decref(id);
    json_decref(vars);
    json_decref(tpl);
    json_decref(msgs);
    return rc;
}

int ah_stage_shape(ah_worker_t *w, ah_request_t *r)
{
    if (r->op != AH_OP_CHAT)
        return 0;
    const ah_config_t *cfg = w->gw->cfg;
    const ah_shape_config_t *sc = &cfg->shape;
    /* the body's controls are the gateway's, never the provider's */
    json_t *ctl = json_incref(json_object_get(r->body, "shape"));
    if (ctl) {
        json_object_del(r->body, "shape");
        if (r->raw != r->body)
            json_object_del(r->raw, "shape");
    }
    int rc = use_template(w, r);
    if (rc)
        goto out;
    json_t *context = json_object_get(r->body, "context");
    if (!sc->enabled && !ctl && !context)
        goto out;
    ah_shape_policy_t p;
    ah_shape_policy_unset(&p);
    const char *preset = NULL;
    if (!json_is_false(ctl)) {
        ah_shape_policy_overlay(&p, &sc->policy);
        for (size_t i = 0; r->model && i < sc->nroutes; i++)
            if (strcmp(sc->routes[i].name, r->model) == 0)
                ah_shape_policy_overlay(&p, &sc->routes[i].policy);
        const char *feature = feature_of(r);
        for (size_t i = 0; feature && i < sc->nfeatures; i++)
            if (strcmp(sc->features[i].name, feature) == 0)
                ah_shape_policy_overlay(&p, &sc->features[i].policy);
        preset = p.preset;
        if (ctl && !json_is_object(ctl)) {
            rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_shape", "shape",
                                 "'shape' must be an object of shaping controls, or false");
            goto out;
        }
        if (ctl && (rc = body_controls(r, ctl, &p, &preset)))
            goto out;
    }
    ah_shape_env_t env = {.embedder = w->gw->embedder};
    if (preset && !(env.preset = ah_shape_preset_find(sc, preset))) {
        rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_shape", "shape",
                             "unknown sampling preset '%.60s'", preset);
        goto out;
    }
    counter_for(w, r->model, &env);
    int windowed = p.strategy == AH_CTX_SLIDING || p.strategy == AH_CTX_BUDGET ||
                   p.strategy == AH_CTX_SUMMARIZE;
    int needs_tokens = windowed || (p.lossy_ratio > 0 && p.lossy_ratio < 1);
    if (!env.enc) {
        if (needs_tokens) {
            rc = ah_request_fail(r, 500, "api_error", NULL, "shape",
                                 "context and lossy shaping need the tokenizer, which this "
                                 "gateway did not load (no ahorro.shaping section)");
            goto out;
        }
    }
    limits_of(w, r->model, &env);
    ah_shape_result_t res;
    char err[400] = "";
    if (ah_shape_apply(r->body, &p, &env, &res, err, sizeof err)) {
        rc = ah_request_fail(r, 400, "invalid_request_error", "invalid_shape",
                             strstr(err, "context") == err + 1 ? "context" : "shape", "%s", err);
        goto out;
    }
    if (res.summarized) {
        r->summarized = res.summarized;
        r->summary_at = res.summary_at;
        r->summarizer = p.summarizer;
        r->summary_tokens = p.summary_tokens > 0 ? p.summary_tokens : AH_SHAPE_SUMMARY_TOKENS;
        r->shape_pending = 1;
    }
    if (res.changed) {
        r->body_edited = 1;
        r->shape_done = ah_arena_strdup(&r->arena, res.done);
        if (res.tokens_before > res.tokens_after && res.tokens_after >= 0)
            r->shape_tokens_saved = res.tokens_before - res.tokens_after;
    }
out:
    json_decref(ctl);
    if (!rc)
        note_prefix(r);
    return rc;
}
