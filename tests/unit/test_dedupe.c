/* The bounded (origin, seq) set and its use by cf_hub_deliver(). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "cf_dedupe.h"
#include "hub_fixture.h"

static void test_basic(void **state) {
  cf_dedupe d;

  (void)state;
  cf__dedupe_init(&d, 4, 1234);
  /* Lookups before the first reserve answer "unseen" without memory. */
  assert_false(cf__dedupe_has(&d, 1, 1));
  cf__dedupe_add(&d, 1, 1);
  assert_false(cf__dedupe_has(&d, 1, 1));
  assert_int_equal(tm.count, 0);

  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  assert_int_equal(tm.count, 2);
  cf__dedupe_add(&d, 1, 1);
  cf__dedupe_add(&d, 2, 1);
  assert_true(cf__dedupe_has(&d, 1, 1));
  assert_true(cf__dedupe_has(&d, 2, 1));
  assert_false(cf__dedupe_has(&d, 1, 2));
  assert_false(cf__dedupe_has(&d, 3, 1));
  /* Adding twice keeps one entry. */
  cf__dedupe_add(&d, 1, 1);
  assert_int_equal(d.count, 2);
  /* Origin 0 is never stored (it marks free slots). */
  cf__dedupe_add(&d, 0, 5);
  assert_int_equal(d.count, 2);
  cf__dedupe_deinit(&d, &tm.mem);
}

static void test_window_fifo(void **state) {
  cf_dedupe d;
  uint64_t s;

  (void)state;
  cf__dedupe_init(&d, 3, 99);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  for (s = 1; s <= 3; s++)
    cf__dedupe_add(&d, 7, s);
  /* Seeing an old id again does not refresh it: eviction is FIFO. */
  cf__dedupe_add(&d, 7, 1);
  cf__dedupe_add(&d, 7, 4);
  assert_false(cf__dedupe_has(&d, 7, 1));
  assert_true(cf__dedupe_has(&d, 7, 2));
  assert_true(cf__dedupe_has(&d, 7, 3));
  assert_true(cf__dedupe_has(&d, 7, 4));
  cf__dedupe_add(&d, 8, 1);
  assert_false(cf__dedupe_has(&d, 7, 2));
  assert_true(cf__dedupe_has(&d, 8, 1));
  assert_int_equal(d.count, 3);
  cf__dedupe_deinit(&d, &tm.mem);
}

static void test_window_one(void **state) {
  cf_dedupe d;

  (void)state;
  cf__dedupe_init(&d, 1, 0);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  cf__dedupe_add(&d, 5, 5);
  assert_true(cf__dedupe_has(&d, 5, 5));
  cf__dedupe_add(&d, 5, 6);
  assert_false(cf__dedupe_has(&d, 5, 5));
  assert_true(cf__dedupe_has(&d, 5, 6));
  cf__dedupe_deinit(&d, &tm.mem);
}

static uint64_t rng_state = 88172645463325252u;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/*
 * Against a plain model (the last `window` distinct ids) with ids from a
 * small space, so probe runs collide, wrap around the table and are
 * repaired by deletions all the time.
 */
static void check_against_model(uint32_t window, uint64_t seed,
                                unsigned ops, unsigned space) {
  cf_dedupe_id model[64];
  unsigned n = 0, i, k;
  cf_dedupe d;

  assert_true(window <= 64);
  cf__dedupe_init(&d, window, seed);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  for (k = 0; k < ops; k++) {
    uint64_t o = 1 + rng() % 3, s = rng() % space;
    int in_model = 0;

    for (i = 0; i < n; i++)
      in_model |= model[i].origin == o && model[i].seq == s;
    assert_int_equal(cf__dedupe_has(&d, o, s) != 0, in_model);
    if (!in_model) {
      if (n == window) {
        memmove(model, model + 1, (n - 1) * sizeof(model[0]));
        n--;
      }
      model[n].origin = o;
      model[n].seq = s;
      n++;
    }
    cf__dedupe_add(&d, o, s);
    assert_int_equal(d.count, n);
    /* Every id the model holds is still reachable. */
    for (i = 0; i < n; i++)
      assert_true(cf__dedupe_has(&d, model[i].origin, model[i].seq));
  }
  cf__dedupe_deinit(&d, &tm.mem);
}

