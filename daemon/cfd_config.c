/*
 * chatfanoutd configuration. One table describes every option (flag,
 * environment variable, default, checks); parsing, the usage text and
 * the tests all follow it, so they cannot drift apart.
 */
#include "cfd_config.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <chatfanout/cf_queue_sqs.h>
#include <chatfanout/cf_version.h>

#include "cfd_log.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define MAX_MESSAGE_MAX (16 * MIB) /* a frame bigger than this is abuse */
#define CLIENT_BUFFER_MIN (4 * KIB)
#define HISTORY_MAX 100000u
#define DURATION_MAX 1e9 /* seconds; only keeps the value finite */
#define GIB (MIB * 1024)
/* One encoded envelope may reach 256 KiB (the SNS/SQS message limit):
 * a smaller outage buffer could not hold even one. */
#define SQS_BUFFER_MIN (256 * KIB)
#define SQS_RETENTION_MIN 60u     /* SQS MessageRetentionPeriod bounds */
#define SQS_RETENTION_MAX 1209600u

enum opt_kind {
  OPT_LISTEN,
  OPT_QUEUE,
  OPT_SIZE,
  OPT_UINT,
  OPT_ORIGIN,
  OPT_DURATION,
  OPT_LEVEL,
  OPT_FORMAT,
  OPT_HEX64,    /* instance id: 1-16 hex digits, not 0 */
  OPT_TOPOLOGY, /* sns or queues */
  OPT_URING,    /* auto, on or off */
  OPT_BOOL,     /* no value as a flag; BOOL after = or in the env */
  OPT_STRING,   /* copied into a char[hi] field after check() */
  OPT_HELP,
  OPT_VERSION
};

typedef struct opt {
  const char *flag; /* without the leading "--" */
  const char *env;  /* NULL: flag only */
  const char *arg;  /* value placeholder in the usage; NULL: no value */
  const char *def;  /* default as shown in the usage */
  const char *help;
  int kind;             /* enum opt_kind */
  size_t off;           /* field in cfd_config */
  /* OPT_SIZE / OPT_UINT range; OPT_DURATION: hi is the most seconds
   * (0: DURATION_MAX); OPT_STRING: hi is the field's size */
  unsigned long long lo, hi;
  int zero_ok;          /* OPT_DURATION: may 0 be given? */
  const char *range;    /* the range in words, for errors; OPT_STRING:
                           what a good value looks like */
} opt;

#define F(field) offsetof(cfd_config, field)
#define SZ(field) sizeof(((cfd_config *)0)->field)

