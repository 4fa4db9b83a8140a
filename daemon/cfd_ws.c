#include "cfd_ws.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "cfd_batch.h"
#include "cfd_clock.h"
#include "cfd_frame.h"
#include "cfd_limits.h"
#include "cfd_log.h"
#include "cfd_peer.h"
#include "cfd_utf8.h"

#ifdef IOV_MAX
#define WS_IOV_MAX IOV_MAX      /* iovecs per writev: what the kernel takes */
#else
#define WS_IOV_MAX 1024
#endif
#define WS_READ_BUDGET 65536u   /* bytes read per wakeup, for fairness */
#define WS_CLOSE_TIMEOUT 5.0    /* seconds to get our close frame out */
#define WS_LINGER_TIMEOUT 2.0   /* seconds to wait for the peer's EOF */

/*
 * Life of a connection. OPEN: frames flow. CLOSING: a close frame is in
 * the outbox (ours, or the echo of the peer's); input is dropped. LINGER:
 * everything is written and the write side shut down; we wait briefly
 * for the peer's EOF so it reads the close frame rather than a reset.
 */
enum { WS_OPEN, WS_CLOSING, WS_LINGER };

/*
 * Writing. A wake (or any other new output) only puts the connection on
 * ctx->ws_dirty; the ev_prepare ws_flush then writes every dirty
 * connection once per loop iteration, before the loop blocks, so a
 * burst of messages costs one writev per client and no epoll_ctl. Only
 * a socket that is full gets EV_WRITE (wio), stopped once the outbox is
 * empty. A connection is on the dirty list or has wio active, not both.
 */
typedef struct cfd_ws {
  struct cfd_ws *prev, *next; /* ctx->ws_head list */
  struct cfd_ws *dirty_next;  /* ctx->ws_dirty list */
  struct cfd_ws **dirty_pprev;/* NULL: not on it */
  cfd_ctx *ctx;
  cf_client *client;
  wslay_event_context_ptr ws; /* NULL between messages: see ws_release */
  ev_io rio;
  ev_io wio;            /* active while the socket is full */
  ev_timer timer;       /* OPEN: ping/idle; later: close deadline */
  /* Times on cfd_mono_now()'s clock. */
  double last_rx;       /* when the last byte was received */
  double busy_since;    /* when the unfinished frame or
                           fragmented message began (scan not idle) */
  double last_ping;     /* when the last ping was sent */
  uint8_t *pre;         /* bytes that came with the HTTP head, or NULL */
  struct cfd_ws *pre_next; /* ctx->ws_pre list, see pre_due */
  uint32_t pre_len, pre_off;
  uint32_t rx_budget;   /* bytes this wakeup may still read */
  uint8_t tx_head[4];   /* a frame header waiting for its payload, see
                           send_cb (here, it takes up padding) */
  cfd_frame_scan scan;  /* announced sizes, ahead of wslay */
  cfd_bucket rate;      /* frames the client may send (--message-rate) */
  const char *close_why;/* static reason of a close we started, or NULL */
  uint16_t close_code;  /* its code, while it waits without a parser */
  uint8_t state;
  uint8_t rx_gone;      /* the recv callback saw EOF or an error */
  uint8_t too_big;      /* the scan saw a header over max_message_size */
  uint8_t ip_held;      /* peer is counted by the per-address limits */
  uint8_t pre_state;    /* 0, PRE_QUEUED on ctx->ws_pre, then PRE_DONE */
  uint8_t tx_head_len;  /* bytes in tx_head */
  unsigned pump_gen;    /* ctx->flush_gen of its last pump_dirty() pump */
  uint8_t hold_len;     /* bytes in hold */
  uint8_t *hold;        /* the start of a close frame, see recv_cb */
  uint8_t room_len;
  char room[CF_ROOM_MAX + 1];
  cfd_peer peer;        /* for log lines, also after a reset */
} cfd_ws;

/* --- the dirty list ---------------------------------------------------- */

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents);

#define PRE_QUEUED 1
#define PRE_DONE 2

/* ws_flush runs while there is something for it: dirty connections or
 * early frames to read (ctx->ws_pre). */
static void flush_watch(cfd_ctx *ctx) {
  if (ctx->ws_dirty == NULL && ctx->ws_pre == NULL) {
    /* A stopped prepare is off libev's list: an idle loop pays nothing. */
    ev_prepare_stop(ctx->loop, &ctx->ws_flush);
  } else if (!ev_is_active(&ctx->ws_flush)) {
    /* (Re)initialised only while stopped; the zeroed ctx needs it once.
     * Lowest priority: it runs after any other prepare watcher, which
     * might still add output. */
    ev_prepare_init(&ctx->ws_flush, flush_cb);
    ev_set_priority(&ctx->ws_flush, EV_MINPRI);
    ctx->ws_flush.data = ctx;
    ev_prepare_start(ctx->loop, &ctx->ws_flush);
  }
}

