/*
 * Signed SQS (JSON) and SNS (query) calls. See cf_aws.h for the contract.
 *
 * A call is one HTTP transfer whose context (who to call back) lives in
 * the transfer itself (cf__http_send_ctx), so cancelling through
 * cf__http_cancel() leaves nothing behind. The reply is parsed and
 * classified before the user's callback runs; nothing touches the
 * cf__aws after that callback, so it may free the client.
 */
#include "cf_aws.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cf_aws_xml.h"
#include "cf_mem.h"
#include "cf_sqs_sign.h"

#define SNS_VERSION "2010-03-31"
#define SQS_CTYPE "application/x-amz-json-1.0"
#define SNS_CTYPE "application/x-www-form-urlencoded; charset=utf-8"
#define MAX_ACTION 64
#define MAX_HOST 300
#define MAX_PATH 1024
/* Authorization: algorithm, credential scope, signed headers, signature. */
#define AUTH_SIZE 1024

/* What a service call needs to know about its endpoint. */
typedef struct endpoint {
  char *url;               /* endpoint + "/" */
  char host[MAX_HOST];     /* Host header value */
  char path[MAX_PATH];     /* signed path */
  const char *service;     /* "sqs", "sns" */
  cf__sqs_sign_cache cache;
} endpoint;

struct cf__aws {
  cf_mem mem;
  cf_loop loop;
  cf__aws_config cfg;
  int has_cfg;
  cf__http *http;
  cf__aws_creds_provider *creds;
  endpoint sqs;
  endpoint sns;
  cf__aws_stats stats;
};

/* Stored in the HTTP transfer for the duration of one call. */
typedef struct call_ctx {
  cf__aws *a;
  int proto;
  cf__aws_cb cb;
  void *user_data;
} call_ctx;

/* ---- classification ---------------------------------------------------- */

static const char *const throttle_codes[] = {
  "ThrottlingException", "Throttling", "ThrottledException", "Throttled",
  "RequestThrottled", "RequestThrottledException", "KMSThrottlingException",
  "KmsThrottled", "SlowDown", "TooManyRequestsException", NULL
};

static const char *const retry_codes[] = {
  "ServiceUnavailable", "ServiceUnavailableException", "InternalError",
  "InternalErrorException", "InternalFailure", "RequestTimeout",
  "RequestTimeoutException", NULL
};

static const char *const not_found_codes[] = {
  "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
  "NonExistentQueue", "NotFound", "NotFoundException",
  "ResourceNotFoundException", NULL
};

static int in_list(const char *code, const char *const *list) {
  for (; code != NULL && *list != NULL; list++)
    if (strcmp(code, *list) == 0)
      return 1;
  return 0;
}

void cf__aws_classify(cf__aws_result *r) {
  int net = r->error == CF_ERR_IO || r->error == CF_ERR_TIMEOUT ||
            r->error == CF_ERR_NOMEM;

  r->throttled = r->status == 429 || in_list(r->code, throttle_codes);
  r->retryable = r->error != CF_OK &&
                 (net || r->status >= 500 || r->throttled ||
                  in_list(r->code, retry_codes));
  r->not_found = in_list(r->code, not_found_codes);
  if (r->error == CF_OK)
    r->throttled = r->not_found = 0;
}

/* ---- reply parsing ------------------------------------------------------ */

static void set_code(cf__aws_reply *rep, const char *code) {
  const char *hash = strrchr(code, '#');
  /* "com.amazonaws.sqs#QueueDoesNotExist" -> "QueueDoesNotExist" */
  snprintf(rep->code_, sizeof(rep->code_), "%s",
           hash != NULL ? hash + 1 : code);
  /* Some JSON errors carry ":<url>" after the code (X-Amzn-ErrorType
   * style); the code is what comes before. */
  rep->code_[strcspn(rep->code_, ":")] = '\0';
}

static void set_message(cf__aws_reply *rep, const char *msg) {
  snprintf(rep->message_, sizeof(rep->message_), "%s", msg);
}

static int is_blank(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
      return 0;
  return 1;
}

