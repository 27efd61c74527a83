/* Queues, events and every data transfer: the queued forms (ox_queue_*) and
 * the blocking forms (ox_buffer_write/read/fill/copy), which run on the
 * device's default queue. All arguments are checked before any work is
 * enqueued, so a refused call changes nothing. */
#include <string.h>

#include "core/core.h"

#define STAGING_CHUNK ((size_t)4 << 20) /* cross-device copies go through host memory */

typedef enum xfer_kind { XFER_WRITE, XFER_READ, XFER_COPY, XFER_FILL } xfer_kind;

typedef struct xfer {
    xfer_kind kind;
    ox_buffer *dst;            /* WRITE, COPY, FILL */
    size_t dst_offset;
    const ox_buffer *src;      /* READ, COPY */
    size_t src_offset;
    const void *host_src;      /* WRITE */
    void *host_dst;            /* READ */
    const void *pattern;       /* FILL */
    size_t pattern_size;
    size_t size;
} xfer;

/* Prefix the backend's message with the call and the device. */
static ox_status backend_failed(ox_context *ctx, ox_status s, const char *func,
                                const ox_device *device)
{
    char message[OX__ERRMSG_MAX];
    ox__copy_string(message, sizeof message, ox_errmsg(ctx));
    return ox__fail(ctx, s, "%s: %s: %s", func, device->info.id, message);
}

static ox_device *buffer_device(const ox_buffer *b)
{
    return b->memory->device;
}

/* Check a buffer argument: a live buffer of `ctx`. */
static ox_status check_buffer(ox_context *ctx, const ox_buffer *b, const char *func,
                              const char *what)
{
    ox_context *owner;
    ox_status s = ctx ? ox__handle_check_in(ctx, b, OX__HANDLE_BUFFER, func, what, &owner)
                      : ox__handle_check(b, OX__HANDLE_BUFFER, func, what, &owner);
    if (s != OX_OK) return s;
    if (ctx && owner != ctx)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: %s belongs to another context", func, what);
    return OX_OK;
}

/* Check everything about a transfer except the handles' liveness (done by
 * the callers) and the device match (queued transfers only). */
static ox_status check_xfer(ox_context *ctx, const char *func, const xfer *x)
{
    ox_status s = OX_OK;
    switch (x->kind) {
    case XFER_WRITE:
        if (!x->host_src && x->size) return ox__fail(ctx, OX_ERR_INVALID, "%s: src is NULL", func);
        return ox__buffer_check_range(ctx, func, "buffer", x->dst, x->dst_offset, x->size);
    case XFER_READ:
        if (!x->host_dst && x->size) return ox__fail(ctx, OX_ERR_INVALID, "%s: dst is NULL", func);
        return ox__buffer_check_range(ctx, func, "buffer", x->src, x->src_offset, x->size);
    case XFER_FILL: {
        size_t p = x->pattern_size;
        if (!x->pattern) return ox__fail(ctx, OX_ERR_INVALID, "%s: pattern is NULL", func);
        if (p != 1 && p != 2 && p != 4 && p != 8 && p != 16)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "%s: pattern_size is %zu; it must be 1, 2, 4, 8 or 16", func, p);
        if (x->dst_offset % p || x->size % p)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "%s: offset %zu and size %zu must be multiples of pattern_size %zu",
                            func, x->dst_offset, x->size, p);
        return ox__buffer_check_range(ctx, func, "buffer", x->dst, x->dst_offset, x->size);
    }
    case XFER_COPY:
        s = ox__buffer_check_range(ctx, func, "src", x->src, x->src_offset, x->size);
        if (s == OX_OK) s = ox__buffer_check_range(ctx, func, "dst", x->dst, x->dst_offset, x->size);
        if (s != OX_OK || x->size == 0 || x->src->memory != x->dst->memory) return s;
        size_t a = x->src->offset + x->src_offset, b = x->dst->offset + x->dst_offset;
        if (a < b + x->size && b < a + x->size)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "%s: source [%zu, %zu) and destination [%zu, %zu) overlap in the same "
                            "memory",
                            func, a, a + x->size, b, b + x->size);
        return OX_OK;
    }
    return ox__fail(ctx, OX_ERR_INTERNAL, "%s: unknown transfer", func);
}

