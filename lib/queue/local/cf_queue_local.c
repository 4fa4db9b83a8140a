/*
 * The local backend: queues on one in-process bus receive what the others
 * publish.
 *
 * Fan-out without copies. A publish makes one record (envelope, room and
 * payload in one block) and appends it to the bus-wide log. Each
 * receiving queue keeps a cursor into the log, so a record is shared by
 * all its receivers and counts how many have yet to consume it; the last
 * one frees it. The per-receiver work at publish is bookkeeping only
 * (bound check, cursor, byte count, timer), never an allocation.
 *
 * Which queues receive a record: those up (started, not flushed) at
 * publish time, except the publisher. A queue's cursor is set only while
 * it is up and reset when it stops, so every record after its cursor is
 * for it unless it published it itself; the cursor walk skips those.
 */
#include <chatfanout/cf_queue.h>

#include <assert.h>
#include <string.h>

#include "cf_list.h"
#include "cf_mem.h"
#include "cf_queue_int.h"

#define LOCAL_MAX_PENDING_DEFAULT ((size_t)16 * 1024 * 1024)

/* One published envelope, shared by every queue that receives it. */
typedef struct lrec {
  cf_list link;    /* in bus->log, publish order */
  uint64_t bseq;   /* bus-wide publish number, increasing */
  uint64_t from;   /* qid of the publisher, which never gets it */
  size_t refs;     /* receivers that have not consumed it yet */
  size_t size;     /* bytes charged to each receiver's pending */
  cf_envelope env; /* room and data point into bytes after the struct */
} lrec;

typedef struct lq {
  cf_list link;       /* in bus->queues; unlinked until fully created */
  cf_queue_bus *bus;
  cf_queue *q;        /* the wrapper; NULL only while being created */
  cf_mem mem;         /* this queue's allocator */
  uint64_t qid;       /* unique on the bus, from 1 */
  cf_loop loop;       /* valid when has_loop */
  int has_loop;       /* 0: delivered by cf_queue_bus_dispatch() */
  void *timer;        /* one-shot delivery timer, NULL without a loop */
  int armed;          /* the timer is set and has not fired yet */
  int up;             /* started and not flushed: receives records */
  int delivering;     /* inside lq_deliver(); stops nested delivery */
  lrec *cur;          /* next record to deliver, NULL when none */
  size_t pending;     /* bytes of the records from cur on, for us */
  size_t max_pending; /* bound on pending, bytes */
} lq;

struct cf_queue_bus {
  cf_mem mem;        /* records and the bus itself */
  cf_list queues;    /* lq.link, creation order */
  cf_list log;       /* lrec.link, publish order */
  uint64_t next_bseq;
  uint64_t next_qid;
  size_t nqueues;
  int dispatching;   /* inside cf_queue_bus_dispatch() */
  cf_list *iter;     /* dispatch's next queue node, kept valid on unlink */
};

/* --- records ------------------------------------------------------------ */

static lrec *rec_of(cf_list *n) {
  return cf_container_of(n, lrec, link);
}

/* Allocation size of a record for env; 0 when it would overflow. */
static size_t rec_size(const cf_envelope *env) {
  size_t fixed = sizeof(lrec) + env->room_len;

  if (env->len > SIZE_MAX - fixed)
    return 0;
  return fixed + env->len;
}

static lrec *rec_new(cf_queue_bus *b, const cf_envelope *env, size_t size,
                     uint64_t from) {
  lrec *r = cf__malloc(&b->mem, size);
  char *room;

  if (r == NULL)
    return NULL;
  room = (char *)(r + 1);
  memcpy(room, env->room, env->room_len);
  if (env->len != 0)
    memcpy(room + env->room_len, env->data, env->len);
  r->env = *env;
  r->env.room = room;
  r->env.data = room + env->room_len;
  r->bseq = b->next_bseq++;
  r->from = from;
  r->refs = 0;
  r->size = size;
  cf_list_append(&b->log, &r->link);
  return r;
}

static void rec_unref(cf_queue_bus *b, lrec *r) {
  assert(r->refs > 0);
  if (--r->refs != 0)
    return;
  cf_list_remove(&r->link);
  cf__free(&b->mem, r);
}

/* --- per-queue cursor --------------------------------------------------- */

static lq *lq_of(cf_list *n) {
  return cf_container_of(n, lq, link);
}

/* Moves l's cursor past its current record, uncharging it. */
static void lq_advance(lq *l) {
  lrec *r = l->cur;
  cf_list *n;

  l->pending -= r->size;
  l->cur = NULL;
  for (n = r->link.next; n != &l->bus->log; n = n->next) {
    if (rec_of(n)->from != l->qid) {
      l->cur = rec_of(n);
      return;
    }
  }
}

