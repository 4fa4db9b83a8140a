/*
 * cfd_log: lines are captured through a SOCK_SEQPACKET socket, which
 * keeps write(2) boundaries, so each received packet is exactly one
 * write: that proves one line is one write. JSON lines are parsed with
 * jansson to prove they are valid and that escaping round-trips.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "cfd_log.h"

static int g_sv[2];
static char g_line[2 * CFD_LOG_LINE_MAX];
static size_t g_len;

static int setup(void **state) {
  (void)state;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, g_sv) != 0)
    return -1;
  if (fcntl(g_sv[0], F_SETFL, O_NONBLOCK) != 0)
    return -1;
  cfd_log_set_fd(g_sv[1]);
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
  return 0;
}

/* Each test starts from debug/text with nothing left in the socket,
 * even when the one before failed half-way. */
static int reset(void **state) {
  char buf[CFD_LOG_LINE_MAX];
  (void)state;
  cfd_log_set_fd(g_sv[1]);
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
  while (recv(g_sv[0], buf, sizeof buf, 0) > 0)
    ;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  cfd_log_set_fd(2);
  cfd_log_setup(CFD_LOG_INFO, CFD_LOG_TEXT);
  close(g_sv[0]);
  close(g_sv[1]);
  return 0;
}

/* Receives the next write as one line; checks its shape. */
static const char *next_line(void) {
  ssize_t n = recv(g_sv[0], g_line, sizeof g_line - 1, 0);
  assert_true(n > 0);
  g_len = (size_t)n;
  g_line[g_len] = '\0';
  assert_true(g_len <= CFD_LOG_LINE_MAX);
  assert_int_equal(g_line[g_len - 1], '\n');
  assert_ptr_equal(strchr(g_line, '\n'), g_line + g_len - 1);
  return g_line;
}

static void no_line(void) {
  char c;
  assert_int_equal(recv(g_sv[0], &c, 1, 0), -1);
  assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
}

/* "2026-11-30T05:00:00.123Z": shape, and within a minute of now. */
static void check_ts(const char *ts) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
  struct tm tm;
  size_t i;
  time_t t;
  for (i = 0; i < sizeof shape - 1; i++) {
    if (shape[i] == 'd')
      assert_true(ts[i] >= '0' && ts[i] <= '9');
    else
      assert_int_equal(ts[i], shape[i]);
  }
  memset(&tm, 0, sizeof tm);
  tm.tm_year = atoi(ts) - 1900;
  tm.tm_mon = atoi(ts + 5) - 1;
  tm.tm_mday = atoi(ts + 8);
  tm.tm_hour = atoi(ts + 11);
  tm.tm_min = atoi(ts + 14);
  tm.tm_sec = atoi(ts + 17);
  t = timegm(&tm);
  /* time() may read a coarse clock a tick behind CLOCK_REALTIME. */
  if (!(t <= time(NULL) + 1 && time(NULL) - t < 60))
    print_error("ts %.24s is %lld, now %lld\n", ts, (long long)t,
                (long long)time(NULL));
  assert_true(t <= time(NULL) + 1 && time(NULL) - t < 60);
}

/* The text line after its timestamp. */
static const char *text_rest(void) {
  const char *l = next_line();
  check_ts(l);
  assert_int_equal(l[24], ' ');
  return l + 24;
}

static json_t *json_line(void) {
  json_error_t err;
  json_t *j = json_loads(next_line(), JSON_REJECT_DUPLICATES, &err);
  if (j == NULL)
    print_error("invalid JSON (%s): %s\n", err.text, g_line);
  assert_non_null(j);
  assert_true(json_is_object(j));
  assert_int_equal(g_line[g_len - 2], '}');
  return j;
}

