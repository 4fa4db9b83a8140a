#include "cfd_frame.h"

#include <string.h>

#include <chatfanout/cf_queue.h>

size_t cfd_frame_header(uint8_t *buf, unsigned opcode, uint64_t len) {
  int i;
  buf[0] = (uint8_t)(0x80u | (opcode & 0x0fu));
  if (len < 126) {
    buf[1] = (uint8_t)len;
    return 2;
  }
  if (len <= 0xffffu) {
    buf[1] = 126;
    buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    return 4;
  }
  buf[1] = 127;
  /* The RFC reserves the top bit; payloads that big never reach here. */
  for (i = 0; i < 8; i++)
    buf[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

size_t cfd_frame_hub_framer(uint8_t *buf, uint32_t flags, size_t len,
                            void *user_data) {
  unsigned op = (flags & CF_MSG_KIND_MASK) == CF_MSG_BINARY
                    ? CFD_WS_OP_BINARY
                    : CFD_WS_OP_TEXT;
  (void)user_data;
  return cfd_frame_header(buf, op, len);
}

size_t cfd_frame_close(uint8_t *buf, uint16_t code, const char *reason,
                       size_t reason_len) {
  size_t n;
  if (reason_len > CFD_FRAME_CLOSE_MAX - 4)
    reason_len = CFD_FRAME_CLOSE_MAX - 4;
  n = cfd_frame_header(buf, CFD_WS_OP_CLOSE, 2 + reason_len);
  buf[n++] = (uint8_t)(code >> 8);
  buf[n++] = (uint8_t)code;
  if (reason_len > 0)
    memcpy(buf + n, reason, reason_len);
  return n + reason_len;
}

static size_t min_sz(uint64_t a, size_t b) { return a < b ? (size_t)a : b; }

/* Header bytes needed once the first two are known. */
static uint8_t header_need(const cfd_frame_scan *s) {
  uint8_t len7 = s->hdr[1] & 0x7fu;
  return len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
}

/* A whole header is in s->hdr: account for its frame. 1 if too big. */
static int header_done(cfd_frame_scan *s, uint64_t max) {
  uint8_t len7 = s->hdr[1] & 0x7fu, op = s->hdr[0] & 0x0fu;
  uint64_t len = len7;
  int i;
  if (len7 == 126)
    len = ((uint64_t)s->hdr[2] << 8) | s->hdr[3];
  else if (len7 == 127)
    for (len = 0, i = 2; i < 10; i++)
      len = (len << 8) | s->hdr[i];
  s->hlen = 0;
  s->skip = len;
  s->mask_left = (s->hdr[1] & 0x80u) ? 4 : 0;
  if (op >= 8)
    return 0; /* control frames sit between fragments */
  if (op != 0)
    s->msg_len = 0;
  if (len > max || s->msg_len > max - len)
    return 1;
  s->msg_len += len;
  s->in_msg = (s->hdr[0] & 0x80u) == 0;
  if (!s->in_msg)
    s->msg_len = 0;
  return 0;
}

int cfd_frame_scan_idle(const cfd_frame_scan *s) {
  return s->hlen == 0 && s->skip == 0 && s->mask_left == 0 && !s->in_msg;
}

/*
 * Derived from the state: hdr keeps the last header after hlen is reset,
 * and a close header of 7-bit length is done at its second byte.
 */
size_t cfd_frame_scan_close_partial(const cfd_frame_scan *s) {
  uint8_t len7 = s->hdr[1] & 0x7fu;
  if ((s->hdr[0] & 0x0fu) != CFD_WS_OP_CLOSE)
    return 0;
  if (s->hlen > 0) /* only a first byte, or a length too big to hold */
    return s->hlen == 1 ? 1 : 0;
  if ((s->mask_left == 0 && s->skip == 0) || len7 > 125)
    return 0;
  return 2u + ((s->hdr[1] & 0x80u) ? 4u - s->mask_left : 0u) +
         (size_t)(len7 - s->skip);
}

int cfd_frame_scan_feed(cfd_frame_scan *s, const uint8_t *p, size_t n,
                        uint64_t max) {
  size_t k;
  while (n > 0) {
    if (s->mask_left > 0 || s->skip > 0) {
      k = s->mask_left > 0 ? min_sz(s->mask_left, n) : min_sz(s->skip, n);
      if (s->mask_left > 0)
        s->mask_left -= (uint8_t)k;
      else
        s->skip -= k;
      p += k;
      n -= k;
      s->done += (uint32_t)cfd_frame_scan_idle(s);
      continue;
    }
    s->hdr[s->hlen++] = *p++;
    n--;
    if (s->hlen >= 2 && s->hlen == header_need(s)) {
      if (header_done(s, max))
        return 1;
      s->done += (uint32_t)cfd_frame_scan_idle(s);
    }
  }
  return 0;
}
