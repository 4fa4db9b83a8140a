/* cfd_frame: server frame headers and close frames, byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/cf_hub.h>

#include "cfd_frame.h"

static void test_short_lengths(void **state) {
  uint8_t b[CFD_FRAME_HEADER_MAX];
  (void)state;
  assert_int_equal(cfd_frame_header(b, CFD_WS_OP_TEXT, 0), 2);
  assert_int_equal(b[0], 0x81);
  assert_int_equal(b[1], 0x00);
  assert_int_equal(cfd_frame_header(b, CFD_WS_OP_BINARY, 125), 2);
  assert_int_equal(b[0], 0x82);
  assert_int_equal(b[1], 125);
}

static void test_16bit_lengths(void **state) {
  uint8_t b[CFD_FRAME_HEADER_MAX];
  (void)state;
  assert_int_equal(cfd_frame_header(b, CFD_WS_OP_TEXT, 126), 4);
  assert_memory_equal(b, "\x81\x7e\x00\x7e", 4);
  assert_int_equal(cfd_frame_header(b, CFD_WS_OP_TEXT, 65535), 4);
  assert_memory_equal(b, "\x81\x7e\xff\xff", 4);
}

static void test_64bit_lengths(void **state) {
  uint8_t b[CFD_FRAME_HEADER_MAX];
  (void)state;
  assert_int_equal(cfd_frame_header(b, CFD_WS_OP_BINARY, 65536), 10);
  assert_memory_equal(b, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
  assert_int_equal(
      cfd_frame_header(b, CFD_WS_OP_TEXT, UINT64_C(0x0102030405060708)), 10);
  assert_memory_equal(b, "\x81\x7f\x01\x02\x03\x04\x05\x06\x07\x08", 10);
}

static void test_hub_framer(void **state) {
  uint8_t b[CF_FRAME_HEADROOM_MAX];
  (void)state;
  assert_true(CFD_FRAME_HEADER_MAX <= CF_FRAME_HEADROOM_MAX);
  assert_int_equal(cfd_frame_hub_framer(b, CF_MSG_TEXT, 5, NULL), 2);
  assert_memory_equal(b, "\x81\x05", 2);
  assert_int_equal(cfd_frame_hub_framer(b, CF_MSG_BINARY, 300, NULL), 4);
  assert_memory_equal(b, "\x82\x7e\x01\x2c", 4);
}

static void test_close(void **state) {
  uint8_t b[CFD_FRAME_CLOSE_MAX];
  char longr[200];
  (void)state;
  assert_int_equal(cfd_frame_close(b, 1002, NULL, 0), 4);
  assert_memory_equal(b, "\x88\x02\x03\xea", 4);
  assert_int_equal(cfd_frame_close(b, 1008, "slow consumer", 13), 17);
  assert_memory_equal(b, "\x88\x0f\x03\xf0slow consumer", 17);
  memset(longr, 'x', sizeof(longr));
  /* Control frames carry at most 125 payload bytes. */
  assert_int_equal(cfd_frame_close(b, 1000, longr, sizeof(longr)), 127);
  assert_int_equal(b[1], 125);
}

/* Appends a masked client frame with a zero payload of len bytes. */
static size_t put_frame(uint8_t *b, unsigned fin, unsigned op,
                        uint64_t len) {
  size_t n = cfd_frame_header(b, op, len);
  if (!fin)
    b[0] &= 0x7f;
  b[1] |= 0x80; /* masked */
  memset(b + n, 0xab, 4 + (size_t)len);
  return n + 4 + (size_t)len;
}

/* Feeds b[0..n) one byte at a time; returns the 1-based byte that
 * triggered, or 0. */
static size_t feed_bytes(cfd_frame_scan *s, const uint8_t *b, size_t n,
                         uint64_t max) {
  size_t i;
  for (i = 0; i < n; i++)
    if (cfd_frame_scan_feed(s, b + i, 1, max))
      return i + 1;
  return 0;
}

static uint8_t SB[200000];

static void test_scan_limit(void **state) {
  cfd_frame_scan s;
  size_t n;
  (void)state;
  memset(&s, 0, sizeof(s));
  n = put_frame(SB, 1, CFD_WS_OP_TEXT, 1000);
  assert_int_equal(cfd_frame_scan_feed(&s, SB, n, 1000), 0);
  n = put_frame(SB, 1, CFD_WS_OP_BINARY, 65535);
  assert_int_equal(cfd_frame_scan_feed(&s, SB, n, 65535), 0);
  n = put_frame(SB, 1, CFD_WS_OP_BINARY, 65536);
  assert_int_equal(cfd_frame_scan_feed(&s, SB, n, 65535), 1);
}

static void test_scan_huge_header(void **state) {
  cfd_frame_scan s;
  uint8_t b[16];
  (void)state;
  memset(&s, 0, sizeof(s));
  cfd_frame_header(b, CFD_WS_OP_BINARY, UINT64_C(1) << 40);
  b[1] |= 0x80;
  /* Known as soon as the 10-byte header is complete. */
  assert_int_equal(feed_bytes(&s, b, 10, 65536), 10);
}

static void test_scan_fragments(void **state) {
  cfd_frame_scan s;
  size_t n = 0, hit;
  (void)state;
  memset(&s, 0, sizeof(s));
  n += put_frame(SB + n, 0, CFD_WS_OP_TEXT, 400);
  n += put_frame(SB + n, 1, 0x9, 100); /* a ping in between */
  n += put_frame(SB + n, 0, 0x0, 400);
  hit = n + 4; /* the third fragment's 4-byte header */
  n += put_frame(SB + n, 1, 0x0, 400);
  assert_int_equal(feed_bytes(&s, SB, n, 1000), hit);
  /* A finished message does not count towards the next one. */
  memset(&s, 0, sizeof(s));
  n = put_frame(SB, 1, CFD_WS_OP_TEXT, 900);
  n += put_frame(SB + n, 1, CFD_WS_OP_TEXT, 900);
  assert_int_equal(feed_bytes(&s, SB, n, 1000), 0);
}

