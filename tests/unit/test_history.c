/* Per-room history: kept, replayed to joiners, bounded, evicted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "hub_fixture.h"

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

static cf_hub *hub_new(uint32_t history, size_t buffer, uint32_t max_rooms) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.history = history;
  cfg.client_buffer = buffer;
  cfg.max_message = 128;
  cfg.max_rooms = max_rooms;
  cfg.framer = hf_framer_len;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

static void tc_new(cf_hub *h, tc *t) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(cf_client_new(&t->c, h, &ops, t), CF_OK);
}

static void tc_drain(tc *t) {
  hf_drain(t->c, t->got, sizeof(t->got), &t->got_len);
}

static void tc_got_is(tc *t, const char *s) {
  tc_drain(t);
  assert_int_equal(t->got_len, strlen(s));
  assert_memory_equal(t->got, s, t->got_len);
  t->got_len = 0;
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
    assert_int_equal(hf_pub(h, "r", s), CF_OK);
  }
  assert_int_equal(cf_client_join(b.c, "r", 1), CF_OK);
  assert_int_equal(b.wakes, 1);
  /* Replay shares the very messages the members got. */
  assert_int_equal(cf_client_iov(a.c, ia, 8), 6);
  assert_int_equal(cf_client_iov(b.c, ib, 8), 4);
  for (i = 0; i < 4; i++)
    assert_ptr_equal(ib[i].iov_base, ia[2 + i].iov_base);
  tc_got_is(&b, "<2>m3<2>m4<2>m5<2>m6");
  assert_int_equal(hf_stats(h).deliveries, 6 + 4);
  /* Live messages follow the replay. */
  assert_int_equal(hf_pub(h, "r", "m7"), CF_OK);
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
    assert_int_equal(hf_pub(h, "room", s), CF_OK);
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
  assert_int_equal(hf_pub(h, "quiet", "p1"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 1);
  memset(&e, 0, sizeof(e));
  e.origin = 5;
  e.seq = 1;
  e.room = "quiet";
  e.room_len = 5;
  e.data = "q1";
  e.len = 2;
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(hf_stats(h).deliveries, 0);
  assert_int_equal(cf_client_join(a.c, "quiet", 5), CF_OK);
  tc_got_is(&a, "<2>p1<2>q1");
  /* Leaving keeps the room for its history; rejoining replays it. */
  assert_int_equal(cf_client_leave(a.c, "quiet", 5), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 1);
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
  assert_int_equal(hf_pub(h, "r", "x"), CF_OK);
  assert_int_equal(cf_client_join(b.c, "r", 1), CF_OK);
  assert_int_equal(cf_client_pending(b.c), 0);
  assert_int_equal(b.wakes, 0);
  assert_int_equal(cf_client_leave(a.c, "r", 1), CF_OK);
  assert_int_equal(cf_client_leave(b.c, "r", 1), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 0);
  /* A room nobody is in costs nothing at all. */
  allocs = tm.count;
  live = tm.live;
  assert_int_equal(hf_pub(h, "r", "y"), CF_OK);
  assert_int_equal(tm.count - allocs, 1); /* the message itself */
  assert_int_equal(tm.live, live);
  assert_int_equal(hf_stats(h).rooms, 0);
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
    assert_int_equal(hf_pub(h, "r", payload), CF_OK);
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
  assert_int_equal(hf_stats(h).slow_closes, 0);
  cf_hub_free(h);
}

