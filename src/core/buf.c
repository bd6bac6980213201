/* buf.c - bounded growable buffers. */
#include "core/buf.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

void ah_buf_init(ah_buf_t *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

static ah_err_t reserve(ah_buf_t *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return AH_E_TOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return AH_E_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > ((size_t)-1) / 2 ? need : cap * 2;
    b->data = ah_realloc(b->data, cap);
    b->cap = cap;
    return AH_E_OK;
}

ah_err_t ah_buf_append(ah_buf_t *b, const void *data, size_t n)
{
    ah_err_t rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return AH_E_OK;
}

ah_err_t ah_buf_appends(ah_buf_t *b, const char *s)
{
    return ah_buf_append(b, s, strlen(s));
}

ah_err_t ah_buf_printf(ah_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return AH_E_INVAL;
    ah_err_t rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return AH_E_OK;
}

void ah_buf_consume(ah_buf_t *b, size_t n)
{
    if (n >= b->len) {
        ah_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

void ah_buf_reset(ah_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *ah_buf_steal(ah_buf_t *b, size_t *len)
{
    char *d = b->data;
    if (len)
        *len = b->len;
    if (!d)
        d = ah_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void ah_buf_free(ah_buf_t *b)
{
    ah_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

ah_err_t ah_buf_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                          size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        ah_err_printf(err, errlen, "%s: cannot open", path);
        return AH_E_IO;
    }
    ah_buf_t b;
    ah_buf_init(&b, max);
    char chunk[65536];
    size_t n;
    ah_err_t rc = AH_E_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if ((rc = ah_buf_append(&b, chunk, n)) != AH_E_OK) {
            ah_err_printf(err, errlen, "%s: larger than %zu bytes", path, max);
            break;
        }
    }
    if (rc == AH_E_OK && ferror(f)) {
        ah_err_printf(err, errlen, "%s: read error", path);
        rc = AH_E_IO;
    }
    fclose(f);
    if (rc) {
        ah_buf_free(&b);
        return rc;
    }
    *out = ah_buf_steal(&b, len);
    return AH_E_OK;
}
