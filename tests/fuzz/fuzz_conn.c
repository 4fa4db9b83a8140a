/*
 * A whole client connection to the daemon, from the first byte of the
 * request head on: the real listener and HTTP phase (cfd_server.c), the
 * router, and for a valid upgrade the WebSocket connection with its
 * early frames, on a real libev loop and hub, over loopback TCP. The
 * input is cut into chunks as in fuzz_ws:
 *
 *   byte 0     bits 0-2: number of cuts k; bit 4: the client shuts its
 *              write side after the last chunk
 *   bytes 1-k  length of each chunk but the last (value + 1)
 *   the rest   the client's bytes
 *
 * The answer must be either a 101 head followed by well-formed server
 * frames, or one plain HTTP answer whose Content-Length matches its
 * body, after which the server closes (see ws_check.h for output still
 * in flight). Per input: a new listener and
 * hub, torn down after, so LeakSanitizer sees any leak.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <chatfanout/chatfanout.h>

#include "cfd_config.h"
#include "cfd_ctx.h"
#include "cfd_frame.h"
#include "cfd_log.h"
#include "cfd_server.h"
#include "cfd_ws.h"
#include "fuzz_common.h"
#include "ws_check.h"

static cfd_config g_cfg;

static void init_once(void) {
  static int done;
  static char *argv[] = {"fuzz_conn", "--listen", "127.0.0.1:0",
                         "--ping-interval", "0", "--idle-timeout", "0",
                         "--max-message-size", "1024", NULL};
  if (done)
    return;
  done = 1;
  signal(SIGPIPE, SIG_IGN);
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  FUZZ_CHECK(cfd_config_parse(&g_cfg, 9, argv, NULL, NULL, NULL, 0) ==
             CFD_CONFIG_OK);
}

/*
 * Connects to the listener (this completes from the backlog, before the
 * loop accepts). Loopback ports or the backlog can run short for a
 * moment on a busy machine: that is retried, and in the end not blamed
 * on the input.
 * Returns the socket, or -1.
 */
static int dial(unsigned port) {
  struct sockaddr_in a;
  int fd, tries, err = 0;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (tries = 0; tries < 50; tries++) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    FUZZ_CHECK(fd >= 0);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
      FUZZ_CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
      return fd;
    }
    /* Whatever the kernel says (no port, a full backlog: also refused
     * or timed out), it is about the machine, not the input. */
    err = errno;
    close(fd);
    usleep(20000);
  }
  fprintf(stderr, "fuzz_conn: cannot connect (%s), input skipped\n",
          strerror(err));
  return -1;
}

/* Might the request be a HEAD? Empty lines may come before it. */
static int starts_head(const uint8_t *p, size_t n) {
  while (n > 0 && (*p == '\r' || *p == '\n'))
    p++, n--;
  return n >= 5 && memcmp(p, "HEAD ", 5) == 0;
}

/*
 * A plain answer: status line, head, Content-Length bytes of body, then
 * EOF. Before EOF, a prefix of that is accepted (loopback TCP may still
 * carry the rest).
 */
static void check_http_output(const out_buf *o, int maybe_head) {
  const uint8_t *end, *cl;
  size_t head;
  unsigned long body;
  if (o->len < 13 || (end = memmem(o->p, o->len, "\r\n\r\n", 4)) == NULL) {
    FUZZ_CHECK(!o->eof);
    return;
  }
  FUZZ_CHECK(memcmp(o->p, "HTTP/1.1 ", 9) == 0);
  FUZZ_CHECK(o->p[9] >= '2' && o->p[9] <= '5' && o->p[12] == ' ');
  head = (size_t)(end - o->p) + 4;
  cl = memmem(o->p, head, "\r\nContent-Length: ", 18);
  FUZZ_CHECK(cl != NULL);
  body = strtoul((const char *)cl + 18, NULL, 10);
  FUZZ_CHECK(o->len <= head + body);
  if (!o->eof)
    return;
  /* HEAD answers announce the body they do not send (a malformed HEAD
   * request may get the body: the daemon cannot tell). */
  FUZZ_CHECK(o->len == head + body || (maybe_head && o->len == head));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cf_hub_config hc = {.version = CF_HUB_CONFIG_VERSION};
  const struct linger rst = {1, 0};
  cfd_ctx ctx;
  cfd_server *srv;
  out_buf o = {NULL, 0, 0, 0};
  const uint8_t *cuts, *p;
  size_t k, i, n, left;
  int fd, flags, maybe_head;

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
  maybe_head = starts_head(p, left);

  memset(&ctx, 0, sizeof ctx);
  ctx.loop = ev_loop_new(EVBACKEND_EPOLL);
  FUZZ_CHECK(ctx.loop != NULL);
  ctx.cfg = &g_cfg;
  cfd_metrics_init(&ctx.metrics);
  hc.client_buffer = g_cfg.client_buffer;
  hc.max_message = g_cfg.max_message_size;
  hc.framer = cfd_frame_hub_framer;
  FUZZ_CHECK(cf_hub_new(&ctx.hub, &hc) == CF_OK);
  FUZZ_CHECK(cfd_server_new(&srv, &ctx) == 0);
  if ((fd = dial(cfd_server_port(srv))) < 0)
    left = 0;

  for (i = 0; left > 0; i++) {
    n = i < k && cuts[i] + 1u < left ? cuts[i] + 1u : left;
    send_all(&ctx, fd, p, n, &o);
    p += n;
    left -= n;
    settle(&ctx, fd, &o);
  }
  if (fd >= 0 && (flags & 16)) {
    shutdown(fd, SHUT_WR);
    settle(&ctx, fd, &o);
  }
  if (o.len > 0 && !check_ws_output(&o, g_cfg.max_message_size))
    check_http_output(&o, maybe_head);

  cfd_server_free(srv);
  cfd_ws_free_all(&ctx);
  FUZZ_CHECK(ctx.n_ws == 0 && ctx.n_http == 0);
  cf_hub_free(ctx.hub);
  ev_loop_destroy(ctx.loop);
  /* A reset, not a FIN: thousands of connections a minute must not
   * leave TIME_WAIT sockets to run out of loopback ports. */
  if (fd >= 0) {
    FUZZ_CHECK(setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst) ==
               0);
    close(fd);
  }
  free(o.p);
  return 0;
}
