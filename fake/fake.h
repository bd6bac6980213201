/* fake.h - ahorro-fake: a fake OpenAI and Anthropic provider for tests and benchmarks.
 *
 * The program answers the wire formats the gateway speaks upstream with deterministic,
 * cheap answers, and can inject the failures a real provider produces (rate limits, 5xx,
 * hangs, resets, stalls) on request. Its pieces:
 *
 *   fake_main.c       command line, one event loop per thread, signals
 *   fake_server.c     routing, authentication, request capture (/_fake/last), small endpoints
 *   fake_reply.c      sends a prepared reply now or later: delays, SSE pacing, faults
 *   fake_sim.c        the simulated model: token counting, directives, answer text, tool calls
 *   fake_openai.c     POST /v1/chat/completions (and the Azure deployment form)
 *   fake_anthropic.c  POST /v1/messages
 *   fake_embed.c      POST /v1/embeddings
 *   fake_batch.c      an in-memory Files and Batches API (/v1/files, /v1/batches; Azure's
 *                     /openai/files, /openai/batches) and
 *                     Anthropic's Message Batches API (/v1/messages/batches)
 *   fake_answers.c    recorded answers (--answers FILE) that replace the simulated text
 *   fake_limits.c     provider-side rate limits per model (--rate-limit MODEL=RPM[:TPM])
 *   fake_log.c        the request log (--log FILE): one JSON line per request, at arrival
 *   fake_out.c        a bounded output buffer with a sticky error and JSON string escaping
 *
 * A handler never touches the network: it fills a fake_reply_t (status, headers, body or
 * SSE segments, fault) and fake_reply_send() carries it out. docs/fake-provider.md
 * describes the behaviour from the outside. */
#ifndef FAKE_H
#define FAKE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/error.h"

struct evhttp_request;
struct event_base;
struct evconnlistener;
struct evkeyvalq;

/* Limits of the fake, kept together. */
#define FAKE_MAX_BODY_BYTES (16u * 1024 * 1024)    /* request bodies; larger gets 413 */
#define FAKE_MAX_HEADER_BYTES (64u * 1024)         /* request headers */
#define FAKE_MAX_REPLY_BYTES (64u * 1024 * 1024)   /* one response body or whole SSE stream */
#define FAKE_MAX_ANSWER_BYTES (32u * 1024 * 1024)  /* one generated answer text */
#define FAKE_MAX_CAPTURE_BYTES (17u * 1024 * 1024) /* what /_fake/last keeps of a request */
#define FAKE_MAX_COMPLETION_TOKENS 1000000L        /* [[tokens:N]] is clamped to this */
#define FAKE_MAX_CHOICES 128                       /* OpenAI `n`, as the real API */
#define FAKE_MAX_DELAY_MS 600000L                  /* [[delay:MS]], --ttft-ms, --itl-ms */
#define FAKE_MAX_EMBED_DIMS 4096                   /* `dimensions` */
#define FAKE_DEFAULT_EMBED_DIMS 16
#define FAKE_MAX_EMBED_INPUTS 2048    /* inputs in one embeddings request */
#define FAKE_DEFAULT_ANSWER_TOKENS 20 /* answer length without [[tokens:N]] */
#define FAKE_STREAM_FAULT_AFTER 3     /* content chunks sent before reset/stall */
#define FAKE_RESET_GRACE_MS 50        /* let sent chunks reach the peer before RST */
#define FAKE_IDLE_TIMEOUT_S 3600      /* evhttp read/write timeout */
#define FAKE_RETRY_AFTER_S 1          /* Retry-After on injected 429 */
#define FAKE_MAX_FAULT_SPEC 128       /* --fault and POST /_fake/fault */
#define FAKE_MAX_MODEL_BYTES 256      /* model names echoed in answers */
#define FAKE_MAX_ANSWERS_FILE_BYTES (512ull * 1024 * 1024) /* --answers FILE, all of it */
#define FAKE_MAX_ANSWERS_LINE_BYTES (16u * 1024 * 1024)    /* one line of it */
#define FAKE_MAX_ANSWERS (4u * 1024 * 1024)                /* entries in it */
#define FAKE_RL_WINDOW_MS 60000L                           /* --rate-limit: the sliding window */
#define FAKE_RL_BUCKET_MS 100L              /* ... counted in buckets of this many ms */
#define FAKE_RL_MAX_MODELS 1024             /* windows made for models under `*`; then one shared */
#define FAKE_RL_MAX_RULES 256               /* --rate-limit options */
#define FAKE_RL_MAX_LIMIT 1000000000000LL   /* RPM and TPM */
#define FAKE_LOG_BUFFER_BYTES (256u * 1024) /* --log: two buffers of this size */
#define FAKE_LOG_FLUSH_MS 500L              /* --log: lines reach the file within this */
#define FAKE_DEFAULT_BATCH_DELAY_MS 1000L   /* --batch-delay-ms */

