/* Envelope wire codec: round trips, exact output, strict rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cf_envelope.h"
#include "cf_mem.h"
#include "hub_fixture.h"

static cf_envelope text_env(const char *room, const char *data) {
  cf_envelope e;

  memset(&e, 0, sizeof(e));
  e.origin = 0xa1;
  e.seq = 7;
  e.ts_ms = 1700000000000ull;
  e.room = room;
  e.room_len = strlen(room);
  e.flags = CF_MSG_TEXT;
  e.data = data;
  e.len = data != NULL ? strlen(data) : 0;
  return e;
}

/* Encodes env, checks the text is want (when not NULL), decodes it back
 * and checks every field survived. */
static void round_trip(const cf_envelope *env, const char *want) {
  char *json;
  size_t len, mlen;
  cf_envelope *got;
  const char *why = NULL;

  assert_int_equal(cf__envelope_encoded_len(env, &mlen), CF_OK);
  assert_int_equal(cf__envelope_encode_alloc(&json, &len, env, &tm.mem),
                   CF_OK);
  assert_int_equal(len, mlen);
  assert_int_equal(strlen(json), len); /* no NUL inside, terminated */
  if (want != NULL)
    assert_string_equal(json, want);
  assert_int_equal(cf__envelope_decode(&got, json, len, &tm.mem, &why),
                   CF_OK);
  assert_string_equal(why, "");
  assert_int_equal(got->origin, env->origin);
  assert_int_equal(got->seq, env->seq);
  assert_int_equal(got->ts_ms, env->ts_ms);
  assert_int_equal(got->flags, env->flags);
  assert_int_equal(got->room_len, env->room_len);
  assert_memory_equal(got->room, env->room, env->room_len);
  assert_int_equal(got->room[got->room_len], '\0');
  assert_int_equal(got->len, env->len);
  if (env->len != 0)
    assert_memory_equal(got->data, env->data, env->len);
  assert_int_equal(((const char *)got->data)[got->len], '\0');
  cf__envelope_free(got, &tm.mem);
  cf__free(&tm.mem, json);
}

static void test_text_exact(void **state) {
  cf_envelope e = text_env("lobby", "hello");

  (void)state;
  round_trip(&e, "{\"v\":1,\"id\":\"00000000000000a1-7\","
                 "\"origin\":\"00000000000000a1\",\"seq\":7,"
                 "\"ts\":1700000000000,\"room\":\"lobby\","
                 "\"type\":\"text\",\"data\":\"hello\"}");
}

static void test_text_escapes(void **state) {
  static const char data[] = "q\"b\\n\n\t\r\b\f\x01\x1f\x7f\0end";
  cf_envelope e = text_env("r", NULL);

  (void)state;
  e.data = data;
  e.len = sizeof(data) - 1; /* the NUL inside is part of the payload */
  round_trip(&e, "{\"v\":1,\"id\":\"00000000000000a1-7\","
                 "\"origin\":\"00000000000000a1\",\"seq\":7,"
                 "\"ts\":1700000000000,\"room\":\"r\",\"type\":\"text\","
                 "\"data\":\"q\\\"b\\\\n\\n\\t\\r\\b\\f\\u0001\\u001f"
                 "\x7f\\u0000end\"}");
}

static void test_unicode(void **state) {
  /* 2-, 3- and 4-byte forms, the largest code point, U+FFFF. */
  cf_envelope e = text_env("lobby", "h\xc3\xa9llo \xe2\x82\xac "
                                    "\xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf "
                                    "\xef\xbf\xbf");
  static const char esc[] =
      "{\"v\":1,\"origin\":\"0000000000000001\",\"seq\":1,\"ts\":0,"
      "\"room\":\"x\",\"type\":\"text\","
      "\"data\":\"\\u00e9\\ud834\\udd1e\"}";
  cf_envelope *got;

  (void)state;
  round_trip(&e, NULL);
  /* Escaped forms decode to the same UTF-8 bytes. */
  assert_int_equal(cf__envelope_decode(&got, esc, strlen(esc), &tm.mem,
                                       NULL), CF_OK);
  assert_int_equal(got->len, 6);
  assert_memory_equal(got->data, "\xc3\xa9\xf0\x9d\x84\x9e", 6);
  cf__envelope_free(got, &tm.mem);
}

