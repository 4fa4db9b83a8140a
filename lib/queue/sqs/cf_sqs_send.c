/*
 * Publishing: the bounded buffer, batches and their retries.
 *
 * A publish is encoded once and appended to s->pending, as one more line of the
 * last buffered message while that one has room (same room in fifo mode,
 * CF__SQS_BUNDLE_MAX bytes); a linger timer (or a full batch) starts the pump,
 * which cuts batches of up to 10 messages / 256 KiB off the head of the buffer.
 * Under load, batches leave at most once per `interval` unless full: the
 * requests per chat message then fall as the rate grows, on this side and on
 * every receiver's. Each batch becomes a job per target: the topic (sns), or
 * every known peer queue (queues topology, sharing the messages by reference).
 * A job is sent, and on a partial failure sent again with only its failed
 * entries, with backoff; jobs park while the setup is not complete, or while
 * their peer's queue is missing (discovery then decides: back, or gone).
 *
 * Order. In fifo mode one job is in flight at a time, so a room's
 * messages reach the topic in publish order even across retries. In
 * standard mode up to SQS_SEND_WINDOW jobs per target overlap (but no
 * new one starts on the topic while one is retried); the receivers
 * restore each origin's order.
 *
 * Nothing accepted is dropped silently: messages leave the buffer when
 * the service took them, when it refused them for good (a sender fault,
 * or SQS_SEND_GIVE_UP hard errors in a row), or when flush runs out of
 * time; the last two count in `dropped`.
 */
#include "cf_sqs_int.h"

#include <string.h>

#include "cf_mem.h"

#define SQS_SEND_WINDOW 4u
#define SQS_SEND_GIVE_UP 20u

enum job_state { JOB_PARKED, JOB_INFLIGHT, JOB_WAIT };

typedef struct sqs_job {
  cf_list link;         /* in s->jobs */
  sqs *s;
  cf__sqs_batch b;
  cf__http_xfer *xfer;  /* the call in flight */
  void *timer;          /* retry wait */
  cf__sqs_backoff bo;
  int state;            /* enum job_state */
  unsigned attempts;    /* calls made */
  unsigned hard;        /* non-retryable failures in a row */
  char url[];           /* peer queue URL; "" for the topic */
} sqs_job;

static void job_submit(sqs_job *j);

static int sendable(const sqs *s) {
  return s->ready && !s->send_hold && s->step != SQS_ST_VERIFY &&
         (s->phase == SQS_RUNNING || s->phase == SQS_DRAINING);
}

/* Nonzero while some job waits to be sent again. */
static int jobs_retrying(const sqs *s) {
  const cf_list *n;

  for (n = s->jobs.next; n != &s->jobs; n = n->next)
    if (cf_container_of(n, sqs_job, link)->state != JOB_INFLIGHT)
      return 1;
  return 0;
}

static int window_open(const sqs *s) {
  if (s->topology == CF_SQS_QUEUES) {
    /*
     * Calls in flight only: jobs waiting on a slow or vanished peer
     * must not stall the others (their messages count in `buffered`,
     * which bounds them).
     */
    size_t targets = s->npeers > 0 ? s->npeers : 1;
    return s->njobs_inflight < SQS_SEND_WINDOW * targets;
  }
  if (s->fifo)
    return s->njobs == 0;
  /*
   * The topic: while a batch is being retried, later ones wait, or they
   * could overtake it by more than the receivers' reorder window (which
   * then gives the retried messages up).
   */
  return s->njobs < SQS_SEND_WINDOW && !jobs_retrying(s);
}

static void job_state(sqs_job *j, int state) {
  sqs *s = j->s;

  if (j->state == JOB_INFLIGHT)
    s->njobs_inflight--;
  if (state == JOB_INFLIGHT)
    s->njobs_inflight++;
  j->state = state;
}

/* Drops one reference, keeping `buffered` in step with what is held. */
static void msg_release(sqs *s, cf__sqs_msg *m) {
  size_t len = m->len;

  if (cf__sqs_msg_unref(m, &s->mem))
    s->buffered -= len;
}