static const opt opts[] = {
    {"listen", "CHATFANOUT_LISTEN", "HOST:PORT", "127.0.0.1:8080",
     "address to serve (IPv4, hostname or [IPv6]); port 0 picks a free one",
     OPT_LISTEN, 0, 0, 0, 0, NULL},
    {"queue", "CHATFANOUT_QUEUE", "NAME", "local",
     "queue backend linking instances: local (in-process, single\n"
     "      instance) or sqs (Amazon SQS/SNS: many instances, one chat)",
     OPT_QUEUE, 0, 0, 0, 0, NULL},
    {"max-message-size", "CHATFANOUT_MAX_MESSAGE_SIZE", "SIZE", "64KiB",
     "largest message a client may send, 1 byte to 16MiB (over: close 1009)",
     OPT_SIZE, F(max_message_size), 1, MAX_MESSAGE_MAX, 0,
     "1 to 16MiB"},
    {"max-connections", "CHATFANOUT_MAX_CONNECTIONS", "N", "10000",
     "open connections, HTTP and WebSocket, at least 1 (over: 503)",
     OPT_UINT, F(max_connections), 1, UINT_MAX, 0, "1 to 4294967295"},
    {"allowed-origin", "CHATFANOUT_ALLOWED_ORIGIN", "ORIGIN", "none",
     "repeatable (env: comma-separated), at most 32; exact Origin allowed\n"
     "      to upgrade, * for any; none: only no Origin or same-origin",
     OPT_ORIGIN, 0, 0, 0, 0, NULL},
    {"client-buffer", "CHATFANOUT_CLIENT_BUFFER", "SIZE", "1MiB",
     "outbound bytes queued per client, at least 4KiB (over: close 1008)",
     OPT_SIZE, F(client_buffer), CLIENT_BUFFER_MIN, SIZE_MAX, 0,
     "at least 4KiB"},
    {"history", "CHATFANOUT_HISTORY", "N", "50",
     "messages per room replayed to a joining client, 0-100000; 0 disables",
     OPT_UINT, F(history), 0, HISTORY_MAX, 0, "0 to 100000"},
    {"history-bytes", "CHATFANOUT_HISTORY_BYTES", "SIZE", "64MiB",
     "history kept across all rooms (least recently used rooms lose\n"
     "      theirs first), at least 1MiB",
     OPT_SIZE, F(history_bytes), MIB, SIZE_MAX, 0, "at least 1MiB"},
    {"max-rooms", "CHATFANOUT_MAX_ROOMS", "N", "100000",
     "rooms held at once, 1-10000000 (an upgrade past it: 503)",
     OPT_UINT, F(max_rooms), 1, 10000000u, 0, "1 to 10000000"},
    {"ping-interval", "CHATFANOUT_PING_INTERVAL", "DUR", "30s",
     "server pings; 0 disables", OPT_DURATION, F(ping_interval), 0, 0, 1,
     NULL},
    {"idle-timeout", "CHATFANOUT_IDLE_TIMEOUT", "DUR", "120s",
     "close a client silent (not even a pong) this long; 0 disables",
     OPT_DURATION, F(idle_timeout), 0, 0, 1, NULL},
    {"header-timeout", "CHATFANOUT_HEADER_TIMEOUT", "DUR", "10s",
     "time to send a complete request head, more than 0 (then 408)",
     OPT_DURATION, F(header_timeout), 0, 0, 0, NULL},
    {"max-connections-per-ip", "CHATFANOUT_MAX_CONNECTIONS_PER_IP", "N",
     "256",
     "open connections per source address (IPv6: per /64), then 429;\n"
     "      0 disables",
     OPT_UINT, F(max_conns_per_ip), 0, 1000000u, 0, "0 to 1000000"},
    {"connection-rate", "CHATFANOUT_CONNECTION_RATE", "N", "20",
     "new connections per second per source address, then 429;\n"
     "      0 disables",
     OPT_UINT, F(conn_rate), 0, 1000000u, 0, "0 to 1000000"},
    {"connection-burst", "CHATFANOUT_CONNECTION_BURST", "N", "100",
     "new connections a source address may open at once, 1-1000000",
     OPT_UINT, F(conn_burst), 1, 1000000u, 0, "1 to 1000000"},
    {"limit-loopback", "CHATFANOUT_LIMIT_LOOPBACK", NULL, "off",
     "apply the per-address limits to loopback peers too (exempt by\n"
     "      default: a local reverse proxy is many clients)",
     OPT_BOOL, F(limit_loopback), 0, 0, 0, NULL},
    {"message-rate", "CHATFANOUT_MESSAGE_RATE", "N", "100",
     "frames a client may send per second (data, continuation and\n"
     "      control frames alike), then close 1008; 0 disables",
     OPT_UINT, F(msg_rate), 0, 1000000u, 0, "0 to 1000000"},
    {"message-burst", "CHATFANOUT_MESSAGE_BURST", "N", "1000",
     "frames a client may send at once, 1-1000000",
     OPT_UINT, F(msg_burst), 1, 1000000u, 0, "1 to 1000000"},
    {"frame-timeout", "CHATFANOUT_FRAME_TIMEOUT", "DUR", "15s",
     "close (1008) a client silent this long in the middle of a frame\n"
     "      or fragmented message; 0 disables",
     OPT_DURATION, F(frame_timeout), 0, 0, 1, NULL},
    {"outbound-budget", "CHATFANOUT_OUTBOUND_BUDGET", "SIZE", "256MiB",
     "bytes queued to all clients together; past it the largest\n"
     "      backlogs are closed (1008 slow consumer); 0: no limit, else\n"
     "      at least --client-buffer",
     OPT_SIZE, F(outbound_budget), 0, SIZE_MAX, 0, NULL},
    {"io-uring", "CHATFANOUT_IO_URING", "MODE", "auto",
     "batch the writes to clients through io_uring: auto (when the\n"
     "      kernel allows it), on (fail to start without), off",
     OPT_URING, 0, 0, 0, 0, NULL},
    {"shutdown-timeout", "CHATFANOUT_SHUTDOWN_TIMEOUT", "DUR", "5s",
     "time to drain clients on SIGTERM/SIGINT", OPT_DURATION,
     F(shutdown_timeout), 0, 0, 1, NULL},
    {"log-level", "CHATFANOUT_LOG_LEVEL", "LEVEL", "info",
     "error, warn, info or debug", OPT_LEVEL, 0, 0, 0, 0, NULL},
    {"log-format", "CHATFANOUT_LOG_FORMAT", "FMT", "text",
     "text or json, one line per event on stderr", OPT_FORMAT, 0, 0, 0, 0,
     NULL},
    {"instance-id", "CHATFANOUT_INSTANCE_ID", "HEX", "random",
     "this instance's id in the cluster, 1-16 hex digits, not 0",
     OPT_HEX64, F(instance_id), 0, 0, 0, NULL},
    {"sqs-topology", "CHATFANOUT_SQS_TOPOLOGY", "NAME", "sns",
     "sns: one SNS topic feeding a queue per instance; queues: SQS only,\n"
     "      each message is sent to every peer's queue",
     OPT_TOPOLOGY, 0, 0, 0, 0, NULL},
    {"sqs-fifo", "CHATFANOUT_SQS_FIFO", NULL, "off",
     "FIFO topic and queues, one order per room everywhere (sns only);\n"
     "      --sqs-fifo=BOOL and the variable take 1/0, true/false, on/off",
     OPT_BOOL, F(sqs_fifo), 0, 0, 0, NULL},
    {"sqs-cluster", "CHATFANOUT_SQS_CLUSTER", "NAME", "chatfanout",
     "SNS topic name and queue name prefix, 1-63 of A-Z a-z 0-9 _ -\n"
     "      (58 with --sqs-fifo)",
     OPT_STRING, F(sqs_cluster), 0, SZ(sqs_cluster), 0,
     "1-63 of A-Z a-z 0-9 _ -"},
    {"sqs-region", "CHATFANOUT_SQS_REGION", "REGION", "AWS chain",
     "AWS region; else AWS_REGION, AWS_DEFAULT_REGION, the profile's,\n"
     "      us-east-1",
     OPT_STRING, F(sqs_region), 0, SZ(sqs_region), 0,
     "like us-east-1: a-z 0-9 -, at most 63"},
    {"sqs-profile", "CHATFANOUT_SQS_PROFILE", "NAME", "AWS chain",
     "profile of the shared AWS config/credentials files; else\n"
     "      AWS_PROFILE, default",
     OPT_STRING, F(sqs_profile), 0, SZ(sqs_profile), 0,
     "printable ASCII without spaces, at most 127"},
    {"sqs-endpoint", "CHATFANOUT_SQS_ENDPOINT", "URL", "AWS chain",
     "SQS and SNS endpoint both (an emulator); else AWS_ENDPOINT_URL_SQS,\n"
     "      _SNS, AWS_ENDPOINT_URL, then AWS's own",
     OPT_STRING, F(sqs_endpoint), 0, SZ(sqs_endpoint), 0,
     "http:// or https:// URL, at most 255"},
    {"sqs-pollers", "CHATFANOUT_SQS_POLLERS", "N", "2",
     "concurrent long polls of the instance queue, 1-16", OPT_UINT,
     F(sqs_pollers), 1, 16, 0, "1 to 16"},
    {"sqs-wait", "CHATFANOUT_SQS_WAIT", "SECONDS", "20",
     "long-poll wait (WaitTimeSeconds), 1-20", OPT_UINT, F(sqs_wait), 1,
     20, 0, "1 to 20"},
    {"sqs-linger", "CHATFANOUT_SQS_LINGER", "DUR", "5ms",
     "time a publish waits to fill a batch, more than 0, at most 1s",
     OPT_DURATION, F(sqs_linger), 0, 1, 0, "at most 1s"},
    {"sqs-buffer", "CHATFANOUT_SQS_BUFFER", "SIZE", "8MiB",
     "bytes of messages held while SQS/SNS is unreachable, 256KiB-1GiB",
     OPT_SIZE, F(sqs_buffer), SQS_BUFFER_MIN, GIB, 0, "256KiB to 1024MiB"},
    {"sqs-reorder-window", "CHATFANOUT_SQS_REORDER_WINDOW", "DUR", "500ms",
     "wait this long for a sender's missing message (standard mode)",
     OPT_DURATION, F(sqs_reorder), 0, 60, 0, "at most 60s"},
    {"sqs-peer-refresh", "CHATFANOUT_SQS_PEER_REFRESH", "DUR", "10s",
     "how often peer queues are listed (queues topology)", OPT_DURATION,
     F(sqs_peer_refresh), 0, 3600, 0, "at most 3600s"},
    {"sqs-heartbeat", "CHATFANOUT_SQS_HEARTBEAT", "DUR", "60s",
     "how often the instance queue's heartbeat tag is renewed",
     OPT_DURATION, F(sqs_heartbeat), 0, 86400, 0, "at most 86400s"},
    {"sqs-stale-after", "CHATFANOUT_SQS_STALE_AFTER", "DUR", "600s",
     "delete queues whose heartbeat is older (dead instances); more\n"
     "      than --sqs-heartbeat",
     OPT_DURATION, F(sqs_stale_after), 0, 0, 0, NULL},
    {"sqs-retention", "CHATFANOUT_SQS_RETENTION", "SECONDS", "300",
     "message retention of the instance queue, 60-1209600", OPT_UINT,
     F(sqs_retention), SQS_RETENTION_MIN, SQS_RETENTION_MAX, 0,
     "60 to 1209600"},
    {"help", NULL, NULL, NULL, "print this help and exit", OPT_HELP, 0, 0,
     0, 0, NULL},
    {"version", NULL, NULL, NULL, "print the version and exit", OPT_VERSION,
     0, 0, 0, 0, NULL},
};

