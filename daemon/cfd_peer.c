#include "cfd_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void cfd_peer_get(int fd, cfd_peer *p) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  memset(p, 0, sizeof(*p));
  if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
    return;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    memcpy(p->addr, &a->sin_addr, 4);
    p->port = ntohs(a->sin_port);
    p->family = 4;
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    memcpy(p->addr, &a->sin6_addr, 16);
    p->port = ntohs(a->sin6_port);
    p->family = 6;
  }
}

void cfd_peer_format(const cfd_peer *p, char *buf, size_t len) {
  char host[INET6_ADDRSTRLEN];
  int af = p->family == 4 ? AF_INET : AF_INET6;
  if (p->family == 0 || inet_ntop(af, p->addr, host, sizeof(host)) == NULL)
    snprintf(buf, len, "?");
  else
    snprintf(buf, len, p->family == 4 ? "%s:%u" : "[%s]:%u", host,
             (unsigned)p->port);
}

void cfd_peer_str(int fd, char *buf, size_t len) {
  cfd_peer p;
  cfd_peer_get(fd, &p);
  cfd_peer_format(&p, buf, len);
}
