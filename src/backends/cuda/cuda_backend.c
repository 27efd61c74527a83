/* The CUDA backend: NVIDIA GPUs through the driver API (libcuda.so.1) and
 * NVRTC, both opened at run time. Each device works in its primary context,
 * made current around every call that needs one (calls come from any
 * thread; the thread's own current context is restored after). Buffers are
 * plain cuMemAlloc memory (never managed memory), queues non-blocking
 * streams, events cuEvents without timing. The portable kernels are built
 * by NVRTC as cubins for the device's architecture, or as PTX for the
 * newest architecture NVRTC knows when it does not know the device's, and
 * kept in the core's disk cache. matmul may go through cuBLAS
 * (cuda_blas.c).
 *
 * Transfers from and to host memory are cuMemcpy*Async on pageable memory:
 * correct for the queue contract (the caller keeps the memory until the
 * event), though the driver stages them, so they overlap little.
 *
 * Every CUDA failure is reported as "cuda: cuXxx failed: CUDA_ERROR_NAME
 * (code) on <device>". */
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backends/cuda/cuda_api.h"
#include "core/backend.h"

#define MAX_PARAMETERS 256    /* kernel parameters of one launch */
#define MAX_OPTIONS 64        /* -D options of one build */
#define FILL_CHUNK ((size_t)4 << 20)

/* One usable device, found at init. */
typedef struct device_entry {
    CUdevice device;
    char target[24]; /* NVRTC architecture: "sm_90" (a cubin) or "compute_80" (PTX) */
    ox_device_info info;
} device_entry;

typedef struct cuda_state {
    const ox__host *host;
    ox__cuda_api api;
    device_entry *devices;
    size_t devices_size;
    int device_count;
    char nvrtc_version[16]; /* "13.0", in the cache key */
    char note[160];         /* why there are no devices, or "" */
} cuda_state;

typedef struct cuda_device {
    cuda_state *state;
    const device_entry *entry;
    CUcontext context;         /* the primary context, retained while open */
    pthread_mutex_t blas_lock; /* guards blas and serializes cuBLAS calls */
    ox__cublas *blas;          /* created on first native matmul */
} cuda_device;

typedef struct cuda_queue {
    cuda_device *device;
    CUstream stream;
    void *blas_handle; /* cuBLAS handle bound to the stream, made on first use */
} cuda_queue;

typedef struct cuda_event {
    cuda_device *device;
    CUevent event;
} cuda_event;

typedef struct cuda_program {
    cuda_device *device;
    CUmodule module;
} cuda_program;

/* cuLaunchKernel copies the parameters at the call, so launches of one
 * kernel need no lock. */
typedef struct cuda_kernel {
    cuda_device *device;
    CUfunction function;
    int parameters; /* count from the driver; -1 if it cannot tell (before 12.4) */
    unsigned short sizes[MAX_PARAMETERS];
    char name[128];
} cuda_kernel;

/* ---- helpers ------------------------------------------------------------------ */

static void *host_alloc(const cuda_state *st, size_t size)
{
    return st->host->alloc(st->host->core, size);
}

static void host_free(const cuda_state *st, void *ptr, size_t size)
{
    st->host->free(st->host->core, ptr, size);
}

static ox_status status_of(CUresult r)
{
    return r == CUDA_ERROR_OUT_OF_MEMORY ? OX_ERR_DEVICE_MEMORY : OX_ERR_BACKEND;
}

/* Record "cuda: <call> failed: NAME (code) on <device>[: detail]". */
static ox_status fail_cu(const cuda_device *d, ox_status status, const char *call, CUresult r,
                         const char *detail)
{
    const ox__host *host = d->state->host;
    return host->fail(host->core, status, "cuda: %s failed: %s (%d) on %s%s%s", call,
                      ox__cuda_error_name(&d->state->api, r), r, d->entry->info.name,
                      detail ? ": " : "", detail ? detail : "");
}

static ox_status fail_no_memory(const cuda_state *st, const char *what)
{
    return st->host->fail(st->host->core, OX_ERR_OUT_OF_MEMORY, "cuda: out of host memory for %s",
                          what);
}

/* Make the device's context current for one call; pop() restores the
 * thread's previous one. */
static ox_status push(const cuda_device *d)
{
    CUresult r = d->state->api.cuCtxPushCurrent_v2(d->context);
    return r == CUDA_SUCCESS ? OX_OK : fail_cu(d, status_of(r), "cuCtxPushCurrent", r, NULL);
}

static void pop(const cuda_device *d)
{
    CUcontext previous;
    d->state->api.cuCtxPopCurrent_v2(&previous);
}

static CUdeviceptr address(const void *buffer, size_t offset)
{
    return (CUdeviceptr)(uintptr_t)buffer + offset;
}

/* ---- devices -------------------------------------------------------------------- */

/* Fill `e` for device `ordinal`. Returns NULL, or why the device cannot be
 * used. `archs` are the architectures NVRTC can build cubins for. */
