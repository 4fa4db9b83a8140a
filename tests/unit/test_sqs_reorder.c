/* Per-origin reorder window: order, gaps, refusals, bounds, memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cf_envelope.h"
#include "cf_sqs_reorder.h"
#include "test_mem.h"

#define A 0xa1ull
#define B 0xb2ull
#define C 0xc3ull

static test_mem tm;
static cf__sqs_reorder *ro;

/* A decoded envelope from tm, as the backend gets them. */
static cf_envelope *mkenv_sized(uint64_t origin, uint64_t seq, size_t len) {
  static char data[4096], wire[8192];
  cf_envelope e = {origin, seq, 1, "room", 4, CF_MSG_TEXT, data, len};
  cf_envelope *out;
  size_t n;

  assert_true(len <= sizeof(data));
  memset(data, 'x', len);
  assert_int_equal(cf__envelope_encode(&e, wire, sizeof(wire), &n), CF_OK);
  if (cf__envelope_decode(&out, wire, n, &tm.mem, NULL) != CF_OK)
    return NULL;
  return out;
}

static cf_envelope *mkenv(uint64_t origin, uint64_t seq) {
  cf_envelope *e = mkenv_sized(origin, seq, 3);
  assert_non_null(e);
  return e;
}

/* Pushes and expects rv; frees the envelope when refused. */
static void push(uint64_t origin, uint64_t seq, double now, int want) {
  cf_envelope *e = mkenv(origin, seq);
  int rv = cf__sqs_reorder_push(ro, e, now);

  assert_int_equal(rv, want);
  if (rv != CF_OK)
    cf__envelope_free(e, &tm.mem);
}

/* Pops everything ready at now into "origin:seq " text. */
static const char *drain(double now) {
  static char out[1024];
  size_t used = 0;
  cf_envelope *e;

  out[0] = '\0';
  while ((e = cf__sqs_reorder_pop(ro, now)) != NULL) {
    used += (size_t)snprintf(out + used, sizeof(out) - used, "%llx:%llu ",
                             (unsigned long long)e->origin,
                             (unsigned long long)e->seq);
    assert_true(used < sizeof(out));
    cf__envelope_free(e, &tm.mem);
  }
  return out;
}

static void mk(double window, size_t held, size_t origins, size_t bytes) {
  cf__sqs_reorder_limits l = {window, held, origins, bytes};
  assert_int_equal(cf__sqs_reorder_new(&ro, &l, &tm.mem), CF_OK);
}

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  ro = NULL;
  return 0;
}

/* cmocka checks for leaks before teardown runs: tests end with this. */
static void finish(void) {
  cf__sqs_reorder_free(ro);
  ro = NULL;
  assert_int_equal(tm.live, 0);
}

static void test_in_order_at_once(void **state) {
  cf__sqs_reorder_stats st;

  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 1, 0.0, CF_OK);
  push(A, 2, 0.0, CF_OK);
  assert_string_equal(drain(0.0), "a1:1 a1:2 ");
  push(A, 3, 0.1, CF_OK);
  assert_string_equal(drain(0.1), "a1:3 ");
  assert_true(cf__sqs_reorder_deadline(ro) < 0);
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.origins, 1);
  assert_int_equal(st.held, 0);
  assert_int_equal(st.bytes, 0);
  finish();
}

static void test_gap_filled(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 1, 0.0, CF_OK);
  push(A, 3, 0.0, CF_OK);
  push(A, 4, 0.1, CF_OK);
  assert_string_equal(drain(0.2), "a1:1 ");
  assert_true(cf__sqs_reorder_deadline(ro) == 0.5);
  push(A, 2, 0.3, CF_OK);
  assert_string_equal(drain(0.3), "a1:2 a1:3 a1:4 ");
  assert_true(cf__sqs_reorder_deadline(ro) < 0);
  finish();
}

/* A skipped seq that shows up after the skip is delivered, once, late. */
static void test_gap_expires_then_late_delivered(void **state) {
  cf__sqs_reorder_stats st;

  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 1, 0.0, CF_OK);
  push(A, 4, 1.0, CF_OK);
  assert_string_equal(drain(1.0), "a1:1 ");
  assert_string_equal(drain(1.49), "");
  assert_string_equal(drain(1.5), "a1:4 ");
  push(A, 3, 1.6, CF_OK);
  assert_string_equal(drain(1.6), "a1:3 ");
  push(A, 2, 1.7, CF_OK);
  push(A, 5, 1.7, CF_OK);
  assert_string_equal(drain(1.7), "a1:2 a1:5 ");
  assert_string_equal(drain(10.0), "");
  assert_true(cf__sqs_reorder_deadline(ro) < 0);
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.skipped, 2);
  assert_int_equal(st.late, 2);
  assert_int_equal(st.refused, 0);
  assert_int_equal(st.forced, 0);
  assert_int_equal(st.held, 0);
  finish();
}

/* After a skip, the next gap's wait counts from the arrival of what is
 * held behind it, not from the skip. */
