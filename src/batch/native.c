/* native.c - a batch forwarded to the provider's own Batch API (native.h,
 * docs/batch.md "Provider batch APIs").
 *
 * Blocking libcurl easy calls on the runner's thread: a batch's life upstream
 * is minutes to hours of polling, so there is nothing to multiplex. The
 * provider's files pass through disk (the work directory), never memory:
 * only one line of them is held at a time. */
#include "batch/native.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch/batches.h"
#include "batch/engine.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "ingress/ingress.h"
#include "pipeline/request.h"
#include "provider/provider.h"
#include "upstream/curl_util.h"

#define NATIVE_URL_MAX 4096
#define NATIVE_MSG_MAX 512

/* ---- small pure pieces ------------------------------------------------------------------ */

const ah_deployment_t *ah_batch_native_dep(const ah_config_t *cfg, const char *alias)
{
    const ah_deployment_t *found = NULL;
    for (size_t i = 0; cfg && alias && i < cfg->ndeps; i++) {
        if (strcmp(cfg->deps[i].alias, alias) != 0)
            continue;
        if (found)
            return NULL; /* more than one deployment: the balancer's, not ours */
        found = &cfg->deps[i];
    }
    return found && found->batch_native &&
                   (found->kind == AH_PROVIDER_OPENAI || found->kind == AH_PROVIDER_AZURE ||
                    found->kind == AH_PROVIDER_ANTHROPIC)
               ? found
               : NULL;
}

int ah_batch_native_usage(const json_t *body, ah_usage_t *u)
{
    memset(u, 0, sizeof *u);
    const json_t *us = json_object_get(body, "usage");
    if (!json_is_object(us))
        return 0;
    u->input_tokens = json_integer_value(json_object_get(us, "prompt_tokens"));
    u->output_tokens = json_integer_value(json_object_get(us, "completion_tokens"));
    u->cache_read_tokens = json_integer_value(
        json_object_get(json_object_get(us, "prompt_tokens_details"), "cached_tokens"));
    u->reasoning_tokens = json_integer_value(
        json_object_get(json_object_get(us, "completion_tokens_details"), "reasoning_tokens"));
    if (u->input_tokens < 0)
        u->input_tokens = 0;
    if (u->output_tokens < 0)
        u->output_tokens = 0;
    if (u->cache_read_tokens < 0 || u->cache_read_tokens > u->input_tokens)
        u->cache_read_tokens = 0;
    if (u->reasoning_tokens < 0 || u->reasoning_tokens > u->output_tokens)
        u->reasoning_tokens = 0;
    return 1;
}

int ah_batch_native_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= AH_NATIVE_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

/* ---- Anthropic: the gateway's own translations, one line at a time ---------------------- */

json_t *ah_batch_native_to_anthropic(const ah_deployment_t *d, const json_t *body, char *code,
                                     size_t codelen, char *msg, size_t msglen)
{
    json_t *params = NULL, *b = json_deep_copy(body);
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    ah_provider_req_t pr = {0};
    if (!b || !json_is_object(b)) {
        ah_request_fail(r, 400, "invalid_request_error", "invalid_body", NULL,
                        "the body is not a JSON object");
        goto out;
    }
    if (ah_ingress_openai.parse_chat(r, b) != AH_E_OK)
        goto out;
    r->upstream_model = ah_arena_strdup(&r->arena, d->model);
    if (ah_provider_anthropic.build(r, d, &pr) != AH_E_OK)
        goto out;
    params = json_loadb(pr.body, pr.body_len, 0, NULL);
    if (!json_is_object(params)) {
        json_decref(params);
        params = NULL;
        ah_request_fail(r, 400, "invalid_request_error", "invalid_body", NULL,
                        "the body cannot be translated");
        goto out;
    }
    json_object_del(params, "stream"); /* a batch's answers are whole */
out:
    if (!params) {
        snprintf(code, codelen, "%s",
                 r->fail.code   ? r->fail.code
                 : r->fail.type ? r->fail.type
                                : "invalid_request");
        snprintf(msg, msglen, "%s", r->fail.message[0] ? r->fail.message : "invalid request");
    }
    ah_provider_req_free(&pr);
    json_decref(b);
    ah_request_free(r);
    return params;
}

json_t *ah_batch_native_from_anthropic(const ah_deployment_t *d, const json_t *message,
                                       ah_usage_t *u)
{
    memset(u, 0, sizeof *u);
    if (!json_is_object(message))
        return NULL;
    char *text = json_dumps(message, JSON_COMPACT);
    if (!text)
        return NULL;
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    r->upstream_model = ah_arena_strdup(&r->arena, d->model);
    json_t *canon = NULL, *out = NULL;
    if (ah_provider_anthropic.parse_response(r, text, strlen(text), &canon) == AH_E_OK && canon) {
        out = ah_ingress_openai.render_response(r, canon);
        *u = r->usage;
    }
    json_decref(canon);
    free(text);
    ah_request_free(r);
    return out;
}

/* ---- reading our input, by the engine's rules ------------------------------------------- */

typedef struct lines {
    FILE *f;
    ah_buf_t line;
    long lineno;
    int toolong;
} lines_t;

static int lines_open(lines_t *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f)
        return -1;
    ah_buf_init(&r->line, AH_BATCH_MAX_LINE);
    return 0;
}

static void lines_close(lines_t *r)
{
    if (r->f)
        fclose(r->f);
    ah_buf_free(&r->line);
    r->f = NULL;
}

/* The next non-empty line: 1 (toolong set when it was over the limit: the
 * rest was skipped), 0 at the end, -1 on a read error. */
static int lines_next(lines_t *r)
{
    for (;;) {
        ah_buf_reset(&r->line);
        r->toolong = 0;
        int c;
        while ((c = getc_unlocked(r->f)) != EOF && c != '\n') {
            char ch = (char)c;
            if (!r->toolong && ah_buf_append(&r->line, &ch, 1) != AH_E_OK)
                r->toolong = 1;
        }
        if (c == EOF && ferror(r->f))
            return -1;
        if (c == EOF && r->line.len == 0 && !r->toolong)
            return 0;
        r->lineno++;
        if (r->toolong)
            return 1;
        size_t k = 0;
        while (k < r->line.len &&
               (r->line.data[k] == ' ' || r->line.data[k] == '\t' || r->line.data[k] == '\r'))
            k++;
        if (k < r->line.len)
            return 1;
    }
}

