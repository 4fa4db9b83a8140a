/* Outgoing messages, batch limits, request building, partial results. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cf_sqs_batch.h"
#include "test_mem.h"

static test_mem tm;

static int setup(void **state) {
  (void)state;
  test_mem_init(&tm, 0);
  return 0;
}

static cf__sqs_msg *mkmsg_len(uint64_t seq, size_t len) {
  static char data[300 * 1024];
  cf_envelope e = {0xabcull, seq, 5, "lobby", 5, CF_MSG_TEXT, data, len};
  cf__sqs_msg *m;

  assert_true(len <= sizeof(data));
  memset(data, 'a', len);
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  return m;
}

static cf__sqs_msg *mkmsg(uint64_t seq) {
  return mkmsg_len(seq, 2);
}

/* A batch of n fresh messages; the batch holds the only references. */
static void fill(cf__sqs_batch *b, unsigned n) {
  unsigned i;

  cf__sqs_batch_init(b);
  for (i = 0; i < n; i++) {
    cf__sqs_msg *m = mkmsg(i + 1);
    assert_true(cf__sqs_batch_fits(b, m->len));
    cf__sqs_batch_add(b, m);
    cf__sqs_msg_unref(m, &tm.mem);
  }
}

static json_t *load(const char *text) {
  json_error_t err;
  json_t *v = json_loads(text, 0, &err);

  if (v == NULL)
    fail_msg("bad test JSON: %s", err.text);
  return v;
}

/* --- messages -------------------------------------------------------- */

/* What cf__sqs_body_read() handed out. */
typedef struct got_body {
  uint64_t seq[16];
  unsigned n, bad, stop_after;
  int last_error;
} got_body;

static int body_each(void *ud, cf_envelope *env) {
  got_body *g = ud;
  assert_true(g->n < 16);
  g->seq[g->n++] = env->seq;
  cf__envelope_free(env, &tm.mem);
  return g->stop_after != 0 && g->n == g->stop_after;
}

static void body_bad(void *ud, int error, const char *why) {
  got_body *g = ud;
  assert_non_null(why);
  g->bad++;
  g->last_error = error;
}

static void read_body(const char *body, got_body *g, unsigned stop_after) {
  memset(g, 0, sizeof(*g));
  g->stop_after = stop_after;
  cf__sqs_body_read(body, strlen(body), &tm.mem, body_each, body_bad, g);
}

/* A bundle of seqs 1..n, as the sender writes it. */
static cf__sqs_msg *mkbundle(unsigned n) {
  cf_envelope e = {0xabcull, 1, 5, "lobby", 5, CF_MSG_TEXT, "hi", 2};
  cf__sqs_msg *m;
  size_t added;
  unsigned i;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  for (i = 2; i <= n; i++) {
    e.seq = i;
    assert_int_equal(cf__sqs_msg_append(&m, &e, CF__SQS_BUNDLE_MAX, &tm.mem,
                                        &added), CF_OK);
  }
  return m;
}

static void test_body_read(void **state) {
  cf__sqs_msg *m = mkbundle(3);
  char bundle[1024], buf[4096];
  const char *nl;
  json_t *note;
  char *text;
  got_body g;
  (void)state;
  assert_true(m->len < sizeof(bundle));
  memcpy(bundle, m->body, m->len + 1);
  assert_int_equal(cf__sqs_msg_unref(m, &tm.mem), 1);
  nl = strchr(bundle, '\n');
  assert_non_null(nl);
  /* One envelope; a bundle; the bundle with empty lines around. */
  read_body(strrchr(bundle, '\n') + 1, &g, 0);
  assert_int_equal(g.n, 1);
  assert_int_equal(g.seq[0], 3);
  read_body(bundle, &g, 0);
  assert_int_equal(g.n, 3);
  assert_true(g.seq[0] == 1 && g.seq[1] == 2 && g.seq[2] == 3);
  assert_int_equal(g.bad, 0);
  snprintf(buf, sizeof(buf), "\n%s\n\n", bundle);
  read_body(buf, &g, 0);
  assert_int_equal(g.n, 3);
  assert_int_equal(g.bad, 0);
  /* A bad line is reported and the others still come. */
  snprintf(buf, sizeof(buf), "%.*snot an envelope\n%s",
           (int)(nl - bundle + 1), bundle, nl + 1);
  read_body(buf, &g, 0);
  assert_int_equal(g.n, 3);
  assert_int_equal(g.bad, 1);
  assert_int_equal(g.last_error, CF_ERR_PARSE);
  /* An SNS notification (AWS writes it over several lines). */
  note = json_pack("{s:s, s:s, s:s}", "Type", "Notification", "MessageId",
                   "x", "Message", bundle);
  assert_non_null(note);
  text = json_dumps(note, JSON_INDENT(2));
  assert_non_null(text);
  assert_non_null(strchr(text, '\n'));
  read_body(text, &g, 0);
  assert_int_equal(g.n, 3);
  assert_int_equal(g.bad, 0);
  /* The reader stops when asked. */
  read_body(text, &g, 2);
  assert_int_equal(g.n, 2);
  read_body(bundle, &g, 1);
  assert_int_equal(g.n, 1);
  free(text);
  json_decref(note);
  /* Not an envelope, nor a notification. */
  read_body("{\"Type\":\"SubscriptionConfirmation\"}", &g, 0);
  assert_int_equal(g.n, 0);
  assert_int_equal(g.bad, 1);
  read_body("", &g, 0);
  assert_int_equal(g.n + g.bad, 0);
  assert_int_equal(tm.live, 0);
}

