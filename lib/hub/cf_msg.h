/*
 * Internal: the shared, reference-counted message. One allocation holds
 * the struct, the room name, CF_FRAME_HEADROOM_MAX bytes of headroom and
 * the payload. The frame header is stored right-aligned in the headroom,
 * so header and payload are contiguous wire bytes that every recipient's
 * outbox points at.
 */
#ifndef CF_MSG_H
#define CF_MSG_H

#include <chatfanout/cf_hub.h>

struct cf_msg {
  cf_mem mem;       /* copied: a message may outlive its hub */
  size_t refs;      /* >= 1 while reachable */
  uint64_t origin;  /* publishing instance; 0 for raw bytes */
  uint64_t seq;     /* per-origin sequence; 0 for raw bytes */
  uint64_t ts_ms;   /* publish time, ms since the epoch; 0 if unknown */
  size_t len;       /* payload bytes */
  uint32_t flags;   /* CF_MSG_TEXT, CF_MSG_BINARY or CF_MSG_RAW */
  uint8_t hdr_len;  /* frame header bytes, 0..CF_FRAME_HEADROOM_MAX */
  uint8_t room_len; /* 0 for raw bytes, else 1..CF_ROOM_MAX */
  /* Outbox entries holding it, in outboxes with a tally (cf_outbox.h):
   * its wire bytes count once in the tally while this is not 0. */
  uint32_t queued;
  uint8_t *data;    /* payload, inside buf */
  uint8_t buf[];    /* room name, headroom, payload */
};

/*
 * Allocates a message with refs 1, copying room (may be NULL when
 * room_len is 0) and len bytes of data. No header yet. NULL when out of
 * memory. len must be small enough for the caller's limits.
 */
cf_msg *cf__msg_new(const cf_mem *mem, const char *room, size_t room_len,
                    uint32_t flags, const void *data, size_t len);

/*
 * Runs framer once and stores its header in front of the payload.
 * Returns CF_OK, or CF_ERR_CALLBACK when the framer claims more than
 * CF_FRAME_HEADROOM_MAX bytes (the message is then unchanged).
 */
int cf__msg_frame(cf_msg *m, cf_framer_fn framer, void *user_data);

/* Fills env with borrowed pointers into m. */
void cf__msg_envelope(const cf_msg *m, cf_envelope *env);

static inline size_t cf__msg_wire_len(const cf_msg *m) {
  return m->hdr_len + m->len;
}

static inline const uint8_t *cf__msg_wire_ptr(const cf_msg *m) {
  return m->data - m->hdr_len;
}

#endif /* CF_MSG_H */
