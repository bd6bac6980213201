/* alloc.c - allocation with one out-of-memory policy: log and abort. */
#include "core/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "ahorro: out of memory allocating %zu bytes\n", n);
    abort();
}

void *ah_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *ah_calloc(size_t count, size_t size)
{
    if (ah_mul_overflows(count, size))
        oom((size_t)-1);
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        oom(count * size);
    return p;
}

void *ah_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *ah_strdup(const char *s)
{
    if (!s)
        return NULL;
    return ah_strndup(s, strlen(s));
}

char *ah_strndup(const char *s, size_t n)
{
    char *d = ah_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void ah_free(void *p)
{
    free(p);
}
