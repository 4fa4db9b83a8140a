/* chatfanoutd UTF-8 validation for text messages (RFC 3629). */
#ifndef CFD_UTF8_H
#define CFD_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * Returns 1 when s[0..len) is well-formed UTF-8 as RFC 3629 defines it:
 * no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no truncated sequence at the end. Returns 0 otherwise.
 * len 0 is valid; s may then be NULL.
 */
int cfd_utf8_valid(const uint8_t *s, size_t len);

#endif /* CFD_UTF8_H */
