/*
 * chatfanoutd: wires the config, the libev loop, the hub, the queue and
 * the server together, runs until SIGTERM/SIGINT, then drains and frees
 * everything. Exit status: 0 after a signal, 1 when startup fails, 2 for
 * a bad configuration.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include <chatfanout/adapters/cf_libev.h>
#include <chatfanout/cf_queue_sqs.h>
#include <chatfanout/chatfanout.h>

#include "cfd_batch.h"
#include "cfd_clock.h"
#include "cfd_config.h"
#include "cfd_ctx.h"
#include "cfd_frame.h"
#include "cfd_log.h"
#include "cfd_server.h"
#include "cfd_trim.h"
#include "cfd_ws.h"

extern char **environ;

/* Outbox bytes beyond --max-message-size that one message needs: its
 * frame header and the hub's per-entry accounting. */
#define CLIENT_BUFFER_SLACK 4096u

/* How often shutdown checks whether everything has drained. */
#define DRAIN_POLL 0.02

/* The backend's detail (errmsg) changes once per new failure, but a
 * foreign writer or a refusing service could change it often: a change
 * that comes without a state change is logged at most this often. */
#define DETAIL_LOG_INTERVAL 10.0

/* Share of --shutdown-timeout the queue gets to flush, so that its own
 * give-up (dropping what is left, reporting stopped) lands before the
 * daemon's deadline instead of racing it. */
#define FLUSH_SHARE 0.9

typedef struct cfd_daemon {
  cfd_ctx ctx;
  cf_loop cfloop;
  cf_queue_bus *bus;
  cf_queue *queue;
  cf_hub *hub;
  cfd_server *server;
  ev_signal sigterm;
  ev_signal sigint;
  ev_timer drain;   /* polls for the end of a shutdown */
  cfd_trim trim;    /* gives freed heap back after a storm */
  double stop_at;   /* cfd_mono_now() by which shutdown gives up */
  /* The hub owns the queue's callbacks, so state changes are noticed
   * after each loop iteration instead (every change happens inside some
   * loop callback). */
  ev_check queue_watch;
  int queue_state;  /* last state logged */
  char detail[256]; /* last errmsg logged */
  double detail_at; /* cfd_mono_now() when it was logged */
  int flush_rv;     /* cf_queue_flush() result; not CF_OK: do not wait */
} daemon_t;

