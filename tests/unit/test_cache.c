/* test_cache.c - cache keys, streamed answers gathered and replayed, and the
 * in-process store: TTL, LRU and byte bounds, tenant scopes, purge, feedback,
 * persistence. */
#include <check.h>

#include "check_run.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cache/answer.h"
#include "cache/store.h"
#include "core/alloc.h"
#include "store/db.h"

static json_t *js(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    ck_assert_msg(j != NULL, "bad test JSON: %s", e.text);
    return j;
}

static void key_of(const char *tenant, const char *ns, const char *body, int skip,
                   uint8_t out[AH_CACHE_KEY_BYTES])
{
    json_t *j = js(body);
    ck_assert_int_eq(ah_answer_key(tenant, ns, j, skip, out), AH_E_OK);
    json_decref(j);
}

START_TEST(keys_are_normal_forms)
{
    uint8_t a[32], b[32];
    key_of(
        "t", NULL,
        "{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        0, a);
    /* other key order, whitespace, 0.0 for 0, and fields that do not change the answer */
    key_of("t", NULL,
           " { \"messages\" : [ {\"content\":\"hi\", \"role\":\"user\"} ], \"temperature\": 0.0,"
           " \"model\":\"m\", \"stream\": true, \"user\": \"u1\", \"metadata\": {\"x\":\"y\"},"
           " \"cache\": {\"ttl\": 5} }",
           0, b);
    ck_assert_mem_eq(a, b, 32);
    /* what changes the answer changes the key */
    key_of("t", NULL,
           "{\"model\":\"m\",\"temperature\":0.1,\"messages\":[{\"role\":\"user\",\"content\":"
           "\"hi\"}]}",
           0, b);
    ck_assert(memcmp(a, b, 32) != 0);
    key_of("t", NULL,
           "{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi "
           "\"}]}",
           0, b);
    ck_assert(memcmp(a, b, 32) != 0);
    /* tenant and namespace are part of the key */
    key_of(
        "u", NULL,
        "{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        0, b);
    ck_assert(memcmp(a, b, 32) != 0);
    key_of(
        "t", "ns",
        "{\"model\":\"m\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
        0, b);
    ck_assert(memcmp(a, b, 32) != 0);
    /* no ambiguity between a string and its split */
    key_of("t", NULL, "{\"a\":\"bc\",\"d\":\"\"}", 0, a);
    key_of("t", NULL, "{\"a\":\"b\",\"d\":\"c\"}", 0, b);
    ck_assert(memcmp(a, b, 32) != 0);
}
END_TEST

START_TEST(semantic_scope_leaves_out_the_last_user_turn)
{
    uint8_t a[32], b[32];
    const char *q1 = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                     "{\"role\":\"user\",\"content\":\"how do I reset my password\"}]}";
    const char *q2 = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
                     "{\"role\":\"user\",\"content\":\"password reset?\"}]}";
    const char *q3 = "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"T\"},"
                     "{\"role\":\"user\",\"content\":\"password reset?\"}]}";
    key_of("t", NULL, q1, 1, a);
    key_of("t", NULL, q2, 1, b);
    ck_assert_mem_eq(a, b, 32);
    key_of("t", NULL, q3, 1, b);
    ck_assert(memcmp(a, b, 32) != 0); /* another system prompt: another scope */
    key_of("t", NULL, q1, 0, b);
    ck_assert(memcmp(a, b, 32) != 0); /* exact keys and scopes never collide */
    json_t *j = js(q1);
    char *t = ah_answer_last_user_text(j);
    ck_assert_str_eq(t, "how do I reset my password");
    ah_free(t);
    json_decref(j);
}
END_TEST

START_TEST(deep_bodies_are_refused)
{
    char body[201];
    memset(body, '[', 100);
    memset(body + 100, ']', 100);
    body[200] = '\0';
    json_t *j = json_pack("{s:s,s:o}", "model", "m", "messages", js(body));
    uint8_t k[32];
    ck_assert_int_eq(ah_answer_key("t", NULL, j, 0, k), AH_E_TOOBIG);
    json_decref(j);
}
END_TEST

START_TEST(streams_gathered_and_replayed)
{
    const char *chunks[] = {
        "{\"id\":\"c1\",\"created\":7,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{"
        "\"role\":\"assistant\",\"content\":\"\"}}]}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]"
        "}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]"
        "}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
        "\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\"\"}}]}}]}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{"
        "\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
        "\"tool_calls\"}]}",
        "{\"id\":\"c1\",\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_"
        "tokens\":4}}",
    };
    ah_answer_acc_t acc;
    memset(&acc, 0, sizeof acc);
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        json_t *c = js(chunks[i]);
        ah_answer_acc_add(&acc, c);
        json_decref(c);
    }
    json_t *done = ah_answer_acc_finish(&acc);
    ah_answer_acc_free(&acc);
    ck_assert_ptr_nonnull(done);
    json_t *msg = json_object_get(json_array_get(json_object_get(done, "choices"), 0), "message");
    ck_assert_str_eq(json_string_value(json_object_get(msg, "content")), "Hello");
    json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(tc, "id")), "call_1");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
        "{\"a\":1}");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(done, "usage"), "completion_tokens")),
        4);

    /* replayed, then gathered again: the same answer */
    json_t *replay = ah_answer_chunks(done);
    memset(&acc, 0, sizeof acc);
    size_t i;
    json_t *c;
    json_array_foreach(replay, i, c) ah_answer_acc_add(&acc, c);
    json_t *again = ah_answer_acc_finish(&acc);
    ah_answer_acc_free(&acc);
    ck_assert(json_equal(json_object_get(done, "choices"), json_object_get(again, "choices")));
    ck_assert(json_equal(json_object_get(done, "usage"), json_object_get(again, "usage")));
    /* the last chunk carries only the usage */
    json_t *last = json_array_get(replay, json_array_size(replay) - 1);
    ck_assert_uint_eq(json_array_size(json_object_get(last, "choices")), 0);
    json_decref(again);
    json_decref(replay);
    json_decref(done);
}
END_TEST