#define N_OPTS (sizeof opts / sizeof opts[0])

/* ---- errors ------------------------------------------------------------- */

typedef struct errbuf {
  char *buf;
  size_t len;
} errbuf;

__attribute__((format(printf, 2, 3))) static int fail(errbuf *e,
                                                      const char *fmt, ...) {
  va_list ap;
  if (e->buf != NULL && e->len > 0) {
    va_start(ap, fmt);
    vsnprintf(e->buf, e->len, fmt, ap);
    va_end(ap);
  }
  return CFD_CONFIG_ERROR;
}

/* The option's name as the user wrote it: --flag or the env variable. */
static const char *opt_name(const opt *o, int from_env, char *buf,
                            size_t cap) {
  if (from_env)
    return o->env;
  snprintf(buf, cap, "--%s", o->flag);
  return buf;
}

/* ---- value parsers ------------------------------------------------------ */

/* Reads 1+ decimal digits; -1 when there are none or on overflow. */
static int read_digits(const char **sp, unsigned long long *out) {
  const char *s = *sp;
  unsigned long long v = 0;
  if (*s < '0' || *s > '9')
    return -1;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (v > (ULLONG_MAX - (unsigned)(*s - '0')) / 10)
      return -1;
    v = v * 10 + (unsigned)(*s - '0');
  }
  *sp = s;
  *out = v;
  return 0;
}

