/* batch_api.c - the Files and Batch API endpoints (batch_api.h).
 *
 * Each handler answers at once from the database and the files directory;
 * nothing here waits on the network. What can take a while runs on the
 * worker's loop all the same, bounded by the upload limit: writing an
 * upload to disk, and the scan of an input file when a batch is created
 * (the scan must finish before the answer, which refuses a file whose
 * custom_ids repeat). Errors are in OpenAI's format. */
#include "server/batch_api.h"

#include <errno.h>
#include <event2/buffer.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch/batches.h"
#include "batch/engine.h"
#include "batch/files.h"
#include "batch/multipart.h"
#include "core/alloc.h"
#include "core/log.h"
#include "server/exchange.h"

#define BATCH_API_MAX_JSON_BODY 65536
#define BATCH_MAX_METADATA 16
#define BATCH_MAX_METADATA_KEY 64
#define BATCH_MAX_METADATA_VALUE 512
#define FILE_DEFAULT_NAME "upload.jsonl"

typedef enum {
    OP_NONE,
    OP_FILE_UPLOAD,
    OP_FILE_LIST,
    OP_FILE_GET,
    OP_FILE_DELETE,
    OP_FILE_CONTENT,
    OP_BATCH_CREATE,
    OP_BATCH_LIST,
    OP_BATCH_GET,
    OP_BATCH_CANCEL,
} op_t;

int ah_batch_api_path(const char *path)
{
    return strcmp(path, "/files") == 0 || strncmp(path, "/files/", 7) == 0 ||
           strcmp(path, "/batches") == 0 || strncmp(path, "/batches/", 9) == 0;
}

static void fail(struct evhttp_request *req, int status, const char *code, const char *param,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* An OpenAI error with a param (ah_reply_error has none). */
static void fail(struct evhttp_request *req, int status, const char *code, const char *param,
                 const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status == 401   ? "authentication_error"
                       : status == 403 ? "permission_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    json_t *e = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg, "type", type, "param",
                          param ? json_string(param) : json_null(), "code",
                          code ? json_string(code) : json_null());
    ah_reply_json(req, status, e);
    json_decref(e);
}

/* The id segment of "/files/{id}" or "/files/{id}/content" into out; the
 * rest of the path after it in *rest. 0, or -1 when empty or too long. */
static int path_id(const char *p, char out[AH_FILE_ID_MAX], const char **rest)
{
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= AH_FILE_ID_MAX)
        return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    *rest = slash ? slash : "";
    return 0;
}

/* Which endpoint, and its method check: 405 answered here (-1). */
static int route_op(struct evhttp_request *req, const char *path, char id[AH_FILE_ID_MAX], op_t *op)
{
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    const char *rest = "";
    const char *allow = NULL;
    *op = OP_NONE;
    if (strcmp(path, "/files") == 0) {
        *op = m == EVHTTP_REQ_POST ? OP_FILE_UPLOAD : m == EVHTTP_REQ_GET ? OP_FILE_LIST : OP_NONE;
        allow = "GET, POST";
    } else if (strcmp(path, "/batches") == 0) {
        *op = m == EVHTTP_REQ_POST  ? OP_BATCH_CREATE
              : m == EVHTTP_REQ_GET ? OP_BATCH_LIST
                                    : OP_NONE;
        allow = "GET, POST";
    } else if (strncmp(path, "/files/", 7) == 0 && path_id(path + 7, id, &rest) == 0) {
        if (!*rest) {
            *op = m == EVHTTP_REQ_GET      ? OP_FILE_GET
                  : m == EVHTTP_REQ_DELETE ? OP_FILE_DELETE
                                           : OP_NONE;
            allow = "GET, DELETE";
        } else if (strcmp(rest, "/content") == 0) {
            *op = m == EVHTTP_REQ_GET ? OP_FILE_CONTENT : OP_NONE;
            allow = "GET";
        }
    } else if (strncmp(path, "/batches/", 9) == 0 && path_id(path + 9, id, &rest) == 0) {
        if (!*rest) {
            *op = m == EVHTTP_REQ_GET ? OP_BATCH_GET : OP_NONE;
            allow = "GET";
        } else if (strcmp(rest, "/cancel") == 0) {
            *op = m == EVHTTP_REQ_POST ? OP_BATCH_CANCEL : OP_NONE;
            allow = "POST";
        }
    }
    if (!allow) {
        fail(req, 404, "not_found", NULL, "Unknown endpoint");
        return -1;
    }
    if (*op == OP_NONE) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
        fail(req, 405, NULL, NULL, "Method not allowed: use %s", allow);
        return -1;
    }
    return 0;
}

