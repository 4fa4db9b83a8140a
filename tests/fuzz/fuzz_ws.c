/*
 * The WebSocket input path of a server connection, end to end: the real
 * cfd_ws code on a real libev loop with a real hub, one client on a
 * socketpair. The input is what the client sends, cut into chunks so
 * that frames arrive split the ways a network splits them:
 *
 *   byte 0     bits 0-2: number of cuts k; bit 3: the first chunk comes
 *              with the HTTP head (cfd_ws_start's pre bytes); bit 4:
 *              the client shuts its write side after the last chunk;
 *              bit 5: a second client in the room never reads (its
 *              socket buffer is small, so it is closed as too slow)
 *   bytes 1-k  length of each chunk but the last (value + 1)
 *   the rest   the client's bytes
 *
 * After each chunk the loop runs without blocking until nothing moves.
 * What the server wrote must be a 101 head followed by well-formed,
 * unmasked, unfragmented server frames, text frames in UTF-8, at most
 * one close frame with a code a server may send, and nothing after it;
 * the same holds for the silent client.
 * Everything is torn down per input, so LeakSanitizer sees any leak.
 */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

#include <chatfanout/chatfanout.h>

#include "cfd_config.h"
#include "cfd_ctx.h"
#include "cfd_frame.h"
#include "cfd_log.h"
#include "cfd_utf8.h"
#include "cfd_ws.h"
#include "fuzz_common.h"

#define OUT_MAX (4u << 20)

typedef struct out_buf {
  uint8_t *p;
  size_t len, cap;
} out_buf;

static cfd_config g_cfg;

/* Reads everything the server has written so far; returns the count. */
static size_t drain(int fd, out_buf *o) {
  size_t got = 0;
  ssize_t n;
  for (;;) {
    if (o->cap - o->len < 4096) {
      FUZZ_CHECK(o->cap < OUT_MAX);
      o->cap = o->cap ? 2 * o->cap : 65536;
      o->p = realloc(o->p, o->cap);
      FUZZ_CHECK(o->p != NULL);
    }
    n = read(fd, o->p + o->len, o->cap - o->len);
    if (n <= 0)
      return got;
    o->len += (size_t)n;
    got += (size_t)n;
  }
}

/* Runs the loop until two passes in a row neither read nor wrote. */
static void settle(cfd_ctx *ctx, int fd, out_buf *o) {
  int quiet = 0, i;
  for (i = 0; i < 200 && quiet < 2; i++) {
    ev_run(ctx->loop, EVRUN_NOWAIT);
    quiet = drain(fd, o) ? 0 : quiet + 1;
  }
}

/* The silent client: its server side can buffer little in the kernel. */
static int add_silent(cfd_ctx *ctx, const cfd_route *rt) {
  int sv[2], small = 4096;
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  FUZZ_CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small,
                        sizeof small) == 0);
  FUZZ_CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small,
                        sizeof small) == 0);
  FUZZ_CHECK(cfd_ws_start(ctx, sv[0], rt, NULL, 0) == 0);
  return sv[1];
}

/* Writes all n bytes (the socket is drained meanwhile if it fills). */
static void send_all(cfd_ctx *ctx, int fd, const uint8_t *p, size_t n,
                     out_buf *o) {
  ssize_t w;
  int stuck = 0;
  while (n > 0) {
    w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      stuck = 0;
      continue;
    }
    FUZZ_CHECK(w < 0 && (errno == EAGAIN || errno == EINTR));
    /* A server that stopped reading (it closed) leaves bytes unread. */
    if (++stuck > 3)
      return;
    settle(ctx, fd, o);
  }
}

