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
#include "ws_check.h"

static cfd_config g_cfg;

/* The silent client: its server side can buffer little in the kernel. */
static int add_silent(cfd_ctx *ctx, const cfd_route *rt) {
  int sv[2], small = 4096;
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  FUZZ_CHECK(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small,
                        sizeof small) == 0);
  FUZZ_CHECK(setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small,
                        sizeof small) == 0);
  FUZZ_CHECK(cfd_ws_start(ctx, sv[0], rt, NULL, 0, NULL) == 0);
  return sv[1];
}

static void check_output(const out_buf *o) {
  FUZZ_CHECK(check_ws_output(o, g_cfg.max_message_size));
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
  out_buf o = {NULL, 0, 0, 0}, o2 = {NULL, 0, 0, 0};
  const uint8_t *cuts, *p;
  size_t k, i, n, left;
  int sv[2], flags, silent = -1, quiet;

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
    FUZZ_CHECK(cfd_ws_start(&ctx, sv[0], &rt, (const char *)p, n, NULL) ==
               0);
    p += n;
    left -= n;
    i = 1;
  } else {
    FUZZ_CHECK(cfd_ws_start(&ctx, sv[0], &rt, NULL, 0, NULL) == 0);
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
  if (silent >= 0) {
    /* Now it reads: let the server write what it still holds. */
    for (quiet = i = 0; i < 400 && quiet < 4; i++) {
      ev_run(ctx.loop, EVRUN_NOWAIT);
      quiet = drain(silent, &o2) + drain(sv[1], &o) ? 0 : quiet + 1;
    }
    check_output(&o2);
  }
  check_output(&o);
  ctx_deinit(&ctx);
  close(sv[1]);
  if (silent >= 0)
    close(silent);
  free(o.p);
  free(o2.p);
  return 0;
}
