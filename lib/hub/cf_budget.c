/*
 * The hub-wide outbound budget: when all outboxes together hold more
 * memory than outbound_budget, the clients with the largest backlog
 * are cut off as slow consumers until the total is back under it (one
 * its transport is closing already only loses its queued messages).
 *
 * What counts is memory, not bytes per recipient: a message queued to
 * a thousand clients is one shared copy plus a thousand entries. So a
 * burst fanned out to a big room (queued before any write happens) does
 * not look like a thousand slow readers, while a slow reader, the only
 * one still holding old messages, frees them when cut off.
 *
 * Why a scan and not a heap. Being over budget is the exception (an
 * overloaded or attacked server); the fan-out path must not pay for it.
 * A max-heap or a list bucketed by backlog would have to be updated on
 * every queue and every write, for every recipient. Instead the fan-out
 * keeps only running totals (h->tally: two counters per queued entry)
 * and this file runs when they are over: one pass sums the backlog of
 * the live clients per power-of-two class, which tells how many classes,
 * from the top, must go to free the excess; a second pass cuts off every
 * client above that class; within it the largest go first, found by a
 * pass each (BUDGET_EXACT at most, then in attach order). So a shedding
 * event costs a few passes over the clients whatever the number of
 * victims, victims are the largest backlogs (exactly, or to within a
 * factor of two past BUDGET_EXACT), and each client is shed at most
 * once in its life.
 */
#include "cf_hub_int.h"

#define BUDGET_CLASSES 64
#define BUDGET_EXACT 8 /* victims of the threshold class picked by size */

/* floor(log2(n)) for n > 0: the backlog's class. */
static unsigned budget_class(size_t n) {
  return 63u - (unsigned)__builtin_clzll((unsigned long long)n);
}

static int budget_over(const cf_hub *h) {
  return cf__tally_cost(&h->tally) > h->outbound_budget;
}

/*
 * A client the transport never wrote to cannot be a slow reader yet: a
 * joining one holds its history and, in front of it, what its transport
 * queued first (a WebSocket handshake answer), which a cut-off would
 * drop. It becomes a candidate after its first write. One cut off
 * already never is again, nor is one the hub told to close. One its
 * transport is closing on its own (cf_client_shutdown) still is: else
 * a peer could stop reading, then close, and keep its backlog for the
 * close timeout while others are cut for it; its cut keeps the
 * transport's last bytes (cf__client_cut_off).
 */
static int budget_candidate(const cf_client *c) {
  return !c->cut && (!c->closing || c->shutdown) && c->written &&
         c->ob.count != 0;
}

/* A client's backlog: what it would free if it were alone holding it. */
static size_t budget_backlog(const cf_client *c) {
  return cf__outbox_cost(&c->ob);
}

/*
 * The lowest class to shed: the classes from the top down to it hold at
 * least the excess. Returns BUDGET_CLASSES when no client can be shed.
 */
static unsigned budget_threshold(const cf_hub *h) {
  uint64_t sum[BUDGET_CLASSES] = {0};
  uint64_t excess = cf__tally_cost(&h->tally) - h->outbound_budget;
  uint64_t acc = 0;
  unsigned t = BUDGET_CLASSES, k;
  const cf_list *it;

  for (it = h->clients.next; it != &h->clients; it = it->next) {
    const cf_client *c = cf_container_of(it, cf_client, hub_link);

    if (budget_candidate(c))
      sum[budget_class(budget_backlog(c))] += budget_backlog(c);
  }
  for (k = BUDGET_CLASSES; k-- > 0;) {
    if (sum[k] == 0)
      continue;
    t = k;
    acc += sum[k];
    if (acc >= excess)
      break;
  }
  return t;
}

/* A shut-down client is trimmed only, counted apart: no close is sent. */
static void budget_cut(cf_hub *h, cf_client *c) {
  if (c->shutdown)
    h->stats.budget_trims++;
  else
    h->stats.budget_closes++;
  cf__client_cut_off(h, c, CF_CLOSE_SLOW);
}

/* The largest candidate of class t, or NULL. */
static cf_client *budget_largest(cf_hub *h, unsigned t) {
  cf_client *best = NULL;
  cf_list *it;

  for (it = h->clients.next; it != &h->clients; it = it->next) {
    cf_client *c = cf_container_of(it, cf_client, hub_link);

    if (budget_candidate(c) && budget_class(budget_backlog(c)) == t &&
        (best == NULL || budget_backlog(c) > budget_backlog(best)))
      best = c;
  }
  return best;
}

/* One round of the passes; returns the clients cut off. */
static unsigned budget_round(cf_hub *h) {
  unsigned t = budget_threshold(h), cut = 0, k;
  cf_client *c;
  cf_list *it;

  if (t == BUDGET_CLASSES)
    return 0;
  /* Every client above the threshold class must go anyway. */
  for (it = h->clients.next; it != &h->clients; it = it->next) {
    c = cf_container_of(it, cf_client, hub_link);
    if (budget_candidate(c) && budget_class(budget_backlog(c)) > t) {
      budget_cut(h, c);
      cut++;
    }
  }
  for (k = 0; k < BUDGET_EXACT && budget_over(h); k++) {
    if ((c = budget_largest(h, t)) == NULL)
      return cut;
    budget_cut(h, c);
    cut++;
  }
  for (it = h->clients.next; it != &h->clients && budget_over(h);
       it = it->next) {
    c = cf_container_of(it, cf_client, hub_link);
    if (budget_candidate(c) && budget_class(budget_backlog(c)) == t) {
      budget_cut(h, c);
      cut++;
    }
  }
  return cut;
}

void cf__hub_budget_shed(cf_hub *h) {
  /*
   * A cut-off client keeps a partly written head message (a shut-down
   * one its transport's last bytes too), and messages other clients
   * still hold stay, so one round may free less than it counted on and
   * leave the total over; each round cuts at least one client or finds
   * none left to cut, so this ends.
   */
  while (budget_over(h) && budget_round(h) != 0)
    ;
}
