/* eval.c - `ahorro eval run | report | list`: offline evaluation through
 * the gateway's own pipeline (docs/evaluation.md).
 *
 * A run sends every row of a data set to every variant, judges the answers
 * when asked, and keeps everything in the database (eval_runs,
 * eval_results, judge_cache), so that:
 *  - the requests are ordinary gateway traffic: authenticated, budgeted,
 *    shaped, cached, routed, priced and on the ledger, tagged purpose=eval
 *    (judges: purpose=eval-judge), eval_run and variant. By default the
 *    command serves the configured gateway in-process on an ephemeral
 *    loopback port for its own duration (server/gateway.h); --gateway URL
 *    sends to a running one instead;
 *  - a run stopped half-way resumes with the same --run-id: the rows already
 *    answered (or judged) are not sent again;
 *  - a judge's answer is cached by (judge, prompt): re-judging, re-running a
 *    run or re-rendering a report costs nothing.
 *
 * Threads: one. The HTTP calls are concurrent through a curl multi handle
 * (--concurrency, default 8); the in-process gateway runs its own workers.
 * Memory: the data set's rows and one result per (variant, row). */
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <yaml.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/log.h"
#include "upstream/curl_util.h"
#include "quality/eval.h"
#include "server/local.h"
#include "store/db.h"

#define EVAL_MAX_RESPONSE (8u * 1024 * 1024)
#define EVAL_MAX_CONCURRENCY 256
#define EVAL_JUDGE_MAX_TOKENS 1024

static void eval_usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  ahorro eval run --dataset FILE.jsonl --variant V [--variant V]...\n"
               "                  [--judge MODEL [--criteria a,b,...]] [--pairwise]\n"
               "                  [--scorers exact,normalized,f1,choice,regex,json_schema]\n"
               "                  [--metric NAME] [--limit N] [--concurrency N] [--timeout S]\n"
               "                  [--run-id ID [--retry-failed]] [--gateway URL [--api-key KEY]]\n"
               "                  [--format table|json|html] [-o FILE]\n"
               "  ahorro eval report RUN_ID [--metric NAME] [--format table|json|html] [-o FILE]\n"
               "  ahorro eval list [--json]\n"
               "A variant is a YAML file (name, model, temperature, top_p, max_tokens, system,\n"
               "prompt, shape, cache, tags, params), a model name, or k=v,k=v. The first variant\n"
               "is the control. See docs/evaluation.md.\n");
}

/* ---- YAML variant files ------------------------------------------------------------------ */

static json_t *yaml_scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_string(s);
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0)
        return json_true();
    if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0)
        return json_false();
    if (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || !*s)
        return json_null();
    char *end;
    long long i = strtoll(s, &end, 10);
    if (*s && !*end)
        return json_integer(i);
    double d = strtod(s, &end);
    if (*s && !*end)
        return json_real(d);
    return json_string(s);
}

static json_t *yaml_to_json(yaml_document_t *doc, yaml_node_t *n, int depth)
{
    if (!n || depth > 32)
        return NULL;
    if (n->type == YAML_SCALAR_NODE)
        return yaml_scalar(n);
    if (n->type == YAML_SEQUENCE_NODE) {
        json_t *a = json_array();
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
             it++) {
            json_t *v = yaml_to_json(doc, yaml_document_get_node(doc, *it), depth + 1);
            if (!v) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, v);
        }
        return a;
    }
    if (n->type == YAML_MAPPING_NODE) {
        json_t *o = json_object();
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            json_t *v = yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1);
            if (!k || k->type != YAML_SCALAR_NODE || !v) {
                json_decref(v);
                json_decref(o);
                return NULL;
            }
            json_object_set_new(o, (const char *)k->data.scalar.value, v);
        }
        return o;
    }
    return NULL;
}

/* A variant from a YAML (or JSON) file named path. */
static int load_variant_file(const char *path, ah_eval_variant_t *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    yaml_parser_t p;
    yaml_document_t doc;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = -1;
    if (!yaml_parser_load(&p, &doc)) {
        snprintf(err, errlen, "%s:%zu: %s", path, p.problem_mark.line + 1,
                 p.problem ? p.problem : "YAML syntax error");
    } else {
        json_t *o = yaml_to_json(&doc, yaml_document_get_root_node(&doc), 0);
        char base[AH_EVAL_MAX_NAME + 1], why[512];
        const char *slash = strrchr(path, '/');
        snprintf(base, sizeof base, "%s", slash ? slash + 1 : path);
        char *dot = strrchr(base, '.');
        if (dot && dot != base)
            *dot = '\0';
        if (!o)
            snprintf(err, errlen, "%s: a variant must be a mapping", path);
        else if (ah_eval_variant_parse(o, base, out, why, sizeof why) != AH_E_OK)
            snprintf(err, errlen, "%s: %s", path, why);
        else
            rc = 0;
        json_decref(o);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

/* ---- the data set ----------------------------------------------------------------------- */

typedef struct dataset {
    ah_eval_row_t *rows;
    long n;
} dataset_t;

static void dataset_free(dataset_t *d)
{
    for (long i = 0; i < d->n; i++)
        ah_eval_row_free(&d->rows[i]);
    ah_free(d->rows);
    d->rows = NULL;
    d->n = 0;
}

/* Read up to limit rows (0: AH_EVAL_MAX_ROWS); a bad line is an error. */
static int dataset_load(const char *path, long limit, dataset_t *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return -1;
    }
    if (limit <= 0 || limit > AH_EVAL_MAX_ROWS)
        limit = AH_EVAL_MAX_ROWS;
    long cap = 0, line = 0;
    int rc = 0;
    ah_buf_t b;
    ah_buf_init(&b, AH_EVAL_MAX_LINE);
    for (;;) {
        int c = 0;
        ah_buf_reset(&b);
        while ((c = fgetc(f)) != EOF && c != '\n') {
            char ch = (char)c;
            if (ah_buf_append(&b, &ch, 1) != AH_E_OK) {
                snprintf(err, errlen, "%s:%ld: line longer than %u bytes", path, line + 1,
                         AH_EVAL_MAX_LINE);
                rc = -1;
                goto out;
            }
        }
        if (c == EOF && b.len == 0)
            break;
        line++;
        size_t k = 0;
        while (k < b.len && (b.data[k] == ' ' || b.data[k] == '\t' || b.data[k] == '\r'))
            k++;
        if (k == b.len)
            continue;
        if (d->n >= limit) {
            if (limit == AH_EVAL_MAX_ROWS) {
                snprintf(err, errlen, "%s: more than %d rows", path, AH_EVAL_MAX_ROWS);
                rc = -1;
            }
            break;
        }
        json_error_t je;
        json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, &je);
        if (!j) {
            snprintf(err, errlen, "%s:%ld: not JSON: %s", path, line, je.text);
            rc = -1;
            break;
        }
        if (d->n == cap) {
            cap = cap ? cap * 2 : 256;
            d->rows = ah_realloc(d->rows, (size_t)cap * sizeof *d->rows);
        }
        char why[600];
        ah_err_t e = ah_eval_row_parse(j, line, &d->rows[d->n], why, sizeof why);
        json_decref(j);
        if (e != AH_E_OK) {
            snprintf(err, errlen, "%s: %s", path, why);
            rc = -1;
            break;
        }
        d->n++;
    }
out:
    ah_buf_free(&b);
    if (f != stdin)
        fclose(f);
    if (rc == 0 && d->n == 0) {
        snprintf(err, errlen, "%s: no rows", path);
        rc = -1;
    }
    if (rc)
        dataset_free(d);
    return rc;
}

