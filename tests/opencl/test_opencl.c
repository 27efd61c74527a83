/* The OpenCL backend plugin on the OpenCL devices of this machine (PoCL's
 * CPU device in CI): discovery, memory, transfers, queues and events
 * (also waits across devices and backends), programs, launches and the disk
 * cache of compiled binaries. Without an OpenCL device every case is
 * skipped, saying why; none passes without having run. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/core.h"
#include "core/program.h"
#include "ox_test.h"
#include "test_helpers.h"

#ifndef OX_TEST_OPENCL_PLUGIN
#define OX_TEST_OPENCL_PLUGIN ""
#endif

#define MiB ((size_t)1 << 20)

/* ---- contexts and devices ------------------------------------------------------ */

static int find_backend(ox_context *ctx, const char *name, ox_backend_info *info)
{
    int n = 0;
    ASSERT_OK(ctx, ox_backend_count(ctx, &n));
    for (int i = 0; i < n; i++) {
        memset(info, 0, sizeof *info);
        info->struct_size = sizeof *info;
        ASSERT_OK(ctx, ox_backend_get_info(ctx, i, info));
        if (strcmp(info->name, name) == 0) return 1;
    }
    return 0;
}

/* A context with the CPU and OpenCL backends, or a skip saying why there is
 * no OpenCL device. A plugin that exists but does not load is a failure. */
static ox_context *opencl_context(test_log *log)
{
    const char *env = getenv("OX_BACKEND_PATH");
    const char *plugin = env && *env ? env : OX_TEST_OPENCL_PLUGIN;
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    if (!(env && *env)) options.backend_path = plugin;
    if (log) test_log_attach(log, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_backend_info info;
    if (!find_backend(ctx, "opencl", &info)) {
        ASSERT_MSG(!*plugin, "the opencl plugin %s did not load (run with OX_LOG=debug)", plugin);
        OX_SKIP("no OpenCL device: the opencl backend was not built (no CL/cl.h)");
    }
    if (info.device_count == 0) OX_SKIP("no OpenCL device: %s", info.note);
    return ctx;
}

static ox_device *device_named(ox_context *ctx, const char *id)
{
    ox_device *device = NULL;
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, id, &device, 1, &count));
    ASSERT_EQ(count, 1);
    return device;
}

static ox_device_info info_of(const ox_device *device)
{
    ox_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_OK(NULL, ox_device_get_info(device, &info));
    return info;
}

static unsigned char *random_bytes(size_t size, uint64_t seed)
{
    unsigned char *p = malloc(size);
    ASSERT(p != NULL);
    test_fill_random(p, size, seed);
    return p;
}

static void wait_complete(ox_context *ctx, ox_event *event)
{
    for (int i = 0; i < 60000; i++) {
        int done = -1;
        ASSERT_OK(ctx, ox_event_query(event, &done));
        ASSERT(done == 0 || done == 1);
        if (done) return;
        usleep(500);
    }
    ASSERT_MSG(0, "event still not complete after 30 s");
}

/* ---- devices --------------------------------------------------------------------- */

OX_TEST(backend_has_devices)
{
    ox_context *ctx = opencl_context(NULL);
    ox_backend_info info;
    ASSERT(find_backend(ctx, "opencl", &info));
    ASSERT(info.device_count >= 1);
    ASSERT_STR_EQ(info.note, "");
    ASSERT_CONTAINS(info.path, "libox-opencl.so");
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "opencl:*", NULL, 0, &count));
    ASSERT_EQ(count, info.device_count);
    ox_context_free(ctx);
}

