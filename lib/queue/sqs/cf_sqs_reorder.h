/*
 * Internal: restores each origin's sequence order among envelopes that
 * a standard SQS queue hands out in any order.
 *
 * Per origin (publishing instance) it knows the next seq to deliver.
 * An envelope with that seq is ready at once, and so are the held ones
 * that follow it without a gap. One with a higher seq is held until the
 * gap fills or until it has waited `window` seconds; then delivery skips
 * ahead to the lowest held seq (the missing ones may still come). An
 * envelope whose seq is below the next one to deliver (skipped, or
 * already delivered) is made ready at once, out of order: a skipped one
 * arriving late must not be lost, and telling it from a copy of a
 * delivered one would cost memory per seq, so true duplicates are left
 * to the hub's (origin, seq) dedupe. A second copy of a held envelope
 * is refused.
 *
 * The first envelope seen from an origin is held like one after a gap
 * (its predecessors may still be on the way), unless its seq is 1.
 *
 * Memory is bounded: at most max_held envelopes per origin and max_bytes
 * in all (over either, the origin concerned, or the one waiting longest,
 * skips ahead at once), and at most max_origins origins remembered; the
 * least recently heard one is forgotten first, its held envelopes made
 * ready in seq order.
 *
 * The object reads no clock: callers pass the time (any monotonic
 * seconds) and pop ready envelopes in a loop:
 *
 *   rv = cf__sqs_reorder_push(ro, env, now);     (env: decoded)
 *   if (rv != CF_OK) cf__envelope_free(env, mem);
 *   while ((e = cf__sqs_reorder_pop(ro, now)) != NULL) {
 *     deliver(e);
 *     cf__envelope_free(e, mem);
 *   }
 *   arm_timer(cf__sqs_reorder_deadline(ro) - now);
 */
#ifndef CF_SQS_REORDER_H
#define CF_SQS_REORDER_H

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_queue.h>

typedef struct cf__sqs_reorder cf__sqs_reorder;

/* Limits; zero fields take the defaults given. */
typedef struct cf__sqs_reorder_limits {
  double window;      /* seconds a gap is waited for; 0.5; 0 < w <= 3600 */
  size_t max_held;    /* envelopes held per origin; 256 */
  size_t max_origins; /* origins remembered; 1024 */
  size_t max_bytes;   /* bytes of held envelopes, all origins; 16 MiB */
} cf__sqs_reorder_limits;

/* Counters; monotonic except the gauges. */
typedef struct cf__sqs_reorder_stats {
  uint64_t origins;  /* gauge: origins remembered */
  uint64_t held;     /* gauge: envelopes held or ready, not yet popped */
  uint64_t bytes;    /* gauge: their bytes as counted for max_bytes */
  uint64_t refused;  /* pushes refused as copies of held envelopes */
  uint64_t late;     /* seqs below next delivered out of order */
  uint64_t skipped;  /* seq numbers given up on (gaps skipped) */
  uint64_t forced;   /* skips forced by a bound before the window */
  uint64_t evicted;  /* origins forgotten to make room */
} cf__sqs_reorder_stats;

/*
 * Creates an empty reorderer. lim may be NULL (all defaults); mem may be
 * NULL (libc) and is copied. CF_OK, CF_ERR_INVALID (window out of range),
 * CF_ERR_NOMEM.
 */
int cf__sqs_reorder_new(cf__sqs_reorder **out,
                        const cf__sqs_reorder_limits *lim,
                        const cf_mem *mem);

/* Frees ro and every envelope it still holds. Accepts NULL. */
void cf__sqs_reorder_free(cf__sqs_reorder *ro);

/*
 * Offers env, a block from cf__envelope_decode() with the same mem as
 * ro. On CF_OK ro owns it (until popped); on any other code the caller
 * still does and nothing changed. now is the caller's clock in seconds.
 * Returns CF_OK (also for a seq below the next one to deliver, which is
 * made ready at once and counted as late); CF_ERR_EXISTS when env's seq
 * is held already; CF_ERR_INVALID for NULL or seq/origin 0; CF_ERR_NOMEM.
 */
int cf__sqs_reorder_push(cf__sqs_reorder *ro, cf_envelope *env, double now);

/*
 * Returns the next envelope to deliver at time now (first skipping the
 * gaps that have waited `window`), or NULL when none. The caller owns
 * it and frees it with cf__envelope_free(). Each origin's envelopes come
 * out in increasing seq order, except late ones (see push); different
 * origins interleave.
 */
cf_envelope *cf__sqs_reorder_pop(cf__sqs_reorder *ro, double now);

/*
 * The earliest time at which a waiting gap expires (so pop has more to
 * give), or a negative number when nothing is held.
 */
double cf__sqs_reorder_deadline(const cf__sqs_reorder *ro);

/* Copies the counters into st. */
void cf__sqs_reorder_get_stats(const cf__sqs_reorder *ro,
                               cf__sqs_reorder_stats *st);

#endif /* CF_SQS_REORDER_H */
