/* shape.c - a chat request made smaller before it is sent (see shape.h). */
#include "shape/shape.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/json_text.h"
#include "shape/compress.h"
#include "shape/select.h"
#include "tokenize/chat.h"

/* Per-message overhead ah_chat_tokens adds for the reply's priming. */
#define PRIMING_TOKENS 3

/* A unit of the conversation that goes or stays whole: a message, or an
 * assistant's tool calls with their results. */
typedef struct unit {
    size_t first, count; /* messages[first .. first+count) */
    int turn;            /* user turns before it (the first user message opens turn 1) */
    long tokens;         /* its messages' tokens, unscaled */
    int pinned;          /* system: never dropped */
    int opens;           /* a user message: it opens its turn */
    int dropped;
    double score; /* token_budget: relevance to the question */
} unit_t;

static void note(ah_shape_result_t *out, const char *what)
{
    size_t n = strlen(out->done);
    if (strstr(out->done, what))
        return;
    snprintf(out->done + n, sizeof out->done - n, "%s%s", n ? "," : "", what);
}

static const char *role_of(const json_t *m)
{
    const char *r = json_string_value(json_object_get(m, "role"));
    return r ? r : "";
}

static int is_system(const json_t *m)
{
    const char *r = role_of(m);
    return strcmp(r, "system") == 0 || strcmp(r, "developer") == 0;
}

/* Tokens of one message as ah_chat_tokens counts it inside a body. */
static long message_tokens(const ah_bpe_t *enc, json_t *one, json_t *m)
{
    json_array_set(json_object_get(one, "messages"), 0, m);
    ah_chat_count_t c;
    if (ah_chat_tokens(enc, one, &c))
        return 0;
    return (long)c.total - PRIMING_TOKENS;
}

/* The model the prompt is counted for, with env's factor. */
static ah_chat_model_t counted_model(const ah_shape_env_t *env)
{
    ah_chat_model_t cm = env->model;
    cm.factor = env->factor > 0 ? env->factor : 1;
    return cm;
}

long ah_shape_count(const ah_shape_env_t *env, const json_t *body)
{
    ah_chat_model_t cm = counted_model(env);
    int64_t n;
    if (!env->enc || ah_chat_estimate(env->enc, body, &cm, &n, NULL))
        return -1;
    return (long)n;
}

/* ---- texts inside messages ---- */

typedef ah_err_t (*text_fn)(const char *in, size_t len, ah_buf_t *out, void *ctx);

/* Replace each text of message m (string content, or text parts) by fn's
 * output. Returns whether anything changed. */
static int map_texts(json_t *m, text_fn fn, void *ctx)
{
    json_t *content = json_object_get(m, "content");
    int changed = 0;
    ah_buf_t b;
    ah_buf_init(&b, AH_SHAPE_MAX_TEXT_BYTES);
    if (json_is_string(content)) {
        if (fn(json_string_value(content), json_string_length(content), &b, ctx) == AH_E_OK &&
            (b.len != json_string_length(content) ||
             memcmp(b.data ? b.data : "", json_string_value(content), b.len))) {
            json_object_set_new(m, "content", json_stringn(b.data ? b.data : "", b.len));
            changed = 1;
        }
    } else if (json_is_array(content)) {
        size_t i;
        json_t *part;
        json_array_foreach(content, i, part)
        {
            json_t *t = json_object_get(part, "text");
            if (!json_is_string(t))
                continue;
            ah_buf_reset(&b);
            if (fn(json_string_value(t), json_string_length(t), &b, ctx) == AH_E_OK &&
                (b.len != json_string_length(t) ||
                 memcmp(b.data ? b.data : "", json_string_value(t), b.len))) {
                json_object_set_new(part, "text", json_stringn(b.data ? b.data : "", b.len));
                changed = 1;
            }
        }
    }
    ah_buf_free(&b);
    return changed;
}

static ah_err_t lossless_fn(const char *in, size_t len, ah_buf_t *out, void *ctx)
{
    (void)ctx;
    return ah_compress_lossless(in, len, out, NULL);
}

typedef struct lossy_ctx {
    const char *question;
    double ratio;
    const ah_bpe_t *enc;
} lossy_ctx_t;

