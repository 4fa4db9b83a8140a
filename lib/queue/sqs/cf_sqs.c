/*
 * The SQS/SNS backend: creation, the ops table, the lifecycle and the
 * health that drives the reported state. See cf_sqs_int.h for the map
 * of the files and the state machine.
 */
#include "cf_sqs_int.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cf_clock.h"
#include "cf_mem.h"

#define SQS_LINGER_DEFAULT 0.005
#define SQS_INTERVAL_DEFAULT 0.05
#define SQS_POLLERS_DEFAULT 2u
#define SQS_WAIT_DEFAULT 20u
#define SQS_BUFFER_DEFAULT ((size_t)8 * 1024 * 1024)
#define SQS_REORDER_DEFAULT 0.5
#define SQS_PEER_REFRESH_DEFAULT 10.0
#define SQS_HEARTBEAT_DEFAULT 60.0
#define SQS_STALE_DEFAULT 600.0
#define SQS_RETENTION_DEFAULT 300u
/* SQS accepts MessageRetentionPeriod 60 s .. 14 days. */
#define SQS_RETENTION_MIN 60u
#define SQS_RETENTION_MAX 1209600u

/* --- small shared helpers ------------------------------------------------ */

void sqs_enter(sqs *s) {
  cf__queue_enter(s->q);
}

int sqs_leave(sqs *s) {
  return cf__queue_leave(s->q);
}

int sqs_freeing(const sqs *s) {
  return cf__queue_freeing(s->q);
}

double sqs_wall(const sqs *s) {
  return s->loop.now(s->loop.data);
}

double sqs_mono(const sqs *s) {
  (void)s;
  return cf__mono_now();
}

void sqs_timer_set(sqs *s, void *timer, double after) {
  s->loop.timer_set(s->loop.data, timer, after);
}

char *sqs_strdup(sqs *s, const char *str) {
  size_t n = strlen(str) + 1;
  char *p = cf__malloc(&s->mem, n);

  if (p != NULL)
    memcpy(p, str, n);
  return p;
}

void sqs_strfree(sqs *s, char **p) {
  cf__free(&s->mem, *p);
  *p = NULL;
}

const char *sqs_tail(const char *s, char sep) {
  const char *p = strrchr(s, sep);

  return p != NULL ? p + 1 : s;
}

