/* fuzz_intent.c - libFuzzer driver for the labelled history of the semantic
 * cache (src/cache/intent.c): the CSV file is a tenant's, and every prompt the
 * classifier reads is a client's; both are untrusted bytes.
 *
 * Each input is (1) a text predicted by a model trained once on a fixed
 * history, and (2), when short, a CSV history parsed and trained on (one
 * epoch, the smallest table, to stay fast), whose model then predicts the
 * input too. Checked: no crash or leak, a label in range or -1, probabilities
 * that sum to 1 with the returned one the largest. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/intent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SHORT_CSV 2048

static void check(const ah_intent_t *m, const char *text, size_t len)
{
    float p[AH_INTENT_MAX_CLASSES], conf;
    int nc = ah_intent_classes(m);
    int c = ah_intent_predict(m, text, len, p, &conf);
    if (c < -1 || c >= nc)
        abort();
    if (c < 0) {
        if (conf != 0)
            abort();
        return;
    }
    float sum = 0;
    for (int i = 0; i < nc; i++) {
        if (!(p[i] >= 0 && p[i] <= 1) || p[i] > p[c])
            abort();
        sum += p[i];
    }
    if (fabsf(sum - 1) > 1e-3f || conf != p[c] || !ah_intent_label(m, c))
        abort();
}

static ah_intent_t *fixed_model(void)
{
    static ah_intent_t *m;
    if (!m) {
        const char *texts[] = {"where is my card",       "card has not arrived", "top up with cash",
                               "add cash to my account", "forgot my passcode",   "reset passcode"};
        const char *labels[] = {"card", "card", "cash", "cash", "code", "code"};
        char err[256];
        m = ah_intent_train(texts, NULL, labels, 6, NULL, err, sizeof err);
        if (!m)
            abort();
    }
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(fixed_model(), (const char *)data, size);
    if (size <= SHORT_CSV) {
        ah_intent_opts_t o = ah_intent_defaults;
        o.bits = 12;
        o.epochs = 1;
        char err[512];
        ah_intent_t *m = ah_intent_parse_csv((const char *)data, size, "fuzz", &o, err, sizeof err);
        if (m) {
            check(m, (const char *)data, size);
            ah_intent_free(m);
        } else if (!err[0]) {
            abort(); /* a refusal always says why */
        }
    }
    return 0;
}