static ah_err_t lossy_fn(const char *in, size_t len, ah_buf_t *out, void *ctx)
{
    lossy_ctx_t *c = ctx;
    if (len < AH_SHAPE_LOSSY_MIN_BYTES)
        return ah_buf_append(out, in, len);
    return ah_compress_lossy(in, len, c->question, c->ratio, c->enc, out, NULL);
}

/* Index of the last user message, or -1. */
static long last_user(json_t *msgs)
{
    for (size_t i = json_array_size(msgs); i-- > 0;)
        if (strcmp(role_of(json_array_get(msgs, i)), "user") == 0)
            return (long)i;
    return -1;
}

/* The question: the last user message's last text (its last text part). */
static char *question_of(json_t *msgs)
{
    long lu = last_user(msgs);
    if (lu < 0)
        return ah_strdup("");
    json_t *content = json_object_get(json_array_get(msgs, (size_t)lu), "content");
    if (json_is_array(content)) {
        for (size_t i = json_array_size(content); i-- > 0;) {
            json_t *t = json_object_get(json_array_get(content, i), "text");
            if (json_is_string(t))
                return ah_strdup(json_string_value(t));
        }
        return ah_strdup("");
    }
    return ah_json_join_text(content, "\n");
}

/* ---- 1 retrieval ---- */

