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

/* ---- device limits: the roofline -------------------------------------------- */

/* What a device can do at best, measured on the device itself: the memory
 * roofline (streaming bandwidth) and the compute roofline (fused
 * multiply-add throughput). An op's speed over the relevant limit says how
 * far it is from what the hardware allows. Set struct_size =
 * sizeof(ox_device_limits) before the call; fields are only ever appended. */
typedef struct ox_device_limits {
    size_t struct_size;      /* set to sizeof before the call */
    double copy_gbps;        /* streaming copy, bytes read + written per second / 1e9 */
    double triad_gbps;       /* a[i] = b[i] + s * c[i], 3 streams */
    double bandwidth_gbps;   /* the memory roofline: the larger of the two */
    double f32_gflops;       /* F32 FMA throughput, 2 FLOP per FMA */
    double f16_gflops;       /* half-precision FMA throughput; 0 when the device has no half arithmetic */
    double seconds;          /* how long the measurement took (0 when cached) */
    int cached;              /* 1 when read from the cache */
} ox_device_limits;

/* ox_device_measure_limits flags. */
#define OX_LIMITS_REMEASURE 1u /* measure again, replacing the cached values */

/* The limits of `device`, into *out (whose struct_size must be set).
 *
 * Measured once per device and kept on disk; later calls (from any process)
 * read the cache (out->cached = 1, seconds = 0) unless flags has
 * OX_LIMITS_REMEASURE. The cache is the file $OX_LIMITS_FILE, else
 * $XDG_CACHE_HOME/openxpu/limits, else $HOME/.cache/openxpu/limits
 * (OX_LIMITS_FILE=off: never read or written); one line per device, keyed
 * by backend, device name, driver version and compute units (the CPU's
 * threads). A line that cannot be read is ignored with a warning (and
 * dropped when the file is next written), and the device is measured
 * again. A cache that cannot be written only costs a warning.
 *
 * How: the bandwidths are the best of several copies and triads over
 * arrays of min(256 MiB, max_alloc_bytes / 4, memory_bytes / 8) each, well
 * above any cache; the FMA rates the best of several runs of independent
 * FMA chains on every compute unit, each run sized to take tens of
 * milliseconds. Devices with portable kernels run kernels/roofline.oxc;
 * the CPU runs native code on its thread pool (the widest SIMD it has:
 * AVX-512, AVX2 + FMA, NEON or scalar), as its ops do. F16 is measured
 * only on devices reporting OX_FEATURE_HALF_ARITH (one that then cannot
 * build or run the F16 kernel gets 0 and a warning). A first measurement
 * takes a second or two and allocates three arrays (up to 768 MiB) on the
 * device; it runs its own queue, so measure while nothing else runs on the
 * device (or the machine: a busy core halves a CPU's FMA rate).
 *
 * Errors: OX_ERR_INVALID_HANDLE for a bad device; OX_ERR_INVALID for out
 * NULL, out->struct_size too small or unknown flags; the device's own
 * errors (memory, kernel builds) with their message. On failure *out holds
 * no limits (struct_size kept, the rest zero). */
OX_API ox_status ox_device_measure_limits(ox_device *device, unsigned flags,
                                          ox_device_limits *out);

#ifdef __cplusplus
}
#endif

#endif /* OPENXPU_DEVICE_H */
