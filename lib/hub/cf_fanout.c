/*
 * Fan-out: phase 1 (queue to outboxes, collect due callbacks) and
 * phase 2 (run them). See cf_hub_int.h for why they are apart.
 */
#include "cf_hub_int.h"

#include "cf_msg.h"

void cf__hub_want_wake(cf_hub *h, cf_client *c) {
  if (!cf_list_linked(&c->wake_link))
    cf_list_append(&h->wake, &c->wake_link);
}

int cf__client_queue(cf_hub *h, cf_client *c, cf_msg *m, size_t limit) {
  size_t cost = cf__outbox_cost(&c->ob);
  size_t wire = cf__msg_wire_len(m);
  size_t need = wire + CF_OUTBOX_ENTRY_COST;
  /*
   * Wake when the transport has nothing to do before this message: the
   * ring is empty, or it holds only zero-byte entries that an iov loop
   * never sees.
   */
  int wake = c->ob.count == 0 || (c->ob.bytes == 0 && wire != 0);

  if (need < wire || need > limit || cost > limit - need)
    return CF_ERR_QUEUE_FULL;
  if (cf__outbox_add(&c->ob, &h->mem, m) != CF_OK)
    return CF_ERR_NOMEM;
  h->stats.outbox_bytes += wire;
  if (wake)
    cf__hub_want_wake(h, c);
  return CF_OK;
}

void cf__client_cut_off(cf_hub *h, cf_client *c, int reason) {
  /*
   * A shut-down client's transport queued its last bytes (a close
   * frame) after cf_client_shutdown: they stay, behind a started head.
   * What it sent before is whole frames like the rest, and may go: a
   * client's cf_client_send bytes can reach client_buffer, so keeping
   * them all would let it keep its memory past the cut. A client the
   * hub cuts gets its close queued after the cut: nothing to keep.
   */
  uint32_t tail = c->shutdown ? c->shut_sends : 0;

  h->stats.outbox_bytes -= cf__outbox_trim(&c->ob, &h->mem, tail);
  c->cut = 1;
  /* Its transport is closing it already: nothing to tell. */
  if (c->shutdown)
    return;
  c->closing = 1;
  c->close_due = (uint8_t)reason;
  /* Apart, so that memory trouble does not pass for slow readers. */
  if (reason == CF_CLOSE_NOMEM)
    h->stats.nomem_closes++;
  else
    h->stats.slow_closes++;
  /* A pending wake becomes the close: the client gets nothing more. */
  cf__hub_want_wake(h, c);
}

void cf__hub_fanout(cf_hub *h, cf_room *r, cf_msg *m) {
  size_t wire = cf__msg_wire_len(m);
  cf_list *it;

  for (it = r->members.next; it != &r->members; it = it->next) {
    cf_client *c = cf_container_of(it, cf_member, room_link)->client;
    int rv;

    if (c->closing)
      continue;
    /*
     * Over the limit or unable to grow the ring: either way this client
     * cannot keep the stream complete, so it is closed, not skipped.
     */
    rv = cf__client_queue(h, c, m, h->client_buffer);
    if (rv != CF_OK) {
      cf__client_cut_off(h, c, rv == CF_ERR_NOMEM ? CF_CLOSE_NOMEM
                                                  : CF_CLOSE_SLOW);
      continue;
    }
    h->stats.deliveries++;
    h->stats.delivered_bytes += wire;
  }
}

void cf__hub_drain(cf_hub *h) {
  /* Re-read the head each time: any callback may change the list. */
  while (!h->freeing && !cf_list_empty(&h->wake)) {
    cf_client *c = cf_container_of(h->wake.next, cf_client, wake_link);
    int reason = c->close_due;

    cf_list_remove(&c->wake_link);
    c->close_due = 0;
    if (reason != 0)
      c->ops.close(c, reason, c->user_data);
    else
      c->ops.wake(c, c->user_data);
  }
}
