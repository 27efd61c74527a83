/* OpenXPU queues and events.
 *
 * A queue is an in-order stream of work on one device. Enqueued work may run
 * after the call returns; an event marks a point in a queue and lets the host
 * or another queue (of any device of the same context) wait for it.
 *
 * Host memory passed to a non-blocking enqueue must stay valid and unchanged
 * until its event completes (or the queue is finished). */
#ifndef OPENXPU_QUEUE_H
#define OPENXPU_QUEUE_H

#include "openxpu/buffer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_queue ox_queue;
typedef struct ox_event ox_event;

/* Create a queue on `device`. *out is owned by the caller: free it with
 * ox_queue_free. */
OX_API ox_status ox_queue_create(ox_device *device, ox_queue **out);

/* Finish the queue's work, then release it. NULL is accepted. Events that
 * came from the queue stay valid (and complete) until freed. */
OX_API void ox_queue_free(ox_queue *queue);

/* The device of a queue (borrowed). */
OX_API ox_status ox_queue_device(const ox_queue *queue, ox_device **device);

/* Block until everything enqueued so far has completed. Reports the first
 * failure of that work, if any. */
OX_API ox_status ox_queue_finish(ox_queue *queue);

/* Enqueue transfers. `event` may be NULL; otherwise *event receives a new
 * event, owned by the caller (free with ox_event_free), that completes when
 * the transfer has. The buffer must be on the queue's device (for copies:
 * both buffers). */
OX_API ox_status ox_queue_write(ox_queue *queue, ox_buffer *buffer, size_t offset, const void *src,
                                size_t size, ox_event **event);
OX_API ox_status ox_queue_read(ox_queue *queue, const ox_buffer *buffer, size_t offset, void *dst,
                               size_t size, ox_event **event);
OX_API ox_status ox_queue_copy(ox_queue *queue, ox_buffer *dst, size_t dst_offset,
                               const ox_buffer *src, size_t src_offset, size_t size,
                               ox_event **event);
OX_API ox_status ox_queue_fill(ox_queue *queue, ox_buffer *buffer, size_t offset, size_t size,
                               const void *pattern, size_t pattern_size, ox_event **event);

/* A new event that completes when all work enqueued so far on `queue` has.
 * *event is owned by the caller. */
OX_API ox_status ox_queue_marker(ox_queue *queue, ox_event **event);

/* Make later work on `queue` wait for `event`, which may come from a queue
 * of another device of the same context. */
OX_API ox_status ox_queue_wait_event(ox_queue *queue, ox_event *event);

/* Block the host until `event` completes. */
OX_API ox_status ox_event_wait(ox_event *event);

/* *complete = 1 if `event` has completed, 0 if not; never blocks. */
OX_API ox_status ox_event_query(ox_event *event, int *complete);

/* Release an event. NULL is accepted. Does not wait. */
OX_API void ox_event_free(ox_event *event);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_QUEUE_H */
