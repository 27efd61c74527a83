/* The test cases the CUDA and HIP backends share; test_cuda.c and
 * test_hip.c define the names below and include this file once:
 *   GPU_BACKEND  "cuda" / "hip"       GPU_PLUGIN   the plugin file
 *   GPU_RUNTIME  library whose absence must be the note's reason
 *   GPU_RUNTIME_LIBRARIES  the sonames the backend tries for it
 *   GPU_BLAS     "cuBLAS" / "rocBLAS" (as the backend logs it)
 *   GPU_BLAS_LIBRARIES  sonames to probe for the vendor BLAS
 *   GPU_PARAMETER_SYMBOL  (optional) the runtime function through which the
 *                backend checks launches against a kernel's parameters
 * Two cases run everywhere: the plugin loads and, without a device, says
 * why (note, debug log, selection error). Every other case needs a device
 * and is skipped, naming the reason, when there is none. */
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/program.h"
#include "openxpu/ops.h"
#include "ox_test.h"
#include "test_helpers.h"

#define MiB ((size_t)1 << 20)
#define DEVICE0 GPU_BACKEND ":0"

/* ---- contexts --------------------------------------------------------------- */

static int find_backend(ox_context *ctx, ox_backend_info *info)
{
    int n = 0;
    ASSERT_OK(ctx, ox_backend_count(ctx, &n));
    for (int i = 0; i < n; i++) {
        memset(info, 0, sizeof *info);
        info->struct_size = sizeof *info;
        ASSERT_OK(ctx, ox_backend_get_info(ctx, i, info));
        if (strcmp(info->name, GPU_BACKEND) == 0) return 1;
    }
    return 0;
}

/* A context with the CPU and this backend; the plugin must load. */
static ox_context *plugin_context(test_log *log, ox_log_level level)
{
    const char *env = getenv("OX_BACKEND_PATH");
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    if (!(env && *env)) options.backend_path = GPU_PLUGIN;
    options.log_level = level;
    if (log) test_log_attach(log, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_backend_info info;
    ASSERT_MSG(find_backend(ctx, &info), "the %s plugin %s did not load (run with OX_LOG=debug)",
               GPU_BACKEND, env && *env ? env : GPU_PLUGIN);
    return ctx;
}

/* A context whose backend has a device, or a skip naming why not. */
static ox_context *gpu_context(test_log *log)
{
    ox_context *ctx = plugin_context(log, OX_LOG_DEFAULT);
    ox_backend_info info;
    find_backend(ctx, &info);
    if (info.device_count == 0) OX_SKIP("needs a %s device: %s", GPU_BACKEND, info.note);
    return ctx;
}

/* Skip, naming why, unless the backend has a device. */
static void require_device(void)
{
    ox_context_free(gpu_context(NULL));
}

static ox_device *device_named(ox_context *ctx, const char *id)
{
    ox_device *device = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, id, &device, 1, &count));
    ASSERT_EQ(count, 1);
    return device;
}

static unsigned char *random_bytes(size_t size, uint64_t seed)
{
    unsigned char *p = malloc(size);
    ASSERT(p != NULL);
    test_fill_random(p, size, seed);
    return p;
}

/* True if the process can open one of the NULL-terminated sonames. */
static int library_present(const char *const *names)
{
    for (; *names; names++) {
        void *library = dlopen(*names, RTLD_NOW | RTLD_LOCAL);
        if (library) {
            dlclose(library);
            return 1;
        }
    }
    return 0;
}

/* ---- everywhere: the plugin loads and says why it has no device --------------- */

OX_TEST(plugin_loads_and_explains)
{
    test_log log;
    test_log_init(&log);
    ox_context *ctx = plugin_context(&log, OX_LOG_DEBUG);
    ox_backend_info info;
    ASSERT(find_backend(ctx, &info));
    ASSERT_CONTAINS(info.path, "libox-" GPU_BACKEND ".so");
    printf("  %s: %d device(s)%s%s\n", GPU_BACKEND, info.device_count, info.note[0] ? "; " : "",
           info.note);
    if (info.device_count == 0) {
        /* one line, at debug level, with the reason */
        ASSERT(info.note[0] != '\0' && strchr(info.note, '\n') == NULL);
        ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, GPU_BACKEND ": ", info.note);
        ASSERT_NOT_LOGGED(&log, OX_LOG_WARN, OX_LOG_ERROR, GPU_BACKEND, NULL);
        static const char *const runtime[] = {GPU_RUNTIME_LIBRARIES, NULL};
        if (!library_present(runtime)) ASSERT_CONTAINS(info.note, GPU_RUNTIME " not found");
    } else {
        ASSERT_STR_EQ(info.note, "");
    }
    ox_context_free(ctx);
}

