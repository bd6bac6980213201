/* bench.c - tokens per second of ahorro's C tokenizer, single-threaded, on a
 * corpus of JSON strings (one a line, as tests/tokenize/corpus.mjs writes).
 * Built and run by bench/tokenize/run.sh:
 *
 *   bench CORPUS.jsonl DATA_DIR ENCODING ROUNDS
 *
 * Prints one line a round: "tokens seconds". Each round encodes every text
 * to ids (into a reused buffer, as a caller that keeps ids would). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "tokenize/bpe.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench CORPUS.jsonl DATA_DIR ENCODING ROUNDS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    size_t cap = 1024, n = 0, maxlen = 0;
    json_t **texts = ah_malloc(cap * sizeof *texts);
    char *line = NULL;
    size_t linecap = 0;
    ssize_t got;
    while ((got = getline(&line, &linecap, f)) > 0) {
        json_error_t err;
        json_t *v = json_loadb(line, (size_t)got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(v)) {
            json_decref(v);
            continue;
        }
        if (n == cap)
            texts = ah_realloc(texts, (cap *= 2) * sizeof *texts);
        texts[n++] = v;
        if (json_string_length(v) > maxlen)
            maxlen = json_string_length(v);
    }
    free(line);
    fclose(f);
    char err[512];
    ah_bpe_t *enc = NULL;
    if (ah_bpe_load(argv[2], argv[3], &enc, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    long rounds = strtol(argv[4], NULL, 10);
    uint32_t *ids = ah_malloc((maxlen + 1) * sizeof *ids); /* at most one token a byte */
    for (long r = 0; r < rounds; r++) {
        size_t tokens = 0;
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
            size_t k = 0;
            ah_bpe_encode(enc, json_string_value(texts[i]), json_string_length(texts[i]), 0, ids,
                          maxlen + 1, &k);
            tokens += k;
        }
        double dt = now() - t0;
        printf("%zu %.6f\n", tokens, dt);
        fflush(stdout);
    }
    ah_free(ids);
    ah_bpe_free(enc);
    for (size_t i = 0; i < n; i++)
        json_decref(texts[i]);
    ah_free(texts);
    return 0;
}
