/*
 * CF_HUB_OWN_VIA_QUEUE: a publish goes to the queue only, and this
 * instance's clients get it when the queue hands it back, in the queue's
 * order among the other instances' messages, exactly once, with history
 * kept then. Also the flag checks, the errors and an allocation-failure
 * sweep.
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

#define OWN 0x1111u
#define OTHER 0x2222u

/* --- Recording clients ---------------------------------------------------- */

#define NCL 4

typedef struct tc {
  cf_client *c;
  int wakes;
  char got[1024]; /* payloads taken so far, each followed by '|' */
  size_t got_len;
  const char *reply; /* published from the first wake, then cleared */
} tc;

static tc cl[NCL];
static cf_hub *H;
static cf_queue *Q;
static hf_fakeq F;

static int pub(const char *room, const char *s) {
  return hf_pub(H, room, s);
}

static void tc_wake(cf_client *c, void *ud) {
  tc *t = ud;
  const char *reply = t->reply;

  (void)c;
  t->wakes++;
  if (reply != NULL) {
    t->reply = NULL;
    assert_int_equal(pub("r", reply), CF_OK);
  }
}

static void tc_close(cf_client *c, int reason, void *ud) {
  tc *t = ud;

  (void)reason;
  cf_client_free(c);
  t->c = NULL;
}

static const cf_client_ops tc_ops = {CF_CLIENT_OPS_VERSION, tc_wake,
                                     tc_close};

/* Takes whole messages, so each shows up on its own in got. */
static void tc_take(tc *t) {
  hf_take(t->c, t->got, sizeof(t->got), &t->got_len);
}

static void tc_got_is(tc *t, const char *s) {
  tc_take(t);
  assert_string_equal(t->got_len != 0 ? t->got : "", s);
}

static void tc_new(tc *t, const char *room) {
  assert_int_equal(cf_client_new(&t->c, H, &tc_ops, t), CF_OK);
  if (room != NULL)
    assert_int_equal(cf_client_join(t->c, room, strlen(room)), CF_OK);
}

/* What a client joining room now gets: the room's history. */
static void history_is(const char *room, const char *s) {
  tc z;

  memset(&z, 0, sizeof(z));
  tc_new(&z, room);
  tc_got_is(&z, s);
  cf_client_free(z.c);
}

static cf_hub_stats stats(void) {
  return hf_stats(H);
}

static uint64_t clock_ms(void *ud) {
  (void)ud;
  return 1700000000123u;
}

static cf_hub_config own_cfg(void) {
  cf_hub_config cfg;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.instance_id = OWN;
  cfg.history = 10;
  cfg.flags = CF_HUB_OWN_VIA_QUEUE;
  cfg.clock_ms = clock_ms;
  cfg.mem = &tm.mem;
  return cfg;
}

/* Hub with cfg and, when with_queue, the fake queue attached. */
static void hub_up_cfg(const cf_hub_config *cfg, int with_queue) {
  assert_int_equal(cf_hub_new(&H, cfg), CF_OK);
  if (with_queue) {
    assert_int_equal(cf_queue_new(&Q, &hf_fq_ops, &F, &tm.mem), CF_OK);
    assert_int_equal(cf_hub_attach_queue(H, Q), CF_OK);
  }
}

static void hub_up(void) {
  cf_hub_config cfg = own_cfg();

  hub_up_cfg(&cfg, 1);
}

/* cmocka wants a test's blocks freed by the test itself. */
static void hub_down(void) {
  int i;

  for (i = 0; i < NCL; i++) {
    cf_client_free(cl[i].c);
    cl[i].c = NULL;
  }
  cf_hub_free(H);
  cf_queue_free(Q);
  H = NULL;
  Q = NULL;
  assert_int_equal(tm.live, 0);
}

static int setup(void **state) {
  hf_setup(state);
  memset(cl, 0, sizeof(cl));
  memset(&F, 0, sizeof(F));
  H = NULL;
  Q = NULL;
  return 0;
}

/* Hands the queue's i-th envelope back, as the backend would. */
static void give_back(int i) {
  assert_true(i < F.n);
  cf_queue_report_message(Q, &F.env[i]);
}

/* Another instance's message as the queue reports it. */
static void from_other(uint64_t seq, const char *s) {
  cf_envelope e;

  memset(&e, 0, sizeof(e));
  e.origin = OTHER;
  e.seq = seq;
  e.room = "r";
  e.room_len = 1;
  e.data = s;
  e.len = strlen(s);
  cf_queue_report_message(Q, &e);
}

/* --- Configuration ------------------------------------------------------- */