static void batch_release(sqs *s, cf__sqs_batch *b) {
  unsigned i;

  for (i = 0; i < b->n; i++)
    msg_release(s, b->msg[i]);
  cf__sqs_batch_init(b);
}

/* --- jobs ----------------------------------------------------------------- */

static void on_job_timer(void *arg);

static sqs_job *job_new(sqs *s, const char *url) {
  size_t n = strlen(url) + 1;
  sqs_job *j = cf__calloc(&s->mem, 1, sizeof(*j) + n);

  if (j == NULL)
    return NULL;
  j->timer = s->loop.timer_new(s->loop.data, on_job_timer, j);
  if (j->timer == NULL) {
    cf__free(&s->mem, j);
    return NULL;
  }
  j->s = s;
  memcpy(j->url, url, n);
  cf__sqs_backoff_init(&j->bo, &s->rng, SQS_RETRY_BASE, SQS_RETRY_CAP);
  cf_list_append(&s->jobs, &j->link);
  s->njobs++;
  return j;
}

/* Frees j; counts what it still had to send as dropped when asked. */
static void job_free(sqs_job *j, int count_dropped) {
  sqs *s = j->s;

  if (count_dropped)
    s->dropped += cf__sqs_batch_pending_msgs(&j->b);
  job_state(j, JOB_PARKED);
  cf__http_cancel(j->xfer);
  batch_release(s, &j->b);
  s->loop.timer_free(s->loop.data, j->timer);
  cf_list_remove(&j->link);
  s->njobs--;
  cf__free(&s->mem, j);
}

static void job_wait(sqs_job *j) {
  job_state(j, JOB_WAIT);
  sqs_timer_set(j->s, j->timer, cf__sqs_backoff_next(&j->bo));
}

/* The job is over (all sent or given up): room for the next batch. */
static void job_done(sqs_job *j, int count_dropped) {
  sqs *s = j->s;

  job_free(j, count_dropped);
  if (s->njobs == 0 && s->pending_n == 0)
    sqs_ok(s, SQS_P_SEND);
  /* Younger batches to the same peer may have waited for this one. */
  if (s->topology == CF_SQS_QUEUES)
    sqs_send_resume(s);
  else
    sqs_send_pump(s);
}

static const char *job_action(const sqs_job *j) {
  return j->url[0] ? "SendMessageBatch" : "PublishBatch";
}

static void job_rejected(sqs_job *j, const cf__sqs_batch_outcome *out) {
  sqs *s = j->s;

  /* Not a state change: the detail is only noted for the log. */
  s->dropped += out->rejected_msgs;
  sqs_set_errmsg(s, "%s refused %zu message%s: %s", job_action(j),
                 out->rejected_msgs, out->rejected_msgs == 1 ? "" : "s",
                 out->detail);
}

static void job_answered(sqs_job *j, const json_t *data) {
  cf__sqs_batch_outcome out;

  if (cf__sqs_batch_apply(&j->b, data, &out) != CF_OK) {
    job_wait(j); /* unreadable: send it all again */
    return;
  }
  j->hard = 0;
  if (out.rejected > 0)
    job_rejected(j, &out);
  if (out.accepted > 0)
    cf__sqs_backoff_reset(&j->bo);
  if (j->b.pending == 0)
    job_done(j, 0);
  else
    job_wait(j); /* only the failed entries go again */
}

static void job_failed(sqs_job *j, const cf__aws_result *r) {
  sqs *s = j->s;

  if (r->not_found && j->url[0] == '\0') {
    /* The topic is gone (the service lost its state): set up again. */
    job_state(j, JOB_PARKED);
    sqs_setup_lost(s, job_action(j), r);
    return;
  }
  if (r->not_found) {
    /* A peer's queue: gone for good once discovery forgets the peer;
     * until then it may be on its way back (its setup runs again). */
    if (sqs_peer_state(s, j->url) == SQS_PEER_UNKNOWN ||
        s->phase == SQS_DRAINING) {
      job_done(j, 0); /* leaving: no time to wait for discovery */
      return;
    }
    job_state(j, JOB_PARKED);
    sqs_peer_suspect(s, j->url);
    return;
  }
  sqs_fail(s, SQS_P_SEND, job_action(j), r);
  if (!r->retryable && r->error != CF_ERR_STATE &&
      ++j->hard >= SQS_SEND_GIVE_UP) {
    sqs_set_errmsg(s, "%s: gave up on %zu messages after %u attempts",
                   job_action(j), cf__sqs_batch_pending_msgs(&j->b),
                   j->attempts);
    job_done(j, 1);
    return;
  }
  job_wait(j);
}

