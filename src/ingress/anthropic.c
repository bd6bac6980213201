/* anthropic.c - the Anthropic Messages wire format, as a client speaks it.
 *
 * Parsing translates a Messages body into the canonical (OpenAI-shaped)
 * chat body: system -> a system message, content blocks -> content parts,
 * tool_use -> tool_calls, tool_result -> tool messages, tools and
 * tool_choice to OpenAI's shapes. The original body is kept in r->raw, so an
 * Anthropic provider receives exactly what the client sent.
 *
 * Rendering goes the other way for answers from OpenAI-format providers,
 * streams included: canonical chunks become message_start, content_block_*,
 * message_delta and message_stop events. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_text.h"
#include "core/limits.h"
#include "ingress/ingress.h"

static const char *error_type(int status)
{
    switch (status) {
    case 400:
        return "invalid_request_error";
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 529:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

static ah_err_t bad(ah_request_t *r, const char *fmt, const char *what)
{
    ah_request_fail(r, 400, NULL, NULL, NULL, fmt, what);
    return AH_E_INVAL;
}

/* Text of a content value that is a string or an array of text blocks. */
static json_t *text_of(json_t *content)
{
    char *t = ah_json_join_text(content, "\n");
    json_t *s = json_string(t);
    ah_free(t);
    return s ? s : json_string("");
}

static json_t *image_part(json_t *blk)
{
    json_t *src = json_object_get(blk, "source");
    const char *type = json_string_value(json_object_get(src, "type"));
    char *url = NULL;
    if (type && strcmp(type, "base64") == 0) {
        const char *mt = json_string_value(json_object_get(src, "media_type"));
        const char *data = json_string_value(json_object_get(src, "data"));
        if (!mt || !data)
            return NULL;
        size_t n = strlen(mt) + strlen(data) + 16;
        url = malloc(n);
        if (!url)
            return NULL;
        snprintf(url, n, "data:%s;base64,%s", mt, data);
    } else if (type && strcmp(type, "url") == 0) {
        const char *u = json_string_value(json_object_get(src, "url"));
        url = u ? strdup(u) : NULL;
    }
    if (!url)
        return NULL;
    json_t *p = json_pack("{s:s,s:{s:s}}", "type", "image_url", "image_url", "url", url);
    free(url);
    return p;
}

/* Append the canonical messages for one Anthropic message. */
static ah_err_t convert_message(ah_request_t *r, json_t *m, size_t idx, json_t *out)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    json_t *content = json_object_get(m, "content");
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant"))) {
        ah_request_fail(r, 400, NULL, NULL, "messages",
                        "messages.%zu.role: Input should be 'user' or 'assistant'", idx);
        return AH_E_INVAL;
    }
    if (json_is_string(content)) {
        json_array_append_new(out, json_pack("{s:s,s:O}", "role", role, "content", content));
        return AH_E_OK;
    }
    if (!json_is_array(content)) {
        ah_request_fail(r, 400, NULL, NULL, "messages",
                        "messages.%zu.content: Input should be a string or a list of blocks", idx);
        return AH_E_INVAL;
    }
    json_t *parts = json_array(), *tool_calls = json_array();
    size_t i;
    json_t *blk;
    json_array_foreach(content, i, blk)
    {
        const char *t = json_string_value(json_object_get(blk, "type"));
        if (!t) {
            json_decref(parts);
            json_decref(tool_calls);
            ah_request_fail(r, 400, NULL, NULL, "messages",
                            "messages.%zu.content.%zu: a block needs a 'type'", idx, i);
            return AH_E_INVAL;
        }
        if (strcmp(t, "text") == 0) {
            json_t *text = json_object_get(blk, "text");
            if (json_is_string(text))
                json_array_append_new(parts, json_pack("{s:s,s:O}", "type", "text", "text", text));
        } else if (strcmp(t, "image") == 0) {
            json_t *p = image_part(blk);
            if (p)
                json_array_append_new(parts, p);
        } else if (strcmp(t, "tool_use") == 0) {
            json_t *input = json_object_get(blk, "input");
            char *args = input ? json_dumps(input, JSON_COMPACT) : NULL;
            json_array_append_new(tool_calls,
                                  json_pack("{s:O?,s:s,s:{s:O?,s:s}}", "id",
                                            json_object_get(blk, "id"), "type", "function",
                                            "function", "name", json_object_get(blk, "name"),
                                            "arguments", args ? args : "{}"));
            free(args);
        } else if (strcmp(t, "tool_result") == 0) {
            json_t *c = json_object_get(blk, "content");
            json_t *text = c ? text_of(c) : json_string("");
            json_array_append_new(out,
                                  json_pack("{s:s,s:O?,s:o}", "role", "tool", "tool_call_id",
                                            json_object_get(blk, "tool_use_id"), "content", text));
        }
        /* thinking, documents and other blocks have no canonical form yet:
         * they reach an Anthropic provider through r->raw unchanged. */
    }
    if (json_array_size(parts) || json_array_size(tool_calls)) {
        json_t *msg = json_pack("{s:s}", "role", role);
        /* A single text part is sent as a plain string, as most clients do. */
        if (json_array_size(parts) == 1 &&
            strcmp(json_string_value(json_object_get(json_array_get(parts, 0), "type")), "text") ==
                0)
            json_object_set(msg, "content", json_object_get(json_array_get(parts, 0), "text"));
        else if (json_array_size(parts))
            json_object_set(msg, "content", parts);
        else
            json_object_set_new(msg, "content", json_null());
        if (json_array_size(tool_calls))
            json_object_set(msg, "tool_calls", tool_calls);
        json_array_append_new(out, msg);
    }
    json_decref(parts);
    json_decref(tool_calls);
    return AH_E_OK;
}