/* Idle only between whole messages, control frames included. */
static void test_scan_idle(void **state) {
  cfd_frame_scan s;
  size_t n, i;
  (void)state;
  memset(&s, 0, sizeof(s));
  assert_true(cfd_frame_scan_idle(&s));
  n = put_frame(SB, 0, CFD_WS_OP_TEXT, 3);
  n += put_frame(SB + n, 1, 0x9, 0);
  n += put_frame(SB + n, 1, 0x0, 300);
  for (i = 0; i < n; i++) {
    assert_int_equal(cfd_frame_scan_feed(&s, SB + i, 1, 1000), 0);
    assert_int_equal(cfd_frame_scan_idle(&s), i == n - 1);
  }
  assert_int_equal(s.done, 1); /* the ping inside the message: not */
  n = put_frame(SB, 1, 0x9, 5);
  for (i = 0; i < n; i++) {
    assert_int_equal(cfd_frame_scan_feed(&s, SB + i, 1, 1000), 0);
    assert_int_equal(cfd_frame_scan_idle(&s), i == n - 1);
  }
  assert_int_equal(s.done, 2);
  /* Three whole messages in one feed, a fourth begun. */
  n = put_frame(SB, 1, CFD_WS_OP_TEXT, 0);
  n += put_frame(SB + n, 1, CFD_WS_OP_TEXT, 200);
  n += put_frame(SB + n, 1, 0x9, 0);
  n += put_frame(SB + n, 1, CFD_WS_OP_TEXT, 9);
  assert_int_equal(cfd_frame_scan_feed(&s, SB, n - 3, 1000), 0);
  assert_int_equal(s.done, 5);
  assert_false(cfd_frame_scan_idle(&s));
}

/* Many frames fed in uneven chunks keep their boundaries. */
static void test_scan_chunks(void **state) {
  static const size_t lens[] = {0, 1, 125, 126, 127, 300, 65535, 65536, 7};
  static const size_t cuts[] = {1, 2, 3, 5, 7, 11, 13, 4096, 70000};
  cfd_frame_scan s;
  size_t n = 0, i, off, k, hit;
  (void)state;
  for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
    n += put_frame(SB + n, 1, CFD_WS_OP_BINARY, lens[i]);
  hit = n + 10; /* the 10-byte header of the big frame */
  n += put_frame(SB + n, 1, CFD_WS_OP_BINARY, 65537);
  for (k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
    memset(&s, 0, sizeof(s));
    for (off = 0; off < hit; off += cuts[k]) {
      size_t len = off + cuts[k] <= hit ? cuts[k] : hit - off;
      int r = cfd_frame_scan_feed(&s, SB + off, len, 65536);
      assert_int_equal(r, off + len == hit);
    }
  }
}

/* Bytes of an unfinished close frame, counted from its first byte. */
static void test_scan_close_partial(void **state) {
  cfd_frame_scan s;
  size_t n, m, i;
  (void)state;
  memset(&s, 0, sizeof(s));
  n = put_frame(SB, 1, CFD_WS_OP_TEXT, 10);
  m = put_frame(SB + n, 1, CFD_WS_OP_CLOSE, 125);
  assert_int_equal(m, CFD_FRAME_CLIENT_CLOSE_MAX);
  n += put_frame(SB + n + m, 1, 0x9, 3) + m;
  for (i = 0; i < n; i++) {
    size_t close_from = n - m - 9, want;
    assert_int_equal(cfd_frame_scan_feed(&s, SB + i, 1, 1000), 0);
    want = i >= close_from && i + 1 < close_from + m ? i + 1 - close_from
                                                     : 0;
    assert_int_equal(cfd_frame_scan_close_partial(&s), want);
  }
  /* An empty close (unmasked, invalid but well framed) is whole. */
  memset(&s, 0, sizeof(s));
  SB[0] = 0x88;
  SB[1] = 0;
  assert_int_equal(cfd_frame_scan_feed(&s, SB, 1, 1000), 0);
  assert_int_equal(cfd_frame_scan_close_partial(&s), 1);
  assert_int_equal(cfd_frame_scan_feed(&s, SB + 1, 1, 1000), 0);
  assert_int_equal(cfd_frame_scan_close_partial(&s), 0);
  /* A close announcing 126 bytes is not one to hold. */
  memset(&s, 0, sizeof(s));
  n = put_frame(SB, 1, CFD_WS_OP_CLOSE, 126);
  for (i = 0; i < n; i++) {
    assert_int_equal(cfd_frame_scan_feed(&s, SB + i, 1, 1000), 0);
    assert_int_equal(cfd_frame_scan_close_partial(&s), i == 0 ? 1 : 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_short_lengths),
      cmocka_unit_test(test_16bit_lengths),
      cmocka_unit_test(test_64bit_lengths),
      cmocka_unit_test(test_hub_framer),
      cmocka_unit_test(test_close),
      cmocka_unit_test(test_scan_limit),
      cmocka_unit_test(test_scan_huge_header),
      cmocka_unit_test(test_scan_fragments),
      cmocka_unit_test(test_scan_chunks),
      cmocka_unit_test(test_scan_idle),
      cmocka_unit_test(test_scan_close_partial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
