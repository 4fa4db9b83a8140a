/*
 * Per-origin reorder window; see cf_sqs_reorder.h.
 *
 * Layout. Origins live in a small hash table (chained, power-of-two
 * buckets) and on an LRU list. Each keeps its held envelopes in an array
 * sorted by seq, with their arrival times. Envelopes that became
 * deliverable move to one ring shared by all origins, from which pop
 * takes them in the order they became ready.
 *
 * The ring always has room for every envelope held anywhere plus the
 * one being pushed: push reserves it before changing anything, so the
 * moves from held to ready (drain, skip, eviction) never allocate and
 * pop never fails.
 */
#include "cf_sqs_reorder.h"

#include <string.h>

#include "cf_envelope.h"
#include "cf_list.h"
#include "cf_mem.h"

#define RO_WINDOW_DEFAULT 0.5
#define RO_WINDOW_MAX 3600.0
#define RO_HELD_DEFAULT 256u
#define RO_ORIGINS_DEFAULT 1024u
#define RO_BYTES_DEFAULT ((size_t)16 * 1024 * 1024)
#define RO_RING_MIN 16u

typedef struct held {
  cf_envelope *env;
  double since; /* arrival time */
} held;

typedef struct rorigin {
  cf_list hlink;  /* in its bucket */
  cf_list lru;    /* in ro->lru, most recently heard first */
  cf_list wait;   /* in ro->waiting while n > 0 */
  uint64_t origin;
  uint64_t next;  /* next seq to deliver; 0 while unknown */
  held *h;        /* sorted by seq, n used of cap */
  size_t n, cap;
  size_t bytes;   /* of the held envelopes */
  double since;   /* earliest arrival among h; valid when n > 0 */
} rorigin;

struct cf__sqs_reorder {
  cf_mem mem;
  cf__sqs_reorder_limits lim;
  cf_list *buckets;
  size_t nbuckets;        /* power of two */
  cf_list lru;
  cf_list waiting;
  size_t norigins;
  cf_envelope **ring;     /* ready envelopes */
  size_t rhead, rn, rcap;
  size_t nheld;           /* envelopes held by all origins */
  size_t hbytes, rbytes;  /* bytes held / ready */
  cf__sqs_reorder_stats st;
};

/* --- small helpers --------------------------------------------------- */

static size_t env_size(const cf_envelope *e) {
  /* The decoder's single block: struct, room, data and two NULs. */
  return sizeof(*e) + e->room_len + e->len + 2;
}

static size_t bucket_of(const cf__sqs_reorder *ro, uint64_t origin) {
  /* Ids are random, but mixing keeps a crafted set from sharing one. */
  uint64_t h = origin * 0x9e3779b97f4a7c15ull;

  return (size_t)(h ^ (h >> 29)) & (ro->nbuckets - 1);
}

static rorigin *origin_find(cf__sqs_reorder *ro, uint64_t origin) {
  cf_list *b = &ro->buckets[bucket_of(ro, origin)], *n;

  for (n = b->next; n != b; n = n->next) {
    rorigin *o = cf_container_of(n, rorigin, hlink);
    if (o->origin == origin)
      return o;
  }
  return NULL;
}

/* The caller reserved ring room (see the file comment). */
static void ready_push(cf__sqs_reorder *ro, cf_envelope *e) {
  size_t bytes = env_size(e);

  ro->ring[(ro->rhead + ro->rn) % ro->rcap] = e;
  ro->rn++;
  ro->rbytes += bytes;
}

static int ring_reserve(cf__sqs_reorder *ro, size_t need) {
  cf_envelope **r;
  size_t cap, i;

  if (ro->rcap >= need)
    return CF_OK;
  cap = ro->rcap * 2 > need ? ro->rcap * 2 : need;
  if (cap < RO_RING_MIN)
    cap = RO_RING_MIN;
  r = cf__calloc(&ro->mem, cap, sizeof(*r));
  if (r == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < ro->rn; i++)
    r[i] = ro->ring[(ro->rhead + i) % ro->rcap];
  cf__free(&ro->mem, ro->ring);
  ro->ring = r;
  ro->rcap = cap;
  ro->rhead = 0;
  return CF_OK;
}

