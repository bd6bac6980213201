/* summary.c - stage 4's summaries: older turns replaced by what a cheap
 * model wrote about them, paid for once per conversation.
 *
 * When a request's strategy is summarize, the engine (shape/shape.h) takes
 * the turns that do not fit out of the body and hands them here. A summary
 * of exactly those messages (same tenant, same summarizer) may be cached:
 * then it goes in at once. Otherwise the longest cached summary of a prefix
 * of them is extended with the rest (a growing conversation pays only for
 * its new turns), or, with none, all of them are summarized. The summary
 * call is a request of its own through route and upstream, with its own
 * ledger row (tagged purpose=summary); the request waits for it. If it
 * fails, the request goes on without a summary, trimmed as sliding_window
 * would have.
 *
 * Cache: direct-mapped, AH_SUMMARY_SLOTS slots shared by every worker under
 * one mutex, each slot one key (64-bit hash of tenant, summarizer and the
 * messages), its tenant (compared as well, so no collision ever hands one
 * tenant's summary to another) and its text. Two keys in one slot: the newer
 * wins, and at worst a summary is paid for again. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/json_text.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "pipeline/upstream.h"
#include "shape/shape.h"
#include "tokenize/bpe.h"

#define AH_SUMMARY_SLOTS 4096
/* Longest transcript sent to the summarizer, in bytes (the most recent
 * part of what is summarized is kept). */
#define AH_SUMMARY_MAX_TRANSCRIPT (256u * 1024)
/* Longest summary kept, in bytes. */
#define AH_SUMMARY_MAX_BYTES (32u * 1024)

typedef struct slot {
    uint64_t key;
    char *tenant; /* compared too: a hash collision never crosses tenants */
    char *text;
} slot_t;

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static slot_t cache[AH_SUMMARY_SLOTS];

/* A copy of the cached summary of key for tenant (ah_free), or NULL. */
static char *cache_get(uint64_t key, const char *tenant)
{
    char *out = NULL;
    pthread_mutex_lock(&cache_mu);
    slot_t *s = &cache[key % AH_SUMMARY_SLOTS];
    if (s->text && s->key == key && strcmp(s->tenant, tenant) == 0)
        out = ah_strdup(s->text);
    pthread_mutex_unlock(&cache_mu);
    return out;
}

static void cache_put(uint64_t key, const char *tenant, const char *text)
{
    char *copy = ah_strdup(text), *who = ah_strdup(tenant), *old, *old_who;
    pthread_mutex_lock(&cache_mu);
    slot_t *s = &cache[key % AH_SUMMARY_SLOTS];
    old = s->text;
    old_who = s->tenant;
    s->key = key;
    s->text = copy;
    s->tenant = who;
    pthread_mutex_unlock(&cache_mu);
    ah_free(old);
    ah_free(old_who);
}

void ah_summary_cache_clear(void)
{
    pthread_mutex_lock(&cache_mu);
    for (size_t i = 0; i < AH_SUMMARY_SLOTS; i++) {
        ah_free(cache[i].text);
        ah_free(cache[i].tenant);
        cache[i].text = cache[i].tenant = NULL;
    }
    pthread_mutex_unlock(&cache_mu);
}

/* One message as a transcript line: "role: text", tool calls named. */
static void transcript_line(ah_buf_t *b, json_t *m)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    char *text = ah_json_join_text(json_object_get(m, "content"), "\n");
    ah_buf_printf(b, "%s: %s", role ? role : "?", text ? text : "");
    ah_free(text);
    size_t i;
    json_t *tc;
    json_array_foreach(json_object_get(m, "tool_calls"), i, tc)
    {
        json_t *fn = json_object_get(tc, "function");
        ah_buf_printf(b, " [calls %s(%s)]",
                      json_string_value(json_object_get(fn, "name"))
                          ? json_string_value(json_object_get(fn, "name"))
                          : "?",
                      json_string_value(json_object_get(fn, "arguments"))
                          ? json_string_value(json_object_get(fn, "arguments"))
                          : "");
    }
    ah_buf_appends(b, "\n");
}

struct ah_summary {
    ah_worker_t *w;
    ah_request_t *r;   /* the request waiting */
    ah_request_t *sub; /* the summary call */
    ah_upstream_t *up;
    uint64_t key;
    const char *tenant; /* r's arena */
    ah_summary_done_fn done;
    void *ctx;
};

/* Put the summary (or nothing) in; what it costs in prompt tokens comes
 * off what shaping saved. */