/* ---- files ------------------------------------------------------------------------------- */

static void reply_not_found(struct evhttp_request *req, const char *what, const char *id)
{
    fail(req, 404, "not_found", "id", "No such %s object: %s", what, id);
}

/* Write len bytes to path through a temporary file, renamed into place
 * once synced: a crash leaves no half file under the id. */
static ah_err_t write_file(const char *path, const char *data, size_t len)
{
    char tmp[AH_FILES_PATH_MAX + 80];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return AH_E_IO;
    size_t off = 0;
    while (off < len) {
        ssize_t k = write(fd, data + off, len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        off += (size_t)k;
    }
    int ok = off == len && fsync(fd) == 0;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return AH_E_IO;
    }
    return AH_E_OK;
}

static void file_upload(ah_worker_t *w, struct evhttp_request *req, const ah_tenant_t *t)
{
    const ah_config_t *c = w->gw->cfg;
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    char boundary[AH_MULTIPART_MAX_BOUNDARY + 1];
    if (ah_multipart_boundary(evhttp_find_header(ih, "Content-Type"), boundary)) {
        fail(req, 400, NULL, NULL,
             "Send the file as multipart/form-data with the fields 'file' and 'purpose'");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > c->batch.max_file_bytes + AH_UPLOAD_OVERHEAD_BYTES) {
        fail(req, 413, "file_too_large", "file",
             "The upload of %zu bytes exceeds this gateway's limit of %zu bytes per file", len,
             c->batch.max_file_bytes);
        return;
    }
    const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
    ah_multipart_part_t parts[AH_MULTIPART_MAX_PARTS];
    int n = 0;
    char why[200];
    if (ah_multipart_parse(body, len, boundary, parts, AH_MULTIPART_MAX_PARTS, &n, why,
                           sizeof why)) {
        fail(req, 400, NULL, NULL, "Malformed multipart/form-data body: %s", why);
        return;
    }
    const ah_multipart_part_t *file = ah_multipart_find(parts, n, "file");
    const ah_multipart_part_t *purpose = ah_multipart_find(parts, n, "purpose");
    if (!file) {
        fail(req, 400, NULL, "file", "Missing the 'file' field");
        return;
    }
    if (!purpose) {
        fail(req, 400, NULL, "purpose", "Missing the 'purpose' field");
        return;
    }
    if (purpose->len != 5 || memcmp(purpose->data, "batch", 5) != 0) {
        fail(req, 400, NULL, "purpose",
             "This gateway stores files for the Batch API only: purpose must be 'batch'");
        return;
    }
    if (file->len > c->batch.max_file_bytes) {
        fail(req, 413, "file_too_large", "file",
             "The file of %zu bytes exceeds this gateway's limit of %zu bytes per file", file->len,
             c->batch.max_file_bytes);
        return;
    }
    char dir[AH_FILES_PATH_MAX], id[AH_FILE_ID_MAX], path[AH_FILES_PATH_MAX + 64];
    if (ah_files_dir(c->db_path, dir, sizeof dir) || ah_files_new_id("file-", id)) {
        fail(req, 500, NULL, NULL, "Cannot store the file");
        return;
    }
    snprintf(path, sizeof path, "%s/%s.jsonl", dir, id);
    if (write_file(path, file->data, file->len)) {
        ah_error("files: cannot write %s: %s", path, strerror(errno));
        fail(req, 500, NULL, NULL, "Cannot store the file");
        return;
    }
    const char *name = file->filename[0] ? file->filename : FILE_DEFAULT_NAME;
    ah_dbh_t db = ah_worker_dbh(w);
    if (ah_files_add(db, id, "batch", name, (long long)file->len, t, path)) {
        unlink(path);
        fail(req, 500, NULL, NULL, "Cannot store the file");
        return;
    }
    ah_file_t f = {.bytes = (long long)file->len, .created_ms = 0};
    if (ah_files_get(db, id, t, &f) == AH_E_OK) {
        json_t *j = ah_file_json(&f);
        ah_reply_json(req, 200, j);
        json_decref(j);
    } else {
        fail(req, 500, NULL, NULL, "Cannot read the file back");
    }
    ah_file_clear(&f);
}

