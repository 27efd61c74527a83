/* Internal definitions shared by the core runtime's files: the objects behind
 * the public handles, errors, logging, host memory and the handle registry. */
#ifndef OX_CORE_CORE_H
#define OX_CORE_CORE_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "core/backend.h"
#include "openxpu/openxpu.h"

#define OX__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define OX__ERRMSG_MAX 1024

/* Intrusive list link: the context tracks every live buffer, queue and event
 * so that ox_context_free can release what the user did not. */
typedef struct ox__link {
    struct ox__link *prev, *next;
} ox__link;

/* Kinds of handle, for the registry's type check. */
typedef enum ox__handle_type {
    OX__HANDLE_CONTEXT = 1,
    OX__HANDLE_DEVICE,
    OX__HANDLE_BUFFER,
    OX__HANDLE_QUEUE,
    OX__HANDLE_EVENT,
    OX__HANDLE_PROGRAM,
    OX__HANDLE_KERNEL
} ox__handle_type;

typedef struct ox__backend {
    const ox__backend_iface *iface;
    void *state;
    void *dl;            /* dlopen handle; NULL for built-in backends */
    ox__host host;
    ox_backend_info info;
} ox__backend;

struct ox_device {
    ox_context *ctx;
    ox__backend *backend;
    void *impl;          /* backend device, opened lazily */
    int backend_index;   /* index within the backend */
    ox_device_info info;
    pthread_mutex_t lock; /* guards impl opening and the default queue */
    void *default_queue; /* backend queue for the blocking buffer calls */
    struct ox__device_program *programs; /* op programs built so far (program.c) */
    struct ox__tune_table *tuning; /* tuned kernel parameters (ops/tune.c), loaded lazily */
};

/* Memory shared by a buffer and its views; freed with the last reference. */
typedef struct ox__memory {
    ox_device *device;
    void *impl;          /* backend buffer */
    size_t size;
    atomic_int refs;
    /* Data the op layer derived from the contents (the CPU's packed weight
     * rows, ops/pack.c), freed with the memory by derived_free. Every
     * write through the API (ox_queue_write/copy/fill into this memory)
     * bumps `writes`, and derived data made before it is no longer used. */
    void *derived;
    void (*derived_free)(void *derived);
    atomic_uint writes;
} ox__memory;

struct ox_buffer {
    ox__link link;       /* first: the context's list of buffers */
    ox_context *ctx;
    ox__memory *memory;
    size_t offset;       /* within memory */
    size_t size;
};

struct ox_queue {
    ox__link link;       /* first: the context's list of queues */
    ox_context *ctx;
    ox_device *device;
    void *impl;
    ox_buffer *scratch;  /* ox__queue_scratch's buffer, or NULL */
};

/* A device buffer of at least `size` bytes for temporaries of the operators
 * queued on q: reused from call to call (work on one queue runs in order,
 * so the next operator's use waits for the last one's); it grows by
 * finishing the queue and reallocating. Owned by the queue. */
ox_status ox__queue_scratch(ox_queue *q, size_t size, ox_buffer **out);

struct ox_event {
    ox__link link;       /* first: the context's list of events */
    ox_context *ctx;
    ox_device *device;   /* device whose backend made it */
    void *impl;
};

struct ox_context {
    uint64_t serial;     /* unique per process, never reused */
    ox_alloc_fn alloc;
    void *alloc_user;
    ox_log_fn log;
    void *log_user;
    ox_log_level log_level;
    int num_threads;
    bool native_libs;    /* vendor libraries as fast paths (OX_NATIVE_LIBS != 0) */
    bool reproducible;   /* OX_CONTEXT_REPRODUCIBLE: portable kernels everywhere, OX_REPRO */
    ox__backend *backends;
    int backend_count;
    ox_device *devices;
    int device_count;
    pthread_mutex_t lock; /* guards the lists below */
    ox__link buffers, queues, events, programs; /* list heads */
    /* ox_context_counters */
    atomic_ullong n_ops, n_launches, n_syncs, n_transfers;
};

/* A public event around a backend event `impl` of `device` (queue.c);
 * on failure the backend event is waited for and released. */
ox_status ox__event_wrap(ox_context *ctx, ox_device *device, void *impl, const char *func,
                         ox_event **out);

/* Track or untrack an object in one of the context's lists. */
void ox__track(ox_context *ctx, ox__link *head, ox__link *link);
void ox__untrack(ox_context *ctx, ox__link *link);

/* ---- errors (error.c) ------------------------------------------------ */

/* Record a failure for `ctx` (NULL: the thread's context-less slot), log it
 * at debug level, and return `status`. The message names what was wrong. */
ox_status ox__fail(ox_context *ctx, ox_status status, const char *fmt, ...) OX__PRINTF(3, 4);
ox_status ox__vfail(ox_context *ctx, ox_status status, const char *fmt, va_list ap)
    OX__PRINTF(3, 0);
/* Forget this thread's message for a context that is going away. */
void ox__error_forget(const ox_context *ctx);

/* ---- logging (log.c) --------------------------------------------------- */

void ox__log(const ox_context *ctx, ox_log_level level, const char *fmt, ...) OX__PRINTF(3, 4);
void ox__vlog(const ox_context *ctx, ox_log_level level, const char *fmt, va_list ap)
    OX__PRINTF(3, 0);