static void dirty_del(cfd_ws *c) {
  cfd_ctx *ctx = c->ctx;
  if (c->dirty_pprev == NULL)
    return;
  *c->dirty_pprev = c->dirty_next;
  if (c->dirty_next != NULL)
    c->dirty_next->dirty_pprev = c->dirty_pprev;
  c->dirty_next = NULL;
  c->dirty_pprev = NULL;
  if (ctx->ws_dirty == NULL)
    flush_watch(ctx);
}

/*
 * c has output: have ws_flush write it before the loop blocks. Not
 * while wio is active (write_cb comes when the socket has room) nor
 * after everything was written (LINGER).
 */
static void want_write(cfd_ws *c) {
  cfd_ctx *ctx = c->ctx;
  if (c->dirty_pprev != NULL) {
    /* New output after its pump in this flush: pump again. */
    if (c->pump_gen == ctx->flush_gen) {
      c->pump_gen = 0;
      ctx->repump++;
    }
    return;
  }
  if (ev_is_active(&c->wio) || c->state == WS_LINGER)
    return;
  ctx->repump++;
  c->dirty_next = ctx->ws_dirty;
  if (ctx->ws_dirty != NULL)
    ctx->ws_dirty->dirty_pprev = &c->dirty_next;
  c->dirty_pprev = &ctx->ws_dirty;
  ctx->ws_dirty = c;
  flush_watch(ctx);
}

/*
 * c's 101 is out: the frames that came with its HTTP head are read in
 * ws_flush, which then writes what they produced (the messages they
 * publish, pongs) before the loop blocks. Fed to the read watcher
 * instead, they would be read after ws_flush has run for this loop
 * iteration, and their output would wait for the next wake-up. Once per
 * connection; the list is short-lived and short, so leaving it (pre_del)
 * is a walk.
 */
static void pre_due(cfd_ws *c) {
  cfd_ctx *ctx = c->ctx;
  if (c->pre_state != 0)
    return;
  c->pre_state = PRE_QUEUED;
  c->pre_next = ctx->ws_pre;
  ctx->ws_pre = c;
  flush_watch(ctx);
}

static void pre_del(cfd_ws *c) {
  cfd_ws **pp = &c->ctx->ws_pre;
  if (c->pre_state != PRE_QUEUED)
    return;
  while (*pp != c)
    pp = &(*pp)->pre_next;
  *pp = c->pre_next;
  c->pre_next = NULL;
  c->pre_state = PRE_DONE;
  flush_watch(c->ctx);
}

/* --- lifetime ---------------------------------------------------------- */

static void ws_drop_parser(cfd_ws *c) {
  if (c->ws == NULL)
    return;
  wslay_event_context_free(c->ws);
  c->ws = NULL;
  c->ctx->n_parsers--;
}

static void ws_free(cfd_ws *c) {
  cfd_ctx *ctx = c->ctx;
  dirty_del(c);
  pre_del(c);
  ev_io_stop(ctx->loop, &c->rio);
  ev_io_stop(ctx->loop, &c->wio);
  ev_timer_stop(ctx->loop, &c->timer);
  cfd_batch_fd_del(ctx->batch, c->rio.fd);
  close(c->rio.fd);
  if (c->ip_held)
    cfd_limits_ip_close(ctx->limits, &c->peer);
  cf_client_free(c->client);
  ws_drop_parser(c);
  free(c->pre);
  free(c->hold);
  if (c->prev)
    c->prev->next = c->next;
  else
    ctx->ws_head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  ctx->n_ws--;
  ctx->metrics.connections = ctx->n_ws;
  free(c);
}

static void timer_arm(cfd_ws *c, double after) {
  ev_timer_stop(c->ctx->loop, &c->timer);
  ev_timer_set(&c->timer, after, 0.);
  ev_timer_start(c->ctx->loop, &c->timer);
}

static void log_close(cfd_ws *c, int level, const char *msg, int code,
                      const char *why) {
  char peer[64], cs[8];
  if (!cfd_log_enabled(level))
    return;
  cfd_peer_format(&c->peer, peer, sizeof(peer));
  snprintf(cs, sizeof(cs), "%d", code);
  cfd_log(level, msg, "peer", peer, "room", c->room, "code", cs, "reason",
          why, NULL);
}

/* Why wslay closed on its own, from the code it sent. */
static const char *wslay_close_why(int code) {
  switch (code) {
  case 1002:
    return "protocol error";
  case 1007:
    return "invalid utf-8";
  case 1009:
    return "message too big";
  default:
    return "error";
  }
}

/* A close frame with code is now in the outbox (the hub was told
 * first: cf_client_shutdown): count and log it. */
static void closing_begin(cfd_ws *c, int code) {
  int level = CFD_LOG_INFO;
  const char *why = c->close_why;
  c->state = WS_CLOSING;
  /* Nothing may follow the close frame: stop the room's traffic. */
  cf_client_leave(c->client, c->room, c->room_len);
  cfd_metrics_ws_close(&c->ctx->metrics, code);
  if (why == NULL && c->ws != NULL &&
      wslay_event_get_close_received(c->ws)) {
    level = CFD_LOG_DEBUG;
    why = "peer closed";
  } else if (why == NULL) {
    why = wslay_close_why(code);
  } else if (code == 1001) {
    level = CFD_LOG_DEBUG; /* every client at shutdown */
  } else if (code == 1008 || code == 1011 || code == 1013) {
    level = CFD_LOG_WARN;
  }
  log_close(c, level, "ws close", code, why);
  timer_arm(c, WS_CLOSE_TIMEOUT);
  want_write(c);
}

