/*
 * cfd_utf8_valid against an independent, naive decoder (decode the code
 * point, then reject overlongs, surrogates and values past U+10FFFF),
 * exhaustively for every sequence of up to three bytes, plus the inputs
 * that matter for four-byte forms and a guard page against over-reads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfd_utf8.h"

/* Returns the bytes used by one valid sequence at s, or 0. */
static size_t ref_one(const uint8_t *s, size_t len) {
  uint32_t cp;
  size_t n, i;
  if (s[0] < 0x80)
    return 1;
  if ((s[0] & 0xe0) == 0xc0) {
    n = 2;
    cp = s[0] & 0x1f;
  } else if ((s[0] & 0xf0) == 0xe0) {
    n = 3;
    cp = s[0] & 0x0f;
  } else if ((s[0] & 0xf8) == 0xf0) {
    n = 4;
    cp = s[0] & 0x07;
  } else {
    return 0;
  }
  if (len < n)
    return 0;
  for (i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
      (n == 4 && cp < 0x10000))
    return 0;
  if (cp >= 0xd800 && cp <= 0xdfff)
    return 0;
  if (cp > 0x10ffff)
    return 0;
  return n;
}

static int ref_valid(const uint8_t *s, size_t len) {
  size_t i = 0, n;
  while (i < len) {
    n = ref_one(s + i, len - i);
    if (n == 0)
      return 0;
    i += n;
  }
  return 1;
}

static void check(const uint8_t *s, size_t len) {
  int want = ref_valid(s, len);
  int got = cfd_utf8_valid(s, len);
  if (want != got) {
    print_error("mismatch len %zu: %02x %02x %02x %02x want %d\n", len,
                len > 0 ? s[0] : 0, len > 1 ? s[1] : 0, len > 2 ? s[2] : 0,
                len > 3 ? s[3] : 0, want);
  }
  assert_int_equal(got, want);
}

static void test_empty(void **state) {
  (void)state;
  assert_int_equal(cfd_utf8_valid(NULL, 0), 1);
}

static void test_all_short(void **state) {
  uint8_t b[3];
  unsigned a, c, d;
  (void)state;
  for (a = 0; a < 256; a++) {
    b[0] = (uint8_t)a;
    check(b, 1);
    for (c = 0; c < 256; c++) {
      b[1] = (uint8_t)c;
      check(b, 2);
      for (d = 0; d < 256; d++) {
        b[2] = (uint8_t)d;
        check(b, 3);
      }
    }
  }
}

static void test_four_byte(void **state) {
  static const uint8_t tails[] = {0x00, 0x7f, 0x80, 0x8f, 0x90,
                                  0xbf, 0xc0, 0xff};
  uint8_t b[4];
  unsigned a, c, i, j;
  (void)state;
  for (a = 0xe0; a < 0x100; a++) {
    b[0] = (uint8_t)a;
    for (c = 0; c < 256; c++) {
      b[1] = (uint8_t)c;
      for (i = 0; i < sizeof(tails); i++) {
        b[2] = tails[i];
        for (j = 0; j < sizeof(tails); j++) {
          b[3] = tails[j];
          check(b, 4);
        }
      }
    }
  }
}

static void test_known(void **state) {
  static const char *good[] = {
      "hello", "h\xc3\xa9llo", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
      "\xf4\x8f\xbf\xbf", "\xef\xbf\xbf", "\xed\x9f\xbf",
      "a long ascii run that crosses several words...\xc3\xa9!"};
  static const char *bad[] = {
      "\xc0\x80",         /* overlong NUL */
      "\xe0\x80\xaf",     /* overlong '/' */
      "\xed\xa0\x80",     /* U+D800 */
      "\xed\xbf\xbf",     /* U+DFFF */
      "\xf4\x90\x80\x80", /* U+110000 */
      "\xf5\x80\x80\x80", "\xff", "\x80", "abc\xe2\x82",
      "12345678\xc3"};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
    assert_int_equal(
        cfd_utf8_valid((const uint8_t *)good[i], strlen(good[i])), 1);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(
        cfd_utf8_valid((const uint8_t *)bad[i], strlen(bad[i])), 0);
}

/* Inputs end right before an unreadable page: an over-read crashes. */
static void test_guard_page(void **state) {
  static const char *in[] = {"abcdefghijklmno", "\xe2\x82", "\xf0\x9f\x98",
                             "x\xc3", "\xe2\x82\xac"};
  long pg = sysconf(_SC_PAGESIZE);
  uint8_t *map;
  size_t i, n;
  (void)state;
  map = mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(mprotect(map + pg, (size_t)pg, PROT_NONE), 0);
  for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
    n = strlen(in[i]);
    memcpy(map + pg - n, in[i], n);
    check(map + pg - n, n);
  }
  munmap(map, (size_t)pg * 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty),
      cmocka_unit_test(test_known),
      cmocka_unit_test(test_all_short),
      cmocka_unit_test(test_four_byte),
      cmocka_unit_test(test_guard_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
