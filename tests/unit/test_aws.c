/*
 * Signed SQS/SNS calls (lib/queue/sqs/cf_aws.c) and the SNS XML reader
 * (cf_aws_xml.c):
 *  - XML -> JSON on real-shaped SNS responses, malformed and hostile XML;
 *  - reply parsing and error classification for SQS JSON errors as AWS
 *    and fauxqs send them, SNS XML errors, transport failures;
 *  - form encoding and endpoint splitting;
 *  - end to end against a server on 127.0.0.1 run by this file on a real
 *    libev loop: it checks each request (method, path, headers, the
 *    Authorization header re-derived with the signer, body) and answers
 *    with canned responses.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include <chatfanout/adapters/cf_libev.h>

#include "cf_aws.h"
#include "cf_aws_xml.h"
#include "cf_mem.h"
#include "cf_sqs_sign.h"
#include "http_server.h"
#include "test_mem.h"

/* ---- XML -------------------------------------------------------------- */

#define NS "xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\""
#define META \
  "<ResponseMetadata><RequestId>1469e8d7-1642-564e-b85d-a19b4b341f83" \
  "</RequestId></ResponseMetadata>"

static const char create_topic[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<CreateTopicResponse " NS ">\n"
    "  <CreateTopicResult>\n"
    "    <TopicArn>arn:aws:sns:us-east-1:123456789012:chat</TopicArn>\n"
    "  </CreateTopicResult>\n  " META "\n</CreateTopicResponse>\n";

static const char subscribe[] =
    "<SubscribeResponse " NS "><SubscribeResult><SubscriptionArn>"
    "arn:aws:sns:us-east-1:123456789012:chat:6b0e71bd-7e97-4d97-80ce-"
    "4a0994e55286</SubscriptionArn></SubscribeResult>" META
    "</SubscribeResponse>";

static const char publish_batch[] =
    "<PublishBatchResponse " NS ">\n  <PublishBatchResult>\n"
    "    <Successful>\n"
    "      <member><Id>1</Id><MessageId>m-1</MessageId></member>\n"
    "      <member><Id>3</Id><MessageId>m-3</MessageId>"
    "<SequenceNumber>10000000000000003000</SequenceNumber></member>\n"
    "    </Successful>\n    <Failed>\n"
    "      <member><Id>2</Id><Code>InternalError</Code>"
    "<Message>try again</Message><SenderFault>false</SenderFault>"
    "</member>\n    </Failed>\n  </PublishBatchResult>\n  " META
    "\n</PublishBatchResponse>";

static const char publish_batch_ok[] =
    "<PublishBatchResponse " NS "><PublishBatchResult><Successful>"
    "<member><Id>a</Id><MessageId>x</MessageId></member></Successful>"
    "<Failed></Failed></PublishBatchResult>" META "</PublishBatchResponse>";

static const char list_subs[] =
    "<ListSubscriptionsByTopicResponse " NS ">\n"
    "  <ListSubscriptionsByTopicResult>\n    <Subscriptions>\n"
    "      <member>\n        <TopicArn>arn:t</TopicArn>\n"
    "        <Protocol>sqs</Protocol>\n"
    "        <SubscriptionArn>arn:t:1</SubscriptionArn>\n"
    "        <Owner>123456789012</Owner>\n"
    "        <Endpoint>arn:aws:sqs:us-east-1:123456789012:q1</Endpoint>\n"
    "      </member>\n      <member>\n"
    "        <SubscriptionArn>PendingConfirmation</SubscriptionArn>\n"
    "        <Endpoint>arn:aws:sqs:us-east-1:123456789012:q2</Endpoint>\n"
    "      </member>\n    </Subscriptions>\n"
    "    <NextToken>tok==</NextToken>\n"
    "  </ListSubscriptionsByTopicResult>\n  " META
    "\n</ListSubscriptionsByTopicResponse>";

static const char topic_attrs[] =
    "<GetTopicAttributesResponse " NS "><GetTopicAttributesResult>"
    "<Attributes><entry><key>Owner</key><value>123456789012</value>"
    "</entry>\n<entry><key>Policy</key><value>{&quot;Version&quot;:"
    "&quot;2012-10-17&quot;}</value></entry>\n<entry><key>DisplayName"
    "</key><value></value></entry></Attributes>"
    "</GetTopicAttributesResult>" META "</GetTopicAttributesResponse>";

static const char unsubscribe[] =
    "<UnsubscribeResponse " NS ">\n  <UnsubscribeResult>\n    \n"
    "  </UnsubscribeResult>\n  " META "\n</UnsubscribeResponse>";

static const char no_result[] =
    "<DeleteTopicResponse " NS ">" META "</DeleteTopicResponse>";

static const char sns_error[] =
    "<ErrorResponse " NS ">\n  <Error>\n    <Type>Sender</Type>\n"
    "    <Code>NotFound</Code>\n    <Message>Topic does not exist"
    "</Message>\n  </Error>\n  <RequestId>9c4d</RequestId>\n"
    "</ErrorResponse>";

static const char sns_throttle[] =
    "<ErrorResponse " NS "><Error><Type>Sender</Type><Code>Throttling"
    "</Code><Message>Rate exceeded</Message></Error><RequestId>r"
    "</RequestId></ErrorResponse>";

static json_t *path_get(json_t *v, const char *path) {
  char buf[256], *save = NULL, *tok;
  snprintf(buf, sizeof(buf), "%s", path);
  for (tok = strtok_r(buf, ".", &save); tok != NULL && v != NULL;
       tok = strtok_r(NULL, ".", &save)) {
    if (isdigit((unsigned char)tok[0]))
      v = json_array_get(v, strtoul(tok, NULL, 10));
    else
      v = json_object_get(v, tok);
  }
  return v;
}

static void assert_str_at(json_t *v, const char *path, const char *want) {
  json_t *s = path_get(v, path);
  if (!json_is_string(s))
    fail_msg("%s: not a string", path);
  assert_string_equal(json_string_value(s), want);
}

static void reply_ok(const char *xml, cf__aws_xml_reply *r) {
  test_mem tm;
  test_mem_init(&tm, 0);
  assert_int_equal(cf__aws_xml_reply_parse(xml, strlen(xml), &tm.mem, r),
                   CF_OK);
  assert_int_equal(tm.live, 0);
  assert_false(r->is_error);
  assert_non_null(r->data);
}

static void test_xml_create_subscribe(void **state) {
  cf__aws_xml_reply r;
  (void)state;
  reply_ok(create_topic, &r);
  assert_true(json_is_object(r.data));
  assert_int_equal(json_object_size(r.data), 1);
  assert_str_at(r.data, "TopicArn", "arn:aws:sns:us-east-1:123456789012:chat");
  assert_str_at(r.doc, "ResponseMetadata.RequestId",
                "1469e8d7-1642-564e-b85d-a19b4b341f83");
  cf__aws_xml_reply_deinit(&r);
  reply_ok(subscribe, &r);
  assert_str_at(r.data, "SubscriptionArn",
                "arn:aws:sns:us-east-1:123456789012:chat:"
                "6b0e71bd-7e97-4d97-80ce-4a0994e55286");
  cf__aws_xml_reply_deinit(&r);
  cf__aws_xml_reply_deinit(NULL);
}

static void test_xml_publish_batch(void **state) {
  cf__aws_xml_reply r;
  (void)state;
  reply_ok(publish_batch, &r);
  assert_true(json_is_array(path_get(r.data, "Successful")));
  assert_int_equal(json_array_size(path_get(r.data, "Successful")), 2);
  assert_str_at(r.data, "Successful.0.Id", "1");
  assert_str_at(r.data, "Successful.0.MessageId", "m-1");
  assert_str_at(r.data, "Successful.1.SequenceNumber",
                "10000000000000003000");
  assert_int_equal(json_array_size(path_get(r.data, "Failed")), 1);
  assert_str_at(r.data, "Failed.0.Id", "2");
  assert_str_at(r.data, "Failed.0.Code", "InternalError");
  assert_str_at(r.data, "Failed.0.Message", "try again");
  assert_str_at(r.data, "Failed.0.SenderFault", "false");
  cf__aws_xml_reply_deinit(&r);
  /* An empty list reads as "" (see cf_aws_xml.h). */
  reply_ok(publish_batch_ok, &r);
  assert_int_equal(json_array_size(path_get(r.data, "Successful")), 1);
  assert_str_at(r.data, "Failed", "");
  cf__aws_xml_reply_deinit(&r);
}

static void test_xml_list_and_attrs(void **state) {
  cf__aws_xml_reply r;
  (void)state;
  reply_ok(list_subs, &r);
  assert_int_equal(json_array_size(path_get(r.data, "Subscriptions")), 2);
  assert_str_at(r.data, "Subscriptions.0.Protocol", "sqs");
  assert_str_at(r.data, "Subscriptions.0.Endpoint",
                "arn:aws:sqs:us-east-1:123456789012:q1");
  assert_str_at(r.data, "Subscriptions.1.SubscriptionArn",
                "PendingConfirmation");
  assert_str_at(r.data, "NextToken", "tok==");
  cf__aws_xml_reply_deinit(&r);
  reply_ok(topic_attrs, &r);
  assert_str_at(r.data, "Attributes.Owner", "123456789012");
  assert_str_at(r.data, "Attributes.Policy",
                "{\"Version\":\"2012-10-17\"}");
  assert_str_at(r.data, "Attributes.DisplayName", "");
  assert_int_equal(json_object_size(path_get(r.data, "Attributes")), 3);
  cf__aws_xml_reply_deinit(&r);
}

static void test_xml_empty_results(void **state) {
  cf__aws_xml_reply r;
  (void)state;
  reply_ok(unsubscribe, &r);
  assert_true(json_is_object(r.data));
  assert_int_equal(json_object_size(r.data), 0);
  cf__aws_xml_reply_deinit(&r);
  reply_ok(no_result, &r);
  assert_true(json_is_object(r.data));
  assert_int_equal(json_object_size(r.data), 0);
  cf__aws_xml_reply_deinit(&r);
}

static void test_xml_error(void **state) {
  cf__aws_xml_reply r;
  (void)state;
  assert_int_equal(cf__aws_xml_reply_parse(sns_error, sizeof(sns_error) - 1,
                                           NULL, &r), CF_OK);
  assert_true(r.is_error);
  assert_null(r.data);
  assert_string_equal(r.code, "NotFound");
  assert_string_equal(r.message, "Topic does not exist");
  assert_string_equal(r.type, "Sender");
  cf__aws_xml_reply_deinit(&r);
  /* The bare <Error> root some front ends send. */
  assert_int_equal(cf__aws_xml_reply_parse(
      "<Error><Code>SlowDown</Code></Error>", 36, NULL, &r), CF_OK);
  assert_true(r.is_error);
  assert_string_equal(r.code, "SlowDown");
  assert_string_equal(r.message, "");
  cf__aws_xml_reply_deinit(&r);
}

static void test_xml_text(void **state) {
  static const char doc[] =
      "<R><A>caf\xc3\xa9 &amp; &lt;b&gt; &#x263A;</A>"
      "<B><![CDATA[<raw> & stuff]]></B><C>  keep  </C><D/>"
      "<E x=\"1\">attr ignored</E><F><member>1</member><G>g</G>"
      "<member>2</member></F></R>";
  json_t *v;
  char name[16];
  (void)state;
  assert_int_equal(cf__aws_xml_to_json(doc, sizeof(doc) - 1, NULL, &v, name,
                                       sizeof(name)), CF_OK);
  assert_string_equal(name, "R");
  assert_str_at(v, "A", "caf\xc3\xa9 & <b> \xe2\x98\xba");
  assert_str_at(v, "B", "<raw> & stuff");
  assert_str_at(v, "C", "  keep  ");
  assert_str_at(v, "D", "");
  assert_str_at(v, "E", "attr ignored");
  assert_str_at(v, "F.G", "g");
  assert_int_equal(json_array_size(path_get(v, "F.member")), 2);
  assert_str_at(v, "F.member.1", "2");
  json_decref(v);
  /* A small name buffer truncates. */
  assert_int_equal(cf__aws_xml_to_json(create_topic, strlen(create_topic),
                                       NULL, &v, name, 7), CF_OK);
  assert_string_equal(name, "Create");
  json_decref(v);
}

static void test_xml_malformed(void **state) {
  static const char *const bad[] = {
      "",
      "   ",
      "not xml at all",
      "<A><B></A>",
      "<A>",
      "<A></A><B></B>",
      "<A>&unknown;</A>",
      "<A>\x01</A>",
      "<A>\xff\xfe</A>",
      "<?xml version=\"1.0\"?><!DOCTYPE A [<!ENTITY a \"aaaa\">"
      "<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]><A>&b;</A>",
      "<!DOCTYPE A SYSTEM \"file:///etc/passwd\"><A>x</A>",
      "<A></A>trailing",
  };
  char deep[1024] = "";
  size_t i;
  json_t *v = (json_t *)1;
  test_mem tm;
  cf__aws_xml_reply r;
  (void)state;
  test_mem_init(&tm, 0);
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (cf__aws_xml_to_json(bad[i], strlen(bad[i]), &tm.mem, &v, NULL, 0) !=
        CF_ERR_PARSE)
      fail_msg("accepted bad input %zu: %s", i, bad[i]);
    assert_null(v);
    assert_int_equal(tm.live, 0);
  }
  /* Nesting past the limit. */
  for (i = 0; i < CF__AWS_XML_MAX_DEPTH + 1; i++)
    strcat(deep, "<a>");
  for (i = 0; i < CF__AWS_XML_MAX_DEPTH + 1; i++)
    strcat(deep, "</a>");
  assert_int_equal(cf__aws_xml_to_json(deep, strlen(deep), &tm.mem, &v, NULL,
                                       0), CF_ERR_PARSE);
  /* Exactly at the limit is fine. */
  deep[0] = '\0';
  for (i = 0; i < CF__AWS_XML_MAX_DEPTH; i++)
    strcat(deep, "<a>");
  for (i = 0; i < CF__AWS_XML_MAX_DEPTH; i++)
    strcat(deep, "</a>");
  assert_int_equal(cf__aws_xml_to_json(deep, strlen(deep), &tm.mem, &v, NULL,
                                       0), CF_OK);
  json_decref(v);
  assert_int_equal(tm.live, 0);
  /* Well-formed but neither a response nor an error. */
  assert_int_equal(cf__aws_xml_reply_parse("<Foo><A>1</A></Foo>", 19, NULL,
                                           &r), CF_ERR_PARSE);
  cf__aws_xml_reply_deinit(&r);
  /* Truncated real response. */
  assert_int_equal(cf__aws_xml_reply_parse(create_topic, 60, NULL, &r),
                   CF_ERR_PARSE);
  cf__aws_xml_reply_deinit(&r);
  assert_int_equal(cf__aws_xml_to_json(NULL, 1, NULL, &v, NULL, 0),
                   CF_ERR_INVALID);
  assert_int_equal(cf__aws_xml_reply_parse("<A/>", 4, NULL, NULL),
                   CF_ERR_INVALID);
}