static int ws_setup(cfd_ws *c);

/*
 * Starts a close we decide on: wslay queues the frame (sent by the next
 * pump) and stops reading, and the hub stops feeding the connection (it
 * must not cut it off either: the cut would drop the frame). No-op when
 * a close is already on its way.
 * A connection without a parser (idle: most of those a shutdown or a
 * budget cut closes) gets none for this: the next pump writes the
 * frame itself, outside any hub callback.
 */
static void ws_fail(cfd_ws *c, uint16_t code, const char *why) {
  if (c->ws == NULL) {
    if (c->close_why == NULL && c->state == WS_OPEN) {
      c->close_why = why;
      c->close_code = code;
      cf_client_shutdown(c->client);
      want_write(c);
    }
    return;
  }
  if (wslay_event_queue_close(c->ws, code, (const uint8_t *)why,
                              strlen(why)) != 0)
    return;
  c->close_why = why;
  wslay_event_shutdown_read(c->ws);
  cf_client_shutdown(c->client);
  want_write(c);
}

/*
 * Closes with a frame we write ourselves, for failures after which
 * wslay cannot send one with a code (it queues an empty close when its
 * frame parser rejects input). Returns -1 when c must be freed.
 */
static int close_frame_out(cfd_ws *c, uint16_t code, const char *why) {
  uint8_t f[CFD_FRAME_CLOSE_MAX];
  size_t n = cfd_frame_close(f, code, why, strlen(why));
  cf_client_shutdown(c->client);
  if (cf_client_send(c->client, f, n) != CF_OK)
    return -1;
  c->close_why = why;
  closing_begin(c, code);
  return 0;
}

/* After wslay refused input: its own (empty) close must not go out. */
static int ws_close_raw(cfd_ws *c, uint16_t code, const char *why) {
  wslay_event_shutdown_read(c->ws);
  wslay_event_shutdown_write(c->ws);
  return close_frame_out(c, code, why);
}

/*
 * Moves what wslay queued (pongs, pings, close frames) into the outbox
 * and notices when that included a close. Returns -1 when c must be
 * freed.
 */
static int ws_pump(cfd_ws *c) {
  if (c->ws == NULL) {
    if (c->state != WS_OPEN || c->close_why == NULL)
      return 0;
    return close_frame_out(c, c->close_code, c->close_why);
  }
  /*
   * wslay stops reading when it queues a close of its own (the answer
   * to the peer's, or a protocol error); ws_fail's closes do too. The
   * hub must know before the frame is queued: a budget cut-off would
   * drop it, and may come with the very send that queues it.
   */
  if (c->state == WS_OPEN && !wslay_event_get_read_enabled(c->ws))
    cf_client_shutdown(c->client);
  if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0)
    return -1;
  if (c->state == WS_OPEN && wslay_event_get_close_sent(c->ws))
    closing_begin(c, wslay_event_get_status_code_sent(c->ws));
  /* Closing, input is drained without it: the parser is no use now. */
  if (c->state != WS_OPEN && !wslay_event_want_write(c->ws))
    ws_drop_parser(c);
  return 0;
}

/*
 * An idle connection keeps no parser: wslay's context carries two 4 KiB
 * buffers, which would be most of the memory of an idle connection.
 * It is freed whenever the input stands between messages with nothing
 * parsed but not yet handled, and nothing waits to be written, and made
 * again when bytes arrive. Costs one allocation per read wakeup on a
 * connection that sends, nothing on one that only receives.
 */
static void ws_release(cfd_ws *c) {
  if (c->ws == NULL || c->state != WS_OPEN || c->close_why != NULL ||
      c->pre != NULL || !cfd_frame_scan_idle(&c->scan) ||
      wslay_event_want_write(c->ws))
    return;
  ws_drop_parser(c);
}

/* --- wslay callbacks --------------------------------------------------- */

/*
 * Bytes on their way to wslay: notice an oversized message as soon as
 * its header announces it, before any payload arrives. read_cb closes
 * once wslay has handled the frames before it, which came first.
 */
static ssize_t rx_scan(cfd_ws *c, const uint8_t *buf, ssize_t n) {
  uint32_t done = c->scan.done;
  int idle = cfd_frame_scan_idle(&c->scan);
  if (cfd_frame_scan_feed(&c->scan, buf, (size_t)n,
                          c->ctx->cfg->max_message_size))
    c->too_big = 1;
  /* Unfinished now, and begun in these bytes: its clock starts. */
  if (!cfd_frame_scan_idle(&c->scan) && (idle || c->scan.done != done))
    c->busy_since = c->last_rx;
  return n;
}

