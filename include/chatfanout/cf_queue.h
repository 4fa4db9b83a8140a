/*
 * libchatfanout - the queue interface that links hub instances.
 *
 * A cf_queue carries envelopes between instances. It is a small object
 * wrapping a backend: an ops table (start, publish, flush, destroy) plus
 * the backend's private state. The backend reports what it receives and
 * how it is doing through the callbacks set with cf_queue_set_callbacks()
 * (a hub sets them when the queue is attached to it).
 *
 * Backends shipped: "local" (in-process, below) and, later, "sqs".
 * Delivery between instances is at-least-once; receivers drop duplicates
 * by envelope id (the hub does this).
 */
#ifndef CHATFANOUT_CF_QUEUE_H
#define CHATFANOUT_CF_QUEUE_H

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Message kinds, in cf_envelope.flags and cf_hub_publish() flags. */
#define CF_MSG_TEXT 0x0u   /* UTF-8 text */
#define CF_MSG_BINARY 0x1u /* arbitrary bytes */
#define CF_MSG_KIND_MASK 0x1u
#define CF_MSG_RAW 0x100u  /* transport bytes from cf_client_send() */

/* Longest room name in bytes. */
#define CF_ROOM_MAX 64u

/*
 * The envelope: one chat message as it travels between instances.
 * Its id is the pair (origin, seq), unique across a cluster. Every pointer
 * is borrowed: valid only for the duration of the call it is passed to.
 *
 * Wire form (used by network backends, documented in the README): one JSON
 * object {"v":1,"id":"<origin hex16>-<seq>","origin":"<hex16>","seq":N,
 * "ts":<ms>,"room":"...","type":"text"|"binary","data":"..."}; binary
 * payloads are base64 in "data".
 */
typedef struct cf_envelope {
  uint64_t origin;  /* instance id of the publisher, never 0 */
  uint64_t seq;     /* per-origin sequence number, from 1, increasing */
  uint64_t ts_ms;   /* publish time, ms since the epoch; 0 if unknown */
  const char *room; /* room name, not NUL-terminated */
  size_t room_len;  /* 1..CF_ROOM_MAX */
  uint32_t flags;   /* CF_MSG_TEXT or CF_MSG_BINARY */
  const void *data; /* payload; may be NULL when len is 0 */
  size_t len;       /* payload bytes */
} cf_envelope;

/* Backend states reported through cf_queue_callbacks.on_state. */
typedef enum cf_queue_state {
  CF_QUEUE_STOPPED = 0,  /* not started, or stopped after flush */
  CF_QUEUE_STARTING = 1, /* setting up (creating queues, subscribing) */
  CF_QUEUE_UP = 2,       /* publishing and receiving */
  CF_QUEUE_DEGRADED = 3, /* retrying after errors; publishes are buffered */
  CF_QUEUE_DOWN = 4      /* cannot reach the service; see errmsg */
} cf_queue_state;

/* Returns a static name for a state ("up", "down", ...). */
CF_API const char *cf_queue_state_name(int state);

typedef struct cf_queue cf_queue;

/*
 * What a queue reports. Copied by cf_queue_set_callbacks(). Callbacks run
 * on the loop thread, never from inside cf_queue_publish().
 */
#define CF_QUEUE_CALLBACKS_VERSION 1u
typedef struct cf_queue_callbacks {
  uint32_t version; /* CF_QUEUE_CALLBACKS_VERSION */
  /* An envelope arrived from another instance; env is borrowed. */
  void (*on_message)(cf_queue *q, const cf_envelope *env, void *user_data);
  /* The backend moved to state (a cf_queue_state). */
  void (*on_state)(cf_queue *q, int state, void *user_data);
} cf_queue_callbacks;

/*
 * Counters of a queue. The wrapper counts publishes and receives; a
 * network backend adds its request counters through ops.stats.
 */
typedef struct cf_queue_stats {
  uint64_t published;      /* envelopes publish accepted */
  uint64_t publish_errors; /* envelopes publish refused */
  uint64_t received;       /* envelopes reported to on_message */
  uint64_t requests;       /* network requests sent (0 for local) */
  uint64_t request_errors; /* requests that failed, retried or not */
  uint64_t retries;        /* requests sent again after a failure */
  uint64_t buffered_bytes; /* gauge: accepted, not yet sent */
  uint64_t dropped;        /* accepted envelopes given up on */
} cf_queue_stats;