/* Every allocation of a conversion fails in turn: no leak, NOMEM out. */
static void test_xml_alloc_sweep(void **state) {
  unsigned long n;
  test_mem tm;
  (void)state;
  for (n = 1; n < 100; n++) {
    cf__aws_xml_reply r;
    int rc;
    test_mem_init(&tm, n);
    rc = cf__aws_xml_reply_parse(list_subs, strlen(list_subs), &tm.mem, &r);
    assert_true(rc == CF_OK || rc == CF_ERR_NOMEM);
    cf__aws_xml_reply_deinit(&r);
    assert_int_equal(tm.live, 0);
    if (!tm.failed) {
      assert_int_equal(rc, CF_OK);
      break;
    }
  }
  assert_false(tm.failed);
}

/* ---- reply parsing and classification ---------------------------------- */

typedef struct reply_case {
  int proto;
  int http_error; /* cf__http_resp.error */
  long status;
  const char *body;
  int error;      /* expected */
  const char *code;
  int retryable, throttled, not_found;
} reply_case;

#define SQS CF__AWS_PROTO_SQS
#define SNS CF__AWS_PROTO_SNS

static const reply_case cases[] = {
    /* SQS, as AWS and fauxqs 1.9.2 both send them. */
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\","
     "\"message\":\"The specified queue does not exist.\"}",
     CF_ERR_BACKEND, "QueueDoesNotExist", 0, 0, 1},
    {SQS, 0, 400, "{\"__type\":\"AWS.SimpleQueueService.NonExistentQueue\","
     "\"message\":\"gone\"}",
     CF_ERR_BACKEND, "AWS.SimpleQueueService.NonExistentQueue", 0, 0, 1},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#ThrottlingException\","
     "\"message\":\"Rate exceeded\"}",
     CF_ERR_BACKEND, "ThrottlingException", 1, 1, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazon.coral.availability#"
     "ThrottlingException\",\"Message\":\"Rate exceeded\"}",
     CF_ERR_BACKEND, "ThrottlingException", 1, 1, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#RequestThrottled\"}",
     CF_ERR_BACKEND, "RequestThrottled", 1, 1, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#KmsThrottled\"}",
     CF_ERR_BACKEND, "KmsThrottled", 1, 1, 0},
    {SQS, 0, 500, "{\"__type\":\"com.amazonaws.sqs#InternalError\"}",
     CF_ERR_BACKEND, "InternalError", 1, 0, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#ServiceUnavailable\"}",
     CF_ERR_BACKEND, "ServiceUnavailable", 1, 0, 0},
    {SQS, 0, 403, "{\"__type\":\"com.amazon.coral.service#"
     "UnrecognizedClientException\",\"message\":\"bad token\"}",
     CF_ERR_BACKEND, "UnrecognizedClientException", 0, 0, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#InvalidAction\","
     "\"message\":\"Unknown action: Bogus\"}",
     CF_ERR_BACKEND, "InvalidAction", 0, 0, 0},
    {SQS, 0, 400, "{\"__type\":\"com.amazonaws.sqs#MessageNotInflight\"}",
     CF_ERR_BACKEND, "MessageNotInflight", 0, 0, 0},
    /* fauxqs's framework error for a body it cannot read. */
    {SQS, 0, 500, "{\"statusCode\":500,\"error\":\"Internal Server Error\","
     "\"message\":\"Unexpected token\"}",
     CF_ERR_BACKEND, "", 1, 0, 0},
    {SQS, 0, 503, "", CF_ERR_BACKEND, "", 1, 0, 0},
    {SQS, 0, 429, "<html>slow down</html>", CF_ERR_BACKEND, "", 1, 1, 0},
    {SQS, 0, 502, "<html>bad gateway</html>", CF_ERR_BACKEND, "", 1, 0, 0},
    {SQS, 0, 400, "[]", CF_ERR_BACKEND, "", 0, 0, 0},
    {SQS, 0, 200, "{}", CF_OK, "", 0, 0, 0},
    {SQS, 0, 200, "", CF_OK, "", 0, 0, 0},
    {SQS, 0, 200, "{\"Messages\":[{\"Body\":\"hi\"}]}", CF_OK, "", 0, 0, 0},
    {SQS, 0, 200, "not json", CF_ERR_PARSE, "", 0, 0, 0},
    {SQS, 0, 200, "[1,2]", CF_ERR_PARSE, "", 0, 0, 0},
    /* Transport outcomes. */
    {SQS, CF_ERR_IO, 0, "", CF_ERR_IO, "", 1, 0, 0},
    {SQS, CF_ERR_TIMEOUT, 0, "", CF_ERR_TIMEOUT, "", 1, 0, 0},
    {SNS, CF_ERR_TIMEOUT, 0, "", CF_ERR_TIMEOUT, "", 1, 0, 0},
    {SQS, CF_ERR_TOO_BIG, 200, "", CF_ERR_TOO_BIG, "", 0, 0, 0},
    /* SNS. */
    {SNS, 0, 404, sns_error, CF_ERR_BACKEND, "NotFound", 0, 0, 1},
    {SNS, 0, 400, sns_throttle, CF_ERR_BACKEND, "Throttling", 1, 1, 0},
    {SNS, 0, 500, "<ErrorResponse><Error><Code>InternalFailure</Code>"
     "</Error></ErrorResponse>", CF_ERR_BACKEND, "InternalFailure", 1, 0, 0},
    {SNS, 0, 400, "<ErrorResponse><Error><Code>InvalidParameter</Code>"
     "<Message>bad</Message></Error></ErrorResponse>",
     CF_ERR_BACKEND, "InvalidParameter", 0, 0, 0},
    {SNS, 0, 503, "Service Unavailable", CF_ERR_BACKEND, "", 1, 0, 0},
    {SNS, 0, 503, "<Error><Code>SlowDown</Code></Error>",
     CF_ERR_BACKEND, "SlowDown", 1, 1, 0},
    {SNS, 0, 200, create_topic, CF_OK, "", 0, 0, 0},
    {SNS, 0, 200, "<CreateTopicResponse><Create", CF_ERR_PARSE, "", 0, 0, 0},
    {SNS, 0, 200, "", CF_ERR_PARSE, "", 0, 0, 0},
};

