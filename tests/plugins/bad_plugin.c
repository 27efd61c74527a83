/* Broken backend plugins for the loader tests, one per build of this file:
 *   OX_BAD_ABI        a table that says ABI version 999
 *   OX_BAD_MISSING    a table whose required buffer_alloc slot is NULL
 *   OX_BAD_NULLENTRY  an entry point that returns NULL
 *   OX_BAD_NOENTRY    no ox_backend_entry symbol at all
 * The core must refuse each before calling anything in the table: every
 * slot aborts, so a table used by mistake crashes the test. */
#include <stdio.h>
#include <stdlib.h>

#include "core/backend.h"

static void misused(const char *slot)
{
    fprintf(stderr, "bad plugin: the core called '%s' of a table it should have refused\n", slot);
    abort();
}

static ox_status bad_init(const ox__host *host, void **state)
{
    (void)host;
    (void)state;
    misused("init");
    return OX_ERR_INTERNAL;
}

static void bad_shutdown(void *state)
{
    (void)state;
    misused("shutdown");
}

static int bad_device_count(void *state)
{
    (void)state;
    misused("device_count");
    return 0;
}

static ox_status bad_device_info(void *state, int index, ox_device_info *info)
{
    (void)state, (void)index, (void)info;
    misused("device_info");
    return OX_ERR_INTERNAL;
}

static ox_status bad_device_open(void *state, int index, void **device)
{
    (void)state, (void)index, (void)device;
    misused("device_open");
    return OX_ERR_INTERNAL;
}

static void bad_device_close(void *device)
{
    (void)device;
    misused("device_close");
}

#if !defined(OX_BAD_MISSING)
static ox_status bad_buffer_alloc(void *device, size_t size, void **buffer)
{
    (void)device, (void)size, (void)buffer;
    misused("buffer_alloc");
    return OX_ERR_INTERNAL;
}
#endif

static void bad_buffer_free(void *device, void *buffer)
{
    (void)device, (void)buffer;
    misused("buffer_free");
}

static ox_status bad_queue_create(void *device, void **queue)
{
    (void)device, (void)queue;
    misused("queue_create");
    return OX_ERR_INTERNAL;
}

static void bad_queue_destroy(void *queue)
{
    (void)queue;
    misused("queue_destroy");
}

static ox_status bad_queue_finish(void *queue)
{
    (void)queue;
    misused("queue_finish");
    return OX_ERR_INTERNAL;
}

static ox_status bad_queue_write(void *queue, void *buffer, size_t offset, const void *src,
                                 size_t size, void **event)
{
    (void)queue, (void)buffer, (void)offset, (void)src, (void)size, (void)event;
    misused("queue_write");
    return OX_ERR_INTERNAL;
}

static ox_status bad_queue_read(void *queue, void *buffer, size_t offset, void *dst, size_t size,
                                void **event)
{
    (void)queue, (void)buffer, (void)offset, (void)dst, (void)size, (void)event;
    misused("queue_read");
    return OX_ERR_INTERNAL;
}

static ox_status bad_queue_copy(void *queue, void *dst, size_t dst_offset, void *src,
                                size_t src_offset, size_t size, void **event)
{
    (void)queue, (void)dst, (void)dst_offset, (void)src, (void)src_offset, (void)size,
        (void)event;
    misused("queue_copy");
    return OX_ERR_INTERNAL;
}

static ox_status bad_queue_marker(void *queue, void **event)
{
    (void)queue, (void)event;
    misused("queue_marker");
    return OX_ERR_INTERNAL;
}

static ox_status bad_event_wait(void *event)
{
    (void)event;
    misused("event_wait");
    return OX_ERR_INTERNAL;
}

static ox_status bad_event_query(void *event, int *complete)
{
    (void)event, (void)complete;
    misused("event_query");
    return OX_ERR_INTERNAL;
}

static void bad_event_release(void *event)
{
    (void)event;
    misused("event_release");
}

#if defined(OX_BAD_ABI)
#define BAD_ABI_VERSION 999u
#else
#define BAD_ABI_VERSION OX_BACKEND_ABI_VERSION
#endif

#if defined(OX_BAD_MISSING)
#define BAD_BUFFER_ALLOC NULL
#else
#define BAD_BUFFER_ALLOC bad_buffer_alloc
#endif

static const ox__backend_iface bad_iface = {
    .abi_version = BAD_ABI_VERSION,
    .struct_size = sizeof(ox__backend_iface),
    .name = "bad",
    .init = bad_init,
    .shutdown = bad_shutdown,
    .device_count = bad_device_count,
    .device_info = bad_device_info,
    .device_open = bad_device_open,
    .device_close = bad_device_close,
    .buffer_alloc = BAD_BUFFER_ALLOC,
    .buffer_free = bad_buffer_free,
    .queue_create = bad_queue_create,
    .queue_destroy = bad_queue_destroy,
    .queue_finish = bad_queue_finish,
    .queue_write = bad_queue_write,
    .queue_read = bad_queue_read,
    .queue_copy = bad_queue_copy,
    .queue_marker = bad_queue_marker,
    .event_wait = bad_event_wait,
    .event_query = bad_event_query,
    .event_release = bad_event_release,
};

#if defined(OX_BAD_NOENTRY)
/* Exported, but under another name. */
OX__EXPORT const ox__backend_iface *ox_backend_entry_v0(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry_v0(uint32_t core_abi_version)
{
    (void)core_abi_version;
    return &bad_iface;
}
#else
OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version);

OX__EXPORT const ox__backend_iface *ox_backend_entry(uint32_t core_abi_version)
{
    (void)core_abi_version;
#if defined(OX_BAD_NULLENTRY)
    (void)bad_iface;
    return NULL;
#else
    return &bad_iface;
#endif
}
#endif
