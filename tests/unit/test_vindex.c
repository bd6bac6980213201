/* test_vindex.c - the HNSW vector index: lookups, recall against brute force,
 * removal and slot reuse, replacement, persistence and its validation, and
 * lookups racing adds. */
#include <check.h>

#include "check_run.h"
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/vindex.h"

#define DIM 48
#define CLUSTERS 40

/* ---- clustered unit vectors from a seeded generator ---------------------- */

typedef struct gen {
    uint64_t s;
    float centres[CLUSTERS][DIM];
} gen_t;

static uint64_t gen_u64(gen_t *g)
{
    uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float gen_gauss(gen_t *g)
{
    double u = ((gen_u64(g) >> 11) + 1) * (1.0 / 9007199254740992.0);
    double v = (gen_u64(g) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void normalise(float *v)
{
    double n = 0;
    for (int i = 0; i < DIM; i++)
        n += (double)v[i] * v[i];
    n = sqrt(n);
    for (int i = 0; i < DIM; i++)
        v[i] = (float)(v[i] / n);
}

static void gen_init(gen_t *g, uint64_t seed)
{
    g->s = seed;
    for (int c = 0; c < CLUSTERS; c++) {
        for (int i = 0; i < DIM; i++)
            g->centres[c][i] = gen_gauss(g);
        normalise(g->centres[c]);
    }
}

/* A point near a random centre. */
static void gen_point(gen_t *g, float *v)
{
    int c = (int)(gen_u64(g) % CLUSTERS);
    for (int i = 0; i < DIM; i++)
        v[i] = g->centres[c][i] + 0.15f * gen_gauss(g);
    normalise(v);
}

/* v moved a little: a paraphrase of a stored text. */
static void perturb(gen_t *g, const float *src, float *v)
{
    for (int i = 0; i < DIM; i++)
        v[i] = src[i] + 0.03f * gen_gauss(g);
    normalise(v);
}

static float dotp(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < DIM; i++)
        s += a[i] * b[i];
    return s;
}

static float *gen_set(gen_t *g, int n)
{
    float *v = malloc((size_t)n * DIM * sizeof(float));
    for (int i = 0; i < n; i++)
        gen_point(g, v + (size_t)i * DIM);
    return v;
}

static ah_vindex_t *build(const float *v, int n)
{
    ah_vindex_t *ix = ah_vindex_new(DIM);
    ck_assert_ptr_nonnull(ix);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(ah_vindex_add(ix, (uint64_t)i, v + (size_t)i * DIM), AH_E_OK);
    ck_assert_uint_eq(ah_vindex_count(ix), (size_t)n);
    return ix;
}

/* Exact top-k ids of q among v[0..n) whose live[] flag is set (NULL: all). */
static void brute(const float *v, int n, const unsigned char *live, const float *q, int k,
                  uint64_t *ids)
{
    float best[16];
    int got = 0;
    for (int i = 0; i < n; i++) {
        if (live && !live[i])
            continue;
        float s = dotp(q, v + (size_t)i * DIM);
        if (got == k && s <= best[k - 1])
            continue;
        int j = got < k ? got++ : k - 1;
        while (j > 0 && best[j - 1] < s) {
            best[j] = best[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        best[j] = s;
        ids[j] = (uint64_t)i;
    }
}

/* ---- tests -------------------------------------------------------------- */

START_TEST(empty_index)
{
    ck_assert_ptr_null(ah_vindex_new(0));
    ck_assert_ptr_null(ah_vindex_new(-3));
    ah_vindex_t *ix = ah_vindex_new(DIM);
    float q[DIM] = {1};
    ah_vindex_hit_t hits[4];
    ck_assert_int_eq(ah_vindex_search(ix, q, 4, hits), 0);
    ck_assert_uint_eq(ah_vindex_count(ix), 0);
    ck_assert_int_eq(ah_vindex_dim(ix), DIM);
    ck_assert_int_eq(ah_vindex_remove(ix, 1), AH_E_NOTFOUND);
    ck_assert_uint_lt(ah_vindex_memory(ix), 1024); /* an empty scope is cheap */
    /* A handful of entries costs a handful of slots, not a preallocation. */
    for (int i = 0; i < 3; i++) {
        q[0] = (float)(i == 0);
        q[1] = (float)(i == 1);
        q[2] = (float)(i == 2);
        ck_assert_int_eq(ah_vindex_add(ix, (uint64_t)i, q), AH_E_OK);
    }
    ck_assert_uint_lt(ah_vindex_memory(ix), 4096);
    q[0] = NAN;
    ck_assert_int_eq(ah_vindex_add(ix, 9, q), AH_E_INVAL);
    ck_assert_int_eq(ah_vindex_search(ix, q, 0, hits), 0);
    ah_vindex_free(ix);
    ah_vindex_free(NULL);
}
END_TEST

START_TEST(exact_match)
{
    gen_t g;
    gen_init(&g, 1);
    int n = 800;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, n);
    int found = 0;
    for (int i = 0; i < n; i++) {
        ah_vindex_hit_t hit;
        ck_assert_int_eq(ah_vindex_search(ix, v + (size_t)i * DIM, 1, &hit), 1);
        if (hit.id == (uint64_t)i) {
            found++;
            ck_assert_float_eq_tol(hit.sim, 1.0f, 1e-4f);
        }
    }
    ck_assert_int_ge(found, n * 99 / 100);
    /* Fewer entries than k: all of them, best first. */
    ah_vindex_t *small = build(v, 3);
    ah_vindex_hit_t hits[10];
    ck_assert_int_eq(ah_vindex_search(small, v, 10, hits), 3);
    ck_assert_uint_eq(hits[0].id, 0);
    ck_assert(hits[0].sim >= hits[1].sim && hits[1].sim >= hits[2].sim);
    ah_vindex_free(small);
    ah_vindex_free(ix);
    free(v);
}
END_TEST

/* recall@k of the index over nq queries against brute force on the live set. */
static double recall(ah_vindex_t *ix, const float *v, int n, const unsigned char *live,
                     const float *qs, int nq, int k)
{
    int hit = 0, total = 0;
    for (int qi = 0; qi < nq; qi++) {
        const float *q = qs + (size_t)qi * DIM;
        uint64_t truth[16];
        brute(v, n, live, q, k, truth);
        ah_vindex_hit_t got[16];
        int m = ah_vindex_search(ix, q, k, got);
        ck_assert_int_le(m, k);
        for (int i = 1; i < m; i++)
            ck_assert(got[i - 1].sim >= got[i].sim);
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < m; j++) {
                if (got[j].id == truth[i]) {
                    hit++;
                    break;
                }
            }
        }
        total += k;
    }
    return (double)hit / total;
}

START_TEST(recall_vs_brute)
{
    gen_t g;
    gen_init(&g, 2);
    int n = 3000, nq = 200;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, n);
    float *qs = malloc((size_t)nq * DIM * sizeof(float));
    for (int i = 0; i < nq; i++) {
        if (i % 2)
            gen_point(&g, qs + (size_t)i * DIM);
        else
            perturb(&g, v + (size_t)(gen_u64(&g) % n) * DIM, qs + (size_t)i * DIM);
    }
    double r10 = recall(ix, v, n, NULL, qs, nq, 10);
    double r1 = recall(ix, v, n, NULL, qs, nq, 1);
    ck_assert_msg(r10 >= 0.95, "recall@10 %.3f", r10);
    ck_assert_msg(r1 >= 0.95, "recall@1 %.3f", r1);
    ah_vindex_free(ix);
    free(qs);
    free(v);
}
END_TEST

