/* OpenXPU devices: enumeration, information and selection strings.
 *
 * Devices are owned by their context: the pointers below are borrowed and
 * stay valid until ox_context_free. A device is named by its backend and its
 * index within that backend: "cpu:0", "opencl:0", "cuda:1". */
#ifndef OPENXPU_DEVICE_H
#define OPENXPU_DEVICE_H

#include "openxpu/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ox_device ox_device;

typedef enum ox_device_type {
    OX_DEVICE_CPU = 1,
    OX_DEVICE_GPU = 2,
    OX_DEVICE_ACCELERATOR = 3,
    OX_DEVICE_OTHER = 4
} ox_device_type;

/* Static name of a device type: "cpu", "gpu", "accelerator", "other". */
OX_API const char *ox_device_type_str(ox_device_type type);

/* Capability bits of ox_device_info.features. CPU SIMD bits are detected at
 * run time (CPUID and the OS's saved-state support on x86, HWCAP on ARM);
 * device bits come from the backend's queries. */
#define OX_FEATURE_LIST(X)                                                   \
    X(SSE42, 0, "sse4.2")                                                    \
    X(AVX, 1, "avx")                                                         \
    X(AVX2, 2, "avx2")                                                       \
    X(FMA, 3, "fma")                                                         \
    X(F16C, 4, "f16c")                                                       \
    X(AVX512F, 5, "avx512f")                                                 \
    X(AVX512BW, 6, "avx512bw")                                               \
    X(AVX512VL, 7, "avx512vl")                                               \
    X(AVX512VNNI, 8, "avx512vnni")                                           \
    X(AVX512BF16, 9, "avx512bf16")                                           \
    X(AVXVNNI, 10, "avxvnni")                                                \
    X(NEON, 16, "neon")                                                      \
    X(ARM_DOTPROD, 17, "dotprod")                                            \
    X(ARM_FP16, 18, "fp16")                                                  \
    X(ARM_I8MM, 19, "i8mm")                                                  \
    X(SVE, 20, "sve")                                                        \
    X(FP64, 32, "fp64")                                                      \
    X(HALF_ARITH, 33, "half-arith")                                          \
    X(BF16_ARITH, 34, "bf16-arith")                                          \
    X(INT8_DOT, 35, "int8-dot")                                              \
    X(SUBGROUPS, 36, "subgroups")                                            \
    X(UNIFIED_MEMORY, 37, "unified-memory")

enum {
#define OX__FEATURE_ENUM(name, bit, text) OX_FEATURE_##name = (int)(bit),
    OX_FEATURE_LIST(OX__FEATURE_ENUM)
#undef OX__FEATURE_ENUM
};

/* The bit for feature `f` in ox_device_info.features. */
#define OX_FEATURE_BIT(f) (UINT64_C(1) << (f))

/* Static name of a feature bit number ("avx2"), or NULL if unknown. */
OX_API const char *ox_feature_str(int feature);

/* Plain description of a device. Set struct_size = sizeof(ox_device_info)
 * before calling ox_device_get_info; fields are only ever appended. Strings
 * are NUL-terminated and truncated to fit. */
typedef struct ox_device_info {
    size_t struct_size;
    char id[48];              /* selection id, "opencl:0" */
    char backend[32];         /* "cpu", "opencl", ... */
    int index;                /* index within its backend */
    ox_device_type type;
    char name[128];           /* "AMD EPYC 9B14", "NVIDIA H200" */
    char vendor[64];          /* "AMD", "Intel", "NVIDIA", ... */
    char driver_version[64];  /* driver or runtime version; "" if none */
    uint64_t memory_bytes;    /* global memory usable for buffers */
    uint64_t max_alloc_bytes; /* largest single buffer */
    uint64_t local_memory_bytes; /* per work-group fast memory (0 on CPU) */
    uint32_t compute_units;   /* cores / SMs / CUs the device runs on */
    uint32_t max_work_group_size;
    uint32_t clock_mhz;       /* 0 if unknown */
    uint64_t features;        /* OX_FEATURE_BIT(...) set */
    char note[128];           /* backend remark, e.g. "untested on hardware" */
} ox_device_info;

/* Number of devices in the context, over every backend. */
OX_API ox_status ox_device_count(ox_context *ctx, int *count);

/* Device number `index` (0 <= index < count), in backend load order (the
 * CPU first). *out is borrowed from the context. */
OX_API ox_status ox_device_get(ox_context *ctx, int index, ox_device **out);

/* Fill *info. */
OX_API ox_status ox_device_get_info(const ox_device *device, ox_device_info *info);

/* The context that owns a device (never fails for a live device). */
OX_API ox_context *ox_device_context(const ox_device *device);

/* Resolve a selection string into devices:
 *   "cpu"        the first CPU device (same as "cpu:0")
 *   "opencl:1"   device 1 of the OpenCL backend
 *   "cuda:*"     every device of the CUDA backend
 *   "all"        every device of every backend
 *   "default"    the device named by OX_DEVICE, else the first GPU-like
 *                device, else the CPU
 *   a comma-separated list of the above ("cpu,opencl:0")
 * Matching is case-insensitive; spaces around items are ignored. Up to
 * `capacity` borrowed device pointers go to devices[] (which may be NULL when
 * capacity is 0) and the total number selected to *count, so a first call
 * with capacity 0 sizes the array. A device listed twice is an error, as is
 * an unknown backend or index: the message lists what is available. */
OX_API ox_status ox_device_select(ox_context *ctx, const char *selection, ox_device **devices,
                                  int capacity, int *count);

/* The default device: the single device named by the OX_DEVICE environment
 * variable if it is set (an error if it names no device or several), else
 * the first GPU or accelerator, else the CPU. */
OX_API ox_status ox_device_default(ox_context *ctx, ox_device **out);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_DEVICE_H */
