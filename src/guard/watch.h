/* watch.h - budgets watched ahead: a thread that, every few minutes,
 * forecasts each budget's spend at the end of its period from the ledger's
 * daily series (store/forecast.h) and alerts, once per period, when the
 * projection crosses the limit before the spend does.
 *
 * It has its own read connection to the ledger and posts webhooks with a
 * blocking libcurl call, so neither the event loops nor the ledger writer
 * wait for it. Owned by the gateway's start-up code: ah_guard_watch_start
 * after the guard exists, ah_guard_watch_stop before it is freed. */
#ifndef AH_GUARD_WATCH_H
#define AH_GUARD_WATCH_H

#include "config/config.h"
#include "guard/guard.h"

typedef struct ah_guard_watch ah_guard_watch_t;

/* Start watching cfg's budgets every interval_s seconds (the first check
 * right away). NULL when there is no budget to watch. */
ah_guard_watch_t *ah_guard_watch_start(const ah_config_t *cfg, ah_guard_t *g, const char *db_path,
                                       double interval_s);
/* Stop the thread (waits for a check under way) and free it; w may be NULL. */
void ah_guard_watch_stop(ah_guard_watch_t *w);

/* One round of checks, on the caller's thread (for tests). Returns the
 * number of projection alerts it sent. */
int ah_guard_watch_check(const ah_config_t *cfg, ah_guard_t *g, const char *db_path,
                         int64_t now_ms);

#endif
