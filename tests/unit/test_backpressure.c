/* Bounded outboxes: slow consumers are cut off, others never notice. */
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
  int wakes, closes, reason;
  int drain_on_wake;  /* a fast reader: drains whenever woken */
  int free_on_close;
  const char *send_on_close;
  size_t drained;
} tc;

static void tc_drain(tc *t) {
  hf_drain(t->c, NULL, 0, &t->drained);
}

static void tc_wake(cf_client *c, void *ud) {
  tc *t = ud;

  (void)c;
  t->wakes++;
  if (t->drain_on_wake)
    tc_drain(t);
}

static void tc_close(cf_client *c, int reason, void *ud) {
  tc *t = ud;

  t->closes++;
  t->reason = reason;
  if (t->send_on_close != NULL)
    assert_int_equal(cf_client_send(c, t->send_on_close,
                                    strlen(t->send_on_close)),
                     CF_OK);
  if (t->free_on_close) {
    cf_client_free(c);
    t->c = NULL;
  }
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, tc_wake, tc_close};

/* hf_framer_len writes "<100>": 5 header bytes for the 100-byte payloads. */
#define WIRE 105u                  /* framed 100-byte payload */
#define COST (WIRE + 64u)          /* with the per-entry cost */
#define BUFFER (6u * COST + 10u)   /* six fit, the seventh does not */

static cf_hub *hub_new(size_t buffer, cf_framer_fn fr) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.client_buffer = buffer;
  cfg.max_message = 100;
  cfg.framer = fr;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

static void tc_new(cf_hub *h, tc *t, const char *room) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(cf_client_new(&t->c, h, &ops, t), CF_OK);
  if (room != NULL)
    assert_int_equal(cf_client_join(t->c, room, strlen(room)), CF_OK);
}

static int pub100(cf_hub *h, const char *room, char fill) {
  char p[100];

  memset(p, fill, sizeof(p));
  return cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT, p, sizeof(p));
}

static void test_slow_client_closed(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  tc fast, slow;
  int i;

  (void)state;
  tc_new(h, &fast, "r");
  tc_new(h, &slow, "r");
  fast.drain_on_wake = 1;
  for (i = 0; i < 6; i++)
    assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  assert_int_equal(slow.closes, 0);
  assert_int_equal(cf_client_pending(slow.c), 6 * WIRE);
  assert_int_equal(hf_stats(h).outbox_bytes, 6 * WIRE);

  assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  assert_int_equal(slow.closes, 1);
  assert_int_equal(slow.reason, CF_CLOSE_SLOW);
  /* Nothing had been sent: every queued message is dropped. */
  assert_int_equal(cf_client_pending(slow.c), 0);
  assert_int_equal(hf_stats(h).outbox_bytes, 0);
  assert_int_equal(hf_stats(h).slow_closes, 1);

  /* The slow one gets nothing more; the fast one everything. */
  for (i = 0; i < 20; i++)
    assert_int_equal(pub100(h, "r", 'c'), CF_OK);
  assert_int_equal(slow.closes, 1);
  assert_int_equal(slow.wakes, 1);
  assert_int_equal(cf_client_pending(slow.c), 0);
  assert_int_equal(fast.drained, 27 * WIRE);
  assert_int_equal(fast.closes, 0);
  assert_int_equal(hf_stats(h).deliveries, 27 + 6);
  assert_int_equal(hf_stats(h).slow_closes, 1);
  /* A closing client cannot join, and close_all does not repeat it. */
  assert_int_equal(cf_client_join(slow.c, "q", 1), CF_ERR_CLOSED);
  cf_hub_close_all(h);
  assert_int_equal(slow.closes, 1);
  assert_int_equal(fast.closes, 1);
  assert_int_equal(fast.reason, CF_CLOSE_SHUTDOWN);
  cf_hub_free(h);
}

static void test_partly_sent_head_kept(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  struct iovec iov[4];
  tc slow;
  int i;

  (void)state;
  tc_new(h, &slow, "r");
  assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  for (i = 0; i < 5; i++)
    assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  /* The transport wrote 10 bytes of the first message. */
  cf_client_consume(slow.c, 10);
  assert_int_equal(slow.closes, 0);
  assert_int_equal(pub100(h, "r", 'c'), CF_OK);
  assert_int_equal(slow.closes, 1);
  /* The rest of the started message stays, so the stream is whole. */
  assert_int_equal(cf_client_pending(slow.c), WIRE - 10);
  assert_int_equal(hf_stats(h).outbox_bytes, WIRE - 10);
  assert_int_equal(cf_client_iov(slow.c, iov, 4), 1);
  assert_int_equal(iov[0].iov_len, WIRE - 10);
  assert_memory_equal(iov[0].iov_base, "aaaa", 4);
  assert_null(cf_client_pop(slow.c));
  cf_client_consume(slow.c, WIRE);
  assert_int_equal(hf_stats(h).outbox_bytes, 0);
  cf_hub_free(h);
}