static json_t *convert_tools(json_t *tools)
{
    json_t *out = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        if (!json_object_get(t, "name"))
            continue; /* server tools (web_search...) have no OpenAI form */
        json_t *fn = json_pack("{s:O}", "name", json_object_get(t, "name"));
        if (json_object_get(t, "description"))
            json_object_set(fn, "description", json_object_get(t, "description"));
        json_t *schema = json_object_get(t, "input_schema");
        json_object_set_new(fn, "parameters",
                            schema ? json_incref(schema) : json_pack("{s:s}", "type", "object"));
        json_array_append_new(out, json_pack("{s:s,s:o}", "type", "function", "function", fn));
    }
    return out;
}

static json_t *convert_tool_choice(json_t *tc)
{
    const char *t = json_string_value(json_object_get(tc, "type"));
    if (!t)
        return NULL;
    if (strcmp(t, "any") == 0)
        return json_string("required");
    if (strcmp(t, "none") == 0)
        return json_string("none");
    if (strcmp(t, "tool") == 0)
        return json_pack("{s:s,s:{s:O?}}", "type", "function", "function", "name",
                         json_object_get(tc, "name"));
    return json_string("auto");
}

static ah_err_t parse_chat(ah_request_t *r, json_t *body)
{
    if (!json_is_object(body))
        return bad(r, "%s", "The request body must be a JSON object");
    json_t *model = json_object_get(body, "model");
    if (!json_is_string(model) || json_string_length(model) == 0)
        return bad(r, "%s", "model: Field required");
    if (json_string_length(model) > AH_MAX_MODEL_NAME)
        return bad(r, "%s", "model: String is too long");
    json_t *mt = json_object_get(body, "max_tokens");
    if (!mt)
        return bad(r, "%s", "max_tokens: Field required");
    if (!json_is_integer(mt) || json_integer_value(mt) < 1)
        return bad(r, "%s", "max_tokens: Input should be a positive integer");
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs))
        return bad(r, "%s", "messages: Field required");
    json_t *system = json_object_get(body, "system");
    if (system && !json_is_string(system) && !json_is_array(system))
        return bad(r, "%s", "system: Input should be a string or a list of text blocks");
    json_t *stream = json_object_get(body, "stream");
    if (stream && !json_is_boolean(stream))
        return bad(r, "%s", "stream: Input should be a valid boolean");
    json_t *temp = json_object_get(body, "temperature");
    if (temp && !json_is_number(temp))
        return bad(r, "%s", "temperature: Input should be a valid number");
    json_t *stops = json_object_get(body, "stop_sequences");
    if (stops && !json_is_array(stops))
        return bad(r, "%s", "stop_sequences: Input should be a valid list");
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_array(tools))
        return bad(r, "%s", "tools: Input should be a valid list");

    json_t *canon = json_pack("{s:O,s:O}", "model", model, "max_tokens", mt);
    json_t *cmsgs = json_array();
    if (system) {
        json_t *text = text_of(system);
        json_array_append_new(cmsgs, json_pack("{s:s,s:o}", "role", "system", "content", text));
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        if (!json_is_object(m) || convert_message(r, m, i, cmsgs)) {
            if (!r->fail.status)
                ah_request_fail(r, 400, NULL, NULL, "messages",
                                "messages.%zu: Input should be an object", i);
            json_decref(cmsgs);
            json_decref(canon);
            return AH_E_INVAL;
        }
    }
    json_object_set_new(canon, "messages", cmsgs);
    if (temp)
        json_object_set(canon, "temperature", temp);
    if (json_object_get(body, "top_p"))
        json_object_set(canon, "top_p", json_object_get(body, "top_p"));
    if (stops)
        json_object_set(canon, "stop", stops);
    if (json_is_true(stream)) {
        json_object_set_new(canon, "stream", json_true());
        r->stream = 1;
    }
    if (tools) {
        json_t *ct = convert_tools(tools);
        if (json_array_size(ct))
            json_object_set(canon, "tools", ct);
        json_decref(ct);
        json_t *tc = convert_tool_choice(json_object_get(body, "tool_choice"));
        if (tc)
            json_object_set_new(canon, "tool_choice", tc);
    }
    json_t *meta = json_object_get(body, "metadata");
    const char *user = json_string_value(json_object_get(meta, "user_id"));
    if (user) {
        json_object_set_new(canon, "user", json_string(user));
        r->user = ah_arena_strdup(&r->arena, user);
    }
    /* the gateway's own controls travel with the canonical body (stages
     * 4 and 5 read and remove them) */
    static const char *const gateway_fields[] = {"cache", "shape", "context", "prompt_id",
                                                 "prompt_variables"};
    for (size_t g = 0; g < sizeof gateway_fields / sizeof *gateway_fields; g++) {
        json_t *v = json_object_get(body, gateway_fields[g]);
        if (v)
            json_object_set(canon, gateway_fields[g], v);
    }
    r->client_wants_usage = 1; /* Anthropic streams always carry usage */
    r->model = ah_arena_strdup(&r->arena, json_string_value(model));
    r->raw = json_incref(body);
    r->body = canon;
    return AH_E_OK;
}