static const char *describe_device(cuda_state *st, int ordinal, const int *archs, int n_archs,
                                   int driver_version, device_entry *e)
{
    const ox__cuda_api *cu = &st->api;
    ox_device_info *info = &e->info;
    int major = 0, minor = 0, threads = 0, shared = 0, units = 0, clock = 0, integrated = 0;
    size_t memory = 0;
    memset(e, 0, sizeof *e);
    if (cu->cuDeviceGet(&e->device, ordinal) ||
        cu->cuDeviceGetName(info->name, (int)sizeof info->name, e->device) ||
        cu->cuDeviceTotalMem_v2(&memory, e->device) ||
        cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, e->device) ||
        cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, e->device) ||
        cu->cuDeviceGetAttribute(&threads, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, e->device) ||
        cu->cuDeviceGetAttribute(&shared, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK,
                                 e->device) ||
        cu->cuDeviceGetAttribute(&units, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, e->device))
        return "a device query failed";
    /* optional: CUDA 13 deprecates the clock query */
    if (cu->cuDeviceGetAttribute(&clock, CU_DEVICE_ATTRIBUTE_CLOCK_RATE, e->device)) clock = 0;
    if (cu->cuDeviceGetAttribute(&integrated, CU_DEVICE_ATTRIBUTE_INTEGRATED, e->device))
        integrated = 0;

    /* A cubin for the device's own architecture if NVRTC knows it, else PTX
     * for the newest one below it, which the driver compiles. */
    int cc = major * 10 + minor, below = 0, exact = 0;
    for (int i = 0; i < n_archs; i++) {
        exact |= archs[i] == cc;
        if (archs[i] < cc && archs[i] > below) below = archs[i];
    }
    if (exact) snprintf(e->target, sizeof e->target, "sm_%d", cc);
    else if (below) snprintf(e->target, sizeof e->target, "compute_%d", below);
    else {
        snprintf(info->note, sizeof info->note,
                 "compute capability %d.%d is older than NVRTC %s supports (sm_%d and up)", major,
                 minor, st->nvrtc_version, archs[0]);
        return info->note;
    }

    info->type = OX_DEVICE_GPU;
    snprintf(info->vendor, sizeof info->vendor, "NVIDIA");
    snprintf(info->driver_version, sizeof info->driver_version, "CUDA %d.%d",
             driver_version / 1000, driver_version % 1000 / 10);
    info->memory_bytes = memory;
    info->max_alloc_bytes = memory; /* no limit below the memory size */
    info->local_memory_bytes = (uint64_t)shared;
    info->compute_units = (uint32_t)units;
    info->max_work_group_size = (uint32_t)threads;
    info->clock_mhz = (uint32_t)(clock / 1000);
    info->features = OX_FEATURE_BIT(OX_FEATURE_FP64) | OX_FEATURE_BIT(OX_FEATURE_SUBGROUPS);
    if (cc >= 53) info->features |= OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH);
    if (cc >= 61) info->features |= OX_FEATURE_BIT(OX_FEATURE_INT8_DOT);
    if (cc >= 80) info->features |= OX_FEATURE_BIT(OX_FEATURE_BF16_ARITH);
    if (integrated) info->features |= OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY);
    snprintf(info->note, sizeof info->note, "compute capability %d.%d; kernels: %s %s from NVRTC %s",
             major, minor, e->target, exact ? "cubins" : "PTX", st->nvrtc_version);
    return NULL;
}

/* Find every usable device. Leaves a note when there is none. */
static void discover(cuda_state *st)
{
    const ox__cuda_api *cu = &st->api;
    int count = 0, driver_version = 0, major = 0, minor = 0, n_archs = 0, skipped = 0;
    int archs[64];
    char skip_why[sizeof st->devices->info.note] = "";
    CUresult r = cu->cuInit(0);
    if (r == CUDA_SUCCESS) r = cu->cuDeviceGetCount(&count);
    if (r != CUDA_SUCCESS) {
        snprintf(st->note, sizeof st->note, "no CUDA device: cuInit failed: %s (%d)",
                 ox__cuda_error_name(cu, r), r);
        return;
    }
    if (count == 0) {
        snprintf(st->note, sizeof st->note, "no CUDA device");
        return;
    }
    if (!ox__cuda_api_load_nvrtc(&st->api, st->note, sizeof st->note)) return;
    cu->cuDriverGetVersion(&driver_version);
    cu->nvrtcVersion(&major, &minor);
    snprintf(st->nvrtc_version, sizeof st->nvrtc_version, "%d.%d", major, minor);
    if (cu->nvrtcGetNumSupportedArchs(&n_archs) || n_archs < 1 || n_archs > 64 ||
        cu->nvrtcGetSupportedArchs(archs)) {
        snprintf(st->note, sizeof st->note, "NVRTC %s lists no GPU architecture", st->nvrtc_version);
        return;
    }
    st->devices_size = (size_t)count * sizeof *st->devices;
    st->devices = host_alloc(st, st->devices_size);
    if (!st->devices) {
        snprintf(st->note, sizeof st->note, "out of host memory listing CUDA devices");
        return;
    }
    for (int i = 0; i < count; i++) {
        device_entry *e = &st->devices[st->device_count];
        const char *why = describe_device(st, i, archs, n_archs, driver_version, e);
        if (!why) {
            st->host->log(st->host->core, OX_LOG_DEBUG, "cuda: device %d: %s (%s)",
                          st->device_count, e->info.name, e->info.note);
            st->device_count++;
            continue;
        }
        skipped++;
        snprintf(skip_why, sizeof skip_why, "%s", why); /* `why` may live in the reused slot */
        st->host->log(st->host->core, OX_LOG_DEBUG, "cuda: device %d skipped: %s", i, why);
    }
    if (st->device_count == 0)
        snprintf(st->note, sizeof st->note, "no usable CUDA device: %d skipped (%.100s)", skipped,
                 skip_why);
}

