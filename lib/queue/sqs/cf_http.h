/*
 * Internal: a non-blocking HTTP client on libcurl's multi-socket
 * interface, driven by a cf_loop (no thread, no blocking call).
 *
 * curl tells us which sockets to watch and when its timer is due; we map
 * those onto cf_loop io watchers and one timer, and feed readiness back
 * with curl_multi_socket_action(). One multi handle per cf__http keeps
 * connections (and TLS sessions) alive between requests to one host.
 *
 *   cf__http_req r = {.method = "POST", .url = url, .headers = hdrs,
 *                     .nheaders = 3, .body = body, .body_len = n,
 *                     .timeout = 25.0};
 *   cf__http_send(http, &r, on_done, ctx, &xfer);
 *   ...
 *   static void on_done(const cf__http_resp *resp, void *ctx) { ... }
 */
#ifndef CF_HTTP_H
#define CF_HTTP_H

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>

typedef struct cf__http cf__http;
typedef struct cf__http_xfer cf__http_xfer;

/* Default largest response body kept; more fails the transfer
 * (CF_ERR_TOO_BIG). A request may set its own (max_body). */
#define CF__HTTP_MAX_BODY (4u * 1024u * 1024u)

/* A request; everything is copied by cf__http_send(). */
typedef struct cf__http_req {
  const char *method;         /* "GET", "PUT", "POST", "DELETE" */
  const char *url;            /* absolute http:// or https:// URL */
  const char *const *headers; /* "Name: value" lines, no CRLF */
  size_t nheaders;
  const void *body;           /* may be NULL when body_len is 0 */
  size_t body_len;
  double timeout;             /* whole transfer, seconds; 0: 30 */
  double connect_timeout;     /* seconds; 0: 5 */
  size_t max_body;            /* largest response body kept, bytes;
                                 0: CF__HTTP_MAX_BODY */
} cf__http_req;

/* The outcome; valid only during the callback. */
typedef struct cf__http_resp {
  int error;            /* CF_OK when a response arrived (any status);
                           CF_ERR_TIMEOUT, CF_ERR_IO (connect, reset,
                           DNS, TLS), CF_ERR_TOO_BIG, CF_ERR_NOMEM */
  const char *errmsg;   /* curl's message when error != CF_OK, else "" */
  long status;          /* HTTP status, 0 without a response */
  const char *body;     /* NUL-terminated (the NUL is not counted) */
  size_t body_len;
  double elapsed;       /* seconds from send to completion */
} cf__http_resp;

/* Called once per transfer that completes (never for cancelled ones),
 * from the loop, never from inside cf__http_send(). */
typedef void (*cf__http_cb)(const cf__http_resp *resp, void *user_data);

/*
 * Creates a client on loop (copied). Calls curl_global_init once per
 * process (thread-safe with curl >= 7.84). CF_OK, CF_ERR_INVALID,
 * CF_ERR_NOMEM, CF_ERR_BACKEND (curl setup failed, or the libcurl in
 * use lacks an asynchronous resolver, CURL_VERSION_ASYNCHDNS: its name
 * lookups would block the event loop).
 */
int cf__http_new(cf__http **out, const cf_loop *loop, const cf_mem *mem);

/* Cancels every transfer (no callbacks) and frees. Accepts NULL. Safe
 * from inside a cf__http_cb (deferred to the callback's return). */
void cf__http_free(cf__http *h);

/*
 * Starts a transfer. xfer (may be NULL) receives a handle valid until the
 * callback returns or cf__http_cancel(). CF_OK, CF_ERR_INVALID,
 * CF_ERR_NOMEM, CF_ERR_BACKEND.
 */
int cf__http_send(cf__http *h, const cf__http_req *req, cf__http_cb cb,
                  void *user_data, cf__http_xfer **xfer);

/*
 * As cf__http_send(), but the transfer carries ctx_size bytes of zeroed
 * caller context (aligned for any type), given in *ctx and passed to cb
 * as user_data. The context lives exactly as long as the transfer: it is
 * freed after the callback returns or by cf__http_cancel(), so a caller
 * needs no allocation of its own that a cancel could leak. Fill it after
 * a CF_OK return (cb never runs before). Same return codes.
 */
int cf__http_send_ctx(cf__http *h, const cf__http_req *req, cf__http_cb cb,
                      size_t ctx_size, void **ctx, cf__http_xfer **xfer);

/* Aborts a transfer; its callback will not run. Accepts NULL. No-op
 * from inside the transfer's own callback. */
void cf__http_cancel(cf__http_xfer *x);

/* Transfers in flight. */
size_t cf__http_inflight(const cf__http *h);

#endif /* CF_HTTP_H */
