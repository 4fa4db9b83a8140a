/*
 * Internal: the SQS/SNS backend's state, shared by its files.
 *
 *   cf_sqs.c        creation, ops table, lifecycle, health and state
 *   cf_sqs_setup.c  topic/queue/subscription setup and teardown
 *   cf_sqs_send.c   publish buffer, batches, sends and their retries
 *   cf_sqs_recv.c   long polls, decoding, reordering, deletes
 *   cf_sqs_maint.c  heartbeat, reaper, peer discovery (queues topology)
 *
 * Lifecycle (s->phase):
 *
 *   IDLE --start--> RUNNING --flush--> DRAINING --> TEARDOWN --> STOPPED
 *                                                      (start again: RUNNING)
 *
 * Within RUNNING and DRAINING, s->ready says whether the setup sequence
 * has completed (topic, queue and subscription exist as far as we know).
 * A "not found" on any of them clears ready and runs the setup again;
 * sends park and pollers stop meanwhile. Pollers and maintenance run only
 * while RUNNING and ready; sends while ready (RUNNING or DRAINING) and
 * not verifying: after the service was unreachable, sends wait for one
 * look at our queue (SQS_ST_VERIFY), since a service that restarted
 * empty lost the peers' subscriptions too, and a topic re-created by the
 * fastest peer would take our messages before the others re-subscribe.
 *
 * Health: each part (credentials, setup, send, receive) that fails sets
 * its bit in s->failing; the state reported is DEGRADED while any bit is
 * set and DOWN once some bit has been set for SQS_DOWN_AFTER seconds,
 * UP when none is and ready, STARTING before the first setup completes.
 *
 * Re-entrancy: every entry from the loop (timer, call completion)
 * brackets its work with sqs_enter()/sqs_leave(), because any report
 * may free the queue; the free then runs at the leave, and code between
 * checks sqs_freeing() before touching more state.
 */
#ifndef CF_SQS_INT_H
#define CF_SQS_INT_H

#include <chatfanout/cf_queue_sqs.h>

#include "cf_aws.h"
#include "cf_list.h"
#include "cf_queue_int.h"
#include "cf_sqs_backoff.h"
#include "cf_sqs_batch.h"
#include "cf_sqs_reorder.h"

#define SQS_MAX_POLLERS 16u
/* Failing this long turns DEGRADED into DOWN (seconds). */
#define SQS_DOWN_AFTER 30.0
/* Retry waits: first ceiling and cap, seconds. The cap also bounds how
 * long an instance takes to notice the service is back. */
#define SQS_RETRY_BASE 0.05
#define SQS_RETRY_CAP 2.0
/* After setup had to run again (the service lost our resources), sends
 * wait this long so that peers can re-subscribe first. */
#define SQS_RESUBSCRIBE_GRACE (SQS_RETRY_CAP + 1.0)
/* Timeout of short calls (setup, sends, deletes), seconds. */
#define SQS_CALL_TIMEOUT 20.0
/* Timeout of each teardown call on flush, seconds. */
#define SQS_TEARDOWN_TIMEOUT 5.0

/* Queue name: cluster "-" 16 hex [".fifo"], at most 80 characters. */
#define SQS_QUEUE_NAME_MAX 80u
#define SQS_CLUSTER_MAX 64u

enum sqs_phase {
  SQS_IDLE = 0,   /* created, never started */
  SQS_RUNNING,    /* started: setup, then sending and receiving */
  SQS_DRAINING,   /* flush: sending what is buffered, not receiving */
  SQS_TEARDOWN,   /* flush: unsubscribing, deleting the own queue */
  SQS_STOPPED     /* flushed; may be started again */
};

/* Health parts (bits of s->failing). */
enum sqs_part {
  SQS_P_CREDS = 1u << 0,
  SQS_P_SETUP = 1u << 1,
  SQS_P_SEND = 1u << 2,
  SQS_P_RECV = 1u << 3
};

typedef struct sqs sqs;

typedef struct sqs_poller {
  sqs *s;
  cf__http_xfer *xfer;  /* the ReceiveMessage in flight, or NULL */
  void *timer;          /* retry wait */
  int waiting;          /* timer armed */
  int probe;            /* after a failure: poll without waiting first */
  int single;           /* last answer was too big: ask for one message */
  double last_start;    /* sqs_mono() when the last poll was sent */
  cf__sqs_backoff bo;
} sqs_poller;

/* Setup steps, in order (each topology skips what it does not use). */
enum sqs_step {
  SQS_ST_NONE = 0,
  SQS_ST_TOPIC,     /* CreateTopic */
  SQS_ST_QUEUE,     /* CreateQueue */
  SQS_ST_TAG,       /* TagQueue */
  SQS_ST_ARN,       /* GetQueueAttributes QueueArn */
  SQS_ST_SUBSCRIBE, /* Subscribe */
  SQS_ST_PEERS,     /* ListQueues (queues topology) */
  SQS_ST_DONE,
  SQS_ST_VERIFY     /* GetQueueAttributes: does our queue still exist? */
};

