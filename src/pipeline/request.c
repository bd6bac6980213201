/* request.c - lifetime of the canonical request. */
#include "pipeline/request.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cache/store.h"
#include "core/alloc.h"
#include "core/clock.h"

/* Request ids must be unique, not secret: a per-thread splitmix64 sequence
 * seeded once from the system's CSPRNG (RAND_bytes per request cost ~2% of
 * the gateway's CPU). 96 bits: 64 from the sequence, 32 from the seed. */
static _Thread_local uint64_t id_state;
static _Thread_local uint32_t id_salt;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

ah_request_t *ah_request_new(ah_api_t api, ah_op_t op)
{
    ah_request_t *r = ah_calloc(1, sizeof *r);
    ah_arena_init(&r->arena);
    r->api = api;
    r->op = op;
    r->t_start_us = ah_now_us();
    r->wall_ms = ah_wall_ms();
    if (!id_salt) {
        unsigned char seed[12];
        if (RAND_bytes(seed, sizeof seed) != 1)
            memset(seed, 0x5a, sizeof seed);
        memcpy(&id_state, seed, 8);
        memcpy(&id_salt, seed + 8, 4);
        id_salt |= 1;
    }
    snprintf(r->id, sizeof r->id, "req_%016llx%08x", (unsigned long long)splitmix64(&id_state),
             (unsigned)id_salt);
    return r;
}

void ah_request_free(ah_request_t *r)
{
    if (!r)
        return;
    json_decref(r->body);
    json_decref(r->raw);
    json_decref(r->tags);
    json_decref(r->answer);
    ah_cache_entry_release(r->cache_hit);
    ah_arena_free(&r->arena);
    ah_free(r);
}

int ah_request_fail(ah_request_t *r, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...)
{
    if (r->fail.status)
        return r->fail.status;
    r->fail.status = status;
    r->fail.type = type;
    r->fail.code = code;
    r->fail.param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->fail.message, sizeof r->fail.message, fmt, ap);
    va_end(ap);
    return status;
}
