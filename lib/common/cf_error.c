#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>
#include <chatfanout/cf_version.h>

const char *cf_strerror(int code) {
  switch (code) {
  case CF_OK: return "success";
  case CF_ERR_INVALID: return "invalid argument";
  case CF_ERR_TOO_BIG: return "too big";
  case CF_ERR_VERSION: return "unsupported struct version";
  case CF_ERR_LIMIT: return "limit reached";
  case CF_ERR_NOT_FOUND: return "not found";
  case CF_ERR_EXISTS: return "already exists";
  case CF_ERR_STATE: return "invalid state";
  case CF_ERR_CLOSED: return "closed";
  case CF_ERR_NOMEM: return "out of memory";
  case CF_ERR_QUEUE_FULL: return "queue full";
  case CF_ERR_IO: return "I/O error";
  case CF_ERR_TIMEOUT: return "timed out";
  case CF_ERR_BACKEND: return "queue backend error";
  case CF_ERR_PARSE: return "parse error";
  case CF_ERR_CALLBACK: return "callback failure";
  default: return "unknown error";
  }
}

int cf_is_fatal(int code) {
  return code < CF_ERR_FATAL;
}

uint32_t cf_version(void) {
  return CF_VERSION_HEX;
}

const char *cf_version_string(void) {
  return CF_VERSION_STRING;
}

int cf_loop_check(const cf_loop *l) {
  if (l == NULL)
    return CF_ERR_INVALID;
  if (l->version != CF_LOOP_VERSION)
    return CF_ERR_VERSION;
  if (!l->io_new || !l->io_set || !l->io_free || !l->timer_new ||
      !l->timer_set || !l->timer_free || !l->now)
    return CF_ERR_INVALID;
  return CF_OK;
}
