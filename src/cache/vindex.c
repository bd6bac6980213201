/* vindex.c - HNSW (hierarchical navigable small world) over unit vectors.
 *
 * The algorithm is the one of Malkov and Yashunin, "Efficient and robust
 * approximate nearest neighbor search using Hierarchical Navigable Small
 * World graphs" (2016/2018): a node draws a level from an exponential
 * distribution; a lookup descends greedily through the upper levels and runs
 * a best-first search of width ef on level 0; an insert does the same with
 * width ef_construction and links the node to neighbours chosen by the
 * paper's diversity heuristic (its Algorithm 4), pruning a neighbour's list
 * with the same heuristic when it overflows. See docs/vector-index.md for the
 * parameters, the measurements behind them, memory per entry and the file
 * format.
 *
 * Layout: slots are dense integers; vectors (float32) are one contiguous
 * array, level-0 links another (count, then m0 slots, per slot), upper-level
 * links one small block per node that has any. An open-addressing table maps
 * caller ids to slots.
 *
 * Removal: the slot is marked free and pushed on a free list (threaded
 * through ids[]); each node within two hops that links to it gets that link
 * replaced by the removed node's neighbour closest to it (a local bridge), so the graph
 * keeps its degree and stays navigable. Links nobody repaired (edges are
 * directed, incoming ones are not tracked) still lead to the free slot, which
 * keeps its old vector and links and serves as a routing-only node until an
 * add reuses it. Searches never return a free slot. */
#include "cache/vindex.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cache/embed.h"
#include "core/alloc.h"

/* Parameters, chosen by measurement (bench/vindex/RESULTS.md). The #ifndef
 * lets the bench's parameter sweep compile this file with other values. */
#ifndef AH_VINDEX_M
#define AH_VINDEX_M 16 /* links a node keeps on upper levels; 2*M on level 0 */
#endif
#ifndef AH_VINDEX_EF_CONSTRUCTION
#define AH_VINDEX_EF_CONSTRUCTION 100
#endif
#ifndef AH_VINDEX_EF_SEARCH
#define AH_VINDEX_EF_SEARCH 64
#endif
/* Limits (also what ah_vindex_load accepts from a file). */
#define AH_VINDEX_MAX_M 64
#define AH_VINDEX_MAX_EF 4096
#define AH_VINDEX_MAX_LEVEL 15
#define AH_VINDEX_MAX_ENTRIES (1u << 27)
/* Slots of a new index's first allocation; arrays then double. */
#define AH_VINDEX_MIN_CAP 4
#define AH_VINDEX_MIN_MAP 8
#define AH_VINDEX_SEED 0x9e3779b97f4a7c15ull

#define VINDEX_MAGIC "AHVINDEX"
#define VINDEX_MAGIC_LEN 8
#define VINDEX_VERSION 1u
#define VINDEX_HEADER_LEN 64

#define NONE UINT32_MAX
#define SLOT_LIVE 1
#define SLOT_FREE 2

typedef float (*dot_fn)(const float *a, const float *b, int n);

struct ah_vindex {
    pthread_rwlock_t lock;
    int dim;
    uint32_t m, m0, ef_construction, ef_search;
    double level_mult;
    uint64_t rng;
    dot_fn dot;
    uint32_t cap, nslots, count;
    uint32_t entry;
    int max_level;
    uint32_t free_head;
    float *vecs;      /* cap * dim */
    uint64_t *ids;    /* caller id when live, next free slot when free */
    uint8_t *levels;  /* top level of each slot */
    uint8_t *state;   /* SLOT_LIVE, SLOT_FREE */
    uint32_t *links0; /* cap * (m0 + 1): count, then slots */
    uint32_t **upper; /* levels[s] * (m + 1) for levels 1.., or NULL */
    size_t upper_bytes;
    uint32_t *map; /* id -> slot, linear probing, NONE is empty */
    uint32_t map_cap, map_used;
};

/* ---- distances ---------------------------------------------------------- */

static float dot_generic(const float *a, const float *b, int n)
{
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_hadd_ps(h, h);
    h = _mm_hadd_ps(h, h);
    float s = _mm_cvtss_f32(h);
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}
#endif

static dot_fn pick_dot(void)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return dot_avx2;
#endif
    return dot_generic;
}

static inline const float *vec_at(const ah_vindex_t *ix, uint32_t s)
{
    return ix->vecs + (size_t)s * (size_t)ix->dim;
}

/* Distance used inside the graph: smaller is closer. */
static inline float dist(const ah_vindex_t *ix, const float *q, uint32_t s)
{
    return -ix->dot(q, vec_at(ix, s), ix->dim);
}

/* Links of slot s on level, or NULL when s does not reach that level. */
static inline uint32_t *links_at(const ah_vindex_t *ix, uint32_t s, int level)
{
    if (level == 0)
        return ix->links0 + (size_t)s * (ix->m0 + 1);
    if (level > ix->levels[s] || !ix->upper[s])
        return NULL;
    return ix->upper[s] + (size_t)(level - 1) * (ix->m + 1);
}

/* ---- per-thread scratch: visited marks and heaps ------------------------- */