static ox_status cuda_init(const ox__host *host, void **state)
{
    cuda_state *st = host->alloc(host->core, sizeof *st);
    if (!st) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cuda: out of host memory");
    memset(st, 0, sizeof *st);
    st->host = host;
    if (ox__cuda_api_load_driver(&st->api, st->note, sizeof st->note)) discover(st);
    if (st->note[0]) host->log(host->core, OX_LOG_DEBUG, "cuda: %s", st->note);
    *state = st;
    return OX_OK;
}

/* The driver and NVRTC stay loaded (they start threads), as with OpenCL. */
static void cuda_shutdown(void *state)
{
    cuda_state *st = state;
    if (!st) return;
    if (st->devices) host_free(st, st->devices, st->devices_size);
    host_free(st, st, sizeof *st);
}

static const char *cuda_note(void *state)
{
    const cuda_state *st = state;
    return st->note[0] ? st->note : NULL;
}

static int cuda_device_count(void *state)
{
    return ((const cuda_state *)state)->device_count;
}

static ox_status cuda_device_info(void *state, int index, ox_device_info *info)
{
    size_t struct_size = info->struct_size;
    *info = ((const cuda_state *)state)->devices[index].info;
    info->struct_size = struct_size;
    return OX_OK;
}

static ox_status cuda_device_pci_bus_id(void *state, int index, char *bus_id, size_t cap)
{
    const cuda_state *st = state;
    const device_entry *e = &st->devices[index];
    char text[32] = "";
    CUresult r = st->api.cuDeviceGetPCIBusId ? st->api.cuDeviceGetPCIBusId(text, (int)sizeof text,
                                                                         e->device)
                                             : CUDA_ERROR_NOT_FOUND;
    if (r != CUDA_SUCCESS || !text[0])
        return st->host->fail(st->host->core, OX_ERR_UNSUPPORTED,
                              "cuda: the driver gives no PCI address for %s", e->info.name);
    snprintf(bus_id, cap, "%s", text);
    return OX_OK;
}

static ox_status cuda_device_open(void *state, int index, void **device)
{
    cuda_state *st = state;
    cuda_device *d = host_alloc(st, sizeof *d);
    if (!d) return fail_no_memory(st, "a device");
    memset(d, 0, sizeof *d);
    d->state = st;
    d->entry = &st->devices[index];
    CUresult r = st->api.cuDevicePrimaryCtxRetain(&d->context, d->entry->device);
    if (r != CUDA_SUCCESS) {
        ox_status s = fail_cu(d, status_of(r), "cuDevicePrimaryCtxRetain", r, NULL);
        host_free(st, d, sizeof *d);
        return s;
    }
    pthread_mutex_init(&d->blas_lock, NULL);
    *device = d;
    return OX_OK;
}

static void cuda_device_close(void *device)
{
    cuda_device *d = device;
    const ox__cuda_api *cu = &d->state->api;
    ox__cublas_free(d->blas, d->state->host);
    cu->cuDevicePrimaryCtxRelease_v2(d->entry->device);
    pthread_mutex_destroy(&d->blas_lock);
    host_free(d->state, d, sizeof *d);
}

/* ---- memory ------------------------------------------------------------------- */

static ox_status cuda_buffer_alloc(void *device, size_t size, void **buffer)
{
    cuda_device *d = device;
    CUdeviceptr memory = 0;
    ox_status s = push(d);
    if (s != OX_OK) return s;
    CUresult r = d->state->api.cuMemAlloc_v2(&memory, size);
    pop(d);
    if (r != CUDA_SUCCESS) {
        char detail[64];
        snprintf(detail, sizeof detail, "%zu bytes", size);
        return fail_cu(d, status_of(r), "cuMemAlloc", r, detail);
    }
    *buffer = (void *)(uintptr_t)memory;
    return OX_OK;
}

static void cuda_buffer_free(void *device, void *buffer)
{
    cuda_device *d = device;
    if (d->state->api.cuCtxPushCurrent_v2(d->context) != CUDA_SUCCESS) return;
    d->state->api.cuMemFree_v2(address(buffer, 0));
    pop(d);
}

/* ---- queues and events ------------------------------------------------------------ */

static ox_status cuda_queue_create(void *device, void **queue)
{
    cuda_device *d = device;
    cuda_queue *q = host_alloc(d->state, sizeof *q);
    if (!q) return fail_no_memory(d->state, "a queue");
    q->device = d;
    q->blas_handle = NULL;
    ox_status s = push(d);
    if (s == OX_OK) {
        CUresult r = d->state->api.cuStreamCreate(&q->stream, CU_STREAM_NON_BLOCKING);
        pop(d);
        if (r != CUDA_SUCCESS) s = fail_cu(d, status_of(r), "cuStreamCreate", r, NULL);
    }
    if (s != OX_OK) {
        host_free(d->state, q, sizeof *q);
        return s;
    }
    *queue = q;
    return OX_OK;
}

static void cuda_queue_destroy(void *queue)
{
    cuda_queue *q = queue;
    const ox__cuda_api *cu = &q->device->state->api;
    cu->cuStreamSynchronize(q->stream);
    if (q->blas_handle && cu->cuCtxPushCurrent_v2(q->device->context) == CUDA_SUCCESS) {
        ox__cublas_release(q->device->blas, q->blas_handle);
        pop(q->device);
    }
    cu->cuStreamDestroy_v2(q->stream);
    host_free(q->device->state, q, sizeof *q);
}

