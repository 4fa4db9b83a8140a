/*
 * Setup and teardown of the backend's AWS resources.
 *
 * Setup is a chain of calls, one at a time, each step storing what the
 * next needs:
 *
 *   sns:    CreateTopic -> CreateQueue -> TagQueue -> GetQueueAttributes
 *           -> Subscribe
 *   queues: CreateQueue -> TagQueue -> ListQueues (the peers)
 *
 * CreateQueue already carries the reaper's tags; TagQueue then sets
 * them on a queue that existed before (CreateQueue leaves its tags as
 * they were) and is what the heartbeat repeats.
 *
 * Every call is idempotent on AWS (same name and attributes give the
 * same topic, queue or subscription), so the chain simply runs again
 * from the top whenever something is found missing, e.g. after the
 * service lost its state. A failed step is retried with backoff, for
 * ever; a "not found" in the middle (the topic vanished under us)
 * restarts the chain.
 *
 * Teardown on flush: Unsubscribe, then DeleteQueue, one attempt each,
 * then STOPPED.
 */
#include "cf_sqs_int.h"

#include <stdio.h>
#include <string.h>

#include "cf_mem.h"

static void step_send(sqs *s);

static int first_step(const sqs *s) {
  return s->topology == CF_SQS_SNS ? SQS_ST_TOPIC : SQS_ST_QUEUE;
}

static int next_step(const sqs *s, int step) {
  if (s->topology == CF_SQS_SNS) {
    switch (step) {
    case SQS_ST_TOPIC: return SQS_ST_QUEUE;
    case SQS_ST_QUEUE: return SQS_ST_TAG;
    case SQS_ST_TAG: return SQS_ST_ARN;
    case SQS_ST_ARN: return SQS_ST_SUBSCRIBE;
    default: return SQS_ST_DONE;
    }
  }
  switch (step) {
  case SQS_ST_QUEUE: return SQS_ST_TAG;
  case SQS_ST_TAG: return SQS_ST_PEERS;
  default: return SQS_ST_DONE;
  }
}

static const char *step_action(int step) {
  switch (step) {
  case SQS_ST_TOPIC: return "CreateTopic";
  case SQS_ST_QUEUE: return "CreateQueue";
  case SQS_ST_TAG: return "TagQueue";
  case SQS_ST_ARN: return "GetQueueAttributes";
  case SQS_ST_SUBSCRIBE: return "Subscribe";
  case SQS_ST_PEERS: return "ListQueues";
  case SQS_ST_VERIFY: return "GetQueueAttributes";
  default: return "setup";
  }
}

/* --- request parameters --------------------------------------------------- */

/* The tags the reaper reads: cluster, instance and last heartbeat. */
static json_t *tags_object(const sqs *s) {
  char id[17], beat[24];

  snprintf(id, sizeof(id), "%016llx", (unsigned long long)s->self);
  snprintf(beat, sizeof(beat), "%.0f", sqs_wall(s)); /* a date */
  return json_pack("{s:s, s:s, s:s}", "chatfanout-cluster", s->cluster,
                   "chatfanout-instance", id, "chatfanout-heartbeat", beat);
}

json_t *sqs_tag_params(sqs *s) {
  return json_pack("{s:s, s:o}", "QueueUrl", s->queue_url, "Tags",
                   tags_object(s));
}

/*
 * The queue's ARN as the topic's account and region make it: the queue
 * policy must name it before the queue exists. "*" when the topic ARN is
 * not the usual arn:PARTITION:sns:REGION:ACCOUNT:NAME.
 */
static void queue_arn_guess(const sqs *s, char *out, size_t size) {
  const char *a = s->topic_arn, *f[6];
  int n = 0;

  snprintf(out, size, "*");
  if (a == NULL)
    return;
  f[n++] = a;
  while (n < 6 && (a = strchr(a, ':')) != NULL)
    f[n++] = ++a;
  if (n != 6 || strncmp(f[0], "arn:", 4) != 0)
    return;
  /* partition = f[1] .. f[2]-1, region = f[3] .. f[4]-1, account ... */
  snprintf(out, size, "arn:%.*s:sqs:%.*s:%.*s:%s",
           (int)(f[2] - f[1] - 1), f[1], (int)(f[4] - f[3] - 1), f[3],
           (int)(f[5] - f[4] - 1), f[4], s->qname);
}