OX_TEST(selection_without_device_names_the_reason)
{
    ox_context *ctx = plugin_context(NULL, OX_LOG_DEFAULT);
    ox_backend_info info;
    find_backend(ctx, &info);
    if (info.device_count > 0) OX_SKIP("this machine has %d %s device(s)", info.device_count,
                                       GPU_BACKEND);
    ox_device *device = NULL;
    int count = 0;
    ASSERT_EQ(ox_device_select(ctx, DEVICE0, &device, 1, &count), OX_ERR_NOT_FOUND);
    ASSERT_CONTAINS(ox_errmsg(ctx), GPU_BACKEND);
    ASSERT_CONTAINS(ox_errmsg(ctx), info.note);
    printf("  %s\n", ox_errmsg(ctx));
    ox_context_free(ctx);
}

/* ---- devices, memory, transfers ------------------------------------------------ */

OX_TEST(device_info_is_sane)
{
    ox_context *ctx = gpu_context(NULL);
    ox_device *devices[16];
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, GPU_BACKEND ":*", devices, 16, &count));
    for (int i = 0; i < count && i < 16; i++) {
        ox_device_info info = test_device_info(devices[i]);
        printf("  %s: %s | %s | %s | %llu MiB | local %llu KiB | %u units | groups of %u | "
               "%u MHz | features %#llx | %s\n",
               info.id, info.name, info.vendor, info.driver_version,
               (unsigned long long)(info.memory_bytes >> 20),
               (unsigned long long)(info.local_memory_bytes >> 10), info.compute_units,
               info.max_work_group_size, info.clock_mhz, (unsigned long long)info.features,
               info.note);
        ASSERT_STR_EQ(info.backend, GPU_BACKEND);
        ASSERT_EQ(info.type, OX_DEVICE_GPU);
        ASSERT(info.name[0] && info.vendor[0] && info.driver_version[0] && info.note[0]);
        ASSERT(info.memory_bytes > 0 && info.max_alloc_bytes <= info.memory_bytes);
        ASSERT(info.local_memory_bytes >= 16 * 1024);
        ASSERT(info.compute_units >= 1 && info.max_work_group_size >= 256);
        ASSERT(info.features & OX_FEATURE_BIT(OX_FEATURE_FP64));
    }
    ox_context_free(ctx);
}

OX_TEST(buffer_round_trips_and_views)
{
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0);
    const size_t sizes[] = {1, 4097, 8 * MiB + 3};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *src = random_bytes(n, i + 1), *dst = calloc(1, n);
        ox_buffer *buffer = NULL, *view = NULL;
        ASSERT_OK(ctx, ox_buffer_alloc(dev, n + 64, &buffer));
        ASSERT_OK(ctx, ox_buffer_sub(buffer, 13, n, &view));
        ASSERT_OK(ctx, ox_buffer_write(view, 0, src, n));
        ASSERT_OK(ctx, ox_buffer_read(buffer, 13, dst, n));
        ASSERT_MSG(memcmp(src, dst, n) == 0, "round trip of %zu bytes differs", n);
        ox_buffer_free(view);
        ox_buffer_free(buffer);
        free(src);
        free(dst);
    }
    ox_context_free(ctx);
}

OX_TEST(fill_patterns)
{
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0);
    const size_t n = 4096 + 64;
    const unsigned char pattern[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const unsigned char same[16] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
    const size_t pattern_sizes[] = {1, 2, 4, 8, 16};
    unsigned char *before = random_bytes(n, 3), *got = malloc(n);
    ox_buffer *buffer, *odd;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n + 1, &buffer));
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 1, n, &odd)); /* device address not aligned */
    for (int view = 0; view < 2; view++)
        for (int repeated = 0; repeated < 2; repeated++)
            for (size_t i = 0; i < sizeof pattern_sizes / sizeof pattern_sizes[0]; i++) {
                const unsigned char *pat = repeated ? same : pattern;
                ox_buffer *target = view ? odd : buffer;
                size_t p = pattern_sizes[i], offset = 32, size = 4096;
                ASSERT_OK(ctx, ox_buffer_write(target, 0, before, n));
                ASSERT_OK(ctx, ox_buffer_fill(target, offset, size, pat, p));
                ASSERT_OK(ctx, ox_buffer_read(target, 0, got, n));
                ASSERT(memcmp(got, before, offset) == 0);
                for (size_t k = 0; k < size; k++)
                    ASSERT_MSG(got[offset + k] == pat[k % p],
                               "pattern of %zu bytes (view %d): byte %zu is %u", p, view, k,
                               got[offset + k]);
                ASSERT(memcmp(got + offset + size, before + offset + size, n - offset - size) ==
                       0);
            }
    ox_buffer_free(odd);
    ox_buffer_free(buffer);
    free(before);
    free(got);
    ox_context_free(ctx);
}

