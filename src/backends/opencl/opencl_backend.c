/* The OpenCL backend: every device of every OpenCL platform (GPUs, CPUs,
 * accelerators) of OpenCL 1.2 or later, through the ICD loader opened at run
 * time. Each device gets its own cl_context; buffers are cl_mem objects,
 * queues in-order command queues, transfers and launches non-blocking.
 * Programs are OpenCL C 1.2 (the portable dialect with its OpenCL prelude),
 * and their binaries are kept in the core's disk cache.
 *
 * Nothing here knows a vendor: what a device can do comes from its queries.
 * Every OpenCL failure is reported as "opencl: clXxx failed: CL_NAME (code)
 * on <device>". */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "backends/opencl/opencl_api.h"
#include "core/backend.h"

/* One usable device, found at init. */
typedef struct device_entry {
    cl_platform_id platform;
    cl_device_id id;
    ox_device_info info;     /* what device_info reports */
    char platform_name[256]; /* these three go into the program cache key */
    char driver_version[256];
    char device_version[256];
} device_entry;

typedef struct opencl_state {
    const ox__host *host;
    ox__cl_api api;
    device_entry *devices;
    size_t devices_size; /* bytes allocated for devices */
    int device_count;
    char note[128]; /* why there are no devices, or "" */
} opencl_state;

typedef struct opencl_device {
    opencl_state *state;
    const device_entry *entry;
    cl_context context;
} opencl_device;

typedef struct opencl_queue {
    opencl_device *device;
    cl_command_queue queue;
} opencl_queue;

/* Events carry their device: for messages, and to tell whether a queue can
 * wait for them on the device (same cl_context) or only on the host. */
typedef struct opencl_event {
    opencl_device *device;
    cl_event event;
} opencl_event;

typedef struct opencl_program {
    opencl_device *device;
    cl_program program;
} opencl_program;

typedef struct opencl_kernel {
    opencl_device *device;
    cl_kernel kernel;
    cl_uint parameters;   /* CL_KERNEL_NUM_ARGS */
    pthread_mutex_t lock; /* clSetKernelArg + enqueue are not thread-safe per kernel */
    char name[128];
} opencl_kernel;

/* ---- helpers ------------------------------------------------------------- */

static void *host_alloc(const opencl_state *st, size_t size)
{
    return st->host->alloc(st->host->core, size);
}

static void host_free(const opencl_state *st, void *ptr, size_t size)
{
    st->host->free(st->host->core, ptr, size);
}

/* The status for an OpenCL failure outside allocation. */
static ox_status status_of(cl_int err)
{
    switch (err) {
    case CL_OUT_OF_HOST_MEMORY: return OX_ERR_OUT_OF_MEMORY;
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return OX_ERR_DEVICE_MEMORY; /* lazy allocation */
    default: return OX_ERR_BACKEND;
    }
}

/* Record "opencl: <call> failed: CL_NAME (code) on <device>[: detail]". */
static ox_status fail_cl(const opencl_device *d, ox_status status, const char *call, cl_int err,
                         const char *detail)
{
    const ox__host *host = d->state->host;
    return host->fail(host->core, status, "opencl: %s failed: %s (%d) on %s%s%s", call,
                      ox__cl_error_name(err), (int)err, d->entry->info.name, detail ? ": " : "",
                      detail ? detail : "");
}

static ox_status fail_no_memory(const opencl_state *st, const char *what)
{
    return st->host->fail(st->host->core, OX_ERR_OUT_OF_MEMORY,
                          "opencl: out of host memory for %s", what);
}

/* Copy src into dst (cap bytes), without leading and trailing blanks:
 * some drivers pad their names. */
static void copy_trimmed(char *dst, size_t cap, const char *src)
{
    while (*src == ' ' || *src == '\t') src++;
    size_t n = strlen(src);
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t' || src[n - 1] == '\n')) n--;
    snprintf(dst, cap, "%.*s", (int)(n < cap ? n : cap - 1), src);
}

/* A string property of a platform (device == NULL) or device, allocated
 * with the host allocator (*size bytes, NUL-terminated); NULL with *err set
 * on failure. */