static double cosine(const float *a, const float *b, int dim)
{
    double dot = 0, na = 0, nb = 0;
    for (int i = 0; i < dim; i++) {
        dot += (double)a[i] * b[i];
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
}

/* Dense scores of chunks against question when the policy blends them in
 * and an embedder is loaded: *dense filled and returned, its cosines the
 * caller's to free (*cos); NULL (BM25 alone) otherwise. */
static const ah_select_dense_t *dense_scores(const ah_chunk_t *chunks, size_t n,
                                             const char *question, const ah_shape_policy_t *p,
                                             const ah_shape_env_t *env, ah_select_dense_t *dense,
                                             float **cos)
{
    *cos = NULL;
    if (!env->embedder || !(p->dense_weight > 0) || n == 0)
        return NULL;
    int dim = env->embedder->dim;
    float *qv = ah_malloc((size_t)dim * sizeof *qv), *cv = ah_malloc((size_t)dim * sizeof *cv);
    const ah_select_dense_t *dp = NULL;
    if (ah_embed(env->embedder, question, strlen(question), qv) == AH_E_OK) {
        *cos = ah_malloc(n * sizeof **cos);
        for (size_t i = 0; i < n; i++)
            (*cos)[i] = ah_embed(env->embedder, chunks[i].text, chunks[i].len, cv) == AH_E_OK
                            ? (float)cosine(qv, cv, dim)
                            : 0;
        *dense = (ah_select_dense_t){.cosine = *cos, .weight = p->dense_weight};
        dp = dense;
    }
    ah_free(qv);
    ah_free(cv);
    return dp;
}

/* keep[] for chunks under policy p: the top_k by relevance to question. */
static ah_err_t choose_chunks(const ah_chunk_t *chunks, size_t n, const char *question,
                              const ah_shape_policy_t *p, const ah_shape_env_t *env,
                              unsigned char *keep, size_t *kept)
{
    ah_select_dense_t dense;
    float *cos;
    const ah_select_dense_t *dp = dense_scores(chunks, n, question, p, env, &dense, &cos);
    ah_err_t rc =
        ah_select_top_k(chunks, n, question, strlen(question), (size_t)p->top_k, dp, keep, kept);
    ah_free(cos);
    return rc;
}

static long scaled(const ah_shape_env_t *env, long tokens)
{
    return (long)ceil((double)tokens * (env->factor > 0 ? env->factor : 1));
}

/* The chunks (those keep marks; NULL: all) as one documents block. */
static ah_err_t render_chunks(const ah_chunk_t *chunks, size_t n, const unsigned char *keep,
                              ah_buf_t *b)
{
    ah_err_t rc = ah_buf_appends(b, "<documents>\n");
    for (size_t i = 0, shown = 0; i < n && !rc; i++) {
        if (keep && !keep[i])
            continue;
        if (!(rc = ah_buf_printf(b, "<document index=\"%zu\">\n", ++shown)) &&
            !(rc = ah_buf_append(b, chunks[i].text, chunks[i].len)))
            rc = ah_buf_appends(b, "\n</document>\n");
    }
    return rc ? rc : ah_buf_appends(b, "</documents>");
}

/* The body's `context` array: kept chunks rendered as one system message
 * after the leading system messages; the field itself is removed. */
static ah_err_t context_field(json_t *body, json_t *msgs, const ah_shape_policy_t *p,
                              const ah_shape_env_t *env, const char *question,
                              ah_shape_result_t *out, long *docs_at, char *err, size_t errlen)
{
    json_t *ctx = json_object_get(body, "context");
    if (!ctx)
        return AH_E_OK;
    size_t n = json_array_size(ctx);
    if (!json_is_array(ctx) || n > AH_SHAPE_MAX_CHUNKS) {
        snprintf(err, errlen,
                 "'context' must be an array of at most %d strings or {\"text\": ...} objects",
                 AH_SHAPE_MAX_CHUNKS);
        return AH_E_INVAL;
    }
    ah_chunk_t *chunks = ah_calloc(n ? n : 1, sizeof *chunks);
    unsigned char *keep = ah_calloc(n ? n : 1, 1);
    ah_err_t rc = AH_E_OK;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(ctx, i);
        json_t *t = json_is_string(c) ? c : json_object_get(c, "text");
        if (!json_is_string(t)) {
            snprintf(err, errlen,
                     "context[%zu] must be a string or an object with a \"text\" string", i);
            rc = AH_E_INVAL;
            goto out;
        }
        chunks[i] = (ah_chunk_t){json_string_value(t), json_string_length(t)};
        keep[i] = 1;
    }
    size_t kept = n;
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        if ((rc = choose_chunks(chunks, n, question, p, env, keep, &kept))) {
            snprintf(err, errlen, "'context' could not be ranked: %s", ah_strerror(rc));
            rc = AH_E_INVAL;
            goto out;
        }
        out->chunks_dropped += (int)(n - kept);
        note(out, "top_k");
    }
    ah_buf_t b;
    ah_buf_init(&b, AH_SHAPE_MAX_TEXT_BYTES);
    /* what the client would have been billed for: every chunk as sent */
    rc = render_chunks(chunks, n, NULL, &b);
    size_t all = 0;
    if (rc == AH_E_OK && env->enc && ah_bpe_count(env->enc, b.data, b.len, 0, &all) == AH_E_OK)
        out->tokens_before += scaled(env, (long)all + 4);
    ah_buf_reset(&b);
    /* lossy on each kept chunk (the document tags around them stay) */
    char **cut = ah_calloc(n ? n : 1, sizeof *cut);
    if (rc == AH_E_OK && p->lossy_ratio > 0 && p->lossy_ratio < 1 && env->enc) {
        for (size_t i = 0; i < n; i++) {
            if (!keep[i] || chunks[i].len < AH_SHAPE_LOSSY_MIN_BYTES)
                continue;
            ah_buf_t c;
            ah_buf_init(&c, AH_SHAPE_MAX_TEXT_BYTES);
            if (ah_compress_lossy(chunks[i].text, chunks[i].len, question, p->lossy_ratio, env->enc,
                                  &c, NULL) == AH_E_OK &&
                c.len < chunks[i].len) {
                cut[i] = ah_buf_steal(&c, &chunks[i].len);
                chunks[i].text = cut[i];
                note(out, "lossy");
            }
            ah_buf_free(&c);
        }
    }
    if (rc == AH_E_OK)
        rc = render_chunks(chunks, n, keep, &b);
    for (size_t i = 0; i < n; i++)
        ah_free(cut[i]);
    ah_free(cut);
    if (rc) {
        ah_buf_free(&b);
        snprintf(err, errlen, "'context' is over %u bytes", AH_SHAPE_MAX_TEXT_BYTES);
        rc = AH_E_INVAL;
        goto out;
    }
    size_t at = 0;
    while (at < json_array_size(msgs) && is_system(json_array_get(msgs, at)))
        at++;
    if (kept) {
        json_array_insert_new(msgs, at,
                              json_pack("{s:s,s:s%}", "role", "system", "content", b.data, b.len));
        *docs_at = (long)at;
    }
    ah_buf_free(&b);
    json_object_del(body, "context");
    out->changed = 1;
