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

/*
 * Everything the hub allocates must be freed by the end of each test
 * function (cmocka checks its allocator there), so each test starts and
 * finishes its own fixture.
 */
static fixture *start(void) {
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
  hc.client_buffer = f.cfg.client_buffer;
  hc.max_message = f.cfg.max_message_size;
  hc.framer = cfd_frame_hub_framer;
  assert_int_equal(cf_hub_new(&f.ctx.hub, &hc), CF_OK);
  memset(&rt, 0, sizeof rt);
  rt.kind = CFD_ROUTE_WS;
  memcpy(rt.room, "r", 2);
  rt.room_len = 1;
  memcpy(rt.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29);
  rt.extra = "";
  for (i = 0; i < N_CLIENTS; i++) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
                                sv), 0);
    assert_int_equal(cfd_ws_start(&f.ctx, sv[0], &rt, NULL, 0), 0);
    f.peer[i] = sv[1];
  }
  return &f;
}

static void finish(fixture *f) {
  int i;
  cfd_ws_free_all(&f->ctx);
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
  char msg[32], got[32];
  int i, k, op;
  (void)state;
  heads(f);
  loop_once(f);
  g_epoll_ctl = g_writev = 0;
  for (k = 0; k < 50; k++) {
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
  assert_int_equal(g_writev, 50 * N_CLIENTS);
  assert_int_equal(g_epoll_ctl, 0);
  finish(f);
}

/* Many messages in one iteration: still one writev per client. */
static void test_burst_one_writev(void **state) {
  fixture *f = start();
  char msg[32], got[32];
  int i, k, op;
  (void)state;
  heads(f);
  g_epoll_ctl = g_writev = 0;
  for (k = 0; k < 300; k++) {
    snprintf(msg, sizeof msg, "burst %d", k);
    assert_int_equal(cf_hub_publish(f->ctx.hub, "r", 1, CF_MSG_TEXT, msg,
                                     strlen(msg)), CF_OK);
  }
  loop_settle(f);
  assert_int_equal(g_writev, N_CLIENTS);
  assert_int_equal(g_epoll_ctl, 0);
  for (i = 0; i < N_CLIENTS; i++) {
    read_some(f, i);
    assert_int_equal(frames(f, &op, got, sizeof got), 300);
    assert_string_equal(got, "burst 299");
  }
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upgrade_heads),
      cmocka_unit_test(test_paced_no_epoll_ctl),
      cmocka_unit_test(test_burst_one_writev),
      cmocka_unit_test(test_full_socket),
      cmocka_unit_test(test_close_all),
      cmocka_unit_test(test_parser_only_while_needed),
      cmocka_unit_test(test_close_without_parser),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
