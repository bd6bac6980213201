/* engine.c - the batch engine (engine.h, docs/batch.md "Engine").
 *
 * One thread, one curl multi handle. The loop: take a line (a retry that is
 * due, else the next input line not done yet), wait until its model's pacing
 * allows it, send it; collect answers; write each result line at once. The
 * input is read lazily, so at most `concurrency` lines (plus their retries)
 * are in memory. */
#include "batch/engine.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/log.h"
#include "upstream/curl_util.h"

#define MAX_RESPONSE (16u * 1024 * 1024)
#define MAX_MODELS 64
#define DEFAULT_OUT_TOKENS 256

/* ---- reading lines ---------------------------------------------------------------------- */

typedef struct reader {
    FILE *f;
    ah_buf_t line;
    long lineno; /* of the line in `line` (1-based, counting empty lines) */
} reader_t;

static ah_err_t reader_open(reader_t *r, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = fopen(path, "rb");
    if (!r->f)
        return AH_E_IO;
    ah_buf_init(&r->line, AH_BATCH_MAX_LINE);
    return AH_E_OK;
}

static void reader_close(reader_t *r)
{
    if (r->f)
        fclose(r->f);
    ah_buf_free(&r->line);
    r->f = NULL;
}

/* The next non-empty line into r->line: 1, 0 at the end, -1 when a line is
 * too long (AH_E_TOOBIG in *rc) or reading fails. */
static int reader_next(reader_t *r, ah_err_t *rc)
{
    for (;;) {
        ah_buf_reset(&r->line);
        int c;
        while ((c = getc_unlocked(r->f)) != EOF && c != '\n') {
            char ch = (char)c;
            if (ah_buf_append(&r->line, &ch, 1) != AH_E_OK) {
                *rc = AH_E_TOOBIG;
                r->lineno++;
                return -1;
            }
        }
        if (c == EOF && ferror(r->f)) {
            *rc = AH_E_IO;
            return -1;
        }
        if (c == EOF && r->line.len == 0)
            return 0;
        r->lineno++;
        size_t k = 0;
        while (k < r->line.len &&
               (r->line.data[k] == ' ' || r->line.data[k] == '\t' || r->line.data[k] == '\r'))
            k++;
        if (k < r->line.len)
            return 1;
    }
}

/* After reader_next refused a line as too long: skip the rest of it. */
static void reader_skip_line(reader_t *r)
{
    int c;
    while ((c = getc_unlocked(r->f)) != EOF && c != '\n')
        ;
}

/* ---- one input line --------------------------------------------------------------------- */

typedef struct item {
    long lineno;
    char *custom_id; /* NULL for a malformed line without one */
    char *url;       /* "/v1/chat/completions" */
    char *body;      /* JSON text to send */
    char *model;
    long est_tokens;
    int attempts;
    int64_t not_before_us;
    const char *bad_code; /* malformed: the error code, with bad_msg */
    char bad_msg[256];
} item_t;

static void item_free(item_t *it)
{
    if (!it)
        return;
    ah_free(it->custom_id);
    ah_free(it->url);
    ah_free(it->body);
    ah_free(it->model);
    ah_free(it);
}

static int url_ok(const char *u)
{
    return strcmp(u, "/v1/chat/completions") == 0 || strcmp(u, "/v1/embeddings") == 0;
}