/* ---- HTTP calls ------------------------------------------------------------------------- */

typedef struct reply {
    int status;       /* 0: transport error */
    const char *text; /* the answer (or the error's message) */
    char request_id[64];
    double cost; /* < 0: unknown */
    int cache_hit;
    double latency_ms;
} reply_t;

typedef struct call {
    CURL *h;
    struct curl_slist *hdrs;
    char *body;
    ah_buf_t resp;
    int job;
    int64_t t0_us;
    char request_id[64];
    char cost[32];
    char cache[32];
} call_t;

typedef struct client {
    const char *base; /* http://host:port, no trailing slash */
    const char *auth; /* bearer token or NULL */
    long timeout_s;
    int concurrency;
    const char *what; /* progress label */
} client_t;

/* The next job: 1 with *body (owned) and *tags set, 0 when none is left. */
typedef int (*next_fn)(void *ctx, int *job, json_t **body, char **tags);
typedef void (*done_fn)(void *ctx, int job, const reply_t *r);

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    call_t *c = ud;
    size_t len = sz * n;
    ah_curl_header_value(p, len, "x-ahorro-request-id", c->request_id, sizeof c->request_id);
    ah_curl_header_value(p, len, "x-ahorro-cost", c->cost, sizeof c->cost);
    ah_curl_header_value(p, len, "x-ahorro-cache", c->cache, sizeof c->cache);
    return len;
}

/* The answer's text: choices[0].message.content, else its first tool
 * call's arguments; for an error, error.message. NULL when neither. */
static const char *answer_text(json_t *j, int ok)
{
    if (!ok) {
        json_t *m = json_object_get(json_object_get(j, "error"), "message");
        return json_string_value(m);
    }
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    json_t *content = json_object_get(msg, "content");
    if (json_is_string(content))
        return json_string_value(content);
    json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
    return json_string_value(json_object_get(json_object_get(tc, "function"), "arguments"));
}

static void call_finish(call_t *c, CURLcode code, done_fn done, void *ctx)
{
    reply_t r = {.cost = -1};
    long status = 0;
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    r.latency_ms = (double)(ah_now_us() - c->t0_us) / 1000.0;
    snprintf(r.request_id, sizeof r.request_id, "%s", c->request_id);
    json_t *j = NULL;
    char why[300];
    if (code != CURLE_OK) {
        r.status = 0;
        snprintf(why, sizeof why, "no answer: %s", curl_easy_strerror(code));
        r.text = why;
    } else {
        r.status = (int)status;
        j = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, NULL);
        r.text = answer_text(j, status == 200);
        if (status == 200 && !j) {
            r.status = 0;
            snprintf(why, sizeof why, "the answer is not JSON");
            r.text = why;
        } else if (status != 200 && !r.text) {
            snprintf(why, sizeof why, "HTTP %ld", status);
            r.text = why;
        }
        char *end;
        double cost = strtod(c->cost, &end);
        if (c->cost[0] && !*end && cost >= 0)
            r.cost = cost;
        r.cache_hit = c->cache[0] && strcmp(c->cache, "off") != 0 &&
                      strcmp(c->cache, "bypass") != 0 && strcmp(c->cache, "miss") != 0 &&
                      strcmp(c->cache, "stored") != 0;
    }
    done(ctx, c->job, &r);
    json_decref(j);
}

static void call_free(call_t *c)
{
    if (c->h)
        curl_easy_cleanup(c->h);
    curl_slist_free_all(c->hdrs);
    ah_free(c->body);
    ah_buf_free(&c->resp);
    memset(c, 0, sizeof *c);
}

static int call_start(const client_t *cl, CURLM *m, call_t *c, int job, json_t *body,
                      const char *tags)
{
    memset(c, 0, sizeof *c);
    c->job = job;
    char *txt = json_dumps(body, JSON_COMPACT);
    c->body = ah_strdup(txt);
    free(txt);
    ah_buf_init(&c->resp, EVAL_MAX_RESPONSE);
    c->h = curl_easy_init();
    char url[1200], hdr[1400];
    snprintf(url, sizeof url, "%s/v1/chat/completions", cl->base);
    c->hdrs = curl_slist_append(c->hdrs, "Content-Type: application/json");
    if (cl->auth) {
        snprintf(hdr, sizeof hdr, "Authorization: Bearer %s", cl->auth);
        c->hdrs = curl_slist_append(c->hdrs, hdr);
    }
    ah_buf_t th;
    ah_buf_init(&th, 16384);
    ah_buf_printf(&th, "x-ahorro-tags: %s", tags);
    c->hdrs = curl_slist_append(c->hdrs, th.data);
    ah_buf_free(&th);
    c->hdrs = curl_slist_append(c->hdrs, "Expect:");
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, c->hdrs);
    curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, c->body);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, ah_curl_to_buf);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &c->resp);
    curl_easy_setopt(c->h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c->h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT, cl->timeout_s);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_PRIVATE, c);
    c->t0_us = ah_now_us();
    return curl_multi_add_handle(m, c->h) == CURLM_OK ? 0 : -1;
}

