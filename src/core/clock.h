/* clock.h - monotonic and wall clocks in the units the gateway reports. */
#ifndef AH_CLOCK_H
#define AH_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic microseconds, for latencies. */
static inline int64_t ah_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wall-clock milliseconds since the epoch, for ledger timestamps. */
static inline int64_t ah_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
