/* fake_batch.c - an in-memory OpenAI Files and Batches API, for the gateway's forwarding
 * of batches to a provider's own Batch API (docs/batch.md "Provider batch APIs").
 *
 *   POST /v1/files                    multipart/form-data: file, purpose
 *   GET  /v1/files/{id}/content       the bytes
 *   POST /v1/batches                  {input_file_id, endpoint, completion_window}
 *   GET  /v1/batches/{id}             the batch
 *   POST /v1/batches/{id}/cancel      cancelling, then cancelled at the next look
 *
 * and Azure OpenAI's form of the same: /openai/files..., /openai/batches... with
 * ?api-version= (any non-empty value), endpoint and line urls "/chat/completions" (body
 * model: the deployment's name).
 *
 * A batch is `validating` for the first half of --batch-delay-ms, `in_progress` for the
 * second, then `completed`: at the first look after the delay every line is answered
 * exactly as POST /v1/chat/completions would answer it (fake_openai_chat: the same
 * token rule, directives and recorded answers), and the output and error files are made.
 * Everything is in memory, shared by the loops under one lock, and bounded
 * (FAKE_BATCH_MAX_*): past a bound the request is refused, as a real provider's quota.
 *
 * Anthropic's Message Batches API, in the same memory and bounds:
 *
 *   POST /v1/messages/batches               {requests: [{custom_id, params}...]}
 *   GET  /v1/messages/batches/{id}          the batch (processing_status, request_counts)
 *   POST /v1/messages/batches/{id}/cancel   canceling, then ended (every request canceled)
 *   GET  /v1/messages/batches/{id}/results  JSONL of {custom_id, result}, once ended
 *
 * A message batch is `in_progress` until --batch-delay-ms has passed, then `ended`: at
 * the first look after the delay every request is answered exactly as POST /v1/messages
 * would answer it (fake_anthropic_messages: the same token rule, directives and recorded
 * answers), a 2xx as {type: succeeded, message}, else {type: errored, error}. */
#include "fake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "batch/multipart.h"
#include "core/alloc.h"

#define FAKE_BATCH_MAX_FILES 64
#define FAKE_BATCH_MAX_BATCHES 64
#define FAKE_BATCH_MAX_BYTES (256ull * 1024 * 1024) /* every file's bytes together */
#define FAKE_BATCH_MAX_LINES 100000                 /* lines of one batch's input */
#define FAKE_BATCH_ID_MAX 48
#define FAKE_BATCH_SEQ_BASE (1ull << 40) /* line answers' ids, apart from live requests' */

typedef struct bfile {
    char id[FAKE_BATCH_ID_MAX];
    char purpose[32];
    char filename[AH_MULTIPART_MAX_NAME + 1];
    char *data;
    size_t len;
    long created;
} bfile_t;

typedef struct bbatch {
    char id[FAKE_BATCH_ID_MAX];
    char input_file_id[FAKE_BATCH_ID_MAX];
    char endpoint[64];
    int azure; /* made on Azure's paths: its lines' url is "/chat/completions" */
    int64_t created_ms;
    int cancel; /* 1: cancelling asked, 2: cancelled */
    int done;   /* 1: completed (answers made), 2: failed */
    char out_id[FAKE_BATCH_ID_MAX], err_id[FAKE_BATCH_ID_MAX];
    long total, completed, failed;
    char error[256]; /* done == 2 */
    long in_progress_at, completed_at, cancelled_at;
} bbatch_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bfile_t files[FAKE_BATCH_MAX_FILES];
static int nfiles;
static bbatch_t batches[FAKE_BATCH_MAX_BATCHES];
static int nbatches;
static size_t bytes_held;
static unsigned long long id_seq;
static atomic_ullong batches_made, lines_answered, line_seq, azure_batches_made;

/* The endpoint of a batch, and its lines' url, on OpenAI's paths or Azure's. */
#define CHAT_URL(azure) ((azure) ? "/chat/completions" : "/v1/chat/completions")

/* An Anthropic message batch: its requests (the create body's array) until they are
 * answered, then its results (JSONL). */
typedef struct mbatch {
    char id[FAKE_BATCH_ID_MAX];
    int64_t created_ms;
    int cancel; /* 1: canceling asked, 2: ended by the cancel */
    int done;   /* the results are made */
    json_t *requests;
    size_t bytes; /* counted in bytes_held */
    char *results;
    size_t results_len;
    long total, succeeded, errored, canceled;
    int64_t cancel_ms, ended_ms;
} mbatch_t;