/* Run the jobs next() hands out, at most cl->concurrency at a time, and
 * report each to done(). Progress goes to stderr. */
static void run_calls(const client_t *cl, next_fn next, done_fn done, void *ctx, long total)
{
    CURLM *m = curl_multi_init();
    call_t *calls = ah_calloc((size_t)cl->concurrency, sizeof *calls);
    int active = 0, more = 1;
    long finished = 0, failed = 0;
    int64_t last = ah_now_us();
    int tty = isatty(2);
    for (;;) {
        for (int i = 0; more && i < cl->concurrency; i++) {
            if (calls[i].h)
                continue;
            int job;
            json_t *body;
            char *tags;
            if (!next(ctx, &job, &body, &tags)) {
                more = 0;
                break;
            }
            if (call_start(cl, m, &calls[i], job, body, tags) == 0) {
                active++;
            } else {
                reply_t r = {.status = 0, .text = "cannot start the call", .cost = -1};
                call_free(&calls[i]);
                done(ctx, job, &r);
            }
            json_decref(body);
            ah_free(tags);
        }
        if (!active)
            break;
        int running = 0;
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            call_t *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            CURLcode code = msg->data.result;
            curl_multi_remove_handle(m, c->h);
            long status = 0;
            curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
            failed += code != CURLE_OK || status != 200;
            call_finish(c, code, done, ctx);
            call_free(c);
            active--;
            finished++;
        }
        int64_t now = ah_now_us();
        if (now - last > (tty ? 250000 : 5000000)) {
            last = now;
            fprintf(stderr,
                    tty ? "\r%s: %ld/%ld done, %ld failed   " : "%s: %ld/%ld done, %ld failed\n",
                    cl->what, finished, total, failed);
        }
        if (active)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    if (total > 0)
        fprintf(stderr,
                tty ? "\r%s: %ld/%ld done, %ld failed   \n" : "%s: %ld/%ld done, %ld failed\n",
                cl->what, finished, total, failed);
    ah_free(calls);
    curl_multi_cleanup(m);
}

/* ---- the run ---------------------------------------------------------------------------- */

typedef struct result {
    int have; /* answered (or failed) and stored */
    int status;
    char *answer;
    char request_id[64];
    double cost;
    double latency_ms;
    int cache_hit;
    json_t *scores;
} result_t;

typedef struct run {
    const char *id;
    sqlite3 *db;
    dataset_t ds;
    ah_eval_variant_t vars[AH_EVAL_MAX_VARIANTS];
    int nvars;
    result_t *res; /* [variant * ds.n + row] */
    const char *judge;
    const char *criteria[AH_JUDGE_MAX_CRITERIA];
    char critbuf[AH_JUDGE_MAX_CRITERIA][AH_JUDGE_MAX_CRITERION + 1];
    int ncriteria;
    int pairwise;
    int retry_failed; /* a resumed run asks again what failed */
    unsigned mask;
    long cursor; /* next job of the current phase */
    /* the pairwise phase: per (variant, row), each order's verdict (or
     * PV_PENDING) and what its calls cost */
    int *pv;
    double *pair_cost;
} run_t;

static result_t *res_at(run_t *R, int v, long row)
{
    return &R->res[(size_t)v * (size_t)R->ds.n + (size_t)row];
}

static void store_result(run_t *R, int v, long row)
{
    result_t *x = res_at(R, v, row);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(
            R->db,
            "INSERT OR REPLACE INTO eval_results(run_id, variant, row_idx, row_id,"
            " request_id, status, answer, cost_usd, latency_ms, cache, scores, error)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            -1, &st, NULL) != SQLITE_OK) {
        ah_error("eval: %s", sqlite3_errmsg(R->db));
        return;
    }
    char *scores = x->scores ? json_dumps(x->scores, JSON_COMPACT) : NULL;
    sqlite3_bind_text(st, 1, R->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, R->vars[v].name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, row);
    sqlite3_bind_text(st, 4, R->ds.rows[row].id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, x->request_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, x->status);
    if (x->status == 200)
        sqlite3_bind_text(st, 7, x->answer, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 7);
    if (x->cost >= 0)
        sqlite3_bind_double(st, 8, x->cost);
    else
        sqlite3_bind_null(st, 8);
    sqlite3_bind_double(st, 9, x->latency_ms);
    sqlite3_bind_text(st, 10, x->cache_hit ? "hit" : NULL, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, scores, -1, SQLITE_STATIC);
    if (x->status != 200)
        sqlite3_bind_text(st, 12, x->answer, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 12);
    if (sqlite3_step(st) != SQLITE_DONE)
        ah_error("eval: cannot store a result: %s", sqlite3_errmsg(R->db));
    sqlite3_finalize(st);
    free(scores);
}

/* Results already stored for this run (a resumed run). */
static void load_results(run_t *R)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(R->db,
                           "SELECT variant, row_idx, request_id, status, answer, cost_usd,"
                           " latency_ms, cache, scores, error FROM eval_results WHERE run_id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, R->id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *vn = (const char *)sqlite3_column_text(st, 0);
        long row = (long)sqlite3_column_int64(st, 1);
        int v = 0;
        while (v < R->nvars && strcmp(R->vars[v].name, vn ? vn : "") != 0)
            v++;
        if (v == R->nvars || row < 0 || row >= R->ds.n)
            continue;
        result_t *x = res_at(R, v, row);
        x->have = 1;
        snprintf(x->request_id, sizeof x->request_id, "%s",
                 sqlite3_column_text(st, 2) ? (const char *)sqlite3_column_text(st, 2) : "");
        x->status = sqlite3_column_int(st, 3);
        const char *a = (const char *)sqlite3_column_text(st, x->status == 200 ? 4 : 9);
        x->answer = ah_strdup(a ? a : "");
        x->cost = sqlite3_column_type(st, 5) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 5);
        x->latency_ms = sqlite3_column_double(st, 6);
        x->cache_hit = sqlite3_column_type(st, 7) != SQLITE_NULL;
        const char *sc = (const char *)sqlite3_column_text(st, 8);
        x->scores = sc ? json_loads(sc, 0, NULL) : NULL;
        if (!json_is_object(x->scores)) {
            json_decref(x->scores);
            x->scores = json_object();
        }
        if (R->retry_failed) {
            /* ask again what failed: answers, judgments, pairs */
            if (x->status != 200)
                x->have = 0;
            json_object_del(x->scores, "judge_error");
            json_object_del(x->scores, "pairwise_error");
        }
    }
    sqlite3_finalize(st);
}

