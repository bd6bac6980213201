/* alloc.h - the one allocation wrapper and its out-of-memory policy.
 *
 * Policy: a gateway that cannot allocate a few hundred bytes cannot answer
 * anyone correctly, so these functions never return NULL: on failure they
 * log and abort(). Callers therefore never check for NULL. Every buffer that
 * grows with untrusted input is bounded elsewhere (ah_buf_t, limits.h), so
 * abort() here means the machine is out of memory, not that a client sent
 * something big. */
#ifndef AH_ALLOC_H
#define AH_ALLOC_H

#include <stddef.h>

/* malloc(n); never NULL. Free with ah_free. */
void *ah_malloc(size_t n);
/* calloc(count, size) with overflow check; never NULL. Free with ah_free. */
void *ah_calloc(size_t count, size_t size);
/* realloc(p, n); never NULL. */
void *ah_realloc(void *p, size_t n);
/* Copy of s (s may be NULL: returns NULL). Free with ah_free. */
char *ah_strdup(const char *s);
/* Copy of the first n bytes of s, NUL-terminated. Free with ah_free. */
char *ah_strndup(const char *s, size_t n);
/* free(p); p may be NULL. */
void ah_free(void *p);

/* True when a * b would overflow size_t (curl's "toobig" check). */
static inline int ah_mul_overflows(size_t a, size_t b)
{
    return b != 0 && a > (size_t)-1 / b;
}

#endif