static void test_idle_rooms_lru(void **state) {
  cf_hub *h = hub_new(2, 0, 3);
  tc a;

  (void)state;
  tc_new(h, &a);
  assert_int_equal(cf_client_join(a.c, "live", 4), CF_OK);
  assert_int_equal(hf_pub(h, "r1", "1"), CF_OK);
  assert_int_equal(hf_pub(h, "r2", "2"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
  /* r1 used again: r2 is now the least recently used idle room. */
  assert_int_equal(hf_pub(h, "r1", "3"), CF_OK);
  assert_int_equal(hf_pub(h, "r3", "4"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
  assert_int_equal(cf_client_join(a.c, "r2", 2), CF_OK);
  assert_int_equal(cf_client_pending(a.c), 0);
  /* That join evicted r1; r3 still has its message. */
  assert_int_equal(cf_client_join(a.c, "r3", 2), CF_OK);
  tc_got_is(&a, "<1>4");
  /* All rooms have members: history for a new room is not kept. */
  assert_int_equal(hf_pub(h, "r4", "5"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
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
    rv = hf_pub(h, "new", "x");
    if (!tm.failed) {
      assert_int_equal(rv, CF_OK);
      break;
    }
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(hf_stats(h).rooms, 0);
    assert_int_equal(hf_stats(h).published, 0);
  }
  tm.fail_at = 0;
  assert_int_equal(cf_client_join(a.c, "new", 3), CF_OK);
  tc_got_is(&a, "<1>x");
  cf_hub_free(h);
}

/* --- The hub-wide history budget ----------------------------------------- */

#define P100 "0123456789012345678901234567890123456789" \
             "0123456789012345678901234567890123456789" \
             "01234567890123456789"
#define ECOST (100u + 256u) /* a 100-byte entry with its overhead */

/* No framer: wire bytes are the payload. */
static cf_hub *hub_budget(uint32_t history, size_t history_bytes) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.history = history;
  cfg.history_bytes = history_bytes;
  cfg.max_message = 128;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

/* Publishes a 100-byte payload whose first bytes are tag. */
static int pub100(cf_hub *h, const char *room, const char *tag) {
  char p[101] = P100;

  memcpy(p, tag, strlen(tag));
  return cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT, p, 100);
}

/* The tags (first two bytes) of what a fresh joiner of room gets. */
static void history_is(cf_hub *h, const char *room, const char *tags) {
  char got[64];
  size_t i, n = 0;
  tc z;

  tc_new(h, &z);
  assert_int_equal(cf_client_join(z.c, room, strlen(room)), CF_OK);
  tc_drain(&z);
  assert_int_equal(z.got_len % 100, 0);
  for (i = 0; i < z.got_len; i += 100) {
    assert_true(n + 2 < sizeof(got));
    got[n++] = z.got[i];
    got[n++] = z.got[i + 1];
  }
  got[n] = 0;
  assert_string_equal(got, tags);
  cf_client_free(z.c);
}

static void test_budget_config(void **state) {
  const size_t least = 128 + CF_FRAME_HEADROOM_MAX + 256;
  cf_hub_config cfg;
  cf_hub *h;

  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.max_message = 128;
  cfg.history = 10;
  cfg.mem = &tm.mem;
  /* The budget must hold one largest message with its overheads. */
  cfg.history_bytes = least - 1;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_ERR_INVALID);
  assert_int_equal(tm.count, 0);
  cfg.history_bytes = least;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  cf_hub_free(h);
  /* The default grows to fit a max_message above it. */
  cfg.history_bytes = 0;
  cfg.max_message = (size_t)100 << 20;
  cfg.client_buffer = (size_t)101 << 20;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  cf_hub_free(h);
}

/*
 * Idle rooms lose history before rooms with members, whatever their
 * age; within those groups the least recently used room goes first, its
 * oldest entries first; an idle room emptied is freed.
 */
static void test_budget_lru_order(void **state) {
  cf_hub *h = hub_budget(20, 10 * ECOST);
  tc a;
  int i;

  (void)state;
  tc_new(h, &a);
  assert_int_equal(cf_client_join(a.c, "b1", 2), CF_OK);
  assert_int_equal(cf_client_join(a.c, "b2", 2), CF_OK);
  assert_int_equal(pub100(h, "b2", "x0"), CF_OK);
  assert_int_equal(pub100(h, "i1", "a1"), CF_OK);
  assert_int_equal(pub100(h, "i1", "a2"), CF_OK);
  assert_int_equal(pub100(h, "i1", "a3"), CF_OK);
  assert_int_equal(pub100(h, "i2", "c1"), CF_OK);
  assert_int_equal(pub100(h, "i2", "c2"), CF_OK);
  assert_int_equal(pub100(h, "i2", "c3"), CF_OK);
  for (i = 1; i <= 3; i++) {
    char tag[3] = {'d', (char)('0' + i), 0};

    assert_int_equal(pub100(h, "b1", tag), CF_OK);
  }
  /* Exactly at the budget: nothing dropped yet. */
  assert_int_equal(hf_stats(h).history_bytes, 10 * ECOST);
  assert_int_equal(hf_stats(h).rooms, 4);
  /*
   * i1 goes first although b2 was used before it, then i2. (Rooms are
   * only looked into at the end: a join is a use, and would reorder.)
   */
  assert_int_equal(pub100(h, "b1", "d4"), CF_OK);
  assert_int_equal(hf_stats(h).history_bytes, 10 * ECOST);
  assert_int_equal(hf_stats(h).rooms, 4);
  assert_int_equal(pub100(h, "b1", "d5"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 4);
  assert_int_equal(pub100(h, "b1", "d6"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
  assert_int_equal(pub100(h, "b1", "d7"), CF_OK);
  assert_int_equal(pub100(h, "b1", "d8"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
  assert_int_equal(pub100(h, "b1", "d9"), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 2);
  /* No idle room left: the least recently used room with members (b2
   * loses x0 but stays, for its member), then b1's own oldest. */
  assert_int_equal(pub100(h, "b1", "da"), CF_OK);
  assert_int_equal(pub100(h, "b1", "db"), CF_OK);
  assert_int_equal(hf_stats(h).history_bytes, 10 * ECOST);
  assert_int_equal(hf_stats(h).rooms, 2);
  history_is(h, "b2", "");
  history_is(h, "b1", "d2d3d4d5d6d7d8d9dadb");
  history_is(h, "i1", "");
  history_is(h, "i2", "");
  /* The member got everything: history drops never touch outboxes. */
  assert_int_equal(cf_client_pending(a.c), 12 * 100);
  tc_drain(&a);
  cf_client_free(a.c);
  assert_int_equal(hf_stats(h).rooms, 1);
  cf_hub_free(h);
}

/* A message that alone fills the budget empties every other room. */
static void test_budget_big_message(void **state) {
  const size_t least = 128 + CF_FRAME_HEADROOM_MAX + 256;
  char big[128];
  cf_hub *h = hub_budget(10, least);

  (void)state;
  memset(big, 'B', sizeof(big));
  assert_int_equal(cf_hub_publish(h, "r1", 2, CF_MSG_TEXT, big, 128),
                   CF_OK);
  assert_int_equal(hf_stats(h).history_bytes, 128 + 256);
  assert_int_equal(cf_hub_publish(h, "r2", 2, CF_MSG_TEXT, "s", 1), CF_OK);
  assert_int_equal(hf_stats(h).history_bytes, 1 + 256);
  assert_int_equal(hf_stats(h).rooms, 1);
  /* r2 is the only room with history: it keeps its newest entry. */
  assert_int_equal(cf_hub_publish(h, "r2", 2, CF_MSG_TEXT, big, 128),
                   CF_OK);
  assert_int_equal(hf_stats(h).history_bytes, 128 + 256);
  assert_int_equal(hf_stats(h).rooms, 1);
  cf_hub_free(h);
}

static cf_envelope env_for(const char *room, uint64_t seq, const char *p) {
  cf_envelope e;

  memset(&e, 0, sizeof(e));
  e.origin = 7;
  e.seq = seq;
  e.room = room;
  e.room_len = strlen(room);
  e.data = p;
  e.len = strlen(p);
  return e;
}

/* Rooms made only to keep history of remote messages obey the budget. */
static void test_budget_remote_rooms(void **state) {
  cf_hub *h = hub_budget(4, 5 * ECOST);
  char room[16];
  uint64_t i;

  (void)state;
  for (i = 1; i <= 50; i++) {
    cf_envelope e;
    char p[101] = P100;

    snprintf(room, sizeof(room), "remote-%02u", (unsigned)i);
    memcpy(p, room + 7, 2);
    e = env_for(room, i, p);
    assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
    assert_true(hf_stats(h).history_bytes <= 5 * ECOST);
  }
  assert_int_equal(hf_stats(h).received, 50);
  assert_int_equal(hf_stats(h).history_bytes, 5 * ECOST);
  /* Only the five newest rooms are left, each with its message. */
  assert_int_equal(hf_stats(h).rooms, 5);
  history_is(h, "remote-46", "46");
  history_is(h, "remote-50", "50");
  history_is(h, "remote-45", "");
  cf_hub_free(h);
}

/*
 * A history ring follows the room's entries rather than the configured
 * count: a huge `history` does not make each room allocate for it.
 */
typedef struct big_mem {
  cf_mem mem;
  size_t largest; /* biggest single request seen */
} big_mem;

static void *bm_malloc(size_t n, void *ud) {
  big_mem *b = ud;

  if (n > b->largest)
    b->largest = n;
  return tm.mem.malloc(n, tm.mem.user_data);
}

static void *bm_calloc(size_t k, size_t n, void *ud) {
  big_mem *b = ud;

  if (n != 0 && k > SIZE_MAX / n)
    return NULL;
  if (k * n > b->largest)
    b->largest = k * n;
  return tm.mem.calloc(k, n, tm.mem.user_data);
}

static void *bm_realloc(void *p, size_t n, void *ud) {
  big_mem *b = ud;

  if (n > b->largest)
    b->largest = n;
  return tm.mem.realloc(p, n, tm.mem.user_data);
}

static void bm_free(void *p, void *ud) {
  (void)ud;
  tm.mem.free(p, tm.mem.user_data);
}

static void test_budget_rings_small(void **state) {
  big_mem bm = {{NULL, bm_malloc, bm_free, bm_calloc, bm_realloc}, 0};
  cf_hub_config cfg;
  char room[16];
  cf_hub *h;
  int i;

  (void)state;
  bm.mem.user_data = &bm;
  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.history = 1u << 20;
  cfg.max_message = 128;
  cfg.mem = &bm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  for (i = 0; i < 10; i++) {
    snprintf(room, sizeof(room), "r%d", i);
    assert_int_equal(cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT,
                                    "m", 1),
                     CF_OK);
  }
  assert_int_equal(hf_stats(h).rooms, 10);
  assert_true(bm.largest < 4096);
  cf_hub_free(h);
}

/* A push that needs a bigger ring fails whole, before the queue. */
static void test_budget_ring_growth_nomem(void **state) {
  cf_hub *h = hub_budget(16, 0);
  unsigned long n;
  tc a;
  int i;

  (void)state;
  tc_new(h, &a);
  assert_int_equal(cf_client_join(a.c, "r", 1), CF_OK);
  for (i = 0; i < 4; i++)
    assert_int_equal(pub100(h, "r", "aa"), CF_OK);
  tc_drain(&a);
  a.got_len = 0;
  for (n = 1;; n++) {
    int rv;

    tm.fail_at = tm.count + n;
    tm.failed = 0;
    rv = pub100(h, "r", "bb");
    if (!tm.failed) {
      assert_int_equal(rv, CF_OK);
      break;
    }
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(cf_client_pending(a.c), 0);
    assert_int_equal(hf_stats(h).published, 4);
  }
  tm.fail_at = 0;
  assert_true(n > 2);
  history_is(h, "r", "aaaaaaaabb");
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_kept_and_replayed),
      T(test_ring_wraps_in_order),
      T(test_room_without_members),
      T(test_disabled),
      T(test_partial_fit),
      T(test_idle_rooms_lru),
      T(test_history_publish_nomem),
      T(test_budget_config),
      T(test_budget_lru_order),
      T(test_budget_big_message),
      T(test_budget_remote_rooms),
      T(test_budget_rings_small),
      T(test_budget_ring_growth_nomem),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
