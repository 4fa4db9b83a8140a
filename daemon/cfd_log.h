/* chatfanoutd logging: one line per event to stderr, text or JSON. */
#ifndef CFD_LOG_H
#define CFD_LOG_H

enum cfd_log_level {
  CFD_LOG_ERROR = 0,
  CFD_LOG_WARN = 1,
  CFD_LOG_INFO = 2,
  CFD_LOG_DEBUG = 3
};

enum cfd_log_format { CFD_LOG_TEXT = 0, CFD_LOG_JSON = 1 };

/* Sets the threshold and format; lines above level are not written. */
void cfd_log_setup(int level, int format);

/* Parses "error|warn|info|debug" / "text|json"; -1 when unknown. */
int cfd_log_level_parse(const char *s);
int cfd_log_format_parse(const char *s);

/*
 * Writes one line: level, msg, then key/value fields given as pairs of
 * const char * terminated by NULL, e.g.
 *   cfd_log(CFD_LOG_INFO, "listening", "url", url, NULL);
 * Text: `2026-11-30T05:00:00.123Z info listening url=http://...`
 * (values with spaces or quotes are quoted); JSON: one object per line
 * with "ts", "level", "msg" and the fields, properly escaped.
 */
void cfd_log(int level, const char *msg, ...)
    __attribute__((sentinel));

#endif /* CFD_LOG_H */