static void on_job(const cf__aws_result *r, void *ud) {
  sqs_job *j = ud;
  sqs *s = j->s;

  j->xfer = NULL;
  job_state(j, JOB_WAIT); /* answered; whatever comes next sets it */
  sqs_enter(s);
  sqs_count_result(s, r);
  if (r->error == CF_OK) {
    sqs_ok(s, SQS_P_SEND);
    job_answered(j, r->data);
  } else {
    job_failed(j, r);
  }
  sqs_leave(s);
}

static void on_job_timer(void *arg) {
  sqs_job *j = arg;
  sqs *s = j->s;

  sqs_enter(s);
  job_submit(j);
  /* Once it is in flight, the younger ones to its peer may follow. */
  if (j->state == JOB_INFLIGHT && j->url[0] != '\0')
    sqs_send_resume(s);
  sqs_leave(s);
}

static int job_call(sqs_job *j) {
  sqs *s = j->s;
  cf__sqs_sns_params sp;
  json_t *p;
  int rv;

  if (j->url[0] == '\0') {
    cf__sqs_batch_sns_params(&j->b, s->topic_arn, s->fifo, &sp);
    return sqs_call_sns(s, "PublishBatch", sp.p, sp.n, SQS_CALL_TIMEOUT,
                        on_job, j, &j->xfer);
  }
  p = cf__sqs_batch_sqs_params(&j->b, j->url, 0);
  if (p == NULL)
    return CF_ERR_NOMEM;
  rv = sqs_call_sqs(s, "SendMessageBatch", p, SQS_CALL_TIMEOUT, on_job, j,
                    &j->xfer);
  json_decref(p);
  return rv;
}

/*
 * A peer's batches go out in order: while an older one to the same
 * queue waits for a retry, a younger one would overtake it by more than
 * the receiver's reorder window, which would then give the older
 * messages up. (The topic has the same rule, applied when batches are
 * formed: see window_open.)
 */
static int job_blocked(const sqs_job *j) {
  const cf_list *n;

  if (j->url[0] == '\0')
    return 0;
  for (n = j->s->jobs.next; n != &j->link; n = n->next) {
    const sqs_job *o = cf_container_of(n, sqs_job, link);
    if (o->state != JOB_INFLIGHT && strcmp(o->url, j->url) == 0)
      return 1;
  }
  return 0;
}

static void job_submit(sqs_job *j) {
  sqs *s = j->s;

  if (!sendable(s) || job_blocked(j) ||
      (j->url[0] != '\0' &&
       sqs_peer_state(s, j->url) == SQS_PEER_SUSPECT)) {
    job_state(j, JOB_PARKED);
    return;
  }
  if (j->attempts++ > 0)
    s->retries++;
  if (job_call(j) != CF_OK) {
    j->xfer = NULL;
    job_wait(j);
    return;
  }
  job_state(j, JOB_INFLIGHT);
}

/* --- batches -------------------------------------------------------------- */

/* Cuts the next batch off the head of the buffer. */
static void batch_form(sqs *s, cf__sqs_batch *b) {
  cf__sqs_batch_init(b);
  while (!cf_list_empty(&s->pending)) {
    cf__sqs_msg *m = cf_container_of(s->pending.next, cf__sqs_msg, link);
    if (!cf__sqs_batch_fits(b, m->len))
      break;
    cf__sqs_batch_add(b, m);
    cf_list_remove(&m->link);
    s->pending_n--;
    s->pending_bytes -= m->len;
    /* The buffer's reference passes to the batch. */
    cf__sqs_msg_unref(m, &s->mem);
  }
}

