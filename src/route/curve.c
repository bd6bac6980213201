/* curve.c - cost-quality curve of a router on labelled data (see curve.h). */
#include "route/curve.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

typedef struct item {
    double s;
    size_t i;
} item_t;

static int cmp_desc(const void *a, const void *b)
{
    const item_t *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

void ah_curve_oracle(const unsigned char *cheap_ok, const unsigned char *strong_ok, size_t n,
                     double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (strong_ok[i] - cheap_ok[i] + 1) / 2.0;
}

ah_curve_point_t ah_curve_at_share(const ah_curve_t *c, double x)
{
    if (c->nv == 0)
        return (ah_curve_point_t){0};
    if (x <= c->v[0].share)
        return c->v[0];
    for (size_t i = 1; i < c->nv; i++) {
        const ah_curve_point_t *a = &c->v[i - 1], *b = &c->v[i];
        if (x <= b->share) {
            double t = b->share > a->share ? (x - a->share) / (b->share - a->share) : 1;
            return (ah_curve_point_t){x, a->acc + t * (b->acc - a->acc),
                                      a->cost + t * (b->cost - a->cost), b->threshold};
        }
    }
    return c->v[c->nv - 1];
}

/* First share where y(share) = acc or PGR reaches want, interpolated; -1 never. */
static double first_reach(const ah_curve_t *c, double want, int pgr, double *cost, double *thr)
{
    double gap = c->acc_strong - c->acc_cheap;
    for (size_t i = 0; i < c->nv; i++) {
        double yi = pgr ? (gap != 0 ? (c->v[i].acc - c->acc_cheap) / gap : 0) : c->v[i].acc;
        if (yi + 1e-12 < want)
            continue;
        if (i == 0) {
            if (cost)
                *cost = c->v[0].cost;
            if (thr)
                *thr = c->v[0].threshold;
            return c->v[0].share;
        }
        const ah_curve_point_t *a = &c->v[i - 1], *b = &c->v[i];
        double ya = pgr ? (gap != 0 ? (a->acc - c->acc_cheap) / gap : 0) : a->acc;
        double t = yi > ya ? (want - ya) / (yi - ya) : 1;
        t = t < 0 ? 0 : t > 1 ? 1 : t;
        if (cost)
            *cost = a->cost + t * (b->cost - a->cost);
        if (thr)
            *thr = b->threshold;
        return a->share + t * (b->share - a->share);
    }
    return -1;
}

ah_err_t ah_curve_compute(const double *score, const unsigned char *cheap_ok,
                          const unsigned char *strong_ok, const double *cost_cheap,
                          const double *cost_strong, size_t n, double target, ah_curve_t *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0 || !(target > 0 && target <= 1))
        return AH_E_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(score[i]))
            return AH_E_INVAL;
    item_t *it = ah_malloc(n * sizeof *it);
    double correct = 0, cost = 0, strong = 0, cs = 0;
    for (size_t i = 0; i < n; i++) {
        it[i] = (item_t){score[i], i};
        correct += cheap_ok[i];
        strong += strong_ok[i];
        cost += cost_cheap ? cost_cheap[i] : 1;
        cs += cost_strong ? cost_strong[i] : 1;
    }
    qsort(it, n, sizeof *it, cmp_desc);
    out->n = n;
    out->target = target;
    out->acc_cheap = correct / (double)n;
    out->acc_strong = strong / (double)n;
    out->cost_cheap = cost;
    out->cost_strong = cs;
    out->v = ah_malloc((n + 1) * sizeof *out->v);
    out->v[0] = (ah_curve_point_t){0, out->acc_cheap, cost, INFINITY};
    out->nv = 1;
    out->acc_best = out->acc_cheap;
    /* One vertex per run of equal scores: the run moves to the strong model. */
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b < n && it[b].s == it[a].s) {
            size_t i = it[b].i;
            correct += (double)strong_ok[i] - cheap_ok[i];
            cost += (cost_strong ? cost_strong[i] : 1) - (cost_cheap ? cost_cheap[i] : 1);
            b++;
        }
        out->v[out->nv++] =
            (ah_curve_point_t){(double)b / (double)n, correct / (double)n, cost, it[a].s};
        if (correct / (double)n > out->acc_best)
            out->acc_best = correct / (double)n;
        a = b;
    }
    ah_free(it);
    double gap = out->acc_strong - out->acc_cheap, area = 0;
    for (size_t i = 1; i < out->nv; i++) {
        const ah_curve_point_t *p = &out->v[i - 1], *q = &out->v[i];
        area += (q->share - p->share) * ((p->acc + q->acc) / 2 - out->acc_cheap);
    }
    out->apgr = gap != 0 ? area / gap : 0;
    out->cpt50 = first_reach(out, 0.5, 1, NULL, NULL);
    out->cpt80 = first_reach(out, 0.8, 1, NULL, NULL);
    out->cost_at_target = -1;
    out->threshold_at_target = NAN;
    out->share_at_target = first_reach(out, target * out->acc_strong, 0, &out->cost_at_target,
                                       &out->threshold_at_target);
    return AH_E_OK;
}

void ah_curve_free(ah_curve_t *c)
{
    ah_free(c->v);
    memset(c, 0, sizeof *c);
}
