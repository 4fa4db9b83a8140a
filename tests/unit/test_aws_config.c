/*
 * AWS configuration: the shared-file INI reader (comments, whitespace,
 * CRLF, nested sub-sections, malformed lines), URL and time helpers, and
 * cf__aws_config_load's resolution of profile, region and endpoints from
 * overrides, environment and config files (precedence, HOME expansion,
 * services sections, partitions, bad values, unreadable files that do or
 * do not matter). Files live in a fresh temporary directory; every
 * allocation goes through test_mem so leaks fail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cf_aws_config.h"
#include "cf_aws_ini.h"
#include "test_mem.h"

static test_mem tm;
static char dir[64];
static char err[512];

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  strcpy(dir, "/tmp/cf_aws_config_XXXXXX");
  if (mkdtemp(dir) == NULL)
    return -1;
  err[0] = '\0';
  return 0;
}

static int teardown(void **state) {
  char cmd[128];
  (void)state;
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    return -1;
  return tm.live == 0 ? 0 : -1;
}

/* Writes dir/name with text; returns the path (static buffer rotation). */
static const char *put(const char *name, const char *text) {
  static char paths[4][128];
  static int k;
  char *p = paths[k++ % 4];
  FILE *f;
  snprintf(p, 128, "%s/%s", dir, name);
  f = fopen(p, "w");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
  assert_int_equal(fclose(f), 0);
  return p;
}

/* "K=V" strings for an envp; the last slot stays NULL. */
typedef struct envb {
  char s[16][300];
  char *v[17];
  int n;
} envb;

static void env_add(envb *e, const char *k, const char *v) {
  assert_true(e->n < 16);
  snprintf(e->s[e->n], sizeof(e->s[0]), "%s=%s", k, v);
  e->v[e->n] = e->s[e->n];
  e->n++;
  e->v[e->n] = NULL;
}

/* An environment with HOME pointing at the empty temporary directory, so
 * the developer's own ~/.aws never leaks into a test. */
static void env_init(envb *e) {
  memset(e, 0, sizeof(*e));
  env_add(e, "HOME", dir);
}

static int load(cf__aws_config *c, const cf__aws_overrides *ov, envb *e) {
  return cf__aws_config_load(c, ov, e->v, &tm.mem, err, sizeof(err));
}

/* ---- INI reader ---- */

static cf__aws_ini *parse_ok(const char *text) {
  cf__aws_ini *ini = NULL;
  size_t line = 99;
  assert_int_equal(cf__aws_ini_parse(&ini, text, strlen(text), &tm.mem,
                                     &line), CF_OK);
  assert_non_null(ini);
  assert_int_equal(line, 0);
  return ini;
}

static void test_ini_basic(void **state) {
  cf__aws_ini *ini = parse_ok(
      "# comment\n"
      "; another\n"
      "[default]\n"
      "aws_access_key_id = AKID # inline\n"
      "region=eu-west-1 ; also inline\n"
      "hash = a#b;c\n"
      "spaced   =   v  w  \t\n"
      "empty =\n"
      "Region = upper\n"
      "\n"
      "   # indented comment\n"
      "[ profile   dev ]   # trailing comment\n"
      "region = us-west-2\r\n"
      "x = 1\r\n"
      "[first]\n"
      "\t  indented = first key\n");
  (void)state;
  assert_string_equal(cf__aws_ini_get(ini, "default", "aws_access_key_id"),
                      "AKID");
  assert_string_equal(cf__aws_ini_get(ini, "default", "region"),
                      "eu-west-1");
  assert_string_equal(cf__aws_ini_get(ini, "default", "hash"), "a#b;c");
  assert_string_equal(cf__aws_ini_get(ini, "default", "spaced"), "v  w");
  assert_string_equal(cf__aws_ini_get(ini, "default", "empty"), "");
  /* Keys are case-sensitive. */
  assert_string_equal(cf__aws_ini_get(ini, "default", "Region"), "upper");
  assert_null(cf__aws_ini_get(ini, "default", "REGION"));
  assert_string_equal(cf__aws_ini_get(ini, "profile dev", "region"),
                      "us-west-2");
  assert_string_equal(cf__aws_ini_get(ini, "profile dev", "x"), "1");
  assert_null(cf__aws_ini_get(ini, "profile dev", "aws_access_key_id"));
  /* Indentation only nests under a previous key. */
  assert_string_equal(cf__aws_ini_get(ini, "first", "indented"),
                      "first key");
  assert_true(cf__aws_ini_has(ini, "profile dev"));
  assert_false(cf__aws_ini_has(ini, "dev"));
  assert_string_equal(cf__aws_ini_profile(ini, 1, "dev", "region"),
                      "us-west-2");
  assert_null(cf__aws_ini_profile(ini, 0, "dev", "region"));
  assert_string_equal(cf__aws_ini_profile(ini, 1, "default", "region"),
                      "eu-west-1");
  cf__aws_ini_free(ini);
}

