/* fake_openai.c - POST /v1/chat/completions, and the Azure deployment form of it.
 *
 * Validates the request as OpenAI does for the fields the gateway relies on, asks
 * fake_sim for the answer, and prints it in OpenAI's shapes: one chat.completion object,
 * or chat.completion.chunk events ending in `data: [DONE]`. */
#include "fake.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fake_sim.h"

/* Error messages are cut to this many bytes. */
#define FAKE_MAX_ERROR_MESSAGE 512

void fake_openai_error(fake_reply_t *r, int status, const char *type, const char *param,
                       const char *code, const char *fmt, ...)
{
    char msg[FAKE_MAX_ERROR_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fake_utf8_scrub(msg);
    fake_reply_json(r, status);
    fake_out_cstr(&r->body, "{\"error\":{\"message\":");
    fake_out_jcstr(&r->body, msg);
    fake_out_cstr(&r->body, ",\"type\":");
    fake_out_jcstr(&r->body, type);
    fake_out_cstr(&r->body, ",\"param\":");
    fake_out_jcstr(&r->body, param);
    fake_out_cstr(&r->body, ",\"code\":");
    fake_out_jcstr(&r->body, code);
    fake_out_cstr(&r->body, "}}");
}

/* Everything the renderers need, gathered once. */
typedef struct chat {
    const fake_ctx_t *ctx;
    const char *model;
    long n;
    int include_usage;
    long created;
    fake_prompt_t prompt;
    long cached;
    /* the answer: text, or a tool call */
    const char *text;
    size_t text_len;
    fake_finish_t finish;
    const json_t *tool;    /* the chosen function object ({name, parameters}), or NULL */
    fake_tool_call_t call; /* valid when tool */
    long completion_tokens;
} chat_t;

static const char *finish_reason(fake_finish_t f)
{
    switch (f) {
    case FAKE_FINISH_LENGTH:
        return "length";
    case FAKE_FINISH_TOOL:
        return "tool_calls";
    default:
        return "stop";
    }
}

/* The function a tool call should use, or NULL for a text answer. tool_choice "required"
 * or {"type":"function","function":{"name":...}} forces one; "auto" (or none given)
 * leaves it to a [[tool]] / [[tool:NAME]] directive; "none" forbids it. */
static const json_t *choose_tool(const json_t *body, const fake_prompt_t *p)
{
    const json_t *tools = json_object_get(body, "tools");
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return NULL;
    const json_t *choice = json_object_get(body, "tool_choice");
    const char *mode = json_string_value(choice);
    const char *want = NULL;
    size_t want_len = 0;
    if (json_is_object(choice)) {
        want = json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
        want_len = want ? strlen(want) : 0;
    } else if (mode && strcmp(mode, "none") == 0) {
        return NULL;
    } else if (!(mode && strcmp(mode, "required") == 0) && !p->dir.tool) {
        return NULL;
    }
    if (!want && p->dir.tool_name) {
        want = p->dir.tool_name;
        want_len = p->dir.tool_name_len;
    }
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name))
            continue;
        if (!want || (json_string_length(name) == want_len &&
                      memcmp(json_string_value(name), want, want_len) == 0))
            return fn;
    }
    /* A named function that is not among the tools: use the first one. */
    return json_object_get(json_array_get(tools, 0), "function");
}

static void print_usage(fake_out_t *o, const chat_t *c)
{
    long prompt = c->prompt.tokens;
    fake_out_printf(o,
                    "{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld,"
                    "\"prompt_tokens_details\":{\"cached_tokens\":%ld,\"audio_tokens\":0},"
                    "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
                    "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}",
                    prompt, c->completion_tokens, prompt + c->completion_tokens, c->cached);
}

static void print_call_id(fake_out_t *o, const chat_t *c, long choice)
{
    if (choice == 0)
        fake_out_printf(o, "\"call_%llu\"", (unsigned long long)c->ctx->seq);
    else
        fake_out_printf(o, "\"call_%llu_%ld\"", (unsigned long long)c->ctx->seq, choice);
}

