/* Buffers: allocation on a device, views (sub-ranges) sharing the memory,
 * release, and the range checks every transfer goes through. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"

ox_status ox__buffer_check_range(ox_context *ctx, const char *func, const char *what,
                                 const ox_buffer *buffer, size_t offset, size_t size)
{
    if (offset > buffer->size || size > buffer->size - offset)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE,
                        "%s: %s range offset %zu + size %zu exceeds its size %zu (%s)", func, what,
                        offset, size, buffer->size, buffer->memory->device->info.id);
    return OX_OK;
}

static void memory_release(ox__memory *memory)
{
    if (atomic_fetch_sub(&memory->refs, 1) != 1) return;
    ox_device *device = memory->device;
    if (memory->derived) memory->derived_free(memory->derived);
    device->backend->iface->buffer_free(device->impl, memory->impl);
    ox__free(device->ctx, memory, sizeof *memory);
}

/* A new handle for [offset, offset + size) of `memory`, which it references. */
static ox_status buffer_new(ox_context *ctx, ox__memory *memory, size_t offset, size_t size,
                            const char *func, ox_buffer **out)
{
    ox_buffer *buf = ox__calloc(ctx, 1, sizeof *buf);
    if (!buf) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", func);
    buf->ctx = ctx;
    buf->memory = memory;
    buf->offset = offset;
    buf->size = size;
    if (ox__handle_add(buf, OX__HANDLE_BUFFER, ctx) != OX_OK) {
        ox__free(ctx, buf, sizeof *buf);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", func);
    }
    atomic_fetch_add(&memory->refs, 1);
    ox__track(ctx, &ctx->buffers, &buf->link);
    *out = buf;
    return OX_OK;
}

ox_status ox_buffer_alloc(ox_device *device, size_t size, ox_buffer **out)
{
    ox_context *ctx;
    char have[32], want[32];
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    if (size == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: size is 0 on %s; buffers hold at least 1 byte",
                        __func__, device->info.id);
    uint64_t limit = device->info.max_alloc_bytes ? device->info.max_alloc_bytes
                                                  : device->info.memory_bytes;
    if (limit && (uint64_t)size > limit)
        return ox__fail(ctx, OX_ERR_DEVICE_MEMORY,
                        "%s: cannot allocate %zu bytes (%s) on %s: its largest buffer is %s",
                        __func__, size, ox__format_bytes(size, want, sizeof want),
                        device->info.id, ox__format_bytes(limit, have, sizeof have));
    s = ox__device_open(device, __func__);
    if (s != OX_OK) return s;

    ox__memory *memory = ox__calloc(ctx, 1, sizeof *memory);
    if (!memory) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    memory->device = device;
    memory->size = size;
    s = device->backend->iface->buffer_alloc(device->impl, size, &memory->impl);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        ox__fail(ctx, s, "%s: cannot allocate %zu bytes (%s) on %s: %s", __func__, size,
                 ox__format_bytes(size, want, sizeof want), device->info.id, message);
        goto err_free_memory;
    }
    s = buffer_new(ctx, memory, 0, size, __func__, out);
    if (s != OX_OK) goto err_free_impl;
    return OX_OK;

err_free_impl:
    device->backend->iface->buffer_free(device->impl, memory->impl);
err_free_memory:
    ox__free(ctx, memory, sizeof *memory);
    return s;
}

ox_status ox_buffer_wrap_host(ox_device *device, void *ptr, size_t size, ox_buffer **out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    if (!ptr || size == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: ptr is NULL or size is 0", __func__);
    const ox__backend_iface *be = device->backend->iface;
    if (!be->buffer_wrap_host)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                        "%s: %s cannot address host memory; allocate and copy instead", __func__,
                        device->info.id);
    if ((s = ox__device_open(device, __func__)) != OX_OK) return s;
    ox__memory *memory = ox__calloc(ctx, 1, sizeof *memory);
    if (!memory) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    memory->device = device;
    memory->size = size;
    s = be->buffer_wrap_host(device->impl, ptr, size, &memory->impl);
    if (s == OX_OK) s = buffer_new(ctx, memory, 0, size, __func__, out);
    if (s == OX_OK) return OX_OK;
    if (memory->impl) be->buffer_free(device->impl, memory->impl);
    ox__free(ctx, memory, sizeof *memory);
    return s;
}

ox_status ox_buffer_sub(ox_buffer *parent, size_t offset, size_t size, ox_buffer **out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(parent, OX__HANDLE_BUFFER, __func__, "parent", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    if (size == 0)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: size is 0; a view holds at least 1 byte",
                        __func__);
    s = ox__buffer_check_range(ctx, __func__, "parent", parent, offset, size);
    if (s != OX_OK) return s;
    return buffer_new(ctx, parent->memory, parent->offset + offset, size, __func__, out);
}

void ox_buffer_free(ox_buffer *buffer)
{
    ox_context *ctx;
    if (!buffer || !ox__handle_check_free(buffer, OX__HANDLE_BUFFER, __func__, &ctx)) return;
    ox__untrack(ctx, &buffer->link);
    ox__handle_remove(buffer);
    memory_release(buffer->memory);
    ox__free(ctx, buffer, sizeof *buffer);
}

ox_status ox_buffer_size(const ox_buffer *buffer, size_t *size)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(buffer, OX__HANDLE_BUFFER, __func__, "buffer", &ctx);
    if (s != OX_OK) return s;
    if (!size) return ox__fail(ctx, OX_ERR_INVALID, "%s: size is NULL", __func__);
    *size = buffer->size;
    return OX_OK;
}

ox_status ox_buffer_device(const ox_buffer *buffer, ox_device **device)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(buffer, OX__HANDLE_BUFFER, __func__, "buffer", &ctx);
    if (s != OX_OK) return s;
    if (!device) return ox__fail(ctx, OX_ERR_INVALID, "%s: device is NULL", __func__);
    *device = buffer->memory->device;
    return OX_OK;
}
