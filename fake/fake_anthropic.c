/* fake_anthropic.c - POST /v1/messages, the Anthropic Messages API.
 *
 * Same simulated model as the OpenAI handler, Anthropic's shapes: a message object, or
 * the message_start ... message_stop event stream. One difference matters to the
 * gateway's accounting: Anthropic's input_tokens excludes the tokens read from the prompt
 * cache, which are reported apart in cache_read_input_tokens. */
#include "fake.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fake_sim.h"

#define FAKE_MAX_ERROR_MESSAGE 512

void fake_anthropic_error(fake_reply_t *r, int status, const char *type, const char *fmt, ...)
{
    char msg[FAKE_MAX_ERROR_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fake_utf8_scrub(msg);
    fake_reply_json(r, status);
    fake_out_cstr(&r->body, "{\"type\":\"error\",\"error\":{\"type\":");
    fake_out_jcstr(&r->body, type);
    fake_out_cstr(&r->body, ",\"message\":");
    fake_out_jcstr(&r->body, msg);
    fake_out_cstr(&r->body, "}}");
}

typedef struct msg {
    const fake_ctx_t *ctx;
    const char *model;
    fake_prompt_t prompt;
    long cached;      /* cache_read_input_tokens */
    long cache_write; /* cache_creation_input_tokens */
    const char *text;
    size_t text_len;
    fake_finish_t finish;
    const char *stop_hit;
    const json_t *tool; /* the chosen tool ({name, input_schema}), or NULL */
    fake_tool_call_t call;
    long output_tokens;
} msg_t;

static const char *stop_reason(fake_finish_t f)
{
    switch (f) {
    case FAKE_FINISH_LENGTH:
        return "max_tokens";
    case FAKE_FINISH_STOP_SEQUENCE:
        return "stop_sequence";
    case FAKE_FINISH_TOOL:
        return "tool_use";
    default:
        return "end_turn";
    }
}

/* tool_choice {"type":"any"} or {"type":"tool","name":...} forces a tool; "auto" (or
 * none given) leaves it to [[tool]] / [[tool:NAME]]; "none" forbids it. */
static const json_t *choose_tool(const json_t *body, const fake_prompt_t *p)
{
    const json_t *tools = json_object_get(body, "tools");
    if (!json_is_array(tools) || json_array_size(tools) == 0)
        return NULL;
    const json_t *choice = json_object_get(body, "tool_choice");
    const char *type = json_string_value(json_object_get(choice, "type"));
    const char *want = NULL;
    size_t want_len = 0;
    if (type && strcmp(type, "none") == 0)
        return NULL;
    if (type && strcmp(type, "tool") == 0) {
        want = json_string_value(json_object_get(choice, "name"));
        want_len = want ? strlen(want) : 0;
    } else if (!(type && strcmp(type, "any") == 0) && !p->dir.tool) {
        return NULL;
    }
    if (!want && p->dir.tool_name) {
        want = p->dir.tool_name;
        want_len = p->dir.tool_name_len;
    }
    for (size_t i = 0; i < json_array_size(tools); i++) {
        const json_t *t = json_array_get(tools, i);
        const json_t *name = json_object_get(t, "name");
        if (!json_is_string(name))
            continue;
        if (!want || (json_string_length(name) == want_len &&
                      memcmp(json_string_value(name), want, want_len) == 0))
            return t;
    }
    return json_array_get(tools, 0);
}

static void print_usage(fake_out_t *o, const msg_t *m, long output_tokens)
{
    fake_out_printf(o,
                    "{\"input_tokens\":%ld,\"cache_creation_input_tokens\":%ld,"
                    "\"cache_read_input_tokens\":%ld,\"output_tokens\":%ld}",
                    m->prompt.tokens - m->cached - m->cache_write, m->cache_write, m->cached,
                    output_tokens);
}

static void print_tool_id(fake_out_t *o, const msg_t *m)
{
    fake_out_printf(o, "\"toolu_fake_%llu\"", (unsigned long long)m->ctx->seq);
}

static void render_whole(fake_reply_t *r, const msg_t *m)
{
    fake_out_t *o = &r->body;
    fake_out_printf(o,
                    "{\"id\":\"msg_fake_%llu\",\"type\":\"message\",\"role\":\"assistant\","
                    "\"model\":",
                    (unsigned long long)m->ctx->seq);
    fake_out_jcstr(o, m->model);
    if (m->tool) {
        fake_out_cstr(o, ",\"content\":[{\"type\":\"tool_use\",\"id\":");
        print_tool_id(o, m);
        fake_out_cstr(o, ",\"name\":");
        fake_out_jcstr(o, m->call.name);
        fake_out_cstr(o, ",\"input\":");
        fake_out_raw(o, m->call.args.buf.data, m->call.args.buf.len);
        fake_out_cstr(o, "}]");
    } else {
        fake_out_cstr(o, ",\"content\":[{\"type\":\"text\",\"text\":");
        fake_out_jstr(o, m->text, m->text_len);
        fake_out_cstr(o, "}]");
    }
    fake_out_printf(o, ",\"stop_reason\":\"%s\",\"stop_sequence\":", stop_reason(m->finish));
    fake_out_jcstr(o, m->stop_hit);
    fake_out_cstr(o, ",\"usage\":");
    print_usage(o, m, m->output_tokens);
    fake_out_cstr(o, "}");
}

static void event(fake_out_t *o, const char *type)
{
    fake_out_printf(o, "event: %s\ndata: ", type);
}

static void delta(fake_out_t *o, const char *kind, const char *field, const char *s, size_t n)
{
    event(o, "content_block_delta");
    fake_out_printf(o,
                    "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"%s\","
                    "\"%s\":",
                    kind, field);
    fake_out_jstr(o, s, n);
    fake_out_cstr(o, "}}\n\n");
}

static void render_stream(fake_reply_t *r, const msg_t *m)
{
    fake_out_t *o = &r->body;
    fake_reply_stream(r);
    event(o, "message_start");
    fake_out_printf(o,
                    "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_fake_%llu\","
                    "\"type\":\"message\",\"role\":\"assistant\",\"model\":",
                    (unsigned long long)m->ctx->seq);
    fake_out_jcstr(o, m->model);
    fake_out_cstr(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    print_usage(o, m, 1);
    fake_out_cstr(o, "}}\n\n");

    event(o, "content_block_start");
    if (m->tool) {
        fake_out_cstr(o, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                         "{\"type\":\"tool_use\",\"id\":");
        print_tool_id(o, m);
        fake_out_cstr(o, ",\"name\":");
        fake_out_jcstr(o, m->call.name);
        fake_out_cstr(o, ",\"input\":{}}}\n\n");
    } else {
        fake_out_cstr(o, "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                         "{\"type\":\"text\",\"text\":\"\"}}\n\n");
    }
    event(o, "ping");
    fake_out_cstr(o, "{\"type\":\"ping\"}\n\n");

    if (m->tool) {
        size_t from = 0;
        for (size_t f = 0; f < m->call.nfrags; f++) {
            delta(o, "input_json_delta", "partial_json", m->call.args.buf.data + from,
                  m->call.frags[f] - from);
            fake_reply_content_step(r);
            from = m->call.frags[f];
        }
    } else {
        size_t at = 0;
        while (at < m->text_len) {
            size_t len = fake_sim_chunk(m->text + at, m->text_len - at);
            delta(o, "text_delta", "text", m->text + at, len);
            fake_reply_content_step(r);
            at += len;
        }
    }

    event(o, "content_block_stop");
    fake_out_cstr(o, "{\"type\":\"content_block_stop\",\"index\":0}\n\n");
    event(o, "message_delta");
    fake_out_printf(o,
                    "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
                    "\"stop_sequence\":",
                    stop_reason(m->finish));
    fake_out_jcstr(o, m->stop_hit);
    fake_out_printf(o, "},\"usage\":{\"output_tokens\":%ld}}\n\n", m->output_tokens);
    event(o, "message_stop");
    fake_out_cstr(o, "{\"type\":\"message_stop\"}\n\n");
    fake_reply_final_step(r);
}

static int fault_error(fake_reply_t *r, fake_fault_t f)
{
    switch (f) {
    case FAKE_FAULT_429:
        fake_anthropic_error(r, 429, "rate_limit_error",
                             "Number of requests has exceeded your rate limit (simulated by "
                             "ahorro-fake).");
        r->retry_after_s = FAKE_RETRY_AFTER_S;
        return 1;
    case FAKE_FAULT_500:
        fake_anthropic_error(r, 500, "api_error",
                             "Internal server error (simulated by ahorro-fake).");
        return 1;
    case FAKE_FAULT_529:
        fake_anthropic_error(r, 529, "overloaded_error", "Overloaded (simulated by ahorro-fake).");
        return 1;
    default:
        return 0;
    }
}

/* Required fields, in the order Anthropic reports them; -1 with r holding the error. */
static int check_request(fake_reply_t *r, const json_t *b, long *max_tokens)
{
    const json_t *messages = json_object_get(b, "messages");
    if (!json_is_string(json_object_get(b, "model"))) {
        fake_anthropic_error(r, 400, "invalid_request_error", "model: Field required");
        return -1;
    }
    if (!json_is_array(messages)) {
        fake_anthropic_error(r, 400, "invalid_request_error", "messages: Field required");
        return -1;
    }
    if (json_array_size(messages) == 0) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "messages: at least one message is required");
        return -1;
    }
    if (!json_object_get(b, "max_tokens")) {
        fake_anthropic_error(r, 400, "invalid_request_error", "max_tokens: Field required");
        return -1;
    }
    if (fake_sim_get_long(b, "max_tokens", 1, max_tokens)) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "max_tokens: Input should be an integer greater than or equal to 1");
        return -1;
    }
    const json_t *stops = json_object_get(b, "stop_sequences");
    if (stops && !json_is_null(stops) && !json_is_array(stops)) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "stop_sequences: Input should be a valid list");
        return -1;
    }
    return 0;
}

