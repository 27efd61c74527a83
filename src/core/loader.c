/* The backend registry and plugin loader.
 *
 * Search order (first backend of a name wins):
 *   1. ox_context_options.backend_path  (':'-separated directories or files)
 *   2. OX_BACKEND_PATH                   (same form)
 *   3. the directory holding libopenxpu (or the program, when linked
 *      statically), then its openxpu/ subdirectory
 *   4. the install directory, <prefix>/<libdir>/openxpu
 * 3 and 4 are skipped with OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS. In a directory,
 * files named libox-<name>.so are loaded in name order.
 *
 * A plugin is checked completely (entry point, ABI version, table size,
 * every required slot, init) before it is added; any failure closes it again
 * and logs one warning naming the file and the reason. */
#define _GNU_SOURCE /* dladdr */
#include <dirent.h>
#include <dlfcn.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"

#define MAX_BACKENDS 32
#define MAX_PLUGIN_FILES 256

#ifndef OX_PLUGIN_INSTALL_DIR
#define OX_PLUGIN_INSTALL_DIR ""
#endif

/* ---- the host table given to backends ------------------------------------ */

static void host_log(void *core, ox_log_level level, const char *fmt, ...) OX__PRINTF(3, 4);
static ox_status host_fail(void *core, ox_status status, const char *fmt, ...) OX__PRINTF(3, 4);

static void host_log(void *core, ox_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ox__vlog(core, level, fmt, ap);
    va_end(ap);
}

static ox_status host_fail(void *core, ox_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ox__vfail(core, status, fmt, ap);
    va_end(ap);
    return status;
}

static ox_status host_cache_load(void *core, const char *key, void **data, size_t *size)
{
    return ox__cache_load(core, key, data, size);
}

static void host_cache_store(void *core, const char *key, const void *data, size_t size)
{
    ox__cache_store(core, key, data, size);
}

static void *host_alloc(void *core, size_t size)
{
    return ox__alloc(core, size);
}

static void host_free(void *core, void *ptr, size_t size)
{
    ox__free(core, ptr, size);
}

void ox__host_init(ox_context *ctx, ox__host *host)
{
    *host = (ox__host){
        .abi_version = OX_BACKEND_ABI_VERSION,
        .struct_size = sizeof *host,
        .core = ctx,
        .log = host_log,
        .fail = host_fail,
        .alloc = host_alloc,
        .free = host_free,
        .num_threads = ctx->num_threads,
        .cache_load = host_cache_load,
        .cache_store = host_cache_store,
    };
}

/* ---- checking and starting one backend ----------------------------------- */

