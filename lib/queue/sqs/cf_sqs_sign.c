/*
 * AWS Signature Version 4, header form. See cf_sqs_sign.h for the
 * contract; this file only explains the choices the header does not.
 *
 * The signer works in two phases. prepare() validates every input and
 * records pointers into the caller's strings (headers, query pieces, path
 * segments), sorted, in a sign_ctx on the stack. The emit functions then
 * stream the canonical forms through a sink, which feeds SHA-256 and, when
 * the caller asked for it, a copy in the caller's buffer. Validating first
 * means an error never leaves half an output behind.
 */
#include "cf_sqs_sign.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define TERMINATOR "aws4_request"
#define SHA_LEN 32
/* Bytes of the string to sign: algorithm, date, scope, hash, newlines. */
#define STS_MAX (sizeof(ALGORITHM) + CF__SQS_SIGN_DATE_LEN + 9 + \
                 2 * (CF__SQS_SIGN_MAX_SCOPE + 1) + sizeof(TERMINATOR) + \
                 CF__SQS_SIGN_HASH_LEN + 8)
/* The signer adds host, x-amz-date, and maybe the token and hash. */
#define MAX_ALL_HEADERS (CF__SQS_SIGN_MAX_HEADERS + 4)

static const char hex_upper[] = "0123456789ABCDEF";
static const char hex_lower[] = "0123456789abcdef";

/* ---- character classes (bytes, never locale-dependent) ---- */

static int is_alnum(unsigned c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9');
}

static int is_unreserved(unsigned c) {
  return is_alnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

static int is_tchar(unsigned c) {
  return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c));
}

static int is_name_char(unsigned c) {
  return is_alnum(c) || c == '-' || c == '_' || c == '.';
}

/* HTAB is the only control byte a header value may hold. */
static int is_ctl(unsigned c) {
  return c < 0x20 || c == 0x7f;
}

static int hex_value(unsigned c) {
  if (c >= '0' && c <= '9')
    return (int)(c - '0');
  if (c >= 'a' && c <= 'f')
    return (int)(c - 'a' + 10);
  if (c >= 'A' && c <= 'F')
    return (int)(c - 'A' + 10);
  return -1;
}

static unsigned lower(unsigned c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

static void hex_encode(const unsigned char *in, size_t n, char *out) {
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = hex_lower[in[i] >> 4];
    out[2 * i + 1] = hex_lower[in[i] & 15];
  }
  out[2 * n] = '\0';
}

/* ---- sink: SHA-256 and/or a bounded copy, counting the full length ---- */

typedef struct sink {
  EVP_MD_CTX *md;     /* NULL: no hashing */
  char *buf;          /* NULL: no copy */
  size_t size;        /* bytes at buf, NUL included */
  size_t len;         /* bytes emitted so far, copied or not */
  int failed;         /* a digest update failed */
  size_t nstage;      /* bytes waiting in stage */
  unsigned char stage[128]; /* batches single bytes for the digest */
} sink;

static void sink_init(sink *s, EVP_MD_CTX *md, char *buf, size_t size) {
  s->md = md;
  s->buf = size > 0 ? buf : NULL;
  s->size = size;
  s->len = 0;
  s->failed = 0;
  s->nstage = 0;
}

static void sink_write(sink *s, const void *p, size_t n) {
  if (n == 0)
    return;
  if (s->md != NULL && !s->failed && EVP_DigestUpdate(s->md, p, n) != 1)
    s->failed = 1;
  /* Once a piece did not fit, len stays >= size and nothing more is
   * copied, so the copy is always a prefix of the text. */
  if (s->buf != NULL && s->len < s->size && n < s->size - s->len)
    memcpy(s->buf + s->len, p, n);
  s->len += n;
}

static void sink_flush(sink *s) {
  size_t n = s->nstage;
  s->nstage = 0;
  sink_write(s, s->stage, n);
}

static void sink_byte(sink *s, unsigned c) {
  if (s->nstage == sizeof(s->stage))
    sink_flush(s);
  s->stage[s->nstage++] = (unsigned char)c;
}

static void sink_put(sink *s, const void *p, size_t n) {
  sink_flush(s);
  sink_write(s, p, n);
}

