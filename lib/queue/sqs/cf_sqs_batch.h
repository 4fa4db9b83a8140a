/*
 * Internal: outgoing messages and the batches that carry them.
 *
 * A publish is encoded once into a cf__sqs_msg (the envelope's wire
 * JSON, plus its id and room for FIFO). One SQS/SNS message may carry
 * several envelopes, one per line (a bundle): the receivers pay one
 * receive and one delete for all of them. Messages are reference
 * counted: in the queues topology one message rides in one batch per
 * peer queue.
 *
 * A batch holds up to 10 messages of at most 256 KiB together (the
 * SNS PublishBatch and SQS SendMessageBatch limits), builds the request
 * parameters for the entries the service has not accepted yet, and
 * applies a response: accepted entries are done, failed ones stay for a
 * retry (only they are sent again), ones the service refuses for good
 * (a sender fault) are given up. Entry i has the Id "i", unique within
 * a request.
 *
 *   cf__sqs_batch b;
 *   cf__sqs_batch_init(&b);
 *   while (have && cf__sqs_batch_fits(&b, next->len))
 *     cf__sqs_batch_add(&b, next);            (takes a reference)
 *   p = cf__sqs_batch_sqs_params(&b, url, 0); (send, then on the answer)
 *   cf__sqs_batch_apply(&b, result, &out);    (b.pending: what is left)
 *   cf__sqs_batch_clear(&b, mem);
 */
#ifndef CF_SQS_BATCH_H
#define CF_SQS_BATCH_H

#include <jansson.h>

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_queue.h>

#include "cf_aws.h"
#include "cf_envelope.h"
#include "cf_list.h"

/* Entries per batch request. */
#define CF__SQS_BATCH_MAX 10u
/* Bytes per message body, and per batch in total. */
#define CF__SQS_SIZE_MAX ((size_t)256 * 1024)
/* Bytes a bundle grows to: SQS and SNS bill each 64 KiB of a payload as
 * one request, so bigger bundles would save nothing. */
#define CF__SQS_BUNDLE_MAX ((size_t)64 * 1024)

/* One or more encoded envelopes, newline-separated. */
typedef struct cf__sqs_msg {
  cf_list link;   /* free for the owner's pending list */
  size_t refs;    /* holders; the last unref frees */
  size_t len;     /* body bytes, without the NUL */
  size_t cap;     /* body bytes allocated, without the NUL */
  unsigned count; /* envelopes in the body */
  char id[CF__ENVELOPE_ID_MAX]; /* of the first envelope: FIFO dedup id */
  char group[CF_ROOM_MAX + 1];  /* the room: FIFO group id */
  char body[];    /* the wire JSON, NUL-terminated */
} cf__sqs_msg;

/*
 * Encodes env into a new message with one reference. Returns CF_OK;
 * CF_ERR_TOO_BIG when the body would be over max_len bytes (nothing is
 * allocated); CF_ERR_INVALID for an envelope the wire form refuses;
 * CF_ERR_NOMEM.
 */
int cf__sqs_msg_new(cf__sqs_msg **out, const cf_envelope *env,
                    size_t max_len, const cf_mem *mem);

/*
 * Appends env to *mp as one more line (a bundle). *mp must hold the only
 * reference and be on no list: it may move. Returns CF_OK (*added: the
 * body bytes it grew by); CF_ERR_TOO_BIG when the body would pass
 * max_len; CF_ERR_INVALID; CF_ERR_NOMEM. On error the body is as before.
 */
int cf__sqs_msg_append(cf__sqs_msg **mp, const cf_envelope *env,
                       size_t max_len, const cf_mem *mem, size_t *added);

/* Takes a reference; returns m. */
cf__sqs_msg *cf__sqs_msg_ref(cf__sqs_msg *m);

/* Drops a reference; returns 1 when that freed m. Accepts NULL. */
int cf__sqs_msg_unref(cf__sqs_msg *m, const cf_mem *mem);

typedef struct cf__sqs_batch {
  cf__sqs_msg *msg[CF__SQS_BATCH_MAX];
  unsigned n;       /* entries, 0..10 */
  unsigned pending; /* bit i: entry i not accepted (nor given up) yet */
  size_t bytes;     /* sum of the bodies of all n entries */
} cf__sqs_batch;

void cf__sqs_batch_init(cf__sqs_batch *b);

