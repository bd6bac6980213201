/* exchange.h - one client request on the wire, from body to last byte.
 *
 * Internal to the server: the request handlers of the API endpoints
 * (chat, messages, embeddings) and the admin endpoints. */
#ifndef AH_EXCHANGE_H
#define AH_EXCHANGE_H

#include <event2/http.h>

#include "pipeline/pipeline.h"

/* POST /v1/chat/completions, /v1/messages, /v1/embeddings. */
void ah_exchange_handle(ah_worker_t *w, struct evhttp_request *req, ah_api_t api, ah_op_t op);
/* GET /v1/models (format by the anthropic-version header). */
void ah_exchange_models(ah_worker_t *w, struct evhttp_request *req);
/* /health, /metrics, /admin/... */
/* POST /v1/feedback: rate an answer; a wrong cache hit leaves the cache. */
void ah_feedback_handle(ah_worker_t *w, struct evhttp_request *req);
void ah_admin_handle(ah_worker_t *w, struct evhttp_request *req, const char *path);

/* Send a JSON body with status (helpers shared by the endpoints). */
void ah_reply_json(struct evhttp_request *req, int status, json_t *body);
/* Send an error in the API's format. */
void ah_reply_error(struct evhttp_request *req, ah_api_t api, int status, const char *type,
                    const char *code, const char *message);
/* Peer address of the request's connection ("" when unknown). */
const char *ah_peer_of(struct evhttp_request *req);
/* The bearer token or x-api-key header of req, or NULL. */
const char *ah_token_of(struct evhttp_request *req);

#endif
