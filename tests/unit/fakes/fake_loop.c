#include "fake_loop.h"

#include <string.h>

static void *fl_io_new(void *data, int fd, cf_loop_io_cb cb, void *arg) {
  fake_loop *fl = data;
  int i;
  for (i = 0; i < FAKE_LOOP_MAX; i++) {
    if (!fl->ios[i].used) {
      fl->ios[i] = (fake_io){1, fd, 0, cb, arg};
      return &fl->ios[i];
    }
  }
  return NULL;
}

static void fl_io_set(void *data, void *io, int events) {
  fake_loop *fl = data;
  fl->io_sets++;
  ((fake_io *)io)->events = events;
}

static void fl_io_free(void *data, void *io) {
  (void)data;
  if (io != NULL)
    memset(io, 0, sizeof(fake_io));
}

static void *fl_timer_new(void *data, cf_loop_timer_cb cb, void *arg) {
  fake_loop *fl = data;
  int i;
  for (i = 0; i < FAKE_LOOP_MAX; i++) {
    if (!fl->timers[i].used) {
      fl->timers[i] = (fake_timer){1, 0, 0., cb, arg};
      return &fl->timers[i];
    }
  }
  return NULL;
}

static void fl_timer_set(void *data, void *timer, double after) {
  fake_loop *fl = data;
  fake_timer *t = timer;
  fl->timer_sets++;
  t->armed = after >= 0;
  t->due = fl->now + (after > 0 ? after : 0);
}

static void fl_timer_free(void *data, void *timer) {
  (void)data;
  if (timer != NULL)
    memset(timer, 0, sizeof(fake_timer));
}

static double fl_now(void *data) {
  return ((fake_loop *)data)->now;
}

void fake_loop_init(fake_loop *fl) {
  memset(fl, 0, sizeof(*fl));
  fl->now = 1000000.0;
  fl->loop.version = CF_LOOP_VERSION;
  fl->loop.data = fl;
  fl->loop.io_new = fl_io_new;
  fl->loop.io_set = fl_io_set;
  fl->loop.io_free = fl_io_free;
  fl->loop.timer_new = fl_timer_new;
  fl->loop.timer_set = fl_timer_set;
  fl->loop.timer_free = fl_timer_free;
  fl->loop.now = fl_now;
}

int fake_loop_ios(const fake_loop *fl) {
  int i, n = 0;
  for (i = 0; i < FAKE_LOOP_MAX; i++)
    n += fl->ios[i].used;
  return n;
}

int fake_loop_armed(const fake_loop *fl) {
  int i, n = 0;
  for (i = 0; i < FAKE_LOOP_MAX; i++)
    n += fl->timers[i].used && fl->timers[i].armed;
  return n;
}

int fake_loop_fire_io(fake_loop *fl, int fd, int events) {
  int i;
  for (i = 0; i < FAKE_LOOP_MAX; i++) {
    fake_io *io = &fl->ios[i];
    if (io->used && io->fd == fd && (io->events & events)) {
      io->cb(fd, io->events & events, io->arg);
      return 1;
    }
  }
  return 0;
}

static fake_timer *next_due(fake_loop *fl, double until) {
  fake_timer *best = NULL;
  int i;
  for (i = 0; i < FAKE_LOOP_MAX; i++) {
    fake_timer *t = &fl->timers[i];
    if (t->used && t->armed && t->due <= until &&
        (best == NULL || t->due < best->due))
      best = t;
  }
  return best;
}

int fake_loop_advance(fake_loop *fl, double dt) {
  double until = fl->now + dt;
  fake_timer *t;
  int n = 0;
  /* Bounded so a timer that re-arms itself at 0 cannot spin forever. */
  while (n < 10000 && (t = next_due(fl, until)) != NULL) {
    if (t->due > fl->now)
      fl->now = t->due;
    t->armed = 0;
    t->cb(t->arg);
    n++;
  }
  fl->now = until;
  return n;
}
