/*
 * cfd_config: defaults, every flag in both spellings, the environment
 * and its precedence below flags, --help/--version, and one rejected
 * value per kind of mistake (each error names the option).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/cf_queue_sqs.h>
#include <chatfanout/cf_version.h>

#include "cfd_config.h"
#include "cfd_log.h"

#define MAX_ARGS 80

static char g_err[256];

/* Parses "chatfanoutd" + args (NULL-terminated) with env (or NULL). */
static int parse_out(cfd_config *cfg, const char *const *args,
                     const char *const *env, FILE *out) {
  char *argv[MAX_ARGS];
  int argc = 0;
  argv[argc++] = "chatfanoutd";
  while (args != NULL && *args != NULL) {
    assert_true(argc < MAX_ARGS - 1);
    argv[argc++] = (char *)*args++;
  }
  argv[argc] = NULL;
  memset(g_err, 'x', sizeof g_err);
  return cfd_config_parse(cfg, argc, argv, (char **)env, out, g_err,
                          sizeof g_err);
}

static int parse(cfd_config *cfg, const char *const *args,
                 const char *const *env) {
  return parse_out(cfg, args, env, NULL);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Expects success; frees nothing (the caller does). */
static void ok(cfd_config *cfg, const char *const *args,
               const char *const *env) {
  int rc = parse(cfg, args, env);
  if (rc != CFD_CONFIG_OK)
    print_error("unexpected error: %s\n", g_err);
  assert_int_equal(rc, CFD_CONFIG_OK);
  assert_string_equal(g_err, "");
}

/* Expects an error whose one-line message holds want. */
static void bad(const char *const *args, const char *const *env,
                const char *want) {
  cfd_config cfg;
  int rc = parse(&cfg, args, env);
  cfd_config_free(&cfg);
  if (rc != CFD_CONFIG_ERROR || strstr(g_err, want) == NULL)
    print_error("rc %d, err '%s', wanted '%s'\n", rc, g_err, want);
  assert_int_equal(rc, CFD_CONFIG_ERROR);
  assert_non_null(strstr(g_err, want));
  assert_null(strchr(g_err, '\n'));
}

static void bad_flag(const char *flag, const char *value, const char *want) {
  char both[256];
  bad(ARGS(flag, value), NULL, want);
  snprintf(both, sizeof both, "%s=%s", flag, value);
  bad(ARGS(both), NULL, want);
}

static void test_defaults(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg, NULL, NULL);
  assert_string_equal(cfg.listen_host, "127.0.0.1");
  assert_int_equal(cfg.listen_port, 8080);
  assert_string_equal(cfg.queue, "local");
  assert_int_equal(cfg.max_message_size, 65536);
  assert_int_equal(cfg.max_connections, 10000);
  assert_int_equal(cfg.n_allowed_origins, 0);
  assert_int_equal(cfg.client_buffer, 1024 * 1024);
  assert_int_equal(cfg.history, 50);
  assert_true(cfg.ping_interval == 30);
  assert_true(cfg.idle_timeout == 120);
  assert_true(cfg.header_timeout == 10);
  assert_true(cfg.shutdown_timeout == 5);
  assert_int_equal(cfg.log_level, CFD_LOG_INFO);
  assert_int_equal(cfg.log_format, CFD_LOG_TEXT);
  assert_int_equal(cfg.io_uring, CFD_URING_AUTO);
  assert_true(cfg.instance_id == 0);
  assert_int_equal(cfg.sqs_topology, CF_SQS_SNS);
  assert_int_equal(cfg.sqs_fifo, 0);
  assert_string_equal(cfg.sqs_cluster, "chatfanout");
  assert_string_equal(cfg.sqs_region, "");
  assert_string_equal(cfg.sqs_profile, "");
  assert_string_equal(cfg.sqs_endpoint, "");
  assert_int_equal(cfg.sqs_pollers, 2);
  assert_int_equal(cfg.sqs_wait, 20);
  assert_true(cfg.sqs_linger > 0.00499 && cfg.sqs_linger < 0.00501);
  assert_int_equal(cfg.sqs_buffer, 8 * 1024 * 1024);
  assert_true(cfg.sqs_reorder == 0.5);
  assert_true(cfg.sqs_peer_refresh == 10);
  assert_true(cfg.sqs_heartbeat == 60);
  assert_true(cfg.sqs_stale_after == 600);
  assert_int_equal(cfg.sqs_retention, 300);
  cfd_config_free(&cfg);
  /* argc 0, as exec may give, is no crash. */
  assert_int_equal(cfd_config_parse(&cfg, 0, NULL, NULL, NULL, NULL, 0),
                   CFD_CONFIG_OK);
  cfd_config_free(&cfg);
}

static void test_listen(void **state) {
  static const struct {
    const char *in, *host;
    int port;
  } t[] = {
      {"0.0.0.0:0", "0.0.0.0", 0},
      {"127.0.0.1:65535", "127.0.0.1", 65535},
      {"localhost:80", "localhost", 80},
      {"my-host.Example.com:8081", "my-host.Example.com", 8081},
      {"[::1]:9000", "::1", 9000},
      {"[::]:1", "::", 1},
      {"[2001:db8::ff00:42:8329]:443", "2001:db8::ff00:42:8329", 443},
      {"1host:7", "1host", 7},
  };
  cfd_config cfg;
  char eq[128];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    ok(&cfg, ARGS("--listen", t[i].in), NULL);
    assert_string_equal(cfg.listen_host, t[i].host);
    assert_int_equal(cfg.listen_port, t[i].port);
    cfd_config_free(&cfg);
    snprintf(eq, sizeof eq, "--listen=%s", t[i].in);
    ok(&cfg, ARGS(eq), NULL);
    assert_string_equal(cfg.listen_host, t[i].host);
    assert_int_equal(cfg.listen_port, t[i].port);
    cfd_config_free(&cfg);
  }
}