static mbatch_t mbatches[FAKE_BATCH_MAX_BATCHES];
static int nmbatches;
static atomic_ullong mbatches_made, mlines_answered;

unsigned long long fake_message_batch_count(void)
{
    return atomic_load(&mbatches_made);
}

unsigned long long fake_message_batch_lines(void)
{
    return atomic_load(&mlines_answered);
}

unsigned long long fake_batch_count(void)
{
    return atomic_load(&batches_made);
}

unsigned long long fake_azure_batch_count(void)
{
    return atomic_load(&azure_batches_made);
}

unsigned long long fake_batch_lines(void)
{
    return atomic_load(&lines_answered);
}

void fake_batch_reset(void)
{
    pthread_mutex_lock(&lock);
    for (int i = 0; i < nfiles; i++)
        ah_free(files[i].data);
    for (int i = 0; i < nmbatches; i++) {
        json_decref(mbatches[i].requests);
        ah_free(mbatches[i].results);
    }
    nfiles = nbatches = nmbatches = 0;
    bytes_held = 0;
    pthread_mutex_unlock(&lock);
    atomic_store(&batches_made, 0);
    atomic_store(&azure_batches_made, 0);
    atomic_store(&lines_answered, 0);
    atomic_store(&mbatches_made, 0);
    atomic_store(&mlines_answered, 0);
}

static bfile_t *file_find(const char *id)
{
    for (int i = 0; i < nfiles; i++)
        if (strcmp(files[i].id, id) == 0)
            return &files[i];
    return NULL;
}

static bbatch_t *batch_find(const char *id)
{
    for (int i = 0; i < nbatches; i++)
        if (strcmp(batches[i].id, id) == 0)
            return &batches[i];
    return NULL;
}

/* A new file holding data (taken over); NULL when a bound is reached. Under lock. */
static bfile_t *file_add(const char *purpose, const char *filename, char *data, size_t len)
{
    if (nfiles == FAKE_BATCH_MAX_FILES || len > FAKE_BATCH_MAX_BYTES - bytes_held)
        return NULL;
    bfile_t *f = &files[nfiles++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "file-fake%llu", ++id_seq);
    snprintf(f->purpose, sizeof f->purpose, "%s", purpose);
    snprintf(f->filename, sizeof f->filename, "%s", filename);
    f->data = data;
    f->len = len;
    f->created = (long)(fake_now_ms() / 1000);
    bytes_held += len;
    return f;
}

static void file_json(fake_out_t *o, const bfile_t *f)
{
    fake_out_cstr(o, "{\"id\":");
    fake_out_jcstr(o, f->id);
    fake_out_printf(o,
                    ",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%ld,\"filename\":", f->len,
                    f->created);
    fake_out_jcstr(o, f->filename);
    fake_out_cstr(o, ",\"purpose\":");
    fake_out_jcstr(o, f->purpose);
    fake_out_cstr(o, ",\"status\":\"processed\",\"status_details\":null}");
}

/* ---- answering a batch's lines ----------------------------------------------------------- */

/* One line of OpenAI's batch output or error format into out. */
static void result_line(fake_out_t *out, const char *custom_id, int status, const char *request_id,
                        const char *body, size_t body_len, const char *code, const char *message)
{
    fake_out_printf(out, "{\"id\":\"batch_req_fake%llu\",\"custom_id\":",
                    (unsigned long long)atomic_fetch_add(&line_seq, 1) + 1);
    fake_out_jcstr(out, custom_id);
    if (body) {
        fake_out_printf(out, ",\"response\":{\"status_code\":%d,\"request_id\":", status);
        fake_out_jcstr(out, request_id);
        fake_out_cstr(out, ",\"body\":");
        fake_out_raw(out, body, body_len);
        fake_out_cstr(out, "},\"error\":null}\n");
    } else {
        fake_out_cstr(out, ",\"response\":null,\"error\":{\"code\":");
        fake_out_jcstr(out, code);
        fake_out_cstr(out, ",\"message\":");
        fake_out_jcstr(out, message);
        fake_out_cstr(out, "}}\n");
    }
}

/* Answers one input line as POST /v1/chat/completions would (its url: CHAT_URL(azure)).
 * 1 when it went to the output (2xx), 0 to the errors. */
