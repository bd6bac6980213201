/* request.c - lifetime of the canonical request. */
#include "pipeline/request.h"

#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"

ah_request_t *ah_request_new(ah_api_t api, ah_op_t op)
{
    ah_request_t *r = ah_calloc(1, sizeof *r);
    unsigned char rnd[12];
    ah_arena_init(&r->arena);
    r->api = api;
    r->op = op;
    r->t_start_us = ah_now_us();
    r->wall_ms = ah_wall_ms();
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd);
    int n = snprintf(r->id, sizeof r->id, "req_");
    for (size_t i = 0; i < sizeof rnd; i++)
        n += snprintf(r->id + n, sizeof r->id - (size_t)n, "%02x", rnd[i]);
    return r;
}

void ah_request_free(ah_request_t *r)
{
    if (!r)
        return;
    json_decref(r->body);
    json_decref(r->raw);
    json_decref(r->tags);
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