static char *info_string(const opencl_state *st, cl_platform_id platform, cl_device_id device,
                         cl_uint param, size_t *size, cl_int *err)
{
    const ox__cl_api *cl = &st->api;
    size_t n = 0;
    *err = device ? cl->clGetDeviceInfo(device, param, 0, NULL, &n)
                  : cl->clGetPlatformInfo(platform, param, 0, NULL, &n);
    if (*err != CL_SUCCESS) return NULL;
    char *text = host_alloc(st, n + 1);
    if (!text) {
        *err = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    *err = device ? cl->clGetDeviceInfo(device, param, n, text, NULL)
                  : cl->clGetPlatformInfo(platform, param, n, text, NULL);
    if (*err != CL_SUCCESS) {
        host_free(st, text, n + 1);
        return NULL;
    }
    text[n] = '\0';
    *size = n + 1;
    return text;
}

/* A string property into a fixed buffer, trimmed and truncated to fit. */
static cl_int info_copy(const opencl_state *st, cl_platform_id platform, cl_device_id device,
                        cl_uint param, char *dst, size_t cap)
{
    size_t size;
    cl_int err;
    char *text = info_string(st, platform, device, param, &size, &err);
    if (!text) return err;
    copy_trimmed(dst, cap, text);
    host_free(st, text, size);
    return CL_SUCCESS;
}

/* True if the space-separated extension list holds `name` as a whole word. */
static int has_extension(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
    return 0;
}

/* ---- devices: discovery ----------------------------------------------------- */

static ox_device_type device_type(cl_device_type type)
{
    if (type & CL_DEVICE_TYPE_GPU) return OX_DEVICE_GPU;
    if (type & CL_DEVICE_TYPE_ACCELERATOR) return OX_DEVICE_ACCELERATOR;
    if (type & CL_DEVICE_TYPE_CPU) return OX_DEVICE_CPU;
    return OX_DEVICE_OTHER;
}

/* Fill `e` for one device. Returns CL_SUCCESS, or an error with *why set
 * when the device cannot be used (then `e` is garbage). */
static cl_int describe_device(const opencl_state *st, cl_platform_id platform, cl_device_id id,
                              device_entry *e, const char **why)
{
    const ox__cl_api *cl = &st->api;
    ox_device_info *info = &e->info;
    cl_bool available = CL_FALSE, unified = CL_FALSE;
    cl_device_type type = 0;
    cl_ulong global = 0, max_alloc = 0, local = 0;
    cl_uint units = 0, clock = 0;
    size_t group = 0, size = 0;
    int major = 0, minor = 0;

    memset(e, 0, sizeof *e);
    e->platform = platform;
    e->id = id;
    *why = "a query failed";
    cl_int err = info_copy(st, platform, NULL, CL_PLATFORM_NAME, e->platform_name,
                           sizeof e->platform_name);
    if (!err) err = info_copy(st, NULL, id, CL_DEVICE_NAME, info->name, sizeof info->name);
    if (!err) err = info_copy(st, NULL, id, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    if (!err) err = info_copy(st, NULL, id, CL_DRIVER_VERSION, e->driver_version,
                              sizeof e->driver_version);
    if (!err) err = info_copy(st, NULL, id, CL_DEVICE_VERSION, e->device_version,
                              sizeof e->device_version);
    const struct {
        cl_device_info param;
        void *value;
        size_t size;
    } values[] = {
        {CL_DEVICE_AVAILABLE, &available, sizeof available},
        {CL_DEVICE_TYPE, &type, sizeof type},
        {CL_DEVICE_GLOBAL_MEM_SIZE, &global, sizeof global},
        {CL_DEVICE_MAX_MEM_ALLOC_SIZE, &max_alloc, sizeof max_alloc},
        {CL_DEVICE_LOCAL_MEM_SIZE, &local, sizeof local},
        {CL_DEVICE_MAX_COMPUTE_UNITS, &units, sizeof units},
        {CL_DEVICE_MAX_WORK_GROUP_SIZE, &group, sizeof group},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0] && !err; i++)
        err = cl->clGetDeviceInfo(id, values[i].param, values[i].size, values[i].value, NULL);
    char *extensions = err ? NULL : info_string(st, NULL, id, CL_DEVICE_EXTENSIONS, &size, &err);
    if (err) return err;
    /* Optional: the clock may be unknown, and OpenCL 2.0 deprecated the
     * unified-memory query. */
    if (cl->clGetDeviceInfo(id, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof clock, &clock, NULL))
        clock = 0;
    if (cl->clGetDeviceInfo(id, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL))
        unified = CL_FALSE;

    if (sscanf(e->device_version, "OpenCL %d.%d", &major, &minor) != 2 ||
        major * 100 + minor < 102) {
        *why = "older than OpenCL 1.2";
        err = CL_INVALID_DEVICE;
    } else if (!available) {
        *why = "not available";
        err = CL_DEVICE_NOT_AVAILABLE;
    }
    info->type = device_type(type);
    /* "3.1 (Portable Computing Language)", truncated to fit */
    if (snprintf(info->driver_version, sizeof info->driver_version, "%s (%s)", e->driver_version,
                 e->platform_name) < 0)
        info->driver_version[0] = '\0';
    info->memory_bytes = global;
    info->max_alloc_bytes = max_alloc;
    info->local_memory_bytes = local;
    info->compute_units = units;
    info->max_work_group_size = group > UINT32_MAX ? UINT32_MAX : (uint32_t)group;
    info->clock_mhz = clock;
    if (has_extension(extensions, "cl_khr_fp64")) info->features |= OX_FEATURE_BIT(OX_FEATURE_FP64);
    if (has_extension(extensions, "cl_khr_fp16"))
        info->features |= OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH);
    if (has_extension(extensions, "cl_khr_subgroups") ||
        has_extension(extensions, "cl_intel_subgroups"))
        info->features |= OX_FEATURE_BIT(OX_FEATURE_SUBGROUPS);
    if (unified) info->features |= OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY);
    copy_trimmed(info->note, sizeof info->note, e->device_version);
    host_free(st, extensions, size);
    return err;
}

