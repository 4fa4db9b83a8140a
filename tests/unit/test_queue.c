/* The cf_queue wrapper, driven through an in-memory fake backend. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include <chatfanout/cf_queue.h>

#include "cf_queue_int.h"
#include "test_mem.h"

/* --- fake backend -------------------------------------------------------- */

typedef struct fake {
  cf_queue *q;          /* set by the test once created */
  int start_rv;         /* what start returns */
  int publish_rv;
  int report_in_start;  /* start reports this state when >= 0 */
  int starts, publishes, flushes, destroys;
  double last_timeout;
  cf_envelope last_env;
  const char *err;      /* what errmsg returns */
  int stats_calls;
} fake;

static int fake_start(void *impl) {
  fake *f = impl;
  f->starts++;
  if (f->start_rv == CF_OK && f->report_in_start >= 0)
    cf_queue_report_state(f->q, f->report_in_start);
  return f->start_rv;
}

static int fake_publish(void *impl, const cf_envelope *env) {
  fake *f = impl;
  f->publishes++;
  f->last_env = *env;
  return f->publish_rv;
}

static int fake_flush(void *impl, double timeout) {
  fake *f = impl;
  f->flushes++;
  f->last_timeout = timeout;
  cf_queue_report_state(f->q, CF_QUEUE_STOPPED);
  return CF_OK;
}

static void fake_destroy(void *impl) {
  ((fake *)impl)->destroys++;
}

static const char *fake_errmsg(void *impl) {
  return ((fake *)impl)->err;
}

/* Fills its own fields, and tries to overwrite the wrapper's. */
static void fake_stats(void *impl, cf_queue_stats *st) {
  fake *f = impl;

  f->stats_calls++;
  /* Called on a zeroed struct. */
  assert_int_equal(st->requests, 0);
  assert_int_equal(st->dropped, 0);
  st->published = 999;
  st->publish_errors = 999;
  st->received = 999;
  st->requests = 10;
  st->request_errors = 11;
  st->retries = 12;
  st->buffered_bytes = 13;
  st->dropped = 14;
}

static const cf_queue_ops fake_ops = {
    .version = CF_QUEUE_OPS_VERSION,
    .name = "fake",
    .start = fake_start,
    .publish = fake_publish,
    .flush = fake_flush,
    .destroy = fake_destroy,
    .errmsg = fake_errmsg,
    .stats = fake_stats,
};

/* --- what the callbacks saw --------------------------------------------- */

typedef struct seen {
  int messages, states;
  int last_state;
  const cf_envelope *last_env;
  cf_queue *last_q;
  int free_on_message; /* free the queue from on_message */
  int free_on_state;
  int report_after_free; /* then report more, which must be ignored */
  unsigned long destroys_in_cb; /* fake destroys seen inside the cb */
  fake *f;
} seen;

static void on_message(cf_queue *q, const cf_envelope *env, void *ud) {
  seen *s = ud;
  s->messages++;
  s->last_env = env;
  s->last_q = q;
  if (s->free_on_message) {
    cf_queue_free(q);
    s->destroys_in_cb = (unsigned long)s->f->destroys;
    if (s->report_after_free) {
      cf_queue_report_state(q, CF_QUEUE_DOWN);
      cf_queue_report_message(q, env);
    }
  }
}

static void on_state(cf_queue *q, int state, void *ud) {
  seen *s = ud;
  s->states++;
  s->last_state = state;
  s->last_q = q;
  if (s->free_on_state) {
    cf_queue_free(q);
    s->destroys_in_cb = (unsigned long)s->f->destroys;
  }
}

static const cf_queue_callbacks cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                       on_message, on_state};

/* --- fixture ------------------------------------------------------------ */

typedef struct fx {
  test_mem tm;
  fake f;
  seen s;
  cf_queue *q;
} fx;

static fx X;

static int setup(void **state) {
  (void)state;
  memset(&X, 0, sizeof(X));
  test_mem_init(&X.tm, 0);
  X.f.report_in_start = CF_QUEUE_UP;
  X.s.f = &X.f;
  X.s.last_state = -1;
  assert_int_equal(cf_queue_new(&X.q, &fake_ops, &X.f, &X.tm.mem), CF_OK);
  X.f.q = X.q;
  assert_int_equal(cf_queue_set_callbacks(X.q, &cbs, &X.s), CF_OK);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cf_queue_free(X.q); /* tests that free it themselves set X.q NULL */
  assert_int_equal(X.tm.live, 0);
  return 0;
}

