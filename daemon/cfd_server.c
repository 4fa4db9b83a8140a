#include "cfd_server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cfd_clock.h"
#include "cfd_http.h"
#include "cfd_limits.h"
#include "cfd_listen.h"
#include "cfd_log.h"
#include "cfd_peer.h"
#include "cfd_ws.h"

extern const char cfd_page_index[];
extern const size_t cfd_page_index_len;

#define WRITE_TIMEOUT 10.0   /* seconds to take a whole answer */
#define LINGER_TIMEOUT 2.0   /* seconds to wait for the peer's EOF */
#define MAX_REJECTING 64     /* 503/429 answers in flight over limits */
/* Retry-After of a 429 for too many open connections from an address:
 * a guess, long enough that hammering does not pay. */
#define IP_CONNS_RETRY 5

/*
 * What a connection is doing. Every answer ends the same way: write it,
 * shutdown(SHUT_WR), then read and drop until the peer closes, so the
 * peer reads the whole answer instead of a reset caused by unread
 * request bytes still in our receive buffer.
 */
enum { H_READ, H_WRITE, H_LINGER };

typedef struct hconn {
  struct hconn *prev, *next;
  cfd_server *srv;
  ev_io io;
  ev_timer timer;    /* header, write or linger deadline */
  char *buf;         /* CFD_HTTP_HEAD_MAX: the request head, then the
                        answer head; NULL for an over-limit 503 */
  size_t len;        /* request bytes in buf */
  struct iovec out[2]; /* answer still to write: head, body */
  char *owned;       /* malloc'd body (metrics), freed with the conn */
  int state;
  int counted;       /* counts towards --max-connections */
  int ip_held;       /* counted in the per-address table */
  cfd_peer peer;     /* for the per-address table */
} hconn;

struct cfd_server {
  cfd_ctx *ctx;
  cfd_listener *listener; /* NULL once stopped */
  unsigned port;          /* bound port */
  hconn *conns;           /* every HTTP-phase connection */
  unsigned n_rejecting;   /* over-limit 503/429 answers in flight */
  cfd_limits *limits;     /* per-address limits, also ctx->limits */
  char ans_429[2][256];   /* CFD_REJECT_IP_*: fixed 429 answers */
};

static const char reject_503[] =
    "HTTP/1.1 503 Service Unavailable\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 24\r\n"
    "Connection: close\r\n"
    "Cache-Control: no-store\r\n"
    "Retry-After: 1\r\n"
    "\r\n"
    "503 Service Unavailable\n";

/* --- connection lifetime ---------------------------------------------- */

static void conn_unlink(hconn *h) {
  cfd_server *s = h->srv;
  if (h->prev)
    h->prev->next = h->next;
  else
    s->conns = h->next;
  if (h->next)
    h->next->prev = h->prev;
  if (h->counted)
    s->ctx->n_http--;
  else
    s->n_rejecting--;
}

/* Stops the watchers and frees h; closes the fd unless keep_fd. */
static void conn_free(hconn *h, int keep_fd) {
  struct ev_loop *loop = h->srv->ctx->loop;
  ev_io_stop(loop, &h->io);
  ev_timer_stop(loop, &h->timer);
  if (!keep_fd)
    close(h->io.fd);
  /* Handed over, the WebSocket connection holds the count (ip_held
   * was cleared). */
  if (h->ip_held)
    cfd_limits_ip_close(h->srv->limits, &h->peer);
  conn_unlink(h);
  free(h->owned);
  free(h->buf);
  free(h);
}

static void timer_arm(hconn *h, double after) {
  struct ev_loop *loop = h->srv->ctx->loop;
  ev_timer_stop(loop, &h->timer);
  ev_timer_set(&h->timer, after, 0.);
  ev_timer_start(loop, &h->timer);
}

static void io_watch(hconn *h, int events) {
  struct ev_loop *loop = h->srv->ctx->loop;
  if (ev_is_active(&h->io) && h->io.events == events)
    return;
  ev_io_stop(loop, &h->io);
  ev_io_set(&h->io, h->io.fd, events);
  ev_io_start(loop, &h->io);
}

/* --- writing an answer ------------------------------------------------- */

static void conn_linger(hconn *h) {
  shutdown(h->io.fd, SHUT_WR);
  h->state = H_LINGER;
  io_watch(h, EV_READ);
  timer_arm(h, LINGER_TIMEOUT);
}

