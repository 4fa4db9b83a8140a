/*
 * chatfanoutd logging. Each line is built in a stack buffer and written
 * with one write(2): lines of at most PIPE_BUF bytes never interleave
 * when several processes share a pipe, and nothing is allocated, so
 * logging still works when memory runs out.
 */
#include "cfd_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static struct {
  int level;
  int format;
  int fd;
} g_log = {CFD_LOG_INFO, CFD_LOG_TEXT, 2};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int clamp_level(int level) {
  if (level < CFD_LOG_ERROR)
    return CFD_LOG_ERROR;
  return level > CFD_LOG_DEBUG ? CFD_LOG_DEBUG : level;
}

void cfd_log_setup(int level, int format) {
  g_log.level = clamp_level(level);
  g_log.format = format == CFD_LOG_JSON ? CFD_LOG_JSON : CFD_LOG_TEXT;
}

void cfd_log_set_fd(int fd) { g_log.fd = fd; }

int cfd_log_enabled(int level) { return clamp_level(level) <= g_log.level; }

int cfd_log_level_parse(const char *s) {
  int i;
  if (s == NULL)
    return -1;
  for (i = CFD_LOG_ERROR; i <= CFD_LOG_DEBUG; i++)
    if (strcasecmp(s, level_names[i]) == 0)
      return i;
  return -1;
}

int cfd_log_format_parse(const char *s) {
  if (s == NULL)
    return -1;
  if (strcasecmp(s, "text") == 0)
    return CFD_LOG_TEXT;
  if (strcasecmp(s, "json") == 0)
    return CFD_LOG_JSON;
  return -1;
}

/* ---- UTF-8 ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at p (1-4), 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned cp;
  size_t len, i;
  if (p[0] < 0x80)
    return 1;
  if (p[0] >= 0xc2 && p[0] <= 0xdf) {
    len = 2;
    cp = p[0] & 0x1fu;
  } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
    len = 3;
    cp = p[0] & 0x0fu;
  } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
    len = 4;
    cp = p[0] & 0x07u;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3fu);
  }
  /* Overlong forms, UTF-16 surrogates and values past U+10FFFF. */
  if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return len;
}

/* ---- escaping ---------------------------------------------------------- */

enum esc_mode {
  ESC_JSON,        /* inside a JSON string */
  ESC_TEXT_QUOTED, /* inside a quoted text value */
  ESC_TEXT_BARE,   /* an unquoted text value: needs_quote() was false */
  ESC_TEXT_KEY     /* a text key: anything odd becomes '_' */
};

static int key_char(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
         (c >= 'A' && c <= 'Z') || c == '_' || c == '.' || c == '-';
}

/* Does a text value need quotes to read back unambiguously? */
static int needs_quote(const char *s, size_t n) {
  size_t i = 0, u;
  if (n == 0)
    return 1;
  while (i < n) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f || c == '"' || c == '=' || c == '\\')
      return 1;
    if ((u = utf8_len((const unsigned char *)s + i, n - i)) == 0)
      return 1;
    i += u;
  }
  return 0;
}

static size_t hex_escape(char *out, const char *fmt, unsigned char c) {
  static const char hex[] = "0123456789abcdef";
  size_t n = strlen(fmt);
  memcpy(out, fmt, n);
  out[n] = hex[c >> 4];
  out[n + 1] = hex[c & 15];
  return n + 2;
}

/*
 * Escapes the unit (byte or UTF-8 sequence) at s into out (>= 8 bytes);
 * returns the input bytes consumed and sets *olen.
 */
static size_t escape_unit(int mode, const char *s, size_t n, char *out,
                          size_t *olen) {
  unsigned char c = (unsigned char)*s;
  const char *short_esc = NULL;
  size_t u = utf8_len((const unsigned char *)s, n);
  if (mode == ESC_TEXT_KEY) {
    out[0] = key_char(c) ? (char)c : '_';
    *olen = 1;
    return u ? u : 1;
  }
  if (u > 1 || (u == 1 && c >= 0x20 && c != 0x7f && c != '"' && c != '\\')) {
    memcpy(out, s, u);
    *olen = u;
    return u;
  }
  switch (c) {
  case '"': short_esc = "\\\""; break;
  case '\\': short_esc = "\\\\"; break;
  case '\n': short_esc = "\\n"; break;
  case '\r': short_esc = "\\r"; break;
  case '\t': short_esc = "\\t"; break;
  case '\b': short_esc = mode == ESC_JSON ? "\\b" : NULL; break;
  case '\f': short_esc = mode == ESC_JSON ? "\\f" : NULL; break;
  default: break;
  }
  if (short_esc != NULL) {
    *olen = strlen(short_esc);
    memcpy(out, short_esc, *olen);
  } else if (mode != ESC_JSON) {
    *olen = hex_escape(out, "\\x", c);
  } else if (u == 0) { /* JSON must be UTF-8: invalid bytes become U+FFFD */
    memcpy(out, "\\ufffd", 6);
    *olen = 6;
  } else {
    *olen = hex_escape(out, "\\u00", c);
  }
  return 1;
}

/* ---- the line ----------------------------------------------------------- */

/* Kept free for "...", a closing quote, "}" and the newline. */
#define LINE_TAIL 8
#define LINE_LIMIT (CFD_LOG_LINE_MAX - LINE_TAIL)

