/* labels.c - reading labelled routing outcomes (see labels.h).
 *
 * A file is read whole (bounded by AH_LABELS_MAX_FILE) and parsed in memory:
 * CSV by a small RFC 4180 record parser, JSONL line by line with jansson.
 * Rows of a file are appended only when the whole file parsed, so a bad file
 * leaves the set as it was. */
#include "route/labels.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/buf.h"

/* Bytes of a JSONL line, and of a label file path shown in errors. */
#define LABELS_MAX_LINE (4u << 20)

void ah_labels_init(ah_labels_t *l)
{
    memset(l, 0, sizeof *l);
}

void ah_labels_free(ah_labels_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        ah_free(l->rows[i].prompt);
    for (size_t i = 0; i < l->ngroups; i++)
        ah_free(l->groups[i]);
    ah_free(l->rows);
    ah_free(l->groups);
    ah_free(l->cheap_name);
    ah_free(l->strong_name);
    memset(l, 0, sizeof *l);
}

ah_err_t ah_csv_next(const char *p, size_t n, size_t *pos, char *scratch, const char **fields,
                     size_t *lens, size_t *nfields, size_t *line, size_t *at, const char *path,
                     char *err, size_t errlen)
{
    for (;;) {
        *at = *line;
        ah_err_t rc =
            ah_csv_record(p, n, pos, scratch, fields, lens, AH_LABELS_MAX_FIELDS, nfields, line);
        if (rc == AH_E_OK && *nfields == 1 && lens[0] == 0)
            continue; /* blank line */
        if (rc && rc != AH_E_NOTFOUND)
            ah_err_printf(err, errlen, "%s:%zu: %s", path, *at,
                          rc == AH_E_TOOBIG ? "too many fields or a field too long"
                                            : "malformed CSV record");
        return rc;
    }
}

