/*
 * chatfanoutd HTTP/1.1 request parsing and routing. Zero-allocation: the
 * parsed request points into the caller's buffer.
 */
#ifndef CFD_HTTP_H
#define CFD_HTTP_H

#include <stddef.h>

#include <chatfanout/cf_queue.h>

#define CFD_HTTP_MAX_HEADERS 64
#define CFD_HTTP_HEAD_MAX 8192 /* request line + headers, bytes */

typedef struct cfd_http_header {
  const char *name;
  size_t name_len;
  const char *value; /* leading/trailing whitespace trimmed */
  size_t value_len;
} cfd_http_header;

typedef struct cfd_http_request {
  const char *method;
  size_t method_len;
  const char *target; /* request-target as sent, e.g. /ws?room=a */
  size_t target_len;
  int minor_version;  /* 0 or 1 for HTTP/1.x */
  cfd_http_header headers[CFD_HTTP_MAX_HEADERS];
  size_t num_headers;
} cfd_http_request;

/* cfd_http_parse results besides a positive head length. */
#define CFD_HTTP_INCOMPLETE (-2)
#define CFD_HTTP_BAD (-1)
#define CFD_HTTP_TOO_MANY_HEADERS (-3)

/*
 * Parses the request head in buf[0..len). Returns the length of the
 * head including the final CRLFCRLF (> 0) when complete,
 * CFD_HTTP_INCOMPLETE when more bytes are needed, CFD_HTTP_BAD for a
 * malformed head, CFD_HTTP_TOO_MANY_HEADERS past CFD_HTTP_MAX_HEADERS.
 * Never reads past buf + len. Bare LF line ends are accepted, and empty
 * lines before the request line are skipped (RFC 9112 2.2). Strict: the
 * method is a token, the target 1+ visible ASCII bytes, the version
 * HTTP/1.0 or HTTP/1.1, single spaces between them; header names are
 * tokens directly followed by ':', values visible ASCII, obs-text,
 * space or tab; obs-fold, NUL and other control bytes are CFD_HTTP_BAD.
 * A complete malformed prefix is reported as bad without waiting for
 * more bytes. req is only meaningful when a length is returned.
 * The parse is stateless and restarts at buf each call, so a caller fed
 * a byte at a time should call it only when the new bytes hold a '\n'.
 */
int cfd_http_parse(const char *buf, size_t len, cfd_http_request *req);

/*
 * Status for a head that did not fit in CFD_HTTP_HEAD_MAX bytes: 414 when
 * the request line itself is not complete in buf, else 431.
 */
int cfd_http_overflow_status(const char *buf, size_t len);

/* Finds a header by case-insensitive name (the first one when repeated);
 * NULL when absent. */
const cfd_http_header *cfd_http_find(const cfd_http_request *req,
                                     const char *name);

/* Does a comma-separated header value contain token (case-insensitive)? */
int cfd_http_has_token(const char *value, size_t len, const char *token);

typedef enum cfd_route_kind {
  CFD_ROUTE_PAGE = 1,    /* GET / : the chat page */
  CFD_ROUTE_HEALTH = 2,  /* GET /healthz */
  CFD_ROUTE_METRICS = 3, /* GET /metrics */
  CFD_ROUTE_WS = 4       /* GET /ws : valid WebSocket upgrade */
} cfd_route_kind;

typedef struct cfd_route {
  int kind;                      /* cfd_route_kind */
  int head_only;                 /* HEAD instead of GET (not for /ws) */
  char room[CF_ROOM_MAX + 1];    /* CFD_ROUTE_WS: NUL-terminated */
  size_t room_len;
  char accept[29];               /* Sec-WebSocket-Accept value, NUL-t. */
  /*
   * Header lines the error answer must carry, static, never NULL: ""
   * when none (and on success), "Allow: GET, HEAD\r\n" (405),
   * "Allow: GET\r\n" (405 for HEAD /ws), "Upgrade: websocket\r\n" (426),
   * "Sec-WebSocket-Version: 13\r\n" (400 for a missing, repeated or
   * unsupported version). Pass it as cfd_http_head()'s extra.
   */
  const char *extra;
} cfd_route;