static void test_empty_payloads(void **state) {
  cf_envelope e = text_env("lobby", NULL);
  char buf[256];
  size_t len;

  (void)state;
  round_trip(&e, NULL);
  e.flags = CF_MSG_BINARY;
  round_trip(&e, NULL);
  assert_int_equal(cf__envelope_encode(&e, buf, sizeof(buf), &len), CF_OK);
  assert_non_null(strstr(buf, "\"type\":\"binary\",\"data\":\"\"}"));
}

static void test_binary_all_bytes(void **state) {
  unsigned char all[256];
  cf_envelope e = text_env("bin", NULL);
  size_t i, n;

  (void)state;
  for (i = 0; i < sizeof(all); i++)
    all[i] = (unsigned char)i;
  e.flags = CF_MSG_BINARY;
  e.data = all;
  /* Every length mod 3, so every padding case, with every byte value. */
  for (n = 0; n <= sizeof(all); n++) {
    e.len = n;
    round_trip(&e, NULL);
  }
}

static void test_base64_vectors(void **state) {
  /* RFC 4648 section 10. */
  static const char *const vec[][2] = {
      {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
      {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  cf_envelope e = text_env("b", NULL);
  char buf[256], want[64];
  size_t i, len;

  (void)state;
  e.flags = CF_MSG_BINARY;
  for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
    e.data = vec[i][0];
    e.len = strlen(vec[i][0]);
    assert_int_equal(cf__envelope_encode(&e, buf, sizeof(buf), &len),
                     CF_OK);
    snprintf(want, sizeof(want), "\"data\":\"%s\"}", vec[i][1]);
    assert_string_equal(buf + len - strlen(want), want);
    round_trip(&e, NULL);
  }
}

/* Bigger than one EVP chunk (48 KiB raw, 64 KiB text) in both ways. */
static void test_binary_large(void **state) {
  size_t n = 200001, i;
  unsigned char *p = malloc(n);
  cf_envelope e = text_env("big", NULL);

  (void)state;
  assert_non_null(p);
  for (i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 131 + (i >> 8));
  e.flags = CF_MSG_BINARY;
  e.data = p;
  e.len = n;
  round_trip(&e, NULL);
  free(p);
}

static void test_room_limits(void **state) {
  char room[CF_ROOM_MAX + 2];
  cf_envelope e = text_env("x", "hi");
  size_t i, len;

  (void)state;
  /* 64 bytes spanning the whole allowed range, '"' and '\' included. */
  for (i = 0; i < CF_ROOM_MAX; i++)
    room[i] = (char)(0x21 + (i * 3) % (0x7f - 0x21));
  room[0] = '"';
  room[1] = '\\';
  room[2] = '~';
  e.room = room;
  e.room_len = CF_ROOM_MAX;
  round_trip(&e, NULL);
  e.room_len = CF_ROOM_MAX + 1;
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
  e.room_len = 3;
  room[1] = ' ';
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
  room[1] = 0x7f;
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
  room[1] = (char)0xc3;
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
}

static void test_number_limits(void **state) {
  cf_envelope e = text_env("x", "");
  size_t len;

  (void)state;
  e.origin = UINT64_MAX;
  e.seq = INT64_MAX;
  e.ts_ms = INT64_MAX;
  round_trip(&e, "{\"v\":1,\"id\":\"ffffffffffffffff-9223372036854775807\","
                 "\"origin\":\"ffffffffffffffff\","
                 "\"seq\":9223372036854775807,"
                 "\"ts\":9223372036854775807,\"room\":\"x\","
                 "\"type\":\"text\",\"data\":\"\"}");
  e.ts_ms = 0;
  e.seq = 1;
  round_trip(&e, NULL);
  e.seq = (uint64_t)INT64_MAX + 1;
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
  e.seq = 1;
  e.ts_ms = (uint64_t)INT64_MAX + 1;
  assert_int_equal(cf__envelope_encoded_len(&e, &len), CF_ERR_INVALID);
}

static void test_envelope_id(void **state) {
  char id[CF__ENVELOPE_ID_MAX];

  (void)state;
  assert_int_equal(cf__envelope_id(id, 1, 1), 18);
  assert_string_equal(id, "0000000000000001-1");
  assert_int_equal(cf__envelope_id(id, UINT64_MAX, UINT64_MAX),
                   CF__ENVELOPE_ID_MAX - 1);
  assert_string_equal(id, "ffffffffffffffff-18446744073709551615");
  assert_int_equal(cf__envelope_id(id, 0xdeadbeef, 1000), 21);
  assert_string_equal(id, "00000000deadbeef-1000");
}

static void test_check(void **state) {
  cf_envelope e = text_env("x", "hi"), bad;
  size_t len;

  (void)state;
  assert_int_equal(cf__envelope_check(&e), CF_OK);
  assert_int_equal(cf__envelope_check(NULL), CF_ERR_INVALID);
  bad = e, bad.room = NULL;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.room_len = 0;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.room_len = CF_ROOM_MAX + 1;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.origin = 0;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.seq = 0;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.flags = CF_MSG_RAW;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.flags = CF_MSG_BINARY | CF_MSG_RAW;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.flags = 2;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  bad = e, bad.data = NULL;
  assert_int_equal(cf__envelope_check(&bad), CF_ERR_INVALID);
  assert_int_equal(cf__envelope_encoded_len(&bad, &len), CF_ERR_INVALID);
  bad.len = 0; /* NULL is fine for an empty payload */
  assert_int_equal(cf__envelope_check(&bad), CF_OK);
  assert_int_equal(cf__envelope_encoded_len(&e, NULL), CF_ERR_INVALID);
}

static void test_utf8(void **state) {
  static const struct {
    const char *s;
    int ok;
  } t[] = {
      {"", 1},
      {"plain ascii \x7f", 1},
      {"\xc2\x80", 1},                 /* U+0080 */
      {"\xdf\xbf", 1},                 /* U+07FF */
      {"\xe0\xa0\x80", 1},             /* U+0800 */
      {"\xed\x9f\xbf", 1},             /* U+D7FF */
      {"\xee\x80\x80", 1},             /* U+E000 */
      {"\xf0\x90\x80\x80", 1},         /* U+10000 */
      {"\xf4\x8f\xbf\xbf", 1},         /* U+10FFFF */
      {"\x80", 0},                     /* lone continuation */
      {"\xc0\x80", 0},                 /* overlong NUL */
      {"\xc1\xbf", 0},                 /* overlong */
      {"\xe0\x9f\xbf", 0},             /* overlong 3-byte */
      {"\xf0\x8f\xbf\xbf", 0},         /* overlong 4-byte */
      {"\xed\xa0\x80", 0},             /* surrogate U+D800 */
      {"\xed\xbf\xbf", 0},             /* surrogate U+DFFF */
      {"\xf4\x90\x80\x80", 0},         /* U+110000 */
      {"\xf5\x80\x80\x80", 0},         /* lead > F4 */
      {"\xff", 0},
      {"\xe2\x82", 0},                 /* truncated */
      {"\xe2\x82\x41", 0},             /* bad continuation */
      {"ok\xf0\x9f\x98", 0},           /* truncated at the end */
  };
  cf_envelope e = text_env("x", NULL);
  size_t i, len;

  (void)state;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    e.data = t[i].s;
    e.len = strlen(t[i].s);
    assert_int_equal(cf__utf8_valid(t[i].s, e.len), t[i].ok);
    /* The encoder refuses text that is not UTF-8. */
    assert_int_equal(cf__envelope_encoded_len(&e, &len),
                     t[i].ok ? CF_OK : CF_ERR_INVALID);
  }
  /* The same bytes are fine as a binary payload. */
  e.flags = CF_MSG_BINARY;
  e.data = "\xc0\x80\xff";
  e.len = 3;
  round_trip(&e, NULL);
}

static void test_encode_buffer(void **state) {
  cf_envelope e = text_env("lobby", "hello");
  size_t need, len = 0;
  char *buf;

  (void)state;
  assert_int_equal(cf__envelope_encoded_len(&e, &need), CF_OK);
  /* Exactly sized heap block: any overrun shows under ASan. */
  buf = malloc(need + 1);
  assert_non_null(buf);
  memset(buf, 'Z', need + 1);
  assert_int_equal(cf__envelope_encode(&e, buf, need, &len),
                   CF_ERR_TOO_BIG);
  assert_int_equal(len, need);
  assert_int_equal(buf[0], 'Z'); /* untouched */
  assert_int_equal(cf__envelope_encode(&e, buf, need + 1, &len), CF_OK);
  assert_int_equal(buf[need], '\0');
  assert_int_equal(cf__envelope_encode(&e, NULL, 10, &len),
                   CF_ERR_INVALID);
  free(buf);

  /* The same for binary, whose base64 writer adds its own NUL. */
  e.flags = CF_MSG_BINARY;
  e.len = 4; /* "hell": one padded group ends the data */
  assert_int_equal(cf__envelope_encoded_len(&e, &need), CF_OK);
  buf = malloc(need + 1);
  assert_non_null(buf);
  assert_int_equal(cf__envelope_encode(&e, buf, need + 1, &len), CF_OK);
  assert_string_equal(buf + need - 11, "\"aGVsbA==\"}");
  free(buf);
}

/* --- decoding ------------------------------------------------------------ */

#define HEAD "{\"v\":1,\"origin\":\"00000000000000a1\",\"seq\":7,\"ts\":5,"
#define GOOD HEAD "\"room\":\"lobby\",\"type\":\"text\",\"data\":\"hi\"}"
#define TAIL "\"room\":\"lobby\",\"type\":\"text\",\"data\":\"hi\"}"
#define ORG(o) "{\"v\":1,\"origin\":" o ",\"seq\":7,\"ts\":5," TAIL
#define SEQ(s) "{\"v\":1,\"origin\":\"00000000000000a1\",\"seq\":" s \
               ",\"ts\":5," TAIL
#define ROOM(r) HEAD "\"room\":" r ",\"type\":\"text\",\"data\":\"hi\"}"
#define BIN(d) HEAD "\"room\":\"r\",\"type\":\"binary\",\"data\":" d "}"

static const char R_JSON[] = "not valid JSON";
static const char R_DUP[] = "duplicate key";
static const char R_OBJ[] = "not a JSON object";
static const char R_V[] = "missing or unsupported v";
static const char R_ORIGIN[] =
    "origin is not 16 lowercase hex digits, non-zero";
static const char R_SEQ[] = "seq is not an integer >= 1";
static const char R_TS[] = "ts is not an integer >= 0";
static const char R_ID[] = "id does not match origin and seq";
static const char R_ROOM[] = "room is not 1..64 printable ASCII bytes";
static const char R_TYPE[] = "bad type";
static const char R_DATA[] = "missing or non-string data";
static const char R_B64[] = "data is not canonical base64";

static const struct reject_case {
  const char *json;
  const char *why;
} rejects[] = {
    /* Not one JSON object. */
    {"", R_JSON},
    {"   ", R_JSON},
    {"{", R_JSON},
    {"[]", R_OBJ},
    {"\"str\"", R_OBJ},
    {"null", R_OBJ},
    {"1", R_OBJ},
    {GOOD " x", R_JSON},                    /* trailing garbage */
    {GOOD GOOD, R_JSON},                    /* two objects */
    {"{\"v\":1,\"v\":1}", R_DUP},
    {HEAD "\"seq\":7," TAIL, R_DUP},
    {HEAD "\"room\":\"l\xff\"," TAIL, R_JSON}, /* invalid UTF-8 */
    {HEAD "\"room\":\"r\",\"type\":\"text\",\"data\":\"\\ud800\"}", R_JSON},
    /* v first: another version may change everything else. */
    {"{\"origin\":\"x\"}", R_V},
    {"{\"v\":2,\"origin\":\"00000000000000a1\",\"seq\":7,\"ts\":5," TAIL,
     R_V},
    {"{\"v\":\"1\"}", R_V},
    {"{\"v\":1.0}", R_V},
    {"{\"v\":0}", R_V},
    {"{\"v\":true}", R_V},
    /* origin */
    {"{\"v\":1,\"seq\":7,\"ts\":5," TAIL, R_ORIGIN},
    {ORG("\"00000000000000A1\""), R_ORIGIN},   /* uppercase */
    {ORG("\"0000000000000a1\""), R_ORIGIN},    /* 15 digits */
    {ORG("\"000000000000000a1\""), R_ORIGIN},  /* 17 digits */
    {ORG("\"000000000000000g\""), R_ORIGIN},
    {ORG("\"0000000000000000\""), R_ORIGIN},   /* zero */
    {ORG("\"0x000000000000a1\""), R_ORIGIN},
    {ORG("161"), R_ORIGIN},
    {ORG("\"00000000000000a\\u0000\""), R_ORIGIN},
    /* seq */
    {SEQ("0"), R_SEQ},
    {SEQ("-1"), R_SEQ},
    {SEQ("1.5"), R_SEQ},
    {SEQ("7.0"), R_SEQ},
    {SEQ("7e0"), R_SEQ},
    {SEQ("\"7\""), R_SEQ},
    {SEQ("null"), R_SEQ},
    {SEQ("9223372036854775808"), R_JSON},     /* over int64 */
    {"{\"v\":1,\"origin\":\"00000000000000a1\",\"ts\":5," TAIL, R_SEQ},
    /* ts */
    {"{\"v\":1,\"origin\":\"00000000000000a1\",\"seq\":7," TAIL, R_TS},
    {"{\"v\":1,\"origin\":\"00000000000000a1\",\"seq\":7,\"ts\":-1," TAIL,
     R_TS},
    {"{\"v\":1,\"origin\":\"00000000000000a1\",\"seq\":7,\"ts\":1.0," TAIL,
     R_TS},
    /* id, when present, must be the canonical one */
    {HEAD "\"id\":\"00000000000000a1-8\"," TAIL, R_ID},
    {HEAD "\"id\":\"00000000000000a2-7\"," TAIL, R_ID},
    {HEAD "\"id\":\"00000000000000a1-07\"," TAIL, R_ID},
    {HEAD "\"id\":\"00000000000000A1-7\"," TAIL, R_ID},
    {HEAD "\"id\":\"00000000000000a1-7 \"," TAIL, R_ID},
    {HEAD "\"id\":\"a1-7\"," TAIL, R_ID},
    {HEAD "\"id\":\"\"," TAIL, R_ID},
    {HEAD "\"id\":7," TAIL, R_ID},
    {HEAD "\"id\":null," TAIL, R_ID},
    /* room */
    {HEAD "\"type\":\"text\",\"data\":\"hi\"}", R_ROOM},
    {ROOM("\"\""), R_ROOM},
    {ROOM("\"a b\""), R_ROOM},
    {ROOM("\"a\\tb\""), R_ROOM},
    {ROOM("\"a\\u0000\""), R_ROOM},
    {ROOM("\"a\\u007f\""), R_ROOM},
    {ROOM("\"caf\xc3\xa9\""), R_ROOM},
    {ROOM("7"), R_ROOM},
    {ROOM("\"0123456789012345678901234567890123456789"
          "01234567890123456789012345\""), R_ROOM}, /* 66 */
    {ROOM("\"0123456789012345678901234567890123456789"
          "0123456789012345678901234\""), R_ROOM},  /* 65 */
    /* type */
    {HEAD "\"room\":\"r\",\"data\":\"hi\"}", R_TYPE},
    {HEAD "\"room\":\"r\",\"type\":\"TEXT\",\"data\":\"hi\"}", R_TYPE},
    {HEAD "\"room\":\"r\",\"type\":\"bin\",\"data\":\"hi\"}", R_TYPE},
    {HEAD "\"room\":\"r\",\"type\":\"text\\u0000\",\"data\":\"hi\"}",
     R_TYPE},
    {HEAD "\"room\":\"r\",\"type\":1,\"data\":\"hi\"}", R_TYPE},
    /* data */
    {HEAD "\"room\":\"r\",\"type\":\"text\"}", R_DATA},
    {HEAD "\"room\":\"r\",\"type\":\"text\",\"data\":null}", R_DATA},
    {HEAD "\"room\":\"r\",\"type\":\"text\",\"data\":[]}", R_DATA},
    {BIN("1"), R_DATA},
    /* base64, strictly canonical */
    {BIN("\"Zg=\""), R_B64},       /* length not a multiple of 4 */
    {BIN("\"Zg\""), R_B64},        /* unpadded */
    {BIN("\"Zh==\""), R_B64},      /* stray bits after one byte */
    {BIN("\"Zm9=\""), R_B64},      /* stray bits after two bytes */
    {BIN("\"Z===\""), R_B64},
    {BIN("\"====\""), R_B64},
    {BIN("\"Zg==Zg==\""), R_B64},  /* padding inside */
    {BIN("\"Zm=v\""), R_B64},
    {BIN("\" Zm9v\""), R_B64},     /* EVP would skip this space */
    {BIN("\"Zm9v\\n\""), R_B64},   /* and this newline */
    {BIN("\"Zm9v \""), R_B64},
    {BIN("\"Zm-v\""), R_B64},      /* base64url alphabet */
    {BIN("\"Zm_v\""), R_B64},
    {BIN("\"Zm9v\\u0000AAA\""), R_B64},
};

static void test_rejects(void **state) {
  size_t i;

  (void)state;
  for (i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
    const char *json = rejects[i].json;
    cf_envelope *env = (cf_envelope *)&env; /* must be reset to NULL */
    const char *why = NULL;
    int rv = cf__envelope_decode(&env, json, strlen(json), &tm.mem, &why);

    if (rv != CF_ERR_PARSE || why == NULL ||
        strcmp(why, rejects[i].why) != 0)
      fail_msg("case %zu <%s>: rv %d, reason \"%s\", want \"%s\"", i,
               json, rv, why ? why : "(null)", rejects[i].why);
    assert_null(env);
    assert_int_equal(tm.live, 0);
  }
}

static void test_accepts(void **state) {
  static const char *const ok[] = {
      GOOD,
      " \n\t" GOOD " \r\n",
      /* any key order, unknown keys of any type are ignored */
      "{\"data\":\"hi\",\"type\":\"text\",\"room\":\"lobby\",\"ts\":5,"
      "\"seq\":7,\"origin\":\"00000000000000a1\",\"v\":1}",
      HEAD "\"future\":{\"a\":[1,2]},\"x\":null," TAIL,
      HEAD "\"id\":\"00000000000000a1-7\"," TAIL,
      /* escapes in room and data */
      ROOM("\"\\u006cobby\"") ,
  };
  size_t i;
  cf_envelope *env;
  const char *why;

  (void)state;
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(cf__envelope_decode(&env, ok[i], strlen(ok[i]),
                                         &tm.mem, &why), CF_OK);
    assert_int_equal(env->origin, 0xa1);
    assert_int_equal(env->seq, 7);
    assert_int_equal(env->ts_ms, 5);
    assert_int_equal(env->room_len, 5);
    assert_memory_equal(env->room, "lobby", 5);
    assert_int_equal(env->flags, CF_MSG_TEXT);
    assert_int_equal(env->len, 2);
    assert_memory_equal(env->data, "hi", 2);
    cf__envelope_free(env, &tm.mem);
  }
}

