/*
 * The hub: configuration, fan-out, ordering, rooms, the queue link,
 * re-entrant callbacks, shutdown and an allocation-failure sweep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "hub_fixture.h"

/* --- Recording clients ---------------------------------------------------- */

#define NCL 128

typedef struct tc {
  cf_client *c;      /* NULL once freed */
  int wakes;
  int closes;
  int reason;        /* of the last close */
  char got[8192];    /* bytes drained so far */
  size_t got_len;
  void (*on_wake)(struct tc *t);
  void (*on_close)(struct tc *t, int reason);
} tc;

static tc cl[NCL];
static cf_hub *H;
static int order[NCL * 4]; /* client indexes in callback order */
static int norder;

static int idx(const tc *t) {
  return (int)(t - cl);
}

static void tc_wake(cf_client *c, void *ud) {
  tc *t = ud;

  assert_ptr_equal(t->c, c);
  assert_ptr_equal(cf_client_user_data(c), t);
  t->wakes++;
  order[norder++] = idx(t);
  if (t->on_wake != NULL)
    t->on_wake(t);
}

static void tc_close(cf_client *c, int reason, void *ud) {
  tc *t = ud;

  assert_ptr_equal(t->c, c);
  t->closes++;
  t->reason = reason;
  order[norder++] = idx(t);
  if (t->on_close != NULL)
    t->on_close(t, reason);
}

static const cf_client_ops tc_ops = {CF_CLIENT_OPS_VERSION, tc_wake,
                                     tc_close};

static void tc_free(tc *t) {
  cf_client_free(t->c);
  t->c = NULL;
}

/* Writes everything pending into t->got, as a transport would. */
static void tc_drain(tc *t) {
  hf_drain(t->c, t->got, sizeof(t->got), &t->got_len);
  assert_int_equal(cf_client_pending(t->c), 0);
}

static void tc_got_is(tc *t, const char *s) {
  assert_int_equal(t->got_len, strlen(s));
  assert_memory_equal(t->got, s, t->got_len);
}

static uint64_t clock_now = 1700000000000u;

static uint64_t clock_ms(void *ud) {
  (void)ud;
  return clock_now;
}

static cf_hub_config base_cfg(void) {
  cf_hub_config cfg;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.instance_id = 0x1111;
  cfg.framer = hf_framer_kind; /* "<T5>" or "<B12>" */
  cfg.clock_ms = clock_ms;
  cfg.mem = &tm.mem;
  return cfg;
}

static int setup(void **state) {
  hf_setup(state);
  memset(cl, 0, sizeof(cl));
  norder = 0;
  return 0;
}

/*
 * cmocka counts blocks from the start of a test body to its end, so the
 * hub is made and freed inside every test: hub_up() first, hub_down()
 * last.
 */
static void hub_up(void) {
  cf_hub_config cfg = base_cfg();

  assert_int_equal(cf_hub_new(&H, &cfg), CF_OK);
}

static void hub_down(void) {
  cf_hub_free(H);
  H = NULL;
  assert_int_equal(tm.live, 0);
}

static void add_clients(int n) {
  int i;

  for (i = 0; i < n; i++)
    assert_int_equal(cf_client_new(&cl[i].c, H, &tc_ops, &cl[i]), CF_OK);
}

static void join_all(int n, const char *room) {
  int i;

  for (i = 0; i < n; i++)
    assert_int_equal(cf_client_join(cl[i].c, room, strlen(room)), CF_OK);
}

static int pub(const char *room, const char *s) {
  return hf_pub(H, room, s);
}

static cf_hub_stats stats(void) {
  return hf_stats(H);
}

/* --- Configuration ------------------------------------------------------- */

static void test_config(void **state) {
  cf_hub_config cfg = base_cfg();
  cf_mem bad;
  cf_hub *h, *h2;

  (void)state;
  hub_up();
  assert_int_equal(cf_hub_instance_id(H), 0x1111);
  assert_int_equal(cf_hub_new(NULL, &cfg), CF_ERR_INVALID);
  cfg.version = CF_HUB_CONFIG_VERSION + 1;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_VERSION);
  cfg.version = 0;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_VERSION);

  /* A whole message must fit an empty outbox. */
  cfg = base_cfg();
  cfg.max_message = 1000;
  cfg.client_buffer = 1000;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);
  cfg.client_buffer = 1000 + CF_FRAME_HEADROOM_MAX + 64;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  cf_hub_free(h);
  cfg = base_cfg();
  cfg.client_buffer = 1024; /* below the 64 KiB default max_message */
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);
  cfg = base_cfg();
  cfg.history = 1u << 30;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);
  cfg = base_cfg();
  cfg.dedupe_window = 1u << 30;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);
  cfg = base_cfg();
  bad = tm.mem;
  bad.calloc = NULL;
  cfg.mem = &bad;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);

  cfg = base_cfg();
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_NOMEM);
  tm.fail_at = 0;

  /* Defaults: random, non-zero, different instance ids; libc memory. */
  assert_int_equal(cf_hub_new(&h, NULL), CF_OK);
  assert_int_equal(cf_hub_new(&h2, NULL), CF_OK);
  assert_int_not_equal(cf_hub_instance_id(h), 0);
  assert_int_not_equal(cf_hub_instance_id(h), cf_hub_instance_id(h2));
  cf_hub_free(h);
  cf_hub_free(h2);
  cf_hub_free(NULL);
  assert_int_equal(cf_hub_instance_id(NULL), 0);
  hub_down();
}

