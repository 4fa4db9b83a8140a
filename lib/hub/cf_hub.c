/* The hub: lifecycle, configuration, publish/deliver, queue glue. */
#include <stddef.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cf_hub_int.h"
#include "cf_mem.h"
#include "cf_msg.h"

/* --- Creation ------------------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

/*
 * A random value, never 0. getrandom() may be missing (old kernels,
 * seccomp) or not ready; then pid and addresses (randomised by ASLR)
 * make a weaker but still varying value.
 */
static uint64_t hub_random(const void *salt) {
  uint64_t x = 0;

  if (getrandom(&x, sizeof(x), GRND_NONBLOCK) == (ssize_t)sizeof(x) &&
      x != 0)
    return x;
  x = mix64((uint64_t)getpid() ^ ((uint64_t)(uintptr_t)salt << 16));
  x = mix64(x ^ (uint64_t)(uintptr_t)&x);
  return x != 0 ? x : 1;
}

static int mem_check(const cf_mem *m) {
  if (m == NULL)
    return CF_OK;
  if (!m->malloc || !m->free || !m->calloc || !m->realloc)
    return CF_ERR_INVALID;
  return CF_OK;
}

/*
 * The history budget must hold the largest message: a push drops older
 * entries to make room for a new one, never the new one itself.
 */
static int hub_configure_history(cf_hub *h, const cf_hub_config *cfg) {
  size_t least = h->max_message + CF_FRAME_HEADROOM_MAX +
                 CF_HIST_ENTRY_COST;

  if (cfg->history > CF_HUB_MAX_HISTORY)
    return CF_ERR_INVALID;
  if (cfg->history_bytes != 0 && cfg->history_bytes < least)
    return CF_ERR_INVALID;
  h->history_bytes = cfg->history_bytes;
  if (h->history_bytes == 0)
    h->history_bytes = least > CF_HUB_DEFAULT_HISTORY_BYTES
                           ? least
                           : CF_HUB_DEFAULT_HISTORY_BYTES;
  return CF_OK;
}

/* Copies cfg into h with defaults; CF_ERR_INVALID when out of range. */
static int hub_configure(cf_hub *h, const cf_hub_config *cfg) {
  h->client_buffer = cfg->client_buffer ? cfg->client_buffer
                                        : CF_HUB_DEFAULT_BUFFER;
  h->max_message = cfg->max_message ? cfg->max_message
                                    : CF_HUB_DEFAULT_MESSAGE;
  if (h->max_message > CF_HUB_MAX_MESSAGE)
    return CF_ERR_INVALID;
  /* Every message must fit an empty outbox, or all clients get closed. */
  if (h->client_buffer < h->max_message + CF_FRAME_HEADROOM_MAX +
                             CF_OUTBOX_ENTRY_COST)
    return CF_ERR_INVALID;
  if (cfg->dedupe_window > CF_DEDUPE_WINDOW_MAX)
    return CF_ERR_INVALID;
  /* An unknown bit is a feature the caller counts on and would not get. */
  if ((cfg->flags & ~CF_HUB_FLAGS_KNOWN) != 0)
    return CF_ERR_INVALID;
  /* A budget below one client's buffer would shed keeping-up clients. */
  if (cfg->outbound_budget != 0 && cfg->outbound_budget < h->client_buffer)
    return CF_ERR_INVALID;
  h->outbound_budget = cfg->outbound_budget;
  h->max_rooms_per_client = cfg->max_rooms_per_client;
  h->flags = cfg->flags;
  h->framer = cfg->framer;
  h->clock_ms = cfg->clock_ms;
  h->user_data = cfg->user_data;
  return hub_configure_history(h, cfg);
}

static void hub_init_tables(cf_hub *h, const cf_hub_config *cfg) {
  uint64_t key[2];

  key[0] = hub_random(h);
  key[1] = hub_random(&key);
  cf__rooms_init(&h->rooms, &h->mem,
                 cfg->max_rooms ? cfg->max_rooms : CF_HUB_DEFAULT_ROOMS,
                 cfg->history, key);
  h->rooms.hist_limit = h->history_bytes;
  cf__dedupe_init(&h->dedupe, cfg->dedupe_window ? cfg->dedupe_window
                                                 : CF_HUB_DEFAULT_DEDUPE,
                  hub_random(&key[1]));
}

/*
 * A caller built for version 1 has a shorter struct: only that much of
 * it may be read, and the fields added since are 0 (their defaults).
 */
static int hub_config_copy(cf_hub_config *dst, const cf_hub_config *cfg) {
  memset(dst, 0, sizeof(*dst));
  if (cfg == NULL) {
    dst->version = CF_HUB_CONFIG_VERSION;
    return CF_OK;
  }
  if (cfg->version == 1u) {
    memcpy(dst, cfg, offsetof(cf_hub_config, outbound_budget));
    return CF_OK;
  }
  if (cfg->version != CF_HUB_CONFIG_VERSION)
    return CF_ERR_VERSION;
  *dst = *cfg;
  return CF_OK;
}