/* "123", "64k", "64KiB", "1M", "1MiB": bytes; -1 when malformed. */
static int parse_size(const char *s, unsigned long long *out) {
  unsigned long long v, mul = 1;
  if (read_digits(&s, &v) != 0)
    return -1;
  if (strcmp(s, "k") == 0 || strcmp(s, "K") == 0 || strcmp(s, "KiB") == 0)
    mul = KIB;
  else if (strcmp(s, "m") == 0 || strcmp(s, "M") == 0 ||
           strcmp(s, "MiB") == 0)
    mul = MIB;
  else if (*s != '\0')
    return -1;
  if (v > ULLONG_MAX / mul)
    return -1;
  *out = v * mul;
  return 0;
}

/* "30", "30s", "1.5s", "250ms": seconds; -1 when malformed. */
static int parse_duration(const char *s, double *out) {
  unsigned long long ip;
  double v, scale = 0.1;
  if (read_digits(&s, &ip) != 0)
    return -1;
  v = (double)ip;
  if (*s == '.') {
    s++;
    if (*s < '0' || *s > '9')
      return -1;
    for (; *s >= '0' && *s <= '9'; s++, scale /= 10)
      v += (*s - '0') * scale;
  }
  if (strcmp(s, "ms") == 0)
    v /= 1000.0;
  else if (*s != '\0' && strcmp(s, "s") != 0)
    return -1;
  if (v > DURATION_MAX)
    return -1;
  *out = v;
  return 0;
}

static int parse_port(const char *s, uint16_t *port) {
  unsigned long long v;
  if (strlen(s) > 5 || read_digits(&s, &v) != 0 || *s != '\0' ||
      v > 65535)
    return -1;
  *port = (uint16_t)v;
  return 0;
}

/* RFC 1123 host name: dot-separated labels of [A-Za-z0-9-]. */
static int hostname_valid(const char *s, size_t len) {
  size_t i, label = 0;
  int alpha = 0;
  if (len == 0 || len > 253)
    return 0;
  for (i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-')
        return 0;
      label = 0;
      continue;
    }
    if (c == '-' ? label == 0 : !((c >= '0' && c <= '9') ||
                                  (c >= 'a' && c <= 'z') ||
                                  (c >= 'A' && c <= 'Z')))
      return 0;
    alpha |= !(c >= '0' && c <= '9');
    if (++label > 63)
      return 0;
  }
  /* All digits and dots is a failed IPv4 address, not a name. */
  return label > 0 && s[len - 1] != '-' && alpha;
}

/* HOST:PORT or [IPv6]:PORT into cfg; -1 when malformed. */
static int parse_listen(const char *v, cfd_config *cfg) {
  char host[sizeof cfg->listen_host];
  const char *colon, *h = v;
  size_t hlen;
  struct in6_addr a6;
  struct in_addr a4;
  uint16_t port;
  if (*v == '[') {
    const char *close = strchr(v, ']');
    if (close == NULL || close[1] != ':')
      return -1;
    h = v + 1;
    hlen = (size_t)(close - h);
    colon = close + 1;
  } else {
    colon = strrchr(v, ':');
    if (colon == NULL)
      return -1;
    hlen = (size_t)(colon - v);
  }
  if (hlen == 0 || hlen >= sizeof host || parse_port(colon + 1, &port) != 0)
    return -1;
  memcpy(host, h, hlen);
  host[hlen] = '\0';
  if (h != v ? inet_pton(AF_INET6, host, &a6) != 1
             : inet_pton(AF_INET, host, &a4) != 1 &&
                   !hostname_valid(host, hlen))
    return -1;
  memcpy(cfg->listen_host, host, hlen + 1);
  cfg->listen_port = port;
  return 0;
}

