/* Clients: attach/detach, rooms, and the transport's side of the outbox. */
#include <string.h>

#include "cf_hub_int.h"
#include "cf_mem.h"
#include "cf_msg.h"

int cf_client_new(cf_client **out, cf_hub *h, const cf_client_ops *ops,
                  void *user_data) {
  cf_client *c;

  if (out == NULL || h == NULL || ops == NULL)
    return CF_ERR_INVALID;
  if (ops->version != CF_CLIENT_OPS_VERSION)
    return CF_ERR_VERSION;
  if (ops->wake == NULL || ops->close == NULL)
    return CF_ERR_INVALID;
  if (h->freeing)
    return CF_ERR_CLOSED;
  c = cf__calloc(&h->mem, 1, sizeof(*c));
  if (c == NULL)
    return CF_ERR_NOMEM;
  /*
   * The smallest ring now: else the first fan-out to this client would
   * allocate it, and a failure there costs the client its connection.
   */
  cf__outbox_init(&c->ob);
  c->ob.tally = &h->tally;
  if (cf__outbox_reserve(&c->ob, &h->mem, CF_OUTBOX_MIN_CAP) != CF_OK) {
    cf__free(&h->mem, c);
    return CF_ERR_NOMEM;
  }
  c->hub = h;
  c->ops = *ops;
  c->user_data = user_data;
  cf_list_init(&c->rooms);
  cf_list_init(&c->wake_link);
  cf_list_append(&h->clients, &c->hub_link);
  h->stats.clients++;
  *out = c;
  return CF_OK;
}

static void member_drop(cf_hub *h, cf_member *mb) {
  cf_list_remove(&mb->client_link);
  cf__room_remove_member(&h->rooms, mb);
  cf__free(&h->mem, mb);
}

void cf__client_destroy(cf_client *c) {
  cf_hub *h = c->hub;

  while (!cf_list_empty(&c->rooms))
    member_drop(h, cf_container_of(c->rooms.next, cf_member, client_link));
  h->stats.outbox_bytes -= c->ob.bytes;
  cf__outbox_deinit(&c->ob, &h->mem);
  cf_list_remove(&c->wake_link);
  /* cf_hub_close_all() may be about to visit this client. */
  if (h->close_cursor == &c->hub_link)
    h->close_cursor = c->hub_link.next;
  cf_list_remove(&c->hub_link);
  h->stats.clients--;
  cf__free(&h->mem, c);
}

void cf_client_free(cf_client *c) {
  if (c != NULL)
    cf__client_destroy(c);
}

void *cf_client_user_data(const cf_client *c) {
  return c != NULL ? c->user_data : NULL;
}

static cf_member *client_member(const cf_client *c, const char *name,
                                size_t len) {
  const cf_list *it;

  for (it = c->rooms.next; it != &c->rooms; it = it->next) {
    cf_member *mb = cf_container_of(it, cf_member, client_link);

    if (mb->room->name_len == len && memcmp(mb->room->name, name, len) == 0)
      return mb;
  }
  return NULL;
}

/* Rooms c is in; joins walk c's rooms anyway (client_member). */
static uint32_t client_room_count(const cf_client *c) {
  const cf_list *it;
  uint32_t n = 0;

  for (it = c->rooms.next; it != &c->rooms; it = it->next)
    n++;
  return n;
}

/*
 * How many of r's newest history entries fit in c's outbox now. Counting
 * from the newest keeps the most relevant ones when not all fit.
 */
static uint32_t join_history_fit(const cf_hub *h, const cf_client *c,
                                 const cf_room *r) {
  size_t cost = cf__outbox_cost(&c->ob);
  uint32_t n = 0;

  while (n < r->hist_count) {
    const cf_msg *m = cf__room_hist_at(&h->rooms, r, r->hist_count - 1 - n);
    size_t need = cf__msg_wire_len(m) + CF_OUTBOX_ENTRY_COST;

    if (cost > h->client_buffer || need > h->client_buffer - cost)
      break;
    cost += need;
    n++;
  }
  return n;
}

/* Queues the n newest history entries of r, oldest first. */
static void join_history_queue(cf_hub *h, cf_client *c, cf_room *r,
                               uint32_t n) {
  uint32_t i;

  for (i = r->hist_count - n; i < r->hist_count; i++) {
    cf_msg *m = cf__room_hist_at(&h->rooms, r, i);

    /* Fits and has room reserved, so this cannot fail. */
    if (cf__client_queue(h, c, m, h->client_buffer) == CF_OK) {
      h->stats.deliveries++;
      h->stats.delivered_bytes += cf__msg_wire_len(m);
    }
  }
}

/*
 * Everything that can fail, done before anything visible changes. The
 * node is allocated before the room is opened because opening may evict
 * an idle room, which cannot be undone.
 */
