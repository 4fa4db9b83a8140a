/*
 * Fake event loop for unit tests: records what the library asks of a
 * cf_loop (watched fds, armed timers) and lets the test fire them.
 * Time is virtual: fake_loop_advance() moves it and fires due timers.
 */
#ifndef FAKE_LOOP_H
#define FAKE_LOOP_H

#include <chatfanout/cf_loop.h>

#define FAKE_LOOP_MAX 64

typedef struct fake_io {
  int used;
  int fd;
  int events; /* what the library asked to watch */
  cf_loop_io_cb cb;
  void *arg;
} fake_io;

typedef struct fake_timer {
  int used;
  int armed;
  double due; /* virtual time it fires at */
  cf_loop_timer_cb cb;
  void *arg;
} fake_timer;

typedef struct fake_loop {
  cf_loop loop; /* pass &fl.loop to the library */
  double now;
  fake_io ios[FAKE_LOOP_MAX];
  fake_timer timers[FAKE_LOOP_MAX];
  unsigned long io_sets, timer_sets; /* hook call counts */
} fake_loop;

void fake_loop_init(fake_loop *fl);

/* Number of live io watchers / armed timers. */
int fake_loop_ios(const fake_loop *fl);
int fake_loop_armed(const fake_loop *fl);

/* Fires the io watcher of fd with events (if it watches any of them). */
int fake_loop_fire_io(fake_loop *fl, int fd, int events);

/* Fires every timer due at now + dt (in due order), moving time there.
 * Returns how many fired. Timers armed with 0 fire on advance(0). */
int fake_loop_advance(fake_loop *fl, double dt);

#endif /* FAKE_LOOP_H */