static void test_sizes(void **state) {
  static const struct {
    const char *in;
    size_t v;
  } t[] = {
      {"1", 1},           {"1000", 1000},        {"1k", 1024},
      {"2K", 2048},       {"3KiB", 3072},        {"1m", 1048576},
      {"16M", 16777216},  {"16MiB", 16777216},   {"0016k", 16384},
  };
  cfd_config cfg;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof t / sizeof t[0]; i++) {
    ok(&cfg, ARGS("--max-message-size", t[i].in), NULL);
    assert_int_equal(cfg.max_message_size, t[i].v);
    cfd_config_free(&cfg);
  }
  ok(&cfg, ARGS("--client-buffer=4KiB"), NULL);
  assert_int_equal(cfg.client_buffer, 4096);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--client-buffer", "4096"), NULL);
  assert_int_equal(cfg.client_buffer, 4096);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--client-buffer", "1024M"), NULL);
  assert_int_equal(cfg.client_buffer, (size_t)1 << 30);
  cfd_config_free(&cfg);
}

static void test_numbers_durations(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg,
     ARGS("--max-connections", "5", "--history=0", "--ping-interval", "0",
          "--idle-timeout=1.5s", "--header-timeout", "250ms",
          "--shutdown-timeout", "0s"),
     NULL);
  assert_int_equal(cfg.max_connections, 5);
  assert_int_equal(cfg.history, 0);
  assert_true(cfg.ping_interval == 0);
  assert_true(cfg.idle_timeout == 1.5);
  assert_true(cfg.header_timeout > 0.2499 && cfg.header_timeout < 0.2501);
  assert_true(cfg.shutdown_timeout == 0);
  cfd_config_free(&cfg);
  ok(&cfg,
     ARGS("--history", "100000", "--ping-interval=45",
          "--max-connections=4294967295", "--idle-timeout", "0.001ms"),
     NULL);
  assert_int_equal(cfg.history, 100000);
  assert_true(cfg.ping_interval == 45);
  assert_int_equal(cfg.max_connections, 4294967295u);
  assert_true(cfg.idle_timeout > 0 && cfg.idle_timeout < 2e-6);
  cfd_config_free(&cfg);
}

static void test_queue_log(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg, ARGS("--queue", "sqs"), NULL);
  assert_string_equal(cfg.queue, "sqs");
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--queue", "local", "--log-level", "debug",
                "--log-format=json"),
     NULL);
  assert_string_equal(cfg.queue, "local");
  assert_int_equal(cfg.log_level, CFD_LOG_DEBUG);
  assert_int_equal(cfg.log_format, CFD_LOG_JSON);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--log-level=warn", "--log-format", "text"), NULL);
  assert_int_equal(cfg.log_level, CFD_LOG_WARN);
  assert_int_equal(cfg.log_format, CFD_LOG_TEXT);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--log-level", "error"), NULL);
  assert_int_equal(cfg.log_level, CFD_LOG_ERROR);
  cfd_config_free(&cfg);
}

static void test_io_uring(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg, ARGS("--io-uring", "off"), NULL);
  assert_int_equal(cfg.io_uring, CFD_URING_OFF);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--io-uring=on"), NULL);
  assert_int_equal(cfg.io_uring, CFD_URING_ON);
  cfd_config_free(&cfg);
  ok(&cfg, NULL, ARGS("CHATFANOUT_IO_URING=off"));
  assert_int_equal(cfg.io_uring, CFD_URING_OFF);
  cfd_config_free(&cfg);
  /* The flag wins over the environment. */
  ok(&cfg, ARGS("--io-uring", "auto"), ARGS("CHATFANOUT_IO_URING=off"));
  assert_int_equal(cfg.io_uring, CFD_URING_AUTO);
  cfd_config_free(&cfg);
  bad_flag("--io-uring", "yes", "--io-uring: unknown mode 'yes' (auto, on, "
           "off)");
  bad(NULL, ARGS("CHATFANOUT_IO_URING=1"),
      "CHATFANOUT_IO_URING: unknown mode '1'");
}

