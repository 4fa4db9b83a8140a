/*
 * cfd_ws's write path on a real libev epoll loop, with socketpairs for
 * clients. This executable defines epoll_ctl() and writev(): libev and
 * cfd_ws resolve to these, which count the calls and then make the
 * system calls. So the test sees what the review measured with strace:
 * a fan-out costs one writev per client per loop iteration and no
 * epoll_ctl; only a full socket arms EV_WRITE, and the watcher goes
 * once the backlog is written.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include <chatfanout/chatfanout.h>

#include "cfd_batch.h"
#include "cfd_config.h"
#include "cfd_ctx.h"
#include "cfd_frame.h"
#include "cfd_log.h"
#include "cfd_ws.h"
#include "test_mem.h"

static unsigned long g_epoll_ctl, g_writev;

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev) {
  g_epoll_ctl++;
  return (int)syscall(SYS_epoll_ctl, epfd, op, fd, ev);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  g_writev++;
  return (ssize_t)syscall(SYS_writev, fd, iov, cnt);
}

#define N_CLIENTS 20
#define MSG_MAX 65536

typedef struct fixture {
  test_mem tm;
  cfd_config cfg;
  cfd_ctx ctx;
  int peer[N_CLIENTS]; /* our end of each client's socketpair */
  uint8_t buf[4 * MSG_MAX];
  size_t len;          /* bytes in buf, for the client being read */
} fixture;

static void loop_once(fixture *f) { ev_run(f->ctx.loop, EVRUN_NOWAIT); }

/*
 * Two iterations: the second applies (epoll_ctl) what the first one's
 * callbacks changed in the watcher set, as the daemon's loop does
 * before it blocks again, so that nothing is left pending to cancel
 * out against the next message's changes.
 */
static void loop_settle(fixture *f) {
  loop_once(f);
  loop_once(f);
}

/* Reads what is there for client i (never blocks) into f->buf. */
static size_t read_some(fixture *f, int i) {
  ssize_t n;
  f->len = 0;
  while (f->len < sizeof f->buf) {
    n = read(f->peer[i], f->buf + f->len, sizeof f->buf - f->len);
    if (n <= 0)
      break;
    f->len += (size_t)n;
  }
  return f->len;
}

/* Parses unmasked server frames in f->buf: how many, and the opcode and
 * payload of the last one (payload copied NUL-terminated into last). */
static int frames(const fixture *f, int *op, char *last, size_t cap) {
  size_t pos = 0, n, hl;
  int count = 0;
  while (pos + 2 <= f->len) {
    n = f->buf[pos + 1] & 0x7f;
    hl = 2;
    if (n == 126) {
      n = (size_t)f->buf[pos + 2] << 8 | f->buf[pos + 3];
      hl = 4;
    } else if (n == 127) {
      fail_msg("unexpected 64-bit frame length");
    }
    assert_true(pos + hl + n <= f->len);
    *op = f->buf[pos] & 0x0f;
    if (last != NULL) {
      size_t k = n < cap - 1 ? n : cap - 1;
      memcpy(last, f->buf + pos + hl, k);
      last[k] = '\0';
    }
    pos += hl + n;
    count++;
  }
  assert_int_equal(pos, f->len);
  return count;
}

/* Publishes n messages in one loop iteration; every client must get
 * them all, in order. */
static void burst_and_check(fixture *f, int n) {
  char msg[32], got[32], last[32];
  int i, k, op;
  for (k = 0; k < n; k++) {
    snprintf(msg, sizeof msg, "burst %d", k);
    assert_int_equal(cf_hub_publish(f->ctx.hub, "r", 1, CF_MSG_TEXT, msg,
                                     strlen(msg)), CF_OK);
  }
  loop_settle(f);
  snprintf(last, sizeof last, "burst %d", n - 1);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, got, sizeof got), n);
    assert_string_equal(got, last);
  }
}

/* Publishes n messages, one loop iteration each; every client must get
 * each one alone. */