START_TEST(oversized_streams_are_not_cached)
{
    ah_answer_acc_t acc;
    memset(&acc, 0, sizeof acc);
    json_t *c = js("{\"choices\":[{\"index\":99,\"delta\":{\"content\":\"x\"}}]}");
    ah_answer_acc_add(&acc, c);
    json_decref(c);
    ck_assert_ptr_null(ah_answer_acc_finish(&acc));
    ah_answer_acc_free(&acc);
}
END_TEST

static void put(ah_cache_t *c, uint8_t k, const char *tenant, const char *model, int64_t now,
                int64_t ttl, const uint8_t *scope, const float *vec, int dim)
{
    uint8_t key[32] = {0};
    key[0] = k;
    key[9] = k;
    ah_cache_put_t p = {.key = key,
                        .tenant = tenant,
                        .ns = "",
                        .model = model,
                        .answer = "{\"x\":1}",
                        .answer_len = 7,
                        .cost_usd = 0.5,
                        .now_ms = now,
                        .ttl_ms = ttl,
                        .scope = scope,
                        .vec = vec,
                        .dim = dim};
    ah_cache_insert(c, &p);
}

static void unit(float *v, int dim, int hot);

/* A rescore callback that counts the prompts it works out (kept in the memo)
 * and accepts every candidate at its cosine. */
static int worked_out;
static float count_rescore(void *ctx, float cosine, const char *query, const char *prompt,
                           ah_cache_memo_t *memo)
{
    if (memo->of != ctx) {
        worked_out++;
        memo->of = ctx;
        memo->label = (int)strlen(prompt);
    }
    return cosine;
}

