/*
 * The AWS credentials chain: static credentials from the environment and
 * the shared files (precedence, partial keys, profiles, unsupported and
 * unreadable files), and fetched ones from a container endpoint and from
 * IMDSv2, both served by a small HTTP server this file runs on 127.0.0.1
 * on the same real libev loop (header-only adapter) as the provider:
 * headers the server received, Expiration, refresh before expiry, retry
 * with backoff while old credentials stay in use, free from callbacks.
 * Every wait is bounded by a deadline on the loop.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include <chatfanout/adapters/cf_libev.h>

#include "cf_aws_config.h"
#include "cf_http.h"
#include "http_server.h"
#include "test_mem.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLETOKEN+/="

/* ---- a tiny one-request-per-connection HTTP server ------------------- */

#define MAXREQ 32

typedef struct sreq {
  char method[8];
  char target[256];
  char auth[256];      /* Authorization */
  char ttl[32];        /* X-aws-ec2-metadata-token-ttl-seconds */
  char imds_tok[128];  /* X-aws-ec2-metadata-token */
  double at;           /* ev_time() when it arrived */
} sreq;

typedef struct srv srv;

/* Chooses the answer: status, body; drop closes without answering. */
typedef void (*srv_handler)(srv *s, const sreq *r, int *status,
                            char *body, size_t cap, int *drop);

typedef struct sconn {
  ev_io w;
  srv *s;
  char in[8192];
  size_t len;
  int used;
} sconn;

struct srv {
  struct ev_loop *l;
  int fd;
  int port;
  ev_io lw;
  sconn conns[8];
  sreq reqs[MAXREQ];
  int nreq;
  srv_handler handle;
  int mode;            /* what the handler does; per test */
  double expires_in;   /* Expiration = now + this */
  int gen;             /* credentials generation served */
};

static void sconn_close(sconn *c) {
  ev_io_stop(c->s->l, &c->w);
  close(c->w.fd);
  c->used = 0;
}

static void sconn_answer(sconn *c) {
  srv *s = c->s;
  sreq *r = &s->reqs[s->nreq < MAXREQ ? s->nreq : MAXREQ - 1];
  char body[4096], out[4608];
  int status = 500, drop = 0, n;

  memset(r, 0, sizeof(*r));
  sscanf(c->in, "%7s %255s", r->method, r->target);
  (void)hs_header(c->in, "Authorization", r->auth, sizeof(r->auth));
  (void)hs_header(c->in, "X-aws-ec2-metadata-token-ttl-seconds", r->ttl,
             sizeof(r->ttl));
  (void)hs_header(c->in, "X-aws-ec2-metadata-token", r->imds_tok,
             sizeof(r->imds_tok));
  r->at = ev_time();
  if (s->nreq < MAXREQ)
    s->nreq++;
  strcpy(body, "");
  s->handle(s, r, &status, body, sizeof(body), &drop);
  if (!drop) {
    n = snprintf(out, sizeof(out),
                 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 status, strlen(body), body);
    assert_int_equal(write(c->w.fd, out, (size_t)n), n);
  }
  sconn_close(c);
}

static void on_sconn(struct ev_loop *l, ev_io *w, int revents) {
  sconn *c = (sconn *)w;
  ssize_t n;
  (void)l;
  (void)revents;
  n = read(w->fd, c->in + c->len, sizeof(c->in) - 1 - c->len);
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  if (n <= 0) {
    sconn_close(c);
    return;
  }
  c->len += (size_t)n;
  c->in[c->len] = '\0';
  if (strstr(c->in, "\r\n\r\n") != NULL)
    sconn_answer(c); /* requests here carry no body */
}

static void on_accept(struct ev_loop *l, ev_io *w, int revents) {
  srv *s = (srv *)((char *)w - offsetof(srv, lw));
  int fd = accept(w->fd, NULL, NULL), i;
  (void)revents;
  if (fd < 0)
    return;
  fcntl(fd, F_SETFL, O_NONBLOCK);
  for (i = 0; i < 8 && s->conns[i].used; i++)
    ;
  if (i == 8) {
    close(fd);
    return;
  }
  memset(&s->conns[i], 0, sizeof(s->conns[i]));
  s->conns[i].used = 1;
  s->conns[i].s = s;
  ev_io_init(&s->conns[i].w, on_sconn, fd, EV_READ);
  ev_io_start(l, &s->conns[i].w);
}

static void srv_start(srv *s, struct ev_loop *l, srv_handler h) {
  memset(s, 0, sizeof(*s));
  s->l = l;
  s->handle = h;
  s->fd = hs_listen(&s->port, 16);
  ev_io_init(&s->lw, on_accept, s->fd, EV_READ);
  ev_io_start(l, &s->lw);
}

static void srv_stop(srv *s) {
  int i;
  for (i = 0; i < 8; i++)
    if (s->conns[i].used)
      sconn_close(&s->conns[i]);
  ev_io_stop(s->l, &s->lw);
  close(s->fd);
}

