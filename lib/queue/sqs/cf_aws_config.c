#include "cf_aws_config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cf_aws_ini.h"
#include "cf_mem.h"

#define DEFAULT_REGION "us-east-1"

/* One resolution: inputs, and the config file read at most once. */
typedef struct cfg_ctx {
  cf_mem m;
  char *const *envp;
  const cf__aws_overrides *ov;
  const char *profile;
  char *path;            /* the config file; NULL: none (no HOME) */
  cf__aws_ini *file;     /* NULL when missing or unreadable */
  int file_rc;           /* outcome of reading it */
  char file_err[300];    /* why it could not be read */
  int ignore_urls;       /* -1 unknown, else 0/1 */
  char *err;
  size_t errlen;
} cfg_ctx;

static int region_ok(const char *r) {
  size_t n = 0;
  for (; r[n] != '\0'; n++) {
    char c = r[n];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return 0;
  }
  return n >= 1 && n <= 63;
}

static char *dup_n(const cf_mem *m, const char *s, size_t n) {
  char *d = cf__malloc(m, n + 1);
  if (d != NULL) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* Reads the config file the first time a setting needs it. An unreadable
 * or malformed file is an error only then: settings given in the
 * environment never look at it. */
static int file_need(cfg_ctx *c) {
  if (c->file_rc == 1) {
    c->file_rc = CF_OK;
    if (c->path != NULL)
      c->file_rc = cf__aws_ini_load(&c->file, c->path, &c->m, c->file_err,
                                    sizeof(c->file_err));
  }
  if (c->file_rc == CF_OK || c->file_rc == CF_ERR_NOT_FOUND)
    return CF_OK;
  if (c->file_rc == CF_ERR_NOMEM)
    return CF_ERR_NOMEM;
  cf__aws_errf(c->err, c->errlen, "AWS config file %s", c->file_err);
  return CF_ERR_INVALID;
}

/* The profile's key in the config file; *v NULL when absent. */
static int file_get(cfg_ctx *c, const char *key, const char **v) {
  int rc = file_need(c);
  *v = rc == CF_OK ? cf__aws_ini_profile(c->file, 1, c->profile, key) : NULL;
  return rc;
}

static int resolve_profile(cfg_ctx *c) {
  const char *p = c->ov != NULL ? c->ov->profile : NULL;
  const char *from = "profile override";
  if (p == NULL && (p = cf__aws_env(c->envp, "AWS_PROFILE")) != NULL)
    from = "AWS_PROFILE";
  if (p == NULL)
    p = "default";
  if (!cf__aws_profile_ok(p)) {
    cf__aws_errf(c->err, c->errlen,
                 "%s: invalid profile name (1 to %d printable characters, "
                 "no spaces or brackets)", from, CF__AWS_PROFILE_MAX);
    return CF_ERR_INVALID;
  }
  c->profile = p;
  return CF_OK;
}

static int resolve_region(cfg_ctx *c, char **out) {
  const char *r = c->ov != NULL ? c->ov->region : NULL;
  const char *from = "region override";
  int rc;

  if (r == NULL && (r = cf__aws_env(c->envp, "AWS_REGION")) != NULL)
    from = "AWS_REGION";
  if (r == NULL && (r = cf__aws_env(c->envp, "AWS_DEFAULT_REGION")) != NULL)
    from = "AWS_DEFAULT_REGION";
  if (r == NULL) {
    if ((rc = file_get(c, "region", &r)) != CF_OK)
      return rc;
    from = "region in the AWS config file";
  }
  if (r == NULL)
    r = DEFAULT_REGION;
  if (!region_ok(r)) {
    cf__aws_errf(c->err, c->errlen,
                 "%s: invalid region (1 to 63 of a-z, 0-9, '-')", from);
    return CF_ERR_INVALID;
  }
  *out = dup_n(&c->m, r, strlen(r));
  return *out != NULL ? CF_OK : CF_ERR_NOMEM;
}

/* AWS_IGNORE_CONFIGURED_ENDPOINT_URLS, else the profile's setting: when
 * true, endpoints from the environment and the file are ignored. A file
 * that cannot be read counts as not setting it here, so that endpoints
 * given in the environment still work; an endpoint that has to come from
 * the file reports the file's problem. */
static int ignore_urls(cfg_ctx *c, int *ignore) {
  const char *v = cf__aws_env(c->envp, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
  int rc;
  if (c->ignore_urls < 0) {
    if (v == NULL) {
      rc = file_get(c, "ignore_configured_endpoint_urls", &v);
      if (rc == CF_ERR_NOMEM)
        return rc;
      if (rc != CF_OK)
        cf__aws_errf(c->err, c->errlen, "%s", "");
    }
    c->ignore_urls = v != NULL && strcasecmp(v, "true") == 0;
  }
  *ignore = c->ignore_urls;
  return CF_OK;
}

/* The profile's services section's endpoint_url for svc, or NULL. */
static const char *services_url(cfg_ctx *c, const char *svc) {
  const char *name = cf__aws_ini_profile(c->file, 1, c->profile, "services");
  char sec[160];
  if (name == NULL ||
      snprintf(sec, sizeof(sec), "services %s", name) >= (int)sizeof(sec))
    return NULL;
  return cf__aws_ini_get_sub(c->file, sec, svc, "endpoint_url");
}

/* Finds the configured URL for svc; *url NULL means the default. */
static int endpoint_find(cfg_ctx *c, const char *svc, const char *ov_url,
                         const char **url, const char **from) {
  int rc, ignore;

  *url = ov_url;
  *from = "endpoint override";
  if (*url != NULL)
    return CF_OK;
  if ((rc = ignore_urls(c, &ignore)) != CF_OK || ignore)
    return rc;
  *from = strcmp(svc, "sqs") == 0 ? "AWS_ENDPOINT_URL_SQS"
                                  : "AWS_ENDPOINT_URL_SNS";
  if ((*url = cf__aws_env(c->envp, *from)) != NULL)
    return CF_OK;
  *from = "AWS_ENDPOINT_URL";
  if ((*url = cf__aws_env(c->envp, "AWS_ENDPOINT_URL")) != NULL)
    return CF_OK;
  if ((rc = file_need(c)) != CF_OK)
    return rc;
  *from = "endpoint_url in the AWS config file";
  if ((*url = services_url(c, svc)) == NULL)
    *url = cf__aws_ini_profile(c->file, 1, c->profile, "endpoint_url");
  return CF_OK;
}

/* The DNS suffix of the region's partition. */
static const char *region_domain(const char *region) {
  if (strncmp(region, "cn-", 3) == 0)
    return "amazonaws.com.cn";
  if (strncmp(region, "us-iso-", 7) == 0)
    return "c2s.ic.gov";
  if (strncmp(region, "us-isob-", 8) == 0)
    return "sc2s.sgov.gov";
  return "amazonaws.com";
}

static int resolve_endpoint(cfg_ctx *c, const char *svc, const char *ov_url,
                            const char *region, char **out) {
  const char *url, *from;
  cf__aws_url u;
  char buf[128];
  int rc;

  if ((rc = endpoint_find(c, svc, ov_url, &url, &from)) != CF_OK)
    return rc;
  if (url == NULL) {
    /* region_ok() keeps this well under the buffer. */
    snprintf(buf, sizeof(buf), "https://%s.%s.%s", svc, region,
             region_domain(region));
    url = buf;
  }
  if (cf__aws_url_parse(url, 0, &u) != CF_OK) {
    cf__aws_errf(c->err, c->errlen,
                 "%s: invalid endpoint URL (http(s)://host[:port][/path], "
                 "no query or user info)", from);
    return CF_ERR_INVALID;
  }
  *out = dup_n(&c->m, url, u.base_len);
  return *out != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int config_resolve(cfg_ctx *c, cf__aws_config *cfg) {
  int rc = resolve_profile(c);
  if (rc == CF_OK)
    rc = cf__aws_file_path(&c->path, c->envp, "AWS_CONFIG_FILE",
                           ".aws/config", &c->m);
  if (rc == CF_OK)
    rc = resolve_region(c, &cfg->region);
  if (rc == CF_OK)
    rc = resolve_endpoint(c, "sqs", c->ov != NULL ? c->ov->endpoint_sqs
                          : NULL, cfg->region, &cfg->endpoint_sqs);
  if (rc == CF_OK)
    rc = resolve_endpoint(c, "sns", c->ov != NULL ? c->ov->endpoint_sns
                          : NULL, cfg->region, &cfg->endpoint_sns);
  if (rc == CF_OK &&
      (cfg->profile = dup_n(&c->m, c->profile, strlen(c->profile))) == NULL)
    rc = CF_ERR_NOMEM;
  return rc;
}

int cf__aws_config_load(cf__aws_config *cfg, const cf__aws_overrides *ov,
                        char *const *envp, const cf_mem *mem, char *err,
                        size_t errlen) {
  cfg_ctx c;
  int rc;

  if (cfg == NULL)
    return CF_ERR_INVALID;
  memset(cfg, 0, sizeof(*cfg));
  memset(&c, 0, sizeof(c));
  cf__mem_init(&c.m, mem);
  c.envp = envp;
  c.ov = ov;
  c.file_rc = 1; /* not read yet */
  c.ignore_urls = -1;
  c.err = err;
  c.errlen = errlen;
  cf__aws_errf(err, errlen, "%s", "");
  rc = config_resolve(&c, cfg);
  if (rc == CF_ERR_NOMEM)
    cf__aws_errf(err, errlen, "AWS configuration: out of memory");
  cf__aws_ini_free(c.file);
  cf__free(&c.m, c.path);
  if (rc != CF_OK)
    cf__aws_config_deinit(cfg, mem);
  return rc;
}

void cf__aws_config_deinit(cf__aws_config *cfg, const cf_mem *mem) {
  cf_mem m;
  if (cfg == NULL)
    return;
  cf__mem_init(&m, mem);
  cf__free(&m, cfg->region);
  cf__free(&m, cfg->endpoint_sqs);
  cf__free(&m, cfg->endpoint_sns);
  cf__free(&m, cfg->profile);
  memset(cfg, 0, sizeof(*cfg));
}
