/* Shared payloads for the http-server spike (evhttp vs libmicrohttpd). */
#ifndef SPIKE_COMMON_H
#define SPIKE_COMMON_H

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ~400-byte OpenAI-style chat completion body. */
static const char RESP_JSON[] =
    "{\"id\":\"chatcmpl-spike0000000000000000000000\",\"object\":\"chat.completion\","
    "\"created\":1700000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Hello! This is a fixed response "
    "from the http-server spike, padded to roughly four hundred bytes.\"},"
    "\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":21,"
    "\"completion_tokens\":17,\"total_tokens\":38},\"system_fingerprint\":\"fp_0000000000\"}\n";
#define RESP_JSON_LEN (sizeof(RESP_JSON) - 1)

/* One SSE event (~150 bytes), sent STREAM_CHUNKS times, then "data: [DONE]". */
static const char SSE_CHUNK[] =
    "data: {\"id\":\"chatcmpl-spike\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
    "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok \"}}]}\n\n";
#define SSE_CHUNK_LEN (sizeof(SSE_CHUNK) - 1)
static const char SSE_DONE[] = "data: [DONE]\n\n";
#define SSE_DONE_LEN (sizeof(SSE_DONE) - 1)
#define STREAM_CHUNKS 20 /* 19 deltas + [DONE] */

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
