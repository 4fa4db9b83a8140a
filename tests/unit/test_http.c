/*
 * cfd_http: the request parser against tables of good and bad heads,
 * each placed right before an unreadable page so that any read past the
 * end crashes; prefixes fed byte by byte; every routing and upgrade
 * answer of the README error table; origin policy; response heads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfd_http.h"

/* ---- guard page ---------------------------------------------------- */

#define GUARD_AVAIL (4 * 4096)

static char *g_base;
static size_t g_avail, g_page;

static int group_setup(void **state) {
  (void)state;
  g_page = (size_t)sysconf(_SC_PAGESIZE);
  g_avail = (GUARD_AVAIL + g_page - 1) / g_page * g_page;
  g_base = mmap(NULL, g_avail + g_page, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_base == MAP_FAILED)
    return -1;
  return mprotect(g_base + g_avail, g_page, PROT_NONE);
}

static int group_teardown(void **state) {
  (void)state;
  return munmap(g_base, g_avail + g_page);
}

/* Copies n bytes so that they end exactly where the guard page starts. */
static const char *guard(const char *s, size_t n) {
  char *p;
  assert_true(n <= g_avail);
  p = g_base + g_avail - n;
  memcpy(p, s, n);
  return p;
}

static int parse_n(const char *s, size_t n, cfd_http_request *req) {
  return cfd_http_parse(guard(s, n), n, req);
}

static int parse(const char *s, cfd_http_request *req) {
  return parse_n(s, strlen(s), req);
}

/* ---- parser tables ------------------------------------------------- */

typedef struct pcase {
  const char *in;
  size_t len;  /* 0: strlen(in) */
  int expect;  /* 0: complete with the whole input as head */
} pcase;

#define LEN(s) (sizeof(s) - 1)

static const pcase good[] = {
    {"GET / HTTP/1.1\r\n\r\n", 0, 0},
    {"GET /ws?room=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n", 0,
     0},
    {"GET / HTTP/1.0\nHost: a\n\n", 0, 0},
    {"GET / HTTP/1.1\r\nHost: a\n\r\n", 0, 0},
    {"\r\nGET / HTTP/1.1\r\n\r\n", 0, 0},
    {"\n\nGET / HTTP/1.1\n\n", 0, 0},
    {"M-SEARCH * HTTP/1.1\r\n\r\n", 0, 0},
    {"X!#$%&'*+-.^_`|~9 /a%20b?c=d&e HTTP/1.1\r\n\r\n", 0, 0},
    {"GET / HTTP/1.1\r\nX-Obs: \x80\xff caf\xc3\xa9\r\n\r\n", 0, 0},
    {"GET / HTTP/1.1\r\nX:\r\nY: \t \r\n\r\n", 0, 0},
    {"GET / HTTP/1.1\r\nX: a\tb  \t\r\n\r\n", 0, 0},
    {"GET / HTTP/1.1\r\n\r\nBODY", 0, (int)LEN("GET / HTTP/1.1\r\n\r\n")},
    {"GET / HTTP/1.1\n\nGET / HTTP/1.1\n\n", 0,
     (int)LEN("GET / HTTP/1.1\n\n")},
};

