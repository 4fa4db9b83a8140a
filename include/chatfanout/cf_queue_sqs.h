/*
 * libchatfanout - the Amazon SQS/SNS queue backend.
 *
 * Links hub instances through AWS (or an SQS/SNS-compatible endpoint) so
 * that every instance receives every message of the cluster once:
 *
 *  - CF_SQS_SNS (default): one SNS topic per cluster; each instance owns
 *    an SQS queue subscribed to it with raw message delivery. Publishes
 *    go to the topic in PublishBatch calls.
 *  - CF_SQS_QUEUES: no SNS; each instance owns a queue named by a shared
 *    prefix, finds its peers with ListQueues and sends every message to
 *    every peer queue in SendMessageBatch calls.
 *  - fifo (with CF_SQS_SNS): FIFO topic and queues, MessageGroupId = room,
 *    so every instance sees one order per room; an instance's own
 *    messages then also come back through its queue.
 *
 * Envelopes travel in the JSON wire form of cf_queue.h. Receives are long
 * polls; duplicates are dropped by the hub, and in standard mode each
 * origin's order is restored with a short reorder window. Credentials,
 * region and endpoints are found as AWS SDKs find them (environment,
 * shared files, container credentials, EC2 IMDSv2).
 *
 * HTTP runs on libcurl's multi-socket interface driven by the cf_loop:
 * nothing blocks the loop. The queue belongs to the loop's thread.
 */
#ifndef CHATFANOUT_CF_QUEUE_SQS_H
#define CHATFANOUT_CF_QUEUE_SQS_H

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>
#include <chatfanout/cf_queue.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cf_sqs_topology {
  CF_SQS_SNS = 0,   /* SNS topic fan-out to per-instance queues */
  CF_SQS_QUEUES = 1 /* SendMessageBatch to every peer queue */
} cf_sqs_topology;

/*
 * Configuration; copied by cf_queue_sqs_new() (strings too). Zero/NULL
 * fields take the defaults given.
 *
 *   cf_sqs_config c = {.version = CF_SQS_CONFIG_VERSION,
 *                      .cluster = "chat-prod",
 *                      .instance_id = cf_hub_instance_id(hub)};
 *   rv = cf_queue_sqs_new(&q, &loop, &c, NULL);
 */
#define CF_SQS_CONFIG_VERSION 2u /* 2 added interval; 1 is still taken */
typedef struct cf_sqs_config {
  uint32_t version;      /* CF_SQS_CONFIG_VERSION */
  int topology;          /* cf_sqs_topology */
  int fifo;              /* nonzero: FIFO topic and queues (SNS only) */
  const char *cluster;   /* topic name and queue prefix; "chatfanout";
                            1-63 of [A-Za-z0-9_-], 58 with fifo (queue
                            names are <cluster>-<16 hex id>[.fifo], at
                            most 80 characters) */
  uint64_t instance_id;  /* the hub's cf_hub_instance_id(); required */
  const char *region;    /* NULL: AWS_REGION, AWS_DEFAULT_REGION, the
                            profile's region, else "us-east-1" */
  const char *profile;   /* NULL: AWS_PROFILE, else "default" */
  const char *endpoint_sqs; /* NULL: AWS_ENDPOINT_URL_SQS,
                               AWS_ENDPOINT_URL, else AWS's */
  const char *endpoint_sns; /* likewise with _SNS */
  double linger;         /* seconds a publish waits for a batch; 0.005 */
  uint32_t pollers;      /* concurrent long polls, 1..16; 2 */
  uint32_t wait_seconds; /* long-poll wait, 1..20; 20 */
  size_t max_buffer;     /* bytes held while AWS is unreachable; 8 MiB */
  double reorder_window; /* seconds to wait for a missing seq; 0.5 */
  double peer_refresh;   /* CF_SQS_QUEUES: ListQueues period, s; 10 */
  double heartbeat;      /* seconds between heartbeat tags; 60 */
  double stale_after;    /* reap queues silent this long, s; 600;
                            more than heartbeat (a few heartbeats, so
                            that one late renewal reaps nothing) */
  uint32_t retention;    /* MessageRetentionPeriod, s, 60..; 300 */
  /* Environment for credential/region lookup, NULL-terminated "K=V";
   * NULL: the process environment, read at creation only. */
  char *const *envp;
  /* Under load, the least seconds between two batches sent, and between
   * two polls of one poller that got messages, unless the batch or the
   * answer was full; 0.05. At a low rate nothing waits for it; at a high
   * one it bounds the requests per second whatever the message rate
   * (messages share batches and bundles), for up to this much more
   * latency. */
  double interval;
} cf_sqs_config;

/*
 * Creates an SQS/SNS queue. loop is copied and must outlive q. Resolves
 * configuration and credentials sources now (reads the shared files);
 * nothing touches the network until cf_queue_start(). Errors about the
 * configuration are detailed in errmsg (msg, msglen; may be NULL).
 * Returns CF_OK, CF_ERR_INVALID, CF_ERR_VERSION, CF_ERR_NOMEM, or
 * CF_ERR_BACKEND (libcurl could not be set up).
 */
CF_API int cf_queue_sqs_new(cf_queue **out, const cf_loop *loop,
                            const cf_sqs_config *cfg, const cf_mem *mem,
                            char *errmsg, size_t msglen);

/*
 * Limits. A publish whose encoded envelope would exceed what SNS/SQS
 * accept (256 KiB per message and per batch) is refused with
 * CF_ERR_TOO_BIG and nothing is sent anywhere; the hub then delivers it
 * nowhere either. Binary payloads grow by a third in base64.
 *
 * Behaviour.
 *  - States: STARTING until the topic, queue and subscription are set
 *    up; UP; DEGRADED while calls fail and are retried (with backoff and
 *    jitter, for ever); DOWN once failures have lasted 30 s. errmsg says
 *    what failed, written once when a failure starts (and once for the
 *    first received message that is not an envelope), not per retry.
 *  - Publish never blocks nor calls back. Accepted envelopes wait in a
 *    buffer of max_buffer bytes (their encoded size) until the service
 *    takes them; when it is full, publish returns CF_ERR_QUEUE_FULL.
 *    From cf_queue_flush() until a new start it returns CF_ERR_CLOSED.
 *  - A topic, queue or subscription found missing (the service lost
 *    them) is set up again, and publishing resumes a few seconds later
 *    (so that the other instances can re-subscribe first). Until an
 *    instance has re-subscribed, what others publish does not reach it.
 *  - fifo: a room's messages reach every instance in one order, at the
 *    price of one PublishBatch in flight per instance (at most 10
 *    messages per round trip to SNS) and of the FIFO quotas of SNS and
 *    SQS, far below the standard ones (by default some hundreds of
 *    messages per second per topic; see the AWS quotas pages). Each
 *    instance also receives its own messages back, doubling receives.
 *  - cf_queue_flush(q, t): stops receiving, sends what is buffered for
 *    at most t seconds (then counts the rest in stats.dropped), then
 *    unsubscribes and deletes the own queue (one try each, up to 5 s)
 *    and reports CF_QUEUE_STOPPED from the loop. The queue may then be
 *    started again. Queues of instances that died are deleted by the
 *    others once their heartbeat tag is older than stale_after.
 *  - Stats: requests, request_errors, retries, buffered_bytes, dropped.
 */

#ifdef __cplusplus
}
#endif

#endif /* CHATFANOUT_CF_QUEUE_SQS_H */
