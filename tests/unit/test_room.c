/* The room table (internal) and joining/leaving through the hub. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <chatfanout/chatfanout.h>

#include "cf_msg.h"
#include "cf_room.h"
#include "hub_fixture.h"

static const uint64_t key[2] = {0x0123456789abcdefu, 0xfedcba9876543210u};

static void test_name_check(void **state) {
  char name[CF_ROOM_MAX + 1];
  char ch[1];
  int c;

  (void)state;
  assert_int_equal(cf__room_name_check("lobby", 5), CF_OK);
  assert_int_equal(cf__room_name_check("a", 1), CF_OK);
  assert_int_equal(cf__room_name_check("!~{}#/", 6), CF_OK);
  assert_int_equal(cf__room_name_check(NULL, 3), CF_ERR_INVALID);
  assert_int_equal(cf__room_name_check("", 0), CF_ERR_INVALID);
  memset(name, 'x', sizeof(name));
  assert_int_equal(cf__room_name_check(name, CF_ROOM_MAX), CF_OK);
  assert_int_equal(cf__room_name_check(name, CF_ROOM_MAX + 1),
                   CF_ERR_INVALID);
  /* Exactly 0x21..0x7e pass; the length is what counts, not a NUL. */
  for (c = 0; c < 256; c++) {
    ch[0] = (char)c;
    assert_int_equal(cf__room_name_check(ch, 1),
                     c >= 0x21 && c <= 0x7e ? CF_OK : CF_ERR_INVALID);
  }
  assert_int_equal(cf__room_name_check("a\0b", 3), CF_ERR_INVALID);
  assert_int_equal(cf__room_name_check("a b", 3), CF_ERR_INVALID);
}

static cf_msg *msg(const char *s) {
  cf_msg *m = cf__msg_new(&tm.mem, "r", 1, CF_MSG_TEXT, s, strlen(s));

  assert_non_null(m);
  return m;
}

/* Gives r one history entry, as the hub does. */
static void give_history(cf_rooms *t, cf_room *r) {
  cf_msg *m = msg("h");

  assert_int_equal(cf__room_hist_reserve(t, r), CF_OK);
  cf__room_hist_push(t, r, m);
  cf_msg_unref(m);
  cf__room_settle(t, r);
}

static void test_open_find_settle(void **state) {
  cf_rooms t;
  cf_room *a, *b, *x;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 10, 0, key);
  assert_null(cf__rooms_find(&t, "a", 1));
  assert_int_equal(cf__rooms_open(&t, "a", 1, 0, &a), CF_OK);
  assert_int_equal(cf__rooms_open(&t, "ab", 2, 0, &b), CF_OK);
  assert_ptr_not_equal(a, b);
  assert_int_equal(t.count, 2);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 0, &x), CF_OK);
  assert_ptr_equal(x, a);
  assert_ptr_equal(cf__rooms_find(&t, "ab", 2), b);
  assert_null(cf__rooms_find(&t, "abc", 3));
  assert_null(cf__rooms_find(&t, "b", 1));
  /* No members, no history: settling frees it. */
  assert_int_equal(cf__room_settle(&t, a), 1);
  assert_null(cf__rooms_find(&t, "a", 1));
  assert_int_equal(t.count, 1);
  cf__rooms_deinit(&t);
}

