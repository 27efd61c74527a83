/* Energy meters: a missing sensor is named precisely; RAPL through a fake
 * powercap tree (OX_POWERCAP_ROOT): packages summed, other zones ignored,
 * wrap-around, malformed and unreadable files; NVML through the fake
 * backend posing as an NVIDIA GPU, without NVML and (core.test_energy_nvml)
 * with a fake libnvidia-ml.so.1; argument checks and host memory. */
#include <dlfcn.h>

#include "fake_powercap.h"
#include "ox_test.h"
#include "test_helpers.h"

#define PATH_CAP POWERCAP_PATH_CAP
#define RANGE_UJ POWERCAP_RANGE_UJ

/* A new empty folder, made OX_POWERCAP_ROOT. */
static void make_root(char *root)
{
    powercap_temp_dir(root, "powercap");
    ASSERT(setenv("OX_POWERCAP_ROOT", root, 1) == 0);
}

static double read_joules(ox_context *ctx, ox_energy_meter *meter)
{
    double joules = -1.0;
    ASSERT_OK(ctx, ox_energy_meter_read(meter, &joules));
    return joules;
}

/* ---- RAPL ------------------------------------------------------------------------------- */

OX_TEST(no_powercap_names_rapl_and_the_path)
{
    char root[PATH_CAP], missing[PATH_CAP + 16];
    make_root(root);
    snprintf(missing, sizeof missing, "%s/absent", root);
    ASSERT(setenv("OX_POWERCAP_ROOT", missing, 1) == 0);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = (ox_energy_meter *)&meter;
    ox_status s = ox_energy_meter_open(test_cpu_device(ctx), &meter);
    ASSERT_EQ(s, OX_ERR_UNSUPPORTED);
    ASSERT(meter == NULL);
    const char *message = ox_errmsg(ctx);
    ASSERT_CONTAINS(message, "no energy sensor for cpu:0 (");
    ASSERT_CONTAINS(message, "RAPL powercap: ");
    char expected[PATH_CAP + 64];
    snprintf(expected, sizeof expected, "%s/intel-rapl:0/energy_uj not found", missing);
    ASSERT_CONTAINS(message, expected);
    ASSERT_CONTAINS(message, "intel_rapl_msr");
    ox_context_free(ctx);
    powercap_remove(root);
}

/* Without OX_POWERCAP_ROOT the meter looks in /sys/class/powercap. */
OX_TEST(default_root_is_sysfs)
{
    ASSERT(unsetenv("OX_POWERCAP_ROOT") == 0);
    struct stat st;
    if (stat("/sys/class/powercap/intel-rapl:0/energy_uj", &st) == 0)
        OX_SKIP("this machine has RAPL powercap zones");
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ox_status s = ox_energy_meter_open(test_cpu_device(ctx), &meter);
    ASSERT(meter == NULL);
    ASSERT_MSG(s == OX_ERR_UNSUPPORTED || s == OX_ERR_IO, "%s: %s", ox_status_name(s),
               ox_errmsg(ctx));
    ASSERT_CONTAINS(ox_errmsg(ctx), "/sys/class/powercap/intel-rapl:0/energy_uj");
    ox_context_free(ctx);
}

/* Two packages summed; their dram subzone and the psys zone (which holds
 * the packages) are not counted. */
OX_TEST(packages_are_summed)
{
    char root[PATH_CAP];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "1000000", RANGE_UJ);
    powercap_zone(root, "intel-rapl:1", "package-1", "2000000", RANGE_UJ);
    powercap_zone(root, "intel-rapl:0:0", "dram", "500", RANGE_UJ);
    powercap_zone(root, "intel-rapl:2", "psys", "7000", RANGE_UJ);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ASSERT_OK(ctx, ox_energy_meter_open(test_cpu_device(ctx), &meter));
    ASSERT_STR_EQ(ox_energy_meter_source(meter), "RAPL package-0 (+package-1)");
    ASSERT_NEAR(read_joules(ctx, meter), 0.0, 1e-12);
    powercap_set_energy(root, "intel-rapl:0", "2500000\n");  /* +1.5 J */
    powercap_set_energy(root, "intel-rapl:1", "2500000\n");  /* +0.5 J */
    powercap_set_energy(root, "intel-rapl:0:0", "9000500\n"); /* not a package */
    powercap_set_energy(root, "intel-rapl:2", "9007000\n");   /* psys: not a package */
    ASSERT_NEAR(read_joules(ctx, meter), 2.0, 1e-9);
    ASSERT_NEAR(read_joules(ctx, meter), 2.0, 1e-9); /* nothing new */
    powercap_set_energy(root, "intel-rapl:1", "2750000");     /* no newline either */
    ASSERT_NEAR(read_joules(ctx, meter), 2.25, 1e-9);
    ox_energy_meter_free(meter);
    ox_context_free(ctx);
    powercap_remove(root);
}