/* Releases every record still waiting for l. */
static void lq_drop(lq *l) {
  lrec *r;

  while ((r = l->cur) != NULL) {
    lq_advance(l);
    rec_unref(l->bus, r);
  }
  assert(l->pending == 0);
}

static void lq_arm(lq *l) {
  if (!l->has_loop || l->armed)
    return;
  l->armed = 1;
  l->loop.timer_set(l->loop.data, l->timer, 0.0);
}

static void lq_disarm(lq *l) {
  if (!l->armed)
    return;
  l->armed = 0;
  l->loop.timer_set(l->loop.data, l->timer, -1.0);
}

/*
 * Delivers l's records published before this call, in publish order.
 * Ones published by the callbacks wait for the next round, so a callback
 * that publishes never recurses and a ping-pong cannot starve the loop.
 * The caller holds l->q (cf__queue_enter), so l outlives the callbacks;
 * stops early once the queue is being freed or stopped. Returns the
 * number of deliveries.
 */
static size_t lq_deliver(lq *l) {
  uint64_t end = l->bus->next_bseq;
  size_t n = 0;
  lrec *r;

  if (l->delivering)
    return 0;
  l->delivering = 1;
  while ((r = l->cur) != NULL && r->bseq < end && l->up &&
         !cf__queue_freeing(l->q)) {
    /* Advance first so a nested stop or drop never sees r again; our
     * reference keeps r alive through the callback. */
    lq_advance(l);
    cf_queue_report_message(l->q, &r->env);
    rec_unref(l->bus, r);
    n++;
  }
  l->delivering = 0;
  return n;
}

static void lq_on_timer(void *arg) {
  lq *l = arg;
  cf_queue *q = l->q;

  /* Cleared first, so what the callbacks publish re-arms the timer for
   * the next loop iteration. */
  l->armed = 0;
  cf__queue_enter(q);
  lq_deliver(l);
  cf__queue_leave(q);
}

/* --- ops ---------------------------------------------------------------- */

static int lq_start(void *impl) {
  lq *l = impl;

  l->up = 1;
  cf_queue_report_state(l->q, CF_QUEUE_UP);
  return CF_OK;
}

/* Would adding size bytes put any receiver of a record from l over? */
static int bus_full(const lq *l, size_t size) {
  cf_list *n;

  for (n = l->bus->queues.next; n != &l->bus->queues; n = n->next) {
    const lq *o = lq_of(n);
    if (o == l || !o->up)
      continue;
    if (size > o->max_pending || o->pending > o->max_pending - size)
      return 1;
  }
  return 0;
}

static int lq_publish(void *impl, const cf_envelope *env) {
  lq *l = impl;
  size_t size = rec_size(env);
  cf_list *n;
  lrec *r = NULL;

  if (size == 0)
    return CF_ERR_TOO_BIG;
  /* Check every receiver before touching any: all or nothing. */
  if (bus_full(l, size))
    return CF_ERR_QUEUE_FULL;
  for (n = l->bus->queues.next; n != &l->bus->queues; n = n->next) {
    lq *o = lq_of(n);
    if (o == l || !o->up)
      continue;
    if (r == NULL) {
      /* Made only once a receiver exists: nobody up, nothing kept. */
      r = rec_new(l->bus, env, size, l->qid);
      if (r == NULL)
        return CF_ERR_NOMEM;
    }
    r->refs++;
    o->pending += size;
    if (o->cur == NULL)
      o->cur = r;
    lq_arm(o);
  }
  return CF_OK;
}

/* Local delivery never waits, so timeout is not needed: what is pending
 * for this queue is delivered now, the rest dropped on stop. */
static int lq_flush(void *impl, double timeout) {
  lq *l = impl;

  (void)timeout;
  if (l->up)
    lq_deliver(l);
  if (cf__queue_freeing(l->q))
    return CF_OK;
  l->up = 0;
  lq_drop(l);
  lq_disarm(l);
  cf_queue_report_state(l->q, CF_QUEUE_STOPPED);
  return CF_OK;
}

static void lq_unlink(lq *l) {
  cf_queue_bus *b = l->bus;

  if (!cf_list_linked(&l->link))
    return;
  /* Keep a running dispatch's cursor off the node going away. */
  if (b->iter == &l->link)
    b->iter = l->link.next;
  cf_list_remove(&l->link);
  b->nqueues--;
}

