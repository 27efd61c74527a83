/* OpenXPU contexts: the root object that owns backends, devices, buffers,
 * queues and events, the allocator hook, the log callback and the last error
 * message.
 *
 * Threading: a context may be used from several threads. The last error
 * message is kept per context and per thread, so a failure on one thread never
 * overwrites the message another thread is about to read. */
#ifndef OPENXPU_CONTEXT_H
#define OPENXPU_CONTEXT_H

#include "openxpu/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_context ox_context;

/* Flags for ox_context_options.flags. */
enum {
    /* Do not look for backend plugins: only the built-in CPU backend. */
    OX_CONTEXT_NO_PLUGINS = 1u << 0,
    /* Do not look in the directory beside the library or the install
     * directory; only in ox_context_options.backend_path and OX_BACKEND_PATH. */
    OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS = 1u << 1,
    /* Reproducible mode: every op gives the same bits on every device (the
     * CPU included, which then runs the portable kernels compiled as C and
     * needs a C compiler, see OX_CC), whatever the thread count or the
     * placement: kernels built with -DOX_REPRO=1 (the dialect's own math,
     * no contraction, correctly rounded division and square root) and with
     * one fixed set of parameters and work-group sizes on every device, no
     * tuning, no vendor libraries. Slower than the default mode. The
     * OX_REPRODUCIBLE environment variable (1) sets it too. See
     * docs/ARCHITECTURE.md, "Reproducible mode". */
    OX_CONTEXT_REPRODUCIBLE = 1u << 2
};

/* Options for ox_context_create. Zero-initialize, set struct_size to
 * sizeof(ox_context_options), then set what you need; every zero field takes
 * its default. Fields are only ever appended. */
typedef struct ox_context_options {
    size_t struct_size;
    /* Host allocator; NULL: the C library's realloc/free. */
    ox_alloc_fn alloc;
    void *alloc_user;
    /* Log callback; NULL: messages go to stderr as "openxpu: level: text". */
    ox_log_fn log;
    void *log_user;
    /* Minimum level passed to the log callback; OX_LOG_DEFAULT: warnings.
     * The OX_LOG environment variable (debug, info, warn, error, off) wins
     * over this field when it is set, so users can always see more. */
    ox_log_level log_level;
    /* Extra directories (':'-separated) or plugin files to load backends
     * from, searched before OX_BACKEND_PATH and the default directories.
     * Borrowed for the duration of ox_context_create. */
    const char *backend_path;
    /* Worker threads of the CPU backend's pool; 0: OX_NUM_THREADS, or the
     * number of cores this process may run on. */
    int num_threads;
    /* OX_CONTEXT_* flags. */
    unsigned flags;
} ox_context_options;

/* Create a context: load the built-in CPU backend and every backend plugin
 * found (see docs/ARCHITECTURE.md for the search order), and enumerate their
 * devices. A plugin that cannot be loaded is skipped with a warning naming
 * it; it is never an error. `options` may be NULL for all defaults.
 * On success *out owns the new context: free it with ox_context_free.
 * On failure *out is set to NULL; the reason is logged and available from
 * ox_errmsg(NULL) on this thread. */
OX_API ox_status ox_context_create(const ox_context_options *options, ox_context **out);

/* Destroy a context and everything it still owns (buffers, queues, events,
 * backends). Waits for queued work to finish first. NULL is accepted. Any
 * handle of the context is invalid afterwards. */
OX_API void ox_context_free(ox_context *ctx);

/* The message for the last failure on this thread with this context, naming
 * what was wrong ("ox_buffer_write: offset 96 + size 64 exceeds buffer size
 * 128 (cpu:0)"). With ctx NULL or not a live context: the message of the last
 * failure on this thread that had no valid context to hold it. Never NULL
 * ("" when nothing failed). Owned by the library; valid until the next call
 * on that context from this thread. */
OX_API const char *ox_errmsg(const ox_context *ctx);

/* Status of the last failure on this thread with this context (OX_OK if none). */
OX_API ox_status ox_errcode(const ox_context *ctx);

/* Whether the context is in reproducible mode (OX_CONTEXT_REPRODUCIBLE or
 * OX_REPRODUCIBLE=1): 1 or 0; 0 for NULL or a freed context. */
OX_API int ox_context_is_reproducible(const ox_context *ctx);

/* Change the log level of a live context (OX_LOG still wins when set). */
OX_API ox_status ox_context_set_log_level(ox_context *ctx, ox_log_level level);

/* Information about one loaded backend. Set struct_size before the call. */
typedef struct ox_backend_info {
    size_t struct_size;
    char name[32];          /* "cpu", "opencl", "cuda", ... */
    char path[512];         /* plugin file; "(built in)" for the CPU backend */
    unsigned abi_version;   /* backend ABI version the plugin was built for */
    int device_count;       /* devices it found; 0 is normal (no driver) */
    char note[256];         /* why it has no devices, or "" */
} ox_backend_info;

/* Number of backends loaded in the context (the CPU backend is always one). */
OX_API ox_status ox_backend_count(ox_context *ctx, int *count);

/* Fill *info for backend number `index` (0 <= index < count). */
OX_API ox_status ox_backend_get_info(ox_context *ctx, int index, ox_backend_info *info);

/* What the context's work has cost the host so far: the figures behind
 * "launches and host waits per token" (ox bench-model --json). Counts
 * since the context was created; read them before and after the work of
 * interest. Set struct_size before the call. */
typedef struct ox_counters {
    size_t struct_size;
    uint64_t ops;       /* op calls that ran (ox_add, ox_matmul, ...), on any device */
    uint64_t launches;  /* kernels launched on devices: portable kernels and vendor library calls */
    uint64_t syncs;     /* host waits: ox_queue_finish, ox_event_wait, every blocking transfer */
    uint64_t transfers; /* host <-> device transfers, blocking or not */
} ox_counters;

OX_API ox_status ox_context_counters(ox_context *ctx, ox_counters *out);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_CONTEXT_H */
