/* native.h - a Batch API batch forwarded to the provider's own Batch API, at
 * its discount (docs/batch.md "Provider batch APIs").
 *
 * When every well-formed line of a batch asks for one alias, and that alias
 * has exactly one deployment, configured `batch: native`, the runner
 * (runner.c) hands the batch here instead of running it line by line: the
 * provider's input file is built (each body's model replaced by the
 * deployment's upstream model; malformed lines go to our error file by the
 * engine's rules), uploaded to `{api_base}/files` (multipart, purpose
 * batch), a batch created at `{api_base}/batches`, polled, cancelled
 * upstream when ours is, and at its end the provider's output and error
 * files are downloaded and rewritten as ours (OpenAI's format, our result
 * ids, the provider's response bodies), with one ledger row per answered
 * line priced at the deployment's price times its batch_discount.
 *
 * Two shapes are spoken: OpenAI's (/files + /batches, OpenAI-compatible
 * servers too) and Anthropic's Message Batches API (/v1/messages/batches:
 * one create call carrying every request, translated from OpenAI's chat
 * body by the gateway's own translation (ingress/openai.c parse_chat, then
 * provider/anthropic.c build), and a JSONL of results whose messages are
 * translated back (provider/anthropic.c parse_response) to OpenAI's
 * chat.completion). Azure OpenAI's Batch API is OpenAI's shape under the
 * resource's own paths ({api_base}/openai/files, /openai/batches, each with
 * ?api-version=, the deployment's), with an `api-key` header, "/chat/completions"
 * as the endpoint and each line's url, and the deployment name as body.model.
 *
 * Restarts: the provider's batch id is kept in the batch's row
 * (batches.provider_batch_id) as soon as the provider accepts it; a run that
 * finds it polls that batch rather than submitting again. Finishing is
 * idempotent: our result files are rewritten whole, and ledger rows have
 * deterministic request ids (the ledger ignores a second insert).
 *
 * Threads: ah_batch_native_run blocks the runner's thread (blocking libcurl
 * easy calls); nothing here is shared. The deployment's api key is sent in
 * the Authorization header (x-api-key for Anthropic, api-key for
 * Azure) only, and only to the
 * deployment's api_base host: never logged, never in errors. */
#ifndef AH_BATCH_NATIVE_H
#define AH_BATCH_NATIVE_H

#include <jansson.h>
#include <sqlite3.h>

#include "config/config.h"
#include "core/error.h"
#include "store/ledger.h"
#include "store/prices.h"

#define AH_NATIVE_ID_MAX 128                  /* a provider's file or batch id */
#define AH_NATIVE_MAX_JSON (4u * 1024 * 1024) /* a provider's JSON answer */
#define AH_NATIVE_MAX_DOWNLOAD (4ull << 30)   /* a provider's result file */
#define AH_NATIVE_CALL_TIMEOUT_S 60L          /* create, poll, cancel */
#define AH_NATIVE_TRANSFER_TIMEOUT_S 3600L    /* upload, download */
#define AH_NATIVE_TRIES 4                     /* upload and create, on 429/5xx/transport */
#define AH_NATIVE_TICK_MS 200                 /* how often the caller's poll fn is asked */
#define AH_NATIVE_ROUTE_REASON "batch:native"
/* Anthropic's Message Batches API (docs/batch.md "Provider batch APIs") */
#define AH_NATIVE_ANTHROPIC_PATH "/v1/messages/batches"
#define AH_NATIVE_ANTHROPIC_VERSION "2023-06-01"
#define AH_NATIVE_ANTHROPIC_MAX_REQUESTS 100000              /* requests of one batch */
#define AH_NATIVE_ANTHROPIC_MAX_BYTES (256ull * 1024 * 1024) /* its create body */
#define AH_NATIVE_ANTHROPIC_MSG_MAX 512                      /* a line's translation error */
/* Azure OpenAI's Batch API: the api-version when the deployment has none */
#define AH_NATIVE_AZURE_API_VERSION "2024-10-21"

/* How a forwarded batch ended. */
typedef enum {
    AH_NATIVE_COMPLETED,
    AH_NATIVE_CANCELLED, /* after our cancel: what the provider did is kept */
    AH_NATIVE_EXPIRED,   /* the provider's (or our) window passed: what was done is kept */
    AH_NATIVE_FAILED,    /* upload or creation refused, or the provider's batch failed */
    AH_NATIVE_STOPPED,   /* the gateway is stopping: resumed at the next start */
} ah_native_end_t;

