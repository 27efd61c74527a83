/* The built-in CPU backend: one device (the host), aligned host memory,
 * a persistent thread pool, and synchronous in-order queues. Work on a CPU
 * queue is done when the enqueue call returns, so events are born complete.
 * Large copies are spread over the pool's threads: one core cannot reach the
 * memory bandwidth of the machine. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/backend.h"
#include "core/cpu_features.h"
#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/threadpool.h"

#define BUFFER_ALIGNMENT 64
#define HUGE_ALIGNMENT ((size_t)2 << 20) /* big buffers: 2 MiB, so THP can back them */
#define PARALLEL_COPY_MIN ((size_t)1 << 20)
#define COPY_TASK_BYTES ((size_t)256 << 10)

typedef struct cpu_state {
    const ox__host *host;
    ox__pool *pool;
    struct cpu_kernels *kernels; /* user kernels' launch state, made on first launch */
} cpu_state;

typedef struct cpu_buffer {
    unsigned char *data;
    size_t size;
    bool owned; /* false: wrapped host memory, not ours to free */
} cpu_buffer;

/* Every CPU event is complete at birth; they all share this one object. */
static int completed_event;

static ox_status cpu_init(const ox__host *host, void **state)
{
    cpu_state *st = host->alloc(host->core, sizeof *st);
    if (!st) return host->fail(host->core, OX_ERR_OUT_OF_MEMORY, "cpu: out of host memory");
    st->host = host;
    st->kernels = NULL;
    ox_status s = ox__pool_create(host->num_threads, &st->pool);
    if (s != OX_OK) {
        host->free(host->core, st, sizeof *st);
        return host->fail(host->core, s, "cpu: cannot start the thread pool");
    }
    host->log(host->core, OX_LOG_DEBUG, "cpu: thread pool of %d threads", ox__pool_size(st->pool));
    *state = st;
    return OX_OK;
}

static void cpu_shutdown(void *state)
{
    cpu_state *st = state;
    if (!st) return;
    ox__cpu_kernels_free(st->kernels);
    ox__pool_free(st->pool);
    st->host->free(st->host->core, st, sizeof *st);
}

static int cpu_device_count(void *state)
{
    (void)state;
    return 1;
}

static ox_status cpu_device_info(void *state, int index, ox_device_info *info)
{
    cpu_state *st = state;
    const ox__cpu_info *ci = ox__cpu_detect();
    (void)index;
    info->type = OX_DEVICE_CPU;
    snprintf(info->name, sizeof info->name, "%s", ci->name);
    snprintf(info->vendor, sizeof info->vendor, "%s", ci->vendor);
    info->memory_bytes = ci->memory_bytes;
    info->max_alloc_bytes = ci->memory_bytes;
    info->local_memory_bytes = OX__CPU_LOCAL_BYTES; /* for user kernels */
    info->compute_units = (uint32_t)ox__pool_size(st->pool);
    info->max_work_group_size = 1024;
    info->clock_mhz = ci->clock_mhz;
    info->features = ci->features | OX_FEATURE_BIT(OX_FEATURE_FP64) |
                     OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY);
    return OX_OK;
}

/* The device handle is the backend state: there is one CPU. */
static ox_status cpu_device_open(void *state, int index, void **device)
{
    (void)index;
    *device = state;
    return OX_OK;
}

static void cpu_device_close(void *device)
{
    (void)device;
}

static ox_status cpu_buffer_alloc(void *device, size_t size, void **buffer)
{
    cpu_state *st = device;
    cpu_buffer *b = st->host->alloc(st->host->core, sizeof *b);
    if (!b) return st->host->fail(st->host->core, OX_ERR_OUT_OF_MEMORY, "out of host memory");
    size_t align = size >= HUGE_ALIGNMENT ? HUGE_ALIGNMENT : BUFFER_ALIGNMENT;
    void *data = NULL;
    if (posix_memalign(&data, align, size) != 0) {
        st->host->free(st->host->core, b, sizeof *b);
        return st->host->fail(st->host->core, OX_ERR_DEVICE_MEMORY,
                              "the system refused %zu bytes", size);
    }
#ifdef MADV_HUGEPAGE
    if (align == HUGE_ALIGNMENT) madvise(data, size - size % HUGE_ALIGNMENT, MADV_HUGEPAGE);
#endif
    b->data = data;
    b->size = size;
    b->owned = true;
    *buffer = b;
    return OX_OK;
}

static ox_status cpu_buffer_wrap_host(void *device, void *ptr, size_t size, void **buffer)
{
    cpu_state *st = device;
    cpu_buffer *b = st->host->alloc(st->host->core, sizeof *b);
    if (!b) return st->host->fail(st->host->core, OX_ERR_OUT_OF_MEMORY, "out of host memory");
    *b = (cpu_buffer){.data = ptr, .size = size, .owned = false};
    *buffer = b;
    return OX_OK;
}

static void cpu_buffer_free(void *device, void *buffer)
{
    cpu_state *st = device;
    cpu_buffer *b = buffer;
    if (b->owned) free(b->data);
    st->host->free(st->host->core, b, sizeof *b);
}

static ox_status cpu_queue_create(void *device, void **queue)
{
    *queue = device;
    return OX_OK;
}