/* Parse a line; malformed lines come back with bad_code set. */
static item_t *item_parse(const char *text, size_t len, long lineno, const char *model_override)
{
    item_t *it = ah_calloc(1, sizeof *it);
    it->lineno = lineno;
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    const char *why = NULL, *code = "invalid_request";
    if (!json_is_object(j)) {
        why = j ? "the line is not a JSON object" : "the line is not valid JSON";
        code = "invalid_json_line";
        goto bad;
    }
    json_t *cid = json_object_get(j, "custom_id");
    if (json_is_string(cid) && json_string_length(cid) > 0 &&
        json_string_length(cid) <= AH_BATCH_MAX_CUSTOM_ID)
        it->custom_id = ah_strdup(json_string_value(cid));
    if (!it->custom_id) {
        why = "missing custom_id (a non-empty string of at most 512 bytes)";
        code = "missing_custom_id";
        goto bad;
    }
    json_t *m = json_object_get(j, "method");
    if (m && (!json_is_string(m) || strcmp(json_string_value(m), "POST") != 0)) {
        why = "method must be POST";
        code = "invalid_method";
        goto bad;
    }
    json_t *u = json_object_get(j, "url");
    if (!json_is_string(u) || !url_ok(json_string_value(u))) {
        why = "url must be /v1/chat/completions or /v1/embeddings";
        code = "invalid_url";
        goto bad;
    }
    json_t *body = json_object_get(j, "body");
    if (!json_is_object(body)) {
        why = "body must be a JSON object (the request)";
        code = "invalid_body";
        goto bad;
    }
    if (model_override)
        json_object_set_new(body, "model", json_string(model_override));
    json_t *model = json_object_get(body, "model");
    if (!json_is_string(model)) {
        why = "body.model must be a string";
        code = "missing_model";
        goto bad;
    }
    if (json_is_true(json_object_get(body, "stream"))) {
        why = "streaming is not supported in a batch";
        code = "invalid_body";
        goto bad;
    }
    it->url = ah_strdup(json_string_value(u));
    it->model = ah_strdup(json_string_value(model));
    char *bt = json_dumps(body, JSON_COMPACT);
    it->body = ah_strdup(bt);
    /* tokens for pacing: prompt bytes / 4, plus the answer's cap */
    json_t *mt = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(body, "max_tokens");
    long out = json_is_integer(mt) && json_integer_value(mt) > 0 ? (long)json_integer_value(mt)
               : strcmp(it->url, "/v1/embeddings") == 0          ? 0
                                                                 : DEFAULT_OUT_TOKENS;
    it->est_tokens = (long)(strlen(bt) / 4) + out;
    free(bt);
    json_decref(j);
    return it;
bad:
    it->bad_code = code;
    snprintf(it->bad_msg, sizeof it->bad_msg, "line %ld: %s", lineno, why);
    json_decref(j);
    return it;
}

ah_err_t ah_batch_check_line(const char *text, size_t len, long lineno, json_t **line,
                             const char **code, char *msg, size_t msglen)
{
    *line = NULL;
    item_t *it = item_parse(text, len, lineno, NULL);
    ah_err_t rc = AH_E_OK;
    if (it->bad_code) {
        *code = it->bad_code;
        snprintf(msg, msglen, "%s", it->bad_msg);
        rc = AH_E_PARSE;
    } else {
        *line = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    }
    item_free(it);
    return rc;
}

/* ---- the set of done lines: 64-bit hashes, open addressing ------------------------------ */

typedef struct doneset {
    uint64_t *slot; /* 0 = empty */
    size_t cap, n;
} doneset_t;

/* 64 bits of SHA-256: custom_ids are the caller's, so a hash they could
 * aim collisions at (FNV) would let one line pass for another. */
static uint64_t h64(const char *s, size_t n)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(s, n, md, &len, EVP_sha256(), NULL);
    uint64_t h = 0;
    for (int i = 0; i < 8; i++)
        h = h << 8 | md[i];
    return h ? h : 1;
}

static uint64_t key_of(const char *custom_id, long lineno)
{
    if (custom_id)
        return h64(custom_id, strlen(custom_id));
    char tmp[40];
    snprintf(tmp, sizeof tmp, "\x01line:%ld", lineno); /* no custom_id starts with \x01 here */
    return h64(tmp, strlen(tmp));
}

static int done_has(const doneset_t *d, uint64_t k)
{
    if (!d->cap)
        return 0;
    for (size_t i = k & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
        if (d->slot[i] == k)
            return 1;
        if (!d->slot[i])
            return 0;
    }
}