/* Find every usable device of every platform. Leaves a note when there is
 * none. */
static void discover(opencl_state *st)
{
    const ox__cl_api *cl = &st->api;
    cl_uint platforms = 0, total = 0, skipped = 0;
    const char *skip_why = NULL;
    cl_int err = cl->clGetPlatformIDs(0, NULL, &platforms);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && platforms == 0)) {
        snprintf(st->note, sizeof st->note, "no OpenCL platform");
        return;
    }
    if (err != CL_SUCCESS) {
        snprintf(st->note, sizeof st->note, "no OpenCL platform: clGetPlatformIDs failed: %s (%d)",
                 ox__cl_error_name(err), (int)err);
        return;
    }
    cl_platform_id *ids = host_alloc(st, platforms * sizeof *ids);
    if (!ids || cl->clGetPlatformIDs(platforms, ids, NULL) != CL_SUCCESS) {
        snprintf(st->note, sizeof st->note, "cannot list the OpenCL platforms");
        goto out;
    }
    for (cl_uint p = 0; p < platforms; p++) {
        cl_uint n = 0;
        if (cl->clGetDeviceIDs(ids[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n) == CL_SUCCESS) total += n;
    }
    st->devices_size = total * sizeof *st->devices;
    st->devices = total ? host_alloc(st, st->devices_size) : NULL;
    if (total && !st->devices) {
        snprintf(st->note, sizeof st->note, "out of host memory listing OpenCL devices");
        goto out;
    }
    for (cl_uint p = 0; p < platforms && (cl_uint)st->device_count < total; p++) {
        cl_uint n = 0, room = total - (cl_uint)st->device_count;
        cl_device_id devices[64];
        if (cl->clGetDeviceIDs(ids[p], CL_DEVICE_TYPE_ALL, room < 64 ? room : 64, devices, &n) !=
            CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < n && i < room && i < 64; i++) {
            device_entry *e = &st->devices[st->device_count];
            const char *why;
            cl_int derr = describe_device(st, ids[p], devices[i], e, &why);
            if (derr == CL_SUCCESS) {
                st->host->log(st->host->core, OX_LOG_DEBUG, "opencl: device %d: %s (%s, %s)",
                              st->device_count, e->info.name, e->platform_name, e->device_version);
                st->device_count++;
                continue;
            }
            skipped++;
            skip_why = why;
            st->host->log(st->host->core, OX_LOG_DEBUG,
                          "opencl: device %u of platform %u skipped: %s (%s)", i, p, why,
                          ox__cl_error_name(derr));
        }
    }
    if (st->device_count == 0 && skipped)
        snprintf(st->note, sizeof st->note, "no usable OpenCL device: %u skipped (%s)", skipped,
                 skip_why);
    else if (st->device_count == 0)
        snprintf(st->note, sizeof st->note, "no OpenCL device on %u platform(s)", platforms);
out:
    if (ids) host_free(st, ids, platforms * sizeof *ids);
}

/* ---- backend lifetime --------------------------------------------------------- */

static ox_status opencl_init(const ox__host *host, void **state)
{
    opencl_state *st = host->alloc(host->core, sizeof *st);
    if (!st) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "opencl: out of host memory");
    memset(st, 0, sizeof *st);
    st->host = host;
    if (ox__cl_api_load(&st->api, st->note, sizeof st->note)) discover(st);
    if (st->note[0]) host->log(host->core, OX_LOG_DEBUG, "opencl: %s", st->note);
    *state = st;
    return OX_OK;
}

/* The ICD loader stays loaded: vendor runtimes start threads and exit
 * handlers that outlive their contexts, and not every one survives being
 * unloaded in the middle of a process. dlopen counts references, so the
 * next context reuses it. */
static void opencl_shutdown(void *state)
{
    opencl_state *st = state;
    if (!st) return;
    host_free(st, st->devices, st->devices_size);
    host_free(st, st, sizeof *st);
}

static const char *opencl_note(void *state)
{
    const opencl_state *st = state;
    return st->note[0] ? st->note : NULL;
}

static int opencl_device_count(void *state)
{
    return ((const opencl_state *)state)->device_count;
}

static ox_status opencl_device_info(void *state, int index, ox_device_info *info)
{
    const ox_device_info *from = &((const opencl_state *)state)->devices[index].info;
    info->type = from->type;
    memcpy(info->name, from->name, sizeof info->name);
    memcpy(info->vendor, from->vendor, sizeof info->vendor);
    memcpy(info->driver_version, from->driver_version, sizeof info->driver_version);
    info->memory_bytes = from->memory_bytes;
    info->max_alloc_bytes = from->max_alloc_bytes;
    info->local_memory_bytes = from->local_memory_bytes;
    info->compute_units = from->compute_units;
    info->max_work_group_size = from->max_work_group_size;
    info->clock_mhz = from->clock_mhz;
    info->features = from->features;
    memcpy(info->note, from->note, sizeof info->note);
    return OX_OK;
}

