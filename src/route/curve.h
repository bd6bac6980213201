/* curve.h - what a router is worth on labelled data: its cost-quality curve.
 *
 * A router scores each prompt; a threshold sends the prompts scoring at or
 * above it to the strong model and the rest to the cheap one. Sweeping the
 * threshold from above the highest score to the lowest traces accuracy (share
 * of prompts answered well) against the share of strong-model calls and
 * against cost. Prompts with equal scores cannot be split by a threshold, so
 * within a run of ties the curve is the straight line of routing a random
 * part of them (the expectation), which makes a constant router exactly the
 * random router's diagonal.
 *
 * Figures, as in the RouteLLM paper (Ong et al., 2024):
 *   PGR(x)   (acc(x) - acc_cheap) / (acc_strong - acc_cheap): performance gap
 *            recovered at strong-call share x
 *   APGR     area under PGR over x in [0, 1] (exact, trapezoids over the
 *            curve's vertices): random routing 0.5
 *   CPT(p)   the least strong-call share whose PGR reaches p
 *   share and cost at a quality target: the least strong-call share whose
 *            accuracy reaches target * acc_strong (95% of the strong model's),
 *            the threshold that gives it, and the cost there against the cost
 *            of sending everything to the strong model. */
#ifndef AH_ROUTE_CURVE_H
#define AH_ROUTE_CURVE_H

#include <stddef.h>

#include "core/error.h"

typedef struct ah_curve_point {
    double share;     /* of prompts sent to the strong model */
    double acc;       /* accuracy */
    double cost;      /* total cost, same unit as the inputs */
    double threshold; /* route to strong when score >= threshold */
} ah_curve_point_t;

typedef struct ah_curve {
    size_t n;
    double acc_cheap, acc_strong, acc_best; /* acc_best: highest accuracy on the curve */
    double cost_cheap, cost_strong;         /* totals, all to cheap / all to strong */
    double apgr;
    double cpt50, cpt80;    /* strong-call shares at PGR 0.5 and 0.8; -1 never */
    double target;          /* quality target, e.g. 0.95 */
    double share_at_target; /* -1 when never reached */
    double cost_at_target;  /* total cost there */
    double threshold_at_target;
    ah_curve_point_t *v; /* vertices: share 0 to 1, owned */
    size_t nv;
} ah_curve_t;

/* Compute the curve of scores score[n] against outcomes, with per-prompt
 * costs of each model (cost arrays may be NULL: 1 per call). target in (0, 1].
 * Free with ah_curve_free. AH_E_INVAL when n is 0 or a score is not finite. */
ah_err_t ah_curve_compute(const double *score, const unsigned char *cheap_ok,
                          const unsigned char *strong_ok, const double *cost_cheap,
                          const double *cost_strong, size_t n, double target, ah_curve_t *out);
/* The curve at strong-call share x (linear between vertices). */
ah_curve_point_t ah_curve_at_share(const ah_curve_t *c, double x);
void ah_curve_free(ah_curve_t *c);

/* The oracle's scores: 1 where only the strong model is right, 0.5 where both
 * or neither are, 0 where only the cheap one is. out[n]. */
void ah_curve_oracle(const unsigned char *cheap_ok, const unsigned char *strong_ok, size_t n,
                     double *out);

#endif
