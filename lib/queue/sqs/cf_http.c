/*
 * HTTP client on curl's multi-socket interface. See cf_http.h for the
 * contract; this file explains the choices the header does not.
 *
 * curl reports socket interest changes (CURLMOPT_SOCKETFUNCTION) and one
 * timeout (CURLMOPT_TIMERFUNCTION). Each socket gets a cf_loop watcher,
 * kept with curl_multi_assign() so the next change finds it; the timeout
 * maps onto one loop timer. Readiness goes back through
 * curl_multi_socket_action(), then finished transfers are collected from
 * curl_multi_info_read() and their callbacks run.
 *
 * Callbacks never run inside curl: curl forbids calling the multi API
 * from its own callbacks, and our users call cf__http_send() or
 * cf__http_cancel() from theirs. Completions happen only after
 * socket_action() returned, and failures noticed inside a curl callback
 * (a watcher we could not allocate) are parked and completed from a
 * second timer.
 *
 * Re-entrancy: while a dispatch (io, timer) runs, cf__http_free() only
 * sets a flag; the dispatch stops delivering and frees on its way out,
 * as hiredis does with REDIS_IN_CALLBACK / REDIS_FREEING.
 */
#include "cf_http.h"

#include <stdalign.h>
#include <string.h>

#include <curl/curl.h>

#include "cf_clock.h"
#include "cf_list.h"
#include "cf_mem.h"

#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_CONNECT_TIMEOUT 5.0
/* Easy handles kept for reuse; more are cleaned up. */
#define POOL_MAX 8
/* First libcurl whose reused easy handles forget old headers (8.1.0). */
#define CURL_FRESH_HEADERS 0x080100
/* Idle TCP seconds before keepalive probes start, and between probes. */
#define KEEPIDLE 60L
#define KEEPINTVL 20L
/* Longest timeout accepted, seconds (curl takes a long of ms). */
#define TIMEOUT_MAX (24.0 * 3600.0)

/* One socket curl asked us to watch. */
typedef struct http_sock {
  cf_list link;   /* in cf__http.socks */
  curl_socket_t fd;
  void *io;       /* loop watcher */
} http_sock;

struct cf__http_xfer {
  cf_list link;         /* in cf__http.xfers */
  cf__http *h;
  CURL *easy;
  struct curl_slist *hdrs;
  cf__http_cb cb;
  void *user_data;
  char *body;           /* response bytes, NUL-terminated when len > 0 */
  size_t len;
  size_t cap;
  size_t max_body;      /* response bytes kept at most */
  int fail;             /* error decided before curl finished, or 0 */
  int too_big;          /* the write callback refused more bytes */
  int nomem;            /* the write callback could not grow body */
  int in_cb;            /* its callback is running: cancel is a no-op */
  int parked;           /* linked in cf__http.parked, not yet done */
  cf_list park;         /* in cf__http.parked */
  double start;         /* cf__mono_now() at send */
  char errbuf[CURL_ERROR_SIZE];
};

struct cf__http {
  cf_mem mem;
  cf_loop loop;
  CURLM *multi;
  void *timer;          /* curl's timeout */
  void *kick;           /* completes parked transfers */
  cf_list xfers;        /* cf__http_xfer.link, in flight */
  cf_list parked;       /* cf__http_xfer.park, failed early */
  cf_list socks;        /* http_sock.link, watched sockets */
  size_t inflight;
  CURL *pool[POOL_MAX]; /* reset easy handles ready for reuse */
  size_t npool;
  size_t pool_max;      /* POOL_MAX, or 0 where reuse is unsafe */
  int dispatching;      /* depth of io/timer dispatch on the stack */
  int freeing;          /* cf__http_free() was called during dispatch */
};

/* Bytes before the caller context, rounded for any object type. */
#define XFER_HEAD \
  ((sizeof(cf__http_xfer) + alignof(max_align_t) - 1) / \
   alignof(max_align_t) * alignof(max_align_t))

/* ---- sockets and timers: curl -> loop --------------------------------- */

static void on_io(int fd, int events, void *arg);

static cf__http_xfer *xfer_of_easy(CURL *easy) {
  char *p = NULL;
  if (easy == NULL || curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK)
    return NULL;
  return (cf__http_xfer *)(void *)p;
}

