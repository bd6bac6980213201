/* buf.h - a growable byte buffer with a hard size limit.
 *
 * Every buffer that holds untrusted or upstream data is an ah_buf_t with a
 * max: appending past it fails with AH_E_TOOBIG and leaves the buffer as it
 * was (curl's dynbuf). The data is always NUL-terminated for convenience. */
#ifndef AH_BUF_H
#define AH_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/error.h"

typedef struct ah_buf {
    char *data; /* owned; NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max; /* hard limit on len */
} ah_buf_t;

/* Initialise an empty buffer that may grow to max bytes. No allocation. */
void ah_buf_init(ah_buf_t *b, size_t max);
/* Append n bytes; AH_E_TOOBIG past max (buffer unchanged). */
ah_err_t ah_buf_append(ah_buf_t *b, const void *data, size_t n);
/* Append a NUL-terminated string. */
ah_err_t ah_buf_appends(ah_buf_t *b, const char *s);
/* Append printf-formatted text. */
ah_err_t ah_buf_printf(ah_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drop the first n bytes (n <= len). */
void ah_buf_consume(ah_buf_t *b, size_t n);
/* Empty the buffer, keeping its memory. */
void ah_buf_reset(ah_buf_t *b);
/* Hand the data to the caller (free with ah_free) and reset the buffer. */
char *ah_buf_steal(ah_buf_t *b, size_t *len);
/* Free the data; the buffer may be reused after ah_buf_init. */
void ah_buf_free(ah_buf_t *b);

/* The whole file at path, at most max bytes, into *out (NUL-terminated; free
 * with ah_free) and *len. AH_E_IO (cannot open, read error) or AH_E_TOOBIG
 * with "path: why" in err. */
ah_err_t ah_buf_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                          size_t errlen);

#endif
