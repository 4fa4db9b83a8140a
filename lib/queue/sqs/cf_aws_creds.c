/*
 * The credentials chain of cf_aws_config.h, part one: choosing the source
 * once at creation (environment, shared files, container, IMDS), static
 * credentials, and the provider's lifecycle. Fetching lives in
 * cf_aws_creds_fetch.c. Secrets are kept only in strings the provider
 * owns and wipes, and never enter a message.
 */
#include "cf_aws_creds_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "cf_aws_ini.h"
#include "cf_mem.h"

#define ECS_BASE "http://169.254.170.2"
#define IMDS_BASE "http://169.254.169.254"
#define IMDS_BASE_V6 "http://[fd00:ec2::254]"

static const char *const source_names[] = {"env", "file", "container", "imds"};

char *cf__aws_sdup(const cf_mem *m, const char *s, size_t n) {
  char *d = cf__malloc(m, n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

void cf__aws_wipe_free(const cf_mem *m, char **s) {
  if (*s == NULL)
    return;
  OPENSSL_cleanse(*s, strlen(*s));
  cf__free(m, *s);
  *s = NULL;
}

void cf__aws_cset_clear(const cf_mem *m, cf__aws_cset *c) {
  cf__aws_wipe_free(m, &c->id);
  cf__aws_wipe_free(m, &c->secret);
  cf__aws_wipe_free(m, &c->token);
  c->expires = 0;
}

int cf__aws_value_ok(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    if ((unsigned char)s[n] <= 0x20 || (unsigned char)s[n] >= 0x7f)
      return 0;
  }
  return n >= 1 && n <= max;
}

int cf__aws_cset_fill(const cf_mem *m, cf__aws_cset *c, const char *id,
                      const char *secret, const char *token,
                      const char *const names[3], const char **bad) {
  *bad = NULL;
  if (!cf__aws_value_ok(id, CF__AWS_KEY_MAX))
    *bad = names[0];
  else if (!cf__aws_value_ok(secret, CF__AWS_KEY_MAX))
    *bad = names[1];
  else if (token != NULL && !cf__aws_value_ok(token, CF__AWS_TOKEN_MAX))
    *bad = names[2];
  if (*bad != NULL)
    return CF_ERR_INVALID;
  c->id = cf__aws_sdup(m, id, strlen(id));
  c->secret = cf__aws_sdup(m, secret, strlen(secret));
  c->token = token != NULL ? cf__aws_sdup(m, token, strlen(token)) : NULL;
  if (c->id == NULL || c->secret == NULL ||
      (token != NULL && c->token == NULL)) {
    cf__aws_cset_clear(m, c);
    return CF_ERR_NOMEM;
  }
  return CF_OK;
}

void cf__aws_creds_view(cf__aws_creds_provider *p) {
  p->view.access_key_id = p->cur.id;
  p->view.secret_key = p->cur.secret;
  p->view.session_token = p->cur.token;
  p->view.expires = p->cur.expires;
}

/* ---- static sources ---- */

static int from_env(cf__aws_creds_provider *p, char *const *envp, char *err,
                    size_t errlen) {
  static const char *const names[3] = {
      "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"};
  const char *id = cf__aws_env(envp, names[0]);
  const char *secret = cf__aws_env(envp, names[1]), *bad;
  int rc;

  if (id == NULL && secret == NULL)
    return CF_ERR_NOT_FOUND;
  if (id == NULL || secret == NULL) {
    cf__aws_errf(err, errlen, "%s is set but %s is not", names[id == NULL],
                 names[id != NULL]);
    return CF_ERR_INVALID;
  }
  rc = cf__aws_cset_fill(&p->mem, &p->cur, id, secret,
                         cf__aws_env(envp, names[2]), names, &bad);
  if (rc == CF_ERR_INVALID)
    cf__aws_errf(err, errlen,
                 "%s: invalid value (1 to %d printable "
                 "characters without spaces)",
                 bad, bad == names[2] ? CF__AWS_TOKEN_MAX : CF__AWS_KEY_MAX);
  p->source = CF__AWS_SRC_ENV;
  return rc;
}

/* Both shared files, read once for the file source. */
typedef struct files {
  const cf_mem *m;
  const char *profile;
  char *cpath, *fpath;      /* credentials, config; NULL: no HOME */
  cf__aws_ini *cred, *conf; /* NULL when missing or unreadable */
  int crc, frc;
  char cerr[300], ferr[300];
} files;

static int files_load(files *f, char *const *envp) {
  int rc = cf__aws_file_path(&f->cpath, envp, "AWS_SHARED_CREDENTIALS_FILE",
                             ".aws/credentials", f->m);
  if (rc == CF_OK)
    rc = cf__aws_file_path(&f->fpath, envp, "AWS_CONFIG_FILE", ".aws/config",
                           f->m);
  if (rc != CF_OK)
    return rc;
  f->crc = f->frc = CF_ERR_NOT_FOUND;
  if (f->cpath != NULL)
    f->crc =
        cf__aws_ini_load(&f->cred, f->cpath, f->m, f->cerr, sizeof(f->cerr));
  if (f->fpath != NULL)
    f->frc =
        cf__aws_ini_load(&f->conf, f->fpath, f->m, f->ferr, sizeof(f->ferr));
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
      "role_arn",      "credential_process",      "sso_session",
      "sso_start_url", "web_identity_token_file", "credential_source"};
  size_t i;
  for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
    if (files_get(f, keys[i]) != NULL) {
      cf__aws_errf(err, errlen,
                   "AWS profile '%s' uses %s, which is not "
                   "supported (use static keys, the container or the "
                   "instance role)",
                   f->profile, keys[i]);
      return CF_ERR_INVALID;
    }
  }
  if (strcmp(f->profile, "default") != 0 &&
      !cf__aws_ini_has_profile(f->cred, 0, f->profile) &&
      !cf__aws_ini_has_profile(f->conf, 1, f->profile)) {
    cf__aws_errf(err, errlen,
                 "AWS profile '%s' not found in the shared "
                 "credentials or config file",
                 f->profile);
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

static int from_files_keys(cf__aws_creds_provider *p, const files *f, char *err,
                           size_t errlen) {
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
  rc = cf__aws_cset_fill(&p->mem, &p->cur, id, secret, files_get(f, names[2]),
                         names, &bad);
  if (rc == CF_ERR_INVALID)
    cf__aws_errf(err, errlen, "AWS profile '%s': %s: invalid value", f->profile,
                 bad);
  p->source = CF__AWS_SRC_FILE;
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
                                         0,    0,    0,    0,    0, 0, 0, 0x23};
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
  return a[0] == 127 || (a[0] == 169 && a[1] == 254 && a[2] == 170 &&
                         (a[3] == 2 || a[3] == 23));
}

