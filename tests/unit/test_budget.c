/*
 * The hub-wide outbound budget (largest backlogs shed first, nobody else
 * noticing) and the per-client room limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <sys/uio.h>

#include <chatfanout/chatfanout.h>

#include "hub_fixture.h"

typedef struct tc {
  cf_client *c;
  int closes, reason;
  int drain_on_wake; /* a fast reader */
  int free_on_close;
  size_t drained;
} tc;

static void tc_wake(cf_client *c, void *ud) {
  tc *t = ud;

  (void)c;
  if (t->drain_on_wake)
    hf_drain(t->c, NULL, 0, &t->drained);
}

static void tc_close(cf_client *c, int reason, void *ud) {
  tc *t = ud;

  t->closes++;
  t->reason = reason;
  if (t->free_on_close) {
    cf_client_free(c);
    t->c = NULL;
  }
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, tc_wake, tc_close};

/* hf_framer_len writes "<100>": 5 header bytes for 100-byte payloads;
 * a queued entry counts 64 bytes more (CF_OUTBOX_ENTRY_COST). */
#define WIRE 105u
#define BUFFER (64u * 1024u)

static int hub_try(cf_hub **h, size_t budget, uint32_t rooms_per_client) {
  cf_hub_config cfg;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.client_buffer = BUFFER;
  cfg.max_message = 100;
  cfg.framer = hf_framer_len;
  cfg.mem = &tm.mem;
  cfg.outbound_budget = budget;
  cfg.max_rooms_per_client = rooms_per_client;
  return cf_hub_new(h, &cfg);
}

static cf_hub *hub_new(size_t budget, uint32_t rooms_per_client) {
  cf_hub *h;

  assert_int_equal(hub_try(&h, budget, rooms_per_client), CF_OK);
  return h;
}

/* A client as a transport makes one: its handshake answer written. */
static void tc_new(cf_hub *h, tc *t, const char *room) {
  memset(t, 0, sizeof(*t));
  assert_int_equal(cf_client_new(&t->c, h, &ops, t), CF_OK);
  assert_int_equal(cf_client_send(t->c, "hello", 5), CF_OK);
  cf_client_consume(t->c, 5);
  if (room != NULL)
    assert_int_equal(cf_client_join(t->c, room, strlen(room)), CF_OK);
}

static void pub_n(cf_hub *h, const char *room, int n) {
  char p[100];
  int i;

  memset(p, 'x', sizeof(p));
  for (i = 0; i < n; i++)
    assert_int_equal(cf_hub_publish(h, room, strlen(room), CF_MSG_TEXT, p,
                                     sizeof(p)),
                     CF_OK);
}

static void test_config(void **state) {
  cf_hub_config v1;
  cf_hub *h;

  (void)state;
  /* Below one client's buffer: refused. */
  assert_int_equal(hub_try(&h, BUFFER - 1, 0), CF_ERR_INVALID);
  assert_int_equal(hub_try(&h, BUFFER, 0), CF_OK);
  cf_hub_free(h);
  /* A version 1 caller's struct ends before the new fields. */
  memset(&v1, 0, sizeof(v1));
  v1.version = 1;
  v1.mem = &tm.mem;
  v1.outbound_budget = 1; /* past a v1 struct: must not be read */
  assert_int_equal(cf_hub_new(&h, &v1), CF_OK);
  cf_hub_free(h);
  v1.version = CF_HUB_CONFIG_VERSION;
  assert_int_equal(cf_hub_new(&h, &v1), CF_ERR_INVALID);
}

/* Memory of n distinct queued messages in e entries in all. */
#define MEM(n, e) ((uint64_t)(n) * WIRE + (uint64_t)(e) * 64u)

/* Without a budget any total is fine (each client under its buffer). */
static void test_unlimited(void **state) {
  cf_hub *h = hub_new(0, 0);
  tc t[4];
  int i;

  (void)state;
  for (i = 0; i < 4; i++)
    tc_new(h, &t[i], "r");
  pub_n(h, "r", 300);
  /* Shared: the bytes once, an entry per client. */
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(300, 1200));
  assert_int_equal(hf_stats(h).outbox_bytes, 4u * 300u * WIRE);
  assert_int_equal(hf_stats(h).budget_closes, 0);
  for (i = 0; i < 4; i++)
    assert_int_equal(t[i].closes, 0);
  /* Draining gives it back, the last reader of a message its bytes. */
  hf_drain(t[0].c, NULL, 0, &t[0].drained);
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(300, 900));
  for (i = 1; i < 4; i++)
    hf_drain(t[i].c, NULL, 0, &t[i].drained);
  assert_int_equal(hf_stats(h).outbound_bytes, 0);
  cf_hub_free(h);
}

