/* OpenXPU status codes, log levels and the host allocator hook.
 *
 * Every fallible call in OpenXPU returns an ox_status: OX_OK (0) on success,
 * a negative code on failure. The human-readable reason for the last failure
 * is kept per context (see ox_context_errmsg in context.h). */
#ifndef OPENXPU_STATUS_H
#define OPENXPU_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include "openxpu/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One list, so codes and their names never drift apart.
 * X(NAME, value, "description") */
#define OX_STATUS_LIST(X)                                                     \
    X(OK, 0, "success")                                                      \
    X(ERR_INVALID, -1, "invalid argument")                                   \
    X(ERR_INVALID_HANDLE, -2, "invalid, NULL or freed handle")               \
    X(ERR_OUT_OF_MEMORY, -3, "out of host memory")                           \
    X(ERR_DEVICE_MEMORY, -4, "out of device memory")                         \
    X(ERR_OUT_OF_RANGE, -5, "offset or size out of range")                   \
    X(ERR_NOT_FOUND, -6, "not found")                                        \
    X(ERR_UNSUPPORTED, -7, "not supported")                                  \
    X(ERR_BACKEND, -8, "backend or driver failure")                          \
    X(ERR_IO, -9, "input/output error")                                      \
    X(ERR_MISUSE, -10, "API misuse")                                         \
    X(ERR_INTERNAL, -11, "internal error")                                   \
    X(ERR_BUILD, -12, "kernel build failed")                                 \
    X(ERR_FORMAT, -13, "malformed input")                                    \
    X(ERR_DEVICE_LOST, -14, "the device failed or was lost")

typedef enum ox_status {
#define OX__STATUS_ENUM(name, value, text) OX_##name = value,
    OX_STATUS_LIST(OX__STATUS_ENUM)
#undef OX__STATUS_ENUM
} ox_status;

/* Short description of a status code ("out of device memory"). Never NULL;
 * unknown codes give "unknown status". The string is static. */
OX_API const char *ox_status_str(ox_status status);

/* Name of a status code ("OX_ERR_DEVICE_MEMORY"). Static string, never NULL. */
OX_API const char *ox_status_name(ox_status status);

/* Log levels, from most to least verbose. A log callback receives messages
 * at or above the context's level. */
typedef enum ox_log_level {
    OX_LOG_DEFAULT = 0, /* in options: warnings, unless OX_LOG says otherwise */
    OX_LOG_DEBUG = 1,
    OX_LOG_INFO = 2,
    OX_LOG_WARN = 3,
    OX_LOG_ERROR = 4,
    OX_LOG_OFF = 5
} ox_log_level;

/* Static name of a level: "default", "debug", "info", "warning", "error",
 * "off"; "unknown" for other values. */
OX_API const char *ox_log_level_str(ox_log_level level);

/* Receives one log message (no trailing newline). `message` is borrowed for
 * the duration of the call. May be called from any thread that uses the
 * context, so it must be thread-safe. */
typedef void (*ox_log_fn)(void *user, ox_log_level level, const char *message);

/* Host allocator hook, shaped like Lua's lua_Alloc:
 *   new_size == 0: free `ptr` (which may be NULL) and return NULL;
 *   ptr == NULL:   allocate new_size bytes;
 *   otherwise:     resize `ptr` from old_size to new_size bytes.
 * Returns NULL on failure (and then leaves `ptr` untouched). Memory must be
 * aligned at least as well as malloc's. Must be thread-safe. */
typedef void *(*ox_alloc_fn)(void *user, void *ptr, size_t old_size, size_t new_size);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_STATUS_H */
