/*
 * The AWS shared config and credentials file readers (cf_aws_ini.c,
 * cf_aws_config.c, cf_aws_creds.c): files a user edits by hand.
 *
 *   byte 0   bit 0: the text is the credentials file (else the config
 *            file); bits 1-2: AWS_PROFILE unset, "dev", "default" or
 *            "x y" (invalid)
 *   the rest the file's text
 *
 * The text is parsed directly and queried, then served as a real file
 * (a memfd, named by /proc/self/fd/N) to the region/endpoint resolver
 * and to the credentials chain, as they read it at start-up. Every line
 * is also fed to the URL checker and the ISO 8601 time parser, which
 * read values from these files and from credential services.
 */
#include <math.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cf_aws_config.h"
#include "cf_aws_ini.h"
#include "cf_mem.h"
#include "fake_loop.h"
#include "fuzz_common.h"

static const char *const sections[] = {
    "default", "profile default", "profile dev", "dev", "services s",
    "sso-session x", "profile x y", ""};
static const char *const keys[] = {
    "region", "endpoint_url", "aws_access_key_id", "aws_secret_access_key",
    "aws_session_token", "services", "sqs", "sns", ""};

static void query(const cf__aws_ini *ini) {
  size_t s, k;
  const char *v;
  for (s = 0; s < sizeof sections / sizeof *sections; s++) {
    (void)cf__aws_ini_has(ini, sections[s]);
    (void)cf__aws_ini_has_profile(ini, 1, sections[s]);
    for (k = 0; k < sizeof keys / sizeof *keys; k++) {
      if ((v = cf__aws_ini_get(ini, sections[s], keys[k])) != NULL)
        FUZZ_CHECK(strlen(v) < CF__AWS_INI_MAX);
      (void)cf__aws_ini_get_sub(ini, sections[s], "sqs", keys[k]);
      (void)cf__aws_ini_get_sub(ini, sections[s], keys[k], "endpoint_url");
      (void)cf__aws_ini_profile(ini, (int)(k & 1), sections[s], keys[k]);
    }
  }
}

static void url_and_time(const char *text, size_t len) {
  char line[512];
  cf__aws_url u;
  double t;
  size_t i = 0, n;
  while (i < len) {
    for (n = 0; i + n < len && text[i + n] != '\n'; n++)
      ;
    if (n < sizeof line) {
      memcpy(line, text + i, n);
      line[n] = '\0';
      if (cf__aws_url_parse(line, n & 1, &u) == CF_OK) {
        FUZZ_CHECK(u.port <= 65535);
        FUZZ_CHECK(memchr(u.host, '\0', sizeof u.host) != NULL);
        FUZZ_CHECK(u.base_len <= n);
      }
      if (cf__aws_time_parse(line, &t) == CF_OK)
        FUZZ_CHECK(isfinite(t));
    }
    i += n + 1;
  }
}

static int file_fd(void) {
  static int fd = -1;
  if (fd < 0)
    fd = memfd_create("fuzz_aws_files", 0);
  FUZZ_CHECK(fd >= 0);
  return fd;
}

static void as_file(const char *text, size_t len, int is_cred,
                    const char *profile, const cf_mem *mem) {
  char path[64], var[96], other[96], prof[32];
  char *envp[] = {var, other, "AWS_EC2_METADATA_DISABLED=true", prof, NULL};
  cf__aws_config cfg;
  cf__aws_creds_provider *p = NULL;
  const cf__aws_creds *cr;
  cf__aws_url u;
  fake_loop fl;
  char err[256];
  int fd = file_fd();

  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  FUZZ_CHECK(pwrite(fd, text, len, 0) == (ssize_t)len);
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  snprintf(var, sizeof var, "%s=%s",
           is_cred ? "AWS_SHARED_CREDENTIALS_FILE" : "AWS_CONFIG_FILE",
           path);
  snprintf(other, sizeof other, "%s=/nonexistent/fuzz",
           is_cred ? "AWS_CONFIG_FILE" : "AWS_SHARED_CREDENTIALS_FILE");
  if (profile != NULL)
    snprintf(prof, sizeof prof, "AWS_PROFILE=%s", profile);
  else
    envp[3] = NULL;

  if (cf__aws_config_load(&cfg, NULL, envp, mem, err, sizeof err) ==
      CF_OK) {
    FUZZ_CHECK(cfg.region != NULL && cfg.region[0] != '\0');
    FUZZ_CHECK(cf__aws_url_parse(cfg.endpoint_sqs, 0, &u) == CF_OK);
    FUZZ_CHECK(cf__aws_url_parse(cfg.endpoint_sns, 0, &u) == CF_OK);
  }
  cf__aws_config_deinit(&cfg, mem);

  fake_loop_init(&fl);
  if (cf__aws_creds_new(&p, profile, envp, NULL, &fl.loop, mem, err,
                        sizeof err) == CF_OK &&
      (cr = cf__aws_creds_get(p)) != NULL) {
    FUZZ_CHECK(cr->access_key_id[0] != '\0' && cr->secret_key[0] != '\0');
    FUZZ_CHECK(strstr(err, cr->secret_key) == NULL);
  }
  cf__aws_creds_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const profiles[4] = {NULL, "dev", "default", "x y"};
  cf_mem mem;
  cf__aws_ini *ini = NULL;
  size_t line = 0;
  char *text;
  int rc;

  if (size < 1)
    return 0;
  cf__mem_init(&mem, NULL);
  text = fuzz_dup(data + 1, size - 1, 0);
  rc = cf__aws_ini_parse(&ini, text, size - 1, &mem, &line);
  if (rc == CF_OK) {
    query(ini);
  } else {
    FUZZ_CHECK(ini == NULL);
    if (rc == CF_ERR_PARSE)
      FUZZ_CHECK(line >= 1);
  }
  cf__aws_ini_free(ini);
  url_and_time(text, size - 1);
  as_file(text, size - 1, data[0] & 1, profiles[(data[0] >> 1) & 3], &mem);
  free(text);
  return 0;
}
