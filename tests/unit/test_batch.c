/*
 * cfd_batch: writes through io_uring on real loopback TCP sockets, with
 * the outcomes a non-blocking writev has: whole, short, EAGAIN, errors,
 * each slot on its own. Skipped where the kernel refuses io_uring.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "cfd_batch.h"

typedef struct pair {
  int a; /* ours, non-blocking: the batch writes here */
  int b; /* the peer */
} pair;

static void pair_open(pair *p) {
  struct sockaddr_in sa;
  socklen_t len = sizeof(sa);
  int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  assert_true(l >= 0);
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
  assert_int_equal(listen(l, 1), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
  p->a = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  assert_true(p->a >= 0);
  assert_true(connect(p->a, (struct sockaddr *)&sa, sizeof(sa)) == 0 ||
              errno == EINPROGRESS);
  p->b = accept(l, NULL, NULL);
  assert_true(p->b >= 0);
  setsockopt(p->a, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  close(l);
}

static void pair_close(pair *p) {
  close(p->a);
  close(p->b);
}

/*
 * Reads what the peer gets, at most cap bytes: until want arrived (or 5
 * s passed), then whatever else comes within 100 ms. A small receive
 * window may need the sender's persist timer, hence the long wait.
 */
static size_t peer_read(pair *p, char *buf, size_t cap, size_t want) {
  struct pollfd pf = {.fd = p->b, .events = POLLIN};
  size_t got = 0;
  ssize_t n;
  int waited = 0;
  while (got < cap && waited < 5000) {
    if (poll(&pf, 1, 100) != 1) {
      if (got >= want)
        break;
      waited += 100;
      continue;
    }
    n = read(p->b, buf + got, cap - got);
    if (n <= 0)
      break;
    got += (size_t)n;
  }
  return got;
}

static cfd_batch *batch_or_skip(void) {
  cfd_batch *b = cfd_batch_new();
  if (b == NULL) {
#ifdef CFD_HAVE_URING
    /* ./scripts/test sets CF_TEST_NO_SKIP: there it must work. */
    print_message("io_uring unavailable here: %s\n", strerror(errno));
    if (getenv("CF_TEST_NO_SKIP") != NULL)
      fail_msg("io_uring unavailable and CF_TEST_NO_SKIP is set");
#else
    assert_int_equal(errno, ENOSYS);
#endif
    skip();
  }
  return b;
}

static void test_writes(void **state) {
  static char big[10];
  struct iovec one[1], three[3], ten[10];
  char buf[64];
  pair p[3];
  cfd_batch *b = batch_or_skip();
  int i;
  (void)state;
  for (i = 0; i < 3; i++)
    pair_open(&p[i]);
  one[0] = (struct iovec){"hello", 5};
  three[0] = (struct iovec){"ab", 2};
  three[1] = (struct iovec){"", 0};
  three[2] = (struct iovec){"cde", 3};
  for (i = 0; i < 10; i++) {
    big[i] = (char)('0' + i);
    ten[i] = (struct iovec){&big[i], 1};
  }
  assert_int_equal(cfd_batch_count(b), 0);
  assert_int_equal(cfd_batch_add(b, p[0].a, one, 1, &p[0]), 0);
  assert_int_equal(cfd_batch_add(b, p[1].a, three, 3, &p[1]), 1);
  /* More than CFD_BATCH_IOV: the rest is for the next write. */
  assert_int_equal(cfd_batch_add(b, p[2].a, ten, 10, &p[2]), 2);
  assert_int_equal(cfd_batch_count(b), 3);
  assert_int_equal(cfd_batch_run(b), 3);
  assert_int_equal(cfd_batch_count(b), 0);
  assert_ptr_equal(cfd_batch_owner(b, 0), &p[0]);
  assert_ptr_equal(cfd_batch_owner(b, 2), &p[2]);
  assert_int_equal(cfd_batch_want(b, 0), 5);
  assert_int_equal(cfd_batch_want(b, 1), 5);
  assert_int_equal(cfd_batch_want(b, 2), CFD_BATCH_IOV);
  assert_int_equal(cfd_batch_result(b, 0), 5);
  assert_int_equal(cfd_batch_result(b, 1), 5);
  assert_int_equal(cfd_batch_result(b, 2), CFD_BATCH_IOV);
  assert_int_equal(peer_read(&p[0], buf, sizeof(buf), 5), 5);
  assert_memory_equal(buf, "hello", 5);
  assert_int_equal(peer_read(&p[1], buf, sizeof(buf), 5), 5);
  assert_memory_equal(buf, "abcde", 5);
  assert_int_equal(peer_read(&p[2], buf, sizeof(buf), CFD_BATCH_IOV),
                   CFD_BATCH_IOV);
  assert_memory_equal(buf, big, CFD_BATCH_IOV);
  /* Nothing to write is not a write. */
  assert_int_equal(cfd_batch_add(b, p[0].a, one, 0, NULL), -1);
  assert_int_equal(cfd_batch_run(b), 0);
  for (i = 0; i < 3; i++)
    pair_close(&p[i]);
  cfd_batch_free(b);
}

/* Shrinks both buffers so that a few KiB fill the connection. */
static void pair_small(pair *p) {
  int sz = 4096;
  assert_int_equal(
      setsockopt(p->a, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz)), 0);
  assert_int_equal(
      setsockopt(p->b, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz)), 0);
}

