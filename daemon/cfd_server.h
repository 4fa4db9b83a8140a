/*
 * chatfanoutd listener and HTTP phase: accepts connections, enforces
 * --max-connections, reads and routes one request head per connection,
 * answers the plain HTTP endpoints and errors (then closes), and hands
 * valid upgrades to cfd_ws.
 */
#ifndef CFD_SERVER_H
#define CFD_SERVER_H

#include <stddef.h>

#include "cfd_ctx.h"

typedef struct cfd_server cfd_server;

/*
 * Binds and listens on ctx->cfg's --listen address and starts accepting
 * on ctx->loop; logs "listening url=http://HOST:PORT/" with the real
 * port. ctx is borrowed and must outlive the server. Returns 0, or -1
 * after logging why (resolve, bind or listen failed, out of memory).
 */
int cfd_server_new(cfd_server **out, cfd_ctx *ctx);

/*
 * Stops accepting and closes the listening socket (shutdown). Requests
 * already being read or answered finish; idle connections that sent
 * nothing yet are closed. Idempotent.
 */
void cfd_server_stop(cfd_server *s);

/* The port actually bound (useful when 0 was asked). */
unsigned cfd_server_port(const cfd_server *s);

/* Closes the listener and every HTTP-phase connection, frees s. NULL ok. */
void cfd_server_free(cfd_server *s);

#endif /* CFD_SERVER_H */