static cf_envelope env_ok(void) {
  cf_envelope e = {0xa1, 1, 5, "lobby", 5, CF_MSG_TEXT, "hi", 2};
  return e;
}

/* --- tests ---------------------------------------------------------------- */

static void test_new_checks(void **state) {
  test_mem tm;
  cf_queue *q = (cf_queue *)&q;
  cf_queue_ops ops = fake_ops;
  fake f;

  (void)state;
  memset(&f, 0, sizeof(f));
  test_mem_init(&tm, 0);
  assert_int_equal(cf_queue_new(NULL, &ops, &f, &tm.mem), CF_ERR_INVALID);
  assert_int_equal(cf_queue_new(&q, NULL, &f, &tm.mem), CF_ERR_INVALID);
  assert_null(q);
  ops.version = 0;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_VERSION);
  ops.version = CF_QUEUE_OPS_VERSION + 1;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_VERSION);
  ops = fake_ops, ops.name = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_INVALID);
  ops = fake_ops, ops.start = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_INVALID);
  ops = fake_ops, ops.publish = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_INVALID);
  ops = fake_ops, ops.flush = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_INVALID);
  ops = fake_ops, ops.destroy = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_ERR_INVALID);
  /* impl stays the caller's on INVALID and VERSION. */
  assert_int_equal(f.destroys, 0);
  assert_int_equal(tm.live, 0);

  /* On NOMEM impl is the queue's already: destroyed. */
  test_mem_init(&tm, 1);
  assert_int_equal(cf_queue_new(&q, &fake_ops, &f, &tm.mem), CF_ERR_NOMEM);
  assert_null(q);
  assert_int_equal(f.destroys, 1);
  assert_int_equal(tm.live, 0);

  /* errmsg is optional; the ops table is copied. */
  ops = fake_ops, ops.errmsg = NULL;
  test_mem_init(&tm, 0);
  assert_int_equal(cf_queue_new(&q, &ops, &f, &tm.mem), CF_OK);
  memset(&ops, 0, sizeof(ops));
  assert_string_equal(cf_queue_name(q), "fake");
  assert_string_equal(cf_queue_errmsg(q), "");
  assert_int_equal(cf_queue_state_get(q), CF_QUEUE_STOPPED);
  cf_queue_free(q);
  assert_int_equal(f.destroys, 2);
  assert_int_equal(tm.live, 0);
}

static void test_libc_allocator(void **state) {
  cf_queue *q;
  fake f;

  (void)state;
  memset(&f, 0, sizeof(f));
  assert_int_equal(cf_queue_new(&q, &fake_ops, &f, NULL), CF_OK);
  cf_queue_free(q);
  assert_int_equal(f.destroys, 1);
}

static void test_null_queue(void **state) {
  cf_envelope e = env_ok();

  (void)state;
  cf_queue_free(NULL);
  assert_int_equal(cf_queue_set_callbacks(NULL, &cbs, NULL),
                   CF_ERR_INVALID);
  assert_int_equal(cf_queue_start(NULL), CF_ERR_INVALID);
  assert_int_equal(cf_queue_publish(NULL, &e), CF_ERR_INVALID);
  assert_int_equal(cf_queue_flush(NULL, 1.0), CF_ERR_INVALID);
  assert_int_equal(cf_queue_state_get(NULL), CF_QUEUE_STOPPED);
  assert_string_equal(cf_queue_name(NULL), "");
  assert_string_equal(cf_queue_errmsg(NULL), "");
  cf_queue_report_message(NULL, &e);
  cf_queue_report_state(NULL, CF_QUEUE_UP);
}

static void test_set_callbacks(void **state) {
  cf_queue_callbacks c = cbs;
  cf_envelope e = env_ok();

  (void)state;
  assert_int_equal(cf_queue_set_callbacks(X.q, NULL, NULL), CF_ERR_INVALID);
  c.version = 0;
  assert_int_equal(cf_queue_set_callbacks(X.q, &c, NULL), CF_ERR_VERSION);
  c.version = CF_QUEUE_CALLBACKS_VERSION + 1;
  assert_int_equal(cf_queue_set_callbacks(X.q, &c, NULL), CF_ERR_VERSION);
  /* The failed calls left the old callbacks in place. */
  cf_queue_report_message(X.q, &e);
  assert_int_equal(X.s.messages, 1);

  /* NULL slots are skipped; the struct is copied. */
  c = cbs;
  c.on_message = NULL;
  assert_int_equal(cf_queue_set_callbacks(X.q, &c, &X.s), CF_OK);
  memset(&c, 0, sizeof(c));
  cf_queue_report_message(X.q, &e);
  assert_int_equal(X.s.messages, 1);
  cf_queue_report_state(X.q, CF_QUEUE_DOWN);
  assert_int_equal(X.s.states, 1);
  assert_int_equal(cf_queue_state_get(X.q), CF_QUEUE_DOWN);
}