/*
 * "*" or scheme://host[:port], as browsers send it: a value with a path
 * or spaces could never match, so it is a configuration mistake.
 */
static int origin_valid(const char *s) {
  const char *p = s, *auth;
  if (strcmp(s, "*") == 0)
    return 1;
  if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
    return 0;
  while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
         (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.')
    p++;
  if (strncmp(p, "://", 3) != 0)
    return 0;
  auth = p + 3;
  if (*auth == '\0')
    return 0;
  for (p = auth; *p != '\0'; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
        strchr("/?#@\\,", *p) != NULL)
      return 0;
  return 1;
}

static int add_origin(cfd_config *cfg, const char *s, size_t len,
                      const char *name, errbuf *e) {
  char *copy;
  if (cfg->n_allowed_origins == CFD_MAX_ORIGINS)
    return fail(e, "%s: too many origins (at most %d)", name,
                CFD_MAX_ORIGINS);
  copy = malloc(len + 1);
  if (copy == NULL)
    return fail(e, "%s: out of memory", name);
  memcpy(copy, s, len);
  copy[len] = '\0';
  if (!origin_valid(copy)) {
    fail(e, "%s: invalid origin '%s' (use * or scheme://host[:port])",
         name, copy);
    free(copy);
    return CFD_CONFIG_ERROR;
  }
  cfg->allowed_origins[cfg->n_allowed_origins++] = copy;
  return CFD_CONFIG_OK;
}

/* The environment form is a comma-separated list; spaces are trimmed. */
static int add_origin_list(cfd_config *cfg, const char *v, const char *name,
                           errbuf *e) {
  const char *p = v, *s, *end;
  int rc;
  for (;;) {
    s = p;
    while (*p != ',' && *p != '\0')
      p++;
    end = p;
    while (s < end && (*s == ' ' || *s == '\t'))
      s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
      end--;
    if (end == s)
      return fail(e, "%s: empty origin in list '%s'", name, v);
    if ((rc = add_origin(cfg, s, (size_t)(end - s), name, e)) != 0)
      return rc;
    if (*p++ == '\0')
      return CFD_CONFIG_OK;
  }
}

/* ---- SQS values ---------------------------------------------------------- */

static int all_of(const char *v, size_t max, const char *extra) {
  size_t n = strlen(v), i;
  if (n == 0 || n > max)
    return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
          (c >= 'A' && c <= 'Z') || strchr(extra, c) != NULL))
      return 0;
  }
  return 1;
}

/*
 * The cluster names an SNS topic and prefixes SQS queue names, whose
 * common alphabet is this one. A queue is named "<cluster>-<16 hex>"
 * (+ ".fifo") in SQS's 80 characters, hence 63 (58 with FIFO).
 */
#define CLUSTER_MAX 63
#define CLUSTER_MAX_FIFO 58
static int cluster_valid(const char *v) {
  return all_of(v, CLUSTER_MAX, "_-");
}

static int region_valid(const char *v) {
  const char *p;
  if (!all_of(v, 63, "-"))
    return 0;
  for (p = v; *p != '\0'; p++)
    if (*p >= 'A' && *p <= 'Z')
      return 0;
  return 1;
}

static int profile_valid(const char *v) {
  size_t n = strlen(v), i;
  if (n == 0 || n > 127)
    return 0;
  for (i = 0; i < n; i++)
    if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f ||
        v[i] == '[' || v[i] == ']')
      return 0;
  return 1;
}

/* An absolute http(s) URL with a host; spaces and control bytes could
 * only be typos and would corrupt the signed request. */
static int endpoint_valid(const char *v) {
  const char *host;
  size_t i;
  if (strncmp(v, "http://", 7) == 0)
    host = v + 7;
  else if (strncmp(v, "https://", 8) == 0)
    host = v + 8;
  else
    return 0;
  if (*host == '\0' || *host == '/' || *host == ':' || strlen(v) > 255)
    return 0;
  for (i = 0; v[i] != '\0'; i++)
    if ((unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f)
      return 0;
  return 1;
}

/* 1-16 hex digits, not all zero: an instance id as the logs print it. */
static int parse_hex64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  size_t n = 0;
  for (; *s != '\0'; s++, n++) {
    unsigned char c = (unsigned char)*s;
    unsigned d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10u;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10u;
    else
      return -1;
    if (n == 16)
      return -1;
    v = v << 4 | d;
  }
  if (n == 0 || v == 0)
    return -1;
  *out = v;
  return 0;
}

