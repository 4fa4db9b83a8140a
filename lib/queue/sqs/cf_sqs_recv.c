/*
 * Receiving: long polls, decoding, reordering, delivery and deletes.
 *
 * `npollers` pollers each keep one ReceiveMessage long poll open on the
 * own queue (10 messages, WaitTimeSeconds, an HTTP timeout 10 s longer).
 * Each body is decoded (raw delivery, or an SNS notification wrapping
 * it), the instance's own messages are dropped in standard mode (they
 * were delivered locally at publish), and the rest go through the
 * per-origin reorder window before they are reported; in fifo mode the
 * queue's order is the room's order and is reported as is. Every
 * received message is then deleted, undecodable ones too, so that
 * nothing comes back for ever.
 *
 * After a failure a poller first polls without waiting: a quick answer
 * says the service is back, instead of a long poll that may only
 * answer after WaitTimeSeconds.
 */
#include "cf_sqs_int.h"

#include <string.h>

#include "cf_envelope.h"
#include "cf_mem.h"

/* Poll pause when wait_seconds is 0 and a poll came back empty. */
#define SQS_SHORT_POLL_PAUSE 1.0
/* Attempts at deleting one batch of receipt handles. */
#define SQS_DELETE_TRIES 5u

typedef struct sqs_del {
  cf_list link;           /* in s->dels */
  sqs *s;
  unsigned n;             /* handles */
  unsigned pending;       /* bit i: handle i not deleted yet */
  unsigned attempts;
  cf__http_xfer *xfer;
  void *timer;
  cf__sqs_backoff bo;
  char *handle[CF__SQS_BATCH_MAX];
} sqs_del;

static int recv_active(const sqs *s) {
  return s->phase == SQS_RUNNING && s->ready;
}

/* --- deletes -------------------------------------------------------------- */

static void del_submit(sqs_del *d);
static void on_del_timer(void *arg);

static sqs_del *del_new(sqs *s) {
  sqs_del *d = cf__calloc(&s->mem, 1, sizeof(*d));

  if (d == NULL)
    return NULL;
  d->timer = s->loop.timer_new(s->loop.data, on_del_timer, d);
  if (d->timer == NULL) {
    cf__free(&s->mem, d);
    return NULL;
  }
  d->s = s;
  cf_list_init(&d->link);
  cf__sqs_backoff_init(&d->bo, &s->rng, SQS_RETRY_BASE, SQS_RETRY_CAP);
  return d;
}

static void del_free(sqs_del *d) {
  sqs *s = d->s;
  unsigned i;

  cf__http_cancel(d->xfer);
  for (i = 0; i < d->n; i++)
    cf__free(&s->mem, d->handle[i]);
  s->loop.timer_free(s->loop.data, d->timer);
  cf_list_remove(&d->link);
  cf__free(&s->mem, d);
}

/* Keeps a copy of handle; one that cannot be kept is simply received
 * again later (and dropped as a duplicate then). */
static void del_add(sqs_del *d, const char *handle) {
  char *h;

  if (d == NULL || d->n >= CF__SQS_BATCH_MAX)
    return;
  h = sqs_strdup(d->s, handle);
  if (h == NULL)
    return;
  d->handle[d->n] = h;
  d->pending |= 1u << d->n;
  d->n++;
}

static json_t *del_params(const sqs_del *d) {
  json_t *entries = json_array();
  unsigned i;

  if (entries == NULL)
    return NULL;
  for (i = 0; i < d->n; i++) {
    char id[2] = {(char)('0' + i), '\0'};
    if (!(d->pending & (1u << i)))
      continue;
    if (json_array_append_new(entries,
                              json_pack("{s:s, s:s}", "Id", id,
                                        "ReceiptHandle",
                                        d->handle[i])) != 0) {
      json_decref(entries);
      return NULL;
    }
  }
  return json_pack("{s:s, s:o}", "QueueUrl", d->s->queue_url, "Entries",
                   entries);
}

/* Clears the entries the answer settles: done, or refused for good. */
static void del_apply(sqs_del *d, const json_t *data) {
  static const char *const lists[2] = {"Successful", "Failed"};
  int l;

  for (l = 0; l < 2; l++) {
    const json_t *v = json_object_get(data, lists[l]);
    size_t i, n = cf__sqs_json_list_size(v);
    for (i = 0; i < n; i++) {
      const json_t *it = cf__sqs_json_list_get(v, i);
      const char *id = cf__sqs_json_str(it, "Id");
      const json_t *f = json_object_get(it, "SenderFault");
      if (id == NULL || id[0] < '0' || id[0] > '9' || id[1] != '\0')
        continue;
      if (l == 1 && !json_is_true(f) &&
          !(json_is_string(f) && strcmp(json_string_value(f), "true") == 0))
        continue; /* a transient failure: try again */
      d->pending &= ~(1u << (id[0] - '0'));
    }
  }
}

