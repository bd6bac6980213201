/* hash.h - FNV-1a, 64 bits: for keys that need only tell inputs apart
 * (not for anything an attacker may aim collisions at across tenants). */
#ifndef AH_HASH_H
#define AH_HASH_H

#include <stddef.h>
#include <stdint.h>

#define AH_FNV_OFFSET 0xcbf29ce484222325ULL
#define AH_FNV_PRIME 0x100000001b3ULL

/* h continued over p[0..n) (start with AH_FNV_OFFSET). */
static inline uint64_t ah_fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= AH_FNV_PRIME;
    }
    return h;
}

#endif