START_TEST(remove_never_returned)
{
    gen_t g;
    gen_init(&g, 3);
    int n = 1500, nq = 150;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, n);
    unsigned char *live = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        live[i] = i % 3 != 0;
        if (!live[i])
            ck_assert_int_eq(ah_vindex_remove(ix, (uint64_t)i), AH_E_OK);
    }
    ck_assert_int_eq(ah_vindex_remove(ix, 0), AH_E_NOTFOUND);
    ck_assert_uint_eq(ah_vindex_count(ix), (size_t)(n - (n + 2) / 3));
    for (int i = 0; i < n; i++) {
        ah_vindex_hit_t hits[10];
        int m = ah_vindex_search(ix, v + (size_t)i * DIM, 10, hits);
        ck_assert_int_eq(m, 10);
        for (int j = 0; j < m; j++)
            ck_assert_msg(live[hits[j].id], "removed id %llu returned",
                          (unsigned long long)hits[j].id);
    }
    /* Still navigable: recall on what is left. */
    float *qs = malloc((size_t)nq * DIM * sizeof(float));
    for (int i = 0; i < nq; i++)
        perturb(&g, v + (size_t)(gen_u64(&g) % n) * DIM, qs + (size_t)i * DIM);
    double r10 = recall(ix, v, n, live, qs, nq, 10);
    ck_assert_msg(r10 >= 0.95, "recall@10 after removals %.3f", r10);
    /* Remove everything, then the index works again from scratch. */
    for (int i = 0; i < n; i++) {
        if (live[i])
            ck_assert_int_eq(ah_vindex_remove(ix, (uint64_t)i), AH_E_OK);
    }
    ah_vindex_hit_t hit;
    ck_assert_int_eq(ah_vindex_search(ix, v, 1, &hit), 0);
    ck_assert_int_eq(ah_vindex_add(ix, 42, v), AH_E_OK);
    ck_assert_int_eq(ah_vindex_search(ix, v, 1, &hit), 1);
    ck_assert_uint_eq(hit.id, 42);
    ah_vindex_free(ix);
    free(qs);
    free(live);
    free(v);
}
END_TEST