static const char *json_str(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

static void sqs_error(cf__aws_reply *rep, const cf__http_resp *resp) {
  json_t *doc = json_loadb(resp->body, resp->body_len, 0, NULL);
  const char *code = NULL, *msg = NULL;

  if (json_is_object(doc)) {
    code = json_str(doc, "__type");
    if (code == NULL)
      code = json_str(doc, "code");
    msg = json_str(doc, "message");
    if (msg == NULL)
      msg = json_str(doc, "Message");
  }
  if (code != NULL)
    set_code(rep, code);
  if (msg != NULL)
    set_message(rep, msg);
  json_decref(doc);
}

static void sqs_parse(cf__aws_reply *rep, const cf__http_resp *resp) {
  cf__aws_result *r = &rep->r;

  if (resp->status < 200 || resp->status > 299) {
    r->error = CF_ERR_BACKEND;
    sqs_error(rep, resp);
    return;
  }
  /* Some actions answer 200 with no body at all. */
  if (is_blank(resp->body, resp->body_len)) {
    rep->doc_ = json_object();
  } else {
    rep->doc_ = json_loadb(resp->body, resp->body_len, 0, NULL);
    if (!json_is_object(rep->doc_)) {
      r->error = CF_ERR_PARSE;
      set_message(rep, "unreadable SQS response");
      return;
    }
  }
  if (rep->doc_ == NULL) {
    r->error = CF_ERR_NOMEM;
    return;
  }
  r->data = rep->doc_;
}

static void sns_parse(cf__aws_reply *rep, const cf__http_resp *resp,
                      const cf_mem *mem) {
  cf__aws_result *r = &rep->r;
  int ok = resp->status >= 200 && resp->status <= 299;
  cf__aws_xml_reply x;
  int rc = cf__aws_xml_reply_parse(resp->body, resp->body_len, mem, &x);

  if (rc != CF_OK) {
    cf__aws_xml_reply_deinit(&x);
    r->error = !ok ? CF_ERR_BACKEND : rc;
    if (ok)
      set_message(rep, rc == CF_ERR_NOMEM ? "out of memory"
                                          : "unreadable SNS response");
    return;
  }
  if (x.is_error || !ok) {
    r->error = CF_ERR_BACKEND;
    set_code(rep, x.code);
    set_message(rep, x.message);
    cf__aws_xml_reply_deinit(&x);
    return;
  }
  /* Keep the converted document, drop the parser's wrapper. */
  rep->doc_ = x.doc;
  rep->empty_ = x.empty_;
  r->data = x.data;
}

void cf__aws_reply_parse(cf__aws_reply *rep, int proto,
                         const cf__http_resp *resp, const cf_mem *mem) {
  cf__aws_result *r = &rep->r;

  memset(rep, 0, sizeof(*rep));
  r->code = rep->code_;
  r->message = rep->message_;
  r->status = resp->status;
  if (resp->error != CF_OK) {
    r->error = resp->error;
    set_message(rep, resp->errmsg != NULL ? resp->errmsg : "");
  } else if (proto == CF__AWS_PROTO_SNS) {
    sns_parse(rep, resp, mem);
  } else {
    sqs_parse(rep, resp);
  }
  if (r->error == CF_ERR_BACKEND && rep->message_[0] == '\0')
    snprintf(rep->message_, sizeof(rep->message_), "HTTP status %ld",
             resp->status);
  if (r->error != CF_OK)
    r->data = NULL;
  cf__aws_classify(r);
}

void cf__aws_reply_deinit(cf__aws_reply *rep) {
  if (rep == NULL)
    return;
  json_decref(rep->doc_);
  json_decref(rep->empty_);
  rep->doc_ = rep->empty_ = NULL;
  rep->r.data = NULL;
}

/* ---- request bodies ----------------------------------------------------- */

static int action_ok(const char *action) {
  size_t i;
  if (action == NULL || action[0] == '\0')
    return 0;
  for (i = 0; action[i] != '\0'; i++)
    if (i >= MAX_ACTION ||
        !((action[i] >= 'A' && action[i] <= 'Z') ||
          (action[i] >= 'a' && action[i] <= 'z') ||
          (action[i] >= '0' && action[i] <= '9')))
      return 0;
  return 1;
}

/* Appends "&name=value" (the '&' unless first) encoded; with dst NULL
 * only counts. Returns the bytes it (would) write. */
static size_t form_pair(char *dst, const char *name, const char *value,
                        int first) {
  size_t n = 0, k = 0;

  if (!first) {
    if (dst != NULL)
      dst[0] = '&';
    n = 1;
  }
  cf__sqs_sign_uri_encode(name, strlen(name), 0, NULL, 0, &k);
  if (dst != NULL)
    cf__sqs_sign_uri_encode(name, strlen(name), 0, dst + n, k + 1, &k);
  n += k;
  if (dst != NULL)
    dst[n] = '=';
  n++;
  cf__sqs_sign_uri_encode(value, strlen(value), 0, NULL, 0, &k);
  if (dst != NULL)
    cf__sqs_sign_uri_encode(value, strlen(value), 0, dst + n, k + 1, &k);
  return n + k;
}

int cf__aws_form_encode(const char *action, const cf__aws_param *params,
                        size_t n, const cf_mem *mem, char **out,
                        size_t *out_len) {
  cf_mem m;
  size_t i, len, pos;
  char *buf;

  if (out != NULL)
    *out = NULL;
  if (!action_ok(action) || (n > 0 && params == NULL) || out == NULL ||
      out_len == NULL)
    return CF_ERR_INVALID;
  len = form_pair(NULL, "Action", action, 1) +
        form_pair(NULL, "Version", SNS_VERSION, 0);
  for (i = 0; i < n; i++) {
    if (params[i].name == NULL || params[i].name[0] == '\0' ||
        params[i].value == NULL)
      return CF_ERR_INVALID;
    /* Each byte encodes to at most 3: stop before the sum can overflow. */
    if (strlen(params[i].name) + strlen(params[i].value) >
        CF__AWS_MAX_BODY)
      return CF_ERR_TOO_BIG;
    len += form_pair(NULL, params[i].name, params[i].value, 0);
    if (len > CF__AWS_MAX_BODY)
      return CF_ERR_TOO_BIG;
  }
  cf__mem_init(&m, mem);
  if ((buf = cf__malloc(&m, len + 1)) == NULL)
    return CF_ERR_NOMEM;
  pos = form_pair(buf, "Action", action, 1);
  pos += form_pair(buf + pos, "Version", SNS_VERSION, 0);
  for (i = 0; i < n; i++)
    pos += form_pair(buf + pos, params[i].name, params[i].value, 0);
  buf[pos] = '\0';
  *out = buf;
  *out_len = pos;
  return CF_OK;
}

/* Serializes params with jansson into our own allocator. */
static int sqs_body(json_t *params, const cf_mem *m, char **out,
                    size_t *len) {
  json_t *empty = NULL;
  size_t n;
  char *buf;

  if (params == NULL && (params = empty = json_object()) == NULL)
    return CF_ERR_NOMEM;
  n = json_dumpb(params, NULL, 0, JSON_COMPACT);
  if (n == 0 || n > CF__AWS_MAX_BODY) {
    json_decref(empty);
    return n == 0 ? CF_ERR_INVALID : CF_ERR_TOO_BIG;
  }
  if ((buf = cf__malloc(m, n + 1)) == NULL) {
    json_decref(empty);
    return CF_ERR_NOMEM;
  }
  json_dumpb(params, buf, n, JSON_COMPACT);
  buf[n] = '\0';
  json_decref(empty);
  *out = buf;
  *len = n;
  return CF_OK;
}

/* ---- endpoints ---------------------------------------------------------- */

static int copy_piece(char *dst, size_t size, const char *src, size_t n) {
  if (n >= size)
    return CF_ERR_TOO_BIG;
  memcpy(dst, src, n);
  dst[n] = '\0';
  return CF_OK;
}

/* Finds where the port starts in an authority (after ':'), or NULL. */
static const char *port_of(const char *auth, size_t n) {
  const char *p = auth + n;
  if (auth[0] == '[') {
    const char *close = memchr(auth, ']', n);
    if (close == NULL)
      return auth; /* signals a malformed literal */
    return close + 1 < p && close[1] == ':' ? close + 2 : NULL;
  }
  while (p > auth && p[-1] != ':')
    p--;
  return p > auth ? p : NULL;
}

static int is_default_port(const char *port, size_t n, int https) {
  return (n == 2 && memcmp(port, "80", 2) == 0 && !https) ||
         (n == 3 && memcmp(port, "443", 3) == 0 && https);
}

int cf__aws_endpoint_split(const char *url, char *host, size_t host_size,
                           char *path, size_t path_size) {
  const char *auth, *end, *port;
  size_t alen, hlen, plen;
  int https, rc;

  if (url == NULL || host == NULL || path == NULL)
    return CF_ERR_INVALID;
  if (strncasecmp(url, "https://", 8) == 0)
    https = 1;
  else if (strncasecmp(url, "http://", 7) == 0)
    https = 0;
  else
    return CF_ERR_INVALID;
  auth = url + (https ? 8 : 7);
  alen = strcspn(auth, "/?#");
  end = auth + alen;
  if (alen == 0 || *end == '?' || *end == '#' || memchr(auth, '@', alen) ||
      strpbrk(url, " \t\r\n") != NULL)
    return CF_ERR_INVALID;
  port = port_of(auth, alen);
  if (port == auth || (port != NULL && port == end))
    return CF_ERR_INVALID;
  hlen = alen;
  if (port != NULL && is_default_port(port, (size_t)(end - port), https))
    hlen = (size_t)(port - 1 - auth);
  if ((rc = copy_piece(host, host_size, auth, hlen)) != CF_OK)
    return rc;
  /* The path of the base URL, without trailing slashes, then "/". */
  plen = strlen(end);
  while (plen > 0 && end[plen - 1] == '/')
    plen--;
  if (plen + 2 > path_size)
    return CF_ERR_TOO_BIG;
  memcpy(path, end, plen);
  path[plen] = '/';
  path[plen + 1] = '\0';
  return CF_OK;
}

static int endpoint_init(endpoint *e, const char *base, const char *service,
                         const cf_mem *m) {
  size_t n;
  int rc;

  e->service = service;
  cf__sqs_sign_cache_init(&e->cache);
  if (base == NULL)
    return CF_ERR_INVALID;
  rc = cf__aws_endpoint_split(base, e->host, sizeof(e->host), e->path,
                              sizeof(e->path));
  if (rc != CF_OK)
    return CF_ERR_INVALID;
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/')
    n--;
  if ((e->url = cf__malloc(m, n + 2)) == NULL)
    return CF_ERR_NOMEM;
  memcpy(e->url, base, n);
  memcpy(e->url + n, "/", 2);
  return CF_OK;
}

static void endpoint_deinit(endpoint *e, const cf_mem *m) {
  cf__sqs_sign_cache_deinit(&e->cache);
  cf__free(m, e->url);
  e->url = NULL;
}

/* ---- client ------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *msg) {
  if (err != NULL && errlen > 0)
    snprintf(err, errlen, "%s", msg);
}

int cf__aws_new(cf__aws **out, const cf_loop *loop,
                const cf__aws_overrides *ov, char *const *envp,
                const cf_mem *mem, char *err, size_t errlen) {
  cf_mem m;
  cf__aws *a;
  int rc;

  set_err(err, errlen, "");
  if (out == NULL || cf_loop_check(loop) != CF_OK) {
    set_err(err, errlen, "aws: no event loop");
    return CF_ERR_INVALID;
  }
  *out = NULL;
  cf__mem_init(&m, mem);
  if ((a = cf__calloc(&m, 1, sizeof(*a))) == NULL)
    return CF_ERR_NOMEM;
  a->mem = m;
  a->loop = *loop;
  rc = cf__aws_config_load(&a->cfg, ov, envp, &a->mem, err, errlen);
  if (rc != CF_OK)
    goto fail;
  a->has_cfg = 1;
  if ((rc = endpoint_init(&a->sqs, a->cfg.endpoint_sqs, "sqs", &a->mem)) !=
          CF_OK ||
      (rc = endpoint_init(&a->sns, a->cfg.endpoint_sns, "sns", &a->mem)) !=
          CF_OK) {
    set_err(err, errlen, rc == CF_ERR_NOMEM ? "aws: out of memory"
                                            : "aws: bad endpoint URL");
    goto fail;
  }
  if ((rc = cf__http_new(&a->http, &a->loop, &a->mem)) != CF_OK) {
    set_err(err, errlen, "aws: cannot set up the HTTP client");
    goto fail;
  }
  rc = cf__aws_creds_new(&a->creds, a->cfg.profile, envp, a->http,
                         &a->loop, &a->mem, err, errlen);
  if (rc != CF_OK)
    goto fail;
  *out = a;
  return CF_OK;
fail:
  cf__aws_free(a);
  return rc;
}

void cf__aws_free(cf__aws *a) {
  if (a == NULL)
    return;
  /* The provider may have transfers on http: it goes first. */
  if (a->creds != NULL)
    cf__aws_creds_free(a->creds);
  cf__http_free(a->http);
  endpoint_deinit(&a->sns, &a->mem);
  endpoint_deinit(&a->sqs, &a->mem);
  if (a->has_cfg)
    cf__aws_config_deinit(&a->cfg, &a->mem);
  cf__free(&a->mem, a);
}