static void test_flags_checked(void **state) {
  static const uint32_t bad[] = {0x2u, 0x80000000u,
                                 CF_HUB_OWN_VIA_QUEUE | 0x4u};
  cf_hub_config cfg = own_cfg();
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    cfg.flags = bad[i];
    assert_int_equal(cf_hub_new(&H, &cfg), CF_ERR_INVALID);
    assert_int_equal(tm.count, 0);
  }
  cfg.flags = 0;
  assert_int_equal(cf_hub_new(&H, &cfg), CF_OK);
  cf_hub_free(H);
  cfg.flags = CF_HUB_OWN_VIA_QUEUE;
  assert_int_equal(cf_hub_new(&H, &cfg), CF_OK);
  hub_down();
}

/* --- Publish ----------------------------------------------------------- */

static void test_publish_reaches_queue_only(void **state) {
  unsigned long allocs;
  cf_hub_stats st;

  (void)state;
  hub_up();
  tc_new(&cl[0], "r");
  tc_new(&cl[1], "r");
  allocs = tm.count;
  assert_int_equal(pub("r", "one"), CF_OK);
  assert_int_equal(cf_hub_publish(H, "r", 1, CF_MSG_BINARY, "\0two", 4),
                   CF_OK);
  /* No shared message is built: the queue copies what it keeps. */
  assert_int_equal(tm.count, allocs);
  assert_int_equal(cl[0].wakes + cl[1].wakes, 0);
  assert_int_equal(cf_client_pending(cl[0].c), 0);
  assert_int_equal(F.n, 2);
  assert_int_equal(F.env[0].origin, OWN);
  assert_int_equal(F.env[0].seq, 1);
  assert_int_equal(F.env[1].seq, 2);
  assert_int_equal(F.env[0].ts_ms, 1700000000123u);
  assert_int_equal(F.env[0].room_len, 1);
  assert_memory_equal(F.room[0], "r", 1);
  assert_int_equal(F.env[0].flags, CF_MSG_TEXT);
  assert_int_equal(F.env[1].flags, CF_MSG_BINARY);
  assert_int_equal(F.env[0].len, 3);
  assert_memory_equal(F.data[0], "one", 3);
  assert_int_equal(F.env[1].len, 4);
  assert_memory_equal(F.data[1], "\0two", 4);
  st = stats();
  assert_int_equal(st.published, 2);
  assert_int_equal(st.queue_published, 2);
  assert_int_equal(st.queue_errors, 0);
  assert_int_equal(st.deliveries, 0);
  assert_int_equal(st.received, 0);
  /* Not in history yet either. */
  assert_int_equal(st.history_bytes, 0);
  history_is("r", "");
  hub_down();
}

/*
 * The queue's order is everyone's order: own messages land among the
 * other instance's where the queue puts them, not where they were
 * published, and history keeps that order.
 */
static void test_queue_order_interleaved(void **state) {
  cf_hub_stats st;

  (void)state;
  hub_up();
  tc_new(&cl[0], "r");
  tc_new(&cl[1], "r");
  assert_int_equal(pub("r", "a1"), CF_OK);
  assert_int_equal(pub("r", "a2"), CF_OK);
  assert_int_equal(pub("r", "a3"), CF_OK);
  /* The cluster's order: b1 a1 b2 b3 a2 a3. */
  from_other(1, "b1");
  give_back(0);
  from_other(2, "b2");
  tc_got_is(&cl[0], "b1|a1|b2|");
  from_other(3, "b3");
  give_back(1);
  give_back(2);
  tc_got_is(&cl[0], "b1|a1|b2|b3|a2|a3|");
  tc_got_is(&cl[1], "b1|a1|b2|b3|a2|a3|");
  st = stats();
  assert_int_equal(st.published, 3);
  assert_int_equal(st.received, 6);
  assert_int_equal(st.duplicates, 0);
  assert_int_equal(st.deliveries, 12);
  history_is("r", "b1|a1|b2|b3|a2|a3|");
  /* What came back is not sent out again. */
  assert_int_equal(F.n, 3);
  hub_down();
}

static void test_duplicates_dropped(void **state) {
  (void)state;
  hub_up();
  tc_new(&cl[0], "r");
  assert_int_equal(pub("r", "mine"), CF_OK);
  give_back(0);
  from_other(1, "theirs");
  /* At-least-once: both come again, the own one twice. */
  give_back(0);
  from_other(1, "theirs");
  give_back(0);
  tc_got_is(&cl[0], "mine|theirs|");
  assert_int_equal(stats().received, 2);
  assert_int_equal(stats().duplicates, 3);
  assert_int_equal(cl[0].wakes, 1);
  history_is("r", "mine|theirs|");
  /* cf_hub_deliver() from a bridge follows the same rule. */
  assert_int_equal(cf_hub_deliver(H, &F.env[0]), CF_OK);
  assert_int_equal(stats().duplicates, 4);
  tc_got_is(&cl[0], "mine|theirs|");
  hub_down();
}

