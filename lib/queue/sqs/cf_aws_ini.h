/*
 * Internal: what cf_aws_config.c and cf_aws_creds.c share: the reader for
 * the AWS shared config and credentials files, environment look-ups,
 * URL checks and the ISO 8601 time parser.
 *
 * File format (as AWS SDKs read it): `[name]` sections (the config file
 * names profiles `[profile name]`, except `[default]`), `key = value`
 * lines, full-line comments starting with '#' or ';', inline comments
 * after whitespace (`value # note`), CRLF line ends. An indented
 * `key = value` under a key with an empty value (`s3 =`) is a
 * sub-property of that key; an indented line under a key with a value
 * continues it and is ignored. Keys and section names are case-sensitive;
 * runs of whitespace inside a section name count as one space. When a
 * section or key repeats, the last value wins.
 */
#ifndef CF_AWS_INI_H
#define CF_AWS_INI_H

#include <chatfanout/cf_common.h>

/* Largest shared file read, in bytes. */
#define CF__AWS_INI_MAX (1024u * 1024u)

typedef struct cf__aws_ini cf__aws_ini;

/*
 * Parses len bytes of text (copied; the copy is wiped on free). On
 * CF_ERR_PARSE *line (may be NULL) gets the 1-based line at fault.
 * CF_OK, CF_ERR_PARSE (a line that is neither a section, a property,
 * a comment nor blank; a property before any section; a NUL byte),
 * CF_ERR_TOO_BIG (over CF__AWS_INI_MAX), CF_ERR_NOMEM.
 */
int cf__aws_ini_parse(cf__aws_ini **out, const char *text, size_t len,
                      const cf_mem *mem, size_t *line);

/*
 * Reads and parses the file at path without blocking on odd files (a
 * FIFO or device is refused). err gets "PATH: reason" on failure.
 * CF_OK, CF_ERR_NOT_FOUND (no such file: not an error for callers),
 * CF_ERR_IO (unreadable, not a regular file), CF_ERR_TOO_BIG,
 * CF_ERR_PARSE, CF_ERR_NOMEM. *out is NULL on every error.
 */
int cf__aws_ini_load(cf__aws_ini **out, const char *path, const cf_mem *mem,
                     char *err, size_t errlen);

/* Wipes and frees. Accepts NULL. */
void cf__aws_ini_free(cf__aws_ini *ini);

/* Nonzero when section appears in ini (NULL ini: 0). */
int cf__aws_ini_has(const cf__aws_ini *ini, const char *section);

/* The value of key in section, or NULL (NULL ini: NULL). Valid until
 * cf__aws_ini_free(). */
const char *cf__aws_ini_get(const cf__aws_ini *ini, const char *section,
                            const char *key);

/* The value of the sub-property key under parent in section, or NULL. */
const char *cf__aws_ini_get_sub(const cf__aws_ini *ini, const char *section,
                                const char *parent, const char *key);

/*
 * A profile's key. In a config file (is_config) profile P is the section
 * "profile P"; "default" is "[profile default]", else "[default]". In a
 * credentials file it is the section P itself. NULL when absent.
 */
const char *cf__aws_ini_profile(const cf__aws_ini *ini, int is_config,
                                const char *profile, const char *key);

/* Nonzero for a usable profile name: 1 to CF__AWS_PROFILE_MAX printable
 * characters without whitespace or brackets (it goes into
 * "[profile NAME]"). */
#define CF__AWS_PROFILE_MAX 128
int cf__aws_profile_ok(const char *profile);

/* Nonzero when the profile's section exists (same naming rules). */
int cf__aws_ini_has_profile(const cf__aws_ini *ini, int is_config,
                            const char *profile);

/*
 * The value of name in envp (NULL-terminated "K=V"; NULL: environ), or
 * NULL when unset or empty.
 */
const char *cf__aws_env(char *const *envp, const char *name);

/* Nonzero when the variable is set to "true" (any case). */
int cf__aws_env_true(char *const *envp, const char *name);

/*
 * The path of a shared file: the value of variable var, else
 * "~/" def_rel; a leading "~/" or a lone "~" becomes HOME from envp.
 * *out (free with cf__free) is NULL when the path needs HOME and HOME is
 * unset: the file is then treated as missing. CF_OK, CF_ERR_NOMEM.
 */
int cf__aws_file_path(char **out, char *const *envp, const char *var,
                      const char *def_rel, const cf_mem *mem);

/*
 * Reads a whole small regular file (at most max bytes) into a new
 * NUL-terminated buffer (free with cf__free; wipe first if secret).
 * Never blocks on a FIFO. On error *why (may be NULL) gets a static
 * reason. CF_OK, CF_ERR_NOT_FOUND, CF_ERR_IO, CF_ERR_TOO_BIG,
 * CF_ERR_NOMEM.
 */
int cf__aws_file_read(const char *path, size_t max, const cf_mem *mem,
                      char **buf, size_t *len, const char **why);

/* A checked absolute URL, pieces for the callers' own rules. */
typedef struct cf__aws_url {
  int https;         /* 1 for https, 0 for http */
  char host[256];    /* lower case, IPv6 without brackets */
  int ipv6;          /* the host was a bracketed literal */
  unsigned port;     /* 0 when absent */
  size_t base_len;   /* length without the trailing '/'s */
} cf__aws_url;

/*
 * Checks url: http or https (any case), a host name, IPv4 or [IPv6]
 * literal, no user info, an optional port 1-65535, an optional path of
 * printable characters, no fragment, and a query only when allow_query.
 * CF_OK or CF_ERR_INVALID.
 */
int cf__aws_url_parse(const char *url, int allow_query, cf__aws_url *u);

/*
 * Parses an ISO 8601 UTC time as AWS services send it
 * ("2024-05-01T12:00:00Z", fractions and +hh:mm offsets allowed) into
 * epoch seconds. CF_OK or CF_ERR_PARSE.
 */
int cf__aws_time_parse(const char *s, double *out);

/* snprintf into err when err is not NULL (errlen may be 0). */
void cf__aws_errf(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif /* CF_AWS_INI_H */