static void sink_str(sink *s, const char *str) {
  sink_put(s, str, strlen(str));
}

static void sink_pct(sink *s, unsigned c) {
  sink_byte(s, '%');
  sink_byte(s, (unsigned char)hex_upper[c >> 4]);
  sink_byte(s, (unsigned char)hex_upper[c & 15]);
}

/* NUL-terminates the copy. Returns CF_ERR_TOO_BIG when it did not fit
 * (the buffer then holds ""), CF_ERR_BACKEND when hashing failed. */
static int sink_end(sink *s) {
  sink_flush(s);
  if (s->failed)
    return CF_ERR_BACKEND;
  if (s->buf == NULL)
    return CF_OK;
  if (s->len < s->size) {
    s->buf[s->len] = '\0';
    return CF_OK;
  }
  s->buf[0] = '\0';
  return CF_ERR_TOO_BIG;
}

/* ---- prepared request ---- */

typedef struct hdr {
  const char *name;  /* not lowercased: compared and emitted lowercased */
  size_t nlen;
  const char *value; /* NUL-terminated, trimmed on emission */
} hdr;

typedef struct qparam {
  const char *name, *name_end;   /* wire bytes, still percent-encoded */
  const char *value, *value_end;
} qparam;

typedef struct seg {
  const char *p;
  size_t n;
} seg;

typedef struct sign_ctx {
  hdr hdrs[MAX_ALL_HEADERS];
  size_t nhdrs;
  qparam params[CF__SQS_SIGN_MAX_PARAMS];
  size_t nparams;
  seg segs[CF__SQS_SIGN_MAX_SEGMENTS];
  size_t nsegs;
  int trailing_slash;
  char date[CF__SQS_SIGN_DATE_LEN + 1];
  char hash[CF__SQS_SIGN_HASH_LEN + 1];
} sign_ctx;

/* ---- time ---- */

static void put_digits(char *p, unsigned v, int n) {
  while (n-- > 0) {
    p[n] = (char)('0' + v % 10);
    v /= 10;
  }
}

int cf__sqs_sign_format_tm(const struct tm *tm,
                           char out[CF__SQS_SIGN_DATE_LEN + 1]) {
  if (tm == NULL || out == NULL)
    return CF_ERR_INVALID;
  /* tm_year is years since 1900; SigV4 has room for four digits only. */
  if (tm->tm_year < -1900 || tm->tm_year > 9999 - 1900 || tm->tm_mon < 0 ||
      tm->tm_mon > 11 || tm->tm_mday < 1 || tm->tm_mday > 31 ||
      tm->tm_hour < 0 || tm->tm_hour > 23 || tm->tm_min < 0 ||
      tm->tm_min > 59 || tm->tm_sec < 0 || tm->tm_sec > 60)
    return CF_ERR_INVALID;
  put_digits(out, (unsigned)(tm->tm_year + 1900), 4);
  put_digits(out + 4, (unsigned)(tm->tm_mon + 1), 2);
  put_digits(out + 6, (unsigned)tm->tm_mday, 2);
  out[8] = 'T';
  put_digits(out + 9, (unsigned)tm->tm_hour, 2);
  put_digits(out + 11, (unsigned)tm->tm_min, 2);
  put_digits(out + 13, (unsigned)tm->tm_sec, 2);
  out[15] = 'Z';
  out[16] = '\0';
  return CF_OK;
}

int cf__sqs_sign_format_time(time_t t, char out[CF__SQS_SIGN_DATE_LEN + 1]) {
  struct tm tm;
  if (out == NULL || gmtime_r(&t, &tm) == NULL)
    return CF_ERR_INVALID;
  return cf__sqs_sign_format_tm(&tm, out);
}

/* ---- URI encoding ---- */