ah_err_t ah_csv_record(const char *p, size_t n, size_t *pos, char *scratch, const char **fields,
                       size_t *lens, size_t maxfields, size_t *nfields, size_t *line)
{
    size_t i = *pos, out = 0, nf = 0;
    if (i >= n)
        return AH_E_NOTFOUND;
    for (;;) {
        if (nf >= maxfields)
            return AH_E_TOOBIG;
        size_t start = out;
        if (i < n && p[i] == '"') {
            i++;
            for (;;) {
                if (i >= n)
                    return AH_E_PARSE; /* unterminated quoted field */
                if (p[i] == '"') {
                    if (i + 1 < n && p[i + 1] == '"') {
                        scratch[out++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (p[i] == '\n' && line)
                    (*line)++;
                scratch[out++] = p[i++];
                if (out - start > AH_LABELS_MAX_FIELD)
                    return AH_E_TOOBIG;
            }
            if (i < n && p[i] != ',' && p[i] != '\n' && !(p[i] == '\r'))
                return AH_E_PARSE; /* text after a closing quote */
        } else {
            while (i < n && p[i] != ',' && p[i] != '\n' && p[i] != '\r') {
                if (p[i] == '"')
                    return AH_E_PARSE; /* a quote inside an unquoted field */
                scratch[out++] = p[i++];
                if (out - start > AH_LABELS_MAX_FIELD)
                    return AH_E_TOOBIG;
            }
        }
        fields[nf] = scratch + start;
        lens[nf] = out - start;
        nf++;
        if (i < n && p[i] == ',') {
            i++;
            continue;
        }
        if (i < n && p[i] == '\r')
            i++;
        if (i < n && p[i] == '\n') {
            i++;
            if (line)
                (*line)++;
        } else if (i < n) {
            return AH_E_PARSE; /* a lone CR */
        }
        break;
    }
    *pos = i;
    *nfields = nf;
    return AH_E_OK;
}

/* True/False, true/false, 1/0; -1 otherwise. */
static int parse_bool(const char *s, size_t n)
{
    if ((n == 4 && strncasecmp(s, "true", 4) == 0) || (n == 1 && s[0] == '1'))
        return 1;
    if ((n == 5 && strncasecmp(s, "false", 5) == 0) || (n == 1 && s[0] == '0'))
        return 0;
    return -1;
}

static unsigned group_of(ah_labels_t *l, const char *name, size_t n)
{
    for (size_t i = 0; i < l->ngroups; i++)
        if (strlen(l->groups[i]) == n && memcmp(l->groups[i], name, n) == 0)
            return (unsigned)i;
    l->groups = ah_realloc(l->groups, (l->ngroups + 1) * sizeof *l->groups);
    l->groups[l->ngroups] = ah_strndup(name, n);
    return (unsigned)l->ngroups++;
}

/* The file's base name without directory and extension. */
static void base_name(const char *path, const char **b, size_t *n)
{
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    const char *dot = strrchr(s, '.');
    *b = s;
    *n = dot && dot > s ? (size_t)(dot - s) : strlen(s);
}

static int has_ext(const char *path, const char *ext)
{
    size_t lp = strlen(path), le = strlen(ext);
    return lp >= le && strcasecmp(path + lp - le, ext) == 0;
}

/* Rows parsed from one file, appended to l only on success. */
typedef struct pending {
    ah_label_row_t *rows;
    size_t n, cap;
} pending_t;

static ah_err_t pending_add(pending_t *p, size_t total, const char *text, size_t len, int cheap,
                            int strong, unsigned group)
{
    if (total + p->n >= AH_LABELS_MAX_ROWS)
        return AH_E_TOOBIG;
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->rows = ah_realloc(p->rows, p->cap * sizeof *p->rows);
    }
    ah_label_row_t *r = &p->rows[p->n++];
    r->prompt = ah_strndup(text, len);
    r->len = len;
    r->cheap_ok = (unsigned char)cheap;
    r->strong_ok = (unsigned char)strong;
    r->group = group;
    return AH_E_OK;
}

static void pending_drop(pending_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        ah_free(p->rows[i].prompt);
    ah_free(p->rows);
}

static void pending_commit(ah_labels_t *l, pending_t *p)
{
    if (l->n + p->n > l->cap) {
        l->cap = l->n + p->n;
        l->rows = ah_realloc(l->rows, l->cap * sizeof *l->rows);
    }
    memcpy(l->rows + l->n, p->rows, p->n * sizeof *p->rows);
    l->n += p->n;
    ah_free(p->rows);
}

static int find_col(const char **f, const size_t *lens, size_t nf, const char *name)
{
    for (size_t i = 0; i < nf; i++)
        if (strlen(name) == lens[i] && memcmp(f[i], name, lens[i]) == 0)
            return (int)i;
    return -1;
}

static ah_err_t load_csv(ah_labels_t *l, const char *path, const char *data, size_t n,
                         const char *cheap_col, const char *strong_col, pending_t *pend, char *err,
                         size_t errlen)
{
    char *scratch = ah_malloc(n + 1);
    const char *f[AH_LABELS_MAX_FIELDS];
    size_t lens[AH_LABELS_MAX_FIELDS], nf = 0, pos = 0, line = 1;
    ah_err_t rc;
    const char *b;
    size_t bn;
    base_name(path, &b, &bn);
    if (bn > 5 && memcmp(b, "mmlu_", 5) == 0) { /* the subject, not the benchmark's prefix */
        b += 5;
        bn -= 5;
    }
    unsigned group = group_of(l, b, bn);
    rc = ah_csv_record(data, n, &pos, scratch, f, lens, AH_LABELS_MAX_FIELDS, &nf, &line);
    if (rc) {
        ah_err_printf(err, errlen, "%s:1: %s", path,
                      rc == AH_E_NOTFOUND ? "empty file" : "malformed header");
        rc = rc == AH_E_NOTFOUND ? AH_E_PARSE : rc;
        goto out;
    }
    int pc = find_col(f, lens, nf, "prompt");
    int cc = cheap_col ? find_col(f, lens, nf, cheap_col) : 1;
    int sc = strong_col ? find_col(f, lens, nf, strong_col) : 2;
    if (pc < 0)
        pc = 0;
    if (cc < 0 || sc < 0 || (size_t)cc >= nf || (size_t)sc >= nf || cc == sc || pc == cc ||
        pc == sc) {
        ah_err_printf(err, errlen, "%s:1: no column %s", path,
                      cc < 0 || (size_t)cc >= nf ? (cheap_col ? cheap_col : "2 (cheap)")
                                                 : (strong_col ? strong_col : "3 (strong)"));
        rc = AH_E_PARSE;
        goto out;
    }
    if (!l->cheap_name) {
        l->cheap_name = ah_strndup(f[cc], lens[cc]);
        l->strong_name = ah_strndup(f[sc], lens[sc]);
    }
    for (;;) {
        size_t at;
        rc = ah_csv_next(data, n, &pos, scratch, f, lens, &nf, &line, &at, path, err, errlen);
        if (rc == AH_E_NOTFOUND) {
            rc = AH_E_OK;
            break;
        }
        if (rc)
            goto out;
        int cv = (size_t)cc < nf ? parse_bool(f[cc], lens[cc]) : -1;
        int sv = (size_t)sc < nf ? parse_bool(f[sc], lens[sc]) : -1;
        if ((size_t)pc >= nf || cv < 0 || sv < 0) {
            ah_err_printf(err, errlen, "%s:%zu: expected a prompt and two True/False values", path,
                          at);
            rc = AH_E_PARSE;
            goto out;
        }
        if ((rc = pending_add(pend, l->n, f[pc], lens[pc], cv, sv, group))) {
            ah_err_printf(err, errlen, "%s:%zu: more than %u rows", path, at, AH_LABELS_MAX_ROWS);
            goto out;
        }
    }
out:
    ah_free(scratch);
    return rc;
}

static int json_flag(json_t *v)
{
    if (json_is_boolean(v))
        return json_is_true(v);
    if (json_is_integer(v) && (json_integer_value(v) == 0 || json_integer_value(v) == 1))
        return (int)json_integer_value(v);
    return -1;
}

/* The user text of chat messages, joined by newlines. */
static void user_text(json_t *msgs, ah_buf_t *b)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *c = json_object_get(m, "content");
        if (!role || strcmp(role, "user") != 0)
            continue;
        if (json_is_string(c)) {
            if (b->len)
                ah_buf_append(b, "\n", 1);
            ah_buf_append(b, json_string_value(c), json_string_length(c));
        } else if (json_is_array(c)) {
            size_t j;
            json_t *part;
            json_array_foreach(c, j, part)
            {
                json_t *t = json_object_get(part, "text");
                if (!json_is_string(t))
                    continue;
                if (b->len)
                    ah_buf_append(b, "\n", 1);
                ah_buf_append(b, json_string_value(t), json_string_length(t));
            }
        }
    }
}