out:
    ah_free(chunks);
    ah_free(keep);
    return rc;
}

/* Text parts before the question in the last user message are chunks. */
static ah_err_t context_parts(json_t *msgs, const ah_shape_policy_t *p, const ah_shape_env_t *env,
                              const char *question, ah_shape_result_t *out)
{
    long lu = last_user(msgs);
    if (lu < 0 || p->top_k <= 0)
        return AH_E_OK;
    json_t *content = json_object_get(json_array_get(msgs, (size_t)lu), "content");
    size_t np = json_array_size(content);
    if (!json_is_array(content) || np < 3 || np > AH_SHAPE_MAX_CHUNKS)
        return AH_E_OK;
    /* every part but the last must be text for this reading to hold */
    for (size_t i = 0; i < np; i++)
        if (!json_is_string(json_object_get(json_array_get(content, i), "text")))
            return AH_E_OK;
    size_t n = np - 1;
    if ((size_t)p->top_k >= n)
        return AH_E_OK;
    ah_chunk_t *chunks = ah_calloc(n, sizeof *chunks);
    unsigned char *keep = ah_calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_object_get(json_array_get(content, i), "text");
        chunks[i] = (ah_chunk_t){json_string_value(t), json_string_length(t)};
    }
    size_t kept = 0;
    ah_err_t rc = choose_chunks(chunks, n, question, p, env, keep, &kept);
    if (rc == AH_E_OK) {
        for (size_t i = n; i-- > 0;)
            if (!keep[i])
                json_array_remove(content, i);
        out->chunks_dropped += (int)(n - kept);
        out->changed = 1;
        note(out, "top_k");
    }
    ah_free(chunks);
    ah_free(keep);
    return AH_E_OK;
}

/* ---- 4 window ---- */

/* Split msgs into units; returns their number (units[] has room for all). */
static size_t make_units(json_t *msgs, unit_t *units)
{
    size_t n = json_array_size(msgs), nu = 0;
    int turn = 0;
    for (size_t i = 0; i < n;) {
        json_t *m = json_array_get(msgs, i);
        const char *role = role_of(m);
        unit_t *u = &units[nu++];
        *u = (unit_t){.first = i, .count = 1};
        if (is_system(m)) {
            u->pinned = 1;
        } else if (strcmp(role, "user") == 0) {
            turn++;
            u->opens = 1;
        } else if (strcmp(role, "assistant") == 0 &&
                   (json_array_size(json_object_get(m, "tool_calls")) ||
                    json_object_get(m, "function_call"))) {
            /* the results that answer these calls travel with them */
            while (i + u->count < n) {
                const char *next = role_of(json_array_get(msgs, i + u->count));
                if (strcmp(next, "tool") && strcmp(next, "function"))
                    break;
                u->count++;
            }
        }
        u->turn = turn;
        i += u->count;
    }
    return nu;
}

static long live_total(const unit_t *units, size_t nu, long base)
{
    long t = base;
    for (size_t i = 0; i < nu; i++)
        if (!units[i].dropped)
            t += units[i].tokens;
    return t;
}

/* Drop units until the scaled total is at most target. Order: whole turns
 * before the latest, oldest first (sliding) or least relevant first
 * (token_budget); then, inside the latest turn, its oldest units but the
 * user message that opens it and the last unit. 0 when it fits. */