int cf_hub_new(cf_hub **out, const cf_hub_config *user_cfg) {
  cf_hub_config copy, *cfg = &copy;
  cf_hub tmp, *h;
  int rv;

  if (out == NULL)
    return CF_ERR_INVALID;
  rv = hub_config_copy(&copy, user_cfg);
  if (rv != CF_OK)
    return rv;
  memset(&tmp, 0, sizeof(tmp));
  rv = mem_check(cfg->mem);
  if (rv == CF_OK)
    rv = hub_configure(&tmp, cfg);
  if (rv != CF_OK)
    return rv;
  cf__mem_init(&tmp.mem, cfg->mem);
  h = cf__malloc(&tmp.mem, sizeof(*h));
  if (h == NULL)
    return CF_ERR_NOMEM;
  *h = tmp;
  h->instance_id = cfg->instance_id ? cfg->instance_id : hub_random(h);
  cf_list_init(&h->clients);
  cf_list_init(&h->wake);
  hub_init_tables(h, cfg);
  *out = h;
  return CF_OK;
}

/* --- Destruction and re-entrancy ----------------------------------------- */

static void hub_detach_queue(cf_hub *h) {
  static const cf_queue_callbacks none = {.version =
                                              CF_QUEUE_CALLBACKS_VERSION};

  /* The queue may outlive the hub: it must not call back into it. */
  if (h->queue != NULL)
    cf_queue_set_callbacks(h->queue, &none, NULL);
  h->queue = NULL;
  h->queue_state = CF_QUEUE_STOPPED;
}

static void hub_destroy(cf_hub *h) {
  cf_mem mem = h->mem;

  hub_detach_queue(h);
  while (!cf_list_empty(&h->clients))
    cf__client_destroy(cf_container_of(h->clients.next, cf_client,
                                       hub_link));
  cf__rooms_deinit(&h->rooms);
  cf__dedupe_deinit(&h->dedupe, &h->mem);
  cf__free(&mem, h);
}

int cf__hub_leave(cf_hub *h) {
  if (--h->depth != 0 || !h->freeing)
    return 0;
  hub_destroy(h);
  return 1;
}

void cf_hub_free(cf_hub *h) {
  if (h == NULL)
    return;
  if (h->depth != 0) {
    /* A caller up the stack still uses h; the last one out frees it. */
    h->freeing = 1;
    return;
  }
  hub_destroy(h);
}

uint64_t cf_hub_instance_id(const cf_hub *h) {
  return h != NULL ? h->instance_id : 0;
}

void cf_hub_get_stats(const cf_hub *h, cf_hub_stats *st, size_t size) {
  cf_hub_stats s;

  if (h == NULL || st == NULL)
    return;
  s = h->stats;
  s.rooms = h->rooms.count;
  s.history_bytes = h->rooms.hist_bytes;
  s.outbound_bytes = cf__tally_cost(&h->tally);
  memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
}

/* --- Queue glue ----------------------------------------------------------- */

static void hub_on_message(cf_queue *q, const cf_envelope *env, void *ud) {
  (void)q;
  /* Errors here have nobody to go to; stats already tell the story. */
  (void)cf_hub_deliver(ud, env);
}

static void hub_on_state(cf_queue *q, int state, void *ud) {
  cf_hub *h = ud;

  (void)q;
  h->queue_state = state;
}

int cf_hub_attach_queue(cf_hub *h, cf_queue *q) {
  static const cf_queue_callbacks cbs = {
      .version = CF_QUEUE_CALLBACKS_VERSION,
      .on_message = hub_on_message,
      .on_state = hub_on_state,
  };
  int rv;

  if (h == NULL)
    return CF_ERR_INVALID;
  if (q != NULL) {
    rv = cf_queue_set_callbacks(q, &cbs, h);
    if (rv != CF_OK)
      return rv;
  }
  if (h->queue != q)
    hub_detach_queue(h);
  h->queue = q;
  h->queue_state = q != NULL ? cf_queue_state_get(q) : CF_QUEUE_STOPPED;
  return CF_OK;
}

/* Hands env to the attached queue (there must be one), counting. */
static int hub_queue_send(cf_hub *h, const cf_envelope *env) {
  int rv = cf_queue_publish(h->queue, env);

  if (rv == CF_OK)
    h->stats.queue_published++;
  else
    h->stats.queue_errors++;
  return rv;
}