static void test_ini_nested(void **state) {
  cf__aws_ini *ini = parse_ok(
      "[profile p]\n"
      "s3 =\n"
      "  max_concurrent_requests = 20\n"
      "\n"
      "  # comment in a block\n"
      "  garbage without equals\n"
      "  endpoint_url = http://s3.local\n"
      "region = r1\n"
      "note = first\n"
      "  continued line = ignored\n"
      "[services svc]\n"
      "sqs =\n"
      "\tendpoint_url = http://sqs.local:1/\n"
      "sns =\n"
      "  endpoint_url=http://sns.local\n");
  (void)state;
  assert_string_equal(cf__aws_ini_get_sub(ini, "profile p", "s3",
                                          "endpoint_url"), "http://s3.local");
  assert_string_equal(cf__aws_ini_get_sub(ini, "profile p", "s3",
                                          "max_concurrent_requests"), "20");
  /* A nested key is not a top-level key, and a continuation is not a
   * sub-property. */
  assert_null(cf__aws_ini_get(ini, "profile p", "endpoint_url"));
  assert_string_equal(cf__aws_ini_get(ini, "profile p", "s3"), "");
  assert_string_equal(cf__aws_ini_get(ini, "profile p", "region"), "r1");
  assert_string_equal(cf__aws_ini_get(ini, "profile p", "note"), "first");
  assert_null(cf__aws_ini_get_sub(ini, "profile p", "note",
                                  "continued line"));
  assert_null(cf__aws_ini_get(ini, "profile p", "continued line"));
  assert_string_equal(cf__aws_ini_get_sub(ini, "services svc", "sqs",
                                          "endpoint_url"),
                      "http://sqs.local:1/");
  assert_string_equal(cf__aws_ini_get_sub(ini, "services svc", "sns",
                                          "endpoint_url"),
                      "http://sns.local");
  assert_null(cf__aws_ini_get_sub(ini, "services svc", NULL,
                                  "endpoint_url"));
  cf__aws_ini_free(ini);
}

static void test_ini_repeat(void **state) {
  cf__aws_ini *ini = parse_ok(
      "\xef\xbb\xbf[a]\n"
      "k = 1\n"
      "k = 2\n"
      "[b]\n"
      "k = 3\n"
      "[a]\n"
      "j = 4\n"
      "[empty]");
  (void)state;
  assert_string_equal(cf__aws_ini_get(ini, "a", "k"), "2");
  assert_string_equal(cf__aws_ini_get(ini, "a", "j"), "4");
  assert_string_equal(cf__aws_ini_get(ini, "b", "k"), "3");
  assert_true(cf__aws_ini_has(ini, "empty"));
  assert_true(cf__aws_ini_has_profile(ini, 0, "empty"));
  assert_false(cf__aws_ini_has_profile(ini, 1, "empty"));
  cf__aws_ini_free(ini);

  ini = parse_ok("");
  assert_false(cf__aws_ini_has(ini, "a"));
  assert_null(cf__aws_ini_get(ini, "a", "k"));
  cf__aws_ini_free(ini);
  assert_null(cf__aws_ini_get(NULL, "a", "k"));
  cf__aws_ini_free(NULL);
}

static void test_ini_malformed(void **state) {
  static const struct {
    const char *text;
    size_t line;
  } bad[] = {
      {"k = v\n", 1},                     /* property before a section */
      {"[a]\nno equals here\n", 2},
      {"[a]\n= value\n", 2},              /* empty key */
      {"[a\nk = v\n", 1},                 /* unclosed section */
      {"[]\n", 1},
      {"[ ]\n", 1},
      {"[a] junk\n", 1},
      {"[a]\r\nk = v\r\n\r\nbad\r\n", 4},
      {"[a]\nk = v\n  \nz\n", 4},
  };
  cf__aws_ini *ini = (cf__aws_ini *)1;
  size_t i, line;
  static const char nul[] = "[a]\nk = v\nx = a\0b\n";
  (void)state;

  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    line = 0;
    assert_int_equal(cf__aws_ini_parse(&ini, bad[i].text,
                                       strlen(bad[i].text), &tm.mem, &line),
                     CF_ERR_PARSE);
    assert_null(ini);
    assert_int_equal(line, bad[i].line);
  }
  assert_int_equal(cf__aws_ini_parse(&ini, nul, sizeof(nul) - 1, &tm.mem,
                                     &line), CF_ERR_PARSE);
  assert_int_equal(line, 3);
  assert_int_equal(cf__aws_ini_parse(&ini, "", CF__AWS_INI_MAX + 1,
                                     &tm.mem, NULL), CF_ERR_TOO_BIG);
  assert_int_equal(cf__aws_ini_parse(NULL, "", 0, &tm.mem, NULL),
                   CF_ERR_INVALID);
}