static void paced_and_check(fixture *f, int n) {
  char msg[32], got[32];
  int i, k, op;
  for (k = 0; k < n; k++) {
    snprintf(msg, sizeof msg, "message %d", k);
    assert_int_equal(cf_hub_publish(f->ctx.hub, "r", 1, CF_MSG_TEXT, msg,
                                     strlen(msg)), CF_OK);
    loop_settle(f);
    for (i = 0; i < N_CLIENTS; i++) {
      read_some(f, i);
      assert_int_equal(frames(f, &op, got, sizeof got), 1);
      assert_int_equal(op, 1);
      assert_string_equal(got, msg);
    }
  }
}

/*
 * Everything the hub allocates must be freed by the end of each test
 * function (cmocka checks its allocator there), so each test starts and
 * finishes its own fixture.
 */
static int g_last_apart; /* start_with(): last client in room "x" */

static fixture *start_with(int batched, size_t budget) {
  static fixture f;
  static char *argv[] = {"test_ws", "--ping-interval", "0",
                         "--idle-timeout", "0", NULL};
  cf_hub_config hc = {.version = CF_HUB_CONFIG_VERSION};
  cfd_route rt;
  int i, sv[2];
  memset(&f, 0, sizeof f);
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  assert_int_equal(cfd_config_parse(&f.cfg, 5, argv, NULL, NULL, NULL, 0),
                   CFD_CONFIG_OK);
  f.ctx.loop = ev_loop_new(EVBACKEND_EPOLL);
  assert_non_null(f.ctx.loop);
  f.ctx.cfg = &f.cfg;
  cfd_metrics_init(&f.ctx.metrics);
  test_mem_init(&f.tm, 0);
  hc.mem = &f.tm.mem;
  hc.client_buffer = budget != 0 ? budget : f.cfg.client_buffer;
  hc.max_message = budget != 0 ? 16384 : f.cfg.max_message_size;
  hc.framer = cfd_frame_hub_framer;
  hc.outbound_budget = budget;
  assert_int_equal(cf_hub_new(&f.ctx.hub, &hc), CF_OK);
  if (batched && (f.ctx.batch = cfd_batch_new()) == NULL) {
    cf_hub_free(f.ctx.hub);
    ev_loop_destroy(f.ctx.loop);
    cfd_config_free(&f.cfg);
    skip(); /* io_uring unavailable here (test_batch says why) */
  }
  memset(&rt, 0, sizeof rt);
  rt.kind = CFD_ROUTE_WS;
  memcpy(rt.room, "r", 2);
  rt.room_len = 1;
  memcpy(rt.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29);
  rt.extra = "";
  for (i = 0; i < N_CLIENTS; i++) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
                                sv), 0);
    if (i == N_CLIENTS - 1 && g_last_apart)
      memcpy(rt.room, "x", 2); /* the last client alone in room x */
    assert_int_equal(cfd_ws_start(&f.ctx, sv[0], &rt, NULL, 0, NULL), 0);
    f.peer[i] = sv[1];
  }
  return &f;
}

static fixture *start(void) {
  return start_with(0, 0);
}

static void finish(fixture *f) {
  int i;
  cfd_ws_free_all(&f->ctx);
  cfd_batch_free(f->ctx.batch);
  cf_hub_free(f->ctx.hub);
  ev_loop_destroy(f->ctx.loop);
  for (i = 0; i < N_CLIENTS; i++)
    close(f->peer[i]);
  cfd_config_free(&f->cfg);
  assert_int_equal(f->tm.live, 0);
}

/* Lets the 101 heads out and reads them. */
static void heads(fixture *f) {
  const void *end;
  int i;
  loop_once(f);
  for (i = 0; i < N_CLIENTS; i++) {
    assert_true(read_some(f, i) > 13);
    assert_memory_equal(f->buf, "HTTP/1.1 101 ", 13);
    end = memmem(f->buf, f->len, "\r\n\r\n", 4);
    assert_ptr_equal(end, f->buf + f->len - 4);
  }
}

/* The 101 heads go out with one writev each and no EV_WRITE. */
static void test_upgrade_heads(void **state) {
  fixture *f = start();
  (void)state;
  g_epoll_ctl = g_writev = 0;
  heads(f);
  loop_once(f);
  assert_int_equal(g_writev, N_CLIENTS);
  /* One EPOLL_CTL_ADD per read watcher, none for writing. */
  assert_int_equal(g_epoll_ctl, N_CLIENTS);
  finish(f);
}

