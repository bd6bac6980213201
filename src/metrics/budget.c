/* budget.c - budgets as gauges: each configured budget's limit, and what its
 * current period holds (spent plus reserved by requests in flight).
 *
 * Read from the guard's shared counters at scrape time, so there is nothing
 * to count on the request path. A budget that counts each key, user, owner
 * or tag value separately has one counter per value; those values are
 * unbounded (user ids), so such a budget exports its limit only. */
#include <stdio.h>

#include "core/clock.h"
#include "guard/guard.h"
#include "metrics/label.h"
#include "metrics/metrics.h"

static void budget_labels(ah_buf_t *o, const ah_budget_cfg_t *b)
{
    char scope[300];
    ah_guard_scope_describe(&b->scope, b->scope.value, scope, sizeof scope);
    ah_buf_appends(o, "{budget=\"");
    ah_label_escape(o, b->name);
    ah_buf_appends(o, "\",scope=\"");
    ah_label_escape(o, scope);
    ah_buf_appends(o, "\",period=\"");
    ah_buf_appends(o, ah_period_name(b->period));
    ah_buf_appends(o, "\"} ");
}

void ah_metrics_render_budgets(const ah_config_t *cfg, ah_guard_t *g, ah_buf_t *o)
{
    const ah_guard_config_t *gc = &cfg->guard;
    if (!g || !gc->nbudgets)
        return;
    ah_buf_appends(o, "# HELP ahorro_budget_limit_usd A budget's limit per period, in US "
                      "dollars.\n# TYPE ahorro_budget_limit_usd gauge\n");
    for (size_t i = 0; i < gc->nbudgets; i++) {
        ah_buf_appends(o, "ahorro_budget_limit_usd");
        budget_labels(o, &gc->budgets[i]);
        ah_buf_printf(o, "%.17g\n", gc->budgets[i].limit_usd);
    }
    ah_buf_appends(o, "# HELP ahorro_budget_spent_usd What a budget's current period holds: "
                      "spent, and reserved by requests in flight (budgets of one scope value "
                      "only).\n# TYPE ahorro_budget_spent_usd gauge\n");
    int64_t now = ah_wall_ms();
    for (size_t i = 0; i < gc->nbudgets; i++) {
        const ah_budget_cfg_t *b = &gc->budgets[i];
        const char *v = b->scope.kind == AH_SCOPE_GLOBAL ? "*" : b->scope.value;
        if (!v)
            continue;
        int64_t start, end;
        ah_guard_period(g, i, now, &start, &end);
        /* The guard's counter name (pipeline/guard.c, guard/guard.c). */
        char key[600];
        ah_guard_budget_key(i, v, start, key, sizeof key);
        int64_t spent = ah_state_get(ah_guard_state(g), key);
        ah_buf_appends(o, "ahorro_budget_spent_usd");
        budget_labels(o, b);
        ah_buf_printf(o, "%.17g\n", (double)spent / AH_GUARD_NANO);
    }
}
