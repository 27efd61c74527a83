/* Programs and kernels: portable-dialect source plus the prelude of the
 * device's kernel language, built by the backend (which caches the compiled
 * form on disk), kernels looked up by name, launches. Also the embedded
 * kernel sources and each device's table of programs built for ops. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kernel_sig.h"
#include "core/program.h"
#include "backends/cpu/cpu_kernels.h"

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
    ox__sig_program sig; /* user programs: the kernels' parameters */
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

const char *ox__kernel_common(void)
{
    return embedded("common.h");
}

const char *ox__kernel_prelude(ox__kernel_language language)
{
    switch (language) {
    case OX__KERNEL_OPENCL: return embedded("prelude_opencl.h");
    case OX__KERNEL_CUDA: return embedded("prelude_cuda.h");
    case OX__KERNEL_HIP: return embedded("prelude_hip.h");
    case OX__KERNEL_C: return embedded("prelude_c.h");
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

/* prelude + common helpers + '#line 1 "what"' (so compiler messages name
 * the program and count the lines of the source itself) + source, for a
 * kernel language; *n bytes from ox__alloc. NULL with the failure
 * recorded. */
static char *assemble(ox_context *ctx, ox__kernel_language language, const char *what,
                      const char *source, size_t *n)
{
    char line_reset[96];
    snprintf(line_reset, sizeof line_reset, "\n#line 1 \"%.64s\"\n", what);
    const char *prelude = ox__kernel_prelude(language);
    const char *common = ox__kernel_common();
    if (!prelude || !common) {
        ox__fail(ctx, OX_ERR_INTERNAL, "%s: no prelude for kernel language %d", what,
                 (int)language);
        return NULL;
    }
    *n = strlen(prelude) + 1 + strlen(common) + strlen(line_reset) + strlen(source) + 1;
    char *full = ox__alloc(ctx, *n);
    if (!full) {
        ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
        return NULL;
    }
    snprintf(full, *n, "%s\n%s%s%s", prelude, common, line_reset, source);
    return full;
}

/* The compiler's failure as the message: what, where, the backend's words
 * and the log. */
static ox_status build_failed(ox_context *ctx, ox_status s, const char *what, const char *where,
                              const char *log)
{
    char message[OX__ERRMSG_MAX];
    ox__copy_string(message, sizeof message, ox_errmsg(ctx));
    return ox__fail(ctx, s, "%s: kernel build failed on %s: %s%s%s", what, where, message,
                    log ? "\ncompiler log:\n" : "", log ? log : "");
}

/* The log handed to the caller (malloc'ed: the caller is the application,
 * which frees it with free()) and logged at debug level. */
static void keep_log(ox_context *ctx, const char *what, const char *where, char *log,
                     char **warnings)
{
    if (log && *log) {
        ox__log(ctx, OX_LOG_DEBUG, "%s: compiler log on %s:\n%s", what, where, log);
        if (warnings) *warnings = strdup(log);
    }
    if (log) ox__free(ctx, log, strlen(log) + 1);
}

/* Options with an include folder (-I), or a user source with #include:
 * the build may read files that no cache key names, so it goes without the
 * cache. */
static bool includes_files(const char *options)
{
    for (const char *p = options ? strstr(options, "-I") : NULL; p; p = strstr(p + 2, "-I"))
        if (p == options || p[-1] == ' ' || p[-1] == '\t') return true;
    return false;
}

static ox_status build(ox_device *device, const char *what, const char *source,
                       const char *options, bool uncached, ox__program **out, char **warnings)
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
    size_t n;
    char *full = assemble(ctx, be->kernel_language, what, source, &n);
    if (!full) return ox_errcode(ctx);
    ox__program *p = ox__calloc(ctx, 1, sizeof *p);
    if (!p) {
        ox__free(ctx, full, n);
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
    }
    char *log = NULL, where[200];
    snprintf(where, sizeof where, "%s (%s)", device->info.id, device->info.name);
    ox__cache_bypass(uncached || includes_files(options));
    s = be->program_build(device->impl, full, options ? options : "", &p->impl, &log);
    ox__cache_bypass(false);
    ox__free(ctx, full, n);
    if (s != OX_OK) {
        build_failed(ctx, s, what, where, log);
        if (log) ox__free(ctx, log, strlen(log) + 1);
        ox__free(ctx, p, sizeof *p);
        return s;
    }
    keep_log(ctx, what, where, log, warnings);
    p->device = device;
    pthread_mutex_init(&p->lock, NULL);
    *out = p;
    return OX_OK;
}

ox_status ox__program_build(ox_device *device, const char *what, const char *source,
                            const char *options, ox__program **out)
{
    return build(device, what, source, options, false, out, NULL);
}

/* The user's source as the language compiles it: its kernels read and,
 * for C, CUDA and HIP, their entry points added. *wrapped (*wrapped_size
 * bytes from the context's allocator) is NULL where the source goes as it
 * is. */
static ox_status prepare_user(ox_context *ctx, ox__kernel_language language, const char *what,
                              const char *source, const char *options, ox__sig_program *sig,
                              char **wrapped, size_t *wrapped_size)
{
    *wrapped = NULL;
    *wrapped_size = 0;
    ox_status s = ox__sig_parse(ctx, what, source, options, sig);
    if (s != OX_OK) return s;
    if (language == OX__KERNEL_C || language == OX__KERNEL_CUDA || language == OX__KERNEL_HIP) {
        if (!(*wrapped = ox__sig_wrap(source, sig, language, wrapped_size))) {
            ox__sig_free(sig);
            return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", what);
        }
    }
    return OX_OK;
}

ox_status ox__program_build_user(ox_device *device, const char *what, const char *source,
                                 const char *options, ox__program **out, char **warnings)
{
    ox__sig_program sig;
    char *wrapped;
    size_t wrapped_size;
    *out = NULL;
    ox_status s = prepare_user(device->ctx, device->backend->iface->kernel_language, what, source,
                               options, &sig, &wrapped, &wrapped_size);
    if (s != OX_OK) return s;
    s = build(device, what, wrapped ? wrapped : source, options, strstr(source, "#include") != NULL,
              out, warnings);
    if (wrapped) ox__free(device->ctx, wrapped, wrapped_size);
    if (s != OX_OK) {
        ox__sig_free(&sig);
        return s;
    }
    (*out)->sig = sig;
    return OX_OK;
}

ox_status ox__program_check_user(ox__backend *backend, ox_context *ctx, const char *what,
                                 const char *source, const char *options, char *target,
                                 size_t target_cap, char **warnings)
{
    const ox__backend_iface *be = backend->iface;
    if (!be->program_check)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "%s: %s has no device here and no compiler that "
                        "works without one", what, be->name);
    ox__sig_program sig;
    char *wrapped;
    size_t wrapped_size;
    ox_status s = prepare_user(ctx, be->kernel_language, what, source, options, &sig, &wrapped,
                               &wrapped_size);
    if (s != OX_OK) return s;
    size_t n;
    char *full = assemble(ctx, be->kernel_language, what, wrapped ? wrapped : source, &n);
    if (wrapped) ox__free(ctx, wrapped, wrapped_size);
    ox__sig_free(&sig);
    if (!full) return ox_errcode(ctx);
    char *log = NULL;
    ox__cache_bypass(includes_files(options) || strstr(source, "#include"));
    s = be->program_check(backend->state, full, options ? options : "", &log, target, target_cap);
    ox__cache_bypass(false);
    ox__free(ctx, full, n);
    if (s == OX_ERR_BUILD) build_failed(ctx, s, what, target, log);
    if (s == OX_OK) keep_log(ctx, what, target, log, warnings);
    else if (log) ox__free(ctx, log, strlen(log) + 1);
    return s;
}