/* ISO 8601 of t with milliseconds. */
static void iso(double t, char *out, size_t cap) {
  time_t sec = (time_t)t;
  struct tm tmv;
  char b[32];
  gmtime_r(&sec, &tmv);
  strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tmv);
  snprintf(out, cap, "%s.%03dZ", b, (int)((t - (double)sec) * 1000));
}

/* A credentials document of generation gen. */
static void creds_doc(srv *s, char *body, size_t cap, int with_code) {
  char exp[64];
  iso(ev_time() + s->expires_in, exp, sizeof(exp));
  s->gen++;
  snprintf(body, cap,
           "{%s\"AccessKeyId\": \"ASIAGEN%d\", \"SecretAccessKey\": \"%s\","
           " \"Token\": \"%s%d\", \"Expiration\": \"%s\"}",
           with_code ? "\"Code\": \"Success\", \"Type\": \"AWS-HMAC\", " : "",
           s->gen, SECRET, TOKEN, s->gen, exp);
}

/* ---- fixture ---------------------------------------------------------- */

typedef struct fx {
  struct ev_loop *l;
  cf_loop loop;
  cf__http *http;
  cf__aws_creds_provider *p;
  srv s;
  int started_srv;
  int calls;             /* callback count */
  int errors[16];
  double at[16];         /* ev_time() of each call */
  char msg[16][256];
  int free_in_cb;
  char dir[64];
  char err[512];
  char *envv[24];
  char envs[24][600];
  int nenv;
  unsigned long base_live; /* allocations of the fixture itself */
} fx;

static test_mem tm;

static int setup(void **state) {
  fx *f = calloc(1, sizeof(*f));
  if (f == NULL)
    return -1;
  test_mem_init(&tm, 0);
  f->l = ev_loop_new(EVFLAG_AUTO);
  cf_libev_init(&f->loop, f->l);
  if (cf__http_new(&f->http, &f->loop, &tm.mem) != CF_OK)
    return -1;
  f->base_live = tm.live;
  strcpy(f->dir, "/tmp/cf_aws_creds_XXXXXX");
  if (mkdtemp(f->dir) == NULL)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx *f = *state;
  char cmd[128];
  int ok;
  /* f->p is NULL unless the test failed, and then cmocka has already
   * freed its blocks: leave it. */
  cf__http_free(f->http);
  if (f->started_srv)
    srv_stop(&f->s);
  ev_loop_destroy(f->l);
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
  ok = system(cmd) == 0 && tm.live == 0;
  free(f);
  return ok ? 0 : -1;
}

static void env(fx *f, const char *k, const char *v) {
  assert_true(f->nenv < 23);
  snprintf(f->envs[f->nenv], sizeof(f->envs[0]), "%s=%s", k, v);
  f->envv[f->nenv] = f->envs[f->nenv];
  f->envv[++f->nenv] = NULL;
}

/* HOME is the empty temp dir, so no real ~/.aws is read; IMDS is off
 * unless a test turns it on. */
static void env_base(fx *f, int imds_off) {
  f->nenv = 0;
  f->envv[0] = NULL;
  env(f, "HOME", f->dir);
  if (imds_off)
    env(f, "AWS_EC2_METADATA_DISABLED", "true");
}

static const char *put(fx *f, const char *name, const char *text) {
  static char path[4][160];
  static int k;
  char *p = path[k++ % 4];
  FILE *fp;
  snprintf(p, 160, "%s/%s", f->dir, name);
  fp = fopen(p, "w");
  assert_non_null(fp);
  fputs(text, fp);
  assert_int_equal(fclose(fp), 0);
  return p;
}

static int make(fx *f, const char *profile) {
  f->err[0] = '\0';
  return cf__aws_creds_new(&f->p, profile, f->envv, f->http, &f->loop,
                           &tm.mem, f->err, sizeof(f->err));
}

static void on_creds(int error, const char *msg, void *ud) {
  fx *f = ud;
  int i = f->calls < 16 ? f->calls : 15;
  f->errors[i] = error;
  f->at[i] = ev_time();
  snprintf(f->msg[i], sizeof(f->msg[i]), "%s", msg);
  f->calls++;
  /* Whatever happens, no secret may reach a message. */
  assert_null(strstr(msg, SECRET));
  assert_null(strstr(msg, "IQoJb3JpZ2lu"));
  if (f->free_in_cb) {
    cf__aws_creds_free(f->p);
    f->p = NULL;
  }
}

/* Ends a test: cmocka checks for leaks when the test function returns,
 * before teardown, so the provider is freed here. */
static void done(fx *f) {
  cf__aws_creds_free(f->p);
  f->p = NULL;
  assert_int_equal(cf__http_inflight(f->http), 0);
  assert_int_equal(tm.live, f->base_live);
}

/* Runs the loop until the callback ran `calls` times or `secs` passed. */
static void run_until(fx *f, int calls, double secs) {
  (void)hs_run_until(f->l, &f->calls, calls, secs);
}

/* Runs the loop for exactly secs. */
static void run_for(fx *f, double secs) {
  run_until(f, 1 << 30, secs);
}