/* --- one origin ------------------------------------------------------ */

static void origin_recompute_since(rorigin *o) {
  size_t i;

  o->since = o->n ? o->h[0].since : 0.0;
  for (i = 1; i < o->n; i++)
    if (o->h[i].since < o->since)
      o->since = o->h[i].since;
}

/* Moves h[0] to the ready ring. */
static void origin_release_first(cf__sqs_reorder *ro, rorigin *o) {
  cf_envelope *e = o->h[0].env;
  size_t bytes = env_size(e);

  o->n--;
  memmove(&o->h[0], &o->h[1], o->n * sizeof(o->h[0]));
  o->bytes -= bytes;
  ro->hbytes -= bytes;
  ro->nheld--;
  o->next = e->seq + 1;
  ready_push(ro, e);
}

/* Keeps o on the waiting list exactly while it holds something. */
static void origin_update_wait(cf__sqs_reorder *ro, rorigin *o) {
  if (o->n == 0) {
    cf_list_remove(&o->wait);
    return;
  }
  origin_recompute_since(o);
  if (!cf_list_linked(&o->wait))
    cf_list_append(&ro->waiting, &o->wait);
}

/* Releases the held envelopes that follow o->next without a gap. */
static void origin_drain(cf__sqs_reorder *ro, rorigin *o) {
  size_t before = o->n;

  while (o->n > 0 && o->next != 0 && o->h[0].env->seq == o->next)
    origin_release_first(ro, o);
  if (o->n != before)
    origin_update_wait(ro, o);
}

/* Gives up on the gap before the lowest held seq. */
static void origin_skip(cf__sqs_reorder *ro, rorigin *o) {
  uint64_t first;

  if (o->n == 0)
    return;
  first = o->h[0].env->seq;
  /* An unknown start is not a loss we can count. */
  if (o->next != 0 && first > o->next)
    ro->st.skipped += first - o->next;
  o->next = first;
  origin_drain(ro, o);
}

static void origin_free(cf__sqs_reorder *ro, rorigin *o) {
  size_t i;

  for (i = 0; i < o->n; i++)
    cf__envelope_free(o->h[i].env, &ro->mem);
  ro->nheld -= o->n;
  ro->hbytes -= o->bytes;
  cf_list_remove(&o->hlink);
  cf_list_remove(&o->lru);
  cf_list_remove(&o->wait);
  cf__free(&ro->mem, o->h);
  cf__free(&ro->mem, o);
  ro->norigins--;
}

/* Forgets o, first making everything it holds ready in seq order. */
static void origin_evict(cf__sqs_reorder *ro, rorigin *o) {
  while (o->n > 0)
    origin_skip(ro, o);
  ro->st.evicted++;
  origin_free(ro, o);
}

static rorigin *origin_new(cf__sqs_reorder *ro, uint64_t origin) {
  rorigin *o = cf__calloc(&ro->mem, 1, sizeof(*o));

  if (o == NULL)
    return NULL;
  if (ro->norigins >= ro->lim.max_origins && !cf_list_empty(&ro->lru))
    origin_evict(ro, cf_container_of(ro->lru.prev, rorigin, lru));
  o->origin = origin;
  cf_list_init(&o->wait);
  cf_list_append(&ro->buckets[bucket_of(ro, origin)], &o->hlink);
  cf_list_insert_before(ro->lru.next, &o->lru);
  ro->norigins++;
  return o;
}