static void test_reply_table(void **state) {
  size_t i;
  test_mem tm;
  (void)state;
  test_mem_init(&tm, 0);
  for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const reply_case *c = &cases[i];
    cf__http_resp resp;
    cf__aws_reply rep;
    memset(&resp, 0, sizeof(resp));
    resp.error = c->http_error;
    resp.errmsg = c->http_error != 0 ? "curl said no" : "";
    resp.status = c->status;
    resp.body = c->body;
    resp.body_len = strlen(c->body);
    cf__aws_reply_parse(&rep, c->proto, &resp, &tm.mem);
    if (rep.r.error != c->error || strcmp(rep.r.code, c->code) != 0 ||
        rep.r.retryable != c->retryable || rep.r.throttled != c->throttled ||
        rep.r.not_found != c->not_found)
      fail_msg("case %zu: error %d code '%s' retry %d throttle %d nf %d",
               i, rep.r.error, rep.r.code, rep.r.retryable, rep.r.throttled,
               rep.r.not_found);
    assert_int_equal(rep.r.status, c->status);
    assert_non_null(rep.r.message);
    if (c->error == CF_OK) {
      assert_true(json_is_object(rep.r.data));
    } else {
      assert_null(rep.r.data);
      /* Every failure says something. */
      assert_true(rep.r.message[0] != '\0');
    }
    cf__aws_reply_deinit(&rep);
    assert_int_equal(tm.live, 0);
  }
}

