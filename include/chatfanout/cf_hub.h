/*
 * libchatfanout - the broadcast hub.
 *
 * A hub holds rooms and clients and moves messages between them. It does
 * no I/O and reads no clock: a transport (a WebSocket server, a test,
 * another C service) attaches clients through a small ops table and drains
 * each client's outbox when told there is something to send.
 *
 * Fan-out. cf_hub_publish() builds one reference-counted message: the
 * payload prefixed by the transport's frame header (written once by the
 * hub's framer, e.g. a ready WebSocket frame), and appends a reference to
 * it to the outbox of every client in the room. No per-recipient copy or
 * allocation is made. Every local client of a room gets the room's
 * messages in one and the same order. The message is first handed to the
 * attached queue (if any) for the other instances; envelopes arriving from
 * the queue are delivered locally once: duplicates (same origin and seq)
 * within the dedupe window and the instance's own messages are dropped
 * (with CF_HUB_OWN_VIA_QUEUE own messages go the queue's way instead).
 *
 * Backpressure. Each outbox is bounded in bytes (client_buffer). A client
 * that would go over it is a slow consumer: its queued whole messages are
 * dropped (a partly sent one is kept so the stream stays well-formed), it
 * gets no more messages, and ops.close is called with CF_CLOSE_SLOW. A
 * client whose outbox cannot grow for lack of memory is cut off the same
 * way, with CF_CLOSE_NOMEM.
 *
 * History. Each room keeps its last `history` messages for joiners. All
 * rooms together keep at most history_bytes: past it, history is dropped
 * from the least recently used rooms first (rooms without members before
 * rooms with members, each room's oldest messages first), and a room
 * left with neither members nor history is freed. A room is used when a
 * message is kept in it and when a client joins or leaves it.
 *
 * Re-entrancy. Callbacks (ops.wake, ops.close) run after the fan-out has
 * updated every outbox. From inside any callback it is safe to publish,
 * join, leave, free this or another client, close all, or free the hub
 * (the hub is then freed when the outermost hub call returns).
 *
 * Threads: a hub and its clients are used from one thread at a time.
 */
#ifndef CHATFANOUT_CF_HUB_H
#define CHATFANOUT_CF_HUB_H

#include <sys/uio.h>

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_queue.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cf_hub cf_hub;
typedef struct cf_client cf_client;
typedef struct cf_msg cf_msg;

/*
 * Why the hub asks a transport to close a client. A WebSocket transport
 * maps them to close codes 1008, 1001 and 1011 (internal error). Later
 * versions may add reasons: treat unknown ones like CF_CLOSE_NOMEM.
 */
typedef enum cf_close_reason {
  CF_CLOSE_SLOW = 1,     /* outbox over client_buffer: slow consumer */
  CF_CLOSE_SHUTDOWN = 2, /* cf_hub_close_all(): the service is stopping */
  /* The outbox could not grow for a message (out of memory): the client
   * would miss it, so it is cut off although it kept up. */
  CF_CLOSE_NOMEM = 3
} cf_close_reason;

/* Largest frame header a framer may write. */
#define CF_FRAME_HEADROOM_MAX 16u

/*
 * Writes the transport's header for a message of `len` payload bytes with
 * flags (CF_MSG_TEXT/BINARY) into buf, which has CF_FRAME_HEADROOM_MAX
 * bytes, and returns the bytes written (at most CF_FRAME_HEADROOM_MAX;
 * more makes the publish fail with CF_ERR_CALLBACK). Called once per
 * message.
 */
typedef size_t (*cf_framer_fn)(uint8_t *buf, uint32_t flags, size_t len,
                               void *user_data);

/*
 * Hub configuration; copied by cf_hub_new(). Zero fields take defaults.
 *
 *   cf_hub_config cfg = {.version = CF_HUB_CONFIG_VERSION,
 *                        .client_buffer = 256 * 1024,
 *                        .history = 50};
 *   cf_hub *hub;
 *   int rv = cf_hub_new(&hub, &cfg);
 */
/*
 * CF_HUB_OWN_VIA_QUEUE: a publish goes only to the attached queue, and
 * this instance's clients get it when the queue hands it back, like
 * every other instance's. Use it with a queue that gives all instances
 * one order (an SQS FIFO cluster), so that local clients see that order
 * too. Own-origin envelopes from the queue are then delivered (still
 * deduplicated), not dropped. Without a queue, publishes fail with
 * CF_ERR_STATE. The queue must hand an instance its own messages back:
 * the SQS backend in FIFO mode does; the local backend never does, so
 * over a local bus a publisher's own clients would never get its
 * messages. The framer then runs when the message comes back.
 */
#define CF_HUB_OWN_VIA_QUEUE 0x1u

