/*
 * Internal to the credentials chain: the provider's state, shared by
 * cf_aws_creds.c (choosing the source, static credentials, lifecycle)
 * and cf_aws_creds_fetch.c (container and IMDSv2 fetches, refresh and
 * retry).
 */
#ifndef CF_AWS_CREDS_INT_H
#define CF_AWS_CREDS_INT_H

#include "cf_aws_config.h"

#define CF__AWS_KEY_MAX 256     /* access key id and secret, bytes */
#define CF__AWS_TOKEN_MAX 65536 /* session token, bytes */
#define CF__AWS_AUTH_MAX 16384  /* container authorization token, bytes */
#define CF__AWS_ROLE_MAX 64     /* IAM role name */
#define CF__AWS_RETRY_FIRST 1.0 /* first retry delay, seconds */

enum {
  CF__AWS_SRC_ENV,
  CF__AWS_SRC_FILE,
  CF__AWS_SRC_CONTAINER,
  CF__AWS_SRC_IMDS
};

/* One set of credentials; every string is owned and wiped on clear. */
typedef struct cf__aws_cset {
  char *id;
  char *secret;
  char *token;    /* NULL when none */
  double expires; /* epoch seconds; 0: does not expire */
} cf__aws_cset;

struct cf__aws_creds_provider {
  cf_mem mem;
  cf_loop loop;
  cf__http *http;     /* NULL for static sources */
  int source;         /* CF__AWS_SRC_*, fixed at creation */
  cf__aws_cset cur;   /* what get() returns; id NULL when none */
  cf__aws_cset prev;  /* the set before, kept one change longer so a
                         pointer from get() outlives its iteration */
  cf__aws_creds view; /* cur seen through the public struct */
  char *url;          /* container URL or IMDS base URL */
  char *auth;         /* AWS_CONTAINER_AUTHORIZATION_TOKEN (secret) */
  char *auth_file;    /* AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE */
  char *imds_token;   /* IMDS session token of this fetch (secret) */
  char role[CF__AWS_ROLE_MAX + 1]; /* IMDS role of this fetch */
  int step;                        /* the fetch step in flight; 0 idle */
  cf__http_xfer *xfer;             /* the request in flight, or NULL */
  void *timer;                     /* start, refresh and retry */
  double retry;                    /* delay of the next retry, seconds */
  cf__aws_creds_cb cb;
  void *user_data;
  int started;
  int in_cb; /* inside cb: free is deferred */
  int free_pending;
  char msg[256]; /* detail of the last failure */
};

/* A NUL-terminated copy of n bytes of s, or NULL. */
char *cf__aws_sdup(const cf_mem *m, const char *s, size_t n);

/* Wipes, frees and NULLs *s (accepts NULL). */
void cf__aws_wipe_free(const cf_mem *m, char **s);

void cf__aws_cset_clear(const cf_mem *m, cf__aws_cset *c);

/* 1 to max printable characters, no space (keys, secrets, tokens). */
int cf__aws_value_ok(const char *s, size_t max);

/* 1 to max characters, no control character (header values). */
int cf__aws_line_ok(const char *s, size_t max);

/*
 * Checks and copies a set. On CF_ERR_INVALID *bad is the name (from
 * names: id, secret, token) of the bad value, never the value. CF_OK,
 * CF_ERR_INVALID, CF_ERR_NOMEM (c left empty).
 */
int cf__aws_cset_fill(const cf_mem *m, cf__aws_cset *c, const char *id,
                      const char *secret, const char *token,
                      const char *const names[3], const char **bad);

/* Points p->view at p->cur. */
void cf__aws_creds_view(cf__aws_creds_provider *p);

/* Calls the user's callback, last thing in every path: a free from
 * inside it is carried out when it returns, so p may be gone after. */
void cf__aws_creds_report(cf__aws_creds_provider *p, int error,
                          const char *msg);

/* Begins a container or IMDS fetch (the timer fired). Its outcome is
 * reported, and the timer re-armed for the refresh or the retry. */
void cf__aws_creds_fetch(cf__aws_creds_provider *p);

#endif /* CF_AWS_CREDS_INT_H */