static int trim(unit_t *units, size_t nu, long base, long target, int by_relevance, int inner,
                const ah_shape_env_t *env)
{
    int last_turn = 0;
    for (size_t i = 0; i < nu; i++)
        if (units[i].turn > last_turn)
            last_turn = units[i].turn;
    for (;;) {
        if (scaled(env, live_total(units, nu, base)) <= target)
            return 0;
        long pick = -1;
        for (size_t i = 0; i < nu; i++) {
            const unit_t *u = &units[i];
            if (u->pinned || u->dropped || u->turn >= last_turn)
                continue;
            if (pick < 0 || (by_relevance && u->score < units[pick].score))
                pick = (long)i;
            if (!by_relevance)
                break;
        }
        if (pick < 0 && inner) {
            /* the latest turn: its oldest units, keeping what opens and ends it */
            long lastu = -1;
            for (size_t i = 0; i < nu; i++)
                if (!units[i].pinned && !units[i].dropped)
                    lastu = (long)i;
            for (size_t i = 0; i < nu && pick < 0; i++) {
                const unit_t *u = &units[i];
                if (u->pinned || u->dropped || (long)i == lastu || u->opens)
                    continue;
                pick = (long)i;
            }
        }
        if (pick < 0)
            return -1;
        if (units[pick].turn < last_turn) {
            /* a whole earlier turn goes: what remains still alternates */
            for (size_t i = 0; i < nu; i++)
                if (!units[i].pinned && units[i].turn == units[pick].turn)
                    units[i].dropped = 1;
        } else {
            units[pick].dropped = 1;
        }
    }
}

/* trim_to for the sliding window, without state: the history is cut only at
 * turn boundaries fixed by the history itself (the first boundary after
 * each multiple of `step` tokens from its start), at the earliest one that
 * fits the budget. A conversation that grows by a turn keeps its cut (and
 * so the prefix a provider has cached) until the rest outgrows the budget,
 * about step tokens later. Leaves it to trim() when no boundary fits. */
static void cut_stable(unit_t *units, size_t nu, long base, long budget, double step,
                       const ah_shape_env_t *env)
{
    int last_turn = 0;
    for (size_t i = 0; i < nu; i++)
        if (units[i].turn > last_turn)
            last_turn = units[i].turn;
    if (last_turn < 1 || step < 1)
        return;
    long *per_turn = ah_calloc((size_t)last_turn + 1, sizeof *per_turn);
    long live_from = base; /* tokens kept if the cut is before turn t */
    for (size_t i = 0; i < nu; i++) {
        if (!units[i].pinned)
            per_turn[units[i].turn] += units[i].tokens; /* dropped ones too: fixed boundaries */
        if (!units[i].dropped)
            live_from += units[i].tokens;
    }
    long cum = 0, bucket = 0;
    int cut = last_turn;
    for (int t = 1; t <= last_turn; t++) {
        /* what cutting before turn t leaves: the turns before it go */
        for (size_t i = 0; i < nu; i++)
            if (!units[i].pinned && !units[i].dropped && units[i].turn == t - 1)
                live_from -= units[i].tokens;
        cum += per_turn[t - 1];
        long b = (long)floor((double)cum / step);
        int boundary = b > bucket || t == last_turn;
        bucket = b;
        if (boundary && scaled(env, live_from) <= budget) {
            cut = t;
            break;
        }
    }
    for (size_t i = 0; i < nu; i++)
        if (!units[i].pinned && units[i].turn < cut)
            units[i].dropped = 1;
    ah_free(per_turn);
}

