/* The library's monotonic clock: see cf_clock.h. */
#include "cf_clock.h"

#include <time.h>

double cf__mono_now(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
