/* Shared pieces of the tests' loopback HTTP servers: see http_server.h. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "http_server.h"

int hs_listen(int *port, int backlog) {
  struct sockaddr_in a;
  socklen_t al = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

  assert_true(fd >= 0);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  *port = ntohs(a.sin_port);
  assert_int_equal(listen(fd, backlog), 0);
  fcntl(fd, F_SETFL, O_NONBLOCK);
  return fd;
}

size_t hs_content_length(const char *head) {
  const char *p = head;

  while ((p = strchr(p, '\n')) != NULL) {
    p++;
    if (strncasecmp(p, "Content-Length:", 15) == 0)
      return strtoul(p + 15, NULL, 10);
  }
  return 0;
}

int hs_header(const char *head, const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  const char *p = head;

  out[0] = '\0';
  while ((p = strstr(p, "\r\n")) != NULL && p[2] != '\r') {
    p += 2;
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
      const char *v = p + n + 1, *e;

      while (*v == ' ')
        v++;
      e = strstr(v, "\r\n");
      if (e == NULL)
        e = v + strlen(v);
      snprintf(out, cap, "%.*s", (int)(e - v), v);
      return 1;
    }
  }
  return 0;
}

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents) {
  (void)w;
  (void)revents;
  ev_break(l, EVBREAK_ALL);
}

double hs_run_until(struct ev_loop *l, const int *count, int want,
                    double secs) {
  ev_timer dl;
  double t0 = ev_time(), end = t0 + secs, left;

  ev_init(&dl, on_deadline);
  while ((count == NULL || *count < want) && (left = end - ev_time()) > 0) {
    ev_now_update(l);
    ev_timer_set(&dl, left, 0);
    ev_timer_start(l, &dl);
    ev_run(l, EVRUN_ONCE);
    ev_timer_stop(l, &dl);
  }
  return ev_time() - t0;
}