/* What the caller's poll function answers. */
enum { AH_NATIVE_GO = 0, AH_NATIVE_CANCEL = 1, AH_NATIVE_EXPIRE = 2, AH_NATIVE_STOP = 3 };

/* Called every AH_NATIVE_TICK_MS with the counts so far (ours: malformed
 * lines count as failed); returns one of the AH_NATIVE_* answers above. */
typedef int (*ah_native_poll_fn)(void *ctx, long completed, long failed, double cost_usd);

typedef struct ah_native_opts {
    const ah_deployment_t *dep; /* batch_native, kind openai, azure or anthropic */
    const char *batch_id;       /* ours */
    const char *endpoint;       /* "/v1/chat/completions" */
    const char *input_path;     /* our input file */
    const char *output_path;    /* our result files: rewritten whole at the end */
    const char *error_path;
    const char *work_dir;       /* for the provider's input and results (temporary files) */
    sqlite3 *db;                /* the runner's connection: batches.provider_batch_id */
    ah_ledger_t *ledger;        /* rows of answered lines; NULL: none written */
    const ah_price_t *price;    /* the deployment's live price, or NULL when unknown */
    const char *key_id, *owner; /* the batch's creator (NULL: keyless) */
    const char *tags_json;      /* the rows' tags (a JSON object text), or NULL */
    double poll_s;              /* how often the provider's batch is asked for */
    ah_native_poll_fn poll;
    void *poll_ctx;
} ah_native_opts_t;

typedef struct ah_native_result {
    ah_native_end_t end;
    long completed, failed; /* ours: failed includes malformed lines */
    double cost_usd;        /* of the ledger rows written */
    json_t *errors;         /* FAILED: OpenAI's errors list ({object, data}); caller decrefs */
    char provider_batch_id[AH_NATIVE_ID_MAX];
} ah_native_result_t;

/* The deployment a batch goes to natively, or NULL when it runs live: every
 * well-formed line of input_path (by the engine's rules) names the same
 * model, which is an exact alias with exactly one deployment in cfg, and
 * that deployment is batch_native. A file that cannot be read, or has no
 * well-formed line, runs live. Reads the whole file. */
const ah_deployment_t *ah_batch_native_route(const ah_config_t *cfg, const char *input_path);

/* The deployment of alias when it alone serves it and is batch_native;
 * else NULL. Pure. */
const ah_deployment_t *ah_batch_native_dep(const ah_config_t *cfg, const char *alias);

/* Usage of an OpenAI response body (chat or embeddings) in ah_usage_t's
 * convention; 1 when the body has a usage object, else 0 (u zeroed). Pure. */
int ah_batch_native_usage(const json_t *body, ah_usage_t *u);

/* The Anthropic Messages params of one OpenAI chat body for d (the gateway's
 * own translation), new reference, caller decrefs; NULL when the body cannot
 * go to Anthropic, with the error's code and message written (bounded). */
json_t *ah_batch_native_to_anthropic(const ah_deployment_t *d, const json_t *body, char *code,
                                     size_t codelen, char *msg, size_t msglen);

/* An Anthropic message as an OpenAI chat.completion (the gateway's own
 * translation), new reference, caller decrefs; its usage into *u in
 * ah_usage_t's convention (input_tokens counts cache reads and writes).
 * NULL when message is not one (u zeroed). */
json_t *ah_batch_native_from_anthropic(const ah_deployment_t *d, const json_t *message,
                                       ah_usage_t *u);

/* The URL of path ("/files", "/batches/{id}"...) at d's provider, into url
 * (n bytes, cut to fit): {api_base}{path} for OpenAI's shape; for Anthropic's,
 * paths start with /v1 and api_base is the host root (a base that already
 * ends in /v1 is accepted, as provider/anthropic.c does); for Azure's,
 * {api_base}/openai{path}?api-version={the deployment's api_version, else
 * AH_NATIVE_AZURE_API_VERSION}. Pure. */
void ah_batch_native_url(const ah_deployment_t *d, const char *path, char *url, size_t n);

/* A provider id is used in URLs: letters, digits, '-', '_' and '.', at most
 * AH_NATIVE_ID_MAX - 1 bytes. 1 when s is one. Pure. */
int ah_batch_native_id_ok(const char *s);

/* Forward (or resume: the row's provider_batch_id) the batch and wait for
 * its end, as o says; blocks. *res is filled (res->errors set for FAILED).
 * AH_E_OK whatever the batch's end; AH_E_IO when our files cannot be
 * written. */
ah_err_t ah_batch_native_run(const ah_native_opts_t *o, ah_native_result_t *res);

#endif