static void file_get(ah_worker_t *w, struct evhttp_request *req, const char *id,
                     const ah_tenant_t *t, op_t op)
{
    ah_file_t f;
    ah_dbh_t db = ah_worker_dbh(w);
    char dir[AH_FILES_PATH_MAX];
    if (ah_files_dir(w->gw->cfg->db_path, dir, sizeof dir)) {
        fail(req, 500, NULL, NULL, "Cannot read the files");
        return;
    }
    ah_err_t rc =
        op == OP_FILE_DELETE ? ah_files_delete(db, dir, id, t) : ah_files_get(db, id, t, &f);
    if (rc == AH_E_NOTFOUND) {
        reply_not_found(req, "File", id);
        return;
    }
    if (rc) {
        fail(req, 500, NULL, NULL, "Cannot read the files");
        return;
    }
    if (op == OP_FILE_DELETE) {
        json_t *j = json_pack("{s:s,s:s,s:b}", "id", id, "object", "file", "deleted", 1);
        ah_reply_json(req, 200, j);
        json_decref(j);
        return;
    }
    if (op == OP_FILE_GET) {
        json_t *j = ah_file_json(&f);
        ah_reply_json(req, 200, j);
        json_decref(j);
        ah_file_clear(&f);
        return;
    }
    /* the content, from disk (evbuffer_add_file: not read into memory);
     * with PostgreSQL, fetched onto this disk first (once) */
    if (ah_files_fetch(db, dir, &f)) {
        fail(req, 500, NULL, NULL, "Cannot read the file's content");
        ah_file_clear(&f);
        return;
    }
    int fd = open(f.path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        ah_error("files: cannot open %s: %s", f.path, strerror(errno));
        fail(req, 500, NULL, NULL, "Cannot read the file's content");
        ah_file_clear(&f);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (sb.st_size > 0)
        evbuffer_add_file(b, fd, 0, sb.st_size); /* takes fd */
    else
        close(fd);
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    evhttp_add_header(oh, "Content-Type", "application/octet-stream");
    evhttp_send_reply(req, 200, NULL, b);
    evbuffer_free(b);
    ah_file_clear(&f);
}

/* ---- lists ------------------------------------------------------------------------------- */

typedef struct list_q {
    int limit;
    const char *after, *order, *purpose;
    struct evkeyvalq q;
} list_q_t;

/* Parse ?limit=&after=&order=&purpose=; -1 after answering 400. */
static int list_query(struct evhttp_request *req, list_q_t *l, int def, int max)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *qs = uri ? evhttp_uri_get_query(uri) : NULL;
    TAILQ_INIT(&l->q);
    l->limit = def;
    if (qs && evhttp_parse_query_str(qs, &l->q) != 0) {
        fail(req, 400, NULL, NULL, "Malformed query string");
        return -1;
    }
    const char *lim = evhttp_find_header(&l->q, "limit");
    if (lim) {
        char *end;
        errno = 0;
        long v = strtol(lim, &end, 10);
        if (errno || end == lim || *end || v < 1 || v > max) {
            fail(req, 400, NULL, "limit", "limit must be an integer from 1 to %d", max);
            return -1;
        }
        l->limit = (int)v;
    }
    l->after = evhttp_find_header(&l->q, "after");
    l->order = evhttp_find_header(&l->q, "order");
    l->purpose = evhttp_find_header(&l->q, "purpose");
    if (l->order && strcmp(l->order, "asc") != 0 && strcmp(l->order, "desc") != 0) {
        fail(req, 400, NULL, "order", "order must be 'asc' or 'desc'");
        return -1;
    }
    return 0;
}

static void reply_list(struct evhttp_request *req, ah_err_t rc, json_t *list, const char *what,
                       const char *after)
{
    if (rc == AH_E_NOTFOUND)
        fail(req, 400, NULL, "after", "after: no such %s object: %s", what, after);
    else if (rc)
        fail(req, 500, NULL, NULL, "Cannot read the %s list", what);
    else
        ah_reply_json(req, 200, list);
    json_decref(list);
}