/*
 * Three readers that never read, each in its own room (nothing shared:
 * a message costs 169 bytes, the budget holds 387), attached smallest
 * first. Going over sheds the largest backlog only, whatever the
 * attach order; the next overflow the next largest.
 */
static void test_largest_first(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  tc big, mid, small;

  (void)state;
  tc_new(h, &small, "c");
  tc_new(h, &mid, "b");
  tc_new(h, &big, "a");
  pub_n(h, "c", 100);
  pub_n(h, "b", 120);
  pub_n(h, "a", 150);
  pub_n(h, "b", 17); /* 387 */
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(387, 387));
  assert_int_equal(big.closes + mid.closes + small.closes, 0);
  pub_n(h, "b", 1); /* 388: over */
  assert_int_equal(big.closes, 1);
  assert_int_equal(big.reason, CF_CLOSE_SLOW);
  assert_int_equal(mid.closes + small.closes, 0);
  assert_int_equal(hf_stats(h).budget_closes, 1);
  assert_int_equal(hf_stats(h).slow_closes, 1);
  /* The shed client's queue is gone: only the others' is counted. */
  assert_int_equal(cf_client_pending(big.c), 0);
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(238, 238));
  pub_n(h, "b", 149); /* 387 again */
  assert_int_equal(mid.closes, 0);
  pub_n(h, "b", 1);
  assert_int_equal(mid.closes, 1);
  assert_int_equal(small.closes, 0);
  assert_int_equal(hf_stats(h).budget_closes, 2);
  assert_true(hf_stats(h).outbound_bytes <= BUFFER);
  cf_hub_free(h);
}

/*
 * A message queued to many clients is one copy: ten readers behind by
 * the same 87 messages hold 87 x 105 + 870 x 64 bytes, under the
 * budget, though 870 x 169 would not be. At 88 it is over; cutting one
 * frees its entries only (the others still hold the messages), which
 * is enough.
 */
static void test_shared(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  tc t[10];
  int i, closed = 0;

  (void)state;
  for (i = 0; i < 10; i++)
    tc_new(h, &t[i], "r");
  pub_n(h, "r", 87);
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(87, 870));
  assert_int_equal(hf_stats(h).budget_closes, 0);
  pub_n(h, "r", 1);
  for (i = 0; i < 10; i++)
    closed += t[i].closes;
  assert_int_equal(closed, 1);
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(88, 792));
  cf_hub_free(h);
}

/* Shedding many at once: everyone above the excess, largest first. */
static void test_many_victims(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  tc t[10], fast;
  char room[8];
  int i, j, closed = 0;

  (void)state;
  tc_new(h, &fast, "all");
  fast.drain_on_wake = 1;
  for (i = 0; i < 10; i++) {
    snprintf(room, sizeof(room), "r%d", i);
    tc_new(h, &t[i], room);
    pub_n(h, room, 3 + 6 * i); /* backlogs 3, 9, .. 57: 300 in all */
  }
  /* One big message to a room of everyone: 11 entries, one copy. */
  for (i = 0; i < 10; i++)
    assert_int_equal(cf_client_join(t[i].c, "all", 3), CF_OK);
  pub_n(h, "all", 7); /* 307 messages, 370 entries: 55915 */
  assert_int_equal(hf_stats(h).budget_closes, 0);
  pub_n(h, "all", 15); /* 322 x 105 + 520 x 64 = 67090: over */
  for (i = 0; i < 10; i++)
    closed += t[i].closes;
  assert_true(closed >= 1);
  /* Whoever was shed had a larger backlog than anyone kept. */
  for (i = 0; i < 10; i++)
    for (j = 0; j < 10; j++)
      if (t[i].closes == 0 && t[j].closes != 0)
        assert_true(j > i);
  assert_true(hf_stats(h).outbound_bytes <= BUFFER);
  assert_int_equal(hf_stats(h).budget_closes, (uint64_t)closed);
  assert_int_equal(fast.closes, 0);
  cf_hub_free(h);
}