static void done_add(doneset_t *d, uint64_t k)
{
    if ((d->n + 1) * 2 > d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 1024;
        uint64_t *ns = ah_calloc(ncap, sizeof *ns);
        for (size_t i = 0; i < d->cap; i++) {
            if (!d->slot[i])
                continue;
            size_t j = d->slot[i] & (ncap - 1);
            while (ns[j])
                j = (j + 1) & (ncap - 1);
            ns[j] = d->slot[i];
        }
        ah_free(d->slot);
        d->slot = ns;
        d->cap = ncap;
    }
    size_t i = k & (d->cap - 1);
    while (d->slot[i] && d->slot[i] != k)
        i = (i + 1) & (d->cap - 1);
    if (!d->slot[i]) {
        d->slot[i] = k;
        d->n++;
    }
}

/* ---- scan ------------------------------------------------------------------------------- */

ah_err_t ah_batch_scan(const char *input_path, ah_batch_scan_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    reader_t r;
    if (reader_open(&r, input_path) != AH_E_OK) {
        snprintf(err, errlen, "%s: %s", input_path, strerror(errno));
        return AH_E_IO;
    }
    doneset_t seen = {0};
    ah_err_t rc = AH_E_OK;
    int got;
    for (;;) {
        got = reader_next(&r, &rc);
        if (got < 0 && rc == AH_E_TOOBIG) {
            /* reported in the error file by the run, like any malformed line */
            reader_skip_line(&r);
            rc = AH_E_OK;
            out->lines++;
            out->malformed++;
            continue;
        }
        if (got != 1)
            break;
        if (++out->lines > AH_BATCH_MAX_LINES) {
            snprintf(err, errlen, "%s: more than %d lines", input_path, AH_BATCH_MAX_LINES);
            rc = AH_E_TOOBIG;
            break;
        }
        item_t *it = item_parse(r.line.data, r.line.len, r.lineno, NULL);
        if (it->custom_id) {
            /* a custom_id names one line, malformed or not: a repeat would let
             * one line's result pass for the other's */
            uint64_t k = key_of(it->custom_id, 0);
            if (done_has(&seen, k) && !out->first_duplicate_line) {
                out->first_duplicate_line = r.lineno;
                snprintf(out->duplicate_id, sizeof out->duplicate_id, "%s", it->custom_id);
            }
            done_add(&seen, k);
        }
        if (it->bad_code) {
            out->malformed++;
        } else {
            json_t *b = json_loads(it->body, 0, NULL);
            json_t *mt = json_object_get(b, "max_completion_tokens");
            if (!json_is_integer(mt))
                mt = json_object_get(b, "max_tokens");
            long o = json_is_integer(mt) ? (long)json_integer_value(mt) : 0;
            out->tokens_out += o;
            out->tokens_in +=
                it->est_tokens - (o                                        ? o
                                  : strcmp(it->url, "/v1/embeddings") == 0 ? 0
                                                                           : DEFAULT_OUT_TOKENS);
            json_decref(b);
        }
        item_free(it);
    }
    if (got < 0 && rc == AH_E_OK)
        rc = AH_E_IO;
    if (got < 0)
        snprintf(err, errlen, "%s: read error", input_path);
    ah_free(seen.slot);
    reader_close(&r);
    return rc;
}

/* ---- result files ----------------------------------------------------------------------- */

/* Open path for appending, after reading the done set from it and cutting
 * a partial last line (a crash in the middle of a write). -1 on error. */