/* Index where seq belongs in o->h; *found set when it is there. */
static size_t held_search(const rorigin *o, uint64_t seq, int *found) {
  size_t lo = 0, hi = o->n;

  *found = 0;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    uint64_t s = o->h[mid].env->seq;
    if (s == seq) {
      *found = 1;
      return mid;
    }
    if (s < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static int held_insert(cf__sqs_reorder *ro, rorigin *o, cf_envelope *e,
                       double now) {
  int found;
  size_t i = held_search(o, e->seq, &found), bytes = env_size(e);

  if (found)
    return CF_ERR_EXISTS;
  if (o->n == o->cap) {
    /* One over max_held is allowed for a moment: push then skips. */
    size_t cap = o->cap ? o->cap * 2 : 4;
    held *h;
    if (cap > ro->lim.max_held + 1)
      cap = ro->lim.max_held + 1;
    if (cap <= o->n)
      return CF_ERR_NOMEM; /* not reached: push skips at max_held + 1 */
    h = cf__realloc(&ro->mem, o->h, cap * sizeof(*h));
    if (h == NULL)
      return CF_ERR_NOMEM;
    o->h = h;
    o->cap = cap;
  }
  memmove(&o->h[i + 1], &o->h[i], (o->n - i) * sizeof(o->h[0]));
  o->h[i].env = e;
  o->h[i].since = now;
  o->n++;
  o->bytes += bytes;
  ro->hbytes += bytes;
  ro->nheld++;
  return CF_OK;
}

/* The waiting origin whose oldest envelope arrived first. */
static rorigin *oldest_waiting(cf__sqs_reorder *ro) {
  rorigin *best = NULL;
  cf_list *n;

  for (n = ro->waiting.next; n != &ro->waiting; n = n->next) {
    rorigin *o = cf_container_of(n, rorigin, wait);
    if (best == NULL || o->since < best->since)
      best = o;
  }
  return best;
}

static void enforce_bounds(cf__sqs_reorder *ro, rorigin *o) {
  rorigin *w;

  if (o->n > ro->lim.max_held) {
    ro->st.forced++;
    origin_skip(ro, o);
  }
  while (ro->hbytes > ro->lim.max_bytes &&
         (w = oldest_waiting(ro)) != NULL) {
    ro->st.forced++;
    origin_skip(ro, w);
  }
}

/* --- public ---------------------------------------------------------- */

static int limits_set(cf__sqs_reorder_limits *l,
                      const cf__sqs_reorder_limits *in) {
  cf__sqs_reorder_limits z = {0};

  if (in == NULL)
    in = &z;
  *l = *in;
  if (l->window == 0.0)
    l->window = RO_WINDOW_DEFAULT;
  if (!(l->window > 0.0 && l->window <= RO_WINDOW_MAX))
    return CF_ERR_INVALID;
  if (l->max_held == 0)
    l->max_held = RO_HELD_DEFAULT;
  if (l->max_origins == 0)
    l->max_origins = RO_ORIGINS_DEFAULT;
  if (l->max_bytes == 0)
    l->max_bytes = RO_BYTES_DEFAULT;
  return CF_OK;
}

int cf__sqs_reorder_new(cf__sqs_reorder **out,
                        const cf__sqs_reorder_limits *lim,
                        const cf_mem *mem) {
  cf__sqs_reorder *ro;
  cf_mem m;
  size_t i, nb = 16;
  int rv;

  if (out == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  cf__mem_init(&m, mem);
  ro = cf__calloc(&m, 1, sizeof(*ro));
  if (ro == NULL)
    return CF_ERR_NOMEM;
  ro->mem = m;
  rv = limits_set(&ro->lim, lim);
  if (rv != CF_OK) {
    cf__free(&m, ro);
    return rv;
  }
  while (nb < ro->lim.max_origins && nb < 65536)
    nb *= 2;
  ro->buckets = cf__calloc(&m, nb, sizeof(*ro->buckets));
  if (ro->buckets == NULL) {
    cf__free(&m, ro);
    return CF_ERR_NOMEM;
  }
  ro->nbuckets = nb;
  for (i = 0; i < nb; i++)
    cf_list_init(&ro->buckets[i]);
  cf_list_init(&ro->lru);
  cf_list_init(&ro->waiting);
  *out = ro;
  return CF_OK;
}

void cf__sqs_reorder_free(cf__sqs_reorder *ro) {
  cf_mem mem;

  if (ro == NULL)
    return;
  mem = ro->mem;
  while (!cf_list_empty(&ro->lru))
    origin_free(ro, cf_container_of(ro->lru.next, rorigin, lru));
  while (ro->rn > 0) {
    cf__envelope_free(ro->ring[ro->rhead], &mem);
    ro->rhead = (ro->rhead + 1) % ro->rcap;
    ro->rn--;
  }
  cf__free(&mem, ro->ring);
  cf__free(&mem, ro->buckets);
  cf__free(&mem, ro);
}

/* Finds or makes o's entry and marks it most recently heard. */
static rorigin *origin_touch(cf__sqs_reorder *ro, uint64_t origin,
                             int *created) {
  rorigin *o = origin_find(ro, origin);

  *created = 0;
  if (o == NULL) {
    o = origin_new(ro, origin);
    *created = o != NULL;
    return o;
  }
  cf_list_remove(&o->lru);
  cf_list_insert_before(ro->lru.next, &o->lru);
  return o;
}

int cf__sqs_reorder_push(cf__sqs_reorder *ro, cf_envelope *env, double now) {
  rorigin *o;
  int created, rv;

  if (ro == NULL || env == NULL || env->origin == 0 || env->seq == 0)
    return CF_ERR_INVALID;
  if (ring_reserve(ro, ro->rn + ro->nheld + 1) != CF_OK)
    return CF_ERR_NOMEM;
  o = origin_find(ro, env->origin);
  if (o != NULL && o->next != 0 && env->seq < o->next) {
    /*
     * Below next: either skipped (SQS redelivery after a visibility
     * timeout, SNS lag) or a copy of one delivered. Telling them apart
     * would mean remembering every skipped seq; instead it goes out at
     * once, out of order, and the hub's (origin, seq) dedupe drops the
     * true duplicates. Losing a skipped message would be worse.
     */
    ro->st.late++;
    cf_list_remove(&o->lru);
    cf_list_insert_before(ro->lru.next, &o->lru);
    ready_push(ro, env);
    return CF_OK;
  }
  o = origin_touch(ro, env->origin, &created);
  if (o == NULL)
    return CF_ERR_NOMEM;
  rv = held_insert(ro, o, env, now);
  if (rv != CF_OK) {
    if (rv == CF_ERR_EXISTS)
      ro->st.refused++;
    if (created)
      origin_free(ro, o);
    return rv;
  }
  /* Seq 1 has no predecessor to wait for. */
  if (o->next == 0 && env->seq == 1)
    o->next = 1;
  origin_update_wait(ro, o);
  origin_drain(ro, o);
  enforce_bounds(ro, o);
  return CF_OK;
}

static void expire(cf__sqs_reorder *ro, double now) {
  cf_list *n, *next;

  for (n = ro->waiting.next; n != &ro->waiting; n = next) {
    rorigin *o = cf_container_of(n, rorigin, wait);
    /* A skip may unlink o (never another origin), so step first. */
    next = n->next;
    if (o->since + ro->lim.window <= now)
      origin_skip(ro, o);
  }
}

cf_envelope *cf__sqs_reorder_pop(cf__sqs_reorder *ro, double now) {
  cf_envelope *e;

  if (ro == NULL)
    return NULL;
  if (ro->rn == 0)
    expire(ro, now);
  if (ro->rn == 0)
    return NULL;
  e = ro->ring[ro->rhead];
  ro->rhead = (ro->rhead + 1) % ro->rcap;
  ro->rn--;
  ro->rbytes -= env_size(e);
  return e;
}

double cf__sqs_reorder_deadline(const cf__sqs_reorder *ro) {
  double best = -1.0;
  const cf_list *n;

  if (ro == NULL)
    return -1.0;
  for (n = ro->waiting.next; n != &ro->waiting; n = n->next) {
    const rorigin *o = cf_container_of(n, rorigin, wait);
    double d = o->since + ro->lim.window;
    if (best < 0.0 || d < best)
      best = d;
  }
  return best;
}

void cf__sqs_reorder_get_stats(const cf__sqs_reorder *ro,
                               cf__sqs_reorder_stats *st) {
  *st = ro->st;
  st->origins = ro->norigins;
  st->held = ro->nheld + ro->rn;
  st->bytes = ro->hbytes + ro->rbytes;
}