int cf__aws_start(cf__aws *a, cf__aws_creds_cb cb, void *user_data) {
  if (a == NULL)
    return CF_ERR_INVALID;
  return cf__aws_creds_start(a->creds, cb, user_data);
}

int cf__aws_ready(const cf__aws *a) {
  return a != NULL && cf__aws_creds_get(a->creds) != NULL;
}

const cf__aws_config *cf__aws_get_config(const cf__aws *a) {
  return a != NULL ? &a->cfg : NULL;
}

void cf__aws_get_stats(const cf__aws *a, cf__aws_stats *st) {
  if (st == NULL)
    return;
  if (a == NULL)
    memset(st, 0, sizeof(*st));
  else
    *st = a->stats;
}

/* ---- one call ------------------------------------------------------------ */

static void on_http_done(const cf__http_resp *resp, void *ud) {
  call_ctx *c = ud;
  cf__aws *a = c->a;
  cf__aws_reply rep;

  cf__aws_reply_parse(&rep, c->proto, resp, &a->mem);
  if (rep.r.error != CF_OK) {
    a->stats.errors++;
    if (rep.r.throttled)
      a->stats.throttled++;
  }
  /* a may be freed by the callback: nothing below uses it. */
  c->cb(&rep.r, c->user_data);
  cf__aws_reply_deinit(&rep);
}

