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
  char queue[16];          /* --queue: "local" */
  size_t max_message_size; /* bytes, 1 to 16 MiB, default 65536 */
  unsigned max_connections;/* at least 1, default 10000 */
  /* --allowed-origin, repeatable (env: comma-separated); exact match of
   * the Origin header, "*" allows any. Empty: same-origin or none. */
  char *allowed_origins[CFD_MAX_ORIGINS];
  size_t n_allowed_origins;
  size_t client_buffer;    /* bytes, at least 4 KiB, default 1 MiB */
  unsigned history;        /* per room, 0-100000, default 50, 0: off */
  double ping_interval;    /* seconds, default 30, 0 disables */
  double idle_timeout;     /* seconds, default 120, 0 disables */
  double header_timeout;   /* seconds to get a request head, > 0, def. 10 */
  double shutdown_timeout; /* seconds to drain on SIGTERM, default 5 */
  int log_level;           /* enum cfd_log_level, default info */
  int log_format;          /* enum cfd_log_format, default text */
} cfd_config;

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
 * so help works whatever the environment holds.
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
