/*
 * Internal: what the cf_queue wrapper offers to the backends built into
 * the library.
 *
 * A backend entry point that runs several callbacks in a row (a timer
 * that delivers a batch) brackets the batch with cf__queue_enter() and
 * cf__queue_leave(). A cf_queue_free() from any of those callbacks is
 * then deferred until the matching leave, so the backend's state stays
 * valid for the whole batch; the backend only has to stop early once
 * cf__queue_freeing() says so. The wrapper already brackets start,
 * flush and each report call the same way.
 */
#ifndef CF_QUEUE_INT_H
#define CF_QUEUE_INT_H

#include <chatfanout/cf_queue.h>

/* Holds q: a cf_queue_free(q) until the matching leave is deferred.
 * Calls nest. */
void cf__queue_enter(cf_queue *q);

/*
 * Releases a hold. When it was the last one and q was freed meanwhile,
 * q and its backend are destroyed now and 1 is returned: the caller must
 * not touch q or its impl again. Returns 0 otherwise.
 */
int cf__queue_leave(cf_queue *q);

/* Nonzero once cf_queue_free(q) was called (q is only held). Reports
 * are ignored from then on. */
int cf__queue_freeing(const cf_queue *q);

#endif /* CF_QUEUE_INT_H */
