/* The daemon's abuse limits: token bucket, per-address table, frame
 * read timeout rule. Pure logic, so time is whatever the test says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cfd_limits.h"

static cfd_peer v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  cfd_peer p;
  memset(&p, 0, sizeof(p));
  p.family = 4;
  p.addr[0] = a;
  p.addr[1] = b;
  p.addr[2] = c;
  p.addr[3] = d;
  p.port = 4242;
  return p;
}

/* 2001:db8:<net>::<host> */
static cfd_peer v6(uint16_t net, uint16_t host) {
  cfd_peer p;
  memset(&p, 0, sizeof(p));
  p.family = 6;
  p.addr[0] = 0x20;
  p.addr[1] = 0x01;
  p.addr[2] = 0x0d;
  p.addr[3] = 0xb8;
  p.addr[6] = (uint8_t)(net >> 8);
  p.addr[7] = (uint8_t)net;
  p.addr[14] = (uint8_t)(host >> 8);
  p.addr[15] = (uint8_t)host;
  return p;
}

static cfd_limits *limits(unsigned per_ip, double rate, double burst,
                          int loopback, size_t slots) {
  cfd_limits_config cfg;
  cfd_limits *l;
  memset(&cfg, 0, sizeof(cfg));
  cfg.per_ip = per_ip;
  cfg.rate = rate;
  cfg.burst = burst;
  cfg.loopback = loopback;
  cfg.slots = slots;
  cfg.seed[0] = 0x1234;
  cfg.seed[1] = 0x5678;
  l = cfd_limits_new(&cfg);
  assert_non_null(l);
  return l;
}

static void test_bucket(void **state) {
  cfd_bucket b;
  int i;
  (void)state;
  cfd_bucket_init(&b, 3, 100.0);
  for (i = 0; i < 3; i++)
    assert_int_equal(cfd_bucket_take(&b, 2, 3, 100.0), 1);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 100.0), 0);
  assert_true(cfd_bucket_wait(&b, 2, 3, 100.0) > 0.49);
  assert_true(cfd_bucket_wait(&b, 2, 3, 100.0) < 0.51);
  /* 2 a second: one more after half a second, not before. */
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 100.4), 0);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 100.5), 1);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 100.5), 0);
  /* A long pause saves up the burst, no more. */
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 1000.0), 1);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 1000.0), 1);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 1000.0), 1);
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 1000.0), 0);
  /* The clock going back gives nothing. */
  assert_int_equal(cfd_bucket_take(&b, 2, 3, 900.0), 0);
  assert_int_equal(cfd_bucket_wait(&b, 2, 3, 2000.0), 0);
  /* No rate: no limit. */
  assert_int_equal(cfd_bucket_take(&b, 0, 3, 0.0), 1);
}

static void test_ip_conns(void **state) {
  cfd_limits *l = limits(3, 0, 1, 0, 64);
  cfd_peer a = v4(10, 0, 0, 1), b = v4(10, 0, 0, 2);
  int i;
  (void)state;
  for (i = 0; i < 3; i++)
    assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_OK);
  assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_CONNS);
  /* Another address is not affected; the port does not matter. */
  assert_int_equal(cfd_limits_ip_open(l, &b, 0, NULL), CFD_IP_OK);
  a.port = 1;
  assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_CONNS);
  cfd_limits_ip_close(l, &a);
  assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_OK);
  assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_CONNS);
  assert_int_equal(cfd_limits_entries(l), 2);
  cfd_limits_free(l);
}

static void test_ip_rate(void **state) {
  cfd_limits *l = limits(0, 10, 5, 0, 64);
  cfd_peer a = v4(192, 0, 2, 1);
  double retry;
  int i;
  (void)state;
  for (i = 0; i < 5; i++) {
    assert_int_equal(cfd_limits_ip_open(l, &a, 50.0, &retry), CFD_IP_OK);
    assert_true(retry == 0);
    cfd_limits_ip_close(l, &a); /* closing gives no token back */
  }
  assert_int_equal(cfd_limits_ip_open(l, &a, 50.0, &retry), CFD_IP_RATE);
  assert_true(retry > 0.09 && retry < 0.11);
  assert_int_equal(cfd_limits_ip_open(l, &a, 50.1, &retry), CFD_IP_OK);
  cfd_limits_free(l);
}

static void test_ipv6_prefix(void **state) {
  cfd_limits *l = limits(2, 0, 1, 0, 64);
  cfd_peer a1 = v6(1, 1), a2 = v6(1, 2), a3 = v6(1, 0xffff), b = v6(2, 1);
  cfd_peer m;
  (void)state;
  /* One /64 is one client, whatever the interface id. */
  assert_int_equal(cfd_limits_ip_open(l, &a1, 0, NULL), CFD_IP_OK);
  assert_int_equal(cfd_limits_ip_open(l, &a2, 0, NULL), CFD_IP_OK);
  assert_int_equal(cfd_limits_ip_open(l, &a3, 0, NULL), CFD_IP_CONNS);
  assert_int_equal(cfd_limits_ip_open(l, &b, 0, NULL), CFD_IP_OK);
  /* v4-mapped IPv6 is the IPv4 address (dual-stack listeners). */
  memset(&m, 0, sizeof(m));
  m.family = 6;
  m.addr[10] = m.addr[11] = 0xff;
  m.addr[12] = 10;
  m.addr[15] = 7;
  assert_int_equal(cfd_limits_ip_open(l, &m, 0, NULL), CFD_IP_OK);
  {
    cfd_peer p = v4(10, 0, 0, 7);
    assert_int_equal(cfd_limits_ip_open(l, &p, 0, NULL), CFD_IP_OK);
    assert_int_equal(cfd_limits_ip_open(l, &p, 0, NULL), CFD_IP_CONNS);
  }
  cfd_limits_free(l);
}