static void test_reply_details(void **state) {
  cf__http_resp resp;
  cf__aws_reply rep;
  const char *body = "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\","
                     "\"message\":\"The specified queue does not exist.\"}";
  (void)state;
  memset(&resp, 0, sizeof(resp));
  resp.status = 400;
  resp.body = body;
  resp.body_len = strlen(body);
  cf__aws_reply_parse(&rep, SQS, &resp, NULL);
  assert_string_equal(rep.r.message, "The specified queue does not exist.");
  cf__aws_reply_deinit(&rep);
  resp.status = 200;
  body = "{\"Messages\":[{\"Body\":\"hi\"}]}";
  resp.body = body;
  resp.body_len = strlen(body);
  cf__aws_reply_parse(&rep, SQS, &resp, NULL);
  assert_str_at(rep.r.data, "Messages.0.Body", "hi");
  assert_string_equal(rep.r.code, "");
  assert_string_equal(rep.r.message, "");
  cf__aws_reply_deinit(&rep);
  resp.body = sns_error;
  resp.body_len = strlen(sns_error);
  resp.status = 404;
  cf__aws_reply_parse(&rep, SNS, &resp, NULL);
  assert_string_equal(rep.r.message, "Topic does not exist");
  cf__aws_reply_deinit(&rep);
  resp.body = subscribe;
  resp.body_len = strlen(subscribe);
  resp.status = 200;
  cf__aws_reply_parse(&rep, SNS, &resp, NULL);
  assert_int_equal(rep.r.error, CF_OK);
  assert_true(json_is_string(path_get(rep.r.data, "SubscriptionArn")));
  cf__aws_reply_deinit(&rep);
}

static void test_classify(void **state) {
  static const struct {
    int error;
    long status;
    const char *code;
    int retry, throttle, nf;
  } t[] = {
      {CF_ERR_BACKEND, 400, "Throttling", 1, 1, 0},
      {CF_ERR_BACKEND, 400, "ThrottlingException", 1, 1, 0},
      {CF_ERR_BACKEND, 400, "RequestThrottled", 1, 1, 0},
      {CF_ERR_BACKEND, 400, "KMSThrottlingException", 1, 1, 0},
      {CF_ERR_BACKEND, 503, "SlowDown", 1, 1, 0},
      {CF_ERR_BACKEND, 400, "ServiceUnavailable", 1, 0, 0},
      {CF_ERR_BACKEND, 400, "InternalError", 1, 0, 0},
      {CF_ERR_BACKEND, 400, "InternalFailure", 1, 0, 0},
      {CF_ERR_BACKEND, 400, "QueueDoesNotExist", 0, 0, 1},
      {CF_ERR_BACKEND, 400, "NonExistentQueue", 0, 0, 1},
      {CF_ERR_BACKEND, 404, "NotFound", 0, 0, 1},
      {CF_ERR_BACKEND, 400, "NotFoundException", 0, 0, 1},
      {CF_ERR_BACKEND, 400, "ResourceNotFoundException", 0, 0, 1},
      {CF_ERR_BACKEND, 400, "AccessDenied", 0, 0, 0},
      {CF_ERR_BACKEND, 429, "", 1, 1, 0},
      {CF_ERR_BACKEND, 500, "", 1, 0, 0},
      {CF_ERR_BACKEND, 400, "", 0, 0, 0},
      {CF_ERR_IO, 0, "", 1, 0, 0},
      {CF_ERR_TIMEOUT, 0, "", 1, 0, 0},
      {CF_ERR_PARSE, 200, "", 0, 0, 0},
      {CF_OK, 200, "", 0, 0, 0},
  };
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    cf__aws_result r;
    memset(&r, 0, sizeof(r));
    r.error = t[i].error;
    r.status = t[i].status;
    r.code = t[i].code;
    cf__aws_classify(&r);
    if (r.retryable != t[i].retry || r.throttled != t[i].throttle ||
        r.not_found != t[i].nf)
      fail_msg("row %zu (%s): %d %d %d", i, t[i].code, r.retryable,
               r.throttled, r.not_found);
  }
}

/* ---- form encoding and endpoints ---------------------------------------- */