static void test_close_handler_sends_and_frees(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  tc a, b, c;
  int i;

  (void)state;
  tc_new(h, &a, "r");
  tc_new(h, &b, "r");
  tc_new(h, &c, "r");
  a.send_on_close = "BYE";
  b.free_on_close = 1;
  c.drain_on_wake = 1;
  for (i = 0; i < 7; i++)
    assert_int_equal(pub100(h, "r", 'x'), CF_OK);
  assert_int_equal(a.closes, 1);
  assert_int_equal(b.closes, 1);
  assert_null(b.c);
  /* A closing client may still queue its own bytes. */
  assert_int_equal(cf_client_pending(a.c), 3);
  assert_int_equal(a.wakes, 2);
  assert_int_equal(hf_stats(h).clients, 2);
  assert_int_equal(hf_stats(h).slow_closes, 2);
  assert_int_equal(hf_stats(h).outbox_bytes, 3);
  assert_int_equal(c.drained, 7 * WIRE);
  cf_hub_free(h);
}

static void test_rooms_isolated(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  tc slow, fast_x, fast_y;
  int i;

  (void)state;
  tc_new(h, &slow, "x");
  assert_int_equal(cf_client_join(slow.c, "y", 1), CF_OK);
  tc_new(h, &fast_x, "x");
  tc_new(h, &fast_y, "y");
  fast_x.drain_on_wake = 1;
  fast_y.drain_on_wake = 1;
  for (i = 0; i < 7; i++)
    assert_int_equal(pub100(h, "x", 'x'), CF_OK);
  assert_int_equal(slow.closes, 1);
  assert_int_equal(pub100(h, "y", 'y'), CF_OK);
  assert_int_equal(cf_client_pending(slow.c), 0);
  assert_int_equal(fast_y.drained, WIRE);
  assert_int_equal(fast_x.drained, 7 * WIRE);
  assert_int_equal(fast_x.closes + fast_y.closes, 0);
  cf_hub_free(h);
}

static void test_gauge(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  tc t[3];
  cf_msg *m;
  int i;

  (void)state;
  for (i = 0; i < 3; i++)
    tc_new(h, &t[i], "r");
  assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  assert_int_equal(hf_stats(h).outbox_bytes, 6 * WIRE);
  cf_client_consume(t[0].c, 7);
  assert_int_equal(hf_stats(h).outbox_bytes, 6 * WIRE - 7);
  m = cf_client_pop(t[1].c);
  cf_msg_unref(m);
  assert_int_equal(hf_stats(h).outbox_bytes, 5 * WIRE - 7);
  assert_int_equal(cf_client_send(t[1].c, "ctl", 3), CF_OK);
  assert_int_equal(hf_stats(h).outbox_bytes, 5 * WIRE - 4);
  cf_client_free(t[2].c);
  assert_int_equal(hf_stats(h).outbox_bytes, 3 * WIRE - 4);
  assert_int_equal(hf_stats(h).outbox_bytes,
                   cf_client_pending(t[0].c) + cf_client_pending(t[1].c));
  cf_client_consume(t[0].c, 1u << 20);
  cf_client_consume(t[1].c, 1u << 20);
  assert_int_equal(hf_stats(h).outbox_bytes, 0);
  cf_hub_free(h);
}

static void test_empty_messages_bounded(void **state) {
  /* No framer, empty payloads: only the entry cost limits the count. */
  cf_hub *h = hub_new(10 * 64 + 63, NULL);
  tc t;
  int i;

  (void)state;
  tc_new(h, &t, "r");
  for (i = 0; i < 10; i++)
    assert_int_equal(cf_hub_publish(h, "r", 1, 0, NULL, 0), CF_OK);
  assert_int_equal(t.closes, 0);
  assert_int_equal(cf_client_pending(t.c), 0);
  assert_int_equal(cf_hub_publish(h, "r", 1, 0, NULL, 0), CF_OK);
  assert_int_equal(t.closes, 1);
  assert_int_equal(t.reason, CF_CLOSE_SLOW);
  assert_null(cf_client_pop(t.c));
  cf_hub_free(h);
}