/* Every allocation of a parse may fail; nothing may leak. */
static void test_ini_nomem(void **state) {
  static const char text[] =
      "[a]\nk1 = 1\nk2 = 2\nk3 = 3\nk4 = 4\nk5 = 5\nk6 = 6\nk7 = 7\n"
      "k8 = 8\nk9 = 9\nk10 = 10\nk11 = 11\nk12 = 12\nk13 = 13\n"
      "k14 = 14\nk15 = 15\nk16 = 16\nk17 = 17\n";
  unsigned long n;
  (void)state;
  for (n = 1;; n++) {
    cf__aws_ini *ini = NULL;
    int rc;
    test_mem_init(&tm, n);
    rc = cf__aws_ini_parse(&ini, text, strlen(text), &tm.mem, NULL);
    if (!tm.failed) {
      assert_int_equal(rc, CF_OK);
      assert_string_equal(cf__aws_ini_get(ini, "a", "k17"), "17");
      cf__aws_ini_free(ini);
      break;
    }
    assert_int_equal(rc, CF_ERR_NOMEM);
    assert_null(ini);
    assert_int_equal(tm.live, 0);
  }
  assert_true(n > 3);
  assert_int_equal(tm.live, 0);
}

static void test_ini_load(void **state) {
  cf__aws_ini *ini = NULL;
  char path[128], *big;
  size_t n = CF__AWS_INI_MAX + 10;
  (void)state;

  assert_int_equal(cf__aws_ini_load(&ini, put("ok", "[a]\nk=v\n"),
                                    &tm.mem, err, sizeof(err)), CF_OK);
  assert_string_equal(cf__aws_ini_get(ini, "a", "k"), "v");
  cf__aws_ini_free(ini);

  snprintf(path, sizeof(path), "%s/missing", dir);
  assert_int_equal(cf__aws_ini_load(&ini, path, &tm.mem, err, sizeof(err)),
                   CF_ERR_NOT_FOUND);
  assert_null(ini);
  snprintf(path, sizeof(path), "%s/ok/sub", dir);
  assert_int_equal(cf__aws_ini_load(&ini, path, &tm.mem, err, sizeof(err)),
                   CF_ERR_NOT_FOUND);

  assert_int_equal(cf__aws_ini_load(&ini, dir, &tm.mem, err, sizeof(err)),
                   CF_ERR_IO);
  assert_non_null(strstr(err, "is a directory"));

  /* A FIFO with no writer: refused at once instead of blocking. */
  snprintf(path, sizeof(path), "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  assert_int_equal(cf__aws_ini_load(&ini, path, &tm.mem, err, sizeof(err)),
                   CF_ERR_IO);
  assert_non_null(strstr(err, "not a regular file"));

  assert_int_equal(cf__aws_ini_load(&ini, put("bad", "[a]\nk=v\noops\n"),
                                    &tm.mem, err, sizeof(err)),
                   CF_ERR_PARSE);
  assert_non_null(strstr(err, "line 3: malformed"));
  assert_non_null(strstr(err, "/bad"));

  big = malloc(n + 1);
  assert_non_null(big);
  memset(big, '#', n);
  big[n] = '\0';
  assert_int_equal(cf__aws_ini_load(&ini, put("big", big), &tm.mem, err,
                                    sizeof(err)), CF_ERR_TOO_BIG);
  free(big);
  assert_null(ini);
  assert_int_equal(tm.live, 0);
}

/* ---- helpers ---- */