/* Lets the topic (and only it) deliver into our queue. */
static json_t *policy_string(const sqs *s) {
  char arn[256], *buf;
  json_t *doc, *str = NULL;
  size_t n;

  queue_arn_guess(s, arn, sizeof(arn));
  doc = json_pack("{s:s, s:[{s:s, s:s, s:{s:s}, s:s, s:s, s:{s:{s:s}}}]}",
                  "Version", "2012-10-17", "Statement", "Sid",
                  "chatfanout-topic", "Effect", "Allow", "Principal",
                  "Service", "sns.amazonaws.com", "Action",
                  "sqs:SendMessage", "Resource", arn, "Condition",
                  "ArnEquals", "aws:SourceArn", s->topic_arn);
  if (doc == NULL)
    return NULL;
  /* Dumped into our own buffer: jansson's allocator may be the host's. */
  n = json_dumpb(doc, NULL, 0, JSON_COMPACT);
  buf = n ? cf__malloc(&s->mem, n) : NULL;
  if (buf != NULL && json_dumpb(doc, buf, n, JSON_COMPACT) == n)
    str = json_stringn(buf, n);
  cf__free(&s->mem, buf);
  json_decref(doc);
  return str;
}

static json_t *queue_params(const sqs *s) {
  char ret[16], wait[8];
  json_t *attrs;

  snprintf(ret, sizeof(ret), "%u", s->retention);
  snprintf(wait, sizeof(wait), "%u", s->wait_seconds);
  attrs = json_pack("{s:s, s:s}", "MessageRetentionPeriod", ret,
                    "ReceiveMessageWaitTimeSeconds", wait);
  if (attrs == NULL)
    return NULL;
  if (s->topology == CF_SQS_SNS &&
      json_object_set_new(attrs, "Policy", policy_string(s)) != 0)
    goto fail;
  if (s->fifo && json_object_set_new(attrs, "FifoQueue",
                                     json_string("true")) != 0)
    goto fail;
  /*
   * Tagged at birth: a crash before TagQueue would otherwise leave a
   * queue the reaper cannot tell is ours, and it would live for ever.
   */
  return json_pack("{s:s, s:o, s:o}", "QueueName", s->qname, "Attributes",
                   attrs, "tags", tags_object(s));
fail:
  json_decref(attrs);
  return NULL;
}

/* --- steps ---------------------------------------------------------------- */

static void on_setup(const cf__aws_result *r, void *ud);

static int send_topic(sqs *s) {
  char name[SQS_CLUSTER_MAX + 8];
  cf__aws_param p[5] = {
    {"Name", name},
    {"Attributes.entry.1.key", "FifoTopic"},
    {"Attributes.entry.1.value", "true"},
    {"Attributes.entry.2.key", "ContentBasedDeduplication"},
    {"Attributes.entry.2.value", "false"},
  };

  snprintf(name, sizeof(name), "%s%s", s->cluster, s->fifo ? ".fifo" : "");
  return sqs_call_sns(s, "CreateTopic", p, s->fifo ? 5 : 1,
                      SQS_CALL_TIMEOUT, on_setup, s, &s->setup_xfer);
}

static int send_subscribe(sqs *s) {
  cf__aws_param p[6] = {
    {"TopicArn", s->topic_arn},
    {"Protocol", "sqs"},
    {"Endpoint", s->queue_arn},
    {"Attributes.entry.1.key", "RawMessageDelivery"},
    {"Attributes.entry.1.value", "true"},
    {"ReturnSubscriptionArn", "true"},
  };

  return sqs_call_sns(s, "Subscribe", p, 6, SQS_CALL_TIMEOUT, on_setup, s,
                      &s->setup_xfer);
}

static json_t *sqs_step_params(sqs *s) {
  switch (s->step) {
  case SQS_ST_QUEUE: return queue_params(s);
  case SQS_ST_TAG: return sqs_tag_params(s);
  case SQS_ST_ARN:
  case SQS_ST_VERIFY:
    return json_pack("{s:s, s:[s]}", "QueueUrl", s->queue_url,
                     "AttributeNames", "QueueArn");
  default: return sqs_list_params(s);
  }
}

static int step_call(sqs *s) {
  json_t *p;
  int rv;

  if (s->step == SQS_ST_TOPIC)
    return send_topic(s);
  if (s->step == SQS_ST_SUBSCRIBE)
    return send_subscribe(s);
  p = sqs_step_params(s);
  if (p == NULL)
    return CF_ERR_NOMEM;
  rv = sqs_call_sqs(s, step_action(s->step), p, SQS_CALL_TIMEOUT, on_setup,
                    s, &s->setup_xfer);
  json_decref(p);
  return rv;
}