/* Packages come in order of their names, whatever their zone numbers. */
OX_TEST(packages_in_order)
{
    char root[PATH_CAP];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-1", "10", RANGE_UJ);
    powercap_zone(root, "intel-rapl:1", "package-0", "10", RANGE_UJ);
    powercap_zone(root, "intel-rapl:2", "package-2", "10", RANGE_UJ);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ASSERT_OK(ctx, ox_energy_meter_open(test_cpu_device(ctx), &meter));
    ASSERT_STR_EQ(ox_energy_meter_source(meter), "RAPL package-0 (+package-1 +package-2)");
    ox_energy_meter_free(meter);
    ox_context_free(ctx);
    powercap_remove(root);
}

/* A counter below its last value wrapped at max_energy_range_uj. */
OX_TEST(wrap_around_adds_the_range)
{
    char root[PATH_CAP];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "900000", "1000000");
    powercap_zone(root, "intel-rapl:1", "package-1", "100", "1000000");
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ASSERT_OK(ctx, ox_energy_meter_open(test_cpu_device(ctx), &meter));
    powercap_set_energy(root, "intel-rapl:0", "100000"); /* 0.1 J to the wrap, 0.1 J after */
    ASSERT_NEAR(read_joules(ctx, meter), 0.2, 1e-9);
    powercap_set_energy(root, "intel-rapl:0", "300000");
    powercap_set_energy(root, "intel-rapl:1", "50100");
    ASSERT_NEAR(read_joules(ctx, meter), 0.45, 1e-9);
    /* Beyond the range cannot be unwrapped: an error, and nothing counted. */
    powercap_set_energy(root, "intel-rapl:0", "2000000");
    powercap_set_energy(root, "intel-rapl:1", "40");
    double joules = -1.0;
    ASSERT_EQ(ox_energy_meter_read(meter, &joules), OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), "max_energy_range_uj");
    ASSERT_NEAR(joules, -1.0, 0.0);
    powercap_set_energy(root, "intel-rapl:0", "300000");
    powercap_set_energy(root, "intel-rapl:1", "50100");
    ASSERT_NEAR(read_joules(ctx, meter), 0.45, 1e-9);
    ox_energy_meter_free(meter);
    ox_context_free(ctx);
    powercap_remove(root);
}

/* A counter that does not parse fails the call with its path; a failed
 * read changes nothing. */
OX_TEST(malformed_counter_is_an_error)
{
    char root[PATH_CAP], expected[PATH_CAP + 64];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "12abc", RANGE_UJ);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(test_cpu_device(ctx), &meter), OX_ERR_FORMAT);
    ASSERT(meter == NULL);
    snprintf(expected, sizeof expected, "%s/intel-rapl:0/energy_uj holds \"12abc\"", root);
    ASSERT_CONTAINS(ox_errmsg(ctx), expected);
    ASSERT_CONTAINS(ox_errmsg(ctx), "energy sensor of cpu:0");

    powercap_set_energy(root, "intel-rapl:0", "1000");
    ASSERT_OK(ctx, ox_energy_meter_open(test_cpu_device(ctx), &meter));
    const char *bad[] = {"", "-5", "18446744073709551616", "1 2", "0x10"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        powercap_set_energy(root, "intel-rapl:0", bad[i]);
        double joules = -1.0;
        ox_status s = ox_energy_meter_read(meter, &joules);
        ASSERT_MSG(s == OX_ERR_FORMAT, "\"%s\": %s", bad[i], ox_status_name(s));
        ASSERT_CONTAINS(ox_errmsg(ctx), "not a count of microjoules");
        ASSERT_NEAR(joules, -1.0, 0.0);
    }
    powercap_set_energy(root, "intel-rapl:0", "3000");
    ASSERT_NEAR(read_joules(ctx, meter), 0.002, 1e-12);
    ox_energy_meter_free(meter);

    /* The range is needed to unwrap: a bad one fails the open. */
    powercap_zone(root, "intel-rapl:1", "package-1", "5", "lots");
    ASSERT_EQ(ox_energy_meter_open(test_cpu_device(ctx), &meter), OX_ERR_FORMAT);
    ASSERT_CONTAINS(ox_errmsg(ctx), "intel-rapl:1/max_energy_range_uj holds \"lots\"");
    ox_context_free(ctx);
    powercap_remove(root);
}

