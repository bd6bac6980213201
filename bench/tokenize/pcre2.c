/* pcre2.c - the measurement behind docs/tokenizer.md's choice of pre-tokenizer:
 * the hand-written scanners of src/tokenize/bpe.c against PCRE2 (JIT) running
 * tiktoken's own regexes, on the same corpus: time to split it into pieces, and
 * how many texts split differently. Not part of the build:
 *
 *   apt-get install libpcre2-dev
 *   cc -O2 -std=c17 -D_GNU_SOURCE -Isrc -o /tmp/pcre2 bench/tokenize/pcre2.c \
 *      build/libahorro.a $(pkg-config --cflags --libs libpcre2-8 jansson) -pthread -lm
 *   /tmp/pcre2 CORPUS.jsonl        (a corpus as bench/tokenize/run.sh writes it)
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <time.h>

#include "tokenize/bpe.c"

static const char *O200K_PAT =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*"
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *CL100K_PAT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                "\\s+(?!\\S)|\\s+";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    FILE *f = fopen(argv[1], "r");
    if (!f)
        return 1;
    json_t *texts = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    while ((got = getline(&line, &cap, f)) > 0)
        json_array_append_new(texts, json_loadb(line, (size_t)got, JSON_DECODE_ANY, NULL));
    fclose(f);
    free(line);
    size_t n = json_array_size(texts);
    for (int which = 0; which < 2; which++) {
        int errc;
        PCRE2_SIZE erroff;
        pcre2_code *re =
            pcre2_compile((PCRE2_SPTR)(which ? CL100K_PAT : O200K_PAT), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP, &errc, &erroff, NULL);
        if (!re || pcre2_jit_compile(re, PCRE2_JIT_COMPLETE))
            return 1;
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        size_t pieces_re = 0, pieces_hand = 0, differ = 0;
        double t_re = 1e9, t_hand = 1e9;
        for (int round = 0; round < 5; round++) {
            double t0 = now();
            pieces_re = 0;
            for (size_t i = 0; i < n; i++) {
                const unsigned char *s =
                    (const unsigned char *)json_string_value(json_array_get(texts, i));
                size_t len = json_string_length(json_array_get(texts, i)), at = 0;
                while (at < len &&
                       pcre2_jit_match(re, s, len, at, PCRE2_NO_UTF_CHECK, md, NULL) > 0) {
                    at = pcre2_get_ovector_pointer(md)[1];
                    pieces_re++;
                }
            }
            double t1 = now();
            pieces_hand = 0;
            for (size_t i = 0; i < n; i++) {
                const unsigned char *s =
                    (const unsigned char *)json_string_value(json_array_get(texts, i));
                size_t len = json_string_length(json_array_get(texts, i));
                for (size_t at = 0; at < len; pieces_hand++)
                    at = which ? piece_cl100k(s, at, len) : piece_o200k(s, at, len);
            }
            double t2 = now();
            t_re = t1 - t0 < t_re ? t1 - t0 : t_re;
            t_hand = t2 - t1 < t_hand ? t2 - t1 : t_hand;
        }
        for (size_t i = 0; i < n; i++) {
            const unsigned char *s =
                (const unsigned char *)json_string_value(json_array_get(texts, i));
            size_t len = json_string_length(json_array_get(texts, i)), a = 0, b = 0;
            while (a < len) {
                if (pcre2_jit_match(re, s, len, a, PCRE2_NO_UTF_CHECK, md, NULL) <= 0 ||
                    pcre2_get_ovector_pointer(md)[0] != a)
                    break;
                size_t ea = pcre2_get_ovector_pointer(md)[1];
                size_t eb = which ? piece_cl100k(s, b, len) : piece_o200k(s, b, len);
                if (ea != eb)
                    break;
                a = b = ea;
            }
            differ += a < len;
        }
        printf("%s: %zu texts; pieces: pcre2 %zu, hand %zu; texts split differently: %zu; "
               "best of 5: pcre2-jit %.3f s, hand %.3f s (%.1fx)\n",
               which ? "cl100k_base" : "o200k_base", n, pieces_re, pieces_hand, differ, t_re,
               t_hand, t_re / t_hand);
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
    json_decref(texts);
    return 0;
}