/* Origin policy for upgrades. */
typedef struct cfd_origin_policy {
  char *const *allowed; /* exact Origin values; "*" allows any */
  size_t n_allowed;     /* 0: allow no Origin or same-origin only */
} cfd_origin_policy;

/*
 * Routes a parsed request. Returns 0 and fills out, or the HTTP status
 * to answer with: 400 (bad upgrade headers, bad room, bad version: add
 * "Sec-WebSocket-Version: 13"), 403 (Origin refused), 404 (unknown
 * path), 405 (method other than GET/HEAD: add "Allow: GET, HEAD";
 * HEAD /ws: add "Allow: GET"), 426 (GET /ws without an Upgrade:
 * websocket header; add "Upgrade: websocket"), 500 (the accept key
 * could not be computed: OpenSSL failed). An upgrade over HTTP/1.0 is
 * 400. On every return out->extra holds the header lines to add (see
 * cfd_route); the other fields of out are only meaningful on 0.
 * The target is origin-form (/path?query) or absolute-form
 * (http[s]://authority/path?query, RFC 9112 3.2.2; scheme in any case,
 * an empty path is /). An absolute-form authority that is empty, holds
 * userinfo or is malformed is 400, before anything else; otherwise it
 * takes the place of Host's value in the Origin check (the Host header
 * rules below still apply). Other forms match no path.
 * Paths are matched exactly, before the method: an unknown path is 404
 * whatever the method. The query string is ignored except room= on /ws.
 * GET/HEAD of /, /healthz, /metrics is 400 without a Host header in
 * HTTP/1.1, or with two Host headers (RFC 9112 3.2).
 * GET /ws checks, in order: HTTP/1.1
 * (400), Upgrade has token websocket (426), Connection has token
 * upgrade (400), exactly one non-empty Host (400), exactly one
 * Sec-WebSocket-Key that is canonical base64 of 16 bytes (400), exactly
 * one Sec-WebSocket-Version equal to 13 (400 + version header), room
 * (400), Origin (at most one, else 400; refused: 403).
 * Room: query parameter room=, 1-64 of [A-Za-z0-9_.-], default "lobby";
 * the value is percent-decoded and each decoded character must be one
 * of those too (%41 is A); a malformed escape is 400, as is a room
 * given twice or empty; other parameters are ignored (the name room= is
 * matched as sent).
 * Origin: no Origin header is allowed. With policy->n_allowed > 0 the
 * value must equal one entry byte for byte, or an entry is "*". With
 * none (or policy NULL) only a same-origin request passes: Origin is
 * http:// or https:// then host[:port] equal to Host (or the
 * absolute-form authority), case-insensitive, a missing port meaning
 * the scheme's default (80/443): the Origin's scheme's for both sides,
 * except that an absolute-form target's own scheme sets its default.
 * The schemes themselves are not compared: behind a TLS proxy an
 * https:// page is this same plain-HTTP server.
 */
int cfd_http_route(const cfd_http_request *req,
                   const cfd_origin_policy *policy, cfd_route *out);

/*
 * Computes the Sec-WebSocket-Accept value for a key (RFC 6455 4.2.2):
 * base64(SHA-1(key + GUID)), 28 characters and a NUL. out is "" when
 * OpenSSL fails (out of memory).
 */
void cfd_ws_accept_key(const char *key, size_t key_len, char out[29]);

/* Reason phrase for a status code ("Not Found"); "Unknown" otherwise. */
const char *cfd_http_reason(int status);

/*
 * Writes a complete response head into buf (cap bytes):
 * "HTTP/1.1 <status> <reason>", Content-Type (when ctype != NULL),
 * Content-Length: body_len, Connection: close, Cache-Control: no-store,
 * then `extra` (zero or more full "Name: value\r\n" lines, may be NULL)
 * and the blank line. Returns the head length, or -1 if cap is too small.
 */
int cfd_http_head(char *buf, size_t cap, int status, const char *ctype,
                  size_t body_len, const char *extra);

/* Writes the 101 Switching Protocols head for accept; same returns. */
int cfd_http_upgrade_head(char *buf, size_t cap, const char *accept);

#endif /* CFD_HTTP_H */