typedef struct vcand {
    float d;
    uint32_t s;
} vcand_t;

/* A binary max-heap on key; candidates use key = -d (nearest on top),
 * results key = d (farthest on top). */
typedef struct vheap {
    vcand_t *a;
    size_t n, cap;
} vheap_t;

typedef struct vscratch {
    uint16_t *marks;
    size_t nmarks;
    uint16_t gen;
    vheap_t cand, res;
    vcand_t *tmp;
    size_t tmp_cap;
} vscratch_t;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p)
{
    vscratch_t *sc = p;
    if (!sc)
        return;
    ah_free(sc->marks);
    ah_free(sc->cand.a);
    ah_free(sc->res.a);
    ah_free(sc->tmp);
    ah_free(sc);
}

static void scratch_key_create(void)
{
    if (pthread_key_create(&scratch_key, scratch_destroy) != 0)
        abort();
}

/* This thread's scratch with marks for n slots; never NULL. */
static vscratch_t *scratch_get(size_t n)
{
    pthread_once(&scratch_once, scratch_key_create);
    vscratch_t *sc = pthread_getspecific(scratch_key);
    if (!sc) {
        sc = ah_calloc(1, sizeof(*sc));
        if (pthread_setspecific(scratch_key, sc) != 0)
            abort();
    }
    if (sc->nmarks < n) {
        size_t nn = sc->nmarks ? sc->nmarks : 64;
        while (nn < n)
            nn *= 2;
        ah_free(sc->marks);
        sc->marks = ah_calloc(nn, sizeof(*sc->marks));
        sc->nmarks = nn;
        sc->gen = 0;
    }
    return sc;
}

static void visit_new(vscratch_t *sc)
{
    if (++sc->gen == 0) {
        memset(sc->marks, 0, sc->nmarks * sizeof(*sc->marks));
        sc->gen = 1;
    }
}

static void heap_push(vheap_t *h, float key, uint32_t s)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->a = ah_realloc(h->a, h->cap * sizeof(*h->a));
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p].d >= key)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = (vcand_t){key, s};
}

static vcand_t heap_pop(vheap_t *h)
{
    vcand_t top = h->a[0];
    vcand_t last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1].d > h->a[c].d)
            c++;
        if (h->a[c].d <= last.d)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

static void tmp_reserve(vscratch_t *sc, size_t n)
{
    if (sc->tmp_cap < n) {
        sc->tmp_cap = n < 64 ? 64 : n;
        sc->tmp = ah_realloc(sc->tmp, sc->tmp_cap * sizeof(*sc->tmp));
    }
}

/* ---- search ------------------------------------------------------------- */

/* Greedy descent on one level from ep (distance *d); returns the closest
 * slot found. Slots that do not reach `level` any more (a free slot reused
 * at a lower level) are skipped, as is `skip`. */
static uint32_t greedy(const ah_vindex_t *ix, const float *q, uint32_t ep, float *d, int level,
                       uint32_t skip)
{
    int changed = 1;
    while (changed) {
        changed = 0;
        const uint32_t *ln = links_at(ix, ep, level);
        if (!ln)
            break;
        for (uint32_t j = 0; j < ln[0]; j++) {
            uint32_t nb = ln[1 + j];
            if (nb == skip || ix->levels[nb] < level)
                continue;
            float nd = dist(ix, q, nb);
            if (nd < *d) {
                *d = nd;
                ep = nb;
                changed = 1;
            }
        }
    }
    return ep;
}

/* Best-first search of width ef on one level (the paper's Algorithm 2).
 * Leaves the ef nearest live slots in sc->res (farthest on top). Free slots
 * are walked through but never kept; `skip` is neither. */
static void search_layer(const ah_vindex_t *ix, vscratch_t *sc, const float *q, uint32_t ep,
                         float ep_d, size_t ef, int level, uint32_t skip)
{
    visit_new(sc);
    sc->cand.n = 0;
    sc->res.n = 0;
    if (skip != NONE)
        sc->marks[skip] = sc->gen;
    sc->marks[ep] = sc->gen;
    heap_push(&sc->cand, -ep_d, ep);
    if (ix->state[ep] == SLOT_LIVE && ep != skip)
        heap_push(&sc->res, ep_d, ep);
    while (sc->cand.n) {
        float cd = -sc->cand.a[0].d;
        if (sc->res.n >= ef && cd > sc->res.a[0].d)
            break;
        uint32_t c = heap_pop(&sc->cand).s;
        const uint32_t *ln = links_at(ix, c, level);
        if (!ln)
            continue;
        uint32_t cnt = ln[0];
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t nb = ln[1 + j];
            if (sc->marks[nb] != sc->gen)
                __builtin_prefetch(vec_at(ix, nb));
        }
        for (uint32_t j = 0; j < cnt; j++) {
            uint32_t nb = ln[1 + j];
            if (sc->marks[nb] == sc->gen)
                continue;
            sc->marks[nb] = sc->gen;
            if (level > 0 && ix->levels[nb] < level)
                continue;
            float d = dist(ix, q, nb);
            if (sc->res.n < ef || d < sc->res.a[0].d) {
                heap_push(&sc->cand, -d, nb);
                if (ix->state[nb] == SLOT_LIVE) {
                    heap_push(&sc->res, d, nb);
                    if (sc->res.n > ef)
                        heap_pop(&sc->res);
                }
            }
        }
    }
}

