/* anthropic.c - Anthropic's Messages API as an upstream.
 *
 * A client that spoke Anthropic gets its own body forwarded (model replaced):
 * nothing is lost in translation. A canonical (OpenAI) request is translated:
 * system messages -> `system`, content parts -> blocks, tool_calls ->
 * tool_use, tool messages -> tool_result blocks, tools/tool_choice ->
 * Anthropic's shapes, max_tokens filled in (Anthropic requires it). Answers
 * and stream events are translated back to the canonical form on demand. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_text.h"
#include "core/limits.h"
#include "provider/prompt_cache.h"
#include "provider/provider.h"

#define ANTHROPIC_VERSION "2023-06-01"
#define DEFAULT_MAX_TOKENS 4096

static json_t *text_block(const char *text)
{
    return json_pack("{s:s,s:s}", "type", "text", "text", text);
}

static json_t *content_blocks(json_t *content)
{
    json_t *out = json_array();
    if (json_is_string(content)) {
        if (json_string_length(content))
            json_array_append_new(out, text_block(json_string_value(content)));
        return out;
    }
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p)
    {
        const char *t = json_string_value(json_object_get(p, "type"));
        if (!t)
            continue;
        if (strcmp(t, "text") == 0 && json_is_string(json_object_get(p, "text"))) {
            json_array_append_new(out, text_block(json_string_value(json_object_get(p, "text"))));
        } else if (strcmp(t, "image_url") == 0) {
            json_t *iu = json_object_get(p, "image_url");
            const char *url =
                json_string_value(json_is_string(iu) ? iu : json_object_get(iu, "url"));
            if (!url)
                continue;
            if (strncmp(url, "data:", 5) == 0) {
                const char *semi = strchr(url, ';'), *comma = strchr(url, ',');
                if (!semi || !comma || comma < semi)
                    continue;
                char mt[64];
                snprintf(mt, sizeof mt, "%.*s", (int)(semi - url - 5), url + 5);
                json_array_append_new(out, json_pack("{s:s,s:{s:s,s:s,s:s}}", "type", "image",
                                                     "source", "type", "base64", "media_type", mt,
                                                     "data", comma + 1));
            } else {
                json_array_append_new(out, json_pack("{s:s,s:{s:s,s:s}}", "type", "image", "source",
                                                     "type", "url", "url", url));
            }
        }
    }
    return out;
}

/* Append a message, merging it into the previous one of the same role
 * (Anthropic wants user/assistant turns; tool results are user blocks). */
static void push(json_t *msgs, const char *role, json_t *blocks)
{
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0) {
        json_array_extend(json_object_get(last, "content"), blocks);
        json_decref(blocks);
        return;
    }
    json_array_append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", blocks));
}

