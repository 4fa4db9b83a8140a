/*
 * libchatfanout - common definitions: export macro, error codes, allocator.
 *
 * Thread rules (apply to every object of this library): an object and the
 * objects created from it (a hub and its clients, a queue) belong to one
 * thread at a time, normally the thread running the host event loop. The
 * library has no global mutable state, so different hubs may live on
 * different threads without locking.
 */
#ifndef CHATFANOUT_CF_COMMON_H
#define CHATFANOUT_CF_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(CF_BUILDING_LIBRARY)
#    define CF_API __declspec(dllexport)
#  elif defined(CF_STATIC)
#    define CF_API
#  else
#    define CF_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define CF_API __attribute__((visibility("default")))
#else
#  define CF_API
#endif

/*
 * Error codes. 0 is success, every error is negative. Codes are grouped by
 * kind: -1xx the caller's input, -2xx the object's state, -3xx resources and
 * I/O, and below CF_ERR_FATAL the object can only be freed.
 */
enum cf_error {
  CF_OK = 0,

  CF_ERR_INVALID = -101,    /* an argument is NULL, empty or malformed */
  CF_ERR_TOO_BIG = -102,    /* a payload or name is over its limit */
  CF_ERR_VERSION = -103,    /* a struct's version field is not supported */
  CF_ERR_LIMIT = -104,      /* a configured count limit was reached */
  CF_ERR_NOT_FOUND = -105,  /* no such room, membership or entry */
  CF_ERR_EXISTS = -106,     /* already there (e.g. joined twice) */

  CF_ERR_STATE = -201,      /* not allowed in the object's current state */
  CF_ERR_CLOSED = -202,     /* the object is closing or closed */

  CF_ERR_NOMEM = -301,      /* an allocation failed; state is unchanged */
  CF_ERR_QUEUE_FULL = -302, /* a bounded buffer is full; nothing queued */
  CF_ERR_IO = -303,         /* a system call failed */
  CF_ERR_TIMEOUT = -304,    /* an operation ran out of time */
  CF_ERR_BACKEND = -305,    /* the queue backend failed; see its errmsg */
  CF_ERR_PARSE = -306,      /* malformed input from the network */

  CF_ERR_FATAL = -900,      /* codes below this one are fatal */
  CF_ERR_CALLBACK = -901    /* a user callback failed; free the object */
};

/*
 * Returns a static, NUL-terminated English description of code. Unknown
 * codes give "unknown error". Never returns NULL.
 */
CF_API const char *cf_strerror(int code);

/* Returns nonzero when code means the object can only be freed. */
CF_API int cf_is_fatal(int code);

/*
 * Custom allocator. Pass NULL wherever a `const cf_mem *` is taken to use
 * libc. The struct is copied by the object it is given to; user_data is
 * passed back unchanged as the last argument. free() must accept NULL.
 *
 *   static void *my_malloc(size_t n, void *ud) { return arena_get(ud, n); }
 *   ...
 *   cf_mem mem = { arena, my_malloc, my_free, my_calloc, my_realloc };
 *   cfg.mem = &mem;
 */
typedef struct cf_mem {
  void *user_data;
  void *(*malloc)(size_t size, void *user_data);
  void (*free)(void *ptr, void *user_data);
  void *(*calloc)(size_t nmemb, size_t size, void *user_data);
  void *(*realloc)(void *ptr, size_t size, void *user_data);
} cf_mem;

/* Returns CF_VERSION_HEX of the library actually loaded at run time. */
CF_API uint32_t cf_version(void);

/* Returns the library version as a static "MAJOR.MINOR.PATCH" string. */
CF_API const char *cf_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* CHATFANOUT_CF_COMMON_H */