static int answer_line(const char *text, size_t len, int azure, fake_out_t *out, fake_out_t *err)
{
    json_t *line = json_loadb(text, len, 0, NULL);
    const char *cid = json_string_value(json_object_get(line, "custom_id"));
    const char *url = json_string_value(json_object_get(line, "url"));
    json_t *body = json_object_get(line, "body");
    int ok = 0;
    if (!cid || !json_is_object(body) || !url || strcmp(url, CHAT_URL(azure)) != 0 ||
        json_is_true(json_object_get(body, "stream"))) {
        result_line(err, cid, 0, NULL, NULL, 0, "invalid_request",
                    azure ? "ahorro-fake: a batch line needs a custom_id, url /chat/completions "
                            "and a non-streamed body"
                          : "ahorro-fake: a batch line needs a custom_id, url "
                            "/v1/chat/completions and a non-streamed body");
        json_decref(line);
        return 0;
    }
    fake_meter_t meter = {.max_tokens = -1};
    fake_ctx_t ctx = {.body = body,
                      .seq = FAKE_BATCH_SEQ_BASE + atomic_fetch_add(&line_seq, 1),
                      .t_ms = fake_now_ms(),
                      .meter = &meter};
    fake_reply_t r;
    fake_reply_init(&r);
    fake_openai_chat(&ctx, &r);
    ok = r.status >= 200 && r.status <= 299 && !r.body.err;
    result_line(ok ? out : err, cid, r.body.err ? 500 : r.status, r.request_id_value,
                r.body.err ? "{}" : r.body.buf.data, r.body.err ? 2 : r.body.buf.len, NULL, NULL);
    fake_reply_free(&r);
    json_decref(line);
    atomic_fetch_add(&lines_answered, 1);
    return ok;
}

/* The batch's answers, made once its time has come. Under lock. */
static void batch_run(bbatch_t *b)
{
    bfile_t *in = file_find(b->input_file_id);
    fake_out_t out, err;
    fake_out_init(&out, FAKE_BATCH_MAX_BYTES);
    fake_out_init(&err, FAKE_BATCH_MAX_BYTES);
    b->done = 1;
    b->completed = b->failed = 0;
    const char *p = in ? in->data : "", *end = in ? in->data + in->len : p;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k < n) {
            if (answer_line(p, n, b->azure, &out, &err))
                b->completed++;
            else
                b->failed++;
        }
        p += n + 1;
    }
    if (out.err || err.err) {
        b->done = 2;
        snprintf(b->error, sizeof b->error, "ahorro-fake: the results exceed %llu bytes",
                 FAKE_BATCH_MAX_BYTES);
    } else {
        char name[FAKE_BATCH_ID_MAX + 16];
        snprintf(name, sizeof name, "%s_output.jsonl", b->id);
        size_t olen = 0, elen = 0;
        char *o = ah_buf_steal(&out.buf, &olen), *e = ah_buf_steal(&err.buf, &elen);
        bfile_t *fo = olen ? file_add("batch_output", name, o, olen) : NULL;
        snprintf(name, sizeof name, "%s_error.jsonl", b->id);
        bfile_t *fe = elen ? file_add("batch_output", name, e, elen) : NULL;
        if ((olen && !fo) || (elen && !fe)) {
            b->done = 2;
            snprintf(b->error, sizeof b->error,
                     "ahorro-fake: no room for the results (%d files, %llu bytes at most)",
                     FAKE_BATCH_MAX_FILES, FAKE_BATCH_MAX_BYTES);
        }
        if (fo)
            snprintf(b->out_id, sizeof b->out_id, "%s", fo->id);
        else
            ah_free(o);
        if (fe)
            snprintf(b->err_id, sizeof b->err_id, "%s", fe->id);
        else
            ah_free(e);
    }
    b->completed_at = (long)(fake_now_ms() / 1000);
    fake_out_free(&out);
    fake_out_free(&err);
}

/* The batch's status now, moving it along. Under lock. */
static const char *batch_status(bbatch_t *b)
{
    int64_t age = fake_now_ms() - b->created_ms;
    if (b->cancel == 2)
        return "cancelled";
    if (b->cancel == 1 && !b->done) {
        b->cancel = 2; /* cancelling is seen once, then it is over */
        b->cancelled_at = (long)(fake_now_ms() / 1000);
        return "cancelling";
    }
    if (!b->done && age >= fake_opts.batch_delay_ms)
        batch_run(b);
    if (b->done == 2)
        return "failed";
    if (b->done)
        return "completed";
    if (age * 2 >= fake_opts.batch_delay_ms) {
        if (!b->in_progress_at)
            b->in_progress_at = (long)(fake_now_ms() / 1000);
        return "in_progress";
    }
    return "validating";
}

