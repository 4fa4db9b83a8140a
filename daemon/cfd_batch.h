/*
 * Batched socket writes: the writes of many connections in one system
 * call, through io_uring. A fan-out to N clients is otherwise N writev
 * calls per message; here it is N / CFD_BATCH_MAX submissions.
 *
 * Same semantics as a non-blocking writev per socket: every write is
 * tried at once and never waits (MSG_DONTWAIT), a full socket answers
 * -EAGAIN, a short write its byte count, SIGPIPE is never raised. All
 * results are in before cfd_batch_run() returns, so the buffers handed
 * to cfd_batch_add() only need to live until then.
 *
 * Optional: without liburing at build time, or when the kernel refuses
 * io_uring (too old, seccomp, kernel.io_uring_disabled), cfd_batch_new()
 * fails and the caller writes directly.
 */
#ifndef CFD_BATCH_H
#define CFD_BATCH_H

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define CFD_BATCH_MAX 1024 /* writes per submission */
#define CFD_BATCH_IOV 8    /* iovecs per write; the rest goes next time */
/* Result of a write the kernel never took, or cancelled before it ran
 * (then its error is this one too): nothing was written, the caller
 * writes it itself. */
#define CFD_BATCH_NOT_RUN (-ECANCELED)

typedef struct cfd_batch cfd_batch;

/* Returns NULL, errno set, when batching is unavailable. */
cfd_batch *cfd_batch_new(void);
void cfd_batch_free(cfd_batch *b);

/*
 * Registers socket fd with the ring (a fixed file: its writes skip the
 * per-request file lookup); returns 0, or -1 when it stays a plain fd
 * (beyond the table, no table, b NULL). A registered fd must be
 * unregistered with cfd_batch_fd_del() before it is closed: the ring
 * holds a reference and the socket would otherwise stay open.
 */
int cfd_batch_fd_add(cfd_batch *b, int fd);
void cfd_batch_fd_del(cfd_batch *b, int fd);

/* Nonzero once the ring failed: nothing more is batched. */
int cfd_batch_dead(const cfd_batch *b);

/* Writes queued and not yet run. */
unsigned cfd_batch_count(const cfd_batch *b);

/*
 * Queues a write of iov[0..cnt) (cnt is cut to CFD_BATCH_IOV) to the
 * socket fd on behalf of owner. Returns its slot, or -1 when the batch
 * is full (cfd_batch_count() == CFD_BATCH_MAX) or cnt < 1.
 */
int cfd_batch_add(cfd_batch *b, int fd, const struct iovec *iov, int cnt,
                  void *owner);

/*
 * Submits the queued writes and waits for every result (none blocks).
 * Returns the number of slots to read, 0..count; afterwards the batch
 * is empty and slots stay readable until the next cfd_batch_add().
 * Slots the kernel did not take read CFD_BATCH_NOT_RUN; a slot taken
 * whose completion could not be read reads -EIO (its outcome is not
 * known: the connection cannot go on).
 */
unsigned cfd_batch_run(cfd_batch *b);

/* Slot i's owner, bytes it asked to write, and the result: bytes
 * written, or a negative errno. */
void *cfd_batch_owner(const cfd_batch *b, unsigned i);
size_t cfd_batch_want(const cfd_batch *b, unsigned i);
ssize_t cfd_batch_result(const cfd_batch *b, unsigned i);

#endif /* CFD_BATCH_H */
