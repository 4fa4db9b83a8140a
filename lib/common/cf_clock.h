/*
 * Internal: the library's monotonic clock.
 *
 * Two clocks, not to be mixed:
 *   - wall clock: cf_loop.now(), seconds since the epoch. For values
 *     that mean a date: request signing, timestamps written for other
 *     instances or people, absolute expiry times from AWS. It may step
 *     (NTP, `date -s`, a VM resumed), backwards too.
 *   - monotonic clock: cf__mono_now(), seconds from an arbitrary origin,
 *     never stepped. For every interval, pacing, timeout, deadline and
 *     "since" time; the loop's timers run on elapsed time as well.
 */
#ifndef CF_CLOCK_H
#define CF_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (fractions included). */
double cf__mono_now(void);

#endif /* CF_CLOCK_H */
