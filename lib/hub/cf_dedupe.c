#include "cf_dedupe.h"

#include <string.h>

#include "cf_mem.h"

void cf__dedupe_init(cf_dedupe *d, uint32_t window, uint64_t seed) {
  memset(d, 0, sizeof(*d));
  d->window = window;
  d->seed = seed;
}

void cf__dedupe_deinit(cf_dedupe *d, const cf_mem *mem) {
  cf__free(mem, d->slots);
  cf__free(mem, d->order);
  d->slots = NULL;
  d->order = NULL;
  d->count = 0;
  d->head = 0;
}

int cf__dedupe_reserve(cf_dedupe *d, const cf_mem *mem) {
  size_t size = 2;
  cf_dedupe_id *slots, *order;

  if (d->slots != NULL)
    return CF_OK;
  /* At least twice the window, so probes stay short. */
  while (size < (size_t)d->window * 2)
    size <<= 1;
  slots = cf__calloc(mem, size, sizeof(*slots));
  order = cf__calloc(mem, d->window, sizeof(*order));
  if (slots == NULL || order == NULL) {
    cf__free(mem, slots);
    cf__free(mem, order);
    return CF_ERR_NOMEM;
  }
  d->slots = slots;
  d->order = order;
  d->mask = (uint32_t)(size - 1);
  return CF_OK;
}

/*
 * Keyed mix of the id. Ids come from other instances, so the key keeps a
 * peer from choosing ids that all land in one probe run.
 */
static uint32_t dedupe_hash(const cf_dedupe *d, uint64_t origin,
                            uint64_t seq) {
  uint64_t x = origin ^ d->seed;

  x = (x ^ (x >> 31)) * 0x9e3779b97f4a7c15u;
  x ^= seq + 0x632be59bd9b4e019u + (x << 6) + (x >> 2);
  x = (x ^ (x >> 29)) * 0xbf58476d1ce4e5b9u;
  x ^= x >> 32;
  return (uint32_t)x;
}

/* Slot holding the id, or the free slot that ends its probe run. */
static uint32_t dedupe_find(const cf_dedupe *d, uint64_t origin,
                            uint64_t seq) {
  uint32_t i = dedupe_hash(d, origin, seq) & d->mask;

  while (d->slots[i].origin != 0 &&
         (d->slots[i].origin != origin || d->slots[i].seq != seq))
    i = (i + 1) & d->mask;
  return i;
}

int cf__dedupe_has(const cf_dedupe *d, uint64_t origin, uint64_t seq) {
  if (d->slots == NULL)
    return 0;
  return d->slots[dedupe_find(d, origin, seq)].origin != 0;
}

/*
 * Deletes without tombstones: later members of the probe run move back
 * into the hole when their home slot does not lie between the hole and
 * where they sit, so every id stays reachable from its home slot.
 */
static void dedupe_remove(cf_dedupe *d, uint32_t hole) {
  uint32_t j = hole;

  for (;;) {
    uint32_t home;

    j = (j + 1) & d->mask;
    if (d->slots[j].origin == 0)
      break;
    home = dedupe_hash(d, d->slots[j].origin, d->slots[j].seq) & d->mask;
    if (((j - home) & d->mask) >= ((j - hole) & d->mask)) {
      d->slots[hole] = d->slots[j];
      hole = j;
    }
  }
  d->slots[hole].origin = 0;
  d->slots[hole].seq = 0;
}

static void dedupe_evict_oldest(cf_dedupe *d) {
  cf_dedupe_id old = d->order[d->head];

  dedupe_remove(d, dedupe_find(d, old.origin, old.seq));
  d->head = d->head + 1 == d->window ? 0 : d->head + 1;
  d->count--;
}

void cf__dedupe_add(cf_dedupe *d, uint64_t origin, uint64_t seq) {
  uint32_t i, tail;

  if (d->slots == NULL || origin == 0)
    return;
  i = dedupe_find(d, origin, seq);
  if (d->slots[i].origin != 0)
    return;
  if (d->count == d->window) {
    dedupe_evict_oldest(d);
    /* The removal may have shifted the run; probe again. */
    i = dedupe_find(d, origin, seq);
  }
  d->slots[i].origin = origin;
  d->slots[i].seq = seq;
  tail = d->head + d->count;
  if (tail >= d->window)
    tail -= d->window;
  d->order[tail].origin = origin;
  d->order[tail].seq = seq;
  d->count++;
}
