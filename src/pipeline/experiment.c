/* experiment.c - stage 2b: which arm of a live experiment a request gets.
 *
 * Runs right after attribute (the tags are known) and before guard, shape
 * and route, so budgets, templates and routing all see the arm's model and
 * settings. A request to an experiment's route that matches its tag
 * condition is assigned an arm by a hash of the experiment's name and the
 * caller (quality/experiment.h): the user, else the key (sticky: key
 * reverses the order), else, for anonymous requests, the request id (not
 * sticky). The arm's overrides are applied as if the client had sent them;
 * tags experiment=NAME and arm=ARM go on the ledger row; the answer carries
 * x-ahorro-experiment: NAME/ARM.
 *
 * Bandit experiments: the weights for assignment are recomputed from the
 * ledger every policy.refresh_s by whichever worker first sees them stale
 * (one at a time, the others keep the previous weights meanwhile). They are
 * shared by the workers under a mutex, held only to copy eight doubles. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "quality/experiment.h"
#include "store/db.h"

/* How far back the bandit looks, and how long its query may take. */
#define BANDIT_WINDOW_MS (7 * 86400000LL)
#define BANDIT_QUERY_MAX_MS 200

typedef struct exp_state {
    double weights[AH_EXPERIMENT_MAX_ARMS];
    int have;       /* weights were computed at least once */
    int busy;       /* a worker is computing them */
    int64_t at_ms;  /* when they were last computed */
    char note[512]; /* why, as last logged */
} exp_state_t;

struct ah_experiment_rt {
    pthread_mutex_t mu;
    exp_state_t e[AH_EXPERIMENT_MAX];
};

ah_experiment_rt_t *ah_experiment_rt_new(void)
{
    ah_experiment_rt_t *rt = ah_calloc(1, sizeof *rt);
    pthread_mutex_init(&rt->mu, NULL);
    return rt;
}

void ah_experiment_rt_free(ah_experiment_rt_t *rt)
{
    if (!rt)
        return;
    pthread_mutex_destroy(&rt->mu);
    ah_free(rt);
}

/* Recompute experiment i's weights from the ledger (outside the mutex). */
static void bandit_refresh(ah_worker_t *w, ah_experiment_rt_t *rt, size_t i, int64_t now)
{
    const ah_experiment_cfg_t *e = &w->gw->cfg->experiments.list[i];
    double weights[AH_EXPERIMENT_MAX_ARMS];
    char err[256] = "", note[512] = "";
    json_t *rep = NULL;
    int ok = 0;
    ah_db_deadline_t dl;
    ah_db_deadline_arm(w->db, &dl, BANDIT_QUERY_MAX_MS);
    if (ah_experiment_report(w->db, w->gw->cfg, e->name, now - BANDIT_WINDOW_MS, &rep, err,
                             sizeof err) == AH_E_OK) {
        const json_t *x = json_array_get(json_object_get(rep, "data"), 0);
        ok = ah_experiment_report_weights(x, weights, e->narms) == 0;
        snprintf(note, sizeof note, "%s",
                 json_string_value(json_object_get(json_object_get(x, "policy"), "note")));
    } else {
        ah_warn("experiment %s: the bandit's weights were not updated: %s", e->name, err);
    }
    ah_db_deadline_disarm(w->db);
    json_decref(rep);
    pthread_mutex_lock(&rt->mu);
    exp_state_t *s = &rt->e[i];
    if (ok) {
        memcpy(s->weights, weights, sizeof weights);
        s->have = 1;
        if (strcmp(s->note, note) != 0) {
            ah_info("experiment %s: %s", e->name, note);
            snprintf(s->note, sizeof s->note, "%s", note);
        }
    }
    s->at_ms = now;
    s->busy = 0;
    pthread_mutex_unlock(&rt->mu);
}

/* The weights for new assignments: the bandit's when it has them, else
 * NULL (the configured ones). */
static const double *current_weights(ah_worker_t *w, size_t i, double *out)
{
    const ah_experiment_cfg_t *e = &w->gw->cfg->experiments.list[i];
    ah_experiment_rt_t *rt = w->gw->experiments;
    if (e->policy != AH_POLICY_BANDIT || !rt || !w->db)
        return NULL;
    int64_t now = ah_wall_ms();
    pthread_mutex_lock(&rt->mu);
    exp_state_t *s = &rt->e[i];
    int refresh = !s->busy && now - s->at_ms >= (int64_t)(e->refresh_s * 1000);
    if (refresh)
        s->busy = 1;
    pthread_mutex_unlock(&rt->mu);
    if (refresh)
        bandit_refresh(w, rt, i, now);
    pthread_mutex_lock(&rt->mu);
    int have = s->have;
    memcpy(out, s->weights, sizeof s->weights);
    pthread_mutex_unlock(&rt->mu);
    return have ? out : NULL;
}

/* Who the assignment sticks to. */
static const char *caller_of(const ah_experiment_cfg_t *e, const ah_request_t *r)
{
    const char *first = e->sticky == AH_STICKY_KEY ? r->key_id : r->user;
    const char *second = e->sticky == AH_STICKY_KEY ? r->user : r->key_id;
    if (first && *first)
        return first;
    if (second && *second)
        return second;
    return r->id;
}

/* The arm's settings, as if the client had sent them. */
static void apply_arm(ah_request_t *r, const ah_experiment_cfg_t *e, const ah_experiment_arm_t *a)
{
    if (a->model)
        r->model = ah_arena_strdup(&r->arena, a->model);
    if (a->prompt)
        json_object_set_new(r->body, "prompt_id", json_string(a->prompt));
    if (a->temperature >= 0) {
        json_object_set_new(r->body, "temperature", json_real(a->temperature));
        r->body_edited = 1;
    }
    if (a->max_tokens > 0) {
        const char *k = json_object_get(r->body, "max_completion_tokens") ? "max_completion_tokens"
                                                                          : "max_tokens";
        json_object_set_new(r->body, k, json_integer(a->max_tokens));
        r->body_edited = 1;
    }
    json_object_set_new(r->tags, "experiment", json_string(e->name));
    json_object_set_new(r->tags, "arm", json_string(a->name));
    size_t n = strlen(e->name) + strlen(a->name) + 2;
    char *h = ah_arena_alloc(&r->arena, n);
    snprintf(h, n, "%s/%s", e->name, a->name);
    r->experiment = h;
}

int ah_stage_experiment(ah_worker_t *w, ah_request_t *r)
{
    const ah_experiments_config_t *ec = &w->gw->cfg->experiments;
    if (!ec->n || r->op != AH_OP_CHAT)
        return 0;
    if (!r->tags)
        r->tags = json_object();
    /* the client does not choose its arm */
    json_object_del(r->tags, "experiment");
    json_object_del(r->tags, "arm");
    /* an offline evaluation compares its own variants: a live experiment
     * must not swap the model under it (docs/evaluation.md) */
    const char *purpose = json_string_value(json_object_get(r->tags, "purpose"));
    if (purpose && (strcmp(purpose, "eval") == 0 || strcmp(purpose, "eval-judge") == 0))
        return 0;
    int i = ah_experiment_find(ec, r->model, r->tags);
    if (i < 0)
        return 0;
    const ah_experiment_cfg_t *e = &ec->list[i];
    double buf[AH_EXPERIMENT_MAX_ARMS];
    const double *weights = current_weights(w, (size_t)i, buf);
    apply_arm(r, e, &e->arms[ah_experiment_pick(e, weights, caller_of(e, r))]);
    return 0;
}