static void step_retry(sqs *s) {
  sqs_timer_set(s, s->setup_timer, cf__sqs_backoff_next(&s->setup_bo));
}

static void step_send(sqs *s) {
  int rv = step_call(s);

  if (rv == CF_OK)
    return;
  s->setup_xfer = NULL;
  if (!(s->failing & SQS_P_SETUP)) {
    char text[128];
    snprintf(text, sizeof(text), "%s: %s", step_action(s->step),
             cf_strerror(rv));
    sqs_fail(s, SQS_P_SETUP, text, NULL);
  }
  step_retry(s);
}

/* Keeps the string member key of data in *dst. CF_ERR_PARSE if absent. */
static int store(sqs *s, char **dst, const json_t *data, const char *key) {
  const char *v = cf__sqs_json_str(data, key);
  char *copy;

  if (v == NULL || v[0] == '\0')
    return CF_ERR_PARSE;
  copy = sqs_strdup(s, v);
  if (copy == NULL)
    return CF_ERR_NOMEM;
  cf__free(&s->mem, *dst);
  *dst = copy;
  return CF_OK;
}

static int step_store(sqs *s, const json_t *data) {
  switch (s->step) {
  case SQS_ST_TOPIC: return store(s, &s->topic_arn, data, "TopicArn");
  case SQS_ST_QUEUE: return store(s, &s->queue_url, data, "QueueUrl");
  case SQS_ST_ARN:
    return store(s, &s->queue_arn, json_object_get(data, "Attributes"),
                 "QueueArn");
  case SQS_ST_SUBSCRIBE:
    return store(s, &s->sub_arn, data, "SubscriptionArn");
  case SQS_ST_PEERS:
    sqs_peers_update(s, data);
    return CF_OK;
  default: return CF_OK;
  }
}

static void setup_done(sqs *s) {
  s->step = SQS_ST_NONE;
  cf__sqs_backoff_reset(&s->setup_bo);
  s->ready = 1;
  sqs_on_ready(s);
}

static void setup_failed(sqs *s, const cf__aws_result *r) {
  char what[64];

  snprintf(what, sizeof(what), "%s", step_action(s->step));
  if (s->step == SQS_ST_VERIFY) {
    if (r->not_found) {
      /* The service lost our queue: everything goes again. */
      s->step = SQS_ST_NONE;
      sqs_setup_lost(s, what, r);
      return;
    }
    step_retry(s); /* still unreachable; the failing parts say so */
    return;
  }
  sqs_fail(s, SQS_P_SETUP, what, r);
  /* What an earlier step made is gone (the topic under Subscribe, the
   * queue under TagQueue): make it again. */
  if (r->not_found)
    s->step = first_step(s);
  step_retry(s);
}

/* Our queue is there: the outage lost nothing, sends go on. */
static void verify_done(sqs *s) {
  s->step = SQS_ST_NONE;
  cf__sqs_backoff_reset(&s->setup_bo);
  sqs_send_resume(s);
}

static void on_setup(const cf__aws_result *r, void *ud) {
  sqs *s = ud;
  int rv;

  s->setup_xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  if (r->error != CF_OK) {
    setup_failed(s, r);
  } else if ((rv = step_store(s, r->data)) != CF_OK) {
    cf__aws_result bad = *r;
    bad.error = rv;
    bad.code = "";
    bad.message = "unexpected response";
    bad.not_found = 0;
    setup_failed(s, &bad);
  } else if (s->step == SQS_ST_VERIFY) {
    verify_done(s);
  } else {
    s->step = next_step(s, s->step);
    if (s->step == SQS_ST_DONE)
      setup_done(s);
    else
      step_send(s);
  }
  sqs_leave(s);
}

static void on_setup_timer(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  if (s->step != SQS_ST_NONE)
    step_send(s);
  sqs_leave(s);
}

/* --- entry points --------------------------------------------------------- */

int sqs_setup_init(sqs *s) {
  cf__sqs_backoff_init(&s->setup_bo, &s->rng, SQS_RETRY_BASE,
                       SQS_RETRY_CAP);
  s->setup_timer = s->loop.timer_new(s->loop.data, on_setup_timer, s);
  return s->setup_timer != NULL ? CF_OK : CF_ERR_NOMEM;
}