static void start_srv(fx *f, srv_handler h, double expires_in) {
  srv_start(&f->s, f->l, h);
  f->s.expires_in = expires_in;
  f->started_srv = 1;
}

static void full_uri(fx *f, const char *path) {
  char url[128];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", f->s.port, path);
  env(f, "AWS_CONTAINER_CREDENTIALS_FULL_URI", url);
}

/* ---- static credentials ----------------------------------------------- */

static void test_env(void **state) {
  fx *f = *state;
  const cf__aws_creds *c;
  env_base(f, 1);
  env(f, "AWS_ACCESS_KEY_ID", "AKIDENV");
  env(f, "AWS_SECRET_ACCESS_KEY", SECRET);
  env(f, "AWS_SESSION_TOKEN", TOKEN);
  /* The files are not even read when the environment has keys. */
  env(f, "AWS_SHARED_CREDENTIALS_FILE", put(f, "bad", "garbage\n"));
  assert_int_equal(cf__aws_creds_new(&f->p, NULL, f->envv, NULL, &f->loop,
                                     &tm.mem, f->err, sizeof(f->err)),
                   CF_OK);
  assert_string_equal(cf__aws_creds_source(f->p), "env");
  c = cf__aws_creds_get(f->p);
  assert_non_null(c); /* ready before start */
  assert_string_equal(c->access_key_id, "AKIDENV");
  assert_string_equal(c->secret_key, SECRET);
  assert_string_equal(c->session_token, TOKEN);
  assert_true(c->expires == 0);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  assert_int_equal(f->calls, 0); /* never from inside start */
  run_until(f, 1, 2.0);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->errors[0], CF_OK);
  run_for(f, 0.05);
  assert_int_equal(f->calls, 1);

  cf__aws_creds_free(f->p);
  f->p = NULL;
  env_base(f, 1);
  env(f, "AWS_ACCESS_KEY_ID", "AKIDENV");
  env(f, "AWS_SECRET_ACCESS_KEY", SECRET);
  env(f, "AWS_SESSION_TOKEN", "");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_null(cf__aws_creds_get(f->p)->session_token);
  done(f);
}

static void test_env_bad(void **state) {
  static const struct {
    const char *id, *secret, *tok, *names;
  } t[] = {
      {"AKIDONLY", NULL, NULL, "AWS_SECRET_ACCESS_KEY"},
      {NULL, SECRET, NULL, "AWS_ACCESS_KEY_ID"},
      {"AKID WITH SPACE", SECRET, NULL, "AWS_ACCESS_KEY_ID"},
      {"AKID", "se cret" SECRET, NULL, "AWS_SECRET_ACCESS_KEY"},
      {"AKID", SECRET, "tok\x01" TOKEN, "AWS_SESSION_TOKEN"},
  };
  fx *f = *state;
  size_t i;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    env_base(f, 0);
    if (t[i].id)
      env(f, "AWS_ACCESS_KEY_ID", t[i].id);
    if (t[i].secret)
      env(f, "AWS_SECRET_ACCESS_KEY", t[i].secret);
    if (t[i].tok)
      env(f, "AWS_SESSION_TOKEN", t[i].tok);
    assert_int_equal(make(f, NULL), CF_ERR_INVALID);
    assert_null(f->p);
    assert_non_null(strstr(f->err, t[i].names));
    assert_null(strstr(f->err, SECRET));
    assert_null(strstr(f->err, "AKID"));
    assert_null(strstr(f->err, TOKEN));
  }
  done(f);
}

static const char cred_text[] =
    "[default]\n"
    "aws_access_key_id = AKIDDEFAULT\n"
    "aws_secret_access_key = " SECRET "\n"
    "[dev]\n"
    "aws_access_key_id = AKIDDEV ; comment\n"
    "aws_secret_access_key = " SECRET "\n"
    "[half]\n"
    "aws_access_key_id = AKIDHALF\n"
    "[profile dev]\n"
    "aws_access_key_id = NOT_THIS_ONE\n";

static const char conf_text[] =
    "[default]\n"
    "region = us-west-2\n"
    "[profile dev]\n"
    "aws_access_key_id = AKIDCONF\n"
    "aws_session_token = " TOKEN "\n"
    "[profile cfgonly]\n"
    "aws_access_key_id = AKIDCFG\n"
    "aws_secret_access_key = " SECRET "\n"
    "[profile role]\n"
    "role_arn = arn:aws:iam::123456789012:role/x\n"
    "source_profile = default\n"
    "[profile empty]\n"
    "region = eu-west-1\n";

static void files_env(fx *f) {
  env_base(f, 1);
  env(f, "AWS_SHARED_CREDENTIALS_FILE", put(f, "credentials", cred_text));
  env(f, "AWS_CONFIG_FILE", put(f, "config", conf_text));
}

static void expect_static(fx *f, const char *profile, const char *id,
                          const char *token) {
  const cf__aws_creds *c;
  if (make(f, profile) != CF_OK)
    fail_msg("%s: %s", profile ? profile : "(null)", f->err);
  assert_string_equal(cf__aws_creds_source(f->p), "file");
  c = cf__aws_creds_get(f->p);
  assert_non_null(c);
  assert_string_equal(c->access_key_id, id);
  assert_string_equal(c->secret_key, SECRET);
  if (token == NULL)
    assert_null(c->session_token);
  else
    assert_string_equal(c->session_token, token);
  cf__aws_creds_free(f->p);
  f->p = NULL;
}