static int parse_bool(const char *s) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  size_t i;
  for (i = 0; i < 4; i++) {
    if (strcmp(s, yes[i]) == 0)
      return 1;
    if (strcmp(s, no[i]) == 0)
      return 0;
  }
  return -1;
}

/* The checker of each OPT_STRING field. */
static const struct {
  size_t off;
  int (*check)(const char *v);
} string_checks[] = {
    {F(sqs_cluster), cluster_valid},
    {F(sqs_region), region_valid},
    {F(sqs_profile), profile_valid},
    {F(sqs_endpoint), endpoint_valid},
};

static int string_ok(const opt *o, const char *v) {
  size_t i;
  if (strlen(v) >= o->hi)
    return 0;
  for (i = 0; i < sizeof string_checks / sizeof string_checks[0]; i++)
    if (string_checks[i].off == o->off)
      return string_checks[i].check(v);
  return 0;
}

static int apply_string(cfd_config *cfg, const opt *o, const char *v,
                        const char *name, errbuf *e) {
  if (!string_ok(o, v))
    return fail(e, "%s: invalid value '%.64s' (%s)", name, v, o->range);
  memcpy((char *)cfg + o->off, v, strlen(v) + 1);
  return CFD_CONFIG_OK;
}

/* ---- applying one option ----------------------------------------------- */

static int apply_number(cfd_config *cfg, const opt *o, const char *v,
                        const char *name, errbuf *e) {
  unsigned long long n = 0;
  char *field = (char *)cfg + o->off;
  const char *rest = v;
  if (o->kind == OPT_SIZE)
    rest = parse_size(v, &n) == 0 ? "" : v;
  else if (read_digits(&rest, &n) != 0)
    rest = v;
  if (*rest != '\0')
    return fail(e, "%s: invalid %s '%s' (%s)", name,
                o->kind == OPT_SIZE ? "size" : "number", v,
                o->kind == OPT_SIZE
                    ? "bytes, or a k/K/KiB or m/M/MiB suffix"
                    : "a non-negative integer");
  if (n < o->lo || n > o->hi)
    return fail(e, "%s: '%s' out of range (%s)", name, v, o->range);
  if (o->kind == OPT_SIZE)
    *(size_t *)(void *)field = (size_t)n;
  else
    *(unsigned *)(void *)field = (unsigned)n;
  return CFD_CONFIG_OK;
}

static int apply_duration(cfd_config *cfg, const opt *o, const char *v,
                          const char *name, errbuf *e) {
  double d;
  if (parse_duration(v, &d) != 0)
    return fail(e,
                "%s: invalid duration '%s' (seconds, or with an s or ms "
                "suffix, e.g. 30s, 1.5s, 250ms)",
                name, v);
  if (d == 0 && !o->zero_ok)
    return fail(e, "%s: must be more than 0", name);
  if (o->hi != 0 && d > (double)o->hi)
    return fail(e, "%s: '%s' out of range (%s)", name, v, o->range);
  *(double *)(void *)((char *)cfg + o->off) = d;
  return CFD_CONFIG_OK;
}

static int apply(cfd_config *cfg, const opt *o, const char *v, int from_env,
                 errbuf *e) {
  char nbuf[64];
  const char *name = opt_name(o, from_env, nbuf, sizeof nbuf);
  int n;
  switch (o->kind) {
  case OPT_LISTEN:
    if (parse_listen(v, cfg) != 0)
      return fail(e,
                  "%s: invalid address '%s' (HOST:PORT or [IPv6]:PORT, "
                  "port 0-65535)",
                  name, v);
    return CFD_CONFIG_OK;
  case OPT_QUEUE:
    if (strcmp(v, "local") != 0 && strcmp(v, "sqs") != 0)
      return fail(e, "%s: unknown queue '%.32s' (valid: local, sqs)", name,
                  v);
    snprintf(cfg->queue, sizeof cfg->queue, "%s", v);
    return CFD_CONFIG_OK;
  case OPT_HEX64:
    if (parse_hex64(v, &cfg->instance_id) != 0)
      return fail(e, "%s: invalid instance id '%.32s' (1-16 hex digits, "
                  "not 0)", name, v);
    return CFD_CONFIG_OK;
  case OPT_TOPOLOGY:
    if (strcmp(v, "sns") == 0)
      cfg->sqs_topology = CF_SQS_SNS;
    else if (strcmp(v, "queues") == 0)
      cfg->sqs_topology = CF_SQS_QUEUES;
    else
      return fail(e, "%s: unknown topology '%.32s' (sns, queues)", name, v);
    return CFD_CONFIG_OK;
  case OPT_URING:
    if (strcmp(v, "auto") == 0)
      cfg->io_uring = CFD_URING_AUTO;
    else if (strcmp(v, "on") == 0)
      cfg->io_uring = CFD_URING_ON;
    else if (strcmp(v, "off") == 0)
      cfg->io_uring = CFD_URING_OFF;
    else
      return fail(e, "%s: unknown mode '%.32s' (auto, on, off)", name, v);
    return CFD_CONFIG_OK;
  case OPT_BOOL:
    if ((n = parse_bool(v)) < 0)
      return fail(e, "%s: invalid value '%.32s' (1/0, true/false, yes/no, "
                  "on/off)", name, v);
    *(int *)(void *)((char *)cfg + o->off) = n;
    return CFD_CONFIG_OK;
  case OPT_STRING:
    return apply_string(cfg, o, v, name, e);
  case OPT_SIZE:
  case OPT_UINT:
    return apply_number(cfg, o, v, name, e);
  case OPT_DURATION:
    return apply_duration(cfg, o, v, name, e);
  case OPT_ORIGIN:
    return from_env ? add_origin_list(cfg, v, name, e)
                    : add_origin(cfg, v, strlen(v), name, e);
  case OPT_LEVEL:
    if ((n = cfd_log_level_parse(v)) < 0)
      return fail(e, "%s: unknown level '%s' (error, warn, info, debug)",
                  name, v);
    cfg->log_level = n;
    return CFD_CONFIG_OK;
  case OPT_FORMAT:
    if ((n = cfd_log_format_parse(v)) < 0)
      return fail(e, "%s: unknown format '%s' (text, json)", name, v);
    cfg->log_format = n;
    return CFD_CONFIG_OK;
  default:
    return CFD_CONFIG_OK;
  }
}