static ah_err_t window(json_t *body, json_t *msgs, const ah_shape_policy_t *p,
                       const ah_shape_env_t *env, long budget, const char *question,
                       ah_shape_result_t *out, char *err, size_t errlen)
{
    size_t n = json_array_size(msgs);
    if (n == 0)
        return AH_E_OK;
    unit_t *units = ah_calloc(n, sizeof *units);
    size_t nu = make_units(msgs, units);
    ah_err_t rc = AH_E_OK;
    int last_turn = nu ? units[nu - 1].turn : 0;
    for (size_t i = 0; i < nu; i++)
        if (units[i].turn > last_turn)
            last_turn = units[i].turn;
    /* max_turns: whole turns, oldest first (what precedes the first user
     * message belongs to no turn and goes with the oldest) */
    int dropped_turns = 0;
    if ((p->strategy == AH_CTX_SLIDING || p->strategy == AH_CTX_SUMMARIZE) && p->max_turns > 0 &&
        last_turn > p->max_turns) {
        int first_kept = last_turn - (int)p->max_turns + 1;
        for (size_t i = 0; i < nu; i++)
            if (!units[i].pinned && units[i].turn < first_kept) {
                units[i].dropped = 1;
                dropped_turns = 1;
            }
    }
    if (budget > 0) {
        /* tokens of everything that is not a message: tools, reply priming */
        json_t *bare = json_deep_copy(body);
        json_object_set_new(bare, "messages", json_array());
        ah_chat_count_t c;
        ah_chat_model_t cm = counted_model(env);
        int64_t bare_tokens;
        long base = 0;
        if (!ah_chat_estimate(env->enc, bare, &cm, &bare_tokens, &c)) {
            base = (long)c.total;
            /* what the provider bills for the tools beyond that count
             * (Claude's tool-use system prompt), in its own tokens: out of
             * the budget */
            long extra = (long)bare_tokens - scaled(env, base);
            if (extra > 0)
                budget = budget > extra ? budget - extra : 1;
        }
        json_decref(bare);
        json_t *one = json_pack("{s:[n]}", "messages");
        for (size_t i = 0; i < nu; i++)
            for (size_t k = 0; k < units[i].count; k++)
                units[i].tokens +=
                    message_tokens(env->enc, one, json_array_get(msgs, units[i].first + k));
        json_decref(one);
        if (p->strategy == AH_CTX_BUDGET) {
            /* each turn's text, scored against the question */
            size_t nt = (size_t)last_turn + 1;
            ah_buf_t *texts = ah_calloc(nt, sizeof *texts);
            ah_chunk_t *chunks = ah_calloc(nt, sizeof *chunks);
            double *scores = ah_calloc(nt, sizeof *scores);
            for (size_t t = 0; t < nt; t++)
                ah_buf_init(&texts[t], AH_SHAPE_MAX_TEXT_BYTES);
            for (size_t i = 0; i < nu; i++)
                for (size_t k = 0; k < units[i].count && !units[i].pinned; k++) {
                    char *t = ah_json_join_text(
                        json_object_get(json_array_get(msgs, units[i].first + k), "content"), "\n");
                    ah_buf_t *b = &texts[units[i].turn];
                    if (t && !ah_buf_appends(b, t))
                        ah_buf_appends(b, "\n");
                    ah_free(t);
                }
            for (size_t t = 0; t < nt; t++)
                chunks[t] = (ah_chunk_t){texts[t].data ? texts[t].data : "", texts[t].len};
            ah_select_dense_t dense;
            float *cos;
            const ah_select_dense_t *dp = dense_scores(chunks, nt, question, p, env, &dense, &cos);
            if (ah_select_score(chunks, nt, question, strlen(question), dp, scores) == AH_E_OK)
                for (size_t i = 0; i < nu; i++)
                    units[i].score = scores[units[i].turn];
            ah_free(cos);
            for (size_t t = 0; t < nt; t++)
                ah_buf_free(&texts[t]);
            ah_free(texts);
            ah_free(chunks);
            ah_free(scores);
        }
        if (p->strategy == AH_CTX_SUMMARIZE) {
            /* room for the summary that will stand in for what goes */
            long room = (p->summary_tokens > 0 ? p->summary_tokens : AH_SHAPE_SUMMARY_TOKENS) + 16;
            budget = budget > room ? budget - room : 1;
        }
        long total = scaled(env, live_total(units, nu, base));
        if (total > budget) {
            int by_relevance = p->strategy == AH_CTX_BUDGET;
            double to = p->trim_to > 0 && p->trim_to < 1 ? p->trim_to : 1;
            if (to < 1 && !by_relevance)
                cut_stable(units, nu, base, budget, (1 - to) * (double)budget, env);
            else if (to < 1)
                trim(units, nu, base, (long)floor((double)budget * to), 1, 0, env);
            if (trim(units, nu, base, budget, by_relevance, 1, env)) {
                long need = 0;
                for (size_t i = 0; i < nu; i++)
                    if (!units[i].dropped)
                        need += units[i].tokens;
                snprintf(err, errlen,
                         "the prompt budget of %ld tokens cannot hold the system prompt and the "
                         "latest turn (%ld tokens): raise the budget or shorten the prompt",
                         budget, scaled(env, need + base));
                rc = AH_E_INVAL;
                goto out;
            }
        }
    }
    int removed = 0;
    if (p->strategy == AH_CTX_SUMMARIZE) {
        json_t *gone = json_array();
        for (size_t i = 0; i < nu; i++)
            for (size_t k = 0; units[i].dropped && k < units[i].count; k++)
                json_array_append(gone, json_array_get(msgs, units[i].first + k));
        if (json_array_size(gone)) {
            out->summarized = gone;
            size_t at = 0;
            while (at < nu && units[at].pinned)
                at++;
            out->summary_at = at < nu ? units[at].first : json_array_size(msgs);
        } else {
            json_decref(gone);
        }
    }
    for (size_t i = nu; i-- > 0;)
        if (units[i].dropped)
            for (size_t k = units[i].count; k-- > 0;) {
                json_array_remove(msgs, units[i].first + k);
                removed++;
            }
    if (removed) {
        out->turns_dropped += removed;
        out->changed = 1;
        note(out, p->strategy == AH_CTX_BUDGET      ? "token_budget"
                  : p->strategy == AH_CTX_SUMMARIZE ? "summarize"
                                                    : "sliding_window");
    }
    (void)dropped_turns;
out:
    ah_free(units);
    return rc;
}

