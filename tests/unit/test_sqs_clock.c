/*
 * The SQS backend across steps of the wall clock (NTP step, `date -s`,
 * VM resume): pacing, timeouts and "since" times must follow elapsed
 * time, not the loop's wall clock (cf_loop.now).
 *
 * A real libev loop runs the backend against a small SQS server on
 * 127.0.0.1 run by this file (queues topology: CreateQueue, TagQueue,
 * ListQueues with one peer, ReceiveMessage, SendMessageBatch,
 * DeleteMessageBatch). The loop handed to the backend is the libev
 * adapter with two hooks wrapped: now() adds an offset the test steps by
 * an hour either way, and timer_set() records the longest wait armed
 * since the step (an hour-long one is the symptom of the bug).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <jansson.h>

#include <chatfanout/adapters/cf_libev.h>
#include <chatfanout/cf_queue_sqs.h>

#include "http_server.h"
#include "test_mem.h"

#define STEP 3600.0
/* Longer than any timer the backend arms on its own (the HTTP timeout
 * of a long poll is 30 s, the heartbeat 60 s), far below STEP. */
#define MAX_WAIT 100.0
#define NCONN 16
#define SELF 0xabcdefULL
#define PEER "chat-00000000000000b2"

typedef struct conn {
  struct fx *f;
  int fd;
  ev_io w;
  size_t len;
  char in[65536];
} conn;

typedef struct fx {
  struct ev_loop *l;
  int lfd, port;
  ev_io lw;
  conn c[NCONN];
  cf_loop base;        /* the libev adapter */
  cf_loop loop;        /* what the backend gets: now/timer_set wrapped */
  double offset;       /* the wall clock's step so far */
  double max_after;    /* longest timer armed since the last step */
  char ep[64], own[128], peer[128];
  test_mem tm;
  cf_queue *q;
  /* what the server saw */
  int polls, poll_errors, sends;
  double send_at[8];   /* ev_time() of each SendMessageBatch */
  /* what the server does */
  int poll_fail;       /* answer ReceiveMessage with HTTP 500 */
  int step_at_poll;    /* on this ReceiveMessage (1-based)... */
  double step_by;      /* ...step the wall clock by this */
  int msg_at_poll;     /* answer this ReceiveMessage with a message */
  /* what the backend reported */
  int state, down, messages;
  uint64_t msg_seq;
} fx;

static fx *g; /* the wrapped hooks' fixture */

/* ---- the loop as the backend sees it ---------------------------------- */

static double w_now(void *data) {
  return g->base.now(data) + g->offset;
}

static void w_timer_set(void *data, void *timer, double after) {
  if (after > g->max_after)
    g->max_after = after;
  g->base.timer_set(data, timer, after);
}

static void step_wall(fx *f, double by) {
  f->offset += by;
  f->max_after = 0;
}

/* ---- the server -------------------------------------------------------- */

static void conn_drop(conn *c) {
  ev_io_stop(c->f->l, &c->w);
  close(c->fd);
  c->fd = -1;
  c->len = 0;
}

static void reply(conn *c, int status, const char *body) {
  char out[4096];
  int k = snprintf(out, sizeof(out),
                   "HTTP/1.1 %d X\r\nContent-Type: application/x-amz-json"
                   "-1.0\r\nContent-Length: %zu\r\n\r\n%s", status,
                   strlen(body), body);
  /* One write (two would wait out Nagle and a delayed ACK); small
   * answers: loopback takes them at once. */
  assert_true(k > 0 && (size_t)k < sizeof(out));
  assert_int_equal(write(c->fd, out, (size_t)k), k);
}

/* {"Successful":[{"Id":..}, ...]} for every entry of a batch request. */
static char *all_successful(const char *req) {
  json_t *in = json_loads(req, 0, NULL), *ok = json_array(), *e;
  json_t *out;
  char *s;
  size_t i;

  assert_non_null(in);
  json_array_foreach(json_object_get(in, "Entries"), i, e)
    json_array_append_new(ok, json_pack("{s:O, s:s}", "Id",
                                        json_object_get(e, "Id"),
                                        "MessageId", "m"));
  out = json_pack("{s:o, s:[]}", "Successful", ok, "Failed");
  s = json_dumps(out, JSON_COMPACT);
  json_decref(out);
  json_decref(in);
  return s;
}

