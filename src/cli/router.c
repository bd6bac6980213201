/* router.c - `ahorro router score | train | eval`: the routers offline.
 *
 *   score  reads JSONL requests on stdin ({"prompt"} or {"messages", "tools",
 *          "tags"}) and writes one JSONL line each: the score, the tier and
 *          model a configured router would pick, the criticality and the
 *          signals that weighed most. Any router can so be evaluated offline.
 *   train  fits a learned router (route/learned.h) on labelled outcomes
 *          (route/labels.h: RouteLLM's MMLU CSVs, or JSONL) into a model file.
 *   eval   prints a router's cost-quality figures on labelled outcomes
 *          (route/curve.h): strong-call share and cost at 95% of the strong
 *          model's accuracy, APGR, against random routing and the oracle.
 *          With --rank gain_per_dollar, prompts are ordered as a router with
 *          `rank: gain_per_dollar` orders them (route/rank.h): by (2s - 1)
 *          over the extra USD of the prompt on the strong model, with input
 *          tokens estimated as the gateway does (bytes / 4 + 8) and
 *          --out-tokens output tokens; the threshold printed is the
 *          min_gain_per_usd that reaches the --quality target.
 *
 * Costs in eval: per prompt, input tokens estimated as bytes / 4 (rounded up)
 * plus --out-tokens output tokens (default 5: MMLU answers are a letter),
 * priced at --price-cheap / --price-strong USD per million tokens (input,
 * output). The defaults are the list prices of the MMLU pair: Mixtral-8x7B at
 * Mistral's 0.7/0.7 and GPT-4-1106-preview at OpenAI's 10/30. */
#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/embed.h"
#include "cache/setup.h"
#include "cli/cli.h"
#include "core/alloc.h"
#include "route/complexity.h"
#include "route/curve.h"
#include "route/labels.h"
#include "route/learned.h"
#include "route/rank.h"

#define ROUTER_MAX_LINE (4u << 20)
#define ROUTER_MAX_FILES 256
#define ROUTER_PATH_MAX 4096
#define ROUTER_ERR_MAX 1024
#define ROUTER_BYTES_PER_TOKEN 4.0
#define ROUTER_DEFAULT_OUT_TOKENS 5.0
#define ROUTER_DEFAULT_TARGET 0.95
/* USD per million tokens (input, output), the MMLU pair's list prices. */
#define PRICE_CHEAP_IN 0.7
#define PRICE_CHEAP_OUT 0.7
#define PRICE_STRONG_IN 10.0
#define PRICE_STRONG_OUT 30.0

typedef struct opts {
    const char *router, *kind, *model, *vectors, *out, *cheap, *strong, *exclude;
    const char *learn_kind, *target_name, *rank;
    const char *data[ROUTER_MAX_FILES];
    int ndata;
    double l2, target, out_tokens;
    double price_cheap[2], price_strong[2];
    int k, no_embedding, json;
} opts_t;

static void usage(FILE *f)
{
    fprintf(
        f, "usage:\n"
           "  ahorro router score [--router NAME] [--kind complexity|learned] [--model FILE]\n"
           "                      [--vectors FILE]   < requests.jsonl > scores.jsonl\n"
           "  ahorro router train --data FILE... -o MODEL [--cheap COL --strong COL]\n"
           "                      [--kind logreg|knn] [--target gain|cheap-fail] [--l2 X] [--k N]\n"
           "                      [--no-embedding] [--exclude FILE] [--vectors FILE]\n"
           "  ahorro router eval  --data FILE... [--model MODEL | --kind complexity]\n"
           "                      [--cheap COL --strong COL] [--exclude FILE] [--quality 0.95]\n"
           "                      [--price-cheap IN,OUT] [--price-strong IN,OUT] [--out-tokens N]\n"
           "                      [--rank score|gain_per_dollar] [--json]\n"
           "Data: CSV `prompt,<cheap>,<strong>` with True/False, or JSONL\n"
           "{\"prompt\", \"cheap_ok\", \"strong_ok\"}. Prices in USD per million tokens.\n");
}

