#include "cf_room.h"

#include <stdint.h>
#include <string.h>

#include "cf_mem.h"
#include "cf_msg.h"

#define ROOMS_MIN_BUCKETS 16u
/* Slots of a room's first history ring (fewer if history is smaller). */
#define HIST_MIN_CAP 4u
#define ROOMS_MAX_BUCKETS (1u << 24)

/* --- SipHash-1-3 over the room name --------------------------------- */

static uint64_t rotl64(uint64_t x, int b) {
  return (x << b) | (x >> (64 - b));
}

static void sip_round(uint64_t v[4]) {
  v[0] += v[1];
  v[1] = rotl64(v[1], 13) ^ v[0];
  v[0] = rotl64(v[0], 32);
  v[2] += v[3];
  v[3] = rotl64(v[3], 16) ^ v[2];
  v[0] += v[3];
  v[3] = rotl64(v[3], 21) ^ v[0];
  v[2] += v[1];
  v[1] = rotl64(v[1], 17) ^ v[2];
  v[2] = rotl64(v[2], 32);
}

static uint64_t load_le64(const uint8_t *p, size_t n) {
  uint64_t x = 0;
  size_t i;

  for (i = 0; i < n; i++)
    x |= (uint64_t)p[i] << (8 * i);
  return x;
}

static uint64_t room_hash(const uint64_t key[2], const char *name,
                          size_t len) {
  const uint8_t *p = (const uint8_t *)name;
  uint64_t v[4], m;
  size_t i;

  v[0] = key[0] ^ 0x736f6d6570736575u;
  v[1] = key[1] ^ 0x646f72616e646f6du;
  v[2] = key[0] ^ 0x6c7967656e657261u;
  v[3] = key[1] ^ 0x7465646279746573u;
  for (i = 0; i + 8 <= len; i += 8) {
    m = load_le64(p + i, 8);
    v[3] ^= m;
    sip_round(v);
    v[0] ^= m;
  }
  m = load_le64(p + i, len - i) | ((uint64_t)(len & 0xff) << 56);
  v[3] ^= m;
  sip_round(v);
  v[0] ^= m;
  v[2] ^= 0xff;
  for (i = 0; i < 3; i++)
    sip_round(v);
  return v[0] ^ v[1] ^ v[2] ^ v[3];
}

/* --- Table ------------------------------------------------------------ */

void cf__rooms_init(cf_rooms *t, const cf_mem *mem, uint32_t max,
                    uint32_t history, const uint64_t key[2]) {
  memset(t, 0, sizeof(*t));
  t->mem = mem;
  t->max = max;
  t->history = history;
  t->hist_limit = SIZE_MAX;
  t->key[0] = key[0];
  t->key[1] = key[1];
  cf_list_init(&t->idle);
  cf_list_init(&t->busy);
}

static size_t hist_cost(const cf_msg *m) {
  return cf__msg_wire_len(m) + CF_HIST_ENTRY_COST;
}

static void room_hist_clear(cf_rooms *t, cf_room *r) {
  uint32_t i;

  for (i = 0; i < r->hist_count; i++) {
    cf_msg *m = cf__room_hist_at(t, r, i);

    t->hist_bytes -= hist_cost(m);
    cf_msg_unref(m);
  }
  cf__free(t->mem, r->hist);
  r->hist = NULL;
  r->hist_cap = 0;
  r->hist_count = 0;
  r->hist_head = 0;
}

static void room_free(cf_rooms *t, cf_room *r) {
  room_hist_clear(t, r);
  cf_list_remove(&r->lru_link);
  cf__free(t->mem, r);
}

void cf__rooms_deinit(cf_rooms *t) {
  uint32_t i;

  for (i = 0; i < t->nbuckets; i++) {
    while (t->buckets[i] != NULL) {
      cf_room *r = t->buckets[i];

      t->buckets[i] = r->next;
      room_free(t, r);
    }
  }
  cf__free(t->mem, t->buckets);
  t->buckets = NULL;
  t->nbuckets = 0;
  t->count = 0;
}

int cf__room_name_check(const char *name, size_t len) {
  size_t i;

  if (name == NULL || len == 0 || len > CF_ROOM_MAX)
    return CF_ERR_INVALID;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)name[i];

    if (ch < 0x21 || ch > 0x7e)
      return CF_ERR_INVALID;
  }
  return CF_OK;
}

static cf_room **rooms_chain(const cf_rooms *t, uint64_t hash) {
  return &t->buckets[hash & (t->nbuckets - 1)];
}

cf_room *cf__rooms_find(const cf_rooms *t, const char *name, size_t len) {
  uint64_t hash;
  cf_room *r;

  if (t->nbuckets == 0)
    return NULL;
  hash = room_hash(t->key, name, len);
  for (r = *rooms_chain(t, hash); r != NULL; r = r->next) {
    if (r->hash == hash && r->name_len == len &&
        memcmp(r->name, name, len) == 0)
      return r;
  }
  return NULL;
}

