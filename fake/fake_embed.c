/* fake_embed.c - POST /v1/embeddings (and the Azure deployment form).
 *
 * Each input becomes a unit-length vector drawn from a generator seeded with a hash of
 * the input, so equal inputs always embed equally and a cache in the gateway can be
 * checked byte for byte. encoding_format "base64" (little-endian float32, what the
 * openai npm SDK asks for by default) is supported beside plain floats. */
#include "fake.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "fake_sim.h"

#define FAKE_FNV_OFFSET 0xcbf29ce484222325ull
#define FAKE_FNV_PRIME 0x100000001b3ull

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= FAKE_FNV_PRIME;
    }
    return h;
}

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fills v[0..dims) with a unit vector determined by seed. */
static void make_vector(float *v, long dims, uint64_t seed)
{
    uint64_t state = seed;
    double norm = 0;
    for (long d = 0; d < dims; d++) {
        double x = (double)(splitmix64(&state) >> 11) * 0x1.0p-53 * 2.0 - 1.0;
        v[d] = (float)x;
        norm += (double)v[d] * v[d];
    }
    norm = sqrt(norm);
    if (norm == 0) {
        v[0] = 1;
        return;
    }
    for (long d = 0; d < dims; d++)
        v[d] = (float)(v[d] / norm);
}

static void put_base64(fake_out_t *o, const float *v, long dims)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char bytes[3];
    size_t have = 0;
    fake_out_raw(o, "\"", 1);
    for (long d = 0; d < dims; d++) {
        uint32_t u;
        memcpy(&u, &v[d], sizeof u);
        for (int k = 0; k < 4; k++) {
            bytes[have++] = (unsigned char)(u >> (8 * k)); /* little-endian */
            if (have == 3) {
                char q[4] = {tbl[bytes[0] >> 2], tbl[((bytes[0] & 3) << 4) | (bytes[1] >> 4)],
                             tbl[((bytes[1] & 15) << 2) | (bytes[2] >> 6)], tbl[bytes[2] & 63]};
                fake_out_raw(o, q, 4);
                have = 0;
            }
        }
    }
    if (have) {
        unsigned char b1 = have > 1 ? bytes[1] : 0;
        char q[4] = {tbl[bytes[0] >> 2], tbl[((bytes[0] & 3) << 4) | (b1 >> 4)],
                     have > 1 ? tbl[(b1 & 15) << 2] : '=', '='};
        fake_out_raw(o, q, 4);
    }
    fake_out_raw(o, "\"", 1);
}

/* One input: a string, or an array of token ids. words/seed out; -1 when malformed. */
static int read_input(const json_t *in, long *tokens, uint64_t *seed)
{
    if (json_is_string(in)) {
        size_t n = json_string_length(in);
        if (n == 0)
            return -1;
        *tokens = fake_sim_words(json_string_value(in), n);
        *seed = fnv1a(FAKE_FNV_OFFSET, json_string_value(in), n);
        return 0;
    }
    if (!json_is_array(in) || json_array_size(in) == 0)
        return -1;
    uint64_t h = fnv1a(FAKE_FNV_OFFSET, "ids", 3);
    for (size_t i = 0; i < json_array_size(in); i++) {
        const json_t *id = json_array_get(in, i);
        if (!json_is_integer(id))
            return -1;
        int64_t t = (int64_t)json_integer_value(id);
        h = fnv1a(h, &t, sizeof t);
    }
    *tokens = (long)json_array_size(in);
    *seed = h;
    return 0;
}

static void text_directives(const char *s, size_t n, void *arg)
{
    fake_sim_directives(arg, s, n, 0);
}

/* The inputs as an array of single inputs (a lone string or token array is one). */
static int is_single(const json_t *input)
{
    return json_is_string(input) ||
           (json_is_array(input) && json_is_integer(json_array_get(input, 0)));
}

