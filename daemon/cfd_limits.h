/*
 * chatfanoutd abuse limits, as pure logic (no sockets, no clock, no
 * loop: the caller passes the time), so every rule is unit-testable:
 *
 * - a token bucket (cfd_bucket), used per connection for the frames a
 *   client sends and per source address for new connections;
 * - the per-address table (cfd_limits): concurrent connections and the
 *   connection rate of each source address, IPv4 per address, IPv6 per
 *   /64 (one host usually owns a whole /64), in a fixed-size table;
 * - the frame read timeout rule.
 */
#ifndef CFD_LIMITS_H
#define CFD_LIMITS_H

#include <stddef.h>
#include <stdint.h>

#include "cfd_peer.h"

/*
 * A token bucket: `rate` tokens a second, at most `burst` saved up.
 * Times are seconds on any monotonic clock. Zero-initialise it, or
 * cfd_bucket_init() to start full.
 */
typedef struct cfd_bucket {
  double tokens; /* available at `last` */
  double last;   /* when tokens was computed */
} cfd_bucket;

/* Starts b full (burst tokens) at now. */
void cfd_bucket_init(cfd_bucket *b, double burst, double now);

/*
 * Takes one token at now. Returns 1 when one was there (taken), 0 when
 * not (b keeps its tokens). rate <= 0 means no limit: always 1. A clock
 * going backwards adds nothing.
 */
int cfd_bucket_take(cfd_bucket *b, double rate, double burst, double now);

/* Seconds until a token is there (0 when one is); rate must be > 0. */
double cfd_bucket_wait(const cfd_bucket *b, double rate, double burst,
                       double now);

/* --- per source address ------------------------------------------------ */

typedef struct cfd_limits_config {
  unsigned per_ip;  /* concurrent connections per address; 0: no limit */
  double rate;      /* new connections per second per address; 0: none */
  double burst;     /* connections an address may open at once (>= 1) */
  int loopback;     /* 1: limit loopback peers too (else exempt) */
  size_t slots;     /* table size, rounded up to a power of two,
                       64 to 2^20 */
  uint64_t seed[2]; /* hash key: random, so collisions cannot be aimed */
} cfd_limits_config;

typedef struct cfd_limits cfd_limits;

/* cfd_limits_ip_open() results. */
enum {
  CFD_IP_OK = 0,         /* admitted and counted: call ip_close later */
  CFD_IP_UNTRACKED = 1,  /* admitted, not counted (exempt, limits off,
                            unknown address or no slot free) */
  CFD_IP_RATE = -1,      /* over the connection rate: refuse (429) */
  CFD_IP_CONNS = -2      /* at the concurrent limit: refuse (429) */
};

/*
 * A table of cfg->slots entries, allocated once (it never grows).
 * Returns NULL when out of memory. cfg is copied.
 */
cfd_limits *cfd_limits_new(const cfd_limits_config *cfg);

/* Frees l. NULL ok. */
void cfd_limits_free(cfd_limits *l);

/*
 * A new connection from p at now: one of the CFD_IP_* results. On
 * CFD_IP_RATE *retry_after (may be NULL) gets the seconds until the
 * address may connect again, else 0.
 *
 * Each entry sits within a window of 16 slots from its hash. A new
 * address takes a free slot there, or evicts the entry of an address
 * with no open connection that has been quiet longest (its rate state
 * is forgotten: a bounded table cannot remember every address). With
 * all 16 holding open connections the connection is admitted
 * untracked (counted in cfd_limits_untracked()); a table of at least
 * twice the connection limit makes that rare, and the random key keeps
 * an attacker from aiming at one window.
 */
int cfd_limits_ip_open(cfd_limits *l, const cfd_peer *p, double now,
                       double *retry_after);

/*
 * A connection from p that ip_open admitted has closed. Harmless for
 * untracked and unknown addresses. (An address admitted untracked
 * while another connection of it was counted releases that count
 * early; rare, and it errs on the side of admitting.)
 */
void cfd_limits_ip_close(cfd_limits *l, const cfd_peer *p);

/* Addresses held now (gauge). */
size_t cfd_limits_entries(const cfd_limits *l);

/* Connections admitted untracked for want of a slot (counter). */
uint64_t cfd_limits_untracked(const cfd_limits *l);

/* --- frame read timeout ------------------------------------------------- */

/*
 * The frame read timeout rule: a client in the middle of a frame or a
 * fragmented message (partial != 0) that began at `since` must be
 * closed `timeout` seconds after that, however it trickles the rest in
 * (slowloris). Returns the seconds left
 * (0: time is up), or -1 when no deadline applies (not partial, or
 * timeout <= 0: disabled).
 */
double cfd_frame_timeout_left(int partial, double since, double timeout,
                              double now);

#endif /* CFD_LIMITS_H */