/* Asynchronous error reports of the driver (possibly from its own threads). */
static void CL_CALLBACK context_notify(const char *message, const void *private_info, size_t cb,
                                       void *user)
{
    const opencl_device *d = user;
    (void)private_info;
    (void)cb;
    d->state->host->log(d->state->host->core, OX_LOG_WARN, "opencl: %s reports: %s",
                        d->entry->info.name, message ? message : "(no message)");
}

static ox_status opencl_device_open(void *state, int index, void **device)
{
    opencl_state *st = state;
    opencl_device *d = host_alloc(st, sizeof *d);
    if (!d) return fail_no_memory(st, "a device");
    d->state = st;
    d->entry = &st->devices[index];
    cl_context_properties properties[] = {
        CL_CONTEXT_PLATFORM, (cl_context_properties)d->entry->platform, 0};
    cl_int err;
    d->context = st->api.clCreateContext(properties, 1, &d->entry->id, context_notify, d, &err);
    if (err != CL_SUCCESS) {
        ox_status s = fail_cl(d, status_of(err), "clCreateContext", err, NULL);
        host_free(st, d, sizeof *d);
        return s;
    }
    *device = d;
    return OX_OK;
}

static void opencl_device_close(void *device)
{
    opencl_device *d = device;
    d->state->api.clReleaseContext(d->context);
    host_free(d->state, d, sizeof *d);
}

/* ---- memory ------------------------------------------------------------------- */

static ox_status opencl_buffer_alloc(void *device, size_t size, void **buffer)
{
    opencl_device *d = device;
    cl_int err;
    cl_mem mem = d->state->api.clCreateBuffer(d->context, CL_MEM_READ_WRITE, size, NULL, &err);
    if (err != CL_SUCCESS) {
        char detail[64];
        snprintf(detail, sizeof detail, "%zu bytes", size);
        int no_memory = err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
                        err == CL_INVALID_BUFFER_SIZE;
        return fail_cl(d, no_memory ? OX_ERR_DEVICE_MEMORY : status_of(err), "clCreateBuffer",
                       err, detail);
    }
    *buffer = mem;
    return OX_OK;
}

static void opencl_buffer_free(void *device, void *buffer)
{
    ((opencl_device *)device)->state->api.clReleaseMemObject(buffer);
}

/* ---- queues and events ----------------------------------------------------------- */

static ox_status opencl_queue_create(void *device, void **queue)
{
    opencl_device *d = device;
    opencl_queue *q = host_alloc(d->state, sizeof *q);
    if (!q) return fail_no_memory(d->state, "a queue");
    q->device = d;
    cl_int err;
    q->queue = d->state->api.clCreateCommandQueue(d->context, d->entry->id, 0, &err);
    if (err != CL_SUCCESS) {
        ox_status s = fail_cl(d, status_of(err), "clCreateCommandQueue", err, NULL);
        host_free(d->state, q, sizeof *q);
        return s;
    }
    *queue = q;
    return OX_OK;
}

static void opencl_queue_destroy(void *queue)
{
    opencl_queue *q = queue;
    const ox__cl_api *cl = &q->device->state->api;
    cl->clFinish(q->queue);
    cl->clReleaseCommandQueue(q->queue);
    host_free(q->device->state, q, sizeof *q);
}

static ox_status opencl_queue_finish(void *queue)
{
    opencl_queue *q = queue;
    cl_int err = q->device->state->api.clFinish(q->queue);
    return err == CL_SUCCESS ? OX_OK : fail_cl(q->device, status_of(err), "clFinish", err, NULL);
}

/* Hand an enqueued command's event to the core (when it asked for one:
 * `out` not NULL). The queue is flushed so that whoever waits for the event,
 * the host or another queue, sees the command start. */
static ox_status hand_out_event(opencl_queue *q, cl_event event, void **out)
{
    if (!out) return OX_OK;
    const ox__cl_api *cl = &q->device->state->api;
    cl_int err = cl->clFlush(q->queue);
    opencl_event *e = err == CL_SUCCESS ? host_alloc(q->device->state, sizeof *e) : NULL;
    if (!e) {
        cl->clWaitForEvents(1, &event);
        cl->clReleaseEvent(event);
        return err != CL_SUCCESS ? fail_cl(q->device, status_of(err), "clFlush", err, NULL)
                                 : fail_no_memory(q->device->state, "an event");
    }
    e->device = q->device;
    e->event = event;
    *out = e;
    return OX_OK;
}