/* One message per loop iteration, as at a low chat rate. */
static void test_paced_no_epoll_ctl(void **state) {
  fixture *f = start();
  (void)state;
  heads(f);
  loop_once(f);
  g_epoll_ctl = g_writev = 0;
  paced_and_check(f, 50);
  assert_int_equal(g_writev, 50 * N_CLIENTS);
  assert_int_equal(g_epoll_ctl, 0);
  finish(f);
}

/* Many messages in one iteration: still one writev per client. */
static void test_burst_one_writev(void **state) {
  fixture *f = start();
  (void)state;
  heads(f);
  g_epoll_ctl = g_writev = 0;
  burst_and_check(f, 300);
  assert_int_equal(g_writev, N_CLIENTS);
  assert_int_equal(g_epoll_ctl, 0);
  finish(f);
}

/*
 * A client that does not read: its socket fills, EV_WRITE is armed for
 * it alone, everything arrives in order once it reads, and afterwards
 * the loop is back to writing without epoll_ctl.
 */
static void test_full_socket(void **state) {
  fixture *f = start();
  static char big[16000];
  size_t sent = 0, got = 0;
  int i, k, op, rounds;
  (void)state;
  heads(f);
  memset(big, 'x', sizeof big);
  g_epoll_ctl = 0;
  for (k = 0; k < 40; k++) {
    assert_int_equal(cf_hub_publish(f->ctx.hub, "r", 1, CF_MSG_BINARY, big,
                                    sizeof big), CF_OK);
    sent += 4 + sizeof big;
    loop_settle(f);
    for (i = 1; i < N_CLIENTS; i++) {
      read_some(f, i);
      assert_int_equal(frames(f, &op, NULL, 0), 1);
    }
  }
  /* 640 kB do not fit in a socketpair: client 0 needed EV_WRITE, and
   * only client 0. */
  assert_true(g_epoll_ctl >= 1 && g_epoll_ctl <= 2);
  for (rounds = 0; got < sent && rounds < 100000; rounds++) {
    got += read_some(f, 0);
    loop_once(f);
  }
  got += read_some(f, 0);
  assert_int_equal(got, sent);
  /* libev may fix up the epoll set once after the watcher stopped. */
  g_epoll_ctl = g_writev = 0;
  for (k = 0; k < 10; k++) {
    assert_int_equal(cf_hub_publish(f->ctx.hub, "r", 1, CF_MSG_TEXT, "z",
                                     1), CF_OK);
    loop_settle(f);
    for (i = 0; i < N_CLIENTS; i++) {
      read_some(f, i);
      assert_int_equal(frames(f, &op, NULL, 0), 1);
    }
  }
  assert_true(g_epoll_ctl <= 2);
  assert_int_equal(g_writev, 10 * N_CLIENTS);
  finish(f);
}

/* Shutdown: every client gets its 1001 close frame, then EOF. */
static void test_close_all(void **state) {
  fixture *f = start();
  char why[64];
  int i, op;
  (void)state;
  heads(f);
  cf_hub_close_all(f->ctx.hub);
  loop_once(f);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, why, sizeof why), 1);
    assert_int_equal(op, 8);
    assert_int_equal((uint8_t)why[0] << 8 | (uint8_t)why[1], 1001);
    assert_string_equal(why + 2, "going away");
    assert_int_equal(read(f->peer[i], why, 1), 0); /* write side shut */
  }
  finish(f);
}

/* Writes a masked client frame (mask 0: the payload goes as is). */
static void client_frame(fixture *f, int i, int fin, int op, const char *p,
                         size_t n) {
  uint8_t b[2 + 4 + 125];
  assert_true(n <= 125);
  b[0] = (uint8_t)((fin ? 0x80 : 0) | op);
  b[1] = (uint8_t)(0x80 | n);
  memset(b + 2, 0, 4);
  memcpy(b + 6, p, n);
  assert_int_equal(write(f->peer[i], b, 6 + n), (ssize_t)(6 + n));
}