static void render_whole(fake_reply_t *r, const chat_t *c)
{
    fake_out_t *o = &r->body;
    fake_out_printf(o,
                    "{\"id\":\"chatcmpl-fake-%llu\",\"object\":\"chat.completion\","
                    "\"created\":%ld,\"model\":",
                    (unsigned long long)c->ctx->seq, c->created);
    fake_out_jcstr(o, c->model);
    fake_out_cstr(o, ",\"choices\":[");
    for (long i = 0; i < c->n; i++) {
        fake_out_printf(o, "%s{\"index\":%ld,\"message\":{\"role\":\"assistant\",\"content\":",
                        i ? "," : "", i);
        if (c->tool) {
            fake_out_cstr(o, "null,\"tool_calls\":[{\"id\":");
            print_call_id(o, c, i);
            fake_out_cstr(o, ",\"type\":\"function\",\"function\":{\"name\":");
            fake_out_jcstr(o, c->call.name);
            fake_out_cstr(o, ",\"arguments\":");
            fake_out_jstr(o, c->call.args.buf.data, c->call.args.buf.len);
            fake_out_cstr(o, "}}]");
        } else {
            fake_out_jstr(o, c->text, c->text_len);
        }
        fake_out_printf(o,
                        ",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,"
                        "\"finish_reason\":\"%s\"}",
                        finish_reason(c->finish));
    }
    fake_out_cstr(o, "],\"usage\":");
    print_usage(o, c);
    fake_out_cstr(o, ",\"system_fingerprint\":\"fake\"}");
}

/* `data: {...chunk head..."choices":[` */
static void chunk_open(fake_out_t *o, const chat_t *c)
{
    fake_out_printf(o,
                    "data: {\"id\":\"chatcmpl-fake-%llu\",\"object\":\"chat.completion.chunk\","
                    "\"created\":%ld,\"model\":",
                    (unsigned long long)c->ctx->seq, c->created);
    fake_out_jcstr(o, c->model);
    fake_out_cstr(o, ",\"system_fingerprint\":\"fake\",\"choices\":[");
}

static void chunk_close(fake_out_t *o, const chat_t *c)
{
    fake_out_cstr(o, c->include_usage ? "],\"usage\":null}\n\n" : "]}\n\n");
}

/* One chunk carrying delta (a JSON object text) for choice i. */
static void chunk(fake_out_t *o, const chat_t *c, long i, const char *delta_open, const char *piece,
                  size_t piece_len, const char *delta_close)
{
    chunk_open(o, c);
    fake_out_printf(o, "{\"index\":%ld,\"delta\":%s", i, delta_open);
    if (piece)
        fake_out_jstr(o, piece, piece_len);
    fake_out_printf(o, "%s,\"logprobs\":null,\"finish_reason\":null}", delta_close);
    chunk_close(o, c);
}

static void render_stream(fake_reply_t *r, const chat_t *c)
{
    fake_out_t *o = &r->body;
    fake_reply_stream(r);
    for (long i = 0; i < c->n; i++) {
        if (c->tool) {
            chunk_open(o, c);
            fake_out_printf(o,
                            "{\"index\":%ld,\"delta\":{\"role\":\"assistant\",\"content\":null,"
                            "\"tool_calls\":[{\"index\":0,\"id\":",
                            i);
            print_call_id(o, c, i);
            fake_out_cstr(o, ",\"type\":\"function\",\"function\":{\"name\":");
            fake_out_jcstr(o, c->call.name);
            fake_out_cstr(o, ",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,"
                             "\"finish_reason\":null}");
            chunk_close(o, c);
            size_t from = 0;
            for (size_t f = 0; f < c->call.nfrags; f++) {
                size_t to = c->call.frags[f];
                chunk(o, c, i, "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":",
                      c->call.args.buf.data + from, to - from, "}}]}");
                fake_reply_content_step(r);
                from = to;
            }
        } else {
            chunk(o, c, i, "{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}", NULL, 0,
                  "");
            size_t at = 0;
            while (at < c->text_len) {
                size_t len = fake_sim_chunk(c->text + at, c->text_len - at);
                chunk(o, c, i, "{\"content\":", c->text + at, len, "}");
                fake_reply_content_step(r);
                at += len;
            }
        }
        chunk_open(o, c);
        fake_out_printf(o,
                        "{\"index\":%ld,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"%s\"}",
                        i, finish_reason(c->finish));
        chunk_close(o, c);
    }
    if (c->include_usage) {
        chunk_open(o, c);
        fake_out_cstr(o, "],\"usage\":");
        print_usage(o, c);
        fake_out_cstr(o, "}\n\n");
    }
    fake_out_cstr(o, "data: [DONE]\n\n");
    fake_reply_final_step(r);
}

