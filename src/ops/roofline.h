/* Device limits (ox_device_measure_limits, openxpu/device.h): what the
 * measuring files share. roofline.c holds the API, the cache and the
 * measurement with portable kernels (kernels/roofline.oxc); roofline_cpu.c
 * the CPU's native one, whose FMA loops per instruction set live in
 * roofline_avx512.c, roofline_avx2.c and roofline_neon.c (each compiled for
 * its instruction set, chosen at run time). */
#ifndef OX_OPS_ROOFLINE_H
#define OX_OPS_ROOFLINE_H

#include "core/core.h"

/* The three arrays of the streaming measurements, n floats each, on the
 * device being measured: copy reads b into a; triad a = b + s * c. */
typedef struct ox__roofline_arrays {
    ox_buffer *a, *b, *c;
    size_t n;
} ox__roofline_arrays;

/* Timed runs of each streaming measurement (after a warm-up). */
#define OX__ROOFLINE_STREAM_RUNS 5

/* One run of a measurement, `rounds` units of work (FMA rounds; the
 * streaming runs ignore it), complete when it returns. */
typedef ox_status (*ox__roofline_run)(void *arg, int64_t rounds);

/* The shortest of `runs` timed runs of `rounds`, after one warm-up. */
ox_status ox__roofline_best(ox__roofline_run run, void *arg, int64_t rounds, int runs,
                            double *best);

/* Work per second / 1e9 of `run`, each round being `work` units: rounds
 * grow (up to max_rounds) until one run takes tens of milliseconds, then the
 * best of several runs counts. */
ox_status ox__roofline_rate(ox__roofline_run run, void *arg, double work, int64_t max_rounds,
                            double *rate);

/* The CPU device, natively: bandwidths over `arrays` and the F32 FMA rate
 * on its thread pool into *out (f16_gflops: 0, see roofline_cpu.c). */
ox_status ox__roofline_cpu(ox_device *device, const ox__roofline_arrays *arrays,
                           ox_device_limits *out);

/* FMA loops: `rounds` rounds of independent vector FMA chains; each returns
 * a value that depends on every chain. FLOP per round = the constant. */
#if defined(__x86_64__) || defined(_M_X64)
#define OX__ROOFLINE_X86 1
#define OX__ROOFLINE_AVX512_FLOP (12 * 16 * 2) /* 12 chains of 16 floats */
float ox__roofline_fma_avx512(int64_t rounds);
#define OX__ROOFLINE_AVX2_FLOP (12 * 8 * 2)    /* 12 chains of 8 floats */
float ox__roofline_fma_avx2(int64_t rounds);
#endif
#if defined(__aarch64__)
#define OX__ROOFLINE_NEON_FLOP (16 * 4 * 2)    /* 16 chains of 4 floats */
float ox__roofline_fma_neon(int64_t rounds);
#endif

#endif /* OX_OPS_ROOFLINE_H */