/*
 * Version 2 added outbound_budget and max_rooms_per_client at the end;
 * cf_hub_new() still takes version 1 structs (without them: both 0).
 */
#define CF_HUB_CONFIG_VERSION 2u
typedef struct cf_hub_config {
  uint32_t version;      /* CF_HUB_CONFIG_VERSION */
  uint64_t instance_id;  /* this instance in the cluster; 0: random */
  /* Outbox bytes per client, each queued message counting 64 bytes
   * more; at least max_message + 80. 0: 1 MiB. */
  size_t client_buffer;
  size_t max_message;    /* payload bytes per message; 0: 64 KiB */
  uint32_t history;      /* messages kept per room for joiners; 0: none */
  uint32_t dedupe_window;/* ids remembered for dedupe; 0: 8192 */
  uint32_t max_rooms;    /* rooms held at once; 0: 100000 */
  /* Wire bytes of history kept across all rooms, each kept message
   * counting 256 bytes more; past it the least recently used rooms lose
   * their oldest history first, rooms without members before the others.
   * At least one largest message (max_message + 272). 0: 64 MiB, or
   * that least value if it is larger. */
  size_t history_bytes;
  uint32_t flags;        /* CF_HUB_* flags below; 0 for none */
  cf_framer_fn framer;   /* NULL: no header, wire bytes are the payload */
  /* Wall clock for envelope timestamps, ms since epoch; NULL: 0. */
  uint64_t (*clock_ms)(void *user_data);
  void *user_data;       /* passed to framer and clock_ms */
  const cf_mem *mem;     /* NULL: libc; the struct is copied */
  /* --- version 2 --- */
  /*
   * Memory of all outboxes together, in bytes (stats.outbound_bytes):
   * the wire bytes of every queued message once, however many clients
   * share it, plus 64 per queued entry; cf_client_send() bytes count
   * too. 0: no limit, else at least client_buffer. When a publish,
   * delivery, join or send leaves it above the budget, the clients with
   * the largest backlog (cf_client_pending() plus 64 per message) are
   * closed as slow consumers (CF_CLOSE_SLOW, their queued messages
   * dropped) until it is back under, counted in stats.budget_closes.
   * Clients shut down by their transport (cf_client_shutdown()) are
   * shed too, without a close: see there.
   */
  size_t outbound_budget;
  /* Rooms one client may be in at once; 0: no limit. Past it,
   * cf_client_join() returns CF_ERR_LIMIT. */
  uint32_t max_rooms_per_client;
} cf_hub_config;

/*
 * What the hub asks of a transport, per client. Copied at
 * cf_client_new(). user_data is the client's, given to cf_client_new().
 */
#define CF_CLIENT_OPS_VERSION 1u
typedef struct cf_client_ops {
  uint32_t version; /* CF_CLIENT_OPS_VERSION */
  /*
   * The outbox went from empty to non-empty: drain it with cf_client_iov()
   * and cf_client_consume() (or cf_client_pop()) when the transport can
   * write. Called once per transition, not per message, also from
   * inside cf_client_join() (history) and cf_client_send(). Required.
   */
  void (*wake)(cf_client *c, void *user_data);
  /*
   * The hub wants this client gone (a cf_close_reason). The client gets
   * no further messages; the transport may still send its own bytes with
   * cf_client_send(), then must call cf_client_free(). Required.
   */
  void (*close)(cf_client *c, int reason, void *user_data);
} cf_client_ops;

/*
 * Creates a hub. cfg may be NULL for all defaults. Returns CF_OK,
 * CF_ERR_VERSION, CF_ERR_INVALID (a limit out of range: client_buffer
 * too small for max_message, max_message over 1 GiB, history over 2^20,
 * dedupe_window over 2^24, history_bytes (when not 0) too small for one
 * max_message, outbound_budget (when not 0) below client_buffer, a
 * flags bit this version does not know, or a cf_mem hook NULL) or
 * CF_ERR_NOMEM. cfg->version may be 1 or 2 (CF_HUB_CONFIG_VERSION).
 */
CF_API int cf_hub_new(cf_hub **out, const cf_hub_config *cfg);

/*
 * Frees the hub, every client still attached (their handles become
 * invalid; no callback runs) and every message no transport holds.
 * Does not free an attached queue. Accepts NULL. From inside a hub
 * callback the free is deferred until the outermost hub call returns.
 */
CF_API void cf_hub_free(cf_hub *hub);

/* This hub's instance id (never 0). */
CF_API uint64_t cf_hub_instance_id(const cf_hub *hub);

/*
 * Attaches q (borrowed, must outlive the attachment): publishes go to it
 * and its messages are delivered here. Sets q's callbacks (so a queue
 * feeds one hub at a time); detaching or freeing the hub clears them.
 * q == NULL detaches. Returns CF_OK or CF_ERR_INVALID.
 */
