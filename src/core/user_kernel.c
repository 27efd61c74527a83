/* User kernels (openxpu/kernel.h): public handles over the internal
 * program layer the ops use (program.c), with the checks a user needs:
 * every argument set and of a known kind, buffers and queues of the
 * kernel's device, global sizes that the work-groups divide. */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "core/kernel_sig.h"
#include "core/program.h"
#include "openxpu/kernel.h"

#define MAX_ARGS OX__SIG_MAX_PARAMS

struct ox_kernel {
    ox_program *program;
    ox__kernel *impl;
    const ox__sig_kernel *sig; /* the parameters as the source declares them */
    ox_kernel *next;
    int n_args;              /* the parameters, or (no sig) the highest index set + 1 */
    bool set[MAX_ARGS];
    ox__kernel_arg args[MAX_ARGS];
    _Alignas(8) unsigned char values[MAX_ARGS][8];
};

struct ox_program {
    ox__link link; /* first: the context's list of programs */
    ox_context *ctx;
    ox_device *device;
    ox__program *impl;
    ox_kernel *kernels;
};

/* A CPU that cannot build user kernels (no C compiler): name the OpenCL
 * CPU device of this context that runs the same source, if there is one. */
static void name_fallback(ox_context *ctx, const ox_device *device)
{
    if (device->info.type != OX_DEVICE_CPU || device->backend->iface != ox__cpu_backend()) return;
    for (int i = 0; i < ctx->device_count; i++) {
        const ox_device *d = &ctx->devices[i];
        if (d->info.type != OX_DEVICE_CPU || d == device ||
            d->backend->iface->kernel_language != OX__KERNEL_OPENCL)
            continue;
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        ox__fail(ctx, OX_ERR_UNSUPPORTED, "%s; here that is %s (%s)", message, d->info.id,
                 d->info.name);
        return;
    }
}

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
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "%s: %s runs native code only, not user kernels",
                        __func__, device->info.id);
    ox_program *p = ox__calloc(ctx, 1, sizeof *p);
    if (!p) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", __func__);
    if ((s = ox__program_build_user(device, "user program", source, options, &p->impl, NULL)) !=
        OX_OK) {
        ox__free(ctx, p, sizeof *p);
        if (s == OX_ERR_UNSUPPORTED) name_fallback(ctx, device);
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
    k->sig = ox__kernel_sig(impl);
    k->n_args = k->sig ? k->sig->n_params : 0;
    k->next = program->kernels;
    program->kernels = k;
    *out = k;
    return OX_OK;
}

static const char *kernel_name(const ox_kernel *k)
{
    return ox__kernel_name(k->impl);
}

static const char *kind_name(ox__arg_kind kind)
{
    return kind == OX__ARG_BUFFER ? "a buffer (ARG_BUF)"
           : kind == OX__ARG_LOCAL ? "local memory (LOCAL type *)"
                                   : "a scalar";
}

/* Index in range and, where the source's parameters are known, of the
 * kind the kernel declares there. */
