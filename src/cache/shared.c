/* shared.c - the answer cache shared between gateway instances through
 * Redis (shared.h; docs/state.md, "Answer caches in Redis").
 *
 * Keys, P being ahorro.state.prefix:
 *   Pcache:e:<hex key>   one entry, serialized (below), expiring with it
 *   Pcache:stream        news for the other instances, records of fields
 *                        op (put | del | purge), from (the instance's id),
 *                        key (put, del: the entry's key in hex), and for a
 *                        purge its filters: tenant, ns, model, before
 *
 * An instance that stores an entry SETs it (with PX, its TTL) and, when it
 * is semantic, adds a put record: the record names the key, and readers GET
 * the entry. A local exact miss GETs the key (the entry is inserted here and
 * served): asynchronously from an event loop (below), synchronously
 * otherwise. A removal by feedback DELs the key and adds a del record; a purge
 * deletes the matching keys (SCAN, and GETRANGE of each entry's head for the
 * filters) and adds a purge record. One thread per instance reads the stream
 * (XREAD BLOCK of STREAM_BLOCK_MS, so that it notices when to stop) and
 * applies the other instances' records; at start it first applies the last
 * CATCH_UP_MAX records.
 *
 * A store (SET, and XADD for a semantic entry) needs no answer: it is
 * queued for a pipelined writer (src/state/redis_writer.h), whose thread
 * sends what has gathered in one round trip; when its queue is full, the
 * store is made on the loop. The GET of a local miss on an event loop is
 * asynchronous, on the loop's own connection (src/state/redis_loop.h): the
 * request waits for the reply (r->cache_pending) and the loop serves others
 * meanwhile; at most FETCH_MAX_IN_FLIGHT are in flight per loop (past it, a
 * miss), and one without a reply in the state's timeout_ms ends as a miss
 * and counts as a failure (the connection is dropped). The other calls
 * from the event loops (a removal, a purge) are synchronous, on the pool of
 * connections of src/state/redis_conn.h, as the counters' are; a removal or
 * a purge first waits for the stores queued before it, so that none lands
 * after it. The same outage rule holds for all: a failure is logged once,
 * nobody tries Redis for a second, then one caller (a loop, the writer or
 * the stream's thread) probes it. The cache never fails because of Redis:
 * without it, it is this process's own.
 *
 * An entry, serialized (integers little-endian; floats as their IEEE bits):
 *   "AHC1", key[32], created_ms i64, expires_ms i64, cost_usd f64, dim u32,
 *   tenant, ns, model, prompt, answer (each u32 length + bytes),
 *   and when dim > 0: scope[32], vec f32[dim].
 * Its head (up to model) comes first, so that a purge reads only that. */
#include "cache/shared.h"

#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/embed.h"
#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "state/redis_conn.h"
#include "state/redis_loop.h"
#include "state/redis_writer.h"
#include "state/state.h"

#define MAGIC "AHC1"
#define MAGIC_LEN 4
/* Bytes of an entry's head: magic, key, times, cost, dim, three names. */
#define HEAD_MAX (MAGIC_LEN + AH_CACHE_KEY_BYTES + 28 + 3 * (4 + AH_CACHE_SHARED_MAX_NAME))
#define HEX_KEY (2 * AH_CACHE_KEY_BYTES)

#define MAX_KEY 256           /* prefix + "cache:e:" + hex key */
#define STREAM_MAXLEN "10000" /* XADD MAXLEN ~: records kept in the stream */
#define STREAM_BLOCK_MS 250   /* XREAD BLOCK: how soon the thread sees a stop */
#define STREAM_COUNT 100      /* records read at once */
#define CATCH_UP_MAX 10000    /* records applied at start */
#define STREAM_ID_MAX 48      /* "<ms>-<seq>" */
#define STREAM_FIELDS_MAX 16  /* field-value pairs of one record */
#define NAP_MS 50             /* the thread's pause while Redis is down */
#define PURGE_SCAN_COUNT "500"
#define PURGE_ROUNDS_MAX 100000 /* SCAN calls of one purge, at most */
#define PURGE_BATCH 64          /* GETRANGEs pipelined at once */
#define CMD_ARGS 20
#define FETCH_MAX_IN_FLIGHT 256 /* GETs in flight on one loop; past it, a miss */

typedef struct shared {
    ah_cache_t *cache;
    ah_redis_pool_t *pool;
    ah_redis_writer_t *writer; /* the stores */
    int flush_ms;              /* how long a removal or purge waits for them */
    char prefix[AH_STATE_MAX_PREFIX + 1];
    char stream[AH_STATE_MAX_PREFIX + 16];
    char id[17];             /* this instance, in its records */
    int read_timeout_ms;     /* of the thread's connection */
    ah_redis_loops_t *loops; /* the loops' own connections (asynchronous lookups) */
    atomic_uint_fast64_t applied, skipped;
    atomic_int stop;
    pthread_t thread;
    int started;
} shared_t;