START_TEST(rescore_memo_and_prompts)
{
    ah_cache_t *c = ah_cache_new(100, 0);
    uint8_t scope[32] = {7}, key[32] = {0};
    float v[8];
    unit(v, 8, 2);
    key[0] = key[9] = 3;
    ah_cache_put_t p = {.key = key,
                        .tenant = "a",
                        .ns = "",
                        .model = "m",
                        .answer = "{}",
                        .answer_len = 2,
                        .now_ms = 1000,
                        .ttl_ms = 10000,
                        .scope = scope,
                        .vec = v,
                        .dim = 8,
                        .prompt = "stored prompt"};
    ah_cache_insert(c, &p);
    int model_a, model_b;
    float sim;
    /* the prompt is worked out once per entry and model, however often it is met */
    for (int i = 0; i < 3; i++) {
        ah_cache_entry_t *e = ah_cache_get_similar(c, scope, v, 8, 0.9f, 1001, -1, count_rescore,
                                                   &model_a, "query", &sim);
        ck_assert_ptr_nonnull(e);
        ck_assert_int_eq(e->memo.label, 13);
        ah_cache_entry_release(e);
    }
    ck_assert_int_eq(worked_out, 1);
    ah_cache_entry_release(ah_cache_get_similar(c, scope, v, 8, 0.9f, 1001, -1, count_rescore,
                                                &model_b, "query", &sim));
    ck_assert_int_eq(worked_out, 2);
    /* an entry without its prompt cannot be checked, so with a check it is not served */
    key[0] = key[9] = 4;
    uint8_t scope2[32] = {8};
    p.scope = scope2;
    p.prompt = NULL;
    ah_cache_insert(c, &p);
    ck_assert_ptr_null(ah_cache_get_similar(c, scope2, v, 8, 0.9f, 1001, -1, count_rescore,
                                            &model_a, "query", &sim));
    ah_cache_entry_t *e =
        ah_cache_get_similar(c, scope2, v, 8, 0.9f, 1001, -1, NULL, NULL, "query", &sim);
    ck_assert_ptr_nonnull(e); /* without a check, the cosine serves it */
    ah_cache_entry_release(e);
    ah_cache_free(c);
}
END_TEST

static ah_cache_entry_t *get(ah_cache_t *c, uint8_t k, int64_t now)
{
    uint8_t key[32] = {0};
    key[0] = k;
    key[9] = k;
    return ah_cache_get(c, key, now, -1);
}

START_TEST(store_ttl_lru_and_bounds)
{
    ah_cache_t *c = ah_cache_new(3, 0);
    put(c, 1, "t", "m", 1000, 100, NULL, NULL, 0);
    ah_cache_entry_t *e = get(c, 1, 1050);
    ck_assert_ptr_nonnull(e);
    ck_assert(e->cost_usd == 0.5);
    ah_cache_entry_release(e);
    ck_assert_ptr_null(get(c, 1, 1100)); /* expired at its TTL */
    put(c, 1, "t", "m", 2000, 1000, NULL, NULL, 0);
    put(c, 2, "t", "m", 2000, 1000, NULL, NULL, 0);
    put(c, 3, "t", "m", 2000, 1000, NULL, NULL, 0);
    ah_cache_entry_release(get(c, 1, 2001)); /* 1 is now the most recent */
    put(c, 4, "t", "m", 2002, 1000, NULL, NULL, 0);
    ck_assert_ptr_null(get(c, 2, 2003)); /* the least recently used went */
    e = get(c, 1, 2003);
    ck_assert_ptr_nonnull(e);
    /* a reference outlives the entry's eviction */
    ck_assert_int_eq(ah_cache_purge(c, NULL, NULL, NULL, 0), 3);
    ck_assert_str_eq(e->answer, "{\"x\":1}");
    ah_cache_entry_release(e);
    ah_cache_stats_t st;
    ah_cache_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.evictions, 1);
    ah_cache_free(c);

    /* bounded by bytes too */
    c = ah_cache_new(1000, 1 << 16);
    for (int i = 0; i < 250; i++)
        put(c, (uint8_t)i, "t", "m", 1, 1000, NULL, NULL, 0);
    ah_cache_stats(c, &st);
    ck_assert_uint_le(st.bytes, 1 << 16);
    ck_assert_uint_gt(st.evictions, 0);
    ah_cache_free(c);
}
END_TEST