void fake_embeddings(const fake_ctx_t *ctx, fake_reply_t *r)
{
    const json_t *b = ctx->body;
    float *vec = NULL;
    r->request_id = "x-request-id";
    snprintf(r->request_id_value, sizeof r->request_id_value, "req_fake_%llu",
             (unsigned long long)ctx->seq);
    if (!json_is_object(b)) {
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "We could not parse the JSON body of your request: %s",
                          ctx->json_error ? ctx->json_error : "expected a JSON object");
        goto out;
    }
    const char *model = json_string_value(json_object_get(b, "model"));
    if (!model)
        model = ctx->deployment;
    if (!model) {
        fake_openai_error(r, 400, "invalid_request_error", "model", "missing_required_parameter",
                          "you must provide a model parameter");
        goto out;
    }
    ctx->meter->model = model;
    const json_t *input = json_object_get(b, "input");
    int single = is_single(input);
    size_t count = single ? 1 : json_array_size(input);
    if (!input || (!single && !json_is_array(input)) || count == 0 ||
        count > FAKE_MAX_EMBED_INPUTS) {
        fake_openai_error(r, 400, "invalid_request_error", "input", "invalid_value",
                          "'$.input' is invalid: expected a non-empty string, an array of at "
                          "most %d strings, or token arrays.",
                          FAKE_MAX_EMBED_INPUTS);
        goto out;
    }
    long dims = FAKE_DEFAULT_EMBED_DIMS;
    if (fake_sim_get_long(b, "dimensions", 1, &dims) || dims > FAKE_MAX_EMBED_DIMS) {
        fake_openai_error(r, 400, "invalid_request_error", "dimensions", "invalid_value",
                          "Invalid 'dimensions': expected an integer between 1 and %d.",
                          FAKE_MAX_EMBED_DIMS);
        goto out;
    }
    const char *fmt = json_string_value(json_object_get(b, "encoding_format"));
    int base64 = fmt && strcmp(fmt, "base64") == 0;
    if (fmt && !base64 && strcmp(fmt, "float") != 0) {
        fake_openai_error(r, 400, "invalid_request_error", "encoding_format", "invalid_value",
                          "Invalid 'encoding_format': expected 'float' or 'base64'.");
        goto out;
    }

    /* The rate limits and the log count the words of the inputs (only when they are on). */
    long counted = 0;
    for (size_t i = 0; (fake_limits_enabled || fake_log_enabled) && i < count; i++) {
        long tokens;
        uint64_t seed;
        if (read_input(single ? input : json_array_get(input, i), &tokens, &seed) == 0)
            counted += tokens;
    }
    if (fake_limits_admit(ctx, r, FAKE_API_OPENAI, counted, -1))
        goto out;

    /* Faults: from the header, or a directive in any input string. */
    fake_directives_t dir = {.tokens = -1};
    fake_sim_foreach_text(single ? input : NULL, text_directives, &dir);
    for (size_t i = 0; !single && i < count; i++)
        fake_sim_foreach_text(json_array_get(input, i), text_directives, &dir);
    fake_fault_t fault = ctx->hdr_fault ? ctx->hdr_fault : dir.fault;
    r->delay_ms = ctx->hdr_delay_ms ? ctx->hdr_delay_ms : dir.delay_ms;
    if (fault == FAKE_FAULT_429) {
        fake_openai_error(r, 429, "rate_limit_error", NULL, "rate_limit_exceeded",
                          "Rate limit reached for %s (simulated by ahorro-fake).", model);
        r->retry_after_s = FAKE_RETRY_AFTER_S;
        goto out;
    }
    if (fault == FAKE_FAULT_500 || fault == FAKE_FAULT_529) {
        int overloaded = fault == FAKE_FAULT_529;
        fake_openai_error(r, overloaded ? 503 : 500, "server_error", NULL, NULL, "%s",
                          overloaded ? "The server is overloaded or not ready yet (simulated "
                                       "by ahorro-fake)."
                                     : "The server had an error while processing your request "
                                       "(simulated by ahorro-fake).");
        goto out;
    }
    r->fault = fault;

    long window = fake_sim_context_window(model);
    long total = 0;
    vec = ah_calloc((size_t)dims, sizeof *vec);
    fake_out_t *o = &r->body;
    fake_out_cstr(o, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < count; i++) {
        const json_t *in = single ? input : json_array_get(input, i);
        long tokens;
        uint64_t seed;
        if (read_input(in, &tokens, &seed)) {
            fake_openai_error(r, 400, "invalid_request_error", "input", "invalid_value",
                              "'$.input[%zu]' is invalid: expected a non-empty string or an "
                              "array of token ids.",
                              i);
            goto out;
        }
        if (tokens > window) {
            fake_openai_error(r, 400, "invalid_request_error", "input", "context_length_exceeded",
                              "This model's maximum context length is %ld tokens, however you "
                              "requested %ld tokens in input %zu. Please reduce your prompt.",
                              window, tokens, i);
            goto out;
        }
        total += tokens;
        make_vector(vec, dims, seed ^ ((uint64_t)dims * 0x9e3779b97f4a7c15ull));
        fake_out_printf(o, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "",
                        i);
        if (base64) {
            put_base64(o, vec, dims);
        } else {
            fake_out_raw(o, "[", 1);
            for (long d = 0; d < dims && !o->err; d++)
                fake_out_printf(o, d ? ",%.9g" : "%.9g", (double)vec[d]);
            fake_out_raw(o, "]", 1);
        }
        fake_out_raw(o, "}", 1);
    }
    fake_out_cstr(o, "],\"model\":");
    fake_out_jcstr(o, model);
    fake_out_printf(o, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", total, total);
    if (o->err)
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: the response would exceed %u bytes.", FAKE_MAX_REPLY_BYTES);
out:
    ah_free(vec);
}
