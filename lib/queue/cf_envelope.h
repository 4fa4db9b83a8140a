/*
 * Internal: the envelope wire codec used by network queue backends.
 *
 * Wire form
 * ---------
 * One envelope is one JSON object (RFC 8259, UTF-8). The encoder writes
 * exactly these keys, in this order, with no whitespace:
 *
 *   {"v":1,"id":"00000000000000a1-7","origin":"00000000000000a1","seq":7,
 *    "ts":1700000000000,"room":"lobby","type":"text","data":"hello"}
 *
 *   v       integer, the format version; always 1.
 *   id      string "<origin>-<seq>": the origin as below, a hyphen, then
 *           seq in decimal without leading zeros. Redundant with origin
 *           and seq; it is there so that brokers and people can use the
 *           message id without parsing. Optional when decoding; when
 *           present it must equal the one built from origin and seq.
 *   origin  string, the publishing instance id as exactly 16 lowercase
 *           hex digits, zero-padded; never all zeros.
 *   seq     integer, 1 .. 2^63-1: the per-origin sequence number.
 *   ts      integer, 0 .. 2^63-1: publish time in ms since the Unix
 *           epoch, 0 when unknown.
 *   room    string of 1..CF_ROOM_MAX (64) bytes, each printable ASCII
 *           0x21..0x7e (no space, no control, no non-ASCII byte).
 *   type    "text" or "binary".
 *   data    string. For "text" the payload itself (UTF-8, so any valid
 *           UTF-8 including U+0000 round-trips; the encoder escapes '"',
 *           '\' and the bytes 0x00..0x1f, and writes everything else
 *           as is). For "binary" the payload in standard base64 (RFC
 *           4648 section 4, alphabet A-Z a-z 0-9 + /, '=' padding, no
 *           line breaks); the empty payload is "".
 *
 * Decoding is strict about everything above and lenient only where the
 * format must evolve:
 *   - the input must be exactly one JSON object; trailing bytes other
 *     than JSON whitespace, invalid UTF-8 and duplicate keys are errors;
 *   - the \u0000 escape is allowed (text payloads may hold U+0000), but
 *     fails the room, origin and id checks where it cannot belong;
 *   - v must be the integer 1; a different v is rejected before any
 *     other check, since a later version may change the other keys;
 *   - integers must be JSON integers (no fraction, no exponent) in the
 *     ranges above; origin hex must be lowercase;
 *   - base64 must be canonical: length a multiple of 4, no whitespace,
 *     at most two '=' and only at the end, and zero bits in the unused
 *     low bits of the last group, so that decode then encode gives back
 *     the same text;
 *   - unknown keys are ignored, so newer writers may add keys.
 *
 * jansson allocates with its process-global allocator. The library never
 * calls json_set_alloc_funcs(): that would change it for the whole host
 * process, which may use jansson itself. jansson's allocations are
 * transient (freed before cf__envelope_decode returns); the result is
 * one block from the caller's cf_mem.
 */
#ifndef CF_ENVELOPE_H
#define CF_ENVELOPE_H

#include <chatfanout/cf_queue.h>

/* Wire format version written by the encoder and accepted by the
 * decoder. */
#define CF__ENVELOPE_WIRE_VERSION 1

/* Bytes of the longest id string ("<16 hex>-<20 digits>") plus NUL. */
#define CF__ENVELOPE_ID_MAX (16 + 1 + 20 + 1)

/*
 * Checks env against the cf_envelope contract that every backend relies
 * on: non-NULL room of 1..CF_ROOM_MAX bytes, origin != 0, seq != 0,
 * flags exactly CF_MSG_TEXT or CF_MSG_BINARY, data non-NULL when len > 0.
 * Wire-only limits are checked by the encoder. Returns CF_OK or
 * CF_ERR_INVALID.
 */
int cf__envelope_check(const cf_envelope *env);

/* Returns nonzero when the len bytes at s are well-formed UTF-8 (no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
int cf__utf8_valid(const void *s, size_t len);

/* Returns nonzero when every one of the len bytes of room is printable
 * ASCII 0x21..0x7e, as the wire form requires. */
int cf__room_printable(const char *room, size_t len);

/*
 * Writes the id "<origin hex16>-<seq>" and a NUL into buf, which holds
 * CF__ENVELOPE_ID_MAX bytes. Returns the length without the NUL.
 */
size_t cf__envelope_id(char *buf, uint64_t origin, uint64_t seq);

/*
 * Computes the exact length of env's wire form (without a NUL) into
 * *len. Returns CF_OK; CF_ERR_INVALID when env fails
 * cf__envelope_check(), has a room byte outside 0x21..0x7e, a text
 * payload that is not UTF-8, or seq/ts above 2^63-1; CF_ERR_TOO_BIG when
 * the length does not fit in size_t.
 */
int cf__envelope_encoded_len(const cf_envelope *env, size_t *len);

/*
 * Writes env's wire form and a terminating NUL into buf (cap bytes).
 * *len gets the length without the NUL, also when cap is too small.
 * Returns the codes of cf__envelope_encoded_len(), or CF_ERR_TOO_BIG
 * when cap < *len + 1 (buf is then untouched).
 */
int cf__envelope_encode(const cf_envelope *env, char *buf, size_t cap,
                        size_t *len);

/*
 * Like cf__envelope_encode() into one new NUL-terminated block from mem,
 * which the caller frees with cf__free(mem, *out). On error *out is
 * NULL. Adds CF_ERR_NOMEM to the codes above.
 */
int cf__envelope_encode_alloc(char **out, size_t *out_len,
                              const cf_envelope *env, const cf_mem *mem);

/*
 * Parses one wire envelope from the len bytes at buf (need not be
 * NUL-terminated). On success *out is a new envelope in a single block
 * from mem: its room and data point inside that block and are each
 * followed by a NUL byte not counted in room_len/len (handy for logs;
 * data may itself contain NULs). Free it with cf__envelope_free().
 *
 * Returns CF_OK; CF_ERR_PARSE for malformed input (*out NULL and, when
 * reason is not NULL, *reason a static English phrase saying which rule
 * failed); CF_ERR_NOMEM; CF_ERR_INVALID for NULL out or buf.
 */
int cf__envelope_decode(cf_envelope **out, const void *buf, size_t len,
                        const cf_mem *mem, const char **reason);

/* Frees an envelope from cf__envelope_decode(). Accepts NULL. */
void cf__envelope_free(cf_envelope *env, const cf_mem *mem);

#endif /* CF_ENVELOPE_H */
