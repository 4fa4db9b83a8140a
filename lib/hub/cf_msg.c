#include "cf_msg.h"

#include <string.h>

#include "cf_mem.h"

cf_msg *cf__msg_new(const cf_mem *mem, const char *room, size_t room_len,
                    uint32_t flags, const void *data, size_t len) {
  size_t fixed = sizeof(cf_msg) + room_len + CF_FRAME_HEADROOM_MAX;
  cf_msg *m;

  if (len > SIZE_MAX - fixed)
    return NULL;
  m = cf__malloc(mem, fixed + len);
  if (m == NULL)
    return NULL;
  m->mem = *mem;
  m->refs = 1;
  m->origin = 0;
  m->seq = 0;
  m->ts_ms = 0;
  m->len = len;
  m->flags = flags;
  m->hdr_len = 0;
  m->room_len = (uint8_t)room_len;
  m->queued = 0;
  if (room_len != 0)
    memcpy(m->buf, room, room_len);
  m->data = m->buf + room_len + CF_FRAME_HEADROOM_MAX;
  if (len != 0)
    memcpy(m->data, data, len);
  return m;
}

int cf__msg_frame(cf_msg *m, cf_framer_fn framer, void *user_data) {
  uint8_t hdr[CF_FRAME_HEADROOM_MAX];
  size_t n;

  if (framer == NULL)
    return CF_OK;
  n = framer(hdr, m->flags & CF_MSG_KIND_MASK, m->len, user_data);
  if (n > CF_FRAME_HEADROOM_MAX)
    return CF_ERR_CALLBACK;
  /* Right-aligned, so the header ends where the payload starts. */
  memcpy(m->data - n, hdr, n);
  m->hdr_len = (uint8_t)n;
  return CF_OK;
}

void cf__msg_envelope(const cf_msg *m, cf_envelope *env) {
  env->origin = m->origin;
  env->seq = m->seq;
  env->ts_ms = m->ts_ms;
  env->room = (const char *)m->buf;
  env->room_len = m->room_len;
  env->flags = m->flags & CF_MSG_KIND_MASK;
  env->data = m->data;
  env->len = m->len;
}

cf_msg *cf_msg_ref(cf_msg *m) {
  if (m != NULL)
    m->refs++;
  return m;
}

void cf_msg_unref(cf_msg *m) {
  if (m == NULL || --m->refs != 0)
    return;
  /* Copy the allocator out first: it lives inside the block it frees. */
  cf_mem mem = m->mem;
  cf__free(&mem, m);
}

const void *cf_msg_data(const cf_msg *m) {
  return m != NULL ? m->data : NULL;
}

size_t cf_msg_size(const cf_msg *m) {
  return m != NULL ? m->len : 0;
}

const void *cf_msg_wire(const cf_msg *m, size_t *len) {
  if (m == NULL) {
    if (len != NULL)
      *len = 0;
    return NULL;
  }
  if (len != NULL)
    *len = cf__msg_wire_len(m);
  return cf__msg_wire_ptr(m);
}

uint32_t cf_msg_flags(const cf_msg *m) {
  return m != NULL ? m->flags : 0;
}