static int parse_double(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || end == s || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int parse_pair(const char *s, double out[2])
{
    char a[64];
    const char *comma = strchr(s, ',');
    if (!comma || (size_t)(comma - s) >= sizeof a)
        return -1;
    memcpy(a, s, (size_t)(comma - s));
    a[comma - s] = '\0';
    return parse_double(a, &out[0]) || parse_double(comma + 1, &out[1]) || out[0] < 0 || out[1] < 0
               ? -1
               : 0;
}

static int parse_opts(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->l2 = ah_learned_defaults.l2;
    o->k = ah_learned_defaults.k;
    o->target = ROUTER_DEFAULT_TARGET;
    o->out_tokens = ROUTER_DEFAULT_OUT_TOKENS;
    o->price_cheap[0] = PRICE_CHEAP_IN;
    o->price_cheap[1] = PRICE_CHEAP_OUT;
    o->price_strong[0] = PRICE_STRONG_IN;
    o->price_strong[1] = PRICE_STRONG_OUT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **str = NULL;
        if (strcmp(a, "--no-embedding") == 0) {
            o->no_embedding = 1;
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--data") == 0) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0 &&
                   strcmp(argv[i + 1], "-o") != 0) {
                if (o->ndata >= ROUTER_MAX_FILES) {
                    fprintf(stderr, "ahorro router: at most %d data files\n", ROUTER_MAX_FILES);
                    return -1;
                }
                o->data[o->ndata++] = argv[++i];
            }
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "ahorro router: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        double d;
        if (strcmp(a, "--router") == 0)
            str = &o->router;
        else if (strcmp(a, "--kind") == 0)
            str = &o->kind;
        else if (strcmp(a, "--model") == 0)
            str = &o->model;
        else if (strcmp(a, "--vectors") == 0)
            str = &o->vectors;
        else if (strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0)
            str = &o->out;
        else if (strcmp(a, "--cheap") == 0)
            str = &o->cheap;
        else if (strcmp(a, "--strong") == 0)
            str = &o->strong;
        else if (strcmp(a, "--exclude") == 0)
            str = &o->exclude;
        else if (strcmp(a, "--target") == 0)
            str = &o->target_name;
        else if (strcmp(a, "--rank") == 0)
            str = &o->rank;
        if (str) {
            *str = v;
            continue;
        }
        if (strcmp(a, "--l2") == 0 && parse_double(v, &d) == 0 && d >= 0)
            o->l2 = d;
        else if (strcmp(a, "--k") == 0 && parse_double(v, &d) == 0 && d >= 1 &&
                 d <= AH_LEARNED_MAX_K && d == floor(d))
            o->k = (int)d;
        else if (strcmp(a, "--quality") == 0 && parse_double(v, &d) == 0 && d > 0 && d <= 1)
            o->target = d;
        else if (strcmp(a, "--out-tokens") == 0 && parse_double(v, &d) == 0 && d >= 0)
            o->out_tokens = d;
        else if (strcmp(a, "--price-cheap") == 0 && parse_pair(v, o->price_cheap) == 0)
            ;
        else if (strcmp(a, "--price-strong") == 0 && parse_pair(v, o->price_strong) == 0)
            ;
        else {
            fprintf(stderr, "ahorro router: bad option or value: %s %s\n", a, v);
            return -1;
        }
    }
    return 0;
}

static ah_embedder_t *open_vectors(const char *given)
{
    char path[ROUTER_PATH_MAX], err[ROUTER_ERR_MAX];
    const char *p = given ? given : ah_sif_path(path, sizeof path);
    if (!p) {
        fprintf(stderr, "ahorro router: no word vectors found (scripts/build-embeddings.sh, or "
                        "--vectors FILE); scoring without embeddings\n");
        return NULL;
    }
    ah_embedder_t *e = ah_embed_open_sif(p, err, sizeof err);
    if (!e)
        fprintf(stderr, "ahorro router: %s; scoring without embeddings\n", err);
    return e;
}

/* ---- score ---- */