static void test_full_and_short(void **state) {
  static char chunk[1 << 20];
  struct iovec iov;
  pair full, part;
  cfd_batch *b = batch_or_skip();
  size_t filled = 0, got;
  ssize_t n, r;
  (void)state;
  pair_open(&full);
  pair_open(&part);
  pair_small(&full);
  pair_small(&part);
  memset(chunk, 'x', sizeof(chunk));
  while ((n = write(full.a, chunk, 4096)) > 0)
    filled += (size_t)n;
  assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  iov = (struct iovec){chunk, sizeof(chunk)};
  assert_int_equal(cfd_batch_add(b, full.a, &iov, 1, NULL), 0);
  assert_int_equal(cfd_batch_add(b, part.a, &iov, 1, NULL), 1);
  assert_int_equal(cfd_batch_run(b), 2);
  /* A full socket answers at once, it is not waited on. */
  assert_int_equal(cfd_batch_result(b, 0), -EAGAIN);
  r = cfd_batch_result(b, 1);
  assert_true(r > 0 && (size_t)r < sizeof(chunk));
  got = peer_read(&part, chunk, sizeof(chunk), (size_t)r);
  assert_int_equal(got, (size_t)r);
  assert_int_equal(peer_read(&full, chunk, sizeof(chunk), filled), filled);
  pair_close(&full);
  pair_close(&part);
  cfd_batch_free(b);
}

static void test_errors_stay_in_their_slot(void **state) {
  struct iovec iov = {"ping", 4};
  pair ok1, shut, ok2;
  char buf[16];
  cfd_batch *b = batch_or_skip();
  int gone;
  (void)state;
  pair_open(&ok1);
  pair_open(&shut);
  pair_open(&ok2);
  /* Writing after our own shutdown is EPIPE, and no SIGPIPE (that
   * would end this test). */
  assert_int_equal(shutdown(shut.a, SHUT_WR), 0);
  gone = dup(ok1.a);
  assert_true(gone >= 0);
  close(gone);
  assert_int_equal(cfd_batch_add(b, ok1.a, &iov, 1, NULL), 0);
  assert_int_equal(cfd_batch_add(b, shut.a, &iov, 1, NULL), 1);
  assert_int_equal(cfd_batch_add(b, gone, &iov, 1, NULL), 2);
  assert_int_equal(cfd_batch_add(b, ok2.a, &iov, 1, NULL), 3);
  assert_int_equal(cfd_batch_run(b), 4);
  assert_int_equal(cfd_batch_result(b, 0), 4);
  assert_int_equal(cfd_batch_result(b, 1), -EPIPE);
  assert_int_equal(cfd_batch_result(b, 2), -EBADF);
  assert_int_equal(cfd_batch_result(b, 3), 4);
  assert_int_equal(peer_read(&ok1, buf, sizeof(buf), 4), 4);
  assert_int_equal(peer_read(&ok2, buf, sizeof(buf), 4), 4);
  assert_false(cfd_batch_dead(b));
  pair_close(&ok1);
  pair_close(&shut);
  pair_close(&ok2);
  cfd_batch_free(b);
}

static void test_full_batch(void **state) {
  static char buf[CFD_BATCH_MAX + 16];
  struct iovec iov = {"z", 1};
  pair p;
  cfd_batch *b = batch_or_skip();
  unsigned i, n;
  (void)state;
  pair_open(&p);
  for (i = 0; i < CFD_BATCH_MAX; i++)
    assert_int_equal(cfd_batch_add(b, p.a, &iov, 1, NULL), (int)i);
  assert_int_equal(cfd_batch_add(b, p.a, &iov, 1, NULL), -1);
  assert_int_equal(cfd_batch_count(b), CFD_BATCH_MAX);
  n = cfd_batch_run(b);
  assert_int_equal(n, CFD_BATCH_MAX);
  for (i = 0; i < n; i++)
    assert_int_equal(cfd_batch_result(b, i), 1);
  assert_int_equal(peer_read(&p, buf, sizeof(buf), CFD_BATCH_MAX),
                   CFD_BATCH_MAX);
  /* And the batch is ready for the next round. */
  assert_int_equal(cfd_batch_add(b, p.a, &iov, 1, NULL), 0);
  assert_int_equal(cfd_batch_run(b), 1);
  assert_int_equal(cfd_batch_result(b, 0), 1);
  pair_close(&p);
  cfd_batch_free(b);
}

/* A registered socket is written through its table slot, and once
 * unregistered its close really closes it (the peer reads EOF). */
static void test_registered_fd(void **state) {
  struct iovec iov = {"fixed", 5};
  char buf[16];
  pair p;
  cfd_batch *b = batch_or_skip();
  (void)state;
  pair_open(&p);
  assert_int_equal(cfd_batch_fd_add(b, p.a), 0);
  assert_int_equal(cfd_batch_fd_add(b, -1), -1);
  assert_int_equal(cfd_batch_fd_add(b, 1 << 30), -1);
  assert_int_equal(cfd_batch_add(b, p.a, &iov, 1, NULL), 0);
  assert_int_equal(cfd_batch_run(b), 1);
  assert_int_equal(cfd_batch_result(b, 0), 5);
  assert_int_equal(peer_read(&p, buf, sizeof(buf), 5), 5);
  assert_memory_equal(buf, "fixed", 5);
  cfd_batch_fd_del(b, p.a);
  cfd_batch_fd_del(b, p.a); /* twice: harmless */
  close(p.a);
  {
    struct pollfd pf = {.fd = p.b, .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(read(p.b, buf, sizeof(buf)), 0); /* EOF */
  }
  close(p.b);
  cfd_batch_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writes),
      cmocka_unit_test(test_full_and_short),
      cmocka_unit_test(test_errors_stay_in_their_slot),
      cmocka_unit_test(test_full_batch),
      cmocka_unit_test(test_registered_fd),
  };
  cfd_batch_free(NULL);
  cfd_batch_fd_del(NULL, 0);
  if (cfd_batch_fd_add(NULL, 0) != -1)
    return 1;
  return cmocka_run_group_tests(tests, NULL, NULL);
}
