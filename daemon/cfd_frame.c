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