START_TEST(store_purge_and_feedback)
{
    ah_cache_t *c = ah_cache_new(100, 0);
    put(c, 1, "a", "m1", 1000, 10000, NULL, NULL, 0);
    put(c, 2, "a", "m2", 2000, 10000, NULL, NULL, 0);
    put(c, 3, "b", "m1", 3000, 10000, NULL, NULL, 0);
    ck_assert_int_eq(ah_cache_purge(c, "nobody", NULL, NULL, 0), 0);
    ck_assert_int_eq(ah_cache_purge(c, NULL, NULL, NULL, 1500), 1); /* older than 1500 */
    ck_assert_int_eq(ah_cache_purge(c, "a", NULL, "m1", 0), 0);
    ck_assert_int_eq(ah_cache_purge(c, NULL, NULL, "m1", 0), 1);
    uint8_t key[32] = {0};
    key[0] = key[9] = 2;
    ck_assert_int_eq(ah_cache_mark_wrong(c, key, 0), AH_CACHE_REMOVED);
    ck_assert_int_eq(ah_cache_mark_wrong(c, key, 0), AH_CACHE_GONE);
    ah_cache_stats_t st;
    ah_cache_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.false_hits, 2);
    ah_cache_free(c);
}
END_TEST

static void unit(float *v, int dim, int hot)
{
    for (int i = 0; i < dim; i++)
        v[i] = i == hot ? 1.0f : 0.0f;
}

START_TEST(semantic_scopes_never_mix)
{
    ah_cache_t *c = ah_cache_new(100, 0);
    uint8_t sa[32] = {1}, sb[32] = {2};
    float v[8], q[8];
    unit(v, 8, 3);
    put(c, 1, "a", "m", 1000, 10000, sa, v, 8);
    memcpy(q, v, sizeof q);
    q[4] = 0.1f;
    float n = sqrtf(1.0f + 0.01f);
    q[3] /= n;
    q[4] /= n;
    float sim = 0;
    ah_cache_entry_t *e = ah_cache_get_similar(c, sa, q, 8, 0.9f, 1001, -1, NULL, NULL, NULL, &sim);
    ck_assert_ptr_nonnull(e);
    ck_assert(sim > 0.99f && sim <= 1.0001f);
    ah_cache_entry_release(e);
    /* another scope (tenant) sees nothing, even with the identical vector */
    ck_assert_ptr_null(ah_cache_get_similar(c, sb, v, 8, 0.0f, 1001, -1, NULL, NULL, NULL, &sim));
    /* below the threshold: no hit */
    unit(q, 8, 5);
    ck_assert_ptr_null(ah_cache_get_similar(c, sa, q, 8, 0.5f, 1001, -1, NULL, NULL, NULL, &sim));
    /* a semantic hit reported wrong: that entry now asks for more similarity */
    uint8_t key1[32] = {0};
    key1[0] = key1[9] = 1;
    float mid[8];
    unit(mid, 8, 3);
    mid[4] = 0.5f; /* cosine 0.894 to v */
    float mn = sqrtf(1.25f);
    mid[3] /= mn;
    mid[4] /= mn;
    e = ah_cache_get_similar(c, sa, mid, 8, 0.8f, 1001, -1, NULL, NULL, NULL, &sim);
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);
    ck_assert_int_eq(ah_cache_mark_wrong(c, key1, sim), AH_CACHE_RAISED);
    ck_assert_ptr_null(ah_cache_get_similar(c, sa, mid, 8, 0.8f, 1001, -1, NULL, NULL, NULL, &sim));
    e = ah_cache_get_similar(c, sa, v, 8, 0.8f, 1001, -1, NULL, NULL, NULL,
                             &sim); /* closer: still a hit */
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);
    ck_assert_int_eq(ah_cache_mark_wrong(c, key1, 0.95f), AH_CACHE_RAISED);
    ck_assert_int_eq(ah_cache_mark_wrong(c, key1, 0.999f), AH_CACHE_REMOVED); /* third report */
    put(c, 1, "a", "m", 1000, 10000, sa, v, 8);
    /* expired: no hit, and the entry leaves the index */
    ck_assert_ptr_null(ah_cache_get_similar(c, sa, v, 8, 0.9f, 20000, -1, NULL, NULL, NULL, &sim));
    ah_cache_stats_t st;
    ah_cache_stats(c, &st);
    ck_assert_uint_eq(st.entries, 0);
    ah_cache_free(c);
}
END_TEST

