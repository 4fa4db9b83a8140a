#include "cf_aws_ini.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cf_mem.h"

extern char **environ;

/* One parsed line: a section header (key NULL) or a property. Every
 * string points into the ini's own text. */
typedef struct ini_entry {
  const char *section;
  const char *parent; /* the key a sub-property belongs to, else NULL */
  const char *key;
  const char *value;
} ini_entry;

struct cf__aws_ini {
  cf_mem mem;
  char *text;     /* the file's bytes, cut into strings in place */
  size_t text_len;
  ini_entry *e;
  size_t n, cap;
};

/* Where the parser is: which section, and whether an indented line
 * nests under the previous key or continues its value. */
typedef struct ini_state {
  const char *section;
  const char *last_key;
  int last_empty;
} ini_state;

void cf__aws_errf(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0)
    return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int is_ws(char c) { return c == ' ' || c == '\t'; }

static char *skip_ws(char *p) {
  while (is_ws(*p))
    p++;
  return p;
}

/* Cuts trailing whitespace of [s, end) and terminates it. */
static char *trim_end(char *s, char *end) {
  while (end > s && is_ws(end[-1]))
    end--;
  *end = '\0';
  return s;
}

static int ini_push(cf__aws_ini *ini, const ini_entry *en) {
  if (ini->n == ini->cap) {
    size_t cap = ini->cap ? ini->cap * 2 : 16;
    ini_entry *e = cf__realloc(&ini->mem, ini->e, cap * sizeof(*e));
    if (e == NULL)
      return CF_ERR_NOMEM;
    ini->e = e;
    ini->cap = cap;
  }
  ini->e[ini->n++] = *en;
  return CF_OK;
}

/* A value after '=': trimmed, with an inline comment removed. A '#' or
 * ';' counts as a comment only after whitespace, so "a#b" stays whole. */
static char *ini_value(char *raw) {
  char *p;
  for (p = raw; *p != '\0'; p++) {
    if ((*p == '#' || *p == ';') && p > raw && is_ws(p[-1]))
      break;
  }
  return trim_end(skip_ws(raw), p);
}

/* "[ profile   x ] # c" -> "profile x"; NULL when malformed. */
static char *ini_section(char *p) {
  char *close = strchr(p, ']'), *rest, *r, *w;
  if (close == NULL)
    return NULL;
  rest = skip_ws(close + 1);
  if (*rest != '\0' && *rest != '#' && *rest != ';')
    return NULL;
  p = trim_end(skip_ws(p + 1), close);
  if (*p == '\0')
    return NULL;
  /* SDKs split "profile   x" on whitespace: collapse runs to one. */
  for (r = w = p; *r != '\0'; r++) {
    if (is_ws(*r) && w > p && is_ws(w[-1]))
      continue;
    *w++ = is_ws(*r) ? ' ' : *r;
  }
  *w = '\0';
  return p;
}

/* A sub-property line ("  endpoint_url = x" under "sqs ="). Lines that
 * do not fit are skipped: nested blocks hold settings we never read. */
static int ini_sub(cf__aws_ini *ini, const ini_state *st, char *p) {
  char *eq = strchr(p, '=');
  ini_entry en = {st->section, st->last_key, NULL, NULL};
  if (eq == NULL)
    return CF_OK;
  en.key = trim_end(p, eq);
  if (*en.key == '\0')
    return CF_OK;
  en.value = ini_value(eq + 1);
  return ini_push(ini, &en);
}

static int ini_line(cf__aws_ini *ini, ini_state *st, char *line) {
  char *p = skip_ws(line), *eq;
  int indented = p != line;
  ini_entry en = {NULL, NULL, NULL, NULL};

  if (*p == '\0' || *p == '#' || *p == ';')
    return CF_OK;
  if (*p == '[') {
    if ((en.section = ini_section(p)) == NULL)
      return CF_ERR_PARSE;
    st->section = en.section;
    st->last_key = NULL;
    return ini_push(ini, &en);
  }
  if (indented && st->last_key != NULL)
    return st->last_empty ? ini_sub(ini, st, p) : CF_OK;
  if (st->section == NULL || (eq = strchr(p, '=')) == NULL)
    return CF_ERR_PARSE;
  en.section = st->section;
  en.key = trim_end(p, eq);
  if (*en.key == '\0')
    return CF_ERR_PARSE;
  en.value = ini_value(eq + 1);
  st->last_key = en.key;
  st->last_empty = *en.value == '\0';
  return ini_push(ini, &en);
}