static json_t *translate(ah_request_t *r)
{
    json_t *c = r->body;
    json_t *out = json_object();
    json_t *msgs = json_array();
    ah_buf_t system;
    ah_buf_init(&system, AH_MAX_BODY_BYTES);
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(c, "messages"), i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
            char *t = ah_json_join_text(content, "\n");
            if (system.len)
                ah_buf_appends(&system, "\n\n");
            ah_buf_appends(&system, t);
            ah_free(t);
        } else if (strcmp(role, "tool") == 0 || strcmp(role, "function") == 0) {
            char *t = ah_json_join_text(content, "\n");
            json_t *blk = json_pack("{s:s,s:O?,s:s}", "type", "tool_result", "tool_use_id",
                                    json_object_get(m, "tool_call_id"), "content", t);
            ah_free(t);
            push(msgs, "user", json_pack("[o]", blk));
        } else {
            json_t *blocks = content_blocks(content);
            size_t k;
            json_t *tc;
            json_array_foreach(json_object_get(m, "tool_calls"), k, tc)
            {
                json_t *fn = json_object_get(tc, "function");
                const char *args = json_string_value(json_object_get(fn, "arguments"));
                json_t *input = args ? json_loads(args, 0, NULL) : NULL;
                if (!json_is_object(input)) {
                    json_decref(input);
                    input = json_object();
                }
                json_array_append_new(blocks,
                                      json_pack("{s:s,s:O?,s:O?,s:o}", "type", "tool_use", "id",
                                                json_object_get(tc, "id"), "name",
                                                json_object_get(fn, "name"), "input", input));
            }
            if (json_array_size(blocks) == 0)
                json_array_append_new(blocks, text_block("..."));
            push(msgs, strcmp(role, "assistant") == 0 ? "assistant" : "user", blocks);
        }
    }
    json_t *fmt = json_object_get(c, "response_format");
    const char *ft = json_string_value(json_object_get(fmt, "type"));
    if (ft && strcmp(ft, "text") != 0) {
        /* Anthropic has no JSON mode: ask for it in the system prompt. */
        if (system.len)
            ah_buf_appends(&system, "\n\n");
        ah_buf_appends(&system, "Respond only with a valid JSON object.");
    }
    json_object_set_new(out, "model", json_string(r->upstream_model));
    if (system.len)
        json_object_set_new(out, "system", json_string(system.data));
    ah_buf_free(&system);
    json_object_set_new(out, "messages", msgs);
    json_t *mt = json_object_get(c, "max_completion_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(c, "max_tokens");
    json_object_set_new(
        out, "max_tokens",
        json_integer(json_is_integer(mt) ? json_integer_value(mt) : DEFAULT_MAX_TOKENS));
    json_t *temp = json_object_get(c, "temperature");
    if (json_is_number(temp)) {
        double t = json_number_value(temp);
        json_object_set_new(out, "temperature", json_real(t > 1 ? 1 : t));
    }
    if (json_object_get(c, "top_p"))
        json_object_set(out, "top_p", json_object_get(c, "top_p"));
    json_t *stop = json_object_get(c, "stop");
    if (json_is_string(stop))
        json_object_set_new(out, "stop_sequences", json_pack("[O]", stop));
    else if (json_is_array(stop))
        json_object_set(out, "stop_sequences", stop);
    if (r->stream)
        json_object_set_new(out, "stream", json_true());
    json_t *tools = json_object_get(c, "tools");
    if (json_is_array(tools) && json_array_size(tools)) {
        json_t *at = json_array();
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            json_t *fn = json_object_get(t, "function");
            if (!fn)
                continue;
            json_t *schema = json_object_get(fn, "parameters");
            json_t *tool =
                json_pack("{s:O?,s:o}", "name", json_object_get(fn, "name"), "input_schema",
                          schema ? json_incref(schema) : json_pack("{s:s}", "type", "object"));
            if (json_object_get(fn, "description"))
                json_object_set(tool, "description", json_object_get(fn, "description"));
            json_array_append_new(at, tool);
        }
        json_object_set_new(out, "tools", at);
        json_t *tc = json_object_get(c, "tool_choice");
        const char *tcs = json_string_value(tc);
        if (tcs && strcmp(tcs, "required") == 0)
            json_object_set_new(out, "tool_choice", json_pack("{s:s}", "type", "any"));
        else if (tcs && strcmp(tcs, "none") == 0)
            json_object_set_new(out, "tool_choice", json_pack("{s:s}", "type", "none"));
        else if (json_is_object(tc))
            json_object_set_new(
                out, "tool_choice",
                json_pack("{s:s,s:O?}", "type", "tool", "name",
                          json_object_get(json_object_get(tc, "function"), "name")));
    }
    if (r->user)
        json_object_set_new(out, "metadata", json_pack("{s:s}", "user_id", r->user));
    return out;
}

