/* The local backend: bus, fan-out, ordering, bounds and re-entrancy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <chatfanout/cf_queue.h>

#include "fake_loop.h"
#include "test_mem.h"

#define MAXM 64
#define MIB ((size_t)1024 * 1024)

/* What one queue received, and what its callbacks do. */
typedef struct rx {
  cf_queue *q;
  int n;                  /* messages received */
  uint64_t origin[MAXM];
  uint64_t seq[MAXM];
  char text[MAXM][16];
  int depth, max_depth;   /* nesting of on_message */
  int states[8];
  int nstates;
  /* Behaviours, off when zero. */
  int reply_limit;        /* publish a reply per message, this many */
  int replies;
  cf_queue *reply_via;    /* through this queue (default: own) */
  int free_at;            /* on message number free_at (1-based) ... */
  cf_queue **free_what;   /* ... free *free_what and NULL it */
  int flush_at;           /* on this message, flush the own queue */
  cf_queue_bus *bus;      /* in on_message: nested dispatch, bus_free */
  size_t nested_dispatch;
  int bus_free_rv;
  int peer_n_seen;        /* peer->n when our first message arrived */
  int peer_n_after_reply; /* peer->n right after our last reply */
  struct rx *peer;
} rx;

static test_mem tm;
static fake_loop fl;
static cf_queue_bus *bus;
static uint64_t next_seq;

static int pub(cf_queue *q, uint64_t origin, const char *text) {
  cf_envelope e = {origin, ++next_seq, 42, "room", 4, CF_MSG_TEXT, text,
                   strlen(text)};
  return cf_queue_publish(q, &e);
}

static void on_message(cf_queue *q, const cf_envelope *env, void *ud) {
  rx *r = ud;
  size_t n = env->len < 15 ? env->len : 15;

  assert_ptr_equal(q, r->q);
  assert_true(r->n < MAXM);
  if (r->n == 0 && r->peer != NULL)
    r->peer_n_seen = r->peer->n;
  r->origin[r->n] = env->origin;
  r->seq[r->n] = env->seq;
  memcpy(r->text[r->n], env->data, n);
  r->text[r->n][n] = '\0';
  assert_int_equal(env->room_len, 4);
  assert_memory_equal(env->room, "room", 4);
  r->n++;
  if (++r->depth > r->max_depth)
    r->max_depth = r->depth;
  if (r->replies < r->reply_limit) {
    r->replies++;
    assert_int_equal(pub(r->reply_via ? r->reply_via : q, 900 + r->n,
                         "reply"), CF_OK);
    if (r->peer != NULL)
      r->peer_n_after_reply = r->peer->n;
  }
  if (r->free_at == r->n && r->free_what != NULL) {
    cf_queue_free(*r->free_what);
    *r->free_what = NULL;
  }
  if (r->flush_at == r->n)
    assert_int_equal(cf_queue_flush(q, 0), CF_OK);
  if (r->bus != NULL) {
    r->nested_dispatch = cf_queue_bus_dispatch(r->bus);
    r->bus_free_rv = cf_queue_bus_free(r->bus);
  }
  r->depth--;
}

static void on_state(cf_queue *q, int state, void *ud) {
  rx *r = ud;
  (void)q;
  if (r->nstates < 8)
    r->states[r->nstates++] = state;
}

static const cf_queue_callbacks cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                       on_message, on_state};

/* Creates a started queue on the bus, reporting into r. */
static void mk(rx *r, int with_loop, size_t max_pending) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(cf_queue_local_new(&r->q, bus, with_loop ? &fl.loop
                                                             : NULL,
                                      max_pending, &tm.mem), CF_OK);
  assert_int_equal(cf_queue_set_callbacks(r->q, &cbs, r), CF_OK);
  assert_int_equal(cf_queue_start(r->q), CF_OK);
}

static int live_timers(void) {
  int i, n = 0;
  for (i = 0; i < FAKE_LOOP_MAX; i++)
    n += fl.timers[i].used;
  return n;
}

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  fake_loop_init(&fl);
  next_seq = 0;
  assert_int_equal(cf_queue_bus_new(&bus, &tm.mem), CF_OK);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  assert_int_equal(cf_queue_bus_free(bus), CF_OK);
  assert_int_equal(tm.live, 0);
  assert_int_equal(live_timers(), 0);
  return 0;
}