int cf__sqs_sign_uri_encode(const void *src, size_t len, unsigned flags,
                            char *dst, size_t dst_size, size_t *out_len) {
  const unsigned char *p = src;
  sink s;
  size_t i;
  if (out_len == NULL || (src == NULL && len > 0))
    return CF_ERR_INVALID;
  sink_init(&s, NULL, dst, dst != NULL ? dst_size : 0);
  for (i = 0; i < len; i++) {
    if (is_unreserved(p[i]) ||
        (p[i] == '/' && (flags & CF__SQS_SIGN_KEEP_SLASH)))
      sink_byte(&s, p[i]);
    else
      sink_pct(&s, p[i]);
  }
  sink_flush(&s);
  *out_len = s.len;
  if (dst == NULL || dst_size == 0)
    return CF_ERR_TOO_BIG;
  return sink_end(&s);
}

/* ---- validation of scalar inputs ---- */

/* Accepts 1..max bytes for which ok() holds. */
static int check_chars(const char *s, size_t max, int (*ok)(unsigned)) {
  size_t n;
  if (s == NULL)
    return CF_ERR_INVALID;
  for (n = 0; s[n] != '\0'; n++)
    if (n >= max || !ok((unsigned char)s[n]))
      return CF_ERR_INVALID;
  return n > 0 ? CF_OK : CF_ERR_INVALID;
}

static int is_method_char(unsigned c) {
  return c >= 'A' && c <= 'Z';
}

/* Visible ASCII except '/': enough for names, IPv4/IPv6 literals, ports. */
static int is_host_char(unsigned c) {
  return c > 0x20 && c < 0x7f && c != '/';
}

static int check_value(const char *v) {
  if (v == NULL)
    return CF_ERR_INVALID;
  for (; *v != '\0'; v++)
    if (is_ctl((unsigned char)*v) && *v != '\t')
      return CF_ERR_INVALID;
  return CF_OK;
}

static int check_creds(const cf__sqs_sign_creds *c) {
  size_t slen;
  if (check_chars(c->access_key_id, CF__SQS_SIGN_MAX_KEY_ID,
                  is_name_char) != CF_OK || c->secret_key == NULL)
    return CF_ERR_INVALID;
  slen = strlen(c->secret_key);
  if (slen == 0 || slen > CF__SQS_SIGN_MAX_SECRET)
    return CF_ERR_INVALID;
  if (c->session_token != NULL)
    return check_value(c->session_token);
  return CF_OK;
}

static int set_payload_hash(sign_ctx *x, const cf__sqs_sign_req *r) {
  unsigned char md[SHA_LEN];
  size_t i;
  if (r->payload_hash != NULL) {
    for (i = 0; i < CF__SQS_SIGN_HASH_LEN; i++) {
      if (hex_value((unsigned char)r->payload_hash[i]) < 0)
        return CF_ERR_INVALID;
      x->hash[i] = (char)lower((unsigned char)r->payload_hash[i]);
    }
    if (r->payload_hash[i] != '\0')
      return CF_ERR_INVALID;
    x->hash[i] = '\0';
    return CF_OK;
  }
  if (r->payload == NULL && r->payload_len > 0)
    return CF_ERR_INVALID;
  if (EVP_Digest(r->payload_len > 0 ? r->payload : "", r->payload_len, md,
                 NULL, EVP_sha256(), NULL) != 1)
    return CF_ERR_BACKEND;
  hex_encode(md, SHA_LEN, x->hash);
  return CF_OK;
}

/* ---- headers ---- */

/* Compares lowercased names bytewise; a proper prefix sorts first. */
static int name_cmp(const hdr *a, const hdr *b) {
  size_t i, n = a->nlen < b->nlen ? a->nlen : b->nlen;
  for (i = 0; i < n; i++) {
    unsigned ca = lower((unsigned char)a->name[i]);
    unsigned cb = lower((unsigned char)b->name[i]);
    if (ca != cb)
      return ca < cb ? -1 : 1;
  }
  return (a->nlen > b->nlen) - (a->nlen < b->nlen);
}

static int name_is(const char *name, size_t nlen, const char *lname) {
  size_t i;
  if (strlen(lname) != nlen)
    return 0;
  for (i = 0; i < nlen; i++)
    if (lower((unsigned char)name[i]) != (unsigned char)lname[i])
      return 0;
  return 1;
}

/* These are produced by the signer; a caller copy would be signed twice
 * or contradict the value the signer computes. */