/* Parses ini->text in place. */
static int ini_run(cf__aws_ini *ini, size_t *lineno) {
  char *p = ini->text, *end = ini->text + ini->text_len, *nl;
  ini_state st = {NULL, NULL, 0};
  int rc;

  /* A NUL byte would silently cut a line short: refuse it. */
  if ((nl = memchr(p, '\0', ini->text_len)) != NULL) {
    *lineno = 1;
    for (; p < nl; p++)
      *lineno += *p == '\n';
    return CF_ERR_PARSE;
  }
  *lineno = 0;
  if (ini->text_len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
    p += 3; /* a UTF-8 byte order mark from some editors */
  while (p < end) {
    nl = memchr(p, '\n', (size_t)(end - p));
    if (nl == NULL)
      nl = end;
    *nl = '\0';
    if (nl > p && nl[-1] == '\r')
      nl[-1] = '\0';
    ++*lineno;
    if ((rc = ini_line(ini, &st, p)) != CF_OK)
      return rc;
    p = nl + 1;
  }
  return CF_OK;
}

/* Takes text (len bytes plus a NUL) whatever the outcome. */
static int ini_from_buf(cf__aws_ini **out, char *text, size_t len,
                        const cf_mem *mem, size_t *line) {
  cf__aws_ini *ini;
  cf_mem m;
  size_t dummy;
  int rc;

  cf__mem_init(&m, mem);
  *out = NULL;
  if (line == NULL)
    line = &dummy;
  *line = 0;
  ini = cf__calloc(&m, 1, sizeof(*ini));
  if (ini == NULL) {
    OPENSSL_cleanse(text, len);
    cf__free(&m, text);
    return CF_ERR_NOMEM;
  }
  ini->mem = m;
  ini->text = text;
  ini->text_len = len;
  rc = ini_run(ini, line);
  if (rc != CF_OK) {
    cf__aws_ini_free(ini);
    return rc;
  }
  *line = 0;
  *out = ini;
  return CF_OK;
}

int cf__aws_ini_parse(cf__aws_ini **out, const char *text, size_t len,
                      const cf_mem *mem, size_t *line) {
  cf_mem m;
  char *copy;

  if (out == NULL || (text == NULL && len != 0))
    return CF_ERR_INVALID;
  *out = NULL;
  if (len > CF__AWS_INI_MAX)
    return CF_ERR_TOO_BIG;
  cf__mem_init(&m, mem);
  if ((copy = cf__malloc(&m, len + 1)) == NULL)
    return CF_ERR_NOMEM;
  if (len != 0)
    memcpy(copy, text, len);
  copy[len] = '\0';
  return ini_from_buf(out, copy, len, mem, line);
}

void cf__aws_ini_free(cf__aws_ini *ini) {
  if (ini == NULL)
    return;
  /* The text may hold secret keys. */
  OPENSSL_cleanse(ini->text, ini->text_len);
  cf__free(&ini->mem, ini->text);
  cf__free(&ini->mem, ini->e);
  cf__free(&ini->mem, ini);
}

static const char *read_reason(int e) {
  switch (e) {
  case EACCES:
  case EPERM:
    return "permission denied";
  case EISDIR:
    return "is a directory";
  case ELOOP:
    return "too many symbolic links";
  default:
    return "cannot be read";
  }
}

/* Reads fd (a regular file of st_size bytes) into a new buffer. The
 * extra byte asked for catches a file growing while we read. */
static int read_all(int fd, size_t size, const cf_mem *m, char **buf,
                    size_t *len, const char **why) {
  char *b = cf__malloc(m, size + 2);
  size_t got = 0;
  ssize_t r = 0;

  if (b == NULL)
    return CF_ERR_NOMEM;
  while (got < size + 1) {
    r = read(fd, b + got, size + 1 - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      *why = read_reason(errno);
      break;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  if (r < 0 || got > size) {
    if (r >= 0)
      *why = "changed while being read";
    OPENSSL_cleanse(b, got);
    cf__free(m, b);
    return CF_ERR_IO;
  }
  b[got] = '\0';
  *buf = b;
  *len = got;
  return CF_OK;
}

int cf__aws_file_read(const char *path, size_t max, const cf_mem *mem,
                      char **buf, size_t *len, const char **why) {
  const char *dummy;
  struct stat sb;
  cf_mem m;
  int fd, rc;

  if (why == NULL)
    why = &dummy;
  *why = "";
  *buf = NULL;
  *len = 0;
  cf__mem_init(&m, mem);
  /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) {
    *why = errno == ENOENT || errno == ENOTDIR ? "not found"
                                               : read_reason(errno);
    return errno == ENOENT || errno == ENOTDIR ? CF_ERR_NOT_FOUND
                                               : CF_ERR_IO;
  }
  if (fstat(fd, &sb) != 0) {
    *why = read_reason(errno);
    close(fd);
    return CF_ERR_IO;
  }
  if (!S_ISREG(sb.st_mode)) {
    *why = S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file";
    close(fd);
    return CF_ERR_IO;
  }
  if (sb.st_size < 0 || (unsigned long long)sb.st_size > max) {
    *why = "too big";
    close(fd);
    return CF_ERR_TOO_BIG;
  }
  rc = read_all(fd, (size_t)sb.st_size, &m, buf, len, why);
  close(fd);
  return rc;
}

int cf__aws_ini_load(cf__aws_ini **out, const char *path, const cf_mem *mem,
                     char *err, size_t errlen) {
  const char *why;
  size_t len, line;
  char *buf;
  int rc;

  *out = NULL;
  rc = cf__aws_file_read(path, CF__AWS_INI_MAX, mem, &buf, &len, &why);
  if (rc != CF_OK) {
    cf__aws_errf(err, errlen, "%s: %s", path, why);
    return rc;
  }
  rc = ini_from_buf(out, buf, len, mem, &line);
  if (rc == CF_ERR_PARSE)
    cf__aws_errf(err, errlen, "%s: line %zu: malformed", path, line);
  else if (rc != CF_OK)
    cf__aws_errf(err, errlen, "%s: out of memory", path);
  return rc;
}

static int str_eq(const char *a, const char *b) {
  return a != NULL && b != NULL && strcmp(a, b) == 0;
}

int cf__aws_ini_has(const cf__aws_ini *ini, const char *section) {
  size_t i;
  for (i = 0; ini != NULL && i < ini->n; i++) {
    if (str_eq(ini->e[i].section, section))
      return 1;
  }
  return 0;
}

static const char *ini_find(const cf__aws_ini *ini, const char *section,
                            const char *parent, const char *key) {
  const char *v = NULL;
  size_t i;
  for (i = 0; ini != NULL && i < ini->n; i++) {
    const ini_entry *e = &ini->e[i];
    if (str_eq(e->key, key) && str_eq(e->section, section) &&
        (parent == NULL ? e->parent == NULL : str_eq(e->parent, parent)))
      v = e->value; /* the last one wins */
  }
  return v;
}

const char *cf__aws_ini_get(const cf__aws_ini *ini, const char *section,
                            const char *key) {
  return ini_find(ini, section, NULL, key);
}

const char *cf__aws_ini_get_sub(const cf__aws_ini *ini, const char *section,
                                const char *parent, const char *key) {
  if (parent == NULL)
    return NULL;
  return ini_find(ini, section, parent, key);
}

int cf__aws_profile_ok(const char *p) {
  size_t n = 0;
  for (; p[n] != '\0'; n++) {
    unsigned char c = (unsigned char)p[n];
    if (c <= 0x20 || c >= 0x7f || c == '[' || c == ']')
      return 0;
  }
  return n >= 1 && n <= CF__AWS_PROFILE_MAX;
}

/* The config file's section name for profile, in buf; NULL if too long. */
static const char *profile_section(char *buf, size_t n, int is_config,
                                   const char *profile) {
  int w;
  if (!is_config)
    return profile;
  w = snprintf(buf, n, "profile %s", profile);
  return w < 0 || (size_t)w >= n ? NULL : buf;
}

const char *cf__aws_ini_profile(const cf__aws_ini *ini, int is_config,
                                const char *profile, const char *key) {
  char buf[160];
  const char *sec = profile_section(buf, sizeof(buf), is_config, profile);
  const char *v = sec != NULL ? cf__aws_ini_get(ini, sec, key) : NULL;
  if (v == NULL && is_config && strcmp(profile, "default") == 0)
    v = cf__aws_ini_get(ini, "default", key);
  return v;
}

int cf__aws_ini_has_profile(const cf__aws_ini *ini, int is_config,
                            const char *profile) {
  char buf[160];
  const char *sec = profile_section(buf, sizeof(buf), is_config, profile);
  if (sec != NULL && cf__aws_ini_has(ini, sec))
    return 1;
  return is_config && strcmp(profile, "default") == 0 &&
         cf__aws_ini_has(ini, "default");
}

const char *cf__aws_env(char *const *envp, const char *name) {
  size_t n = strlen(name);
  if (envp == NULL)
    envp = environ;
  for (; envp != NULL && *envp != NULL; envp++) {
    if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
      return (*envp)[n + 1] != '\0' ? *envp + n + 1 : NULL;
  }
  return NULL;
}

int cf__aws_env_true(char *const *envp, const char *name) {
  const char *v = cf__aws_env(envp, name);
  return v != NULL && strcasecmp(v, "true") == 0;
}

static char *str_cat(const cf_mem *m, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char *s = cf__malloc(m, la + lb + 1);
  if (s == NULL)
    return NULL;
  memcpy(s, a, la);
  memcpy(s + la, b, lb + 1);
  return s;
}

int cf__aws_file_path(char **out, char *const *envp, const char *var,
                      const char *def_rel, const cf_mem *mem) {
  const char *v = cf__aws_env(envp, var), *home;
  char buf[64];
  cf_mem m;

  cf__mem_init(&m, mem);
  *out = NULL;
  if (v == NULL) {
    if (snprintf(buf, sizeof(buf), "~/%s", def_rel) >= (int)sizeof(buf))
      return CF_ERR_INVALID;
    v = buf;
  }
  if (v[0] == '~' && (v[1] == '/' || v[1] == '\0')) {
    if ((home = cf__aws_env(envp, "HOME")) == NULL)
      return CF_OK; /* no home: as if the file were missing */
    *out = str_cat(&m, home, v + 1);
  } else {
    *out = str_cat(&m, v, "");
  }
  return *out != NULL ? CF_OK : CF_ERR_NOMEM;
}

static int is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

static char lower(char c) {
  return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* "[v6]" at p: copies the literal into u->host; the end, or NULL. */
static const char *url_ipv6(const char *p, cf__aws_url *u) {
  const char *close = strchr(p, ']');
  unsigned char bin[16];
  size_t n, i;

  if (close == NULL || (n = (size_t)(close - p - 1)) == 0 ||
      n >= sizeof(u->host))
    return NULL;
  for (i = 0; i < n; i++)
    u->host[i] = lower(p[1 + i]);
  u->host[n] = '\0';
  if (inet_pton(AF_INET6, u->host, bin) != 1)
    return NULL;
  u->ipv6 = 1;
  return close + 1;
}

/* A host name or IPv4 literal at p; the end, or NULL. '@' is not a host
 * character, so user info ("user:pass@host") is refused here. */
static const char *url_name(const char *p, cf__aws_url *u) {
  size_t n = 0;
  while (is_host_char(p[n])) {
    if (n + 1 >= sizeof(u->host))
      return NULL;
    u->host[n] = lower(p[n]);
    n++;
  }
  u->host[n] = '\0';
  if (n == 0 || u->host[0] == '.' || u->host[0] == '-')
    return NULL;
  return p + n;
}

static const char *url_port(const char *p, cf__aws_url *u) {
  unsigned v = 0;
  int digits = 0;
  if (*p != ':')
    return p;
  for (p++; *p >= '0' && *p <= '9'; p++) {
    v = v * 10u + (unsigned)(*p - '0');
    if (++digits > 5)
      return NULL;
  }
  if (digits == 0 || v == 0 || v > 65535u)
    return NULL;
  u->port = v;
  return p;
}

int cf__aws_url_parse(const char *url, int allow_query, cf__aws_url *u) {
  const char *p, *path;
  size_t n;

  memset(u, 0, sizeof(*u));
  if (url == NULL)
    return CF_ERR_INVALID;
  if (strncasecmp(url, "https://", 8) == 0) {
    u->https = 1;
    p = url + 8;
  } else if (strncasecmp(url, "http://", 7) == 0) {
    p = url + 7;
  } else {
    return CF_ERR_INVALID;
  }
  p = *p == '[' ? url_ipv6(p, u) : url_name(p, u);
  if (p == NULL || (p = url_port(p, u)) == NULL)
    return CF_ERR_INVALID;
  if (*p != '\0' && *p != '/' && !(allow_query && *p == '?'))
    return CF_ERR_INVALID;
  for (path = p; *p != '\0'; p++) {
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f ||
        *p == '#' || (*p == '?' && !allow_query))
      return CF_ERR_INVALID;
  }
  n = (size_t)(p - url);
  while (n > (size_t)(path - url) && url[n - 1] == '/')
    n--;
  u->base_len = n;
  return CF_OK;
}

/* Reads exactly n digits at *p. */
static int digits(const char **p, int n, int *out) {
  int v = 0;
  for (; n > 0; n--, (*p)++) {
    if (**p < '0' || **p > '9')
      return -1;
    v = v * 10 + (**p - '0');
  }
  *out = v;
  return 0;
}

static int is_leap(int y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1). */
static long days_since_epoch(int y, int m, int d) {
  static const int before[12] = {0,   31,  59,  90,  120, 151,
                                 181, 212, 243, 273, 304, 334};
  long leaps = (y - 1) / 4 - (y - 1) / 100 + (y - 1) / 400;
  long leaps70 = 1969 / 4 - 1969 / 100 + 1969 / 400;
  return 365L * (y - 1970) + (leaps - leaps70) + before[m - 1] +
         (m > 2 && is_leap(y)) + (d - 1);
}

/* "Z", "+hh:mm", "-hhmm" at p: seconds east of UTC, or -1 on error. */
static int time_zone(const char *p, long *off) {
  int h, m, sign;
  if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
    *off = 0;
    return 0;
  }
  if (*p != '+' && *p != '-')
    return -1;
  sign = *p++ == '-' ? -1 : 1;
  if (digits(&p, 2, &h) != 0)
    return -1;
  if (*p == ':')
    p++;
  if (digits(&p, 2, &m) != 0 || *p != '\0' || h > 23 || m > 59)
    return -1;
  *off = sign * (h * 3600L + m * 60L);
  return 0;
}

int cf__aws_time_parse(const char *s, double *out) {
  static const int mdays[12] = {31, 28, 31, 30, 31, 30,
                                31, 31, 30, 31, 30, 31};
  int y, mo, d, h, mi, sec;
  double frac = 0, scale = 0.1;
  long off;

  if (s == NULL || digits(&s, 4, &y) || *s++ != '-' ||
      digits(&s, 2, &mo) || *s++ != '-' || digits(&s, 2, &d) ||
      (*s != 'T' && *s != 't' && *s != ' '))
    return CF_ERR_PARSE;
  s++;
  if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) ||
      *s++ != ':' || digits(&s, 2, &sec))
    return CF_ERR_PARSE;
  if (*s == '.') {
    if (s[1] < '0' || s[1] > '9')
      return CF_ERR_PARSE;
    for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
      frac += (*s - '0') * scale;
  }
  if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
      d > mdays[mo - 1] + (mo == 2 && is_leap(y)) || h > 23 || mi > 59 ||
      sec > 60 || time_zone(s, &off) != 0)
    return CF_ERR_PARSE;
  *out = (double)days_since_epoch(y, mo, d) * 86400.0 + h * 3600.0 +
         mi * 60.0 + sec + frac - (double)off;
  return CF_OK;
}