static ox_status cuda_queue_finish(void *queue)
{
    cuda_queue *q = queue;
    CUresult r = q->device->state->api.cuStreamSynchronize(q->stream);
    return r == CUDA_SUCCESS ? OX_OK
                             : fail_cu(q->device, status_of(r), "cuStreamSynchronize", r, NULL);
}

/* Record a new event on q (its context current) into *out. If that fails,
 * the queue is drained first, so the caller may reuse its memory. */
static ox_status record_event(cuda_queue *q, void **out)
{
    const ox__cuda_api *cu = &q->device->state->api;
    const char *call = "cuEventCreate";
    cuda_event *e = host_alloc(q->device->state, sizeof *e);
    CUresult r = e ? cu->cuEventCreate(&e->event, CU_EVENT_DISABLE_TIMING) : CUDA_SUCCESS;
    if (e && r == CUDA_SUCCESS) {
        call = "cuEventRecord";
        r = cu->cuEventRecord(e->event, q->stream);
        if (r != CUDA_SUCCESS) cu->cuEventDestroy_v2(e->event);
    }
    if (e && r == CUDA_SUCCESS) {
        e->device = q->device;
        *out = e;
        return OX_OK;
    }
    cu->cuStreamSynchronize(q->stream);
    if (!e) return fail_no_memory(q->device->state, "an event");
    host_free(q->device->state, e, sizeof *e);
    return fail_cu(q->device, status_of(r), call, r, NULL);
}

/* The result of an enqueue call: its event handed out (when the core asked
 * for one: `out` not NULL), or its error. */
static ox_status enqueued(cuda_queue *q, CUresult r, const char *call, void **out)
{
    if (r != CUDA_SUCCESS) return fail_cu(q->device, status_of(r), call, r, NULL);
    return out ? record_event(q, out) : OX_OK;
}

static ox_status cuda_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                  size_t size, void **event)
{
    cuda_queue *q = queue;
    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    CUresult r = q->device->state->api.cuMemcpyHtoDAsync_v2(address(buffer, offset), src, size,
                                                            q->stream);
    s = enqueued(q, r, "cuMemcpyHtoDAsync", event);
    pop(q->device);
    return s;
}

static ox_status cuda_queue_read(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                                 void **event)
{
    cuda_queue *q = queue;
    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    CUresult r = q->device->state->api.cuMemcpyDtoHAsync_v2(dst, address(buffer, offset), size,
                                                            q->stream);
    s = enqueued(q, r, "cuMemcpyDtoHAsync", event);
    pop(q->device);
    return s;
}

static ox_status cuda_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                 size_t src_offset, size_t size, void **event)
{
    cuda_queue *q = queue;
    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    CUresult r = q->device->state->api.cuMemcpyDtoDAsync_v2(
        address(dst, dst_offset), address(src, src_offset), size, q->stream);
    s = enqueued(q, r, "cuMemcpyDtoDAsync", event);
    pop(q->device);
    return s;
}

/* A fill the memset calls cannot do (8- and 16-byte patterns, misaligned
 * ones): copies of a host buffer holding the pattern, waited for before the
 * buffer is freed. Rare, so simple rather than fast. */
static ox_status fill_staged(cuda_queue *q, CUdeviceptr dst, size_t size,
                             const unsigned char *pattern, size_t pattern_size)
{
    const cuda_state *st = q->device->state;
    size_t chunk = size < FILL_CHUNK ? size : FILL_CHUNK; /* a multiple of pattern_size */
    unsigned char *stage = host_alloc(st, chunk);
    if (!stage) return fail_no_memory(st, "a fill's staging buffer");
    for (size_t i = 0; i < chunk; i += pattern_size) memcpy(stage + i, pattern, pattern_size);
    CUresult r = CUDA_SUCCESS;
    for (size_t done = 0; done < size && r == CUDA_SUCCESS; done += chunk)
        r = st->api.cuMemcpyHtoDAsync_v2(dst + done, stage, size - done < chunk ? size - done : chunk,
                                         q->stream);
    CUresult waited = st->api.cuStreamSynchronize(q->stream);
    host_free(st, stage, chunk);
    if (r != CUDA_SUCCESS) return fail_cu(q->device, status_of(r), "cuMemcpyHtoDAsync", r, "fill");
    if (waited != CUDA_SUCCESS)
        return fail_cu(q->device, status_of(waited), "cuStreamSynchronize", waited, "fill");
    return OX_OK;
}

static ox_status cuda_queue_fill(void *queue, void *buffer, size_t offset, size_t size,
                                 const void *pattern, size_t pattern_size, void **event)
{
    cuda_queue *q = queue;
    const ox__cuda_api *cu = &q->device->state->api;
    const unsigned char *p = pattern;
    CUdeviceptr dst = address(buffer, offset);
    size_t same = 1;
    while (same < pattern_size && p[same] == p[0]) same++;
    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    CUresult r = CUDA_SUCCESS;
    const char *call = "cuMemsetD8Async";
    if (same == pattern_size) {
        r = cu->cuMemsetD8Async(dst, p[0], size, q->stream);
    } else if (pattern_size == 2 && dst % 2 == 0) {
        unsigned short value;
        memcpy(&value, p, sizeof value);
        call = "cuMemsetD16Async";
        r = cu->cuMemsetD16Async(dst, value, size / 2, q->stream);
    } else if (pattern_size == 4 && dst % 4 == 0) {
        unsigned int value;
        memcpy(&value, p, sizeof value);
        call = "cuMemsetD32Async";
        r = cu->cuMemsetD32Async(dst, value, size / 4, q->stream);
    } else {
        s = fill_staged(q, dst, size, p, pattern_size);
    }
    if (s == OX_OK) s = enqueued(q, r, call, event);
    pop(q->device);
    return s;
}

