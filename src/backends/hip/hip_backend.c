/* The HIP backend: AMD GPUs and Hygon DCUs (whose DTK is HIP-compatible)
 * through the HIP runtime (libamdhip64) and hiprtc, both opened at run time.
 * The same shape as the CUDA backend: plain hipMalloc memory, non-blocking
 * streams, events without timing, kernels built by hiprtc for the device's
 * own architecture (HIP has no portable intermediate form) and kept in the
 * core's disk cache, matmul optionally through rocBLAS (hip_blas.c). HIP
 * keeps the current device per thread, so every call that needs it sets
 * the device first.
 *
 * UNTESTED ON HARDWARE: written to the HIP API documentation and compiled
 * only. Run `ox check --device hip:0` on an AMD GPU or a DCU before trusting
 * it; every device says so in its note.
 *
 * Every HIP failure is reported as "hip: hipXxx failed: hipErrorName (code)
 * on <device>". */
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backends/hip/hip_api.h"
#include "core/backend.h"

#define MAX_PARAMETERS 256 /* kernel parameters of one launch */
#define MAX_OPTIONS 64     /* -D options of one build */
#define FILL_CHUNK ((size_t)4 << 20)
#define UNTESTED "HIP backend untested on hardware; run ox check"

typedef struct device_entry {
    int ordinal;
    char arch[64]; /* hiprtc target ID, "gfx90a:sramecc+:xnack-"; "" if unknown */
    ox_device_info info;
} device_entry;

typedef struct hip_state {
    const ox__host *host;
    ox__hip_api api;
    device_entry *devices;
    size_t devices_size;
    int device_count;
    char hiprtc_version[16];
    char note[192];
} hip_state;

typedef struct hip_device {
    hip_state *state;
    const device_entry *entry;
    pthread_mutex_t blas_lock; /* guards blas and serializes rocBLAS calls */
    ox__rocblas *blas;         /* created on first native matmul */
} hip_device;

typedef struct hip_queue {
    hip_device *device;
    hipStream_t stream;
    void *blas_handle; /* rocBLAS handle bound to the stream, made on first use */
} hip_queue;

typedef struct hip_event {
    hip_device *device;
    hipEvent_t event;
} hip_event;

typedef struct hip_program {
    hip_device *device;
    hipModule_t module;
} hip_program;

typedef struct hip_kernel {
    hip_device *device;
    hipFunction_t function;
    char name[128];
} hip_kernel;

/* ---- helpers ------------------------------------------------------------------ */

static void *host_alloc(const hip_state *st, size_t size)
{
    return st->host->alloc(st->host->core, size);
}

static void host_free(const hip_state *st, void *ptr, size_t size)
{
    st->host->free(st->host->core, ptr, size);
}

static ox_status status_of(hipError_t r)
{
    return r == hipErrorOutOfMemory ? OX_ERR_DEVICE_MEMORY : OX_ERR_BACKEND;
}

static ox_status fail_hip(const hip_device *d, ox_status status, const char *call, hipError_t r,
                          const char *detail)
{
    const ox__host *host = d->state->host;
    return host->fail(host->core, status, "hip: %s failed: %s (%d) on %s%s%s", call,
                      ox__hip_error_name(&d->state->api, r), r, d->entry->info.name,
                      detail ? ": " : "", detail ? detail : "");
}

static ox_status fail_no_memory(const hip_state *st, const char *what)
{
    return st->host->fail(st->host->core, OX_ERR_OUT_OF_MEMORY, "hip: out of host memory for %s",
                          what);
}

/* Make the device current on the calling thread. */
static ox_status use(const hip_device *d)
{
    hipError_t r = d->state->api.hipSetDevice(d->entry->ordinal);
    return r == hipSuccess ? OX_OK : fail_hip(d, status_of(r), "hipSetDevice", r, NULL);
}

static void *address(void *buffer, size_t offset)
{
    return (char *)buffer + offset;
}

/* ---- devices -------------------------------------------------------------------- */

