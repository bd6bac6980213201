/* ingress.h - the client-facing wire formats: OpenAI and Anthropic.
 *
 * Each format is one table of functions (ah_ingress_ops_t): parse a client
 * body into the canonical request, render a canonical answer, stream chunk
 * or error back in the client's own format. The canonical answer is an
 * OpenAI chat.completion object, a canonical stream chunk an OpenAI
 * chat.completion.chunk object (with a final usage-only chunk). Adding a
 * client format is one new file and one table. */
#ifndef AH_INGRESS_H
#define AH_INGRESS_H

#include <jansson.h>

#include "core/buf.h"
#include "pipeline/request.h"

/* Per-stream rendering state, zeroed at the start of a stream. */
typedef struct ah_stream_render {
    int started;     /* first event sent */
    int block_open;  /* Anthropic: a content block is open */
    int block_index; /* Anthropic: index of the open (or next) block */
    int block_is_tool;
    int tool_index; /* OpenAI tool_call index of the open block */
    char stop_reason[32];
    int have_usage;
    ah_usage_t usage;
} ah_stream_render_t;

typedef struct ah_ingress_ops {
    ah_api_t api;
    const char *name;
    /* Fill r->body, r->raw, r->model, r->stream... from a chat body. Takes a
     * reference to `body` when it keeps it. On bad input sets r->fail and
     * returns AH_E_INVAL. */
    ah_err_t (*parse_chat)(ah_request_t *r, json_t *body);
    /* The client's answer from a canonical chat.completion; new reference. */
    json_t *(*render_response)(const ah_request_t *r, json_t *canon);
    /* The client's error body for f. */
    void (*render_error)(const ah_fail_t *f, ah_buf_t *out);
    /* SSE bytes for one canonical chunk. */
    void (*stream_chunk)(ah_stream_render_t *st, const ah_request_t *r, json_t *chunk,
                         ah_buf_t *out);
    /* SSE bytes that end a successful stream. */
    void (*stream_end)(ah_stream_render_t *st, const ah_request_t *r, ah_buf_t *out);
    /* SSE bytes that end a stream with an error event. */
    void (*stream_error)(ah_stream_render_t *st, const ah_request_t *r, const ah_fail_t *f,
                         ah_buf_t *out);
    /* The /v1/models answer for a list of model ids (JSON array of strings). */
    json_t *(*render_models)(json_t *ids);
} ah_ingress_ops_t;

extern const ah_ingress_ops_t ah_ingress_openai;
extern const ah_ingress_ops_t ah_ingress_anthropic;

/* The ops of a format. */
const ah_ingress_ops_t *ah_ingress_for(ah_api_t api);

/* OpenAI's error type for an HTTP status (used when a failure names none). */
const char *ah_ingress_openai_error_type(int status);

/* Append "data: <json>\n\n" (with "event: <name>\n" first when name). */
void ah_sse_append(ah_buf_t *out, const char *event, json_t *data);

#endif
