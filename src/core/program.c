/* Programs and kernels: portable-dialect source plus the prelude of the
 * device's kernel language, built by the backend (which caches the compiled
 * form on disk), kernels looked up by name, launches. Also the embedded
 * kernel sources and each device's table of programs built for ops. */
#include <stdio.h>
#include <string.h>

#include "core/program.h"

struct ox__embedded_kernel {
    const char *name;
    const char *text;
};
extern const struct ox__embedded_kernel ox__embedded_kernels[];

struct ox__kernel {
    ox__kernel *next;
    ox__program *program;
    void *impl;
    char name[64];
};

struct ox__program {
    ox_device *device;
    void *impl;
    pthread_mutex_t lock; /* guards kernels */
    ox__kernel *kernels;
};

/* One program built for ops on a device, keyed by name and options. */
typedef struct ox__device_program device_program;
struct ox__device_program {
    device_program *next;
    char *key; /* "name|options" */
    ox__program *program;
};

/* ---- embedded sources -------------------------------------------------------- */

static const char *embedded(const char *file)
{
    for (const struct ox__embedded_kernel *k = ox__embedded_kernels; k->name; k++)
        if (strcmp(k->name, file) == 0) return k->text;
    return NULL;
}

const char *ox__kernel_source(const char *name)
{
    char file[128];
    if (snprintf(file, sizeof file, "%s.oxc", name) >= (int)sizeof file) return NULL;
    return embedded(file);
}

const char *ox__kernel_prelude(ox__kernel_language language)
{
    switch (language) {
    case OX__KERNEL_OPENCL: return embedded("prelude_opencl.h");
    case OX__KERNEL_CUDA: return embedded("prelude_cuda.h");
    case OX__KERNEL_HIP: return embedded("prelude_hip.h");
    case OX__KERNEL_NONE: break;
    }
    return NULL;
}

static const char *source_names[64];
static char source_name_text[64][64];

static void init_source_names(void)
{
    size_t n = 0;
    for (const struct ox__embedded_kernel *k = ox__embedded_kernels; k->name; k++) {
        size_t len = strlen(k->name);
        if (len < 5 || strcmp(k->name + len - 4, ".oxc") != 0 || len - 4 >= 64 ||
            n + 1 == OX__ARRAY_SIZE(source_names))
            continue;
        memcpy(source_name_text[n], k->name, len - 4);
        source_name_text[n][len - 4] = '\0';
        source_names[n] = source_name_text[n];
        n++;
    }
}

const char *const *ox__kernel_source_names(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_source_names);
    return source_names;
}

/* ---- programs ------------------------------------------------------------------ */

ox_status ox__program_build(ox_device *device, const char *what, const char *source,
                            const char *options, ox__program **out)
{
    ox_context *ctx = device->ctx;
    const ox__backend_iface *be = device->backend->iface;
    *out = NULL;
    if (be->kernel_language == OX__KERNEL_NONE)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED,
                        "%s: device %s runs native code only, not portable kernels", what,
                        device->info.id);
    ox_status s = ox__device_open(device, what);
    if (s != OX_OK) return s;
    const char *prelude = ox__kernel_prelude(be->kernel_language);
    if (!prelude)
        return ox__fail(ctx, OX_ERR_INTERNAL, "%s: no prelude for the kernel language of %s",
                        what, device->info.id);

    /* prelude + common helpers + "#line 1" (so compiler messages count the
     * lines of the source itself) + source */
    static const char line_reset[] = "\n#line 1\n";
    const char *common = embedded("common.h");
    if (!common) return ox__fail(ctx, OX_ERR_INTERNAL, "%s: kernels/common.h is not embedded", what);
    size_t n = strlen(prelude) + 1 + strlen(common) + sizeof line_reset - 1 + strlen(source) + 1;
    char *full = ox__alloc(ctx, n);
    if (!full) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    snprintf(full, n, "%s\n%s%s%s", prelude, common, line_reset, source);

    ox__program *p = ox__calloc(ctx, 1, sizeof *p);
    if (!p) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
        goto err_free_source;
    }
    char *log = NULL;
    s = be->program_build(device->impl, full, options ? options : "", &p->impl, &log);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        ox__fail(ctx, s, "%s: kernel build failed on %s (%s): %s%s%s", what, device->info.id,
                 device->info.name, message, log ? "\ncompiler log:\n" : "", log ? log : "");
        goto err_free_program;
    }
    if (log && *log) ox__log(ctx, OX_LOG_DEBUG, "%s: compiler log on %s:\n%s", what,
                             device->info.id, log);
    if (log) ox__free(ctx, log, strlen(log) + 1);
    p->device = device;
    pthread_mutex_init(&p->lock, NULL);
    ox__free(ctx, full, n);
    *out = p;
    return OX_OK;

err_free_program:
    if (log) ox__free(ctx, log, strlen(log) + 1);
    ox__free(ctx, p, sizeof *p);
err_free_source:
    ox__free(ctx, full, n);
    return s;
}