static const char *describe_device(hip_state *st, int ordinal, int driver_version,
                                   device_entry *e)
{
    const ox__hip_api *api = &st->api;
    ox_device_info *info = &e->info;
    int device = 0, threads = 0, shared = 0, units = 0, clock = 0, integrated = 0;
    size_t memory = 0;
    memset(e, 0, sizeof *e);
    e->ordinal = ordinal;
    if (api->hipDeviceGet(&device, ordinal) ||
        api->hipDeviceGetName(info->name, (int)sizeof info->name, device) ||
        api->hipDeviceTotalMem(&memory, device) ||
        api->hipDeviceGetAttribute(&threads, hipDeviceAttributeMaxThreadsPerBlock, ordinal) ||
        api->hipDeviceGetAttribute(&shared, hipDeviceAttributeMaxSharedMemoryPerBlock, ordinal) ||
        api->hipDeviceGetAttribute(&units, hipDeviceAttributeMultiprocessorCount, ordinal))
        return "a device query failed";
    if (api->hipDeviceGetAttribute(&clock, hipDeviceAttributeClockRate, ordinal)) clock = 0;
    if (api->hipDeviceGetAttribute(&integrated, hipDeviceAttributeIntegrated, ordinal))
        integrated = 0;
    /* Without the architecture hiprtc targets the current device, which the
     * backend sets before every build. */
    if (!ox__hip_device_arch(api, ordinal, e->arch, sizeof e->arch)) e->arch[0] = '\0';

    info->type = OX_DEVICE_GPU;
    snprintf(info->vendor, sizeof info->vendor, "%s",
             strstr(info->name, "DCU") || strstr(info->name, "Hygon") ? "Hygon" : "AMD");
    snprintf(info->driver_version, sizeof info->driver_version, "HIP %d.%d",
             driver_version / 10000000, driver_version / 100000 % 100);
    info->memory_bytes = memory;
    info->max_alloc_bytes = memory;
    info->local_memory_bytes = (uint64_t)shared;
    info->compute_units = (uint32_t)units;
    info->max_work_group_size = (uint32_t)threads;
    info->clock_mhz = (uint32_t)(clock / 1000);
    info->features = OX_FEATURE_BIT(OX_FEATURE_FP64) | OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH) |
                     OX_FEATURE_BIT(OX_FEATURE_SUBGROUPS);
    if (integrated) info->features |= OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY);
    snprintf(info->note, sizeof info->note, "%.60s; " UNTESTED,
             e->arch[0] ? e->arch : "architecture unknown");
    return NULL;
}

static void discover(hip_state *st)
{
    const ox__hip_api *api = &st->api;
    int count = 0, driver_version = 0, major = 0, minor = 0, skipped = 0;
    const char *skip_why = "";
    const char *call = "hipInit";
    hipError_t r = api->hipInit(0);
    if (r == hipSuccess) {
        call = "hipGetDeviceCount";
        r = api->hipGetDeviceCount(&count);
    }
    if (r != hipSuccess) {
        snprintf(st->note, sizeof st->note, "no HIP device: %s failed: %s (%d)", call,
                 ox__hip_error_name(api, r), r);
        return;
    }
    if (count == 0) {
        snprintf(st->note, sizeof st->note, "no HIP device");
        return;
    }
    if (!ox__hip_api_load_hiprtc(&st->api, st->note, sizeof st->note)) return;
    api->hipDriverGetVersion(&driver_version);
    api->hiprtcVersion(&major, &minor);
    snprintf(st->hiprtc_version, sizeof st->hiprtc_version, "%d.%d", major, minor);
    st->devices_size = (size_t)count * sizeof *st->devices;
    st->devices = host_alloc(st, st->devices_size);
    if (!st->devices) {
        snprintf(st->note, sizeof st->note, "out of host memory listing HIP devices");
        return;
    }
    for (int i = 0; i < count; i++) {
        device_entry *e = &st->devices[st->device_count];
        const char *why = describe_device(st, i, driver_version, e);
        if (!why) {
            st->host->log(st->host->core, OX_LOG_DEBUG, "hip: device %d: %s (%s)",
                          st->device_count, e->info.name, e->info.note);
            st->device_count++;
            continue;
        }
        skipped++;
        skip_why = why;
        st->host->log(st->host->core, OX_LOG_DEBUG, "hip: device %d skipped: %s", i, why);
    }
    if (st->device_count == 0)
        snprintf(st->note, sizeof st->note, "no usable HIP device: %d skipped (%s)", skipped,
                 skip_why);
}