/* Nonzero when a message of len bytes may join b. */
int cf__sqs_batch_fits(const cf__sqs_batch *b, size_t len);

/* Adds m (a reference is taken) as a pending entry; the caller checked
 * cf__sqs_batch_fits(). */
void cf__sqs_batch_add(cf__sqs_batch *b, cf__sqs_msg *m);

/* Copies src's entries into dst with new references (one batch per
 * target, same entries). */
void cf__sqs_batch_copy(cf__sqs_batch *dst, const cf__sqs_batch *src);

/* Drops the references and empties b. */
void cf__sqs_batch_clear(cf__sqs_batch *b, const cf_mem *mem);

/* Number of pending entries, the envelopes they carry, and their body
 * bytes. */
unsigned cf__sqs_batch_pending_count(const cf__sqs_batch *b);
size_t cf__sqs_batch_pending_msgs(const cf__sqs_batch *b);
size_t cf__sqs_batch_pending_bytes(const cf__sqs_batch *b);

/*
 * SendMessageBatch parameters for the pending entries:
 * {"QueueUrl": url, "Entries": [{"Id": "i", "MessageBody": ...,
 * ("MessageGroupId", "MessageDeduplicationId" when fifo)}]}. A new
 * reference the caller decrefs; NULL when out of memory.
 */
json_t *cf__sqs_batch_sqs_params(const cf__sqs_batch *b, const char *url,
                                 int fifo);

/* PublishBatch form parameters; the strings point into this struct and
 * into the batch's messages (valid while both live). */
typedef struct cf__sqs_sns_params {
  cf__aws_param p[1 + 4 * CF__SQS_BATCH_MAX];
  size_t n;
  char names[4 * CF__SQS_BATCH_MAX][72];
  char ids[CF__SQS_BATCH_MAX][2];
} cf__sqs_sns_params;

/* Fills out with TopicArn and, for each pending entry,
 * PublishBatchRequestEntries.member.K.{Id,Message} (+ MessageGroupId,
 * MessageDeduplicationId when fifo), K counted from 1. */
void cf__sqs_batch_sns_params(const cf__sqs_batch *b, const char *topic_arn,
                              int fifo, cf__sqs_sns_params *out);

/* What a response did to a batch. */
typedef struct cf__sqs_batch_outcome {
  unsigned accepted; /* entries the service took */
  unsigned failed;   /* entries that failed and stay pending */
  unsigned rejected; /* entries refused for good, no longer pending */
  size_t rejected_msgs; /* envelopes those carried */
  char detail[160];  /* "Code: message" of the first failure, or "" */
} cf__sqs_batch_outcome;

/*
 * Applies a successful call's result (the "Successful" and "Failed"
 * lists of SendMessageBatch or PublishBatch; see cf__sqs_json_list) to
 * b's pending entries. An entry in neither list stays pending. Returns
 * CF_OK, or CF_ERR_PARSE when data has neither list (nothing changed).
 */
int cf__sqs_batch_apply(cf__sqs_batch *b, const json_t *data,
                        cf__sqs_batch_outcome *out);

/*
 * AWS lists reach us in two shapes: JSON arrays (SQS) and, from SNS XML,
 * an object holding "member" (an array, or one object when there is one
 * member), one object, or an empty string. These give the items of any
 * of them: the count, then item i (borrowed).
 */
size_t cf__sqs_json_list_size(const json_t *v);
const json_t *cf__sqs_json_list_get(const json_t *v, size_t i);

/* The string value of key in obj, or NULL. */
const char *cf__sqs_json_str(const json_t *obj, const char *key);

/*
 * Reading a received body, the other side of bundles. A body is one
 * envelope, a bundle (envelopes one per line; empty lines are skipped),
 * or an SNS notification (which AWS writes over several lines) whose
 * "Message" is either. each() gets every envelope decoded, in order,
 * and owns it; a nonzero return stops the reading. bad() gets each
 * line that is not an envelope, with the decoder's error and reason.
 */
typedef int (*cf__sqs_body_each)(void *ud, cf_envelope *env);
typedef void (*cf__sqs_body_bad)(void *ud, int error, const char *why);
void cf__sqs_body_read(const char *body, size_t len, const cf_mem *mem,
                       cf__sqs_body_each each, cf__sqs_body_bad bad,
                       void *ud);

#endif /* CF_SQS_BATCH_H */
