/* tokens.c - `ahorro tokens`: how many tokens a prompt is, and what it costs.
 *
 *   ahorro tokens [--encoding o200k_base|cl100k_base | --model M] [--json] [--ids]
 *                 [--chat [--anthropic]] [--special] [--jsonl] [--price-models M1,M2,...]
 *                 [--data-dir DIR] FILE|-
 *
 * Counts with the exact tokenizer (src/tokenize/bpe.h); --chat reads an OpenAI
 * chat body and counts it by OpenAI's chat rules (src/tokenize/chat.h);
 * --anthropic reads an Anthropic Messages body instead (or a count_tokens
 * body, without max_tokens) and counts it as the gateway does: translated to
 * the canonical chat body by the gateway's own ingress (src/ingress/).
 * --jsonl reads one JSON string a line and prints one result a line (the
 * corpus test in tests/tokenize/ drives this). Rank files are looked up in
 * --data-dir, $AHORRO_TOKENIZERS_DIR, beside the binary (data/, ../data/,
 * ../share/ahorro/), then build/data (scripts/build-tokenizers.sh puts them
 * there). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/path.h"
#include "ingress/ingress.h"
#include "pipeline/request.h"
#include "store/prices.h"
#include "tokenize/bpe.h"
#include "tokenize/chat.h"

#define PATH_BYTES 4200
#define MAX_PRICE_MODELS 16
/* Models priced when neither --model nor --price-models says. */
static const char *const DEFAULT_O200K_MODELS[] = {
    "gpt-4o-mini", "gpt-4o", "gpt-4.1-mini",     "gpt-4.1",           "gpt-5-mini",
    "gpt-5",       "o3",     "claude-haiku-4-5", "claude-sonnet-4-5", NULL,
};
static const char *const DEFAULT_CL100K_MODELS[] = {"gpt-3.5-turbo", "gpt-4",
                                                    "text-embedding-3-small", NULL};

typedef struct opts {
    const char *encoding, *model, *data_dir, *file, *price_models;
    int json, ids, chat, anthropic, special, jsonl;
} opts_t;

static void usage(void)
{
    fprintf(stderr,
            "usage: ahorro tokens [--encoding o200k_base|cl100k_base | --model M] [--json]\n"
            "                     [--ids] [--chat [--anthropic]] [--special] [--jsonl]\n"
            "                     [--price-models M1,M2] [--data-dir DIR] FILE|-\n");
}

static int read_input(const char *file, ah_buf_t *out)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    char chunk[65536];
    int rc = 0;
    if (!f) {
        fprintf(stderr, "ahorro tokens: cannot open %s: %s\n", file, strerror(errno));
        return -1;
    }
    for (;;) {
        size_t n = fread(chunk, 1, sizeof chunk, f);
        if (n && ah_buf_append(out, chunk, n)) {
            fprintf(stderr, "ahorro tokens: %s is larger than %u bytes\n", file,
                    AH_BPE_MAX_TEXT_BYTES);
            rc = -1;
            break;
        }
        if (n < sizeof chunk) {
            if (ferror(f)) {
                fprintf(stderr, "ahorro tokens: cannot read %s\n", file);
                rc = -1;
            }
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    return rc;
}

static ah_bpe_t *load_encoding(const char *dir, const char *name)
{
    char err[512] = "";
    ah_bpe_t *e = ah_bpe_open_default(dir, name, err, sizeof err);
    if (!e)
        fprintf(stderr, "ahorro tokens: %s%s\n", err, dir ? "" : " (or give --data-dir)");
    return e;
}

/* The price catalogue, looked up as `ahorro serve` does. */
static ah_prices_t *load_prices(const ah_config_t *cfg)
{
    return ah_prices_open_default(cfg ? cfg->prices_path : NULL, NULL);
}

/* What is being priced: a text's count, or a chat body (counted per model). */
typedef struct counted {
    int64_t tokens; /* in the encoding */
    const char *encoding;
    const ah_bpe_t *enc; /* with body: the encoding that counts it */
    const json_t *body;  /* --chat: the canonical chat body, else NULL */
} counted_t;

/* One price line: model, its token count (scaled for estimates), cost. */
static json_t *price_of(const ah_prices_t *cat, const char *model, const counted_t *c)
{
    ah_chat_model_t cm;
    ah_chat_model(model, &cm);
    int64_t t = c->tokens;
    bool estimate = cm.estimate || strcmp(cm.encoding, c->encoding) != 0;
    if (c->body)
        ah_chat_estimate(c->enc, c->body, &cm, &t, NULL); /* counted once already: no error */
    else if (cm.factor != 1.0)
        t = (int64_t)ceil((double)c->tokens * cm.factor);
    json_t *o =
        json_pack("{s:s, s:I, s:b}", "model", model, "tokens", (json_int_t)t, "estimate", estimate);
    ah_price_t price;
    ah_price_match_t match;
    /* The catalogue lists OpenAI's models under azure and others too. */
    const char *provider = strncmp(model, "claude", 6) == 0 ? "anthropic"
                           : cm.estimate                    ? NULL
                                                            : "openai";
    if (cat && ah_prices_find_match(cat, provider, model, time(NULL), &price, &match) == AH_E_OK) {
        ah_usage_t u = {.input_tokens = t};
        json_object_set_new(o, "provider", json_string(match.provider));
        json_object_set_new(o, "usd", json_real(ah_price_cost(&price, &u)));
        json_object_set_new(o, "usd_per_mtok", json_real(price.input.base));
    } else {
        json_object_set_new(o, "usd", json_null());
    }
    return o;
}

static json_t *prices_for(const opts_t *o, const ah_prices_t *cat, const counted_t *c)
{
    json_t *arr = json_array();
    if (o->price_models) {
        char *list = ah_strdup(o->price_models), *save = NULL;
        for (char *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save))
            if (*m && json_array_size(arr) < MAX_PRICE_MODELS)
                json_array_append_new(arr, price_of(cat, m, c));
        ah_free(list);
    } else if (o->model) {
        json_array_append_new(arr, price_of(cat, o->model, c));
    } else {
        const char *const *d =
            strcmp(c->encoding, "cl100k_base") == 0 ? DEFAULT_CL100K_MODELS : DEFAULT_O200K_MODELS;
        for (; *d; d++)
            json_array_append_new(arr, price_of(cat, *d, c));
    }
    return arr;
}