static void test_form_encode(void **state) {
  test_mem tm;
  char *out;
  size_t len;
  const cf__aws_param p[] = {
      {"TopicArn", "arn:aws:sns:us-east-1:123456789012:chat"},
      {"Message", "h\xc3\xa9 x+y&z=1/2~_-.*"},
      {"MessageAttributes.entry.1.Name", "o"},
      {"Empty", ""},
  };
  const cf__aws_param nul[] = {{NULL, "x"}};
  (void)state;
  test_mem_init(&tm, 0);
  assert_int_equal(cf__aws_form_encode("Publish", p, 4, &tm.mem, &out, &len),
                   CF_OK);
  assert_string_equal(out,
      "Action=Publish&Version=2010-03-31"
      "&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A123456789012%3Achat"
      "&Message=h%C3%A9%20x%2By%26z%3D1%2F2~_-.%2A"
      "&MessageAttributes.entry.1.Name=o&Empty=");
  assert_int_equal(len, strlen(out));
  cf__free(&tm.mem, out);
  assert_int_equal(cf__aws_form_encode("ListTopics", NULL, 0, &tm.mem, &out,
                                       &len), CF_OK);
  assert_string_equal(out, "Action=ListTopics&Version=2010-03-31");
  cf__free(&tm.mem, out);
  assert_int_equal(cf__aws_form_encode("Bad Action", NULL, 0, &tm.mem, &out,
                                       &len), CF_ERR_INVALID);
  assert_int_equal(cf__aws_form_encode("", NULL, 0, &tm.mem, &out, &len),
                   CF_ERR_INVALID);
  assert_int_equal(cf__aws_form_encode("A", nul, 1, &tm.mem, &out, &len),
                   CF_ERR_INVALID);
  assert_int_equal(cf__aws_form_encode("A", NULL, 1, &tm.mem, &out, &len),
                   CF_ERR_INVALID);
  test_mem_init(&tm, 1);
  assert_int_equal(cf__aws_form_encode("A", p, 1, &tm.mem, &out, &len),
                   CF_ERR_NOMEM);
  assert_int_equal(tm.live, 0);
}

static void test_form_too_big(void **state) {
  size_t n = CF__AWS_MAX_BODY / 3 + 10;
  char *big = malloc(n + 1), *out;
  size_t len;
  cf__aws_param p[1];
  (void)state;
  assert_non_null(big);
  memset(big, ':', n); /* each becomes %3A */
  big[n] = '\0';
  p[0].name = "Message";
  p[0].value = big;
  assert_int_equal(cf__aws_form_encode("Publish", p, 1, NULL, &out, &len),
                   CF_ERR_TOO_BIG);
  assert_null(out);
  free(big);
}

static void test_endpoint_split(void **state) {
  static const struct {
    const char *url, *host, *path;
  } ok[] = {
      {"http://127.0.0.1:9324", "127.0.0.1:9324", "/"},
      {"https://sqs.eu-west-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com",
       "/"},
      {"https://sqs.eu-west-1.amazonaws.com/", "sqs.eu-west-1.amazonaws.com",
       "/"},
      {"https://h:443", "h", "/"},
      {"http://h:80/base/", "h", "/base/"},
      {"http://h:443", "h:443", "/"},
      {"https://h:80", "h:80", "/"},
      {"HTTP://h:8080/a/b", "h:8080", "/a/b/"},
      {"http://[::1]:8080", "[::1]:8080", "/"},
      {"https://[::1]:443", "[::1]", "/"},
      {"http://[::1]", "[::1]", "/"},
  };
  static const char *const bad[] = {
      "ftp://h", "http://", "http:///x", "http://u@h", "http://h?x=1",
      "http://h#f", "http://[::1", "http://h:", "http://h x", "h:80", NULL,
  };
  char host[64], path[64];
  size_t i;
  (void)state;
  for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    assert_int_equal(cf__aws_endpoint_split(ok[i].url, host, sizeof(host),
                                            path, sizeof(path)), CF_OK);
    assert_string_equal(host, ok[i].host);
    assert_string_equal(path, ok[i].path);
  }
  for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    if (cf__aws_endpoint_split(bad[i], host, sizeof(host), path,
                               sizeof(path)) != CF_ERR_INVALID)
      fail_msg("accepted %s", bad[i] != NULL ? bad[i] : "NULL");
  assert_int_equal(cf__aws_endpoint_split("http://abcdefgh", host, 5, path,
                                          sizeof(path)), CF_ERR_TOO_BIG);
}

/* ---- end to end ------------------------------------------------------- */

/* A one-connection-at-a-time HTTP/1.1 server that records each request
 * and answers with the canned response, or not at all when hang is set. */
typedef struct srv {
  struct ev_loop *l;
  int fd;
  int port;
  ev_io lw;
  ev_io cw;
  int cfd;
  char in[65536];
  size_t inlen;
  int requests;
  int accepted;
  /* last request */
  char head[8192];
  char body[8192];
  size_t body_len;
  /* canned answer */
  int status;
  const char *ctype;
  const char *answer;
  int hang;
} srv;

static void srv_drop(srv *s) {
  if (s->cfd < 0)
    return;
  ev_io_stop(s->l, &s->cw);
  close(s->cfd);
  s->cfd = -1;
  s->inlen = 0;
}

static void srv_answer(srv *s) {
  char head[512];
  size_t n = strlen(s->answer);
  int k = snprintf(head, sizeof(head),
                   "HTTP/1.1 %d X\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n\r\n", s->status, s->ctype, n);
  /* Small answers: loopback takes them in one write. */
  assert_int_equal(write(s->cfd, head, (size_t)k), k);
  if (n > 0)
    assert_int_equal(write(s->cfd, s->answer, n), (ssize_t)n);
}

static void on_srv_read(struct ev_loop *l, ev_io *w, int revents) {
  srv *s = w->data;
  ssize_t n;
  char *end;
  (void)l;
  (void)revents;
  n = read(s->cfd, s->in + s->inlen, sizeof(s->in) - 1 - s->inlen);
  if (n < 0 && errno == EAGAIN)
    return;
  if (n <= 0) {
    srv_drop(s);
    return;
  }
  s->inlen += (size_t)n;
  s->in[s->inlen] = '\0';
  while ((end = strstr(s->in, "\r\n\r\n")) != NULL) {
    size_t hlen = (size_t)(end - s->in) + 4, blen;
    *end = '\0';
    blen = hs_content_length(s->in);
    if (s->inlen < hlen + blen) {
      *end = '\r';
      return;
    }
    assert_true(hlen < sizeof(s->head) && blen < sizeof(s->body));
    memcpy(s->head, s->in, hlen);
    memcpy(s->body, s->in + hlen, blen);
    s->body[blen] = '\0';
    s->body_len = blen;
    s->requests++;
    memmove(s->in, s->in + hlen + blen, s->inlen - hlen - blen + 1);
    s->inlen -= hlen + blen;
    if (!s->hang)
      srv_answer(s);
  }
}

static void on_srv_accept(struct ev_loop *l, ev_io *w, int revents) {
  srv *s = w->data;
  int fd = accept(s->fd, NULL, NULL);
  (void)revents;
  if (fd < 0)
    return;
  srv_drop(s); /* the client moved on to a new connection */
  fcntl(fd, F_SETFL, O_NONBLOCK);
  s->cfd = fd;
  s->accepted++;
  ev_io_init(&s->cw, on_srv_read, fd, EV_READ);
  s->cw.data = s;
  ev_io_start(l, &s->cw);
}