static void test_client_new_errors(void **state) {
  cf_client_ops ops = tc_ops;
  cf_client *c;
  cf_hub_stats st;

  (void)state;
  hub_up();
  assert_int_equal(cf_client_new(NULL, H, &ops, NULL), CF_ERR_INVALID);
  assert_int_equal(cf_client_new(&c, NULL, &ops, NULL), CF_ERR_INVALID);
  assert_int_equal(cf_client_new(&c, H, NULL, NULL), CF_ERR_INVALID);
  ops.version = 2;
  assert_int_equal(cf_client_new(&c, H, &ops, NULL), CF_ERR_VERSION);
  ops = tc_ops;
  ops.wake = NULL;
  assert_int_equal(cf_client_new(&c, H, &ops, NULL), CF_ERR_INVALID);
  ops = tc_ops;
  ops.close = NULL;
  assert_int_equal(cf_client_new(&c, H, &ops, NULL), CF_ERR_INVALID);
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf_client_new(&c, H, &tc_ops, NULL), CF_ERR_NOMEM);
  tm.fail_at = 0;
  st = stats();
  assert_int_equal(st.clients, 0);
  add_clients(3);
  assert_int_equal(stats().clients, 3);
  tc_free(&cl[1]);
  assert_int_equal(stats().clients, 2);
  hub_down();
}

static void test_stats_size(void **state) {
  cf_hub_stats st;

  (void)state;
  hub_up();
  add_clients(2);
  memset(&st, 0xab, sizeof(st));
  /* An older caller knowing only the first field gets only that. */
  cf_hub_get_stats(H, &st, sizeof(uint64_t));
  assert_int_equal(st.clients, 2);
  assert_int_equal(st.rooms, 0xababababababababu);
  cf_hub_get_stats(H, NULL, sizeof(st));
  cf_hub_get_stats(NULL, &st, sizeof(st));
  hub_down();
}

/* --- Fan-out -------------------------------------------------------------- */

static void test_fanout_shared(void **state) {
  const void *wire = NULL;
  unsigned long allocs;
  cf_hub_stats st;
  int i;

  (void)state;
  hub_up();
  add_clients(100);
  join_all(100, "room");
  assert_int_equal(pub("room", "hello"), CF_OK);
  for (i = 0; i < 100; i++) {
    struct iovec iov[2];

    assert_int_equal(cl[i].wakes, 1);
    assert_int_equal(cf_client_iov(cl[i].c, iov, 2), 1);
    assert_int_equal(iov[0].iov_len, 9);
    assert_memory_equal(iov[0].iov_base, "<T5>hello", 9);
    /* One message: every outbox points at the same bytes. */
    if (i == 0)
      wire = iov[0].iov_base;
    assert_ptr_equal(iov[0].iov_base, wire);
  }
  st = stats();
  assert_int_equal(st.published, 1);
  assert_int_equal(st.deliveries, 100);
  assert_int_equal(st.delivered_bytes, 900);
  assert_int_equal(st.outbox_bytes, 900);
  for (i = 0; i < 100; i++)
    tc_drain(&cl[i]);
  assert_int_equal(stats().outbox_bytes, 0);

  /* Steady state: one allocation per publish, whatever the audience. */
  allocs = tm.count;
  assert_int_equal(pub("room", "again"), CF_OK);
  assert_int_equal(tm.count - allocs, 1);
  for (i = 0; i < 100; i++) {
    tc_drain(&cl[i]);
    tc_got_is(&cl[i], "<T5>hello<T5>again");
    assert_int_equal(cl[i].wakes, 2);
  }
  hub_down();
}

static void test_wake_once_per_transition(void **state) {
  (void)state;
  hub_up();
  add_clients(1);
  join_all(1, "r");
  assert_int_equal(pub("r", "a"), CF_OK);
  assert_int_equal(pub("r", "b"), CF_OK);
  assert_int_equal(pub("r", "c"), CF_OK);
  assert_int_equal(cl[0].wakes, 1);
  /* Partly drained is not empty: still no new wake. */
  cf_client_consume(cl[0].c, 5);
  assert_int_equal(pub("r", "d"), CF_OK);
  assert_int_equal(cl[0].wakes, 1);
  tc_drain(&cl[0]);
  tc_got_is(&cl[0], "<T1>b<T1>c<T1>d");
  assert_int_equal(pub("r", "e"), CF_OK);
  assert_int_equal(cl[0].wakes, 2);
  hub_down();
}

static void test_pop_shares_message(void **state) {
  cf_msg *m0, *m1;
  size_t len;

  (void)state;
  hub_up();
  add_clients(2);
  join_all(2, "r");
  assert_int_equal(cf_hub_publish(H, "r", 1, CF_MSG_BINARY, "\0\1\2", 3),
                   CF_OK);
  m0 = cf_client_pop(cl[0].c);
  m1 = cf_client_pop(cl[1].c);
  assert_ptr_equal(m0, m1);
  assert_int_equal(cf_msg_flags(m0), CF_MSG_BINARY);
  assert_int_equal(cf_msg_size(m0), 3);
  assert_memory_equal(cf_msg_data(m0), "\0\1\2", 3);
  assert_memory_equal(cf_msg_wire(m0, &len), "<B3>\0\1\2", 7);
  assert_int_equal(len, 7);
  assert_null(cf_client_pop(cl[0].c));
  assert_int_equal(stats().outbox_bytes, 0);
  /* The transport's references outlive the hub. */
  cf_hub_free(H);
  H = NULL;
  assert_memory_equal(cf_msg_data(m1), "\0\1\2", 3);
  cf_msg_unref(m0);
  cf_msg_unref(m1);
  hub_down();
}

