/* keys.c - virtual keys in SQLite, hashed with SHA-256 (OpenSSL's EVP).
 *
 * Keys are 160 random bits, so a fast unsalted hash is the right tool (as
 * for GitHub tokens): there is nothing to brute-force, and lookup by hash
 * needs a deterministic hash. */
#include "store/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"

#define KEY_PREFIX "sk-ah-"
#define KEY_RANDOM_BYTES 20

static void hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void ah_keys_hash(const char *token, char out[AH_KEY_HASH_HEX])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(token, strlen(token), md, &len, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static const char *const role_names[] = {"api", "viewer"};

const char *ah_key_role_name(ah_key_role_t role)
{
    return role == AH_KEY_ROLE_API || role == AH_KEY_ROLE_VIEWER ? role_names[role] : "unknown";
}

ah_err_t ah_key_role_parse(const char *s, ah_key_role_t *out)
{
    for (int i = 0; i < 2; i++) {
        if (s && strcmp(s, role_names[i]) == 0) {
            *out = (ah_key_role_t)i;
            return AH_E_OK;
        }
    }
    return AH_E_INVAL;
}

void ah_key_clear(ah_key_t *k)
{
    ah_free(k->owner);
    json_decref(k->tags);
    memset(k, 0, sizeof *k);
}

ah_err_t ah_keys_create(sqlite3 *db, const char *owner, json_t *tags, ah_key_role_t role,
                        char **key_out, char **id_out)
{
    if (role != AH_KEY_ROLE_API && role != AH_KEY_ROLE_VIEWER)
        return AH_E_INVAL;
    unsigned char rnd[KEY_RANDOM_BYTES], idr[8];
    char key[sizeof KEY_PREFIX + 2 * KEY_RANDOM_BYTES], id[AH_KEY_ID_LEN], hash[AH_KEY_HASH_HEX];
    if (RAND_bytes(rnd, sizeof rnd) != 1 || RAND_bytes(idr, sizeof idr) != 1)
        return AH_E_IO;
    memcpy(key, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    hex(rnd, sizeof rnd, key + sizeof KEY_PREFIX - 1);
    memcpy(id, "key_", 4);
    hex(idr, sizeof idr, id + 4);
    ah_keys_hash(key, hash);
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%.10s", key);
    char *tags_s = tags ? json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_OK;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO keys(id, hash, prefix, owner, tags, created_ms, role) "
                           "VALUES (?,?,?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = AH_E_DB;
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, owner, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, tags_s ? tags_s : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, ah_wall_ms());
    sqlite3_bind_text(st, 7, ah_key_role_name(role), -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
        ah_error("keys: %s", sqlite3_errmsg(db));
        rc = AH_E_DB;
        goto out;
    }
    *key_out = ah_strdup(key);
    *id_out = ah_strdup(id);
out:
    sqlite3_finalize(st);
    free(tags_s);
    return rc;
}

ah_err_t ah_keys_lookup(sqlite3 *db, const char *token, ah_key_t *out)
{
    char hash[AH_KEY_HASH_HEX];
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_NOTFOUND;
    memset(out, 0, sizeof *out);
    ah_keys_hash(token, hash);
    if (sqlite3_prepare_v2(db, "SELECT id, owner, tags, revoked_ms, role FROM keys WHERE hash = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        snprintf(out->id, sizeof out->id, "%s", (const char *)sqlite3_column_text(st, 0));
        out->owner = ah_strdup((const char *)sqlite3_column_text(st, 1));
        const char *tags = (const char *)sqlite3_column_text(st, 2);
        out->tags = tags ? json_loads(tags, 0, NULL) : NULL;
        if (!json_is_object(out->tags)) {
            json_decref(out->tags);
            out->tags = json_object();
        }
        out->revoked = sqlite3_column_type(st, 3) != SQLITE_NULL;
        if (ah_key_role_parse((const char *)sqlite3_column_text(st, 4), &out->role))
            out->role = AH_KEY_ROLE_UNKNOWN;
        rc = AH_E_OK;
    } else if (s != SQLITE_DONE) {
        rc = AH_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

ah_err_t ah_keys_list(sqlite3 *db, json_t **out)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, prefix, owner, tags, created_ms, revoked_ms, role FROM keys "
                           "ORDER BY created_ms",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    json_t *arr = json_array();
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *tags = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        const char *role = (const char *)sqlite3_column_text(st, 6);
        json_t *k =
            json_pack("{s:s,s:s,s:s,s:o,s:I,s:s}", "id", sqlite3_column_text(st, 0), "prefix",
                      sqlite3_column_text(st, 1), "owner", sqlite3_column_text(st, 2), "tags",
                      tags ? tags : json_object(), "created_ms",
                      (json_int_t)sqlite3_column_int64(st, 4), "role", role ? role : "api");
        if (sqlite3_column_type(st, 5) != SQLITE_NULL)
            json_object_set_new(k, "revoked_ms", json_integer(sqlite3_column_int64(st, 5)));
        json_array_append_new(arr, k);
    }
    sqlite3_finalize(st);
    *out = arr;
    return AH_E_OK;
}

ah_err_t ah_keys_revoke(sqlite3 *db, const char *id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL",
                           -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_int64(st, 1, ah_wall_ms());
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return AH_E_DB;
    return sqlite3_changes(db) ? AH_E_OK : AH_E_NOTFOUND;
}