void ox__program_free(ox__program *program)
{
    if (!program) return;
    ox_context *ctx = program->device->ctx;
    const ox__backend_iface *be = program->device->backend->iface;
    for (ox__kernel *k = program->kernels, *next; k; k = next) {
        next = k->next;
        be->kernel_free(k->impl);
        ox__free(ctx, k, sizeof *k);
    }
    be->program_free(program->impl);
    pthread_mutex_destroy(&program->lock);
    ox__free(ctx, program, sizeof *program);
}

ox_status ox__program_kernel(ox__program *program, const char *name, ox__kernel **out)
{
    ox_device *device = program->device;
    ox_context *ctx = device->ctx;
    ox_status s = OX_OK;
    pthread_mutex_lock(&program->lock);
    ox__kernel *k;
    for (k = program->kernels; k; k = k->next)
        if (strcmp(k->name, name) == 0) goto out;
    if (strlen(name) >= sizeof k->name) {
        s = ox__fail(ctx, OX_ERR_INVALID, "kernel name '%s' is too long", name);
        goto out;
    }
    k = ox__calloc(ctx, 1, sizeof *k);
    if (!k) {
        s = ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "out of host memory for kernel '%s'", name);
        goto out;
    }
    s = device->backend->iface->kernel_create(program->impl, name, &k->impl);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        ox__fail(ctx, s, "no kernel '%s' on %s: %s", name, device->info.id, message);
        ox__free(ctx, k, sizeof *k);
        k = NULL;
        goto out;
    }
    k->program = program;
    ox__copy_string(k->name, sizeof k->name, name);
    k->next = program->kernels;
    program->kernels = k;
out:
    pthread_mutex_unlock(&program->lock);
    *out = k;
    return s;
}

const char *ox__kernel_name(const ox__kernel *kernel)
{
    return kernel->name;
}

ox_status ox__kernel_launch(ox_device *device, void *queue, ox__kernel *kernel,
                            const size_t groups[3], const size_t local[3], int n_args,
                            const ox__kernel_arg *args, void **event)
{
    for (int d = 0; d < 3; d++) {
        if (groups[d] == 0) { /* nothing to run; an event still marks the point */
            if (!event) return OX_OK;
            return device->backend->iface->queue_marker(queue, event);
        }
    }
    size_t threads = local[0] * local[1] * local[2];
    if (threads == 0 || threads > device->info.max_work_group_size)
        return ox__fail(device->ctx, OX_ERR_INVALID,
                        "kernel '%s': work-group of %zu x %zu x %zu exceeds the %u work-items "
                        "%s allows",
                        kernel->name, local[0], local[1], local[2],
                        device->info.max_work_group_size, device->info.id);
    ox_status s = device->backend->iface->kernel_launch(queue, kernel->impl, groups, local, n_args,
                                                        args, event);
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(device->ctx));
        ox__fail(device->ctx, s, "kernel '%s' on %s: %s", kernel->name, device->info.id, message);
    }
    return s;
}

/* ---- programs kept by a device for ops ------------------------------------------ */

ox_status ox__device_program(ox_device *device, const char *name, const char *source,
                             const char *options, ox__program **out)
{
    ox_context *ctx = device->ctx;
    char key[1024];
    if (snprintf(key, sizeof key, "%s|%s", name, options ? options : "") >= (int)sizeof key)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: build options too long", name);
    pthread_mutex_lock(&device->lock);
    for (device_program *dp = device->programs; dp; dp = dp->next) {
        if (strcmp(dp->key, key) == 0) {
            *out = dp->program;
            pthread_mutex_unlock(&device->lock);
            return OX_OK;
        }
    }
    pthread_mutex_unlock(&device->lock);

    /* Build outside the lock: compiles can take seconds. */
    ox__program *program;
    ox_status s = ox__program_build(device, name, source, options, &program);
    if (s != OX_OK) return s;
    device_program *dp = ox__calloc(ctx, 1, sizeof *dp);
    char *key_copy = ox__strdup(ctx, key);
    if (!dp || !key_copy) {
        ox__free(ctx, dp, sizeof *dp);
        if (key_copy) ox__free(ctx, key_copy, strlen(key_copy) + 1);
        ox__program_free(program);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", name);
    }
    dp->key = key_copy;
    pthread_mutex_lock(&device->lock);
    for (device_program *other = device->programs; other; other = other->next) {
        if (strcmp(other->key, key) == 0) { /* another thread won the race */
            pthread_mutex_unlock(&device->lock);
            ox__free(ctx, key_copy, strlen(key_copy) + 1);
            ox__free(ctx, dp, sizeof *dp);
            ox__program_free(program);
            *out = other->program;
            return OX_OK;
        }
    }
    dp->program = program;
    dp->next = device->programs;
    device->programs = dp;
    pthread_mutex_unlock(&device->lock);
    *out = program;
    return OX_OK;
}

void ox__device_free_programs(ox_device *device)
{
    ox_context *ctx = device->ctx;
    for (device_program *dp = device->programs, *next; dp; dp = next) {
        next = dp->next;
        ox__program_free(dp->program);
        ox__free(ctx, dp->key, strlen(dp->key) + 1);
        ox__free(ctx, dp, sizeof *dp);
    }
    device->programs = NULL;
}