static void test_files(void **state) {
  fx *f = *state;
  files_env(f);
  expect_static(f, NULL, "AKIDDEFAULT", NULL);
  expect_static(f, "default", "AKIDDEFAULT", NULL);
  /* The credentials file wins key by key; the token comes from config. */
  expect_static(f, "dev", "AKIDDEV", TOKEN);
  expect_static(f, "cfgonly", "AKIDCFG", NULL);

  /* The default paths under HOME. */
  env_base(f, 1);
  {
    char d[128];
    snprintf(d, sizeof(d), "%s/.aws", f->dir);
    assert_int_equal(mkdir(d, 0700), 0);
  }
  put(f, ".aws/credentials", "[default]\r\naws_access_key_id=AKIDHOME\r\n"
                             "aws_secret_access_key=" SECRET "\r\n");
  expect_static(f, NULL, "AKIDHOME", NULL);
  env(f, "AWS_SHARED_CREDENTIALS_FILE", "~/tilde");
  put(f, "tilde", "[default]\naws_access_key_id=AKIDTILDE\n"
                  "aws_secret_access_key=" SECRET "\n");
  expect_static(f, NULL, "AKIDTILDE", NULL);
  done(f);
}

static void test_files_bad(void **state) {
  static const struct {
    const char *profile, *names;
  } t[] = {
      {"half", "aws_secret_access_key"},
      {"role", "role_arn"},
      {"nowhere", "'nowhere' not found"},
      {"empty", "no AWS credentials"},
  };
  fx *f = *state;
  size_t i;
  files_env(f);
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    assert_int_equal(make(f, t[i].profile), CF_ERR_INVALID);
    if (strstr(f->err, t[i].names) == NULL)
      fail_msg("%s: %s", t[i].profile, f->err);
    assert_null(strstr(f->err, "AKID"));
  }
  assert_int_equal(make(f, "bad name"), CF_ERR_INVALID);

  /* A malformed credentials file is reported with its line... */
  env_base(f, 1);
  env(f, "AWS_SHARED_CREDENTIALS_FILE",
      put(f, "c2", "[default]\naws_access_key_id = AKIDX\nnonsense\n"));
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "line 3: malformed"));
  assert_null(strstr(f->err, "AKIDX"));
  /* ... a malformed config file matters only when the keys are not all
   * in the credentials file. */
  env_base(f, 1);
  env(f, "AWS_SHARED_CREDENTIALS_FILE", put(f, "c3", cred_text));
  env(f, "AWS_CONFIG_FILE", put(f, "f3", "oops\n"));
  expect_static(f, NULL, "AKIDDEFAULT", NULL);
  assert_int_equal(make(f, "half"), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "config file"));

  /* Nothing anywhere, IMDS off. */
  env_base(f, 1);
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "no AWS credentials"));
  /* Web identity is not silently replaced by the instance role. */
  env_base(f, 0);
  env(f, "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token");
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "AWS_WEB_IDENTITY_TOKEN_FILE"));
  done(f);
}

/* Every allocation of setting up from files may fail without a leak. */
static void test_files_nomem(void **state) {
  fx *f = *state;
  unsigned long n, base = tm.live;
  files_env(f);
  for (n = 1;; n++) {
    test_mem m;
    int rc;
    test_mem_init(&m, n);
    rc = cf__aws_creds_new(&f->p, "dev", f->envv, f->http, &f->loop, &m.mem,
                           f->err, sizeof(f->err));
    if (!m.failed) {
      assert_int_equal(rc, CF_OK);
      cf__aws_creds_free(f->p);
      f->p = NULL;
      assert_int_equal(m.live, 0);
      break;
    }
    assert_int_equal(rc, CF_ERR_NOMEM);
    assert_null(f->p);
    assert_int_equal(m.live, 0);
  }
  assert_true(n > 5);
  assert_int_equal(tm.live, base);
  done(f);
}

/* ---- container credentials -------------------------------------------- */

/* Serves credentials, or fails by mode: 1 = 500, 2 = drop, 3 = 403. */
static void h_container(srv *s, const sreq *r, int *status, char *body,
                        size_t cap, int *drop) {
  (void)r;
  if (s->mode == 1) {
    *status = 500;
    snprintf(body, cap, "{\"code\": \"Oops\"}");
    return;
  }
  if (s->mode == 2) {
    *drop = 1;
    return;
  }
  *status = 200;
  creds_doc(s, body, cap, 0);
}

