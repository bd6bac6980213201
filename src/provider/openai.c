/* openai.c - OpenAI and every OpenAI-compatible server (vLLM, TGI, Ollama,
 * llama.cpp, ...), and Azure OpenAI (deployment path, api-version, api-key).
 *
 * The canonical form is OpenAI's, so the body goes out as the client's
 * canonical body with the upstream model name; in streams the gateway always
 * asks for usage (stream_options.include_usage), and the client only sees the
 * usage chunk when it asked for it (ingress decides). */
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

static ah_err_t parse_response(ah_request_t *r, json_t *answer, json_t **canon)
{
    if (!json_is_object(answer))
        return AH_E_PARSE;
    read_usage(r, json_object_get(answer, "usage"));
    const char *model = json_string_value(json_object_get(answer, "model"));
    if (model)
        r->served_model = ah_arena_strdup(&r->arena, model);
    if (canon)
        *canon = json_incref(answer);
    return AH_E_OK;
}

static ah_err_t stream_event(ah_provider_stream_t *ps, ah_request_t *r, const char *event,
                             json_t *data, json_t *chunks, int *is_token)
{
    *is_token = 0;
    if (!data) /* "[DONE]" */
        return ps->done = 1, AH_E_OK;
    json_t *err = json_object_get(data, "error");
    if (err) {
        const char *m = json_string_value(json_object_get(err, "message"));
        ah_request_fail(r, 502, "server_error", NULL, NULL, "upstream stream error: %s",
                        m ? m : "unknown");
        return AH_E_UPSTREAM;
    }
    const char *model = json_string_value(json_object_get(data, "model"));
    if (model && !r->served_model)
        r->served_model = ah_arena_strdup(&r->arena, model);
    read_usage(r, json_object_get(data, "usage"));
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(data, "choices"), i, c)
    {
        json_t *d = json_object_get(c, "delta");
        const char *text = json_string_value(json_object_get(d, "content"));
        if ((text && *text) || json_object_get(d, "tool_calls") ||
            json_string_value(json_object_get(d, "reasoning_content")))
            *is_token = 1;
    }
    if (chunks)
        json_array_append(chunks, data);
    return AH_E_OK;
}

const ah_provider_ops_t ah_provider_openai = {
    .name = "openai",
    .api = AH_API_OPENAI,
    .build = build,
    .parse_response = parse_response,
    .stream_event = stream_event,
};