const ah_deployment_t *ah_batch_native_route(const ah_config_t *cfg, const char *input_path)
{
    lines_t r;
    if (!cfg || lines_open(&r, input_path))
        return NULL;
    char *model = NULL;
    int same = 1, got;
    while (same && (got = lines_next(&r)) == 1) {
        if (r.toolong)
            continue;
        json_t *line = NULL;
        const char *code;
        char msg[256];
        if (ah_batch_check_line(r.line.data, r.line.len, r.lineno, &line, &code, msg, sizeof msg))
            continue;
        const char *m = json_string_value(json_object_get(json_object_get(line, "body"), "model"));
        if (!model)
            model = ah_strdup(m);
        else if (strcmp(model, m) != 0)
            same = 0;
        json_decref(line);
    }
    lines_close(&r);
    const ah_deployment_t *d = same && model ? ah_batch_native_dep(cfg, model) : NULL;
    ah_free(model);
    return d;
}

/* ---- HTTP to the provider --------------------------------------------------------------- */

typedef struct call {
    long status;   /* 0: no HTTP answer (err says why) */
    ah_buf_t body; /* the answer (JSON calls) */
    char err[NATIVE_MSG_MAX];
} call_t;

static size_t to_file(char *p, size_t sz, size_t n, void *ud)
{
    return fwrite(p, sz, n, ud) * sz;
}

static int is_anthropic(const ah_deployment_t *d)
{
    return d->kind == AH_PROVIDER_ANTHROPIC;
}

static int is_azure(const ah_deployment_t *d)
{
    return d->kind == AH_PROVIDER_AZURE;
}

void ah_batch_native_url(const ah_deployment_t *d, const char *path, char *url, size_t n)
{
    size_t bl = strlen(d->api_base);
    if (is_azure(d)) {
        const char *v =
            d->api_version && *d->api_version ? d->api_version : AH_NATIVE_AZURE_API_VERSION;
        snprintf(url, n, "%s/openai%s%sapi-version=%s", d->api_base, path,
                 strchr(path, '?') ? "&" : "?", v);
        return;
    }
    if (is_anthropic(d) && bl >= 3 && strcmp(d->api_base + bl - 3, "/v1") == 0 &&
        strncmp(path, "/v1/", 4) == 0)
        bl -= 3;
    snprintf(url, n, "%.*s%s", (int)bl, d->api_base, path);
}

/* The endpoint of a batch (its create call's and its lines' url) as the
 * provider names it: ours ("/v1/chat/completions") for OpenAI's shape,
 * without the /v1 for Azure's ("/chat/completions"). */
static const char *provider_endpoint(const ah_deployment_t *d, const char *ours)
{
    return is_azure(d) && strncmp(ours, "/v1/", 4) == 0 ? ours + 3 : ours;
}

/* One request to the provider's path (ah_batch_native_url), or to an absolute URL. JSON
 * answers into c->body; with out, the answer goes to that file instead
 * (downloads); with in, the JSON body is sent from that file (uploads). */
static void http(const ah_deployment_t *d, const char *method, const char *path,
                 const char *json_body, curl_mime *mime, FILE *in, FILE *out, long timeout_s,
                 call_t *c)
{
    memset(c, 0, sizeof *c);
    ah_buf_init(&c->body, AH_NATIVE_MAX_JSON);
    char url[NATIVE_URL_MAX], auth[1024];
    if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0)
        snprintf(url, sizeof url, "%s", path);
    else
        ah_batch_native_url(d, path, url, sizeof url);
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    if (!h) {
        snprintf(c->err, sizeof c->err, "out of memory");
        return;
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (d->api_key && *d->api_key) {
        snprintf(auth, sizeof auth,
                 is_anthropic(d) ? "x-api-key: %s"
                 : is_azure(d)   ? "api-key: %s"
                                 : "Authorization: Bearer %s",
                 d->api_key);
        hdrs = curl_slist_append(hdrs, auth);
        memset(auth, 0, sizeof auth);
    }
    if (is_anthropic(d))
        hdrs = curl_slist_append(hdrs, "anthropic-version: " AH_NATIVE_ANTHROPIC_VERSION);
    if (json_body || in)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    struct stat st;
    if (mime) {
        curl_easy_setopt(h, CURLOPT_MIMEPOST, mime);
    } else if (in && fstat(fileno(in), &st) == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READDATA, in); /* libcurl's default reader: fread */
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
    } else if (json_body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json_body);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
    if (out) {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, to_file);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
        curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)AH_NATIVE_MAX_DOWNLOAD);
    } else {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, ah_curl_to_buf);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &c->body);
    }
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    else
        snprintf(c->err, sizeof c->err, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
}

static void call_free(call_t *c)
{
    ah_buf_free(&c->body);
}

/* The answer as JSON (new reference), or NULL. */
static json_t *call_json(const call_t *c)
{
    return json_loadb(c->body.data ? c->body.data : "", c->body.len, 0, NULL);
}

/* "HTTP 400: <the provider's error message>" (or the transport error). */
static void call_why(const call_t *c, char *out, size_t n)
{
    if (!c->status) {
        snprintf(out, n, "%s", c->err);
        return;
    }
    json_t *j = call_json(c);
    const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    snprintf(out, n, "HTTP %ld: %s", c->status, m ? m : "no error message");
    json_decref(j);
}

static int transient(long status)
{
    return status == 0 || status == 408 || status == 409 || status == 429 || status >= 500;
}

/* ---- the provider's input --------------------------------------------------------------- */

/* The SHA-256 of a custom_id, cut to 64 bits (custom_ids are the caller's:
 * no hash they could aim collisions at). */
static uint64_t h64(const char *s)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h << 8 | md[i];
    return h;
}

/* A well-formed line of our input: its custom_id's hash and line number. */
typedef struct slot {
    uint64_t h;
    long lineno;
    int answered;
} slot_t;

typedef struct index {
    slot_t *v;
    size_t n, cap;
} index_t;

static int slot_cmp(const void *a, const void *b)
{
    const slot_t *x = a, *y = b;
    return x->h < y->h ? -1 : x->h > y->h;
}

static slot_t *index_find(index_t *ix, const char *custom_id)
{
    slot_t key = {.h = h64(custom_id)};
    return ix->n ? bsearch(&key, ix->v, ix->n, sizeof *ix->v, slot_cmp) : NULL;
}

/* Our result id of a line, as the engine makes it. */
static void result_id(const char *batch_id, const char *custom_id, long lineno, char *out, size_t n)
{
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, batch_id, strlen(batch_id));
    if (custom_id)
        h = ah_fnv1a(h, custom_id, strlen(custom_id));
    snprintf(out, n, "batch_req_%016llx%08lx", (unsigned long long)h, (unsigned long)lineno);
}