/* Options from the command line; read-only once the loops run. */
typedef struct fake_opts {
    const char *host;
    int port;
    int threads;
    long ttft_ms;
    long itl_ms;
    const char *require_key; /* NULL: no authentication */
    const char *answers;     /* --answers FILE, or NULL */
    const char *log;         /* --log FILE, or NULL */
    long batch_delay_ms;     /* --batch-delay-ms: a batch's time to complete */
} fake_opts_t;

extern fake_opts_t fake_opts;

/* Set the standing fault that every request meets (a spec as in x-fake-fault;
 * empty clears it). Thread-safe. */
void fake_set_standing_fault(const char *spec, size_t n);

/* Injected faults. The first three are plain error replies; the others change how the
 * reply is delivered. */
typedef enum {
    FAKE_FAULT_NONE,
    FAKE_FAULT_429,
    FAKE_FAULT_500,
    FAKE_FAULT_529,
    FAKE_FAULT_TIMEOUT,     /* never answer */
    FAKE_FAULT_RESET,       /* RST: at once, or after FAKE_STREAM_FAULT_AFTER chunks of a stream */
    FAKE_FAULT_STALL,       /* stream: go silent after FAKE_STREAM_FAULT_AFTER chunks */
    FAKE_FAULT_RESET_EARLY, /* RST at once, streams too: not even the headers */
} fake_fault_t;

/* Parses a fault kind ("429", "timeout", ...) of n bytes; FAKE_FAULT_NONE if unknown. */
fake_fault_t fake_fault_parse(const char *s, size_t n);

/* ---- fake_out.c: bounded output with a sticky error ---------------------------------- */

/* An ah_buf_t whose first failed append is remembered and makes later appends no-ops, so
 * that a renderer checks for errors once at the end (curl's dynbuf used the same way). */
typedef struct fake_out {
    ah_buf_t buf;
    ah_err_t err;
} fake_out_t;

