/* Host CPU detection (core/cpu_features.h), checked against independent
 * sources: the compiler's runtime (__builtin_cpu_supports) and CPUID, the
 * affinity mask, sysconf and /proc/cpuinfo. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <ctype.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "core/cpu_features.h"
#include "openxpu/openxpu.h"
#include "ox_test.h"

OX_TEST(detect_is_cached)
{
    const ox__cpu_info *a = ox__cpu_detect();
    const ox__cpu_info *b = ox__cpu_detect();
    ASSERT(a != NULL);
    ASSERT(a == b);
}

OX_TEST(logical_cpus)
{
    const ox__cpu_info *info = ox__cpu_detect();
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT(sched_getaffinity(0, sizeof set, &set) == 0);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    int affinity = CPU_COUNT(&set);
    ASSERT_MSG(info->logical_cpus == affinity || info->logical_cpus == online,
               "logical_cpus %d; affinity %d, online %ld", info->logical_cpus, affinity, online);
    ASSERT(info->logical_cpus >= 1);
}

OX_TEST(memory_bytes)
{
    const ox__cpu_info *info = ox__cpu_detect();
    double expected = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    ASSERT(expected > 0);
    ASSERT_NEAR((double)info->memory_bytes, expected, expected * 0.01);
}

#if defined(__x86_64__) || defined(__i386__)
/* Lowercase, whitespace runs collapsed to one space, trimmed. */
static void normalize(const char *src, char *dst, size_t cap)
{
    size_t n = 0;
    int space = 1;
    for (; *src && n + 1 < cap; src++) {
        if (isspace((unsigned char)*src)) {
            space = 1;
            continue;
        }
        if (space && n > 0 && n + 2 < cap) dst[n++] = ' ';
        space = 0;
        dst[n++] = (char)tolower((unsigned char)*src);
    }
    dst[n] = '\0';
}
#endif

OX_TEST(name_and_vendor)
{
    const ox__cpu_info *info = ox__cpu_detect();
    ASSERT(memchr(info->name, '\0', sizeof info->name) != NULL);
    ASSERT(memchr(info->vendor, '\0', sizeof info->vendor) != NULL);
    ASSERT(info->name[0] != '\0');
    ASSERT(info->clock_mhz < 20000);
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel")) ASSERT_STR_EQ(info->vendor, "Intel");
    if (__builtin_cpu_is("amd")) ASSERT_STR_EQ(info->vendor, "AMD");
    ASSERT(info->vendor[0] != '\0');

    /* The brand string, as the kernel reports it. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512], expected[256] = "", actual[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *colon = strchr(line, ':');
        if (colon) normalize(colon + 1, expected, sizeof expected);
        break;
    }
    fclose(f);
    normalize(info->name, actual, sizeof actual);
    if (expected[0]) ASSERT_STR_EQ(actual, expected);
#endif
}

#if defined(__x86_64__) || defined(__i386__)
/* F16C from CPUID leaf 1 (clang's __builtin_cpu_supports has no "f16c"),
 * usable only with the OS's support for AVX state, which "avx" includes. */
static int f16c_supported(void)
{
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx & bit_F16C) && __builtin_cpu_supports("avx");
}
#endif

OX_TEST(x86_features_match_the_compiler_runtime)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    uint64_t f = ox__cpu_detect()->features;
    struct {
        int bit;
        int expected;
        const char *name;
    } checks[] = {
        {OX_FEATURE_SSE42, __builtin_cpu_supports("sse4.2"), "sse4.2"},
        {OX_FEATURE_AVX, __builtin_cpu_supports("avx"), "avx"},
        {OX_FEATURE_AVX2, __builtin_cpu_supports("avx2"), "avx2"},
        {OX_FEATURE_FMA, __builtin_cpu_supports("fma"), "fma"},
        {OX_FEATURE_F16C, f16c_supported(), "f16c"},
        {OX_FEATURE_AVX512F, __builtin_cpu_supports("avx512f"), "avx512f"},
        {OX_FEATURE_AVX512BW, __builtin_cpu_supports("avx512bw"), "avx512bw"},
        {OX_FEATURE_AVX512VL, __builtin_cpu_supports("avx512vl"), "avx512vl"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++)
        ASSERT_MSG(!!(f & OX_FEATURE_BIT(checks[i].bit)) == !!checks[i].expected,
                   "%s: detected %d, compiler runtime says %d", checks[i].name,
                   !!(f & OX_FEATURE_BIT(checks[i].bit)), !!checks[i].expected);
    /* No ARM bits on x86. */
    static const int arm[] = {OX_FEATURE_NEON, OX_FEATURE_ARM_DOTPROD, OX_FEATURE_ARM_FP16,
                              OX_FEATURE_ARM_I8MM, OX_FEATURE_SVE};
    for (size_t i = 0; i < sizeof arm / sizeof arm[0]; i++)
        ASSERT((f & OX_FEATURE_BIT(arm[i])) == 0);
#else
    OX_SKIP("x86 only");
#endif
}

OX_TEST(arm_has_neon)
{
#if defined(__aarch64__)
    ASSERT(ox__cpu_detect()->features & OX_FEATURE_BIT(OX_FEATURE_NEON));
#else
    OX_SKIP("aarch64 only");
#endif
}

OX_TEST_MAIN(detect_is_cached, logical_cpus, memory_bytes, name_and_vendor,
             x86_features_match_the_compiler_runtime, arm_has_neon)