OX_TEST(copies_within_and_across_devices)
{
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0), *cpu = device_named(ctx, "cpu");
    const size_t n = 9 * MiB + 3;
    unsigned char *src = random_bytes(n, 11), *got = malloc(n);
    ox_buffer *a, *b, *c;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &a));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n + 8, &b));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, n, &c));
    ASSERT_OK(ctx, ox_buffer_write(a, 0, src, n));
    ASSERT_OK(ctx, ox_buffer_copy(b, 8, a, 0, n));
    ASSERT_OK(ctx, ox_buffer_copy(c, 0, b, 8, n)); /* staged through the host */
    ASSERT_OK(ctx, ox_buffer_read(c, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);
    ASSERT_OK(ctx, ox_buffer_copy(b, 1, a, 100, 1000)); /* odd offsets */
    ASSERT_OK(ctx, ox_buffer_read(b, 1, got, 1000));
    ASSERT(memcmp(src + 100, got, 1000) == 0);
    ox_context_free(ctx);
    free(src);
    free(got);
}

/* ---- queues and events ----------------------------------------------------------- */

OX_TEST(queues_events_and_waits)
{
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0), *cpu = device_named(ctx, "cpu");
    const size_t n = 4 * MiB;
    unsigned char *src = random_bytes(n, 19), *stage = calloc(1, n), *got = calloc(1, n);
    ox_buffer *g, *c;
    ox_queue *gq, *gq2, *cq;
    ox_event *e, *marker;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &g));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, n, &c));
    ASSERT_OK(ctx, ox_queue_create(dev, &gq));
    ASSERT_OK(ctx, ox_queue_create(dev, &gq2));
    ASSERT_OK(ctx, ox_queue_create(cpu, &cq));

    /* in order: a write is complete once a later marker is */
    ASSERT_OK(ctx, ox_queue_write(gq, g, 0, src, n, &e));
    ASSERT_OK(ctx, ox_queue_marker(gq, &marker));
    ASSERT_OK(ctx, ox_event_wait(marker));
    int done = 0;
    ASSERT_OK(ctx, ox_event_query(e, &done));
    ASSERT_EQ(done, 1);
    ox_event_free(e);
    ox_event_free(marker);

    /* GPU -> CPU queue */
    ASSERT_OK(ctx, ox_queue_read(gq, g, 0, stage, n, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(cq, e));
    ASSERT_OK(ctx, ox_queue_write(cq, c, 0, stage, n, NULL));
    ASSERT_OK(ctx, ox_buffer_read(c, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);
    ox_event_free(e);

    /* two queues of one device: the second waits on the device */
    const unsigned char pattern[4] = {0xde, 0xad, 0xbe, 0xef};
    ASSERT_OK(ctx, ox_queue_fill(gq, g, 0, n, pattern, 4, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(gq2, e));
    ASSERT_OK(ctx, ox_queue_read(gq2, g, 0, got, n, NULL));
    ASSERT_OK(ctx, ox_queue_finish(gq2));
    for (size_t i = 0; i < n; i++) ASSERT_EQ(got[i], pattern[i % 4]);
    ox_queue_free(gq); /* events outlive their queue */
    ASSERT_OK(ctx, ox_event_query(e, &done));
    ASSERT_EQ(done, 1);
    ox_event_free(e);
    ox_context_free(ctx);
    free(src);
    free(stage);
    free(got);
}

/* ---- programs and launches --------------------------------------------------------- */

static const char vadd_source[] =
    "KERNEL vadd(ARG_BUF(const float, a), ARG_BUF(const float, b), ARG_BUF(float, c), int n)\n"
    "{\n"
    "    BUF(const float, a);\n"
    "    BUF(const float, b);\n"
    "    BUF(float, c);\n"
    "    i64 i = ox_global_id(0);\n"
    "    if (i < n) c[i] = a[i] + b[i] * SCALE;\n"
    "}\n";

static ox__kernel_arg buffer_arg(const ox_buffer *b, size_t offset)
{
    return (ox__kernel_arg){.kind = OX__ARG_BUFFER, .buffer = b->memory->impl,
                            .offset = b->offset + offset};
}

/* Run vadd on n floats through views at odd float offsets; compare with
 * the host (`scale` matches the program's -DSCALE). */
static void check_vadd(ox_context *ctx, ox_device *dev, ox__program *program, int n, float scale)
{
    ox__kernel *kernel;
    ASSERT_OK(ctx, ox__program_kernel(program, "vadd", &kernel));
    size_t bytes = (size_t)n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    for (int i = 0; i < n; i++) {
        a[i] = (float)i * 0.5f - 7.0f;
        b[i] = 1.0f / (float)(i + 1);
    }
    ox_buffer *big, *va, *vb, *vc;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, 3 * bytes + 64, &big));
    ASSERT_OK(ctx, ox_buffer_sub(big, 4, bytes, &va));
    ASSERT_OK(ctx, ox_buffer_sub(big, 4 + bytes + 8, bytes, &vb));
    ASSERT_OK(ctx, ox_buffer_sub(big, 2 * bytes + 32, bytes, &vc));
    ASSERT_OK(ctx, ox_buffer_write(va, 0, a, bytes));
    ASSERT_OK(ctx, ox_buffer_write(vb, 0, b, bytes));
    ox_queue *queue;
    ASSERT_OK(ctx, ox_queue_create(dev, &queue));
    ox__kernel_arg args[4] = {buffer_arg(va, 0), buffer_arg(vb, 0), buffer_arg(vc, 0),
                              {.kind = OX__ARG_SCALAR, .value = &n, .size = sizeof n}};
    size_t groups[3] = {((size_t)n + 63) / 64, 1, 1}, local[3] = {64, 1, 1};
    void *event = NULL;
    ASSERT_OK(ctx, ox__kernel_launch(dev, queue->impl, kernel, groups, local, 4, args, &event));
    ASSERT(event != NULL);
    ASSERT_OK(ctx, dev->backend->iface->event_wait(event));
    dev->backend->iface->event_release(event);
    ASSERT_OK(ctx, ox_buffer_read(vc, 0, c, bytes));
    for (int i = 0; i < n; i++)
        ASSERT_MSG(c[i] == a[i] + b[i] * scale, "c[%d] = %.9g, host %.9g", i, c[i],
                   a[i] + b[i] * scale);
    ox_queue_free(queue);
    ox_buffer_free(va);
    ox_buffer_free(vb);
    ox_buffer_free(vc);
    ox_buffer_free(big);
    free(a);
    free(b);
    free(c);
}