static void test_sqs_flags(void **state) {
  cfd_config cfg;
  char url[300], name[80];
  (void)state;
  ok(&cfg,
     ARGS("--queue", "sqs", "--instance-id", "00000000000000A1",
          "--sqs-topology=queues", "--sqs-cluster", "chat-prod_2",
          "--sqs-region=eu-west-3", "--sqs-profile", "ops.team",
          "--sqs-endpoint", "http://127.0.0.1:4566", "--sqs-pollers=16",
          "--sqs-wait", "1", "--sqs-linger=20ms", "--sqs-buffer", "256KiB",
          "--sqs-reorder-window", "1.5s", "--sqs-peer-refresh=2",
          "--sqs-heartbeat", "5s", "--sqs-stale-after=6s",
          "--sqs-retention", "1209600"),
     NULL);
  assert_string_equal(cfg.queue, "sqs");
  assert_true(cfg.instance_id == 0xa1);
  assert_int_equal(cfg.sqs_topology, CF_SQS_QUEUES);
  assert_int_equal(cfg.sqs_fifo, 0);
  assert_string_equal(cfg.sqs_cluster, "chat-prod_2");
  assert_string_equal(cfg.sqs_region, "eu-west-3");
  assert_string_equal(cfg.sqs_profile, "ops.team");
  assert_string_equal(cfg.sqs_endpoint, "http://127.0.0.1:4566");
  assert_int_equal(cfg.sqs_pollers, 16);
  assert_int_equal(cfg.sqs_wait, 1);
  assert_true(cfg.sqs_linger > 0.0199 && cfg.sqs_linger < 0.0201);
  assert_int_equal(cfg.sqs_buffer, 256 * 1024);
  assert_true(cfg.sqs_reorder == 1.5);
  assert_true(cfg.sqs_peer_refresh == 2);
  assert_true(cfg.sqs_heartbeat == 5);
  assert_true(cfg.sqs_stale_after == 6);
  assert_int_equal(cfg.sqs_retention, 1209600);
  cfd_config_free(&cfg);
  /* Extremes of the id and a switch given alone, then turned off. */
  ok(&cfg, ARGS("--instance-id=ffffffffffffffff", "--sqs-fifo",
                "--sqs-topology", "sns", "--queue=sqs",
                "--sqs-endpoint=https://sqs.example:8443/base",
                "--sqs-wait=20", "--sqs-pollers", "1", "--sqs-linger=1s",
                "--sqs-buffer=1024MiB", "--sqs-retention=60"),
     NULL);
  assert_true(cfg.instance_id == UINT64_MAX);
  assert_int_equal(cfg.sqs_fifo, 1);
  assert_int_equal(cfg.sqs_topology, CF_SQS_SNS);
  assert_string_equal(cfg.sqs_endpoint, "https://sqs.example:8443/base");
  assert_int_equal(cfg.sqs_wait, 20);
  assert_int_equal(cfg.sqs_pollers, 1);
  assert_true(cfg.sqs_linger == 1);
  assert_int_equal(cfg.sqs_buffer, (size_t)1 << 30);
  assert_int_equal(cfg.sqs_retention, 60);
  cfd_config_free(&cfg);
  /* The longest endpoint and cluster name that fit. */
  snprintf(url, sizeof url, "http://%0248d", 0);
  memset(name, 'Z', 63);
  name[63] = '\0';
  ok(&cfg, ARGS("--sqs-endpoint", url, "--sqs-cluster", name), NULL);
  assert_int_equal(strlen(cfg.sqs_endpoint), 255);
  assert_string_equal(cfg.sqs_cluster, name);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--sqs-fifo", "--sqs-fifo=off", "--instance-id", "1"),
     NULL);
  assert_int_equal(cfg.sqs_fifo, 0);
  assert_true(cfg.instance_id == 1);
  cfd_config_free(&cfg);
}

static void test_sqs_env(void **state) {
  static const struct {
    const char *v;
    int want;
  } bools[] = {{"1", 1}, {"true", 1}, {"yes", 1}, {"on", 1},
               {"0", 0}, {"false", 0}, {"no", 0}, {"off", 0}};
  char var[64];
  cfd_config cfg;
  size_t i;
  (void)state;
  ok(&cfg, NULL,
     ARGS("CHATFANOUT_QUEUE=sqs", "CHATFANOUT_INSTANCE_ID=beef",
          "CHATFANOUT_SQS_TOPOLOGY=sns", "CHATFANOUT_SQS_FIFO=true",
          "CHATFANOUT_SQS_CLUSTER=c1", "CHATFANOUT_SQS_REGION=us-west-2",
          "CHATFANOUT_SQS_PROFILE=p", "CHATFANOUT_SQS_ENDPOINT=http://h",
          "CHATFANOUT_SQS_POLLERS=3", "CHATFANOUT_SQS_WAIT=2",
          "CHATFANOUT_SQS_LINGER=10ms", "CHATFANOUT_SQS_BUFFER=1MiB",
          "CHATFANOUT_SQS_REORDER_WINDOW=100ms",
          "CHATFANOUT_SQS_PEER_REFRESH=1s", "CHATFANOUT_SQS_HEARTBEAT=30",
          "CHATFANOUT_SQS_STALE_AFTER=90", "CHATFANOUT_SQS_RETENTION=120"));
  assert_string_equal(cfg.queue, "sqs");
  assert_true(cfg.instance_id == 0xbeef);
  assert_int_equal(cfg.sqs_fifo, 1);
  assert_string_equal(cfg.sqs_cluster, "c1");
  assert_string_equal(cfg.sqs_region, "us-west-2");
  assert_string_equal(cfg.sqs_profile, "p");
  assert_string_equal(cfg.sqs_endpoint, "http://h");
  assert_int_equal(cfg.sqs_pollers, 3);
  assert_int_equal(cfg.sqs_wait, 2);
  assert_true(cfg.sqs_linger > 0.0099 && cfg.sqs_linger < 0.0101);
  assert_int_equal(cfg.sqs_buffer, 1 << 20);
  assert_true(cfg.sqs_reorder > 0.0999 && cfg.sqs_reorder < 0.1001);
  assert_true(cfg.sqs_peer_refresh == 1);
  assert_true(cfg.sqs_heartbeat == 30);
  assert_true(cfg.sqs_stale_after == 90);
  assert_int_equal(cfg.sqs_retention, 120);
  cfd_config_free(&cfg);
  for (i = 0; i < sizeof bools / sizeof bools[0]; i++) {
    snprintf(var, sizeof var, "CHATFANOUT_SQS_FIFO=%s", bools[i].v);
    ok(&cfg, NULL, ARGS(var));
    assert_int_equal(cfg.sqs_fifo, bools[i].want);
    cfd_config_free(&cfg);
  }
  /* The flag wins over the variable, both ways. */
  ok(&cfg, ARGS("--sqs-fifo"), ARGS("CHATFANOUT_SQS_FIFO=0"));
  assert_int_equal(cfg.sqs_fifo, 1);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--sqs-fifo=no"), ARGS("CHATFANOUT_SQS_FIFO=1"));
  assert_int_equal(cfg.sqs_fifo, 0);
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--sqs-cluster", "flag"),
     ARGS("CHATFANOUT_SQS_CLUSTER=bad name!"));
  assert_string_equal(cfg.sqs_cluster, "flag");
  cfd_config_free(&cfg);
}

