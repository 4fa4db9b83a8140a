/*
 * The cf_queue wrapper: checks callers' arguments, owns the backend's
 * impl, keeps the reported state and routes reports to the callbacks.
 */
#include "cf_queue_int.h"

#include <stdint.h>
#include <string.h>

#include "cf_envelope.h"
#include "cf_mem.h"

struct cf_queue {
  cf_mem mem;
  cf_queue_ops ops;       /* copied at creation */
  void *impl;             /* backend state, destroyed with the queue */
  cf_queue_callbacks cbs; /* all NULL until cf_queue_set_callbacks() */
  void *user_data;        /* given with cbs */
  int state;              /* last reported cf_queue_state */
  /* Counters for cf_queue_get_stats(), as cf_queue_stats says. */
  uint64_t published;
  uint64_t publish_errors;
  uint64_t received;
  unsigned depth;         /* holds: wrapper calls and backend batches */
  unsigned started : 1;   /* start succeeded, STOPPED not reported since */
  unsigned freeing : 1;   /* cf_queue_free() came during a hold */
};

const char *cf_queue_state_name(int state) {
  switch (state) {
  case CF_QUEUE_STOPPED: return "stopped";
  case CF_QUEUE_STARTING: return "starting";
  case CF_QUEUE_UP: return "up";
  case CF_QUEUE_DEGRADED: return "degraded";
  case CF_QUEUE_DOWN: return "down";
  default: return "unknown";
  }
}

/*
 * Only version 1 exists, so the whole struct is copied. A later version
 * must copy as many slots as the caller's version has and zero the rest,
 * and check the version before calling a newer slot.
 */
static int ops_check(const cf_queue_ops *ops) {
  if (ops == NULL)
    return CF_ERR_INVALID;
  if (ops->version != CF_QUEUE_OPS_VERSION)
    return CF_ERR_VERSION;
  if (ops->name == NULL || ops->start == NULL || ops->publish == NULL ||
      ops->flush == NULL || ops->destroy == NULL)
    return CF_ERR_INVALID;
  return CF_OK;
}

int cf_queue_new(cf_queue **out, const cf_queue_ops *ops, void *impl,
                 const cf_mem *mem) {
  cf_mem m;
  cf_queue *q;
  int rv;

  if (out == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  rv = ops_check(ops);
  if (rv != CF_OK)
    return rv;
  cf__mem_init(&m, mem);
  q = cf__calloc(&m, 1, sizeof(*q));
  if (q == NULL) {
    /* The contract hands impl over even when we fail for lack of memory,
     * so the caller has one cleanup path. */
    ops->destroy(impl);
    return CF_ERR_NOMEM;
  }
  q->mem = m;
  q->ops = *ops;
  q->impl = impl;
  q->state = CF_QUEUE_STOPPED;
  *out = q;
  return CF_OK;
}

static void queue_destroy(cf_queue *q) {
  cf_mem mem = q->mem;

  /* Reports from inside destroy (there should be none) are ignored. */
  q->freeing = 1;
  q->ops.destroy(q->impl);
  cf__free(&mem, q);
}

void cf_queue_free(cf_queue *q) {
  if (q == NULL)
    return;
  if (q->depth > 0) {
    /* A caller up the stack still uses q or impl: the last leave frees. */
    q->freeing = 1;
    return;
  }
  queue_destroy(q);
}

void cf__queue_enter(cf_queue *q) {
  q->depth++;
}

int cf__queue_leave(cf_queue *q) {
  if (--q->depth != 0 || !q->freeing)
    return 0;
  queue_destroy(q);
  return 1;
}

int cf__queue_freeing(const cf_queue *q) {
  return q->freeing;
}

int cf_queue_set_callbacks(cf_queue *q, const cf_queue_callbacks *cbs,
                           void *user_data) {
  if (q == NULL || cbs == NULL)
    return CF_ERR_INVALID;
  if (cbs->version != CF_QUEUE_CALLBACKS_VERSION)
    return CF_ERR_VERSION;
  q->cbs = *cbs;
  q->user_data = user_data;
  return CF_OK;
}

int cf_queue_start(cf_queue *q) {
  int rv;

  if (q == NULL)
    return CF_ERR_INVALID;
  if (q->freeing)
    return CF_ERR_CLOSED;
  if (q->started)
    return CF_ERR_STATE;
  /* Set first: the backend may report states from inside start. */
  q->started = 1;
  cf__queue_enter(q);
  rv = q->ops.start(q->impl);
  if (rv != CF_OK)
    q->started = 0;
  cf__queue_leave(q);
  return rv;
}

static int queue_publish(cf_queue *q, const cf_envelope *env) {
  if (cf__envelope_check(env) != CF_OK)
    return CF_ERR_INVALID;
  if (q->freeing)
    return CF_ERR_CLOSED;
  return q->ops.publish(q->impl, env);
}

int cf_queue_publish(cf_queue *q, const cf_envelope *env) {
  int rv;

  if (q == NULL)
    return CF_ERR_INVALID;
  /* Every refusal counts, ours too: the caller lost that envelope. */
  rv = queue_publish(q, env);
  if (rv == CF_OK)
    q->published++;
  else
    q->publish_errors++;
  return rv;
}

int cf_queue_flush(cf_queue *q, double timeout) {
  int rv;

  /* The negated test also refuses NaN. */
  if (q == NULL || !(timeout >= 0.0))
    return CF_ERR_INVALID;
  if (q->freeing)
    return CF_ERR_CLOSED;
  cf__queue_enter(q);
  rv = q->ops.flush(q->impl, timeout);
  cf__queue_leave(q);
  return rv;
}

int cf_queue_state_get(const cf_queue *q) {
  return q != NULL ? q->state : CF_QUEUE_STOPPED;
}

void cf_queue_get_stats(const cf_queue *q, cf_queue_stats *st,
                        size_t size) {
  cf_queue_stats s;

  if (q == NULL || st == NULL)
    return;
  /* Zeroed: a backend without stats (or with fewer) reports zeros, and
   * a caller knowing a bigger struct gets zeros past ours. */
  memset(&s, 0, sizeof(s));
  memset(st, 0, size);
  if (q->ops.stats != NULL)
    q->ops.stats(q->impl, &s);
  /* Set after the backend's call so that it cannot overwrite them. */
  s.published = q->published;
  s.publish_errors = q->publish_errors;
  s.received = q->received;
  memcpy(st, &s, size < sizeof(s) ? size : sizeof(s));
}

const char *cf_queue_name(const cf_queue *q) {
  return q != NULL ? q->ops.name : "";
}

const char *cf_queue_errmsg(const cf_queue *q) {
  const char *s;

  if (q == NULL || q->ops.errmsg == NULL)
    return "";
  s = q->ops.errmsg(q->impl);
  return s != NULL ? s : "";
}

void cf_queue_report_message(cf_queue *q, const cf_envelope *env) {
  if (q == NULL || env == NULL || q->freeing || !q->cbs.on_message)
    return;
  q->received++;
  cf__queue_enter(q);
  q->cbs.on_message(q, env, q->user_data);
  cf__queue_leave(q);
}

void cf_queue_report_state(cf_queue *q, int state) {
  if (q == NULL || q->freeing || state == q->state)
    return;
  if (state < CF_QUEUE_STOPPED || state > CF_QUEUE_DOWN)
    return; /* a backend bug; keep the last sane state */
  q->state = state;
  if (state == CF_QUEUE_STOPPED)
    q->started = 0;
  if (!q->cbs.on_state)
    return;
  cf__queue_enter(q);
  q->cbs.on_state(q, state, q->user_data);
  cf__queue_leave(q);
}
