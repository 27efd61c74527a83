/* A fake GPU backend for the loader tests: two "GPUs" whose memory is host
 * memory from the core's allocator, synchronous queues and events that are
 * complete when made. It leaves the optional slots (note, queue_fill,
 * queue_wait_event) NULL so that the core's defaults are exercised.
 *
 * Fault injection: with OX_FAKE_FAIL_ALLOC=1 in the environment, every
 * buffer_alloc fails with OX_ERR_DEVICE_MEMORY. OX_FAKE_VENDOR sets the
 * devices' vendor ("NVIDIA": the energy meter looks for them in NVML). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

#define FAKE_DEVICES 2
#define FAKE_MEMORY ((uint64_t)64 << 20)

typedef struct fake_state {
    const ox__host *host;
} fake_state;

typedef struct fake_device {
    fake_state *state;
    int index;
} fake_device;

typedef struct fake_buffer {
    size_t size;
    unsigned char *data;
} fake_buffer;

typedef struct fake_queue {
    fake_device *device;
} fake_queue;

typedef struct fake_event {
    fake_state *state;
} fake_event;

static void *host_alloc(fake_state *state, size_t size)
{
    return state->host->alloc(state->host->core, size);
}

static void host_free(fake_state *state, void *ptr, size_t size)
{
    state->host->free(state->host->core, ptr, size);
}

static ox_status fake_init(const ox__host *host, void **state_out)
{
    fake_state *state = host->alloc(host->core, sizeof *state);
    if (!state) return OX_ERR_OUT_OF_MEMORY;
    state->host = host;
    host->log(host->core, OX_LOG_DEBUG, "fake: %d devices", FAKE_DEVICES);
    *state_out = state;
    return OX_OK;
}

static void fake_shutdown(void *state)
{
    host_free(state, state, sizeof(fake_state));
}

static int fake_device_count(void *state)
{
    (void)state;
    return FAKE_DEVICES;
}

static ox_status fake_device_info(void *state, int index, ox_device_info *info)
{
    (void)state;
    info->type = OX_DEVICE_GPU;
    snprintf(info->name, sizeof info->name, "Fake GPU %d", index);
    /* OX_FAKE_VENDOR: pose as another vendor's GPU (the energy tests) */
    const char *vendor = getenv("OX_FAKE_VENDOR");
    snprintf(info->vendor, sizeof info->vendor, "%s", vendor && *vendor ? vendor : "OpenXPU tests");
    snprintf(info->driver_version, sizeof info->driver_version, "fake 1.0");
    info->memory_bytes = FAKE_MEMORY;
    info->max_alloc_bytes = FAKE_MEMORY;
    info->local_memory_bytes = 48 << 10;
    info->compute_units = 4;
    info->max_work_group_size = 256;
    info->clock_mhz = 0;
    info->features = 0;
    info->note[0] = '\0';
    return OX_OK;
}

static ox_status fake_device_open(void *state, int index, void **device_out)
{
    fake_device *device = host_alloc(state, sizeof *device);
    if (!device) return OX_ERR_OUT_OF_MEMORY;
    device->state = state;
    device->index = index;
    *device_out = device;
    return OX_OK;
}

static void fake_device_close(void *device)
{
    fake_device *d = device;
    host_free(d->state, d, sizeof *d);
}

static ox_status fake_buffer_alloc(void *device, size_t size, void **buffer_out)
{
    fake_device *d = device;
    const ox__host *host = d->state->host;
    const char *fail = getenv("OX_FAKE_FAIL_ALLOC");
    if (fail && strcmp(fail, "1") == 0)
        return host->fail(host->core, OX_ERR_DEVICE_MEMORY,
                          "fake: cannot allocate %zu bytes on Fake GPU %d (OX_FAKE_FAIL_ALLOC=1)",
                          size, d->index);
    fake_buffer *buffer = host_alloc(d->state, sizeof *buffer);
    unsigned char *data = buffer ? host_alloc(d->state, size) : NULL;
    if (!data) {
        host_free(d->state, buffer, sizeof *buffer);
        return host->fail(host->core, OX_ERR_DEVICE_MEMORY,
                          "fake: out of memory for %zu bytes on Fake GPU %d", size, d->index);
    }
    buffer->size = size;
    buffer->data = data;
    *buffer_out = buffer;
    return OX_OK;
}

static void fake_buffer_free(void *device, void *buffer)
{
    fake_device *d = device;
    fake_buffer *b = buffer;
    host_free(d->state, b->data, b->size);
    host_free(d->state, b, sizeof *b);
}

static ox_status fake_queue_create(void *device, void **queue_out)
{
    fake_device *d = device;
    fake_queue *queue = host_alloc(d->state, sizeof *queue);
    if (!queue) return OX_ERR_OUT_OF_MEMORY;
    queue->device = d;
    *queue_out = queue;
    return OX_OK;
}

static void fake_queue_destroy(void *queue)
{
    fake_queue *q = queue;
    host_free(q->device->state, q, sizeof *q);
}

static ox_status fake_queue_finish(void *queue)
{
    (void)queue;
    return OX_OK;
}

/* Work is done when enqueued, so every event is born complete. */
static ox_status completed_event(fake_queue *queue, void **event_out)
{
    if (!event_out) return OX_OK;
    fake_event *event = host_alloc(queue->device->state, sizeof *event);
    if (!event) return OX_ERR_OUT_OF_MEMORY;
    event->state = queue->device->state;
    *event_out = event;
    return OX_OK;
}

static ox_status fake_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                  size_t size, void **event)
{
    memcpy(((fake_buffer *)buffer)->data + offset, src, size);
    return completed_event(queue, event);
}

static ox_status fake_queue_read(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                                 void **event)
{
    memcpy(dst, ((fake_buffer *)buffer)->data + offset, size);
    return completed_event(queue, event);
}

static ox_status fake_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                 size_t src_offset, size_t size, void **event)
{
    memmove(((fake_buffer *)dst)->data + dst_offset, ((fake_buffer *)src)->data + src_offset,
            size);
    return completed_event(queue, event);
}

static ox_status fake_queue_marker(void *queue, void **event)
{
    return completed_event(queue, event);
}

static ox_status fake_event_wait(void *event)
{
    (void)event;
    return OX_OK;
}

static ox_status fake_event_query(void *event, int *complete)
{
    (void)event;
    *complete = 1;
    return OX_OK;
}

static void fake_event_release(void *event)
{
    fake_event *e = event;
    host_free(e->state, e, sizeof *e);
}

static const ox__backend_iface fake_iface = {
    .abi_version = OX_BACKEND_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "fake",
    .init = fake_init,
    .shutdown = fake_shutdown,
    .note = NULL,
    .device_count = fake_device_count,
    .device_info = fake_device_info,
    .device_open = fake_device_open,
    .device_close = fake_device_close,
    .buffer_alloc = fake_buffer_alloc,
    .buffer_free = fake_buffer_free,
    .queue_create = fake_queue_create,
    .queue_destroy = fake_queue_destroy,
    .queue_finish = fake_queue_finish,
    .queue_write = fake_queue_write,
    .queue_read = fake_queue_read,
    .queue_copy = fake_queue_copy,
    .queue_fill = NULL,
    .queue_marker = fake_queue_marker,
    .queue_wait_event = NULL,
    .event_wait = fake_event_wait,
    .event_query = fake_event_query,
    .event_release = fake_event_release,
};

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version)
{
    return core_abi_version == OX_BACKEND_ABI_VERSION ? &fake_iface : NULL;
}