static ox_status hip_init(const ox__host *host, void **state)
{
    hip_state *st = host->alloc(host->core, sizeof *st);
    if (!st) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "hip: out of host memory");
    memset(st, 0, sizeof *st);
    st->host = host;
    if (ox__hip_api_load_runtime(&st->api, st->note, sizeof st->note)) discover(st);
    if (st->note[0]) {
        size_t n = strlen(st->note);
        snprintf(st->note + n, sizeof st->note - n, "; " UNTESTED);
        host->log(host->core, OX_LOG_DEBUG, "hip: %s", st->note);
    }
    *state = st;
    return OX_OK;
}

/* The runtime and hiprtc stay loaded (they start threads). */
static void hip_shutdown(void *state)
{
    hip_state *st = state;
    if (!st) return;
    if (st->devices) host_free(st, st->devices, st->devices_size);
    host_free(st, st, sizeof *st);
}

static const char *hip_note(void *state)
{
    const hip_state *st = state;
    return st->note[0] ? st->note : NULL;
}

static int hip_device_count(void *state)
{
    return ((const hip_state *)state)->device_count;
}

static ox_status hip_device_info(void *state, int index, ox_device_info *info)
{
    size_t struct_size = info->struct_size;
    *info = ((const hip_state *)state)->devices[index].info;
    info->struct_size = struct_size;
    return OX_OK;
}

static ox_status hip_device_pci_bus_id(void *state, int index, char *bus_id, size_t cap)
{
    const hip_state *st = state;
    const device_entry *e = &st->devices[index];
    char text[32] = "";
    hipError_t r = st->api.hipDeviceGetPCIBusId
                       ? st->api.hipDeviceGetPCIBusId(text, (int)sizeof text, e->ordinal)
                       : hipErrorNotFound;
    if (r != hipSuccess || !text[0])
        return st->host->fail(st->host->core, OX_ERR_UNSUPPORTED,
                              "hip: the runtime gives no PCI address for %s", e->info.name);
    snprintf(bus_id, cap, "%s", text);
    return OX_OK;
}

static ox_status hip_device_open(void *state, int index, void **device)
{
    hip_state *st = state;
    hip_device *d = host_alloc(st, sizeof *d);
    if (!d) return fail_no_memory(st, "a device");
    memset(d, 0, sizeof *d);
    d->state = st;
    d->entry = &st->devices[index];
    pthread_mutex_init(&d->blas_lock, NULL);
    *device = d;
    return OX_OK;
}

static void hip_device_close(void *device)
{
    hip_device *d = device;
    ox__rocblas_free(d->blas, d->state->host);
    pthread_mutex_destroy(&d->blas_lock);
    host_free(d->state, d, sizeof *d);
}

/* ---- memory ------------------------------------------------------------------- */

static ox_status hip_buffer_alloc(void *device, size_t size, void **buffer)
{
    hip_device *d = device;
    ox_status s = use(d);
    if (s != OX_OK) return s;
    hipError_t r = d->state->api.hipMalloc(buffer, size);
    if (r != hipSuccess) {
        char detail[64];
        snprintf(detail, sizeof detail, "%zu bytes", size);
        return fail_hip(d, status_of(r), "hipMalloc", r, detail);
    }
    return OX_OK;
}

static void hip_buffer_free(void *device, void *buffer)
{
    hip_device *d = device;
    if (d->state->api.hipSetDevice(d->entry->ordinal) == hipSuccess) d->state->api.hipFree(buffer);
}

/* ---- queues and events ------------------------------------------------------------ */

static ox_status hip_queue_create(void *device, void **queue)
{
    hip_device *d = device;
    ox_status s = use(d);
    if (s != OX_OK) return s;
    hip_queue *q = host_alloc(d->state, sizeof *q);
    if (!q) return fail_no_memory(d->state, "a queue");
    q->device = d;
    q->blas_handle = NULL;
    hipError_t r = d->state->api.hipStreamCreateWithFlags(&q->stream, hipStreamNonBlocking);
    if (r != hipSuccess) {
        host_free(d->state, q, sizeof *q);
        return fail_hip(d, status_of(r), "hipStreamCreateWithFlags", r, NULL);
    }
    *queue = q;
    return OX_OK;
}