static void test_one_order(void **state) {
  char msgs[20][8];
  cf_envelope e;
  int i;

  (void)state;
  hub_up();
  add_clients(5);
  join_all(3, "r");
  memset(&e, 0, sizeof(e));
  e.origin = 0x2222;
  e.room = "r";
  e.room_len = 1;
  /* Local publishes and remote deliveries interleave; late joiners. */
  for (i = 0; i < 20; i++) {
    snprintf(msgs[i], sizeof(msgs[i]), "m%02d", i);
    if (i == 5)
      assert_int_equal(cf_client_join(cl[3].c, "r", 1), CF_OK);
    if (i == 11)
      assert_int_equal(cf_client_join(cl[4].c, "r", 1), CF_OK);
    if (i % 3 == 0) {
      e.seq = (uint64_t)i + 1;
      e.data = msgs[i];
      e.len = 3;
      assert_int_equal(cf_hub_deliver(H, &e), CF_OK);
    } else {
      assert_int_equal(pub("r", msgs[i]), CF_OK);
    }
    /* Drain some clients at different moments. */
    if (i % 4 == 0)
      tc_drain(&cl[i % 5]);
  }
  for (i = 0; i < 5; i++)
    tc_drain(&cl[i]);
  assert_int_equal(cl[0].got_len, 20 * 7);
  assert_memory_equal(cl[0].got, cl[1].got, cl[0].got_len);
  assert_memory_equal(cl[0].got, cl[2].got, cl[0].got_len);
  /* Late joiners get a suffix of the same stream. */
  assert_int_equal(cl[3].got_len, 15 * 7);
  assert_memory_equal(cl[3].got, cl[0].got + 5 * 7, cl[3].got_len);
  assert_int_equal(cl[4].got_len, 9 * 7);
  assert_memory_equal(cl[4].got, cl[0].got + 11 * 7, cl[4].got_len);
  assert_memory_equal(cl[0].got, "<T3>m00<T3>m01<T3>m02", 21);
  hub_down();
}

static void test_multi_room(void **state) {
  (void)state;
  hub_up();
  add_clients(3);
  assert_int_equal(cf_client_join(cl[0].c, "a", 1), CF_OK);
  assert_int_equal(cf_client_join(cl[0].c, "b", 1), CF_OK);
  assert_int_equal(cf_client_join(cl[1].c, "a", 1), CF_OK);
  assert_int_equal(cf_client_join(cl[2].c, "b", 1), CF_OK);
  assert_int_equal(pub("a", "1"), CF_OK);
  assert_int_equal(pub("b", "2"), CF_OK);
  assert_int_equal(pub("a", "3"), CF_OK);
  /* Nobody in c: fine, nothing happens. */
  assert_int_equal(pub("c", "4"), CF_OK);
  assert_int_equal(cf_client_leave(cl[0].c, "a", 1), CF_OK);
  assert_int_equal(pub("a", "5"), CF_OK);
  assert_int_equal(pub("b", "6"), CF_OK);
  tc_drain(&cl[0]);
  tc_drain(&cl[1]);
  tc_drain(&cl[2]);
  tc_got_is(&cl[0], "<T1>1<T1>2<T1>3<T1>6");
  tc_got_is(&cl[1], "<T1>1<T1>3<T1>5");
  tc_got_is(&cl[2], "<T1>2<T1>6");
  assert_int_equal(stats().deliveries, 9);
  assert_int_equal(stats().published, 6);
  assert_int_equal(stats().rooms, 2);
  hub_down();
}

static size_t framer_bad(uint8_t *buf, uint32_t flags, size_t len,
                         void *ud) {
  (void)buf;
  (void)flags;
  (void)len;
  (void)ud;
  return 17;
}

