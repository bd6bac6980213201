/* engine.h - the batch engine: run a JSONL file of requests through a
 * gateway, within rate limits, resumable, nothing lost or paid twice
 * (docs/batch.md).
 *
 * Input: OpenAI's batch input format, one request per line:
 *   {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
 * Output: OpenAI's batch output format, one line per request that got an
 * HTTP answer (any status), in the output file:
 *   {"id": "batch_req_...", "custom_id": "...", "response": {"status_code": 200,
 *    "request_id": "...", "body": {...}}, "error": null}
 * and one line per request that got none (a malformed line, an unknown
 * url, retries exhausted on a transport error) in the error file:
 *   {"id": "batch_req_...", "custom_id": "..." | null, "response": null,
 *    "error": {"code": "...", "message": "...", "line": N}}
 *
 * Who calls it: `ahorro batch run` (src/cli/batch.c), against the gateway
 * it serves in-process, and the gateway's Batch API runner (src/batch/
 * runner.c), against its own loopback listener. Each line is an ordinary
 * request to that gateway, so it meets auth, budgets, routing, caches and
 * the ledger like any other.
 *
 * Threads: ah_batch_run blocks its caller and runs everything on that
 * thread (a curl multi handle). Memory: one line at a time is read from
 * disk; what grows with the batch is 8 bytes per done line (the set of
 * done custom_ids, as 64-bit hashes, for resuming).
 *
 * Durability: the output and error files ARE the journal. A result line is
 * appended with one write(2) as soon as its answer is in; a run that finds
 * them non-empty skips every custom_id they hold (after cutting a partial
 * last line), so after a crash or SIGKILL the batch resumes where it
 * stopped, and no line whose answer was recorded is sent again. */
#ifndef AH_BATCH_ENGINE_H
#define AH_BATCH_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "core/error.h"

/* Longest input line (bytes), and most lines in one input file. */
#define AH_BATCH_MAX_LINE (4u * 1024 * 1024)
#define AH_BATCH_MAX_LINES 1000000
/* Longest custom_id (bytes). */
#define AH_BATCH_MAX_CUSTOM_ID 512

/* What a first pass over an input file found (ah_batch_scan). */
typedef struct ah_batch_scan {
    long lines;                /* non-empty lines: the batch's request count */
    long malformed;            /* lines that will go to the error file at once */
    long first_duplicate_line; /* 0, or the line whose custom_id repeats an earlier one */
    char duplicate_id[AH_BATCH_MAX_CUSTOM_ID + 1];
    long tokens_in;  /* estimated prompt tokens of the well-formed lines */
    long tokens_out; /* their max_tokens (or the default estimate) */
} ah_batch_scan_t;

/* Read the whole input once: count lines, check each (JSON object, a
 * non-empty string custom_id, method POST, url /v1/chat/completions or
 * /v1/embeddings, an object body), and find a repeated custom_id. AH_E_OK
 * unless the file cannot be read, a line is longer than AH_BATCH_MAX_LINE,
 * or there are more than AH_BATCH_MAX_LINES lines (err says which). A
 * duplicate is reported in out, not as an error: the Batch API refuses
 * such a file at creation, the CLI before sending anything. */
ah_err_t ah_batch_scan(const char *input_path, ah_batch_scan_t *out, char *err, size_t errlen);

/* Check one input line (len bytes at text, line number lineno) by the
 * engine's rules, as ah_batch_run would: AH_E_OK with *line a new reference
 * to the parsed line object (the caller decrefs) when it is well-formed;
 * otherwise AH_E_PARSE with *code the engine's error code (static) and msg
 * its message ("line N: why"), *line NULL. For runners that forward a batch
 * elsewhere (native.h) and must report malformed lines the same way. */
ah_err_t ah_batch_check_line(const char *text, size_t len, long lineno, json_t **line,
                             const char **code, char *msg, size_t msglen);

/* Progress, reported about every 250 ms and once at the end. */
typedef struct ah_batch_progress {
    long total;   /* lines in the input */
    long done;    /* lines with a result line in the output file (any status) */
    long failed;  /* lines in the error file, plus outputs whose status is not 2xx */
    long skipped; /* lines found done at start (a resumed run) */
    long in_flight;
    long retries;      /* attempts repeated after a 429, a 5xx or a transport error */
    long rate_limited; /* 429s seen */
    double cost_usd;   /* x-ahorro-cost of this run's answers */
    double elapsed_s;
} ah_batch_progress_t;

typedef void (*ah_batch_progress_fn)(void *ctx, const ah_batch_progress_t *p);

typedef struct ah_batch_opts {
    const char *input_path;
    const char *output_path;    /* created or appended to (resume) */
    const char *error_path;     /* created or appended to (resume) */
    const char *base_url;       /* the gateway: "http://127.0.0.1:8080" (no /v1) */
    const char *auth;           /* Authorization: Bearer value, or NULL */
    const char *const *headers; /* more request headers ("Name: value"), or NULL */
    int nheaders;
    const char *tags;     /* x-ahorro-tags for every line ("k=v,k=v"), or NULL */
    const char *model;    /* replaces every body's model, or NULL */
    const char *batch_id; /* for result ids and tags (batch_id=...), or NULL */
    int concurrency;      /* most requests in flight (default 64) */
    long timeout_s;       /* per attempt (default 600) */
    int max_retries;      /* per line, for 429, 5xx and transport errors (default 5) */
    /* Pacing per requested model: the sum of its deployments' rpm and tpm
     * in cfg (0 when any deployment has none: unpaced). cfg may be NULL. */
    const ah_config_t *cfg;
    volatile int *cancel; /* when it becomes nonzero: send nothing more, finish the
                             requests in flight, return AH_E_CANCELLED */
    ah_batch_progress_fn progress;
    void *progress_ctx;
} ah_batch_opts_t;

/* Run (or resume) the batch; blocks until every line has a result line or
 * cancel is set. AH_E_OK when every line is done (some may have failed:
 * see out); AH_E_CANCELLED; AH_E_IO when a file cannot be read or written
 * (err says which). out may be NULL. */
ah_err_t ah_batch_run(const ah_batch_opts_t *o, ah_batch_progress_t *out, char *err, size_t errlen);

#endif