/* Set while this thread applies what came from Redis, so that the store's
 * hooks do not send it back. */
static _Thread_local int applying;

/* --- the serialized entry -------------------------------------------------- */

static ah_err_t put_u32(ah_buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return ah_buf_append(b, x, sizeof x);
}

static ah_err_t put_u64(ah_buf_t *b, uint64_t v)
{
    ah_err_t rc = put_u32(b, (uint32_t)v);
    return rc ? rc : put_u32(b, (uint32_t)(v >> 32));
}

static ah_err_t put_str(ah_buf_t *b, const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n > max)
        return AH_E_TOOBIG;
    ah_err_t rc = put_u32(b, (uint32_t)n);
    return rc || !n ? rc : ah_buf_append(b, s, n);
}

ah_err_t ah_cache_shared_encode(const ah_cache_put_t *p, ah_buf_t *out)
{
    int dim = p->scope && p->vec && p->dim > 0 ? p->dim : 0;
    uint64_t cost;
    ah_err_t rc = AH_E_TOOBIG;
    if (dim > AH_EMBED_MAX_DIM || p->answer_len > AH_ANSWER_MAX_BYTES ||
        memchr(p->answer, '\0', p->answer_len))
        return AH_E_TOOBIG;
    memcpy(&cost, &p->cost_usd, sizeof cost);
    if ((rc = ah_buf_append(out, MAGIC, MAGIC_LEN)) || (rc = ah_buf_append(out, p->key, 32)) ||
        (rc = put_u64(out, (uint64_t)p->now_ms)) ||
        (rc = put_u64(out, (uint64_t)(p->now_ms + p->ttl_ms))) || (rc = put_u64(out, cost)) ||
        (rc = put_u32(out, (uint32_t)dim)) ||
        (rc = put_str(out, p->tenant, AH_CACHE_SHARED_MAX_NAME)) ||
        (rc = put_str(out, p->ns, AH_CACHE_SHARED_MAX_NAME)) ||
        (rc = put_str(out, p->model, AH_CACHE_SHARED_MAX_NAME)) ||
        (rc = put_str(out, dim ? p->prompt : NULL, AH_CACHE_SHARED_MAX_PROMPT)) ||
        (rc = put_u32(out, (uint32_t)p->answer_len)) ||
        (rc = ah_buf_append(out, p->answer, p->answer_len)))
        return rc;
    if (dim) {
        if ((rc = ah_buf_append(out, p->scope, AH_CACHE_KEY_BYTES)))
            return rc;
        for (int i = 0; i < dim; i++) {
            uint32_t bits;
            memcpy(&bits, &p->vec[i], sizeof bits);
            if ((rc = put_u32(out, bits)))
                return rc;
        }
    }
    return AH_E_OK;
}

typedef struct reader {
    const uint8_t *p;
    size_t left;
} reader_t;

