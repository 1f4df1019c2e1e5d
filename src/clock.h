/*
 * clock: the monotonic clock, for timeouts, back-off and progress (never for dates: those
 * come from dates_now_ms, the wall clock). Shared by partnerd and partnerctl.
 */
#ifndef PARTNERD_CLOCK_H
#define PARTNERD_CLOCK_H

#include <stdint.h>

int64_t mono_ms(void);  /* CLOCK_MONOTONIC in milliseconds */
int64_t mono_ns(void);  /* CLOCK_MONOTONIC in nanoseconds */

#endif