static void remove_cache(const char *dir)
{
    char kernels[512], path[1024];
    snprintf(kernels, sizeof kernels, "%s/kernels", dir);
    DIR *d = opendir(kernels);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", kernels, de->d_name);
        remove(path);
    }
    if (d) closedir(d);
    rmdir(kernels);
    rmdir(dir);
}

/* The one entry of a fresh cache directory: its path; returns the number of
 * entries. */
static int cache_files(const char *dir, char *entry, size_t cap)
{
    char kernels[512];
    snprintf(kernels, sizeof kernels, "%s/kernels", dir);
    DIR *d = opendir(kernels);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        n++;
        if (entry) snprintf(entry, cap, "%s/%s", kernels, de->d_name);
    }
    closedir(d);
    return n;
}

static ox__program *build_logged(ox_context *ctx, ox_device *dev, test_log *log)
{
    ox__program *program;
    pthread_mutex_lock(&log->lock);
    log->count = 0;
    pthread_mutex_unlock(&log->lock);
    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_DEBUG));
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=4.0f", &program));
    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_WARN));
    return program;
}

OX_TEST(kernel_build_launch_and_disk_cache)
{
    char dir[] = "/tmp/ox-gpu-cache-XXXXXX", entry[1024];
    require_device();
    ASSERT(mkdtemp(dir) != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    test_log log;
    test_log_init(&log);
    ox_context *ctx = gpu_context(&log);
    ox_device *dev = device_named(ctx, DEVICE0);
    ox__program *program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    check_vadd(ctx, dev, program, 1000, 4.0f);
    check_vadd(ctx, dev, program, 64, 4.0f);
    ox__program_free(program);
    ASSERT_EQ(cache_files(dir, entry, sizeof entry), 1);

    program = build_logged(ctx, dev, &log); /* from the disk cache */
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_ERROR, "refused", NULL);
    check_vadd(ctx, dev, program, 777, 4.0f);
    ox__program_free(program);

    /* a well-formed entry holding garbage: refused, rebuilt from source */
    FILE *f = fopen(entry, "rb");
    ASSERT(f != NULL);
    unsigned char header[32];
    ASSERT(fread(header, 1, sizeof header, f) == sizeof header);
    size_t key_len = 0;
    for (int i = 0; i < 8; i++) key_len |= (size_t)header[8 + i] << (8 * i);
    unsigned char *forged = malloc(sizeof header + key_len + 4096);
    memcpy(forged, header, sizeof header);
    ASSERT(fread(forged + sizeof header, 1, key_len, f) == key_len);
    fclose(f);
    test_fill_random(forged + sizeof header + key_len, 4096, 29);
    uint64_t hash = ox__hash64(forged + sizeof header + key_len, 4096);
    for (int i = 0; i < 8; i++) {
        forged[16 + i] = (unsigned char)((uint64_t)4096 >> (8 * i));
        forged[24 + i] = (unsigned char)(hash >> (8 * i));
    }
    f = fopen(entry, "wb");
    ASSERT(f && fwrite(forged, 1, sizeof header + key_len + 4096, f) == sizeof header + key_len +
                                                                          4096);
    fclose(f);
    free(forged);
    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "cached binary refused", NULL);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    check_vadd(ctx, dev, program, 300, 4.0f);
    ox__program_free(program);
    ox_context_free(ctx);
    remove_cache(dir);
}

