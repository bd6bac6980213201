/* openai.c - the OpenAI chat completions wire format, as a client speaks it.
 *
 * The canonical form is OpenAI's own, so parsing is validation, and
 * rendering a canonical answer is the identity. Validation is deliberately
 * about types, not values a provider may accept tomorrow: a wrong type gets
 * a 400 naming the parameter, exactly as OpenAI answers. */
#include <string.h>

#include "core/limits.h"
#include "ingress/ingress.h"

const char *ah_ingress_openai_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "invalid_request_error";
    case 429:
        return "rate_limit_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static int bad(ah_request_t *r, const char *param, const char *msg)
{
    ah_request_fail(r, 400, "invalid_request_error", NULL, param, "%s", msg);
    return 1;
}

/* Type checks of optional fields; returns nonzero after recording a failure. */
static int check_types(ah_request_t *r, json_t *body)
{
    static const struct {
        const char *name;
        int kind; /* 'n' number, 'i' integer, 'b' bool, 's' string, 'o' object, 'a' array */
    } fields[] = {
        {"temperature", 'n'},
        {"top_p", 'n'},
        {"n", 'i'},
        {"max_tokens", 'i'},
        {"max_completion_tokens", 'i'},
        {"presence_penalty", 'n'},
        {"frequency_penalty", 'n'},
        {"stream", 'b'},
        {"user", 's'},
        {"stream_options", 'o'},
        {"tools", 'a'},
        {"response_format", 'o'},
        {"logit_bias", 'o'},
        {"seed", 'i'},
        {"metadata", 'o'},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        json_t *v = json_object_get(body, fields[i].name);
        if (!v || json_is_null(v))
            continue;
        int ok = 1;
        switch (fields[i].kind) {
        case 'n':
            ok = json_is_number(v);
            break;
        case 'i':
            ok = json_is_integer(v);
            break;
        case 'b':
            ok = json_is_boolean(v);
            break;
        case 's':
            ok = json_is_string(v);
            break;
        case 'o':
            ok = json_is_object(v);
            break;
        case 'a':
            ok = json_is_array(v);
            break;
        }
        if (!ok) {
            ah_request_fail(r, 400, "invalid_request_error", NULL, fields[i].name,
                            "Invalid type for '%s'", fields[i].name);
            return 1;
        }
    }
    json_t *n = json_object_get(body, "n");
    if (n && json_is_integer(n) && (json_integer_value(n) < 1 || json_integer_value(n) > 128))
        return bad(r, "n", "'n' must be between 1 and 128");
    json_t *mt = json_object_get(body, "max_tokens");
    if (mt && json_is_integer(mt) && json_integer_value(mt) < 1)
        return bad(r, "max_tokens", "'max_tokens' must be at least 1");
    json_t *stop = json_object_get(body, "stop");
    if (stop && !json_is_null(stop) && !json_is_string(stop) && !json_is_array(stop))
        return bad(r, "stop", "'stop' must be a string or an array of strings");
    return 0;
}