static void test_publish_errors(void **state) {
  char big[CF_ROOM_MAX + 1];
  cf_hub_config cfg = base_cfg();
  cf_hub *h;
  cf_client *c;

  (void)state;
  hub_up();
  add_clients(1);
  join_all(1, "r");
  memset(big, 'r', sizeof(big));
  assert_int_equal(cf_hub_publish(NULL, "r", 1, 0, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, NULL, 1, 0, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r", 0, 0, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, big, sizeof(big), 0, "x", 1),
                   CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r r", 3, 0, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r\n", 2, 0, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r", 1, CF_MSG_RAW, "x", 1),
                   CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r", 1, 0x80, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r", 1, 0, NULL, 1), CF_ERR_INVALID);
  assert_int_equal(cf_hub_publish(H, "r", 1, 0, NULL, 0), CF_OK);
  tc_drain(&cl[0]);
  tc_got_is(&cl[0], "<T0>");
  assert_int_equal(cf_hub_publish(H, big, CF_ROOM_MAX, 0, "x", 1), CF_OK);
  assert_int_equal(stats().published, 2);

  cfg.max_message = 4;
  cfg.client_buffer = 4096;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  assert_int_equal(cf_client_new(&c, h, &tc_ops, &cl[1]), CF_OK);
  cl[1].c = c;
  assert_int_equal(cf_client_join(c, "r", 1), CF_OK);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "12345", 5),
                   CF_ERR_TOO_BIG);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "1234", 4), CF_OK);
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "1234", 4), CF_ERR_NOMEM);
  tm.fail_at = 0;
  assert_int_equal(cf_client_pending(c), 8);
  cf_hub_free(h);

  /* A framer claiming more than the headroom is refused. */
  cfg = base_cfg();
  cfg.framer = framer_bad;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  assert_int_equal(cf_client_new(&c, h, &tc_ops, &cl[1]), CF_OK);
  assert_int_equal(cf_client_join(c, "r", 1), CF_OK);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "x", 1), CF_ERR_CALLBACK);
  assert_int_equal(cf_client_pending(c), 0);
  cf_hub_free(h);
  hub_down();
}

static void test_no_framer(void **state) {
  cf_hub_config cfg = base_cfg();
  struct iovec iov[1];
  cf_client *c;
  cf_hub *h;

  (void)state;
  hub_up();
  cfg.framer = NULL;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  assert_int_equal(cf_client_new(&c, h, &tc_ops, &cl[0]), CF_OK);
  cl[0].c = c;
  assert_int_equal(cf_client_join(c, "r", 1), CF_OK);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "plain", 5), CF_OK);
  assert_int_equal(cf_client_iov(c, iov, 1), 1);
  assert_int_equal(iov[0].iov_len, 5);
  assert_memory_equal(iov[0].iov_base, "plain", 5);
  /* An empty message with no header has no bytes but is an entry. */
  cf_client_consume(c, 5);
  assert_int_equal(cl[0].wakes, 1);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "", 0), CF_OK);
  assert_int_equal(cl[0].wakes, 2);
  /* Bytes after zero-byte entries need a wake: iov loops skip those. */
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "z", 1), CF_OK);
  assert_int_equal(cl[0].wakes, 3);
  assert_int_equal(cf_client_pending(c), 1);
  cf_hub_free(h);
  hub_down();
}

static void test_deliver_errors(void **state) {
  cf_envelope e;

  (void)state;
  hub_up();
  add_clients(1);
  join_all(1, "r");
  memset(&e, 0, sizeof(e));
  e.origin = 5;
  e.seq = 1;
  e.room = "r";
  e.room_len = 1;
  e.data = "x";
  e.len = 1;
  assert_int_equal(cf_hub_deliver(NULL, &e), CF_ERR_INVALID);
  assert_int_equal(cf_hub_deliver(H, NULL), CF_ERR_INVALID);
  e.origin = 0;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.origin = 5;
  e.seq = 0;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.seq = 1;
  e.room_len = 0;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.room_len = CF_ROOM_MAX + 1;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.room_len = 1;
  e.flags = 7;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.flags = 0;
  e.data = NULL;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_INVALID);
  e.data = "x";
  e.len = 64 * 1024 + 1;
  assert_int_equal(cf_hub_deliver(H, &e), CF_ERR_TOO_BIG);
  e.len = 1;
  assert_int_equal(cf_client_pending(cl[0].c), 0);
  assert_int_equal(stats().received, 0);
  assert_int_equal(cf_hub_deliver(H, &e), CF_OK);
  assert_int_equal(stats().received, 1);
  assert_int_equal(cf_client_pending(cl[0].c), 5);
  hub_down();
}

/* --- The queue link ---------------------------------------------------- */

