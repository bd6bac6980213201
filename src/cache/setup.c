/* setup.c - the answer caches of a gateway, from its configuration.
 *
 * Creates the store when any route caches, opens the semantic cache's
 * embedder when any route asks for it (a missing embedder leaves the exact
 * cache on, and says so), loads the entries kept at the last clean stop, and
 * keeps them again at the next. With ahorro.state in Redis, the store is
 * shared with the other instances through it (shared.h). */
#include "cache/setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/shared.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/path.h"
#include "store/db.h"

static int any_cache(const ah_config_t *cfg, int semantic)
{
    const ah_cache_policy_t *p = &cfg->cache.policy;
    if (semantic ? p->semantic : (p->exact || p->semantic))
        return 1;
    for (size_t i = 0; i < cfg->cache.nroutes; i++) {
        p = &cfg->cache.routes[i].policy;
        if (semantic ? p->semantic : (p->exact || p->semantic))
            return 1;
    }
    return 0;
}

const char *ah_sif_path(char *buf, size_t n)
{
    char exe[4096];
    const char *env = getenv("AHORRO_EMBEDDINGS");
    if (env && *env)
        return access(env, R_OK) == 0 ? env : NULL;
    if (ah_exe_dir(exe, sizeof exe) == 0) {
        snprintf(buf, n, "%s/data/sif-100d.bin", exe);
        if (access(buf, R_OK) == 0)
            return buf;
        snprintf(buf, n, "%s/../share/ahorro/sif-100d.bin", exe);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    snprintf(buf, n, "build/data/sif-100d.bin");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

/* The semantic cache's embedder: the configured one, else the built-in SIF
 * vectors built at set-up (scripts/build-embeddings.sh). */
static ah_embedder_t *open_embedder(const ah_config_t *cfg)
{
    const ah_cache_config_t *cc = &cfg->cache;
    char err[512] = "", p1[4200];
    if (cc->embedder && strcmp(cc->embedder, "model2vec") == 0) {
        if (!cc->embedder_path) {
            ah_error("cache: embedder model2vec needs embedder_path (a model directory)");
            return NULL;
        }
        ah_embedder_t *e = ah_embed_open_model2vec(cc->embedder_path, err, sizeof err);
        if (!e)
            ah_error("cache: %s", err);
        else
            ah_info("cache: semantic embedder model2vec (%d dimensions) from %s", e->dim,
                    cc->embedder_path);
        return e;
    }
    if (cc->embedder_path && access(cc->embedder_path, R_OK) != 0) {
        ah_error("cache: cannot read embedder_path %s", cc->embedder_path);
        return NULL;
    }
    const char *path = cc->embedder_path ? cc->embedder_path : ah_sif_path(p1, sizeof p1);
    if (path) {
        ah_embedder_t *e = ah_embed_open_sif(path, err, sizeof err);
        if (e) {
            ah_info("cache: semantic embedder sif (%d dimensions) from %s", e->dim, path);
            return e;
        }
        ah_error("cache: %s", err);
        return NULL;
    }
    ah_error("cache: no word vectors for the semantic cache (run scripts/build-embeddings.sh, or "
             "set ahorro.cache.embedder_path)");
    return NULL;
}

/* The embeddings endpoint: a model_list entry named by embedder_model. */
static ah_embed_remote_t *open_remote(const ah_config_t *cfg)
{
    const char *model = cfg->cache.embedder_model;
    const ah_deployment_t *d = model ? ah_config_route(cfg, model, 0) : NULL;
    if (!d) {
        ah_error("cache: embedder endpoint needs embedder_model, the model_name of an "
                 "embeddings model in model_list");
        return NULL;
    }
    if (d->kind == AH_PROVIDER_ANTHROPIC) {
        ah_error("cache: model '%s' is served by Anthropic, which has no embeddings API", model);
        return NULL;
    }
    ah_info("cache: semantic embeddings from %s (%s/%s)", d->api_base, d->provider_name, d->model);
    return ah_embed_remote_new(d, model);
}

void ah_cache_setup(const ah_config_t *cfg, ah_cache_t **cache, ah_embedder_t **embedder,
                    ah_embed_remote_t **remote)
{
    *cache = NULL;
    *embedder = NULL;
    *remote = NULL;
    if (!any_cache(cfg, 0))
        return;
    *cache = ah_cache_new(cfg->cache.max_entries, cfg->cache.max_bytes);
    int remote_wanted = cfg->cache.embedder && strcmp(cfg->cache.embedder, "endpoint") == 0;
    if (any_cache(cfg, 1) && !(remote_wanted ? (void *)(*remote = open_remote(cfg))
                                             : (void *)(*embedder = open_embedder(cfg))))
        ah_warn("cache: the semantic cache is off; exact caching goes on");
    sqlite3 *db;
    if (cfg->cache.persist && ah_db_open(cfg->db_path, &db) == AH_E_OK) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s-vindex", cfg->db_path);
        ah_cache_load(*cache, db, ah_wall_ms(), dir);
        sqlite3_close(db);
    }
    ah_info("cache: on (at most %zu entries, %zu MB)", cfg->cache.max_entries,
            cfg->cache.max_bytes >> 20);
    char err[600];
    if (cfg->state.url && ah_cache_shared_start(*cache, &cfg->state, err, sizeof err))
        ah_error("cache: not shared: %s", err);
}

void ah_cache_teardown(const ah_config_t *cfg, ah_cache_t *cache, ah_embedder_t *embedder,
                       ah_embed_remote_t *remote)
{
    sqlite3 *db;
    if (cache && cfg->cache.persist && ah_db_open(cfg->db_path, &db) == AH_E_OK) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s-vindex", cfg->db_path);
        ah_cache_save(cache, db, ah_wall_ms(), dir);
        sqlite3_close(db);
    }
    ah_cache_free(cache);
    ah_embed_free(embedder);
    ah_embed_remote_free(remote);
}

ah_err_t ah_cache_intents_load(const ah_config_t *cfg, ah_intent_t ***out, char *err, size_t errlen)
{
    const ah_cache_config_t *cc = &cfg->cache;
    *out = NULL;
    if (!cc->nintent_files)
        return AH_E_OK;
    ah_intent_t **m = ah_calloc(cc->nintent_files, sizeof *m);
    for (size_t i = 0; i < cc->nintent_files; i++) {
        int64_t t0 = ah_wall_ms();
        char why[512];
        if (!(m[i] = ah_intent_load_csv(cc->intent_files[i], NULL, why, sizeof why))) {
            ah_err_printf(err, errlen, "cache intents: %s", why);
            ah_cache_intents_free(cfg, m);
            return AH_E_CONFIG;
        }
        ah_info("cache: intents from %s: %zu rows, %d labels, trained in %lld ms",
                cc->intent_files[i], ah_intent_rows(m[i]), ah_intent_classes(m[i]),
                (long long)(ah_wall_ms() - t0));
    }
    *out = m;
    return AH_E_OK;
}

void ah_cache_intents_free(const ah_config_t *cfg, ah_intent_t **models)
{
    if (!models)
        return;
    for (size_t i = 0; i < cfg->cache.nintent_files; i++)
        ah_intent_free(models[i]);
    ah_free(models);
}