static void test_msg_encodes_once(void **state) {
  cf_envelope e = {0xabcull, 7, 1700000000000ull, "lobby", 5, CF_MSG_TEXT,
                   "hi \"you\"", 8};
  char want[256];
  size_t n;
  cf__sqs_msg *m;

  (void)state;
  assert_int_equal(cf__envelope_encode(&e, want, sizeof(want), &n), CF_OK);
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  assert_int_equal(m->len, n);
  assert_string_equal(m->body, want);
  assert_string_equal(m->id, "0000000000000abc-7");
  assert_string_equal(m->group, "lobby");
  assert_int_equal(m->refs, 1);
  assert_ptr_equal(cf__sqs_msg_ref(m), m);
  assert_int_equal(cf__sqs_msg_unref(m, &tm.mem), 0);
  assert_int_equal(cf__sqs_msg_unref(m, &tm.mem), 1);
  assert_int_equal(cf__sqs_msg_unref(NULL, &tm.mem), 0);
  assert_int_equal(tm.live, 0);
}

/*
 * A bundle: envelopes one per line, each decodable on its own (text with
 * newlines and characters SQS refuses included), the count and bytes
 * kept; one that would pass the limit leaves the bundle as it was.
 */
static void test_msg_bundle(void **state) {
  static const char *texts[] = {"one", "two\nlines", "\xf0\x9f\x98\x80 smile",
                                "four"};
  cf_envelope e = {0xabcull, 1, 5, "lobby", 5, CF_MSG_TEXT, texts[0], 3};
  cf__sqs_msg *m;
  cf_envelope *d;
  const char *p, *nl, *why;
  size_t added, before, i;

  (void)state;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  for (i = 1; i < 4; i++) {
    e.seq = i + 1;
    e.data = texts[i];
    e.len = strlen(texts[i]);
    before = m->len;
    assert_int_equal(cf__sqs_msg_append(&m, &e, CF__SQS_BUNDLE_MAX, &tm.mem,
                                        &added), CF_OK);
    assert_int_equal(m->len, before + added);
    assert_int_equal(strlen(m->body), m->len);
  }
  assert_int_equal(m->count, 4);
  assert_string_equal(m->id, "0000000000000abc-1"); /* the first's */
  for (p = m->body, i = 0; i < 4; i++, p = nl + 1) {
    nl = strchr(p, '\n');
    if (nl == NULL)
      nl = p + strlen(p);
    assert_int_equal(cf__envelope_decode(&d, p, (size_t)(nl - p), &tm.mem,
                                         &why), CF_OK);
    assert_int_equal(d->seq, i + 1);
    assert_int_equal(d->len, strlen(texts[i]));
    assert_memory_equal(d->data, texts[i], d->len);
    cf__envelope_free(d, &tm.mem);
  }
  assert_int_equal(i, 4);
  assert_true(*(nl) == '\0');
  before = m->len;
  assert_int_equal(cf__sqs_msg_append(&m, &e, m->len + 10, &tm.mem, &added),
                   CF_ERR_TOO_BIG);
  assert_int_equal(m->len, before);
  assert_int_equal(strlen(m->body), before);
  assert_int_equal(m->count, 4);
  /* Out of memory while growing: unchanged too. */
  for (i = 0; i < 2000 && m->cap - m->len > 64; i++)
    assert_int_equal(cf__sqs_msg_append(&m, &e, CF__SQS_BUNDLE_MAX,
                                        &tm.mem, &added), CF_OK);
  before = m->len;
  tm.fail_at = tm.count + 1;
  assert_int_equal(cf__sqs_msg_append(&m, &e, CF__SQS_BUNDLE_MAX, &tm.mem,
                                      &added), CF_ERR_NOMEM);
  tm.fail_at = 0;
  assert_int_equal(m->len, before);
  assert_int_equal(strlen(m->body), before);
  assert_int_equal(cf__sqs_msg_unref(m, &tm.mem), 1);
  assert_int_equal(tm.live, 0);
}