/*
 * An idle connection holds no wslay context: one is made when bytes
 * arrive and freed once they form whole messages. Between a fragment
 * and the rest of its message, or between two halves of a header, the
 * context stays, and the message arrives whole.
 */
static void test_parser_only_while_needed(void **state) {
  fixture *f = start();
  char got[64];
  int i, op;
  (void)state;
  heads(f);
  assert_int_equal(f->ctx.n_parsers, 0);
  client_frame(f, 0, 1, 1, "whole", 5);
  loop_settle(f);
  assert_int_equal(f->ctx.n_parsers, 0);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, got, sizeof got), 1);
    assert_string_equal(got, "whole");
  }
  /* First fragment now, the rest later. */
  client_frame(f, 1, 0, 1, "frag", 4);
  loop_settle(f);
  assert_int_equal(f->ctx.n_parsers, 1);
  assert_int_equal(read_some(f, 2), 0);
  client_frame(f, 1, 1, 9, "ping", 4); /* a ping between fragments */
  loop_settle(f);
  assert_int_equal(f->ctx.n_parsers, 1);
  read_some(f, 1);
  assert_int_equal(frames(f, &op, got, sizeof got), 1);
  assert_int_equal(op, 10);
  assert_string_equal(got, "ping");
  /* Half a header. */
  assert_int_equal(write(f->peer[1], "\x80", 1), 1);
  loop_settle(f);
  assert_int_equal(f->ctx.n_parsers, 1);
  assert_int_equal(write(f->peer[1], "\x87\0\0\0\0mented!", 12), 12);
  loop_settle(f);
  assert_int_equal(f->ctx.n_parsers, 0);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, got, sizeof got), 1);
    assert_int_equal(op, 1);
    assert_string_equal(got, "fragmented!");
  }
  finish(f);
}

/* A close decided for an idle connection goes out with its code and
 * costs no parser; a closing connection keeps none either. */
static void test_close_without_parser(void **state) {
  fixture *f = start();
  char why[64];
  int op;
  (void)state;
  heads(f);
  assert_int_equal(f->ctx.n_parsers, 0);
  client_frame(f, 3, 1, 1, "\xff", 1); /* invalid UTF-8: 1007 */
  loop_settle(f);
  read_some(f, 3);
  assert_int_equal(frames(f, &op, why, sizeof why), 1);
  assert_int_equal(op, 8);
  assert_int_equal((uint8_t)why[0] << 8 | (uint8_t)why[1], 1007);
  assert_int_equal(f->ctx.n_parsers, 0);
  cf_hub_close_all(f->ctx.hub);
  loop_once(f);
  assert_int_equal(f->ctx.n_parsers, 0);
  read_some(f, 4);
  assert_int_equal(frames(f, &op, why, sizeof why), 1);
  assert_int_equal((uint8_t)why[0] << 8 | (uint8_t)why[1], 1001);
  finish(f);
}

/* A client's stream read so far, checked frame by frame. */
typedef struct stream {
  uint8_t buf[1 << 18];
  size_t len;
  unsigned frames, closes;
  long last; /* index of the last message, -1 before the first */
} stream;

/*
 * Takes the complete server frames at the front of st: each must be a
 * final unmasked text, ping, pong or close frame, texts must carry the
 * published pattern, and nothing may follow a close.
 */