/* Puts b's messages back at the head of the buffer (out of memory). */
static void batch_unform(sqs *s, cf__sqs_batch *b) {
  unsigned i = b->n;

  while (i-- > 0) {
    cf__sqs_msg *m = b->msg[i];
    cf_list_insert_before(s->pending.next, &m->link);
    s->pending_n++;
    s->pending_bytes += m->len;
  }
  cf__sqs_batch_init(b);
}

static int batch_dispatch(sqs *s, cf__sqs_batch *b) {
  cf_list *n;
  sqs_job *j;

  if (s->topology == CF_SQS_SNS) {
    if ((j = job_new(s, "")) == NULL)
      return CF_ERR_NOMEM;
    j->b = *b;
    cf__sqs_batch_init(b);
    job_submit(j);
    return CF_OK;
  }
  /* One job per peer; with no peer, nobody is there to miss it. */
  for (n = s->peers.next; n != &s->peers; n = n->next) {
    sqs_peer *p = cf_container_of(n, sqs_peer, link);
    if ((j = job_new(s, p->url)) == NULL)
      break; /* those peers miss this batch; counted below */
    cf__sqs_batch_copy(&j->b, b);
    job_submit(j);
  }
  if (n != &s->peers)
    s->dropped += cf__sqs_batch_pending_msgs(b);
  batch_release(s, b);
  return CF_OK;
}

static int pending_full(const sqs *s) {
  return s->pending_n >= CF__SQS_BATCH_MAX ||
         s->pending_bytes >= CF__SQS_SIZE_MAX;
}

/*
 * Seconds until the next batch may leave: 0 when the buffer holds a
 * full batch or the last one left `interval` ago. Flushing never waits.
 */
static double batch_due(const sqs *s) {
  double wait;

  if (pending_full(s) || s->phase == SQS_DRAINING)
    return 0.0;
  wait = s->last_batch + s->interval - sqs_mono(s);
  return wait > 0.0 ? wait : 0.0;
}

void sqs_send_pump(sqs *s) {
  cf__sqs_batch b;
  double wait;

  while (s->pending_n > 0 && sendable(s) && window_open(s)) {
    if ((wait = batch_due(s)) > 0.0) {
      s->linger_armed = 1;
      sqs_timer_set(s, s->linger_timer, wait);
      break;
    }
    batch_form(s, &b);
    if (batch_dispatch(s, &b) != CF_OK) {
      batch_unform(s, &b);
      break; /* the next publish or completion tries again */
    }
    s->last_batch = sqs_mono(s);
  }
  sqs_check_drained(s);
}

/*
 * Adds env to the last buffered message when it may join it. Returns
 * CF_OK when it did (len: bytes the buffer grew by), CF_ERR_TOO_BIG when
 * it may not (a new message is needed), or another error.
 */
static int bundle_append(sqs *s, const cf_envelope *env, size_t *len) {
  cf__sqs_msg *m;
  int rv;

  if (cf_list_empty(&s->pending))
    return CF_ERR_TOO_BIG;
  m = cf_container_of(s->pending.prev, cf__sqs_msg, link);
  if (m->refs != 1 || m->len >= CF__SQS_BUNDLE_MAX ||
      (s->fifo && (strlen(m->group) != env->room_len ||
                   memcmp(m->group, env->room, env->room_len) != 0)))
    return CF_ERR_TOO_BIG;
  cf_list_remove(&m->link); /* it may move */
  rv = cf__sqs_msg_append(&m, env, CF__SQS_BUNDLE_MAX, &s->mem, len);
  cf_list_append(&s->pending, &m->link);
  return rv;
}

static void on_linger(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  s->linger_armed = 0;
  sqs_send_pump(s);
  sqs_leave(s);
}

/* --- entry points --------------------------------------------------------- */

