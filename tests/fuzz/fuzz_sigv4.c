/*
 * SigV4 canonicalisation (cf_sqs_sign.c) of hostile request pieces: the
 * path, query, host, method and headers come from the input, split on
 * NUL bytes in that order (then header name, value pairs). Byte 0:
 *   bit 0  CF__SQS_SIGN_CONTENT_SHA256
 *   bit 1  undersized output buffers (the *_len must still be right)
 *   bit 2  a session token
 * Invariants on success: the canonical request has the fixed shape,
 * its path and query are fully encoded (only unreserved bytes, '/',
 * '=', '&' and uppercase %XX), the query pairs are sorted, the secret
 * appears in no output, signing is deterministic (cache or not), and a
 * canonical query signed again canonicalises to itself.
 */
#include <ctype.h>

#include "cf_sqs_sign.h"
#include "fuzz_common.h"

#define SECRET "Fz9+/secretSECRETsecret0000000000"

typedef struct outs {
  cf__sqs_sign_out o;
  char auth[1024], cr[32768], sts[512];
} outs;

static void outs_init(outs *b, int small) {
  memset(b, 0, sizeof *b);
  b->o.authorization = b->auth;
  b->o.authorization_size = small ? 16 : sizeof b->auth;
  b->o.canonical_request = b->cr;
  b->o.canonical_request_size = small ? 16 : sizeof b->cr;
  b->o.string_to_sign = b->sts;
  b->o.string_to_sign_size = sizeof b->sts;
}

