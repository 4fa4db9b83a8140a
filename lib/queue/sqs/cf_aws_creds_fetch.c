/*
 * The credentials chain, part two: fetching from a container endpoint
 * or from IMDSv2 through cf_http, parsing the JSON answer, scheduling
 * the refresh ahead of expiry and the retries after failures.
 */
#include "cf_aws_creds_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cf_aws_ini.h"
#include "cf_mem.h"

#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

#define REFRESH_AHEAD 300.0      /* refresh this long before expiry ... */
#define REFRESH_NO_EXPIRY 3600.0 /* ... or this often without one */
#define REFRESH_MIN 1.0
#define RETRY_MAX 60.0 /* retries double up to a minute */

enum { STEP_IDLE, STEP_CONTAINER, STEP_TOKEN, STEP_ROLE, STEP_CREDS };

/* How long until the next refresh: 5 minutes before expiry, or halfway
 * for credentials that live less than 10 minutes. */
static double refresh_delay(double now, double expires) {
  double life = expires - now, d;
  if (expires <= 0)
    return REFRESH_NO_EXPIRY;
  d = life >= 2 * REFRESH_AHEAD ? life - REFRESH_AHEAD : life / 2;
  return d > REFRESH_MIN ? d : REFRESH_MIN;
}

/* Reports a failed fetch and arms the retry. The credentials we have
 * stay in use until they expire (get() checks). */
