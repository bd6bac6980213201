/* keys.h - virtual keys: what applications present instead of provider keys.
 *
 * A key is "sk-ah-" + 40 random hex characters. Only its SHA-256 is stored
 * (with a short prefix for people to recognise it); the key itself is shown
 * once, at creation. A key maps to an owner and tags (JSON object), and has
 * a role: an "api" key calls models (the default); a "viewer" key may only
 * read the admin API and the dashboard (docs/dashboard.md). */
#ifndef AH_KEYS_H
#define AH_KEYS_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "core/error.h"
#include "store/db.h"

#define AH_KEY_ID_LEN 24
#define AH_KEY_HASH_HEX 65

/* What a key may do. Unknown is a role this build does not know (a newer
 * ahorro wrote it): such a key may do nothing, so a downgrade fails closed. */
typedef enum { AH_KEY_ROLE_API, AH_KEY_ROLE_VIEWER, AH_KEY_ROLE_UNKNOWN } ah_key_role_t;

typedef struct ah_key {
    char id[AH_KEY_ID_LEN];
    ah_key_role_t role;
    char *owner;  /* owned; free with ah_key_clear */
    json_t *tags; /* owned reference */
    int revoked;
} ah_key_t;

/* SHA-256 of token in lowercase hex (65 bytes with the NUL). */
void ah_keys_hash(const char *token, char out[AH_KEY_HASH_HEX]);

/* A role's name ("api", "viewer"); static. */
const char *ah_key_role_name(ah_key_role_t role);
/* Parse a role's name; AH_E_INVAL for anything but "api" and "viewer". */
ah_err_t ah_key_role_parse(const char *s, ah_key_role_t *out);

/* Create a key with a role (AH_KEY_ROLE_API or AH_KEY_ROLE_VIEWER).
 * *key_out (the secret, shown once) and *id_out are owned by the caller
 * (ah_free). tags may be NULL. */
ah_err_t ah_keys_create(ah_dbh_t db, const char *owner, json_t *tags, ah_key_role_t role,
                        char **key_out, char **id_out);
/* Look a presented token up. AH_E_NOTFOUND when unknown. out is cleared with
 * ah_key_clear. A revoked key is returned with revoked set. */
ah_err_t ah_keys_lookup(ah_dbh_t db, const char *token, ah_key_t *out);
/* The same by key id (the internal credential's "act as"). */
ah_err_t ah_keys_lookup_id(ah_dbh_t db, const char *id, ah_key_t *out);
/* All keys (without secrets or hashes) as a JSON array; new reference. */
ah_err_t ah_keys_list(ah_dbh_t db, json_t **out);
/* Revoke a key by id; AH_E_NOTFOUND when there is no such live key. */
ah_err_t ah_keys_revoke(ah_dbh_t db, const char *id);
void ah_key_clear(ah_key_t *k);

#endif
