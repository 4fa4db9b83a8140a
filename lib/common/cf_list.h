/*
 * Internal intrusive doubly linked list with a sentinel head, after the
 * wl_list idea: nodes live inside the objects, container-of gets them
 * back. An unlinked node points at itself, so removal is idempotent.
 */
#ifndef CF_LIST_H
#define CF_LIST_H

#include <stddef.h>

typedef struct cf_list {
  struct cf_list *prev;
  struct cf_list *next;
} cf_list;

#define cf_container_of(ptr, type, member) \
  ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void cf_list_init(cf_list *l) {
  l->prev = l;
  l->next = l;
}

static inline int cf_list_empty(const cf_list *l) {
  return l->next == l;
}

/* Inserts n before pos (at the tail when pos is the head). */
static inline void cf_list_insert_before(cf_list *pos, cf_list *n) {
  n->prev = pos->prev;
  n->next = pos;
  pos->prev->next = n;
  pos->prev = n;
}

static inline void cf_list_append(cf_list *head, cf_list *n) {
  cf_list_insert_before(head, n);
}

static inline void cf_list_remove(cf_list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  cf_list_init(n);
}

static inline int cf_list_linked(const cf_list *n) {
  return n->next != n;
}

#endif /* CF_LIST_H */