typedef struct line {
  char buf[CFD_LOG_LINE_MAX];
  size_t len;
  int full; /* something was cut for lack of room: add no more fields */
} line;

/* Appends within LINE_LIMIT; -1 (and full) when it does not fit. */
static int put(line *l, const char *s, size_t n) {
  if (l->full || l->len > LINE_LIMIT || n > LINE_LIMIT - l->len) {
    l->full = 1;
    return -1;
  }
  memcpy(l->buf + l->len, s, n);
  l->len += n;
  return 0;
}

/* Appends into the reserved tail; callers stay within LINE_TAIL. */
static void put_tail(line *l, const char *s) {
  size_t n = strlen(s);
  if (n <= sizeof l->buf - l->len) {
    memcpy(l->buf + l->len, s, n);
    l->len += n;
  }
}

/* Writes s escaped for mode, cut with "..." past its budget. */
static void put_escaped(line *l, const char *s, int mode) {
  size_t n = strlen(s), i = 0, used, olen;
  size_t end = l->len + CFD_LOG_VALUE_MAX;
  char unit[8];
  if (end > LINE_LIMIT)
    end = LINE_LIMIT;
  while (i < n) {
    used = escape_unit(mode, s + i, n - i, unit, &olen);
    if (l->len + olen > end) {
      put_tail(l, "...");
      if (end == LINE_LIMIT)
        l->full = 1;
      return;
    }
    memcpy(l->buf + l->len, unit, olen);
    l->len += olen;
    i += used;
  }
}

static void put_text_value(line *l, const char *v) {
  if (!needs_quote(v, strlen(v))) {
    put_escaped(l, v, ESC_TEXT_BARE);
    return;
  }
  if (put(l, "\"", 1) != 0)
    return;
  put_escaped(l, v, ESC_TEXT_QUOTED);
  put_tail(l, "\"");
}

static void put_json_string(line *l, const char *s) {
  if (put(l, "\"", 1) != 0)
    return;
  put_escaped(l, s, ESC_JSON);
  put_tail(l, "\"");
}

/* Writes s escaped, whole or not at all: -1 when it does not fit. */
static int put_all(line *l, const char *s, int mode) {
  size_t n = strlen(s), i = 0, olen;
  char unit[8];
  while (i < n) {
    i += escape_unit(mode, s + i, n - i, unit, &olen);
    if (put(l, unit, olen) != 0)
      return -1;
  }
  return 0;
}

/*
 * A key is written whole or the field is dropped (a cut key would be
 * misleading, and in JSON a key needs its value); only values are cut.
 */
static void add_field(line *l, int json, const char *k, const char *v) {
  size_t mark = l->len;
  int ok;
  if (l->full)
    return;
  if (json)
    ok = put(l, ",\"", 2) == 0 && put_all(l, k, ESC_JSON) == 0 &&
         put(l, "\":", 2) == 0;
  else
    ok = put(l, " ", 1) == 0 &&
         (*k ? put_all(l, k, ESC_TEXT_KEY) : put(l, "_", 1)) == 0 &&
         put(l, "=", 1) == 0;
  /* Worth writing only with room for some of the value. */
  if (!ok || l->len + 8 > LINE_LIMIT) {
    l->len = mark;
    l->full = 1;
    return;
  }
  if (!json)
    put_text_value(l, v ? v : "");
  else if (v == NULL)
    put(l, "null", 4);
  else
    put_json_string(l, v);
}

static void put_timestamp(line *l) {
  struct timespec ts;
  struct tm tm;
  char buf[64];
  int n;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
               tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
               tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
  if (n > 0 && (size_t)n < sizeof buf)
    put(l, buf, (size_t)n);
}

static void line_start(line *l, int json, int level, const char *msg) {
  const char *name = level_names[clamp_level(level)];
  if (json) {
    put(l, "{\"ts\":\"", 7);
    put_timestamp(l);
    put(l, "\",\"level\":\"", 11);
    put(l, name, strlen(name));
    put(l, "\",\"msg\":", 8);
    put_json_string(l, msg);
    return;
  }
  put_timestamp(l);
  put(l, " ", 1);
  put(l, name, strlen(name));
  put(l, " ", 1);
  put_text_value(l, msg);
}

static void write_line(int fd, const char *p, size_t n) {
  ssize_t w;
  while (n > 0) {
    w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return; /* nowhere to report it; never block or spin */
    }
    p += w;
    n -= (size_t)w;
  }
}

void cfd_log(int level, const char *msg, ...) {
  line l;
  va_list ap;
  const char *k, *v;
  int json = g_log.format == CFD_LOG_JSON, saved = errno;
  if (!cfd_log_enabled(level))
    return;
  l.len = 0;
  l.full = 0;
  line_start(&l, json, level, msg ? msg : "");
  va_start(ap, msg);
  while ((k = va_arg(ap, const char *)) != NULL) {
    v = va_arg(ap, const char *);
    add_field(&l, json, k, v);
    if (v == NULL)
      break;
  }
  va_end(ap);
  put_tail(&l, json ? "}\n" : "\n");
  write_line(g_log.fd, l.buf, l.len);
  errno = saved;
}