static void test_many_rooms_rehash(void **state) {
  char name[32];
  cf_room *r;
  cf_rooms t;
  int i;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 5000, 0, key);
  for (i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    assert_int_equal(cf__rooms_open(&t, name, strlen(name), 0, &r), CF_OK);
  }
  assert_true(t.nbuckets >= 2048);
  for (i = 0; i < 3000; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    r = cf__rooms_find(&t, name, strlen(name));
    assert_non_null(r);
    assert_int_equal(r->name_len, strlen(name));
    assert_memory_equal(r->name, name, r->name_len);
  }
  /* Rehash failure only costs speed. */
  for (i = 3000; t.count < t.nbuckets; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    assert_int_equal(cf__rooms_open(&t, name, strlen(name), 0, &r), CF_OK);
  }
  /* The next open allocates the room, then the bigger bucket array. */
  tm.fail_at = tm.count + 2;
  for (; i < 4200; i++) {
    uint32_t nb = t.nbuckets;

    snprintf(name, sizeof(name), "room-%d", i);
    assert_int_equal(cf__rooms_open(&t, name, strlen(name), 0, &r), CF_OK);
    if (tm.failed && tm.fail_at != 0) {
      assert_int_equal(t.nbuckets, nb);
      tm.fail_at = 0;
    }
  }
  assert_true(tm.failed);
  /* The table grows again at the next chance. */
  assert_int_equal(t.nbuckets, 8192);
  for (i = 0; i < 4200; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    assert_non_null(cf__rooms_find(&t, name, strlen(name)));
  }
  cf__rooms_deinit(&t);
}

static void test_history_ring(void **state) {
  cf_msg *m[6];
  cf_rooms t;
  cf_room *r;
  int i;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 10, 3, key);
  assert_int_equal(cf__rooms_open(&t, "r", 1, 1, &r), CF_OK);
  assert_non_null(r->hist);
  for (i = 0; i < 6; i++) {
    char s[2] = {(char)('0' + i), 0};

    m[i] = msg(s);
    cf__room_hist_push(&t, r, m[i]);
    assert_int_equal(r->hist_count, i < 3 ? i + 1 : 3);
  }
  for (i = 0; i < 3; i++)
    assert_ptr_equal(cf__room_hist_at(&t, r, (uint32_t)i), m[3 + i]);
  /* Dropped entries lost the room's reference. */
  assert_int_equal(m[0]->refs, 1);
  assert_int_equal(m[5]->refs, 2);
  for (i = 0; i < 6; i++)
    cf_msg_unref(m[i]);
  cf__room_settle(&t, r);
  assert_int_equal(t.count, 1);
  cf__rooms_deinit(&t);
}

/* Cost of the one-byte entries msg() makes, as the budget counts it. */
#define HCOST (1u + CF_HIST_ENTRY_COST)

static void push_n(cf_rooms *t, cf_room *r, int n) {
  int i;

  for (i = 0; i < n; i++)
    give_history(t, r);
}

/*
 * Rings grow with a room's entries, and shrink when the budget takes
 * them, so that ring memory stays in proportion to what is kept.
 */
static void test_hist_ring_follows_entries(void **state) {
  cf_room *a, *b;
  cf_msg *last;
  cf_rooms t;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 10, 1000, key);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 1, &a), CF_OK);
  assert_true(a->hist_cap <= 4);
  push_n(&t, a, 63);
  last = msg("z");
  assert_int_equal(cf__room_hist_reserve(&t, a), CF_OK);
  cf__room_hist_push(&t, a, last);
  cf__room_settle(&t, a);
  assert_int_equal(a->hist_count, 64);
  assert_int_equal(a->hist_cap, 64);
  assert_int_equal(t.hist_bytes, 63 * HCOST + HCOST);
  /* A budget of two entries: b's push takes all of a but its newest. */
  t.hist_limit = 2 * HCOST;
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &b), CF_OK);
  give_history(&t, b);
  assert_int_equal(a->hist_count, 1);
  assert_true(a->hist_cap <= 4);
  assert_ptr_equal(cf__room_hist_at(&t, a, 0), last);
  assert_int_equal(t.hist_bytes, 2 * HCOST);
  /* The next one empties a, which has no members: it is freed. */
  give_history(&t, b);
  assert_null(cf__rooms_find(&t, "a", 1));
  assert_int_equal(t.count, 1);
  assert_int_equal(b->hist_count, 2);
  /* A room alone trims itself, oldest first, never below one entry. */
  t.hist_limit = HCOST;
  give_history(&t, b);
  assert_int_equal(b->hist_count, 1);
  assert_int_equal(t.hist_bytes, HCOST);
  cf_msg_unref(last);
  cf__rooms_deinit(&t);
  assert_int_equal(t.hist_bytes, 0);
}