static void stream_check(stream *st) {
  size_t pos = 0, n, hl, k;
  while (st->len - pos >= 2) {
    const uint8_t *p = st->buf + pos;
    int op = p[0] & 0x0f;
    assert_int_equal(p[0] & 0xf0, 0x80); /* FIN, no RSV */
    assert_int_equal(p[1] & 0x80, 0);    /* unmasked */
    n = p[1] & 0x7f;
    hl = 2;
    if (n == 126) {
      if (st->len - pos < 4)
        break;
      n = (size_t)p[2] << 8 | p[3];
      hl = 4;
    }
    assert_true(n != 127);
    if (st->len - pos < hl + n)
      break;
    assert_int_equal(st->closes, 0);
    assert_true(op == 1 || op == 8 || op == 9 || op == 10);
    if (op == 1) { /* "m<idx>:" then the letter of round idx / 3 */
      long idx = 0;
      assert_int_equal(p[hl], 'm');
      for (k = 1; k < n && p[hl + k] != ':'; k++) {
        assert_true(p[hl + k] >= '0' && p[hl + k] <= '9');
        idx = idx * 10 + (p[hl + k] - '0');
      }
      assert_true(k < n && idx > st->last); /* once each, in order */
      st->last = idx;
      for (k++; k < n; k++)
        assert_int_equal(p[hl + k], 'a' + (idx / 3) % 26);
    }
    st->closes += op == 8;
    st->frames++;
    pos += hl + n;
  }
  memmove(st->buf, st->buf + pos, st->len - pos);
  st->len -= pos;
}

/* Publishes to room (one letter) message idx of len bytes, as
 * stream_check wants it: "m<idx>:" then the letter of idx / 3. */
static int publish_to(fixture *f, const char *room, unsigned idx,
                      size_t len) {
  static char msg[16384];
  int n = snprintf(msg, sizeof msg, "m%u:", idx);
  assert_true(len >= (size_t)n && len <= sizeof msg);
  memset(msg + n, 'a' + (int)(idx / 3 % 26), len - (size_t)n);
  return cf_hub_publish(f->ctx.hub, room, 1, CF_MSG_TEXT, msg, len);
}

static int publish_idx(fixture *f, unsigned idx, size_t len) {
  return publish_to(f, "r", idx, len);
}

static void stream_read(fixture *f, stream *st, int i) {
  ssize_t n;
  while (st->len < sizeof st->buf &&
         (n = read(f->peer[i], st->buf + st->len,
                   sizeof st->buf - st->len)) > 0) {
    st->len += (size_t)n;
    stream_check(st);
  }
}

/*
 * Outbound budget cuts while flushing: pongs and closes produced by
 * some connections' flush push the hub over its budget, which cuts off
 * others, possibly ones whose write is already prepared. Random
 * publishes, pings and readers (a third never read); every stream must
 * stay well formed: whole frames, nothing after the close, no bytes
 * twice, no foreign bytes. Run with writev and with io_uring.
 */
static void budget_churn(int batched) {
  static stream st[N_CLIENTS];
  fixture *f = start_with(batched, 48 * 1024);
  unsigned seed = 12345, round, cut = 0;
  int i, k;
  memset(st, 0, sizeof st);
  for (i = 0; i < N_CLIENTS; i++)
    st[i].last = -1;
  signal(SIGPIPE, SIG_IGN); /* a ping to a connection just closed */
  heads(f);
  for (round = 0; round < 400; round++) {
    for (k = 0; k < 3; k++) {
      seed = seed * 1103515245u + 12345u;
      publish_idx(f, round * 3 + (unsigned)k, (seed >> 16) % 6000 + 16);
    }
    for (i = 0; i < N_CLIENTS; i++) {
      seed = seed * 1103515245u + 12345u;
      if ((seed >> 16) % 4 == 0 && st[i].closes == 0)
        (void)!write(f->peer[i], "\x89\x81\0\0\0\0p", 7); /* ping */
    }
    loop_once(f);
    for (i = 0; i < N_CLIENTS; i++) {
      seed = seed * 1103515245u + 12345u;
      if (i % 3 != 0 && (seed >> 16) % 2 == 0)
        stream_read(f, &st[i], i);
    }
  }
  for (k = 0; k < 50; k++) {
    loop_once(f);
    for (i = 0; i < N_CLIENTS; i++)
      stream_read(f, &st[i], i);
  }
  for (i = 0; i < N_CLIENTS; i++) {
    assert_true(st[i].frames > 0);
    cut += st[i].closes;
  }
  /* The budget did bite: the silent readers at least were shed. */
  assert_true(cut >= N_CLIENTS / 3);
  finish(f);
}

/* The write mode of a test run twice: its initial state. */
static int mode_writev = 0, mode_batched = 1;

static void test_budget_churn(void **state) {
  budget_churn(*(const int *)*state);
}

