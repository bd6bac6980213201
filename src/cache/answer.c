/* answer.c - cache keys, streamed answers gathered, answers replayed. */
#include "cache/answer.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/json_text.h"
#include "core/limits.h"

/* Top-level fields that do not change the answer: how it is delivered, who
 * asked, and the gateway's own controls. */
static const char *const ignored_fields[] = {
    "stream",           "stream_options", "user", "metadata", "cache", "store", "safety_identifier",
    "prompt_cache_key", "service_tier",   NULL};

static int ignored(const char *k)
{
    for (int i = 0; ignored_fields[i]; i++)
        if (strcmp(k, ignored_fields[i]) == 0)
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Feed the normal form of v: type tags, length-prefixed strings, sorted
 * object keys, integral numbers as integers. Unambiguous, not JSON. */
static ah_err_t feed(EVP_MD_CTX *md, json_t *v, int depth, int top, json_t *skip)
{
    char tmp[64];
    if (depth > AH_MAX_JSON_DEPTH)
        return AH_E_TOOBIG;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), k = 0;
        const char **keys = ah_calloc(n ? n : 1, sizeof *keys);
        const char *key;
        json_t *val;
        json_object_foreach(v, key, val)
        {
            if (!(top && ignored(key)))
                keys[k++] = key;
        }
        qsort(keys, k, sizeof *keys, cmp_str);
        EVP_DigestUpdate(md, "{", 1);
        ah_err_t rc = AH_E_OK;
        for (size_t i = 0; i < k && !rc; i++) {
            size_t kl = strlen(keys[i]);
            int m = snprintf(tmp, sizeof tmp, "k%zu:", kl);
            EVP_DigestUpdate(md, tmp, (size_t)m);
            EVP_DigestUpdate(md, keys[i], kl);
            rc = feed(md, json_object_get(v, keys[i]), depth + 1, 0,
                      top && strcmp(keys[i], "messages") == 0 ? skip : NULL);
        }
        ah_free(keys);
        EVP_DigestUpdate(md, "}", 1);
        return rc;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *e;
        EVP_DigestUpdate(md, "[", 1);
        json_array_foreach(v, i, e)
        {
            if (e == skip)
                continue;
            ah_err_t rc = feed(md, e, depth + 1, 0, NULL);
            if (rc)
                return rc;
        }
        EVP_DigestUpdate(md, "]", 1);
        return AH_E_OK;
    }
    case JSON_STRING: {
        size_t n = json_string_length(v);
        int m = snprintf(tmp, sizeof tmp, "s%zu:", n);
        EVP_DigestUpdate(md, tmp, (size_t)m);
        EVP_DigestUpdate(md, json_string_value(v), n);
        return AH_E_OK;
    }
    case JSON_INTEGER: {
        int m = snprintf(tmp, sizeof tmp, "i%lld;", (long long)json_integer_value(v));
        EVP_DigestUpdate(md, tmp, (size_t)m);
        return AH_E_OK;
    }
    case JSON_REAL: {
        double d = json_real_value(v);
        int m = d == floor(d) && fabs(d) < 9007199254740992.0
                    ? snprintf(tmp, sizeof tmp, "i%lld;", (long long)d)
                    : snprintf(tmp, sizeof tmp, "r%.17g;", d);
        EVP_DigestUpdate(md, tmp, (size_t)m);
        return AH_E_OK;
    }
    case JSON_TRUE:
        EVP_DigestUpdate(md, "t", 1);
        return AH_E_OK;
    case JSON_FALSE:
        EVP_DigestUpdate(md, "f", 1);
        return AH_E_OK;
    default:
        EVP_DigestUpdate(md, "n", 1);
        return AH_E_OK;
    }
}

static json_t *last_user(json_t *body)
{
    json_t *msgs = json_object_get(body, "messages");
    for (size_t i = json_array_size(msgs); i-- > 0;) {
        json_t *m = json_array_get(msgs, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && strcmp(role, "user") == 0)
            return m;
    }
    return NULL;
}

ah_err_t ah_answer_key(const char *tenant, const char *ns, json_t *body, int skip_last_user,
                       uint8_t out[AH_CACHE_KEY_BYTES])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md)
        return AH_E_NOMEM;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    const char *t = tenant ? tenant : "", *n = ns ? ns : "";
    /* the two kinds of key never collide */
    const char *kind = skip_last_user ? "ahorro-semantic-v1" : "ahorro-exact-v1";
    EVP_DigestUpdate(md, kind, strlen(kind) + 1);
    EVP_DigestUpdate(md, t, strlen(t) + 1);
    EVP_DigestUpdate(md, n, strlen(n) + 1);
    ah_err_t rc = feed(md, body, 0, 1, skip_last_user ? last_user(body) : NULL);
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
    return rc;
}