static void xfer_park(cf__http *h, cf__http_xfer *x, int error) {
  if (x == NULL || x->parked)
    return;
  x->fail = error;
  x->parked = 1;
  cf_list_append(&h->parked, &x->park);
  h->loop.timer_set(h->loop.data, h->kick, 0.0);
}

static void sock_free(cf__http *h, http_sock *s) {
  cf_list_remove(&s->link);
  h->loop.io_free(h->loop.data, s->io);
  cf__free(&h->mem, s);
}

/* A watcher we cannot allocate fails the transfer that wanted it, later:
 * returning -1 here would make curl abort every transfer. */
static http_sock *sock_add(cf__http *h, CURL *easy, curl_socket_t fd) {
  http_sock *s = cf__malloc(&h->mem, sizeof(*s));

  if (s != NULL) {
    s->fd = fd;
    s->io = h->loop.io_new(h->loop.data, (int)fd, on_io, h);
    if (s->io != NULL) {
      cf_list_append(&h->socks, &s->link);
      curl_multi_assign(h->multi, fd, s);
      return s;
    }
    cf__free(&h->mem, s);
  }
  xfer_park(h, xfer_of_easy(easy), CF_ERR_NOMEM);
  return NULL;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *ud,
                          void *sockp) {
  cf__http *h = ud;
  http_sock *s = sockp;
  int ev = 0;

  if (what == CURL_POLL_REMOVE) {
    if (s != NULL) {
      sock_free(h, s);
      curl_multi_assign(h->multi, fd, NULL);
    }
    return 0;
  }
  if (s == NULL && (s = sock_add(h, easy, fd)) == NULL)
    return 0;
  if (what & CURL_POLL_IN)
    ev |= CF_LOOP_READ;
  if (what & CURL_POLL_OUT)
    ev |= CF_LOOP_WRITE;
  h->loop.io_set(h->loop.data, s->io, ev);
  return 0;
}

/* Milliseconds become fractional seconds: integer division would turn
 * every sub-second timeout into "now" and spin (the evhiperfifo flaw). */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *ud) {
  cf__http *h = ud;
  (void)multi;
  if (h->timer == NULL)
    return 0;
  h->loop.timer_set(h->loop.data, h->timer,
                    timeout_ms < 0 ? -1.0 : (double)timeout_ms / 1000.0);
  return 0;
}

/* ---- transfer lifetime ------------------------------------------------ */

static void easy_release(cf__http *h, CURL *easy) {
  if (h->npool < h->pool_max) {
    curl_easy_reset(easy);
    h->pool[h->npool++] = easy;
    return;
  }
  curl_easy_cleanup(easy);
}

/* Detaches x from curl and the lists, and frees it. */
static void xfer_destroy(cf__http *h, cf__http_xfer *x) {
  curl_multi_remove_handle(h->multi, x->easy);
  if (x->parked)
    cf_list_remove(&x->park);
  cf_list_remove(&x->link);
  h->inflight--;
  easy_release(h, x->easy);
  curl_slist_free_all(x->hdrs);
  cf__free(&h->mem, x->body);
  cf__free(&h->mem, x);
}

static int map_curl_error(const cf__http_xfer *x, CURLcode rc) {
  if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED)
    return CF_ERR_TOO_BIG;
  if (x->nomem || rc == CURLE_OUT_OF_MEMORY)
    return CF_ERR_NOMEM;
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return CF_ERR_TIMEOUT;
  return CF_ERR_IO;
}

static const char *error_text(const cf__http_xfer *x, int error,
                              CURLcode rc) {
  if (error == CF_ERR_TOO_BIG)
    return "response body over the size limit";
  if (x->nomem || error == CF_ERR_NOMEM)
    return "out of memory";
  if (x->errbuf[0] != '\0')
    return x->errbuf;
  return curl_easy_strerror(rc);
}

/* Runs x's callback with the outcome, then frees x. */
static void xfer_complete(cf__http *h, cf__http_xfer *x, CURLcode rc) {
  cf__http_resp r;
  long status = 0;

  memset(&r, 0, sizeof(r));
  r.error = x->fail != 0 ? x->fail
            : (rc == CURLE_OK ? CF_OK : map_curl_error(x, rc));
  r.errmsg = r.error == CF_OK ? "" : error_text(x, r.error, rc);
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
  r.status = status;
  r.body = x->body != NULL ? x->body : "";
  r.body_len = x->len;
  r.elapsed = cf__mono_now() - x->start;
  /* Out of the multi first, so a callback that sends again may reuse the
   * connection this transfer just released. */
  curl_multi_remove_handle(h->multi, x->easy);
  if (x->parked) {
    cf_list_remove(&x->park);
    x->parked = 0;
  }
  x->in_cb = 1;
  x->cb(&r, x->user_data);
  xfer_destroy(h, x);
}