static int hub_queue_publish(cf_hub *h, const cf_msg *m) {
  cf_envelope env;

  if (h->queue == NULL)
    return CF_OK;
  cf__msg_envelope(m, &env);
  return hub_queue_send(h, &env);
}

/* --- Publish and deliver -------------------------------------------------- */

static int hub_check(const cf_hub *h, const char *room, size_t room_len,
                     uint32_t flags, const void *data, size_t len) {
  if (h->freeing)
    return CF_ERR_CLOSED;
  if (cf__room_name_check(room, room_len) != CF_OK ||
      (flags & ~CF_MSG_KIND_MASK) != 0 || (data == NULL && len != 0))
    return CF_ERR_INVALID;
  if (len > h->max_message)
    return CF_ERR_TOO_BIG;
  return CF_OK;
}

/* The framed, shared message; CF_ERR_NOMEM or the framer's error. */
static int hub_msg(cf_hub *h, const char *room, size_t room_len,
                   uint32_t flags, const void *data, size_t len,
                   cf_msg **out) {
  cf_msg *m = cf__msg_new(&h->mem, room, room_len, flags, data, len);
  int rv;

  if (m == NULL)
    return CF_ERR_NOMEM;
  rv = cf__msg_frame(m, h->framer, h->user_data);
  if (rv != CF_OK) {
    cf_msg_unref(m);
    return rv;
  }
  *out = m;
  return CF_OK;
}

/*
 * Where a message goes here: its room, found or made before anything is
 * committed, so that nothing can fail once a queue has taken it. r is
 * NULL when no room is wanted, or none can be had with every room in use:
 * then nobody here reads the room and only its history is lost.
 */
typedef struct hub_dest {
  cf_room *r;
  int fresh; /* r is prepared, not yet in the table */
} hub_dest;

/* CF_OK or CF_ERR_NOMEM; either way no room was added or removed. */
static int hub_dest_prepare(cf_hub *h, const cf_msg *m, hub_dest *d) {
  const char *name = (const char *)m->buf;
  int rv;

  d->fresh = 0;
  d->r = cf__rooms_find(&h->rooms, name, m->room_len);
  if (d->r != NULL)
    return cf__room_hist_reserve(&h->rooms, d->r);
  if (h->rooms.history == 0)
    return CF_OK;
  rv = cf__rooms_prepare(&h->rooms, 1, &d->r);
  if (rv == CF_ERR_LIMIT)
    return CF_OK;
  d->fresh = rv == CF_OK;
  return rv;
}

static void hub_dest_cancel(cf_hub *h, hub_dest *d) {
  if (d->fresh)
    cf__room_discard(&h->rooms, d->r);
  d->r = NULL;
}

/* Phase 1 for one prepared message: local members and history. */
static void hub_dest_commit(cf_hub *h, hub_dest *d, cf_msg *m) {
  if (d->r == NULL)
    return;
  if (d->fresh &&
      cf__rooms_insert(&h->rooms, d->r, (const char *)m->buf,
                       m->room_len) != CF_OK) {
    hub_dest_cancel(h, d);
    return;
  }
  cf__hub_fanout(h, d->r, m);
  cf__hub_budget_check(h);
  cf__room_hist_push(&h->rooms, d->r, m);
  cf__room_settle(&h->rooms, d->r);
}

/* Whether a message for room would reach anyone or anything here. */
static int hub_wants(const cf_hub *h, const char *room, size_t room_len) {
  return h->rooms.history != 0 ||
         cf__rooms_find(&h->rooms, room, room_len) != NULL;
}

/*
 * The queue comes first so that a refusal leaves no trace: nothing
 * delivered here, nothing in history, the seq not spent (a gap would
 * stall receivers that restore per-origin order). Rooms are prepared
 * before it, as nothing may fail after it said yes; in between no
 * callback runs, as backends never call back from inside publish. And
 * it all happens before the drain: a publish made from a wake callback
 * reaches the queue after this one, as it reaches the outboxes.
 */
static int hub_publish(cf_hub *h, const char *room, size_t room_len,
                       uint32_t flags, const void *data, size_t len) {
  hub_dest d;
  cf_msg *m;
  int rv = hub_msg(h, room, room_len, flags, data, len, &m);

  if (rv != CF_OK)
    return rv;
  m->origin = h->instance_id;
  m->seq = h->seq + 1;
  m->ts_ms = h->clock_ms != NULL ? h->clock_ms(h->user_data) : 0;
  rv = hub_dest_prepare(h, m, &d);
  if (rv == CF_OK) {
    rv = hub_queue_publish(h, m);
    if (rv != CF_OK)
      hub_dest_cancel(h, &d);
  }
  if (rv != CF_OK) {
    cf_msg_unref(m);
    return rv;
  }
  h->seq++;
  h->stats.published++;
  /*
   * Own ids are not added to the dedupe set: the origin check already
   * drops them, and they would only push out other instances' ids.
   */
  hub_dest_commit(h, &d, m);
  cf_msg_unref(m);
  cf__hub_drain(h);
  return CF_OK;
}

