/*
 * Shared fixture pieces for the hub tests: the test allocator with its
 * cmocka setup/teardown, readable framers, publish/stats shorthands,
 * helpers that empty a client's outbox the way a transport would, and a
 * fake queue backend that keeps what it is given.
 *
 * Each test file keeps its own recording client (what it counts differs)
 * and builds it on these helpers.
 */
#ifndef HUB_FIXTURE_H
#define HUB_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <chatfanout/chatfanout.h>

#include "test_mem.h"

/* The allocator every hub test routes the library to. */
extern test_mem tm;

/* Group or per-test setup: tm fresh, never failing. Returns 0. */
int hf_setup(void **state);

/* Checks nothing is left allocated through tm. Returns 0. */
int hf_teardown(void **state);

/* Framers writing "<5>" and "<T5>"/"<B5>" (text/binary) headers. */
size_t hf_framer_len(uint8_t *buf, uint32_t flags, size_t len, void *ud);
size_t hf_framer_kind(uint8_t *buf, uint32_t flags, size_t len, void *ud);

/* Publishes the text s to room on h. Returns cf_hub_publish's code. */
int hf_pub(cf_hub *h, const char *room, const char *s);

/* h's stats, whole. */
cf_hub_stats hf_stats(const cf_hub *h);

/*
 * Consumes everything pending on c through cf_client_iov, as a writev
 * would. With buf non-NULL the bytes are appended at buf + *len (cap
 * bytes in all, checked); with buf NULL they are only counted. *len grows
 * by the bytes consumed either way.
 */
void hf_drain(cf_client *c, char *buf, size_t cap, size_t *len);

/*
 * Pops whole messages off c (none if c is NULL), appending each payload
 * and a '|' at buf + *len, NUL-terminated, cap bytes in all (checked).
 */
void hf_take(cf_client *c, char *buf, size_t cap, size_t *len);

/* --- Fake queue backend ---------------------------------------------- */

#define HF_FQ_MAX 32

typedef struct hf_fakeq {
  int fail_with;     /* publish returns this when non-zero */
  const cf_mem *mem; /* publish allocates through it when set */
  int destroyed;     /* set by the destroy op */
  int n;             /* envelopes taken */
  cf_envelope env[HF_FQ_MAX];       /* room/data point into the arrays */
  char room[HF_FQ_MAX][CF_ROOM_MAX];
  char data[HF_FQ_MAX][32];
} hf_fakeq;

/* Ops for cf_queue_new(&q, &hf_fq_ops, &fakeq, mem). */
extern const cf_queue_ops hf_fq_ops;

#endif /* HUB_FIXTURE_H */