static int get_bytes(reader_t *r, void *out, size_t n)
{
    if (r->left < n)
        return -1;
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

static int get_u32(reader_t *r, uint32_t *v)
{
    uint8_t x[4];
    if (get_bytes(r, x, sizeof x))
        return -1;
    *v = (uint32_t)x[0] | (uint32_t)x[1] << 8 | (uint32_t)x[2] << 16 | (uint32_t)x[3] << 24;
    return 0;
}

static int get_u64(reader_t *r, uint64_t *v)
{
    uint32_t lo, hi;
    if (get_u32(r, &lo) || get_u32(r, &hi))
        return -1;
    *v = (uint64_t)hi << 32 | lo;
    return 0;
}

/* A length-prefixed string of at most max bytes and no NUL, copied (NULL
 * when empty). */
static int get_str(reader_t *r, size_t max, char **out)
{
    uint32_t n;
    *out = NULL;
    if (get_u32(r, &n) || n > max || n > r->left || memchr(r->p, '\0', n))
        return -1;
    if (n)
        *out = ah_strndup((const char *)r->p, n);
    r->p += n;
    r->left -= n;
    return 0;
}

/* What a purge filters on, from the head of an entry (the rest may be cut
 * off: GETRANGE). Strings are copies (NULL when empty). */
typedef struct head {
    int64_t created_ms;
    char *tenant, *ns, *model;
} head_t;

static void head_free(head_t *h)
{
    ah_free(h->tenant);
    ah_free(h->ns);
    ah_free(h->model);
    *h = (head_t){0};
}

static int read_head(reader_t *r, uint8_t *key, int64_t *expires, double *cost, uint32_t *dim,
                     head_t *h)
{
    char magic[MAGIC_LEN];
    uint64_t created, exp, c;
    *h = (head_t){0};
    if (get_bytes(r, magic, MAGIC_LEN) || memcmp(magic, MAGIC, MAGIC_LEN) ||
        get_bytes(r, key, AH_CACHE_KEY_BYTES) || get_u64(r, &created) || get_u64(r, &exp) ||
        get_u64(r, &c) || get_u32(r, dim) || *dim > AH_EMBED_MAX_DIM ||
        get_str(r, AH_CACHE_SHARED_MAX_NAME, &h->tenant) ||
        get_str(r, AH_CACHE_SHARED_MAX_NAME, &h->ns) ||
        get_str(r, AH_CACHE_SHARED_MAX_NAME, &h->model)) {
        head_free(h);
        return -1;
    }
    h->created_ms = (int64_t)created;
    *expires = (int64_t)exp;
    memcpy(cost, &c, sizeof *cost);
    return 0;
}

void ah_cache_shared_entry_free(ah_cache_shared_entry_t *e)
{
    ah_free(e->tenant);
    ah_free(e->ns);
    ah_free(e->model);
    ah_free(e->prompt);
    ah_free(e->answer);
    ah_free(e->vec);
    *e = (ah_cache_shared_entry_t){0};
}

ah_err_t ah_cache_shared_decode(const void *data, size_t len, ah_cache_shared_entry_t *out)
{
    reader_t r = {data, len};
    head_t h;
    uint32_t dim, alen;
    double cost;
    *out = (ah_cache_shared_entry_t){0};
    if (len > AH_CACHE_SHARED_MAX_VALUE ||
        read_head(&r, out->key, &out->expires_ms, &cost, &dim, &h))
        return AH_E_PARSE;
    out->tenant = h.tenant;
    out->ns = h.ns;
    out->model = h.model;
    if (get_str(&r, AH_CACHE_SHARED_MAX_PROMPT, &out->prompt) || get_u32(&r, &alen) ||
        alen > AH_ANSWER_MAX_BYTES || alen > r.left || alen == 0 || memchr(r.p, '\0', alen))
        goto bad;
    out->answer = ah_strndup((const char *)r.p, alen);
    r.p += alen;
    r.left -= alen;
    if (dim) {
        if (get_bytes(&r, out->scope, AH_CACHE_KEY_BYTES) || r.left != (size_t)dim * 4 ||
            !out->prompt)
            goto bad;
        out->vec = ah_calloc(dim, sizeof *out->vec);
        for (uint32_t i = 0; i < dim; i++) {
            uint32_t bits;
            get_u32(&r, &bits);
            memcpy(&out->vec[i], &bits, sizeof bits);
            if (!isfinite(out->vec[i]))
                goto bad;
        }
    }
    if (r.left || !isfinite(cost) || out->expires_ms <= h.created_ms)
        goto bad;
    /* served to clients as it is: it must be the JSON object it was */
    json_t *j = json_loadb(out->answer, alen, 0, NULL);
    int ok = json_is_object(j);
    json_decref(j);
    if (!ok)
        goto bad;
    out->put = (ah_cache_put_t){
        .key = out->key,
        .tenant = out->tenant ? out->tenant : "",
        .ns = out->ns ? out->ns : "",
        .model = out->model ? out->model : "",
        .answer = out->answer,
        .answer_len = alen,
        .cost_usd = cost,
        .now_ms = h.created_ms,
        .ttl_ms = out->expires_ms - h.created_ms,
        .scope = dim ? out->scope : NULL,
        .vec = out->vec,
        .dim = (int)dim,
        .prompt = dim ? out->prompt : NULL,
    };
    return AH_E_OK;
bad:
    ah_cache_shared_entry_free(out);
    return AH_E_PARSE;
}

/* --- keys and commands ----------------------------------------------------- */

static void hex_of(const uint8_t *k, char out[HEX_KEY + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++) {
        out[2 * i] = digits[k[i] >> 4];
        out[2 * i + 1] = digits[k[i] & 15];
    }
    out[HEX_KEY] = '\0';
}

static int unhex_key(const char *s, size_t n, uint8_t *out)
{
    if (n != HEX_KEY)
        return -1;
    for (int i = 0; i < HEX_KEY; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return -1;
        out[i / 2] = (uint8_t)(i % 2 ? out[i / 2] | v : v << 4);
    }
    return 0;
}

static void entry_key(const shared_t *s, const uint8_t *key, char out[MAX_KEY])
{
    char hex[HEX_KEY + 1];
    hex_of(key, hex);
    snprintf(out, MAX_KEY, "%scache:e:%s", s->prefix, hex);
}

static const char *reply_error(const redisReply *rep)
{
    return rep && rep->type == REDIS_REPLY_ERROR ? rep->str : "";
}

/* One command: up to CMD_ARGS arguments with their lengths. */
typedef struct cmd {
    int argc;
    const char *argv[CMD_ARGS];
    size_t len[CMD_ARGS];
} cmd_t;

static void arg(cmd_t *c, const char *s, size_t n)
{
    if (c->argc < CMD_ARGS) {
        c->argv[c->argc] = s;
        c->len[c->argc++] = n;
    }
}

static void args(cmd_t *c, const char *s)
{
    arg(c, s, strlen(s));
}

/* Send n commands at once and read their n replies into out; -1 on an I/O
 * failure (c is then unusable; nothing is left in out). */
static int pipeline(redisContext *c, const cmd_t *cmds, int n, redisReply **out)
{
    int got = 0;
    for (int i = 0; i < n; i++) {
        const char *argv[CMD_ARGS]; /* hiredis 0.14 takes them as non-const */
        memcpy(argv, cmds[i].argv, sizeof argv);
        if (redisAppendCommandArgv(c, cmds[i].argc, argv, cmds[i].len) != REDIS_OK)
            goto fail;
    }
    for (; got < n; got++)
        if (redisGetReply(c, (void **)&out[got]) != REDIS_OK || !out[got])
            goto fail;
    return 0;
fail:
    for (int i = 0; i < got; i++)
        freeReplyObject(out[i]);
    return -1;
}

static void free_replies(redisReply **rep, int n)
{
    for (int i = 0; i < n; i++)
        if (rep[i])
            freeReplyObject(rep[i]);
}

/* Run n commands on a pooled connection (from a loop thread). 0 with the
 * replies in out (free with free_replies), or -1 when Redis is down or
 * fails now (an error reply counts: OOM, READONLY), with nothing in out. */
static int run(shared_t *s, const cmd_t *cmds, int n, redisReply **out)
{
    char why[256] = "";
    int pooled;
    if (!ah_redis_pool_may_try(s->pool)) {
        ah_redis_pool_went_without(s->pool);
        return -1;
    }
    redisContext *c = ah_redis_pool_get(s->pool, &pooled, why, sizeof why);
    if (!c)
        goto down;
    /* A pooled connection the server closed (a restart while idle): one
     * retry on a new one. Every command here may run twice. */
    while (pipeline(c, cmds, n, out))
        if (!(c = ah_redis_pool_retry(s->pool, c, &pooled, why, sizeof why)))
            goto down;
    ah_redis_pool_put(s->pool, c);
    for (int i = 0; i < n; i++)
        if (out[i]->type == REDIS_REPLY_ERROR) {
            snprintf(why, sizeof why, "%s answered %s", cmds[i].argv[0], out[i]->str);
            free_replies(out, n);
            goto down;
        }
    ah_redis_pool_answered(s->pool);
    return 0;
down:
    ah_redis_pool_failed(s->pool, why);
    ah_redis_pool_went_without(s->pool);
    return -1;
}

/* A stream record: op, from, then the fields given (pairs of name, value;
 * NULL values left out). */
static void record(shared_t *s, cmd_t *c, const char *op)
{
    args(c, "XADD");
    args(c, s->stream);
    args(c, "MAXLEN");
    args(c, "~");
    args(c, STREAM_MAXLEN);
    args(c, "*");
    args(c, "op");
    args(c, op);
    args(c, "from");
    args(c, s->id);
}

/* --- the hooks: what this instance tells and asks -------------------------- */

static void on_stored(void *ctx, const ah_cache_put_t *p)
{
    shared_t *s = ctx;
    if (applying || p->ttl_ms <= 0)
        return;
    ah_buf_t b;
    ah_buf_init(&b, AH_CACHE_SHARED_MAX_VALUE);
    char k[MAX_KEY], hex[HEX_KEY + 1], ttl[24];
    if (ah_cache_shared_encode(p, &b) != AH_E_OK) {
        ah_debug("cache: an entry over the limits of Redis's is kept in this instance only");
        goto out;
    }
    entry_key(s, p->key, k);
    hex_of(p->key, hex);
    snprintf(ttl, sizeof ttl, "%" PRId64, p->ttl_ms);
    cmd_t cmds[2] = {0};
    args(&cmds[0], "SET");
    args(&cmds[0], k);
    arg(&cmds[0], b.data, b.len);
    args(&cmds[0], "PX");
    args(&cmds[0], ttl);
    int n = 1;
    if (p->scope && p->vec && p->dim > 0) { /* the others index it */
        record(s, &cmds[1], "put");
        args(&cmds[1], "key");
        args(&cmds[1], hex);
        n = 2;
    }
    ah_redis_cmd_t queued[2];
    for (int i = 0; i < n; i++)
        queued[i] = (ah_redis_cmd_t){cmds[i].argc, cmds[i].argv, cmds[i].len};
    redisReply *rep[2];
    if (ah_redis_writer_send(s->writer, queued, n) && run(s, cmds, n, rep) == 0)
        free_replies(rep, n); /* no room in the writer's queue: now */
out:
    ah_buf_free(&b);
}

/* Insert a serialized entry that Redis had under key; 1 when it is live. */
static int insert_value(shared_t *s, const uint8_t *key, const char *data, size_t len,
                        int64_t now_ms)
{
    ah_cache_shared_entry_t e;
    if (ah_cache_shared_decode(data, len, &e) != AH_E_OK) {
        atomic_fetch_add(&s->skipped, 1);
        return 0;
    }
    int live = memcmp(e.key, key, AH_CACHE_KEY_BYTES) == 0 && e.expires_ms > now_ms;
    if (live) {
        int was = applying;
        applying = 1;
        ah_cache_insert(s->cache, &e.put);
        applying = was;
        atomic_fetch_add(&s->applied, 1);
    }
    ah_cache_shared_entry_free(&e);
    return live;
}

static int on_fetch(void *ctx, const uint8_t *key, int64_t now_ms)
{
    shared_t *s = ctx;
    char k[MAX_KEY];
    entry_key(s, key, k);
    cmd_t cmd = {0};
    args(&cmd, "GET");
    args(&cmd, k);
    redisReply *rep;
    if (applying || run(s, &cmd, 1, &rep))
        return 0;
    int got = rep->type == REDIS_REPLY_STRING && insert_value(s, key, rep->str, rep->len, now_ms);
    freeReplyObject(rep);
    return got;
}

/* --- the asynchronous lookup on an event loop ------------------------------ */

/* One GET in flight, from the loop's own connection (state/redis_loop.h).
 * It lives until that call is over, which always comes. */
struct ah_cache_fetch {
    shared_t *s;
    uint8_t key[AH_CACHE_KEY_BYTES];
    ah_cache_fetched_fn done; /* NULL once cancelled */
    void *arg;
    int got; /* the entry was inserted */
};

/* The GET's reply (i 0; NULL: none came), then its end (i 1, or -1 when
 * the loop's thread exits: nobody waits any more). */
static void on_get(void *priv, int i, const redisReply *rep)
{
    ah_cache_fetch_t *f = priv;
    shared_t *s = f->s;
    if (i == 0) {
        if (rep && rep->type == REDIS_REPLY_ERROR) {
            char why[256];
            snprintf(why, sizeof why, "GET answered %s", rep->str);
            ah_redis_pool_failed(s->pool, why);
        } else if (rep && rep->type == REDIS_REPLY_STRING) { /* kept even when nobody waits */
            f->got = insert_value(s, f->key, rep->str, rep->len, ah_wall_ms());
        }
        return;
    }
    ah_cache_fetched_fn done = i > 0 ? f->done : NULL;
    void *arg = f->arg;
    int got = f->got;
    ah_free(f);
    if (done)
        done(arg, got);
}

static ah_cache_fetch_t *on_fetch_start(void *ctx, struct event_base *base, const uint8_t *key,
                                        int64_t now_ms, ah_cache_fetched_fn done, void *arg)
{
    shared_t *s = ctx;
    (void)now_ms; /* liveness is judged when the reply comes */
    if (applying)
        return NULL;
    char k[MAX_KEY];
    entry_key(s, key, k);
    const char *argv[2] = {"GET", k};
    size_t len[2] = {3, strlen(k)};
    ah_redis_cmd_t get = {2, argv, len};
    ah_cache_fetch_t *f = ah_calloc(1, sizeof *f);
    f->s = s;
    memcpy(f->key, key, AH_CACHE_KEY_BYTES);
    f->done = done;
    f->arg = arg;
    if (!ah_redis_loops_call(s->loops, base, &get, 1, on_get, f)) {
        ah_free(f);
        return NULL;
    }
    return f;
}

static void on_fetch_cancel(void *ctx, ah_cache_fetch_t *f)
{
    (void)ctx;
    f->done = NULL;
}

static void on_removed(void *ctx, const uint8_t *key)
{
    shared_t *s = ctx;
    if (applying)
        return;
    ah_redis_writer_flush(s->writer, s->flush_ms); /* its SET first */
    char k[MAX_KEY], hex[HEX_KEY + 1];
    entry_key(s, key, k);
    hex_of(key, hex);
    cmd_t cmds[2] = {0};
    args(&cmds[0], "DEL");
    args(&cmds[0], k);
    record(s, &cmds[1], "del");
    args(&cmds[1], "key");
    args(&cmds[1], hex);
    redisReply *rep[2];
    if (run(s, cmds, 2, rep) == 0)
        free_replies(rep, 2);
}

static int head_matches(const char *data, size_t len, const char *tenant, const char *ns,
                        const char *model, int64_t before_ms)
{
    reader_t r = {(const uint8_t *)data, len};
    uint8_t key[AH_CACHE_KEY_BYTES];
    int64_t expires;
    double cost;
    uint32_t dim;
    head_t h;
    if (read_head(&r, key, &expires, &cost, &dim, &h))
        return 0;
    int m = (!tenant || strcmp(h.tenant ? h.tenant : "", tenant) == 0) &&
            (!ns || strcmp(h.ns ? h.ns : "", ns) == 0) &&
            (!model || strcmp(h.model ? h.model : "", model) == 0) &&
            (before_ms <= 0 || h.created_ms < before_ms);
    head_free(&h);
    return m;
}

/* Delete the keys of one SCAN batch that match the filters: the heads of
 * PURGE_BATCH entries at a time (GETRANGE), then UNLINK the matches.
 * Returns how many, or -1 when Redis failed. */
static long purge_batch(shared_t *s, redisReply **keys, size_t n, const char *tenant,
                        const char *ns, const char *model, int64_t before_ms)
{
    cmd_t cmds[PURGE_BATCH];
    redisReply *rep[PURGE_BATCH];
    char range[24];
    long gone = 0;
    snprintf(range, sizeof range, "%d", HEAD_MAX - 1);
    int any = tenant || ns || model || before_ms > 0;
    for (size_t at = 0; at < n; at += PURGE_BATCH) {
        int m = (int)(n - at < PURGE_BATCH ? n - at : PURGE_BATCH), k = 0;
        for (int i = 0; i < m; i++) {
            cmds[i] = (cmd_t){0};
            args(&cmds[i], "GETRANGE");
            arg(&cmds[i], keys[at + i]->str, keys[at + i]->len);
            args(&cmds[i], "0");
            args(&cmds[i], range);
        }
        if (any && run(s, cmds, m, rep))
            return -1;
        for (int i = 0; i < m; i++) {
            int hit =
                !any || (rep[i]->type == REDIS_REPLY_STRING &&
                         head_matches(rep[i]->str, rep[i]->len, tenant, ns, model, before_ms));
            if (hit) {
                cmds[k] = (cmd_t){0};
                args(&cmds[k], "UNLINK");
                arg(&cmds[k], keys[at + i]->str, keys[at + i]->len);
                k++;
            }
        }
        if (any)
            free_replies(rep, m);
        if (k && run(s, cmds, k, rep))
            return -1;
        free_replies(rep, k);
        gone += k;
    }
    return gone;
}

/* A glob pattern matching the entries' keys: the prefix with its glob
 * characters escaped. */
static void entry_pattern(const shared_t *s, char *out, size_t n)
{
    size_t j = 0;
    for (const char *p = s->prefix; *p && j + 2 < n; p++) {
        if (strchr("*?[]\\", *p))
            out[j++] = '\\';
        out[j++] = *p;
    }
    out[j] = '\0';
    snprintf(out + j, n - j, "cache:e:*");
}

static void on_purged(void *ctx, const char *tenant, const char *ns, const char *model,
                      int64_t before_ms)
{
    shared_t *s = ctx;
    if (applying)
        return;
    char cursor[32] = "0", pattern[2 * AH_STATE_MAX_PREFIX + 16], before[24];
    long gone = 0;
    ah_redis_writer_flush(s->writer, s->flush_ms); /* the stores queued before it */
    entry_pattern(s, pattern, sizeof pattern);
    for (int round = 0; round < PURGE_ROUNDS_MAX; round++) {
        cmd_t cmd = {0};
        args(&cmd, "SCAN");
        args(&cmd, cursor);
        args(&cmd, "MATCH");
        args(&cmd, pattern);
        args(&cmd, "COUNT");
        args(&cmd, PURGE_SCAN_COUNT);
        redisReply *rep;
        if (run(s, &cmd, 1, &rep))
            goto failed;
        if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
            rep->element[0]->type != REDIS_REPLY_STRING || rep->element[0]->len >= sizeof cursor ||
            rep->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(rep);
            goto failed;
        }
        snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
        redisReply *ks = rep->element[1];
        for (size_t i = 0; i < ks->elements; i++)
            if (ks->element[i]->type != REDIS_REPLY_STRING) {
                freeReplyObject(rep);
                goto failed;
            }
        long n = purge_batch(s, ks->element, ks->elements, tenant, ns, model, before_ms);
        freeReplyObject(rep);
        if (n < 0)
            goto failed;
        gone += n;
        if (strcmp(cursor, "0") == 0)
            break;
    }
    cmd_t rec = {0};
    record(s, &rec, "purge");
    if (tenant) {
        args(&rec, "tenant");
        args(&rec, tenant);
    }
    if (ns) {
        args(&rec, "ns");
        args(&rec, ns);
    }
    if (model) {
        args(&rec, "model");
        args(&rec, model);
    }
    if (before_ms > 0) {
        snprintf(before, sizeof before, "%" PRId64, before_ms);
        args(&rec, "before");
        args(&rec, before);
    }
    redisReply *rep;
    if (run(s, &rec, 1, &rep))
        goto failed;
    freeReplyObject(rep);
    ah_info("cache: purge: %ld entries deleted in Redis; the other instances are told", gone);
    return;
failed:
    ah_warn("cache: purge: Redis failed; the other instances keep their entries (purge again "
            "when Redis is back)");
}

