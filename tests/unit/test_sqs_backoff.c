/* Backoff with full jitter and its seeded generator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "cf_sqs_backoff.h"

/* splitmix64 from state 0: the published reference values. */
static void test_rng_reference(void **state) {
  cf__sqs_rng r;

  (void)state;
  cf__sqs_rng_seed(&r, 0);
  assert_true(cf__sqs_rng_next(&r) == 0xe220a8397b1dcdafull);
  assert_true(cf__sqs_rng_next(&r) == 0x6e789e6aa1b965f4ull);
  assert_true(cf__sqs_rng_next(&r) == 0x06c45d188009454full);
}

static void test_rng_seeds(void **state) {
  cf__sqs_rng a, b, c;
  int i, differ = 0;

  (void)state;
  cf__sqs_rng_seed(&a, 42);
  cf__sqs_rng_seed(&b, 42);
  cf__sqs_rng_seed(&c, 43);
  for (i = 0; i < 100; i++) {
    uint64_t x = cf__sqs_rng_next(&a);
    assert_true(x == cf__sqs_rng_next(&b));
    differ += x != cf__sqs_rng_next(&c);
  }
  assert_int_equal(differ, 100);
}

static void test_rng_unit_range(void **state) {
  cf__sqs_rng r;
  double sum = 0, lo = 1, hi = 0;
  int i;

  (void)state;
  cf__sqs_rng_seed(&r, 7);
  for (i = 0; i < 100000; i++) {
    double u = cf__sqs_rng_unit(&r);
    assert_true(u >= 0.0 && u < 1.0);
    sum += u;
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  assert_true(fabs(sum / 100000 - 0.5) < 0.01);
  assert_true(lo < 0.001 && hi > 0.999);
}

static void test_ceiling_doubles_to_cap(void **state) {
  cf__sqs_rng r;
  cf__sqs_backoff b;
  const double want[] = {0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0};
  size_t i;

  (void)state;
  cf__sqs_rng_seed(&r, 1);
  cf__sqs_backoff_init(&b, &r, 0.1, 2.0);
  for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    double c = cf__sqs_backoff_ceiling(&b), w;
    assert_true(fabs(c - want[i]) < 1e-12);
    w = cf__sqs_backoff_next(&b);
    assert_true(w >= 0.0 && w <= c);
  }
  assert_int_equal(b.attempt, 8);
  cf__sqs_backoff_reset(&b);
  assert_int_equal(b.attempt, 0);
  assert_true(fabs(cf__sqs_backoff_ceiling(&b) - 0.1) < 1e-12);
}

/* Many failures must neither overflow the shift nor exceed the cap. */
static void test_long_outage(void **state) {
  cf__sqs_rng r;
  cf__sqs_backoff b;
  int i;

  (void)state;
  cf__sqs_rng_seed(&r, 3);
  cf__sqs_backoff_init(&b, &r, 0.05, 5.0);
  for (i = 0; i < 100000; i++) {
    double w = cf__sqs_backoff_next(&b);
    assert_true(w >= 0.0 && w <= 5.0);
  }
  assert_true(isfinite(cf__sqs_backoff_ceiling(&b)));
  assert_true(cf__sqs_backoff_ceiling(&b) == 5.0);
}

/* Same seed, same waits: what makes retry schedules testable. */
static void test_deterministic(void **state) {
  cf__sqs_rng r1, r2;
  cf__sqs_backoff a, b;
  int i;

  (void)state;
  cf__sqs_rng_seed(&r1, 99);
  cf__sqs_rng_seed(&r2, 99);
  cf__sqs_backoff_init(&a, &r1, 0.05, 2.0);
  cf__sqs_backoff_init(&b, &r2, 0.05, 2.0);
  for (i = 0; i < 20; i++)
    assert_true(cf__sqs_backoff_next(&a) == cf__sqs_backoff_next(&b));
}

/* Full jitter: the waits at the cap average half of it and spread over
 * the whole range (not "cap plus a little noise"). */
static void test_full_jitter_spread(void **state) {
  cf__sqs_rng r;
  cf__sqs_backoff b;
  double sum = 0, lo = 10, hi = 0;
  int i;

  (void)state;
  cf__sqs_rng_seed(&r, 5);
  cf__sqs_backoff_init(&b, &r, 1.0, 1.0);
  for (i = 0; i < 20000; i++) {
    double w = cf__sqs_backoff_next(&b);
    sum += w;
    lo = w < lo ? w : lo;
    hi = w > hi ? w : hi;
  }
  assert_true(fabs(sum / 20000 - 0.5) < 0.02);
  assert_true(lo < 0.01 && hi > 0.99);
}

/* Two backoffs sharing one generator draw from one stream. */
static void test_shared_rng(void **state) {
  cf__sqs_rng r, ref;
  cf__sqs_backoff a, b;
  double wa, wb;

  (void)state;
  cf__sqs_rng_seed(&r, 11);
  cf__sqs_rng_seed(&ref, 11);
  cf__sqs_backoff_init(&a, &r, 1.0, 1.0);
  cf__sqs_backoff_init(&b, &r, 1.0, 1.0);
  wa = cf__sqs_backoff_next(&a);
  wb = cf__sqs_backoff_next(&b);
  assert_true(wa == cf__sqs_rng_unit(&ref));
  assert_true(wb == cf__sqs_rng_unit(&ref));
}

static void test_bad_parameters(void **state) {
  cf__sqs_rng r;
  cf__sqs_backoff b;

  (void)state;
  cf__sqs_rng_seed(&r, 1);
  cf__sqs_backoff_init(&b, &r, -1.0, -5.0);
  assert_true(b.base > 0.0 && b.cap == b.base);
  cf__sqs_backoff_init(&b, &r, NAN, NAN);
  assert_true(b.base > 0.0 && b.cap == b.base);
  assert_true(cf__sqs_backoff_next(&b) <= b.cap);
  cf__sqs_backoff_init(&b, &r, 0.5, 0.1);
  assert_true(b.cap == 0.5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rng_reference),
    cmocka_unit_test(test_rng_seeds),
    cmocka_unit_test(test_rng_unit_range),
    cmocka_unit_test(test_ceiling_doubles_to_cap),
    cmocka_unit_test(test_long_outage),
    cmocka_unit_test(test_deterministic),
    cmocka_unit_test(test_full_jitter_spread),
    cmocka_unit_test(test_shared_rng),
    cmocka_unit_test(test_bad_parameters),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