/* Empty sc->res into sc->tmp, nearest first; returns the count. */
static size_t drain_sorted(vscratch_t *sc)
{
    size_t n = sc->res.n;
    tmp_reserve(sc, n);
    for (size_t i = n; i > 0; i--)
        sc->tmp[i - 1] = heap_pop(&sc->res);
    return n;
}

/* ---- insertion ---------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int random_level(ah_vindex_t *ix)
{
    /* u in (0, 1], so log(u) is finite. */
    double u = (double)((rng_next(&ix->rng) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double l = -log(u) * ix->level_mult;
    return l >= AH_VINDEX_MAX_LEVEL ? AH_VINDEX_MAX_LEVEL : (int)l;
}

static int cmp_cand(const void *a, const void *b)
{
    float x = ((const vcand_t *)a)->d, y = ((const vcand_t *)b)->d;
    return (x > y) - (x < y);
}

/* The paper's Algorithm 4 without extension or kept pruned links: c[0..n)
 * sorted nearest first; keeps in c[0..r) each candidate closer to the base
 * than to every one already kept, up to mmax. Returns r. */
static size_t select_neighbors(const ah_vindex_t *ix, vcand_t *c, size_t n, size_t mmax)
{
    size_t r = 0;
    for (size_t i = 0; i < n && r < mmax; i++) {
        const float *v = vec_at(ix, c[i].s);
        int keep = 1;
        for (size_t j = 0; j < r; j++) {
            if (dist(ix, v, c[j].s) < c[i].d) {
                keep = 0;
                break;
            }
        }
        if (keep)
            c[r++] = c[i];
    }
    return r;
}

/* Link e -> s on level (the reverse of a new node's link), pruning e's list
 * with the heuristic when it is full. Free slots in the list are dropped
 * then. */
static void link_back(const ah_vindex_t *ix, vscratch_t *sc, uint32_t e, uint32_t s, int level)
{
    uint32_t *ln = links_at(ix, e, level);
    if (!ln)
        return;
    uint32_t mmax = level ? ix->m : ix->m0;
    for (uint32_t j = 0; j < ln[0]; j++) {
        if (ln[1 + j] == s)
            return;
    }
    if (ln[0] < mmax) {
        ln[1 + ln[0]++] = s;
        return;
    }
    tmp_reserve(sc, (size_t)mmax + 1);
    const float *ev = vec_at(ix, e);
    size_t n = 0;
    for (uint32_t j = 0; j < ln[0]; j++) {
        uint32_t x = ln[1 + j];
        if (ix->state[x] != SLOT_LIVE)
            continue;
        sc->tmp[n++] = (vcand_t){dist(ix, ev, x), x};
    }
    sc->tmp[n++] = (vcand_t){dist(ix, ev, s), s};
    qsort(sc->tmp, n, sizeof(*sc->tmp), cmp_cand);
    size_t r = select_neighbors(ix, sc->tmp, n, mmax);
    for (size_t j = 0; j < r; j++)
        ln[1 + j] = sc->tmp[j].s;
    ln[0] = (uint32_t)r;
}

/* Link slot s (vector, level and empty link lists in place) into the graph
 * (the paper's Algorithm 1). */
static void graph_insert(ah_vindex_t *ix, uint32_t s)
{
    int ls = ix->levels[s];
    if (ix->entry == NONE) {
        ix->entry = s;
        ix->max_level = ls;
        return;
    }
    vscratch_t *sc = scratch_get(ix->nslots);
    const float *q = vec_at(ix, s);
    uint32_t ep = ix->entry;
    float ep_d = dist(ix, q, ep);
    for (int lc = ix->max_level; lc > ls; lc--)
        ep = greedy(ix, q, ep, &ep_d, lc, s);
    for (int lc = ls < ix->max_level ? ls : ix->max_level; lc >= 0; lc--) {
        search_layer(ix, sc, q, ep, ep_d, ix->ef_construction, lc, s);
        size_t n = drain_sorted(sc);
        if (n == 0)
            continue;
        ep = sc->tmp[0].s;
        ep_d = sc->tmp[0].d;
        size_t r = select_neighbors(ix, sc->tmp, n, ix->m);
        uint32_t *ln = links_at(ix, s, lc);
        uint32_t nb[AH_VINDEX_MAX_M];
        for (size_t j = 0; j < r; j++) {
            ln[1 + j] = sc->tmp[j].s;
            nb[j] = sc->tmp[j].s;
        }
        ln[0] = (uint32_t)r;
        /* link_back reuses sc->tmp, hence the copy. */
        for (size_t j = 0; j < r; j++)
            link_back(ix, sc, nb[j], s, lc);
    }
    if (ls > ix->max_level) {
        ix->entry = s;
        ix->max_level = ls;
    }
}

/* ---- id map ------------------------------------------------------------- */

static uint32_t id_hash(uint64_t id)
{
    id ^= id >> 33;
    id *= 0xff51afd7ed558ccdull;
    id ^= id >> 33;
    id *= 0xc4ceb9fe1a85ec53ull;
    id ^= id >> 33;
    return (uint32_t)id;
}

/* Position of id in the map, or of the empty cell where it would go. */
static uint32_t map_pos(const ah_vindex_t *ix, uint64_t id)
{
    uint32_t mask = ix->map_cap - 1;
    uint32_t i = id_hash(id) & mask;
    while (ix->map[i] != NONE && ix->ids[ix->map[i]] != id)
        i = (i + 1) & mask;
    return i;
}

static uint32_t map_find(const ah_vindex_t *ix, uint64_t id)
{
    if (!ix->map_cap)
        return NONE;
    return ix->map[map_pos(ix, id)];
}

static void map_rehash(ah_vindex_t *ix, uint32_t ncap)
{
    uint32_t *old = ix->map;
    uint32_t ocap = ix->map_cap;
    ix->map = ah_malloc((size_t)ncap * sizeof(*ix->map));
    memset(ix->map, 0xff, (size_t)ncap * sizeof(*ix->map));
    ix->map_cap = ncap;
    for (uint32_t i = 0; i < ocap; i++) {
        if (old[i] != NONE)
            ix->map[map_pos(ix, ix->ids[old[i]])] = old[i];
    }
    ah_free(old);
}

/* Map ids[s] -> s; the id must be absent. Keeps the load at most 1/2. */
static void map_insert(ah_vindex_t *ix, uint32_t s)
{
    if ((size_t)(ix->map_used + 1) * 2 > ix->map_cap)
        map_rehash(ix, ix->map_cap ? ix->map_cap * 2 : AH_VINDEX_MIN_MAP);
    ix->map[map_pos(ix, ix->ids[s])] = s;
    ix->map_used++;
}

/* Remove id (present) with backward-shift deletion: no tombstones. */
static void map_delete(ah_vindex_t *ix, uint64_t id)
{
    uint32_t mask = ix->map_cap - 1;
    uint32_t i = map_pos(ix, id);
    uint32_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (ix->map[j] == NONE)
            break;
        uint32_t home = id_hash(ix->ids[ix->map[j]]) & mask;
        /* Move j back to i unless its home lies cyclically in (i, j]. */
        int stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            ix->map[i] = ix->map[j];
            i = j;
        }
    }
    ix->map[i] = NONE;
    ix->map_used--;
}