/* Empty output that may grow to max bytes. Release with fake_out_free. */
void fake_out_init(fake_out_t *o, size_t max);
/* Drop the contents and the error, keeping the memory. */
void fake_out_reset(fake_out_t *o);
void fake_out_free(fake_out_t *o);
void fake_out_raw(fake_out_t *o, const char *s, size_t n);
void fake_out_cstr(fake_out_t *o, const char *s);
void fake_out_printf(fake_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal for the n bytes at s (quotes included, escaped). */
void fake_out_jstr(fake_out_t *o, const char *s, size_t n);
/* A JSON string literal for a NUL-terminated s, or `null` when s is NULL. */
void fake_out_jcstr(fake_out_t *o, const char *s);
/* A JSON value as jansson prints it compactly (`null` when v is NULL). */
void fake_out_json(fake_out_t *o, const json_t *v);
/* Replaces every byte of the NUL-terminated s that is not part of valid UTF-8 with '?',
 * in place (for messages made from raw request bytes or cut to a fixed size). */
void fake_utf8_scrub(char *s);
/* Writes v in decimal and a NUL at out (room for 21 bytes); returns the NUL's address. A
 * printf without the printf, for the per-request headers and log lines. */
char *fake_fmt_ll(char *out, long long v);

/* ---- fake_reply.c: what a handler answers, and how it is delivered --------------------- */

/* The rate-limit headers an answer carries (x-ratelimit-* or anthropic-ratelimit-*). */
typedef struct fake_rl_info {
    int api;             /* 0: none; FAKE_API_OPENAI or FAKE_API_ANTHROPIC */
    long long limit_req; /* 0: no request limit */
    long long remaining_req;
    long long limit_tok; /* 0: no token limit */
    long long remaining_tok;
    long reset_req_ms; /* until the window is empty of requests / tokens again */
    long reset_tok_ms;
    int64_t now_ms; /* wall clock of the request, for Anthropic's RFC 3339 resets */
} fake_rl_info_t;

enum { FAKE_API_OPENAI = 1, FAKE_API_ANTHROPIC = 2 };

/* One SSE step: the bytes of body up to `end`, sent `gap_ms` after the previous step. */
typedef struct fake_seg {
    size_t end;
    long gap_ms;
} fake_seg_t;

typedef struct fake_reply {
    int status;
    const char *content_type; /* static string */
    int retry_after_s;        /* > 0: a Retry-After header */
    const char *request_id;   /* static name of the request-id header, or NULL */
    char request_id_value[48];
    long delay_ms;      /* before anything is sent */
    fake_fault_t fault; /* TIMEOUT, RESET or STALL change delivery; else NONE */
    int stream;         /* body is an SSE stream cut into segs */
    fake_out_t body;
    fake_seg_t *segs; /* stream steps, owned */
    size_t nsegs;
    size_t segcap;
    long content_steps; /* steps that carried answer content */
    size_t fault_seg;   /* steps sent before a RESET or STALL fault strikes */
    fake_rl_info_t rl;  /* rate-limit headers (api 0: none); kept by fake_reply_json */
} fake_reply_t;

/* An empty 200 JSON reply. fake_reply_send releases it. */
void fake_reply_init(fake_reply_t *r);
/* Releases r's contents (for a reply that is never sent). */
void fake_reply_free(fake_reply_t *r);
/* Empties r and makes it a plain JSON reply with this status, no fault (for errors). */
void fake_reply_json(fake_reply_t *r, int status);
/* Makes r an SSE stream: the body is then cut into steps by the two calls below. */
void fake_reply_stream(fake_reply_t *r);
/* Ends a step that carried one piece of answer content: the first is sent --ttft-ms after
 * the stream starts, the next ones --itl-ms apart. */
void fake_reply_content_step(fake_reply_t *r);
/* Ends the last step (finish reason, usage, terminator), sent right after the last
 * content step. */
void fake_reply_final_step(fake_reply_t *r);
/* Delivers r for req on base: now, later, or never, as its delay and fault say. Takes
 * over r's contents; the struct itself may be dropped by the caller afterwards. */
void fake_reply_send(struct evhttp_request *req, struct event_base *base, fake_reply_t *r);
/* Replies currently delayed, streaming or held by a fault, across all threads. */
long fake_reply_held(void);

/* ---- fake_answers.c: recorded answers ---------------------------------------------- */

/* One recorded answer; lives in the table until fake_answers_free. */
typedef struct fake_answer {
    const char *text; /* the answer, NUL-terminated (it may hold NULs of its own) */
    size_t len;
    long delay_ms; /* 0..FAKE_MAX_DELAY_MS */
} fake_answer_t;

/* Loads the JSONL file at path into the table the loops read; call once, before the loops
 * start. 0 on success; -1 after printing "ahorro-fake: FILE:LINE: reason" to stderr, with
 * nothing left allocated. */
int fake_answers_load(const char *path);
/* Frees the table (no-op when nothing was loaded); call once at exit. */
void fake_answers_free(void);
/* The recorded answer for a request to model whose last user message has the content
 * last_user (a string or an array of parts; NULL when there is no user message), tried
 * as (model, prompt), (any model, prompt), (model, any prompt), (any, any); NULL when
 * none is recorded. The prompt is the message's text pieces joined by "\n". Thread-safe:
 * the table is read-only once loaded. */
const fake_answer_t *fake_answers_find(const char *model, const json_t *last_user);
/* Requests answered from the file since start or the last POST /_fake/reset. */
unsigned long long fake_answers_hits(void);
void fake_answers_reset_hits(void);

/* ---- fake_limits.c: provider-side rate limits ------------------------------------------ */

/* Adds one --rate-limit MODEL=RPM[:TPM] (MODEL `*`: every other model, each its own
 * window). Before the loops start. -1 after printing why to stderr. */
int fake_limits_add(const char *spec);
/* Frees the windows; call once at exit. */
void fake_limits_free(void);
/* Empties every window (POST /_fake/reset). */
void fake_limits_reset(void);
/* Requests refused with 429 by the limits since start or the last reset. */
unsigned long long fake_limits_refused(void);
void fake_limits_reset_refused(void);
/* Adds the rate-limit headers of r->rl to h. */
void fake_limits_headers(struct evkeyvalq *h, const fake_reply_t *r);

/* 1 when any --rate-limit was given. Read-only once the loops run. */
extern int fake_limits_enabled;

/* ---- fake_log.c: the request log ---------------------------------------------------- */

/* Opens FILE (created or truncated) and starts the writer thread. -1 after printing why. */
int fake_log_open(const char *path);
/* Writes what is buffered and stops the writer; call once at exit. */
void fake_log_close(void);
/* Appends one line; thread-safe. model may be NULL (logged as null); fault is a delivery
 * fault (timeout, reset, stall) or FAKE_FAULT_NONE. */
void fake_log_request(int64_t t_ms, const char *path, const char *model, int status,
                      long prompt_tokens, long max_tokens, fake_fault_t fault);

/* 1 when --log was given. Read-only once the loops run. */
extern int fake_log_enabled;

/* Wall-clock milliseconds. */
int64_t fake_now_ms(void);

/* ---- request context handed to the API handlers ------------------------------------- */

/* What a handler found out about a request, for the limits and the log. */
typedef struct fake_meter {
    const char *model;  /* points into the request tree, or NULL */
    long prompt_tokens; /* by the counting rule; 0 until known */
    long max_tokens;    /* -1 when not given */
} fake_meter_t;

typedef struct fake_ctx {
    struct evhttp_request *req;
    json_t *body;           /* parsed request body, or NULL when it was not JSON */
    const char *json_error; /* why the body did not parse, when body is NULL */
    const char *deployment; /* Azure: deployment name from the path, else NULL */
    fake_fault_t hdr_fault; /* from x-fake-fault */
    long hdr_delay_ms;      /* from x-fake-fault: delay:MS */
    uint64_t seq;           /* unique per request, for ids */
    int64_t t_ms;           /* wall clock at arrival (0 when neither limits nor log are on) */
    fake_meter_t *meter;    /* filled by the handler */
} fake_ctx_t;

/* Records prompt_tokens and max_tokens (-1: none) in ctx->meter and, when rate limits are
 * on, counts the request against ctx->meter->model's window. 0: go on answering (r then
 * carries the rate-limit headers); 1: r holds the 429 (OpenAI's or Anthropic's as api
 * says) and the request did not count. */
int fake_limits_admit(const fake_ctx_t *ctx, fake_reply_t *r, int api, long prompt_tokens,
                      long max_tokens);

/* The API handlers: each fills r from ctx. */
void fake_openai_chat(const fake_ctx_t *ctx, fake_reply_t *r);
void fake_anthropic_messages(const fake_ctx_t *ctx, fake_reply_t *r);
void fake_embeddings(const fake_ctx_t *ctx, fake_reply_t *r);

/* ---- fake_batch.c: the Files and Batches API --------------------------------------- */

/* 1 when path is one of the Files or Batches API's (under /v1, or Azure's /openai). */
int fake_batch_path(const char *path);
/* 1 when path is one of them in Azure's form (/openai/files..., /openai/batches...). */
int fake_batch_azure_path(const char *path);
/* Serves a Files or Batches API request (post: POST, else GET; body: the raw request
 * body of len bytes, ctx->body its JSON when it parsed). Thread-safe. */
void fake_batch_api(const fake_ctx_t *ctx, const char *path, int post, const char *body, size_t len,
                    fake_reply_t *r);
/* Batches created, and batch lines answered, since start or the last reset. */
unsigned long long fake_batch_count(void);
unsigned long long fake_batch_lines(void);
/* Of those batches, the ones created on Azure's paths. */
unsigned long long fake_azure_batch_count(void);
/* 1 when path is one of Anthropic's Message Batches API's. */
int fake_message_batch_path(const char *path);
/* Serves a Message Batches API request (post: POST, else GET; ctx->body the JSON of the
 * len-byte request body, or NULL). Anthropic's error shapes. Thread-safe. */
void fake_message_batch_api(const fake_ctx_t *ctx, const char *path, int post, size_t len,
                            fake_reply_t *r);
/* Message batches created, and their requests answered, since start or the last reset. */
unsigned long long fake_message_batch_count(void);
unsigned long long fake_message_batch_lines(void);
/* Drops every file and batch and zeroes the counts (POST /_fake/reset). */
void fake_batch_reset(void);
/* Frees everything; call once at exit. */
void fake_batch_free(void);

/* OpenAI-style error body into r: {"error":{"message","type","param","code"}}. */
void fake_openai_error(fake_reply_t *r, int status, const char *type, const char *param,
                       const char *code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Anthropic-style error body into r: {"type":"error","error":{"type","message"}}. */
void fake_anthropic_error(fake_reply_t *r, int status, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- fake_server.c ------------------------------------------------------------------- */

/* The server of one loop thread: its event base and its evhttp. */
typedef struct fake_server fake_server_t;

/* Creates the server of one loop, accepting on lev (a SO_REUSEPORT listener, taken over:
 * freed with the server). NULL on failure (logged). Free with fake_server_free. */
fake_server_t *fake_server_new(struct event_base *base, struct evconnlistener *lev);
void fake_server_free(fake_server_t *s);
/* Frees what /_fake/last holds; call once at exit. */
void fake_server_cleanup(void);

#endif
