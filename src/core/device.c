/* Devices: enumeration, information, selection strings ("cpu", "opencl:0",
 * "cuda:*", "all", "default", lists), lazy opening and default queues. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define SELECTION_MAX 1024

ox_status ox_device_count(ox_context *ctx, int *count)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "%s: count is NULL", __func__);
    *count = ctx->device_count;
    return OX_OK;
}

ox_status ox_device_get(ox_context *ctx, int index, ox_device **out)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    if (index < 0 || index >= ctx->device_count)
        return ox__fail(ctx, OX_ERR_OUT_OF_RANGE, "%s: index %d is out of range (%d devices)",
                        __func__, index, ctx->device_count);
    *out = &ctx->devices[index];
    return OX_OK;
}

ox_status ox_device_get_info(const ox_device *device, ox_device_info *info)
{
    ox_context *ctx;
    ox_status s = ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx);
    if (s != OX_OK) return s;
    if (!info) return ox__fail(ctx, OX_ERR_INVALID, "%s: info is NULL", __func__);
    /* Version 1 of the struct is the smallest any caller can have. */
    if (info->struct_size < sizeof *info)
        return ox__fail(ctx, OX_ERR_INVALID,
                        "%s: info->struct_size is %zu; set it to sizeof(ox_device_info) (%zu)",
                        __func__, info->struct_size, sizeof *info);
    *info = device->info;
    return OX_OK;
}

ox_context *ox_device_context(const ox_device *device)
{
    ox_context *ctx = NULL;
    if (ox__handle_check(device, OX__HANDLE_DEVICE, __func__, "device", &ctx) != OX_OK) return NULL;
    return ctx;
}

ox_status ox__device_open(ox_device *device, const char *func)
{
    ox_status s = OX_OK;
    pthread_mutex_lock(&device->lock);
    if (!device->impl) {
        s = device->backend->iface->device_open(device->backend->state, device->backend_index,
                                                &device->impl);
        if (s != OX_OK) {
            char message[OX__ERRMSG_MAX];
            ox__copy_string(message, sizeof message, ox_errmsg(device->ctx));
            ox__fail(device->ctx, s, "%s: cannot open device %s: %s", func, device->info.id,
                     message);
            device->impl = NULL;
        }
    }
    pthread_mutex_unlock(&device->lock);
    return s;
}

ox_status ox__device_default_queue(ox_device *device, const char *func, void **queue)
{
    if (!device->default_queue) {
        ox_status s = device->backend->iface->queue_create(device->impl, &device->default_queue);
        if (s != OX_OK) {
            char message[OX__ERRMSG_MAX];
            ox__copy_string(message, sizeof message, ox_errmsg(device->ctx));
            device->default_queue = NULL;
            return ox__fail(device->ctx, s, "%s: cannot create a queue on %s: %s", func,
                            device->info.id, message);
        }
    }
    *queue = device->default_queue;
    return OX_OK;
}

/* ---- selection strings ---------------------------------------------------- */

typedef struct selection {
    ox_context *ctx;
    const char *text; /* the whole string, for messages */
    ox_device **out;
    int capacity;
    int count;
} selection;

/* "cpu:0, opencl:0" into buf. */
static const char *available_devices(const ox_context *ctx, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ctx->device_count && used + 1 < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "",
                                 ctx->devices[i].info.id);
    if (ctx->device_count == 0) ox__copy_string(buf, cap, "none");
    return buf;
}

/* out[] has room for every device once, and a second listing is refused
 * before it is stored. */
static ox_status add_device(selection *sel, ox_device *device)
{
    for (int i = 0; i < sel->count; i++)
        if (sel->out[i] == device)
            return ox__fail(sel->ctx, OX_ERR_INVALID,
                            "ox_device_select: device %s is selected twice in '%s'",
                            device->info.id, sel->text);
    if (sel->count == sel->capacity)
        return ox__fail(sel->ctx, OX_ERR_INTERNAL, "ox_device_select: selection overflow");
    sel->out[sel->count++] = device;
    return OX_OK;
}

static const ox__backend *backend_named(const ox_context *ctx, const char *name, size_t len)
{
    for (int i = 0; i < ctx->backend_count; i++) {
        const char *bn = ctx->backends[i].info.name;
        if (strlen(bn) == len && ox__strncasecmp(bn, name, len) == 0) return &ctx->backends[i];
    }
    return NULL;
}

static ox_status select_default(ox_context *ctx, ox_device **out);

