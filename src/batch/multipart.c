/* multipart.c - multipart/form-data (multipart.h).
 *
 * The body is a preamble, then parts each opened by "--boundary" CRLF, a
 * header block ended by an empty line, and the part's bytes, which end at
 * the next CRLF "--boundary"; "--boundary--" closes the body and an
 * epilogue may follow. Part bytes are found with memmem, so the parse is
 * linear in the body's size whatever the data holds. */
#include "batch/multipart.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 2046's bchars, space included (but not as the last character). */
static int bchar(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("'()+_,-./:=? ", c) != NULL); /* strchr finds the NUL too */
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* A parameter value at *s (a token, or a quoted-string with backslash
 * escapes) into out[outcap]; advances *s. 0, or -1 when too long or an
 * unterminated quote. */
static int param_value(const char **s, const char *end, char *out, size_t outcap)
{
    const char *p = *s;
    size_t n = 0;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p >= end)
                return -1;
            char c = *p++;
            if (c == '"')
                break;
            if (c == '\\' && p < end)
                c = *p++;
            if (n + 1 >= outcap)
                return -1;
            out[n++] = c;
        }
    } else {
        while (p < end && *p != ';' && !is_ws(*p)) {
            if (n + 1 >= outcap)
                return -1;
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    *s = p;
    return 0;
}

/* Walk "; key=value" parameters from s to end; for each, call back with
 * the key (not NUL-terminated) and its value. -1 when malformed. */
typedef int (*param_fn)(void *ctx, const char *key, size_t klen, const char *value);

static int each_param(const char *s, const char *end, param_fn fn, void *ctx)
{
    char value[AH_MULTIPART_MAX_NAME + 1];
    for (;;) {
        while (s < end && (is_ws(*s) || *s == ';'))
            s++;
        if (s >= end)
            return 0;
        const char *k = s;
        while (s < end && *s != '=' && *s != ';' && !is_ws(*s))
            s++;
        size_t klen = (size_t)(s - k);
        while (s < end && is_ws(*s))
            s++;
        if (s >= end || *s != '=') { /* a bare word: skip it */
            if (klen == 0)
                return -1;
            continue;
        }
        s++;
        while (s < end && is_ws(*s))
            s++;
        if (klen == 0 || param_value(&s, end, value, sizeof value))
            return -1;
        if (fn(ctx, k, klen, value))
            return -1;
    }
}

static int key_is(const char *k, size_t klen, const char *want)
{
    return klen == strlen(want) && strncasecmp(k, want, klen) == 0;
}

static int boundary_param(void *ctx, const char *k, size_t klen, const char *value)
{
    char *out = ctx;
    if (!key_is(k, klen, "boundary"))
        return 0;
    size_t n = strlen(value);
    if (n == 0 || n > AH_MULTIPART_MAX_BOUNDARY || value[n - 1] == ' ')
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!bchar(value[i]))
            return -1;
    memcpy(out, value, n + 1);
    return 0;
}

ah_err_t ah_multipart_boundary(const char *content_type, char out[AH_MULTIPART_MAX_BOUNDARY + 1])
{
    static const char type[] = "multipart/form-data";
    out[0] = '\0';
    if (!content_type)
        return AH_E_INVAL;
    while (is_ws(*content_type))
        content_type++;
    size_t tl = sizeof type - 1;
    if (strncasecmp(content_type, type, tl) != 0)
        return AH_E_INVAL;
    const char *s = content_type + tl;
    if (*s && *s != ';' && !is_ws(*s))
        return AH_E_INVAL;
    if (each_param(s, s + strlen(s), boundary_param, out) || !out[0])
        return AH_E_INVAL;
    return AH_E_OK;
}

static int disposition_param(void *ctx, const char *k, size_t klen, const char *value)
{
    ah_multipart_part_t *p = ctx;
    if (key_is(k, klen, "name")) {
        snprintf(p->name, sizeof p->name, "%s", value);
    } else if (key_is(k, klen, "filename")) {
        snprintf(p->filename, sizeof p->filename, "%s", value);
        p->has_filename = 1;
    }
    return 0;
}

