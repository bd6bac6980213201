/* fuzz_shape.c - libFuzzer driver for the shaping engine: a client's chat
 * body (messages, tool calls, a `context` array) shaped under a policy the
 * first byte picks, with every strategy's promises checked: the engine never
 * crashes, and when it says it met a budget, the tokenizer's own count of
 * the body agrees.
 *
 * Needs the o200k_base rank file (AHORRO_TOKENIZERS_DIR, else build/data);
 * without it only retrieval, lossless and output run. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shape/shape.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ah_bpe_t *enc;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    const char *dir = getenv("AHORRO_TOKENIZERS_DIR");
    if (ah_bpe_load(dir && *dir ? dir : "build/data", "o200k_base", &enc, err, sizeof err))
        enc = NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned pick = data[0], budget = data[1];
    json_t *body = json_loadb((const char *)data + 2, size - 2, 0, NULL);
    if (!json_is_object(body)) {
        json_decref(body);
        return 0;
    }
    ah_shape_policy_t p;
    ah_shape_policy_unset(&p);
    p.strategy = (ah_ctx_strategy_t)(pick & 3); /* none, sliding, budget, summarize */
    p.max_turns = (pick >> 2) & 3;
    p.max_tokens = budget ? 8 + budget * 4 : 0;
    p.trim_to = pick & 16 ? 0.5 : 1;
    p.top_k = (pick >> 5) & 3;
    p.lossless = 1;
    p.lossy_ratio = pick & 128 ? 0.5 : -1;
    p.default_max_tokens = 100;
    p.cap_max_tokens = 50;
    ah_shape_preset_t preset = {.name = "f", .temperature = 0.1, .top_p = 0.9};
    ah_shape_env_t env = {.enc = enc, .factor = 1, .window = 4096, .preset = &preset};
    ah_shape_result_t res;
    char err[400];
    if (ah_shape_apply(body, &p, &env, &res, err, sizeof err) == AH_E_OK && enc &&
        p.strategy != AH_CTX_NONE && res.budget > 0 && res.tokens_after >= 0) {
        if (res.tokens_after != ah_shape_count(&env, body))
            abort(); /* the reported count is not the body's */
        if (res.tokens_after > res.budget)
            abort(); /* a budget said met is not */
    }
    json_decref(res.summarized);
    json_decref(body);
    return 0;
}