static void test_container_token(void **state) {
  fx *f = *state;
  const cf__aws_creds *c;
  double exp;
  start_srv(f, h_container, 3600);
  env_base(f, 0);
  full_uri(f, "/creds?id=1");
  env(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer abc def");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_string_equal(cf__aws_creds_source(f->p), "container");
  assert_null(cf__aws_creds_get(f->p));
  assert_int_equal(f->s.nreq, 0); /* nothing before start */
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_equal(f->calls, 1);
  if (f->errors[0] != CF_OK)
    fail_msg("%s", f->msg[0]);
  assert_int_equal(f->s.nreq, 1);
  assert_string_equal(f->s.reqs[0].method, "GET");
  assert_string_equal(f->s.reqs[0].target, "/creds?id=1");
  assert_string_equal(f->s.reqs[0].auth, "Bearer abc def");
  c = cf__aws_creds_get(f->p);
  assert_non_null(c);
  assert_string_equal(c->access_key_id, "ASIAGEN1");
  assert_string_equal(c->secret_key, SECRET);
  assert_string_equal(c->session_token, TOKEN "1");
  exp = f->s.reqs[0].at + 3600;
  assert_true(c->expires > exp - 1.0 && c->expires < exp + 0.01);
  /* The next fetch is 5 minutes ahead of expiry: nothing soon. */
  run_for(f, 0.3);
  assert_int_equal(f->s.nreq, 1);
  done(f);
}

/* The token file is read at every fetch; short-lived credentials are
 * refreshed halfway, before they expire. */
static void test_container_file_refresh(void **state) {
  fx *f = *state;
  const cf__aws_creds *c;
  const char *tf;
  double gap;
  start_srv(f, h_container, 3.0);
  env_base(f, 0);
  full_uri(f, "/eks");
  tf = put(f, "token", "tok-one\n");
  env(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf);
  env(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "not-this");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_equal(f->errors[0], CF_OK);
  assert_string_equal(f->s.reqs[0].auth, "tok-one");
  put(f, "token", "tok-two");
  run_until(f, 2, 5.0);
  assert_int_equal(f->calls, 2);
  assert_int_equal(f->errors[1], CF_OK);
  assert_int_equal(f->s.nreq, 2);
  assert_string_equal(f->s.reqs[1].auth, "tok-two");
  gap = f->s.reqs[1].at - f->s.reqs[0].at;
  /* Halfway through a 3 s life (Expiration has ms precision). */
  assert_true(gap > 1.2 && gap < 2.5);
  c = cf__aws_creds_get(f->p);
  assert_string_equal(c->access_key_id, "ASIAGEN2");

  /* A token file that disappears fails the fetch, not the process. */
  assert_int_equal(unlink(tf), 0);
  run_until(f, 3, 5.0);
  assert_int_equal(f->errors[2], CF_ERR_NOT_FOUND);
  assert_non_null(strstr(f->msg[2], "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"));
  assert_int_equal(f->s.nreq, 2);
  done(f);
}

/* Refresh fails: the old credentials stay in use until they expire,
 * retries back off 1 s then 2 s, and the next success replaces them. */
static void test_container_keep_and_retry(void **state) {
  fx *f = *state;
  const cf__aws_creds *c;
  double t0, g1, g2;
  start_srv(f, h_container, 4.0);
  env_base(f, 0);
  full_uri(f, "/c");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_equal(f->errors[0], CF_OK);
  assert_string_equal(f->s.reqs[0].auth, ""); /* no token configured */
  t0 = f->s.reqs[0].at;
  f->s.mode = 1; /* the refresh at ~2 s fails, and the retry at ~3 s */
  run_until(f, 2, 5.0);
  assert_int_equal(f->errors[1], CF_ERR_BACKEND);
  assert_non_null(strstr(f->msg[1], "HTTP 500"));
  c = cf__aws_creds_get(f->p);
  assert_non_null(c); /* still valid */
  assert_string_equal(c->access_key_id, "ASIAGEN1");
  run_until(f, 3, 5.0);
  assert_int_equal(f->errors[2], CF_ERR_BACKEND);
  assert_non_null(cf__aws_creds_get(f->p));
  f->s.mode = 0;
  /* Past expiry (t0 + 4) the old set is gone, before the retry at ~5 s. */
  run_for(f, t0 + 4.3 - ev_time());
  assert_int_equal(f->calls, 3);
  assert_null(cf__aws_creds_get(f->p));
  run_until(f, 4, 5.0);
  assert_int_equal(f->errors[3], CF_OK);
  assert_string_equal(cf__aws_creds_get(f->p)->access_key_id, "ASIAGEN2");
  g1 = f->s.reqs[2].at - f->s.reqs[1].at;
  g2 = f->s.reqs[3].at - f->s.reqs[2].at;
  assert_true(g1 > 0.9 && g1 < 1.8);
  assert_true(g2 > 1.9 && g2 < 2.8);
  done(f);
}

/* A first fetch that fails reports it and recovers after 1 s. */
static void test_container_recover(void **state) {
  fx *f = *state;
  double gap;
  start_srv(f, h_container, 3600);
  f->s.mode = 2;
  env_base(f, 0);
  full_uri(f, "/c");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_not_equal(f->errors[0], CF_OK);
  assert_non_null(strstr(f->msg[0], "container credentials"));
  assert_null(cf__aws_creds_get(f->p));
  f->s.mode = 0;
  run_until(f, 2, 5.0);
  assert_int_equal(f->errors[1], CF_OK);
  gap = f->at[1] - f->at[0];
  assert_true(gap > 0.9 && gap < 1.8);
  assert_non_null(cf__aws_creds_get(f->p));
  done(f);
}

static const char *bad_body;

static void h_body(srv *s, const sreq *r, int *status, char *body,
                   size_t cap, int *drop) {
  (void)s;
  (void)r;
  (void)drop;
  *status = 200;
  snprintf(body, cap, "%s", bad_body);
}

static void test_container_bad_docs(void **state) {
  static const struct {
    const char *body;
    int error;
    const char *says;
  } t[] = {
      {"not json " SECRET, CF_ERR_PARSE, "not a JSON object"},
      {"[1, 2]", CF_ERR_PARSE, "not a JSON object"},
      {"{\"AccessKeyId\": \"A\"}", CF_ERR_PARSE, "SecretAccessKey"},
      {"{\"SecretAccessKey\": \"" SECRET "\"}", CF_ERR_PARSE, "AccessKeyId"},
      {"{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET "\", "
       "\"Expiration\": \"tomorrow\"}", CF_ERR_PARSE, "Expiration"},
      {"{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET "\", "
       "\"Expiration\": \"2001-01-01T00:00:00Z\"}", CF_ERR_BACKEND,
       "expired"},
      {"{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"" SECRET "\", "
       "\"Token\": \"a b\"}", CF_ERR_PARSE, "Token"},
      {"{\"AccessKeyId\": 7, \"SecretAccessKey\": \"" SECRET "\"}",
       CF_ERR_PARSE, "AccessKeyId"},
  };
  fx *f = *state;
  size_t i;
  start_srv(f, h_body, 0);
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    bad_body = t[i].body;
    env_base(f, 0);
    full_uri(f, "/c");
    f->calls = 0;
    assert_int_equal(make(f, NULL), CF_OK);
    assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
    run_until(f, 1, 5.0);
    assert_int_equal(f->calls, 1);
    if (f->errors[0] != t[i].error || !strstr(f->msg[0], t[i].says))
      fail_msg("case %zu: %d %s", i, f->errors[0], f->msg[0]);
    assert_null(cf__aws_creds_get(f->p));
    cf__aws_creds_free(f->p);
    f->p = NULL;
  }
  /* No Expiration: credentials that do not expire. */
  bad_body = "{\"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}";
  env_base(f, 0);
  full_uri(f, "/c");
  f->calls = 0;
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_equal(f->errors[0], CF_OK);
  assert_true(cf__aws_creds_get(f->p)->expires == 0);
  assert_null(cf__aws_creds_get(f->p)->session_token);
  done(f);
}

