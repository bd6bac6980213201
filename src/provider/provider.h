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
    int tool_base;        /* Anthropic: tool index of the current tool block */
    int ntools;
    int block_is_tool;
    char finish[32];
    int done;             /* the terminal event was seen */
    int first_token_seen;
} ah_provider_stream_t;

typedef struct ah_provider_ops {
    const char *name;
    ah_api_t api;
    /* Build the upstream request for r (chat or embeddings) to deployment d.
     * On a request the provider cannot serve, sets r->fail and returns
     * AH_E_INVAL. */
    ah_err_t (*build)(ah_request_t *r, const ah_deployment_t *d, ah_provider_req_t *out);
    /* Read usage and the served model of a complete answer into r. If canon
     * is not NULL, also store the canonical chat.completion (new reference). */
    ah_err_t (*parse_response)(ah_request_t *r, json_t *answer, json_t **canon);
    /* One stream event: update r's usage; if chunks is not NULL, append the
     * canonical chunks it stands for. *is_token tells whether it carried
     * generated content (for time to first token). Returns AH_E_UPSTREAM
     * with r->fail set when the event is an error event. */
    ah_err_t (*stream_event)(ah_provider_stream_t *ps, ah_request_t *r, const char *event,
                             json_t *data, json_t *chunks, int *is_token);
} ah_provider_ops_t;

extern const ah_provider_ops_t ah_provider_openai;
extern const ah_provider_ops_t ah_provider_anthropic;

/* The adapter of a deployment. */
const ah_provider_ops_t *ah_provider_for(const ah_deployment_t *d);

void ah_provider_req_free(ah_provider_req_t *p);

/* The message of an upstream error body ({"error":{"message"}} in both
 * formats), or the start of the body; written into msg, bounded. */
void ah_provider_error_message(const char *body, size_t len, char *msg, size_t msglen);

/* Append "Name: value" to a header list. */
struct curl_slist *ah_provider_header(struct curl_slist *l, const char *name, const char *value);

#endif