OX_TEST(device_info_is_sane)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *devices[16];
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "opencl:*", devices, 16, &count));
    const uint64_t device_bits = OX_FEATURE_BIT(OX_FEATURE_FP64) |
                                 OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH) |
                                 OX_FEATURE_BIT(OX_FEATURE_SUBGROUPS) |
                                 OX_FEATURE_BIT(OX_FEATURE_UNIFIED_MEMORY);
    for (int i = 0; i < count && i < 16; i++) {
        ox_device_info info = info_of(devices[i]);
        printf("  %s: %s | %s | %s | %s | %llu MiB (max buffer %llu MiB, local %llu KiB) | "
               "%u units | groups of %u | %u MHz | features %#llx | %s\n",
               info.id, ox_device_type_str(info.type), info.name, info.vendor,
               info.driver_version, (unsigned long long)(info.memory_bytes >> 20),
               (unsigned long long)(info.max_alloc_bytes >> 20),
               (unsigned long long)(info.local_memory_bytes >> 10), info.compute_units,
               info.max_work_group_size, info.clock_mhz, (unsigned long long)info.features,
               info.note);
        ASSERT_STR_EQ(info.backend, "opencl");
        ASSERT_EQ(info.index, i);
        ASSERT(info.name[0] && info.vendor[0] && info.driver_version[0]);
        ASSERT_CONTAINS(info.note, "OpenCL");
        ASSERT(info.type >= OX_DEVICE_CPU && info.type <= OX_DEVICE_OTHER);
        ASSERT(info.memory_bytes > 0);
        ASSERT(info.max_alloc_bytes > 0 && info.max_alloc_bytes <= info.memory_bytes);
        ASSERT(info.local_memory_bytes >= 16 * 1024); /* OpenCL 1.2 guarantees 32 KiB */
        ASSERT(info.compute_units >= 1);
        ASSERT(info.max_work_group_size >= 1);
        ASSERT_EQ(info.features & ~device_bits, 0); /* no CPU SIMD bits on an OpenCL device */
    }
    ox_context_free(ctx);
}

/* ---- memory and blocking transfers ------------------------------------------------ */

OX_TEST(buffer_round_trips)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    const size_t sizes[] = {1, 4097, 8 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        unsigned char *src = random_bytes(n, i + 1), *dst = calloc(1, n);
        ox_buffer *buffer = NULL;
        ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &buffer));
        ASSERT_OK(ctx, ox_buffer_write(buffer, 0, src, n));
        ASSERT_OK(ctx, ox_buffer_read(buffer, 0, dst, n));
        ASSERT_MSG(memcmp(src, dst, n) == 0, "round trip of %zu bytes differs", n);
        ox_buffer_free(buffer);
        free(src);
        free(dst);
    }
    ox_context_free(ctx);
}

OX_TEST(sub_buffer_views)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    const size_t n = 64 * 1024;
    unsigned char *zero = calloc(1, n), *data = random_bytes(300, 7), *got = malloc(n);
    ox_buffer *parent, *view, *inner;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &parent));
    ASSERT_OK(ctx, ox_buffer_write(parent, 0, zero, n));
    ASSERT_OK(ctx, ox_buffer_sub(parent, 1000, 5000, &view));
    ASSERT_OK(ctx, ox_buffer_sub(view, 33, 1000, &inner)); /* parent bytes 1033.. */
    ASSERT_OK(ctx, ox_buffer_write(view, 17, data, 300));
    ASSERT_OK(ctx, ox_buffer_read(parent, 0, got, n));
    ASSERT(memcmp(got + 1017, data, 300) == 0);
    ASSERT(memcmp(got, zero, 1017) == 0 && memcmp(got + 1317, zero, n - 1317) == 0);
    ASSERT_OK(ctx, ox_buffer_read(inner, 0, got, 100)); /* parent 1033..1133 = data 16.. */
    ASSERT(memcmp(got, data + 16, 100) == 0);
    /* a copy between views of the same memory, not overlapping */
    ASSERT_OK(ctx, ox_buffer_copy(parent, 40000, view, 17, 300));
    ASSERT_OK(ctx, ox_buffer_read(parent, 40000, got, 300));
    ASSERT(memcmp(got, data, 300) == 0);
    ox_buffer_free(parent); /* views keep the memory */
    ASSERT_OK(ctx, ox_buffer_read(inner, 0, got, 100));
    ASSERT(memcmp(got, data + 16, 100) == 0);
    ox_buffer_free(inner);
    ox_buffer_free(view);
    free(zero);
    free(data);
    free(got);
    ox_context_free(ctx);
}