static void test_sqs_errors(void **state) {
  char long_name[80], long_url[300];
  (void)state;
  memset(long_name, 'a', 64);
  long_name[64] = '\0';
  snprintf(long_url, sizeof long_url, "http://%0250d", 0);
  bad_flag("--instance-id", "0", "--instance-id: invalid instance id '0'");
  bad_flag("--instance-id", "0000", "1-16 hex digits, not 0");
  bad_flag("--instance-id", "", "--instance-id: invalid instance id");
  bad_flag("--instance-id", "10000000000000000", "invalid instance id");
  bad_flag("--instance-id", "0x12", "invalid instance id");
  bad_flag("--instance-id", "12g", "invalid instance id");
  bad_flag("--instance-id", "-1", "invalid instance id");
  bad_flag("--sqs-topology", "fanout",
           "--sqs-topology: unknown topology 'fanout' (sns, queues)");
  bad_flag("--sqs-topology", "SNS", "unknown topology");
  /* A switch takes no separate value: the next word is an argument. */
  bad(ARGS("--sqs-fifo=maybe"), NULL, "--sqs-fifo: invalid value 'maybe'");
  bad(ARGS("--sqs-fifo="), NULL, "--sqs-fifo: invalid value");
  bad(ARGS("--sqs-fifo", "true"), NULL, "unexpected argument 'true'");
  bad_flag("--sqs-cluster", "", "--sqs-cluster: invalid value");
  bad_flag("--sqs-cluster", "a.b", "1-63 of A-Z a-z 0-9 _ -");
  bad_flag("--sqs-cluster", "a b", "--sqs-cluster: invalid value");
  bad_flag("--sqs-cluster", long_name, "--sqs-cluster: invalid value");
  bad_flag("--sqs-region", "US-EAST-1", "--sqs-region: invalid value");
  bad_flag("--sqs-region", "us_east_1", "--sqs-region: invalid value");
  bad_flag("--sqs-profile", "a b", "--sqs-profile: invalid value");
  bad_flag("--sqs-profile", "[x]", "--sqs-profile: invalid value");
  bad_flag("--sqs-endpoint", "127.0.0.1:4566",
           "--sqs-endpoint: invalid value '127.0.0.1:4566'");
  bad_flag("--sqs-endpoint", "http://", "--sqs-endpoint: invalid value");
  bad_flag("--sqs-endpoint", "http:///x", "--sqs-endpoint: invalid");
  bad_flag("--sqs-endpoint", "ftp://h", "--sqs-endpoint: invalid value");
  bad_flag("--sqs-endpoint", "http://h x", "--sqs-endpoint: invalid");
  /* (bad_flag's --flag=value copy would truncate this one) */
  bad(ARGS("--sqs-endpoint", long_url), NULL, "--sqs-endpoint: invalid");
  bad_flag("--sqs-pollers", "0", "--sqs-pollers: '0' out of range (1 to 16)");
  bad_flag("--sqs-pollers", "17", "out of range (1 to 16)");
  bad_flag("--sqs-wait", "0", "--sqs-wait: '0' out of range (1 to 20)");
  bad_flag("--sqs-wait", "21", "--sqs-wait: '21' out of range");
  bad_flag("--sqs-wait", "1s", "--sqs-wait: invalid number");
  bad_flag("--sqs-linger", "0", "--sqs-linger: must be more than 0");
  bad_flag("--sqs-linger", "1001ms", "--sqs-linger: '1001ms' out of range");
  bad_flag("--sqs-buffer", "255KiB", "--sqs-buffer: '255KiB' out of range");
  bad_flag("--sqs-buffer", "1025MiB", "out of range (256KiB to 1024MiB)");
  bad_flag("--sqs-reorder-window", "61", "--sqs-reorder-window: '61' out");
  bad_flag("--sqs-reorder-window", "0", "must be more than 0");
  bad_flag("--sqs-peer-refresh", "0ms", "must be more than 0");
  bad_flag("--sqs-heartbeat", "86401", "--sqs-heartbeat: '86401' out");
  bad_flag("--sqs-stale-after", "0", "--sqs-stale-after: must be more");
  bad_flag("--sqs-retention", "59", "--sqs-retention: '59' out of range");
  bad_flag("--sqs-retention", "1209601", "out of range (60 to 1209600)");
  bad(NULL, ARGS("CHATFANOUT_SQS_FIFO=2"), "CHATFANOUT_SQS_FIFO: invalid");
  bad(NULL, ARGS("CHATFANOUT_INSTANCE_ID=xyz"),
      "CHATFANOUT_INSTANCE_ID: invalid instance id 'xyz'");
  bad(NULL, ARGS("CHATFANOUT_SQS_ENDPOINT=localhost"),
      "CHATFANOUT_SQS_ENDPOINT: invalid value");
}

