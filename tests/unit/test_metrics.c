/*
 * cfd_metrics: counters and the renderer. The rendered text is parsed
 * back (a small Prometheus 0.0.4 text parser) and every sample checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/cf_hub.h>
#include <chatfanout/cf_queue.h>

#include "cfd_metrics.h"

#define MAX_SAMPLES 256
#define MAX_FAMILIES 64

typedef struct sample {
  char key[128]; /* name{labels} exactly as written */
  double value;
} sample;

typedef struct family {
  char name[64];
  char type[16];
  int has_help;
} family;

typedef struct parsed {
  sample s[MAX_SAMPLES];
  size_t ns;
  family f[MAX_FAMILIES];
  size_t nf;
} parsed;

static family *family_get(parsed *p, const char *name, size_t len) {
  size_t i;
  for (i = 0; i < p->nf; i++)
    if (strlen(p->f[i].name) == len && memcmp(p->f[i].name, name, len) == 0)
      return &p->f[i];
  assert_true(p->nf < MAX_FAMILIES);
  assert_true(len < sizeof(p->f[0].name));
  memcpy(p->f[p->nf].name, name, len);
  return &p->f[p->nf++];
}

static void parse_comment(parsed *p, const char *line) {
  char name[64], rest[128];
  family *f;
  if (sscanf(line, "# HELP %63s %127[^\n]", name, rest) == 2) {
    f = family_get(p, name, strlen(name));
    assert_false(f->has_help);
    f->has_help = 1;
  } else if (sscanf(line, "# TYPE %63s %15s", name, rest) == 2) {
    f = family_get(p, name, strlen(name));
    assert_true(f->has_help); /* HELP first, as we write it */
    assert_string_equal(f->type, "");
    strcpy(f->type, rest);
  } else {
    fail_msg("bad comment line: %s", line);
  }
}

/* The family a sample belongs to: histograms add suffixes. */
static const family *sample_family(parsed *p, const char *key) {
  static const char *sfx[] = {"_bucket", "_sum", "_count"};
  size_t n = strcspn(key, "{"), i, k;
  for (i = 0; i < p->nf; i++) {
    if (strlen(p->f[i].name) == n &&
        memcmp(p->f[i].name, key, n) == 0)
      return &p->f[i];
    for (k = 0; k < 3; k++) {
      size_t fl = strlen(p->f[i].name);
      if (strcmp(p->f[i].type, "histogram") == 0 &&
          fl + strlen(sfx[k]) == n && memcmp(p->f[i].name, key, fl) == 0 &&
          memcmp(key + fl, sfx[k], n - fl) == 0)
        return &p->f[i];
    }
  }
  return NULL;
}

static void parse_sample(parsed *p, const char *line, size_t len) {
  const char *sp = memchr(line, ' ', len);
  char num[64], *end;
  sample *s;
  assert_non_null(sp);
  assert_true(p->ns < MAX_SAMPLES);
  s = &p->s[p->ns++];
  assert_true((size_t)(sp - line) < sizeof(s->key));
  memcpy(s->key, line, (size_t)(sp - line));
  s->key[sp - line] = '\0';
  assert_true(len - (size_t)(sp - line) - 1 < sizeof(num));
  memcpy(num, sp + 1, len - (size_t)(sp - line) - 1);
  num[len - (size_t)(sp - line) - 1] = '\0';
  s->value = strtod(num, &end);
  assert_true(*num != '\0' && *end == '\0');
  assert_non_null(sample_family(p, s->key)); /* HELP/TYPE came first */
  assert_true(strncmp(s->key, "chatfanout_", 11) == 0);
}

static void parse(parsed *p, const char *text, size_t len) {
  const char *line = text, *nl;
  char buf[256];
  memset(p, 0, sizeof(*p));
  assert_true(len > 0 && text[len - 1] == '\n');
  assert_int_equal(strlen(text), len);
  while (line < text + len) {
    nl = memchr(line, '\n', (size_t)(text + len - line));
    assert_non_null(nl);
    assert_true(nl > line);
    if (line[0] == '#') {
      assert_true((size_t)(nl - line) < sizeof(buf));
      memcpy(buf, line, (size_t)(nl - line));
      buf[nl - line] = '\0';
      parse_comment(p, buf);
    } else {
      parse_sample(p, line, (size_t)(nl - line));
    }
    line = nl + 1;
  }
}

