/* period.h - calendar periods (day, week from Monday, month) in a time zone.
 *
 * C has no per-zone time API, only the process-wide TZ. So the boundaries of
 * a zone's periods are computed once, before the event loops start (TZ set,
 * tzset, mktime, TZ restored), for about a year back and two ahead, and kept
 * as a sorted table: afterwards finding the period of an instant is a binary
 * search any thread may run. Daylight-saving changes fall where the zone's
 * rules put them. Outside the table's range the period is computed in UTC. */
#ifndef AH_PERIOD_H
#define AH_PERIOD_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum { AH_PERIOD_DAY, AH_PERIOD_WEEK, AH_PERIOD_MONTH } ah_period_kind_t;

typedef struct ah_periods {
    ah_period_kind_t kind;
    char zone[64];
    int64_t *starts; /* UTC ms of each period's start, ascending */
    size_t n;
} ah_periods_t;

/* Build the table of kind in zone ("UTC", "Europe/Madrid", ...) around
 * now_ms. Not thread-safe (it sets TZ): call before threads start.
 * AH_E_INVAL when the zone is unknown to the system's zone database. */
ah_err_t ah_periods_build(ah_periods_t *p, ah_period_kind_t kind, const char *zone, int64_t now_ms);
void ah_periods_free(ah_periods_t *p);
/* The period holding t_ms: its start and end (exclusive), UTC ms. */
void ah_periods_find(const ah_periods_t *p, int64_t t_ms, int64_t *start_ms, int64_t *end_ms);
/* Whether the system's zone database knows zone ("UTC" always). */
int ah_period_zone_known(const char *zone);
/* "day", "week", "month"; parse returns AH_E_INVAL on anything else. */
const char *ah_period_name(ah_period_kind_t k);
ah_err_t ah_period_parse(const char *s, ah_period_kind_t *out);

#endif