/* --- the thread that reads the stream -------------------------------------- */

/* The value of field name in a record's [f1, v1, f2, v2, ...], or NULL. */
static const redisReply *field(const redisReply *kv, const char *name)
{
    for (size_t i = 0; i + 1 < kv->elements; i += 2)
        if (kv->element[i]->type == REDIS_REPLY_STRING && strcmp(kv->element[i]->str, name) == 0)
            return kv->element[i + 1]->type == REDIS_REPLY_STRING ? kv->element[i + 1] : NULL;
    return NULL;
}

/* A string field of at most max bytes and no NUL, or NULL. */
static const char *text(const redisReply *kv, const char *name, size_t max)
{
    const redisReply *v = field(kv, name);
    return v && v->len <= max && strlen(v->str) == v->len ? v->str : NULL;
}

/* Apply one record (another instance's) on connection c: 0, or -1 when c
 * failed (the record is then not applied). Malformed records are skipped. */
static int apply(shared_t *s, redisContext *c, const redisReply *kv)
{
    uint8_t key[AH_CACHE_KEY_BYTES];
    if (kv->type != REDIS_REPLY_ARRAY || kv->elements % 2 || kv->elements > 2 * STREAM_FIELDS_MAX)
        goto skip;
    for (size_t i = 0; i < kv->elements; i++)
        if (kv->element[i]->type != REDIS_REPLY_STRING)
            goto skip;
    const char *op = text(kv, "op", 16), *from = text(kv, "from", 64), *hex = text(kv, "key", 64);
    if (!op || !from)
        goto skip;
    if (strcmp(from, s->id) == 0)
        return 0;
    if (strcmp(op, "put") == 0 || strcmp(op, "del") == 0) {
        if (!hex || unhex_key(hex, strlen(hex), key))
            goto skip;
        if (op[0] == 'd') {
            ah_cache_remove(s->cache, key);
            atomic_fetch_add(&s->applied, 1);
            return 0;
        }
        char k[MAX_KEY];
        entry_key(s, key, k);
        redisReply *rep = redisCommand(c, "GET %s", k);
        if (!rep)
            return -1;
        if (rep->type == REDIS_REPLY_STRING) /* else gone since: expired, purged */
            insert_value(s, key, rep->str, rep->len, ah_wall_ms());
        freeReplyObject(rep);
        return 0;
    }
    if (strcmp(op, "purge") == 0) {
        const char *tenant = text(kv, "tenant", AH_CACHE_SHARED_MAX_NAME),
                   *ns = text(kv, "ns", AH_CACHE_SHARED_MAX_NAME),
                   *model = text(kv, "model", AH_CACHE_SHARED_MAX_NAME),
                   *before = text(kv, "before", 20);
        long long b = 0;
        if (before) {
            char *end;
            errno = 0;
            b = strtoll(before, &end, 10);
            if (errno || *end || end == before || b < 0)
                goto skip;
        }
        if ((field(kv, "tenant") && !tenant) || (field(kv, "ns") && !ns) ||
            (field(kv, "model") && !model))
            goto skip;
        ah_cache_purge(s->cache, tenant, ns, model, b);
        atomic_fetch_add(&s->applied, 1);
        return 0;
    }
skip:
    atomic_fetch_add(&s->skipped, 1);
    return 0;
}