static char *tags_for(run_t *R, const char *purpose, int v, long row)
{
    ah_buf_t b;
    ah_buf_init(&b, 16384);
    if (strcmp(purpose, "eval") == 0) {
        ah_eval_tags(R->id, R->vars[v].name, &R->ds.rows[row], &b);
        json_t *vt = json_object_get(R->vars[v].spec, "tags");
        const char *k;
        json_t *val;
        json_object_foreach(vt, k, val) ah_buf_printf(&b, ",%s=%s", k, json_string_value(val));
    } else {
        ah_buf_printf(&b, "purpose=%s,eval_run=%s,variant=%s", purpose, R->id, R->vars[v].name);
    }
    return ah_buf_steal(&b, NULL);
}

/* phase 1: the answers */
static int next_answer(void *ctx, int *job, json_t **body, char **tags)
{
    run_t *R = ctx;
    long total = (long)R->nvars * R->ds.n;
    while (R->cursor < total) {
        long j = R->cursor++;
        int v = (int)(j % R->nvars);
        long row = j / R->nvars;
        if (res_at(R, v, row)->have)
            continue;
        *job = (int)j;
        *body = ah_eval_body(&R->vars[v], &R->ds.rows[row]);
        *tags = tags_for(R, "eval", v, row);
        return 1;
    }
    return 0;
}

static void done_answer(void *ctx, int job, const reply_t *r)
{
    run_t *R = ctx;
    int v = job % R->nvars;
    long row = job / R->nvars;
    result_t *x = res_at(R, v, row);
    x->have = 1;
    x->status = r->status;
    ah_free(x->answer); /* a failed answer asked again (--retry-failed) */
    json_decref(x->scores);
    x->answer = ah_strdup(r->text ? r->text : "");
    snprintf(x->request_id, sizeof x->request_id, "%s", r->request_id);
    x->cost = r->cost;
    x->latency_ms = r->latency_ms;
    x->cache_hit = r->cache_hit;
    x->scores = json_object();
    if (x->status == 200)
        ah_eval_score(&R->ds.rows[row], x->answer, R->mask, x->scores);
    store_result(R, v, row);
}

/* The judge cache's key: SHA-256 of the judge's name and the prompt. */
static void judge_key(const char *judge, const char *prompt, char hex[65])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned len = 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, judge, strlen(judge) + 1);
    EVP_DigestUpdate(md, prompt, strlen(prompt));
    EVP_DigestFinal_ex(md, d, &len);
    EVP_MD_CTX_free(md);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static char *judge_cached(run_t *R, const char *key)
{
    sqlite3_stmt *st;
    char *out = NULL;
    if (sqlite3_prepare_v2(R->db, "SELECT answer FROM judge_cache WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = ah_strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static void judge_remember(run_t *R, const char *key, const char *answer, double cost)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(R->db,
                           "INSERT OR REPLACE INTO judge_cache(key, judge, answer, cost_usd,"
                           " created_ms) VALUES (?,?,?,?,?)",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, R->judge, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, answer, -1, SQLITE_STATIC);
    if (cost >= 0)
        sqlite3_bind_double(st, 4, cost);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, ah_wall_ms());
    sqlite3_step(st);
    sqlite3_finalize(st);
}

static json_t *judge_body(run_t *R, const char *prompt)
{
    return json_pack("{s:s,s:[{s:s,s:s}],s:i,s:i,s:b}", "model", R->judge, "messages", "role",
                     "user", "content", prompt, "temperature", 0, "max_tokens",
                     EVAL_JUDGE_MAX_TOKENS, "stream", 0);
}

static void add_cost(json_t *scores, const char *key, double cost)
{
    if (cost <= 0)
        return;
    json_t *old = json_object_get(scores, key);
    json_object_set_new(scores, key,
                        json_real(cost + (json_is_number(old) ? json_number_value(old) : 0)));
}

/* The rubric prompt for a result, or NULL (error noted in its scores). */
static char *rubric_prompt(run_t *R, int v, long row)
{
    result_t *x = res_at(R, v, row);
    ah_buf_t b;
    ah_buf_init(&b, AH_JUDGE_MAX_PROMPT);
    const ah_eval_row_t *rw = &R->ds.rows[row];
    if (ah_judge_prompt(R->criteria, R->ncriteria, rw->question, x->answer, rw->reference, &b) !=
        AH_E_OK) {
        ah_buf_free(&b);
        json_object_set_new(x->scores, "judge_error",
                            json_string("the judge's prompt cannot be built (too long)"));
        return NULL;
    }
    return ah_buf_steal(&b, NULL);
}

/* phase 2: the rubric judge; cached verdicts are applied without a call */
static int next_judge(void *ctx, int *job, json_t **body, char **tags)
{
    run_t *R = ctx;
    long total = (long)R->nvars * R->ds.n;
    while (R->cursor < total) {
        long j = R->cursor++;
        int v = (int)(j % R->nvars);
        long row = j / R->nvars;
        result_t *x = res_at(R, v, row);
        if (!x->have || x->status != 200 || json_object_get(x->scores, "judge") ||
            json_object_get(x->scores, "judge_error"))
            continue;
        char *prompt = rubric_prompt(R, v, row);
        if (!prompt) {
            store_result(R, v, row);
            continue;
        }
        char key[65];
        judge_key(R->judge, prompt, key);
        char *cached = judge_cached(R, key);
        if (cached) {
            ah_eval_judge_scores(cached, R->criteria, R->ncriteria, x->scores);
            ah_free(cached);
            ah_free(prompt);
            store_result(R, v, row);
            continue;
        }
        *job = (int)j;
        *body = judge_body(R, prompt);
        *tags = tags_for(R, "eval-judge", v, row);
        ah_free(prompt);
        return 1;
    }
    return 0;
}

