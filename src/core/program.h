/* Programs and kernels on a device: build portable-dialect source (the
 * matching prelude is prepended), get kernels by name, launch them.
 * Internal for now; the public user-kernel API builds on this. */
#ifndef OX_CORE_PROGRAM_H
#define OX_CORE_PROGRAM_H

#include "core/core.h"

typedef struct ox__program ox__program;
typedef struct ox__kernel ox__kernel;

/* Build `source` (the dialect, without prelude) for `device` with `options`
 * ("-DNAME=value ...", may be NULL). `what` names the program in messages
 * (an op family, a user file). On OX_ERR_BUILD the message names `what`,
 * the device and holds the compiler's log. The program is owned by the
 * caller: free with ox__program_free. Devices without portable kernels (the
 * CPU) give OX_ERR_UNSUPPORTED. */
ox_status ox__program_build(ox_device *device, const char *what, const char *source,
                            const char *options, ox__program **out);
void ox__program_free(ox__program *program);

/* Build a user program: as ox__program_build, after reading the kernels'
 * parameter lists (kernel_sig.h) and, for the languages that need them,
 * adding their entry points. */
ox_status ox__program_build_user(ox_device *device, const char *what, const char *source,
                                 const char *options, ox__program **out, char **warnings);
/* Compile a user program for a backend's kernel language without a device
 * (its program_check slot): OX_OK, OX_ERR_BUILD with the compiler's log in
 * the message, or OX_ERR_UNSUPPORTED saying why it cannot be checked.
 * `target` receives what was compiled for; *warnings (when not NULL) the
 * compiler's messages on success, malloc'ed, or NULL. */
ox_status ox__program_check_user(ox__backend *backend, ox_context *ctx, const char *what,
                                 const char *source, const char *options, char *target,
                                 size_t target_cap, char **warnings);
/* The kernels a user program's source defines. */
const struct ox__sig_program *ox__program_sig(const ox__program *program);
/* The parameters of a user program's kernel; NULL for ops' programs and
 * kernels the source does not define at file scope. */
const struct ox__sig_kernel *ox__kernel_sig(const ox__kernel *kernel);

/* The kernel `name` of a program, created on first use and owned by the
 * program. */
ox_status ox__program_kernel(ox__program *program, const char *name, ox__kernel **out);

/* The program for (name, options) on a device, built on first use and kept
 * by the device until its context is freed: how ops get their kernels.
 * `source` is the embedded kernel source for `name`. Thread-safe. */
ox_status ox__device_program(ox_device *device, const char *name, const char *source,
                             const char *options, ox__program **out);

/* Whether the device has built the op program `name` (a kernel file) with
 * `option` ("-DVEC=4") among its options: for tests that check which
 * variant ran. */
bool ox__device_program_built(ox_device *device, const char *name, const char *option);

/* Enqueue a launch of groups[] work-groups of local[] work-items on `queue`
 * (a backend queue of the kernel's device). */
ox_status ox__kernel_launch(ox_device *device, void *queue, ox__kernel *kernel,
                            const size_t groups[3], const size_t local[3], int n_args,
                            const ox__kernel_arg *args, void **event);

/* A kernel's name, as asked for. */
const char *ox__kernel_name(const ox__kernel *kernel);

/* The embedded source of kernels/<name>.oxc, or NULL. */
const char *ox__kernel_source(const char *name);
/* The embedded kernels/common.h, the helpers every kernel source gets
 * after its prelude. */
const char *ox__kernel_common(void);
/* The embedded prelude for a kernel language, or NULL. */
const char *ox__kernel_prelude(ox__kernel_language language);
/* Names of all embedded kernel sources (NULL-terminated), for tests that
 * compile every kernel. */
const char *const *ox__kernel_source_names(void);

#endif /* OX_CORE_PROGRAM_H */