const ox__sig_program *ox__program_sig(const ox__program *program)
{
    return &program->sig;
}

const ox__sig_kernel *ox__kernel_sig(const ox__kernel *kernel)
{
    return ox__sig_find(&kernel->program->sig, kernel->name);
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
    ox__sig_free(&program->sig);
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
    atomic_fetch_add(&device->ctx->n_launches, 1);
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

bool ox__device_program_built(ox_device *device, const char *name, const char *option)
{
    size_t n = strlen(name);
    bool found = false;
    pthread_mutex_lock(&device->lock);
    for (device_program *dp = device->programs; dp && !found; dp = dp->next) {
        const char *options = dp->key + n + 1;
        if (strncmp(dp->key, name, n) != 0 || dp->key[n] != '|') continue;
        for (const char *at = strstr(options, option); at && !found; at = strstr(at + 1, option)) {
            char end = at[strlen(option)];
            found = (at == options || at[-1] == ' ') && (end == '\0' || end == ' ');
        }
    }
    pthread_mutex_unlock(&device->lock);
    return found;
}

/* One of the library's kernel files for a device that compiles the dialect
 * as C (the CPU in reproducible mode): its C entry points are generated as
 * for user kernels, from the kernels its #if blocks leave for these
 * options (the compiler's preprocessor evaluates them first). */
static ox_status build_c_file(ox_device *device, const char *name, const char *source,
                              const char *options, ox__program **out)
{
    ox_context *ctx = device->ctx;
    static const char marker[] = "#pragma openxpu_kernel_file";
    const char *prelude = ox__kernel_prelude(OX__KERNEL_C), *common = ox__kernel_common();
    size_t n = strlen(prelude) + strlen(common) + strlen(source) + sizeof marker + 8;
    char *text = ox__alloc(ctx, n), why[512];
    if (!text) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of host memory", name);
    snprintf(text, n, "%s\n%s\n%s\n%s", prelude, common, marker, source);
    char *active = ox__cpu_directives(text, options ? options : "", marker, why, sizeof why);
    ox__free(ctx, text, n);
    if (!active)
        return ox__fail(ctx, OX_ERR_BUILD, "%s: kernel build failed on %s: cpu: %s", name,
                        device->info.id, why);
    ox_status s = ox__program_build_user(device, name, active, options, out, NULL);
    free(active);
    return s;
}

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
    ox_status s = device->backend->iface->kernel_language == OX__KERNEL_C
                      ? build_c_file(device, name, source, options, &program)
                      : ox__program_build(device, name, source, options, &program);
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
