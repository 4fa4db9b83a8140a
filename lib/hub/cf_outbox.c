#include "cf_outbox.h"

#include <limits.h>
#include <string.h>

#include "cf_mem.h"
#include "cf_msg.h"

/* The largest ring kept once the outbox drains. */
#define OUTBOX_KEEP_CAP 256u

void cf__outbox_init(cf_outbox *ob) {
  memset(ob, 0, sizeof(*ob));
}

/* m enters or leaves the outbox: keep the hub's tally. */
static void tally_add(cf_outbox *ob, cf_msg *m) {
  if (ob->tally == NULL)
    return;
  ob->tally->entries++;
  if (m->queued++ == 0)
    ob->tally->bytes += cf__msg_wire_len(m);
}

static void tally_drop(cf_outbox *ob, cf_msg *m) {
  if (ob->tally == NULL)
    return;
  ob->tally->entries--;
  if (--m->queued == 0)
    ob->tally->bytes -= cf__msg_wire_len(m);
}

static cf_msg **outbox_slot(const cf_outbox *ob, uint32_t i) {
  return &ob->ring[(ob->head + i) & (ob->cap - 1)];
}

void cf__outbox_deinit(cf_outbox *ob, const cf_mem *mem) {
  cf_outbox_tally *tally;
  uint32_t i;

  for (i = 0; i < ob->count; i++) {
    tally_drop(ob, *outbox_slot(ob, i));
    cf_msg_unref(*outbox_slot(ob, i));
  }
  cf__free(mem, ob->ring);
  tally = ob->tally;
  cf__outbox_init(ob);
  ob->tally = tally;
}

/*
 * A burst may have grown the ring far beyond what the client needs in
 * steady state; give most of it back once it drains. The ring is cut to
 * the kept size rather than freed: a freed ring would have to be
 * allocated again by the next fan-out, which could then fail for a
 * client that did nothing wrong. A failed shrink keeps the big ring.
 */
static void outbox_shrink(cf_outbox *ob, const cf_mem *mem) {
  cf_msg **ring;

  if (ob->count != 0 || ob->cap <= OUTBOX_KEEP_CAP)
    return;
  ring = cf__realloc(mem, ob->ring, OUTBOX_KEEP_CAP * sizeof(*ring));
  if (ring == NULL)
    return;
  ob->ring = ring;
  ob->cap = OUTBOX_KEEP_CAP;
  ob->head = 0;
}

int cf__outbox_reserve(cf_outbox *ob, const cf_mem *mem, size_t extra) {
  size_t need = (size_t)ob->count + extra;
  uint32_t cap = ob->cap != 0 ? ob->cap : CF_OUTBOX_MIN_CAP;
  cf_msg **ring;
  uint32_t i;

  if (need <= ob->cap)
    return CF_OK;
  if (need > (UINT32_MAX >> 1) + 1u)
    return CF_ERR_NOMEM;
  while (cap < need)
    cap <<= 1;
  ring = cf__calloc(mem, cap, sizeof(*ring));
  if (ring == NULL)
    return CF_ERR_NOMEM;
  /* Unwrap into the new ring so head restarts at slot 0. */
  for (i = 0; i < ob->count; i++)
    ring[i] = *outbox_slot(ob, i);
  cf__free(mem, ob->ring);
  ob->ring = ring;
  ob->cap = cap;
  ob->head = 0;
  return CF_OK;
}

void cf__outbox_push(cf_outbox *ob, cf_msg *m) {
  *outbox_slot(ob, ob->count) = cf_msg_ref(m);
  tally_add(ob, m);
  ob->count++;
  ob->bytes += cf__msg_wire_len(m);
}

int cf__outbox_add(cf_outbox *ob, const cf_mem *mem, cf_msg *m) {
  int rv = cf__outbox_reserve(ob, mem, 1);

  if (rv != CF_OK)
    return rv;
  cf__outbox_push(ob, m);
  return CF_OK;
}

int cf__outbox_iov(const cf_outbox *ob, struct iovec *iov, int iovcnt) {
  uint32_t i;
  int n = 0;

  if (iov == NULL || iovcnt <= 0)
    return 0;
  for (i = 0; i < ob->count && n < iovcnt; i++) {
    const cf_msg *m = *outbox_slot(ob, i);
    size_t skip = i == 0 ? ob->offset : 0;
    size_t len = cf__msg_wire_len(m) - skip;

    /* Empty payloads with no header have nothing to write. */
    if (len == 0)
      continue;
    iov[n].iov_base = (void *)(cf__msg_wire_ptr(m) + skip);
    iov[n].iov_len = len;
    n++;
  }
  return n;
}

/* Removes the head entry and returns its reference. */
static cf_msg *outbox_shift(cf_outbox *ob) {
  cf_msg *m = ob->ring[ob->head];

  tally_drop(ob, m);
  ob->ring[ob->head] = NULL;
  ob->head = (ob->head + 1) & (ob->cap - 1);
  ob->count--;
  ob->offset = 0;
  return m;
}

size_t cf__outbox_consume(cf_outbox *ob, const cf_mem *mem, size_t n) {
  size_t done = 0;

  while (ob->count != 0) {
    cf_msg *m = ob->ring[ob->head];
    size_t left = cf__msg_wire_len(m) - ob->offset;

    if (left > n - done) {
      ob->offset += n - done;
      done = n;
      break;
    }
    /* Zero-length entries go too, so a full consume empties the ring. */
    done += left;
    cf_msg_unref(outbox_shift(ob));
  }
  ob->bytes -= done;
  outbox_shrink(ob, mem);
  return done;
}

cf_msg *cf__outbox_pop(cf_outbox *ob, const cf_mem *mem) {
  cf_msg *m;

  if (ob->count == 0 || ob->offset != 0)
    return NULL;
  m = outbox_shift(ob);
  ob->bytes -= cf__msg_wire_len(m);
  outbox_shrink(ob, mem);
  return m;
}

size_t cf__outbox_trim(cf_outbox *ob, const cf_mem *mem, uint32_t tail) {
  uint32_t to = ob->offset != 0 ? 1 : 0, i;
  size_t dropped = 0;

  if (tail > ob->count - to)
    tail = ob->count - to;
  for (i = to; i < ob->count - tail; i++) {
    cf_msg **slot = outbox_slot(ob, i);

    dropped += cf__msg_wire_len(*slot);
    tally_drop(ob, *slot);
    cf_msg_unref(*slot);
    *slot = NULL;
  }
  /* The newest move down behind the head, in order. */
  for (; i < ob->count; i++) {
    cf_msg **slot = outbox_slot(ob, i);
    cf_msg *m = *slot;

    *slot = NULL;
    *outbox_slot(ob, to++) = m;
  }
  ob->count = to;
  ob->bytes -= dropped;
  outbox_shrink(ob, mem);
  return dropped;
}