void fake_anthropic_messages(const fake_ctx_t *ctx, fake_reply_t *r)
{
    msg_t m = {.ctx = ctx};
    const json_t *b = ctx->body;
    long max_tokens = -1;
    fake_out_t answer;
    fake_out_init(&answer, FAKE_MAX_ANSWER_BYTES);

    r->request_id = "request-id";
    snprintf(r->request_id_value, sizeof r->request_id_value, "req_fake_%llu",
             (unsigned long long)ctx->seq);
    if (!json_is_object(b)) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "There was an error parsing the body of your request: %s",
                             ctx->json_error ? ctx->json_error : "expected a JSON object");
        goto out;
    }
    ctx->meter->model = json_string_value(json_object_get(b, "model"));
    if (check_request(r, b, &max_tokens))
        goto out;
    m.model = json_string_value(json_object_get(b, "model"));

    fake_sim_prompt(&m.prompt, json_object_get(b, "system"), json_object_get(b, "messages"));
    if (fake_limits_admit(ctx, r, FAKE_API_ANTHROPIC, m.prompt.tokens, max_tokens))
        goto out;
    fake_fault_t fault = ctx->hdr_fault ? ctx->hdr_fault : m.prompt.dir.fault;
    r->delay_ms = ctx->hdr_delay_ms ? ctx->hdr_delay_ms : m.prompt.dir.delay_ms;
    if (fault_error(r, fault))
        goto out;
    long window = fake_sim_context_window(m.model);
    if (m.prompt.tokens > window) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "prompt is too long: %ld tokens > %ld maximum", m.prompt.tokens,
                             window);
        goto out;
    }
    r->fault = fault;
    m.cached = m.prompt.dir.cached < m.prompt.tokens ? m.prompt.dir.cached : m.prompt.tokens;
    /* Writes are what is left of the prompt after the reads, at most. */
    m.cache_write = m.prompt.dir.cache_write < m.prompt.tokens - m.cached
                        ? m.prompt.dir.cache_write
                        : m.prompt.tokens - m.cached;

    m.tool = choose_tool(b, &m.prompt);
    if (m.tool) {
        fake_sim_tool_call(&m.call, json_string_value(json_object_get(m.tool, "name")),
                           json_object_get(m.tool, "input_schema"));
        if (!m.call.name)
            m.call.name = "tool";
        m.finish = FAKE_FINISH_TOOL;
        m.output_tokens = (long)m.call.nfrags;
    } else {
        const fake_answer_t *rec = fake_answers_find(m.model, m.prompt.last_user);
        if (rec) {
            fake_out_raw(&answer, rec->text, rec->len);
            if (!ctx->hdr_delay_ms && !m.prompt.dir.delay_ms)
                r->delay_ms = rec->delay_ms;
        } else {
            fake_sim_answer(&answer, m.model, &m.prompt);
        }
        if (answer.err) {
            fake_anthropic_error(r, 400, "invalid_request_error",
                                 "ahorro-fake: the requested answer exceeds %u bytes.",
                                 FAKE_MAX_ANSWER_BYTES);
            goto out;
        }
        m.text = answer.buf.data ? answer.buf.data : "";
        m.text_len = answer.buf.len;
        m.finish = fake_sim_cut(m.text, &m.text_len, max_tokens,
                                json_object_get(b, "stop_sequences"), &m.stop_hit);
        m.output_tokens = fake_sim_words(m.text, m.text_len);
    }

    if (json_is_true(json_object_get(b, "stream"))) {
        render_stream(r, &m);
    } else {
        r->delay_ms += fake_opts.ttft_ms;
        render_whole(r, &m);
    }
    if (r->body.err)
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "ahorro-fake: the response would exceed %u bytes.",
                             FAKE_MAX_REPLY_BYTES);
out:
    if (m.tool)
        fake_sim_tool_free(&m.call);
    fake_out_free(&answer);
}
