#include "cfd_listen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cfd_log.h"

#define LISTEN_BACKLOG 1024
#define ACCEPT_BURST 128 /* accepts per wakeup, so clients get turns */
#define ACCEPT_PAUSE 0.1 /* seconds without accepting after EMFILE */

struct cfd_listener {
  struct ev_loop *loop;
  int fd;
  unsigned port;       /* bound port */
  ev_io io;
  ev_timer pause;      /* resumes accepting after EMFILE */
  int pause_logged;    /* one log line per run of EMFILE */
  cfd_accept_fn cb;
  void *user_data;
};

/*
 * Out of descriptors (or memory): the pending connection stays in the
 * backlog and the socket stays readable, so stop watching it for a
 * moment instead of spinning on the same error.
 */
static void accept_pause(cfd_listener *l, int err) {
  if (!l->pause_logged) {
    cfd_log(CFD_LOG_WARN, "accept paused", "error", strerror(err), NULL);
    l->pause_logged = 1;
  }
  ev_io_stop(l->loop, &l->io);
  ev_timer_set(&l->pause, ACCEPT_PAUSE, 0.);
  ev_timer_start(l->loop, &l->pause);
}

static void accepted(cfd_listener *l, int fd) {
  int one = 1;
  l->pause_logged = 0;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  l->cb(fd, l->user_data);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents) {
  cfd_listener *l = w->data;
  int i, fd;
  (void)loop;
  (void)revents;
  for (i = 0; i < ACCEPT_BURST; i++) {
    fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      accepted(l, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
      continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
        errno == ENOMEM) {
      accept_pause(l, errno);
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      cfd_log(CFD_LOG_ERROR, "accept failed", "error", strerror(errno),
              NULL);
    return;
  }
}

static void pause_cb(struct ev_loop *loop, ev_timer *w, int revents) {
  cfd_listener *l = w->data;
  (void)revents;
  ev_io_start(loop, &l->io);
}

static int listen_on(const struct addrinfo *ai) {
  int one = 1, e;
  int fd = socket(ai->ai_family,
                  ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  if (fd < 0)
    return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
      listen(fd, LISTEN_BACKLOG) != 0) {
    e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

static unsigned bound_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return 0;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* IPv6 literals get brackets in addresses and URLs. */
static const char *host_fmt(const char *host, const char *v4, const char *v6) {
  return strchr(host, ':') ? v6 : v4;
}

/* Binds the first address host resolves to that works. 0 or -1. */
static int listener_bind(cfd_listener *l, const char *host, uint16_t port) {
  struct addrinfo hints, *res = NULL, *ai;
  char ps[8], addr[300];
  int rv, err = 0;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  snprintf(ps, sizeof(ps), "%u", (unsigned)port);
  snprintf(addr, sizeof(addr), host_fmt(host, "%s:%s", "[%s]:%s"), host,
           ps);
  rv = getaddrinfo(host, ps, &hints, &res);
  if (rv != 0) {
    cfd_log(CFD_LOG_ERROR, "cannot resolve listen address", "addr", addr,
            "error", gai_strerror(rv), NULL);
    return -1;
  }
  for (ai = res; ai != NULL && l->fd < 0; ai = ai->ai_next)
    if ((l->fd = listen_on(ai)) < 0)
      err = errno;
  freeaddrinfo(res);
  if (l->fd < 0) {
    cfd_log(CFD_LOG_ERROR, "cannot listen", "addr", addr, "error",
            strerror(err), NULL);
    return -1;
  }
  l->port = bound_port(l->fd);
  return 0;
}

int cfd_listener_new(cfd_listener **out, struct ev_loop *loop,
                     const char *host, uint16_t port, cfd_accept_fn cb,
                     void *user_data) {
  cfd_listener *l = calloc(1, sizeof(*l));
  char url[320];
  *out = NULL;
  if (l == NULL) {
    cfd_log(CFD_LOG_ERROR, "out of memory", NULL);
    return -1;
  }
  l->loop = loop;
  l->fd = -1;
  l->cb = cb;
  l->user_data = user_data;
  if (listener_bind(l, host, port) != 0) {
    free(l);
    return -1;
  }
  ev_io_init(&l->io, accept_cb, l->fd, EV_READ);
  l->io.data = l;
  ev_timer_init(&l->pause, pause_cb, 0., 0.);
  l->pause.data = l;
  ev_io_start(loop, &l->io);
  snprintf(url, sizeof(url),
           host_fmt(host, "http://%s:%u/", "http://[%s]:%u/"), host,
           l->port);
  cfd_log(CFD_LOG_INFO, "listening", "url", url, NULL);
  *out = l;
  return 0;
}

unsigned cfd_listener_port(const cfd_listener *l) { return l->port; }

void cfd_listener_free(cfd_listener *l) {
  if (l == NULL)
    return;
  ev_io_stop(l->loop, &l->io);
  ev_timer_stop(l->loop, &l->pause);
  close(l->fd);
  free(l);
}
