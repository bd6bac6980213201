/* request.h - the canonical request every pipeline stage works on.
 *
 * Whatever wire format the client spoke, ingress turns the body into one
 * canonical form: an OpenAI-shaped chat body (messages, tools, tool_choice,
 * max_tokens, stop, ...) in `body`. Stages read and change that, never the
 * client's format. The original body is kept in `raw` so that a provider of
 * the client's own format can receive it unchanged (no translation loss).
 *
 * Ownership: an ah_request_t belongs to the server exchange that created it
 * and is released with ah_request_free when the exchange ends; its arena
 * holds every request-scoped string. */
#ifndef AH_REQUEST_H
#define AH_REQUEST_H

#include <jansson.h>
#include <stdint.h>

#include "cache/answer.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "observe/trace.h"
#include "store/prices.h"

/* The wire format of a body: what the client spoke, what a provider speaks. */
typedef enum { AH_API_OPENAI, AH_API_ANTHROPIC } ah_api_t;

/* What is being asked. */
typedef enum { AH_OP_CHAT, AH_OP_EMBEDDINGS } ah_op_t;

/* A failure to report to the client, in whatever format it spoke. */
typedef struct ah_fail {
    int status;        /* HTTP status; 0 = no failure */
    const char *type;  /* OpenAI error type; NULL: derived from status */
    const char *code;  /* OpenAI error code or NULL */
    const char *param; /* offending parameter or NULL */
    char message[512];
    int retry_after_s; /* > 0: send Retry-After */
} ah_fail_t;

struct ah_cache_entry;

