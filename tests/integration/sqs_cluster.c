/*
 * The SQS/SNS backend against a real SQS/SNS-compatible server.
 *
 * Starts fauxqs (tests/integration/fauxqs_server.mjs) on a free loopback
 * port, then for each topology (sns, queues, sns + fifo) runs three
 * hubs, each with its own cf_queue_sqs, in this process on one libev
 * loop, and checks:
 *
 *  - every message published on any instance reaches the clients of its
 *    room on every instance exactly once, each origin's order kept
 *    (text, binary, and one large message that fills a batch alone);
 *  - fifo: every queue (also the publisher's own) receives each room's
 *    messages in one and the same order;
 *  - a message over the SNS/SQS size limit is refused at once;
 *  - the server restarted empty mid-run: every instance reports the
 *    outage, sets its queue and subscription up again by itself, and the
 *    messages published during the outage and after it arrive;
 *  - flush: the own queues (and subscriptions) are gone afterwards.
 *
 *   sqs_cluster NODE FAUXQS_SERVER_MJS
 *
 * Exits 77 (skipped) when node or the fauxqs package is missing, unless
 * CF_TEST_NO_SKIP=1. CF_TEST_VERBOSE=1 logs state changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ev.h>

#include <chatfanout/adapters/cf_libev.h>
#include <chatfanout/cf_hub.h>
#include <chatfanout/cf_queue_sqs.h>

#include "cf_aws.h"
#include "cf_sqs_batch.h"

#define NODES 3
#define ROOMS 2
#define MAXREC 4096
#define BIG_LEN (150 * 1024)

static const char *node_bin, *launcher;
static pid_t fq_pid = -1;
static int fq_port;
static char endpoint[64];
static int verbose;
static struct ev_loop *loop;
static cf_loop cfloop;
static int failures;

/* --- reporting ------------------------------------------------------- */