/* The level from OX_LOG, or OX_LOG_DEFAULT when it is unset or unknown. */
ox_log_level ox__log_level_from_env(void);
/* Logging before a context exists (during ox_context_create failure). */
void ox__log_default(ox_log_level level, const char *fmt, ...) OX__PRINTF(2, 3);

/* ---- host memory (context.c) ------------------------------------------ */

void *ox__alloc(ox_context *ctx, size_t size);
void *ox__calloc(ox_context *ctx, size_t count, size_t size);
void ox__free(ox_context *ctx, void *ptr, size_t size);
char *ox__strdup(ox_context *ctx, const char *s);

/* mkdir -p (cache.c); path is modified and restored. */
bool ox__make_dirs(char *path);

/* ---- handle registry (handle.c) ---------------------------------------- */

/* Every public handle is registered while alive, so that a NULL, freed,
 * foreign or wrong-type pointer is refused before it is dereferenced. */
ox_status ox__handle_add(const void *handle, ox__handle_type type, ox_context *owner);
void ox__handle_remove(const void *handle); /* marks it freed */
/* True if `handle` is a live handle of that type; records nothing. */
bool ox__handle_is_live(const void *handle, ox__handle_type type);
/* Forget every handle of a context (live or freed) as it is destroyed. */
void ox__handle_forget_context(const ox_context *owner);

/* Check `handle`. On OX_OK *owner (if not NULL) is its context. Otherwise
 * the failure is recorded (in the owning context if the handle was freed
 * while its context lives, else in the thread's context-less slot) with a
 * message "<func>: <what> is NULL / was freed / is not a valid <kind>". */
ox_status ox__handle_check(const void *handle, ox__handle_type type, const char *func,
                           const char *what, ox_context **owner);
/* The same, but a failure is always recorded in `ctx` (the caller's
 * context), for handles found inside another argument (a tensor's buffer). */
ox_status ox__handle_check_in(ox_context *ctx, const void *handle, ox__handle_type type,
                              const char *func, const char *what, ox_context **owner);
const char *ox__handle_type_name(ox__handle_type type);
/* For the *_free functions: true if `handle` is live (*owner set); else a
 * warning is logged (double free, stray pointer) and false returned. */
bool ox__handle_check_free(const void *handle, ox__handle_type type, const char *func,
                           ox_context **owner);

/* ---- devices (device.c) -------------------------------------------------- */

/* Open the backend device on first use. */
ox_status ox__device_open(ox_device *device, const char *func);
/* The device's default queue, created on first use; call with device->lock held. */
ox_status ox__device_default_queue(ox_device *device, const char *func, void **queue);

/* ---- buffers (buffer.c) --------------------------------------------------- */

/* OX_OK if [offset, offset + size) lies inside `buffer` (overflow-safe);
 * else OX_ERR_OUT_OF_RANGE with a message naming func, what and the sizes. */
ox_status ox__buffer_check_range(ox_context *ctx, const char *func, const char *what,
                                 const ox_buffer *buffer, size_t offset, size_t size);

/* ---- backends (loader.c) ------------------------------------------------- */

ox_status ox__backends_load(ox_context *ctx, const ox_context_options *options);
/* The loaded backend called `name` ("opencl"), or NULL. */
ox__backend *ox__backend_find(ox_context *ctx, const char *name);
void ox__backends_unload(ox_context *ctx);
void ox__host_init(ox_context *ctx, ox__host *host);

/* ---- kernel cache (cache.c) and programs (program.c) ------------------- */

uint64_t ox__hash64(const void *data, size_t size);
ox_status ox__cache_load(ox_context *ctx, const char *key, void **data, size_t *size);
void ox__cache_store(ox_context *ctx, const char *key, const void *data, size_t size);
/* While on, this thread's builds neither read nor fill the cache: their
 * result depends on files the key cannot name (user -I folders). */
void ox__cache_bypass(bool on);
/* Free the programs a device built for ops (at context destruction). */
void ox__device_free_programs(ox_device *device);
/* The kernel cache's directory into dir; false if caching is off or there
 * is no home. */
bool ox__cache_dir(char *dir, size_t cap);
/* Free a device's tuned parameters (ops/tune.c; at context destruction). */
void ox__tune_free(ox_device *device);

/* ---- formatting helpers (util.c) ----------------------------------------- */

/* "1.5 GiB", "512 B": human-readable size into buf. Returns buf. */
const char *ox__format_bytes(uint64_t bytes, char *buf, size_t cap);
/* snprintf that never overflows and always terminates; returns buf. */
char *ox__copy_string(char *dst, size_t cap, const char *src);
/* Case-insensitive compare of at most n chars, ASCII only. */
int ox__strncasecmp(const char *a, const char *b, size_t n);
/* Seconds from a monotonic clock, for timing. */
double ox__seconds(void);

/* The op layer (ops/pack.c): matrix w (quantized, rows of ne[0]) will
 * not change until its memory is freed: where its device computes faster
 * from a copy in another layout (the CPU's x86 tile kernels: packed rows),
 * make that copy now; *packed says whether one was made. release (or
 * NULL) is called with each piece of w's rows once it is copied (from any
 * thread), so the caller can give back pages it will not read again. Out
 * of memory: OX_ERR_OUT_OF_MEMORY, no message (w is used as it is). */
ox_status ox__matrix_pack(const ox_tensor *w, void (*release)(void *user, const void *data, size_t bytes),
                          void *user, bool *packed);

#endif /* OX_CORE_CORE_H */