static void test_msg_limits(void **state) {
  static char big[CF__SQS_SIZE_MAX];
  cf_envelope e = {1, 1, 0, "r", 1, CF_MSG_TEXT, big, 0};
  size_t overhead;
  cf__sqs_msg *m = (cf__sqs_msg *)&m;

  (void)state;
  memset(big, 'z', sizeof(big));
  assert_int_equal(cf__envelope_encoded_len(&e, &overhead), CF_OK);
  /* The limit is on the encoded body: exactly at it passes. */
  e.len = CF__SQS_SIZE_MAX - overhead;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  assert_int_equal(m->len, CF__SQS_SIZE_MAX);
  cf__sqs_msg_unref(m, &tm.mem);
  e.len++;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_ERR_TOO_BIG);
  assert_null(m);
  /* Binary grows by a third in base64. */
  e.flags = CF_MSG_BINARY;
  e.len = (CF__SQS_SIZE_MAX - overhead) / 4 * 3 + 3;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_ERR_TOO_BIG);
  /* Text that is not UTF-8 has no wire form. */
  e.flags = CF_MSG_TEXT;
  e.data = "\xff";
  e.len = 1;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_ERR_INVALID);
  test_mem_init(&tm, 1);
  e.data = "ok";
  e.len = 2;
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_ERR_NOMEM);
  assert_int_equal(tm.live, 0);
}

/* Characters SQS refuses (U+FFFE, U+FFFF) and ones past the BMP go as
 * JSON escapes, and decode back to the same text. */
static void test_msg_sqs_safe(void **state) {
  static const char text[] = "a\xef\xbf\xbe" "b\xef\xbf\xbf" "c"
                             "\xf0\x9f\x98\x80" "\\" "\xf4\x8f\xbf\xbf"
                             "\xef\xbf\xbd" "\xe2\x82\xac";
  cf_envelope e = {0x1, 2, 0, "r", 1, CF_MSG_TEXT, text, sizeof(text) - 1};
  cf_envelope *back;
  cf__sqs_msg *m;
  size_t plain;
  const unsigned char *p;

  (void)state;
  assert_int_equal(cf__envelope_encoded_len(&e, &plain), CF_OK);
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  assert_int_equal(m->len, strlen(m->body));
  assert_int_equal(m->len, plain + 3 + 3 + 8 + 8);
  assert_non_null(strstr(m->body, "\"data\":\"a\\ufffeb\\uffffc"
                                  "\\ud83d\\ude00\\\\\\udbff\\udfff"
                                  "\xef\xbf\xbd\xe2\x82\xac\""));
  /* Nothing left outside what SQS takes, and nothing past the BMP. */
  for (p = (const unsigned char *)m->body; *p; p++)
    assert_true(*p < 0xf0 && *p >= 0x20);
  assert_int_equal(cf__envelope_decode(&back, m->body, m->len, &tm.mem,
                                       NULL), CF_OK);
  assert_int_equal(back->len, sizeof(text) - 1);
  assert_memory_equal(back->data, text, sizeof(text) - 1);
  cf__envelope_free(back, &tm.mem);
  cf__sqs_msg_unref(m, &tm.mem);

  /* The limit applies to the escaped body. */
  assert_int_equal(cf__sqs_msg_new(&m, &e, plain + 21, &tm.mem),
                   CF_ERR_TOO_BIG);
  assert_int_equal(cf__sqs_msg_new(&m, &e, plain + 22, &tm.mem), CF_OK);
  cf__sqs_msg_unref(m, &tm.mem);
  /* The second allocation failing leaves nothing behind. */
  test_mem_init(&tm, 2);
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_ERR_NOMEM);
  assert_int_equal(tm.live, 0);

  /* Binary payloads are base64: never rewritten. */
  test_mem_init(&tm, 0);
  e.flags = CF_MSG_BINARY;
  assert_int_equal(cf__envelope_encoded_len(&e, &plain), CF_OK);
  assert_int_equal(cf__sqs_msg_new(&m, &e, CF__SQS_SIZE_MAX, &tm.mem),
                   CF_OK);
  assert_int_equal(m->len, plain);
  cf__sqs_msg_unref(m, &tm.mem);
  assert_int_equal(tm.live, 0);
}