static ah_err_t load_jsonl(ah_labels_t *l, const char *path, const char *data, size_t n,
                           pending_t *pend, char *err, size_t errlen)
{
    const char *b;
    size_t bn;
    base_name(path, &b, &bn);
    unsigned file_group = group_of(l, b, bn);
    size_t line = 0;
    ah_err_t rc = AH_E_OK;
    for (size_t pos = 0; pos < n;) {
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - data) : n, len = end - pos;
        const char *s = data + pos;
        pos = nl ? end + 1 : n;
        line++;
        while (len && (s[len - 1] == '\r' || s[len - 1] == ' '))
            len--;
        if (len == 0)
            continue;
        if (len > LABELS_MAX_LINE) {
            ah_err_printf(err, errlen, "%s:%zu: line longer than %u bytes", path, line,
                          LABELS_MAX_LINE);
            return AH_E_TOOBIG;
        }
        json_error_t je;
        json_t *o = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
        if (!json_is_object(o)) {
            ah_err_printf(err, errlen, "%s:%zu: %s", path, line, o ? "not a JSON object" : je.text);
            json_decref(o);
            return AH_E_PARSE;
        }
        int cv = json_flag(json_object_get(o, "cheap_ok"));
        int sv = json_flag(json_object_get(o, "strong_ok"));
        json_t *pr = json_object_get(o, "prompt"), *msgs = json_object_get(o, "messages");
        json_t *g = json_object_get(o, "group");
        if (!g)
            g = json_object_get(o, "subject");
        ah_buf_t text;
        ah_buf_init(&text, AH_LABELS_MAX_FIELD);
        if (json_is_string(pr))
            ah_buf_append(&text, json_string_value(pr), json_string_length(pr));
        else if (json_is_array(msgs))
            user_text(msgs, &text);
        if (cv < 0 || sv < 0 || (!json_is_string(pr) && !json_is_array(msgs))) {
            ah_err_printf(err, errlen,
                          "%s:%zu: expected {\"prompt\" or \"messages\", \"cheap_ok\", "
                          "\"strong_ok\"}",
                          path, line);
            rc = AH_E_PARSE;
        } else {
            unsigned grp = json_is_string(g) ? group_of(l, json_string_value(g),
                                                        strnlen(json_string_value(g), 256))
                                             : file_group;
            rc = pending_add(pend, l->n, text.data ? text.data : "", text.len, cv, sv, grp);
            if (rc)
                ah_err_printf(err, errlen, "%s:%zu: more than %u rows", path, line,
                              AH_LABELS_MAX_ROWS);
        }
        ah_buf_free(&text);
        json_decref(o);
        if (rc)
            return rc;
    }
    return AH_E_OK;
}