/*
 * CF_HUB_OWN_VIA_QUEUE: the queue is the only way, local clients included,
 * so no shared message is built and nothing is delivered or kept here;
 * that happens in cf_hub_deliver() when the queue hands the envelope
 * back, in its place among the other instances' messages. The seq is
 * spent only once the queue took the envelope, as on the direct path.
 * Nothing calls back, so there is nothing to drain.
 */
static int hub_publish_via_queue(cf_hub *h, const char *room,
                                 size_t room_len, uint32_t flags,
                                 const void *data, size_t len) {
  cf_envelope env;
  int rv;

  if (h->queue == NULL)
    return CF_ERR_STATE;
  env.origin = h->instance_id;
  env.seq = h->seq + 1;
  env.ts_ms = h->clock_ms != NULL ? h->clock_ms(h->user_data) : 0;
  env.room = room;
  env.room_len = room_len;
  env.flags = flags;
  env.data = data;
  env.len = len;
  rv = hub_queue_send(h, &env);
  if (rv != CF_OK)
    return rv;
  h->seq++;
  h->stats.published++;
  return CF_OK;
}

int cf_hub_publish(cf_hub *h, const char *room, size_t room_len,
                   uint32_t flags, const void *data, size_t len) {
  int rv;

  if (h == NULL)
    return CF_ERR_INVALID;
  rv = hub_check(h, room, room_len, flags, data, len);
  if (rv != CF_OK)
    return rv;
  cf__hub_enter(h);
  if (h->flags & CF_HUB_OWN_VIA_QUEUE)
    rv = hub_publish_via_queue(h, room, room_len, flags, data, len);
  else
    rv = hub_publish(h, room, room_len, flags, data, len);
  cf__hub_leave(h);
  return rv;
}

static int hub_deliver(cf_hub *h, const cf_envelope *env) {
  hub_dest d;
  cf_msg *m;
  int rv = cf__dedupe_reserve(&h->dedupe, &h->mem);

  if (rv != CF_OK)
    return rv;
  rv = hub_msg(h, env->room, env->room_len, env->flags, env->data,
               env->len, &m);
  if (rv != CF_OK)
    return rv;
  m->origin = env->origin;
  m->seq = env->seq;
  m->ts_ms = env->ts_ms;
  rv = hub_dest_prepare(h, m, &d);
  if (rv == CF_OK)
    hub_dest_commit(h, &d, m);
  cf_msg_unref(m);
  if (rv != CF_OK)
    return rv;
  /* Only now: a delivery that failed may be retried by the backend. */
  cf__dedupe_add(&h->dedupe, env->origin, env->seq);
  h->stats.received++;
  cf__hub_drain(h);
  return CF_OK;
}

int cf_hub_deliver(cf_hub *h, const cf_envelope *env) {
  int rv;

  if (h == NULL || env == NULL || env->origin == 0 || env->seq == 0)
    return CF_ERR_INVALID;
  rv = hub_check(h, env->room, env->room_len, env->flags, env->data,
                 env->len);
  if (rv != CF_OK)
    return rv;
  /*
   * Own messages were delivered at publish, unless they are meant to
   * come back through the queue: then they are ids like any other.
   */
  if ((env->origin == h->instance_id &&
       !(h->flags & CF_HUB_OWN_VIA_QUEUE)) ||
      cf__dedupe_has(&h->dedupe, env->origin, env->seq)) {
    h->stats.duplicates++;
    return CF_OK;
  }
  if (!hub_wants(h, env->room, env->room_len)) {
    /* Nobody here reads the room and no history is kept: free. */
    h->stats.received++;
    return CF_OK;
  }
  cf__hub_enter(h);
  rv = hub_deliver(h, env);
  cf__hub_leave(h);
  return rv;
}

/* --- Shutdown ------------------------------------------------------------- */

void cf_hub_close_all(cf_hub *h) {
  if (h == NULL || h->freeing || h->close_cursor != NULL)
    return;
  cf__hub_enter(h);
  /*
   * The cursor lives in the hub so that cf_client_free() can move it
   * past a client a callback frees.
   */
  h->close_cursor = h->clients.next;
  while (!h->freeing && h->close_cursor != &h->clients) {
    cf_client *c = cf_container_of(h->close_cursor, cf_client, hub_link);

    h->close_cursor = c->hub_link.next;
    if (c->closing)
      continue;
    c->closing = 1;
    c->ops.close(c, CF_CLOSE_SHUTDOWN, c->user_data);
  }
  h->close_cursor = NULL;
  cf__hub_leave(h);
}