static const char *stop_reason_of(const char *finish)
{
    if (!finish)
        return "end_turn";
    if (strcmp(finish, "length") == 0)
        return "max_tokens";
    if (strcmp(finish, "tool_calls") == 0 || strcmp(finish, "function_call") == 0)
        return "tool_use";
    return "end_turn";
}

static json_t *usage_of(const ah_usage_t *u)
{
    return json_pack("{s:I,s:I,s:I,s:I}", "input_tokens",
                     (json_int_t)(u->input_tokens - u->cache_read_tokens - u->cache_write_tokens),
                     "output_tokens", (json_int_t)u->output_tokens, "cache_read_input_tokens",
                     (json_int_t)u->cache_read_tokens, "cache_creation_input_tokens",
                     (json_int_t)u->cache_write_tokens);
}

static json_t *tool_input(json_t *fn)
{
    const char *args = json_string_value(json_object_get(fn, "arguments"));
    json_t *in = args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(in)) {
        json_decref(in);
        in = json_object();
    }
    return in;
}

static json_t *render_response(const ah_request_t *r, json_t *canon)
{
    json_t *choice = json_array_get(json_object_get(canon, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    json_t *content = json_array();
    const char *text = json_string_value(json_object_get(msg, "content"));
    if (text && *text)
        json_array_append_new(content, json_pack("{s:s,s:s}", "type", "text", "text", text));
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(msg, "tool_calls"), i, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        json_array_append_new(content,
                              json_pack("{s:s,s:O?,s:O?,s:o}", "type", "tool_use", "id",
                                        json_object_get(tc, "id"), "name",
                                        json_object_get(fn, "name"), "input", tool_input(fn)));
    }
    char id[64];
    snprintf(id, sizeof id, "msg_%s", r->id + 4);
    const char *model = json_string_value(json_object_get(canon, "model"));
    return json_pack("{s:s,s:s,s:s,s:s,s:o,s:s,s:n,s:o}", "id", id, "type", "message", "role",
                     "assistant", "model", model ? model : r->model, "content", content,
                     "stop_reason",
                     stop_reason_of(json_string_value(json_object_get(choice, "finish_reason"))),
                     "stop_sequence", "usage", usage_of(&r->usage));
}

static void render_error(const ah_fail_t *f, ah_buf_t *out)
{
    json_t *e = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
                          error_type(f->status), "message", f->message);
    char *s = json_dumps(e, JSON_COMPACT);
    ah_buf_appends(out, s);
    free(s);
    json_decref(e);
}

static void start_message(ah_stream_render_t *st, const ah_request_t *r, json_t *chunk,
                          ah_buf_t *out)
{
    char id[64];
    snprintf(id, sizeof id, "msg_%s", r->id + 4);
    const char *model = json_string_value(json_object_get(chunk, "model"));
    json_t *ev = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:[],s:n,s:n,s:{s:i,s:i}}}", "type",
                           "message_start", "message", "id", id, "type", "message", "role",
                           "assistant", "model", model ? model : r->model, "content", "stop_reason",
                           "stop_sequence", "usage", "input_tokens", 0, "output_tokens", 0);
    ah_sse_append(out, "message_start", ev);
    json_decref(ev);
    st->started = 1;
}

