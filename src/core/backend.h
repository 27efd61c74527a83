/* The backend contract: the one internal header every backend implements.
 *
 * A backend plugin is a shared object libox-<name>.so exporting one symbol,
 * OX_BACKEND_ENTRY_SYMBOL, of type ox__backend_entry_fn. The core calls it
 * with the ABI version it speaks; the plugin returns its table (or NULL if it
 * cannot serve that version). The core then checks the table's ABI version,
 * size and every required slot before using any of it: a plugin that fails a
 * check is closed again and skipped with a warning naming it.
 *
 * Versioning: slots are only ever appended. OX_BACKEND_ABI_VERSION changes
 * when an existing slot changes meaning; struct_size tells the core how many
 * slots a plugin knows. Slots marked (optional) may be NULL; the core then
 * supplies the default named beside them.
 *
 * Plugins never link against libopenxpu: everything they need from the core
 * (logging, error messages, host memory) comes through ox__host. Backend
 * state lives behind the void * handles the backend hands out. */
#ifndef OX_CORE_BACKEND_H
#define OX_CORE_BACKEND_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "openxpu/device.h"
#include "openxpu/status.h"

#define OX_BACKEND_ABI_VERSION 1u
#define OX_BACKEND_ENTRY_SYMBOL "ox_backend_entry"

#if defined(__GNUC__) || defined(__clang__)
#define OX__PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#define OX__EXPORT __attribute__((visibility("default")))
#else
#define OX__PRINTF(fmt_index, first_arg)
#define OX__EXPORT
#endif

/* Kernel languages, each with its prelude in kernels/. */
typedef enum ox__kernel_language {
    OX__KERNEL_NONE = 0,   /* no portable kernels (the CPU runs native code) */
    OX__KERNEL_OPENCL = 1, /* OpenCL C 1.2 */
    OX__KERNEL_CUDA = 2,   /* CUDA C++ through NVRTC */
    OX__KERNEL_HIP = 3,    /* HIP through hiprtc */
    OX__KERNEL_C = 4       /* C11 through the system's compiler (the CPU's user kernels) */
} ox__kernel_language;

/* One argument of a kernel launch. */
typedef enum ox__arg_kind {
    OX__ARG_BUFFER = 1, /* backend buffer + byte offset: two kernel parameters */
    OX__ARG_SCALAR = 2, /* `size` bytes at `value`: 1, 2, 4 or 8 */
    OX__ARG_LOCAL = 3   /* `size` bytes of local memory per work-group (a LOCAL parameter) */
} ox__arg_kind;

typedef struct ox__kernel_arg {
    ox__arg_kind kind;
    void *buffer;       /* OX__ARG_BUFFER */
    uint64_t offset;    /* OX__ARG_BUFFER: bytes */
    const void *value;  /* OX__ARG_SCALAR */
    size_t size;        /* OX__ARG_SCALAR, OX__ARG_LOCAL: bytes */
} ox__kernel_arg;

/* A tensor as a native operator receives it: a backend buffer, a byte
 * offset, and the shape and byte strides of openxpu/tensor.h. */
typedef struct ox__native_tensor {
    void *buffer;
    uint64_t offset;
    int dtype;            /* ox_dtype */
    int64_t ne[4];
    int64_t nb[4];        /* bytes */
} ox__native_tensor;

/* What the core offers a backend. Valid from init until shutdown. */
typedef struct ox__host {
    uint32_t abi_version;
    uint32_t struct_size;
    void *core; /* opaque; pass back as the first argument below */
    /* Log a message through the context's log callback. */
    void (*log)(void *core, ox_log_level level, const char *fmt, ...) OX__PRINTF(3, 4);
    /* Record the reason for a failure in the context's error message and
     * return `status`, so a backend can write `return host->fail(...)`. */
    ox_status (*fail)(void *core, ox_status status, const char *fmt, ...) OX__PRINTF(3, 4);
    /* Host memory through the context's allocator. alloc returns NULL on
     * failure; free accepts NULL. */
    void *(*alloc)(void *core, size_t size);
    void (*free)(void *core, void *ptr, size_t size);
    /* Worker threads configured for the context (CPU-side parallelism). */
    int num_threads;
    /* The on-disk cache of compiled kernels. `key` is any text that names
     * everything the compiled form depends on (source, options, device,
     * driver version); the core hashes it and keeps it in the entry, checks
     * size and checksum on load, and treats any mismatch as a miss.
     * cache_load returns OX_OK with *data (host->alloc'ed, *size bytes) or
     * OX_ERR_NOT_FOUND. cache_store failures are logged, never fatal. */
    ox_status (*cache_load)(void *core, const char *key, void **data, size_t *size);
    void (*cache_store)(void *core, const char *key, const void *data, size_t size);
} ox__host;