/* Without the flag nothing changes: own messages come back dropped. */
static void test_without_flag_own_dropped(void **state) {
  cf_hub_config cfg = own_cfg();

  (void)state;
  cfg.flags = 0;
  hub_up_cfg(&cfg, 1);
  tc_new(&cl[0], "r");
  assert_int_equal(pub("r", "mine"), CF_OK);
  tc_got_is(&cl[0], "mine|");
  give_back(0);
  from_other(1, "theirs");
  tc_got_is(&cl[0], "mine|theirs|");
  assert_int_equal(stats().duplicates, 1);
  assert_int_equal(stats().received, 1);
  history_is("r", "mine|theirs|");
  hub_down();
}

/*
 * A reply made from a wake callback is queued, not delivered inside the
 * drain of the message that caused it.
 */
static void test_reply_from_wake(void **state) {
  (void)state;
  hub_up();
  tc_new(&cl[0], "r");
  tc_new(&cl[1], "r");
  cl[1].reply = "pong";
  from_other(1, "ping");
  assert_int_equal(F.n, 1);
  assert_memory_equal(F.data[0], "pong", 4);
  tc_got_is(&cl[0], "ping|");
  tc_got_is(&cl[1], "ping|");
  from_other(2, "more");
  give_back(0);
  tc_got_is(&cl[0], "ping|more|pong|");
  tc_got_is(&cl[1], "ping|more|pong|");
  hub_down();
}

/* --- Errors ------------------------------------------------------------- */

static void test_no_queue(void **state) {
  cf_hub_config cfg = own_cfg();
  cf_hub_stats st;

  (void)state;
  hub_up_cfg(&cfg, 0);
  tc_new(&cl[0], "r");
  assert_int_equal(pub("r", "x"), CF_ERR_STATE);
  /* Bad input is still bad input. */
  assert_int_equal(pub("r r", "x"), CF_ERR_INVALID);
  st = stats();
  assert_int_equal(st.published, 0);
  assert_int_equal(st.queue_errors, 0);
  assert_int_equal(cf_client_pending(cl[0].c), 0);
  history_is("r", "");

  /* Attached later: the first accepted publish is seq 1. */
  assert_int_equal(cf_queue_new(&Q, &hf_fq_ops, &F, &tm.mem), CF_OK);
  assert_int_equal(cf_hub_attach_queue(H, Q), CF_OK);
  assert_int_equal(pub("r", "y"), CF_OK);
  assert_int_equal(F.n, 1);
  assert_int_equal(F.env[0].seq, 1);
  /* Detached again: refused again. */
  assert_int_equal(cf_hub_attach_queue(H, NULL), CF_OK);
  assert_int_equal(pub("r", "z"), CF_ERR_STATE);
  assert_int_equal(stats().published, 1);
  hub_down();
}

static void test_refused_no_gap(void **state) {
  static const int errs[] = {CF_ERR_QUEUE_FULL, CF_ERR_TOO_BIG,
                             CF_ERR_NOMEM, CF_ERR_BACKEND, CF_ERR_CLOSED};
  char big[64 * 1024 + 1];
  cf_hub_stats st;
  size_t i;

  (void)state;
  hub_up();
  tc_new(&cl[0], "r");
  assert_int_equal(pub("r", "one"), CF_OK);
  for (i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
    F.fail_with = errs[i];
    assert_int_equal(pub("r", "lost"), errs[i]);
  }
  F.fail_with = 0;
  /* Refused before the queue: not counted as the queue's. */
  memset(big, 'x', sizeof(big));
  assert_int_equal(cf_hub_publish(H, "r", 1, 0, big, sizeof(big)),
                   CF_ERR_TOO_BIG);
  assert_int_equal(cf_hub_publish(H, "r", 1, 0x80, "x", 1),
                   CF_ERR_INVALID);
  assert_int_equal(pub("r", "two"), CF_OK);
  assert_int_equal(F.n, 2);
  assert_int_equal(F.env[0].seq, 1);
  assert_int_equal(F.env[1].seq, 2);
  assert_memory_equal(F.data[1], "two", 3);
  st = stats();
  assert_int_equal(st.published, 2);
  assert_int_equal(st.queue_published, 2);
  assert_int_equal(st.queue_errors, 5);
  give_back(0);
  give_back(1);
  tc_got_is(&cl[0], "one|two|");
  hub_down();
}