/* The next input: bytes that came with the HTTP head, else a read. */
static ssize_t rx_more(cfd_ws *c, wslay_event_context_ptr ws, uint8_t *buf,
                       size_t len) {
  ssize_t n;
  if (c->pre != NULL) {
    n = (ssize_t)(len < c->pre_len - c->pre_off ? len
                                                : c->pre_len - c->pre_off);
    memcpy(buf, c->pre + c->pre_off, (size_t)n);
    c->pre_off += (uint32_t)n;
    if (c->pre_off == c->pre_len) {
      free(c->pre);
      c->pre = NULL;
    }
    return rx_scan(c, buf, n);
  }
  if (c->rx_budget == 0) {
    /* More may be waiting; the level-triggered watcher comes back. */
    wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > c->rx_budget)
    len = c->rx_budget;
  do
    n = read(c->rio.fd, buf, len);
  while (n < 0 && errno == EINTR);
  if (n > 0) {
    c->rx_budget -= (uint32_t)n;
    c->last_rx = cfd_mono_now();
    return rx_scan(c, buf, n);
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  c->rx_gone = 1;
  wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
  return -1;
}

/*
 * wslay (1.1.1) checks the UTF-8 of a close reason chunk by chunk and
 * skips the first two bytes of every chunk, so a close frame split
 * across reads was judged wrongly either way. It gets each close frame
 * whole: an incomplete one at the end of the input waits in c->hold.
 */
static ssize_t recv_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  cfd_ws *c = ud;
  size_t held = c->hold_len, k;
  ssize_t n;
  (void)flags;
  if (c->too_big || len <= held) {
    /* Nothing after an oversized frame's header matters. (A hold always
     * fits: wslay asks for 4 KiB less a partial header.) */
    wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if ((n = rx_more(c, ws, buf + held, len - held)) < 0)
    return -1;
  if (held > 0)
    memcpy(buf, c->hold, held);
  n += (ssize_t)held;
  k = cfd_frame_scan_close_partial(&c->scan);
  if (k > (size_t)n)
    k = 0; /* (it started before: hand it on as it is) */
  if (k > 0 && c->hold == NULL &&
      (c->hold = malloc(CFD_FRAME_CLIENT_CLOSE_MAX)) == NULL)
    k = 0; /* no memory: wslay gets it in parts */
  if (k > 0)
    memcpy(c->hold, buf + n - k, k);
  c->hold_len = (uint8_t)k;
  if ((size_t)n == k) {
    wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  return n - (ssize_t)k;
}

/* Largest frame send_cb joins into one outbox entry: more than any
 * control frame (payload 125 at most: header and all, 127). */
#define WS_TX_JOIN_MAX 256u

/*
 * wslay's output is copied into the hub outbox whole, so wslay never
 * holds a partial frame and its frames stay in order with the hub's.
 * wslay hands over a frame's header (flagged WSLAY_MSG_MORE) and its
 * payload in two calls; they go into the outbox as one entry, since a
 * cut-off keeps a partly written head entry and drops the rest: a
 * header kept without its payload would make the next frame's bytes
 * its payload. The header waits in c->tx_head meanwhile: wslay sends
 * the payload in the same wslay_event_send(), and a failure there
 * frees c. Headers over 4 bytes (payloads from 64 KiB) and frames over
 * WS_TX_JOIN_MAX go in two entries; only data frames are that big, and
 * wslay sends none here.
 */
static ssize_t send_cb(wslay_event_context_ptr ws, const uint8_t *data,
                       size_t len, int flags, void *ud) {
  cfd_ws *c = ud;
  uint8_t frame[WS_TX_JOIN_MAX];
  size_t held = c->tx_head_len, n = len;
  int rv = CF_OK;
  if ((flags & WSLAY_MSG_MORE) && held == 0 && len <= sizeof(c->tx_head)) {
    memcpy(c->tx_head, data, len);
    c->tx_head_len = (uint8_t)len;
    return (ssize_t)len;
  }
  c->tx_head_len = 0;
  if (held > 0 && len <= sizeof(frame) - held) {
    memcpy(frame, c->tx_head, held);
    memcpy(frame + held, data, len);
    data = frame;
    len += held;
  } else if (held > 0) {
    rv = cf_client_send(c->client, c->tx_head, held);
  }
  if (rv != CF_OK || cf_client_send(c->client, data, len) != CF_OK) {
    wslay_event_set_error(ws, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  want_write(c);
  return (ssize_t)n;
}

static void publish(cfd_ws *c, uint32_t flags, const uint8_t *msg,
                    size_t len) {
  cfd_ctx *ctx = c->ctx;
  double t0;
  int rv;
  ctx->metrics.messages_in++;
  ctx->metrics.bytes_in += len;
  t0 = cfd_mono_now();
  rv = cf_hub_publish(ctx->hub, c->room, c->room_len, flags, msg, len);
  cfd_metrics_fanout(&ctx->metrics, cfd_mono_now() - t0);
  /*
   * On error the message reached nobody, here or on other instances.
   * TOO_BIG can only be the queue's limit (the hub's is ours, checked
   * as frames arrive). Other queue errors are counted by the hub.
   */
  switch (rv) {
  case CF_ERR_TOO_BIG:
    ws_fail(c, 1009, "message too big");
    break;
  case CF_ERR_QUEUE_FULL:
    ws_fail(c, 1013, "try again later");
    break;
  case CF_ERR_NOMEM:
  case CF_ERR_INVALID:
  case CF_ERR_CALLBACK:
    ws_fail(c, 1011, "internal error");
    break;
  default:
    break;
  }
}

static void on_msg_cb(wslay_event_context_ptr ws,
                      const struct wslay_event_on_msg_recv_arg *arg,
                      void *ud) {
  cfd_ws *c = ud;
  (void)ws;
  /* Data after a close we queued is dropped. */
  if (c->state != WS_OPEN || c->close_why != NULL)
    return;
  if (arg->opcode == WSLAY_TEXT_FRAME) {
    if (!cfd_utf8_valid(arg->msg, arg->msg_length)) {
      ws_fail(c, 1007, "invalid utf-8");
      return;
    }
    publish(c, CF_MSG_TEXT, arg->msg, arg->msg_length);
  } else if (arg->opcode == WSLAY_BINARY_FRAME) {
    publish(c, CF_MSG_BINARY, arg->msg, arg->msg_length);
  }
}

/*
 * Every frame costs a token, control frames too: a ping flood is closed
 * here before its pongs pile up. Returns 1 when c is being closed.
 */
static int rate_check(cfd_ws *c) {
  const cfd_config *cfg = c->ctx->cfg;
  if (c->close_why != NULL)
    return 1;
  if (cfd_bucket_take(&c->rate, cfg->msg_rate, cfg->msg_burst, c->last_rx))
    return 0;
  c->ctx->metrics.ws_rate_limited++;
  ws_fail(c, 1008, "rate limit");
  return 1;
}

/*
 * wslay answers a close frame with a 1-byte payload (invalid: RFC 6455
 * 5.5.1) with an empty close; queue 1002 first so that one is sent.
 */
static void on_frame_start_cb(
    wslay_event_context_ptr ws,
    const struct wslay_event_on_frame_recv_start_arg *arg, void *ud) {
  cfd_ws *c = ud;
  (void)ws;
  if (rate_check(c))
    return;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE && arg->payload_length == 1)
    ws_fail(ud, 1002, "protocol error");
}

/* --- hub callbacks ----------------------------------------------------- */

static void hub_wake(cf_client *cl, void *ud) {
  (void)cl;
  want_write(ud);
}

/* May run inside any hub call, even this client's own publish: only
 * queue the close here; ws_flush sends it. */
static void hub_close(cf_client *cl, int reason, void *ud) {
  cfd_ws *c = ud;
  (void)cl;
  switch (reason) {
  case CF_CLOSE_SLOW:
    c->ctx->metrics.slow_disconnects++;
    ws_fail(c, 1008, "slow consumer");
    break;
  case CF_CLOSE_SHUTDOWN:
    ws_fail(c, 1001, "going away");
    break;
  default:
    /* CF_CLOSE_NOMEM and any reason a newer hub adds. */
    ws_fail(c, 1011, "internal error");
    break;
  }
}

/* --- I/O --------------------------------------------------------------- */

static void linger_begin(cfd_ws *c) {
  shutdown(c->rio.fd, SHUT_WR);
  c->state = WS_LINGER;
  timer_arm(c, WS_LINGER_TIMEOUT);
}

/* Input after our close: drop it, free on EOF. Returns -1 if freed. */
static int drain_input(cfd_ws *c) {
  uint8_t sink[4096];
  ssize_t n;
  int i;
  for (i = 0; i < 16; i++) {
    n = read(c->rio.fd, sink, sizeof(sink));
    if (n > 0)
      continue;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return 0;
    ws_free(c);
    return -1;
  }
  return 0;
}

static double next_deadline(const cfd_ws *c, double now);

/*
 * A read that ended inside a frame: make the timer fire by the frame
 * read timeout (it may be set for a later ping or idle check).
 */
static void frame_timer(cfd_ws *c) {
  struct ev_loop *loop = c->ctx->loop;
  double left;
  if (c->state != WS_OPEN || cfd_frame_scan_idle(&c->scan) ||
      c->ctx->cfg->frame_timeout <= 0)
    return;
  left = next_deadline(c, cfd_mono_now());
  if (left >= 0 && (!ev_is_active(&c->timer) ||
                    ev_timer_remaining(loop, &c->timer) > left))
    timer_arm(c, left);
}

static void read_cb(struct ev_loop *loop, ev_io *w, int revents) {
  cfd_ws *c = w->data;
  int rv;
  (void)loop;
  (void)revents;
  /* Input after a close we decided on is dropped, as wslay would. */
  if (c->state != WS_OPEN || (c->ws == NULL && c->close_why != NULL)) {
    drain_input(c);
    return;
  }
  if (c->ws == NULL && ws_setup(c) != 0) {
    log_close(c, CFD_LOG_WARN, "ws disconnect", 1006, "out of memory");
    ws_free(c);
    return;
  }
  c->rx_budget = WS_READ_BUDGET;
  rv = wslay_event_recv(c->ws);
  if (rv == 0 && c->too_big) {
    /* After the frames before the oversized one, unless one failed;
     * their pongs first: wslay drops those queued behind a close. */
    if (ws_pump(c) != 0) {
      ws_free(c);
      return;
    }
    ws_fail(c, 1009, "message too big");
  }
  if (rv != 0) {
    if (c->rx_gone) {
      log_close(c, CFD_LOG_DEBUG, "ws disconnect", 1006, "connection lost");
      ws_free(c);
      return;
    }
    /* Its frame parser refused the input (or memory ran out). */
    if (ws_close_raw(c, rv == WSLAY_ERR_NOMEM ? 1011 : 1002,
                     rv == WSLAY_ERR_NOMEM ? "internal error"
                                           : "protocol error") != 0)
      ws_free(c);
    return;
  }
  if (ws_pump(c) != 0) {
    ws_free(c);
    return;
  }
  ws_release(c);
  frame_timer(c);
}

/*
 * Writes the outbox until it is empty or the socket is full. Returns 1
 * when everything went out, 0 when the socket is full, -1 when c was
 * freed (the peer is gone).
 */
static int ws_write(cfd_ws *c) {
  struct iovec iov[WS_IOV_MAX];
  size_t want;
  ssize_t n;
  int cnt, i;
  for (;;) {
    cnt = cf_client_iov(c->client, iov, WS_IOV_MAX);
    if (cnt <= 0) /* (never negative for a valid client) */
      return 1;
    for (want = 0, i = 0; i < cnt; i++)
      want += iov[i].iov_len;
    n = writev(c->rio.fd, iov, cnt);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
      log_close(c, CFD_LOG_DEBUG, "ws disconnect", 1006, strerror(errno));
      ws_free(c);
      return -1;
    }
    cf_client_consume(c->client, (size_t)n);
    /* A short write means the socket buffer is full: trying again now
     * would only earn an EAGAIN. */
    if ((size_t)n < want)
      return 0;
  }
}

/*
 * Before a write: ends the write side of a lingering connection, moves
 * wslay's output to the outbox. Returns 1 when c may have something to
 * write, 0 when not, -1 when c was freed.
 */
static int flush_prep(cfd_ws *c) {
  if (c->state == WS_LINGER) {
    ev_io_stop(c->ctx->loop, &c->wio);
    return 0;
  }
  if (ws_pump(c) != 0) {
    ws_free(c);
    return -1;
  }
  return 1;
}

/* After a write (ws_write()'s rv >= 0): arms wio while the socket is
 * full, else stops it and goes on with what waited for the output. */
static void flush_done(cfd_ws *c, int rv) {
  struct ev_loop *loop = c->ctx->loop;
  if (rv == 0) {
    ev_io_start(loop, &c->wio);
    return;
  }
  ev_io_stop(loop, &c->wio);
  if (c->state == WS_CLOSING)
    linger_begin(c);
  /* Frames that came with the head wake no watcher; they are read once
   * the 101 is out. Read before, the messages they publish could fill
   * the outbox, and a slow-consumer cut-off drops every entry not yet
   * begun: the client got a close frame without a 101. */
  else if (c->pre != NULL)
    pre_due(c);
}

/* Writes what is left in c's outbox itself. Returns -1 when c was
 * freed. */
static int flush_direct(cfd_ws *c) {
  int rv = ws_write(c);
  if (rv < 0)
    return -1;
  flush_done(c, rv);
  return 0;
}

/*
 * Moves wslay's output to the outbox and writes it; arms wio when the
 * socket is full, stops it when the outbox is empty. Produces no new
 * output after its last write, so c can leave the dirty list after it.
 * Returns -1 when c was freed.
 */
static int ws_flush(cfd_ws *c) {
  int rv = flush_prep(c);
  if (rv > 0)
    rv = flush_direct(c);
  return rv < 0 ? -1 : 0;
}

/*
 * Takes the outcome of one batched write (cfd_batch.h), whose bytes
 * were already consumed from the outbox.
 */
static void flush_result(cfd_ws *c, ssize_t r, size_t want) {
  if (r == CFD_BATCH_NOT_RUN || r == -EINTR) {
    flush_direct(c);
  } else if (r == -EAGAIN || r == -EWOULDBLOCK) {
    flush_done(c, 0);
  } else if (r < 0) {
    log_close(c, CFD_LOG_DEBUG, "ws disconnect", 1006, strerror((int)-r));
    ws_free(c);
  } else if ((size_t)r < want) {
    flush_done(c, 0); /* the socket is full */
  } else {
    flush_direct(c);  /* the rest of the outbox, often nothing */
  }
}

/*
 * Pumps every connection on the dirty list not pumped yet in this flush
 * (flush_prep), leaving those with output on it. Pumping may call into
 * the hub, and the hub may then cut another connection off and queue
 * its close (want_write): a connection added, or given output after its
 * pump, is pumped again (want_write clears its pump_gen and counts
 * ctx->repump), until a pass pumps nothing. A connection is cut off at
 * most once, so this ends. ctx->pumped records the count it ended at.
 */
static void pump_dirty(cfd_ctx *ctx) {
  cfd_ws *c, *next;
  unsigned seen;
  do {
    seen = ctx->repump;
    for (c = ctx->ws_dirty; c != NULL; c = next) {
      /* Pumping c frees no other connection (a cut only queues its
       * close) and links new ones at the head, so next stays valid. */
      next = c->dirty_next;
      if (c->pump_gen == ctx->flush_gen)
        continue;
      c->pump_gen = ctx->flush_gen;
      if (flush_prep(c) == 0)
        dirty_del(c);
    }
  } while (ctx->repump != seen);
  ctx->pumped = seen;
}

/*
 * The dirty list through io_uring, CFD_BATCH_MAX connections per system
 * call. Three steps, so that no outbox changes under a queued write:
 * the connections are pumped (the only step that calls into the hub,
 * which may cut connections off); then up to CFD_BATCH_MAX take their
 * iovecs and leave the list, calling nothing; the batch runs. Its
 * results are taken in two passes: every outbox consumes what was
 * written (pure bookkeeping), then the actions that may free a
 * connection or write to it directly. Those give no connection output
 * to pump, so the list is pumped once per flush, unless ctx->repump
 * says otherwise.
 */
static void flush_batched(cfd_ctx *ctx, cfd_batch *b) {
  struct iovec iov[CFD_BATCH_IOV];
  unsigned i, n;
  int cnt, stale = 1;
  cfd_ws *c;
  ctx->flush_gen = ctx->flush_gen + 1 != 0 ? ctx->flush_gen + 1 : 1;
  while (ctx->ws_dirty != NULL && !cfd_batch_dead(b)) {
    if (stale || ctx->repump != ctx->pumped)
      pump_dirty(ctx);
    stale = 0;
    while ((c = ctx->ws_dirty) != NULL &&
           cfd_batch_count(b) < CFD_BATCH_MAX) {
      if (c->pump_gen != ctx->flush_gen) {
        stale = 1; /* not pumped yet: next round */
        break;
      }
      cnt = cf_client_iov(c->client, iov, CFD_BATCH_IOV);
      if (cnt > 0 && cfd_batch_add(b, c->rio.fd, iov, cnt, c) < 0)
        break; /* (cannot fail here: count and dead were checked) */
      dirty_del(c);
      if (cnt <= 0)
        flush_done(c, 1);
    }
    n = cfd_batch_run(b);
    if (cfd_batch_dead(b))
      cfd_log(CFD_LOG_WARN, "client writes", "io_uring", "failed", "now",
              "writev", NULL);
    for (i = 0; i < n; i++) {
      ssize_t r = cfd_batch_result(b, i);
      if (r > 0) {
        c = cfd_batch_owner(b, i);
        cf_client_consume(c->client, (size_t)r);
      }
    }
    for (i = 0; i < n; i++)
      flush_result(cfd_batch_owner(b, i), cfd_batch_result(b, i),
                   cfd_batch_want(b, i));
  }
}

/*
 * Once per loop iteration. c stays on the list while it is flushed, so
 * output it produces meanwhile (wslay frames) does not queue it twice;
 * it leaves after, or when ws_free() unlinks it. Each pass removes the
 * head, so the loop ends.
 */
static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents) {
  cfd_ctx *ctx = w->data;
  cfd_ws *c;
  (void)revents;
  do {
    if (ctx->batch != NULL)
      flush_batched(ctx, ctx->batch);
    while ((c = ctx->ws_dirty) != NULL) {
      if (ws_flush(c) == 0)
        dirty_del(c);
    }
    /* Early frames (pre_due): each connection's once, so this ends. */
    while ((c = ctx->ws_pre) != NULL) {
      pre_del(c);
      read_cb(loop, &c->rio, EV_READ);
    }
  } while (ctx->ws_dirty != NULL);
}

static void write_cb(struct ev_loop *loop, ev_io *w, int revents) {
  cfd_ws *c = w->data;
  (void)loop;
  (void)revents;
  ws_flush(c);
}

/* Seconds left before the frame read timeout, or -1 (cfd_limits.h). */
static double frame_left(const cfd_ws *c, double now) {
  return cfd_frame_timeout_left(!cfd_frame_scan_idle(&c->scan), c->busy_since,
                                c->ctx->cfg->frame_timeout, now);
}

static double next_deadline(const cfd_ws *c, double now) {
  const cfd_config *cfg = c->ctx->cfg;
  double at = -1, t = frame_left(c, now);
  if (t >= 0)
    at = now + t;
  if (cfg->idle_timeout > 0 && (at < 0 || c->last_rx + cfg->idle_timeout < at))
    at = c->last_rx + cfg->idle_timeout;
  if (cfg->ping_interval > 0) {
    t = c->last_ping + cfg->ping_interval;
    if (at < 0 || t < at)
      at = t;
  }
  if (at < 0)
    return -1;
  return at > now ? at - now : 0.;
}

/*
 * libev's timers count from the start of the loop iteration they were
 * armed in, our deadlines from when the clock was read: a timer can
 * come that much early. Deadlines within WS_TIMER_SLACK count as due,
 * or it would come back at once for the rest.
 */
#define WS_TIMER_SLACK 0.01

static void keepalive(cfd_ws *c) {
  const cfd_config *cfg = c->ctx->cfg;
  double now = cfd_mono_now(), due = now + WS_TIMER_SLACK, after;
  if (frame_left(c, due) == 0) {
    c->ctx->metrics.ws_frame_timeouts++;
    ws_fail(c, 1008, "frame timeout");
  } else if (cfg->idle_timeout > 0 && due - c->last_rx >= cfg->idle_timeout) {
    ws_fail(c, 1000, "idle timeout");
  } else if (cfg->ping_interval > 0 &&
             due - c->last_ping >= cfg->ping_interval) {
    /* Written here, not by wslay: an idle connection has no context.
     * wslay's own frames go out whole, so this one cannot split one. */
    static const uint8_t ping[2] = {0x80u | 0x9u, 0};
    if (cf_client_send(c->client, ping, sizeof(ping)) != CF_OK) {
      ws_free(c);
      return;
    }
    want_write(c);
    c->last_ping = now;
  }
  if (ws_pump(c) != 0) {
    ws_free(c);
    return;
  }
  if (c->state == WS_OPEN && (after = next_deadline(c, now)) >= 0)
    timer_arm(c, after);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  cfd_ws *c = w->data;
  (void)loop;
  (void)revents;
  if (c->state == WS_OPEN) {
    keepalive(c);
    return;
  }
  if (c->state == WS_CLOSING)
    log_close(c, CFD_LOG_DEBUG, "ws close timeout", 1006,
              "close frame not written in time");
  ws_free(c);
}

/* --- start / teardown -------------------------------------------------- */

static int ws_setup(cfd_ws *c) {
  static const struct wslay_event_callbacks cbs = {
      recv_cb, send_cb, NULL, on_frame_start_cb, NULL, NULL, on_msg_cb};
  if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0)
    return -1;
  c->ctx->n_parsers++;
  wslay_event_config_set_max_recv_msg_length(c->ws,
                                             c->ctx->cfg->max_message_size);
  wslay_event_config_set_allowed_rsv_bits(c->ws, WSLAY_RSV_NONE);
  return 0;
}