/* Fields that must be arrays of objects with a string role. */
static int check_messages(fake_reply_t *r, const json_t *messages)
{
    if (!messages || json_is_null(messages)) {
        fake_openai_error(r, 400, "invalid_request_error", "messages", "missing_required_parameter",
                          "Missing required parameter: 'messages'.");
        return -1;
    }
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        fake_openai_error(r, 400, "invalid_request_error", "messages",
                          json_is_array(messages) ? "empty_array" : "invalid_type",
                          "Invalid 'messages': expected a non-empty array of messages.");
        return -1;
    }
    for (size_t i = 0; i < json_array_size(messages); i++) {
        const json_t *m = json_array_get(messages, i);
        if (!json_is_string(json_object_get(m, "role"))) {
            char param[48];
            snprintf(param, sizeof param, "messages[%zu].role", i);
            fake_openai_error(r, 400, "invalid_request_error", param, "missing_required_parameter",
                              "Missing required parameter: '%s'.", param);
            return -1;
        }
    }
    return 0;
}

/* Reads the request's options into c; -1 (with r holding the error) when one is invalid. */
static int read_options(fake_reply_t *r, chat_t *c, const json_t *b, long *max_tokens)
{
    if (fake_sim_get_long(b, "n", 1, &c->n) || c->n > FAKE_MAX_CHOICES) {
        fake_openai_error(r, 400, "invalid_request_error", "n", "invalid_value",
                          "Invalid 'n': expected an integer between 1 and %d.", FAKE_MAX_CHOICES);
        return -1;
    }
    if (fake_sim_get_long(b, "max_tokens", 1, max_tokens)) {
        fake_openai_error(r, 400, "invalid_request_error", "max_tokens", "invalid_value",
                          "Invalid 'max_tokens': expected an integer >= 1.");
        return -1;
    }
    if (fake_sim_get_long(b, "max_completion_tokens", 1, max_tokens)) {
        fake_openai_error(r, 400, "invalid_request_error", "max_completion_tokens", "invalid_value",
                          "Invalid 'max_completion_tokens': expected an integer >= 1.");
        return -1;
    }
    const json_t *stop = json_object_get(b, "stop");
    if (stop && !json_is_null(stop) && !json_is_string(stop) && !json_is_array(stop)) {
        fake_openai_error(r, 400, "invalid_request_error", "stop", "invalid_type",
                          "Invalid 'stop': expected a string or an array of strings.");
        return -1;
    }
    const json_t *so = json_object_get(b, "stream_options");
    c->include_usage = json_is_true(json_object_get(so, "include_usage"));
    return 0;
}

/* The fault replies that are plain errors (429, 500, 529 -> 503). */
static int fault_error(fake_reply_t *r, fake_fault_t f, const char *model)
{
    switch (f) {
    case FAKE_FAULT_429:
        fake_openai_error(r, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                          "Rate limit reached for %s (simulated by ahorro-fake). Please try again "
                          "in 1s.",
                          model);
        r->retry_after_s = FAKE_RETRY_AFTER_S;
        return 1;
    case FAKE_FAULT_500:
        fake_openai_error(r, 500, "server_error", NULL, NULL,
                          "The server had an error while processing your request (simulated by "
                          "ahorro-fake).");
        return 1;
    case FAKE_FAULT_529:
        fake_openai_error(r, 503, "server_error", NULL, NULL,
                          "The server is overloaded or not ready yet (simulated by ahorro-fake).");
        return 1;
    default:
        return 0;
    }
}

