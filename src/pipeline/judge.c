/* judge.c - stage 9's live judges: a sampled share of a route's answers
 * graded by a judge model after the client has them (docs/experiments.md,
 * "Sampled live judging").
 *
 * The draw: right after attribute (before an experiment's arm replaces the
 * model, so every arm of a judged route is judged alike), the first
 * ahorro.judging entry whose route is the requested model and whose tags
 * hold draws the request with probability `sample` from the worker's rng,
 * and marks it (r->judge). Upstream then keeps the answer, streamed or not
 * (upstream.c gathers it as it does for the cache).
 *
 * The call: once the client has its answer (stage 9), a marked request
 * that succeeded (200, not a cache hit) has its last user message and the
 * answer's text put in quality/score.h's judge prompt. The call is a
 * request of its own through route and upstream, as summary.c's are, with
 * its own ledger row tagged purpose=judge (and the judged request's tags),
 * at temperature 0. At most AH_JUDGE_MAX_INFLIGHT calls per worker are in
 * flight; past that the sample is skipped (counted, logged at debug).
 *
 * The verdict: ah_judge_parse reads it strictly; anything else (an HTTP
 * error, a timeout, an unreadable answer, the gateway stopping) is a
 * failed judgment, with its error and no score. Judgments go to the
 * judgments table (ahorro_judgments with a PostgreSQL ledger) through
 * store/judgments.h's writer thread, never from the event loop. The writer
 * is shared by the workers: the first judgment opens it, and the last
 * worker to stop (ah_judge_worker_stop) drains and closes it. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cache/answer.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/clock.h"
#include "core/json_text.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "pipeline/upstream.h"
#include "quality/judging.h"
#include "quality/score.h"
#include "route/balance.h"
#include "store/judgments.h"

/* Judge calls one worker has in flight at most. */
#define AH_JUDGE_MAX_INFLIGHT 8
/* Bytes of the question and of the answer put in the judge's prompt, each
 * (a longer text is cut at a character boundary). */
#define AH_JUDGE_MAX_TEXT (32u * 1024)
/* The judge's answer cap: one JSON object and a sentence. */
#define AH_JUDGE_MAX_TOKENS 400
/* Bytes of the judge's reason kept, and of an unreadable answer quoted. */
#define AH_JUDGE_MAX_REASON 512
#define AH_JUDGE_MAX_QUOTE 200

typedef struct judge_call judge_call_t;

/* A worker's judges: its calls in flight and its share of the writer. */
struct ah_judging {
    judge_call_t *calls; /* doubly linked, in flight */
    int inflight;
    int stopped;
    uint64_t started, skipped;
};

struct judge_call {
    judge_call_t *prev, *next;
    ah_worker_t *w;
    const ah_judging_cfg_t *jc;
    ah_request_t *sub; /* the judge's request */
    ah_upstream_t *up;
    char request_id[40]; /* the judged request */
    int64_t ts_ms;
};

/* The writer every worker shares: opened by the first judgment, closed by
 * the last worker that opened its judging state. */
static pthread_mutex_t writer_mu = PTHREAD_MUTEX_INITIALIZER;
static ah_judgments_t *writer;
static int writer_refs;
static int writer_failed;

/* --- the draw ------------------------------------------------------------ */

/* The gateway's own calls (a judge, a summary, an offline evaluation's
 * judge) are never judged, nor an offline evaluation's variants: they are
 * graded by the evaluation, and are not live traffic. */
static int internal(const json_t *tags)
{
    const char *p = json_string_value(json_object_get(tags, "purpose"));
    return p && (strcmp(p, "judge") == 0 || strcmp(p, "summary") == 0 || strcmp(p, "eval") == 0 ||
                 strcmp(p, "eval-judge") == 0);
}

void ah_stage_judge_sample(ah_worker_t *w, ah_request_t *r)
{
    const ah_judging_config_t *jc = &w->gw->cfg->judging;
    r->judge = 0;
    if (!jc->n || r->op != AH_OP_CHAT || internal(r->tags))
        return;
    int i = ah_judging_find(jc, r->model, r->tags);
    if (i < 0 || jc->list[i].sample <= 0)
        return;
    if (jc->list[i].sample >= 1 || ah_rand01(&w->rng) < jc->list[i].sample)
        r->judge = i + 1;
}

/* --- the call ------------------------------------------------------------ */

/* This worker's judging state, made at its first judgment; NULL when the
 * worker is stopping or the writer cannot be opened. */
