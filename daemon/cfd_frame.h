/*
 * chatfanoutd WebSocket frame headers (RFC 6455 5.2), server side: the
 * server never masks. Used as the hub's framer, so a chat message is
 * framed once and the same bytes go to every client, and for the few
 * control frames the daemon writes itself.
 */
#ifndef CFD_FRAME_H
#define CFD_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define CFD_WS_OP_TEXT 0x1u
#define CFD_WS_OP_BINARY 0x2u
#define CFD_WS_OP_CLOSE 0x8u

/* Longest header the server writes: 2 bytes + 64-bit length. */
#define CFD_FRAME_HEADER_MAX 10u

/* Longest close frame: header, code and a 123-byte reason. */
#define CFD_FRAME_CLOSE_MAX 127u

/*
 * Writes the header of a final (FIN) unmasked frame with opcode (low 4
 * bits used) and payload length len into buf, which must hold
 * CFD_FRAME_HEADER_MAX bytes. Uses the shortest length encoding, as the
 * RFC requires. Returns the header length: 2, 4 or 10.
 */
size_t cfd_frame_header(uint8_t *buf, unsigned opcode, uint64_t len);

/*
 * The hub framer (cf_framer_fn): a text frame for CF_MSG_TEXT, a binary
 * frame for CF_MSG_BINARY. user_data is unused.
 */
size_t cfd_frame_hub_framer(uint8_t *buf, uint32_t flags, size_t len,
                            void *user_data);

/*
 * Writes a whole close frame with code and reason (UTF-8, truncated to
 * 123 bytes; may be NULL when reason_len is 0) into buf, which must hold
 * CFD_FRAME_CLOSE_MAX bytes. Returns the frame length.
 */
size_t cfd_frame_close(uint8_t *buf, uint16_t code, const char *reason,
                       size_t reason_len);

/*
 * Follows the frame boundaries of a client's byte stream without
 * buffering payloads, to see the announced length of every data frame
 * as soon as its header is complete. wslay only checks the message size
 * once payload bytes arrive, so a header announcing 1 TiB followed by
 * silence would otherwise hold the connection until the idle timeout.
 * Zero-initialise before the first feed.
 */
typedef struct cfd_frame_scan {
  uint64_t skip;     /* payload bytes of the current frame still to pass */
  uint64_t msg_len;  /* payload bytes of the current data message so far */
  uint8_t hdr[10];   /* header bytes collected so far (mask key excluded) */
  uint8_t hlen;      /* bytes in hdr */
  uint8_t mask_left; /* mask key bytes still to pass */
  uint8_t in_msg;    /* a data frame without FIN was seen, no final yet */
  uint32_t done;     /* times the stream came back to idle (wraps) */
} cfd_frame_scan;

/*
 * Feeds the next n bytes of the stream. Returns 1 as soon as a data
 * frame header makes its message (continuations included) longer than
 * max bytes, else 0. Malformed input is not diagnosed here.
 */
int cfd_frame_scan_feed(cfd_frame_scan *s, const uint8_t *p, size_t n,
                        uint64_t max);

/* Longest valid client close frame: header, mask key, 125 bytes. */
#define CFD_FRAME_CLIENT_CLOSE_MAX 131u

/*
 * When the bytes fed so far end inside a close frame of at most 125
 * payload bytes, returns how many of its bytes (header, mask key and
 * payload so far) they hold, at most CFD_FRAME_CLIENT_CLOSE_MAX; else 0.
 * Lets a caller hand a close frame on whole.
 */
size_t cfd_frame_scan_close_partial(const cfd_frame_scan *s);

/*
 * 1 when every byte fed so far belongs to a whole message: no frame
 * header, payload or fragmented message is under way. A WebSocket
 * parser that has consumed all of those bytes holds no state worth
 * keeping then.
 */
int cfd_frame_scan_idle(const cfd_frame_scan *s);

#endif /* CFD_FRAME_H */