/* ---- dispatch: loop -> curl ------------------------------------------- */

static void http_destroy(cf__http *h);

static void dispatch_enter(cf__http *h) {
  h->dispatching++;
}

/* Returns nonzero when h was freed. */
static int dispatch_leave(cf__http *h) {
  if (--h->dispatching == 0 && h->freeing) {
    http_destroy(h);
    return 1;
  }
  return 0;
}

static void drain_done(cf__http *h) {
  CURLMsg *m;
  int left;

  while (!h->freeing && (m = curl_multi_info_read(h->multi, &left)) != NULL) {
    cf__http_xfer *x;
    if (m->msg != CURLMSG_DONE)
      continue;
    x = xfer_of_easy(m->easy_handle);
    if (x != NULL)
      xfer_complete(h, x, m->data.result);
  }
}

static void drain_parked(cf__http *h) {
  while (!h->freeing && !cf_list_empty(&h->parked)) {
    cf__http_xfer *x = cf_container_of(h->parked.next, cf__http_xfer, park);
    xfer_complete(h, x, CURLE_OK);
  }
}

static void on_io(int fd, int events, void *arg) {
  cf__http *h = arg;
  int mask = 0, running = 0;

  if (events & CF_LOOP_READ)
    mask |= CURL_CSELECT_IN;
  if (events & CF_LOOP_WRITE)
    mask |= CURL_CSELECT_OUT;
  dispatch_enter(h);
  curl_multi_socket_action(h->multi, (curl_socket_t)fd, mask, &running);
  drain_done(h);
  drain_parked(h);
  dispatch_leave(h);
}

static void on_timer(void *arg) {
  cf__http *h = arg;
  int running = 0;

  dispatch_enter(h);
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  drain_done(h);
  drain_parked(h);
  dispatch_leave(h);
}

static void on_kick(void *arg) {
  cf__http *h = arg;

  dispatch_enter(h);
  drain_parked(h);
  dispatch_leave(h);
}

/* ---- client ----------------------------------------------------------- */

int cf__http_new(cf__http **out, const cf_loop *loop, const cf_mem *mem) {
  const curl_version_info_data *vi;
  cf_mem m;
  cf__http *h;

  if (out == NULL || cf_loop_check(loop) != CF_OK)
    return CF_ERR_INVALID;
  *out = NULL;
  /* Thread-safe and reference-counted since curl 7.84; never undone here
   * because other users of curl in the process may still need it. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return CF_ERR_BACKEND;
  /* A libcurl with a synchronous resolver would block the loop on DNS. */
  vi = curl_version_info(CURLVERSION_NOW);
  if (vi == NULL || !(vi->features & CURL_VERSION_ASYNCHDNS))
    return CF_ERR_BACKEND;
  cf__mem_init(&m, mem);
  if ((h = cf__calloc(&m, 1, sizeof(*h))) == NULL)
    return CF_ERR_NOMEM;
  h->mem = m;
  h->loop = *loop;
  /* Before 8.1.0, a reused easy handle kept a pointer to the previous
   * transfer's freed response headers, followed when the next response
   * began with a folded header line: a use after free (curl #11101,
   * fixed by #11103). Debian 12 ships 7.88.1. Connections are kept by
   * the multi handle, so fresh easy handles still reuse them. */
  h->pool_max = vi->version_num >= CURL_FRESH_HEADERS ? POOL_MAX : 0;
  cf_list_init(&h->xfers);
  cf_list_init(&h->parked);
  cf_list_init(&h->socks);
  h->timer = h->loop.timer_new(h->loop.data, on_timer, h);
  h->kick = h->loop.timer_new(h->loop.data, on_kick, h);
  if (h->timer == NULL || h->kick == NULL) {
    http_destroy(h);
    return CF_ERR_NOMEM;
  }
  if ((h->multi = curl_multi_init()) == NULL ||
      curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ||
      curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) ||
      curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h)) {
    http_destroy(h);
    return CF_ERR_BACKEND;
  }
  *out = h;
  return CF_OK;
}