static const char *jstr(json_t *j, const char *key) {
  json_t *v = json_object_get(j, key);
  assert_non_null(v);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

/* ---- text ----------------------------------------------------------- */

static void test_text_basic(void **state) {
  (void)state;
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
  cfd_log(CFD_LOG_INFO, "listening", "url", "http://127.0.0.1:8080/", NULL);
  assert_string_equal(text_rest(),
                      " info listening url=http://127.0.0.1:8080/\n");
  cfd_log(CFD_LOG_WARN, "m", "a", "1", "b", "2", NULL);
  assert_string_equal(text_rest(), " warn m a=1 b=2\n");
  cfd_log(CFD_LOG_ERROR, "m", NULL);
  assert_string_equal(text_rest(), " error m\n");
  cfd_log(CFD_LOG_DEBUG, "client closed", "code", "1000", NULL);
  assert_string_equal(text_rest(), " debug \"client closed\" code=1000\n");
  /* A NULL value ends the list and shows as empty. */
  cfd_log(CFD_LOG_INFO, "m", "a", "1", "b", NULL);
  assert_string_equal(text_rest(), " info m a=1 b=\"\"\n");
  /* Keys are sanitised rather than quoted. */
  cfd_log(CFD_LOG_INFO, "m", "a b=\"c", "1", "", "2", NULL);
  assert_string_equal(text_rest(), " info m a_b__c=1 _=2\n");
  cfd_log(CFD_LOG_INFO, NULL, NULL);
  assert_string_equal(text_rest(), " info \"\"\n");
  no_line();
}

static void test_text_quoting(void **state) {
  static const struct {
    const char *in, *out;
  } t[] = {
      {"plain", "plain"},
      {"a-b_c.d/e:f", "a-b_c.d/e:f"},
      {"a b", "\"a b\""},
      {"say \"hi\"", "\"say \\\"hi\\\"\""},
      {"a=b", "\"a=b\""},
      {"a\\b", "\"a\\\\b\""},
      {"l1\nl2\r\t", "\"l1\\nl2\\r\\t\""},
      {"\x01\x1b\x7f", "\"\\x01\\x1b\\x7f\""},
      {"", "\"\""},
      {"caf\xc3\xa9", "caf\xc3\xa9"},
      {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
      {"\xff", "\"\\xff\""},
      {"a\xc3", "\"a\\xc3\""},
      {"\xed\xa0\x80", "\"\\xed\\xa0\\x80\""},
      {"\xc0\xaf", "\"\\xc0\\xaf\""},
  };
  char want[256];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    cfd_log(CFD_LOG_INFO, "m", "k", t[i].in, NULL);
    snprintf(want, sizeof want, " info m k=%s\n", t[i].out);
    assert_string_equal(text_rest(), want);
  }
}

static void test_levels(void **state) {
  (void)state;
  cfd_log_setup(CFD_LOG_WARN, CFD_LOG_TEXT);
  assert_false(cfd_log_enabled(CFD_LOG_INFO));
  assert_false(cfd_log_enabled(CFD_LOG_DEBUG));
  assert_true(cfd_log_enabled(CFD_LOG_WARN));
  assert_true(cfd_log_enabled(CFD_LOG_ERROR));
  cfd_log(CFD_LOG_INFO, "hidden", NULL);
  cfd_log(CFD_LOG_DEBUG, "hidden", NULL);
  no_line();
  cfd_log(CFD_LOG_WARN, "shown", NULL);
  assert_string_equal(text_rest(), " warn shown\n");
  cfd_log(CFD_LOG_ERROR, "shown", NULL);
  assert_string_equal(text_rest(), " error shown\n");
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  cfd_log(CFD_LOG_WARN, "hidden", NULL);
  no_line();
  /* Out-of-range levels clamp, both in setup and per line. */
  cfd_log_setup(42, CFD_LOG_TEXT);
  cfd_log(99, "m", NULL);
  assert_string_equal(text_rest(), " debug m\n");
  cfd_log(-3, "m", NULL);
  assert_string_equal(text_rest(), " error m\n");
  cfd_log_setup(-1, CFD_LOG_TEXT);
  cfd_log(CFD_LOG_WARN, "hidden", NULL);
  no_line();
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
}

static void test_parse_names(void **state) {
  (void)state;
  assert_int_equal(cfd_log_level_parse("error"), CFD_LOG_ERROR);
  assert_int_equal(cfd_log_level_parse("warn"), CFD_LOG_WARN);
  assert_int_equal(cfd_log_level_parse("info"), CFD_LOG_INFO);
  assert_int_equal(cfd_log_level_parse("DEBUG"), CFD_LOG_DEBUG);
  assert_int_equal(cfd_log_level_parse("warning"), -1);
  assert_int_equal(cfd_log_level_parse(""), -1);
  assert_int_equal(cfd_log_level_parse(NULL), -1);
  assert_int_equal(cfd_log_format_parse("text"), CFD_LOG_TEXT);
  assert_int_equal(cfd_log_format_parse("JSON"), CFD_LOG_JSON);
  assert_int_equal(cfd_log_format_parse("yaml"), -1);
  assert_int_equal(cfd_log_format_parse(NULL), -1);
}

/* ---- JSON ----------------------------------------------------------- */

static void test_json_basic(void **state) {
  json_t *j;
  (void)state;
  cfd_log_setup(CFD_LOG_INFO, CFD_LOG_JSON);
  cfd_log(CFD_LOG_INFO, "listening", "url", "http://127.0.0.1:8080/", NULL);
  j = json_line();
  check_ts(jstr(j, "ts"));
  assert_string_equal(jstr(j, "level"), "info");
  assert_string_equal(jstr(j, "msg"), "listening");
  assert_string_equal(jstr(j, "url"), "http://127.0.0.1:8080/");
  assert_int_equal(json_object_size(j), 4);
  json_decref(j);
  cfd_log(CFD_LOG_WARN, "m", "a", "1", "b", NULL);
  j = json_line();
  assert_string_equal(jstr(j, "level"), "warn");
  assert_string_equal(jstr(j, "a"), "1");
  assert_true(json_is_null(json_object_get(j, "b")));
  json_decref(j);
  cfd_log(CFD_LOG_DEBUG, "hidden", NULL);
  no_line();
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
}

static void test_json_escaping(void **state) {
  static const struct {
    const char *in, *out; /* out NULL: same as in */
  } t[] = {
      {"plain", NULL},
      {"q\"b\\s/", NULL},
      {"\n\r\t\b\f", NULL},
      {"\x01\x1f\x7f", NULL},
      {"a b=c", NULL},
      {"caf\xc3\xa9 \xf0\x9f\x98\x80", NULL},
      {"a\xff" "b", "a\xef\xbf\xbd" "b"},
      {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},
      {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
      {"x\xe2\x82", "x\xef\xbf\xbd\xef\xbf\xbd"},
  };
  size_t i;
  json_t *j;
  (void)state;
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_JSON);
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    cfd_log(CFD_LOG_INFO, t[i].in, "k\"\n\xff", t[i].in, NULL);
    j = json_line();
    assert_string_equal(jstr(j, "msg"), t[i].out ? t[i].out : t[i].in);
    assert_string_equal(jstr(j, "k\"\n\xef\xbf\xbd"),
                        t[i].out ? t[i].out : t[i].in);
    json_decref(j);
    /* Raw control bytes never reach the line. */
    assert_null(memchr(g_line, '\x01', g_len));
    assert_null(memchr(g_line, '\x7f', g_len));
  }
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
}