/* Returns 0 or the HTTP status for the failure; c is then unchanged
 * apart from what ws_abort() releases. */
static int ws_attach(cfd_ws *c, const cfd_route *rt) {
  static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, hub_wake,
                                    hub_close};
  char head[256];
  int n, rv;
  if (cf_client_new(&c->client, c->ctx->hub, &ops, c) != CF_OK)
    return 500;
  /* The 101 goes in first: everything after it is ordered behind it. */
  n = cfd_http_upgrade_head(head, sizeof(head), rt->accept);
  if (n < 0 || cf_client_send(c->client, head, (size_t)n) != CF_OK)
    return 500;
  rv = cf_client_join(c->client, rt->room, rt->room_len);
  if (rv == CF_ERR_LIMIT)
    return 503;
  return rv == CF_OK ? 0 : 500;
}

static void ws_abort(cfd_ws *c) {
  dirty_del(c);
  ev_io_stop(c->ctx->loop, &c->wio);
  cf_client_free(c->client);
  ws_drop_parser(c); /* a hub callback may have made one */
  free(c->pre);
  free(c);
}

static void ws_link(cfd_ws *c) {
  cfd_ctx *ctx = c->ctx;
  c->next = ctx->ws_head;
  if (ctx->ws_head)
    ctx->ws_head->prev = c;
  ctx->ws_head = c;
  ctx->n_ws++;
  ctx->metrics.connections = ctx->n_ws;
}