/* ---- lifecycle ---------------------------------------------------------- */

static ah_vindex_t *vindex_alloc(int dim, uint32_t m, uint32_t m0)
{
    ah_vindex_t *ix = ah_calloc(1, sizeof(*ix));
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* Adds must not starve behind a steady stream of lookups. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ix->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    ix->dim = dim;
    ix->m = m;
    ix->m0 = m0;
    ix->ef_construction = AH_VINDEX_EF_CONSTRUCTION;
    ix->ef_search = AH_VINDEX_EF_SEARCH;
    ix->level_mult = 1.0 / log((double)m);
    ix->rng = AH_VINDEX_SEED;
    ix->dot = pick_dot();
    ix->entry = NONE;
    ix->max_level = -1;
    ix->free_head = NONE;
    return ix;
}

ah_vindex_t *ah_vindex_new(int dim)
{
    if (dim <= 0 || dim > AH_EMBED_MAX_DIM)
        return NULL;
    return vindex_alloc(dim, AH_VINDEX_M, 2 * AH_VINDEX_M);
}

static void free_upper(ah_vindex_t *ix, uint32_t s)
{
    if (ix->upper[s]) {
        ix->upper_bytes -= (size_t)ix->levels[s] * (ix->m + 1) * sizeof(uint32_t);
        ah_free(ix->upper[s]);
        ix->upper[s] = NULL;
    }
}

void ah_vindex_free(ah_vindex_t *ix)
{
    if (!ix)
        return;
    for (uint32_t s = 0; s < ix->nslots; s++)
        ah_free(ix->upper[s]);
    ah_free(ix->vecs);
    ah_free(ix->ids);
    ah_free(ix->levels);
    ah_free(ix->state);
    ah_free(ix->links0);
    ah_free(ix->upper);
    ah_free(ix->map);
    pthread_rwlock_destroy(&ix->lock);
    ah_free(ix);
}

/* Set the slot arrays' capacity to ncap (>= nslots). */
static void set_cap(ah_vindex_t *ix, uint32_t ncap)
{
    size_t n = ncap;
    ix->vecs = ah_realloc(ix->vecs, n * (size_t)ix->dim * sizeof(float));
    ix->ids = ah_realloc(ix->ids, n * sizeof(*ix->ids));
    ix->levels = ah_realloc(ix->levels, n);
    ix->state = ah_realloc(ix->state, n);
    ix->links0 = ah_realloc(ix->links0, n * (ix->m0 + 1) * sizeof(uint32_t));
    ix->upper = ah_realloc(ix->upper, n * sizeof(*ix->upper));
    for (uint32_t s = ix->cap; s < ncap; s++)
        ix->upper[s] = NULL;
    ix->cap = ncap;
}

