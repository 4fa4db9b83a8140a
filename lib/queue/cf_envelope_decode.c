/* Envelope wire decoder; the format is in cf_envelope.h. */
#include "cf_envelope.h"

#include <stdint.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cf_mem.h"

/* EVP_DecodeBlock takes an int length: work in chunks well below
 * INT_MAX. A multiple of 4 keeps base64 groups whole. */
#define B64_TXT_CHUNK (4u * 16384u)

/* The checked fields of a parsed object; strings point into the json_t. */
typedef struct fields {
  uint64_t origin;
  uint64_t seq;
  uint64_t ts;
  const char *room;
  size_t room_len;
  uint32_t flags;
  const char *data; /* the payload, or its base64 text */
  size_t data_len;
  size_t raw_len;   /* decoded payload bytes */
} fields;

/* Value of a lowercase hex digit, -1 for anything else. */
static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

/* Base64 alphabet value of c, -1 outside it ('=' included). */
static int b64val(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '+')
    return 62;
  if (c == '/')
    return 63;
  return -1;
}

/*
 * EVP_DecodeBlock skips leading whitespace, drops trailing junk, takes
 * '=' anywhere as zero bits and counts padding as output bytes, so the
 * text is checked here first and the padding left out of the length.
 * Returns the decoded length, or SIZE_MAX when s is not canonical.
 */
static size_t b64_decoded_len(const char *s, size_t n) {
  size_t pad = 0, i;

  if (n % 4 != 0)
    return SIZE_MAX;
  if (n == 0)
    return 0;
  pad = (s[n - 1] == '=') + (s[n - 1] == '=' && s[n - 2] == '=');
  for (i = 0; i < n - pad; i++)
    if (b64val(s[i]) < 0)
      return SIZE_MAX;
  /* Unused low bits of the last group must be zero (canonical form). */
  if (pad == 1 && (b64val(s[n - 2]) & 0x3) != 0)
    return SIZE_MAX;
  if (pad == 2 && (b64val(s[n - 3]) & 0xf) != 0)
    return SIZE_MAX;
  return n / 4 * 3 - pad;
}

/* dst has n / 4 * 3 bytes: EVP writes the padding positions too. */
static int b64_decode(unsigned char *dst, const char *s, size_t n) {
  size_t k;
  int got;

  while (n > 0) {
    k = n < B64_TXT_CHUNK ? n : B64_TXT_CHUNK;
    got = EVP_DecodeBlock(dst, (const unsigned char *)s, (int)k);
    if (got < 0 || (size_t)got != k / 4 * 3)
      return -1;
    dst += got;
    s += k;
    n -= k;
  }
  return 0;
}

static int get_uint(json_t *root, const char *key, int64_t min,
                    uint64_t *v) {
  json_t *j = json_object_get(root, key);
  json_int_t i;

  if (!json_is_integer(j))
    return -1;
  i = json_integer_value(j);
  if (i < min)
    return -1;
  *v = (uint64_t)i;
  return 0;
}

/* Returns a json string's bytes and length, NULL for non-strings. */
static const char *get_str(json_t *root, const char *key, size_t *len) {
  json_t *j = json_object_get(root, key);

  if (!json_is_string(j))
    return NULL;
  *len = json_string_length(j);
  return json_string_value(j);
}

static int reject(const char **why, const char *msg) {
  *why = msg;
  return -1;
}

static int parse_origin(json_t *root, fields *f) {
  size_t len, i;
  const char *s = get_str(root, "origin", &len);
  uint64_t v = 0;

  if (s == NULL || len != 16)
    return -1;
  for (i = 0; i < 16; i++) {
    int d = hexval(s[i]);
    if (d < 0)
      return -1;
    v = v << 4 | (uint64_t)d;
  }
  if (v == 0)
    return -1;
  f->origin = v;
  return 0;
}

static int check_id(json_t *root, const fields *f) {
  char want[CF__ENVELOPE_ID_MAX];
  size_t want_len, len;
  const char *s;

  if (json_object_get(root, "id") == NULL)
    return 0;
  s = get_str(root, "id", &len);
  want_len = cf__envelope_id(want, f->origin, f->seq);
  if (s == NULL || len != want_len || memcmp(s, want, len) != 0)
    return -1;
  return 0;
}

static int parse_type_data(json_t *root, fields *f, const char **why) {
  size_t len;
  const char *type = get_str(root, "type", &len);

  if (type != NULL && len == 4 && memcmp(type, "text", 4) == 0)
    f->flags = CF_MSG_TEXT;
  else if (type != NULL && len == 6 && memcmp(type, "binary", 6) == 0)
    f->flags = CF_MSG_BINARY;
  else
    return reject(why, "bad type");
  f->data = get_str(root, "data", &f->data_len);
  if (f->data == NULL)
    return reject(why, "missing or non-string data");
  /* jansson has already checked that text is UTF-8. */
  f->raw_len = f->data_len;
  if (f->flags == CF_MSG_BINARY) {
    f->raw_len = b64_decoded_len(f->data, f->data_len);
    if (f->raw_len == SIZE_MAX)
      return reject(why, "data is not canonical base64");
  }
  return 0;
}