/*
 * The backend's side. A backend fills one static table and passes it to
 * cf_queue_new(); the table is copied. `impl` is the backend's state.
 */
#define CF_QUEUE_OPS_VERSION 1u
typedef struct cf_queue_ops {
  uint32_t version;  /* CF_QUEUE_OPS_VERSION */
  const char *name;  /* "local", "sqs", ... static */
  /* Begin connecting/receiving. Returns CF_OK or an error code. */
  int (*start)(void *impl);
  /*
   * Queue env for the other instances. Must copy what it keeps and never
   * call callbacks synchronously. All or nothing: on error nothing is
   * kept. CF_ERR_QUEUE_FULL when the bounded outgoing buffer is full,
   * CF_ERR_TOO_BIG over the backend's message size, CF_ERR_INVALID for
   * what its wire form cannot carry, CF_ERR_CLOSED while flushing or
   * stopped if it refuses publishes then, CF_ERR_NOMEM.
   */
  int (*publish)(void *impl, const cf_envelope *env);
  /*
   * Send what is buffered, stop receiving, then report CF_QUEUE_STOPPED.
   * timeout is the most seconds to spend; pending data is dropped after.
   */
  int (*flush)(void *impl, double timeout);
  /* Free everything now; no callback runs after. */
  void (*destroy)(void *impl);
  /* Last error detail, static or owned by impl; never NULL. Optional. */
  const char *(*errmsg)(void *impl);
  /* Fills the backend's fields of st (requests .. dropped). Optional. */
  void (*stats)(void *impl, struct cf_queue_stats *st);
} cf_queue_ops;

/*
 * Wraps a backend. ops is copied; impl is owned by the queue from now on
 * (destroyed by ops->destroy in cf_queue_free, also when this fails with
 * anything but CF_ERR_INVALID/CF_ERR_VERSION). mem may be NULL (libc).
 * Returns CF_OK, CF_ERR_INVALID, CF_ERR_VERSION or CF_ERR_NOMEM.
 */
CF_API int cf_queue_new(cf_queue **out, const cf_queue_ops *ops, void *impl,
                        const cf_mem *mem);

/*
 * Frees q and its backend. Accepts NULL. Safe to call from a queue
 * callback: the free then happens when the callback returns.
 */
CF_API void cf_queue_free(cf_queue *q);

/* Sets the receivers of q's reports; cbs is copied. CF_ERR_VERSION when
 * cbs->version is unsupported, CF_ERR_INVALID for NULL. */
CF_API int cf_queue_set_callbacks(cf_queue *q, const cf_queue_callbacks *cbs,
                                  void *user_data);

/*
 * Starts the backend: it connects and receives until cf_queue_flush().
 * States are reported through on_state, possibly from inside this call.
 * A queue may be started again once it has reported CF_QUEUE_STOPPED.
 * Returns CF_OK; CF_ERR_INVALID (q NULL); CF_ERR_CLOSED (cf_queue_free()
 * is pending, called from a callback); CF_ERR_STATE (already started and
 * not stopped since, or the backend is still stopping); or the backend's
 * error (e.g. CF_ERR_NOMEM), after which q is not started.
 */
CF_API int cf_queue_start(cf_queue *q);

/*
 * Hands env to the backend for the other instances (see
 * cf_queue_ops.publish); env is borrowed for the call only. Never blocks
 * nor calls back; allowed before cf_queue_start(). All or nothing: on
 * error the envelope is not kept and reaches no one. Every call counts
 * in stats.published or stats.publish_errors.
 * Returns CF_OK;
 * CF_ERR_INVALID: q or env NULL, or env malformed (room NULL or not
 *   1..CF_ROOM_MAX bytes, origin or seq 0, flags not CF_MSG_TEXT or
 *   CF_MSG_BINARY, data NULL with len > 0); a network backend also
 *   refuses what its wire form cannot carry (seq or ts_ms over
 *   INT64_MAX, room bytes outside 0x21-0x7e, text that is not UTF-8);
 * CF_ERR_CLOSED: cf_queue_free() is pending, or the backend refuses
 *   publishes from cf_queue_flush() on (sqs: until started again);
 * CF_ERR_QUEUE_FULL: the bounded outgoing buffer is full (local: a
 *   receiver would go over its max_pending);
 * CF_ERR_TOO_BIG: the encoded envelope is over the backend's limit;
 * CF_ERR_NOMEM; or another error of the backend's (see its errmsg).
 */