static void srv_start(srv *s, struct ev_loop *l) {
  memset(s, 0, sizeof(*s));
  s->l = l;
  s->cfd = -1;
  s->fd = hs_listen(&s->port, 16);
  ev_io_init(&s->lw, on_srv_accept, s->fd, EV_READ);
  s->lw.data = s;
  ev_io_start(l, &s->lw);
  s->status = 200;
  s->ctype = "application/x-amz-json-1.0";
  s->answer = "{}";
}

static void srv_stop(srv *s) {
  srv_drop(s);
  ev_io_stop(s->l, &s->lw);
  close(s->fd);
}

/* Value of header name in the recorded head, copied into out. */
static int header_get(const srv *s, const char *name, char *out,
                      size_t size) {
  return hs_header(s->head, name, out, size);
}

typedef struct efx {
  struct ev_loop *l;
  srv s;
  cf_loop loop;
  test_mem tm;
  cf__aws *a;
  char ep[64];
  void *sentinel;
} efx;

typedef struct got {
  int calls;
  int error;
  long status;
  char code[128];
  char message[512];
  int retryable, throttled, not_found;
  json_t *data; /* a copy */
  efx *f;
  int free_in_cb;
} got;

static void on_call(const cf__aws_result *r, void *ud) {
  got *g = ud;
  g->calls++;
  g->error = r->error;
  g->status = r->status;
  snprintf(g->code, sizeof(g->code), "%s", r->code);
  snprintf(g->message, sizeof(g->message), "%s", r->message);
  g->retryable = r->retryable;
  g->throttled = r->throttled;
  g->not_found = r->not_found;
  json_decref(g->data);
  g->data = r->data != NULL ? json_deep_copy(r->data) : NULL;
  if (g->free_in_cb) {
    cf__aws_free(g->f->a);
    g->f->a = NULL;
  }
}

static void run_until(efx *f, const int *count, int want, double secs) {
  (void)hs_run_until(f->l, count, want, secs);
}

static char env_key[] = "AWS_ACCESS_KEY_ID=AKIDEXAMPLE";
static char env_secret[] =
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
static char env_token[] = "AWS_SESSION_TOKEN=session-token/x+y=";
static char env_cfg[] = "AWS_CONFIG_FILE=/nonexistent/config";
static char env_cred[] = "AWS_SHARED_CREDENTIALS_FILE=/nonexistent/creds";
static char env_imds[] = "AWS_EC2_METADATA_DISABLED=true";
static char env_home[] = "HOME=/nonexistent";

static int e2e_setup(void **state) {
  efx *f = calloc(1, sizeof(*f));
  char *envp[] = {env_key, env_secret, env_token, env_cfg, env_cred,
                  env_imds, env_home, NULL};
  cf__aws_overrides ov;
  char err[256];
  assert_non_null(f);
  f->l = ev_loop_new(EVFLAG_AUTO);
  srv_start(&f->s, f->l);
  cf_libev_init(&f->loop, f->l);
  test_mem_init(&f->tm, 0);
  snprintf(f->ep, sizeof(f->ep), "http://127.0.0.1:%d", f->s.port);
  memset(&ov, 0, sizeof(ov));
  ov.region = "eu-west-1";
  ov.endpoint_sqs = f->ep;
  ov.endpoint_sns = f->ep;
  if (cf__aws_new(&f->a, &f->loop, &ov, envp, &f->tm.mem, err,
                  sizeof(err)) != CF_OK)
    fail_msg("cf__aws_new: %s", err);
  assert_true(cf__aws_ready(f->a));
  /* cmocka checks leaks from the last block allocated before a test:
   * that block must outlive the test, and tests free the client. */
  f->sentinel = test_malloc(1);
  *state = f;
  return 0;
}

static int e2e_teardown(void **state) {
  efx *f = *state;
  test_free(f->sentinel);
  cf__aws_free(f->a);
  assert_int_equal(f->tm.live, 0);
  srv_stop(&f->s);
  ev_loop_destroy(f->l);
  free(f);
  return 0;
}

/* Re-derives the Authorization header from what the server received. */
static void check_signature(const srv *s, const char *service,
                            const char *target) {
  char host[128], date[32], auth[1024], ctype[128], token[128], tgt[128];
  char want[1024], scope[128];
  cf__sqs_sign_header hs[2];
  cf__sqs_sign_req r;
  cf__sqs_sign_creds c;
  cf__sqs_sign_out o;
  struct tm tm;

  assert_true(header_get(s, "Host", host, sizeof(host)));
  assert_true(header_get(s, "X-Amz-Date", date, sizeof(date)));
  assert_true(header_get(s, "Authorization", auth, sizeof(auth)));
  assert_true(header_get(s, "Content-Type", ctype, sizeof(ctype)));
  assert_true(header_get(s, "X-Amz-Security-Token", token, sizeof(token)));
  assert_string_equal(token, "session-token/x+y=");
  assert_int_equal(strlen(date), 16);
  snprintf(scope, sizeof(scope),
           "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/%.8s/eu-west-1/%s/"
           "aws4_request, SignedHeaders=", date, service);
  assert_int_equal(strncmp(auth, scope, strlen(scope)), 0);
  memset(&tm, 0, sizeof(tm));
  assert_int_equal(sscanf(date, "%4d%2d%2dT%2d%2d%2dZ", &tm.tm_year,
                          &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                          &tm.tm_sec), 6);
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  hs[0].name = "Content-Type";
  hs[0].value = ctype;
  memset(&r, 0, sizeof(r));
  r.method = "POST";
  r.host = host;
  r.path = "/";
  r.headers = hs;
  r.nheaders = 1;
  if (target != NULL) {
    assert_true(header_get(s, "X-Amz-Target", tgt, sizeof(tgt)));
    assert_string_equal(tgt, target);
    hs[1].name = "X-Amz-Target";
    hs[1].value = tgt;
    r.nheaders = 2;
  } else {
    assert_false(header_get(s, "X-Amz-Target", tgt, sizeof(tgt)));
  }
  r.payload = s->body;
  r.payload_len = s->body_len;
  r.region = "eu-west-1";
  r.service = service;
  r.tm = &tm;
  c.access_key_id = "AKIDEXAMPLE";
  c.secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  c.session_token = token;
  memset(&o, 0, sizeof(o));
  o.authorization = want;
  o.authorization_size = sizeof(want);
  assert_int_equal(cf__sqs_sign(&r, &c, NULL, &o), CF_OK);
  assert_string_equal(auth, want);
  assert_non_null(strstr(auth, target != NULL
      ? "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;"
        "x-amz-target, Signature="
      : "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, "
        "Signature="));
}

