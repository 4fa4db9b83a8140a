/*
 * The credentials chain of cf_aws_config.h. Setting up (new) decides the
 * source once, reading the environment and the shared files; static
 * credentials are then final, fetched ones are fetched on start and
 * refreshed by one timer that also paces retries. Secrets are kept only
 * in strings this file owns and wipes, and never enter a message.
 */
#include "cf_aws_config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cf_aws_ini.h"
#include "cf_mem.h"

#define ECS_BASE "http://169.254.170.2"
#define IMDS_BASE "http://169.254.169.254"
#define IMDS_BASE_V6 "http://[fd00:ec2::254]"
#define IMDS_CREDS_PATH "/latest/meta-data/iam/security-credentials/"

#define REFRESH_AHEAD 300.0   /* refresh this long before expiry ... */
#define REFRESH_NO_EXPIRY 3600.0 /* ... or this often without one */
#define REFRESH_MIN 1.0
#define RETRY_FIRST 1.0       /* failures retry after 1 s, doubling ... */
#define RETRY_MAX 60.0        /* ... up to a minute */

#define KEY_MAX 256           /* access key id and secret, bytes */
#define TOKEN_MAX 65536       /* session token, bytes */
#define AUTH_MAX 16384        /* container authorization token, bytes */
#define ROLE_MAX 64           /* IAM role name */

enum { SRC_ENV, SRC_FILE, SRC_CONTAINER, SRC_IMDS };
enum { STEP_IDLE, STEP_CONTAINER, STEP_TOKEN, STEP_ROLE, STEP_CREDS };

/* One set of credentials; every string is owned and wiped on clear. */
typedef struct cred_set {
  char *id;
  char *secret;
  char *token;
  double expires;
} cred_set;

struct cf__aws_creds_provider {
  cf_mem mem;
  cf_loop loop;
  cf__http *http;
  int source;            /* SRC_*, fixed at creation */
  cred_set cur;          /* what get() returns; id NULL when none */
  cred_set prev;         /* the set before, kept one change longer so a
                            pointer from get() outlives its iteration */
  cf__aws_creds view;    /* cur seen through the public struct */
  char *url;             /* container URL or IMDS base URL */
  char *auth;            /* AWS_CONTAINER_AUTHORIZATION_TOKEN (secret) */
  char *auth_file;       /* AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE */
  char *imds_token;      /* IMDS session token of this fetch (secret) */
  char role[ROLE_MAX + 1];
  int step;              /* STEP_*: the request in flight */
  cf__http_xfer *xfer;
  void *timer;           /* start, refresh and retry */
  double retry;          /* delay of the next retry, seconds */
  cf__aws_creds_cb cb;
  void *user_data;
  int started;
  int in_cb;             /* inside cb: free is deferred */
  int free_pending;
  char msg[256];         /* detail of the last failure */
};

static const char *const source_names[] = {"env", "file", "container",
                                           "imds"};

static char *sdup(const cf_mem *m, const char *s, size_t n) {
  char *d = cf__malloc(m, n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static void wipe_free(const cf_mem *m, char **s) {
  if (*s == NULL)
    return;
  OPENSSL_cleanse(*s, strlen(*s));
  cf__free(m, *s);
  *s = NULL;
}

static void set_clear(const cf_mem *m, cred_set *c) {
  wipe_free(m, &c->id);
  wipe_free(m, &c->secret);
  wipe_free(m, &c->token);
  c->expires = 0;
}

/* Key ids, secrets and tokens go into headers: printable, no spaces. */
static int value_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
      return 0;
  }
  return n >= 1 && n <= max;
}

/* Checks and copies a set; on a bad value names it through what/names
 * (never the value). CF_OK, CF_ERR_INVALID, CF_ERR_NOMEM. */
