/* openai.c - OpenAI and every OpenAI-compatible server (vLLM, TGI, Ollama,
 * llama.cpp, ...), and Azure OpenAI (deployment path, api-version, api-key).
 *
 * The canonical form is OpenAI's, so the body goes out as the client's
 * canonical body with the upstream model name; in streams the gateway always
 * asks for usage (stream_options.include_usage), and the client only sees the
 * usage chunk when it asked for it (ingress decides). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "provider/provider.h"

static char *url_of(const ah_request_t *r, const ah_deployment_t *d)
{
    const char *op = r->op == AH_OP_EMBEDDINGS ? "embeddings" : "chat/completions";
    size_t n = strlen(d->api_base) + strlen(r->upstream_model) +
               (d->api_version ? strlen(d->api_version) : 0) + 64;
    char *url = ah_malloc(n);
    if (d->kind == AH_PROVIDER_AZURE) {
        char *esc = curl_easy_escape(NULL, r->upstream_model, 0);
        snprintf(url, n, "%s/openai/deployments/%s/%s?api-version=%s", d->api_base,
                 esc ? esc : r->upstream_model, op, d->api_version ? d->api_version : "");
        curl_free(esc);
    } else {
        snprintf(url, n, "%s/%s", d->api_base, op);
    }
    return url;
}

static ah_err_t build(ah_request_t *r, const ah_deployment_t *d, ah_provider_req_t *out)
{
    json_t *body = json_copy(r->body); /* shallow: only top-level keys change */
    json_object_set_new(body, "model", json_string(r->upstream_model));
    if (r->op == AH_OP_CHAT && r->stream) {
        json_t *so = json_object_get(body, "stream_options");
        json_t *nso = json_is_object(so) ? json_copy(so) : json_object();
        json_object_set_new(nso, "include_usage", json_true());
        json_object_set_new(body, "stream_options", nso);
    }
    /* OpenAI refuses metadata unless the completion is stored; to ahorro it
     * is attribution, not a parameter for the model. */
    if (!json_is_true(json_object_get(body, "store")))
        json_object_del(body, "metadata");
    out->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!out->body)
        return ah_request_fail(r, 400, NULL, NULL, NULL, "request cannot be serialized"),
               AH_E_INVAL;
    out->body_len = strlen(out->body);
    out->url = url_of(r, d);
    out->headers = ah_provider_header(NULL, "Content-Type", "application/json");
    out->headers = ah_provider_header(out->headers, "Accept",
                                      r->stream ? "text/event-stream" : "application/json");
    out->headers = ah_provider_header(out->headers, "Expect", "");
    if (d->api_key) {
        if (d->kind == AH_PROVIDER_AZURE) {
            out->headers = ah_provider_header(out->headers, "api-key", d->api_key);
        } else {
            size_t n = strlen(d->api_key) + 8;
            char *v = ah_malloc(n);
            snprintf(v, n, "Bearer %s", d->api_key);
            out->headers = ah_provider_header(out->headers, "Authorization", v);
            ah_free(v);
        }
    }
    return AH_E_OK;
}