static void test_e2e_sqs(void **state) {
  efx *f = *state;
  got g;
  json_t *p = json_pack("{s:s, s:i, s:[s]}", "QueueUrl",
                        "http://127.0.0.1/000000000000/q\xc3\xa9",
                        "WaitTimeSeconds", 1, "AttributeNames", "All");
  char host[64], want_host[64];
  cf__aws_stats st;
  memset(&g, 0, sizeof(g));
  f->s.answer = "{\"Messages\":[{\"MessageId\":\"m1\",\"Body\":\"hi\"}]}";
  assert_int_equal(cf__aws_sqs(f->a, "ReceiveMessage", p, 5, on_call, &g,
                               NULL), CF_OK);
  assert_int_equal(g.calls, 0);
  run_until(f, &g.calls, 1, 5);
  assert_int_equal(g.calls, 1);
  assert_int_equal(g.error, CF_OK);
  assert_int_equal(g.status, 200);
  assert_str_at(g.data, "Messages.0.Body", "hi");
  /* The request as the server saw it. */
  assert_int_equal(strncmp(f->s.head, "POST / HTTP/1.1\r\n", 17), 0);
  assert_true(header_get(&f->s, "Host", host, sizeof(host)));
  snprintf(want_host, sizeof(want_host), "127.0.0.1:%d", f->s.port);
  assert_string_equal(host, want_host);
  check_signature(&f->s, "sqs", "AmazonSQS.ReceiveMessage");
  assert_string_equal(f->s.body,
      "{\"QueueUrl\":\"http://127.0.0.1/000000000000/q\xc3\xa9\","
      "\"WaitTimeSeconds\":1,\"AttributeNames\":[\"All\"]}");
  /* An AWS error comes back classified. */
  f->s.status = 400;
  f->s.answer = "{\"__type\":\"com.amazonaws.sqs#QueueDoesNotExist\","
                "\"message\":\"The specified queue does not exist.\"}";
  assert_int_equal(cf__aws_sqs(f->a, "DeleteMessage", p, 5, on_call, &g,
                               NULL), CF_OK);
  run_until(f, &g.calls, 2, 5);
  assert_int_equal(g.error, CF_ERR_BACKEND);
  assert_int_equal(g.status, 400);
  assert_string_equal(g.code, "QueueDoesNotExist");
  assert_string_equal(g.message, "The specified queue does not exist.");
  assert_true(g.not_found);
  assert_false(g.retryable);
  assert_null(g.data);
  check_signature(&f->s, "sqs", "AmazonSQS.DeleteMessage");
  f->s.status = 400;
  f->s.answer = "{\"__type\":\"com.amazonaws.sqs#ThrottlingException\"}";
  assert_int_equal(cf__aws_sqs(f->a, "ListQueues", NULL, 0, on_call, &g,
                               NULL), CF_OK);
  run_until(f, &g.calls, 3, 5);
  assert_true(g.throttled && g.retryable);
  assert_string_equal(f->s.body, "{}");
  cf__aws_get_stats(f->a, &st);
  assert_int_equal(st.requests, 3);
  assert_int_equal(st.errors, 2);
  assert_int_equal(st.throttled, 1);
  /* All over one connection. */
  assert_int_equal(f->s.accepted, 1);
  json_decref(p);
  json_decref(g.data);
}

static void test_e2e_sns(void **state) {
  efx *f = *state;
  got g;
  const cf__aws_param p[] = {
      {"TopicArn", "arn:aws:sns:eu-west-1:123456789012:chat"},
      {"Message", "{\"room\":\"r 1\"}"},
  };
  char ctype[128];
  memset(&g, 0, sizeof(g));
  f->s.ctype = "text/xml";
  f->s.answer = "<PublishResponse " NS "><PublishResult><MessageId>"
                "94f20ce6</MessageId></PublishResult>" META
                "</PublishResponse>";
  assert_int_equal(cf__aws_sns(f->a, "Publish", p, 2, 5, on_call, &g, NULL),
                   CF_OK);
  run_until(f, &g.calls, 1, 5);
  assert_int_equal(g.error, CF_OK);
  assert_str_at(g.data, "MessageId", "94f20ce6");
  assert_int_equal(strncmp(f->s.head, "POST / HTTP/1.1\r\n", 17), 0);
  assert_true(header_get(&f->s, "Content-Type", ctype, sizeof(ctype)));
  assert_string_equal(ctype,
                      "application/x-www-form-urlencoded; charset=utf-8");
  assert_string_equal(f->s.body,
      "Action=Publish&Version=2010-03-31"
      "&TopicArn=arn%3Aaws%3Asns%3Aeu-west-1%3A123456789012%3Achat"
      "&Message=%7B%22room%22%3A%22r%201%22%7D");
  check_signature(&f->s, "sns", NULL);
  f->s.status = 404;
  f->s.answer = sns_error;
  assert_int_equal(cf__aws_sns(f->a, "Publish", p, 2, 5, on_call, &g, NULL),
                   CF_OK);
  run_until(f, &g.calls, 2, 5);
  assert_int_equal(g.error, CF_ERR_BACKEND);
  assert_string_equal(g.code, "NotFound");
  assert_true(g.not_found);
  f->s.status = 503;
  f->s.answer = "Service Unavailable";
  assert_int_equal(cf__aws_sns(f->a, "Publish", p, 2, 5, on_call, &g, NULL),
                   CF_OK);
  run_until(f, &g.calls, 3, 5);
  assert_int_equal(g.error, CF_ERR_BACKEND);
  assert_true(g.retryable);
  assert_false(g.throttled);
  json_decref(g.data);
}

static void test_e2e_invalid(void **state) {
  efx *f = *state;
  got g;
  json_t *arr = json_array();
  const cf__aws_param bad[] = {{"", "x"}};
  memset(&g, 0, sizeof(g));
  assert_int_equal(cf__aws_sqs(f->a, "Receive Message", NULL, 5, on_call, &g,
                               NULL), CF_ERR_INVALID);
  assert_int_equal(cf__aws_sqs(f->a, "ListQueues", arr, 5, on_call, &g,
                               NULL), CF_ERR_INVALID);
  assert_int_equal(cf__aws_sqs(f->a, "ListQueues", NULL, -1, on_call, &g,
                               NULL), CF_ERR_INVALID);
  assert_int_equal(cf__aws_sqs(f->a, "ListQueues", NULL, 5, NULL, &g, NULL),
                   CF_ERR_INVALID);
  assert_int_equal(cf__aws_sqs(NULL, "ListQueues", NULL, 5, on_call, &g,
                               NULL), CF_ERR_INVALID);
  assert_int_equal(cf__aws_sns(f->a, "Publish", bad, 1, 5, on_call, &g,
                               NULL), CF_ERR_INVALID);
  assert_int_equal(cf__aws_sns(f->a, "Publish", NULL, 1, 5, on_call, &g,
                               NULL), CF_ERR_INVALID);
  json_decref(arr);
  run_until(f, NULL, 0, 0.05);
  assert_int_equal(g.calls, 0);
  assert_int_equal(f->s.requests, 0);
  assert_string_equal(cf__aws_get_config(f->a)->region, "eu-west-1");
}