static int set_fill(const cf_mem *m, cred_set *c, const char *id,
                    const char *secret, const char *token,
                    const char *const names[3], const char **bad) {
  *bad = !value_ok(id, KEY_MAX)                          ? names[0]
         : !value_ok(secret, KEY_MAX)                    ? names[1]
         : token != NULL && !value_ok(token, TOKEN_MAX)  ? names[2]
                                                         : NULL;
  if (*bad != NULL)
    return CF_ERR_INVALID;
  c->id = sdup(m, id, strlen(id));
  c->secret = sdup(m, secret, strlen(secret));
  c->token = token != NULL ? sdup(m, token, strlen(token)) : NULL;
  if (c->id == NULL || c->secret == NULL ||
      (token != NULL && c->token == NULL)) {
    set_clear(m, c);
    return CF_ERR_NOMEM;
  }
  return CF_OK;
}

static void view_update(cf__aws_creds_provider *p) {
  p->view.access_key_id = p->cur.id;
  p->view.secret_key = p->cur.secret;
  p->view.session_token = p->cur.token;
  p->view.expires = p->cur.expires;
}

/* ---- static sources ---- */

static int from_env(cf__aws_creds_provider *p, char *const *envp,
                    char *err, size_t errlen) {
  static const char *const names[3] = {
      "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"};
  const char *id = cf__aws_env(envp, names[0]);
  const char *secret = cf__aws_env(envp, names[1]), *bad;
  int rc;

  if (id == NULL && secret == NULL)
    return CF_ERR_NOT_FOUND;
  if (id == NULL || secret == NULL) {
    cf__aws_errf(err, errlen, "%s is set but %s is not",
                 names[id == NULL], names[id != NULL]);
    return CF_ERR_INVALID;
  }
  rc = set_fill(&p->mem, &p->cur, id, secret,
                cf__aws_env(envp, names[2]), names, &bad);
  if (rc == CF_ERR_INVALID)
    cf__aws_errf(err, errlen, "%s: invalid value (1 to %d printable "
                 "characters without spaces)", bad,
                 bad == names[2] ? TOKEN_MAX : KEY_MAX);
  p->source = SRC_ENV;
  return rc;
}

/* Both shared files, read once for the file source. */
typedef struct files {
  const cf_mem *m;
  const char *profile;
  char *cpath, *fpath;       /* credentials, config; NULL: no HOME */
  cf__aws_ini *cred, *conf;  /* NULL when missing or unreadable */
  int crc, frc;
  char cerr[300], ferr[300];
} files;

static int files_load(files *f, char *const *envp) {
  int rc = cf__aws_file_path(&f->cpath, envp, "AWS_SHARED_CREDENTIALS_FILE",
                             ".aws/credentials", f->m);
  if (rc == CF_OK)
    rc = cf__aws_file_path(&f->fpath, envp, "AWS_CONFIG_FILE",
                           ".aws/config", f->m);
  if (rc != CF_OK)
    return rc;
  f->crc = f->frc = CF_ERR_NOT_FOUND;
  if (f->cpath != NULL)
    f->crc = cf__aws_ini_load(&f->cred, f->cpath, f->m, f->cerr,
                              sizeof(f->cerr));
  if (f->fpath != NULL)
    f->frc = cf__aws_ini_load(&f->conf, f->fpath, f->m, f->ferr,
                              sizeof(f->ferr));
  return f->crc == CF_ERR_NOMEM || f->frc == CF_ERR_NOMEM ? CF_ERR_NOMEM
                                                          : CF_OK;
}

static void files_free(files *f) {
  cf__aws_ini_free(f->cred);
  cf__aws_ini_free(f->conf);
  cf__free(f->m, f->cpath);
  cf__free(f->m, f->fpath);
}

/* The credentials file wins over the config file, key by key, as in
 * the SDKs. */
static const char *files_get(const files *f, const char *key) {
  const char *v = cf__aws_ini_profile(f->cred, 0, f->profile, key);
  return v != NULL ? v : cf__aws_ini_profile(f->conf, 1, f->profile, key);
}