/* Writes what it can; returns -1 when h was freed. */
static int conn_flush(hconn *h) {
  ssize_t n;
  int i = h->out[0].iov_len == 0 ? 1 : 0;
  while (h->out[1].iov_len > 0 || h->out[0].iov_len > 0) {
    n = writev(h->io.fd, h->out + i, 2 - i);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        io_watch(h, EV_WRITE);
        return 0;
      }
      conn_free(h, 0);
      return -1;
    }
    for (; i < 2 && n > 0; i++) {
      size_t k = (size_t)n < h->out[i].iov_len ? (size_t)n : h->out[i].iov_len;
      h->out[i].iov_base = (char *)h->out[i].iov_base + k;
      h->out[i].iov_len -= k;
      n -= (ssize_t)k;
      if (h->out[i].iov_len > 0)
        break;
    }
  }
  conn_linger(h);
  return 0;
}

static void conn_send(hconn *h, const void *head, size_t head_len,
                      const void *body, size_t body_len) {
  h->out[0].iov_base = (void *)head;
  h->out[0].iov_len = head_len;
  h->out[1].iov_base = (void *)body;
  h->out[1].iov_len = body_len;
  h->state = H_WRITE;
  timer_arm(h, WRITE_TIMEOUT);
  /* Usually the whole answer fits in the socket buffer right away. */
  conn_flush(h);
}

/*
 * Answers with status, type and body (body_len bytes; body may point
 * into nothing when head_only). The head is written into h->buf, so
 * anything parsed from the request is dead after this call starts.
 */
static void conn_answer(hconn *h, int status, const char *ctype,
                        const char *body, size_t body_len,
                        const char *extra, int head_only) {
  int n = cfd_http_head(h->buf, CFD_HTTP_HEAD_MAX, status, ctype, body_len,
                        extra);
  cfd_metrics_http(&h->srv->ctx->metrics, status);
  if (n < 0) {
    conn_free(h, 0);
    return;
  }
  conn_send(h, h->buf, (size_t)n, body, head_only ? 0 : body_len);
}

/* A short text body for an error answer, built after the head. */
static void conn_error(hconn *h, int status, const char *extra,
                       int head_only) {
  char body[64];
  int n = snprintf(body, sizeof(body), "%d %s\n", status,
                   cfd_http_reason(status));
  int hl;
  cfd_metrics_http(&h->srv->ctx->metrics, status);
  hl = cfd_http_head(h->buf, CFD_HTTP_HEAD_MAX, status,
                     "text/plain; charset=utf-8", (size_t)n, extra);
  if (hl < 0 || (size_t)hl + (size_t)n > CFD_HTTP_HEAD_MAX) {
    conn_free(h, 0);
    return;
  }
  memcpy(h->buf + hl, body, (size_t)n);
  conn_send(h, h->buf, (size_t)hl + (head_only ? 0 : (size_t)n), NULL, 0);
}

/* --- logging ----------------------------------------------------------- */

static void log_answer(hconn *h, int status, const char *why,
                       const cfd_http_request *req) {
  int level = status >= 500   ? CFD_LOG_WARN
              : status >= 400 ? CFD_LOG_INFO
                              : CFD_LOG_DEBUG;
  char peer[64], st[8], method[16], target[256];
  if (!cfd_log_enabled(level))
    return;
  cfd_peer_str(h->io.fd, peer, sizeof(peer));
  snprintf(st, sizeof(st), "%d", status);
  if (req == NULL) {
    cfd_log(level, "http", "peer", peer, "status", st, "reason", why, NULL);
    return;
  }
  snprintf(method, sizeof(method), "%.*s", (int)req->method_len,
           req->method);
  snprintf(target, sizeof(target), "%.*s", (int)req->target_len,
           req->target);
  cfd_log(level, "http", "peer", peer, "status", st, "method", method,
          "path", target, "reason", why, NULL);
}

/* --- the endpoints ----------------------------------------------------- */

static int queue_down(const cfd_ctx *ctx) {
  return ctx->queue != NULL &&
         cf_queue_state_get(ctx->queue) == CF_QUEUE_DOWN;
}

static void serve_health(hconn *h, int head_only) {
  cfd_ctx *ctx = h->srv->ctx;
  if (ctx->stopping) {
    static const char b[] = "shutting down\n";
    conn_answer(h, 503, "text/plain; charset=utf-8", b, sizeof(b) - 1,
                NULL, head_only);
  } else if (queue_down(ctx)) {
    static const char b[] = "queue down\n";
    conn_answer(h, 503, "text/plain; charset=utf-8", b, sizeof(b) - 1,
                NULL, head_only);
  } else {
    conn_answer(h, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL,
                head_only);
  }
}

