/* fuzz_score.c - libFuzzer driver for the offline-evaluation scorers: the
 * answers are a model's output and the judge's verdicts too, untrusted
 * bytes; schemas and patterns come from a data set's author.
 *
 * The input is split at its first NUL into two texts, which serve as
 * answer and reference, schema and answer, pattern and answer. Checked:
 * no crash or leak, results in their ranges (a choice within the choices,
 * judge scores 1..10 only on success, F1 in [0, 1] and 1 for a text with
 * itself), normalization never lengthens, pairwise combination symmetric. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "quality/score.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_text(const char *a, const char *b)
{
    ah_buf_t n;
    ah_buf_init(&n, AH_SCORE_MAX_TEXT + 1);
    if (ah_score_normalize(a, &n) != AH_E_OK || n.len > strlen(a))
        abort();
    ah_buf_free(&n);
    double f = ah_score_f1(a, b);
    if (f < 0 || f > 1 || ah_score_f1(a, a) != 1)
        abort();
    if (ah_score_exact(a, a) != 1 || ah_score_normalized(a, a) != 1)
        abort();
}

static void check_choice(const char *a, int n)
{
    char letter;
    int idx = ah_score_choice(a, n, &letter);
    if (idx < -1 || idx >= n || (idx >= 0 && letter != 'A' + idx) || (idx < 0 && letter))
        abort();
}

static void check_judge(const char *a)
{
    int s[AH_JUDGE_DEFAULT_N];
    char why[64];
    if (ah_judge_parse(a, NULL, 0, s, why, sizeof why) == AH_E_OK)
        for (int i = 0; i < AH_JUDGE_DEFAULT_N; i++)
            if (s[i] < AH_JUDGE_SCORE_MIN || s[i] > AH_JUDGE_SCORE_MAX)
                abort();
    ah_judge_verdict_t v = ah_judge_pairwise_parse(a);
    if (v < AH_JUDGE_FAIL || v > AH_JUDGE_B)
        abort();
    /* the combination does not care which order came first, up to naming */
    ah_judge_verdict_t w = ah_judge_pairwise_combine(v, v);
    if (v != AH_JUDGE_FAIL && w != AH_JUDGE_TIE)
        abort();
}

static void check_schema_and_regex(const char *a, const char *b)
{
    char err[256];
    int score = -1;
    ah_err_t rc = ah_score_json_schema(b, a, &score, err, sizeof err);
    if ((rc != AH_E_OK && score != 0) || score < 0 || score > 1)
        abort();
    score = -1;
    rc = ah_score_regex(b, a, &score, err, sizeof err);
    if ((rc != AH_E_OK && score != 0) || score < 0 || score > 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > AH_SCORE_MAX_TEXT)
        return 0;
    char *a = ah_malloc(size + 2);
    memcpy(a, data, size);
    a[size] = '\0';
    a[size + 1] = '\0';
    size_t alen = strlen(a);
    const char *b = a + alen + 1; /* after the first NUL; "" when none */
    check_text(a, b);
    check_choice(a, size ? 2 + data[0] % (AH_SCORE_MAX_CHOICES - 1) : 4);
    check_judge(a);
    check_schema_and_regex(a, b);
    ah_free(a);
    return 0;
}