static int is_owned_header(const char *name, size_t nlen) {
  static const char *const owned[] = {
    "host", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256",
    "authorization"
  };
  size_t i;
  for (i = 0; i < sizeof(owned) / sizeof(owned[0]); i++)
    if (name_is(name, nlen, owned[i]))
      return 1;
  return 0;
}

static void hdr_add(sign_ctx *x, const char *name, const char *value) {
  x->hdrs[x->nhdrs].name = name;
  x->hdrs[x->nhdrs].nlen = strlen(name);
  x->hdrs[x->nhdrs].value = value;
  x->nhdrs++;
}

/* Stable insertion sort: repeated names keep the caller's order, which is
 * the order their values are joined in. */
static void hdr_sort(hdr *h, size_t n) {
  size_t i, j;
  for (i = 1; i < n; i++) {
    hdr t = h[i];
    for (j = i; j > 0 && name_cmp(&h[j - 1], &t) > 0; j--)
      h[j] = h[j - 1];
    h[j] = t;
  }
}

static int prepare_headers(sign_ctx *x, const cf__sqs_sign_req *r,
                           const cf__sqs_sign_creds *c) {
  size_t i;
  if (r->nheaders > 0 && r->headers == NULL)
    return CF_ERR_INVALID;
  if (r->nheaders > CF__SQS_SIGN_MAX_HEADERS)
    return CF_ERR_LIMIT;
  for (i = 0; i < r->nheaders; i++) {
    const cf__sqs_sign_header *h = &r->headers[i];
    if (check_chars(h->name, (size_t)-1, is_tchar) != CF_OK ||
        check_value(h->value) != CF_OK ||
        is_owned_header(h->name, strlen(h->name)))
      return CF_ERR_INVALID;
    hdr_add(x, h->name, h->value);
  }
  hdr_add(x, "host", r->host);
  hdr_add(x, "x-amz-date", x->date);
  if (c->session_token != NULL && c->session_token[0] != '\0')
    hdr_add(x, "x-amz-security-token", c->session_token);
  if (r->flags & CF__SQS_SIGN_CONTENT_SHA256)
    hdr_add(x, "x-amz-content-sha256", x->hash);
  hdr_sort(x->hdrs, x->nhdrs);
  return CF_OK;
}

static void emit_name(sink *s, const hdr *h) {
  size_t i;
  for (i = 0; i < h->nlen; i++)
    sink_byte(s, lower((unsigned char)h->name[i]));
}

/* Trims the value and collapses each run of SP/HTAB into one SP. */
static void emit_value(sink *s, const char *v) {
  int started = 0, space = 0;
  for (; *v != '\0'; v++) {
    if (*v == ' ' || *v == '\t') {
      space = started;
      continue;
    }
    if (space)
      sink_byte(s, ' ');
    sink_byte(s, (unsigned char)*v);
    started = 1;
    space = 0;
  }
}

/* One "name:v1,v2\n" line per distinct name. */
static void emit_headers(sink *s, const sign_ctx *x) {
  size_t i;
  for (i = 0; i < x->nhdrs; i++) {
    if (i == 0 || name_cmp(&x->hdrs[i - 1], &x->hdrs[i]) != 0) {
      emit_name(s, &x->hdrs[i]);
      sink_byte(s, ':');
    } else {
      sink_byte(s, ',');
    }
    emit_value(s, x->hdrs[i].value);
    if (i + 1 == x->nhdrs || name_cmp(&x->hdrs[i], &x->hdrs[i + 1]) != 0)
      sink_byte(s, '\n');
  }
}

static void emit_signed_headers(sink *s, const sign_ctx *x) {
  size_t i;
  for (i = 0; i < x->nhdrs; i++) {
    if (i > 0 && name_cmp(&x->hdrs[i - 1], &x->hdrs[i]) == 0)
      continue;
    if (i > 0)
      sink_byte(s, ';');
    emit_name(s, &x->hdrs[i]);
  }
}

/* ---- query string ---- */

/* Yields the canonical bytes of one wire component: decode, re-encode. */
typedef struct qcursor {
  const unsigned char *p, *end;
  unsigned char pend[2]; /* hex digits still to yield after a '%' */
  int npend;
} qcursor;

