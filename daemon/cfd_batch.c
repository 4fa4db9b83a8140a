/*
 * Batched socket writes through io_uring (see cfd_batch.h).
 *
 * The ring is used as a system call batcher, not as an event loop:
 * libev keeps watching the sockets. Each write is a SEND (one buffer)
 * or SENDMSG (several) with MSG_DONTWAIT, which io_uring completes
 * inline during the submission, -EAGAIN included, instead of parking
 * it for an async retry. So a submission returns with every result.
 *
 * A slot's outcome must be known exactly: a write that happened but is
 * thought not to have happened would send its bytes twice and corrupt
 * the stream. Slots the kernel never took are marked CFD_BATCH_NOT_RUN
 * (the caller writes those itself); a slot taken whose completion
 * cannot be read gets -EIO (the caller drops the connection).
 */
#include "cfd_batch.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#ifdef CFD_HAVE_URING

#include <liburing.h>

typedef struct slot {
  struct msghdr msg;
  struct iovec iov[CFD_BATCH_IOV];
  void *owner;
  size_t want;
  ssize_t res;
} slot;

struct cfd_batch {
  struct io_uring ring;
  unsigned n;      /* slots queued, or readable after a run */
  unsigned dead;   /* the ring failed: add() refuses from now on */
  unsigned nfixed; /* registered file table slots, 0: none */
  uint8_t *fixed;  /* fixed[fd]: fd is registered at slot fd */
  slot slots[CFD_BATCH_MAX];
};

#define SEND_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL)

static int ring_init(struct io_uring *ring) {
  /* Newest first: SINGLE_ISSUER and DEFER_TASKRUN (6.1) save work per
   * submission; SUBMIT_ALL (5.18) keeps one failed entry from stopping
   * the others. */
  static const unsigned tries[] = {
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
      IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SUBMIT_ALL,
  };
  struct io_uring_params p;
  size_t i;
  int rv = -EINVAL;
  for (i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
    memset(&p, 0, sizeof(p));
    p.flags = tries[i];
    rv = io_uring_queue_init_params(CFD_BATCH_MAX, ring, &p);
    if (rv != -EINVAL)
      break;
  }
  return rv;
}

/* MSG_DONTWAIT completing inline needs both send opcodes. */
static int ring_fit(struct io_uring *ring) {
  struct io_uring_probe *pr = io_uring_get_probe_ring(ring);
  int ok = pr != NULL && io_uring_opcode_supported(pr, IORING_OP_SEND) &&
           io_uring_opcode_supported(pr, IORING_OP_SENDMSG);
  if (pr != NULL)
    io_uring_free_probe(pr);
  return ok;
}

/*
 * A sparse table of registered files, slot = fd, up to the process's fd
 * limit (at most FIXED_MAX): a write to a registered socket skips the
 * kernel's per-request file lookup and reference. Without it (an old
 * kernel, no memory) every write takes the plain path.
 */
#define FIXED_MAX 65536u
static void fixed_init(cfd_batch *b) {
  struct rlimit rl;
  unsigned nr = FIXED_MAX;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < nr)
    nr = (unsigned)rl.rlim_cur;
  if (nr == 0 || (b->fixed = calloc(nr, 1)) == NULL)
    return;
  if (io_uring_register_files_sparse(&b->ring, nr) != 0) {
    free(b->fixed);
    b->fixed = NULL;
    return;
  }
  b->nfixed = nr;
}

int cfd_batch_fd_add(cfd_batch *b, int fd) {
  if (b == NULL || b->dead || fd < 0 || (unsigned)fd >= b->nfixed ||
      io_uring_register_files_update(&b->ring, (unsigned)fd, &fd, 1) != 1)
    return -1;
  b->fixed[fd] = 1;
  return 0;
}

void cfd_batch_fd_del(cfd_batch *b, int fd) {
  int none = -1;
  if (b == NULL || b->dead || fd < 0 || (unsigned)fd >= b->nfixed ||
      !b->fixed[fd])
    return;
  /* The table holds a reference: the socket would stay open after
   * close(fd) while its slot is taken. */
  io_uring_register_files_update(&b->ring, (unsigned)fd, &none, 1);
  b->fixed[fd] = 0;
}

cfd_batch *cfd_batch_new(void) {
  cfd_batch *b = calloc(1, sizeof(*b));
  int rv;
  if (b == NULL)
    return NULL;
  if ((rv = ring_init(&b->ring)) < 0) {
    free(b);
    errno = -rv;
    return NULL;
  }
  if (!ring_fit(&b->ring)) {
    io_uring_queue_exit(&b->ring);
    free(b);
    errno = ENOSYS;
    return NULL;
  }
  fixed_init(b);
  return b;
}

void cfd_batch_free(cfd_batch *b) {
  if (b == NULL)
    return;
  if (!b->dead)
    io_uring_queue_exit(&b->ring);
  free(b->fixed);
  free(b);
}

unsigned cfd_batch_count(const cfd_batch *b) {
  return b->n;
}

