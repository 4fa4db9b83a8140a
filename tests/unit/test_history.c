/* Per-room history: kept, replayed to joiners, bounded, evicted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "test_mem.h"

static test_mem tm;

typedef struct tc {
  cf_client *c;
  int wakes;
  char got[4096];
  size_t got_len;
} tc;

static void tc_wake(cf_client *c, void *ud) {
  (void)c;
  ((tc *)ud)->wakes++;
}

static void tc_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  (void)ud;
  fail_msg("no client should be closed here");
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, tc_wake, tc_close};

static size_t framer(uint8_t *buf, uint32_t flags, size_t len, void *ud) {
  char tmp[CF_FRAME_HEADROOM_MAX + 1];
  int n = snprintf(tmp, sizeof(tmp), "<%zu>", len);

  (void)flags;
  (void)ud;
  memcpy(buf, tmp, (size_t)n);
  return (size_t)n;
}

static cf_hub *hub_new(uint32_t history, size_t buffer, uint32_t max_rooms) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.history = history;
  cfg.client_buffer = buffer;
  cfg.max_message = 128;
  cfg.max_rooms = max_rooms;
  cfg.framer = framer;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

static void tc_new(cf_hub *h, tc *t) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(cf_client_new(&t->c, h, &ops, t), CF_OK);
}

static void tc_drain(tc *t) {
  struct iovec iov[8];
  int n, i;

  while ((n = cf_client_iov(t->c, iov, 8)) > 0) {
    size_t total = 0;

    for (i = 0; i < n; i++) {
      assert_true(t->got_len + iov[i].iov_len <= sizeof(t->got));
      memcpy(t->got + t->got_len, iov[i].iov_base, iov[i].iov_len);
      t->got_len += iov[i].iov_len;
      total += iov[i].iov_len;
    }
    cf_client_consume(t->c, total);
  }
}

static void tc_got_is(tc *t, const char *s) {
  tc_drain(t);
  assert_int_equal(t->got_len, strlen(s));
  assert_memory_equal(t->got, s, t->got_len);
  t->got_len = 0;
}

static int pub(cf_hub *h, const char *room, const char *s) {
  return cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT, s, strlen(s));
}

static cf_hub_stats stats(const cf_hub *h) {
  cf_hub_stats st;

  cf_hub_get_stats(h, &st, sizeof(st));
  return st;
}

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  assert_int_equal(tm.live, 0);
  return 0;
}

static void test_kept_and_replayed(void **state) {
  cf_hub *h = hub_new(4, 0, 0);
  struct iovec ia[8], ib[8];
  tc a, b;
  int i;

  (void)state;
  tc_new(h, &a);
  tc_new(h, &b);
  assert_int_equal(cf_client_join(a.c, "r", 1), CF_OK);
  for (i = 1; i <= 6; i++) {
    char s[4];

    snprintf(s, sizeof(s), "m%d", i);
    assert_int_equal(pub(h, "r", s), CF_OK);
  }
  assert_int_equal(cf_client_join(b.c, "r", 1), CF_OK);
  assert_int_equal(b.wakes, 1);
  /* Replay shares the very messages the members got. */
  assert_int_equal(cf_client_iov(a.c, ia, 8), 6);
  assert_int_equal(cf_client_iov(b.c, ib, 8), 4);
  for (i = 0; i < 4; i++)
    assert_ptr_equal(ib[i].iov_base, ia[2 + i].iov_base);
  tc_got_is(&b, "<2>m3<2>m4<2>m5<2>m6");
  assert_int_equal(stats(h).deliveries, 6 + 4);
  /* Live messages follow the replay. */
  assert_int_equal(pub(h, "r", "m7"), CF_OK);
  tc_got_is(&b, "<2>m7");
  tc_got_is(&a, "<2>m1<2>m2<2>m3<2>m4<2>m5<2>m6<2>m7");
  cf_hub_free(h);
}

static void test_ring_wraps_in_order(void **state) {
  cf_hub *h = hub_new(7, 0, 0);
  char want[256];
  size_t len = 0;
  tc a;
  int i;

  (void)state;
  tc_new(h, &a);
  for (i = 0; i < 100; i++) {
    char s[8];

    snprintf(s, sizeof(s), "%02d", i);
    assert_int_equal(pub(h, "room", s), CF_OK);
    if (i >= 93)
      len += (size_t)snprintf(want + len, sizeof(want) - len, "<2>%s", s);
  }
  assert_int_equal(cf_client_join(a.c, "room", 4), CF_OK);
  tc_got_is(&a, want);
  cf_hub_free(h);
}

static void test_room_without_members(void **state) {
  cf_hub *h = hub_new(3, 0, 0);
  cf_envelope e;
  tc a;

  (void)state;
  tc_new(h, &a);
  assert_int_equal(pub(h, "quiet", "p1"), CF_OK);
  assert_int_equal(stats(h).rooms, 1);
  memset(&e, 0, sizeof(e));
  e.origin = 5;
  e.seq = 1;
  e.room = "quiet";
  e.room_len = 5;
  e.data = "q1";
  e.len = 2;
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(stats(h).deliveries, 0);
  assert_int_equal(cf_client_join(a.c, "quiet", 5), CF_OK);
  tc_got_is(&a, "<2>p1<2>q1");
  /* Leaving keeps the room for its history; rejoining replays it. */
  assert_int_equal(cf_client_leave(a.c, "quiet", 5), CF_OK);
  assert_int_equal(stats(h).rooms, 1);
  assert_int_equal(cf_client_join(a.c, "quiet", 5), CF_OK);
  tc_got_is(&a, "<2>p1<2>q1");
  cf_hub_free(h);
}