static void test_e2e_timeout_cancel(void **state) {
  efx *f = *state;
  got g, h;
  cf__http_xfer *x = NULL;
  memset(&g, 0, sizeof(g));
  memset(&h, 0, sizeof(h));
  f->s.hang = 1;
  assert_int_equal(cf__aws_sqs(f->a, "ReceiveMessage", NULL, 0.3, on_call,
                               &g, NULL), CF_OK);
  run_until(f, &g.calls, 1, 5);
  assert_int_equal(g.error, CF_ERR_TIMEOUT);
  assert_true(g.retryable);
  assert_int_equal(g.status, 0);
  assert_true(g.message[0] != '\0');
  /* A cancelled call never calls back and leaves nothing behind. */
  assert_int_equal(cf__aws_sqs(f->a, "ReceiveMessage", NULL, 5, on_call, &h,
                               &x), CF_OK);
  assert_non_null(x);
  run_until(f, &f->s.requests, 2, 5);
  cf__http_cancel(x);
  run_until(f, NULL, 0, 0.1);
  assert_int_equal(h.calls, 0);
}

static void test_e2e_free_in_callback(void **state) {
  efx *f = *state;
  got g, h;
  memset(&g, 0, sizeof(g));
  memset(&h, 0, sizeof(h));
  g.f = f;
  g.free_in_cb = 1;
  assert_int_equal(cf__aws_sqs(f->a, "ListQueues", NULL, 5, on_call, &g,
                               NULL), CF_OK);
  f->s.hang = 0;
  run_until(f, &g.calls, 1, 5);
  assert_int_equal(g.calls, 1);
  assert_null(f->a);
  json_decref(g.data);
  assert_int_equal(f->tm.live, 0);
}

/* Free with calls in flight: no callbacks, no leaks. */
static void test_e2e_free_in_flight(void **state) {
  efx *f = *state;
  got g;
  memset(&g, 0, sizeof(g));
  f->s.hang = 1;
  assert_int_equal(cf__aws_sqs(f->a, "ReceiveMessage", NULL, 5, on_call, &g,
                               NULL), CF_OK);
  assert_int_equal(cf__aws_sns(f->a, "ListTopics", NULL, 0, 5, on_call, &g,
                               NULL), CF_OK);
  run_until(f, &f->s.requests, 1, 5);
  cf__aws_free(f->a);
  f->a = NULL;
  run_until(f, NULL, 0, 0.05);
  assert_int_equal(g.calls, 0);
  assert_int_equal(f->tm.live, 0);
}

/* Credentials not fetched yet (a container endpoint, never started):
 * calls are refused with CF_ERR_STATE. */
static char env_container[] =
    "AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:1/creds";

static void test_no_credentials(void **state) {
  char *envp[] = {env_cfg, env_cred, env_imds, env_home, env_container,
                  NULL};
  struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
  cf_loop loop;
  cf__aws_overrides ov;
  cf__aws *a;
  test_mem tm;
  got g;
  const cf__aws_param p[] = {{"Name", "t"}};
  char err[256];
  (void)state;
  memset(&g, 0, sizeof(g));
  cf_libev_init(&loop, l);
  test_mem_init(&tm, 0);
  memset(&ov, 0, sizeof(ov));
  ov.region = "us-east-1";
  ov.endpoint_sqs = "http://127.0.0.1:1";
  ov.endpoint_sns = "http://127.0.0.1:1";
  if (cf__aws_new(&a, &loop, &ov, envp, &tm.mem, err, sizeof(err)) != CF_OK)
    fail_msg("cf__aws_new: %s", err);
  assert_false(cf__aws_ready(a));
  assert_int_equal(cf__aws_sqs(a, "ListQueues", NULL, 5, on_call, &g, NULL),
                   CF_ERR_STATE);
  assert_int_equal(cf__aws_sns(a, "CreateTopic", p, 1, 5, on_call, &g, NULL),
                   CF_ERR_STATE);
  cf__aws_free(a);
  assert_int_equal(tm.live, 0);
  ev_loop_destroy(l);
  assert_int_equal(g.calls, 0);
}

static void test_new_invalid(void **state) {
  char *envp[] = {env_key, env_secret, env_cfg, env_cred, env_imds, env_home,
                  NULL};
  struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
  cf_loop loop;
  cf__aws_overrides ov;
  cf__aws *a = (cf__aws *)1;
  test_mem tm;
  char err[256];
  (void)state;
  cf_libev_init(&loop, l);
  test_mem_init(&tm, 0);
  memset(&ov, 0, sizeof(ov));
  ov.region = "us-east-1";
  ov.endpoint_sqs = "ftp://127.0.0.1:1";
  assert_int_equal(cf__aws_new(&a, &loop, &ov, envp, &tm.mem, err,
                               sizeof(err)), CF_ERR_INVALID);
  assert_null(a);
  assert_true(err[0] != '\0');
  assert_int_equal(cf__aws_new(&a, NULL, &ov, envp, &tm.mem, err,
                               sizeof(err)), CF_ERR_INVALID);
  assert_int_equal(tm.live, 0);
  cf__aws_free(NULL);
  ev_loop_destroy(l);
}

int main(void) {
  const struct CMUnitTest pure[] = {
      cmocka_unit_test(test_xml_create_subscribe),
      cmocka_unit_test(test_xml_publish_batch),
      cmocka_unit_test(test_xml_list_and_attrs),
      cmocka_unit_test(test_xml_empty_results),
      cmocka_unit_test(test_xml_error),
      cmocka_unit_test(test_xml_text),
      cmocka_unit_test(test_xml_malformed),
      cmocka_unit_test(test_xml_alloc_sweep),
      cmocka_unit_test(test_reply_table),
      cmocka_unit_test(test_reply_details),
      cmocka_unit_test(test_classify),
      cmocka_unit_test(test_form_encode),
      cmocka_unit_test(test_form_too_big),
      cmocka_unit_test(test_endpoint_split),
  };
  const struct CMUnitTest e2e[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, e2e_setup, e2e_teardown)
      T(test_e2e_sqs),
      T(test_e2e_sns),
      T(test_e2e_invalid),
      T(test_e2e_timeout_cancel),
      T(test_e2e_free_in_callback),
      T(test_e2e_free_in_flight),
#undef T
      cmocka_unit_test(test_no_credentials),
      cmocka_unit_test(test_new_invalid),
  };
  int rc = cmocka_run_group_tests_name("aws pure", pure, NULL, NULL);
  return rc | cmocka_run_group_tests_name("aws e2e", e2e, NULL, NULL);
}
