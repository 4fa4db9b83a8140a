/*
 * Internal: a client's outbox, a ring of message references waiting to be
 * written. The hub reserves the smallest ring when it attaches the client
 * (so a fan-out to a new client does not allocate); the ring grows by
 * doubling and, once drained after a burst, shrinks back to a kept size,
 * never below the smallest one. A client in steady state thus queues
 * without allocating. Byte limits are the hub's business; the outbox only
 * keeps the counts it needs.
 */
#ifndef CF_OUTBOX_H
#define CF_OUTBOX_H

#include <sys/uio.h>

#include <chatfanout/cf_hub.h>

/*
 * What one queued entry costs against client_buffer on top of its wire
 * bytes, so that even empty messages bound the number of entries.
 */
#define CF_OUTBOX_ENTRY_COST 64u

/* Slots of the smallest ring, the one reserved for every client. */
#define CF_OUTBOX_MIN_CAP 8u

/*
 * What all the outboxes of a hub hold, as memory: every queued message's
 * wire bytes once, however many outboxes it is queued to (they share
 * it), and the entries. The outbound budget is checked against it.
 */
typedef struct cf_outbox_tally {
  size_t bytes;   /* wire bytes of the distinct messages queued */
  size_t entries; /* entries queued in all outboxes */
} cf_outbox_tally;

/* Tally memory of t: shared bytes plus the entries' cost. */
static inline size_t cf__tally_cost(const cf_outbox_tally *t) {
  return t->bytes + t->entries * (size_t)CF_OUTBOX_ENTRY_COST;
}

typedef struct cf_outbox {
  cf_msg **ring;  /* cap slots; NULL until the first reserve */
  uint32_t cap;   /* 0 or a power of two */
  uint32_t head;  /* slot of the oldest entry */
  uint32_t count; /* entries queued */
  size_t offset;  /* bytes of the head entry already consumed */
  size_t bytes;   /* wire bytes waiting, the consumed offset excluded */
  cf_outbox_tally *tally; /* the hub's, or NULL: not tallied */
} cf_outbox;

/* An empty outbox, not tallied: the hub sets ob->tally after. */
void cf__outbox_init(cf_outbox *ob);

/* Drops every reference and frees the ring. */
void cf__outbox_deinit(cf_outbox *ob, const cf_mem *mem);

/* Bytes charged against the client's buffer: wire bytes plus entries. */
static inline size_t cf__outbox_cost(const cf_outbox *ob) {
  return ob->bytes + (size_t)ob->count * CF_OUTBOX_ENTRY_COST;
}

static inline int cf__outbox_empty(const cf_outbox *ob) {
  return ob->count == 0;
}

/*
 * Makes room for `extra` more entries. CF_OK or CF_ERR_NOMEM, in which
 * case the outbox is unchanged.
 */
int cf__outbox_reserve(cf_outbox *ob, const cf_mem *mem, size_t extra);

/* Appends a new reference to m. Room must have been reserved. */
void cf__outbox_push(cf_outbox *ob, cf_msg *m);

/* Reserves and pushes: CF_OK or CF_ERR_NOMEM (nothing queued). */
int cf__outbox_add(cf_outbox *ob, const cf_mem *mem, cf_msg *m);

/* See cf_client_iov(). */
int cf__outbox_iov(const cf_outbox *ob, struct iovec *iov, int iovcnt);

/*
 * Marks up to n bytes as sent, dropping finished entries. Returns the
 * bytes actually consumed.
 */
size_t cf__outbox_consume(cf_outbox *ob, const cf_mem *mem, size_t n);

/*
 * Removes the head entry and hands its reference to the caller. NULL
 * when empty or when the head is partly consumed.
 */
cf_msg *cf__outbox_pop(cf_outbox *ob, const cf_mem *mem);

/*
 * Drops every queued entry except a partly consumed head, which must stay
 * so the byte stream remains well-formed, and the newest `tail` entries,
 * which stay in order after it. Returns the wire bytes dropped.
 */
size_t cf__outbox_trim(cf_outbox *ob, const cf_mem *mem, uint32_t tail);

#endif /* CF_OUTBOX_H */