/* "Name: value" lines for the transfer, in one allocation. */
typedef struct hdr_set {
  const char *line[6];
  size_t n;
  char *buf;
} hdr_set;

static int hdr_build(hdr_set *hs, const cf_mem *m, const char *const *pairs,
                     size_t npairs) {
  size_t i, len = 0, pos = 0;

  for (i = 0; i < npairs; i++)
    len += strlen(pairs[2 * i]) + strlen(pairs[2 * i + 1]) + 3;
  if ((hs->buf = cf__malloc(m, len)) == NULL)
    return CF_ERR_NOMEM;
  for (i = 0; i < npairs; i++) {
    hs->line[i] = hs->buf + pos;
    pos += (size_t)sprintf(hs->buf + pos, "%s: %s", pairs[2 * i],
                           pairs[2 * i + 1]) + 1;
  }
  hs->n = npairs;
  return CF_OK;
}

static int sign(cf__aws *a, endpoint *e, const cf__aws_creds *cr,
                const cf__sqs_sign_header *sh, size_t nsh, const char *body,
                size_t len, char *auth, char *date) {
  cf__sqs_sign_req r;
  cf__sqs_sign_creds sc;
  cf__sqs_sign_out o;
  int rc;

  memset(&r, 0, sizeof(r));
  memset(&o, 0, sizeof(o));
  r.method = "POST";
  r.host = e->host;
  r.path = e->path;
  r.headers = sh;
  r.nheaders = nsh;
  r.payload = body;
  r.payload_len = len;
  r.region = a->cfg.region;
  r.service = e->service;
  /* Wall clock: the signature's date. > 0: truncation floors. */
  r.time = (time_t)a->loop.now(a->loop.data);
  sc.access_key_id = cr->access_key_id;
  sc.secret_key = cr->secret_key;
  sc.session_token = cr->session_token;
  o.authorization = auth;
  o.authorization_size = AUTH_SIZE;
  rc = cf__sqs_sign(&r, &sc, &e->cache, &o);
  if (rc == CF_OK)
    memcpy(date, o.amz_date, sizeof(o.amz_date));
  return rc == CF_ERR_TOO_BIG || rc == CF_ERR_LIMIT ? CF_ERR_INVALID : rc;
}

