/* rank.c - routing by expected accuracy gain per extra dollar (see rank.h). */
#include "route/rank.h"

#include <math.h>

long ah_rank_est_tokens(long chars)
{
    return (chars > 0 ? chars : 0) / 4 + 8;
}

long ah_rank_output_tokens(const ah_router_cfg_t *rt, const json_t *body)
{
    long n = rt->expected_output_tokens;
    json_t *mt = json_object_get(body, "max_completion_tokens");
    if (!json_is_integer(mt))
        mt = json_object_get(body, "max_tokens");
    if (json_is_integer(mt) && json_integer_value(mt) >= 0 && json_integer_value(mt) < n)
        n = (long)json_integer_value(mt);
    return n;
}

double ah_rank_extra_usd(double in_tokens, double out_tokens, const double cheap[2],
                         const double strong[2])
{
    return (in_tokens * (strong[0] - cheap[0]) + out_tokens * (strong[1] - cheap[1])) / 1e6;
}

double ah_rank_gain_per_usd(double score, double extra_usd)
{
    if (isnan(extra_usd))
        return NAN;
    if (extra_usd <= 0)
        return score >= 0.5 ? INFINITY : -INFINITY;
    return (2 * score - 1) / extra_usd;
}

const ah_router_tier_t *ah_rank_pick(const ah_router_cfg_t *rt, double score, double criticality,
                                     double extra_usd, double *gain)
{
    double g = ah_rank_gain_per_usd(score, extra_usd);
    if (gain)
        *gain = g;
    if (rt->ntiers == 0)
        return NULL;
    if (rt->rank != AH_RANK_GAIN_PER_DOLLAR || isnan(g) || criticality >= rt->critical_threshold)
        return ah_router_pick(rt, score, criticality);
    return &rt->tiers[g >= rt->tiers[0].min_gain_per_usd ? 0 : rt->ntiers - 1];
}
