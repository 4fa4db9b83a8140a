/* chatfanoutd logging: one line per event to stderr, text or JSON. */
#ifndef CFD_LOG_H
#define CFD_LOG_H

#include <stddef.h> /* NULL, which ends every cfd_log() call */

enum cfd_log_level {
  CFD_LOG_ERROR = 0,
  CFD_LOG_WARN = 1,
  CFD_LOG_INFO = 2,
  CFD_LOG_DEBUG = 3
};

enum cfd_log_format { CFD_LOG_TEXT = 0, CFD_LOG_JSON = 1 };

#define CFD_LOG_LINE_MAX 4096 /* bytes per line, newline included */
#define CFD_LOG_VALUE_MAX 1024 /* bytes of one escaped value */

/* Sets the threshold and format; lines above level are not written. */
void cfd_log_setup(int level, int format);

/*
 * Sets the descriptor lines are written to (default 2, stderr); for
 * tests. The descriptor stays owned by the caller.
 */
void cfd_log_set_fd(int fd);

/* Would a line at level be written? Lets callers skip costly fields. */
int cfd_log_enabled(int level);

/* Parses "error|warn|info|debug" / "text|json"; -1 when unknown. */
int cfd_log_level_parse(const char *s);
int cfd_log_format_parse(const char *s);

/*
 * Writes one line: level, msg, then key/value fields given as pairs of
 * const char * terminated by NULL, e.g.
 *   cfd_log(CFD_LOG_INFO, "listening", "url", url, NULL);
 * Text: `2026-11-30T05:00:00.123Z info listening url=http://...`
 * (values that are empty or hold a space, quote, '=', backslash, control
 * byte or invalid UTF-8 are quoted, with \" \\ \n \r \t \xHH escapes);
 * JSON: one object per line with "ts", "level", "msg" and the fields as
 * strings, properly escaped (invalid UTF-8 becomes U+FFFD). A NULL value
 * also ends the list (that field shows empty / null). The timestamp is
 * UTC with milliseconds. Each line is one write(2) of at most
 * CFD_LOG_LINE_MAX bytes (atomic on a pipe): a value over
 * CFD_LOG_VALUE_MAX bytes, or one that does not fit, is cut and ends
 * with "...", and fields that no longer fit are dropped.
 * Level names: error, warn, info, debug; out-of-range levels clamp.
 */
void cfd_log(int level, const char *msg, ...)
    __attribute__((sentinel));

#endif /* CFD_LOG_H */