static void qcursor_init(qcursor *c, const char *p, const char *end) {
  c->p = (const unsigned char *)p;
  c->end = (const unsigned char *)end;
  c->pend[0] = c->pend[1] = 0; /* never read before set; -O3 cannot tell */
  c->npend = 0;
}

/* Returns the next canonical byte, or -1 at the end. Escapes were
 * validated by prepare_query(), so "%" is always followed by two hex. */
static int qcursor_next(qcursor *c) {
  unsigned b;
  if (c->npend == 2) {
    c->npend = 1;
    return c->pend[0];
  }
  if (c->npend == 1) {
    c->npend = 0;
    return c->pend[1];
  }
  if (c->p == c->end)
    return -1;
  b = *c->p++;
  if (b == '%') {
    b = (unsigned)(hex_value(c->p[0]) << 4 | hex_value(c->p[1]));
    c->p += 2;
  }
  if (is_unreserved(b))
    return (int)b;
  c->pend[0] = (unsigned char)hex_upper[b >> 4];
  c->pend[1] = (unsigned char)hex_upper[b & 15];
  c->npend = 2;
  return '%';
}

/* Compares canonical forms without building them. */
static int comp_cmp(const char *a, const char *ae, const char *b,
                    const char *be) {
  qcursor x, y;
  qcursor_init(&x, a, ae);
  qcursor_init(&y, b, be);
  for (;;) {
    int ca = qcursor_next(&x), cb = qcursor_next(&y);
    if (ca != cb)
      return ca < cb ? -1 : 1;
    if (ca < 0)
      return 0;
  }
}

static int param_cmp(const qparam *a, const qparam *b) {
  int rc = comp_cmp(a->name, a->name_end, b->name, b->name_end);
  if (rc != 0)
    return rc;
  return comp_cmp(a->value, a->value_end, b->value, b->value_end);
}

static void param_sort(qparam *q, size_t n) {
  size_t i, j;
  for (i = 1; i < n; i++) {
    qparam t = q[i];
    for (j = i; j > 0 && param_cmp(&q[j - 1], &t) > 0; j--)
      q[j] = q[j - 1];
    q[j] = t;
  }
}

/* Scans one piece up to '&' or the end; returns NULL when it is bad. */
static const char *scan_piece(const char *p, const char **eq) {
  *eq = NULL;
  while (*p != '\0' && *p != '&') {
    unsigned c = (unsigned char)*p;
    if (is_ctl(c) || c == '#')
      return NULL;
    if (c == '%') {
      /* p[2] is only read when p[1] is a hex digit, hence not the NUL. */
      if (hex_value((unsigned char)p[1]) < 0 ||
          hex_value((unsigned char)p[2]) < 0)
        return NULL;
      p += 3;
      continue;
    }
    if (c == '=' && *eq == NULL)
      *eq = p;
    p++;
  }
  return p;
}

static int prepare_query(sign_ctx *x, const char *q) {
  const char *p = q, *end, *eq;
  if (q == NULL)
    return CF_OK;
  while (*p != '\0') {
    end = scan_piece(p, &eq);
    if (end == NULL)
      return CF_ERR_INVALID;
    if (end > p) {
      qparam *qp;
      if (x->nparams == CF__SQS_SIGN_MAX_PARAMS)
        return CF_ERR_LIMIT;
      qp = &x->params[x->nparams];
      qp->name = p;
      qp->name_end = eq != NULL ? eq : end;
      qp->value = eq != NULL ? eq + 1 : end;
      qp->value_end = end;
      x->nparams++;
    }
    p = *end == '&' ? end + 1 : end;
  }
  param_sort(x->params, x->nparams);
  return CF_OK;
}

static void emit_comp(sink *s, const char *p, const char *end) {
  qcursor c;
  int b;
  qcursor_init(&c, p, end);
  while ((b = qcursor_next(&c)) >= 0)
    sink_byte(s, (unsigned)b);
}

static void emit_query(sink *s, const sign_ctx *x) {
  size_t i;
  for (i = 0; i < x->nparams; i++) {
    if (i > 0)
      sink_byte(s, '&');
    emit_comp(s, x->params[i].name, x->params[i].name_end);
    sink_byte(s, '=');
    emit_comp(s, x->params[i].value, x->params[i].value_end);
  }
}

