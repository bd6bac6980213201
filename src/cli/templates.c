/* templates.c - `ahorro templates add NAME FILE [--note TEXT]`, `list`,
 * `show NAME[@VERSION]`: the prompt templates requests name with prompt_id
 * (store/templates.h). FILE is JSON ({"messages": [...]}) or plain text,
 * which becomes one system message. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "store/db.h"
#include "store/templates.h"

static int usage(void)
{
    fprintf(stderr, "usage: ahorro templates add NAME FILE [--note TEXT]\n"
                    "       ahorro templates list\n"
                    "       ahorro templates show NAME[@VERSION]\n");
    return 2;
}

static json_t *read_body(const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "ahorro templates: cannot open %s\n", path);
        return NULL;
    }
    ah_buf_t b;
    ah_buf_init(&b, AH_TEMPLATE_MAX_BYTES);
    char chunk[8192];
    size_t n;
    int too_big = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (ah_buf_append(&b, chunk, n)) {
            too_big = 1;
            break;
        }
    if (f != stdin)
        fclose(f);
    json_t *body = NULL;
    if (too_big)
        fprintf(stderr, "ahorro templates: %s is over %u bytes\n", path, AH_TEMPLATE_MAX_BYTES);
    else if (b.len && (body = json_loadb(b.data, b.len, 0, NULL)) && !json_is_object(body)) {
        json_decref(body);
        body = NULL;
        fprintf(stderr, "ahorro templates: %s: JSON templates are {\"messages\": [...]}\n", path);
    } else if (!body && b.len) {
        body =
            json_pack("{s:[{s:s,s:s%}]}", "messages", "role", "system", "content", b.data, b.len);
    } else if (!b.len) {
        fprintf(stderr, "ahorro templates: %s is empty\n", path);
    }
    ah_buf_free(&b);
    return body;
}

int ah_cli_templates(int argc, char **argv, const char *db_path)
{
    if (argc < 1)
        return usage();
    sqlite3 *db = NULL;
    int rc = 0;
    if (ah_db_open(db_path, &db))
        return 1;
    if (strcmp(argv[0], "add") == 0 && (argc == 3 || argc == 5)) {
        const char *note = NULL;
        if (argc == 5) {
            if (strcmp(argv[3], "--note")) {
                rc = usage();
                goto out;
            }
            note = argv[4];
        }
        json_t *body = read_body(argv[2]);
        char err[300];
        int version = 0;
        if (!body)
            rc = 1;
        else if (ah_template_put(db, argv[1], body, note, &version, err, sizeof err)) {
            fprintf(stderr, "ahorro templates: %s\n", err);
            rc = 1;
        } else {
            printf("%s@%d\n", argv[1], version);
        }
        json_decref(body);
    } else if (strcmp(argv[0], "list") == 0 && argc == 1) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db,
                               "SELECT name, MAX(version), COUNT(*), length(body), "
                               "COALESCE(note, '') FROM templates GROUP BY name ORDER BY name",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = 1;
            goto out;
        }
        printf("%-32s %8s %9s %8s  %s\n", "name", "latest", "versions", "bytes", "note");
        while (sqlite3_step(st) == SQLITE_ROW)
            printf("%-32s %8d %9d %8d  %s\n", (const char *)sqlite3_column_text(st, 0),
                   sqlite3_column_int(st, 1), sqlite3_column_int(st, 2), sqlite3_column_int(st, 3),
                   (const char *)sqlite3_column_text(st, 4));
        sqlite3_finalize(st);
    } else if (strcmp(argv[0], "show") == 0 && argc == 2) {
        char name[AH_TEMPLATE_MAX_NAME + 1];
        int version = 0, got = 0;
        json_t *body = NULL;
        if (ah_template_ref(argv[1], name, &version)) {
            fprintf(stderr, "ahorro templates: '%s' is not NAME or NAME@VERSION\n", argv[1]);
            rc = 2;
        } else if (ah_template_get(db, name, version, &body, &got)) {
            fprintf(stderr, "ahorro templates: no template %s\n", argv[1]);
            rc = 1;
        } else {
            json_object_set_new(body, "name", json_string(name));
            json_object_set_new(body, "version", json_integer(got));
            char *s = json_dumps(body, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
            printf("%s\n", s ? s : "{}");
            free(s);
        }
        json_decref(body);
    } else {
        rc = usage();
    }
out:
    sqlite3_close(db);
    return rc;
}