static void test_decode_nul_text(void **state) {
  static const char j[] =
      HEAD "\"room\":\"r\",\"type\":\"text\",\"data\":\"a\\u0000b\"}";
  cf_envelope *env;

  (void)state;
  assert_int_equal(cf__envelope_decode(&env, j, strlen(j), &tm.mem, NULL),
                   CF_OK);
  assert_int_equal(env->len, 3);
  assert_memory_equal(env->data, "a\0b", 3);
  cf__envelope_free(env, &tm.mem);
}

static void test_decode_args(void **state) {
  cf_envelope *env;

  (void)state;
  assert_int_equal(cf__envelope_decode(NULL, GOOD, strlen(GOOD), &tm.mem,
                                       NULL), CF_ERR_INVALID);
  assert_int_equal(cf__envelope_decode(&env, NULL, 3, &tm.mem, NULL),
                   CF_ERR_INVALID);
  assert_null(env);
  assert_int_equal(cf__envelope_decode(&env, GOOD, strlen(GOOD), NULL,
                                       NULL), CF_ERR_INVALID);
  cf__envelope_free(NULL, &tm.mem);
}

/* Input that is not NUL-terminated and ends right before a page that
 * cannot be read: any over-read crashes. */
static void test_decode_guard_page(void **state) {
  static const char *const inputs[] = {
      GOOD, BIN("\"Zm9vYmE=\""), BIN("\"Zm9vYmE"), HEAD, "{\"v\":1",
  };
  long page = sysconf(_SC_PAGESIZE);
  char *map;
  size_t i;

  (void)state;
  map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
  for (i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
    size_t n = strlen(inputs[i]);
    char *at = map + page - n;
    cf_envelope *env;
    int rv;

    memcpy(at, inputs[i], n);
    rv = cf__envelope_decode(&env, at, n, &tm.mem, NULL);
    assert_int_equal(rv, i < 2 ? CF_OK : CF_ERR_PARSE);
    cf__envelope_free(env, &tm.mem);
  }
  munmap(map, (size_t)page * 2);
}

