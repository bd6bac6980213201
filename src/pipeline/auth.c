/* auth.c - stage 1: who is calling.
 *
 * With a master key configured, every request needs a key: the master key
 * itself or a live virtual key. Without one, the gateway is in keyless
 * local mode: requests from loopback are served, a presented virtual key
 * (sk-ah-...) must still be valid, and other tokens (an SDK's placeholder)
 * are ignored. Lookups are cached per thread for a few seconds, so a
 * revoked key stops working within AH_KEY_CACHE_TTL_US.
 *
 * The gateway's own loopback calls (the Batch API's runner, docs/batch.md)
 * carry its per-process secret (ah_gateway_t.internal_secret): the bearer
 * "<secret>" is the master key, "<secret>:<key_id>" acts as that virtual key
 * (looked up by id, uncached: a revoked or unknown key is a 401), so that a
 * batch's lines meet the budgets of, and are attributed to, the key that
 * created it. Keys are stored hashed, so the runner cannot present them.
 * From any peer but loopback the secret is just a wrong key. */
#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "store/pg.h"

#define AH_KEY_CACHE_TTL_US (5 * 1000000LL)
/* How long past its TTL a cached key is still served while the key store
 * (PostgreSQL) cannot be reached. */
#define AH_KEY_STALE_US (10 * 60 * 1000000LL)
#define VIRTUAL_KEY_PREFIX "sk-ah-"
#define ACT_AS_SEPARATOR ':' /* "<internal secret>:<key_id>" */

/* Constant-time comparison for secrets. */
static int secret_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

static int is_loopback(const char *peer)
{
    return peer && (strncmp(peer, "127.", 4) == 0 || strcmp(peer, "::1") == 0 ||
                    strncmp(peer, "::ffff:127.", 11) == 0);
}

ah_dbh_t ah_worker_dbh(ah_worker_t *w)
{
    ah_dbh_t k = {.lite = w->db};
    const ah_config_t *cfg = w->gw->cfg;
    if (!cfg->ledger.url)
        return k;
    k.pg_wanted = 1;
    if (w->pg && PQstatus(w->pg) != CONNECTION_OK) {
        PQfinish(w->pg);
        w->pg = NULL;
    }
    int64_t now = ah_now_us();
    if (!w->pg && now >= w->pg_retry_us) {
        char err[256];
        w->pg = ah_pg_connect(cfg->ledger.url, cfg->ledger.timeout_ms, err, sizeof err);
        if (!w->pg) {
            w->pg_retry_us = now + 1000000;
            if (!w->pg_down)
                ah_warn("keys: PostgreSQL cannot be reached (%s): keys seen in the last "
                        "minutes are still served from memory",
                        err);
            w->pg_down = 1;
        } else if (w->pg_down) {
            ah_info("keys: PostgreSQL is back");
            w->pg_down = 0;
        }
    }
    k.pg = w->pg;
    return k;
}

void ah_worker_close_pg(ah_worker_t *w)
{
    PQfinish(w->pg);
    w->pg = NULL;
}

void ah_worker_clear_key_cache(ah_worker_t *w)
{
    for (int i = 0; i < AH_KEY_CACHE_SLOTS; i++)
        ah_key_clear(&w->key_cache[i].key);
}

/* The virtual key for token, through the cache. 0 found, 1 unknown, -1 db. */
static int lookup(ah_worker_t *w, const char *token, ah_key_t **out)
{
    char hash[AH_KEY_HASH_HEX];
    ah_keys_hash(token, hash);
    unsigned slot = 0;
    for (int i = 0; i < 8; i++) /* the hash is uniform: its first hex digits index */
        slot = slot * 16 + (unsigned)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    slot %= AH_KEY_CACHE_SLOTS;
    ah_key_cache_entry_t *e = &w->key_cache[slot];
    int64_t now = ah_now_us();
    if (e->expires_us > now && strcmp(e->hash, hash) == 0) {
        *out = &e->key;
        return 0;
    }
    ah_key_t k;
    ah_err_t rc = ah_keys_lookup(ah_worker_dbh(w), token, &k);
    if (rc == AH_E_DB && w->pg && PQstatus(w->pg) != CONNECTION_OK) /* a restarted server */
        rc = ah_keys_lookup(ah_worker_dbh(w), token, &k);
    if (rc == AH_E_NOTFOUND)
        return 1;
    if (rc && strcmp(e->hash, hash) == 0 && e->expires_us + AH_KEY_STALE_US > now) {
        /* The key store is away: a key this loop saw lately stays valid (a
         * revocation meanwhile takes effect when the store is back). */
        *out = &e->key;
        return 0;
    }
    if (rc)
        return -1;
    ah_key_clear(&e->key);
    e->key = k;
    memcpy(e->hash, hash, sizeof hash);
    e->expires_us = now + AH_KEY_CACHE_TTL_US;
    *out = &e->key;
    return 0;
}