static int find(const parsed *p, const char *key, double *v) {
  size_t i;
  for (i = 0; i < p->ns; i++)
    if (strcmp(p->s[i].key, key) == 0) {
      *v = p->s[i].value;
      return 1;
    }
  return 0;
}

static double get(const parsed *p, const char *key) {
  double v = -1;
  if (!find(p, key, &v))
    fail_msg("missing sample %s", key);
  return v;
}

static void render_parse(const cfd_metrics *m, const cfd_metrics_ext *e,
                         parsed *p) {
  size_t len = 0;
  char *txt = cfd_metrics_render(m, e, &len);
  assert_non_null(txt);
  parse(p, txt, len);
  free(txt);
}

static parsed P;

static void test_names_and_types(void **state) {
  static const char *want[][2] = {
      {"chatfanout_connections", "gauge"},
      {"chatfanout_http_requests_total", "counter"},
      {"chatfanout_messages_in_total", "counter"},
      {"chatfanout_messages_out_total", "counter"},
      {"chatfanout_bytes_in_total", "counter"},
      {"chatfanout_bytes_out_total", "counter"},
      {"chatfanout_slow_client_disconnects_total", "counter"},
      {"chatfanout_ws_closes_total", "counter"},
      {"chatfanout_rooms", "gauge"},
      {"chatfanout_history_bytes", "gauge"},
      {"chatfanout_nomem_closes_total", "counter"},
      {"chatfanout_queue_publishes_total", "counter"},
      {"chatfanout_queue_receives_total", "counter"},
      {"chatfanout_queue_errors_total", "counter"},
      {"chatfanout_queue_duplicates_total", "counter"},
      {"chatfanout_queue_up", "gauge"},
      {"chatfanout_queue_state", "gauge"},
      {"chatfanout_queue_requests_total", "counter"},
      {"chatfanout_queue_request_errors_total", "counter"},
      {"chatfanout_queue_retries_total", "counter"},
      {"chatfanout_queue_buffered_bytes", "gauge"},
      {"chatfanout_queue_dropped_total", "counter"},
      {"chatfanout_log_dropped_total", "counter"},
      {"chatfanout_limits_rejected_total", "counter"},
      {"chatfanout_limits_ip_entries", "gauge"},
      {"chatfanout_limits_ip_untracked_total", "counter"},
      {"chatfanout_ws_rate_limited_total", "counter"},
      {"chatfanout_ws_frame_timeouts_total", "counter"},
      {"chatfanout_outbound_bytes", "gauge"},
      {"chatfanout_outbound_budget_closes_total", "counter"},
      {"chatfanout_outbound_budget_trims_total", "counter"},
      {"chatfanout_fanout_seconds", "histogram"}};
  cfd_metrics m;
  cfd_metrics_ext e;
  size_t i, j;
  (void)state;
  cfd_metrics_init(&m);
  memset(&e, 0, sizeof(e));
  render_parse(&m, &e, &P);
  assert_int_equal(P.nf, sizeof(want) / sizeof(want[0]));
  for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
    for (j = 0; j < P.nf; j++)
      if (strcmp(P.f[j].name, want[i][0]) == 0)
        break;
    assert_true(j < P.nf);
    assert_string_equal(P.f[j].type, want[i][1]);
    assert_true(P.f[j].has_help);
  }
  assert_true(get(&P, "chatfanout_connections") == 0);
  assert_true(get(&P, "chatfanout_fanout_seconds_count") == 0);
  assert_true(get(&P, "chatfanout_queue_state") == 0);
  assert_true(get(&P, "chatfanout_queue_requests_total") == 0);
}