/* Since Linux 5.10 energy_uj is readable by root only: say so. */
OX_TEST(unreadable_counter_says_why)
{
    if (geteuid() == 0) OX_SKIP("root reads every file");
    char root[PATH_CAP], path[PATH_CAP + 32];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "1", RANGE_UJ);
    snprintf(path, sizeof path, "%s/intel-rapl:0/energy_uj", root);
    ASSERT(chmod(path, 0200) == 0);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(test_cpu_device(ctx), &meter), OX_ERR_IO);
    ASSERT_CONTAINS(ox_errmsg(ctx), path);
    ASSERT_CONTAINS(ox_errmsg(ctx), "permission denied");
    ox_context_free(ctx);
    powercap_remove(root);
}

/* ---- arguments and host memory --------------------------------------------------------- */

OX_TEST(null_arguments_are_errors)
{
    char root[PATH_CAP];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "1", RANGE_UJ);
    ox_context *ctx = test_cpu_context();
    ox_energy_meter *meter = NULL;
    double joules = -1.0;
    ASSERT_EQ(ox_energy_meter_open(NULL, &meter), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(NULL), "ox_energy_meter_open: device");
    ASSERT_EQ(ox_energy_meter_open(test_cpu_device(ctx), NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "ox_energy_meter_open: out is NULL");
    ASSERT_EQ(ox_energy_meter_read(NULL, &joules), OX_ERR_INVALID_HANDLE);
    ASSERT_CONTAINS(ox_errmsg(NULL), "ox_energy_meter_read: meter is NULL");
    ASSERT_NEAR(joules, -1.0, 0.0);
    ASSERT_STR_EQ(ox_energy_meter_source(NULL), "");
    ox_energy_meter_free(NULL);
    ASSERT_OK(ctx, ox_energy_meter_open(test_cpu_device(ctx), &meter));
    ASSERT_EQ(ox_energy_meter_read(meter, NULL), OX_ERR_INVALID);
    ASSERT_CONTAINS(ox_errmsg(ctx), "ox_energy_meter_read: joules is NULL");
    ox_energy_meter_free(meter);
    ox_context_free(ctx);
    powercap_remove(root);
}

/* Every host allocation failing in turn fails the open cleanly; what the
 * meter took goes back to the context's allocator. */
OX_TEST(host_memory_through_the_allocator)
{
    char root[PATH_CAP];
    make_root(root);
    powercap_zone(root, "intel-rapl:0", "package-0", "1", RANGE_UJ);
    test_alloc counts;
    test_alloc_init(&counts, -1);
    ox_context_options options = test_options(OX_CONTEXT_NO_PLUGINS);
    test_alloc_attach(&counts, &options);
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    ox_device *cpu = test_cpu_device(ctx);
    long base = atomic_load(&counts.attempts);
    int failures = 0;
    for (long n = 0;; n++) {
        ox_energy_meter *meter = (ox_energy_meter *)&meter;
        atomic_store(&counts.fail_from, base + n);
        ox_status s = ox_energy_meter_open(cpu, &meter);
        atomic_store(&counts.fail_from, -1);
        if (s == OX_OK) {
            ASSERT(meter != NULL);
            ASSERT_NEAR(read_joules(ctx, meter), 0.0, 0.0);
            ox_energy_meter_free(meter);
            break;
        }
        ASSERT_EQ(s, OX_ERR_OUT_OF_MEMORY);
        ASSERT(meter == NULL);
        failures++;
        base = atomic_load(&counts.attempts);
        ASSERT(n < 16);
    }
    ASSERT(failures >= 2); /* the meter and its copy of the root */
    ox_context_free(ctx);
    ASSERT_ALLOC_BALANCED(&counts);
    powercap_remove(root);
}

/* ---- GPUs: the fake backend's devices ---------------------------------------------------- */

/* A context with the fake backend, whose GPUs say they are of `vendor`. */
static ox_context *fake_gpu_context(const char *vendor, ox_device **gpu, int index)
{
    const char *base = getenv("OX_TEST_PLUGIN_DIR");
    if (!base || !*base) OX_SKIP("OX_TEST_PLUGIN_DIR is not set (ctest sets it)");
    char path[PATH_CAP], id[32];
    snprintf(path, sizeof path, "%s/fake", base);
    if (vendor) ASSERT(setenv("OX_FAKE_VENDOR", vendor, 1) == 0);
    ox_context_options options = test_options(OX_CONTEXT_NO_DEFAULT_PLUGIN_DIRS);
    options.backend_path = path;
    options.log_level = OX_LOG_OFF;
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(&options, &ctx));
    int n = 0;
    snprintf(id, sizeof id, "fake:%d", index);
    ASSERT_OK(ctx, ox_device_select(ctx, id, gpu, 1, &n));
    return ctx;
}

