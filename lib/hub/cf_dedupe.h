/*
 * Internal: the set of recently seen message ids (origin, seq), bounded
 * to `window` ids with first-in first-out eviction. An open-addressing
 * hash table (linear probing, at most half full) answers lookups; a ring
 * of the same ids in insertion order says which one to evict. Both are
 * allocated on first use and never grow.
 */
#ifndef CF_DEDUPE_H
#define CF_DEDUPE_H

#include <chatfanout/cf_common.h>

typedef struct cf_dedupe_id {
  uint64_t origin; /* never 0 for a stored id; 0 marks a free slot */
  uint64_t seq;
} cf_dedupe_id;

typedef struct cf_dedupe {
  cf_dedupe_id *slots; /* mask + 1 slots; NULL until reserved */
  cf_dedupe_id *order; /* window ids, oldest at head */
  uint32_t mask;       /* table size - 1 (a power of two minus one) */
  uint32_t window;     /* ids kept, >= 1 */
  uint32_t head;       /* oldest entry of order */
  uint32_t count;      /* ids stored, <= window */
  uint64_t seed;       /* hash key */
} cf_dedupe;

/* Largest window accepted (the table then takes 2^26 * 16 bytes). */
#define CF_DEDUPE_WINDOW_MAX (1u << 24)

/* window must be 1..CF_DEDUPE_WINDOW_MAX. Allocates nothing. */
void cf__dedupe_init(cf_dedupe *d, uint32_t window, uint64_t seed);
void cf__dedupe_deinit(cf_dedupe *d, const cf_mem *mem);

/* Allocates the table if not yet done: CF_OK or CF_ERR_NOMEM. */
int cf__dedupe_reserve(cf_dedupe *d, const cf_mem *mem);

/* Nonzero when (origin, seq) is in the set. origin must not be 0. */
int cf__dedupe_has(const cf_dedupe *d, uint64_t origin, uint64_t seq);

/*
 * Adds (origin, seq), evicting the oldest id when the window is full.
 * Does nothing if already present. Needs a successful reserve first.
 */
void cf__dedupe_add(cf_dedupe *d, uint64_t origin, uint64_t seq);

#endif /* CF_DEDUPE_H */
