/*
 * Maintenance: heartbeat, reaper and peer discovery.
 *
 * Every `heartbeat` seconds a round runs, one call at a time:
 *
 *   TagQueue chatfanout-heartbeat=<now>      (the queue is alive)
 *   GetSubscriptionAttributes (sns)          (still subscribed?)
 *   and every SQS_REAP_EVERY rounds the reaper:
 *   ListQueues(prefix) -> ListQueueTags of up to SQS_REAP_TAGS_MAX
 *   candidates (rotating) -> DeleteQueue of those whose heartbeat is
 *   older than stale_after; then (sns) ListSubscriptionsByTopic ->
 *   GetQueueUrl for subscriptions whose queue was not listed ->
 *   Unsubscribe when that queue does not exist.
 *
 * The reaper's work per round is bounded, and it only deletes queues
 * whose names are exactly this cluster's (cluster-<16 hex>), never our
 * own. GetQueueUrl guards the unsubscribe because ListQueues is
 * eventually consistent: a peer that has just created its queue may not
 * be listed yet.
 *
 * A "not found" on our own queue or subscription means the service lost
 * them: the setup runs again.
 *
 * Queues topology: every peer_refresh seconds ListQueues(prefix) gives
 * the peers. A peer missing from the listings for a while is forgotten
 * (its queue was reaped or deleted on shutdown). A peer whose queue
 * answers "not found" is suspect: sends to it wait (no retry storm),
 * the listing is repeated every SQS_PEER_RECHECK s, and the peer is
 * either back or forgotten within about SQS_PEER_SUSPECT_FOR s.
 */
#include "cf_sqs_int.h"

#include <stdlib.h>
#include <string.h>

#include "cf_mem.h"

#define SQS_REAP_EVERY 3u
#define SQS_REAP_TAGS_MAX 10u
#define SQS_REAP_DELETE_MAX 5u
#define SQS_REAP_SUBS_MAX 10u
#define SQS_LIST_MAX 1000
/* Listings in a row a peer must be missing from to be forgotten. */
#define SQS_PEER_MISSES 3u
/* Listing period while a peer is suspect, and how long one may stay
 * missing before it is forgotten (its setup takes about a retry cap). */
#define SQS_PEER_RECHECK 0.5
#define SQS_PEER_SUSPECT_FOR (SQS_RESUBSCRIBE_GRACE + 2.0)

static void maint_send(sqs *s);

/* --- candidates (queue URLs of the cluster's other instances) ------------- */

static void cand_clear(sqs *s) {
  size_t i;

  for (i = 0; i < s->ncand; i++)
    cf__free(&s->mem, s->cand[i]);
  cf__free(&s->mem, s->cand);
  s->cand = NULL;
  s->ncand = s->cand_i = 0;
  json_decref(s->subs);
  s->subs = NULL;
  s->sub_i = 0;
}

static int cand_load(sqs *s, const json_t *data) {
  const json_t *urls = json_object_get(data, "QueueUrls");
  size_t i, n = cf__sqs_json_list_size(urls);

  cand_clear(s);
  if (n == 0)
    return CF_OK;
  s->cand = cf__calloc(&s->mem, n, sizeof(*s->cand));
  if (s->cand == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < n; i++) {
    const char *u = json_string_value(cf__sqs_json_list_get(urls, i));
    const char *name = u != NULL ? sqs_tail(u, '/') : NULL;
    if (name == NULL || !sqs_is_member_queue(s, name) ||
        strcmp(name, s->qname) == 0)
      continue;
    if ((s->cand[s->ncand] = sqs_strdup(s, u)) != NULL)
      s->ncand++;
  }
  return CF_OK;
}

static int cand_has_name(const sqs *s, const char *name) {
  size_t i;

  for (i = 0; i < s->ncand; i++)
    if (strcmp(sqs_tail(s->cand[i], '/'), name) == 0)
      return 1;
  return 0;
}

