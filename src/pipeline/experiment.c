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
 * ledger every policy.refresh_s by a thread of their own (on its own
 * database connection, so the query never stalls a worker's event loop).
 * They are shared with the workers under a mutex, held only to copy eight
 * doubles. */
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "pipeline/pipeline.h"
#include "quality/experiment.h"
#include "store/db.h"
#include "store/ledger_read.h"

/* How far back the bandit looks, how long its query may take, and how
 * often its thread looks for stale weights. */
#define BANDIT_WINDOW_MS (7 * 86400000LL)
#define BANDIT_QUERY_MAX_MS 5000
#define BANDIT_TICK_MS 250

typedef struct exp_state {
    double weights[AH_EXPERIMENT_MAX_ARMS];
    int have;       /* weights were computed at least once */
    int64_t at_ms;  /* when they were last computed (0: never) */
    char note[512]; /* why, as last logged */
} exp_state_t;

struct ah_experiment_rt {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    int running, stop;
    const ah_config_t *cfg;
    char *db_path;
    exp_state_t e[AH_EXPERIMENT_MAX];
};

/* Recompute experiment i's weights from the ledger on db (outside the mutex). */
static void bandit_refresh(ah_experiment_rt_t *rt, sqlite3 *db, size_t i, int64_t now)
{
    const ah_experiment_cfg_t *e = &rt->cfg->experiments.list[i];
    double weights[AH_EXPERIMENT_MAX_ARMS];
    char err[256] = "", note[512] = "";
    json_t *rep = NULL;
    int ok = 0;
    /* A PostgreSQL ledger: the window's rows and feedback, mirrored. */
    sqlite3 *mirror = NULL;
    if (rt->cfg->ledger.url &&
        ah_ledger_read_open(rt->cfg, now - BANDIT_WINDOW_MS, 0, &mirror, err, sizeof err)) {
        ah_warn("experiment %s: the bandit's weights were not updated: %s", e->name, err);
        return;
    }
    if (mirror)
        db = mirror;
    ah_db_deadline_t dl;
    ah_db_deadline_arm(db, &dl, BANDIT_QUERY_MAX_MS);
    if (ah_experiment_report(db, rt->cfg, e->name, now - BANDIT_WINDOW_MS, &rep, err, sizeof err) ==
        AH_E_OK) {
        const json_t *x = json_array_get(json_object_get(rep, "data"), 0);
        ok = ah_experiment_report_weights(x, weights, e->narms) == 0;
        snprintf(note, sizeof note, "%s",
                 json_string_value(json_object_get(json_object_get(x, "policy"), "note")));
    } else {
        ah_warn("experiment %s: the bandit's weights were not updated: %s", e->name, err);
    }
    ah_db_deadline_disarm(db);
    sqlite3_close(mirror);
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
    pthread_mutex_unlock(&rt->mu);
}

/* The bandits' thread: recomputes stale weights on its own connection, so
 * that the ledger query never runs on (and stalls) a worker's event loop. */
static void *bandit_main(void *arg)
{
    ah_experiment_rt_t *rt = arg;
    sqlite3 *db = NULL;
    if (ah_db_open(rt->db_path, &db) != AH_E_OK) {
        ah_error("experiments: the bandits cannot open %s: configured weights stay", rt->db_path);
        return NULL;
    }
    const ah_experiments_config_t *ec = &rt->cfg->experiments;
    pthread_mutex_lock(&rt->mu);
    while (!rt->stop) {
        int64_t now = ah_wall_ms();
        for (size_t i = 0; i < ec->n && !rt->stop; i++) {
            const ah_experiment_cfg_t *e = &ec->list[i];
            if (e->policy != AH_POLICY_BANDIT ||
                (rt->e[i].at_ms && now - rt->e[i].at_ms < (int64_t)(e->refresh_s * 1000)))
                continue;
            pthread_mutex_unlock(&rt->mu);
            bandit_refresh(rt, db, i, now);
            pthread_mutex_lock(&rt->mu);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += BANDIT_TICK_MS * 1000000L;
        ts.tv_sec += ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        if (!rt->stop)
            pthread_cond_timedwait(&rt->cv, &rt->mu, &ts);
    }
    pthread_mutex_unlock(&rt->mu);
    sqlite3_close(db);
    return NULL;
}

ah_experiment_rt_t *ah_experiment_rt_new(const ah_config_t *cfg)
{
    ah_experiment_rt_t *rt = ah_calloc(1, sizeof *rt);
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    rt->cfg = cfg;
    rt->db_path = ah_strdup(cfg->db_path);
    int bandits = 0;
    for (size_t i = 0; i < cfg->experiments.n; i++)
        bandits |= cfg->experiments.list[i].policy == AH_POLICY_BANDIT;
    if (bandits && pthread_create(&rt->thread, NULL, bandit_main, rt) == 0)
        rt->running = 1;
    else if (bandits)
        ah_error("experiments: cannot start the bandits' thread: configured weights stay");
    return rt;
}

void ah_experiment_rt_free(ah_experiment_rt_t *rt)
{
    if (!rt)
        return;
    if (rt->running) {
        pthread_mutex_lock(&rt->mu);
        rt->stop = 1;
        pthread_cond_signal(&rt->cv);
        pthread_mutex_unlock(&rt->mu);
        pthread_join(rt->thread, NULL);
    }
    pthread_cond_destroy(&rt->cv);
    pthread_mutex_destroy(&rt->mu);
    ah_free(rt->db_path);
    ah_free(rt);
}

/* The weights for new assignments: the bandit's when it has them, else
 * NULL (the configured ones). A copy under the mutex: eight doubles. */
static const double *current_weights(ah_worker_t *w, size_t i, double *out)
{
    const ah_experiment_cfg_t *e = &w->gw->cfg->experiments.list[i];
    ah_experiment_rt_t *rt = w->gw->experiments;
    if (e->policy != AH_POLICY_BANDIT || !rt)
        return NULL;
    pthread_mutex_lock(&rt->mu);
    exp_state_t *s = &rt->e[i];
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