/* ---- sources ------------------------------------------------------ */

static void set_defaults(cfd_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
  cfg->listen_port = 8080;
  snprintf(cfg->queue, sizeof cfg->queue, "local");
  cfg->max_message_size = 64 * KIB;
  cfg->max_connections = 10000;
  cfg->client_buffer = MIB;
  cfg->history = 50;
  cfg->history_bytes = 64 * MIB;
  cfg->max_rooms = 100000;
  cfg->ping_interval = 30;
  cfg->idle_timeout = 120;
  cfg->header_timeout = 10;
  cfg->shutdown_timeout = 5;
  cfg->max_conns_per_ip = 256;
  cfg->conn_rate = 20;
  cfg->conn_burst = 100;
  cfg->msg_rate = 100;
  cfg->msg_burst = 1000;
  cfg->frame_timeout = 15;
  cfg->outbound_budget = 256 * MIB;
  cfg->log_level = CFD_LOG_INFO;
  cfg->log_format = CFD_LOG_TEXT;
  cfg->sqs_topology = CF_SQS_SNS;
  snprintf(cfg->sqs_cluster, sizeof cfg->sqs_cluster, "chatfanout");
  cfg->sqs_pollers = 2;
  cfg->sqs_wait = 20;
  cfg->sqs_linger = 0.005;
  cfg->sqs_buffer = 8 * MIB;
  cfg->sqs_reorder = 0.5;
  cfg->sqs_peer_refresh = 10;
  cfg->sqs_heartbeat = 60;
  cfg->sqs_stale_after = 600;
  cfg->sqs_retention = 300;
}

static const opt *find_flag(const char *arg, size_t len) {
  size_t i;
  for (i = 0; i < N_OPTS; i++)
    if (strlen(opts[i].flag) == len && memcmp(opts[i].flag, arg, len) == 0)
      return &opts[i];
  return NULL;
}

/*
 * Walks argv once. With apply_values 0 it only checks the syntax, marks
 * in seen[] which options are given, and handles --help/--version; with
 * 1 it applies the values (the syntax is then known to be good).
 */