int cfd_ws_start(cfd_ctx *ctx, int fd, const cfd_route *rt,
                 const char *pre, size_t pre_len, const cfd_peer *counted) {
  cfd_ws *c = calloc(1, sizeof(*c));
  int status;
  if (c == NULL)
    return 500;
  c->ctx = ctx;
  /* Watchers first: the hub may wake us while attaching. */
  ev_io_init(&c->rio, read_cb, fd, EV_READ);
  c->rio.data = c;
  ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
  c->wio.data = c;
  ev_timer_init(&c->timer, timer_cb, 0., 0.);
  c->timer.data = c;
  memcpy(c->room, rt->room, rt->room_len);
  c->room_len = (uint8_t)rt->room_len;
  if (counted != NULL)
    c->peer = *counted;
  else
    cfd_peer_get(fd, &c->peer);
  if (pre_len > 0) {
    c->pre = malloc(pre_len);
    if (c->pre == NULL) {
      free(c);
      return 500;
    }
    memcpy(c->pre, pre, pre_len);
    c->pre_len = (uint32_t)pre_len;
  }
  if ((status = ws_attach(c, rt)) != 0) {
    ws_abort(c);
    return status;
  }
  c->ip_held = counted != NULL;
  cfd_batch_fd_add(ctx->batch, fd);
  ws_link(c);
  c->last_rx = c->last_ping = cfd_mono_now();
  ev_io_start(ctx->loop, &c->rio);
  want_write(c); /* the 101 and the history */
  if (next_deadline(c, c->last_rx) >= 0)
    timer_arm(c, next_deadline(c, c->last_rx));
  return 0;
}

void cfd_ws_free_all(cfd_ctx *ctx) {
  while (ctx->ws_head != NULL)
    ws_free(ctx->ws_head);
}
