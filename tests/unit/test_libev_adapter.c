/*
 * The header-only libev adapter against a real libev loop: io watchers
 * report readiness of a real pipe, timers fire once after their delay and
 * can be stopped and re-armed, and cf_loop_check accepts the filled table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include <chatfanout/adapters/cf_libev.h>

typedef struct hits {
  int io;
  int io_events;
  int timer;
  struct ev_loop *l;
} hits;

static void on_io(int fd, int events, void *arg) {
  hits *h = arg;
  char c;
  h->io++;
  h->io_events = events;
  assert_int_equal(read(fd, &c, 1), 1);
  ev_break(h->l, EVBREAK_ONE);
}

static void on_timer(void *arg) {
  hits *h = arg;
  h->timer++;
  ev_break(h->l, EVBREAK_ONE);
}

static void test_check(void **state) {
  cf_loop loop;
  (void)state;
  assert_int_equal(cf_libev_init(&loop, EV_DEFAULT), CF_OK);
  assert_int_equal(cf_loop_check(&loop), CF_OK);
  loop.version = 99;
  assert_int_equal(cf_loop_check(&loop), CF_ERR_VERSION);
  loop.version = CF_LOOP_VERSION;
  loop.now = NULL;
  assert_int_equal(cf_loop_check(&loop), CF_ERR_INVALID);
  assert_int_equal(cf_loop_check(NULL), CF_ERR_INVALID);
}

static void test_io(void **state) {
  struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
  cf_loop loop;
  hits h = {0, 0, 0, l};
  int p[2];
  void *io;
  (void)state;
  assert_int_equal(pipe(p), 0);
  cf_libev_init(&loop, l);
  io = loop.io_new(loop.data, p[0], on_io, &h);
  assert_non_null(io);
  /* Not watching yet: a written byte must not be reported. */
  assert_int_equal(write(p[1], "x", 1), 1);
  ev_run(l, EVRUN_NOWAIT);
  assert_int_equal(h.io, 0);
  loop.io_set(loop.data, io, CF_LOOP_READ);
  ev_run(l, 0);
  assert_int_equal(h.io, 1);
  assert_int_equal(h.io_events, CF_LOOP_READ);
  /* Stopped again: nothing more even with data waiting. */
  loop.io_set(loop.data, io, 0);
  assert_int_equal(write(p[1], "y", 1), 1);
  ev_run(l, EVRUN_NOWAIT);
  assert_int_equal(h.io, 1);
  loop.io_free(loop.data, io);
  loop.io_free(loop.data, NULL);
  close(p[0]);
  close(p[1]);
  ev_loop_destroy(l);
}

static void test_timer(void **state) {
  struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
  cf_loop loop;
  hits h = {0, 0, 0, l};
  double t0;
  void *t;
  (void)state;
  cf_libev_init(&loop, l);
  t = loop.timer_new(loop.data, on_timer, &h);
  assert_non_null(t);
  ev_now_update(l);
  t0 = loop.now(loop.data);
  /* Sub-second delays must not round to zero. */
  loop.timer_set(loop.data, t, 0.05);
  ev_run(l, 0);
  assert_int_equal(h.timer, 1);
  assert_true(loop.now(loop.data) - t0 >= 0.04);
  /* A stopped timer never fires; a re-armed one fires once. */
  loop.timer_set(loop.data, t, 0.01);
  loop.timer_set(loop.data, t, -1);
  ev_run(l, EVRUN_NOWAIT);
  assert_int_equal(h.timer, 1);
  loop.timer_set(loop.data, t, 0);
  ev_run(l, 0);
  assert_int_equal(h.timer, 2);
  loop.timer_free(loop.data, t);
  loop.timer_free(loop.data, NULL);
  ev_loop_destroy(l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check),
      cmocka_unit_test(test_io),
      cmocka_unit_test(test_timer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