/* Validates root into f. Returns 0, or -1 with *why set. */
static int parse_fields(json_t *root, fields *f, const char **why) {
  uint64_t v;

  if (!json_is_object(root))
    return reject(why, "not a JSON object");
  if (get_uint(root, "v", 0, &v) != 0 || v != CF__ENVELOPE_WIRE_VERSION)
    return reject(why, "missing or unsupported v");
  if (parse_origin(root, f) != 0)
    return reject(why, "origin is not 16 lowercase hex digits, non-zero");
  if (get_uint(root, "seq", 1, &f->seq) != 0)
    return reject(why, "seq is not an integer >= 1");
  if (get_uint(root, "ts", 0, &f->ts) != 0)
    return reject(why, "ts is not an integer >= 0");
  if (check_id(root, f) != 0)
    return reject(why, "id does not match origin and seq");
  f->room = get_str(root, "room", &f->room_len);
  if (f->room == NULL || f->room_len == 0 || f->room_len > CF_ROOM_MAX ||
      !cf__room_printable(f->room, f->room_len))
    return reject(why, "room is not 1..64 printable ASCII bytes");
  return parse_type_data(root, f, why);
}

/* Copies f into one block: [cf_envelope][room NUL][payload NUL]. */
static int build(cf_envelope **out, const fields *f, const cf_mem *mem) {
  /* Base64 decoding writes padding bytes too, so reserve n / 4 * 3. */
  size_t cap = f->flags == CF_MSG_BINARY ? f->data_len / 4 * 3
                                         : f->data_len;
  size_t fixed = sizeof(cf_envelope) + f->room_len + 2;
  cf_envelope *env;
  char *room;
  unsigned char *data;

  if (cap > SIZE_MAX - fixed)
    return CF_ERR_NOMEM;
  env = cf__malloc(mem, fixed + cap);
  if (env == NULL)
    return CF_ERR_NOMEM;
  room = (char *)(env + 1);
  data = (unsigned char *)room + f->room_len + 1;
  memcpy(room, f->room, f->room_len);
  room[f->room_len] = '\0';
  if (f->flags == CF_MSG_BINARY) {
    /* The text was checked, so this failing would be an OpenSSL quirk. */
    if (b64_decode(data, f->data, f->data_len) != 0) {
      cf__free(mem, env);
      return CF_ERR_PARSE;
    }
  } else if (f->data_len != 0) {
    memcpy(data, f->data, f->data_len);
  }
  data[f->raw_len] = '\0';
  env->origin = f->origin;
  env->seq = f->seq;
  env->ts_ms = f->ts;
  env->room = room;
  env->room_len = f->room_len;
  env->flags = f->flags;
  env->data = data;
  env->len = f->raw_len;
  *out = env;
  return CF_OK;
}

/* Maps a json_loadb failure to a code and a reason. */
static int load_error(const json_error_t *jerr, const char **why) {
#if JANSSON_VERSION_HEX >= 0x020b00
  switch (json_error_code(jerr)) {
  case json_error_out_of_memory:
    *why = "out of memory";
    return CF_ERR_NOMEM;
  case json_error_duplicate_key:
    *why = "duplicate key";
    return CF_ERR_PARSE;
  default:
    break;
  }
#else
  (void)jerr;
#endif
  *why = "not valid JSON";
  return CF_ERR_PARSE;
}

int cf__envelope_decode(cf_envelope **out, const void *buf, size_t len,
                        const cf_mem *mem, const char **reason) {
  const char *why = "";
  fields f;
  json_error_t jerr;
  json_t *root;
  int rv = CF_ERR_PARSE;

  if (out != NULL)
    *out = NULL;
  if (out == NULL || buf == NULL || mem == NULL)
    return CF_ERR_INVALID;
  /* NUL is allowed so text payloads holding U+0000 round-trip; any top
   * level value is parsed so that a scalar is reported as not an object
   * rather than as bad JSON. */
  root = json_loadb(buf, len,
                    JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
                    &jerr);
  if (root == NULL) {
    rv = load_error(&jerr, &why);
  } else {
    memset(&f, 0, sizeof(f));
    if (parse_fields(root, &f, &why) == 0) {
      rv = build(out, &f, mem);
      why = rv == CF_ERR_NOMEM ? "out of memory" : "data is not base64";
    }
    json_decref(root);
  }
  if (reason != NULL)
    *reason = rv == CF_OK ? "" : why;
  return rv;
}

void cf__envelope_free(cf_envelope *env, const cf_mem *mem) {
  if (env != NULL)
    cf__free(mem, env);
}