static void done_judge(void *ctx, int job, const reply_t *r)
{
    run_t *R = ctx;
    int v = job % R->nvars;
    long row = job / R->nvars;
    result_t *x = res_at(R, v, row);
    add_cost(x->scores, "judge_cost", r->cost);
    if (r->status != 200) {
        char why[400];
        snprintf(why, sizeof why, "judge call failed (%s%d): %.300s",
                 r->status ? "HTTP " : "status ", r->status, r->text ? r->text : "");
        json_object_set_new(x->scores, "judge_error", json_string(why));
    } else {
        ah_eval_judge_scores(r->text, R->criteria, R->ncriteria, x->scores);
        if (!json_object_get(x->scores, "judge_error")) {
            char *prompt = rubric_prompt(R, v, row);
            if (prompt) {
                char key[65];
                judge_key(R->judge, prompt, key);
                judge_remember(R, key, r->text, r->cost);
                ah_free(prompt);
            }
        }
    }
    store_result(R, v, row);
}

/* phase 3: pairwise, each non-control variant against the control, asked
 * in both orders (job = 2 * (variant * rows + row) + swapped) */
static char *pair_prompt(run_t *R, int v, long row, int swapped)
{
    result_t *c = res_at(R, 0, row), *x = res_at(R, v, row);
    ah_buf_t b;
    ah_buf_init(&b, AH_JUDGE_MAX_PROMPT);
    const char *q = R->ds.rows[row].question;
    if (ah_judge_pairwise_prompt(q, swapped ? x->answer : c->answer,
                                 swapped ? c->answer : x->answer, &b) != AH_E_OK) {
        ah_buf_free(&b);
        return NULL;
    }
    return ah_buf_steal(&b, NULL);
}

#define PV_PENDING (-9)

/* Both orders known: the combined verdict into the variant's scores. */
static void pair_settle(run_t *R, int v, long row)
{
    long k = (long)v * R->ds.n + row;
    result_t *x = res_at(R, v, row);
    ah_judge_verdict_t w = ah_judge_pairwise_combine((ah_judge_verdict_t)R->pv[2 * k],
                                                     (ah_judge_verdict_t)R->pv[2 * k + 1]);
    if (w == AH_JUDGE_FAIL)
        json_object_set_new(x->scores, "pairwise_error",
                            json_string("a pairwise judgment failed (no verdict, or no answer)"));
    else /* in the first order, A is the control and B the variant */
        json_object_set_new(x->scores, "pairwise",
                            json_integer(w == AH_JUDGE_B   ? 1
                                         : w == AH_JUDGE_A ? -1
                                                           : 0));
    add_cost(x->scores, "judge_cost", R->pair_cost[k]);
    store_result(R, v, row);
}

static void pair_note(run_t *R, int v, long row, int swapped, int verdict)
{
    long k = (long)v * R->ds.n + row;
    R->pv[2 * k + swapped] = verdict;
    if (R->pv[2 * k] != PV_PENDING && R->pv[2 * k + 1] != PV_PENDING)
        pair_settle(R, v, row);
}

/* The verdict for one order from the cache, AH_JUDGE_FAIL when its prompt
 * cannot be built, or PV_PENDING when it must be asked. */
static int pair_cached(run_t *R, int v, long row, int swapped)
{
    char *prompt = pair_prompt(R, v, row, swapped);
    if (!prompt)
        return AH_JUDGE_FAIL;
    char key[65];
    judge_key(R->judge, prompt, key);
    ah_free(prompt);
    char *cached = judge_cached(R, key);
    if (!cached)
        return PV_PENDING;
    ah_judge_verdict_t verdict = ah_judge_pairwise_parse(cached);
    ah_free(cached);
    return verdict;
}

static int next_pair(void *ctx, int *job, json_t **body, char **tags)
{
    run_t *R = ctx;
    long total = 2L * R->nvars * R->ds.n;
    while (R->cursor < total) {
        long j = R->cursor++;
        int swapped = (int)(j & 1);
        long k = j >> 1;
        int v = (int)(k / R->ds.n);
        long row = k % R->ds.n;
        if (v == 0)
            continue;
        result_t *c = res_at(R, 0, row), *x = res_at(R, v, row);
        if (!x->have || x->status != 200 || json_object_get(x->scores, "pairwise") ||
            json_object_get(x->scores, "pairwise_error"))
            continue;
        if (!c->have || c->status != 200)
            continue; /* nothing to compare with */
        int cached = pair_cached(R, v, row, swapped);
        if (cached != PV_PENDING) {
            pair_note(R, v, row, swapped, cached);
            continue;
        }
        char *prompt = pair_prompt(R, v, row, swapped);
        *job = (int)j;
        *body = judge_body(R, prompt);
        *tags = tags_for(R, "eval-judge", v, row);
        ah_free(prompt);
        return 1;
    }
    return 0;
}

static void done_pair(void *ctx, int job, const reply_t *r)
{
    run_t *R = ctx;
    int swapped = job & 1;
    long k = job >> 1;
    int v = (int)(k / R->ds.n);
    long row = k % R->ds.n;
    ah_judge_verdict_t verdict = AH_JUDGE_FAIL;
    if (r->cost > 0)
        R->pair_cost[k] += r->cost;
    if (r->status == 200) {
        verdict = ah_judge_pairwise_parse(r->text);
        if (verdict != AH_JUDGE_FAIL) {
            char *prompt = pair_prompt(R, v, row, swapped);
            if (prompt) {
                char key[65];
                judge_key(R->judge, prompt, key);
                judge_remember(R, key, r->text, r->cost);
                ah_free(prompt);
            }
        }
    }
    pair_note(R, v, row, swapped, verdict);
}

/* ---- reports ---------------------------------------------------------------------------- */

static int emit(const json_t *rep, const char *format, const char *outpath)
{
    ah_buf_t b;
    ah_buf_init(&b, 64u * 1024 * 1024);
    ah_err_t rc = AH_E_OK;
    if (strcmp(format, "json") == 0) {
        char *t = json_dumps(rep, JSON_INDENT(2));
        rc = ah_buf_appends(&b, t);
        ah_buf_appends(&b, "\n");
        free(t);
    } else if (strcmp(format, "html") == 0) {
        rc = ah_eval_render_html(rep, &b);
    } else {
        rc = ah_eval_render_table(rep, &b);
    }
    if (rc != AH_E_OK) {
        fprintf(stderr, "ahorro eval: the report is too large\n");
        ah_buf_free(&b);
        return 1;
    }
    FILE *f = outpath ? fopen(outpath, "wb") : stdout;
    if (!f) {
        fprintf(stderr, "ahorro eval: cannot write %s\n", outpath);
        ah_buf_free(&b);
        return 1;
    }
    fwrite(b.data, 1, b.len, f);
    if (outpath) {
        fclose(f);
        fprintf(stderr, "report written to %s\n", outpath);
    }
    ah_buf_free(&b);
    return 0;
}