/* Fill through host memory, for backends without queue_fill. Synchronous. */
static ox_status fill_staged(ox_context *ctx, const ox__backend_iface *be, void *queue,
                             const xfer *x)
{
    size_t chunk = x->size < STAGING_CHUNK ? x->size : STAGING_CHUNK;
    unsigned char *stage = ox__alloc(ctx, chunk);
    if (!stage) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "out of host memory for a fill");
    for (size_t i = 0; i < chunk; i += x->pattern_size) memcpy(stage + i, x->pattern, x->pattern_size);
    ox_status s = OX_OK;
    void *impl = x->dst->memory->impl;
    for (size_t done = 0; done < x->size && s == OX_OK; done += chunk) {
        size_t n = x->size - done < chunk ? x->size - done : chunk;
        s = be->queue_write(queue, impl, x->dst->offset + x->dst_offset + done, stage, n, NULL);
        if (s == OX_OK) s = be->queue_finish(queue);
    }
    ox__free(ctx, stage, chunk);
    return s;
}

/* Enqueue a checked same-device transfer on a backend queue. */
static ox_status run_xfer(ox_context *ctx, ox_device *device, void *queue, const xfer *x,
                          void **event)
{
    const ox__backend_iface *be = device->backend->iface;
    if (x->kind != XFER_READ) atomic_fetch_add(&x->dst->memory->writes, 1);
    switch (x->kind) {
    case XFER_WRITE:
        return be->queue_write(queue, x->dst->memory->impl, x->dst->offset + x->dst_offset,
                               x->host_src, x->size, event);
    case XFER_READ:
        return be->queue_read(queue, x->src->memory->impl, x->src->offset + x->src_offset,
                              x->host_dst, x->size, event);
    case XFER_COPY:
        return be->queue_copy(queue, x->dst->memory->impl, x->dst->offset + x->dst_offset,
                              x->src->memory->impl, x->src->offset + x->src_offset, x->size, event);
    case XFER_FILL:
        if (be->queue_fill)
            return be->queue_fill(queue, x->dst->memory->impl, x->dst->offset + x->dst_offset,
                                  x->size, x->pattern, x->pattern_size, event);
        ox_status s = fill_staged(ctx, be, queue, x);
        return s == OX_OK && event ? be->queue_marker(queue, event) : s;
    }
    return OX_ERR_INTERNAL;
}

/* ---- events ---------------------------------------------------------------- */

ox_status ox__event_wrap(ox_context *ctx, ox_device *device, void *impl, const char *func,
                         ox_event **out)
{
    ox_event *ev = ox__calloc(ctx, 1, sizeof *ev);
    if (!ev || ox__handle_add(ev, OX__HANDLE_EVENT, ctx) != OX_OK) {
        ox__free(ctx, ev, sizeof *ev);
        device->backend->iface->event_wait(impl);
        device->backend->iface->event_release(impl);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory for an event", func);
    }
    ev->ctx = ctx;
    ev->device = device;
    ev->impl = impl;
    ox__track(ctx, &ctx->events, &ev->link);
    *out = ev;
    return OX_OK;
}

ox_status ox_event_wait(ox_event *event)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(event, OX__HANDLE_EVENT, __func__, "event", &ctx);
    if (s != OX_OK) return s;
    atomic_fetch_add(&ctx->n_syncs, 1);
    s = event->device->backend->iface->event_wait(event->impl);
    return s == OX_OK ? s : backend_failed(ctx, s, __func__, event->device);
}

ox_status ox_event_query(ox_event *event, int *complete)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(event, OX__HANDLE_EVENT, __func__, "event", &ctx);
    if (s != OX_OK) return s;
    if (!complete) return ox__fail(ctx, OX_ERR_INVALID, "%s: complete is NULL", __func__);
    s = event->device->backend->iface->event_query(event->impl, complete);
    return s == OX_OK ? s : backend_failed(ctx, s, __func__, event->device);
}

