/* OpenXPU user kernels: write an operator once in the portable dialect
 * (docs/KERNELS.md), build it for any device: OpenCL, CUDA and HIP through
 * their run-time compilers, the CPU through the system's C compiler.
 *
 *     ox_program *p;
 *     ox_program_build(device, source, "-DTILE=64", &p);  // prelude added
 *     ox_kernel *k;
 *     ox_program_kernel(p, "saxpy", &k);
 *     ox_kernel_set_buffer(k, 0, y);             // ARG_BUF(float, y)
 *     ox_kernel_set_buffer(k, 1, x);             // ARG_BUF(const float, x)
 *     ox_kernel_set_scalar(k, 2, &a, sizeof a);  // float a
 *     ox_kernel_set_local(k, 3, 256 * sizeof(float));  // LOCAL float *tile
 *     size_t global[3] = {n_rounded, 1, 1}, local[3] = {64, 1, 1};
 *     ox_kernel_launch(queue, k, global, local, NULL);
 *
 * Arguments are counted as the kernel declares its parameters: an
 * ARG_BUF(type, name) is one argument (a buffer or sub-buffer), a scalar
 * another, `LOCAL type *name` another (its size is given at launch). The
 * library reads each kernel's parameter list from the source, so every
 * argument is checked (kind, scalar size, all set) before any launch, on
 * every backend. Local memory may also be declared in the kernel with
 * LOCAL_ARRAY, sized by constants or build defines.
 *
 * Programs are cached on disk like the built-in kernels. On the CPU a C
 * compiler is needed at run time ($OX_CC, else cc, gcc or clang): without
 * one ox_program_build fails with OX_ERR_UNSUPPORTED, and an OpenCL CPU
 * device (PoCL) runs the same source. */
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
 * for an ARG_BUF parameter. */
OX_API ox_status ox_kernel_set_buffer(ox_kernel *kernel, int index, ox_buffer *buffer);
/* A scalar parameter: `size` must be the size of its declared type (1:
 * char, uchar; 2: short, ushort; 4: int, uint, float; 8: i64, u64, double);
 * the value is copied. */
OX_API ox_status ox_kernel_set_scalar(ox_kernel *kernel, int index, const void *value,
                                      size_t size);
/* A `LOCAL type *name` parameter: `bytes` of local memory for each
 * work-group (at most the device's local_memory_bytes, less what the
 * kernel's LOCAL_ARRAYs take). */
OX_API ox_status ox_kernel_set_local(ox_kernel *kernel, int index, size_t bytes);

/* Launch global[0] x global[1] x global[2] work-items in work-groups of
 * local[] (each global size a multiple of its local size) on a queue of the
 * kernel's device; with event, *event completes when the kernel has run. */
OX_API ox_status ox_kernel_launch(ox_queue *queue, ox_kernel *kernel, const size_t global[3],
                                  const size_t local[3], ox_event **event);

/* What a kernel's parameters are, as the source declares them: for
 * bindings and tools that set arguments generically. */
typedef enum ox_kernel_arg_kind {
    OX_KERNEL_ARG_BUFFER = 1, /* ARG_BUF(type, name): ox_kernel_set_buffer */
    OX_KERNEL_ARG_SCALAR = 2, /* type name: ox_kernel_set_scalar */
    OX_KERNEL_ARG_LOCAL = 3   /* LOCAL type *name: ox_kernel_set_local */
} ox_kernel_arg_kind;

typedef struct ox_kernel_arg_info {
    size_t struct_size;       /* set to sizeof(ox_kernel_arg_info) before the call */
    ox_kernel_arg_kind kind;
    char name[64];
    char type[128];           /* as written: a buffer's element type, a scalar's type,
                               * a local pointer's type ("LOCAL float *") */
    size_t size;              /* a scalar's bytes; 0 for buffers and local memory */
} ox_kernel_arg_info;

/* The kernels a program defines (file-scope KERNEL definitions), by
 * index; *name is owned by the program. */
OX_API ox_status ox_program_kernel_count(ox_program *program, int *count);
OX_API ox_status ox_program_kernel_name(ox_program *program, int index, const char **name);
/* A kernel's parameters, counted as its arguments are. */
OX_API ox_status ox_kernel_arg_count(ox_kernel *kernel, int *count);
OX_API ox_status ox_kernel_get_arg_info(ox_kernel *kernel, int index, ox_kernel_arg_info *info);

/* Does `source` compile for backend `backend` ("cpu", "opencl", "cuda",
 * "hip")? Built for the backend's first device when it has one here, else
 * by its compiler alone where that needs no device (NVRTC, hiprtc): how a
 * kernel is known to port before it meets the vendor's hardware.
 * OX_OK: it compiles. OX_ERR_BUILD: it does not; ox_errmsg holds the
 * compiler's messages. OX_ERR_NOT_FOUND, OX_ERR_UNSUPPORTED: it cannot be
 * checked here; ox_errmsg says why. `target` (may be NULL) receives what
 * was compiled for; *warnings (may be NULL) the compiler's messages when it
 * compiles with some, for free(), or NULL. */
OX_API ox_status ox_program_check(ox_context *ctx, const char *backend, const char *source,
                                  const char *options, char *target, size_t target_cap,
                                  char **warnings);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_KERNEL_H */