static ox_status check_arg(ox_context *ctx, const ox_kernel *k, int index, ox__arg_kind kind,
                           const char *func)
{
    int limit = k->sig ? k->sig->n_params : MAX_ARGS;
    if (index < 0 || index >= limit)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: kernel '%s' on %s: argument %d does not "
                        "exist; it takes %d%s", func, kernel_name(k), k->program->device->info.id,
                        index, limit, k->sig ? "" : " at most");
    if (k->sig && k->sig->params[index].kind != kind)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s' on %s: argument %d ('%s') is %s, "
                        "not %s", func, kernel_name(k), k->program->device->info.id, index,
                        k->sig->params[index].name, kind_name(k->sig->params[index].kind),
                        kind_name(kind));
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
    if (s != OX_OK || (s = check_arg(ctx, kernel, index, OX__ARG_BUFFER, __func__)) != OX_OK)
        return s;
    if ((s = ox__handle_check(buffer, OX__HANDLE_BUFFER, __func__, "buffer", NULL)) != OX_OK)
        return ox__fail(ctx, s, "%s: kernel '%s': argument %d: %s", __func__, kernel_name(kernel),
                        index, buffer ? "not a live buffer (freed, or not an ox_buffer)"
                                      : "the buffer is NULL");
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
    if (s != OX_OK || (s = check_arg(ctx, kernel, index, OX__ARG_SCALAR, __func__)) != OX_OK)
        return s;
    const ox__sig_param *p = kernel->sig ? &kernel->sig->params[index] : NULL;
    if (!value || (size != 1 && size != 2 && size != 4 && size != 8) || (p && size != p->size)) {
        char declared[320] = "scalars are 1, 2, 4 or 8 bytes";
        if (p)
            snprintf(declared, sizeof declared, "'%s' is declared '%s', %zu bytes", p->name,
                     p->type, p->size);
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s' on %s: argument %d: a scalar of "
                        "%zu bytes%s; %s", __func__, kernel_name(kernel),
                        kernel->program->device->info.id, index, size, value ? "" : " at NULL",
                        declared);
    }
    memcpy(kernel->values[index], value, size);
    kernel->args[index] = (ox__kernel_arg){.kind = OX__ARG_SCALAR,
                                           .value = kernel->values[index], .size = size};
    mark_set(kernel, index);
    return OX_OK;
}

ox_status ox_kernel_set_local(ox_kernel *kernel, int index, size_t bytes)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(kernel, OX__HANDLE_KERNEL, __func__, "kernel", &ctx);
    if (s != OX_OK || (s = check_arg(ctx, kernel, index, OX__ARG_LOCAL, __func__)) != OX_OK)
        return s;
    const ox_device *device = kernel->program->device;
    if (bytes == 0 || bytes > device->info.local_memory_bytes)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': argument %d: %zu bytes of local "
                        "memory; %s gives a work-group 1 to %llu", __func__, kernel_name(kernel),
                        index, bytes, device->info.id,
                        (unsigned long long)device->info.local_memory_bytes);
    kernel->args[index] = (ox__kernel_arg){.kind = OX__ARG_LOCAL, .size = bytes};
    mark_set(kernel, index);
    return OX_OK;
}

static _Thread_local const ox__sig_kernel *launching;

const ox__sig_kernel *ox__launching_sig(void)
{
    return launching;
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
            return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s' on %s: argument %d%s%s%s is "
                            "not set", __func__, kernel_name(kernel), device->info.id, i,
                            kernel->sig ? " ('" : "", kernel->sig ? kernel->sig->params[i].name : "",
                            kernel->sig ? "')" : "");
    const int *wg = kernel->sig ? kernel->sig->reqd_wg : NULL;
    if (wg && wg[0] && (local[0] != (size_t)wg[0] || local[1] != (size_t)wg[1] ||
                        local[2] != (size_t)wg[2]))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s' on %s is KERNEL_WG(%d, %d, %d); "
                        "the launch asks for work-groups of %zu x %zu x %zu", __func__,
                        kernel_name(kernel), device->info.id, wg[0], wg[1], wg[2], local[0],
                        local[1], local[2]);
    size_t groups[3];
    for (int d = 0; d < 3; d++) {
        if (local[d] == 0 || global[d] % local[d])
            return ox__fail(ctx, OX_ERR_INVALID, "%s: kernel '%s': global size %zu of dimension "
                            "%d is not a multiple of the work-group size %zu", __func__,
                            kernel_name(kernel), global[d], d, local[d]);
        groups[d] = global[d] / local[d];
    }
    void *ev = NULL;
    launching = kernel->sig;
    s = ox__kernel_launch(device, queue->impl, kernel->impl, groups, local, kernel->n_args,
                          kernel->args, event ? &ev : NULL);
    launching = NULL;
    if (s != OX_OK) return s;
    return event ? ox__event_wrap(ctx, device, ev, __func__, event) : OX_OK;
}