static void test_sqs_combinations(void **state) {
  cfd_config cfg;
  (void)state;
  bad(ARGS("--queue", "sqs", "--sqs-topology", "queues", "--sqs-fifo"),
      NULL, "--sqs-fifo: FIFO needs --sqs-topology sns");
  bad(ARGS("--queue", "sqs", "--sqs-topology", "queues"),
      ARGS("CHATFANOUT_SQS_FIFO=1"), "FIFO needs --sqs-topology sns");
  bad(ARGS("--queue", "sqs", "--sqs-heartbeat", "60",
           "--sqs-stale-after", "60"),
      NULL, "--sqs-stale-after (60s) must be more than --sqs-heartbeat");
  bad(ARGS("--queue", "sqs", "--sqs-heartbeat", "601"), NULL,
      "--sqs-stale-after (600s) must be more than --sqs-heartbeat (601s)");
  bad(ARGS("--queue", "sqs", "--sqs-fifo", "--sqs-cluster",
           "a123456789b123456789c123456789d123456789e123456789f12345678"),
      NULL, "is too long for --sqs-fifo (at most 58 characters)");
  ok(&cfg, ARGS("--queue", "sqs", "--sqs-fifo", "--sqs-cluster",
                "a123456789b123456789c123456789d123456789e123456789f1234567"),
     NULL);
  cfd_config_free(&cfg);
  /* With the local queue the SQS options are inert, so leftovers in the
   * environment do not stop a single instance. */
  ok(&cfg, ARGS("--sqs-topology", "queues", "--sqs-fifo"),
     ARGS("CHATFANOUT_SQS_HEARTBEAT=900"));
  assert_string_equal(cfg.queue, "local");
  cfd_config_free(&cfg);
  ok(&cfg, ARGS("--queue", "sqs", "--sqs-fifo", "--sqs-topology", "sns",
                "--sqs-heartbeat", "1", "--sqs-stale-after", "1.5"),
     NULL);
  cfd_config_free(&cfg);
}

static void test_origins(void **state) {
  cfd_config cfg;
  char *args[CFD_MAX_ORIGINS * 2 + 2];
  char vals[CFD_MAX_ORIGINS + 1][32];
  int i;
  (void)state;
  ok(&cfg, ARGS("--allowed-origin", "https://a.example",
                "--allowed-origin=http://b.example:8080", "--allowed-origin",
                "*"),
     NULL);
  assert_int_equal(cfg.n_allowed_origins, 3);
  assert_string_equal(cfg.allowed_origins[0], "https://a.example");
  assert_string_equal(cfg.allowed_origins[1], "http://b.example:8080");
  assert_string_equal(cfg.allowed_origins[2], "*");
  cfd_config_free(&cfg);
  assert_int_equal(cfg.n_allowed_origins, 0);
  cfd_config_free(&cfg); /* twice is harmless */
  /* Exactly the maximum, then one more. */
  for (i = 0; i <= CFD_MAX_ORIGINS; i++) {
    snprintf(vals[i], sizeof vals[i], "http://h%d", i);
    args[2 * i] = "--allowed-origin";
    args[2 * i + 1] = vals[i];
  }
  args[2 * CFD_MAX_ORIGINS] = NULL;
  ok(&cfg, (const char *const *)args, NULL);
  assert_int_equal(cfg.n_allowed_origins, CFD_MAX_ORIGINS);
  assert_string_equal(cfg.allowed_origins[CFD_MAX_ORIGINS - 1], "http://h31");
  cfd_config_free(&cfg);
  /* The 33rd flag is there, but its value is missing. */
  args[2 * CFD_MAX_ORIGINS] = "--allowed-origin";
  args[2 * CFD_MAX_ORIGINS + 1] = NULL;
  bad((const char *const *)args, NULL, "--allowed-origin needs a value");
}

static void test_too_many_origins(void **state) {
  cfd_config cfg;
  char *args[CFD_MAX_ORIGINS * 2 + 3];
  char vals[CFD_MAX_ORIGINS + 1][32];
  int i;
  (void)state;
  for (i = 0; i <= CFD_MAX_ORIGINS; i++) {
    snprintf(vals[i], sizeof vals[i], "http://h%d", i);
    args[2 * i] = "--allowed-origin";
    args[2 * i + 1] = vals[i];
  }
  args[2 * CFD_MAX_ORIGINS + 2] = NULL;
  assert_int_equal(parse(&cfg, (const char *const *)args, NULL),
                   CFD_CONFIG_ERROR);
  assert_non_null(strstr(g_err, "too many origins"));
  assert_non_null(strstr(g_err, "--allowed-origin"));
  /* The ones accepted before the error are freed by cfd_config_free. */
  assert_int_equal(cfg.n_allowed_origins, CFD_MAX_ORIGINS);
  cfd_config_free(&cfg);
}