typedef struct ah_request {
    ah_arena_t arena;
    char id[40];  /* x-ahorro-request-id */
    ah_api_t api; /* format the client spoke */
    ah_op_t op;
    int64_t t_start_us;            /* monotonic, when the body was complete */
    int64_t wall_ms;               /* wall clock at the start, for the ledger */
    const char *peer;              /* client address */
    const char *auth_token;        /* bearer / x-api-key as sent (arena), or NULL */
    const char *header_tags;       /* x-ahorro-tags / x-litellm-tags (arena), or NULL */
    const char *anthropic_version; /* client's anthropic-version header (arena), or NULL */
    const char *anthropic_beta;    /* client's anthropic-beta header (arena), or NULL */
    const char *cache_control;     /* client's Cache-Control header (arena), or NULL */
    const char *traceparent;       /* client's W3C traceparent header (arena), or NULL */
    ah_trace_t trace;              /* stage times, when tracing sampled this request */

    json_t *body;      /* canonical body (owned) */
    json_t *raw;       /* original body (owned) */
    const char *model; /* requested model (arena) */
    int stream;
    int client_wants_usage; /* OpenAI stream_options.include_usage */

    /* 1 auth, 2 attribute */
    const char *key_id; /* virtual key id, "master", or NULL (keyless) */
    const char *owner;
    const char *user;
    json_t *tags;           /* object of tag -> value (owned) */
    const char *experiment; /* 2b: "experiment/arm" (arena), or NULL */

    /* 6 route */
    const ah_deployment_t *dep;
    const char *upstream_model; /* model name sent upstream (arena) */
    const char *route_reason;   /* why this deployment: rule, tier, fallback (arena or static) */
    const char *baseline_alias; /* what savings are measured against (config's), or NULL */
    const char **chain; /* aliases to try in order: the routed one, then fallbacks (arena) */
    int nchain;
    long est_tokens; /* estimated prompt tokens, for rpm/tpm limits */
    char **cascade;  /* a cascade router's steps, cheapest first (config's), or NULL */
    int ncascade;
    int cascade_pos;          /* the step answering now */
    int attempts;             /* upstream attempts made (each failed one is a ledger row) */
    const char *cache_status; /* "miss", "exact", "semantic", "bypass" (static) or NULL */

    /* 3 guard: what was reserved, to settle once the cost is known */
    struct ah_guard_hold *holds; /* arena; budget and token reservations */
    int nholds;
    const char *downgrade_to;     /* a spent budget's cheaper model, or NULL */
    const char *downgrade_reason; /* arena */
    double attempts_cost_usd;     /* priced attempts that did not give the answer */
    long rl_limit_req, rl_remaining_req, rl_limit_tok, rl_remaining_tok; /* -1: none */
    int rl_reset_s;
    struct ah_guard_plan *guard_plan; /* arena; the counters asked for (guard.c) */
    int guard_pending;                /* AH_GUARD_WAIT_*: waits for them (a shared state) */

    /* 4 shape */
    const char *shape_done;  /* what shaping did, "lossless,sliding_window" (arena), or NULL */
    long shape_tokens_saved; /* prompt tokens it removed */
    double shape_saved_usd;  /* their price on the served deployment (stage 8) */
    int body_edited;         /* r->body no longer matches r->raw: adapters render from it */
    char prefix_hash[17];    /* static prefix (system, tools): hex, or "" */
    long prefix_tokens;      /* its estimated tokens */
    int shape_pending;       /* waits for a summary (summary.c) before stage 5 */
    json_t *summarized;      /* the messages a summary stands in for (owned), or NULL */
    size_t summary_at;       /* where the summary goes in messages */
    const char *summarizer;  /* the alias that writes it (config's) */
    long summary_tokens;     /* its max_tokens */
    double summary_cost_usd; /* what the summary call cost, paid from the saving */

    /* 5 cache */
    struct ah_cache_entry *cache_hit; /* entry served (a reference), or NULL */
    double cache_similarity;          /* semantic hit */
    int64_t cache_age_s;
    double saved_usd; /* what a hit saved */
    int cache_store;  /* keep the answer once complete */
    int64_t cache_ttl_ms;
    int cache_no_read, cache_no_store;    /* the request's controls */
    int64_t cache_max_age_ms;             /* < 0: any age */
    double cache_threshold;               /* semantic: least similarity */
    const struct ah_intent *cache_intent; /* semantic: the route's labelled history, or NULL */
    double cache_intent_conf;             /* its least label probability */
    const char *cache_intent_label;       /* a hit's shared label (the model's), or NULL */
    int cache_pending;                    /* AH_CACHE_WAIT_*: an embedding, or peers (pipeline.h) */
    const char *cache_embed_text;         /* arena */
    uint8_t cache_key[AH_CACHE_KEY_BYTES];
    const char *cache_tenant, *cache_ns; /* arena */
    int cache_semantic;                  /* store with cache_scope and cache_vec */
    uint8_t cache_scope[AH_CACHE_KEY_BYTES];
    float *cache_vec; /* arena */
    int cache_dim;
    json_t *answer; /* canonical chat.completion gathered for the cache or a judge (owned) */
    int judge;      /* 1 + the ahorro.judging entry whose sample drew r (judge.c); 0: none */

    /* 7 upstream, 8 record */
    ah_usage_t usage;
    int usage_known;          /* provider reported usage */
    const char *served_model; /* model the provider reported (arena) */
    double cost_usd;
    int cost_known;
    double prompt_cache_saved_usd; /* provider prompt cache, net of write premiums */
    int64_t t_upstream_start_us;
    int64_t t_upstream_end_us;
    int64_t t_first_token_us;
    int64_t t_end_us;
    int64_t overhead_us;
    int status; /* HTTP status sent to the client */
    ah_fail_t fail;
} ah_request_t;

/* A new request with a fresh id, for a client that spoke `api`. Free with
 * ah_request_free. */
ah_request_t *ah_request_new(ah_api_t api, ah_op_t op);
/* Release the request, its JSON and its arena. */
void ah_request_free(ah_request_t *r);
/* Record a failure to report (first one wins). Returns r->fail.status. */
int ah_request_fail(ah_request_t *r, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