static int journal_open(const char *path, doneset_t *done, long *lines, long *failed_2xx)
{
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(dup(fd), "rb");
    if (!f) {
        close(fd);
        return -1;
    }
    ah_buf_t b;
    ah_buf_init(&b, MAX_RESPONSE + 65536);
    off_t good = 0, pos = 0;
    int c;
    for (;;) {
        ah_buf_reset(&b);
        int toolong = 0;
        while ((c = getc_unlocked(f)) != EOF && c != '\n') {
            char ch = (char)c;
            if (!toolong && ah_buf_append(&b, &ch, 1) != AH_E_OK)
                toolong = 1;
            pos++;
        }
        if (c == EOF)
            break; /* a last line without its newline is cut below */
        pos++;
        good = pos;
        json_t *j = toolong ? NULL : json_loadb(b.data ? b.data : "", b.len, 0, NULL);
        if (!j)
            continue;
        json_t *cid = json_object_get(j, "custom_id");
        long line = (long)json_integer_value(json_object_get(json_object_get(j, "error"), "line"));
        done_add(done, key_of(json_string_value(cid), line));
        (*lines)++;
        json_t *resp = json_object_get(j, "response");
        long st = (long)json_integer_value(json_object_get(resp, "status_code"));
        if (failed_2xx && (!resp || st < 200 || st > 299))
            (*failed_2xx)++;
        json_decref(j);
    }
    fclose(f);
    ah_buf_free(&b);
    struct stat sb;
    if (fstat(fd, &sb) == 0 && sb.st_size > good && ftruncate(fd, good) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_line(int fd, json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT);
    if (!t)
        return -1;
    size_t n = strlen(t);
    t[n] = '\n'; /* replaces the NUL: write n + 1 bytes in one call */
    ssize_t w = write(fd, t, n + 1);
    free(t);
    return w == (ssize_t)(n + 1) ? 0 : -1;
}

/* ---- pacing ----------------------------------------------------------------------------- */

typedef struct pace {
    char *model;
    double rps, tps; /* configured: requests and tokens per second (0: unpaced) */
    double req, tok; /* tokens in the buckets */
    double factor;   /* AIMD: 1 normally, lowered by 429s */
    int64_t last_us;
    int64_t hold_until_us; /* a Retry-After: nothing for this model before */
} pace_t;

static void pace_limits(const ah_config_t *cfg, const char *model, double *rps, double *tps)
{
    long rpm = 0, tpm = 0;
    int any = 0, unl_r = 0, unl_t = 0;
    for (size_t i = 0; cfg && i < cfg->ndeps; i++) {
        const ah_deployment_t *d = &cfg->deps[i];
        if (strcmp(d->alias, model) != 0)
            continue;
        any = 1;
        if (d->rpm)
            rpm += d->rpm;
        else
            unl_r = 1;
        if (d->tpm)
            tpm += d->tpm;
        else
            unl_t = 1;
    }
    *rps = any && !unl_r ? (double)rpm / 60.0 : 0;
    *tps = any && !unl_t ? (double)tpm / 60.0 : 0;
}

static pace_t *pace_for(pace_t *paces, int *npaces, const ah_config_t *cfg, const char *model)
{
    for (int i = 0; i < *npaces; i++)
        if (strcmp(paces[i].model, model) == 0)
            return &paces[i];
    if (*npaces == MAX_MODELS)
        return NULL; /* more models than that: the rest unpaced */
    pace_t *p = &paces[(*npaces)++];
    memset(p, 0, sizeof *p);
    p->model = ah_strdup(model);
    pace_limits(cfg, model, &p->rps, &p->tps);
    p->factor = 1;
    p->req = p->rps > 0 ? 1 : 0; /* start with one request's worth, not a minute's */
    p->tok = p->tps > 0 ? p->tps : 0;
    p->last_us = ah_now_us();
    return p;
}

static void pace_refill(pace_t *p, int64_t now)
{
    double dt = (double)(now - p->last_us) / 1e6;
    p->last_us = now;
    if (p->rps > 0) {
        double cap = fmax(1, p->rps * p->factor);
        p->req = fmin(cap, p->req + dt * p->rps * p->factor);
    }
    if (p->tps > 0) {
        double cap = p->tps * p->factor;
        p->tok = fmin(cap, p->tok + dt * p->tps * p->factor);
    }
}

/* 0 when it may go now (buckets charged); else the µs to wait. */
static int64_t pace_take(pace_t *p, long tokens, int64_t now)
{
    if (!p)
        return 0;
    if (now < p->hold_until_us)
        return p->hold_until_us - now;
    pace_refill(p, now);
    int64_t wait = 0;
    if (p->rps > 0 && p->req < 1)
        wait = (int64_t)((1 - p->req) / (p->rps * p->factor) * 1e6) + 1;
    /* a request bigger than a second's tokens goes once the bucket is full */
    double need = p->tps > 0 ? fmin((double)tokens, p->tps * p->factor) : 0;
    if (p->tps > 0 && p->tok < need) {
        int64_t w = (int64_t)((need - p->tok) / (p->tps * p->factor) * 1e6) + 1;
        wait = w > wait ? w : wait;
    }
    if (wait)
        return wait;
    if (p->rps > 0)
        p->req -= 1;
    if (p->tps > 0)
        p->tok -= need;
    return 0;
}

/* ---- the run ---------------------------------------------------------------------------- */

typedef struct call {
    CURL *h;
    struct curl_slist *hdrs;
    item_t *it;
    ah_buf_t resp;
    char request_id[64];
    char cost[32];
    char retry_after[32];
} call_t;

typedef struct run {
    const ah_batch_opts_t *o;
    CURLM *m;
    call_t *calls;
    int ncalls;
    reader_t in;
    int in_eof;
    doneset_t done;
    int out_fd, err_fd;
    item_t **retry; /* lines waiting to be sent again */
    int nretry, capretry;
    item_t *held; /* read, waiting for its pacing */
    pace_t paces[MAX_MODELS];
    int npaces;
    ah_batch_progress_t p;
    int64_t t0_us, last_progress_us;
    int io_failed;
    char *tagsh;
    long seq;
} run_t;

static size_t on_header(char *ptr, size_t sz, size_t n, void *ud)
{
    call_t *c = ud;
    size_t len = sz * n;
    ah_curl_header_value(ptr, len, "x-ahorro-request-id", c->request_id, sizeof c->request_id);
    ah_curl_header_value(ptr, len, "x-ahorro-cost", c->cost, sizeof c->cost);
    ah_curl_header_value(ptr, len, "retry-after", c->retry_after, sizeof c->retry_after);
    return len;
}

static void result_id(run_t *R, const item_t *it, char *out, size_t n)
{
    const char *b = R->o->batch_id ? R->o->batch_id : "";
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, b, strlen(b));
    if (it->custom_id)
        h = ah_fnv1a(h, it->custom_id, strlen(it->custom_id));
    snprintf(out, n, "batch_req_%016llx%08lx", (unsigned long long)h, (unsigned long)it->lineno);
}

