/* What the op layer needs from the built-in CPU backend: host pointers of
 * its buffers and its thread pool. (The op layer is in the same library.) */
#ifndef OX_BACKENDS_CPU_CPU_BACKEND_H
#define OX_BACKENDS_CPU_CPU_BACKEND_H

#include <stddef.h>

#include "core/threadpool.h"

/* Host address of a CPU backend buffer (the backend's buffer handle). */
unsigned char *ox__cpu_buffer_data(void *buffer);
/* Its size in bytes. */
size_t ox__cpu_buffer_size(void *buffer);
/* The thread pool of a CPU backend device (the backend's device handle,
 * which is also its queue handle). */
ox__pool *ox__cpu_device_pool(void *device);
/* The host table and the user-kernel launch state of a CPU device. */
const struct ox__host *ox__cpu_device_host(void *device);
struct cpu_kernels **ox__cpu_device_kernels(void *device);
/* The event every CPU operation returns: complete at birth. */
void *ox__cpu_completed_event(void);

#endif /* OX_BACKENDS_CPU_CPU_BACKEND_H */