/* Transport bytes (cf_client_send) count too. */
static void test_send(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  char junk[4000];
  tc a, b;
  int i;

  (void)state;
  memset(junk, 'j', sizeof(junk));
  tc_new(h, &a, "r");
  tc_new(h, &b, NULL);
  pub_n(h, "r", 150); /* a: 25350 */
  for (i = 0; i < 9; i++) /* b: 9 x 4064 = 36576 */
    assert_int_equal(cf_client_send(b.c, junk, sizeof(junk)), CF_OK);
  assert_int_equal(a.closes + b.closes, 0);
  assert_int_equal(cf_client_send(b.c, junk, sizeof(junk)), CF_OK);
  assert_int_equal(b.closes, 1); /* 65990: b is the largest */
  assert_int_equal(a.closes, 0);
  cf_client_free(b.c);
  cf_client_free(a.c);
  cf_hub_free(h);
}

/* A hub whose budget is one client buffer, keeping history messages. */
static cf_hub *hub_with_history(uint32_t history) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.client_buffer = BUFFER;
  cfg.max_message = 100;
  cfg.history = history;
  cfg.framer = hf_framer_len;
  cfg.mem = &tm.mem;
  cfg.outbound_budget = BUFFER;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

/* A join's history counts too: it may push another client out. */
static void test_join(void **state) {
  cf_hub *h = hub_with_history(100);
  tc a, b, w;

  (void)state;
  tc_new(h, &w, "r");
  w.drain_on_wake = 1;
  pub_n(h, "r", 100); /* kept as history, w read them */
  tc_new(h, &a, "x");
  pub_n(h, "x", 300); /* a: 50700 */
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(300, 300));
  tc_new(h, &b, "r"); /* + 100 x 169: 67600 */
  assert_int_equal(a.closes, 1);
  assert_int_equal(b.closes + w.closes, 0);
  assert_int_equal(cf_client_pending(b.c), 100u * WIRE);
  assert_int_equal(hf_stats(h).outbound_bytes, MEM(100, 100));
  cf_hub_free(h);
}

/*
 * A joiner whose handshake answer is not written yet is no candidate,
 * however much history it gets: the slow reader goes, and the joiner's
 * answer stays at the head of its outbox.
 */
static void test_join_unwritten(void **state) {
  cf_hub *h = hub_with_history(400);
  tc a, w, j;
  struct iovec iov[1];

  (void)state;
  tc_new(h, &w, "r");
  w.drain_on_wake = 1;
  pub_n(h, "r", 400); /* history: 400 x 169 = 67600, over the budget */
  tc_new(h, &a, "x");
  pub_n(h, "x", 100); /* a: a slow reader, 16900 */
  memset(&j, 0, sizeof(j));
  assert_int_equal(cf_client_new(&j.c, h, &ops, &j), CF_OK);
  assert_int_equal(cf_client_send(j.c, "HTTP/1.1 101", 12), CF_OK);
  assert_int_equal(cf_client_join(j.c, "r", 1), CF_OK);
  assert_int_equal(j.closes, 0);
  assert_int_equal(a.closes, 1);
  assert_int_equal(w.closes, 0);
  assert_int_equal(cf_client_iov(j.c, iov, 1), 1);
  assert_int_equal(iov[0].iov_len, 12);
  assert_memory_equal(iov[0].iov_base, "HTTP/1.1 101", 12);
  cf_client_free(j.c);
  cf_hub_free(h);
}

/*
 * A client its transport is closing (cf_client_shutdown) is still a
 * candidate, by its backlog: else a peer could stop reading, then
 * close, and have others cut for it. Shed, it loses its messages but a
 * started head and what its transport sent since the shutdown (its
 * close), in order; it is not told to close nor counted as slow, and
 * is never shed again: the next overflow cuts the other one.
 */