static void logf_(const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#define CHECK(cond, ...)                                        \
  do {                                                          \
    if (!(cond)) {                                              \
      failures++;                                               \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__,   \
              #cond);                                           \
      logf_(__VA_ARGS__);                                       \
    }                                                           \
  } while (0)

static void die(const char *what) {
  fprintf(stderr, "FATAL: %s\n", what);
  if (fq_pid > 0) {
    kill(fq_pid, SIGKILL);
    waitpid(fq_pid, NULL, 0);
  }
  exit(1);
}

static void skip(const char *why) {
  const char *ns = getenv("CF_TEST_NO_SKIP");

  if (ns != NULL && strcmp(ns, "1") == 0)
    die(why);
  fprintf(stderr, "SKIP: %s\n", why);
  exit(77);
}

/* --- the emulator ---------------------------------------------------- */

/* Reads the launcher's "... url=http://127.0.0.1:PORT" line. */
static int read_port(int fd, double timeout) {
  char buf[256];
  size_t used = 0;
  struct pollfd p = {fd, POLLIN, 0};
  const char *u;

  while (used < sizeof(buf) - 1) {
    ssize_t n;
    if (poll(&p, 1, (int)(timeout * 1000)) <= 0)
      return -1;
    n = read(fd, buf + used, sizeof(buf) - 1 - used);
    if (n <= 0)
      return -1;
    used += (size_t)n;
    buf[used] = '\0';
    if (strchr(buf, '\n') != NULL)
      break;
  }
  u = strstr(buf, "url=http://127.0.0.1:");
  return u != NULL ? atoi(u + strlen("url=http://127.0.0.1:")) : -1;
}

static int fauxqs_start(int port) {
  int fds[2], got;
  char portarg[16];

  if (pipe(fds) != 0)
    die("pipe");
  snprintf(portarg, sizeof(portarg), "%d", port);
  fq_pid = fork();
  if (fq_pid < 0)
    die("fork");
  if (fq_pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    execl(node_bin, node_bin, launcher, "--port", portarg, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  got = read_port(fds[0], 20.0);
  close(fds[0]);
  if (got <= 0) {
    kill(fq_pid, SIGKILL);
    waitpid(fq_pid, NULL, 0);
    fq_pid = -1;
    return -1;
  }
  fq_port = got;
  snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d", fq_port);
  return 0;
}

static void fauxqs_kill(void) {
  if (fq_pid <= 0)
    return;
  kill(fq_pid, SIGKILL);
  waitpid(fq_pid, NULL, 0);
  fq_pid = -1;
}

/* --- the loop -------------------------------------------------------- */

typedef int (*cond_fn)(void *arg);

static void tick(EV_P_ ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(EV_A_ EVBREAK_ONE);
}

/* Runs the loop until cond holds or seconds pass; returns cond. */
static int run_until(cond_fn cond, void *arg, double seconds) {
  ev_timer t;
  double end = ev_time() + seconds;

  ev_timer_init(&t, tick, 0.02, 0.02);
  ev_timer_start(loop, &t);
  while (!cond(arg) && ev_time() < end)
    ev_run(loop, EVRUN_ONCE);
  ev_timer_stop(loop, &t);
  return cond(arg);
}

static int never(void *arg) {
  (void)arg;
  return 0;
}

static void run_for(double seconds) {
  run_until(never, NULL, seconds);
}

/* --- the cluster ----------------------------------------------------- */

/* What one client (one room on one node) received. */
typedef struct rec {
  int n;
  int origin[MAXREC]; /* node index of the publisher */
  int k[MAXREC];      /* its message number */
  int binary[MAXREC];
  size_t len[MAXREC];
} rec;

typedef struct node {
  int idx;
  cf_hub *hub;
  cf_queue *q;
  cf_client *client[ROOMS];
  rec got[ROOMS];
  int states[64];
  int nstates;
  /* fifo: every envelope the queue reported, in order, per room */
  char qorder[ROOMS][MAXREC][40];
  int nq[ROOMS];
  int qdups;
  int own;                /* own envelopes the queue reported */
  int foreign[ROOMS];     /* messages from outside the cluster's nodes */
} node;

typedef struct cluster {
  const char *name;
  int topology, fifo;
  char cluster[64];
  node nodes[NODES];
  int sent[NODES][ROOMS]; /* messages published per origin and room */
  int big_sent[NODES];
  int next_k[NODES];
  int dead[NODES];        /* freed without flush (crashed) */
} cluster;

static const char *rooms[ROOMS] = {"lobby", "dev"};

static node *client_node(cf_client *c, int *room) {
  node *n = cf_client_user_data(c);
  int r;

  for (r = 0; r < ROOMS; r++)
    if (n->client[r] == c)
      *room = r;
  return n;
}

/* Payloads: "o=<node> k=<n> <padding>"; binary ones the same bytes. */
static void on_wake(cf_client *c, void *ud) {
  int room = -1;
  node *n = client_node(c, &room);
  cf_msg *m;

  (void)ud;
  while ((m = cf_client_pop(c)) != NULL) {
    rec *r = &n->got[room];
    const char *d = cf_msg_data(m);
    int o = -1, k = -1;
    char head[32];
    size_t len = cf_msg_size(m), hl = len < 31 ? len : 31;

    memcpy(head, d, hl);
    head[hl] = '\0';
    if (sscanf(head, "o=%d k=%d", &o, &k) != 2)
      CHECK(0, "unexpected payload %.20s", head);
    else if (o >= NODES)
      n->foreign[room]++;
    else if (r->n < MAXREC) {
      r->origin[r->n] = o;
      r->k[r->n] = k;
      r->binary[r->n] = cf_msg_flags(m) == CF_MSG_BINARY;
      r->len[r->n] = len;
      r->n++;
    }
    cf_msg_unref(m);
  }
}

static void on_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)ud;
  CHECK(0, "client closed, reason %d", reason);
}

static const cf_client_ops client_ops = {CF_CLIENT_OPS_VERSION, on_wake,
                                         on_close};

/* The queue's reports: recorded, then handed to the hub as it would. */
static void on_message(cf_queue *q, const cf_envelope *env, void *ud) {
  node *n = ud;
  char id[40];
  int r, i;

  (void)q;
  for (r = 0; r < ROOMS; r++)
    if (env->room_len == strlen(rooms[r]) &&
        memcmp(env->room, rooms[r], env->room_len) == 0)
      break;
  CHECK(r < ROOMS, "message for an unknown room");
  if (r < ROOMS) {
    snprintf(id, sizeof(id), "%llx-%llu", (unsigned long long)env->origin,
             (unsigned long long)env->seq);
    for (i = 0; i < n->nq[r] && strcmp(n->qorder[r][i], id) != 0; i++)
      ;
    if (i < n->nq[r]) {
      n->qdups++;
    } else if (n->nq[r] < MAXREC) {
      snprintf(n->qorder[r][n->nq[r]++], sizeof(n->qorder[r][0]), "%s", id);
      n->own += env->origin == cf_hub_instance_id(n->hub);
    }
  }
  cf_hub_deliver(n->hub, env);
}

static void on_state(cf_queue *q, int state, void *ud) {
  node *n = ud;

  if (verbose)
    logf_("  node %d: %s (%s)", n->idx, cf_queue_state_name(state),
          cf_queue_errmsg(q));
  if (n->nstates < 64)
    n->states[n->nstates++] = state;
}

static const cf_queue_callbacks queue_cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                             on_message, on_state};

static char *const test_env[] = {
  "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret",
  "AWS_REGION=us-east-1", "AWS_EC2_METADATA_DISABLED=true", NULL};

