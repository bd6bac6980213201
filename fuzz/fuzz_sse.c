/* fuzz_sse.c - libFuzzer driver for the upstream SSE parser, the provider
 * stream adapters, and the cache's gathering of a streamed answer and its
 * replay: provider bytes are untrusted too. The first byte picks the
 * provider format and how the input is split into network reads. */
#include <stdint.h>
#include <string.h>

#include "cache/answer.h"
#include "provider/provider.h"
#include "upstream/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct ctx {
    const ah_provider_ops_t *ops;
    ah_provider_stream_t ps;
    ah_request_t *r;
    ah_answer_acc_t acc;
} ctx_t;

static int on_event(void *ud, const char *event, const char *data, size_t len, const char *raw,
                    size_t raw_len)
{
    ctx_t *c = ud;
    int is_token = 0, forward = 1;
    /* Both ways an adapter reads an event: skimmed (raw forward) and parsed
     * (translation). */
    c->ops->stream_event(&c->ps, c->r, event, data, len, NULL, &is_token, &forward);
    json_t *chunks = json_array();
    c->ops->stream_event(&c->ps, c->r, event, data, len, chunks, &is_token, &forward);
    size_t i;
    json_t *chunk;
    json_array_foreach(chunks, i, chunk) ah_answer_acc_add(&c->acc, chunk);
    json_decref(chunks);
    c->ops->parse_response(c->r, data, len, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ctx_t c = {.ops = (data[0] & 1) ? &ah_provider_anthropic : &ah_provider_openai};
    size_t step = 1 + (data[0] >> 1);
    c.r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    c.r->upstream_model = "m";
    ah_sse_t s;
    ah_sse_init(&s);
    for (size_t off = 1; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        if (ah_sse_feed(&s, (const char *)data + off, n, on_event, &c))
            break;
    }
    ah_sse_free(&s);
    /* what the cache would keep, and the stream it would replay from it */
    json_t *answer = ah_answer_acc_finish(&c.acc);
    ah_answer_acc_free(&c.acc);
    if (answer) {
        json_t *replay = ah_answer_chunks(answer);
        json_decref(replay);
        json_decref(answer);
    }
    ah_request_free(c.r);
    return 0;
}
