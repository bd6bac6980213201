/* batch.c - `ahorro batch run | estimate` (docs/batch.md, "CLI").
 *
 *   run       sends an OpenAI batch input file through the gateway, served
 *             in-process on an ephemeral loopback port (or --gateway URL),
 *             with the batch engine (batch/engine.h): paced within each
 *             model's deployments' rpm/tpm, retried, written as results come,
 *             resumed when run again on the same files. No server needed.
 *   estimate  prompt tokens (exact for OpenAI's encodings) and cost per
 *             route before anything is sent. */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch/engine.h"
#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "route/balance.h"
#include "server/local.h"
#include "store/prices.h"
#include "tokenize/bpe.h"
#include "tokenize/chat.h"

static void batch_usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  ahorro batch run INPUT.jsonl -o OUTPUT.jsonl [--errors FILE] [--concurrency N]\n"
               "                   [--model M] [--tags k=v,...] [--timeout S] [--retries N]\n"
               "                   [--gateway URL [--api-key KEY]] [--quiet]\n"
               "  ahorro batch estimate INPUT.jsonl [--model M] [--json]\n"
               "INPUT is OpenAI's batch format: {\"custom_id\", \"method\": \"POST\", \"url\":\n"
               "\"/v1/chat/completions\", \"body\": {...}} per line. Run again on the same files\n"
               "to resume. See docs/batch.md.\n");
}

static volatile int interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct progress_ctx {
    int tty, quiet;
    int64_t last_line_s;
} progress_ctx_t;

static void fmt_eta(double s, char *out, size_t n)
{
    if (!isfinite(s) || s < 0)
        snprintf(out, n, "-");
    else if (s >= 3600)
        snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, n, "%ds", (int)s);
}

static void on_progress(void *ctx, const ah_batch_progress_t *p)
{
    progress_ctx_t *pc = ctx;
    if (pc->quiet)
        return;
    long fresh = p->done - p->skipped;
    double rate = p->elapsed_s > 0 ? (double)fresh / p->elapsed_s : 0;
    double eta = rate > 0 ? (double)(p->total - p->done) / rate : NAN;
    char etas[32];
    fmt_eta(eta, etas, sizeof etas);
    double frac = p->total ? (double)p->done / (double)p->total : 1;
    if (pc->tty) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[30] = '\0';
        fprintf(stderr,
                "\r[%s] %5.1f%% %ld/%ld done, %ld failed, %ld in flight, %.1f/s, ETA %s, $%.4f ",
                bar, 100 * frac, p->done, p->total, p->failed, p->in_flight, rate, etas,
                p->cost_usd);
    } else {
        int64_t s = (int64_t)p->elapsed_s;
        if (s - pc->last_line_s < 5 && p->done < p->total)
            return;
        pc->last_line_s = s;
        fprintf(stderr, "batch: %ld/%ld done, %ld failed, %.1f/s, ETA %s, $%.4f\n", p->done,
                p->total, p->failed, rate, etas, p->cost_usd);
    }
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

/* "k=v,k=v": each part one '=', both sides non-empty and short, no control
 * characters (the gateway's rule for x-ahorro-tags). */
static int tags_ok(const char *tags)
{
    const char *p = tags;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq || eq == p || eq + 1 == p + n || memchr(eq + 1, '=', n - (size_t)(eq + 1 - p)))
            return 0;
        if ((size_t)(eq - p) > 256 || n - (size_t)(eq + 1 - p) > 256)
            return 0;
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)p[i] < 0x20)
                return 0;
        p += n;
        if (*p == ',')
            p++;
    }
    return 1;
}

