/*
 * chatfanoutd metrics: the daemon's own counters, gauges and the
 * fan-out latency histogram, rendered together with the hub's counters
 * in the Prometheus text format 0.0.4. Names are those of the README.
 */
#ifndef CFD_METRICS_H
#define CFD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <chatfanout/cf_hub.h>
#include <chatfanout/cf_queue.h>

/* Upper bounds of the fanout_seconds buckets, +Inf excluded. */
#define CFD_METRICS_BUCKETS 16

/* Distinct label values kept per labelled counter; more go to "other". */
#define CFD_METRICS_CODES 24

typedef struct cfd_code_count {
  int code;   /* HTTP status or WebSocket close code; -1 for "other" */
  uint64_t n; /* times seen */
} cfd_code_count;

typedef struct cfd_metrics {
  uint64_t connections;     /* open WebSocket clients (gauge) */
  uint64_t messages_in;     /* text/binary messages received */
  uint64_t bytes_in;        /* payload bytes of those */
  uint64_t slow_disconnects;/* clients closed with 1008 slow consumer */
  cfd_code_count http[CFD_METRICS_CODES]; /* sorted by code */
  size_t n_http;
  cfd_code_count ws_close[CFD_METRICS_CODES]; /* close frames sent */
  size_t n_ws_close;
  uint64_t fanout_bucket[CFD_METRICS_BUCKETS + 1]; /* per bucket, last
                                                     is +Inf; not cumul. */
  uint64_t fanout_count;
  double fanout_sum;        /* seconds */
  /* Abuse limits. Connections refused before the upgrade (429), by
   * cause: CFD_REJECT_IP_CONNS, CFD_REJECT_IP_RATE. */
  uint64_t limits_rejected[2];
  uint64_t ws_rate_limited; /* clients closed 1008 "rate limit" */
  uint64_t ws_frame_timeouts; /* clients closed 1008 "frame timeout" */
} cfd_metrics;

/* Index of cfd_metrics.limits_rejected, and the label values. */
enum { CFD_REJECT_IP_CONNS = 0, CFD_REJECT_IP_RATE = 1 };

/* What the renderer reads from outside the daemon's own counters. */
typedef struct cfd_metrics_ext {
  cf_hub_stats hub;     /* from cf_hub_get_stats() */
  int queue_up;         /* 1 when the queue backend is up */
  int queue_state;      /* cf_queue_state; CF_QUEUE_STOPPED if none */
  cf_queue_stats queue; /* from cf_queue_get_stats(); zero if none */
  uint64_t log_dropped; /* from cfd_log_dropped() */
  uint64_t ip_entries;  /* cfd_limits_entries(): addresses held (gauge) */
  uint64_t ip_untracked;/* cfd_limits_untracked() */
} cfd_metrics_ext;

/*
 * Fills ext from hub and q (both borrowed, read only; q may be NULL when no
 * queue is attached) and the logger. hub must not be NULL. With a queue, the
 * queue's publish counts replace the hub's (hub.queue_published/queue_errors):
 * messages may reach the queue without the hub.
 */
void cfd_metrics_collect(cfd_metrics_ext *ext, const cf_hub *hub,
                         const cf_queue *q);

/* Zeroes every counter. */
void cfd_metrics_init(cfd_metrics *m);

/* Counts one HTTP answer with status code. */
void cfd_metrics_http(cfd_metrics *m, int code);

/* Counts one close frame sent with code. */
void cfd_metrics_ws_close(cfd_metrics *m, int code);

/* Records one fan-out that took `seconds`. */
void cfd_metrics_fanout(cfd_metrics *m, double seconds);

/*
 * Renders every metric as Prometheus text (HELP and TYPE lines, then
 * samples). Returns a NUL-terminated malloc'd string the caller frees,
 * with its length in *len, or NULL when out of memory.
 */
char *cfd_metrics_render(const cfd_metrics *m, const cfd_metrics_ext *ext,
                         size_t *len);

#endif /* CFD_METRICS_H */