static const pcase bad[] = {
    {"GET  / HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /  HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {" GET / HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET\t/ HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.2\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/2.0\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / http/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1 \r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.10\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET\r\n\r\n", 0, CFD_HTTP_BAD},
    {"G(T / HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"G\"T / HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /\x01 HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /\x7f HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /\x80 HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET /a\0b HTTP/1.1\r\n\r\n", LEN("GET /a\0b HTTP/1.1\r\n\r\n"),
     CFD_HTTP_BAD},
    {"GET\0/ HTTP/1.1\r\n\r\n", LEN("GET\0/ HTTP/1.1\r\n\r\n"),
     CFD_HTTP_BAD},
    {"GET / HTTP/1.1\rX\r\n\r\n", 0, CFD_HTTP_BAD},
    {"\rGET / HTTP/1.1\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\0c\r\n\r\n",
     LEN("GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"), CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\n: x\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA(b: c\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\nA\x80: c\r\n\r\n", 0, CFD_HTTP_BAD},
    {"GET / HTTP/1.1\r\n\r\r\n", 0, CFD_HTTP_BAD},
};

static const pcase incomplete[] = {
    {"", 0, CFD_HTTP_INCOMPLETE},
    {"\r", 0, CFD_HTTP_INCOMPLETE},
    {"\r\n", 0, CFD_HTTP_INCOMPLETE},
    {"GET", 0, CFD_HTTP_INCOMPLETE},
    {"GET /", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\n", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\nHost", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\nHost:", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\nHost:  ", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\nHost: a\r\n", 0, CFD_HTTP_INCOMPLETE},
    {"GET / HTTP/1.1\r\nHost: a\r\n\r", 0, CFD_HTTP_INCOMPLETE},
};

static size_t case_len(const pcase *c) {
  return c->len ? c->len : strlen(c->in);
}

static int case_expect(const pcase *c) {
  return c->expect ? c->expect : (int)case_len(c);
}

static void run_table(const pcase *t, size_t n) {
  cfd_http_request req;
  size_t i;
  for (i = 0; i < n; i++) {
    int rc = parse_n(t[i].in, case_len(&t[i]), &req);
    if (rc != case_expect(&t[i]))
      print_error("case %zu: %d, expected %d\n", i, rc, case_expect(&t[i]));
    assert_int_equal(rc, case_expect(&t[i]));
  }
}

static void test_parse_good(void **state) {
  (void)state;
  run_table(good, sizeof good / sizeof good[0]);
}

static void test_parse_bad(void **state) {
  (void)state;
  run_table(bad, sizeof bad / sizeof bad[0]);
}

static void test_parse_incomplete(void **state) {
  (void)state;
  run_table(incomplete, sizeof incomplete / sizeof incomplete[0]);
}

/* Every proper prefix of a good head is incomplete, then it completes. */
static void test_parse_byte_by_byte(void **state) {
  cfd_http_request req;
  size_t i, k;
  (void)state;
  for (i = 0; i < sizeof good / sizeof good[0]; i++) {
    size_t head = (size_t)case_expect(&good[i]);
    for (k = 0; k < head; k++)
      assert_int_equal(parse_n(good[i].in, k, &req), CFD_HTTP_INCOMPLETE);
    for (; k <= case_len(&good[i]); k++)
      assert_int_equal(parse_n(good[i].in, k, &req), (int)head);
  }
}

/* A bad head never looks complete; once bad, longer prefixes stay bad. */
static void test_parse_bad_prefixes(void **state) {
  cfd_http_request req;
  size_t i, k;
  (void)state;
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int was_bad = 0;
    for (k = 0; k <= case_len(&bad[i]); k++) {
      int rc = parse_n(bad[i].in, k, &req);
      assert_true(rc == CFD_HTTP_INCOMPLETE || rc == CFD_HTTP_BAD);
      if (was_bad)
        assert_int_equal(rc, CFD_HTTP_BAD);
      was_bad |= rc == CFD_HTTP_BAD;
    }
    assert_true(was_bad);
  }
}

/* xorshift: a fixed sequence, so a failure reproduces. */
static uint32_t rnd(uint32_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 17;
  *s ^= *s << 5;
  return *s;
}

static void check_spans(const cfd_http_request *req, const char *buf,
                        size_t len, int rc) {
  size_t i;
  cfd_route r;
  assert_true((size_t)rc <= len);
  assert_true(req->target >= buf &&
              req->target + req->target_len <= buf + rc);
  for (i = 0; i < req->num_headers; i++) {
    const cfd_http_header *h = &req->headers[i];
    assert_true(h->name >= buf && h->name + h->name_len <= buf + rc);
    assert_true(h->value >= buf && h->value + h->value_len <= buf + rc);
  }
  /* Whatever parsed must route to a status without crashing. */
  rc = cfd_http_route(req, NULL, &r);
  assert_true(rc == 0 || (rc >= 400 && rc <= 500));
}

/*
 * Random byte flips, insertions of CR/LF/NUL/space and truncations of
 * valid heads: the parser must stay inside the buffer (guard page) and
 * return one of its documented results.
 */
static void test_parse_mutations(void **state) {
  static const char *const seeds[] = {
      "GET /ws?room=a HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: " "dGhlIHNhbXBsZSBub25jZQ=="
      "\r\nSec-WebSocket-Version: 13\r\nOrigin: http://h:1\r\n\r\n",
      "HEAD /metrics HTTP/1.0\nA: b\n\n",
  };
  static const char inject[] = "\r\n\0 \t:\x7f\x80=&?/[]";
  char buf[512];
  cfd_http_request req;
  uint32_t seed = 0x9e3779b9u;
  int iter, k;
  (void)state;
  for (iter = 0; iter < 20000; iter++) {
    const char *src = seeds[iter % 2];
    size_t len = strlen(src), pos;
    const char *p;
    int rc;
    memcpy(buf, src, len);
    for (k = (int)(rnd(&seed) % 4) + 1; k > 0; k--) {
      pos = rnd(&seed) % len;
      if (rnd(&seed) % 2)
        buf[pos] = (char)(rnd(&seed) & 0xff);
      else
        buf[pos] = inject[rnd(&seed) % (sizeof inject - 1)];
    }
    if (rnd(&seed) % 4 == 0)
      len = rnd(&seed) % len;
    p = guard(buf, len);
    rc = cfd_http_parse(p, len, &req);
    assert_true(rc == CFD_HTTP_INCOMPLETE || rc == CFD_HTTP_BAD ||
                rc == CFD_HTTP_TOO_MANY_HEADERS || rc > 0);
    if (rc > 0)
      check_spans(&req, p, len, rc);
  }
}

static void assert_span(const char *p, size_t n, const char *want) {
  assert_int_equal(n, strlen(want));
  assert_memory_equal(p, want, n);
}

static void test_parse_fields(void **state) {
  static const char in[] = "\r\nPOST /ws?room=a HTTP/1.0\r\n"
                           "Host:example.com:80\r\n"
                           "X-Empty:\r\n"
                           "X-Pad: \t v a l \t \r\n"
                           "x-obs: \xc3\xa9\xff\r\n"
                           "\r\n";
  cfd_http_request req;
  (void)state;
  assert_int_equal(parse_n(in, LEN(in), &req), (int)LEN(in));
  assert_span(req.method, req.method_len, "POST");
  assert_span(req.target, req.target_len, "/ws?room=a");
  assert_int_equal(req.minor_version, 0);
  assert_int_equal(req.num_headers, 4);
  assert_span(req.headers[0].name, req.headers[0].name_len, "Host");
  assert_span(req.headers[0].value, req.headers[0].value_len,
              "example.com:80");
  assert_span(req.headers[1].name, req.headers[1].name_len, "X-Empty");
  assert_int_equal(req.headers[1].value_len, 0);
  assert_span(req.headers[2].value, req.headers[2].value_len, "v a l");
  assert_span(req.headers[3].value, req.headers[3].value_len,
              "\xc3\xa9\xff");
  /* Results point into the buffer: nothing was copied. */
  assert_true(req.headers[0].name >= g_base &&
              req.headers[0].name < g_base + g_avail);
}

static size_t build_headers(char *buf, size_t cap, int n) {
  size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\n");
  int i;
  for (i = 0; i < n; i++)
    len += (size_t)snprintf(buf + len, cap - len, "H%d: v\r\n", i);
  len += (size_t)snprintf(buf + len, cap - len, "\r\n");
  return len;
}

static void test_parse_header_limit(void **state) {
  char buf[4096];
  cfd_http_request req;
  size_t n;
  (void)state;
  n = build_headers(buf, sizeof buf, CFD_HTTP_MAX_HEADERS);
  assert_int_equal(parse_n(buf, n, &req), (int)n);
  assert_int_equal(req.num_headers, CFD_HTTP_MAX_HEADERS);
  n = build_headers(buf, sizeof buf, CFD_HTTP_MAX_HEADERS + 1);
  assert_int_equal(parse_n(buf, n, &req), CFD_HTTP_TOO_MANY_HEADERS);
  /* Known as soon as the 65th header begins. */
  n = build_headers(buf, sizeof buf, CFD_HTTP_MAX_HEADERS);
  memcpy(buf + n - 2, "X", 1);
  assert_int_equal(parse_n(buf, n - 1, &req), CFD_HTTP_TOO_MANY_HEADERS);
}

static void test_parse_args(void **state) {
  cfd_http_request req;
  (void)state;
  assert_int_equal(cfd_http_parse("GET", 3, NULL), CFD_HTTP_BAD);
  assert_int_equal(cfd_http_parse(NULL, 0, &req), CFD_HTTP_INCOMPLETE);
  assert_int_equal(cfd_http_parse(NULL, 5, &req), CFD_HTTP_BAD);
}

static void test_overflow_status(void **state) {
  char buf[CFD_HTTP_HEAD_MAX];
  (void)state;
  memset(buf, 'a', sizeof buf);
  memcpy(buf, "GET /", 5);
  assert_int_equal(cfd_http_overflow_status(guard(buf, sizeof buf),
                                            sizeof buf), 414);
  memcpy(buf + 100, " HTTP/1.1\r\nX: ", 14);
  assert_int_equal(cfd_http_overflow_status(guard(buf, sizeof buf),
                                            sizeof buf), 431);
  memcpy(buf, "\r\n\r\nGET /", 9);
  memset(buf + 9, 'a', 200);
  assert_int_equal(cfd_http_overflow_status(guard(buf, sizeof buf),
                                            sizeof buf), 414);
  assert_int_equal(cfd_http_overflow_status(guard("", 0), 0), 414);
}

/* ---- header helpers --------------------------------------------------- */

static void test_has_token(void **state) {
  (void)state;
#define TOK(v, t) cfd_http_has_token(v, strlen(v), t)
  assert_true(TOK("Upgrade", "upgrade"));
  assert_true(TOK("keep-alive, Upgrade", "upgrade"));
  assert_true(TOK("a ,\tb\t, c", "b"));
  assert_true(TOK(",,websocket,", "WebSocket"));
  assert_false(TOK("upgrades", "upgrade"));
  assert_false(TOK("upgrade-x, y", "upgrade"));
  assert_false(TOK("", "upgrade"));
  assert_false(TOK("a b", "a"));
  assert_false(TOK("a", ""));
#undef TOK
  /* len bounds the scan, not a NUL. */
  assert_false(cfd_http_has_token("upgradeX", 6, "upgrade"));
  assert_true(cfd_http_has_token(guard("x, upgrade", 10), 10, "upgrade"));
  assert_false(cfd_http_has_token(NULL, 0, "a"));
}

static void test_find(void **state) {
  cfd_http_request req;
  const cfd_http_header *h;
  (void)state;
  assert_true(parse("GET / HTTP/1.1\r\nHOST: a\r\nhost: b\r\nX: y\r\n\r\n",
                    &req) > 0);
  h = cfd_http_find(&req, "Host");
  assert_non_null(h);
  assert_span(h->value, h->value_len, "a");
  assert_null(cfd_http_find(&req, "Hos"));
  assert_null(cfd_http_find(&req, "Hostx"));
  assert_null(cfd_http_find(&req, "Origin"));
  assert_null(cfd_http_find(NULL, "Host"));
}

/* ---- routing ---------------------------------------------------------- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static int route(const char *head, const cfd_origin_policy *pol,
                 cfd_route *r) {
  cfd_http_request req;
  int n = parse(head, &req);
  if (n <= 0)
    print_error("unparsable: %s\n", head);
  assert_true(n > 0);
  return cfd_http_route(&req, pol, r);
}

/* A GET /ws upgrade with one header line replaced or removed. */
static int route_ws(const char *target, const char *version,
                    const char *headers, const cfd_origin_policy *pol,
                    cfd_route *r) {
  char buf[2048];
  snprintf(buf, sizeof buf, "GET %s HTTP/%s\r\n%s\r\n", target, version,
           headers);
  return route(buf, pol, r);
}

#define H_HOST "Host: chat.example:8080\r\n"
#define H_UPG "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_KEY "Sec-WebSocket-Key: " KEY "\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_ALL H_HOST H_UPG H_CONN H_KEY H_VER

static void expect_ws(const char *target, const char *headers,
                      const char *room) {
  cfd_route r;
  assert_int_equal(route_ws(target, "1.1", headers, NULL, &r), 0);
  assert_int_equal(r.kind, CFD_ROUTE_WS);
  assert_int_equal(r.head_only, 0);
  assert_string_equal(r.room, room);
  assert_int_equal(r.room_len, strlen(room));
  assert_string_equal(r.accept, ACCEPT);
  assert_string_equal(r.extra, "");
}

static void expect_status(const char *target, const char *version,
                          const char *headers, int status,
                          const char *extra) {
  cfd_route r;
  int rc = route_ws(target, version, headers, NULL, &r);
  if (rc != status)
    print_error("%s %s: %d, expected %d\n", target, headers, rc, status);
  assert_int_equal(rc, status);
  assert_string_equal(r.extra, extra);
}

static void test_route_plain(void **state) {
  static const struct {
    const char *head;
    int kind, head_only;
  } ok[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_PAGE, 0},
      {"HEAD / HTTP/1.1\r\nhost:\r\n\r\n", CFD_ROUTE_PAGE, 1},
      {"GET /?x=1 HTTP/1.0\r\n\r\n", CFD_ROUTE_PAGE, 0},
      {"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_HEALTH, 0},
      {"HEAD /healthz?room=a&room=b HTTP/1.0\r\nHost: a\r\n\r\n",
       CFD_ROUTE_HEALTH, 1},
      {"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_METRICS, 0},
      {"HEAD /metrics? HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_METRICS,
       1},
  };
  static const char *const no_host[] = {
      "GET / HTTP/1.1\r\n\r\n",
      "HEAD /metrics HTTP/1.1\r\nX-Host: a\r\n\r\n",
      "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
      "GET /healthz HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
  };
  cfd_route r;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(route(ok[i].head, NULL, &r), 0);
    assert_int_equal(r.kind, ok[i].kind);
    assert_int_equal(r.head_only, ok[i].head_only);
    assert_string_equal(r.extra, "");
  }
  for (i = 0; i < sizeof no_host / sizeof no_host[0]; i++) {
    assert_int_equal(route(no_host[i], NULL, &r), 400);
    assert_string_equal(r.extra, "");
  }
}

static void test_route_404_405(void **state) {
  static const struct {
    const char *head;
    int status;
    const char *extra;
  } t[] = {
      {"GET /nope HTTP/1.1\r\n\r\n", 404, ""},
      {"POST /nope HTTP/1.1\r\n\r\n", 404, ""},
      {"GET /ws/ HTTP/1.1\r\n\r\n", 404, ""},
      {"GET /WS HTTP/1.1\r\n\r\n", 404, ""},
      {"GET /healthz/ HTTP/1.1\r\n\r\n", 404, ""},
      {"GET //ws HTTP/1.1\r\n\r\n", 404, ""},
      {"GET /ws#x HTTP/1.1\r\n\r\n", 404, ""},
      {"GET * HTTP/1.1\r\n\r\n", 404, ""},
      {"GET ftp://a/ HTTP/1.1\r\n\r\n", 404, ""},
      {"GET http:/a/ HTTP/1.1\r\n\r\n", 404, ""},
      {"GET http://a/nope HTTP/1.1\r\n\r\n", 404, ""},
      {"POST http://a/ HTTP/1.1\r\n\r\n", 405, "Allow: GET, HEAD\r\n"},
      {"POST / HTTP/1.1\r\n\r\n", 405, "Allow: GET, HEAD\r\n"},
      {"DELETE /metrics HTTP/1.1\r\n\r\n", 405, "Allow: GET, HEAD\r\n"},
      {"OPTIONS /healthz?x HTTP/1.1\r\n\r\n", 405, "Allow: GET, HEAD\r\n"},
      {"get / HTTP/1.1\r\n\r\n", 405, "Allow: GET, HEAD\r\n"},
      {"HEAD /ws HTTP/1.1\r\n" H_ALL "\r\n", 405, "Allow: GET\r\n"},
      {"POST /ws?room=a HTTP/1.1\r\n" H_ALL "\r\n", 405,
       "Allow: GET, HEAD\r\n"},
  };
  cfd_route r;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    assert_int_equal(route(t[i].head, NULL, &r), t[i].status);
    assert_string_equal(r.extra, t[i].extra);
  }
}

static void test_route_ws_ok(void **state) {
  (void)state;
  expect_ws("/ws", H_ALL, "lobby");
  expect_ws("/ws?", H_ALL, "lobby");
  expect_ws("/ws?room=abc_.-XYZ09", H_ALL, "abc_.-XYZ09");
  expect_ws("/ws?x=1&room=r&y", H_ALL, "r");
  expect_ws("/ws?&&room=z&", H_ALL, "z");
  expect_ws("/ws?rooms=x&Room=y&xroom=z", H_ALL, "lobby");
  expect_ws("/ws?room="
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            H_ALL,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  /* Token lists, case, several lines, extra headers. */
  expect_ws("/ws", H_HOST "upgrade: h2c, WebSocket\r\n"
                   "connection: keep-alive, upgrade\r\n" H_KEY H_VER
                   "Sec-WebSocket-Protocol: chat\r\n",
            "lobby");
  expect_ws("/ws", H_HOST "Upgrade: websocket\r\nConnection: keep-alive\r\n"
                   "Connection: Upgrade\r\n" H_KEY H_VER,
            "lobby");
}

/* RFC 9112 3.2.2: an absolute-form target routes on its path. */
static void test_route_absolute_form(void **state) {
  static const struct {
    const char *head;
    int kind, head_only;
  } ok[] = {
      {"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_PAGE, 0},
      {"GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_PAGE, 0},
      {"GET http://a?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", CFD_ROUTE_PAGE, 0},
      {"HEAD HTTP://A:8080/healthz?x HTTP/1.1\r\nHost: a\r\n\r\n",
       CFD_ROUTE_HEALTH, 1},
      {"GET https://[::1]:9/metrics HTTP/1.0\r\n\r\n", CFD_ROUTE_METRICS,
       0},
      /* The authority, not Host, names the origin; Host is still
       * required by HTTP/1.1 and its value ignored. */
      {"GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", CFD_ROUTE_PAGE, 0},
  };
  static const char *const bad[] = {
      "GET http://a/ HTTP/1.1\r\n\r\n",
      "GET http:///ws HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http:// HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://u:p@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://a:x/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://a:99999/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "GET http://a#f/ HTTP/1.1\r\nHost: a\r\n\r\n",
      "POST http://u@a/nope HTTP/1.1\r\nHost: a\r\n\r\n",
  };
  cfd_route r;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(route(ok[i].head, NULL, &r), 0);
    assert_int_equal(r.kind, ok[i].kind);
    assert_int_equal(r.head_only, ok[i].head_only);
  }
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (route(bad[i], NULL, &r) != 400)
      print_error("not 400: %s\n", bad[i]);
    assert_int_equal(route(bad[i], NULL, &r), 400);
  }
  expect_ws("http://chat.example:8080/ws?room=abc", H_ALL, "abc");
  expect_ws("HTTPS://chat.example/ws", H_ALL, "lobby");
  expect_ws("http://chat.example/ws?room=%41b", H_ALL, "Ab");
  expect_status("http://chat.example/ws?room=a%2F", "1.1", H_ALL, 400, "");
  expect_status("http://chat.example/wss", "1.1", H_ALL, 404, "");
}

/* The room value is percent-decoded, for room characters only. */
static void test_route_room_decoding(void **state) {
  static const char *const bad[] = {
      "%", "%4", "%4g", "%G1", "a%", "a%2", "%%41", "%2F", "%20", "%00",
      "%7E", "%25", "%2B", "%C3%A9", "%41%", "%0a",
  };
  char t[512];
  size_t i;
  (void)state;
  expect_ws("/ws?room=%41", H_ALL, "A");
  expect_ws("/ws?room=a%2Db%2e%5F%5f", H_ALL, "a-b.__");
  expect_ws("/ws?room=%30%39%7a%5A", H_ALL, "09zZ");
  expect_ws("/ws?x=%ZZ&room=r%6Fom", H_ALL, "room");
  /* The limit is 64 decoded characters. */
  strcpy(t, "/ws?room=");
  for (i = 0; i < 64; i++)
    strcat(t, "%61");
  expect_ws(t, H_ALL,
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  strcat(t, "a");
  expect_status(t, "1.1", H_ALL, 400, "");
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(t, sizeof t, "/ws?room=%s", bad[i]);
    expect_status(t, "1.1", H_ALL, 400, "");
  }
}

static void test_route_ws_errors(void **state) {
  static const char *const bad_rooms[] = {
      "/ws?room=", "/ws?room", "/ws?room=a&room=b", "/ws?room=a&room=a",
      "/ws?room=a%20b", "/ws?room=a/b", "/ws?room=caf%C3%A9",
      "/ws?room=a+b", "/ws?room=a;b",
      "/ws?room="
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  static const char *const bad_keys[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ=",        /* 23 characters */
      "dGhlIHNhbXBsZSBub25jZQ===",      /* 25 */
      "dGhlIHNhbXBsZSBub25jZR==",       /* non-zero pad bits */
      "dGhlIHNhbXBsZSBub25jZQAA",       /* 18 bytes, no padding */
      "AAAAAAAAAAAAAAAAAAAAAAA=",       /* 17 bytes */
      "AAAAAAAAAAAAAAAAAAAA",           /* 15 bytes */
      "dGhlIHNhbXBsZSBub25j-Q==",       /* URL-safe alphabet */
      "dGhlIHNhbXBsZSBub25j ZQ==",
  };
  char h[512];
  size_t i;
  (void)state;
  expect_status("/ws", "1.0", H_ALL, 400, "");
  expect_status("/ws", "1.1", H_HOST H_CONN H_KEY H_VER, 426,
                "Upgrade: websocket\r\n");
  expect_status("/ws", "1.1", H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER,
                426, "Upgrade: websocket\r\n");
  expect_status("/ws", "1.1", H_HOST "Upgrade: websocket/13\r\n" H_CONN
                H_KEY H_VER, 426, "Upgrade: websocket\r\n");
  expect_status("/ws", "1.1", H_HOST H_UPG H_KEY H_VER, 400, "");
  expect_status("/ws", "1.1", H_HOST H_UPG "Connection: keep-alive\r\n"
                H_KEY H_VER, 400, "");
  expect_status("/ws", "1.1", H_UPG H_CONN H_KEY H_VER, 400, "");
  expect_status("/ws", "1.1", "Host:\r\n" H_UPG H_CONN H_KEY H_VER, 400, "");
  expect_status("/ws", "1.1", H_HOST H_ALL, 400, "");
  expect_status("/ws", "1.1", H_HOST H_UPG H_CONN H_VER, 400, "");
  expect_status("/ws", "1.1", H_ALL H_KEY, 400, "");
  expect_status("/ws", "1.1", H_HOST H_UPG H_CONN H_KEY, 400,
                "Sec-WebSocket-Version: 13\r\n");
  expect_status("/ws", "1.1", H_HOST H_UPG H_CONN H_KEY
                "Sec-WebSocket-Version: 8\r\n", 400,
                "Sec-WebSocket-Version: 13\r\n");
  expect_status("/ws", "1.1", H_HOST H_UPG H_CONN H_KEY
                "Sec-WebSocket-Version: 13, 8\r\n", 400,
                "Sec-WebSocket-Version: 13\r\n");
  expect_status("/ws", "1.1", H_ALL H_VER, 400,
                "Sec-WebSocket-Version: 13\r\n");
  for (i = 0; i < sizeof bad_rooms / sizeof bad_rooms[0]; i++)
    expect_status(bad_rooms[i], "1.1", H_ALL, 400, "");
  for (i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
    snprintf(h, sizeof h, H_HOST H_UPG H_CONN "Sec-WebSocket-Key: %s\r\n"
             H_VER, bad_keys[i]);
    expect_status("/ws", "1.1", h, 400, "");
  }
  /* 426 wins over the other header checks; HTTP/1.0 over 426. */
  expect_status("/ws?room=", "1.1", "", 426, "Upgrade: websocket\r\n");
  expect_status("/ws", "1.0", "", 400, "");
}

/* ---- origin policy ----------------------------------------------------- */

static int route_origin_to(const char *target, const char *host,
                           const char *origin,
                           const cfd_origin_policy *pol) {
  char h[1024];
  cfd_route r;
  int n = snprintf(h, sizeof h, "Host: %s\r\n" H_UPG H_CONN H_KEY H_VER,
                   host);
  if (origin != NULL)
    snprintf(h + n, sizeof h - (size_t)n, "Origin: %s\r\n", origin);
  return route_ws(target, "1.1", h, pol, &r);
}

static int route_origin(const char *host, const char *origin,
                        const cfd_origin_policy *pol) {
  return route_origin_to("/ws", host, origin, pol);
}

static void test_origin_same(void **state) {
  cfd_origin_policy none = {NULL, 0};
  (void)state;
  assert_int_equal(route_origin("h:8080", NULL, NULL), 0);
  assert_int_equal(route_origin("h:8080", "http://h:8080", NULL), 0);
  assert_int_equal(route_origin("h:8080", "http://h:8080", &none), 0);
  assert_int_equal(route_origin("Chat.Example:8080",
                                "HTTPS://chat.example:8080", NULL), 0);
  assert_int_equal(route_origin("h", "http://h", NULL), 0);
  assert_int_equal(route_origin("h:80", "http://h", NULL), 0);
  assert_int_equal(route_origin("h", "http://h:80", NULL), 0);
  assert_int_equal(route_origin("h:443", "https://h", NULL), 0);
  assert_int_equal(route_origin("[::1]:8080", "http://[::1]:8080", NULL),
                   0);
  assert_int_equal(route_origin("127.0.0.1:9", "http://127.0.0.1:9", NULL),
                   0);
  assert_int_equal(route_origin("h:8080", "http://evil:8080", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://h:8081", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://h", NULL), 403);
  assert_int_equal(route_origin("h:80", "https://h", NULL), 403);
  /* Host carries no scheme: behind a TLS proxy "h" is https://h. */
  assert_int_equal(route_origin("h", "https://h", NULL), 0);
  assert_int_equal(route_origin("h:8080", "http://h:8080/", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://u@h:8080", NULL), 403);
  assert_int_equal(route_origin("h:8080", "ftp://h:8080", NULL), 403);
  assert_int_equal(route_origin("h:8080", "null", NULL), 403);
  assert_int_equal(route_origin("h:8080", "", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://h:8080x", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://h:99999", NULL), 403);
  assert_int_equal(route_origin("h:8080", "http://h.:8080", NULL), 403);
  assert_int_equal(route_origin("[::1]:8080", "http://[::2]:8080", NULL),
                   403);
}

/* With an absolute-form target its authority takes the place of Host,
 * a port left out being its scheme's default. */
static void test_origin_absolute_form(void **state) {
  (void)state;
  assert_int_equal(route_origin_to("http://h:8080/ws", "other:1",
                                   "http://h:8080", NULL), 0);
  assert_int_equal(route_origin_to("http://other:8080/ws", "h:8080",
                                   "http://h:8080", NULL), 403);
  assert_int_equal(route_origin_to("HTTP://H:8080/ws?room=a", "x",
                                   "http://h:8080", NULL), 0);
  assert_int_equal(route_origin_to("http://h/ws", "x", "http://h", NULL),
                   0);
  assert_int_equal(route_origin_to("http://h/ws", "x", "http://h:80",
                                   NULL), 0);
  assert_int_equal(route_origin_to("http://h:80/ws", "x", "http://h", NULL),
                   0);
  assert_int_equal(route_origin_to("http://h/ws", "x", "https://h", NULL),
                   403);
  assert_int_equal(route_origin_to("https://h/ws", "x", "https://h", NULL),
                   0);
  assert_int_equal(route_origin_to("https://h/ws", "x", "http://h", NULL),
                   403);
  assert_int_equal(route_origin_to("https://h/ws", "x", "http://h:443",
                                   NULL), 0);
  assert_int_equal(route_origin_to("http://[::1]:9/ws", "x",
                                   "http://[::1]:9", NULL), 0);
}

static void test_origin_list(void **state) {
  char *const one[] = {"https://a.example"};
  char *const any[] = {"https://a.example", "*"};
  cfd_origin_policy p_one = {one, 1}, p_any = {any, 2};
  cfd_route r;
  (void)state;
  assert_int_equal(route_origin("h", NULL, &p_one), 0);
  assert_int_equal(route_origin("h", "https://a.example", &p_one), 0);
  assert_int_equal(route_origin("h", "https://A.example", &p_one), 403);
  assert_int_equal(route_origin("h", "https://a.example:443", &p_one), 403);
  assert_int_equal(route_origin("h", "https://a.exampl", &p_one), 403);
  /* A list replaces the same-origin rule. */
  assert_int_equal(route_origin("h", "http://h", &p_one), 403);
  assert_int_equal(route_origin("h", "http://anything", &p_any), 0);
  assert_int_equal(route_origin("h", "null", &p_any), 0);
  /* Two Origin headers are ambiguous. */
  assert_int_equal(route_ws("/ws", "1.1",
                            H_ALL "Origin: https://a.example\r\n"
                                  "Origin: https://a.example\r\n",
                            &p_any, &r),
                   400);
}

/* ---- accept key and heads ---------------------------------------------- */

static void test_accept_key(void **state) {
  char out[29];
  (void)state;
  cfd_ws_accept_key(KEY, strlen(KEY), out);
  assert_string_equal(out, ACCEPT);
  /* Only key_len bytes count. */
  cfd_ws_accept_key(guard(KEY "garbage", 24), 24, out);
  assert_string_equal(out, ACCEPT);
  cfd_ws_accept_key("", 0, out);
  assert_int_equal(strlen(out), 28);
}

static void test_reason(void **state) {
  (void)state;
  assert_string_equal(cfd_http_reason(200), "OK");
  assert_string_equal(cfd_http_reason(101), "Switching Protocols");
  assert_string_equal(cfd_http_reason(400), "Bad Request");
  assert_string_equal(cfd_http_reason(403), "Forbidden");
  assert_string_equal(cfd_http_reason(404), "Not Found");
  assert_string_equal(cfd_http_reason(405), "Method Not Allowed");
  assert_string_equal(cfd_http_reason(408), "Request Timeout");
  assert_string_equal(cfd_http_reason(414), "URI Too Long");
  assert_string_equal(cfd_http_reason(426), "Upgrade Required");
  assert_string_equal(cfd_http_reason(431),
                      "Request Header Fields Too Large");
  assert_string_equal(cfd_http_reason(500), "Internal Server Error");
  assert_string_equal(cfd_http_reason(503), "Service Unavailable");
  assert_string_equal(cfd_http_reason(999), "Unknown");
  assert_string_equal(cfd_http_reason(-1), "Unknown");
}

static void test_head(void **state) {
  static const char want[] = "HTTP/1.1 405 Method Not Allowed\r\n"
                             "Content-Type: text/plain\r\n"
                             "Content-Length: 19\r\n"
                             "Connection: close\r\n"
                             "Cache-Control: no-store\r\n"
                             "Allow: GET, HEAD\r\n"
                             "\r\n";
  static const char want2[] = "HTTP/1.1 503 Service Unavailable\r\n"
                              "Content-Length: 0\r\n"
                              "Connection: close\r\n"
                              "Cache-Control: no-store\r\n"
                              "Retry-After: 1\r\n"
                              "X-A: b\r\n"
                              "\r\n";
  char buf[512];
  (void)state;
  assert_int_equal(cfd_http_head(buf, sizeof buf, 405, "text/plain", 19,
                                 "Allow: GET, HEAD\r\n"),
                   (int)LEN(want));
  assert_string_equal(buf, want);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 503, NULL, 0,
                                 "Retry-After: 1\r\nX-A: b\r\n"),
                   (int)LEN(want2));
  assert_string_equal(buf, want2);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 2, NULL) > 0,
                   1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 2, ""),
                   (int)strlen(buf));
  assert_non_null(strstr(buf, "Content-Length: 2\r\n"));
  /* Too small: the exact length does not leave room for the NUL. */
  assert_int_equal(cfd_http_head(buf, LEN(want), 405, "text/plain", 19,
                                 "Allow: GET, HEAD\r\n"),
                   -1);
  assert_int_equal(cfd_http_head(buf, LEN(want) + 1, 405, "text/plain",
                                 19, "Allow: GET, HEAD\r\n"),
                   (int)LEN(want));
  assert_int_equal(cfd_http_head(buf, 0, 200, NULL, 0, NULL), -1);
  /* Malformed pieces that would break or split the head. */
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 0, "A: b"),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 0, "\r\n"),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 0,
                                 "A: b\r\n\r\nX: y\r\n"),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 0,
                                 "A: b\nC: d\r\n"),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, NULL, 0,
                                 "A b: c\r\n"),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 200, "text/html\r\nX: y",
                                 0, NULL),
                   -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 99, NULL, 0, NULL), -1);
  assert_int_equal(cfd_http_head(buf, sizeof buf, 1000, NULL, 0, NULL), -1);
  assert_int_equal(cfd_http_head(NULL, 10, 200, NULL, 0, NULL), -1);
}

