/*
 * Test allocator: routes a cf_mem to cmocka's checked allocator, so a
 * leak fails the test, and can fail the Nth allocation for failure sweeps.
 *
 *   test_mem tm;
 *   test_mem_init(&tm, 0);       (0: never fail)
 *   cfg.mem = &tm.mem;
 *   ...
 *   for (n = 1; ; n++) {         (a sweep)
 *     test_mem_init(&tm, n);
 *     run_scenario(&tm.mem);     (must cope with CF_ERR_NOMEM, not leak)
 *     if (!tm.failed) break;     (scenario needed fewer than n allocs)
 *   }
 */
#ifndef TEST_MEM_H
#define TEST_MEM_H

#include <chatfanout/cf_common.h>

typedef struct test_mem {
  cf_mem mem;
  unsigned long fail_at; /* 1-based allocation that fails; 0 never */
  unsigned long count;   /* allocations attempted so far */
  int failed;            /* set once an allocation was failed */
  unsigned long live;    /* allocations not yet freed */
} test_mem;

void test_mem_init(test_mem *tm, unsigned long fail_at);

#endif /* TEST_MEM_H */
