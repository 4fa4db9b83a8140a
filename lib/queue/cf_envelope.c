/* Envelope checks and wire encoder; the format is in cf_envelope.h. */
#include "cf_envelope.h"

#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "cf_mem.h"

/* EVP_EncodeBlock takes an int length: work in chunks well below
 * INT_MAX. A multiple of 3 keeps base64 groups whole. */
#define B64_RAW_CHUNK (3u * 16384u)

static const char hexdigits[] = "0123456789abcdef";

/* --- checks ----------------------------------------------------------- */

int cf__envelope_check(const cf_envelope *env) {
  if (env == NULL || env->room == NULL)
    return CF_ERR_INVALID;
  if (env->room_len == 0 || env->room_len > CF_ROOM_MAX)
    return CF_ERR_INVALID;
  if (env->origin == 0 || env->seq == 0)
    return CF_ERR_INVALID;
  if (env->flags != CF_MSG_TEXT && env->flags != CF_MSG_BINARY)
    return CF_ERR_INVALID;
  if (env->data == NULL && env->len != 0)
    return CF_ERR_INVALID;
  return CF_OK;
}

/* Length of the UTF-8 sequence starting at s[0..n), 0 when malformed. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t need, i;
  unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */

  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf)
    need = 2;
  else if (c >= 0xe0 && c <= 0xef)
    need = 3;
  else if (c >= 0xf0 && c <= 0xf4)
    need = 4;
  else
    return 0; /* continuation byte, overlong lead 0xc0/0xc1, or > 0xf4 */
  /* These bounds exclude overlongs, UTF-16 surrogates and > U+10FFFF. */
  if (c == 0xe0)
    lo = 0xa0;
  else if (c == 0xed)
    hi = 0x9f;
  else if (c == 0xf0)
    lo = 0x90;
  else if (c == 0xf4)
    hi = 0x8f;
  if (n < need || s[1] < lo || s[1] > hi)
    return 0;
  for (i = 2; i < need; i++)
    if ((s[i] & 0xc0) != 0x80)
      return 0;
  return need;
}

int cf__utf8_valid(const void *s, size_t len) {
  const unsigned char *p = s;
  size_t i = 0, n;

  while (i < len) {
    if (p[i] < 0x80) {
      i++;
      continue;
    }
    n = utf8_seq(p + i, len - i);
    if (n == 0)
      return 0;
    i += n;
  }
  return 1;
}

int cf__room_printable(const char *room, size_t len) {
  size_t i;
  for (i = 0; i < len; i++)
    if ((unsigned char)room[i] < 0x21 || (unsigned char)room[i] > 0x7e)
      return 0;
  return 1;
}

/* What the wire adds to cf__envelope_check(). */
static int wire_check(const cf_envelope *env) {
  if (cf__envelope_check(env) != CF_OK)
    return CF_ERR_INVALID;
  /* jansson reads integers as signed 64-bit. */
  if (env->seq > (uint64_t)INT64_MAX || env->ts_ms > (uint64_t)INT64_MAX)
    return CF_ERR_INVALID;
  if (!cf__room_printable(env->room, env->room_len))
    return CF_ERR_INVALID;
  if (env->flags == CF_MSG_TEXT && !cf__utf8_valid(env->data, env->len))
    return CF_ERR_INVALID;
  return CF_OK;
}

/* --- number formatting ------------------------------------------------ */

/* Writes v in decimal (no NUL) and returns the digit count (1..20). */
static size_t fmt_u64(char *buf, uint64_t v) {
  char tmp[20];
  size_t n = 0, i;

  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (i = 0; i < n; i++)
    buf[i] = tmp[n - 1 - i];
  return n;
}

static void fmt_hex16(char *buf, uint64_t v) {
  int i;
  for (i = 15; i >= 0; i--) {
    buf[i] = hexdigits[v & 0xf];
    v >>= 4;
  }
}

size_t cf__envelope_id(char *buf, uint64_t origin, uint64_t seq) {
  size_t n;

  fmt_hex16(buf, origin);
  buf[16] = '-';
  n = 17 + fmt_u64(buf + 17, seq);
  buf[n] = '\0';
  return n;
}

/* --- encoder ------------------------------------------------------------ */

/*
 * One code path both measures and writes, so the length computed for the
 * allocation cannot drift from what is written: with buf == NULL the
 * writer only counts.
 */
typedef struct wr {
  char *buf;    /* destination, NULL while measuring */
  size_t len;   /* bytes counted or written so far */
  int overflow; /* set when len would wrap around */
} wr;

/* Counts n more bytes; returns 0 when the total would wrap around. */
static int wr_count(wr *w, size_t n) {
  if (w->overflow || n > SIZE_MAX - w->len) {
    w->overflow = 1;
    return 0;
  }
  w->len += n;
  return 1;
}

static void wr_put(wr *w, const void *s, size_t n) {
  size_t at = w->len;

  if (wr_count(w, n) && w->buf != NULL && n != 0)
    memcpy(w->buf + at, s, n);
}

static void wr_str(wr *w, const char *s) {
  wr_put(w, s, strlen(s));
}