static void test_queue_link(void **state) {
  hf_fakeq f;
  cf_queue *q;
  cf_envelope e;
  cf_hub_stats st;

  (void)state;
  hub_up();
  memset(&f, 0, sizeof(f));
  assert_int_equal(cf_queue_new(&q, &hf_fq_ops, &f, &tm.mem), CF_OK);
  assert_int_equal(cf_hub_attach_queue(NULL, q), CF_ERR_INVALID);
  assert_int_equal(cf_hub_attach_queue(H, q), CF_OK);
  add_clients(2);
  join_all(2, "room");

  clock_now = 1234;
  assert_int_equal(pub("room", "one"), CF_OK);
  clock_now = 1235;
  assert_int_equal(cf_hub_publish(H, "room", 4, CF_MSG_BINARY, "two", 3),
                   CF_OK);
  assert_int_equal(f.n, 2);
  assert_int_equal(f.env[0].origin, 0x1111);
  assert_int_equal(f.env[0].seq, 1);
  assert_int_equal(f.env[1].seq, 2);
  assert_int_equal(f.env[0].ts_ms, 1234);
  assert_int_equal(f.env[1].ts_ms, 1235);
  assert_int_equal(f.env[0].room_len, 4);
  assert_memory_equal(f.room[0], "room", 4);
  assert_int_equal(f.env[0].flags, CF_MSG_TEXT);
  assert_int_equal(f.env[1].flags, CF_MSG_BINARY);
  /* The queue gets the payload, not the local frame header. */
  assert_int_equal(f.env[0].len, 3);
  assert_memory_equal(f.data[0], "one", 3);

  /* A refusing queue: nothing delivered here either, seq not spent. */
  f.fail_with = CF_ERR_QUEUE_FULL;
  assert_int_equal(pub("room", "lost"), CF_ERR_QUEUE_FULL);
  f.fail_with = 0;
  assert_int_equal(pub("room", "three"), CF_OK);
  assert_int_equal(f.n, 3);
  assert_int_equal(f.env[2].seq, 3);
  tc_drain(&cl[0]);
  tc_got_is(&cl[0], "<T3>one<B3>two<T5>three");
  st = stats();
  assert_int_equal(st.queue_published, 3);
  assert_int_equal(st.queue_errors, 1);
  assert_int_equal(st.published, 3);

  /* Messages from the queue, through the callbacks the hub set. */
  memset(&e, 0, sizeof(e));
  e.origin = 0x2222;
  e.seq = 1;
  e.room = "room";
  e.room_len = 4;
  e.data = "far";
  e.len = 3;
  cf_queue_report_message(q, &e);
  cf_queue_report_message(q, &e);
  e.origin = 0x1111; /* our own, echoed back */
  cf_queue_report_message(q, &e);
  e.origin = 0x2222;
  e.seq = 2;
  e.data = "away";
  e.len = 4;
  cf_queue_report_message(q, &e);
  tc_drain(&cl[1]);
  tc_got_is(&cl[1], "<T3>one<B3>two<T5>three<T3>far<T4>away");
  st = stats();
  assert_int_equal(st.received, 2);
  assert_int_equal(st.duplicates, 2);
  /* Received messages are not sent back to the queue. */
  assert_int_equal(f.n, 3);
  cf_queue_report_state(q, CF_QUEUE_UP);

  /* Detached: the queue no longer reaches the hub, nor the hub it. */
  assert_int_equal(cf_hub_attach_queue(H, NULL), CF_OK);
  e.seq = 3;
  cf_queue_report_message(q, &e);
  assert_int_equal(pub("room", "x"), CF_OK);
  assert_int_equal(f.n, 3);
  assert_int_equal(stats().received, 2);

  /* Freeing the hub detaches too: the queue may outlive it. */
  assert_int_equal(cf_hub_attach_queue(H, q), CF_OK);
  cf_hub_free(H);
  H = NULL;
  e.seq = 4;
  cf_queue_report_message(q, &e);
  cf_queue_report_state(q, CF_QUEUE_DOWN);
  assert_false(f.destroyed);
  cf_queue_free(q);
  assert_true(f.destroyed);
  hub_down();
}

static void test_deliver_to_empty_room_is_free(void **state) {
  unsigned long allocs;
  cf_envelope e;

  (void)state;
  hub_up();
  memset(&e, 0, sizeof(e));
  e.origin = 9;
  e.seq = 1;
  e.room = "nobody";
  e.room_len = 6;
  e.data = "x";
  e.len = 1;
  allocs = tm.count;
  assert_int_equal(cf_hub_deliver(H, &e), CF_OK);
  assert_int_equal(tm.count, allocs);
  assert_int_equal(stats().received, 1);
  assert_int_equal(stats().rooms, 0);
  hub_down();
}

/*
 * A publish the queue refuses leaves no trace: no client gets it, no
 * history keeps it, no room is made or evicted for it, its seq is reused.
 */
static void test_queue_refusal_all_or_nothing(void **state) {
  static const int errs[] = {CF_ERR_QUEUE_FULL, CF_ERR_TOO_BIG,
                             CF_ERR_NOMEM, CF_ERR_BACKEND};
  cf_hub_config cfg = base_cfg();
  unsigned long live;
  cf_hub_stats st;
  cf_queue *q;
  hf_fakeq f;
  size_t i;

  (void)state;
  cfg.history = 4;
  cfg.max_rooms = 2;
  assert_int_equal(cf_hub_new(&H, &cfg), CF_OK);
  memset(&f, 0, sizeof(f));
  assert_int_equal(cf_queue_new(&q, &hf_fq_ops, &f, &tm.mem), CF_OK);
  assert_int_equal(cf_hub_attach_queue(H, q), CF_OK);
  add_clients(3);
  join_all(2, "room");
  assert_int_equal(pub("room", "one"), CF_OK);
  /* History only: an idle room, the one a new room would evict. */
  assert_int_equal(pub("idle", "kept"), CF_OK);
  assert_int_equal(stats().rooms, 2);

  live = tm.live;
  for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    f.fail_with = errs[i];
    assert_int_equal(pub("room", "lost"), errs[i]);
    assert_int_equal(pub("new", "lost"), errs[i]);
  }
  f.fail_with = 0;
  assert_int_equal(tm.live, live);
  st = stats();
  assert_int_equal(st.queue_errors, 8);
  assert_int_equal(st.queue_published, 2);
  assert_int_equal(st.published, 2);
  assert_int_equal(st.deliveries, 2);
  assert_int_equal(st.rooms, 2);
  for (i = 0; i < 2; i++) {
    assert_int_equal(cl[i].wakes, 1);
    assert_int_equal(cf_client_pending(cl[i].c), 7);
  }

  /* The next accepted publish takes the next seq: no gap. */
  assert_int_equal(pub("room", "two"), CF_OK);
  assert_int_equal(f.n, 3);
  for (i = 0; i < 3; i++)
    assert_int_equal(f.env[i].seq, i + 1);
  assert_memory_equal(f.data[2], "two", 3);
  tc_drain(&cl[0]);
  tc_got_is(&cl[0], "<T3>one<T3>two");
  assert_int_equal(cf_client_join(cl[2].c, "room", 4), CF_OK);
  assert_int_equal(cf_client_join(cl[2].c, "idle", 4), CF_OK);
  tc_drain(&cl[2]);
  tc_got_is(&cl[2], "<T3>one<T3>two<T4>kept");
  cf_hub_free(H);
  H = NULL;
  cf_queue_free(q);
  hub_down();
}