static void lq_destroy(void *impl) {
  lq *l = impl;
  cf_mem mem = l->mem;

  /* The wrapper defers destroy while anyone holds the queue. */
  assert(!l->delivering);
  lq_drop(l);
  if (l->timer != NULL)
    l->loop.timer_free(l->loop.data, l->timer);
  lq_unlink(l);
  cf__free(&mem, l);
}

/* Nothing goes over a network; what waits is what others published for
 * this queue and it has not yet delivered. */
static void lq_stats(void *impl, cf_queue_stats *st) {
  const lq *l = impl;

  st->buffered_bytes = l->pending;
}

static const cf_queue_ops local_ops = {
  .version = CF_QUEUE_OPS_VERSION,
  .name = "local",
  .start = lq_start,
  .publish = lq_publish,
  .flush = lq_flush,
  .destroy = lq_destroy,
  .errmsg = NULL, /* nothing can fail beyond the return codes */
  .stats = lq_stats,
};

/* --- public --------------------------------------------------------------- */

int cf_queue_bus_new(cf_queue_bus **out, const cf_mem *mem) {
  cf_mem m;
  cf_queue_bus *b;

  if (out == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  cf__mem_init(&m, mem);
  b = cf__calloc(&m, 1, sizeof(*b));
  if (b == NULL)
    return CF_ERR_NOMEM;
  b->mem = m;
  cf_list_init(&b->queues);
  cf_list_init(&b->log);
  b->next_bseq = 1;
  *out = b;
  return CF_OK;
}

int cf_queue_bus_free(cf_queue_bus *bus) {
  cf_mem mem;

  if (bus == NULL)
    return CF_OK;
  if (bus->nqueues != 0 || bus->dispatching)
    return CF_ERR_STATE;
  /* Records are owned by their receivers, and none are left. */
  assert(cf_list_empty(&bus->log));
  mem = bus->mem;
  cf__free(&mem, bus);
  return CF_OK;
}

/* One pass over the bus's loop-less queues. */
static size_t bus_dispatch_pass(cf_queue_bus *b) {
  cf_list *n;
  size_t total = 0;

  for (n = b->queues.next; n != &b->queues; n = b->iter) {
    lq *l = lq_of(n);
    cf_queue *q = l->q;

    b->iter = n->next;
    if (l->has_loop || l->cur == NULL)
      continue;
    /* Callbacks may free any queue: this one is held (freed at the
     * leave), the others unlink at once and move b->iter along. */
    cf__queue_enter(q);
    total += lq_deliver(l);
    cf__queue_leave(q);
  }
  return total;
}

size_t cf_queue_bus_dispatch(cf_queue_bus *bus) {
  size_t total = 0, n;

  /* A nested call would reorder deliveries; the running one will reach
   * whatever the callbacks published. */
  if (bus == NULL || bus->dispatching)
    return 0;
  bus->dispatching = 1;
  do {
    n = bus_dispatch_pass(bus);
    total += n;
  } while (n != 0);
  bus->iter = NULL;
  bus->dispatching = 0;
  return total;
}

static int lq_new(lq **out, cf_queue_bus *bus, const cf_loop *loop,
                  size_t max_pending, const cf_mem *mem) {
  cf_mem m;
  lq *l;

  cf__mem_init(&m, mem);
  l = cf__calloc(&m, 1, sizeof(*l));
  if (l == NULL)
    return CF_ERR_NOMEM;
  cf_list_init(&l->link);
  l->bus = bus;
  l->mem = m;
  l->max_pending = max_pending ? max_pending : LOCAL_MAX_PENDING_DEFAULT;
  if (loop != NULL) {
    l->loop = *loop;
    l->has_loop = 1;
    l->timer = loop->timer_new(loop->data, lq_on_timer, l);
    if (l->timer == NULL) {
      cf__free(&m, l);
      return CF_ERR_NOMEM;
    }
  }
  *out = l;
  return CF_OK;
}

int cf_queue_local_new(cf_queue **out, cf_queue_bus *bus,
                       const cf_loop *loop, size_t max_pending,
                       const cf_mem *mem) {
  cf_queue *q;
  lq *l;
  int rv;

  if (out == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  if (bus == NULL)
    return CF_ERR_INVALID;
  if (loop != NULL && (rv = cf_loop_check(loop)) != CF_OK)
    return rv;
  rv = lq_new(&l, bus, loop, max_pending, mem);
  if (rv != CF_OK)
    return rv;
  /* On failure cf_queue_new has already destroyed l (ops are valid). */
  rv = cf_queue_new(&q, &local_ops, l, mem);
  if (rv != CF_OK)
    return rv;
  l->q = q;
  l->qid = ++bus->next_qid;
  cf_list_append(&bus->queues, &l->link);
  bus->nqueues++;
  *out = q;
  return CF_OK;
}
