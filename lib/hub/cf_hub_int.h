/*
 * Internal: the hub and client structs and what the hub's files share.
 *
 * Fan-out runs in two phases. Phase 1 (cf__hub_fanout and friends) only
 * updates outboxes and never calls out, so member lists cannot change
 * under it; clients that need a callback go on the hub's wake list.
 * Phase 2 (cf__hub_drain) pops clients off that list one at a time and
 * calls ops.wake or ops.close. A callback may change anything: a nested
 * publish just feeds and drains the same list, cf_client_free() unlinks
 * the client from it, and cf_hub_free() is deferred (depth/freeing) until
 * the outermost public call returns.
 */
#ifndef CF_HUB_INT_H
#define CF_HUB_INT_H

#include <chatfanout/cf_hub.h>

#include "cf_dedupe.h"
#include "cf_list.h"
#include "cf_outbox.h"
#include "cf_room.h"

/* What cf_client_send() may queue beyond client_buffer. */
#define CF_SEND_ALLOWANCE 4096u

/* Defaults and limits of cf_hub_config. */
#define CF_HUB_DEFAULT_BUFFER (1024u * 1024u)
#define CF_HUB_DEFAULT_MESSAGE (64u * 1024u)
#define CF_HUB_DEFAULT_DEDUPE 8192u
#define CF_HUB_DEFAULT_ROOMS 100000u
#define CF_HUB_MAX_MESSAGE ((size_t)1 << 30)
#define CF_HUB_MAX_HISTORY (1u << 20)
#define CF_HUB_DEFAULT_HISTORY_BYTES ((size_t)64 << 20)

/* Every cf_hub_config.flags bit this version knows. */
#define CF_HUB_FLAGS_KNOWN CF_HUB_OWN_VIA_QUEUE

struct cf_client {
  cf_hub *hub;
  cf_client_ops ops;
  void *user_data;
  cf_list hub_link;  /* in hub->clients, attach order */
  cf_list rooms;     /* cf_member.client_link, join order */
  cf_list wake_link; /* in hub->wake while a callback is due */
  cf_outbox ob;
  /* Told, or about to be told, to close; or shut down by the transport
   * (cf_client_shutdown). No more room traffic. */
  uint8_t closing;
  uint8_t written;   /* the transport took bytes at least once */
  /* 0: the wake_link entry is a wake; else the cf_close_reason due. */
  uint8_t close_due;
  uint8_t shutdown;  /* cf_client_shutdown: never an ops.close for it */
  uint8_t cut;       /* cut off (trimmed) once: never again */
  /* Entries cf_client_send queued since the shutdown still queued, at
   * most ob.count: the newest ones, as the oldest go first. */
  uint32_t shut_sends;
};

struct cf_hub {
  cf_mem mem;
  uint64_t instance_id;    /* never 0 */
  uint64_t seq;            /* last seq published here */
  size_t client_buffer;    /* outbox cost limit per client */
  size_t max_message;      /* payload limit */
  size_t history_bytes;    /* history budget for all rooms */
  uint32_t flags;          /* CF_HUB_* from the config, fixed */
  size_t outbound_budget;  /* all outboxes' wire bytes; 0: no limit */
  uint32_t max_rooms_per_client; /* 0: no limit */
  cf_framer_fn framer;     /* may be NULL */
  uint64_t (*clock_ms)(void *user_data);
  void *user_data;         /* of framer and clock_ms */

  cf_list clients;         /* cf_client.hub_link, attach order */
  cf_list wake;            /* cf_client.wake_link, callbacks due */
  cf_list *close_cursor;   /* next client for cf_hub_close_all(), or NULL */
  cf_rooms rooms;
  cf_dedupe dedupe;
  cf_outbox_tally tally;   /* all outboxes' memory, for the budget */
  cf_queue *queue;         /* borrowed; NULL when none attached */
  int queue_state;         /* last cf_queue_state reported */

  unsigned depth;          /* public calls in progress on this hub */
  int freeing;             /* cf_hub_free() was called inside a call */
  cf_hub_stats stats;
};

/* Marks a public call in progress; pair with cf__hub_leave(). */
static inline void cf__hub_enter(cf_hub *h) {
  h->depth++;
}

/*
 * Ends a public call. Returns 1 when a deferred free happened: the hub
 * and all its clients are gone and must not be touched.
 */
int cf__hub_leave(cf_hub *h);

/* Phase 1: queues m to every member of r that is not closing. */
void cf__hub_fanout(cf_hub *h, cf_room *r, cf_msg *m);

/*
 * Queues m to c (phase 1 rules: limit check, slow handling, wake list).
 * limit is the cost the outbox may reach. Returns CF_OK, or
 * CF_ERR_QUEUE_FULL / CF_ERR_NOMEM when m was not queued.
 */
int cf__client_queue(cf_hub *h, cf_client *c, cf_msg *m, size_t limit);

/* Puts c on the wake list for a wake, unless already there. */
void cf__hub_want_wake(cf_hub *h, cf_client *c);

/*
 * Cuts c off for reason (CF_CLOSE_SLOW or CF_CLOSE_NOMEM): drops its
 * queued whole messages, marks it closing, counts it and schedules
 * close(reason). A client its transport shut down keeps what was sent
 * since, and is neither told nor counted: the caller counts it.
 */
void cf__client_cut_off(cf_hub *h, cf_client *c, int reason);

/*
 * Phase 1 too: when the outboxes' memory (h->tally: shared bytes once,
 * plus the entries) is over outbound_budget, cuts
 * off (CF_CLOSE_SLOW) the clients with the largest backlog until they
 * do not (cf_budget.c). Cheap when under: one comparison.
 */
void cf__hub_budget_shed(cf_hub *h);

static inline void cf__hub_budget_check(cf_hub *h) {
  if (h->outbound_budget != 0 &&
      cf__tally_cost(&h->tally) > h->outbound_budget)
    cf__hub_budget_shed(h);
}

/* Phase 2: runs due callbacks until the list is empty or the hub frees. */
void cf__hub_drain(cf_hub *h);

/* Frees c without callbacks (used by cf_client_free and cf_hub_free). */
void cf__client_destroy(cf_client *c);

#endif /* CF_HUB_INT_H */