CF_API int cf_hub_attach_queue(cf_hub *hub, cf_queue *q);

/*
 * Publishes a message to room on this instance and, through the attached
 * queue, to the others, all or nothing: the queue gets the message first,
 * and only once it has taken it is the message delivered locally and
 * kept in history. On any error nothing is delivered anywhere, nothing
 * is kept and the message's sequence number is not used (the next
 * accepted publish follows on without a gap). The queue sees this
 * instance's publishes in local delivery order, also those made from
 * inside wake callbacks. data is copied once into the shared message;
 * the caller may reuse it on return. Local delivery happens before
 * return (ops.wake calls included). With CF_HUB_OWN_VIA_QUEUE the queue
 * alone gets the message: nothing is delivered or kept here until it
 * comes back through cf_hub_deliver().
 *
 * Room names are 1..CF_ROOM_MAX bytes of printable ASCII without space
 * (0x21-0x7e), everywhere in this API.
 *
 * Returns CF_OK; CF_ERR_INVALID (bad room name, flags other than
 * CF_MSG_TEXT/BINARY, or NULL data with len > 0), CF_ERR_TOO_BIG
 * (len > max_message, or the message is over the queue's limit),
 * CF_ERR_NOMEM, CF_ERR_CALLBACK (the framer overflowed), CF_ERR_CLOSED
 * (cf_hub_free() is pending), CF_ERR_QUEUE_FULL (the queue's outgoing
 * buffer is full, e.g. the cluster has been unreachable for long) or
 * another error of the queue's, or CF_ERR_STATE (CF_HUB_OWN_VIA_QUEUE
 * and no queue attached). Any error means the message reached no
 * one, here or elsewhere: the sender should be told. stats.queue_errors
 * counts the queue's refusals.
 */
CF_API int cf_hub_publish(cf_hub *hub, const char *room, size_t room_len,
                          uint32_t flags, const void *data, size_t len);

/*
 * Delivers an envelope received from elsewhere, as the attached queue
 * does: dropped (returning CF_OK) if it is a duplicate or this instance's
 * own (own ones only without CF_HUB_OWN_VIA_QUEUE; with it they are
 * delivered once like any other). Useful for transports bridging another
 * bus. Same codes as publish, without the queue ones, plus
 * CF_ERR_INVALID for origin or seq 0.
 */
CF_API int cf_hub_deliver(cf_hub *hub, const cf_envelope *env);

/*
 * Calls ops.close(CF_CLOSE_SHUTDOWN) for every client, in attach order,
 * except those already told to close (slow consumers) and those their
 * transport shut down (cf_client_shutdown()). The clients stay attached
 * until the transport frees them.
 */
CF_API void cf_hub_close_all(cf_hub *hub);

/* Counters since cf_hub_new(); monotonic unless said otherwise. */
typedef struct cf_hub_stats {
  uint64_t clients;          /* attached now (gauge) */
  uint64_t rooms;            /* held now (gauge) */
  uint64_t published;        /* messages published here */
  uint64_t received;         /* envelopes delivered from the queue */
  uint64_t duplicates;       /* envelopes dropped as duplicate/own */
  uint64_t deliveries;       /* message references queued to clients */
  uint64_t delivered_bytes;  /* wire bytes of those */
  uint64_t slow_closes;      /* clients closed as slow consumers */
  uint64_t queue_published;  /* publishes the queue accepted */
  uint64_t queue_errors;     /* publishes the queue refused */
  uint64_t outbox_bytes;     /* bytes queued in all outboxes now (gauge) */
  uint64_t nomem_closes;     /* clients closed with CF_CLOSE_NOMEM */
  /* History held now as counted against history_bytes: wire bytes plus
   * 256 per kept message (gauge). */
  uint64_t history_bytes;
  /* Clients closed (CF_CLOSE_SLOW) to bring the outboxes back under
   * outbound_budget; also counted in slow_closes. */
  uint64_t budget_closes;
  /* Outbox memory as counted against outbound_budget (gauge). */
  uint64_t outbound_bytes;
  /* Clients shut down by their transport (cf_client_shutdown) whose
   * queued messages the budget dropped; in neither count above. */
  uint64_t budget_trims;
} cf_hub_stats;

/*
 * Copies the counters into st; size is sizeof(cf_hub_stats) as the
 * caller knows it, so newer libraries fill only what older callers have.
 * New counters are only ever appended. Fields past what this library
 * knows are left untouched: zero st first to read them as 0.
 */
CF_API void cf_hub_get_stats(const cf_hub *hub, cf_hub_stats *st,
                             size_t size);

/* --- Clients -------------------------------------------------------- */