static struct ah_judging *state_of(ah_worker_t *w)
{
    if (w->judging)
        return w->judging->stopped ? NULL : w->judging;
    const ah_config_t *cfg = w->gw->cfg;
    pthread_mutex_lock(&writer_mu);
    /* Judgments live beside the ledger: with PostgreSQL, every instance's
     * in one table, so that experiments and drift count them all. */
    if (!writer && !writer_failed &&
        (cfg->ledger.url ? ah_judgments_open_pg(cfg->ledger.url, cfg->ledger.timeout_ms, &writer)
                         : ah_judgments_open(cfg->db_path, &writer))) {
        writer_failed = 1; /* said once; judging stays off */
        ah_error("judging: cannot open the judgments writer on %s: no answer is judged",
                 cfg->ledger.url ? "PostgreSQL" : cfg->db_path);
    }
    int ok = writer != NULL;
    if (ok)
        writer_refs++;
    pthread_mutex_unlock(&writer_mu);
    if (!ok)
        return NULL;
    w->judging = ah_calloc(1, sizeof *w->judging);
    return w->judging;
}

/* Cut s (ah_malloc'd) to at most max bytes, at a UTF-8 character start. */
static void clip(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    s[max] = '\0';
}

/* Queue the judgment of c: a score with its grades and reason, or (score
 * NAN) a failure with its error. */
static void record_judgment(judge_call_t *c, double score, char *grades, const char *reason,
                            const char *error)
{
    ah_judgment_t *j = ah_calloc(1, sizeof *j);
    j->request_id = ah_strdup(c->request_id);
    j->ts_ms = c->ts_ms;
    j->route = ah_strdup(c->jc->route);
    j->judge = ah_strdup(c->jc->judge);
    j->score = score;
    j->scores = grades;
    j->reason = reason && *reason ? ah_strdup(reason) : NULL;
    j->error = error ? ah_strdup(error) : NULL;
    j->judge_request_id = ah_strdup(c->sub->id);
    if (error)
        ah_info("judging: %s by %s failed: %s", c->request_id, c->jc->judge, error);
    pthread_mutex_lock(&writer_mu);
    ah_judgments_t *q = writer;
    pthread_mutex_unlock(&writer_mu);
    if (!q || ah_judgments_push(q, j) != AH_E_OK) {
        if (!q)
            ah_judgment_free(j);
        ah_warn("judging: the judgment of %s was dropped (the writer's queue is full)",
                c->request_id);
    }
}

/* The call is over: the judge's ledger row, and c is gone. */
static void call_end(judge_call_t *c)
{
    struct ah_judging *js = c->w->judging;
    if (c->prev)
        c->prev->next = c->next;
    else
        js->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    js->inflight--;
    c->sub->t_end_us = ah_now_us();
    ah_pipeline_after(c->w, c->sub); /* its own ledger row */
    ah_request_free(c->sub);
    ah_free(c);
}

static void judge_answer(void *ctx, ah_request_t *sub, const char *raw, size_t len, int same,
                         json_t *canon)
{
    judge_call_t *c = ctx;
    c->up = NULL;
    sub->status = 200;
    ah_request_price(c->w, sub);
    json_t *parsed = canon ? json_incref(canon) : json_loadb(raw, len, 0, NULL);
    json_t *msg = json_object_get(json_array_get(json_object_get(parsed, "choices"), 0), "message");
    char *text = ah_json_join_text(json_object_get(msg, "content"), "\n");
    const char *const *names;
    int n = ah_judging_criteria(c->jc, &names);
    int grades[AH_JUDGE_MAX_CRITERIA];
    char reason[AH_JUDGE_MAX_REASON] = "";
    if (text && ah_judge_parse(text, names, n, grades, reason, sizeof reason) == AH_E_OK) {
        record_judgment(c, ah_judging_score(grades, n), ah_judging_grades_json(names, grades, n),
                        reason, NULL);
    } else {
        char err[AH_JUDGE_MAX_QUOTE + 64];
        if (text)
            clip(text, AH_JUDGE_MAX_QUOTE);
        snprintf(err, sizeof err, "the judge's answer is not a verdict: %s",
                 text && *text ? text : "(no text)");
        record_judgment(c, NAN, NULL, NULL, err);
    }
    ah_free(text);
    json_decref(parsed);
    call_end(c);
}

static void judge_failed(void *ctx, ah_request_t *sub)
{
    judge_call_t *c = ctx;
    c->up = NULL;
    sub->status = sub->fail.status ? sub->fail.status : 502;
    char err[600];
    snprintf(err, sizeof err, "HTTP %d: %s", sub->status, sub->fail.message);
    record_judgment(c, NAN, NULL, NULL, err);
    call_end(c);
}

static const ah_sink_ops_t judge_sink = {.answer = judge_answer, .failed = judge_failed};

/* The judge's request: the rubric prompt, at temperature 0, attributed to
 * the judged request's caller and tags. */