static uint64_t wall_ms(void *ud) {
  struct timespec ts;
  (void)ud;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void log_cf_error(const char *what, int rv) {
  cfd_log(CFD_LOG_ERROR, what, "error", cf_strerror(rv), NULL);
}

static int fifo_mode(const cfd_config *cfg) {
  return strcmp(cfg->queue, "sqs") == 0 && cfg->sqs_fifo;
}

static int hub_open(daemon_t *d, const cfd_config *cfg) {
  cf_hub_config hc;
  int rv;
  memset(&hc, 0, sizeof(hc));
  hc.version = CF_HUB_CONFIG_VERSION;
  hc.client_buffer = cfg->client_buffer;
  /* The hub needs room for one whole framed message in an empty
   * outbox; a buffer smaller than that would close every client on the
   * first big message, so grow it by the framing slack. */
  if (hc.client_buffer < cfg->max_message_size + CLIENT_BUFFER_SLACK) {
    char sz[32];
    hc.client_buffer = cfg->max_message_size + CLIENT_BUFFER_SLACK;
    snprintf(sz, sizeof(sz), "%zu", hc.client_buffer);
    cfd_log(CFD_LOG_INFO, "client buffer raised to fit one message",
            "client_buffer", sz, NULL);
  }
  hc.max_message = cfg->max_message_size;
  hc.history = cfg->history;
  hc.history_bytes = cfg->history_bytes;
  hc.max_rooms = cfg->max_rooms;
  /* Raised with the client buffer: one full client must fit. */
  hc.outbound_budget = cfg->outbound_budget;
  if (hc.outbound_budget != 0 && hc.outbound_budget < hc.client_buffer)
    hc.outbound_budget = hc.client_buffer;
  hc.max_rooms_per_client = 1; /* a connection is in its one room */
  hc.framer = cfd_frame_hub_framer;
  hc.clock_ms = wall_ms;
  hc.instance_id = cfg->instance_id; /* 0: the hub picks a random one */
  /* SQS FIFO gives every instance one order per room; local clients see
   * it too only if own messages also wait for the queue to hand them
   * back instead of being delivered at publish. */
  if (fifo_mode(cfg))
    hc.flags |= CF_HUB_OWN_VIA_QUEUE;
  rv = cf_hub_new(&d->hub, &hc);
  if (rv == CF_ERR_INVALID) {
    /* The options are each in range, so it is their combination: every
     * message must fit in an empty client buffer. A config error. */
    fprintf(stderr, "chatfanoutd: --client-buffer (%zu) must be larger "
            "than --max-message-size (%zu) plus framing\n",
            cfg->client_buffer, cfg->max_message_size);
    return 2;
  }
  if (rv != CF_OK) {
    log_cf_error("cannot create hub", rv);
    return 1;
  }
  return 0;
}

static const char *empty_null(const char *s) {
  return s[0] != '\0' ? s : NULL;
}

/* The options map one to one; AWS_* variables are the library's. */
static void sqs_config_fill(cf_sqs_config *sc, const cfd_config *cfg,
                            uint64_t instance_id) {
  memset(sc, 0, sizeof(*sc));
  sc->version = CF_SQS_CONFIG_VERSION;
  sc->topology = cfg->sqs_topology;
  sc->fifo = cfg->sqs_fifo;
  sc->cluster = cfg->sqs_cluster;
  sc->instance_id = instance_id;
  sc->region = empty_null(cfg->sqs_region);
  sc->profile = empty_null(cfg->sqs_profile);
  sc->endpoint_sqs = empty_null(cfg->sqs_endpoint);
  sc->endpoint_sns = empty_null(cfg->sqs_endpoint);
  sc->linger = cfg->sqs_linger;
  sc->pollers = cfg->sqs_pollers;
  sc->wait_seconds = cfg->sqs_wait;
  sc->max_buffer = cfg->sqs_buffer;
  sc->reorder_window = cfg->sqs_reorder;
  sc->peer_refresh = cfg->sqs_peer_refresh;
  sc->heartbeat = cfg->sqs_heartbeat;
  sc->stale_after = cfg->sqs_stale_after;
  sc->retention = cfg->sqs_retention;
  sc->envp = NULL; /* the process environment */
}

static int queue_create(daemon_t *d, const cfd_config *cfg) {
  cf_sqs_config sc;
  char msg[256];
  int rv;
  if (strcmp(cfg->queue, "local") == 0) {
    rv = cf_queue_bus_new(&d->bus, NULL);
    if (rv == CF_OK)
      rv = cf_queue_local_new(&d->queue, d->bus, &d->cfloop, 0, NULL);
    if (rv != CF_OK)
      log_cf_error("cannot create queue", rv);
    return rv;
  }
  sqs_config_fill(&sc, cfg, cf_hub_instance_id(d->hub));
  msg[0] = '\0';
  rv = cf_queue_sqs_new(&d->queue, &d->cfloop, &sc, NULL, msg, sizeof(msg));
  if (rv != CF_OK)
    cfd_log(CFD_LOG_ERROR, "cannot create queue", "queue", cfg->queue,
            "error", cf_strerror(rv), "detail", msg, NULL);
  return rv;
}

static int queue_open(daemon_t *d, const cfd_config *cfg) {
  int rv = queue_create(d, cfg);
  if (rv != CF_OK)
    return -1;
  rv = cf_hub_attach_queue(d->hub, d->queue);
  if (rv == CF_OK)
    rv = cf_queue_start(d->queue);
  if (rv != CF_OK) {
    cfd_log(CFD_LOG_ERROR, "cannot start queue", "queue", cfg->queue,
            "error", cf_strerror(rv), "detail", cf_queue_errmsg(d->queue),
            NULL);
    return -1;
  }
  return 0;
}

/* A new backend detail while the state stays (say, messages the service
 * refused, or a body that was no envelope): once, rate-limited. */
static void queue_detail_log(daemon_t *d) {
  const char *msg = cf_queue_errmsg(d->queue);
  double now;
  if (msg[0] == '\0' || strncmp(msg, d->detail, sizeof(d->detail) - 1) == 0)
    return;
  now = cfd_mono_now();
  if (d->detail_at > 0 && now - d->detail_at < DETAIL_LOG_INTERVAL)
    return;
  cfd_log(CFD_LOG_WARN, "queue detail", "queue", cf_queue_name(d->queue),
          "state", cf_queue_state_name(d->queue_state), "detail", msg, NULL);
  snprintf(d->detail, sizeof(d->detail), "%s", msg);
  d->detail_at = now;
}

/* Logs each queue state change once, with the backend's detail when it
 * is in trouble; never per message. */
static void queue_watch_cb(struct ev_loop *loop, ev_check *w, int revents) {
  daemon_t *d = w->data;
  int st = cf_queue_state_get(d->queue);
  int trouble = st == CF_QUEUE_DOWN || st == CF_QUEUE_DEGRADED;
  int level = st == CF_QUEUE_DOWN ? CFD_LOG_ERROR
              : trouble           ? CFD_LOG_WARN
                                  : CFD_LOG_INFO;
  const char *msg = cf_queue_errmsg(d->queue);
  (void)loop;
  (void)revents;
  if (st == d->queue_state) {
    queue_detail_log(d);
    return;
  }
  if (trouble) {
    cfd_log(level, "queue state", "queue", cf_queue_name(d->queue), "state",
            cf_queue_state_name(st), "was", cf_queue_state_name(d->queue_state),
            "detail", msg, NULL);
    snprintf(d->detail, sizeof(d->detail), "%s", msg);
    d->detail_at = cfd_mono_now();
  } else {
    cfd_log(level, "queue state", "queue", cf_queue_name(d->queue), "state",
            cf_queue_state_name(st), "was", cf_queue_state_name(d->queue_state),
            NULL);
  }
  d->queue_state = st;
}

static void queue_watch_start(daemon_t *d, struct ev_loop *loop) {
  ev_check_init(&d->queue_watch, queue_watch_cb);
  d->queue_watch.data = d;
  d->queue_state = CF_QUEUE_STOPPED;
  /* Whatever creation noted is not news. */
  snprintf(d->detail, sizeof(d->detail), "%s", cf_queue_errmsg(d->queue));
  ev_check_start(loop, &d->queue_watch);
  /* Start may already have moved it (the local queue is up at once). */
  queue_watch_cb(loop, &d->queue_watch, 0);
}

/* Shutdown is over once no connection is left and the queue has
 * flushed, or when --shutdown-timeout runs out. */
static void drain_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  daemon_t *d = w->data;
  int qs = d->queue ? cf_queue_state_get(d->queue) : CF_QUEUE_STOPPED;
  /* A backend that is down may still get its buffer out if the service
   * comes back within the timeout, so only stopped ends the wait. */
  int queue_done = qs == CF_QUEUE_STOPPED || d->flush_rv != CF_OK;
  (void)revents;
  if ((d->ctx.n_http == 0 && d->ctx.n_ws == 0 && queue_done) ||
      cfd_mono_now() >= d->stop_at) {
    if (d->ctx.n_ws > 0 || d->ctx.n_http > 0 || !queue_done) {
      char ws[16], http[16];
      snprintf(ws, sizeof(ws), "%u", d->ctx.n_ws);
      snprintf(http, sizeof(http), "%u", d->ctx.n_http);
      cfd_log(CFD_LOG_WARN, "shutdown timeout", "clients", ws, "http", http,
              "queue", cf_queue_state_name(qs), NULL);
    }
    ev_timer_stop(loop, w);
    ev_break(loop, EVBREAK_ALL);
  }
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents) {
  daemon_t *d = w->data;
  const char *name = w->signum == SIGTERM ? "SIGTERM" : "SIGINT";
  (void)revents;
  if (d->ctx.stopping) {
    /* A second signal: stop waiting. */
    cfd_log(CFD_LOG_WARN, "stopping now", "signal", name, NULL);
    ev_break(loop, EVBREAK_ALL);
    return;
  }
  cfd_log(CFD_LOG_INFO, "stopping", "signal", name, NULL);
  d->ctx.stopping = 1;
  cfd_server_stop(d->server);
  cf_hub_close_all(d->hub);
  if (d->queue) {
    d->flush_rv = cf_queue_flush(d->queue,
                                 d->ctx.cfg->shutdown_timeout * FLUSH_SHARE);
    if (d->flush_rv != CF_OK)
      log_cf_error("cannot flush queue", d->flush_rv);
  }
  d->stop_at = cfd_mono_now() + d->ctx.cfg->shutdown_timeout;
  ev_timer_set(&d->drain, 0., DRAIN_POLL);
  ev_timer_start(loop, &d->drain);
}