/* Why a table cannot be used, or NULL if it can. */
static const char *check_iface(const ox__backend_iface *iface, char *why, size_t cap)
{
    if (iface->abi_version != OX_BACKEND_ABI_VERSION) {
        snprintf(why, cap, "built for backend ABI version %u, this library speaks version %u",
                 (unsigned)iface->abi_version, (unsigned)OX_BACKEND_ABI_VERSION);
        return why;
    }
    if (iface->struct_size < sizeof *iface) {
        snprintf(why, cap, "its function table is %u bytes, version %u needs %zu",
                 (unsigned)iface->struct_size, (unsigned)OX_BACKEND_ABI_VERSION, sizeof *iface);
        return why;
    }
    const char *name = iface->name;
    size_t len = name ? strnlen(name, 32) : 0;
    if (len == 0 || len >= 32 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != len) {
        snprintf(why, cap, "its name is missing or not a short lowercase word");
        return why;
    }
#define OX__CHECK_SLOT(slot)                                                       \
    if (!iface->slot) {                                                            \
        snprintf(why, cap, "it lacks the required function '%s'", #slot);          \
        return why;                                                                \
    }
    OX__BACKEND_REQUIRED_SLOTS(OX__CHECK_SLOT)
    if (iface->kernel_language != OX__KERNEL_NONE) {
        OX__BACKEND_KERNEL_SLOTS(OX__CHECK_SLOT)
    }
#undef OX__CHECK_SLOT
    if (iface->kernel_language > OX__KERNEL_C) {
        snprintf(why, cap, "its kernel language %d is unknown", (int)iface->kernel_language);
        return why;
    }
    return NULL;
}

ox__backend *ox__backend_find(ox_context *ctx, const char *name)
{
    for (int i = 0; i < ctx->backend_count; i++)
        if (strcmp(ctx->backends[i].info.name, name) == 0) return &ctx->backends[i];
    return NULL;
}

/* Start a checked table as the context's next backend. On failure the
 * reason is in the context's message. */
static ox_status start_backend(ox_context *ctx, const ox__backend_iface *iface, void *dl,
                               const char *path)
{
    if (ctx->backend_count == MAX_BACKENDS)
        return ox__fail(ctx, OX_ERR_UNSUPPORTED, "more than %d backends", MAX_BACKENDS);
    ox__backend *be = &ctx->backends[ctx->backend_count];
    memset(be, 0, sizeof *be);
    be->iface = iface;
    be->dl = dl;
    ox__host_init(ctx, &be->host);
    ox_status s = iface->init(&be->host, &be->state);
    if (s != OX_OK) {
        if (!*ox_errmsg(ctx)) ox__fail(ctx, s, "init failed (%s)", ox_status_str(s));
        return s;
    }
    ox_backend_info *info = &be->info;
    info->struct_size = sizeof *info;
    ox__copy_string(info->name, sizeof info->name, iface->name);
    ox__copy_string(info->path, sizeof info->path, path);
    info->abi_version = iface->abi_version;
    int count = iface->device_count(be->state);
    info->device_count = count > 0 ? count : 0;
    const char *note = iface->note ? iface->note(be->state) : NULL;
    ox__copy_string(info->note, sizeof info->note, note ? note : "");
    ctx->backend_count++;
    ox__log(ctx, OX_LOG_DEBUG, "backend '%s' loaded from %s: %d device(s)%s%s", info->name, path,
            info->device_count, info->note[0] ? ": " : "", info->note);
    return OX_OK;
}

/* The backends OX_BACKENDS allows ("opencl,cuda"; unset or empty: all),
 * judged by a plugin's file name, libox-NAME.so, before it is opened: a
 * vendor runtime that is never opened cannot disturb another (two LLVMs in
 * one process abort it). */
static bool is_plugin_name(const char *name);

static bool plugin_allowed(ox_context *ctx, const char *path)
{
    const char *allow = getenv("OX_BACKENDS");
    if (!allow || !*allow) return true;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (!is_plugin_name(base)) return true; /* not named like a plugin: the loader's checks decide */
    const char *name = base + 6;              /* libox-NAME.so */
    size_t len = strlen(base) - 9;
    for (const char *p = allow; *p;) {
        size_t k = strcspn(p, ",");
        if (k == len && strncmp(p, name, len) == 0) return true;
        p += k + (p[k] == ',');
    }
    ox__log(ctx, OX_LOG_DEBUG, "plugin %s skipped: OX_BACKENDS=%s", path, allow);
    return false;
}

static void load_plugin(ox_context *ctx, const char *path)
{
    char why[512];
    if (!plugin_allowed(ctx, path)) return;
    void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        const char *err = dlerror();
        ox__log(ctx, OX_LOG_WARN, "plugin %s skipped: cannot load it as a shared object: %s", path,
                err ? err : "unknown error");
        return;
    }
    ox__backend_entry_fn entry;
    void *sym = dlsym(dl, OX_BACKEND_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry); /* object to function pointer, as POSIX allows */
    if (!sym) {
        ox__log(ctx, OX_LOG_WARN,
                "plugin %s skipped: no symbol %s, so it is not an OpenXPU backend", path,
                OX_BACKEND_ENTRY_SYMBOL);
        goto err_close;
    }
    const ox__backend_iface *iface = entry(OX_BACKEND_ABI_VERSION);
    if (!iface) {
        ox__log(ctx, OX_LOG_WARN,
                "plugin %s skipped: its entry point returned no table for backend ABI version %u",
                path, (unsigned)OX_BACKEND_ABI_VERSION);
        goto err_close;
    }
    if (check_iface(iface, why, sizeof why)) {
        ox__log(ctx, OX_LOG_WARN, "plugin %s skipped: %s", path, why);
        goto err_close;
    }
    const ox__backend *other = ox__backend_find(ctx, iface->name);
    if (other) {
        ox__log(ctx, OX_LOG_INFO, "plugin %s skipped: backend '%s' is already loaded from %s",
                path, iface->name, other->info.path);
        goto err_close;
    }
    if (start_backend(ctx, iface, dl, path) != OX_OK) {
        ox__log(ctx, OX_LOG_WARN, "plugin %s skipped: backend '%s' failed to start: %s", path,
                iface->name, ox_errmsg(ctx));
        goto err_close;
    }
    return;
err_close:
    dlclose(dl);
}

/* ---- finding plugin files ---------------------------------------------- */

static bool is_plugin_name(const char *name)
{
    size_t n = strlen(name);
    return n > 9 && strncmp(name, "libox-", 6) == 0 && strcmp(name + n - 3, ".so") == 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_directory(ox_context *ctx, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        ox__log(ctx, OX_LOG_DEBUG, "plugin directory %s: not readable, skipped", dir);
        return;
    }
    char *names[MAX_PLUGIN_FILES];
    size_t count = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_plugin_name(de->d_name)) continue;
        if (count == MAX_PLUGIN_FILES) {
            ox__log(ctx, OX_LOG_WARN, "plugin directory %s: more than %d plugins, rest skipped",
                    dir, MAX_PLUGIN_FILES);
            break;
        }
        names[count] = ox__strdup(ctx, de->d_name);
        if (names[count]) count++;
    }
    closedir(d);
    qsort(names, count, sizeof names[0], compare_names);
    for (size_t i = 0; i < count; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path)
            load_plugin(ctx, path);
        ox__free(ctx, names[i], strlen(names[i]) + 1);
    }
}