int cfd_batch_add(cfd_batch *b, int fd, const struct iovec *iov, int cnt,
                  void *owner) {
  struct io_uring_sqe *sqe;
  slot *s;
  int i;
  if (b->dead || cnt < 1 || b->n >= CFD_BATCH_MAX ||
      (sqe = io_uring_get_sqe(&b->ring)) == NULL)
    return -1;
  if (cnt > CFD_BATCH_IOV)
    cnt = CFD_BATCH_IOV;
  s = &b->slots[b->n];
  s->owner = owner;
  s->res = CFD_BATCH_NOT_RUN;
  for (s->want = 0, i = 0; i < cnt; i++) {
    s->iov[i] = iov[i];
    s->want += iov[i].iov_len;
  }
  if (cnt == 1) {
    io_uring_prep_send(sqe, fd, s->iov[0].iov_base, s->iov[0].iov_len,
                       SEND_FLAGS);
  } else {
    memset(&s->msg, 0, sizeof(s->msg));
    s->msg.msg_iov = s->iov;
    s->msg.msg_iovlen = (size_t)cnt;
    io_uring_prep_sendmsg(sqe, fd, &s->msg, SEND_FLAGS);
  }
  if ((unsigned)fd < b->nfixed && b->fixed[fd])
    sqe->flags |= IOSQE_FIXED_FILE; /* (sqe->fd is then the slot: fd) */
  io_uring_sqe_set_data64(sqe, b->n);
  return (int)b->n++;
}

/* Reads the completions that are there; returns how many. */
static unsigned reap_ready(cfd_batch *b) {
  struct io_uring_cqe *cqe;
  unsigned head, seen = 0;
  io_uring_for_each_cqe(&b->ring, head, cqe) {
    if (cqe->user_data < b->n)
      b->slots[cqe->user_data].res = cqe->res;
    seen++;
  }
  io_uring_cq_advance(&b->ring, seen);
  return seen;
}

/*
 * Reads completions until `taken` arrived. They are all there once the
 * submission returns (MSG_DONTWAIT). If some are not, the loop must not
 * wait for a slow socket: after WAIT_MS the rest are cancelled, which
 * returns only when they are done or cancelled, and read. Returns how
 * many arrived; fewer than taken means the ring failed.
 */
#define WAIT_MS 10
static unsigned reap(cfd_batch *b, unsigned taken) {
  struct __kernel_timespec ts = {0, WAIT_MS * 1000000L};
  struct io_uring_sync_cancel_reg reg;
  struct io_uring_cqe *cqe;
  unsigned got = reap_ready(b);
  int tries = 0;
  while (got < taken && tries++ < 3) {
    if (io_uring_wait_cqe_timeout(&b->ring, &cqe, &ts) == 0) {
      got += reap_ready(b);
      continue;
    }
    memset(&reg, 0, sizeof(reg));
    reg.flags = IORING_ASYNC_CANCEL_ANY;
    reg.timeout.tv_sec = 1;
    reg.timeout.tv_nsec = 0;
    io_uring_register_sync_cancel(&b->ring, &reg);
    got += reap_ready(b);
  }
  return got;
}

unsigned cfd_batch_run(cfd_batch *b) {
  unsigned n = b->n, taken = 0, i;
  int rv, tries = 0;
  if (n == 0)
    return 0;
  while (taken < n) {
    rv = io_uring_submit(&b->ring);
    if (rv > 0) {
      taken += (unsigned)rv;
      continue;
    }
    if ((rv == -EINTR || rv == -EAGAIN) && ++tries < 3)
      continue;
    break;
  }
  /* Taken entries are the first ones, in order; until their completion
   * is read their outcome is unknown. */
  for (i = 0; i < taken; i++)
    b->slots[i].res = -EIO;
  if (reap(b, taken) < taken || taken < n) {
    /* Entries still in the submission queue must never run later:
     * the ring goes, and with it batching. */
    io_uring_queue_exit(&b->ring);
    b->dead = 1;
  }
  b->n = 0;
  return n;
}

void *cfd_batch_owner(const cfd_batch *b, unsigned i) {
  return b->slots[i].owner;
}

size_t cfd_batch_want(const cfd_batch *b, unsigned i) {
  return b->slots[i].want;
}

ssize_t cfd_batch_result(const cfd_batch *b, unsigned i) {
  return b->slots[i].res;
}

int cfd_batch_dead(const cfd_batch *b) {
  return b->dead != 0;
}

#else /* !CFD_HAVE_URING */

cfd_batch *cfd_batch_new(void) {
  errno = ENOSYS;
  return NULL;
}

void cfd_batch_free(cfd_batch *b) {
  (void)b;
}

unsigned cfd_batch_count(const cfd_batch *b) {
  (void)b;
  return 0;
}

int cfd_batch_add(cfd_batch *b, int fd, const struct iovec *iov, int cnt,
                  void *owner) {
  (void)b, (void)fd, (void)iov, (void)cnt, (void)owner;
  return -1;
}

unsigned cfd_batch_run(cfd_batch *b) {
  (void)b;
  return 0;
}

void *cfd_batch_owner(const cfd_batch *b, unsigned i) {
  (void)b, (void)i;
  return NULL;
}

size_t cfd_batch_want(const cfd_batch *b, unsigned i) {
  (void)b, (void)i;
  return 0;
}

ssize_t cfd_batch_result(const cfd_batch *b, unsigned i) {
  (void)b, (void)i;
  return CFD_BATCH_NOT_RUN;
}

int cfd_batch_dead(const cfd_batch *b) {
  (void)b;
  return 1;
}

int cfd_batch_fd_add(cfd_batch *b, int fd) {
  (void)b, (void)fd;
  return -1;
}

void cfd_batch_fd_del(cfd_batch *b, int fd) {
  (void)b, (void)fd;
}

#endif /* CFD_HAVE_URING */