static int cmd_run(int argc, char **argv, ah_config_t *cfg)
{
    const char *input = NULL, *output = NULL, *errors = NULL, *model = NULL, *tags = NULL;
    const char *gateway = NULL, *api_key = getenv("AHORRO_API_KEY");
    long conc = 64, timeout_s = 600, retries = 5;
    int quiet = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
            continue;
        }
        if (a[0] != '-') {
            if (input) {
                fprintf(stderr, "ahorro batch run: one input file\n");
                return 2;
            }
            input = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ahorro batch run: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0)
            output = v;
        else if (strcmp(a, "--errors") == 0)
            errors = v;
        else if (strcmp(a, "--model") == 0)
            model = v;
        else if (strcmp(a, "--tags") == 0)
            tags = v;
        else if (strcmp(a, "--gateway") == 0)
            gateway = v;
        else if (strcmp(a, "--api-key") == 0)
            api_key = v;
        else if (strcmp(a, "--concurrency") == 0) {
            if (parse_long(v, 1, 4096, &conc)) {
                fprintf(stderr, "ahorro batch run: --concurrency is 1..4096\n");
                return 2;
            }
        } else if (strcmp(a, "--timeout") == 0) {
            if (parse_long(v, 1, 86400, &timeout_s)) {
                fprintf(stderr, "ahorro batch run: --timeout is 1..86400 seconds\n");
                return 2;
            }
        } else if (strcmp(a, "--retries") == 0) {
            if (parse_long(v, 0, 100, &retries)) {
                fprintf(stderr, "ahorro batch run: --retries is 0..100\n");
                return 2;
            }
        } else {
            fprintf(stderr, "ahorro batch run: unknown option '%s'\n", a);
            batch_usage(stderr);
            return 2;
        }
    }
    if (!input || !output) {
        batch_usage(stderr);
        return 2;
    }
    if (tags && !tags_ok(tags)) {
        /* the gateway would refuse every line: refuse them once, here */
        fprintf(stderr, "ahorro batch run: --tags must be key=value,key=value (no control "
                        "characters, at most 256 bytes a part)\n");
        return 2;
    }
    char errbuf[1200], ebuf[4200];
    if (!errors) {
        /* output.jsonl -> output.errors.jsonl */
        const char *dot = strrchr(output, '.');
        const char *slash = strrchr(output, '/');
        if (dot && (!slash || dot > slash))
            snprintf(ebuf, sizeof ebuf, "%.*s.errors%s", (int)(dot - output), output, dot);
        else
            snprintf(ebuf, sizeof ebuf, "%s.errors", output);
        errors = ebuf;
    }
    ah_batch_scan_t sc;
    if (ah_batch_scan(input, &sc, errbuf, sizeof errbuf) != AH_E_OK) {
        fprintf(stderr, "ahorro batch: %s\n", errbuf);
        return 1;
    }
    if (sc.first_duplicate_line) {
        fprintf(stderr,
                "ahorro batch: %s: line %ld repeats custom_id '%s' (custom_ids must be unique); "
                "nothing was sent\n",
                input, sc.first_duplicate_line, sc.duplicate_id);
        return 1;
    }
    if (sc.lines == 0) {
        fprintf(stderr, "ahorro batch: %s has no requests\n", input);
        return 1;
    }
    if (!quiet)
        fprintf(stderr, "batch: %ld requests in %s (%ld malformed: to %s)\n", sc.lines, input,
                sc.malformed, errors);

    ah_local_gateway_t lg = {0};
    char base[1100];
    const char *auth = api_key;
    if (gateway) {
        ah_gateway_base_url(gateway, base, sizeof base);
    } else {
        if (ah_local_gateway_start(cfg, &lg)) {
            fprintf(stderr, "ahorro batch: the gateway cannot start (see the log above)\n");
            return 1;
        }
        snprintf(base, sizeof base, "%s", lg.base);
        auth = cfg->master_key;
    }
    ah_buf_t tagbuf;
    ah_buf_init(&tagbuf, 8192);
    ah_buf_printf(&tagbuf, "purpose=batch%s%s", tags ? "," : "", tags ? tags : "");
    struct sigaction sa = {.sa_handler = on_sigint}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    progress_ctx_t pc = {.tty = isatty(2), .quiet = quiet, .last_line_s = -100};
    ah_batch_opts_t o = {
        .input_path = input,
        .output_path = output,
        .error_path = errors,
        .base_url = base,
        .auth = auth,
        .tags = tagbuf.data,
        .model = model,
        .concurrency = (int)conc,
        .timeout_s = timeout_s,
        .max_retries = (int)retries,
        .cfg = cfg,
        .cancel = &interrupted,
        .progress = on_progress,
        .progress_ctx = &pc,
    };
    ah_batch_progress_t res;
    ah_err_t rc = ah_batch_run(&o, &res, errbuf, sizeof errbuf);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pc.tty && !quiet)
        fputc('\n', stderr);
    ah_local_gateway_stop(&lg); /* drains the ledger */
    ah_buf_free(&tagbuf);
    if (rc == AH_E_CANCELLED) {
        fprintf(stderr,
                "batch: interrupted with %ld/%ld done; run the same command again to resume\n",
                res.done, res.total);
        return 130;
    }
    if (rc != AH_E_OK) {
        fprintf(stderr, "ahorro batch: %s\n", errbuf);
        return 1;
    }
    if (!quiet)
        fprintf(stderr,
                "batch: %ld done (%ld resumed from an earlier run), %ld failed, %ld retries, %ld "
                "rate-limited, $%.6f, %.1f s\nresults: %s, errors: %s\n",
                res.done, res.skipped, res.failed, res.retries, res.rate_limited, res.cost_usd,
                res.elapsed_s, output, errors);
    return 0; /* failed lines are in the error file, and counted above */
}