/* ---- limits ------------------------------------------------------------ */

static char *repeat(const char *unit, size_t n) {
  size_t ul = strlen(unit), i;
  char *s = malloc(ul * n + 1);
  assert_non_null(s);
  for (i = 0; i < n; i++)
    memcpy(s + i * ul, unit, ul);
  s[ul * n] = '\0';
  return s;
}

static void test_text_truncation(void **state) {
  char *big = repeat("a", 5000), *want;
  const char *l;
  (void)state;
  cfd_log(CFD_LOG_INFO, "m", "k", big, "next", "1", NULL);
  l = text_rest();
  want = repeat("a", CFD_LOG_VALUE_MAX);
  assert_int_equal(strncmp(l, " info m k=", 10), 0);
  assert_int_equal(strncmp(l + 10, want, CFD_LOG_VALUE_MAX), 0);
  assert_string_equal(l + 10 + CFD_LOG_VALUE_MAX, "... next=1\n");
  free(want);
  /* Too many long fields: the line stops at the limit. */
  cfd_log(CFD_LOG_INFO, "m", "a", big, "b", big, "c", big, "d", big, "e",
          big, NULL);
  l = text_rest();
  assert_true(g_len <= CFD_LOG_LINE_MAX);
  assert_true(g_len > CFD_LOG_LINE_MAX - 64);
  assert_null(strstr(l, " e="));
  assert_string_equal(g_line + g_len - 4, "...\n");
  free(big);
}

static void test_json_truncation(void **state) {
  static const char *const units[] = {"a", "\xc3\xa9", "\"", "\x01",
                                      "\xf0\x9f\x98\x80", "\xff"};
  size_t u;
  json_t *j;
  (void)state;
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_JSON);
  for (u = 0; u < sizeof units / sizeof units[0]; u++) {
    char *big = repeat(units[u], 3000);
    const char *v;
    cfd_log(CFD_LOG_INFO, big, "k", big, "next", "1", NULL);
    j = json_line();
    v = jstr(j, "k");
    assert_true(strlen(v) > 3);
    assert_string_equal(v + strlen(v) - 3, "...");
    assert_string_equal(jstr(j, "next"), "1");
    json_decref(j);
    cfd_log(CFD_LOG_INFO, "m", "a", big, "b", big, "c", big, "d", big, "e",
            big, NULL);
    j = json_line();
    assert_null(json_object_get(j, "e"));
    assert_non_null(json_object_get(j, "a"));
    json_decref(j);
    free(big);
  }
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
}