/* ---- 5 repeats across messages ---- */

/* Remove every occurrence of needle (len nl) from message m's texts. */
typedef struct cut_ctx {
    const char *needle;
    size_t nl;
} cut_ctx_t;

static ah_err_t cut_fn(const char *in, size_t len, ah_buf_t *out, void *ctx)
{
    cut_ctx_t *c = ctx;
    size_t i = 0;
    while (i < len) {
        const char *hit = c->nl <= len - i ? memmem(in + i, len - i, c->needle, c->nl) : NULL;
        size_t upto = hit ? (size_t)(hit - in) : len;
        ah_err_t rc = ah_buf_append(out, in + i, upto - i);
        if (rc)
            return rc;
        if (!hit)
            break;
        i = upto + c->nl;
    }
    /* what the cut left at the edges */
    size_t s = 0, e = out->len;
    while (s < e && (out->data[s] == '\n' || out->data[s] == ' '))
        s++;
    while (e > s && (out->data[e - 1] == '\n' || out->data[e - 1] == ' '))
        e--;
    if (s || e != out->len) {
        memmove(out->data, out->data + s, e - s);
        out->len = e - s;
        out->data[out->len] = '\0';
    }
    return AH_E_OK;
}

static int repeats(json_t *msgs, ah_shape_result_t *out)
{
    int changed = 0;
    size_t n = json_array_size(msgs);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(msgs, i);
        if (!is_system(s) || !json_is_string(json_object_get(s, "content")))
            continue;
        cut_ctx_t c = {json_string_value(json_object_get(s, "content")),
                       json_string_length(json_object_get(s, "content"))};
        if (c.nl < AH_SHAPE_REPEAT_MIN_BYTES)
            continue;
        for (size_t k = i + 1; k < n; k++) {
            json_t *m = json_array_get(msgs, k);
            if (strcmp(role_of(m), "user") != 0)
                continue;
            char *t = ah_json_join_text(json_object_get(m, "content"), "\n");
            int has = t && memmem(t, strlen(t), c.needle, c.nl) != NULL;
            /* a message that is nothing but the system prompt stays: empty
             * user turns are refused by providers */
            int whole = has && strlen(t) <= c.nl + 2;
            ah_free(t);
            if (has && !whole && map_texts(m, cut_fn, &c))
                changed = 1;
        }
    }
    if (changed) {
        out->changed = 1;
        note(out, "repeats");
    }
    return changed;
}

/* ---- 6 output ---- */

