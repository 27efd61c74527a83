/* Contexts: creation and destruction, host memory through the allocator
 * hook, the lists of live objects, backend information. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static atomic_uint_fast64_t next_serial = 1;

static void *default_alloc(void *user, void *ptr, size_t old_size, size_t new_size)
{
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

void *ox__alloc(ox_context *ctx, size_t size)
{
    if (size == 0) size = 1;
    return ctx->alloc(ctx->alloc_user, NULL, 0, size);
}

void *ox__calloc(ox_context *ctx, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    void *p = ox__alloc(ctx, bytes);
    if (p && bytes) memset(p, 0, bytes);
    return p;
}

void ox__free(ox_context *ctx, void *ptr, size_t size)
{
    if (ptr) ctx->alloc(ctx->alloc_user, ptr, size ? size : 1, 0);
}

char *ox__strdup(ox_context *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = ox__alloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

void ox__track(ox_context *ctx, ox__link *head, ox__link *link)
{
    pthread_mutex_lock(&ctx->lock);
    link->next = head->next;
    link->prev = head;
    head->next->prev = link;
    head->next = link;
    pthread_mutex_unlock(&ctx->lock);
}

void ox__untrack(ox_context *ctx, ox__link *link)
{
    pthread_mutex_lock(&ctx->lock);
    link->prev->next = link->next;
    link->next->prev = link->prev;
    link->prev = link->next = link;
    pthread_mutex_unlock(&ctx->lock);
}

static void list_init(ox__link *head)
{
    head->prev = head->next = head;
}

/* Check the caller's options struct and copy the part this library knows. */
static ox_status read_options(const ox_context_options *options, ox_context_options *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    if (!options) return OX_OK;
    if (options->struct_size < sizeof(size_t) || options->struct_size > 4096)
        return ox__fail(NULL, OX_ERR_INVALID,
                        "ox_context_create: options->struct_size is %zu; set it to "
                        "sizeof(ox_context_options) (%zu)",
                        options->struct_size, sizeof *out);
    size_t n = options->struct_size < sizeof *out ? options->struct_size : sizeof *out;
    memcpy(out, options, n);
    out->struct_size = sizeof *out;
    if (!out->alloc && out->alloc_user)
        return ox__fail(NULL, OX_ERR_INVALID,
                        "ox_context_create: options->alloc_user is set but options->alloc is NULL");
    if (out->log_level < OX_LOG_DEFAULT || out->log_level > OX_LOG_OFF)
        return ox__fail(NULL, OX_ERR_INVALID, "ox_context_create: options->log_level %d is not an "
                        "ox_log_level", (int)out->log_level);
    if (out->num_threads < 0 || out->num_threads > 4096)
        return ox__fail(NULL, OX_ERR_INVALID,
                        "ox_context_create: options->num_threads %d is out of range (0..4096)",
                        out->num_threads);
    unsigned known = OX_CONTEXT_NO_PLUGINS | OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS |
                     OX_CONTEXT_REPRODUCIBLE;
    if (out->flags & ~known)
        return ox__fail(NULL, OX_ERR_INVALID,
                        "ox_context_create: options->flags 0x%x has unknown bits 0x%x",
                        out->flags, out->flags & ~known);
    return OX_OK;
}

static void free_objects(ox_context *ctx)
{
    /* Events, then queues (which wait for their work), then user programs,
     * then buffers. */
    while (ctx->events.next != &ctx->events) ox_event_free((ox_event *)ctx->events.next);
    while (ctx->queues.next != &ctx->queues) ox_queue_free((ox_queue *)ctx->queues.next);
    while (ctx->programs.next != &ctx->programs)
        ox_program_free((ox_program *)ctx->programs.next);
    while (ctx->buffers.next != &ctx->buffers) ox_buffer_free((ox_buffer *)ctx->buffers.next);
}

static void free_devices(ox_context *ctx)
{
    for (int i = 0; i < ctx->device_count; i++) {
        ox_device *d = &ctx->devices[i];
        const ox__backend_iface *be = d->backend->iface;
        ox__device_free_programs(d);
        ox__tune_free(d);
        if (d->default_queue) be->queue_destroy(d->default_queue);
        if (d->impl) be->device_close(d->impl);
        pthread_mutex_destroy(&d->lock);
    }
    ox__free(ctx, ctx->devices, sizeof *ctx->devices * (size_t)ctx->device_count);
    ctx->devices = NULL;
    ctx->device_count = 0;
}

/* Describe every device of every backend. */
static ox_status enumerate_devices(ox_context *ctx)
{
    int total = 0;
    for (int b = 0; b < ctx->backend_count; b++) total += ctx->backends[b].info.device_count;
    if (total == 0) return OX_OK;
    ctx->devices = ox__calloc(ctx, (size_t)total, sizeof *ctx->devices);
    if (!ctx->devices)
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "ox_context_create: out of memory listing %d "
                        "devices", total);
    for (int b = 0; b < ctx->backend_count; b++) {
        ox__backend *be = &ctx->backends[b];
        for (int i = 0; i < be->info.device_count; i++) {
            ox_device *d = &ctx->devices[ctx->device_count];
            d->ctx = ctx;
            d->backend = be;
            d->backend_index = i;
            d->info.struct_size = sizeof d->info;
            ox_status s = be->iface->device_info(be->state, i, &d->info);
            if (s != OX_OK) {
                ox__log(ctx, OX_LOG_WARN, "backend '%s': device %d skipped: %s", be->info.name, i,
                        ox_errmsg(ctx));
                continue;
            }
            d->info.struct_size = sizeof d->info;
            d->info.index = i;
            ox__copy_string(d->info.backend, sizeof d->info.backend, be->info.name);
            snprintf(d->info.id, sizeof d->info.id, "%s:%d", be->info.name, i);
            pthread_mutex_init(&d->lock, NULL);
            ctx->device_count++;
            if (ox__handle_add(d, OX__HANDLE_DEVICE, ctx) != OX_OK)
                return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY,
                                "ox_context_create: out of memory registering devices");
        }
    }
    return OX_OK;
}

