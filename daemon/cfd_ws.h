/*
 * chatfanoutd WebSocket connections: wslay for the protocol, the hub
 * for fan-out. Every byte to a client (the 101 head, chat frames,
 * wslay's control frames) goes through the client's hub outbox, so
 * there is one ordered stream per socket, drained with writev.
 */
#ifndef CFD_WS_H
#define CFD_WS_H

#include <stddef.h>

#include "cfd_ctx.h"
#include "cfd_peer.h"
#include "cfd_http.h"

/*
 * Turns an upgraded connection into a WebSocket client of room
 * rt->room: queues the 101 head, joins the room (its history follows)
 * and starts serving fd. pre[0..pre_len) are bytes read after the
 * request head (early frames); they are copied. counted: the peer the
 * per-address limits counted this connection under, released when the
 * connection ends (the count goes with fd); NULL when it was not
 * counted (the peer is then read from fd, for log lines).
 *
 * Returns 0 when fd was taken over (it is closed by this module), or an
 * HTTP status to answer with when nothing was sent and fd is still the
 * caller's: 500 (out of memory), 503 (room limit reached).
 */
int cfd_ws_start(cfd_ctx *ctx, int fd, const cfd_route *rt,
                 const char *pre, size_t pre_len, const cfd_peer *counted);

/*
 * Frees every WebSocket connection at once, without a close handshake
 * (for teardown after the loop stopped). Call before freeing the hub.
 */
void cfd_ws_free_all(cfd_ctx *ctx);

#endif /* CFD_WS_H */
