/*
 * Internal: signed, non-blocking calls to SQS (JSON protocol) and SNS
 * (query protocol), with responses parsed into jansson values.
 *
 * One cf__aws owns the HTTP client, the resolved configuration, the
 * credentials provider and the SigV4 key caches. A call builds the body,
 * signs it with the current credentials, sends it and hands the callback
 * a classified result:
 *
 *   json_t *p = json_pack("{s:s, s:i}", "QueueUrl", url,
 *                         "WaitTimeSeconds", 20);
 *   cf__aws_sqs(aws, "ReceiveMessage", p, 25.0, on_receive, ctx, &x);
 *   json_decref(p);
 *
 * SQS: POST / with X-Amz-Target: AmazonSQS.<Action> and
 * Content-Type: application/x-amz-json-1.0; errors come as JSON
 * {"__type": "...#Code", "message": ...} (the x-amzn-query-error header
 * repeats the older query-protocol code; it is not read, __type is
 * enough to classify). SNS: POST / with Action=<Action>&Version=2010-03-31
 * form-encoded; responses and errors are XML, parsed with expat into
 * the same json_t shape: an element with children becomes an object, a
 * <member> list becomes an array, text becomes a string.
 */
#ifndef CF_AWS_H
#define CF_AWS_H

#include <jansson.h>

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>

#include "cf_aws_config.h"
#include "cf_http.h"

typedef struct cf__aws cf__aws;

/* A call's outcome; valid only during the callback. */
typedef struct cf__aws_result {
  int error;           /* CF_OK (2xx, body parsed), CF_ERR_BACKEND (AWS
                          answered an error), CF_ERR_IO, CF_ERR_TIMEOUT,
                          CF_ERR_PARSE (unreadable body), CF_ERR_STATE
                          (no credentials yet) */
  long status;         /* HTTP status; 0 without a response */
  const char *code;    /* AWS error code without namespace, e.g.
                          "QueueDoesNotExist", "NotFound",
                          "ThrottlingException"; "" when none */
  const char *message; /* AWS or curl message; "" when none */
  int retryable;       /* 5xx, throttling, network errors, timeouts */
  int throttled;       /* throttling codes or 429/503 SlowDown */
  int not_found;       /* queue, topic or subscription is gone */
  json_t *data;        /* parsed result (borrowed); SNS: the contents of
                          <ActionResult>; NULL on error */
} cf__aws_result;

typedef void (*cf__aws_cb)(const cf__aws_result *r, void *user_data);

/* One SNS parameter; both strings borrowed for the call. */
typedef struct cf__aws_param {
  const char *name;  /* e.g. "PublishBatchRequestEntries.member.1.Id" */
  const char *value;
} cf__aws_param;

/* Request counters (monotonic). */
typedef struct cf__aws_stats {
  uint64_t requests;   /* calls sent */
  uint64_t errors;     /* calls that ended with error != CF_OK */
  uint64_t throttled;  /* of those, throttled */
} cf__aws_stats;

/*
 * Creates the client: resolves configuration (see cf_aws_config.h) and
 * sets up the credentials chain. No network yet. err gets a line on
 * failure. CF_OK, CF_ERR_INVALID, CF_ERR_NOMEM, CF_ERR_BACKEND.
 */
int cf__aws_new(cf__aws **out, const cf_loop *loop,
                const cf__aws_overrides *ov, char *const *envp,
                const cf_mem *mem, char *err, size_t errlen);

/* Cancels every call (no callbacks) and frees. Accepts NULL. Safe from
 * inside a cf__aws_cb (the HTTP client's free is deferred until the
 * callback returns). */
void cf__aws_free(cf__aws *a);

/* Starts fetching credentials; cb reports each outcome. CF_OK. */
int cf__aws_start(cf__aws *a, cf__aws_creds_cb cb, void *user_data);

/* Nonzero when credentials are available. */
int cf__aws_ready(const cf__aws *a);