/* ---- estimate --------------------------------------------------------------------------- */

typedef struct route_est {
    char *model;
    long lines, uncapped;
    int64_t tokens_in, tokens_out;
    int estimated; /* not counted with the model's own tokenizer */
    double usd_in, usd_out;
    int priced;
} route_est_t;

#define MAX_ROUTES 256

static const ah_deployment_t *first_dep(const ah_config_t *cfg, const char *alias)
{
    for (size_t i = 0; i < cfg->ndeps; i++)
        if (strcmp(cfg->deps[i].alias, alias) == 0)
            return &cfg->deps[i];
    return NULL;
}

static int cmd_estimate(int argc, char **argv, const ah_config_t *cfg)
{
    const char *input = NULL, *model = NULL;
    int as_json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "--model") == 0 && i + 1 < argc)
            model = argv[++i];
        else if (argv[i][0] != '-' && !input)
            input = argv[i];
        else {
            batch_usage(stderr);
            return 2;
        }
    }
    if (!input) {
        batch_usage(stderr);
        return 2;
    }
    char err[600];
    ah_bpe_t *o200k = ah_bpe_open_default(NULL, "o200k_base", err, sizeof err);
    ah_bpe_t *cl100k = ah_bpe_open_default(NULL, "cl100k_base", err, sizeof err);
    ah_prices_t *cat = ah_prices_open_default(cfg->prices_path, NULL);
    FILE *f = fopen(input, "rb");
    if (!f) {
        fprintf(stderr, "ahorro batch: cannot open %s\n", input);
        ah_bpe_free(o200k);
        ah_bpe_free(cl100k);
        ah_prices_free(cat);
        return 1;
    }
    route_est_t routes[MAX_ROUTES];
    int nroutes = 0;
    long lines = 0, bad = 0;
    ah_buf_t line;
    ah_buf_init(&line, AH_BATCH_MAX_LINE);
    int c = 0, rc = 0;
    while (c != EOF) {
        ah_buf_reset(&line);
        int toolong = 0;
        while ((c = getc_unlocked(f)) != EOF && c != '\n') {
            char ch = (char)c;
            if (!toolong && ah_buf_append(&line, &ch, 1) != AH_E_OK)
                toolong = 1;
        }
        if (line.len == 0 && !toolong)
            continue;
        lines++;
        json_t *j = toolong ? NULL : json_loadb(line.data, line.len, 0, NULL);
        json_t *body = json_object_get(j, "body");
        const char *m = model ? model : json_string_value(json_object_get(body, "model"));
        const char *url = json_string_value(json_object_get(j, "url"));
        /* what the engine would refuse is not counted (ah_batch_scan's rules) */
        if (!json_is_object(body) || !m || !json_is_string(json_object_get(j, "custom_id")) ||
            !url || (strcmp(url, "/v1/chat/completions") && strcmp(url, "/v1/embeddings"))) {
            bad++;
            json_decref(j);
            continue;
        }
        route_est_t *r = NULL;
        for (int i = 0; i < nroutes; i++)
            if (strcmp(routes[i].model, m) == 0)
                r = &routes[i];
        if (!r && nroutes < MAX_ROUTES) {
            r = &routes[nroutes++];
            memset(r, 0, sizeof *r);
            r->model = ah_strdup(m);
        }
        if (!r) {
            bad++;
            json_decref(j);
            continue;
        }
        r->lines++;
        /* the prompt, counted as the provider behind the route counts it */
        const ah_deployment_t *d = first_dep(cfg, m);
        const char *upstream = d && strcmp(d->model, "*") != 0 ? d->model : m;
        ah_chat_model_t cm;
        int exact = ah_chat_model(upstream, &cm) == AH_E_OK && !cm.estimate;
        const ah_bpe_t *enc = strcmp(cm.encoding, "cl100k_base") == 0 && cl100k ? cl100k : o200k;
        int64_t tin;
        if (!enc || !json_is_array(json_object_get(body, "messages")) ||
            ah_chat_estimate(enc, body, &cm, &tin, NULL) != AH_E_OK) {
            char *t = json_dumps(body, JSON_COMPACT);
            tin = (int64_t)(t ? strlen(t) / 4 : 0);
            free(t);
            exact = 0;
        }
        if (!exact)
            r->estimated = 1;
        json_t *mt = json_object_get(body, "max_completion_tokens");
        if (!json_is_integer(mt))
            mt = json_object_get(body, "max_tokens");
        int64_t tout = json_is_integer(mt) ? (int64_t)json_integer_value(mt) : 0;
        if (!tout)
            r->uncapped++;
        r->tokens_in += tin;
        r->tokens_out += tout;
        ah_price_t price;
        int have = 0;
        if (d && d->has_price) {
            price = d->price;
            have = 1;
        } else if (cat && ah_prices_find(cat, d ? ah_catalogue_provider(d) : NULL, upstream,
                                         time(NULL), &price) == AH_E_OK) {
            have = 1;
        }
        if (have) {
            ah_usage_t ui = {.input_tokens = tin}, uo = {.output_tokens = tout};
            r->usd_in += ah_price_cost(&price, &ui);
            r->usd_out += ah_price_cost(&price, &uo);
            r->priced = 1;
        }
        json_decref(j);
    }
    fclose(f);
    ah_buf_free(&line);
    json_t *out = json_pack("{s:s,s:I,s:I,s:[]}", "input", input, "lines", (json_int_t)lines,
                            "unreadable", (json_int_t)bad, "routes");
    double total_in = 0, total_out = 0;
    if (!as_json)
        printf("%-28s %8s %14s %14s %12s %14s  %s\n", "route (model)", "requests", "prompt tokens",
               "output cap", "$ prompt", "$ at the cap", "notes");
    for (int i = 0; i < nroutes; i++) {
        route_est_t *r = &routes[i];
        total_in += r->usd_in;
        total_out += r->usd_out;
        json_array_append_new(
            json_object_get(out, "routes"),
            json_pack("{s:s,s:I,s:I,s:I,s:I,s:b,s:o,s:o}", "model", r->model, "requests",
                      (json_int_t)r->lines, "prompt_tokens", (json_int_t)r->tokens_in,
                      "output_tokens_cap", (json_int_t)r->tokens_out, "uncapped",
                      (json_int_t)r->uncapped, "estimated", r->estimated, "usd_prompt",
                      r->priced ? json_real(r->usd_in) : json_null(), "usd_output_cap",
                      r->priced ? json_real(r->usd_out) : json_null()));
        if (!as_json) {
            char note[160] = "";
            if (r->estimated)
                snprintf(note, sizeof note, "estimated tokens; ");
            if (r->uncapped)
                snprintf(note + strlen(note), sizeof note - strlen(note),
                         "%ld without max_tokens (output not counted); ", r->uncapped);
            if (!r->priced)
                snprintf(note + strlen(note), sizeof note - strlen(note), "no price known");
            char pin[32] = "-", pout[32] = "-";
            if (r->priced) {
                snprintf(pin, sizeof pin, "%.4f", r->usd_in);
                snprintf(pout, sizeof pout, "%.4f", r->usd_out);
            }
            printf("%-28s %8ld %14lld %14lld %12s %14s  %s\n", r->model, r->lines,
                   (long long)r->tokens_in, (long long)r->tokens_out, pin, pout, note);
        }
        ah_free(r->model);
    }
    json_object_set_new(out, "usd_prompt", json_real(total_in));
    json_object_set_new(out, "usd_output_cap", json_real(total_out));
    if (as_json) {
        char *t = json_dumps(out, JSON_INDENT(2));
        printf("%s\n", t);
        free(t);
    } else {
        printf("total: %ld requests, $%.4f for the prompts, at most $%.4f for the answers "
               "(with max_tokens)\n",
               lines - bad, total_in, total_out);
        if (bad)
            printf("%ld malformed line(s) are not counted (they go to the error file)\n", bad);
    }
    json_decref(out);
    ah_bpe_free(o200k);
    ah_bpe_free(cl100k);
    ah_prices_free(cat);
    return rc;
}

int ah_cli_batch(int argc, char **argv, ah_config_t *cfg)
{
    if (argc < 1 || strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
        batch_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!getenv("AHORRO_LOG"))
        ah_log_set_level(AH_LOG_WARN);
    if (strcmp(argv[0], "run") == 0)
        return cmd_run(argc - 1, argv + 1, cfg);
    if (strcmp(argv[0], "estimate") == 0)
        return cmd_estimate(argc - 1, argv + 1, cfg);
    batch_usage(stderr);
    return 2;
}