static void test_shutdown_shed(void **state) {
  static char out[512];
  cf_hub *h = hub_new(BUFFER, 0);
  tc big, small;
  size_t len = 0;

  (void)state;
  tc_new(h, &small, "b");
  tc_new(h, &big, "a");
  pub_n(h, "a", 300); /* big: 50700 */
  pub_n(h, "b", 50);  /* small: 8450 */
  cf_client_consume(big.c, 3); /* its head partly written */
  /* Sent before the shutdown: whole frames, droppable like the rest. */
  assert_int_equal(cf_client_send(big.c, "PING", 4), CF_OK); /* + 68 */
  cf_client_shutdown(big.c);
  assert_int_equal(cf_client_send(big.c, "BYE", 3), CF_OK); /* + 67 */
  assert_int_equal(cf_client_send(big.c, "!!", 2), CF_OK);  /* + 66 */
  /* Its room's messages no longer reach it. */
  pub_n(h, "a", 1);
  assert_int_equal(cf_client_pending(big.c), 300u * WIRE - 3 + 4 + 3 + 2);
  assert_int_equal(hf_stats(h).outbound_bytes,
                   MEM(350, 350) + 4 + 3 + 2 + 3 * 64);
  pub_n(h, "b", 36); /* small: 14534, 65435 in all */
  assert_int_equal(small.closes + big.closes, 0);
  pub_n(h, "b", 1); /* 65604: over */
  assert_int_equal(big.closes, 0);
  assert_int_equal(small.closes, 0);
  assert_int_equal(hf_stats(h).budget_trims, 1);
  assert_int_equal(hf_stats(h).budget_closes, 0);
  assert_int_equal(hf_stats(h).slow_closes, 0);
  /* The rest of its head, then its transport's last bytes. */
  assert_int_equal(cf_client_pending(big.c), WIRE - 3 + 3 + 2);
  assert_int_equal(hf_stats(h).outbox_bytes, WIRE - 3 + 5 + 87u * WIRE);
  assert_int_equal(hf_stats(h).outbound_bytes,
                   MEM(88, 88) + 3 + 2 + 2 * 64);
  assert_true(hf_stats(h).outbound_bytes <= BUFFER);
  /* Over again: it is no candidate any more, the other one goes. */
  pub_n(h, "b", 300); /* 65705 */
  assert_int_equal(big.closes, 0);
  assert_int_equal(small.closes, 1);
  assert_int_equal(small.reason, CF_CLOSE_SLOW);
  assert_int_equal(hf_stats(h).budget_trims, 1);
  assert_int_equal(hf_stats(h).budget_closes, 1);
  assert_int_equal(hf_stats(h).slow_closes, 1);
  assert_int_equal(cf_client_pending(small.c), 0);
  hf_drain(big.c, out, sizeof(out), &len);
  assert_int_equal(len, WIRE - 3 + 5);
  assert_memory_equal(out, "0>xx", 4);
  assert_memory_equal(out + len - 7, "xxBYE!!", 7);
  /* Everything given back. */
  assert_int_equal(hf_stats(h).outbox_bytes, 0);
  assert_int_equal(hf_stats(h).outbound_bytes, 0);
  /* Shut down, it is no more told to close at shutdown either. */
  cf_hub_close_all(h);
  assert_int_equal(big.closes, 0);
  cf_hub_free(h);
}

/*
 * The hub cut it, then its transport shut it down to queue its close
 * (as the daemon does in ops.close): shed once is enough, the close
 * stays and the next overflow goes to someone else.
 */
static void test_cut_then_shutdown(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  struct iovec iov[2];
  char bye[2000];
  tc big, small;

  (void)state;
  memset(bye, 'B', sizeof(bye));
  tc_new(h, &small, "b");
  tc_new(h, &big, "a");
  pub_n(h, "a", 300);
  pub_n(h, "b", 88); /* 65559: over */
  assert_int_equal(big.closes, 1);
  assert_int_equal(big.reason, CF_CLOSE_SLOW);
  assert_int_equal(cf_client_pending(big.c), 0);
  cf_client_shutdown(big.c);
  assert_int_equal(cf_client_send(big.c, bye, sizeof(bye)), CF_OK);
  pub_n(h, "b", 288); /* 65608: over again, small under its buffer */
  assert_int_equal(small.closes, 1);
  assert_int_equal(small.reason, CF_CLOSE_SLOW);
  assert_int_equal(big.closes, 1);
  assert_int_equal(hf_stats(h).budget_closes, 2);
  assert_int_equal(hf_stats(h).budget_trims, 0);
  assert_int_equal(cf_client_iov(big.c, iov, 2), 1);
  assert_int_equal(iov[0].iov_len, sizeof(bye));
  cf_hub_free(h);
}

