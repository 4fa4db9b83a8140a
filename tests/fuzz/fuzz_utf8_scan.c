/*
 * Two small pieces of the daemon's input path, each against a
 * reference: the UTF-8 validator (cfd_utf8.c, and the envelope codec's
 * cf__utf8_valid) against a plain decoder written from RFC 3629, and
 * the frame scanner (cfd_frame.c), whose verdict and state must not
 * depend on how the stream is cut. Byte 0 is the scanner's limit
 * (2^(byte0 % 24) bytes), byte 1 the cut size; the rest is the data.
 */
#include "cf_envelope.h"
#include "cfd_frame.h"
#include "cfd_utf8.h"
#include "fuzz_common.h"

/* RFC 3629: decode each scalar value, then judge it. */
static int ref_utf8(const uint8_t *s, size_t len) {
  size_t i = 0, n, k;
  uint32_t cp, min;
  while (i < len) {
    uint8_t b = s[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    if ((b & 0xe0) == 0xc0) {
      n = 2, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
      n = 3, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
      n = 4, cp = b & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (len - i < n)
      return 0;
    for (k = 1; k < n; k++) {
      if ((s[i + k] & 0xc0) != 0x80)
        return 0;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += n;
  }
  return 1;
}

static void check_scan(const uint8_t *p, size_t n, uint64_t max,
                       size_t cut) {
  cfd_frame_scan whole, parts;
  size_t off = 0, k;
  int r_whole, r_parts = 0;
  memset(&whole, 0, sizeof whole);
  memset(&parts, 0, sizeof parts);
  r_whole = cfd_frame_scan_feed(&whole, p, n, max);
  while (off < n && !r_parts) {
    k = n - off < cut ? n - off : cut;
    r_parts = cfd_frame_scan_feed(&parts, p + off, k, max);
    off += k;
  }
  FUZZ_CHECK(r_whole == r_parts);
  if (!r_whole)
    FUZZ_CHECK(memcmp(&whole, &parts, sizeof whole) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf;
  size_t n;
  int ref;
  if (size < 2)
    return 0;
  n = size - 2;
  buf = (uint8_t *)fuzz_dup(data + 2, n, 0);
  ref = ref_utf8(buf, n);
  FUZZ_CHECK(cfd_utf8_valid(buf, n) == ref);
  FUZZ_CHECK(!cf__utf8_valid(buf, n) == !ref);
  check_scan(buf, n, (uint64_t)1 << (data[0] % 24), (size_t)data[1] + 1);
  free(buf);
  return 0;
}