static void signals_start(daemon_t *d, struct ev_loop *loop) {
  ev_signal_init(&d->sigterm, signal_cb, SIGTERM);
  d->sigterm.data = d;
  ev_signal_start(loop, &d->sigterm);
  ev_signal_init(&d->sigint, signal_cb, SIGINT);
  d->sigint.data = d;
  ev_signal_start(loop, &d->sigint);
  ev_init(&d->drain, drain_cb);
  d->drain.data = d;
}

/* The io_uring write batcher, as --io-uring says. */
static int batch_open(daemon_t *d, const cfd_config *cfg) {
  if (cfg->io_uring == CFD_URING_OFF) {
    cfd_log(CFD_LOG_INFO, "client writes", "io_uring", "off", NULL);
    return 0;
  }
  d->ctx.batch = cfd_batch_new();
  if (d->ctx.batch != NULL) {
    cfd_log(CFD_LOG_INFO, "client writes", "io_uring", "on", NULL);
    return 0;
  }
  cfd_log(cfg->io_uring == CFD_URING_ON ? CFD_LOG_ERROR : CFD_LOG_INFO,
          "client writes", "io_uring", "unavailable", "error",
          strerror(errno), NULL);
  return cfg->io_uring == CFD_URING_ON ? -1 : 0;
}