/* A line that got no HTTP answer: the error file. */
static void record_error(run_t *R, item_t *it, const char *code, const char *msg)
{
    char id[64];
    result_id(R, it, id, sizeof id);
    json_t *j = json_pack("{s:s,s:o,s:n,s:{s:s,s:s,s:I}}", "id", id, "custom_id",
                          it->custom_id ? json_string(it->custom_id) : json_null(), "response",
                          "error", "code", code, "message", msg, "line", (json_int_t)it->lineno);
    if (write_line(R->err_fd, j))
        R->io_failed = 1;
    json_decref(j);
    done_add(&R->done, key_of(it->custom_id, it->lineno));
    R->p.done++;
    R->p.failed++;
}

/* A line with an HTTP answer: 2xx to the output file, the rest to the error file. */
static void record_response(run_t *R, item_t *it, long status, call_t *c)
{
    char id[64];
    result_id(R, it, id, sizeof id);
    json_t *body = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, NULL);
    if (!body)
        body = json_stringn(c->resp.data ? c->resp.data : "", c->resp.len);
    json_t *j = json_pack("{s:s,s:s,s:{s:I,s:s,s:o},s:n}", "id", id, "custom_id", it->custom_id,
                          "response", "status_code", (json_int_t)status, "request_id",
                          c->request_id, "body", body ? body : json_null(), "error");
    int ok = status >= 200 && status <= 299;
    if (write_line(ok ? R->out_fd : R->err_fd, j))
        R->io_failed = 1;
    json_decref(j);
    done_add(&R->done, key_of(it->custom_id, it->lineno));
    R->p.done++;
    if (!ok)
        R->p.failed++;
    char *end;
    double cost = strtod(c->cost, &end);
    if (c->cost[0] && !*end && cost > 0)
        R->p.cost_usd += cost;
}