char *ah_answer_last_user_text(json_t *body)
{
    json_t *m = last_user(body);
    return m ? ah_json_join_text(json_object_get(m, "content"), "\n") : NULL;
}

/* --- streamed answers gathered ------------------------------------------ */

static void add_tool_delta(ah_answer_acc_t *a, int ci, json_t *tc)
{
    json_int_t idx = json_integer_value(json_object_get(tc, "index"));
    if (idx < 0 || idx >= AH_ANSWER_MAX_CHOICES * 8) {
        a->overflow = 1;
        return;
    }
    json_t *arr = a->choice[ci].tool_calls;
    if (!arr)
        arr = a->choice[ci].tool_calls = json_array();
    while (json_array_size(arr) <= (size_t)idx) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", "", "type", "function",
                                             "function", "name", "", "arguments", ""));
        /* arguments grow in a buffer (amortised), set into the JSON at the end */
        size_t n = json_array_size(arr);
        a->choice[ci].args = ah_realloc(a->choice[ci].args, n * sizeof *a->choice[ci].args);
        ah_buf_init(&a->choice[ci].args[n - 1], AH_ANSWER_MAX_BYTES);
    }
    json_t *slot = json_array_get(arr, (size_t)idx);
    json_t *fn = json_object_get(slot, "function");
    const char *id = json_string_value(json_object_get(tc, "id"));
    if (id && *id)
        json_object_set_new(slot, "id", json_string(id));
    json_t *dfn = json_object_get(tc, "function");
    const char *name = json_string_value(json_object_get(dfn, "name"));
    if (name && *name)
        json_object_set_new(fn, "name", json_string(name));
    json_t *args = json_object_get(dfn, "arguments");
    if (json_is_string(args) && ((a->bytes += json_string_length(args)) > AH_ANSWER_MAX_BYTES ||
                                 ah_buf_append(&a->choice[ci].args[idx], json_string_value(args),
                                               json_string_length(args))))
        a->overflow = 1;
}

void ah_answer_acc_add(ah_answer_acc_t *a, json_t *chunk)
{
    if (a->overflow || !json_is_object(chunk))
        return;
    const char *id = json_string_value(json_object_get(chunk, "id"));
    if (id && !a->id[0])
        snprintf(a->id, sizeof a->id, "%s", id);
    const char *model = json_string_value(json_object_get(chunk, "model"));
    if (model && !a->model[0])
        snprintf(a->model, sizeof a->model, "%s", model);
    json_t *created = json_object_get(chunk, "created");
    if (json_is_integer(created) && !a->created)
        a->created = json_integer_value(created);
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        json_decref(a->usage);
        a->usage = json_deep_copy(usage);
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(chunk, "choices"), i, c)
    {
        json_int_t ci = json_integer_value(json_object_get(c, "index"));
        if (ci < 0 || ci >= AH_ANSWER_MAX_CHOICES) {
            a->overflow = 1;
            return;
        }
        if (!a->choice[ci].used) {
            a->choice[ci].used = 1;
            ah_buf_init(&a->choice[ci].text, AH_ANSWER_MAX_BYTES);
            if (ci + 1 > a->nchoices)
                a->nchoices = (int)ci + 1;
        }
        json_t *d = json_object_get(c, "delta");
        const char *text = json_string_value(json_object_get(d, "content"));
        if (text && ((a->bytes += strlen(text)) > AH_ANSWER_MAX_BYTES ||
                     ah_buf_appends(&a->choice[ci].text, text))) {
            a->overflow = 1;
            return;
        }
        size_t j;
        json_t *tc;
        json_array_foreach(json_object_get(d, "tool_calls"), j, tc) add_tool_delta(a, (int)ci, tc);
        const char *fin = json_string_value(json_object_get(c, "finish_reason"));
        if (fin)
            snprintf(a->choice[ci].finish, sizeof a->choice[ci].finish, "%s", fin);
    }
}