/* libnvidia-ml.so.1 if it opens: the fake (fake == 1) or NVIDIA's. */
static bool nvml_present(bool *fake)
{
    void *library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    *fake = library && dlsym(library, "ox_fake_nvml") != NULL;
    return library != NULL;
}

OX_TEST(other_gpu_has_no_sensor)
{
    ox_device *gpu;
    ox_context *ctx = fake_gpu_context(NULL, &gpu, 0);
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(gpu, &meter), OX_ERR_UNSUPPORTED);
    ASSERT(meter == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no energy sensor for fake:0 (Fake GPU 0): ");
    ASSERT_CONTAINS(ox_errmsg(ctx), "NVML (NVIDIA) and ROCm SMI");
    ASSERT_CONTAINS(ox_errmsg(ctx), "vendor \"OpenXPU tests\"");
    ox_context_free(ctx);
}

OX_TEST(nvidia_gpu_without_nvml)
{
    bool fake;
    if (nvml_present(&fake)) OX_SKIP("libnvidia-ml.so.1 is installed here");
    ox_device *gpu;
    ox_context *ctx = fake_gpu_context("NVIDIA", &gpu, 0);
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(gpu, &meter), OX_ERR_UNSUPPORTED);
    ASSERT(meter == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx),
                    "no energy sensor for fake:0 (Fake GPU 0): NVML: libnvidia-ml.so.1 not found");
    ox_context_free(ctx);
}

/* The cases below run where tests/core/fake_nvml.c's library is first on
 * LD_LIBRARY_PATH (ctest: core.test_energy_nvml). */
static void need_fake_nvml(void)
{
    bool fake;
    if (!nvml_present(&fake) || !fake)
        OX_SKIP("the fake libnvidia-ml.so.1 is not on LD_LIBRARY_PATH (core.test_energy_nvml "
                "puts it there)");
}

/* Without a PCI address from the backend, the GPU is found by its name. */
OX_TEST(fake_nvml_counts_millijoules)
{
    need_fake_nvml();
    ox_device *gpu;
    ox_context *ctx = fake_gpu_context("NVIDIA", &gpu, 0);
    ox_energy_meter *meter = NULL;
    ASSERT_OK(ctx, ox_energy_meter_open(gpu, &meter));
    ASSERT_STR_EQ(ox_energy_meter_source(meter), "NVML (GPU 0, Fake GPU 0)");
    ASSERT_NEAR(read_joules(ctx, meter), 0.25, 1e-12); /* the fake adds 250 mJ a query */
    ASSERT_NEAR(read_joules(ctx, meter), 0.5, 1e-12);
    ox_energy_meter_free(meter);
    ox_context_free(ctx);
}

/* No energy counter (before Volta): said, and power is not integrated. */
OX_TEST(fake_nvml_without_energy_counter)
{
    need_fake_nvml();
    ox_device *gpu;
    ox_context *ctx = fake_gpu_context("NVIDIA", &gpu, 1);
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(gpu, &meter), OX_ERR_UNSUPPORTED);
    ASSERT(meter == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "no energy sensor for fake:1 (Fake GPU 1): NVML: "
                                    "nvmlDeviceGetTotalEnergyConsumption is not supported on "
                                    "GPU 1, Fake GPU 1");
    ASSERT_CONTAINS(ox_errmsg(ctx), "power samples are not integrated");
    ox_context_free(ctx);
}

/* Two GPUs of one name and no PCI address: no guess. */
OX_TEST(fake_nvml_same_name_twice)
{
    need_fake_nvml();
    ASSERT(setenv("OX_FAKE_NVML_DUPLICATE", "1", 1) == 0);
    ox_device *gpu;
    ox_context *ctx = fake_gpu_context("NVIDIA", &gpu, 0);
    ox_energy_meter *meter = NULL;
    ASSERT_EQ(ox_energy_meter_open(gpu, &meter), OX_ERR_UNSUPPORTED);
    ASSERT(meter == NULL);
    ASSERT_CONTAINS(ox_errmsg(ctx), "NVML: 2 GPUs are named \"Fake GPU 0\"");
    ASSERT_CONTAINS(ox_errmsg(ctx), "which one is fake:0");
    ox_context_free(ctx);
}

OX_TEST_MAIN(no_powercap_names_rapl_and_the_path, default_root_is_sysfs, packages_are_summed,
             packages_in_order, wrap_around_adds_the_range, malformed_counter_is_an_error,
             unreadable_counter_says_why, null_arguments_are_errors,
             host_memory_through_the_allocator, other_gpu_has_no_sensor, nvidia_gpu_without_nvml,
             fake_nvml_counts_millijoules, fake_nvml_without_energy_counter,
             fake_nvml_same_name_twice)