static int close_code_ok(unsigned code) {
  if (code >= 3000 && code <= 4999)
    return 1;
  /* Registered codes an endpoint may send (1004-1006, 1015 may not). */
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

/* Checks one server frame at o[*pos]; returns its opcode. */
static unsigned check_frame(const out_buf *o, size_t *pos) {
  const uint8_t *f = o->p + *pos;
  size_t left = o->len - *pos, hl = 2;
  uint64_t n;
  unsigned op;
  FUZZ_CHECK(left >= 2);
  FUZZ_CHECK((f[0] & 0xf0u) == 0x80u); /* FIN, no RSV bits */
  FUZZ_CHECK((f[1] & 0x80u) == 0);     /* servers never mask */
  op = f[0] & 0x0fu;
  n = f[1] & 0x7fu;
  if (n == 126) {
    FUZZ_CHECK(left >= 4);
    n = (uint64_t)f[2] << 8 | f[3];
    FUZZ_CHECK(n >= 126);
    hl = 4;
  } else if (n == 127) {
    FUZZ_CHECK(left >= 10);
    n = 0;
    for (hl = 2; hl < 10; hl++)
      n = n << 8 | f[hl];
    FUZZ_CHECK(n > 0xffff);
  }
  FUZZ_CHECK(n <= left - hl);
  f += hl;
  switch (op) {
  case 0x1:
    FUZZ_CHECK(cfd_utf8_valid(f, n));
    /* fall through */
  case 0x2:
    FUZZ_CHECK(n <= g_cfg.max_message_size);
    break;
  case 0x8:
    FUZZ_CHECK(n != 1 && n <= 125);
    if (n >= 2) {
      FUZZ_CHECK(close_code_ok((unsigned)f[0] << 8 | f[1]));
      FUZZ_CHECK(cfd_utf8_valid(f + 2, n - 2));
    }
    break;
  case 0x9:
  case 0xa:
    FUZZ_CHECK(n <= 125);
    break;
  default:
    FUZZ_CHECK(!"server sent an unknown opcode");
  }
  *pos += hl + n;
  return op;
}

static void check_output(const out_buf *o) {
  static const char head[] = "HTTP/1.1 101 ";
  const uint8_t *end;
  size_t pos;
  FUZZ_CHECK(o->len >= sizeof head - 1);
  FUZZ_CHECK(memcmp(o->p, head, sizeof head - 1) == 0);
  end = memmem(o->p, o->len, "\r\n\r\n", 4);
  FUZZ_CHECK(end != NULL);
  pos = (size_t)(end - o->p) + 4;
  while (pos < o->len) {
    if (check_frame(o, &pos) == 0x8)
      FUZZ_CHECK(pos == o->len); /* nothing after a close */
  }
}

static void init_once(void) {
  static int done;
  static char *argv[] = {"fuzz_ws", "--ping-interval", "0",
                         "--idle-timeout", "0", "--max-message-size",
                         "1024", "--client-buffer", "4096", NULL};
  if (done)
    return;
  done = 1;
  signal(SIGPIPE, SIG_IGN);
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  FUZZ_CHECK(cfd_config_parse(&g_cfg, 9, argv, NULL, NULL, NULL, 0) ==
             CFD_CONFIG_OK);
}

static void ctx_init(cfd_ctx *ctx) {
  cf_hub_config hc = {.version = CF_HUB_CONFIG_VERSION};
  memset(ctx, 0, sizeof *ctx);
  ctx->loop = ev_loop_new(EVBACKEND_EPOLL);
  FUZZ_CHECK(ctx->loop != NULL);
  ctx->cfg = &g_cfg;
  cfd_metrics_init(&ctx->metrics);
  hc.client_buffer = g_cfg.client_buffer;
  hc.max_message = g_cfg.max_message_size;
  hc.history = 4;
  hc.framer = cfd_frame_hub_framer;
  FUZZ_CHECK(cf_hub_new(&ctx->hub, &hc) == CF_OK);
}

static void ctx_deinit(cfd_ctx *ctx) {
  cfd_ws_free_all(ctx);
  FUZZ_CHECK(ctx->n_ws == 0);
  cf_hub_free(ctx->hub);
  ev_loop_destroy(ctx->loop);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cfd_ctx ctx;
  cfd_route rt;
  out_buf o = {NULL, 0, 0}, o2 = {NULL, 0, 0};
  const uint8_t *cuts, *p;
  size_t k, i, n, left;
  int sv[2], flags, silent = -1;

  init_once();
  if (size < 1)
    return 0;
  flags = data[0];
  k = (size_t)(flags & 7);
  if (size < 1 + k)
    return 0;
  cuts = data + 1;
  p = data + 1 + k;
  left = size - 1 - k;

  ctx_init(&ctx);
  memset(&rt, 0, sizeof rt);
  rt.kind = CFD_ROUTE_WS;
  memcpy(rt.room, "fuzz", 5);
  rt.room_len = 4;
  memcpy(rt.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 29);
  rt.extra = "";
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  if (flags & 32)
    silent = add_silent(&ctx, &rt);

  n = k > 0 && cuts[0] + 1u < left ? cuts[0] + 1u : left;
  if (flags & 8) {
    FUZZ_CHECK(cfd_ws_start(&ctx, sv[0], &rt, (const char *)p, n) == 0);
    p += n;
    left -= n;
    i = 1;
  } else {
    FUZZ_CHECK(cfd_ws_start(&ctx, sv[0], &rt, NULL, 0) == 0);
    i = 0;
  }
  settle(&ctx, sv[1], &o);
  for (; left > 0; i++) {
    n = i < k && cuts[i] + 1u < left ? cuts[i] + 1u : left;
    send_all(&ctx, sv[1], p, n, &o);
    p += n;
    left -= n;
    settle(&ctx, sv[1], &o);
  }
  if (flags & 16) {
    shutdown(sv[1], SHUT_WR);
    settle(&ctx, sv[1], &o);
  }
  check_output(&o);
  if (silent >= 0) {
    drain(silent, &o2);
    check_output(&o2);
  }
  ctx_deinit(&ctx);
  close(sv[1]);
  if (silent >= 0)
    close(silent);
  free(o.p);
  free(o2.p);
  return 0;
}
