/* templates.c - named prompt templates with versions (see templates.h). */
#include "store/templates.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"

/* Longest variable name inside {{ }}. */
#define VAR_MAX_NAME 64

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AH_TEMPLATE_MAX_NAME)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.' || *p == '/'))
            return 0;
    return 1;
}

static int body_ok(const json_t *body, char *err, size_t errlen)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        snprintf(err, errlen, "a template is {\"messages\": [...]} with at least one message");
        return 0;
    }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = json_object_get(m, "content");
        if (!role || (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") &&
                      strcmp(role, "assistant"))) {
            snprintf(err, errlen, "messages[%zu].role must be system, developer, user or assistant",
                     i);
            return 0;
        }
        if (!json_is_string(c)) {
            snprintf(err, errlen, "messages[%zu].content must be a string", i);
            return 0;
        }
    }
    return 1;
}

ah_err_t ah_template_put(sqlite3 *db, const char *name, const json_t *body, const char *note,
                         int *version, char *err, size_t errlen)
{
    if (!name_ok(name)) {
        snprintf(err, errlen,
                 "a template name is 1 to %d of letters, digits, '-', '_', '.' and '/'",
                 AH_TEMPLATE_MAX_NAME);
        return AH_E_INVAL;
    }
    if (!body_ok(body, err, errlen))
        return AH_E_INVAL;
    json_t *keep = json_pack("{s:O}", "messages", json_object_get(body, "messages"));
    char *text = json_dumps(keep, JSON_COMPACT);
    json_decref(keep);
    if (!text || strlen(text) > AH_TEMPLATE_MAX_BYTES) {
        free(text);
        snprintf(err, errlen, "a template is at most %u bytes", AH_TEMPLATE_MAX_BYTES);
        return AH_E_INVAL;
    }
    ah_err_t rc = AH_E_DB;
    sqlite3_stmt *st = NULL;
    /* one statement: the next version is taken inside the insert */
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO templates(name, version, body, note, created_ms) "
                           "SELECT ?1, COALESCE(MAX(version), 0) + 1, ?2, ?3, ?4 FROM templates "
                           "WHERE name = ?1 RETURNING version",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
    if (note)
        sqlite3_bind_text(st, 3, note, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, ah_wall_ms());
    if (sqlite3_step(st) == SQLITE_ROW) {
        *version = sqlite3_column_int(st, 0);
        rc = AH_E_OK;
    }
out:
    if (rc)
        snprintf(err, errlen, "templates: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    free(text);
    return rc;
}

ah_err_t ah_template_get(sqlite3 *db, const char *name, int version, json_t **body, int *got)
{
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_NOTFOUND;
    *body = NULL;
    const char *sql = version > 0
                          ? "SELECT body, version FROM templates WHERE name = ?1 AND version = ?2"
                          : "SELECT body, version FROM templates WHERE name = ?1 "
                            "ORDER BY version DESC LIMIT 1";
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        ah_warn("templates: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (version > 0)
        sqlite3_bind_int(st, 2, version);
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        *body = text ? json_loads(text, 0, NULL) : NULL;
        *got = sqlite3_column_int(st, 1);
        rc = *body ? AH_E_OK : AH_E_PARSE;
    }
    sqlite3_finalize(st);
    return rc;
}

ah_err_t ah_template_ref(const char *ref, char *name, int *version)
{
    const char *at = strrchr(ref, '@');
    size_t n = at ? (size_t)(at - ref) : strlen(ref);
    *version = 0;
    if (n == 0 || n > AH_TEMPLATE_MAX_NAME)
        return AH_E_INVAL;
    memcpy(name, ref, n);
    name[n] = '\0';
    if (!name_ok(name))
        return AH_E_INVAL;
    if (at) {
        char *end = NULL;
        long v = strtol(at + 1, &end, 10);
        if (!at[1] || *end || v < 1 || v > 1000000)
            return AH_E_INVAL;
        *version = (int)v;
    }
    return AH_E_OK;
}

/* Append text with {{var}} filled from vars. */
static ah_err_t fill(const char *s, const json_t *vars, ah_buf_t *out, char *err, size_t errlen)
{
    for (;;) {
        const char *open = strstr(s, "{{");
        const char *close = open ? strstr(open + 2, "}}") : NULL;
        if (!close)
            return ah_buf_appends(out, s);
        ah_err_t rc = ah_buf_append(out, s, (size_t)(open - s));
        if (rc)
            return rc;
        const char *a = open + 2, *b = close;
        while (a < b && *a == ' ')
            a++;
        while (b > a && b[-1] == ' ')
            b--;
        char var[VAR_MAX_NAME + 1];
        size_t n = (size_t)(b - a);
        if (n == 0 || n > VAR_MAX_NAME) {
            snprintf(err, errlen, "a template placeholder is {{name}} with a name of 1 to %d bytes",
                     VAR_MAX_NAME);
            return AH_E_INVAL;
        }
        memcpy(var, a, n);
        var[n] = '\0';
        json_t *v = vars ? json_object_get(vars, var) : NULL;
        if (json_is_string(v))
            rc = ah_buf_append(out, json_string_value(v), json_string_length(v));
        else if (json_is_integer(v))
            rc = ah_buf_printf(out, "%lld", (long long)json_integer_value(v));
        else if (json_is_real(v))
            rc = ah_buf_printf(out, "%g", json_real_value(v));
        else {
            snprintf(err, errlen, "prompt_variables has no string or number '%s'", var);
            return AH_E_INVAL;
        }
        if (rc)
            return rc;
        s = close + 2;
    }
}

json_t *ah_template_render(const json_t *body, const json_t *vars, char *err, size_t errlen)
{
    json_t *out = json_array();
    json_t *msgs = json_object_get(body, "messages");
    size_t i;
    json_t *m;
    ah_buf_t b;
    ah_buf_init(&b, AH_TEMPLATE_MAX_BYTES * 4);
    json_array_foreach(msgs, i, m)
    {
        ah_buf_reset(&b);
        const char *c = json_string_value(json_object_get(m, "content"));
        ah_err_t rc = fill(c ? c : "", vars, &b, err, errlen);
        if (rc) {
            if (rc == AH_E_TOOBIG)
                snprintf(err, errlen, "the filled template is over %u bytes",
                         AH_TEMPLATE_MAX_BYTES * 4);
            json_decref(out);
            out = NULL;
            break;
        }
        json_array_append_new(out, json_pack("{s:O,s:s%}", "role", json_object_get(m, "role"),
                                             "content", b.data ? b.data : "", b.len));
    }
    ah_buf_free(&b);
    return out;
}