static int write_line(int fd, json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT);
    if (!t)
        return -1;
    size_t n = strlen(t);
    t[n] = '\n';
    ssize_t w = write(fd, t, n + 1);
    free(t);
    return w == (ssize_t)(n + 1) ? 0 : -1;
}

static int write_raw(int fd, const char *s, size_t n)
{
    return write(fd, s, n) == (ssize_t)n ? 0 : -1;
}

/* An Anthropic deployment's request of a well-formed line: {custom_id,
 * params}, new reference; NULL with code and msg (prefixed by the line
 * number, as the engine's) when the line cannot go to Anthropic. */
static json_t *anthropic_request(const ah_native_opts_t *o, json_t *line, long lineno, char *code,
                                 size_t codelen, char *msg, size_t msglen)
{
    char why[AH_NATIVE_ANTHROPIC_MSG_MAX];
    json_t *params = NULL;
    if (strcmp(o->endpoint, "/v1/chat/completions") != 0) {
        snprintf(code, codelen, "model_not_supported");
        snprintf(why, sizeof why, "model '%s' is served by Anthropic, which has no %s API",
                 o->dep->alias, o->endpoint);
    } else {
        params = ah_batch_native_to_anthropic(o->dep, json_object_get(line, "body"), code, codelen,
                                              why, sizeof why);
    }
    if (!params) {
        snprintf(msg, msglen, "line %ld: %s", lineno, why);
        return NULL;
    }
    return json_pack("{s:O,s:o}", "custom_id", json_object_get(line, "custom_id"), "params",
                     params);
}

/* One pass over our input: the index of well-formed lines; with up_fd, the
 * provider's input (OpenAI's shape: each body's model replaced by the
 * deployment's; Anthropic's: the elements of the create body's `requests`
 * array, the caller writes what surrounds them); with err_fd, the malformed
 * lines as the engine reports them, and for Anthropic the lines its
 * translation refuses. -1 on an I/O error. */
static int read_input(const ah_native_opts_t *o, index_t *ix, int up_fd, int err_fd, long *bad)
{
    lines_t r;
    if (lines_open(&r, o->input_path))
        return -1;
    int got, rc = 0;
    *bad = 0;
    while (rc == 0 && (got = lines_next(&r)) == 1) {
        json_t *line = NULL, *areq = NULL;
        const char *code = "line_too_long";
        char msg[AH_NATIVE_ANTHROPIC_MSG_MAX + 64], acode[64];
        if (r.toolong)
            snprintf(msg, sizeof msg, "line %ld: longer than %u bytes", r.lineno,
                     AH_BATCH_MAX_LINE);
        int malformed = r.toolong || ah_batch_check_line(r.line.data, r.line.len, r.lineno, &line,
                                                         &code, msg, sizeof msg);
        if (!malformed && is_anthropic(o->dep) &&
            !(areq = anthropic_request(o, line, r.lineno, acode, sizeof acode, msg, sizeof msg))) {
            malformed = 1;
            code = acode;
            json_decref(line);
            line = NULL;
        }
        if (malformed) {
            (*bad)++;
            if (err_fd >= 0) {
                json_t *src = r.toolong ? NULL : json_loadb(r.line.data, r.line.len, 0, NULL);
                const char *cid = json_string_value(json_object_get(src, "custom_id"));
                char id[64];
                result_id(o->batch_id, cid, r.lineno, id, sizeof id);
                json_t *j = json_pack("{s:s,s:o,s:n,s:{s:s,s:s,s:I}}", "id", id, "custom_id",
                                      cid ? json_string(cid) : json_null(), "response", "error",
                                      "code", code, "message", msg, "line", (json_int_t)r.lineno);
                if (write_line(err_fd, j))
                    rc = -1;
                json_decref(j);
                json_decref(src);
            }
            continue;
        }
        const char *cid = json_string_value(json_object_get(line, "custom_id"));
        if (ix->n == ix->cap) {
            ix->cap = ix->cap ? ix->cap * 2 : 1024;
            ix->v = ah_realloc(ix->v, ix->cap * sizeof *ix->v);
        }
        ix->v[ix->n++] = (slot_t){.h = h64(cid), .lineno = r.lineno};
        if (up_fd >= 0 && areq) {
            if ((ix->n > 1 && write_raw(up_fd, ",", 1)) || write_line(up_fd, areq))
                rc = -1;
        } else if (up_fd >= 0) {
            json_object_set_new(json_object_get(line, "body"), "model", json_string(o->dep->model));
            json_object_set_new(line, "method", json_string("POST"));
            const char *url = json_string_value(json_object_get(line, "url"));
            if (url && is_azure(o->dep))
                json_object_set_new(line, "url", json_string(provider_endpoint(o->dep, url)));
            if (write_line(up_fd, line))
                rc = -1;
        }
        json_decref(areq);
        json_decref(line);
    }
    if (got < 0)
        rc = -1;
    lines_close(&r);
    if (ix->n)
        qsort(ix->v, ix->n, sizeof *ix->v, slot_cmp);
    return rc;
}

/* ---- submit ----------------------------------------------------------------------------- */

static void fail_with(ah_native_result_t *res, const char *code, const char *message)
{
    res->end = AH_NATIVE_FAILED;
    json_decref(res->errors);
    res->errors = json_pack("{s:s,s:[{s:s,s:s,s:n,s:n}]}", "object", "list", "data", "code", code,
                            "message", message, "param", "line");
}

/* The reply to a batch's creation (OpenAI's and Anthropic's alike): 1 when
 * it named the provider's batch (kept in res), 0 when another attempt is
 * worth it (why says what went wrong), -1 when the provider refused the
 * batch (res has failed). Frees c. */
static int creation_reply(call_t *c, int attempt, ah_native_result_t *res, char *why, size_t whylen)
{
    json_t *j = c->status >= 200 && c->status < 300 ? call_json(c) : NULL;
    const char *id = json_string_value(json_object_get(j, "id"));
    if (id && ah_batch_native_id_ok(id))
        snprintf(res->provider_batch_id, sizeof res->provider_batch_id, "%s", id);
    json_decref(j);
    int got = res->provider_batch_id[0] != 0;
    if (!got)
        call_why(c, why, whylen);
    int again = !got && transient(c->status) && attempt < AH_NATIVE_TRIES;
    call_free(c);
    if (got)
        return 1;
    if (again)
        return 0;
    char m[NATIVE_MSG_MAX + 64];
    snprintf(m, sizeof m, "The provider refused the batch: %s", why);
    fail_with(res, "provider_batch_refused", m);
    return -1;
}