/* One item of a selection: "all", "default", "name", "name:N", "name:*". */
static ox_status select_item(selection *sel, const char *item)
{
    ox_context *ctx = sel->ctx;
    char avail[512];
    if (ox__strncasecmp(item, "all", 4) == 0) {
        for (int i = 0; i < ctx->device_count; i++) {
            ox_status s = add_device(sel, &ctx->devices[i]);
            if (s != OX_OK) return s;
        }
        return OX_OK;
    }
    if (ox__strncasecmp(item, "default", 8) == 0) {
        ox_device *d;
        ox_status s = select_default(ctx, &d);
        return s != OX_OK ? s : add_device(sel, d);
    }
    const char *colon = strchr(item, ':');
    size_t name_len = colon ? (size_t)(colon - item) : strlen(item);
    const ox__backend *be = backend_named(ctx, item, name_len);
    if (!be) {
        char loaded[256] = "";
        size_t used = 0;
        for (int i = 0; i < ctx->backend_count && used + 1 < sizeof loaded; i++)
            used += (size_t)snprintf(loaded + used, sizeof loaded - used, "%s%s", i ? ", " : "",
                                     ctx->backends[i].info.name);
        return ox__fail(ctx, OX_ERR_NOT_FOUND,
                        "ox_device_select: unknown backend '%.*s' in '%s' (loaded backends: %s; "
                        "devices: %s)",
                        (int)name_len, item, sel->text, loaded,
                        available_devices(ctx, avail, sizeof avail));
    }
    int first = -1;
    for (int i = 0; i < ctx->device_count; i++)
        if (ctx->devices[i].backend == be) {
            first = i;
            break;
        }
    if (first < 0)
        return ox__fail(ctx, OX_ERR_NOT_FOUND, "ox_device_select: backend '%s' has no devices%s%s",
                        be->info.name, be->info.note[0] ? ": " : "", be->info.note);
    int n_backend = be->info.device_count;
    if (colon && strcmp(colon + 1, "*") == 0) {
        for (int i = 0; i < ctx->device_count; i++) {
            if (ctx->devices[i].backend != be) continue;
            ox_status s = add_device(sel, &ctx->devices[i]);
            if (s != OX_OK) return s;
        }
        return OX_OK;
    }
    long index = 0;
    if (colon) {
        const char *digits = colon + 1;
        char *end;
        if (!*digits || strspn(digits, "0123456789") != strlen(digits) || strlen(digits) > 9)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "ox_device_select: '%s' in '%s': expected a device number or '*' "
                            "after ':' (devices: %s)",
                            item, sel->text, available_devices(ctx, avail, sizeof avail));
        index = strtol(digits, &end, 10);
    }
    for (int i = 0; i < ctx->device_count; i++)
        if (ctx->devices[i].backend == be && ctx->devices[i].backend_index == index)
            return add_device(sel, &ctx->devices[i]);
    return ox__fail(ctx, OX_ERR_NOT_FOUND,
                    "ox_device_select: no device %s:%ld; backend '%s' has %d device(s) "
                    "(devices: %s)",
                    be->info.name, index, be->info.name, n_backend,
                    available_devices(ctx, avail, sizeof avail));
}

static ox_status select_all(selection *sel)
{
    char buf[SELECTION_MAX];
    size_t len = strlen(sel->text);
    if (len >= sizeof buf)
        return ox__fail(sel->ctx, OX_ERR_INVALID, "ox_device_select: selection is too long "
                        "(%zu characters, at most %d)", len, SELECTION_MAX - 1);
    memcpy(buf, sel->text, len + 1);
    char *p = buf;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        while (isspace((unsigned char)*p)) p++;
        char *end = p + strlen(p);
        while (end > p && isspace((unsigned char)end[-1])) *--end = '\0';
        if (!*p)
            return ox__fail(sel->ctx, OX_ERR_INVALID,
                            "ox_device_select: empty item in device selection '%s'", sel->text);
        ox_status s = select_item(sel, p);
        if (s != OX_OK) return s;
        if (!comma) break;
        p = comma + 1;
    }
    return OX_OK;
}

ox_status ox_device_select(ox_context *ctx, const char *text, ox_device **devices, int capacity,
                           int *count)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!text) return ox__fail(ctx, OX_ERR_INVALID, "%s: selection is NULL", __func__);
    if (!count) return ox__fail(ctx, OX_ERR_INVALID, "%s: count is NULL", __func__);
    if (capacity < 0 || (capacity > 0 && !devices))
        return ox__fail(ctx, OX_ERR_INVALID, "%s: devices is NULL or capacity %d is negative",
                        __func__, capacity);
    *count = 0;
    /* Resolve into a full-size scratch list, so duplicates are found even
     * when the caller only asks for the count. */
    int n_max = ctx->device_count + 1;
    ox_device **all = ox__calloc(ctx, (size_t)n_max, sizeof *all);
    if (!all) return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY, "%s: out of memory", __func__);
    selection sel = {.ctx = ctx, .text = text, .out = all, .capacity = n_max};
    s = select_all(&sel);
    if (s == OX_OK) {
        for (int i = 0; i < sel.count && i < capacity; i++) devices[i] = all[i];
        *count = sel.count;
    }
    ox__free(ctx, all, (size_t)n_max * sizeof *all);
    return s;
}

static ox_status select_default(ox_context *ctx, ox_device **out)
{
    const char *env = getenv("OX_DEVICE");
    if (env && *env && ox__strncasecmp(env, "default", 8) != 0) {
        ox_device *found[2];
        int n = 0;
        ox_status s = ox_device_select(ctx, env, found, 2, &n);
        if (s != OX_OK) {
            char message[OX__ERRMSG_MAX];
            ox__copy_string(message, sizeof message, ox_errmsg(ctx));
            return ox__fail(ctx, s, "OX_DEVICE='%s': %s", env, message);
        }
        if (n != 1)
            return ox__fail(ctx, OX_ERR_INVALID,
                            "OX_DEVICE='%s' names %d devices; the default device must be one",
                            env, n);
        *out = found[0];
        return OX_OK;
    }
    for (int i = 0; i < ctx->device_count; i++) {
        ox_device_type t = ctx->devices[i].info.type;
        if (t == OX_DEVICE_GPU || t == OX_DEVICE_ACCELERATOR) {
            *out = &ctx->devices[i];
            return OX_OK;
        }
    }
    for (int i = 0; i < ctx->device_count; i++) {
        if (ctx->devices[i].info.type == OX_DEVICE_CPU) {
            *out = &ctx->devices[i];
            return OX_OK;
        }
    }
    return ox__fail(ctx, OX_ERR_NOT_FOUND, "no device available");
}

ox_status ox_device_default(ox_context *ctx, ox_device **out)
{
    ox_status s = ox__handle_check(ctx, OX__HANDLE_CONTEXT, __func__, "ctx", NULL);
    if (s != OX_OK) return s;
    if (!out) return ox__fail(ctx, OX_ERR_INVALID, "%s: out is NULL", __func__);
    *out = NULL;
    return select_default(ctx, out);
}