void ox_event_free(ox_event *event)
{
    ox_context *ctx;
    if (!event || !ox__handle_check_free(event, OX__HANDLE_EVENT, __func__, &ctx)) return;
    ox__untrack(ctx, &event->link);
    ox__handle_remove(event);
    event->device->backend->iface->event_release(event->impl);
    ox__free(ctx, event, sizeof *event);
}

/* ---- queues ---------------------------------------------------------------- */

ox_status ox_queue_create(ox_device *device, ox_queue **out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    s = ox__device_open(device, __func__);
    if (s != OX_OK) return s;
    ox_queue *q = ox__calloc(ctx, 1, sizeof *q);
    if (!q) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    q->ctx = ctx;
    q->device = device;
    s = device->backend->iface->queue_create(device->impl, &q->impl);
    if (s != OX_OK) {
        backend_failed(ctx, s, __func__, device);
        goto err_free_queue;
    }
    if (ox__handle_add(q, OX__HANDLE_QUEUE, ctx) != OX_OK) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
        goto err_destroy_impl;
    }
    ox__track(ctx, &ctx->queues, &q->link);
    *out = q;
    return OX_OK;

err_destroy_impl:
    device->backend->iface->queue_destroy(q->impl);
err_free_queue:
    ox__free(ctx, q, sizeof *q);
    return s;
}

void ox_queue_free(ox_queue *queue)
{
    ox_context *ctx;
    if (!queue || !ox__handle_check_free(queue, OX__HANDLE_QUEUE, __func__, &ctx)) return;
    ox__untrack(ctx, &queue->link);
    ox__handle_remove(queue);
    queue->device->backend->iface->queue_destroy(queue->impl);
    ox_buffer_free(queue->scratch);
    ox__free(ctx, queue, sizeof *queue);
}

ox_status ox__queue_scratch(ox_queue *q, size_t size, ox_buffer **out)
{
    size_t have = 0;
    if (q->scratch && ox_buffer_size(q->scratch, &have) == OX_OK && have >= size) {
        *out = q->scratch;
        return OX_OK;
    }
    if (q->scratch) {
        ox_status s = ox_queue_finish(q);
        if (s != OX_OK) return s;
        ox_buffer_free(q->scratch);
        q->scratch = NULL;
    }
    ox_status s = ox_buffer_alloc(q->device, size, &q->scratch);
    if (s == OX_OK) *out = q->scratch;
    return s;
}

ox_status ox_queue_device(const ox_queue *queue, ox_device **device)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(queue, OX__HANDLE_QUEUE, __func__, "queue", &ctx);
    if (s != OX_OK) return s;
    if (!device) return ox__fail(ctx, OX_ERR_INVALID, "%s: device is NULL", __func__);
    *device = queue->device;
    return OX_OK;
}

ox_status ox_queue_finish(ox_queue *queue)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(queue, OX__HANDLE_QUEUE, __func__, "queue", &ctx);
    if (s != OX_OK) return s;
    atomic_fetch_add(&ctx->n_syncs, 1);
    s = queue->device->backend->iface->queue_finish(queue->impl);
    return s == OX_OK ? s : backend_failed(ctx, s, __func__, queue->device);
}