/* --- the round ------------------------------------------------------------ */

static void maint_end(sqs *s) {
  s->mstep = SQS_M_IDLE;
  cand_clear(s);
}

static void reap_or_end(sqs *s) {
  if (s->beats % SQS_REAP_EVERY != 0) {
    maint_end(s);
    return;
  }
  s->reaped = 0;
  s->mstep = SQS_M_LIST;
  maint_send(s);
}

/* The subscription to look at next, or none left: end the round. */
static void next_sub(sqs *s) {
  size_t n = cf__sqs_json_list_size(s->subs);

  for (; s->sub_i < n && s->sub_i < SQS_LIST_MAX; s->sub_i++) {
    const json_t *sub = cf__sqs_json_list_get(s->subs, s->sub_i);
    const char *proto = cf__sqs_json_str(sub, "Protocol");
    const char *ep = cf__sqs_json_str(sub, "Endpoint");
    const char *name = ep != NULL ? sqs_tail(ep, ':') : NULL;
    if (proto == NULL || strcmp(proto, "sqs") != 0 || name == NULL ||
        !sqs_is_member_queue(s, name) || strcmp(name, s->qname) == 0 ||
        cand_has_name(s, name))
      continue;
    if (s->reaped >= SQS_REAP_SUBS_MAX)
      break;
    s->mstep = SQS_M_CHECKQ;
    maint_send(s);
    return;
  }
  maint_end(s);
}

static void after_tags(sqs *s) {
  s->cand_cursor = s->cand_i;
  if (s->topology != CF_SQS_SNS || s->topic_arn == NULL) {
    maint_end(s);
    return;
  }
  s->mstep = SQS_M_SUBS;
  maint_send(s);
}

/* Moves to the next candidate, or on once enough were looked at. */
static void next_cand(sqs *s, size_t *checked) {
  size_t limit = s->ncand < SQS_REAP_TAGS_MAX ? s->ncand
                                               : SQS_REAP_TAGS_MAX;

  s->cand_i = (s->cand_i + 1) % s->ncand;
  if (++*checked >= limit || s->reaped >= SQS_REAP_DELETE_MAX) {
    after_tags(s);
    return;
  }
  s->mstep = SQS_M_TAGS;
  maint_send(s);
}

static int is_stale(const sqs *s, const json_t *data) {
  const char *beat = cf__sqs_json_str(json_object_get(data, "Tags"),
                                      "chatfanout-heartbeat");
  char *end;
  double t;

  /* No tag: maybe created a moment ago; leave it alone. */
  if (beat == NULL)
    return 0;
  t = strtod(beat, &end);
  if (end == beat || *end != '\0')
    return 0;
  /* Both wall clock: the tag is another instance's sqs_wall(). */
  return sqs_wall(s) - t > s->stale_after;
}

/* TagQueue or GetSubscriptionAttributes: is our side still there? */
static void beat_done(sqs *s, const cf__aws_result *r) {
  if (r->not_found) {
    const char *what = s->mstep == SQS_M_TAG ? "TagQueue"
                                             : "GetSubscriptionAttributes";
    maint_end(s);
    sqs_setup_lost(s, what, r);
    return;
  }
  if (s->mstep == SQS_M_TAG && s->topology == CF_SQS_SNS &&
      s->sub_arn != NULL) {
    s->mstep = SQS_M_SUBCHECK;
    maint_send(s);
    return;
  }
  reap_or_end(s);
}

static void list_done(sqs *s, const cf__aws_result *r) {
  if (r->error != CF_OK || cand_load(s, r->data) != CF_OK) {
    maint_end(s);
    return;
  }
  if (s->ncand == 0) {
    after_tags(s);
    return;
  }
  s->cand_i = s->cand_cursor % s->ncand;
  s->cand_checked = 0;
  s->mstep = SQS_M_TAGS;
  maint_send(s);
}