OX_TEST(build_errors_and_missing_kernels)
{
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0);
    static const char broken[] = "KERNEL broken(ARG_BUF(float, x))\n"
                                 "{\n"
                                 "    BUF(float, x);\n"
                                 "    x[0] = undeclared_thing_42 +;\n"
                                 "}\n";
    ox__program *program = (ox__program *)&program;
    ASSERT_EQ(ox__program_build(dev, "test broken", broken, NULL, &program), OX_ERR_BUILD);
    ASSERT(program == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "test broken");
    ASSERT_CONTAINS(ox_errmsg(ctx), DEVICE0);
    ASSERT_CONTAINS(ox_errmsg(ctx), "undeclared_thing_42"); /* from the compiler's log */

    ox__kernel *kernel = (ox__kernel *)&kernel;
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=1.0f", &program));
    ASSERT_EQ(ox__program_kernel(program, "no_such_kernel", &kernel), OX_ERR_NOT_FOUND);
    ASSERT(kernel == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no_such_kernel");

#ifdef GPU_PARAMETER_SYMBOL
    /* a launch short of parameters is refused, where the driver lists them */
    static const char *const runtime[] = {GPU_RUNTIME_LIBRARIES};
    void *library = NULL;
    for (size_t i = 0; i < sizeof runtime / sizeof runtime[0] && !library; i++)
        library = dlopen(runtime[i], RTLD_NOW | RTLD_LOCAL);
    if (library && dlsym(library, GPU_PARAMETER_SYMBOL)) {
        ox_queue *queue;
        ox_buffer *buffer;
        ASSERT_OK(ctx, ox__program_kernel(program, "vadd", &kernel));
        ASSERT_OK(ctx, ox_queue_create(dev, &queue));
        ASSERT_OK(ctx, ox_buffer_alloc(dev, 256, &buffer));
        ox__kernel_arg args[2] = {buffer_arg(buffer, 0), buffer_arg(buffer, 0)};
        size_t groups[3] = {1, 1, 1}, local[3] = {64, 1, 1};
        ASSERT_EQ(ox__kernel_launch(dev, queue->impl, kernel, groups, local, 2, args, NULL),
                  OX_ERR_INVALID);
        ASSERT_CONTAINS(ox_errmsg(ctx), "7 parameters");
    } else {
        printf("  the driver lists no kernel parameters (%s): a short launch is not caught\n",
               GPU_PARAMETER_SYMBOL);
    }
#else
    printf("  %s cannot list kernel parameters: short launches are not caught, not run\n",
           GPU_BACKEND);
#endif
    ox__program_free(program);
    ox_context_free(ctx);
}

/* Threads launching one kernel object at once, each with its own buffers
 * and queue: arguments must not leak between launches. */
typedef struct launch_job {
    ox_context *ctx;
    ox_device *dev;
    ox__kernel *kernel;
    int seed;
    int bad;
} launch_job;