ox_status ox_context_create(const ox_context_options *options, ox_context **out)
{
    ox_context_options opts;
    ox_status status;
    if (!out) return ox__fail(NULL, OX_ERR_INVALID, "ox_context_create: out is NULL");
    *out = NULL;
    status = read_options(options, &opts);
    if (status != OX_OK) return status;

    ox_alloc_fn alloc = opts.alloc ? opts.alloc : default_alloc;
    ox_context *ctx = alloc(opts.alloc_user, NULL, 0, sizeof *ctx);
    if (!ctx)
        return ox__fail(NULL, OX_ERR_OUT_OF_MEMORY,
                        "ox_context_create: out of memory (%zu bytes for the context)", sizeof *ctx);
    memset(ctx, 0, sizeof *ctx);
    ctx->serial = atomic_fetch_add(&next_serial, 1);
    ctx->alloc = alloc;
    ctx->alloc_user = opts.alloc_user;
    ctx->log = opts.log;
    ctx->log_user = opts.log_user;
    ox_log_level env_level = ox__log_level_from_env();
    ctx->log_level = env_level != OX_LOG_DEFAULT ? env_level
                   : opts.log_level != OX_LOG_DEFAULT ? opts.log_level : OX_LOG_WARN;
    ctx->num_threads = opts.num_threads;
    const char *native = getenv("OX_NATIVE_LIBS");
    const char *repro = getenv("OX_REPRODUCIBLE");
    ctx->reproducible = (opts.flags & OX_CONTEXT_REPRODUCIBLE) ||
                        (repro && *repro && strcmp(repro, "0") != 0);
    /* vendor libraries (cuBLAS, rocBLAS) choose their own reduction orders */
    ctx->native_libs = !(native && strcmp(native, "0") == 0) && !ctx->reproducible;
    pthread_mutex_init(&ctx->lock, NULL);
    list_init(&ctx->buffers);
    list_init(&ctx->queues);
    list_init(&ctx->events);
    list_init(&ctx->programs);

    if (ox__handle_add(ctx, OX__HANDLE_CONTEXT, NULL) != OX_OK) {
        pthread_mutex_destroy(&ctx->lock);
        alloc(opts.alloc_user, ctx, sizeof *ctx, 0);
        return ox__fail(NULL, OX_ERR_OUT_OF_MEMORY, "ox_context_create: out of memory");
    }
    status = ox__backends_load(ctx, &opts);
    if (status == OX_OK) status = enumerate_devices(ctx);
    if (status != OX_OK) {
        /* Move the message to the context-less slot before the context goes. */
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        ox_context_free(ctx);
        return ox__fail(NULL, status, "%s", message);
    }
    ox__log(ctx, OX_LOG_DEBUG, "context created: %d backends, %d devices", ctx->backend_count,
            ctx->device_count);
    *out = ctx;
    return OX_OK;
}

void ox_context_free(ox_context *ctx)
{
    if (!ctx || !ox__handle_check_free(ctx, OX__HANDLE_CONTEXT, __func__, &ctx)) return;
    free_objects(ctx);
    free_devices(ctx);
    ox__backends_unload(ctx);
    ox__error_forget(ctx);
    ox__handle_forget_context(ctx);
    pthread_mutex_destroy(&ctx->lock);
    ctx->alloc(ctx->alloc_user, ctx, sizeof *ctx, 0);
}

int ox_context_is_reproducible(const ox_context *ctx)
{
    ox_context *c = (ox_context *)ctx;
    if (ox__handle_check(c, OX__HANDLE_CONTEXT, __func__, "ctx", NULL) != OX_OK) return 0;
    return c->reproducible;
}

ox_status ox_context_set_log_level(ox_context *ctx, ox_log_level level)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (level <= OX_LOG_DEFAULT || level > OX_LOG_OFF)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: level %d is not a log level", __func__,
                        (int)level);
    if (ox__log_level_from_env() == OX_LOG_DEFAULT) ctx->log_level = level;
    return OX_OK;
}

ox_status ox_backend_count(ox_context *ctx, int *count)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "%s: count is NULL", __func__);
    *count = ctx->backend_count;
    return OX_OK;
}

ox_status ox_backend_get_info(ox_context *ctx, int index, ox_backend_info *info)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!info) return ox__fail(ctx, OX_ERR_INVALID, "%s: info is NULL", __func__);
    /* Version 1 of the struct is the smallest any caller can have. */
    if (info->struct_size < sizeof *info)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: info->struct_size is %zu; set it to "
                        "sizeof(ox_backend_info) (%zu)", __func__, info->struct_size, sizeof *info);
    if (index < 0 || index >= ctx->backend_count)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: index %d is out of range (%d backends)",
                        __func__, index, ctx->backend_count);
    *info = ctx->backends[index].info;
    info->struct_size = sizeof *info;
    return OX_OK;
}

ox_status ox_context_counters(ox_context *ctx, ox_counters *out)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!out || out->struct_size < sizeof *out)
        return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL or its struct_size is below %zu",
                        __func__, sizeof *out);
    out->ops = atomic_load(&ctx->n_ops);
    out->launches = atomic_load(&ctx->n_launches);
    out->syncs = atomic_load(&ctx->n_syncs);
    out->transfers = atomic_load(&ctx->n_transfers);
    return OX_OK;
}