static void set_level(ah_vindex_t *ix, uint32_t s, int level)
{
    free_upper(ix, s);
    ix->levels[s] = (uint8_t)level;
    ix->links0[(size_t)s * (ix->m0 + 1)] = 0;
    if (level > 0) {
        size_t n = (size_t)level * (ix->m + 1);
        ix->upper[s] = ah_calloc(n, sizeof(uint32_t));
        ix->upper_bytes += n * sizeof(uint32_t);
    }
}

/* ---- removal ------------------------------------------------------------ */

static int list_has(const uint32_t *ln, uint32_t s)
{
    for (uint32_t j = 0; j < ln[0]; j++) {
        if (ln[1 + j] == s)
            return 1;
    }
    return 0;
}

/* A new entry point: the live slot of highest level (first on ties). */
static void pick_entry(ah_vindex_t *ix)
{
    ix->entry = NONE;
    ix->max_level = -1;
    for (uint32_t s = 0; s < ix->nslots; s++) {
        if (ix->state[s] == SLOT_LIVE && (int)ix->levels[s] > ix->max_level) {
            ix->entry = s;
            ix->max_level = ix->levels[s];
        }
    }
}

/* If n (live) links to s on level lc, replace that link by the neighbour of
 * s (ls) nearest to n that n does not already have, or drop it. */
static void unlink_from(const ah_vindex_t *ix, uint32_t n, uint32_t s, const uint32_t *ls, int lc)
{
    uint32_t *ln = links_at(ix, n, lc);
    if (!ln)
        return;
    uint32_t at = NONE;
    for (uint32_t i = 0; i < ln[0]; i++) {
        if (ln[1 + i] == s)
            at = i;
    }
    if (at == NONE)
        return;
    const float *nv = vec_at(ix, n);
    uint32_t best = NONE;
    float best_d = 0;
    for (uint32_t i = 0; i < ls[0]; i++) {
        uint32_t c = ls[1 + i];
        if (c == n || ix->state[c] != SLOT_LIVE || ix->levels[c] < lc || list_has(ln, c))
            continue;
        float d = dist(ix, nv, c);
        if (best == NONE || d < best_d) {
            best = c;
            best_d = d;
        }
    }
    if (best != NONE)
        ln[1 + at] = best;
    else
        ln[1 + at] = ln[ln[0]--];
}

/* Unlink live slot s from the nodes that link to it. Links are directed and
 * incoming ones are not stored, so look where they almost all are: among
 * the neighbours of s and their neighbours (docs/vector-index.md has the
 * churn measurements with one ring and with two). */
static void remove_slot(ah_vindex_t *ix, uint32_t s)
{
    map_delete(ix, ix->ids[s]);
    ix->state[s] = SLOT_FREE;
    ix->count--;
    vscratch_t *sc = scratch_get(ix->nslots);
    for (int lc = 0; lc <= ix->levels[s] && ix->count; lc++) {
        const uint32_t *ls = links_at(ix, s, lc);
        if (!ls)
            break;
        visit_new(sc);
        sc->marks[s] = sc->gen;
        for (uint32_t j = 0; j < ls[0]; j++) {
            uint32_t n = ls[1 + j];
            if (sc->marks[n] != sc->gen && ix->state[n] == SLOT_LIVE) {
                sc->marks[n] = sc->gen;
                unlink_from(ix, n, s, ls, lc);
            }
            const uint32_t *l2 = ix->state[n] == SLOT_LIVE ? links_at(ix, n, lc) : NULL;
            for (uint32_t i = 0; l2 && i < l2[0]; i++) {
                uint32_t n2 = l2[1 + i];
                if (sc->marks[n2] != sc->gen && ix->state[n2] == SLOT_LIVE) {
                    sc->marks[n2] = sc->gen;
                    unlink_from(ix, n2, s, ls, lc);
                }
            }
        }
    }
    if (ix->count == 0) {
        /* Nothing left to route through: start over, keep the capacity. */
        for (uint32_t i = 0; i < ix->nslots; i++)
            free_upper(ix, i);
        ix->nslots = 0;
        ix->free_head = NONE;
        ix->entry = NONE;
        ix->max_level = -1;
        return;
    }
    ix->ids[s] = ix->free_head;
    ix->free_head = s;
    if (ix->entry == s)
        pick_entry(ix);
}

/* ---- public operations -------------------------------------------------- */