OX_TEST(fill_patterns)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    const size_t n = 4096 + 64;
    const unsigned char pattern[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const size_t pattern_sizes[] = {1, 2, 4, 8, 16};
    unsigned char *before = random_bytes(n, 3), *got = malloc(n);
    ox_buffer *buffer;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &buffer));
    for (size_t i = 0; i < sizeof pattern_sizes / sizeof pattern_sizes[0]; i++) {
        size_t p = pattern_sizes[i], offset = 32, size = 4096;
        ASSERT_OK(ctx, ox_buffer_write(buffer, 0, before, n));
        ASSERT_OK(ctx, ox_buffer_fill(buffer, offset, size, pattern, p));
        ASSERT_OK(ctx, ox_buffer_read(buffer, 0, got, n));
        ASSERT(memcmp(got, before, offset) == 0);
        for (size_t k = 0; k < size; k++)
            ASSERT_MSG(got[offset + k] == pattern[k % p], "pattern of %zu bytes: byte %zu is %u",
                       p, k, got[offset + k]);
        ASSERT(memcmp(got + offset + size, before + offset + size, n - offset - size) == 0);
    }
    ox_buffer_free(buffer);
    free(before);
    free(got);
    ox_context_free(ctx);
}

OX_TEST(copy_within_device)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    const size_t n = 3 * MiB + 5;
    unsigned char *src = random_bytes(n, 11), *got = malloc(n);
    ox_buffer *a, *b;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &a));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &b));
    ASSERT_OK(ctx, ox_buffer_write(a, 0, src, n));
    ASSERT_OK(ctx, ox_buffer_copy(b, 0, a, 0, n));
    ASSERT_OK(ctx, ox_buffer_read(b, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);
    ASSERT_OK(ctx, ox_buffer_copy(b, 1, a, 100, 1000)); /* odd offsets */
    ASSERT_OK(ctx, ox_buffer_read(b, 1, got, 1000));
    ASSERT(memcmp(src + 100, got, 1000) == 0);
    ox_buffer_free(a);
    ox_buffer_free(b);
    free(src);
    free(got);
    ox_context_free(ctx);
}

OX_TEST(cross_device_copy_with_cpu)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0"), *cpu = device_named(ctx, "cpu");
    const size_t n = 9 * MiB + 3; /* several staging chunks */
    unsigned char *src = random_bytes(n, 13), *got = malloc(n);
    ox_buffer *c1, *g, *c2;
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, n, &c1));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n + 8, &g));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, n, &c2));
    ASSERT_OK(ctx, ox_buffer_write(c1, 0, src, n));
    ASSERT_OK(ctx, ox_buffer_copy(g, 8, c1, 0, n));
    ASSERT_OK(ctx, ox_buffer_copy(c2, 0, g, 8, n));
    ASSERT_OK(ctx, ox_buffer_read(c2, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);
    ox_context_free(ctx); /* frees the buffers */
    free(src);
    free(got);
}

OX_TEST(out_of_range_refused)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    unsigned char data[64] = {0};
    ox_buffer *buffer, *view;
    ox_queue *queue;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, 128, &buffer));
    ASSERT_OK(ctx, ox_queue_create(dev, &queue));
    ASSERT_EQ(ox_buffer_write(buffer, 96, data, 64), OX_ERR_OUT_OF_RANGE);
    ASSERT_CONTAINS(ox_errmsg(ctx), "opencl:0");
    ASSERT_EQ(ox_buffer_read(buffer, 129, data, 0), OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(ox_queue_read(queue, buffer, SIZE_MAX, data, 2, NULL), OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(ox_buffer_fill(buffer, 120, 16, data, 4), OX_ERR_OUT_OF_RANGE);
    ASSERT_EQ(ox_buffer_sub(buffer, 100, 29, &view), OX_ERR_OUT_OF_RANGE);
    ASSERT_OK(ctx, ox_buffer_sub(buffer, 64, 64, &view));
    ASSERT_EQ(ox_buffer_write(view, 1, data, 64), OX_ERR_OUT_OF_RANGE);
    ox_context_free(ctx);
}

OX_TEST(huge_alloc_refused)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    ox_device_info info = info_of(dev);
    if (info.max_alloc_bytes >= SIZE_MAX) OX_SKIP("max_alloc_bytes is not below SIZE_MAX");
    ox_buffer *buffer = NULL;
    ASSERT_EQ(ox_buffer_alloc(dev, (size_t)info.max_alloc_bytes + 1, &buffer),
              OX_ERR_DEVICE_MEMORY);
    ASSERT(buffer == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "opencl:0");
    ox_context_free(ctx);
}