static void fetch_fail(cf__aws_creds_provider *p, int error, const char *fmt,
                       ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void fetch_fail(cf__aws_creds_provider *p, int error, const char *fmt,
                       ...) {
  char buf[sizeof(p->msg)];
  va_list ap;
  /* Through buf: callers may pass p->msg itself as an argument. */
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  memcpy(p->msg, buf, sizeof(buf));
  cf__aws_wipe_free(&p->mem, &p->imds_token);
  p->step = STEP_IDLE;
  p->loop.timer_set(p->loop.data, p->timer, p->retry);
  p->retry = p->retry * 2 < RETRY_MAX ? p->retry * 2 : RETRY_MAX;
  cf__aws_creds_report(p, error, p->msg);
}

static void install(cf__aws_creds_provider *p, cf__aws_cset *set,
                    const char *what) {
  double now = p->loop.now(p->loop.data); /* wall: expires is a date */
  if (set->expires > 0 && set->expires <= now) {
    cf__aws_cset_clear(&p->mem, set);
    fetch_fail(p, CF_ERR_BACKEND, "%s: credentials already expired", what);
    return;
  }
  cf__aws_cset_clear(&p->mem, &p->prev);
  p->prev = p->cur;
  p->cur = *set;
  cf__aws_creds_view(p);
  p->step = STEP_IDLE;
  p->retry = CF__AWS_RETRY_FIRST;
  p->loop.timer_set(p->loop.data, p->timer, refresh_delay(now, set->expires));
  cf__aws_creds_report(p, CF_OK, "");
}

static const char *json_str(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

/* jansson frees its strings without wiping; the secrets are wiped in
 * place first (the buffers are jansson's own heap copies). */
static void json_wipe(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (json_is_string(v))
    OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

/* Fills set from {AccessKeyId, SecretAccessKey, Token, Expiration}. The
 * parser's own error text is never used: it quotes the input. */
static int creds_json(cf__aws_creds_provider *p, json_t *o, cf__aws_cset *set,
                      const char *what) {
  static const char *const names[3] = {"AccessKeyId", "SecretAccessKey",
                                       "Token"};
  const char *code = json_str(o, "Code"), *exp = json_str(o, "Expiration");
  const char *id = json_str(o, names[0]), *sk = json_str(o, names[1]);
  const char *bad = NULL;
  int rc;

  if (json_object_get(o, "Code") != NULL &&
      (code == NULL || strcmp(code, "Success") != 0)) {
    snprintf(p->msg, sizeof(p->msg), "%s: Code is not Success", what);
    return CF_ERR_BACKEND;
  }
  if (exp != NULL && cf__aws_time_parse(exp, &set->expires) != CF_OK) {
    snprintf(p->msg, sizeof(p->msg), "%s: invalid Expiration", what);
    return CF_ERR_PARSE;
  }
  if (id == NULL || sk == NULL) {
    bad = names[id != NULL];
    rc = CF_ERR_INVALID;
  } else {
    rc = cf__aws_cset_fill(&p->mem, set, id, sk, json_str(o, names[2]), names,
                           &bad);
  }
  if (rc == CF_ERR_INVALID)
    snprintf(p->msg, sizeof(p->msg), "%s: missing or invalid %s", what, bad);
  else if (rc == CF_ERR_NOMEM)
    snprintf(p->msg, sizeof(p->msg), "%s: out of memory", what);
  return rc == CF_ERR_INVALID ? CF_ERR_PARSE : rc;
}

static int creds_parse(cf__aws_creds_provider *p, const cf__http_resp *r,
                       cf__aws_cset *set, const char *what) {
  json_error_t je;
  json_t *o = json_loadb(r->body, r->body_len, 0, &je);
  int rc;

  memset(set, 0, sizeof(*set));
  if (!json_is_object(o)) {
    snprintf(p->msg, sizeof(p->msg), "%s: response is not a JSON object", what);
    json_decref(o);
    return CF_ERR_PARSE;
  }
  rc = creds_json(p, o, set, what);
  json_wipe(o, "SecretAccessKey");
  json_wipe(o, "Token");
  json_decref(o);
  return rc;
}

/* Ends a transfer's callback: failure, or the parsed credentials. */
static void fetch_done(cf__aws_creds_provider *p, const cf__http_resp *r,
                       const char *what) {
  cf__aws_cset set;
  int rc;

  if (r->error != CF_OK) {
    fetch_fail(p, r->error, "%s: %s", what, r->errmsg);
  } else if (r->status != 200) {
    fetch_fail(p, CF_ERR_BACKEND, "%s: HTTP %ld", what, r->status);
  } else if ((rc = creds_parse(p, r, &set, what)) != CF_OK) {
    fetch_fail(p, rc, "%s", p->msg);
  } else {
    install(p, &set, what);
  }
}

static int send_req(cf__aws_creds_provider *p, const char *method,
                    const char *url, const char *const *hdrs, size_t n,
                    double connect, double total, cf__http_cb cb) {
  cf__http_req req;
  memset(&req, 0, sizeof(req));
  req.method = method;
  req.url = url;
  req.headers = hdrs;
  req.nheaders = n;
  req.connect_timeout = connect;
  req.timeout = total;
  return cf__http_send(p->http, &req, cb, p, &p->xfer);
}

/* "Name: value" in a new buffer (wipe: value may be secret). */
static char *header(const cf_mem *m, const char *name, const char *value) {
  size_t a = strlen(name), b = strlen(value);
  char *h = cf__malloc(m, a + b + 3);
  if (h != NULL) {
    memcpy(h, name, a);
    memcpy(h + a, ": ", 2);
    memcpy(h + a + 2, value, b + 1);
  }
  return h;
}

/* The authorization token file, read now: the agent rotates it. */
static int auth_read(cf__aws_creds_provider *p, char **out) {
  const char *why = "";
  size_t len;
  char *buf;
  int rc = cf__aws_file_read(p->auth_file, CF__AWS_AUTH_MAX, &p->mem, &buf,
                             &len, &why);

  *out = NULL;
  if (rc != CF_OK) {
    snprintf(p->msg, sizeof(p->msg),
             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: %s",
             rc == CF_ERR_NOMEM ? "out of memory" : why);
    return rc;
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                     buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    buf[--len] = '\0';
  if (!cf__aws_line_ok(buf, CF__AWS_AUTH_MAX)) {
    snprintf(p->msg, sizeof(p->msg),
             "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: empty or not one line");
    rc = CF_ERR_INVALID;
  } else if ((*out = header(&p->mem, "Authorization", buf)) == NULL) {
    snprintf(p->msg, sizeof(p->msg), "container credentials: out of memory");
    rc = CF_ERR_NOMEM;
  }
  OPENSSL_cleanse(buf, len);
  cf__free(&p->mem, buf);
  return rc;
}

static void on_container(const cf__http_resp *r, void *user_data) {
  cf__aws_creds_provider *p = user_data;
  p->xfer = NULL;
  fetch_done(p, r, "container credentials");
}

static void container_fetch(cf__aws_creds_provider *p) {
  const char *hdrs[2] = {"Accept: application/json", NULL};
  char *auth = NULL;
  int rc = CF_OK;

  if (p->auth_file != NULL)
    rc = auth_read(p, &auth);
  else if (p->auth != NULL &&
           (auth = header(&p->mem, "Authorization", p->auth)) == NULL)
    rc = CF_ERR_NOMEM;
  if (rc == CF_OK) {
    hdrs[1] = auth;
    p->step = STEP_CONTAINER;
    rc = send_req(p, "GET", p->url, hdrs, auth != NULL ? 2 : 1, 2.0, 5.0,
                  on_container);
    if (rc != CF_OK)
      snprintf(p->msg, sizeof(p->msg), "container credentials: %s",
               cf_strerror(rc));
  }
  cf__aws_wipe_free(&p->mem, &auth);
  if (rc != CF_OK)
    fetch_fail(p, rc, "%s", p->msg);
}

static void on_imds(const cf__http_resp *r, void *user_data);

/* One IMDSv2 request. Short timeouts: off EC2 nothing answers at the
 * link-local address, and the chain should say so quickly. */
static int imds_send(cf__aws_creds_provider *p, int step) {
  char url[600], *tok = NULL;
  const char *hdr;
  int rc;

  rc = snprintf(url, sizeof(url), "%s%s%s", p->url,
                step == STEP_TOKEN ? "/latest/api/token" : IMDS_CREDS_PATH,
                step == STEP_CREDS ? p->role : "");
  if (rc < 0 || (size_t)rc >= sizeof(url))
    return CF_ERR_INVALID; /* an endpoint too long to be real */
  if (step == STEP_TOKEN) {
    hdr = "X-aws-ec2-metadata-token-ttl-seconds: 21600";
  } else if ((tok = header(&p->mem, "X-aws-ec2-metadata-token",
                           p->imds_token)) == NULL) {
    return CF_ERR_NOMEM;
  } else {
    hdr = tok;
  }
  p->step = step;
  rc = send_req(p, step == STEP_TOKEN ? "PUT" : "GET", url, &hdr, 1, 1.0, 2.0,
                on_imds);
  cf__aws_wipe_free(&p->mem, &tok);
  return rc;
}

/* The first line of the role listing, if it is a valid role name. */
static int imds_role(cf__aws_creds_provider *p, const cf__http_resp *r) {
  size_t n = 0, i;
  while (n < r->body_len && r->body[n] != '\n' && r->body[n] != '\r')
    n++;
  if (n == 0 || n > CF__AWS_ROLE_MAX)
    return CF_ERR_PARSE;
  for (i = 0; i < n; i++) {
    char c = r->body[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || strchr("+=,.@_-", c) != NULL))
      return CF_ERR_PARSE;
  }
  memcpy(p->role, r->body, n);
  p->role[n] = '\0';
  return CF_OK;
}

static const char *imds_what(int step) {
  return step == STEP_TOKEN  ? "IMDS token"
         : step == STEP_ROLE ? "IMDS role"
                             : "IMDS credentials";
}

/* Moves to the next IMDS step after a 200 to step. */
static int imds_next(cf__aws_creds_provider *p, int step,
                     const cf__http_resp *r) {
  if (step == STEP_TOKEN) {
    if (!cf__aws_value_ok(r->body, CF__AWS_AUTH_MAX) ||
        strlen(r->body) != r->body_len)
      return CF_ERR_PARSE;
    if ((p->imds_token = cf__aws_sdup(&p->mem, r->body, r->body_len)) == NULL)
      return CF_ERR_NOMEM;
    return imds_send(p, STEP_ROLE);
  }
  if (imds_role(p, r) != CF_OK)
    return CF_ERR_PARSE;
  return imds_send(p, STEP_CREDS);
}

static void on_imds(const cf__http_resp *r, void *user_data) {
  cf__aws_creds_provider *p = user_data;
  int step = p->step, rc;

  p->xfer = NULL;
  if (step == STEP_CREDS || r->error != CF_OK || r->status != 200) {
    if (step == STEP_ROLE && r->error == CF_OK && r->status == 404) {
      fetch_fail(p, CF_ERR_BACKEND,
                 "IMDS role: HTTP 404 (no instance profile attached?)");
      return;
    }
    if (step == STEP_CREDS)
      cf__aws_wipe_free(&p->mem, &p->imds_token);
    fetch_done(p, r, imds_what(step));
    return;
  }
  if ((rc = imds_next(p, step, r)) != CF_OK)
    fetch_fail(p, rc, "%s: %s", imds_what(step),
               rc == CF_ERR_PARSE ? "unexpected response" : cf_strerror(rc));
}

void cf__aws_creds_fetch(cf__aws_creds_provider *p) {
  int rc;
  if (p->source == CF__AWS_SRC_CONTAINER)
    container_fetch(p);
  else if ((rc = imds_send(p, STEP_TOKEN)) != CF_OK)
    fetch_fail(p, rc, "IMDS token: %s", cf_strerror(rc));
}