static void test_url(void **state) {
  static const struct {
    const char *url;
    int q;
    int rc;
    const char *host;
    unsigned port;
    size_t base;
  } t[] = {
      {"http://127.0.0.1:4566", 0, CF_OK, "127.0.0.1", 4566, 21},
      {"HTTPS://Sqs.Example.COM/", 0, CF_OK, "sqs.example.com", 0, 23},
      {"http://h:1//", 0, CF_OK, "h", 1, 10},
      {"http://h/base/path/", 0, CF_OK, "h", 0, 18},
      {"http://[::1]:8080/", 0, CF_OK, "::1", 8080, 17},
      {"http://[FD00:EC2::23]", 0, CF_OK, "fd00:ec2::23", 0, 21},
      {"http://h/p?x=1", 1, CF_OK, "h", 0, 14},
      {"http://h/p?x=1", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h?x", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h#frag", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h/p#frag", 1, CF_ERR_INVALID, "", 0, 0},
      {"ftp://h", 0, CF_ERR_INVALID, "", 0, 0},
      {"h:80", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://", 0, CF_ERR_INVALID, "", 0, 0},
      {"http:///p", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h:", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h:0", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h:65536", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h:123456", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h:8x", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://user:pw@h", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h/a b", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h/a\x7f", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://[::1", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://[zz::1]", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://-h", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://.h", 0, CF_ERR_INVALID, "", 0, 0},
      {"http://h\\x", 0, CF_ERR_INVALID, "", 0, 0},
  };
  cf__aws_url u;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    int rc = cf__aws_url_parse(t[i].url, t[i].q, &u);
    if (rc != t[i].rc)
      fail_msg("%s: got %d", t[i].url, rc);
    if (rc != CF_OK)
      continue;
    assert_string_equal(u.host, t[i].host);
    assert_int_equal(u.port, t[i].port);
    assert_int_equal(u.base_len, t[i].base);
  }
  assert_int_equal(cf__aws_url_parse(NULL, 0, &u), CF_ERR_INVALID);
  assert_int_equal(cf__aws_url_parse("https://h", 0, &u), CF_OK);
  assert_int_equal(u.https, 1);
  assert_int_equal(cf__aws_url_parse("http://[::1]", 0, &u), CF_OK);
  assert_int_equal(u.ipv6, 1);
}

static void test_time(void **state) {
  static const struct {
    const char *s;
    double t;
  } ok[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2016-02-25T06:03:31Z", 1456380211},
      {"2000-02-29T12:00:00Z", 951825600},
      {"2024-12-31T23:59:59Z", 1735689599},
      {"2100-03-01T00:00:00Z", 4107542400.0},
      {"2024-05-01T12:00:00.250Z", 1714564800.25},
      {"2024-05-01t12:00:00z", 1714564800},
      {"2024-05-01 12:00:00Z", 1714564800},
      {"2024-05-01T14:00:00+02:00", 1714564800},
      {"2024-05-01T07:30:00-0430", 1714564800},
      /* The first of every month of a common and a leap year. */
      {"2026-01-01T00:00:00Z", 1767225600},
      {"2026-02-01T00:00:00Z", 1769904000},
      {"2026-03-01T00:00:00Z", 1772323200},
      {"2026-04-01T00:00:00Z", 1775001600},
      {"2026-05-01T00:00:00Z", 1777593600},
      {"2026-06-01T00:00:00Z", 1780272000},
      {"2026-07-01T00:00:00Z", 1782864000},
      {"2026-08-01T00:00:00Z", 1785542400},
      {"2026-09-01T00:00:00Z", 1788220800},
      {"2026-10-01T00:00:00Z", 1790812800},
      {"2026-11-01T00:00:00Z", 1793491200},
      {"2026-12-01T00:00:00Z", 1796083200},
      {"2028-01-01T00:00:00Z", 1830297600},
      {"2028-02-01T00:00:00Z", 1832976000},
      {"2028-03-01T00:00:00Z", 1835481600},
      {"2028-04-01T00:00:00Z", 1838160000},
      {"2028-05-01T00:00:00Z", 1840752000},
      {"2028-06-01T00:00:00Z", 1843430400},
      {"2028-07-01T00:00:00Z", 1846022400},
      {"2028-08-01T00:00:00Z", 1848700800},
      {"2028-09-01T00:00:00Z", 1851379200},
      {"2028-10-01T00:00:00Z", 1853971200},
      {"2028-11-01T00:00:00Z", 1856649600},
      {"2028-12-01T00:00:00Z", 1859241600},
      {"2028-12-31T23:59:59Z", 1861919999},
  };
  static const char *bad[] = {
      "", "2024-05-01", "2024-05-01T12:00:00", "2024-13-01T00:00:00Z",
      "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z",
      "2024-05-01T24:00:00Z", "2024-05-01T12:60:00Z",
      "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00ZZ",
      "2024-05-01T12:00:00+2", "24-05-01T12:00:00Z",
      "2024-05-01X12:00:00Z", "2024-05-01T12:00:00+24:00",
  };
  double t;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    t = -1;
    if (cf__aws_time_parse(ok[i].s, &t) != CF_OK)
      fail_msg("%s refused", ok[i].s);
    assert_float_equal(t, ok[i].t, 1e-6);
  }
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (cf__aws_time_parse(bad[i], &t) != CF_ERR_PARSE)
      fail_msg("%s accepted", bad[i]);
  }
  assert_int_equal(cf__aws_time_parse(NULL, &t), CF_ERR_PARSE);
}