static void hip_queue_destroy(void *queue)
{
    hip_queue *q = queue;
    const ox__hip_api *api = &q->device->state->api;
    api->hipStreamSynchronize(q->stream);
    if (q->blas_handle && api->hipSetDevice(q->device->entry->ordinal) == hipSuccess)
        ox__rocblas_release(q->device->blas, q->blas_handle);
    api->hipStreamDestroy(q->stream);
    host_free(q->device->state, q, sizeof *q);
}

static ox_status hip_queue_finish(void *queue)
{
    hip_queue *q = queue;
    hipError_t r = q->device->state->api.hipStreamSynchronize(q->stream);
    return r == hipSuccess ? OX_OK
                           : fail_hip(q->device, status_of(r), "hipStreamSynchronize", r, NULL);
}

/* Record a new event on q (its device current) into *out; if that fails,
 * the queue is drained first, so the caller may reuse its memory. */
static ox_status record_event(hip_queue *q, void **out)
{
    const ox__hip_api *api = &q->device->state->api;
    const char *call = "hipEventCreateWithFlags";
    hip_event *e = host_alloc(q->device->state, sizeof *e);
    hipError_t r = e ? api->hipEventCreateWithFlags(&e->event, hipEventDisableTiming) : hipSuccess;
    if (e && r == hipSuccess) {
        call = "hipEventRecord";
        r = api->hipEventRecord(e->event, q->stream);
        if (r != hipSuccess) api->hipEventDestroy(e->event);
    }
    if (e && r == hipSuccess) {
        e->device = q->device;
        *out = e;
        return OX_OK;
    }
    api->hipStreamSynchronize(q->stream);
    if (!e) return fail_no_memory(q->device->state, "an event");
    host_free(q->device->state, e, sizeof *e);
    return fail_hip(q->device, status_of(r), call, r, NULL);
}

static ox_status enqueued(hip_queue *q, hipError_t r, const char *call, void **out)
{
    if (r != hipSuccess) return fail_hip(q->device, status_of(r), call, r, NULL);
    return out ? record_event(q, out) : OX_OK;
}

static ox_status hip_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                 size_t size, void **event)
{
    hip_queue *q = queue;
    ox_status s = use(q->device);
    if (s != OX_OK) return s;
    hipError_t r = q->device->state->api.hipMemcpyHtoDAsync(address(buffer, offset), src, size,
                                                            q->stream);
    return enqueued(q, r, "hipMemcpyHtoDAsync", event);
}

static ox_status hip_queue_read(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                                void **event)
{
    hip_queue *q = queue;
    ox_status s = use(q->device);
    if (s != OX_OK) return s;
    hipError_t r = q->device->state->api.hipMemcpyDtoHAsync(dst, address(buffer, offset), size,
                                                            q->stream);
    return enqueued(q, r, "hipMemcpyDtoHAsync", event);
}

static ox_status hip_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                size_t src_offset, size_t size, void **event)
{
    hip_queue *q = queue;
    ox_status s = use(q->device);
    if (s != OX_OK) return s;
    hipError_t r = q->device->state->api.hipMemcpyDtoDAsync(
        address(dst, dst_offset), address(src, src_offset), size, q->stream);
    return enqueued(q, r, "hipMemcpyDtoDAsync", event);
}

/* 8- and 16-byte or misaligned patterns: copies of a host buffer holding
 * the pattern, waited for before the buffer is freed. */
static ox_status fill_staged(hip_queue *q, char *dst, size_t size, const unsigned char *pattern,
                             size_t pattern_size)
{
    const hip_state *st = q->device->state;
    size_t chunk = size < FILL_CHUNK ? size : FILL_CHUNK;
    unsigned char *stage = host_alloc(st, chunk);
    if (!stage) return fail_no_memory(st, "a fill's staging buffer");
    for (size_t i = 0; i < chunk; i += pattern_size) memcpy(stage + i, pattern, pattern_size);
    hipError_t r = hipSuccess;
    for (size_t done = 0; done < size && r == hipSuccess; done += chunk)
        r = st->api.hipMemcpyHtoDAsync(dst + done, stage, size - done < chunk ? size - done : chunk,
                                       q->stream);
    hipError_t waited = st->api.hipStreamSynchronize(q->stream);
    host_free(st, stage, chunk);
    if (r != hipSuccess) return fail_hip(q->device, status_of(r), "hipMemcpyHtoDAsync", r, "fill");
    if (waited != hipSuccess)
        return fail_hip(q->device, status_of(waited), "hipStreamSynchronize", waited, "fill");
    return OX_OK;
}

