/* OpenXPU user kernels: write an operator once in the portable dialect
 * (docs/KERNELS.md), build it for any device that runs portable kernels
 * (OpenCL, CUDA, HIP), and launch it on a queue.
 *
 *     ox_program *p;
 *     ox_program_build(device, source, "-DTILE=64", &p);  // prelude added
 *     ox_kernel *k;
 *     ox_program_kernel(p, "saxpy", &k);
 *     ox_kernel_set_buffer(k, 0, y);          // ARG_BUF(float, y)
 *     ox_kernel_set_buffer(k, 1, x);          // ARG_BUF(const float, x)
 *     ox_kernel_set_scalar(k, 2, &a, sizeof a);  // float a
 *     size_t global[3] = {n_rounded, 1, 1}, local[3] = {64, 1, 1};
 *     ox_kernel_launch(queue, k, global, local, NULL);
 *
 * Arguments are counted as the kernel declares them: an ARG_BUF is one
 * argument (a buffer or sub-buffer), a scalar another. Local memory is
 * declared in the kernel with LOCAL_ARRAY and sized by build defines.
 * Programs are cached on disk like the built-in kernels. The CPU device
 * does not run user kernels yet: build for an OpenCL CPU device (PoCL)
 * instead; the call says so. */
#ifndef OPENXPU_KERNEL_H
#define OPENXPU_KERNEL_H

#include "openxpu/buffer.h"
#include "openxpu/queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_program ox_program;
typedef struct ox_kernel ox_kernel;

/* Build `source` (the portable dialect; the device's prelude is added)
 * with `options` ("-DNAME=VALUE ...", may be NULL). A source that does not
 * compile fails with OX_ERR_BUILD and the compiler's log in the message.
 * *out is owned by the caller: ox_program_free (or the context's end). */
OX_API ox_status ox_program_build(ox_device *device, const char *source, const char *options,
                                  ox_program **out);
OX_API void ox_program_free(ox_program *program);

/* The kernel `name` of a program (OX_ERR_NOT_FOUND naming it if there is
 * none), owned by the program. */
OX_API ox_status ox_program_kernel(ox_program *program, const char *name, ox_kernel **out);

/* Argument `index`: a buffer of the kernel's device (its sub-buffers too),
 * or a scalar of 4 bytes (int, uint, float) or 8 (long, ulong, double). */
OX_API ox_status ox_kernel_set_buffer(ox_kernel *kernel, int index, ox_buffer *buffer);
OX_API ox_status ox_kernel_set_scalar(ox_kernel *kernel, int index, const void *value,
                                      size_t size);

/* Launch global[0] x global[1] x global[2] work-items in work-groups of
 * local[] (each global size a multiple of its local size) on a queue of the
 * kernel's device; with event, *event completes when the kernel has run. */
OX_API ox_status ox_kernel_launch(ox_queue *queue, ox_kernel *kernel, const size_t global[3],
                                  const size_t local[3], ox_event **event);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_KERNEL_H */