START_TEST(slot_reuse_bounded)
{
    gen_t g;
    gen_init(&g, 4);
    int window = 300, rounds = 12;
    int n = window * (rounds + 1);
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, window);
    size_t peak = ah_vindex_memory(ix);
    /* A capped cache: each add evicts the oldest entry. */
    for (int i = window; i < n; i++) {
        ck_assert_int_eq(ah_vindex_remove(ix, (uint64_t)(i - window)), AH_E_OK);
        ck_assert_int_eq(ah_vindex_add(ix, (uint64_t)i, v + (size_t)i * DIM), AH_E_OK);
    }
    ck_assert_uint_eq(ah_vindex_count(ix), (size_t)window);
    /* Same slot capacity; only upper-level link blocks may differ a little. */
    ck_assert_uint_le(ah_vindex_memory(ix), peak + peak / 10);
    int found = 0;
    for (int i = n - window; i < n; i++) {
        ah_vindex_hit_t hit;
        ck_assert_int_eq(ah_vindex_search(ix, v + (size_t)i * DIM, 1, &hit), 1);
        ck_assert_uint_ge(hit.id, (uint64_t)(n - window));
        found += hit.id == (uint64_t)i;
    }
    ck_assert_int_ge(found, window * 98 / 100);
    ah_vindex_free(ix);
    free(v);
}
END_TEST

START_TEST(replace_id)
{
    gen_t g;
    gen_init(&g, 5);
    int n = 400;
    float *v = gen_set(&g, n + 1);
    ah_vindex_t *ix = build(v, n);
    const float *fresh = v + (size_t)n * DIM;
    size_t mem = ah_vindex_memory(ix);
    ck_assert_int_eq(ah_vindex_add(ix, 7, fresh), AH_E_OK);
    ck_assert_uint_eq(ah_vindex_count(ix), (size_t)n);
    ck_assert_uint_le(ah_vindex_memory(ix), mem + 1024);
    ah_vindex_hit_t hits[3];
    ck_assert_int_ge(ah_vindex_search(ix, fresh, 3, hits), 1);
    ck_assert_uint_eq(hits[0].id, 7);
    ck_assert_float_eq_tol(hits[0].sim, 1.0f, 1e-4f);
    /* The old vector no longer matches id 7 exactly. */
    int m = ah_vindex_search(ix, v + 7 * DIM, 3, hits);
    for (int i = 0; i < m; i++) {
        if (hits[i].id == 7)
            ck_assert_float_eq_tol(hits[i].sim, dotp(fresh, v + 7 * DIM), 1e-4f);
    }
    /* Replacing the only entry. */
    ah_vindex_t *one = ah_vindex_new(DIM);
    ck_assert_int_eq(ah_vindex_add(one, 1, v), AH_E_OK);
    ck_assert_int_eq(ah_vindex_add(one, 1, fresh), AH_E_OK);
    ck_assert_uint_eq(ah_vindex_count(one), 1);
    ck_assert_int_eq(ah_vindex_search(one, fresh, 3, hits), 1);
    ck_assert_float_eq_tol(hits[0].sim, 1.0f, 1e-4f);
    ah_vindex_free(one);
    ah_vindex_free(ix);
    free(v);
}
END_TEST