static json_t *ids_json(const uint32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer(ids[i]));
    return a;
}

/* --jsonl: one JSON string a line in, {"tokens": N[, "ids": [...]]} a line out. */
static int run_jsonl(const opts_t *o, const ah_bpe_t *enc, const ah_buf_t *in)
{
    unsigned flags = o->special ? AH_BPE_ALLOW_SPECIAL : 0;
    size_t line_no = 0;
    for (size_t i = 0; i < in->len;) {
        const char *nl = memchr(in->data + i, '\n', in->len - i);
        size_t end = nl ? (size_t)(nl - in->data) : in->len;
        line_no++;
        if (end > i) {
            json_error_t jerr;
            json_t *v = json_loadb(in->data + i, end - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
            if (!json_is_string(v)) {
                fprintf(stderr, "ahorro tokens: line %zu: not a JSON string\n", line_no);
                json_decref(v);
                return 1;
            }
            uint32_t *ids = NULL;
            size_t n = 0;
            ah_err_t rc = ah_bpe_encode_alloc(enc, json_string_value(v), json_string_length(v),
                                              flags, AH_BPE_MAX_TEXT_BYTES, &ids, &n);
            json_decref(v);
            if (rc) {
                fprintf(stderr, "ahorro tokens: line %zu: %s\n", line_no, ah_strerror(rc));
                return 1;
            }
            json_t *out = json_pack("{s:I}", "tokens", (json_int_t)n);
            if (o->ids)
                json_object_set_new(out, "ids", ids_json(ids, n));
            char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(10));
            puts(s);
            free(s);
            json_decref(out);
            ah_free(ids);
        }
        i = end + 1;
    }
    return 0;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **val = NULL;
        if (strcmp(a, "--encoding") == 0)
            val = &o->encoding;
        else if (strcmp(a, "--model") == 0)
            val = &o->model;
        else if (strcmp(a, "--data-dir") == 0)
            val = &o->data_dir;
        else if (strcmp(a, "--price-models") == 0)
            val = &o->price_models;
        else if (strcmp(a, "--json") == 0)
            o->json = 1;
        else if (strcmp(a, "--ids") == 0)
            o->ids = 1;
        else if (strcmp(a, "--chat") == 0)
            o->chat = 1;
        else if (strcmp(a, "--anthropic") == 0)
            o->chat = o->anthropic = 1;
        else if (strcmp(a, "--special") == 0)
            o->special = 1;
        else if (strcmp(a, "--jsonl") == 0)
            o->jsonl = 1;
        else if ((a[0] != '-' || strcmp(a, "-") == 0) && !o->file)
            o->file = a;
        else {
            fprintf(stderr, "ahorro tokens: unexpected argument %s\n", a);
            return -1;
        }
        if (val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ahorro tokens: %s needs a value\n", a);
                return -1;
            }
            *val = argv[++i];
        }
    }
    if (!o->file || (o->encoding && o->model)) {
        if (o->encoding && o->model)
            fprintf(stderr, "ahorro tokens: --encoding and --model exclude each other\n");
        return -1;
    }
    return 0;
}

/* The canonical chat body the gateway makes of an Anthropic Messages body;
 * takes body. A count_tokens body has no max_tokens, which the ingress wants:
 * any positive value counts the same. NULL (said on stderr) when the ingress
 * refuses it. */
static json_t *anthropic_to_chat(json_t *body)
{
    if (!json_object_get(body, "max_tokens"))
        json_object_set_new(body, "max_tokens", json_integer(1));
    ah_request_t *r = ah_request_new(AH_API_ANTHROPIC, AH_OP_CHAT);
    json_t *canon = NULL;
    if (!r)
        fprintf(stderr, "ahorro tokens: out of memory\n");
    else if (ah_ingress_anthropic.parse_chat(r, body) != AH_E_OK)
        fprintf(stderr, "ahorro tokens: --anthropic: %s\n", r->fail.message);
    else
        canon = json_incref(r->body);
    ah_request_free(r);
    json_decref(body);
    return canon;
}

