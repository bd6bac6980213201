/* arena.h - a memory pool per request (h2o's h2o_mem_pool_t).
 *
 * Everything a request allocates for its own lifetime (ids, copied tag
 * strings, header values) comes from its arena and is released at once by
 * ah_arena_free when the request ends. Objects shared across requests are
 * never put in an arena. */
#ifndef AH_ARENA_H
#define AH_ARENA_H

#include <stddef.h>

typedef struct ah_arena_chunk ah_arena_chunk_t;

typedef struct ah_arena {
    ah_arena_chunk_t *head;
    size_t used; /* bytes used in head */
    size_t cap;  /* capacity of head */
} ah_arena_t;

/* An empty arena; no allocation until the first ah_arena_alloc. */
void ah_arena_init(ah_arena_t *a);
/* n bytes aligned for any type, valid until ah_arena_free. Never NULL. */
void *ah_arena_alloc(ah_arena_t *a, size_t n);
/* Copy of s in the arena (NULL stays NULL). */
char *ah_arena_strdup(ah_arena_t *a, const char *s);
/* Copy of n bytes of s, NUL-terminated, in the arena. */
char *ah_arena_strndup(ah_arena_t *a, const char *s, size_t n);
/* Release every allocation of the arena; it may be reused afterwards. */
void ah_arena_free(ah_arena_t *a);

#endif