static void test_env(void **state) {
  const char *const env[] = {
      "PATH=/usr/bin",
      "CHATFANOUT_LISTEN=[::1]:0",
      "CHATFANOUT_QUEUE=local",
      "CHATFANOUT_MAX_MESSAGE_SIZE=1MiB",
      "CHATFANOUT_MAX_CONNECTIONS=7",
      "CHATFANOUT_ALLOWED_ORIGIN= https://a.example ,http://b:1,*",
      "CHATFANOUT_CLIENT_BUFFER=8k",
      "CHATFANOUT_HISTORY=3",
      "CHATFANOUT_PING_INTERVAL=5",
      "CHATFANOUT_IDLE_TIMEOUT=6s",
      "CHATFANOUT_HEADER_TIMEOUT=700ms",
      "CHATFANOUT_SHUTDOWN_TIMEOUT=2",
      "CHATFANOUT_LOG_LEVEL=debug",
      "CHATFANOUT_LOG_FORMAT=json",
      "CHATFANOUT_UNKNOWN=whatever",
      "CHATFANOUT_LISTENX=bad",
      "NOT_CHATFANOUT_QUEUE=sqs",
      NULL,
  };
  cfd_config cfg;
  (void)state;
  ok(&cfg, NULL, env);
  assert_string_equal(cfg.listen_host, "::1");
  assert_int_equal(cfg.listen_port, 0);
  assert_int_equal(cfg.max_message_size, 1 << 20);
  assert_int_equal(cfg.max_connections, 7);
  assert_int_equal(cfg.n_allowed_origins, 3);
  assert_string_equal(cfg.allowed_origins[0], "https://a.example");
  assert_string_equal(cfg.allowed_origins[1], "http://b:1");
  assert_string_equal(cfg.allowed_origins[2], "*");
  assert_int_equal(cfg.client_buffer, 8192);
  assert_int_equal(cfg.history, 3);
  assert_true(cfg.ping_interval == 5);
  assert_true(cfg.idle_timeout == 6);
  assert_true(cfg.header_timeout > 0.6999 && cfg.header_timeout < 0.7001);
  assert_true(cfg.shutdown_timeout == 2);
  assert_int_equal(cfg.log_level, CFD_LOG_DEBUG);
  assert_int_equal(cfg.log_format, CFD_LOG_JSON);
  cfd_config_free(&cfg);
}

static void test_env_empty_is_unset(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg, NULL,
     ARGS("CHATFANOUT_LISTEN=", "CHATFANOUT_ALLOWED_ORIGIN=",
          "CHATFANOUT_HISTORY="));
  assert_int_equal(cfg.listen_port, 8080);
  assert_int_equal(cfg.n_allowed_origins, 0);
  assert_int_equal(cfg.history, 50);
  cfd_config_free(&cfg);
}

static void test_precedence(void **state) {
  cfd_config cfg;
  (void)state;
  ok(&cfg, ARGS("--listen", "127.0.0.1:1", "--allowed-origin", "http://f"),
     ARGS("CHATFANOUT_LISTEN=127.0.0.1:2", "CHATFANOUT_HISTORY=9",
          "CHATFANOUT_ALLOWED_ORIGIN=http://e1,http://e2"));
  assert_int_equal(cfg.listen_port, 1);
  assert_int_equal(cfg.history, 9);
  /* Flags replace the environment's list, they do not add to it. */
  assert_int_equal(cfg.n_allowed_origins, 1);
  assert_string_equal(cfg.allowed_origins[0], "http://f");
  cfd_config_free(&cfg);
  /* A flag overrides even a bad environment value of its option. */
  ok(&cfg, ARGS("--history", "4"), ARGS("CHATFANOUT_HISTORY=lots"));
  assert_int_equal(cfg.history, 4);
  cfd_config_free(&cfg);
  /* The last of repeated flags wins. */
  ok(&cfg, ARGS("--history", "4", "--history=5"), NULL);
  assert_int_equal(cfg.history, 5);
  cfd_config_free(&cfg);
  /* A bad environment value of another option is still an error. */
  bad(ARGS("--history", "4"), ARGS("CHATFANOUT_PING_INTERVAL=1h"),
      "CHATFANOUT_PING_INTERVAL");
}

static char *run_capture(const char *const *args, const char *const *env,
                         int want_rc) {
  cfd_config cfg;
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_non_null(out);
  assert_int_equal(parse_out(&cfg, args, env, out), want_rc);
  cfd_config_free(&cfg);
  fclose(out);
  return text;
}