void sqs_setup_begin(sqs *s) {
  if (s->step == SQS_ST_VERIFY)
    sqs_setup_cancel(s);
  if (s->step != SQS_ST_NONE)
    return;
  if (s->phase != SQS_RUNNING && s->phase != SQS_DRAINING)
    return;
  if (s->ready) {
    s->ready = 0;
    sqs_on_ready(s);
  }
  /* Without credentials every call would fail: on_creds starts us. */
  if (!cf__aws_ready(s->aws))
    return;
  cf__sqs_backoff_reset(&s->setup_bo);
  s->step = first_step(s);
  step_send(s);
}

void sqs_setup_verify(sqs *s) {
  if (s->step != SQS_ST_NONE || !s->ready || s->queue_url == NULL)
    return;
  if (s->phase != SQS_RUNNING && s->phase != SQS_DRAINING)
    return;
  cf__sqs_backoff_reset(&s->setup_bo);
  s->step = SQS_ST_VERIFY;
  step_send(s);
}

void sqs_setup_lost(sqs *s, const char *what, const cf__aws_result *r) {
  sqs_fail(s, SQS_P_SETUP, what, r);
  sqs_setup_begin(s);
}

void sqs_setup_cancel(sqs *s) {
  cf__http_cancel(s->setup_xfer);
  s->setup_xfer = NULL;
  sqs_timer_set(s, s->setup_timer, -1.0);
  s->step = SQS_ST_NONE;
}

/* --- teardown ------------------------------------------------------------- */

static void teardown_next(sqs *s);

static void teardown_finish(sqs *s) {
  s->phase = SQS_STOPPED;
  s->ready = 0;
  s->failing = 0;
  sqs_timer_set(s, s->health_timer, -1.0);
  sqs_timer_set(s, s->flush_timer, -1.0);
  cf_queue_report_state(s->q, CF_QUEUE_STOPPED);
}

static void on_teardown(const cf__aws_result *r, void *ud) {
  sqs *s = ud;

  s->teardown_xfer = NULL;
  sqs_enter(s);
  sqs_count_result(s, r);
  /* One attempt each: a queue left behind is the reaper's. */
  if (s->sub_arn != NULL) {
    sqs_strfree(s, &s->sub_arn);
  } else {
    sqs_strfree(s, &s->queue_url);
    sqs_strfree(s, &s->queue_arn);
  }
  teardown_next(s);
  sqs_leave(s);
}

static int teardown_call(sqs *s) {
  cf__aws_param p = {"SubscriptionArn", s->sub_arn};
  json_t *params;
  int rv;

  if (s->sub_arn != NULL)
    return sqs_call_sns(s, "Unsubscribe", &p, 1, SQS_TEARDOWN_TIMEOUT,
                        on_teardown, s, &s->teardown_xfer);
  params = json_pack("{s:s}", "QueueUrl", s->queue_url);
  if (params == NULL)
    return CF_ERR_NOMEM;
  rv = sqs_call_sqs(s, "DeleteQueue", params, SQS_TEARDOWN_TIMEOUT,
                    on_teardown, s, &s->teardown_xfer);
  json_decref(params);
  return rv;
}

static void teardown_next(sqs *s) {
  while (s->sub_arn != NULL || s->queue_url != NULL) {
    if (teardown_call(s) == CF_OK)
      return;
    s->teardown_xfer = NULL;
    if (s->sub_arn != NULL) {
      sqs_strfree(s, &s->sub_arn);
    } else {
      sqs_strfree(s, &s->queue_url);
      sqs_strfree(s, &s->queue_arn);
    }
  }
  teardown_finish(s);
}

void sqs_teardown_begin(sqs *s) {
  sqs_setup_cancel(s);
  s->phase = SQS_TEARDOWN;
  s->ready = 0;
  /* Without credentials nothing can be deleted; don't wait for them. */
  if (!cf__aws_ready(s->aws)) {
    sqs_strfree(s, &s->sub_arn);
    sqs_strfree(s, &s->queue_url);
    sqs_strfree(s, &s->queue_arn);
  }
  teardown_next(s);
}

void sqs_setup_free(sqs *s) {
  /* Calls were cancelled with the client. */
  s->loop.timer_free(s->loop.data, s->setup_timer);
  sqs_strfree(s, &s->topic_arn);
  sqs_strfree(s, &s->queue_url);
  sqs_strfree(s, &s->queue_arn);
  sqs_strfree(s, &s->sub_arn);
}