ah_err_t ah_vindex_add(ah_vindex_t *ix, uint64_t id, const float *vec)
{
    if (!ix || !vec)
        return AH_E_INVAL;
    for (int i = 0; i < ix->dim; i++) {
        if (!isfinite(vec[i]))
            return AH_E_INVAL;
    }
    ah_err_t rc = AH_E_OK;
    pthread_rwlock_wrlock(&ix->lock);
    uint32_t s = map_find(ix, id);
    if (s != NONE) {
        remove_slot(ix, s);
    } else if (ix->count >= AH_VINDEX_MAX_ENTRIES) {
        rc = AH_E_TOOBIG;
        goto out;
    }
    if (ix->free_head != NONE) {
        s = ix->free_head;
        ix->free_head = (uint32_t)ix->ids[s];
    } else {
        if (ix->nslots == ix->cap) {
            uint32_t ncap = ix->cap ? ix->cap * 2 : AH_VINDEX_MIN_CAP;
            if (ncap > AH_VINDEX_MAX_ENTRIES)
                ncap = AH_VINDEX_MAX_ENTRIES;
            set_cap(ix, ncap);
        }
        s = ix->nslots++;
        ix->upper[s] = NULL;
    }
    ix->ids[s] = id;
    memcpy(ix->vecs + (size_t)s * (size_t)ix->dim, vec, (size_t)ix->dim * sizeof(float));
    set_level(ix, s, random_level(ix));
    map_insert(ix, s);
    graph_insert(ix, s);
    ix->state[s] = SLOT_LIVE;
    ix->count++;
out:
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

ah_err_t ah_vindex_remove(ah_vindex_t *ix, uint64_t id)
{
    if (!ix)
        return AH_E_INVAL;
    ah_err_t rc = AH_E_OK;
    pthread_rwlock_wrlock(&ix->lock);
    uint32_t s = map_find(ix, id);
    if (s == NONE) {
        rc = AH_E_NOTFOUND;
        goto out;
    }
    remove_slot(ix, s);
out:
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

int ah_vindex_search(ah_vindex_t *ix, const float *q, int k, ah_vindex_hit_t *out)
{
    if (!ix || !q || !out || k <= 0)
        return 0;
    int n = 0;
    pthread_rwlock_rdlock(&ix->lock);
    if (ix->count == 0)
        goto out;
    vscratch_t *sc = scratch_get(ix->nslots);
    uint32_t ep = ix->entry;
    float ep_d = dist(ix, q, ep);
    for (int lc = ix->max_level; lc > 0; lc--)
        ep = greedy(ix, q, ep, &ep_d, lc, NONE);
    size_t ef = (size_t)k > ix->ef_search ? (size_t)k : ix->ef_search;
    search_layer(ix, sc, q, ep, ep_d, ef, 0, NONE);
    size_t got = drain_sorted(sc);
    n = got < (size_t)k ? (int)got : k;
    for (int i = 0; i < n; i++) {
        float sim = -sc->tmp[i].d;
        out[i].id = ix->ids[sc->tmp[i].s];
        out[i].sim = sim > 1.0f ? 1.0f : (sim < -1.0f ? -1.0f : sim);
    }
out:
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

int ah_vindex_has(const ah_vindex_t *ix, uint64_t id)
{
    if (!ix)
        return 0;
    pthread_rwlock_t *lock = (pthread_rwlock_t *)&ix->lock;
    pthread_rwlock_rdlock(lock);
    int has = map_find(ix, id) != NONE;
    pthread_rwlock_unlock(lock);
    return has;
}

size_t ah_vindex_count(const ah_vindex_t *ix)
{
    if (!ix)
        return 0;
    pthread_rwlock_t *lock = (pthread_rwlock_t *)&ix->lock;
    pthread_rwlock_rdlock(lock);
    size_t n = ix->count;
    pthread_rwlock_unlock(lock);
    return n;
}

size_t ah_vindex_memory(const ah_vindex_t *ix)
{
    if (!ix)
        return 0;
    pthread_rwlock_t *lock = (pthread_rwlock_t *)&ix->lock;
    pthread_rwlock_rdlock(lock);
    size_t per_slot = (size_t)ix->dim * sizeof(float) + sizeof(*ix->ids) + 2 +
                      (ix->m0 + 1) * sizeof(uint32_t) + sizeof(*ix->upper);
    size_t n = sizeof(*ix) + (size_t)ix->cap * per_slot + ix->upper_bytes +
               (size_t)ix->map_cap * sizeof(*ix->map);
    pthread_rwlock_unlock(lock);
    return n;
}

int ah_vindex_dim(const ah_vindex_t *ix)
{
    return ix ? ix->dim : 0;
}

/* ---- persistence ---------------------------------------------------------
 *
 * Little-endian (the host's order; a big-endian host reads a wrong version
 * and refuses). Header of VINDEX_HEADER_LEN bytes:
 *   0 magic "AHVINDEX"   8 u32 version      12 u32 dim        16 u32 m
 *  20 u32 m0            24 u32 ef_constr   28 u32 ef_search  32 u32 nslots
 *  36 u32 count         40 u32 entry       44 i32 max_level  48 u64 rng
 *  56 u64 reserved (0)
 * then, for nslots slots: u64 ids, u8 levels, u8 state, f32 vecs[dim],
 * u32 links0[m0 + 1]; then for each slot with level > 0, in slot order,
 * u32 upper[level * (m + 1)]; then a u64 checksum of everything before it. */

typedef struct vfile {
    FILE *f;
    uint64_t sum;
} vfile_t;

/* A fast non-cryptographic checksum, to catch corruption, not attacks. */
static void sum_update(uint64_t *sum, const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = *sum ^ (n * 0x9e3779b97f4a7c15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    if (n > i)
        memcpy(&w, b + i, n - i);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    *sum = h ^ (h >> 29);
}

static int vwrite(vfile_t *vf, const void *p, size_t n)
{
    sum_update(&vf->sum, p, n);
    return n == 0 || fwrite(p, 1, n, vf->f) == n ? 0 : -1;
}

static int vread(vfile_t *vf, void *p, size_t n)
{
    if (n && fread(p, 1, n, vf->f) != n)
        return -1;
    sum_update(&vf->sum, p, n);
    return 0;
}

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static int write_body(ah_vindex_t *ix, vfile_t *vf)
{
    unsigned char h[VINDEX_HEADER_LEN] = {0};
    memcpy(h, VINDEX_MAGIC, VINDEX_MAGIC_LEN);
    put32(h + 8, VINDEX_VERSION);
    put32(h + 12, (uint32_t)ix->dim);
    put32(h + 16, ix->m);
    put32(h + 20, ix->m0);
    put32(h + 24, ix->ef_construction);
    put32(h + 28, ix->ef_search);
    put32(h + 32, ix->nslots);
    put32(h + 36, ix->count);
    put32(h + 40, ix->entry);
    put32(h + 44, (uint32_t)ix->max_level);
    put64(h + 48, ix->rng);
    size_t n = ix->nslots;
    if (vwrite(vf, h, sizeof(h)) || vwrite(vf, ix->ids, n * sizeof(*ix->ids)) ||
        vwrite(vf, ix->levels, n) || vwrite(vf, ix->state, n) ||
        vwrite(vf, ix->vecs, n * (size_t)ix->dim * sizeof(float)) ||
        vwrite(vf, ix->links0, n * (ix->m0 + 1) * sizeof(uint32_t)))
        return -1;
    for (uint32_t s = 0; s < ix->nslots; s++) {
        if (ix->levels[s] &&
            vwrite(vf, ix->upper[s], (size_t)ix->levels[s] * (ix->m + 1) * sizeof(uint32_t)))
            return -1;
    }
    uint64_t sum = vf->sum;
    return fwrite(&sum, 1, sizeof(sum), vf->f) == sizeof(sum) ? 0 : -1;
}

ah_err_t ah_vindex_save(ah_vindex_t *ix, const char *path)
{
    if (!ix || !path)
        return AH_E_INVAL;
    ah_err_t rc = AH_E_OK;
    size_t plen = strlen(path);
    char *tmp = ah_malloc(plen + 16);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    vfile_t vf = {NULL, 0};
    int created = 0;
    pthread_rwlock_rdlock(&ix->lock);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = AH_E_IO;
        goto out;
    }
    created = 1;
    vf.f = fdopen(fd, "wb");
    if (!vf.f) {
        rc = AH_E_IO;
        goto out;
    }
    fd = -1;
    if (write_body(ix, &vf) || fflush(vf.f) || fsync(fileno(vf.f))) {
        rc = AH_E_IO;
        goto out;
    }
    int closed = fclose(vf.f);
    vf.f = NULL;
    if (closed || rename(tmp, path)) {
        rc = AH_E_IO;
        goto out;
    }
out:
    pthread_rwlock_unlock(&ix->lock);
    if (vf.f)
        fclose(vf.f);
    if (fd >= 0)
        close(fd);
    if (rc && created)
        unlink(tmp);
    ah_free(tmp);
    return rc;
}

/* Every link of s on one level points to a slot in range. */
static int links_valid(const uint32_t *ln, uint32_t mmax, uint32_t nslots)
{
    if (ln[0] > mmax)
        return 0;
    for (uint32_t j = 0; j < ln[0]; j++) {
        if (ln[1 + j] >= nslots)
            return 0;
    }
    return 1;
}

/* Read and check the arrays after the header; ix has cap for nslots. */
static ah_err_t read_body(ah_vindex_t *ix, vfile_t *vf, uint32_t nslots, size_t fixed, size_t fsize)
{
    size_t n = nslots;
    if (vread(vf, ix->ids, n * sizeof(*ix->ids)) || vread(vf, ix->levels, n) ||
        vread(vf, ix->state, n) || vread(vf, ix->vecs, n * (size_t)ix->dim * sizeof(float)) ||
        vread(vf, ix->links0, n * (ix->m0 + 1) * sizeof(uint32_t)))
        return AH_E_PARSE;
    ix->nslots = nslots;
    size_t need = fixed;
    size_t upper_each = (size_t)(ix->m + 1) * sizeof(uint32_t);
    for (uint32_t s = 0; s < nslots; s++) {
        if (ix->levels[s] > AH_VINDEX_MAX_LEVEL)
            return AH_E_PARSE;
        need += ix->levels[s] * upper_each;
    }
    if (need != fsize)
        return AH_E_PARSE;
    for (uint32_t s = 0; s < nslots; s++) {
        if (!ix->levels[s])
            continue;
        ix->upper[s] = ah_malloc(ix->levels[s] * upper_each);
        ix->upper_bytes += ix->levels[s] * upper_each;
        if (vread(vf, ix->upper[s], ix->levels[s] * upper_each))
            return AH_E_PARSE;
    }
    uint64_t want = vf->sum, got;
    if (fread(&got, 1, sizeof(got), vf->f) != sizeof(got) || got != want)
        return AH_E_PARSE;
    uint32_t live = 0;
    for (uint32_t s = 0; s < nslots; s++) {
        if (ix->state[s] != SLOT_LIVE && ix->state[s] != SLOT_FREE)
            return AH_E_PARSE;
        if (!links_valid(links_at(ix, s, 0), ix->m0, nslots))
            return AH_E_PARSE;
        for (int lc = 1; lc <= ix->levels[s]; lc++) {
            if (!links_valid(links_at(ix, s, lc), ix->m, nslots))
                return AH_E_PARSE;
        }
        const float *v = vec_at(ix, s);
        for (int i = 0; i < ix->dim; i++) {
            if (!isfinite(v[i]))
                return AH_E_PARSE;
        }
        if (ix->state[s] == SLOT_LIVE) {
            if (map_find(ix, ix->ids[s]) != NONE)
                return AH_E_PARSE; /* duplicate id */
            map_insert(ix, s);
            live++;
        }
    }
    if (live != ix->count)
        return AH_E_PARSE;
    if (live && (ix->entry >= nslots || ix->state[ix->entry] != SLOT_LIVE ||
                 ix->levels[ix->entry] != ix->max_level))
        return AH_E_PARSE;
    if (!live && (ix->entry != NONE || ix->max_level != -1 || nslots))
        return AH_E_PARSE;
    /* Rebuild the free list, lowest slot reused first. */
    ix->free_head = NONE;
    for (uint32_t s = nslots; s > 0; s--) {
        if (ix->state[s - 1] == SLOT_FREE) {
            ix->ids[s - 1] = ix->free_head;
            ix->free_head = s - 1;
        }
    }
    return AH_E_OK;
}

ah_vindex_t *ah_vindex_load(const char *path, ah_err_t *err)
{
    ah_err_t rc = AH_E_OK;
    ah_vindex_t *ix = NULL;
    vfile_t vf = {NULL, 0};
    if (!path) {
        rc = AH_E_INVAL;
        goto out;
    }
    vf.f = fopen(path, "rb");
    if (!vf.f) {
        rc = errno == ENOENT ? AH_E_NOTFOUND : AH_E_IO;
        goto out;
    }
    struct stat st;
    if (fstat(fileno(vf.f), &st) || !S_ISREG(st.st_mode)) {
        rc = AH_E_IO;
        goto out;
    }
    size_t fsize = (size_t)st.st_size;
    unsigned char h[VINDEX_HEADER_LEN];
    if (vread(&vf, h, sizeof(h)) || memcmp(h, VINDEX_MAGIC, VINDEX_MAGIC_LEN)) {
        rc = AH_E_PARSE;
        goto out;
    }
    if (get32(h + 8) != VINDEX_VERSION) {
        rc = AH_E_UNSUPPORTED;
        goto out;
    }
    uint32_t dim = get32(h + 12), m = get32(h + 16), m0 = get32(h + 20);
    uint32_t efc = get32(h + 24), efs = get32(h + 28), nslots = get32(h + 32);
    int32_t max_level = (int32_t)get32(h + 44);
    if (dim < 1 || dim > AH_EMBED_MAX_DIM || m < 2 || m > AH_VINDEX_MAX_M || m0 < m ||
        m0 > 2 * AH_VINDEX_MAX_M || efc < 1 || efc > AH_VINDEX_MAX_EF || efs < 1 ||
        efs > AH_VINDEX_MAX_EF || nslots > AH_VINDEX_MAX_ENTRIES || get32(h + 36) > nslots ||
        max_level < -1 || max_level > AH_VINDEX_MAX_LEVEL || get64(h + 56) != 0) {
        rc = AH_E_PARSE;
        goto out;
    }
    /* The fixed-size part must fit in the file before anything is allocated
     * for it (no overflow: nslots < 2^27, per-slot bytes < 2^15). */
    size_t per_slot = 8 + 1 + 1 + (size_t)dim * 4 + (size_t)(m0 + 1) * 4;
    size_t fixed = VINDEX_HEADER_LEN + (size_t)nslots * per_slot + 8;
    if (fixed > fsize) {
        rc = AH_E_PARSE;
        goto out;
    }
    ix = vindex_alloc((int)dim, m, m0);
    ix->ef_construction = efc;
    ix->ef_search = efs;
    ix->count = get32(h + 36);
    ix->entry = get32(h + 40);
    ix->max_level = max_level;
    ix->rng = get64(h + 48);
    set_cap(ix, nslots > AH_VINDEX_MIN_CAP ? nslots : AH_VINDEX_MIN_CAP);
    rc = read_body(ix, &vf, nslots, fixed, fsize);
out:
    if (vf.f)
        fclose(vf.f);
    if (rc) {
        ah_vindex_free(ix);
        ix = NULL;
    }
    if (err)
        *err = rc;
    return ix;
}