static void test_help_version(void **state) {
  static const char *const names[] = {
      "--listen HOST:PORT", "CHATFANOUT_LISTEN", "127.0.0.1:8080",
      "--queue NAME", "CHATFANOUT_QUEUE",
      "--max-message-size SIZE", "CHATFANOUT_MAX_MESSAGE_SIZE", "64KiB",
      "--max-connections N", "CHATFANOUT_MAX_CONNECTIONS", "10000",
      "--allowed-origin ORIGIN", "CHATFANOUT_ALLOWED_ORIGIN",
      "--client-buffer SIZE", "CHATFANOUT_CLIENT_BUFFER", "1MiB",
      "--history N", "CHATFANOUT_HISTORY",
      "--ping-interval DUR", "CHATFANOUT_PING_INTERVAL", "30s",
      "--idle-timeout DUR", "CHATFANOUT_IDLE_TIMEOUT", "120s",
      "--header-timeout DUR", "CHATFANOUT_HEADER_TIMEOUT", "10s",
      "--io-uring MODE", "CHATFANOUT_IO_URING", "auto",
      "--shutdown-timeout DUR", "CHATFANOUT_SHUTDOWN_TIMEOUT", "5s",
      "--log-level LEVEL", "CHATFANOUT_LOG_LEVEL",
      "--log-format FMT", "CHATFANOUT_LOG_FORMAT",
      "--instance-id HEX", "CHATFANOUT_INSTANCE_ID", "random",
      "--sqs-topology NAME", "CHATFANOUT_SQS_TOPOLOGY",
      "--sqs-fifo\n", "CHATFANOUT_SQS_FIFO", "default off",
      "--sqs-cluster NAME", "CHATFANOUT_SQS_CLUSTER", "chatfanout",
      "--sqs-region REGION", "CHATFANOUT_SQS_REGION",
      "--sqs-profile NAME", "CHATFANOUT_SQS_PROFILE",
      "--sqs-endpoint URL", "CHATFANOUT_SQS_ENDPOINT",
      "--sqs-pollers N", "CHATFANOUT_SQS_POLLERS",
      "--sqs-wait SECONDS", "CHATFANOUT_SQS_WAIT", "default 20\n",
      "--sqs-linger DUR", "CHATFANOUT_SQS_LINGER", "5ms",
      "--sqs-buffer SIZE", "CHATFANOUT_SQS_BUFFER", "8MiB",
      "--sqs-reorder-window DUR", "CHATFANOUT_SQS_REORDER_WINDOW", "500ms",
      "--sqs-peer-refresh DUR", "CHATFANOUT_SQS_PEER_REFRESH",
      "--sqs-heartbeat DUR", "CHATFANOUT_SQS_HEARTBEAT", "60s",
      "--sqs-stale-after DUR", "CHATFANOUT_SQS_STALE_AFTER", "600s",
      "--sqs-retention SECONDS", "CHATFANOUT_SQS_RETENTION", "default 300",
      "local", "sqs",
      "--help", "--version",
  };
  char *text, *line, *save = NULL;
  size_t i;
  (void)state;
  text = run_capture(ARGS("--help"), NULL, CFD_CONFIG_EXIT);
  for (i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strstr(text, names[i]) == NULL)
      print_error("usage lacks %s\n", names[i]);
    assert_non_null(strstr(text, names[i]));
  }
  for (line = strtok_r(text, "\n", &save); line != NULL;
       line = strtok_r(NULL, "\n", &save))
    assert_true(strlen(line) <= 80);
  free(text);
  text = run_capture(ARGS("--version"), NULL, CFD_CONFIG_EXIT);
  assert_string_equal(text, "chatfanoutd " CF_VERSION_STRING "\n");
  free(text);
  /* Help works whatever the environment says, and stops at itself. */
  text = run_capture(ARGS("--queue", "local", "--help", "--bogus"),
                     ARGS("CHATFANOUT_QUEUE=sqs"), CFD_CONFIG_EXIT);
  assert_non_null(strstr(text, "Usage"));
  free(text);
  /* A syntax error before it wins. */
  text = run_capture(ARGS("--bogus", "--help"), NULL, CFD_CONFIG_ERROR);
  assert_string_equal(text, "");
  free(text);
}

static void test_syntax_errors(void **state) {
  (void)state;
  bad(ARGS("--bogus"), NULL, "unknown option '--bogus'");
  bad(ARGS("--bogus=1"), NULL, "unknown option '--bogus'");
  bad(ARGS("--listenx", "1"), NULL, "--listenx");
  bad(ARGS("--LISTEN", "127.0.0.1:1"), NULL, "--LISTEN");
  bad(ARGS("-h"), NULL, "unexpected argument '-h'");
  bad(ARGS("--"), NULL, "unexpected argument '--'");
  bad(ARGS("serve"), NULL, "unexpected argument 'serve'");
  bad(ARGS("--listen"), NULL, "--listen needs a value");
  bad(ARGS("--history", "3", "--log-level"), NULL,
      "--log-level needs a value");
  bad(ARGS("--help=yes"), NULL, "--help takes no value");
  bad(ARGS("--version="), NULL, "--version takes no value");
}