static void batch_json(fake_out_t *o, bbatch_t *b)
{
    const char *status = batch_status(b);
    long created = (long)(b->created_ms / 1000);
    fake_out_cstr(o, "{\"id\":");
    fake_out_jcstr(o, b->id);
    fake_out_cstr(o, ",\"object\":\"batch\",\"endpoint\":");
    fake_out_jcstr(o, b->endpoint);
    if (b->done == 2) {
        fake_out_cstr(o, ",\"errors\":{\"object\":\"list\",\"data\":[{\"code\":\"batch_failed\","
                         "\"message\":");
        fake_out_jcstr(o, b->error);
        fake_out_cstr(o, ",\"param\":null,\"line\":null}]}");
    } else {
        fake_out_cstr(o, ",\"errors\":null");
    }
    fake_out_cstr(o, ",\"input_file_id\":");
    fake_out_jcstr(o, b->input_file_id);
    fake_out_cstr(o, ",\"completion_window\":\"24h\",\"status\":");
    fake_out_jcstr(o, status);
    fake_out_cstr(o, ",\"output_file_id\":");
    fake_out_jcstr(o, b->out_id[0] ? b->out_id : NULL);
    fake_out_cstr(o, ",\"error_file_id\":");
    fake_out_jcstr(o, b->err_id[0] ? b->err_id : NULL);
    fake_out_printf(o, ",\"created_at\":%ld,\"expires_at\":%ld", created, created + 86400);
    if (b->in_progress_at)
        fake_out_printf(o, ",\"in_progress_at\":%ld", b->in_progress_at);
    else
        fake_out_cstr(o, ",\"in_progress_at\":null");
    if (b->done == 1 && b->completed_at)
        fake_out_printf(o, ",\"completed_at\":%ld", b->completed_at);
    else
        fake_out_cstr(o, ",\"completed_at\":null");
    if (b->cancelled_at)
        fake_out_printf(o, ",\"cancelled_at\":%ld", b->cancelled_at);
    else
        fake_out_cstr(o, ",\"cancelled_at\":null");
    fake_out_printf(o,
                    ",\"request_counts\":{\"total\":%ld,\"completed\":%ld,\"failed\":%ld},"
                    "\"metadata\":null}",
                    b->total, b->completed, b->failed);
}

/* ---- the endpoints ---------------------------------------------------------------------- */

static void upload(const fake_ctx_t *ctx, const char *body, size_t len, fake_reply_t *r)
{
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(ctx->req), "Content-Type");
    char boundary[AH_MULTIPART_MAX_BOUNDARY + 1], why[128] = "";
    ah_multipart_part_t parts[AH_MULTIPART_MAX_PARTS];
    int n = 0;
    if (!ct || ah_multipart_boundary(ct, boundary) ||
        ah_multipart_parse(body, len, boundary, parts, AH_MULTIPART_MAX_PARTS, &n, why,
                           sizeof why)) {
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: expected a multipart/form-data upload%s%s",
                          why[0] ? ": " : "", why);
        return;
    }
    const ah_multipart_part_t *file = ah_multipart_find(parts, n, "file");
    const ah_multipart_part_t *purpose = ah_multipart_find(parts, n, "purpose");
    if (!file || !file->has_filename) {
        fake_openai_error(r, 400, "invalid_request_error", "file", NULL,
                          "Missing required parameter: 'file'.");
        return;
    }
    if (!purpose || purpose->len != 5 || memcmp(purpose->data, "batch", 5) != 0) {
        fake_openai_error(r, 400, "invalid_request_error", "purpose", NULL,
                          "ahorro-fake keeps files of purpose 'batch' only.");
        return;
    }
    char *data = ah_malloc(file->len + 1);
    memcpy(data, file->data, file->len);
    data[file->len] = 0;
    pthread_mutex_lock(&lock);
    bfile_t *f = file_add("batch", file->filename, data, file->len);
    if (f)
        file_json(&r->body, f);
    pthread_mutex_unlock(&lock);
    if (!f) {
        ah_free(data);
        fake_openai_error(r, 429, "invalid_request_error", NULL, "quota_exceeded",
                          "ahorro-fake holds at most %d files and %llu bytes.",
                          FAKE_BATCH_MAX_FILES, FAKE_BATCH_MAX_BYTES);
    }
}