ah_err_t ah_labels_load(ah_labels_t *l, const char *path, const char *cheap_col,
                        const char *strong_col, char *err, size_t errlen)
{
    char *data = NULL;
    size_t n = 0;
    ah_err_t rc = ah_buf_read_file(path, AH_LABELS_MAX_FILE, &data, &n, err, errlen);
    if (rc)
        return rc;
    pending_t pend = {0};
    size_t ngroups = l->ngroups;
    if (has_ext(path, ".csv"))
        rc = load_csv(l, path, data, n, cheap_col, strong_col, &pend, err, errlen);
    else
        rc = load_jsonl(l, path, data, n, &pend, err, errlen);
    ah_free(data);
    if (rc) {
        pending_drop(&pend);
        while (l->ngroups > ngroups)
            ah_free(l->groups[--l->ngroups]);
        return rc;
    }
    pending_commit(l, &pend);
    return AH_E_OK;
}

static uint64_t hash64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

ah_err_t ah_labels_exclude(ah_labels_t *l, const char *path, size_t *removed, char *err,
                           size_t errlen)
{
    char *data = NULL;
    size_t n = 0, nh = 0, line = 0;
    ah_err_t rc = ah_buf_read_file(path, AH_LABELS_MAX_FILE, &data, &n, err, errlen);
    if (rc)
        return rc;
    /* Hashes of the excluded prompts (a 64-bit collision would drop one more
     * row: acceptable for an exclusion list). */
    uint64_t *h = NULL;
    size_t cap = 0;
    for (size_t pos = 0; pos < n;) {
        const char *nl = memchr(data + pos, '\n', n - pos);
        size_t end = nl ? (size_t)(nl - data) : n;
        const char *s = data + pos;
        size_t len = end - pos;
        pos = nl ? end + 1 : n;
        line++;
        if (len == 0 || (len == 1 && s[0] == '\r'))
            continue;
        json_error_t je;
        json_t *o = json_loadb(s, len, 0, &je);
        json_t *p = json_object_get(o, "eval_prompt");
        if (!p)
            p = json_object_get(o, "prompt");
        if (!json_is_string(p)) {
            ah_err_printf(err, errlen, "%s:%zu: expected {\"eval_prompt\" or \"prompt\"}", path,
                          line);
            json_decref(o);
            rc = AH_E_PARSE;
            goto out;
        }
        if (nh == cap) {
            cap = cap ? cap * 2 : 64;
            h = ah_realloc(h, cap * sizeof *h);
        }
        h[nh++] = hash64(json_string_value(p), json_string_length(p));
        json_decref(o);
    }
    if (nh)
        qsort(h, nh, sizeof *h, cmp_u64);
    size_t kept = 0, gone = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t x = hash64(l->rows[i].prompt, l->rows[i].len);
        if (nh && bsearch(&x, h, nh, sizeof *h, cmp_u64)) {
            ah_free(l->rows[i].prompt);
            gone++;
        } else {
            l->rows[kept++] = l->rows[i];
        }
    }
    l->n = kept;
    if (removed)
        *removed = gone;
out:
    ah_free(h);
    ah_free(data);
    return rc;
}