/* --- Allocation-failure sweep --------------------------------------------- */

/*
 * Publishes; on NOMEM (the queue's copy) checks that the queue got
 * nothing and no seq was spent, else that it got the next seq.
 */
static void checked_publish(const char *s) {
  uint64_t done = stats().published;
  int rv, sent = F.n;

  rv = pub("r", s);
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM || rv == CF_ERR_STATE);
  if (rv != CF_OK) {
    assert_int_equal(F.n, sent);
    assert_int_equal(stats().published, done);
    return;
  }
  assert_int_equal(F.n, sent + 1);
  assert_int_equal(F.env[sent].seq, done + 1);
}

/* Hands env back; on NOMEM nobody got it, and a retry may deliver it. */
static void checked_deliver(const cf_envelope *env) {
  size_t before[NCL];
  int i, rv;

  for (i = 0; i < NCL; i++)
    before[i] = cl[i].c != NULL ? cf_client_pending(cl[i].c) : 0;
  rv = cf_hub_deliver(H, env);
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  if (rv == CF_OK)
    return;
  for (i = 0; i < NCL; i++)
    if (cl[i].c != NULL)
      assert_int_equal(cf_client_pending(cl[i].c), before[i]);
  rv = cf_hub_deliver(H, env);
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
}

static void checked_join(int i, const char *room) {
  int rv;

  if (cl[i].c == NULL)
    return;
  rv = cf_client_join(cl[i].c, room, strlen(room));
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
}

/* One life of a hub with the flag; every step may meet CF_ERR_NOMEM. */
static void scenario(void) {
  cf_hub_config cfg = own_cfg();
  cf_envelope e;
  int i, rv, sent;

  memset(cl, 0, sizeof(cl));
  memset(&F, 0, sizeof(F));
  F.mem = &tm.mem;
  Q = NULL;
  cfg.history = 3;
  cfg.dedupe_window = 4;
  rv = cf_hub_new(&H, &cfg);
  if (rv != CF_OK) {
    assert_int_equal(rv, CF_ERR_NOMEM);
    H = NULL;
    return;
  }
  rv = cf_queue_new(&Q, &hf_fq_ops, &F, &tm.mem);
  assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
  if (rv == CF_OK)
    assert_int_equal(cf_hub_attach_queue(H, Q), CF_OK);
  else
    Q = NULL;
  for (i = 0; i < 3; i++) {
    rv = cf_client_new(&cl[i].c, H, &tc_ops, &cl[i]);
    assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
    if (rv != CF_OK)
      cl[i].c = NULL;
    checked_join(i, "r");
  }
  checked_publish("a1");
  checked_publish("a2");
  memset(&e, 0, sizeof(e));
  e.origin = OTHER;
  e.room = "r";
  e.room_len = 1;
  e.data = "b";
  e.len = 1;
  sent = F.n;
  for (i = 0; i < sent; i++) {
    e.seq = (uint64_t)i + 1;
    checked_deliver(&e);
    checked_deliver(&F.env[i]);
    checked_deliver(&F.env[i]); /* a duplicate */
  }
  if (cl[0].c != NULL)
    tc_take(&cl[0]);
  checked_publish("a3");
  if (F.n > sent)
    checked_deliver(&F.env[sent]);
  /* A clean run delivers everything once, in the queue's order. */
  if (tm.fail_at == 0)
    tc_got_is(&cl[1], "b|a1|b|a2|a3|");
  if (cl[2].c != NULL) {
    cf_client_free(cl[2].c);
    cl[2].c = NULL;
  }
  checked_join(1, "s"); /* empty room, no history */
  cf_hub_close_all(H);
  hub_down();
}

static void test_alloc_failure_sweep(void **state) {
  unsigned long n, total;

  (void)state;
  scenario();
  total = tm.count;
  assert_true(total > 10);
  for (n = 1; n <= total; n++) {
    test_mem_init(&tm, n);
    scenario();
    assert_true(tm.failed);
    assert_int_equal(tm.live, 0);
  }
  test_mem_init(&tm, 0);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, NULL)
  const struct CMUnitTest tests[] = {
      T(test_flags_checked),
      T(test_publish_reaches_queue_only),
      T(test_queue_order_interleaved),
      T(test_duplicates_dropped),
      T(test_without_flag_own_dropped),
      T(test_reply_from_wake),
      T(test_no_queue),
      T(test_refused_no_gap),
      T(test_alloc_failure_sweep),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