CF_API int cf_queue_publish(cf_queue *q, const cf_envelope *env);

/*
 * Flushes and stops (see cf_queue_ops.flush): stops receiving, sends
 * what is buffered for at most timeout seconds, drops the rest, then
 * reports CF_QUEUE_STOPPED (local: first delivers what is pending for
 * q, all from inside this call; network backends: later, from the
 * loop). Flushing a queue not started, or already flushing, returns
 * CF_OK (a second flush may only shorten the wait).
 * Returns CF_OK; CF_ERR_INVALID (q NULL, timeout negative or NaN);
 * CF_ERR_CLOSED (cf_queue_free() is pending, called from a callback);
 * or the backend's error.
 */
CF_API int cf_queue_flush(cf_queue *q, double timeout);

/* Current state (a cf_queue_state). */
CF_API int cf_queue_state_get(const cf_queue *q);

/*
 * Copies q's counters into st; size is sizeof(cf_queue_stats) as the
 * caller knows it (newer libraries fill only that much). Fields the
 * backend does not keep read 0. Does nothing when q or st is NULL.
 */
CF_API void cf_queue_get_stats(const cf_queue *q, cf_queue_stats *st,
                               size_t size);

/* Backend name, e.g. "local". */
CF_API const char *cf_queue_name(const cf_queue *q);

/* Short detail of the last backend failure; "" when none. Never NULL. */
CF_API const char *cf_queue_errmsg(const cf_queue *q);

/*
 * For backend authors: report a received envelope or a state change to
 * the callbacks. Must be called from the loop thread, not from inside
 * publish. cf_queue_report_state ignores a state equal to the current one.
 * If a callback frees q, ops.destroy runs as the report call returns
 * (or as a running cf_queue_start/flush of q returns): a backend that
 * reports in a loop must notice (e.g. destroy sets a flag) and release
 * its state only once out of the loop.
 */
CF_API void cf_queue_report_message(cf_queue *q, const cf_envelope *env);
CF_API void cf_queue_report_state(cf_queue *q, int state);

/*
 * --- The local backend -------------------------------------------------
 *
 * A cf_queue_bus is an in-process meeting point: every local queue created
 * on one bus receives what the others publish (never its own messages).
 * With one queue on a bus it is the single-instance default; with several
 * hubs in one process it links them as a cluster would.
 *
 * Delivery is asynchronous: publish copies the envelope into the bus and
 * each receiving queue's loop timer delivers on the next loop iteration,
 * in publish order. With loop == NULL delivery instead happens in
 * cf_queue_bus_dispatch(), which the caller runs. A queue receives only
 * while started: from cf_queue_start() until cf_queue_flush(), which
 * delivers what is pending for it, then stops. It may publish any time.
 */
typedef struct cf_queue_bus cf_queue_bus;

/* Creates an empty bus. mem may be NULL. CF_OK, CF_ERR_NOMEM. */
CF_API int cf_queue_bus_new(cf_queue_bus **out, const cf_mem *mem);

/* Frees the bus. Every queue on it must be freed first (else
 * CF_ERR_STATE and nothing is freed). Accepts NULL. */
CF_API int cf_queue_bus_free(cf_queue_bus *bus);

/*
 * Delivers every pending envelope to the queues created with a NULL loop.
 * Returns how many deliveries were made. Safe against re-entrant publish:
 * envelopes published meanwhile are delivered in the same call.
 */
CF_API size_t cf_queue_bus_dispatch(cf_queue_bus *bus);

/*
 * Creates a local queue on bus. loop (copied) may be NULL, see above.
 * max_pending bounds the bytes waiting for delivery to this queue
 * (0 means 16 MiB); over it publish returns CF_ERR_QUEUE_FULL.
 * cf_queue_get_stats() reports those bytes as buffered_bytes.
 * Returns CF_OK, CF_ERR_INVALID, CF_ERR_VERSION, CF_ERR_NOMEM.
 */
CF_API int cf_queue_local_new(cf_queue **out, cf_queue_bus *bus,
                              const cf_loop *loop, size_t max_pending,
                              const cf_mem *mem);

#ifdef __cplusplus
}
#endif

#endif /* CHATFANOUT_CF_QUEUE_H */