/* The result of an enqueue call: its event handed out, or its error. */
static ox_status enqueued(opencl_queue *q, cl_int err, const char *call, cl_event event,
                          void **out)
{
    if (err != CL_SUCCESS) return fail_cl(q->device, status_of(err), call, err, NULL);
    return hand_out_event(q, event, out);
}

static ox_status opencl_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                    size_t size, void **event)
{
    opencl_queue *q = queue;
    cl_event ev = NULL;
    cl_int err = q->device->state->api.clEnqueueWriteBuffer(q->queue, buffer, CL_FALSE, offset,
                                                            size, src, 0, NULL,
                                                            event ? &ev : NULL);
    return enqueued(q, err, "clEnqueueWriteBuffer", ev, event);
}

static ox_status opencl_queue_read(void *queue, void *buffer, size_t offset, void *dst,
                                   size_t size, void **event)
{
    opencl_queue *q = queue;
    cl_event ev = NULL;
    cl_int err = q->device->state->api.clEnqueueReadBuffer(q->queue, buffer, CL_FALSE, offset,
                                                           size, dst, 0, NULL,
                                                           event ? &ev : NULL);
    return enqueued(q, err, "clEnqueueReadBuffer", ev, event);
}

static ox_status opencl_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                   size_t src_offset, size_t size, void **event)
{
    opencl_queue *q = queue;
    cl_event ev = NULL;
    cl_int err = q->device->state->api.clEnqueueCopyBuffer(q->queue, src, dst, src_offset,
                                                           dst_offset, size, 0, NULL,
                                                           event ? &ev : NULL);
    return enqueued(q, err, "clEnqueueCopyBuffer", ev, event);
}

static ox_status opencl_queue_fill(void *queue, void *buffer, size_t offset, size_t size,
                                   const void *pattern, size_t pattern_size, void **event)
{
    opencl_queue *q = queue;
    cl_event ev = NULL;
    cl_int err = q->device->state->api.clEnqueueFillBuffer(q->queue, buffer, pattern,
                                                           pattern_size, offset, size, 0, NULL,
                                                           event ? &ev : NULL);
    return enqueued(q, err, "clEnqueueFillBuffer", ev, event);
}

static ox_status opencl_queue_marker(void *queue, void **event)
{
    opencl_queue *q = queue;
    cl_event ev = NULL;
    cl_int err = q->device->state->api.clEnqueueMarkerWithWaitList(q->queue, 0, NULL,
                                                                   event ? &ev : NULL);
    return enqueued(q, err, "clEnqueueMarkerWithWaitList", ev, event);
}

/* Why an event's command failed: its (negative) execution status. */
static ox_status command_failed(const opencl_event *e, cl_int status)
{
    return fail_cl(e->device, status_of(status), "an enqueued command", status, NULL);
}

static ox_status opencl_event_wait(void *event)
{
    opencl_event *e = event;
    const ox__cl_api *cl = &e->device->state->api;
    cl_int err = cl->clWaitForEvents(1, &e->event);
    if (err == CL_SUCCESS) return OX_OK;
    cl_int status = 0;
    if (err == CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST &&
        cl->clGetEventInfo(e->event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                           NULL) == CL_SUCCESS &&
        status < 0)
        return command_failed(e, status);
    return fail_cl(e->device, status_of(err), "clWaitForEvents", err, NULL);
}

static ox_status opencl_queue_wait_event(void *queue, void *event)
{
    opencl_queue *q = queue;
    opencl_event *e = event;
    if (e->device->context != q->device->context) /* another device: wait on the host */
        return opencl_event_wait(e);
    cl_int err = q->device->state->api.clEnqueueBarrierWithWaitList(q->queue, 1, &e->event, NULL);
    return enqueued(q, err, "clEnqueueBarrierWithWaitList", NULL, NULL);
}

static ox_status opencl_event_query(void *event, int *complete)
{
    opencl_event *e = event;
    cl_int status = 0;
    cl_int err = e->device->state->api.clGetEventInfo(e->event, CL_EVENT_COMMAND_EXECUTION_STATUS,
                                                      sizeof status, &status, NULL);
    if (err != CL_SUCCESS) return fail_cl(e->device, status_of(err), "clGetEventInfo", err, NULL);
    if (status < 0) return command_failed(e, status);
    *complete = status == CL_COMPLETE;
    return OX_OK;
}

static void opencl_event_release(void *event)
{
    opencl_event *e = event;
    e->device->state->api.clReleaseEvent(e->event);
    host_free(e->device->state, e, sizeof *e);
}

/* ---- programs ---------------------------------------------------------------------- */

/* Always compiled as OpenCL C 1.2, the dialect's language; no fast-math
 * flags: operators are checked against the CPU for accuracy. */
static const char language_option[] = "-cl-std=CL1.2";

