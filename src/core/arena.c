/* arena.c - chunked bump allocator for request-scoped memory. */
#include "core/arena.h"

#include <stdalign.h>
#include <string.h>

#include "core/alloc.h"

#define ARENA_CHUNK 4096

struct ah_arena_chunk {
    ah_arena_chunk_t *next;
    alignas(max_align_t) char data[];
};

void ah_arena_init(ah_arena_t *a)
{
    a->head = NULL;
    a->used = a->cap = 0;
}

void *ah_arena_alloc(ah_arena_t *a, size_t n)
{
    const size_t align = alignof(max_align_t);
    size_t off = (a->used + align - 1) & ~(align - 1);
    if (!a->head || n > a->cap || off > a->cap - n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        ah_arena_chunk_t *c = ah_malloc(sizeof *c + cap);
        c->next = a->head;
        a->head = c;
        a->cap = cap;
        off = 0;
    }
    a->used = off + n;
    return a->head->data + off;
}

char *ah_arena_strndup(ah_arena_t *a, const char *s, size_t n)
{
    char *d = ah_arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ah_arena_strdup(ah_arena_t *a, const char *s)
{
    return s ? ah_arena_strndup(a, s, strlen(s)) : NULL;
}

void ah_arena_free(ah_arena_t *a)
{
    ah_arena_chunk_t *c = a->head;
    while (c) {
        ah_arena_chunk_t *next = c->next;
        ah_free(c);
        c = next;
    }
    ah_arena_init(a);
}