json_t *ah_answer_acc_finish(ah_answer_acc_t *a)
{
    if (a->overflow || a->nchoices == 0)
        return NULL;
    json_t *choices = json_array();
    for (int i = 0; i < a->nchoices; i++) {
        if (!a->choice[i].used) {
            json_decref(choices);
            return NULL;
        }
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        json_t *tcs = a->choice[i].tool_calls;
        if (a->choice[i].text.len || !tcs)
            json_object_set_new(msg, "content",
                                json_stringn(a->choice[i].text.data ? a->choice[i].text.data : "",
                                             a->choice[i].text.len));
        else
            json_object_set_new(msg, "content", json_null());
        if (tcs) {
            size_t j;
            json_t *tc;
            json_array_foreach(tcs, j, tc)
            {
                ah_buf_t *b = &a->choice[i].args[j];
                json_object_set_new(json_object_get(tc, "function"), "arguments",
                                    json_stringn(b->data ? b->data : "", b->len));
            }
            json_object_set(msg, "tool_calls", tcs);
        }
        json_array_append_new(choices,
                              json_pack("{s:i,s:o,s:n,s:s}", "index", i, "message", msg, "logprobs",
                                        "finish_reason",
                                        a->choice[i].finish[0] ? a->choice[i].finish : "stop"));
    }
    json_t *out = json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", a->id[0] ? a->id : "chatcmpl-cached",
                            "object", "chat.completion", "created", (json_int_t)a->created, "model",
                            a->model, "choices", choices);
    if (a->usage)
        json_object_set(out, "usage", a->usage);
    return out;
}

void ah_answer_acc_free(ah_answer_acc_t *a)
{
    for (int i = 0; i < AH_ANSWER_MAX_CHOICES; i++) {
        if (a->choice[i].used)
            ah_buf_free(&a->choice[i].text);
        for (size_t j = 0; j < json_array_size(a->choice[i].tool_calls); j++)
            ah_buf_free(&a->choice[i].args[j]);
        ah_free(a->choice[i].args);
        a->choice[i].args = NULL;
        json_decref(a->choice[i].tool_calls);
        a->choice[i].tool_calls = NULL;
        a->choice[i].used = 0;
    }
    json_decref(a->usage);
    a->usage = NULL;
}

/* --- answers replayed ---------------------------------------------------- */

static json_t *chunk_of(json_t *completion, json_t *choices)
{
    json_t *c =
        json_pack("{s:O?,s:s,s:O?,s:O?,s:o}", "id", json_object_get(completion, "id"), "object",
                  "chat.completion.chunk", "created", json_object_get(completion, "created"),
                  "model", json_object_get(completion, "model"), "choices", choices);
    return c;
}

json_t *ah_answer_chunks(json_t *completion)
{
    json_t *out = json_array();
    size_t i;
    json_t *ch;
    json_array_foreach(json_object_get(completion, "choices"), i, ch)
    {
        json_t *idx = json_object_get(ch, "index");
        json_int_t index = json_is_integer(idx) ? json_integer_value(idx) : (json_int_t)i;
        json_t *msg = json_object_get(ch, "message");
        json_t *content = json_object_get(msg, "content");
        json_t *delta = json_pack("{s:s}", "role", "assistant");
        json_object_set_new(delta, "content",
                            json_is_string(content) ? json_incref(content) : json_string(""));
        json_array_append_new(out,
                              chunk_of(completion, json_pack("[{s:I,s:o,s:n}]", "index", index,
                                                             "delta", delta, "finish_reason")));
        size_t j;
        json_t *tc;
        json_array_foreach(json_object_get(msg, "tool_calls"), j, tc)
        {
            json_t *t = json_deep_copy(tc);
            json_object_set_new(t, "index", json_integer((json_int_t)j));
            json_array_append_new(
                out, chunk_of(completion, json_pack("[{s:I,s:{s:[o]},s:n}]", "index", index,
                                                    "delta", "tool_calls", t, "finish_reason")));
        }
        json_t *fin = json_object_get(ch, "finish_reason");
        json_array_append_new(
            out, chunk_of(completion,
                          json_pack("[{s:I,s:{},s:s}]", "index", index, "delta", "finish_reason",
                                    json_is_string(fin) ? json_string_value(fin) : "stop")));
    }
    json_t *usage = json_object_get(completion, "usage");
    if (json_is_object(usage)) {
        json_t *u = chunk_of(completion, json_array());
        json_object_set(u, "usage", usage);
        json_array_append_new(out, u);
    }
    return out;
}