/*
 * Walks the end of the line across the limit one byte at a time, with
 * several escape densities, so every way a field can meet the limit
 * (in its key, its separators, its value, its closing quote) is hit.
 */
static void test_limit_sweep(void **state) {
  static const char *const units[] = {"a", "\"", "\xc3\xa9", " "};
  char *fill = repeat("x", 1000), *fill4 = repeat("x", 880);
  size_t u, n;
  int fmt;
  (void)state;
  /* The fill leaves 120-170 bytes: n below 200 crosses the limit. */
  for (fmt = CFD_LOG_TEXT; fmt <= CFD_LOG_JSON; fmt++) {
    cfd_log_setup(CFD_LOG_DEBUG, fmt);
    for (u = 0; u < sizeof units / sizeof units[0]; u++) {
      for (n = 0; n < 200; n++) {
        char *v = repeat(units[u], n);
        cfd_log(CFD_LOG_INFO, "m", "f1", fill, "f2", fill, "f3", fill,
                "f4", fill4, "key4", v, "key5", "tail", NULL);
        if (fmt == CFD_LOG_JSON)
          json_decref(json_line());
        else
          text_rest();
        free(v);
      }
    }
  }
  free(fill);
  free(fill4);
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
}

static void test_long_key_and_msg(void **state) {
  char *big = repeat("k", 5000);
  json_t *j;
  (void)state;
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_JSON);
  cfd_log(CFD_LOG_INFO, "m", big, "v", NULL);
  j = json_line();
  assert_int_equal(json_object_size(j), 3); /* field dropped, not cut */
  json_decref(j);
  cfd_log(CFD_LOG_INFO, big, "a", "1", NULL);
  j = json_line();
  assert_int_equal(strlen(jstr(j, "msg")), CFD_LOG_VALUE_MAX + 3);
  assert_string_equal(jstr(j, "a"), "1");
  json_decref(j);
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
  cfd_log(CFD_LOG_INFO, "m", big, "v", NULL);
  assert_string_equal(text_rest(), " info m\n");
  free(big);
}

static void test_errno_kept(void **state) {
  (void)state;
  errno = 1234;
  cfd_log(CFD_LOG_INFO, "m", NULL);
  assert_int_equal(errno, 1234);
  text_rest();
  /* A write that fails is silent and keeps errno too. */
  cfd_log_set_fd(-1);
  errno = 77;
  cfd_log(CFD_LOG_ERROR, "lost", NULL);
  assert_int_equal(errno, 77);
  cfd_log_set_fd(g_sv[1]);
  no_line();
}

/* ---- never blocking ---------------------------------------------------- */

#define FLOOD 3000 /* lines of about 100 bytes: far more than 64 KiB */

/* Logs FLOOD numbered lines into fd that nobody reads; a blocking write
 * would hang here, and SIGALRM would end the test as a failure. */
static uint64_t flood(int fd) {
  uint64_t before;
  char n[16], pad[80];
  int i;
  memset(pad, 'p', sizeof pad - 1);
  pad[sizeof pad - 1] = '\0';
  cfd_log_set_fd(fd);
  cfd_log_setup(CFD_LOG_DEBUG, CFD_LOG_TEXT);
  before = cfd_log_dropped();
  alarm(10);
  for (i = 0; i < FLOOD; i++) {
    snprintf(n, sizeof n, "%d", i);
    cfd_log(CFD_LOG_INFO, "flood", "n", n, "pad", pad, NULL);
  }
  alarm(0);
  return cfd_log_dropped() - before;
}

static char g_acc[1 << 20];
static size_t g_acc_len;

/* Appends everything fd has now (it is non-blocking) to g_acc. */
static void read_all(int fd) {
  ssize_t r;
  while ((r = read(fd, g_acc + g_acc_len, sizeof g_acc - 1 - g_acc_len)) >
         0)
    g_acc_len += (size_t)r;
  g_acc[g_acc_len] = '\0';
}

/*
 * Checks that g_acc (then emptied) is whole "flood" lines with
 * increasing n; returns how many, *last the last n.
 */
static int acc_lines(int *last) {
  char *p, *nl, *buf = g_acc;
  size_t len = g_acc_len;
  int count = 0, n;
  g_acc_len = 0;
  *last = -1;
  for (p = buf; p < buf + len; p = nl + 1) {
    nl = strchr(p, '\n');
    assert_non_null(nl);
    check_ts(p);
    assert_memory_equal(p + 24, " info flood n=", 14);
    n = atoi(p + 38);
    assert_true(n > *last);
    *last = n;
    count++;
  }
  return count;
}