static ox_status hip_queue_fill(void *queue, void *buffer, size_t offset, size_t size,
                                const void *pattern, size_t pattern_size, void **event)
{
    hip_queue *q = queue;
    const ox__hip_api *api = &q->device->state->api;
    const unsigned char *p = pattern;
    char *dst = address(buffer, offset);
    size_t same = 1;
    while (same < pattern_size && p[same] == p[0]) same++;
    ox_status s = use(q->device);
    if (s != OX_OK) return s;
    hipError_t r = hipSuccess;
    const char *call = "hipMemsetD8Async";
    if (same == pattern_size) {
        r = api->hipMemsetD8Async(dst, p[0], size, q->stream);
    } else if (pattern_size == 2 && (uintptr_t)dst % 2 == 0) {
        unsigned short value;
        memcpy(&value, p, sizeof value);
        call = "hipMemsetD16Async";
        r = api->hipMemsetD16Async(dst, value, size / 2, q->stream);
    } else if (pattern_size == 4 && (uintptr_t)dst % 4 == 0) {
        int value;
        memcpy(&value, p, sizeof value);
        call = "hipMemsetD32Async";
        r = api->hipMemsetD32Async(dst, value, size / 4, q->stream);
    } else {
        s = fill_staged(q, dst, size, p, pattern_size);
    }
    return s == OX_OK ? enqueued(q, r, call, event) : s;
}

static ox_status hip_queue_marker(void *queue, void **event)
{
    hip_queue *q = queue;
    ox_status s = use(q->device);
    return s == OX_OK ? record_event(q, event) : s;
}

static ox_status hip_queue_wait_event(void *queue, void *event)
{
    hip_queue *q = queue;
    const hip_event *e = event;
    hipError_t r = q->device->state->api.hipStreamWaitEvent(q->stream, e->event, 0);
    return r == hipSuccess ? OX_OK
                           : fail_hip(q->device, status_of(r), "hipStreamWaitEvent", r, NULL);
}

static ox_status hip_event_wait(void *event)
{
    hip_event *e = event;
    hipError_t r = e->device->state->api.hipEventSynchronize(e->event);
    return r == hipSuccess ? OX_OK
                           : fail_hip(e->device, status_of(r), "hipEventSynchronize", r, NULL);
}

static ox_status hip_event_query(void *event, int *complete)
{
    hip_event *e = event;
    hipError_t r = e->device->state->api.hipEventQuery(e->event);
    if (r != hipSuccess && r != hipErrorNotReady)
        return fail_hip(e->device, status_of(r), "hipEventQuery", r, NULL);
    *complete = r == hipSuccess;
    return OX_OK;
}

static void hip_event_release(void *event)
{
    hip_event *e = event;
    e->device->state->api.hipEventDestroy(e->event);
    host_free(e->device->state, e, sizeof *e);
}

/* ---- programs -------------------------------------------------------------------- */

static char *join(const hip_state *st, const char *const *parts, size_t n, size_t *size)
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

static int has_cache(const ox__host *host)
{
    return host->struct_size >= offsetof(ox__host, cache_store) + sizeof host->cache_store &&
           host->cache_load && host->cache_store;
}

