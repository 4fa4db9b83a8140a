/*
 * chatfanoutd: gives freed heap memory back to the system.
 *
 * After a storm of connections (thousands that come and go) glibc keeps
 * the freed chunks for reuse, so the process's RSS stays at the peak
 * although nothing is in use. A timer looks every CFD_TRIM_PERIOD
 * seconds: when RSS has grown by CFD_TRIM_GROWTH bytes since the last
 * trim and the allocator holds at least that much free, it calls
 * malloc_trim(), which returns free pages (a few milliseconds on the
 * loop, once per storm). Without glibc it does nothing.
 */
#ifndef CFD_TRIM_H
#define CFD_TRIM_H

#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#define CFD_TRIM_PERIOD 10.0
#define CFD_TRIM_GROWTH ((size_t)4 << 20)

typedef struct cfd_trim {
  ev_timer timer;
  size_t base;     /* RSS bytes after the last trim (or at start) */
  uint64_t trims;  /* malloc_trim() calls made */
} cfd_trim;

/*
 * 1 when a trim is worth it: rss grew by CFD_TRIM_GROWTH over base and
 * the allocator holds at least that much free, and a quarter of rss.
 */
int cfd_trim_due(size_t base, size_t rss, size_t free_bytes);

/* What the timer does each period; returns 1 when it trimmed. */
int cfd_trim_check(cfd_trim *t);

/* Starts the timer on loop (its watcher has the lowest priority). */
void cfd_trim_start(cfd_trim *t, struct ev_loop *loop);

void cfd_trim_stop(cfd_trim *t, struct ev_loop *loop);

#endif /* CFD_TRIM_H */