static ox_status cuda_queue_marker(void *queue, void **event)
{
    cuda_queue *q = queue;
    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    s = record_event(q, event);
    pop(q->device);
    return s;
}

/* cuStreamWaitEvent takes events of any context and device, so every wait
 * stays on the device. */
static ox_status cuda_queue_wait_event(void *queue, void *event)
{
    cuda_queue *q = queue;
    const cuda_event *e = event;
    CUresult r = q->device->state->api.cuStreamWaitEvent(q->stream, e->event, 0);
    return r == CUDA_SUCCESS ? OX_OK
                             : fail_cu(q->device, status_of(r), "cuStreamWaitEvent", r, NULL);
}

static ox_status cuda_event_wait(void *event)
{
    cuda_event *e = event;
    CUresult r = e->device->state->api.cuEventSynchronize(e->event);
    return r == CUDA_SUCCESS ? OX_OK
                             : fail_cu(e->device, status_of(r), "cuEventSynchronize", r, NULL);
}

static ox_status cuda_event_query(void *event, int *complete)
{
    cuda_event *e = event;
    CUresult r = e->device->state->api.cuEventQuery(e->event);
    if (r != CUDA_SUCCESS && r != CUDA_ERROR_NOT_READY)
        return fail_cu(e->device, status_of(r), "cuEventQuery", r, NULL);
    *complete = r == CUDA_SUCCESS;
    return OX_OK;
}

static void cuda_event_release(void *event)
{
    cuda_event *e = event;
    e->device->state->api.cuEventDestroy_v2(e->event);
    host_free(e->device->state, e, sizeof *e);
}

/* ---- programs -------------------------------------------------------------------- */

/* The concatenation of n strings, host-allocated (*size bytes). */
static char *join(const cuda_state *st, const char *const *parts, size_t n, size_t *size)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++) total += strlen(parts[i]);
    char *text = host_alloc(st, total);
    if (!text) return NULL;
    char *end = text;
    for (size_t i = 0; i < n; i++) end += strlen(strcpy(end, parts[i]));
    *size = total;
    return text;
}

/* True if the core offers the kernel cache. */
static int has_cache(const ox__host *host)
{
    return host->struct_size >= offsetof(ox__host, cache_store) + sizeof host->cache_store &&
           host->cache_load && host->cache_store;
}

static int is_cubin(const device_entry *e)
{
    return strncmp(e->target, "sm_", 3) == 0;
}

/* NVRTC's log, trimmed, allocated as strlen + 1 bytes (as the core frees
 * it); NULL if empty. */
static char *compile_log(const cuda_state *st, nvrtcProgram program)
{
    size_t n = 0;
    if (st->api.nvrtcGetProgramLogSize(program, &n) != NVRTC_SUCCESS || n <= 1) return NULL;
    char *raw = host_alloc(st, n), *log = NULL;
    if (!raw) return NULL;
    if (st->api.nvrtcGetProgramLog(program, raw) == NVRTC_SUCCESS) {
        raw[n - 1] = '\0';
        size_t len = strlen(raw);
        while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == ' ' || raw[len - 1] == '\r'))
            len--;
        log = len ? host_alloc(st, len + 1) : NULL;
        if (log) {
            memcpy(log, raw, len);
            log[len] = '\0';
        }
    }
    host_free(st, raw, n);
    return log;
}

/* What NVRTC compiles for: a device's target, or a GPU-less check's. */
typedef struct compile_target {
    const char *target; /* "sm_90", "compute_80" */
    const char *name;   /* the device, in messages */
    bool cubin;
} compile_target;

/* Compile with NVRTC for `to`. On success *image holds the cubin or the PTX
 * (host memory, *size bytes). */