/* One header line [s, end) of a part. -1 when malformed. */
static int part_header(ah_multipart_part_t *p, const char *s, const char *end)
{
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon || colon == s)
        return -1;
    size_t nlen = (size_t)(colon - s);
    const char *v = colon + 1;
    while (v < end && is_ws(*v))
        v++;
    const char *ve = end;
    while (ve > v && is_ws(ve[-1]))
        ve--;
    if (key_is(s, nlen, "Content-Disposition")) {
        static const char fd[] = "form-data";
        size_t fl = sizeof fd - 1;
        if ((size_t)(ve - v) < fl || strncasecmp(v, fd, fl) != 0 ||
            (v + fl < ve && v[fl] != ';' && !is_ws(v[fl])))
            return -1;
        return each_param(v + fl, ve, disposition_param, p);
    }
    if (key_is(s, nlen, "Content-Type")) {
        size_t n = (size_t)(ve - v);
        if (n > AH_MULTIPART_MAX_TYPE)
            return -1;
        memcpy(p->content_type, v, n);
        p->content_type[n] = '\0';
    }
    return 0; /* other headers (Content-Transfer-Encoding is deprecated by RFC 7578) */
}

ah_err_t ah_multipart_parse(const char *body, size_t len, const char *boundary,
                            ah_multipart_part_t *parts, int max, int *n, char *err, size_t errlen)
{
    char delim[2 + 2 + AH_MULTIPART_MAX_BOUNDARY + 1]; /* CRLF "--" boundary */
    size_t bl = boundary ? strlen(boundary) : 0;
    *n = 0;
    if (bl == 0 || bl > AH_MULTIPART_MAX_BOUNDARY) {
        ah_err_printf(err, errlen, "invalid multipart boundary");
        return AH_E_PARSE;
    }
    if (max > AH_MULTIPART_MAX_PARTS)
        max = AH_MULTIPART_MAX_PARTS;
    int dl = snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    const char *end = body + len;
    const char *p;
    /* the first delimiter may open the body, without the CRLF before it */
    if (len >= (size_t)dl - 2 && memcmp(body, delim + 2, (size_t)dl - 2) == 0) {
        p = body + dl - 2;
    } else {
        const char *d = memmem(body, len, delim, (size_t)dl);
        if (!d) {
            ah_err_printf(err, errlen, "the body has no multipart boundary");
            return AH_E_PARSE;
        }
        p = d + dl;
    }
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return AH_E_OK; /* the close delimiter; the epilogue is ignored */
        while (p < end && is_ws(*p))
            p++; /* transport padding */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            ah_err_printf(err, errlen, "malformed multipart delimiter line");
            return AH_E_PARSE;
        }
        p += 2;
        if (*n >= max) {
            ah_err_printf(err, errlen, "more than %d parts in the multipart body", max);
            return AH_E_TOOBIG;
        }
        ah_multipart_part_t *part = &parts[*n];
        memset(part, 0, sizeof *part);
        const char *hstart = p;
        for (;;) { /* header lines up to the empty one */
            size_t room = (size_t)(end - p);
            const char *eol = memmem(p, room, "\r\n", 2);
            if (!eol) {
                ah_err_printf(err, errlen, "unterminated multipart part headers");
                return AH_E_PARSE;
            }
            if ((size_t)(eol - hstart) > AH_MULTIPART_MAX_HEADER_BLOCK) {
                ah_err_printf(err, errlen, "a multipart part's headers exceed %d bytes",
                              AH_MULTIPART_MAX_HEADER_BLOCK);
                return AH_E_TOOBIG;
            }
            if (eol == p) {
                p += 2;
                break;
            }
            if (part_header(part, p, eol)) {
                ah_err_printf(err, errlen, "malformed multipart part header");
                return AH_E_PARSE;
            }
            p = eol + 2;
        }
        if (!part->name[0]) {
            ah_err_printf(err, errlen,
                          "a multipart part has no Content-Disposition: form-data; name=...");
            return AH_E_PARSE;
        }
        const char *d = memmem(p, (size_t)(end - p), delim, (size_t)dl);
        if (!d) {
            ah_err_printf(err, errlen, "the multipart body ends before its closing boundary");
            return AH_E_PARSE;
        }
        part->data = p;
        part->len = (size_t)(d - p);
        (*n)++;
        p = d + dl;
    }
}

const ah_multipart_part_t *ah_multipart_find(const ah_multipart_part_t *parts, int n,
                                             const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(parts[i].name, name) == 0)
            return &parts[i];
    return NULL;
}