START_TEST(store_persists)
{
    char path[] = "/tmp/ahorro-test-cache-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    sqlite3 *db;
    ck_assert_int_eq(ah_db_open(path, &db), AH_E_OK);
    ah_cache_t *c = ah_cache_new(100, 0);
    uint8_t scope[32] = {7};
    float v[4] = {0, 1, 0, 0};
    put(c, 1, "a", "m", 1000, 10000, NULL, NULL, 0);
    put(c, 2, "a", "m", 1000, 10, NULL, NULL, 0); /* expired by the time it is saved */
    put(c, 3, "a", "m", 1000, 10000, scope, v, 4);
    ck_assert_int_eq(ah_cache_save(c, db, 2000, NULL), AH_E_OK);
    ah_cache_free(c);
    c = ah_cache_new(100, 0);
    ck_assert_int_eq(ah_cache_load(c, db, 2000, NULL), AH_E_OK);
    ah_cache_entry_t *e = get(c, 1, 2001);
    ck_assert_ptr_nonnull(e);
    ck_assert_int_eq(e->created_ms, 1000);
    ck_assert_int_eq(e->expires_ms, 11000);
    ah_cache_entry_release(e);
    ck_assert_ptr_null(get(c, 2, 2001));
    float sim;
    e = ah_cache_get_similar(c, scope, v, 4, 0.99f, 2001, -1, NULL, NULL, NULL, &sim);
    ck_assert_ptr_nonnull(e);
    ah_cache_entry_release(e);
    ah_cache_free(c);
    sqlite3_close(db);
    unlink(path);
    char side[64];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}
END_TEST

START_TEST(store_persists_indexes)
{
    char path[] = "/tmp/ahorro-test-cache-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char dir[64];
    snprintf(dir, sizeof dir, "%s-vindex", path);
    sqlite3 *db;
    ck_assert_int_eq(ah_db_open(path, &db), AH_E_OK);
    ah_cache_t *c = ah_cache_new(100, 0);
    uint8_t scope[32] = {9};
    float v[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    for (int i = 0; i < 4; i++)
        put(c, (uint8_t)(10 + i), "a", "m", 1000, i == 3 ? 500 : 10000, scope, v[i], 4);
    ck_assert_int_eq(ah_cache_save(c, db, 1200, dir), AH_E_OK);
    ah_cache_free(c);
    /* the index file is there; entry 13 expires before the load */
    char file[200], hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", scope[i]);
    snprintf(file, sizeof file, "%s/%s.vix", dir, hex);
    ck_assert_int_eq(access(file, R_OK), 0);
    for (int round = 0; round < 2; round++) {
        if (round == 1) { /* a damaged index file: rebuilt from the vectors */
            FILE *f = fopen(file, "r+b");
            ck_assert_ptr_nonnull(f);
            fseek(f, 40, SEEK_SET);
            fputc(0x5a, f);
            fclose(f);
        }
        c = ah_cache_new(100, 0);
        ck_assert_int_eq(ah_cache_load(c, db, 2000, dir), AH_E_OK);
        float sim;
        for (int i = 0; i < 3; i++) {
            ah_cache_entry_t *e =
                ah_cache_get_similar(c, scope, v[i], 4, 0.99f, 2001, -1, NULL, NULL, NULL, &sim);
            ck_assert_ptr_nonnull(e);
            ck_assert_int_eq(e->key[0], 10 + i);
            ah_cache_entry_release(e);
        }
        /* the expired entry neither comes back nor answers */
        ck_assert_ptr_null(
            ah_cache_get_similar(c, scope, v[3], 4, 0.5f, 2001, -1, NULL, NULL, NULL, &sim));
        ah_cache_free(c);
    }
    sqlite3_close(db);
    unlink(file);
    rmdir(dir);
    unlink(path);
    char side[64];
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tcase_create("cache");
    tcase_add_test(tc, keys_are_normal_forms);
    tcase_add_test(tc, semantic_scope_leaves_out_the_last_user_turn);
    tcase_add_test(tc, deep_bodies_are_refused);
    tcase_add_test(tc, streams_gathered_and_replayed);
    tcase_add_test(tc, oversized_streams_are_not_cached);
    tcase_add_test(tc, store_ttl_lru_and_bounds);
    tcase_add_test(tc, store_purge_and_feedback);
    tcase_add_test(tc, semantic_scopes_never_mix);
    tcase_add_test(tc, rescore_memo_and_prompts);
    tcase_add_test(tc, store_persists);
    tcase_add_test(tc, store_persists_indexes);
    suite_add_tcase(s, tc);
    return ah_check_run(s);
}