static void read_usage(ah_request_t *r, json_t *usage)
{
    if (!json_is_object(usage))
        return;
    r->usage.input_tokens = json_integer_value(json_object_get(usage, "prompt_tokens"));
    r->usage.output_tokens = json_integer_value(json_object_get(usage, "completion_tokens"));
    r->usage.cache_read_tokens = json_integer_value(
        json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
    r->usage.cache_write_tokens = json_integer_value(
        json_object_get(json_object_get(usage, "prompt_tokens_details"), "cache_write_tokens"));
    r->usage.reasoning_tokens = json_integer_value(
        json_object_get(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens"));
    r->usage_known = 1;
}

/* An integer member of a skimmed object as json_integer_value reads it: 0
 * when absent or null. -1 for any other value (a real, a string, an integer
 * beyond int64, a leading zero...): the caller leaves those to jansson. */
static int span_int(ah_json_span_t sp, int64_t *out)
{
    *out = 0;
    if (!sp.p || ah_json_span_is(sp, "null"))
        return 0;
    size_t i = sp.p[0] == '-';
    if (i >= sp.n || (sp.p[i] == '0' && i + 1 < sp.n))
        return -1;
    int64_t v = 0;
    for (; i < sp.n; i++) {
        int d = sp.p[i] - '0';
        if (d < 0 || d > 9 || v > (INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = sp.p[0] == '-' ? -v : v;
    return 0;
}

/* The integer member `key` of the object spanned by sp (absent or null: 0).
 * -1 when sp is not an object or the member is not a plain integer. */
static int span_member_int(ah_json_span_t sp, const char *key, int64_t *out)
{
    *out = 0;
    if (!sp.p || ah_json_span_is(sp, "null"))
        return 0;
    const char *const keys[] = {key};
    ah_json_span_t v;
    if (ah_json_skim(sp.p, sp.n, keys, 1, &v))
        return -1;
    return span_int(v, out);
}

/* read_usage on a skimmed usage span, without building it in jansson (the
 * parse of the usage object was ~5% of a proxied request's CPU). Anything
 * but an object of plain integers (and null, nested details) goes to
 * jansson, whose reading is the reference. */
static void read_usage_span(ah_request_t *r, ah_json_span_t sp)
{
    static const char *const keys[] = {"prompt_tokens", "completion_tokens",
                                       "prompt_tokens_details", "completion_tokens_details"};
    ah_json_span_t v[4];
    ah_usage_t u;
    if (sp.p && sp.p[0] == '{' && ah_json_skim(sp.p, sp.n, keys, 4, v) == AH_E_OK &&
        span_int(v[0], &u.input_tokens) == 0 && span_int(v[1], &u.output_tokens) == 0 &&
        span_member_int(v[2], "cached_tokens", &u.cache_read_tokens) == 0 &&
        span_member_int(v[2], "cache_write_tokens", &u.cache_write_tokens) == 0 &&
        span_member_int(v[3], "reasoning_tokens", &u.reasoning_tokens) == 0) {
        r->usage = u;
        r->usage_known = 1;
        return;
    }
    json_t *usage = ah_provider_span_json(sp);
    read_usage(r, usage);
    json_decref(usage);
}

static ah_err_t parse_response(ah_request_t *r, const char *body, size_t len, json_t **canon)
{
    if (canon) {
        json_t *answer = json_loadb(body, len, 0, NULL);
        if (!json_is_object(answer)) {
            json_decref(answer);
            return AH_E_PARSE;
        }
        read_usage(r, json_object_get(answer, "usage"));
        const char *model = json_string_value(json_object_get(answer, "model"));
        if (model)
            r->served_model = ah_arena_strdup(&r->arena, model);
        *canon = answer;
        return AH_E_OK;
    }
    static const char *const keys[] = {"usage", "model"};
    ah_json_span_t v[2];
    if (ah_json_skim(body, len, keys, 2, v))
        return AH_E_PARSE;
    if (v[0].p)
        read_usage_span(r, v[0]);
    const char *model = ah_provider_span_string(r, v[1]);
    if (model)
        r->served_model = model;
    return AH_E_OK;
}

/* Does the span (a choices array) hold a non-empty string member `name`?
 * Tolerates spaces around the colon, as Python-made JSON has. */
static int has_text(ah_json_span_t sp, const char *name)
{
    size_t nl = strlen(name);
    const char *p = sp.p, *end = sp.p + sp.n;
    while (p && p < end) {
        const char *q = memmem(p, (size_t)(end - p), name, nl);
        if (!q)
            return 0;
        q += nl;
        while (q < end && (*q == ' ' || *q == ':'))
            q++;
        if (q + 1 < end && q[0] == '"' && q[1] != '"')
            return 1;
        p = q;
    }
    return 0;
}

static ah_err_t stream_fail(ah_request_t *r, json_t *err)
{
    const char *m = json_string_value(json_object_get(err, "message"));
    ah_request_fail(r, 502, "server_error", NULL, NULL, "upstream stream error: %s",
                    m ? m : "unknown");
    return AH_E_UPSTREAM;
}

/* A raw-forwarded event: skim for what the ledger needs. */
static ah_err_t stream_skim(ah_provider_stream_t *ps, ah_request_t *r, const char *data, size_t len,
                            int *is_token, int *forward)
{
    static const char *const keys[] = {"error", "usage", "choices", "model"};
    ah_json_span_t v[4];
    if (ah_json_skim(data, len, keys, 4, v))
        return AH_E_OK; /* not an object: nothing to account, forwarded as is */
    if (v[0].p && !ah_json_span_is(v[0], "null")) {
        json_t *err = ah_provider_span_json(v[0]);
        ah_err_t rc = stream_fail(r, err);
        json_decref(err);
        return rc;
    }
    if (!r->served_model && v[3].p)
        r->served_model = ah_provider_span_string(r, v[3]);
    int has_usage = v[1].p && !ah_json_span_is(v[1], "null");
    if (has_usage)
        read_usage_span(r, v[1]);
    if (!ps->first_token_seen && v[2].p &&
        (has_text(v[2], "\"content\"") || has_text(v[2], "\"reasoning_content\"") ||
         memmem(v[2].p, v[2].n, "\"tool_calls\"", 12)))
        *is_token = ps->first_token_seen = 1;
    /* The usage chunk exists because the gateway asked for usage; a client
     * that did not ask never sees it. */
    if (has_usage && ah_json_span_is(v[2], "[]") && !r->client_wants_usage)
        *forward = 0;
    return AH_E_OK;
}

static ah_err_t stream_event(ah_provider_stream_t *ps, ah_request_t *r, const char *event,
                             const char *data, size_t len, json_t *chunks, int *is_token,
                             int *forward)
{
    *is_token = 0;
    *forward = 1;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
        return ps->done = 1, AH_E_OK;
    if (!chunks)
        return stream_skim(ps, r, data, len, is_token, forward);
    json_t *j = json_loadb(data, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return AH_E_OK;
    }
    json_t *err = json_object_get(j, "error");
    if (err) {
        ah_err_t rc = stream_fail(r, err);
        json_decref(j);
        return rc;
    }
    const char *model = json_string_value(json_object_get(j, "model"));
    if (model && !r->served_model)
        r->served_model = ah_arena_strdup(&r->arena, model);
    json_t *usage = json_object_get(j, "usage");
    read_usage(r, usage);
    json_t *choices = json_object_get(j, "choices");
    /* as in stream_skim: a raw forward drops the usage chunk nobody asked for */
    if (json_is_object(usage) && json_is_array(choices) && json_array_size(choices) == 0 &&
        !r->client_wants_usage)
        *forward = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "choices"), i, c)
    {
        json_t *d = json_object_get(c, "delta");
        const char *text = json_string_value(json_object_get(d, "content"));
        const char *reasoning = json_string_value(json_object_get(d, "reasoning_content"));
        if ((text && *text) || (reasoning && *reasoning) || json_object_get(d, "tool_calls"))
            *is_token = 1;
    }
    json_array_append_new(chunks, j);
    return AH_E_OK;
}

const ah_provider_ops_t ah_provider_openai = {
    .name = "openai",
    .api = AH_API_OPENAI,
    .build = build,
    .parse_response = parse_response,
    .stream_event = stream_event,
};