/* A ReceiveMessage answer with one envelope from the peer, seq 2: the
 * first heard from that origin and not seq 1, so the reorder window
 * holds it (its seq 1 may be on the way). */
static char *one_message(void) {
  json_t *m = json_pack(
      "{s:[{s:s, s:s, s:s}]}", "Messages", "MessageId", "m1",
      "ReceiptHandle", "h1", "Body",
      "{\"v\":1,\"origin\":\"00000000000000b2\",\"seq\":2,\"ts\":0,"
      "\"room\":\"lobby\",\"type\":\"text\",\"data\":\"hi\"}");
  char *s = json_dumps(m, JSON_COMPACT);

  json_decref(m);
  return s;
}

static void answer(fx *f, conn *c, const char *head, const char *body) {
  char target[128], buf[512];
  const char *a;
  char *s = NULL;

  assert_true(hs_header(head, "X-Amz-Target", target, sizeof(target)));
  a = strncmp(target, "AmazonSQS.", 10) == 0 ? target + 10 : target;
  if (strcmp(a, "CreateQueue") == 0) {
    snprintf(buf, sizeof(buf), "{\"QueueUrl\":\"%s\"}", f->own);
    reply(c, 200, buf);
  } else if (strcmp(a, "ListQueues") == 0) {
    snprintf(buf, sizeof(buf), "{\"QueueUrls\":[\"%s\",\"%s\"]}", f->own,
             f->peer);
    reply(c, 200, buf);
  } else if (strcmp(a, "ReceiveMessage") == 0) {
    f->polls++;
    if (f->polls == f->step_at_poll)
      step_wall(f, f->step_by);
    if (f->poll_fail) {
      f->poll_errors++;
      reply(c, 500, "{\"__type\":\"InternalError\",\"message\":\"x\"}");
    } else if (f->polls == f->msg_at_poll) {
      reply(c, 200, s = one_message());
    } else {
      reply(c, 200, "{\"Messages\":[]}");
    }
  } else if (strcmp(a, "SendMessageBatch") == 0) {
    if (f->sends < 8)
      f->send_at[f->sends] = ev_time();
    f->sends++;
    reply(c, 200, s = all_successful(body));
  } else if (strcmp(a, "DeleteMessageBatch") == 0) {
    reply(c, 200, s = all_successful(body));
  } else {
    reply(c, 200, "{}"); /* TagQueue, DeleteQueue */
  }
  free(s);
}

static void on_conn_read(struct ev_loop *l, ev_io *w, int revents) {
  conn *c = w->data;
  char *end;
  ssize_t n;

  (void)l;
  (void)revents;
  n = read(c->fd, c->in + c->len, sizeof(c->in) - 1 - c->len);
  if (n < 0 && errno == EAGAIN)
    return;
  if (n <= 0) {
    conn_drop(c);
    return;
  }
  c->len += (size_t)n;
  c->in[c->len] = '\0';
  while ((end = strstr(c->in, "\r\n\r\n")) != NULL) {
    size_t hlen = (size_t)(end - c->in) + 4, blen;
    char body[32768];

    *end = '\0';
    blen = hs_content_length(c->in);
    if (c->len < hlen + blen) {
      *end = '\r';
      return;
    }
    assert_true(blen < sizeof(body));
    memcpy(body, c->in + hlen, blen);
    body[blen] = '\0';
    answer(c->f, c, c->in, body);
    memmove(c->in, c->in + hlen + blen, c->len - hlen - blen + 1);
    c->len -= hlen + blen;
  }
}

static void on_accept(struct ev_loop *l, ev_io *w, int revents) {
  fx *f = w->data;
  int fd = accept(f->lfd, NULL, NULL), i;

  (void)revents;
  if (fd < 0)
    return;
  for (i = 0; i < NCONN && f->c[i].fd >= 0; i++)
    ;
  assert_true(i < NCONN);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  f->c[i].fd = fd;
  ev_io_init(&f->c[i].w, on_conn_read, fd, EV_READ);
  f->c[i].w.data = &f->c[i];
  ev_io_start(l, &f->c[i].w);
}

/* ---- the backend ------------------------------------------------------- */

static void on_message(cf_queue *q, const cf_envelope *e, void *ud) {
  fx *f = ud;

  (void)q;
  f->messages++;
  f->msg_seq = e->seq;
}