static void serve_metrics(hconn *h, int head_only) {
  cfd_ctx *ctx = h->srv->ctx;
  cfd_metrics_ext ext;
  size_t len = 0;
  cfd_metrics_collect(&ext, ctx->hub, ctx->queue);
  ext.ip_entries = cfd_limits_entries(h->srv->limits);
  ext.ip_untracked = cfd_limits_untracked(h->srv->limits);
  h->owned = cfd_metrics_render(&ctx->metrics, &ext, &len);
  if (h->owned == NULL) {
    log_answer(h, 500, "out of memory", NULL);
    conn_error(h, 500, NULL, head_only);
    return;
  }
  conn_answer(h, 200, "text/plain; version=0.0.4; charset=utf-8", h->owned,
              len, NULL, head_only);
}

static void serve_upgrade(hconn *h, const cfd_route *rt, size_t head_len) {
  cfd_server *s = h->srv;
  int fd = h->io.fd, status;
  if (s->ctx->stopping) {
    log_answer(h, 503, "shutting down", NULL);
    conn_error(h, 503, "Retry-After: 1\r\n", 0);
    return;
  }
  /* The address's count, if any, goes with fd and the very peer it was
   * taken for: the WebSocket connection releases it. */
  status = cfd_ws_start(s->ctx, fd, rt, h->buf + head_len,
                        h->len - head_len, h->ip_held ? &h->peer : NULL);
  if (status != 0) {
    log_answer(h, status, "cannot start client", NULL);
    conn_error(h, status, NULL, 0);
    return;
  }
  cfd_metrics_http(&s->ctx->metrics, 101);
  h->ip_held = 0;
  conn_free(h, 1);
}

static const char *route_why(int status) {
  switch (status) {
  case 400:
    return "bad request";
  case 403:
    return "origin not allowed";
  case 404:
    return "unknown path";
  case 405:
    return "method not allowed";
  case 426:
    return "not an upgrade";
  default:
    return "internal error";
  }
}

static int is_head(const cfd_http_request *req) {
  return req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
}

static void route(hconn *h, const cfd_http_request *req, size_t head_len) {
  const cfd_config *cfg = h->srv->ctx->cfg;
  cfd_origin_policy pol;
  cfd_route rt;
  int status;
  pol.allowed = cfg->allowed_origins;
  pol.n_allowed = cfg->n_allowed_origins;
  memset(&rt, 0, sizeof(rt));
  status = cfd_http_route(req, &pol, &rt);
  if (status != 0) {
    log_answer(h, status, route_why(status), req);
    conn_error(h, status, rt.extra, is_head(req));
    return;
  }
  log_answer(h, rt.kind == CFD_ROUTE_WS ? 101 : 200, "ok", req);
  switch (rt.kind) {
  case CFD_ROUTE_PAGE:
    conn_answer(h, 200, "text/html; charset=utf-8", cfd_page_index,
                cfd_page_index_len, NULL, rt.head_only);
    break;
  case CFD_ROUTE_HEALTH:
    serve_health(h, rt.head_only);
    break;
  case CFD_ROUTE_METRICS:
    serve_metrics(h, rt.head_only);
    break;
  case CFD_ROUTE_WS:
    serve_upgrade(h, &rt, head_len);
    break;
  default:
    conn_error(h, 500, NULL, 0);
  }
}

/* --- reading the request head ------------------------------------------ */

static void head_parse(hconn *h, int full) {
  cfd_http_request req;
  int rv = cfd_http_parse(h->buf, h->len, &req);
  if (rv > 0) {
    route(h, &req, (size_t)rv);
  } else if (rv == CFD_HTTP_TOO_MANY_HEADERS) {
    log_answer(h, 431, "too many headers", NULL);
    conn_error(h, 431, NULL, 0);
  } else if (rv == CFD_HTTP_BAD) {
    log_answer(h, 400, "malformed request", NULL);
    conn_error(h, 400, NULL, 0);
  } else if (full) {
    int st = cfd_http_overflow_status(h->buf, h->len);
    log_answer(h, st, "request head too large", NULL);
    conn_error(h, st, NULL, 0);
  }
}

