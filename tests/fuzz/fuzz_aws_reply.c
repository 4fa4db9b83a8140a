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
 * way cf_sqs_recv.c does (its functions are static, so the few lines
 * that pick the bodies are repeated here): each Body is decoded as an
 * envelope, directly or out of an SNS notification, and pushed through
 * a small reorder window, which must hand back every envelope it took
 * exactly once.
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

/* decode_body() of cf_sqs_recv.c. */
static int decode_body(const char *body, size_t len, const cf_mem *mem,
                       cf_envelope **env) {
  const char *why, *inner, *type;
  json_t *w;
  int rv = cf__envelope_decode(env, body, len, mem, &why);
  if (rv != CF_ERR_PARSE)
    return rv;
  w = json_loadb(body, len, 0, NULL);
  inner = cf__sqs_json_str(w, "Message");
  type = cf__sqs_json_str(w, "Type");
  if (inner != NULL && type != NULL && strcmp(type, "Notification") == 0)
    rv = cf__envelope_decode(
        env, inner, json_string_length(json_object_get(w, "Message")), mem,
        &why);
  json_decref(w);
  return rv;
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

static void receive_all(const json_t *data, const cf_mem *mem) {
  const cf__sqs_reorder_limits lim = {0.5, 3, 3, 2048};
  const json_t *msgs = json_object_get(data, "Messages");
  size_t i, n = cf__sqs_json_list_size(msgs), in = 0, out = 0;
  cf__sqs_reorder_stats st;
  cf__sqs_reorder *ro;
  cf_envelope *env;
  double now = 0;

  FUZZ_CHECK(cf__sqs_reorder_new(&ro, &lim, mem) == CF_OK);
  for (i = 0; i < n; i++, now += 0.2) {
    const json_t *m = cf__sqs_json_list_get(msgs, i);
    const json_t *body = json_object_get(m, "Body");
    (void)cf__sqs_json_str(m, "ReceiptHandle");
    if (!json_is_string(body) ||
        decode_body(json_string_value(body), json_string_length(body), mem,
                    &env) != CF_OK)
      continue;
    if (cf__sqs_reorder_push(ro, env, now) == CF_OK)
      in++;
    else
      cf__envelope_free(env, mem);
    out += pop_all(ro, now, mem);
  }
  out += pop_all(ro, now + 3600, mem);
  cf__sqs_reorder_get_stats(ro, &st);
  FUZZ_CHECK(in == out && st.held == 0 && st.bytes == 0);
  cf__sqs_reorder_free(ro);
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