static void test_collisions_model(void **state) {
  (void)state;
  check_against_model(1, 1, 2000, 4);
  check_against_model(2, 2, 2000, 6);
  check_against_model(5, 3, 5000, 12);
  check_against_model(16, 4, 20000, 40);
  check_against_model(64, 5, 20000, 100);
  check_against_model(63, 6, 20000, 70);
}

static void test_reserve_nomem(void **state) {
  cf_dedupe d;

  (void)state;
  cf__dedupe_init(&d, 16, 0);
  test_mem_init(&tm, 1);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_ERR_NOMEM);
  test_mem_init(&tm, 2);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_ERR_NOMEM);
  assert_int_equal(tm.live, 0);
  assert_null(d.slots);
  test_mem_init(&tm, 0);
  assert_int_equal(cf__dedupe_reserve(&d, &tm.mem), CF_OK);
  cf__dedupe_deinit(&d, &tm.mem);
}

/* --- Through cf_hub_deliver() ------------------------------------------ */

static int wakes;

static void on_wake(cf_client *c, void *ud) {
  (void)c;
  (void)ud;
  wakes++;
}

static void on_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  (void)ud;
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, on_wake, on_close};

static cf_envelope env_of(uint64_t origin, uint64_t seq, const char *data) {
  cf_envelope e;

  memset(&e, 0, sizeof(e));
  e.origin = origin;
  e.seq = seq;
  e.room = "r";
  e.room_len = 1;
  e.flags = CF_MSG_TEXT;
  e.data = data;
  e.len = strlen(data);
  return e;
}

static void test_hub_drops_duplicates(void **state) {
  cf_hub_config cfg;
  cf_hub_stats st;
  cf_envelope e;
  cf_client *c;
  cf_hub *h;
  uint64_t s;

  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.instance_id = 42;
  cfg.dedupe_window = 4;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  assert_int_equal(cf_client_new(&c, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_join(c, "r", 1), CF_OK);

  e = env_of(9, 1, "a");
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  /* Same seq from another origin is another message. */
  e = env_of(10, 1, "b");
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  /* Our own messages coming back are dropped. */
  e = env_of(42, 1, "c");
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(cf_client_pending(c), 2);
  cf_hub_get_stats(h, &st, sizeof(st));
  assert_int_equal(st.received, 2);
  assert_int_equal(st.duplicates, 2);

  /* Past the window an old id is accepted again. */
  for (s = 2; s <= 5; s++) {
    e = env_of(9, s, "x");
    assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  }
  e = env_of(9, 1, "a");
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(cf_client_pending(c), 7);
  cf_hub_get_stats(h, &st, sizeof(st));
  assert_int_equal(st.received, 7);
  assert_int_equal(st.duplicates, 2);
  assert_int_equal(wakes, 1);
  cf_hub_free(h);
}

static void test_hub_failed_delivery_not_remembered(void **state) {
  cf_hub_config cfg;
  cf_envelope e = env_of(9, 1, "a");
  cf_client *c;
  cf_hub *h;

  (void)state;
  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  assert_int_equal(cf_client_new(&c, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_join(c, "r", 1), CF_OK);
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  /* Dedupe table is allocated; now fail the message allocation. */
  e = env_of(9, 2, "b");
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf_hub_deliver(h, &e), CF_ERR_NOMEM);
  tm.fail_at = 0;
  assert_int_equal(cf_client_pending(c), 1);
  /* A redelivery after the failure is not taken for a duplicate. */
  assert_int_equal(cf_hub_deliver(h, &e), CF_OK);
  assert_int_equal(cf_client_pending(c), 2);
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_basic),
      T(test_window_fifo),
      T(test_window_one),
      T(test_collisions_model),
      T(test_reserve_nomem),
      T(test_hub_drops_duplicates),
      T(test_hub_failed_delivery_not_remembered),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