static const char *max_tokens_field(const json_t *body)
{
    return json_object_get(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
}

/* The max_tokens the output step leaves in the body: the client's, else the
 * policy's default, never over the policy's cap or the model's limit; 0 when
 * none is set and none will be. */
static long max_tokens_after(const json_t *body, const ah_shape_policy_t *p,
                             const ah_shape_env_t *env)
{
    json_t *mt = json_object_get(body, max_tokens_field(body));
    if (json_is_integer(mt) && json_integer_value(mt) <= 0)
        return 0; /* the provider's to refuse, not ours to rewrite */
    long v = json_is_integer(mt)         ? (long)json_integer_value(mt)
             : p->default_max_tokens > 0 ? p->default_max_tokens
                                         : p->cap_max_tokens;
    if (v <= 0)
        return 0;
    if (p->cap_max_tokens > 0 && v > p->cap_max_tokens)
        v = p->cap_max_tokens;
    if (env->output_limit > 0 && v > env->output_limit)
        v = env->output_limit;
    return v;
}

static void output(json_t *body, const ah_shape_policy_t *p, const ah_shape_env_t *env,
                   ah_shape_result_t *out)
{
    const char *field = max_tokens_field(body);
    json_t *mt = json_object_get(body, field);
    long v = max_tokens_after(body, p, env);
    if (v > 0 && !(json_is_integer(mt) && json_integer_value(mt) == v)) {
        json_object_set_new(body, field, json_integer(v));
        out->changed = 1;
        note(out, "max_tokens");
    }
    const ah_shape_preset_t *ps = env->preset;
    if (ps) {
        int applied = 0;
        if (ps->temperature >= 0 && !json_object_get(body, "temperature")) {
            json_object_set_new(body, "temperature", json_real(ps->temperature));
            applied = 1;
        }
        if (ps->top_p >= 0 && !json_object_get(body, "top_p")) {
            json_object_set_new(body, "top_p", json_real(ps->top_p));
            applied = 1;
        }
        if (applied) {
            out->changed = 1;
            note(out, "preset");
        }
    }
}

ah_err_t ah_shape_apply(json_t *body, const ah_shape_policy_t *p, const ah_shape_env_t *env,
                        ah_shape_result_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs)) {
        snprintf(err, errlen, "shaping needs a chat body with 'messages'");
        return AH_E_INVAL;
    }
    ah_err_t rc = AH_E_OK;
    char *question = question_of(msgs);
    out->tokens_before = ah_shape_count(env, body);
    long docs_at = -1;
    if ((rc = context_field(body, msgs, p, env, question, out, &docs_at, err, errlen)) ||
        (rc = context_parts(msgs, p, env, question, out)))
        goto out;
    if (p->lossless > 0) {
        size_t i;
        json_t *m;
        int changed = 0;
        json_array_foreach(msgs, i, m) changed |= map_texts(m, lossless_fn, NULL);
        if (changed) {
            out->changed = 1;
            note(out, "lossless");
        }
    }
    if (p->lossy_ratio > 0 && p->lossy_ratio < 1 && env->enc) {
        lossy_ctx_t c = {question, p->lossy_ratio, env->enc};
        long lu = last_user(msgs);
        size_t i;
        json_t *m;
        int changed = 0;
        json_array_foreach(msgs, i, m)
        {
            /* the documents message was cut chunk by chunk already */
            if ((long)i == lu || (is_system(m) && (p->lossy_system <= 0 || (long)i == docs_at)))
                continue;
            changed |= map_texts(m, lossy_fn, &c);
        }
        if (changed) {
            out->changed = 1;
            note(out, "lossy");
        }
    }
    long budget = 0;
    if ((p->strategy == AH_CTX_SLIDING || p->strategy == AH_CTX_BUDGET ||
         p->strategy == AH_CTX_SUMMARIZE) &&
        env->enc) {
        /* the answer's room: the max_tokens the request will carry, else
         * reserve_output, never more than the model can write */
        long reserve = max_tokens_after(body, p, env);
        if (reserve <= 0) {
            reserve = p->reserve_output >= 0 ? p->reserve_output : AH_SHAPE_RESERVE_OUTPUT;
            if (env->output_limit > 0 && reserve > env->output_limit)
                reserve = env->output_limit;
        }
        if (env->window > 0)
            budget = env->window - reserve > 0 ? env->window - reserve : 1;
        if (p->max_tokens > 0 && (budget == 0 || p->max_tokens < budget))
            budget = p->max_tokens;
        out->budget = budget;
        if ((rc = window(body, msgs, p, env, budget, question, out, err, errlen)))
            goto out;
    }
    repeats(msgs, out);
    output(body, p, env, out);
out:
    out->tokens_after = ah_shape_count(env, body);
    ah_free(question);
    return rc;
}
