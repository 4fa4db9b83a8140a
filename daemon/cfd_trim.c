#include "cfd_trim.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "cfd_log.h"

int cfd_trim_due(size_t base, size_t rss, size_t free_bytes) {
  /* A quarter of RSS free at least: a big heap that only churns would
   * otherwise be trimmed (and fault its pages back) every period. */
  return rss >= base && rss - base >= CFD_TRIM_GROWTH &&
         free_bytes >= CFD_TRIM_GROWTH && free_bytes >= rss / 4;
}

/* Resident bytes from /proc/self/statm (second field, in pages); 0 when
 * it cannot be read. */
static size_t rss_bytes(void) {
  char buf[128];
  unsigned long size = 0, res = 0;
  ssize_t n;
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return 0;
  n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return 0;
  buf[n] = '\0';
  if (sscanf(buf, "%lu %lu", &size, &res) != 2)
    return 0;
  return (size_t)res * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t heap_free(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 mi = mallinfo2();
  return mi.fordblks;
#else
  return 0;
#endif
}

int cfd_trim_check(cfd_trim *t) {
  size_t rss = rss_bytes(), after;
  char a[24], b[24];
  if (rss < t->base) {
    t->base = rss; /* follow it down, so growth counts from the low */
    return 0;
  }
  if (!cfd_trim_due(t->base, rss, heap_free()))
    return 0;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  t->trims++;
  after = rss_bytes();
  t->base = after;
  snprintf(a, sizeof(a), "%zu", rss >> 10);
  snprintf(b, sizeof(b), "%zu", after >> 10);
  cfd_log(CFD_LOG_INFO, "memory trimmed", "rss_kib", a, "now_kib", b, NULL);
  return 1;
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  (void)loop;
  (void)revents;
  cfd_trim_check(w->data);
}

void cfd_trim_start(cfd_trim *t, struct ev_loop *loop) {
  t->base = rss_bytes();
  t->trims = 0;
  ev_timer_init(&t->timer, trim_cb, CFD_TRIM_PERIOD, CFD_TRIM_PERIOD);
  ev_set_priority(&t->timer, EV_MINPRI);
  t->timer.data = t;
  ev_timer_start(loop, &t->timer);
}

void cfd_trim_stop(cfd_trim *t, struct ev_loop *loop) {
  ev_timer_stop(loop, &t->timer);
}
