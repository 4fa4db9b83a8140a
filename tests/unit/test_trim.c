/*
 * cfd_trim: the decision, and the real effect on this process: memory
 * freed in the middle of the heap (so glibc cannot shrink the top) is
 * given back by a check, and only when enough has piled up.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cfd_log.h"
#include "cfd_trim.h"

#define MIB ((size_t)1 << 20)
#define CHUNKS 40000
#define CHUNK 1024

static void test_due(void **state) {
  const size_t g = CFD_TRIM_GROWTH, base = 10 * MIB;
  (void)state;
  assert_false(cfd_trim_due(base, base, 100 * MIB));
  assert_false(cfd_trim_due(base, base + g - 1, 100 * MIB));
  assert_true(cfd_trim_due(base, base + g, g));
  assert_false(cfd_trim_due(base, base + 100 * MIB, g)); /* in use */
  assert_false(cfd_trim_due(base + g, base, 100 * MIB));
  /* A big heap that churns: free but a small share of it. */
  assert_false(cfd_trim_due(1000 * MIB, 1100 * MIB, 200 * MIB));
  assert_true(cfd_trim_due(1000 * MIB, 1100 * MIB, 300 * MIB));
}

static size_t rss_kib(void) {
  char line[128];
  size_t kib = 0;
  FILE *f = fopen("/proc/self/status", "r");
  assert_non_null(f);
  while (fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmRSS: %zu kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

static void test_gives_back(void **state) {
  static char *p[CHUNKS];
  cfd_trim t;
  char *keep;
  size_t i, before, held;
  (void)state;
#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
  skip(); /* ASan's allocator (or none from glibc): nothing to trim */
#endif
  memset(&t, 0, sizeof(t));
  t.base = 0;
  /* Nothing piled up: growth alone is not enough. */
  cfd_trim_check(&t);
  assert_int_equal(t.trims, 0);
  for (i = 0; i < CHUNKS; i++) {
    p[i] = malloc(CHUNK);
    assert_non_null(p[i]);
    memset(p[i], 0x5a, CHUNK);
  }
  keep = malloc(CHUNK); /* above them all: the top cannot shrink */
  assert_non_null(keep);
  for (i = 0; i < CHUNKS; i++)
    free(p[i]);
  before = rss_kib();
  held = (size_t)CHUNKS * CHUNK / 1024;
  t.base = 0; /* as if RSS had been low at the last check */
  assert_int_equal(cfd_trim_check(&t), 1);
  assert_int_equal(t.trims, 1);
  assert_true(rss_kib() + held / 2 < before);
  /* Just trimmed: the next check finds no growth. */
  assert_int_equal(cfd_trim_check(&t), 0);
  assert_int_equal(t.trims, 1);
  free(keep);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_due),
      cmocka_unit_test(test_gives_back),
  };
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