static void error_line(size_t line, const char *why)
{
    fprintf(stderr, "ahorro router: stdin:%zu: %s\n", line, why);
    json_t *o = json_pack("{s:s, s:I}", "error", why, "line", (json_int_t)line);
    char *s = json_dumps(o, JSON_COMPACT);
    puts(s ? s : "{\"error\":\"out of memory\"}");
    free(s);
    json_decref(o);
}

static int cmd_score(const opts_t *o, const ah_config_t *cfg)
{
    const ah_router_cfg_t *rt = NULL;
    if (o->router) {
        rt = ah_config_router(cfg, o->router);
        if (!rt)
            fprintf(stderr,
                    "ahorro router: no router '%s' in the configuration; "
                    "printing scores without tiers\n",
                    o->router);
    } else if (cfg && cfg->routing.nrouters > 0) {
        rt = &cfg->routing.routers[0];
    }
    int learned = o->kind ? strcmp(o->kind, "learned") == 0
                          : (o->model != NULL || (rt && rt->kind == AH_ROUTER_LEARNED));
    if (o->kind && !learned && strcmp(o->kind, "complexity") != 0) {
        fprintf(stderr, "ahorro router: --kind is complexity or learned\n");
        return 2;
    }
    ah_learned_t *m = NULL;
    ah_embedder_t *emb = NULL;
    if (learned) {
        const char *path = o->model ? o->model : (rt ? rt->model_path : NULL);
        char err[ROUTER_ERR_MAX];
        if (!path) {
            fprintf(stderr, "ahorro router: a learned router needs --model FILE\n");
            return 2;
        }
        if (!(m = ah_learned_load(path, err, sizeof err))) {
            fprintf(stderr, "ahorro router: %s\n", err);
            return 1;
        }
        if (ah_learned_dim(m) > 0)
            emb = open_vectors(o->vectors);
    }
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int bad = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if ((size_t)len > ROUTER_MAX_LINE) {
            error_line(lineno, "line too long");
            bad++;
            continue;
        }
        json_error_t je;
        json_t *req = json_loadb(line, (size_t)len, 0, &je);
        json_t *prompt = json_object_get(req, "prompt");
        json_t *msgs = json_object_get(req, "messages");
        if (!json_is_object(req) || (!json_is_string(prompt) && !json_is_array(msgs))) {
            error_line(lineno,
                       req ? "expected {\"prompt\": string} or {\"messages\": [...]}" : je.text);
            json_decref(req);
            bad++;
            continue;
        }
        ah_cx_t cx;
        json_t *tags = json_object_get(req, "tags");
        if (json_is_string(prompt)) {
            ah_cx_score_text(json_string_value(prompt), json_string_length(prompt), &cx);
            if (json_is_object(tags)) { /* tags apply to a bare prompt too */
                ah_cx_t t;
                json_t *body =
                    json_pack("{s:[{s:s,s:O}]}", "messages", "role", "user", "content", prompt);
                ah_cx_score(body, tags, &t);
                json_decref(body);
                cx.criticality = t.criticality;
                cx.critical_cue = t.critical_cue;
            }
        } else {
            ah_cx_score(req, tags, &cx);
        }
        double score = cx.score;
        if (m)
            score = json_is_string(prompt) ? ah_learned_score_text(m, json_string_value(prompt),
                                                                   json_string_length(prompt), emb)
                                           : ah_learned_score(m, req, emb);
        const ah_router_tier_t *tier = rt ? ah_router_pick(rt, score, cx.criticality) : NULL;
        json_t *sig = json_array();
        for (int i = 0; i < cx.ntop; i++)
            json_array_append_new(sig, json_string(cx.top[i]));
        json_t *out =
            json_pack("{s:f, s:o, s:o, s:f, s:o}", "score", round(score * 1e4) / 1e4, "tier",
                      tier && tier->name ? json_string(tier->name) : json_null(), "model",
                      tier && tier->model ? json_string(tier->model) : json_null(), "criticality",
                      round(cx.criticality * 1e4) / 1e4, "signals", sig);
        if (cx.critical_cue)
            json_object_set_new(out, "critical_cue", json_string(cx.critical_cue));
        char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(6));
        puts(s ? s : "{\"error\":\"out of memory\"}");
        free(s);
        json_decref(out);
        json_decref(req);
    }
    free(line);
    fflush(stdout);
    ah_learned_free(m);
    ah_embed_free(emb);
    return bad ? 1 : 0;
}