static ah_err_t build(ah_request_t *r, const ah_deployment_t *d, ah_provider_req_t *out)
{
    if (r->op != AH_OP_CHAT) {
        ah_request_fail(r, 400, "invalid_request_error", "model_not_supported", "model",
                        "model '%s' is served by Anthropic, which has no embeddings API", r->model);
        return AH_E_INVAL;
    }
    json_t *n = json_object_get(r->body, "n");
    if (json_is_integer(n) && json_integer_value(n) > 1) {
        ah_request_fail(r, 400, "invalid_request_error", NULL, "n",
                        "'n' greater than 1 is not supported by model '%s' (Anthropic)", r->model);
        return AH_E_INVAL;
    }
    json_t *body;
    if (r->api == AH_API_ANTHROPIC && !r->body_edited) {
        body = json_copy(r->raw);
        json_object_set_new(body, "model", json_string(r->upstream_model));
    } else {
        body = translate(r);
    }
    if (d->prompt_cache)
        ah_prompt_cache_mark(body, r->upstream_model);
    out->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!out->body)
        return ah_request_fail(r, 400, NULL, NULL, NULL, "request cannot be serialized"),
               AH_E_INVAL;
    out->body_len = strlen(out->body);
    size_t un = strlen(d->api_base) + 16;
    out->url = ah_malloc(un);
    /* ANTHROPIC_BASE_URL is the host root (the SDK appends /v1/messages);
     * a base that already ends in /v1 is accepted too. */
    size_t bl = strlen(d->api_base);
    if (bl >= 3 && strcmp(d->api_base + bl - 3, "/v1") == 0)
        snprintf(out->url, un, "%s/messages", d->api_base);
    else
        snprintf(out->url, un, "%s/v1/messages", d->api_base);
    out->headers = ah_provider_header(NULL, "Content-Type", "application/json");
    out->headers = ah_provider_header(out->headers, "Accept",
                                      r->stream ? "text/event-stream" : "application/json");
    /* An Anthropic client's version and beta features go along with its body. */
    out->headers =
        ah_provider_header(out->headers, "anthropic-version",
                           r->anthropic_version && r->api == AH_API_ANTHROPIC ? r->anthropic_version
                                                                              : ANTHROPIC_VERSION);
    if (r->anthropic_beta && r->api == AH_API_ANTHROPIC)
        out->headers = ah_provider_header(out->headers, "anthropic-beta", r->anthropic_beta);
    out->headers = ah_provider_header(out->headers, "Expect", "");
    if (d->api_key)
        out->headers = ah_provider_header(out->headers, "x-api-key", d->api_key);
    return AH_E_OK;
}

static void read_usage(ah_request_t *r, json_t *u, int final)
{
    if (!json_is_object(u))
        return;
    json_t *in = json_object_get(u, "input_tokens");
    json_t *cr = json_object_get(u, "cache_read_input_tokens");
    json_t *cw = json_object_get(u, "cache_creation_input_tokens");
    json_t *out = json_object_get(u, "output_tokens");
    if (json_is_integer(in) || json_is_integer(cr) || json_is_integer(cw)) {
        int64_t cached = json_is_integer(cr) ? json_integer_value(cr) : r->usage.cache_read_tokens;
        int64_t written =
            json_is_integer(cw) ? json_integer_value(cw) : r->usage.cache_write_tokens;
        if (json_is_integer(in))
            r->usage.input_tokens = json_integer_value(in) + cached + written;
        if (json_is_integer(cr))
            r->usage.cache_read_tokens = cached;
        if (json_is_integer(cw))
            r->usage.cache_write_tokens = written;
    }
    if (json_is_integer(out))
        r->usage.output_tokens = json_integer_value(out);
    r->usage_known = 1;
    (void) final;
}

static const char *finish_of(const char *stop)
{
    if (!stop)
        return NULL;
    if (strcmp(stop, "max_tokens") == 0)
        return "length";
    if (strcmp(stop, "tool_use") == 0)
        return "tool_calls";
    if (strcmp(stop, "refusal") == 0)
        return "content_filter";
    return "stop";
}

static json_t *canon_usage(const ah_usage_t *u)
{
    return json_pack("{s:I,s:I,s:I,s:{s:I},s:{s:I}}", "prompt_tokens", (json_int_t)u->input_tokens,
                     "completion_tokens", (json_int_t)u->output_tokens, "total_tokens",
                     (json_int_t)(u->input_tokens + u->output_tokens), "prompt_tokens_details",
                     "cached_tokens", (json_int_t)u->cache_read_tokens, "completion_tokens_details",
                     "reasoning_tokens", (json_int_t)u->reasoning_tokens);
}