static void tmp_path(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/ah_vindex_test_%d_%s.bin", (int)getpid(), tag);
}

static void same_answers(ah_vindex_t *a, ah_vindex_t *b, gen_t *g)
{
    for (int i = 0; i < 100; i++) {
        float q[DIM];
        gen_point(g, q);
        ah_vindex_hit_t x[10], y[10];
        int n = ah_vindex_search(a, q, 10, x);
        ck_assert_int_eq(ah_vindex_search(b, q, 10, y), n);
        for (int j = 0; j < n; j++) {
            ck_assert_uint_eq(x[j].id, y[j].id);
            ck_assert(x[j].sim == y[j].sim);
        }
    }
}

START_TEST(save_load_round_trip)
{
    gen_t g;
    gen_init(&g, 6);
    int n = 1000;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, n);
    for (int i = 0; i < n; i += 5)
        ck_assert_int_eq(ah_vindex_remove(ix, (uint64_t)i), AH_E_OK);
    char path[256];
    tmp_path(path, sizeof(path), "rt");
    ck_assert_int_eq(ah_vindex_save(ix, path), AH_E_OK);
    ah_err_t err = AH_E_IO;
    ah_vindex_t *back = ah_vindex_load(path, &err);
    ck_assert_int_eq(err, AH_E_OK);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(ah_vindex_count(back), ah_vindex_count(ix));
    ck_assert_int_eq(ah_vindex_dim(back), DIM);
    same_answers(ix, back, &g);
    /* Both go on identically: same slot reuse, same levels. */
    for (int i = 0; i < n; i += 5) {
        ck_assert_int_eq(ah_vindex_add(ix, (uint64_t)(n + i), v + (size_t)i * DIM), AH_E_OK);
        ck_assert_int_eq(ah_vindex_add(back, (uint64_t)(n + i), v + (size_t)i * DIM), AH_E_OK);
    }
    same_answers(ix, back, &g);
    ah_vindex_free(back);
    /* An empty index round-trips too. */
    ah_vindex_t *empty = ah_vindex_new(DIM);
    ck_assert_int_eq(ah_vindex_save(empty, path), AH_E_OK);
    back = ah_vindex_load(path, &err);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(ah_vindex_count(back), 0);
    ah_vindex_free(back);
    ah_vindex_free(empty);
    unlink(path);
    ah_vindex_free(ix);
    free(v);
}
END_TEST

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*len);
    ck_assert_uint_eq(fread(b, 1, *len, f), *len);
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    fclose(f);
}

static void expect_load_fails(const char *path)
{
    ah_err_t err = AH_E_OK;
    ah_vindex_t *ix = ah_vindex_load(path, &err);
    ck_assert_ptr_null(ix);
    ck_assert_int_ne(err, AH_E_OK);
}

