/*
 * Two hubs linked over a real local bus, as two instances of a cluster:
 * a publish reaches the own clients at once and the other instance's
 * when its loop timer fires, exactly once, never echoed back; the other
 * instance keeps it in history. With CF_HUB_OWN_VIA_QUEUE the bus shows
 * why that flag needs a backend that loops own messages back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "fake_loop.h"
#include "hub_fixture.h"

#define ID_A 0xaaaa
#define ID_B 0xbbbb

typedef struct tc {
  cf_client *c;
  int wakes, closes;
  char got[512]; /* bytes drained so far, "|"-separated per message */
  size_t got_len;
  /* Behaviour: on the first wake, publish this on the client's hub. */
  const char *reply;
  cf_hub *hub;
} tc;

typedef struct node {
  cf_hub *hub;
  cf_queue *q;
} node;

static fake_loop fl;
static cf_queue_bus *bus;
static node A, B;

/* Takes whole messages, so each one shows up separately in got. */
static void tc_take(tc *t) {
  hf_take(t->c, t->got, sizeof(t->got), &t->got_len);
}

static void tc_wake(cf_client *c, void *ud) {
  tc *t = ud;
  const char *reply = t->reply;

  (void)c;
  t->wakes++;
  if (reply != NULL) {
    t->reply = NULL;
    assert_int_equal(hf_pub(t->hub, "r", reply), CF_OK);
  }
}

static void tc_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  ((tc *)ud)->closes++;
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, tc_wake, tc_close};

static void tc_new(tc *t, cf_hub *h, const char *room) {
  memset(t, 0, sizeof(*t));
  t->hub = h;
  assert_int_equal(cf_client_new(&t->c, h, &ops, t), CF_OK);
  if (room != NULL)
    assert_int_equal(cf_client_join(t->c, room, strlen(room)), CF_OK);
}

static void tc_got_is(tc *t, const char *s) {
  tc_take(t);
  assert_string_equal(t->got_len != 0 ? t->got : "", s);
}

/* What a client joining room on h now gets: the room's history. */
static void history_is(cf_hub *h, const char *room, const char *s) {
  tc z;

  tc_new(&z, h, room);
  tc_got_is(&z, s);
  cf_client_free(z.c);
}

static cf_queue_stats qstats(const cf_queue *q) {
  cf_queue_stats st;

  cf_queue_get_stats(q, &st, sizeof(st));
  return st;
}

static void node_up(node *n, uint64_t id, uint32_t flags) {
  cf_hub_config cfg;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.instance_id = id;
  cfg.flags = flags;
  cfg.history = 10;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&n->hub, &cfg), CF_OK);
  assert_int_equal(cf_queue_local_new(&n->q, bus, &fl.loop, 0, &tm.mem),
                   CF_OK);
  assert_int_equal(cf_hub_attach_queue(n->hub, n->q), CF_OK);
  assert_int_equal(cf_queue_start(n->q), CF_OK);
}

static void node_down(node *n) {
  cf_hub_free(n->hub);
  cf_queue_free(n->q);
  n->hub = NULL;
  n->q = NULL;
}

/* The cluster is made and unmade inside each test: cmocka wants a
 * test's blocks freed by the test itself. */
static void cluster_up_flags(uint32_t flags) {
  assert_int_equal(cf_queue_bus_new(&bus, &tm.mem), CF_OK);
  node_up(&A, ID_A, flags);
  node_up(&B, ID_B, flags);
}

static void cluster_up(void) {
  cluster_up_flags(0);
}

static void cluster_down(void) {
  int i;

  node_down(&A);
  node_down(&B);
  assert_int_equal(cf_queue_bus_free(bus), CF_OK);
  bus = NULL;
  for (i = 0; i < FAKE_LOOP_MAX; i++)
    assert_false(fl.timers[i].used);
}

static int setup(void **state) {
  hf_setup(state);
  fake_loop_init(&fl);
  return 0;
}

static void test_publish_reaches_both_once(void **state) {
  tc a1, a2, b1, b2;
  int i;

  (void)state;
  cluster_up();
  tc_new(&a1, A.hub, "r");
  tc_new(&a2, A.hub, "r");
  tc_new(&b1, B.hub, "r");
  tc_new(&b2, B.hub, "other");
  assert_int_equal(hf_pub(A.hub, "r", "hello"), CF_OK);
  /* A's own clients have it before publish returns... */
  assert_int_equal(a1.wakes, 1);
  assert_int_equal(a2.wakes, 1);
  tc_got_is(&a1, "hello|");
  tc_got_is(&a2, "hello|");
  /* ...B's only once B's loop runs its timer. */
  assert_int_equal(b1.wakes, 0);
  assert_int_equal(cf_client_pending(b1.c), 0);
  assert_int_equal(fake_loop_armed(&fl), 1);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(b1.wakes, 1);
  tc_got_is(&b1, "hello|");
  tc_got_is(&b2, "");
  /* Nothing more comes, to either side: once, and no echo to A. */
  assert_int_equal(fake_loop_armed(&fl), 0);
  for (i = 0; i < 3; i++)
    assert_int_equal(fake_loop_advance(&fl, 1.0), 0);
  tc_got_is(&a1, "hello|");
  tc_got_is(&b1, "hello|");
  assert_int_equal(a1.wakes, 1);
  assert_int_equal(b1.wakes, 1);
  assert_int_equal(hf_stats(A.hub).published, 1);
  assert_int_equal(hf_stats(A.hub).queue_published, 1);
  assert_int_equal(hf_stats(A.hub).received, 0);
  assert_int_equal(hf_stats(A.hub).duplicates, 0);
  assert_int_equal(hf_stats(B.hub).published, 0);
  assert_int_equal(hf_stats(B.hub).received, 1);
  assert_int_equal(hf_stats(B.hub).duplicates, 0);
  assert_int_equal(qstats(A.q).received, 0);
  assert_int_equal(qstats(B.q).received, 1);
  /* B keeps it in history for its joiners, as A does. */
  history_is(B.hub, "r", "hello|");
  history_is(A.hub, "r", "hello|");
  cf_client_free(a1.c);
  cf_client_free(a2.c);
  cf_client_free(b1.c);
  cf_client_free(b2.c);
  cluster_down();
}