static void test_second_gap_deadline(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 1, 0.0, CF_OK);
  push(A, 3, 0.0, CF_OK);
  push(A, 6, 0.4, CF_OK);
  assert_string_equal(drain(0.5), "a1:1 a1:3 ");
  assert_true(cf__sqs_reorder_deadline(ro) == 0.9);
  assert_string_equal(drain(0.89), "");
  assert_string_equal(drain(0.9), "a1:6 ");
  finish();
}

/* The first envelope from an origin may have predecessors in flight. */
static void test_unknown_start(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 7, 0.0, CF_OK);
  assert_string_equal(drain(0.0), "");
  push(A, 5, 0.1, CF_OK);
  push(A, 6, 0.2, CF_OK);
  /* Nothing tells us 5 is the first: wait the window from 7's arrival. */
  assert_string_equal(drain(0.49), "");
  assert_string_equal(drain(0.5), "a1:5 a1:6 a1:7 ");
  /* 4 was never delivered: it comes out late, not lost. */
  push(A, 4, 0.6, CF_OK);
  push(A, 8, 0.6, CF_OK);
  assert_string_equal(drain(0.6), "a1:4 a1:8 ");
  finish();
}

static void test_seq1_needs_no_wait(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 2, 0.0, CF_OK);
  push(A, 1, 0.1, CF_OK);
  assert_string_equal(drain(0.1), "a1:1 a1:2 ");
  finish();
}

static void test_duplicates(void **state) {
  cf__sqs_reorder_stats st;

  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 3, 0.0, CF_OK);
  push(A, 3, 0.1, CF_ERR_EXISTS); /* a copy of a held one */
  push(A, 1, 0.0, CF_OK);
  assert_string_equal(drain(0.1), "a1:1 ");
  /* Below next: passed on late, for the hub's dedupe to drop. */
  push(A, 1, 0.2, CF_OK);
  assert_string_equal(drain(0.2), "a1:1 ");
  push(A, 2, 0.2, CF_OK);
  push(A, 2, 0.2, CF_OK);
  assert_string_equal(drain(0.2), "a1:2 a1:3 a1:2 ");
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.refused, 1);
  assert_int_equal(st.late, 2);
  finish();
}

static void test_origins_independent(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 1, 0.0, CF_OK);
  push(B, 1, 0.0, CF_OK);
  push(A, 3, 0.0, CF_OK);
  push(B, 2, 0.1, CF_OK);
  assert_string_equal(drain(0.1), "a1:1 b2:1 b2:2 ");
  push(B, 3, 0.2, CF_OK);
  assert_string_equal(drain(0.2), "b2:3 ");
  assert_string_equal(drain(0.5), "a1:3 ");
  finish();
}

static void test_max_held_forces_skip(void **state) {
  cf__sqs_reorder_stats st;
  uint64_t s;

  (void)state;
  mk(10.0, 4, 0, 0);
  push(A, 1, 0.0, CF_OK);
  for (s = 3; s <= 6; s++)
    push(A, s, 0.0, CF_OK);
  assert_string_equal(drain(0.0), "a1:1 ");
  /* A fifth held envelope is one too many: skip the gap at once. */
  push(A, 8, 0.0, CF_OK);
  assert_string_equal(drain(0.0), "a1:3 a1:4 a1:5 a1:6 ");
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.forced, 1);
  assert_int_equal(st.skipped, 1);
  assert_int_equal(st.held, 1);
  assert_string_equal(drain(10.0), "a1:8 ");
  finish();
}

static void test_max_bytes_skips_oldest(void **state) {
  cf__sqs_reorder_stats st;
  cf_envelope *e;

  (void)state;
  /* Room for about two 1000-byte envelopes. */
  mk(10.0, 0, 0, 2300);
  push(A, 1, 0.0, CF_OK);
  push(B, 1, 0.0, CF_OK);
  assert_string_equal(drain(0.0), "a1:1 b2:1 ");
  e = mkenv_sized(A, 3, 1000);
  assert_int_equal(cf__sqs_reorder_push(ro, e, 1.0), CF_OK);
  e = mkenv_sized(B, 3, 1000);
  assert_int_equal(cf__sqs_reorder_push(ro, e, 2.0), CF_OK);
  assert_string_equal(drain(2.0), "");
  e = mkenv_sized(B, 5, 1000);
  assert_int_equal(cf__sqs_reorder_push(ro, e, 3.0), CF_OK);
  /* A waited longest: it gives up its gap first, and that is enough. */
  assert_string_equal(drain(3.0), "a1:3 ");
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.forced, 1);
  assert_int_equal(st.held, 2);
  assert_true(st.bytes <= 2300);
  finish();
}