/*
 * The cut the pump of one connection causes to another, deterministic.
 * Right before the flush (a prepare watcher of higher priority), X (the
 * last client, alone in room x) is cut off as a slow consumer: its close
 * frame waits for its pump. Then room r gets messages that bring the
 * outboxes to just under the budget; the flush pumps X last, its close
 * goes over, and the largest backlog of room r is cut off. With io_uring every connection is pumped before
 * any write is prepared, so the victim (client 0, the first of the
 * equal backlogs) sends its close frame alone: none of the messages
 * its cut dropped, and every outbox's count stays right.
 */
typedef struct cut_setup {
  fixture *f;
  ev_prepare w;
  size_t budget;
  unsigned k;   /* messages published */
  size_t cost;  /* outbound_bytes after them */
  uint64_t closes_before; /* budget_closes before them */
} cut_setup;

static void cut_publish(struct ev_loop *loop, ev_prepare *w, int revents) {
  cut_setup *cs = w->data;
  static char big[16000];
  cf_hub_stats st;
  size_t base, one, room;
  int n;
  (void)revents;
  ev_prepare_stop(loop, w);
  /* X is cut off first (its outbox over client_buffer): its close frame
   * waits for its pump in the flush, the last in the dirty list. */
  memset(&st, 0, sizeof st);
  memset(big, 'x', sizeof big);
  for (n = 0; n < 10 && st.slow_closes == 0; n++) {
    assert_int_equal(cf_hub_publish(cs->f->ctx.hub, "x", 1, CF_MSG_TEXT,
                                    big, sizeof big), CF_OK);
    cf_hub_get_stats(cs->f->ctx.hub, &st, sizeof st);
  }
  assert_int_equal(st.slow_closes, 1);
  cs->closes_before = st.budget_closes;
  base = st.outbound_bytes;
  /* One message to learn what a message costs beyond its payload (its
   * header and an entry per client), then more, then one sized to land
   * 20 bytes under the budget: a pong costs more (its entry alone, 64). */
  assert_int_equal(publish_idx(cs->f, 0, 140), CF_OK);
  cf_hub_get_stats(cs->f->ctx.hub, &st, sizeof st);
  one = st.outbound_bytes - base;
  for (cs->k = 1; st.outbound_bytes + 3 * one < cs->budget; cs->k++) {
    assert_int_equal(publish_idx(cs->f, cs->k, 140), CF_OK);
    cf_hub_get_stats(cs->f->ctx.hub, &st, sizeof st);
  }
  room = cs->budget - st.outbound_bytes - 20;
  assert_true(room > one + 200 && room - (one - 140) < 16000);
  /* (Same header size: payloads of 126 to 65535 bytes.) */
  assert_int_equal(publish_idx(cs->f, cs->k, room - (one - 140)), CF_OK);
  cs->k++;
  cf_hub_get_stats(cs->f->ctx.hub, &st, sizeof st);
  cs->cost = st.outbound_bytes;
  assert_true(cs->cost <= cs->budget && cs->cost + 64 > cs->budget);
  assert_int_equal(st.budget_closes, cs->closes_before);
}

