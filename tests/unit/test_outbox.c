/* The outbox ring (internal) and the transport's side of it (public). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "cf_msg.h"
#include "cf_outbox.h"
#include "hub_fixture.h"

static cf_msg *msg(const char *s) {
  cf_msg *m = cf__msg_new(&tm.mem, NULL, 0, CF_MSG_TEXT, s, strlen(s));

  assert_non_null(m);
  return m;
}

/* Pushes a fresh message and drops the creator's reference. */
static void push(cf_outbox *ob, const char *s) {
  cf_msg *m = msg(s);

  assert_int_equal(cf__outbox_add(ob, &tm.mem, m), CF_OK);
  cf_msg_unref(m);
}

/* Concatenates what iov returns, as a writev would send it. */
static size_t gather(const cf_outbox *ob, char *buf, size_t cap) {
  struct iovec iov[64];
  int n = cf__outbox_iov(ob, iov, 64), i;
  size_t len = 0;

  for (i = 0; i < n; i++) {
    assert_true(len + iov[i].iov_len <= cap);
    memcpy(buf + len, iov[i].iov_base, iov[i].iov_len);
    len += iov[i].iov_len;
  }
  return len;
}

static void test_empty(void **state) {
  cf_outbox ob;
  struct iovec iov[2];

  (void)state;
  cf__outbox_init(&ob);
  assert_true(cf__outbox_empty(&ob));
  assert_int_equal(cf__outbox_iov(&ob, iov, 2), 0);
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 10), 0);
  assert_null(cf__outbox_pop(&ob, &tm.mem));
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 0), 0);
  assert_int_equal(cf__outbox_cost(&ob), 0);
  /* Nothing is allocated until something is queued. */
  assert_int_equal(tm.count, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_iov_consume_partial(void **state) {
  cf_outbox ob;
  struct iovec iov[4];
  char buf[64];
  size_t n;

  (void)state;
  cf__outbox_init(&ob);
  push(&ob, "hello");
  push(&ob, "big");
  push(&ob, "world");
  assert_int_equal(ob.bytes, 13);
  assert_int_equal(cf__outbox_cost(&ob), 13 + 3 * CF_OUTBOX_ENTRY_COST);

  /* iovcnt limits the answer; the rest stays for the next call. */
  assert_int_equal(cf__outbox_iov(&ob, iov, 2), 2);
  assert_int_equal(iov[0].iov_len, 5);
  assert_int_equal(iov[1].iov_len, 3);
  assert_int_equal(cf__outbox_iov(&ob, iov, 0), 0);
  assert_int_equal(cf__outbox_iov(&ob, NULL, 3), 0);

  /* A short write ends inside the second message. */
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 6), 6);
  assert_int_equal(ob.count, 2);
  assert_int_equal(ob.offset, 1);
  assert_int_equal(ob.bytes, 7);
  assert_int_equal(cf__outbox_iov(&ob, iov, 4), 2);
  assert_memory_equal(iov[0].iov_base, "ig", 2);
  assert_int_equal(iov[0].iov_len, 2);
  n = gather(&ob, buf, sizeof(buf));
  assert_int_equal(n, 7);
  assert_memory_equal(buf, "igworld", 7);

  /* A partly consumed head cannot be popped. */
  assert_null(cf__outbox_pop(&ob, &tm.mem));

  /* Consuming more than pending is clamped. */
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 100), 7);
  assert_true(cf__outbox_empty(&ob));
  assert_int_equal(ob.bytes, 0);
  assert_int_equal(ob.offset, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_consume_byte_by_byte(void **state) {
  const char *parts[] = {"ab", "", "cde", "f"};
  cf_outbox ob;
  char out[16];
  size_t i, got = 0;

  (void)state;
  cf__outbox_init(&ob);
  for (i = 0; i < 4; i++)
    push(&ob, parts[i]);
  while (ob.bytes != 0) {
    struct iovec iov[1];

    assert_int_equal(cf__outbox_iov(&ob, iov, 1), 1);
    out[got++] = *(const char *)iov[0].iov_base;
    assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 1), 1);
  }
  assert_int_equal(got, 6);
  assert_memory_equal(out, "abcdef", 6);
  /* The empty entry went with its neighbours. */
  assert_int_equal(ob.count, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_zero_length_entries(void **state) {
  cf_outbox ob;
  struct iovec iov[2];
  cf_msg *m;

  (void)state;
  cf__outbox_init(&ob);
  push(&ob, "");
  push(&ob, "");
  assert_int_equal(ob.count, 2);
  assert_int_equal(ob.bytes, 0);
  /* No bytes to write, but still two entries of cost. */
  assert_int_equal(cf__outbox_iov(&ob, iov, 2), 0);
  assert_int_equal(cf__outbox_cost(&ob), 2 * CF_OUTBOX_ENTRY_COST);
  m = cf__outbox_pop(&ob, &tm.mem);
  assert_non_null(m);
  assert_int_equal(cf_msg_size(m), 0);
  cf_msg_unref(m);
  /* consume(0) clears what is left: it is all "sent". */
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 0), 0);
  assert_int_equal(ob.count, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_pop_order_and_refs(void **state) {
  cf_outbox ob;
  cf_msg *a = msg("a"), *b = msg("b"), *p;

  (void)state;
  cf__outbox_init(&ob);
  assert_int_equal(cf__outbox_add(&ob, &tm.mem, a), CF_OK);
  assert_int_equal(cf__outbox_add(&ob, &tm.mem, b), CF_OK);
  assert_int_equal(cf__outbox_add(&ob, &tm.mem, a), CF_OK);
  assert_int_equal(a->refs, 3);
  p = cf__outbox_pop(&ob, &tm.mem);
  assert_ptr_equal(p, a);
  /* The popped reference is the caller's now. */
  assert_int_equal(a->refs, 3);
  cf_msg_unref(p);
  assert_ptr_equal((p = cf__outbox_pop(&ob, &tm.mem)), b);
  cf_msg_unref(p);
  assert_ptr_equal((p = cf__outbox_pop(&ob, &tm.mem)), a);
  cf_msg_unref(p);
  assert_null(cf__outbox_pop(&ob, &tm.mem));
  assert_int_equal(a->refs, 1);
  assert_int_equal(b->refs, 1);
  cf_msg_unref(a);
  cf_msg_unref(b);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_growth_keeps_order_across_wrap(void **state) {
  cf_outbox ob;
  char s[16];
  int i, next = 0;

  (void)state;
  cf__outbox_init(&ob);
  /* Move head off slot 0 so that growth has to unwrap. */
  for (i = 0; i < 6; i++) {
    snprintf(s, sizeof(s), "%03d", i);
    push(&ob, s);
  }
  for (i = 0; i < 4; i++) {
    cf_msg *m = cf__outbox_pop(&ob, &tm.mem);

    snprintf(s, sizeof(s), "%03d", next++);
    assert_memory_equal(cf_msg_data(m), s, 3);
    cf_msg_unref(m);
  }
  for (i = 6; i < 400; i++) {
    snprintf(s, sizeof(s), "%03d", i);
    push(&ob, s);
  }
  assert_int_equal(ob.count, 396);
  assert_int_equal(ob.cap, 512);
  assert_int_equal(ob.cap & (ob.cap - 1), 0);
  while (!cf__outbox_empty(&ob)) {
    cf_msg *m = cf__outbox_pop(&ob, &tm.mem);

    snprintf(s, sizeof(s), "%03d", next++);
    assert_memory_equal(cf_msg_data(m), s, 3);
    cf_msg_unref(m);
  }
  assert_int_equal(next, 400);
  /* A big ring is cut back once drained, not freed: the next burst
   * starts without allocating. */
  assert_non_null(ob.ring);
  assert_int_equal(ob.cap, 256);
  assert_int_equal(ob.head, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

/* Fills ob with n one-byte messages. */
static void push_n(cf_outbox *ob, int n) {
  int i;

  for (i = 0; i < n; i++)
    push(ob, "x");
}

static void test_shrink_keeps_a_ring(void **state) {
  unsigned long before;
  cf_outbox ob;

  (void)state;
  cf__outbox_init(&ob);
  /* Small rings stay as they are when drained, by every way out. */
  push_n(&ob, 3);
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 3), 3);
  assert_int_equal(ob.cap, CF_OUTBOX_MIN_CAP);
  push_n(&ob, 200);
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 0), 200);
  assert_int_equal(ob.cap, 256);
  /* A trimmed burst gives memory back too. */
  push_n(&ob, 300);
  assert_int_equal(ob.cap, 512);
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 0), 300);
  assert_int_equal(ob.cap, 256);
  /* Up to the kept size, a new burst allocates only its messages. */
  before = tm.count;
  push_n(&ob, 256);
  assert_int_equal(tm.count - before, 256);
  /* A shrink that fails keeps the big ring, which still works. */
  push_n(&ob, 1);
  assert_int_equal(ob.cap, 512);
  tm.fail_at = tm.count + 1;
  while (!cf__outbox_empty(&ob))
    cf_msg_unref(cf__outbox_pop(&ob, &tm.mem));
  assert_true(tm.failed);
  tm.fail_at = 0;
  assert_int_equal(ob.cap, 512);
  push_n(&ob, 2);
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 2), 2);
  assert_int_equal(ob.cap, 256);
  cf__outbox_deinit(&ob, &tm.mem);
  assert_null(ob.ring);
}