static void test_start(void **state) {
  (void)state;
  X.f.start_rv = CF_ERR_BACKEND;
  assert_int_equal(cf_queue_start(X.q), CF_ERR_BACKEND);
  assert_int_equal(X.s.states, 0);
  /* A failed start can be retried. */
  X.f.start_rv = CF_OK;
  assert_int_equal(cf_queue_start(X.q), CF_OK);
  assert_int_equal(X.f.starts, 2);
  assert_int_equal(X.s.states, 1);
  assert_int_equal(X.s.last_state, CF_QUEUE_UP);
  assert_ptr_equal(X.s.last_q, X.q);
  assert_int_equal(cf_queue_state_get(X.q), CF_QUEUE_UP);
  assert_int_equal(cf_queue_start(X.q), CF_ERR_STATE);
  assert_int_equal(X.f.starts, 2);
  /* Stopped by flush, it may start again. */
  assert_int_equal(cf_queue_flush(X.q, 2.5), CF_OK);
  assert_int_equal(X.f.flushes, 1);
  assert_true(X.f.last_timeout == 2.5);
  assert_int_equal(X.s.last_state, CF_QUEUE_STOPPED);
  assert_int_equal(cf_queue_start(X.q), CF_OK);
  assert_int_equal(X.f.starts, 3);
}

static void test_publish(void **state) {
  cf_envelope e = env_ok(), bad;

  (void)state;
  assert_int_equal(cf_queue_publish(X.q, &e), CF_OK);
  assert_int_equal(X.f.publishes, 1);
  assert_ptr_equal(X.f.last_env.data, e.data);
  X.f.publish_rv = CF_ERR_QUEUE_FULL;
  assert_int_equal(cf_queue_publish(X.q, &e), CF_ERR_QUEUE_FULL);
  assert_int_equal(X.f.publishes, 2);
  /* Broken envelopes never reach the backend. */
  assert_int_equal(cf_queue_publish(X.q, NULL), CF_ERR_INVALID);
  bad = e, bad.origin = 0;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  bad = e, bad.seq = 0;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  bad = e, bad.room_len = 0;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  bad = e, bad.room_len = CF_ROOM_MAX + 1;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  bad = e, bad.flags = CF_MSG_RAW;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  bad = e, bad.data = NULL;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  assert_int_equal(X.f.publishes, 2);
}

static void test_flush_args(void **state) {
  (void)state;
  assert_int_equal(cf_queue_flush(X.q, -1.0), CF_ERR_INVALID);
  assert_int_equal(cf_queue_flush(X.q, NAN), CF_ERR_INVALID);
  assert_int_equal(X.f.flushes, 0);
  assert_int_equal(cf_queue_flush(X.q, 0.0), CF_OK);
  assert_int_equal(X.f.flushes, 1);
}

static void test_report_state(void **state) {
  (void)state;
  /* Unchanged states are not reported. */
  cf_queue_report_state(X.q, CF_QUEUE_STOPPED);
  assert_int_equal(X.s.states, 0);
  cf_queue_report_state(X.q, CF_QUEUE_STARTING);
  cf_queue_report_state(X.q, CF_QUEUE_STARTING);
  cf_queue_report_state(X.q, CF_QUEUE_UP);
  cf_queue_report_state(X.q, CF_QUEUE_UP);
  cf_queue_report_state(X.q, CF_QUEUE_DEGRADED);
  assert_int_equal(X.s.states, 3);
  assert_int_equal(X.s.last_state, CF_QUEUE_DEGRADED);
  /* Out-of-range states are a backend bug and ignored. */
  cf_queue_report_state(X.q, 99);
  cf_queue_report_state(X.q, -1);
  assert_int_equal(X.s.states, 3);
  assert_int_equal(cf_queue_state_get(X.q), CF_QUEUE_DEGRADED);
}