static void test_values(void **state) {
  cfd_metrics m;
  cfd_metrics_ext e;
  double v;
  (void)state;
  cfd_metrics_init(&m);
  memset(&e, 0, sizeof(e));
  m.connections = 3;
  m.messages_in = 7;
  m.bytes_in = 1234;
  m.slow_disconnects = 2;
  e.hub.deliveries = 21;
  e.hub.delivered_bytes = 99999;
  e.hub.rooms = 4;
  e.hub.history_bytes = 4096;
  e.hub.nomem_closes = 1;
  e.hub.queue_published = 5;
  e.hub.received = 6;
  e.hub.queue_errors = 8;
  e.hub.duplicates = 9;
  e.queue_up = 1;
  e.queue_state = CF_QUEUE_DEGRADED;
  e.queue.requests = 1001;
  e.queue.request_errors = 17;
  e.queue.retries = 15;
  e.queue.buffered_bytes = 65536;
  e.queue.dropped = 3;
  e.log_dropped = 12;
  m.limits_rejected[CFD_REJECT_IP_CONNS] = 31;
  m.limits_rejected[CFD_REJECT_IP_RATE] = 32;
  m.ws_rate_limited = 33;
  m.ws_frame_timeouts = 34;
  e.ip_entries = 35;
  e.ip_untracked = 36;
  e.hub.outbound_bytes = 37;
  e.hub.budget_closes = 38;
  e.hub.budget_trims = 39;
  cfd_metrics_http(&m, 404);
  cfd_metrics_http(&m, 200);
  cfd_metrics_http(&m, 404);
  cfd_metrics_ws_close(&m, 1008);
  render_parse(&m, &e, &P);
  assert_true(get(&P, "chatfanout_connections") == 3);
  assert_true(get(&P, "chatfanout_messages_in_total") == 7);
  assert_true(get(&P, "chatfanout_bytes_in_total") == 1234);
  assert_true(get(&P, "chatfanout_slow_client_disconnects_total") == 2);
  assert_true(get(&P, "chatfanout_messages_out_total") == 21);
  assert_true(get(&P, "chatfanout_bytes_out_total") == 99999);
  assert_true(get(&P, "chatfanout_rooms") == 4);
  assert_true(get(&P, "chatfanout_history_bytes") == 4096);
  assert_true(get(&P, "chatfanout_nomem_closes_total") == 1);
  assert_true(get(&P, "chatfanout_queue_publishes_total") == 5);
  assert_true(get(&P, "chatfanout_queue_receives_total") == 6);
  assert_true(get(&P, "chatfanout_queue_errors_total") == 8);
  assert_true(get(&P, "chatfanout_queue_duplicates_total") == 9);
  assert_true(get(&P, "chatfanout_queue_up") == 1);
  assert_true(get(&P, "chatfanout_queue_state") == 3);
  assert_true(get(&P, "chatfanout_queue_requests_total") == 1001);
  assert_true(get(&P, "chatfanout_queue_request_errors_total") == 17);
  assert_true(get(&P, "chatfanout_queue_retries_total") == 15);
  assert_true(get(&P, "chatfanout_queue_buffered_bytes") == 65536);
  assert_true(get(&P, "chatfanout_queue_dropped_total") == 3);
  assert_true(get(&P, "chatfanout_log_dropped_total") == 12);
  assert_true(get(&P, "chatfanout_limits_rejected_total"
                      "{reason=\"ip_connections\"}") == 31);
  assert_true(get(&P, "chatfanout_limits_rejected_total"
                      "{reason=\"ip_rate\"}") == 32);
  assert_true(get(&P, "chatfanout_ws_rate_limited_total") == 33);
  assert_true(get(&P, "chatfanout_ws_frame_timeouts_total") == 34);
  assert_true(get(&P, "chatfanout_limits_ip_entries") == 35);
  assert_true(get(&P, "chatfanout_limits_ip_untracked_total") == 36);
  assert_true(get(&P, "chatfanout_outbound_bytes") == 37);
  assert_true(get(&P, "chatfanout_outbound_budget_closes_total") == 38);
  assert_true(get(&P, "chatfanout_outbound_budget_trims_total") == 39);
  assert_true(get(&P, "chatfanout_http_requests_total{code=\"404\"}") == 2);
  assert_true(get(&P, "chatfanout_http_requests_total{code=\"200\"}") == 1);
  assert_false(find(&P, "chatfanout_http_requests_total{code=\"500\"}", &v));
  assert_true(get(&P, "chatfanout_ws_closes_total{code=\"1008\"}") == 1);
}