static void content(const char *id, fake_reply_t *r)
{
    pthread_mutex_lock(&lock);
    bfile_t *f = file_find(id);
    if (f) {
        r->content_type = "application/octet-stream";
        fake_out_raw(&r->body, f->data, f->len);
    }
    pthread_mutex_unlock(&lock);
    if (!f)
        fake_openai_error(r, 404, "invalid_request_error", "id", NULL, "No such File object: %s",
                          id);
    else if (r->body.err)
        fake_openai_error(r, 500, "server_error", NULL, NULL, "ahorro-fake: file too large");
}

static void create(const fake_ctx_t *ctx, int azure, fake_reply_t *r)
{
    const json_t *b = ctx->body;
    const char *in = json_string_value(json_object_get(b, "input_file_id"));
    const char *ep = json_string_value(json_object_get(b, "endpoint"));
    const char *win = json_string_value(json_object_get(b, "completion_window"));
    if (!in || !ep || strcmp(ep, CHAT_URL(azure)) != 0 || !win || strcmp(win, "24h")) {
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: a batch needs input_file_id, endpoint %s and "
                          "completion_window 24h",
                          CHAT_URL(azure));
        return;
    }
    pthread_mutex_lock(&lock);
    bfile_t *f = file_find(in);
    long lines = 0;
    for (size_t i = 0; f && i < f->len; i++)
        lines += f->data[i] == '\n' || (i + 1 == f->len && f->data[i] != '\n');
    int ok = f && strcmp(f->purpose, "batch") == 0 && nbatches < FAKE_BATCH_MAX_BATCHES &&
             lines <= FAKE_BATCH_MAX_LINES;
    if (ok) {
        bbatch_t *nb = &batches[nbatches++];
        memset(nb, 0, sizeof *nb);
        snprintf(nb->id, sizeof nb->id, "batch_fake%llu", ++id_seq);
        snprintf(nb->input_file_id, sizeof nb->input_file_id, "%s", in);
        snprintf(nb->endpoint, sizeof nb->endpoint, "%s", ep);
        nb->azure = azure;
        nb->created_ms = fake_now_ms();
        nb->total = lines;
        batch_json(&r->body, nb);
        atomic_fetch_add(&batches_made, 1);
        if (azure)
            atomic_fetch_add(&azure_batches_made, 1);
    }
    int nfull = nbatches >= FAKE_BATCH_MAX_BATCHES;
    pthread_mutex_unlock(&lock);
    if (!ok && !f)
        fake_openai_error(r, 400, "invalid_request_error", "input_file_id", NULL,
                          "No such File object: %s", in);
    else if (!ok)
        fake_openai_error(r, nfull ? 429 : 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: at most %d batches of %d lines, from files of purpose "
                          "batch",
                          FAKE_BATCH_MAX_BATCHES, FAKE_BATCH_MAX_LINES);
}

static void retrieve(const char *id, int cancel, fake_reply_t *r)
{
    pthread_mutex_lock(&lock);
    bbatch_t *b = batch_find(id);
    if (b && cancel && !b->cancel && !b->done)
        b->cancel = 1;
    if (b)
        batch_json(&r->body, b);
    pthread_mutex_unlock(&lock);
    if (!b)
        fake_openai_error(r, 404, "invalid_request_error", "id", NULL, "No such Batch object: %s",
                          id);
}

/* The id in path after prefix, up to the next '/' (or the end), into out; the rest. */
static const char *path_id(const char *path, const char *prefix, char *out, size_t n)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0)
        return NULL;
    const char *id = path + pl, *slash = strchr(id, '/');
    size_t len = slash ? (size_t)(slash - id) : strlen(id);
    if (len == 0 || len >= n)
        return NULL;
    memcpy(out, id, len);
    out[len] = 0;
    return id + len;
}

/* The path under the API's root ("/files...", "/batches..."): after /v1, or after
 * /openai for Azure's form (*azure set); NULL when path is neither. */