static void retry_push(run_t *R, item_t *it, int64_t not_before)
{
    it->not_before_us = not_before;
    if (R->nretry == R->capretry) {
        R->capretry = R->capretry ? R->capretry * 2 : 64;
        R->retry = ah_realloc(R->retry, (size_t)R->capretry * sizeof *R->retry);
    }
    R->retry[R->nretry++] = it;
    R->p.retries++;
}

/* The next line to send: a due retry first, else the next undone input
 * line; malformed lines are recorded on the way. NULL when none is ready;
 * *wait_us says when a retry comes due. */
static item_t *next_item(run_t *R, int64_t now, int64_t *wait_us)
{
    int best = -1;
    for (int i = 0; i < R->nretry; i++) {
        if (R->retry[i]->not_before_us <= now &&
            (best < 0 || R->retry[i]->lineno < R->retry[best]->lineno))
            best = i;
        else if (R->retry[i]->not_before_us > now) {
            int64_t w = R->retry[i]->not_before_us - now;
            if (!*wait_us || w < *wait_us)
                *wait_us = w;
        }
    }
    if (best >= 0) {
        item_t *it = R->retry[best];
        R->retry[best] = R->retry[--R->nretry];
        return it;
    }
    while (!R->in_eof && !(R->o->cancel && *R->o->cancel)) {
        ah_err_t rc = AH_E_OK;
        int got = reader_next(&R->in, &rc);
        if (got == 0) {
            R->in_eof = 1;
            break;
        }
        if (got < 0) {
            item_t tmp = {.lineno = R->in.lineno};
            if (rc == AH_E_TOOBIG) {
                char msg[128];
                snprintf(msg, sizeof msg, "line %ld: longer than %u bytes", tmp.lineno,
                         AH_BATCH_MAX_LINE);
                if (!done_has(&R->done, key_of(NULL, tmp.lineno)))
                    record_error(R, &tmp, "line_too_long", msg);
                else
                    R->p.skipped++;
                reader_skip_line(&R->in);
                continue;
            }
            R->io_failed = 1;
            R->in_eof = 1;
            break;
        }
        item_t *it = item_parse(R->in.line.data, R->in.line.len, R->in.lineno, R->o->model);
        if (done_has(&R->done,
                     key_of(it->bad_code && !it->custom_id ? NULL : it->custom_id, it->lineno))) {
            R->p.skipped++;
            item_free(it);
            continue;
        }
        if (it->bad_code) {
            record_error(R, it, it->bad_code, it->bad_msg);
            item_free(it);
            continue;
        }
        return it;
    }
    return NULL;
}

static void start_call(run_t *R, call_t *c, item_t *it)
{
    memset(c, 0, sizeof *c);
    c->it = it;
    it->attempts++;
    ah_buf_init(&c->resp, MAX_RESPONSE);
    c->h = curl_easy_init();
    char url[2048], hdr[1200];
    snprintf(url, sizeof url, "%s%s", R->o->base_url, it->url);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    if (R->o->auth) {
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", R->o->auth);
        c->hdrs = curl_slist_append(c->hdrs, hdr);
    }
    for (int i = 0; i < R->o->nheaders; i++)
        c->hdrs = curl_slist_append(c->hdrs, R->o->headers[i]);
    if (R->tagsh)
        c->hdrs = curl_slist_append(c->hdrs, R->tagsh);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, ah_curl_to_buf);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, R->o->timeout_s > 0 ? R->o->timeout_s : 600L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    curl_multi_add_handle(R->m, c->h);
    R->p.in_flight++;
}

