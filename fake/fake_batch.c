/* fake_batch.c - an in-memory OpenAI Files and Batches API, for the gateway's forwarding
 * of batches to a provider's own Batch API (docs/batch.md "Provider batch APIs").
 *
 *   POST /v1/files                    multipart/form-data: file, purpose
 *   GET  /v1/files/{id}/content       the bytes
 *   POST /v1/batches                  {input_file_id, endpoint, completion_window}
 *   GET  /v1/batches/{id}             the batch
 *   POST /v1/batches/{id}/cancel      cancelling, then cancelled at the next look
 *
 * A batch is `validating` for the first half of --batch-delay-ms, `in_progress` for the
 * second, then `completed`: at the first look after the delay every line is answered
 * exactly as POST /v1/chat/completions would answer it (fake_openai_chat: the same
 * token rule, directives and recorded answers), and the output and error files are made.
 * Everything is in memory, shared by the loops under one lock, and bounded
 * (FAKE_BATCH_MAX_*): past a bound the request is refused, as a real provider's quota. */
#include "fake.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

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
static atomic_ullong batches_made, lines_answered, line_seq;

unsigned long long fake_batch_count(void)
{
    return atomic_load(&batches_made);
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
    nfiles = nbatches = 0;
    bytes_held = 0;
    pthread_mutex_unlock(&lock);
    atomic_store(&batches_made, 0);
    atomic_store(&lines_answered, 0);
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

/* Answers one input line as POST /v1/chat/completions would. 1 when it went to the
 * output (2xx), 0 to the errors. */
static int answer_line(const char *text, size_t len, fake_out_t *out, fake_out_t *err)
{
    json_t *line = json_loadb(text, len, 0, NULL);
    const char *cid = json_string_value(json_object_get(line, "custom_id"));
    const char *url = json_string_value(json_object_get(line, "url"));
    json_t *body = json_object_get(line, "body");
    int ok = 0;
    if (!cid || !json_is_object(body) || !url || strcmp(url, "/v1/chat/completions") != 0 ||
        json_is_true(json_object_get(body, "stream"))) {
        result_line(err, cid, 0, NULL, NULL, 0, "invalid_request",
                    "ahorro-fake: a batch line needs a custom_id, url /v1/chat/completions "
                    "and a non-streamed body");
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
            if (answer_line(p, n, &out, &err))
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

static void create(const fake_ctx_t *ctx, fake_reply_t *r)
{
    const json_t *b = ctx->body;
    const char *in = json_string_value(json_object_get(b, "input_file_id"));
    const char *ep = json_string_value(json_object_get(b, "endpoint"));
    const char *win = json_string_value(json_object_get(b, "completion_window"));
    if (!in || !ep || strcmp(ep, "/v1/chat/completions") != 0 || !win || strcmp(win, "24h")) {
        fake_openai_error(r, 400, "invalid_request_error", NULL, NULL,
                          "ahorro-fake: a batch needs input_file_id, endpoint "
                          "/v1/chat/completions and completion_window 24h");
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
        nb->created_ms = fake_now_ms();
        nb->total = lines;
        batch_json(&r->body, nb);
        atomic_fetch_add(&batches_made, 1);
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

int fake_batch_path(const char *path)
{
    return strcmp(path, "/v1/files") == 0 || strncmp(path, "/v1/files/", 10) == 0 ||
           strcmp(path, "/v1/batches") == 0 || strncmp(path, "/v1/batches/", 12) == 0;
}

void fake_batch_api(const fake_ctx_t *ctx, const char *path, int post, const char *body, size_t len,
                    fake_reply_t *r)
{
    char id[FAKE_BATCH_ID_MAX];
    const char *rest;
    if (strcmp(path, "/v1/files") == 0 && post) {
        upload(ctx, body, len, r);
    } else if ((rest = path_id(path, "/v1/files/", id, sizeof id)) &&
               strcmp(rest, "/content") == 0 && !post) {
        content(id, r);
    } else if (strcmp(path, "/v1/batches") == 0 && post) {
        create(ctx, r);
    } else if ((rest = path_id(path, "/v1/batches/", id, sizeof id)) && !*rest && !post) {
        retrieve(id, 0, r);
    } else if (rest && strcmp(rest, "/cancel") == 0 && post) {
        retrieve(id, 1, r);
    } else {
        fake_openai_error(r, 404, "invalid_request_error", NULL, NULL,
                          "Invalid URL (%s %.200s): ahorro-fake serves POST /v1/files, GET "
                          "/v1/files/{id}/content, POST /v1/batches, GET /v1/batches/{id}, "
                          "POST /v1/batches/{id}/cancel",
                          post ? "POST" : "GET", path);
    }
}

void fake_batch_free(void)
{
    fake_batch_reset();
}