/* A stream entry [id, [fields]]: its id into last (when well formed) and
 * its record applied. -1 when c failed. */
static int apply_entry(shared_t *s, redisContext *c, const redisReply *e, char *last)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= STREAM_ID_MAX ||
        strspn(e->element[0]->str, "0123456789-") != e->element[0]->len) {
        atomic_fetch_add(&s->skipped, 1);
        return 0;
    }
    if (apply(s, c, e->element[1]))
        return -1;
    snprintf(last, STREAM_ID_MAX, "%s", e->element[0]->str);
    return 0;
}

/* At start: the last CATCH_UP_MAX records, oldest first. */
static int catch_up(shared_t *s, redisContext *c, char *last, char *why, size_t n)
{
    redisReply *rep = redisCommand(c, "XREVRANGE %s + - COUNT %d", s->stream, CATCH_UP_MAX);
    int rc = -1;
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        snprintf(why, n, "XREVRANGE: %s", rep ? reply_error(rep) : c->errstr);
        goto out;
    }
    uint64_t before = atomic_load(&s->applied);
    for (size_t i = rep->elements; i-- > 0 && !atomic_load(&s->stop);)
        if (apply_entry(s, c, rep->element[i], last)) {
            snprintf(why, n, "%s", c->errstr);
            goto out;
        }
    ah_info("cache: caught up with %zu records of the Redis stream (%" PRIuFAST64 " applied)",
            rep->elements, atomic_load(&s->applied) - before);
    rc = 0;
