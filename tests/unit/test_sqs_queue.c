/*
 * The SQS/SNS queue without a network: configuration checks, the
 * bounded publish buffer before start, flush before start, and an
 * allocation-failure sweep over creation. (Talking to a service is the
 * integration test's job: tests/integration/sqs_cluster.c.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include <chatfanout/cf_queue_sqs.h>

#include "fake_loop.h"
#include "test_mem.h"

static test_mem tm;
static fake_loop fl;
static int reports;

static char *const env[] = {
  "AWS_ACCESS_KEY_ID=AKIDTEST", "AWS_SECRET_ACCESS_KEY=secret",
  "AWS_REGION=eu-west-1", "AWS_EC2_METADATA_DISABLED=true", NULL};

static cf_sqs_config base(void) {
  cf_sqs_config c = {.version = CF_SQS_CONFIG_VERSION,
                     .cluster = "chat",
                     .instance_id = 0xabcdef,
                     .endpoint_sqs = "http://127.0.0.1:9",
                     .endpoint_sns = "http://127.0.0.1:9",
                     .envp = env};
  return c;
}

static void on_message(cf_queue *q, const cf_envelope *e, void *ud) {
  (void)q;
  (void)e;
  (void)ud;
  reports++;
}

static void on_state(cf_queue *q, int state, void *ud) {
  (void)q;
  (void)state;
  (void)ud;
  reports++;
}

static const cf_queue_callbacks cbs = {CF_QUEUE_CALLBACKS_VERSION,
                                       on_message, on_state};

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  fake_loop_init(&fl);
  reports = 0;
  return 0;
}

static int live_timers(void) {
  int i, n = 0;

  for (i = 0; i < FAKE_LOOP_MAX; i++)
    n += fl.timers[i].used;
  return n;
}

static void expect_invalid(const cf_sqs_config *c, int want) {
  cf_queue *q = (cf_queue *)&q;
  char msg[200] = "x";

  assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, c, &tm.mem, msg,
                                    sizeof(msg)), want);
  assert_null(q);
  assert_true(strlen(msg) > 0 && strcmp(msg, "x") != 0);
  assert_int_equal(tm.live, 0);
  assert_int_equal(live_timers(), 0);
}

static void test_config_invalid(void **state) {
  static const char *bad_clusters[] = {
    "", "with space", "dot.ted", "s\xc3\xa9", "a/b",
    /* 64: over the queue-name room */
    "0123456789012345678901234567890123456789012345678901234567890123"};
  cf_sqs_config c;
  size_t i;

  (void)state;
  c = base();
  c.version = 99;
  expect_invalid(&c, CF_ERR_VERSION);
  for (i = 0; i < sizeof(bad_clusters) / sizeof(bad_clusters[0]); i++) {
    c = base();
    c.cluster = bad_clusters[i];
    expect_invalid(&c, CF_ERR_INVALID);
  }
  c = base();
  c.fifo = 1; /* 59 characters: fits plain queue names, not .fifo */
  c.cluster = "01234567890123456789012345678901234567890123456789012345678";
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.topology = CF_SQS_QUEUES;
  c.fifo = 1;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.topology = 7;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.instance_id = 0;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.pollers = 17;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.wait_seconds = 21;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.retention = 59;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.linger = -1;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.interval = -1;
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.interval = 11; /* over 10 s */
  expect_invalid(&c, CF_ERR_INVALID);
  {
    /* Version 1 ends before interval: whatever lies there is not read. */
    cf_queue *q;
    c = base();
    c.version = 1;
    c.interval = -1;
    assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, &c, NULL, NULL, 0),
                     CF_OK);
    cf_queue_free(q);
  }
  c = base();
  c.heartbeat = 100;
  c.stale_after = 100; /* not more than one heartbeat */
  expect_invalid(&c, CF_ERR_INVALID);
  c = base();
  c.endpoint_sqs = "not a url";
  expect_invalid(&c, CF_ERR_INVALID);
  assert_int_equal(cf_queue_sqs_new(NULL, &fl.loop, &c, NULL, NULL, 0),
                   CF_ERR_INVALID);
  c = base();
  {
    cf_queue *q;
    assert_int_equal(cf_queue_sqs_new(&q, NULL, &c, NULL, NULL, 0),
                     CF_ERR_INVALID);
    assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, NULL, NULL, NULL, 0),
                     CF_ERR_INVALID);
  }
}