static void test_env_path(void **state) {
  envb e;
  char *p = NULL;
  (void)state;
  memset(&e, 0, sizeof(e));
  env_add(&e, "AWS_X", "");
  env_add(&e, "AWS_XY", "long");
  env_add(&e, "AWS_T", "TRUE");
  assert_null(cf__aws_env(e.v, "AWS_X")); /* empty is unset */
  assert_string_equal(cf__aws_env(e.v, "AWS_XY"), "long");
  assert_null(cf__aws_env(e.v, "AWS_"));
  assert_true(cf__aws_env_true(e.v, "AWS_T"));
  assert_false(cf__aws_env_true(e.v, "AWS_XY"));

  /* No HOME: the default file is treated as missing. */
  assert_int_equal(cf__aws_file_path(&p, e.v, "AWS_CONFIG_FILE",
                                     ".aws/config", &tm.mem), CF_OK);
  assert_null(p);
  env_add(&e, "HOME", "/home/u");
  assert_int_equal(cf__aws_file_path(&p, e.v, "AWS_CONFIG_FILE",
                                     ".aws/config", &tm.mem), CF_OK);
  assert_string_equal(p, "/home/u/.aws/config");
  tm.mem.free(p, tm.mem.user_data);
  env_add(&e, "AWS_CONFIG_FILE", "~/x/c");
  assert_int_equal(cf__aws_file_path(&p, e.v, "AWS_CONFIG_FILE",
                                     ".aws/config", &tm.mem), CF_OK);
  assert_string_equal(p, "/home/u/x/c");
  tm.mem.free(p, tm.mem.user_data);
  e.n--;
  env_add(&e, "AWS_CONFIG_FILE", "~user/c");
  assert_int_equal(cf__aws_file_path(&p, e.v, "AWS_CONFIG_FILE",
                                     ".aws/config", &tm.mem), CF_OK);
  assert_string_equal(p, "~user/c");
  tm.mem.free(p, tm.mem.user_data);
}

/* ---- cf__aws_config_load ---- */

static void expect(const cf__aws_config *c, const char *region,
                   const char *sqs, const char *sns, const char *profile) {
  assert_string_equal(c->region, region);
  assert_string_equal(c->endpoint_sqs, sqs);
  assert_string_equal(c->endpoint_sns, sns);
  assert_string_equal(c->profile, profile);
}

static void test_defaults(void **state) {
  cf__aws_config c;
  envb e;
  (void)state;
  env_init(&e);
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  expect(&c, "us-east-1", "https://sqs.us-east-1.amazonaws.com",
         "https://sns.us-east-1.amazonaws.com", "default");
  cf__aws_config_deinit(&c, &tm.mem);
  assert_null(c.region);
  cf__aws_config_deinit(&c, &tm.mem); /* twice is harmless */

  /* No HOME at all: defaults, no file read. */
  memset(&e, 0, sizeof(e));
  e.v[0] = NULL;
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  assert_string_equal(c.region, "us-east-1");
  cf__aws_config_deinit(&c, &tm.mem);
}

static void test_partitions(void **state) {
  static const struct {
    const char *region, *sqs, *sns;
  } t[] = {
      {"cn-north-1", "https://sqs.cn-north-1.amazonaws.com.cn",
       "https://sns.cn-north-1.amazonaws.com.cn"},
      {"cn-northwest-1", "https://sqs.cn-northwest-1.amazonaws.com.cn",
       "https://sns.cn-northwest-1.amazonaws.com.cn"},
      {"eu-central-1", "https://sqs.eu-central-1.amazonaws.com",
       "https://sns.eu-central-1.amazonaws.com"},
      {"us-gov-west-1", "https://sqs.us-gov-west-1.amazonaws.com",
       "https://sns.us-gov-west-1.amazonaws.com"},
      {"us-iso-east-1", "https://sqs.us-iso-east-1.c2s.ic.gov",
       "https://sns.us-iso-east-1.c2s.ic.gov"},
      {"us-isob-east-1", "https://sqs.us-isob-east-1.sc2s.sgov.gov",
       "https://sns.us-isob-east-1.sc2s.sgov.gov"},
  };
  cf__aws_config c;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    envb e;
    env_init(&e);
    env_add(&e, "AWS_REGION", t[i].region);
    assert_int_equal(load(&c, NULL, &e), CF_OK);
    expect(&c, t[i].region, t[i].sqs, t[i].sns, "default");
    cf__aws_config_deinit(&c, &tm.mem);
  }
}

