/* vindex_bench.c - build time, memory, lookup latency and recall of the HNSW
 * vector index (src/cache/vindex.c) against brute force.
 *
 *   vindex_bench [-n 10000,100000,1000000] [-q 10000] [-r 1000] [-R 3] [-c 4000] [-s SEED]
 *                [-t DIR] [-e 16,32,64]   (the -e sweep needs a -DVINDEX_TUNE build)
 *
 * Data: a Gaussian mixture in 100 dimensions, like sentence embeddings
 * (topics, paraphrases): -c centres drawn from N(0, I) and normalised; each
 * centre has a spread sigma_c uniform in [0.05, 0.10]; a stored vector picks
 * a centre uniformly and is normalise(centre + sigma_c * N(0, I)). Queries
 * alternate: a stored vector plus N(0, 0.02^2 I) noise, normalised (a
 * paraphrase, cosine ~0.98 to its source), and a fresh point of the mixture
 * (a new question on a known topic). Everything is seeded.
 *
 * Output: one markdown table row per size and measure, on stdout. */
#ifdef VINDEX_TUNE
#include "cache/vindex.c"
#else
#include "cache/vindex.h"
#endif

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define DIM 100
#define MAX_SIZES 8
#define MAX_EFS 16
#define TOPK 10

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(void)
{
    return ((rnd() >> 11) + 1) * (1.0 / 9007199254740992.0);
}

static float gauss(void)
{
    return (float)(sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif()));
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

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct mixture {
    int nc;
    float *centres;
    float *sigma;
} mixture_t;

static void mixture_init(mixture_t *m, int nc)
{
    m->nc = nc;
    m->centres = malloc((size_t)nc * DIM * sizeof(float));
    m->sigma = malloc((size_t)nc * sizeof(float));
    for (int c = 0; c < nc; c++) {
        for (int i = 0; i < DIM; i++)
            m->centres[(size_t)c * DIM + i] = gauss();
        normalise(m->centres + (size_t)c * DIM);
        m->sigma[c] = (float)(0.05 + 0.05 * unif());
    }
}

static void mixture_point(const mixture_t *m, float *v)
{
    int c = (int)(rnd() % (uint64_t)m->nc);
    for (int i = 0; i < DIM; i++)
        v[i] = m->centres[(size_t)c * DIM + i] + m->sigma[c] * gauss();
    normalise(v);
}

/* Brute force: the reference. Same kind of kernel as the index uses. */
#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static float dot_ref(const float *a, const float *b)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= DIM; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= DIM; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_hadd_ps(h, h);
    h = _mm_hadd_ps(h, h);
    float s = _mm_cvtss_f32(h);
    for (; i < DIM; i++)
        s += a[i] * b[i];
    return s;
}
#else
static float dot_ref(const float *a, const float *b)
{
    float s = 0;
    for (int i = 0; i < DIM; i++)
        s += a[i] * b[i];
    return s;
}
#endif