static void cpu_queue_destroy(void *queue)
{
    (void)queue;
}

static ox_status cpu_queue_finish(void *queue)
{
    (void)queue;
    return OX_OK;
}

typedef struct copy_job {
    unsigned char *dst;
    const unsigned char *src;
    size_t size;
} copy_job;

static void copy_task(void *arg, size_t task, int thread)
{
    const copy_job *job = arg;
    size_t begin = task * COPY_TASK_BYTES;
    size_t n = job->size - begin < COPY_TASK_BYTES ? job->size - begin : COPY_TASK_BYTES;
    (void)thread;
    memcpy(job->dst + begin, job->src + begin, n);
}

static void parallel_copy(cpu_state *st, void *dst, const void *src, size_t size)
{
    if (size < PARALLEL_COPY_MIN || ox__pool_size(st->pool) == 1) {
        memcpy(dst, src, size);
        return;
    }
    copy_job job = {dst, src, size};
    ox__pool_run(st->pool, (size + COPY_TASK_BYTES - 1) / COPY_TASK_BYTES, copy_task, &job);
}

static void complete(void **event)
{
    if (event) *event = &completed_event;
}

static ox_status cpu_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                 size_t size, void **event)
{
    cpu_buffer *b = buffer;
    parallel_copy(queue, b->data + offset, src, size);
    complete(event);
    return OX_OK;
}

static ox_status cpu_queue_read(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                                void **event)
{
    const cpu_buffer *b = buffer;
    parallel_copy(queue, dst, b->data + offset, size);
    complete(event);
    return OX_OK;
}

static ox_status cpu_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                size_t src_offset, size_t size, void **event)
{
    cpu_buffer *d = dst;
    const cpu_buffer *s = src;
    parallel_copy(queue, d->data + dst_offset, s->data + src_offset, size);
    complete(event);
    return OX_OK;
}

static ox_status cpu_queue_fill(void *queue, void *buffer, size_t offset, size_t size,
                                const void *pattern, size_t pattern_size, void **event)
{
    cpu_buffer *b = buffer;
    unsigned char *p = b->data + offset;
    (void)queue;
    if (pattern_size == 1) {
        memset(p, *(const unsigned char *)pattern, size);
    } else if (size) {
        /* Write the pattern once, then double the filled prefix. */
        size_t done = pattern_size;
        memcpy(p, pattern, pattern_size);
        while (done < size) {
            size_t n = done < size - done ? done : size - done;
            memcpy(p + done, p, n);
            done += n;
        }
    }
    complete(event);
    return OX_OK;
}

static ox_status cpu_queue_marker(void *queue, void **event)
{
    (void)queue;
    complete(event);
    return OX_OK;
}

static ox_status cpu_queue_wait_event(void *queue, void *event)
{
    (void)queue;
    (void)event;
    return OX_OK;
}

static ox_status cpu_event_wait(void *event)
{
    (void)event;
    return OX_OK;
}

static ox_status cpu_event_query(void *event, int *complete_out)
{
    (void)event;
    *complete_out = 1;
    return OX_OK;
}

static void cpu_event_release(void *event)
{
    (void)event;
}

static const ox__backend_iface cpu_iface = {
    .abi_version = OX_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "cpu",
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .note = NULL,
    .device_count = cpu_device_count,
    .device_info = cpu_device_info,
    .device_open = cpu_device_open,
    .device_close = cpu_device_close,
    .buffer_alloc = cpu_buffer_alloc,
    .buffer_free = cpu_buffer_free,
    .queue_create = cpu_queue_create,
    .queue_destroy = cpu_queue_destroy,
    .queue_finish = cpu_queue_finish,
    .queue_write = cpu_queue_write,
    .queue_read = cpu_queue_read,
    .queue_copy = cpu_queue_copy,
    .queue_fill = cpu_queue_fill,
    .queue_marker = cpu_queue_marker,
    .queue_wait_event = cpu_queue_wait_event,
    .event_wait = cpu_event_wait,
    .event_query = cpu_event_query,
    .event_release = cpu_event_release,
    .kernel_language = OX__KERNEL_C,
    .program_build = ox__cpu_program_build,
    .program_free = ox__cpu_program_free,
    .kernel_create = ox__cpu_kernel_create,
    .kernel_free = ox__cpu_kernel_free,
    .kernel_launch = ox__cpu_kernel_launch,
    .buffer_wrap_host = cpu_buffer_wrap_host,
};

const ox__backend_iface *ox__cpu_backend(void)
{
    return &cpu_iface;
}

unsigned char *ox__cpu_buffer_data(void *buffer)
{
    return ((cpu_buffer *)buffer)->data;
}

size_t ox__cpu_buffer_size(void *buffer)
{
    return ((cpu_buffer *)buffer)->size;
}

ox__pool *ox__cpu_device_pool(void *device)
{
    return ((cpu_state *)device)->pool;
}

const ox__host *ox__cpu_device_host(void *device)
{
    return ((cpu_state *)device)->host;
}

struct cpu_kernels **ox__cpu_device_kernels(void *device)
{
    return &((cpu_state *)device)->kernels;
}

void *ox__cpu_completed_event(void)
{
    return &completed_event;
}