static void test_lru_eviction(void **state) {
  cf__sqs_reorder_stats st;

  (void)state;
  mk(10.0, 0, 2, 0);
  push(A, 4, 0.0, CF_OK);
  push(A, 6, 0.0, CF_OK);
  push(B, 1, 0.1, CF_OK);
  assert_string_equal(drain(0.1), "b2:1 ");
  push(A, 7, 0.2, CF_OK); /* A is now the most recent */
  push(B, 2, 0.3, CF_OK); /* and now B again */
  assert_string_equal(drain(0.3), "b2:2 ");
  /* C pushes A out: A's held envelopes come out in order. */
  push(C, 1, 0.4, CF_OK);
  assert_string_equal(drain(0.4), "a1:4 a1:6 a1:7 c3:1 ");
  cf__sqs_reorder_get_stats(ro, &st);
  assert_int_equal(st.evicted, 1);
  assert_int_equal(st.origins, 2);
  /* A is forgotten: a late 5 is new again (and waits as a first). */
  push(A, 5, 0.5, CF_OK);
  assert_string_equal(drain(0.5), "");
  assert_string_equal(drain(10.5), "a1:5 ");
  finish();
}

static void test_free_with_held(void **state) {
  (void)state;
  mk(0.5, 0, 0, 0);
  push(A, 3, 0.0, CF_OK);
  push(B, 1, 0.0, CF_OK); /* ready, never popped */
  push(B, 9, 0.0, CF_OK);
  finish(); /* frees what is held and ready */
}

static void test_invalid(void **state) {
  cf__sqs_reorder_limits l = {-1, 0, 0, 0};
  cf__sqs_reorder *r2 = NULL;
  cf_envelope *e;

  (void)state;
  assert_int_equal(cf__sqs_reorder_new(&r2, &l, &tm.mem), CF_ERR_INVALID);
  l.window = 1e9;
  assert_int_equal(cf__sqs_reorder_new(&r2, &l, &tm.mem), CF_ERR_INVALID);
  assert_null(r2);
  assert_int_equal(cf__sqs_reorder_new(NULL, NULL, &tm.mem), CF_ERR_INVALID);
  assert_int_equal(cf__sqs_reorder_new(&ro, NULL, &tm.mem), CF_OK);
  assert_int_equal(cf__sqs_reorder_push(ro, NULL, 0), CF_ERR_INVALID);
  e = mkenv(A, 1);
  e->seq = 0;
  assert_int_equal(cf__sqs_reorder_push(ro, e, 0), CF_ERR_INVALID);
  cf__envelope_free(e, &tm.mem);
  assert_null(cf__sqs_reorder_pop(NULL, 0));
  assert_true(cf__sqs_reorder_deadline(NULL) < 0);
  finish();
}

/*
 * Every allocation failing in turn: push must refuse with NOMEM and
 * leave the caller owning the envelope, the rest must go on, and
 * nothing may leak.
 */
static void scenario(unsigned long fail_at, int *failed) {
  static const uint64_t seqs[] = {3, 1, 5, 2, 9, 4};
  cf__sqs_reorder_limits l = {1.0, 2, 2, 0};
  size_t i;
  int rv;

  test_mem_init(&tm, 0);
  rv = cf__sqs_reorder_new(&ro, &l, &tm.mem);
  tm.fail_at = fail_at;
  tm.count = 0;
  if (rv != CF_OK) {
    assert_int_equal(rv, CF_ERR_NOMEM);
  } else {
    for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
      uint64_t o = i % 3 == 2 ? B : (i % 3 == 1 ? C : A);
      cf_envelope *e;
      unsigned long at = tm.fail_at, count = tm.count;
      /* The envelope comes from the test: not part of the sweep. */
      tm.fail_at = 0;
      e = mkenv(o, seqs[i]);
      tm.fail_at = at;
      tm.count = count;
      rv = cf__sqs_reorder_push(ro, e, (double)i);
      if (rv != CF_OK) {
        assert_true(rv == CF_ERR_NOMEM || rv == CF_ERR_EXISTS);
        cf__envelope_free(e, &tm.mem);
      }
      drain((double)i * 0.5);
    }
    drain(100.0);
  }
  *failed = tm.failed;
  cf__sqs_reorder_free(ro);
  ro = NULL;
  assert_int_equal(tm.live, 0);
}

static void test_alloc_sweep(void **state) {
  unsigned long n;
  int failed = 1;

  (void)state;
  for (n = 1; failed && n < 200; n++)
    scenario(n, &failed);
  assert_false(failed);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_in_order_at_once, setup),
    cmocka_unit_test_setup(test_gap_filled, setup),
    cmocka_unit_test_setup(test_gap_expires_then_late_delivered, setup),
    cmocka_unit_test_setup(test_second_gap_deadline, setup),
    cmocka_unit_test_setup(test_unknown_start, setup),
    cmocka_unit_test_setup(test_seq1_needs_no_wait, setup),
    cmocka_unit_test_setup(test_duplicates, setup),
    cmocka_unit_test_setup(test_origins_independent, setup),
    cmocka_unit_test_setup(test_max_held_forces_skip, setup),
    cmocka_unit_test_setup(test_max_bytes_skips_oldest, setup),
    cmocka_unit_test_setup(test_lru_eviction, setup),
    cmocka_unit_test_setup(test_free_with_held, setup),
    cmocka_unit_test_setup(test_invalid, setup),
    cmocka_unit_test_setup(test_alloc_sweep, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