static void test_value_errors(void **state) {
  static const char *const listens[] = {
      "127.0.0.1",      "127.0.0.1:",    ":8080",       "127.0.0.1:65536",
      "127.0.0.1:-1",   "127.0.0.1:+80", "127.0.0.1:8080x", "[::1]",
      "::1:8080",       "[::1]8080",     "[zz]:80",     "[]:80",
      "999.1.1.1:80",   "1.2.3:80",      "-bad.com:80", "bad-.com:80",
      "a..b:80",        "host_name:80",  "a.b.:80",     "",
      "127.0.0.1:123456",
  };
  static const char *const msg_sizes[] = {
      "",    "-1",  "+1",   "1.5k", "1kb", "1 k", "abc", "k",
      "1KB", "1G",  "0",    "17MiB", "16777217",
      "99999999999999999999999", "18446744073709551615M",
  };
  static const char *const durations[] = {
      "", "-1", "+1", "1h", "1.", ".5", "abc", "1e3", "s", "ms", "1 s",
      "1sms", "9999999999999", "inf", "nan",
  };
  static const char *const counts[] = {
      "", "-5", "1k", "4294967296", "1.0", "0x10", " 1",
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof listens / sizeof listens[0]; i++)
    bad_flag("--listen", listens[i], "--listen: invalid address");
  for (i = 0; i < sizeof msg_sizes / sizeof msg_sizes[0]; i++)
    bad_flag("--max-message-size", msg_sizes[i], "--max-message-size: ");
  bad_flag("--max-message-size", "0", "out of range (1 to 16MiB)");
  bad_flag("--max-message-size", "1x", "invalid size '1x'");
  bad_flag("--client-buffer", "4095", "--client-buffer: '4095' out of range");
  bad_flag("--client-buffer", "3k", "at least 4KiB");
  for (i = 0; i < sizeof durations / sizeof durations[0]; i++)
    bad_flag("--ping-interval", durations[i],
             "--ping-interval: invalid duration");
  bad_flag("--header-timeout", "0", "--header-timeout: must be more than 0");
  bad_flag("--header-timeout", "0.0ms", "must be more than 0");
  for (i = 0; i < sizeof counts / sizeof counts[0]; i++)
    bad_flag("--max-connections", counts[i], "--max-connections: ");
  bad_flag("--max-connections", "0", "out of range");
  bad_flag("--history", "100001", "--history: '100001' out of range");
  bad_flag("--queue", "redis",
           "--queue: unknown queue 'redis' (valid: local, sqs)");
  bad_flag("--queue", "", "valid: local, sqs");
  bad_flag("--queue", "SQS", "unknown queue 'SQS'");
  bad_flag("--allowed-origin", "", "--allowed-origin: invalid origin");
  bad_flag("--allowed-origin", "https://a/", "invalid origin 'https://a/'");
  bad_flag("--allowed-origin", "null", "invalid origin");
  bad_flag("--allowed-origin", "a b", "invalid origin");
  bad_flag("--allowed-origin", "example.com", "invalid origin");
  bad_flag("--allowed-origin", "https://", "invalid origin");
  bad_flag("--allowed-origin", "https://a,https://b", "invalid origin");
  bad_flag("--log-level", "verbose", "--log-level: unknown level");
  bad_flag("--log-format", "xml", "--log-format: unknown format 'xml'");
}

static void test_env_errors(void **state) {
  (void)state;
  bad(NULL, ARGS("CHATFANOUT_LISTEN=nope"), "CHATFANOUT_LISTEN: invalid");
  bad(NULL, ARGS("CHATFANOUT_QUEUE=kafka"), "CHATFANOUT_QUEUE: unknown queue");
  bad(NULL, ARGS("CHATFANOUT_MAX_MESSAGE_SIZE=32MiB"),
      "CHATFANOUT_MAX_MESSAGE_SIZE: '32MiB' out of range");
  bad(NULL, ARGS("CHATFANOUT_ALLOWED_ORIGIN=http://a,,http://b"),
      "CHATFANOUT_ALLOWED_ORIGIN: empty origin");
  bad(NULL, ARGS("CHATFANOUT_ALLOWED_ORIGIN=http://a,"),
      "CHATFANOUT_ALLOWED_ORIGIN: empty origin");
  bad(NULL, ARGS("CHATFANOUT_ALLOWED_ORIGIN=http://a, http://b/"),
      "invalid origin 'http://b/'");
  bad(NULL, ARGS("CHATFANOUT_HEADER_TIMEOUT=0"),
      "CHATFANOUT_HEADER_TIMEOUT: must be more than 0");
  bad(NULL, ARGS("CHATFANOUT_LOG_FORMAT=yaml"), "CHATFANOUT_LOG_FORMAT");
}

static void test_err_buffer(void **state) {
  cfd_config cfg;
  char small[8];
  char *argv[] = {"chatfanoutd", "--bogus-option-name", NULL};
  (void)state;
  /* A short buffer is truncated, still NUL-terminated. */
  assert_int_equal(cfd_config_parse(&cfg, 2, argv, NULL, NULL, small,
                                    sizeof small),
                   CFD_CONFIG_ERROR);
  assert_int_equal(strlen(small), sizeof small - 1);
  cfd_config_free(&cfg);
  assert_int_equal(cfd_config_parse(&cfg, 2, argv, NULL, NULL, NULL, 0),
                   CFD_CONFIG_ERROR);
  cfd_config_free(&cfg);
  cfd_config_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_listen),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_numbers_durations),
      cmocka_unit_test(test_queue_log),
      cmocka_unit_test(test_io_uring),
      cmocka_unit_test(test_sqs_flags),
      cmocka_unit_test(test_sqs_env),
      cmocka_unit_test(test_sqs_errors),
      cmocka_unit_test(test_sqs_combinations),
      cmocka_unit_test(test_origins),
      cmocka_unit_test(test_too_many_origins),
      cmocka_unit_test(test_env),
      cmocka_unit_test(test_env_empty_is_unset),
      cmocka_unit_test(test_precedence),
      cmocka_unit_test(test_help_version),
      cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_value_errors),
      cmocka_unit_test(test_env_errors),
      cmocka_unit_test(test_err_buffer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