static int read_lines(int fd, int *last) {
  read_all(fd);
  return acc_lines(last);
}

/* A connected TCP pair on loopback with small buffers. */
static void tcp_pair(int sv[2]) {
  struct sockaddr_in a;
  socklen_t alen = sizeof a;
  int l = socket(AF_INET, SOCK_STREAM, 0), small = 4096;
  assert_true(l >= 0);
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(l, 1), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
  sv[1] = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(sv[1] >= 0);
  setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  assert_int_equal(connect(sv[1], (struct sockaddr *)&a, sizeof a), 0);
  sv[0] = accept(l, NULL, NULL);
  assert_true(sv[0] >= 0);
  setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  close(l);
}

static void test_full_pipe_drops(void **state) {
  int p[2], got, last, fl;
  uint64_t dropped;
  (void)state;
  assert_int_equal(pipe(p), 0);
  assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
  dropped = flood(p[1]);
  assert_true(dropped > 0);
  got = read_lines(p[0], &last);
  assert_true(got > 0);
  assert_int_equal((uint64_t)got + dropped, FLOOD);
  /* Our descriptor, shared with whoever else holds it, stays blocking. */
  fl = fcntl(p[1], F_GETFL);
  assert_true(fl >= 0 && !(fl & O_NONBLOCK));
  /* Once read, lines get through again. */
  dropped = cfd_log_dropped();
  cfd_log(CFD_LOG_INFO, "flood", "n", "999999", NULL);
  assert_int_equal(read_lines(p[0], &last), 1);
  assert_int_equal(last, 999999);
  assert_int_equal(cfd_log_dropped(), dropped);
  cfd_log_set_fd(g_sv[1]);
  close(p[0]);
  close(p[1]);
}

/*
 * A stream socket may take part of a line: the rest must go out before
 * the next line, and what was not sent at all is counted.
 */
static void test_full_stream_socket_drops(void **state) {
  int sv[2], got, last, fl;
  uint64_t dropped;
  (void)state;
  tcp_pair(sv);
  assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
  dropped = flood(sv[1]);
  assert_true(dropped > 0);
  fl = fcntl(sv[1], F_GETFL);
  assert_true(fl >= 0 && !(fl & O_NONBLOCK));
  usleep(100000); /* loopback delivery */
  read_all(sv[0]);
  if (g_acc_len > 0 && g_acc[g_acc_len - 1] != '\n')
    print_message("(a line was cut by the full socket)\n");
  cfd_log(CFD_LOG_INFO, "flood", "n", "999999", NULL);
  usleep(100000);
  read_all(sv[0]);
  got = acc_lines(&last);
  assert_int_equal(last, 999999);
  assert_int_equal((uint64_t)got + dropped, FLOOD + 1);
  cfd_log_set_fd(g_sv[1]);
  close(sv[0]);
  close(sv[1]);
}

/* A write that fails (here: a bad descriptor) counts as dropped. */
static void test_failed_write_counts(void **state) {
  uint64_t before = cfd_log_dropped();
  (void)state;
  cfd_log_set_fd(-1);
  cfd_log(CFD_LOG_ERROR, "lost", NULL);
  cfd_log(CFD_LOG_ERROR, "lost", NULL);
  assert_int_equal(cfd_log_dropped() - before, 2);
  /* Lines above the level were never meant to be written. */
  cfd_log_setup(CFD_LOG_ERROR, CFD_LOG_TEXT);
  cfd_log(CFD_LOG_INFO, "not written", NULL);
  assert_int_equal(cfd_log_dropped() - before, 2);
  cfd_log_set_fd(g_sv[1]);
  no_line();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_text_basic, reset),
      cmocka_unit_test_setup(test_text_quoting, reset),
      cmocka_unit_test_setup(test_levels, reset),
      cmocka_unit_test_setup(test_parse_names, reset),
      cmocka_unit_test_setup(test_json_basic, reset),
      cmocka_unit_test_setup(test_json_escaping, reset),
      cmocka_unit_test_setup(test_text_truncation, reset),
      cmocka_unit_test_setup(test_json_truncation, reset),
      cmocka_unit_test_setup(test_limit_sweep, reset),
      cmocka_unit_test_setup(test_long_key_and_msg, reset),
      cmocka_unit_test_setup(test_errno_kept, reset),
      cmocka_unit_test_setup(test_full_pipe_drops, reset),
      cmocka_unit_test_setup(test_full_stream_socket_drops, reset),
      cmocka_unit_test_setup(test_failed_write_counts, reset),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