static ah_err_t parse_chat(ah_request_t *r, json_t *body)
{
    if (!json_is_object(body)) {
        bad(r, NULL, "The request body must be a JSON object");
        return AH_E_INVAL;
    }
    json_t *model = json_object_get(body, "model");
    if (!json_is_string(model) || json_string_length(model) == 0) {
        bad(r, "model", "you must provide a model parameter");
        return AH_E_INVAL;
    }
    if (json_string_length(model) > AH_MAX_MODEL_NAME) {
        bad(r, "model", "'model' is too long");
        return AH_E_INVAL;
    }
    if (r->op == AH_OP_CHAT) {
        json_t *msgs = json_object_get(body, "messages");
        if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
            bad(r, "messages", "'messages' must be a non-empty array");
            return AH_E_INVAL;
        }
        size_t i;
        json_t *m;
        json_array_foreach(msgs, i, m)
        {
            json_t *role = json_object_get(m, "role");
            json_t *content = json_object_get(m, "content");
            if (!json_is_object(m) || !json_is_string(role)) {
                bad(r, "messages", "each message must be an object with a string 'role'");
                return AH_E_INVAL;
            }
            const char *rs = json_string_value(role);
            if (strcmp(rs, "system") && strcmp(rs, "developer") && strcmp(rs, "user") &&
                strcmp(rs, "assistant") && strcmp(rs, "tool") && strcmp(rs, "function")) {
                ah_request_fail(r, 400, "invalid_request_error", NULL, "messages",
                                "Invalid role '%.40s' in messages[%zu]", rs, i);
                return AH_E_INVAL;
            }
            if (content && !json_is_null(content) && !json_is_string(content) &&
                !json_is_array(content)) {
                ah_request_fail(r, 400, "invalid_request_error", NULL, "messages",
                                "messages[%zu].content must be a string or an array", i);
                return AH_E_INVAL;
            }
        }
        if (check_types(r, body))
            return AH_E_INVAL;
        r->stream = json_is_true(json_object_get(body, "stream"));
        r->client_wants_usage =
            json_is_true(json_object_get(json_object_get(body, "stream_options"), "include_usage"));
    } else {
        json_t *input = json_object_get(body, "input");
        if (!input || !(json_is_string(input) || json_is_array(input))) {
            bad(r, "input", "'input' must be a string or an array");
            return AH_E_INVAL;
        }
    }
    json_t *user = json_object_get(body, "user");
    if (json_is_string(user))
        r->user = ah_arena_strdup(&r->arena, json_string_value(user));
    r->model = ah_arena_strdup(&r->arena, json_string_value(model));
    r->raw = json_incref(body);
    r->body = json_incref(body);
    return AH_E_OK;
}

static json_t *render_response(const ah_request_t *r, json_t *canon)
{
    return json_incref(canon);
}

static void render_error(const ah_fail_t *f, ah_buf_t *out)
{
    json_t *e = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", f->message, "type",
                          f->type ? f->type : ah_ingress_openai_error_type(f->status), "param",
                          f->param ? json_string(f->param) : json_null(), "code",
                          f->code ? json_string(f->code) : json_null());
    char *s = json_dumps(e, JSON_COMPACT);
    ah_buf_appends(out, s);
    free(s);
    json_decref(e);
}

static void stream_chunk(ah_stream_render_t *st, const ah_request_t *r, json_t *chunk,
                         ah_buf_t *out)
{
    /* A usage-only chunk goes out only when the client asked for it. */
    json_t *choices = json_object_get(chunk, "choices");
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_array(choices) && json_array_size(choices) == 0 && usage && !json_is_null(usage) &&
        !r->client_wants_usage)
        return;
    st->started = 1;
    ah_sse_append(out, NULL, chunk);
}

static void stream_end(ah_stream_render_t *st, const ah_request_t *r, ah_buf_t *out)
{
    ah_buf_appends(out, "data: [DONE]\n\n");
}

static void stream_error(ah_stream_render_t *st, const ah_request_t *r, const ah_fail_t *f,
                         ah_buf_t *out)
{
    /* The official SDKs raise an APIError for a data event with "error". */
    ah_buf_appends(out, "data: ");
    render_error(f, out);
    ah_buf_appends(out, "\n\n");
}

static json_t *render_models(json_t *ids)
{
    json_t *data = json_array();
    size_t i;
    json_t *id;
    json_array_foreach(ids, i, id)
    {
        json_array_append_new(data, json_pack("{s:O,s:s,s:i,s:s}", "id", id, "object", "model",
                                              "created", 1700000000, "owned_by", "ahorro"));
    }
    return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

const ah_ingress_ops_t ah_ingress_openai = {
    .api = AH_API_OPENAI,
    .name = "openai",
    .parse_chat = parse_chat,
    .render_response = render_response,
    .render_error = render_error,
    .stream_chunk = stream_chunk,
    .stream_end = stream_end,
    .stream_error = stream_error,
    .render_models = render_models,
};
