/* Outgoing messages and batch requests; see cf_sqs_batch.h. */
#include "cf_sqs_batch.h"

#include <stdio.h>
#include <string.h>

#include "cf_mem.h"

/* --- messages -------------------------------------------------------- */

/*
 * SQS takes only #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF
 * in a body (SNS delivering into SQS too), and some emulators refuse
 * everything past the BMP. The encoder already escapes the C0 bytes;
 * U+FFFE, U+FFFF and the code points past U+FFFF (4-byte UTF-8) are
 * written as JSON \u escapes here, which every JSON reader turns back
 * into the same text. They can only occur inside JSON strings of the
 * body, so a byte-level rewrite is safe. Returns the bytes it adds.
 */
static size_t sqs_safe_extra(const unsigned char *p, size_t n) {
  size_t i, extra = 0;

  for (i = 0; i < n; i++) {
    if (p[i] >= 0xf0)
      extra += 12 - 4; /* two 6-byte escapes for 4 bytes */
    else if (p[i] == 0xef && i + 2 < n && p[i + 1] == 0xbf &&
             p[i + 2] >= 0xbe)
      extra += 6 - 3;
  }
  return extra;
}

static char *put_u(char *w, unsigned cp) {
  static const char hex[] = "0123456789abcdef";

  w[0] = '\\';
  w[1] = 'u';
  w[2] = hex[(cp >> 12) & 15];
  w[3] = hex[(cp >> 8) & 15];
  w[4] = hex[(cp >> 4) & 15];
  w[5] = hex[cp & 15];
  return w + 6;
}

/* Rewrites b[0..n) in place, from the end, into n + extra bytes (+NUL);
 * the input is valid UTF-8 (the encoder checked it). */
static void sqs_safe_rewrite(char *b, size_t n, size_t extra) {
  unsigned char *p = (unsigned char *)b;
  char *w = b + n + extra;
  size_t i = n;

  *w = '\0';
  while (i > 0) {
    size_t start = i - 1, len;
    while (start > 0 && (p[start] & 0xc0) == 0x80)
      start--;
    len = i - start;
    if (len == 4) {
      unsigned cp = ((p[start] & 7u) << 18) | ((p[start + 1] & 63u) << 12) |
                    ((p[start + 2] & 63u) << 6) | (p[start + 3] & 63u);
      w -= 12;
      put_u(put_u(w, 0xd800 + ((cp - 0x10000) >> 10)),
            0xdc00 + ((cp - 0x10000) & 0x3ff));
    } else if (len == 3 && p[start] == 0xef && p[start + 1] == 0xbf &&
               p[start + 2] >= 0xbe) {
      w -= 6;
      put_u(w, 0xffc0u | (p[start + 2] & 0x3fu));
    } else {
      w -= len;
      memmove(w, b + start, len);
    }
    i = start;
  }
}

/* Makes room for size body bytes (+NUL) in *mp, which may be NULL;
 * grows geometrically so that a bundle costs amortised O(1) per append.
 * On failure *mp is unchanged. */
static int msg_reserve(cf__sqs_msg **mp, size_t size, size_t max_len,
                       const cf_mem *mem) {
  cf__sqs_msg *m = *mp;
  size_t cap;

  if (m != NULL && m->cap >= size)
    return CF_OK;
  cap = m != NULL && m->cap * 2 > size ? m->cap * 2 : size;
  if (cap > max_len)
    cap = size;
  m = cf__realloc(mem, m, sizeof(*m) + cap + 1);
  if (m == NULL)
    return CF_ERR_NOMEM;
  if (*mp == NULL)
    m->len = 0;
  m->cap = cap;
  *mp = m;
  return CF_OK;
}

/*
 * Encodes env at byte at of (*mp)'s body, growing it; on success the
 * body ends there plus the envelope and *len_out gives that envelope's
 * bytes. On failure the body before at is untouched (*mp may have
 * moved, still valid, or still NULL).
 */