/* Frees in reverse order of creation; every part accepts NULL. */
static void teardown(daemon_t *d, struct ev_loop *loop) {
  ev_signal_stop(loop, &d->sigterm);
  ev_signal_stop(loop, &d->sigint);
  ev_timer_stop(loop, &d->drain);
  cfd_trim_stop(&d->trim, loop);
  ev_check_stop(loop, &d->queue_watch);
  cfd_server_free(d->server);
  cfd_ws_free_all(&d->ctx);
  cfd_batch_free(d->ctx.batch);
  if (d->hub && d->queue)
    cf_hub_attach_queue(d->hub, NULL);
  cf_queue_free(d->queue);
  cf_queue_bus_free(d->bus);
  cf_hub_free(d->hub);
}

static int run(const cfd_config *cfg) {
  struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
  daemon_t d;
  int rc = 1;
  if (loop == NULL) {
    cfd_log(CFD_LOG_ERROR, "cannot create event loop", NULL);
    return 1;
  }
  memset(&d, 0, sizeof(d));
  cf_libev_init(&d.cfloop, loop);
  cfd_metrics_init(&d.ctx.metrics);
  d.ctx.loop = loop;
  d.ctx.cfg = cfg;
  signals_start(&d, loop);
  rc = hub_open(&d, cfg);
  if (rc == 0) {
    char id[17];
    snprintf(id, sizeof(id), "%016llx",
             (unsigned long long)cf_hub_instance_id(d.hub));
    cfd_log(CFD_LOG_INFO, "starting", "version", cf_version_string(),
            "queue", cfg->queue, "instance", id, NULL);
  }
  if (rc == 0 && batch_open(&d, cfg) != 0)
    rc = 1;
  if (rc == 0 && queue_open(&d, cfg) != 0)
    rc = 1;
  if (rc == 0) {
    queue_watch_start(&d, loop);
    rc = 1;
    d.ctx.hub = d.hub;
    d.ctx.queue = d.queue;
    if (cfd_server_new(&d.server, &d.ctx) == 0) {
      cfd_trim_start(&d.trim, loop);
      ev_run(loop, 0);
      rc = 0;
    }
  }
  teardown(&d, loop);
  ev_loop_destroy(loop);
  if (rc != 2)
    cfd_log(rc == 0 ? CFD_LOG_INFO : CFD_LOG_ERROR,
            rc == 0 ? "stopped" : "startup failed", NULL);
  return rc;
}

/*
 * A parent may start us with SIGTERM/SIGINT blocked (the mask is
 * inherited across exec); libev does not unblock them, so a blocked stop
 * signal would stay pending forever and the daemon could not be stopped.
 */
static void unblock_stop_signals(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int main(int argc, char **argv) {
  cfd_config cfg;
  char err[512];
  int rv, rc;
  err[0] = '\0';
  rv = cfd_config_parse(&cfg, argc, argv, environ, stdout, err, sizeof(err));
  if (rv != CFD_CONFIG_OK) {
    if (rv != CFD_CONFIG_EXIT)
      fprintf(stderr, "chatfanoutd: %s\n", err);
    cfd_config_free(&cfg);
    return rv == CFD_CONFIG_EXIT ? 0 : 2;
  }
  cfd_log_setup(cfg.log_level, cfg.log_format);
  signal(SIGPIPE, SIG_IGN);
  unblock_stop_signals();
  rc = run(&cfg);
  cfd_config_free(&cfg);
  return rc;
}
