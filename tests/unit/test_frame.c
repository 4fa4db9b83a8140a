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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_short_lengths),
      cmocka_unit_test(test_16bit_lengths),
      cmocka_unit_test(test_64bit_lengths),
      cmocka_unit_test(test_hub_framer),
      cmocka_unit_test(test_close),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
