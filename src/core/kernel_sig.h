/* The parameter lists of user kernels, read from the source: what lets the
 * core check every argument before a launch on any backend (NVRTC and hiprtc
 * say nothing about parameters), and the entry points that the CPU, CUDA and
 * HIP need around a kernel (local memory given at launch, the CPU's loops).
 *
 * A kernel is `KERNEL name(params)` or `KERNEL_WG(x, y, z) name(params)` at
 * file scope; each parameter is ARG_BUF(type, name) (a buffer), `LOCAL type
 * *name` (local memory sized at launch) or a scalar `type name` of a type
 * whose size every device agrees on. */
#ifndef OX_CORE_KERNEL_SIG_H
#define OX_CORE_KERNEL_SIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/backend.h"

#define OX__SIG_MAX_PARAMS 64
#define OX__SIG_NAME_MAX 64

typedef struct ox__sig_param {
    ox__arg_kind kind;            /* OX__ARG_BUFFER, OX__ARG_SCALAR, OX__ARG_LOCAL */
    char name[OX__SIG_NAME_MAX];
    char type[128];               /* buffer: element type; scalar: type; local: pointer type */
    size_t size;                  /* scalar: bytes; buffer: element bytes, 0 if not a known type */
} ox__sig_param;

typedef struct ox__sig_kernel {
    char name[OX__SIG_NAME_MAX];
    int n_params;
    ox__sig_param params[OX__SIG_MAX_PARAMS];
    int reqd_wg[3];               /* KERNEL_WG(x, y, z); all 0 for KERNEL */
    size_t keyword_at, keyword_len; /* "KERNEL" or "KERNEL_WG(...)" in the source */
    size_t name_at;
    size_t params_at, params_end; /* the parameter list's '(' and ')' */
} ox__sig_kernel;

typedef struct ox__sig_program {
    ox_context *ctx;              /* whose allocator holds kernels */
    int n_kernels, cap;
    ox__sig_kernel *kernels;
    bool barriers;                /* BARRIER appears in the source or options */
} ox__sig_program;

/* Read the kernels of `source` (`options` resolves -DNAME=type scalar
 * types). On a parameter it cannot place, fail with OX_ERR_BUILD and a
 * message naming `what`, the kernel and the parameter. Free with
 * ox__sig_free. */
ox_status ox__sig_parse(ox_context *ctx, const char *what, const char *source,
                        const char *options, ox__sig_program *out);
void ox__sig_free(ox__sig_program *sig);

/* The parameters of the kernel ox_kernel_launch is launching on this
 * thread (for the backend's messages), or NULL. */
const ox__sig_kernel *ox__launching_sig(void);

/* The kernel `name`, or NULL. */
const ox__sig_kernel *ox__sig_find(const ox__sig_program *sig, const char *name);

/* The source with every kernel turned into a helper function and an entry
 * point of the kernel's name appended, for the languages that need one
 * (C, CUDA, HIP); line numbers stay those of the source. Returns a string
 * from the context's allocator, *size bytes (free with ox__free), or NULL
 * when out of memory. */
char *ox__sig_wrap(const char *source, const ox__sig_program *sig, ox__kernel_language language,
                   size_t *size);

#endif /* OX_CORE_KERNEL_SIG_H */
