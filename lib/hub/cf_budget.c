/*
 * The hub-wide outbound budget: when all outboxes together hold more
 * than outbound_budget wire bytes, the clients with the largest backlog
 * are cut off as slow consumers until the total is back under it.
 *
 * Why a scan and not a heap. Being over budget is the exception (an
 * overloaded or attacked server); the fan-out path must not pay for it.
 * A max-heap or a list bucketed by backlog would have to be updated on
 * every queue and every write, for every recipient. Instead the fan-out
 * keeps only the running total it already had (stats.outbox_bytes) and
 * this file runs when that total is over: one pass sums the backlog of
 * the live clients per power-of-two class, which tells how many classes,
 * from the top, must go to free the excess; a second pass cuts off every
 * client above that class and, within it, as many as needed. Victims are
 * thus the largest backlogs to within a factor of two, at two passes
 * over the clients per shedding event whatever the number of victims,
 * and each client is shed at most once in its life.
 */
#include "cf_hub_int.h"

#define BUDGET_CLASSES 64

/* floor(log2(n)) for n > 0: the backlog's class. */
static unsigned budget_class(size_t n) {
  return 63u - (unsigned)__builtin_clzll((unsigned long long)n);
}

static int budget_over(const cf_hub *h) {
  return h->stats.outbox_bytes > h->outbound_budget;
}

static int budget_candidate(const cf_client *c) {
  return !c->closing && c->ob.bytes != 0;
}

/*
 * The lowest class to shed: the classes from the top down to it hold at
 * least the excess. Returns BUDGET_CLASSES when no client can be shed.
 */
static unsigned budget_threshold(const cf_hub *h) {
  uint64_t sum[BUDGET_CLASSES] = {0};
  uint64_t excess = h->stats.outbox_bytes - h->outbound_budget, acc = 0;
  unsigned t = BUDGET_CLASSES, k;
  const cf_list *it;

  for (it = h->clients.next; it != &h->clients; it = it->next) {
    const cf_client *c = cf_container_of(it, cf_client, hub_link);

    if (budget_candidate(c))
      sum[budget_class(c->ob.bytes)] += c->ob.bytes;
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

static void budget_cut(cf_hub *h, cf_client *c) {
  h->stats.budget_closes++;
  cf__client_cut_off(h, c, CF_CLOSE_SLOW);
}

/* One round of the two passes; returns the clients cut off. */
static unsigned budget_round(cf_hub *h) {
  unsigned t = budget_threshold(h), cut = 0;
  cf_list *it;

  if (t == BUDGET_CLASSES)
    return 0;
  /* Every client above the threshold class must go anyway. */
  for (it = h->clients.next; it != &h->clients; it = it->next) {
    cf_client *c = cf_container_of(it, cf_client, hub_link);

    if (budget_candidate(c) && budget_class(c->ob.bytes) > t) {
      budget_cut(h, c);
      cut++;
    }
  }
  for (it = h->clients.next; it != &h->clients && budget_over(h);
       it = it->next) {
    cf_client *c = cf_container_of(it, cf_client, hub_link);

    if (budget_candidate(c) && budget_class(c->ob.bytes) == t) {
      budget_cut(h, c);
      cut++;
    }
  }
  return cut;
}

void cf__hub_budget_shed(cf_hub *h) {
  /*
   * A cut-off client keeps a partly written head message, so one round
   * may leave the total a little over; each round cuts at least one
   * client or finds none left to cut, so this ends.
   */
  while (budget_over(h) && budget_round(h) != 0)
    ;
}