static void on_del(const cf__aws_result *r, void *ud) {
  sqs_del *d = ud;
  sqs *s = d->s;

  d->xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  if (r->error == CF_OK)
    del_apply(d, r->data);
  /* Past the last try, or with the queue gone, the messages come back
   * after their visibility timeout and are dropped as duplicates. */
  if (d->pending == 0 || r->not_found || d->attempts >= SQS_DELETE_TRIES)
    del_free(d);
  else
    sqs_timer_set(s, d->timer, cf__sqs_backoff_next(&d->bo));
  sqs_leave(s);
}

static void on_del_timer(void *arg) {
  sqs_del *d = arg;
  sqs *s = d->s;

  sqs_enter(s);
  s->retries++;
  del_submit(d);
  sqs_leave(s);
}

static void del_submit(sqs_del *d) {
  sqs *s = d->s;
  json_t *p;
  int rv = CF_ERR_STATE;

  if (s->queue_url == NULL || d->n == 0) {
    del_free(d);
    return;
  }
  d->attempts++;
  p = del_params(d);
  if (p != NULL)
    rv = sqs_call_sqs(s, "DeleteMessageBatch", p, SQS_CALL_TIMEOUT, on_del,
                      d, &d->xfer);
  json_decref(p);
  if (rv == CF_OK)
    return;
  d->xfer = NULL;
  if (d->attempts >= SQS_DELETE_TRIES)
    del_free(d);
  else
    sqs_timer_set(s, d->timer, cf__sqs_backoff_next(&d->bo));
}

/* --- decoding and delivery ------------------------------------------------ */

static void report(sqs *s, cf_envelope *env) {
  cf_queue_report_message(s->q, env);
  cf__envelope_free(env, &s->mem);
}

/* Reports what the reorder window lets out now and re-arms its timer. */
static void deliver_ready(sqs *s) {
  double now = sqs_mono(s), d;
  cf_envelope *e;

  while (!sqs_freeing(s) &&
         (e = cf__sqs_reorder_pop(s->reorder, now)) != NULL)
    report(s, e);
  if (sqs_freeing(s))
    return;
  d = cf__sqs_reorder_deadline(s->reorder);
  sqs_timer_set(s, s->reorder_timer, d < 0 ? -1.0 : (d > now ? d - now
                                                             : 0.0));
}

static void on_reorder_timer(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  deliver_ready(s);
  sqs_leave(s);
}

static void undecodable(sqs *s, int rv, const char *why) {
  /* Noted once: a foreign writer tends to send many. */
  if (s->undecodable++ == 0)
    sqs_set_errmsg(s, "dropped a message that is not an envelope: %s",
                   why != NULL ? why : cf_strerror(rv));
}

static void receive_env(sqs *s, cf_envelope *env) {
  int rv;

  if (s->fifo) {
    report(s, env); /* the queue's order is the room's order */
    return;
  }
  if (env->origin == s->self) {
    cf__envelope_free(env, &s->mem);
    return;
  }
  rv = cf__sqs_reorder_push(s->reorder, env, sqs_mono(s));
  if (rv == CF_ERR_EXISTS)
    cf__envelope_free(env, &s->mem);
  else if (rv != CF_OK)
    report(s, env); /* out of memory: late rather than never */
}

static int on_body_env(void *ud, cf_envelope *env) {
  sqs *s = ud;
  receive_env(s, env);
  return sqs_freeing(s);
}

static void on_body_bad(void *ud, int error, const char *why) {
  undecodable(ud, error, why);
}

/* Handles a ReceiveMessage answer; returns the number of messages. */
static size_t receive_all(sqs *s, const json_t *data) {
  const json_t *msgs = json_object_get(data, "Messages");
  size_t i, n = cf__sqs_json_list_size(msgs);
  sqs_del *d = n > 0 ? del_new(s) : NULL;

  for (i = 0; i < n && !sqs_freeing(s); i++) {
    const json_t *m = cf__sqs_json_list_get(msgs, i);
    const json_t *body = json_object_get(m, "Body");
    const char *h = cf__sqs_json_str(m, "ReceiptHandle");
    if (json_is_string(body))
      cf__sqs_body_read(json_string_value(body), json_string_length(body),
                        &s->mem, on_body_env, on_body_bad, s);
    if (h != NULL)
      del_add(d, h);
  }
  if (!sqs_freeing(s))
    deliver_ready(s);
  if (d == NULL)
    return n;
  if (sqs_freeing(s)) {
    del_free(d);
    return n;
  }
  cf_list_append(&s->dels, &d->link);
  del_submit(d);
  return n;
}

/* --- pollers -------------------------------------------------------------- */

static void on_poll(const cf__aws_result *r, void *ud);

static void poll_wait(sqs_poller *p, double after) {
  p->waiting = 1;
  sqs_timer_set(p->s, p->timer, after);
}

