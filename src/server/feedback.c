/* feedback.c - POST /v1/feedback: a caller says what an answer was worth.
 *
 *   {"request_id": "req_...", "wrong": true, "score": 0.0, "comment": "..."}
 *   {"request_id": "req_...", "thumbs": "up"}      (score 1; "down": score 0)
 *
 * Feedback is kept in the database for the quality work. When it marks an
 * answer that came from the cache as wrong, it counts as a false hit and
 * the entry pays at once: an exact hit's entry is removed (its answer is
 * wrong); a semantic hit's entry raises its own threshold above that hit's
 * similarity, and is removed at the third such report (store.h). A caller
 * may only rate its own tenant's requests; the master key may rate any. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <string.h>

#include "cache/store.h"
#include "core/clock.h"
#include "core/limits.h"
#include "pipeline/pipeline.h"
#include "server/exchange.h"
#include "store/feedback.h"

#define FEEDBACK_MAX_BODY 16384
#define FEEDBACK_MAX_COMMENT 4096

static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int j = 0; j < 2; j++) {
            char c = s[2 * i + j];
            v <<= 4;
            if (c >= '0' && c <= '9')
                v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f')
                v |= (unsigned)(c - 'a' + 10);
            else
                return -1;
        }
        out[i] = (uint8_t)v;
    }
    return 0;
}

void ah_feedback_handle(ah_worker_t *w, struct evhttp_request *req)
{
    ah_request_t *r = ah_request_new(AH_API_OPENAI, AH_OP_CHAT);
    json_t *b = NULL;
    ah_feedback_target_t t = {0};
    r->peer = ah_arena_strdup(&r->arena, ah_peer_of(req));
    const char *tok = ah_token_of(req);
    r->auth_token = tok ? ah_arena_strdup(&r->arena, tok) : NULL;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        ah_reply_error(req, AH_API_OPENAI, 405, "invalid_request_error", NULL,
                       "Method not allowed: use POST");
        goto out;
    }
    if (ah_stage_auth(w, r)) {
        ah_reply_error(req, AH_API_OPENAI, r->fail.status, r->fail.type, r->fail.code,
                       r->fail.message);
        goto out;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > 0 && len <= FEEDBACK_MAX_BODY)
        b = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
    const char *rid = json_string_value(json_object_get(b, "request_id"));
    json_t *wrong = json_object_get(b, "wrong"), *score = json_object_get(b, "score");
    json_t *comment = json_object_get(b, "comment");
    const char *thumbs = json_string_value(json_object_get(b, "thumbs"));
    int thumbs_bad = json_object_get(b, "thumbs") &&
                     (!thumbs || (strcmp(thumbs, "up") != 0 && strcmp(thumbs, "down") != 0));
    /* a thumb is a score of 1 or 0; an explicit score wins */
    double score_v = score                   ? json_number_value(score)
                     : thumbs && !thumbs_bad ? !strcmp(thumbs, "up")
                                             : -1;
    if (!json_is_object(b) || !rid || strlen(rid) >= sizeof r->id || thumbs_bad ||
        (wrong && !json_is_boolean(wrong)) ||
        (score && (!json_is_number(score) || json_number_value(score) < 0 ||
                   json_number_value(score) > 1)) ||
        (comment &&
         (!json_is_string(comment) || json_string_length(comment) > FEEDBACK_MAX_COMMENT))) {
        ah_reply_error(req, AH_API_OPENAI, 400, "invalid_request_error", NULL,
                       "send {\"request_id\": \"req_...\", \"wrong\": true|false, \"score\": 0..1 "
                       "or \"thumbs\": \"up\"|\"down\", \"comment\": \"...\"}");
        goto out;
    }
    ah_dbh_t db = ah_worker_dbh(w);
    ah_err_t frc = ah_feedback_find(db, rid, &t);
    if (frc == AH_E_DB) {
        ah_reply_error(req, AH_API_OPENAI, 503, NULL, NULL,
                       "cannot read the ledger right now; retry shortly");
        goto out;
    }
    int master = r->key_id && strcmp(r->key_id, "master") == 0;
    int mine = frc == AH_E_OK && ((r->owner && t.owner && strcmp(r->owner, t.owner) == 0) ||
                                  (!r->owner && !t.owner &&
                                   ((!r->key_id && !t.key_id) ||
                                    (r->key_id && t.key_id && strcmp(r->key_id, t.key_id) == 0))));
    if (frc != AH_E_OK || (!master && !mine)) {
        /* the same answer for another's id as for an unknown one: ids of
         * others are not confirmed */
        ah_reply_error(req, AH_API_OPENAI, 404, "invalid_request_error", "not_found",
                       "No request with that id on the ledger (rows land within milliseconds; "
                       "retry shortly)");
        goto out;
    }
    char kind[16] = "";
    ah_cache_verdict_t verdict = AH_CACHE_GONE;
    int was_hit = t.cache && (!strcmp(t.cache, "exact") || !strcmp(t.cache, "semantic"));
    if (was_hit)
        snprintf(kind, sizeof kind, "%s", t.cache);
    uint8_t key[AH_CACHE_KEY_BYTES];
    if (json_is_true(wrong) && was_hit && w->gw->cache && t.cache_key &&
        strlen(t.cache_key) == 2 * AH_CACHE_KEY_BYTES &&
        unhex(t.cache_key, key, AH_CACHE_KEY_BYTES) == 0)
        verdict = ah_cache_mark_wrong(w->gw->cache, key,
                                      !strcmp(t.cache, "semantic") ? (float)t.similarity : 0);
    if (ah_feedback_add(db, rid, ah_wall_ms(), r->key_id, r->owner, json_is_true(wrong), score_v,
                        comment ? json_string_value(comment) : NULL)) {
        ah_reply_error(req, AH_API_OPENAI, 500, NULL, NULL, "cannot store the feedback");
        goto out;
    }
    json_t *o = json_pack("{s:s,s:b,s:s?,s:b,s:b}", "request_id", rid, "recorded", 1, "cache",
                          was_hit ? kind : NULL, "cache_entry_removed", verdict == AH_CACHE_REMOVED,
                          "cache_threshold_raised", verdict == AH_CACHE_RAISED);
    ah_reply_json(req, 200, o);
    json_decref(o);
out:
    ah_feedback_target_clear(&t);
    json_decref(b);
    ah_request_free(r);
}
