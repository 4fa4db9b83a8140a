/*
 * chatfanoutd configuration: defaults, then CHATFANOUT_* environment
 * variables, then command-line flags (flags win).
 */
#ifndef CFD_CONFIG_H
#define CFD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CFD_MAX_ORIGINS 32

typedef struct cfd_config {
  /* --listen HOST:PORT, default 127.0.0.1; IPv4, a hostname, or an
   * IPv6 address (given as [ADDR]:PORT, stored without brackets) */
  char listen_host[256];
  uint16_t listen_port;    /* default 8080; 0 picks a free port */
  char queue[16];          /* --queue: "local" or "sqs" */
  size_t max_message_size; /* bytes, 1 to 16 MiB, default 65536 */
  unsigned max_connections;/* at least 1, default 10000 */
  /* --allowed-origin, repeatable (env: comma-separated); exact match of
   * the Origin header, "*" allows any. Empty: same-origin or none. */
  char *allowed_origins[CFD_MAX_ORIGINS];
  size_t n_allowed_origins;
  size_t client_buffer;    /* bytes, at least 4 KiB, default 1 MiB */
  unsigned history;        /* per room, 0-100000, default 50, 0: off */
  size_t history_bytes;    /* all rooms' history, >= 1 MiB, def. 64 MiB */
  unsigned max_rooms;      /* rooms held at once, default 100000 */
  double ping_interval;    /* seconds, default 30, 0 disables */
  double idle_timeout;     /* seconds, default 120, 0 disables */
  double header_timeout;   /* seconds to get a request head, > 0, def. 10 */
  double shutdown_timeout; /* seconds to drain on SIGTERM, default 5 */
  /* Abuse limits (cfd_limits.h); 0 disables where said. */
  unsigned max_conns_per_ip; /* per address (v6: /64), def. 256, 0 off */
  unsigned conn_rate;      /* new conns/s per address, def. 20, 0 off */
  unsigned conn_burst;     /* 1-1000000, default 100 */
  int limit_loopback;      /* 0 or 1: loopback peers limited too, def. 0 */
  unsigned msg_rate;       /* frames/s per client, def. 100, 0 off */
  unsigned msg_burst;      /* 1-1000000, default 1000 */
  double frame_timeout;    /* seconds silent mid-frame, def. 15, 0 off */
  size_t outbound_budget;  /* bytes in all outboxes, def. 256 MiB, 0 off */
  int io_uring;            /* enum cfd_uring_mode, default auto */
  int log_level;           /* enum cfd_log_level, default info */
  int log_format;          /* enum cfd_log_format, default text */
  uint64_t instance_id;    /* --instance-id, 1-16 hex digits; 0: random */
  /* --queue sqs only (see cf_queue_sqs.h for their meaning): */
  int sqs_topology;        /* cf_sqs_topology, default CF_SQS_SNS */
  int sqs_fifo;            /* 0 or 1, default 0; only with CF_SQS_SNS */
  char sqs_cluster[64];    /* 1-63 of [A-Za-z0-9_-] (58 with FIFO),
                              default chatfanout */
  char sqs_region[64];     /* [a-z0-9-]; "": the AWS_* lookup */
  char sqs_profile[128];   /* printable, no space; "": AWS_PROFILE */
  char sqs_endpoint[256];  /* http(s)://host[:port][/path], for SQS and
                              SNS both; "": AWS_ENDPOINT_URL_* lookup */
  unsigned sqs_pollers;    /* concurrent long polls, 1-16, default 2 */
  unsigned sqs_wait;       /* long-poll seconds, 1-20, default 20 */
  double sqs_linger;       /* seconds, (0, 1], default 0.005 */
  size_t sqs_buffer;       /* bytes, 256 KiB to 1 GiB, default 8 MiB */
  double sqs_reorder;      /* seconds, (0, 60], default 0.5 */
  double sqs_peer_refresh; /* seconds, (0, 3600], default 10 */
  double sqs_heartbeat;    /* seconds, (0, 86400], default 60 */
  double sqs_stale_after;  /* seconds, more than sqs_heartbeat, def. 600 */
  unsigned sqs_retention;  /* seconds, 60-1209600, default 300 */
} cfd_config;

/* --io-uring: batch client writes through io_uring (cfd_batch.h). */
enum cfd_uring_mode {
  CFD_URING_AUTO = 0, /* when the kernel allows it */
  CFD_URING_ON,       /* or refuse to start */
  CFD_URING_OFF
};

/* Result of cfd_config_parse. */
enum {
  CFD_CONFIG_OK = 0,   /* run the daemon */
  CFD_CONFIG_EXIT = 1, /* --help or --version was printed: exit 0 */
  CFD_CONFIG_ERROR = -1/* err holds a one-line message: exit 2 */
};

/*
 * Fills cfg with defaults, then applies envp (NULL-terminated "K=V"
 * strings; NULL for none) and argv. Output for --help/--version goes to
 * out (NULL: stdout). Sizes take k/K/KiB, m/M/MiB suffixes (plain
 * digits, no sign); durations a decimal number with s or ms (bare:
 * seconds), at most 1e9 s. Flags are --flag value or --flag=value; the
 * last repeat wins, except --allowed-origin which adds (up to
 * CFD_MAX_ORIGINS). An option given as a flag ignores its environment
 * variable entirely (even a bad value; flags replace the env origin
 * list); an empty variable counts as unset; other CHATFANOUT_* names
 * are ignored. argv is checked for syntax and --help/--version first,
 * so help works whatever the environment holds. --sqs-fifo takes no
 * value (--sqs-fifo=BOOL and its variable take 1/0, true/false, yes/no,
 * on/off). With --queue sqs the SQS options are also checked together
 * (FIFO needs the sns topology; --sqs-stale-after must exceed
 * --sqs-heartbeat).
 * cfg is overwritten, not freed: call cfd_config_free() after every
 * call, whatever it returned. err (errlen bytes, may be NULL) gets a
 * one-line message naming the option (flag or variable) and the value.
 */
int cfd_config_parse(cfd_config *cfg, int argc, char **argv, char **envp,
                     FILE *out, char *err, size_t errlen);

/* Frees what cfd_config_parse allocated. */
void cfd_config_free(cfd_config *cfg);

/* Prints the usage text (every flag, its env variable and default). */
void cfd_config_usage(FILE *out);

#endif /* CFD_CONFIG_H */