static void http_destroy(cf__http *h) {
  size_t i;

  while (!cf_list_empty(&h->xfers))
    xfer_destroy(h, cf_container_of(h->xfers.next, cf__http_xfer, link));
  for (i = 0; i < h->npool; i++)
    curl_easy_cleanup(h->pool[i]);
  if (h->multi != NULL)
    curl_multi_cleanup(h->multi);
  /* curl may close cached connections without a REMOVE for each. */
  while (!cf_list_empty(&h->socks))
    sock_free(h, cf_container_of(h->socks.next, http_sock, link));
  h->loop.timer_free(h->loop.data, h->timer);
  h->loop.timer_free(h->loop.data, h->kick);
  cf__free(&h->mem, h);
}

void cf__http_free(cf__http *h) {
  if (h == NULL)
    return;
  if (h->dispatching > 0) {
    h->freeing = 1;
    return;
  }
  http_destroy(h);
}

size_t cf__http_inflight(const cf__http *h) {
  return h != NULL ? h->inflight : 0;
}

void cf__http_cancel(cf__http_xfer *x) {
  if (x == NULL || x->in_cb)
    return;
  xfer_destroy(x->h, x);
}

/* ---- one request ------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *ud) {
  cf__http_xfer *x = ud;
  const cf_mem *m = &x->h->mem;
  size_t len = size * n, need, cap;
  char *p;

  if (len > x->max_body - x->len) {
    x->too_big = 1;
    return 0;
  }
  need = x->len + len + 1;
  if (need > x->cap) {
    cap = x->cap != 0 ? x->cap : 1024;
    while (cap < need)
      cap *= 2;
    if ((p = cf__realloc(m, x->body, cap)) == NULL) {
      x->nomem = 1;
      return 0;
    }
    x->body = p;
    x->cap = cap;
  }
  memcpy(x->body + x->len, data, len);
  x->len += len;
  x->body[x->len] = '\0';
  return len;
}

static int is_method(const char *m) {
  size_t i;
  if (m == NULL || m[0] == '\0')
    return 0;
  for (i = 0; m[i] != '\0'; i++)
    if (m[i] < 'A' || m[i] > 'Z' || i > 15)
      return 0;
  return 1;
}

static int is_line(const char *s) {
  return s != NULL && strpbrk(s, "\r\n") == NULL;
}

static int secs_ok(double s) {
  return s >= 0.0 && s <= TIMEOUT_MAX; /* also false for NaN */
}

static int req_valid(const cf__http_req *r) {
  size_t i;

  if (r == NULL || !is_method(r->method) || !is_line(r->url) ||
      (strncmp(r->url, "http://", 7) != 0 &&
       strncmp(r->url, "https://", 8) != 0) ||
      (r->nheaders > 0 && r->headers == NULL) ||
      (r->body_len > 0 && r->body == NULL) || !secs_ok(r->timeout) ||
      !secs_ok(r->connect_timeout))
    return 0;
  for (i = 0; i < r->nheaders; i++)
    if (!is_line(r->headers[i]))
      return 0;
  return 1;
}

static long to_ms(double secs, double dflt) {
  long ms;
  if (secs == 0.0)
    secs = dflt;
  ms = (long)(secs * 1000.0 + 0.5);
  return ms > 0 ? ms : 1;
}

static int map_setopt(CURLcode rc) {
  return rc == CURLE_OUT_OF_MEMORY ? CF_ERR_NOMEM : CF_ERR_BACKEND;
}

static int set_headers(cf__http_xfer *x, const cf__http_req *r) {
  struct curl_slist *l;
  size_t i;

  /* curl would otherwise wait for "100 Continue" on larger bodies, a
   * round trip SQS does not need. */
  if ((x->hdrs = curl_slist_append(NULL, "Expect:")) == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < r->nheaders; i++) {
    if ((l = curl_slist_append(x->hdrs, r->headers[i])) == NULL)
      return CF_ERR_NOMEM;
    x->hdrs = l;
  }
  return CF_OK;
}

/* The body goes in with POSTFIELDSIZE before COPYPOSTFIELDS so binary
 * bytes are copied whole; other methods keep curl's POST machinery and
 * only rename the request line. */