int sqs_publish(void *impl, const cf_envelope *env) {
  sqs *s = impl;
  cf__sqs_msg *m;
  size_t len;
  int rv;

  /* Flushing: what is accepted now could extend the drain for ever. */
  if (s->phase == SQS_DRAINING || s->phase == SQS_TEARDOWN ||
      s->phase == SQS_STOPPED)
    return CF_ERR_CLOSED;
  rv = cf__envelope_encoded_len(env, &len);
  if (rv != CF_OK)
    return rv;
  if (len > CF__SQS_SIZE_MAX)
    return CF_ERR_TOO_BIG;
  if (len > s->max_buffer || s->buffered > s->max_buffer - len)
    return CF_ERR_QUEUE_FULL;
  rv = bundle_append(s, env, &len);
  if (rv == CF_ERR_TOO_BIG) {
    rv = cf__sqs_msg_new(&m, env, CF__SQS_SIZE_MAX, &s->mem);
    if (rv != CF_OK)
      return rv;
    cf_list_append(&s->pending, &m->link);
    s->pending_n++;
    len = m->len;
  } else if (rv != CF_OK) {
    return rv;
  }
  s->pending_bytes += len;
  s->buffered += len;
  /* Only a timer: publish never calls back, nor sends from here. */
  if (s->pending_n >= CF__SQS_BATCH_MAX ||
      s->pending_bytes >= CF__SQS_SIZE_MAX) {
    s->linger_armed = 1;
    sqs_timer_set(s, s->linger_timer, 0.0);
  } else if (!s->linger_armed) {
    s->linger_armed = 1;
    sqs_timer_set(s, s->linger_timer, s->linger);
  }
  return CF_OK;
}

void sqs_send_resume(sqs *s) {
  cf_list *n, *next;

  for (n = s->jobs.next; n != &s->jobs; n = next) {
    sqs_job *j = cf_container_of(n, sqs_job, link);
    next = n->next;
    if (j->state != JOB_PARKED)
      continue;
    /* Flushing: discovery has stopped, a suspect peer stays one. */
    if (s->phase == SQS_DRAINING && j->url[0] != '\0' &&
        sqs_peer_state(s, j->url) == SQS_PEER_SUSPECT)
      job_free(j, 0);
    else
      job_submit(j);
  }
  sqs_send_pump(s);
}

void sqs_send_drop_all(sqs *s) {
  while (!cf_list_empty(&s->jobs))
    job_free(cf_container_of(s->jobs.next, sqs_job, link), 1);
  while (!cf_list_empty(&s->pending)) {
    cf__sqs_msg *m = cf_container_of(s->pending.next, cf__sqs_msg, link);
    cf_list_remove(&m->link);
    s->dropped += m->count;
    msg_release(s, m);
  }
  s->pending_n = 0;
  s->pending_bytes = 0;
}

int sqs_send_idle(const sqs *s) {
  return s->pending_n == 0 && s->njobs == 0;
}

void sqs_send_forget_peer(sqs *s, const char *url) {
  cf_list *n, *next;

  for (n = s->jobs.next; n != &s->jobs; n = next) {
    sqs_job *j = cf_container_of(n, sqs_job, link);
    next = n->next;
    /* One in flight is dropped when its answer comes back. */
    if (j->state != JOB_INFLIGHT && strcmp(j->url, url) == 0)
      job_free(j, 0);
  }
}

int sqs_send_init(sqs *s) {
  s->linger_timer = s->loop.timer_new(s->loop.data, on_linger, s);
  return s->linger_timer != NULL ? CF_OK : CF_ERR_NOMEM;
}

void sqs_send_free(sqs *s) {
  /* The client is gone: the calls are cancelled already. */
  while (!cf_list_empty(&s->jobs)) {
    sqs_job *j = cf_container_of(s->jobs.next, sqs_job, link);
    j->xfer = NULL;
    job_free(j, 0);
  }
  while (!cf_list_empty(&s->pending)) {
    cf__sqs_msg *m = cf_container_of(s->pending.next, cf__sqs_msg, link);
    cf_list_remove(&m->link);
    msg_release(s, m);
  }
  s->loop.timer_free(s->loop.data, s->linger_timer);
}
