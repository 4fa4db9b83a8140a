/*
 * HTTP/1.1 request head parsing, routing and upgrade validation for
 * chatfanoutd. The parser is stateless and allocation-free: every result
 * points into the caller's buffer, and each step checks the cursor
 * against the end before reading, so a truncated head is "incomplete",
 * never an over-read.
 */
#include "cfd_http.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

/* ---- character classes ------------------------------------------------ */

static int is_alnum(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z');
}

/* RFC 9110 5.6.2 tchar. */
static int is_tchar(unsigned char c) {
  return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

/* A request-target byte: visible ASCII, no space. */
static int is_target_char(unsigned char c) { return c > 0x20 && c < 0x7f; }

/* A field-value byte: visible ASCII, obs-text, space or tab. */
static int is_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

/* ---- the parser ------------------------------------------------------- */

typedef struct cursor {
  const char *p;
  const char *end;
} cursor;

/* Consumes a line end (CRLF or LF). */
static int eat_eol(cursor *c) {
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (*c->p == '\n') {
    c->p++;
    return 0;
  }
  if (*c->p != '\r')
    return CFD_HTTP_BAD;
  if (++c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (*c->p != '\n')
    return CFD_HTTP_BAD;
  c->p++;
  return 0;
}

static int eat_char(cursor *c, char ch) {
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (*c->p != ch)
    return CFD_HTTP_BAD;
  c->p++;
  return 0;
}

/* Reads 1*tchar; the delimiter after it is left for the caller. */
static int eat_token(cursor *c, const char **tok, size_t *len) {
  const char *start = c->p;
  while (c->p < c->end && is_tchar((unsigned char)*c->p))
    c->p++;
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (c->p == start)
    return CFD_HTTP_BAD;
  *tok = start;
  *len = (size_t)(c->p - start);
  return 0;
}

/* RFC 9112 2.2: empty lines before the request line are tolerated. */
static int skip_empty_lines(cursor *c) {
  int rc;
  while (c->p < c->end && (*c->p == '\r' || *c->p == '\n')) {
    rc = eat_eol(c);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int parse_version(cursor *c, int *minor) {
  static const char prefix[] = "HTTP/1.";
  size_t i;
  /* Byte by byte so a short prefix is incomplete, a wrong one bad. */
  for (i = 0; i < sizeof prefix - 1; i++) {
    if (c->p == c->end)
      return CFD_HTTP_INCOMPLETE;
    if (*c->p++ != prefix[i])
      return CFD_HTTP_BAD;
  }
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (*c->p != '0' && *c->p != '1')
    return CFD_HTTP_BAD;
  *minor = *c->p++ - '0';
  return 0;
}

static int parse_request_line(cursor *c, cfd_http_request *req) {
  const char *start;
  int rc;
  if ((rc = skip_empty_lines(c)) != 0 ||
      (rc = eat_token(c, &req->method, &req->method_len)) != 0 ||
      (rc = eat_char(c, ' ')) != 0)
    return rc;
  start = c->p;
  while (c->p < c->end && is_target_char((unsigned char)*c->p))
    c->p++;
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  if (c->p == start)
    return CFD_HTTP_BAD;
  req->target = start;
  req->target_len = (size_t)(c->p - start);
  if ((rc = eat_char(c, ' ')) != 0 ||
      (rc = parse_version(c, &req->minor_version)) != 0)
    return rc;
  return eat_eol(c);
}

/* Parses "name: value" and its line end into h. */
static int parse_header(cursor *c, cfd_http_header *h) {
  const char *v, *vend;
  int rc;
  if ((rc = eat_token(c, &h->name, &h->name_len)) != 0 ||
      (rc = eat_char(c, ':')) != 0)
    return rc;
  while (c->p < c->end && is_ows((unsigned char)*c->p))
    c->p++;
  v = c->p;
  while (c->p < c->end && is_value_char((unsigned char)*c->p))
    c->p++;
  if (c->p == c->end)
    return CFD_HTTP_INCOMPLETE;
  vend = c->p;
  while (vend > v && is_ows((unsigned char)vend[-1]))
    vend--;
  h->value = v;
  h->value_len = (size_t)(vend - v);
  /* A byte that is neither a value byte nor a line end is a CTL. */
  return eat_eol(c);
}

static int parse_headers(cursor *c, cfd_http_request *req) {
  int rc;
  for (;;) {
    if (c->p == c->end)
      return CFD_HTTP_INCOMPLETE;
    if (*c->p == '\r' || *c->p == '\n')
      return eat_eol(c);
    /* A line starting with whitespace is obs-fold (RFC 9112 5.2). */
    if (is_ows((unsigned char)*c->p))
      return CFD_HTTP_BAD;
    if (req->num_headers == CFD_HTTP_MAX_HEADERS)
      return CFD_HTTP_TOO_MANY_HEADERS;
    rc = parse_header(c, &req->headers[req->num_headers]);
    if (rc != 0)
      return rc;
    req->num_headers++;
  }
}

int cfd_http_parse(const char *buf, size_t len, cfd_http_request *req) {
  cursor c;
  int rc;
  if (req == NULL || (buf == NULL && len != 0))
    return CFD_HTTP_BAD;
  if (buf == NULL)
    return CFD_HTTP_INCOMPLETE;
  /* The head length is returned as an int; nothing that long is sane. */
  if (len > INT_MAX)
    len = INT_MAX;
  c.p = buf;
  c.end = buf + len;
  req->num_headers = 0;
  if ((rc = parse_request_line(&c, req)) != 0 ||
      (rc = parse_headers(&c, req)) != 0)
    return rc;
  return (int)(c.p - buf);
}

int cfd_http_overflow_status(const char *buf, size_t len) {
  size_t i = 0;
  if (buf == NULL)
    return 414;
  /* Mirror the parser, which skips empty lines before the request. */
  while (i < len && (buf[i] == '\r' || buf[i] == '\n'))
    i++;
  return memchr(buf + i, '\n', len - i) != NULL ? 431 : 414;
}

/* ---- header helpers --------------------------------------------------- */

static int name_is(const cfd_http_header *h, const char *name, size_t len) {
  return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

const cfd_http_header *cfd_http_find(const cfd_http_request *req,
                                     const char *name) {
  size_t i, len;
  if (req == NULL || name == NULL)
    return NULL;
  len = strlen(name);
  for (i = 0; i < req->num_headers && i < CFD_HTTP_MAX_HEADERS; i++)
    if (name_is(&req->headers[i], name, len))
      return &req->headers[i];
  return NULL;
}

/* How many headers are called name; *first gets the first of them. */
static size_t count_headers(const cfd_http_request *req, const char *name,
                            const cfd_http_header **first) {
  size_t i, n = 0, len = strlen(name);
  *first = NULL;
  for (i = 0; i < req->num_headers && i < CFD_HTTP_MAX_HEADERS; i++) {
    if (!name_is(&req->headers[i], name, len))
      continue;
    if (n++ == 0)
      *first = &req->headers[i];
  }
  return n;
}

int cfd_http_has_token(const char *value, size_t len, const char *token) {
  size_t i = 0, s, e, tlen;
  if (value == NULL || token == NULL || (tlen = strlen(token)) == 0)
    return 0;
  while (i < len) {
    s = i;
    while (i < len && value[i] != ',')
      i++;
    e = i++; /* i steps over the comma */
    while (s < e && is_ows((unsigned char)value[s]))
      s++;
    while (e > s && is_ows((unsigned char)value[e - 1]))
      e--;
    if (e - s == tlen && strncasecmp(value + s, token, tlen) == 0)
      return 1;
  }
  return 0;
}

/* List headers (Upgrade, Connection) may be split over several lines. */
static int any_has_token(const cfd_http_request *req, const char *name,
                         const char *token) {
  size_t i, len = strlen(name);
  for (i = 0; i < req->num_headers && i < CFD_HTTP_MAX_HEADERS; i++) {
    const cfd_http_header *h = &req->headers[i];
    if (name_is(h, name, len) &&
        cfd_http_has_token(h->value, h->value_len, token))
      return 1;
  }
  return 0;
}

/* ---- upgrade checks --------------------------------------------------- */

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/*
 * 16 bytes encode to 22 characters and "==". The last character holds
 * 2 data bits; its 4 low bits must be zero for the encoding to be the
 * canonical one (RFC 4648 3.5), which every real client sends.
 */
static int key_valid(const char *k, size_t len) {
  size_t i;
  if (len != 24 || k[22] != '=' || k[23] != '=')
    return 0;
  for (i = 0; i < 22; i++)
    if (b64_value((unsigned char)k[i]) < 0)
      return 0;
  return (b64_value((unsigned char)k[21]) & 0x0f) == 0;
}

static int room_char(unsigned char c) {
  return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

static int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20; /* ASCII lower case */
  return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/*
 * Percent-decodes a room value into out; 0 or 400. Only characters that
 * may appear in a room name may be encoded (so "%41" is "A"): anything
 * else decoded, and a '%' without two hex digits, is a bad request.
 */
static int room_decode(const char *v, size_t len, cfd_route *out) {
  size_t i = 0, n = 0;
  unsigned char c;
  while (i < len) {
    c = (unsigned char)v[i++];
    if (c == '%') {
      if (len - i < 2 || hex_digit((unsigned char)v[i]) < 0 ||
          hex_digit((unsigned char)v[i + 1]) < 0)
        return 400;
      c = (unsigned char)(hex_digit((unsigned char)v[i]) << 4 |
                          hex_digit((unsigned char)v[i + 1]));
      i += 2;
    }
    if (!room_char(c) || n == CF_ROOM_MAX)
      return 400;
    out->room[n++] = (char)c;
  }
  if (n == 0)
    return 400;
  out->room[n] = '\0';
  out->room_len = n;
  return 0;
}

/* Finds room= in the query; 0 or 400. Absent means the lobby. */
static int parse_room(const char *q, size_t len, cfd_route *out) {
  const char *p = q, *end = q + len, *seg, *eq, *val = "lobby";
  size_t vlen = 5;
  int seen = 0;
  while (p < end) {
    seg = p;
    while (p < end && *p != '&')
      p++;
    eq = memchr(seg, '=', (size_t)(p - seg));
    if ((eq ? eq : p) - seg == 4 && memcmp(seg, "room", 4) == 0) {
      if (seen++)
        return 400;
      val = eq ? eq + 1 : p;
      vlen = (size_t)(p - val);
    }
    if (p < end)
      p++;
  }
  return room_decode(val, vlen, out);
}

/* An authority split into host and port. */
typedef struct authority {
  const char *host;
  size_t host_len;
  long port; /* -1: none given */
} authority;

/* Splits host[:port] or [v6]:port; 0 ok, -1 malformed. */
static int split_authority(const char *s, size_t len, authority *a) {
  const char *end = s + len, *colon = NULL, *p;
  long port = 0;
  if (len == 0)
    return -1;
  if (*s == '[') {
    p = memchr(s, ']', len);
    if (p == NULL)
      return -1;
    colon = p + 1 < end ? p + 1 : NULL;
    if (colon != NULL && *colon != ':')
      return -1;
  } else {
    for (p = s; p < end; p++)
      if (*p == ':')
        colon = p;
  }
  a->host = s;
  a->host_len = (size_t)((colon ? colon : end) - s);
  a->port = -1;
  if (a->host_len == 0 || colon == NULL || colon + 1 == end)
    return a->host_len == 0 ? -1 : 0;
  for (p = colon + 1; p < end; p++) {
    if (*p < '0' || *p > '9' || port > 65535)
      return -1;
    port = port * 10 + (*p - '0');
  }
  if (port > 65535)
    return -1;
  a->port = port;
  return 0;
}

static int has_any(const char *s, size_t len, const char *set) {
  size_t i;
  for (i = 0; i < len; i++)
    if (strchr(set, s[i]) != NULL)
      return 1;
  return 0;
}

/* Length of an http:// or https:// prefix of s (7 or 8), else 0; *def
 * gets the scheme's default port (-1 for none). */
static size_t http_scheme(const char *s, size_t len, long *def) {
  *def = -1;
  if (len >= 7 && strncasecmp(s, "http://", 7) == 0) {
    *def = 80;
    return 7;
  }
  if (len >= 8 && strncasecmp(s, "https://", 8) == 0) {
    *def = 443;
    return 8;
  }
  return 0;
}

/*
 * The host the request was sent to, for the same-origin check: the
 * authority of an absolute-form target (RFC 9112 3.2.2: it replaces
 * Host), else the Host header's value.
 */
typedef struct req_host {
  const char *s;
  size_t len;
  long def; /* default port of the target's scheme; -1: unknown (Host) */
} req_host;

/*
 * Is Origin the same origin as the request's host? Host and port are
 * compared (case-insensitive host), not the scheme: the listener is
 * plain HTTP, but behind a TLS proxy https://h is this same server. A
 * port left out is the scheme's default (for a Host header, that of
 * the Origin's scheme).
 */
static int same_origin(const cfd_http_header *origin, const req_host *rh) {
  const char *o = origin->value;
  size_t olen = origin->value_len, skip;
  long def;
  authority ao, ah;
  if ((skip = http_scheme(o, olen, &def)) == 0)
    return 0; /* "null", other schemes */
  o += skip;
  olen -= skip;
  /* An origin is scheme://host[:port]: no path, query or userinfo. */
  if (has_any(o, olen, "/?#@\\ \t") ||
      has_any(rh->s, rh->len, "/?#@\\ \t"))
    return 0;
  if (split_authority(o, olen, &ao) != 0 ||
      split_authority(rh->s, rh->len, &ah) != 0)
    return 0;
  if (ao.port < 0)
    ao.port = def;
  if (ah.port < 0)
    ah.port = rh->def >= 0 ? rh->def : def;
  return ao.port == ah.port && ao.host_len == ah.host_len &&
         strncasecmp(ao.host, ah.host, ao.host_len) == 0;
}

static int origin_allowed(const cfd_http_header *origin,
                          const req_host *rh,
                          const cfd_origin_policy *policy) {
  size_t i;
  if (policy == NULL || policy->n_allowed == 0 || policy->allowed == NULL)
    return same_origin(origin, rh);
  for (i = 0; i < policy->n_allowed; i++) {
    const char *a = policy->allowed[i];
    if (a == NULL)
      continue;
    if (strcmp(a, "*") == 0 ||
        (strlen(a) == origin->value_len &&
         memcmp(a, origin->value, origin->value_len) == 0))
      return 1;
  }
  return 0;
}

static const char EXTRA_VERSION[] = "Sec-WebSocket-Version: 13\r\n";

/* The header checks of a GET /ws; see cfd_http_route's comment. */
static int check_upgrade(const cfd_http_request *req, cfd_route *out,
                         const cfd_http_header **key) {
  const cfd_http_header *host, *ver;
  if (req->minor_version != 1)
    return 400;
  if (!any_has_token(req, "Upgrade", "websocket")) {
    out->extra = "Upgrade: websocket\r\n";
    return 426;
  }
  if (!any_has_token(req, "Connection", "upgrade"))
    return 400;
  if (count_headers(req, "Host", &host) != 1 || host->value_len == 0)
    return 400;
  if (count_headers(req, "Sec-WebSocket-Key", key) != 1 ||
      !key_valid((*key)->value, (*key)->value_len))
    return 400;
  if (count_headers(req, "Sec-WebSocket-Version", &ver) != 1 ||
      ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0) {
    out->extra = EXTRA_VERSION;
    return 400;
  }
  return 0;
}

/* A request-target split for routing. */
typedef struct target {
  const char *path;  /* "/" for an absolute-form target without path */
  size_t path_len;
  const char *query; /* after '?', "" when there is none */
  size_t query_len;
  const char *auth;  /* absolute-form: its authority; else NULL */
  size_t auth_len;
  long auth_def;     /* absolute-form: the scheme's default port */
} target;

/*
 * Splits origin-form "/path?query" or absolute-form
 * "http[s]://authority/path?query" (RFC 9112 3.2.2). Returns 0, or 400
 * for an absolute-form target whose authority is empty, holds userinfo
 * or is malformed. Any other form is left whole as a path (no route
 * matches it: 404).
 */
static int split_target(const char *t, size_t len, target *out) {
  const char *end = t + len, *p, *q;
  size_t skip = http_scheme(t, len, &out->auth_def);
  authority a;
  out->auth = NULL;
  out->auth_len = 0;
  if (skip > 0) {
    out->auth = t + skip;
    for (p = out->auth; p < end && *p != '/' && *p != '?'; p++)
      ;
    out->auth_len = (size_t)(p - out->auth);
    if (has_any(out->auth, out->auth_len, "@#") ||
        split_authority(out->auth, out->auth_len, &a) != 0)
      return 400;
    t = p;
  }
  q = memchr(t, '?', (size_t)(end - t));
  out->path = t;
  out->path_len = (size_t)((q ? q : end) - t);
  out->query = q ? q + 1 : "";
  out->query_len = q ? (size_t)(end - q - 1) : 0;
  if (skip > 0 && out->path_len == 0) {
    out->path = "/";
    out->path_len = 1;
  }
  return 0;
}

static int route_ws(const cfd_http_request *req,
                    const cfd_origin_policy *policy, const target *tg,
                    cfd_route *out) {
  const cfd_http_header *key, *origin, *host;
  req_host rh;
  size_t n_origin;
  int rc;
  if ((rc = check_upgrade(req, out, &key)) != 0 ||
      (rc = parse_room(tg->query, tg->query_len, out)) != 0)
    return rc;
  n_origin = count_headers(req, "Origin", &origin);
  if (n_origin > 1)
    return 400;
  count_headers(req, "Host", &host);
  rh.s = tg->auth ? tg->auth : host->value;
  rh.len = tg->auth ? tg->auth_len : host->value_len;
  rh.def = tg->auth ? tg->auth_def : -1;
  if (n_origin == 1 && !origin_allowed(origin, &rh, policy))
    return 403;
  cfd_ws_accept_key(key->value, key->value_len, out->accept);
  if (out->accept[0] == '\0')
    return 500;
  out->kind = CFD_ROUTE_WS;
  return 0;
}

static int path_kind(const char *path, size_t len) {
  static const struct {
    const char *path;
    int kind;
  } paths[] = {
      {"/", CFD_ROUTE_PAGE},
      {"/healthz", CFD_ROUTE_HEALTH},
      {"/metrics", CFD_ROUTE_METRICS},
      {"/ws", CFD_ROUTE_WS},
  };
  size_t i;
  for (i = 0; i < sizeof paths / sizeof paths[0]; i++)
    if (strlen(paths[i].path) == len &&
        memcmp(paths[i].path, path, len) == 0)
      return paths[i].kind;
  return 0;
}

/*
 * RFC 9112 3.2: an HTTP/1.1 request without a Host, or any request with
 * two, must be answered 400 (two could be read differently by a proxy).
 */
static int host_ok(const cfd_http_request *req) {
  const cfd_http_header *host;
  size_t n = count_headers(req, "Host", &host);
  return n == 1 || (n == 0 && req->minor_version == 0);
}

static int method_is(const cfd_http_request *req, const char *m) {
  size_t len = strlen(m);
  /* Methods are case-sensitive (RFC 9110 9.1). */
  return req->method_len == len && memcmp(req->method, m, len) == 0;
}

int cfd_http_route(const cfd_http_request *req,
                   const cfd_origin_policy *policy, cfd_route *out) {
  target tg;
  int kind, is_head;
  if (out == NULL)
    return 400;
  memset(out, 0, sizeof *out);
  out->extra = "";
  if (req == NULL || req->target == NULL ||
      split_target(req->target, req->target_len, &tg) != 0)
    return 400;
  /* The path decides first: a POST to an unknown path is still 404. */
  kind = path_kind(tg.path, tg.path_len);
  if (kind == 0)
    return 404;
  is_head = method_is(req, "HEAD");
  if (!is_head && !method_is(req, "GET")) {
    /* The README promises this Allow for every known path. */
    out->extra = "Allow: GET, HEAD\r\n";
    return 405;
  }
  if (kind == CFD_ROUTE_WS && is_head) {
    /* A HEAD cannot upgrade; GET is the only thing /ws does. */
    out->extra = "Allow: GET\r\n";
    return 405;
  }
  if (kind == CFD_ROUTE_WS)
    return route_ws(req, policy, &tg, out);
  if (!host_ok(req))
    return 400;
  out->kind = kind;
  out->head_only = is_head;
  return 0;
}

void cfd_ws_accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  EVP_MD_CTX *ctx;
  int ok;
  out[0] = '\0';
  if (key == NULL && key_len != 0)
    return;
  ctx = EVP_MD_CTX_new();
  ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
       EVP_DigestUpdate(ctx, key, key_len) == 1 &&
       EVP_DigestUpdate(ctx, guid, sizeof guid - 1) == 1 &&
       EVP_DigestFinal_ex(ctx, md, &md_len) == 1 && md_len == 20;
  EVP_MD_CTX_free(ctx);
  if (ok) /* 20 bytes -> 28 characters and a NUL */
    EVP_EncodeBlock((unsigned char *)out, md, 20);
}

/* ---- responses -------------------------------------------------------- */

const char *cfd_http_reason(int status) {
  switch (status) {
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* A Content-Type value must not smuggle in a line end. */
static int value_ok(const char *s) {
  for (; *s != '\0'; s++)
    if (!is_value_char((unsigned char)*s))
      return 0;
  return 1;
}

/*
 * extra must be whole "Name: value\r\n" lines so that the head stays
 * well-formed: no bare CR/LF, no blank line ending the head early.
 */
static int extra_ok(const char *s) {
  while (*s != '\0') {
    const char *name = s;
    while (is_tchar((unsigned char)*s))
      s++;
    if (s == name || *s++ != ':')
      return 0;
    while (*s != '\0' && is_value_char((unsigned char)*s))
      s++;
    if (s[0] != '\r' || s[1] != '\n')
      return 0;
    s += 2;
  }
  return 1;
}

int cfd_http_head(char *buf, size_t cap, int status, const char *ctype,
                  size_t body_len, const char *extra) {
  int n;
  if (buf == NULL || status < 100 || status > 999 ||
      (ctype != NULL && !value_ok(ctype)) ||
      (extra != NULL && !extra_ok(extra)))
    return -1;
  n = snprintf(buf, cap,
               "HTTP/1.1 %d %s\r\n"
               "%s%s%s"
               "Content-Length: %zu\r\n"
               "Connection: close\r\n"
               "Cache-Control: no-store\r\n"
               "%s\r\n",
               status, cfd_http_reason(status),
               ctype ? "Content-Type: " : "", ctype ? ctype : "",
               ctype ? "\r\n" : "", body_len, extra ? extra : "");
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return n;
}

int cfd_http_upgrade_head(char *buf, size_t cap, const char *accept) {
  int n;
  if (buf == NULL || accept == NULL || !value_ok(accept))
    return -1;
  n = snprintf(buf, cap,
               "HTTP/1.1 101 Switching Protocols\r\n"
               "Upgrade: websocket\r\n"
               "Connection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n"
               "\r\n",
               accept);
  if (n < 0 || (size_t)n >= cap)
    return -1;
  return n;
}