/* Check and enqueue one transfer on a user queue. */
static ox_status queue_xfer(ox_queue *queue, const xfer *x, const char *func, ox_event **event)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(queue, OX__HANDLE_QUEUE, func, "queue", &ctx);
    if (s != OX_OK) return s;
    if (event) *event = NULL;
    bool copy = x->kind == XFER_COPY;
    if (x->kind != XFER_READ && (s = check_buffer(ctx, x->dst, func, copy ? "dst" : "buffer")))
        return s;
    if ((copy || x->kind == XFER_READ) &&
        (s = check_buffer(ctx, x->src, func, copy ? "src" : "buffer")))
        return s;
    s = check_xfer(ctx, func, x);
    if (s != OX_OK) return s;
    const ox_buffer *bufs[2] = {x->dst, x->src};
    for (int i = 0; i < 2; i++)
        if (bufs[i] && buffer_device(bufs[i]) != queue->device)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "%s: the buffer is on %s but the queue is on %s; use ox_buffer_copy "
                            "to move data between devices",
                            func, buffer_device(bufs[i])->info.id, queue->device->info.id);
    void *ev = NULL;
    const ox__backend_iface *be = queue->device->backend->iface;
    if (x->kind == XFER_WRITE || x->kind == XFER_READ) atomic_fetch_add(&ctx->n_transfers, 1);
    s = x->size ? run_xfer(ctx, queue->device, queue->impl, x, event ? &ev : NULL)
                : (event ? be->queue_marker(queue->impl, &ev) : OX_OK);
    if (s != OX_OK) return backend_failed(ctx, s, func, queue->device);
    return event ? ox__event_wrap(ctx, queue->device, ev, func, event) : OX_OK;
}

ox_status ox_queue_write(ox_queue *queue, ox_buffer *buffer, size_t offset, const void *src,
                         size_t size, ox_event **event)
{
    xfer x = {.kind = XFER_WRITE, .dst = buffer, .dst_offset = offset, .host_src = src,
              .size = size};
    return queue_xfer(queue, &x, __func__, event);
}

ox_status ox_queue_read(ox_queue *queue, const ox_buffer *buffer, size_t offset, void *dst,
                        size_t size, ox_event **event)
{
    xfer x = {.kind = XFER_READ, .src = buffer, .src_offset = offset, .host_dst = dst,
              .size = size};
    return queue_xfer(queue, &x, __func__, event);
}

ox_status ox_queue_copy(ox_queue *queue, ox_buffer *dst, size_t dst_offset, const ox_buffer *src,
                        size_t src_offset, size_t size, ox_event **event)
{
    xfer x = {.kind = XFER_COPY, .dst = dst, .dst_offset = dst_offset, .src = src,
              .src_offset = src_offset, .size = size};
    return queue_xfer(queue, &x, __func__, event);
}

ox_status ox_queue_fill(ox_queue *queue, ox_buffer *buffer, size_t offset, size_t size,
                        const void *pattern, size_t pattern_size, ox_event **event)
{
    xfer x = {.kind = XFER_FILL, .dst = buffer, .dst_offset = offset, .size = size,
              .pattern = pattern, .pattern_size = pattern_size};
    return queue_xfer(queue, &x, __func__, event);
}

ox_status ox_queue_marker(ox_queue *queue, ox_event **event)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(queue, OX__HANDLE_QUEUE, __func__, "queue", &ctx);
    if (s != OX_OK) return s;
    if (!event) return ox__fail(ctx, OX_ERR_INVALID, "%s: event is NULL", __func__);
    *event = NULL;
    void *ev;
    s = queue->device->backend->iface->queue_marker(queue->impl, &ev);
    if (s != OX_OK) return backend_failed(ctx, s, __func__, queue->device);
    return ox__event_wrap(ctx, queue->device, ev, __func__, event);
}

ox_status ox_queue_wait_event(ox_queue *queue, ox_event *event)
{
    ox_context *ctx, *event_ctx;
    ox_status s = ox__handle_check(queue, OX__HANDLE_QUEUE, __func__, "queue", &ctx);
    if (s != OX_OK) return s;
    s = ox__handle_check(event, OX__HANDLE_EVENT, __func__, "event", &event_ctx);
    if (s != OX_OK) return s;
    if (event_ctx != ctx)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: the event belongs to another context", __func__);
    const ox__backend_iface *be = queue->device->backend->iface;
    if (event->device->backend == queue->device->backend && be->queue_wait_event)
        s = be->queue_wait_event(queue->impl, event->impl);
    else /* another backend: the host waits, so later work starts after it */
        s = event->device->backend->iface->event_wait(event->impl);
    return s == OX_OK ? s : backend_failed(ctx, s, __func__, queue->device);
}

/* ---- blocking transfers on the default queue ------------------------------- */