static void close_block(ah_stream_render_t *st, ah_buf_t *out)
{
    if (!st->block_open)
        return;
    json_t *ev = json_pack("{s:s,s:i}", "type", "content_block_stop", "index", st->block_index);
    ah_sse_append(out, "content_block_stop", ev);
    json_decref(ev);
    st->block_open = 0;
    st->block_index++;
}

static void open_block(ah_stream_render_t *st, json_t *block, ah_buf_t *out)
{
    json_t *ev = json_pack("{s:s,s:i,s:o}", "type", "content_block_start", "index", st->block_index,
                           "content_block", block);
    ah_sse_append(out, "content_block_start", ev);
    json_decref(ev);
    st->block_open = 1;
}

static void delta(ah_stream_render_t *st, json_t *d, ah_buf_t *out)
{
    json_t *ev = json_pack("{s:s,s:i,s:o}", "type", "content_block_delta", "index", st->block_index,
                           "delta", d);
    ah_sse_append(out, "content_block_delta", ev);
    json_decref(ev);
}

static void stream_chunk(ah_stream_render_t *st, const ah_request_t *r, json_t *chunk,
                         ah_buf_t *out)
{
    if (!st->started)
        start_message(st, r, chunk, out);
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *d = json_object_get(choice, "delta");
    const char *text = json_string_value(json_object_get(d, "content"));
    if (text && *text) {
        if (st->block_open && st->block_is_tool)
            close_block(st, out);
        if (!st->block_open) {
            open_block(st, json_pack("{s:s,s:s}", "type", "text", "text", ""), out);
            st->block_is_tool = 0;
        }
        delta(st, json_pack("{s:s,s:s}", "type", "text_delta", "text", text), out);
    }
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(d, "tool_calls"), i, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        int index = (int)json_integer_value(json_object_get(tc, "index"));
        if (json_object_get(tc, "id") || !st->block_open || !st->block_is_tool ||
            index != st->tool_index) {
            close_block(st, out);
            open_block(st,
                       json_pack("{s:s,s:O?,s:O?,s:{}}", "type", "tool_use", "id",
                                 json_object_get(tc, "id"), "name", json_object_get(fn, "name"),
                                 "input"),
                       out);
            st->block_is_tool = 1;
            st->tool_index = index;
        }
        const char *args = json_string_value(json_object_get(fn, "arguments"));
        if (args && *args)
            delta(st, json_pack("{s:s,s:s}", "type", "input_json_delta", "partial_json", args),
                  out);
    }
    const char *finish = json_string_value(json_object_get(choice, "finish_reason"));
    if (finish)
        snprintf(st->stop_reason, sizeof st->stop_reason, "%s", stop_reason_of(finish));
}

static void stream_end(ah_stream_render_t *st, const ah_request_t *r, ah_buf_t *out)
{
    if (!st->started)
        start_message(st, r, NULL, out);
    close_block(st, out);
    json_t *ev = json_pack("{s:s,s:{s:s,s:n},s:o}", "type", "message_delta", "delta", "stop_reason",
                           st->stop_reason[0] ? st->stop_reason : "end_turn", "stop_sequence",
                           "usage", usage_of(&r->usage));
    ah_sse_append(out, "message_delta", ev);
    json_decref(ev);
    ev = json_pack("{s:s}", "type", "message_stop");
    ah_sse_append(out, "message_stop", ev);
    json_decref(ev);
}

static void stream_error(ah_stream_render_t *st, const ah_request_t *r, const ah_fail_t *f,
                         ah_buf_t *out)
{
    json_t *e = json_pack("{s:s,s:{s:s,s:s}}", "type", "error", "error", "type",
                          error_type(f->status), "message", f->message);
    ah_sse_append(out, "error", e);
    json_decref(e);
}

static json_t *render_models(json_t *ids)
{
    json_t *data = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_array_append_new(data,
                              json_pack("{s:s,s:O,s:O,s:s}", "type", "model", "id", id,
                                        "display_name", id, "created_at", "2024-01-01T00:00:00Z"));
    }
    json_t *first = json_array_get(ids, 0), *last = json_array_get(ids, json_array_size(ids) - 1);
    return json_pack("{s:o,s:b,s:O?,s:O?}", "data", data, "has_more", 0, "first_id", first,
                     "last_id", last);
}

const ah_ingress_ops_t ah_ingress_anthropic = {
    .api = AH_API_ANTHROPIC,
    .name = "anthropic",
    .parse_chat = parse_chat,
    .render_response = render_response,
    .render_error = render_error,
    .stream_chunk = stream_chunk,
    .stream_end = stream_end,
    .stream_error = stream_error,
    .render_models = render_models,
};