static void insert(ah_worker_t *w, ah_request_t *r, const char *text)
{
    json_t *msgs = json_object_get(r->body, "messages");
    if (text && *text) {
        size_t n = strlen(text);
        ah_buf_t b;
        ah_buf_init(&b, AH_SUMMARY_MAX_BYTES + 64);
        ah_buf_appends(&b, "Summary of the earlier conversation:\n");
        ah_buf_append(&b, text, n < AH_SUMMARY_MAX_BYTES ? n : AH_SUMMARY_MAX_BYTES);
        size_t at = r->summary_at <= json_array_size(msgs) ? r->summary_at : 0;
        json_array_insert_new(msgs, at,
                              json_pack("{s:s,s:s%}", "role", "system", "content", b.data, b.len));
        size_t tokens = b.len / 4;
        if (w->gw->bpe_o200k)
            ah_bpe_count(w->gw->bpe_o200k, b.data, b.len, 0, &tokens);
        r->shape_tokens_saved -= (long)tokens + 4; /* a message's overhead */
        if (r->shape_tokens_saved < 0)
            r->shape_tokens_saved = 0;
        ah_buf_free(&b);
    }
    json_decref(r->summarized);
    r->summarized = NULL;
}

/* The summary is in (or not): say how in x-ahorro-shape, stop waiting. */
static void settled(ah_request_t *r, const char *how)
{
    size_t n = strlen(r->shape_done ? r->shape_done : "") + strlen(how) + 2;
    char *d = ah_arena_alloc(&r->arena, n);
    snprintf(d, n, "%s%s%s", r->shape_done ? r->shape_done : "", r->shape_done ? "," : "", how);
    r->shape_done = d;
    r->shape_pending = 0;
}

static void finish(ah_summary_t *s, const char *text, const char *how)
{
    ah_request_t *r = s->r;
    insert(s->w, r, text);
    settled(r, how);
    if (s->sub) {
        s->sub->t_end_us = ah_now_us();
        ah_pipeline_after(s->w, s->sub); /* its own ledger row */
        ah_request_free(s->sub);
    }
    ah_summary_done_fn done = s->done;
    void *ctx = s->ctx;
    ah_free(s);
    done(ctx, r);
}

static void sum_answer(void *ctx, ah_request_t *sub, const char *raw, size_t len, int same,
                       json_t *canon)
{
    ah_summary_t *s = ctx;
    s->up = NULL;
    sub->status = 200;
    ah_request_price(s->w, sub);
    json_t *parsed = canon ? json_incref(canon) : json_loadb(raw, len, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(parsed, "choices"), 0), "message");
    const char *text = json_string_value(json_object_get(msg, "content"));
    if (text && *text) {
        cache_put(s->key, s->tenant, text);
        /* the summary is paid by the request it serves */
        if (sub->cost_known)
            s->r->summary_cost_usd += sub->cost_usd;
        finish(s, text, "summary");
    } else {
        finish(s, NULL, "summary_failed");
    }
    json_decref(parsed);
}

static void sum_failed(void *ctx, ah_request_t *sub)
{
    ah_summary_t *s = ctx;
    s->up = NULL;
    sub->status = sub->fail.status ? sub->fail.status : 502;
    ah_warn("shaping: summary by %s failed (%d): %s; request %s goes on without it", sub->model,
            sub->status, sub->fail.message, s->r->id);
    finish(s, NULL, "summary_failed");
}

static const ah_sink_ops_t sum_sink = {.answer = sum_answer, .failed = sum_failed};