static void *launch_thread(void *arg)
{
    launch_job *job = arg;
    const int n = 4096, rounds = 40;
    size_t bytes = (size_t)n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    for (int i = 0; i < n; i++) {
        a[i] = (float)(job->seed * 100000 + i);
        b[i] = (float)job->seed;
    }
    ox_buffer *ba, *bb, *bc;
    ox_queue *queue;
    ASSERT_OK(job->ctx, ox_buffer_alloc(job->dev, bytes, &ba));
    ASSERT_OK(job->ctx, ox_buffer_alloc(job->dev, bytes, &bb));
    ASSERT_OK(job->ctx, ox_buffer_alloc(job->dev, bytes, &bc));
    ASSERT_OK(job->ctx, ox_queue_create(job->dev, &queue));
    ASSERT_OK(job->ctx, ox_buffer_write(ba, 0, a, bytes));
    ASSERT_OK(job->ctx, ox_buffer_write(bb, 0, b, bytes));
    ox__kernel_arg args[4] = {buffer_arg(ba, 0), buffer_arg(bb, 0), buffer_arg(bc, 0),
                              {.kind = OX__ARG_SCALAR, .value = &n, .size = sizeof n}};
    size_t groups[3] = {(size_t)n / 64, 1, 1}, local[3] = {64, 1, 1};
    for (int r = 0; r < rounds; r++) {
        ASSERT_OK(job->ctx, ox__kernel_launch(job->dev, queue->impl, job->kernel, groups, local, 4,
                                              args, NULL));
        ASSERT_OK(job->ctx, ox_queue_read(queue, bc, 0, c, bytes, NULL));
        ASSERT_OK(job->ctx, ox_queue_finish(queue));
        for (int i = 0; i < n; i++) job->bad += c[i] != a[i] + b[i] * 2.0f;
        memset(c, 0, bytes);
        ASSERT_OK(job->ctx, ox_buffer_write(bc, 0, c, bytes));
    }
    ox_queue_free(queue);
    ox_buffer_free(ba);
    ox_buffer_free(bb);
    ox_buffer_free(bc);
    free(a);
    free(b);
    free(c);
    return NULL;
}

OX_TEST(concurrent_launches_of_one_kernel)
{
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context *ctx = gpu_context(NULL);
    ox_device *dev = device_named(ctx, DEVICE0);
    ox__program *program;
    ox__kernel *kernel;
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=2.0f", &program));
    ASSERT_OK(ctx, ox__program_kernel(program, "vadd", &kernel));
    launch_job jobs[4];
    pthread_t threads[4];
    for (int t = 0; t < 4; t++) {
        jobs[t] = (launch_job){.ctx = ctx, .dev = dev, .kernel = kernel, .seed = t + 1};
        ASSERT(pthread_create(&threads[t], NULL, launch_thread, &jobs[t]) == 0);
    }
    for (int t = 0; t < 4; t++) {
        ASSERT(pthread_join(threads[t], NULL) == 0);
        ASSERT_MSG(jobs[t].bad == 0, "thread %d: %d wrong results", t, jobs[t].bad);
    }
    ox__program_free(program);
    ox_context_free(ctx);
}

/* ---- matmul: the vendor BLAS and the portable kernel against the CPU ---------------- */

typedef struct matmul_case {
    ox_dtype a_dtype, b_dtype;
    int64_t M, N, K, A2, B2, B3;
    unsigned flags;
    int pad; /* b's rows padded and a at an odd element offset */
} matmul_case;

static void fill_tensor(const ox_tensor *t, uint64_t seed)
{
    int64_t n = ox_tensor_nelements(t);
    float *values = malloc((size_t)n * sizeof(float));
    void *stored = malloc((size_t)n * ox_dtype_size(t->dtype));
    test_fill_random(values, (size_t)n * sizeof(float), seed);
    for (int64_t i = 0; i < n; i++)
        values[i] = (float)(((const unsigned char *)values)[4 * i] % 64) / 16.0f - 2.0f;
    ASSERT_OK(NULL, ox_row_from_f32(t->dtype, values, stored, n));
    ASSERT_OK(NULL, ox_tensor_write(t, stored, (size_t)n * ox_dtype_size(t->dtype)));
    free(values);
    free(stored);
}