/* A room nobody on B is in still gets B's history, from the bus. */
static void test_history_without_members(void **state) {
  (void)state;
  cluster_up();
  assert_int_equal(hf_pub(A.hub, "quiet", "q1"), CF_OK);
  assert_int_equal(hf_pub(A.hub, "quiet", "q2"), CF_OK);
  assert_int_equal(hf_stats(B.hub).rooms, 0);
  assert_int_equal(fake_loop_advance(&fl, 0), 1);
  assert_int_equal(hf_stats(B.hub).received, 2);
  assert_int_equal(hf_stats(B.hub).rooms, 1);
  history_is(B.hub, "quiet", "q1|q2|");
  cluster_down();
}

/*
 * Both ways, with a reply made from inside a wake callback on B: each
 * hub sees every message once, its own at once, the other's a loop
 * iteration later, and in one order for all its clients.
 */
static void test_both_ways(void **state) {
  tc a1, a2, b1, b2;

  (void)state;
  cluster_up();
  tc_new(&a1, A.hub, "r");
  tc_new(&a2, A.hub, "r");
  tc_new(&b1, B.hub, "r");
  tc_new(&b2, B.hub, "r");
  b1.reply = "pong";
  assert_int_equal(hf_pub(A.hub, "r", "ping"), CF_OK);
  assert_int_equal(hf_pub(B.hub, "r", "b-own"), CF_OK);
  tc_got_is(&a1, "ping|");
  /* b1's wake (for b-own) replied at once, on B, before publish
   * returned. */
  tc_got_is(&b1, "b-own|pong|");
  tc_got_is(&b2, "b-own|pong|");
  assert_int_equal(fake_loop_advance(&fl, 0), 2);
  tc_got_is(&a1, "ping|b-own|pong|");
  tc_got_is(&a2, "ping|b-own|pong|");
  tc_got_is(&b1, "b-own|pong|ping|");
  tc_got_is(&b2, "b-own|pong|ping|");
  assert_int_equal(fake_loop_advance(&fl, 1.0), 0);
  assert_int_equal(hf_stats(A.hub).received, 2);
  assert_int_equal(hf_stats(B.hub).received, 1);
  assert_int_equal(hf_stats(A.hub).duplicates + hf_stats(B.hub).duplicates, 0);
  history_is(A.hub, "r", "ping|b-own|pong|");
  history_is(B.hub, "r", "b-own|pong|ping|");
  cf_client_free(a1.c);
  cf_client_free(a2.c);
  cf_client_free(b1.c);
  cf_client_free(b2.c);
  cluster_down();
}

/*
 * CF_HUB_OWN_VIA_QUEUE needs a backend that hands an instance its own
 * messages back, as SQS FIFO does. The local bus never does: with the
 * flag, each publish reaches only the other instance's clients, never
 * the publisher's own. This shows the rule; it is no way to run.
 */
static void test_own_via_queue_needs_loopback(void **state) {
  cf_envelope e;
  tc a1, b1;

  (void)state;
  cluster_up_flags(CF_HUB_OWN_VIA_QUEUE);
  tc_new(&a1, A.hub, "r");
  tc_new(&b1, B.hub, "r");
  assert_int_equal(hf_pub(A.hub, "r", "from-a"), CF_OK);
  assert_int_equal(hf_pub(B.hub, "r", "from-b"), CF_OK);
  /* Nothing at once: the queue is the only way in. */
  assert_int_equal(a1.wakes + b1.wakes, 0);
  assert_int_equal(fake_loop_advance(&fl, 0), 2);
  tc_got_is(&a1, "from-b|");
  tc_got_is(&b1, "from-a|");
  /* The bus sends nobody their own: nothing more ever comes. */
  assert_int_equal(fake_loop_advance(&fl, 1.0), 0);
  tc_got_is(&a1, "from-b|");
  tc_got_is(&b1, "from-a|");
  assert_int_equal(hf_stats(A.hub).published, 1);
  assert_int_equal(hf_stats(A.hub).queue_published, 1);
  assert_int_equal(hf_stats(A.hub).received, 1);
  assert_int_equal(qstats(A.q).received, 1);
  history_is(A.hub, "r", "from-b|");

  /* What a backend with loopback would add: A's own envelope, handed
   * back to A, is delivered there once. */
  memset(&e, 0, sizeof(e));
  e.origin = ID_A;
  e.seq = 1;
  e.room = "r";
  e.room_len = 1;
  e.data = "from-a";
  e.len = 6;
  assert_int_equal(cf_hub_deliver(A.hub, &e), CF_OK);
  assert_int_equal(cf_hub_deliver(A.hub, &e), CF_OK);
  tc_got_is(&a1, "from-b|from-a|");
  assert_int_equal(hf_stats(A.hub).duplicates, 1);
  history_is(A.hub, "r", "from-b|from-a|");
  cf_client_free(a1.c);
  cf_client_free(b1.c);
  cluster_down();
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_publish_reaches_both_once),
      T(test_history_without_members),
      T(test_both_ways),
      T(test_own_via_queue_needs_loopback),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
