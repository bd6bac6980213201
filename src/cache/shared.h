/* shared.h - the answer cache shared between gateway instances through the
 * Redis of ahorro.state (docs/state.md, "Answer caches in Redis").
 *
 * Every instance keeps its own store (store.h) and vector indexes, and
 * Redis carries what the others need: each entry under its key with its TTL
 * (an exact miss here is looked up there, asynchronously from an event
 * loop), and a stream of news (semantic entries stored, entries removed,
 * purges) that one thread per instance reads and applies to its store, so
 * that a paraphrase of a question asked on another instance is a semantic
 * hit here too.
 *
 * Redis is never needed for an answer: when it cannot be reached, the cache
 * goes on in this process (the outage is logged once, and Redis is tried
 * again at most once a second). */
#ifndef AH_CACHE_SHARED_H
#define AH_CACHE_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "cache/answer.h"
#include "cache/store.h"
#include "config/state_config.h"
#include "core/buf.h"
#include "core/error.h"

/* Limits of one serialized entry: its strings (tenant, namespace, model),
 * the embedded prompt, and the whole (the answer is at most
 * AH_ANSWER_MAX_BYTES). An entry over them is not shared. */
#define AH_CACHE_SHARED_MAX_NAME 4096
#define AH_CACHE_SHARED_MAX_PROMPT (256u * 1024)
#define AH_CACHE_SHARED_MAX_VALUE (AH_ANSWER_MAX_BYTES + 512u * 1024)

/* Share cache through the Redis of cfg (cfg->url set): installs the peers'
 * hooks on cache (ah_cache_set_peers) and starts the thread that reads the
 * stream, which first catches up with its most recent records. The cache
 * owns what this makes: ah_cache_free stops the thread and frees it.
 * Returns 0, or -1 with the reason in err when the URL is malformed (the
 * cache then stays local). A Redis that is down is not an error. */
int ah_cache_shared_start(ah_cache_t *cache, const ah_state_config_t *cfg, char *err,
                          size_t errlen);

/* An entry as Redis holds it: p serialized into out (appended; out's max
 * bounds it). AH_E_TOOBIG when a part is over its limit. */
ah_err_t ah_cache_shared_encode(const ah_cache_put_t *p, ah_buf_t *out);

/* A serialized entry read back. put points into the fields here (put.now_ms
 * is the entry's creation, put.ttl_ms the time from it to its expiry). Free
 * the fields with ah_cache_shared_entry_free. */
typedef struct ah_cache_shared_entry {
    ah_cache_put_t put;
    uint8_t key[AH_CACHE_KEY_BYTES], scope[AH_CACHE_KEY_BYTES];
    char *tenant, *ns, *model, *prompt, *answer;
    float *vec;
    int64_t expires_ms;
} ah_cache_shared_entry_t;

/* Read a serialized entry: AH_E_PARSE for anything malformed (truncated,
 * over a limit, a NUL inside a string, an answer that is not a JSON object,
 * a vector that is not finite), with nothing to free; AH_E_OK otherwise. */
ah_err_t ah_cache_shared_decode(const void *data, size_t len, ah_cache_shared_entry_t *out);
void ah_cache_shared_entry_free(ah_cache_shared_entry_t *e);

#endif