static void on_state(cf_queue *q, int state, void *ud) {
  fx *f = ud;

  (void)q;
  f->state = state;
  if (state == CF_QUEUE_DOWN)
    f->down = 1;
}

static const cf_queue_callbacks cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                       on_message, on_state};

static char env_key[] = "AWS_ACCESS_KEY_ID=AKIDTEST";
static char env_secret[] = "AWS_SECRET_ACCESS_KEY=secret";
static char env_region[] = "AWS_REGION=eu-west-1";
static char env_cfg[] = "AWS_CONFIG_FILE=/nonexistent/config";
static char env_cred[] = "AWS_SHARED_CREDENTIALS_FILE=/nonexistent/creds";
static char env_imds[] = "AWS_EC2_METADATA_DISABLED=true";
static char env_home[] = "HOME=/nonexistent";
static char *envp[] = {env_key, env_secret, env_region, env_cfg,
                       env_cred, env_imds, env_home, NULL};

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  int i;

  assert_non_null(f);
  g = f;
  f->l = ev_loop_new(EVFLAG_AUTO);
  for (i = 0; i < NCONN; i++) {
    f->c[i].f = f;
    f->c[i].fd = -1;
  }
  f->lfd = hs_listen(&f->port, 16);
  ev_io_init(&f->lw, on_accept, f->lfd, EV_READ);
  f->lw.data = f;
  ev_io_start(f->l, &f->lw);
  snprintf(f->ep, sizeof(f->ep), "http://127.0.0.1:%d", f->port);
  snprintf(f->own, sizeof(f->own), "%s/000000000000/chat-%016llx", f->ep,
           (unsigned long long)SELF);
  snprintf(f->peer, sizeof(f->peer), "%s/000000000000/" PEER, f->ep);
  cf_libev_init(&f->base, f->l);
  f->loop = f->base;
  f->loop.now = w_now;
  f->loop.timer_set = w_timer_set;
  test_mem_init(&f->tm, 0);
  *state = f;
  return 0;
}

/*
 * Frees the queue: within the test, since cmocka counts the blocks
 * still allocated when a test function returns as leaks.
 */
static void finish(fx *f) {
  cf_queue_free(f->q);
  f->q = NULL;
  assert_int_equal(f->tm.live, 0);
}

static int teardown(void **state) {
  fx *f = *state;
  int i;

  cf_queue_free(f->q); /* a test that failed left it */
  for (i = 0; i < NCONN; i++)
    if (f->c[i].fd >= 0)
      conn_drop(&f->c[i]);
  ev_io_stop(f->l, &f->lw);
  close(f->lfd);
  ev_loop_destroy(f->l);
  g = NULL;
  free(f);
  return 0;
}

static double run_until(fx *f, const int *count, int want, double secs) {
  return hs_run_until(f->l, count, want, secs);
}

/* Runs the loop until the backend reports state (5 s at most). */
static void wait_state(fx *f, int state) {
  double t = 0;

  while (f->state != state && t < 5.0)
    t += run_until(f, NULL, 0, 0.01);
  assert_int_equal(f->state, state);
}

/* Creates and starts the queue, and waits for it to be UP. */
static void start(fx *f, double interval, double reorder_window) {
  cf_sqs_config c = {.version = CF_SQS_CONFIG_VERSION,
                     .topology = CF_SQS_QUEUES,
                     .cluster = "chat",
                     .instance_id = SELF,
                     .endpoint_sqs = f->ep,
                     .endpoint_sns = f->ep,
                     .linger = 0.001,
                     .pollers = 1,
                     .reorder_window = reorder_window,
                     .envp = envp,
                     .interval = interval};
  char msg[256];

  if (cf_queue_sqs_new(&f->q, &f->loop, &c, &f->tm.mem, msg,
                       sizeof(msg)) != CF_OK)
    fail_msg("cf_queue_sqs_new: %s", msg);
  assert_int_equal(cf_queue_set_callbacks(f->q, &cbs, f), CF_OK);
  assert_int_equal(cf_queue_start(f->q), CF_OK);
  wait_state(f, CF_QUEUE_UP);
}

static void publish(fx *f, uint64_t seq) {
  cf_envelope e = {SELF, seq, 0, "lobby", 5, CF_MSG_TEXT, "hello", 5};

  assert_int_equal(cf_queue_publish(f->q, &e), CF_OK);
}