/* A key by id, for the internal credential: 0 found (k filled, cleared by
 * the caller), 1 unknown, -1 db. */
static int lookup_id(ah_worker_t *w, const char *id, ah_key_t *k)
{
    ah_err_t rc = ah_keys_lookup_id(ah_worker_dbh(w), id, k);
    return rc == AH_E_OK ? 0 : rc == AH_E_NOTFOUND ? 1 : -1;
}

/* The internal credential: -1 when tok is not it (or the peer is not
 * loopback), 0 when the caller is admitted, else the failure's status. */
static int internal_auth(ah_worker_t *w, ah_request_t *r, const char *tok)
{
    const char *secret = w->gw->internal_secret;
    size_t sl = strlen(secret), tl = strlen(tok);
    if (sl == 0 || tl < sl || !is_loopback(r->peer))
        return -1;
    unsigned char d = 0;
    for (size_t i = 0; i < sl; i++)
        d |= (unsigned char)(tok[i] ^ secret[i]);
    if (d || (tok[sl] && tok[sl] != ACT_AS_SEPARATOR))
        return -1;
    if (!tok[sl]) {
        r->key_id = "master";
        r->owner = "master";
        return 0;
    }
    ah_key_t k;
    int found = lookup_id(w, tok + sl + 1, &k);
    int rc = 0;
    if (found < 0)
        rc = ah_request_fail(r, 503, NULL, NULL, NULL, "key store unavailable");
    else if (found > 0 || k.revoked)
        rc = ah_request_fail(r, 401, "authentication_error", "invalid_api_key", NULL,
                             found > 0 ? "The batch's key no longer exists"
                                       : "The batch's key was revoked");
    else if (k.role != AH_KEY_ROLE_API)
        rc = ah_request_fail(r, 403, "permission_error", "insufficient_permissions", NULL,
                             "The batch's key may not call models");
    if (found == 0 && rc == 0) {
        r->key_id = ah_arena_strdup(&r->arena, k.id);
        r->owner = ah_arena_strdup(&r->arena, k.owner);
        r->tags = json_deep_copy(k.tags);
    }
    if (found == 0)
        ah_key_clear(&k);
    return rc;
}

int ah_stage_auth(ah_worker_t *w, ah_request_t *r)
{
    const char *master = w->gw->cfg->master_key;
    const char *tok = r->auth_token;
    if (master && tok && secret_eq(tok, master)) {
        r->key_id = "master";
        r->owner = "master";
        return 0;
    }
    int internal = tok ? internal_auth(w, r, tok) : -1;
    if (internal >= 0)
        return internal;
    if (tok && (master || strncmp(tok, VIRTUAL_KEY_PREFIX, strlen(VIRTUAL_KEY_PREFIX)) == 0)) {
        ah_key_t *k = NULL;
        int found = lookup(w, tok, &k);
        if (found < 0)
            return ah_request_fail(r, 503, NULL, NULL, NULL,
                                   "key store unavailable: the gateway cannot check API keys "
                                   "right now; retry shortly");
        if (found > 0 || k->revoked)
            return ah_request_fail(r, 401, "authentication_error", "invalid_api_key", NULL,
                                   found > 0 ? "Invalid API key: not a key of this gateway"
                                             : "Invalid API key: this key was revoked");
        /* A viewer key reads the admin API and the dashboard; it must not
         * spend money, and a role this build does not know may do nothing. */
        if (k->role != AH_KEY_ROLE_API)
            return ah_request_fail(r, 403, "permission_error", "insufficient_permissions", NULL,
                                   k->role == AH_KEY_ROLE_VIEWER
                                       ? "This key is read-only (role viewer): it may read the "
                                         "admin API and the dashboard, not call models"
                                       : "This key has a role this gateway does not know");
        r->key_id = ah_arena_strdup(&r->arena, k->id);
        r->owner = ah_arena_strdup(&r->arena, k->owner);
        r->tags = json_deep_copy(k->tags);
        return 0;
    }
    if (master)
        return ah_request_fail(r, 401, "authentication_error", "invalid_api_key", NULL,
                               tok ? "Invalid API key"
                                   : "Missing API key: send 'Authorization: Bearer <key>' "
                                     "or 'x-api-key: <key>'");
    if (!is_loopback(r->peer))
        return ah_request_fail(r, 401, "authentication_error", "invalid_api_key", NULL,
                               "This gateway has no master key and serves keyless requests "
                               "from loopback only");
    return 0;
}