static hf_fakeq *wake_q;   /* the queue wake_publish_queued refuses on */
static int nested_left; /* publishes the wake callbacks may still make */

static void wake_publish_queued(tc *t) {
  (void)t;
  if (nested_left == 0)
    return;
  nested_left--;
  wake_q->fail_with = CF_ERR_QUEUE_FULL;
  assert_int_equal(pub("r", "refused"), CF_ERR_QUEUE_FULL);
  wake_q->fail_with = 0;
  assert_int_equal(pub("r", "nested"), CF_OK);
}

/*
 * Publishes made from wake callbacks reach the queue after the one whose
 * fan-out woke them, as they reach the outboxes; refused ones in between
 * leave no gap in the seqs.
 */
static void test_queue_order_with_wake_publish(void **state) {
  cf_queue *q;
  hf_fakeq f;
  int i;

  (void)state;
  hub_up();
  memset(&f, 0, sizeof(f));
  wake_q = &f;
  assert_int_equal(cf_queue_new(&q, &hf_fq_ops, &f, &tm.mem), CF_OK);
  assert_int_equal(cf_hub_attach_queue(H, q), CF_OK);
  add_clients(3);
  join_all(3, "r");
  for (i = 0; i < 3; i++)
    cl[i].on_wake = wake_publish_queued;
  nested_left = 2;
  assert_int_equal(pub("r", "first"), CF_OK);
  assert_int_equal(nested_left, 0);
  assert_int_equal(f.n, 3);
  assert_memory_equal(f.data[0], "first", 5);
  assert_memory_equal(f.data[1], "nested", 6);
  assert_memory_equal(f.data[2], "nested", 6);
  for (i = 0; i < 3; i++)
    assert_int_equal(f.env[i].seq, (uint64_t)i + 1);
  for (i = 0; i < 3; i++) {
    tc_drain(&cl[i]);
    tc_got_is(&cl[i], "<T5>first<T6>nested<T6>nested");
  }
  assert_int_equal(stats().queue_errors, 2);
  cf_hub_free(H);
  H = NULL;
  cf_queue_free(q);
  hub_down();
}

/* --- Re-entrancy ---------------------------------------------------------- */

static void wake_free_self(tc *t) {
  tc_free(t);
}

static void test_wake_frees_self(void **state) {
  int i;

  (void)state;
  hub_up();
  add_clients(4);
  join_all(4, "r");
  cl[1].on_wake = wake_free_self;
  cl[3].on_wake = wake_free_self;
  assert_int_equal(pub("r", "x"), CF_OK);
  for (i = 0; i < 4; i++)
    assert_int_equal(cl[i].wakes, 1);
  assert_null(cl[1].c);
  assert_int_equal(stats().clients, 2);
  assert_int_equal(stats().outbox_bytes, 2 * 5);
  assert_int_equal(pub("r", "y"), CF_OK);
  assert_int_equal(stats().deliveries, 4 + 2);
  hub_down();
}

static void wake_free_next(tc *t) {
  tc_free(t + 1);
}

static void test_wake_frees_other_not_yet_woken(void **state) {
  (void)state;
  hub_up();
  add_clients(3);
  join_all(3, "r");
  cl[0].on_wake = wake_free_next;
  assert_int_equal(pub("r", "x"), CF_OK);
  assert_int_equal(cl[0].wakes, 1);
  /* Freed before its turn: no callback on a dead client. */
  assert_int_equal(cl[1].wakes, 0);
  assert_int_equal(cl[2].wakes, 1);
  assert_int_equal(norder, 2);
  assert_int_equal(order[0], 0);
  assert_int_equal(order[1], 2);
  hub_down();
}

static void wake_publish(tc *t) {
  (void)t;
  if (nested_left > 0) {
    nested_left--;
    assert_int_equal(pub("r", "nested"), CF_OK);
  }
}

static void test_wake_publishes(void **state) {
  int i;

  (void)state;
  hub_up();
  add_clients(3);
  join_all(3, "r");
  nested_left = 2;
  for (i = 0; i < 3; i++)
    cl[i].on_wake = wake_publish;
  assert_int_equal(pub("r", "first"), CF_OK);
  assert_int_equal(nested_left, 0);
  for (i = 0; i < 3; i++) {
    /* Outboxes stayed non-empty: one wake each. */
    assert_int_equal(cl[i].wakes, 1);
    tc_drain(&cl[i]);
    tc_got_is(&cl[i], "<T5>first<T6>nested<T6>nested");
  }
  hub_down();
}

static void wake_free_hub(tc *t) {
  (void)t;
  cf_hub_free(H);
  H = NULL;
}

