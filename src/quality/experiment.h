/* experiment.h - live experiments: which arm a request gets, what each arm
 * did, and where a bandit policy would send new traffic (docs/experiments.md).
 *
 * Assignment is a pure function of the experiment's name, the caller's
 * identity and the arms' weights, so every worker (and every restart)
 * agrees without shared state. The report is read from the ledger, the
 * feedback table and the live judges' judgments; the same JSON serves
 * `ahorro experiments show --json` and GET /admin/experiments. */
#ifndef AH_EXPERIMENT_H
#define AH_EXPERIMENT_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

/* Least scored requests an arm needs before a bandit policy weighs it. */
#define AH_EXPERIMENT_BANDIT_MIN_N 10
/* Rows one report reads at most (latency percentiles keep each one). */
#define AH_EXPERIMENT_REPORT_MAX_ROWS 1000000

/* The experiment (index into ec->list) a request for `model` with `tags`
 * (a JSON object, may be NULL) takes part in: the first whose route is
 * model and whose tag conditions all hold; -1 when none. */
int ah_experiment_find(const ah_experiments_config_t *ec, const char *model, const json_t *tags);
/* 1 when every one of the n `when` conditions holds in tags (the tag
 * keys[i] is present with exactly values[i]); the rule experiments and live
 * judging (quality/judging.h) share. tags may be NULL. */
int ah_when_tags_hold(const json_t *tags, char *const *keys, char *const *values, int n);
/* The arm for caller `who` (user, key id or request id): FNV-1a of the
 * experiment's name and who, as a point in [0, 1), on the cumulative
 * weights (NULL: the configured ones). Same inputs, same arm. */
int ah_experiment_pick(const ah_experiment_cfg_t *e, const double *weights, const char *who);

/* What the bandit policy knows of an arm. */
typedef struct ah_experiment_arm_stats {
    long scored;       /* requests with a score of the policy's metric (feedback or judge) */
    double score_mean; /* their mean score, 0..1 */
    double cost_mean;  /* USD per request; <= 0: unknown or free */
} ah_experiment_arm_stats_t;

/* The bandit's weights for new assignments (they sum to 1) into weights,
 * and why, into why: the arm with the best quality per dollar among those
 * with AH_EXPERIMENT_BANDIT_MIN_N scores and a mean at or above
 * min_quality gets all but `floor` per other arm; without such an arm the
 * configured weights stay. Returns the winner's index, or -1. */
int ah_experiment_bandit(const ah_experiment_cfg_t *e, const ah_experiment_arm_stats_t *arms,
                         double *weights, char *why, size_t whylen);

/* The report of every experiment of cfg (or only `name`, when not NULL)
 * over ledger rows since since_ms: per arm, requests, cost, latency,
 * errors, feedback, live judges' scores, quality per dollar and the
 * comparison with the first arm; the bandit's weights; satisfaction by
 * feature, route and arm. On
 * success *out is a new JSON object the caller releases with json_decref;
 * AH_E_NOTFOUND when name is not configured; AH_E_DB with err on a query
 * failure. */
ah_err_t ah_experiment_report(sqlite3 *db, const ah_config_t *cfg, const char *name,
                              int64_t since_ms, json_t **out, char *err, size_t errlen);
/* The weights a bandit experiment's report computed ("weights_now"), into
 * weights (narms of them); 0, or -1 when the report has none. */
int ah_experiment_report_weights(const json_t *report_exp, double *weights, int narms);

#endif