static void cut_in_flush(int batched) {
  static stream st[N_CLIENTS];
  const size_t budget = 32768;
  cut_setup cs;
  cf_hub_stats hs;
  fixture *f;
  int i, k, victims = 0;
  g_last_apart = 1;
  f = start_with(batched, budget);
  g_last_apart = 0;
  memset(st, 0, sizeof st);
  for (i = 0; i < N_CLIENTS; i++)
    st[i].last = -1;
  heads(f);
  loop_once(f);
  memset(&cs, 0, sizeof cs);
  cs.f = f;
  cs.budget = budget;
  ev_prepare_init(&cs.w, cut_publish);
  cs.w.data = &cs;
  ev_prepare_start(f->ctx.loop, &cs.w); /* before ws_flush (EV_MINPRI) */
  for (k = 0; k < 20; k++) {
    loop_once(f);
    for (i = 0; i < N_CLIENTS; i++)
      stream_read(f, &st[i], i);
  }
  assert_true(cs.k > 1);
  memset(&hs, 0, sizeof hs);
  cf_hub_get_stats(f->ctx.hub, &hs, sizeof hs);
  /* X: its close, none of the messages its cut dropped. */
  assert_int_equal(st[N_CLIENTS - 1].frames, 1);
  assert_int_equal(st[N_CLIENTS - 1].closes, 1);
  for (i = 0; i < N_CLIENTS - 1; i++) {
    if (st[i].closes == 0) {
      /* Everyone else got every message once, in order. */
      assert_int_equal(st[i].frames, cs.k);
      assert_int_equal(st[i].last, (long)cs.k - 1);
      continue;
    }
    victims++;
    /* A victim: all of them and its close, or, cut before any write
     * was prepared, its close alone. */
    assert_true(st[i].frames == 1 || st[i].frames == cs.k + 1);
    if (batched) {
      assert_int_equal(i, 0);
      assert_int_equal(st[i].frames, 1);
    }
  }
  /* With writev every outbox of room r is empty by the time X's close
   * goes over the budget: there is nothing to cut. With io_uring the
   * pumps all come first, and the cut lands before the writes. */
  assert_int_equal(victims, batched ? 1 : (int)(hs.budget_closes -
                                                cs.closes_before));
  if (batched)
    assert_int_equal(hs.budget_closes, cs.closes_before + 1);
  /* Every outbox consumed exactly what went out. */
  assert_int_equal(hs.outbox_bytes, 0);
  assert_int_equal(hs.outbound_bytes, 0);
  finish(f);
}

static void test_cut_in_flush(void **state) {
  cut_in_flush(*(const int *)*state);
}

/*
 * A connection its peer closed, its close echo queued behind a backlog
 * the peer has not read yet, is closing on its own: a burst that takes
 * the hub over its budget sheds it (the largest backlog) without a
 * close, and nobody else. Its peer gets whole frames, messages in
 * order up to where the cut fell, then the echo, then EOF: the cut
 * keeps the bytes queued since cf_client_shutdown (the peer would have
 * seen 1006 without them).
 */
static void test_closing_shed(void **state) {
  static stream st;
  const size_t budget = 48 * 1024;
  const int x = N_CLIENTS - 1; /* alone in room x */
  cf_hub_stats hs;
  unsigned sent = 0;
  fixture *f;
  int k;
  (void)state;
  g_last_apart = 1;
  f = start_with(0, budget);
  g_last_apart = 0;
  memset(&st, 0, sizeof st);
  st.last = -1;
  heads(f);
  /* X reads nothing: its socket fills, then its outbox. */
  memset(&hs, 0, sizeof hs);
  while (hs.outbox_bytes < 28000 && sent < 10000) {
    assert_int_equal(publish_to(f, "x", sent++, 4000), CF_OK);
    loop_once(f);
    cf_hub_get_stats(f->ctx.hub, &hs, sizeof hs);
  }
  assert_true(hs.outbox_bytes >= 28000 && hs.outbox_bytes < 36000);
  assert_int_equal(hs.slow_closes, 0);
  /* Its peer closes (1000): the echo waits behind the backlog. */
  assert_int_equal(write(f->peer[x], "\x88\x82\0\0\0\0\x03\xe8", 8), 8);
  loop_once(f);
  /* Room r's readers fall behind in one burst: over the budget. */
  for (k = 0; hs.budget_trims == 0 && k < 100; k++) {
    assert_int_equal(publish_idx(f, (unsigned)k, 1000), CF_OK);
    cf_hub_get_stats(f->ctx.hub, &hs, sizeof hs);
  }
  assert_int_equal(hs.budget_trims, 1);
  assert_int_equal(hs.budget_closes, 0);
  assert_int_equal(hs.slow_closes, 0);
  assert_true(hs.outbound_bytes <= budget);
  for (k = 0; k < 100000 && st.closes == 0; k++) {
    loop_once(f);
    stream_read(f, &st, x);
  }
  stream_read(f, &st, x);
  assert_int_equal(st.closes, 1);
  assert_true(st.last < (long)sent - 1); /* messages were dropped */
  assert_int_equal(st.frames, (unsigned)st.last + 2); /* + the echo */
  assert_int_equal(st.len, 0);
  /* Then EOF: the write side was shut once all of it was out. */
  assert_int_equal(read(f->peer[x], st.buf, 1), 0);
  finish(f);
}