/* The concatenation of n strings, host-allocated (*size bytes). */
static char *join(const opencl_state *st, const char *const *parts, size_t n, size_t *size)
{
    size_t total = 1;
    for (size_t i = 0; i < n; i++) total += strlen(parts[i]);
    char *text = host_alloc(st, total);
    if (!text) return NULL;
    char *end = text;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(parts[i]);
        memcpy(end, parts[i], len);
        end += len;
    }
    *end = '\0';
    *size = total;
    return text;
}

/* True if the core offers the kernel cache (it came with ABI v1's later
 * host slots). */
static int has_cache(const ox__host *host)
{
    return host->struct_size >= offsetof(ox__host, cache_store) + sizeof host->cache_store &&
           host->cache_load && host->cache_store;
}

/* The compiler's log for the device, trimmed, allocated as strlen + 1 bytes
 * (as the core frees it); NULL if empty. */
static char *build_log(const opencl_device *d, cl_program program)
{
    const opencl_state *st = d->state;
    size_t n = 0;
    if (st->api.clGetProgramBuildInfo(program, d->entry->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) !=
            CL_SUCCESS ||
        n == 0)
        return NULL;
    char *raw = host_alloc(st, n + 1), *log = NULL;
    if (!raw) return NULL;
    if (st->api.clGetProgramBuildInfo(program, d->entry->id, CL_PROGRAM_BUILD_LOG, n, raw, NULL) ==
        CL_SUCCESS) {
        raw[n] = '\0';
        size_t len = strlen(raw);
        while (len > 0 && (raw[len - 1] == '\n' || raw[len - 1] == ' ' || raw[len - 1] == '\r'))
            len--;
        log = len ? host_alloc(st, len + 1) : NULL;
        if (log) {
            memcpy(log, raw, len);
            log[len] = '\0';
        }
    }
    host_free(st, raw, n + 1);
    return log;
}

/* The program from a cached binary, or NULL on a miss. A binary the driver
 * refuses (another driver build, a corrupt entry) is a miss too. */
static cl_program load_cached(const opencl_device *d, const char *key, const char *options)
{
    const opencl_state *st = d->state;
    const ox__cl_api *cl = &st->api;
    void *data = NULL;
    size_t size = 0;
    if (st->host->cache_load(st->host->core, key, &data, &size) != OX_OK) return NULL;
    const unsigned char *binary = data;
    cl_int binary_status = CL_SUCCESS, err;
    const char *call = "clCreateProgramWithBinary";
    cl_program program = cl->clCreateProgramWithBinary(d->context, 1, &d->entry->id, &size,
                                                       &binary, &binary_status, &err);
    if (err == CL_SUCCESS && binary_status != CL_SUCCESS) err = binary_status;
    if (err == CL_SUCCESS) {
        call = "clBuildProgram";
        err = cl->clBuildProgram(program, 1, &d->entry->id, options, NULL, NULL);
    }
    host_free(st, data, size);
    if (err == CL_SUCCESS) return program;
    st->host->log(st->host->core, OX_LOG_DEBUG,
                  "opencl: cached binary refused on %s (%s: %s), building from source",
                  d->entry->info.name, call, ox__cl_error_name(err));
    if (program) cl->clReleaseProgram(program);
    return NULL;
}

/* Put a built program's binary in the cache; failures only cost a rebuild. */
static void store_binary(const opencl_device *d, cl_program program, const char *key)
{
    const opencl_state *st = d->state;
    size_t size = 0;
    cl_int err = st->api.clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES, sizeof size, &size,
                                          NULL);
    unsigned char *binary = err == CL_SUCCESS && size ? host_alloc(st, size) : NULL;
    if (!binary) {
        st->host->log(st->host->core, OX_LOG_DEBUG, "opencl: no binary to cache on %s (%s)",
                      d->entry->info.name, ox__cl_error_name(err));
        return;
    }
    err = st->api.clGetProgramInfo(program, CL_PROGRAM_BINARIES, sizeof binary, &binary, NULL);
    if (err == CL_SUCCESS) st->host->cache_store(st->host->core, key, binary, size);
    else st->host->log(st->host->core, OX_LOG_DEBUG, "opencl: cannot read the binary on %s (%s)",
                       d->entry->info.name, ox__cl_error_name(err));
    host_free(st, binary, size);
}

static ox_status build_source(const opencl_device *d, const char *source, const char *options,
                              cl_program *out, char **log)
{
    const ox__cl_api *cl = &d->state->api;
    cl_int err;
    cl_program program = cl->clCreateProgramWithSource(d->context, 1, &source, NULL, &err);
    if (err != CL_SUCCESS)
        return fail_cl(d, status_of(err), "clCreateProgramWithSource", err, NULL);
    err = cl->clBuildProgram(program, 1, &d->entry->id, options, NULL, NULL);
    *log = build_log(d, program);
    if (err != CL_SUCCESS) {
        char detail[256];
        snprintf(detail, sizeof detail, "options '%.200s'", options);
        cl->clReleaseProgram(program);
        ox_status s = err == CL_BUILD_PROGRAM_FAILURE || err == CL_INVALID_BUILD_OPTIONS
                          ? OX_ERR_BUILD
                          : err == CL_COMPILER_NOT_AVAILABLE ? OX_ERR_UNSUPPORTED : status_of(err);
        return fail_cl(d, s, "clBuildProgram", err, detail);
    }
    *out = program;
    return OX_OK;
}

