/* keys.c - virtual keys in SQLite or PostgreSQL, hashed with SHA-256 (OpenSSL's EVP).
 *
 * Keys are 160 random bits, so a fast unsalted hash is the right tool (as
 * for GitHub tokens): there is nothing to brute-force, and lookup by hash
 * needs a deterministic hash. */
#include "store/keys.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Fill k from a stored key's columns (tags: JSON object text; revoked:
 * whether revoked_ms is set). */
static void key_fill(ah_key_t *k, const char *id, const char *owner, const char *tags, int revoked,
                     const char *role)
{
    snprintf(k->id, sizeof k->id, "%s", id ? id : "");
    k->owner = ah_strdup(owner ? owner : "");
    k->tags = tags ? json_loads(tags, 0, NULL) : NULL;
    if (!json_is_object(k->tags)) {
        json_decref(k->tags);
        k->tags = json_object();
    }
    k->revoked = revoked;
    if (ah_key_role_parse(role, &k->role))
        k->role = AH_KEY_ROLE_UNKNOWN;
}

/* --- PostgreSQL ------------------------------------------------------------- */

/* Run a statement with text parameters; NULL (logged) on failure. */
static PGresult *pg_run(PGconn *c, const char *sql, int n, const char *const *params,
                        ExecStatusType want)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        const char *m = PQresultErrorMessage(r);
        ah_error("keys: PostgreSQL: %.*s", (int)strcspn(m ? m : "", "\n"), m ? m : "");
        PQclear(r);
        return NULL;
    }
    return r;
}

static ah_err_t pg_lookup(PGconn *c, const char *column, const char *value, ah_key_t *out)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "SELECT id, owner, tags, revoked_ms IS NOT NULL, role FROM ahorro_keys WHERE %s = $1",
             column);
    PGresult *r = pg_run(c, sql, 1, &value, PGRES_TUPLES_OK);
    if (!r)
        return AH_E_DB;
    ah_err_t rc = AH_E_NOTFOUND;
    if (PQntuples(r) == 1) {
        key_fill(out, PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2),
                 PQgetvalue(r, 0, 3)[0] == 't', PQgetvalue(r, 0, 4));
        rc = AH_E_OK;
    }
    PQclear(r);
    return rc;
}

/* --- either ----------------------------------------------------------------- */

ah_err_t ah_keys_create(ah_dbh_t db, const char *owner, json_t *tags, ah_key_role_t role,
                        char **key_out, char **id_out)
{
    if (role != AH_KEY_ROLE_API && role != AH_KEY_ROLE_VIEWER)
        return AH_E_INVAL;
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    unsigned char rnd[KEY_RANDOM_BYTES], idr[8];
    char key[sizeof KEY_PREFIX + 2 * KEY_RANDOM_BYTES], id[AH_KEY_ID_LEN], hash[AH_KEY_HASH_HEX];
    if (RAND_bytes(rnd, sizeof rnd) != 1 || RAND_bytes(idr, sizeof idr) != 1)
        return AH_E_IO;
    memcpy(key, KEY_PREFIX, sizeof KEY_PREFIX - 1);
    hex(rnd, sizeof rnd, key + sizeof KEY_PREFIX - 1);
    memcpy(id, "key_", 4);
    hex(idr, sizeof idr, id + 4);
    ah_keys_hash(key, hash);
    char prefix[16], created[24];
    snprintf(prefix, sizeof prefix, "%.10s", key);
    snprintf(created, sizeof created, "%lld", (long long)ah_wall_ms());
    char *tags_s = tags ? json_dumps(tags, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    const char *vals[] = {
        id, hash, prefix, owner, tags_s ? tags_s : "{}", created, ah_key_role_name(role)};
    ah_err_t rc = AH_E_OK;
    if (db.pg) {
        PGresult *r = pg_run(db.pg,
                             "INSERT INTO ahorro_keys(id, hash, prefix, owner, tags, created_ms, "
                             "role) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                             7, vals, PGRES_COMMAND_OK);
        rc = r ? AH_E_OK : AH_E_DB;
        PQclear(r);
    } else {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db.lite,
                               "INSERT INTO keys(id, hash, prefix, owner, tags, created_ms, role) "
                               "VALUES (?,?,?,?,?,?,?)",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = AH_E_DB;
        } else {
            for (int i = 0; i < 7; i++)
                sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) {
                ah_error("keys: %s", sqlite3_errmsg(db.lite));
                rc = AH_E_DB;
            }
        }
        sqlite3_finalize(st);
    }
    if (rc == AH_E_OK) {
        *key_out = ah_strdup(key);
        *id_out = ah_strdup(id);
    }
    free(tags_s);
    return rc;
}