static void head_read(hconn *h) {
  ssize_t n;
  size_t old = h->len;
  for (;;) {
    n = read(h->io.fd, h->buf + h->len, CFD_HTTP_HEAD_MAX - h->len);
    if (n > 0)
      break;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    conn_free(h, 0); /* EOF or error before a whole head: nobody to answer */
    return;
  }
  h->len += (size_t)n;
  /* The parse restarts from the top: skip it until a line ends. */
  if (h->len < CFD_HTTP_HEAD_MAX && !memchr(h->buf + old, '\n', (size_t)n))
    return;
  head_parse(h, h->len == CFD_HTTP_HEAD_MAX);
}

static void linger_read(hconn *h) {
  char sink[4096];
  ssize_t n;
  int i;
  for (i = 0; i < 16; i++) {
    n = read(h->io.fd, sink, sizeof(sink));
    if (n > 0)
      continue;
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    conn_free(h, 0);
    return;
  }
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents) {
  hconn *h = w->data;
  (void)loop;
  (void)revents;
  if (h->state == H_READ)
    head_read(h);
  else if (h->state == H_WRITE)
    conn_flush(h);
  else
    linger_read(h);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  hconn *h = w->data;
  (void)loop;
  (void)revents;
  if (h->state != H_READ) {
    conn_free(h, 0);
    return;
  }
  log_answer(h, 408, "header timeout", NULL);
  conn_error(h, 408, NULL, 0);
}

/* --- accepting --------------------------------------------------------- */

static hconn *conn_new(cfd_server *s, int fd, int counted) {
  hconn *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return NULL;
  if (counted) {
    h->buf = malloc(CFD_HTTP_HEAD_MAX);
    if (h->buf == NULL) {
      free(h);
      return NULL;
    }
  }
  h->srv = s;
  h->counted = counted;
  ev_io_init(&h->io, conn_io_cb, fd, EV_READ);
  h->io.data = h;
  ev_timer_init(&h->timer, conn_timer_cb, 0., 0.);
  h->timer.data = h;
  h->next = s->conns;
  if (s->conns)
    s->conns->prev = h;
  s->conns = h;
  if (counted)
    s->ctx->n_http++;
  else
    s->n_rejecting++;
  return h;
}

/* Over --max-connections: a fixed 503, then close. */
static void conn_reject(cfd_server *s, int fd) {
  hconn *h;
  char peer[64];
  if (cfd_log_enabled(CFD_LOG_WARN)) {
    cfd_peer_str(fd, peer, sizeof(peer));
    cfd_log(CFD_LOG_WARN, "http", "peer", peer, "status", "503", "reason",
            "max connections reached", NULL);
  }
  /* Past a few pending answers a flood just gets closed. */
  if (s->n_rejecting >= MAX_REJECTING || (h = conn_new(s, fd, 0)) == NULL) {
    close(fd);
    return;
  }
  /* http_requests_total counts answers written, not bare closes. */
  cfd_metrics_http(&s->ctx->metrics, 503);
  conn_send(h, reject_503, sizeof(reject_503) - 1, NULL, 0);
}

/* Refused by a per-address limit: a fixed 429, then close. */
static void conn_reject_ip(cfd_server *s, int fd, const cfd_peer *p,
                           int why) {
  const char *a = s->ans_429[why];
  hconn *h;
  char peer[64];
  s->ctx->metrics.limits_rejected[why]++;
  if (cfd_log_enabled(CFD_LOG_INFO)) {
    cfd_peer_format(p, peer, sizeof(peer));
    cfd_log(CFD_LOG_INFO, "http", "peer", peer, "status", "429", "reason",
            why == CFD_REJECT_IP_RATE ? "connection rate per address"
                                      : "connections per address",
            NULL);
  }
  if (s->n_rejecting >= MAX_REJECTING || (h = conn_new(s, fd, 0)) == NULL) {
    close(fd);
    return;
  }
  cfd_metrics_http(&s->ctx->metrics, 429);
  conn_send(h, a, strlen(a), NULL, 0);
}

/* Per-address limits: 0 admitted (*held: counted), -1 refused. */
static int conn_admit(cfd_server *s, int fd, cfd_peer *p, int *held) {
  int rv;
  cfd_peer_get(fd, p);
  rv = cfd_limits_ip_open(s->limits, p, cfd_mono_now(), NULL);
  *held = rv == CFD_IP_OK;
  if (rv >= 0)
    return 0;
  conn_reject_ip(s, fd, p, rv == CFD_IP_RATE ? CFD_REJECT_IP_RATE
                                             : CFD_REJECT_IP_CONNS);
  return -1;
}

