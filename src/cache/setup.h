/* setup.h - the answer caches of a gateway, from its configuration. */
#ifndef AH_CACHE_SETUP_H
#define AH_CACHE_SETUP_H

#include "cache/embed.h"
#include "cache/embed_remote.h"
#include "cache/intent.h"
#include "cache/store.h"
#include "config/config.h"

/* The built-in SIF word-vector file (scripts/build-embeddings.sh):
 * $AHORRO_EMBEDDINGS, else beside the binary (data/, ../share/ahorro/), else
 * ./build/data. Written into buf; NULL when none is readable. */
const char *ah_sif_path(char *buf, size_t n);

/* *cache: the store when any route caches, else NULL; *embedder (local) or
 * *remote (an embeddings endpoint): the semantic cache's embedder when any
 * route needs one and it opens, else NULL. Entries kept at the last stop are
 * loaded. Release all with ah_cache_teardown. */
void ah_cache_setup(const ah_config_t *cfg, ah_cache_t **cache, ah_embedder_t **embedder,
                    ah_embed_remote_t **remote);
/* Keep the live entries (when configured to), then free the store and the
 * embedders; any may be NULL. */
void ah_cache_teardown(const ah_config_t *cfg, ah_cache_t *cache, ah_embedder_t *embedder,
                       ah_embed_remote_t *remote);

/* The labelled histories the cache policies name (cfg->cache.intent_files),
 * each trained into a classifier (cache/intent.h): *out gets an array of
 * cfg->cache.nintent_files models, NULL when there are none. On a file that
 * does not load, AH_E_CONFIG with the reason in err and nothing kept. Free
 * with ah_cache_intents_free. */
ah_err_t ah_cache_intents_load(const ah_config_t *cfg, ah_intent_t ***out, char *err,
                               size_t errlen);
void ah_cache_intents_free(const ah_config_t *cfg, ah_intent_t **models);

#endif
