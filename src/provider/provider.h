/* provider.h - upstream providers behind one table of functions.
 *
 * A provider adapter knows one upstream wire format: how to build the
 * upstream request from the canonical request, how to read usage and the
 * served model from its answers, and how to turn its answers and stream
 * events into the canonical (OpenAI-shaped) form when the client spoke
 * another format. Adding a provider is one new file and one table. */
#ifndef AH_PROVIDER_H
#define AH_PROVIDER_H

#include <curl/curl.h>
#include <jansson.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/json_skim.h"
#include "core/limits.h"
#include "pipeline/request.h"

/* What to send upstream. Owned by the caller of build; freed with
 * ah_provider_req_free. */
typedef struct ah_provider_req {
    char *url;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
} ah_provider_req_t;

/* Per-stream state of an adapter, zeroed at the start of a stream. */
typedef struct ah_provider_stream {
    char id[96];
    char model[AH_MAX_MODEL_NAME_BUF];
    int tool_base; /* Anthropic: tool index of the current tool block */
    int ntools;
    int block_is_tool;
    char finish[32];
    int done; /* the terminal event was seen */
    int first_token_seen;
} ah_provider_stream_t;

typedef struct ah_provider_ops {
    const char *name;
    ah_api_t api;
    /* Build the upstream request for r (chat or embeddings) to deployment d.
     * On a request the provider cannot serve, sets r->fail and returns
     * AH_E_INVAL. */
    ah_err_t (*build)(ah_request_t *r, const ah_deployment_t *d, ah_provider_req_t *out);
    /* Read usage and the served model of a complete answer (body, len) into
     * r. If canon is not NULL, also store the canonical chat.completion (new
     * reference); when it is NULL, the body is only skimmed (core/json_skim.h),
     * never parsed whole. AH_E_PARSE when it is not a JSON object. */
    ah_err_t (*parse_response)(ah_request_t *r, const char *body, size_t len, json_t **canon);
    /* One stream event (its SSE name or NULL, its data text): update r's
     * usage; if chunks is not NULL, append the canonical chunks it stands
     * for (the event is parsed whole); otherwise the event will be forwarded
     * raw and is only skimmed. *is_token tells whether it carried generated
     * content (for time to first token); *forward whether a raw forward
     * should send it on (0 for the usage chunk a client did not ask for).
     * Returns AH_E_UPSTREAM with r->fail set when it is an error event. */
    ah_err_t (*stream_event)(ah_provider_stream_t *ps, ah_request_t *r, const char *event,
                             const char *data, size_t len, json_t *chunks, int *is_token,
                             int *forward);
} ah_provider_ops_t;

extern const ah_provider_ops_t ah_provider_openai;
extern const ah_provider_ops_t ah_provider_anthropic;

/* The adapter of a deployment. */
const ah_provider_ops_t *ah_provider_for(const ah_deployment_t *d);

void ah_provider_req_free(ah_provider_req_t *p);

/* Value of a skimmed span as JSON (any type); new reference or NULL. */
json_t *ah_provider_span_json(ah_json_span_t span);
/* A skimmed string value copied into r's arena, or NULL. */
const char *ah_provider_span_string(ah_request_t *r, ah_json_span_t span);

/* The message of an upstream error body ({"error":{"message"}} in both
 * formats), or the start of the body; written into msg, bounded. */
void ah_provider_error_message(const char *body, size_t len, char *msg, size_t msglen);

/* Append "Name: value" to a header list. */
struct curl_slist *ah_provider_header(struct curl_slist *l, const char *name, const char *value);

#endif