int ah_summary_start(ah_worker_t *w, ah_request_t *r, const char *summarizer, long max_tokens,
                     ah_summary_done_fn done, void *ctx, ah_summary_t **out)
{
    *out = NULL;
    json_t *gone = r->summarized;
    size_t n = json_array_size(gone);
    const char *tenant = r->owner ? r->owner : (r->key_id ? r->key_id : "");
    /* keys of every prefix: the longest one cached is where to start */
    uint64_t *keys = ah_malloc((n + 1) * sizeof *keys);
    uint64_t h = ah_fnv1a(AH_FNV_OFFSET, tenant, strlen(tenant) + 1);
    h = ah_fnv1a(h, summarizer, strlen(summarizer) + 1);
    for (size_t i = 0; i < n; i++) {
        char *t = json_dumps(json_array_get(gone, i), JSON_COMPACT | JSON_SORT_KEYS);
        h = ah_fnv1a(h, t ? t : "", t ? strlen(t) + 1 : 0);
        free(t);
        keys[i] = h;
    }
    char *prev = NULL;
    size_t from = 0;
    for (size_t i = n; i-- > 0 && !prev;)
        if ((prev = cache_get(keys[i], tenant)))
            from = i + 1;
    uint64_t key = n ? keys[n - 1] : 0;
    ah_free(keys);
    if (prev && from == n) {
        insert(w, r, prev);
        ah_free(prev);
        settled(r, "summary_cached");
        return 0; /* nothing to wait for */
    }
    /* the call: instructions, then the transcript of what is new */
    ah_buf_t b;
    ah_buf_init(&b, AH_SUMMARY_MAX_TRANSCRIPT);
    ah_buf_t lines;
    ah_buf_init(&lines, 64u * 1024 * 1024);
    for (size_t i = from; i < n; i++)
        transcript_line(&lines, json_array_get(gone, i));
    const char *tr = lines.data ? lines.data : "";
    size_t trl = lines.len;
    if (trl > AH_SUMMARY_MAX_TRANSCRIPT - 4096) { /* keep the most recent part */
        tr += trl - (AH_SUMMARY_MAX_TRANSCRIPT - 4096);
        trl = AH_SUMMARY_MAX_TRANSCRIPT - 4096;
    }
    if (prev)
        ah_buf_printf(&b, "Summary so far:\n%s\n\nNew turns:\n", prev);
    ah_buf_append(&b, tr, trl);
    ah_free(prev);
    ah_buf_free(&lines);
    char instr[512];
    snprintf(instr, sizeof instr,
             "You %s a summary of a conversation for an assistant that will continue it. Keep "
             "every fact, number, name, decision and open question the user may refer to later. "
             "Write plain prose of at most %ld words, nothing else.",
             from ? "update" : "write", max_tokens * 3 / 4);
    ah_request_t *sub = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    sub->t_start_us = ah_now_us();
    sub->wall_ms = ah_wall_ms();
    sub->peer = ah_arena_strdup(&sub->arena, r->peer ? r->peer : "");
    sub->key_id = r->key_id ? ah_arena_strdup(&sub->arena, r->key_id) : NULL;
    sub->owner = r->owner ? ah_arena_strdup(&sub->arena, r->owner) : NULL;
    sub->user = r->user ? ah_arena_strdup(&sub->arena, r->user) : NULL;
    sub->tags = r->tags ? json_deep_copy(r->tags) : json_object();
    json_object_set_new(sub->tags, "purpose", json_string("summary"));
    json_object_set_new(sub->tags, "summary_for", json_string(r->id));
    sub->model = ah_arena_strdup(&sub->arena, summarizer);
    sub->body =
        json_pack("{s:s,s:[{s:s,s:s},{s:s,s:s%}],s:I,s:f}", "model", summarizer, "messages", "role",
                  "system", "content", instr, "role", "user", "content", b.data ? b.data : "",
                  b.len, "max_tokens", (json_int_t)max_tokens, "temperature", 0.0);
    ah_buf_free(&b);
    sub->raw = json_incref(sub->body);
    ah_summary_t *s = ah_calloc(1, sizeof *s);
    *s = (ah_summary_t){.w = w,
                        .r = r,
                        .sub = sub,
                        .key = key,
                        .tenant = ah_arena_strdup(&r->arena, tenant),
                        .done = done,
                        .ctx = ctx};
    if (ah_stage_route(w, sub) || ah_upstream_start(w, sub, &sum_sink, s, &s->up)) {
        sub->status = sub->fail.status ? sub->fail.status : 502;
        ah_warn("shaping: summary by %s cannot start: %s", summarizer, sub->fail.message);
        sub->t_end_us = ah_now_us();
        ah_pipeline_after(w, sub);
        ah_request_free(sub);
        ah_free(s);
        insert(w, r, NULL);
        settled(r, "summary_failed");
        return 0;
    }
    *out = s;
    return 1;
}

void ah_summary_cancel(ah_summary_t *s)
{
    if (!s)
        return;
    ah_upstream_cancel(s->up);
    s->sub->status = 499;
    ah_request_fail(s->sub, 499, NULL, "client_closed", NULL,
                    "the request the summary was for went away");
    s->sub->t_end_us = ah_now_us();
    ah_pipeline_after(s->w, s->sub);
    ah_request_free(s->sub);
    json_decref(s->r->summarized);
    s->r->summarized = NULL;
    ah_free(s);
}
