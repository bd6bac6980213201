/* keys.c - `ahorro keys create --owner O [--tags k=v,...] [--role api|viewer]`, `list`,
 * `revoke ID`. A viewer key reads the admin API and the dashboard only. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/limits.h"
#include "store/db.h"
#include "store/keys.h"
#include "store/pg.h"

static json_t *parse_tags(const char *s)
{
    json_t *tags = json_object();
    char *copy = ah_strdup(s), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1] || strlen(eq + 1) > AH_MAX_TAG_BYTES ||
            (size_t)(eq - tok) > AH_MAX_TAG_BYTES) {
            json_decref(tags);
            tags = NULL;
            break;
        }
        *eq = '\0';
        json_object_set_new(tags, tok, json_string(eq + 1));
    }
    ah_free(copy);
    if (tags && json_object_size(tags) > AH_MAX_TAGS) {
        json_decref(tags);
        tags = NULL;
    }
    return tags;
}

int ah_cli_keys(int argc, char **argv, const ah_config_t *cfg)
{
    if (argc < 1) {
        fprintf(stderr, "usage: ahorro keys create --owner OWNER [--tags k=v,...] "
                        "[--role api|viewer] [--json]\n"
                        "       ahorro keys list\n       ahorro keys revoke KEY_ID\n");
        return 2;
    }
    /* Keys live with the ledger: in PostgreSQL when it is configured. */
    ah_dbh_t db = {0};
    if (cfg->ledger.url) {
        char err[512];
        db.pg_wanted = 1;
        db.pg = ah_pg_connect(cfg->ledger.url, cfg->ledger.timeout_ms, err, sizeof err);
        if (!db.pg || ah_pg_migrate(db.pg, err, sizeof err)) {
            fprintf(stderr, "ahorro keys: PostgreSQL: %s\n", err);
            PQfinish(db.pg);
            return 1;
        }
    } else if (ah_db_open(cfg->db_path, &db.lite)) {
        return 1;
    }
    int rc = 0;
    if (strcmp(argv[0], "create") == 0) {
        const char *owner = NULL, *tags_s = NULL, *role_s = "api";
        ah_key_role_t role;
        int as_json = 0;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--owner") == 0 && i + 1 < argc)
                owner = argv[++i];
            else if (strcmp(argv[i], "--tags") == 0 && i + 1 < argc)
                tags_s = argv[++i];
            else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc)
                role_s = argv[++i];
            else if (strcmp(argv[i], "--json") == 0)
                as_json = 1;
            else {
                fprintf(stderr, "ahorro keys create: unexpected argument '%s'\n", argv[i]);
                rc = 2;
                goto out;
            }
        }
        if (!owner || !*owner) {
            fprintf(stderr, "ahorro keys create: --owner is required\n");
            rc = 2;
            goto out;
        }
        if (ah_key_role_parse(role_s, &role)) {
            fprintf(stderr, "ahorro keys create: --role must be api (model calls, the default) or "
                            "viewer (reads the admin API and the dashboard)\n");
            rc = 2;
            goto out;
        }
        json_t *tags = tags_s ? parse_tags(tags_s) : json_object();
        if (!tags) {
            fprintf(stderr, "ahorro keys create: --tags must be k=v,k=v (at most %d tags)\n",
                    AH_MAX_TAGS);
            rc = 2;
            goto out;
        }
        char *key = NULL, *id = NULL;
        if (ah_keys_create(db, owner, tags, role, &key, &id)) {
            rc = 1;
        } else if (as_json) {
            json_t *o = json_pack("{s:s,s:s,s:s,s:O,s:s}", "id", id, "key", key, "owner", owner,
                                  "tags", tags, "role", role_s);
            char *s = json_dumps(o, JSON_COMPACT);
            printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            printf("%s\n", key);
            fprintf(stderr, "created %s (%s) for %s; the key is shown only once\n", id, role_s,
                    owner);
        }
        ah_free(key);
        ah_free(id);
        json_decref(tags);
    } else if (strcmp(argv[0], "list") == 0) {
        json_t *list = NULL;
        if (ah_keys_list(db, &list)) {
            rc = 1;
            goto out;
        }
        size_t i;
        json_t *k;
        printf("%-22s %-12s %-20s %-8s %-6s %s\n", "ID", "PREFIX", "OWNER", "STATUS", "ROLE",
               "TAGS");
        json_array_foreach(list, i, k)
        {
            char *tags = json_dumps(json_object_get(k, "tags"), JSON_COMPACT | JSON_SORT_KEYS);
            printf("%-22s %-12s %-20s %-8s %-6s %s\n", json_string_value(json_object_get(k, "id")),
                   json_string_value(json_object_get(k, "prefix")),
                   json_string_value(json_object_get(k, "owner")),
                   json_object_get(k, "revoked_ms") ? "revoked" : "active",
                   json_string_value(json_object_get(k, "role")), tags ? tags : "{}");
            free(tags);
        }
        json_decref(list);
    } else if (strcmp(argv[0], "revoke") == 0 && argc == 2) {
        ah_err_t e = ah_keys_revoke(db, argv[1]);
        if (e) {
            fprintf(stderr, "ahorro keys revoke: %s\n",
                    e == AH_E_NOTFOUND ? "no such live key" : "database error");
            rc = 1;
        } else {
            printf("revoked %s\n", argv[1]);
        }
    } else {
        fprintf(stderr, "ahorro keys: unknown command '%s'\n", argv[0]);
        rc = 2;
    }
out:
    sqlite3_close(db.lite);
    PQfinish(db.pg);
    return rc;
}