static void test_wake_frees_hub(void **state) {
  (void)state;
  hub_up();
  add_clients(3);
  join_all(3, "r");
  cl[0].on_wake = wake_free_hub;
  assert_int_equal(pub("r", "x"), CF_OK);
  /* The hub went when publish returned; nobody else was called. */
  assert_int_equal(norder, 1);
  assert_null(H);
  assert_int_equal(tm.live, 0);
  hub_down();
}

static void wake_free_hub_then_use(tc *t) {
  cf_hub *h = H;

  cf_hub_free(h);
  H = NULL;
  /* Still inside a hub call: the hub exists but refuses new work. */
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, "x", 1), CF_ERR_CLOSED);
  assert_int_equal(cf_client_join(t->c, "q", 1), CF_ERR_CLOSED);
  assert_int_equal(cf_client_send(t->c, "q", 1), CF_ERR_CLOSED);
  cf_hub_free(h);
  tc_free(t + 1);
}

static void test_wake_frees_hub_then_more(void **state) {
  cf_envelope e;

  (void)state;
  hub_up();
  add_clients(3);
  join_all(3, "r");
  cl[0].on_wake = wake_free_hub_then_use;
  memset(&e, 0, sizeof(e));
  e.origin = 3;
  e.seq = 3;
  e.room = "r";
  e.room_len = 1;
  assert_int_equal(cf_hub_deliver(H, &e), CF_OK);
  assert_int_equal(norder, 1);
  assert_int_equal(tm.live, 0);
  hub_down();
}

static void wake_join_and_send(tc *t) {
  if (t->wakes == 1) {
    assert_int_equal(cf_client_join(t->c, "other", 5), CF_OK);
    assert_int_equal(cf_client_send(t->c, "!", 1), CF_OK);
  }
}

static void test_wake_joins(void **state) {
  (void)state;
  hub_up();
  add_clients(2);
  join_all(2, "r");
  cl[0].on_wake = wake_join_and_send;
  assert_int_equal(pub("r", "x"), CF_OK);
  assert_int_equal(pub("other", "y"), CF_OK);
  tc_drain(&cl[0]);
  tc_got_is(&cl[0], "<T1>x!<T1>y");
  assert_int_equal(cl[0].wakes, 1);
  hub_down();
}

/* --- Shutdown ------------------------------------------------------------- */

static void test_close_all_order(void **state) {
  int i;

  (void)state;
  hub_up();
  add_clients(5);
  join_all(5, "r");
  cf_hub_close_all(H);
  assert_int_equal(norder, 5);
  for (i = 0; i < 5; i++) {
    assert_int_equal(order[i], i);
    assert_int_equal(cl[i].closes, 1);
    assert_int_equal(cl[i].reason, CF_CLOSE_SHUTDOWN);
  }
  /* Closing clients get no more messages, but may still send bytes. */
  assert_int_equal(pub("r", "late"), CF_OK);
  assert_int_equal(stats().deliveries, 0);
  assert_int_equal(cf_client_send(cl[0].c, "bye", 3), CF_OK);
  assert_int_equal(cf_client_pending(cl[0].c), 3);
  assert_int_equal(cf_client_join(cl[0].c, "q", 1), CF_ERR_CLOSED);
  /* Each is told once. */
  cf_hub_close_all(H);
  assert_int_equal(cl[0].closes, 1);
  assert_int_equal(stats().clients, 5);
  cf_hub_close_all(NULL);
  hub_down();
}

static void close_free_self(tc *t, int reason) {
  (void)reason;
  tc_free(t);
}

static void close_free_next(tc *t, int reason) {
  (void)reason;
  tc_free(t + 1);
}

static void close_free_hub(tc *t, int reason) {
  (void)t;
  (void)reason;
  cf_hub_free(H);
  H = NULL;
}

static void close_nested_close_all(tc *t, int reason) {
  (void)t;
  (void)reason;
  cf_hub_close_all(H);
}

static void test_close_all_reentrant(void **state) {
  (void)state;
  hub_up();
  add_clients(6);
  cl[0].on_close = close_free_self;
  cl[1].on_close = close_nested_close_all;
  cl[2].on_close = close_free_next; /* 3 is never called */
  cl[4].on_close = close_free_hub;  /* 5 is never called */
  cf_hub_close_all(H);
  assert_int_equal(norder, 4);
  assert_int_equal(order[0], 0);
  assert_int_equal(order[1], 1);
  assert_int_equal(order[2], 2);
  assert_int_equal(order[3], 4);
  assert_int_equal(cl[3].closes, 0);
  assert_int_equal(cl[5].closes, 0);
  assert_null(H);
  hub_down();
}

/* --- Allocation-failure sweep --------------------------------------------- */

static void sweep_close(tc *t, int reason) {
  (void)reason;
  tc_free(t);
}

static hf_fakeq sweep_q;       /* the scenario's queue backend */
static int sweep_attached; /* whether the scenario got it attached */

static uint64_t published(cf_hub *h) {
  cf_hub_stats st;

  cf_hub_get_stats(h, &st, sizeof(st));
  return st.published;
}

/*
 * Publishes; on NOMEM (also the queue's) checks that nobody's outbox
 * moved and the queue got nothing, on success that the queue got the
 * message with the next seq.
 */