/* ---- train / eval ---- */

static int load_data(const opts_t *o, ah_labels_t *l)
{
    char err[ROUTER_ERR_MAX];
    if (o->ndata == 0) {
        fprintf(stderr, "ahorro router: --data FILE... is required\n");
        return 2;
    }
    for (int i = 0; i < o->ndata; i++)
        if (ah_labels_load(l, o->data[i], o->cheap, o->strong, err, sizeof err)) {
            fprintf(stderr, "ahorro router: %s\n", err);
            return 1;
        }
    if (o->exclude) {
        size_t gone = 0;
        if (ah_labels_exclude(l, o->exclude, &gone, err, sizeof err)) {
            fprintf(stderr, "ahorro router: %s\n", err);
            return 1;
        }
        fprintf(stderr, "ahorro router: excluded %zu prompts listed in %s\n", gone, o->exclude);
    }
    if (l->n == 0) {
        fprintf(stderr, "ahorro router: no labelled prompts\n");
        return 1;
    }
    return 0;
}

static float *feature_rows(const ah_labels_t *l, const ah_embedder_t *emb, int dim)
{
    size_t stride = ah_learned_row_size(dim);
    float *rows = ah_calloc(l->n, stride * sizeof *rows);
    for (size_t i = 0; i < l->n; i++)
        ah_learned_row_text(l->rows[i].prompt, l->rows[i].len, emb, dim, rows + i * stride);
    return rows;
}

static void outcomes(const ah_labels_t *l, unsigned char **c, unsigned char **s)
{
    *c = ah_malloc(l->n);
    *s = ah_malloc(l->n);
    for (size_t i = 0; i < l->n; i++) {
        (*c)[i] = l->rows[i].cheap_ok;
        (*s)[i] = l->rows[i].strong_ok;
    }
}

static int cmd_train(const opts_t *o)
{
    ah_learned_opts_t lo = ah_learned_defaults;
    lo.l2 = o->l2;
    lo.k = o->k;
    lo.use_embedding = !o->no_embedding;
    if (o->kind && strcmp(o->kind, "knn") == 0)
        lo.kind = AH_LEARNED_KNN;
    else if (o->kind && strcmp(o->kind, "logreg") != 0) {
        fprintf(stderr, "ahorro router train: --kind is logreg or knn\n");
        return 2;
    }
    if (o->target_name && strcmp(o->target_name, "cheap-fail") == 0)
        lo.target = AH_LEARNED_TARGET_CHEAP_FAIL;
    else if (o->target_name && strcmp(o->target_name, "gain") != 0) {
        fprintf(stderr, "ahorro router train: --target is gain or cheap-fail\n");
        return 2;
    }
    if (!o->out) {
        fprintf(stderr, "ahorro router train: -o MODEL is required\n");
        return 2;
    }
    ah_labels_t l;
    ah_labels_init(&l);
    int rc = load_data(o, &l);
    if (rc) {
        ah_labels_free(&l);
        return rc;
    }
    ah_embedder_t *emb = NULL;
    if (lo.kind == AH_LEARNED_KNN || lo.use_embedding)
        emb = open_vectors(o->vectors);
    if (!emb && lo.kind == AH_LEARNED_KNN) {
        ah_labels_free(&l);
        return 1;
    }
    int dim = emb ? emb->dim : 0;
    float *rows = feature_rows(&l, emb, dim);
    unsigned char *c, *s;
    outcomes(&l, &c, &s);
    char err[ROUTER_ERR_MAX], desc[256];
    ah_learned_t *m = ah_learned_train(rows, l.n, dim, c, s, &lo, err, sizeof err);
    rc = 1;
    if (!m) {
        fprintf(stderr, "ahorro router train: %s\n", err);
    } else if (ah_learned_save(m, o->out, err, sizeof err)) {
        fprintf(stderr, "ahorro router train: %s\n", err);
    } else {
        ah_learned_describe(m, desc, sizeof desc);
        fprintf(stderr, "ahorro router train: %s from %zu prompts (%zu groups) -> %s\n", desc, l.n,
                l.ngroups, o->out);
        rc = 0;
    }
    ah_learned_free(m);
    ah_free(rows);
    ah_free(c);
    ah_free(s);
    ah_embed_free(emb);
    ah_labels_free(&l);
    return rc;
}