static void test_container_rules(void **state) {
  static const struct {
    const char *var, *value;
    int rc;
  } t[] = {
      {"FULL", "http://127.0.0.1:1/c", CF_OK},
      {"FULL", "http://127.200.3.4/c", CF_OK},
      {"FULL", "http://localhost:8/x", CF_OK},
      {"FULL", "http://LOCALHOST/x", CF_OK},
      {"FULL", "http://[::1]:9/x", CF_OK},
      {"FULL", "http://169.254.170.2/v2/credentials", CF_OK},
      {"FULL", "http://169.254.170.23/v1/credentials", CF_OK},
      {"FULL", "http://[fd00:ec2::23]/v1/credentials", CF_OK},
      {"FULL", "https://creds.example.com/x", CF_OK},
      {"FULL", "http://creds.example.com/x", CF_ERR_INVALID},
      {"FULL", "http://10.0.0.1/x", CF_ERR_INVALID},
      {"FULL", "http://169.254.170.3/x", CF_ERR_INVALID},
      {"FULL", "http://169.254.169.254/x", CF_ERR_INVALID},
      {"FULL", "http://[::2]/x", CF_ERR_INVALID},
      {"FULL", "http://127.0.0.1.example.com/x", CF_ERR_INVALID},
      {"FULL", "ftp://127.0.0.1/x", CF_ERR_INVALID},
      {"FULL", "http://u:p@127.0.0.1/x", CF_ERR_INVALID},
      {"REL", "/v2/credentials/abc", CF_OK},
      {"REL", "v2/credentials", CF_ERR_INVALID},
      {"REL", "/a b", CF_ERR_INVALID},
  };
  fx *f = *state;
  size_t i;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    int rc;
    env_base(f, 1);
    env(f, strcmp(t[i].var, "FULL") == 0
               ? "AWS_CONTAINER_CREDENTIALS_FULL_URI"
               : "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        t[i].value);
    rc = make(f, NULL);
    if (rc != t[i].rc)
      fail_msg("%s: %d %s", t[i].value, rc, f->err);
    if (rc == CF_OK)
      assert_string_equal(cf__aws_creds_source(f->p), "container");
    else
      assert_non_null(strstr(f->err, "AWS_CONTAINER_CREDENTIALS_"));
    cf__aws_creds_free(f->p);
    f->p = NULL;
  }
  /* The relative URI wins, even over an invalid full one. */
  env_base(f, 1);
  env(f, "AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://evil.example.com/");
  env(f, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x");
  assert_int_equal(make(f, NULL), CF_OK);
  cf__aws_creds_free(f->p);
  f->p = NULL;
  /* A token with a line break would inject a header. */
  env(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc\r\nX-Evil: 1");
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "AWS_CONTAINER_AUTHORIZATION_TOKEN"));
  assert_null(strstr(f->err, "abc"));
  /* Fetching needs an HTTP client. */
  env_base(f, 1);
  env(f, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/x");
  assert_int_equal(cf__aws_creds_new(&f->p, NULL, f->envv, NULL, &f->loop,
                                     &tm.mem, f->err, sizeof(f->err)),
                   CF_ERR_INVALID);
  /* Static credentials win over the container. */
  env(f, "AWS_ACCESS_KEY_ID", "AKID");
  env(f, "AWS_SECRET_ACCESS_KEY", SECRET);
  assert_int_equal(make(f, NULL), CF_OK);
  assert_string_equal(cf__aws_creds_source(f->p), "env");
  done(f);
}

/* ---- IMDSv2 ------------------------------------------------------------ */

/* Token PUT, role listing, role credentials; a wrong header gets 401. */
static void h_imds(srv *s, const sreq *r, int *status, char *body,
                   size_t cap, int *drop) {
  const char *base = "/latest/meta-data/iam/security-credentials/";
  (void)drop;
  *status = 401;
  if (strcmp(r->target, "/latest/api/token") == 0) {
    if (strcmp(r->method, "PUT") == 0 && strcmp(r->ttl, "21600") == 0) {
      *status = 200;
      snprintf(body, cap, "IMDSTOKEN-%d==", s->gen);
    }
    return;
  }
  if (strcmp(r->method, "GET") != 0 || strncmp(r->imds_tok, "IMDSTOKEN-", 10))
    return;
  if (strcmp(r->target, base) == 0) {
    *status = s->mode == 4 ? 404 : 200;
    snprintf(body, cap, "%s", s->mode == 4 ? "" : "my-role\n");
  } else if (strncmp(r->target, base, strlen(base)) == 0 &&
             strcmp(r->target + strlen(base), "my-role") == 0) {
    *status = 200;
    creds_doc(s, body, cap, 1);
  } else {
    *status = 404;
  }
}

static void imds_env(fx *f) {
  char url[64];
  env_base(f, 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", f->s.port);
  env(f, "AWS_EC2_METADATA_SERVICE_ENDPOINT", url);
}

static void test_imds(void **state) {
  fx *f = *state;
  const cf__aws_creds *c;
  int i;
  start_srv(f, h_imds, 3600);
  imds_env(f);
  assert_int_equal(make(f, NULL), CF_OK);
  assert_string_equal(cf__aws_creds_source(f->p), "imds");
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  if (f->errors[0] != CF_OK)
    fail_msg("%s", f->msg[0]);
  assert_int_equal(f->s.nreq, 3);
  assert_string_equal(f->s.reqs[0].method, "PUT");
  assert_string_equal(f->s.reqs[0].target, "/latest/api/token");
  assert_string_equal(f->s.reqs[0].ttl, "21600");
  assert_string_equal(f->s.reqs[0].imds_tok, "");
  assert_string_equal(f->s.reqs[1].target,
                      "/latest/meta-data/iam/security-credentials/");
  assert_string_equal(f->s.reqs[2].target,
                      "/latest/meta-data/iam/security-credentials/my-role");
  for (i = 1; i < 3; i++) {
    assert_string_equal(f->s.reqs[i].method, "GET");
    assert_string_equal(f->s.reqs[i].imds_tok, "IMDSTOKEN-0==");
    assert_string_equal(f->s.reqs[i].ttl, "");
  }
  c = cf__aws_creds_get(f->p);
  assert_non_null(c);
  assert_string_equal(c->access_key_id, "ASIAGEN1");
  assert_string_equal(c->session_token, TOKEN "1");
  assert_true(c->expires > ev_time() + 3590);
  done(f);
}

static void test_imds_failures(void **state) {
  fx *f = *state;
  double t0;
  start_srv(f, h_imds, 3600);
  f->s.mode = 4; /* no role attached */
  imds_env(f);
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 5.0);
  assert_int_equal(f->errors[0], CF_ERR_BACKEND);
  assert_non_null(strstr(f->msg[0], "IMDS role: HTTP 404"));
  assert_int_equal(f->s.nreq, 2);
  cf__aws_creds_free(f->p);
  f->p = NULL;

  /* Nothing listening: fails fast, as off EC2. */
  srv_stop(&f->s);
  f->started_srv = 0;
  imds_env(f);
  f->calls = 0;
  assert_int_equal(make(f, NULL), CF_OK);
  t0 = ev_time();
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 3.0);
  assert_int_equal(f->calls, 1);
  assert_int_equal(f->errors[0], CF_ERR_IO);
  assert_non_null(strstr(f->msg[0], "IMDS token"));
  assert_true(f->at[0] - t0 < 2.5);
  cf__aws_creds_free(f->p);
  f->p = NULL;

  env_base(f, 0);
  env(f, "AWS_EC2_METADATA_SERVICE_ENDPOINT", "nope://x");
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  assert_non_null(strstr(f->err, "AWS_EC2_METADATA_SERVICE_ENDPOINT"));
  env_base(f, 0);
  env(f, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "IPv5");
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  env_base(f, 0);
  env(f, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "ipv6");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_string_equal(cf__aws_creds_source(f->p), "imds");
  cf__aws_creds_free(f->p);
  f->p = NULL;
  env_base(f, 0);
  env(f, "AWS_EC2_METADATA_DISABLED", "TRUE");
  assert_int_equal(make(f, NULL), CF_ERR_INVALID);
  done(f);
}

