#include "cfd_utf8.h"

#include <string.h>

/* Chat text is mostly ASCII: skip it eight bytes at a time. */
static size_t ascii_prefix(const uint8_t *s, size_t len) {
  size_t i = 0;
  uint64_t w;
  while (i + 8 <= len) {
    memcpy(&w, s + i, 8);
    if (w & UINT64_C(0x8080808080808080))
      break;
    i += 8;
  }
  while (i < len && s[i] < 0x80)
    i++;
  return i;
}

static int is_cont(uint8_t b) { return (b & 0xc0u) == 0x80u; }

/*
 * Length of the sequence led by s[0] (>= 0x80) when it is valid and
 * complete in avail bytes, else 0. The second byte's range carries the
 * overlong, surrogate and U+10FFFF checks (RFC 3629 section 4).
 */
static size_t seq_len(const uint8_t *s, size_t avail) {
  uint8_t b = s[0], lo = 0x80, hi = 0xbf;
  size_t n;
  if (b >= 0xc2 && b <= 0xdf)
    n = 2;
  else if (b >= 0xe0 && b <= 0xef)
    n = 3;
  else if (b >= 0xf0 && b <= 0xf4)
    n = 4;
  else
    return 0;
  if (b == 0xe0)
    lo = 0xa0;
  else if (b == 0xed)
    hi = 0x9f;
  else if (b == 0xf0)
    lo = 0x90;
  else if (b == 0xf4)
    hi = 0x8f;
  if (avail < n || s[1] < lo || s[1] > hi)
    return 0;
  if (n >= 3 && !is_cont(s[2]))
    return 0;
  if (n == 4 && !is_cont(s[3]))
    return 0;
  return n;
}

int cfd_utf8_valid(const uint8_t *s, size_t len) {
  size_t i = 0, n;
  while (i < len) {
    i += ascii_prefix(s + i, len - i);
    if (i == len)
      break;
    n = seq_len(s + i, len - i);
    if (n == 0)
      return 0;
    i += n;
  }
  return 1;
}