static const char config_text[] =
    "[default]\n"
    "region = us-west-2\n"
    "[profile default]\n"
    "endpoint_url = http://default.local:1\n"
    "[profile dev]\n"
    "region = eu-west-1\n"
    "endpoint_url = http://dev.local:2/\n"
    "[profile svc]\n"
    "region = ap-south-1\n"
    "endpoint_url = http://global.local:3\n"
    "services = local\n"
    "[services local]\n"
    "sqs =\n"
    "  endpoint_url = http://sqs.local:4/\n"
    "[dev]\n"
    "region = sa-east-1\n"
    "[profile ignoring]\n"
    "endpoint_url = http://global.local:3\n"
    "ignore_configured_endpoint_urls = true\n";

/* Region: override > AWS_REGION > AWS_DEFAULT_REGION > profile > default;
 * profile: override > AWS_PROFILE > "default". */
static void test_region_profile(void **state) {
  static const struct {
    const char *ov_region, *ov_profile, *env_region, *env_default,
        *env_profile;
    const char *region, *profile;
  } t[] = {
      {NULL, NULL, NULL, NULL, NULL, "us-west-2", "default"},
      {NULL, NULL, NULL, NULL, "dev", "eu-west-1", "dev"},
      {NULL, NULL, NULL, "ca-central-1", "dev", "ca-central-1", "dev"},
      {NULL, NULL, "me-south-1", "ca-central-1", "dev", "me-south-1", "dev"},
      {"il-central-1", NULL, "me-south-1", NULL, NULL, "il-central-1",
       "default"},
      {NULL, "svc", NULL, NULL, "dev", "ap-south-1", "svc"},
      {NULL, "nowhere", NULL, NULL, NULL, "us-east-1", "nowhere"},
  };
  cf__aws_overrides ov;
  cf__aws_config c;
  size_t i;
  (void)state;
  put("config", config_text);
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    envb e;
    char path[128];
    env_init(&e);
    snprintf(path, sizeof(path), "%s/config", dir);
    env_add(&e, "AWS_CONFIG_FILE", path);
    if (t[i].env_region)
      env_add(&e, "AWS_REGION", t[i].env_region);
    if (t[i].env_default)
      env_add(&e, "AWS_DEFAULT_REGION", t[i].env_default);
    if (t[i].env_profile)
      env_add(&e, "AWS_PROFILE", t[i].env_profile);
    memset(&ov, 0, sizeof(ov));
    ov.region = t[i].ov_region;
    ov.profile = t[i].ov_profile;
    if (load(&c, &ov, &e) != CF_OK)
      fail_msg("row %zu: %s", i, err);
    assert_string_equal(c.region, t[i].region);
    assert_string_equal(c.profile, t[i].profile);
    cf__aws_config_deinit(&c, &tm.mem);
  }
}

/* The default config file is ~/.aws/config with ~ from HOME; an
 * AWS_CONFIG_FILE starting with ~/ is expanded too. */