/* hiprtc's log, trimmed, allocated as strlen + 1 bytes; NULL if empty. */
static char *compile_log(const hip_state *st, hiprtcProgram program)
{
    size_t n = 0;
    if (st->api.hiprtcGetProgramLogSize(program, &n) != HIPRTC_SUCCESS || n <= 1) return NULL;
    char *raw = host_alloc(st, n), *log = NULL;
    if (!raw) return NULL;
    if (st->api.hiprtcGetProgramLog(program, raw) == HIPRTC_SUCCESS) {
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

/* Compile with hiprtc for the device's architecture: a code object (host
 * memory, *size bytes) in *image. --gpu-architecture is the spelling every
 * hiprtc accepts (newer ones translate it to --offload-arch); the full
 * target ID keeps the device's sramecc/xnack modes. */
/* Compile with hiprtc for `arch` ("" : hiprtc's default); `name` is the
 * device in messages. */
static ox_status compile(const hip_state *st, const char *arch_id, const char *name,
                         const char *source, const char *options, void **image, size_t *size,
                         char **log)
{
    const ox__hip_api *api = &st->api;
    const char *argv[MAX_OPTIONS + 2];
    char arch[96], detail[256];
    int argc = 0;
    ox_status s = OX_OK;
    snprintf(detail, sizeof detail, "options '%.200s'", options);
    if (arch_id[0]) {
        snprintf(arch, sizeof arch, "--gpu-architecture=%s", arch_id);
        argv[argc++] = arch;
    }
    /* a reproducible build (kernels/common.h, OX_REPRO): no contraction */
    if (strstr(options, "-DOX_REPRO=1")) argv[argc++] = "-ffp-contract=off";
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
                                  "hip: more than %d build options: %s", MAX_OPTIONS, detail);
        }
        argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    hiprtcProgram program = NULL;
    const char *call = "hiprtcCreateProgram";
    hiprtcResult r = api->hiprtcCreateProgram(&program, source, "openxpu.hip", 0, NULL, NULL);
    if (r == HIPRTC_SUCCESS) {
        call = "hiprtcCompileProgram";
        r = api->hiprtcCompileProgram(program, argc, argv);
        *log = compile_log(st, program);
    }
    if (r == HIPRTC_SUCCESS) {
        call = "hiprtcGetCode";
        r = api->hiprtcGetCodeSize(program, size);
        *image = r == HIPRTC_SUCCESS ? host_alloc(st, *size) : NULL;
        if (r == HIPRTC_SUCCESS && !*image) s = fail_no_memory(st, "a compiled program");
        else if (r == HIPRTC_SUCCESS) r = api->hiprtcGetCode(program, *image);
        if (r != HIPRTC_SUCCESS && *image) host_free(st, *image, *size);
    }
    if (r != HIPRTC_SUCCESS)
        s = st->host->fail(st->host->core,
                           r == HIPRTC_ERROR_COMPILATION || r == HIPRTC_ERROR_INVALID_OPTION
                               ? OX_ERR_BUILD
                               : OX_ERR_BACKEND,
                           "hip: %s failed: %s (%d) on %s (hiprtc %s, %s): %s", call,
                           api->hiprtcGetErrorString(r), r, name, st->hiprtc_version, arch_id,
                           detail);
    if (program) api->hiprtcDestroyProgram(&program);
    host_free(st, copy, copy_size);
    return s;
}

/* The module from a cached code object, or NULL on a miss. Only an ELF or
 * a clang offload bundle goes to the runtime; one it refuses is a miss. */
static hipModule_t load_cached(const hip_device *d, const char *key)
{
    const hip_state *st = d->state;
    void *data = NULL;
    size_t size = 0;
    hipModule_t module = NULL;
    hipError_t r = hipErrorInvalidImage;
    if (st->host->cache_load(st->host->core, key, &data, &size) != OX_OK) return NULL;
    static const char bundle[] = "__CLANG_OFFLOAD_BUNDLE__";
    int well_formed = (size >= 4 && memcmp(data, "\177ELF", 4) == 0) ||
                      (size >= sizeof bundle - 1 && memcmp(data, bundle, sizeof bundle - 1) == 0);
    if (well_formed) r = st->api.hipModuleLoadData(&module, data);
    host_free(st, data, size);
    if (r == hipSuccess) return module;
    st->host->log(st->host->core, OX_LOG_DEBUG,
                  "hip: cached binary refused on %s (%s), building from source",
                  d->entry->info.name,
                  well_formed ? ox__hip_error_name(&st->api, r) : "not a code object");
    return NULL;
}

