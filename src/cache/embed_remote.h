/* embed_remote.h - embeddings from an OpenAI-compatible /v1/embeddings
 * endpoint (OpenAI, Ollama, TEI, vLLM, ...), for the semantic cache.
 *
 * A network call cannot run inside the synchronous pipeline, so this
 * embedder is asynchronous: a request whose text is not in the embedder's
 * vector cache waits (ah_embed_batcher_submit) and the exchange goes on when
 * the vector arrives. Texts submitted during one turn of a worker's event
 * loop go out together as one batched call (up to AH_EMBED_BATCH_MAX inputs).
 * Vectors are kept in a bounded LRU shared by every worker, so a repeated
 * question never calls the endpoint twice.
 *
 * Ownership: the ah_embed_remote_t (endpoint, vector cache) is shared and
 * thread-safe; each worker owns its ah_embed_batcher_t, used only on its
 * loop. A failed call (endpoint down, timeout, bad answer) reports a NULL
 * vector: the request goes on as a cache miss, never as an error. */
#ifndef AH_EMBED_REMOTE_H
#define AH_EMBED_REMOTE_H

#include <event2/event.h>
#include <stddef.h>

#include "cache/embed.h"
#include "config/config.h"
#include "upstream/http.h"

#define AH_EMBED_BATCH_MAX 64
#define AH_EMBED_REMOTE_TIMEOUT_S 5.0
#define AH_EMBED_REMOTE_CACHE 8192

typedef struct ah_embed_remote ah_embed_remote_t;
typedef struct ah_embed_batcher ah_embed_batcher_t;
typedef struct ah_embed_wait ah_embed_wait_t;

/* vec: the unit vector (valid during the call), or NULL when the endpoint
 * failed. */
typedef void (*ah_embed_cb)(void *ud, const float *vec, int dim);

/* An embedder over deployment dep (its api_base, api_key and model; a
 * wildcard deployment's model is `name`, the model asked for). Borrows dep
 * (the configuration outlives it). Free with ah_embed_remote_free. */
ah_embed_remote_t *ah_embed_remote_new(const ah_deployment_t *dep, const char *name);
void ah_embed_remote_free(ah_embed_remote_t *er);
/* The cached vector of text into out[max_dim]: its dimension, or 0. */
int ah_embed_remote_cached(ah_embed_remote_t *er, const char *text, float *out, int max_dim);
/* Calls made and texts embedded so far (for stats and tests). */
void ah_embed_remote_stats(ah_embed_remote_t *er, unsigned long *calls, unsigned long *texts);

/* A worker's batcher on its loop and HTTP client. Free with
 * ah_embed_batcher_free once no call is in flight. */
ah_embed_batcher_t *ah_embed_batcher_new(ah_embed_remote_t *er, struct event_base *base,
                                         ah_http_t *http);
void ah_embed_batcher_free(ah_embed_batcher_t *b);
/* Embed text (copied); cb fires later on the loop, never from inside this
 * call, unless the wait is cancelled first. */
ah_embed_wait_t *ah_embed_batcher_submit(ah_embed_batcher_t *b, const char *text, ah_embed_cb cb,
                                         void *ud);
/* The waiter is gone: its callback will not fire. */
void ah_embed_wait_cancel(ah_embed_wait_t *w);

#endif