static void poll_send(sqs_poller *p) {
  sqs *s = p->s;
  unsigned wait = p->probe ? 0 : s->wait_seconds;
  int max = p->single ? 1 : (int)CF__SQS_BATCH_MAX;
  json_t *params;
  int rv = CF_ERR_NOMEM;

  p->last_start = sqs_mono(s);
  params = json_pack("{s:s, s:i, s:i}", "QueueUrl", s->queue_url,
                     "MaxNumberOfMessages", max,
                     "WaitTimeSeconds", (int)wait);
  if (params != NULL)
    rv = sqs_call_sqs(s, "ReceiveMessage", params, wait + 10.0, on_poll, p,
                      &p->xfer);
  json_decref(params);
  if (rv != CF_OK) {
    p->xfer = NULL;
    poll_wait(p, cf__sqs_backoff_next(&p->bo));
  }
}

static void poll_answered(sqs_poller *p, const json_t *data) {
  sqs *s = p->s;
  size_t n, full = p->single ? 1u : CF__SQS_BATCH_MAX;
  double now;

  cf__sqs_backoff_reset(&p->bo);
  p->single = 0;
  sqs_ok(s, SQS_P_RECV);
  n = receive_all(s, data);
  if (sqs_freeing(s) || !recv_active(s))
    return;
  if (n == 0 && !p->probe && s->wait_seconds == 0) {
    poll_wait(p, SQS_SHORT_POLL_PAUSE); /* no long poll: don't spin */
    return;
  }
  p->probe = 0;
  /*
   * Under load a poll waits for more to gather, as a batch does. An
   * answer that is not full and came early waits too: a long poll can
   * come back at once with little or nothing (a FIFO queue whose group
   * is held by the other poller's messages), which would otherwise spin.
   */
  now = sqs_mono(s);
  if (n < full && p->last_start + s->interval > now) {
    poll_wait(p, p->last_start + s->interval - now);
    return;
  }
  poll_send(p);
}

static void on_poll(const cf__aws_result *r, void *ud) {
  sqs_poller *p = ud;
  sqs *s = p->s;

  p->xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  if (r->error == CF_OK) {
    poll_answered(p, r->data);
  } else if (r->not_found) {
    sqs_setup_lost(s, "ReceiveMessage", r);
  } else {
    sqs_fail(s, SQS_P_RECV, "ReceiveMessage", r);
    /*
     * Ten bodies that together overflow the reply cap would come back
     * together forever (the service hands them out again once their
     * visibility timeout ends): one at a time, each fits.
     */
    if (r->error == CF_ERR_TOO_BIG)
      p->single = 1;
    p->probe = 1;
    poll_wait(p, cf__sqs_backoff_next(&p->bo));
  }
  sqs_leave(s);
}

static void on_poll_timer(void *arg) {
  sqs_poller *p = arg;
  sqs *s = p->s;

  sqs_enter(s);
  p->waiting = 0;
  if (recv_active(s)) {
    s->retries++;
    poll_send(p);
  }
  sqs_leave(s);
}

/* --- entry points --------------------------------------------------------- */

int sqs_recv_init(sqs *s) {
  cf__sqs_reorder_limits lim = {s->reorder_window, 0, 0, 0};
  unsigned i;
  int rv;

  s->reorder_timer = s->loop.timer_new(s->loop.data, on_reorder_timer, s);
  if (s->reorder_timer == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < s->npollers; i++) {
    sqs_poller *p = &s->pollers[i];
    p->s = s;
    cf__sqs_backoff_init(&p->bo, &s->rng, SQS_RETRY_BASE, SQS_RETRY_CAP);
    p->timer = s->loop.timer_new(s->loop.data, on_poll_timer, p);
    if (p->timer == NULL)
      return CF_ERR_NOMEM;
  }
  rv = cf__sqs_reorder_new(&s->reorder, &lim, &s->mem);
  return rv;
}

void sqs_recv_start(sqs *s) {
  unsigned i;

  for (i = 0; i < s->npollers && recv_active(s); i++) {
    sqs_poller *p = &s->pollers[i];
    if (p->xfer != NULL || p->waiting)
      continue;
    p->probe = 0;
    poll_send(p);
  }
}

void sqs_recv_stop(sqs *s) {
  unsigned i;

  for (i = 0; i < s->npollers; i++) {
    sqs_poller *p = &s->pollers[i];
    cf__http_cancel(p->xfer);
    p->xfer = NULL;
    p->waiting = 0;
    sqs_timer_set(s, p->timer, -1.0);
  }
}

void sqs_recv_free(sqs *s) {
  unsigned i;

  /* The client is gone: the calls are cancelled already. */
  while (!cf_list_empty(&s->dels)) {
    sqs_del *d = cf_container_of(s->dels.next, sqs_del, link);
    d->xfer = NULL;
    del_free(d);
  }
  for (i = 0; i < SQS_MAX_POLLERS; i++)
    s->loop.timer_free(s->loop.data, s->pollers[i].timer);
  s->loop.timer_free(s->loop.data, s->reorder_timer);
  cf__sqs_reorder_free(s->reorder);
}
