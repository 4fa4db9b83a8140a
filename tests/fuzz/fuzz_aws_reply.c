/*
 * The SQS JSON and SNS XML reply handlers (cf_aws.c, cf_aws_xml.c): a
 * body from the service, or from anything that answers at the endpoint.
 *
 *   byte 0   bit 0: SNS (XML) instead of SQS (JSON); bits 1-2: HTTP
 *            status 200, 400, 503 or a transfer error; bits 3-6: size
 *            of the root-name buffer for cf__aws_xml_to_json
 *   the rest the body (NUL-terminated, as the HTTP client hands it)
 *
 * A successful SQS reply is then read as a ReceiveMessage answer the
 * way cf_sqs_recv.c does: each Body goes through cf__sqs_body_read()
 * (one envelope, a bundle, or an SNS notification wrapping either), and
 * every envelope it yields is pushed through a small reorder window,
 * which must hand back every envelope it took exactly once.
 */
#include "cf_aws.h"
#include "cf_aws_xml.h"
#include "cf_envelope.h"
#include "cf_mem.h"
#include "cf_sqs_batch.h"
#include "cf_sqs_reorder.h"
#include "fuzz_common.h"

static void check_result(const cf__aws_reply *rep, int proto) {
  const cf__aws_result *r = &rep->r;
  FUZZ_CHECK(r->code == rep->code_ && r->message == rep->message_);
  FUZZ_CHECK(memchr(r->code, '\0', sizeof rep->code_) != NULL);
  FUZZ_CHECK(memchr(r->message, '\0', sizeof rep->message_) != NULL);
  if (r->error == CF_OK) {
    FUZZ_CHECK(r->data != NULL);
    if (proto == CF__AWS_PROTO_SQS)
      FUZZ_CHECK(json_is_object(r->data));
  } else {
    FUZZ_CHECK(r->data == NULL);
  }
  if (r->error == CF_ERR_BACKEND)
    FUZZ_CHECK(r->message[0] != '\0');
}

static size_t pop_all(cf__sqs_reorder *ro, double now, const cf_mem *mem) {
  cf_envelope *e;
  size_t n = 0;
  while ((e = cf__sqs_reorder_pop(ro, now)) != NULL) {
    FUZZ_CHECK(cf__envelope_check(e) == CF_OK);
    cf__envelope_free(e, mem);
    n++;
  }
  return n;
}

typedef struct reader {
  cf__sqs_reorder *ro;
  const cf_mem *mem;
  double now;
  size_t in, out, bad;
} reader;

static int on_env(void *ud, cf_envelope *env) {
  reader *r = ud;
  FUZZ_CHECK(cf__envelope_check(env) == CF_OK);
  if (cf__sqs_reorder_push(r->ro, env, r->now) == CF_OK)
    r->in++;
  else
    cf__envelope_free(env, r->mem);
  return 0;
}

static void on_bad(void *ud, int error, const char *why) {
  reader *r = ud;
  FUZZ_CHECK(error != CF_OK && why != NULL);
  r->bad++;
}

static void receive_all(const json_t *data, const cf_mem *mem) {
  const cf__sqs_reorder_limits lim = {0.5, 3, 3, 2048};
  const json_t *msgs = json_object_get(data, "Messages");
  size_t i, n = cf__sqs_json_list_size(msgs);
  cf__sqs_reorder_stats st;
  reader r = {NULL, mem, 0, 0, 0, 0};

  FUZZ_CHECK(cf__sqs_reorder_new(&r.ro, &lim, mem) == CF_OK);
  for (i = 0; i < n; i++, r.now += 0.2) {
    const json_t *m = cf__sqs_json_list_get(msgs, i);
    const json_t *body = json_object_get(m, "Body");
    (void)cf__sqs_json_str(m, "ReceiptHandle");
    if (json_is_string(body))
      cf__sqs_body_read(json_string_value(body), json_string_length(body),
                        mem, on_env, on_bad, &r);
    r.out += pop_all(r.ro, r.now, mem);
  }
  r.out += pop_all(r.ro, r.now + 3600, mem);
  cf__sqs_reorder_get_stats(r.ro, &st);
  FUZZ_CHECK(r.in == r.out && st.held == 0 && st.bytes == 0);
  cf__sqs_reorder_free(r.ro);
}

static void xml_direct(const char *body, size_t len, size_t name_size,
                       const cf_mem *mem) {
  char name[16];
  json_t *root = (json_t *)1;
  int rc = cf__aws_xml_to_json(body, len, mem, &root,
                               name_size ? name : NULL, name_size);
  if (rc != CF_OK) {
    FUZZ_CHECK(root == NULL);
    return;
  }
  FUZZ_CHECK(root != NULL);
  if (name_size > 0)
    FUZZ_CHECK(memchr(name, '\0', name_size) != NULL);
  json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const long status[4] = {200, 400, 503, 0};
  cf_mem mem;
  cf__http_resp resp;
  cf__aws_reply rep;
  int proto, sel;
  char *body;

  if (size < 1)
    return 0;
  cf__mem_init(&mem, NULL);
  proto = data[0] & 1 ? CF__AWS_PROTO_SNS : CF__AWS_PROTO_SQS;
  sel = (data[0] >> 1) & 3;
  body = fuzz_dup(data + 1, size - 1, 1);
  memset(&resp, 0, sizeof resp);
  resp.error = status[sel] ? CF_OK : CF_ERR_IO;
  resp.errmsg = status[sel] ? "" : "Connection reset by peer";
  resp.status = status[sel];
  resp.body = body;
  resp.body_len = size - 1;

  cf__aws_reply_parse(&rep, proto, &resp, &mem);
  check_result(&rep, proto);
  if (proto == CF__AWS_PROTO_SQS && rep.r.error == CF_OK)
    receive_all(rep.r.data, &mem);
  cf__aws_reply_deinit(&rep);
  if (proto == CF__AWS_PROTO_SNS)
    xml_direct(body, size - 1, (size_t)(data[0] >> 3) & 15, &mem);
  free(body);
  return 0;
}