/* Signs and sends body; target is NULL for SNS. */
static int call_start(cf__aws *a, int proto, const char *target,
                      const char *body, size_t len, double timeout,
                      cf__aws_cb cb, void *user_data, cf__http_xfer **xfer) {
  endpoint *e = proto == CF__AWS_PROTO_SNS ? &a->sns : &a->sqs;
  const char *ctype = proto == CF__AWS_PROTO_SNS ? SNS_CTYPE : SQS_CTYPE;
  const cf__aws_creds *cr = cf__aws_creds_get(a->creds);
  cf__sqs_sign_header sh[2] = {{"Content-Type", ctype},
                               {"X-Amz-Target", target}};
  char auth[AUTH_SIZE], date[CF__SQS_SIGN_DATE_LEN + 1];
  const char *pairs[12];
  size_t np = 0;
  hdr_set hs;
  cf__http_req req;
  call_ctx *c;
  void *ctx;
  int rc;

  if (cr == NULL)
    return CF_ERR_STATE;
  rc = sign(a, e, cr, sh, target != NULL ? 2 : 1, body, len, auth, date);
  if (rc != CF_OK)
    return rc;
#define PAIR(k, v) (pairs[np++] = (k), pairs[np++] = (v))
  PAIR("Host", e->host);
  PAIR("X-Amz-Date", date);
  PAIR("Authorization", auth);
  PAIR("Content-Type", ctype);
  if (target != NULL)
    PAIR("X-Amz-Target", target);
  if (cr->session_token != NULL && cr->session_token[0] != '\0')
    PAIR("X-Amz-Security-Token", cr->session_token);
#undef PAIR
  if ((rc = hdr_build(&hs, &a->mem, pairs, np / 2)) != CF_OK)
    return rc;
  memset(&req, 0, sizeof(req));
  req.method = "POST";
  req.url = e->url;
  req.headers = hs.line;
  req.nheaders = hs.n;
  req.body = body;
  req.body_len = len;
  req.timeout = timeout;
  if (proto == CF__AWS_PROTO_SQS)
    req.max_body = CF__AWS_SQS_MAX_REPLY;
  rc = cf__http_send_ctx(a->http, &req, on_http_done, sizeof(call_ctx),
                         &ctx, xfer);
  cf__free(&a->mem, hs.buf);
  if (rc != CF_OK)
    return rc;
  c = ctx;
  c->a = a;
  c->proto = proto;
  c->cb = cb;
  c->user_data = user_data;
  a->stats.requests++;
  return CF_OK;
}

