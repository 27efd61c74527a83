/* OpenXPU buffers: device memory, and sub-ranges of it.
 *
 * A buffer lives on one device. Its memory is only reachable through these
 * calls (and later through kernels): on a GPU there is no host pointer.
 * Transfers of zero bytes are valid no-ops; allocations of zero bytes are
 * errors. Every offset/size pair is checked against the buffer, with
 * overflow checks, before anything is touched. */
#ifndef OPENXPU_BUFFER_H
#define OPENXPU_BUFFER_H

#include "openxpu/device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_buffer ox_buffer;

/* Allocate `size` bytes (> 0) on `device`. Contents are undefined. CPU
 * buffers are aligned to at least 64 bytes. On success *out is owned by the
 * caller: free it with ox_buffer_free (or it goes with the context). */
OX_API ox_status ox_buffer_alloc(ox_device *device, size_t size, ox_buffer **out);

/* A buffer over `size` bytes of existing host memory at `ptr`, without a
 * copy: how model weights stay memory-mapped. Only devices that address
 * host memory support it (the CPU); others give OX_ERR_UNSUPPORTED (copy
 * with ox_buffer_alloc + ox_buffer_write instead). The memory stays the
 * caller's and must outlive the buffer and its views; freeing the buffer
 * does not release it. Read-only memory (a PROT_READ mapping) may only be
 * read: writing through such a buffer faults. *out is owned by the caller:
 * free it with ox_buffer_free. */
OX_API ox_status ox_buffer_wrap_host(ox_device *device, void *ptr, size_t size, ox_buffer **out);

/* A view of `size` bytes of `parent` starting at `offset`, sharing its
 * memory. The view keeps the memory alive: freeing the parent first is
 * allowed. Views of views are allowed (offsets add up). *out is owned by the
 * caller: free it with ox_buffer_free. */
OX_API ox_status ox_buffer_sub(ox_buffer *parent, size_t offset, size_t size, ox_buffer **out);

/* Release a buffer or view. NULL is accepted. The handle is invalid
 * afterwards; the memory is returned once no view uses it. Work queued on
 * the buffer must be finished first (ox_queue_finish). */
OX_API void ox_buffer_free(ox_buffer *buffer);

/* Size in bytes. */
OX_API ox_status ox_buffer_size(const ox_buffer *buffer, size_t *size);

/* The device a buffer lives on (borrowed from the context). */
OX_API ox_status ox_buffer_device(const ox_buffer *buffer, ox_device **device);

/* Blocking transfers through the device's default queue: they return when
 * the data has arrived. `src`/`dst` are host memory of at least `size`
 * bytes. */
OX_API ox_status ox_buffer_write(ox_buffer *buffer, size_t offset, const void *src, size_t size);
OX_API ox_status ox_buffer_read(const ox_buffer *buffer, size_t offset, void *dst, size_t size);

/* Fill `size` bytes with a repeated pattern of `pattern_size` bytes (1, 2,
 * 4, 8 or 16); offset and size must be multiples of pattern_size. Blocking. */
OX_API ox_status ox_buffer_fill(ox_buffer *buffer, size_t offset, size_t size, const void *pattern,
                                size_t pattern_size);

/* Copy between two buffers of the same context, blocking. Buffers may be on
 * different devices (the data then goes through host memory). Overlapping
 * ranges of the same memory are an error. */
OX_API ox_status ox_buffer_copy(ox_buffer *dst, size_t dst_offset, const ox_buffer *src,
                                size_t src_offset, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_BUFFER_H */