/* ListQueueTags or DeleteQueue of the current candidate. */
static void cand_done(sqs *s, const cf__aws_result *r) {
  int ok = r->error == CF_OK;

  if (s->mstep == SQS_M_TAGS && ok && is_stale(s, r->data)) {
    s->mstep = SQS_M_DELETE;
    maint_send(s);
    return;
  }
  if (s->mstep == SQS_M_DELETE)
    s->reaped += ok;
  next_cand(s, &s->cand_checked);
}

/* ListSubscriptionsByTopic, GetQueueUrl or Unsubscribe. */
static void subs_done(sqs *s, const cf__aws_result *r) {
  switch (s->mstep) {
  case SQS_M_SUBS:
    if (r->error != CF_OK) {
      maint_end(s);
      return;
    }
    s->subs = json_incref(json_object_get(r->data, "Subscriptions"));
    s->sub_i = 0;
    s->reaped = 0;
    break;
  case SQS_M_CHECKQ:
    s->reaped++;
    if (r->not_found) { /* the subscription's queue is gone */
      s->mstep = SQS_M_UNSUB;
      maint_send(s);
      return;
    }
    s->sub_i++;
    break;
  default: /* SQS_M_UNSUB */
    s->sub_i++;
    break;
  }
  next_sub(s);
}

static void step_done(sqs *s, const cf__aws_result *r) {
  switch (s->mstep) {
  case SQS_M_TAG:
  case SQS_M_SUBCHECK: beat_done(s, r); break;
  case SQS_M_LIST: list_done(s, r); break;
  case SQS_M_TAGS:
  case SQS_M_DELETE: cand_done(s, r); break;
  default: subs_done(s, r); break;
  }
}

static void on_maint(const cf__aws_result *r, void *ud) {
  sqs *s = ud;

  s->maint_xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  step_done(s, r);
  sqs_leave(s);
}

static int maint_sns(sqs *s, const char *action, const char *name,
                     const char *value) {
  cf__aws_param p = {name, value};

  return sqs_call_sns(s, action, &p, 1, SQS_CALL_TIMEOUT, on_maint, s,
                      &s->maint_xfer);
}

static const json_t *cur_sub(const sqs *s) {
  return cf__sqs_json_list_get(s->subs, s->sub_i);
}

static json_t *maint_params(sqs *s, const char **action) {
  const char *url = s->ncand ? s->cand[s->cand_i] : NULL;

  switch (s->mstep) {
  case SQS_M_TAG:
    *action = "TagQueue";
    return sqs_tag_params(s);
  case SQS_M_LIST:
    *action = "ListQueues";
    return sqs_list_params(s);
  case SQS_M_TAGS:
    *action = "ListQueueTags";
    return json_pack("{s:s}", "QueueUrl", url);
  case SQS_M_DELETE:
    *action = "DeleteQueue";
    return json_pack("{s:s}", "QueueUrl", url);
  default: /* SQS_M_CHECKQ */
    *action = "GetQueueUrl";
    return json_pack("{s:s}", "QueueName",
                     sqs_tail(cf__sqs_json_str(cur_sub(s), "Endpoint"),
                              ':'));
  }
}

static void maint_send(sqs *s) {
  const char *action = "";
  json_t *p;
  int rv;

  switch (s->mstep) {
  case SQS_M_SUBCHECK:
    rv = maint_sns(s, "GetSubscriptionAttributes", "SubscriptionArn",
                   s->sub_arn);
    break;
  case SQS_M_SUBS:
    rv = maint_sns(s, "ListSubscriptionsByTopic", "TopicArn", s->topic_arn);
    break;
  case SQS_M_UNSUB:
    rv = maint_sns(s, "Unsubscribe", "SubscriptionArn",
                   cf__sqs_json_str(cur_sub(s), "SubscriptionArn"));
    break;
  default:
    p = maint_params(s, &action);
    rv = p != NULL ? sqs_call_sqs(s, action, p, SQS_CALL_TIMEOUT, on_maint,
                                  s, &s->maint_xfer)
                   : CF_ERR_NOMEM;
    json_decref(p);
    break;
  }
  if (rv != CF_OK) {
    /* Housekeeping only: the next round tries again. */
    s->maint_xfer = NULL;
    maint_end(s);
  }
}