static json_t *curve_json(const ah_curve_t *cv, double cost_all_strong)
{
    json_t *pts = json_array();
    for (int i = 0; i <= 10; i++) {
        ah_curve_point_t p = ah_curve_at_share(cv, i / 10.0);
        json_array_append_new(pts, json_pack("{s:f,s:f,s:f}", "strong_share", p.share, "accuracy",
                                             p.acc, "cost_usd", p.cost));
    }
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:o, s:o}", "apgr", cv->apgr,
                     "best_accuracy", cv->acc_best, "cpt50", cv->cpt50, "cpt80", cv->cpt80,
                     "target_accuracy", cv->target * cv->acc_strong, "strong_share_at_target",
                     cv->share_at_target >= 0 ? json_real(cv->share_at_target) : json_null(),
                     "cost_saved_at_target",
                     cv->share_at_target >= 0 ? json_real(1 - cv->cost_at_target / cost_all_strong)
                                              : json_null(),
                     "threshold_at_target",
                     cv->share_at_target >= 0 && isfinite(cv->threshold_at_target)
                         ? json_real(cv->threshold_at_target)
                         : json_null(),
                     "curve", pts);
}

/* A threshold for printing: gains per USD are clamped to +-DBL_MAX for the
 * curve (a prompt no dearer on the strong model). */
static void fmt_threshold(char *b, size_t n, double t, int gain)
{
    if (!isfinite(t))
        snprintf(b, n, "-");
    else if (gain && fabs(t) >= DBL_MAX)
        snprintf(b, n, "%s", t > 0 ? "inf" : "-inf");
    else
        snprintf(b, n, gain ? "%.4g" : "%.4f", t);
}

static void print_row(const char *name, const ah_curve_t *cv, int gain)
{
    char share[32] = "never", saved[32] = "-", thr[32] = "-", cpt[32] = "never";
    if (cv->share_at_target >= 0) {
        snprintf(share, sizeof share, "%.1f%%", 100 * cv->share_at_target);
        snprintf(saved, sizeof saved, "%.1f%%", 100 * (1 - cv->cost_at_target / cv->cost_strong));
        fmt_threshold(thr, sizeof thr, cv->threshold_at_target, gain);
    }
    if (cv->cpt50 >= 0)
        snprintf(cpt, sizeof cpt, "%.1f%%", 100 * cv->cpt50);
    printf("%-8s %7.3f %9s %9s %9s %10s %9.1f%%\n", name, cv->apgr, cpt, share, saved, thr,
           100 * cv->acc_best);
}

/* The gain ranking's threshold at the target, as config to paste. */
static void print_gain_config(const opts_t *o, const ah_curve_t *cg)
{
    double t = cg->threshold_at_target;
    printf("\ngain/$: ranked by (2 score - 1) / extra USD on the strong model; input tokens "
           "bytes/4 + 8 (the gateway's estimate), %.0f output\n",
           o->out_tokens);
    if (cg->share_at_target < 0 || !isfinite(t)) {
        printf("the gain ranking never reaches %.0f%% of the strong model's accuracy\n",
               100 * o->target);
    } else if (!(t > 0) || t >= DBL_MAX) {
        char b[32];
        fmt_threshold(b, sizeof b, t, 1);
        printf("reaching %.0f%% of the strong model's accuracy needs a threshold of %s, which "
               "min_gain_per_usd (a positive number) cannot express: use rank: score here\n",
               100 * o->target, b);
    } else {
        printf("\nconfig for %.0f%% of the strong model's accuracy (%.1f%% strong calls, %.1f%% "
               "of the cost saved):\n",
               100 * o->target, 100 * cg->share_at_target,
               100 * (1 - cg->cost_at_target / cg->cost_strong));
        printf("        rank: gain_per_dollar\n");
        printf("        expected_output_tokens: %.0f\n", o->out_tokens);
        printf("        tiers:\n");
        printf("          - { name: strong, model: STRONG, min_gain_per_usd: %.6g }\n", t);
        printf("          - { name: cheap, model: CHEAP }\n");
    }
}