static void test_loopback(void **state) {
  cfd_limits *off = limits(1, 1, 1, 0, 64);
  cfd_limits *on = limits(1, 0, 1, 1, 64);
  cfd_peer lo = v4(127, 0, 0, 1), lo6, unknown;
  int i;
  (void)state;
  memset(&lo6, 0, sizeof(lo6));
  lo6.family = 6;
  lo6.addr[15] = 1;
  memset(&unknown, 0, sizeof(unknown));
  for (i = 0; i < 10; i++) {
    assert_int_equal(cfd_limits_ip_open(off, &lo, 0, NULL),
                     CFD_IP_UNTRACKED);
    assert_int_equal(cfd_limits_ip_open(off, &lo6, 0, NULL),
                     CFD_IP_UNTRACKED);
    assert_int_equal(cfd_limits_ip_open(off, &unknown, 0, NULL),
                     CFD_IP_UNTRACKED);
  }
  assert_int_equal(cfd_limits_entries(off), 0);
  assert_int_equal(cfd_limits_ip_open(on, &lo, 0, NULL), CFD_IP_OK);
  assert_int_equal(cfd_limits_ip_open(on, &lo, 0, NULL), CFD_IP_CONNS);
  assert_int_equal(cfd_limits_ip_open(on, &lo6, 0, NULL), CFD_IP_OK);
  cfd_limits_ip_close(on, &unknown); /* harmless */
  cfd_limits_free(off);
  cfd_limits_free(on);
}

/* All limits off: nothing is tracked, nothing is allocated per address. */
static void test_disabled(void **state) {
  cfd_limits *l = limits(0, 0, 1, 1, 64);
  cfd_peer a = v4(10, 1, 1, 1);
  int i;
  (void)state;
  for (i = 0; i < 1000; i++)
    assert_int_equal(cfd_limits_ip_open(l, &a, 0, NULL), CFD_IP_UNTRACKED);
  assert_int_equal(cfd_limits_entries(l), 0);
  cfd_limits_free(l);
  cfd_limits_ip_close(NULL, &a);
  assert_int_equal(cfd_limits_ip_open(NULL, &a, 0, NULL), CFD_IP_UNTRACKED);
}

/*
 * The table never grows: 100k addresses through 64 slots. Idle ones are
 * evicted; with every slot of a window holding a connection, further
 * addresses are admitted untracked, and the counts of the held ones stay
 * right.
 */
static void test_bounded(void **state) {
  cfd_limits *l = limits(1, 0, 1, 0, 64);
  cfd_peer held[64];
  unsigned i, ok = 0, untracked = 0;
  (void)state;
  for (i = 0; i < 100000; i++) {
    cfd_peer p = v4(10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i);
    assert_int_equal(cfd_limits_ip_open(l, &p, i, NULL), CFD_IP_OK);
    cfd_limits_ip_close(l, &p);
  }
  assert_true(cfd_limits_entries(l) <= 64);
  assert_int_equal(cfd_limits_untracked(l), 0);
  /* Now hold connections from many addresses. */
  for (i = 0; i < 1000; i++) {
    cfd_peer p = v4(172, 16, (uint8_t)(i >> 8), (uint8_t)i);
    int rv = cfd_limits_ip_open(l, &p, 1e6, NULL);
    assert_true(rv == CFD_IP_OK || rv == CFD_IP_UNTRACKED);
    if (rv == CFD_IP_OK && ok < 64)
      held[ok++] = p;
    untracked += rv == CFD_IP_UNTRACKED;
  }
  assert_int_equal(ok, 64); /* every slot ends up held */
  assert_int_equal(untracked, 1000 - 64);
  assert_int_equal(cfd_limits_untracked(l), 1000 - 64);
  assert_int_equal(cfd_limits_entries(l), 64);
  /* Held addresses still count: a second connection is refused. */
  for (i = 0; i < ok; i++)
    assert_int_equal(cfd_limits_ip_open(l, &held[i], 1e6, NULL),
                     CFD_IP_CONNS);
  cfd_limits_free(l);
}

static void test_frame_timeout(void **state) {
  (void)state;
  assert_true(cfd_frame_timeout_left(0, 10, 5, 12) < 0);
  assert_true(cfd_frame_timeout_left(1, 10, 0, 12) < 0);
  assert_true(cfd_frame_timeout_left(1, 10, 5, 12) > 2.99);
  assert_true(cfd_frame_timeout_left(1, 10, 5, 12) < 3.01);
  assert_true(cfd_frame_timeout_left(1, 10, 5, 15) == 0);
  assert_true(cfd_frame_timeout_left(1, 10, 5, 99) == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bucket),      cmocka_unit_test(test_ip_conns),
      cmocka_unit_test(test_ip_rate),     cmocka_unit_test(test_ipv6_prefix),
      cmocka_unit_test(test_loopback),    cmocka_unit_test(test_disabled),
      cmocka_unit_test(test_bounded),     cmocka_unit_test(test_frame_timeout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