static void test_longest_names(void **state) {
  cf_sqs_config c = base();
  cf_queue *q;

  (void)state;
  c.cluster = "012345678901234567890123456789012345678901234567890123456789"
              "012";
  assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, &c, &tm.mem, NULL, 0),
                   CF_OK);
  cf_queue_free(q);
  c.fifo = 1;
  c.cluster = "0123456789012345678901234567890123456789012345678901234567";
  assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, &c, &tm.mem, NULL, 0),
                   CF_OK);
  assert_string_equal(cf_queue_name(q), "sqs");
  assert_string_equal(cf_queue_errmsg(q), "");
  assert_int_equal(cf_queue_state_get(q), CF_QUEUE_STOPPED);
  cf_queue_free(q);
  assert_int_equal(tm.live, 0);
  assert_int_equal(live_timers(), 0);
}

static int publish(cf_queue *q, uint64_t seq, size_t len) {
  static char data[300 * 1024];
  cf_envelope e = {0xabcdef, seq, 1, "room", 4, CF_MSG_TEXT, data, len};

  memset(data, 'a', sizeof(data));
  return cf_queue_publish(q, &e);
}

/* Before start publishes wait in the bounded buffer; nothing calls back
 * and nothing leaks when the queue is freed with them. */
static void test_buffer_before_start(void **state) {
  cf_sqs_config c = base();
  cf_queue_stats st;
  cf_queue *q;
  uint64_t seq = 0;
  int rv, n = 0;

  (void)state;
  c.max_buffer = 10000;
  assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, &c, &tm.mem, NULL, 0),
                   CF_OK);
  assert_int_equal(cf_queue_set_callbacks(q, &cbs, NULL), CF_OK);
  assert_int_equal(publish(q, ++seq, 256 * 1024), CF_ERR_TOO_BIG);
  while ((rv = publish(q, ++seq, 1000)) == CF_OK)
    n++;
  assert_int_equal(rv, CF_ERR_QUEUE_FULL);
  assert_int_equal(n, 8); /* about 1120 bytes each */
  cf_queue_get_stats(q, &st, sizeof(st));
  assert_true(st.buffered_bytes > 8800 && st.buffered_bytes <= 10000);
  assert_int_equal(st.published, 8);
  assert_int_equal(st.publish_errors, 2);
  assert_int_equal(st.requests, 0);
  assert_int_equal(st.dropped, 0);
  /* The linger timer runs, but without a setup nothing is sent. */
  fake_loop_advance(&fl, 1.0);
  assert_int_equal(reports, 0);
  cf_queue_free(q);
  assert_int_equal(tm.live, 0);
  assert_int_equal(live_timers(), 0);
}

static void test_flush_before_start(void **state) {
  cf_sqs_config c = base();
  cf_queue *q;

  (void)state;
  assert_int_equal(cf_queue_sqs_new(&q, &fl.loop, &c, &tm.mem, NULL, 0),
                   CF_OK);
  assert_int_equal(cf_queue_flush(q, 1.0), CF_OK);
  assert_int_equal(cf_queue_state_get(q), CF_QUEUE_STOPPED);
  cf_queue_free(q);
  cf_queue_free(NULL);
  assert_int_equal(tm.live, 0);
}

/* Every allocation of creation and publish failing in turn. */
static void test_alloc_sweep(void **state) {
  cf_sqs_config c = base();
  unsigned long n;
  int failed = 1;

  (void)state;
  for (n = 1; failed && n < 500; n++) {
    cf_queue *q = NULL;
    int rv;
    test_mem_init(&tm, n);
    fake_loop_init(&fl);
    rv = cf_queue_sqs_new(&q, &fl.loop, &c, &tm.mem, NULL, 0);
    if (rv == CF_OK) {
      rv = publish(q, 1, 10);
      assert_true(rv == CF_OK || rv == CF_ERR_NOMEM);
      cf_queue_free(q);
    } else {
      assert_int_equal(rv, CF_ERR_NOMEM);
      assert_null(q);
    }
    assert_int_equal(tm.live, 0);
    assert_int_equal(live_timers(), 0);
    failed = tm.failed;
  }
  assert_false(failed);
  assert_true(n > 10); /* the sweep went through the whole creation */
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_config_invalid, setup),
    cmocka_unit_test_setup(test_longest_names, setup),
    cmocka_unit_test_setup(test_buffer_before_start, setup),
    cmocka_unit_test_setup(test_flush_before_start, setup),
    cmocka_unit_test_setup(test_alloc_sweep, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