static int checked_publish(cf_hub *h, int n, const char *room,
                           const char *s) {
  uint64_t done = published(h);
  int i, rv, sent = sweep_q.n;
  size_t before[4];

  for (i = 0; i < n; i++)
    before[i] = cf_client_pending(cl[i].c);
  rv = cf_hub_publish(h, room, strlen(room), 0, s, strlen(s));
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  if (rv == CF_ERR_NOMEM) {
    for (i = 0; i < n; i++)
      assert_int_equal(cf_client_pending(cl[i].c), before[i]);
    assert_int_equal(sweep_q.n, sent);
    assert_int_equal(published(h), done);
    return rv;
  }
  assert_int_equal(published(h), done + 1);
  if (sweep_attached) {
    assert_int_equal(sweep_q.n, sent + 1);
    assert_int_equal(sweep_q.env[sent].seq, done + 1);
  }
  return rv;
}

static void checked_join(int i, const char *room) {
  int rv;

  if (cl[i].c == NULL)
    return;
  rv = cf_client_join(cl[i].c, room, strlen(room));
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  if (rv == CF_ERR_NOMEM)
    assert_int_equal(cf_client_leave(cl[i].c, room, strlen(room)),
                     CF_ERR_NOT_FOUND);
}

/* One full life of a hub; every step may meet CF_ERR_NOMEM. */
static void scenario(void) {
  cf_hub_config cfg = base_cfg();
  cf_queue *q = NULL;
  cf_envelope e;
  cf_hub *h;
  int i, rv;

  memset(cl, 0, sizeof(cl));
  memset(&sweep_q, 0, sizeof(sweep_q));
  sweep_q.mem = &tm.mem;
  sweep_attached = 0;
  cfg.history = 3;
  cfg.max_rooms = 3;
  cfg.dedupe_window = 4;
  cfg.client_buffer = 64 * 1024 + 200;
  rv = cf_hub_new(&h, &cfg);
  if (rv != CF_OK) {
    assert_int_equal(rv, CF_ERR_NOMEM);
    return;
  }
  H = h;
  rv = cf_queue_new(&q, &hf_fq_ops, &sweep_q, &tm.mem);
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  if (rv == CF_OK) {
    assert_int_equal(cf_hub_attach_queue(h, q), CF_OK);
    sweep_attached = 1;
  }
  for (i = 0; i < 4; i++) {
    rv = cf_client_new(&cl[i].c, h, &tc_ops, &cl[i]);
    assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
    cl[i].on_close = sweep_close;
  }
  for (i = 0; i < 3; i++)
    checked_join(i, "a");
  checked_join(0, "b");
  checked_join(1, "b");
  checked_publish(h, 4, "a", "one");
  checked_publish(h, 4, "b", "two");
  checked_publish(h, 4, "c", "hist-only");
  checked_publish(h, 4, "a", "three");
  memset(&e, 0, sizeof(e));
  e.origin = 77;
  e.room = "a";
  e.room_len = 1;
  e.data = "remote";
  e.len = 6;
  for (i = 1; i <= 6; i++) {
    e.seq = (uint64_t)(i <= 3 ? i : i - 3); /* 4..6 repeat 1..3 */
    rv = cf_hub_deliver(h, &e);
    assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  }
  checked_join(3, "a"); /* history replay */
  checked_join(3, "c");
  if (cl[0].c != NULL) {
    tc_drain(&cl[0]);
    rv = cf_client_send(cl[0].c, "ctl", 3);
    assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  }
  if (cl[1].c != NULL)
    cf_client_leave(cl[1].c, "a", 1);
  checked_publish(h, 4, "a", "four");
  tc_free(&cl[2]);
  cf_hub_close_all(h);
  cf_hub_free(h);
  H = NULL;
  cf_queue_free(q);
}

static void test_alloc_failure_sweep(void **state) {
  unsigned long n, total;

  (void)state;
  hub_up();
  cf_hub_free(H);
  H = NULL;
  /* A clean run first: how many allocations the scenario makes. */
  test_mem_init(&tm, 0);
  scenario();
  assert_int_equal(tm.live, 0);
  total = tm.count;
  assert_true(total > 20);
  for (n = 1; n <= total; n++) {
    test_mem_init(&tm, n);
    scenario();
    assert_true(tm.failed);
    assert_int_equal(tm.live, 0);
  }
  test_mem_init(&tm, 0);
  hub_down();
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, NULL)
  const struct CMUnitTest tests[] = {
      T(test_config),
      T(test_client_new_errors),
      T(test_stats_size),
      T(test_fanout_shared),
      T(test_wake_once_per_transition),
      T(test_pop_shares_message),
      T(test_one_order),
      T(test_multi_room),
      T(test_publish_errors),
      T(test_no_framer),
      T(test_deliver_errors),
      T(test_queue_link),
      T(test_deliver_to_empty_room_is_free),
      T(test_queue_refusal_all_or_nothing),
      T(test_queue_order_with_wake_publish),
      T(test_wake_frees_self),
      T(test_wake_frees_other_not_yet_woken),
      T(test_wake_publishes),
      T(test_wake_frees_hub),
      T(test_wake_frees_hub_then_more),
      T(test_wake_joins),
      T(test_close_all_order),
      T(test_close_all_reentrant),
      T(test_alloc_failure_sweep),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
