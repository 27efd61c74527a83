/* Devices: enumeration, the CPU device's description, selection strings
 * and the default device. */
#include <stdlib.h>
#include <string.h>

#include "openxpu/openxpu.h"
#include "ox_test.h"
#include "test_helpers.h"

static int terminated(const char *field, size_t size)
{
    return memchr(field, '\0', size) != NULL;
}

OX_TEST(device_count_and_get)
{
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    int count = 0;
    ASSERT_OK(ctx, ox_device_count(ctx, &count));
    ASSERT(count >= 1);
    for (int i = 0; i < count; i++) {
        ox_device *device = NULL;
        ASSERT_OK(ctx, ox_device_get(ctx, i, &device));
        ASSERT(device != NULL);
        ASSERT(ox_device_context(device) == ctx);
    }
    ox_device *device = NULL;
    ASSERT(ox_device_get(ctx, count, &device) != OX_OK);
    ASSERT(ox_errmsg(ctx)[0] != '\0');
    ASSERT(ox_device_get(ctx, -1, &device) != OX_OK);
    ASSERT(ox_device_get(ctx, 0, NULL) != OX_OK);
    ASSERT(ox_device_count(ctx, NULL) != OX_OK);
    ox_context_free(ctx);
}

OX_TEST(device_0_is_the_cpu)
{
    ox_context *ctx = NULL;
    ASSERT_OK(NULL, ox_context_create(NULL, &ctx));
    ox_device_info info = test_device_info(test_cpu_device(ctx));
    ASSERT_EQ(info.struct_size, sizeof info);
    ASSERT_STR_EQ(info.id, "cpu:0");
    ASSERT_STR_EQ(info.backend, "cpu");
    ASSERT_EQ(info.index, 0);
    ASSERT_EQ(info.type, OX_DEVICE_CPU);
    ASSERT(terminated(info.name, sizeof info.name));
    ASSERT(terminated(info.vendor, sizeof info.vendor));
    ASSERT(terminated(info.driver_version, sizeof info.driver_version));
    ASSERT(terminated(info.note, sizeof info.note));
    ASSERT(info.name[0] != '\0');
    ASSERT(info.memory_bytes > 0);
    ASSERT(info.max_alloc_bytes > 0);
    ASSERT(info.compute_units >= 1);
    ASSERT(info.max_work_group_size >= 1);
    ox_context_free(ctx);
}

OX_TEST(device_cpu_features_match_the_compiler_runtime)
{
#if defined(__x86_64__) || defined(__i386__)
#if defined(__AVX2__)
    OX_SKIP("built with -mavx2: __builtin_cpu_supports would not be an independent check");
#else
    __builtin_cpu_init();
    ox_context *ctx = test_cpu_context();
    ox_device_info info = test_device_info(test_cpu_device(ctx));
    uint64_t f = info.features;
    ASSERT_EQ(!!(f & OX_FEATURE_BIT(OX_FEATURE_AVX2)), !!__builtin_cpu_supports("avx2"));
    ASSERT_EQ(!!(f & OX_FEATURE_BIT(OX_FEATURE_FMA)), !!__builtin_cpu_supports("fma"));
    ASSERT_EQ(!!(f & OX_FEATURE_BIT(OX_FEATURE_AVX512F)), !!__builtin_cpu_supports("avx512f"));
    ASSERT_EQ(!!(f & OX_FEATURE_BIT(OX_FEATURE_NEON)), 0);
    ox_context_free(ctx);
#endif
#else
    OX_SKIP("x86 only");
#endif
}

