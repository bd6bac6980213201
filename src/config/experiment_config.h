/* experiment_config.h - live experiments: a route's traffic split between
 * arms (docs/experiments.md).
 *
 *   ahorro:
 *     experiments:
 *       - name: search-mini
 *         route: gpt-4o              # the requested model or alias it applies to
 *         when: {tags: {feature: search}}   # optional: only requests with these tags
 *         sticky: user               # user (default; falls back to key) | key
 *         arms:
 *           - {name: control, weight: 50, model: gpt-4o}
 *           - {name: mini, weight: 50, model: gpt-4o-mini, prompt: search@2,
 *              temperature: 0.2, max_tokens: 400}
 *         policy: {kind: bandit, min_quality: 0.6, metric: feedback}   # or judge
 *
 * Part of ah_config_t (config.h); loaded and checked by config.c. */
#ifndef AH_EXPERIMENT_CONFIG_H
#define AH_EXPERIMENT_CONFIG_H

#include <stddef.h>

#define AH_EXPERIMENT_MAX 16
#define AH_EXPERIMENT_MAX_ARMS 8
#define AH_EXPERIMENT_MAX_WHEN 4
#define AH_EXPERIMENT_MAX_NAME 64

typedef struct ah_experiment_arm {
    char *name;
    double weight;      /* > 0; relative to the other arms' */
    char *model;        /* alias the arm's requests go to, or NULL: the route itself */
    char *prompt;       /* template "name@v" used as if the client sent prompt_id, or NULL */
    double temperature; /* < 0: unset */
    long max_tokens;    /* 0: unset */
} ah_experiment_arm_t;

typedef enum { AH_STICKY_USER, AH_STICKY_KEY } ah_sticky_t;
typedef enum { AH_POLICY_FIXED, AH_POLICY_BANDIT } ah_policy_kind_t;
/* What a bandit weighs as quality: feedback scores, or live judges' scores
 * (ahorro.judging). */
typedef enum { AH_METRIC_FEEDBACK, AH_METRIC_JUDGE } ah_policy_metric_t;

typedef struct ah_experiment_cfg {
    char *name;
    char *route;
    char *when_key[AH_EXPERIMENT_MAX_WHEN]; /* tag name -> value that must match */
    char *when_value[AH_EXPERIMENT_MAX_WHEN];
    int nwhen;
    ah_sticky_t sticky;
    ah_experiment_arm_t arms[AH_EXPERIMENT_MAX_ARMS];
    int narms;
    ah_policy_kind_t policy;
    ah_policy_metric_t metric; /* bandit: feedback (default) or judge */
    double min_quality; /* bandit: an arm under this mean score keeps only the floor weight */
    double floor;       /* bandit: the least share any arm keeps (exploration) */
    double refresh_s;   /* bandit: how often the weights are recomputed */
    int line;
} ah_experiment_cfg_t;

typedef struct ah_experiments_config {
    ah_experiment_cfg_t *list;
    size_t n;
} ah_experiments_config_t;

#endif