static void on_beat_timer(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  if (s->phase == SQS_RUNNING && s->ready) {
    sqs_timer_set(s, s->beat_timer, s->heartbeat);
    /* A round still running (slow service) is not doubled up. */
    if (s->mstep == SQS_M_IDLE) {
      s->beats++;
      s->mstep = SQS_M_TAG;
      maint_send(s);
    }
  }
  sqs_leave(s);
}

/* --- peers (queues topology) ---------------------------------------------- */

json_t *sqs_list_params(const sqs *s) {
  return json_pack("{s:s, s:i}", "QueueNamePrefix", s->prefix, "MaxResults",
                   SQS_LIST_MAX);
}

static sqs_peer *peer_find(const sqs *s, const char *url) {
  cf_list *n;

  for (n = s->peers.next; n != &s->peers; n = n->next) {
    sqs_peer *p = cf_container_of(n, sqs_peer, link);
    if (strcmp(p->url, url) == 0)
      return p;
  }
  return NULL;
}

int sqs_peer_state(const sqs *s, const char *url) {
  const sqs_peer *p = peer_find(s, url);

  if (p == NULL)
    return SQS_PEER_UNKNOWN;
  return p->suspect ? SQS_PEER_SUSPECT : SQS_PEER_OK;
}

static void peer_add(sqs *s, const char *url, double now) {
  size_t n = strlen(url) + 1;
  sqs_peer *p = cf__malloc(&s->mem, sizeof(*p) + n);

  /* Without memory this peer misses messages until the next refresh. */
  if (p == NULL)
    return;
  memcpy(p->url, url, n);
  p->last_seen = now;
  p->missed = 0;
  p->suspect = 0;
  p->suspect_since = 0;
  cf_list_append(&s->peers, &p->link);
  s->npeers++;
}

static int any_suspect(const sqs *s) {
  const cf_list *n;

  for (n = s->peers.next; n != &s->peers; n = n->next)
    if (cf_container_of(n, sqs_peer, link)->suspect)
      return 1;
  return 0;
}

/* Lists peers again in a moment (a suspect one is waiting on it). */
static void peers_refresh_soon(sqs *s) {
  if (s->peer_xfer == NULL)
    sqs_timer_set(s, s->peer_timer, SQS_PEER_RECHECK);
}

void sqs_peer_suspect(sqs *s, const char *url) {
  sqs_peer *p = peer_find(s, url);

  if (p == NULL || p->suspect)
    return;
  p->suspect = 1;
  p->suspect_since = sqs_mono(s);
  peers_refresh_soon(s);
}

static void peer_free(sqs *s, sqs_peer *p) {
  cf_list_remove(&p->link);
  s->npeers--;
  cf__free(&s->mem, p);
}

/*
 * A listing is a snapshot that may lag (eventual consistency) or come
 * in the middle of a restart of the service: a peer is forgotten only
 * once it has been missing from several listings over a while (an
 * outage, when nothing can be listed, does not count). A suspect peer
 * (its queue said "not found") is decided sooner, as its messages wait.
 */
static int peer_gone(const sqs *s, const sqs_peer *p, double now) {
  if (p->missed < SQS_PEER_MISSES)
    return 0;
  if (p->suspect)
    return now - p->suspect_since > SQS_PEER_SUSPECT_FOR;
  return now - p->last_seen > 2 * s->peer_refresh + 5.0;
}

