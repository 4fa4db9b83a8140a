/*
 * Helpers shared by the libFuzzer targets. A broken invariant aborts
 * with a message naming it, so that libFuzzer records the input as a
 * crash; the targets never use assert(), which NDEBUG would remove.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(cond)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,         \
              __LINE__, #cond);                                           \
      abort();                                                            \
    }                                                                     \
  } while (0)

/*
 * A heap copy of exactly n bytes (plus nul_terminate ? 1 : 0), so that
 * ASan reports any read past the end the code under test was given.
 */
static inline char *fuzz_dup(const uint8_t *data, size_t n,
                             int nul_terminate) {
  char *p = calloc(1, n + (nul_terminate ? 1 : 0) + (n == 0));
  if (p == NULL)
    abort();
  if (n > 0)
    memcpy(p, data, n);
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* FUZZ_COMMON_H */