/* Each allocation the provider makes while fetching may fail: the fetch
 * reports CF_ERR_NOMEM and nothing leaks. */
static void fetch_sweep(fx *f, int imds) {
  unsigned long k;
  for (k = 1;; k++) {
    test_mem m;
    test_mem_init(&m, 0);
    if (imds) {
      imds_env(f);
    } else {
      env_base(f, 0);
      full_uri(f, "/c");
      env(f, "AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok");
    }
    assert_int_equal(cf__aws_creds_new(&f->p, NULL, f->envv, f->http,
                                       &f->loop, &m.mem, f->err,
                                       sizeof(f->err)),
                     CF_OK);
    m.fail_at = m.count + k;
    f->calls = 0;
    assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
    run_until(f, 1, 5.0);
    assert_int_equal(f->calls, 1);
    if (!m.failed) {
      assert_int_equal(f->errors[0], CF_OK);
      assert_non_null(cf__aws_creds_get(f->p));
    } else {
      assert_int_equal(f->errors[0], CF_ERR_NOMEM);
      assert_null(cf__aws_creds_get(f->p));
    }
    cf__aws_creds_free(f->p);
    f->p = NULL;
    assert_int_equal(m.live, 0);
    if (!m.failed)
      break;
  }
  assert_true(k > 3);
}