/*
 * wslay hands a frame's header and its payload over apart: each frame
 * must still be one outbox entry, or a cut-off (which keeps only a
 * partly written head entry) could keep a header and drop its payload.
 * peek_cb looks before ws_flush writes (a prepare watcher of higher
 * priority): each entry costs 64 bytes in outbound_bytes beyond its
 * own. The bytes on the wire are the usual ones.
 */
typedef struct peek {
  fixture *f;
  ev_prepare w;
  cf_hub_stats st;
} peek;

static void peek_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  peek *p = w->data;
  (void)loop;
  (void)revents;
  memset(&p->st, 0, sizeof p->st);
  cf_hub_get_stats(p->f->ctx.hub, &p->st, sizeof p->st);
}

static void test_control_frame_one_entry(void **state) {
  fixture *f = start();
  peek p;
  (void)state;
  heads(f);
  loop_once(f);
  memset(&p, 0, sizeof p);
  p.f = f;
  ev_prepare_init(&p.w, peek_cb);
  p.w.data = &p;
  ev_prepare_start(f->ctx.loop, &p.w);
  /* A ping: its pong, "ping" back. */
  assert_int_equal(write(f->peer[0], "\x89\x84\0\0\0\0ping", 10), 10);
  loop_once(f); /* read: the pong is queued */
  loop_once(f); /* peek, then the write */
  assert_int_equal(p.st.outbox_bytes, 6);
  assert_int_equal(p.st.outbound_bytes, 6 + 64);
  assert_int_equal(read_some(f, 0), 6);
  assert_memory_equal(f->buf, "\x8a\x04ping", 6);
  /* A close (1000): its echo. */
  assert_int_equal(write(f->peer[0], "\x88\x82\0\0\0\0\x03\xe8", 8), 8);
  loop_once(f);
  loop_once(f);
  assert_int_equal(p.st.outbox_bytes, 4);
  assert_int_equal(p.st.outbound_bytes, 4 + 64);
  assert_int_equal(read_some(f, 0), 4);
  assert_memory_equal(f->buf, "\x88\x02\x03\xe8", 4);
  ev_prepare_stop(f->ctx.loop, &p.w);
  finish(f);
}

/* The io_uring path: same bytes; a client with more frames pending than
 * a slot takes gets the rest by writev, paced ones need none. */
static void test_batched_burst(void **state) {
  fixture *f = start_with(1, 0);
  char why[32];
  int i, op;
  (void)state;
  heads(f);
  loop_once(f);
  g_writev = 0;
  burst_and_check(f, 300);
  assert_int_equal(g_writev, N_CLIENTS);
  g_writev = 0;
  paced_and_check(f, 20);
  assert_int_equal(g_writev, 0);
  cf_hub_close_all(f->ctx.hub);
  loop_once(f);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, why, sizeof why), 1);
    assert_int_equal(op, 8);
  }
  finish(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upgrade_heads),
      cmocka_unit_test(test_paced_no_epoll_ctl),
      cmocka_unit_test(test_burst_one_writev),
      cmocka_unit_test(test_full_socket),
      cmocka_unit_test(test_close_all),
      cmocka_unit_test(test_parser_only_while_needed),
      cmocka_unit_test(test_close_without_parser),
      cmocka_unit_test(test_batched_burst),
      cmocka_unit_test(test_closing_shed),
      cmocka_unit_test(test_control_frame_one_entry),
      {"test_budget_churn_writev", test_budget_churn, NULL, NULL,
       &mode_writev},
      {"test_budget_churn_batched", test_budget_churn, NULL, NULL,
       &mode_batched},
      {"test_cut_in_flush_writev", test_cut_in_flush, NULL, NULL,
       &mode_writev},
      {"test_cut_in_flush_batched", test_cut_in_flush, NULL, NULL,
       &mode_batched},
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