/* Tensors of one case on `dev` (the same values on every device). */
static void matmul_tensors(ox_device *dev, const matmul_case *c, ox_tensor *d, ox_tensor *a,
                           ox_tensor *b)
{
    int ta = (c->flags & OX_MATMUL_TRANS_A) != 0, tb = (c->flags & OX_MATMUL_TRANS_B) != 0;
    ASSERT_OK(NULL, ox_tensor_alloc(dev, OX_DTYPE_F32, c->N, c->M, c->B2, c->B3, d));
    int64_t a0 = ta ? c->M : c->K, a1 = ta ? c->K : c->M;
    int64_t b0 = tb ? c->K : c->N, b1 = tb ? c->N : c->K;
    ox_tensor whole;
    ASSERT_OK(NULL, ox_tensor_alloc(dev, c->a_dtype, a0 + c->pad, a1, c->A2, c->A2 == 1 ? 1 : c->B3,
                                    &whole));
    *a = whole;
    a->ne[0] = a0; /* rows of a0 inside rows of a0 + pad, from element `pad` on */
    a->offset += (size_t)c->pad * ox_dtype_size(c->a_dtype);
    ASSERT_OK(NULL, ox_tensor_alloc(dev, c->b_dtype, b0 + 3 * c->pad, b1, c->B2, c->B3, &whole));
    *b = whole;
    b->ne[0] = b0;
    fill_tensor(a, 5);
    fill_tensor(b, 6);
}

static double matmul_nmse(ox_context *ctx, ox_device *dev, ox_device *cpu, const matmul_case *c)
{
    ox_tensor d[2], a[2], b[2];
    ox_device *devices[2] = {dev, cpu};
    int64_t n = c->M * c->N * c->B2 * c->B3;
    float *out[2];
    for (int i = 0; i < 2; i++) {
        ox_queue *q;
        matmul_tensors(devices[i], c, &d[i], &a[i], &b[i]);
        ASSERT_OK(ctx, ox_queue_create(devices[i], &q));
        ASSERT_OK(ctx, ox_matmul(q, &d[i], &a[i], &b[i], c->flags));
        ASSERT_OK(ctx, ox_queue_finish(q));
        out[i] = malloc((size_t)n * sizeof(float));
        ASSERT_OK(ctx, ox_tensor_read(&d[i], out[i], (size_t)n * sizeof(float)));
        ox_queue_free(q);
    }
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; i++) {
        err += ((double)out[0][i] - out[1][i]) * ((double)out[0][i] - out[1][i]);
        ref += (double)out[1][i] * out[1][i];
    }
    free(out[0]);
    free(out[1]);
    return ref > 0 ? err / ref : err;
}

static const matmul_case matmul_cases[] = {
    {OX_DTYPE_F32, OX_DTYPE_F32, 64, 48, 80, 1, 1, 1, 0, 0},
    {OX_DTYPE_F16, OX_DTYPE_F16, 33, 65, 130, 1, 1, 1, OX_MATMUL_TRANS_B, 1},
    {OX_DTYPE_BF16, OX_DTYPE_BF16, 17, 40, 64, 1, 1, 1, OX_MATMUL_TRANS_A, 0},
    {OX_DTYPE_F32, OX_DTYPE_F32, 20, 24, 28, 1, 3, 2, OX_MATMUL_TRANS_A | OX_MATMUL_TRANS_B, 1},
    {OX_DTYPE_F16, OX_DTYPE_F16, 8, 16, 32, 3, 3, 2, 0, 0},
    {OX_DTYPE_F32, OX_DTYPE_F32, 1, 512, 256, 1, 1, 1, OX_MATMUL_TRANS_B, 0},
    {OX_DTYPE_F16, OX_DTYPE_F32, 32, 32, 32, 1, 1, 1, 0, 0}, /* mixed: always the kernel */
};

/* Every case on the device with native libraries allowed (or not) must
 * match the CPU; returns whether the vendor BLAS said it served matmul. */
static int run_matmul_cases(int native)
{
    setenv("OX_NATIVE_LIBS", native ? "1" : "0", 1);
    setenv("OX_CACHE_DIR", "off", 1);
    test_log log;
    test_log_init(&log);
    ox_context *ctx = gpu_context(&log);
    ASSERT_OK(ctx, ox_context_set_log_level(ctx, OX_LOG_DEBUG));
    ox_device *dev = device_named(ctx, DEVICE0), *cpu = device_named(ctx, "cpu");
    for (size_t i = 0; i < sizeof matmul_cases / sizeof matmul_cases[0]; i++) {
        const matmul_case *c = &matmul_cases[i];
        double nmse = matmul_nmse(ctx, dev, cpu, c);
        printf("  %s matmul %s x %s, %lldx%lldx%lld, batch %lldx%lld (a %lld), flags %u: NMSE "
               "%.2g\n",
               native ? "native" : "kernel", ox_dtype_str(c->a_dtype), ox_dtype_str(c->b_dtype),
               (long long)c->M, (long long)c->N, (long long)c->K, (long long)c->B2,
               (long long)c->B3, (long long)c->A2, c->flags, nmse);
        ASSERT_MSG(nmse < 1e-9, "case %zu: NMSE %g against the CPU", i, nmse);
    }
    int served = test_log_find(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "matmul through " GPU_BLAS,
                               NULL) >= 0;
    ox_context_free(ctx);
    return served;
}