static void test_home(void **state) {
  cf__aws_config c;
  char sub[128];
  envb e;
  (void)state;
  snprintf(sub, sizeof(sub), "%s/.aws", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  put(".aws/config", "[default]\nregion = eu-north-1\n");
  put("other", "[default]\nregion = af-south-1\n");
  env_init(&e);
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  assert_string_equal(c.region, "eu-north-1");
  cf__aws_config_deinit(&c, &tm.mem);
  env_add(&e, "AWS_CONFIG_FILE", "~/other");
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  assert_string_equal(c.region, "af-south-1");
  cf__aws_config_deinit(&c, &tm.mem);

  /* envp NULL reads the process environment. */
  assert_int_equal(setenv("AWS_REGION", "eu-south-2", 1), 0);
  assert_int_equal(cf__aws_config_load(&c, NULL, NULL, &tm.mem, err,
                                       sizeof(err)), CF_OK);
  assert_string_equal(c.region, "eu-south-2");
  cf__aws_config_deinit(&c, &tm.mem);
  unsetenv("AWS_REGION");
}

/* Endpoints: override > AWS_ENDPOINT_URL_<SVC> > AWS_ENDPOINT_URL >
 * services section > profile endpoint_url > default. */
static void test_endpoints(void **state) {
  static const struct {
    const char *profile, *ov_sqs, *env_sqs, *env_sns, *env_all, *ignore;
    const char *sqs, *sns;
  } t[] = {
      {"dev", NULL, NULL, NULL, NULL, NULL, "http://dev.local:2",
       "http://dev.local:2"},
      {"default", NULL, NULL, NULL, NULL, NULL, "http://default.local:1",
       "http://default.local:1"},
      {"svc", NULL, NULL, NULL, NULL, NULL, "http://sqs.local:4",
       "http://global.local:3"},
      {"svc", NULL, NULL, NULL, "http://all:5/", NULL, "http://all:5",
       "http://all:5"},
      {"svc", NULL, "http://q:6///", NULL, "http://all:5", NULL,
       "http://q:6", "http://all:5"},
      {"svc", NULL, NULL, "https://n:7/p/", "http://all:5", NULL,
       "http://all:5", "https://n:7/p"},
      {"svc", "http://ov:8/", "http://q:6", NULL, NULL, NULL, "http://ov:8",
       "http://global.local:3"},
      {"svc", NULL, "http://q:6", NULL, "http://all:5", "true",
       "https://sqs.ap-south-1.amazonaws.com",
       "https://sns.ap-south-1.amazonaws.com"},
      {"svc", "http://ov:8", "http://q:6", NULL, NULL, "TRUE", "http://ov:8",
       "https://sns.ap-south-1.amazonaws.com"},
      {"ignoring", NULL, "http://q:6", NULL, NULL, NULL,
       "https://sqs.us-east-1.amazonaws.com",
       "https://sns.us-east-1.amazonaws.com"},
      /* The variable, even "false", beats the profile's setting. */
      {"ignoring", NULL, "http://q:6", NULL, NULL, "false", "http://q:6",
       "http://global.local:3"},
  };
  cf__aws_overrides ov;
  cf__aws_config c;
  size_t i;
  (void)state;
  put("config", config_text);
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    envb e;
    char path[128];
    env_init(&e);
    snprintf(path, sizeof(path), "%s/config", dir);
    env_add(&e, "AWS_CONFIG_FILE", path);
    env_add(&e, "AWS_PROFILE", t[i].profile);
    if (t[i].env_sqs)
      env_add(&e, "AWS_ENDPOINT_URL_SQS", t[i].env_sqs);
    if (t[i].env_sns)
      env_add(&e, "AWS_ENDPOINT_URL_SNS", t[i].env_sns);
    if (t[i].env_all)
      env_add(&e, "AWS_ENDPOINT_URL", t[i].env_all);
    if (t[i].ignore)
      env_add(&e, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", t[i].ignore);
    memset(&ov, 0, sizeof(ov));
    ov.endpoint_sqs = t[i].ov_sqs;
    if (load(&c, &ov, &e) != CF_OK)
      fail_msg("row %zu: %s", i, err);
    if (strcmp(c.endpoint_sqs, t[i].sqs) != 0 ||
        strcmp(c.endpoint_sns, t[i].sns) != 0)
      fail_msg("row %zu: %s %s", i, c.endpoint_sqs, c.endpoint_sns);
    cf__aws_config_deinit(&c, &tm.mem);
  }
}

/* Bad values fail with a message naming their source, never echoing a
 * value (an endpoint URL may carry a password). */
static void test_bad_values(void **state) {
  static const struct {
    const char *var, *value, *names;
  } t[] = {
      {"AWS_REGION", "US-EAST-1", "AWS_REGION"},
      {"AWS_REGION", "us_east_1", "AWS_REGION"},
      {"AWS_REGION",
       "a123456789012345678901234567890123456789012345678901234567890123",
       "AWS_REGION"},
      {"AWS_DEFAULT_REGION", "eu west", "AWS_DEFAULT_REGION"},
      {"AWS_PROFILE", "two words", "AWS_PROFILE"},
      {"AWS_PROFILE", "br[ack]et", "AWS_PROFILE"},
      {"AWS_ENDPOINT_URL", "ftp://h", "AWS_ENDPOINT_URL"},
      {"AWS_ENDPOINT_URL", "http://user:s3cr3tpw@h", "AWS_ENDPOINT_URL"},
      {"AWS_ENDPOINT_URL_SQS", "http://h/?s3cr3tpw", "AWS_ENDPOINT_URL_SQS"},
      {"AWS_ENDPOINT_URL_SNS", "http://h:99999", "AWS_ENDPOINT_URL_SNS"},
  };
  cf__aws_overrides ov;
  cf__aws_config c;
  size_t i;
  envb e;
  (void)state;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    env_init(&e);
    env_add(&e, t[i].var, t[i].value);
    err[0] = '\0';
    assert_int_equal(load(&c, NULL, &e), CF_ERR_INVALID);
    assert_null(c.region);
    assert_null(c.endpoint_sqs);
    assert_non_null(strstr(err, t[i].names));
    assert_null(strstr(err, t[i].value));
    assert_int_equal(tm.live, 0);
  }
  env_init(&e);
  memset(&ov, 0, sizeof(ov));
  ov.endpoint_sns = "nope";
  assert_int_equal(load(&c, &ov, &e), CF_ERR_INVALID);
  assert_non_null(strstr(err, "endpoint override"));
  ov.endpoint_sns = NULL;
  ov.region = "";
  assert_int_equal(load(&c, &ov, &e), CF_ERR_INVALID);
  assert_non_null(strstr(err, "region override"));

  /* A bad region in the file names the file, not the value. */
  env_add(&e, "AWS_CONFIG_FILE", put("c", "[default]\nregion = Bad!\n"));
  assert_int_equal(load(&c, NULL, &e), CF_ERR_INVALID);
  assert_non_null(strstr(err, "config file"));
  assert_null(strstr(err, "Bad!"));
  assert_int_equal(cf__aws_config_load(NULL, NULL, e.v, &tm.mem, err,
                                       sizeof(err)), CF_ERR_INVALID);
  /* err may be NULL. */
  assert_int_equal(cf__aws_config_load(&c, NULL, e.v, &tm.mem, NULL, 0),
                   CF_ERR_INVALID);
}

