/*
 * libchatfanout - the event-loop boundary.
 *
 * The library never runs or links an event loop. An object that needs file
 * descriptors watched or timers armed (a queue backend) is given a cf_loop:
 * a table of hooks that an adapter fills for the host loop. The library
 * calls the hooks; the adapter calls back the cf_loop_io_cb/cf_loop_timer_cb
 * it was handed when the fd is ready or the timer fires.
 *
 * The library copies the struct when it is given one, so the caller may
 * discard its copy; the loop itself (`data`) must outlive every object
 * using it. Hooks are called only from the loop's thread.
 *
 * A ready-made adapter for libev is in <chatfanout/adapters/cf_libev.h>:
 *
 *   cf_loop loop;
 *   cf_libev_init(&loop, EV_DEFAULT);
 *   cf_queue_local_new(&q, bus, &loop, 0, NULL);
 */
#ifndef CHATFANOUT_CF_LOOP_H
#define CHATFANOUT_CF_LOOP_H

#include <chatfanout/cf_common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CF_LOOP_VERSION 1u

/* Event bits for io hooks and callbacks. */
#define CF_LOOP_READ 0x1
#define CF_LOOP_WRITE 0x2

/* Called by the adapter when fd is ready; events is CF_LOOP_READ|WRITE. */
typedef void (*cf_loop_io_cb)(int fd, int events, void *arg);

/* Called by the adapter when a timer expires (one-shot). */
typedef void (*cf_loop_timer_cb)(void *arg);

typedef struct cf_loop {
  uint32_t version; /* CF_LOOP_VERSION */
  void *data;       /* the host loop; first argument of every hook */

  /*
   * Creates a watcher for fd, initially watching nothing. cb(fd, events,
   * arg) runs on readiness. Returns an adapter-owned handle, NULL when out
   * of memory.
   */
  void *(*io_new)(void *data, int fd, cf_loop_io_cb cb, void *arg);
  /* Sets the watched events (0 stops watching). */
  void (*io_set)(void *data, void *io, int events);
  /* Stops and frees a watcher from io_new. Accepts NULL. */
  void (*io_free)(void *data, void *io);

  /* Creates a stopped one-shot timer. NULL when out of memory. */
  void *(*timer_new)(void *data, cf_loop_timer_cb cb, void *arg);
  /*
   * (Re)arms the timer to fire after `after` seconds (fractions allowed,
   * 0 means on the next loop iteration); a negative value stops it.
   */
  void (*timer_set)(void *data, void *timer, double after);
  /* Stops and frees a timer from timer_new. Accepts NULL. */
  void (*timer_free)(void *data, void *timer);

  /*
   * Current wall-clock time in seconds since the epoch (cached is fine).
   * Read only for values that mean a date (request signing, timestamps,
   * credential expiry); intervals, timeouts and pacing use the library's
   * own monotonic clock, so a step of the wall clock does not stretch or
   * cut them.
   */
  double (*now)(void *data);
} cf_loop;

/*
 * Returns CF_OK when every hook of loop is set and its version supported,
 * CF_ERR_INVALID for a NULL loop or hook, CF_ERR_VERSION otherwise.
 */
CF_API int cf_loop_check(const cf_loop *loop);

#ifdef __cplusplus
}
#endif

#endif /* CHATFANOUT_CF_LOOP_H */