/* Maintenance round steps (heartbeat, then every few rounds a reap). */
enum sqs_mstep {
  SQS_M_IDLE = 0,
  SQS_M_TAG,        /* TagQueue heartbeat */
  SQS_M_SUBCHECK,   /* GetSubscriptionAttributes (sns) */
  SQS_M_LIST,       /* ListQueues prefix */
  SQS_M_TAGS,       /* ListQueueTags of candidates */
  SQS_M_DELETE,     /* DeleteQueue of a stale one */
  SQS_M_SUBS,       /* ListSubscriptionsByTopic */
  SQS_M_CHECKQ,     /* GetQueueUrl of a subscription's queue */
  SQS_M_UNSUB       /* Unsubscribe an orphan */
};

typedef struct sqs_peer {
  cf_list link;      /* in s->peers */
  double last_seen;  /* sqs_mono() of the last listing naming it */
  unsigned missed;   /* successful listings without it since then */
  int suspect;       /* its queue answered "not found": sends wait */
  double suspect_since; /* sqs_mono() when it became suspect */
  char url[];
} sqs_peer;

struct sqs {
  cf_mem mem;
  cf_loop loop;
  cf_queue *q;          /* the wrapper; set once created */
  cf__aws *aws;

  /* configuration */
  int topology;         /* CF_SQS_SNS / CF_SQS_QUEUES */
  int fifo;
  uint64_t self;        /* instance id */
  char cluster[SQS_CLUSTER_MAX + 1];
  char qname[SQS_QUEUE_NAME_MAX + 1];   /* own queue name */
  char prefix[SQS_CLUSTER_MAX + 2];     /* cluster "-" */
  double linger;
  double interval;      /* least time between batches, and between polls
                           of one poller, unless full */
  unsigned npollers;
  unsigned wait_seconds;
  size_t max_buffer;
  double reorder_window;
  double peer_refresh;
  double heartbeat;
  double stale_after;   /* compared with the wall-clock heartbeat tags */
  unsigned retention;

  /* lifecycle */
  int phase;            /* enum sqs_phase */
  int ready;            /* setup completed, resources believed present */
  int was_ready;        /* ready at least once since start */
  int send_hold;        /* sends wait for the re-subscribe grace */
  double flush_deadline; /* sqs_mono() by which the flush gives up */
  void *flush_timer;
  void *hold_timer;

  /* health */
  unsigned failing;     /* enum sqs_part bits */
  double fail_since;    /* sqs_mono() when the first bit was set */
  void *health_timer;
  char errmsg[256];
  uint64_t undecodable; /* received bodies that were not envelopes */

  /* setup */
  int step;             /* enum sqs_step; NONE when not running */
  cf__http_xfer *setup_xfer;
  void *setup_timer;
  cf__sqs_backoff setup_bo;
  char *topic_arn;
  char *queue_url;
  char *queue_arn;
  char *sub_arn;
  cf__http_xfer *teardown_xfer;

  /* sending */
  cf_list pending;      /* cf__sqs_msg.link, accepted, not batched */
  size_t pending_n, pending_bytes;
  size_t buffered;      /* bytes accepted and not yet done with */
  cf_list jobs;         /* sqs_job.link */
  size_t njobs;
  size_t njobs_inflight; /* of those, with a call in flight */
  void *linger_timer;
  int linger_armed;
  double last_batch;    /* sqs_mono() when the last batch left */

  /* receiving */
  sqs_poller pollers[SQS_MAX_POLLERS];
  cf__sqs_reorder *reorder;
  void *reorder_timer;
  cf_list dels;         /* sqs_del.link */

  /* maintenance */
  void *beat_timer;
  int mstep;            /* enum sqs_mstep */
  cf__http_xfer *maint_xfer;
  unsigned beats;       /* heartbeat rounds done */
  char **cand;          /* reaper: candidate queue URLs */
  size_t ncand, cand_i, cand_cursor;
  size_t cand_checked;  /* candidates looked at this round */
  unsigned reaped;      /* queues deleted or unsubscribed this round */
  json_t *subs;         /* reaper: subscriptions being checked */
  size_t sub_i;
  cf_list peers;        /* sqs_peer.link (queues topology) */
  size_t npeers;
  void *peer_timer;
  cf__http_xfer *peer_xfer;
  cf__sqs_backoff peer_bo;

  /* counters */
  uint64_t requests, request_errors, retries, dropped;
  cf__sqs_rng rng;
};

/* --- cf_sqs.c ---------------------------------------------------------- */

