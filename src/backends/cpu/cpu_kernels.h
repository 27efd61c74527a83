/* User kernels on the CPU (cpu_kernels.c): the portable dialect compiled
 * as C by the system's compiler, work-groups on the thread pool. The
 * backend's kernel slots. */
#ifndef OX_BACKENDS_CPU_CPU_KERNELS_H
#define OX_BACKENDS_CPU_CPU_KERNELS_H

#include <stddef.h>

#include "core/backend.h"

/* Local memory of one work-group on the CPU. */
#define OX__CPU_LOCAL_BYTES (64ul << 10)

struct cpu_kernels; /* per-device state of launches: arenas, fibers */

ox_status ox__cpu_program_build(void *device, const char *source, const char *options,
                                void **program, char **log);
void ox__cpu_program_free(void *program);
ox_status ox__cpu_kernel_create(void *program, const char *name, void **kernel);
void ox__cpu_kernel_free(void *kernel);
ox_status ox__cpu_kernel_launch(void *queue, void *kernel, const size_t groups[3],
                                const size_t local[3], int n_args, const ox__kernel_arg *args,
                                void **event);
void ox__cpu_kernels_free(struct cpu_kernels *state);

/* The C compiler user kernels would use (path), or NULL if there is none. */
const char *ox__cpu_compiler(char *path, size_t cap);

/* The conditional directives of `text` evaluated with the build options
 * (-D/-U), macros left unexpanded: the compiler's `-E -fdirectives-only`
 * (GCC's), so that the library's own kernel files, whose kernels sit in
 * #if blocks, can be read as user kernels are. Returns the part of the
 * output after the first line that is exactly `marker`, malloc'ed; NULL
 * with the reason in why[]. */
char *ox__cpu_directives(const char *text, const char *options, const char *marker, char *why,
                         size_t cap);

#endif /* OX_BACKENDS_CPU_CPU_KERNELS_H */