static int is_lower_hex(const char *p, size_t n) {
  size_t i;

  for (i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
      return 0;
  return 1;
}

/*
 * Matches "<cluster>-<16 hex>" (+ ".fifo" in fifo mode) exactly: a
 * plain prefix match would also take the queues of a cluster whose name
 * extends ours ("chat" and "chat-eu").
 */
int sqs_is_member_queue(const sqs *s, const char *name) {
  size_t plen = strlen(s->prefix), n = strlen(name);
  size_t want = plen + 16 + (s->fifo ? 5 : 0);

  if (n != want || strncmp(name, s->prefix, plen) != 0)
    return 0;
  if (!is_lower_hex(name + plen, 16))
    return 0;
  return !s->fifo || strcmp(name + plen + 16, ".fifo") == 0;
}

/* --- health and state ---------------------------------------------------- */

void sqs_set_errmsg(sqs *s, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
  va_end(ap);
}

void sqs_update_state(sqs *s) {
  int st;

  if (s->phase == SQS_IDLE || s->phase == SQS_STOPPED)
    return;
  if (s->failing != 0)
    st = sqs_mono(s) - s->fail_since >= SQS_DOWN_AFTER ? CF_QUEUE_DOWN
                                                       : CF_QUEUE_DEGRADED;
  else if (s->was_ready)
    st = CF_QUEUE_UP;
  else
    st = CF_QUEUE_STARTING;
  cf_queue_report_state(s->q, st);
}

static void fail_text(sqs *s, unsigned part, const char *text) {
  int first = s->failing == 0;

  /* The detail is written when a part starts failing, not per retry:
   * the application logs it with the state change. */
  if (!(s->failing & part))
    snprintf(s->errmsg, sizeof(s->errmsg), "%s", text);
  s->failing |= part;
  if (first) {
    s->fail_since = sqs_mono(s);
    sqs_timer_set(s, s->health_timer, SQS_DOWN_AFTER);
  }
  sqs_update_state(s);
}

void sqs_fail(sqs *s, unsigned part, const char *what,
              const cf__aws_result *r) {
  char text[sizeof(s->errmsg)];

  if (r == NULL)
    snprintf(text, sizeof(text), "%s", what);
  else if (r->status != 0)
    snprintf(text, sizeof(text), "%s: %s%s%s (HTTP %ld)", what,
             r->code[0] ? r->code : cf_strerror(r->error),
             r->message[0] ? ": " : "", r->message, r->status);
  else
    snprintf(text, sizeof(text), "%s: %s%s%s", what, cf_strerror(r->error),
             r->message[0] ? ": " : "", r->message);
  fail_text(s, part, text);
}

void sqs_ok(sqs *s, unsigned part) {
  if (!(s->failing & part))
    return;
  s->failing &= ~part;
  if (s->failing == 0)
    sqs_timer_set(s, s->health_timer, -1.0);
  sqs_update_state(s);
}

static void on_health_timer(void *arg) {
  sqs *s = arg;
  double left;

  sqs_enter(s);
  sqs_update_state(s);
  /*
   * The loop's timers count from the start of the iteration they were
   * armed in, fail_since from the moment it was read: the timer can come
   * a little before SQS_DOWN_AFTER is up. Still failing: wait the rest.
   */
  left = s->fail_since + SQS_DOWN_AFTER - sqs_mono(s);
  if (s->failing != 0 && left > 0)
    sqs_timer_set(s, s->health_timer, left);
  sqs_leave(s);
}

/* --- calls ---------------------------------------------------------------- */

int sqs_call_sqs(sqs *s, const char *action, json_t *params, double timeout,
                 cf__aws_cb cb, void *ud, cf__http_xfer **xfer) {
  int rv = cf__aws_sqs(s->aws, action, params, timeout, cb, ud, xfer);

  if (rv == CF_OK)
    s->requests++;
  return rv;
}

int sqs_call_sns(sqs *s, const char *action, const cf__aws_param *params,
                 size_t n, double timeout, cf__aws_cb cb, void *ud,
                 cf__http_xfer **xfer) {
  int rv = cf__aws_sns(s->aws, action, params, n, timeout, cb, ud, xfer);

  if (rv == CF_OK)
    s->requests++;
  return rv;
}

void sqs_count_result(sqs *s, const cf__aws_result *r) {
  if (r->error == CF_OK)
    return;
  s->request_errors++;
  /* No answer at all: the service may come back without our queue. */
  if (r->status == 0 && (r->error == CF_ERR_IO || r->error == CF_ERR_TIMEOUT))
    sqs_setup_verify(s);
}

/* --- lifecycle ------------------------------------------------------------ */

static void hold_clear(sqs *s) {
  s->send_hold = 0;
  sqs_timer_set(s, s->hold_timer, -1.0);
}

void sqs_on_ready(sqs *s) {
  int failed = (s->failing & SQS_P_SETUP) != 0;

  if (!s->ready) {
    sqs_recv_stop(s);
    sqs_maint_stop(s);
    return;
  }
  /* A fresh setup: earlier failures were about what it replaced. */
  s->failing &= ~(unsigned)(SQS_P_SETUP | SQS_P_RECV | SQS_P_SEND);
  if (s->failing == 0)
    sqs_timer_set(s, s->health_timer, -1.0);
  if ((s->was_ready || failed) && s->phase == SQS_RUNNING) {
    /* Peers that lost their subscription too, or that waited for the
     * service as we did at start, need a moment to make one; what we
     * publish before that would miss them. */
    s->send_hold = 1;
    sqs_timer_set(s, s->hold_timer, SQS_RESUBSCRIBE_GRACE);
  }
  s->was_ready = 1;
  sqs_update_state(s);
  if (s->phase == SQS_RUNNING) {
    sqs_recv_start(s);
    sqs_maint_start(s);
  }
  sqs_send_resume(s);
}

static void on_hold_timer(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  s->send_hold = 0;
  sqs_send_resume(s);
  sqs_leave(s);
}

static void on_creds(int error, const char *msg, void *ud) {
  sqs *s = ud;

  sqs_enter(s);
  if (error != CF_OK) {
    char text[sizeof(s->errmsg)];
    snprintf(text, sizeof(text), "credentials: %s",
             msg != NULL && msg[0] ? msg : cf_strerror(error));
    fail_text(s, SQS_P_CREDS, text);
  } else {
    sqs_ok(s, SQS_P_CREDS);
    if ((s->phase == SQS_RUNNING || s->phase == SQS_DRAINING) &&
        !s->ready)
      sqs_setup_begin(s);
  }
  sqs_leave(s);
}

static int sqs_start(void *impl) {
  sqs *s = impl;
  int rv;

  if (s->phase != SQS_IDLE && s->phase != SQS_STOPPED)
    return CF_ERR_STATE;
  if (s->phase == SQS_IDLE) {
    rv = cf__aws_start(s->aws, on_creds, s);
    if (rv != CF_OK)
      return rv;
  }
  s->phase = SQS_RUNNING;
  s->ready = s->was_ready = 0;
  s->failing = 0;
  cf_queue_report_state(s->q, CF_QUEUE_STARTING);
  if (cf__aws_ready(s->aws))
    sqs_setup_begin(s);
  return CF_OK;
}

/* Flush, step 2: whatever happens to sends, stop receiving and leave. */
void sqs_check_drained(sqs *s) {
  if (s->phase != SQS_DRAINING || !sqs_send_idle(s))
    return;
  sqs_timer_set(s, s->flush_timer, -1.0);
  sqs_teardown_begin(s);
}

static void on_flush_timer(void *arg) {
  sqs *s = arg;

  sqs_enter(s);
  if (s->phase == SQS_DRAINING) {
    sqs_send_drop_all(s);
    sqs_check_drained(s);
  }
  sqs_leave(s);
}

static int sqs_flush(void *impl, double timeout) {
  sqs *s = impl;
  double now = sqs_mono(s);

  switch (s->phase) {
  case SQS_IDLE:
  case SQS_STOPPED:
    return CF_OK;
  case SQS_DRAINING:
    /* A second flush may only shorten the wait. */
    if (now + timeout < s->flush_deadline) {
      s->flush_deadline = now + timeout;
      sqs_timer_set(s, s->flush_timer, timeout);
    }
    return CF_OK;
  case SQS_TEARDOWN:
    return CF_OK;
  default:
    break;
  }
  s->phase = SQS_DRAINING;
  s->flush_deadline = now + timeout;
  sqs_recv_stop(s);
  sqs_maint_stop(s);
  hold_clear(s);
  sqs_timer_set(s, s->flush_timer, timeout);
  sqs_send_resume(s);
  sqs_check_drained(s);
  return CF_OK;
}

static void sqs_destroy(void *impl) {
  sqs *s = impl;
  cf_mem mem = s->mem;

  /* First: it cancels every call, so no callback sees the state below
   * half freed, and the handles we keep become dead. */
  cf__aws_free(s->aws);
  sqs_recv_free(s);
  sqs_send_free(s);
  sqs_maint_free(s);
  sqs_setup_free(s);
  s->loop.timer_free(s->loop.data, s->health_timer);
  s->loop.timer_free(s->loop.data, s->flush_timer);
  s->loop.timer_free(s->loop.data, s->hold_timer);
  cf__free(&mem, s);
}

static const char *sqs_errmsg(void *impl) {
  return ((sqs *)impl)->errmsg;
}

static void sqs_stats(void *impl, cf_queue_stats *st) {
  sqs *s = impl;

  st->requests = s->requests;
  st->request_errors = s->request_errors;
  st->retries = s->retries;
  st->buffered_bytes = s->buffered;
  st->dropped = s->dropped;
}

static const cf_queue_ops sqs_ops = {
  .version = CF_QUEUE_OPS_VERSION,
  .name = "sqs",
  .start = sqs_start,
  .publish = sqs_publish,
  .flush = sqs_flush,
  .destroy = sqs_destroy,
  .errmsg = sqs_errmsg,
  .stats = sqs_stats,
};

/* --- configuration -------------------------------------------------------- */

static void say(char *msg, size_t len, const char *text) {
  if (msg != NULL && len > 0)
    snprintf(msg, len, "%s", text);
}

static int cluster_ok(const char *c, int fifo) {
  size_t i, n = strlen(c);
  /* Room for "-" + 16 hex (+ ".fifo") within SQS's 80 characters. */
  size_t max = SQS_QUEUE_NAME_MAX - 17 - (fifo ? 5 : 0);

  if (n == 0 || n > SQS_CLUSTER_MAX || n > max)
    return 0;
  for (i = 0; i < n; i++) {
    char ch = c[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
      return 0;
  }
  return 1;
}

/* Zero takes the default; otherwise v must be in [lo, hi] (not NaN). */
static int pick(double *out, double v, double def, double lo, double hi) {
  if (v == 0.0) {
    *out = def;
    return 1;
  }
  *out = v;
  return v >= lo && v <= hi;
}

static int config_numbers(sqs *s, const cf_sqs_config *c, char *msg,
                          size_t len) {
  s->npollers = c->pollers ? c->pollers : SQS_POLLERS_DEFAULT;
  s->wait_seconds = c->wait_seconds ? c->wait_seconds : SQS_WAIT_DEFAULT;
  s->max_buffer = c->max_buffer ? c->max_buffer : SQS_BUFFER_DEFAULT;
  s->retention = c->retention ? c->retention : SQS_RETENTION_DEFAULT;
  if (s->npollers > SQS_MAX_POLLERS || s->wait_seconds > 20 ||
      s->retention < SQS_RETENTION_MIN || s->retention > SQS_RETENTION_MAX) {
    say(msg, len, "pollers must be 1..16, wait_seconds 0..20, retention "
                  "60..1209600");
    return CF_ERR_INVALID;
  }
  if (!pick(&s->linger, c->linger, SQS_LINGER_DEFAULT, 0.0, 10.0) ||
      !pick(&s->interval, c->interval, SQS_INTERVAL_DEFAULT, 0.0, 10.0) ||
      !pick(&s->reorder_window, c->reorder_window, SQS_REORDER_DEFAULT,
            0.001, 60.0) ||
      !pick(&s->peer_refresh, c->peer_refresh, SQS_PEER_REFRESH_DEFAULT,
            0.01, 86400.0) ||
      !pick(&s->heartbeat, c->heartbeat, SQS_HEARTBEAT_DEFAULT, 0.01,
            86400.0) ||
      !pick(&s->stale_after, c->stale_after, SQS_STALE_DEFAULT, 0.01,
            1e9)) {
    say(msg, len, "linger, interval, reorder_window, peer_refresh, "
                  "heartbeat or stale_after out of range");
    return CF_ERR_INVALID;
  }
  if (s->stale_after <= s->heartbeat) {
    say(msg, len, "stale_after must be more than heartbeat");
    return CF_ERR_INVALID;
  }
  return CF_OK;
}

static int config_apply(sqs *s, const cf_sqs_config *c, char *msg,
                        size_t len) {
  const char *cluster = c->cluster ? c->cluster : "chatfanout";

  if (c->topology != CF_SQS_SNS && c->topology != CF_SQS_QUEUES) {
    say(msg, len, "unknown topology");
    return CF_ERR_INVALID;
  }
  if (c->fifo && c->topology != CF_SQS_SNS) {
    say(msg, len, "fifo needs the sns topology");
    return CF_ERR_INVALID;
  }
  if (c->instance_id == 0) {
    say(msg, len, "instance_id is required");
    return CF_ERR_INVALID;
  }
  s->topology = c->topology;
  s->fifo = c->fifo != 0;
  s->self = c->instance_id;
  if (!cluster_ok(cluster, s->fifo)) {
    say(msg, len, "cluster must be 1..63 characters of A-Z a-z 0-9 - _ "
                  "(58 with fifo)");
    return CF_ERR_INVALID;
  }
  snprintf(s->cluster, sizeof(s->cluster), "%s", cluster);
  snprintf(s->prefix, sizeof(s->prefix), "%s-", cluster);
  snprintf(s->qname, sizeof(s->qname), "%s-%016llx%s", cluster,
           (unsigned long long)c->instance_id, s->fifo ? ".fifo" : "");
  return config_numbers(s, c, msg, len);
}

static int timers_new(sqs *s) {
  s->health_timer = s->loop.timer_new(s->loop.data, on_health_timer, s);
  s->flush_timer = s->loop.timer_new(s->loop.data, on_flush_timer, s);
  s->hold_timer = s->loop.timer_new(s->loop.data, on_hold_timer, s);
  if (!s->health_timer || !s->flush_timer || !s->hold_timer)
    return CF_ERR_NOMEM;
  return CF_OK;
}

static int parts_init(sqs *s, const cf_sqs_config *c, char *msg,
                      size_t len) {
  cf__aws_overrides ov = {c->region, c->profile, c->endpoint_sqs,
                          c->endpoint_sns};
  int rv;

  rv = timers_new(s);
  if (rv == CF_OK)
    rv = sqs_setup_init(s);
  if (rv == CF_OK)
    rv = sqs_send_init(s);
  if (rv == CF_OK)
    rv = sqs_recv_init(s);
  if (rv == CF_OK)
    rv = sqs_maint_init(s);
  if (rv != CF_OK) {
    say(msg, len, "out of memory");
    return rv;
  }
  return cf__aws_new(&s->aws, &s->loop, &ov, c->envp, &s->mem, msg, len);
}

/* Frees a half-made s (no wrapper yet). */
static void sqs_abandon(sqs *s) {
  sqs_destroy(s);
}

int cf_queue_sqs_new(cf_queue **out, const cf_loop *loop,
                     const cf_sqs_config *cfg, const cf_mem *mem,
                     char *errmsg, size_t msglen) {
  cf_sqs_config v1 = {0};
  cf_mem m;
  sqs *s;
  int rv;

  if (out == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  say(errmsg, msglen, "");
  if (loop == NULL || cfg == NULL) {
    say(errmsg, msglen, "loop and configuration are required");
    return CF_ERR_INVALID;
  }
  /* A caller built for version 1 has a shorter struct: only that much
   * of it may be read, and interval takes its default. */
  if (cfg->version == 1u) {
    memcpy(&v1, cfg, offsetof(cf_sqs_config, interval));
    cfg = &v1;
  } else if (cfg->version != CF_SQS_CONFIG_VERSION) {
    say(errmsg, msglen, "unsupported configuration version");
    return CF_ERR_VERSION;
  }
  if ((rv = cf_loop_check(loop)) != CF_OK) {
    say(errmsg, msglen, "incomplete loop hooks");
    return rv;
  }
  cf__mem_init(&m, mem);
  s = cf__calloc(&m, 1, sizeof(*s));
  if (s == NULL)
    return CF_ERR_NOMEM;
  s->mem = m;
  s->loop = *loop;
  /* Lists first: a failed creation frees through the common path. */
  cf_list_init(&s->pending);
  cf_list_init(&s->jobs);
  cf_list_init(&s->dels);
  cf_list_init(&s->peers);
  /* Wall time: differs between restarts (and hosts), unlike uptime. */
  cf__sqs_rng_seed(&s->rng, cfg->instance_id ^
                                (uint64_t)(sqs_wall(s) * 1e6));
  rv = config_apply(s, cfg, errmsg, msglen);
  if (rv == CF_OK)
    rv = parts_init(s, cfg, errmsg, msglen);
  if (rv != CF_OK) {
    sqs_abandon(s);
    return rv;
  }
  /* From here on the wrapper owns s (and frees it on failure). */
  rv = cf_queue_new(&s->q, &sqs_ops, s, &m);
  if (rv != CF_OK)
    return rv;
  *out = s->q;
  return CF_OK;
}
