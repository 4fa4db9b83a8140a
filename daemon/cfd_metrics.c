#include "cfd_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfd_log.h"

/* 10 us to 1 s: a local fan-out is microseconds, a stall is visible. */
static const double bucket_le[CFD_METRICS_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
    0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   0.5,    1.0};

void cfd_metrics_init(cfd_metrics *m) { memset(m, 0, sizeof(*m)); }

void cfd_metrics_collect(cfd_metrics_ext *ext, const cf_hub *hub,
                         const cf_queue *q) {
  memset(ext, 0, sizeof(*ext));
  cf_hub_get_stats(hub, &ext->hub, sizeof(ext->hub));
  ext->log_dropped = cfd_log_dropped();
  ext->queue_state = CF_QUEUE_STOPPED;
  if (q == NULL)
    return;
  cf_queue_get_stats(q, &ext->queue, sizeof(ext->queue));
  /* The queue's own count of what it took and refused: the daemon may
   * publish to it without the hub (SQS FIFO), so the hub's undercount. */
  ext->hub.queue_published = ext->queue.published;
  ext->hub.queue_errors = ext->queue.publish_errors;
  ext->queue_state = cf_queue_state_get(q);
  ext->queue_up = ext->queue_state == CF_QUEUE_UP;
}

/*
 * Adds one to code's entry, keeping the table sorted. Label values come
 * partly from peers (close codes echoed), so the table is bounded and
 * the overflow shares one "other" entry (code -1, kept first).
 */
static void code_add(cfd_code_count *t, size_t *n, int code) {
  size_t i;
  for (i = 0; i < *n && t[i].code < code; i++)
    ;
  if (i < *n && t[i].code == code) {
    t[i].n++;
    return;
  }
  if (*n >= CFD_METRICS_CODES - 1 && code != -1) {
    code_add(t, n, -1);
    return;
  }
  memmove(t + i + 1, t + i, (*n - i) * sizeof(*t));
  t[i].code = code;
  t[i].n = 1;
  (*n)++;
}

void cfd_metrics_http(cfd_metrics *m, int code) {
  code_add(m->http, &m->n_http, code);
}

void cfd_metrics_ws_close(cfd_metrics *m, int code) {
  code_add(m->ws_close, &m->n_ws_close, code);
}

void cfd_metrics_fanout(cfd_metrics *m, double seconds) {
  size_t i;
  for (i = 0; i < CFD_METRICS_BUCKETS && seconds > bucket_le[i]; i++)
    ;
  m->fanout_bucket[i]++;
  m->fanout_count++;
  m->fanout_sum += seconds;
}

/* A growing output buffer; failure is sticky and checked once. */
typedef struct outbuf {
  char *p;
  size_t len, cap;
  int oom;
} outbuf;

static void out_printf(outbuf *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(outbuf *o, const char *fmt, ...) {
  va_list ap;
  int n;
  char *np;
  if (o->oom)
    return;
  for (;;) {
    va_start(ap, fmt);
    n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      o->oom = 1;
      return;
    }
    if ((size_t)n < o->cap - o->len) {
      o->len += (size_t)n;
      return;
    }
    np = realloc(o->p, o->cap * 2 + (size_t)n);
    if (np == NULL) {
      o->oom = 1;
      return;
    }
    o->p = np;
    o->cap = o->cap * 2 + (size_t)n;
  }
}

static void family(outbuf *o, const char *name, const char *type,
                   const char *help) {
  out_printf(o, "# HELP chatfanout_%s %s\n# TYPE chatfanout_%s %s\n", name,
             help, name, type);
}

static void scalar(outbuf *o, const char *name, const char *type,
                   const char *help, uint64_t v) {
  family(o, name, type, help);
  out_printf(o, "chatfanout_%s %llu\n", name, (unsigned long long)v);
}

static void by_code(outbuf *o, const char *name, const char *help,
                    const cfd_code_count *t, size_t n) {
  size_t i;
  family(o, name, "counter", help);
  for (i = 0; i < n; i++) {
    if (t[i].code < 0)
      out_printf(o, "chatfanout_%s{code=\"other\"} %llu\n", name,
                 (unsigned long long)t[i].n);
    else
      out_printf(o, "chatfanout_%s{code=\"%d\"} %llu\n", name, t[i].code,
                 (unsigned long long)t[i].n);
  }
}

static void histogram(outbuf *o, const cfd_metrics *m) {
  uint64_t cum = 0;
  size_t i;
  family(o, "fanout_seconds", "histogram",
         "Time to fan one message out to every local outbox.");
  for (i = 0; i < CFD_METRICS_BUCKETS; i++) {
    cum += m->fanout_bucket[i];
    out_printf(o, "chatfanout_fanout_seconds_bucket{le=\"%g\"} %llu\n",
               bucket_le[i], (unsigned long long)cum);
  }
  cum += m->fanout_bucket[CFD_METRICS_BUCKETS];
  out_printf(o, "chatfanout_fanout_seconds_bucket{le=\"+Inf\"} %llu\n",
             (unsigned long long)cum);
  out_printf(o, "chatfanout_fanout_seconds_sum %.9f\n", m->fanout_sum);
  out_printf(o, "chatfanout_fanout_seconds_count %llu\n",
             (unsigned long long)m->fanout_count);
}