ox_status ox_program_kernel_count(ox_program *program, int *count)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(program, OX__HANDLE_PROGRAM, __func__, "program", &ctx);
    if (s != OX_OK) return s;
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "%s: count is NULL", __func__);
    *count = ox__program_sig(program->impl)->n_kernels;
    return OX_OK;
}

ox_status ox_program_kernel_name(ox_program *program, int index, const char **name)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(program, OX__HANDLE_PROGRAM, __func__, "program", &ctx);
    if (s != OX_OK) return s;
    const ox__sig_program *sig = ox__program_sig(program->impl);
    if (!name) return ox__fail(ctx, OX_ERR_INVALID, "%s: name is NULL", __func__);
    if (index < 0 || index >= sig->n_kernels)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: kernel %d of a program that defines %d",
                        __func__, index, sig->n_kernels);
    *name = sig->kernels[index].name;
    return OX_OK;
}

ox_status ox_kernel_arg_count(ox_kernel *kernel, int *count)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(kernel, OX__HANDLE_KERNEL, __func__, "kernel", &ctx);
    if (s != OX_OK) return s;
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "%s: count is NULL", __func__);
    if (!kernel->sig)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "%s: kernel '%s' is not defined at file scope "
                        "with KERNEL, so its parameters are unknown", __func__,
                        kernel_name(kernel));
    *count = kernel->sig->n_params;
    return OX_OK;
}

ox_status ox_kernel_get_arg_info(ox_kernel *kernel, int index, ox_kernel_arg_info *info)
{
    int count;
    ox_status s = ox_kernel_arg_count(kernel, &count);
    if (s != OX_OK) return s;
    ox_context *ctx = kernel->program->ctx;
    if (!info || info->struct_size < sizeof *info)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: info is NULL or its struct_size is not set",
                        __func__);
    if (index < 0 || index >= count)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: kernel '%s': argument %d does not exist; "
                        "it takes %d", __func__, kernel_name(kernel), index, count);
    const ox__sig_param *p = &kernel->sig->params[index];
    size_t struct_size = info->struct_size;
    memset(info, 0, sizeof *info);
    info->struct_size = struct_size;
    info->kind = (ox_kernel_arg_kind)p->kind;
    ox__copy_string(info->name, sizeof info->name, p->name);
    ox__copy_string(info->type, sizeof info->type, p->type);
    info->size = p->kind == OX__ARG_SCALAR ? p->size : 0;
    return OX_OK;
}

ox_status ox_program_check(ox_context *ctx, const char *backend, const char *source,
                           const char *options, char *target, size_t target_cap, char **warnings)
{
    if (!ctx) return OX_ERR_INVALID;
    if (warnings) *warnings = NULL;
    if (target && target_cap) target[0] = '\0';
    if (!backend || !source)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: backend or source is NULL", __func__);
    ox__backend *be = ox__backend_find(ctx, backend);
    if (!be)
        return ox__fail(ctx, OX_ERR_NOT_FOUND, "%s: no backend '%s' is loaded (its plugin is not "
                        "installed)", __func__, backend);
    if (be->iface->kernel_language == OX__KERNEL_NONE)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "%s: %s runs native code only", __func__,
                        backend);
    char scratch[160];
    if (!target || !target_cap) target = scratch, target_cap = sizeof scratch;
    for (int i = 0; i < ctx->device_count; i++) {
        ox_device *device = &ctx->devices[i];
        if (device->backend != be) continue;
        /* a device of the backend: build for it, as a launch would */
        snprintf(target, target_cap, "%s (%s)", device->info.id, device->info.name);
        ox__program *program;
        ox_status s = ox__program_build_user(device, "user program", source, options, &program,
                                             warnings);
        if (s == OX_OK) ox__program_free(program);
        return s;
    }
    return ox__program_check_user(be, ctx, "user program", source, options, target, target_cap,
                                  warnings);
}