static void test_ring_growth_failure_is_nomem(void **state) {
  cf_hub *h = hub_new(1u << 20, hf_framer_len);
  tc fast, full;
  int i;

  (void)state;
  tc_new(h, &fast, "r");
  tc_new(h, &full, "r");
  fast.drain_on_wake = 1;
  for (i = 0; i < 8; i++)
    assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  /* full's ring holds 8; the next message needs a bigger one. */
  tm.fail_at = tm.count + 2; /* 1: the message, 2: full's new ring */
  assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  assert_true(tm.failed);
  tm.fail_at = 0;
  /* Cut off, as it would miss the message, but not called slow. */
  assert_int_equal(full.closes, 1);
  assert_int_equal(full.reason, CF_CLOSE_NOMEM);
  assert_int_equal(hf_stats(h).nomem_closes, 1);
  assert_int_equal(hf_stats(h).slow_closes, 0);
  assert_int_equal(cf_client_pending(full.c), 0);
  assert_int_equal(fast.drained, 9 * WIRE);
  assert_int_equal(fast.closes, 0);
  /* It gets nothing more, and is not closed again. */
  assert_int_equal(pub100(h, "r", 'c'), CF_OK);
  assert_int_equal(full.closes, 1);
  assert_int_equal(cf_client_pending(full.c), 0);
  cf_hub_free(h);
}

static void test_client_new_reserves_ring(void **state) {
  cf_hub *h = hub_new(1u << 20, hf_framer_len);
  unsigned long n, allocs;
  tc t;

  (void)state;
  /* Every allocation of cf_client_new fails in turn, cleanly. */
  for (n = 1;; n++) {
    int rv;

    memset(&t, 0, sizeof(t));
    tm.fail_at = tm.count + n;
    tm.failed = 0;
    rv = cf_client_new(&t.c, h, &ops, &t);
    if (!tm.failed)
      break;
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(hf_stats(h).clients, 0);
  }
  tm.fail_at = 0;
  /* The client itself and its first ring. */
  assert_int_equal(n, 3);
  assert_int_equal(cf_client_join(t.c, "r", 1), CF_OK);
  /* The first messages to it allocate nothing but themselves. */
  allocs = tm.count;
  for (n = 0; n < 8; n++)
    assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  assert_int_equal(tm.count - allocs, 8);
  assert_int_equal(t.closes, 0);
  cf_hub_free(h);
}

static void test_burst_ring_not_reallocated(void **state) {
  cf_hub *h = hub_new(1u << 20, hf_framer_len);
  unsigned long allocs;
  tc t;
  int i;

  (void)state;
  tc_new(h, &t, "r");
  for (i = 0; i < 300; i++)
    assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  tc_drain(&t);
  assert_int_equal(t.drained, 300 * WIRE);
  /* The next burst (up to the kept ring) reuses it. */
  allocs = tm.count;
  for (i = 0; i < 200; i++)
    assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  assert_int_equal(tm.count - allocs, 200);
  assert_int_equal(t.closes, 0);
  cf_hub_free(h);
}

static void test_send_allowance(void **state) {
  cf_hub *h = hub_new(BUFFER, hf_framer_len);
  char big[4096];
  tc t;
  int i;

  (void)state;
  memset(big, 'z', sizeof(big));
  tc_new(h, &t, "r");
  for (i = 0; i < 6; i++)
    assert_int_equal(pub100(h, "r", 'a'), CF_OK);
  /* The transport's own bytes may go 4 KiB past client_buffer... */
  assert_int_equal(cf_client_send(t.c, big, 4000), CF_OK);
  /* ...but not further; and that is an error, not a slow close. */
  assert_int_equal(cf_client_send(t.c, big, 100), CF_ERR_QUEUE_FULL);
  assert_int_equal(t.closes, 0);
  /* A message is held to client_buffer alone: now it does not fit. */
  assert_int_equal(pub100(h, "r", 'b'), CF_OK);
  assert_int_equal(t.closes, 1);
  /* The raw bytes were never sent, so they are dropped as well. */
  assert_int_equal(cf_client_pending(t.c), 0);
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_slow_client_closed),
      T(test_partly_sent_head_kept),
      T(test_close_handler_sends_and_frees),
      T(test_rooms_isolated),
      T(test_gauge),
      T(test_empty_messages_bounded),
      T(test_ring_growth_failure_is_nomem),
      T(test_client_new_reserves_ring),
      T(test_burst_ring_not_reallocated),
      T(test_send_allowance),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