/* ---- path ---- */

/*
 * Removes "." and ".." segments (RFC 3986 5.2.4) and empty segments (AWS
 * services treat "//" as "/"); ".." above the root is dropped. A trailing
 * '/' survives only when some segment does. This matches what the
 * services compute on their side, so "/a/./b" and "/a/b" sign alike.
 */
static int prepare_path(sign_ctx *x, const char *path) {
  const char *p = path, *start;
  size_t n;
  if (path == NULL || path[0] == '\0')
    return CF_OK;
  if (path[0] != '/')
    return CF_ERR_INVALID;
  while (*p != '\0') {
    while (*p == '/')
      p++;
    for (start = p; *p != '\0' && *p != '/'; p++)
      if (is_ctl((unsigned char)*p) || *p == '?' || *p == '#')
        return CF_ERR_INVALID;
    n = (size_t)(p - start);
    if (n == 0 || (n == 1 && start[0] == '.'))
      continue;
    if (n == 2 && start[0] == '.' && start[1] == '.') {
      if (x->nsegs > 0)
        x->nsegs--;
      continue;
    }
    if (x->nsegs == CF__SQS_SIGN_MAX_SEGMENTS)
      return CF_ERR_LIMIT;
    x->segs[x->nsegs].p = start;
    x->segs[x->nsegs].n = n;
    x->nsegs++;
  }
  x->trailing_slash = p[-1] == '/';
  return CF_OK;
}

/* Encodes the wire bytes once more: '%' becomes "%25" (see the header). */
static void emit_path(sink *s, const sign_ctx *x) {
  size_t i, j;
  sink_byte(s, '/');
  for (i = 0; i < x->nsegs; i++) {
    const unsigned char *p = (const unsigned char *)x->segs[i].p;
    if (i > 0)
      sink_byte(s, '/');
    for (j = 0; j < x->segs[i].n; j++) {
      if (is_unreserved(p[j]))
        sink_byte(s, p[j]);
      else
        sink_pct(s, p[j]);
    }
  }
  if (x->nsegs > 0 && x->trailing_slash)
    sink_byte(s, '/');
}

/* ---- validation entry point ---- */

static int prepare(sign_ctx *x, const cf__sqs_sign_req *r,
                   const cf__sqs_sign_creds *c) {
  int rc;
  memset(x, 0, sizeof(*x));
  if (check_chars(r->method, 16, is_method_char) != CF_OK ||
      check_chars(r->host, (size_t)-1, is_host_char) != CF_OK ||
      check_chars(r->region, CF__SQS_SIGN_MAX_SCOPE, is_name_char) != CF_OK ||
      check_chars(r->service, CF__SQS_SIGN_MAX_SCOPE, is_name_char) != CF_OK)
    return CF_ERR_INVALID;
  if ((rc = check_creds(c)) != CF_OK)
    return rc;
  rc = r->tm != NULL ? cf__sqs_sign_format_tm(r->tm, x->date)
                     : cf__sqs_sign_format_time(r->time, x->date);
  if (rc != CF_OK)
    return rc;
  if ((rc = set_payload_hash(x, r)) != CF_OK)
    return rc;
  if ((rc = prepare_headers(x, r, c)) != CF_OK)
    return rc;
  if ((rc = prepare_query(x, r->query)) != CF_OK)
    return rc;
  return prepare_path(x, r->path);
}

/* ---- keys ---- */

static int hmac_sha256(const void *key, size_t klen, const void *msg,
                       size_t mlen, unsigned char out[SHA_LEN]) {
  unsigned int olen = 0;
  if (HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen) == NULL ||
      olen != SHA_LEN)
    return CF_ERR_BACKEND;
  return CF_OK;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service),
 * "aws4_request"). Every intermediate is wiped, also on failure. */
