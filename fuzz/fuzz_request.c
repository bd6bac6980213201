/* fuzz_request.c - libFuzzer driver for the request parser: a JSON body from
 * an untrusted client into the canonical request, in both client formats,
 * then out again through both provider adapters (the translation code sees
 * whatever the parser let through).
 *
 * The first byte picks the client format; the rest is the body. */
#include <stdint.h>
#include <string.h>

#include "ingress/ingress.h"
#include "provider/provider.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    ah_api_t api = (data[0] & 1) ? AH_API_ANTHROPIC : AH_API_OPENAI;
    ah_op_t op = (data[0] & 2) ? AH_OP_EMBEDDINGS : AH_OP_CHAT;
    json_t *body = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    if (!body)
        return 0;
    ah_request_t *r = ah_request_new(api, op);
    if (ah_ingress_for(api)->parse_chat(r, body) == AH_E_OK) {
        static const ah_provider_kind_t kinds[] = {AH_PROVIDER_OPENAI, AH_PROVIDER_AZURE,
                                                   AH_PROVIDER_ANTHROPIC};
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            ah_deployment_t d = {.alias = "a",
                                 .model = "*",
                                 .provider_name = "p",
                                 .api_base = "http://127.0.0.1:1",
                                 .api_key = "k",
                                 .api_version = "v",
                                 .kind = kinds[k]};
            r->dep = &d;
            r->upstream_model = r->model;
            ah_provider_req_t p = {0};
            const ah_provider_ops_t *ops = ah_provider_for(&d);
            if (ops->build(r, &d, &p) == AH_E_OK)
                ah_provider_req_free(&p);
            r->fail.status = 0;
        }
    }
    ah_request_free(r);
    json_decref(body);
    return 0;
}