static ox_status opencl_program_build(void *device, const char *source, const char *options,
                                      void **program, char **log)
{
    opencl_device *d = device;
    const opencl_state *st = d->state;
    const device_entry *e = d->entry;
    size_t options_size = 0, key_size = 0;
    ox_status s = OX_OK;
    *log = NULL;

    if (!options) options = "";
    /* a reproducible build (kernels/common.h, OX_REPRO) needs division and
     * square root correctly rounded, which OpenCL only promises when asked */
    const char *option_parts[] = {options, *options ? " " : "", language_option,
                                  strstr(options, "-DOX_REPRO=1")
                                      ? " -cl-fp32-correctly-rounded-divide-sqrt" : ""};
    char *build_options = join(st, option_parts, 4, &options_size);
    if (!build_options) return fail_no_memory(st, "build options");
    /* Everything the binary depends on; the core hashes it. Without memory
     * for it the build just goes uncached. */
    char *key = NULL;
    if (has_cache(st->host)) {
        const char *key_parts[] = {"opencl|", e->platform_name, "|", e->info.name, "|",
                                   e->driver_version, "|", e->device_version, "|",
                                   build_options, "|", source};
        key = join(st, key_parts, sizeof key_parts / sizeof key_parts[0], &key_size);
    }
    opencl_program *p = host_alloc(st, sizeof *p);
    if (!p) {
        s = fail_no_memory(st, "a program");
        goto out;
    }
    p->device = d;
    p->program = key ? load_cached(d, key, build_options) : NULL;
    if (!p->program) {
        s = build_source(d, source, build_options, &p->program, log);
        if (s != OX_OK) {
            host_free(st, p, sizeof *p);
            goto out;
        }
        if (key) store_binary(d, p->program, key);
    }
    *program = p;
out:
    if (key) host_free(st, key, key_size);
    host_free(st, build_options, options_size);
    return s;
}

static void opencl_program_free(void *program)
{
    opencl_program *p = program;
    p->device->state->api.clReleaseProgram(p->program);
    host_free(p->device->state, p, sizeof *p);
}

/* ---- kernels --------------------------------------------------------------------- */

static ox_status opencl_kernel_create(void *program, const char *name, void **kernel)
{
    opencl_program *p = program;
    opencl_device *d = p->device;
    const ox__cl_api *cl = &d->state->api;
    char detail[192];
    cl_int err;
    cl_kernel handle = cl->clCreateKernel(p->program, name, &err);
    if (err != CL_SUCCESS) {
        snprintf(detail, sizeof detail,
                 err == CL_INVALID_KERNEL_NAME ? "no kernel named '%.128s' in the program"
                                               : "kernel '%.128s'",
                 name);
        return fail_cl(d, err == CL_INVALID_KERNEL_NAME ? OX_ERR_NOT_FOUND : status_of(err),
                       "clCreateKernel", err, detail);
    }
    cl_uint parameters = 0;
    err = cl->clGetKernelInfo(handle, CL_KERNEL_NUM_ARGS, sizeof parameters, &parameters, NULL);
    opencl_kernel *k = err == CL_SUCCESS ? host_alloc(d->state, sizeof *k) : NULL;
    if (!k) {
        cl->clReleaseKernel(handle);
        snprintf(detail, sizeof detail, "kernel '%.128s'", name);
        return err != CL_SUCCESS ? fail_cl(d, status_of(err), "clGetKernelInfo", err, detail)
                                 : fail_no_memory(d->state, "a kernel");
    }
    k->device = d;
    k->kernel = handle;
    k->parameters = parameters;
    pthread_mutex_init(&k->lock, NULL);
    snprintf(k->name, sizeof k->name, "%s", name);
    *kernel = k;
    return OX_OK;
}

static void opencl_kernel_free(void *kernel)
{
    opencl_kernel *k = kernel;
    k->device->state->api.clReleaseKernel(k->kernel);
    pthread_mutex_destroy(&k->lock);
    host_free(k->device->state, k, sizeof *k);
}

/* Set every argument, then enqueue, under the kernel's lock. On failure
 * *call names the OpenCL call and `detail` says which argument or range. */