/* Exact top-TOPK of q over v[0..n) with live[i] set (NULL: all). */
static void brute(const float *v, size_t n, const unsigned char *live, const float *q,
                  uint64_t *ids)
{
    float best[TOPK];
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        if (live && !live[i])
            continue;
        float s = dot_ref(q, v + i * DIM);
        if (got == TOPK && s <= best[TOPK - 1])
            continue;
        int j = got < TOPK ? got++ : TOPK - 1;
        while (j > 0 && best[j - 1] < s) {
            best[j] = best[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        best[j] = s;
        ids[j] = i;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

typedef struct lat {
    double p50, p99, max, mean;
} lat_t;

static lat_t lat_of(double *us, size_t n)
{
    lat_t l;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += us[i];
    qsort(us, n, sizeof(*us), cmp_double);
    l.p50 = pct(us, n, 0.50);
    l.p99 = pct(us, n, 0.99);
    l.max = us[n - 1];
    l.mean = sum / (double)n;
    return l;
}

static double median3(double a, double b, double c)
{
    if (a > b) {
        double t = a;
        a = b;
        b = t;
    }
    if (b > c)
        b = c;
    return a > b ? a : b;
}

/* Median over rounds of each statistic (rounds <= 3 uses median3 logic). */
static lat_t lat_median(lat_t *r, int rounds)
{
    if (rounds < 3)
        return r[0];
    lat_t m = {median3(r[0].p50, r[1].p50, r[2].p50), median3(r[0].p99, r[1].p99, r[2].p99),
               median3(r[0].max, r[1].max, r[2].max), median3(r[0].mean, r[1].mean, r[2].mean)};
    return m;
}

static lat_t time_queries(ah_vindex_t *ix, const float *qs, int nq, int k, int rounds)
{
    double *us = malloc((size_t)nq * sizeof(double));
    lat_t r[3];
    ah_vindex_hit_t hits[TOPK];
    volatile uint64_t sink = 0;
    if (rounds > 3)
        rounds = 3;
    for (int round = 0; round < rounds; round++) {
        for (int i = 0; i < nq; i++) {
            double t0 = now_s();
            int m = ah_vindex_search(ix, qs + (size_t)i * DIM, k, hits);
            us[i] = (now_s() - t0) * 1e6;
            sink += m ? hits[0].id : 0;
        }
        r[round] = lat_of(us, (size_t)nq);
    }
    free(us);
    (void)sink;
    return lat_median(r, rounds);
}

typedef struct recall {
    double r1, r10;
} recall_t;

static recall_t measure_recall(ah_vindex_t *ix, const uint64_t *truth, const float *qs, int nr)
{
    int h1 = 0, h10 = 0;
    for (int i = 0; i < nr; i++) {
        const uint64_t *t = truth + (size_t)i * TOPK;
        ah_vindex_hit_t hits[TOPK];
        if (ah_vindex_search(ix, qs + (size_t)i * DIM, 1, hits) == 1 && hits[0].id == t[0])
            h1++;
        int m = ah_vindex_search(ix, qs + (size_t)i * DIM, TOPK, hits);
        for (int a = 0; a < TOPK; a++) {
            for (int b = 0; b < m; b++) {
                if (hits[b].id == t[a]) {
                    h10++;
                    break;
                }
            }
        }
    }
    recall_t r = {(double)h1 / nr, (double)h10 / ((double)nr * TOPK)};
    return r;
}

static int parse_list(const char *s, long *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v <= 0)
            return -1;
        out[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static long parse_one(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (end == s || *end || v <= 0) ? -1 : v;
}

int main(int argc, char **argv)
{
    long sizes[MAX_SIZES] = {10000, 100000, 1000000};
    int nsizes = 3;
    long efs[MAX_EFS];
    int nefs = 0;
    long nq = 10000, nr = 1000, rounds = 3, nc = 4000;
    uint64_t seed = 42;
    const char *tmpdir = "/tmp";
    int opt;
    while ((opt = getopt(argc, argv, "n:q:r:R:c:s:t:e:")) != -1) {
        switch (opt) {
        case 'n':
            nsizes = parse_list(optarg, sizes, MAX_SIZES);
            break;
        case 'e':
            nefs = parse_list(optarg, efs, MAX_EFS);
            break;
        case 'q':
            nq = parse_one(optarg);
            break;
        case 'r':
            nr = parse_one(optarg);
            break;
        case 'R':
            rounds = parse_one(optarg);
            break;
        case 'c':
            nc = parse_one(optarg);
            break;
        case 's':
            seed = (uint64_t)parse_one(optarg);
            break;
        case 't':
            tmpdir = optarg;
            break;
        default:
            fprintf(stderr, "usage: see the comment at the top of vindex_bench.c\n");
            return 2;
        }
    }
    if (nsizes <= 0 || nefs < 0 || nq <= 0 || nr <= 0 || rounds <= 0 || nc <= 0) {
        fprintf(stderr, "vindex_bench: bad arguments\n");
        return 2;
    }
    if (nr > nq)
        nr = nq;
    rng_state = seed;
    mixture_t mix;
    mixture_init(&mix, (int)nc);

    printf("# dim %d, %ld clusters, %ld queries (half paraphrases, half fresh), recall on %ld, "
           "median of %ld rounds\n",
           DIM, nc, nq, nr, rounds);
    for (int si = 0; si < nsizes; si++) {
        size_t n = (size_t)sizes[si];
        float *v = malloc(n * DIM * sizeof(float));
        for (size_t i = 0; i < n; i++)
            mixture_point(&mix, v + i * DIM);
        float *qs = malloc((size_t)nq * DIM * sizeof(float));
        for (long i = 0; i < nq; i++) {
            float *q = qs + (size_t)i * DIM;
            if (i % 2 == 0) {
                const float *src = v + (rnd() % n) * DIM;
                for (int d = 0; d < DIM; d++)
                    q[d] = src[d] + 0.02f * gauss();
                normalise(q);
            } else {
                mixture_point(&mix, q);
            }
        }

        ah_vindex_t *ix = ah_vindex_new(DIM);
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) {
            if (ah_vindex_add(ix, i, v + i * DIM) != AH_E_OK) {
                fprintf(stderr, "add failed\n");
                return 1;
            }
        }
        double build_s = now_s() - t0;
        size_t mem = ah_vindex_memory(ix);

        /* Ground truth, and brute force timed on the same queries. */
        uint64_t *truth = malloc((size_t)nr * TOPK * sizeof(uint64_t));
        double *bus = malloc((size_t)nr * sizeof(double));
        for (long i = 0; i < nr; i++) {
            double b0 = now_s();
            brute(v, n, NULL, qs + (size_t)i * DIM, truth + (size_t)i * TOPK);
            bus[i] = (now_s() - b0) * 1e6;
        }
        lat_t bl = lat_of(bus, (size_t)nr);
        free(bus);

        if (nefs == 0) {
            lat_t l1 = time_queries(ix, qs, (int)nq, 1, (int)rounds);
            lat_t l10 = time_queries(ix, qs, (int)nq, TOPK, (int)rounds);
            recall_t rc = measure_recall(ix, truth, qs, (int)nr);
            /* Persistence at this size. */
            char path[512];
            snprintf(path, sizeof(path), "%s/vindex_bench_%d.bin", tmpdir, (int)getpid());
            double s0 = now_s();
            ah_err_t src = ah_vindex_save(ix, path);
            double save_s = now_s() - s0;
            ah_err_t lerr = AH_E_OK;
            s0 = now_s();
            ah_vindex_t *back = ah_vindex_load(path, &lerr);
            double load_s = now_s() - s0;
            recall_t rb = back ? measure_recall(back, truth, qs, (int)nr) : (recall_t){0, 0};
            FILE *f = fopen(path, "rb");
            long fsize = -1;
            if (f) {
                fseek(f, 0, SEEK_END);
                fsize = ftell(f);
                fclose(f);
            }
            unlink(path);
            ah_vindex_free(back);
            printf("| %zu | %.1f | %.0f | %.1f | %.0f | %.1f / %.1f / %.0f | %.1f / %.1f / %.0f | "
                   "%.4f | %.4f | %.0f / %.0f | %s%.2f / %.2f / %.0f MB | %s%.4f |\n",
                   n, build_s, n / build_s, (double)mem / (1024.0 * 1024.0), (double)mem / n,
                   l1.p50, l1.p99, l1.max, l10.p50, l10.p99, l10.max, rc.r1, rc.r10, bl.p50, bl.p99,
                   src ? "SAVE FAILED " : "", save_s, load_s, fsize / 1048576.0,
                   back ? "" : "LOAD FAILED ", rb.r10);

            /* Churn: remove a fifth at random, add as many fresh points into
             * the freed slots, then recall on the live set. */
            size_t churn = n / 5;
            float *v2 = realloc(v, (n + churn) * DIM * sizeof(float));
            v = v2;
            unsigned char *live = malloc(n + churn);
            memset(live, 1, n);
            memset(live + n, 1, churn);
            size_t removed = 0;
            double c0 = now_s();
            while (removed < churn) {
                size_t i = rnd() % n;
                if (!live[i])
                    continue;
                live[i] = 0;
                ah_vindex_remove(ix, i);
                removed++;
            }
            double rm_s = now_s() - c0;
            c0 = now_s();
            for (size_t i = n; i < n + churn; i++) {
                mixture_point(&mix, v + i * DIM);
                ah_vindex_add(ix, i, v + i * DIM);
            }
            double re_s = now_s() - c0;
            size_t mem2 = ah_vindex_memory(ix);
            long nr2 = nr < 500 ? nr : 500;
            uint64_t *truth2 = malloc((size_t)nr2 * TOPK * sizeof(uint64_t));
            float *qs2 = malloc((size_t)nr2 * DIM * sizeof(float));
            for (long i = 0; i < nr2; i++) {
                float *q = qs2 + (size_t)i * DIM;
                if (i % 2 == 0) {
                    size_t srci;
                    do
                        srci = rnd() % (n + churn);
                    while (!live[srci]);
                    for (int d = 0; d < DIM; d++)
                        q[d] = v[srci * DIM + d] + 0.02f * gauss();
                    normalise(q);
                } else {
                    mixture_point(&mix, q);
                }
                brute(v, n + churn, live, q, truth2 + (size_t)i * TOPK);
            }
            recall_t rc2 = measure_recall(ix, truth2, qs2, (int)nr2);
            printf("| churn %zu | remove %.1f us/op | re-add %.1f us/op | mem %.0f -> %.0f B/entry "
                   "| recall@1 %.4f | recall@10 %.4f |\n",
                   n, rm_s * 1e6 / churn, re_s * 1e6 / churn, (double)mem / n, (double)mem2 / n,
                   rc2.r1, rc2.r10);
            free(truth2);
            free(qs2);
            free(live);
        }
#ifdef VINDEX_TUNE
        for (int e = 0; e < nefs; e++) {
            ix->ef_search = (uint32_t)efs[e];
            lat_t l10 = time_queries(ix, qs, (int)nq, TOPK, (int)rounds);
            lat_t l1 = time_queries(ix, qs, (int)nq, 1, (int)rounds);
            recall_t rc = measure_recall(ix, truth, qs, (int)nr);
            printf("| %zu | %d | %d | %ld | %.1f | %.0f | %.1f / %.1f | %.1f / %.1f | %.4f | %.4f "
                   "|\n",
                   n, AH_VINDEX_M, AH_VINDEX_EF_CONSTRUCTION, efs[e], build_s, (double)mem / n,
                   l1.p50, l1.p99, l10.p50, l10.p99, rc.r1, rc.r10);
        }
#endif
        fflush(stdout);
        ah_vindex_free(ix);
        free(truth);
        free(qs);
        free(v);
    }
    free(mix.centres);
    free(mix.sigma);
    return 0;
}