/*
 * Told to close at shutdown, then shut down by its transport to queue
 * its close: a candidate again, trimmed without another ops.close.
 */
static void test_close_all_then_shutdown(void **state) {
  cf_hub *h = hub_new(BUFFER, 0);
  struct iovec iov[2];
  tc a, b;

  (void)state;
  tc_new(h, &a, "a");
  pub_n(h, "a", 300); /* 50700 */
  cf_hub_close_all(h);
  assert_int_equal(a.closes, 1);
  assert_int_equal(a.reason, CF_CLOSE_SHUTDOWN);
  cf_client_shutdown(a.c);
  assert_int_equal(cf_client_send(a.c, "BYE", 3), CF_OK);
  tc_new(h, &b, "b");
  pub_n(h, "b", 90); /* 65977: over */
  assert_int_equal(a.closes, 1);
  assert_int_equal(b.closes, 0);
  assert_int_equal(hf_stats(h).budget_trims, 1);
  assert_int_equal(hf_stats(h).budget_closes, 0);
  assert_int_equal(cf_client_iov(a.c, iov, 2), 1);
  assert_int_equal(iov[0].iov_len, 3);
  assert_memory_equal(iov[0].iov_base, "BYE", 3);
  cf_hub_free(h);
}

/* Join refused, publishes skip it, twice and NULL are harmless. */
static void test_shutdown_api(void **state) {
  cf_hub *h = hub_new(0, 0);
  tc a, b;

  (void)state;
  cf_client_shutdown(NULL);
  tc_new(h, &a, "r");
  tc_new(h, &b, "r");
  cf_client_shutdown(a.c);
  cf_client_shutdown(a.c);
  assert_int_equal(cf_client_join(a.c, "s", 1), CF_ERR_CLOSED);
  assert_int_equal(cf_client_send(a.c, "x", 1), CF_OK);
  assert_int_equal(cf_client_pending(a.c), 1);
  pub_n(h, "r", 1);
  assert_int_equal(cf_client_pending(a.c), 1);
  assert_int_equal(cf_client_pending(b.c), WIRE);
  assert_int_equal(hf_stats(h).deliveries, 1);
  assert_int_equal(cf_client_leave(a.c, "r", 1), CF_OK);
  cf_hub_close_all(h);
  assert_int_equal(a.closes, 0);
  assert_int_equal(b.closes, 1);
  assert_int_equal(b.reason, CF_CLOSE_SHUTDOWN);
  /* Already told to close: shutting it down changes nothing. */
  cf_client_shutdown(b.c);
  assert_int_equal(b.closes, 1);
  cf_client_free(a.c);
  cf_client_free(b.c);
  cf_hub_free(h);
}

static void test_rooms_per_client(void **state) {
  cf_hub *h = hub_new(0, 2);
  tc a, b;

  (void)state;
  tc_new(h, &a, "r1");
  assert_int_equal(cf_client_join(a.c, "r2", 2), CF_OK);
  assert_int_equal(cf_client_join(a.c, "r3", 2), CF_ERR_LIMIT);
  /* Already a member says so, limit or not. */
  assert_int_equal(cf_client_join(a.c, "r1", 2), CF_ERR_EXISTS);
  assert_int_equal(cf_client_leave(a.c, "r1", 2), CF_OK);
  assert_int_equal(cf_client_join(a.c, "r3", 2), CF_OK);
  /* Per client: another one is not affected. */
  tc_new(h, &b, "r1");
  assert_int_equal(cf_client_join(b.c, "r2", 2), CF_OK);
  assert_int_equal(hf_stats(h).rooms, 3);
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_config),       T(test_unlimited), T(test_largest_first),
      T(test_shared),       T(test_many_victims), T(test_send),
      T(test_join),
      T(test_rooms_per_client),
      T(test_join_unwritten),
      T(test_shutdown_shed),
      T(test_cut_then_shutdown),
      T(test_close_all_then_shutdown),
      T(test_shutdown_api),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