static const char *batch_subpath(const char *path, int *azure)
{
    *azure = strncmp(path, "/openai/", 8) == 0;
    const char *p = *azure ? path + 7 : strncmp(path, "/v1/", 4) == 0 ? path + 3 : NULL;
    if (p && (strcmp(p, "/files") == 0 || strncmp(p, "/files/", 7) == 0 ||
              strcmp(p, "/batches") == 0 || strncmp(p, "/batches/", 9) == 0))
        return p;
    return NULL;
}

int fake_batch_path(const char *path)
{
    int azure;
    return batch_subpath(path, &azure) != NULL;
}

int fake_batch_azure_path(const char *path)
{
    int azure;
    return batch_subpath(path, &azure) && azure;
}

/* Azure's api-version query parameter, non-empty: 1 when the request has one. */
static int has_api_version(const fake_ctx_t *ctx)
{
    const struct evhttp_uri *uri = ctx->req ? evhttp_request_get_evhttp_uri(ctx->req) : NULL;
    const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (!q || evhttp_parse_query_str(q, &params) != 0) {
        evhttp_clear_headers(&params);
        return 0;
    }
    const char *v = evhttp_find_header(&params, "api-version");
    int ok = v && *v;
    evhttp_clear_headers(&params);
    return ok;
}

void fake_batch_api(const fake_ctx_t *ctx, const char *path, int post, const char *body, size_t len,
                    fake_reply_t *r)
{
    char id[FAKE_BATCH_ID_MAX];
    const char *rest = NULL;
    int azure = 0;
    const char *p = batch_subpath(path, &azure);
    if (p && azure && !has_api_version(ctx)) {
        fake_openai_error(r, 404, "invalid_request_error", NULL, "404",
                          "Resource not found: ahorro-fake's Azure paths need ?api-version=");
    } else if (p && strcmp(p, "/files") == 0 && post) {
        upload(ctx, body, len, r);
    } else if (p && (rest = path_id(p, "/files/", id, sizeof id)) &&
               strcmp(rest, "/content") == 0 && !post) {
        content(id, r);
    } else if (p && strcmp(p, "/batches") == 0 && post) {
        create(ctx, azure, r);
    } else if (p && (rest = path_id(p, "/batches/", id, sizeof id)) && !*rest && !post) {
        retrieve(id, 0, r);
    } else if (rest && strcmp(rest, "/cancel") == 0 && post) {
        retrieve(id, 1, r);
    } else {
        fake_openai_error(r, 404, "invalid_request_error", NULL, NULL,
                          "Invalid URL (%s %.200s): ahorro-fake serves POST /v1/files, GET "
                          "/v1/files/{id}/content, POST /v1/batches, GET /v1/batches/{id}, "
                          "POST /v1/batches/{id}/cancel (or under /openai/ with ?api-version=)",
                          post ? "POST" : "GET", path);
    }
}

/* ---- Anthropic's Message Batches API ---------------------------------------------------- */

static mbatch_t *mbatch_find(const char *id)
{
    for (int i = 0; i < nmbatches; i++)
        if (strcmp(mbatches[i].id, id) == 0)
            return &mbatches[i];
    return NULL;
}