static void conn_accepted(int fd, void *ud) {
  cfd_server *s = ud;
  cfd_ctx *ctx = s->ctx;
  cfd_peer peer;
  int held;
  hconn *h;
  if (ctx->n_http + ctx->n_ws >= ctx->cfg->max_connections) {
    conn_reject(s, fd);
    return;
  }
  if (conn_admit(s, fd, &peer, &held) != 0)
    return;
  h = conn_new(s, fd, 1);
  if (h == NULL) {
    if (held)
      cfd_limits_ip_close(s->limits, &peer);
    close(fd);
    return;
  }
  h->peer = peer;
  h->ip_held = held;
  ev_io_start(ctx->loop, &h->io);
  if (ctx->cfg->header_timeout > 0)
    timer_arm(h, ctx->cfg->header_timeout);
}

/* --- the server --------------------------------------------------------- */

/*
 * The 429 answers, fixed so a refusal costs no formatting. The rate is
 * a whole number of connections a second, so a refused address has a
 * token back within one second: Retry-After: 1.
 */
static void answers_init(cfd_server *s) {
  static const char fmt[] =
      "HTTP/1.1 429 Too Many Requests\r\n"
      "Content-Type: text/plain; charset=utf-8\r\n"
      "Content-Length: 22\r\n"
      "Connection: close\r\n"
      "Cache-Control: no-store\r\n"
      "Retry-After: %u\r\n"
      "\r\n"
      "429 Too Many Requests\n";
  snprintf(s->ans_429[CFD_REJECT_IP_CONNS], sizeof(s->ans_429[0]), fmt,
           (unsigned)IP_CONNS_RETRY);
  snprintf(s->ans_429[CFD_REJECT_IP_RATE], sizeof(s->ans_429[0]), fmt, 1u);
}

static cfd_limits *limits_new(const cfd_config *cfg) {
  cfd_limits_config lc;
  memset(&lc, 0, sizeof(lc));
  lc.per_ip = cfg->max_conns_per_ip;
  lc.rate = cfg->conn_rate;
  lc.burst = cfg->conn_burst;
  lc.loopback = cfg->limit_loopback;
  /* Twice the connections that can be open keeps windows rarely full. */
  lc.slots = (size_t)cfg->max_connections * 2;
  if (getrandom(lc.seed, sizeof(lc.seed), GRND_NONBLOCK) !=
      (ssize_t)sizeof(lc.seed)) {
    lc.seed[0] = (uint64_t)getpid() * 0x9e3779b97f4a7c15u;
    lc.seed[1] = (uint64_t)(uintptr_t)&lc;
  }
  return cfd_limits_new(&lc);
}

int cfd_server_new(cfd_server **out, cfd_ctx *ctx) {
  cfd_server *s = calloc(1, sizeof(*s));
  *out = NULL;
  if (s == NULL || (s->limits = limits_new(ctx->cfg)) == NULL) {
    free(s);
    cfd_log(CFD_LOG_ERROR, "out of memory", NULL);
    return -1;
  }
  s->ctx = ctx;
  answers_init(s);
  if (cfd_listener_new(&s->listener, ctx->loop, ctx->cfg->listen_host,
                       ctx->cfg->listen_port, conn_accepted, s) != 0) {
    cfd_limits_free(s->limits);
    free(s);
    return -1;
  }
  ctx->limits = s->limits;
  s->port = cfd_listener_port(s->listener);
  *out = s;
  return 0;
}

unsigned cfd_server_port(const cfd_server *s) { return s->port; }

void cfd_server_stop(cfd_server *s) {
  hconn *h, *next;
  if (s == NULL || s->listener == NULL)
    return;
  cfd_listener_free(s->listener);
  s->listener = NULL;
  for (h = s->conns; h != NULL; h = next) {
    next = h->next;
    if (h->state == H_READ && h->len == 0)
      conn_free(h, 0);
  }
}

void cfd_server_free(cfd_server *s) {
  if (s == NULL)
    return;
  cfd_server_stop(s);
  while (s->conns != NULL)
    conn_free(s->conns, 0);
  /* WebSocket connections may outlive the server: they see NULL. */
  s->ctx->limits = NULL;
  cfd_limits_free(s->limits);
  free(s);
}
