/* User kernels (openxpu/kernel.h): public handles over the internal
 * program layer the ops use (program.c), with the checks a user needs:
 * every argument set and of a known kind, buffers and queues of the
 * kernel's device, global sizes that the work-groups divide. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/program.h"
#include "openxpu/kernel.h"

#define MAX_ARGS 32

struct ox_kernel {
    ox_program *program;
    ox__kernel *impl;
    ox_kernel *next;
    int n_args;              /* highest index set + 1 */
    bool set[MAX_ARGS];
    ox__kernel_arg args[MAX_ARGS];
    unsigned char values[MAX_ARGS][8];
};

struct ox_program {
    ox__link link; /* first: the context's list of programs */
    ox_context *ctx;
    ox_device *device;
    ox__program *impl;
    ox_kernel *kernels;
};

ox_status ox_program_build(ox_device *device, const char *source, const char *options,
                           ox_program **out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!source || !out)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: source or out is NULL", __func__);
    *out = NULL;
    if (device->backend->iface->kernel_language == OX__KERNEL_NONE)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                        "%s: %s runs native code only; user kernels run on OpenCL, CUDA and HIP "
                        "devices (for the CPU, an OpenCL CPU device such as PoCL)", __func__,
                        device->info.id);
    ox_program *p = ox__calloc(ctx, 1, sizeof *p);
    if (!p) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    if ((s = ox__program_build(device, "user program", source, options, &p->impl)) != OX_OK) {
        ox__free(ctx, p, sizeof *p);
        return s;
    }
    if (ox__handle_add(p, OX__HANDLE_PROGRAM, ctx) != OX_OK) {
        ox__program_free(p->impl);
        ox__free(ctx, p, sizeof *p);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    }
    p->ctx = ctx;
    p->device = device;
    ox__track(ctx, &ctx->programs, &p->link);
    *out = p;
    return OX_OK;
}

void ox_program_free(ox_program *program)
{
    ox_context *ctx;
    if (!program || !ox__handle_check_free(program, OX__HANDLE_PROGRAM, __func__, &ctx)) return;
    ox__untrack(ctx, &program->link);
    ox__handle_remove(program);
    for (ox_kernel *k = program->kernels, *next; k; k = next) {
        next = k->next;
        ox__handle_remove(k);
        ox__free(ctx, k, sizeof *k);
    }
    ox__program_free(program->impl);
    ox__free(ctx, program, sizeof *program);
}

ox_status ox_program_kernel(ox_program *program, const char *name, ox_kernel **out)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(program, OX__HANDLE_PROGRAM, __func__, "program", &ctx);
    if (s != OX_OK) return s;
    if (!name || !out) return ox__fail(ctx, OX_ERR_INVALID, "%s: name or out is NULL", __func__);
    *out = NULL;
    ox__kernel *impl;
    if ((s = ox__program_kernel(program->impl, name, &impl)) != OX_OK) {
        if (s == OX_ERR_INVALID || s == OX_ERR_OUT_OF_MEMORY) return s;
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        return ox__fail(ctx, OX_ERR_NOT_FOUND, "%s", message);
    }
    for (ox_kernel *k = program->kernels; k; k = k->next)
        if (k->impl == impl) {
            *out = k;
            return OX_OK;
        }
    ox_kernel *k = ox__calloc(ctx, 1, sizeof *k);
    if (!k || ox__handle_add(k, OX__HANDLE_KERNEL, ctx) != OX_OK) {
        ox__free(ctx, k, sizeof *k);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    }
    k->program = program;
    k->impl = impl;
    k->next = program->kernels;
    program->kernels = k;
    *out = k;
    return OX_OK;
}

static const char *kernel_name(const ox_kernel *k)
{
    return ox__kernel_name(k->impl);
}

static ox_status check_index(ox_context *ctx, const ox_kernel *k, int index, const char *func)
{
    if (index < 0 || index >= MAX_ARGS)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: kernel '%s': argument %d is outside 0..%d",
                        func, kernel_name(k), index, MAX_ARGS - 1);
    return OX_OK;
}

static void mark_set(ox_kernel *k, int index)
{
    k->set[index] = true;
    if (index + 1 > k->n_args) k->n_args = index + 1;
}

ox_status ox_kernel_set_buffer(ox_kernel *kernel, int index, ox_buffer *buffer)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(kernel, OX__HANDLE_KERNEL, __func__, "kernel", &ctx);
    if (s != OX_OK || (s = check_index(ctx, kernel, index, __func__)) != OX_OK) return s;
    if ((s = ox__handle_check(buffer, OX__HANDLE_BUFFER, __func__, "buffer", NULL)) != OX_OK)
        return s;
    ox_device *device = kernel->program->device;
    if (buffer->memory->device != device)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': argument %d is a buffer of %s, "
                        "the kernel runs on %s", __func__, kernel_name(kernel), index,
                        buffer->memory->device->info.id, device->info.id);
    kernel->args[index] = (ox__kernel_arg){.kind = OX__ARG_BUFFER,
                                           .buffer = buffer->memory->impl,
                                           .offset = buffer->offset};
    mark_set(kernel, index);
    return OX_OK;
}

ox_status ox_kernel_set_scalar(ox_kernel *kernel, int index, const void *value, size_t size)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(kernel, OX__HANDLE_KERNEL, __func__, "kernel", &ctx);
    if (s != OX_OK || (s = check_index(ctx, kernel, index, __func__)) != OX_OK) return s;
    if (!value || (size != 4 && size != 8))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': argument %d: a scalar of %zu "
                        "bytes%s; scalars are 4 (int, uint, float) or 8 bytes (long, ulong, "
                        "double)", __func__, kernel_name(kernel), index, size,
                        value ? "" : " at NULL");
    memcpy(kernel->values[index], value, size);
    kernel->args[index] = (ox__kernel_arg){.kind = OX__ARG_SCALAR,
                                           .value = kernel->values[index], .size = size};
    mark_set(kernel, index);
    return OX_OK;
}

ox_status ox_kernel_launch(ox_queue *queue, ox_kernel *kernel, const size_t global[3],
                           const size_t local[3], ox_event **event)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(kernel, OX__HANDLE_KERNEL, __func__, "kernel", &ctx);
    if (s != OX_OK) return s;
    if ((s = ox__handle_check(queue, OX__HANDLE_QUEUE, __func__, "queue", NULL)) != OX_OK)
        return s;
    if (event) *event = NULL;
    ox_device *device = kernel->program->device;
    if (!global || !local)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': global or local is NULL", __func__,
                        kernel_name(kernel));
    if (queue->device != device)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s' was built for %s; the queue is on "
                        "%s", __func__, kernel_name(kernel), device->info.id,
                        queue->device->info.id);
    for (int i = 0; i < kernel->n_args; i++)
        if (!kernel->set[i])
            return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': argument %d is not set",
                            __func__, kernel_name(kernel), i);
    size_t groups[3];
    for (int d = 0; d < 3; d++) {
        if (local[d] == 0 || global[d] % local[d])
            return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': global size %zu of dimension "
                            "%d is not a multiple of the work-group size %zu", __func__,
                            kernel_name(kernel), global[d], d, local[d]);
        groups[d] = global[d] / local[d];
    }
    void *ev = NULL;
    s = ox__kernel_launch(device, queue->impl, kernel->impl, groups, local, kernel->n_args,
                          kernel->args, event ? &ev : NULL);
    if (s != OX_OK) return s;
    return event ? ox__event_wrap(ctx, device, ev, __func__, event) : OX_OK;
}