OX_TEST(device_info_struct_size_checked)
{
    ox_context *ctx = test_cpu_context();
    ox_device *device = test_cpu_device(ctx);
    static const size_t sizes[] = {0, 1, sizeof(size_t)};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ox_device_info info, poison;
        memset(&info, 0xab, sizeof info);
        info.struct_size = sizes[i];
        memcpy(&poison, &info, sizeof info);
        ASSERT_MSG(ox_device_get_info(device, &info) != OX_OK, "struct_size %zu accepted",
                   sizes[i]);
        ASSERT_CONTAINS(ox_errmsg(ctx), "struct_size");
        ASSERT(memcmp(&info, &poison, sizeof info) == 0);
    }
    ASSERT(ox_device_get_info(device, NULL) != OX_OK);
    ox_context_free(ctx);
}

/* Select with room for 8 devices; returns the status, count in *count. */
static ox_status select_devices(ox_context *ctx, const char *selection, ox_device **devices,
                                int *count)
{
    for (int i = 0; i < 8; i++) devices[i] = NULL;
    *count = -1;
    return ox_device_select(ctx, selection, devices, 8, count);
}

OX_TEST(select_valid_strings)
{
    unsetenv("OX_DEVICE");
    static const char *const valid[] = {"cpu",   "CPU",     "cpu:0", " cpu:0 ", "Cpu:0",
                                        "all",   "cpu:*",   "ALL",   "default", " default",
                                        "cpu:*", "CPU:*  "};
    ox_context *ctx = test_cpu_context();
    ox_device *cpu = test_cpu_device(ctx);
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        ox_device *devices[8];
        int count = 0;
        ox_status status = select_devices(ctx, valid[i], devices, &count);
        ASSERT_MSG(status == OX_OK, "\"%s\": %s (%s)", valid[i], ox_status_name(status),
                   ox_errmsg(ctx));
        ASSERT_MSG(count == 1, "\"%s\": count %d", valid[i], count);
        ASSERT(devices[0] == cpu);
        ASSERT(devices[1] == NULL);
    }
    ox_context_free(ctx);
}

OX_TEST(select_invalid_strings)
{
    unsetenv("OX_DEVICE");
    static const char *const invalid[] = {"",      "   ",    "cpu:",   "cpu:x",   "cpu:-1",
                                          "cpu:1", "cpu:99999999999999999999", "cpu:0x",
                                          ":0",    "cpu:0:0", ",",   "cpu,",   "nosuch",
                                          "cpu:**"};
    ox_context *ctx = test_cpu_context();
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        ox_device *devices[8];
        int count = 0;
        ox_status status = select_devices(ctx, invalid[i], devices, &count);
        ASSERT_MSG(status != OX_OK, "\"%s\" accepted (count %d)", invalid[i], count);
        ASSERT_MSG(ox_errmsg(ctx)[0] != '\0', "\"%s\": no message", invalid[i]);
    }
    ox_device *devices[8];
    int count = 0;
    ASSERT(select_devices(ctx, NULL, devices, &count) != OX_OK);
    ASSERT(ox_device_select(ctx, "cpu", devices, 8, NULL) != OX_OK);
    ASSERT(ox_device_select(ctx, "cpu", NULL, 1, &count) != OX_OK);
    ox_context_free(ctx);
}

OX_TEST(select_device_listed_twice)
{
    static const char *const twice[] = {"cpu,cpu", "cpu:0,CPU", "all,cpu", "cpu:*,cpu:0"};
    ox_context *ctx = test_cpu_context();
    for (size_t i = 0; i < sizeof twice / sizeof twice[0]; i++) {
        ox_device *devices[8];
        int count = 0;
        ASSERT_MSG(select_devices(ctx, twice[i], devices, &count) != OX_OK, "\"%s\" accepted",
                   twice[i]);
        ASSERT_CONTAINS(ox_errmsg(ctx), "cpu");
    }
    ox_context_free(ctx);
}

OX_TEST(select_unknown_index_lists_the_devices)
{
    ox_context *ctx = test_cpu_context();
    ox_device *devices[8];
    int count = 0;
    ASSERT(select_devices(ctx, "cpu:1", devices, &count) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "cpu:1");
    ASSERT_CONTAINS(ox_errmsg(ctx), "cpu:0");
    ox_context_free(ctx);
}