/* RFC 3339 UTC time of ms, into out. */
static void rfc3339(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* One request answered as POST /v1/messages would answer it, as a result line. */
static void mbatch_answer(mbatch_t *b, const json_t *req, fake_out_t *out)
{
    const char *cid = json_string_value(json_object_get(req, "custom_id"));
    fake_meter_t meter = {.max_tokens = -1};
    fake_ctx_t ctx = {.body = json_object_get(req, "params"),
                      .seq = FAKE_BATCH_SEQ_BASE + atomic_fetch_add(&line_seq, 1),
                      .t_ms = fake_now_ms(),
                      .meter = &meter};
    fake_reply_t r;
    fake_reply_init(&r);
    fake_anthropic_messages(&ctx, &r);
    int ok = r.status >= 200 && r.status <= 299 && !r.body.err;
    fake_out_cstr(out, "{\"custom_id\":");
    fake_out_jcstr(out, cid);
    if (ok) {
        fake_out_cstr(out, ",\"result\":{\"type\":\"succeeded\",\"message\":");
        b->succeeded++;
    } else {
        fake_out_cstr(out, ",\"result\":{\"type\":\"errored\",\"error\":");
        b->errored++;
    }
    if (r.body.err)
        fake_out_cstr(out, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                           "\"message\":\"ahorro-fake: the answer is too large\"}}");
    else
        fake_out_raw(out, r.body.buf.data, r.body.buf.len);
    fake_out_cstr(out, "}}\n");
    fake_reply_free(&r);
    atomic_fetch_add(&mlines_answered, 1);
}

/* The batch's results, made once its time has come (or its cancel seen). Under lock. */
static void mbatch_run(mbatch_t *b)
{
    fake_out_t out;
    fake_out_init(&out, FAKE_BATCH_MAX_BYTES);
    size_t i;
    json_t *req;
    json_array_foreach(b->requests, i, req)
    {
        if (b->cancel) {
            fake_out_cstr(&out, "{\"custom_id\":");
            fake_out_jcstr(&out, json_string_value(json_object_get(req, "custom_id")));
            fake_out_cstr(&out, ",\"result\":{\"type\":\"canceled\"}}\n");
            b->canceled++;
        } else {
            mbatch_answer(b, req, &out);
        }
    }
    bytes_held -= b->bytes;
    b->bytes = 0;
    json_decref(b->requests);
    b->requests = NULL;
    size_t len = 0;
    char *text = out.err ? NULL : ah_buf_steal(&out.buf, &len);
    if (text && len <= FAKE_BATCH_MAX_BYTES - bytes_held) {
        b->results = text;
        b->results_len = len;
        bytes_held += len;
    } else { /* no room: every request is errored, as an overloaded provider */
        ah_free(text);
        b->results = NULL;
        b->results_len = 0;
        b->errored += b->succeeded;
        b->succeeded = 0;
    }
    fake_out_free(&out);
    b->done = 1;
    b->ended_ms = fake_now_ms();
}

/* The batch's processing_status now, moving it along. Under lock. */
static const char *mbatch_status(mbatch_t *b)
{
    if (!b->done && b->cancel == 1) {
        b->cancel = 2; /* canceling is seen once, then it is over */
        return "canceling";
    }
    if (!b->done && (b->cancel || fake_now_ms() - b->created_ms >= fake_opts.batch_delay_ms))
        mbatch_run(b);
    return b->done ? "ended" : "in_progress";
}

static void mbatch_json(const fake_ctx_t *ctx, fake_out_t *o, mbatch_t *b)
{
    const char *status = mbatch_status(b);
    char t[40];
    fake_out_cstr(o, "{\"id\":");
    fake_out_jcstr(o, b->id);
    fake_out_cstr(o, ",\"type\":\"message_batch\",\"processing_status\":");
    fake_out_jcstr(o, status);
    long processing = b->done ? 0 : b->total;
    fake_out_printf(o,
                    ",\"request_counts\":{\"processing\":%ld,\"succeeded\":%ld,\"errored\":%ld,"
                    "\"canceled\":%ld,\"expired\":0}",
                    processing, b->succeeded, b->errored, b->canceled);
    rfc3339(b->created_ms, t, sizeof t);
    fake_out_cstr(o, ",\"created_at\":");
    fake_out_jcstr(o, t);
    rfc3339(b->created_ms + 86400000, t, sizeof t);
    fake_out_cstr(o, ",\"expires_at\":");
    fake_out_jcstr(o, t);
    fake_out_cstr(o, ",\"archived_at\":null,\"cancel_initiated_at\":");
    if (b->cancel_ms) {
        rfc3339(b->cancel_ms, t, sizeof t);
        fake_out_jcstr(o, t);
    } else {
        fake_out_cstr(o, "null");
    }
    fake_out_cstr(o, ",\"ended_at\":");
    if (b->done) {
        rfc3339(b->ended_ms, t, sizeof t);
        fake_out_jcstr(o, t);
    } else {
        fake_out_cstr(o, "null");
    }
    fake_out_cstr(o, ",\"results_url\":");
    const char *host =
        ctx->req ? evhttp_find_header(evhttp_request_get_input_headers(ctx->req), "Host") : NULL;
    if (b->done && host && strlen(host) < 256 && !strpbrk(host, "\"\\/ ")) {
        char url[400];
        snprintf(url, sizeof url, "http://%s/v1/messages/batches/%s/results", host, b->id);
        fake_out_jcstr(o, url);
    } else {
        fake_out_cstr(o, "null");
    }
    fake_out_cstr(o, "}");
}

static void mbatch_create(const fake_ctx_t *ctx, size_t len, fake_reply_t *r)
{
    json_t *reqs = json_object_get(ctx->body, "requests");
    size_t n = json_array_size(reqs), i;
    json_t *q;
    int shape = json_is_array(reqs) && n > 0;
    json_array_foreach(reqs, i, q)
    {
        if (!json_is_string(json_object_get(q, "custom_id")) ||
            !json_is_object(json_object_get(q, "params")))
            shape = 0;
    }
    if (!shape) {
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "ahorro-fake: a message batch needs a non-empty 'requests' array of "
                             "{custom_id, params}");
        return;
    }
    if (n > FAKE_BATCH_MAX_LINES) {
        fake_anthropic_error(r, 413, "request_too_large",
                             "ahorro-fake: at most %d requests in a message batch",
                             FAKE_BATCH_MAX_LINES);
        return;
    }
    pthread_mutex_lock(&lock);
    int ok = nmbatches < FAKE_BATCH_MAX_BATCHES && len <= FAKE_BATCH_MAX_BYTES - bytes_held;
    if (ok) {
        mbatch_t *b = &mbatches[nmbatches++];
        memset(b, 0, sizeof *b);
        snprintf(b->id, sizeof b->id, "msgbatch_fake%llu", ++id_seq);
        b->created_ms = fake_now_ms();
        b->requests = json_incref(reqs);
        b->bytes = len;
        b->total = (long)n;
        bytes_held += len;
        mbatch_json(ctx, &r->body, b);
        atomic_fetch_add(&mbatches_made, 1);
    }
    pthread_mutex_unlock(&lock);
    if (!ok)
        fake_anthropic_error(r, 429, "rate_limit_error",
                             "ahorro-fake holds at most %d message batches and %llu bytes.",
                             FAKE_BATCH_MAX_BATCHES, FAKE_BATCH_MAX_BYTES);
}

