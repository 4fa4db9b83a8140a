/*
 * chatfanoutd shared state: what the listener, the HTTP phase and the
 * WebSocket connections all need. Owned by main(); one per process.
 */
#ifndef CFD_CTX_H
#define CFD_CTX_H

#include <ev.h>

#include <chatfanout/cf_hub.h>
#include <chatfanout/cf_queue.h>

#include "cfd_config.h"
#include "cfd_metrics.h"

struct cfd_batch;
struct cfd_ws;
struct cfd_limits;

typedef struct cfd_ctx {
  struct ev_loop *loop;   /* borrowed */
  const cfd_config *cfg;  /* borrowed, outlives the ctx */
  cf_hub *hub;            /* borrowed */
  cf_queue *queue;        /* borrowed; NULL when none */
  cfd_metrics metrics;
  int stopping;           /* set on SIGTERM/SIGINT: healthz 503, no
                             new WebSocket clients */
  unsigned n_http;        /* connections in the HTTP phase */
  unsigned n_ws;          /* WebSocket connections, closing included */
  unsigned n_parsers;     /* of those, holding a wslay context */
  struct cfd_ws *ws_head; /* every WebSocket connection */
  /* Connections whose outbox has bytes and no EV_WRITE armed. ws_flush
   * writes them once per loop iteration, before the loop blocks; it is
   * started only while ws_dirty or ws_pre is not empty (cfd_ws.c). */
  struct cfd_ws *ws_dirty;
  /* Connections whose 101 is out and whose early frames (sent with the
   * HTTP head) ws_flush reads next; it runs while either list has one. */
  struct cfd_ws *ws_pre;
  ev_prepare ws_flush;
  /* Batches those writes through io_uring (cfd_batch.h); NULL: each
   * connection is written with its own writev. Owned by main(). */
  struct cfd_batch *batch;
  unsigned flush_gen;     /* batched flush: current pump pass (cfd_ws.c) */
  unsigned repump;        /* connections given output to pump, counter */
  unsigned pumped;        /* repump when the list was last all pumped */
  /* Per-address limits (cfd_limits.h), owned by the server; NULL once
   * it is freed. A WebSocket connection releases its address's count
   * when it ends. */
  struct cfd_limits *limits;
} cfd_ctx;

#endif /* CFD_CTX_H */
