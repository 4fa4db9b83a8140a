/*
 * The queue envelope decoder (cf_envelope_decode.c): what another
 * instance, or anyone able to write to the queue, delivers. Invariants:
 * a decoded envelope obeys the contract in cf_envelope.h, and encoding
 * it then decoding the result gives the same envelope (the encoder and
 * the decoder agree on every value the decoder lets through).
 */
#include "cf_envelope.h"
#include "cf_mem.h"
#include "fuzz_common.h"

static void check_env(const cf_envelope *e) {
  FUZZ_CHECK(cf__envelope_check(e) == CF_OK);
  FUZZ_CHECK(cf__room_printable(e->room, e->room_len));
  FUZZ_CHECK(e->room[e->room_len] == '\0');
  FUZZ_CHECK(e->seq <= INT64_MAX && e->ts_ms <= INT64_MAX);
  FUZZ_CHECK(e->flags == CF_MSG_TEXT || e->flags == CF_MSG_BINARY);
  if (e->flags == CF_MSG_TEXT)
    FUZZ_CHECK(cf__utf8_valid(e->data, e->len));
}

static void check_same(const cf_envelope *a, const cf_envelope *b) {
  FUZZ_CHECK(a->origin == b->origin && a->seq == b->seq);
  FUZZ_CHECK(a->ts_ms == b->ts_ms && a->flags == b->flags);
  FUZZ_CHECK(a->room_len == b->room_len);
  FUZZ_CHECK(memcmp(a->room, b->room, a->room_len) == 0);
  FUZZ_CHECK(a->len == b->len);
  FUZZ_CHECK(a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cf_mem mem;
  cf_envelope *env = NULL, *again = NULL;
  const char *why = NULL;
  char *wire = NULL;
  size_t wire_len = 0, need = 0;
  char *buf = fuzz_dup(data, size, 0);
  int rc;

  cf__mem_init(&mem, NULL);
  rc = cf__envelope_decode(&env, buf, size, &mem, &why);
  if (rc != CF_OK) {
    FUZZ_CHECK(rc == CF_ERR_PARSE || rc == CF_ERR_NOMEM);
    FUZZ_CHECK(env == NULL);
    FUZZ_CHECK(rc != CF_ERR_PARSE || why != NULL);
    free(buf);
    return 0;
  }
  check_env(env);
  FUZZ_CHECK(cf__envelope_encoded_len(env, &need) == CF_OK);
  FUZZ_CHECK(cf__envelope_encode_alloc(&wire, &wire_len, env, &mem) ==
             CF_OK);
  FUZZ_CHECK(wire_len == need && wire[wire_len] == '\0');
  FUZZ_CHECK(cf__envelope_decode(&again, wire, wire_len, &mem, &why) ==
             CF_OK);
  check_same(env, again);
  cf__envelope_free(again, &mem);
  cf__free(&mem, wire);
  cf__envelope_free(env, &mem);
  free(buf);
  return 0;
}