static ah_err_t parse_response(ah_request_t *r, const char *body, size_t len, json_t **canon)
{
    if (!canon) {
        static const char *const keys[] = {"usage", "model"};
        ah_json_span_t v[2];
        if (ah_json_skim(body, len, keys, 2, v))
            return AH_E_PARSE;
        json_t *usage = ah_provider_span_json(v[0]);
        read_usage(r, usage, 1);
        json_decref(usage);
        const char *m = ah_provider_span_string(r, v[1]);
        if (m)
            r->served_model = m;
        return AH_E_OK;
    }
    json_t *answer = json_loadb(body, len, 0, NULL);
    if (!json_is_object(answer)) {
        json_decref(answer);
        return AH_E_PARSE;
    }
    read_usage(r, json_object_get(answer, "usage"), 1);
    const char *model = json_string_value(json_object_get(answer, "model"));
    if (model)
        r->served_model = ah_arena_strdup(&r->arena, model);
    ah_buf_t text;
    ah_buf_init(&text, AH_MAX_UPSTREAM_BODY_BYTES);
    json_t *calls = json_array();
    size_t i;
    json_t *blk;
    json_array_foreach(json_object_get(answer, "content"), i, blk)
    {
        const char *t = json_string_value(json_object_get(blk, "type"));
        if (t && strcmp(t, "text") == 0) {
            const char *s = json_string_value(json_object_get(blk, "text"));
            if (s)
                ah_buf_appends(&text, s);
        } else if (t && strcmp(t, "tool_use") == 0) {
            char *args = json_dumps(json_object_get(blk, "input"), JSON_COMPACT);
            json_array_append_new(calls, json_pack("{s:O?,s:s,s:{s:O?,s:s}}", "id",
                                                   json_object_get(blk, "id"), "type", "function",
                                                   "function", "name", json_object_get(blk, "name"),
                                                   "arguments", args ? args : "{}"));
            free(args);
        }
    }
    json_t *msg =
        json_pack("{s:s,s:s?}", "role", "assistant", "content",
                  text.len || !json_array_size(calls) ? (text.data ? text.data : "") : NULL);
    if (!json_object_get(msg, "content"))
        json_object_set_new(msg, "content", json_null());
    if (json_array_size(calls))
        json_object_set(msg, "tool_calls", calls);
    json_decref(calls);
    ah_buf_free(&text);
    const char *fin = finish_of(json_string_value(json_object_get(answer, "stop_reason")));
    *canon = json_pack("{s:O?,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s}],s:o}", "id",
                       json_object_get(answer, "id"), "object", "chat.completion", "created",
                       (json_int_t)(r->wall_ms / 1000), "model", model ? model : r->upstream_model,
                       "choices", "index", 0, "message", msg, "logprobs", "finish_reason",
                       fin ? fin : "stop", "usage", canon_usage(&r->usage));
    json_decref(answer);
    return AH_E_OK;
}

static json_t *chunk(ah_provider_stream_t *ps, const ah_request_t *r, json_t *delta,
                     const char *finish)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s?}]}", "id", ps->id, "object",
                     "chat.completion.chunk", "created", (json_int_t)(r->wall_ms / 1000), "model",
                     ps->model, "choices", "index", 0, "delta", delta, "logprobs", "finish_reason",
                     finish);
}

static ah_err_t stream_event_json(ah_provider_stream_t *ps, ah_request_t *r, json_t *data,
                                  json_t *chunks, int *is_token);

static ah_err_t stream_event(ah_provider_stream_t *ps, ah_request_t *r, const char *event,
                             const char *text, size_t len, json_t *chunks, int *is_token,
                             int *forward)
{
    *is_token = 0;
    *forward = 1;
    if (!chunks && event) {
        /* Forwarded raw: only message_start, message_delta and error carry
         * what the ledger needs; the many deltas are not parsed at all. */
        if (strcmp(event, "content_block_delta") == 0)
            return *is_token = 1, AH_E_OK;
        if (strcmp(event, "ping") == 0 || strcmp(event, "content_block_stop") == 0)
            return AH_E_OK;
        if (strcmp(event, "content_block_start") == 0) {
            *is_token = memmem(text, len, "\"tool_use\"", 10) != NULL;
            return AH_E_OK;
        }
        if (strcmp(event, "message_stop") == 0)
            return ps->done = 1, AH_E_OK;
    }
    json_t *data = json_loadb(text, len, 0, NULL);
    if (!json_is_object(data)) {
        json_decref(data);
        return AH_E_OK;
    }
    ah_err_t rc = stream_event_json(ps, r, data, chunks, is_token);
    json_decref(data);
    return rc;
}