int ah_cli_tokens(int argc, char **argv, const ah_config_t *cfg)
{
    opts_t o = {0};
    ah_buf_t in;
    ah_bpe_t *enc = NULL;
    ah_prices_t *cat = NULL;
    json_t *body = NULL, *out = NULL;
    uint32_t *ids = NULL;
    int status = 1;
    ah_buf_init(&in, AH_BPE_MAX_TEXT_BYTES);
    if (parse_args(argc, argv, &o)) {
        usage();
        status = 2;
        goto out;
    }
    if (read_input(o.file, &in))
        goto out;
    if (o.chat) {
        json_error_t jerr;
        body = json_loadb(in.data ? in.data : "", in.len, 0, &jerr);
        if (!body) {
            fprintf(stderr, "ahorro tokens: --chat: line %d: %s\n", jerr.line, jerr.text);
            goto out;
        }
        if (!json_is_object(body)) {
            fprintf(stderr, "ahorro tokens: --chat: the body must be a JSON object\n");
            goto out;
        }
        if (o.anthropic && !(body = anthropic_to_chat(body)))
            goto out;
        if (!o.model && !o.encoding)
            o.model = json_string_value(json_object_get(body, "model"));
    }
    const char *encoding = o.encoding;
    if (!encoding) {
        ah_chat_model_t cm = {.encoding = "o200k_base"};
        if (o.model && ah_chat_model(o.model, &cm) != AH_E_OK)
            fprintf(stderr, "ahorro tokens: %s: tokenizer not known, counting with %s\n", o.model,
                    cm.encoding);
        encoding = o.model ? cm.encoding : "o200k_base";
    }
    if (strcmp(encoding, "o200k_base") != 0 && strcmp(encoding, "cl100k_base") != 0) {
        fprintf(stderr, "ahorro tokens: unknown encoding %s (o200k_base, cl100k_base)\n", encoding);
        status = 2;
        goto out;
    }
    if (!getenv("AHORRO_LOG"))
        ah_log_set_level(AH_LOG_WARN); /* the price catalogue's load line is noise here */
    if (!(enc = load_encoding(o.data_dir, encoding)))
        goto out;
    if (o.jsonl) {
        status = run_jsonl(&o, enc, &in);
        goto out;
    }
    size_t n = 0;
    ah_chat_count_t cc = {0};
    ah_err_t rc;
    if (o.chat) {
        rc = ah_chat_tokens(enc, body, &cc);
        n = (size_t)cc.total;
    } else if (o.ids) {
        rc = ah_bpe_encode_alloc(enc, in.data, in.len, o.special ? AH_BPE_ALLOW_SPECIAL : 0,
                                 AH_BPE_MAX_TEXT_BYTES, &ids, &n);
    } else {
        rc = ah_bpe_count(enc, in.data, in.len, o.special ? AH_BPE_ALLOW_SPECIAL : 0, &n);
    }
    if (rc) {
        fprintf(stderr, "ahorro tokens: %s\n", ah_strerror(rc));
        goto out;
    }
    cat = load_prices(cfg);
    counted_t counted = {
        .tokens = (int64_t)n, .encoding = encoding, .enc = enc, .body = o.chat ? body : NULL};
    json_t *prices = prices_for(&o, cat, &counted);
    if (o.json) {
        out = json_pack("{s:I, s:s, s:I, s:o}", "tokens", (json_int_t)n, "encoding", encoding,
                        "bytes", (json_int_t)in.len, "prices", prices);
        if (o.chat)
            json_object_set_new(out, "chat",
                                json_pack("{s:I, s:I, s:I, s:i, s:i}", "messages", cc.messages,
                                          "tools", cc.tools, "images", cc.images, "n_messages",
                                          cc.n_messages, "n_images", cc.n_images));
        if (ids)
            json_object_set_new(out, "ids", ids_json(ids, n));
        char *s = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(10));
        puts(s);
        free(s);
    } else {
        printf("%zu tokens (%s, %zu bytes%s)\n", n, encoding, in.len, o.chat ? ", chat rules" : "");
        if (ids) {
            for (size_t i = 0; i < n; i++)
                printf("%s%u", i ? " " : "", ids[i]);
            printf("\n");
        }
        size_t i;
        json_t *p;
        json_array_foreach(prices, i, p)
        {
            json_t *usd = json_object_get(p, "usd");
            printf("  %-24s %10lld tokens%s  ", json_string_value(json_object_get(p, "model")),
                   (long long)json_integer_value(json_object_get(p, "tokens")),
                   json_is_true(json_object_get(p, "estimate")) ? " (est.)" : "       ");
            if (json_is_real(usd))
                printf("$%.6f\n", json_real_value(usd));
            else
                printf("price unknown\n");
        }
        json_decref(prices);
    }
    status = 0;
out:
    json_decref(out);
    json_decref(body);
    ah_free(ids);
    ah_prices_free(cat);
    ah_bpe_free(enc);
    ah_buf_free(&in);
    return status;
}
