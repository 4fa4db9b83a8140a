#ifndef CFD_CLOCK_H
#define CFD_CLOCK_H

#include <time.h>

/*
 * Seconds on CLOCK_MONOTONIC, for every deadline, rate and timeout the
 * daemon measures itself. libev's ev_now() is wall-clock time: a step
 * of the clock (NTP, date -s, resume) would close every client as idle
 * at once, or stop pings and timeouts for as long as it went back.
 * (libev's own timers already run on the monotonic clock.)
 */
static inline double cfd_mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* CFD_CLOCK_H */