static void node_open(cluster *cl, int i) {
  node *n = &cl->nodes[i];
  cf_hub_config hc = {.version = CF_HUB_CONFIG_VERSION,
                      .instance_id = 0x5157000000000100ull + (unsigned)i +
                                     ((uint64_t)cl->topology << 8) +
                                     ((uint64_t)cl->fifo << 12),
                      .client_buffer = 16u << 20,
                      .max_message = 200 * 1024};
  cf_sqs_config sc = {.version = CF_SQS_CONFIG_VERSION,
                      .topology = cl->topology, .fifo = cl->fifo,
                      .cluster = cl->cluster, .endpoint_sqs = endpoint,
                      .endpoint_sns = endpoint, .pollers = 2,
                      .wait_seconds = 5, .heartbeat = 1.0,
                      .stale_after = 5.0, .peer_refresh = 1.0,
                      .envp = test_env};
  char msg[256];
  int r;

  memset(n, 0, sizeof(*n));
  n->idx = i;
  if (cf_hub_new(&n->hub, &hc) != CF_OK)
    die("cf_hub_new");
  sc.instance_id = cf_hub_instance_id(n->hub);
  if (cf_queue_sqs_new(&n->q, &cfloop, &sc, NULL, msg, sizeof(msg)) !=
      CF_OK) {
    logf_("cf_queue_sqs_new: %s", msg);
    die("cf_queue_sqs_new");
  }
  if (cf_hub_attach_queue(n->hub, n->q) != CF_OK)
    die("attach");
  /* After attach: we watch what the queue reports, then pass it on. */
  if (cf_queue_set_callbacks(n->q, &queue_cbs, n) != CF_OK)
    die("set_callbacks");
  for (r = 0; r < ROOMS; r++) {
    if (cf_client_new(&n->client[r], n->hub, &client_ops, n) != CF_OK ||
        cf_client_join(n->client[r], rooms[r], strlen(rooms[r])) != CF_OK)
      die("client");
  }
  if (cf_queue_start(n->q) != CF_OK)
    die("cf_queue_start");
}

static int all_state(void *arg, int want) {
  cluster *cl = arg;
  int i;

  for (i = 0; i < NODES; i++)
    if (!cl->dead[i] && cf_queue_state_get(cl->nodes[i].q) != want)
      return 0;
  return 1;
}

static int all_up(void *arg) {
  return all_state(arg, CF_QUEUE_UP);
}

static int all_stopped(void *arg) {
  return all_state(arg, CF_QUEUE_STOPPED);
}

static int saw_state(const node *n, int state) {
  int i;

  for (i = 0; i < n->nstates; i++)
    if (n->states[i] == state)
      return 1;
  return 0;
}

/* Publishes message k of node i into room r (binary every 5th). */
static void publish(cluster *cl, int i, int r, size_t pad) {
  static char buf[BIG_LEN + 64];
  int k = cl->next_k[i]++;
  int len = snprintf(buf, 64, "o=%d k=%d ", i, k);
  uint32_t flags = k % 5 == 4 ? CF_MSG_BINARY : CF_MSG_TEXT;
  int rv;

  memset(buf + len, flags == CF_MSG_BINARY ? 0xfe : 'x', pad);
  if (flags == CF_MSG_BINARY)
    buf[len + pad / 2] = '\0';
  rv = cf_hub_publish(cl->nodes[i].hub, rooms[r], strlen(rooms[r]), flags,
                      buf, (size_t)len + pad);
  CHECK(rv == CF_OK, "publish: %s", cf_strerror(rv));
  cl->sent[i][r]++;
}

/* Everyone has everything published so far, in every room. */
static int all_delivered(void *arg) {
  cluster *cl = arg;
  int i, r, o, want;

  for (i = 0; i < NODES; i++)
    for (r = 0; r < ROOMS && !cl->dead[i]; r++) {
      for (want = 0, o = 0; o < NODES; o++)
        want += cl->sent[o][r];
      if (cl->nodes[i].got[r].n < want)
        return 0;
    }
  return 1;
}

/*
 * Exactly once and in order per origin: at each node, room, origin, the
 * numbers seen are strictly increasing and as many as were sent.
 */
static void check_delivery(cluster *cl, const char *phase) {
  int i, r, o, j;

  for (i = 0; i < NODES; i++)
    for (r = 0; r < ROOMS && !cl->dead[i]; r++) {
      rec *g = &cl->nodes[i].got[r];
      for (o = 0; o < NODES; o++) {
        int last = -1, count = 0, ordered = 1;
        for (j = 0; j < g->n; j++) {
          if (g->origin[j] != o)
            continue;
          if (g->k[j] <= last)
            ordered = 0;
          last = g->k[j];
          count++;
        }
        CHECK(count == cl->sent[o][r],
              "%s %s: node %d room %s got %d of %d from node %d",
              cl->name, phase, i, rooms[r], count, cl->sent[o][r], o);
        CHECK(ordered, "%s %s: node %d room %s: node %d out of order",
              cl->name, phase, i, rooms[r], o);
      }
    }
}

/* fifo: all queues saw each room's messages in one order. */
static void check_fifo_order(cluster *cl) {
  int i, r, j;

  for (r = 0; r < ROOMS; r++)
    for (i = 1; i < NODES; i++) {
      node *a = &cl->nodes[0], *b = &cl->nodes[i];
      int same;
      if (cl->dead[i])
        continue;
      same = a->nq[r] == b->nq[r];
      for (j = 0; same && j < a->nq[r]; j++)
        same = strcmp(a->qorder[r][j], b->qorder[r][j]) == 0;
      CHECK(same, "%s: room %s order differs between node 0 and %d "
            "(%d vs %d envelopes)", cl->name, rooms[r], i, a->nq[r],
            b->nq[r]);
    }
}

