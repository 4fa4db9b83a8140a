#include "cf_mem.h"

#include <stdlib.h>

static void *libc_malloc(size_t size, void *ud) {
  (void)ud;
  return malloc(size);
}

static void libc_free(void *ptr, void *ud) {
  (void)ud;
  free(ptr);
}

static void *libc_calloc(size_t nmemb, size_t size, void *ud) {
  (void)ud;
  return calloc(nmemb, size);
}

static void *libc_realloc(void *ptr, size_t size, void *ud) {
  (void)ud;
  return realloc(ptr, size);
}

void cf__mem_init(cf_mem *dst, const cf_mem *src) {
  if (src != NULL) {
    *dst = *src;
    return;
  }
  dst->user_data = NULL;
  dst->malloc = libc_malloc;
  dst->free = libc_free;
  dst->calloc = libc_calloc;
  dst->realloc = libc_realloc;
}

void *cf__malloc(const cf_mem *m, size_t size) {
  return m->malloc(size, m->user_data);
}

void *cf__calloc(const cf_mem *m, size_t nmemb, size_t size) {
  /* Custom allocators are not trusted to check the product. */
  if (size != 0 && nmemb > SIZE_MAX / size)
    return NULL;
  return m->calloc(nmemb, size, m->user_data);
}

void *cf__realloc(const cf_mem *m, void *ptr, size_t size) {
  return m->realloc(ptr, size, m->user_data);
}

void cf__free(const cf_mem *m, void *ptr) {
  m->free(ptr, m->user_data);
}