void sqs_peers_update(sqs *s, const json_t *data) {
  const json_t *urls = json_object_get(data, "QueueUrls");
  size_t i, n = cf__sqs_json_list_size(urls);
  double now = sqs_mono(s);
  cf_list *l, *next;

  for (i = 0; i < n; i++) {
    const char *u = json_string_value(cf__sqs_json_list_get(urls, i));
    const char *name = u != NULL ? sqs_tail(u, '/') : NULL;
    sqs_peer *p;
    if (name == NULL || !sqs_is_member_queue(s, name) ||
        strcmp(name, s->qname) == 0)
      continue;
    if ((p = peer_find(s, u)) != NULL) {
      p->last_seen = now;
      p->missed = 0;
      p->suspect = 0; /* back (its setup ran again) */
    } else {
      peer_add(s, u, now);
    }
  }
  for (l = s->peers.next; l != &s->peers; l = next) {
    sqs_peer *p = cf_container_of(l, sqs_peer, link);
    next = l->next;
    if (p->last_seen == now)
      continue;
    p->missed++;
    if (peer_gone(s, p, now)) {
      sqs_send_forget_peer(s, p->url);
      peer_free(s, p);
    }
  }
}

static void on_peers(const cf__aws_result *r, void *ud) {
  sqs *s = ud;

  s->peer_xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  if (r->error == CF_OK) {
    cf__sqs_backoff_reset(&s->peer_bo);
    sqs_peers_update(s, r->data);
    sqs_timer_set(s, s->peer_timer, any_suspect(s) ? SQS_PEER_RECHECK
                                                   : s->peer_refresh);
    sqs_send_resume(s); /* peers back, or more of them */
  } else {
    sqs_timer_set(s, s->peer_timer, cf__sqs_backoff_next(&s->peer_bo));
  }
  sqs_leave(s);
}

static void on_peer_timer(void *arg) {
  sqs *s = arg;
  json_t *p;
  int rv = CF_ERR_NOMEM;

  sqs_enter(s);
  if (s->phase == SQS_RUNNING && s->ready && s->peer_xfer == NULL) {
    p = sqs_list_params(s);
    if (p != NULL)
      rv = sqs_call_sqs(s, "ListQueues", p, SQS_CALL_TIMEOUT, on_peers, s,
                        &s->peer_xfer);
    json_decref(p);
    if (rv != CF_OK) {
      s->peer_xfer = NULL;
      sqs_timer_set(s, s->peer_timer, cf__sqs_backoff_next(&s->peer_bo));
    }
  }
  sqs_leave(s);
}

/* --- entry points --------------------------------------------------------- */

int sqs_maint_init(sqs *s) {
  cf__sqs_backoff_init(&s->peer_bo, &s->rng, SQS_RETRY_BASE, SQS_RETRY_CAP);
  s->beat_timer = s->loop.timer_new(s->loop.data, on_beat_timer, s);
  s->peer_timer = s->loop.timer_new(s->loop.data, on_peer_timer, s);
  return s->beat_timer && s->peer_timer ? CF_OK : CF_ERR_NOMEM;
}

void sqs_maint_start(sqs *s) {
  /* The setup just tagged the queue and (queues) listed the peers. */
  sqs_timer_set(s, s->beat_timer, s->heartbeat);
  if (s->topology == CF_SQS_QUEUES)
    sqs_timer_set(s, s->peer_timer, s->peer_refresh);
}

void sqs_maint_stop(sqs *s) {
  cf__http_cancel(s->maint_xfer);
  s->maint_xfer = NULL;
  cf__http_cancel(s->peer_xfer);
  s->peer_xfer = NULL;
  sqs_timer_set(s, s->beat_timer, -1.0);
  sqs_timer_set(s, s->peer_timer, -1.0);
  maint_end(s);
}

void sqs_maint_free(sqs *s) {
  /* The client is gone: the calls are cancelled already. */
  cand_clear(s);
  while (!cf_list_empty(&s->peers))
    peer_free(s, cf_container_of(s->peers.next, sqs_peer, link));
  s->loop.timer_free(s->loop.data, s->beat_timer);
  s->loop.timer_free(s->loop.data, s->peer_timer);
}