static void check_big(cluster *cl) {
  int i, r, j, seen;

  for (i = 0; i < NODES; i++)
    for (r = 0; r < ROOMS; r++) {
      rec *g = &cl->nodes[i].got[r];
      for (seen = 0, j = 0; j < g->n; j++)
        seen += g->len[j] >= BIG_LEN;
      if (r == 0)
        CHECK(seen == NODES, "%s: node %d saw %d large messages",
              cl->name, i, seen);
    }
}

static void check_too_big(cluster *cl) {
  static char data[256 * 1024];
  cf_envelope e = {cf_hub_instance_id(cl->nodes[0].hub), 999999, 0, "lobby",
                   5, CF_MSG_TEXT, data, sizeof(data)};
  cf_queue_stats st;
  int rv;

  memset(data, 'y', sizeof(data));
  cf_queue_get_stats(cl->nodes[0].q, &st, sizeof(st));
  rv = cf_queue_publish(cl->nodes[0].q, &e);
  CHECK(rv == CF_ERR_TOO_BIG, "%s: oversized publish gave %s", cl->name,
        cf_strerror(rv));
}

/* --- checks through a client of our own ------------------------------- */

static cf__aws *paws; /* the test's own AWS client */

typedef struct probe {
  int done;
  int error;
  int not_found;
  json_t *data;
} probe;

static void on_probe(const cf__aws_result *r, void *ud) {
  probe *p = ud;

  p->done = 1;
  p->error = r->error;
  p->not_found = r->not_found;
  p->data = r->data ? json_incref(r->data) : NULL;
}

static int probe_done(void *arg) {
  return ((probe *)arg)->done;
}

/* Runs one SQS call (params are consumed); the caller decrefs p.data. */
static probe call_sqs(const char *action, json_t *params) {
  probe p = {0};

  if (params == NULL ||
      cf__aws_sqs(paws, action, params, 10, on_probe, &p, NULL) != CF_OK)
    die(action);
  json_decref(params);
  run_until(probe_done, &p, 15);
  if (!p.done)
    die(action);
  return p;
}

static probe call_sns(const char *action, const cf__aws_param *prm,
                      size_t n) {
  probe p = {0};

  if (cf__aws_sns(paws, action, prm, n, 10, on_probe, &p, NULL) != CF_OK)
    die(action);
  run_until(probe_done, &p, 15);
  if (!p.done)
    die(action);
  return p;
}

/* Runs a call whose answer only matters for success. */
static int call_sqs_ok(const char *action, json_t *params) {
  probe p = call_sqs(action, params);

  json_decref(p.data);
  return p.error == CF_OK;
}

/* Number of queues left whose names start with prefix. */
static int queues_left(const char *prefix) {
  probe p = call_sqs("ListQueues",
                     json_pack("{s:s}", "QueueNamePrefix", prefix));
  int n;

  CHECK(p.error == CF_OK, "ListQueues failed");
  n = (int)cf__sqs_json_list_size(json_object_get(p.data, "QueueUrls"));
  json_decref(p.data);
  return n;
}

static void topic_arn(const cluster *cl, char *arn, size_t size) {
  snprintf(arn, size, "arn:aws:sns:us-east-1:000000000000:%s%s",
           cl->cluster, cl->fifo ? ".fifo" : "");
}

/* Subscriptions of the cluster's topic whose endpoint ends in name (any
 * when name is NULL). */
static int subscriptions(const cluster *cl, const char *name) {
  char arn[160];
  cf__aws_param prm = {"TopicArn", arn};
  probe p;
  size_t i, n;
  int count = 0;

  topic_arn(cl, arn, sizeof(arn));
  p = call_sns("ListSubscriptionsByTopic", &prm, 1);
  CHECK(p.error == CF_OK, "ListSubscriptionsByTopic failed");
  n = cf__sqs_json_list_size(json_object_get(p.data, "Subscriptions"));
  for (i = 0; i < n; i++) {
    const json_t *sub = cf__sqs_json_list_get(
        json_object_get(p.data, "Subscriptions"), i);
    const char *ep = cf__sqs_json_str(sub, "Endpoint");
    if (name == NULL ||
        (ep != NULL && strlen(ep) >= strlen(name) &&
         strcmp(ep + strlen(ep) - strlen(name), name) == 0))
      count++;
  }
  json_decref(p.data);
  return count;
}

static void check_cleanup(cluster *cl) {
  char prefix[80];

  snprintf(prefix, sizeof(prefix), "%s-", cl->cluster);
  CHECK(queues_left(prefix) == 0, "%s: queues left after flush", cl->name);
  if (cl->topology == CF_SQS_SNS)
    CHECK(subscriptions(cl, NULL) == 0,
          "%s: subscriptions left after flush", cl->name);
}