static void test_fetch_nomem(void **state) {
  fx *f = *state;
  start_srv(f, h_container, 3600);
  fetch_sweep(f, 0);
  srv_stop(&f->s);
  start_srv(f, h_imds, 3600);
  fetch_sweep(f, 1);
  done(f);
}

/* ---- lifecycle --------------------------------------------------------- */

static void test_free_in_callback(void **state) {
  fx *f = *state;
  start_srv(f, h_container, 3600);
  /* A static provider freed from its start report. */
  env_base(f, 1);
  env(f, "AWS_ACCESS_KEY_ID", "AKID");
  env(f, "AWS_SECRET_ACCESS_KEY", SECRET);
  assert_int_equal(make(f, NULL), CF_OK);
  f->free_in_cb = 1;
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 1, 2.0);
  assert_null(f->p);
  /* A fetching one freed from its success report... */
  env_base(f, 0);
  full_uri(f, "/c");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 2, 5.0);
  assert_int_equal(f->errors[1], CF_OK);
  assert_null(f->p);
  /* ... and from a failure report (no retry may fire afterwards). */
  f->s.mode = 1;
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  run_until(f, 3, 5.0);
  assert_int_equal(f->errors[2], CF_ERR_BACKEND);
  assert_null(f->p);
  run_for(f, 1.2);
  assert_int_equal(f->calls, 3);
  assert_int_equal(f->s.nreq, 2);
  done(f);
}

/* Freed with a fetch in flight: no callback, nothing leaks. */
static void test_free_in_flight(void **state) {
  fx *f = *state;
  start_srv(f, h_container, 3600);
  env_base(f, 0);
  full_uri(f, "/c");
  assert_int_equal(make(f, NULL), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  assert_int_equal(cf__aws_creds_start(f->p, on_creds, f), CF_OK);
  ev_run(f->l, EVRUN_NOWAIT); /* the 0 timer: the request goes out */
  assert_int_equal(cf__http_inflight(f->http), 1);
  cf__aws_creds_free(f->p);
  f->p = NULL;
  assert_int_equal(cf__http_inflight(f->http), 0);
  run_for(f, 0.3);
  assert_int_equal(f->calls, 0);
  cf__aws_creds_free(NULL);
  assert_null(cf__aws_creds_get(NULL));
  assert_int_equal(cf__aws_creds_start(NULL, on_creds, f), CF_ERR_INVALID);
  done(f);
}

int main(void) {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
  const struct CMUnitTest tests[] = {
      T(test_env),
      T(test_env_bad),
      T(test_files),
      T(test_files_bad),
      T(test_files_nomem),
      T(test_container_token),
      T(test_container_file_refresh),
      T(test_container_keep_and_retry),
      T(test_container_recover),
      T(test_container_bad_docs),
      T(test_container_rules),
      T(test_imds),
      T(test_imds_failures),
      T(test_fetch_nomem),
      T(test_free_in_callback),
      T(test_free_in_flight),
  };
#undef T
  return cmocka_run_group_tests(tests, NULL, NULL);
}