/*
 * Attaches a client. ops is copied; user_data is handed back to ops and
 * by cf_client_user_data(). The client's first outbox slots are
 * allocated here, so a lack of memory shows now rather than as a
 * CF_CLOSE_NOMEM at its first message. Returns CF_OK, CF_ERR_INVALID,
 * CF_ERR_VERSION, CF_ERR_CLOSED (cf_hub_free() is pending) or
 * CF_ERR_NOMEM.
 */
CF_API int cf_client_new(cf_client **out, cf_hub *hub,
                         const cf_client_ops *ops, void *user_data);

/*
 * Detaches c from its rooms and the hub, drops its outbox and frees it.
 * Accepts NULL. Safe from any callback, for any client.
 */
CF_API void cf_client_free(cf_client *c);

/* The user_data given to cf_client_new(). */
CF_API void *cf_client_user_data(const cf_client *c);

/*
 * Joins room. The room's history (up to cfg.history messages, oldest
 * first) is queued to c at once. Returns CF_OK, CF_ERR_INVALID,
 * CF_ERR_EXISTS (already a member), CF_ERR_LIMIT (max_rooms reached and
 * no empty room to evict, or c is in max_rooms_per_client rooms
 * already), CF_ERR_CLOSED (client is closing or shut down) or
 * CF_ERR_NOMEM.
 */
CF_API int cf_client_join(cf_client *c, const char *room, size_t room_len);

/* Leaves room. CF_OK, CF_ERR_INVALID or CF_ERR_NOT_FOUND. */
CF_API int cf_client_leave(cf_client *c, const char *room, size_t room_len);

/*
 * Fills up to iovcnt entries of iov with the bytes waiting in c's outbox,
 * in order, and returns the number filled (0 when empty). The memory is
 * the hub's: valid until the next call that changes this outbox.
 */
CF_API int cf_client_iov(const cf_client *c, struct iovec *iov, int iovcnt);

/*
 * Marks n bytes from the head of the outbox as sent (after a write or
 * writev). n larger than what is pending is clamped.
 */
CF_API void cf_client_consume(cf_client *c, size_t n);

/* Bytes waiting in c's outbox. */
CF_API size_t cf_client_pending(const cf_client *c);

/*
 * Removes the next whole message from the outbox and returns a reference
 * the caller must release with cf_msg_unref(); NULL when empty or when the
 * head has been partly consumed. For transports that work per message;
 * do not mix with cf_client_consume() on one client.
 */
CF_API cf_msg *cf_client_pop(cf_client *c);

/*
 * Queues transport-private bytes (e.g. a control frame) after what is in
 * c's outbox; bytes are copied. Allowed on a closing client. Counts
 * against client_buffer plus a 4 KiB allowance. Returns CF_OK,
 * CF_ERR_INVALID, CF_ERR_QUEUE_FULL or CF_ERR_NOMEM.
 */
CF_API int cf_client_send(cf_client *c, const void *bytes, size_t len);

/*
 * The transport is closing c on its own (say, with a close frame of its
 * protocol). From now on the hub queues nothing more to c from its
 * rooms and never calls its ops.close; cf_hub_close_all() skips it.
 * cf_client_send() still works, so the transport's last bytes go out
 * after what is queued; cf_client_join() returns CF_ERR_CLOSED. The
 * outbound budget may still shed c (largest backlog first, once): it
 * then drops what c has queued but a partly written head and the bytes
 * cf_client_send() queued since this call, which stay in order; counted
 * in stats.budget_trims, no ops.close. Call it before queuing those
 * bytes: a cut can come with any call that queues. A pending ops.wake
 * still runs, and so does an ops.close the hub decided before this
 * call (from inside a callback). The transport frees c when done.
 * Idempotent; accepts NULL.
 */
CF_API void cf_client_shutdown(cf_client *c);

/* --- Messages --------------------------------------------------------- */

/* Takes another reference; returns m. */
CF_API cf_msg *cf_msg_ref(cf_msg *m);
/* Drops a reference; the last one frees the message. Accepts NULL. */
CF_API void cf_msg_unref(cf_msg *m);
/* Payload bytes (without the frame header) and their length. */
CF_API const void *cf_msg_data(const cf_msg *m);
CF_API size_t cf_msg_size(const cf_msg *m);
/* Header and payload as sent on the wire. */
CF_API const void *cf_msg_wire(const cf_msg *m, size_t *len);
/* CF_MSG_TEXT or CF_MSG_BINARY; CF_MSG_RAW for cf_client_send() bytes. */
CF_API uint32_t cf_msg_flags(const cf_msg *m);

#ifdef __cplusplus
}
#endif

#endif /* CHATFANOUT_CF_HUB_H */
