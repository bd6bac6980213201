/* rank.h - routing by expected accuracy gain per extra dollar (a router's
 * `rank: gain_per_dollar`).
 *
 * A learned router trained on the "gain" target scores s, an estimate of
 * (strong_ok - cheap_ok + 1) / 2, so 2s - 1 is the accuracy the strong model
 * is expected to add on the request (-1 to 1). Divided by what the request
 * costs more on the strong model than on the cheap one, it is the expected
 * gain per extra USD. Sending a request to the strong model when that value
 * reaches a threshold spends the money where it buys the most accuracy: on
 * MMLU it saves far more at 95% of the strong model's accuracy than ranking
 * by s alone, which prefers long (dear) prompts (docs/routing-quality.md).
 *
 * The threshold, min_gain_per_usd, is in requests answered well per USD:
 * 1000 means the strong model is used when each extra request it answers
 * well costs at most $0.001. A complexity score is not calibrated like a
 * learned one (2s - 1 is not an accuracy there), so its threshold is only a
 * cut-off found on labelled data (`ahorro router eval --rank
 * gain_per_dollar`). */
#ifndef AH_ROUTE_RANK_H
#define AH_ROUTE_RANK_H

#include <jansson.h>

#include "config/config.h"

/* Input tokens of a request as the gateway estimates them before the call,
 * from its characters of message text: chars / 4 + 8 (pipeline/route.c;
 * the rpm/tpm limits use the same). */
long ah_rank_est_tokens(long chars);

/* Output tokens to price: rt's expected_output_tokens, or the body's
 * max_completion_tokens (else max_tokens) when that is smaller. */
long ah_rank_output_tokens(const ah_router_cfg_t *rt, const json_t *body);

/* What a request of in_tokens and out_tokens costs more on the strong model
 * than on the cheap one, in USD; prices are USD per million tokens
 * {input, output}. */
double ah_rank_extra_usd(double in_tokens, double out_tokens, const double cheap[2],
                         const double strong[2]);

/* (2 score - 1) / extra_usd. When extra_usd <= 0 (the strong model is not
 * dearer): +INFINITY if score >= 0.5, else -INFINITY. NAN when extra_usd is
 * NAN. */
double ah_rank_gain_per_usd(double score, double extra_usd);

/* The tier of a gain_per_dollar router (two tiers, strong first): the strong
 * one when criticality reaches the router's critical_threshold, or when
 * ah_rank_gain_per_usd(score, extra_usd) >= its min_gain_per_usd; with
 * extra_usd NAN (a price is unknown), when score >= 0.5. *gain (may be NULL)
 * gets the value compared. For a score-ranked router: ah_router_pick. */
const ah_router_tier_t *ah_rank_pick(const ah_router_cfg_t *rt, double score, double criticality,
                                     double extra_usd, double *gain);

#endif
