/*
 * AWS Signature Version 4 (header form) for the SQS/SNS backend. Internal.
 *
 * The signer allocates nothing through cf_mem: the canonical request is
 * streamed into SHA-256 while it is built, sorting works on small arrays
 * of pointers on the stack, and every text output goes into a buffer the
 * caller owns, with an explicit size. OpenSSL allocates its own short-lived
 * digest/MAC contexts inside each call; those never escape the call.
 *
 * Secret handling: the secret access key never appears in any output. The
 * derived signing key lives only in the caller's cf__sqs_sign_cache, and
 * every temporary key buffer is wiped with OPENSSL_cleanse. The session
 * token is not a key: it is sent as a header, so it does appear in the
 * debug canonical request (do not log that output in production).
 *
 * Usage:
 *
 *   cf__sqs_sign_cache cache;            (one per credential set/queue)
 *   cf__sqs_sign_cache_init(&cache);
 *   ...
 *   cf__sqs_sign_header hs[] = {
 *     { "Content-Type", "application/x-amz-json-1.0" },
 *     { "X-Amz-Target", "AmazonSQS.SendMessage" } };
 *   cf__sqs_sign_req r = { 0 };
 *   r.method = "POST";  r.host = "sqs.eu-west-1.amazonaws.com";
 *   r.path = "/";  r.headers = hs;  r.nheaders = 2;
 *   r.payload = body;  r.payload_len = body_len;
 *   r.region = "eu-west-1";  r.service = "sqs";  r.time = time(NULL);
 *   char auth[512];
 *   cf__sqs_sign_out o = { 0 };
 *   o.authorization = auth;  o.authorization_size = sizeof(auth);
 *   rc = cf__sqs_sign(&r, &creds, &cache, &o);
 *   then send "Authorization: <auth>", "X-Amz-Date: <o.amz_date>",
 *   "Host: <r.host>", the headers in hs, and, when creds carry a session
 *   token, "X-Amz-Security-Token: <token>".
 *   ...
 *   cf__sqs_sign_cache_deinit(&cache);
 */
#ifndef CF_SQS_SIGN_H
#define CF_SQS_SIGN_H

#include <chatfanout/cf_common.h>

#include <stddef.h>
#include <time.h>

/* Caller headers per request (the signer adds up to 4 of its own). */
#define CF__SQS_SIGN_MAX_HEADERS 32
/* Query parameters per request (empty "&&" pieces do not count). */
#define CF__SQS_SIGN_MAX_PARAMS 256
/* Path segments kept after dot-segment removal. */
#define CF__SQS_SIGN_MAX_SEGMENTS 64
/* Longest region or service name. */
#define CF__SQS_SIGN_MAX_SCOPE 63
/* Longest access key id and secret key, in bytes. */
#define CF__SQS_SIGN_MAX_KEY_ID 128
#define CF__SQS_SIGN_MAX_SECRET 128

/* "YYYYMMDDTHHMMSSZ" and a hex SHA-256, without their NUL. */
#define CF__SQS_SIGN_DATE_LEN 16
#define CF__SQS_SIGN_HASH_LEN 64

/* cf__sqs_sign_req.flags */
enum {
  /* Also sign an x-amz-content-sha256 header carrying the payload hash;
   * the caller must then send that header (value in out->content_sha256). */
  CF__SQS_SIGN_CONTENT_SHA256 = 1u << 0
};

/* One caller header. Both strings are NUL-terminated and borrowed. */
typedef struct cf__sqs_sign_header {
  const char *name;  /* HTTP token; any case, lowercased for signing */
  const char *value; /* no control bytes except HTAB; trimmed for signing */
} cf__sqs_sign_header;

/* Borrowed for the duration of one cf__sqs_sign() call. */
typedef struct cf__sqs_sign_creds {
  const char *access_key_id; /* 1..128 of A-Z a-z 0-9 . _ - */
  const char *secret_key;    /* 1..128 bytes; never copied out */
  const char *session_token; /* NULL or "" when none; else signed as
                              * x-amz-security-token */
} cf__sqs_sign_creds;

