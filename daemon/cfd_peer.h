/* chatfanoutd peer addresses for log lines. */
#ifndef CFD_PEER_H
#define CFD_PEER_H

#include <stddef.h>
#include <stdint.h>

/*
 * A peer address kept in 20 bytes, so a long-lived connection can still
 * name its peer after a reset (getpeername(2) then fails).
 */
typedef struct cfd_peer {
  uint8_t addr[16]; /* IPv4 in the first 4 bytes */
  uint16_t port;    /* host order */
  uint8_t family;   /* 4, 6, or 0 when unknown */
} cfd_peer;

/* Fills p with fd's peer (family 0 when getpeername(2) fails). */
void cfd_peer_get(int fd, cfd_peer *p);

/* Formats p as "1.2.3.4:5678", "[::1]:5678" or "?" into buf. */
void cfd_peer_format(const cfd_peer *p, char *buf, size_t len);

/* cfd_peer_get() then cfd_peer_format(). */
void cfd_peer_str(int fd, char *buf, size_t len);

#endif /* CFD_PEER_H */
