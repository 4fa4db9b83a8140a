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
} node;

typedef struct cluster {
  const char *name;
  int topology, fifo;
  char cluster[64];
  node nodes[NODES];
  int sent[NODES][ROOMS]; /* messages published per origin and room */
  int big_sent[NODES];
  int next_k[NODES];
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
    if (i < n->nq[r])
      n->qdups++;
    else if (n->nq[r] < MAXREC)
      snprintf(n->qorder[r][n->nq[r]++], sizeof(n->qorder[r][0]), "%s", id);
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
    if (cf_queue_state_get(cl->nodes[i].q) != want)
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
    for (r = 0; r < ROOMS; r++) {
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
    for (r = 0; r < ROOMS; r++) {
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
      int same = a->nq[r] == b->nq[r];
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

/* Number of queues left whose names start with prefix. */
static int queues_left(cf__aws *aws, const char *prefix) {
  json_t *params = json_pack("{s:s}", "QueueNamePrefix", prefix);
  probe p = {0};
  int n;

  if (cf__aws_sqs(aws, "ListQueues", params, 10, on_probe, &p, NULL) !=
      CF_OK)
    die("ListQueues");
  json_decref(params);
  run_until(probe_done, &p, 15);
  CHECK(p.done && p.error == CF_OK, "ListQueues failed");
  n = (int)cf__sqs_json_list_size(json_object_get(p.data, "QueueUrls"));
  json_decref(p.data);
  return n;
}

static int subscriptions_left(cf__aws *aws, const char *topic) {
  char arn[128];
  cf__aws_param prm = {"TopicArn", arn};
  probe p = {0};
  int n;

  snprintf(arn, sizeof(arn), "arn:aws:sns:us-east-1:000000000000:%s", topic);
  if (cf__aws_sns(aws, "ListSubscriptionsByTopic", &prm, 1, 10, on_probe, &p,
                  NULL) != CF_OK)
    die("ListSubscriptionsByTopic");
  run_until(probe_done, &p, 15);
  CHECK(p.done && p.error == CF_OK, "ListSubscriptionsByTopic failed");
  n = (int)cf__sqs_json_list_size(json_object_get(p.data, "Subscriptions"));
  json_decref(p.data);
  return n;
}

static void check_cleanup(cluster *cl) {
  cf__aws_overrides ov = {"us-east-1", NULL, endpoint, endpoint};
  char err[200], prefix[80], topic[80];
  cf__aws *aws;

  if (cf__aws_new(&aws, &cfloop, &ov, test_env, NULL, err, sizeof(err)) !=
      CF_OK)
    die(err);
  snprintf(prefix, sizeof(prefix), "%s-", cl->cluster);
  CHECK(queues_left(aws, prefix) == 0, "%s: queues left after flush",
        cl->name);
  if (cl->topology == CF_SQS_SNS) {
    snprintf(topic, sizeof(topic), "%s%s", cl->cluster,
             cl->fifo ? ".fifo" : "");
    CHECK(subscriptions_left(aws, topic) == 0,
          "%s: subscriptions left after flush", cl->name);
  }
  cf__aws_free(aws);
}

/* --- one topology ------------------------------------------------------ */

static void burst(cluster *cl, int per_node) {
  int i, k;

  for (k = 0; k < per_node; k++)
    for (i = 0; i < NODES; i++)
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
    if (!saw_state(&cl->nodes[i], CF_QUEUE_DEGRADED) &&
        !saw_state(&cl->nodes[i], CF_QUEUE_DOWN))
      return 0;
  return 1;
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

static void run_topology(const char *name, int topology, int fifo) {
  static cluster cl;
  int i, r;

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
  phase_restart(&cl);
  if (fifo)
    check_fifo_order(&cl);
  stats_line(&cl);
  for (i = 0; i < NODES; i++)
    CHECK(cf_queue_flush(cl.nodes[i].q, 5.0) == CF_OK, "flush");
  CHECK(run_until(all_stopped, &cl, 30), "%s: not stopped after flush",
        name);
  check_cleanup(&cl);
  for (i = 0; i < NODES; i++) {
    for (r = 0; r < ROOMS; r++)
      cf_client_free(cl.nodes[i].client[r]);
    cf_hub_free(cl.nodes[i].hub);
    cf_queue_free(cl.nodes[i].q);
  }
  logf_("%s: done", name);
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
  run_topology("sns", CF_SQS_SNS, 0);
  run_topology("queues", CF_SQS_QUEUES, 0);
  run_topology("sns-fifo", CF_SQS_SNS, 1);
  fauxqs_kill();
  ev_loop_destroy(loop);
  if (failures != 0) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  fprintf(stderr, "all checks passed\n");
  return 0;
}
