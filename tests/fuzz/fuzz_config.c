/*
 * The daemon's option parser (cfd_config.c): command-line flags and
 * CHATFANOUT_* variables. The input is NUL-separated strings; byte 0
 * says how many of them (mod 16) are argv entries after argv[0], the
 * rest are the environment. Invariants: a parse either fails with a
 * message or yields a configuration inside every documented range, the
 * same input parses the same way twice, and nothing leaks.
 */
#include <math.h>

#include "cfd_config.h"
#include "fuzz_common.h"

#define MAX_STR 40

static int dur_ok(double d, double lo_excl, double hi) {
  return isfinite(d) && d >= 0 && d <= 1e9 && (lo_excl < 0 || d > lo_excl) &&
         (hi <= 0 || d <= hi);
}

static void check_cfg(const cfd_config *c) {
  size_t i;
  FUZZ_CHECK(memchr(c->listen_host, '\0', sizeof c->listen_host) != NULL);
  FUZZ_CHECK(strcmp(c->queue, "local") == 0 || strcmp(c->queue, "sqs") == 0);
  FUZZ_CHECK(c->max_message_size >= 1 &&
             c->max_message_size <= 16u * 1024 * 1024);
  FUZZ_CHECK(c->max_connections >= 1);
  FUZZ_CHECK(c->n_allowed_origins <= CFD_MAX_ORIGINS);
  for (i = 0; i < c->n_allowed_origins; i++)
    FUZZ_CHECK(c->allowed_origins[i] != NULL);
  FUZZ_CHECK(c->client_buffer >= 4096);
  FUZZ_CHECK(c->history <= 100000);
  FUZZ_CHECK(c->history_bytes >= 1024u * 1024);
  FUZZ_CHECK(dur_ok(c->ping_interval, -1, 0));
  FUZZ_CHECK(dur_ok(c->idle_timeout, -1, 0));
  FUZZ_CHECK(dur_ok(c->header_timeout, 0, 0));
  FUZZ_CHECK(dur_ok(c->shutdown_timeout, -1, 0));
  FUZZ_CHECK(c->log_level >= 0 && c->log_level <= 3);
  FUZZ_CHECK(c->log_format == 0 || c->log_format == 1);
  FUZZ_CHECK(c->sqs_fifo == 0 || c->sqs_fifo == 1);
  FUZZ_CHECK(memchr(c->sqs_cluster, '\0', sizeof c->sqs_cluster) != NULL);
  FUZZ_CHECK(memchr(c->sqs_endpoint, '\0', sizeof c->sqs_endpoint) != NULL);
  if (strcmp(c->queue, "sqs") != 0)
    return;
  FUZZ_CHECK(c->sqs_pollers >= 1 && c->sqs_pollers <= 16);
  FUZZ_CHECK(c->sqs_wait >= 1 && c->sqs_wait <= 20);
  FUZZ_CHECK(dur_ok(c->sqs_linger, 0, 1));
  FUZZ_CHECK(c->sqs_buffer >= 256u * 1024 &&
             c->sqs_buffer <= 1024u * 1024 * 1024);
  FUZZ_CHECK(dur_ok(c->sqs_reorder, 0, 60));
  FUZZ_CHECK(dur_ok(c->sqs_peer_refresh, 0, 3600));
  FUZZ_CHECK(dur_ok(c->sqs_heartbeat, 0, 86400));
  FUZZ_CHECK(c->sqs_stale_after > c->sqs_heartbeat);
  FUZZ_CHECK(c->sqs_retention >= 60 && c->sqs_retention <= 1209600);
  FUZZ_CHECK(c->sqs_cluster[0] != '\0');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static FILE *devnull;
  char *argv[MAX_STR + 2], *envp[MAX_STR + 1], *buf, err[256], err2[256];
  cfd_config a, b;
  size_t nargs, n = 0, i, start = 0;
  char *strs[MAX_STR];
  int rc, rc2;

  if (size < 1)
    return 0;
  if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
    abort();
  nargs = data[0] & 15;
  buf = fuzz_dup(data + 1, size - 1, 1);
  for (i = 0; i <= size - 1 && n < MAX_STR; i++) {
    if (i == size - 1 || buf[i] == '\0') {
      buf[i] = '\0';
      strs[n++] = buf + start;
      start = i + 1;
    }
  }
  if (nargs > n)
    nargs = n;
  argv[0] = "chatfanoutd";
  for (i = 0; i < nargs; i++)
    argv[1 + i] = strs[i];
  argv[1 + nargs] = NULL;
  for (i = nargs; i < n; i++)
    envp[i - nargs] = strs[i];
  envp[n - nargs] = NULL;

  err[0] = err2[0] = '\0';
  rc = cfd_config_parse(&a, (int)nargs + 1, argv, envp, devnull, err,
                        sizeof err);
  FUZZ_CHECK(rc == CFD_CONFIG_OK || rc == CFD_CONFIG_EXIT ||
             rc == CFD_CONFIG_ERROR);
  if (rc == CFD_CONFIG_ERROR)
    FUZZ_CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
  if (rc == CFD_CONFIG_OK)
    check_cfg(&a);
  rc2 = cfd_config_parse(&b, (int)nargs + 1, argv, envp, devnull, err2,
                         sizeof err2);
  FUZZ_CHECK(rc2 == rc && strcmp(err, err2) == 0);
  if (rc == CFD_CONFIG_OK) {
    FUZZ_CHECK(strcmp(a.listen_host, b.listen_host) == 0);
    FUZZ_CHECK(a.listen_port == b.listen_port);
    FUZZ_CHECK(a.n_allowed_origins == b.n_allowed_origins);
    FUZZ_CHECK(a.max_message_size == b.max_message_size);
  }
  cfd_config_free(&a);
  cfd_config_free(&b);
  free(buf);
  return 0;
}
