/*
 * What the WebSocket fuzz targets share: reading what the server wrote
 * over a socket while its loop runs, and checking that bytes stream as
 * a server's WebSocket output.
 */
#ifndef WS_CHECK_H
#define WS_CHECK_H

#include <errno.h>
#include <unistd.h>

#include <ev.h>

#include "cfd_ctx.h"
#include "cfd_utf8.h"
#include "fuzz_common.h"

#define OUT_MAX (4u << 20)

typedef struct out_buf {
  uint8_t *p;
  size_t len, cap;
  int eof; /* the server closed its side: len is all it will send */
} out_buf;

/* Reads everything the server has written so far; returns the count. */
static inline size_t drain(int fd, out_buf *o) {
  size_t got = 0;
  ssize_t n;
  for (;;) {
    if (o->cap - o->len < 4096) {
      FUZZ_CHECK(o->cap < OUT_MAX);
      o->cap = o->cap ? 2 * o->cap : 65536;
      o->p = realloc(o->p, o->cap);
      FUZZ_CHECK(o->p != NULL);
    }
    n = read(fd, o->p + o->len, o->cap - o->len);
    if (n == 0)
      o->eof = 1;
    if (n <= 0)
      return got;
    o->len += (size_t)n;
    got += (size_t)n;
  }
}

/*
 * Runs the loop until four passes in a row wrote nothing to fd: a
 * reaction can take a few passes (accept, read, then the prepare
 * watcher that writes).
 */
static inline void settle(cfd_ctx *ctx, int fd, out_buf *o) {
  int quiet = 0, i;
  for (i = 0; i < 400 && quiet < 4; i++) {
    ev_run(ctx->loop, EVRUN_NOWAIT);
    quiet = drain(fd, o) ? 0 : quiet + 1;
  }
}

/* Writes all n bytes (the socket is drained meanwhile if it fills). */
static inline void send_all(cfd_ctx *ctx, int fd, const uint8_t *p,
                            size_t n, out_buf *o) {
  ssize_t w;
  int stuck = 0;
  while (n > 0) {
    w = write(fd, p, n);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      stuck = 0;
      continue;
    }
    FUZZ_CHECK(w < 0 && (errno == EAGAIN || errno == EINTR));
    /* A server that stopped reading (it closed) leaves bytes unread. */
    if (++stuck > 3)
      return;
    settle(ctx, fd, o);
  }
}

static inline int close_code_ok(unsigned code) {
  if (code >= 3000 && code <= 4999)
    return 1;
  /* Registered codes an endpoint may send (1004-1006, 1015 may not). */
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

/*
 * Checks one server frame at o[*pos]; returns its opcode, or -1 when
 * the frame is cut short, which only the last one may be, and only
 * before EOF (bytes over loopback TCP can still be on their way, and a
 * full socket leaves a frame half written). max is the largest message
 * payload the server accepts.
 */
static inline int check_frame(const out_buf *o, size_t *pos,
                              uint64_t max) {
  const uint8_t *f = o->p + *pos;
  size_t left = o->len - *pos, hl = 2;
  uint64_t n;
  unsigned op;
  if (left < 2)
    return -1;
  FUZZ_CHECK((f[0] & 0xf0u) == 0x80u); /* FIN, no RSV bits */
  FUZZ_CHECK((f[1] & 0x80u) == 0);     /* servers never mask */
  op = f[0] & 0x0fu;
  n = f[1] & 0x7fu;
  if (n == 126) {
    if (left < 4)
      return -1;
    n = (uint64_t)f[2] << 8 | f[3];
    FUZZ_CHECK(n >= 126);
    hl = 4;
  } else if (n == 127) {
    if (left < 10)
      return -1;
    n = 0;
    for (hl = 2; hl < 10; hl++)
      n = n << 8 | f[hl];
    FUZZ_CHECK(n > 0xffff);
  }
  if (n > left - hl)
    return -1;
  f += hl;
  switch (op) {
  case 0x1:
    FUZZ_CHECK(cfd_utf8_valid(f, n));
    /* fall through */
  case 0x2:
    FUZZ_CHECK(n <= max);
    break;
  case 0x8:
    FUZZ_CHECK(n != 1 && n <= 125);
    if (n >= 2) {
      FUZZ_CHECK(close_code_ok((unsigned)f[0] << 8 | f[1]));
      FUZZ_CHECK(cfd_utf8_valid(f + 2, n - 2));
    }
    break;
  case 0x9:
  case 0xa:
    FUZZ_CHECK(n <= 125);
    break;
  default:
    FUZZ_CHECK(!"server sent an unknown opcode");
  }
  *pos += hl + n;
  return (int)op;
}

/*
 * Checks what the server wrote after a 101 head: well-formed frames, at
 * most one close, nothing after it. Returns 1 when o starts with a 101
 * head (then checked), 0 when it does not.
 */
static inline int check_ws_output(const out_buf *o, uint64_t max) {
  static const char head[] = "HTTP/1.1 101 ";
  const uint8_t *end;
  size_t pos;
  if (o->len < sizeof head - 1 || memcmp(o->p, head, sizeof head - 1) != 0)
    return 0;
  end = memmem(o->p, o->len, "\r\n\r\n", 4);
  FUZZ_CHECK(end != NULL || !o->eof);
  if (end == NULL)
    return 1;
  pos = (size_t)(end - o->p) + 4;
  while (pos < o->len) {
    int op = check_frame(o, &pos, max);
    if (op < 0) {
      FUZZ_CHECK(!o->eof);
      break;
    }
    if (op == 0x8)
      FUZZ_CHECK(pos == o->len); /* nothing after a close */
  }
  return 1;
}

#endif /* WS_CHECK_H */