static void test_lru_eviction_and_limit(void **state) {
  cf_room *a, *b, *c, *d, *x;
  cf_member mb;
  cf_rooms t;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 3, 2, key);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 1, &a), CF_OK);
  give_history(&t, a);
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &b), CF_OK);
  give_history(&t, b);
  assert_int_equal(cf__rooms_open(&t, "c", 1, 1, &c), CF_OK);
  give_history(&t, c);
  assert_int_equal(t.count, 3);
  /* Touch a: b is now the least recently used. */
  give_history(&t, a);
  assert_int_equal(cf__rooms_open(&t, "d", 1, 0, &d), CF_OK);
  assert_int_equal(t.count, 3);
  assert_null(cf__rooms_find(&t, "b", 1));
  assert_ptr_equal(cf__rooms_find(&t, "a", 1), a);
  assert_ptr_equal(cf__rooms_find(&t, "c", 1), c);

  /* Rooms with members are never evicted. */
  memset(&mb, 0, sizeof(mb));
  cf__room_add_member(&t, d, &mb);
  give_history(&t, c);
  assert_int_equal(cf__rooms_open(&t, "e", 1, 0, &x), CF_OK);
  assert_null(cf__rooms_find(&t, "a", 1));
  assert_int_equal(cf__rooms_open(&t, "f", 1, 0, &x), CF_OK);
  assert_null(cf__rooms_find(&t, "c", 1));
  assert_ptr_equal(cf__rooms_find(&t, "d", 1), d);
  /* e and f are empty and new, d has a member: nothing to evict. */
  cf__room_settle(&t, cf__rooms_find(&t, "e", 1));
  assert_int_equal(cf__rooms_open(&t, "e", 1, 0, &x), CF_OK);
  /* Now d (member), e, f (held by the caller, not idle). */
  assert_int_equal(cf__rooms_open(&t, "g", 1, 0, &x), CF_ERR_LIMIT);
  assert_int_equal(t.count, 3);
  cf__room_remove_member(&t, &mb);
  assert_null(cf__rooms_find(&t, "d", 1));
  cf__rooms_deinit(&t);
}

static void test_open_nomem_unchanged(void **state) {
  cf_room *a, *x;
  cf_rooms t;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 1, 2, key);
  test_mem_init(&tm, 1);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 0, &a), CF_ERR_NOMEM);
  assert_int_equal(t.count, 0);
  test_mem_init(&tm, 0);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 1, &a), CF_OK);
  give_history(&t, a);
  /* A new room with history: the room or its ring fails, a survives. */
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &x), CF_ERR_NOMEM);
  tm.fail_at = tm.count + 2;
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &x), CF_ERR_NOMEM);
  tm.fail_at = 0;
  assert_ptr_equal(cf__rooms_find(&t, "a", 1), a);
  assert_int_equal(a->hist_count, 1);
  assert_null(cf__rooms_find(&t, "b", 1));
  /* With memory, b replaces a. */
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &x), CF_OK);
  assert_null(cf__rooms_find(&t, "a", 1));
  cf__room_settle(&t, x);
  assert_int_equal(t.count, 0);
  cf__rooms_deinit(&t);
}

/*
 * Prepare holds a room without touching the table; only insert evicts,
 * and it refuses when the idle room prepare counted on is gone.
 */