/* ---- batches ----------------------------------------------------------------------------- */

static json_t *json_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0 || len > BATCH_API_MAX_JSON_BODY)
        return NULL;
    return json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
}

/* OpenAI's rule for metadata: at most 16 pairs, keys of at most 64
 * characters, string values of at most 512. */
static int metadata_ok(json_t *m)
{
    if (!m || json_is_null(m))
        return 1;
    if (!json_is_object(m) || json_object_size(m) > BATCH_MAX_METADATA)
        return 0;
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (strlen(k) > BATCH_MAX_METADATA_KEY || !json_is_string(v) ||
            json_string_length(v) > BATCH_MAX_METADATA_VALUE)
            return 0;
    }
    return 1;
}

static void batch_create(ah_worker_t *w, struct evhttp_request *req, const ah_tenant_t *t)
{
    json_t *b = json_body(req);
    ah_file_t f = {0};
    if (!json_is_object(b)) {
        fail(req, 400, "invalid_json", NULL,
             "Send a JSON object: {\"input_file_id\", \"endpoint\", \"completion_window\": "
             "\"24h\", \"metadata\"}");
        goto out;
    }
    const char *input = json_string_value(json_object_get(b, "input_file_id"));
    const char *endpoint = json_string_value(json_object_get(b, "endpoint"));
    const char *window = json_string_value(json_object_get(b, "completion_window"));
    json_t *meta = json_object_get(b, "metadata");
    if (!input || !*input || strlen(input) >= AH_FILE_ID_MAX) {
        fail(req, 400, NULL, "input_file_id", "input_file_id must be the id of an uploaded file");
        goto out;
    }
    if (!endpoint || (strcmp(endpoint, "/v1/chat/completions") != 0 &&
                      strcmp(endpoint, "/v1/embeddings") != 0)) {
        fail(req, 400, NULL, "endpoint",
             "endpoint must be '/v1/chat/completions' or '/v1/embeddings' on this gateway");
        goto out;
    }
    if (!window || strcmp(window, "24h") != 0) {
        fail(req, 400, NULL, "completion_window", "completion_window must be '24h'");
        goto out;
    }
    if (!metadata_ok(meta)) {
        fail(req, 400, NULL, "metadata",
             "metadata must be an object of at most 16 string values, keys of at most 64 "
             "characters, values of at most 512");
        goto out;
    }
    ah_dbh_t db = ah_worker_dbh(w);
    char dir[AH_FILES_PATH_MAX];
    ah_err_t rc = ah_files_dir(w->gw->cfg->db_path, dir, sizeof dir);
    if (!rc)
        rc = ah_files_get(db, input, t, &f);
    if (rc == AH_E_NOTFOUND) {
        fail(req, 404, "not_found", "input_file_id", "No such File object: %s", input);
        goto out;
    }
    if (rc) {
        fail(req, 500, NULL, NULL, "Cannot read the files");
        goto out;
    }
    if (strcmp(f.purpose, "batch") != 0) {
        fail(req, 400, NULL, "input_file_id",
             "The input file's purpose is '%s': a batch needs a file uploaded with purpose "
             "'batch'",
             f.purpose);
        goto out;
    }
    ah_batch_scan_t sc;
    char why[300] = "";
    if (ah_files_fetch(db, dir, &f)) { /* PostgreSQL: its bytes onto this disk */
        fail(req, 500, NULL, NULL, "Cannot read the input file");
        goto out;
    }
    rc = ah_batch_scan(f.path, &sc, why, sizeof why);
    if (rc == AH_E_TOOBIG || rc == AH_E_PARSE) {
        fail(req, 400, NULL, "input_file_id", "The input file cannot be used: %s", why);
        goto out;
    }
    if (rc) {
        ah_error("batches: cannot scan %s: %s", f.path, why);
        fail(req, 500, NULL, NULL, "Cannot read the input file");
        goto out;
    }
    if (sc.lines == 0) {
        fail(req, 400, NULL, "input_file_id", "The input file has no requests");
        goto out;
    }
    if (sc.first_duplicate_line) {
        fail(req, 400, "duplicate_custom_id", "input_file_id",
             "The input file repeats custom_id '%s' on line %ld: custom_ids must be unique "
             "within a batch",
             sc.duplicate_id, sc.first_duplicate_line);
        goto out;
    }
    char id[AH_FILE_ID_MAX];
    json_t *obj = NULL;
    if (ah_files_new_id("batch_", id) ||
        ah_batches_add(db, id, input, endpoint, sc.lines, json_is_object(meta) ? meta : NULL, t) ||
        ah_batches_get(db, id, t, &obj)) {
        fail(req, 500, NULL, NULL, "Cannot store the batch");
        goto out;
    }
    ah_info("batch %s: created from %s (%ld requests, %ld malformed)", id, input, sc.lines,
            sc.malformed);
    ah_reply_json(req, 200, obj);
    json_decref(obj);
out:
    ah_file_clear(&f);
    json_decref(b);
}