static void end_call(call_t *c)
{
    curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdrs);
    ah_buf_free(&c->resp);
    c->h = NULL;
    c->hdrs = NULL;
    c->it = NULL;
}

static int transient(long status)
{
    return status == 408 || status == 409 || status == 429 || status == 500 || status == 502 ||
           status == 503 || status == 504 || status == 529;
}

static void finish_call(run_t *R, call_t *c, CURLcode code)
{
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    item_t *it = c->it;
    R->p.in_flight--;
    int max_retries = R->o->max_retries > 0 ? R->o->max_retries : 5;
    int64_t now = ah_now_us();
    pace_t *p = pace_for(R->paces, &R->npaces, R->o->cfg, it->model);
    if (code == CURLE_OK && status == 429) {
        R->p.rate_limited++;
        if (p) {
            /* slow down: multiplicative decrease, and honour Retry-After */
            p->factor = fmax(0.05, p->factor * 0.7);
            char *end;
            double ra = strtod(c->retry_after, &end);
            if (c->retry_after[0] && !*end && ra > 0)
                p->hold_until_us = now + (int64_t)(fmin(ra, 300) * 1e6);
        }
    } else if (code == CURLE_OK && status >= 200 && status < 300 && p) {
        p->factor = fmin(1, p->factor + 0.02); /* additive increase */
    }
    int retriable = code != CURLE_OK || transient(status);
    if (retriable && R->o->cancel && *R->o->cancel) {
        /* stopping: not recorded, so a resumed run sends it again */
        end_call(c);
        item_free(it);
        return;
    }
    if (retriable && it->attempts <= max_retries) {
        double backoff = fmin(30, 0.5 * pow(2, it->attempts - 1));
        char *end;
        double ra = strtod(c->retry_after, &end);
        if (c->retry_after[0] && !*end && ra > backoff)
            backoff = fmin(ra, 300);
        end_call(c);
        retry_push(R, it, now + (int64_t)(backoff * 1e6));
        return;
    }
    if (code != CURLE_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "line %ld: no answer after %d attempts: %s", it->lineno,
                 it->attempts, curl_easy_strerror(code));
        record_error(R, it, code == CURLE_OPERATION_TIMEDOUT ? "timeout" : "connection_error", msg);
    } else {
        record_response(R, it, status, c);
    }
    end_call(c);
    item_free(it);
}

static void report(run_t *R, int force)
{
    int64_t now = ah_now_us();
    if (!R->o->progress || (!force && now - R->last_progress_us < 250000))
        return;
    R->last_progress_us = now;
    R->p.elapsed_s = (double)(now - R->t0_us) / 1e6;
    R->o->progress(R->o->progress_ctx, &R->p);
}