/* URL of a queue by name, or "" when it does not exist. */
static void queue_url(const char *name, char *url, size_t size) {
  probe p = call_sqs("GetQueueUrl", json_pack("{s:s}", "QueueName", name));
  const char *u = cf__sqs_json_str(p.data, "QueueUrl");

  snprintf(url, size, "%s", p.error == CF_OK && u != NULL ? u : "");
  json_decref(p.data);
}

static void node_queue_name(const cluster *cl, int i, char *name,
                            size_t size) {
  snprintf(name, size, "%s-%016llx%s", cl->cluster,
           (unsigned long long)cf_hub_instance_id(cl->nodes[i].hub),
           cl->fifo ? ".fifo" : "");
}

/* --- foreign writers and the reaper ----------------------------------- */

static int foreign_seen(void *arg) {
  return ((node *)arg)->foreign[0] > 0;
}

static int queue_empty(void *arg) {
  const char *url = arg;
  probe p = call_sqs("GetQueueAttributes",
                     json_pack("{s:s, s:[s]}", "QueueUrl", url,
                               "AttributeNames", "All"));
  const json_t *a = json_object_get(p.data, "Attributes");
  const char *v = cf__sqs_json_str(a, "ApproximateNumberOfMessages");
  const char *nv = cf__sqs_json_str(a, "ApproximateNumberOfMessagesNotVisible");
  int empty = v != NULL && nv != NULL && strcmp(v, "0") == 0 &&
              strcmp(nv, "0") == 0;

  json_decref(p.data);
  return empty;
}

/*
 * Another service writes into node 0's queue: an envelope inside an SNS
 * notification (raw delivery off) arrives; a body that is no envelope is
 * deleted and noted once in errmsg, never delivered.
 */
static void check_foreign_writers(cluster *cl) {
  static char env_json[512];
  char name[100], url[300];
  cf_envelope e = {0x9999, 1, 0, "lobby", 5, CF_MSG_TEXT, "o=9 k=0 hi", 10};
  json_t *wrap;
  char *body;
  size_t len;

  node_queue_name(cl, 0, name, sizeof(name));
  queue_url(name, url, sizeof(url));
  CHECK(url[0] != '\0', "%s: node 0 has no queue", cl->name);
  CHECK(call_sqs_ok("SendMessage",
                    json_pack("{s:s, s:s}", "QueueUrl", url, "MessageBody",
                              "not an envelope{")),
        "SendMessage garbage");
  if (cf__envelope_encode(&e, env_json, sizeof(env_json), &len) != CF_OK)
    die("encode");
  wrap = json_pack("{s:s, s:s, s:s}", "Type", "Notification", "MessageId",
                   "m-1", "Message", env_json);
  body = json_dumps(wrap, JSON_COMPACT);
  CHECK(call_sqs_ok("SendMessage", json_pack("{s:s, s:s}", "QueueUrl", url,
                                              "MessageBody", body)),
        "SendMessage wrapped");
  free(body);
  json_decref(wrap);
  CHECK(run_until(foreign_seen, &cl->nodes[0], 10),
        "%s: wrapped envelope not delivered", cl->name);
  CHECK(run_until(queue_empty, url, 10),
        "%s: node 0's queue not emptied", cl->name);
  CHECK(strstr(cf_queue_errmsg(cl->nodes[0].q), "not an envelope") != NULL,
        "%s: errmsg is \"%s\"", cl->name, cf_queue_errmsg(cl->nodes[0].q));
  CHECK(cl->nodes[1].foreign[0] == 0, "%s: node 1 got node 0's message",
        cl->name);
}

typedef struct reap_wait {
  cluster *cl;
  const char *stale, *orphan;
} reap_wait;

static int reaped(void *arg) {
  reap_wait *w = arg;
  char url[300];

  queue_url(w->stale, url, sizeof(url));
  return url[0] == '\0' && subscriptions(w->cl, w->stale) == 0 &&
         subscriptions(w->cl, w->orphan) == 0;
}

/* A queue of a dead instance (old heartbeat) is deleted and its and an
 * orphan subscription removed; a live one and other clusters' stay. */
