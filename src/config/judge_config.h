/* judge_config.h - sampled live judging: a share of a route's answers
 * graded by a judge model after the client has them (docs/experiments.md).
 *
 *   ahorro:
 *     judging:
 *       - route: gpt-4o                    # the requested model or alias
 *         judge: gpt-4o-mini               # an alias in model_list, or a router
 *         sample: 0.05                     # share of successful answers judged, 0..1
 *         criteria: [relevance, accuracy]  # optional; default: quality/score.h's rubric
 *         when: {tags: {feature: search}}  # optional: every tag must match
 *
 * Part of ah_config_t (config.h); loaded and checked by config.c. */
#ifndef AH_JUDGE_CONFIG_H
#define AH_JUDGE_CONFIG_H

#include <stddef.h>

#define AH_JUDGING_MAX 16
#define AH_JUDGING_MAX_WHEN 4
/* The rubric's limits, as quality/score.h's ah_judge_prompt takes them. */
#define AH_JUDGING_MAX_CRITERIA 8
#define AH_JUDGING_MAX_CRITERION 32

typedef struct ah_judging_cfg {
    char *route;                             /* requested model or alias judged */
    char *judge;                             /* alias (or router) that grades */
    double sample;                           /* share judged, 0..1 */
    char *criteria[AH_JUDGING_MAX_CRITERIA]; /* [a-z_] names; none: the default rubric */
    int ncriteria;
    char *when_key[AH_JUDGING_MAX_WHEN]; /* tag name -> value that must match */
    char *when_value[AH_JUDGING_MAX_WHEN];
    int nwhen;
    int line;
} ah_judging_cfg_t;

typedef struct ah_judging_config {
    ah_judging_cfg_t *list;
    size_t n;
} ah_judging_config_t;

#endif