static int walk_argv(cfd_config *cfg, int argc, char **argv, int apply_values,
                     unsigned char *seen, FILE *out, errbuf *e) {
  int i, rc;
  for (i = 1; i < argc && argv[i] != NULL; i++) {
    const char *a = argv[i], *eq, *val;
    const opt *o;
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
      return fail(e, "unexpected argument '%s' (see --help)", a);
    eq = strchr(a + 2, '=');
    o = find_flag(a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
    if (o == NULL)
      return fail(e, "unknown option '%.*s' (see --help)",
                  (int)(eq ? (size_t)(eq - a) : strlen(a)), a);
    if (o->kind == OPT_BOOL) {
      /* A switch: alone it means on; =BOOL may turn it off again. */
      seen[o - opts] = 1;
      if (apply_values && (rc = apply(cfg, o, eq ? eq + 1 : "1", 0, e)) != 0)
        return rc;
      continue;
    }
    if (o->arg == NULL) {
      if (eq != NULL)
        return fail(e, "--%s takes no value", o->flag);
      if (apply_values)
        continue;
      if (o->kind == OPT_HELP)
        cfd_config_usage(out);
      else
        fprintf(out, "chatfanoutd %s\n", CF_VERSION_STRING);
      return CFD_CONFIG_EXIT;
    }
    if (eq != NULL) {
      val = eq + 1;
    } else if (i + 1 < argc && argv[i + 1] != NULL) {
      val = argv[++i];
    } else {
      return fail(e, "--%s needs a value (%s)", o->flag, o->arg);
    }
    seen[o - opts] = 1;
    if (apply_values && (rc = apply(cfg, o, val, 0, e)) != 0)
      return rc;
  }
  return CFD_CONFIG_OK;
}

static int apply_env(cfd_config *cfg, char **envp, const unsigned char *seen,
                     errbuf *e) {
  size_t i, nlen;
  int rc;
  for (; envp != NULL && *envp != NULL; envp++) {
    const char *kv = *envp, *eq;
    if (strncmp(kv, "CHATFANOUT_", 11) != 0 ||
        (eq = strchr(kv, '=')) == NULL || eq[1] == '\0')
      continue; /* an empty variable counts as unset */
    nlen = (size_t)(eq - kv);
    for (i = 0; i < N_OPTS; i++) {
      const opt *o = &opts[i];
      /* A flag for the same option wins, even over a bad env value. */
      if (o->env == NULL || seen[i] || strlen(o->env) != nlen ||
          memcmp(o->env, kv, nlen) != 0)
        continue;
      if ((rc = apply(cfg, o, eq + 1, 1, e)) != 0)
        return rc;
    }
  }
  return CFD_CONFIG_OK;
}

/*
 * Options that are each fine but wrong together. Only with --queue sqs:
 * the SQS options mean nothing to the local queue, so leftovers in the
 * environment must not stop a single-instance daemon.
 */
static int check_sqs(const cfd_config *cfg, errbuf *e) {
  if (strcmp(cfg->queue, "sqs") != 0)
    return CFD_CONFIG_OK;
  if (cfg->sqs_fifo && cfg->sqs_topology != CF_SQS_SNS)
    return fail(e, "--sqs-fifo: FIFO needs --sqs-topology sns (the queues "
                "topology has no FIFO mode)");
  if (cfg->sqs_fifo && strlen(cfg->sqs_cluster) > CLUSTER_MAX_FIFO)
    return fail(e, "--sqs-cluster: '%s' is too long for --sqs-fifo (at "
                "most %d characters)", cfg->sqs_cluster, CLUSTER_MAX_FIFO);
  if (cfg->sqs_stale_after <= cfg->sqs_heartbeat)
    return fail(e, "--sqs-stale-after (%gs) must be more than "
                "--sqs-heartbeat (%gs), or live queues get reaped",
                cfg->sqs_stale_after, cfg->sqs_heartbeat);
  return CFD_CONFIG_OK;
}

int cfd_config_parse(cfd_config *cfg, int argc, char **argv, char **envp,
                     FILE *out, char *err, size_t errlen) {
  unsigned char seen[N_OPTS] = {0};
  errbuf e = {err, errlen};
  int rc;
  if (err != NULL && errlen > 0)
    err[0] = '\0';
  if (cfg == NULL)
    return fail(&e, "no configuration to fill");
  set_defaults(cfg);
  if (out == NULL)
    out = stdout;
  /* Syntax and --help first, so help works whatever the environment. */
  if ((rc = walk_argv(cfg, argc, argv, 0, seen, out, &e)) != 0 ||
      (rc = apply_env(cfg, envp, seen, &e)) != 0 ||
      (rc = walk_argv(cfg, argc, argv, 1, seen, out, &e)) != 0)
    return rc;
  return check_sqs(cfg, &e);
}

void cfd_config_free(cfd_config *cfg) {
  size_t i;
  if (cfg == NULL)
    return;
  for (i = 0; i < cfg->n_allowed_origins && i < CFD_MAX_ORIGINS; i++) {
    free(cfg->allowed_origins[i]);
    cfg->allowed_origins[i] = NULL;
  }
  cfg->n_allowed_origins = 0;
}

void cfd_config_usage(FILE *out) {
  size_t i;
  if (out == NULL)
    return;
  fprintf(out,
          "Usage: chatfanoutd [options]\n"
          "\n"
          "A WebSocket chat fan-out daemon (libchatfanout %s).\n"
          "Options may also be written --flag=value. Flags override the\n"
          "environment; an empty variable counts as unset. SIZE takes\n"
          "k/K/KiB or m/M/MiB, DUR s or ms (bare number: seconds).\n"
          "\n",
          CF_VERSION_STRING);
  for (i = 0; i < N_OPTS; i++) {
    const opt *o = &opts[i];
    fprintf(out, "  --%s%s%s\n      %s\n", o->flag, o->arg ? " " : "",
            o->arg ? o->arg : "", o->help);
    if (o->env != NULL)
      fprintf(out, "      env %s, default %s\n", o->env, o->def);
  }
}