static void test_histogram(void **state) {
  cfd_metrics m;
  cfd_metrics_ext e;
  size_t i;
  double prev = 0, v;
  (void)state;
  cfd_metrics_init(&m);
  memset(&e, 0, sizeof(e));
  cfd_metrics_fanout(&m, 0.000001); /* first bucket */
  cfd_metrics_fanout(&m, 0.00001);  /* le is inclusive */
  cfd_metrics_fanout(&m, 0.0003);
  cfd_metrics_fanout(&m, 0.002);
  cfd_metrics_fanout(&m, 5.0);      /* only +Inf */
  render_parse(&m, &e, &P);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"1e-05\"}") == 2);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"0.00025\"}") ==
              2);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"0.0005\"}") ==
              3);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"0.0025\"}") ==
              4);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"1\"}") == 4);
  assert_true(get(&P, "chatfanout_fanout_seconds_bucket{le=\"+Inf\"}") == 5);
  assert_true(get(&P, "chatfanout_fanout_seconds_count") == 5);
  v = get(&P, "chatfanout_fanout_seconds_sum");
  assert_true(v > 5.0023 && v < 5.0024);
  /* Buckets are cumulative and in increasing le order. */
  for (i = 0; i < P.ns; i++) {
    if (strncmp(P.s[i].key, "chatfanout_fanout_seconds_bucket", 32) != 0)
      continue;
    assert_true(P.s[i].value >= prev);
    prev = P.s[i].value;
  }
  assert_true(prev == 5);
}

/* Peer-chosen close codes must not grow the label set without bound. */
static void test_code_table_bounded(void **state) {
  cfd_metrics m;
  cfd_metrics_ext e;
  int code;
  double other;
  (void)state;
  cfd_metrics_init(&m);
  memset(&e, 0, sizeof(e));
  for (code = 3000; code < 3100; code++)
    cfd_metrics_ws_close(&m, code);
  cfd_metrics_ws_close(&m, 3000);
  assert_int_equal(m.n_ws_close, CFD_METRICS_CODES);
  render_parse(&m, &e, &P);
  assert_true(get(&P, "chatfanout_ws_closes_total{code=\"3000\"}") == 2);
  other = get(&P, "chatfanout_ws_closes_total{code=\"other\"}");
  assert_true(other == 100 - (CFD_METRICS_CODES - 1));
}

/* What collect reads from a real hub and a real (local) queue. */
static void test_collect(void **state) {
  cf_hub_config hc = {.version = CF_HUB_CONFIG_VERSION};
  cf_queue_bus *bus;
  cf_queue *q;
  cf_hub *hub;
  cfd_metrics_ext e;
  (void)state;
  assert_int_equal(cf_hub_new(&hub, &hc), CF_OK);
  assert_int_equal(cf_queue_bus_new(&bus, NULL), CF_OK);
  assert_int_equal(cf_queue_local_new(&q, bus, NULL, 0, NULL), CF_OK);
  /* No queue: stopped, not up, zero counters. */
  memset(&e, 0xff, sizeof(e));
  cfd_metrics_collect(&e, hub, NULL);
  assert_int_equal(e.queue_state, CF_QUEUE_STOPPED);
  assert_int_equal(e.queue_up, 0);
  assert_true(e.queue.published == 0 && e.queue.requests == 0);
  assert_true(e.hub.rooms == 0);
  assert_int_equal(cf_hub_attach_queue(hub, q), CF_OK);
  cfd_metrics_collect(&e, hub, q);
  assert_int_equal(e.queue_state, CF_QUEUE_STOPPED);
  assert_int_equal(e.queue_up, 0);
  assert_int_equal(cf_queue_start(q), CF_OK);
  assert_int_equal(cf_hub_publish(hub, "r", 1, CF_MSG_TEXT, "hi", 2),
                   CF_OK);
  cfd_metrics_collect(&e, hub, q);
  assert_int_equal(e.queue_state, CF_QUEUE_UP);
  assert_int_equal(e.queue_up, 1);
  assert_true(e.queue.published == 1);
  assert_true(e.hub.queue_published == 1);
  assert_true(e.queue.requests == 0); /* local: no network */
  /* Published straight to the queue, as the daemon does in SQS FIFO
   * mode: counted all the same. */
  {
    cf_envelope env = {.origin = 7, .seq = 1, .room = "r", .room_len = 1,
                       .flags = CF_MSG_TEXT, .data = "x", .len = 1};
    assert_int_equal(cf_queue_publish(q, &env), CF_OK);
  }
  cfd_metrics_collect(&e, hub, q);
  assert_true(e.hub.queue_published == 2);
  assert_true(e.queue.published == 2);
  assert_int_equal(cf_hub_attach_queue(hub, NULL), CF_OK);
  cf_queue_free(q);
  assert_int_equal(cf_queue_bus_free(bus), CF_OK);
  cf_hub_free(hub);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_and_types),
      cmocka_unit_test(test_values),
      cmocka_unit_test(test_histogram),
      cmocka_unit_test(test_code_table_bounded),
      cmocka_unit_test(test_collect),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