static void wr_u64(wr *w, uint64_t v) {
  char tmp[20];
  wr_put(w, tmp, fmt_u64(tmp, v));
}

/* The JSON escape for byte c, or NULL when c goes out as is. */
static const char *json_escape(unsigned char c, char u[7]) {
  switch (c) {
  case '"': return "\\\"";
  case '\\': return "\\\\";
  case '\b': return "\\b";
  case '\f': return "\\f";
  case '\n': return "\\n";
  case '\r': return "\\r";
  case '\t': return "\\t";
  default: break;
  }
  if (c >= 0x20)
    return NULL;
  memcpy(u, "\\u00", 4);
  u[4] = hexdigits[c >> 4];
  u[5] = hexdigits[c & 0xf];
  u[6] = '\0';
  return u;
}

/* Writes s as the inside of a JSON string; s is already valid UTF-8. */
static void wr_escaped(wr *w, const char *s, size_t len) {
  size_t run = 0, i;
  char u[7];

  if (len == 0)
    return; /* s may be NULL */
  for (i = 0; i < len; i++) {
    const char *esc = json_escape((unsigned char)s[i], u);
    if (esc == NULL)
      continue;
    /* Copy plain bytes in runs rather than one by one. */
    wr_put(w, s + run, i - run);
    wr_str(w, esc);
    run = i + 1;
  }
  wr_put(w, s + run, len - run);
}

static void wr_base64(wr *w, const unsigned char *p, size_t len) {
  size_t out, n;

  if (len / 3 >= SIZE_MAX / 4) {
    w->overflow = 1;
    return;
  }
  out = (len + 2) / 3 * 4;
  if (w->buf == NULL || w->overflow) {
    wr_count(w, out);
    return;
  }
  /*
   * EVP_EncodeBlock NUL-terminates its output. That extra byte always
   * lands inside the buffer: the closing `"}` and the final NUL follow
   * the data, and each chunk's NUL is overwritten by the next chunk.
   */
  while (len > 0) {
    n = len < B64_RAW_CHUNK ? len : B64_RAW_CHUNK;
    w->len += (size_t)EVP_EncodeBlock((unsigned char *)w->buf + w->len,
                                      p, (int)n);
    p += n;
    len -= n;
  }
}

static void wr_envelope(wr *w, const cf_envelope *env) {
  char id[CF__ENVELOPE_ID_MAX];
  size_t id_len = cf__envelope_id(id, env->origin, env->seq);

  wr_str(w, "{\"v\":1,\"id\":\"");
  wr_put(w, id, id_len);
  wr_str(w, "\",\"origin\":\"");
  wr_put(w, id, 16);
  wr_str(w, "\",\"seq\":");
  wr_u64(w, env->seq);
  wr_str(w, ",\"ts\":");
  wr_u64(w, env->ts_ms);
  wr_str(w, ",\"room\":\"");
  wr_escaped(w, env->room, env->room_len);
  if (env->flags == CF_MSG_BINARY) {
    wr_str(w, "\",\"type\":\"binary\",\"data\":\"");
    wr_base64(w, env->data, env->len);
  } else {
    wr_str(w, "\",\"type\":\"text\",\"data\":\"");
    wr_escaped(w, env->data, env->len);
  }
  wr_str(w, "\"}");
}

int cf__envelope_encoded_len(const cf_envelope *env, size_t *len) {
  wr w = {NULL, 0, 0};

  if (len == NULL || wire_check(env) != CF_OK)
    return CF_ERR_INVALID;
  wr_envelope(&w, env);
  if (w.overflow || w.len == SIZE_MAX)
    return CF_ERR_TOO_BIG; /* SIZE_MAX leaves no room for the NUL */
  *len = w.len;
  return CF_OK;
}

int cf__envelope_encode(const cf_envelope *env, char *buf, size_t cap,
                        size_t *len) {
  wr w = {NULL, 0, 0};
  int rv;

  if (buf == NULL)
    return CF_ERR_INVALID;
  rv = cf__envelope_encoded_len(env, len);
  if (rv != CF_OK)
    return rv;
  if (cap < *len + 1)
    return CF_ERR_TOO_BIG;
  w.buf = buf;
  wr_envelope(&w, env);
  buf[w.len] = '\0';
  return CF_OK;
}

int cf__envelope_encode_alloc(char **out, size_t *out_len,
                              const cf_envelope *env, const cf_mem *mem) {
  size_t len;
  char *buf;
  int rv;

  if (out == NULL || out_len == NULL || mem == NULL)
    return CF_ERR_INVALID;
  *out = NULL;
  rv = cf__envelope_encoded_len(env, &len);
  if (rv != CF_OK)
    return rv;
  buf = cf__malloc(mem, len + 1);
  if (buf == NULL)
    return CF_ERR_NOMEM;
  rv = cf__envelope_encode(env, buf, len + 1, out_len);
  if (rv != CF_OK) { /* cannot happen: same env, measured above */
    cf__free(mem, buf);
    return rv;
  }
  *out = buf;
  return CF_OK;
}