static int join_prepare(cf_hub *h, cf_client *c, const char *room,
                        size_t len, cf_member **mbp, uint32_t *nhist) {
  cf_member *mb = cf__calloc(&h->mem, 1, sizeof(*mb));
  cf_room *r;
  int rv;

  if (mb == NULL)
    return CF_ERR_NOMEM;
  rv = cf__rooms_open(&h->rooms, room, len, 0, &r);
  if (rv != CF_OK) {
    cf__free(&h->mem, mb);
    return rv;
  }
  /* A room just created has no history, so only an old one gets here. */
  *nhist = join_history_fit(h, c, r);
  if (cf__outbox_reserve(&c->ob, &h->mem, *nhist) != CF_OK) {
    cf__free(&h->mem, mb);
    return CF_ERR_NOMEM;
  }
  mb->room = r;
  mb->client = c;
  *mbp = mb;
  return CF_OK;
}

int cf_client_join(cf_client *c, const char *room, size_t len) {
  cf_member *mb;
  uint32_t nhist;
  cf_hub *h;
  int rv;

  if (c == NULL || cf__room_name_check(room, len) != CF_OK)
    return CF_ERR_INVALID;
  h = c->hub;
  if (c->closing || h->freeing)
    return CF_ERR_CLOSED;
  if (client_member(c, room, len) != NULL)
    return CF_ERR_EXISTS;
  if (h->max_rooms_per_client != 0 &&
      client_room_count(c) >= h->max_rooms_per_client)
    return CF_ERR_LIMIT;
  rv = join_prepare(h, c, room, len, &mb, &nhist);
  if (rv != CF_OK)
    return rv;
  cf_list_append(&c->rooms, &mb->client_link);
  cf__room_add_member(&h->rooms, mb->room, mb);
  join_history_queue(h, c, mb->room, nhist);
  cf__hub_budget_check(h);
  cf__hub_enter(h);
  cf__hub_drain(h);
  cf__hub_leave(h);
  return CF_OK;
}

int cf_client_leave(cf_client *c, const char *room, size_t len) {
  cf_member *mb;

  if (c == NULL || cf__room_name_check(room, len) != CF_OK)
    return CF_ERR_INVALID;
  mb = client_member(c, room, len);
  if (mb == NULL)
    return CF_ERR_NOT_FOUND;
  member_drop(c->hub, mb);
  return CF_OK;
}

int cf_client_iov(const cf_client *c, struct iovec *iov, int iovcnt) {
  if (c == NULL)
    return 0;
  return cf__outbox_iov(&c->ob, iov, iovcnt);
}

void cf_client_consume(cf_client *c, size_t n) {
  if (c == NULL)
    return;
  c->written |= n > 0;
  c->hub->stats.outbox_bytes -= cf__outbox_consume(&c->ob, &c->hub->mem, n);
}

size_t cf_client_pending(const cf_client *c) {
  return c != NULL ? c->ob.bytes : 0;
}

cf_msg *cf_client_pop(cf_client *c) {
  cf_msg *m;

  if (c == NULL)
    return NULL;
  m = cf__outbox_pop(&c->ob, &c->hub->mem);
  if (m != NULL) {
    c->written = 1;
    c->hub->stats.outbox_bytes -= cf__msg_wire_len(m);
  }
  return m;
}

void cf_client_shutdown(cf_client *c) {
  /*
   * The hub's own closes set closing too, and everything that queues to
   * a client checks it. A wake or close already on the wake list stays:
   * the first may be for bytes still to write, the second stands for a
   * cut already made and counted (cut: no second one).
   */
  if (c != NULL) {
    c->closing = 1;
    c->shutdown = 1;
  }
}

int cf_client_send(cf_client *c, const void *bytes, size_t len) {
  size_t limit, cost;
  cf_msg *m;
  cf_hub *h;
  int rv;

  if (c == NULL || (bytes == NULL && len != 0))
    return CF_ERR_INVALID;
  if (len == 0)
    return CF_OK;
  h = c->hub;
  if (h->freeing)
    return CF_ERR_CLOSED;
  limit = h->client_buffer + CF_SEND_ALLOWANCE;
  cost = cf__outbox_cost(&c->ob);
  /* Checked before allocating so that a full outbox costs nothing. */
  if (len > limit || cost > limit - len)
    return CF_ERR_QUEUE_FULL;
  m = cf__msg_new(&h->mem, NULL, 0, CF_MSG_RAW, bytes, len);
  if (m == NULL)
    return CF_ERR_NOMEM;
  rv = cf__client_queue(h, c, m, limit);
  cf_msg_unref(m);
  if (rv != CF_OK)
    return rv;
  /* Before the check: the cut may come with this very send. */
  if (c->shutdown)
    c->shut_sends = c->shut_sends < c->ob.count ? c->shut_sends + 1
                                                : c->ob.count;
  cf__hub_budget_check(h);
  cf__hub_enter(h);
  cf__hub_drain(h);
  cf__hub_leave(h);
  return CF_OK;
}
