/* store.c - the in-process answer cache (store.h).
 *
 * Two chained hash tables (by key, by id) over one set of entries, a
 * doubly linked LRU list (head = most recent), and one vector index per
 * semantic scope. Expired entries are dropped when met and from the LRU
 * tail when space is needed. */
#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "cache/vindex.h"
#include "core/alloc.h"
#include "core/log.h"

#define BUCKETS_MIN 1024
#define SCOPE_BUCKETS 1024
#define INDEX_SUFFIX ".vix"
/* Bytes charged per entry beyond its strings and vector (struct, links). */
#define ENTRY_OVERHEAD 256

/* Lookups counted per tenant and route: a fixed open-addressed table, so a
 * flood of tenants cannot grow it; past its size they share one row. */
#define ROUTE_SLOTS 1024
#define ROUTE_KEY_MAX 300

typedef struct route_stats {
    uint64_t hash; /* 0: empty */
    char tenant[ROUTE_KEY_MAX], model[ROUTE_KEY_MAX];
    uint64_t hits_exact, hits_semantic, misses, false_hits;
} route_stats_t;

typedef struct scope {
    uint8_t key[AH_CACHE_KEY_BYTES];
    ah_vindex_t *ix;
    size_t live;
    struct scope *next;
} scope_t;

struct ah_cache {
    pthread_mutex_t mu;
    size_t max_entries, max_bytes;
    size_t nbuckets;
    ah_cache_entry_t **by_key, **by_id;
    ah_cache_entry_t *lru_head, *lru_tail;
    scope_t *scopes[SCOPE_BUCKETS];
    ah_cache_stats_t st;
    route_stats_t *routes;         /* ROUTE_SLOTS + 1 (the last: every other route) */
    const ah_cache_peers_t *peers; /* NULL: this process only */
    void *peers_ctx;
};

static uint64_t key_hash(const uint8_t *k)
{
    uint64_t h;
    memcpy(&h, k, sizeof h);
    return h;
}