OX_TEST(select_unknown_backend_is_named)
{
    ox_context *ctx = test_cpu_context();
    ox_device *devices[8];
    int count = 0;
    ASSERT(select_devices(ctx, "nosuch", devices, &count) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "nosuch");
    ASSERT_CONTAINS(ox_errmsg(ctx), "cpu");
    ASSERT(select_devices(ctx, "cpu,nosuch:3", devices, &count) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "nosuch");
    ox_context_free(ctx);
}

OX_TEST(select_capacity_zero_sizes)
{
    ox_context *ctx = test_cpu_context();
    int count = -1;
    ASSERT_OK(ctx, ox_device_select(ctx, "all", NULL, 0, &count));
    ASSERT_EQ(count, 1);
    count = -1;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu", NULL, 0, &count));
    ASSERT_EQ(count, 1);
    ox_device *sentinel = (ox_device *)&count;
    ox_device *devices[1] = {sentinel};
    count = -1;
    ASSERT_OK(ctx, ox_device_select(ctx, "cpu:*", devices, 0, &count));
    ASSERT_EQ(count, 1);
    ASSERT(devices[0] == sentinel);
    ox_context_free(ctx);
}

OX_TEST(default_device_without_env_is_the_cpu)
{
    unsetenv("OX_DEVICE");
    ox_context *ctx = test_cpu_context();
    ox_device *device = NULL;
    ASSERT_OK(ctx, ox_device_default(ctx, &device));
    ASSERT(device == test_cpu_device(ctx));
    ASSERT(ox_device_default(ctx, NULL) != OX_OK);
    ox_context_free(ctx);
}

OX_TEST(default_device_from_env)
{
    static const char *const names[] = {"cpu", "CPU:0", "cpu:*", " cpu "};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        setenv("OX_DEVICE", names[i], 1);
        ox_context *ctx = test_cpu_context();
        ox_device *device = NULL;
        ox_status status = ox_device_default(ctx, &device);
        ASSERT_MSG(status == OX_OK, "OX_DEVICE=\"%s\": %s (%s)", names[i],
                   ox_status_name(status), ox_errmsg(ctx));
        ASSERT(device == test_cpu_device(ctx));
        ox_device *devices[8];
        int count = 0;
        ASSERT_OK(ctx, select_devices(ctx, "default", devices, &count));
        ASSERT_EQ(count, 1);
        ASSERT(devices[0] == device);
        ox_context_free(ctx);
    }
}

OX_TEST(default_device_env_names_nothing)
{
    static const char *const names[] = {"bogus", "cpu:7", "cpu:"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        setenv("OX_DEVICE", names[i], 1);
        ox_context *ctx = test_cpu_context();
        ox_device *device = NULL;
        ASSERT_MSG(ox_device_default(ctx, &device) != OX_OK, "OX_DEVICE=\"%s\" accepted",
                   names[i]);
        ASSERT(ox_errmsg(ctx)[0] != '\0');
        ox_device *devices[8];
        int count = 0;
        ASSERT(select_devices(ctx, "default", devices, &count) != OX_OK);
        ox_context_free(ctx);
    }
    setenv("OX_DEVICE", "bogus", 1);
    ox_context *ctx = test_cpu_context();
    ox_device *device = NULL;
    ASSERT(ox_device_default(ctx, &device) != OX_OK);
    ASSERT_CONTAINS(ox_errmsg(ctx), "bogus");
    ox_context_free(ctx);
}

OX_TEST_MAIN(device_count_and_get, device_0_is_the_cpu,
             device_cpu_features_match_the_compiler_runtime, device_info_struct_size_checked,
             select_valid_strings, select_invalid_strings, select_device_listed_twice,
             select_unknown_index_lists_the_devices, select_unknown_backend_is_named,
             select_capacity_zero_sizes, default_device_without_env_is_the_cpu,
             default_device_from_env, default_device_env_names_nothing)