static ox_status compile(const cuda_state *st, compile_target to, const char *source,
                         const char *options, void **image, size_t *size, char **log)
{
    const ox__cuda_api *cu = &st->api;
    const char *argv[MAX_OPTIONS + 5];
    char arch[48], detail[256];
    int argc = 0;
    ox_status s = OX_OK;
    snprintf(arch, sizeof arch, "--gpu-architecture=%s", to.target);
    snprintf(detail, sizeof detail, "options '%.200s'", options);
    argv[argc++] = arch;
    argv[argc++] = "--std=c++17";
    /* a reproducible build (kernels/common.h, OX_REPRO): no contraction, and
     * division and square root correctly rounded (NVRTC's defaults, said) */
    bool repro = strstr(options, "-DOX_REPRO=1") != NULL;
    if (repro) {
        argv[argc++] = "--fmad=false";
        argv[argc++] = "--prec-div=true";
        argv[argc++] = "--prec-sqrt=true";
    }
    int fixed = argc;
    size_t copy_size = strlen(options) + 1;
    char *copy = host_alloc(st, copy_size);
    if (!copy) return fail_no_memory(st, "build options");
    memcpy(copy, options, copy_size);
    for (char *p = copy; *p;) { /* split at blanks: -D options hold none */
        while (*p == ' ') *p++ = '\0';
        if (!*p) break;
        if (argc - fixed == MAX_OPTIONS) {
            host_free(st, copy, copy_size);
            return st->host->fail(st->host->core, OX_ERR_INVALID,
                                  "cuda: more than %d build options: %s", MAX_OPTIONS, detail);
        }
        argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    nvrtcProgram program = NULL;
    const char *call = "nvrtcCreateProgram";
    nvrtcResult r = cu->nvrtcCreateProgram(&program, source, "openxpu.cu", 0, NULL, NULL);
    if (r == NVRTC_SUCCESS) {
        call = "nvrtcCompileProgram";
        r = cu->nvrtcCompileProgram(program, argc, argv);
        *log = compile_log(st, program);
    }
    if (r == NVRTC_SUCCESS) {
        call = to.cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX";
        r = to.cubin ? cu->nvrtcGetCUBINSize(program, size) : cu->nvrtcGetPTXSize(program, size);
        *image = r == NVRTC_SUCCESS ? host_alloc(st, *size) : NULL;
        if (r == NVRTC_SUCCESS && !*image) s = fail_no_memory(st, "a compiled program");
        else if (r == NVRTC_SUCCESS)
            r = to.cubin ? cu->nvrtcGetCUBIN(program, *image) : cu->nvrtcGetPTX(program, *image);
        if (r != NVRTC_SUCCESS && *image) host_free(st, *image, *size);
    }
    if (r != NVRTC_SUCCESS)
        s = st->host->fail(st->host->core,
                           r == NVRTC_ERROR_COMPILATION || r == NVRTC_ERROR_INVALID_OPTION
                               ? OX_ERR_BUILD
                               : OX_ERR_BACKEND,
                           "cuda: %s failed: %s (%d) on %s (NVRTC %s, %s): %s", call,
                           cu->nvrtcGetErrorString(r), r, to.name, st->nvrtc_version, to.target,
                           detail);
    if (program) cu->nvrtcDestroyProgram(&program);
    host_free(st, copy, copy_size);
    return s;
}

/* The module from a cached image, or NULL on a miss. An image that is not
 * a cubin (ELF) or NUL-terminated PTX is never handed to the driver; one the
 * driver refuses is a miss too. */
static CUmodule load_cached(const cuda_device *d, const char *key)
{
    const cuda_state *st = d->state;
    void *data = NULL;
    size_t size = 0;
    CUmodule module = NULL;
    CUresult r = CUDA_ERROR_INVALID_PTX;
    if (st->host->cache_load(st->host->core, key, &data, &size) != OX_OK) return NULL;
    const char *image = data;
    int well_formed = is_cubin(d->entry) ? size >= 4 && memcmp(image, "\177ELF", 4) == 0
                                         : size >= 1 && image[size - 1] == '\0';
    if (well_formed) r = st->api.cuModuleLoadData(&module, data);
    host_free(st, data, size);
    if (r == CUDA_SUCCESS) return module;
    st->host->log(st->host->core, OX_LOG_DEBUG,
                  "cuda: cached binary refused on %s (%s), building from source",
                  d->entry->info.name, well_formed ? ox__cuda_error_name(&st->api, r)
                                                   : "not a cubin or PTX");
    return NULL;
}

/* Load a freshly compiled image, and cache it. */
static ox_status load_image(const cuda_device *d, const void *image, size_t size, const char *key,
                            CUmodule *module)
{
    const cuda_state *st = d->state;
    CUresult r = st->api.cuModuleLoadData(module, image);
    if (r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
        char detail[160];
        snprintf(detail, sizeof detail, "PTX from NVRTC %s needs a driver at least as new (%s)",
                 st->nvrtc_version, d->entry->info.driver_version);
        return fail_cu(d, OX_ERR_BUILD, "cuModuleLoadData", r, detail);
    }
    if (r != CUDA_SUCCESS) {
        char detail[160];
        snprintf(detail, sizeof detail, "%s from NVRTC %s, driver %s", d->entry->target,
                 st->nvrtc_version, d->entry->info.driver_version);
        return fail_cu(d, r == CUDA_ERROR_NO_BINARY_FOR_GPU || r == CUDA_ERROR_INVALID_PTX ||
                                  r == CUDA_ERROR_INVALID_IMAGE
                              ? OX_ERR_BUILD
                              : status_of(r),
                       "cuModuleLoadData", r, detail);
    }
    if (key) st->host->cache_store(st->host->core, key, image, size);
    return OX_OK;
}

static ox_status cuda_program_build(void *device, const char *source, const char *options,
                                    void **program, char **log)
{
    cuda_device *d = device;
    const cuda_state *st = d->state;
    const device_entry *e = d->entry;
    size_t key_size = 0;
    ox_status s = OX_OK;
    *log = NULL;
    if (!options) options = "";
    /* Everything the image depends on; the core hashes it. Without memory
     * for it the build just goes uncached. */
    char *key = NULL;
    if (has_cache(st->host)) {
        const char *parts[] = {"cuda|", e->info.name, "|", e->target, "|", e->info.driver_version,
                               "|NVRTC ", st->nvrtc_version, "|--std=c++17 ", options, "|",
                               source};
        key = join(st, parts, sizeof parts / sizeof parts[0], &key_size);
    }
    cuda_program *p = host_alloc(st, sizeof *p);
    if (!p) {
        s = fail_no_memory(st, "a program");
        goto out;
    }
    p->device = d;
    if ((s = push(d)) != OX_OK) goto err_free_program;
    p->module = key ? load_cached(d, key) : NULL;
    if (!p->module) {
        void *image = NULL;
        size_t size = 0;
        compile_target to = {d->entry->target, d->entry->info.name, is_cubin(d->entry)};
        s = compile(d->state, to, source, options, &image, &size, log);
        if (s == OX_OK) {
            s = load_image(d, image, size, key, &p->module);
            host_free(st, image, size);
        }
    }
    pop(d);
    if (s != OX_OK) goto err_free_program;
    *program = p;
    goto out;

err_free_program:
    host_free(st, p, sizeof *p);
out:
    if (key) host_free(st, key, key_size);
    return s;
}

static void cuda_program_free(void *program)
{
    cuda_program *p = program;
    cuda_device *d = p->device;
    if (d->state->api.cuCtxPushCurrent_v2(d->context) == CUDA_SUCCESS) {
        d->state->api.cuModuleUnload(p->module);
        pop(d);
    }
    host_free(d->state, p, sizeof *p);
}

/* ---- kernels ----------------------------------------------------------------------- */

static ox_status cuda_kernel_create(void *program, const char *name, void **kernel)
{
    cuda_program *p = program;
    cuda_device *d = p->device;
    const ox__cuda_api *cu = &d->state->api;
    char detail[192];
    CUfunction function;
    CUresult r = cu->cuModuleGetFunction(&function, p->module, name);
    if (r != CUDA_SUCCESS) {
        snprintf(detail, sizeof detail,
                 r == CUDA_ERROR_NOT_FOUND ? "no kernel named '%.128s' in the program"
                                           : "kernel '%.128s'",
                 name);
        return fail_cu(d, r == CUDA_ERROR_NOT_FOUND ? OX_ERR_NOT_FOUND : status_of(r),
                       "cuModuleGetFunction", r, detail);
    }
    cuda_kernel *k = host_alloc(d->state, sizeof *k);
    if (!k) return fail_no_memory(d->state, "a kernel");
    k->device = d;
    k->function = function;
    k->parameters = -1;
    if (cu->cuFuncGetParamInfo) { /* past the last parameter it says INVALID_VALUE */
        size_t offset, size;
        int n = 0;
        while (n < MAX_PARAMETERS &&
               (r = cu->cuFuncGetParamInfo(function, (size_t)n, &offset, &size)) == CUDA_SUCCESS)
            k->sizes[n++] = (unsigned short)size;
        if (r == CUDA_ERROR_INVALID_VALUE) k->parameters = n;
    }
    snprintf(k->name, sizeof k->name, "%s", name);
    *kernel = k;
    return OX_OK;
}

static void cuda_kernel_free(void *kernel)
{
    cuda_kernel *k = kernel;
    host_free(k->device->state, k, sizeof *k);
}

/* Check one argument against the kernel's parameters from `first` on (when
 * the driver told them). Returns 0 if it does not fit. */
static int argument_fits(const cuda_kernel *k, const ox__kernel_arg *a, int first)
{
    if (k->parameters < 0) return 1;
    if (a->kind == OX__ARG_BUFFER)
        return first + 1 < k->parameters && k->sizes[first] == 8 && k->sizes[first + 1] == 8;
    if (a->kind == OX__ARG_LOCAL) /* the generated entry point takes its offset */
        return first < k->parameters && k->sizes[first] == 8;
    return first < k->parameters && k->sizes[first] == a->size;
}

static ox_status cuda_kernel_launch(void *queue, void *kernel, const size_t groups[3],
                                    const size_t local[3], int n_args,
                                    const ox__kernel_arg *args, void **event)
{
    cuda_queue *q = queue;
    cuda_kernel *k = kernel;
    const ox__host *host = q->device->state->host;
    void *parameters[MAX_PARAMETERS];
    CUdeviceptr pointers[MAX_PARAMETERS];
    uint64_t local_offsets[MAX_PARAMETERS];
    uint64_t local_bytes = 0; /* LOCAL parameters: pieces of dynamic shared memory */
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (local[i] == 0 || local[i] > UINT_MAX || groups[i] > UINT_MAX)
            return host->fail(host->core, OX_ERR_INVALID,
                              "cuda: kernel '%s': %zu groups of %zu work-items in dimension %d "
                              "is not a valid range",
                              k->name, groups[i], local[i], i);
    if (!groups[0] || !groups[1] || !groups[2]) /* nothing to run */
        return event ? cuda_queue_marker(q, event) : OX_OK;
    for (int i = 0; i < n_args; i++) {
        const ox__kernel_arg *a = &args[i];
        if (a->kind != OX__ARG_BUFFER && a->kind != OX__ARG_SCALAR && a->kind != OX__ARG_LOCAL)
            return host->fail(host->core, OX_ERR_INVALID,
                              "cuda: kernel '%s', argument %d: of no known kind", k->name, i);
        if (n + 2 > MAX_PARAMETERS)
            return host->fail(host->core, OX_ERR_UNSUPPORTED,
                              "cuda: kernel '%s': more than %d parameters", k->name,
                              MAX_PARAMETERS);
        if (!argument_fits(k, a, n))
            return host->fail(host->core, OX_ERR_INVALID,
                              "cuda: kernel '%s', argument %d (parameter %d) does not match the "
                              "kernel's parameters (%s of %zu bytes given)",
                              k->name, i, n, a->kind == OX__ARG_BUFFER ? "a buffer" : "a scalar",
                              a->kind == OX__ARG_BUFFER ? (size_t)16 : a->size);
        if (a->kind == OX__ARG_BUFFER) {
            pointers[i] = address(a->buffer, 0);
            parameters[n++] = &pointers[i];
            parameters[n++] = (void *)&a->offset;
        } else if (a->kind == OX__ARG_LOCAL) {
            local_bytes = (local_bytes + 15) & ~(uint64_t)15;
            local_offsets[i] = local_bytes;
            local_bytes += a->size;
            parameters[n++] = &local_offsets[i];
        } else {
            parameters[n++] = (void *)a->value;
        }
    }
    if (k->parameters >= 0 && n != k->parameters)
        return host->fail(host->core, OX_ERR_INVALID,
                          "cuda: kernel '%s' has %d parameters but the launch gives %d from %d "
                          "arguments (a buffer is two: pointer and byte offset)",
                          k->name, k->parameters, n, n_args);

    ox_status s = push(q->device);
    if (s != OX_OK) return s;
    CUresult r = q->device->state->api.cuLaunchKernel(
        k->function, (unsigned)groups[0], (unsigned)groups[1], (unsigned)groups[2],
        (unsigned)local[0], (unsigned)local[1], (unsigned)local[2], (unsigned)local_bytes,
        q->stream, parameters, NULL);
    if (r != CUDA_SUCCESS) {
        char detail[256];
        snprintf(detail, sizeof detail, "kernel '%s', %zu x %zu x %zu groups of %zu x %zu x %zu",
                 k->name, groups[0], groups[1], groups[2], local[0], local[1], local[2]);
        s = fail_cu(q->device, status_of(r), "cuLaunchKernel", r, detail);
    } else if (event) {
        s = record_event(q, event);
    }
    pop(q->device);
    return s;
}

/* ---- native operators ---------------------------------------------------------------- */

static ox_status cuda_native_matmul(void *queue, const ox__native_tensor *dst,
                                    const ox__native_tensor *a, const ox__native_tensor *b,
                                    unsigned flags)
{
    cuda_queue *q = queue;
    cuda_device *d = q->device;
    ox_status s = push(d);
    if (s != OX_OK) return s;
    pthread_mutex_lock(&d->blas_lock);
    s = ox__cublas_matmul(&d->blas, &q->blas_handle, d->state->host, d->entry->info.name,
                          q->stream, dst, a, b, flags);
    pthread_mutex_unlock(&d->blas_lock);
    pop(d);
    return s;
}

/* A user's kernel compiled to PTX without a GPU: NVRTC alone. */
#define CHECK_TARGET "compute_80"

static ox_status cuda_program_check(void *state, const char *source, const char *options,
                                    char **log, char *target, size_t target_cap)
{
    cuda_state *st = state;
    *log = NULL;
    if (!st->api.nvrtc) {
        char why[256];
        if (!ox__cuda_api_load_nvrtc(&st->api, why, sizeof why))
            return st->host->fail(st->host->core, OX_ERR_UNSUPPORTED, "cuda: %s", why);
        int major = 0, minor = 0;
        st->api.nvrtcVersion(&major, &minor);
        snprintf(st->nvrtc_version, sizeof st->nvrtc_version, "%d.%d", major, minor);
    }
    snprintf(target, target_cap, "PTX for %s, NVRTC %s", CHECK_TARGET, st->nvrtc_version);
    compile_target to = {CHECK_TARGET, "no device", false};
    void *image = NULL;
    size_t size = 0;
    ox_status s = compile(st, to, source, options, &image, &size, log);
    if (s == OX_OK) host_free(st, image, size);
    return s;
}

static const ox__backend_iface cuda_iface = {
    .abi_version = OX_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "cuda",
    .init = cuda_init,
    .shutdown = cuda_shutdown,
    .note = cuda_note,
    .device_count = cuda_device_count,
    .device_info = cuda_device_info,
    .device_open = cuda_device_open,
    .device_close = cuda_device_close,
    .buffer_alloc = cuda_buffer_alloc,
    .buffer_free = cuda_buffer_free,
    .queue_create = cuda_queue_create,
    .queue_destroy = cuda_queue_destroy,
    .queue_finish = cuda_queue_finish,
    .queue_write = cuda_queue_write,
    .queue_read = cuda_queue_read,
    .queue_copy = cuda_queue_copy,
    .queue_fill = cuda_queue_fill,
    .queue_marker = cuda_queue_marker,
    .queue_wait_event = cuda_queue_wait_event,
    .event_wait = cuda_event_wait,
    .event_query = cuda_event_query,
    .event_release = cuda_event_release,
    .kernel_language = OX__KERNEL_CUDA,
    .program_build = cuda_program_build,
    .program_free = cuda_program_free,
    .kernel_create = cuda_kernel_create,
    .kernel_free = cuda_kernel_free,
    .kernel_launch = cuda_kernel_launch,
    .program_check = cuda_program_check,
    .native_matmul = cuda_native_matmul,
    .device_pci_bus_id = cuda_device_pci_bus_id,
};

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version)
{
    return core_abi_version == OX_BACKEND_ABI_VERSION ? &cuda_iface : NULL;
}