/* A malformed or unreadable config file fails only when a setting has
 * to come from it. */
static void test_file_errors(void **state) {
  cf__aws_config c;
  envb e;
  (void)state;
  env_init(&e);
  env_add(&e, "AWS_CONFIG_FILE", put("c", "[default]\nregion = x\ngarbage\n"));
  assert_int_equal(load(&c, NULL, &e), CF_ERR_INVALID);
  assert_non_null(strstr(err, "line 3: malformed"));

  env_add(&e, "AWS_REGION", "eu-west-3");
  /* Endpoints still look at the file. */
  assert_int_equal(load(&c, NULL, &e), CF_ERR_INVALID);
  env_add(&e, "AWS_ENDPOINT_URL", "http://127.0.0.1:9");
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  expect(&c, "eu-west-3", "http://127.0.0.1:9", "http://127.0.0.1:9",
         "default");
  cf__aws_config_deinit(&c, &tm.mem);

  /* A directory where the file should be. */
  env_init(&e);
  env_add(&e, "AWS_CONFIG_FILE", dir);
  assert_int_equal(load(&c, NULL, &e), CF_ERR_INVALID);
  assert_non_null(strstr(err, "is a directory"));
  env_add(&e, "AWS_REGION", "eu-west-3");
  env_add(&e, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true");
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  assert_string_equal(c.endpoint_sqs, "https://sqs.eu-west-3.amazonaws.com");
  cf__aws_config_deinit(&c, &tm.mem);

  /* A missing file is no error. */
  env_init(&e);
  env_add(&e, "AWS_CONFIG_FILE", "/nonexistent/cf/config");
  assert_int_equal(load(&c, NULL, &e), CF_OK);
  cf__aws_config_deinit(&c, &tm.mem);
}

static void test_load_nomem(void **state) {
  unsigned long n;
  envb e;
  (void)state;
  env_init(&e);
  env_add(&e, "AWS_CONFIG_FILE", put("config", config_text));
  env_add(&e, "AWS_PROFILE", "svc");
  for (n = 1;; n++) {
    cf__aws_config c;
    int rc;
    test_mem_init(&tm, n);
    rc = load(&c, NULL, &e);
    if (!tm.failed) {
      assert_int_equal(rc, CF_OK);
      expect(&c, "ap-south-1", "http://sqs.local:4", "http://global.local:3",
             "svc");
      cf__aws_config_deinit(&c, &tm.mem);
      break;
    }
    assert_int_equal(rc, CF_ERR_NOMEM);
    assert_null(c.region);
    assert_int_equal(tm.live, 0);
  }
  assert_true(n > 5);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_ini_basic),     T(test_ini_nested),    T(test_ini_repeat),
      T(test_ini_malformed), T(test_ini_nomem),     T(test_ini_load),
      T(test_url),           T(test_time),          T(test_env_path),
      T(test_defaults),      T(test_partitions),    T(test_region_profile),
      T(test_home),          T(test_endpoints),     T(test_bad_values),
      T(test_file_errors),   T(test_load_nomem),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
