/* fuzz_shape_compress.c - libFuzzer driver for the prompt compressors: a
 * message's text is the client's, untrusted bytes.
 *
 * Lossless on the whole input must succeed, never grow the text, and be
 * idempotent (compressing its own output changes nothing). When the
 * o200k_base rank file is found (AHORRO_TOKENIZERS_DIR, else build/data),
 * lossy runs too, at a ratio picked by the first byte, and its reported
 * token count must be the exact count of what it wrote. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shape/compress.h"

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
    const char *text = (const char *)data;
    ah_buf_t once, twice;
    ah_compress_stats_t st;
    ah_buf_init(&once, AH_SHAPE_MAX_TEXT_BYTES);
    ah_buf_init(&twice, AH_SHAPE_MAX_TEXT_BYTES);
    if (ah_compress_lossless(text, size, &once, &st) != AH_E_OK || once.len > size ||
        st.bytes_out != once.len)
        abort();
    if (ah_compress_lossless(once.data, once.len, &twice, NULL) != AH_E_OK ||
        twice.len != once.len || (once.len && memcmp(once.data, twice.data, once.len) != 0))
        abort();
    if (enc && size > 0) {
        /* The lossy answer is empty only when the lossless one is. */
        double ratio = (data[0] % 10 + 1) / 10.0;
        ah_buf_t cut;
        size_t n = 0;
        ah_buf_init(&cut, AH_SHAPE_MAX_TEXT_BYTES);
        ah_buf_reset(&twice);
        if (ah_compress_lossy(text + 1, size - 1, "what is it?", ratio, enc, &cut, &st) !=
                AH_E_OK ||
            ah_bpe_count(enc, cut.data ? cut.data : "", cut.len, 0, &n) != AH_E_OK ||
            n != st.tokens_out || st.tokens_out > st.tokens_in ||
            ah_compress_lossless(text + 1, size - 1, &twice, NULL) != AH_E_OK ||
            (!cut.len && twice.len))
            abort();
        ah_buf_free(&cut);
    }
    ah_buf_free(&once);
    ah_buf_free(&twice);
    return 0;
}