/* --- creation ----------------------------------------------------------- */

static void test_bus_lifecycle(void **state) {
  cf_queue_bus *b = (cf_queue_bus *)&b;
  cf_queue *q;
  test_mem t;

  (void)state;
  assert_int_equal(cf_queue_bus_new(NULL, NULL), CF_ERR_INVALID);
  assert_int_equal(cf_queue_bus_free(NULL), CF_OK);
  test_mem_init(&t, 1);
  assert_int_equal(cf_queue_bus_new(&b, &t.mem), CF_ERR_NOMEM);
  assert_null(b);
  test_mem_init(&t, 0);
  assert_int_equal(cf_queue_bus_new(&b, &t.mem), CF_OK);
  assert_int_equal(cf_queue_local_new(&q, b, NULL, 0, &t.mem), CF_OK);
  assert_string_equal(cf_queue_name(q), "local");
  assert_string_equal(cf_queue_errmsg(q), "");
  assert_int_equal(cf_queue_bus_free(b), CF_ERR_STATE); /* q is on it */
  cf_queue_free(q);
  assert_int_equal(cf_queue_bus_free(b), CF_OK);
  assert_int_equal(t.live, 0);

  /* libc allocator */
  assert_int_equal(cf_queue_bus_new(&b, NULL), CF_OK);
  assert_int_equal(cf_queue_local_new(&q, b, NULL, 0, NULL), CF_OK);
  cf_queue_free(q);
  assert_int_equal(cf_queue_bus_free(b), CF_OK);
}

static void *null_timer_new(void *data, cf_loop_timer_cb cb, void *arg) {
  (void)data, (void)cb, (void)arg;
  return NULL;
}

static void test_local_new_checks(void **state) {
  cf_queue *q = (cf_queue *)&q;
  cf_loop loop = fl.loop;
  unsigned long n;

  (void)state;
  assert_int_equal(cf_queue_local_new(NULL, bus, NULL, 0, &tm.mem),
                   CF_ERR_INVALID);
  assert_int_equal(cf_queue_local_new(&q, NULL, NULL, 0, &tm.mem),
                   CF_ERR_INVALID);
  assert_null(q);
  loop.version = 99;
  assert_int_equal(cf_queue_local_new(&q, bus, &loop, 0, &tm.mem),
                   CF_ERR_VERSION);
  loop = fl.loop;
  loop.timer_set = NULL;
  assert_int_equal(cf_queue_local_new(&q, bus, &loop, 0, &tm.mem),
                   CF_ERR_INVALID);
  loop = fl.loop;
  loop.timer_new = null_timer_new;
  assert_int_equal(cf_queue_local_new(&q, bus, &loop, 0, &tm.mem),
                   CF_ERR_NOMEM);
  assert_int_equal(tm.live, 1); /* the fixture's bus only */

  /* Each allocation failing in turn leaks neither memory nor timers. */
  for (n = 1;; n++) {
    test_mem t;
    int rv;

    test_mem_init(&t, n);
    rv = cf_queue_local_new(&q, bus, &fl.loop, 0, &t.mem);
    if (!t.failed) {
      assert_int_equal(rv, CF_OK);
      cf_queue_free(q);
      assert_int_equal(t.live, 0);
      break;
    }
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_null(q);
    assert_int_equal(t.live, 0);
    assert_int_equal(live_timers(), 0);
  }
  assert_int_equal(n, 3); /* backend state, then wrapper */
}

static void test_states(void **state) {
  rx a;

  (void)state;
  mk(&a, 1, 0);
  assert_int_equal(a.nstates, 1);
  assert_int_equal(a.states[0], CF_QUEUE_UP);
  assert_int_equal(cf_queue_state_get(a.q), CF_QUEUE_UP);
  assert_int_equal(cf_queue_start(a.q), CF_ERR_STATE);
  assert_int_equal(cf_queue_flush(a.q, 1.0), CF_OK);
  assert_int_equal(a.states[1], CF_QUEUE_STOPPED);
  assert_int_equal(cf_queue_state_get(a.q), CF_QUEUE_STOPPED);
  /* A flushed queue can start again. */
  assert_int_equal(cf_queue_start(a.q), CF_OK);
  assert_int_equal(a.states[2], CF_QUEUE_UP);
  assert_int_equal(a.nstates, 3);
  cf_queue_free(a.q);
}