/* Sleep ms in ticks, asking the caller; its answer when not GO (once a
 * cancel was sent upstream, only a STOP cuts the nap short). */
static int nap(const ah_native_opts_t *o, long ms, long completed, long failed, int only_stop)
{
    for (long slept = 0; slept < ms; slept += AH_NATIVE_TICK_MS) {
        int a = o->poll ? o->poll(o->poll_ctx, completed, failed, 0) : AH_NATIVE_GO;
        if (a != AH_NATIVE_GO && (!only_stop || a == AH_NATIVE_STOP))
            return a;
        long t = ms - slept < AH_NATIVE_TICK_MS ? ms - slept : AH_NATIVE_TICK_MS;
        usleep((useconds_t)t * 1000);
    }
    return AH_NATIVE_GO;
}

/* Upload our input (rewritten for the provider) and create the batch; the
 * provider's id into res. 0, or -1 with res set (FAILED, or STOPPED/CANCELLED
 * when the caller said so before anything was created). */
static int submit(const ah_native_opts_t *o, ah_native_result_t *res, long bad)
{
    char up_path[4200], why[NATIVE_MSG_MAX] = "", file_id[AH_NATIVE_ID_MAX] = "";
    snprintf(up_path, sizeof up_path, "%s/%s-native-input.jsonl", o->work_dir, o->batch_id);
    int fd = open(up_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    index_t ix = {0};
    long bad2 = 0;
    int rc = -1;
    if (fd < 0 || read_input(o, &ix, fd, -1, &bad2)) {
        snprintf(why, sizeof why, "cannot write the provider's input file: %s", strerror(errno));
        fail_with(res, "batch_failed", why);
        goto out;
    }
    close(fd);
    fd = -1;
    /* upload: multipart by libcurl's mime API */
    for (int attempt = 1;; attempt++) {
        int a = o->poll ? o->poll(o->poll_ctx, 0, bad, 0) : AH_NATIVE_GO;
        if (a != AH_NATIVE_GO) {
            res->end = a == AH_NATIVE_STOP     ? AH_NATIVE_STOPPED
                       : a == AH_NATIVE_CANCEL ? AH_NATIVE_CANCELLED
                                               : AH_NATIVE_EXPIRED;
            goto out;
        }
        CURL *tmp = curl_easy_init();
        curl_mime *mime = curl_mime_init(tmp);
        curl_mimepart *p = curl_mime_addpart(mime);
        curl_mime_name(p, "purpose");
        curl_mime_data(p, "batch", CURL_ZERO_TERMINATED);
        p = curl_mime_addpart(mime);
        curl_mime_name(p, "file");
        curl_mime_filedata(p, up_path);
        curl_mime_filename(p, "batch_input.jsonl");
        curl_mime_type(p, "application/jsonl");
        call_t c;
        http(o->dep, "POST", "/files", NULL, mime, NULL, NULL, AH_NATIVE_TRANSFER_TIMEOUT_S, &c);
        curl_mime_free(mime);
        curl_easy_cleanup(tmp);
        json_t *j = c.status >= 200 && c.status < 300 ? call_json(&c) : NULL;
        const char *id = json_string_value(json_object_get(j, "id"));
        if (id && ah_batch_native_id_ok(id))
            snprintf(file_id, sizeof file_id, "%s", id);
        json_decref(j);
        if (!file_id[0])
            call_why(&c, why, sizeof why);
        int again = !file_id[0] && transient(c.status) && attempt < AH_NATIVE_TRIES;
        call_free(&c);
        if (file_id[0])
            break;
        if (!again) {
            char m[NATIVE_MSG_MAX + 64];
            snprintf(m, sizeof m, "The provider refused the upload: %s", why);
            fail_with(res, "provider_upload_failed", m);
            goto out;
        }
        ah_warn("batch %s: upload to the provider failed (%s); trying again", o->batch_id, why);
        nap(o, 1000L << attempt, 0, bad, 1);
    }
    /* create */
    json_t *req = json_pack("{s:s,s:s,s:s,s:{s:s}}", "input_file_id", file_id, "endpoint",
                            provider_endpoint(o->dep, o->endpoint), "completion_window", "24h",
                            "metadata", "ahorro_batch_id", o->batch_id);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    for (int attempt = 1;; attempt++) {
        call_t c;
        http(o->dep, "POST", "/batches", body, NULL, NULL, NULL, AH_NATIVE_CALL_TIMEOUT_S, &c);
        int got = creation_reply(&c, attempt, res, why, sizeof why);
        if (got > 0)
            break;
        if (got < 0) {
            free(body);
            goto out;
        }
        nap(o, 1000L << attempt, 0, bad, 1);
    }
    free(body);
    if (ah_batches_set_provider_id(o->db, o->batch_id, res->provider_batch_id)) {
        fail_with(res, "batch_failed", "cannot record the provider's batch id");
        goto out;
    }
    ah_info("batch %s: forwarded to %s as %s (%zu lines)", o->batch_id, o->dep->alias,
            res->provider_batch_id, ix.n);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    unlink(up_path);
    ah_free(ix.v);
    return rc;
}

/* Anthropic's Message Batches API: one create call carries every request
 * (POST /v1/messages/batches {requests: [{custom_id, params}...]}), its body
 * written to disk first and sent from there. 0 when the batch was created
 * (its id in res), 1 when no line could go (every one malformed or refused
 * by the translation: only our error file), -1 with res set as submit. */
static int submit_anthropic(const ah_native_opts_t *o, ah_native_result_t *res, long bad)
{
    char up_path[4200], why[NATIVE_MSG_MAX] = "";
    snprintf(up_path, sizeof up_path, "%s/%s-native-input.json", o->work_dir, o->batch_id);
    int fd = open(up_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    index_t ix = {0};
    long bad2 = 0;
    int rc = -1;
    static const char head[] = "{\"requests\":[\n", tail[] = "]}\n";
    if (fd < 0 || write_raw(fd, head, sizeof head - 1) || read_input(o, &ix, fd, -1, &bad2) ||
        write_raw(fd, tail, sizeof tail - 1)) {
        snprintf(why, sizeof why, "cannot write the provider's input file: %s", strerror(errno));
        fail_with(res, "batch_failed", why);
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        fail_with(res, "batch_failed", "cannot read the provider's input file");
        goto out;
    }
    close(fd);
    fd = -1;
    if (ix.n == 0) {
        rc = 1;
        goto out;
    }
    if (ix.n > AH_NATIVE_ANTHROPIC_MAX_REQUESTS ||
        (unsigned long long)st.st_size > AH_NATIVE_ANTHROPIC_MAX_BYTES) {
        char m[NATIVE_MSG_MAX];
        snprintf(m, sizeof m,
                 "The batch is too large for Anthropic's Message Batches API: %zu requests, "
                 "%lld bytes (at most %d requests and %llu bytes)",
                 ix.n, (long long)st.st_size, AH_NATIVE_ANTHROPIC_MAX_REQUESTS,
                 AH_NATIVE_ANTHROPIC_MAX_BYTES);
        fail_with(res, "batch_too_large", m);
        goto out;
    }
    for (int attempt = 1;; attempt++) {
        int a = o->poll ? o->poll(o->poll_ctx, 0, bad, 0) : AH_NATIVE_GO;
        if (a != AH_NATIVE_GO) {
            res->end = a == AH_NATIVE_STOP     ? AH_NATIVE_STOPPED
                       : a == AH_NATIVE_CANCEL ? AH_NATIVE_CANCELLED
                                               : AH_NATIVE_EXPIRED;
            goto out;
        }
        FILE *in = fopen(up_path, "rb");
        call_t c;
        if (in) {
            http(o->dep, "POST", AH_NATIVE_ANTHROPIC_PATH, NULL, NULL, in, NULL,
                 AH_NATIVE_TRANSFER_TIMEOUT_S, &c);
            fclose(in);
        } else {
            memset(&c, 0, sizeof c);
            snprintf(c.err, sizeof c.err, "cannot read the provider's input file: %s",
                     strerror(errno));
        }
        int got = creation_reply(&c, attempt, res, why, sizeof why);
        if (got > 0)
            break;
        if (got < 0)
            goto out;
        ah_warn("batch %s: creating the provider's batch failed (%s); trying again", o->batch_id,
                why);
        nap(o, 1000L << attempt, 0, bad, 1);
    }
    if (ah_batches_set_provider_id(o->db, o->batch_id, res->provider_batch_id)) {
        fail_with(res, "batch_failed", "cannot record the provider's batch id");
        goto out;
    }
    ah_info("batch %s: forwarded to %s as %s (%zu lines)", o->batch_id, o->dep->alias,
            res->provider_batch_id, ix.n);
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    unlink(up_path);
    ah_free(ix.v);
    return rc;
}

/* ---- results ---------------------------------------------------------------------------- */

/* Download the provider's src (a path, or an absolute URL) into path. 0, or
 * -1 with why. */
static int download(const ah_native_opts_t *o, const char *src, const char *path, char *why,
                    size_t n)
{
    for (int attempt = 1;; attempt++) {
        FILE *f = fopen(path, "wb");
        if (!f) {
            snprintf(why, n, "cannot write %s: %s", path, strerror(errno));
            return -1;
        }
        call_t c;
        http(o->dep, "GET", src, NULL, NULL, NULL, f, AH_NATIVE_TRANSFER_TIMEOUT_S, &c);
        int ok = fclose(f) == 0 && c.status >= 200 && c.status < 300;
        if (!ok)
            call_why(&c, why, n);
        int again = !ok && transient(c.status) && attempt < AH_NATIVE_TRIES;
        call_free(&c);
        if (ok)
            return 0;
        if (!again)
            return -1;
        usleep((useconds_t)(500000L << attempt));
    }
}

/* One ledger row for an answered line: usage u (ah_usage_t's convention),
 * or NULL when the answer had none. */
static double ledger_row(const ah_native_opts_t *o, const char *result, long status,
                         const json_t *body, const ah_usage_t *u)
{
    ah_ledger_row_t *row = ah_calloc(1, sizeof *row);
    size_t n = strlen(result) + 1;
    row->request_id = ah_malloc(n);
    memcpy(row->request_id, result, n);
    row->ts_ms = ah_wall_ms();
    row->key_id = o->key_id ? ah_strdup(o->key_id) : NULL;
    row->owner = o->owner ? ah_strdup(o->owner) : NULL;
    row->tags = o->tags_json ? ah_strdup(o->tags_json) : NULL;
    row->api = "openai";
    row->endpoint = strcmp(o->endpoint, "/v1/embeddings") == 0 ? "embeddings" : "chat";
    row->requested_model = ah_strdup(o->dep->alias);
    const char *served = json_string_value(json_object_get(body, "model"));
    row->served_model = ah_strdup(served ? served : o->dep->model);
    row->provider = ah_strdup(o->dep->provider_name);
    row->deployment = ah_strdup(o->dep->alias);
    row->route_reason = ah_strdup(AH_NATIVE_ROUTE_REASON);
    row->usage_source = "none";
    row->cost_usd = -1;
    if (u) {
        row->usage_source = "provider";
        row->prompt_tokens = u->input_tokens;
        row->completion_tokens = u->output_tokens;
        row->cached_tokens = u->cache_read_tokens;
        row->cache_write_tokens = u->cache_write_tokens;
        row->reasoning_tokens = u->reasoning_tokens;
        if (o->price)
            row->cost_usd = ah_price_cost(o->price, u) * o->dep->batch_discount;
    }
    row->baseline_usd = -1;
    row->ttft_ms = -1;
    row->attempts = 1;
    row->status = (int)status;
    if (status < 200 || status > 299) {
        const char *m =
            json_string_value(json_object_get(json_object_get(body, "error"), "message"));
        row->error = ah_strdup(m ? m : "the provider's batch answered this line with an error");
    }
    double cost = row->cost_usd > 0 ? row->cost_usd : 0;
    if (o->ledger)
        ah_ledger_append(o->ledger, row);
    else
        ah_ledger_row_free(row);
    return cost;
}

/* The slot of our line that a provider result line answers (custom_id
 * cid), marked answered, and its result id into id; NULL (logged) when the
 * line is none of ours or was answered already. */
static slot_t *claim(const ah_native_opts_t *o, index_t *ix, const char *cid, long lineno, char *id,
                     size_t idn)
{
    slot_t *s = cid ? index_find(ix, cid) : NULL;
    if (!s || s->answered) {
        ah_warn("batch %s: the provider's result line %ld is for no line of ours (or a second "
                "time); left out",
                o->batch_id, lineno);
        return NULL;
    }
    s->answered = 1;
    result_id(o->batch_id, cid, s->lineno, id, idn);
    return s;
}

/* Our result lines from one provider file (output or errors). */
static int convert(const ah_native_opts_t *o, index_t *ix, const char *path, int out_fd, int err_fd,
                   ah_native_result_t *res)
{
    lines_t r;
    if (lines_open(&r, path))
        return -1;
    int got, rc = 0;
    while (rc == 0 && (got = lines_next(&r)) == 1) {
        json_t *j = r.toolong ? NULL : json_loadb(r.line.data, r.line.len, 0, NULL);
        const char *cid = json_string_value(json_object_get(j, "custom_id"));
        char id[64];
        slot_t *s = claim(o, ix, cid, r.lineno, id, sizeof id);
        if (!s) {
            json_decref(j);
            continue;
        }
        json_t *resp = json_object_get(j, "response");
        json_t *ours;
        int to_out = 0;
        if (json_is_object(resp)) {
            long status = (long)json_integer_value(json_object_get(resp, "status_code"));
            json_t *body = json_object_get(resp, "body");
            const char *rid = json_string_value(json_object_get(resp, "request_id"));
            ours = json_pack("{s:s,s:s,s:{s:I,s:s,s:O},s:n}", "id", id, "custom_id", cid,
                             "response", "status_code", (json_int_t)status, "request_id",
                             rid ? rid : "", "body", body ? body : json_null(), "error");
            to_out = status >= 200 && status <= 299;
            ah_usage_t u;
            int has_usage = ah_batch_native_usage(body, &u);
            res->cost_usd += ledger_row(o, id, status, body, has_usage ? &u : NULL);
        } else {
            json_t *e = json_object_get(j, "error");
            const char *code = json_string_value(json_object_get(e, "code"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            ours = json_pack("{s:s,s:s,s:n,s:{s:s,s:s,s:I}}", "id", id, "custom_id", cid,
                             "response", "error", "code", code ? code : "provider_error", "message",
                             msg ? msg : "the provider gave no answer for this line", "line",
                             (json_int_t)s->lineno);
        }
        if (to_out)
            res->completed++;
        else
            res->failed++;
        if (write_line(to_out ? out_fd : err_fd, ours))
            rc = -1;
        json_decref(ours);
        json_decref(j);
    }
    if (got < 0)
        rc = -1;
    lines_close(&r);
    return rc;
}

/* The HTTP status Anthropic answers an error type with. */
static long anthropic_status(const char *type)
{
    static const struct {
        const char *type;
        long status;
    } map[] = {
        {"invalid_request_error", 400}, {"authentication_error", 401},
        {"billing_error", 402},         {"permission_error", 403},
        {"not_found_error", 404},       {"request_too_large", 413},
        {"rate_limit_error", 429},      {"api_error", 500},
        {"overloaded_error", 529},
    };
    for (size_t i = 0; type && i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].type, type) == 0)
            return map[i].status;
    return 500;
}

/* One Anthropic result ({custom_id, result}) as our result line (new
 * reference): succeeded -> a 200 response whose body is the message as an
 * OpenAI chat.completion; errored -> the error's status and an OpenAI error
 * body; canceled and expired -> an error line, no response. *to_out when it
 * goes to the output file; the ledger row of an answered line is written. */
static json_t *anthropic_result(const ah_native_opts_t *o, const json_t *j, const char *id,
                                const char *cid, long lineno, int *to_out, double *cost)
{
    const json_t *result = json_object_get(j, "result");
    const char *type = json_string_value(json_object_get(result, "type"));
    *to_out = 0;
    if (type && strcmp(type, "succeeded") == 0) {
        const json_t *message = json_object_get(result, "message");
        ah_usage_t u;
        json_t *body = ah_batch_native_from_anthropic(o->dep, message, &u);
        if (body) {
            const char *rid = json_string_value(json_object_get(message, "id"));
            int has_usage = json_is_object(json_object_get(message, "usage"));
            *cost += ledger_row(o, id, 200, body, has_usage ? &u : NULL);
            *to_out = 1;
            return json_pack("{s:s,s:s,s:{s:i,s:s,s:o},s:n}", "id", id, "custom_id", cid,
                             "response", "status_code", 200, "request_id", rid ? rid : "", "body",
                             body, "error");
        }
        type = "errored"; /* a message we cannot read */
    }
    if (type && strcmp(type, "errored") == 0) {
        const json_t *e = json_object_get(result, "error");
        if (json_is_object(json_object_get(e, "error")))
            e = json_object_get(e, "error"); /* {type: "error", error: {type, message}} */
        const char *et = json_string_value(json_object_get(e, "type"));
        const char *em = json_string_value(json_object_get(e, "message"));
        long status = anthropic_status(et);
        json_t *body = json_pack("{s:{s:s,s:s,s:n,s:n}}", "error", "message",
                                 em ? em : "the provider's batch answered this line with an error",
                                 "type", et ? et : "api_error", "param", "code");
        *cost += ledger_row(o, id, status, body, NULL);
        return json_pack("{s:s,s:s,s:{s:I,s:s,s:o},s:n}", "id", id, "custom_id", cid, "response",
                         "status_code", (json_int_t)status, "request_id", "", "body", body,
                         "error");
    }
    const char *code = type && strcmp(type, "canceled") == 0  ? "batch_cancelled"
                       : type && strcmp(type, "expired") == 0 ? "batch_expired"
                                                              : "provider_error";
    const char *msg =
        strcmp(code, "batch_cancelled") == 0 ? "This line was not answered: the batch was cancelled"
        : strcmp(code, "batch_expired") == 0 ? "This line was not answered before the batch expired"
                                             : "the provider gave no answer for this line";
    return json_pack("{s:s,s:s,s:n,s:{s:s,s:s,s:I}}", "id", id, "custom_id", cid, "response",
                     "error", "code", code, "message", msg, "line", (json_int_t)lineno);
}

/* Our result lines from Anthropic's results file. */
static int convert_anthropic(const ah_native_opts_t *o, index_t *ix, const char *path, int out_fd,
                             int err_fd, ah_native_result_t *res)
{
    lines_t r;
    if (lines_open(&r, path))
        return -1;
    int got, rc = 0;
    while (rc == 0 && (got = lines_next(&r)) == 1) {
        json_t *j = r.toolong ? NULL : json_loadb(r.line.data, r.line.len, 0, NULL);
        const char *cid = json_string_value(json_object_get(j, "custom_id"));
        char id[64];
        slot_t *s = claim(o, ix, cid, r.lineno, id, sizeof id);
        if (!s) {
            json_decref(j);
            continue;
        }
        int to_out;
        json_t *ours = anthropic_result(o, j, id, cid, s->lineno, &to_out, &res->cost_usd);
        if (to_out)
            res->completed++;
        else
            res->failed++;
        if (!ours || write_line(to_out ? out_fd : err_fd, ours))
            rc = -1;
        json_decref(ours);
        json_decref(j);
    }
    if (got < 0)
        rc = -1;
    lines_close(&r);
    return rc;
}

/* Our result files, rewritten whole from our input (malformed lines) and
 * the provider's files: OpenAI's output and error files (paths at the
 * provider, either may be NULL), or Anthropic's results (out_src; err_src
 * NULL). -1 with why on an error. */
static int finish(const ah_native_opts_t *o, const char *out_src, const char *err_src,
                  ah_native_result_t *res, char *why, size_t n)
{
    char pout[4200], perr[4200];
    snprintf(pout, sizeof pout, "%s/%s-native-output.jsonl", o->work_dir, o->batch_id);
    snprintf(perr, sizeof perr, "%s/%s-native-errors.jsonl", o->work_dir, o->batch_id);
    index_t ix = {0};
    int rc = -1, out_fd = -1, err_fd = -1;
    long bad = 0;
    if ((out_src && download(o, out_src, pout, why, n)) ||
        (err_src && download(o, err_src, perr, why, n)))
        goto out;
    out_fd = open(o->output_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    err_fd = open(o->error_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out_fd < 0 || err_fd < 0 || read_input(o, &ix, -1, err_fd, &bad)) {
        snprintf(why, n, "cannot write the results: %s", strerror(errno));
        goto out;
    }
    res->completed = 0;
    res->failed = bad;
    res->cost_usd = 0;
    int failed = is_anthropic(o->dep)
                     ? out_src && convert_anthropic(o, &ix, pout, out_fd, err_fd, res)
                     : (out_src && convert(o, &ix, pout, out_fd, err_fd, res)) ||
                           (err_src && convert(o, &ix, perr, out_fd, err_fd, res));
    if (failed) {
        snprintf(why, n, "cannot write the results (%s, %s)", o->output_path, o->error_path);
        goto out;
    }
    if (fdatasync(out_fd) || fdatasync(err_fd)) {
        snprintf(why, n, "cannot sync the results: %s", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    unlink(pout);
    unlink(perr);
    ah_free(ix.v);
    return rc;
}

/* ---- the run ---------------------------------------------------------------------------- */

static int terminal(const char *s)
{
    return strcmp(s, "completed") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "expired") == 0 ||
           strcmp(s, "cancelled") == 0;
}

/* The path of the provider's file named by b's key, into p; NULL when none. */
static const char *file_of(const json_t *b, const char *key, char *p, size_t n)
{
    const char *id = json_string_value(json_object_get(b, key));
    if (!id || !ah_batch_native_id_ok(id))
        return NULL;
    snprintf(p, n, "/files/%s/content", id);
    return p;
}

/* Where Anthropic's results are fetched: the batch's results_url when it is
 * on the deployment's own host (the api key goes along: never to another
 * host), else the documented path under api_base. */
static void results_src(const ah_native_opts_t *o, const char *id, const json_t *b, char *out,
                        size_t n)
{
    char root[NATIVE_URL_MAX];
    ah_batch_native_url(o->dep, "/", root, sizeof root);
    const char *u = json_string_value(json_object_get(b, "results_url"));
    if (u && strncmp(u, root, strlen(root)) == 0 && strlen(u) < n && !strchr(u, ' ')) {
        snprintf(out, n, "%s", u);
        return;
    }
    snprintf(out, n, "%s/%s/results", AH_NATIVE_ANTHROPIC_PATH, id);
}

/* Poll an Anthropic message batch until it ends (processing_status
 * "ended"), cancelling it when ours is; then collect its results. */
static ah_err_t wait_anthropic(const ah_native_opts_t *o, ah_native_result_t *res, long bad)
{
    char why[NATIVE_MSG_MAX] = "", path[AH_NATIVE_ID_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", AH_NATIVE_ANTHROPIC_PATH, res->provider_batch_id);
    long completed = 0, failed = bad;
    int cancel_sent = 0, wanted = AH_NATIVE_GO, warned = 0;
    long poll_ms = (long)(o->poll_s * 1000);
    if (poll_ms < 10)
        poll_ms = 10;
    for (;;) {
        call_t c;
        http(o->dep, "GET", path, NULL, NULL, NULL, NULL, AH_NATIVE_CALL_TIMEOUT_S, &c);
        json_t *b = c.status == 200 ? call_json(&c) : NULL;
        const char *status = json_string_value(json_object_get(b, "processing_status"));
        if (!status && (c.status == 404 || (c.status >= 400 && c.status < 500 && c.status != 429 &&
                                            c.status != 408 && c.status != 409))) {
            call_why(&c, why, sizeof why);
            call_free(&c);
            json_decref(b);
            char m[NATIVE_MSG_MAX + 80];
            snprintf(m, sizeof m, "The provider's batch %s cannot be read: %s",
                     res->provider_batch_id, why);
            fail_with(res, "provider_batch_failed", m);
            return AH_E_OK;
        }
        if (!status && !warned) {
            call_why(&c, why, sizeof why);
            ah_warn("batch %s: polling the provider failed (%s); trying again", o->batch_id, why);
            warned = 1;
        }
        call_free(&c);
        long expired = 0;
        if (status) {
            json_t *rc = json_object_get(b, "request_counts");
            completed = (long)json_integer_value(json_object_get(rc, "succeeded"));
            expired = (long)json_integer_value(json_object_get(rc, "expired"));
            failed = bad + (long)json_integer_value(json_object_get(rc, "errored")) +
                     (long)json_integer_value(json_object_get(rc, "canceled")) + expired;
        }
        if (status && strcmp(status, "ended") == 0) {
            char src[NATIVE_URL_MAX];
            results_src(o, res->provider_batch_id, b, src, sizeof src);
            json_decref(b);
            if (finish(o, src, NULL, res, why, sizeof why)) {
                char m[NATIVE_MSG_MAX + 64];
                snprintf(m, sizeof m, "The provider's results cannot be collected: %s", why);
                fail_with(res, "batch_failed", m);
                return AH_E_OK;
            }
            res->end = cancel_sent
                           ? (wanted == AH_NATIVE_EXPIRE ? AH_NATIVE_EXPIRED : AH_NATIVE_CANCELLED)
                       : expired ? AH_NATIVE_EXPIRED
                                 : AH_NATIVE_COMPLETED;
            return AH_E_OK;
        }
        json_decref(b);
        int a = nap(o, poll_ms, completed, failed, cancel_sent);
        if (a == AH_NATIVE_STOP) {
            res->end = AH_NATIVE_STOPPED;
            return AH_E_OK;
        }
        if ((a == AH_NATIVE_CANCEL || a == AH_NATIVE_EXPIRE) && !cancel_sent) {
            char cp[sizeof path + 16];
            snprintf(cp, sizeof cp, "%s/cancel", path);
            http(o->dep, "POST", cp, NULL, NULL, NULL, NULL, AH_NATIVE_CALL_TIMEOUT_S, &c);
            if (c.status < 200 || c.status > 299) {
                call_why(&c, why, sizeof why);
                ah_warn("batch %s: cancelling the provider's batch: %s", o->batch_id, why);
            }
            call_free(&c);
            cancel_sent = 1;
            wanted = a;
        }
    }
}

ah_err_t ah_batch_native_run(const ah_native_opts_t *o, ah_native_result_t *res)
{
    memset(res, 0, sizeof *res);
    char why[NATIVE_MSG_MAX] = "";
    long bad = 0;
    {
        index_t ix = {0};
        if (read_input(o, &ix, -1, -1, &bad)) {
            ah_free(ix.v);
            fail_with(res, "input_file_missing", "The batch's input file cannot be read");
            return AH_E_OK;
        }
        ah_free(ix.v);
    }
    if (ah_batches_provider_id(o->db, o->batch_id, res->provider_batch_id,
                               sizeof res->provider_batch_id)) {
        fail_with(res, "batch_failed", "cannot read the batch's row");
        return AH_E_OK;
    }
    int sent = 0;
    if (res->provider_batch_id[0]) {
        ah_info("batch %s: resuming the provider's batch %s", o->batch_id, res->provider_batch_id);
    } else if (is_anthropic(o->dep) && (sent = submit_anthropic(o, res, bad)) == 1) {
        /* nothing could go: every line is in our error file */
        if (finish(o, NULL, NULL, res, why, sizeof why))
            return AH_E_IO;
        res->end = AH_NATIVE_COMPLETED;
        return AH_E_OK;
    } else if (is_anthropic(o->dep) ? sent != 0 : submit(o, res, bad) != 0) {
        if (res->end == AH_NATIVE_CANCELLED || res->end == AH_NATIVE_EXPIRED) {
            /* nothing reached the provider: only the malformed lines are results */
            if (finish(o, NULL, NULL, res, why, sizeof why))
                return AH_E_IO;
        }
        return AH_E_OK;
    }
    if (is_anthropic(o->dep))
        return wait_anthropic(o, res, bad);
    char path[AH_NATIVE_ID_MAX + 16];
    snprintf(path, sizeof path, "/batches/%s", res->provider_batch_id);
    long completed = 0, failed = bad;
    int cancel_sent = 0, wanted = AH_NATIVE_GO, warned = 0;
    long poll_ms = (long)(o->poll_s * 1000);
    if (poll_ms < 10)
        poll_ms = 10;
    for (;;) {
        call_t c;
        http(o->dep, "GET", path, NULL, NULL, NULL, NULL, AH_NATIVE_CALL_TIMEOUT_S, &c);
        json_t *b = c.status == 200 ? call_json(&c) : NULL;
        const char *status = json_string_value(json_object_get(b, "status"));
        if (!status && (c.status == 404 || (c.status >= 400 && c.status < 500 && c.status != 429 &&
                                            c.status != 408 && c.status != 409))) {
            call_why(&c, why, sizeof why);
            call_free(&c);
            char m[NATIVE_MSG_MAX + 80];
            snprintf(m, sizeof m, "The provider's batch %s cannot be read: %s",
                     res->provider_batch_id, why);
            fail_with(res, "provider_batch_failed", m);
            return AH_E_OK;
        }
        if (!status && !warned) {
            call_why(&c, why, sizeof why);
            ah_warn("batch %s: polling the provider failed (%s); trying again", o->batch_id, why);
            warned = 1;
        }
        call_free(&c);
        if (status) {
            json_t *rc = json_object_get(b, "request_counts");
            completed = (long)json_integer_value(json_object_get(rc, "completed"));
            failed = bad + (long)json_integer_value(json_object_get(rc, "failed"));
        }
        if (status && terminal(status)) {
            if (strcmp(status, "failed") == 0) {
                json_t *errs = json_object_get(b, "errors");
                res->end = AH_NATIVE_FAILED;
                res->errors = json_is_object(errs) ? json_incref(errs) : NULL;
                if (!res->errors)
                    fail_with(res, "provider_batch_failed", "The provider's batch failed");
                json_decref(b);
                return AH_E_OK;
            }
            char po[AH_NATIVE_ID_MAX + 32], pe[AH_NATIVE_ID_MAX + 32];
            if (finish(o, file_of(b, "output_file_id", po, sizeof po),
                       file_of(b, "error_file_id", pe, sizeof pe), res, why, sizeof why)) {
                json_decref(b);
                char m[NATIVE_MSG_MAX + 64];
                snprintf(m, sizeof m, "The provider's results cannot be collected: %s", why);
                fail_with(res, "batch_failed", m);
                return AH_E_OK;
            }
            res->end = strcmp(status, "completed") == 0 ? AH_NATIVE_COMPLETED
                       : strcmp(status, "expired") == 0 ? AH_NATIVE_EXPIRED
                       : wanted == AH_NATIVE_EXPIRE     ? AH_NATIVE_EXPIRED
                                                        : AH_NATIVE_CANCELLED;
            json_decref(b);
            return AH_E_OK;
        }
        json_decref(b);
        int a = nap(o, poll_ms, completed, failed, cancel_sent);
        if (a == AH_NATIVE_STOP) {
            res->end = AH_NATIVE_STOPPED;
            return AH_E_OK;
        }
        if ((a == AH_NATIVE_CANCEL || a == AH_NATIVE_EXPIRE) && !cancel_sent) {
            char cp[AH_NATIVE_ID_MAX + 32];
            snprintf(cp, sizeof cp, "/batches/%s/cancel", res->provider_batch_id);
            http(o->dep, "POST", cp, NULL, NULL, NULL, NULL, AH_NATIVE_CALL_TIMEOUT_S, &c);
            if (c.status < 200 || c.status > 299) {
                call_why(&c, why, sizeof why);
                ah_warn("batch %s: cancelling the provider's batch: %s", o->batch_id, why);
            }
            call_free(&c);
            cancel_sent = 1;
            wanted = a;
        }
    }
}
