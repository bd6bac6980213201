/* period.c - calendar periods in a time zone (see period.h). */
#include "guard/period.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"

#define BACK_DAYS 400
#define AHEAD_DAYS 800

const char *ah_period_name(ah_period_kind_t k)
{
    return k == AH_PERIOD_DAY ? "day" : k == AH_PERIOD_WEEK ? "week" : "month";
}

ah_err_t ah_period_parse(const char *s, ah_period_kind_t *out)
{
    if (strcmp(s, "day") == 0 || strcmp(s, "daily") == 0)
        *out = AH_PERIOD_DAY;
    else if (strcmp(s, "week") == 0 || strcmp(s, "weekly") == 0)
        *out = AH_PERIOD_WEEK;
    else if (strcmp(s, "month") == 0 || strcmp(s, "monthly") == 0)
        *out = AH_PERIOD_MONTH;
    else
        return AH_E_INVAL;
    return AH_E_OK;
}

/* Whether the zone database knows zone (a file under /usr/share/zoneinfo),
 * so that a typo is an error and not a silent UTC. */
int ah_period_zone_known(const char *zone)
{
    if (strcmp(zone, "UTC") == 0)
        return 1;
    if (!*zone || zone[0] == '/' || strstr(zone, ".."))
        return 0;
    char path[256];
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", zone);
    return access(path, R_OK) == 0;
}

/* Start of the period holding local midnight tm (already at a day start). */
static void align(struct tm *tm, ah_period_kind_t kind)
{
    tm->tm_hour = tm->tm_min = tm->tm_sec = 0;
    if (kind == AH_PERIOD_MONTH)
        tm->tm_mday = 1;
    else if (kind == AH_PERIOD_WEEK)
        tm->tm_mday -= (tm->tm_wday + 6) % 7; /* back to Monday */
    tm->tm_isdst = -1;
}

ah_err_t ah_periods_build(ah_periods_t *p, ah_period_kind_t kind, const char *zone, int64_t now_ms)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    if (!ah_period_zone_known(zone))
        return AH_E_INVAL;
    snprintf(p->zone, sizeof p->zone, "%s", zone);
    const char *old = getenv("TZ");
    char *saved = old ? ah_strdup(old) : NULL;
    setenv("TZ", zone, 1);
    tzset();
    size_t cap = BACK_DAYS + AHEAD_DAYS + 2;
    p->starts = ah_calloc(cap, sizeof *p->starts);
    time_t t = (time_t)(now_ms / 1000) - (time_t)BACK_DAYS * 86400;
    struct tm tm;
    localtime_r(&t, &tm);
    align(&tm, kind);
    for (size_t i = 0; i < cap; i++) {
        struct tm c = tm;
        if (kind == AH_PERIOD_MONTH)
            c.tm_mon += (int)i;
        else
            c.tm_mday += (int)i * (kind == AH_PERIOD_WEEK ? 7 : 1);
        c.tm_isdst = -1;
        time_t s = mktime(&c);
        if (s == (time_t)-1)
            break;
        p->starts[p->n++] = (int64_t)s * 1000;
        if ((int64_t)s * 1000 > now_ms + (int64_t)AHEAD_DAYS * 86400000)
            break;
    }
    if (saved)
        setenv("TZ", saved, 1);
    else
        unsetenv("TZ");
    tzset();
    ah_free(saved);
    return AH_E_OK;
}

void ah_periods_free(ah_periods_t *p)
{
    ah_free(p->starts);
    p->starts = NULL;
    p->n = 0;
}

/* The same in UTC, without a table. */
static void utc_find(ah_period_kind_t kind, int64_t t_ms, int64_t *start, int64_t *end)
{
    time_t t = (time_t)(t_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    align(&tm, kind);
    tm.tm_isdst = 0;
    struct tm e = tm;
    if (kind == AH_PERIOD_MONTH)
        e.tm_mon++;
    else
        e.tm_mday += kind == AH_PERIOD_WEEK ? 7 : 1;
    *start = (int64_t)timegm(&tm) * 1000;
    *end = (int64_t)timegm(&e) * 1000;
}

void ah_periods_find(const ah_periods_t *p, int64_t t_ms, int64_t *start_ms, int64_t *end_ms)
{
    if (p->n < 2 || t_ms < p->starts[0] || t_ms >= p->starts[p->n - 1]) {
        utc_find(p->kind, t_ms, start_ms, end_ms);
        return;
    }
    size_t lo = 0, hi = p->n - 1; /* starts[lo] <= t < starts[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->starts[mid] <= t_ms)
            lo = mid;
        else
            hi = mid;
    }
    *start_ms = p->starts[lo];
    *end_ms = p->starts[hi];
}