/* --- batch limits ------------------------------------------------------ */

static void test_ten_entries(void **state) {
  cf__sqs_batch b;
  cf__sqs_msg *m;

  (void)state;
  fill(&b, 10);
  assert_int_equal(b.n, 10);
  assert_int_equal(b.pending, 0x3ff);
  assert_int_equal(cf__sqs_batch_pending_count(&b), 10);
  m = mkmsg(11);
  assert_false(cf__sqs_batch_fits(&b, m->len));
  assert_false(cf__sqs_batch_fits(&b, 0));
  cf__sqs_msg_unref(m, &tm.mem);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(b.n, 0);
  assert_int_equal(tm.live, 0);
}

static void test_size_limit(void **state) {
  cf__sqs_batch b;
  cf__sqs_msg *m1 = mkmsg_len(1, 130 * 1024), *m2 = mkmsg_len(2, 130 * 1024);
  cf__sqs_msg *m3 = mkmsg(3);

  (void)state;
  cf__sqs_batch_init(&b);
  assert_true(cf__sqs_batch_fits(&b, m1->len));
  cf__sqs_batch_add(&b, m1);
  assert_false(cf__sqs_batch_fits(&b, m2->len));
  assert_true(cf__sqs_batch_fits(&b, m3->len));
  assert_true(cf__sqs_batch_fits(&b, CF__SQS_SIZE_MAX - m1->len));
  assert_false(cf__sqs_batch_fits(&b, CF__SQS_SIZE_MAX - m1->len + 1));
  assert_false(cf__sqs_batch_fits(&b, SIZE_MAX));
  cf__sqs_batch_add(&b, m3);
  assert_int_equal(b.bytes, m1->len + m3->len);
  assert_int_equal(cf__sqs_batch_pending_bytes(&b), m1->len + m3->len);
  cf__sqs_batch_clear(&b, &tm.mem);
  cf__sqs_msg_unref(m1, &tm.mem);
  cf__sqs_msg_unref(m2, &tm.mem);
  cf__sqs_msg_unref(m3, &tm.mem);
  assert_int_equal(tm.live, 0);
}

/* One message in batches for three peers: freed with the last. */
static void test_copy_shares(void **state) {
  cf__sqs_batch a, b, c;

  (void)state;
  fill(&a, 3);
  cf__sqs_batch_copy(&b, &a);
  cf__sqs_batch_copy(&c, &a);
  assert_int_equal(a.msg[0]->refs, 3);
  assert_ptr_equal(b.msg[2], a.msg[2]);
  cf__sqs_batch_clear(&a, &tm.mem);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(c.msg[1]->refs, 1);
  assert_int_equal(tm.live, 3);
  cf__sqs_batch_clear(&c, &tm.mem);
  assert_int_equal(tm.live, 0);
}

/* --- requests ---------------------------------------------------------- */