static CURLcode set_method(CURL *e, const cf__http_req *r) {
  CURLcode rc = CURLE_OK;
  int is_get = strcmp(r->method, "GET") == 0;
  int is_head = strcmp(r->method, "HEAD") == 0;

  if (is_head)
    return curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (r->body_len > 0 || (!is_get && strcmp(r->method, "DELETE") != 0)) {
    rc = curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                          (curl_off_t)r->body_len);
    if (rc == CURLE_OK)
      rc = curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS,
                            r->body_len > 0 ? (const char *)r->body : "");
  } else if (is_get) {
    rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  if (rc == CURLE_OK && strcmp(r->method, "POST") != 0 && !is_get)
    rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  return rc;
}

static CURLcode set_options(cf__http_xfer *x, const cf__http_req *r) {
  CURL *e = x->easy;
  CURLcode rc;

#define SET(opt, val) \
  if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK) \
    return rc
  SET(CURLOPT_URL, r->url);
  SET(CURLOPT_PRIVATE, (void *)x);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  SET(CURLOPT_TCP_KEEPIDLE, KEEPIDLE);
  SET(CURLOPT_TCP_KEEPINTVL, KEEPINTVL);
  SET(CURLOPT_CONNECTTIMEOUT_MS, to_ms(r->connect_timeout,
                                       DEFAULT_CONNECT_TIMEOUT));
  SET(CURLOPT_TIMEOUT_MS, to_ms(r->timeout, DEFAULT_TIMEOUT));
  x->max_body = r->max_body != 0 ? r->max_body : CF__HTTP_MAX_BODY;
  SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_body);
  SET(CURLOPT_WRITEFUNCTION, on_body);
  SET(CURLOPT_WRITEDATA, (void *)x);
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_HTTPHEADER, x->hdrs);
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#undef SET
  return set_method(e, r);
}

static cf__http_xfer *xfer_alloc(cf__http *h, size_t ctx_size) {
  cf__http_xfer *x;

  if (ctx_size > SIZE_MAX - XFER_HEAD)
    return NULL;
  if ((x = cf__calloc(&h->mem, 1, XFER_HEAD + ctx_size)) == NULL)
    return NULL;
  x->h = h;
  cf_list_init(&x->link);
  cf_list_init(&x->park);
  if (h->npool > 0)
    x->easy = h->pool[--h->npool];
  else if ((x->easy = curl_easy_init()) == NULL) {
    cf__free(&h->mem, x);
    return NULL;
  }
  return x;
}

static void xfer_discard(cf__http *h, cf__http_xfer *x) {
  easy_release(h, x->easy);
  curl_slist_free_all(x->hdrs);
  cf__free(&h->mem, x);
}

int cf__http_send_ctx(cf__http *h, const cf__http_req *req, cf__http_cb cb,
                      size_t ctx_size, void **ctx, cf__http_xfer **xfer) {
  cf__http_xfer *x;
  CURLcode crc;
  int rv;

  if (xfer != NULL)
    *xfer = NULL;
  if (h == NULL || cb == NULL || ctx == NULL || h->freeing ||
      !req_valid(req))
    return CF_ERR_INVALID;
  if ((x = xfer_alloc(h, ctx_size)) == NULL)
    return CF_ERR_NOMEM;
  x->cb = cb;
  x->user_data = (char *)x + XFER_HEAD;
  if ((rv = set_headers(x, req)) != CF_OK ||
      (crc = set_options(x, req)) != CURLE_OK) {
    if (rv == CF_OK)
      rv = map_setopt(crc);
    xfer_discard(h, x);
    return rv;
  }
  x->start = cf__mono_now();
  /* Adding only arms curl's timer: the transfer starts from the loop. */
  if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK) {
    xfer_discard(h, x);
    return CF_ERR_BACKEND;
  }
  cf_list_append(&h->xfers, &x->link);
  h->inflight++;
  *ctx = x->user_data;
  if (xfer != NULL)
    *xfer = x;
  return CF_OK;
}

int cf__http_send(cf__http *h, const cf__http_req *req, cf__http_cb cb,
                  void *user_data, cf__http_xfer **xfer) {
  void *ctx;
  cf__http_xfer *x;
  int rv = cf__http_send_ctx(h, req, cb, 0, &ctx, &x);

  if (xfer != NULL)
    *xfer = rv == CF_OK ? x : NULL;
  if (rv == CF_OK)
    x->user_data = user_data;
  return rv;
}