static void check_reaper(cluster *cl) {
  char stale[100], live[100], other[100], orphan[100];
  char arn[160], qarn[200], url[300];
  const char *names[3] = {stale, live, other};
  const char *beats[3] = {"1", "4102444800", "1"};
  cf__aws_param sub[4] = {{"TopicArn", arn}, {"Protocol", "sqs"},
                          {"Endpoint", qarn}, {"ReturnSubscriptionArn",
                                               "true"}};
  reap_wait w = {cl, stale, orphan};
  probe p;
  int i;

  snprintf(stale, sizeof(stale), "%s-00000000deadbeef", cl->cluster);
  snprintf(live, sizeof(live), "%s-00000000cafecafe", cl->cluster);
  snprintf(other, sizeof(other), "%s-x-00000000deadbeef", cl->cluster);
  snprintf(orphan, sizeof(orphan), "%s-00000000feedface", cl->cluster);
  topic_arn(cl, arn, sizeof(arn));
  for (i = 0; i < 3; i++) {
    p = call_sqs("CreateQueue", json_pack("{s:s}", "QueueName", names[i]));
    CHECK(p.error == CF_OK, "CreateQueue %s", names[i]);
    snprintf(url, sizeof(url), "%s", cf__sqs_json_str(p.data, "QueueUrl"));
    json_decref(p.data);
    CHECK(call_sqs_ok("TagQueue",
                      json_pack("{s:s, s:{s:s}}", "QueueUrl", url, "Tags",
                                "chatfanout-heartbeat", beats[i])),
          "TagQueue");
  }
  snprintf(qarn, sizeof(qarn), "arn:aws:sqs:us-east-1:000000000000:%s",
           stale);
  p = call_sns("Subscribe", sub, 4);
  CHECK(p.error == CF_OK, "Subscribe stale");
  json_decref(p.data);
  snprintf(qarn, sizeof(qarn), "arn:aws:sqs:us-east-1:000000000000:%s",
           orphan);
  p = call_sns("Subscribe", sub, 4);
  CHECK(p.error == CF_OK, "Subscribe orphan");
  json_decref(p.data);
  /* Reaper rounds come every third heartbeat (1 s here). */
  CHECK(run_until(reaped, &w, 15), "%s: stale queue or subscriptions "
        "not reaped", cl->name);
  for (i = 1; i < 3; i++) {
    queue_url(names[i], url, sizeof(url));
    CHECK(url[0] != '\0', "%s: %s was reaped", cl->name, names[i]);
    call_sqs_ok("DeleteQueue", json_pack("{s:s}", "QueueUrl", url));
  }
}

/* --- one topology ------------------------------------------------------ */

static void burst(cluster *cl, int per_node) {
  int i, k;

  for (k = 0; k < per_node; k++)
    for (i = 0; i < NODES; i++)
      if (!cl->dead[i])
        publish(cl, i, (k + i) % ROOMS, (size_t)(k % 7) * 13);
}

static void phase_steady(cluster *cl) {
  int i;

  /* A burst fills batches; single messages ride the linger timer. */
  burst(cl, 25);
  for (i = 0; i < NODES; i++)
    publish(cl, i, 0, BIG_LEN);
  burst(cl, 5);
  CHECK(run_until(all_delivered, cl, 30), "%s: steady delivery timed out",
        cl->name);
  run_for(0.3); /* duplicates, if any, would show now */
  check_delivery(cl, "steady");
  check_big(cl);
  check_too_big(cl);
}

static int all_degraded_or_down(void *arg) {
  cluster *cl = arg;
  int i;

  for (i = 0; i < NODES; i++)
    if (!cl->dead[i] && !saw_state(&cl->nodes[i], CF_QUEUE_DEGRADED) &&
        !saw_state(&cl->nodes[i], CF_QUEUE_DOWN))
      return 0;
  return 1;
}

static void node_close(node *n) {
  int r;

  /* Detached first: the hub would otherwise touch the freed queue. */
  cf_hub_attach_queue(n->hub, NULL);
  cf_queue_free(n->q);
  for (r = 0; r < ROOMS; r++)
    cf_client_free(n->client[r]);
  cf_hub_free(n->hub);
}

typedef struct gone_wait {
  const char *name;
} gone_wait;

static int queue_gone(void *arg) {
  char url[300];

  queue_url(((gone_wait *)arg)->name, url, sizeof(url));
  return url[0] == '\0';
}

static int buffers_empty(void *arg) {
  cluster *cl = arg;
  cf_queue_stats st;
  int i;

  for (i = 0; i < NODES; i++) {
    if (cl->dead[i])
      continue;
    cf_queue_get_stats(cl->nodes[i].q, &st, sizeof(st));
    if (st.buffered_bytes != 0)
      return 0;
  }
  return 1;
}

/*
 * Node 2 crashes (freed without flush): its queue stays, its heartbeat
 * stops. The others keep chatting; once the reaper deleted its queue,
 * sends to it find nothing and must not hold up the rest.
 */
static void phase_dead_peer(cluster *cl) {
  char name[100];
  gone_wait w = {name};
  double t0;
  int i;

  node_queue_name(cl, 2, name, sizeof(name));
  node_close(&cl->nodes[2]);
  cl->dead[2] = 1;
  burst(cl, 4);
  CHECK(run_until(all_delivered, cl, 15), "%s: delivery after a crash",
        cl->name);
  CHECK(run_until(queue_gone, &w, 25), "%s: dead node's queue not reaped",
        cl->name);
  /* One batch per round: more of them than the send window holds. */
  t0 = ev_time();
  for (i = 0; i < 12; i++) {
    burst(cl, 1);
    run_for(0.03);
  }
  CHECK(run_until(all_delivered, cl, 15), "%s: delivery once the dead "
        "queue is gone", cl->name);
  CHECK(ev_time() - t0 < 3.0, "%s: delivery took %.1f s once the dead "
        "queue is gone", cl->name, ev_time() - t0);
  CHECK(run_until(buffers_empty, cl, 10), "%s: buffers not drained after "
        "the dead queue is gone", cl->name);
  run_for(0.3);
  check_delivery(cl, "dead peer");
}