static int cmd_eval(const opts_t *o)
{
    int learned = o->model != NULL;
    if (!learned && o->kind && strcmp(o->kind, "complexity") != 0) {
        fprintf(stderr, "ahorro router eval: --model MODEL or --kind complexity\n");
        return 2;
    }
    int gain = o->rank && strcmp(o->rank, "gain_per_dollar") == 0;
    if (o->rank && !gain && strcmp(o->rank, "score") != 0) {
        fprintf(stderr, "ahorro router eval: --rank is score or gain_per_dollar\n");
        return 2;
    }
    ah_learned_t *m = NULL;
    char err[ROUTER_ERR_MAX];
    if (learned && !(m = ah_learned_load(o->model, err, sizeof err))) {
        fprintf(stderr, "ahorro router eval: %s\n", err);
        return 1;
    }
    ah_labels_t l;
    ah_labels_init(&l);
    int rc = load_data(o, &l);
    if (rc) {
        ah_learned_free(m);
        ah_labels_free(&l);
        return rc;
    }
    ah_embedder_t *emb = m && ah_learned_dim(m) > 0 ? open_vectors(o->vectors) : NULL;
    double *score = ah_malloc(l.n * sizeof *score), *oracle = ah_malloc(l.n * sizeof *oracle);
    double *cc = ah_malloc(l.n * sizeof *cc), *cs = ah_malloc(l.n * sizeof *cs);
    double *zero = ah_calloc(l.n, sizeof *zero), *value = ah_malloc(l.n * sizeof *value);
    unsigned char *c, *s;
    outcomes(&l, &c, &s);
    for (size_t i = 0; i < l.n; i++) {
        const ah_label_row_t *r = &l.rows[i];
        if (m) {
            score[i] = ah_learned_score_text(m, r->prompt, r->len, emb);
        } else {
            ah_cx_t cx;
            ah_cx_score_text(r->prompt, r->len, &cx);
            score[i] = cx.score;
        }
        double in = ceil((double)r->len / ROUTER_BYTES_PER_TOKEN);
        cc[i] = (in * o->price_cheap[0] + o->out_tokens * o->price_cheap[1]) / 1e6;
        cs[i] = (in * o->price_strong[0] + o->out_tokens * o->price_strong[1]) / 1e6;
        /* The gateway's view: its own token estimate, the router's expected output. */
        double extra = ah_rank_extra_usd((double)ah_rank_est_tokens((long)r->len), o->out_tokens,
                                         o->price_cheap, o->price_strong);
        value[i] = ah_rank_gain_per_usd(score[i], extra);
        if (isinf(value[i])) /* not dearer on the strong model: first or last */
            value[i] = value[i] > 0 ? DBL_MAX : -DBL_MAX;
    }
    ah_curve_oracle(c, s, l.n, oracle);
    ah_curve_t cv, co, cr, cg = {0};
    ah_curve_compute(score, c, s, cc, cs, l.n, o->target, &cv);
    if (gain)
        ah_curve_compute(value, c, s, cc, cs, l.n, o->target, &cg);
    ah_curve_compute(oracle, c, s, cc, cs, l.n, o->target, &co);
    ah_curve_compute(zero, c, s, cc, cs, l.n, o->target, &cr); /* all ties: random */
    char desc[256] = "complexity";
    if (m)
        ah_learned_describe(m, desc, sizeof desc);
    if (o->json) {
        json_t *out =
            json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:o, s:o, s:o}", "router", desc, "prompts",
                      (json_int_t)l.n, "accuracy_cheap", cv.acc_cheap, "accuracy_strong",
                      cv.acc_strong, "cost_all_cheap_usd", cv.cost_cheap, "cost_all_strong_usd",
                      cv.cost_strong, "router_curve", curve_json(&cv, cv.cost_strong), "random",
                      curve_json(&cr, cv.cost_strong), "oracle", curve_json(&co, cv.cost_strong));
        json_object_set_new(out, "rank", json_string(gain ? "gain_per_dollar" : "score"));
        if (gain) {
            /* The figures of the gain ranking; its threshold is min_gain_per_usd. */
            json_object_set_new(out, "gain_per_dollar_curve", curve_json(&cg, cv.cost_strong));
            json_object_set_new(out, "min_gain_per_usd_at_target",
                                cg.share_at_target >= 0 && isfinite(cg.threshold_at_target) &&
                                        fabs(cg.threshold_at_target) < DBL_MAX
                                    ? json_real(cg.threshold_at_target)
                                    : json_null());
            json_object_set_new(out, "expected_output_tokens", json_real(o->out_tokens));
        }
        char *txt = json_dumps(out, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        puts(txt ? txt : "{}");
        free(txt);
        json_decref(out);
    } else {
        printf("router: %s\n", desc);
        printf("prompts: %zu in %zu groups; cheap (%s) %.1f%%, strong (%s) %.1f%%\n", l.n,
               l.ngroups, l.cheap_name ? l.cheap_name : "cheap_ok", 100 * cv.acc_cheap,
               l.strong_name ? l.strong_name : "strong_ok", 100 * cv.acc_strong);
        printf("cost: all cheap $%.4f, all strong $%.4f (input bytes/4 tokens + %.0f output; "
               "USD/Mtok cheap %g/%g, strong %g/%g)\n",
               cv.cost_cheap, cv.cost_strong, o->out_tokens, o->price_cheap[0], o->price_cheap[1],
               o->price_strong[0], o->price_strong[1]);
        printf("target: %.0f%% of the strong model's accuracy = %.1f%%\n\n", 100 * o->target,
               100 * o->target * cv.acc_strong);
        printf("%-8s %7s %9s %9s %9s %10s %10s\n", "", "APGR", "CPT(50%)", "strong@", "saved@",
               "threshold", "best acc");
        print_row(gain ? "score" : "router", &cv, 0);
        if (gain)
            print_row("gain/$", &cg, 1);
        print_row("random", &cr, 0);
        print_row("oracle", &co, 0);
        const ah_curve_t *shown = gain ? &cg : &cv;
        printf("\nshare  accuracy  cost($)   (router%s)\n",
               gain ? ", ranked by gain per dollar" : "");
        for (int i = 0; i <= 10; i++) {
            ah_curve_point_t p = ah_curve_at_share(shown, i / 10.0);
            printf("%4.0f%%  %7.2f%%  %.4f\n", 100 * p.share, 100 * p.acc, p.cost);
        }
        if (gain)
            print_gain_config(o, &cg);
    }
    ah_curve_free(&cv);
    ah_curve_free(&cg);
    ah_free(value);
    ah_curve_free(&co);
    ah_curve_free(&cr);
    ah_free(score);
    ah_free(oracle);
    ah_free(cc);
    ah_free(cs);
    ah_free(zero);
    ah_free(c);
    ah_free(s);
    ah_embed_free(emb);
    ah_learned_free(m);
    ah_labels_free(&l);
    return 0;
}

int ah_cli_router(int argc, char **argv, const ah_config_t *cfg)
{
    opts_t o;
    if (argc < 1 || strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
        usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (parse_opts(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[0], "score") == 0)
        return cmd_score(&o, cfg);
    if (strcmp(argv[0], "train") == 0)
        return cmd_train(&o);
    if (strcmp(argv[0], "eval") == 0)
        return cmd_eval(&o);
    fprintf(stderr, "ahorro router: unknown subcommand '%s'\n", argv[0]);
    usage(stderr);
    return 2;
}