const cf__aws_config *cf__aws_get_config(const cf__aws *a);
void cf__aws_get_stats(const cf__aws *a, cf__aws_stats *st);

/*
 * Calls an SQS action. params is a JSON object (borrowed; serialized
 * before return). timeout in seconds (0: 30). xfer (may be NULL) gets a
 * handle for cf__http_cancel until cb runs (a cancelled call leaves
 * nothing allocated). CF_OK, CF_ERR_INVALID (also a bad action name or
 * params not an object), CF_ERR_NOMEM, CF_ERR_STATE (no credentials
 * yet), CF_ERR_TOO_BIG (body over CF__AWS_MAX_BODY), CF_ERR_BACKEND.
 * cb never runs from inside this call. A reply over CF__AWS_SQS_MAX_REPLY
 * reaches cb with error CF_ERR_TOO_BIG.
 */
/*
 * Largest SQS reply body accepted: a ReceiveMessage answer carries up to
 * 10 bodies of 256 KiB, which JSON escaping can blow up several times.
 */
#define CF__AWS_SQS_MAX_REPLY (16u * 1024u * 1024u)

int cf__aws_sqs(cf__aws *a, const char *action, json_t *params,
                double timeout, cf__aws_cb cb, void *user_data,
                cf__http_xfer **xfer);

/* Calls an SNS action with n form parameters; otherwise as above. */
int cf__aws_sns(cf__aws *a, const char *action, const cf__aws_param *params,
                size_t n, double timeout, cf__aws_cb cb, void *user_data,
                cf__http_xfer **xfer);

/* ---- pieces of a call, exposed for tests ------------------------------ */

/* Protocols a reply is read with. */
enum { CF__AWS_PROTO_SQS = 0, CF__AWS_PROTO_SNS = 1 };

/* A reply read into a result, with the storage its pointers use. */
typedef struct cf__aws_reply {
  cf__aws_result r;
  json_t *doc_;       /* internal: parsed body */
  json_t *empty_;     /* internal: empty data object */
  char code_[128];    /* internal: r.code */
  char message_[512]; /* internal: r.message (longer ones truncated) */
} cf__aws_reply;

/*
 * Reads resp (an HTTP outcome) as an SQS JSON or SNS XML reply into
 * rep->r, classified as cf__aws_classify() does. Release with
 * cf__aws_reply_deinit(). Cannot fail: problems land in rep->r.error.
 */
void cf__aws_reply_parse(cf__aws_reply *rep, int proto,
                         const cf__http_resp *resp, const cf_mem *mem);
void cf__aws_reply_deinit(cf__aws_reply *rep);

/* Sets retryable/throttled/not_found of r from error, status and code. */
void cf__aws_classify(cf__aws_result *r);

/*
 * Builds the SNS form body "Action=A&Version=2010-03-31&n1=v1&..." with
 * names and values percent-encoded (A-Z a-z 0-9 - _ . ~ kept). *out (a
 * NUL-terminated cf_mem buffer, free with mem) and *out_len get the
 * result. CF_OK, CF_ERR_INVALID, CF_ERR_NOMEM, CF_ERR_TOO_BIG (over
 * CF__AWS_MAX_BODY).
 */
#define CF__AWS_MAX_BODY (4u * 1024u * 1024u)
int cf__aws_form_encode(const char *action, const cf__aws_param *params,
                        size_t n, const cf_mem *mem, char **out,
                        size_t *out_len);

/*
 * Splits an endpoint URL ("http://host:port/base", no query) into the
 * Host header value (default port dropped, IPv6 kept in brackets) and
 * the request path (base + "/"). CF_OK, CF_ERR_INVALID,
 * CF_ERR_TOO_BIG (a buffer is too small).
 */
int cf__aws_endpoint_split(const char *url, char *host, size_t host_size,
                           char *path, size_t path_size);

#endif /* CF_AWS_H */