static void test_steady_state_no_alloc(void **state) {
  cf_outbox ob;
  cf_msg *m = msg("x");
  unsigned long before;
  int i;

  (void)state;
  cf__outbox_init(&ob);
  assert_int_equal(cf__outbox_add(&ob, &tm.mem, m), CF_OK);
  cf__outbox_consume(&ob, &tm.mem, 1);
  before = tm.count;
  for (i = 0; i < 1000; i++) {
    assert_int_equal(cf__outbox_add(&ob, &tm.mem, m), CF_OK);
    assert_int_equal(cf__outbox_add(&ob, &tm.mem, m), CF_OK);
    cf__outbox_consume(&ob, &tm.mem, 2);
  }
  assert_int_equal(tm.count, before);
  cf_msg_unref(m);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_reserve_nomem_unchanged(void **state) {
  cf_outbox ob;
  cf_msg *m = msg("abc");
  int i;

  (void)state;
  cf__outbox_init(&ob);
  for (i = 0; i < 8; i++)
    assert_int_equal(cf__outbox_add(&ob, &tm.mem, m), CF_OK);
  assert_int_equal(ob.cap, 8);
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf__outbox_add(&ob, &tm.mem, m), CF_ERR_NOMEM);
  assert_int_equal(ob.count, 8);
  assert_int_equal(ob.bytes, 24);
  assert_int_equal(m->refs, 9);
  assert_int_equal(cf__outbox_reserve(&ob, &tm.mem, 0), CF_OK);
  tm.fail_at = 0;
  assert_int_equal(cf__outbox_reserve(&ob, &tm.mem, 100), CF_OK);
  assert_int_equal(ob.cap, 128);
  cf__outbox_deinit(&ob, &tm.mem);
  assert_int_equal(m->refs, 1);
  cf_msg_unref(m);
}