ah_err_t ah_batch_run(const ah_batch_opts_t *o, ah_batch_progress_t *out, char *err, size_t errlen)
{
    run_t R = {.o = o, .out_fd = -1, .err_fd = -1};
    ah_err_t rc = AH_E_OK;
    R.t0_us = ah_now_us();
    ah_batch_scan_t sc;
    if ((rc = ah_batch_scan(o->input_path, &sc, err, errlen)) != AH_E_OK)
        return rc;
    R.p.total = sc.lines;
    long prev_out = 0, prev_err = 0, prev_bad = 0;
    if ((R.out_fd = journal_open(o->output_path, &R.done, &prev_out, &prev_bad)) < 0 ||
        (R.err_fd = journal_open(o->error_path, &R.done, &prev_err, NULL)) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", R.out_fd < 0 ? o->output_path : o->error_path,
                 strerror(errno));
        rc = AH_E_IO;
        goto out;
    }
    R.p.done = prev_out + prev_err;
    R.p.failed = prev_err + prev_bad;
    if (reader_open(&R.in, o->input_path) != AH_E_OK) {
        snprintf(err, errlen, "%s: %s", o->input_path, strerror(errno));
        rc = AH_E_IO;
        goto out;
    }
    if (o->tags || o->batch_id) {
        ah_buf_t t;
        ah_buf_init(&t, 8192);
        ah_buf_appends(&t, "x-ahorro-tags: ");
        if (o->tags)
            ah_buf_appends(&t, o->tags);
        if (o->batch_id)
            ah_buf_printf(&t, "%sbatch_id=%s", o->tags && *o->tags ? "," : "", o->batch_id);
        R.tagsh = ah_buf_steal(&t, NULL);
    }
    R.ncalls = o->concurrency > 0 ? o->concurrency : 64;
    R.calls = ah_calloc((size_t)R.ncalls, sizeof *R.calls);
    R.m = curl_multi_init();
    curl_multi_setopt(R.m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)R.ncalls);
    for (;;) {
        int64_t now = ah_now_us();
        int64_t wait_us = 0;
        int cancelled = o->cancel && *o->cancel;
        /* fill free slots while pacing allows */
        for (int i = 0; i < R.ncalls && !cancelled; i++) {
            if (R.calls[i].h)
                continue;
            item_t *it = R.held ? R.held : next_item(&R, now, &wait_us);
            R.held = NULL;
            if (!it)
                break;
            pace_t *p = pace_for(R.paces, &R.npaces, o->cfg, it->model);
            int64_t w = pace_take(p, it->est_tokens, now);
            if (w > 0) {
                R.held = it; /* head of line: wait for its model's pacing */
                if (!wait_us || w < wait_us)
                    wait_us = w;
                break;
            }
            start_call(&R, &R.calls[i], it);
        }
        if (R.p.in_flight == 0 && (cancelled || (!R.held && R.nretry == 0 && R.in_eof)))
            break;
        int running = 0;
        curl_multi_perform(R.m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(R.m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            call_t *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(R.m, c->h);
            finish_call(&R, c, code);
        }
        report(&R, 0);
        if (R.io_failed) {
            snprintf(err, errlen, "cannot write the results (%s, %s)", o->output_path,
                     o->error_path);
            rc = AH_E_IO;
            if (o->cancel)
                *o->cancel = 1;
        }
        int timeout_ms = 100;
        if (wait_us > 0 && wait_us / 1000 < timeout_ms)
            timeout_ms = (int)(wait_us / 1000);
        if (R.p.in_flight > 0)
            curl_multi_poll(R.m, NULL, 0, timeout_ms, NULL);
        else if (timeout_ms > 0)
            usleep((useconds_t)timeout_ms * 1000);
    }
    if (rc == AH_E_OK && o->cancel && *o->cancel)
        rc = AH_E_CANCELLED;
    fdatasync(R.out_fd);
    fdatasync(R.err_fd);
    report(&R, 1);
out:
    if (out) {
        R.p.elapsed_s = (double)(ah_now_us() - R.t0_us) / 1e6;
        *out = R.p;
    }
    for (int i = 0; R.calls && i < R.ncalls; i++)
        if (R.calls[i].h) {
            curl_multi_remove_handle(R.m, R.calls[i].h);
            item_free(R.calls[i].it);
            end_call(&R.calls[i]);
        }
    for (int i = 0; i < R.nretry; i++)
        item_free(R.retry[i]);
    item_free(R.held);
    ah_free(R.retry);
    ah_free(R.calls);
    if (R.m)
        curl_multi_cleanup(R.m);
    for (int i = 0; i < R.npaces; i++)
        ah_free(R.paces[i].model);
    reader_close(&R.in);
    ah_free(R.done.slot);
    ah_free(R.tagsh);
    if (R.out_fd >= 0)
        close(R.out_fd);
    if (R.err_fd >= 0)
        close(R.err_fd);
    return rc;
}