/*
 * One request to sign. All strings are NUL-terminated and borrowed for the
 * duration of the call; zero-initialise the struct, then fill it.
 *
 * path is the path exactly as it goes on the wire (already percent-encoded
 * by whoever built the URL, e.g. with cf__sqs_sign_uri_encode()). The
 * signer removes "." and ".." segments and empty segments, then
 * URI-encodes the result once more, '/' kept: that is the SigV4 rule for
 * every service but S3 (whose "encode only once" exception is not
 * implemented: SQS and SNS do not need it). Seen from a raw segment "a b",
 * the wire form is "a%20b" and the canonical form "a%2520b". Segments
 * made of unreserved bytes (all SQS queue paths) are unaffected.
 *
 * query is the wire query string without the '?'. It is split on '&'
 * (empty pieces skipped) and on the first '=' of each piece; each name and
 * value is percent-decoded, then re-encoded per SigV4 (A-Z a-z 0-9 - _ . ~
 * kept, every other byte as %XX, uppercase hex), then sorted by encoded
 * name, then encoded value. Decoding first makes "%c3%a9", "%C3%A9" and a
 * raw UTF-8 "é" canonicalise alike and prevents double encoding. '+' is a
 * literal plus (%2B): encode spaces as %20.
 */
typedef struct cf__sqs_sign_req {
  const char *method;  /* uppercase token: "GET", "POST" */
  const char *host;    /* Host header value, signed verbatim: no scheme,
                        * no default port, e.g. "sqs.us-east-1.amazonaws.com"
                        * or "127.0.0.1:9324" */
  const char *path;    /* wire path starting with '/'; NULL or "" is "/" */
  const char *query;   /* wire query, no '?'; NULL or "" for none */
  const cf__sqs_sign_header *headers; /* extra headers to sign, or NULL */
  size_t nheaders;     /* 0..CF__SQS_SIGN_MAX_HEADERS */
  const void *payload; /* body bytes; NULL allowed when payload_len is 0 */
  size_t payload_len;
  const char *payload_hash; /* NULL: hash payload; else 64 hex digits used
                             * instead (payload is then ignored) */
  const char *region;  /* 1..63 of A-Z a-z 0-9 . _ - */
  const char *service; /* same charset: "sqs", "sns" */
  time_t time;         /* signing time (UTC seconds), used when tm is NULL */
  const struct tm *tm; /* or a broken-down UTC time; wins over time */
  unsigned flags;      /* CF__SQS_SIGN_* */
} cf__sqs_sign_req;

/*
 * Results. The caller owns every buffer. For each optional text output,
 * set buf NULL (or size 0) to skip it. Each *_len receives the length the
 * full text needs, without its NUL, even when its buffer was too small.
 */
typedef struct cf__sqs_sign_out {
  char *authorization;          /* Authorization header value (required) */
  size_t authorization_size;
  size_t authorization_len;
  char amz_date[CF__SQS_SIGN_DATE_LEN + 1];       /* X-Amz-Date value */
  char content_sha256[CF__SQS_SIGN_HASH_LEN + 1]; /* payload hash, hex;
                                                   * always filled */
  char *canonical_request;      /* debug/test: the canonical request */
  size_t canonical_request_size;
  size_t canonical_request_len;
  char *string_to_sign;         /* debug/test: the string to sign */
  size_t string_to_sign_size;
  size_t string_to_sign_len;
} cf__sqs_sign_out;

/*
 * Signing-key cache, owned and embedded by the caller. The key derived
 * from (date, region, service, secret) is kept so that the four HMAC
 * derivation steps run once per UTC day and not per request. The secret
 * itself is not stored, only its SHA-256 to notice a rotated secret.
 * Not thread-safe: one cache per thread (or per queue object).
 */