static void test_trim(void **state) {
  cf_outbox ob;
  char buf[16];

  (void)state;
  cf__outbox_init(&ob);
  push(&ob, "one");
  push(&ob, "two");
  push(&ob, "three");
  /* Nothing sent yet: everything may go. */
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 0), 11);
  assert_true(cf__outbox_empty(&ob));
  assert_int_equal(ob.bytes, 0);

  push(&ob, "one");
  push(&ob, "two");
  cf__outbox_consume(&ob, &tm.mem, 1);
  /* A started message must be finished. */
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 0), 3);
  assert_int_equal(ob.count, 1);
  assert_int_equal(gather(&ob, buf, sizeof(buf)), 2);
  assert_memory_equal(buf, "ne", 2);
  cf__outbox_deinit(&ob, &tm.mem);
}

/*
 * The newest entries asked for stay too, in order after a started head,
 * across the ring's wrap; the tally counts only what went.
 */
static void test_trim_tail(void **state) {
  cf_outbox_tally tally = {0, 0};
  cf_outbox ob;
  char buf[32];
  int i;

  (void)state;
  cf__outbox_init(&ob);
  ob.tally = &tally;
  for (i = 0; i < 6; i++)
    push(&ob, "xx");
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 10), 10);
  push(&ob, "head");
  push(&ob, "aa");
  push(&ob, "bb");
  push(&ob, "K1");
  push(&ob, "K2");
  assert_int_equal(ob.cap, CF_OUTBOX_MIN_CAP); /* wrapped: head at 5 */
  cf__outbox_consume(&ob, &tm.mem, 3); /* "head" started */
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 2), 4); /* aa, bb */
  assert_int_equal(ob.count, 3);
  assert_int_equal(ob.bytes, 3 + 2 + 2);
  assert_int_equal(tally.entries, 3);
  assert_int_equal(tally.bytes, 4 + 2 + 2);
  assert_int_equal(gather(&ob, buf, sizeof(buf)), 7);
  assert_memory_equal(buf, "eadK1K2", 7);
  /* More than there is: all kept. */
  assert_int_equal(cf__outbox_trim(&ob, &tm.mem, 9), 0);
  assert_int_equal(ob.count, 3);
  assert_int_equal(cf__outbox_consume(&ob, &tm.mem, 7), 7);
  assert_int_equal(tally.entries, 0);
  assert_int_equal(tally.bytes, 0);
  cf__outbox_deinit(&ob, &tm.mem);
}

