/* local.c - the in-process state backend: a hash table of counters in
 * stripes, each stripe behind its own mutex (a counter is touched a few
 * times per request; a stripe's lock is held for a lookup and an add).
 * Expired counters are dropped when their bucket is next visited, and the
 * whole table is swept when it is full. */
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "state/state.h"

#define STRIPES 64
#define BUCKETS_PER_STRIPE 1024

typedef struct entry {
    struct entry *next;
    int64_t value;
    int64_t expires_ms; /* 0: never */
    char key[];
} entry_t;

typedef struct stripe {
    pthread_mutex_t lock;
    entry_t *buckets[BUCKETS_PER_STRIPE];
    size_t count;
} stripe_t;

typedef struct local {
    ah_state_t base;
    size_t max_per_stripe;
    stripe_t stripes[STRIPES];
} local_t;

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Drop the expired entries of one bucket chain. */
static void prune(stripe_t *st, entry_t **head, int64_t now)
{
    for (entry_t **p = head; *p;) {
        entry_t *e = *p;
        if (e->expires_ms && e->expires_ms <= now) {
            *p = e->next;
            ah_free(e);
            st->count--;
        } else {
            p = &e->next;
        }
    }
}

static int local_add_if(ah_state_t *s, const char *key, int64_t delta, int64_t limit,
                        int64_t expires_ms, int64_t *value)
{
    local_t *l = (local_t *)s;
    uint64_t h = hash(key);
    stripe_t *st = &l->stripes[h % STRIPES];
    entry_t **head = &st->buckets[(h / STRIPES) % BUCKETS_PER_STRIPE];
    int64_t now = ah_wall_ms();
    int added = 0;
    pthread_mutex_lock(&st->lock);
    prune(st, head, now);
    entry_t *e = *head;
    while (e && strcmp(e->key, key) != 0)
        e = e->next;
    if (!e && delta == 0) { /* a read of an absent counter */
        if (value)
            *value = 0;
        pthread_mutex_unlock(&st->lock);
        return 1;
    }
    if (!e) {
        if (st->count >= l->max_per_stripe) {
            for (size_t b = 0; b < BUCKETS_PER_STRIPE; b++)
                prune(st, &st->buckets[b], now);
        }
        if (st->count >= l->max_per_stripe) {
            if (value)
                *value = -1;
            pthread_mutex_unlock(&st->lock);
            return 0;
        }
        size_t n = strlen(key) + 1;
        e = ah_malloc(sizeof *e + n);
        memcpy(e->key, key, n);
        e->value = 0;
        e->expires_ms = expires_ms;
        e->next = *head;
        *head = e;
        st->count++;
    }
    if (delta <= 0 || (e->value <= limit && delta <= limit - e->value)) {
        e->value += delta;
        added = 1;
    }
    if (expires_ms > e->expires_ms)
        e->expires_ms = expires_ms;
    if (value)
        *value = e->value;
    pthread_mutex_unlock(&st->lock);
    return added;
}

/* Nothing to gain by deferring: an add here is a lock and a lookup. */
static int local_add_later(ah_state_t *s, const char *key, int64_t delta, int64_t expires_ms,
                           int64_t *value)
{
    local_add_if(s, key, delta, AH_STATE_NO_LIMIT, expires_ms, value);
    return 1;
}

static void local_free(ah_state_t *s)
{
    local_t *l = (local_t *)s;
    for (int i = 0; i < STRIPES; i++) {
        for (size_t b = 0; b < BUCKETS_PER_STRIPE; b++)
            for (entry_t *e = l->stripes[i].buckets[b], *next; e; e = next) {
                next = e->next;
                ah_free(e);
            }
        pthread_mutex_destroy(&l->stripes[i].lock);
    }
    ah_free(l);
}

static const ah_state_ops_t local_ops = {
    .name = "local", .add_if = local_add_if, .add_later = local_add_later, .free = local_free};

ah_state_t *ah_state_local_new(size_t max_keys)
{
    local_t *l = ah_calloc(1, sizeof *l);
    l->base.ops = &local_ops;
    l->max_per_stripe = max_keys / STRIPES + 1;
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&l->stripes[i].lock, NULL);
    return &l->base;
}