static void test_sqs_params(void **state) {
  cf__sqs_batch b;
  json_t *p, *entries, *e;

  (void)state;
  fill(&b, 3);
  p = cf__sqs_batch_sqs_params(&b, "http://q/1/x", 0);
  assert_non_null(p);
  assert_string_equal(cf__sqs_json_str(p, "QueueUrl"), "http://q/1/x");
  entries = json_object_get(p, "Entries");
  assert_int_equal(json_array_size(entries), 3);
  e = json_array_get(entries, 2);
  assert_string_equal(cf__sqs_json_str(e, "Id"), "2");
  assert_string_equal(cf__sqs_json_str(e, "MessageBody"), b.msg[2]->body);
  assert_null(json_object_get(e, "MessageGroupId"));
  json_decref(p);

  /* Only what is pending goes again, under its first Id. */
  b.pending = 0x5;
  p = cf__sqs_batch_sqs_params(&b, "u", 1);
  entries = json_object_get(p, "Entries");
  assert_int_equal(json_array_size(entries), 2);
  e = json_array_get(entries, 1);
  assert_string_equal(cf__sqs_json_str(e, "Id"), "2");
  assert_string_equal(cf__sqs_json_str(e, "MessageGroupId"), "lobby");
  assert_string_equal(cf__sqs_json_str(e, "MessageDeduplicationId"),
                      "0000000000000abc-3");
  json_decref(p);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(tm.live, 0);
}

static const char *param(const cf__sqs_sns_params *o, const char *name) {
  size_t i;

  for (i = 0; i < o->n; i++)
    if (strcmp(o->p[i].name, name) == 0)
      return o->p[i].value;
  return NULL;
}

static void test_sns_params(void **state) {
  cf__sqs_batch b;
  cf__sqs_sns_params o;

  (void)state;
  fill(&b, 10);
  cf__sqs_batch_sns_params(&b, "arn:t", 0, &o);
  assert_int_equal(o.n, 21);
  assert_string_equal(param(&o, "TopicArn"), "arn:t");
  assert_string_equal(param(&o, "PublishBatchRequestEntries.member.10.Id"),
                      "9");
  assert_ptr_equal(param(&o, "PublishBatchRequestEntries.member.1.Message"),
                   b.msg[0]->body);
  assert_null(param(&o, "PublishBatchRequestEntries.member.1."
                        "MessageGroupId"));

  /* Retry of entries 3 and 7: members 1 and 2, Ids kept. */
  b.pending = (1u << 3) | (1u << 7);
  cf__sqs_batch_sns_params(&b, "arn:t", 1, &o);
  assert_int_equal(o.n, 9);
  assert_string_equal(param(&o, "PublishBatchRequestEntries.member.1.Id"),
                      "3");
  assert_string_equal(param(&o, "PublishBatchRequestEntries.member.2.Id"),
                      "7");
  assert_string_equal(
      param(&o, "PublishBatchRequestEntries.member.2.MessageGroupId"),
      "lobby");
  assert_string_equal(
      param(&o, "PublishBatchRequestEntries.member.2."
                "MessageDeduplicationId"),
      "0000000000000abc-8");
  assert_null(param(&o, "PublishBatchRequestEntries.member.3.Id"));
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(tm.live, 0);
}

/* --- responses --------------------------------------------------------- */

