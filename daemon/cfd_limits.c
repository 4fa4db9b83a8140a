#include "cfd_limits.h"

#include <stdlib.h>
#include <string.h>

#define LIMITS_WINDOW 16u   /* slots an address may sit in */
#define LIMITS_MIN_SLOTS 64u
#define LIMITS_MAX_SLOTS ((size_t)1 << 20) /* 40 MiB of entries */

/* --- token bucket -------------------------------------------------------- */

void cfd_bucket_init(cfd_bucket *b, double burst, double now) {
  b->tokens = burst;
  b->last = now;
}

static void bucket_refill(cfd_bucket *b, double rate, double burst,
                          double now) {
  if (now > b->last) {
    b->tokens += (now - b->last) * rate;
    if (b->tokens > burst)
      b->tokens = burst;
  }
  /* Backwards or not, `last` follows now so time is never counted twice. */
  b->last = now;
}

int cfd_bucket_take(cfd_bucket *b, double rate, double burst, double now) {
  if (rate <= 0)
    return 1;
  bucket_refill(b, rate, burst, now);
  if (b->tokens < 1.0)
    return 0;
  b->tokens -= 1.0;
  return 1;
}

double cfd_bucket_wait(const cfd_bucket *b, double rate, double burst,
                       double now) {
  cfd_bucket t = *b;
  bucket_refill(&t, rate, burst, now);
  return t.tokens >= 1.0 ? 0. : (1.0 - t.tokens) / rate;
}

/* --- per address ------------------------------------------------------- */

typedef struct ip_entry {
  uint8_t key[16];   /* v4: the address then zeros; v6: the /64 */
  uint8_t used;
  uint32_t conns;    /* open connections counted */
  cfd_bucket bucket; /* new connections */
} ip_entry;

struct cfd_limits {
  cfd_limits_config cfg;
  size_t mask;       /* slots - 1 */
  size_t entries;    /* used slots */
  uint64_t untracked;
  ip_entry *slot;
};

static size_t slots_round(size_t n) {
  size_t s = LIMITS_MIN_SLOTS;
  while (s < n && s < LIMITS_MAX_SLOTS)
    s <<= 1;
  return s;
}

cfd_limits *cfd_limits_new(const cfd_limits_config *cfg) {
  cfd_limits *l = calloc(1, sizeof(*l));
  if (l == NULL)
    return NULL;
  l->cfg = *cfg;
  if (l->cfg.burst < 1.0)
    l->cfg.burst = 1.0;
  l->mask = slots_round(cfg->slots) - 1;
  l->slot = calloc(l->mask + 1, sizeof(*l->slot));
  if (l->slot == NULL) {
    free(l);
    return NULL;
  }
  return l;
}

void cfd_limits_free(cfd_limits *l) {
  if (l == NULL)
    return;
  free(l->slot);
  free(l);
}

static int v4_mapped(const uint8_t *a) {
  static const uint8_t pre[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, pre, sizeof(pre)) == 0;
}

static int is_loopback(const cfd_peer *p) {
  static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 1};
  if (p->family == 4)
    return p->addr[0] == 127;
  return memcmp(p->addr, one, 16) == 0 ||
         (v4_mapped(p->addr) && p->addr[12] == 127);
}

/*
 * The key of p's address: IPv4 (also as v4-mapped IPv6, as a dual-stack
 * listener sees it) whole, IPv6 by its /64. 0, or -1 for no address.
 */
static int ip_key(const cfd_peer *p, uint8_t key[16]) {
  memset(key, 0, 16);
  if (p->family == 4) {
    memcpy(key, p->addr, 4);
    return 0;
  }
  if (p->family != 6)
    return -1;
  if (v4_mapped(p->addr)) {
    memcpy(key, p->addr + 12, 4);
    return 0;
  }
  memcpy(key, p->addr, 8);
  key[15] = 6; /* apart from every IPv4 key */
  return 0;
}

static uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9u;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/* Keyed with the random seed, so an attacker cannot pick colliding
 * addresses without seeing the table's behaviour from outside. */
static size_t ip_hash(const cfd_limits *l, const uint8_t key[16]) {
  uint64_t a, b;
  memcpy(&a, key, 8);
  memcpy(&b, key + 8, 8);
  return (size_t)mix64(mix64(a ^ l->cfg.seed[0]) ^ b ^ l->cfg.seed[1]);
}

static ip_entry *ip_find(cfd_limits *l, const uint8_t key[16]) {
  size_t h = ip_hash(l, key), i;
  for (i = 0; i < LIMITS_WINDOW; i++) {
    ip_entry *e = &l->slot[(h + i) & l->mask];
    if (e->used && memcmp(e->key, key, 16) == 0)
      return e;
  }
  return NULL;
}

/* A free slot in key's window, else the idle entry quiet longest. */
static ip_entry *ip_take_slot(cfd_limits *l, const uint8_t key[16]) {
  size_t h = ip_hash(l, key), i;
  ip_entry *victim = NULL;
  for (i = 0; i < LIMITS_WINDOW; i++) {
    ip_entry *e = &l->slot[(h + i) & l->mask];
    if (!e->used)
      return e;
    if (e->conns == 0 &&
        (victim == NULL || e->bucket.last < victim->bucket.last))
      victim = e;
  }
  if (victim != NULL)
    l->entries--;
  return victim;
}

static ip_entry *ip_get(cfd_limits *l, const uint8_t key[16], double now) {
  ip_entry *e = ip_find(l, key);
  if (e != NULL)
    return e;
  e = ip_take_slot(l, key);
  if (e == NULL)
    return NULL;
  memset(e, 0, sizeof(*e));
  memcpy(e->key, key, 16);
  e->used = 1;
  cfd_bucket_init(&e->bucket, l->cfg.burst, now);
  l->entries++;
  return e;
}

static int ip_tracked(const cfd_limits *l, const cfd_peer *p) {
  if (l == NULL || (l->cfg.per_ip == 0 && l->cfg.rate <= 0))
    return 0;
  return l->cfg.loopback || !is_loopback(p);
}

int cfd_limits_ip_open(cfd_limits *l, const cfd_peer *p, double now,
                       double *retry_after) {
  uint8_t key[16];
  ip_entry *e;
  if (retry_after != NULL)
    *retry_after = 0;
  if (!ip_tracked(l, p) || ip_key(p, key) != 0)
    return CFD_IP_UNTRACKED;
  e = ip_get(l, key, now);
  if (e == NULL) {
    l->untracked++;
    return CFD_IP_UNTRACKED;
  }
  if (l->cfg.per_ip != 0 && e->conns >= l->cfg.per_ip)
    return CFD_IP_CONNS;
  if (!cfd_bucket_take(&e->bucket, l->cfg.rate, l->cfg.burst, now)) {
    if (retry_after != NULL)
      *retry_after = cfd_bucket_wait(&e->bucket, l->cfg.rate, l->cfg.burst,
                                     now);
    return CFD_IP_RATE;
  }
  e->conns++;
  return CFD_IP_OK;
}

void cfd_limits_ip_close(cfd_limits *l, const cfd_peer *p) {
  uint8_t key[16];
  ip_entry *e;
  if (!ip_tracked(l, p) || ip_key(p, key) != 0)
    return;
  e = ip_find(l, key);
  if (e != NULL && e->conns > 0)
    e->conns--;
}

size_t cfd_limits_entries(const cfd_limits *l) {
  return l != NULL ? l->entries : 0;
}

uint64_t cfd_limits_untracked(const cfd_limits *l) {
  return l != NULL ? l->untracked : 0;
}

/* --- frame read timeout ------------------------------------------------- */

double cfd_frame_timeout_left(int partial, double since, double timeout,
                              double now) {
  double left;
  if (!partial || timeout <= 0)
    return -1;
  left = since + timeout - now;
  return left > 0 ? left : 0.;
}
