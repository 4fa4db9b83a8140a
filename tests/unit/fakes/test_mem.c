#include "test_mem.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static int should_fail(test_mem *tm) {
  tm->count++;
  if (tm->fail_at != 0 && tm->count == tm->fail_at) {
    tm->failed = 1;
    return 1;
  }
  return 0;
}

static void *tm_malloc(size_t size, void *ud) {
  test_mem *tm = ud;
  void *p;
  if (should_fail(tm))
    return NULL;
  p = test_malloc(size == 0 ? 1 : size);
  if (p != NULL)
    tm->live++;
  return p;
}

static void tm_free(void *ptr, void *ud) {
  test_mem *tm = ud;
  if (ptr == NULL)
    return;
  tm->live--;
  test_free(ptr);
}

static void *tm_calloc(size_t nmemb, size_t size, void *ud) {
  test_mem *tm = ud;
  void *p;
  if (should_fail(tm))
    return NULL;
  p = test_calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);
  if (p != NULL)
    tm->live++;
  return p;
}

static void *tm_realloc(void *ptr, size_t size, void *ud) {
  test_mem *tm = ud;
  void *p;
  if (should_fail(tm))
    return NULL;
  p = test_realloc(ptr, size == 0 ? 1 : size);
  if (p != NULL && ptr == NULL)
    tm->live++;
  return p;
}

void test_mem_init(test_mem *tm, unsigned long fail_at) {
  memset(tm, 0, sizeof(*tm));
  tm->fail_at = fail_at;
  tm->mem.user_data = tm;
  tm->mem.malloc = tm_malloc;
  tm->mem.free = tm_free;
  tm->mem.calloc = tm_calloc;
  tm->mem.realloc = tm_realloc;
}