/* Profiles this chain cannot use: better an error than silently falling
 * through to another identity (the instance's role). */
static int files_unsupported(const files *f, char *err, size_t errlen) {
  static const char *const keys[] = {
      "role_arn", "credential_process", "sso_session", "sso_start_url",
      "web_identity_token_file", "credential_source"};
  size_t i;
  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    if (files_get(f, keys[i]) != NULL) {
      cf__aws_errf(err, errlen, "AWS profile '%s' uses %s, which is not "
                   "supported (use static keys, the container or the "
                   "instance role)", f->profile, keys[i]);
      return CF_ERR_INVALID;
    }
  }
  if (strcmp(f->profile, "default") != 0 &&
      !cf__aws_ini_has_profile(f->cred, 0, f->profile) &&
      !cf__aws_ini_has_profile(f->conf, 1, f->profile)) {
    cf__aws_errf(err, errlen, "AWS profile '%s' not found in the shared "
                 "credentials or config file", f->profile);
    return CF_ERR_INVALID;
  }
  return CF_ERR_NOT_FOUND;
}

/* A file that could not be read matters unless the credentials file
 * alone supplied the keys. */
static int files_errors(const files *f, int cred_whole, char *err,
                        size_t errlen) {
  int cbad = f->crc != CF_OK && f->crc != CF_ERR_NOT_FOUND;
  int fbad = f->frc != CF_OK && f->frc != CF_ERR_NOT_FOUND;
  if (cbad)
    cf__aws_errf(err, errlen, "AWS shared credentials file %s", f->cerr);
  else if (fbad && !cred_whole)
    cf__aws_errf(err, errlen, "AWS config file %s", f->ferr);
  return cbad || (fbad && !cred_whole) ? CF_ERR_INVALID : CF_OK;
}

static int from_files_keys(cf__aws_creds_provider *p, const files *f,
                           char *err, size_t errlen) {
  static const char *const names[3] = {
      "aws_access_key_id", "aws_secret_access_key", "aws_session_token"};
  const char *id = files_get(f, names[0]), *secret = files_get(f, names[1]);
  int cred_whole = cf__aws_ini_profile(f->cred, 0, f->profile, names[0]) &&
                   cf__aws_ini_profile(f->cred, 0, f->profile, names[1]);
  const char *bad;
  int rc;

  if ((rc = files_errors(f, cred_whole, err, errlen)) != CF_OK)
    return rc;
  if (id == NULL && secret == NULL)
    return files_unsupported(f, err, errlen);
  if (id == NULL || secret == NULL) {
    cf__aws_errf(err, errlen, "AWS profile '%s': %s without %s", f->profile,
                 names[id == NULL], names[id != NULL]);
    return CF_ERR_INVALID;
  }
  rc = set_fill(&p->mem, &p->cur, id, secret, files_get(f, names[2]), names,
                &bad);
  if (rc == CF_ERR_INVALID)
    cf__aws_errf(err, errlen, "AWS profile '%s': %s: invalid value",
                 f->profile, bad);
  p->source = SRC_FILE;
  return rc;
}

static int from_files(cf__aws_creds_provider *p, const char *profile,
                      char *const *envp, char *err, size_t errlen) {
  files f;
  int rc;

  memset(&f, 0, sizeof(f));
  f.m = &p->mem;
  f.profile = profile;
  rc = files_load(&f, envp);
  if (rc == CF_OK)
    rc = from_files_keys(p, &f, err, errlen);
  files_free(&f);
  return rc;
}

/* ---- fetched sources: set-up ---- */

/* http:// is allowed only to hosts that cannot be on another machine:
 * loopback, and the ECS / EKS Pod Identity agent addresses. */