static ah_request_t *judge_request(const ah_request_t *r, const ah_judging_cfg_t *jc,
                                   const char *prompt, size_t plen)
{
    ah_request_t *sub = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    sub->t_start_us = ah_now_us();
    sub->wall_ms = ah_wall_ms();
    sub->peer = ah_arena_strdup(&sub->arena, r->peer ? r->peer : "");
    sub->key_id = r->key_id ? ah_arena_strdup(&sub->arena, r->key_id) : NULL;
    sub->owner = r->owner ? ah_arena_strdup(&sub->arena, r->owner) : NULL;
    sub->user = r->user ? ah_arena_strdup(&sub->arena, r->user) : NULL;
    sub->tags = r->tags ? json_deep_copy(r->tags) : json_object();
    json_object_set_new(sub->tags, "purpose", json_string("judge"));
    json_object_set_new(sub->tags, "judge_for", json_string(r->id));
    sub->model = ah_arena_strdup(&sub->arena, jc->judge);
    sub->body = json_pack("{s:s,s:[{s:s,s:s%}],s:I,s:f}", "model", jc->judge, "messages", "role",
                          "user", "content", prompt, plen, "max_tokens",
                          (json_int_t)AH_JUDGE_MAX_TOKENS, "temperature", 0.0);
    sub->raw = json_incref(sub->body);
    return sub;
}

void ah_stage_judge(ah_worker_t *w, ah_request_t *r)
{
    if (!r->judge || r->status != 200 || r->fail.status || r->cache_hit || !r->answer ||
        r->judge > (int)w->gw->cfg->judging.n)
        return;
    const ah_judging_cfg_t *jc = &w->gw->cfg->judging.list[r->judge - 1];
    struct ah_judging *js = state_of(w);
    if (!js)
        return;
    if (js->inflight >= AH_JUDGE_MAX_INFLIGHT) {
        js->skipped++;
        ah_debug("judging: %s not judged: %d judge calls in flight on worker %d (%llu skipped)",
                 r->id, js->inflight, w->index, (unsigned long long)js->skipped);
        return;
    }
    json_t *msg =
        json_object_get(json_array_get(json_object_get(r->answer, "choices"), 0), "message");
    char *answer = ah_json_join_text(json_object_get(msg, "content"), "\n");
    if (!answer || !*answer) { /* a tool call alone: nothing to grade */
        ah_debug("judging: %s not judged: the answer has no text", r->id);
        ah_free(answer);
        return;
    }
    char *question = ah_answer_last_user_text(r->body);
    if (!question)
        question = ah_strdup("");
    clip(question, AH_JUDGE_MAX_TEXT);
    clip(answer, AH_JUDGE_MAX_TEXT);
    const char *const *names;
    int n = ah_judging_criteria(jc, &names);
    ah_buf_t prompt;
    ah_buf_init(&prompt, AH_JUDGE_MAX_PROMPT);
    ah_err_t rc = ah_judge_prompt(names, n, question, answer, NULL, &prompt);
    ah_free(question);
    ah_free(answer);
    if (rc) {
        ah_warn("judging: %s: cannot build the judge's prompt (%s)", r->id, ah_strerror(rc));
        ah_buf_free(&prompt);
        return;
    }
    judge_call_t *c = ah_calloc(1, sizeof *c);
    c->w = w;
    c->jc = jc;
    c->ts_ms = r->wall_ms;
    snprintf(c->request_id, sizeof c->request_id, "%s", r->id);
    c->sub = judge_request(r, jc, prompt.data, prompt.len);
    ah_buf_free(&prompt);
    c->next = js->calls;
    if (js->calls)
        js->calls->prev = c;
    js->calls = c;
    js->inflight++;
    js->started++;
    if (ah_stage_route(w, c->sub) || ah_upstream_start(w, c->sub, &judge_sink, c, &c->up)) {
        c->sub->status = c->sub->fail.status ? c->sub->fail.status : 502;
        char err[600];
        snprintf(err, sizeof err, "cannot start the judge's call: %s", c->sub->fail.message);
        record_judgment(c, NAN, NULL, NULL, err);
        call_end(c);
    }
}

void ah_judge_worker_stop(ah_worker_t *w)
{
    struct ah_judging *js = w->judging;
    if (!js)
        return;
    js->stopped = 1;
    while (js->calls) {
        judge_call_t *c = js->calls;
        ah_upstream_cancel(c->up);
        c->up = NULL;
        c->sub->status = 499;
        ah_request_fail(c->sub, 499, NULL, "client_closed", NULL,
                        "the gateway stopped before the judge answered");
        record_judgment(c, NAN, NULL, NULL, "the gateway stopped before the judge answered");
        call_end(c);
    }
    if (js->skipped)
        ah_info("judging: worker %d judged %llu answers and skipped %llu samples (at most %d "
                "judge calls in flight)",
                w->index, (unsigned long long)js->started, (unsigned long long)js->skipped,
                AH_JUDGE_MAX_INFLIGHT);
    ah_free(js);
    w->judging = NULL;
    ah_judgments_t *closing = NULL;
    pthread_mutex_lock(&writer_mu);
    if (--writer_refs == 0) {
        closing = writer;
        writer = NULL;
    }
    pthread_mutex_unlock(&writer_mu);
    ah_judgments_close(closing); /* the last worker: writes what is queued */
}