out:
    if (rep)
        freeReplyObject(rep);
    return rc;
}

static void nap(shared_t *s, int ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    if (!atomic_load(&s->stop))
        nanosleep(&ts, NULL);
}

static void *reader(void *arg)
{
    shared_t *s = arg;
    redisContext *c = NULL;
    char last[STREAM_ID_MAX] = "0-0", why[256];
    int caught_up = 0;
    applying = 1; /* everything this thread inserts came from the others */
    while (!atomic_load(&s->stop)) {
        if (!c) {
            if (!ah_redis_pool_may_try(s->pool)) {
                nap(s, NAP_MS);
                continue;
            }
            if (!(c = ah_redis_pool_open(s->pool, s->read_timeout_ms, why, sizeof why))) {
                ah_redis_pool_failed(s->pool, why);
                continue;
            }
            if (!caught_up && catch_up(s, c, last, why, sizeof why)) {
                redisFree(c);
                c = NULL;
                ah_redis_pool_failed(s->pool, why);
                continue;
            }
            caught_up = 1;
            ah_redis_pool_answered(s->pool);
        }
        redisReply *rep = redisCommand(c, "XREAD COUNT %d BLOCK %d STREAMS %s %s", STREAM_COUNT,
                                       STREAM_BLOCK_MS, s->stream, last);
        int failed = !rep || rep->type == REDIS_REPLY_ERROR;
        if (!failed && rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) {
            const redisReply *st = rep->element[0];
            if (st->type == REDIS_REPLY_ARRAY && st->elements == 2 &&
                st->element[1]->type == REDIS_REPLY_ARRAY) {
                const redisReply *es = st->element[1];
                for (size_t i = 0; i < es->elements && !failed; i++)
                    failed = apply_entry(s, c, es->element[i], last) != 0;
            }
        }
        if (failed) {
            snprintf(why, sizeof why, "%s",
                     rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
            redisFree(c);
            c = NULL;
            ah_redis_pool_failed(s->pool, why);
        }
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return NULL;
}

static void on_detach(void *ctx)
{
    shared_t *s = ctx;
    ah_redis_loops_free(s->loops);   /* the workers' connections closed as they exited */
    ah_redis_writer_free(s->writer); /* sends the stores still queued */
    atomic_store(&s->stop, 1);
    if (s->started)
        pthread_join(s->thread, NULL);
    ah_redis_pool_free(s->pool);
    ah_info("cache: %" PRIuFAST64
            " entries and records from the other instances applied, %" PRIuFAST64
            " malformed skipped",
            atomic_load(&s->applied), atomic_load(&s->skipped));
    ah_free(s);
}

static const ah_cache_peers_t redis_peers = {
    .stored = on_stored,
    .fetch = on_fetch,
    .fetch_start = on_fetch_start,
    .fetch_cancel = on_fetch_cancel,
    .removed = on_removed,
    .purged = on_purged,
    .detach = on_detach,
};

int ah_cache_shared_start(ah_cache_t *cache, const ah_state_config_t *cfg, char *err, size_t errlen)
{
    ah_redis_pool_t *pool = ah_redis_pool_new(
        cfg, "cache", "the answer caches go on in this instance only until it is back");
    if (!pool) {
        snprintf(err, errlen, "'%s' is not redis://[:PASSWORD@]HOST[:PORT][/DB]",
                 cfg->url ? cfg->url : "");
        return -1;
    }
    shared_t *s = ah_calloc(1, sizeof *s);
    s->cache = cache;
    s->pool = pool;
    s->loops = ah_redis_loops_new(pool, cfg, FETCH_MAX_IN_FLIGHT); /* the URL parsed already */
    snprintf(s->prefix, sizeof s->prefix, "%s",
             cfg->prefix ? cfg->prefix : AH_STATE_DEFAULT_PREFIX);
    snprintf(s->stream, sizeof s->stream, "%scache:stream", s->prefix);
    /* the thread's reads block up to STREAM_BLOCK_MS on purpose */
    int ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : AH_STATE_DEFAULT_TIMEOUT_MS;
    s->read_timeout_ms = ms + STREAM_BLOCK_MS + 1000;
    s->flush_ms = 2 * ms;
    s->writer = ah_redis_writer_new(pool, "cache");
    unsigned char rnd[8];
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        uint64_t x = (uint64_t)ah_now_us() ^ ((uint64_t)getpid() << 32);
        memcpy(rnd, &x, sizeof rnd);
    }
    for (int i = 0; i < 8; i++)
        snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
    ah_cache_set_peers(cache, &redis_peers, s);
    if (pthread_create(&s->thread, NULL, reader, s) == 0)
        s->started = 1;
    else
        ah_warn("cache: cannot start the thread that reads the Redis stream: entries stored by "
                "the other instances are found by exact lookups only");
    ah_info("cache: shared with the other instances through Redis at %s (keys %scache:*)",
            ah_redis_pool_addr(s->pool), s->prefix);
    return 0;
}