static int timeout_ok(double t) {
  return t >= 0.0 && t <= 3600.0; /* also false for NaN */
}

int cf__aws_sqs(cf__aws *a, const char *action, json_t *params,
                double timeout, cf__aws_cb cb, void *user_data,
                cf__http_xfer **xfer) {
  char target[sizeof("AmazonSQS.") + MAX_ACTION];
  char *body;
  size_t len;
  int rc;

  if (xfer != NULL)
    *xfer = NULL;
  if (a == NULL || cb == NULL || !action_ok(action) || !timeout_ok(timeout) ||
      (params != NULL && !json_is_object(params)))
    return CF_ERR_INVALID;
  if (cf__aws_creds_get(a->creds) == NULL)
    return CF_ERR_STATE;
  snprintf(target, sizeof(target), "AmazonSQS.%s", action);
  if ((rc = sqs_body(params, &a->mem, &body, &len)) != CF_OK)
    return rc;
  rc = call_start(a, CF__AWS_PROTO_SQS, target, body, len, timeout, cb,
                  user_data, xfer);
  cf__free(&a->mem, body);
  return rc;
}

int cf__aws_sns(cf__aws *a, const char *action, const cf__aws_param *params,
                size_t n, double timeout, cf__aws_cb cb, void *user_data,
                cf__http_xfer **xfer) {
  char *body;
  size_t len;
  int rc;

  if (xfer != NULL)
    *xfer = NULL;
  if (a == NULL || cb == NULL || !timeout_ok(timeout))
    return CF_ERR_INVALID;
  if (cf__aws_creds_get(a->creds) == NULL)
    return CF_ERR_STATE;
  rc = cf__aws_form_encode(action, params, n, &a->mem, &body, &len);
  if (rc != CF_OK)
    return rc;
  rc = call_start(a, CF__AWS_PROTO_SNS, NULL, body, len, timeout, cb,
                  user_data, xfer);
  cf__free(&a->mem, body);
  return rc;
}