static void phase_restart(cluster *cl) {
  int i, port = fq_port, tries;

  for (i = 0; i < NODES; i++)
    cl->nodes[i].nstates = 0;
  fauxqs_kill();
  /* Published while the service is gone: they wait in the buffer. */
  burst(cl, 3);
  CHECK(run_until(all_degraded_or_down, cl, 15),
        "%s: outage not reported", cl->name);
  for (tries = 0; tries < 20 && fauxqs_start(port) != 0; tries++)
    usleep(250 * 1000);
  if (fq_pid <= 0)
    die("cannot restart fauxqs on the same port");
  burst(cl, 2);
  CHECK(run_until(all_up, cl, 40), "%s: no recovery after restart",
        cl->name);
  /* After recovery everything flows again, the outage's messages too. */
  burst(cl, 5);
  CHECK(run_until(all_delivered, cl, 30),
        "%s: delivery after restart timed out", cl->name);
  run_for(0.3);
  check_delivery(cl, "restart");
}

static void stats_line(cluster *cl) {
  cf_queue_stats st;
  int i;

  for (i = 0; i < NODES; i++) {
    if (cl->dead[i])
      continue;
    cf_queue_get_stats(cl->nodes[i].q, &st, sizeof(st));
    logf_("  %s node %d: published %llu received %llu requests %llu "
          "errors %llu retries %llu buffered %llu dropped %llu dups %d",
          cl->name, i, (unsigned long long)st.published,
          (unsigned long long)st.received, (unsigned long long)st.requests,
          (unsigned long long)st.request_errors,
          (unsigned long long)st.retries,
          (unsigned long long)st.buffered_bytes,
          (unsigned long long)st.dropped, cl->nodes[i].qdups);
    CHECK(st.buffered_bytes == 0, "%s: node %d still buffers", cl->name, i);
    CHECK(st.dropped == 0, "%s: node %d dropped %llu", cl->name, i,
          (unsigned long long)st.dropped);
  }
}

static void check_own(cluster *cl) {
  int i, r, sent;

  for (i = 0; i < NODES; i++) {
    if (cl->dead[i])
      continue;
    for (sent = 0, r = 0; r < ROOMS; r++)
      sent += cl->sent[i][r];
    /* Standard: own messages were delivered at publish, the queue drops
     * them. fifo: they come back through the queue, in the room order. */
    CHECK(cl->nodes[i].own == (cl->fifo ? sent : 0),
          "%s: node %d queue reported %d own messages", cl->name, i,
          cl->nodes[i].own);
  }
}

static void run_topology(const char *name, int topology, int fifo) {
  static cluster cl;
  int i;

  memset(&cl, 0, sizeof(cl));
  cl.name = name;
  cl.topology = topology;
  cl.fifo = fifo;
  snprintf(cl.cluster, sizeof(cl.cluster), "it-%s-%d", fifo ? "fifo" : name,
           (int)getpid());
  logf_("%s: starting", name);
  for (i = 0; i < NODES; i++)
    node_open(&cl, i);
  CHECK(run_until(all_up, &cl, 30), "%s: not up", name);
  for (i = 0; i < NODES; i++)
    CHECK(cl.nodes[i].states[0] == CF_QUEUE_STARTING,
          "%s: node %d did not report starting first", name, i);
  if (topology == CF_SQS_QUEUES)
    run_for(1.5); /* every node has listed its peers by now */
  phase_steady(&cl);
  if (topology == CF_SQS_SNS && !fifo) {
    check_foreign_writers(&cl);
    check_reaper(&cl);
  }
  phase_dead_peer(&cl);
  phase_restart(&cl);
  if (fifo)
    check_fifo_order(&cl);
  check_own(&cl);
  stats_line(&cl);
  for (i = 0; i < NODES; i++)
    if (!cl.dead[i])
      CHECK(cf_queue_flush(cl.nodes[i].q, 5.0) == CF_OK, "flush");
  CHECK(run_until(all_stopped, &cl, 30), "%s: not stopped after flush",
        name);
  check_cleanup(&cl);
  for (i = 0; i < NODES; i++)
    if (!cl.dead[i])
      node_close(&cl.nodes[i]);
  logf_("%s: done", name);
}

/* --- the service down at flush ----------------------------------------- */

typedef struct lone {
  cf_queue *q;
  int states[64];
  int nstates;
} lone;

static void lone_state(cf_queue *q, int state, void *ud) {
  lone *l = ud;

  if (verbose)
    logf_("  lone: %s (%s)", cf_queue_state_name(state), cf_queue_errmsg(q));
  if (l->nstates < 64)
    l->states[l->nstates++] = state;
}

static void lone_message(cf_queue *q, const cf_envelope *env, void *ud) {
  (void)q;
  (void)env;
  (void)ud;
}

static int lone_state_is(void *arg, int want) {
  return cf_queue_state_get(((lone *)arg)->q) == want;
}