static void test_prepare_insert_discard(void **state) {
  cf_room *a, *b, *p;
  cf_member mb;
  cf_rooms t;

  (void)state;
  cf__rooms_init(&t, &tm.mem, 2, 2, key);
  assert_int_equal(cf__rooms_open(&t, "a", 1, 1, &a), CF_OK);
  give_history(&t, a);
  assert_int_equal(cf__rooms_open(&t, "b", 1, 1, &b), CF_OK);
  give_history(&t, b);
  assert_int_equal(cf__rooms_prepare(&t, 1, &p), CF_OK);
  assert_non_null(p->hist);
  assert_int_equal(t.count, 2);
  assert_ptr_equal(cf__rooms_find(&t, "a", 1), a);
  cf__room_discard(&t, p);
  assert_ptr_equal(cf__rooms_find(&t, "a", 1), a);

  assert_int_equal(cf__rooms_prepare(&t, 0, &p), CF_OK);
  assert_null(p->hist);
  assert_int_equal(cf__rooms_insert(&t, p, "c", 1), CF_OK);
  assert_ptr_equal(cf__rooms_find(&t, "c", 1), p);
  assert_null(cf__rooms_find(&t, "a", 1));
  assert_int_equal(t.count, 2);
  memset(&mb, 0, sizeof(mb));
  cf__room_add_member(&t, p, &mb);

  /* b was idle at prepare; it is in use by insert time. */
  assert_int_equal(cf__rooms_prepare(&t, 1, &a), CF_OK);
  cf_list_remove(&b->lru_link);
  assert_int_equal(cf__rooms_insert(&t, a, "d", 1), CF_ERR_LIMIT);
  assert_null(cf__rooms_find(&t, "d", 1));
  assert_int_equal(t.count, 2);
  cf__room_discard(&t, a);
  /* Still nothing idle: prepare says so up front. */
  assert_int_equal(cf__rooms_prepare(&t, 0, &a), CF_ERR_LIMIT);
  cf__room_settle(&t, b);
  cf__room_remove_member(&t, &mb);
  cf__rooms_deinit(&t);
}

/* --- Through the hub ---------------------------------------------------- */

static void nop_wake(cf_client *c, void *ud) {
  (void)c;
  (void)ud;
}

static void nop_close(cf_client *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  (void)ud;
}

static const cf_client_ops ops = {CF_CLIENT_OPS_VERSION, nop_wake,
                                  nop_close};

static cf_hub *hub_new(uint32_t max_rooms, uint32_t history) {
  cf_hub_config cfg;
  cf_hub *h;

  memset(&cfg, 0, sizeof(cfg));
  cfg.version = CF_HUB_CONFIG_VERSION;
  cfg.max_rooms = max_rooms;
  cfg.history = history;
  cfg.mem = &tm.mem;
  assert_int_equal(cf_hub_new(&h, &cfg), CF_OK);
  return h;
}

static uint64_t rooms_of(const cf_hub *h) {
  cf_hub_stats st;

  cf_hub_get_stats(h, &st, sizeof(st));
  return st.rooms;
}