OX_TEST(matmul_vendor_blas_matches_cpu)
{
    static const char *const libraries[] = {GPU_BLAS_LIBRARIES, NULL};
    int served = run_matmul_cases(1);
    if (library_present(libraries)) {
        ASSERT_MSG(served, "%s is present but did not serve matmul", GPU_BLAS);
        printf("  %s served the cases it can express; the others ran the kernel\n", GPU_BLAS);
    } else {
        ASSERT(!served);
        printf("  %s not found: only the portable kernel ran\n", GPU_BLAS);
    }
}

OX_TEST(matmul_kernel_alone_matches_cpu)
{
    ASSERT_MSG(!run_matmul_cases(0), "OX_NATIVE_LIBS=0, yet %s served matmul", GPU_BLAS);
    printf("  OX_NATIVE_LIBS=0: the portable kernel ran every case\n");
}

/* ---- host allocation failures ---------------------------------------------------------- */

/* One pass of buffer, queue, event, build and launch with an allocator
 * failing from its n-th call on (n < 0: never). Returns 1 if all worked;
 * every failure must come back as a status, and every block be freed. */
static int run_with_failing_allocator(long fail_from, long *attempts)
{
    test_alloc alloc;
    test_alloc_init(&alloc, fail_from);
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    const char *env = getenv("OX_BACKEND_PATH");
    if (!(env && *env)) options.backend_path = GPU_PLUGIN;
    options.log_level = OX_LOG_OFF;
    test_alloc_attach(&alloc, &options);
    ox_context *ctx = NULL;
    if (ox_context_create(&options, &ctx) != OX_OK) return 0;
    int ok = 0, n = 256, count = 0;
    float data[256] = {0};
    ox_device *dev = NULL;
    ox_buffer *buffer = NULL;
    ox_queue *queue = NULL;
    ox_event *event = NULL;
    ox__program *program = NULL;
    ox__kernel *kernel = NULL;
    void *done = NULL;
    if (ox_device_select(ctx, DEVICE0, &dev, 1, &count) != OX_OK || count != 1) goto out;
    if (ox_buffer_alloc(dev, sizeof data, &buffer) != OX_OK) goto out;
    if (ox_queue_create(dev, &queue) != OX_OK) goto out;
    if (ox_queue_write(queue, buffer, 0, data, sizeof data, &event) != OX_OK) goto out;
    if (ox_event_wait(event) != OX_OK) goto out;
    if (ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=2.0f", &program) != OX_OK)
        goto out;
    if (ox__program_kernel(program, "vadd", &kernel) != OX_OK) goto out;
    ox__kernel_arg args[4] = {buffer_arg(buffer, 0), buffer_arg(buffer, 0),
                              buffer_arg(buffer, 0),
                              {.kind = OX__ARG_SCALAR, .value = &n, .size = sizeof n}};
    size_t groups[3] = {4, 1, 1}, local[3] = {64, 1, 1};
    if (ox__kernel_launch(dev, queue->impl, kernel, groups, local, 4, args, &done) != OX_OK)
        goto out;
    ok = dev->backend->iface->event_wait(done) == OX_OK;
    dev->backend->iface->event_release(done);
out:
    ox__program_free(program);
    ox_context_free(ctx);
    ASSERT_ALLOC_BALANCED(&alloc);
    *attempts = atomic_load(&alloc.attempts);
    return ok;
}

OX_TEST(host_allocation_failures)
{
    /* A disk cache keeps builds short; a context holding the device open
     * keeps its driver context alive between the passes. */
    char dir[] = "/tmp/ox-gpu-cache-XXXXXX";
    require_device();
    ASSERT(mkdtemp(dir) != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    ox_context *keep = gpu_context(NULL);
    ox_buffer *held;
    ASSERT_OK(keep, ox_buffer_alloc(device_named(keep, DEVICE0), 64, &held));
    long attempts = 0, ignored;
    ASSERT(run_with_failing_allocator(-1, &attempts));
    for (long n = 0; n < attempts; n++) run_with_failing_allocator(n, &ignored);
    printf("  %ld allocation failure points survived\n", attempts);
    ox_context_free(keep);
    remove_cache(dir);
}