static int msg_encode_at(cf__sqs_msg **mp, size_t at, const cf_envelope *env,
                         size_t max_len, const cf_mem *mem,
                         size_t *len_out) {
  size_t len, got, extra;
  char *b;
  int rv;

  rv = cf__envelope_encoded_len(env, &len);
  if (rv != CF_OK)
    return rv;
  if (len > max_len || at > max_len - len)
    return CF_ERR_TOO_BIG;
  if ((rv = msg_reserve(mp, at + len, max_len, mem)) != CF_OK)
    return rv;
  b = (*mp)->body + at;
  if ((rv = cf__envelope_encode(env, b, len + 1, &got)) != CF_OK)
    return rv;
  /* Only text with such characters pays for a second pass. */
  extra = env->flags == CF_MSG_TEXT
              ? sqs_safe_extra((const unsigned char *)b, got) : 0;
  if (extra > 0) {
    if (at + got + extra > max_len)
      return CF_ERR_TOO_BIG;
    if ((rv = msg_reserve(mp, at + got + extra, max_len, mem)) != CF_OK)
      return rv;
    b = (*mp)->body + at;
    sqs_safe_rewrite(b, got, extra);
    got += extra;
  }
  *len_out = got;
  return CF_OK;
}

int cf__sqs_msg_new(cf__sqs_msg **out, const cf_envelope *env,
                    size_t max_len, const cf_mem *mem) {
  cf__sqs_msg *m = NULL;
  size_t got;
  int rv;

  *out = NULL;
  rv = msg_encode_at(&m, 0, env, max_len, mem, &got);
  if (rv != CF_OK) {
    if (m != NULL)
      cf__free(mem, m);
    return rv;
  }
  cf_list_init(&m->link);
  m->refs = 1;
  m->len = got;
  m->count = 1;
  cf__envelope_id(m->id, env->origin, env->seq);
  memcpy(m->group, env->room, env->room_len);
  m->group[env->room_len] = '\0';
  *out = m;
  return CF_OK;
}

int cf__sqs_msg_append(cf__sqs_msg **mp, const cf_envelope *env,
                       size_t max_len, const cf_mem *mem, size_t *added) {
  size_t at = (*mp)->len + 1, got;
  int rv;

  rv = msg_encode_at(mp, at, env, max_len, mem, &got);
  if (rv != CF_OK) {
    (*mp)->body[(*mp)->len] = '\0';
    return rv;
  }
  /* JSON text holds no raw newline, so it can separate envelopes. */
  (*mp)->body[at - 1] = '\n';
  (*mp)->len = at + got;
  (*mp)->count++;
  *added = got + 1;
  return CF_OK;
}

cf__sqs_msg *cf__sqs_msg_ref(cf__sqs_msg *m) {
  m->refs++;
  return m;
}

int cf__sqs_msg_unref(cf__sqs_msg *m, const cf_mem *mem) {
  if (m == NULL || --m->refs != 0)
    return 0;
  cf__free(mem, m);
  return 1;
}

/* --- batches --------------------------------------------------------- */

void cf__sqs_batch_init(cf__sqs_batch *b) {
  memset(b, 0, sizeof(*b));
}

int cf__sqs_batch_fits(const cf__sqs_batch *b, size_t len) {
  return b->n < CF__SQS_BATCH_MAX && len <= CF__SQS_SIZE_MAX &&
         b->bytes <= CF__SQS_SIZE_MAX - len;
}

void cf__sqs_batch_add(cf__sqs_batch *b, cf__sqs_msg *m) {
  b->msg[b->n] = cf__sqs_msg_ref(m);
  b->pending |= 1u << b->n;
  b->bytes += m->len;
  b->n++;
}

void cf__sqs_batch_copy(cf__sqs_batch *dst, const cf__sqs_batch *src) {
  unsigned i;

  *dst = *src;
  for (i = 0; i < dst->n; i++)
    cf__sqs_msg_ref(dst->msg[i]);
}

void cf__sqs_batch_clear(cf__sqs_batch *b, const cf_mem *mem) {
  unsigned i;

  for (i = 0; i < b->n; i++)
    cf__sqs_msg_unref(b->msg[i], mem);
  cf__sqs_batch_init(b);
}

unsigned cf__sqs_batch_pending_count(const cf__sqs_batch *b) {
  unsigned i, n = 0;

  for (i = 0; i < b->n; i++)
    n += (b->pending >> i) & 1u;
  return n;
}

size_t cf__sqs_batch_pending_msgs(const cf__sqs_batch *b) {
  unsigned i;
  size_t n = 0;

  for (i = 0; i < b->n; i++)
    if (b->pending & (1u << i))
      n += b->msg[i]->count;
  return n;
}