/* The report of run id from the database. */
static int report_from_db(sqlite3 *db, const char *id, const char *metric, const char *format,
                          const char *outpath)
{
    sqlite3_stmt *st;
    json_t *spec = NULL;
    if (sqlite3_prepare_v2(db, "SELECT spec FROM eval_runs WHERE id = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return 1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        spec = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
    sqlite3_finalize(st);
    if (!spec) {
        fprintf(stderr, "ahorro eval: no run '%s' (ahorro eval list)\n", id);
        return 1;
    }
    const char *vnames[AH_EVAL_MAX_VARIANTS], *crit[AH_JUDGE_MAX_CRITERIA];
    int nv = 0, nc = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(spec, "variants"), i, x) if (nv < AH_EVAL_MAX_VARIANTS)
        vnames[nv++] = json_string_value(json_object_get(x, "name"));
    json_array_foreach(json_object_get(spec, "criteria"), i, x) if (nc < AH_JUDGE_MAX_CRITERIA)
        crit[nc++] = json_string_value(x);
    if (!metric)
        metric = json_string_value(json_object_get(spec, "metric"));
    size_t cap = 1024, n = 0;
    ah_eval_result_t *res = ah_calloc(cap, sizeof *res);
    if (sqlite3_prepare_v2(db,
                           "SELECT variant, row_idx, status, cost_usd, latency_ms, cache, scores"
                           " FROM eval_results WHERE run_id = ?",
                           -1, &st, NULL) != SQLITE_OK) {
        ah_free(res);
        json_decref(spec);
        return 1;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *vn = (const char *)sqlite3_column_text(st, 0);
        int v = 0;
        while (v < nv && strcmp(vnames[v], vn ? vn : "") != 0)
            v++;
        if (v == nv)
            continue;
        if (n == cap) {
            cap *= 2;
            res = ah_realloc(res, cap * sizeof *res);
        }
        const char *sc = (const char *)sqlite3_column_text(st, 6);
        res[n] = (ah_eval_result_t){
            .variant = vnames[v],
            .row = (long)sqlite3_column_int64(st, 1),
            .status = sqlite3_column_int(st, 2),
            .cost_usd =
                sqlite3_column_type(st, 3) == SQLITE_NULL ? -1 : sqlite3_column_double(st, 3),
            .latency_ms = sqlite3_column_double(st, 4),
            .cache_hit = sqlite3_column_type(st, 5) != SQLITE_NULL,
            .scores = sc ? json_loads(sc, 0, NULL) : NULL,
        };
        n++;
    }
    sqlite3_finalize(st);
    json_t *rep = ah_eval_report(id, vnames, nv, res, n, metric, nc ? crit : NULL, nc);
    json_object_set(rep, "dataset", json_object_get(spec, "dataset"));
    json_object_set(rep, "judge", json_object_get(spec, "judge"));
    int rc = emit(rep, format, outpath);
    json_decref(rep);
    for (size_t k = 0; k < n; k++)
        json_decref(res[k].scores);
    ah_free(res);
    json_decref(spec);
    return rc;
}

static int cmd_list(sqlite3 *db, int as_json)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT r.id, r.created_ms, r.dataset, r.spec,"
                           " (SELECT count(*) FROM eval_results e WHERE e.run_id = r.id)"
                           " FROM eval_runs r ORDER BY r.created_ms",
                           -1, &st, NULL) != SQLITE_OK)
        return 1;
    json_t *all = json_array();
    if (!as_json)
        printf("%-32s %-20s %8s  %s\n", "run", "created (UTC)", "results", "variants / dataset");
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        long long ms = sqlite3_column_int64(st, 1);
        const char *ds = (const char *)sqlite3_column_text(st, 2);
        json_t *spec = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        long long nres = sqlite3_column_int64(st, 4);
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        char when[32];
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
        json_t *names = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(spec, "variants"), i, v)
            json_array_append(names, json_object_get(v, "name"));
        if (as_json) {
            json_array_append_new(all, json_pack("{s:s,s:I,s:s,s:O,s:I}", "run", id, "created_ms",
                                                 (json_int_t)ms, "dataset", ds ? ds : "",
                                                 "variants", names, "results", (json_int_t)nres));
        } else {
            printf("%-32s %-20s %8lld  ", id, when, nres);
            json_array_foreach(names, i, v) printf("%s%s", i ? "," : "", json_string_value(v));
            printf(" / %s\n", ds ? ds : "");
        }
        json_decref(names);
        json_decref(spec);
    }
    sqlite3_finalize(st);
    if (as_json) {
        char *t = json_dumps(all, JSON_INDENT(2));
        printf("%s\n", t);
        free(t);
    }
    json_decref(all);
    return 0;
}

/* ---- `eval run` ------------------------------------------------------------------------- */

static int parse_long_arg(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int run_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > AH_EVAL_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
            return 0;
    return 1;
}