static ox_status blocking_xfer(ox_device *device, const xfer *x, const char *func)
{
    ox_context *ctx = device->ctx;
    const ox__backend_iface *be = device->backend->iface;
    void *queue;
    atomic_fetch_add(&ctx->n_syncs, 1);
    if (x->kind == XFER_WRITE || x->kind == XFER_READ) atomic_fetch_add(&ctx->n_transfers, 1);
    pthread_mutex_lock(&device->lock);
    ox_status s = ox__device_default_queue(device, func, &queue);
    if (s == OX_OK) {
        s = run_xfer(ctx, device, queue, x, NULL);
        if (s == OX_OK) s = be->queue_finish(queue);
        if (s != OX_OK) backend_failed(ctx, s, func, device);
    }
    pthread_mutex_unlock(&device->lock);
    return s;
}

/* Copy between devices through host memory, chunk by chunk. */
static ox_status staged_copy(ox_context *ctx, const xfer *x, const char *func)
{
    size_t chunk = x->size < STAGING_CHUNK ? x->size : STAGING_CHUNK;
    unsigned char *stage = ox__alloc(ctx, chunk);
    if (!stage)
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory for staging", func);
    ox_status s = OX_OK;
    for (size_t done = 0; done < x->size && s == OX_OK; done += chunk) {
        size_t n = x->size - done < chunk ? x->size - done : chunk;
        xfer rd = {.kind = XFER_READ, .src = x->src, .src_offset = x->src_offset + done,
                   .host_dst = stage, .size = n};
        xfer wr = {.kind = XFER_WRITE, .dst = x->dst, .dst_offset = x->dst_offset + done,
                   .host_src = stage, .size = n};
        s = blocking_xfer(buffer_device(x->src), &rd, func);
        if (s == OX_OK) s = blocking_xfer(buffer_device(x->dst), &wr, func);
    }
    ox__free(ctx, stage, chunk);
    return s;
}

static ox_status buffer_xfer(const xfer *x, const char *func)
{
    const ox_buffer *main = x->kind == XFER_READ ? x->src : x->dst;
    ox_context *ctx;
    ox_status s = check_buffer(NULL, main, func, x->kind == XFER_COPY ? "dst" : "buffer");
    if (s != OX_OK) return s;
    ctx = main->ctx;
    if (x->kind == XFER_COPY && (s = check_buffer(ctx, x->src, func, "src")) != OX_OK) return s;
    s = check_xfer(ctx, func, x);
    if (s != OX_OK || x->size == 0) return s;
    if (x->kind == XFER_COPY && buffer_device(x->src) != buffer_device(x->dst))
        return staged_copy(ctx, x, func);
    return blocking_xfer(buffer_device(main), x, func);
}

ox_status ox_buffer_write(ox_buffer *buffer, size_t offset, const void *src, size_t size)
{
    xfer x = {.kind = XFER_WRITE, .dst = buffer, .dst_offset = offset, .host_src = src,
              .size = size};
    return buffer_xfer(&x, __func__);
}

ox_status ox_buffer_read(const ox_buffer *buffer, size_t offset, void *dst, size_t size)
{
    xfer x = {.kind = XFER_READ, .src = buffer, .src_offset = offset, .host_dst = dst,
              .size = size};
    return buffer_xfer(&x, __func__);
}

ox_status ox_buffer_fill(ox_buffer *buffer, size_t offset, size_t size, const void *pattern,
                         size_t pattern_size)
{
    xfer x = {.kind = XFER_FILL, .dst = buffer, .dst_offset = offset, .size = size,
              .pattern = pattern, .pattern_size = pattern_size};
    return buffer_xfer(&x, __func__);
}

ox_status ox_buffer_copy(ox_buffer *dst, size_t dst_offset, const ox_buffer *src,
                         size_t src_offset, size_t size)
{
    xfer x = {.kind = XFER_COPY, .dst = dst, .dst_offset = dst_offset, .src = src,
              .src_offset = src_offset, .size = size};
    return buffer_xfer(&x, __func__);
}