static void test_upgrade_head(void **state) {
  static const char want[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: " ACCEPT "\r\n"
                             "\r\n";
  char buf[256];
  (void)state;
  assert_int_equal(cfd_http_upgrade_head(buf, sizeof buf, ACCEPT),
                   (int)LEN(want));
  assert_string_equal(buf, want);
  assert_int_equal(cfd_http_upgrade_head(buf, LEN(want), ACCEPT), -1);
  assert_int_equal(cfd_http_upgrade_head(buf, sizeof buf, NULL), -1);
  assert_int_equal(cfd_http_upgrade_head(buf, sizeof buf, "a\r\nX: y"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_good),
      cmocka_unit_test(test_parse_bad),
      cmocka_unit_test(test_parse_incomplete),
      cmocka_unit_test(test_parse_byte_by_byte),
      cmocka_unit_test(test_parse_bad_prefixes),
      cmocka_unit_test(test_parse_mutations),
      cmocka_unit_test(test_parse_fields),
      cmocka_unit_test(test_parse_header_limit),
      cmocka_unit_test(test_parse_args),
      cmocka_unit_test(test_overflow_status),
      cmocka_unit_test(test_has_token),
      cmocka_unit_test(test_find),
      cmocka_unit_test(test_route_plain),
      cmocka_unit_test(test_route_404_405),
      cmocka_unit_test(test_route_ws_ok),
      cmocka_unit_test(test_route_absolute_form),
      cmocka_unit_test(test_route_room_decoding),
      cmocka_unit_test(test_route_ws_errors),
      cmocka_unit_test(test_origin_same),
      cmocka_unit_test(test_origin_absolute_form),
      cmocka_unit_test(test_origin_list),
      cmocka_unit_test(test_accept_key),
      cmocka_unit_test(test_reason),
      cmocka_unit_test(test_head),
      cmocka_unit_test(test_upgrade_head),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
