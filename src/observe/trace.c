/* trace.c - trace ids and stage times (see trace.h). */
#include "observe/trace.h"

#include <string.h>
#include <time.h>

#include "core/clock.h"

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: ids need only be unlikely to collide, not secret */
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* W3C: lower case only */
}

static int hex_bytes(const char *s, uint8_t *out, int n)
{
    int nonzero = 0;
    for (int i = 0; i < n; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
        nonzero |= out[i];
    }
    return nonzero != 0; /* all-zero ids are invalid */
}

int ah_traceparent_parse(const char *s, uint8_t trace_id[16], uint8_t parent_id[8], int *sampled)
{
    /* 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags> */
    uint8_t flags;
    if (!s || strlen(s) != 55 || strncmp(s, "00-", 3) != 0 || s[35] != '-' || s[52] != '-')
        return 0;
    if (!hex_bytes(s + 3, trace_id, 16) || !hex_bytes(s + 36, parent_id, 8))
        return 0;
    int hi = hex_nibble(s[53]), lo = hex_nibble(s[54]);
    if (hi < 0 || lo < 0)
        return 0;
    flags = (uint8_t)(hi << 4 | lo);
    *sampled = flags & 1;
    return 1;
}

void ah_trace_begin(ah_trace_t *t, const char *traceparent, double ratio, uint64_t *rng,
                    int64_t now_us)
{
    memset(t, 0, sizeof *t);
    int sampled = 0;
    if (ah_traceparent_parse(traceparent, t->trace_id, t->parent_id, &sampled)) {
        t->has_parent = 1;
    } else {
        uint64_t a = next_rand(rng), b = next_rand(rng);
        memcpy(t->trace_id, &a, 8);
        memcpy(t->trace_id + 8, &b, 8);
        sampled = ratio >= 1 || (double)(next_rand(rng) >> 11) / 9007199254740992.0 < ratio;
    }
    if (!sampled)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->on = 1;
    t->t0_us = now_us;
    t->wall_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec - (ah_now_us() - now_us) * 1000;
}

void ah_trace_enter(ah_trace_t *t, ah_span_id_t s)
{
    if (t->on && !t->span[s].start_us)
        t->span[s].start_us = ah_now_us();
}

int ah_trace_leave(ah_trace_t *t, ah_span_id_t s, int rc)
{
    if (t->on && t->span[s].start_us)
        t->span[s].end_us = ah_now_us();
    return rc;
}

void ah_trace_hex(const uint8_t *b, int n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < n; i++) {
        out[2 * i] = digits[b[i] >> 4];
        out[2 * i + 1] = digits[b[i] & 15];
    }
    out[2 * n] = '\0';
}

const char *ah_span_name(ah_span_id_t s)
{
    static const char *const names[AH_SPAN_N] = {
        "ahorro.auth",    "ahorro.attribute", "ahorro.guard", "ahorro.shape",
        "ahorro.summary", "ahorro.cache",     "ahorro.route", "upstream",
    };
    return s < AH_SPAN_N ? names[s] : "?";
}