/* Unlinks r from its chain (it must be in the table). */
static void rooms_unlink(cf_rooms *t, cf_room *r) {
  cf_room **pp = rooms_chain(t, r->hash);

  while (*pp != r)
    pp = &(*pp)->next;
  *pp = r->next;
  t->count--;
}

/*
 * Doubles the bucket array. Failure is harmless (chains just get longer),
 * so it is not reported.
 */
static void rooms_grow(cf_rooms *t) {
  uint32_t n = t->nbuckets * 2, i;
  cf_room **b;

  if (n > ROOMS_MAX_BUCKETS)
    return;
  b = cf__calloc(t->mem, n, sizeof(*b));
  if (b == NULL)
    return;
  for (i = 0; i < t->nbuckets; i++) {
    while (t->buckets[i] != NULL) {
      cf_room *r = t->buckets[i];

      t->buckets[i] = r->next;
      r->next = b[r->hash & (n - 1)];
      b[r->hash & (n - 1)] = r;
    }
  }
  cf__free(t->mem, t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

/* Makes sure a new room can be held: allocates buckets, evicts. */
static int rooms_make_space(cf_rooms *t) {
  if (t->buckets == NULL) {
    t->buckets = cf__calloc(t->mem, ROOMS_MIN_BUCKETS, sizeof(*t->buckets));
    if (t->buckets == NULL)
      return CF_ERR_NOMEM;
    t->nbuckets = ROOMS_MIN_BUCKETS;
  }
  if (t->count < t->max)
    return CF_OK;
  if (cf_list_empty(&t->idle))
    return CF_ERR_LIMIT;
  return CF_OK;
}

/* Frees the least recently used idle room (there must be one). */
static void rooms_evict(cf_rooms *t) {
  cf_room *r = cf_container_of(t->idle.next, cf_room, lru_link);

  rooms_unlink(t, r);
  room_free(t, r);
}

int cf__rooms_prepare(cf_rooms *t, int with_hist, cf_room **out) {
  int rv = rooms_make_space(t);
  cf_room *r;

  if (rv != CF_OK)
    return rv;
  r = cf__calloc(t->mem, 1, sizeof(*r));
  if (r == NULL)
    return CF_ERR_NOMEM;
  if (with_hist && cf__room_hist_reserve(t, r) != CF_OK) {
    cf__free(t->mem, r);
    return CF_ERR_NOMEM;
  }
  *out = r;
  return CF_OK;
}

void cf__room_discard(cf_rooms *t, cf_room *r) {
  cf__free(t->mem, r->hist);
  cf__free(t->mem, r);
}

int cf__rooms_insert(cf_rooms *t, cf_room *r, const char *name,
                     size_t len) {
  /* Prepare saw an idle room; re-checked so a broken promise cannot
   * evict from an empty list. */
  if (t->count >= t->max && cf_list_empty(&t->idle))
    return CF_ERR_LIMIT;
  /* Evict only now that allocations worked, so NOMEM changes nothing. */
  if (t->count >= t->max)
    rooms_evict(t);
  if (t->count >= t->nbuckets)
    rooms_grow(t);
  r->hash = room_hash(t->key, name, len);
  cf_list_init(&r->members);
  cf_list_init(&r->lru_link);
  r->name_len = (uint8_t)len;
  memcpy(r->name, name, len);
  r->next = *rooms_chain(t, r->hash);
  *rooms_chain(t, r->hash) = r;
  t->count++;
  return CF_OK;
}

int cf__rooms_open(cf_rooms *t, const char *name, size_t len,
                   int with_hist, cf_room **out) {
  cf_room *r = cf__rooms_find(t, name, len);
  int rv;

  if (r != NULL) {
    *out = r;
    return CF_OK;
  }
  rv = cf__rooms_prepare(t, with_hist, &r);
  if (rv != CF_OK)
    return rv;
  /* Nothing ran since prepare, so the insert cannot fail here. */
  (void)cf__rooms_insert(t, r, name, len);
  *out = r;
  return CF_OK;
}

/* Puts r at the most recently used end of its list, if it has history. */
static void room_touch(cf_rooms *t, cf_room *r) {
  cf_list_remove(&r->lru_link);
  if (r->hist_count != 0)
    cf_list_append(r->nmembers != 0 ? &t->busy : &t->idle, &r->lru_link);
}

int cf__room_settle(cf_rooms *t, cf_room *r) {
  if (r->nmembers == 0 && r->hist_count == 0) {
    rooms_unlink(t, r);
    room_free(t, r);
    return 1;
  }
  room_touch(t, r);
  return 0;
}

/* --- History ----------------------------------------------------------- */

static uint32_t hist_slot(const cf_room *r, uint32_t i) {
  uint32_t s = r->hist_head + i;

  return s >= r->hist_cap ? s - r->hist_cap : s;
}

/*
 * Moves r's entries to a ring of cap slots (>= hist_count), oldest at
 * slot 0. CF_OK or CF_ERR_NOMEM, r then unchanged.
 */
static int hist_resize(cf_rooms *t, cf_room *r, uint32_t cap) {
  cf_msg **ring = cf__calloc(t->mem, cap, sizeof(*ring));
  uint32_t i;

  if (ring == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < r->hist_count; i++)
    ring[i] = r->hist[hist_slot(r, i)];
  cf__free(t->mem, r->hist);
  r->hist = ring;
  r->hist_cap = cap;
  r->hist_head = 0;
  return CF_OK;
}

/*
 * Rings grow by doubling up to `history` slots, so that rooms with few
 * messages do not each hold a ring for the most (up to 2^20 slots).
 */
int cf__room_hist_reserve(cf_rooms *t, cf_room *r) {
  uint32_t cap;

  if (t->history == 0 || r->hist_count < r->hist_cap ||
      r->hist_cap == t->history)
    return CF_OK;
  cap = r->hist_cap != 0 ? r->hist_cap : HIST_MIN_CAP / 2;
  cap = cap > t->history / 2 ? t->history : cap * 2;
  return hist_resize(t, r, cap);
}

/*
 * A ring a quarter full is halved, so that ring memory follows the
 * entries the budget lets a room keep. A failed shrink only keeps the
 * bigger ring; at least a quarter of its slots are in use and paid for.
 */
static void hist_shrink(cf_rooms *t, cf_room *r) {
  uint32_t cap = r->hist_cap / 2;

  if (r->hist_count == 0) {
    cf__free(t->mem, r->hist);
    r->hist = NULL;
    r->hist_cap = 0;
    r->hist_head = 0;
    return;
  }
  if (r->hist_cap > HIST_MIN_CAP && r->hist_count <= r->hist_cap / 4)
    (void)hist_resize(t, r, cap);
}

/* Drops r's oldest entry. */
static void hist_drop_oldest(cf_rooms *t, cf_room *r) {
  cf_msg *m = r->hist[r->hist_head];

  r->hist[r->hist_head] = NULL;
  r->hist_head = hist_slot(r, 1);
  r->hist_count--;
  t->hist_bytes -= hist_cost(m);
  cf_msg_unref(m);
}

/* The room whose history goes first, or NULL when none has any. */
static cf_room *hist_victim(const cf_rooms *t) {
  if (!cf_list_empty(&t->idle))
    return cf_container_of(t->idle.next, cf_room, lru_link);
  if (!cf_list_empty(&t->busy))
    return cf_container_of(t->busy.next, cf_room, lru_link);
  return NULL;
}

/*
 * Drops oldest entries of the least recently used rooms until the table
 * is within its budget. keep (just pushed to) is never emptied: its last
 * entry fits the budget alone, so the loop ends before that anyway.
 */
static void hist_enforce(cf_rooms *t, cf_room *keep) {
  cf_room *r;

  while (t->hist_bytes > t->hist_limit && (r = hist_victim(t)) != NULL) {
    if (r == keep && r->hist_count <= 1)
      break;
    hist_drop_oldest(t, r);
    hist_shrink(t, r);
    if (r->hist_count == 0)
      cf__room_settle(t, r);
  }
}

void cf__room_hist_push(cf_rooms *t, cf_room *r, cf_msg *m) {
  if (t->history == 0 || r->hist == NULL)
    return;
  if (r->hist_count == t->history)
    hist_drop_oldest(t, r);
  r->hist[hist_slot(r, r->hist_count)] = cf_msg_ref(m);
  r->hist_count++;
  t->hist_bytes += hist_cost(m);
  /* First, so that r is the last room the budget takes from. */
  room_touch(t, r);
  hist_enforce(t, r);
}

cf_msg *cf__room_hist_at(const cf_rooms *t, const cf_room *r, uint32_t i) {
  (void)t;
  return r->hist[hist_slot(r, i)];
}

/* --- Members ------------------------------------------------------------ */

void cf__room_add_member(cf_rooms *t, cf_room *r, cf_member *mb) {
  mb->room = r;
  cf_list_append(&r->members, &mb->room_link);
  r->nmembers++;
  cf__room_settle(t, r);
}

void cf__room_remove_member(cf_rooms *t, cf_member *mb) {
  cf_room *r = mb->room;

  cf_list_remove(&mb->room_link);
  r->nmembers--;
  mb->room = NULL;
  cf__room_settle(t, r);
}