static void test_msg_accessors(void **state) {
  cf_msg *m = cf__msg_new(&tm.mem, "room", 4, CF_MSG_BINARY, "\x01\x02", 2);
  cf_envelope env;
  size_t len = 99;

  (void)state;
  assert_ptr_equal(cf_msg_ref(m), m);
  assert_int_equal(m->refs, 2);
  cf_msg_unref(m);
  assert_int_equal(cf_msg_flags(m), CF_MSG_BINARY);
  assert_int_equal(cf_msg_size(m), 2);
  assert_memory_equal(cf_msg_data(m), "\x01\x02", 2);
  /* No framer: the wire bytes are the payload. */
  assert_ptr_equal(cf_msg_wire(m, &len), cf_msg_data(m));
  assert_int_equal(len, 2);
  m->origin = 7;
  m->seq = 8;
  cf__msg_envelope(m, &env);
  assert_int_equal(env.origin, 7);
  assert_int_equal(env.seq, 8);
  assert_int_equal(env.room_len, 4);
  assert_memory_equal(env.room, "room", 4);
  assert_int_equal(env.flags, CF_MSG_BINARY);
  assert_ptr_equal(env.data, cf_msg_data(m));
  cf_msg_unref(m);
  cf_msg_unref(NULL);
  assert_null(cf_msg_ref(NULL));
  assert_null(cf_msg_wire(NULL, &len));
  assert_int_equal(len, 0);
  assert_int_equal(cf_msg_size(NULL), 0);
  assert_null(cf_msg_data(NULL));
}

static size_t framer3(uint8_t *buf, uint32_t flags, size_t len, void *ud) {
  (void)ud;
  buf[0] = 'H';
  buf[1] = (uint8_t)('0' + flags);
  buf[2] = (uint8_t)('0' + len);
  return 3;
}

static size_t framer_bad(uint8_t *buf, uint32_t flags, size_t len,
                         void *ud) {
  (void)buf;
  (void)flags;
  (void)len;
  (void)ud;
  return CF_FRAME_HEADROOM_MAX + 1;
}

static void test_msg_frame(void **state) {
  cf_msg *m = cf__msg_new(&tm.mem, "r", 1, CF_MSG_BINARY, "abcd", 4);
  const uint8_t *w;
  size_t len;

  (void)state;
  assert_int_equal(cf__msg_frame(m, framer_bad, NULL), CF_ERR_CALLBACK);
  assert_int_equal(m->hdr_len, 0);
  assert_int_equal(cf__msg_frame(m, framer3, NULL), CF_OK);
  w = cf_msg_wire(m, &len);
  assert_int_equal(len, 7);
  /* Header and payload are one contiguous run. */
  assert_memory_equal(w, "H14abcd", 7);
  assert_ptr_equal(w + 3, cf_msg_data(m));
  cf_msg_unref(m);
}

/* --- Through the public client API ------------------------------------- */

typedef struct rec {
  int wakes, closes;
} rec;

static void rec_wake(cf_client *c, void *ud) {
  (void)c;
  ((rec *)ud)->wakes++;
}

static void rec_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  ((rec *)ud)->closes++;
}

static const cf_client_ops rec_ops = {CF_CLIENT_OPS_VERSION, rec_wake,
                                      rec_close};

static cf_hub *hub_new(size_t buffer) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.client_buffer = buffer;
  cfg.max_message = 256;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

