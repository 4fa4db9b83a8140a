/*
 * libchatfanout - header-only libev adapter for cf_loop.
 *
 * Only the application compiles this file, so the library itself never
 * links libev. Include it after <ev.h>:
 *
 *   #include <ev.h>
 *   #include <chatfanout/adapters/cf_libev.h>
 *
 *   cf_loop loop;
 *   cf_libev_init(&loop, EV_DEFAULT);
 *
 * Watchers are allocated with malloc; a failed allocation makes io_new or
 * timer_new return NULL, which the library reports as CF_ERR_NOMEM.
 */
#ifndef CHATFANOUT_ADAPTERS_CF_LIBEV_H
#define CHATFANOUT_ADAPTERS_CF_LIBEV_H

#include <stdlib.h>
#include <ev.h>

#include <chatfanout/cf_loop.h>

typedef struct cf_libev_io {
  ev_io w;
  cf_loop_io_cb cb;
  void *arg;
} cf_libev_io;

typedef struct cf_libev_timer {
  ev_timer w;
  cf_loop_timer_cb cb;
  void *arg;
} cf_libev_timer;

static void cf_libev_io_fire(struct ev_loop *l, ev_io *w, int revents) {
  cf_libev_io *io = (cf_libev_io *)w;
  int ev = 0;
  (void)l;
  if (revents & EV_READ)
    ev |= CF_LOOP_READ;
  if (revents & EV_WRITE)
    ev |= CF_LOOP_WRITE;
  io->cb(w->fd, ev, io->arg);
}

static void cf_libev_timer_fire(struct ev_loop *l, ev_timer *w, int revents) {
  cf_libev_timer *t = (cf_libev_timer *)w;
  (void)l;
  (void)revents;
  t->cb(t->arg);
}

static void *cf_libev_io_new(void *data, int fd, cf_loop_io_cb cb,
                             void *arg) {
  cf_libev_io *io = (cf_libev_io *)malloc(sizeof(*io));
  (void)data;
  if (io == NULL)
    return NULL;
  ev_io_init(&io->w, cf_libev_io_fire, fd, 0);
  io->cb = cb;
  io->arg = arg;
  return io;
}

static void cf_libev_io_set(void *data, void *handle, int events) {
  struct ev_loop *l = (struct ev_loop *)data;
  cf_libev_io *io = (cf_libev_io *)handle;
  int ev = ((events & CF_LOOP_READ) ? EV_READ : 0) |
           ((events & CF_LOOP_WRITE) ? EV_WRITE : 0);
  if (ev_is_active(&io->w) && (io->w.events & (EV_READ | EV_WRITE)) == ev)
    return;
  ev_io_stop(l, &io->w);
  if (ev == 0)
    return;
  ev_io_set(&io->w, io->w.fd, ev);
  ev_io_start(l, &io->w);
}

static void cf_libev_io_free(void *data, void *handle) {
  cf_libev_io *io = (cf_libev_io *)handle;
  if (io == NULL)
    return;
  ev_io_stop((struct ev_loop *)data, &io->w);
  free(io);
}

static void *cf_libev_timer_new(void *data, cf_loop_timer_cb cb, void *arg) {
  cf_libev_timer *t = (cf_libev_timer *)malloc(sizeof(*t));
  (void)data;
  if (t == NULL)
    return NULL;
  ev_timer_init(&t->w, cf_libev_timer_fire, 0., 0.);
  t->cb = cb;
  t->arg = arg;
  return t;
}

static void cf_libev_timer_set(void *data, void *handle, double after) {
  struct ev_loop *l = (struct ev_loop *)data;
  cf_libev_timer *t = (cf_libev_timer *)handle;
  ev_timer_stop(l, &t->w);
  if (after < 0)
    return;
  ev_timer_set(&t->w, after, 0.);
  ev_timer_start(l, &t->w);
}

static void cf_libev_timer_free(void *data, void *handle) {
  cf_libev_timer *t = (cf_libev_timer *)handle;
  if (t == NULL)
    return;
  ev_timer_stop((struct ev_loop *)data, &t->w);
  free(t);
}

static double cf_libev_now(void *data) {
  return ev_now((struct ev_loop *)data);
}

/* Fills loop with hooks driving the libev loop l. Always returns CF_OK. */
static inline int cf_libev_init(cf_loop *loop, struct ev_loop *l) {
  loop->version = CF_LOOP_VERSION;
  loop->data = l;
  loop->io_new = cf_libev_io_new;
  loop->io_set = cf_libev_io_set;
  loop->io_free = cf_libev_io_free;
  loop->timer_new = cf_libev_timer_new;
  loop->timer_set = cf_libev_timer_set;
  loop->timer_free = cf_libev_timer_free;
  loop->now = cf_libev_now;
  return CF_OK;
}

#endif /* CHATFANOUT_ADAPTERS_CF_LIBEV_H */