static int unreserved(int c) {
  return isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

/* Checks s[0..n) is encoded; extra lists the separators allowed. */
static void check_encoded(const char *s, size_t n, const char *extra) {
  size_t i;
  for (i = 0; i < n; i++) {
    int c = (unsigned char)s[i];
    if (c == '%') {
      FUZZ_CHECK(i + 2 < n);
      FUZZ_CHECK(isxdigit((unsigned char)s[i + 1]) &&
                 !islower((unsigned char)s[i + 1]));
      FUZZ_CHECK(isxdigit((unsigned char)s[i + 2]) &&
                 !islower((unsigned char)s[i + 2]));
      i += 2;
    } else {
      FUZZ_CHECK(unreserved(c) || (c != '\0' && strchr(extra, c)));
    }
  }
}

static int pair_cmp(const char *a, size_t an, const char *b, size_t bn) {
  const char *ae = memchr(a, '=', an), *be = memchr(b, '=', bn);
  size_t al = (size_t)(ae - a), bl = (size_t)(be - b);
  int rc = memcmp(a, b, al < bl ? al : bl);
  if (rc != 0 || al != bl)
    return rc != 0 ? rc : (al < bl ? -1 : 1);
  an -= al + 1;
  bn -= bl + 1;
  rc = memcmp(ae + 1, be + 1, an < bn ? an : bn);
  return rc != 0 ? rc : (an < bn ? -1 : an > bn);
}

/* The query line: name=value pairs joined by '&', sorted. */
static void check_query(const char *q, size_t n) {
  const char *p = q, *end = q + n, *prev = NULL, *amp;
  size_t prev_n = 0, len;
  check_encoded(q, n, "=&");
  while (p < end) {
    amp = memchr(p, '&', (size_t)(end - p));
    len = (size_t)((amp ? amp : end) - p);
    FUZZ_CHECK(memchr(p, '=', len) != NULL);
    if (prev != NULL)
      FUZZ_CHECK(pair_cmp(prev, prev_n, p, len) <= 0);
    prev = p;
    prev_n = len;
    p += len + (amp != NULL);
  }
}

/* Returns the query line of the canonical request in *q, *qn. */
static void check_canonical(const outs *b, const char *method,
                            const char **q, size_t *qn, int secret_in) {
  const char *cr = b->cr, *nl, *path;
  size_t n = b->o.canonical_request_len;
  FUZZ_CHECK(strlen(cr) == n);
  nl = strchr(cr, '\n');
  FUZZ_CHECK(nl != NULL && (size_t)(nl - cr) == strlen(method));
  path = nl + 1;
  nl = strchr(path, '\n');
  FUZZ_CHECK(nl != NULL && path[0] == '/');
  check_encoded(path, (size_t)(nl - path), "/");
  FUZZ_CHECK(strstr(path, "//") == NULL || strstr(path, "//") > nl);
  *q = nl + 1;
  nl = strchr(*q, '\n');
  FUZZ_CHECK(nl != NULL);
  *qn = (size_t)(nl - *q);
  check_query(*q, *qn);
  FUZZ_CHECK(n > 64 && cr[n - 65] == '\n');
  /* (Unless a header value the input gave carries it.) */
  FUZZ_CHECK(secret_in || strstr(cr, SECRET) == NULL);
  FUZZ_CHECK(strstr(b->auth, SECRET) == NULL);
  FUZZ_CHECK(strncmp(b->auth, "AWS4-HMAC-SHA256 Credential=AKIDFUZZ/", 37)
             == 0);
}

/* Splits the input into NUL-separated fields (in place). */
static size_t split(char *s, size_t n, char **f, size_t max) {
  size_t k = 0, i, start = 0;
  for (i = 0; i <= n && k < max; i++) {
    if (i == n || s[i] == '\0') {
      s[i] = '\0';
      f[k++] = s + start;
      start = i + 1;
    }
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static cf__sqs_sign_cache cache;
  static int cache_ready;
  cf__sqs_sign_header hs[CF__SQS_SIGN_MAX_HEADERS + 2];
  cf__sqs_sign_creds cr = {"AKIDFUZZ", SECRET, NULL};
  cf__sqs_sign_req r;
  char *f[4 + 2 * (CF__SQS_SIGN_MAX_HEADERS + 2)], *buf, *q2;
  outs *a, *b;
  const char *q;
  size_t nf, i, qn;
  int flags, rc, rc2, secret_in;

  if (size < 1)
    return 0;
  if (!cache_ready) {
    cf__sqs_sign_cache_init(&cache);
    cache_ready = 1;
  }
  flags = data[0];
  secret_in = memmem(data, size, SECRET, strlen(SECRET)) != NULL;
  buf = fuzz_dup(data + 1, size - 1, 1);
  nf = split(buf, size - 1, f, sizeof f / sizeof *f);
  memset(&r, 0, sizeof r);
  r.path = f[0];
  r.query = nf > 1 ? f[1] : NULL;
  r.host = nf > 2 && f[2][0] ? f[2] : "sqs.us-east-1.amazonaws.com";
  r.method = nf > 3 && f[3][0] ? f[3] : "POST";
  for (i = 4; i + 1 < nf; i += 2) {
    hs[(i - 4) / 2].name = f[i];
    hs[(i - 4) / 2].value = f[i + 1];
  }
  r.headers = hs;
  r.nheaders = nf > 4 ? (nf - 4) / 2 : 0;
  r.payload = "{}";
  r.payload_len = 2;
  r.region = "us-east-1";
  r.service = "sqs";
  r.time = 1700000000;
  r.flags = flags & 1 ? CF__SQS_SIGN_CONTENT_SHA256 : 0;
  if (flags & 4)
    cr.session_token = "token/with+chars==";

  a = malloc(sizeof *a);
  b = malloc(sizeof *b);
  outs_init(a, 0);
  rc = cf__sqs_sign(&r, &cr, &cache, &a->o);
  FUZZ_CHECK(rc == CF_OK || rc == CF_ERR_INVALID || rc == CF_ERR_LIMIT ||
             rc == CF_ERR_TOO_BIG);
  if (rc == CF_OK) {
    check_canonical(a, r.method, &q, &qn, secret_in);
    /* Same request without the cache, maybe into small buffers. */
    outs_init(b, flags & 2);
    rc2 = cf__sqs_sign(&r, &cr, NULL, &b->o);
    FUZZ_CHECK(b->o.authorization_len == a->o.authorization_len);
    FUZZ_CHECK(b->o.canonical_request_len == a->o.canonical_request_len);
    if (flags & 2) {
      FUZZ_CHECK(rc2 == CF_ERR_TOO_BIG);
    } else {
      FUZZ_CHECK(rc2 == CF_OK && strcmp(a->auth, b->auth) == 0);
    }
    /* The canonical query is a fixed point. */
    q2 = fuzz_dup((const uint8_t *)q, qn, 1);
    r.query = q2;
    outs_init(b, 0);
    FUZZ_CHECK(cf__sqs_sign(&r, &cr, &cache, &b->o) == CF_OK);
    check_canonical(b, r.method, &q, &i, secret_in);
    FUZZ_CHECK(i == qn && memcmp(q, q2, qn) == 0);
    free(q2);
  }
  free(a);
  free(b);
  free(buf);
  return 0;
}
