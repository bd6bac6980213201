/* guard_config.h - the configuration of budgets and rate limits (stage 3).
 *
 *   ahorro:
 *     limits: { default_max_tokens: 4096, budget_forecast_interval_s: 600 }
 *     budgets:
 *       - name: support-monthly
 *         scope: tag:feature=support   # global | key:ID | user:ID | owner:NAME | tag:K=V
 *                                      # (":*" or "tag:K" = each value separately)
 *         period: month                # day | week (from Monday) | month
 *         timezone: Europe/Madrid      # default UTC
 *         limit_usd: 500
 *         alerts: [0.5, 0.8, 1.0]      # the default
 *         webhook: https://hooks.slack.com/services/...
 *         action: reject               # reject | downgrade (downgrade_to) | throttle
 * (throttle_rpm) rate_limits:
 *       - { scope: "key:*", rpm: 60, tpm: 100000 }
 *
 * Part of ah_config_t (config.h); loaded and checked by config.c. */
#ifndef AH_GUARD_CONFIG_H
#define AH_GUARD_CONFIG_H

#include <stddef.h>

#include "guard/period.h"

#define AH_BUDGET_MAX_ALERTS 8

typedef enum {
    AH_SCOPE_GLOBAL,
    AH_SCOPE_KEY,   /* virtual key id */
    AH_SCOPE_USER,  /* the request's user */
    AH_SCOPE_OWNER, /* the key's owner (tenant) */
    AH_SCOPE_TAG,   /* a tag's value */
} ah_scope_kind_t;

/* Whose requests a budget or limit counts. */
typedef struct ah_scope {
    ah_scope_kind_t kind;
    char *tag;   /* AH_SCOPE_TAG: the tag's name */
    char *value; /* one value, or NULL: each value separately */
} ah_scope_t;

typedef enum { AH_BUDGET_REJECT, AH_BUDGET_DOWNGRADE, AH_BUDGET_THROTTLE } ah_budget_action_t;

typedef struct ah_budget_cfg {
    char *name;
    ah_scope_t scope;
    ah_period_kind_t period;
    char *timezone;
    double limit_usd;
    double alerts[AH_BUDGET_MAX_ALERTS]; /* fractions of the limit, ascending */
    int nalerts;
    char *webhook; /* URL, or NULL: alerts in the log only */
    ah_budget_action_t action;
    char *downgrade_to; /* AH_BUDGET_DOWNGRADE: the model alias requests go to instead */
    long throttle_rpm;  /* AH_BUDGET_THROTTLE: requests a minute per scope value once spent */
    int line;
} ah_budget_cfg_t;

typedef struct ah_rate_limit_cfg {
    ah_scope_t scope;
    long rpm, tpm; /* 0: none */
    int line;
} ah_rate_limit_cfg_t;

typedef struct ah_guard_config {
    ah_budget_cfg_t *budgets;
    size_t nbudgets;
    ah_rate_limit_cfg_t *rate_limits;
    size_t nrate_limits;
    long default_max_tokens; /* a request's output bound when it sets none and a budget applies */
    double forecast_interval_s; /* how often budgets are projected to their period's end; 0 off */
} ah_guard_config_t;

#endif