static int lone_up(void *arg) {
  return lone_state_is(arg, CF_QUEUE_UP);
}

static int lone_down(void *arg) {
  return lone_state_is(arg, CF_QUEUE_DOWN);
}

static int lone_stopped(void *arg) {
  return lone_state_is(arg, CF_QUEUE_STOPPED);
}

/*
 * With the service gone, publishes fill the bounded buffer and are then
 * refused (nothing accepted is lost silently); flush gives up on them
 * after its timeout, counts them dropped and still stops. With
 * CF_TEST_LONG_OUTAGE=1 the outage lasts long enough to report DOWN.
 */
static void run_flush_while_down(void) {
  static const cf_queue_callbacks cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                         lone_message, lone_state};
  const char *lo = getenv("CF_TEST_LONG_OUTAGE");
  char cluster[64], msg[200], data[500];
  cf_sqs_config sc = {.version = CF_SQS_CONFIG_VERSION,
                      .cluster = cluster, .instance_id = 0x10e10e,
                      .endpoint_sqs = endpoint, .endpoint_sns = endpoint,
                      .wait_seconds = 2, .max_buffer = 4096,
                      .envp = test_env};
  cf_envelope e = {0x10e10e, 0, 0, "lobby", 5, CF_MSG_TEXT, data,
                   sizeof(data)};
  cf_queue_stats st;
  lone l = {0};
  int rv, accepted = 0;
  double t0;

  logf_("flush-while-down: starting");
  memset(data, 'd', sizeof(data));
  snprintf(cluster, sizeof(cluster), "it-down-%d", (int)getpid());
  if (cf_queue_sqs_new(&l.q, &cfloop, &sc, NULL, msg, sizeof(msg)) != CF_OK)
    die(msg);
  cf_queue_set_callbacks(l.q, &cbs, &l);
  CHECK(cf_queue_start(l.q) == CF_OK, "start");
  CHECK(run_until(lone_up, &l, 20), "lone queue not up");
  fauxqs_kill();
  if (lo != NULL && strcmp(lo, "1") == 0)
    CHECK(run_until(lone_down, &l, 40), "no DOWN after 30 s of outage");
  do {
    e.seq++;
    rv = cf_queue_publish(l.q, &e);
    accepted += rv == CF_OK;
  } while (rv == CF_OK && e.seq < 100);
  CHECK(rv == CF_ERR_QUEUE_FULL, "publish into a full buffer gave %s",
        cf_strerror(rv));
  cf_queue_get_stats(l.q, &st, sizeof(st));
  CHECK(accepted > 0 && st.buffered_bytes <= 4096 &&
        st.buffered_bytes + 600 > 4096,
        "accepted %d, buffered %llu", accepted,
        (unsigned long long)st.buffered_bytes);
  run_for(0.5);
  t0 = ev_time();
  CHECK(cf_queue_flush(l.q, 1.0) == CF_OK, "flush");
  CHECK(run_until(lone_stopped, &l, 20), "not stopped after flush");
  CHECK(ev_time() - t0 < 12.0, "flush took %.1f s", ev_time() - t0);
  cf_queue_get_stats(l.q, &st, sizeof(st));
  CHECK(st.dropped == (uint64_t)accepted && st.buffered_bytes == 0,
        "dropped %llu of %d, buffered %llu", (unsigned long long)st.dropped,
        accepted, (unsigned long long)st.buffered_bytes);
  CHECK(cf_queue_publish(l.q, &e) == CF_ERR_CLOSED,
        "publish after stop accepted");
  cf_queue_free(l.q);
  logf_("flush-while-down: done");
}

static void paws_open(void) {
  cf__aws_overrides ov = {"us-east-1", NULL, endpoint, endpoint};
  char err[200];

  if (cf__aws_new(&paws, &cfloop, &ov, test_env, NULL, err, sizeof(err)) !=
          CF_OK ||
      cf__aws_start(paws, NULL, NULL) != CF_OK)
    die(err);
}

int main(int argc, char **argv) {
  const char *v = getenv("CF_TEST_VERBOSE");

  if (argc != 3)
    die("usage: sqs_cluster NODE FAUXQS_SERVER_MJS");
  node_bin = argv[1];
  launcher = argv[2];
  verbose = v != NULL && strcmp(v, "1") == 0;
  signal(SIGPIPE, SIG_IGN);
  if (access(node_bin, X_OK) != 0)
    skip("node not found");
  if (fauxqs_start(0) != 0)
    skip("fauxqs did not start (npm install in tests/integration?)");
  loop = ev_loop_new(EVFLAG_AUTO);
  cf_libev_init(&cfloop, loop);
  paws_open();
  run_topology("sns", CF_SQS_SNS, 0);
  run_topology("queues", CF_SQS_QUEUES, 0);
  run_topology("sns-fifo", CF_SQS_SNS, 1);
  run_flush_while_down();
  fauxqs_kill();
  cf__aws_free(paws);
  ev_loop_destroy(loop);
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  fprintf(stderr, "all checks passed\n");
  return 0;
}