size_t cf__sqs_batch_pending_bytes(const cf__sqs_batch *b) {
  unsigned i;
  size_t n = 0;

  for (i = 0; i < b->n; i++)
    if (b->pending & (1u << i))
      n += b->msg[i]->len;
  return n;
}

/* --- requests -------------------------------------------------------- */

static json_t *sqs_entry(const cf__sqs_msg *m, unsigned i, int fifo) {
  char id[2] = {(char)('0' + i), '\0'}; /* i < 10 */
  json_t *e;

  e = json_object();
  if (e == NULL)
    return NULL;
  if (json_object_set_new(e, "Id", json_string(id)) != 0 ||
      json_object_set_new(e, "MessageBody",
                          json_stringn(m->body, m->len)) != 0)
    goto fail;
  if (fifo &&
      (json_object_set_new(e, "MessageGroupId", json_string(m->group)) ||
       json_object_set_new(e, "MessageDeduplicationId",
                           json_string(m->id))))
    goto fail;
  return e;
fail:
  json_decref(e);
  return NULL;
}

json_t *cf__sqs_batch_sqs_params(const cf__sqs_batch *b, const char *url,
                                 int fifo) {
  json_t *p = json_object(), *entries = json_array();
  unsigned i;

  if (p == NULL || entries == NULL)
    goto fail;
  for (i = 0; i < b->n; i++) {
    if (!(b->pending & (1u << i)))
      continue;
    if (json_array_append_new(entries, sqs_entry(b->msg[i], i, fifo)) != 0)
      goto fail;
  }
  if (json_object_set_new(p, "QueueUrl", json_string(url)) != 0)
    goto fail;
  if (json_object_set_new(p, "Entries", entries) != 0) {
    entries = NULL; /* set_new consumed it even on failure */
    goto fail;
  }
  return p;
fail:
  json_decref(entries);
  json_decref(p);
  return NULL;
}

/* p[0] is TopicArn, so p[n] takes its name from names[n - 1]. */
static void sns_param(cf__sqs_sns_params *o, unsigned k, const char *field,
                      const char *value) {
  char *name = o->names[o->n - 1];

  snprintf(name, sizeof(o->names[0]),
           "PublishBatchRequestEntries.member.%u.%s", k, field);
  o->p[o->n].name = name;
  o->p[o->n].value = value;
  o->n++;
}

void cf__sqs_batch_sns_params(const cf__sqs_batch *b, const char *topic_arn,
                              int fifo, cf__sqs_sns_params *out) {
  unsigned i, k = 0;

  out->n = 0;
  out->p[out->n].name = "TopicArn";
  out->p[out->n].value = topic_arn;
  out->n++;
  for (i = 0; i < b->n; i++) {
    const cf__sqs_msg *m = b->msg[i];
    if (!(b->pending & (1u << i)))
      continue;
    k++;
    out->ids[i][0] = (char)('0' + i);
    out->ids[i][1] = '\0';
    sns_param(out, k, "Id", out->ids[i]);
    sns_param(out, k, "Message", m->body);
    if (fifo) {
      sns_param(out, k, "MessageGroupId", m->group);
      sns_param(out, k, "MessageDeduplicationId", m->id);
    }
  }
}

/* --- responses ------------------------------------------------------- */

/* An SNS XML list arrives as {"member": x}; look through it. */
static const json_t *list_unwrap(const json_t *v) {
  const json_t *m;

  if (json_is_object(v) && (m = json_object_get(v, "member")) != NULL)
    return m;
  return v;
}

size_t cf__sqs_json_list_size(const json_t *v) {
  v = list_unwrap(v);
  if (json_is_array(v))
    return json_array_size(v);
  return json_is_object(v) && json_object_size(v) > 0 ? 1 : 0;
}

const json_t *cf__sqs_json_list_get(const json_t *v, size_t i) {
  v = list_unwrap(v);
  if (json_is_array(v))
    return json_array_get(v, i);
  return i == 0 && json_is_object(v) ? v : NULL;
}

const char *cf__sqs_json_str(const json_t *obj, const char *key) {
  return json_string_value(json_object_get(obj, key));
}

/* Entry index from an Id we made ("0".."9"); -1 when not one of ours. */
static int entry_index(const json_t *item, const cf__sqs_batch *b) {
  const char *id = cf__sqs_json_str(item, "Id");

  if (id == NULL || id[0] < '0' || id[0] > '9' || id[1] != '\0')
    return -1;
  if ((unsigned)(id[0] - '0') >= b->n)
    return -1;
  return id[0] - '0';
}

