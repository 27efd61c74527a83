/* Device limits (ox_device_measure_limits): argument checks, plausible
 * figures on the CPU and on the first OpenCL device, the cache (a reread
 * gives the same values, REMEASURE measures again, an unreadable line is
 * reported and measured again) and out-of-memory failures anywhere. Every
 * case points OX_LIMITS_FILE at a file of its own; the figures are checked
 * against wide sanity ranges only (the machine may be busy). */
#include <sys/stat.h>

#include "ox_test.h"
#include "test_helpers.h"

/* A fresh temporary folder; OX_LIMITS_FILE = FOLDER/sub/limits (the
 * library creates sub/). The path goes to `path`. */
static void use_temp_cache(char *path, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/ox-limits-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, cap, "%s/sub/limits", dir);
    ASSERT(setenv("OX_LIMITS_FILE", path, 1) == 0);
}

static void remove_temp_cache(const char *path)
{
    char dir[1024];
    remove(path);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
    *strrchr(dir, '/') = '\0';
    rmdir(dir);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ASSERT_MSG(f != NULL, "cannot open %s", path);
    static char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

static ox_device_limits measure(ox_device *device, unsigned flags)
{
    ox_device_limits l;
    memset(&l, 0x5a, sizeof l);
    l.struct_size = sizeof l;
    ASSERT_OK(ox_device_context(device), ox_device_measure_limits(device, flags, &l));
    return l;
}

/* What a measurement must look like: bandwidths between 0.1 and 10,000
 * GB/s, the larger one the roofline; an F32 FMA rate within a factor of 50
 * of units x clock x lanes x 2 where the clock is known (lanes: 16 for a
 * CPU-type device, the widest SIMD here being AVX-512, and 64 per compute
 * unit of a GPU-like one), else positive; F16 only with half arithmetic. */
static void check_plausible(ox_device *device, const ox_device_limits *l, int lanes)
{
    ox_device_info info = test_device_info(device);
    printf("  %s: copy %.1f GB/s, triad %.1f GB/s, F32 FMA %.1f GFLOP/s, F16 FMA %.1f GFLOP/s, "
           "%.2f s\n", info.id, l->copy_gbps, l->triad_gbps, l->f32_gflops, l->f16_gflops,
           l->seconds);
    ASSERT_EQ(l->struct_size, sizeof *l);
    ASSERT_MSG(l->copy_gbps > 0.1 && l->copy_gbps < 10000, "copy %g GB/s", l->copy_gbps);
    ASSERT_MSG(l->triad_gbps > 0.1 && l->triad_gbps < 10000, "triad %g GB/s", l->triad_gbps);
    ASSERT(l->bandwidth_gbps == (l->copy_gbps > l->triad_gbps ? l->copy_gbps : l->triad_gbps));
    ASSERT(l->f32_gflops > 0);
    if (info.clock_mhz) {
        double peak = (double)info.compute_units * info.clock_mhz * 1e-3 * lanes * 2;
        printf("  %s: units x clock x lanes x 2 = %.1f GFLOP/s\n", info.id, peak);
        ASSERT_MSG(l->f32_gflops > peak / 50 && l->f32_gflops < peak * 50,
                   "F32 FMA %g GFLOP/s is not within 50x of %g", l->f32_gflops, peak);
    }
    if (info.features & OX_FEATURE_BIT(OX_FEATURE_HALF_ARITH)) ASSERT(l->f16_gflops > 0);
    else ASSERT(l->f16_gflops == 0);
    ASSERT(l->seconds > 0);
    ASSERT_EQ(l->cached, 0);
}

/* A context with the CPU and the OpenCL plugin (OX_BACKEND_PATH, else the
 * one built beside this test), and its first OpenCL device; or a skip. */
static ox_device *opencl_device(ox_context **ctx)
{
    const char *env = getenv("OX_BACKEND_PATH");
    ox_context_options o = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    o.backend_path = env && *env ? env : OX_TEST_OPENCL_PLUGIN;
    if (!*o.backend_path) OX_SKIP("no OpenCL device: the opencl plugin was not built");
    ASSERT_OK(NULL, ox_context_create(&o, ctx));
    ox_device *device = NULL;
    int count = 0;
    if (ox_device_select(*ctx, "opencl:0", &device, 1, &count) != OX_OK || count != 1)
        OX_SKIP("no OpenCL device: %s", ox_errmsg(*ctx));
    return device;
}

OX_TEST(arguments_are_checked)
{
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = test_cpu_device(ctx);
    ox_device_limits l = {.struct_size = sizeof l};
    ASSERT_EQ(ox_device_measure_limits(NULL, 0, &l), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(NULL), "ox_device_measure_limits");
    ASSERT_EQ(ox_device_measure_limits(cpu, 0, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "out is NULL");
    l.struct_size = sizeof l - 1;
    ASSERT_EQ(ox_device_measure_limits(cpu, 0, &l), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "struct_size");
    l.struct_size = 0;
    ASSERT_EQ(ox_device_measure_limits(cpu, 0, &l), OX_ERR_INVALID);
    l.struct_size = sizeof l;
    ASSERT_EQ(ox_device_measure_limits(cpu, 2u, &l), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "flags");
    ox_context_free(ctx);
}

OX_TEST(cpu_limits_are_plausible)
{
    char path[1024];
    use_temp_cache(path, sizeof path);
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = test_cpu_device(ctx);
    ox_device_limits l = measure(cpu, 0);
    check_plausible(cpu, &l, 16);
    ox_context_free(ctx);
    remove_temp_cache(path);
}

OX_TEST(opencl_limits_are_plausible)
{
    char path[1024];
    use_temp_cache(path, sizeof path);
    ox_context *ctx;
    ox_device *device = opencl_device(&ctx);
    ox_device_info info = test_device_info(device);
    ox_device_limits l = measure(device, 0);
    check_plausible(device, &l, info.type == OX_DEVICE_CPU ? 16 : 64);
    ox_context_free(ctx);
    remove_temp_cache(path);
}

OX_TEST(cache_returns_the_same_values)
{
    char path[1024];
    use_temp_cache(path, sizeof path);
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = test_cpu_device(ctx);
    ox_device_limits first = measure(cpu, 0);
    ASSERT_EQ(first.cached, 0);
    ASSERT(first.seconds > 0);
    ASSERT_EQ(count_lines(read_text(path)), 1);

    ox_device_limits again = measure(cpu, 0);
    ASSERT_EQ(again.cached, 1);
    ASSERT(again.seconds == 0);
    ASSERT(again.copy_gbps == first.copy_gbps && again.triad_gbps == first.triad_gbps);
    ASSERT(again.bandwidth_gbps == first.bandwidth_gbps);
    ASSERT(again.f32_gflops == first.f32_gflops && again.f16_gflops == first.f16_gflops);

    /* REMEASURE: measured again, and its values replace the line */
    ox_device_limits fresh = measure(cpu, OX_LIMITS_REMEASURE);
    ASSERT_EQ(fresh.cached, 0);
    ASSERT(fresh.seconds > 0);
    ASSERT_EQ(count_lines(read_text(path)), 1);
    ox_device_limits after = measure(cpu, 0);
    ASSERT_EQ(after.cached, 1);
    ASSERT(after.copy_gbps == fresh.copy_gbps && after.f32_gflops == fresh.f32_gflops);

    /* another context (as another process would) reads the same line */
    ox_context *other = test_cpu_context();
    ox_device_limits shared = measure(test_cpu_device(other), 0);
    ASSERT_EQ(shared.cached, 1);
    ASSERT(shared.triad_gbps == fresh.triad_gbps);
    ox_context_free(other);
    ox_context_free(ctx);
    remove_temp_cache(path);
}

/* An unreadable line of this device: a warning, a new measurement, and a
 * file without the bad lines afterwards. */
OX_TEST(unreadable_cache_is_measured_again)
{
    char path[1024];
    use_temp_cache(path, sizeof path);
    test_log log;
    test_log_init(&log);
    ox_context_options o = test_options(OX_CONTEXT_NO_PLUGINS);
    test_log_attach(&log, &o);
    ox_context *ctx;
    ASSERT_OK(NULL, ox_context_create(&o, &ctx));
    ox_device *cpu = test_cpu_device(ctx);
    measure(cpu, 0);

    /* keep the key, spoil the values; add a line of noise */
    char text[8192];
    snprintf(text, sizeof text, "%s", read_text(path));
    char *space = strchr(text, ' ');
    ASSERT(space != NULL);
    snprintf(space, sizeof text - (size_t)(space - text), " copy=fast triad=1 f32=1 f16=0\n"
             "\x01 not a cache line\n");
    FILE *f = fopen(path, "w");
    ASSERT(f && fputs(text, f) >= 0 && fclose(f) == 0);

    ox_device_limits l = measure(cpu, 0);
    ASSERT_EQ(l.cached, 0);
    ASSERT(l.copy_gbps > 0.1);
    ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, "line 1 is unreadable", "measuring again");
    ASSERT_LOGGED(&log, OX_LOG_WARN, OX_LOG_WARN, "line 2 is unreadable", NULL);
    const char *now = read_text(path);
    ASSERT_EQ(count_lines(now), 1);
    ASSERT(strstr(now, "fast") == NULL && strstr(now, "not a cache line") == NULL);

    /* the rewritten file reads cleanly */
    int warnings = log.count;
    ASSERT_EQ(measure(cpu, 0).cached, 1);
    ASSERT_EQ(log.count, warnings);
    ox_context_free(ctx);
    remove_temp_cache(path);
}

/* OX_LIMITS_FILE=off: nothing is read or written. */
OX_TEST(cache_off_measures_every_time)
{
    ASSERT(setenv("OX_LIMITS_FILE", "off", 1) == 0);
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = test_cpu_device(ctx);
    ASSERT_EQ(measure(cpu, 0).cached, 0);
    ASSERT_EQ(measure(cpu, 0).cached, 0);
    ox_context_free(ctx);
}

/* Every host allocation the measurement makes may fail: an error, no
 * leak, and *out zeroed but for struct_size. */
OX_TEST(out_of_memory_anywhere_is_an_error)
{
    ASSERT(setenv("OX_LIMITS_FILE", "off", 1) == 0);
    long failed = 0;
    for (long fail_from = 0;; fail_from++) {
        test_alloc a;
        test_alloc_init(&a, -1);
        ox_context_options o = test_options(OX_CONTEXT_NO_PLUGINS);
        o.log_level = OX_LOG_OFF;
        test_alloc_attach(&a, &o);
        ox_context *ctx;
        ASSERT_OK(NULL, ox_context_create(&o, &ctx));
        ox_device *cpu = test_cpu_device(ctx);
        atomic_store(&a.fail_from, atomic_load(&a.attempts) + fail_from);
        ox_device_limits l = {.struct_size = sizeof l, .copy_gbps = 7};
        ox_status s = ox_device_measure_limits(cpu, 0, &l);
        long refused = atomic_load(&a.failures);
        if (s == OX_OK) {
            ASSERT_EQ(refused, 0);
            ASSERT(l.copy_gbps > 0.1);
        } else {
            ASSERT_MSG(refused > 0, "failed with %s but no allocation was refused: %s",
                       ox_status_name(s), ox_errmsg(ctx));
            ASSERT_EQ(l.struct_size, sizeof l);
            ASSERT(l.copy_gbps == 0 && l.f32_gflops == 0 && l.cached == 0);
            failed++;
        }
        ox_context_free(ctx);
        ASSERT_ALLOC_BALANCED(&a);
        if (s == OX_OK) break;
    }
    printf("  %ld allocation points failed cleanly\n", failed);
    ASSERT(failed > 0);
}

OX_TEST_MAIN(arguments_are_checked, cpu_limits_are_plausible, opencl_limits_are_plausible,
             cache_returns_the_same_values, unreadable_cache_is_measured_again,
             cache_off_measures_every_time, out_of_memory_anywhere_is_an_error)
