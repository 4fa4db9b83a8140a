/* Errors, version and loop checks, and the allocator wrappers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "cf_mem.h"
#include "fake_loop.h"
#include "test_mem.h"

static const int all_codes[] = {
    CF_OK,          CF_ERR_INVALID,    CF_ERR_TOO_BIG,  CF_ERR_VERSION,
    CF_ERR_LIMIT,   CF_ERR_NOT_FOUND,  CF_ERR_EXISTS,   CF_ERR_STATE,
    CF_ERR_CLOSED,  CF_ERR_NOMEM,      CF_ERR_QUEUE_FULL, CF_ERR_IO,
    CF_ERR_TIMEOUT, CF_ERR_BACKEND,    CF_ERR_PARSE,    CF_ERR_CALLBACK,
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_strerror_every_code(void **state) {
  const char *unknown = cf_strerror(12345);
  size_t i, j;

  (void)state;
  assert_string_equal(unknown, "unknown error");
  assert_string_equal(cf_strerror(CF_OK), "success");
  for (i = 0; i < NCODES; i++) {
    const char *s = cf_strerror(all_codes[i]);

    assert_non_null(s);
    assert_true(strlen(s) > 0);
    /* Every known code has its own text, not the fallback. */
    assert_string_not_equal(s, unknown);
    for (j = 0; j < i; j++)
      assert_string_not_equal(s, cf_strerror(all_codes[j]));
  }
  assert_string_equal(cf_strerror(CF_ERR_FATAL), unknown);
  assert_string_equal(cf_strerror(-1), unknown);
  assert_string_equal(cf_strerror(1), unknown);
}

static void test_is_fatal(void **state) {
  size_t i;

  (void)state;
  for (i = 0; i < NCODES; i++)
    assert_int_equal(cf_is_fatal(all_codes[i]) != 0,
                     all_codes[i] == CF_ERR_CALLBACK);
  assert_false(cf_is_fatal(CF_ERR_FATAL));
  assert_true(cf_is_fatal(CF_ERR_FATAL - 1));
  assert_true(cf_is_fatal(-5000));
  assert_false(cf_is_fatal(0));
}

static void test_version(void **state) {
  char buf[32];

  (void)state;
  assert_int_equal(cf_version(), CF_VERSION_HEX);
  assert_int_equal(cf_version() >> 16, CF_VERSION_MAJOR);
  assert_int_equal((cf_version() >> 8) & 0xff, CF_VERSION_MINOR);
  assert_int_equal(cf_version() & 0xff, CF_VERSION_PATCH);
  snprintf(buf, sizeof(buf), "%d.%d.%d", CF_VERSION_MAJOR, CF_VERSION_MINOR,
           CF_VERSION_PATCH);
  assert_string_equal(cf_version_string(), buf);
  assert_string_equal(cf_version_string(), CF_VERSION_STRING);
}

static void test_loop_check(void **state) {
  fake_loop fl;
  cf_loop l;

  (void)state;
  fake_loop_init(&fl);
  assert_int_equal(cf_loop_check(NULL), CF_ERR_INVALID);
  assert_int_equal(cf_loop_check(&fl.loop), CF_OK);

  l = fl.loop;
  l.version = CF_LOOP_VERSION + 1;
  assert_int_equal(cf_loop_check(&l), CF_ERR_VERSION);
  l.version = 0;
  assert_int_equal(cf_loop_check(&l), CF_ERR_VERSION);

#define MISSING(hook)                                   \
  do {                                                  \
    l = fl.loop;                                        \
    l.hook = NULL;                                      \
    assert_int_equal(cf_loop_check(&l), CF_ERR_INVALID); \
  } while (0)
  MISSING(io_new);
  MISSING(io_set);
  MISSING(io_free);
  MISSING(timer_new);
  MISSING(timer_set);
  MISSING(timer_free);
  MISSING(now);
#undef MISSING
}

static void test_mem_wrappers(void **state) {
  test_mem tm;
  cf_mem libc, m;
  void *p;

  (void)state;
  cf__mem_init(&libc, NULL);
  p = cf__malloc(&libc, 16);
  assert_non_null(p);
  p = cf__realloc(&libc, p, 64);
  assert_non_null(p);
  cf__free(&libc, p);
  cf__free(&libc, NULL);
  /* An overflowing product is refused before any allocator sees it. */
  assert_null(cf__calloc(&libc, SIZE_MAX / 2, 3));

  test_mem_init(&tm, 0);
  cf__mem_init(&m, &tm.mem);
  assert_ptr_equal(m.user_data, &tm);
  p = cf__calloc(&m, 4, 4);
  assert_non_null(p);
  assert_memory_equal(p, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  assert_null(cf__calloc(&m, SIZE_MAX / 8, 16));
  assert_int_equal(tm.count, 1);
  cf__free(&m, p);
  assert_int_equal(tm.live, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_strerror_every_code),
      cmocka_unit_test(test_is_fatal),
      cmocka_unit_test(test_version),
      cmocka_unit_test(test_loop_check),
      cmocka_unit_test(test_mem_wrappers),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