/* ---- tests ------------------------------------------------------------- */

/*
 * A poll that comes back early and empty waits out `interval` from its
 * start. The wall clock steps back an hour while a poll is in flight:
 * the next poll still leaves after the interval, not an hour later.
 */
static void test_poll_after_step_back(void **state) {
  fx *f = *state;

  f->step_at_poll = 2;
  f->step_by = -STEP;
  start(f, 0.1, 0);
  run_until(f, &f->polls, 5, 1.5);
  assert_true(f->offset == -STEP);
  assert_true(f->polls >= 5);
  assert_true(f->max_after < MAX_WAIT);
  finish(f);
}

/* A forward step during a poll does not skip the poller's pacing. */
static void test_poll_after_step_forward(void **state) {
  fx *f = *state;
  double t;

  f->step_at_poll = 2;
  f->step_by = STEP;
  start(f, 0.3, 0);
  run_until(f, &f->polls, 2, 1.5);
  assert_int_equal(f->polls, 2);
  /* Poll 2 came back at once: poll 3 waits for the interval. */
  t = run_until(f, &f->polls, 3, 1.5);
  assert_int_equal(f->polls, 3);
  assert_true(t > 0.2);
  finish(f);
}

/*
 * Batches leave at most once per `interval`. The wall clock steps back
 * an hour after a batch left: the next one leaves after the interval.
 */
static void test_send_after_step_back(void **state) {
  fx *f = *state;

  start(f, 0.2, 0);
  publish(f, 1);
  run_until(f, &f->sends, 1, 1.5);
  assert_int_equal(f->sends, 1);
  step_wall(f, -STEP);
  publish(f, 2);
  run_until(f, &f->sends, 2, 1.5);
  assert_int_equal(f->sends, 2);
  assert_true(f->max_after < MAX_WAIT);
  finish(f);
}

/* A forward step does not let the next batch skip the interval. */
static void test_send_after_step_forward(void **state) {
  fx *f = *state;

  start(f, 0.4, 0);
  publish(f, 1);
  run_until(f, &f->sends, 1, 1.5);
  assert_int_equal(f->sends, 1);
  step_wall(f, STEP);
  publish(f, 2);
  run_until(f, &f->sends, 2, 1.5);
  assert_int_equal(f->sends, 2);
  assert_true(f->send_at[1] - f->send_at[0] > 0.25);
  finish(f);
}

/*
 * Failing calls make the queue DEGRADED, and DOWN only once they have
 * failed for 30 s. A forward step of the wall clock while they fail
 * does not make it DOWN at the next failure.
 */
static void test_health_after_step_forward(void **state) {
  fx *f = *state;
  int want;

  start(f, 0.05, 0);
  f->poll_fail = 1;
  run_until(f, &f->poll_errors, 1, 1.5);
  wait_state(f, CF_QUEUE_DEGRADED);
  step_wall(f, STEP);
  want = f->poll_errors + 2; /* retried with backoff, 2 s at most */
  run_until(f, &f->poll_errors, want, 5.0);
  assert_int_equal(f->poll_errors, want);
  assert_false(f->down);
  assert_int_equal(cf_queue_state_get(f->q), CF_QUEUE_DEGRADED);
  assert_true(f->max_after < MAX_WAIT);
  f->poll_fail = 0;
  wait_state(f, CF_QUEUE_UP);
  finish(f);
}

/*
 * A message held for a gap is let out once it has waited the reorder
 * window. The wall clock steps back an hour while it waits: it still
 * comes out after the window.
 */
static void test_reorder_after_step_back(void **state) {
  fx *f = *state;

  f->msg_at_poll = 2;
  /* 0.1 s later; the window is 1.5 s, so a stall of the machine does
   * not let the message out before the step. */
  f->step_at_poll = 3;
  f->step_by = -STEP;
  start(f, 0.1, 1.5);
  run_until(f, &f->messages, 1, 4.0);
  assert_true(f->offset == -STEP);
  assert_int_equal(f->messages, 1);
  assert_int_equal(f->msg_seq, 2);
  assert_true(f->max_after < MAX_WAIT);
  finish(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_poll_after_step_back, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_poll_after_step_forward, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_send_after_step_back, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_send_after_step_forward, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_health_after_step_forward, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_reorder_after_step_back, setup,
                                    teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