/* One backend's table of functions. "device", "buffer", "queue" and "event"
 * below are the backend's own opaque handles. */
typedef struct ox__backend_iface {
    uint32_t abi_version; /* OX_BACKEND_ABI_VERSION the plugin was built for */
    uint32_t struct_size; /* sizeof(ox__backend_iface) the plugin was built with */
    const char *name;     /* short lowercase name: "cpu", "opencl", "cuda" */

    /* Start the backend for one context. *state receives its state. A
     * backend whose runtime is missing (no driver, no ICD) succeeds with zero
     * devices and says why through note() and debug logging. */
    ox_status (*init)(const ox__host *host, void **state);
    void (*shutdown)(void *state);
    /* Why the backend has no devices ("libcuda.so.1 not found"), or NULL. (optional: NULL) */
    const char *(*note)(void *state);

    int (*device_count)(void *state);
    /* Fill everything but id, backend and index, which the core sets. */
    ox_status (*device_info)(void *state, int index, ox_device_info *info);
    ox_status (*device_open)(void *state, int index, void **device);
    void (*device_close)(void *device);

    /* Memory. Size is > 0 and already checked against the device's limits. */
    ox_status (*buffer_alloc)(void *device, size_t size, void **buffer);
    void (*buffer_free)(void *device, void *buffer);

    /* In-order queues. Transfers name a backend buffer and a byte range that
     * the core has already checked. When `event` is not NULL, the backend
     * stores in it a new event for the completion of the operation. */
    ox_status (*queue_create)(void *device, void **queue);
    void (*queue_destroy)(void *queue); /* waits for the queue's work first */
    ox_status (*queue_finish)(void *queue);
    ox_status (*queue_write)(void *queue, void *buffer, size_t offset, const void *src, size_t size,
                             void **event);
    ox_status (*queue_read)(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                            void **event);
    ox_status (*queue_copy)(void *queue, void *dst, size_t dst_offset, void *src, size_t src_offset,
                            size_t size, void **event);
    /* pattern_size is 1, 2, 4, 8 or 16. (optional: the core writes from a
     * host staging buffer) */
    ox_status (*queue_fill)(void *queue, void *buffer, size_t offset, size_t size,
                            const void *pattern, size_t pattern_size, void **event);
    /* An event completing when all work enqueued so far has. */
    ox_status (*queue_marker)(void *queue, void **event);
    /* Make the queue wait for an event of the same backend. (optional: the
     * core waits on the host with event_wait) */
    ox_status (*queue_wait_event)(void *queue, void *event);

    ox_status (*event_wait)(void *event);
    ox_status (*event_query)(void *event, int *complete);
    void (*event_release)(void *event);

    /* ---- portable kernels (optional as a group: NULL for backends that run
     * operators natively only, such as the CPU) ---- */

    /* The kernel language the backend compiles: the core prepends the
     * matching prelude (kernels/prelude_<language>.h) to every source. */
    ox__kernel_language kernel_language;
    /* Compile `source` (NUL-terminated, prelude included) with `options`
     * (-D defines, space-separated) for the device. On failure return
     * OX_ERR_BUILD and store the compiler's log in *log, allocated with
     * host->alloc (the core frees it with host->free, size strlen+1); *log
     * may also be set on success (warnings). The backend caches compiled
     * programs on disk through host->cache_load/cache_store. */
    ox_status (*program_build)(void *device, const char *source, const char *options,
                               void **program, char **log);
    void (*program_free)(void *program);
    ox_status (*kernel_create)(void *program, const char *name, void **kernel);
    void (*kernel_free)(void *kernel);
    /* Launch groups[0..2] work-groups of local[0..2] work-items. Buffer
     * arguments become two kernel parameters: the buffer and its byte offset
     * (a ulong), see ARG_BUF in the prelude. */
    ox_status (*kernel_launch)(void *queue, void *kernel, const size_t groups[3],
                               const size_t local[3], int n_args, const ox__kernel_arg *args,
                               void **event);

    /* ---- native operators: vendor libraries as fast paths ---- */

    /* dst = op(a) . op(b) as ox_matmul defines it (openxpu/ops.h), with a
     * vendor BLAS. Return OX_ERR_UNSUPPORTED, without touching anything, for
     * any case the library does not handle (dtypes, strides, a missing
     * library): the core then runs the portable kernel. Not called when the
     * user sets OX_NATIVE_LIBS=0. (optional: NULL, always the kernel) */
    ox_status (*native_matmul)(void *queue, const ox__native_tensor *dst,
                               const ox__native_tensor *a, const ox__native_tensor *b,
                               unsigned flags);

    /* A buffer over `size` bytes of host memory at `ptr`, without a copy,
     * for devices that address host memory (the CPU; unified-memory GPUs).
     * The memory stays the caller's; buffer_free must not release it.
     * (optional: NULL, ox_buffer_wrap_host then fails with
     * OX_ERR_UNSUPPORTED) */
    ox_status (*buffer_wrap_host)(void *device, void *ptr, size_t size, void **buffer);

    /* Compile `source` (prelude included) for the backend's kernel language
     * without a device: the portability check of `ox kernel-check` on a
     * machine without the vendor's GPU. OX_OK or OX_ERR_BUILD, with *log as
     * for program_build; OX_ERR_UNSUPPORTED, saying why, when the compiler
     * is not there. `target` receives what was compiled for ("PTX for
     * compute_80, NVRTC 13.0"). (optional: NULL, checks need a device) */
    ox_status (*program_check)(void *state, const char *source, const char *options, char **log,
                               char *target, size_t target_cap);

    /* The PCI address of device `index` as "dddd:bb:dd.f" (domain, bus,
     * device, function in hexadecimal), NUL-terminated in bus_id[cap], so
     * the core can find the same GPU in the vendor's management library
     * (NVML, ROCm SMI) whatever order each one counts devices in.
     * OX_ERR_UNSUPPORTED when the driver cannot say. (optional: NULL, the
     * energy meter then matches by name; see src/core/energy.c) */
    ox_status (*device_pci_bus_id)(void *state, int index, char *bus_id, size_t cap);
} ox__backend_iface;

/* The required slots, for the loader's check: every slot except those
 * marked (optional) above. */
#define OX__BACKEND_REQUIRED_SLOTS(X)                                       \
    X(init) X(shutdown) X(device_count) X(device_info) X(device_open)       \
    X(device_close) X(buffer_alloc) X(buffer_free) X(queue_create)          \
    X(queue_destroy) X(queue_finish) X(queue_write) X(queue_read)           \
    X(queue_copy) X(queue_marker) X(event_wait) X(event_query)              \
    X(event_release)

/* Required when kernel_language is not OX__KERNEL_NONE. */
#define OX__BACKEND_KERNEL_SLOTS(X)                                         \
    X(program_build) X(program_free) X(kernel_create) X(kernel_free)        \
    X(kernel_launch)

/* The plugin entry point. Returns the table (static storage, valid while
 * the plugin stays loaded) or NULL if the plugin cannot speak
 * `core_abi_version`. */
typedef const ox__backend_iface *(*ox__backend_entry_fn)(uint32_t core_abi_version);

/* The built-in CPU backend's table. */
const ox__backend_iface *ox__cpu_backend(void);

#endif /* OX_CORE_BACKEND_H */
