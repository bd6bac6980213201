/* judging.h - sampled live judging's pure parts (docs/experiments.md):
 * which ahorro.judging entry takes a request, what a judge's verdict
 * scores, and the drift report read from the judgments table.
 *
 * The call to the judge lives in the pipeline (pipeline/judge.c) and the
 * rows are written by store/judgments.h; here nothing does I/O but the
 * report's one query. */
#ifndef AH_JUDGING_H
#define AH_JUDGING_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

/* Rows one drift report reads at most. */
#define AH_DRIFT_MAX_ROWS 1000000

/* The entry (index into jc->list) that judges a request for `model` with
 * `tags` (may be NULL): the first whose route is model and whose tag
 * conditions all hold; -1 when none. */
int ah_judging_find(const ah_judging_config_t *jc, const char *model, const json_t *tags);
/* The rubric of entry j: its own criteria, else quality/score.h's default
 * one. *names is borrowed (the config's, or static); returns how many. */
int ah_judging_criteria(const ah_judging_cfg_t *j, const char *const **names);
/* A verdict's score in [0, 1]: the mean of the n grades (1..10 each)
 * mapped as (s - 1) / 9. NAN when n < 1 or a grade is out of range. */
double ah_judging_score(const int *grades, int n);
/* The grades as a JSON object {"criterion": grade, ...}: a new string the
 * caller frees with ah_free. */
char *ah_judging_grades_json(const char *const *names, const int *grades, int n);

/* Periods of the drift report, in UTC. */
typedef enum { AH_DRIFT_DAY, AH_DRIFT_WEEK } ah_drift_by_t;
/* The start (ms since the epoch) of the day, or of the ISO week (Monday),
 * that holds ts_ms. */
int64_t ah_drift_period_start(int64_t ts_ms, ah_drift_by_t by);

/* The drift report over judgments since since_ms (route NULL: every
 * route): per route and judge, per period, the judgments scored and
 * failed, the mean score with its 95% confidence interval, and the change
 * from the period before with Welch's p-value. *out is a new JSON object
 * (json_decref); AH_E_DB with err on a query failure. */
ah_err_t ah_drift_report(sqlite3 *db, const char *route, int64_t since_ms, ah_drift_by_t by,
                         json_t **out, char *err, size_t errlen);

#endif