static void test_state_names(void **state) {
  (void)state;
  assert_string_equal(cf_queue_state_name(CF_QUEUE_STOPPED), "stopped");
  assert_string_equal(cf_queue_state_name(CF_QUEUE_STARTING), "starting");
  assert_string_equal(cf_queue_state_name(CF_QUEUE_UP), "up");
  assert_string_equal(cf_queue_state_name(CF_QUEUE_DEGRADED), "degraded");
  assert_string_equal(cf_queue_state_name(CF_QUEUE_DOWN), "down");
  assert_string_equal(cf_queue_state_name(5), "unknown");
  assert_string_equal(cf_queue_state_name(-1), "unknown");
}

static void test_errmsg(void **state) {
  (void)state;
  assert_string_equal(cf_queue_errmsg(X.q), ""); /* backend said NULL */
  X.f.err = "HTTP 403 AccessDenied";
  assert_string_equal(cf_queue_errmsg(X.q), "HTTP 403 AccessDenied");
  assert_string_equal(cf_queue_name(X.q), "fake");
}

static void test_report_message(void **state) {
  cf_envelope e = env_ok();

  (void)state;
  cf_queue_report_message(X.q, &e);
  assert_int_equal(X.s.messages, 1);
  assert_ptr_equal(X.s.last_env, &e); /* borrowed, not copied */
  assert_ptr_equal(X.s.last_q, X.q);
  cf_queue_report_message(X.q, NULL);
  assert_int_equal(X.s.messages, 1);
}

static cf_queue_stats qstats(cf_queue *q) {
  cf_queue_stats st;

  memset(&st, 0xab, sizeof(st));
  cf_queue_get_stats(q, &st, sizeof(st));
  return st;
}

static void test_stats(void **state) {
  static const cf_queue_callbacks none = {CF_QUEUE_CALLBACKS_VERSION,
                                          NULL, NULL};
  cf_envelope e = env_ok(), bad = env_ok();
  cf_queue_stats st;

  (void)state;
  st = qstats(X.q);
  assert_int_equal(st.published, 0);
  assert_int_equal(st.publish_errors, 0);
  assert_int_equal(st.received, 0);
  assert_int_equal(X.f.stats_calls, 1);

  assert_int_equal(cf_queue_publish(X.q, &e), CF_OK);
  assert_int_equal(cf_queue_publish(X.q, &e), CF_OK);
  X.f.publish_rv = CF_ERR_QUEUE_FULL;
  assert_int_equal(cf_queue_publish(X.q, &e), CF_ERR_QUEUE_FULL);
  X.f.publish_rv = CF_ERR_TOO_BIG;
  assert_int_equal(cf_queue_publish(X.q, &e), CF_ERR_TOO_BIG);
  /* Refused by the wrapper: lost all the same. */
  bad.seq = 0;
  assert_int_equal(cf_queue_publish(X.q, &bad), CF_ERR_INVALID);
  assert_int_equal(cf_queue_publish(NULL, &e), CF_ERR_INVALID);
  cf_queue_report_message(X.q, &e);
  cf_queue_report_message(X.q, &e);
  cf_queue_report_message(X.q, NULL);

  st = qstats(X.q);
  assert_int_equal(st.published, 2);
  assert_int_equal(st.publish_errors, 3);
  assert_int_equal(st.received, 2);
  /* The backend's fields are its own; ours it cannot overwrite. */
  assert_int_equal(st.requests, 10);
  assert_int_equal(st.request_errors, 11);
  assert_int_equal(st.retries, 12);
  assert_int_equal(st.buffered_bytes, 13);
  assert_int_equal(st.dropped, 14);

  /* Not attached to a receiver: nothing reported, nothing counted. */
  assert_int_equal(cf_queue_set_callbacks(X.q, &none, NULL), CF_OK);
  cf_queue_report_message(X.q, &e);
  assert_int_equal(qstats(X.q).received, 2);
}