/* Every allocation made by the codec, failed in turn. */
static void test_alloc_failures(void **state) {
  unsigned char bin[100];
  cf_envelope e = text_env("lobby", NULL), *got;
  unsigned long n;
  char *json = NULL;
  size_t len;
  const char *why;
  int rv;

  (void)state;
  memset(bin, 0xab, sizeof(bin));
  e.flags = CF_MSG_BINARY;
  e.data = bin;
  e.len = sizeof(bin);
  for (n = 1;; n++) {
    test_mem_init(&tm, n);
    rv = cf__envelope_encode_alloc(&json, &len, &e, &tm.mem);
    if (rv == CF_OK) {
      rv = cf__envelope_decode(&got, json, len, &tm.mem, &why);
      if (rv == CF_OK) {
        assert_int_equal(got->len, sizeof(bin));
        cf__envelope_free(got, &tm.mem);
      } else {
        assert_int_equal(rv, CF_ERR_NOMEM);
        assert_string_equal(why, "out of memory");
        assert_null(got);
      }
      cf__free(&tm.mem, json);
    } else {
      assert_int_equal(rv, CF_ERR_NOMEM);
      assert_null(json);
    }
    assert_int_equal(tm.live, 0);
    if (!tm.failed)
      break;
  }
  /* One block for the encoding, one for the decoded envelope. */
  assert_int_equal(n, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
      T(test_text_exact),
      T(test_text_escapes),
      T(test_unicode),
      T(test_empty_payloads),
      T(test_binary_all_bytes),
      T(test_base64_vectors),
      T(test_binary_large),
      T(test_room_limits),
      T(test_number_limits),
      T(test_envelope_id),
      T(test_check),
      T(test_utf8),
      T(test_encode_buffer),
      T(test_rejects),
      T(test_accepts),
      T(test_decode_nul_text),
      T(test_decode_args),
      T(test_decode_guard_page),
      T(test_alloc_failures),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