/* --- delivery ------------------------------------------------------------- */

static void test_two_queues_async(void **state) {
  rx a, b;
  char buf[8] = "first";

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  assert_int_equal(pub(a.q, 1, buf), CF_OK);
  memcpy(buf, "XXXXX", 5); /* the bus has its own copy */
  /* Nothing runs from publish; only b's timer is armed. */
  assert_int_equal(b.n, 0);
  assert_int_equal(fake_loop_armed(&fl), 1);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(b.n, 1);
  assert_string_equal(b.text[0], "first");
  assert_int_equal(b.origin[0], 1);
  assert_int_equal(b.seq[0], 1);
  assert_int_equal(a.n, 0); /* never to the publisher itself */
  assert_int_equal(fake_loop_armed(&fl), 0);
  assert_int_equal(fake_loop_advance(&fl, 1), 0);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_three_queues_order(void **state) {
  rx a, b, c;
  int i;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  mk(&c, 1, 0);
  for (i = 0; i < 5; i++)
    assert_int_equal(pub(a.q, 1, "a"), CF_OK); /* seq 1..5 */
  assert_int_equal(pub(b.q, 2, "b"), CF_OK);   /* 6 */
  assert_int_equal(pub(c.q, 3, "c"), CF_OK);   /* 7 */
  assert_int_equal(pub(a.q, 1, "a"), CF_OK);   /* 8 */
  assert_int_equal(fake_loop_advance(&fl, 0), 3);
  assert_int_equal(a.n, 2);
  assert_int_equal(a.seq[0], 6);
  assert_int_equal(a.seq[1], 7);
  assert_int_equal(b.n, 7);
  for (i = 0; i < 5; i++)
    assert_int_equal(b.seq[i], (uint64_t)i + 1);
  assert_int_equal(b.seq[5], 7);
  assert_int_equal(b.seq[6], 8);
  assert_int_equal(c.n, 7);
  for (i = 0; i < 6; i++)
    assert_int_equal(c.seq[i], (uint64_t)i + 1);
  assert_int_equal(c.seq[6], 8);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
  cf_queue_free(c.q);
}

static void test_timer_armed_once(void **state) {
  rx a, b;
  unsigned long sets;
  int i;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  sets = fl.timer_sets;
  for (i = 0; i < 10; i++)
    assert_int_equal(pub(a.q, 1, "x"), CF_OK);
  assert_int_equal(fl.timer_sets - sets, 1);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(b.n, 10);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_unstarted_receives_nothing(void **state) {
  rx a, c;

  (void)state;
  mk(&a, 1, 0);
  memset(&c, 0, sizeof(c));
  assert_int_equal(cf_queue_local_new(&c.q, bus, &fl.loop, 1, &tm.mem),
                   CF_OK);
  assert_int_equal(cf_queue_set_callbacks(c.q, &cbs, &c), CF_OK);
  /* c is not up: not a receiver, so neither its tiny bound counts nor
   * is a record kept (no receiver at all: no allocation). */
  tm.count = 0;
  assert_int_equal(pub(a.q, 1, "x"), CF_OK);
  assert_int_equal(tm.count, 0);
  assert_int_equal(fake_loop_advance(&fl, 0), 0);
  assert_int_equal(c.n, 0);
  /* An unstarted queue may still publish. */
  assert_int_equal(pub(c.q, 3, "from c"), CF_OK);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(a.n, 1);
  assert_string_equal(a.text[0], "from c");
  cf_queue_free(a.q);
  cf_queue_free(c.q);
}

static void test_null_loop_dispatch(void **state) {
  rx a, b, c;

  (void)state;
  mk(&a, 0, 0);
  mk(&b, 0, 0);
  mk(&c, 1, 0); /* on a loop: not dispatch's business */
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(pub(a.q, 1, "3"), CF_OK);
  assert_int_equal(fake_loop_armed(&fl), 1); /* c's only */
  assert_int_equal(b.n, 0);
  assert_int_equal(cf_queue_bus_dispatch(bus), 3);
  assert_int_equal(b.n, 3);
  assert_string_equal(b.text[0], "1");
  assert_string_equal(b.text[2], "3");
  assert_int_equal(c.n, 0);
  assert_int_equal(cf_queue_bus_dispatch(bus), 0);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(c.n, 3);
  assert_int_equal(a.n, 0);
  assert_int_equal(cf_queue_bus_dispatch(NULL), 0);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
  cf_queue_free(c.q);
}

/* --- re-entrancy ------------------------------------------------------ */

static void test_publish_from_callback_loop(void **state) {
  rx a, b;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  b.reply_limit = 1;
  b.peer = &a;
  a.peer = &b;
  assert_int_equal(pub(a.q, 1, "ping"), CF_OK);
  assert_int_equal(fake_loop_advance(&fl, 0), 2); /* b's, then a's */
  assert_int_equal(b.n, 1);
  assert_int_equal(a.n, 1);
  assert_string_equal(a.text[0], "reply");
  /* a got the reply after b's callback had returned, not inside it. */
  assert_int_equal(b.peer_n_after_reply, 0);
  assert_int_equal(a.peer_n_seen, 1);
  assert_int_equal(b.max_depth, 1);
  assert_int_equal(a.max_depth, 1);

  /* b publishing through a from b's own callback: b gets it later, in a
   * second timer round, never nested inside the first. */
  b.reply_limit = 2;
  b.reply_via = a.q;
  assert_int_equal(pub(a.q, 1, "ping2"), CF_OK);
  assert_int_equal(fake_loop_advance(&fl, 0), 2); /* b, then b again */
  assert_int_equal(b.n, 3);
  assert_string_equal(b.text[1], "ping2");
  assert_string_equal(b.text[2], "reply");
  assert_int_equal(b.max_depth, 1);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_publish_from_callback_dispatch(void **state) {
  rx a, b;

  (void)state;
  mk(&a, 0, 0);
  mk(&b, 0, 0);
  a.reply_limit = 3;
  b.reply_limit = 3;
  /* ping-pong: 1 + 3 replies from b + 3 from a, all in one call. */
  assert_int_equal(pub(a.q, 1, "ping"), CF_OK);
  assert_int_equal(cf_queue_bus_dispatch(bus), 7);
  assert_int_equal(b.n, 4);
  assert_int_equal(a.n, 3);
  assert_int_equal(a.max_depth, 1);
  assert_int_equal(b.max_depth, 1);
  assert_int_equal(cf_queue_bus_dispatch(bus), 0);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_nested_dispatch_and_bus_free(void **state) {
  rx a, b;

  (void)state;
  mk(&a, 0, 0);
  mk(&b, 0, 0);
  b.bus = bus;
  b.nested_dispatch = 99;
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(cf_queue_bus_dispatch(bus), 2);
  assert_int_equal(b.nested_dispatch, 0);
  assert_int_equal(b.bus_free_rv, CF_ERR_STATE);
  assert_int_equal(b.max_depth, 1);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_free_self_from_callback(void **state) {
  rx a, b, c;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  mk(&c, 1, 0);
  b.free_at = 1;
  b.free_what = &b.q;
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(pub(a.q, 1, "3"), CF_OK);
  fake_loop_advance(&fl, 0);
  assert_int_equal(b.n, 1); /* no callback after its free */
  assert_null(b.q);
  assert_int_equal(c.n, 3);
  assert_int_equal(live_timers(), 2);
  /* The bus goes on without it. */
  assert_int_equal(pub(a.q, 1, "4"), CF_OK);
  fake_loop_advance(&fl, 0);
  assert_int_equal(c.n, 4);
  cf_queue_free(a.q);
  cf_queue_free(c.q);
}

static void test_free_others_from_callback_loop(void **state) {
  rx a, b, c;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  mk(&c, 1, 0);
  b.free_at = 1;
  b.free_what = &c.q; /* c has pending records and an armed timer */
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  fake_loop_advance(&fl, 0);
  assert_int_equal(b.n, 2);
  assert_int_equal(c.n, 0);
  assert_int_equal(live_timers(), 2);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_free_from_callback_dispatch(void **state) {
  rx a, b, c, d;

  (void)state;
  mk(&a, 0, 0);
  mk(&b, 0, 0);
  mk(&c, 0, 0);
  mk(&d, 0, 0);
  /* b frees c (dispatch's next queue) on its first message and itself
   * on its second; d is reached all the same. */
  b.free_at = 1;
  b.free_what = &c.q;
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(pub(a.q, 1, "3"), CF_OK);
  assert_int_equal(cf_queue_bus_dispatch(bus), 3 + 3);
  assert_int_equal(b.n, 3);
  assert_int_equal(c.n, 0);
  assert_int_equal(d.n, 3);

  b.free_at = 4;
  b.free_what = &b.q;
  d.free_at = 4;
  d.free_what = &a.q; /* the publisher, earlier in the list */
  assert_int_equal(pub(a.q, 1, "4"), CF_OK);
  assert_int_equal(pub(a.q, 1, "5"), CF_OK);
  /* b stops at its free: "5" is dropped for it; d gets both. */
  assert_int_equal(cf_queue_bus_dispatch(bus), 1 + 2);
  assert_null(b.q);
  assert_null(a.q);
  assert_int_equal(b.n, 4);
  assert_int_equal(d.n, 5);
  cf_queue_free(d.q);
}

static void test_flush_from_callback(void **state) {
  rx a, b;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  b.flush_at = 1;
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  fake_loop_advance(&fl, 0);
  /* Flush inside delivery stops it: the rest is dropped. */
  assert_int_equal(b.n, 1);
  assert_int_equal(b.states[b.nstates - 1], CF_QUEUE_STOPPED);
  assert_int_equal(b.max_depth, 1);
  /* Stopped: no longer a receiver. */
  tm.count = 0;
  assert_int_equal(pub(a.q, 1, "3"), CF_OK);
  assert_int_equal(tm.count, 0);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static void test_flush_delivers_pending(void **state) {
  rx a, b;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(fake_loop_armed(&fl), 1);
  assert_int_equal(cf_queue_flush(b.q, 0.5), CF_OK);
  assert_int_equal(b.n, 2); /* delivered inside flush */
  assert_int_equal(b.states[b.nstates - 1], CF_QUEUE_STOPPED);
  assert_int_equal(fake_loop_armed(&fl), 0);
  assert_int_equal(fake_loop_advance(&fl, 0), 0);
  assert_int_equal(b.n, 2);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

/* --- bounds and sharing --------------------------------------------------- */

static void test_bound_queue_full(void **state) {
  rx a, b, c;
  char big[200];
  int ok = 0;

  (void)state;
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  mk(&a, 1, 0);
  mk(&b, 1, 1000); /* at most a few records of 200 bytes */
  mk(&c, 1, 0);
  while (ok < 100 && pub(a.q, 1, big) == CF_OK)
    ok++;
  assert_true(ok >= 3 && ok <= 4);
  /* Refused as a whole: c, which had room, did not get it either. */
  assert_int_equal(pub(a.q, 1, big), CF_ERR_QUEUE_FULL);
  fake_loop_advance(&fl, 0);
  assert_int_equal(b.n, ok);
  assert_int_equal(c.n, ok);
  memset(&big[0], 'y', 10);
  assert_int_equal(pub(a.q, 1, big), CF_OK); /* room again */
  fake_loop_advance(&fl, 0);
  assert_int_equal(c.n, ok + 1);
  /* One record over the whole bound never fits. */
  {
    char huge[1024];
    memset(huge, 'z', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(pub(a.q, 1, huge), CF_ERR_QUEUE_FULL);
  }
  /* b's publishes are not bounded by b's own limit. */
  assert_int_equal(pub(b.q, 2, big), CF_OK);
  assert_int_equal(pub(b.q, 2, big), CF_OK);
  assert_int_equal(pub(b.q, 2, big), CF_OK);
  assert_int_equal(pub(b.q, 2, big), CF_OK);
  assert_int_equal(pub(b.q, 2, big), CF_OK);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
  cf_queue_free(c.q);
}

static void test_bound_default(void **state) {
  static char mib[MIB];
  cf_envelope e = {1, 1, 0, "room", 4, CF_MSG_BINARY, mib, MIB};
  rx a, b;
  int ok = 0;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0); /* 0: 16 MiB */
  while (ok < 32 && cf_queue_publish(a.q, &e) == CF_OK)
    ok++;
  /* Each record is a little over 1 MiB with its header. */
  assert_int_equal(ok, 15);
  assert_int_equal(cf_queue_publish(a.q, &e), CF_ERR_QUEUE_FULL);
  fake_loop_advance(&fl, 0);
  assert_int_equal(b.n, 15);
  assert_int_equal(cf_queue_publish(a.q, &e), CF_OK);
  cf_queue_free(a.q);
  cf_queue_free(b.q);
}

static cf_queue_stats qstats(cf_queue *q) {
  cf_queue_stats st;

  memset(&st, 0xab, sizeof(st));
  cf_queue_get_stats(q, &st, sizeof(st));
  return st;
}

/* buffered_bytes is what waits for delivery to the queue: its bound. */
static void test_stats(void **state) {
  char big[1001];
  cf_queue_stats st;
  uint64_t one;
  rx a, b;

  (void)state;
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  mk(&a, 1, 0);
  mk(&b, 1, 1000);
  assert_int_equal(pub(a.q, 1, "x"), CF_OK);
  one = qstats(b.q).buffered_bytes;
  assert_true(one > 1 + 4);
  assert_int_equal(pub(a.q, 1, "xyz"), CF_OK);
  assert_int_equal(qstats(b.q).buffered_bytes, 2 * one + 2);
  assert_int_equal(pub(a.q, 1, big), CF_ERR_QUEUE_FULL);

  st = qstats(a.q);
  assert_int_equal(st.published, 2);
  assert_int_equal(st.publish_errors, 1);
  assert_int_equal(st.received, 0);
  assert_int_equal(st.buffered_bytes, 0); /* own records are not for a */
  assert_int_equal(st.requests, 0);
  assert_int_equal(st.request_errors, 0);
  assert_int_equal(st.retries, 0);
  assert_int_equal(st.dropped, 0);

  fake_loop_advance(&fl, 0);
  assert_int_equal(b.n, 2);
  st = qstats(b.q);
  assert_int_equal(st.received, 2);
  assert_int_equal(st.buffered_bytes, 0);
  assert_int_equal(st.published, 0);

  /* Records outlive their publisher; flush delivers them. */
  assert_int_equal(pub(a.q, 1, "late"), CF_OK);
  assert_int_equal(qstats(b.q).buffered_bytes, one + 3);
  cf_queue_free(a.q);
  assert_int_equal(qstats(b.q).buffered_bytes, one + 3);
  assert_int_equal(cf_queue_flush(b.q, 0), CF_OK);
  st = qstats(b.q);
  assert_int_equal(st.received, 3);
  assert_int_equal(st.buffered_bytes, 0);
  cf_queue_free(b.q);
}

/* One allocation per publish, however many receive it. */
static void test_one_record_per_publish(void **state) {
  rx q[6];
  int nrecv, i;

  (void)state;
  for (nrecv = 1; nrecv <= 5; nrecv++) {
    unsigned long live0;

    for (i = 0; i <= nrecv; i++)
      mk(&q[i], i % 2, 0);
    live0 = tm.live;
    tm.count = 0;
    assert_int_equal(pub(q[0].q, 1, "shared"), CF_OK);
    assert_int_equal(tm.count, 1);
    assert_int_equal(tm.live, live0 + 1);
    /* Delivery allocates nothing; the last consumer frees the record. */
    fake_loop_advance(&fl, 0);
    if (nrecv > 1)
      assert_int_equal(tm.live, live0 + 1); /* dispatch ones pending */
    cf_queue_bus_dispatch(bus);
    assert_int_equal(tm.count, 1);
    assert_int_equal(tm.live, live0);
    for (i = 1; i <= nrecv; i++) {
      assert_int_equal(q[i].n, 1);
      assert_string_equal(q[i].text[0], "shared");
    }
    for (i = 0; i <= nrecv; i++)
      cf_queue_free(q[i].q);
  }
}

static void test_free_with_pending(void **state) {
  rx a, b, c;
  unsigned long live0;

  (void)state;
  mk(&a, 1, 0);
  mk(&b, 1, 0);
  live0 = tm.live;
  assert_int_equal(pub(a.q, 1, "1"), CF_OK);
  assert_int_equal(pub(a.q, 1, "2"), CF_OK);
  assert_int_equal(tm.live, live0 + 2);
  cf_queue_free(b.q); /* releases its hold on both records */
  assert_int_equal(tm.live, live0 - 2); /* b's state and wrapper too */
  assert_int_equal(fake_loop_armed(&fl), 0);
  mk(&c, 1, 0); /* joins later: gets only what comes after */
  assert_int_equal(pub(a.q, 1, "3"), CF_OK);
  fake_loop_advance(&fl, 0);
  assert_int_equal(c.n, 1);
  assert_string_equal(c.text[0], "3");
  cf_queue_free(a.q);
  cf_queue_free(c.q);
}

/* A whole scenario, every allocation failing in turn. */
static int scenario(test_mem *t) {
  cf_queue_bus *b = NULL;
  cf_queue *q[3] = {NULL, NULL, NULL};
  rx r[3];
  int i, rv, ok = 0;

  rv = cf_queue_bus_new(&b, &t->mem);
  for (i = 0; i < 3 && rv == CF_OK; i++) {
    memset(&r[i], 0, sizeof(r[i]));
    rv = cf_queue_local_new(&q[i], b, i == 2 ? NULL : &fl.loop, 0,
                            &t->mem);
    if (rv == CF_OK) {
      r[i].q = q[i];
      assert_int_equal(cf_queue_set_callbacks(q[i], &cbs, &r[i]), CF_OK);
      assert_int_equal(cf_queue_start(q[i]), CF_OK);
    }
  }
  if (rv == CF_OK) {
    for (i = 0; i < 4 && rv == CF_OK; i++)
      rv = pub(q[i % 3], 1 + (uint64_t)(i % 3), "m");
    fake_loop_advance(&fl, 0);
    cf_queue_bus_dispatch(b);
    ok = rv == CF_OK;
    if (ok) {
      assert_int_equal(r[0].n, 2);
      assert_int_equal(r[1].n, 3);
      assert_int_equal(r[2].n, 3);
    }
  }
  if (rv != CF_OK)
    assert_int_equal(rv, CF_ERR_NOMEM);
  for (i = 0; i < 3; i++)
    cf_queue_free(q[i]);
  assert_int_equal(cf_queue_bus_free(b), CF_OK);
  return ok;
}

static void test_alloc_failure_sweep(void **state) {
  unsigned long n;
  test_mem t;

  (void)state;
  for (n = 1;; n++) {
    test_mem_init(&t, n);
    fake_loop_init(&fl);
    if (scenario(&t))
      assert_false(t.failed);
    assert_int_equal(t.live, 0);
    assert_int_equal(live_timers(), 0);
    if (!t.failed)
      break;
  }
  /* bus + 3 * (state + wrapper) + 4 records */
  assert_int_equal(n, 1 + 6 + 4 + 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_bus_lifecycle),
      T(test_local_new_checks),
      T(test_states),
      T(test_two_queues_async),
      T(test_three_queues_order),
      T(test_timer_armed_once),
      T(test_unstarted_receives_nothing),
      T(test_null_loop_dispatch),
      T(test_publish_from_callback_loop),
      T(test_publish_from_callback_dispatch),
      T(test_nested_dispatch_and_bus_free),
      T(test_free_self_from_callback),
      T(test_free_others_from_callback_loop),
      T(test_free_from_callback_dispatch),
      T(test_flush_from_callback),
      T(test_flush_delivers_pending),
      T(test_bound_queue_full),
      T(test_bound_default),
      T(test_stats),
      T(test_one_record_per_publish),
      T(test_free_with_pending),
      T(test_alloc_failure_sweep),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
