/*
 * chatfanoutd logging. Each line is built in a stack buffer and written
 * with one write(2): lines of at most PIPE_BUF bytes never interleave
 * when several processes share a pipe, and nothing is allocated, so
 * logging still works when memory runs out.
 *
 * The log must never stall the event loop, even when nobody reads the
 * pipe or socket stderr goes to: a line that cannot be written at once
 * is dropped and counted. O_NONBLOCK is never set on the descriptor we
 * were given, because its open file description is shared with the
 * parent and siblings (a shell, a supervisor) that expect blocking
 * writes. Instead (see out_choose): a socket gets MSG_DONTWAIT per
 * send; a pipe or FIFO is reopened through /proc/self/fd, which makes a
 * new open file description of our own that can be non-blocking; when
 * that fails, and for terminals and other devices, poll() with a zero
 * timeout checks for room first (a pipe that polls writable takes a
 * PIPE_BUF write without blocking). Regular files are written plainly.
 */
#include "cfd_log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum out_mode {
  OUT_PLAIN, /* write(2): regular files, or already non-blocking */
  OUT_SOCK,  /* send(2) with MSG_DONTWAIT */
  OUT_POLL   /* poll(2) for room, then write(2) */
};

static struct {
  int level;
  int format;
  int fd;          /* where lines go, as set; not owned */
  int out;         /* what is written to: fd or our reopen; -1: unset */
  int own;         /* out is our reopen of fd, closed on a change */
  int mode;        /* enum out_mode */
  uint64_t dropped;/* lines not written (or not whole), ever */
  /* The end of a line a stream socket took only the start of; it goes
   * out before any later line, so the stream stays whole lines. */
  size_t carry_len;
  char carry[CFD_LOG_LINE_MAX];
} g_log = {CFD_LOG_INFO, CFD_LOG_TEXT, 2, -1, 0, OUT_PLAIN, 0, 0, {0}};

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int clamp_level(int level) {
  if (level < CFD_LOG_ERROR)
    return CFD_LOG_ERROR;
  return level > CFD_LOG_DEBUG ? CFD_LOG_DEBUG : level;
}

/* ---- output ----------------------------------------------------------- */

/* Picks how g_log.fd is written without ever blocking; see the top. */
static void out_choose(void) {
  struct stat st;
  char path[64];
  int fl, fd;
  g_log.out = g_log.fd;
  g_log.own = 0;
  g_log.mode = OUT_PLAIN;
  g_log.carry_len = 0;
  if (g_log.fd < 0 || fstat(g_log.fd, &st) != 0 || S_ISREG(st.st_mode))
    return;
  if (S_ISSOCK(st.st_mode)) {
    g_log.mode = OUT_SOCK;
    return;
  }
  fl = fcntl(g_log.fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK))
    return;
  if (S_ISFIFO(st.st_mode)) {
    snprintf(path, sizeof path, "/proc/self/fd/%d", g_log.fd);
    fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
      g_log.out = fd;
      g_log.own = 1;
      return;
    }
  }
  g_log.mode = OUT_POLL;
}

static void out_release(void) {
  if (g_log.own)
    close(g_log.out);
  g_log.out = -1;
  g_log.own = 0;
  g_log.carry_len = 0;
}

/* One write that does not block: bytes written, or -1 (errno set). */
static ssize_t out_write(const char *p, size_t n) {
  struct pollfd pfd;
  ssize_t w;
  do {
    if (g_log.mode == OUT_SOCK) {
      w = send(g_log.out, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    } else if (g_log.mode == OUT_POLL) {
      pfd.fd = g_log.out;
      pfd.events = POLLOUT;
      pfd.revents = 0;
      w = poll(&pfd, 1, 0);
      if (w == 0) {
        errno = EAGAIN;
        w = -1;
      } else if (w > 0) {
        w = write(g_log.out, p, n);
      }
    } else {
      w = write(g_log.out, p, n);
    }
  } while (w < 0 && errno == EINTR);
  return w;
}

/* Sends what is left of an earlier line; 0 once nothing is left. */
static int carry_flush(void) {
  ssize_t w;
  if (g_log.carry_len == 0)
    return 0;
  w = out_write(g_log.carry, g_log.carry_len);
  if (w <= 0)
    return -1;
  g_log.carry_len -= (size_t)w;
  memmove(g_log.carry, g_log.carry + w, g_log.carry_len);
  return g_log.carry_len == 0 ? 0 : -1;
}

static void write_line(const char *p, size_t n) {
  ssize_t w;
  if (g_log.out < 0 && g_log.fd >= 0)
    out_choose();
  if (carry_flush() != 0) {
    g_log.dropped++;
    return;
  }
  w = out_write(p, n);
  if (w < 0) {
    g_log.dropped++; /* full, or nowhere to write: never block or spin */
    return;
  }
  if ((size_t)w < n) {
    g_log.carry_len = n - (size_t)w;
    memcpy(g_log.carry, p + w, g_log.carry_len);
  }
}

void cfd_log_setup(int level, int format) {
  g_log.level = clamp_level(level);
  g_log.format = format == CFD_LOG_JSON ? CFD_LOG_JSON : CFD_LOG_TEXT;
  if (g_log.out < 0 && g_log.fd >= 0)
    out_choose();
}

void cfd_log_set_fd(int fd) {
  out_release();
  g_log.fd = fd;
  if (fd >= 0)
    out_choose();
}

uint64_t cfd_log_dropped(void) { return g_log.dropped; }

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
  write_line(l.buf, l.len);
  errno = saved;
}