static void render_daemon(outbuf *o, const cfd_metrics *m) {
  scalar(o, "connections", "gauge", "Open WebSocket clients.",
         m->connections);
  by_code(o, "http_requests_total", "HTTP requests answered, by status.",
          m->http, m->n_http);
  scalar(o, "messages_in_total", "counter",
         "Messages received from clients.", m->messages_in);
  scalar(o, "bytes_in_total", "counter",
         "Payload bytes received from clients.", m->bytes_in);
  scalar(o, "slow_client_disconnects_total", "counter",
         "Clients closed as slow consumers.", m->slow_disconnects);
  by_code(o, "ws_closes_total", "WebSocket close frames sent, by code.",
          m->ws_close, m->n_ws_close);
}

static void render_ext(outbuf *o, const cfd_metrics_ext *e) {
  scalar(o, "log_dropped_total", "counter",
         "Log lines dropped because stderr could not take them at once.",
         e->log_dropped);
}

static void render_limits(outbuf *o, const cfd_metrics *m,
                          const cfd_metrics_ext *e) {
  family(o, "limits_rejected_total", "counter",
         "Connections refused (429) by a per-address limit, by reason.");
  out_printf(o, "chatfanout_limits_rejected_total{reason=\"ip_connections\"}"
             " %llu\n",
             (unsigned long long)m->limits_rejected[CFD_REJECT_IP_CONNS]);
  out_printf(o, "chatfanout_limits_rejected_total{reason=\"ip_rate\"} %llu\n",
             (unsigned long long)m->limits_rejected[CFD_REJECT_IP_RATE]);
  scalar(o, "limits_ip_entries", "gauge",
         "Source addresses held in the per-address table.", e->ip_entries);
  scalar(o, "limits_ip_untracked_total", "counter",
         "Connections admitted uncounted: no table slot was free.",
         e->ip_untracked);
  scalar(o, "ws_rate_limited_total", "counter",
         "Clients closed (1008) for sending frames too fast.",
         m->ws_rate_limited);
  scalar(o, "ws_frame_timeouts_total", "counter",
         "Clients closed (1008) silent in the middle of a frame.",
         m->ws_frame_timeouts);
  scalar(o, "outbound_bytes", "gauge",
         "Memory of all client queues as counted against the outbound "
         "budget.",
         e->hub.outbound_bytes);
  scalar(o, "outbound_budget_closes_total", "counter",
         "Clients closed (1008 slow consumer) to stay under the outbound "
         "budget.",
         e->hub.budget_closes);
  scalar(o, "outbound_budget_trims_total", "counter",
         "Clients the daemon was closing already whose queued messages "
         "were dropped to stay under the outbound budget (their close "
         "frame kept).",
         e->hub.budget_trims);
}

static void render_hub(outbuf *o, const cfd_metrics_ext *e) {
  scalar(o, "messages_out_total", "counter",
         "Message deliveries queued to clients.", e->hub.deliveries);
  scalar(o, "bytes_out_total", "counter",
         "Wire bytes of the deliveries queued to clients.",
         e->hub.delivered_bytes);
  scalar(o, "rooms", "gauge", "Rooms held.", e->hub.rooms);
  scalar(o, "history_bytes", "gauge",
         "History bytes held across rooms (wire bytes + 256 a message).",
         e->hub.history_bytes);
  scalar(o, "nomem_closes_total", "counter",
         "Clients closed (1011) because their outbox could not grow.",
         e->hub.nomem_closes);
  scalar(o, "queue_publishes_total", "counter",
         "Messages the queue backend accepted.", e->hub.queue_published);
  scalar(o, "queue_receives_total", "counter",
         "Messages received from the queue backend.", e->hub.received);
  scalar(o, "queue_errors_total", "counter",
         "Messages the queue backend refused.", e->hub.queue_errors);
  scalar(o, "queue_duplicates_total", "counter",
         "Queue messages dropped as duplicates or own.",
         e->hub.duplicates);
  scalar(o, "queue_up", "gauge", "1 when the queue backend is up.",
         e->queue_up ? 1u : 0u);
}

/* The backend's own view: network requests and its outage buffer. */
static void render_queue(outbuf *o, const cfd_metrics_ext *e) {
  scalar(o, "queue_state", "gauge",
         "Queue backend state: 0 stopped, 1 starting, 2 up, 3 degraded, "
         "4 down.",
         e->queue_state < 0 ? 0u : (uint64_t)e->queue_state);
  scalar(o, "queue_requests_total", "counter",
         "Network requests the queue backend sent.", e->queue.requests);
  scalar(o, "queue_request_errors_total", "counter",
         "Queue backend requests that failed, retried or not.",
         e->queue.request_errors);
  scalar(o, "queue_retries_total", "counter",
         "Queue backend requests sent again after a failure.",
         e->queue.retries);
  scalar(o, "queue_buffered_bytes", "gauge",
         "Bytes the queue backend accepted and has not sent yet.",
         e->queue.buffered_bytes);
  scalar(o, "queue_dropped_total", "counter",
         "Messages the queue backend accepted, then gave up on.",
         e->queue.dropped);
}

char *cfd_metrics_render(const cfd_metrics *m, const cfd_metrics_ext *ext,
                         size_t *len) {
  outbuf o = {NULL, 0, 4096, 0};
  o.p = malloc(o.cap);
  if (o.p == NULL)
    return NULL;
  render_daemon(&o, m);
  render_hub(&o, ext);
  render_queue(&o, ext);
  render_ext(&o, ext);
  render_limits(&o, m, ext);
  histogram(&o, m);
  if (o.oom) {
    free(o.p);
    return NULL;
  }
  *len = o.len;
  return o.p;
}