static uint64_t id_hash(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

ah_cache_t *ah_cache_new(size_t max_entries, size_t max_bytes)
{
    ah_cache_t *c = ah_calloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->max_entries = max_entries ? max_entries : 1;
    c->max_bytes = max_bytes;
    c->nbuckets = BUCKETS_MIN;
    while (c->nbuckets < c->max_entries && c->nbuckets < (1u << 24))
        c->nbuckets <<= 1;
    c->by_key = ah_calloc(c->nbuckets, sizeof *c->by_key);
    c->by_id = ah_calloc(c->nbuckets, sizeof *c->by_id);
    c->routes = ah_calloc(ROUTE_SLOTS + 1, sizeof *c->routes);
    snprintf(c->routes[ROUTE_SLOTS].tenant, ROUTE_KEY_MAX, "(other)");
    snprintf(c->routes[ROUTE_SLOTS].model, ROUTE_KEY_MAX, "(other)");
    return c;
}

static uint64_t str_hash(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL;
}

/* The counters of (tenant, model), under the lock. */
static route_stats_t *route_of(ah_cache_t *c, const char *tenant, const char *model)
{
    tenant = tenant ? tenant : "";
    model = model ? model : "";
    uint64_t h = str_hash(str_hash(0xcbf29ce484222325ULL, tenant), model) | 1;
    for (size_t i = 0, j = h % ROUTE_SLOTS; i < ROUTE_SLOTS; i++, j = (j + 1) % ROUTE_SLOTS) {
        route_stats_t *r = &c->routes[j];
        if (r->hash == h && strcmp(r->tenant, tenant) == 0 && strcmp(r->model, model) == 0)
            return r;
        if (r->hash == 0) {
            if (strlen(tenant) >= ROUTE_KEY_MAX || strlen(model) >= ROUTE_KEY_MAX)
                break;
            r->hash = h;
            snprintf(r->tenant, ROUTE_KEY_MAX, "%s", tenant);
            snprintf(r->model, ROUTE_KEY_MAX, "%s", model);
            return r;
        }
    }
    return &c->routes[ROUTE_SLOTS];
}

static void entry_free(ah_cache_entry_t *e)
{
    ah_free(e->tenant);
    ah_free(e->ns);
    ah_free(e->model);
    ah_free(e->answer);
    ah_free(e->vec);
    ah_free(e->prompt);
    ah_free(e);
}

void ah_cache_entry_release(ah_cache_entry_t *e)
{
    if (e && atomic_fetch_sub(&e->refs, 1) == 1)
        entry_free(e);
}

static scope_t *scope_find(ah_cache_t *c, const uint8_t *key, int create, int dim)
{
    scope_t **b = &c->scopes[key_hash(key) % SCOPE_BUCKETS];
    for (scope_t *s = *b; s; s = s->next)
        if (memcmp(s->key, key, AH_CACHE_KEY_BYTES) == 0)
            return s;
    if (!create)
        return NULL;
    scope_t *s = ah_calloc(1, sizeof *s);
    memcpy(s->key, key, AH_CACHE_KEY_BYTES);
    s->ix = ah_vindex_new(dim);
    s->next = *b;
    *b = s;
    return s;
}

static void scope_drop_if_empty(ah_cache_t *c, scope_t *s)
{
    if (s->live)
        return;
    scope_t **p = &c->scopes[key_hash(s->key) % SCOPE_BUCKETS];
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    ah_vindex_free(s->ix);
    ah_free(s);
}

static void lru_unlink(ah_cache_t *c, ah_cache_entry_t *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        c->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        c->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_push(ah_cache_t *c, ah_cache_entry_t *e)
{
    e->lru_prev = NULL;
    e->lru_next = c->lru_head;
    if (c->lru_head)
        c->lru_head->lru_prev = e;
    c->lru_head = e;
    if (!c->lru_tail)
        c->lru_tail = e;
}

/* Unlink e from every table and drop the store's reference. */
static void entry_remove(ah_cache_t *c, ah_cache_entry_t *e)
{
    ah_cache_entry_t **p = &c->by_key[key_hash(e->key) % c->nbuckets];
    while (*p && *p != e)
        p = &(*p)->hnext;
    if (*p)
        *p = e->hnext;
    p = &c->by_id[id_hash(e->id) % c->nbuckets];
    while (*p && *p != e)
        p = &(*p)->inext;
    if (*p)
        *p = e->inext;
    lru_unlink(c, e);
    if (e->semantic) {
        scope_t *s = scope_find(c, e->scope, 0, 0);
        if (s) {
            ah_vindex_remove(s->ix, e->id);
            s->live--;
            scope_drop_if_empty(c, s);
        }
    }
    c->st.entries--;
    c->st.bytes -= e->bytes;
    ah_cache_entry_release(e);
}

/* An entry's id in its scope's index: from its key, so that an index saved
 * to a file still names the same entries after a restart. */
static uint64_t id_of_key(const uint8_t *key)
{
    uint64_t id;
    memcpy(&id, key + 8, sizeof id);
    return id ? id : 1;
}

static ah_cache_entry_t *find_key(ah_cache_t *c, const uint8_t *key)
{
    for (ah_cache_entry_t *e = c->by_key[key_hash(key) % c->nbuckets]; e; e = e->hnext)
        if (memcmp(e->key, key, AH_CACHE_KEY_BYTES) == 0)
            return e;
    return NULL;
}

static ah_cache_entry_t *find_id(ah_cache_t *c, uint64_t id)
{
    for (ah_cache_entry_t *e = c->by_id[id_hash(id) % c->nbuckets]; e; e = e->inext)
        if (e->id == id)
            return e;
    return NULL;
}

/* A live entry, touched as recently used, with a reference; NULL when it
 * expired (and is then removed) or is older than max_age_ms. */
static ah_cache_entry_t *take(ah_cache_t *c, ah_cache_entry_t *e, int64_t now_ms,
                              int64_t max_age_ms)
{
    if (e->expires_ms <= now_ms) {
        c->st.expirations++;
        entry_remove(c, e);
        return NULL;
    }
    if (max_age_ms >= 0 && now_ms - e->created_ms > max_age_ms)
        return NULL;
    lru_unlink(c, e);
    lru_push(c, e);
    atomic_fetch_add(&e->refs, 1);
    return e;
}

void ah_cache_set_peers(ah_cache_t *c, const ah_cache_peers_t *ops, void *ctx)
{
    c->peers = ops;
    c->peers_ctx = ctx;
}

ah_cache_entry_t *ah_cache_get(ah_cache_t *c, const uint8_t *key, int64_t now_ms,
                               int64_t max_age_ms)
{
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *e = find_key(c, key);
    int absent = !e || e->expires_ms <= now_ms;
    if (e)
        e = take(c, e, now_ms, max_age_ms);
    if (absent && c->peers && c->peers->fetch) {
        /* not here: perhaps another instance has it (an entry here that is
         * only too old for max_age_ms is not asked for again) */
        pthread_mutex_unlock(&c->mu);
        int got = c->peers->fetch(c->peers_ctx, key, now_ms);
        pthread_mutex_lock(&c->mu);
        if (got && (e = find_key(c, key)))
            e = take(c, e, now_ms, max_age_ms);
    }
    if (e) {
        c->st.hits_exact++;
        route_of(c, e->tenant, e->model)->hits_exact++;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

ah_cache_entry_t *ah_cache_get_local(ah_cache_t *c, const uint8_t *key, int64_t now_ms,
                                     int64_t max_age_ms, int *ask)
{
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *e = find_key(c, key);
    int absent = !e || e->expires_ms <= now_ms;
    if (e)
        e = take(c, e, now_ms, max_age_ms);
    if (ask) /* an entry here only too old for max_age_ms is not asked for */
        *ask = absent && c->peers && c->peers->fetch_start;
    if (e) {
        c->st.hits_exact++;
        route_of(c, e->tenant, e->model)->hits_exact++;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

ah_cache_fetch_t *ah_cache_fetch_start(ah_cache_t *c, struct event_base *base, const uint8_t *key,
                                       int64_t now_ms, ah_cache_fetched_fn done, void *arg)
{
    if (!c->peers || !c->peers->fetch_start)
        return NULL;
    return c->peers->fetch_start(c->peers_ctx, base, key, now_ms, done, arg);
}

void ah_cache_fetch_cancel(ah_cache_t *c, ah_cache_fetch_t *f)
{
    if (f && c->peers && c->peers->fetch_cancel)
        c->peers->fetch_cancel(c->peers_ctx, f);
}

#define SIMILAR_CANDIDATES 4

ah_cache_entry_t *ah_cache_get_similar(ah_cache_t *c, const uint8_t *scope, const float *vec,
                                       int dim, float min_sim, int64_t now_ms, int64_t max_age_ms,
                                       ah_cache_rescore_fn rescore, void *rescore_ctx,
                                       const char *query, float *sim)
{
    ah_cache_entry_t *e = NULL;
    pthread_mutex_lock(&c->mu);
    scope_t *s = scope_find(c, scope, 0, 0);
    if (!s || ah_vindex_dim(s->ix) != dim) {
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    ah_vindex_hit_t hits[SIMILAR_CANDIDATES];
    int n = ah_vindex_search(s->ix, vec, SIMILAR_CANDIDATES, hits);
    /* the best candidate by (rescored) similarity that clears both bars */
    ah_cache_entry_t *best = NULL;
    float best_sim = -1;
    for (int i = 0; i < n; i++) {
        if (hits[i].sim < min_sim)
            break;
        ah_cache_entry_t *cand = find_id(c, hits[i].id);
        if (!cand)
            continue;
        if (cand->expires_ms <= now_ms) { /* met expired: dropped */
            c->st.expirations++;
            entry_remove(c, cand);
            continue;
        }
        float score = hits[i].sim;
        /* an entry without its prompt (kept by an older version) cannot be
         * checked, so it is not served */
        if (rescore && query)
            score =
                cand->prompt ? rescore(rescore_ctx, score, query, cand->prompt, &cand->memo) : -1;
        /* an entry whose threshold feedback raised asks for more */
        if (score >= min_sim && score >= cand->min_sim && score > best_sim) {
            best = cand;
            best_sim = score;
        }
    }
    if (best && (e = take(c, best, now_ms, max_age_ms)))
        *sim = best_sim;
    if (e) {
        c->st.hits_semantic++;
        route_of(c, e->tenant, e->model)->hits_semantic++;
    }
    pthread_mutex_unlock(&c->mu);
    return e;
}

void ah_cache_count_miss(ah_cache_t *c, const char *tenant, const char *model)
{
    pthread_mutex_lock(&c->mu);
    c->st.misses++;
    route_of(c, tenant, model)->misses++;
    pthread_mutex_unlock(&c->mu);
}

/* Make room for one more entry of `bytes`: expired and least recently used
 * entries go first. */
static void make_room(ah_cache_t *c, size_t bytes, int64_t now_ms)
{
    while (c->lru_tail && (c->st.entries + 1 > c->max_entries ||
                           (c->max_bytes && c->st.bytes + bytes > c->max_bytes))) {
        ah_cache_entry_t *e = c->lru_tail;
        if (e->expires_ms <= now_ms)
            c->st.expirations++;
        else
            c->st.evictions++;
        entry_remove(c, e);
    }
}

void ah_cache_insert(ah_cache_t *c, const ah_cache_put_t *p)
{
    ah_cache_entry_t *e = ah_calloc(1, sizeof *e);
    atomic_init(&e->refs, 1);
    memcpy(e->key, p->key, AH_CACHE_KEY_BYTES);
    e->tenant = ah_strdup(p->tenant ? p->tenant : "");
    e->ns = ah_strdup(p->ns ? p->ns : "");
    e->model = ah_strdup(p->model ? p->model : "");
    e->answer = ah_strndup(p->answer, p->answer_len);
    e->answer_len = p->answer_len;
    e->cost_usd = p->cost_usd;
    e->created_ms = p->now_ms;
    e->expires_ms = p->now_ms + p->ttl_ms;
    e->bytes = sizeof *e + ENTRY_OVERHEAD + p->answer_len + strlen(e->tenant) + strlen(e->ns) +
               strlen(e->model);
    if (p->scope && p->vec && p->dim > 0) {
        e->semantic = 1;
        memcpy(e->scope, p->scope, AH_CACHE_KEY_BYTES);
        e->dim = p->dim;
        e->vec = ah_calloc((size_t)p->dim, sizeof *e->vec);
        memcpy(e->vec, p->vec, (size_t)p->dim * sizeof *e->vec);
        /* the index keeps its own copy and a graph node */
        e->bytes += 2 * (size_t)p->dim * sizeof *e->vec + 128;
        if (p->prompt) {
            e->prompt = ah_strdup(p->prompt);
            e->bytes += strlen(p->prompt) + 1;
        }
    }
    if (c->max_bytes && e->bytes > c->max_bytes) {
        entry_free(e);
        return;
    }
    int tell = c->peers && c->peers->stored;
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *old = find_key(c, e->key);
    if (old)
        entry_remove(c, old);
    make_room(c, e->bytes, p->now_ms);
    e->id = id_of_key(e->key);
    ah_cache_entry_t **b = &c->by_key[key_hash(e->key) % c->nbuckets];
    e->hnext = *b;
    *b = e;
    lru_push(c, e);
    if (e->semantic && find_id(c, e->id))
        e->semantic = 0; /* two keys, one 64-bit id (never seen): exact only */
    if (e->semantic) {
        scope_t *s = scope_find(c, e->scope, 1, e->dim);
        /* an index loaded from its file may hold the entry already */
        if (ah_vindex_dim(s->ix) == e->dim &&
            (ah_vindex_has(s->ix, e->id) || ah_vindex_add(s->ix, e->id, e->vec) == AH_E_OK))
            s->live++;
        else
            e->semantic = 0; /* another embedder's scope: exact only */
        scope_drop_if_empty(c, s);
    }
    if (e->semantic) {
        b = &c->by_id[id_hash(e->id) % c->nbuckets];
        e->inext = *b;
        *b = e;
    }
    c->st.entries++;
    c->st.bytes += e->bytes;
    c->st.stores++;
    pthread_mutex_unlock(&c->mu);
    if (tell)
        c->peers->stored(c->peers_ctx, p);
}

void ah_cache_remove(ah_cache_t *c, const uint8_t *key)
{
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *e = find_key(c, key);
    if (e)
        entry_remove(c, e);
    pthread_mutex_unlock(&c->mu);
}

ah_cache_verdict_t ah_cache_mark_wrong(ah_cache_t *c, const uint8_t *key, float sim)
{
    ah_cache_verdict_t v = AH_CACHE_GONE;
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *e = find_key(c, key);
    if (e) {
        route_of(c, e->tenant, e->model)->false_hits++;
        if (sim > 0 && e->semantic && ++e->wrong_reports < AH_CACHE_WRONG_REPORTS_MAX) {
            /* the answer fits its own question, not one this far from it */
            float bar = sim + AH_CACHE_SIM_STEP;
            e->min_sim = bar > 1.0f ? 1.0f : bar;
            v = AH_CACHE_RAISED;
        } else {
            entry_remove(c, e);
            v = AH_CACHE_REMOVED;
        }
    }
    c->st.false_hits++;
    pthread_mutex_unlock(&c->mu);
    if (v == AH_CACHE_REMOVED && c->peers && c->peers->removed)
        c->peers->removed(c->peers_ctx, key);
    return v;
}

size_t ah_cache_purge(ah_cache_t *c, const char *tenant, const char *ns, const char *model,
                      int64_t before_ms)
{
    size_t n = 0;
    pthread_mutex_lock(&c->mu);
    ah_cache_entry_t *e = c->lru_head;
    while (e) {
        ah_cache_entry_t *next = e->lru_next;
        if ((!tenant || strcmp(e->tenant, tenant) == 0) && (!ns || strcmp(e->ns, ns) == 0) &&
            (!model || strcmp(e->model, model) == 0) &&
            (before_ms <= 0 || e->created_ms < before_ms)) {
            entry_remove(c, e);
            n++;
        }
        e = next;
    }
    c->st.purged += n;
    pthread_mutex_unlock(&c->mu);
    if (c->peers && c->peers->purged)
        c->peers->purged(c->peers_ctx, tenant, ns, model, before_ms);
    return n;
}

void ah_cache_stats(ah_cache_t *c, ah_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}

/* The breakdown's row of (tenant, model), made on first use. */
static json_t *row_of(json_t *by, const char *tenant, const char *model)
{
    char k[2 * ROUTE_KEY_MAX + 2];
    snprintf(k, sizeof k, "%s\x1f%s", tenant, model);
    json_t *row = json_object_get(by, k);
    if (!row) {
        row = json_pack("{s:s,s:s,s:I,s:I,s:I}", "tenant", tenant, "model", model, "entries",
                        (json_int_t)0, "semantic_entries", (json_int_t)0, "bytes", (json_int_t)0);
        json_object_set_new(by, k, row);
    }
    return row;
}

json_t *ah_cache_breakdown(ah_cache_t *c)
{
    json_t *by = json_object();
    pthread_mutex_lock(&c->mu);
    for (ah_cache_entry_t *e = c->lru_head; e; e = e->lru_next) {
        json_t *row = row_of(by, e->tenant, e->model);
        json_object_set_new(row, "entries",
                            json_integer(json_integer_value(json_object_get(row, "entries")) + 1));
        if (e->semantic)
            json_object_set_new(
                row, "semantic_entries",
                json_integer(json_integer_value(json_object_get(row, "semantic_entries")) + 1));
        json_object_set_new(
            row, "bytes",
            json_integer(json_integer_value(json_object_get(row, "bytes")) + (json_int_t)e->bytes));
    }
    for (size_t i = 0; i <= ROUTE_SLOTS; i++) {
        route_stats_t *r = &c->routes[i];
        if (!r->hits_exact && !r->hits_semantic && !r->misses && !r->false_hits)
            continue;
        json_t *row = row_of(by, r->tenant, r->model);
        json_object_set_new(row, "hits_exact", json_integer((json_int_t)r->hits_exact));
        json_object_set_new(row, "hits_semantic", json_integer((json_int_t)r->hits_semantic));
        json_object_set_new(row, "misses", json_integer((json_int_t)r->misses));
        json_object_set_new(row, "false_hits", json_integer((json_int_t)r->false_hits));
    }
    pthread_mutex_unlock(&c->mu);
    json_t *arr = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(by, k, v) json_array_append(arr, v);
    json_decref(by);
    return arr;
}

void ah_cache_free(ah_cache_t *c)
{
    if (!c)
        return;
    if (c->peers && c->peers->detach) /* first: its thread may be inserting */
        c->peers->detach(c->peers_ctx);
    while (c->lru_head)
        entry_remove(c, c->lru_head);
    for (int i = 0; i < SCOPE_BUCKETS; i++)
        while (c->scopes[i]) {
            scope_t *s = c->scopes[i];
            c->scopes[i] = s->next;
            ah_vindex_free(s->ix);
            ah_free(s);
        }
    ah_free(c->by_key);
    ah_free(c->by_id);
    ah_free(c->routes);
    pthread_mutex_destroy(&c->mu);
    ah_free(c);
}

/* --- persistence ----------------------------------------------------------- */

static const char *const SAVE_SQL =
    "INSERT INTO cache(key, tenant, ns, model, answer, cost_usd, created_ms, expires_ms, scope, "
    "vec, prompt) VALUES (?,?,?,?,?,?,?,?,?,?,?)";

static void hex_of(const uint8_t *k, char out[2 * AH_CACHE_KEY_BYTES + 1])
{
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", k[i]);
}

static int unhex_key(const char *s, uint8_t *out)
{
    for (int i = 0; i < AH_CACHE_KEY_BYTES; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

/* Remove the index files of an earlier save. */
static void clear_index_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, INDEX_SUFFIX) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    if (d)
        closedir(d);
}

/* Each scope's vector index into dir/<scope>.vix, so that a restart need
 * not rebuild them (minutes at a million entries). */
static size_t save_indexes(ah_cache_t *c, const char *dir)
{
    size_t n = 0;
    char hex[2 * AH_CACHE_KEY_BYTES + 1], path[PATH_MAX];
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        ah_warn("cache: cannot create %s: %s", dir, strerror(errno));
        return 0;
    }
    clear_index_dir(dir);
    for (int i = 0; i < SCOPE_BUCKETS; i++)
        for (scope_t *sc = c->scopes[i]; sc; sc = sc->next) {
            hex_of(sc->key, hex);
            snprintf(path, sizeof path, "%s/%s%s", dir, hex, INDEX_SUFFIX);
            if (ah_vindex_save(sc->ix, path) == AH_E_OK)
                n++;
        }
    return n;
}

/* Index files saved by save_indexes, as empty scopes that entries attach to
 * while they load. */
static void load_indexes(ah_cache_t *c, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];
    while (d && (de = readdir(d))) {
        uint8_t key[AH_CACHE_KEY_BYTES];
        size_t n = strlen(de->d_name);
        if (n != 2 * AH_CACHE_KEY_BYTES + 4 || strcmp(de->d_name + n - 4, INDEX_SUFFIX) ||
            unhex_key(de->d_name, key) || scope_find(c, key, 0, 0))
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        ah_err_t err;
        ah_vindex_t *ix = ah_vindex_load(path, &err);
        if (!ix) {
            ah_warn("cache: index %s unreadable (%s); rebuilt from the vectors", path,
                    ah_strerror(err));
            continue;
        }
        scope_t *sc = ah_calloc(1, sizeof *sc);
        memcpy(sc->key, key, AH_CACHE_KEY_BYTES);
        sc->ix = ix;
        sc->next = c->scopes[key_hash(key) % SCOPE_BUCKETS];
        c->scopes[key_hash(key) % SCOPE_BUCKETS] = sc;
    }
    if (d)
        closedir(d);
}

/* After loading: a scope whose index holds ids no live entry has (rows that
 * expired since, or were never written) is rebuilt from its entries' vectors;
 * a scope no entry came back to is dropped. */
static void settle_scopes(ah_cache_t *c)
{
    for (int i = 0; i < SCOPE_BUCKETS; i++) {
        scope_t *sc = c->scopes[i];
        while (sc) {
            scope_t *next = sc->next;
            if (sc->live == 0) {
                scope_drop_if_empty(c, sc);
            } else if (ah_vindex_count(sc->ix) != sc->live) {
                ah_vindex_t *ix = ah_vindex_new(ah_vindex_dim(sc->ix));
                for (ah_cache_entry_t *e = c->lru_tail; e; e = e->lru_prev)
                    if (e->semantic && memcmp(e->scope, sc->key, AH_CACHE_KEY_BYTES) == 0)
                        ah_vindex_add(ix, e->id, e->vec);
                ah_vindex_free(sc->ix);
                sc->ix = ix;
            }
            sc = next;
        }
    }
}

ah_err_t ah_cache_save(ah_cache_t *c, sqlite3 *db, int64_t now_ms, const char *index_dir)
{
    sqlite3_stmt *st = NULL;
    ah_err_t rc = AH_E_DB;
    size_t n = 0;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE; DELETE FROM cache;", NULL, NULL, NULL) != SQLITE_OK)
        return AH_E_DB;
    if (sqlite3_prepare_v2(db, SAVE_SQL, -1, &st, NULL) != SQLITE_OK)
        goto out;
    pthread_mutex_lock(&c->mu);
    /* oldest first, so that loading rebuilds the same recency order */
    for (ah_cache_entry_t *e = c->lru_tail; e; e = e->lru_prev) {
        if (e->expires_ms <= now_ms)
            continue;
        sqlite3_bind_blob(st, 1, e->key, AH_CACHE_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, e->ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, e->model, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, e->answer, (int)e->answer_len, SQLITE_STATIC);
        sqlite3_bind_double(st, 6, e->cost_usd);
        sqlite3_bind_int64(st, 7, e->created_ms);
        sqlite3_bind_int64(st, 8, e->expires_ms);
        if (e->semantic) {
            sqlite3_bind_blob(st, 9, e->scope, AH_CACHE_KEY_BYTES, SQLITE_STATIC);
            sqlite3_bind_blob(st, 10, e->vec, e->dim * (int)sizeof(float), SQLITE_STATIC);
        } else {
            sqlite3_bind_null(st, 9);
            sqlite3_bind_null(st, 10);
        }
        if (e->prompt)
            sqlite3_bind_text(st, 11, e->prompt, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 11);
        int s = sqlite3_step(st);
        sqlite3_reset(st);
        if (s != SQLITE_DONE) {
            pthread_mutex_unlock(&c->mu);
            goto out;
        }
        n++;
    }
    pthread_mutex_unlock(&c->mu);
    rc = AH_E_OK;
out:
    sqlite3_finalize(st);
    if (sqlite3_exec(db, rc ? "ROLLBACK" : "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = AH_E_DB;
    if (rc) {
        ah_error("cache: saving failed: %s", sqlite3_errmsg(db));
        return rc;
    }
    size_t nix = index_dir ? save_indexes(c, index_dir) : 0;
    ah_info("cache: %zu entries saved, %zu vector indexes", n, nix);
    return rc;
}

ah_err_t ah_cache_load(ah_cache_t *c, sqlite3 *db, int64_t now_ms, const char *index_dir)
{
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    if (sqlite3_prepare_v2(
            db,
            "SELECT key, tenant, ns, model, answer, cost_usd, created_ms, "
            "expires_ms, scope, vec, prompt FROM cache WHERE expires_ms > ? ORDER BY rowid",
            -1, &st, NULL) != SQLITE_OK) {
        ah_error("cache: %s", sqlite3_errmsg(db));
        return AH_E_DB;
    }
    sqlite3_bind_int64(st, 1, now_ms);
    pthread_mutex_lock(&c->mu);
    if (index_dir)
        load_indexes(c, index_dir);
    pthread_mutex_unlock(&c->mu);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (sqlite3_column_bytes(st, 0) != AH_CACHE_KEY_BYTES)
            continue;
        int64_t created = sqlite3_column_int64(st, 6), expires = sqlite3_column_int64(st, 7);
        ah_cache_put_t p = {
            .key = sqlite3_column_blob(st, 0),
            .tenant = (const char *)sqlite3_column_text(st, 1),
            .ns = (const char *)sqlite3_column_text(st, 2),
            .model = (const char *)sqlite3_column_text(st, 3),
            .answer = (const char *)sqlite3_column_text(st, 4),
            .answer_len = (size_t)sqlite3_column_bytes(st, 4),
            .cost_usd = sqlite3_column_double(st, 5),
            .now_ms = created,
            .ttl_ms = expires - created,
        };
        int vbytes = sqlite3_column_bytes(st, 9);
        if (sqlite3_column_bytes(st, 8) == AH_CACHE_KEY_BYTES && vbytes > 0 &&
            vbytes % (int)sizeof(float) == 0) {
            p.scope = sqlite3_column_blob(st, 8);
            p.vec = sqlite3_column_blob(st, 9);
            p.dim = vbytes / (int)sizeof(float);
            p.prompt = (const char *)sqlite3_column_text(st, 10);
        }
        if (!p.answer)
            continue;
        ah_cache_insert(c, &p);
        n++;
    }
    sqlite3_finalize(st);
    pthread_mutex_lock(&c->mu);
    settle_scopes(c);
    c->st.stores = 0;
    pthread_mutex_unlock(&c->mu);
    ah_info("cache: %zu entries loaded", n);
    return AH_E_OK;
}
