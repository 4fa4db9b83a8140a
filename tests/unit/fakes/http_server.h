/*
 * Pieces shared by the tests that run a small HTTP/1.1 server of their
 * own on a real libev loop (bound to 127.0.0.1 only): the listening
 * socket, reading a request head, and running the loop until a callback
 * count is reached or time runs out.
 */
#ifndef HTTP_SERVER_H
#define HTTP_SERVER_H

#include <stddef.h>

#include <ev.h>

/*
 * Opens a non-blocking listening socket on 127.0.0.1 at a free port
 * (written to *port) with the given backlog. Returns the fd; fails the
 * test when that is not possible.
 */
int hs_listen(int *port, int backlog);

/* The Content-Length of a request head (0 when it has none). */
size_t hs_content_length(const char *head);

/*
 * Copies the value of header name (case-insensitive, leading spaces
 * skipped) from head, which is NUL-terminated, into out (cap bytes,
 * truncated). Returns 1 when found; 0 when not, with out "".
 */
int hs_header(const char *head, const char *name, char *out, size_t cap);

/*
 * Runs l until *count reaches want (count NULL: never) or secs of real
 * time pass, whichever is first. Returns the real time it ran. The
 * deadline is re-armed from the real clock at each pass: libev counts
 * timers from its cached time, stale after a long test step.
 */
double hs_run_until(struct ev_loop *l, const int *count, int want,
                    double secs);

#endif /* HTTP_SERVER_H */