static void test_stats_size(void **state) {
  uint8_t buf[sizeof(cf_queue_stats) + 8];
  cf_queue_stats st;
  cf_envelope e = env_ok();
  cf_queue_ops ops = fake_ops;
  cf_queue *q;
  fake f;

  (void)state;
  assert_int_equal(cf_queue_publish(X.q, &e), CF_OK);
  /* An older caller knowing only the first field gets only that. */
  memset(&st, 0xab, sizeof(st));
  cf_queue_get_stats(X.q, &st, sizeof(uint64_t));
  assert_int_equal(st.published, 1);
  assert_int_equal(st.publish_errors, 0xababababababababu);
  /* A newer one gets zeros past what this library knows. */
  memset(buf, 0xab, sizeof(buf));
  cf_queue_get_stats(X.q, (cf_queue_stats *)(void *)buf, sizeof(buf));
  memcpy(&st, buf, sizeof(st));
  assert_int_equal(st.published, 1);
  assert_int_equal(st.dropped, 14);
  assert_int_equal(buf[sizeof(st)], 0);
  assert_int_equal(buf[sizeof(buf) - 1], 0);
  cf_queue_get_stats(X.q, NULL, sizeof(st));
  cf_queue_get_stats(NULL, &st, sizeof(st));
  assert_int_equal(st.published, 1);
  cf_queue_get_stats(X.q, &st, 0);

  /* ops.stats is optional: backend fields read 0. */
  memset(&f, 0, sizeof(f));
  ops.stats = NULL;
  assert_int_equal(cf_queue_new(&q, &ops, &f, &X.tm.mem), CF_OK);
  assert_int_equal(cf_queue_publish(q, &e), CF_OK);
  st = qstats(q);
  assert_int_equal(st.published, 1);
  assert_int_equal(st.requests, 0);
  assert_int_equal(st.buffered_bytes, 0);
  assert_int_equal(st.dropped, 0);
  cf_queue_free(q);
}

static void test_free_from_message_cb(void **state) {
  cf_envelope e = env_ok();

  (void)state;
  X.s.free_on_message = 1;
  X.s.report_after_free = 1;
  cf_queue_report_message(X.q, &e);
  /* Deferred: not destroyed inside the callback, destroyed right after;
   * what was reported after the free did not reach the callbacks. */
  assert_int_equal(X.s.destroys_in_cb, 0);
  assert_int_equal(X.f.destroys, 1);
  assert_int_equal(X.s.messages, 1);
  assert_int_equal(X.s.states, 0);
  X.q = NULL;
}

static void test_free_from_state_cb_in_start(void **state) {
  (void)state;
  X.s.free_on_state = 1;
  assert_int_equal(cf_queue_start(X.q), CF_OK);
  assert_int_equal(X.s.destroys_in_cb, 0);
  assert_int_equal(X.f.destroys, 1);
  X.q = NULL;
}

static void test_free_from_state_cb_in_flush(void **state) {
  (void)state;
  assert_int_equal(cf_queue_start(X.q), CF_OK); /* reports UP */
  X.s.free_on_state = 1;
  assert_int_equal(cf_queue_flush(X.q, 1.0), CF_OK);
  assert_int_equal(X.s.last_state, CF_QUEUE_STOPPED);
  assert_int_equal(X.s.destroys_in_cb, 0);
  assert_int_equal(X.f.destroys, 1);
  X.q = NULL;
}

/* A backend batch: frees from callbacks wait for the batch's leave. */
static void test_hold_defers_free(void **state) {
  cf_envelope e = env_ok();

  (void)state;
  X.s.free_on_message = 1;
  cf__queue_enter(X.q);
  cf_queue_report_message(X.q, &e);
  assert_true(cf__queue_freeing(X.q));
  assert_int_equal(X.f.destroys, 0);
  cf_queue_report_message(X.q, &e); /* ignored now */
  assert_int_equal(X.s.messages, 1);
  assert_int_equal(cf_queue_publish(X.q, &e), CF_ERR_CLOSED);
  assert_int_equal(cf_queue_start(X.q), CF_ERR_CLOSED);
  assert_int_equal(cf_queue_flush(X.q, 0), CF_ERR_CLOSED);
  assert_int_equal(cf__queue_leave(X.q), 1);
  assert_int_equal(X.f.destroys, 1);
  X.q = NULL;
}

static void test_hold_without_free(void **state) {
  (void)state;
  cf__queue_enter(X.q);
  cf__queue_enter(X.q);
  assert_int_equal(cf__queue_leave(X.q), 0);
  cf_queue_free(X.q); /* still held once */
  assert_int_equal(X.f.destroys, 0);
  assert_int_equal(cf__queue_leave(X.q), 1);
  assert_int_equal(X.f.destroys, 1);
  X.q = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_checks),
      cmocka_unit_test(test_libc_allocator),
      cmocka_unit_test(test_null_queue),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_set_callbacks),
      T(test_start),
      T(test_publish),
      T(test_flush_args),
      T(test_report_state),
      T(test_state_names),
      T(test_errmsg),
      T(test_report_message),
      T(test_stats),
      T(test_stats_size),
      T(test_free_from_message_cb),
      T(test_free_from_state_cb_in_start),
      T(test_free_from_state_cb_in_flush),
      T(test_hold_defers_free),
      T(test_hold_without_free),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