/* ---- queues and events --------------------------------------------------------------- */

OX_TEST(queue_events_and_markers)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    const size_t n = 2 * MiB;
    unsigned char *src = random_bytes(n, 17), *got = calloc(1, n);
    ox_buffer *buffer;
    ox_queue *queue;
    ox_event *written, *marker, *read;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &buffer));
    ASSERT_OK(ctx, ox_queue_create(dev, &queue));
    ASSERT_OK(ctx, ox_queue_write(queue, buffer, 0, src, n, &written));
    ASSERT_OK(ctx, ox_queue_marker(queue, &marker));
    wait_complete(ctx, marker);
    int done = 0;
    ASSERT_OK(ctx, ox_event_query(written, &done)); /* in order: done before the marker */
    ASSERT_EQ(done, 1);
    ASSERT_OK(ctx, ox_queue_read(queue, buffer, 0, got, n, &read));
    ASSERT_OK(ctx, ox_event_wait(read));
    ASSERT(memcmp(src, got, n) == 0);
    ASSERT_OK(ctx, ox_queue_finish(queue));
    ox_event_free(written);
    ox_event_free(marker);
    ox_queue_free(queue); /* events outlive their queue */
    ASSERT_OK(ctx, ox_event_query(read, &done));
    ASSERT_EQ(done, 1);
    ox_event_free(read);
    ox_context_free(ctx);
    free(src);
    free(got);
}