static ox_status hip_program_build(void *device, const char *source, const char *options,
                                   void **program, char **log)
{
    hip_device *d = device;
    const hip_state *st = d->state;
    const device_entry *e = d->entry;
    size_t key_size = 0;
    *log = NULL;
    if (!options) options = "";
    ox_status s = use(d);
    if (s != OX_OK) return s;
    char *key = NULL;
    if (has_cache(st->host)) {
        const char *parts[] = {"hip|", e->info.name, "|", e->arch, "|", e->info.driver_version,
                               "|hiprtc ", st->hiprtc_version, "|", options, "|", source};
        key = join(st, parts, sizeof parts / sizeof parts[0], &key_size);
    }
    hip_program *p = host_alloc(st, sizeof *p);
    if (!p) {
        s = fail_no_memory(st, "a program");
        goto out;
    }
    p->device = d;
    p->module = key ? load_cached(d, key) : NULL;
    if (!p->module) {
        void *image = NULL;
        size_t size = 0;
        s = compile(d->state, d->entry->arch, d->entry->info.name, source, options, &image, &size,
                    log);
        if (s == OX_OK) {
            hipError_t r = st->api.hipModuleLoadData(&p->module, image);
            if (r != hipSuccess)
                s = fail_hip(d, r == hipErrorNoBinaryForGpu || r == hipErrorInvalidImage ||
                                        r == hipErrorInvalidKernelFile
                                    ? OX_ERR_BUILD
                                    : status_of(r),
                             "hipModuleLoadData", r, e->arch);
            else if (key)
                st->host->cache_store(st->host->core, key, image, size);
            host_free(st, image, size);
        }
        if (s != OX_OK) {
            host_free(st, p, sizeof *p);
            goto out;
        }
    }
    *program = p;
out:
    if (key) host_free(st, key, key_size);
    return s;
}

static void hip_program_free(void *program)
{
    hip_program *p = program;
    hip_device *d = p->device;
    if (d->state->api.hipSetDevice(d->entry->ordinal) == hipSuccess)
        d->state->api.hipModuleUnload(p->module);
    host_free(d->state, p, sizeof *p);
}

/* ---- kernels ----------------------------------------------------------------------- */

static ox_status hip_kernel_create(void *program, const char *name, void **kernel)
{
    hip_program *p = program;
    hip_device *d = p->device;
    char detail[192];
    hipFunction_t function;
    ox_status s = use(d);
    if (s != OX_OK) return s;
    hipError_t r = d->state->api.hipModuleGetFunction(&function, p->module, name);
    if (r != hipSuccess) {
        snprintf(detail, sizeof detail,
                 r == hipErrorNotFound ? "no kernel named '%.128s' in the program"
                                       : "kernel '%.128s'",
                 name);
        return fail_hip(d, r == hipErrorNotFound ? OX_ERR_NOT_FOUND : status_of(r),
                        "hipModuleGetFunction", r, detail);
    }
    hip_kernel *k = host_alloc(d->state, sizeof *k);
    if (!k) return fail_no_memory(d->state, "a kernel");
    k->device = d;
    k->function = function;
    snprintf(k->name, sizeof k->name, "%s", name);
    *kernel = k;
    return OX_OK;
}

static void hip_kernel_free(void *kernel)
{
    hip_kernel *k = kernel;
    host_free(k->device->state, k, sizeof *k);
}

/* hipModuleLaunchKernel reads kernelParams at the call, so launches of one
 * kernel need no lock. HIP cannot list a kernel's parameters: the count is
 * the caller's to get right (the CUDA backend checks it). */