static void test_apply_sqs_partial(void **state) {
  cf__sqs_batch b;
  cf__sqs_batch_outcome out;
  json_t *r;

  (void)state;
  fill(&b, 4);
  r = load("{\"Successful\":[{\"Id\":\"0\",\"MessageId\":\"m\"},"
           "{\"Id\":\"2\"}],"
           "\"Failed\":[{\"Id\":\"1\",\"SenderFault\":false,"
           "\"Code\":\"InternalError\",\"Message\":\"try again\"},"
           "{\"Id\":\"3\",\"SenderFault\":true,\"Code\":\"Bad\"}]}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.accepted, 2);
  assert_int_equal(out.failed, 1);
  assert_int_equal(out.rejected, 1);
  assert_string_equal(out.detail, "InternalError: try again");
  assert_int_equal(b.pending, 0x2);
  json_decref(r);

  /* The retry succeeds; an answer about entries already done is not
   * counted twice. */
  r = load("{\"Successful\":[{\"Id\":\"1\"},{\"Id\":\"0\"}],"
           "\"Failed\":[]}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.accepted, 1);
  assert_int_equal(out.failed + out.rejected, 0);
  assert_string_equal(out.detail, "");
  assert_int_equal(b.pending, 0);
  json_decref(r);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(tm.live, 0);
}

/* SNS answers in XML; converted, lists look like these. */
static void test_apply_sns_shapes(void **state) {
  cf__sqs_batch b;
  cf__sqs_batch_outcome out;
  json_t *r;

  (void)state;
  fill(&b, 3);
  r = load("{\"Successful\":{\"member\":[{\"Id\":\"0\",\"MessageId\":\"a\"},"
           "{\"Id\":\"2\",\"MessageId\":\"b\"}]},"
           "\"Failed\":{\"member\":{\"Id\":\"1\",\"Code\":\"Throttled\","
           "\"SenderFault\":\"false\"}}}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.accepted, 2);
  assert_int_equal(out.failed, 1);
  assert_string_equal(out.detail, "Throttled: ");
  assert_int_equal(b.pending, 0x2);
  json_decref(r);

  r = load("{\"Successful\":\"\",\"Failed\":{\"member\":{\"Id\":\"1\","
           "\"Code\":\"InvalidParameter\",\"SenderFault\":\"true\"}}}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.rejected, 1);
  assert_int_equal(b.pending, 0);
  json_decref(r);

  /* A lone member without the wrapper. */
  b.pending = 0x1;
  r = load("{\"Successful\":{\"Id\":\"0\"},\"Failed\":\"\"}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.accepted, 1);
  assert_int_equal(b.pending, 0);
  json_decref(r);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(tm.live, 0);
}

static void test_apply_bad_input(void **state) {
  cf__sqs_batch b;
  cf__sqs_batch_outcome out;
  json_t *r;

  (void)state;
  fill(&b, 2);
  r = load("{\"Other\":1}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_ERR_PARSE);
  assert_int_equal(b.pending, 0x3);
  json_decref(r);
  assert_int_equal(cf__sqs_batch_apply(&b, NULL, &out), CF_ERR_PARSE);
  /* Ids that are not ours, or out of range, change nothing; nor does an
   * entry missing from both lists. */
  r = load("{\"Successful\":[{\"Id\":\"5\"},{\"Id\":\"01\"},{\"Id\":1},"
           "{\"Id\":\"\"},{\"Id\":\"-1\"},3,\"x\"],\"Failed\":[{}]}");
  assert_int_equal(cf__sqs_batch_apply(&b, r, &out), CF_OK);
  assert_int_equal(out.accepted + out.failed + out.rejected, 0);
  assert_int_equal(b.pending, 0x3);
  json_decref(r);
  cf__sqs_batch_clear(&b, &tm.mem);
  assert_int_equal(tm.live, 0);
}

static void test_json_list(void **state) {
  json_t *v;

  (void)state;
  v = load("{\"a\":[1,2],\"b\":{\"member\":[{\"x\":1},{\"x\":2},{}]},"
           "\"c\":{\"member\":{\"x\":\"y\"}},\"d\":\"\",\"e\":{\"x\":1},"
           "\"f\":{}}");
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "a")), 2);
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "b")), 3);
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "c")), 1);
  assert_string_equal(
      cf__sqs_json_str(cf__sqs_json_list_get(json_object_get(v, "c"), 0),
                       "x"), "y");
  assert_null(cf__sqs_json_list_get(json_object_get(v, "c"), 1));
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "d")), 0);
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "e")), 1);
  assert_int_equal(cf__sqs_json_list_size(json_object_get(v, "f")), 0);
  assert_int_equal(cf__sqs_json_list_size(NULL), 0);
  assert_null(cf__sqs_json_list_get(NULL, 0));
  assert_null(cf__sqs_json_str(v, "a"));
  assert_null(cf__sqs_json_str(NULL, "a"));
  json_decref(v);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_msg_encodes_once, setup),
    cmocka_unit_test_setup(test_msg_limits, setup),
    cmocka_unit_test_setup(test_msg_sqs_safe, setup),
    cmocka_unit_test_setup(test_ten_entries, setup),
    cmocka_unit_test_setup(test_size_limit, setup),
    cmocka_unit_test_setup(test_copy_shares, setup),
    cmocka_unit_test_setup(test_sqs_params, setup),
    cmocka_unit_test_setup(test_sns_params, setup),
    cmocka_unit_test_setup(test_apply_sqs_partial, setup),
    cmocka_unit_test_setup(test_apply_sns_shapes, setup),
    cmocka_unit_test_setup(test_apply_bad_input, setup),
    cmocka_unit_test_setup(test_json_list, setup),
    cmocka_unit_test_setup(test_msg_bundle, setup),
    cmocka_unit_test_setup(test_body_read, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