static int cmd_run(int argc, char **argv, ah_config_t *cfg, sqlite3 *db)
{
    run_t R = {0};
    const char *dataset = NULL, *metric = NULL, *format = "table", *outpath = NULL;
    const char *gateway = NULL, *api_key = getenv("AHORRO_API_KEY"), *scorers = NULL;
    const char *criteria = NULL, *run_id = NULL;
    long limit = 0, conc = 8, timeout_s = 300;
    char err[1200];
    int rc = 1;
    R.mask = AH_EVAL_AUTO;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--pairwise") == 0) {
            R.pairwise = 1;
            takes = 0;
        } else if (strcmp(a, "--retry-failed") == 0) {
            R.retry_failed = 1;
            takes = 0;
        } else if (!val) {
            fprintf(stderr, "ahorro eval: %s needs a value\n", a);
            goto out;
        } else if (strcmp(a, "--dataset") == 0) {
            dataset = val;
        } else if (strcmp(a, "--variant") == 0) {
            if (R.nvars == AH_EVAL_MAX_VARIANTS) {
                fprintf(stderr, "ahorro eval: at most %d variants\n", AH_EVAL_MAX_VARIANTS);
                goto out;
            }
            int fromfile = access(val, R_OK) == 0;
            if (fromfile ? load_variant_file(val, &R.vars[R.nvars], err, sizeof err)
                         : (int)ah_eval_variant_inline(val, &R.vars[R.nvars], err, sizeof err)) {
                fprintf(stderr, "ahorro eval: %s\n", err);
                goto out;
            }
            for (int k = 0; k < R.nvars; k++)
                if (strcmp(R.vars[k].name, R.vars[R.nvars].name) == 0) {
                    fprintf(stderr,
                            "ahorro eval: two variants are named '%s' (give one a name: "
                            "name=...,model=...)\n",
                            R.vars[k].name);
                    R.nvars++;
                    goto out;
                }
            R.nvars++;
        } else if (strcmp(a, "--judge") == 0) {
            R.judge = val;
        } else if (strcmp(a, "--criteria") == 0) {
            criteria = val;
        } else if (strcmp(a, "--scorers") == 0) {
            scorers = val;
        } else if (strcmp(a, "--metric") == 0) {
            metric = val;
        } else if (strcmp(a, "--format") == 0) {
            format = val;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            outpath = val;
        } else if (strcmp(a, "--gateway") == 0) {
            gateway = val;
        } else if (strcmp(a, "--api-key") == 0) {
            api_key = val;
        } else if (strcmp(a, "--run-id") == 0) {
            run_id = val;
        } else if (strcmp(a, "--limit") == 0) {
            if (parse_long_arg(val, 1, AH_EVAL_MAX_ROWS, &limit)) {
                fprintf(stderr, "ahorro eval: --limit must be 1..%d\n", AH_EVAL_MAX_ROWS);
                goto out;
            }
        } else if (strcmp(a, "--concurrency") == 0) {
            if (parse_long_arg(val, 1, EVAL_MAX_CONCURRENCY, &conc)) {
                fprintf(stderr, "ahorro eval: --concurrency must be 1..%d\n", EVAL_MAX_CONCURRENCY);
                goto out;
            }
        } else if (strcmp(a, "--timeout") == 0) {
            if (parse_long_arg(val, 1, 3600, &timeout_s)) {
                fprintf(stderr, "ahorro eval: --timeout must be 1..3600 seconds\n");
                goto out;
            }
        } else {
            fprintf(stderr, "ahorro eval: unknown option '%s'\n", a);
            eval_usage(stderr);
            goto out;
        }
        i += takes;
    }
    if (!dataset || R.nvars == 0) {
        fprintf(stderr, "ahorro eval run: needs --dataset and at least one --variant\n");
        eval_usage(stderr);
        goto out;
    }
    if (strcmp(format, "table") && strcmp(format, "json") && strcmp(format, "html")) {
        fprintf(stderr, "ahorro eval: --format is table, json or html\n");
        goto out;
    }
    if (R.pairwise && (!R.judge || R.nvars < 2)) {
        fprintf(stderr, "ahorro eval: --pairwise needs --judge and at least two variants\n");
        goto out;
    }
    if (criteria && !R.judge) {
        fprintf(stderr, "ahorro eval: --criteria needs --judge\n");
        goto out;
    }
    if (scorers) {
        R.mask = 0;
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", scorers);
        char *save = NULL;
        for (char *s = strtok_r(tmp, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            int k = ah_eval_scorer_by_name(s);
            if (k < 0 || k == AH_EVAL_JUDGE || k == AH_EVAL_PAIRWISE) {
                fprintf(stderr,
                        "ahorro eval: unknown scorer '%s' (exact, normalized, f1, choice, regex, "
                        "json_schema; the judge comes with --judge)\n",
                        s);
                goto out;
            }
            R.mask |= 1u << k;
        }
    }
    if (metric && ah_eval_scorer_by_name(metric) < 0) {
        fprintf(stderr, "ahorro eval: unknown --metric '%s'\n", metric);
        goto out;
    }
    if (criteria) {
        char tmp[AH_JUDGE_MAX_CRITERIA * (AH_JUDGE_MAX_CRITERION + 2)];
        if (strlen(criteria) >= sizeof tmp) {
            fprintf(stderr, "ahorro eval: --criteria is too long\n");
            goto out;
        }
        snprintf(tmp, sizeof tmp, "%s", criteria);
        char *save = NULL;
        for (char *s = strtok_r(tmp, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
            if (R.ncriteria == AH_JUDGE_MAX_CRITERIA || strlen(s) > AH_JUDGE_MAX_CRITERION ||
                strspn(s, "abcdefghijklmnopqrstuvwxyz_") != strlen(s)) {
                fprintf(stderr,
                        "ahorro eval: --criteria takes up to %d names of a-z and _ (at most %d "
                        "characters)\n",
                        AH_JUDGE_MAX_CRITERIA, AH_JUDGE_MAX_CRITERION);
                goto out;
            }
            snprintf(R.critbuf[R.ncriteria], sizeof R.critbuf[0], "%s", s);
            R.criteria[R.ncriteria] = R.critbuf[R.ncriteria];
            R.ncriteria++;
        }
    }
    if (!R.ncriteria) {
        for (int k = 0; k < AH_JUDGE_DEFAULT_N; k++)
            R.criteria[k] = ah_judge_default_criteria[k];
        R.ncriteria = AH_JUDGE_DEFAULT_N;
    }
    if (dataset_load(dataset, limit, &R.ds, err, sizeof err)) {
        fprintf(stderr, "ahorro eval: %s\n", err);
        goto out;
    }
    /* the run: new, or resumed with the same specification */
    char idbuf[80];
    if (!run_id) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(idbuf, sizeof idbuf, "eval-%Y%m%d-%H%M%S", &tm);
        snprintf(idbuf + strlen(idbuf), sizeof idbuf - strlen(idbuf), "-%04x",
                 (unsigned)(ah_now_us() & 0xffff));
        run_id = idbuf;
    } else if (!run_id_ok(run_id)) {
        fprintf(stderr, "ahorro eval: --run-id is 1-%d letters, digits and -_.\n",
                AH_EVAL_MAX_NAME);
        goto out;
    }
    R.id = run_id;
    json_t *spec = json_pack("{s:s,s:I,s:[],s:o,s:[],s:b,s:o,s:I}", "dataset", dataset, "rows",
                             (json_int_t)R.ds.n, "variants", "judge",
                             R.judge ? json_string(R.judge) : json_null(), "criteria", "pairwise",
                             R.pairwise, "metric", metric ? json_string(metric) : json_null(),
                             "scorers", (json_int_t)R.mask);
    for (int v = 0; v < R.nvars; v++) {
        json_t *o = json_deep_copy(R.vars[v].spec);
        json_object_set_new(o, "name", json_string(R.vars[v].name));
        json_array_append_new(json_object_get(spec, "variants"), o);
    }
    for (int k = 0; k < R.ncriteria; k++)
        json_array_append_new(json_object_get(spec, "criteria"), json_string(R.criteria[k]));
    char *spec_txt = json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(spec);
    sqlite3_stmt *st;
    int exists = 0, same = 0;
    if (sqlite3_prepare_v2(db, "SELECT spec FROM eval_runs WHERE id = ?", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            exists = 1;
            same = strcmp((const char *)sqlite3_column_text(st, 0), spec_txt) == 0;
        }
        sqlite3_finalize(st);
    }
    if (exists && !same) {
        fprintf(stderr,
                "ahorro eval: run '%s' exists with another data set, variants or judge; resume it "
                "with the same options, or choose another --run-id\n",
                run_id);
        free(spec_txt);
        goto out;
    }
    if (!exists && sqlite3_prepare_v2(
                       db, "INSERT INTO eval_runs(id, created_ms, dataset, spec) VALUES (?,?,?,?)",
                       -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, ah_wall_ms());
        sqlite3_bind_text(st, 3, dataset, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, spec_txt, -1, SQLITE_STATIC);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    free(spec_txt);
    R.db = db;
    R.res = ah_calloc((size_t)R.nvars * (size_t)R.ds.n, sizeof *R.res);
    load_results(&R);

    /* the gateway: in-process on an ephemeral loopback port, or a running one */
    ah_local_gateway_t lg = {0};
    char base[1100];
    client_t cl = {.timeout_s = timeout_s, .concurrency = (int)conc};
    if (gateway) {
        ah_gateway_base_url(gateway, base, sizeof base);
        cl.auth = api_key;
    } else {
        if (ah_local_gateway_start(cfg, &lg)) {
            fprintf(stderr, "ahorro eval: the gateway cannot start (see the log above)\n");
            goto out;
        }
        snprintf(base, sizeof base, "%s", lg.base);
        cl.auth = cfg->master_key;
    }
    cl.base = base;
    fprintf(stderr, "eval run %s: %ld rows x %d variants through %s\n", run_id, R.ds.n, R.nvars,
            gateway ? base : "the gateway (in-process)");
    long total = (long)R.nvars * R.ds.n;
    cl.what = "answers";
    R.cursor = 0;
    run_calls(&cl, next_answer, done_answer, &R, total);
    if (R.judge) {
        cl.what = "judge";
        R.cursor = 0;
        run_calls(&cl, next_judge, done_judge, &R, total);
    }
    if (R.pairwise) {
        R.pv = ah_calloc((size_t)total * 2, sizeof *R.pv);
        for (long k = 0; k < 2 * total; k++)
            R.pv[k] = PV_PENDING;
        R.pair_cost = ah_calloc((size_t)total, sizeof *R.pair_cost);
        cl.what = "pairwise";
        R.cursor = 0;
        run_calls(&cl, next_pair, done_pair, &R, 2L * (R.nvars - 1) * R.ds.n);
    }
    ah_local_gateway_stop(&lg); /* drains the ledger */
    rc = report_from_db(db, run_id, metric, format, outpath);
    fprintf(stderr, "run %s; again: ahorro eval report %s [--format html -o report.html]\n", run_id,
            run_id);
out:
    if (R.res) {
        for (long k = 0; k < (long)R.nvars * R.ds.n; k++) {
            ah_free(R.res[k].answer);
            json_decref(R.res[k].scores);
        }
        ah_free(R.res);
    }
    ah_free(R.pv);
    ah_free(R.pair_cost);
    for (int v = 0; v < R.nvars; v++)
        ah_eval_variant_free(&R.vars[v]);
    dataset_free(&R.ds);
    return rc;
}

int ah_cli_eval(int argc, char **argv, ah_config_t *cfg)
{
    if (argc < 1 || strcmp(argv[0], "help") == 0 || strcmp(argv[0], "--help") == 0) {
        eval_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    if (!getenv("AHORRO_LOG"))
        ah_log_set_level(AH_LOG_WARN);
    sqlite3 *db;
    if (ah_db_open(cfg->db_path, &db)) {
        fprintf(stderr, "ahorro eval: cannot open the database %s\n", cfg->db_path);
        return 1;
    }
    int rc = 2;
    if (strcmp(argv[0], "run") == 0) {
        rc = cmd_run(argc - 1, argv + 1, cfg, db);
    } else if (strcmp(argv[0], "report") == 0 && argc >= 2) {
        const char *metric = NULL, *format = "table", *outpath = NULL;
        rc = 0;
        for (int i = 2; i < argc && rc == 0; i += 2) {
            if (i + 1 >= argc)
                rc = 2;
            else if (strcmp(argv[i], "--metric") == 0)
                metric = argv[i + 1];
            else if (strcmp(argv[i], "--format") == 0)
                format = argv[i + 1];
            else if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0)
                outpath = argv[i + 1];
            else
                rc = 2;
        }
        if (rc == 0 && metric && ah_eval_scorer_by_name(metric) < 0) {
            fprintf(stderr, "ahorro eval: unknown --metric '%s'\n", metric);
            rc = 2;
        }
        if (rc == 0)
            rc = report_from_db(db, argv[1], metric, format, outpath);
        else
            eval_usage(stderr);
    } else if (strcmp(argv[0], "list") == 0) {
        rc = cmd_list(db, argc > 1 && strcmp(argv[1], "--json") == 0);
    } else {
        eval_usage(stderr);
    }
    sqlite3_close(db);
    return rc;
}
