/* Exponential backoff with full jitter; see cf_sqs_backoff.h. */
#include "cf_sqs_backoff.h"

/* Past this many doublings the ceiling is the cap for any sane base, and
 * stopping here keeps 2^attempt finite. */
#define BACKOFF_MAX_SHIFT 60u

void cf__sqs_rng_seed(cf__sqs_rng *r, uint64_t seed) {
  r->s = seed;
}

/* splitmix64: every state is valid and consecutive seeds give unrelated
 * streams, which matters when instance ids are close. */
uint64_t cf__sqs_rng_next(cf__sqs_rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double cf__sqs_rng_unit(cf__sqs_rng *r) {
  /* The top 53 bits fill a double's mantissa exactly. */
  return (double)(cf__sqs_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

void cf__sqs_backoff_init(cf__sqs_backoff *b, cf__sqs_rng *rng, double base,
                          double cap) {
  /* The negated tests also catch NaN. */
  if (!(base > 0.0))
    base = 0.001;
  if (!(cap >= base))
    cap = base;
  b->rng = rng;
  b->base = base;
  b->cap = cap;
  b->attempt = 0;
}

double cf__sqs_backoff_ceiling(const cf__sqs_backoff *b) {
  unsigned n = b->attempt < BACKOFF_MAX_SHIFT ? b->attempt
                                               : BACKOFF_MAX_SHIFT;
  double c = b->base * (double)(1ull << n);

  return c < b->cap ? c : b->cap;
}

double cf__sqs_backoff_next(cf__sqs_backoff *b) {
  double wait = cf__sqs_backoff_ceiling(b) * cf__sqs_rng_unit(b->rng);

  if (b->attempt < BACKOFF_MAX_SHIFT)
    b->attempt++;
  return wait;
}

void cf__sqs_backoff_reset(cf__sqs_backoff *b) {
  b->attempt = 0;
}