static ox_status hip_kernel_launch(void *queue, void *kernel, const size_t groups[3],
                                   const size_t local[3], int n_args, const ox__kernel_arg *args,
                                   void **event)
{
    hip_queue *q = queue;
    hip_kernel *k = kernel;
    const ox__host *host = q->device->state->host;
    void *parameters[MAX_PARAMETERS];
    uint64_t local_offsets[MAX_PARAMETERS];
    uint64_t local_bytes = 0; /* LOCAL parameters: pieces of dynamic shared memory */
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (local[i] == 0 || local[i] > UINT_MAX || groups[i] > UINT_MAX)
            return host->fail(host->core, OX_ERR_INVALID,
                              "hip: kernel '%s': %zu groups of %zu work-items in dimension %d "
                              "is not a valid range",
                              k->name, groups[i], local[i], i);
    if (!groups[0] || !groups[1] || !groups[2]) return event ? hip_queue_marker(q, event) : OX_OK;
    for (int i = 0; i < n_args; i++) {
        const ox__kernel_arg *a = &args[i];
        if (n + 2 > MAX_PARAMETERS)
            return host->fail(host->core, OX_ERR_UNSUPPORTED,
                              "hip: kernel '%s', argument %d: at most %d parameters", k->name, i,
                              MAX_PARAMETERS);
        if (a->kind == OX__ARG_BUFFER) {
            parameters[n++] = (void *)&a->buffer;
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
    ox_status s = use(q->device);
    if (s != OX_OK) return s;
    hipError_t r = q->device->state->api.hipModuleLaunchKernel(
        k->function, (unsigned)groups[0], (unsigned)groups[1], (unsigned)groups[2],
        (unsigned)local[0], (unsigned)local[1], (unsigned)local[2], (unsigned)local_bytes,
        q->stream, parameters, NULL);
    if (r != hipSuccess) {
        char detail[256];
        snprintf(detail, sizeof detail, "kernel '%s', %zu x %zu x %zu groups of %zu x %zu x %zu",
                 k->name, groups[0], groups[1], groups[2], local[0], local[1], local[2]);
        return fail_hip(q->device, status_of(r), "hipModuleLaunchKernel", r, detail);
    }
    return event ? record_event(q, event) : OX_OK;
}

/* ---- native operators ---------------------------------------------------------------- */

static ox_status hip_native_matmul(void *queue, const ox__native_tensor *dst,
                                   const ox__native_tensor *a, const ox__native_tensor *b,
                                   unsigned flags)
{
    hip_queue *q = queue;
    hip_device *d = q->device;
    ox_status s = use(d);
    if (s != OX_OK) return s;
    pthread_mutex_lock(&d->blas_lock);
    s = ox__rocblas_matmul(&d->blas, &q->blas_handle, d->state->host, d->entry->info.name,
                           q->stream, dst, a, b, flags);
    pthread_mutex_unlock(&d->blas_lock);
    return s;
}

/* A user's kernel compiled without a GPU: hiprtc alone, for gfx90a. */
#define CHECK_ARCH "gfx90a"

static ox_status hip_program_check(void *state, const char *source, const char *options,
                                   char **log, char *target, size_t target_cap)
{
    hip_state *st = state;
    *log = NULL;
    if (!st->api.hiprtc) {
        char why[256];
        if (!ox__hip_api_load_hiprtc(&st->api, why, sizeof why))
            return st->host->fail(st->host->core, OX_ERR_UNSUPPORTED, "hip: %s", why);
        int major = 0, minor = 0;
        st->api.hiprtcVersion(&major, &minor);
        snprintf(st->hiprtc_version, sizeof st->hiprtc_version, "%d.%d", major, minor);
    }
    snprintf(target, target_cap, "code object for %s, hiprtc %s", CHECK_ARCH, st->hiprtc_version);
    void *image = NULL;
    size_t size = 0;
    ox_status s = compile(st, CHECK_ARCH, "no device", source, options, &image, &size,
                          log);
    if (s == OX_OK) host_free(st, image, size);
    return s;
}

static const ox__backend_iface hip_iface = {
    .abi_version = OX_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "hip",
    .init = hip_init,
    .shutdown = hip_shutdown,
    .note = hip_note,
    .device_count = hip_device_count,
    .device_info = hip_device_info,
    .device_open = hip_device_open,
    .device_close = hip_device_close,
    .buffer_alloc = hip_buffer_alloc,
    .buffer_free = hip_buffer_free,
    .queue_create = hip_queue_create,
    .queue_destroy = hip_queue_destroy,
    .queue_finish = hip_queue_finish,
    .queue_write = hip_queue_write,
    .queue_read = hip_queue_read,
    .queue_copy = hip_queue_copy,
    .queue_fill = hip_queue_fill,
    .queue_marker = hip_queue_marker,
    .queue_wait_event = hip_queue_wait_event,
    .event_wait = hip_event_wait,
    .event_query = hip_event_query,
    .event_release = hip_event_release,
    .kernel_language = OX__KERNEL_HIP,
    .program_build = hip_program_build,
    .program_free = hip_program_free,
    .kernel_create = hip_kernel_create,
    .kernel_free = hip_kernel_free,
    .kernel_launch = hip_kernel_launch,
    .program_check = hip_program_check,
    .native_matmul = hip_native_matmul,
    .device_pci_bus_id = hip_device_pci_bus_id,
};

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version)
{
    return core_abi_version == OX_BACKEND_ABI_VERSION ? &hip_iface : NULL;
}