void sqs_enter(sqs *s);
/* Returns 1 when s was destroyed: touch nothing after. */
int sqs_leave(sqs *s);
int sqs_freeing(const sqs *s);
/*
 * The two clocks (see cf_clock.h). sqs_wall(): the loop's wall clock,
 * seconds since the epoch, only for values that mean a date (request
 * signing, the heartbeat tag and its comparison with peers' tags, the
 * random seed). sqs_mono(): monotonic seconds, for every interval,
 * pacing, timeout and "since" time, so that a step of the wall clock
 * neither stalls nor rushes them.
 */
double sqs_wall(const sqs *s);
double sqs_mono(const sqs *s);
void sqs_timer_set(sqs *s, void *timer, double after);

/* Health: part failed (detail says what, from r when given). */
void sqs_fail(sqs *s, unsigned part, const char *what,
              const cf__aws_result *r);
void sqs_ok(sqs *s, unsigned part);
void sqs_update_state(sqs *s);
void sqs_set_errmsg(sqs *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Sends a call and counts it; cb runs later unless this fails. */
int sqs_call_sqs(sqs *s, const char *action, json_t *params, double timeout,
                 cf__aws_cb cb, void *ud, cf__http_xfer **xfer);
int sqs_call_sns(sqs *s, const char *action, const cf__aws_param *params,
                 size_t n, double timeout, cf__aws_cb cb, void *ud,
                 cf__http_xfer **xfer);
/* Counts a completed call's outcome. */
void sqs_count_result(sqs *s, const cf__aws_result *r);

/* Duplicates a string with s's allocator; NULL when out of memory. */
char *sqs_strdup(sqs *s, const char *str);
void sqs_strfree(sqs *s, char **p);

/* Nonzero when name (a queue name) is some instance's of this cluster. */
int sqs_is_member_queue(const sqs *s, const char *name);
/* The name part of a queue URL or ARN (after the last '/' or ':'). */
const char *sqs_tail(const char *url_or_arn, char sep);

/* The ready state changed; starts/stops what depends on it. */
void sqs_on_ready(sqs *s);
/* Flush: called when nothing is left to send. */
void sqs_check_drained(sqs *s);

/* --- cf_sqs_setup.c ---------------------------------------------------- */

int sqs_setup_init(sqs *s);
/* TagQueue parameters for the own queue, heartbeat = now. */
json_t *sqs_tag_params(sqs *s);

/* (Re)runs the setup from the first step; no-op when running. */
void sqs_setup_begin(sqs *s);
/*
 * The service was unreachable: it may have lost our resources (and
 * peers their subscriptions) meanwhile. Sends wait until a look at our
 * queue says whether the setup must run again.
 */
void sqs_setup_verify(sqs *s);
/* Our topic, queue or subscription vanished: set up again. */
void sqs_setup_lost(sqs *s, const char *what, const cf__aws_result *r);
void sqs_setup_cancel(sqs *s);
/* Flush is done sending: unsubscribe, delete the own queue, stop. */
void sqs_teardown_begin(sqs *s);
void sqs_setup_free(sqs *s);

/* --- cf_sqs_send.c ----------------------------------------------------- */

int sqs_send_init(sqs *s);
int sqs_publish(void *impl, const cf_envelope *env);
/* Forms batches from the buffer and sends while the window allows. */
void sqs_send_pump(sqs *s);
/* Sends parked batches again (setup completed or the grace ended). */
void sqs_send_resume(sqs *s);
/* Gives up everything buffered and in flight, counting it dropped. */
void sqs_send_drop_all(sqs *s);
int sqs_send_idle(const sqs *s);
/* A peer went away (queues topology): its batches are given up. */
void sqs_send_forget_peer(sqs *s, const char *url);
void sqs_send_free(sqs *s);

/* --- cf_sqs_recv.c ----------------------------------------------------- */

int sqs_recv_init(sqs *s);
void sqs_recv_start(sqs *s);
void sqs_recv_stop(sqs *s);
void sqs_recv_free(sqs *s);

/* --- cf_sqs_maint.c ---------------------------------------------------- */

int sqs_maint_init(sqs *s);
void sqs_maint_start(sqs *s);
void sqs_maint_stop(sqs *s);
void sqs_maint_free(sqs *s);
/* Queues topology: list peers now (setup's last step uses its result). */
/* What discovery thinks of the peer queue url. */
enum { SQS_PEER_UNKNOWN = 0, SQS_PEER_OK, SQS_PEER_SUSPECT };
int sqs_peer_state(const sqs *s, const char *url);
/* A send to url found no queue: hold its sends until the next listing
 * says whether the peer is back or gone. */
void sqs_peer_suspect(sqs *s, const char *url);
void sqs_peers_update(sqs *s, const json_t *data);
json_t *sqs_list_params(const sqs *s);

#endif /* CF_SQS_INT_H */