static ah_err_t lite_lookup(sqlite3 *db, const char *column, const char *value, ah_key_t *out)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT id, owner, tags, revoked_ms, role FROM keys WHERE %s = ?",
             column);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    ah_err_t rc = AH_E_NOTFOUND;
    if (s == SQLITE_ROW) {
        key_fill(out, (const char *)sqlite3_column_text(st, 0),
                 (const char *)sqlite3_column_text(st, 1), (const char *)sqlite3_column_text(st, 2),
                 sqlite3_column_type(st, 3) != SQLITE_NULL,
                 (const char *)sqlite3_column_text(st, 4));
        rc = AH_E_OK;
    } else if (s != SQLITE_DONE) {
        rc = AH_E_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

/* column is "hash" or "id" (fixed text, never the caller's). */
static ah_err_t lookup_by(ah_dbh_t db, const char *column, const char *value, ah_key_t *out)
{
    memset(out, 0, sizeof *out);
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    return db.pg ? pg_lookup(db.pg, column, value, out) : lite_lookup(db.lite, column, value, out);
}

ah_err_t ah_keys_lookup(ah_dbh_t db, const char *token, ah_key_t *out)
{
    char hash[AH_KEY_HASH_HEX];
    ah_keys_hash(token, hash);
    return lookup_by(db, "hash", hash, out);
}

ah_err_t ah_keys_lookup_id(ah_dbh_t db, const char *id, ah_key_t *out)
{
    if (strlen(id) >= AH_KEY_ID_LEN) {
        memset(out, 0, sizeof *out);
        return AH_E_NOTFOUND;
    }
    return lookup_by(db, "id", id, out);
}

/* A listed key (tags: JSON text; revoked_ms: NULL when live). */
static json_t *key_json(const char *id, const char *prefix, const char *owner, const char *tags,
                        long long created_ms, const char *revoked_ms, const char *role)
{
    json_t *t = tags ? json_loads(tags, 0, NULL) : NULL;
    json_t *k = json_pack("{s:s,s:s,s:s,s:o,s:I,s:s}", "id", id ? id : "", "prefix",
                          prefix ? prefix : "", "owner", owner ? owner : "", "tags",
                          json_is_object(t) ? t : (json_decref(t), json_object()), "created_ms",
                          (json_int_t)created_ms, "role", role ? role : "api");
    if (revoked_ms)
        json_object_set_new(k, "revoked_ms", json_integer(strtoll(revoked_ms, NULL, 10)));
    return k;
}

ah_err_t ah_keys_list(ah_dbh_t db, json_t **out)
{
    static const char sql[] = "SELECT id, prefix, owner, tags, created_ms, revoked_ms, role "
                              "FROM %s ORDER BY created_ms";
    char q[160];
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    json_t *arr = json_array();
    if (db.pg) {
        snprintf(q, sizeof q, sql, "ahorro_keys");
        PGresult *r = pg_run(db.pg, q, 0, NULL, PGRES_TUPLES_OK);
        if (!r) {
            json_decref(arr);
            return AH_E_DB;
        }
        for (int i = 0; i < PQntuples(r); i++)
            json_array_append_new(arr, key_json(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                                PQgetvalue(r, i, 2), PQgetvalue(r, i, 3),
                                                strtoll(PQgetvalue(r, i, 4), NULL, 10),
                                                PQgetisnull(r, i, 5) ? NULL : PQgetvalue(r, i, 5),
                                                PQgetvalue(r, i, 6)));
        PQclear(r);
        *out = arr;
        return AH_E_OK;
    }
    sqlite3_stmt *st = NULL;
    snprintf(q, sizeof q, sql, "keys");
    if (sqlite3_prepare_v2(db.lite, q, -1, &st, NULL) != SQLITE_OK) {
        json_decref(arr);
        return AH_E_DB;
    }
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, key_json((const char *)sqlite3_column_text(st, 0),
                                            (const char *)sqlite3_column_text(st, 1),
                                            (const char *)sqlite3_column_text(st, 2),
                                            (const char *)sqlite3_column_text(st, 3),
                                            sqlite3_column_int64(st, 4),
                                            (const char *)sqlite3_column_text(st, 5),
                                            (const char *)sqlite3_column_text(st, 6)));
    sqlite3_finalize(st);
    *out = arr;
    return AH_E_OK;
}

ah_err_t ah_keys_revoke(ah_dbh_t db, const char *id)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)ah_wall_ms());
    if (db.pg_wanted && !db.pg)
        return AH_E_DB;
    if (db.pg) {
        const char *vals[] = {now, id};
        PGresult *r = pg_run(db.pg,
                             "UPDATE ahorro_keys SET revoked_ms = $1 WHERE id = $2 AND "
                             "revoked_ms IS NULL",
                             2, vals, PGRES_COMMAND_OK);
        if (!r)
            return AH_E_DB;
        long changed = strtol(PQcmdTuples(r), NULL, 10); /* "" or a count */
        PQclear(r);
        return changed ? AH_E_OK : AH_E_NOTFOUND;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db.lite,
                           "UPDATE keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL", -1,
                           &st, NULL) != SQLITE_OK)
        return AH_E_DB;
    sqlite3_bind_text(st, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return AH_E_DB;
    return sqlite3_changes(db.lite) ? AH_E_OK : AH_E_NOTFOUND;
}