static void test_disabled(void **state) {
  cf_hub *h = hub_new(0, 0, 0);
  unsigned long allocs, live;
  tc a, b;

  (void)state;
  tc_new(h, &a);
  tc_new(h, &b);
  assert_int_equal(cf_client_join(a.c, "r", 1), CF_OK);
  assert_int_equal(pub(h, "r", "x"), CF_OK);
  assert_int_equal(cf_client_join(b.c, "r", 1), CF_OK);
  assert_int_equal(cf_client_pending(b.c), 0);
  assert_int_equal(b.wakes, 0);
  assert_int_equal(cf_client_leave(a.c, "r", 1), CF_OK);
  assert_int_equal(cf_client_leave(b.c, "r", 1), CF_OK);
  assert_int_equal(stats(h).rooms, 0);
  /* A room nobody is in costs nothing at all. */
  allocs = tm.count;
  live = tm.live;
  assert_int_equal(pub(h, "r", "y"), CF_OK);
  assert_int_equal(tm.count - allocs, 1); /* the message itself */
  assert_int_equal(tm.live, live);
  assert_int_equal(stats(h).rooms, 0);
  cf_hub_free(h);
}

static void test_partial_fit(void **state) {
  /* 100-byte payloads are 105 wire bytes, 169 with the entry cost. */
  const size_t buffer = 400;
  char payload[101];
  char want[512];
  cf_hub *h = hub_new(5, buffer, 0);
  tc a, b;
  int i;

  (void)state;
  tc_new(h, &a);
  tc_new(h, &b);
  for (i = 0; i < 5; i++) {
    memset(payload, 'a' + i, 100);
    payload[100] = 0;
    assert_int_equal(pub(h, "r", payload), CF_OK);
  }
  /* Two newest fit (338 <= 400), oldest first. */
  assert_int_equal(cf_client_join(a.c, "r", 1), CF_OK);
  snprintf(want, sizeof(want), "<100>%.100s<100>%.100s",
           "dddddddddddddddddddddddddddddddddddddddddddddddddd"
           "dddddddddddddddddddddddddddddddddddddddddddddddddd",
           "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
           "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
  tc_got_is(&a, want);
  /* What is already queued counts: only the newest fits now. */
  assert_int_equal(cf_client_send(b.c, payload, 100), CF_OK);
  assert_int_equal(cf_client_join(b.c, "r", 1), CF_OK);
  tc_got_is(&b, "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
                "<100>"
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"
                "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee");
  /* A joiner is never closed for history that does not fit. */
  assert_int_equal(stats(h).slow_closes, 0);
  cf_hub_free(h);
}

static void test_idle_rooms_lru(void **state) {
  cf_hub *h = hub_new(2, 0, 3);
  tc a;

  (void)state;
  tc_new(h, &a);
  assert_int_equal(cf_client_join(a.c, "live", 4), CF_OK);
  assert_int_equal(pub(h, "r1", "1"), CF_OK);
  assert_int_equal(pub(h, "r2", "2"), CF_OK);
  assert_int_equal(stats(h).rooms, 3);
  /* r1 used again: r2 is now the least recently used idle room. */
  assert_int_equal(pub(h, "r1", "3"), CF_OK);
  assert_int_equal(pub(h, "r3", "4"), CF_OK);
  assert_int_equal(stats(h).rooms, 3);
  assert_int_equal(cf_client_join(a.c, "r2", 2), CF_OK);
  assert_int_equal(cf_client_pending(a.c), 0);
  /* That join evicted r1; r3 still has its message. */
  assert_int_equal(cf_client_join(a.c, "r3", 2), CF_OK);
  tc_got_is(&a, "<1>4");
  /* All rooms have members: history for a new room is not kept. */
  assert_int_equal(pub(h, "r4", "5"), CF_OK);
  assert_int_equal(stats(h).rooms, 3);
  assert_int_equal(cf_client_join(a.c, "r4", 2), CF_ERR_LIMIT);
  cf_hub_free(h);
}

static void test_history_publish_nomem(void **state) {
  cf_hub *h = hub_new(2, 0, 0);
  unsigned long n;
  tc a;

  (void)state;
  tc_new(h, &a);
  /* Each failure point of a publish that creates a room for history. */
  for (n = 1;; n++) {
    int rv;

    tm.fail_at = tm.count + n;
    tm.failed = 0;
    rv = pub(h, "new", "x");
    if (!tm.failed) {
      assert_int_equal(rv, CF_OK);
      break;
    }
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(stats(h).rooms, 0);
    assert_int_equal(stats(h).published, 0);
  }
  tm.fail_at = 0;
  assert_int_equal(cf_client_join(a.c, "new", 3), CF_OK);
  tc_got_is(&a, "<1>x");
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_kept_and_replayed),
      T(test_ring_wraps_in_order),
      T(test_room_without_members),
      T(test_disabled),
      T(test_partial_fit),
      T(test_idle_rooms_lru),
      T(test_history_publish_nomem),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
