/* Host CPU detection: SIMD features at run time (x86: CPUID plus XGETBV, so a
 * feature counts only if the OS saves its registers; ARM: HWCAP), the CPU's
 * name and vendor, usable cores and physical memory. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "core/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define OX_X86 1
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#define OX_ARM64 1
#endif

static ox__cpu_info cpu_info;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;

#define BIT(f) OX_FEATURE_BIT(OX_FEATURE_##f)

#ifdef OX_X86
static uint64_t xgetbv0(void)
{
    uint32_t eax, edx;
    __asm__ __volatile__("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static uint64_t detect_x86(char *vendor, size_t vendor_cap, char *name, size_t name_cap)
{
    unsigned a, b, c, d, max_leaf;
    uint64_t f = 0;
    char raw_vendor[13] = {0};
    if (!__get_cpuid(0, &max_leaf, &b, &c, &d)) return 0;
    memcpy(raw_vendor, &b, 4);
    memcpy(raw_vendor + 4, &d, 4);
    memcpy(raw_vendor + 8, &c, 4);
    ox__copy_string(vendor, vendor_cap,
                    strcmp(raw_vendor, "AuthenticAMD") == 0   ? "AMD"
                    : strcmp(raw_vendor, "GenuineIntel") == 0 ? "Intel"
                    : strcmp(raw_vendor, "HygonGenuine") == 0 ? "Hygon"
                                                              : raw_vendor);

    __get_cpuid(1, &a, &b, &c, &d);
    bool osxsave = c & (1u << 27);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm = (xcr0 & 0x6) == 0x6;          /* SSE and AVX state */
    bool zmm = ymm && (xcr0 & 0xe0) == 0xe0; /* opmask and ZMM state */
    if (c & (1u << 20)) f |= BIT(SSE42);
    if (ymm && (c & (1u << 28))) f |= BIT(AVX);
    if (ymm && (c & (1u << 12))) f |= BIT(FMA);
    if (ymm && (c & (1u << 29))) f |= BIT(F16C);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (ymm && (b & (1u << 5))) f |= BIT(AVX2);
        if (zmm && (b & (1u << 16))) f |= BIT(AVX512F);
        if (zmm && (b & (1u << 30))) f |= BIT(AVX512BW);
        if (zmm && (b & (1u << 31))) f |= BIT(AVX512VL);
        if (zmm && (c & (1u << 11))) f |= BIT(AVX512VNNI);
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        (void)b1, (void)c1, (void)d1;
        if (zmm && (a1 & (1u << 5))) f |= BIT(AVX512BF16);
        if (ymm && (a1 & (1u << 4))) f |= BIT(AVXVNNI);
    }

    unsigned max_ext = 0;
    __get_cpuid(0x80000000, &max_ext, &b, &c, &d);
    if (max_ext >= 0x80000004) {
        unsigned brand[12];
        for (unsigned i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[i * 4], &brand[i * 4 + 1], &brand[i * 4 + 2],
                        &brand[i * 4 + 3]);
        char text[49] = {0};
        memcpy(text, brand, 48);
        char *p = text;
        while (*p == ' ') p++;
        size_t n = strlen(p);
        while (n && p[n - 1] == ' ') p[--n] = '\0';
        ox__copy_string(name, name_cap, p);
    }
    return f;
}
#endif

#ifdef OX_ARM64
static uint64_t detect_arm64(void)
{
    unsigned long hw = getauxval(AT_HWCAP);
    uint64_t f = BIT(NEON); /* Advanced SIMD is mandatory on AArch64 */
#ifdef HWCAP_ASIMDDP
    if (hw & HWCAP_ASIMDDP) f |= BIT(ARM_DOTPROD);
#endif
#ifdef HWCAP_ASIMDHP
    if (hw & HWCAP_ASIMDHP) f |= BIT(ARM_FP16);
#endif
#ifdef HWCAP_SVE
    if (hw & HWCAP_SVE) f |= BIT(SVE);
#endif
#if defined(AT_HWCAP2) && defined(HWCAP2_I8MM)
    if (getauxval(AT_HWCAP2) & HWCAP2_I8MM) f |= BIT(ARM_I8MM);
#endif
    (void)hw;
    return f;
}
#endif

/* "model name : X" (x86) or "Hardware"/"CPU part" lines, when CPUID gave none. */
static void name_from_proc(char *name, size_t cap, uint32_t *mhz)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t') value++;
        value[strcspn(value, "\n")] = '\0';
        if (!name[0] && (strncmp(line, "model name", 10) == 0 || strncmp(line, "Model", 5) == 0))
            ox__copy_string(name, cap, value);
        if (!*mhz && strncmp(line, "cpu MHz", 7) == 0) *mhz = (uint32_t)atof(value);
    }
    fclose(f);
}

static void detect(void)
{
    ox__cpu_info *ci = &cpu_info;
#ifdef OX_X86
    ci->features = detect_x86(ci->vendor, sizeof ci->vendor, ci->name, sizeof ci->name);
#elif defined(OX_ARM64)
    ci->features = detect_arm64();
    ox__copy_string(ci->vendor, sizeof ci->vendor, "ARM");
#endif
    name_from_proc(ci->name, sizeof ci->name, &ci->clock_mhz);
    if (!ci->name[0]) ox__copy_string(ci->name, sizeof ci->name, "CPU");
    if (!ci->vendor[0]) ox__copy_string(ci->vendor, sizeof ci->vendor, "unknown");

    cpu_set_t set;
    ci->logical_cpus = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (ci->logical_cpus <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        ci->logical_cpus = n > 0 ? (int)n : 1;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    ci->memory_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
}

const ox__cpu_info *ox__cpu_detect(void)
{
    pthread_once(&cpu_once, detect);
    return &cpu_info;
}