static int derive_key(const char *secret, const char *date8,
                      const char *region, const char *service,
                      unsigned char out[SHA_LEN]) {
  unsigned char k0[4 + CF__SQS_SIGN_MAX_SECRET];
  unsigned char a[SHA_LEN], b[SHA_LEN];
  size_t slen = strlen(secret);
  int rc;
  memcpy(k0, "AWS4", 4);
  memcpy(k0 + 4, secret, slen);
  rc = hmac_sha256(k0, 4 + slen, date8, 8, a);
  if (rc == CF_OK)
    rc = hmac_sha256(a, SHA_LEN, region, strlen(region), b);
  if (rc == CF_OK)
    rc = hmac_sha256(b, SHA_LEN, service, strlen(service), a);
  if (rc == CF_OK)
    rc = hmac_sha256(a, SHA_LEN, TERMINATOR, strlen(TERMINATOR), out);
  OPENSSL_cleanse(k0, sizeof(k0));
  OPENSSL_cleanse(a, sizeof(a));
  OPENSSL_cleanse(b, sizeof(b));
  return rc;
}

void cf__sqs_sign_cache_init(cf__sqs_sign_cache *cache) {
  memset(cache, 0, sizeof(*cache));
}

void cf__sqs_sign_cache_deinit(cf__sqs_sign_cache *cache) {
  if (cache == NULL)
    return;
  /* OPENSSL_cleanse, unlike memset, is not optimised away. */
  OPENSSL_cleanse(cache, sizeof(*cache));
}

static int cache_hit(const cf__sqs_sign_cache *c, const char *date8,
                     const char *region, const char *service,
                     const unsigned char sha[SHA_LEN]) {
  return c->valid && memcmp(c->date, date8, 8) == 0 &&
         strcmp(c->region, region) == 0 &&
         strcmp(c->service, service) == 0 &&
         CRYPTO_memcmp(c->secret_sha, sha, SHA_LEN) == 0;
}

/* Leaves c valid with the right key, or invalid and wiped on error. */
static int cache_update(cf__sqs_sign_cache *c, const char *secret,
                        const char *date8, const char *region,
                        const char *service) {
  unsigned char sha[SHA_LEN];
  int rc = CF_OK;
  if (EVP_Digest(secret, strlen(secret), sha, NULL, EVP_sha256(), NULL) != 1)
    return CF_ERR_BACKEND;
  if (!cache_hit(c, date8, region, service, sha)) {
    c->valid = 0;
    rc = derive_key(secret, date8, region, service, c->key);
    if (rc == CF_OK) {
      memcpy(c->date, date8, 8);
      c->date[8] = '\0';
      strcpy(c->region, region);   /* lengths checked by prepare() */
      strcpy(c->service, service);
      memcpy(c->secret_sha, sha, SHA_LEN);
      c->valid = 1;
      c->derivations++;
    } else {
      OPENSSL_cleanse(c->key, sizeof(c->key));
    }
  }
  OPENSSL_cleanse(sha, sizeof(sha));
  return rc;
}

/* ---- the three texts ---- */

static void emit_canonical(sink *s, const cf__sqs_sign_req *r,
                           const sign_ctx *x) {
  sink_str(s, r->method);
  sink_byte(s, '\n');
  emit_path(s, x);
  sink_byte(s, '\n');
  emit_query(s, x);
  sink_byte(s, '\n');
  emit_headers(s, x);
  sink_byte(s, '\n');
  emit_signed_headers(s, x);
  sink_byte(s, '\n');
  sink_str(s, x->hash);
}

/* Hashes the canonical request into hex, copying it out if asked. */
static int canonical_hash(const cf__sqs_sign_req *r, const sign_ctx *x,
                          cf__sqs_sign_out *out,
                          char hex[CF__SQS_SIGN_HASH_LEN + 1]) {
  unsigned char md[SHA_LEN];
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  sink s;
  int rc;
  if (ctx == NULL)
    return CF_ERR_NOMEM;
  if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(ctx);
    return CF_ERR_BACKEND;
  }
  sink_init(&s, ctx, out->canonical_request, out->canonical_request_size);
  emit_canonical(&s, r, x);
  rc = sink_end(&s);
  out->canonical_request_len = s.len;
  if (rc != CF_ERR_BACKEND && EVP_DigestFinal_ex(ctx, md, NULL) != 1)
    rc = CF_ERR_BACKEND;
  EVP_MD_CTX_free(ctx);
  if (rc == CF_ERR_BACKEND)
    return rc;
  hex_encode(md, SHA_LEN, hex);
  return rc; /* CF_OK or CF_ERR_TOO_BIG: the hash is good either way */
}