/* GET the batch (what 0), POST its cancel (1), GET its results (2). */
static void mbatch_get(const fake_ctx_t *ctx, const char *id, int what, fake_reply_t *r)
{
    pthread_mutex_lock(&lock);
    mbatch_t *b = mbatch_find(id);
    int ended = 0;
    if (b && what == 1 && !b->cancel && !b->done) {
        b->cancel = 1;
        b->cancel_ms = fake_now_ms();
    }
    if (b && what == 2) {
        ended = strcmp(mbatch_status(b), "ended") == 0;
        if (ended) {
            r->content_type = "application/binary";
            fake_out_raw(&r->body, b->results ? b->results : "", b->results_len);
        }
    } else if (b) {
        mbatch_json(ctx, &r->body, b);
    }
    pthread_mutex_unlock(&lock);
    if (!b)
        fake_anthropic_error(r, 404, "not_found_error", "ahorro-fake: no message batch %s", id);
    else if (what == 2 && !ended)
        fake_anthropic_error(r, 400, "invalid_request_error",
                             "ahorro-fake: message batch %s has not ended yet", id);
    else if (r->body.err)
        fake_anthropic_error(r, 500, "api_error", "ahorro-fake: the results are too large");
}

int fake_message_batch_path(const char *path)
{
    return strcmp(path, "/v1/messages/batches") == 0 ||
           strncmp(path, "/v1/messages/batches/", 21) == 0;
}

void fake_message_batch_api(const fake_ctx_t *ctx, const char *path, int post, size_t len,
                            fake_reply_t *r)
{
    char id[FAKE_BATCH_ID_MAX];
    const char *rest = path_id(path, "/v1/messages/batches/", id, sizeof id);
    if (strcmp(path, "/v1/messages/batches") == 0 && post)
        mbatch_create(ctx, len, r);
    else if (rest && !*rest && !post)
        mbatch_get(ctx, id, 0, r);
    else if (rest && strcmp(rest, "/cancel") == 0 && post)
        mbatch_get(ctx, id, 1, r);
    else if (rest && strcmp(rest, "/results") == 0 && !post)
        mbatch_get(ctx, id, 2, r);
    else
        fake_anthropic_error(r, 404, "not_found_error",
                             "Invalid URL (%s %.200s): ahorro-fake serves POST "
                             "/v1/messages/batches, GET /v1/messages/batches/{id}, POST "
                             "/v1/messages/batches/{id}/cancel, GET "
                             "/v1/messages/batches/{id}/results",
                             post ? "POST" : "GET", path);
}

void fake_batch_free(void)
{
    fake_batch_reset();
}