void fake_openai_chat(const fake_ctx_t *ctx, fake_reply_t *r)
{
    chat_t c = {.ctx = ctx, .n = 1, .created = (long)time(NULL)};
    const json_t *b = ctx->body;
    long max_tokens = -1;
    fake_out_t answer;
    fake_out_init(&answer, FAKE_MAX_ANSWER_BYTES);

    r->request_id = "x-request-id";
    snprintf(r->request_id_value, sizeof r->request_id_value, "req_fake_%llu",
             (unsigned long long)ctx->seq);
    if (!json_is_object(b)) {
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "We could not parse the JSON body of your request: %s",
                          ctx->json_error ? ctx->json_error : "expected a JSON object");
        goto out;
    }
    c.model = json_string_value(json_object_get(b, "model"));
    if (!c.model)
        c.model = ctx->deployment;
    if (!c.model) {
        fake_openai_error(r, 400, "invalid_request_error", "model", "missing_required_parameter",
                          "you must provide a model parameter");
        goto out;
    }
    ctx->meter->model = c.model;
    const json_t *messages = json_object_get(b, "messages");
    if (check_messages(r, messages) || read_options(r, &c, b, &max_tokens))
        goto out;

    fake_sim_prompt(&c.prompt, NULL, messages);
    if (fake_limits_admit(ctx, r, FAKE_API_OPENAI, c.prompt.tokens, max_tokens))
        goto out;
    fake_fault_t fault = ctx->hdr_fault ? ctx->hdr_fault : c.prompt.dir.fault;
    r->delay_ms = ctx->hdr_delay_ms ? ctx->hdr_delay_ms : c.prompt.dir.delay_ms;
    if (fault_error(r, fault, c.model))
        goto out;
    long window = fake_sim_context_window(c.model);
    if (c.prompt.tokens > window) {
        fake_openai_error(r, 400, "invalid_request_error", "messages", "context_length_exceeded",
                          "This model's maximum context length is %ld tokens. However, your "
                          "messages resulted in %ld tokens. Please reduce the length of the "
                          "messages.",
                          window, c.prompt.tokens);
        goto out;
    }
    r->fault = fault;
    c.cached = c.prompt.dir.cached < c.prompt.tokens ? c.prompt.dir.cached : c.prompt.tokens;

    c.tool = choose_tool(b, &c.prompt);
    if (c.tool) {
        fake_sim_tool_call(&c.call, json_string_value(json_object_get(c.tool, "name")),
                           json_object_get(c.tool, "parameters"));
        if (!c.call.name)
            c.call.name = "tool";
        c.finish = FAKE_FINISH_TOOL;
        c.completion_tokens = (long)c.call.nfrags * c.n;
    } else {
        const char *rf =
            json_string_value(json_object_get(json_object_get(b, "response_format"), "type"));
        const fake_answer_t *rec = fake_answers_find(c.model, c.prompt.last_user);
        if (rec) {
            /* The recording is returned as it is, in JSON mode too; its delay stands in
             * for the directive's. */
            fake_out_raw(&answer, rec->text, rec->len);
            if (!ctx->hdr_delay_ms && !c.prompt.dir.delay_ms)
                r->delay_ms = rec->delay_ms;
        } else if (rf && (strcmp(rf, "json_object") == 0 || strcmp(rf, "json_schema") == 0)) {
            fake_out_t plain;
            fake_out_init(&plain, FAKE_MAX_ANSWER_BYTES);
            fake_sim_answer(&plain, c.model, &c.prompt);
            fake_out_cstr(&answer, "{\"simulated\":true,\"answer\":");
            fake_out_jstr(&answer, plain.buf.data ? plain.buf.data : "", plain.buf.len);
            fake_out_cstr(&answer, "}");
            if (plain.err)
                answer.err = plain.err;
            fake_out_free(&plain);
        } else {
            fake_sim_answer(&answer, c.model, &c.prompt);
        }
        if (answer.err) {
            fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                              "ahorro-fake: the requested answer exceeds %u bytes.",
                              FAKE_MAX_ANSWER_BYTES);
            goto out;
        }
        const char *hit;
        c.text = answer.buf.data ? answer.buf.data : "";
        c.text_len = answer.buf.len;
        c.finish = fake_sim_cut(c.text, &c.text_len, max_tokens, json_object_get(b, "stop"), &hit);
        c.completion_tokens = fake_sim_words(c.text, c.text_len) * c.n;
    }

    if (json_is_true(json_object_get(b, "stream"))) {
        render_stream(r, &c);
    } else {
        r->delay_ms += fake_opts.ttft_ms;
        render_whole(r, &c);
    }
    if (r->body.err)
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: the response would exceed %u bytes.", FAKE_MAX_REPLY_BYTES);
out:
    if (c.tool)
        fake_sim_tool_free(&c.call);
    fake_out_free(&answer);
}
