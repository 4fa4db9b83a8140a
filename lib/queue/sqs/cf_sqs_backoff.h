/*
 * Internal: exponential backoff with full jitter, and the small seeded
 * random generator it draws from.
 *
 * The n-th wait (n from 0) is uniform in [0, min(cap, base * 2^n)]: the
 * "full jitter" scheme, which spreads the retries of many clients that
 * failed together instead of letting them hit the service in waves.
 * Given the same seed, the sequence of waits is the same, so tests can
 * check exact values.
 *
 *   cf__sqs_rng rng;
 *   cf__sqs_backoff b;
 *   cf__sqs_rng_seed(&rng, instance_id);
 *   cf__sqs_backoff_init(&b, &rng, 0.05, 2.0);
 *   after = cf__sqs_backoff_next(&b);    (on each failure)
 *   cf__sqs_backoff_reset(&b);           (on success)
 */
#ifndef CF_SQS_BACKOFF_H
#define CF_SQS_BACKOFF_H

#include <stdint.h>

/* splitmix64 state; any value (0 included) is a valid seed. */
typedef struct cf__sqs_rng {
  uint64_t s;
} cf__sqs_rng;

void cf__sqs_rng_seed(cf__sqs_rng *r, uint64_t seed);

/* Next 64 random bits. */
uint64_t cf__sqs_rng_next(cf__sqs_rng *r);

/* Uniform double in [0, 1). */
double cf__sqs_rng_unit(cf__sqs_rng *r);

typedef struct cf__sqs_backoff {
  cf__sqs_rng *rng;  /* borrowed, may be shared by many backoffs */
  double base;       /* first ceiling, seconds, > 0 */
  double cap;        /* largest ceiling, seconds, >= base */
  unsigned attempt;  /* failures since the last reset */
} cf__sqs_backoff;

/*
 * Sets b up; rng must outlive b. A base that is not positive becomes
 * 0.001 and a cap below base becomes base (so bad values cannot make
 * retries spin or wait forever).
 */
void cf__sqs_backoff_init(cf__sqs_backoff *b, cf__sqs_rng *rng, double base,
                          double cap);

/* The ceiling of the next wait: min(cap, base * 2^attempt). */
double cf__sqs_backoff_ceiling(const cf__sqs_backoff *b);

/* Returns the next wait in seconds (in [0, ceiling]) and counts an
 * attempt. */
double cf__sqs_backoff_next(cf__sqs_backoff *b);

/* Forgets the failures: the next wait starts from base again. */
void cf__sqs_backoff_reset(cf__sqs_backoff *b);

#endif /* CF_SQS_BACKOFF_H */
