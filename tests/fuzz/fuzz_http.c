/*
 * The daemon's HTTP request head parser and router (cfd_http.c): what a
 * client sends before the upgrade. The head is parsed as the daemon
 * does, from a buffer of exactly the bytes received; a complete head is
 * routed under three Origin policies. Invariants: the parse stays in
 * the buffer, a prefix of a valid head is never "bad", and routing
 * answers either a route or a status the header documents.
 */
#include <string.h>

#include "cfd_http.h"
#include "fuzz_common.h"

static int in_buf(const char *p, size_t n, const char *buf, size_t len) {
  return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static void check_request(const cfd_http_request *req, const char *buf,
                          size_t len) {
  size_t i;
  FUZZ_CHECK(in_buf(req->method, req->method_len, buf, len));
  FUZZ_CHECK(req->method_len > 0);
  FUZZ_CHECK(in_buf(req->target, req->target_len, buf, len));
  FUZZ_CHECK(req->target_len > 0);
  FUZZ_CHECK(req->minor_version == 0 || req->minor_version == 1);
  FUZZ_CHECK(req->num_headers <= CFD_HTTP_MAX_HEADERS);
  for (i = 0; i < req->num_headers; i++) {
    const cfd_http_header *h = &req->headers[i];
    FUZZ_CHECK(in_buf(h->name, h->name_len, buf, len));
    FUZZ_CHECK(h->name_len > 0);
    FUZZ_CHECK(in_buf(h->value, h->value_len, buf, len));
  }
}

static int room_ok(const cfd_route *rt) {
  size_t i;
  if (rt->room_len < 1 || rt->room_len > CF_ROOM_MAX)
    return 0;
  if (rt->room[rt->room_len] != '\0')
    return 0;
  for (i = 0; i < rt->room_len; i++) {
    unsigned char c = (unsigned char)rt->room[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-'))
      return 0;
  }
  return 1;
}

static void check_route(const cfd_http_request *req,
                        const cfd_origin_policy *pol) {
  const cfd_http_header *key;
  char accept[29];
  cfd_route rt;
  int st;
  memset(&rt, 0xa5, sizeof rt);
  st = cfd_http_route(req, pol, &rt);
  FUZZ_CHECK(rt.extra != NULL);
  if (st != 0) {
    FUZZ_CHECK(st == 400 || st == 403 || st == 404 || st == 405 ||
               st == 426 || st == 500);
    FUZZ_CHECK(strcmp(cfd_http_reason(st), "Unknown") != 0);
    return;
  }
  FUZZ_CHECK(rt.kind >= CFD_ROUTE_PAGE && rt.kind <= CFD_ROUTE_WS);
  FUZZ_CHECK(rt.extra[0] == '\0');
  if (rt.kind == CFD_ROUTE_WS) {
    FUZZ_CHECK(!rt.head_only);
    FUZZ_CHECK(room_ok(&rt));
    FUZZ_CHECK(req->minor_version == 1);
    key = cfd_http_find(req, "Sec-WebSocket-Key");
    FUZZ_CHECK(key != NULL && key->value_len == 24);
    cfd_ws_accept_key(key->value, key->value_len, accept);
    FUZZ_CHECK(strlen(accept) == 28 && strcmp(accept, rt.accept) == 0);
  }
}

/* Every shorter prefix that ends a line must read as incomplete. */
static void check_prefixes(const char *buf, size_t head) {
  cfd_http_request req;
  size_t i;
  for (i = 0; i + 1 < head; i++) {
    if (buf[i] != '\n')
      continue;
    FUZZ_CHECK(cfd_http_parse(buf, i + 1, &req) == CFD_HTTP_INCOMPLETE);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char *const some[] = {"http://example.com", "null"};
  static char *const any[] = {"*"};
  const cfd_origin_policy pol_some = {some, 2};
  const cfd_origin_policy pol_any = {any, 1};
  cfd_http_request req;
  size_t n = size < CFD_HTTP_HEAD_MAX ? size : CFD_HTTP_HEAD_MAX;
  char *buf = fuzz_dup(data, n, 0);
  int rc = cfd_http_parse(buf, n, &req);

  if (rc > 0) {
    FUZZ_CHECK((size_t)rc <= n);
    check_request(&req, buf, (size_t)rc);
    FUZZ_CHECK(cfd_http_parse(buf, (size_t)rc, &req) == rc);
    check_prefixes(buf, (size_t)rc);
    check_route(&req, NULL);
    check_route(&req, &pol_some);
    check_route(&req, &pol_any);
  } else {
    FUZZ_CHECK(rc == CFD_HTTP_INCOMPLETE || rc == CFD_HTTP_BAD ||
               rc == CFD_HTTP_TOO_MANY_HEADERS);
    if (rc == CFD_HTTP_INCOMPLETE && n == CFD_HTTP_HEAD_MAX) {
      int st = cfd_http_overflow_status(buf, n);
      FUZZ_CHECK(st == 414 || st == 431);
    }
  }
  free(buf);
  return 0;
}