/* One entry of a search path: a directory, or a plugin file. */
static void load_path_entry(ox_context *ctx, const char *entry)
{
    struct stat st;
    if (stat(entry, &st) != 0) {
        ox__log(ctx, OX_LOG_DEBUG, "plugin path %s: does not exist, skipped", entry);
        return;
    }
    if (S_ISDIR(st.st_mode)) load_directory(ctx, entry);
    else load_plugin(ctx, entry);
}

static void load_search_path(ox_context *ctx, const char *path)
{
    while (path && *path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n > 0 && n < PATH_MAX) {
            char entry[PATH_MAX];
            memcpy(entry, path, n);
            entry[n] = '\0';
            load_path_entry(ctx, entry);
        }
        path = colon ? colon + 1 : NULL;
    }
}

/* The directory of the file holding this code: libopenxpu.so, or the
 * program it is statically linked into. */
static bool library_directory(char *dir, size_t cap)
{
    Dl_info info;
    void *self;
    ox_status (*fn)(const ox_context_options *, ox_context **) = ox_context_create;
    memcpy(&self, &fn, sizeof self);
    if (!dladdr(self, &info) || !info.dli_fname || !*info.dli_fname) return false;
    char resolved[PATH_MAX];
    if (!realpath(info.dli_fname, resolved)) return false;
    char *slash = strrchr(resolved, '/');
    if (!slash) return false;
    *slash = '\0';
    return ox__copy_string(dir, cap, resolved) && strlen(resolved) < cap;
}

/* OX_BACKENDS naming a backend that is not there (a typo: "opencll") is
 * said once a process, with the backends that are, instead of leaving the
 * user with fewer devices and no reason. */
static void warn_unknown_backends(ox_context *ctx)
{
    static atomic_flag warned = ATOMIC_FLAG_INIT;
    const char *allow = getenv("OX_BACKENDS");
    if (!allow || !*allow) return;
    char loaded[256] = "", unknown[256] = "";
    size_t lu = 0, uu = 0;
    for (int i = 0; i < ctx->backend_count; i++)
        lu += (size_t)snprintf(loaded + lu, lu < sizeof loaded ? sizeof loaded - lu : 0, "%s%s",
                               i ? ", " : "", ctx->backends[i].iface->name);
    for (const char *p = allow; *p;) {
        size_t k = strcspn(p, ",");
        bool found = k == 0;
        for (int i = 0; i < ctx->backend_count && !found; i++)
            found = strlen(ctx->backends[i].iface->name) == k &&
                    strncmp(ctx->backends[i].iface->name, p, k) == 0;
        if (!found && uu < sizeof unknown)
            uu += (size_t)snprintf(unknown + uu, sizeof unknown - uu, "%s'%.*s'", uu ? ", " : "",
                                   (int)(k < 64 ? k : 64), p);
        p += k + (p[k] == ',');
    }
    if (uu && !atomic_flag_test_and_set(&warned))
        ox__log(ctx, OX_LOG_WARN, "OX_BACKENDS=%s: no backend named %s was found (loaded: %s)",
                allow, unknown, loaded);
}

ox_status ox__backends_load(ox_context *ctx, const ox_context_options *options)
{
    char why[512];
    ctx->backends = ox__calloc(ctx, MAX_BACKENDS, sizeof *ctx->backends);
    if (!ctx->backends)
        return ox__fail(ctx, OX_ERR_OUT_OF_MEMORY,
                        "ox_context_create: out of memory for the backend table");

    const ox__backend_iface *cpu = ox__cpu_backend();
    if (check_iface(cpu, why, sizeof why))
        return ox__fail(ctx, OX_ERR_INTERNAL, "ox_context_create: CPU backend: %s", why);
    ox_status s = start_backend(ctx, cpu, NULL, "(built in)");
    if (s != OX_OK) {
        char message[OX__ERRMSG_MAX];
        ox__copy_string(message, sizeof message, ox_errmsg(ctx));
        return ox__fail(ctx, s, "ox_context_create: CPU backend failed to start: %s", message);
    }

    if (options->flags & OX_CONTEXT_NO_PLUGINS) return OX_OK;
    load_search_path(ctx, options->backend_path);
    load_search_path(ctx, getenv("OX_BACKEND_PATH"));
    if (!(options->flags & OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS)) {
        char dir[PATH_MAX];
        if (library_directory(dir, sizeof dir - 16)) {
            load_directory(ctx, dir);
            strcat(dir, "/openxpu");
            load_directory(ctx, dir);
        }
        if (OX_PLUGIN_INSTALL_DIR[0]) load_directory(ctx, OX_PLUGIN_INSTALL_DIR);
    }
    warn_unknown_backends(ctx);
    return OX_OK;
}

void ox__backends_unload(ox_context *ctx)
{
    if (!ctx->backends) return;
    for (int i = ctx->backend_count - 1; i >= 0; i--) {
        ox__backend *be = &ctx->backends[i];
        be->iface->shutdown(be->state);
        if (be->dl) dlclose(be->dl);
    }
    ox__free(ctx, ctx->backends, MAX_BACKENDS * sizeof *ctx->backends);
    ctx->backends = NULL;
    ctx->backend_count = 0;
}
