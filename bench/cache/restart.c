/* restart.c - how long the answer cache takes to come back after a restart:
 * N semantic entries (100-d vectors, one scope) saved, then loaded with the
 * index files and without them (every vector re-inserted into a new index).
 *
 *   bench/cache/restart N      (built and run by bench/cache/restart.sh) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/store.h"
#include "store/db.h"

#define DIM 100

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double unif(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static double gauss(void)
{
    double u = unif() + 1e-12, v = unif();
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
    char path[] = "/tmp/ahorro-restart-XXXXXX", dir[64];
    int fd = mkstemp(path);
    close(fd);
    snprintf(dir, sizeof dir, "%s-vindex", path);
    sqlite3 *db;
    if (ah_db_open(path, &db))
        return 1;
    ah_cache_t *c = ah_cache_new((size_t)n + 10, 0);
    uint8_t scope[32] = {1};
    float *centres = malloc(sizeof(float) * DIM * 1000);
    for (int i = 0; i < 1000 * DIM; i++)
        centres[i] = (float)gauss();
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        float v[DIM];
        const float *ce = centres + (i % 1000) * DIM;
        double norm = 0;
        for (int d = 0; d < DIM; d++) {
            v[d] = ce[d] + 0.3f * (float)gauss();
            norm += v[d] * v[d];
        }
        for (int d = 0; d < DIM; d++)
            v[d] /= (float)sqrt(norm);
        uint8_t key[32];
        for (int k = 0; k < 32; k++)
            key[k] = (uint8_t)(unif() * 256);
        char answer[64];
        int len = snprintf(answer, sizeof answer, "{\"n\":%ld}", i);
        ah_cache_put_t p = {.key = key, .tenant = "t", .ns = "", .model = "m", .answer = answer,
                            .answer_len = (size_t)len, .now_ms = 1000, .ttl_ms = 1000000000,
                            .scope = scope, .vec = v, .dim = DIM};
        ah_cache_insert(c, &p);
    }
    double t_build = now_s() - t0;
    t0 = now_s();
    ah_cache_save(c, db, 2000, dir);
    double t_save = now_s() - t0;
    ah_cache_free(c);
    c = ah_cache_new((size_t)n + 10, 0);
    t0 = now_s();
    ah_cache_load(c, db, 3000, dir);
    double t_load_ix = now_s() - t0;
    ah_cache_free(c);
    c = ah_cache_new((size_t)n + 10, 0);
    t0 = now_s();
    ah_cache_load(c, db, 3000, NULL);
    double t_load_rebuild = now_s() - t0;
    ah_cache_free(c);
    printf("| %ld | %.1f | %.1f | %.1f | %.1f |\n", n, t_build, t_save, t_load_ix, t_load_rebuild);
    sqlite3_close(db);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s %s-wal %s-shm", dir, path, path, path);
    return system(cmd) != 0;
}