START_TEST(load_rejects_bad_files)
{
    gen_t g;
    gen_init(&g, 7);
    int n = 300;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, n);
    char path[256], bad[256];
    tmp_path(path, sizeof(path), "good");
    tmp_path(bad, sizeof(bad), "bad");
    ck_assert_int_eq(ah_vindex_save(ix, path), AH_E_OK);
    size_t len;
    unsigned char *b = slurp(path, &len);

    ah_err_t err = AH_E_OK;
    ck_assert_ptr_null(ah_vindex_load("/nonexistent/dir/x.bin", &err));
    ck_assert_int_eq(err, AH_E_NOTFOUND);

    /* Truncated anywhere. */
    size_t cuts[] = {0, 7, 8, 40, 63, 64, 65, 1000, len / 2, len - 9, len - 8, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        spit(bad, b, cuts[i]);
        expect_load_fails(bad);
    }
    /* Trailing bytes. */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    spit(bad, longer, len + 1);
    expect_load_fails(bad);
    free(longer);
    /* One corrupt byte anywhere: header fields, arrays, checksum. */
    unsigned char *c = malloc(len);
    for (size_t pos = 0; pos < len; pos += (pos < 128 ? 1 : 997)) {
        memcpy(c, b, len);
        c[pos] ^= 0x5a;
        spit(bad, c, len);
        expect_load_fails(bad);
    }
    /* Garbage after a valid header, and a header claiming a huge index. */
    memcpy(c, b, len);
    for (size_t pos = 64; pos < len; pos++)
        c[pos] = (unsigned char)(pos * 131 + 7);
    spit(bad, c, len);
    expect_load_fails(bad);
    memcpy(c, b, len);
    uint32_t huge = 1u << 26;
    memcpy(c + 32, &huge, 4);
    spit(bad, c, len);
    expect_load_fails(bad);
    memcpy(c, b, len);
    uint32_t version = 99;
    memcpy(c + 8, &version, 4);
    spit(bad, c, len);
    err = AH_E_OK;
    ck_assert_ptr_null(ah_vindex_load(bad, &err));
    ck_assert_int_eq(err, AH_E_UNSUPPORTED);
    /* The good file still loads. */
    ah_vindex_t *back = ah_vindex_load(path, &err);
    ck_assert_ptr_nonnull(back);
    ah_vindex_free(back);
    free(c);
    free(b);
    unlink(path);
    unlink(bad);
    ah_vindex_free(ix);
    free(v);
}
END_TEST

START_TEST(deterministic_build)
{
    gen_t g;
    gen_init(&g, 8);
    int n = 600;
    float *v = gen_set(&g, n);
    ah_vindex_t *a = build(v, n);
    ah_vindex_t *b = build(v, n);
    ck_assert_uint_eq(ah_vindex_memory(a), ah_vindex_memory(b));
    same_answers(a, b, &g);
    ah_vindex_free(a);
    ah_vindex_free(b);
    free(v);
}
END_TEST

typedef struct racer {
    ah_vindex_t *ix;
    const float *v;
    int n;
    int done;
    int searches;
    int bad;
} racer_t;

static void *search_loop(void *arg)
{
    racer_t *r = arg;
    gen_t g;
    gen_init(&g, 99);
    int i = 0;
    while (!__atomic_load_n(&r->done, __ATOMIC_ACQUIRE) || i < 50) {
        ah_vindex_hit_t hits[10];
        int m = ah_vindex_search(r->ix, r->v + (size_t)(i % r->n) * DIM, 10, hits);
        if (m < 1 || m > 10)
            r->bad++;
        for (int j = 1; j < m; j++) {
            if (hits[j - 1].sim < hits[j].sim)
                r->bad++;
        }
        i++;
    }
    r->searches = i;
    return NULL;
}

START_TEST(concurrent_search_during_adds)
{
    gen_t g;
    gen_init(&g, 9);
    int n = 1200, first = 300;
    float *v = gen_set(&g, n);
    ah_vindex_t *ix = build(v, first);
    racer_t r[2] = {{ix, v, first, 0, 0, 0}, {ix, v, first, 0, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, search_loop, &r[i]), 0);
    for (int i = first; i < n; i++) {
        ck_assert_int_eq(ah_vindex_add(ix, (uint64_t)i, v + (size_t)i * DIM), AH_E_OK);
        if (i % 4 == 0)
            ck_assert_int_eq(ah_vindex_remove(ix, (uint64_t)(i - first)), AH_E_OK);
    }
    for (int i = 0; i < 2; i++) {
        __atomic_store_n(&r[i].done, 1, __ATOMIC_RELEASE);
        pthread_join(t[i], NULL);
        ck_assert_int_eq(r[i].bad, 0);
        ck_assert_int_ge(r[i].searches, 50);
    }
    ah_vindex_free(ix);
    free(v);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("vindex");
    TCase *tc = tcase_create("vindex");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, empty_index);
    tcase_add_test(tc, exact_match);
    tcase_add_test(tc, recall_vs_brute);
    tcase_add_test(tc, remove_never_returned);
    tcase_add_test(tc, slot_reuse_bounded);
    tcase_add_test(tc, replace_id);
    tcase_add_test(tc, save_load_round_trip);
    tcase_add_test(tc, load_rejects_bad_files);
    tcase_add_test(tc, deterministic_build);
    tcase_add_test(tc, concurrent_search_during_adds);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
