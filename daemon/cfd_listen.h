/*
 * chatfanoutd listening socket: binds --listen (a name, IPv4 or IPv6),
 * accepts in bursts with accept4(2), and pauses briefly instead of
 * spinning when the process runs out of descriptors.
 */
#ifndef CFD_LISTEN_H
#define CFD_LISTEN_H

#include <stdint.h>

#include <ev.h>

typedef struct cfd_listener cfd_listener;

/*
 * Called with each accepted socket: nonblocking, close-on-exec, with
 * TCP_NODELAY set. The callee owns fd.
 */
typedef void (*cfd_accept_fn)(int fd, void *user_data);

/*
 * Listens on host:port (port 0: any free one; host without brackets)
 * and starts accepting on loop. Logs "listening url=http://HOST:PORT/"
 * with the real port. loop and user_data are borrowed. Returns 0, or
 * -1 after logging why (resolve, bind or listen failed, out of memory).
 */
int cfd_listener_new(cfd_listener **out, struct ev_loop *loop,
                     const char *host, uint16_t port, cfd_accept_fn cb,
                     void *user_data);

/* The port actually bound. */
unsigned cfd_listener_port(const cfd_listener *l);

/* Stops accepting, closes the socket and frees l. Accepts NULL. */
void cfd_listener_free(cfd_listener *l);

#endif /* CFD_LISTEN_H */