/* Header lines must not smuggle a CR/LF or other control byte. */
int cf__aws_line_ok(const char *s, size_t max) {
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
    if (rel[0] != '/' ||
        snprintf(buf, sizeof(buf), "%s%s", ECS_BASE, rel) >= (int)sizeof(buf) ||
        cf__aws_url_parse(buf, 1, &u) != CF_OK) {
      cf__aws_errf(err, errlen,
                   "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: "
                   "invalid (a path starting with '/')");
      return CF_ERR_INVALID;
    }
    full = buf;
  } else if (cf__aws_url_parse(full, 1, &u) != CF_OK ||
             (!u.https && !container_host_ok(&u))) {
    cf__aws_errf(err, errlen,
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI: invalid "
                 "(https, or http to loopback, 169.254.170.2 or "
                 "169.254.170.23)");
    return CF_ERR_INVALID;
  }
  p->url = cf__aws_sdup(&p->mem, full, strlen(full));
  return p->url != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int container_setup(cf__aws_creds_provider *p, char *const *envp,
                           char *err, size_t errlen) {
  const char *file, *tok;
  int rc;

  if (cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") == NULL &&
      cf__aws_env(envp, "AWS_CONTAINER_CREDENTIALS_FULL_URI") == NULL)
    return CF_ERR_NOT_FOUND;
  p->source = CF__AWS_SRC_CONTAINER;
  if ((rc = container_url(p, envp, err, errlen)) != CF_OK)
    return rc;
  /* The file wins over the variable; it is read at each fetch because
   * the agent rotates it. */
  if ((file = cf__aws_env(envp, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"))) {
    p->auth_file = cf__aws_sdup(&p->mem, file, strlen(file));
    return p->auth_file != NULL ? CF_OK : CF_ERR_NOMEM;
  }
  if ((tok = cf__aws_env(envp, "AWS_CONTAINER_AUTHORIZATION_TOKEN")) == NULL)
    return CF_OK;
  if (!cf__aws_line_ok(tok, CF__AWS_AUTH_MAX)) {
    cf__aws_errf(err, errlen,
                 "AWS_CONTAINER_AUTHORIZATION_TOKEN: invalid "
                 "(control characters or too long)");
    return CF_ERR_INVALID;
  }
  p->auth = cf__aws_sdup(&p->mem, tok, strlen(tok));
  return p->auth != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int imds_setup(cf__aws_creds_provider *p, char *const *envp, char *err,
                      size_t errlen) {
  const char *ep = cf__aws_env(envp, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
  const char *mode =
      cf__aws_env(envp, "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE");
  cf__aws_url u;

  if (cf__aws_env_true(envp, "AWS_EC2_METADATA_DISABLED"))
    return CF_ERR_NOT_FOUND;
  p->source = CF__AWS_SRC_IMDS;
  if (ep == NULL && mode != NULL && strcasecmp(mode, "IPv4") != 0 &&
      strcasecmp(mode, "IPv6") != 0) {
    cf__aws_errf(err, errlen,
                 "AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE: IPv4 or IPv6");
    return CF_ERR_INVALID;
  }
  if (ep == NULL)
    ep = mode != NULL && strcasecmp(mode, "IPv6") == 0 ? IMDS_BASE_V6
                                                       : IMDS_BASE;
  if (cf__aws_url_parse(ep, 0, &u) != CF_OK) {
    cf__aws_errf(err, errlen, "AWS_EC2_METADATA_SERVICE_ENDPOINT: invalid URL");
    return CF_ERR_INVALID;
  }
  p->url = cf__aws_sdup(&p->mem, ep, u.base_len);
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
    cf__aws_errf(err, errlen,
                 "AWS_WEB_IDENTITY_TOKEN_FILE is set: web "
                 "identity credentials are not supported");
    return CF_ERR_INVALID;
  }
  rc = container_setup(p, envp, err, errlen);
  if (rc == CF_ERR_NOT_FOUND)
    rc = imds_setup(p, envp, err, errlen);
  if (rc == CF_ERR_NOT_FOUND) {
    cf__aws_errf(err, errlen,
                 "no AWS credentials: none in the environment "
                 "or shared files, no container endpoint, and IMDS is "
                 "disabled");
    return CF_ERR_INVALID;
  }
  if (rc == CF_OK && p->http == NULL) {
    cf__aws_errf(err, errlen,
                 "AWS credentials: an HTTP client is needed for %s credentials",
                 source_names[p->source]);
    return CF_ERR_INVALID;
  }
  return rc;
}

/* ---- lifecycle ---- */

static void on_timer(void *arg) {
  cf__aws_creds_provider *p = arg;
  if (p->source == CF__AWS_SRC_ENV || p->source == CF__AWS_SRC_FILE)
    cf__aws_creds_report(p, CF_OK, "");
  else
    cf__aws_creds_fetch(p);
}

static void destroy(cf__aws_creds_provider *p);

/* The callback runs last in every path, so a free from inside it can
 * be carried out as soon as it returns. */
void cf__aws_creds_report(cf__aws_creds_provider *p, int error,
                          const char *msg) {
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
  cf__aws_cset_clear(&p->mem, &p->cur);
  cf__aws_cset_clear(&p->mem, &p->prev);
  cf__aws_wipe_free(&p->mem, &p->auth);
  cf__aws_wipe_free(&p->mem, &p->imds_token);
  cf__free(&p->mem, p->auth_file);
  cf__free(&p->mem, p->url);
  m = p->mem;
  OPENSSL_cleanse(p, sizeof(*p));
  cf__free(&m, p);
}

int cf__aws_creds_new(cf__aws_creds_provider **out, const char *profile,
                      char *const *envp, cf__http *http, const cf_loop *loop,
                      const cf_mem *mem, char *err, size_t errlen) {
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
  p->retry = CF__AWS_RETRY_FIRST;
  rc = chain_setup(p, profile != NULL ? profile : "default", envp, err, errlen);
  if (rc == CF_OK &&
      (p->timer = p->loop.timer_new(p->loop.data, on_timer, p)) == NULL)
    rc = CF_ERR_NOMEM;
  if (rc != CF_OK) {
    if (rc == CF_ERR_NOMEM)
      cf__aws_errf(err, errlen, "AWS credentials: out of memory");
    destroy(p);
    return rc;
  }
  cf__aws_creds_view(p);
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
  /* Wall clock: expires is a date from AWS (or the credentials file). */
  if (p->cur.expires > 0 && p->loop.now(p->loop.data) >= p->cur.expires)
    return NULL;
  return &p->view;
}

const char *cf__aws_creds_source(const cf__aws_creds_provider *p) {
  return p != NULL ? source_names[p->source] : "";
}
