/* Internal allocator wrappers: every allocation goes through a cf_mem. */
#ifndef CF_MEM_H
#define CF_MEM_H

#include <chatfanout/cf_common.h>

/* Fills dst from src, or with libc wrappers when src is NULL. */
void cf__mem_init(cf_mem *dst, const cf_mem *src);

void *cf__malloc(const cf_mem *m, size_t size);
/* Returns NULL when nmemb * size overflows. */
void *cf__calloc(const cf_mem *m, size_t nmemb, size_t size);
void *cf__realloc(const cf_mem *m, void *ptr, size_t size);
void cf__free(const cf_mem *m, void *ptr);

#endif /* CF_MEM_H */