static ah_err_t stream_event_json(ah_provider_stream_t *ps, ah_request_t *r, json_t *data,
                                  json_t *chunks, int *is_token)
{
    const char *type = json_string_value(json_object_get(data, "type"));
    if (!type)
        return AH_E_OK;
    if (strcmp(type, "message_start") == 0) {
        json_t *msg = json_object_get(data, "message");
        const char *id = json_string_value(json_object_get(msg, "id"));
        const char *model = json_string_value(json_object_get(msg, "model"));
        snprintf(ps->id, sizeof ps->id, "%s", id ? id : r->id);
        snprintf(ps->model, sizeof ps->model, "%s", model ? model : r->upstream_model);
        if (model)
            r->served_model = ah_arena_strdup(&r->arena, model);
        read_usage(r, json_object_get(msg, "usage"), 0);
        if (chunks)
            json_array_append_new(
                chunks,
                chunk(ps, r, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL));
    } else if (strcmp(type, "content_block_start") == 0) {
        json_t *cb = json_object_get(data, "content_block");
        const char *bt = json_string_value(json_object_get(cb, "type"));
        ps->block_is_tool = bt && strcmp(bt, "tool_use") == 0;
        if (ps->block_is_tool) {
            *is_token = 1;
            ps->tool_base = ps->ntools++;
            if (chunks)
                json_array_append_new(
                    chunks, chunk(ps, r,
                                  json_pack("{s:[{s:i,s:O?,s:s,s:{s:O?,s:s}}]}", "tool_calls",
                                            "index", ps->tool_base, "id", json_object_get(cb, "id"),
                                            "type", "function", "function", "name",
                                            json_object_get(cb, "name"), "arguments", ""),
                                  NULL));
        }
    } else if (strcmp(type, "content_block_delta") == 0) {
        json_t *d = json_object_get(data, "delta");
        const char *dt = json_string_value(json_object_get(d, "type"));
        if (dt && strcmp(dt, "text_delta") == 0) {
            *is_token = 1;
            if (chunks)
                json_array_append_new(
                    chunks,
                    chunk(ps, r, json_pack("{s:O?}", "content", json_object_get(d, "text")), NULL));
        } else if (dt && strcmp(dt, "input_json_delta") == 0) {
            *is_token = 1;
            if (chunks)
                json_array_append_new(
                    chunks,
                    chunk(ps, r,
                          json_pack("{s:[{s:i,s:{s:O?}}]}", "tool_calls", "index", ps->tool_base,
                                    "function", "arguments", json_object_get(d, "partial_json")),
                          NULL));
        } else if (dt && strcmp(dt, "thinking_delta") == 0) {
            *is_token = 1;
        }
    } else if (strcmp(type, "message_delta") == 0) {
        read_usage(r, json_object_get(data, "usage"), 1);
        const char *fin = finish_of(
            json_string_value(json_object_get(json_object_get(data, "delta"), "stop_reason")));
        snprintf(ps->finish, sizeof ps->finish, "%s", fin ? fin : "stop");
        if (chunks)
            json_array_append_new(chunks, chunk(ps, r, json_object(), ps->finish));
    } else if (strcmp(type, "message_stop") == 0) {
        ps->done = 1;
        if (chunks)
            json_array_append_new(chunks,
                                  json_pack("{s:s,s:s,s:I,s:s,s:[],s:o}", "id", ps->id, "object",
                                            "chat.completion.chunk", "created",
                                            (json_int_t)(r->wall_ms / 1000), "model", ps->model,
                                            "choices", "usage", canon_usage(&r->usage)));
    } else if (strcmp(type, "error") == 0) {
        json_t *e = json_object_get(data, "error");
        const char *m = json_string_value(json_object_get(e, "message"));
        const char *et = json_string_value(json_object_get(e, "type"));
        int status = et && strcmp(et, "overloaded_error") == 0 ? 529 : 502;
        ah_request_fail(r, status, "server_error", NULL, NULL, "upstream stream error: %s",
                        m ? m : "unknown");
        return AH_E_UPSTREAM;
    }
    return AH_E_OK;
}

const ah_provider_ops_t ah_provider_anthropic = {
    .name = "anthropic",
    .api = AH_API_ANTHROPIC,
    .build = build,
    .parse_response = parse_response,
    .stream_event = stream_event,
};