static void test_client_send_raw(void **state) {
  cf_hub *h = hub_new(1024);
  cf_client *c;
  rec r = {0, 0};
  struct iovec iov[4];
  cf_msg *m;
  cf_hub_stats st;

  (void)state;
  assert_int_equal(cf_client_new(&c, h, &rec_ops, &r), CF_OK);
  assert_int_equal(cf_client_send(NULL, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_client_send(c, NULL, 1), CF_ERR_INVALID);
  assert_int_equal(cf_client_send(c, NULL, 0), CF_OK);
  assert_int_equal(r.wakes, 0);

  {
    char bytes[4] = "ping";

    assert_int_equal(cf_client_send(c, bytes, 4), CF_OK);
    /* The bytes were copied. */
    memset(bytes, 0, sizeof(bytes));
  }
  assert_int_equal(r.wakes, 1);
  assert_int_equal(cf_client_send(c, "pong", 4), CF_OK);
  assert_int_equal(r.wakes, 1);
  assert_int_equal(cf_client_pending(c), 8);
  cf_hub_get_stats(h, &st, sizeof(st));
  assert_int_equal(st.outbox_bytes, 8);
  /* Raw bytes are not message deliveries. */
  assert_int_equal(st.deliveries, 0);

  assert_int_equal(cf_client_iov(c, iov, 4), 2);
  assert_memory_equal(iov[0].iov_base, "ping", 4);
  m = cf_client_pop(c);
  assert_int_equal(cf_msg_flags(m), CF_MSG_RAW);
  assert_memory_equal(cf_msg_data(m), "ping", 4);
  cf_msg_unref(m);
  cf_client_consume(c, 2);
  assert_null(cf_client_pop(c));
  assert_int_equal(cf_client_pending(c), 2);
  cf_client_consume(c, 1000);
  assert_int_equal(cf_client_pending(c), 0);
  cf_hub_get_stats(h, &st, sizeof(st));
  assert_int_equal(st.outbox_bytes, 0);

  /* Empty again: the next send wakes again. */
  assert_int_equal(cf_client_send(c, "x", 1), CF_OK);
  assert_int_equal(r.wakes, 2);
  cf_hub_free(h);
}

static void test_client_send_caps(void **state) {
  const size_t buffer = 1024;
  cf_hub *h = hub_new(buffer);
  cf_client *c;
  rec r = {0, 0};
  char big[8192];
  size_t cost;

  (void)state;
  memset(big, 'z', sizeof(big));
  assert_int_equal(cf_client_new(&c, h, &rec_ops, &r), CF_OK);
  /* One send may use the 4 KiB allowance on top of client_buffer. */
  assert_int_equal(cf_client_send(c, big, buffer + 4096 + 1),
                   CF_ERR_QUEUE_FULL);
  assert_int_equal(cf_client_pending(c), 0);
  assert_int_equal(cf_client_send(c, big, buffer + 4096 -
                                              CF_OUTBOX_ENTRY_COST),
                   CF_OK);
  assert_int_equal(cf_client_send(c, big, 1), CF_ERR_QUEUE_FULL);
  cost = cf_client_pending(c) + CF_OUTBOX_ENTRY_COST;
  assert_int_equal(cost, buffer + 4096);
  cf_client_consume(c, 100);
  assert_int_equal(cf_client_send(c, big, 100 - CF_OUTBOX_ENTRY_COST),
                   CF_OK);
  assert_int_equal(cf_client_send(c, big, 1), CF_ERR_QUEUE_FULL);
  assert_int_equal(r.closes, 0);

  /* NOMEM leaves the outbox as it was. */
  cf_client_consume(c, 100000);
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf_client_send(c, "abc", 3), CF_ERR_NOMEM);
  tm.fail_at = 0;
  assert_int_equal(cf_client_pending(c), 0);
  cf_client_free(c);
  cf_hub_free(h);
}

static void test_client_null_safe(void **state) {
  struct iovec iov[1];

  (void)state;
  assert_int_equal(cf_client_iov(NULL, iov, 1), 0);
  cf_client_consume(NULL, 5);
  assert_int_equal(cf_client_pending(NULL), 0);
  assert_null(cf_client_pop(NULL));
  assert_null(cf_client_user_data(NULL));
  cf_client_free(NULL);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_empty),
      T(test_iov_consume_partial),
      T(test_consume_byte_by_byte),
      T(test_zero_length_entries),
      T(test_pop_order_and_refs),
      T(test_growth_keeps_order_across_wrap),
      T(test_shrink_keeps_a_ring),
      T(test_steady_state_no_alloc),
      T(test_reserve_nomem_unchanged),
      T(test_trim),
      T(test_trim_tail),
      T(test_msg_accessors),
      T(test_msg_frame),
      T(test_client_send_raw),
      T(test_client_send_caps),
      T(test_client_null_safe),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