static void test_hub_join_leave(void **state) {
  cf_hub *h = hub_new(0, 0);
  cf_client *a, *b;

  (void)state;
  assert_int_equal(cf_client_new(&a, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_new(&b, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_join(NULL, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_client_join(a, "", 0), CF_ERR_INVALID);
  assert_int_equal(cf_client_join(a, "a b", 3), CF_ERR_INVALID);
  assert_int_equal(cf_client_join(a, NULL, 1), CF_ERR_INVALID);
  assert_int_equal(cf_client_join(a, "x", 1), CF_OK);
  assert_int_equal(cf_client_join(a, "x", 1), CF_ERR_EXISTS);
  assert_int_equal(cf_client_join(a, "xy", 2), CF_OK);
  assert_int_equal(cf_client_join(b, "x", 1), CF_OK);
  assert_int_equal(rooms_of(h), 2);
  assert_int_equal(cf_client_leave(a, "z", 1), CF_ERR_NOT_FOUND);
  assert_int_equal(cf_client_leave(a, "", 0), CF_ERR_INVALID);
  assert_int_equal(cf_client_leave(NULL, "x", 1), CF_ERR_INVALID);
  assert_int_equal(cf_client_leave(a, "xy", 2), CF_OK);
  /* Without history an empty room goes at once. */
  assert_int_equal(rooms_of(h), 1);
  assert_int_equal(cf_client_leave(a, "xy", 2), CF_ERR_NOT_FOUND);
  assert_int_equal(cf_client_leave(a, "x", 1), CF_OK);
  assert_int_equal(rooms_of(h), 1);
  cf_client_free(b);
  assert_int_equal(rooms_of(h), 0);
  assert_int_equal(cf_client_join(a, "x", 1), CF_OK);
  cf_hub_free(h);
}

static void test_hub_join_limit(void **state) {
  cf_hub *h = hub_new(2, 1);
  cf_client *a;

  (void)state;
  assert_int_equal(cf_client_new(&a, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_join(a, "r1", 2), CF_OK);
  assert_int_equal(cf_client_join(a, "r2", 2), CF_OK);
  assert_int_equal(cf_client_join(a, "r3", 2), CF_ERR_LIMIT);
  /* An existing room does not count as a new one. */
  assert_int_equal(cf_client_leave(a, "r2", 2), CF_OK);
  assert_int_equal(cf_client_join(a, "r3", 2), CF_OK);
  /* An idle room (history, no members) is evicted for a new one. */
  assert_int_equal(cf_hub_publish(h, "r3", 2, CF_MSG_TEXT, "m", 1), CF_OK);
  assert_int_equal(cf_client_leave(a, "r3", 2), CF_OK);
  assert_int_equal(rooms_of(h), 2);
  assert_int_equal(cf_client_join(a, "r4", 2), CF_OK);
  assert_int_equal(rooms_of(h), 2);
  assert_int_equal(cf_client_join(a, "r5", 2), CF_ERR_LIMIT);
  cf_hub_free(h);
}

static void test_hub_join_nomem_unchanged(void **state) {
  cf_hub *h = hub_new(0, 4);
  cf_client *a, *b;
  unsigned long n;

  (void)state;
  assert_int_equal(cf_client_new(&a, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_new(&b, h, &ops, NULL), CF_OK);
  assert_int_equal(cf_client_join(a, "r", 1), CF_OK);
  assert_int_equal(cf_hub_publish(h, "r", 1, CF_MSG_TEXT, "m", 1), CF_OK);
  /* Every allocation join makes fails in turn; each leaves b out. */
  for (n = 1;; n++) {
    int rv;

    tm.fail_at = tm.count + n;
    tm.failed = 0;
    rv = cf_client_join(b, "q", 1);
    if (rv == CF_OK && !tm.failed)
      break;
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(cf_client_leave(b, "q", 1), CF_ERR_NOT_FOUND);
    assert_int_equal(rooms_of(h), 1);
  }
  tm.fail_at = 0;
  for (n = 1;; n++) {
    int rv;

    assert_int_equal(cf_client_leave(b, "r", 1), CF_ERR_NOT_FOUND);
    tm.fail_at = tm.count + n;
    tm.failed = 0;
    rv = cf_client_join(b, "r", 1);
    if (rv == CF_OK && !tm.failed)
      break;
    assert_int_equal(rv, CF_ERR_NOMEM);
    assert_int_equal(cf_client_pending(b), 0);
  }
  tm.fail_at = 0;
  /* The successful join got the history. */
  assert_int_equal(cf_client_pending(b), 1);
  cf_hub_free(h);
}

int main(void) {
#define T(f) cmocka_unit_test_setup_teardown(f, hf_setup, hf_teardown)
  const struct CMUnitTest tests[] = {
      T(test_name_check),
      T(test_open_find_settle),
      T(test_many_rooms_rehash),
      T(test_history_ring),
      T(test_hist_ring_follows_entries),
      T(test_lru_eviction_and_limit),
      T(test_open_nomem_unchanged),
      T(test_prepare_insert_discard),
      T(test_hub_join_leave),
      T(test_hub_join_limit),
      T(test_hub_join_nomem_unchanged),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
