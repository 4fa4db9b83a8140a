/* chatfanoutd logging: one line per event to stderr, text or JSON. */
#ifndef CFD_LOG_H
#define CFD_LOG_H

#include <stddef.h> /* NULL, which ends every cfd_log() call */
#include <stdint.h>

enum cfd_log_level {
  CFD_LOG_ERROR = 0,
  CFD_LOG_WARN = 1,
  CFD_LOG_INFO = 2,
  CFD_LOG_DEBUG = 3
};

enum cfd_log_format { CFD_LOG_TEXT = 0, CFD_LOG_JSON = 1 };

#define CFD_LOG_LINE_MAX 4096 /* bytes per line, newline included */
#define CFD_LOG_VALUE_MAX 1024 /* bytes of one escaped value */

/*
 * Sets the threshold and format; lines above level are not written.
 * Also decides, once per descriptor, how lines are written without
 * blocking: a pipe or FIFO is reopened through /proc/self/fd as a
 * private non-blocking open file description (kept open, close-on-exec),
 * a socket is sent to with MSG_DONTWAIT, other non-files are polled for
 * room first. The flags of the descriptor itself (shared with whoever
 * else holds it) are never changed.
 */
void cfd_log_setup(int level, int format);

/*
 * Sets the descriptor lines are written to (default 2, stderr), for
 * tests; prepares it as cfd_log_setup() does. The descriptor stays
 * owned by the caller; a private reopen of the previous one is closed.
 */
void cfd_log_set_fd(int fd);

/*
 * Lines dropped since start because the descriptor could not take them
 * at once (full pipe or socket buffer) or the write failed. Logging
 * never blocks: such a line is dropped, never waited for.
 */
uint64_t cfd_log_dropped(void);

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
 * with "...", and fields that no longer fit are dropped. A line that
 * does not fit in the pipe or socket at once is dropped and counted
 * (cfd_log_dropped()); when a stream socket takes only part of a line,
 * the rest goes first at the next call, so the stream stays whole
 * lines.
 * Level names: error, warn, info, debug; out-of-range levels clamp.
 */
void cfd_log(int level, const char *msg, ...)
    __attribute__((sentinel));

#endif /* CFD_LOG_H */