static cl_int set_args_and_enqueue(opencl_queue *q, opencl_kernel *k, cl_uint dims,
                                   const size_t global[3], const size_t local[3], int n_args,
                                   const ox__kernel_arg *args, cl_event *event, const char **call,
                                   char *detail, size_t cap)
{
    const ox__cl_api *cl = &q->device->state->api;
    cl_int err = CL_SUCCESS;
    cl_uint index = 0;
    *call = "clSetKernelArg";
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < n_args && err == CL_SUCCESS; i++) {
        const ox__kernel_arg *a = &args[i];
        cl_uint first = index;
        if (a->kind == OX__ARG_BUFFER) {
            cl_mem mem = a->buffer;
            cl_ulong offset = a->offset;
            err = cl->clSetKernelArg(k->kernel, index++, sizeof mem, &mem);
            if (err == CL_SUCCESS)
                err = cl->clSetKernelArg(k->kernel, index++, sizeof offset, &offset);
        } else if (a->kind == OX__ARG_LOCAL) {
            err = cl->clSetKernelArg(k->kernel, index++, a->size, NULL);
        } else {
            err = cl->clSetKernelArg(k->kernel, index++, a->size, a->value);
        }
        if (err != CL_SUCCESS)
            snprintf(detail, cap, "kernel '%s', argument %d (parameter %u)", k->name, i, first);
    }
    if (err == CL_SUCCESS) {
        *call = "clEnqueueNDRangeKernel";
        err = cl->clEnqueueNDRangeKernel(q->queue, k->kernel, dims, NULL, global, local, 0, NULL,
                                         event);
        if (err != CL_SUCCESS)
            snprintf(detail, cap, "kernel '%s', global %zu x %zu x %zu, local %zu x %zu x %zu",
                     k->name, global[0], global[1], global[2], local[0], local[1], local[2]);
    }
    pthread_mutex_unlock(&k->lock);
    return err;
}

static ox_status opencl_kernel_launch(void *queue, void *kernel, const size_t groups[3],
                                      const size_t local[3], int n_args,
                                      const ox__kernel_arg *args, void **event)
{
    opencl_queue *q = queue;
    opencl_kernel *k = kernel;
    const ox__host *host = q->device->state->host;
    size_t global[3];
    cl_uint dims = 3, parameters = 0;
    for (int i = 0; i < 3; i++) {
        if (local[i] == 0 || groups[i] > SIZE_MAX / local[i])
            return host->fail(host->core, OX_ERR_INVALID,
                              "opencl: kernel '%s': %zu groups of %zu work-items in dimension %d "
                              "is not a valid range",
                              k->name, groups[i], local[i], i);
        global[i] = groups[i] * local[i];
    }
    if (!global[0] || !global[1] || !global[2]) /* nothing to run */
        return event ? opencl_queue_marker(q, event) : OX_OK;
    while (dims > 1 && global[dims - 1] == 1) dims--;
    for (int i = 0; i < n_args; i++) {
        if (args[i].kind != OX__ARG_BUFFER && args[i].kind != OX__ARG_SCALAR &&
            args[i].kind != OX__ARG_LOCAL)
            return host->fail(host->core, OX_ERR_INVALID,
                              "opencl: kernel '%s', argument %d: of no known kind", k->name, i);
        parameters += args[i].kind == OX__ARG_BUFFER ? 2 : 1;
    }
    if (parameters != k->parameters)
        return host->fail(host->core, OX_ERR_INVALID,
                          "opencl: kernel '%s' has %u parameters but the launch gives %u from %d "
                          "arguments (a buffer is two: memory and byte offset)",
                          k->name, k->parameters, parameters, n_args);

    char detail[256];
    const char *call;
    cl_event ev = NULL;
    cl_int err = set_args_and_enqueue(q, k, dims, global, local, n_args, args, event ? &ev : NULL,
                                      &call, detail, sizeof detail);
    if (err != CL_SUCCESS) return fail_cl(q->device, status_of(err), call, err, detail);
    return hand_out_event(q, ev, event);
}

static const ox__backend_iface opencl_iface = {
    .abi_version = OX_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "opencl",
    .init = opencl_init,
    .shutdown = opencl_shutdown,
    .note = opencl_note,
    .device_count = opencl_device_count,
    .device_info = opencl_device_info,
    .device_open = opencl_device_open,
    .device_close = opencl_device_close,
    .buffer_alloc = opencl_buffer_alloc,
    .buffer_free = opencl_buffer_free,
    .queue_create = opencl_queue_create,
    .queue_destroy = opencl_queue_destroy,
    .queue_finish = opencl_queue_finish,
    .queue_write = opencl_queue_write,
    .queue_read = opencl_queue_read,
    .queue_copy = opencl_queue_copy,
    .queue_fill = opencl_queue_fill,
    .queue_marker = opencl_queue_marker,
    .queue_wait_event = opencl_queue_wait_event,
    .event_wait = opencl_event_wait,
    .event_query = opencl_event_query,
    .event_release = opencl_event_release,
    .kernel_language = OX__KERNEL_OPENCL,
    .program_build = opencl_program_build,
    .program_free = opencl_program_free,
    .kernel_create = opencl_kernel_create,
    .kernel_free = opencl_kernel_free,
    .kernel_launch = opencl_kernel_launch,
};

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version)
{
    return core_abi_version == OX_BACKEND_ABI_VERSION ? &opencl_iface : NULL;
}