/* SQS gives a JSON boolean, SNS (through XML) the text "true". */
static int sender_fault(const json_t *item) {
  const json_t *f = json_object_get(item, "SenderFault");
  const char *s = json_string_value(f);

  return json_is_true(f) || (s != NULL && strcmp(s, "true") == 0);
}

static void note_failure(cf__sqs_batch_outcome *out, const json_t *item) {
  const char *code = cf__sqs_json_str(item, "Code");
  const char *msg = cf__sqs_json_str(item, "Message");

  if (out->detail[0] != '\0')
    return;
  snprintf(out->detail, sizeof(out->detail), "%s: %s",
           code ? code : "Failed", msg ? msg : "");
}

int cf__sqs_batch_apply(cf__sqs_batch *b, const json_t *data,
                        cf__sqs_batch_outcome *out) {
  const json_t *ok = json_object_get(data, "Successful");
  const json_t *bad = json_object_get(data, "Failed");
  size_t i, n;

  memset(out, 0, sizeof(*out));
  if (ok == NULL && bad == NULL)
    return CF_ERR_PARSE;
  n = cf__sqs_json_list_size(ok);
  for (i = 0; i < n; i++) {
    int k = entry_index(cf__sqs_json_list_get(ok, i), b);
    if (k < 0 || !(b->pending & (1u << k)))
      continue;
    b->pending &= ~(1u << k);
    out->accepted++;
  }
  n = cf__sqs_json_list_size(bad);
  for (i = 0; i < n; i++) {
    const json_t *item = cf__sqs_json_list_get(bad, i);
    int k = entry_index(item, b);
    if (k < 0 || !(b->pending & (1u << k)))
      continue;
    note_failure(out, item);
    if (sender_fault(item)) {
      b->pending &= ~(1u << k);
      out->rejected++;
      out->rejected_msgs += b->msg[k]->count;
    } else {
      out->failed++;
    }
  }
  return CF_OK;
}

/* --- reading a body ------------------------------------------------------ */

typedef struct body_reader {
  const cf_mem *mem;
  cf__sqs_body_each each;
  cf__sqs_body_bad bad;
  void *ud;
  int stop;
} body_reader;

/* One line: an envelope for each(), or the decoder's error for bad(). */
static void read_line(body_reader *r, const char *p, size_t len) {
  const char *why = "out of memory";
  cf_envelope *env;
  int rv = cf__envelope_decode(&env, p, len, r->mem, &why);
  if (rv == CF_OK)
    r->stop = r->each(r->ud, env);
  else
    r->bad(r->ud, rv, why);
}

static void read_lines(body_reader *r, const char *p, size_t len) {
  const char *end = p + len, *nl;
  for (; p < end && !r->stop; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      nl = end;
    if (nl > p)
      read_line(r, p, (size_t)(nl - p));
  }
}

/* An SNS notification: returns 1 when body was one (and was read). */
static int read_wrapped(body_reader *r, const char *body, size_t len) {
  json_t *w = json_loadb(body, len, 0, NULL);
  const json_t *m = json_object_get(w, "Message");
  const char *type = cf__sqs_json_str(w, "Type");
  int rv = 0;
  if (json_is_string(m) && type != NULL &&
      strcmp(type, "Notification") == 0) {
    read_lines(r, json_string_value(m), json_string_length(m));
    rv = 1;
  }
  json_decref(w);
  return rv;
}

void cf__sqs_body_read(const char *body, size_t len, const cf_mem *mem,
                       cf__sqs_body_each each, cf__sqs_body_bad bad,
                       void *ud) {
  body_reader r = {mem, each, bad, ud, 0};
  const char *why = "out of memory", *nl = memchr(body, '\n', len);
  size_t first = nl != NULL ? (size_t)(nl - body) : len;
  cf_envelope *env;
  int rv;
  if (first == 0) {
    read_lines(&r, body, len);
    return;
  }
  /* The first line alone decides: an envelope, or the start of a
   * notification that spans the body. */
  rv = cf__envelope_decode(&env, body, first, mem, &why);
  if (rv == CF_OK)
    r.stop = each(ud, env);
  else if (rv == CF_ERR_PARSE && read_wrapped(&r, body, len))
    return;
  else
    bad(ud, rv, why);
  if (nl != NULL && !r.stop)
    read_lines(&r, nl + 1, len - first - 1);
}