static int container_host_ok(const cf__aws_url *u) {
  static const unsigned char eks6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0,
                                         0,    0,    0,    0,    0, 0, 0,
                                         0x23};
  unsigned char a[16];
  if (u->ipv6) {
    if (inet_pton(AF_INET6, u->host, a) != 1)
      return 0;
    return memcmp(a, &in6addr_loopback, 16) == 0 || memcmp(a, eks6, 16) == 0;
  }
  if (strcmp(u->host, "localhost") == 0)
    return 1;
  if (inet_pton(AF_INET, u->host, a) != 1)
    return 0;
  return a[0] == 127 ||
         (a[0] == 169 && a[1] == 254 && a[2] == 170 &&
          (a[3] == 2 || a[3] == 23));
}

/* Header lines must not smuggle a CR/LF or other control byte. */
static int line_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] == 0x7f)
      return 0;
  }
  return n >= 1 && n <= max;
}

static int container_url(cf__aws_creds_provider *p, char *const *envp,
                         char *err, size_t errlen) {
  const char *rel = cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
  const char *full = cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
  char buf[2048];
  cf__aws_url u;

  if (rel != NULL) {
    /* The relative URI wins over the full one, as in the SDKs. */
    if (rel[0] != '/' || snprintf(buf, sizeof(buf), "%s%s", ECS_BASE, rel) >=
                             (int)sizeof(buf) ||
        cf__aws_url_parse(buf, 1, &u) != CF_OK) {
      cf__aws_errf(err, errlen, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "
                   "invalid (a path starting with '/')");
      return CF_ERR_INVALID;
    }
    full = buf;
  } else if (cf__aws_url_parse(full, 1, &u) != CF_OK ||
             (!u.https && !container_host_ok(&u))) {
    cf__aws_errf(err, errlen, "AWS_CONTAINER_CREDENTIALS_FULL_URI: invalid "
                 "(https, or http to loopback, 169.254.170.2 or "
                 "169.254.170.23)");
    return CF_ERR_INVALID;
  }
  p->url = sdup(&p->mem, full, strlen(full));
  return p->url != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int container_setup(cf__aws_creds_provider *p, char *const *envp,
                           char *err, size_t errlen) {
  const char *file, *tok;
  int rc;

  if (cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") == NULL &&
      cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_FULL_URI") == NULL)
    return CF_ERR_NOT_FOUND;
  p->source = SRC_CONTAINER;
  if ((rc = container_url(p, envp, err, errlen)) != CF_OK)
    return rc;
  /* The file wins over the variable; it is read at each fetch because
   * the agent rotates it. */
  if ((file = cf__aws_env(envp, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))) {
    p->auth_file = sdup(&p->mem, file, strlen(file));
    return p->auth_file != NULL ? CF_OK : CF_ERR_NOMEM;
  }
  if ((tok = cf__aws_env(envp, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) == NULL)
    return CF_OK;
  if (!line_ok(tok, AUTH_MAX)) {
    cf__aws_errf(err, errlen, "AWS_CONTAINER_AUTHORIZATION_TOKEN: invalid "
                 "(control characters or too long)");
    return CF_ERR_INVALID;
  }
  p->auth = sdup(&p->mem, tok, strlen(tok));
  return p->auth != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int imds_setup(cf__aws_creds_provider *p, char *const *envp,
                      char *err, size_t errlen) {
  const char *ep = cf__aws_env(envp, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
  const char *mode =
      cf__aws_env(envp, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
  cf__aws_url u;

  if (cf__aws_env_true(envp, "AWS_EC2_METADATA_DISABLED"))
    return CF_ERR_NOT_FOUND;
  p->source = SRC_IMDS;
  if (ep == NULL && mode != NULL && strcasecmp(mode, "IPv4") != 0 &&
      strcasecmp(mode, "IPv6") != 0) {
    cf__aws_errf(err, errlen, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: "
                 "IPv4 or IPv6");
    return CF_ERR_INVALID;
  }
  if (ep == NULL)
    ep = mode != NULL && strcasecmp(mode, "IPv6") == 0 ? IMDS_BASE_V6
                                                      : IMDS_BASE;
  if (cf__aws_url_parse(ep, 0, &u) != CF_OK) {
    cf__aws_errf(err, errlen, "AWS_EC2_METADATA_SERVICE_ENDPOINT: invalid "
                 "URL");
    return CF_ERR_INVALID;
  }
  p->url = sdup(&p->mem, ep, u.base_len);
  return p->url != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int chain_setup(cf__aws_creds_provider *p, const char *profile,
                       char *const *envp, char *err, size_t errlen) {
  int rc = from_env(p, envp, err, errlen);
  if (rc == CF_ERR_NOT_FOUND)
    rc = from_files(p, profile, envp, err, errlen);
  if (rc != CF_ERR_NOT_FOUND)
    return rc;
  if (cf__aws_env(envp, "AWS_WEB_IDENTITY_TOKEN_FILE") != NULL) {
    /* SDKs would assume the role here; the node's role is not it. */
    cf__aws_errf(err, errlen, "AWS_WEB_IDENTITY_TOKEN_FILE is set: web "
                 "identity credentials are not supported");
    return CF_ERR_INVALID;
  }
  rc = container_setup(p, envp, err, errlen);
  if (rc == CF_ERR_NOT_FOUND)
    rc = imds_setup(p, envp, err, errlen);
  if (rc == CF_ERR_NOT_FOUND) {
    cf__aws_errf(err, errlen, "no AWS credentials: none in the environment "
                 "or shared files, no container endpoint, and IMDS is "
                 "disabled");
    return CF_ERR_INVALID;
  }
  if (rc == CF_OK && p->http == NULL) {
    cf__aws_errf(err, errlen, "AWS credentials: an HTTP client is needed "
                 "for %s credentials", source_names[p->source]);
    return CF_ERR_INVALID;
  }
  return rc;
}

/* ---- fetching ---- */

static void report(cf__aws_creds_provider *p, int error, const char *msg);
static void destroy(cf__aws_creds_provider *p);

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
static void fetch_fail(cf__aws_creds_provider *p, int error,
                       const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void fetch_fail(cf__aws_creds_provider *p, int error,
                       const char *fmt, ...) {
  char buf[sizeof(p->msg)];
  va_list ap;
  /* Through buf: callers may pass p->msg itself as an argument. */
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  memcpy(p->msg, buf, sizeof(buf));
  wipe_free(&p->mem, &p->imds_token);
  p->step = STEP_IDLE;
  p->loop.timer_set(p->loop.data, p->timer, p->retry);
  p->retry = p->retry * 2 < RETRY_MAX ? p->retry * 2 : RETRY_MAX;
  report(p, error, p->msg);
}

static void install(cf__aws_creds_provider *p, cred_set *set,
                    const char *what) {
  double now = p->loop.now(p->loop.data);
  if (set->expires > 0 && set->expires <= now) {
    set_clear(&p->mem, set);
    fetch_fail(p, CF_ERR_BACKEND, "%s: credentials already expired", what);
    return;
  }
  set_clear(&p->mem, &p->prev);
  p->prev = p->cur;
  p->cur = *set;
  view_update(p);
  p->step = STEP_IDLE;
  p->retry = RETRY_FIRST;
  p->loop.timer_set(p->loop.data, p->timer,
                    refresh_delay(now, set->expires));
  report(p, CF_OK, "");
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
static int creds_json(cf__aws_creds_provider *p, json_t *o, cred_set *set,
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
    rc = set_fill(&p->mem, set, id, sk, json_str(o, names[2]), names, &bad);
  }
  if (rc == CF_ERR_INVALID)
    snprintf(p->msg, sizeof(p->msg), "%s: missing or invalid %s", what, bad);
  else if (rc == CF_ERR_NOMEM)
    snprintf(p->msg, sizeof(p->msg), "%s: out of memory", what);
  return rc == CF_ERR_INVALID ? CF_ERR_PARSE : rc;
}

static int creds_parse(cf__aws_creds_provider *p, const cf__http_resp *r,
                       cred_set *set, const char *what) {
  json_error_t je;
  json_t *o = json_loadb(r->body, r->body_len, 0, &je);
  int rc;

  memset(set, 0, sizeof(*set));
  if (!json_is_object(o)) {
    snprintf(p->msg, sizeof(p->msg), "%s: response is not a JSON object",
             what);
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
  cred_set set;
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

static int send_get(cf__aws_creds_provider *p, const char *method,
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
  int rc = cf__aws_file_read(p->auth_file, AUTH_MAX, &p->mem, &buf, &len,
                             &why);

  *out = NULL;
  if (rc != CF_OK) {
    snprintf(p->msg, sizeof(p->msg), "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
             ": %s", rc == CF_ERR_NOMEM ? "out of memory" : why);
    return rc;
  }
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' ||
                     buf[len - 1] == ' ' || buf[len - 1] == '\t'))
    buf[--len] = '\0';
  if (!line_ok(buf, AUTH_MAX)) {
    snprintf(p->msg, sizeof(p->msg), "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"
             ": empty or not one line");
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
  else if (p->auth != NULL && (auth = header(&p->mem, "Authorization",
                                             p->auth)) == NULL)
    rc = CF_ERR_NOMEM;
  if (rc == CF_OK) {
    hdrs[1] = auth;
    p->step = STEP_CONTAINER;
    rc = send_get(p, "GET", p->url, hdrs, auth != NULL ? 2 : 1, 2.0, 5.0,
                  on_container);
    if (rc != CF_OK)
      snprintf(p->msg, sizeof(p->msg), "container credentials: %s",
               cf_strerror(rc));
  }
  wipe_free(&p->mem, &auth);
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

  snprintf(url, sizeof(url), "%s%s%s", p->url,
           step == STEP_TOKEN ? "/latest/api/token" : IMDS_CREDS_PATH,
           step == STEP_CREDS ? p->role : "");
  if (step == STEP_TOKEN) {
    hdr = "X-aws-ec2-metadata-token-ttl-seconds: 21600";
  } else if ((tok = header(&p->mem, "X-aws-ec2-metadata-token",
                           p->imds_token)) == NULL) {
    return CF_ERR_NOMEM;
  } else {
    hdr = tok;
  }
  p->step = step;
  rc = send_get(p, step == STEP_TOKEN ? "PUT" : "GET", url, &hdr, 1, 1.0,
                2.0, on_imds);
  wipe_free(&p->mem, &tok);
  return rc;
}

/* The first line of the role listing, if it is a valid role name. */
static int imds_role(cf__aws_creds_provider *p, const cf__http_resp *r) {
  size_t n = 0, i;
  while (n < r->body_len && r->body[n] != '\n' && r->body[n] != '\r')
    n++;
  if (n == 0 || n > ROLE_MAX)
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
    if (!value_ok(r->body, AUTH_MAX) || strlen(r->body) != r->body_len)
      return CF_ERR_PARSE;
    if ((p->imds_token = sdup(&p->mem, r->body, r->body_len)) == NULL)
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
      fetch_fail(p, CF_ERR_BACKEND, "IMDS role: HTTP 404 (no instance "
                 "profile attached?)");
      return;
    }
    if (step == STEP_CREDS)
      wipe_free(&p->mem, &p->imds_token);
    fetch_done(p, r, imds_what(step));
    return;
  }
  if ((rc = imds_next(p, step, r)) != CF_OK)
    fetch_fail(p, rc, "%s: %s", imds_what(step),
               rc == CF_ERR_PARSE ? "unexpected response" : cf_strerror(rc));
}

static void on_timer(void *arg) {
  cf__aws_creds_provider *p = arg;
  int rc;

  if (p->source == SRC_ENV || p->source == SRC_FILE) {
    report(p, CF_OK, "");
  } else if (p->source == SRC_CONTAINER) {
    container_fetch(p);
  } else if ((rc = imds_send(p, STEP_TOKEN)) != CF_OK) {
    fetch_fail(p, rc, "IMDS token: %s", cf_strerror(rc));
  }
}

/* ---- lifecycle ---- */

/* The callback runs last in every path, so a free from inside it can
 * be carried out as soon as it returns. */
static void report(cf__aws_creds_provider *p, int error, const char *msg) {
  if (p->cb == NULL)
    return;
  p->in_cb = 1;
  p->cb(error, msg, p->user_data);
  p->in_cb = 0;
  if (p->free_pending)
    destroy(p);
}

static void destroy(cf__aws_creds_provider *p) {
  cf_mem m;
  cf__http_cancel(p->xfer);
  if (p->timer != NULL)
    p->loop.timer_free(p->loop.data, p->timer);
  set_clear(&p->mem, &p->cur);
  set_clear(&p->mem, &p->prev);
  wipe_free(&p->mem, &p->auth);
  wipe_free(&p->mem, &p->imds_token);
  cf__free(&p->mem, p->auth_file);
  cf__free(&p->mem, p->url);
  m = p->mem;
  OPENSSL_cleanse(p, sizeof(*p));
  cf__free(&m, p);
}

int cf__aws_creds_new(cf__aws_creds_provider **out, const char *profile,
                      char *const *envp, cf__http *http,
                      const cf_loop *loop, const cf_mem *mem, char *err,
                      size_t errlen) {
  cf__aws_creds_provider *p;
  cf_mem m;
  int rc;

  cf__aws_errf(err, errlen, "%s", "");
  if (out == NULL || cf_loop_check(loop) != CF_OK ||
      (profile != NULL && !cf__aws_profile_ok(profile))) {
    cf__aws_errf(err, errlen, "AWS credentials: invalid argument");
    return CF_ERR_INVALID;
  }
  *out = NULL;
  cf__mem_init(&m, mem);
  if ((p = cf__calloc(&m, 1, sizeof(*p))) == NULL)
    return CF_ERR_NOMEM;
  p->mem = m;
  p->loop = *loop;
  p->http = http;
  p->retry = RETRY_FIRST;
  rc = chain_setup(p, profile != NULL ? profile : "default", envp, err,
                   errlen);
  if (rc == CF_OK &&
      (p->timer = p->loop.timer_new(p->loop.data, on_timer, p)) == NULL)
    rc = CF_ERR_NOMEM;
  if (rc != CF_OK) {
    if (rc == CF_ERR_NOMEM)
      cf__aws_errf(err, errlen, "AWS credentials: out of memory");
    destroy(p);
    return rc;
  }
  view_update(p);
  *out = p;
  return CF_OK;
}

void cf__aws_creds_free(cf__aws_creds_provider *p) {
  if (p == NULL)
    return;
  if (p->in_cb) {
    p->free_pending = 1;
    return;
  }
  destroy(p);
}

int cf__aws_creds_start(cf__aws_creds_provider *p, cf__aws_creds_cb cb,
                        void *user_data) {
  if (p == NULL)
    return CF_ERR_INVALID;
  p->cb = cb;
  p->user_data = user_data;
  if (!p->started) {
    p->started = 1;
    p->loop.timer_set(p->loop.data, p->timer, 0);
  }
  return CF_OK;
}

const cf__aws_creds *cf__aws_creds_get(const cf__aws_creds_provider *p) {
  if (p == NULL || p->cur.id == NULL)
    return NULL;
  if (p->cur.expires > 0 && p->loop.now(p->loop.data) >= p->cur.expires)
    return NULL;
  return &p->view;
}

const char *cf__aws_creds_source(const cf__aws_creds_provider *p) {
  return p != NULL ? source_names[p->source] : "";
}