static void batch_get(ah_worker_t *w, struct evhttp_request *req, const char *id,
                      const ah_tenant_t *t, op_t op)
{
    json_t *obj = NULL;
    ah_dbh_t db = ah_worker_dbh(w);
    ah_err_t rc = op == OP_BATCH_CANCEL ? ah_batches_cancel(db, id, t, &obj)
                                        : ah_batches_get(db, id, t, &obj);
    if (rc == AH_E_NOTFOUND) {
        reply_not_found(req, "Batch", id);
        return;
    }
    if (rc) {
        fail(req, 500, NULL, NULL, "Cannot read the batches");
        return;
    }
    const char *st = json_string_value(json_object_get(obj, "status"));
    if (op == OP_BATCH_CANCEL && st && strcmp(st, "cancelling") != 0 &&
        strcmp(st, "cancelled") != 0) {
        fail(req, 409, "batch_not_cancellable", NULL, "Cannot cancel a batch that is %s", st);
        json_decref(obj);
        return;
    }
    ah_reply_json(req, 200, obj);
    json_decref(obj);
}

void ah_batch_api_handle(ah_worker_t *w, struct evhttp_request *req, const char *path)
{
    char id[AH_FILE_ID_MAX] = "";
    op_t op;
    if (route_op(req, path, id, &op))
        return;
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    r->peer = ah_arena_strdup(&r->arena, ah_peer_of(req));
    const char *tok = ah_token_of(req);
    r->auth_token = tok ? ah_arena_strdup(&r->arena, tok) : NULL;
    if (ah_stage_auth(w, r)) {
        fail(req, r->fail.status, r->fail.code, NULL, "%s", r->fail.message);
        goto out;
    }
    ah_tenant_t t = {.key_id = r->key_id,
                     .owner = r->owner,
                     .all = r->key_id && strcmp(r->key_id, "master") == 0};
    list_q_t l;
    switch (op) {
    case OP_FILE_UPLOAD:
        file_upload(w, req, &t);
        break;
    case OP_FILE_GET:
    case OP_FILE_DELETE:
    case OP_FILE_CONTENT:
        file_get(w, req, id, &t, op);
        break;
    case OP_BATCH_CREATE:
        batch_create(w, req, &t);
        break;
    case OP_BATCH_GET:
    case OP_BATCH_CANCEL:
        batch_get(w, req, id, &t, op);
        break;
    case OP_FILE_LIST:
    case OP_BATCH_LIST: {
        int files = op == OP_FILE_LIST;
        if (list_query(req, &l, files ? AH_FILES_LIST_MAX : AH_BATCHES_LIST_DEFAULT,
                       files ? AH_FILES_LIST_MAX : AH_BATCHES_LIST_MAX) == 0) {
            json_t *list = NULL;
            ah_err_t rc =
                files ? ah_files_list(ah_worker_dbh(w), &t, l.purpose, l.after,
                                      l.order && strcmp(l.order, "asc") == 0, l.limit, &list)
                      : ah_batches_list(ah_worker_dbh(w), &t, l.after, l.limit, &list);
            reply_list(req, rc, list, files ? "File" : "Batch", l.after);
        }
        evhttp_clear_headers(&l.q);
        break;
    }
    case OP_NONE:
        break;
    }
out:
    ah_request_free(r);
}