typedef struct cf__sqs_sign_cache {
  unsigned char key[32];        /* kSigning; valid when valid != 0 */
  unsigned char secret_sha[32]; /* SHA-256 of the secret behind key */
  char date[9];                 /* "YYYYMMDD" of key */
  char region[CF__SQS_SIGN_MAX_SCOPE + 1];
  char service[CF__SQS_SIGN_MAX_SCOPE + 1];
  int valid;                    /* 0 until the first derivation */
  unsigned long derivations;    /* number of keys derived so far */
} cf__sqs_sign_cache;

/* Makes an empty cache. Cannot fail. */
void cf__sqs_sign_cache_init(cf__sqs_sign_cache *cache);

/* Wipes the cached key material. The cache may be init'ed again. */
void cf__sqs_sign_cache_deinit(cf__sqs_sign_cache *cache);

/*
 * Signs req with creds and fills out. cache may be NULL (the key is then
 * derived for this call only and wiped). req, creds and their strings are
 * only read, and only during the call.
 *
 * Returns:
 *   CF_OK           out is complete.
 *   CF_ERR_INVALID  a NULL or malformed argument: bad method, host, path,
 *                   query (bad %-escape, control byte, '#'), header name
 *                   or value, a header the signer owns (host, x-amz-date,
 *                   x-amz-security-token, x-amz-content-sha256,
 *                   authorization), region, service, key id, secret,
 *                   payload_hash or time. out holds no result.
 *   CF_ERR_LIMIT    more than CF__SQS_SIGN_MAX_HEADERS headers,
 *                   CF__SQS_SIGN_MAX_PARAMS query parameters or
 *                   CF__SQS_SIGN_MAX_SEGMENTS path segments.
 *   CF_ERR_TOO_BIG  a requested output buffer was too small: its *_len
 *                   holds the needed length; buffers big enough are filled,
 *                   the others hold "" (when their size is not 0).
 *   CF_ERR_NOMEM    OpenSSL could not allocate a context.
 *   CF_ERR_BACKEND  another libcrypto failure.
 * On error the cache stays consistent (valid or empty).
 */
int cf__sqs_sign(const cf__sqs_sign_req *req, const cf__sqs_sign_creds *creds,
                 cf__sqs_sign_cache *cache, cf__sqs_sign_out *out);

/*
 * Writes t as "YYYYMMDDTHHMMSSZ" (UTC) plus a NUL into out.
 * Returns CF_OK, or CF_ERR_INVALID when out is NULL or the year is not in
 * 0..9999.
 */
int cf__sqs_sign_format_time(time_t t, char out[CF__SQS_SIGN_DATE_LEN + 1]);

/*
 * Same from a broken-down UTC time. Returns CF_ERR_INVALID when a field is
 * out of range (sec 0..60 allowed).
 */
int cf__sqs_sign_format_tm(const struct tm *tm,
                           char out[CF__SQS_SIGN_DATE_LEN + 1]);

/* cf__sqs_sign_uri_encode() flags */
enum {
  CF__SQS_SIGN_KEEP_SLASH = 1u << 0 /* leave '/' as is (whole paths) */
};

/*
 * Percent-encodes len bytes of src the SigV4 way (A-Z a-z 0-9 - _ . ~
 * kept, every other byte as %XX with uppercase hex) into dst, plus a NUL.
 * Meant for building wire paths and query strings from raw names and
 * values. *out_len receives the encoded length without the NUL, even when
 * dst is too small. src may be NULL when len is 0.
 * Returns CF_OK, CF_ERR_INVALID (NULL out_len, or NULL src with len > 0),
 * or CF_ERR_TOO_BIG (dst holds "" when dst_size > 0).
 */
int cf__sqs_sign_uri_encode(const void *src, size_t len, unsigned flags,
                            char *dst, size_t dst_size, size_t *out_len);

#endif /* CF_SQS_SIGN_H */