static void emit_scope(sink *s, const cf__sqs_sign_req *r,
                       const sign_ctx *x) {
  sink_put(s, x->date, 8);
  sink_byte(s, '/');
  sink_str(s, r->region);
  sink_byte(s, '/');
  sink_str(s, r->service);
  sink_byte(s, '/');
  sink_str(s, TERMINATOR);
}

static void emit_authorization(sink *s, const cf__sqs_sign_req *r,
                               const sign_ctx *x, const char *akid,
                               const char *sig) {
  sink_str(s, ALGORITHM " Credential=");
  sink_str(s, akid);
  sink_byte(s, '/');
  emit_scope(s, r, x);
  sink_str(s, ", SignedHeaders=");
  emit_signed_headers(s, x);
  sink_str(s, ", Signature=");
  sink_str(s, sig);
}

/* Keeps the first error, except that CF_ERR_TOO_BIG yields to others. */
static int merge_rc(int a, int b) {
  if (a == CF_OK || (a == CF_ERR_TOO_BIG && b != CF_OK))
    return b;
  return a;
}

static int sign_with_key(const cf__sqs_sign_req *r, const sign_ctx *x,
                         const char *akid, const unsigned char key[SHA_LEN],
                         cf__sqs_sign_out *out) {
  char crhash[CF__SQS_SIGN_HASH_LEN + 1], sig[CF__SQS_SIGN_HASH_LEN + 1];
  char sts[STS_MAX];
  unsigned char mac[SHA_LEN];
  sink s;
  int rc, rc2;
  rc = canonical_hash(r, x, out, crhash);
  if (rc != CF_OK && rc != CF_ERR_TOO_BIG)
    return rc;
  sink_init(&s, NULL, sts, sizeof(sts));
  sink_str(&s, ALGORITHM "\n");
  sink_str(&s, x->date);
  sink_byte(&s, '\n');
  emit_scope(&s, r, x);
  sink_byte(&s, '\n');
  sink_str(&s, crhash);
  if (sink_end(&s) != CF_OK) /* cannot happen: inputs are bounded */
    return CF_ERR_INVALID;
  if ((rc2 = hmac_sha256(key, SHA_LEN, sts, s.len, mac)) != CF_OK)
    return rc2;
  hex_encode(mac, SHA_LEN, sig);
  sink_init(&s, NULL, out->string_to_sign, out->string_to_sign_size);
  sink_put(&s, sts, strlen(sts));
  rc = merge_rc(rc, sink_end(&s));
  out->string_to_sign_len = s.len;
  sink_init(&s, NULL, out->authorization, out->authorization_size);
  emit_authorization(&s, r, x, akid, sig);
  rc = merge_rc(rc, sink_end(&s));
  out->authorization_len = s.len;
  if (out->authorization_size == 0)
    rc = merge_rc(rc, CF_ERR_TOO_BIG);
  return rc;
}

int cf__sqs_sign(const cf__sqs_sign_req *req, const cf__sqs_sign_creds *creds,
                 cf__sqs_sign_cache *cache, cf__sqs_sign_out *out) {
  cf__sqs_sign_cache local;
  sign_ctx x;
  int rc;
  if (req == NULL || creds == NULL || out == NULL ||
      out->authorization == NULL)
    return CF_ERR_INVALID;
  if ((rc = prepare(&x, req, creds)) != CF_OK)
    return rc;
  if (cache == NULL) {
    cf__sqs_sign_cache_init(&local);
    cache = &local;
  }
  rc = cache_update(cache, creds->secret_key, x.date, req->region,
                    req->service);
  if (rc == CF_OK) {
    rc = sign_with_key(req, &x, creds->access_key_id, cache->key, out);
    if (rc == CF_OK || rc == CF_ERR_TOO_BIG) {
      memcpy(out->amz_date, x.date, sizeof(out->amz_date));
      memcpy(out->content_sha256, x.hash, sizeof(out->content_sha256));
    }
  }
  if (cache == &local)
    cf__sqs_sign_cache_deinit(&local);
  return rc;
}