OX_TEST(queue_waits_across_backends_and_queues)
{
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0"), *cpu = device_named(ctx, "cpu");
    const size_t n = 4 * MiB;
    unsigned char *src = random_bytes(n, 19), *stage = calloc(1, n), *got = calloc(1, n);
    ox_buffer *g, *c;
    ox_queue *gq, *gq2, *cq;
    ox_event *e;
    ASSERT_OK(ctx, ox_buffer_alloc(dev, n, &g));
    ASSERT_OK(ctx, ox_buffer_alloc(cpu, n, &c));
    ASSERT_OK(ctx, ox_queue_create(dev, &gq));
    ASSERT_OK(ctx, ox_queue_create(dev, &gq2));
    ASSERT_OK(ctx, ox_queue_create(cpu, &cq));

    /* OpenCL -> CPU: the CPU queue's later work starts after the read */
    ASSERT_OK(ctx, ox_queue_write(gq, g, 0, src, n, NULL));
    ASSERT_OK(ctx, ox_queue_read(gq, g, 0, stage, n, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(cq, e));
    ASSERT_OK(ctx, ox_queue_write(cq, c, 0, stage, n, NULL));
    ASSERT_OK(ctx, ox_buffer_read(c, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);
    ox_event_free(e);

    /* CPU -> OpenCL */
    memset(stage, 0, n);
    ASSERT_OK(ctx, ox_queue_read(cq, c, 0, stage, n, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(gq, e));
    ASSERT_OK(ctx, ox_queue_write(gq, g, 0, stage, n, NULL));
    ASSERT_OK(ctx, ox_queue_finish(gq));
    ox_event_free(e);
    ASSERT_OK(ctx, ox_buffer_read(g, 0, got, n));
    ASSERT(memcmp(src, got, n) == 0);

    /* two queues of one device: the second waits on the device */
    const unsigned char pattern[4] = {0xde, 0xad, 0xbe, 0xef};
    ASSERT_OK(ctx, ox_queue_fill(gq, g, 0, n, pattern, 4, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(gq2, e));
    ASSERT_OK(ctx, ox_queue_read(gq2, g, 0, got, n, NULL));
    ASSERT_OK(ctx, ox_queue_finish(gq2));
    for (size_t i = 0; i < n; i++) ASSERT_EQ(got[i], pattern[i % 4]);
    ox_event_free(e);
    ox_context_free(ctx);
    free(src);
    free(stage);
    free(got);
}

/* Two OpenCL devices have two cl_contexts: waits between them go through
 * the host. PoCL makes a second device on request. */
OX_TEST(two_devices)
{
    setenv("POCL_DEVICES", "pthread pthread", 0);
    ox_context *ctx = opencl_context(NULL);
    int count = 0;
    ASSERT_OK(ctx, ox_device_select(ctx, "opencl:*", NULL, 0, &count));
    if (count < 2) OX_SKIP("needs two OpenCL devices, found %d", count);
    ox_device *d0 = device_named(ctx, "opencl:0"), *d1 = device_named(ctx, "opencl:1");
    const size_t n = 5 * MiB + 1;
    unsigned char *src = random_bytes(n, 23), *got = calloc(1, n);
    ox_buffer *b0, *b1;
    ox_queue *q0, *q1;
    ox_event *e;
    ASSERT_OK(ctx, ox_buffer_alloc(d0, n, &b0));
    ASSERT_OK(ctx, ox_buffer_alloc(d1, n, &b1));
    ASSERT_OK(ctx, ox_queue_create(d0, &q0));
    ASSERT_OK(ctx, ox_queue_create(d1, &q1));
    ASSERT_OK(ctx, ox_queue_write(q0, b0, 0, src, n, &e));
    ASSERT_OK(ctx, ox_queue_wait_event(q1, e));
    ASSERT_OK(ctx, ox_queue_finish(q0));
    ASSERT_OK(ctx, ox_buffer_copy(b1, 0, b0, 0, n));
    ASSERT_OK(ctx, ox_queue_read(q1, b1, 0, got, n, NULL));
    ASSERT_OK(ctx, ox_queue_finish(q1));
    ASSERT(memcmp(src, got, n) == 0);
    ox_event_free(e);
    ox_context_free(ctx);
    free(src);
    free(got);
}

static void remove_cache(const char *dir);

/* ---- programs ------------------------------------------------------------------------- */

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

/* Run vadd on n floats (through views at odd float offsets) and compare
 * with the host; `scale` must match the -DSCALE the program was built with. */
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
    ox_event *done;
    ASSERT_OK(ctx, ox_queue_create(dev, &queue));
    ox__kernel_arg args[4] = {buffer_arg(va, 0), buffer_arg(vb, 0), buffer_arg(vc, 0),
                              {.kind = OX__ARG_SCALAR, .value = &n, .size = sizeof n}};
    size_t groups[3] = {((size_t)n + 63) / 64, 1, 1}, local[3] = {64, 1, 1};
    void *event = NULL;
    ASSERT_OK(ctx, ox__kernel_launch(dev, queue->impl, kernel, groups, local, 4, args, &event));
    ASSERT(event != NULL);
    ASSERT_OK(ctx, dev->backend->iface->event_wait(event));
    dev->backend->iface->event_release(event);
    ASSERT_OK(ctx, ox_queue_marker(queue, &done));
    ASSERT_OK(ctx, ox_event_wait(done));
    ox_event_free(done);
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

OX_TEST(vector_add_matches_host)
{
    char dir[] = "/tmp/ox-opencl-cache-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    ox__program *program;
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=2.0f", &program));
    check_vadd(ctx, dev, program, 1000, 2.0f);
    check_vadd(ctx, dev, program, 64, 2.0f);
    ox__program_free(program);
    ox_context_free(ctx);
    remove_cache(dir);
}

OX_TEST(launch_argument_mismatch)
{
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    ox__program *program;
    ox__kernel *kernel;
    ox_queue *queue;
    ox_buffer *buffer;
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=1.0f", &program));
    ASSERT_OK(ctx, ox__program_kernel(program, "vadd", &kernel));
    ASSERT_OK(ctx, ox_queue_create(dev, &queue));
    ASSERT_OK(ctx, ox_buffer_alloc(dev, 256, &buffer));
    ox__kernel_arg args[2] = {buffer_arg(buffer, 0), buffer_arg(buffer, 0)};
    size_t groups[3] = {1, 1, 1}, local[3] = {64, 1, 1};
    ASSERT_EQ(ox__kernel_launch(dev, queue->impl, kernel, groups, local, 2, args, NULL),
              OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "vadd");
    ASSERT_CONTAINS(ox_errmsg(ctx), "7 parameters");
    ox__program_free(program);
    ox_context_free(ctx);
}

OX_TEST(syntax_error_gives_build_log)
{
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    static const char broken[] = "KERNEL broken(ARG_BUF(float, x))\n"
                                 "{\n"
                                 "    BUF(float, x);\n"
                                 "    x[0] = undeclared_thing_42 +;\n"
                                 "}\n";
    ox__program *program = (ox__program *)&program;
    ASSERT_EQ(ox__program_build(dev, "test broken", broken, NULL, &program), OX_ERR_BUILD);
    ASSERT(program == NULL);
    const char *message = ox_errmsg(ctx);
    ASSERT_CONTAINS(message, "test broken");
    ASSERT_CONTAINS(message, "opencl:0");
    ASSERT_CONTAINS(message, "clBuildProgram failed: CL_BUILD_PROGRAM_FAILURE (-11)");
    ASSERT_CONTAINS(message, "undeclared_thing_42"); /* from the compiler's log */
    ox_context_free(ctx);
}

OX_TEST(missing_kernel_is_named)
{
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
    ox__program *program;
    ox__kernel *kernel = (ox__kernel *)&kernel;
    ASSERT_OK(ctx, ox__program_build(dev, "test vadd", vadd_source, "-DSCALE=1.0f", &program));
    ASSERT_EQ(ox__program_kernel(program, "no_such_kernel", &kernel), OX_ERR_NOT_FOUND);
    ASSERT(kernel == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no_such_kernel");
    ASSERT_CONTAINS(ox_errmsg(ctx), "CL_INVALID_KERNEL_NAME");
    ox__program_free(program);
    ox_context_free(ctx);
}

/* Several threads launch one kernel object at once, each with its own
 * buffers and queue: arguments must not leak between launches. */
typedef struct launch_job {
    ox_context *ctx;
    ox_device *dev;
    ox__kernel *kernel;
    int seed;
    int bad; /* results that did not match */
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
    ox_context *ctx = opencl_context(NULL);
    ox_device *dev = device_named(ctx, "opencl:0");
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

/* Everything above once, with a host allocator that fails from its n-th
 * call on (n < 0: never). Returns 1 if every step succeeded. Each failure
 * must come back as a status, and the context must free every block. */
static int run_with_failing_allocator(long fail_from, long *attempts)
{
    test_alloc alloc;
    test_alloc_init(&alloc, fail_from);
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    const char *env = getenv("OX_BACKEND_PATH");
    if (!(env && *env)) options.backend_path = OX_TEST_OPENCL_PLUGIN;
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
    if (ox_device_select(ctx, "opencl:0", &dev, 1, &count) != OX_OK || count != 1) goto out;
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
    setenv("OX_CACHE_DIR", "off", 1);
    ox_context_free(opencl_context(NULL)); /* skips without a device */
    long attempts = 0, ignored;
    ASSERT(run_with_failing_allocator(-1, &attempts));
    for (long n = 0; n < attempts; n++) run_with_failing_allocator(n, &ignored);
    printf("  %ld allocation failure points survived\n", attempts);
}

/* ---- the disk cache of binaries -------------------------------------------------------- */

/* The one cache entry of a fresh cache directory: its path; and the number
 * of files in <dir>/kernels. */
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

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ASSERT(f != NULL);
    ASSERT(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    ASSERT(n > 0);
    rewind(f);
    unsigned char *data = malloc((size_t)n);
    ASSERT(fread(data, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

static void write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT(fwrite(data, 1, size, f) == size);
    ASSERT(fclose(f) == 0);
}

/* Build vadd with the log recording debug messages of that build only. */
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

OX_TEST(second_build_hits_disk_cache)
{
    char dir[] = "/tmp/ox-opencl-cache-XXXXXX", entry[1024];
    ASSERT(mkdtemp(dir) != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    test_log log;
    test_log_init(&log);
    ox_context *ctx = opencl_context(&log);
    ox_device *dev = device_named(ctx, "opencl:0");

    ox__program *program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    ASSERT_EQ(cache_files(dir, entry, sizeof entry), 1);
    struct stat first, second;
    ASSERT(stat(entry, &first) == 0);
    ox__program_free(program);

    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_ERROR, "kernel cache: stored", NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_ERROR, "refused", NULL);
    ASSERT_EQ(cache_files(dir, NULL, 0), 1);
    ASSERT(stat(entry, &second) == 0);
    ASSERT(first.st_ino == second.st_ino && first.st_size == second.st_size);
    check_vadd(ctx, dev, program, 500, 4.0f); /* the program from the binary works */
    ox__program_free(program);
    ox_context_free(ctx);

    /* a new context (a new process, as far as the driver knows) hits too */
    test_log_init(&log);
    ctx = opencl_context(&log);
    dev = device_named(ctx, "opencl:0");
    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", NULL);
    ASSERT_EQ(cache_files(dir, NULL, 0), 1);
    check_vadd(ctx, dev, program, 77, 4.0f);
    ox__program_free(program);
    ox_context_free(ctx);
    remove_cache(dir);
}

OX_TEST(corrupt_cache_rebuilds)
{
    char dir[] = "/tmp/ox-opencl-cache-XXXXXX", entry[1024];
    ASSERT(mkdtemp(dir) != NULL);
    setenv("OX_CACHE_DIR", dir, 1);
    test_log log;
    test_log_init(&log);
    ox_context *ctx = opencl_context(&log);
    ox_device *dev = device_named(ctx, "opencl:0");
    ox__program_free(build_logged(ctx, dev, &log));
    ASSERT_EQ(cache_files(dir, entry, sizeof entry), 1);
    size_t size;
    unsigned char *good = read_file(entry, &size);

    /* truncated: the core's size check turns it into a miss */
    ASSERT(truncate(entry, (off_t)(size / 2)) == 0);
    ox__program *program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    check_vadd(ctx, dev, program, 300, 4.0f);
    ox__program_free(program);

    /* flipped bytes: the checksum catches them */
    unsigned char *bad = malloc(size);
    memcpy(bad, good, size);
    for (size_t i = size / 2; i < size / 2 + 64 && i < size; i++) bad[i] ^= 0xa5;
    write_file(entry, bad, size);
    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    check_vadd(ctx, dev, program, 300, 4.0f);
    ox__program_free(program);

    /* a well-formed entry whose binary is garbage: the driver refuses it and
     * the backend builds from source */
    const size_t header = 32, garbage = 4096;
    size_t key_len = 0;
    for (int i = 0; i < 8; i++) key_len |= (size_t)good[8 + i] << (8 * i);
    ASSERT(header + key_len < size);
    unsigned char *forged = malloc(header + key_len + garbage);
    memcpy(forged, good, header + key_len);
    test_fill_random(forged + header + key_len, garbage, 29);
    uint64_t hash = ox__hash64(forged + header + key_len, garbage);
    for (int i = 0; i < 8; i++) {
        forged[16 + i] = (unsigned char)((uint64_t)garbage >> (8 * i));
        forged[24 + i] = (unsigned char)(hash >> (8 * i));
    }
    write_file(entry, forged, header + key_len + garbage);
    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", NULL);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "cached binary refused", NULL);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: stored", NULL);
    check_vadd(ctx, dev, program, 300, 4.0f);
    ox__program_free(program);

    /* the rebuilt entry is good again */
    program = build_logged(ctx, dev, &log);
    ASSERT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_DEBUG, "kernel cache: hit", NULL);
    ASSERT_NOT_LOGGED(&log, OX_LOG_DEBUG, OX_LOG_ERROR, "refused", NULL);
    ox__program_free(program);
    ox_context_free(ctx);
    free(good);
    free(bad);
    free(forged);
    remove_cache(dir);
}

OX_TEST_MAIN(backend_has_devices, device_info_is_sane, buffer_round_trips, sub_buffer_views,
             fill_patterns, copy_within_device, cross_device_copy_with_cpu, out_of_range_refused,
             huge_alloc_refused, queue_events_and_markers, queue_waits_across_backends_and_queues,
             two_devices, vector_add_matches_host, launch_argument_mismatch,
             concurrent_launches_of_one_kernel, host_allocation_failures,
             syntax_error_gives_build_log, missing_kernel_is_named, second_build_hits_disk_cache,
             corrupt_cache_rebuilds)
